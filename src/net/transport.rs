//! Lower transport (§3.5) and upper transport (§3.6): segmentation and reassembly with
//! acknowledgements, and access message encryption with application and device keys.
//!
//! [`Transport`] is the sans-IO state machine of the whole stack below the access layer. It
//! owns the [`NetworkLayer`]; a driver feeds it received network PDUs
//! ([`Transport::handle_network_pdu`]) and the time ([`Transport::handle_timeout`]), and takes
//! out network PDUs to send ([`Transport::poll_transmit`]), received messages and send
//! outcomes ([`Transport::poll_event`]) and the next deadline ([`Transport::poll_timeout`]).
//!
//! # SAR defaults ([`SarConfig::default`])
//!
//! The reference (§6.3) did not research the Mesh 1.1 SAR Transmitter/Receiver state defaults;
//! they were taken from Zephyr's SAR Kconfig defaults (the 1.1 reference stack), which encode
//! the 1.1 state defaults, and are marked UNVERIFIED against the specification text:
//! - transmitter: unicast retransmission interval `200 ms + 50 ms × TTL` (interval step 7,
//!   increment 1: `(7+1) × 25 ms` and `(1+1) × 25 ms` per hop); multicast: 2 retransmissions
//!   250 ms apart (step 9); a segmented unicast message is retransmitted at most
//!   [`SarConfig::unicast_retransmissions`] = 7 times and given up after 2 rounds without
//!   progress (no new segment acknowledged). Segments of one round are all queued at once;
//!   pacing on the air is the bearer's job.
//! - receiver: acknowledgement delay `min(SegN + 1, 2.5) × 60 ms` (ack delay increment 1,
//!   segment interval step 5), discard (incomplete) timeout 10 s (discard timeout 1:
//!   `(1+1) × 5 s`), no acknowledgement retransmission besides the acks re-sent when segments
//!   of a completed message arrive again — at most one per SeqAuth every
//!   `ack delay increment × segment reception interval` = `2.5 × 60 ms` = 150 ms
//!   ([`SarConfig::reack_interval`], §3.5.3.4).
//!
//! BlueZ (reference §6.3) uses a 2 s segment timeout and a 60 s message timeout; the faster
//! 1.1 values are kept because the Config client retries whole requests on its own timer.
//!
//! # Busy receivers
//!
//! A Segment Acknowledgment with BlockAck 0 means the receiver cannot take the message
//! (§3.5.3.3): the transmitter cancels with [`SendFailure::ReceiverBusy`]. This receiver sends
//! such an ack when it already reassembles [`SarConfig::max_rx_sessions`] messages.
//!
//! # Segments leave when the bearer takes them
//!
//! PDUs wait in this layer until the driver takes them ([`Transport::poll_transmit_at`]), and a
//! SAR retransmission timer starts only when the last unacknowledged segment of a round has
//! been taken (§3.5.3.3.1, §3.5.3.3.3: "when the last segment marked as unacknowledged is
//! transmitted"), never when the round was queued. A driver that takes one PDU whenever its
//! radio can send one (the simulated rollout) thus never queues a retransmission round behind
//! the unsent copies of the previous one; segments acknowledged while they wait are withdrawn,
//! and a Segment Acknowledgment still waiting is replaced by a newer one for the same SeqAuth
//! rather than followed by it. A driver that takes everything at once
//! ([`Transport::poll_transmit`]) gets the timers started at that instant.
//!
//! # One message at a time per destination
//!
//! Segmented messages from one source to one destination are sent one after the other
//! (§3.5.3.3: a new segmented message is not started before the previous one completed);
//! later ones wait in a queue and get their SeqAuth when they start.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use mesh_crypto::access::{self as upper, AccessKey, AccessParams};
use mesh_crypto::ccm::MicLen;
use mesh_crypto::network::NetworkHeader;
use mesh_crypto::toolbox;
use mesh_crypto::{AppKey, DevKey};

use super::network::{DropReason, NetworkLayer, SeqSource, Transmit};
use super::{NetError, Result, address};
use crate::time::Instant;

/// Octets of access payload in one segment (§3.5.2.2).
pub const ACCESS_SEGMENT: usize = 12;
/// Octets of control payload in one segment (§3.5.2.4).
pub const CONTROL_SEGMENT: usize = 8;
/// Largest unsegmented upper transport access PDU, TransMIC included (§3.5.2.1).
pub const MAX_UNSEG_ACCESS: usize = 15;
/// Largest unsegmented control parameters (§3.5.2.3).
pub const MAX_UNSEG_CONTROL: usize = 11;
/// Segment Acknowledgment control opcode (§3.6.5.2).
pub const OPCODE_SEGMENT_ACK: u8 = 0x00;

/// The acknowledgment delay increment in halves: `SAR Acknowledgment Delay Increment + 1.5`
/// with the state at its default 1, i.e. 2.5 (§3.5.3.4; UNVERIFIED default, see the module
/// documentation).
const ACK_DELAY_INCREMENT_HALVES: u32 = 5;

/// Segmentation fields of a segmented lower transport PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentInfo {
    /// The 13 least significant bits of SeqAuth.
    pub seq_zero: u16,
    /// This segment's offset, 0..=SegN.
    pub seg_o: u8,
    /// The last segment's number (segments minus one), 0..=31.
    pub seg_n: u8,
}

/// A lower transport PDU (§3.5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LowerPdu {
    /// Unsegmented access message: `SEG=0 | AKF | AID` ‖ upper transport PDU (5..=15 octets).
    UnsegmentedAccess {
        /// Application key flag: false for the device key.
        akf: bool,
        /// Application key identifier (6 bits), 0 with the device key.
        aid: u8,
        /// Encrypted access payload ‖ TransMIC (32 bits).
        upper: Vec<u8>,
    },
    /// Segmented access message: `SEG=1 | AKF | AID` ‖ `SZMIC | SeqZero | SegO | SegN` ‖ segment.
    SegmentedAccess {
        /// Application key flag.
        akf: bool,
        /// Application key identifier.
        aid: u8,
        /// TransMIC size: true for 64 bits.
        szmic: bool,
        /// Segmentation fields.
        seg: SegmentInfo,
        /// 1..=12 octets of the upper transport PDU.
        segment: Vec<u8>,
    },
    /// Unsegmented control message: `SEG=0 | Opcode` ‖ parameters (0..=11 octets).
    UnsegmentedControl {
        /// 7-bit control opcode.
        opcode: u8,
        /// Parameters.
        params: Vec<u8>,
    },
    /// Segmented control message: `SEG=1 | Opcode` ‖ `RFU | SeqZero | SegO | SegN` ‖ segment.
    SegmentedControl {
        /// 7-bit control opcode.
        opcode: u8,
        /// Segmentation fields.
        seg: SegmentInfo,
        /// 1..=8 octets of the upper transport control PDU.
        segment: Vec<u8>,
    },
}

fn parse_seg(b: &[u8]) -> (bool, SegmentInfo) {
    let v = u32::from_be_bytes([0, b[0], b[1], b[2]]);
    (
        v & 0x80_0000 != 0,
        SegmentInfo {
            seq_zero: ((v >> 10) & 0x1fff) as u16,
            seg_o: ((v >> 5) & 0x1f) as u8,
            seg_n: (v & 0x1f) as u8,
        },
    )
}

fn emit_seg(flag: bool, s: &SegmentInfo, out: &mut Vec<u8>) {
    let v = (u32::from(flag) << 23)
        | (u32::from(s.seq_zero & 0x1fff) << 10)
        | (u32::from(s.seg_o & 0x1f) << 5)
        | u32::from(s.seg_n & 0x1f);
    out.extend_from_slice(&v.to_be_bytes()[1..]);
}

impl LowerPdu {
    /// Parses a lower transport PDU; `ctl` is the network header's CTL bit.
    pub fn parse(ctl: bool, b: &[u8]) -> Result<Self> {
        let bad = |what| NetError::BadLength {
            what,
            actual: b.len(),
        };
        let Some(&h) = b.first() else {
            return Err(bad("lower transport PDU"));
        };
        let seg = h & 0x80 != 0;
        match (ctl, seg) {
            (false, false) => {
                if !(5..=MAX_UNSEG_ACCESS + 1).contains(&b.len()) {
                    return Err(bad("unsegmented access PDU"));
                }
                Ok(Self::UnsegmentedAccess {
                    akf: h & 0x40 != 0,
                    aid: h & 0x3f,
                    upper: b[1..].to_vec(),
                })
            }
            (false, true) => {
                if b.len() < 5 || b.len() > 4 + ACCESS_SEGMENT {
                    return Err(bad("segmented access PDU"));
                }
                let (szmic, seg) = parse_seg(&b[1..4]);
                if seg.seg_o > seg.seg_n {
                    return Err(NetError::Prohibited {
                        what: "SegO greater than SegN",
                        value: u32::from(seg.seg_o),
                    });
                }
                Ok(Self::SegmentedAccess {
                    akf: h & 0x40 != 0,
                    aid: h & 0x3f,
                    szmic,
                    seg,
                    segment: b[4..].to_vec(),
                })
            }
            (true, false) => {
                if b.len() > 1 + MAX_UNSEG_CONTROL {
                    return Err(bad("unsegmented control PDU"));
                }
                let opcode = h & 0x7f;
                if opcode == OPCODE_SEGMENT_ACK && b.len() != 7 {
                    return Err(bad("segment acknowledgment"));
                }
                Ok(Self::UnsegmentedControl {
                    opcode,
                    params: b[1..].to_vec(),
                })
            }
            (true, true) => {
                if b.len() < 5 || b.len() > 4 + CONTROL_SEGMENT {
                    return Err(bad("segmented control PDU"));
                }
                let (_rfu, seg) = parse_seg(&b[1..4]);
                let opcode = h & 0x7f;
                if seg.seg_o > seg.seg_n || opcode == OPCODE_SEGMENT_ACK {
                    return Err(NetError::Prohibited {
                        what: "segmented control header",
                        value: u32::from(h),
                    });
                }
                Ok(Self::SegmentedControl {
                    opcode,
                    seg,
                    segment: b[4..].to_vec(),
                })
            }
        }
    }

    /// Whether this PDU travels with CTL = 1.
    pub fn is_control(&self) -> bool {
        matches!(
            self,
            Self::UnsegmentedControl { .. } | Self::SegmentedControl { .. }
        )
    }

    /// Appends the PDU's octets.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Self::UnsegmentedAccess { akf, aid, upper } => {
                out.push((u8::from(*akf) << 6) | (aid & 0x3f));
                out.extend_from_slice(upper);
            }
            Self::SegmentedAccess {
                akf,
                aid,
                szmic,
                seg,
                segment,
            } => {
                out.push(0x80 | (u8::from(*akf) << 6) | (aid & 0x3f));
                emit_seg(*szmic, seg, out);
                out.extend_from_slice(segment);
            }
            Self::UnsegmentedControl { opcode, params } => {
                out.push(opcode & 0x7f);
                out.extend_from_slice(params);
            }
            Self::SegmentedControl {
                opcode,
                seg,
                segment,
            } => {
                out.push(0x80 | (opcode & 0x7f));
                emit_seg(false, seg, out);
                out.extend_from_slice(segment);
            }
        }
    }

    /// The PDU's octets.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.emit(&mut v);
        v
    }
}

/// Segment Acknowledgment parameters (§3.6.5.2): `OBO | SeqZero | RFU(2)` ‖ BlockAck (32, BE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentAck {
    /// Sent by a friend on behalf of a Low Power node.
    pub obo: bool,
    /// SeqZero of the acknowledged message.
    pub seq_zero: u16,
    /// Bit n set: segment n received. 0: the receiver is busy.
    pub block_ack: u32,
}

impl SegmentAck {
    /// Parses the 6 parameter octets.
    pub fn parse(p: &[u8]) -> Result<Self> {
        if p.len() != 6 {
            return Err(NetError::BadLength {
                what: "segment acknowledgment",
                actual: p.len(),
            });
        }
        let v = u16::from_be_bytes([p[0], p[1]]);
        Ok(Self {
            obo: v & 0x8000 != 0,
            seq_zero: (v >> 2) & 0x1fff,
            block_ack: u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
        })
    }

    /// Appends the 6 parameter octets.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let v = (u16::from(self.obo) << 15) | ((self.seq_zero & 0x1fff) << 2);
        out.extend_from_slice(&v.to_be_bytes());
        out.extend_from_slice(&self.block_ack.to_be_bytes());
    }
}

/// SAR timers and limits; see the module documentation for the defaults and their source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SarConfig {
    /// Retransmission rounds of a segmented message to a unicast address.
    pub unicast_retransmissions: u8,
    /// Rounds in a row without a newly acknowledged segment before giving up.
    pub unicast_retransmissions_without_progress: u8,
    /// Base time between retransmission rounds to a unicast address.
    pub unicast_interval: Duration,
    /// Added to the unicast interval per hop of TTL.
    pub unicast_interval_per_hop: Duration,
    /// Retransmission rounds of a segmented message to a group or virtual address.
    pub multicast_retransmissions: u8,
    /// Time between multicast rounds.
    pub multicast_interval: Duration,
    /// Segment reception interval: the unit of the acknowledgement delay.
    pub rx_segment_interval: Duration,
    /// Incomplete messages are discarded this long after their last new segment.
    pub discard_timeout: Duration,
    /// Most messages reassembled at once; more are refused with a busy acknowledgement.
    pub max_rx_sessions: usize,
}

impl Default for SarConfig {
    fn default() -> Self {
        Self {
            unicast_retransmissions: 7,
            unicast_retransmissions_without_progress: 2,
            unicast_interval: Duration::from_millis(200),
            unicast_interval_per_hop: Duration::from_millis(50),
            multicast_retransmissions: 2,
            multicast_interval: Duration::from_millis(250),
            rx_segment_interval: Duration::from_millis(60),
            discard_timeout: Duration::from_secs(10),
            max_rx_sessions: 64,
        }
    }
}

impl SarConfig {
    fn unicast_interval(&self, ttl: u8) -> Duration {
        self.unicast_interval + self.unicast_interval_per_hop * u32::from(ttl)
    }

    /// `min(SegN + 1, 2.5) × segment interval` (ack delay increment 1).
    fn ack_delay(&self, seg_n: u8) -> Duration {
        let halves = (2 * (u32::from(seg_n) + 1)).min(ACK_DELAY_INCREMENT_HALVES);
        self.rx_segment_interval * halves / 2
    }

    /// The shortest time between two Segment Acknowledgments for the same SeqAuth of a
    /// message already received in full: `acknowledgment delay increment × segment reception
    /// interval` (MshPRT v1.1 §3.5.3.4: the lower transport layer shall not send more than one
    /// Segment Acknowledgment message for the same SeqAuth in that period). 150 ms by
    /// default.
    ///
    /// Each retransmission round of the sender arrives as one PDU per segment, and each of
    /// those as several copies (Network Transmit); acknowledging every copy made a provisioner
    /// answer one round of a 3-segment Composition Data Status with up to nine identical acks,
    /// which clogged its own advertising queue (README, "Soak and fault runs").
    pub fn reack_interval(&self) -> Duration {
        self.rx_segment_interval * ACK_DELAY_INCREMENT_HALVES / 2
    }
}

/// Settings of the transport layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// TTL of messages sent without an explicit one, and of segment acknowledgements.
    pub default_ttl: u8,
    /// SAR timers and limits.
    pub sar: SarConfig,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            default_ttl: 7,
            sar: SarConfig::default(),
        }
    }
}

/// Which key secures an access message being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySelect {
    /// The application key with this AppKey index.
    App(u16),
    /// The device key of the destination (a configuration client) or, when the table has
    /// none, of the source (a node answering).
    Dev,
}

/// The key that opened a received access message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsed {
    /// The application key with this index.
    App(u16),
    /// The device key of this address.
    Dev(u16),
}

/// Destination of an access message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// A unicast or group address.
    Address(u16),
    /// A virtual address given by its Label UUID.
    Virtual([u8; 16]),
}

impl Destination {
    /// The 16-bit address in the network header.
    pub fn address(&self) -> u16 {
        match self {
            Self::Address(a) => *a,
            Self::Virtual(l) => toolbox::virtual_address(l),
        }
    }
}

/// An access message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessSend {
    /// Subnet to send on.
    pub net_key_index: u16,
    /// Our element address.
    pub src: u16,
    /// Destination.
    pub dst: Destination,
    /// TTL, or `None` for the default TTL.
    pub ttl: Option<u8>,
    /// The key.
    pub key: KeySelect,
    /// Use a 64-bit TransMIC (forces segmentation).
    pub big_mic: bool,
    /// Segment even if it fits one PDU (to get an acknowledgement).
    pub force_segmented: bool,
    /// The access PDU: opcode ‖ parameters.
    pub access_pdu: Vec<u8>,
}

impl AccessSend {
    /// A message with the default TTL, a 32-bit TransMIC, segmented only when needed.
    pub fn new(
        net_key_index: u16,
        src: u16,
        dst: Destination,
        key: KeySelect,
        access_pdu: Vec<u8>,
    ) -> Self {
        Self {
            net_key_index,
            src,
            dst,
            ttl: None,
            key,
            big_mic: false,
            force_segmented: false,
            access_pdu,
        }
    }
}

/// A transport control message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSend {
    /// Subnet to send on.
    pub net_key_index: u16,
    /// Our element address.
    pub src: u16,
    /// Destination address.
    pub dst: u16,
    /// TTL, or `None` for the default TTL.
    pub ttl: Option<u8>,
    /// 7-bit control opcode, 0x01..=0x7F.
    pub opcode: u8,
    /// Parameters: up to 11 octets go unsegmented, up to 256 segmented.
    pub params: Vec<u8>,
}

/// Identifies one message given to [`Transport::send_access`] or [`Transport::send_control`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

/// Why a segmented message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// The retransmissions ran out without a full acknowledgement.
    Timeout,
    /// The receiver answered with BlockAck 0 (busy).
    ReceiverBusy,
    /// The message could not be started or continued: SEQ numbers ran out, the IV Index
    /// changed mid-message, or its key was removed while it waited in the queue.
    Aborted,
}

/// A decrypted access message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedAccess {
    /// The subnet it came in on.
    pub net_key_index: u16,
    /// Source address.
    pub src: u16,
    /// Destination address.
    pub dst: u16,
    /// The Label UUID when `dst` is virtual.
    pub label: Option<[u8; 16]>,
    /// The key that authenticated it.
    pub key: KeyUsed,
    /// TTL of the (first) network PDU.
    pub ttl: u8,
    /// IV Index of SeqAuth.
    pub iv_index: u32,
    /// SEQ of SeqAuth (24 bits).
    pub seq_auth: u32,
    /// The access PDU: opcode ‖ parameters.
    pub access_pdu: Vec<u8>,
}

/// A transport control message other than a Segment Acknowledgment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedControl {
    /// The subnet it came in on.
    pub net_key_index: u16,
    /// Source address.
    pub src: u16,
    /// Destination address.
    pub dst: u16,
    /// TTL of the (first) network PDU.
    pub ttl: u8,
    /// 7-bit control opcode.
    pub opcode: u8,
    /// Parameters.
    pub params: Vec<u8>,
}

/// What the transport layer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportEvent {
    /// An access message for us.
    Access(ReceivedAccess),
    /// A control message for us.
    Control(ReceivedControl),
    /// A message was sent: all segments acknowledged (`acknowledged`), or an unsegmented or
    /// multicast message handed to the network layer with all its retransmissions.
    Sent {
        /// Which message.
        id: MessageId,
        /// Whether the receiver acknowledged every segment.
        acknowledged: bool,
    },
    /// A segmented message was given up.
    Failed {
        /// Which message.
        id: MessageId,
        /// Why.
        reason: SendFailure,
    },
}

/// Why [`Transport::handle_network_pdu`] did not deliver a PDU (normal on a shared medium).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// The network layer dropped it.
    Network(DropReason),
    /// The lower transport PDU is malformed.
    Malformed(NetError),
    /// Segments of one message disagree (SegN, SZMIC, AID, length).
    Inconsistent,
    /// A segment of a message older than the one being (or last) reassembled from the source.
    Stale,
    /// Too many messages in reassembly: refused with a busy acknowledgement.
    Busy,
    /// No key opened the upper transport PDU.
    NoKey,
    /// A Segment Acknowledgment that matches no message being sent.
    UnexpectedAck,
}

/// Whether a PDU completed something visible; `Ok(())` also for a stored segment.
pub type RxResult = core::result::Result<(), Dropped>;

#[derive(Debug, Clone)]
struct AppKeyEntry {
    net_key_index: u16,
    old: (AppKey, u8),
    new: Option<(AppKey, u8)>,
    tx_new: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Access { akf: bool, aid: u8, szmic: bool },
    Control { opcode: u8 },
}

#[derive(Debug)]
struct TxSession {
    id: MessageId,
    net_key_index: u16,
    src: u16,
    dst: u16,
    ttl: u8,
    ctl: bool,
    iv_index: u32,
    seq_auth: u32,
    /// Lower transport PDUs, one per segment.
    segments: Vec<Vec<u8>>,
    acked: u32,
    retransmissions_left: u8,
    without_progress_left: u8,
    /// Segments of the current round still waiting in [`Transport::transmits`].
    unsent: usize,
    /// When the retransmission timer expires; `None` while segments of the round wait
    /// (§3.5.3.3.1: the timer starts when the last of them is transmitted).
    deadline: Option<Instant>,
}

impl TxSession {
    /// The initial value of its retransmission timer.
    fn interval(&self, sar: &SarConfig) -> Duration {
        if address::is_unicast(self.dst) {
            sar.unicast_interval(self.ttl)
        } else {
            sar.multicast_interval
        }
    }

    fn all(&self) -> u32 {
        mask(self.segments.len())
    }
}

fn mask(n: usize) -> u32 {
    if n >= 32 { u32::MAX } else { (1u32 << n) - 1 }
}

#[derive(Debug)]
enum Queued {
    Access(AccessSend, MessageId),
    Control {
        id: MessageId,
        net_key_index: u16,
        src: u16,
        dst: u16,
        ttl: u8,
        opcode: u8,
        params: Vec<u8>,
    },
}

#[derive(Debug)]
struct RxSession {
    net_key_index: u16,
    dst: u16,
    ttl: u8,
    iv_index: u32,
    seq_auth: u32,
    kind: Kind,
    seg_n: u8,
    segments: Vec<Option<Vec<u8>>>,
    received: u32,
    ack_deadline: Option<Instant>,
    discard_deadline: Instant,
}

/// What a PDU waiting in [`Transport::transmits`] is, so that it can be withdrawn or replaced
/// before the bearer takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Segment `seg_o` of the segmented message `id`.
    Segment { id: MessageId, seg_o: u8 },
    /// A Segment Acknowledgment from `from` to `to` for `seq_zero`.
    Ack { from: u16, to: u16, seq_zero: u16 },
    /// An unsegmented message.
    Other,
}

#[derive(Debug)]
struct Outgoing {
    origin: Origin,
    transmit: Transmit,
}

#[derive(Debug, Clone, Copy)]
struct RxDone {
    net_key_index: u16,
    dst: u16,
    ttl: u8,
    iv_index: u32,
    seq_auth: u32,
    block_ack: u32,
    /// When the last acknowledgement for it was sent: the next one waits
    /// [`SarConfig::reack_interval`].
    last_ack: Option<Instant>,
}

/// The transport layers over one [`NetworkLayer`].
#[derive(Debug)]
pub struct Transport<S> {
    config: TransportConfig,
    net: NetworkLayer<S>,
    app_keys: BTreeMap<u16, AppKeyEntry>,
    dev_keys: HashMap<u16, DevKey>,
    labels: Vec<[u8; 16]>,
    next_id: u64,
    tx: Vec<TxSession>,
    queue: VecDeque<Queued>,
    rx: HashMap<u16, RxSession>,
    rx_done: HashMap<u16, RxDone>,
    transmits: VecDeque<Outgoing>,
    events: VecDeque<TransportEvent>,
    /// The latest time given to any method: [`Transport::poll_transmit`] takes PDUs then.
    clock: Instant,
}

/// SeqAuth's SEQ from a segment's SEQ and SeqZero (§3.5.3.1), or `None` if it would be
/// negative.
fn seq_auth_of(seq: u32, seq_zero: u16) -> Option<u32> {
    let delta = seq.wrapping_sub(u32::from(seq_zero)) & 0x1fff;
    seq.checked_sub(delta)
}

impl<S: SeqSource> Transport<S> {
    /// A transport over `net` with no application or device keys.
    pub fn new(config: TransportConfig, net: NetworkLayer<S>) -> Self {
        Self {
            config,
            net,
            app_keys: BTreeMap::new(),
            dev_keys: HashMap::new(),
            labels: Vec::new(),
            next_id: 0,
            tx: Vec::new(),
            queue: VecDeque::new(),
            rx: HashMap::new(),
            rx_done: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            clock: Instant::ZERO,
        }
    }

    fn tick(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
    }

    fn push_transmit(&mut self, origin: Origin, transmit: Transmit) {
        self.transmits.push_back(Outgoing { origin, transmit });
    }

    /// Withdraws the waiting segments of message `id` that `keep` rejects; returns how many.
    fn withdraw_segments(&mut self, id: MessageId, keep: impl Fn(u8) -> bool) -> usize {
        let before = self.transmits.len();
        self.transmits.retain(|o| match o.origin {
            Origin::Segment { id: i, seg_o } if i == id => keep(seg_o),
            _ => true,
        });
        before - self.transmits.len()
    }

    /// The network layer (subnets, IV Index, elements, subscriptions).
    pub fn network(&self) -> &NetworkLayer<S> {
        &self.net
    }

    /// The network layer, mutable.
    pub fn network_mut(&mut self) -> &mut NetworkLayer<S> {
        &mut self.net
    }

    /// The settings.
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// Adds (or replaces) application key `index`, bound to subnet `net_key_index`.
    pub fn add_app_key(&mut self, index: u16, net_key_index: u16, key: AppKey) {
        let aid = toolbox::k4(&key);
        self.app_keys.insert(
            index,
            AppKeyEntry {
                net_key_index,
                old: (key, aid),
                new: None,
                tx_new: false,
            },
        );
    }

    /// Key refresh: receive with `new_key` too; [`use_new_app_key`](Self::use_new_app_key)
    /// sends with it, [`revoke_old_app_key`](Self::revoke_old_app_key) drops the old one.
    pub fn update_app_key(&mut self, index: u16, new_key: AppKey) -> Result<()> {
        let e = self.app_entry(index)?;
        let aid = toolbox::k4(&new_key);
        e.new = Some((new_key, aid));
        Ok(())
    }

    /// Key refresh phase 2 for an application key.
    pub fn use_new_app_key(&mut self, index: u16) -> Result<()> {
        self.app_entry(index)?.tx_new = true;
        Ok(())
    }

    /// Key refresh phase 3 for an application key.
    pub fn revoke_old_app_key(&mut self, index: u16) -> Result<()> {
        let e = self.app_entry(index)?;
        if let Some(n) = e.new.take() {
            e.old = n;
        }
        e.tx_new = false;
        Ok(())
    }

    /// Removes application key `index`.
    pub fn remove_app_key(&mut self, index: u16) -> bool {
        self.app_keys.remove(&index).is_some()
    }

    fn app_entry(&mut self, index: u16) -> Result<&mut AppKeyEntry> {
        self.app_keys.get_mut(&index).ok_or(NetError::UnknownKey {
            what: "AppKey index",
            index,
        })
    }

    /// The indexes of the application keys bound to subnet `net_key_index` (a key refresh of
    /// the subnet moves them along with it).
    pub fn app_keys_of(&self, net_key_index: u16) -> Vec<u16> {
        self.app_keys
            .iter()
            .filter(|(_, e)| e.net_key_index == net_key_index)
            .map(|(&i, _)| i)
            .collect()
    }

    /// Adds (or replaces) the device key of the node at unicast `address`.
    pub fn add_dev_key(&mut self, address: u16, key: DevKey) {
        self.dev_keys.insert(address, key);
    }

    /// Removes the device key of `address`.
    pub fn remove_dev_key(&mut self, address: u16) -> bool {
        self.dev_keys.remove(&address).is_some()
    }

    /// Accepts messages to the virtual address of `label` (and subscribes the network layer).
    pub fn subscribe_label(&mut self, label: [u8; 16]) {
        if !self.labels.contains(&label) {
            self.labels.push(label);
        }
        self.net.subscribe(toolbox::virtual_address(&label));
    }

    fn new_id(&mut self) -> MessageId {
        self.next_id += 1;
        MessageId(self.next_id)
    }

    /// Queues an access message. Unsegmented messages go out at once; segmented ones start
    /// when no earlier segmented message from `src` to the same destination is in flight.
    pub fn send_access(&mut self, now: Instant, msg: AccessSend) -> Result<MessageId> {
        self.tick(now);
        let mic = if msg.big_mic { 8 } else { 4 };
        if msg.access_pdu.is_empty() || msg.access_pdu.len() + mic > 32 * ACCESS_SEGMENT {
            return Err(NetError::InvalidArgument("access PDU of 1..=380 octets"));
        }
        self.check_common(msg.net_key_index, msg.src, msg.dst.address(), msg.ttl)?;
        match msg.key {
            KeySelect::App(i) if !self.app_keys.contains_key(&i) => {
                return Err(NetError::UnknownKey {
                    what: "AppKey index",
                    index: i,
                });
            }
            KeySelect::Dev
                if !self.dev_keys.contains_key(&msg.dst.address())
                    && !self.dev_keys.contains_key(&msg.src) =>
            {
                return Err(NetError::UnknownKey {
                    what: "device key",
                    index: msg.dst.address(),
                });
            }
            _ => {}
        }
        let id = self.new_id();
        self.enqueue(Queued::Access(msg, id));
        Ok(id)
    }

    /// Queues a transport control message (opcode 0x01..=0x7F; Segment Acknowledgments are
    /// this layer's own business).
    pub fn send_control(&mut self, now: Instant, msg: ControlSend) -> Result<MessageId> {
        self.tick(now);
        let ControlSend {
            net_key_index,
            src,
            dst,
            ttl,
            opcode,
            params,
        } = msg;
        if opcode == OPCODE_SEGMENT_ACK || opcode > 0x7f {
            return Err(NetError::InvalidArgument("control opcode 0x01..=0x7F"));
        }
        if params.len() > 32 * CONTROL_SEGMENT {
            return Err(NetError::InvalidArgument(
                "control parameters of at most 256 octets",
            ));
        }
        self.check_common(net_key_index, src, dst, ttl)?;
        let id = self.new_id();
        let ttl = ttl.unwrap_or(self.config.default_ttl);
        self.enqueue(Queued::Control {
            id,
            net_key_index,
            src,
            dst,
            ttl,
            opcode,
            params,
        });
        Ok(id)
    }

    fn check_common(&self, net_key_index: u16, src: u16, dst: u16, ttl: Option<u8>) -> Result<()> {
        if !address::is_unicast(src) {
            return Err(NetError::InvalidArgument(
                "source must be a unicast address",
            ));
        }
        if dst == address::UNASSIGNED {
            return Err(NetError::InvalidArgument("destination unassigned"));
        }
        if ttl.is_some_and(|t| t == 1 || t > 0x7f) {
            return Err(NetError::InvalidArgument("TTL 0 or 2..=127"));
        }
        if !self.net.subnets().any(|i| i == net_key_index) {
            return Err(NetError::UnknownKey {
                what: "NetKey index",
                index: net_key_index,
            });
        }
        Ok(())
    }

    fn enqueue(&mut self, q: Queued) {
        self.queue.push_back(q);
        self.start_queued();
    }

    fn queued_route(q: &Queued) -> (u16, u16) {
        match q {
            Queued::Access(m, _) => (m.src, m.dst.address()),
            Queued::Control { src, dst, .. } => (*src, *dst),
        }
    }

    /// Starts every queued message whose (src, dst) has no segmented message in flight.
    fn start_queued(&mut self) {
        let mut i = 0;
        while i < self.queue.len() {
            let route = Self::queued_route(&self.queue[i]);
            let busy = self.tx.iter().any(|t| (t.src, t.dst) == route)
                || self
                    .queue
                    .iter()
                    .take(i)
                    .any(|q| Self::queued_route(q) == route);
            if busy {
                i += 1;
                continue;
            }
            let Some(q) = self.queue.remove(i) else { break };
            let id = match &q {
                Queued::Access(_, id) | Queued::Control { id, .. } => *id,
            };
            if self.start(q).is_err() {
                self.events.push_back(TransportEvent::Failed {
                    id,
                    reason: SendFailure::Aborted,
                });
            }
        }
    }

    fn start(&mut self, q: Queued) -> Result<()> {
        match q {
            Queued::Access(m, id) => self.start_access(m, id),
            Queued::Control {
                id,
                net_key_index,
                src,
                dst,
                ttl,
                opcode,
                params,
            } => {
                let seq = self.net.next_seq(src)?;
                let header = |seq| NetworkHeader {
                    ctl: true,
                    ttl,
                    seq,
                    src,
                    dst,
                };
                if params.len() <= MAX_UNSEG_CONTROL {
                    let pdu = LowerPdu::UnsegmentedControl { opcode, params }.to_vec();
                    let t = self.net.encrypt(net_key_index, &header(seq), &pdu)?;
                    self.push_transmit(Origin::Other, t);
                    self.events.push_back(TransportEvent::Sent {
                        id,
                        acknowledged: false,
                    });
                    return Ok(());
                }
                let chunks: Vec<&[u8]> = params.chunks(CONTROL_SEGMENT).collect();
                let seg_n = (chunks.len() - 1) as u8;
                let segments = chunks
                    .iter()
                    .enumerate()
                    .map(|(o, c)| {
                        LowerPdu::SegmentedControl {
                            opcode,
                            seg: SegmentInfo {
                                seq_zero: (seq & 0x1fff) as u16,
                                seg_o: o as u8,
                                seg_n,
                            },
                            segment: c.to_vec(),
                        }
                        .to_vec()
                    })
                    .collect();
                let route = (src, dst, ttl, true);
                self.start_segmented(id, net_key_index, route, seq, segments)
            }
        }
    }

    fn start_access(&mut self, m: AccessSend, id: MessageId) -> Result<()> {
        let dst = m.dst.address();
        let ttl = m.ttl.unwrap_or(self.config.default_ttl);
        let seq = self.net.next_seq(m.src)?;
        let iv_index = self.net.iv_index().tx();
        let segmented = m.force_segmented || m.big_mic || m.access_pdu.len() + 4 > MAX_UNSEG_ACCESS;
        let mic = if m.big_mic {
            MicLen::Mic8
        } else {
            MicLen::Mic4
        };
        let params = AccessParams {
            seq,
            src: m.src,
            dst,
            iv_index,
        };
        let label = match &m.dst {
            Destination::Virtual(l) => Some(l),
            Destination::Address(_) => None,
        };
        let (akf, aid, enc) = match m.key {
            KeySelect::App(i) => {
                let e = self.app_keys.get(&i).ok_or(NetError::UnknownKey {
                    what: "AppKey index",
                    index: i,
                })?;
                let (key, aid) = match (&e.new, e.tx_new) {
                    (Some(n), true) => n,
                    _ => &e.old,
                };
                let enc = upper::encrypt(AccessKey::App(key), &params, label, &m.access_pdu, mic)?;
                (true, *aid, enc)
            }
            KeySelect::Dev => {
                let key = self
                    .dev_keys
                    .get(&dst)
                    .or_else(|| self.dev_keys.get(&m.src))
                    .ok_or(NetError::UnknownKey {
                        what: "device key",
                        index: dst,
                    })?;
                let enc = upper::encrypt(AccessKey::Dev(key), &params, label, &m.access_pdu, mic)?;
                (false, 0, enc)
            }
        };
        let header = NetworkHeader {
            ctl: false,
            ttl,
            seq,
            src: m.src,
            dst,
        };
        if !segmented {
            let pdu = LowerPdu::UnsegmentedAccess {
                akf,
                aid,
                upper: enc,
            }
            .to_vec();
            let t = self.net.encrypt(m.net_key_index, &header, &pdu)?;
            self.push_transmit(Origin::Other, t);
            self.events.push_back(TransportEvent::Sent {
                id,
                acknowledged: false,
            });
            return Ok(());
        }
        let chunks: Vec<&[u8]> = enc.chunks(ACCESS_SEGMENT).collect();
        let seg_n = (chunks.len() - 1) as u8;
        let segments = chunks
            .iter()
            .enumerate()
            .map(|(o, c)| {
                LowerPdu::SegmentedAccess {
                    akf,
                    aid,
                    szmic: m.big_mic,
                    seg: SegmentInfo {
                        seq_zero: (seq & 0x1fff) as u16,
                        seg_o: o as u8,
                        seg_n,
                    },
                    segment: c.to_vec(),
                }
                .to_vec()
            })
            .collect();
        let route = (m.src, dst, ttl, false);
        self.start_segmented(id, m.net_key_index, route, seq, segments)
    }

    /// `route` is (src, dst, ttl, ctl).
    fn start_segmented(
        &mut self,
        id: MessageId,
        net_key_index: u16,
        (src, dst, ttl, ctl): (u16, u16, u8, bool),
        seq_auth: u32,
        segments: Vec<Vec<u8>>,
    ) -> Result<()> {
        let sar = &self.config.sar;
        let unicast = address::is_unicast(dst);
        let mut s = TxSession {
            id,
            net_key_index,
            src,
            dst,
            ttl,
            ctl,
            iv_index: self.net.iv_index().tx(),
            seq_auth,
            segments,
            acked: 0,
            retransmissions_left: if unicast {
                sar.unicast_retransmissions
            } else {
                sar.multicast_retransmissions
            },
            without_progress_left: sar.unicast_retransmissions_without_progress,
            unsent: 0,
            deadline: None,
        };
        // The first segment carries SeqAuth itself as its SEQ.
        if let Err(e) = self.send_segments(&mut s, Some(seq_auth)) {
            self.withdraw_segments(id, |_| false);
            return Err(e);
        }
        self.tx.push(s);
        Ok(())
    }

    /// Queues every unacknowledged segment of `s` (a new round), each with a new SEQ (the
    /// first one with `first_seq` when given); its retransmission timer waits until the
    /// bearer has taken them all.
    fn send_segments(&mut self, s: &mut TxSession, mut first_seq: Option<u32>) -> Result<()> {
        if self.net.iv_index().tx() != s.iv_index {
            return Err(NetError::InvalidArgument("IV Index changed"));
        }
        s.deadline = None;
        for (o, pdu) in s.segments.iter().enumerate() {
            if s.acked & (1 << o) != 0 {
                continue;
            }
            let seq = match first_seq.take() {
                Some(seq) => seq,
                None => self.net.next_seq(s.src)?,
            };
            if seq.wrapping_sub(s.seq_auth) > 0x1fff {
                return Err(NetError::SeqUnavailable(
                    "SEQ too far from SeqAuth for SeqZero".into(),
                ));
            }
            let header = NetworkHeader {
                ctl: s.ctl,
                ttl: s.ttl,
                seq,
                src: s.src,
                dst: s.dst,
            };
            let t = self.net.encrypt(s.net_key_index, &header, pdu)?;
            // At most 32 segments (checked by send_access/send_control): `o` fits a SegO.
            let seg_o = o as u8;
            self.transmits.push_back(Outgoing {
                origin: Origin::Segment { id: s.id, seg_o },
                transmit: t,
            });
            s.unsent += 1;
        }
        Ok(())
    }

    /// Ends message `i` with `event`: its segments still waiting are withdrawn.
    fn finish_tx(&mut self, i: usize, event: TransportEvent) {
        let s = self.tx.swap_remove(i);
        self.withdraw_segments(s.id, |_| false);
        self.events.push_back(event);
        self.start_queued();
    }

    /// A message whose round could not be queued (SEQ exhausted, IV Index changed).
    fn abort_tx(&mut self, id: MessageId) {
        self.withdraw_segments(id, |_| false);
        self.events.push_back(TransportEvent::Failed {
            id,
            reason: SendFailure::Aborted,
        });
        self.start_queued();
    }

    /// Handles one received network PDU (the AD type 0x2A payload).
    pub fn handle_network_pdu(&mut self, now: Instant, pdu: &[u8]) -> RxResult {
        self.tick(now);
        let n = self.net.decrypt_unchecked(pdu).map_err(Dropped::Network)?;
        let h = n.header;
        let lower = LowerPdu::parse(h.ctl, &n.transport_pdu).map_err(Dropped::Malformed)?;
        // Replay protection (§3.9.8): by SEQ, except for a segment of the message being
        // reassembled (or just completed) from this source, which may arrive out of order
        // and is deduplicated by its segment number under the same SeqAuth.
        let seg_zero = match &lower {
            LowerPdu::SegmentedAccess { seg, .. } | LowerPdu::SegmentedControl { seg, .. } => {
                Some(seg.seq_zero)
            }
            _ => None,
        };
        let current = seg_zero
            .and_then(|z| seq_auth_of(h.seq, z))
            .is_some_and(|auth| {
                let key = (n.iv_index, auth);
                self.rx
                    .get(&h.src)
                    .is_some_and(|s| (s.iv_index, s.seq_auth) == key)
                    || self
                        .rx_done
                        .get(&h.src)
                        .is_some_and(|d| (d.iv_index, d.seq_auth) == key)
            });
        if !current {
            self.net
                .replay_check(h.src, n.iv_index, h.seq)
                .map_err(Dropped::Network)?;
        }
        self.net.replay_update(h.src, n.iv_index, h.seq);
        match lower {
            LowerPdu::UnsegmentedAccess { akf, aid, upper } => {
                let msg = self.open_access(
                    n.net_key_index,
                    h.src,
                    h.dst,
                    h.ttl,
                    n.iv_index,
                    h.seq,
                    akf,
                    aid,
                    MicLen::Mic4,
                    &upper,
                )?;
                self.events.push_back(TransportEvent::Access(msg));
                Ok(())
            }
            LowerPdu::UnsegmentedControl { opcode, params } => {
                if opcode == OPCODE_SEGMENT_ACK {
                    let ack = SegmentAck::parse(&params).map_err(Dropped::Malformed)?;
                    return self.handle_ack(now, h.src, h.dst, ack);
                }
                self.events
                    .push_back(TransportEvent::Control(ReceivedControl {
                        net_key_index: n.net_key_index,
                        src: h.src,
                        dst: h.dst,
                        ttl: h.ttl,
                        opcode,
                        params,
                    }));
                Ok(())
            }
            LowerPdu::SegmentedAccess {
                akf,
                aid,
                szmic,
                seg,
                segment,
            } => self.handle_segment(now, &n, Kind::Access { akf, aid, szmic }, seg, segment),
            LowerPdu::SegmentedControl {
                opcode,
                seg,
                segment,
            } => self.handle_segment(now, &n, Kind::Control { opcode }, seg, segment),
        }
    }

    fn handle_ack(&mut self, now: Instant, src: u16, dst: u16, ack: SegmentAck) -> RxResult {
        let Some(i) = self.tx.iter().position(|t| {
            t.dst == src && t.src == dst && (t.seq_auth & 0x1fff) as u16 == ack.seq_zero
        }) else {
            return Err(Dropped::UnexpectedAck);
        };
        let id = self.tx[i].id;
        if ack.block_ack == 0 {
            self.finish_tx(
                i,
                TransportEvent::Failed {
                    id,
                    reason: SendFailure::ReceiverBusy,
                },
            );
            return Ok(());
        }
        let all = self.tx[i].all();
        let newly = ack.block_ack & all & !self.tx[i].acked;
        self.tx[i].acked |= ack.block_ack & all;
        // The timer runs once the whole round has been taken (§3.5.3.3.1).
        let timer_running = self.tx[i].deadline.is_some();
        // Acknowledged segments still waiting for the bearer are not sent at all.
        let acked = self.tx[i].acked;
        let withdrawn = self.withdraw_segments(id, |o| acked & (1u32 << o) == 0);
        self.tx[i].unsent = self.tx[i].unsent.saturating_sub(withdrawn);
        if self.tx[i].acked == all {
            self.finish_tx(
                i,
                TransportEvent::Sent {
                    id,
                    acknowledged: true,
                },
            );
            return Ok(());
        }
        if newly != 0 {
            self.tx[i].without_progress_left =
                self.config.sar.unicast_retransmissions_without_progress;
            if !timer_running {
                // The round is still being transmitted: the missing segments are on their
                // way (§3.5.3.3.2 resends on progress only while the timer runs). If the
                // rest of the round was just withdrawn, the round is out: the timer starts.
                if self.tx[i].unsent == 0 {
                    let interval = self.tx[i].interval(&self.config.sar);
                    self.tx[i].deadline = Some(now + interval);
                }
                return Ok(());
            }
            // Progress: resend what is missing now; the timer restarts when it has left.
            let mut s = self.tx.swap_remove(i);
            match self.send_segments(&mut s, None) {
                Ok(()) => self.tx.push(s),
                Err(_) => self.abort_tx(id),
            }
        }
        Ok(())
    }

    fn handle_segment(
        &mut self,
        now: Instant,
        n: &super::network::NetworkPdu,
        kind: Kind,
        seg: SegmentInfo,
        segment: Vec<u8>,
    ) -> RxResult {
        let h = n.header;
        let seq_auth = seq_auth_of(h.seq, seg.seq_zero).ok_or(Dropped::Stale)?;
        let key = (n.iv_index, seq_auth);
        let unicast = address::is_unicast(h.dst);
        // A segment of a message already completed: the sender missed our acknowledgement.
        // Acknowledge it again, but not more than once per re-ack interval (§3.5.3.4): its
        // other segments and their Network Transmit copies arrive within that interval.
        let reack_interval = self.config.sar.reack_interval();
        if let Some(d) = self.rx_done.get_mut(&h.src) {
            if (d.iv_index, d.seq_auth) == key {
                let due = d
                    .last_ack
                    .is_none_or(|t| now.saturating_duration_since(t) >= reack_interval);
                if unicast && due {
                    d.last_ack = Some(now);
                    let d = *d;
                    self.send_ack(
                        d.net_key_index,
                        d.dst,
                        h.src,
                        d.ttl,
                        d.seq_auth,
                        d.block_ack,
                    );
                }
                return Ok(());
            }
            if key < (d.iv_index, d.seq_auth) {
                return Err(Dropped::Stale);
            }
        }
        if let Some(s) = self.rx.get(&h.src) {
            let cur = (s.iv_index, s.seq_auth);
            if key < cur {
                return Err(Dropped::Stale);
            }
            if key > cur {
                self.rx.remove(&h.src);
            }
        }
        if !self.rx.contains_key(&h.src) {
            if self.rx.len() >= self.config.sar.max_rx_sessions {
                if unicast {
                    self.send_ack(n.net_key_index, h.dst, h.src, h.ttl, seq_auth, 0);
                }
                return Err(Dropped::Busy);
            }
            self.rx.insert(
                h.src,
                RxSession {
                    net_key_index: n.net_key_index,
                    dst: h.dst,
                    ttl: h.ttl,
                    iv_index: n.iv_index,
                    seq_auth,
                    kind,
                    seg_n: seg.seg_n,
                    segments: vec![None; usize::from(seg.seg_n) + 1],
                    received: 0,
                    ack_deadline: None,
                    discard_deadline: now + self.config.sar.discard_timeout,
                },
            );
        }
        let sar = self.config.sar.clone();
        let s = self.rx.get_mut(&h.src).ok_or(Dropped::Stale)?;
        let full = match kind {
            Kind::Access { .. } => ACCESS_SEGMENT,
            Kind::Control { .. } => CONTROL_SEGMENT,
        };
        if s.kind != kind
            || s.seg_n != seg.seg_n
            || s.dst != h.dst
            || s.net_key_index != n.net_key_index
            || (seg.seg_o < seg.seg_n && segment.len() != full)
        {
            return Err(Dropped::Inconsistent);
        }
        let bit = 1u32 << seg.seg_o;
        if s.received & bit == 0 {
            s.received |= bit;
            s.segments[usize::from(seg.seg_o)] = Some(segment);
        }
        // Any segment, even a duplicate, restarts the discard timer and arms the ack timer:
        // a duplicate means the sender missed our last acknowledgement.
        s.discard_deadline = now + sar.discard_timeout;
        if unicast && s.ack_deadline.is_none() {
            s.ack_deadline = Some(now + sar.ack_delay(s.seg_n));
        }
        if s.received != mask(usize::from(s.seg_n) + 1) {
            return Ok(());
        }
        let Some(s) = self.rx.remove(&h.src) else {
            return Ok(());
        };
        let done = RxDone {
            net_key_index: s.net_key_index,
            dst: s.dst,
            ttl: s.ttl,
            iv_index: s.iv_index,
            seq_auth: s.seq_auth,
            block_ack: s.received,
            last_ack: unicast.then_some(now),
        };
        self.rx_done.insert(h.src, done);
        if unicast {
            self.send_ack(s.net_key_index, s.dst, h.src, s.ttl, s.seq_auth, s.received);
        }
        let whole: Vec<u8> = s.segments.into_iter().flatten().flatten().collect();
        match s.kind {
            Kind::Control { opcode } => {
                self.events
                    .push_back(TransportEvent::Control(ReceivedControl {
                        net_key_index: s.net_key_index,
                        src: h.src,
                        dst: s.dst,
                        ttl: s.ttl,
                        opcode,
                        params: whole,
                    }));
                Ok(())
            }
            Kind::Access { akf, aid, szmic } => {
                let mic = if szmic { MicLen::Mic8 } else { MicLen::Mic4 };
                let msg = self.open_access(
                    s.net_key_index,
                    h.src,
                    s.dst,
                    s.ttl,
                    s.iv_index,
                    s.seq_auth,
                    akf,
                    aid,
                    mic,
                    &whole,
                )?;
                self.events.push_back(TransportEvent::Access(msg));
                Ok(())
            }
        }
    }

    /// Sends a Segment Acknowledgment from our element `from` to `to` (OBO = 0). The TTL is 0
    /// when the message came with TTL 0 (it cannot have been relayed), else the default TTL.
    fn send_ack(
        &mut self,
        net_key_index: u16,
        from: u16,
        to: u16,
        rx_ttl: u8,
        seq_auth: u32,
        block_ack: u32,
    ) {
        let ack = SegmentAck {
            obo: false,
            seq_zero: (seq_auth & 0x1fff) as u16,
            block_ack,
        };
        let mut pdu = vec![OPCODE_SEGMENT_ACK];
        ack.emit(&mut pdu);
        let Ok(seq) = self.net.next_seq(from) else {
            return;
        };
        let header = NetworkHeader {
            ctl: true,
            ttl: if rx_ttl == 0 {
                0
            } else {
                self.config.default_ttl
            },
            seq,
            src: from,
            dst: to,
        };
        if let Ok(t) = self.net.encrypt(net_key_index, &header, &pdu) {
            let origin = Origin::Ack {
                from,
                to,
                seq_zero: ack.seq_zero,
            };
            // An older acknowledgement of the same message still waiting says less: this one
            // takes its place in the queue.
            match self.transmits.iter_mut().find(|o| o.origin == origin) {
                Some(waiting) => waiting.transmit = t,
                None => self.push_transmit(origin, t),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn open_access(
        &self,
        net_key_index: u16,
        src: u16,
        dst: u16,
        ttl: u8,
        iv_index: u32,
        seq_auth: u32,
        akf: bool,
        aid: u8,
        mic: MicLen,
        enc: &[u8],
    ) -> core::result::Result<ReceivedAccess, Dropped> {
        let params = AccessParams {
            seq: seq_auth,
            src,
            dst,
            iv_index,
        };
        let labels: Vec<Option<&[u8; 16]>> = if address::is_virtual(dst) {
            self.labels
                .iter()
                .filter(|l| toolbox::virtual_address(l) == dst)
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        let ok = |access_pdu, key, label: Option<&[u8; 16]>| ReceivedAccess {
            net_key_index,
            src,
            dst,
            label: label.copied(),
            key,
            ttl,
            iv_index,
            seq_auth,
            access_pdu,
        };
        for label in labels {
            if akf {
                for (&index, e) in &self.app_keys {
                    if e.net_key_index != net_key_index {
                        continue;
                    }
                    for (key, a) in std::iter::once(&e.old).chain(e.new.as_ref()) {
                        if *a != aid {
                            continue;
                        }
                        if let Ok(p) = upper::decrypt(AccessKey::App(key), &params, label, enc, mic)
                        {
                            return Ok(ok(p, KeyUsed::App(index), label));
                        }
                    }
                }
            } else if aid == 0 {
                for addr in [src, dst] {
                    if let Some(key) = self.dev_keys.get(&addr)
                        && let Ok(p) = upper::decrypt(AccessKey::Dev(key), &params, label, enc, mic)
                    {
                        return Ok(ok(p, KeyUsed::Dev(addr), label));
                    }
                }
            }
        }
        Err(Dropped::NoKey)
    }

    /// Runs the timers that are due at `now`; a spurious call is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        // Receivers: acknowledgement and discard timers.
        let mut acks = Vec::new();
        self.rx.retain(|&src, s| {
            if s.discard_deadline <= now {
                return false;
            }
            if s.ack_deadline.is_some_and(|d| d <= now) {
                s.ack_deadline = None;
                acks.push((s.net_key_index, s.dst, src, s.ttl, s.seq_auth, s.received));
            }
            true
        });
        for (net, from, to, ttl, seq_auth, block) in acks {
            self.send_ack(net, from, to, ttl, seq_auth, block);
        }
        // Transmitters: retransmission rounds.
        let mut i = 0;
        while i < self.tx.len() {
            if self.tx[i].deadline.is_none_or(|d| d > now) {
                i += 1;
                continue;
            }
            let mut s = self.tx.swap_remove(i);
            let unicast = address::is_unicast(s.dst);
            let give_up = s.retransmissions_left == 0 || (unicast && s.without_progress_left == 0);
            if give_up {
                let event = if unicast {
                    TransportEvent::Failed {
                        id: s.id,
                        reason: SendFailure::Timeout,
                    }
                } else {
                    TransportEvent::Sent {
                        id: s.id,
                        acknowledged: false,
                    }
                };
                self.events.push_back(event);
                self.start_queued();
                continue;
            }
            s.retransmissions_left -= 1;
            s.without_progress_left = s.without_progress_left.saturating_sub(1);
            match self.send_segments(&mut s, None) {
                Ok(()) => self.tx.push(s),
                Err(_) => self.abort_tx(s.id),
            }
            // swap_remove moved another session into `i`: look at it next.
        }
    }

    /// The next network PDU to send, taken at the latest time this transport was given
    /// (the instant of the call that queued it, for a driver that takes every PDU at once).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.poll_transmit_at(self.clock)
    }

    /// The next network PDU, taken at `now` by a bearer that sends it now. The SAR
    /// retransmission timer of a segmented message starts when the last segment of its round
    /// is taken (MshPRT v1.1 §3.5.3.3.1 and §3.5.3.3.3), so a driver that calls this only
    /// when its radio can send — leaving the backlog here — never has a round retransmitted
    /// before it went on air.
    pub fn poll_transmit_at(&mut self, now: Instant) -> Option<Transmit> {
        self.tick(now);
        let out = self.transmits.pop_front()?;
        if let Origin::Segment { id, .. } = out.origin
            && let Some(s) = self.tx.iter_mut().find(|s| s.id == id)
        {
            s.unsent = s.unsent.saturating_sub(1);
            if s.unsent == 0 {
                s.deadline = Some(self.clock + s.interval(&self.config.sar));
            }
        }
        Some(out.transmit)
    }

    /// Network PDUs waiting for the bearer.
    pub fn transmits_waiting(&self) -> usize {
        self.transmits.len()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<TransportEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = self.tx.iter().filter_map(|t| t.deadline);
        let rx = self
            .rx
            .values()
            .flat_map(|s| std::iter::once(s.discard_deadline).chain(s.ack_deadline));
        tx.chain(rx).min()
    }

    /// Number of segmented messages being sent (not counting queued ones).
    pub fn sending(&self) -> usize {
        self.tx.len()
    }

    /// Number of messages being reassembled.
    pub fn reassembling(&self) -> usize {
        self.rx.len()
    }
}
