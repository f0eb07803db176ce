//! The provisioning bearers, sans-IO (DESIGN.md rule 1): bytes and time in (`handle_*`),
//! transmits, events and the next deadline out (`poll_*`). Nothing here reads a clock, sleeps,
//! spawns or touches a socket; randomness (Link IDs, retransmission jitter) is injected.
//!
//! - [`pb_adv`]: PB-ADV, MshPRT v1.1 §5.2.1, and the Generic Provisioning layer, §5.3: Link
//!   Open / Link ACK / Link Close, transactions, segmentation, FCS, acknowledgments and
//!   retransmission, with one [`pb_adv::Links`] table demultiplexing many links by Link ID, and
//!   a passive [`pb_adv::Observer`] that reassembles both directions of captured traffic.
//! - [`pb_gatt`]: PB-GATT, MshPRT v1.1 §5.2.2: the Proxy protocol SAR (§6.3.1) over the GATT
//!   MTU with its 20 s reassembly timeout (§6.6), and [`pb_gatt::PbGattLink`], which accepts
//!   only Provisioning PDUs as the Mesh Provisioning service requires.

pub mod pb_adv;
pub mod pb_gatt;

use crate::wire::{ProxyMessageType, Sar, WireError};

pub use pb_adv::{CloseCause, LinkEvent, LinkId, Links, Observer, PbAdvConfig, Role, Stats};
pub use pb_gatt::{PbGattLink, ProxySar};

/// Every error of the bearer layer.
///
/// Errors from the PB-ADV [`Links`] table are caller mistakes (a wrong role, an unknown link,
/// a full table, a PDU that cannot be segmented): malformed traffic from the air is never an
/// error there, it is dropped and counted in [`Stats`] (MshPRT v1.1 §5.3 gives the receiver no
/// way to report it). Errors from [`ProxySar`] and [`PbGattLink`] are the peer's fault and,
/// per MshPRT v1.1 §5.2.2 and §6.3.1, mean the GATT connection must be dropped
/// ([`BearerError::requires_disconnect`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BearerError {
    /// [`Links::open`] was called on a table with the device role: only a provisioner opens
    /// PB-ADV links (MshPRT v1.1 §5.3.2).
    #[error("only a provisioner opens PB-ADV links")]
    NotProvisioner,
    /// The table already holds `max` links ([`PbAdvConfig::max_links`]).
    #[error("PB-ADV link table full ({max} links)")]
    TooManyLinks {
        /// The configured limit.
        max: usize,
    },
    /// A link to this device UUID is already open or opening in this table.
    #[error("a PB-ADV link to device {} is already open", hex::encode(uuid))]
    AlreadyLinked {
        /// The device UUID.
        uuid: [u8; 16],
    },
    /// No free random Link ID was found (the RNG keeps returning zero or IDs in use).
    #[error("no free PB-ADV Link ID found")]
    NoFreeLinkId,
    /// The link is not in the table (never opened, closed, or timed out).
    #[error("unknown PB-ADV link {0}")]
    UnknownLink(LinkId),
    /// The provisioning PDU cannot be carried: empty, or longer than PB-ADV segmentation
    /// allows (MshPRT v1.1 §5.3.1, at most 1469 octets).
    #[error("provisioning PDU cannot be sent: {0}")]
    Wire(#[from] WireError),
    /// A Proxy PDU with no header octet (MshPRT v1.1 §6.3.1).
    #[error("empty Proxy PDU")]
    EmptyProxyPdu,
    /// A continuation or last segment arrived with no segmented message in progress
    /// (MshPRT v1.1 §6.3.1).
    #[error("Proxy SAR: {sar:?} segment without a first segment")]
    SarNotStarted {
        /// The SAR value received.
        sar: Sar,
    },
    /// A complete message or a new first segment arrived while a segmented message was in
    /// progress (MshPRT v1.1 §6.3.1).
    #[error("Proxy SAR: {sar:?} segment while a segmented message is in progress")]
    SarInterrupted {
        /// The SAR value received.
        sar: Sar,
    },
    /// A continuation or last segment has another message type than the first segment
    /// (MshPRT v1.1 §6.3.1).
    #[error("Proxy SAR: segment of type {got} continues a message of type {first}")]
    SarTypeMismatch {
        /// The type of the first segment.
        first: ProxyMessageType,
        /// The type of the offending segment.
        got: ProxyMessageType,
    },
    /// A segmented message grew beyond [`pb_gatt::MAX_MESSAGE_LEN`] octets.
    #[error("Proxy SAR: message longer than {max} octets")]
    MessageTooLong {
        /// The limit.
        max: usize,
    },
    /// A segmented message was not completed within the 20 s SAR timeout (MshPRT v1.1 §6.6).
    #[error("Proxy SAR: reassembly timed out")]
    SarTimeout,
    /// A Proxy PDU of another message type than Provisioning PDU (0x03) on the Mesh
    /// Provisioning service (MshPRT v1.1 §5.2.2).
    #[error("{0} is not allowed on the Mesh Provisioning service")]
    WrongMessageType(ProxyMessageType),
}

impl BearerError {
    /// Whether the GATT connection must be dropped because of this error (MshPRT v1.1 §5.2.2,
    /// §6.3.1, §6.6): true for every error the peer caused on a PB-GATT / proxy connection,
    /// false for caller mistakes on the PB-ADV table.
    pub fn requires_disconnect(&self) -> bool {
        matches!(
            self,
            BearerError::EmptyProxyPdu
                | BearerError::SarNotStarted { .. }
                | BearerError::SarInterrupted { .. }
                | BearerError::SarTypeMismatch { .. }
                | BearerError::MessageTooLong { .. }
                | BearerError::SarTimeout
                | BearerError::WrongMessageType(_)
        )
    }
}
