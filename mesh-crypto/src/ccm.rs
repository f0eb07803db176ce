//! AES-CCM with a 13-octet nonce (L = 2) and a 4- or 8-octet MIC, as every mesh layer uses it
//! (Mesh Protocol 1.1 §3.9.2.3, RFC 3610).

use aes::Aes128;
use ccm::Ccm;
use ccm::aead::{AeadInOut, KeyInit};
use ccm::consts::{U4, U8, U13};

use crate::{CryptoError, Result};

type Ccm4 = Ccm<Aes128, U4, U13>;
type Ccm8 = Ccm<Aes128, U8, U13>;

/// The length of a message integrity check: NetMIC, TransMIC or the Provisioning Data MIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MicLen {
    /// 32-bit MIC: access messages' network layer, unsegmented or SZMIC = 0 transport.
    Mic4,
    /// 64-bit MIC: control messages' network layer, SZMIC = 1, provisioning data, beacons.
    Mic8,
}

impl MicLen {
    /// Octets of the MIC.
    pub const fn len(self) -> usize {
        match self {
            Self::Mic4 => 4,
            Self::Mic8 => 8,
        }
    }

    /// Never true; present for clippy's `len_without_is_empty`.
    pub const fn is_empty(self) -> bool {
        false
    }
}

/// A MIC as returned by [`encrypt_in_place`]: the first `len` octets of `bytes` are valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mic {
    bytes: [u8; 8],
    len: MicLen,
}

impl Mic {
    /// The MIC octets.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len.len()]
    }
}

/// Encrypts `buf` in place and returns the MIC (detached) (MshPRT v1.1 §3.9.2.3).
pub fn encrypt_in_place(
    key: &[u8; 16],
    nonce: &[u8; 13],
    aad: &[u8],
    buf: &mut [u8],
    mic: MicLen,
) -> Result<Mic> {
    check_len(buf.len())?;
    let mut out = [0u8; 8];
    match mic {
        MicLen::Mic4 => {
            let tag = Ccm4::new(key.into())
                .encrypt_inout_detached(nonce.into(), aad, buf.into())
                .map_err(|_| too_long(buf.len()))?;
            out[..4].copy_from_slice(&tag);
        }
        MicLen::Mic8 => {
            let tag = Ccm8::new(key.into())
                .encrypt_inout_detached(nonce.into(), aad, buf.into())
                .map_err(|_| too_long(buf.len()))?;
            out.copy_from_slice(&tag);
        }
    }
    Ok(Mic {
        bytes: out,
        len: mic,
    })
}

/// Checks `mic` over `buf` and decrypts it in place. On a MIC mismatch `buf` is left as it
/// was given (the ccm crate does not release unauthenticated plaintext).
pub fn decrypt_in_place(
    key: &[u8; 16],
    nonce: &[u8; 13],
    aad: &[u8],
    buf: &mut [u8],
    mic: &[u8],
) -> Result<()> {
    check_len(buf.len())?;
    match mic.len() {
        4 => Ccm4::new(key.into())
            .decrypt_inout_detached(
                nonce.into(),
                aad,
                buf.into(),
                mic.try_into().map_err(|_| CryptoError::MicMismatch)?,
            )
            .map_err(|_| CryptoError::MicMismatch),
        8 => Ccm8::new(key.into())
            .decrypt_inout_detached(
                nonce.into(),
                aad,
                buf.into(),
                mic.try_into().map_err(|_| CryptoError::MicMismatch)?,
            )
            .map_err(|_| CryptoError::MicMismatch),
        n => Err(CryptoError::InvalidLength {
            what: "MIC",
            expected: if n < 4 { 4 } else { 8 },
            actual: n,
        }),
    }
}

/// Encrypts `plaintext` and returns `ciphertext ‖ MIC` (§3.9.2.3).
pub fn encrypt(
    key: &[u8; 16],
    nonce: &[u8; 13],
    aad: &[u8],
    plaintext: &[u8],
    mic: MicLen,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(plaintext.len() + mic.len());
    out.extend_from_slice(plaintext);
    let tag = encrypt_in_place(key, nonce, aad, &mut out, mic)?;
    out.extend_from_slice(tag.as_bytes());
    Ok(out)
}

/// Verifies and decrypts `ciphertext ‖ MIC`, returning the plaintext (§3.9.2.3).
pub fn decrypt(
    key: &[u8; 16],
    nonce: &[u8; 13],
    aad: &[u8],
    ciphertext_and_mic: &[u8],
    mic: MicLen,
) -> Result<Vec<u8>> {
    let split =
        ciphertext_and_mic
            .len()
            .checked_sub(mic.len())
            .ok_or(CryptoError::InvalidLength {
                what: "ciphertext and MIC",
                expected: mic.len(),
                actual: ciphertext_and_mic.len(),
            })?;
    let (ct, tag) = ciphertext_and_mic.split_at(split);
    let mut out = ct.to_vec();
    decrypt_in_place(key, nonce, aad, &mut out, tag)?;
    Ok(out)
}

/// Largest message with L = 2.
const MAX_LEN: usize = 0xffff;

fn check_len(len: usize) -> Result<()> {
    if len > MAX_LEN {
        Err(too_long(len))
    } else {
        Ok(())
    }
}

fn too_long(actual: usize) -> CryptoError {
    CryptoError::TooLong {
        what: "AES-CCM message",
        max: MAX_LEN,
        actual,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AES-CCM sample from the Nordic iOS library's CryptoTest (reference §8.7).
    #[test]
    fn nordic_sample_both_mic_sizes() {
        let key = [
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ];
        let nonce = [
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc,
        ];
        let data: Vec<u8> = (0u8..16).map(|i| i * 0x11).collect();
        let c4 = encrypt(&key, &nonce, &[], &data, MicLen::Mic4).unwrap();
        assert_eq!(
            crate::hex::encode(&c4),
            "6c7854c1e573cd62155bfa987c70673d273ab343"
        );
        let c8 = encrypt(&key, &nonce, &[], &data, MicLen::Mic8).unwrap();
        assert_eq!(
            crate::hex::encode(&c8),
            "6c7854c1e573cd62155bfa987c70673d5cfcb5ac7e3cea62"
        );
        assert_eq!(decrypt(&key, &nonce, &[], &c8, MicLen::Mic8).unwrap(), data);
        let mut bad = c4.clone();
        bad[19] ^= 1;
        assert_eq!(
            decrypt(&key, &nonce, &[], &bad, MicLen::Mic4),
            Err(CryptoError::MicMismatch)
        );
        assert!(decrypt(&key, &nonce, &[], &c4[..3], MicLen::Mic4).is_err());
    }
}
