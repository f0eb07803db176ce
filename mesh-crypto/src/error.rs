//! The one error type of the toolbox.

use thiserror::Error;

/// What went wrong in a toolbox operation.
///
/// Every variant says whose fault it is in its doc comment, so callers above can map it to a
/// Provisioning Failed code or a user-facing message in one place.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// An input had the wrong number of octets (caller's or peer's data).
    #[error("{what}: expected {expected} bytes, got {actual}")]
    InvalidLength {
        /// Which value was being read.
        what: &'static str,
        /// Octets required.
        expected: usize,
        /// Octets given.
        actual: usize,
    },
    /// A hex string could not be decoded (user input).
    #[error("{what}: {reason}")]
    InvalidHex {
        /// Which value was being read.
        what: &'static str,
        /// The first problem found, in words.
        reason: String,
    },
    /// A peer's P-256 public key is not a point on the curve, or is the point at infinity
    /// (peer's fault; Mesh Protocol 1.1 §5.4.2.3 requires the check).
    #[error("invalid P-256 public key: {0}")]
    InvalidPublicKey(&'static str),
    /// A private key is zero or not below the curve order (caller's data).
    #[error("invalid P-256 private key: not in [1, n-1]")]
    InvalidPrivateKey,
    /// The AES-CCM MIC did not verify: wrong key, wrong nonce or tampered data (peer's data).
    #[error("message integrity check failed")]
    MicMismatch,
    /// A network PDU's NID is not the NID of the keys it was tried with (not an attack: the
    /// PDU belongs to another subnet or another network).
    #[error("NID does not match these network keys")]
    NidMismatch,
    /// A beacon's authentication value or tag did not verify (peer's data).
    #[error("beacon authentication failed")]
    BeaconAuthFailed,
    /// The message is too long for the operation (caller's data).
    #[error("{what}: at most {max} bytes, got {actual}")]
    TooLong {
        /// Which value was being read.
        what: &'static str,
        /// The largest allowed length.
        max: usize,
        /// The length given.
        actual: usize,
    },
}

/// Result alias for the toolbox.
pub type Result<T, E = CryptoError> = core::result::Result<T, E>;
