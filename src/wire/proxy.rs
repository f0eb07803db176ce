//! Proxy PDU, MshPRT v1.1 §6.3.1 (reference §3): the framing used on the Mesh Provisioning
//! (PB-GATT) and Mesh Proxy GATT services.
//!
//! `SAR (bits 7..6) ‖ Message Type (bits 5..0) ‖ Data`. Reassembly of segmented PDUs is the
//! bearer's job (`bearer::pb_gatt`); this module only reads and writes the header.

use super::WireError;

/// Segmentation and reassembly field of a Proxy PDU, MshPRT v1.1 §6.3.1 (all four values are
/// defined).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sar {
    /// 0b00: the data is a complete message.
    Complete,
    /// 0b01: the first segment of a message.
    First,
    /// 0b10: a continuation segment of a message.
    Continuation,
    /// 0b11: the last segment of a message.
    Last,
}

impl Sar {
    /// The two-bit value.
    pub const fn bits(self) -> u8 {
        match self {
            Sar::Complete => 0b00,
            Sar::First => 0b01,
            Sar::Continuation => 0b10,
            Sar::Last => 0b11,
        }
    }

    /// The SAR value of the two low bits of `bits` (higher bits are ignored).
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0b00 => Sar::Complete,
            0b01 => Sar::First,
            0b10 => Sar::Continuation,
            _ => Sar::Last,
        }
    }
}

wire_enum! {
    /// Proxy PDU message type (bits 5..0 of the header), MshPRT v1.1 §6.3.1; 0x04–0x3F RFU,
    /// kept.
    ProxyMessageType(u8) {
        /// Network PDU.
        NETWORK_PDU = 0x00, "Network PDU";
        /// Mesh beacon.
        MESH_BEACON = 0x01, "Mesh Beacon";
        /// Proxy configuration message.
        PROXY_CONFIGURATION = 0x02, "Proxy Configuration";
        /// Provisioning PDU (the only type valid on the Mesh Provisioning service).
        PROVISIONING_PDU = 0x03, "Provisioning PDU";
    }
}

/// A Proxy PDU (one GATT write or notification), MshPRT v1.1 §6.3.1.
///
/// Unknown message types parse (they survive in [`ProxyMessageType`]); the bearer decides
/// what is valid on which service. Data may be empty: the specification gives no minimum.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxyPdu {
    /// Segmentation.
    pub sar: Sar,
    /// Message type (6 bits; higher bits are masked on emit).
    pub message_type: ProxyMessageType,
    /// The (segment of the) message.
    pub data: Vec<u8>,
}

impl ProxyPdu {
    /// Parses a Proxy PDU (header octet and data).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let Some((&header, data)) = bytes.split_first() else {
            return Err(WireError::TooShort {
                what: "Proxy PDU",
                min: 1,
                actual: 0,
            });
        };
        Ok(ProxyPdu {
            sar: Sar::from_bits(header >> 6),
            message_type: ProxyMessageType(header & 0x3F),
            data: data.to_vec(),
        })
    }

    /// The header octet.
    pub const fn header(&self) -> u8 {
        (self.sar.bits() << 6) | (self.message_type.0 & 0x3F)
    }

    /// Appends the PDU to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.header());
        out.extend_from_slice(&self.data);
    }
}
