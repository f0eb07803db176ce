//! The four 13-octet AES-CCM nonces of the mesh layers (Mesh Protocol 1.1 §3.9.5).
//! All multi-octet fields are big-endian.

/// Nonce type octet values (§3.9.5, Table 3.80).
pub mod nonce_type {
    /// Network nonce.
    pub const NETWORK: u8 = 0x00;
    /// Application nonce.
    pub const APPLICATION: u8 = 0x01;
    /// Device nonce.
    pub const DEVICE: u8 = 0x02;
    /// Proxy nonce.
    pub const PROXY: u8 = 0x03;
}

fn put(out: &mut [u8; 13], seq: u32, src: u16, dst: u16, iv_index: u32) {
    out[2..5].copy_from_slice(&seq.to_be_bytes()[1..]);
    out[5..7].copy_from_slice(&src.to_be_bytes());
    out[7..9].copy_from_slice(&dst.to_be_bytes());
    out[9..13].copy_from_slice(&iv_index.to_be_bytes());
}

/// Network nonce: `0x00 ‖ CTL|TTL ‖ SEQ ‖ SRC ‖ 0x0000 ‖ IV Index` (§3.9.5.1).
/// `seq` uses its low 24 bits, `ttl` its low 7.
pub fn network(ctl: bool, ttl: u8, seq: u32, src: u16, iv_index: u32) -> [u8; 13] {
    let mut n = [0u8; 13];
    n[0] = nonce_type::NETWORK;
    n[1] = (u8::from(ctl) << 7) | (ttl & 0x7f);
    put(&mut n, seq, src, 0, iv_index);
    n
}

/// Application nonce: `0x01 ‖ ASZMIC<<7 ‖ SEQ ‖ SRC ‖ DST ‖ IV Index` (§3.9.5.2).
pub fn application(aszmic: bool, seq: u32, src: u16, dst: u16, iv_index: u32) -> [u8; 13] {
    let mut n = [0u8; 13];
    n[0] = nonce_type::APPLICATION;
    n[1] = u8::from(aszmic) << 7;
    put(&mut n, seq, src, dst, iv_index);
    n
}

/// Device nonce: `0x02 ‖ ASZMIC<<7 ‖ SEQ ‖ SRC ‖ DST ‖ IV Index` (§3.9.5.3).
pub fn device(aszmic: bool, seq: u32, src: u16, dst: u16, iv_index: u32) -> [u8; 13] {
    let mut n = application(aszmic, seq, src, dst, iv_index);
    n[0] = nonce_type::DEVICE;
    n
}

/// Proxy nonce: `0x03 ‖ 0x00 ‖ SEQ ‖ SRC ‖ 0x0000 ‖ IV Index` (§3.9.5.4).
pub fn proxy(seq: u32, src: u16, iv_index: u32) -> [u8; 13] {
    let mut n = [0u8; 13];
    n[0] = nonce_type::PROXY;
    put(&mut n, seq, src, 0, iv_index);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        assert_eq!(
            crate::hex::encode(&network(true, 0, 1, 0x1201, 0x12345678)),
            "00800000011201000012345678"
        );
        assert_eq!(
            crate::hex::encode(&device(false, 0x3129ab, 0x0003, 0x1201, 0x12345678)),
            "02003129ab0003120112345678"
        );
        assert_eq!(
            crate::hex::encode(&application(true, 0x07080b, 0x1234, 0x8105, 0x12345677)),
            "018007080b1234810512345677"
        );
        assert_eq!(
            crate::hex::encode(&proxy(1, 0x0001, 0)),
            "03000000010001000000000000"
        );
    }
}
