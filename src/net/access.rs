//! Access layer opcodes (§3.7.3.1).
//!
//! | First octet | Size | Range | On air |
//! |---|---|---|---|
//! | `0xxxxxxx` (not 0x7F) | 1 | 0x00–0x7E | the octet |
//! | `01111111` | — | 0x7F | RFU: rejected |
//! | `10xxxxxx` | 2 | 0x8000–0xBFFF | big-endian |
//! | `11xxxxxx` | 3 | vendor | the octet ‖ Company ID (little-endian) |
//!
//! (Reference §6.4, BlueZ `mesh_model_opcode_get`.)

use super::{NetError, Result};

/// An access opcode. The value is the opcode as the specification writes it: 0x00–0x7E,
/// 0x8000–0xBFFF, or for vendor opcodes `0xC00000 | 6-bit opcode << 16 | Company ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Opcode(pub u32);

impl Opcode {
    /// A vendor opcode: 6-bit `opcode` of company `company_id`.
    pub const fn vendor(opcode: u8, company_id: u16) -> Self {
        Self(0xc0_0000 | ((opcode as u32 & 0x3f) << 16) | company_id as u32)
    }

    /// Octets on air: 1, 2 or 3.
    pub const fn size(self) -> usize {
        if self.0 >= 0xc0_0000 {
            3
        } else if self.0 >= 0x8000 {
            2
        } else {
            1
        }
    }

    /// Whether this is a vendor (3-octet) opcode.
    pub const fn is_vendor(self) -> bool {
        self.0 >= 0xc0_0000
    }

    /// The Company ID of a vendor opcode.
    pub const fn company_id(self) -> Option<u16> {
        if self.is_vendor() {
            Some((self.0 & 0xffff) as u16)
        } else {
            None
        }
    }

    /// Whether the value is a legal opcode (emit masks illegal ones into some legal value).
    pub const fn is_valid(self) -> bool {
        matches!(self.0, 0x00..=0x7e | 0x8000..=0xbfff | 0xc0_0000..=0xff_ffff)
    }

    /// Splits an access PDU into its opcode and parameters.
    pub fn parse(pdu: &[u8]) -> Result<(Self, &[u8])> {
        let bad = || NetError::BadLength {
            what: "access opcode",
            actual: pdu.len(),
        };
        let &first = pdu.first().ok_or_else(bad)?;
        match first >> 6 {
            0 | 1 if first == 0x7f => Err(NetError::Prohibited {
                what: "opcode 0x7F (RFU)",
                value: 0x7f,
            }),
            0 | 1 => Ok((Self(u32::from(first)), &pdu[1..])),
            2 => {
                let b = pdu.get(1).ok_or_else(bad)?;
                Ok((Self(u32::from(u16::from_be_bytes([first, *b]))), &pdu[2..]))
            }
            _ => {
                let cid = pdu.get(1..3).ok_or_else(bad)?;
                let cid = u16::from_le_bytes([cid[0], cid[1]]);
                Ok((Self::vendor(first & 0x3f, cid), &pdu[3..]))
            }
        }
    }

    /// Appends the opcode's octets.
    pub fn emit(self, out: &mut Vec<u8>) {
        match self.size() {
            1 => out.push(self.0 as u8 & 0x7f),
            2 => out.extend_from_slice(&(self.0 as u16).to_be_bytes()),
            _ => {
                out.push((self.0 >> 16) as u8 | 0xc0);
                out.extend_from_slice(&(self.0 as u16).to_le_bytes());
            }
        }
    }
}

impl core::fmt::Display for Opcode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.size() {
            1 => write!(f, "{:#04x}", self.0),
            2 => write!(f, "{:#06x}", self.0),
            _ => write!(f, "{:#04x}/{:#06x}", (self.0 >> 16) & 0x3f, self.0 & 0xffff),
        }
    }
}

/// An access message: an opcode and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessMessage {
    /// The opcode.
    pub opcode: Opcode,
    /// The parameters.
    pub params: Vec<u8>,
}

impl AccessMessage {
    /// Parses an access PDU.
    pub fn parse(pdu: &[u8]) -> Result<Self> {
        let (opcode, params) = Opcode::parse(pdu)?;
        Ok(Self {
            opcode,
            params: params.to_vec(),
        })
    }

    /// The access PDU.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(3 + self.params.len());
        self.opcode.emit(&mut v);
        v.extend_from_slice(&self.params);
        v
    }
}
