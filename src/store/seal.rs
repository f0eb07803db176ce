//! Secrets at rest: the optional encryption of a store's key material with a passphrase.
//!
//! A store may be *encrypted*: then every key column (`net_keys.key`/`old_key`,
//! `app_keys.key`/`old_key`, `nodes.device_key`) holds a sealed value instead of the 16 key
//! octets. The sealing key is derived from the installer's passphrase with Argon2id (RFC 9106;
//! its cost and a random 16-octet salt are in the `store_encryption` row), and each value is
//! sealed with XChaCha20-Poly1305 under a fresh random 192-bit nonce:
//!
//! ```text
//! sealed = nonce (24) ‖ ciphertext (16) ‖ tag (16)           56 octets
//! AD     = "meshprov/store-key/1" 0 table 0 column 0 row     (row: key index BE16 or device UUID)
//! ```
//!
//! The associated data bind a sealed value to its row and column, so a blob copied to another
//! key's row (or from `old_key` to `key`) does not open. A *verifier* (16 zero octets sealed
//! like a key, in the `store_encryption` row) tells a wrong passphrase at once, before any key
//! is read: a wrong passphrase is an error, never garbage keys.
//!
//! Randomness here (salts, nonces) comes from the operating system: unlike the protocol cores,
//! nothing about a store's bytes needs to be reproducible, and a nonce must never repeat.

use std::fmt;
use std::path::PathBuf;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, Zeroizing};

use super::StoreError;
use crate::uuid::DeviceUuid;

/// Octets of a sealed key: nonce, ciphertext of the 16 key octets, tag.
pub const SEALED_LEN: usize = NONCE_LEN + 16 + TAG_LEN;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Octets of the Argon2id salt.
pub const SALT_LEN: usize = 16;
const AD_PREFIX: &[u8] = b"meshprov/store-key/1\0";

/// Argon2id's cost (RFC 9106 §3.1): memory in KiB, passes, lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory, KiB (`m`).
    pub memory_kib: u32,
    /// Passes over the memory (`t`).
    pub time_cost: u32,
    /// Lanes (`p`).
    pub lanes: u32,
}

impl KdfParams {
    /// The default: 64 MiB, 3 passes, 1 lane (RFC 9106 §4's second recommended option,
    /// with one lane as the derivation runs once per command, on one thread).
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        time_cost: 3,
        lanes: 1,
    };

    /// A cheap setting for tests only (64 KiB, 1 pass): a test store opens in a millisecond.
    /// Never the default; `net encrypt --kdf-memory-kib 64 --kdf-time 1` asks for it.
    pub const TEST_ONLY_CHEAP: KdfParams = KdfParams {
        memory_kib: 64,
        time_cost: 1,
        lanes: 1,
    };

    /// Checks the bounds this program accepts (Argon2's own, and at most 4 GiB and 100 passes so
    /// a damaged store cannot make an open run for hours).
    pub fn validate(&self) -> Result<(), StoreError> {
        if !(1..=16).contains(&self.lanes) {
            return Err(StoreError::InvalidArgument(format!(
                "Argon2id lanes {} is not in 1..=16",
                self.lanes
            )));
        }
        if self.memory_kib < 8 * self.lanes || self.memory_kib > 4 * 1024 * 1024 {
            return Err(StoreError::InvalidArgument(format!(
                "Argon2id memory {} KiB is not in {}..=4194304 KiB",
                self.memory_kib,
                8 * self.lanes
            )));
        }
        if !(1..=100).contains(&self.time_cost) {
            return Err(StoreError::InvalidArgument(format!(
                "Argon2id passes {} is not in 1..=100",
                self.time_cost
            )));
        }
        Ok(())
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for KdfParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.memory_kib.is_multiple_of(1024) {
            write!(f, "Argon2id {} MiB", self.memory_kib / 1024)?;
        } else {
            write!(f, "Argon2id {} KiB", self.memory_kib)?;
        }
        write!(f, ", t={}, p={}", self.time_cost, self.lanes)
    }
}

/// A store's passphrase. Wiped from memory on drop; `Debug` prints `Passphrase(…)` and there is
/// no `Display`, so it cannot reach a log line or an error message by accident.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Takes ownership of the text (the caller's `String` is moved, not copied).
    pub fn new(text: String) -> Self {
        Passphrase(Zeroizing::new(text))
    }

    /// The passphrase's octets (UTF-8), for the KDF only.
    pub fn expose_secret(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// True when it has no characters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Its length in characters.
    pub fn chars(&self) -> usize {
        self.0.chars().count()
    }
}

impl Clone for Passphrase {
    fn clone(&self) -> Self {
        Passphrase(Zeroizing::new(String::clone(&self.0)))
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(…)")
    }
}

/// The 256-bit key derived from a store's passphrase and salt. Wiped on drop; `Debug` prints
/// `StoreKey(…)`. A second connection to the same store opens with it without running Argon2id
/// again ([`Store::unlock_with_key`](super::Store::unlock_with_key)).
#[derive(Clone)]
pub struct StoreKey {
    key: Zeroizing<[u8; 32]>,
    salt: [u8; SALT_LEN],
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey(…)")
    }
}

impl StoreKey {
    /// The salt it was derived with (public: it is stored in the clear).
    pub fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }
}

/// Runs Argon2id over the passphrase: the store's key.
pub(crate) fn derive(
    passphrase: &Passphrase,
    salt: &[u8; SALT_LEN],
    params: &KdfParams,
) -> Result<StoreKey, StoreError> {
    params.validate()?;
    let p = Params::new(params.memory_kib, params.time_cost, params.lanes, Some(32))
        .map_err(|e| StoreError::InvalidArgument(format!("Argon2id parameters: {e}")))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, p);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.expose_secret(), salt, &mut key[..])
        .map_err(|e| StoreError::InvalidArgument(format!("Argon2id: {e}")))?;
    Ok(StoreKey { key, salt: *salt })
}

/// A fresh random salt from the operating system.
pub(crate) fn random_salt() -> Result<[u8; SALT_LEN], StoreError> {
    let mut s = [0u8; SALT_LEN];
    getrandom::fill(&mut s).map_err(|e| {
        StoreError::InvalidArgument(format!("the operating system gave no randomness: {e}"))
    })?;
    Ok(s)
}

/// Which stored value a sealed blob is: its table, column and row, bound as associated data.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Slot<'a> {
    /// `net_keys.key` (`old: false`) or `net_keys.old_key`.
    NetKey {
        /// Global index.
        index: u16,
        /// The old key of a key refresh.
        old: bool,
    },
    /// `app_keys.key` or `app_keys.old_key`.
    AppKey {
        /// Global index.
        index: u16,
        /// The old key of a key refresh.
        old: bool,
    },
    /// `nodes.device_key` of this device.
    DevKey(&'a DeviceUuid),
    /// The passphrase check in `store_encryption.verifier`.
    Verifier,
}

impl Slot<'_> {
    fn associated_data(&self) -> Vec<u8> {
        let (table, column, row): (&str, &str, Vec<u8>) = match self {
            Slot::NetKey { index, old } => (
                "net_keys",
                if *old { "old_key" } else { "key" },
                index.to_be_bytes().to_vec(),
            ),
            Slot::AppKey { index, old } => (
                "app_keys",
                if *old { "old_key" } else { "key" },
                index.to_be_bytes().to_vec(),
            ),
            Slot::DevKey(u) => ("nodes", "device_key", u.0.to_vec()),
            Slot::Verifier => ("store_encryption", "verifier", Vec::new()),
        };
        let mut ad = AD_PREFIX.to_vec();
        ad.extend_from_slice(table.as_bytes());
        ad.push(0);
        ad.extend_from_slice(column.as_bytes());
        ad.push(0);
        ad.extend_from_slice(&row);
        ad
    }

    /// How an error names the value (no key material).
    pub(crate) fn describe(&self) -> String {
        match self {
            Slot::NetKey { index, old: false } => format!("NetKey {index}"),
            Slot::NetKey { index, old: true } => format!("old NetKey {index}"),
            Slot::AppKey { index, old: false } => format!("AppKey {index}"),
            Slot::AppKey { index, old: true } => format!("old AppKey {index}"),
            Slot::DevKey(u) => format!("device key of {u}"),
            Slot::Verifier => "passphrase verifier".into(),
        }
    }
}

/// What `net show` says about an encrypted store (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysAtRest {
    /// The KDF's cost.
    pub kdf: KdfParams,
    /// The AEAD (`XChaCha20-Poly1305`).
    pub aead: &'static str,
    /// When the passphrase was last set, ISO-8601.
    pub changed: String,
}

/// How a store's key columns are read and written.
pub(crate) enum KeyCipher {
    /// Not encrypted: the columns hold the 16 key octets.
    Plain,
    /// Encrypted, opened without the passphrase: no key can be read or written.
    Locked {
        /// The store, for the error message.
        path: PathBuf,
        /// What is known without the passphrase.
        info: KeysAtRest,
    },
    /// Encrypted and unlocked.
    Unlocked {
        /// What `net show` says.
        info: KeysAtRest,
        /// The derived key (kept to open a second connection, and wiped on drop).
        key: StoreKey,
        /// The AEAD keyed with it (wiped on drop: chacha20poly1305's `zeroize` feature).
        cipher: Box<XChaCha20Poly1305>,
    },
}

impl fmt::Debug for KeyCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyCipher::Plain => f.write_str("Plain"),
            KeyCipher::Locked { .. } => f.write_str("Locked"),
            KeyCipher::Unlocked { .. } => f.write_str("Unlocked(…)"),
        }
    }
}

impl KeyCipher {
    /// An unlocked cipher for `key`.
    pub(crate) fn unlocked(info: KeysAtRest, key: StoreKey) -> Self {
        let cipher = Box::new(XChaCha20Poly1305::new((&*key.key).into()));
        KeyCipher::Unlocked { info, key, cipher }
    }

    /// What `net show` says, when encrypted.
    pub(crate) fn info(&self) -> Option<&KeysAtRest> {
        match self {
            KeyCipher::Plain => None,
            KeyCipher::Locked { info, .. } | KeyCipher::Unlocked { info, .. } => Some(info),
        }
    }

    /// The value to store for `plain` in `slot`.
    /// The value to store is wiped when dropped: in a plain store it is the key itself.
    pub(crate) fn seal(
        &self,
        slot: Slot<'_>,
        plain: &[u8; 16],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        match self {
            KeyCipher::Plain => Ok(Zeroizing::new(plain.to_vec())),
            KeyCipher::Locked { path, .. } => Err(StoreError::Locked { path: path.clone() }),
            KeyCipher::Unlocked { cipher, .. } => {
                seal_with(cipher, slot, plain).map(Zeroizing::new)
            }
        }
    }

    /// The key stored as `blob` in `slot`. The blob is wiped before it is dropped.
    pub(crate) fn open(
        &self,
        slot: Slot<'_>,
        blob: Vec<u8>,
    ) -> Result<Zeroizing<[u8; 16]>, StoreError> {
        let mut blob = Zeroizing::new(blob);
        match self {
            KeyCipher::Plain => {
                let arr: [u8; 16] = blob.as_slice().try_into().map_err(|_| {
                    StoreError::Corrupt(if blob.len() == SEALED_LEN {
                        format!(
                            "the {} is sealed but the store is not encrypted (its store_encryption row is missing)",
                            slot.describe()
                        )
                    } else {
                        format!("a stored {} is not 16 bytes", slot.describe())
                    })
                })?;
                Ok(Zeroizing::new(arr))
            }
            KeyCipher::Locked { path, .. } => Err(StoreError::Locked { path: path.clone() }),
            KeyCipher::Unlocked { cipher, .. } => {
                if blob.len() != SEALED_LEN {
                    return Err(StoreError::Corrupt(format!(
                        "the {} is stored as {} octets in an encrypted store (sealed keys are {SEALED_LEN})",
                        slot.describe(),
                        blob.len()
                    )));
                }
                open_with(cipher, slot, &mut blob).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "the sealed {} does not open: it was altered, or copied from another row",
                        slot.describe()
                    ))
                })
            }
        }
    }
}

/// Seals `plain` for `slot` under a fresh random nonce.
pub(crate) fn seal_with(
    cipher: &XChaCha20Poly1305,
    slot: Slot<'_>,
    plain: &[u8; 16],
) -> Result<Vec<u8>, StoreError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| {
        StoreError::InvalidArgument(format!("the operating system gave no randomness: {e}"))
    })?;
    let mut out = Vec::with_capacity(SEALED_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let ad = slot.associated_data();
    let tag = cipher
        .encrypt_inout_detached(
            &XNonce::from(nonce),
            &ad,
            (&mut out[NONCE_LEN..NONCE_LEN + 16]).into(),
        )
        .map_err(|_| StoreError::Corrupt("XChaCha20-Poly1305 refused to seal".into()))?;
    out.extend_from_slice(tag.as_slice());
    Ok(out)
}

/// Opens a sealed value of `slot`; `None` when the tag does not verify (wrong key, altered, or
/// another row's value). `blob` is [`SEALED_LEN`] octets.
fn open_with(
    cipher: &XChaCha20Poly1305,
    slot: Slot<'_>,
    blob: &mut [u8],
) -> Option<Zeroizing<[u8; 16]>> {
    if blob.len() != SEALED_LEN {
        return None;
    }
    let (nonce, rest) = blob.split_at_mut(NONCE_LEN);
    let (body, tag) = rest.split_at_mut(16);
    let tag: [u8; TAG_LEN] = (&*tag).try_into().ok()?;
    let nonce: [u8; NONCE_LEN] = (&*nonce).try_into().ok()?;
    let ad = slot.associated_data();
    cipher
        .decrypt_inout_detached(&XNonce::from(nonce), &ad, (&mut *body).into(), &tag.into())
        .ok()?;
    let mut key = Zeroizing::new([0u8; 16]);
    key.copy_from_slice(body);
    body.zeroize();
    Some(key)
}

/// The verifier of `key`: 16 zero octets sealed for [`Slot::Verifier`].
pub(crate) fn make_verifier(key: &StoreKey) -> Result<Vec<u8>, StoreError> {
    let cipher = XChaCha20Poly1305::new((&*key.key).into());
    seal_with(&cipher, Slot::Verifier, &[0u8; 16])
}

/// Whether `verifier` was made with `key`.
pub(crate) fn check_verifier(key: &StoreKey, verifier: &[u8]) -> bool {
    let cipher = XChaCha20Poly1305::new((&*key.key).into());
    let mut v = verifier.to_vec();
    matches!(open_with(&cipher, Slot::Verifier, &mut v), Some(z) if *z == [0u8; 16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pass: &str, salt: u8) -> StoreKey {
        derive(
            &Passphrase::new(pass.into()),
            &[salt; SALT_LEN],
            &KdfParams::TEST_ONLY_CHEAP,
        )
        .unwrap()
    }

    #[test]
    fn argon2id_depends_on_every_input() {
        let a = key("correct horse", 1);
        assert_eq!(*a.key, *key("correct horse", 1).key);
        assert_ne!(*a.key, *key("correct horsf", 1).key);
        assert_ne!(*a.key, *key("correct horse", 2).key);
        let b = derive(
            &Passphrase::new("correct horse".into()),
            &[1; SALT_LEN],
            &KdfParams {
                time_cost: 2,
                ..KdfParams::TEST_ONLY_CHEAP
            },
        )
        .unwrap();
        assert_ne!(*a.key, *b.key);
        assert_eq!(format!("{a:?}"), "StoreKey(…)");
        assert_eq!(
            format!("{:?}", Passphrase::new("hunter2".into())),
            "Passphrase(…)"
        );
    }

    #[test]
    fn argon2id_reference_vector() {
        // RFC 9106 §5.3's vector uses a secret and associated data, which a store does not;
        // the reference implementation's own test (phc-winner-argon2 `src/test.c`, Argon2id
        // v0x13, t=2, m=2^8 KiB, p=1, "password", "somesalt") has neither.
        let mut out = [0u8; 32];
        Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(256, 2, 1, Some(32)).unwrap(),
        )
        .hash_password_into(b"password", b"somesalt", &mut out)
        .unwrap();
        assert_eq!(
            crate::crypto::hex::encode(&out),
            "9dfeb910e80bad0311fee20f9c0e2b12c17987b4cac90c2ef54d5b3021c68bfe"
        );
    }

    #[test]
    fn sealed_values_open_only_in_their_own_slot_and_under_their_key() {
        let k = key("pass phrase", 7);
        let c = KeyCipher::unlocked(
            KeysAtRest {
                kdf: KdfParams::TEST_ONLY_CHEAP,
                aead: "XChaCha20-Poly1305",
                changed: String::new(),
            },
            k,
        );
        let plain = [0x5a; 16];
        let slot = Slot::NetKey {
            index: 3,
            old: false,
        };
        let s = c.seal(slot, &plain).unwrap().to_vec();
        assert_eq!(s.len(), SEALED_LEN);
        assert!(!s.windows(16).any(|w| w == plain));
        assert_eq!(*c.open(slot, s.clone()).unwrap(), plain);
        // Two seals of the same key differ (fresh nonce).
        assert_ne!(s, c.seal(slot, &plain).unwrap().to_vec());
        // Another row, another column, another table: refused.
        for other in [
            Slot::NetKey {
                index: 4,
                old: false,
            },
            Slot::NetKey {
                index: 3,
                old: true,
            },
            Slot::AppKey {
                index: 3,
                old: false,
            },
            Slot::DevKey(&DeviceUuid([3; 16])),
        ] {
            let e = c.open(other, s.clone()).unwrap_err().to_string();
            assert!(e.contains("does not open"), "{e}");
        }
        // A flipped bit: refused.
        let mut bad = s.clone();
        bad[30] ^= 1;
        assert!(c.open(slot, bad).is_err());
        // Another key: refused.
        let c2 = KeyCipher::unlocked(
            KeysAtRest {
                kdf: KdfParams::TEST_ONLY_CHEAP,
                aead: "XChaCha20-Poly1305",
                changed: String::new(),
            },
            key("pass phrasf", 7),
        );
        assert!(c2.open(slot, s).is_err());
        // A plaintext key in an encrypted store is an error, not a key.
        assert!(c.open(slot, plain.to_vec()).is_err());
    }

    #[test]
    fn verifier_tells_the_right_key() {
        let k = key("right", 1);
        let v = make_verifier(&k).unwrap();
        assert!(check_verifier(&k, &v));
        assert!(!check_verifier(&key("wrong", 1), &v));
        assert!(!check_verifier(&k, &v[..40]));
    }

    #[test]
    fn params_bounds() {
        assert!(KdfParams::DEFAULT.validate().is_ok());
        assert!(KdfParams::TEST_ONLY_CHEAP.validate().is_ok());
        for bad in [
            KdfParams {
                memory_kib: 4,
                time_cost: 1,
                lanes: 1,
            },
            KdfParams {
                memory_kib: 64,
                time_cost: 0,
                lanes: 1,
            },
            KdfParams {
                memory_kib: 64,
                time_cost: 1,
                lanes: 0,
            },
            KdfParams {
                memory_kib: 8 << 20,
                time_cost: 1,
                lanes: 1,
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert_eq!(KdfParams::DEFAULT.to_string(), "Argon2id 64 MiB, t=3, p=1");
    }
}
