//! The provisioning protocol, MshPRT v1.1 §5.4: sans-IO state machines for both roles.
//!
//! - [`Provisioner`] (`provisioner.rs`): one session that provisions one device.
//! - [`Device`] (`device.rs`): the provisionee role, for the simulator and the tests.
//! - [`records`]: provisioning records for certificate-based provisioning (§5.4.1.11–14):
//!   the provisioner's fetch before Invite and the device's serving.
//! - [`auth`]: AuthValue formatting and OOB value generation (§5.4.2.4).
//! - [`error`]: [`ProvisioningError`] and the one map from errors to Link Close reasons,
//!   Provisioning Failed codes and installer messages (§5.4.4).
//! - [`keylog`]: the session secrets, for test and development runs that record a capture
//!   ([`KeyLog`], as in rustls).
//!
//! Both roles are transport-agnostic and sans-IO (DESIGN.md rule 1): they consume whole
//! provisioning PDUs as bytes (`handle_pdu`), produce whole PDUs (`poll_transmit`, the type
//! octet included; PB-ADV or PB-GATT carry them), take time as an [`Instant`] and report the
//! next deadline (`poll_timeout`). They never read a clock, sleep, spawn or do I/O. Randomness
//! is injected as a [`rand_core::CryptoRng`]. As in rustls, each state expects one input
//! (`ExpectCapabilities`, `ExpectPublicKey`, ...); anything else is a typed error.

pub mod auth;
pub mod device;
pub mod error;
pub mod keylog;
pub mod provisioner;
pub mod records;

use core::fmt;
use std::sync::Arc;
use std::time::Duration;

use mesh_crypto::provisioning::Algorithm as CryptoAlgorithm;
use mesh_crypto::{DevKey, NetKey};

use crate::time::Instant;
use crate::wire::{self, PduType, ProvValue, ProvisioningPdu};

pub use auth::{OobKind, OobValue};
pub use device::{Device, DeviceConfig, DeviceEvent};
pub use error::{CloseReason, Fault, ProvisioningError};
pub use keylog::{KeyLog, KeyLogBuffer, KeyLogEntry};
pub use provisioner::Provisioner;
pub use records::{RecordsFault, RecordsPolicy};

/// The provisioning protocol timeout: a session with no progress for this long fails
/// (MshPRT v1.1 §5.4.4; reference §2.3: 60 s in Zephyr and ESP-IDF).
pub const PROTOCOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Which provisioning algorithm the provisioner may select (MshPRT v1.1 §5.4.1.3, §5.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlgorithmPolicy {
    /// BTM_ECDH_P256_HMAC_SHA256_AES_CCM when the device offers it, else
    /// BTM_ECDH_P256_CMAC_AES128_AES_CCM.
    #[default]
    Auto,
    /// Only BTM_ECDH_P256_CMAC_AES128_AES_CCM; refuse a device that does not offer it.
    Cmac,
    /// Only BTM_ECDH_P256_HMAC_SHA256_AES_CCM; refuse a device that does not offer it.
    Hmac,
}

/// Which authentication method the provisioner may select (MshPRT v1.1 §5.4.2.4).
#[derive(Clone, PartialEq, Eq)]
pub enum AuthPolicy {
    /// No OOB authentication. Also needs [`ProvisionerConfig::allow_no_oob`].
    NoOob,
    /// Static OOB with this value: 16 or 32 octets (1..=32 accepted; for the padding of other
    /// lengths see [`auth::static_auth_value`]).
    Static(Vec<u8>),
    /// Output OOB: the device shows a value, the installer enters it
    /// ([`Provisioner::provide_output_oob`]). Action preference: Numeric, Alphanumeric,
    /// Blink, Beep, Vibrate; the size is the device's largest.
    Output,
    /// Input OOB: the provisioner shows a random value, the installer enters it on the
    /// device. Action preference: Numeric, Alphanumeric, Push, Twist.
    Input,
    /// Static OOB if `static_oob` is given and the device offers it, then Output OOB, then
    /// Input OOB, then No OOB if [`ProvisionerConfig::allow_no_oob`].
    Auto {
        /// The device's static OOB value, if known.
        static_oob: Option<Vec<u8>>,
    },
}

impl Drop for AuthPolicy {
    /// A static OOB value is an AuthValue: wiped when the policy is dropped.
    fn drop(&mut self) {
        match self {
            AuthPolicy::Static(v)
            | AuthPolicy::Auto {
                static_oob: Some(v),
            } => zeroize::Zeroize::zeroize(v),
            _ => {}
        }
    }
}

impl Default for AuthPolicy {
    fn default() -> Self {
        AuthPolicy::Auto { static_oob: None }
    }
}

impl fmt::Debug for AuthPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthPolicy::NoOob => f.write_str("NoOob"),
            AuthPolicy::Static(v) => write!(f, "Static({} bytes, …)", v.len()),
            AuthPolicy::Output => f.write_str("Output"),
            AuthPolicy::Input => f.write_str("Input"),
            AuthPolicy::Auto { static_oob: None } => f.write_str("Auto"),
            AuthPolicy::Auto {
                static_oob: Some(v),
            } => {
                write!(f, "Auto {{ static_oob: {} bytes, … }}", v.len())
            }
        }
    }
}

/// What a provisioner session may negotiate (MshPRT v1.1 §5.4.1.3, §5.4.3).
#[derive(Debug, Clone)]
pub struct ProvisionerConfig {
    /// Algorithm policy.
    pub algorithm: AlgorithmPolicy,
    /// Authentication policy.
    pub auth: AuthPolicy,
    /// Whether a session may use No OOB authentication (unauthenticated, open to a
    /// man-in-the-middle). Default false: a device that offers no OOB is refused.
    pub allow_no_oob: bool,
    /// The device's public key known out of band (`X ‖ Y`). If the device advertises an OOB
    /// public key, Start selects it (Public Key = 0x01) and the device sends none; otherwise the
    /// key the device sends must equal this one ([`ProvisioningError::OobPublicKeyMismatch`]).
    pub oob_public_key: Option<[u8; 64]>,
    /// Attention Duration of the Invite, in seconds (§5.4.1.1).
    pub attention_duration: u8,
    /// No progress for this long fails the session ([`ProvisioningError::Timeout`]).
    pub protocol_timeout: Duration,
    /// Certificate-based provisioning: fetch the device's certificate records before Invite
    /// ([`Event::RecordsReceived`]). Default [`RecordsPolicy::None`].
    pub records: RecordsPolicy,
    /// Where the session's secrets go (ECDH private key, AuthValue, randoms, session keys),
    /// for test and development runs whose capture must be decryptable and replayable
    /// ([`keylog`]). Default `None`: nothing is logged.
    pub key_log: Option<Arc<dyn KeyLog>>,
}

impl Default for ProvisionerConfig {
    fn default() -> Self {
        ProvisionerConfig {
            algorithm: AlgorithmPolicy::Auto,
            auth: AuthPolicy::default(),
            allow_no_oob: false,
            oob_public_key: None,
            attention_duration: 0,
            protocol_timeout: PROTOCOL_TIMEOUT,
            records: RecordsPolicy::None,
            key_log: None,
        }
    }
}

/// The network the device joins: the Provisioning Data except the address (§5.4.2.5).
#[derive(Debug, Clone)]
pub struct ProvisioningParams {
    /// The network key.
    pub net_key: NetKey,
    /// Its 12-bit global index.
    pub net_key_index: u16,
    /// Flags: bit 0 Key Refresh, bit 1 IV Update.
    pub flags: u8,
    /// The current IV Index.
    pub iv_index: u32,
}

/// The authentication a session used: the Authentication fields of Provisioning Start
/// (§5.4.1.3).
pub type AuthMethodUsed = wire::StartAuth;

/// What a successful session produced (MshPRT v1.1 §5.4.2.5).
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The node's primary element address.
    pub address: u16,
    /// Its number of elements.
    pub elements: u8,
    /// The algorithm used.
    pub algorithm: CryptoAlgorithm,
    /// The authentication used.
    pub auth: AuthMethodUsed,
    /// Whether the device's public key was taken out of band (Start Public Key = 0x01).
    pub public_key_oob: bool,
    /// The new node's device key.
    pub device_key: DevKey,
    /// The device's public key.
    pub device_public_key: mesh_crypto::ecdh::PublicKey,
    /// The device's Capabilities.
    pub capabilities: wire::Capabilities,
}

/// What a [`Provisioner`] reports to its caller ([`Provisioner::poll_event`]).
#[derive(Debug, Clone)]
pub enum Event {
    /// Certificate-based provisioning ([`ProvisionerConfig::records`]): the device's records,
    /// reassembled, before Invite. Validate the chain, then answer with
    /// [`Provisioner::provide_device_public_key`] (the device certificate's P-256 key) or
    /// [`Provisioner::reject_certificate`]. The protocol timer keeps running meanwhile.
    RecordsReceived {
        /// Record 0x0001, as received (DER X.509 for a conforming device).
        device_certificate: Vec<u8>,
        /// Records 0x0002..=0x0010 that the device listed, in Record ID order.
        intermediates: Vec<Vec<u8>>,
        /// The Records List as received.
        list: Vec<wire::RecordId>,
    },
    /// The device's Provisioning Capabilities (§5.4.1.2).
    CapabilitiesReceived(wire::Capabilities),
    /// Answer with [`Provisioner::set_unicast_address`]: the primary address of a free range
    /// of `elements` addresses.
    NeedUnicastAddress {
        /// The device's number of elements.
        elements: u8,
    },
    /// Output OOB (§5.4.2.4): ask the installer for what the device shows, and answer with
    /// [`Provisioner::provide_output_oob`].
    OutputOobRequested {
        /// What the device does (blink, show a number, ...).
        action: wire::OutputOobAction,
        /// Digits or characters.
        size: u8,
    },
    /// Input OOB (§5.4.2.4): show this value to the installer, who enters it on the device;
    /// the session continues when the device sends Input Complete.
    InputOobDisplay {
        /// What the installer does on the device (type a number, push a button, ...).
        action: wire::InputOobAction,
        /// The value (show it with [`OobValue::expose_secret`]).
        value: OobValue,
    },
    /// Write-ahead: store the device key and the address range durably, then call
    /// [`Provisioner::commit_done`]. The Provisioning Data is sent only after that, so a crash
    /// never leaves a provisioned node whose device key is lost.
    CommitRequired {
        /// The primary element address.
        address: u16,
        /// The number of elements.
        elements: u8,
        /// The new node's device key.
        device_key: DevKey,
    },
    /// The device sent Provisioning Complete (§5.4.1.9); close the link with reason Success.
    Complete(Outcome),
    /// The session failed; close the link with [`Provisioner::close_reason`].
    Failed(ProvisioningError),
}

/// Direction of a PDU in a [`TranscriptEntry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent by this side.
    Sent,
    /// Received from the peer.
    Received,
}

/// One provisioning PDU as it went over the air, for the TUI and debugging. The bytes are
/// exactly what is on air, nothing more (the Data PDU is encrypted).
#[derive(Clone, PartialEq, Eq)]
pub struct TranscriptEntry {
    /// When it was sent or received.
    pub at: Instant,
    /// Sent or received.
    pub direction: Direction,
    /// The PDU type (the type octet), `None` for an empty PDU.
    pub pdu_type: Option<PduType>,
    /// The whole PDU, type octet included.
    pub bytes: Vec<u8>,
}

impl TranscriptEntry {
    /// The specification's name of the PDU type, or `"RFU/invalid"`.
    pub fn name(&self) -> &'static str {
        self.pdu_type
            .and_then(|t| t.name())
            .unwrap_or("RFU/invalid")
    }
}

impl fmt::Debug for TranscriptEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {:?} {} ({} octets)",
            self.at,
            self.direction,
            self.name(),
            self.bytes.len()
        )
    }
}

pub(crate) fn transcript_entry(at: Instant, direction: Direction, bytes: &[u8]) -> TranscriptEntry {
    TranscriptEntry {
        at,
        direction,
        pdu_type: bytes.first().map(|&b| PduType(b)),
        bytes: bytes.to_vec(),
    }
}

/// The wire value of a toolbox algorithm.
pub(crate) const fn wire_algorithm(alg: CryptoAlgorithm) -> wire::Algorithm {
    wire::Algorithm(alg.id())
}

/// Parses a PDU; once the algorithm is known, a Confirmation or Random of the other length is
/// malformed too (§5.4.1.6, §5.4.1.7).
pub(crate) fn parse_pdu(
    bytes: &[u8],
    alg: Option<CryptoAlgorithm>,
) -> Result<ProvisioningPdu, ProvisioningError> {
    let pdu = match alg {
        Some(a) => ProvisioningPdu::parse_with_algorithm(bytes, wire_algorithm(a)),
        None => ProvisioningPdu::parse(bytes),
    };
    pdu.map_err(ProvisioningError::Malformed)
}

/// A Confirmation or Random value for the wire from 16 or 32 octets.
pub(crate) fn prov_value(bytes: &[u8]) -> Result<ProvValue, ProvisioningError> {
    if let Ok(v) = <[u8; 16]>::try_from(bytes) {
        Ok(ProvValue::Short(v))
    } else if let Ok(v) = <[u8; 32]>::try_from(bytes) {
        Ok(ProvValue::Long(v))
    } else {
        Err(ProvisioningError::Crypto(
            mesh_crypto::CryptoError::InvalidLength {
                what: "Confirmation/Random",
                expected: 16,
                actual: bytes.len(),
            },
        ))
    }
}

/// The protocol timer: one deadline, re-armed on progress (DESIGN.md rule 1).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProtocolTimer {
    timeout: Duration,
    deadline: Option<Instant>,
}

impl ProtocolTimer {
    pub(crate) const fn new(timeout: Duration) -> Self {
        ProtocolTimer {
            timeout,
            deadline: None,
        }
    }

    /// Re-arms the timer: progress was made at `now`.
    pub(crate) fn arm(&mut self, now: Instant) {
        self.deadline = Some(now + self.timeout);
    }

    pub(crate) fn stop(&mut self) {
        self.deadline = None;
    }

    pub(crate) const fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the timer has expired at `now` (false if it is not running).
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }
}
