//! Byte layouts of the mesh provisioning stack: parse and emit, nothing else.
//!
//! Every type here follows smoltcp's `Repr` style: a plain value with
//! `parse(&[u8]) -> Result<Self, WireError>` and `emit(&self, out: &mut Vec<u8>)`.
//! Parsers never panic on any input: they check every length before reading and enforce the
//! lengths, ranges and prohibited values of the specification, so a parsed value is legal
//! ("parse, don't validate"). `emit` appends to `out` and never fails; emitting a value that
//! was built by hand with an illegal field gives bytes that `parse` rejects (fields wider than
//! their wire field are masked, never allowed to spill into a neighbour).
//!
//! Wire enumerations are newtypes over the integer with named constants (for example
//! [`FailedCode`]), so unknown values survive a round trip; bitmasks are small newtypes with
//! named bits.
//!
//! Modules:
//! - [`prov`]: provisioning PDUs 0x00–0x0D, MshPRT v1.1 §5.4.1.
//! - [`pb_adv`]: the PB-ADV bearer payload and Generic Provisioning PDUs, MshPRT v1.1 §5.2.1,
//!   §5.3, with the FCS and segmentation helpers.
//! - [`beacon`]: mesh beacons (§3.10) and the PB-GATT / Mesh Proxy service data (§7.1, §7.2).
//! - [`proxy`]: the Proxy PDU header, MshPRT v1.1 §6.3.1, and the proxy configuration
//!   messages, §6.5.

/// Declares a wire enumeration: a newtype over the integer with named constants, so that
/// unknown values survive a round trip.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident($ty:ty) {
            $( $(#[$vmeta:meta])* $c:ident = $val:expr, $label:literal; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $ty);

        impl $name {
            $( $(#[$vmeta])* pub const $c: Self = Self($val); )*

            /// The specification's name for this value, or `None` if it is RFU / unknown.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( x if x == $val => Some($label), )*
                    _ => None,
                }
            }

            /// Whether this value is one this version of the specification defines.
            pub const fn is_known(self) -> bool {
                self.name().is_some()
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(name) => write!(f, "{name} ({:#04x})", self.0),
                    None => write!(f, "RFU ({:#04x})", self.0),
                }
            }
        }
    };
}
pub(crate) use wire_enum;

/// Declares a bitmask field: a newtype over the integer with named bits.
macro_rules! bitmask {
    (
        $(#[$meta:meta])*
        $name:ident($ty:ty) {
            $( $(#[$bmeta:meta])* $bit:ident = $val:expr, $label:literal; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(pub $ty);

        impl $name {
            $( $(#[$bmeta])* pub const $bit: Self = Self($val); )*

            /// No bit set.
            pub const EMPTY: Self = Self(0);

            /// Every bit this version of the specification defines.
            pub const KNOWN: Self = Self({
                let mut known: $ty = 0;
                $( known |= $val; )*
                known
            });

            /// Whether every bit of `other` is set in `self`.
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }

            /// Whether no bit is set.
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }

            /// The set bits that this version of the specification does not define (RFU).
            pub const fn rfu_bits(self) -> $ty {
                self.0 & !Self::KNOWN.0
            }

            /// The names of the defined bits that are set, lowest bit first (RFU bits are not
            /// named; see [`Self::rfu_bits`]).
            pub fn names(self) -> Vec<&'static str> {
                let mut names = Vec::new();
                $( if self.0 & $val != 0 { names.push($label); } )*
                names
            }
        }

        impl core::ops::BitOr for $name {
            type Output = Self;
            fn bitor(self, rhs: Self) -> Self {
                Self(self.0 | rhs.0)
            }
        }
    };
}

pub mod beacon;
pub mod pb_adv;
pub mod prov;
pub mod proxy;

pub use beacon::{
    BeaconFlags, BeaconType, MeshBeacon, MeshPrivateBeacon, OobInformation, PbGattServiceData,
    ProxyServiceData, SecureNetworkBeacon, UnprovisionedDeviceBeacon,
};
pub use pb_adv::{
    BearerControl, BearerOpcode, GenericProvisioningPdu, LinkCloseReason, PbAdvPdu,
    TransactionContinuation, TransactionStart, fcs, reassemble, segment,
};
pub use prov::{
    Algorithm, Algorithms, AuthMethod, Capabilities, Data, FailedCode, InputOobAction,
    InputOobActions, Invite, OobType, OutputOobAction, OutputOobActions, PduType, ProvValue,
    ProvisioningPdu, PublicKey, PublicKeyType, RecordId, RecordRequest, RecordResponse,
    RecordStatus, RecordsList, Start, StartAuth, StartPublicKey,
};
pub use proxy::{
    FilterType, MAX_FILTER_ADDRESSES, ProxyConfigMessage, ProxyConfigOpcode, ProxyMessageType,
    ProxyPdu, Sar,
};

/// Every way a byte string can fail to be a legal PDU of this layer.
///
/// `what` / `field` name the PDU and field concerned (for example `"Provisioning Start"` /
/// `"Authentication Size"`), so that the message alone tells an engineer what was wrong.
/// Lengths of a provisioning PDU count its parameters (without the type octet), as the
/// specification's PDU tables do; lengths of the other PDUs count the whole input given to
/// the parser that reports them.
/// [`WireError::failed_code`] maps an error from parsing a provisioning PDU to the
/// Provisioning Failed error code that the peer should be sent (MshPRT v1.1 §5.4.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input has the wrong length for a fixed-size PDU or field.
    #[error("{what}: expected {expected} octets, got {actual}")]
    BadLength {
        /// The PDU or field being parsed.
        what: &'static str,
        /// The only length allowed.
        expected: usize,
        /// The length received.
        actual: usize,
    },
    /// The input is shorter than the minimum for this PDU.
    #[error("{what}: expected at least {min} octets, got {actual}")]
    TooShort {
        /// The PDU or field being parsed.
        what: &'static str,
        /// The minimum length.
        min: usize,
        /// The length received.
        actual: usize,
    },
    /// The input is longer than the maximum for this PDU or field.
    #[error("{what}: expected at most {max} octets, got {actual}")]
    TooLong {
        /// The PDU or field being parsed.
        what: &'static str,
        /// The maximum length.
        max: usize,
        /// The length received.
        actual: usize,
    },
    /// The length is within bounds but not one of the allowed lengths (for example a Random
    /// PDU that is neither 16 nor 32 octets, or a Records List with an odd number of octets).
    #[error("{what}: {actual} octets is not a legal length ({allowed})")]
    IllegalLength {
        /// The PDU or field being parsed.
        what: &'static str,
        /// A description of the legal lengths, e.g. `"16 or 32"`.
        allowed: &'static str,
        /// The length received.
        actual: usize,
    },
    /// The provisioning PDU type is RFU (0x0E–0x3F), MshPRT v1.1 §5.4.1.
    #[error("unknown provisioning PDU type {0:#04x} (0x0e..=0x3f are RFU)")]
    UnknownPduType(u8),
    /// Bits that the specification defines as padding are not zero.
    #[error("{what}: padding bits must be 0, octet was {octet:#04x}")]
    NonZeroPadding {
        /// The PDU whose padding was set.
        what: &'static str,
        /// The whole octet that carried the padding bits.
        octet: u8,
    },
    /// A field carries a value that the specification prohibits or reserves (RFU).
    #[error("{what}: {field} = {value:#x} is not allowed: {reason}")]
    Prohibited {
        /// The PDU being parsed.
        what: &'static str,
        /// The field carrying the value.
        field: &'static str,
        /// The value received.
        value: u32,
        /// Why it is not allowed.
        reason: &'static str,
    },
    /// RFU bits of a bitmask field are set.
    #[error("{what}: {field} has RFU bits set ({bits:#06x})")]
    RfuBitsSet {
        /// The PDU being parsed.
        what: &'static str,
        /// The bitmask field.
        field: &'static str,
        /// The RFU bits that were set (only those).
        bits: u16,
    },
    /// The beacon type octet is not one of 0x00–0x02, MshPRT v1.1 §3.10.
    #[error("unknown mesh beacon type {0:#04x}")]
    UnknownBeaconType(u8),
    /// The Provisioning Bearer Control opcode is not one of 0x00–0x02 (MshPRT v1.1 §5.3.1.4).
    #[error("unknown provisioning bearer control opcode {0:#04x}")]
    UnknownBearerOpcode(u8),
    /// The proxy configuration message opcode is not one of 0x00–0x03 (MshPRT v1.1 §6.5):
    /// RFU, or a Mesh 1.1 directed proxy message this parser does not read.
    #[error("unknown proxy configuration opcode {0:#04x}")]
    UnknownProxyConfigOpcode(u8),
    /// The Mesh Proxy service data identification type is not one of 0x00–0x03
    /// (MshPRT v1.1 §7.2.2.2).
    #[error("unknown mesh proxy identification type {0:#04x}")]
    UnknownIdentificationType(u8),
    /// Service data belongs to another 16-bit service UUID than the one expected.
    #[error("service data for UUID {actual:#06x}, expected {expected:#06x}")]
    WrongServiceUuid {
        /// The UUID this parser handles.
        expected: u16,
        /// The UUID found in the first two (little-endian) octets.
        actual: u16,
    },
    /// A Transaction Start's SegN does not match its TotalLength (MshPRT v1.1 §5.3.1.1).
    #[error(
        "Transaction Start: SegN {seg_n} does not match TotalLength {total_length} (expected SegN {expected})"
    )]
    SegNMismatch {
        /// The SegN received.
        seg_n: u8,
        /// The TotalLength received.
        total_length: u16,
        /// The SegN that TotalLength implies.
        expected: u8,
    },
    /// A provisioning PDU is too long for PB-ADV segmentation (more than 1469 octets, SegN > 63)
    /// or empty.
    #[error("provisioning PDU of {len} octets cannot be segmented (1..=1469 allowed)")]
    CannotSegment {
        /// The length of the PDU.
        len: usize,
    },
    /// A reassembled PDU is missing a segment, has a duplicate, or a segment of the wrong size.
    #[error("reassembly: segment {index} {problem}")]
    BadSegment {
        /// The segment index concerned (0 = the Transaction Start).
        index: u8,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The FCS of a reassembled provisioning PDU does not match (MshPRT v1.1 §5.3.1.1).
    #[error("FCS mismatch: Transaction Start says {expected:#04x}, PDU computes to {actual:#04x}")]
    FcsMismatch {
        /// The FCS carried in the Transaction Start.
        expected: u8,
        /// The FCS computed over the reassembled PDU.
        actual: u8,
    },
}

impl WireError {
    /// The Provisioning Failed error code for this error when it arose parsing a provisioning
    /// PDU (MshPRT v1.1 §5.4.4, reference §4).
    ///
    /// - An RFU PDU type, or non-zero padding bits in the type octet (Zephyr and BlueZ read the
    ///   whole octet as the type, so such an octet is an unknown type) → [`FailedCode::INVALID_PDU`].
    /// - Everything else (bad length, prohibited or RFU value, inconsistent fields) →
    ///   [`FailedCode::INVALID_FORMAT`].
    ///
    /// "Unexpected PDU" (0x03) is a state-machine decision, not a parse error, so it is never
    /// returned here. For errors of the other PDUs of this layer (beacons, PB-ADV, proxy) the
    /// result is `INVALID_FORMAT`, which is only meaningful if the caller chooses to report it.
    pub fn failed_code(&self) -> FailedCode {
        match self {
            WireError::UnknownPduType(_) => FailedCode::INVALID_PDU,
            WireError::NonZeroPadding { what, .. } if *what == prov::TYPE_OCTET => {
                FailedCode::INVALID_PDU
            }
            _ => FailedCode::INVALID_FORMAT,
        }
    }
}

/// A bounds-checked big-endian reader over a byte slice; every read is `Option`-free and
/// returns a [`WireError::TooShort`] naming the PDU instead of panicking.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
    total: usize,
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, naming `what` in errors.
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader {
            buf,
            what,
            total: buf.len(),
            pos: 0,
        }
    }

    fn short(&self, n: usize) -> WireError {
        WireError::TooShort {
            what: self.what,
            min: self.pos + n,
            actual: self.total,
        }
    }

    /// Reads a fixed-size array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let Some((head, rest)) = self.buf.split_first_chunk::<N>() else {
            return Err(self.short(N));
        };
        self.buf = rest;
        self.pos += N;
        Ok(*head)
    }

    /// Reads one octet.
    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }

    /// Reads a big-endian u16.
    pub(crate) fn u16_be(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array::<2>()?))
    }

    /// Reads a big-endian u32.
    pub(crate) fn u32_be(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array::<4>()?))
    }

    /// The octets not read yet (consumes them).
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let rest = self.buf;
        self.pos += rest.len();
        self.buf = &[];
        rest
    }

    /// The number of octets not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }
}

/// Checks that `bytes` is exactly `expected` octets long.
pub(crate) fn expect_len(
    what: &'static str,
    bytes: &[u8],
    expected: usize,
) -> Result<(), WireError> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(WireError::BadLength {
            what,
            expected,
            actual: bytes.len(),
        })
    }
}
