//! P-256 key pairs and ECDH for provisioning (Mesh Protocol 1.1 §5.4.2.3).
//!
//! Public keys travel as 64 octets `X ‖ Y`, big-endian, without the SEC1 `0x04` prefix
//! (§5.4.1.4). Every key received from a peer goes through [`PublicKey::from_bytes`], which
//! refuses coordinates outside the field, points not on the curve and the point at infinity
//! (which has no `X ‖ Y` encoding; all zeros is refused explicitly). P-256 has cofactor 1, so a
//! point on the curve is in the prime-order group and no further subgroup check is needed.

use core::fmt;

use p256::elliptic_curve::Generate;
use p256::elliptic_curve::sec1::ToSec1Point;
use rand_core::CryptoRng;

use crate::keys::EcdhSecret;
use crate::{CryptoError, Result};

/// A validated P-256 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    raw: [u8; 64],
    point: p256::PublicKey,
}

impl PublicKey {
    /// Validates and imports `X ‖ Y` (64 octets, big-endian).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let raw: [u8; 64] = bytes.try_into().map_err(|_| CryptoError::InvalidLength {
            what: "P-256 public key",
            expected: 64,
            actual: bytes.len(),
        })?;
        if raw.iter().all(|&b| b == 0) {
            return Err(CryptoError::InvalidPublicKey(
                "all zeros (the point at infinity)",
            ));
        }
        let mut sec1 = [0u8; 65];
        sec1[0] = 0x04;
        sec1[1..].copy_from_slice(&raw);
        let point = p256::PublicKey::from_sec1_bytes(&sec1).map_err(|_| {
            CryptoError::InvalidPublicKey("coordinates out of range or point not on the curve")
        })?;
        Ok(Self { raw, point })
    }

    /// The 64-octet `X ‖ Y` encoding.
    pub const fn to_bytes(&self) -> [u8; 64] {
        self.raw
    }

    /// The 64-octet `X ‖ Y` encoding, borrowed.
    pub const fn as_bytes(&self) -> &[u8; 64] {
        &self.raw
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}…)", crate::hex::encode(&self.raw[..8]))
    }
}

/// An ephemeral P-256 key pair. The private scalar zeroizes on drop and never prints.
#[derive(Clone)]
pub struct KeyPair {
    secret: p256::SecretKey,
    public: PublicKey,
}

impl KeyPair {
    /// A fresh key pair from the injected RNG (§5.4.2.3: a new key pair for every session).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_secret(<p256::SecretKey as Generate>::generate_from_rng(rng))
    }

    /// A key pair from a known private scalar (32 octets, big-endian): for the specification's
    /// sample data, for replaying a recorded session, and for a device's static OOB key pair.
    pub fn from_private_bytes(private: &[u8]) -> Result<Self> {
        if private.len() != 32 {
            return Err(CryptoError::InvalidLength {
                what: "P-256 private key",
                expected: 32,
                actual: private.len(),
            });
        }
        let secret =
            p256::SecretKey::from_slice(private).map_err(|_| CryptoError::InvalidPrivateKey)?;
        Ok(Self::from_secret(secret))
    }

    fn from_secret(secret: p256::SecretKey) -> Self {
        let point = secret.public_key();
        let sec1 = point.to_sec1_point(false);
        let mut raw = [0u8; 64];
        // An uncompressed SEC1 point of a valid secret is 65 octets: 0x04 ‖ X ‖ Y.
        if let Some(xy) = sec1.as_bytes().get(1..65) {
            raw.copy_from_slice(xy);
        }
        Self {
            secret,
            public: PublicKey { raw, point },
        }
    }

    /// Our public key, to send in the Provisioning Public Key PDU.
    pub const fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The ECDH shared secret with a peer's validated public key (§5.4.2.3). Refuses a peer
    /// key equal to our own: a device that echoes our key is attempting a reflection attack.
    pub fn ecdh(&self, peer: &PublicKey) -> Result<EcdhSecret> {
        if peer.raw == self.public.raw {
            return Err(CryptoError::InvalidPublicKey(
                "identical to our own public key",
            ));
        }
        let shared = self.secret.diffie_hellman(&peer.point);
        EcdhSecret::from_slice(shared.raw_secret_bytes())
    }

    /// The private scalar, for a session key log only. Never log it.
    pub fn expose_private_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes().into()
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .field("secret", &"…")
            .finish()
    }
}
