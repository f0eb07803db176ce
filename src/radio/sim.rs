//! The simulated air: a virtual clock, a seeded channel model and a delivery queue (MshPRT v1.1
//! §3.3.1 advertising bearer; §5.2.2 PB-GATT over a GATT connection).
//!
//! # The channel model (README, "The simulated building")
//!
//! **Advertising events.** Every [`SimAir::advertise`] puts one AD structure on air as
//! [`AirConfig::transmit_count`] advertising events (Core Specification v5.4 Vol 6 Part B
//! §4.4.2.2). An event sends the PDU on the primary advertising channels 37, 38 and 39 in turn;
//! each copy lasts its airtime at 1 Mbit/s, 8 µs per octet of preamble (1), access address (4),
//! PDU header (2), AdvA (6), the AD structure (length, type, data) and CRC (3): [`airtime`]. The
//! radio needs [`AirConfig::channel_switch`] between two copies. An event starts after a
//! pseudo-random advDelay of 0 to [`AirConfig::adv_delay`] (0–10 ms in the Core
//! specification), and the radio's next event starts [`AirConfig::adv_interval`] after the
//! start of the previous one at the earliest (plus its own advDelay). A radio does one thing at
//! a time: while it sends an event it hears nothing (half duplex), and its events queue.
//!
//! **Scanning.** A receiver scans one channel at a time with a scan window equal to its scan
//! interval (MshPRT v1.1 §3.3.1 asks for a duty cycle close to 100 %), rotating 37 → 38 → 39 every
//! [`AirConfig::scan_window`] (30 ms, BlueZ's mesh scan parameters); each receiver starts at its
//! own random phase. A copy can be received only if the receiver listens on its channel from
//! its first to its last bit. A zero scan window is a receiver that hears all three channels at
//! once (a three-radio sniffer).
//!
//! **Range by floor.** Each endpoint has a floor ([`SimAir::set_floor`]). A receiver `d` floors
//! away from a sender hears it if `d <= max_floors`, and then loses each copy with probability
//! `1 − (1 − loss)·(1 − floor_loss)^d`; farther senders are out of range (they neither reach
//! nor disturb it).
//!
//! **Collisions.** A copy is lost at a receiver when another transmission on the same channel
//! overlaps it in time and its sender is in range of that receiver (no capture effect). Each
//! channel keeps a short list of recent transmissions, so an overlap check is an interval
//! search, not a simulation of the bits.
//!
//! **Reception.** A copy that survives is handed over [`AirConfig::latency`] plus a random
//! 0..=[`AirConfig::jitter`] after its last bit (controller, HCI and host). The fate of every
//! copy at every receiver is a deterministic function of the seed, the event and the receiver,
//! so that leaving out receivers that filter a copy away ([`SimAir::set_rx_filter`]) changes no
//! other outcome. A copy's fate is decided once every transmission that could overlap it is
//! known: when its event has ended.
//!
//! GATT writes and notifications travel on a connection: they are never lost (the link layer
//! acknowledges and retransmits them) and arrive in order after `gatt_latency`.
//!
//! **Blackouts.** During each window of [`AirConfig::blackouts`] the air delivers nothing, in
//! either direction: every advertising copy that is on air at some point of the window is lost
//! at every receiver, and GATT values sent during it are lost (a radio that hangs, an adapter
//! that is reset). Senders still send; their bearers find out by their timers. Nothing here
//! reads a clock: the driver moves time forward to [`SimAir::next_delivery`] or to its state
//! machines' deadlines.
//!
//! One endpoint can be tapped ([`SimAir::set_tap`]): the tap sees every copy of every
//! advertising event the endpoint sends (one record per channel, at the copy's start), every
//! GATT value it sends, and every copy and GATT value delivered to it, with the virtual time
//! and the channel — a capture ([`crate::radio::capture::CaptureTap`]) or a scanner records
//! through it.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::fmt;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

use crate::radio::capture::{BdAddr, SharedTap, TapDirection, TapPacket, TapRecord};
use crate::time::Instant;

/// An endpoint on the air: the provisioner or one virtual device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointId(pub usize);

impl EndpointId {
    /// The endpoint's Bluetooth address: a static random address, `C0:4D:50:00:` and the
    /// endpoint number (big-endian), so the provisioner (endpoint 0 in the drivers) is
    /// `C0:4D:50:00:00:00`.
    pub fn address(self) -> BdAddr {
        let [.., hi, lo] = (self.0 as u64).to_be_bytes();
        [0xc0, 0x4d, 0x50, 0x00, hi, lo]
    }
}

/// Received signal strength the simulated air reports on the sender's floor, in dBm.
pub const SIM_RSSI_DBM: i8 = -50;

/// How much weaker a signal is per floor between sender and receiver, in dB.
pub const SIM_RSSI_PER_FLOOR_DB: i8 = 15;

/// The primary advertising channels, in the order an advertising event uses them (Core
/// Specification Vol 6 Part B §1.4.1 and §4.4.2.2).
pub const ADV_CHANNELS: [u8; 3] = [37, 38, 39];

/// Octets on air around the AD structure of a legacy advertising PDU: preamble (1), access
/// address (4), PDU header (2), AdvA (6), CRC (3), and the AD structure's length and type (2).
const ADV_OVERHEAD_OCTETS: u64 = 1 + 4 + 2 + 6 + 3 + 2;

/// The largest AD data whose airtime is modelled: a longer payload is charged as this long
/// (an extended advertising PDU carries at most 255 octets).
const MAX_MODELLED_AD_DATA: usize = 255;

/// Airtime of one copy of an advertising PDU that carries `ad_data_len` octets of AD data (after
/// the AD type) at 1 Mbit/s: 8 µs per octet of preamble, access address, header, AdvA, the AD
/// structure and CRC. 29 octets of data (the legacy maximum) take 376 µs.
pub fn airtime(ad_data_len: usize) -> Duration {
    let octets = ADV_OVERHEAD_OCTETS + ad_data_len.min(MAX_MODELLED_AD_DATA) as u64;
    Duration::from_micros(octets * 8)
}

/// How the simulated air behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct AirConfig {
    /// Probability, 0.0 to 1.0, that one receiver on the sender's floor misses one copy of an
    /// advertising PDU (background interference).
    pub loss: f64,
    /// Time from the last bit of a copy to its reception by the receiver's host.
    pub latency: Duration,
    /// Random extra delay, 0 to this, per received copy.
    pub jitter: Duration,
    /// Time from a GATT write or notification to its reception.
    pub gatt_latency: Duration,
    /// Advertising interval: the shortest time from the start of one advertising event to the
    /// start of the next of the same radio (20 ms is the shortest non-connectable interval, and
    /// the one BlueZ and most mesh stacks use). Zero: events follow each other back to back.
    pub adv_interval: Duration,
    /// The largest advDelay, the pseudo-random 0..=this added before every advertising event
    /// (10 ms in Core Specification Vol 6 Part B §4.4.2.2.1).
    pub adv_delay: Duration,
    /// Advertising events per [`SimAir::advertise`] call (a PB-ADV PDU's transmit count; at
    /// least 1). Network PDUs and beacons give their own count to
    /// [`SimAir::advertise_count`].
    pub transmit_count: u8,
    /// Time the radio needs to move from one advertising channel to the next within an event.
    pub channel_switch: Duration,
    /// Scan window (= scan interval): how long a receiver listens on one channel before it
    /// moves to the next. Zero: it hears the three channels at once.
    pub scan_window: Duration,
    /// Extra loss per floor between sender and receiver, 0.0 to 1.0.
    pub floor_loss: f64,
    /// How many floors a transmission reaches (and disturbs): 0 is the sender's floor only.
    pub max_floors: u32,
    /// Windows in which the air delivers nothing at all (see the module documentation).
    pub blackouts: Vec<Blackout>,
}

/// A window of virtual time in which the air delivers nothing, in either direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blackout {
    /// Its start, from the start of the run.
    pub start: Duration,
    /// How long it lasts.
    pub duration: Duration,
}

impl Blackout {
    /// Whether `[s, e)` meets the window.
    fn overlaps(&self, s: Instant, e: Instant) -> bool {
        let start = Instant::ZERO + self.start;
        let end = start + self.duration;
        s < end && e > start
    }
}

impl Default for AirConfig {
    fn default() -> Self {
        Self {
            loss: 0.0,
            latency: Duration::from_millis(10),
            jitter: Duration::from_millis(10),
            gatt_latency: Duration::from_millis(15),
            adv_interval: Duration::from_millis(20),
            adv_delay: Duration::from_millis(10),
            transmit_count: 1,
            channel_switch: Duration::from_micros(150),
            scan_window: Duration::from_millis(30),
            floor_loss: 0.3,
            max_floors: 1,
            blackouts: Vec::new(),
        }
    }
}

impl AirConfig {
    /// The probability that one copy is lost at a receiver `floors` away (within range).
    pub fn loss_at(&self, floors: u32) -> f64 {
        let keep = (1.0 - self.loss) * (1.0 - self.floor_loss).powi(floors.min(1000) as i32);
        1.0 - keep
    }

    /// Whether `[s, e)` meets a blackout.
    pub fn blacked_out(&self, s: Instant, e: Instant) -> bool {
        self.blackouts.iter().any(|b| b.overlaps(s, e))
    }
}

/// Something the air hands to an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// An AD structure from an advertisement: its AD type and data.
    Adv {
        /// The receiver.
        to: EndpointId,
        /// The sender.
        from: EndpointId,
        /// AD type (0x29 PB-ADV, 0x2A network PDU, 0x2B mesh beacon, ...).
        ad_type: u8,
        /// AD data after the type octet.
        data: Vec<u8>,
    },
    /// A GATT write (client to server) or notification (server to client).
    Gatt {
        /// The receiver.
        to: EndpointId,
        /// The sender.
        from: EndpointId,
        /// The attribute value.
        data: Vec<u8>,
    },
}

impl Delivery {
    /// The receiving endpoint.
    pub fn to(&self) -> EndpointId {
        match self {
            Self::Adv { to, .. } | Self::Gatt { to, .. } => *to,
        }
    }
}

/// A delivery with what the receiver's radio knows about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// What arrived.
    pub delivery: Delivery,
    /// When the host got it.
    pub at: Instant,
    /// The advertising channel (37, 38 or 39) it was received on; `None` for GATT.
    pub channel: Option<u8>,
    /// When its last bit was on air (the copy's end); `None` for GATT.
    pub on_air: Option<Instant>,
}

/// A pattern an endpoint's scanner accepts, like a pattern of BlueZ's `AdvertisementMonitor1`:
/// an AD type, and `bytes` at `offset` in the AD data (empty: every AD of that type).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AdvPattern {
    /// The AD type.
    pub ad_type: u8,
    /// Where `bytes` start in the AD data (after the type octet).
    pub offset: usize,
    /// The bytes that must be there.
    pub bytes: Vec<u8>,
}

/// Which advertisements an endpoint's host is handed. A filter must only leave out what the
/// endpoint would drop anyway: it saves the simulation work without changing any outcome (each
/// copy's fate at each receiver is drawn independently of the other receivers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RxFilter {
    /// Every advertisement it hears.
    #[default]
    All,
    /// Only advertisements that match one of these patterns (none: nothing).
    Patterns(Vec<AdvPattern>),
}

/// Counters of what the air did. Copy counters count one per copy per receiver that listened
/// on its channel, in range, with a filter that takes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AirStats {
    /// Advertisements sent (one per [`SimAir::advertise`] call, however many events or
    /// receivers).
    pub adv_sent: u64,
    /// Advertising events on air (three copies each), periodic ones included.
    pub adv_events: u64,
    /// Advertisement copies delivered.
    pub adv_delivered: u64,
    /// Advertisement copies lost to the per-packet loss (background and floors).
    pub adv_lost: u64,
    /// Advertisement copies lost to a collision with another transmission on the channel.
    pub adv_collided: u64,
    /// Advertisement copies missed because the receiver was transmitting (half duplex).
    pub adv_deaf: u64,
    /// GATT values carried.
    pub gatt_sent: u64,
    /// Advertisement copies lost to a blackout ([`AirConfig::blackouts`]).
    pub adv_blackout: u64,
    /// GATT values lost to a blackout.
    pub gatt_lost: u64,
}

/// One advertising event waiting for its fate to be decided.
#[derive(Debug)]
struct AdvEvent {
    from: EndpointId,
    ad_type: u8,
    data: Vec<u8>,
    /// The endpoints whose filter took it when it was put on air.
    receivers: Vec<usize>,
    /// `[start, end)` of the copy on channel 37, 38, 39.
    copies: [(Instant, Instant); 3],
}

/// One copy on one channel, for the overlap search.
#[derive(Clone, Copy, Debug)]
struct OnAir {
    start: Instant,
    end: Instant,
    from: EndpointId,
    event: u64,
}

/// An advertisement an endpoint repeats on its own (a beacon).
#[derive(Debug)]
struct Periodic {
    ad_type: u8,
    data: Vec<u8>,
    interval: Duration,
    count: u8,
    generation: u64,
}

#[derive(Debug, Default)]
struct Endpoint {
    floor: i32,
    /// Offset of this receiver's channel rotation, in µs.
    phase_us: u64,
    /// When the radio can start its next advertising event (before advDelay).
    tx_free: Instant,
    /// Its own advertising events, `[start, end)`, oldest first.
    busy: VecDeque<(Instant, Instant)>,
    filter: RxFilter,
    periodic: Option<Periodic>,
    /// Bumped by every change of `periodic`, so that a stale queue entry finds nothing.
    periodic_generation: u64,
}

#[derive(Debug)]
enum Item {
    Deliver(Box<Received>),
    Resolve(u64),
    Periodic { ep: usize, generation: u64 },
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    seq: u64,
    item: Item,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: the binary heap pops the earliest entry first, ties in insertion order.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Salts of the per-copy random draws.
const DRAW_LOSS: u64 = 0x6c6f_7373;
const DRAW_JITTER: u64 = 0x6a69_7474;

/// SplitMix64's finaliser: a good 64-bit mix for counter-based random draws.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn micros(t: Instant) -> u64 {
    dur_us(t.since_epoch())
}

fn dur_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// `t − d`, or time zero.
fn before(t: Instant, d: Duration) -> Instant {
    Instant::from_epoch(t.since_epoch().saturating_sub(d))
}

/// The simulated air.
#[derive(Debug)]
pub struct SimAir {
    config: AirConfig,
    rng: ChaCha20Rng,
    /// Key of the per-copy draws (from the seed).
    key: u64,
    now: Instant,
    endpoints: Vec<Endpoint>,
    /// What the driver must wake up for: deliveries, the ends of events someone may
    /// receive, periodic advertisements someone may hear.
    queue: BinaryHeap<Entry>,
    /// Periodic advertisements nobody's filter takes: processed in time order with the rest,
    /// without waking the driver ([`SimAir::set_rx_filter`] moves them back when that changes).
    quiet: BinaryHeap<Entry>,
    next_seq: u64,
    /// Events someone may receive, until their fate is decided.
    events: BTreeMap<u64, AdvEvent>,
    /// Their (start, id): the oldest bounds what the channel lists must keep.
    unresolved: BTreeSet<(Instant, u64)>,
    next_event: u64,
    /// Recent copies per advertising channel, by start time.
    channels: [VecDeque<OnAir>; 3],
    /// Receivers without a filter.
    rx_all: BTreeSet<usize>,
    /// Receivers of every AD of a type.
    rx_type: BTreeMap<u8, BTreeSet<usize>>,
    /// Receivers by pattern: (AD type, offset) → bytes → endpoints.
    rx_pattern: BTreeMap<(u8, usize), BTreeMap<Vec<u8>, BTreeSet<usize>>>,
    /// The (offset, length) shapes of the patterns of each AD type, with a use count.
    rx_shapes: BTreeMap<u8, BTreeMap<(usize, usize), usize>>,
    gatt_tail: BTreeMap<(EndpointId, EndpointId), Instant>,
    stats: AirStats,
    tap: Option<Tap>,
}

/// The tapped endpoint and its tap.
struct Tap {
    endpoint: EndpointId,
    sink: SharedTap,
}

impl fmt::Debug for Tap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tap({:?})", self.endpoint)
    }
}

impl SimAir {
    /// An empty air at time zero whose randomness comes from `seed`.
    pub fn new(config: AirConfig, seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let key = rng.next_u64();
        Self {
            config,
            rng,
            key,
            now: Instant::ZERO,
            endpoints: Vec::new(),
            queue: BinaryHeap::new(),
            quiet: BinaryHeap::new(),
            next_seq: 0,
            events: BTreeMap::new(),
            unresolved: BTreeSet::new(),
            next_event: 0,
            channels: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
            rx_all: BTreeSet::new(),
            rx_type: BTreeMap::new(),
            rx_pattern: BTreeMap::new(),
            rx_shapes: BTreeMap::new(),
            gatt_tail: BTreeMap::new(),
            stats: AirStats::default(),
            tap: None,
        }
    }

    /// Taps `endpoint`: `tap` sees every advertising copy and GATT value it sends and every
    /// one delivered to it, with the virtual time and the channel. One tap at a time; a second
    /// call replaces it. The tap sees what the endpoint's filter ([`SimAir::set_rx_filter`])
    /// lets through.
    pub fn set_tap(&mut self, endpoint: EndpointId, tap: SharedTap) {
        self.tap = Some(Tap {
            endpoint,
            sink: tap,
        });
    }

    /// The received signal strength of a packet from `from` at `to`, in dBm:
    /// [`SIM_RSSI_DBM`] on the same floor, [`SIM_RSSI_PER_FLOOR_DB`] less per floor between.
    pub fn rssi(&self, from: EndpointId, to: EndpointId) -> i8 {
        let floors = self.floor(from).abs_diff(self.floor(to));
        let drop = i64::from(floors) * i64::from(SIM_RSSI_PER_FLOOR_DB);
        i8::try_from(i64::from(SIM_RSSI_DBM) - drop).unwrap_or(i8::MIN)
    }

    /// Whether `endpoint` is the tapped one.
    fn tapped(&self, endpoint: EndpointId) -> bool {
        self.tap.as_ref().is_some_and(|t| t.endpoint == endpoint)
    }

    /// Hands one packet to the tap if `endpoint` is the tapped one.
    fn tap(
        &self,
        endpoint: EndpointId,
        at: Instant,
        from: EndpointId,
        to: Option<EndpointId>,
        channel: u8,
        packet: TapPacket<'_>,
    ) {
        let Some(tap) = &self.tap else { return };
        if tap.endpoint != endpoint {
            return;
        }
        let direction = if from == endpoint {
            TapDirection::Sent
        } else {
            TapDirection::Received
        };
        let record = TapRecord {
            at,
            direction,
            from: from.address(),
            to: to.map(EndpointId::address),
            channel,
            rssi: match (direction, to) {
                (TapDirection::Received, Some(to)) => Some(self.rssi(from, to)),
                _ => None,
            },
            packet,
        };
        // A tap that panicked while holding the lock is still a tap: keep recording.
        let mut sink = match tap.sink.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        sink.record(&record);
    }

    /// Hands a delivery to the tap if it is for the tapped endpoint.
    fn tap_received(&self, r: &Received) {
        match &r.delivery {
            Delivery::Adv {
                to,
                from,
                ad_type,
                data,
            } => self.tap(
                *to,
                r.at,
                *from,
                Some(*to),
                r.channel.unwrap_or(ADV_CHANNELS[0]),
                TapPacket::Adv {
                    ad_type: *ad_type,
                    data,
                },
            ),
            Delivery::Gatt { to, from, data } => {
                self.tap(
                    *to,
                    r.at,
                    *from,
                    Some(*to),
                    ADV_CHANNELS[0],
                    TapPacket::Gatt { data },
                );
            }
        }
    }

    /// Adds an endpoint on floor 0 that hears every advertisement.
    pub fn add_endpoint(&mut self) -> EndpointId {
        let id = self.endpoints.len();
        let cycle = 3 * dur_us(self.config.scan_window);
        let phase_us = if cycle == 0 {
            0
        } else {
            self.rng.next_u64() % cycle
        };
        self.endpoints.push(Endpoint {
            phase_us,
            ..Endpoint::default()
        });
        self.rx_all.insert(id);
        EndpointId(id)
    }

    /// Places `ep` on `floor` (range and collisions depend on floors).
    pub fn set_floor(&mut self, ep: EndpointId, floor: i32) {
        if let Some(e) = self.endpoints.get_mut(ep.0) {
            e.floor = floor;
        }
    }

    /// The floor of `ep` (0 for an unknown endpoint).
    pub fn floor(&self, ep: EndpointId) -> i32 {
        self.endpoints.get(ep.0).map_or(0, |e| e.floor)
    }

    /// Sets which advertisements `ep` is handed ([`RxFilter`]); it replaces the previous
    /// filter.
    pub fn set_rx_filter(&mut self, ep: EndpointId, filter: RxFilter) {
        let Some(old) = self
            .endpoints
            .get_mut(ep.0)
            .map(|e| std::mem::replace(&mut e.filter, filter.clone()))
        else {
            return;
        };
        self.unregister_filter(ep.0, &old);
        match &filter {
            RxFilter::All => {
                self.rx_all.insert(ep.0);
            }
            RxFilter::Patterns(list) => {
                for p in list {
                    if p.bytes.is_empty() {
                        self.rx_type.entry(p.ad_type).or_default().insert(ep.0);
                    } else {
                        self.rx_pattern
                            .entry((p.ad_type, p.offset))
                            .or_default()
                            .entry(p.bytes.clone())
                            .or_default()
                            .insert(ep.0);
                        *self
                            .rx_shapes
                            .entry(p.ad_type)
                            .or_default()
                            .entry((p.offset, p.bytes.len()))
                            .or_default() += 1;
                    }
                }
            }
        }
        self.requeue_quiet();
    }

    /// Moves the periodic advertisements that someone's filter now takes back to the queue
    /// that wakes the driver.
    fn requeue_quiet(&mut self) {
        if self.quiet.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut self.quiet).into_vec();
        for entry in entries {
            if self.periodic_heard(&entry.item) {
                self.queue.push(entry);
            } else {
                self.quiet.push(entry);
            }
        }
    }

    /// Whether a periodic entry's advertisement has a receiver now (stale entries: no).
    fn periodic_heard(&self, item: &Item) -> bool {
        let Item::Periodic { ep, generation } = item else {
            return true;
        };
        self.endpoints
            .get(*ep)
            .and_then(|e| e.periodic.as_ref())
            .filter(|p| p.generation == *generation)
            .is_some_and(|p| self.has_receiver(EndpointId(*ep), p.ad_type, &p.data))
    }

    fn unregister_filter(&mut self, ep: usize, filter: &RxFilter) {
        match filter {
            RxFilter::All => {
                self.rx_all.remove(&ep);
            }
            RxFilter::Patterns(list) => {
                for p in list {
                    if p.bytes.is_empty() {
                        if let Some(s) = self.rx_type.get_mut(&p.ad_type) {
                            s.remove(&ep);
                        }
                        continue;
                    }
                    if let Some(by_bytes) = self.rx_pattern.get_mut(&(p.ad_type, p.offset)) {
                        if let Some(s) = by_bytes.get_mut(p.bytes.as_slice()) {
                            s.remove(&ep);
                            if s.is_empty() {
                                by_bytes.remove(p.bytes.as_slice());
                            }
                        }
                        if by_bytes.is_empty() {
                            self.rx_pattern.remove(&(p.ad_type, p.offset));
                        }
                    }
                    if let Some(shapes) = self.rx_shapes.get_mut(&p.ad_type) {
                        let shape = (p.offset, p.bytes.len());
                        if let Some(n) = shapes.get_mut(&shape) {
                            *n -= 1;
                            if *n == 0 {
                                shapes.remove(&shape);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Moves the virtual clock forward (never back).
    pub fn advance_to(&mut self, t: Instant) {
        if t > self.now {
            self.now = t;
        }
    }

    /// The air's configuration.
    pub fn config(&self) -> &AirConfig {
        &self.config
    }

    /// What the air has done so far.
    pub fn stats(&self) -> AirStats {
        self.stats
    }

    /// The advertising channel (37, 38 or 39) `ep` listens on at `t`; `None` if it hears all
    /// three (zero scan window) or is unknown.
    pub fn scan_channel(&self, ep: EndpointId, t: Instant) -> Option<u8> {
        let e = self.endpoints.get(ep.0)?;
        self.channel_index(e, t).map(|k| ADV_CHANNELS[k])
    }

    fn channel_index(&self, e: &Endpoint, t: Instant) -> Option<usize> {
        let window = dur_us(self.config.scan_window);
        if window == 0 {
            return None;
        }
        // Below 3: the cast cannot truncate.
        Some((((micros(t) + e.phase_us) / window) % 3) as usize)
    }

    fn push(&mut self, at: Instant, item: Item) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Entry { at, seq, item });
    }

    /// Queues a periodic firing: quietly if nobody would hear it.
    fn push_periodic(&mut self, at: Instant, ep: usize, generation: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = Entry {
            at,
            seq,
            item: Item::Periodic { ep, generation },
        };
        if self.periodic_heard(&entry.item) {
            self.queue.push(entry);
        } else {
            self.quiet.push(entry);
        }
    }

    fn adv_delay(&mut self) -> Duration {
        let max = dur_us(self.config.adv_delay);
        if max == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(self.rng.next_u64() % (max + 1))
        }
    }

    /// Broadcasts one AD structure from `from` as [`AirConfig::transmit_count`] advertising
    /// events. The first starts when the sender's radio is free ([`SimAir::adv_ready_at`]) plus
    /// advDelay.
    pub fn advertise(&mut self, from: EndpointId, ad_type: u8, data: &[u8]) {
        let count = self.config.transmit_count;
        self.advertise_count(from, ad_type, data, count);
    }

    /// Broadcasts one AD structure from `from` as `count` advertising events (at least one),
    /// an advertising interval (plus advDelay) apart.
    pub fn advertise_count(&mut self, from: EndpointId, ad_type: u8, data: &[u8], count: u8) {
        self.stats.adv_sent += 1;
        let now = self.now;
        self.schedule(now, from, ad_type, data, count);
    }

    /// Puts `count` advertising events of `from` on the air's timeline, the first at
    /// `earliest` (the current time, or a periodic advertisement's due time) or when the radio
    /// is free. Only events that someone's filter takes are kept for [`SimAir::resolve`]; the
    /// others only occupy the channels.
    fn schedule(
        &mut self,
        earliest: Instant,
        from: EndpointId,
        ad_type: u8,
        data: &[u8],
        count: u8,
    ) {
        let Some(tx_free) = self.endpoints.get(from.0).map(|e| e.tx_free) else {
            return;
        };
        let receivers = self.receivers(from, ad_type, data);
        let air = airtime(data.len());
        let step = air + self.config.channel_switch;
        let mut free = tx_free.max(earliest);
        for _ in 0..count.max(1) {
            let start = free + self.adv_delay();
            let copies = [
                (start, start + air),
                (start + step, start + step + air),
                (start + step * 2, start + step * 2 + air),
            ];
            let end = copies[2].1;
            let id = self.next_event;
            self.next_event += 1;
            for (k, &(s, e)) in copies.iter().enumerate() {
                let list = &mut self.channels[k];
                // Mostly appended in order; a few start earlier than the last one.
                let at = list.partition_point(|c| c.start <= s);
                list.insert(
                    at,
                    OnAir {
                        start: s,
                        end: e,
                        from,
                        event: id,
                    },
                );
            }
            if let Some(ep) = self.endpoints.get_mut(from.0) {
                ep.busy.push_back((start, end));
            }
            if self.tapped(from) {
                for (k, &(s, _)) in copies.iter().enumerate() {
                    let packet = TapPacket::Adv { ad_type, data };
                    self.tap(from, s, from, None, ADV_CHANNELS[k], packet);
                }
            }
            if !receivers.is_empty() {
                self.events.insert(
                    id,
                    AdvEvent {
                        from,
                        ad_type,
                        data: data.to_vec(),
                        receivers: receivers.clone(),
                        copies,
                    },
                );
                self.unresolved.insert((start, id));
                self.push(end, Item::Resolve(id));
            }
            self.stats.adv_events += 1;
            free = (start + self.config.adv_interval).max(end);
        }
        if let Some(ep) = self.endpoints.get_mut(from.0) {
            ep.tx_free = free;
        }
        self.prune();
        self.prune_busy(from.0);
    }

    /// Makes `ep` advertise `data` by itself every `interval` (each time as `count` advertising
    /// events, sharing the radio with everything else it sends), starting at a random moment
    /// within the first interval: an Unprovisioned Device beacon, for example. Replaces the
    /// endpoint's previous periodic advertisement. A zero interval stops it.
    pub fn set_periodic(
        &mut self,
        ep: EndpointId,
        ad_type: u8,
        data: &[u8],
        interval: Duration,
        count: u8,
    ) {
        if interval.is_zero() {
            self.stop_periodic(ep);
            return;
        }
        if ep.0 >= self.endpoints.len() {
            return;
        }
        let span = dur_us(interval).max(1);
        let first = self.now + Duration::from_micros(self.rng.next_u64() % span);
        let Some(e) = self.endpoints.get_mut(ep.0) else {
            return;
        };
        e.periodic_generation += 1;
        let generation = e.periodic_generation;
        e.periodic = Some(Periodic {
            ad_type,
            data: data.to_vec(),
            interval,
            count,
            generation,
        });
        self.push_periodic(first, ep.0, generation);
    }

    /// Stops `ep`'s periodic advertisement (events already on air finish).
    pub fn stop_periodic(&mut self, ep: EndpointId) {
        if let Some(e) = self.endpoints.get_mut(ep.0) {
            // The queue entry keeps the old generation and then finds nothing to send.
            e.periodic = None;
            e.periodic_generation += 1;
        }
    }

    /// Sends a GATT value from `from` to `to` on their connection: reliable and in order.
    pub fn gatt_send(&mut self, from: EndpointId, to: EndpointId, data: &[u8]) {
        self.stats.gatt_sent += 1;
        let earliest = self.now + self.config.gatt_latency;
        if self.config.blacked_out(self.now, earliest) {
            self.stats.gatt_lost += 1;
            let packet = TapPacket::Gatt { data };
            self.tap(from, self.now, from, Some(to), ADV_CHANNELS[0], packet);
            return;
        }
        let tail = self
            .gatt_tail
            .get(&(from, to))
            .copied()
            .unwrap_or(Instant::ZERO);
        let at = if earliest > tail { earliest } else { tail };
        self.gatt_tail.insert((from, to), at);
        let packet = TapPacket::Gatt { data };
        self.tap(from, self.now, from, Some(to), ADV_CHANNELS[0], packet);
        self.push(
            at,
            Item::Deliver(Box::new(Received {
                delivery: Delivery::Gatt {
                    to,
                    from,
                    data: data.to_vec(),
                },
                at,
                channel: None,
                on_air: None,
            })),
        );
    }

    /// When `ep`'s radio can start its next advertising event without queueing (advDelay
    /// comes on top). Drivers pull a packet from a bearer only then, so the bearer, not the
    /// radio, holds the backlog and can withdraw what became stale.
    pub fn adv_ready_at(&self, ep: EndpointId) -> Instant {
        self.endpoints
            .get(ep.0)
            .map_or(Instant::ZERO, |e| e.tx_free)
    }

    /// When the air next needs the driver: a delivery, or the end of an advertising event or a
    /// periodic advertisement that may lead to one. Advertisements nobody's filter takes never
    /// wake the driver; they are processed, in time order, by the next [`SimAir::pop_due`].
    pub fn next_delivery(&self) -> Option<Instant> {
        self.queue.peek().map(|e| e.at)
    }

    /// The next delivery due at or before the current virtual time.
    pub fn pop_due(&mut self) -> Option<Delivery> {
        self.pop_due_received().map(|r| r.delivery)
    }

    /// [`SimAir::pop_due`] with the time, channel and airtime of the delivery.
    pub fn pop_due_received(&mut self) -> Option<Received> {
        loop {
            let wake = self.queue.peek().map(|e| (e.at, e.seq));
            let quiet = self.quiet.peek().map(|e| (e.at, e.seq));
            let (first, from_quiet) = match (wake, quiet) {
                (None, None) => return None,
                (Some(w), None) => (w, false),
                (None, Some(q)) => (q, true),
                (Some(w), Some(q)) => (w.min(q), q < w),
            };
            if first.0 > self.now {
                return None;
            }
            let entry = if from_quiet {
                self.quiet.pop()?
            } else {
                self.queue.pop()?
            };
            match entry.item {
                Item::Deliver(r) => {
                    self.tap_received(&r);
                    return Some(*r);
                }
                Item::Resolve(id) => self.resolve(id),
                Item::Periodic { ep, generation } => self.fire_periodic(entry.at, ep, generation),
            }
        }
    }

    fn fire_periodic(&mut self, at: Instant, ep: usize, generation: u64) {
        let Some(p) = self.endpoints.get(ep).and_then(|e| e.periodic.as_ref()) else {
            return;
        };
        if p.generation != generation {
            return;
        }
        let (ad_type, data, interval, count) = (p.ad_type, p.data.clone(), p.interval, p.count);
        self.schedule(at, EndpointId(ep), ad_type, &data, count);
        self.push_periodic(at + interval, ep, generation);
    }

    /// Receivers whose filter takes this advertisement, in order, without the sender.
    fn receivers(&self, from: EndpointId, ad_type: u8, data: &[u8]) -> Vec<usize> {
        let mut v: Vec<usize> = self.rx_all.iter().copied().collect();
        if let Some(s) = self.rx_type.get(&ad_type) {
            v.extend(s.iter().copied());
        }
        for s in self.pattern_matches(ad_type, data) {
            v.extend(s.iter().copied());
        }
        v.sort_unstable();
        v.dedup();
        v.retain(|&r| r != from.0);
        v
    }

    /// The receiver sets of the patterns of `ad_type` that `data` matches.
    fn pattern_matches<'a>(
        &'a self,
        ad_type: u8,
        data: &'a [u8],
    ) -> impl Iterator<Item = &'a BTreeSet<usize>> + 'a {
        self.rx_shapes
            .get(&ad_type)
            .into_iter()
            .flat_map(|shapes| shapes.keys())
            .filter_map(move |&(offset, len)| {
                let bytes = data.get(offset..offset.saturating_add(len))?;
                self.rx_pattern.get(&(ad_type, offset))?.get(bytes)
            })
    }

    /// Whether any endpoint but `from` would be handed this advertisement.
    fn has_receiver(&self, from: EndpointId, ad_type: u8, data: &[u8]) -> bool {
        let other = |s: &BTreeSet<usize>| s.iter().any(|&r| r != from.0);
        other(&self.rx_all)
            || self.rx_type.get(&ad_type).is_some_and(other)
            || self.pattern_matches(ad_type, data).any(other)
    }

    fn draw(&self, salt: u64, event: u64, receiver: usize, copy: usize) -> u64 {
        let h = mix(self.key ^ salt);
        let h = mix(h ^ event);
        let h = mix(h ^ receiver as u64);
        mix(h ^ copy as u64)
    }

    /// Decides the fate of every copy of event `id` at every receiver: every transmission that
    /// could overlap it is on the channel lists by now (anything added later starts after the
    /// current time, which is past the event's end).
    fn resolve(&mut self, id: u64) {
        let Some(ev) = self.events.remove(&id) else {
            return;
        };
        self.unresolved.remove(&(ev.copies[0].0, id));
        for r in self.fates(id, &ev) {
            self.push(r.at, Item::Deliver(Box::new(r)));
        }
        self.prune();
    }

    /// The copies of `ev` that `receivers` get; counts the others in the stats.
    fn fates(&mut self, id: u64, ev: &AdvEvent) -> Vec<Received> {
        let cfg = &self.config;
        let from_floor = self.floor(ev.from);
        // Other transmissions overlapping each copy on its channel: (sender, floor).
        let max_air = airtime(MAX_MODELLED_AD_DATA);
        let overlapping: Vec<Vec<(usize, i32)>> = ev
            .copies
            .iter()
            .enumerate()
            .map(|(k, &(s, e))| {
                let list = &self.channels[k];
                let upto = list.partition_point(|c| c.start < e);
                list.range(..upto)
                    .rev()
                    .take_while(|c| c.start + max_air > s)
                    .filter(|c| c.event != id && c.end > s)
                    .map(|c| (c.from.0, self.floor(c.from)))
                    .collect()
            })
            .collect();
        let jitter_us = dur_us(cfg.jitter);
        let mut stats = self.stats;
        let mut out = Vec::new();
        for &r in &ev.receivers {
            let Some(rx) = self.endpoints.get(r) else {
                continue;
            };
            let d = rx.floor.abs_diff(from_floor);
            if d > cfg.max_floors {
                continue;
            }
            let p = cfg.loss_at(d);
            for (k, &(s, e)) in ev.copies.iter().enumerate() {
                if let Some(ch) = self.channel_index(rx, s)
                    && (ch != k
                        || self.channel_index(rx, before(e, Duration::from_micros(1))) != Some(k))
                {
                    continue;
                }
                if cfg.blacked_out(s, e) {
                    stats.adv_blackout += 1;
                    continue;
                }
                if rx.busy.iter().rev().any(|&(bs, be)| bs < e && be > s) {
                    stats.adv_deaf += 1;
                    continue;
                }
                if overlapping[k]
                    .iter()
                    .any(|&(b, fb)| b != r && fb.abs_diff(rx.floor) <= cfg.max_floors)
                {
                    stats.adv_collided += 1;
                    continue;
                }
                if p > 0.0 {
                    let u = (self.draw(DRAW_LOSS, id, r, k) >> 11) as f64 / (1u64 << 53) as f64;
                    if u < p {
                        stats.adv_lost += 1;
                        continue;
                    }
                }
                let jitter = if jitter_us == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_micros(self.draw(DRAW_JITTER, id, r, k) % (jitter_us + 1))
                };
                let at = (e + cfg.latency + jitter).max(self.now);
                stats.adv_delivered += 1;
                out.push(Received {
                    delivery: Delivery::Adv {
                        to: EndpointId(r),
                        from: ev.from,
                        ad_type: ev.ad_type,
                        data: ev.data.clone(),
                    },
                    at,
                    channel: Some(ADV_CHANNELS[k]),
                    on_air: Some(e),
                });
            }
        }
        self.stats = stats;
        out
    }

    /// Forgets transmissions that can no longer overlap an event whose fate is undecided (the
    /// oldest one starts at the first `unresolved`) or one put on air later (from now on).
    fn prune(&mut self) {
        let keep_from = self
            .unresolved
            .first()
            .map_or(self.now, |&(start, _)| start.min(self.now));
        let max_air = airtime(MAX_MODELLED_AD_DATA);
        for list in &mut self.channels {
            // By start: an entry that started a whole airtime before `keep_from` has ended.
            while list.front().is_some_and(|c| c.start + max_air <= keep_from) {
                list.pop_front();
            }
        }
    }

    /// The part of [`SimAir::prune`] for one endpoint's own events (done when it sends).
    fn prune_busy(&mut self, ep: usize) {
        let keep_from = self
            .unresolved
            .first()
            .map_or(self.now, |&(start, _)| start.min(self.now));
        if let Some(e) = self.endpoints.get_mut(ep) {
            while e.busy.front().is_some_and(|&(_, end)| end <= keep_from) {
                e.busy.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> AirConfig {
        AirConfig {
            jitter: Duration::ZERO,
            adv_delay: Duration::ZERO,
            scan_window: Duration::ZERO,
            ..AirConfig::default()
        }
    }

    fn drain(air: &mut SimAir) -> Vec<Received> {
        let mut out = Vec::new();
        while let Some(t) = air.next_delivery() {
            air.advance_to(t);
            while let Some(r) = air.pop_due_received() {
                out.push(r);
            }
        }
        out
    }

    #[test]
    fn airtime_of_the_largest_legacy_pdu() {
        // 1 + 4 + 2 + 6 + (2 + 29) + 3 = 47 octets at 8 µs.
        assert_eq!(airtime(29), Duration::from_micros(376));
        assert_eq!(airtime(0), Duration::from_micros(144));
    }

    #[test]
    fn broadcast_loss_and_order() {
        let mut air = SimAir::new(
            AirConfig {
                loss: 0.3,
                scan_window: Duration::ZERO,
                ..AirConfig::default()
            },
            1,
        );
        let a = air.add_endpoint();
        let b = air.add_endpoint();
        for i in 0..1000u16 {
            air.advertise(a, 0x29, &i.to_be_bytes());
        }
        assert_eq!(air.pop_due(), None, "nothing arrives before its latency");
        let got = drain(&mut air);
        let s = air.stats();
        assert_eq!(s.adv_events, 1000);
        assert_eq!(s.adv_delivered + s.adv_lost, 3000, "three copies each");
        assert!((750..1050).contains(&s.adv_lost), "{s:?}");
        assert_eq!(got.len() as u64, s.adv_delivered);
        assert!(got.iter().all(|r| r.delivery.to() == b));
        assert!(got.windows(2).all(|w| w[0].at <= w[1].at), "in time order");
    }

    #[test]
    fn one_event_per_interval_on_three_channels() {
        let mut air = SimAir::new(quiet(), 3);
        let a = air.add_endpoint();
        air.add_endpoint();
        for _ in 0..3 {
            air.advertise(a, 0x29, &[0; 9]);
        }
        let got = drain(&mut air);
        // 9 octets of data: (18 + 9) × 8 = 216 µs; copies 366 µs apart; +10 ms latency.
        let times: Vec<(u128, Option<u8>)> = got
            .iter()
            .map(|r| (r.at.since_epoch().as_micros(), r.channel))
            .collect();
        assert_eq!(
            times,
            [
                (10_216, Some(37)),
                (10_582, Some(38)),
                (10_948, Some(39)),
                (30_216, Some(37)),
                (30_582, Some(38)),
                (30_948, Some(39)),
                (50_216, Some(37)),
                (50_582, Some(38)),
                (50_948, Some(39)),
            ]
        );
    }

    #[test]
    fn a_receiver_hears_one_channel_at_a_time() {
        let mut air = SimAir::new(
            AirConfig {
                jitter: Duration::ZERO,
                ..AirConfig::default()
            },
            5,
        );
        let a = air.add_endpoint();
        let b = air.add_endpoint();
        for _ in 0..300 {
            air.advertise(a, 0x29, &[1; 20]);
        }
        let got = drain(&mut air);
        assert!((280..=310).contains(&got.len()), "{}", got.len());
        for r in &got {
            let last_bit = before(r.on_air.unwrap(), Duration::from_micros(1));
            assert_eq!(air.scan_channel(b, last_bit), r.channel, "{r:?}");
        }
    }

    #[test]
    fn gatt_is_reliable_and_ordered() {
        let mut air = SimAir::new(
            AirConfig {
                loss: 0.9,
                ..AirConfig::default()
            },
            2,
        );
        let a = air.add_endpoint();
        let b = air.add_endpoint();
        for i in 0..50u8 {
            air.gatt_send(a, b, &[i]);
        }
        air.advance_to(Instant::from_millis(1000));
        let got: Vec<u8> = std::iter::from_fn(|| air.pop_due())
            .map(|d| match d {
                Delivery::Gatt { data, .. } => data[0],
                Delivery::Adv { .. } => 255,
            })
            .collect();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn a_transmitting_radio_is_deaf() {
        let mut air = SimAir::new(quiet(), 4);
        let a = air.add_endpoint();
        let b = air.add_endpoint();
        air.advertise(a, 0x29, &[1; 20]);
        air.advertise(b, 0x29, &[2; 20]);
        drain(&mut air);
        let s = air.stats();
        assert_eq!(s.adv_delivered, 0, "{s:?}");
        assert_eq!(s.adv_deaf, 6, "{s:?}");
    }

    #[test]
    fn filters_only_remove_deliveries() {
        let run = |filter: bool| {
            let mut air = SimAir::new(
                AirConfig {
                    loss: 0.4,
                    ..AirConfig::default()
                },
                9,
            );
            let a = air.add_endpoint();
            let b = air.add_endpoint();
            let c = air.add_endpoint();
            if filter {
                air.set_rx_filter(
                    b,
                    RxFilter::Patterns(vec![AdvPattern {
                        ad_type: 0x29,
                        offset: 1,
                        bytes: vec![7],
                    }]),
                );
            }
            for i in 0..200u8 {
                air.advertise(a, 0x29, &[i, i % 8]);
                air.advertise(c, 0x2b, &[i]);
            }
            drain(&mut air)
        };
        let all = run(false);
        let filtered = run(true);
        let expected: Vec<Received> = all
            .into_iter()
            .filter(|r| match &r.delivery {
                Delivery::Adv {
                    to, ad_type, data, ..
                } => *to != EndpointId(1) || (*ad_type == 0x29 && data[1] == 7),
                Delivery::Gatt { .. } => true,
            })
            .collect();
        assert!(expected.iter().any(|r| r.delivery.to() == EndpointId(1)));
        assert_eq!(filtered, expected);
    }

    #[test]
    fn periodic_advertisements_until_stopped() {
        let mut air = SimAir::new(quiet(), 6);
        let a = air.add_endpoint();
        air.add_endpoint();
        air.set_periodic(a, 0x2b, &[0; 22], Duration::from_millis(100), 3);
        while let Some(t) = air
            .next_delivery()
            .filter(|t| *t <= Instant::from_millis(1000))
        {
            air.advance_to(t);
            while air.pop_due().is_some() {}
        }
        // Ten (or eleven) beacons of three events each started by now.
        let events = air.stats().adv_events;
        assert!(events == 30 || events == 33, "{events}");
        air.stop_periodic(a);
        let got = drain(&mut air);
        assert_eq!(air.stats().adv_events, events, "nothing new after the stop");
        let last = got.iter().filter_map(|r| r.on_air).max().unwrap();
        assert!(last < Instant::from_millis(1100), "{last:?}");
    }

    #[test]
    fn a_blackout_delivers_nothing_in_either_direction() {
        let mut air = SimAir::new(
            AirConfig {
                blackouts: vec![Blackout {
                    start: Duration::from_secs(1),
                    duration: Duration::from_secs(2),
                }],
                ..quiet()
            },
            8,
        );
        let a = air.add_endpoint();
        let b = air.add_endpoint();
        let mut got = Vec::new();
        // Every 100 ms for 4 s: an advertisement from a, a GATT value each way.
        for ms in (0..4000u64).step_by(100) {
            while let Some(t) = air
                .next_delivery()
                .filter(|t| *t <= Instant::from_millis(ms))
            {
                air.advance_to(t);
                got.extend(std::iter::from_fn(|| air.pop_due_received()));
            }
            air.advance_to(Instant::from_millis(ms));
            air.advertise(a, 0x29, &[1]);
            air.gatt_send(a, b, &[3]);
            air.gatt_send(b, a, &[4]);
        }
        got.extend(drain(&mut air));
        let count = |to: EndpointId, gatt: bool| {
            got.iter()
                .filter(|r| r.delivery.to() == to)
                .filter(|r| matches!(r.delivery, Delivery::Gatt { .. }) == gatt)
                .count()
        };
        // Sent at 0..=900 and 3000..=3900 ms: 20 of the 40 (three copies per advertisement).
        assert_eq!(count(b, false), 60);
        assert_eq!((count(b, true), count(a, true)), (20, 20));
        assert_eq!(count(a, false), 0);
        for r in &got {
            let sent = r.on_air.unwrap_or(r.at);
            let t = sent.since_epoch().as_millis();
            assert!(!(1000..3000).contains(&t), "{r:?}");
        }
        let s = air.stats();
        assert_eq!((s.adv_blackout, s.gatt_lost), (60, 40), "{s:?}");
    }

    #[test]
    fn same_seed_same_air() {
        let run = |seed| {
            let mut air = SimAir::new(
                AirConfig {
                    loss: 0.5,
                    ..AirConfig::default()
                },
                seed,
            );
            let a = air.add_endpoint();
            let b = air.add_endpoint();
            air.add_endpoint();
            for _ in 0..100 {
                air.advertise(a, 0x29, &[1]);
                air.advertise(b, 0x29, &[2]);
            }
            (drain(&mut air), air.stats())
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
