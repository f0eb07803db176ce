//! Secret key material as newtypes.
//!
//! Every secret here zeroizes its bytes on drop, compares in constant time, and prints as
//! `NetKey(…)` in `Debug` so that no log line, event or panic message can carry a key. There is
//! deliberately no `Display`; the bytes are reached only through `expose_secret()`, which makes
//! every place that handles raw key material easy to find.

use core::fmt;
use core::str::FromStr;

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{CryptoError, Result};

macro_rules! fixed_secret {
    ($(#[$meta:meta])* $name:ident, $len:expr, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Length in octets.
            pub const LEN: usize = $len;

            /// Wraps raw octets.
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// Copies from a slice that must be exactly [`Self::LEN`] octets long.
            pub fn from_slice(bytes: &[u8]) -> Result<Self> {
                let arr: [u8; $len] = bytes.try_into().map_err(|_| CryptoError::InvalidLength {
                    what: $what,
                    expected: $len,
                    actual: bytes.len(),
                })?;
                Ok(Self(arr))
            }

            /// Parses hex (exactly `2 * LEN` digits, optional `0x` prefix).
            pub fn from_hex(s: &str) -> Result<Self> {
                crate::hex::decode_array::<$len>($what, s).map(Self)
            }

            /// A fresh random value from the injected RNG.
            pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
                let mut bytes = [0u8; $len];
                rng.fill_bytes(&mut bytes);
                Self(bytes)
            }

            /// The raw octets. Every caller is a place where key material leaves its wrapper:
            /// keep them few, and never log the result.
            pub const fn expose_secret(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl ConstantTimeEq for $name {
            fn ct_eq(&self, other: &Self) -> subtle::Choice {
                self.0.ct_eq(&other.0)
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.ct_eq(other).into()
            }
        }

        impl Eq for $name {}

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(…)"))
            }
        }

        impl FromStr for $name {
            type Err = CryptoError;
            fn from_str(s: &str) -> Result<Self> {
                Self::from_hex(s)
            }
        }
    };
}

fixed_secret!(
    /// A network key, 128 bits (Mesh Protocol 1.1 §3.9.6.1).
    NetKey, 16, "NetKey");
fixed_secret!(
    /// An application key, 128 bits (§3.9.6.2).
    AppKey, 16, "AppKey");
fixed_secret!(
    /// A device key, 128 bits, derived at provisioning (§3.9.6.3, §5.4.2.5).
    DevKey, 16, "DevKey");
fixed_secret!(
    /// The provisioning session key (§5.4.2.5).
    SessionKey, 16, "SessionKey");
fixed_secret!(
    /// A network layer encryption key from k2 (§3.9.6.3.1).
    EncryptionKey, 16, "EncryptionKey");
fixed_secret!(
    /// A network header privacy (obfuscation) key from k2 (§3.9.6.3.1).
    PrivacyKey, 16, "PrivacyKey");
fixed_secret!(
    /// The Node Identity key (§3.9.6.3.3).
    IdentityKey, 16, "IdentityKey");
fixed_secret!(
    /// The Secure Network Beacon key (§3.9.6.3.4).
    BeaconKey, 16, "BeaconKey");
fixed_secret!(
    /// The Mesh Private Beacon key (§3.9.6.3.5).
    PrivateBeaconKey, 16, "PrivateBeaconKey");
fixed_secret!(
    /// The P-256 ECDH shared secret: the X coordinate of the shared point (§5.4.2.3).
    EcdhSecret, 32, "ECDHSecret");
fixed_secret!(
    /// The 25-octet plaintext of a Provisioning Data PDU: NetKey, NetKeyIndex, Flags,
    /// IV Index, Unicast Address (§5.4.1.7). Secret because it carries the NetKey.
    ProvisioningDataPlain, 25, "Provisioning Data");

/// A secret whose length is 16 or 32 octets depending on the provisioning algorithm.
macro_rules! alg_secret {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name {
            bytes: [u8; 32],
            len: u8,
        }

        impl $name {
            /// Copies from a slice of 16 or 32 octets.
            pub fn from_slice(bytes: &[u8]) -> Result<Self> {
                if bytes.len() != 16 && bytes.len() != 32 {
                    return Err(CryptoError::InvalidLength {
                        what: $what,
                        expected: if bytes.len() < 16 { 16 } else { 32 },
                        actual: bytes.len(),
                    });
                }
                let mut out = [0u8; 32];
                out[..bytes.len()].copy_from_slice(bytes);
                // Cannot truncate: the length was checked to be 16 or 32 just above.
                Ok(Self { bytes: out, len: bytes.len() as u8 })
            }

            /// Number of octets: 16 (CMAC algorithm) or 32 (HMAC algorithm).
            pub fn len(&self) -> usize {
                usize::from(self.len)
            }

            /// Always false: a value has 16 or 32 octets.
            pub fn is_empty(&self) -> bool {
                self.len == 0
            }

            /// The raw octets; never log them.
            pub fn expose_secret(&self) -> &[u8] {
                &self.bytes[..usize::from(self.len)]
            }
        }

        impl ConstantTimeEq for $name {
            fn ct_eq(&self, other: &Self) -> subtle::Choice {
                self.len.ct_eq(&other.len) & self.bytes.ct_eq(&other.bytes)
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.ct_eq(other).into()
            }
        }

        impl Eq for $name {}

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({} bytes, …)"), self.len)
            }
        }
    };
}

alg_secret!(
    /// The provisioning authentication value (§5.4.2.4): 16 octets with the CMAC algorithm,
    /// 32 with the HMAC algorithm. No OOB uses all zeros.
    AuthValue, "AuthValue");
alg_secret!(
    /// The provisioning confirmation key (§5.4.2.4.1): 16 octets (k1) or 32 (k5).
    ConfirmationKey, "ConfirmationKey");

impl AuthValue {
    /// All zeros of the given length, the value for No OOB authentication (§5.4.2.4).
    pub fn zeros(len: usize) -> Result<Self> {
        if len != 16 && len != 32 {
            return Err(CryptoError::InvalidLength {
                what: "AuthValue",
                expected: if len < 16 { 16 } else { 32 },
                actual: len,
            });
        }
        // Cannot truncate: len is 16 or 32.
        Ok(Self {
            bytes: [0u8; 32],
            len: len as u8,
        })
    }

    /// A fresh random value of `len` (16 or 32) octets from the injected RNG, as used for
    /// Input OOB and generated static OOB values.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R, len: usize) -> Result<Self> {
        let mut v = Self::zeros(len)?;
        rng.fill_bytes(&mut v.bytes[..len]);
        Ok(v)
    }

    /// Parses hex of 32 or 64 digits.
    pub fn from_hex(s: &str) -> Result<Self> {
        let digits = s.trim().trim_start_matches("0x");
        if digits.len() == 64 {
            crate::hex::decode_array::<32>("AuthValue", digits).and_then(|b| Self::from_slice(&b))
        } else {
            crate::hex::decode_array::<16>("AuthValue", digits).and_then(|b| Self::from_slice(&b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let k = NetKey::from_hex("7dd7364cd842ad18c17c2b820c84c3d6").unwrap();
        let s = format!("{k:?}");
        assert_eq!(s, "NetKey(…)");
        let a = AuthValue::from_slice(&[0x7d; 32]).unwrap();
        let s = format!("{a:?}");
        assert_eq!(s, "AuthValue(32 bytes, …)");
        assert!(!s.contains("7d"));
    }

    #[test]
    fn equality_and_lengths() {
        let a = AppKey::from_bytes([1; 16]);
        assert_eq!(a, AppKey::from_bytes([1; 16]));
        assert_ne!(a, AppKey::from_bytes([2; 16]));
        assert!(matches!(
            DevKey::from_slice(&[0; 15]),
            Err(CryptoError::InvalidLength {
                expected: 16,
                actual: 15,
                ..
            })
        ));
        assert!(AuthValue::from_slice(&[0; 20]).is_err());
        assert_eq!(AuthValue::zeros(16).unwrap().expose_secret(), &[0u8; 16]);
        assert!(AuthValue::zeros(17).is_err());
        assert_ne!(AuthValue::zeros(16).unwrap(), AuthValue::zeros(32).unwrap());
    }

    #[test]
    fn zeroize_clears() {
        let mut k = NetKey::from_bytes([0xaa; 16]);
        k.zeroize();
        assert_eq!(k.expose_secret(), &[0u8; 16]);
    }
}
