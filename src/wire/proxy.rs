//! Proxy PDU, MshPRT v1.1 §6.3.1 (reference §3): the framing used on the Mesh Provisioning
//! (PB-GATT) and Mesh Proxy GATT services.
//!
//! `SAR (bits 7..6) ‖ Message Type (bits 5..0) ‖ Data`. Reassembly of segmented PDUs is the
//! bearer's job (`bearer::pb_gatt`); this module only reads and writes the header, and the
//! proxy configuration messages (§6.5) that a Proxy PDU of type 0x02 carries inside an
//! encrypted network PDU ([`ProxyConfigMessage`]; the network layer secures them with the proxy
//! nonce, `net::network::NetworkLayer::encrypt_proxy_config`).

use super::{Reader, WireError};

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

wire_enum! {
    /// Opcode of a proxy configuration message (the first octet of its transport PDU),
    /// MshPRT v1.1 §6.5. Only 0x00–0x03 are parsed: 0x04 and above (the directed proxy
    /// messages of Mesh 1.1 and RFU values) are [`WireError::UnknownProxyConfigOpcode`].
    ProxyConfigOpcode(u8) {
        /// Set Filter Type, §6.5.1.
        SET_FILTER_TYPE = 0x00, "Set Filter Type";
        /// Add Addresses to Filter, §6.5.2.
        ADD_ADDRESSES_TO_FILTER = 0x01, "Add Addresses to Filter";
        /// Remove Addresses from Filter, §6.5.3.
        REMOVE_ADDRESSES_FROM_FILTER = 0x02, "Remove Addresses from Filter";
        /// Filter Status, §6.5.4.
        FILTER_STATUS = 0x03, "Filter Status";
    }
}

wire_enum! {
    /// Proxy filter type, MshPRT v1.1 §6.4 (accept list, formerly "white list"; reject list,
    /// formerly "black list"). 0x02–0xFF are prohibited: parsers refuse them with
    /// [`WireError::Prohibited`].
    FilterType(u8) {
        /// Accept list: only PDUs to the listed destinations reach the client.
        ACCEPT_LIST = 0x00, "Accept list";
        /// Reject list: every PDU except those to the listed destinations reaches the client.
        REJECT_LIST = 0x01, "Reject list";
    }
}

/// Most addresses one Add Addresses to Filter or Remove Addresses from Filter message carries
/// so that its network PDU fits 29 octets: opcode (1) + 2 × 5 = 11 of the 12 octets a control
/// transport PDU has beside the 64-bit NetMIC. Zephyr refuses longer proxy configuration PDUs;
/// clients split longer lists.
pub const MAX_FILTER_ADDRESSES: usize = 5;

/// A proxy configuration message, MshPRT v1.1 §6.5: `Opcode (1) ‖ Parameters`, carried as the
/// transport PDU of a network PDU with CTL = 1, TTL = 0 and DST unassigned, secured with the
/// proxy nonce. Addresses and the list size are big-endian (like the network header, unlike
/// access messages).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProxyConfigMessage {
    /// Set Filter Type (0x00), §6.5.1: `Filter Type (1)`. The server clears its filter list,
    /// sets the type and answers with Filter Status.
    SetFilterType {
        /// The new filter type.
        filter_type: FilterType,
    },
    /// Add Addresses to Filter (0x01), §6.5.2: `Address (2) × N`. The server answers with
    /// Filter Status.
    AddAddresses {
        /// Addresses to add (an empty list parses: the specification gives no minimum, and
        /// Zephyr and BlueZ answer it with a Filter Status).
        addresses: Vec<u16>,
    },
    /// Remove Addresses from Filter (0x02), §6.5.3: `Address (2) × N`. The server answers
    /// with Filter Status.
    RemoveAddresses {
        /// Addresses to remove.
        addresses: Vec<u16>,
    },
    /// Filter Status (0x03), §6.5.4: `Filter Type (1) ‖ List Size (2)`.
    FilterStatus {
        /// The server's filter type.
        filter_type: FilterType,
        /// Number of addresses in the server's filter list.
        list_size: u16,
    },
}

fn filter_type(what: &'static str, octet: u8) -> Result<FilterType, WireError> {
    let t = FilterType(octet);
    if t.is_known() {
        Ok(t)
    } else {
        Err(WireError::Prohibited {
            what,
            field: "Filter Type",
            value: u32::from(octet),
            reason: "0x02-0xFF are prohibited",
        })
    }
}

fn addresses(what: &'static str, params: &[u8]) -> Result<Vec<u16>, WireError> {
    if !params.len().is_multiple_of(2) {
        return Err(WireError::IllegalLength {
            what,
            allowed: "1 + 2 × N",
            actual: params.len() + 1,
        });
    }
    Ok(params
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect())
}

impl ProxyConfigMessage {
    /// The opcode.
    pub const fn opcode(&self) -> ProxyConfigOpcode {
        match self {
            Self::SetFilterType { .. } => ProxyConfigOpcode::SET_FILTER_TYPE,
            Self::AddAddresses { .. } => ProxyConfigOpcode::ADD_ADDRESSES_TO_FILTER,
            Self::RemoveAddresses { .. } => ProxyConfigOpcode::REMOVE_ADDRESSES_FROM_FILTER,
            Self::FilterStatus { .. } => ProxyConfigOpcode::FILTER_STATUS,
        }
    }

    /// Parses a message (opcode and parameters; lengths in errors count both).
    ///
    /// Errors: empty input ([`WireError::TooShort`]), an opcode other than 0x00–0x03
    /// ([`WireError::UnknownProxyConfigOpcode`]), a wrong length ([`WireError::BadLength`] for
    /// the fixed-size messages, [`WireError::IllegalLength`] for an address list of an odd
    /// number of octets), a prohibited filter type ([`WireError::Prohibited`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes, "proxy configuration message");
        let opcode = ProxyConfigOpcode(r.u8()?);
        let params = r.rest();
        match opcode {
            ProxyConfigOpcode::SET_FILTER_TYPE => {
                super::expect_len("Set Filter Type", bytes, 2)?;
                Ok(Self::SetFilterType {
                    filter_type: filter_type("Set Filter Type", params[0])?,
                })
            }
            ProxyConfigOpcode::ADD_ADDRESSES_TO_FILTER => Ok(Self::AddAddresses {
                addresses: addresses("Add Addresses to Filter", params)?,
            }),
            ProxyConfigOpcode::REMOVE_ADDRESSES_FROM_FILTER => Ok(Self::RemoveAddresses {
                addresses: addresses("Remove Addresses from Filter", params)?,
            }),
            ProxyConfigOpcode::FILTER_STATUS => {
                super::expect_len("Filter Status", bytes, 4)?;
                Ok(Self::FilterStatus {
                    filter_type: filter_type("Filter Status", params[0])?,
                    list_size: u16::from_be_bytes([params[1], params[2]]),
                })
            }
            other => Err(WireError::UnknownProxyConfigOpcode(other.0)),
        }
    }

    /// Appends opcode ‖ parameters to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.opcode().0);
        match self {
            Self::SetFilterType { filter_type } => out.push(filter_type.0),
            Self::AddAddresses { addresses } | Self::RemoveAddresses { addresses } => {
                for a in addresses {
                    out.extend_from_slice(&a.to_be_bytes());
                }
            }
            Self::FilterStatus {
                filter_type,
                list_size,
            } => {
                out.push(filter_type.0);
                out.extend_from_slice(&list_size.to_be_bytes());
            }
        }
    }

    /// The message as bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.emit(&mut out);
        out
    }
}
