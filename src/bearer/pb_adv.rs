//! PB-ADV links, MshPRT v1.1 §5.2.1, and the Generic Provisioning layer, §5.3, sans-IO.
//!
//! One [`Links`] table holds every link of one node: a provisioner's table holds up to
//! [`PbAdvConfig::max_links`] concurrent links demultiplexed by Link ID; a device's table holds
//! at most one. The caller feeds received PB-ADV payloads to [`Links::handle_adv`], drives time
//! with [`Links::handle_timeout`] at [`Links::poll_timeout`], puts every
//! [`Links::poll_transmit`] on the air (AD type 0x29) and reads [`LinkEvent`]s from
//! [`Links::poll_event`].
//!
//! Behaviour (MshPRT v1.1 §5.3.2, §5.3.3; reference §2.3):
//!
//! - **Link establishment** (§5.3.2): the provisioner sends Link Open (transaction number 0)
//!   every [`PbAdvConfig::retransmit_interval`] plus a random jitter until Link ACK arrives, and
//!   gives up after [`PbAdvConfig::link_open_timeout`] ([`CloseCause::OpenTimeout`]; a Link
//!   Close with reason Timeout is then sent, in case the device did open the link and only its
//!   acks were lost). A device answers a Link Open for its own UUID with Link ACK, re-acks
//!   repeated Link Opens for the same Link ID, ignores Link Opens for other UUIDs, and while a
//!   link is open ignores every other Link ID.
//! - **Transactions** (§5.3.3): one outstanding outgoing transaction per link; later
//!   [`Links::send`]s queue behind it. Provisioner transaction numbers run 0x00–0x7F starting at
//!   0x00, device ones 0x80–0xFF starting at 0x80, each wrapping within its half. All segments
//!   are sent, then the whole transaction is resent every `retransmit_interval` + jitter until a
//!   Transaction Acknowledgment with its number arrives; after
//!   [`PbAdvConfig::transaction_timeout`] the link is closed (Link Close reason Timeout,
//!   [`CloseCause::TransactionTimeout`]).
//! - **Reception**: only transaction numbers of the peer's half are accepted (so a table fed
//!   both directions of the air, as from a capture, sees only the peer's transactions);
//!   segments are collected per transaction in any order, duplicates ignored;
//!   the FCS is checked before the acknowledgment, and a transaction with a bad FCS is dropped
//!   unacknowledged (the sender retransmits it). A retransmitted segment (Start or
//!   Continuation, as Zephyr and ESP-IDF) of the transaction delivered last is
//!   re-acknowledged and not delivered again; one queued copy of an ack is enough.
//! - **Implicit acknowledgment (decision)**: off by default. Acknowledgments are explicit, as
//!   in BlueZ, Zephyr and ESP-IDF: a lost Transaction Acknowledgment costs one retransmission
//!   round, after which the peer re-acknowledges (it sees the transaction it delivered last).
//!   With [`PbAdvConfig::implicit_ack`] set, a new transaction from the peer that reassembles
//!   with a valid FCS also acknowledges our outstanding one ([`Stats::implicit_acks`]); the
//!   [`LinkEvent::Delivered`] then comes before the [`LinkEvent::Received`] of the response.
//!   That is only sound when the upper layer alternates strictly, as the provisioning protocol
//!   does (§5.4.2: each side sends its next PDU only after receiving the peer's): if both sides
//!   send at once, the peer's PDU says nothing about ours, and a test with 64 links sending in
//!   both directions at once lost PDUs that way. We always send our own acknowledgments.
//! - **Link Close** (§5.3.2.3): [`Links::close`] sends Link Close
//!   [`PbAdvConfig::link_close_repeats`] times, [`PbAdvConfig::link_close_interval`] apart, then
//!   forgets the link; a received Link Close ends the link at once.
//!
//! Malformed payloads and traffic of other links are never errors: they are dropped and counted
//! in [`Stats`]. The [`Observer`] is a passive reassembler of both directions of every link,
//! for captures and the `decode` command.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::time::Duration;

use rand_core::Rng;

use super::BearerError;
use crate::time::Instant;
use crate::wire::WireError;
use crate::wire::pb_adv::{
    BearerControl, GenericProvisioningPdu, LinkCloseReason, PbAdvPdu, TransactionContinuation,
    TransactionStart, reassemble, segment,
};

/// A PB-ADV Link ID, MshPRT v1.1 §5.3.2: a random non-zero 32-bit value chosen by the
/// provisioner. Displayed as 8 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u32);

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// Which end of PB-ADV links a [`Links`] table plays, MshPRT v1.1 §5.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens links to devices; transaction numbers 0x00–0x7F.
    Provisioner,
    /// An unprovisioned device: accepts one link, opened for its UUID; transaction numbers
    /// 0x80–0xFF.
    Device {
        /// The Device UUID that Link Open must name.
        uuid: [u8; 16],
    },
}

/// Timers and limits of a [`Links`] table (MshPRT v1.1 §5.3.2, §5.3.3; reference §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbAdvConfig {
    /// Interval between retransmissions of an unacknowledged transaction or of Link Open
    /// (500 ms, as BlueZ and ESP-IDF).
    pub retransmit_interval: Duration,
    /// A random extra delay, uniform in `0..=jitter`, added to each retransmission interval so
    /// that colliding links drift apart (100 ms).
    pub retransmit_jitter: Duration,
    /// How long a provisioner tries to open a link before giving up (60 s, §5.3.2).
    pub link_open_timeout: Duration,
    /// How long an outgoing transaction may stay unacknowledged before the link is closed
    /// with reason Timeout (30 s, §5.3.3).
    pub transaction_timeout: Duration,
    /// How many times Link Close is sent (3, §5.3.2.3 asks for at least three).
    pub link_close_repeats: u8,
    /// Interval between the Link Close repetitions (100 ms, as ESP-IDF).
    pub link_close_interval: Duration,
    /// Most links a provisioner table holds at once (64); [`Links::open`] beyond it fails.
    pub max_links: usize,
    /// Treat the peer's next transaction as an acknowledgment of our outstanding one (false;
    /// see the module documentation for when this is sound).
    pub implicit_ack: bool,
}

impl Default for PbAdvConfig {
    fn default() -> Self {
        PbAdvConfig {
            retransmit_interval: Duration::from_millis(500),
            retransmit_jitter: Duration::from_millis(100),
            link_open_timeout: Duration::from_secs(60),
            transaction_timeout: Duration::from_secs(30),
            link_close_repeats: 3,
            link_close_interval: Duration::from_millis(100),
            max_links: 64,
            implicit_ack: false,
        }
    }
}

/// Why a link ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// The peer sent Link Close with this reason (§5.3.1.4.3).
    Remote(LinkCloseReason),
    /// We closed the link with [`Links::close`] and this reason.
    Local(LinkCloseReason),
    /// No Link ACK within [`PbAdvConfig::link_open_timeout`] (§5.3.2).
    OpenTimeout,
    /// An outgoing transaction was not acknowledged within
    /// [`PbAdvConfig::transaction_timeout`] (§5.3.3); Link Close (Timeout) was sent.
    TransactionTimeout,
}

/// What happened on a link, from [`Links::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The link is open: a provisioner received Link ACK; a device received (and acknowledged)
    /// Link Open for its UUID (§5.3.2).
    Opened(LinkId),
    /// A complete provisioning PDU, reassembled with a valid FCS (§5.3.3); delivered once even
    /// if the peer retransmits it.
    Received(LinkId, Vec<u8>),
    /// Our oldest outgoing provisioning PDU was acknowledged (explicitly, or implicitly by the
    /// peer's next transaction; see the module documentation).
    Delivered(LinkId),
    /// The link ended; it is no longer in the table.
    Closed(LinkId, CloseCause),
}

/// Counters of a [`Links`] table or an [`Observer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// PB-ADV PDUs handed out by [`Links::poll_transmit`] (retransmissions included).
    pub sent: u64,
    /// Of `sent`, those that were retransmissions (transaction segments, Link Open, re-acks).
    pub retransmitted: u64,
    /// PB-ADV PDUs accepted for one of our links.
    pub received: u64,
    /// Of `received`, duplicates: segments already held, Starts of the transaction delivered
    /// last, repeated acknowledgments, Link Opens and Link ACKs.
    pub duplicates: u64,
    /// Transactions that reassembled with a bad FCS (dropped, not acknowledged).
    pub fcs_errors: u64,
    /// Payloads that did not parse, belonged to no link of ours, or did not fit the link's
    /// state (malformed segment sets included).
    pub ignored: u64,
    /// Outgoing transactions started.
    pub transactions_sent: u64,
    /// Outgoing transactions acknowledged.
    pub transactions_delivered: u64,
    /// Of `transactions_delivered`, those acknowledged implicitly by the peer's next
    /// transaction.
    pub implicit_acks: u64,
    /// Incoming transactions delivered (or, for an [`Observer`], reported).
    pub transactions_received: u64,
}

// ---------------------------------------------------------------------------------------------
// Reassembly (shared by Links and Observer)

/// One incoming transaction being reassembled, MshPRT v1.1 §5.3.3.
#[derive(Debug)]
struct Reassembly {
    xact: u8,
    start: Option<TransactionStart>,
    continuations: BTreeMap<u8, Vec<u8>>,
}

/// The result of adding a segment to a [`Reassembly`].
#[derive(Debug)]
enum Progress {
    /// The segment was already held.
    Duplicate,
    /// The segment does not belong to the transaction (index beyond SegN).
    OutOfRange,
    /// More segments are needed.
    Pending,
    /// The whole PDU, with a valid FCS.
    Complete(Vec<u8>),
    /// Every segment is there but they do not form a valid PDU (bad FCS or sizes).
    Bad(WireError),
}

impl Reassembly {
    fn new(xact: u8) -> Self {
        Reassembly {
            xact,
            start: None,
            continuations: BTreeMap::new(),
        }
    }

    fn add_start(&mut self, start: TransactionStart) -> Progress {
        if self.start.is_some() {
            return Progress::Duplicate;
        }
        self.continuations.retain(|&index, _| index <= start.seg_n);
        self.start = Some(start);
        self.try_complete()
    }

    fn add_continuation(&mut self, c: TransactionContinuation) -> Progress {
        if self
            .start
            .as_ref()
            .is_some_and(|s| c.segment_index > s.seg_n)
        {
            return Progress::OutOfRange;
        }
        if self.continuations.contains_key(&c.segment_index) {
            return Progress::Duplicate;
        }
        self.continuations.insert(c.segment_index, c.data);
        self.try_complete()
    }

    fn try_complete(&self) -> Progress {
        let Some(start) = &self.start else {
            return Progress::Pending;
        };
        if self.continuations.len() < usize::from(start.seg_n) {
            return Progress::Pending;
        }
        let continuations: Vec<TransactionContinuation> = self
            .continuations
            .iter()
            .map(|(&segment_index, data)| TransactionContinuation {
                segment_index,
                data: data.clone(),
            })
            .collect();
        match reassemble(start, &continuations) {
            Ok(pdu) => Progress::Complete(pdu),
            Err(e) => Progress::Bad(e),
        }
    }
}

/// Where a segment of a transaction stands relative to a receiver's state.
enum SegmentOutcome {
    /// Nothing to deliver (pending, duplicate, ...).
    Nothing,
    /// The transaction delivered last was restarted: re-acknowledge it.
    Reack(u8),
    /// A new transaction completed.
    Complete(u8, Vec<u8>),
    /// Every segment arrived but they do not form a valid PDU; the reassembly was dropped.
    Bad(WireError),
}

/// Per-direction receive state: the transaction in progress and the one delivered last.
#[derive(Debug, Default)]
struct Receiver {
    incoming: Option<Reassembly>,
    last_delivered: Option<u8>,
}

impl Receiver {
    /// Adds a Transaction Start or Continuation with transaction number `xact`; updates
    /// `stats` (duplicates, fcs_errors, ignored, transactions_received).
    fn add(&mut self, xact: u8, pdu: GenericProvisioningPdu, stats: &mut Stats) -> SegmentOutcome {
        let in_progress = self.incoming.as_ref().is_some_and(|r| r.xact == xact);
        if !in_progress && self.last_delivered == Some(xact) {
            stats.duplicates += 1;
            // Any segment of it, as Zephyr and ESP-IDF ("Resending ack"): the peer missed our
            // ack, and waiting for its Transaction Start alone can cost it several rounds.
            return match pdu {
                GenericProvisioningPdu::TransactionStart(_)
                | GenericProvisioningPdu::TransactionContinuation(_) => SegmentOutcome::Reack(xact),
                _ => SegmentOutcome::Nothing,
            };
        }
        // A new transaction number means the peer moved on: drop a stale partial one.
        let reassembly = match &mut self.incoming {
            Some(r) if r.xact == xact => r,
            slot => slot.insert(Reassembly::new(xact)),
        };
        let progress = match pdu {
            GenericProvisioningPdu::TransactionStart(s) => reassembly.add_start(s),
            GenericProvisioningPdu::TransactionContinuation(c) => reassembly.add_continuation(c),
            _ => Progress::OutOfRange,
        };
        match progress {
            Progress::Pending => SegmentOutcome::Nothing,
            Progress::Duplicate => {
                stats.duplicates += 1;
                SegmentOutcome::Nothing
            }
            Progress::OutOfRange => {
                stats.ignored += 1;
                SegmentOutcome::Nothing
            }
            Progress::Bad(e) => {
                if matches!(e, WireError::FcsMismatch { .. }) {
                    stats.fcs_errors += 1;
                } else {
                    stats.ignored += 1;
                }
                // Start afresh: the retransmission refills it.
                self.incoming = None;
                SegmentOutcome::Bad(e)
            }
            Progress::Complete(pdu) => {
                self.incoming = None;
                self.last_delivered = Some(xact);
                stats.transactions_received += 1;
                SegmentOutcome::Complete(xact, pdu)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Timers

/// The timers of one link (a quinn-proto style timer table, DESIGN.md rule 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// Resend Link Open, or the outstanding transaction.
    Retransmit = 0,
    /// Give up opening the link (§5.3.2).
    OpenTimeout = 1,
    /// Give up on the outstanding transaction (§5.3.3).
    TransactionTimeout = 2,
    /// Send the next Link Close repetition.
    CloseRepeat = 3,
}

/// One slot per [`Timer`]; `timer as usize` is 0..=3, always in bounds.
#[derive(Debug, Default)]
struct TimerTable([Option<Instant>; 4]);

impl TimerTable {
    fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer as usize] = Some(at);
    }

    fn stop(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }

    fn stop_all(&mut self) {
        self.0 = [None; 4];
    }

    /// Whether `timer` is set and due at `now`; stops it if so.
    fn take_expired(&mut self, timer: Timer, now: Instant) -> bool {
        let slot = &mut self.0[timer as usize];
        if slot.is_some_and(|at| at <= now) {
            *slot = None;
            true
        } else {
            false
        }
    }

    fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
}

// ---------------------------------------------------------------------------------------------
// Links

/// What a queued transmit is, so that acknowledged segments can be withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxKind {
    /// A segment of the outstanding transaction.
    Segment,
    /// A bearer control PDU.
    Control,
    /// A Transaction Acknowledgment (kept when the link starts closing).
    Ack,
}

#[derive(Debug)]
struct Tx {
    kind: TxKind,
    retransmission: bool,
    /// The last copy of a Link Open or of a transaction: its departure starts the
    /// retransmission timer. Starting the timer when a PDU is queued instead would let a busy
    /// radio (one advertisement per 20 ms, shared by 64 links) fall behind the timer, and a
    /// transaction would be re-queued from its first segment before its last one ever left.
    arms_retransmit: bool,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    /// Provisioner: Link Open sent, waiting for Link ACK.
    Opening,
    /// Transactions flow.
    Open,
    /// Link Close is being sent; `remaining` copies still to queue. Forgotten once they are
    /// all on the air.
    Closing {
        reason: LinkCloseReason,
        remaining: u8,
    },
}

/// The outstanding outgoing transaction of a link.
#[derive(Debug)]
struct Outgoing {
    xact: u8,
    segments: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct Link {
    uuid: [u8; 16],
    state: LinkState,
    timers: TimerTable,
    /// The number the next outgoing transaction gets.
    next_xact: u8,
    /// Provisioning PDUs waiting for the outstanding one, already segmented.
    queue: VecDeque<Vec<GenericProvisioningPdu>>,
    outgoing: Option<Outgoing>,
    receiver: Receiver,
    tx: VecDeque<Tx>,
}

impl Link {
    fn new(uuid: [u8; 16], state: LinkState, first_xact: u8) -> Self {
        Link {
            uuid,
            state,
            timers: TimerTable::default(),
            next_xact: first_xact,
            queue: VecDeque::new(),
            outgoing: None,
            receiver: Receiver::default(),
            tx: VecDeque::new(),
        }
    }

    fn is_active(&self) -> bool {
        !matches!(self.state, LinkState::Closing { .. })
    }

    fn push_tx(&mut self, kind: TxKind, retransmission: bool, bytes: Vec<u8>) {
        self.tx.push_back(Tx {
            kind,
            retransmission,
            arms_retransmit: false,
            bytes,
        });
    }

    /// Queues the last copy of a Link Open or transaction: the retransmission timer starts
    /// when it goes on the air (see [`Tx::arms_retransmit`]).
    fn push_tx_arming(&mut self, kind: TxKind, retransmission: bool, bytes: Vec<u8>) {
        self.timers.stop(Timer::Retransmit);
        self.tx.push_back(Tx {
            kind,
            retransmission,
            arms_retransmit: true,
            bytes,
        });
    }
}

/// Encodes a PB-ADV payload.
fn encode(link_id: u32, transaction_number: u8, pdu: GenericProvisioningPdu) -> Vec<u8> {
    let mut out = Vec::with_capacity(29);
    PbAdvPdu {
        link_id,
        transaction_number,
        pdu,
    }
    .emit(&mut out);
    out
}

/// Encodes a Provisioning Bearer Control PDU (transaction number 0, §5.3.1.4).
fn control(link_id: u32, ctl: BearerControl) -> Vec<u8> {
    encode(link_id, 0, GenericProvisioningPdu::BearerControl(ctl))
}

/// `interval` plus a uniform random delay in `0..=jitter`.
fn jittered(rng: &mut (dyn Rng + Send), interval: Duration, jitter: Duration) -> Duration {
    let max = u64::try_from(jitter.as_micros()).unwrap_or(u64::MAX);
    let extra = if max == 0 {
        0
    } else {
        // Multiply-shift: uniform enough, no modulo, no overflow (u32 × u64 in u128).
        ((u128::from(rng.next_u32()) * (u128::from(max) + 1)) >> 32) as u64
    };
    interval.saturating_add(Duration::from_micros(extra))
}

/// The transaction number after `xact` within the role's half (§5.3.3).
fn next_xact(role: Role, xact: u8) -> u8 {
    let low = xact.wrapping_add(1) & 0x7F;
    match role {
        Role::Provisioner => low,
        Role::Device { .. } => 0x80 | low,
    }
}

/// A table of PB-ADV links of one node, sans-IO (MshPRT v1.1 §5.2.1, §5.3). See the module
/// documentation for the behaviour.
pub struct Links {
    role: Role,
    config: PbAdvConfig,
    rng: Box<dyn Rng + Send>,
    links: BTreeMap<u32, Link>,
    events: VecDeque<LinkEvent>,
    stats: Stats,
    /// The link served last by `poll_transmit` (round robin).
    cursor: u32,
    ack_cursor: u32,
}

impl fmt::Debug for Links {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Links")
            .field("role", &self.role)
            .field("links", &self.links.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Links {
    /// An empty table for `role`. `rng` draws Link IDs and retransmission jitter (DESIGN.md
    /// rule 2: inject a seeded RNG for reproducible runs).
    pub fn new(role: Role, config: PbAdvConfig, rng: Box<dyn Rng + Send>) -> Self {
        Links {
            role,
            config,
            rng,
            links: BTreeMap::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            cursor: 0,
            ack_cursor: 0,
        }
    }

    /// The role of this table.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration of this table.
    pub fn config(&self) -> &PbAdvConfig {
        &self.config
    }

    fn first_xact(&self) -> u8 {
        match self.role {
            Role::Provisioner => 0x00,
            Role::Device { .. } => 0x80,
        }
    }

    /// Provisioner: starts opening a link to `device_uuid` (MshPRT v1.1 §5.3.2) with a random
    /// non-zero Link ID unique in the table. Link Open is sent at once and repeated until Link
    /// ACK ([`LinkEvent::Opened`]) or [`PbAdvConfig::link_open_timeout`]
    /// ([`CloseCause::OpenTimeout`]). PDUs may be [`send`](Self::send) before it opens; they
    /// wait.
    ///
    /// Errors: [`BearerError::NotProvisioner`], [`BearerError::TooManyLinks`],
    /// [`BearerError::AlreadyLinked`], [`BearerError::NoFreeLinkId`].
    pub fn open(&mut self, now: Instant, device_uuid: [u8; 16]) -> Result<LinkId, BearerError> {
        if self.role != Role::Provisioner {
            return Err(BearerError::NotProvisioner);
        }
        if self.len() >= self.config.max_links {
            return Err(BearerError::TooManyLinks {
                max: self.config.max_links,
            });
        }
        if self
            .links
            .values()
            .any(|l| l.is_active() && l.uuid == device_uuid)
        {
            return Err(BearerError::AlreadyLinked { uuid: device_uuid });
        }
        // Bounded: a working RNG finds a free ID among 2^32 − 1 at the first try.
        let id = (0..64)
            .map(|_| self.rng.next_u32())
            .find(|id| *id != 0 && !self.links.contains_key(id))
            .ok_or(BearerError::NoFreeLinkId)?;
        let mut link = Link::new(device_uuid, LinkState::Opening, self.first_xact());
        link.push_tx_arming(
            TxKind::Control,
            false,
            control(id, BearerControl::LinkOpen { uuid: device_uuid }),
        );
        link.timers
            .set(Timer::OpenTimeout, now + self.config.link_open_timeout);
        self.links.insert(id, link);
        Ok(LinkId(id))
    }

    /// Queues one provisioning PDU on `link` (MshPRT v1.1 §5.3.3). It is segmented at once
    /// (Transaction Start with up to 20 octets, Continuations with up to 23) and sent when every
    /// earlier PDU of the link is acknowledged ([`LinkEvent::Delivered`]).
    ///
    /// Errors: [`BearerError::UnknownLink`] (also for a link being closed),
    /// [`BearerError::Wire`] for an empty PDU or one above 1469 octets.
    pub fn send(&mut self, now: Instant, link: LinkId, pdu: &[u8]) -> Result<(), BearerError> {
        let segments = segment(pdu)?;
        let entry = self
            .links
            .get_mut(&link.0)
            .filter(|l| l.is_active())
            .ok_or(BearerError::UnknownLink(link))?;
        entry.queue.push_back(segments);
        self.pump(now, link.0);
        Ok(())
    }

    /// Closes `link` with `reason` (MshPRT v1.1 §5.3.2.3): emits
    /// [`LinkEvent::Closed`]`(link, `[`CloseCause::Local`]`(reason))` at once, sends Link Close
    /// [`PbAdvConfig::link_close_repeats`] times, then forgets the link. Unknown or already
    /// closing links are ignored.
    pub fn close(&mut self, now: Instant, link: LinkId, reason: LinkCloseReason) {
        if self.links.get(&link.0).is_some_and(Link::is_active) {
            self.events
                .push_back(LinkEvent::Closed(link, CloseCause::Local(reason)));
            self.begin_closing(now, link.0, reason);
        }
    }

    /// Puts the link into the Closing state and queues the first Link Close.
    fn begin_closing(&mut self, now: Instant, id: u32, reason: LinkCloseReason) {
        let repeats = self.config.link_close_repeats;
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        link.timers.stop_all();
        // Acknowledgments still go out: the peer's last PDU was received.
        link.tx.retain(|t| t.kind == TxKind::Ack);
        link.queue.clear();
        link.outgoing = None;
        link.receiver = Receiver::default();
        if repeats == 0 {
            self.links.remove(&id);
            return;
        }
        link.state = LinkState::Closing {
            reason,
            remaining: repeats,
        };
        self.queue_close_repeat(now, id);
    }

    /// Queues one Link Close copy of a closing link and schedules the next.
    fn queue_close_repeat(&mut self, now: Instant, id: u32) {
        let interval = self.config.link_close_interval;
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        let LinkState::Closing { reason, remaining } = link.state else {
            return;
        };
        if remaining == 0 {
            return;
        }
        // Planned repetitions, not retransmissions: not counted as such.
        link.push_tx(
            TxKind::Control,
            false,
            control(id, BearerControl::LinkClose { reason }),
        );
        link.state = LinkState::Closing {
            reason,
            remaining: remaining - 1,
        };
        if remaining > 1 {
            link.timers.set(Timer::CloseRepeat, now + interval);
        }
    }

    /// Starts the next queued transaction of an open link with none outstanding.
    fn pump(&mut self, now: Instant, id: u32) {
        let role = self.role;
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        if link.state != LinkState::Open || link.outgoing.is_some() {
            return;
        }
        let Some(segments) = link.queue.pop_front() else {
            return;
        };
        let xact = link.next_xact;
        link.next_xact = next_xact(role, xact);
        let segments: Vec<Vec<u8>> = segments
            .into_iter()
            .map(|pdu| encode(id, xact, pdu))
            .collect();
        let last = segments.len().saturating_sub(1);
        for (i, s) in segments.iter().enumerate() {
            if i == last {
                link.push_tx_arming(TxKind::Segment, false, s.clone());
            } else {
                link.push_tx(TxKind::Segment, false, s.clone());
            }
        }
        link.outgoing = Some(Outgoing { xact, segments });
        link.timers.set(
            Timer::TransactionTimeout,
            now + self.config.transaction_timeout,
        );
        self.stats.transactions_sent += 1;
    }

    /// The outstanding transaction of `id` was acknowledged: report it, start the next one.
    fn complete_outgoing(&mut self, now: Instant, id: u32, implicit: bool) {
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        if link.outgoing.take().is_none() {
            return;
        }
        link.tx.retain(|t| t.kind != TxKind::Segment);
        link.timers.stop(Timer::Retransmit);
        link.timers.stop(Timer::TransactionTimeout);
        self.stats.transactions_delivered += 1;
        if implicit {
            self.stats.implicit_acks += 1;
        }
        self.events.push_back(LinkEvent::Delivered(LinkId(id)));
        self.pump(now, id);
    }

    /// Handles one received PB-ADV payload: the AD data after AD type 0x29, i.e.
    /// `Link ID ‖ Transaction Number ‖ Generic Provisioning PDU` (MshPRT v1.1 §5.2.1).
    /// Malformed payloads and other links' traffic are dropped and counted in [`Stats`].
    pub fn handle_adv(&mut self, now: Instant, pb_adv_payload: &[u8]) {
        let Ok(adv) = PbAdvPdu::parse(pb_adv_payload) else {
            self.stats.ignored += 1;
            return;
        };
        let id = adv.link_id;
        if let (Role::Device { uuid }, GenericProvisioningPdu::BearerControl(ctl)) =
            (self.role, &adv.pdu)
            && let BearerControl::LinkOpen { uuid: target } = ctl
        {
            self.device_link_open(uuid, *target, id);
            return;
        }
        let Some(link) = self.links.get_mut(&id).filter(|l| l.is_active()) else {
            self.stats.ignored += 1;
            return;
        };
        let opening = link.state == LinkState::Opening;
        match adv.pdu {
            GenericProvisioningPdu::BearerControl(BearerControl::LinkAck) => {
                if self.role == Role::Provisioner && opening {
                    self.stats.received += 1;
                    link.state = LinkState::Open;
                    link.timers.stop(Timer::OpenTimeout);
                    link.timers.stop(Timer::Retransmit);
                    link.tx.clear();
                    self.events.push_back(LinkEvent::Opened(LinkId(id)));
                    self.pump(now, id);
                } else if self.role == Role::Provisioner {
                    self.stats.received += 1;
                    self.stats.duplicates += 1;
                } else {
                    self.stats.ignored += 1;
                }
            }
            GenericProvisioningPdu::BearerControl(BearerControl::LinkOpen { .. }) => {
                // A provisioner does not accept links.
                self.stats.ignored += 1;
            }
            GenericProvisioningPdu::BearerControl(BearerControl::LinkClose { reason }) => {
                self.stats.received += 1;
                self.links.remove(&id);
                self.events
                    .push_back(LinkEvent::Closed(LinkId(id), CloseCause::Remote(reason)));
            }
            _ if opening => {
                // Transactions before Link ACK: not ours to interpret yet.
                self.stats.ignored += 1;
            }
            GenericProvisioningPdu::TransactionAck => {
                self.stats.received += 1;
                let ours = link
                    .outgoing
                    .as_ref()
                    .is_some_and(|o| o.xact == adv.transaction_number);
                if ours {
                    self.complete_outgoing(now, id, false);
                } else {
                    self.stats.duplicates += 1;
                }
            }
            segment @ (GenericProvisioningPdu::TransactionStart(_)
            | GenericProvisioningPdu::TransactionContinuation(_)) => {
                let xact = adv.transaction_number;
                if (xact & 0x80 != 0) == matches!(self.role, Role::Device { .. }) {
                    // A transaction number of our own half (§5.3.3) is not the peer's: our
                    // own traffic heard back, or a confused peer.
                    self.stats.ignored += 1;
                    return;
                }
                self.stats.received += 1;
                match link.receiver.add(xact, segment, &mut self.stats) {
                    SegmentOutcome::Nothing | SegmentOutcome::Bad(_) => {}
                    SegmentOutcome::Reack(x) => {
                        let ack = encode(id, x, GenericProvisioningPdu::TransactionAck);
                        // One queued copy of an ack is enough: a peer that retransmits faster
                        // than our radio drains must not grow the queue.
                        if !link
                            .tx
                            .iter()
                            .any(|t| t.kind == TxKind::Ack && t.bytes == ack)
                        {
                            link.push_tx(TxKind::Ack, true, ack);
                        }
                    }
                    SegmentOutcome::Complete(x, pdu) => {
                        link.push_tx(
                            TxKind::Ack,
                            false,
                            encode(id, x, GenericProvisioningPdu::TransactionAck),
                        );
                        if self.config.implicit_ack {
                            // See the module documentation.
                            self.complete_outgoing(now, id, true);
                        }
                        self.events.push_back(LinkEvent::Received(LinkId(id), pdu));
                    }
                }
            }
        }
    }

    /// Device role: a Link Open for `target` on link `id` (§5.3.2).
    fn device_link_open(&mut self, uuid: [u8; 16], target: [u8; 16], id: u32) {
        if target != uuid || id == 0 {
            self.stats.ignored += 1;
            return;
        }
        if let Some(link) = self.links.get_mut(&id).filter(|l| l.is_active()) {
            // The provisioner missed our Link ACK: send it again.
            self.stats.received += 1;
            self.stats.duplicates += 1;
            link.push_tx(TxKind::Control, true, control(id, BearerControl::LinkAck));
            return;
        }
        if self.links.values().any(Link::is_active) {
            // One link at a time; ignore other Link IDs while it is open.
            self.stats.ignored += 1;
            return;
        }
        self.stats.received += 1;
        let mut link = Link::new(uuid, LinkState::Open, self.first_xact());
        link.push_tx(TxKind::Control, false, control(id, BearerControl::LinkAck));
        self.links.insert(id, link);
        self.events.push_back(LinkEvent::Opened(LinkId(id)));
    }

    /// Fires every timer due at `now`: Link Open and transaction retransmissions, the open and
    /// transaction timeouts, Link Close repetitions. Calling it early (or twice) does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u32> = self
            .links
            .iter()
            .filter(|(_, l)| l.timers.next().is_some_and(|t| t <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.link_timeout(now, id);
        }
    }

    fn link_timeout(&mut self, now: Instant, id: u32) {
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        match link.state {
            LinkState::Closing { .. } => {
                if link.timers.take_expired(Timer::CloseRepeat, now) {
                    self.queue_close_repeat(now, id);
                }
            }
            LinkState::Opening => {
                if link.timers.take_expired(Timer::OpenTimeout, now) {
                    self.events
                        .push_back(LinkEvent::Closed(LinkId(id), CloseCause::OpenTimeout));
                    self.begin_closing(now, id, LinkCloseReason::TIMEOUT);
                } else if link.timers.take_expired(Timer::Retransmit, now) {
                    let uuid = link.uuid;
                    link.tx.retain(|t| t.kind != TxKind::Control);
                    link.push_tx_arming(
                        TxKind::Control,
                        true,
                        control(id, BearerControl::LinkOpen { uuid }),
                    );
                }
            }
            LinkState::Open => {
                if link.timers.take_expired(Timer::TransactionTimeout, now) {
                    self.events.push_back(LinkEvent::Closed(
                        LinkId(id),
                        CloseCause::TransactionTimeout,
                    ));
                    self.begin_closing(now, id, LinkCloseReason::TIMEOUT);
                } else if link.timers.take_expired(Timer::Retransmit, now)
                    && let Some(out) = &link.outgoing
                {
                    // Withdraw copies not yet on the air, then queue the whole transaction.
                    let copies: Vec<Vec<u8>> = out.segments.clone();
                    link.tx.retain(|t| t.kind != TxKind::Segment);
                    let last = copies.len().saturating_sub(1);
                    for (i, s) in copies.into_iter().enumerate() {
                        if i == last {
                            link.push_tx_arming(TxKind::Segment, true, s);
                        } else {
                            link.push_tx(TxKind::Segment, true, s);
                        }
                    }
                }
            }
        }
    }

    /// The next PB-ADV payload to put on the air (AD type 0x29 data, without the AD length and
    /// type octets), serving the links round robin; `None` when nothing is pending. Call it when
    /// the radio can take a packet: a transaction's retransmission timer starts when its last
    /// copy leaves here, so a slow radio delays retransmissions instead of being flooded.
    ///
    /// Transaction Acknowledgments go first, from any link: they are one packet each, and a
    /// late ack makes the peer retransmit a whole transaction.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let cursor = self.cursor;
        let ack_cursor = self.ack_cursor;
        if let Some(id) = self
            .links
            .range((Bound::Excluded(ack_cursor), Bound::Unbounded))
            .chain(self.links.range(..=ack_cursor))
            .find(|(_, l)| l.tx.iter().any(|t| t.kind == TxKind::Ack))
            .map(|(&id, _)| id)
        {
            self.ack_cursor = id;
            let link = self.links.get_mut(&id)?;
            let at = link.tx.iter().position(|t| t.kind == TxKind::Ack)?;
            let tx = link.tx.remove(at)?;
            if matches!(link.state, LinkState::Closing { remaining: 0, .. }) && link.tx.is_empty() {
                self.links.remove(&id);
            }
            self.stats.sent += 1;
            if tx.retransmission {
                self.stats.retransmitted += 1;
            }
            return Some(tx.bytes);
        }
        let id = self
            .links
            .range((Bound::Excluded(cursor), Bound::Unbounded))
            .chain(self.links.range(..=cursor))
            .find(|(_, l)| !l.tx.is_empty())
            .map(|(&id, _)| id)?;
        self.cursor = id;
        let link = self.links.get_mut(&id)?;
        let tx = link.tx.pop_front()?;
        if tx.arms_retransmit {
            let delay = jittered(
                self.rng.as_mut(),
                self.config.retransmit_interval,
                self.config.retransmit_jitter,
            );
            link.timers.set(Timer::Retransmit, now + delay);
        }
        if matches!(link.state, LinkState::Closing { remaining: 0, .. }) && link.tx.is_empty() {
            // The last Link Close is on its way: forget the link.
            self.links.remove(&id);
        }
        self.stats.sent += 1;
        if tx.retransmission {
            self.stats.retransmitted += 1;
        }
        Some(tx.bytes)
    }

    /// The next link event, oldest first.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// The earliest timer of any link, for [`Links::handle_timeout`]; `None` when no timer
    /// runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.links.values().filter_map(|l| l.timers.next()).min()
    }

    /// The counters of this table.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The number of links open or opening (links being closed are not counted).
    pub fn len(&self) -> usize {
        self.links.values().filter(|l| l.is_active()).count()
    }

    /// Whether no link is open or opening.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `link` is open (Link ACK exchanged, not closing).
    pub fn is_open(&self, link: LinkId) -> bool {
        self.links
            .get(&link.0)
            .is_some_and(|l| l.state == LinkState::Open)
    }

    /// The Device UUID of an open or opening link.
    pub fn device_uuid(&self, link: LinkId) -> Option<[u8; 16]> {
        self.links
            .get(&link.0)
            .filter(|l| l.is_active())
            .map(|l| l.uuid)
    }

    /// The open or opening links, in Link ID order.
    pub fn link_ids(&self) -> impl Iterator<Item = LinkId> + '_ {
        self.links
            .iter()
            .filter(|(_, l)| l.is_active())
            .map(|(&id, _)| LinkId(id))
    }
}

// ---------------------------------------------------------------------------------------------
// Observer

/// The direction of a transaction, from its transaction number (MshPRT v1.1 §5.3.3: the
/// provisioner numbers 0x00–0x7F, the device 0x80–0xFF).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Provisioner to device (transaction numbers 0x00–0x7F).
    ProvisionerToDevice,
    /// Device to provisioner (transaction numbers 0x80–0xFF).
    DeviceToProvisioner,
}

impl Direction {
    /// The direction of a transaction with number `xact`.
    pub const fn of_transaction(xact: u8) -> Self {
        if xact & 0x80 == 0 {
            Direction::ProvisionerToDevice
        } else {
            Direction::DeviceToProvisioner
        }
    }
}

/// What an [`Observer`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObservedKind {
    /// Link Open for a Device UUID (§5.3.1.4.1), each copy seen.
    LinkOpen {
        /// The Device UUID.
        uuid: [u8; 16],
    },
    /// Link ACK (§5.3.1.4.2), each copy seen.
    LinkAck,
    /// Link Close (§5.3.1.4.3), each copy seen.
    LinkClose {
        /// The reason.
        reason: LinkCloseReason,
    },
    /// A Transaction Acknowledgment (§5.3.1.2), each copy seen. It acknowledges a transaction
    /// of the other direction: an ack with number 0x00–0x7F is sent by the device.
    TransactionAck,
    /// A provisioning PDU reassembled with a valid FCS (§5.3.3), reported once per transaction
    /// however often it was retransmitted.
    Transaction {
        /// Who sent it.
        direction: Direction,
        /// The provisioning PDU.
        pdu: Vec<u8>,
    },
    /// Every segment of a transaction was seen but they do not form a valid PDU (FCS mismatch,
    /// wrong segment sizes). Reassembly restarts with the next copy.
    BadTransaction {
        /// Who sent it.
        direction: Direction,
        /// What was wrong.
        error: WireError,
    },
}

/// One thing an [`Observer`] saw on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// When (the `now` of the [`Observer::handle_adv`] call that completed it).
    pub at: Instant,
    /// The link.
    pub link: LinkId,
    /// The transaction number of the PB-ADV PDU that completed it.
    pub transaction_number: u8,
    /// What was seen.
    pub kind: ObservedKind,
}

#[derive(Debug, Default)]
struct ObservedLink {
    /// Indexed by direction: 0 provisioner to device, 1 device to provisioner.
    receivers: [Receiver; 2],
}

/// A passive PB-ADV listener (MshPRT v1.1 §5.2.1, §5.3): reassembles the transactions of both
/// directions of every link it hears, without ever transmitting. For captures, replay tests and
/// the `decode` command.
///
/// Per link and direction it keeps the transaction in progress and the one reported last, so a
/// retransmitted transaction is reported once ([`Stats::duplicates`] counts the copies).
/// Bearer control PDUs and acknowledgments are reported on every copy. Link state is kept for
/// every Link ID seen (a capture holds a handful); [`Observer::forget`] drops one.
#[derive(Debug, Default)]
pub struct Observer {
    links: BTreeMap<u32, ObservedLink>,
    observations: VecDeque<Observation>,
    stats: Stats,
}

impl Observer {
    /// An observer that has heard nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles one PB-ADV payload heard at `now` (AD type 0x29 data, §5.2.1). Payloads that do
    /// not parse are counted in [`Stats::ignored`].
    pub fn handle_adv(&mut self, now: Instant, pb_adv_payload: &[u8]) {
        let Ok(adv) = PbAdvPdu::parse(pb_adv_payload) else {
            self.stats.ignored += 1;
            return;
        };
        self.stats.received += 1;
        let xact = adv.transaction_number;
        let kind = match adv.pdu {
            GenericProvisioningPdu::BearerControl(BearerControl::LinkOpen { uuid }) => {
                Some(ObservedKind::LinkOpen { uuid })
            }
            GenericProvisioningPdu::BearerControl(BearerControl::LinkAck) => {
                Some(ObservedKind::LinkAck)
            }
            GenericProvisioningPdu::BearerControl(BearerControl::LinkClose { reason }) => {
                Some(ObservedKind::LinkClose { reason })
            }
            GenericProvisioningPdu::TransactionAck => Some(ObservedKind::TransactionAck),
            segment => {
                let direction = Direction::of_transaction(xact);
                let link = self.links.entry(adv.link_id).or_default();
                // `xact >> 7` is 0 or 1: in bounds.
                let receiver = &mut link.receivers[usize::from(xact >> 7)];
                match receiver.add(xact, segment, &mut self.stats) {
                    SegmentOutcome::Complete(_, pdu) => {
                        Some(ObservedKind::Transaction { direction, pdu })
                    }
                    SegmentOutcome::Bad(error) => {
                        Some(ObservedKind::BadTransaction { direction, error })
                    }
                    SegmentOutcome::Nothing | SegmentOutcome::Reack(_) => None,
                }
            }
        };
        if let Some(kind) = kind {
            self.observations.push_back(Observation {
                at: now,
                link: LinkId(adv.link_id),
                transaction_number: xact,
                kind,
            });
        }
    }

    /// The next observation, oldest first.
    pub fn poll_observation(&mut self) -> Option<Observation> {
        self.observations.pop_front()
    }

    /// The counters: `received` PB-ADV PDUs parsed, `duplicates` retransmitted segments,
    /// `fcs_errors`, `ignored` (unparsable or out of range), `transactions_received`.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The number of transactions whose reassembly has started but not completed.
    pub fn incomplete(&self) -> usize {
        self.links
            .values()
            .flat_map(|l| &l.receivers)
            .filter(|r| r.incoming.is_some())
            .count()
    }

    /// Drops the state kept for `link`.
    pub fn forget(&mut self, link: LinkId) {
        self.links.remove(&link.0);
    }
}
