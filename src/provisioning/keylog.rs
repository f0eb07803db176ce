//! Key logging: the session secrets of a provisioning session, handed to a [`KeyLog`] so that a
//! recorded session can be decrypted and replayed byte for byte (DESIGN.md rule 2), in the
//! manner of rustls' `KeyLog`.
//!
//! The core stays sans-IO: it calls [`KeyLog::log`] with bytes and never learns where they go.
//! Nothing is logged unless a key log is configured ([`super::ProvisionerConfig::key_log`]);
//! it is meant for test and development runs (`meshprov provision --capture-secrets`), never
//! for production: whoever holds the log holds the device key and the network key of the
//! session.
//!
//! A session is identified by the provisioner's public key (`X ‖ Y`, 64 octets): it is on air
//! in the provisioner's Provisioning Public Key PDU (MshPRT v1.1 §5.4.1.4), so a capture and
//! its key log can be matched without any other bookkeeping — as rustls identifies a TLS
//! session by its client random.

use core::fmt;
use std::sync::Mutex;

/// The provisioner's ephemeral P-256 private key (32 octets, big-endian scalar), §5.4.2.3.
pub const PROVISIONER_PRIVATE_KEY: &str = "PROVISIONER_PRIVATE_KEY";
/// The ECDH shared secret (32 octets, the X coordinate), §5.4.2.3.
pub const ECDH_SECRET: &str = "ECDH_SECRET";
/// The AuthValue (16 octets with BTM_ECDH_P256_CMAC_AES128_AES_CCM, 32 with
/// BTM_ECDH_P256_HMAC_SHA256_AES_CCM), §5.4.2.4.
pub const AUTH_VALUE: &str = "AUTH_VALUE";
/// The provisioner's Random (16 or 32 octets), §5.4.2.4 — secret until it is sent.
pub const PROVISIONER_RANDOM: &str = "PROVISIONER_RANDOM";
/// The device's Random, as received (16 or 32 octets).
pub const DEVICE_RANDOM: &str = "DEVICE_RANDOM";
/// The SessionKey (16 octets), §5.4.2.5.
pub const SESSION_KEY: &str = "SESSION_KEY";
/// The SessionNonce (13 octets), §5.4.2.5.
pub const SESSION_NONCE: &str = "SESSION_NONCE";
/// The new node's DeviceKey (16 octets), §5.4.2.5.
pub const DEVICE_KEY: &str = "DEVICE_KEY";

/// Every label a [`crate::provisioning::Provisioner`] logs, in the order it logs them.
pub const LABELS: [&str; 8] = [
    PROVISIONER_PRIVATE_KEY,
    ECDH_SECRET,
    AUTH_VALUE,
    PROVISIONER_RANDOM,
    DEVICE_RANDOM,
    SESSION_KEY,
    SESSION_NONCE,
    DEVICE_KEY,
];

/// Receives the secrets of provisioning sessions (test and development runs only).
pub trait KeyLog: fmt::Debug + Send + Sync {
    /// One secret: `label` is one of [`LABELS`], `session` the provisioner's public key
    /// (`X ‖ Y`) of the session, `secret` the value.
    fn log(&self, label: &str, session: &[u8], secret: &[u8]);

    /// Whether [`KeyLog::log`] wants `label` at all (lets the caller skip the work).
    fn will_log(&self, _label: &str) -> bool {
        true
    }
}

/// One logged secret.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyLogEntry {
    /// What it is (one of [`LABELS`]).
    pub label: String,
    /// The session: the provisioner's public key `X ‖ Y`.
    pub session: Vec<u8>,
    /// The secret.
    pub secret: Vec<u8>,
}

impl Drop for KeyLogEntry {
    fn drop(&mut self) {
        super::auth::wipe(&mut self.secret);
    }
}

impl fmt::Debug for KeyLogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeyLogEntry({}, {} octets, …)",
            self.label,
            self.secret.len()
        )
    }
}

/// A [`KeyLog`] that keeps every entry in memory, for the capture's key sidecar and tests.
#[derive(Debug, Default)]
pub struct KeyLogBuffer {
    entries: Mutex<Vec<KeyLogEntry>>,
}

impl KeyLogBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything logged so far, in order.
    pub fn entries(&self) -> Vec<KeyLogEntry> {
        match self.entries.lock() {
            Ok(e) => e.clone(),
            // A writer panicked mid-push: what was pushed before is still whole.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl KeyLog for KeyLogBuffer {
    fn log(&self, label: &str, session: &[u8], secret: &[u8]) {
        let entry = KeyLogEntry {
            label: label.to_string(),
            session: session.to_vec(),
            secret: secret.to_vec(),
        };
        match self.entries.lock() {
            Ok(mut e) => e.push(entry),
            Err(poisoned) => poisoned.into_inner().push(entry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_keeps_entries_and_hides_them_in_debug() {
        let b = KeyLogBuffer::new();
        b.log(DEVICE_KEY, &[1; 64], &[0xab; 16]);
        let e = b.entries();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].secret, vec![0xab; 16]);
        let shown = format!("{b:?} {:?}", e[0]);
        assert!(
            !shown.contains("ab, ab") && !shown.contains("171"),
            "{shown}"
        );
    }
}
