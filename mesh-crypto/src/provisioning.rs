//! Provisioning cryptography for both algorithms (Mesh Protocol 1.1 §5.4.2.4–§5.4.2.5):
//! confirmation salt, confirmation key, confirmation values, provisioning salt, session key and
//! nonce, device key, and Provisioning Data encryption.
//!
//! | step | BTM_ECDH_P256_CMAC_AES128_AES_CCM | BTM_ECDH_P256_HMAC_SHA256_AES_CCM |
//! |---|---|---|
//! | ConfirmationSalt | s1(ConfirmationInputs), 16 | s2(ConfirmationInputs), 32 |
//! | ConfirmationKey | k1(ECDH, salt, "prck"), 16 | k5(ECDH ‖ AuthValue, salt, "prck256"), 32 |
//! | Confirmation | AES-CMAC(key, Random ‖ AuthValue) | HMAC-SHA-256(key, Random) |
//! | ProvisioningSalt | s1(salt ‖ RandomP ‖ RandomD) | same |
//! | SessionKey / Nonce / DeviceKey | k1(ECDH, ProvisioningSalt, "prsk" / "prsn" / "prdk") | same |

use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::ccm::{self, MicLen};
use crate::keys::{
    AuthValue, ConfirmationKey, DevKey, EcdhSecret, ProvisioningDataPlain, SessionKey,
};
use crate::toolbox::{aes_cmac, hmac_sha256, k1, k5, s1, s2};
use crate::{CryptoError, Result};

/// Length of ConfirmationInputs: Invite (1) ‖ Capabilities (11) ‖ Start (5) ‖ two public keys
/// (64 each) (§5.4.2.4.1).
pub const CONFIRMATION_INPUTS_LEN: usize = 145;
/// Length of the Provisioning Data PDU parameters: 25 encrypted octets and an 8-octet MIC.
pub const ENCRYPTED_DATA_LEN: usize = 33;

/// A provisioning algorithm (§5.4.1.2, Table 5.19; Start PDU Algorithm field values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// BTM_ECDH_P256_CMAC_AES128_AES_CCM (0x00): 128-bit confirmation, random and AuthValue.
    CmacAes128,
    /// BTM_ECDH_P256_HMAC_SHA256_AES_CCM (0x01, Mesh 1.1): 256-bit values.
    HmacSha256,
}

impl Algorithm {
    /// The Start PDU value.
    pub const fn id(self) -> u8 {
        match self {
            Self::CmacAes128 => 0x00,
            Self::HmacSha256 => 0x01,
        }
    }

    /// The algorithm with this Start PDU value, if known.
    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            0x00 => Some(Self::CmacAes128),
            0x01 => Some(Self::HmacSha256),
            _ => None,
        }
    }

    /// Octets of AuthValue, Random, Confirmation and ConfirmationSalt: 16 or 32.
    pub const fn value_len(self) -> usize {
        match self {
            Self::CmacAes128 => 16,
            Self::HmacSha256 => 32,
        }
    }

    /// The specification's name of the algorithm.
    pub const fn name(self) -> &'static str {
        match self {
            Self::CmacAes128 => "BTM_ECDH_P256_CMAC_AES128_AES_CCM",
            Self::HmacSha256 => "BTM_ECDH_P256_HMAC_SHA256_AES_CCM",
        }
    }
}

macro_rules! public_value {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            bytes: [u8; 32],
            len: u8,
        }

        impl $name {
            /// Copies a 16- or 32-octet value.
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
                // Cannot truncate: 16 or 32.
                Ok(Self { bytes: out, len: bytes.len() as u8 })
            }

            /// The octets.
            pub fn as_bytes(&self) -> &[u8] {
                &self.bytes[..usize::from(self.len)]
            }

            /// Number of octets, 16 or 32.
            pub fn len(&self) -> usize {
                usize::from(self.len)
            }

            /// Always false.
            pub fn is_empty(&self) -> bool {
                self.len == 0
            }

            /// Constant-time equality, for comparing against attacker-chosen values.
            pub fn ct_eq(&self, other: &Self) -> bool {
                bool::from(self.len.ct_eq(&other.len) & self.bytes.ct_eq(&other.bytes))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), crate::hex::encode(self.as_bytes()))
            }
        }
    };
}

public_value!(
    /// A Provisioning Confirmation value (§5.4.1.6): 16 or 32 octets.
    Confirmation, "Confirmation");
public_value!(
    /// ConfirmationSalt (§5.4.2.4.1): s1 (16) or s2 (32) of ConfirmationInputs.
    ConfirmationSalt, "ConfirmationSalt");

/// A provisioning Random (§5.4.1.7): 16 or 32 octets. Secret until it is sent, since the
/// confirmation commits to it; zeroizes on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ProvRandom {
    bytes: [u8; 32],
    len: u8,
}

impl ProvRandom {
    /// A fresh random of the algorithm's length from the injected RNG.
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R, alg: Algorithm) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes[..alg.value_len()]);
        // Cannot truncate: 16 or 32.
        Self {
            bytes,
            len: alg.value_len() as u8,
        }
    }

    /// Copies a received 16- or 32-octet random.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let c = Confirmation::from_slice(bytes).map_err(|_| CryptoError::InvalidLength {
            what: "Random",
            expected: if bytes.len() < 16 { 16 } else { 32 },
            actual: bytes.len(),
        })?;
        Ok(Self {
            bytes: c.bytes,
            len: c.len,
        })
    }

    /// The octets (to send in the Random PDU, or to write to a session key log).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Constant-time equality: used to refuse a device that reflects our random (CVE-2020-26560).
    pub fn ct_eq(&self, other: &Self) -> bool {
        bool::from(self.len.ct_eq(&other.len) & self.bytes.ct_eq(&other.bytes))
    }
}

impl fmt::Debug for ProvRandom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProvRandom({} bytes, …)", self.len)
    }
}

fn check_len(what: &'static str, alg: Algorithm, actual: usize) -> Result<()> {
    if actual == alg.value_len() {
        Ok(())
    } else {
        Err(CryptoError::InvalidLength {
            what,
            expected: alg.value_len(),
            actual,
        })
    }
}

/// Concatenates ConfirmationInputs from the PDUs' parameters (without their type octets):
/// Invite ‖ Capabilities ‖ Start ‖ PublicKeyProvisioner ‖ PublicKeyDevice (§5.4.2.4.1).
pub fn confirmation_inputs(
    invite: &[u8; 1],
    capabilities: &[u8; 11],
    start: &[u8; 5],
    public_key_provisioner: &[u8; 64],
    public_key_device: &[u8; 64],
) -> [u8; CONFIRMATION_INPUTS_LEN] {
    let mut ci = [0u8; CONFIRMATION_INPUTS_LEN];
    ci[0] = invite[0];
    ci[1..12].copy_from_slice(capabilities);
    ci[12..17].copy_from_slice(start);
    ci[17..81].copy_from_slice(public_key_provisioner);
    ci[81..145].copy_from_slice(public_key_device);
    ci
}

/// ConfirmationSalt = s1(ConfirmationInputs) or s2(ConfirmationInputs) (§5.4.2.4.1).
pub fn confirmation_salt(alg: Algorithm, confirmation_inputs: &[u8]) -> ConfirmationSalt {
    let mut s = ConfirmationSalt {
        bytes: [0u8; 32],
        len: 16,
    };
    match alg {
        Algorithm::CmacAes128 => s.bytes[..16].copy_from_slice(&s1(confirmation_inputs)),
        Algorithm::HmacSha256 => {
            s.bytes = s2(confirmation_inputs);
            s.len = 32;
        }
    }
    s
}

/// ConfirmationKey = k1(ECDHSecret, ConfirmationSalt, "prck") or
/// k5(ECDHSecret ‖ AuthValue, ConfirmationSalt, "prck256") (§5.4.2.4.1).
pub fn confirmation_key(
    alg: Algorithm,
    ecdh: &EcdhSecret,
    salt: &ConfirmationSalt,
    auth: &AuthValue,
) -> Result<ConfirmationKey> {
    check_len("ConfirmationSalt", alg, salt.len())?;
    check_len("AuthValue", alg, auth.len())?;
    match alg {
        Algorithm::CmacAes128 => {
            let mut salt16 = [0u8; 16];
            salt16.copy_from_slice(salt.as_bytes());
            let mut k = k1(ecdh.expose_secret(), &salt16, b"prck");
            let out = ConfirmationKey::from_slice(&k);
            k.zeroize();
            out
        }
        Algorithm::HmacSha256 => {
            let mut n = [0u8; 64];
            n[..32].copy_from_slice(ecdh.expose_secret());
            n[32..].copy_from_slice(auth.expose_secret());
            let mut salt32 = [0u8; 32];
            salt32.copy_from_slice(salt.as_bytes());
            let mut k = k5(&n, &salt32, b"prck256");
            n.zeroize();
            let out = ConfirmationKey::from_slice(&k);
            k.zeroize();
            out
        }
    }
}

/// Confirmation = AES-CMAC(ConfirmationKey, Random ‖ AuthValue) or
/// HMAC-SHA-256(ConfirmationKey, Random) (§5.4.2.4.2). The HMAC algorithm has already mixed
/// AuthValue into the key.
pub fn confirmation(
    alg: Algorithm,
    key: &ConfirmationKey,
    random: &ProvRandom,
    auth: &AuthValue,
) -> Result<Confirmation> {
    check_len("ConfirmationKey", alg, key.len())?;
    check_len("Random", alg, random.as_bytes().len())?;
    check_len("AuthValue", alg, auth.len())?;
    let mut c = Confirmation {
        bytes: [0u8; 32],
        len: 16,
    };
    match alg {
        Algorithm::CmacAes128 => {
            let mut k = [0u8; 16];
            k.copy_from_slice(key.expose_secret());
            c.bytes[..16]
                .copy_from_slice(&aes_cmac(&k, &[random.as_bytes(), auth.expose_secret()]));
            k.zeroize();
        }
        Algorithm::HmacSha256 => {
            let mut k = [0u8; 32];
            k.copy_from_slice(key.expose_secret());
            c.bytes = hmac_sha256(&k, &[random.as_bytes()]);
            c.len = 32;
            k.zeroize();
        }
    }
    Ok(c)
}

/// ProvisioningSalt = s1(ConfirmationSalt ‖ RandomProvisioner ‖ RandomDevice) (§5.4.2.5).
pub fn provisioning_salt(
    salt: &ConfirmationSalt,
    random_provisioner: &ProvRandom,
    random_device: &ProvRandom,
) -> [u8; 16] {
    aes_cmac(
        &[0u8; 16],
        &[
            salt.as_bytes(),
            random_provisioner.as_bytes(),
            random_device.as_bytes(),
        ],
    )
}

/// SessionKey = k1(ECDHSecret, ProvisioningSalt, "prsk") (§5.4.2.5).
pub fn session_key(ecdh: &EcdhSecret, provisioning_salt: &[u8; 16]) -> SessionKey {
    SessionKey::from_bytes(k1(ecdh.expose_secret(), provisioning_salt, b"prsk"))
}

/// SessionNonce = the 13 least significant octets of k1(ECDHSecret, ProvisioningSalt, "prsn")
/// (§5.4.2.5).
pub fn session_nonce(ecdh: &EcdhSecret, provisioning_salt: &[u8; 16]) -> [u8; 13] {
    let full = k1(ecdh.expose_secret(), provisioning_salt, b"prsn");
    let mut n = [0u8; 13];
    n.copy_from_slice(&full[3..]);
    n
}

/// DeviceKey = k1(ECDHSecret, ProvisioningSalt, "prdk") (§3.9.6.3.2, §5.4.2.5).
pub fn device_key(ecdh: &EcdhSecret, provisioning_salt: &[u8; 16]) -> DevKey {
    DevKey::from_bytes(k1(ecdh.expose_secret(), provisioning_salt, b"prdk"))
}

/// Encrypts the 25-octet Provisioning Data into the 33 octets of the Data PDU parameters:
/// AES-CCM(SessionKey, SessionNonce, data) with a 64-bit MIC (§5.4.2.5).
pub fn encrypt_provisioning_data(
    key: &SessionKey,
    nonce: &[u8; 13],
    data: &ProvisioningDataPlain,
) -> Result<[u8; ENCRYPTED_DATA_LEN]> {
    let mut out = [0u8; ENCRYPTED_DATA_LEN];
    out[..25].copy_from_slice(data.expose_secret());
    let mic = ccm::encrypt_in_place(
        key.expose_secret(),
        nonce,
        &[],
        &mut out[..25],
        MicLen::Mic8,
    )?;
    out[25..].copy_from_slice(mic.as_bytes());
    Ok(out)
}

/// Verifies and decrypts the Data PDU parameters (33 octets). A device answers a MIC failure
/// with Provisioning Failed, Decryption Failed (§5.4.4).
pub fn decrypt_provisioning_data(
    key: &SessionKey,
    nonce: &[u8; 13],
    encrypted: &[u8],
) -> Result<ProvisioningDataPlain> {
    if encrypted.len() != ENCRYPTED_DATA_LEN {
        return Err(CryptoError::InvalidLength {
            what: "Provisioning Data",
            expected: ENCRYPTED_DATA_LEN,
            actual: encrypted.len(),
        });
    }
    let mut buf = [0u8; 25];
    buf.copy_from_slice(&encrypted[..25]);
    let r = ccm::decrypt_in_place(key.expose_secret(), nonce, &[], &mut buf, &encrypted[25..]);
    let out = r.map(|()| ProvisioningDataPlain::from_bytes(buf));
    buf.zeroize();
    out
}

/// Everything one side of a provisioning session derives once both randoms are known.
#[derive(Clone)]
pub struct SessionKeys {
    /// ProvisioningSalt.
    pub provisioning_salt: [u8; 16],
    /// SessionKey, for the Provisioning Data.
    pub session_key: SessionKey,
    /// SessionNonce.
    pub session_nonce: [u8; 13],
    /// The new node's DeviceKey.
    pub device_key: DevKey,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("session_key", &self.session_key)
            .field("device_key", &self.device_key)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// Derives ProvisioningSalt, SessionKey, SessionNonce and DeviceKey (§5.4.2.5).
    pub fn derive(
        ecdh: &EcdhSecret,
        salt: &ConfirmationSalt,
        random_provisioner: &ProvRandom,
        random_device: &ProvRandom,
    ) -> Self {
        let ps = provisioning_salt(salt, random_provisioner, random_device);
        Self {
            provisioning_salt: ps,
            session_key: session_key(ecdh, &ps),
            session_nonce: session_nonce(ecdh, &ps),
            device_key: device_key(ecdh, &ps),
        }
    }

    /// [`encrypt_provisioning_data`] with these keys.
    pub fn encrypt_data(&self, data: &ProvisioningDataPlain) -> Result<[u8; ENCRYPTED_DATA_LEN]> {
        encrypt_provisioning_data(&self.session_key, &self.session_nonce, data)
    }

    /// [`decrypt_provisioning_data`] with these keys.
    pub fn decrypt_data(&self, encrypted: &[u8]) -> Result<ProvisioningDataPlain> {
        decrypt_provisioning_data(&self.session_key, &self.session_nonce, encrypted)
    }
}

/// The confirmation stage of one provisioning session: the salt, the key and the AuthValue,
/// so that both our confirmation and the check of the peer's come from one place.
#[derive(Clone)]
pub struct ConfirmationContext {
    alg: Algorithm,
    salt: ConfirmationSalt,
    key: ConfirmationKey,
    auth: AuthValue,
}

impl fmt::Debug for ConfirmationContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfirmationContext")
            .field("alg", &self.alg)
            .field("salt", &self.salt)
            .finish_non_exhaustive()
    }
}

impl ConfirmationContext {
    /// Derives ConfirmationSalt and ConfirmationKey. `auth` must have the algorithm's length.
    pub fn new(
        alg: Algorithm,
        ecdh: &EcdhSecret,
        confirmation_inputs: &[u8; CONFIRMATION_INPUTS_LEN],
        auth: AuthValue,
    ) -> Result<Self> {
        let salt = confirmation_salt(alg, confirmation_inputs);
        let key = confirmation_key(alg, ecdh, &salt, &auth)?;
        Ok(Self {
            alg,
            salt,
            key,
            auth,
        })
    }

    /// The algorithm.
    pub const fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// ConfirmationSalt.
    pub const fn salt(&self) -> &ConfirmationSalt {
        &self.salt
    }

    /// ConfirmationKey.
    pub const fn key(&self) -> &ConfirmationKey {
        &self.key
    }

    /// The confirmation that commits to `random`.
    pub fn confirm(&self, random: &ProvRandom) -> Result<Confirmation> {
        confirmation(self.alg, &self.key, random, &self.auth)
    }

    /// Whether the peer's `confirmation` matches its revealed `random` (constant time).
    /// False on any length mismatch.
    pub fn verify(&self, random: &ProvRandom, received: &Confirmation) -> bool {
        self.confirm(random)
            .is_ok_and(|expected| expected.ct_eq(received))
    }

    /// Session keys once both randoms are known.
    pub fn session_keys(
        &self,
        ecdh: &EcdhSecret,
        random_provisioner: &ProvRandom,
        random_device: &ProvRandom,
    ) -> SessionKeys {
        SessionKeys::derive(ecdh, &self.salt, random_provisioner, random_device)
    }
}
