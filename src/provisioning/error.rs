//! The one error type of the provisioning layer, and the one place that maps an error to a
//! PB-ADV Link Close reason, a Provisioning Failed error code and a line for the installer
//! (MshPRT v1.1 §5.4.4; DESIGN.md rule 4).
//!
//! Variants are grouped by whose fault they are, as rustls does:
//! - **the peer's** (the device's when we are the provisioner): malformed or unexpected PDUs,
//!   invalid or reflected values, a confirmation that does not verify, a Provisioning Failed;
//! - **ours**: the configuration or the caller (no acceptable algorithm or authentication
//!   method, No OOB not allowed, a bad OOB value or address, an API call in the wrong state);
//! - **the link's**: the protocol timeout and a link the bearer lost.
//!
//! Who sends Provisioning Failed: only the device (MshPRT v1.1 §5.4.4; reference §2.3 citing
//! Zephyr's `prov_fail`): on an error the provisioner closes the link with reason Fail and
//! sends no Failed PDU (BlueZ's initiator does send one, against this reading).
//! [`ProvisioningError::failed_code`] is therefore what the *device* role sends, and for the
//! provisioner the code that best describes the error in logs.

use mesh_crypto::CryptoError;

use super::records::record_name;
use crate::wire::{Algorithms, FailedCode, LinkCloseReason, PduType, RecordId, WireError};

/// Why a provisioning session ended, as carried by the PB-ADV Link Close (MshPRT v1.1
/// §5.3.1.4.3; reference §2): Success, Timeout or Fail.
pub type CloseReason = LinkCloseReason;

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The peer sent something wrong or refused us.
    Peer,
    /// Our configuration or the caller.
    Local,
    /// The bearer: a timeout or a lost link.
    Link,
}

/// Every way a provisioning session can fail (MshPRT v1.1 §5.4.3, §5.4.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisioningError {
    // ----- the peer's fault -----
    /// Peer: a PDU could not be parsed (RFU type, bad length, prohibited value), MshPRT v1.1
    /// §5.4.1; Failed code Invalid PDU or Invalid Format per [`WireError::failed_code`].
    #[error("malformed provisioning PDU: {0}")]
    Malformed(WireError),
    /// Peer: a well-formed PDU arrived in a state that does not expect it (MshPRT v1.1
    /// §5.4.4: Unexpected PDU).
    #[error("unexpected {received} while waiting for {expected}")]
    UnexpectedPdu {
        /// What the state machine was waiting for.
        expected: &'static str,
        /// The type received.
        received: PduType,
    },
    /// Peer: the Provisioning Start selects something the device did not advertise, or
    /// another cross-PDU rule is broken (MshPRT v1.1 §5.4.1.3; Invalid Format).
    #[error("invalid provisioning parameters: {0}")]
    InvalidParameters(WireError),
    /// Peer: the public key is not a valid P-256 point (MshPRT v1.1 §5.4.2.3; Invalid Format).
    #[error("invalid public key: {0}")]
    InvalidPublicKey(CryptoError),
    /// Peer: the device sent our own public key back (reflection; MshPRT v1.1 §5.4.2.3).
    #[error("the peer sent our own public key back")]
    ReflectedPublicKey,
    /// Peer: the device's public key differs from the one known out of band.
    #[error("the device's public key differs from the key known out of band")]
    OobPublicKeyMismatch,
    /// Peer: the Confirmation received equals our own (reflection, CVE-2020-26560).
    #[error("the peer sent our own confirmation back (CVE-2020-26560 reflection)")]
    ReflectedConfirmation,
    /// Peer: the Random received equals our own (reflection, CVE-2020-26560).
    #[error("the peer sent our own random back (CVE-2020-26560 reflection)")]
    ReflectedRandom,
    /// Peer: the peer's Confirmation does not match its Random: a wrong AuthValue on one side,
    /// or an attack (MshPRT v1.1 §5.4.2.4; Confirmation Failed).
    #[error("the peer's confirmation does not verify")]
    ConfirmationFailed,
    /// Peer: the Provisioning Data did not decrypt (device role; MshPRT v1.1 §5.4.2.5;
    /// Decryption Failed).
    #[error("provisioning data did not decrypt")]
    DecryptionFailed,
    /// Peer: the decrypted Provisioning Data carries values that cannot be accepted, such as
    /// a non-unicast address (device role; Invalid Data).
    #[error("provisioning data not acceptable: {0}")]
    InvalidData(&'static str),
    /// Peer: the device sent Provisioning Failed with this error code (MshPRT v1.1
    /// §5.4.1.10).
    #[error("device reported Provisioning Failed: {0}")]
    FailedReceived(FailedCode),
    /// Peer: the device answered our Provisioning Data with Provisioning Failed (MshPRT v1.1
    /// §5.4.1.10, §5.4.4: e.g. Decryption Failed, Unexpected Error, Cannot Assign Addresses,
    /// Invalid Data). It refused the data: it holds no key and no address, so the node
    /// committed before the Data went out is voided (`host::NodeSink::void`), not kept as
    /// `unconfirmed`. Distinct from [`ProvisioningError::FailedReceived`] (a Provisioning
    /// Failed before the Data, when nothing was committed) and from a link lost after the Data
    /// (the device may hold its keys).
    #[error("device refused its Provisioning Data with Provisioning Failed: {0}")]
    DataRefused(FailedCode),
    /// Peer: the Records List is not usable (a record ID listed twice; MshPRT v1.1 §5.4.1.14).
    #[error("invalid Records List: {0}")]
    InvalidRecordsList(&'static str),
    /// Peer: the Records List lacks a record certificate-based provisioning needs (the Device
    /// Certificate, 0x0001; MshPRT v1.1 §5.4.2).
    #[error("the device has no {} record", record_name(*.0))]
    MissingRecord(RecordId),
    /// Peer: the device listed this record, then answered Requested Record Is Not Present
    /// (MshPRT v1.1 §5.4.1.12).
    #[error("the device listed the {} record but says it is not present", record_name(*.0))]
    RecordNotPresent(RecordId),
    /// Peer: the device answered Requested Offset Is Out Of Bounds for an offset inside the
    /// Total Length it announced (MshPRT v1.1 §5.4.1.12).
    #[error("the device refused offset {offset} of the {} record as out of bounds", record_name(*.record))]
    RecordOffsetOutOfBounds {
        /// The record.
        record: RecordId,
        /// The offset requested.
        offset: u16,
    },
    /// Peer: a fragment's data runs past the record's Total Length (MshPRT v1.1 §5.4.1.12).
    #[error(
        "a fragment of the {} record runs past its Total Length ({len} octets at offset {offset}, Total Length {total_length})", record_name(*.record)
    )]
    RecordFragmentOutOfBounds {
        /// The record.
        record: RecordId,
        /// The fragment's offset.
        offset: u16,
        /// The fragment's length.
        len: usize,
        /// The Total Length announced.
        total_length: u16,
    },
    /// Peer: the Total Length of a record changed between its fragments.
    #[error("the Total Length of the {} record changed from {first} to {now}", record_name(*.record))]
    RecordTotalLengthChanged {
        /// The record.
        record: RecordId,
        /// Total Length in the first fragment.
        first: u16,
        /// Total Length in this fragment.
        now: u16,
    },
    /// Peer: the device sent an empty fragment before the end of the record: it announced more
    /// than it delivers.
    #[error("the {} record stops at {received} of its {total_length} octets", record_name(*.record))]
    RecordTruncated {
        /// The record.
        record: RecordId,
        /// Octets received.
        received: u16,
        /// The Total Length announced.
        total_length: u16,
    },
    /// Peer: a record's Total Length is above the cap (`records::MAX_RECORD_LEN`, 4096).
    #[error("the {} record is {total_length} octets long, more than the 4096 accepted", record_name(*.record))]
    RecordTooLarge {
        /// The record.
        record: RecordId,
        /// The Total Length announced.
        total_length: u16,
    },
    /// Peer: a Record Response does not answer the request (another record or offset, a
    /// fragment longer than asked for, Total Length 0, an RFU status; MshPRT v1.1 §5.4.1.12).
    #[error("invalid Record Response for the {} record: {reason}", record_name(*.record))]
    InvalidRecordResponse {
        /// The record requested.
        record: RecordId,
        /// What is wrong.
        reason: &'static str,
    },
    /// Peer: the device serves a certificate but does not advertise Public Key OOB in its
    /// Capabilities, so its certificate's key cannot be used (MshPRT v1.1 §5.4.2.3).
    #[error("the device has a certificate but does not offer its public key out of band")]
    PublicKeyOobNotOffered,
    /// Peer: the caller refused the device's certificate chain (`Provisioner::reject_certificate`);
    /// no Provisioning Data was sent.
    #[error("the device certificate was rejected: {0}")]
    CertificateRejected(String),

    // ----- our fault (configuration or caller) -----
    /// Ours: the algorithm policy allows no algorithm the device offers.
    #[error("no acceptable provisioning algorithm (device offers {})", .offered.names().join(", "))]
    NoAcceptableAlgorithm {
        /// What the device offered.
        offered: Algorithms,
    },
    /// Ours: the authentication policy allows no method the device offers.
    #[error("no acceptable authentication method: {0}")]
    NoAcceptableAuthMethod(&'static str),
    /// Ours: the device offers no OOB authentication and No OOB is not allowed
    /// (`ProvisionerConfig::allow_no_oob`).
    #[error("the device offers no OOB authentication and No OOB is not allowed")]
    NoOobNotAllowed,
    /// Ours: the configuration is unusable (for example a static OOB value of 40 octets).
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// Ours: an OOB value that does not fit the action and size; the session keeps waiting.
    #[error("invalid OOB value: {0}")]
    InvalidOobValue(&'static str),
    /// Ours: the unicast address range is not valid for the device's elements.
    #[error(
        "unicast address {address:#06x} cannot hold {elements} elements (0x0001..=0x7fff needed)"
    )]
    InvalidAddress {
        /// The address given.
        address: u16,
        /// The device's number of elements.
        elements: u8,
    },
    /// Ours: an API call made in a state that does not take it; the session is unchanged.
    #[error("{0} called in the wrong state")]
    WrongState(&'static str),
    /// Ours: the write-ahead store refused the node, so no Provisioning Data was sent and the
    /// device holds no key.
    #[error("the node could not be stored: {0}")]
    Store(String),
    /// Ours: an internal cryptographic step failed (a bug; Unexpected Error).
    #[error("internal cryptographic error: {0}")]
    Crypto(CryptoError),

    // ----- the link's fault -----
    /// Link: no progress for the protocol timeout (60 s; MshPRT v1.1 §5.4.4).
    #[error("provisioning protocol timeout")]
    Timeout,
    /// Link: the bearer lost or closed the link.
    #[error("the provisioning link was closed")]
    LinkClosed,
    /// Link: the radio could not reach the device (no connectable advert, a refused GATT
    /// connection); the radio's words.
    #[error("the device could not be reached: {0}")]
    Unreachable(String),
}

impl ProvisioningError {
    /// Whose fault this is.
    pub fn fault(&self) -> Fault {
        use ProvisioningError as E;
        match self {
            E::Malformed(_)
            | E::UnexpectedPdu { .. }
            | E::InvalidParameters(_)
            | E::InvalidPublicKey(_)
            | E::ReflectedPublicKey
            | E::OobPublicKeyMismatch
            | E::ReflectedConfirmation
            | E::ReflectedRandom
            | E::ConfirmationFailed
            | E::DecryptionFailed
            | E::InvalidData(_)
            | E::FailedReceived(_)
            | E::DataRefused(_)
            | E::InvalidRecordsList(_)
            | E::MissingRecord(_)
            | E::RecordNotPresent(_)
            | E::RecordOffsetOutOfBounds { .. }
            | E::RecordFragmentOutOfBounds { .. }
            | E::RecordTotalLengthChanged { .. }
            | E::RecordTruncated { .. }
            | E::RecordTooLarge { .. }
            | E::InvalidRecordResponse { .. }
            | E::PublicKeyOobNotOffered
            | E::CertificateRejected(_) => Fault::Peer,
            E::NoAcceptableAlgorithm { .. }
            | E::NoAcceptableAuthMethod(_)
            | E::NoOobNotAllowed
            | E::InvalidConfig(_)
            | E::InvalidOobValue(_)
            | E::InvalidAddress { .. }
            | E::WrongState(_)
            | E::Store(_)
            | E::Crypto(_) => Fault::Local,
            E::Timeout | E::LinkClosed | E::Unreachable(_) => Fault::Link,
        }
    }

    /// The PB-ADV Link Close reason for a session that ended with this error (reference §2):
    /// Timeout for the protocol timeout, Fail for everything else.
    pub fn close_reason(&self) -> CloseReason {
        match self {
            ProvisioningError::Timeout => LinkCloseReason::TIMEOUT,
            _ => LinkCloseReason::FAIL,
        }
    }

    /// The Provisioning Failed error code (MshPRT v1.1 §5.4.1.10, §5.4.4). The device role
    /// sends it; the provisioner never does (see the module documentation).
    pub fn failed_code(&self) -> FailedCode {
        use ProvisioningError as E;
        match self {
            E::Malformed(w) => w.failed_code(),
            E::UnexpectedPdu { .. } => FailedCode::UNEXPECTED_PDU,
            E::InvalidParameters(_)
            | E::InvalidPublicKey(_)
            | E::ReflectedPublicKey
            | E::OobPublicKeyMismatch => FailedCode::INVALID_FORMAT,
            E::ReflectedConfirmation | E::ReflectedRandom | E::ConfirmationFailed => {
                FailedCode::CONFIRMATION_FAILED
            }
            E::DecryptionFailed => FailedCode::DECRYPTION_FAILED,
            E::InvalidData(_) => FailedCode::INVALID_DATA,
            E::FailedReceived(code) | E::DataRefused(code) => *code,
            E::InvalidRecordsList(_)
            | E::RecordOffsetOutOfBounds { .. }
            | E::RecordFragmentOutOfBounds { .. }
            | E::RecordTotalLengthChanged { .. }
            | E::RecordTruncated { .. }
            | E::RecordTooLarge { .. }
            | E::InvalidRecordResponse { .. } => FailedCode::INVALID_FORMAT,
            E::InvalidAddress { .. } => FailedCode::CANNOT_ASSIGN_ADDRESSES,
            E::NoAcceptableAlgorithm { .. }
            | E::NoAcceptableAuthMethod(_)
            | E::NoOobNotAllowed
            | E::InvalidConfig(_)
            | E::InvalidOobValue(_)
            | E::WrongState(_)
            | E::Store(_)
            | E::Crypto(_)
            | E::Timeout
            | E::LinkClosed
            | E::Unreachable(_)
            | E::MissingRecord(_)
            | E::RecordNotPresent(_)
            | E::PublicKeyOobNotOffered
            | E::CertificateRejected(_) => FailedCode::UNEXPECTED_ERROR,
        }
    }

    /// One line for the installer: what happened and what to do.
    pub fn user_message(&self) -> String {
        use ProvisioningError as E;
        match self {
            E::Malformed(_) | E::UnexpectedPdu { .. } | E::InvalidParameters(_) => {
                format!("the device broke the provisioning protocol ({self}); retry, and if it repeats, reset the device")
            }
            E::InvalidPublicKey(_) | E::ReflectedPublicKey | E::ReflectedConfirmation | E::ReflectedRandom => {
                format!("the device sent a forged or invalid value ({self}): possible attack; do not provision it, check that it is the right device")
            }
            E::OobPublicKeyMismatch => "the device's public key is not the one known for it: wrong device or impersonation; check the device identity".into(),
            E::ConfirmationFailed => "the device's confirmation did not match: the OOB value is probably wrong; check the label on the device or re-enter the value".into(),
            E::DecryptionFailed | E::InvalidData(_) => format!("the provisioning data was refused ({self}); retry"),
            // The code is always named: it is what a support engineer asks for.
            E::FailedReceived(code) => match *code {
                FailedCode::CONFIRMATION_FAILED => format!("device rejected the confirmation (Provisioning Failed: {code}): the OOB value is probably wrong; check the label on the device"),
                FailedCode::OUT_OF_RESOURCES => format!("device is out of resources (Provisioning Failed: {code}); power-cycle it and retry"),
                FailedCode::CANNOT_ASSIGN_ADDRESSES => format!("device cannot take the unicast address range (Provisioning Failed: {code}) before it was sent one: the device is confused; reset it and retry, and report it to its manufacturer if it repeats"),
                _ => format!("device reported Provisioning Failed: {code}; retry, and reset the device if it repeats"),
            },
            // It holds no key: the caller voids the node committed before the Data and says
            // which addresses were retired.
            E::DataRefused(code) => match *code {
                FailedCode::CANNOT_ASSIGN_ADDRESSES => format!("device refused its Provisioning Data (Provisioning Failed: {code}) and took no key; the address range it was given is valid for its element count: reset the device and retry, and report it to its manufacturer if it repeats"),
                FailedCode::DECRYPTION_FAILED => format!("device refused its Provisioning Data (Provisioning Failed: {code}) and took no key: the data did not decrypt on the device (a device fault, or the PDU was altered on the air); reset the device and retry, and do not provision it if it repeats"),
                FailedCode::OUT_OF_RESOURCES => format!("device refused its Provisioning Data (Provisioning Failed: {code}) and took no key: power-cycle it and retry"),
                _ => format!("device refused its Provisioning Data (Provisioning Failed: {code}) and took no key: reset the device and retry, and report it to its manufacturer if it repeats"),
            },
            E::InvalidRecordsList(_)
            | E::RecordOffsetOutOfBounds { .. }
            | E::RecordFragmentOutOfBounds { .. }
            | E::RecordTotalLengthChanged { .. }
            | E::RecordTruncated { .. }
            | E::RecordTooLarge { .. }
            | E::InvalidRecordResponse { .. } => format!("the device sent its certificate records incorrectly ({self}); nothing was provisioned: retry, and if it repeats, reset the device or report it to its manufacturer"),
            E::MissingRecord(_) | E::RecordNotPresent(_) => format!("{self}: it cannot be provisioned by certificate; check that it is the expected model, or provision it with another OOB method"),
            E::PublicKeyOobNotOffered => format!("{self}: it cannot be provisioned by certificate; check its firmware, or provision it with another OOB method"),
            E::CertificateRejected(reason) => format!("the device certificate could not be verified: {reason}; do not provision this device; check it comes from the expected manufacturer"),
            E::NoAcceptableAlgorithm { .. } => format!("{self}: allow the other algorithm in the configuration"),
            E::NoAcceptableAuthMethod(_) => format!("{self}: configure an authentication method the device supports (e.g. its static OOB value)"),
            E::NoOobNotAllowed => "the device supports no OOB authentication: allow No OOB explicitly (`--auth none`) only if you accept an unauthenticated device".into(),
            E::InvalidConfig(_) => format!("{self}: fix the configuration"),
            E::InvalidOobValue(_) => format!("{self}: enter the value again"),
            E::InvalidAddress { .. } => format!("{self}: choose another unicast address"),
            E::Store(_) => format!("{self}; nothing was sent to the device: fix the store (disk space, permissions) and retry"),
            E::WrongState(_) | E::Crypto(_) => format!("internal error ({self}); please report it"),
            E::Timeout => "the device stopped answering: move closer to it, check that it is powered and unprovisioned, then retry".into(),
            E::LinkClosed => "the link to the device was lost: move closer and retry".into(),
            E::Unreachable(why) => format!(
                "the device could not be reached ({why}): check that it is powered and unprovisioned, move closer and retry"
            ),
        }
    }
}

impl From<WireError> for ProvisioningError {
    fn from(e: WireError) -> Self {
        ProvisioningError::Malformed(e)
    }
}
