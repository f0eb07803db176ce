//! The Bluetooth mesh security toolbox (Mesh Protocol 1.1 §3.9, §3.10, §5.4.2).
//!
//! No I/O, no async, no clock: every function is a pure computation, and randomness is
//! injected as a [`rand_core::CryptoRng`]. Built on RustCrypto (`aes`, `cmac`, `ccm`, `hmac`,
//! `sha2`, `p256`).
//!
//! - [`toolbox`]: AES-CMAC, `e`, `s1`, `k1`–`k5`, `s2`, NetKey-derived keys, virtual addresses.
//! - [`ccm`] and [`nonce`]: AES-CCM with 32- and 64-bit MICs and the four nonces.
//! - [`network`]: network PDU encryption and header obfuscation; [`access`]: upper transport
//!   encryption with application and device keys.
//! - [`beacon`]: Secure Network beacon authentication, Mesh Private beacons, Node Identity.
//! - [`ecdh`]: P-256 key pairs, validated public key import, ECDH.
//! - [`provisioning`]: both provisioning algorithms, from confirmation to Provisioning Data.
//! - [`keys`]: secret newtypes that zeroize on drop and print redacted.
//!
//! Section numbers refer to the Mesh Protocol Specification v1.1.

pub mod access;
pub mod beacon;
pub mod ccm;
pub mod ecdh;
mod error;
pub mod hex;
pub mod keys;
pub mod network;
pub mod nonce;
pub mod provisioning;
pub mod toolbox;

pub use error::{CryptoError, Result};
pub use keys::{
    AppKey, AuthValue, BeaconKey, ConfirmationKey, DevKey, EcdhSecret, EncryptionKey, IdentityKey,
    NetKey, PrivacyKey, PrivateBeaconKey, ProvisioningDataPlain, SessionKey,
};

/// Re-export of the RNG traits the toolbox takes, so callers need not name `rand_core`.
pub use rand_core;
