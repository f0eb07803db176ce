//! The mesh security toolbox: AES-CMAC, `e`, `s1`, `k1`–`k5`, `s2` and the keys derived from a
//! NetKey (Mesh Protocol 1.1 §3.9.2).

use aes::Aes128;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use cmac::{Cmac, Mac};
use hmac::Hmac;
use sha2::Sha256;
use zeroize::Zeroize;

use crate::keys::{
    AppKey, BeaconKey, EncryptionKey, IdentityKey, NetKey, PrivacyKey, PrivateBeaconKey,
};

/// AES-CMAC (RFC 4493) with a 128-bit key over the concatenation of `parts`
/// (Mesh Protocol 1.1 §3.9.2.2).
pub fn aes_cmac(key: &[u8; 16], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = <Cmac<Aes128> as KeyInit>::new(key.into());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA-256 (RFC 2104) with a 256-bit key over the concatenation of `parts`
/// (Mesh Protocol 1.1 §3.9.2.3).
pub fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC zero-pads a key shorter than the hash block (64 octets) to the block size
    // (RFC 2104 §2), so padding it here gives the same MAC without a fallible constructor.
    let mut block_key = [0u8; 64];
    block_key[..32].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&block_key.into());
    block_key.zeroize();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The security function `e`: one AES-128 block encryption (§3.9.2.1).
pub fn e(key: &[u8; 16], plaintext: &[u8; 16]) -> [u8; 16] {
    let cipher = Aes128::new(key.into());
    let mut block = (*plaintext).into();
    cipher.encrypt_block(&mut block);
    block.into()
}

/// The salt generation function `s1(M) = AES-CMAC(ZERO, M)` (§3.9.2.4).
pub fn s1(m: &[u8]) -> [u8; 16] {
    aes_cmac(&[0u8; 16], &[m])
}

/// The salt generation function `s2(M) = HMAC-SHA-256(ZERO, M)` (§3.9.2.11, Mesh 1.1).
pub fn s2(m: &[u8]) -> [u8; 32] {
    hmac_sha256(&[0u8; 32], &[m])
}

/// The key derivation function `k1(N, SALT, P) = AES-CMAC(AES-CMAC(SALT, N), P)` (§3.9.2.5).
/// `N` may be any length (16 for keys, 32 for the ECDH secret).
pub fn k1(n: &[u8], salt: &[u8; 16], p: &[u8]) -> [u8; 16] {
    let mut t = aes_cmac(salt, &[n]);
    let out = aes_cmac(&t, &[p]);
    t.zeroize();
    out
}

/// The key derivation function `k5(N, SALT, P) = HMAC-SHA-256(HMAC-SHA-256(SALT, N), P)`
/// (§3.9.2.12, Mesh 1.1).
pub fn k5(n: &[u8], salt: &[u8; 32], p: &[u8]) -> [u8; 32] {
    let mut t = hmac_sha256(salt, &[n]);
    let out = hmac_sha256(&t, &[p]);
    t.zeroize();
    out
}

/// `s1("smk2")`, the salt of k2, precomputed (§3.9.2.6).
const SMK2: [u8; 16] = [
    0x4f, 0x90, 0x48, 0x0c, 0x18, 0x71, 0xbf, 0xbf, 0xfd, 0x16, 0x97, 0x1f, 0x4d, 0x8d, 0x10, 0xb1,
];
/// `s1("smk3")` (§3.9.2.7).
const SMK3: [u8; 16] = [
    0x00, 0x36, 0x44, 0x35, 0x03, 0xf1, 0x95, 0xcc, 0x8a, 0x71, 0x6e, 0x13, 0x62, 0x91, 0xc3, 0x02,
];
/// `s1("smk4")` (§3.9.2.8).
const SMK4: [u8; 16] = [
    0x0e, 0x9a, 0xc1, 0xb7, 0xce, 0xfa, 0x66, 0x87, 0x4c, 0x97, 0xee, 0x54, 0xac, 0x5f, 0x49, 0xbe,
];
/// `s1("nkik")`, salt of the IdentityKey (§3.9.6.3.3).
const NKIK: [u8; 16] = [
    0xf8, 0x79, 0x5a, 0x1a, 0xab, 0xf1, 0x82, 0xe4, 0xf1, 0x63, 0xd8, 0x6e, 0x24, 0x5e, 0x19, 0xf4,
];
/// `s1("nkbk")`, salt of the BeaconKey (§3.9.6.3.4).
const NKBK: [u8; 16] = [
    0x2c, 0x24, 0x61, 0x9a, 0xb7, 0x93, 0xc1, 0x23, 0x3f, 0x6e, 0x22, 0x67, 0x38, 0x39, 0x3d, 0xec,
];
/// `s1("nkpk")`, salt of the PrivateBeaconKey (§3.9.6.3.5).
const NKPK: [u8; 16] = [
    0x2c, 0x8b, 0x71, 0xfb, 0x5d, 0x95, 0xe8, 0x6c, 0xfb, 0x75, 0x3b, 0xfe, 0xe3, 0xab, 0x93, 0x4f,
];
/// `s1("vtad")`, salt of virtual address hashing (§3.4.2.3).
const VTAD: [u8; 16] = [
    0xce, 0xf7, 0xfa, 0x9d, 0xc4, 0x7b, 0xaf, 0x5d, 0xaa, 0xee, 0xd1, 0x94, 0x06, 0x09, 0x4f, 0x37,
];

/// Output of k2: the NID and the network layer keys (§3.9.2.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct K2Output {
    /// Network identifier, 7 bits, carried in the clear in every network PDU.
    pub nid: u8,
    /// Key for network PDU encryption (AES-CCM).
    pub encryption_key: EncryptionKey,
    /// Key for network header obfuscation.
    pub privacy_key: PrivacyKey,
}

/// The network key material derivation function `k2(N, P)` (§3.9.2.6). `P` is `0x00` for the
/// flooding credentials and `0x01 ‖ LPNAddress ‖ FriendAddress ‖ LPNCounter ‖ FriendCounter`
/// for friendship credentials (§3.9.6.3.1); see [`friendship_p`].
pub fn k2(n: &NetKey, p: &[u8]) -> K2Output {
    let mut t = aes_cmac(&SMK2, &[n.expose_secret()]);
    let mut t1 = aes_cmac(&t, &[p, &[0x01]]);
    let t2 = aes_cmac(&t, &[&t1, p, &[0x02]]);
    let t3 = aes_cmac(&t, &[&t2, p, &[0x03]]);
    let nid = t1[15] & 0x7f;
    t.zeroize();
    t1.zeroize();
    K2Output {
        nid,
        encryption_key: EncryptionKey::from_bytes(t2),
        privacy_key: PrivacyKey::from_bytes(t3),
    }
}

/// The `P` of k2 for friendship credentials (§3.9.6.3.1): `0x01 ‖ LPNAddress ‖ FriendAddress ‖
/// LPNCounter ‖ FriendCounter`, all big-endian.
pub fn friendship_p(lpn: u16, friend: u16, lpn_counter: u16, friend_counter: u16) -> [u8; 9] {
    let mut p = [0u8; 9];
    p[0] = 0x01;
    p[1..3].copy_from_slice(&lpn.to_be_bytes());
    p[3..5].copy_from_slice(&friend.to_be_bytes());
    p[5..7].copy_from_slice(&lpn_counter.to_be_bytes());
    p[7..9].copy_from_slice(&friend_counter.to_be_bytes());
    p
}

/// The derivation function `k3(N)`: the 64-bit Network ID (§3.9.2.7).
pub fn k3(n: &NetKey) -> [u8; 8] {
    let mut t = aes_cmac(&SMK3, &[n.expose_secret()]);
    let full = aes_cmac(&t, &[b"id64", &[0x01]]);
    t.zeroize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&full[8..]);
    out
}

/// The derivation function `k4(N)`: the 6-bit application key identifier AID (§3.9.2.8).
pub fn k4(n: &AppKey) -> u8 {
    let mut t = aes_cmac(&SMK4, &[n.expose_secret()]);
    let full = aes_cmac(&t, &[b"id6", &[0x01]]);
    t.zeroize();
    full[15] & 0x3f
}

/// `k1(N, salt, "id128" ‖ 0x01)`, the pattern of the NetKey-derived identity and beacon keys.
fn id128(n: &NetKey, salt: &[u8; 16]) -> [u8; 16] {
    k1(n.expose_secret(), salt, b"id128\x01")
}

/// IdentityKey = k1(NetKey, s1("nkik"), "id128" ‖ 0x01) (§3.9.6.3.3).
pub fn identity_key(n: &NetKey) -> IdentityKey {
    IdentityKey::from_bytes(id128(n, &NKIK))
}

/// BeaconKey = k1(NetKey, s1("nkbk"), "id128" ‖ 0x01) (§3.9.6.3.4).
pub fn beacon_key(n: &NetKey) -> BeaconKey {
    BeaconKey::from_bytes(id128(n, &NKBK))
}

/// PrivateBeaconKey = k1(NetKey, s1("nkpk"), "id128" ‖ 0x01) (§3.9.6.3.5, Mesh 1.1).
pub fn private_beacon_key(n: &NetKey) -> PrivateBeaconKey {
    PrivateBeaconKey::from_bytes(id128(n, &NKPK))
}

/// The virtual address of a Label UUID: `0b10` in the top bits and the low 14 bits of
/// `AES-CMAC(s1("vtad"), LabelUUID)` (§3.4.2.3).
pub fn virtual_address(label_uuid: &[u8; 16]) -> u16 {
    let h = aes_cmac(&VTAD, &[label_uuid]);
    0x8000 | (u16::from_be_bytes([h[14], h[15]]) & 0x3fff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precomputed_salts_match_s1() {
        for (text, salt) in [
            ("smk2", SMK2),
            ("smk3", SMK3),
            ("smk4", SMK4),
            ("nkik", NKIK),
            ("nkbk", NKBK),
            ("nkpk", NKPK),
            ("vtad", VTAD),
        ] {
            assert_eq!(s1(text.as_bytes()), salt, "s1({text:?})");
        }
    }

    /// RFC 4493 §4 example 2 (16-octet message), so AES-CMAC itself is pinned to its source.
    #[test]
    fn rfc4493_example() {
        let key = [
            0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf,
            0x4f, 0x3c,
        ];
        let msg = [
            0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96, 0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93,
            0x17, 0x2a,
        ];
        let tag = [
            0x07, 0x0a, 0x16, 0xb4, 0x6b, 0x4d, 0x41, 0x44, 0xf7, 0x9b, 0xdd, 0x9d, 0xd0, 0x4a,
            0x28, 0x7c,
        ];
        assert_eq!(aes_cmac(&key, &[&msg]), tag);
        assert_eq!(aes_cmac(&key, &[&msg[..5], &msg[5..]]), tag);
    }

    /// Virtual address of Label UUID 12345678-1234-1234-1234-12345678abcd is 0xadd5
    /// (reference §8.2, Nordic iOS library test).
    #[test]
    fn virtual_address_sample() {
        let label = [
            0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x12, 0x34, 0x12, 0x34, 0x12, 0x34, 0x56, 0x78,
            0xab, 0xcd,
        ];
        assert_eq!(virtual_address(&label), 0xadd5);
    }
}
