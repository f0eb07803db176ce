//! Network PDU encryption and header obfuscation (Mesh Protocol 1.1 §3.4.4.2, §3.9.7.2,
//! §3.9.7.3).
//!
//! Layout of a network PDU (§3.4.4): `IVI|NID ‖ CTL|TTL ‖ SEQ(3) ‖ SRC(2) ‖ DST(2) ‖
//! TransportPDU ‖ NetMIC`. DST and TransportPDU are encrypted with AES-CCM under the
//! EncryptionKey and the network nonce; then CTL|TTL, SEQ and SRC are obfuscated by XOR with
//! `PECB = e(PrivacyKey, 0x0000000000 ‖ IV Index ‖ PrivacyRandom)`, where PrivacyRandom is the
//! first 7 octets of the encrypted DST ‖ TransportPDU ‖ NetMIC.
//!
//! Proxy configuration messages (§6.5) are network PDUs secured the same way with the proxy
//! nonce (§3.9.5.4): [`encrypt_proxy_config_pdu`], [`decrypt_proxy_config_pdu`].

use crate::ccm::{self, MicLen};
use crate::keys::PrivacyKey;
use crate::toolbox::{K2Output, e};
use crate::{CryptoError, Result, nonce};

/// Octets before the encrypted part: IVI|NID, CTL|TTL, SEQ, SRC.
const OBFUSCATED_END: usize = 7;
/// Largest network PDU: the 29 octets an advertising bearer can carry (§3.3.1).
pub const MAX_NETWORK_PDU: usize = 29;
/// Largest transport PDU of an access message (CTL = 0) in one network PDU.
pub const MAX_ACCESS_TRANSPORT_PDU: usize = 16;
/// Largest transport PDU of a control message (CTL = 1) in one network PDU.
pub const MAX_CONTROL_TRANSPORT_PDU: usize = 12;

/// The cleartext header fields of a network PDU (§3.4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkHeader {
    /// Network control: true for transport control messages (NetMIC 64 bits).
    pub ctl: bool,
    /// Time to live, 7 bits.
    pub ttl: u8,
    /// Sequence number, 24 bits.
    pub seq: u32,
    /// Source address (a unicast address).
    pub src: u16,
    /// Destination address.
    pub dst: u16,
}

impl NetworkHeader {
    /// The NetMIC length this header implies: 4 octets for access, 8 for control.
    pub fn mic_len(&self) -> MicLen {
        if self.ctl { MicLen::Mic8 } else { MicLen::Mic4 }
    }
}

/// A decrypted network PDU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecryptedNetworkPdu {
    /// The least significant bit of the IV Index the sender used.
    pub ivi: bool,
    /// The 7-bit NID that selected the keys.
    pub nid: u8,
    /// The deobfuscated header.
    pub header: NetworkHeader,
    /// The lower transport PDU.
    pub transport_pdu: Vec<u8>,
}

/// PECB = e(PrivacyKey, 0x0000000000 ‖ IV Index ‖ PrivacyRandom) (§3.9.7.3).
pub fn pecb(privacy_key: &PrivacyKey, iv_index: u32, privacy_random: &[u8; 7]) -> [u8; 16] {
    let mut block = [0u8; 16];
    block[5..9].copy_from_slice(&iv_index.to_be_bytes());
    block[9..16].copy_from_slice(privacy_random);
    e(privacy_key.expose_secret(), &block)
}

/// Obfuscates or deobfuscates (the operation is its own inverse) octets 1..7 of a network PDU
/// whose octets 7.. are already encrypted (§3.9.7.3). Needs at least 14 octets.
pub fn obfuscate(privacy_key: &PrivacyKey, iv_index: u32, pdu: &mut [u8]) -> Result<()> {
    let random: [u8; 7] = pdu
        .get(OBFUSCATED_END..OBFUSCATED_END + 7)
        .and_then(|s| s.try_into().ok())
        .ok_or(CryptoError::InvalidLength {
            what: "network PDU",
            expected: 14,
            actual: pdu.len(),
        })?;
    let p = pecb(privacy_key, iv_index, &random);
    for (b, k) in pdu[1..OBFUSCATED_END].iter_mut().zip(p.iter()) {
        *b ^= k;
    }
    Ok(())
}

/// Builds a network PDU: encrypts DST ‖ TransportPDU with the network nonce and obfuscates the
/// header (§3.4.4.2). `iv_index` is the IV Index used for sending; its LSB becomes IVI.
pub fn encrypt_pdu(
    keys: &K2Output,
    iv_index: u32,
    header: &NetworkHeader,
    transport_pdu: &[u8],
) -> Result<Vec<u8>> {
    let n = nonce::network(header.ctl, header.ttl, header.seq, header.src, iv_index);
    seal(keys, iv_index, header, transport_pdu, &n)
}

/// Builds the network PDU of a proxy configuration message (Mesh Protocol 1.1 §6.5): CTL = 1,
/// TTL = 0, DST = 0x0000 (unassigned), DST ‖ TransportPDU encrypted with the *proxy* nonce
/// (§3.9.5.4) instead of the network nonce, NetMIC of 64 bits, header obfuscated as usual.
/// `transport_pdu` is the proxy configuration message (opcode ‖ parameters), 1..=12 octets.
pub fn encrypt_proxy_config_pdu(
    keys: &K2Output,
    iv_index: u32,
    seq: u32,
    src: u16,
    transport_pdu: &[u8],
) -> Result<Vec<u8>> {
    let header = NetworkHeader {
        ctl: true,
        ttl: 0,
        seq,
        src,
        dst: 0,
    };
    let n = nonce::proxy(seq, src, iv_index);
    seal(keys, iv_index, &header, transport_pdu, &n)
}

fn seal(
    keys: &K2Output,
    iv_index: u32,
    header: &NetworkHeader,
    transport_pdu: &[u8],
    n: &[u8; 13],
) -> Result<Vec<u8>> {
    let max = if header.ctl {
        MAX_CONTROL_TRANSPORT_PDU
    } else {
        MAX_ACCESS_TRANSPORT_PDU
    };
    if transport_pdu.is_empty() || transport_pdu.len() > max {
        return Err(CryptoError::InvalidLength {
            what: "transport PDU",
            expected: max,
            actual: transport_pdu.len(),
        });
    }
    let mic = header.mic_len();
    let mut pdu = Vec::with_capacity(9 + transport_pdu.len() + mic.len());
    pdu.push((((iv_index & 1) as u8) << 7) | (keys.nid & 0x7f));
    pdu.push((u8::from(header.ctl) << 7) | (header.ttl & 0x7f));
    pdu.extend_from_slice(&header.seq.to_be_bytes()[1..]);
    pdu.extend_from_slice(&header.src.to_be_bytes());
    pdu.extend_from_slice(&header.dst.to_be_bytes());
    pdu.extend_from_slice(transport_pdu);
    let tag = ccm::encrypt_in_place(
        keys.encryption_key.expose_secret(),
        n,
        &[],
        &mut pdu[OBFUSCATED_END..],
        mic,
    )?;
    pdu.extend_from_slice(tag.as_bytes());
    obfuscate(&keys.privacy_key, iv_index, &mut pdu)?;
    Ok(pdu)
}

/// Deobfuscates and decrypts a network PDU with the keys of one subnet and the IV Index the
/// caller chose from the IVI bit (§3.4.4.2, §3.10.6: a receiver uses IV Index − 1 when IVI
/// differs from the LSB of its current IV Index).
///
/// Errors: [`CryptoError::InvalidLength`] for fewer than 14 or more than 29 octets or a
/// PDU too short for its NetMIC, [`CryptoError::NidMismatch`] when the NID is not these keys',
/// [`CryptoError::MicMismatch`] when the NetMIC does not verify.
pub fn decrypt_pdu(keys: &K2Output, iv_index: u32, pdu: &[u8]) -> Result<DecryptedNetworkPdu> {
    open(keys, iv_index, pdu, false)
}

/// [`decrypt_pdu`] for the network PDU of a proxy configuration message (§6.5): the MIC is
/// checked with the proxy nonce (§3.9.5.4). The caller checks that CTL is 1 and DST
/// unassigned; a PDU secured with the network nonce fails here with
/// [`CryptoError::MicMismatch`], and one secured with the proxy nonce fails [`decrypt_pdu`].
pub fn decrypt_proxy_config_pdu(
    keys: &K2Output,
    iv_index: u32,
    pdu: &[u8],
) -> Result<DecryptedNetworkPdu> {
    open(keys, iv_index, pdu, true)
}

fn open(keys: &K2Output, iv_index: u32, pdu: &[u8], proxy: bool) -> Result<DecryptedNetworkPdu> {
    if pdu.len() < 14 || pdu.len() > MAX_NETWORK_PDU {
        return Err(CryptoError::InvalidLength {
            what: "network PDU",
            expected: if pdu.len() < 14 { 14 } else { MAX_NETWORK_PDU },
            actual: pdu.len(),
        });
    }
    let nid = pdu[0] & 0x7f;
    if nid != keys.nid {
        return Err(CryptoError::NidMismatch);
    }
    let mut buf = pdu.to_vec();
    obfuscate(&keys.privacy_key, iv_index, &mut buf)?;
    let ctl = buf[1] & 0x80 != 0;
    let ttl = buf[1] & 0x7f;
    let seq = u32::from_be_bytes([0, buf[2], buf[3], buf[4]]);
    let src = u16::from_be_bytes([buf[5], buf[6]]);
    let mic = if ctl { MicLen::Mic8 } else { MicLen::Mic4 };
    // DST (2) and at least one octet of transport PDU must precede the MIC.
    if buf.len() < OBFUSCATED_END + 3 + mic.len() {
        return Err(CryptoError::InvalidLength {
            what: "network PDU",
            expected: OBFUSCATED_END + 3 + mic.len(),
            actual: buf.len(),
        });
    }
    let mic_at = buf.len() - mic.len();
    let (body, tag) = buf.split_at_mut(mic_at);
    let n = if proxy {
        nonce::proxy(seq, src, iv_index)
    } else {
        nonce::network(ctl, ttl, seq, src, iv_index)
    };
    ccm::decrypt_in_place(
        keys.encryption_key.expose_secret(),
        &n,
        &[],
        &mut body[OBFUSCATED_END..],
        tag,
    )?;
    let dst = u16::from_be_bytes([body[7], body[8]]);
    Ok(DecryptedNetworkPdu {
        ivi: pdu[0] & 0x80 != 0,
        nid,
        header: NetworkHeader {
            ctl,
            ttl,
            seq,
            src,
            dst,
        },
        transport_pdu: body[9..].to_vec(),
    })
}

/// The IV Index a receiver uses for a PDU whose IVI bit is `ivi` (§3.4.4.1): the current one
/// when the LSBs match, otherwise the previous one.
pub fn rx_iv_index(current: u32, ivi: bool) -> u32 {
    if (current & 1 != 0) == ivi {
        current
    } else {
        current.wrapping_sub(1)
    }
}
