//! The simulated air: a virtual clock, a seeded RNG and a delivery queue (MshPRT v1.1 §3.3.1
//! advertising bearer; §5.2.2 PB-GATT over a GATT connection).
//!
//! Advertising packets are broadcast: every other endpoint receives its own copy, lost
//! independently with probability `loss`, after `latency` plus a random jitter. GATT writes and
//! notifications travel on a connection: they are never lost (the link layer acknowledges and
//! retransmits them) and arrive in order after `gatt_latency`. Nothing here reads a clock: the
//! driver moves time forward to [`SimAir::next_delivery`] or to its state machines' deadlines.
//!
//! One endpoint can be tapped ([`SimAir::set_tap`]): the tap sees every advertisement and GATT
//! value the endpoint sends and every one delivered to it, with the virtual time — a capture
//! ([`crate::radio::capture::CaptureTap`]) or a scanner records through it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
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

/// Advertising channel index the tap reports while the simulated air has no channels.
pub const TAP_CHANNEL: u8 = 37;

/// Received signal strength the simulated air reports, in dBm, until it models distance.
pub const SIM_RSSI_DBM: i8 = -50;

/// How the simulated air behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct AirConfig {
    /// Probability, 0.0 to 1.0, that one receiver misses one advertising packet.
    pub loss: f64,
    /// Time from an advertisement to its reception.
    pub latency: Duration,
    /// Random extra delay, 0 to this, per received copy.
    pub jitter: Duration,
    /// Time from a GATT write or notification to its reception.
    pub gatt_latency: Duration,
    /// Time one radio needs per advertisement: an endpoint sends at most one advertisement
    /// per interval and queues the rest (20 ms is the shortest non-connectable advertising
    /// interval that BlueZ and most controllers use for mesh). Zero: no limit.
    pub adv_interval: Duration,
}

impl Default for AirConfig {
    fn default() -> Self {
        Self {
            loss: 0.0,
            latency: Duration::from_millis(10),
            jitter: Duration::from_millis(10),
            gatt_latency: Duration::from_millis(15),
            adv_interval: Duration::from_millis(20),
        }
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

/// Counters of what the air did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AirStats {
    /// Advertisements sent (one per call, however many receivers).
    pub adv_sent: u64,
    /// Advertisement copies delivered.
    pub adv_delivered: u64,
    /// Advertisement copies lost.
    pub adv_lost: u64,
    /// GATT values carried.
    pub gatt_sent: u64,
}

/// The simulated air.
#[derive(Debug)]
pub struct SimAir {
    config: AirConfig,
    rng: ChaCha20Rng,
    now: Instant,
    endpoints: usize,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    pending: BTreeMap<u64, Delivery>,
    next_seq: u64,
    gatt_tail: BTreeMap<(EndpointId, EndpointId), Instant>,
    tx_free: BTreeMap<EndpointId, Instant>,
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
        Self {
            config,
            rng: ChaCha20Rng::seed_from_u64(seed),
            now: Instant::ZERO,
            endpoints: 0,
            queue: BinaryHeap::new(),
            pending: BTreeMap::new(),
            next_seq: 0,
            gatt_tail: BTreeMap::new(),
            tx_free: BTreeMap::new(),
            stats: AirStats::default(),
            tap: None,
        }
    }

    /// Taps `endpoint`: `tap` sees every advertisement and GATT value it sends and every one
    /// delivered to it, with the virtual time. One tap at a time; a second call replaces it.
    pub fn set_tap(&mut self, endpoint: EndpointId, tap: SharedTap) {
        self.tap = Some(Tap {
            endpoint,
            sink: tap,
        });
    }

    /// The received signal strength of a packet from `from` at `to`, in dBm: a fixed
    /// [`SIM_RSSI_DBM`] while the air has no positions.
    pub fn rssi(&self, _from: EndpointId, _to: EndpointId) -> i8 {
        SIM_RSSI_DBM
    }

    /// Hands one packet to the tap if `endpoint` is the tapped one.
    fn tap(
        &self,
        endpoint: EndpointId,
        at: Instant,
        from: EndpointId,
        to: Option<EndpointId>,
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
            channel: TAP_CHANNEL,
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

    /// Adds an endpoint.
    pub fn add_endpoint(&mut self) -> EndpointId {
        self.endpoints += 1;
        EndpointId(self.endpoints - 1)
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

    fn chance(&mut self) -> f64 {
        // 53 random bits give a uniform f64 in [0, 1).
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn jitter(&mut self) -> Duration {
        let max = self.config.jitter.as_micros() as u64;
        if max == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(self.rng.next_u64() % (max + 1))
        }
    }

    fn enqueue(&mut self, at: Instant, d: Delivery) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse((at, seq)));
        self.pending.insert(seq, d);
    }

    /// Broadcasts one AD structure from `from` to every other endpoint. It goes on air when
    /// the sender's radio is free ([`AirConfig::adv_interval`]).
    pub fn advertise(&mut self, from: EndpointId, ad_type: u8, data: &[u8]) {
        self.stats.adv_sent += 1;
        let free = self.tx_free.get(&from).copied().unwrap_or(Instant::ZERO);
        let on_air = if free > self.now { free } else { self.now };
        self.tx_free.insert(from, on_air + self.config.adv_interval);
        self.tap(from, on_air, from, None, TapPacket::Adv { ad_type, data });
        for i in 0..self.endpoints {
            let to = EndpointId(i);
            if to == from {
                continue;
            }
            if self.config.loss > 0.0 && self.chance() < self.config.loss {
                self.stats.adv_lost += 1;
                continue;
            }
            let at = on_air + self.config.latency + self.jitter();
            self.stats.adv_delivered += 1;
            self.enqueue(
                at,
                Delivery::Adv {
                    to,
                    from,
                    ad_type,
                    data: data.to_vec(),
                },
            );
        }
    }

    /// Sends a GATT value from `from` to `to` on their connection: reliable and in order.
    pub fn gatt_send(&mut self, from: EndpointId, to: EndpointId, data: &[u8]) {
        self.stats.gatt_sent += 1;
        let earliest = self.now + self.config.gatt_latency;
        let tail = self
            .gatt_tail
            .get(&(from, to))
            .copied()
            .unwrap_or(Instant::ZERO);
        let at = if earliest > tail { earliest } else { tail };
        self.gatt_tail.insert((from, to), at);
        self.tap(from, self.now, from, Some(to), TapPacket::Gatt { data });
        self.enqueue(
            at,
            Delivery::Gatt {
                to,
                from,
                data: data.to_vec(),
            },
        );
    }

    /// When `ep`'s radio can put its next advertisement on air without queueing. Drivers pull
    /// a packet from a bearer only then, so the bearer, not the radio, holds the backlog and can
    /// withdraw what became stale.
    pub fn adv_ready_at(&self, ep: EndpointId) -> Instant {
        self.tx_free.get(&ep).copied().unwrap_or(Instant::ZERO)
    }

    /// When the next delivery is due.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((t, _))| *t)
    }

    /// The next delivery due at or before the current virtual time.
    pub fn pop_due(&mut self) -> Option<Delivery> {
        let Reverse((t, seq)) = *self.queue.peek()?;
        if t > self.now {
            return None;
        }
        self.queue.pop();
        let d = self.pending.remove(&seq)?;
        match &d {
            Delivery::Adv {
                to,
                from,
                ad_type,
                data,
            } => self.tap(
                *to,
                t,
                *from,
                Some(*to),
                TapPacket::Adv {
                    ad_type: *ad_type,
                    data,
                },
            ),
            Delivery::Gatt { to, from, data } => {
                self.tap(*to, t, *from, Some(*to), TapPacket::Gatt { data });
            }
        }
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_loss_and_order() {
        let mut air = SimAir::new(
            AirConfig {
                loss: 0.3,
                ..AirConfig::default()
            },
            1,
        );
        let a = air.add_endpoint();
        let b = air.add_endpoint();
        for i in 0..1000u16 {
            air.advertise(a, 0x29, &i.to_be_bytes());
        }
        let s = air.stats();
        assert_eq!(s.adv_delivered + s.adv_lost, 1000);
        assert!((250..350).contains(&s.adv_lost), "{s:?}");
        assert_eq!(air.pop_due(), None, "nothing arrives before its latency");
        air.advance_to(Instant::from_millis(100_000));
        let mut n = 0;
        while let Some(d) = air.pop_due() {
            assert_eq!(d.to(), b);
            n += 1;
        }
        assert_eq!(n, s.adv_delivered);
    }

    #[test]
    fn one_advertisement_per_interval() {
        let mut air = SimAir::new(
            AirConfig {
                jitter: Duration::ZERO,
                ..AirConfig::default()
            },
            3,
        );
        let a = air.add_endpoint();
        air.add_endpoint();
        for _ in 0..5 {
            air.advertise(a, 0x29, &[0]);
        }
        let mut times = Vec::new();
        while let Some(t) = air.next_delivery() {
            air.advance_to(t);
            air.pop_due();
            times.push(t.since_epoch().as_millis());
        }
        assert_eq!(times, [10, 30, 50, 70, 90]);
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
            air.add_endpoint();
            for _ in 0..100 {
                air.advertise(a, 0x29, &[1]);
            }
            air.stats()
        };
        assert_eq!(run(7), run(7));
    }
}
