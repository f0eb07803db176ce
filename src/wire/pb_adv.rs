//! PB-ADV: the advertising provisioning bearer payload (AD type 0x29), MshPRT v1.1 §5.2.1, and
//! the Generic Provisioning PDUs it carries, MshPRT v1.1 §5.3 (reference §2).
//!
//! `Link ID (4, BE) ‖ Transaction Number (1) ‖ Generic Provisioning PDU (1..=24)`.
//! The Generic Provisioning Control octet holds the GPCF in bits 1..0 and a 6-bit field in
//! bits 7..2 (SegN, padding, Segment Index or Bearer Opcode).
//!
//! Decision (reference §2.1, Zephyr SegN formula CONFLICT): SegN is checked and produced with
//! the BlueZ / ESP-IDF formula `SegN = 0 if len ≤ 20 else ceil((len − 20) / 23)`, the only one
//! under which every segment carries data. Some Zephyr builds compute `1 + (len − 20) / 23`,
//! which differs for len = 20 + 23k (e.g. 43); such a Transaction Start is rejected here with
//! [`WireError::SegNMismatch`], and such builds in turn reject our 43-octet PDUs. Callers that
//! control PDU sizes (Record Request fragment sizes) should avoid those lengths.

use super::{Reader, WireError, expect_len};

/// Largest data in a Transaction Start, MshPRT v1.1 §5.3.1.1.
pub const START_DATA_MAX: usize = 20;
/// Largest data in a Transaction Continuation, MshPRT v1.1 §5.3.1.3.
pub const CONTINUATION_DATA_MAX: usize = 23;
/// Largest SegN (a 6-bit field).
pub const MAX_SEG_N: u8 = 63;
/// Largest provisioning PDU that PB-ADV can carry: 20 + 63 × 23 = 1469 octets.
pub const MAX_PDU_LEN: usize = START_DATA_MAX + MAX_SEG_N as usize * CONTINUATION_DATA_MAX;

/// The 3GPP TS 27.010 CRC-8 table (reflected polynomial 0x07, i.e. 0xE0).
const FCS_TABLE: [u8; 256] = fcs_table();

const fn fcs_table() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xE0
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// The Frame Check Sequence of a provisioning PDU, MshPRT v1.1 §5.3.1.1: the 3GPP TS 27.010
/// CRC-8 (reflected polynomial x⁸+x²+x+1, initial value 0xFF, result 0xFF − crc) over the
/// whole PDU.
pub const fn fcs(data: &[u8]) -> u8 {
    let mut crc: u8 = 0xFF;
    let mut i = 0;
    while i < data.len() {
        // `i < data.len()` and a u8 index into a 256-entry table: both in bounds.
        crc = FCS_TABLE[(crc ^ data[i]) as usize];
        i += 1;
    }
    0xFF - crc
}

/// The SegN for a provisioning PDU of `len` octets (see the module documentation), or `None`
/// if `len` is 0 or above [`MAX_PDU_LEN`].
pub const fn seg_n_for(len: usize) -> Option<u8> {
    if len == 0 || len > MAX_PDU_LEN {
        None
    } else if len <= START_DATA_MAX {
        Some(0)
    } else {
        // ≤ 63 because len ≤ MAX_PDU_LEN.
        Some((len - START_DATA_MAX).div_ceil(CONTINUATION_DATA_MAX) as u8)
    }
}

wire_enum! {
    /// Provisioning Bearer Control opcode, MshPRT v1.1 §5.3.1.4; 0x03–0x3F RFU.
    BearerOpcode(u8) {
        /// Link Open, §5.3.1.4.1.
        LINK_OPEN = 0x00, "Link Open";
        /// Link ACK, §5.3.1.4.2.
        LINK_ACK = 0x01, "Link ACK";
        /// Link Close, §5.3.1.4.3.
        LINK_CLOSE = 0x02, "Link Close";
    }
}

wire_enum! {
    /// Link Close reason, MshPRT v1.1 §5.3.1.4.3; 0x03–0xFF RFU, kept.
    LinkCloseReason(u8) {
        /// The link was closed because provisioning completed successfully.
        SUCCESS = 0x00, "Success";
        /// The link was closed because of a transaction timeout.
        TIMEOUT = 0x01, "Timeout";
        /// The link was closed because provisioning failed.
        FAIL = 0x02, "Fail";
    }
}

/// Provisioning Bearer Control PDU (GPCF 0b11), MshPRT v1.1 §5.3.1.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BearerControl {
    /// Link Open: the Device UUID of the device to open a link with (17 octets in all).
    LinkOpen {
        /// Device UUID.
        uuid: [u8; 16],
    },
    /// Link ACK (1 octet, no parameters).
    LinkAck,
    /// Link Close (2 octets).
    LinkClose {
        /// Why the link is closed.
        reason: LinkCloseReason,
    },
}

impl BearerControl {
    /// The opcode of this PDU.
    pub const fn opcode(&self) -> BearerOpcode {
        match self {
            BearerControl::LinkOpen { .. } => BearerOpcode::LINK_OPEN,
            BearerControl::LinkAck => BearerOpcode::LINK_ACK,
            BearerControl::LinkClose { .. } => BearerOpcode::LINK_CLOSE,
        }
    }
}

/// Transaction Start PDU (GPCF 0b00), MshPRT v1.1 §5.3.1.1.
///
/// A parsed value has TotalLength ≥ 1, SegN consistent with TotalLength, and exactly
/// min(TotalLength, 20) data octets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionStart {
    /// The number of the last segment (0–63).
    pub seg_n: u8,
    /// Length of the whole provisioning PDU.
    pub total_length: u16,
    /// FCS of the whole provisioning PDU (see [`fcs`]).
    pub fcs: u8,
    /// The first ≤ 20 octets of the provisioning PDU.
    pub data: Vec<u8>,
}

/// Transaction Continuation PDU (GPCF 0b10), MshPRT v1.1 §5.3.1.3.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionContinuation {
    /// Segment index, 1–63.
    pub segment_index: u8,
    /// 1–23 octets of the provisioning PDU, at offset 20 + (index − 1) × 23.
    pub data: Vec<u8>,
}

/// A Generic Provisioning PDU, MshPRT v1.1 §5.3.1.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GenericProvisioningPdu {
    /// Transaction Start, §5.3.1.1.
    TransactionStart(TransactionStart),
    /// Transaction Acknowledgment, §5.3.1.2 (1 octet, padding 0).
    TransactionAck,
    /// Transaction Continuation, §5.3.1.3.
    TransactionContinuation(TransactionContinuation),
    /// Provisioning Bearer Control, §5.3.1.4.
    BearerControl(BearerControl),
}

const START: &str = "Transaction Start";
const CONT: &str = "Transaction Continuation";

impl GenericProvisioningPdu {
    /// Parses a Generic Provisioning PDU (control octet and payload).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let Some((&control, rest)) = bytes.split_first() else {
            return Err(WireError::TooShort {
                what: "Generic Provisioning PDU",
                min: 1,
                actual: 0,
            });
        };
        let field = control >> 2;
        match control & 0b11 {
            0b00 => {
                if bytes.len() < 4 {
                    return Err(WireError::TooShort {
                        what: START,
                        min: 4,
                        actual: bytes.len(),
                    });
                }
                let mut r = Reader::new(rest, START);
                let total_length = r.u16_be()?;
                let fcs = r.u8()?;
                let data = r.rest();
                let Some(expected) = seg_n_for(usize::from(total_length)) else {
                    return Err(WireError::Prohibited {
                        what: START,
                        field: "TotalLength",
                        value: total_length.into(),
                        reason: "must be 1..=1469",
                    });
                };
                if field != expected {
                    return Err(WireError::SegNMismatch {
                        seg_n: field,
                        total_length,
                        expected,
                    });
                }
                expect_len(
                    "Transaction Start data",
                    data,
                    usize::from(total_length).min(START_DATA_MAX),
                )?;
                Ok(GenericProvisioningPdu::TransactionStart(TransactionStart {
                    seg_n: field,
                    total_length,
                    fcs,
                    data: data.to_vec(),
                }))
            }
            0b01 => {
                if field != 0 {
                    return Err(WireError::NonZeroPadding {
                        what: "Transaction Acknowledgment",
                        octet: control,
                    });
                }
                expect_len("Transaction Acknowledgment", bytes, 1)?;
                Ok(GenericProvisioningPdu::TransactionAck)
            }
            0b10 => {
                if field == 0 {
                    return Err(WireError::Prohibited {
                        what: CONT,
                        field: "Segment Index",
                        value: 0,
                        reason: "index 0 is the Transaction Start",
                    });
                }
                if rest.is_empty() {
                    return Err(WireError::TooShort {
                        what: CONT,
                        min: 2,
                        actual: bytes.len(),
                    });
                }
                if rest.len() > CONTINUATION_DATA_MAX {
                    return Err(WireError::TooLong {
                        what: "Transaction Continuation data",
                        max: CONTINUATION_DATA_MAX,
                        actual: rest.len(),
                    });
                }
                Ok(GenericProvisioningPdu::TransactionContinuation(
                    TransactionContinuation {
                        segment_index: field,
                        data: rest.to_vec(),
                    },
                ))
            }
            _ => {
                let ctl = match BearerOpcode(field) {
                    BearerOpcode::LINK_OPEN => {
                        expect_len("Link Open", bytes, 17)?;
                        BearerControl::LinkOpen {
                            uuid: Reader::new(rest, "Link Open").array()?,
                        }
                    }
                    BearerOpcode::LINK_ACK => {
                        expect_len("Link ACK", bytes, 1)?;
                        BearerControl::LinkAck
                    }
                    BearerOpcode::LINK_CLOSE => {
                        expect_len("Link Close", bytes, 2)?;
                        BearerControl::LinkClose {
                            reason: LinkCloseReason(Reader::new(rest, "Link Close").u8()?),
                        }
                    }
                    _ => return Err(WireError::UnknownBearerOpcode(field)),
                };
                Ok(GenericProvisioningPdu::BearerControl(ctl))
            }
        }
    }

    /// Appends the PDU to `out`. Six-bit fields (SegN, Segment Index) are masked to 6 bits.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            GenericProvisioningPdu::TransactionStart(s) => {
                out.push((s.seg_n & 0x3F) << 2);
                out.extend_from_slice(&s.total_length.to_be_bytes());
                out.push(s.fcs);
                out.extend_from_slice(&s.data);
            }
            GenericProvisioningPdu::TransactionAck => out.push(0x01),
            GenericProvisioningPdu::TransactionContinuation(c) => {
                out.push(((c.segment_index & 0x3F) << 2) | 0b10);
                out.extend_from_slice(&c.data);
            }
            GenericProvisioningPdu::BearerControl(ctl) => {
                out.push((ctl.opcode().0 << 2) | 0b11);
                match ctl {
                    BearerControl::LinkOpen { uuid } => out.extend_from_slice(uuid),
                    BearerControl::LinkAck => {}
                    BearerControl::LinkClose { reason } => out.push(reason.0),
                }
            }
        }
    }
}

/// A PB-ADV PDU (the payload of AD type 0x29), MshPRT v1.1 §5.2.1.
///
/// Bearer Control PDUs are sent with transaction number 0 (§5.3.1.4); this is not enforced on
/// parse (receivers in BlueZ, Zephyr and ESP-IDF do not check it either).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PbAdvPdu {
    /// Link ID (big-endian on the wire).
    pub link_id: u32,
    /// Transaction number (0x00–0x7F provisioner, 0x80–0xFF device).
    pub transaction_number: u8,
    /// The Generic Provisioning PDU.
    pub pdu: GenericProvisioningPdu,
}

impl PbAdvPdu {
    /// Parses a PB-ADV payload (after the AD length and type octets).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() < 6 {
            return Err(WireError::TooShort {
                what: "PB-ADV PDU",
                min: 6,
                actual: bytes.len(),
            });
        }
        let mut r = Reader::new(bytes, "PB-ADV PDU");
        let link_id = r.u32_be()?;
        let transaction_number = r.u8()?;
        let pdu = GenericProvisioningPdu::parse(r.rest())?;
        Ok(PbAdvPdu {
            link_id,
            transaction_number,
            pdu,
        })
    }

    /// Appends the PB-ADV payload to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.link_id.to_be_bytes());
        out.push(self.transaction_number);
        self.pdu.emit(out);
    }
}

/// Splits a provisioning PDU into a Transaction Start and Transaction Continuations,
/// MshPRT v1.1 §5.3.1 (20 octets in the start, 23 in each continuation, SegN ≤ 63).
///
/// Fails with [`WireError::CannotSegment`] for an empty PDU or one above [`MAX_PDU_LEN`].
pub fn segment(pdu: &[u8]) -> Result<Vec<GenericProvisioningPdu>, WireError> {
    let (Some(seg_n), Ok(total_length)) = (seg_n_for(pdu.len()), u16::try_from(pdu.len())) else {
        return Err(WireError::CannotSegment { len: pdu.len() });
    };
    let (first, rest) = pdu.split_at(pdu.len().min(START_DATA_MAX));
    let mut out = Vec::with_capacity(usize::from(seg_n) + 1);
    out.push(GenericProvisioningPdu::TransactionStart(TransactionStart {
        seg_n,
        total_length,
        fcs: fcs(pdu),
        data: first.to_vec(),
    }));
    for (i, chunk) in rest.chunks(CONTINUATION_DATA_MAX).enumerate() {
        out.push(GenericProvisioningPdu::TransactionContinuation(
            TransactionContinuation {
                // i < seg_n ≤ 63, so i + 1 fits a u8.
                segment_index: (i + 1) as u8,
                data: chunk.to_vec(),
            },
        ));
    }
    Ok(out)
}

/// Checks that a reassembled provisioning PDU has the Transaction Start's TotalLength and FCS.
pub fn check_reassembled(start: &TransactionStart, pdu: &[u8]) -> Result<(), WireError> {
    expect_len(
        "reassembled provisioning PDU",
        pdu,
        usize::from(start.total_length),
    )?;
    let actual = fcs(pdu);
    if actual != start.fcs {
        return Err(WireError::FcsMismatch {
            expected: start.fcs,
            actual,
        });
    }
    Ok(())
}

/// Reassembles a provisioning PDU from its Transaction Start and all its continuations (in any
/// order), checking that each index 1..=SegN occurs exactly once with the right size, then the
/// length and FCS ([`check_reassembled`]).
pub fn reassemble(
    start: &TransactionStart,
    continuations: &[TransactionContinuation],
) -> Result<Vec<u8>, WireError> {
    let total = usize::from(start.total_length);
    if seg_n_for(total) != Some(start.seg_n) {
        return Err(WireError::SegNMismatch {
            seg_n: start.seg_n,
            total_length: start.total_length,
            expected: seg_n_for(total).unwrap_or(0),
        });
    }
    if start.data.len() != total.min(START_DATA_MAX) {
        return Err(WireError::BadSegment {
            index: 0,
            problem: "has the wrong length",
        });
    }
    let mut pdu = vec![0u8; total];
    let mut seen = [false; MAX_SEG_N as usize + 1];
    if let Some(dst) = pdu.get_mut(..start.data.len()) {
        dst.copy_from_slice(&start.data);
    }
    for c in continuations {
        let index = c.segment_index;
        if index == 0 || index > start.seg_n {
            return Err(WireError::BadSegment {
                index,
                problem: "is out of range for SegN",
            });
        }
        let offset = START_DATA_MAX + usize::from(index - 1) * CONTINUATION_DATA_MAX;
        let len = total.saturating_sub(offset).min(CONTINUATION_DATA_MAX);
        if c.data.len() != len {
            return Err(WireError::BadSegment {
                index,
                problem: "has the wrong length",
            });
        }
        match seen.get_mut(usize::from(index)) {
            Some(true) => {
                return Err(WireError::BadSegment {
                    index,
                    problem: "occurs twice",
                });
            }
            Some(flag) => *flag = true,
            None => {
                return Err(WireError::BadSegment {
                    index,
                    problem: "is out of range for SegN",
                });
            }
        }
        if let Some(dst) = pdu.get_mut(offset..offset + len) {
            dst.copy_from_slice(&c.data);
        }
    }
    for index in 1..=start.seg_n {
        if seen.get(usize::from(index)) != Some(&true) {
            return Err(WireError::BadSegment {
                index,
                problem: "is missing",
            });
        }
    }
    check_reassembled(start, &pdu)?;
    Ok(pdu)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference §2.2: table row 0 is `00 91 e3 72 07 96 e4 75` and T[255] = 0xCF (the BlueZ
    /// and ESP-IDF table).
    #[test]
    fn fcs_table_matches_bluez() {
        assert_eq!(
            FCS_TABLE[..8],
            [0x00, 0x91, 0xe3, 0x72, 0x07, 0x96, 0xe4, 0x75]
        );
        assert_eq!(FCS_TABLE[255], 0xcf);
    }

    /// The FCS is usable in constants.
    #[test]
    fn fcs_is_const() {
        const INVITE_FCS: u8 = fcs(&[0x00, 0x00]);
        assert_eq!(INVITE_FCS, 0x14);
    }
}
