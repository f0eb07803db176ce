//! PB-ADV link tables (MshPRT v1.1 §5.2.1, §5.3) through the public API: back-to-back links
//! over an in-test "air", loss, 64 concurrent links, and the receiver and timer rules fed by
//! hand. Deterministic: seeded ChaCha20 and explicit instants.

use std::time::Duration;

use meshprov::bearer::BearerError;
use meshprov::bearer::pb_adv::{CloseCause, LinkEvent, LinkId, Links, PbAdvConfig, Role, Stats};
use meshprov::time::Instant;
use meshprov::wire::pb_adv::{
    BearerControl, GenericProvisioningPdu, LinkCloseReason, PbAdvPdu, TransactionStart, fcs,
    segment,
};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

const UUID: [u8; 16] = *b"meshprov-device!";

fn rng(seed: u64) -> Box<ChaCha20Rng> {
    Box::new(ChaCha20Rng::seed_from_u64(seed))
}

fn provisioner(seed: u64) -> Links {
    Links::new(Role::Provisioner, PbAdvConfig::default(), rng(seed))
}

fn device(uuid: [u8; 16], seed: u64) -> Links {
    Links::new(Role::Device { uuid }, PbAdvConfig::default(), rng(seed))
}

fn implicit() -> PbAdvConfig {
    PbAdvConfig {
        implicit_ack: true,
        ..PbAdvConfig::default()
    }
}

/// A distinct test PDU of `len` octets.
fn pdu(tag: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| tag.wrapping_mul(31).wrapping_add(i as u8))
        .collect()
}

fn parse(bytes: &[u8]) -> PbAdvPdu {
    PbAdvPdu::parse(bytes).expect("we only transmit valid PB-ADV PDUs")
}

fn drain_tx(links: &mut Links, now: Instant) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| links.poll_transmit(now)).collect()
}

fn drain_events(links: &mut Links) -> Vec<LinkEvent> {
    std::iter::from_fn(|| links.poll_event()).collect()
}

fn encode(link_id: u32, xact: u8, pdu: GenericProvisioningPdu) -> Vec<u8> {
    let mut out = Vec::new();
    PbAdvPdu {
        link_id,
        transaction_number: xact,
        pdu,
    }
    .emit(&mut out);
    out
}

/// The simulated air: one provisioner table, any number of device tables. Every transmit of
/// the provisioner reaches every device and every device transmit reaches the provisioner,
/// each copy independently lost with probability `loss`. Time only moves when nothing is in
/// flight: to the earliest `poll_timeout`.
struct Air {
    now: Instant,
    prov: Links,
    devices: Vec<Links>,
    loss: f64,
    rng: ChaCha20Rng,
    prov_events: Vec<(Instant, LinkEvent)>,
    device_events: Vec<Vec<(Instant, LinkEvent)>>,
    /// Everything put on the air: (time, from the provisioner?, PDU).
    log: Vec<(Instant, bool, PbAdvPdu)>,
}

impl Air {
    fn new(prov: Links, devices: Vec<Links>, loss: f64, seed: u64) -> Self {
        let n = devices.len();
        Air {
            now: Instant::ZERO,
            prov,
            devices,
            loss,
            rng: ChaCha20Rng::seed_from_u64(seed ^ 0xA1A1),
            prov_events: Vec::new(),
            device_events: vec![Vec::new(); n],
            log: Vec::new(),
        }
    }

    fn lost(&mut self) -> bool {
        self.loss > 0.0 && f64::from(self.rng.next_u32()) / f64::from(u32::MAX) < self.loss
    }

    /// Moves everything in flight; returns whether anything moved.
    fn deliver(&mut self) -> bool {
        let mut moved = false;
        while let Some(bytes) = self.prov.poll_transmit(self.now) {
            moved = true;
            self.log.push((self.now, true, parse(&bytes)));
            for i in 0..self.devices.len() {
                if !self.lost() {
                    self.devices[i].handle_adv(self.now, &bytes);
                }
            }
        }
        for i in 0..self.devices.len() {
            while let Some(bytes) = self.devices[i].poll_transmit(self.now) {
                moved = true;
                self.log.push((self.now, false, parse(&bytes)));
                if !self.lost() {
                    self.prov.handle_adv(self.now, &bytes);
                }
            }
        }
        let now = self.now;
        self.prov_events
            .extend(drain_events(&mut self.prov).into_iter().map(|e| (now, e)));
        for (d, events) in self.devices.iter_mut().zip(&mut self.device_events) {
            events.extend(drain_events(d).into_iter().map(|e| (now, e)));
        }
        moved
    }

    /// One step: deliver, or else advance time to the next timer and fire it. Returns false
    /// when nothing is left to do.
    fn step(&mut self) -> bool {
        if self.deliver() {
            return true;
        }
        let next = std::iter::once(self.prov.poll_timeout())
            .chain(self.devices.iter().map(Links::poll_timeout))
            .flatten()
            .min();
        let Some(next) = next else { return false };
        assert!(next >= self.now, "timers never go back in time");
        self.now = next;
        self.prov.handle_timeout(self.now);
        for d in &mut self.devices {
            d.handle_timeout(self.now);
        }
        true
    }

    /// Steps until `done` holds (checked after every step); panics after `limit` of virtual
    /// time.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Air) -> bool) {
        let end = self.now + limit;
        while !done(self) {
            assert!(self.step(), "air went idle before the condition held");
            assert!(self.now <= end, "condition not met within {limit:?}");
        }
    }

    /// Steps until nothing is in flight and no timer runs.
    fn run_idle(&mut self, limit: Duration) {
        let end = self.now + limit;
        while self.step() {
            assert!(self.now <= end, "not idle within {limit:?}");
        }
    }

    fn prov_has(&self, e: &LinkEvent) -> bool {
        self.prov_events.iter().any(|(_, x)| x == e)
    }

    fn dev_has(&self, i: usize, e: &LinkEvent) -> bool {
        self.device_events[i].iter().any(|(_, x)| x == e)
    }
}

fn received(events: &[(Instant, LinkEvent)], link: LinkId) -> Vec<Vec<u8>> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            LinkEvent::Received(l, p) if *l == link => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn count(events: &[(Instant, LinkEvent)], e: &LinkEvent) -> usize {
    events.iter().filter(|(_, x)| x == e).count()
}

#[test]
fn back_to_back_open_exchange_close() {
    let mut air = Air::new(provisioner(1), vec![device(UUID, 2)], 0.0, 3);
    let link = air.prov.open(air.now, UUID).unwrap();
    assert_ne!(link.0, 0);
    assert_eq!(link.to_string().len(), 8);
    air.run_until(Duration::from_secs(1), |a| {
        a.prov_has(&LinkEvent::Opened(link)) && a.dev_has(0, &LinkEvent::Opened(link))
    });
    assert!(air.prov.is_open(link) && air.devices[0].is_open(link));
    assert_eq!(air.prov.device_uuid(link), Some(UUID));

    let out = pdu(1, 65);
    air.prov.send(air.now, link, &out).unwrap();
    air.run_until(Duration::from_secs(1), |a| {
        a.prov_has(&LinkEvent::Delivered(link))
    });
    assert_eq!(received(&air.device_events[0], link), vec![out.clone()]);

    let back = pdu(2, 65);
    air.devices[0].send(air.now, link, &back).unwrap();
    air.run_until(Duration::from_secs(1), |a| {
        a.dev_has(0, &LinkEvent::Delivered(link))
    });
    assert_eq!(received(&air.prov_events, link), vec![back]);

    air.prov.close(air.now, link, LinkCloseReason::SUCCESS);
    assert_eq!(air.prov.len(), 0, "a closing link no longer counts");
    air.run_idle(Duration::from_secs(2));
    assert!(air.prov_has(&LinkEvent::Closed(
        link,
        CloseCause::Local(LinkCloseReason::SUCCESS)
    )));
    assert_eq!(
        count(
            &air.device_events[0],
            &LinkEvent::Closed(link, CloseCause::Remote(LinkCloseReason::SUCCESS))
        ),
        1
    );
    assert_eq!(air.devices[0].len(), 0);

    // The wire: a 65-octet PDU is Start + 2 Continuations; provisioner numbers from 0x00, the
    // device from 0x80; three Link Close copies 100 ms apart; no retransmission on a clean air.
    let segments = |from_prov: bool| {
        air.log
            .iter()
            .filter(|(_, p, pdu)| {
                *p == from_prov
                    && matches!(
                        pdu.pdu,
                        GenericProvisioningPdu::TransactionStart(_)
                            | GenericProvisioningPdu::TransactionContinuation(_)
                    )
            })
            .map(|(_, _, pdu)| pdu.transaction_number)
            .collect::<Vec<_>>()
    };
    assert_eq!(segments(true), vec![0x00; 3]);
    assert_eq!(segments(false), vec![0x80; 3]);
    let closes: Vec<Instant> = air
        .log
        .iter()
        .filter(|(_, p, pdu)| {
            *p && pdu.pdu
                == GenericProvisioningPdu::BearerControl(BearerControl::LinkClose {
                    reason: LinkCloseReason::SUCCESS,
                })
        })
        .map(|(t, _, _)| *t)
        .collect();
    assert_eq!(closes.len(), 3);
    assert_eq!(
        closes[2].saturating_duration_since(closes[0]),
        Duration::from_millis(200)
    );
    let s = air.prov.stats();
    assert_eq!(s.retransmitted, 0);
    assert_eq!(s.transactions_sent, 1);
    assert_eq!(s.transactions_delivered, 1);
    assert_eq!(s.transactions_received, 1);
    assert_eq!(air.prov.poll_timeout(), None);
}

/// A provisioning-like exchange: (from the provisioner?, PDU length).
const FLOW: [(bool, usize); 11] = [
    (true, 2),   // Invite
    (false, 12), // Capabilities
    (true, 6),   // Start
    (true, 65),  // Public Key
    (false, 65), // Public Key
    (true, 33),  // Confirmation (HMAC)
    (false, 33), // Confirmation
    (true, 33),  // Random
    (false, 33), // Random
    (true, 34),  // Data
    (false, 1),  // Complete
];

struct FlowResult {
    prov_stats: Stats,
    dev_stats: Stats,
    elapsed: Duration,
    device_saw_close: bool,
}

/// Runs [`FLOW`] over an air with `loss`; each side sends its next PDU once it has received
/// every earlier PDU of the peer. Asserts exactly-once, in-order delivery both ways.
fn run_flow(loss: f64, seed: u64, config: PbAdvConfig) -> FlowResult {
    let prov = Links::new(Role::Provisioner, config.clone(), rng(seed));
    let dev = Links::new(Role::Device { uuid: UUID }, config, rng(seed + 1));
    let mut air = Air::new(prov, vec![dev], loss, seed + 2);
    let link = air.prov.open(air.now, UUID).unwrap();
    let payload = |i: usize| pdu(i as u8, FLOW[i].1);
    let mut sent = [false; FLOW.len()];
    let end = air.now + Duration::from_secs(120);
    loop {
        let from_dev = received(&air.prov_events, link).len();
        let from_prov = received(&air.device_events[0], link).len();
        for (i, &(by_prov, _)) in FLOW.iter().enumerate() {
            if sent[i] {
                continue;
            }
            let peer_before = FLOW[..i].iter().filter(|(p, _)| *p != by_prov).count();
            let ready = if by_prov {
                air.prov.is_open(link) && from_dev >= peer_before
            } else {
                air.devices[0].is_open(link) && from_prov >= peer_before
            };
            if !ready
                || FLOW[..i]
                    .iter()
                    .zip(&sent)
                    .any(|((p, _), s)| *p == by_prov && !s)
            {
                continue;
            }
            let side = if by_prov {
                &mut air.prov
            } else {
                &mut air.devices[0]
            };
            side.send(air.now, link, &payload(i)).unwrap();
            sent[i] = true;
        }
        if sent.iter().all(|s| *s) && received(&air.prov_events, link).len() == 5 {
            break;
        }
        assert!(air.step(), "stalled");
        assert!(air.now <= end, "flow not done in 120 s at loss {loss}");
        assert!(
            !air.prov_events
                .iter()
                .any(|(_, e)| matches!(e, LinkEvent::Closed(..))),
            "link failed at loss {loss}: {:?}",
            air.prov_events
        );
    }
    let elapsed = air.now.since_epoch();
    let expect = |by_prov: bool| -> Vec<Vec<u8>> {
        (0..FLOW.len())
            .filter(|&i| FLOW[i].0 == by_prov)
            .map(payload)
            .collect()
    };
    assert_eq!(received(&air.device_events[0], link), expect(true));
    assert_eq!(received(&air.prov_events, link), expect(false));
    air.prov.close(air.now, link, LinkCloseReason::SUCCESS);
    air.run_idle(Duration::from_secs(200));
    // Losing all three Link Close copies is possible (loss³); then the device keeps its link
    // until its own protocol timeout, which is the provisioning layer's business.
    let device_saw_close = air.dev_has(
        0,
        &LinkEvent::Closed(link, CloseCause::Remote(LinkCloseReason::SUCCESS)),
    );
    assert_eq!(air.devices[0].len(), usize::from(!device_saw_close));
    FlowResult {
        prov_stats: air.prov.stats(),
        dev_stats: air.devices[0].stats(),
        elapsed,
        device_saw_close,
    }
}

#[test]
fn provisioning_flow_without_loss() {
    let r = run_flow(0.0, 10, PbAdvConfig::default());
    assert_eq!(r.prov_stats.retransmitted + r.dev_stats.retransmitted, 0);
    assert_eq!(r.dev_stats.transactions_delivered, 5);
    assert!(r.device_saw_close);
    assert_eq!(
        r.elapsed,
        Duration::ZERO,
        "no loss: nothing waits for a timer"
    );
}

fn lossy(loss: f64, config: PbAdvConfig) {
    let (mut retx, mut sent, mut time, mut closes, mut implicit) = (0, 0, Duration::ZERO, 0, 0);
    let runs = 8;
    for seed in 0..runs {
        let r = run_flow(loss, 100 + seed * 7, config.clone());
        retx += r.prov_stats.retransmitted + r.dev_stats.retransmitted;
        sent += r.prov_stats.sent + r.dev_stats.sent;
        implicit += r.prov_stats.implicit_acks + r.dev_stats.implicit_acks;
        time += r.elapsed;
        closes += usize::from(r.device_saw_close);
        assert_eq!(r.prov_stats.transactions_delivered, 6);
        // The ack of the device's last PDU (Complete) may be lost; the Link Close ends it.
        assert!(r.dev_stats.transactions_delivered >= 4);
        assert!(r.prov_stats.retransmitted > 0 || r.dev_stats.retransmitted > 0);
    }
    eprintln!(
        "loss {loss}, implicit ack {}: {runs} provisioning flows, mean {:.1} PDUs on air, {:.1} retransmitted, \
         {:.1} implicit acks, {:?} virtual time; device saw Link Close in {closes}/{runs}",
        config.implicit_ack,
        sent as f64 / runs as f64,
        retx as f64 / runs as f64,
        implicit as f64 / runs as f64,
        time / runs as u32,
    );
    assert!(closes >= runs as usize - 1);
}

#[test]
fn provisioning_flow_with_10_percent_loss() {
    lossy(0.10, PbAdvConfig::default());
}

#[test]
fn provisioning_flow_with_30_percent_loss() {
    lossy(0.30, PbAdvConfig::default());
}

#[test]
fn provisioning_flow_with_30_percent_loss_and_implicit_acks() {
    lossy(0.30, implicit());
}

/// Moves one 65-octet PDU provisioner → device at 30 % loss, over many seeds; reports the
/// mean virtual time until the sender's Delivered and the retransmissions.
#[test]
fn one_65_octet_pdu_at_30_percent_loss() {
    let runs = 200u32;
    let (mut to_rx, mut to_ack, mut retx, mut worst) =
        (Duration::ZERO, Duration::ZERO, 0u64, Duration::ZERO);
    for seed in 0..runs {
        let mut air = Air::new(
            provisioner(u64::from(seed)),
            vec![device(UUID, 9)],
            0.3,
            7 + u64::from(seed),
        );
        let link = air.prov.open(air.now, UUID).unwrap();
        air.run_until(Duration::from_secs(60), |a| a.prov.is_open(link));
        let start = air.now;
        let before = air.prov.stats().retransmitted;
        air.prov.send(air.now, link, &pdu(5, 65)).unwrap();
        air.run_until(Duration::from_secs(30), |a| {
            !received(&a.device_events[0], link).is_empty()
        });
        to_rx += air.now.saturating_duration_since(start);
        air.run_until(Duration::from_secs(30), |a| {
            a.prov_has(&LinkEvent::Delivered(link))
        });
        let t = air.now.saturating_duration_since(start);
        worst = worst.max(t);
        to_ack += t;
        retx += air.prov.stats().retransmitted - before;
        assert_eq!(received(&air.device_events[0], link), vec![pdu(5, 65)]);
    }
    eprintln!(
        "65-octet PDU at 30 % loss over {runs} seeds: mean {:?} to reassembly, mean {:?} to \
         ack (worst {worst:?}), mean {:.2} segment retransmissions",
        to_rx / runs,
        to_ack / runs,
        retx as f64 / f64::from(runs)
    );
}

#[test]
fn sixty_four_concurrent_links() {
    let uuids: Vec<[u8; 16]> = (0..64u8).map(|i| [i; 16]).collect();
    let devices = uuids
        .iter()
        .enumerate()
        .map(|(i, u)| device(*u, 1000 + i as u64))
        .collect();
    let mut air = Air::new(provisioner(77), devices, 0.0, 5);
    let links: Vec<LinkId> = uuids
        .iter()
        .map(|u| air.prov.open(air.now, *u).unwrap())
        .collect();
    assert_eq!(air.prov.len(), 64);
    let mut ids: Vec<u32> = links.iter().map(|l| l.0).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 64, "Link IDs unique");
    assert!(ids.iter().all(|id| *id != 0), "Link IDs non-zero");
    assert_eq!(
        air.prov.open(air.now, [0xEE; 16]),
        Err(BearerError::TooManyLinks { max: 64 })
    );
    assert_eq!(
        air.prov.open(air.now, uuids[3]),
        Err(BearerError::TooManyLinks { max: 64 })
    );

    air.run_until(Duration::from_secs(5), |a| {
        links.iter().all(|l| a.prov.is_open(*l))
    });
    for (i, link) in links.iter().enumerate() {
        assert!(air.devices[i].is_open(*link));
        assert_eq!(air.devices[i].len(), 1);
        air.prov
            .send(air.now, *link, &pdu(i as u8, 30 + i))
            .unwrap();
        air.devices[i]
            .send(air.now, *link, &pdu(200 - i as u8, 10 + i))
            .unwrap();
    }
    air.run_until(Duration::from_secs(10), |a| {
        a.prov_events
            .iter()
            .filter(|(_, e)| matches!(e, LinkEvent::Delivered(_)))
            .count()
            == 64
            && a.device_events
                .iter()
                .all(|ev| ev.iter().any(|(_, e)| matches!(e, LinkEvent::Delivered(_))))
    });
    for (i, link) in links.iter().enumerate() {
        let own: Vec<Vec<u8>> = air.device_events[i]
            .iter()
            .filter_map(|(_, e)| match e {
                LinkEvent::Received(l, p) => {
                    assert_eq!(l, link, "device {i} received another link's PDU");
                    Some(p.clone())
                }
                _ => None,
            })
            .collect();
        assert_eq!(own, vec![pdu(i as u8, 30 + i)]);
        assert_eq!(
            received(&air.prov_events, *link),
            vec![pdu(200 - i as u8, 10 + i)]
        );
    }
    for link in &links {
        air.prov.close(air.now, *link, LinkCloseReason::SUCCESS);
    }
    air.run_idle(Duration::from_secs(5));
    assert!(air.devices.iter().all(|d| d.is_empty()));
    assert!(air.prov.is_empty());
    // With the table empty again, opening works.
    assert!(air.prov.open(air.now, [0xEE; 16]).is_ok());
}

/// A device with an open link 0x01020304, events and transmits drained.
fn open_device() -> (Links, u32) {
    open_device_with(PbAdvConfig::default())
}

fn open_device_with(config: PbAdvConfig) -> (Links, u32) {
    let mut d = Links::new(Role::Device { uuid: UUID }, config, rng(4));
    let id = 0x0102_0304;
    d.handle_adv(
        Instant::ZERO,
        &encode(
            id,
            0,
            GenericProvisioningPdu::BearerControl(BearerControl::LinkOpen { uuid: UUID }),
        ),
    );
    assert_eq!(drain_events(&mut d), vec![LinkEvent::Opened(LinkId(id))]);
    let tx = drain_tx(&mut d, Instant::ZERO);
    assert_eq!(tx.len(), 1);
    assert_eq!(
        parse(&tx[0]).pdu,
        GenericProvisioningPdu::BearerControl(BearerControl::LinkAck)
    );
    (d, id)
}

fn is_ack(bytes: &[u8], xact: u8) -> bool {
    let p = parse(bytes);
    p.pdu == GenericProvisioningPdu::TransactionAck && p.transaction_number == xact
}

#[test]
fn device_link_open_rules() {
    let (mut d, id) = open_device();
    let t = Instant::from_millis(10);
    // Repeated Link Open for the same link: Link ACK again, no new event.
    let open = encode(
        id,
        0,
        GenericProvisioningPdu::BearerControl(BearerControl::LinkOpen { uuid: UUID }),
    );
    d.handle_adv(t, &open);
    assert!(drain_events(&mut d).is_empty());
    assert_eq!(drain_tx(&mut d, t).len(), 1);
    // Another UUID, or another link ID while open: ignored.
    let other = encode(
        7,
        0,
        GenericProvisioningPdu::BearerControl(BearerControl::LinkOpen { uuid: [9; 16] }),
    );
    d.handle_adv(t, &other);
    let other_link = encode(
        8,
        0,
        GenericProvisioningPdu::BearerControl(BearerControl::LinkOpen { uuid: UUID }),
    );
    d.handle_adv(t, &other_link);
    assert!(drain_events(&mut d).is_empty());
    assert!(drain_tx(&mut d, t).is_empty());
    assert_eq!(d.len(), 1);
    assert_eq!(d.stats().ignored, 2);
    assert_eq!(d.open(t, UUID), Err(BearerError::NotProvisioner));
    // After the provisioner closes, a new link may open.
    d.handle_adv(
        t,
        &encode(
            id,
            0,
            GenericProvisioningPdu::BearerControl(BearerControl::LinkClose {
                reason: LinkCloseReason::FAIL,
            }),
        ),
    );
    assert_eq!(
        drain_events(&mut d),
        vec![LinkEvent::Closed(
            LinkId(id),
            CloseCause::Remote(LinkCloseReason::FAIL)
        )]
    );
    d.handle_adv(t, &other_link);
    assert_eq!(drain_events(&mut d), vec![LinkEvent::Opened(LinkId(8))]);
}

/// A lost ack is repaired by whichever segment of the retransmission arrives first: a
/// Continuation of the transaction delivered last is re-acknowledged too (Zephyr and ESP-IDF
/// "Resending ack"), and only once while the ack waits for the radio.
#[test]
fn duplicate_continuation_is_reacked() {
    let (mut d, id) = open_device();
    let t = Instant::from_millis(5);
    let pdu: Vec<u8> = (0..40u8).collect();
    let segs = segment(&pdu).unwrap();
    assert_eq!(segs.len(), 2);
    for s in &segs {
        d.handle_adv(t, &encode(id, 0x00, s.clone()));
    }
    assert_eq!(drain_events(&mut d).len(), 1);
    let tx = drain_tx(&mut d, t);
    assert_eq!(tx.len(), 1);
    assert!(is_ack(&tx[0], 0x00));
    let continuation = encode(id, 0x00, segs[1].clone());
    d.handle_adv(t, &continuation);
    d.handle_adv(t, &continuation);
    assert!(drain_events(&mut d).is_empty(), "not delivered again");
    let tx = drain_tx(&mut d, t);
    assert_eq!(tx.len(), 1, "one re-ack for two duplicates in a row");
    assert!(is_ack(&tx[0], 0x00), "re-acked");
    assert_eq!(d.stats().duplicates, 2);
}

#[test]
fn duplicate_transaction_is_reacked_not_redelivered() {
    let (mut d, id) = open_device();
    let t = Instant::from_millis(5);
    let invite = [0x00, 0x05];
    let start = encode(id, 0x00, segment(&invite).unwrap().remove(0));
    d.handle_adv(t, &start);
    assert_eq!(
        drain_events(&mut d),
        vec![LinkEvent::Received(LinkId(id), invite.to_vec())]
    );
    let tx = drain_tx(&mut d, t);
    assert_eq!(tx.len(), 1);
    assert!(is_ack(&tx[0], 0x00));
    for _ in 0..3 {
        d.handle_adv(t, &start);
        assert!(drain_events(&mut d).is_empty(), "not delivered again");
        let tx = drain_tx(&mut d, t);
        assert_eq!(tx.len(), 1);
        assert!(is_ack(&tx[0], 0x00), "re-acked");
    }
    assert_eq!(d.stats().duplicates, 3);
    assert_eq!(d.stats().transactions_received, 1);
    // The next transaction number is a new PDU.
    d.handle_adv(
        t,
        &encode(id, 0x01, segment(&[0x02, 0, 0, 0, 0, 0]).unwrap().remove(0)),
    );
    assert_eq!(drain_events(&mut d).len(), 1);
}

#[test]
fn bad_fcs_is_not_acked() {
    let (mut d, id) = open_device();
    let t = Instant::from_millis(5);
    let invite = [0x00, 0x05];
    let good = TransactionStart {
        seg_n: 0,
        total_length: 2,
        fcs: fcs(&invite),
        data: invite.to_vec(),
    };
    let bad = TransactionStart {
        fcs: good.fcs ^ 0x5A,
        ..good.clone()
    };
    d.handle_adv(
        t,
        &encode(id, 0, GenericProvisioningPdu::TransactionStart(bad)),
    );
    assert!(drain_events(&mut d).is_empty());
    assert!(drain_tx(&mut d, t).is_empty(), "no ack for a bad FCS");
    assert_eq!(d.stats().fcs_errors, 1);
    // The retransmission with the right FCS goes through.
    d.handle_adv(
        t,
        &encode(id, 0, GenericProvisioningPdu::TransactionStart(good)),
    );
    assert_eq!(
        drain_events(&mut d),
        vec![LinkEvent::Received(LinkId(id), invite.to_vec())]
    );
    assert!(is_ack(&drain_tx(&mut d, t)[0], 0));
}

#[test]
fn bad_fcs_over_segments_then_good_retransmission() {
    let (mut d, id) = open_device();
    let t = Instant::from_millis(5);
    let key = pdu(3, 65);
    let segs = segment(&key).unwrap();
    let mut corrupted = segs.clone();
    if let GenericProvisioningPdu::TransactionContinuation(c) = &mut corrupted[2] {
        c.data[0] ^= 1;
    }
    for s in &corrupted {
        d.handle_adv(t, &encode(id, 0, s.clone()));
    }
    assert!(drain_events(&mut d).is_empty());
    assert!(drain_tx(&mut d, t).is_empty());
    assert_eq!(d.stats().fcs_errors, 1);
    for s in &segs {
        d.handle_adv(t, &encode(id, 0, s.clone()));
    }
    assert_eq!(
        drain_events(&mut d),
        vec![LinkEvent::Received(LinkId(id), key)]
    );
}

#[test]
fn reordered_and_duplicated_segments_reassemble() {
    let (mut d, id) = open_device();
    let t = Instant::from_millis(5);
    let key = pdu(4, 65);
    let segs: Vec<Vec<u8>> = segment(&key)
        .unwrap()
        .into_iter()
        .map(|s| encode(id, 0x00, s))
        .collect();
    assert_eq!(segs.len(), 3);
    for i in [2, 2, 1, 2, 0] {
        d.handle_adv(t, &segs[i]);
    }
    assert_eq!(
        drain_events(&mut d),
        vec![LinkEvent::Received(LinkId(id), key)]
    );
    let tx = drain_tx(&mut d, t);
    assert_eq!(tx.len(), 1);
    assert!(is_ack(&tx[0], 0x00));
    assert_eq!(d.stats().duplicates, 2);
    // A late continuation of the delivered transaction: counted and not delivered, but
    // re-acked (the peer retransmits because it missed our ack; see
    // duplicate_continuation_is_reacked).
    d.handle_adv(t, &segs[1]);
    assert!(drain_events(&mut d).is_empty());
    let tx = drain_tx(&mut d, t);
    assert_eq!(tx.len(), 1);
    assert!(is_ack(&tx[0], 0x00));
    assert_eq!(d.stats().duplicates, 3);
}

/// Drives one table alone (nothing answers): fires timers and collects transmits until
/// `until` of virtual time has passed or nothing is left.
fn run_alone(l: &mut Links, start: Instant, until: Duration) -> Vec<(Instant, PbAdvPdu)> {
    let mut out = Vec::new();
    let mut now = start;
    loop {
        out.extend(drain_tx(l, now).iter().map(|b| (now, parse(b))));
        match l.poll_timeout() {
            Some(t) if t <= start + until => {
                assert!(t >= now);
                now = t;
                l.handle_timeout(now);
            }
            _ => return out,
        }
    }
}

#[test]
fn link_open_times_out_after_60_s() {
    let mut p = provisioner(8);
    let link = p.open(Instant::ZERO, UUID).unwrap();
    let air = run_alone(&mut p, Instant::ZERO, Duration::from_secs(100));
    let events = drain_events(&mut p);
    assert_eq!(
        events,
        vec![LinkEvent::Closed(link, CloseCause::OpenTimeout)]
    );
    let opens: Vec<Instant> = air
        .iter()
        .filter(|(_, p)| matches!(p.pdu, GenericProvisioningPdu::BearerControl(BearerControl::LinkOpen { uuid }) if uuid == UUID))
        .map(|(t, _)| *t)
        .collect();
    // Every 500..=600 ms for 60 s.
    assert!(
        (100..=121).contains(&opens.len()),
        "{} Link Opens",
        opens.len()
    );
    for w in opens.windows(2) {
        let gap = w[1].saturating_duration_since(w[0]);
        assert!(
            gap >= Duration::from_millis(500) && gap <= Duration::from_millis(600),
            "{gap:?}"
        );
    }
    let closes: Vec<Instant> = air
        .iter()
        .filter(|(_, p)| {
            p.pdu
                == GenericProvisioningPdu::BearerControl(BearerControl::LinkClose {
                    reason: LinkCloseReason::TIMEOUT,
                })
        })
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(closes.len(), 3);
    assert_eq!(closes[0], Instant::from_millis(60_000));
    assert_eq!(p.len(), 0);
    assert_eq!(p.poll_timeout(), None);
    assert_eq!(
        p.send(closes[0], link, &[0]),
        Err(BearerError::UnknownLink(link))
    );
}

#[test]
fn transaction_times_out_after_30_s_without_ack() {
    let mut p = provisioner(9);
    let link = p.open(Instant::ZERO, UUID).unwrap();
    drain_tx(&mut p, Instant::ZERO);
    p.handle_adv(
        Instant::ZERO,
        &encode(
            link.0,
            0,
            GenericProvisioningPdu::BearerControl(BearerControl::LinkAck),
        ),
    );
    assert_eq!(drain_events(&mut p), vec![LinkEvent::Opened(link)]);
    let t0 = Instant::from_millis(1000);
    p.send(t0, link, &pdu(1, 65)).unwrap();
    let air = run_alone(&mut p, t0, Duration::from_secs(40));
    assert_eq!(
        drain_events(&mut p),
        vec![LinkEvent::Closed(link, CloseCause::TransactionTimeout)]
    );
    let starts = air
        .iter()
        .filter(|(_, p)| matches!(p.pdu, GenericProvisioningPdu::TransactionStart(_)))
        .count();
    assert!((50..=61).contains(&starts), "{starts} copies in 30 s");
    let closes: Vec<Instant> = air
        .iter()
        .filter(|(_, p)| {
            p.pdu
                == GenericProvisioningPdu::BearerControl(BearerControl::LinkClose {
                    reason: LinkCloseReason::TIMEOUT,
                })
        })
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(closes.len(), 3, "Link Close (Timeout) sent 3 times");
    assert_eq!(closes[0], t0 + Duration::from_secs(30));
    // Everything but the first copy of the 3 segments and the 3 Link Close copies.
    assert_eq!(p.stats().retransmitted as usize, air.len() - 3 - 3);
    assert_eq!(p.len(), 0);
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn spurious_timeouts_are_no_ops() {
    let mut p = provisioner(10);
    p.handle_timeout(Instant::ZERO);
    assert_eq!(p.poll_timeout(), None);
    let link = p.open(Instant::ZERO, UUID).unwrap();
    drain_tx(&mut p, Instant::ZERO);
    let deadline = p.poll_timeout().unwrap();
    assert!(deadline >= Instant::from_millis(500) && deadline <= Instant::from_millis(600));
    // Early calls: nothing happens.
    for ms in [0, 1, 499] {
        p.handle_timeout(Instant::from_millis(ms));
        assert!(p.poll_transmit(Instant::from_millis(ms)).is_none());
        assert!(p.poll_event().is_none());
        assert_eq!(p.poll_timeout(), Some(deadline));
    }
    // On time: one Link Open retransmission; calling again at the same instant adds nothing.
    p.handle_timeout(deadline);
    p.handle_timeout(deadline);
    assert_eq!(drain_tx(&mut p, deadline).len(), 1);
    assert!(p.poll_timeout().unwrap() > deadline);
    assert_eq!(p.stats().retransmitted, 1);
    assert!(!p.is_open(link) && p.len() == 1);
}

#[test]
fn implicit_ack_by_the_peers_next_transaction() {
    let (mut d, id) = open_device_with(implicit());
    let link = LinkId(id);
    let t = Instant::from_millis(5);
    d.send(t, link, &pdu(1, 12)).unwrap();
    let tx = drain_tx(&mut d, t);
    assert_eq!(tx.len(), 1);
    assert_eq!(parse(&tx[0]).transaction_number, 0x80);
    // The provisioner's ack is lost; its next PDU (transaction 0x00) arrives instead.
    d.handle_adv(
        t,
        &encode(id, 0x00, segment(&[0x02, 0, 0, 0, 0, 0]).unwrap().remove(0)),
    );
    assert_eq!(
        drain_events(&mut d),
        vec![
            LinkEvent::Delivered(link),
            LinkEvent::Received(link, vec![0x02, 0, 0, 0, 0, 0])
        ]
    );
    assert_eq!(d.stats().implicit_acks, 1);
    // No retransmission is pending any more: only the ack went out.
    let tx = drain_tx(&mut d, t);
    assert_eq!(tx.len(), 1);
    assert!(is_ack(&tx[0], 0x00));
    assert_eq!(d.poll_timeout(), None);
    // A late explicit ack is a duplicate.
    d.handle_adv(t, &encode(id, 0x80, GenericProvisioningPdu::TransactionAck));
    assert!(drain_events(&mut d).is_empty());
}

#[test]
fn without_implicit_ack_the_lost_ack_is_recovered_by_retransmission() {
    let (mut d, id) = open_device();
    let link = LinkId(id);
    let t = Instant::from_millis(5);
    d.send(t, link, &pdu(1, 12)).unwrap();
    let first = drain_tx(&mut d, t);
    d.handle_adv(
        t,
        &encode(id, 0x00, segment(&[0x02, 0, 0, 0, 0, 0]).unwrap().remove(0)),
    );
    assert_eq!(
        drain_events(&mut d),
        vec![LinkEvent::Received(link, vec![0x02, 0, 0, 0, 0, 0])]
    );
    drain_tx(&mut d, t);
    // Still outstanding: retransmitted at the next timer, then the explicit ack completes it.
    let due = d.poll_timeout().unwrap();
    assert!(due <= t + Duration::from_millis(600));
    d.handle_timeout(due);
    assert_eq!(drain_tx(&mut d, due), first);
    d.handle_adv(
        due,
        &encode(id, 0x80, GenericProvisioningPdu::TransactionAck),
    );
    assert_eq!(drain_events(&mut d), vec![LinkEvent::Delivered(link)]);
    assert_eq!(d.stats().implicit_acks, 0);
}

#[test]
fn sends_queue_behind_the_outstanding_transaction_and_numbers_wrap() {
    let mut air = Air::new(provisioner(11), vec![device(UUID, 12)], 0.0, 13);
    let link = air.prov.open(air.now, UUID).unwrap();
    air.run_until(Duration::from_secs(1), |a| a.prov.is_open(link));
    let n = 130;
    for i in 0..n {
        air.prov
            .send(air.now, link, &pdu(i as u8, 1 + i % 40))
            .unwrap();
    }
    air.run_idle(Duration::from_secs(1));
    let got = received(&air.device_events[0], link);
    assert_eq!(
        got,
        (0..n).map(|i| pdu(i as u8, 1 + i % 40)).collect::<Vec<_>>()
    );
    let xacts: Vec<u8> = air
        .log
        .iter()
        .filter(|(_, from_prov, p)| {
            *from_prov && matches!(p.pdu, GenericProvisioningPdu::TransactionStart(_))
        })
        .map(|(_, _, p)| p.transaction_number)
        .collect();
    assert_eq!(xacts.len(), n);
    for (i, x) in xacts.iter().enumerate() {
        assert_eq!(
            usize::from(*x),
            i % 128,
            "provisioner numbers wrap within 0x00..=0x7F"
        );
    }
}

#[test]
fn caller_errors() {
    let mut p = provisioner(14);
    let t = Instant::ZERO;
    assert_eq!(
        p.send(t, LinkId(5), &[0]),
        Err(BearerError::UnknownLink(LinkId(5)))
    );
    let link = p.open(t, UUID).unwrap();
    assert_eq!(
        p.open(t, UUID),
        Err(BearerError::AlreadyLinked { uuid: UUID })
    );
    assert!(matches!(p.send(t, link, &[]), Err(BearerError::Wire(_))));
    assert!(matches!(
        p.send(t, link, &vec![0; 1470]),
        Err(BearerError::Wire(_))
    ));
    assert!(
        p.send(t, link, &vec![0; 1469]).is_ok(),
        "queued until the link opens"
    );
    // Close of an unknown link is a no-op; close of an opening link is allowed.
    p.close(t, LinkId(5), LinkCloseReason::FAIL);
    assert!(p.poll_event().is_none());
    p.close(t, link, LinkCloseReason::FAIL);
    assert_eq!(
        p.poll_event(),
        Some(LinkEvent::Closed(
            link,
            CloseCause::Local(LinkCloseReason::FAIL)
        ))
    );
    p.close(t, link, LinkCloseReason::FAIL);
    assert!(p.poll_event().is_none(), "closing twice reports once");
    for e in [
        BearerError::NotProvisioner,
        BearerError::TooManyLinks { max: 1 },
        BearerError::UnknownLink(link),
    ] {
        assert!(!e.to_string().is_empty());
        assert!(!e.requires_disconnect());
    }
}

#[test]
fn zero_config_limits() {
    let config = PbAdvConfig {
        max_links: 0,
        link_close_repeats: 0,
        retransmit_jitter: Duration::ZERO,
        ..PbAdvConfig::default()
    };
    let mut p = Links::new(Role::Provisioner, config.clone(), rng(1));
    assert_eq!(
        p.open(Instant::ZERO, UUID),
        Err(BearerError::TooManyLinks { max: 0 })
    );
    let mut p = Links::new(
        Role::Provisioner,
        PbAdvConfig {
            max_links: 1,
            ..config
        },
        rng(1),
    );
    let link = p.open(Instant::ZERO, UUID).unwrap();
    assert_eq!(
        p.poll_timeout(),
        Some(Instant::from_millis(60_000)),
        "the retransmission timer waits for the Link Open to go on air"
    );
    assert!(p.poll_transmit(Instant::ZERO).is_some());
    assert_eq!(
        p.poll_timeout(),
        Some(Instant::from_millis(500)),
        "no jitter"
    );
    p.close(Instant::ZERO, link, LinkCloseReason::FAIL);
    assert!(
        drain_tx(&mut p, Instant::ZERO).is_empty(),
        "zero repeats: nothing sent"
    );
    assert_eq!(p.poll_timeout(), None);
}

/// A payload: either random bytes or a mutated valid PB-ADV PDU of the open link.
fn payloads() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        (
            any::<u8>(),
            0u8..4,
            proptest::collection::vec(any::<u8>(), 0..30)
        )
            .prop_map(|(xact, gpcf, mut rest)| {
                let mut out = 0x0102_0304u32.to_be_bytes().to_vec();
                out.push(xact);
                if let Some(first) = rest.first_mut() {
                    *first = (*first & !0b11) | gpcf;
                }
                out.extend(rest);
                out
            }),
    ]
}

proptest! {
    /// Garbage never panics, in either role, and the tables stay consistent.
    #[test]
    fn garbage_never_panics(inputs in proptest::collection::vec(payloads(), 1..60)) {
        let (mut d, id) = open_device();
        let mut p = provisioner(3);
        let link = p.open(Instant::ZERO, UUID).unwrap();
        let ack = encode(link.0, 0, GenericProvisioningPdu::BearerControl(BearerControl::LinkAck));
        p.handle_adv(Instant::ZERO, &ack);
        p.send(Instant::ZERO, link, &pdu(1, 40)).unwrap();
        d.send(Instant::ZERO, LinkId(id), &pdu(2, 40)).unwrap();
        let mut now = Instant::ZERO;
        for bytes in &inputs {
            now += Duration::from_millis(50);
            d.handle_adv(now, bytes);
            p.handle_adv(now, bytes);
            d.handle_timeout(now);
            p.handle_timeout(now);
            drain_tx(&mut d, now);
            drain_tx(&mut p, now);
            drain_events(&mut d);
            drain_events(&mut p);
            prop_assert!(d.len() <= 1);
            prop_assert!(p.len() <= 1);
        }
    }
}

#[test]
fn transaction_numbers_of_our_own_half_are_ignored() {
    let (mut d, id) = open_device();
    let t = Instant::from_millis(5);
    // 0x80..=0xFF are the device's own numbers: not from the provisioner.
    d.handle_adv(
        t,
        &encode(id, 0x80, segment(&[0x00, 0x05]).unwrap().remove(0)),
    );
    assert!(drain_events(&mut d).is_empty());
    assert!(drain_tx(&mut d, t).is_empty());
    assert_eq!(d.stats().ignored, 1);
    // And a provisioner ignores 0x00..=0x7F transactions.
    let mut p = provisioner(5);
    let link = p.open(t, UUID).unwrap();
    p.handle_adv(
        t,
        &encode(
            link.0,
            0,
            GenericProvisioningPdu::BearerControl(BearerControl::LinkAck),
        ),
    );
    drain_events(&mut p);
    drain_tx(&mut p, t);
    p.handle_adv(
        t,
        &encode(link.0, 0x00, segment(&[0x08]).unwrap().remove(0)),
    );
    assert!(drain_events(&mut p).is_empty());
    p.handle_adv(
        t,
        &encode(link.0, 0x80, segment(&[0x08]).unwrap().remove(0)),
    );
    assert_eq!(
        drain_events(&mut p),
        vec![LinkEvent::Received(link, vec![0x08])]
    );
}

#[test]
fn observer_reports_each_transaction_once_and_bad_ones() {
    use meshprov::bearer::pb_adv::{Direction, ObservedKind, Observer};
    let mut o = Observer::new();
    let id = 0xCAFE_0001;
    let key = pdu(9, 65);
    let segs: Vec<Vec<u8>> = segment(&key)
        .unwrap()
        .into_iter()
        .map(|s| encode(id, 0x81, s))
        .collect();
    let t = Instant::from_millis(7);
    o.handle_adv(
        t,
        &encode(
            id,
            0,
            GenericProvisioningPdu::BearerControl(BearerControl::LinkOpen { uuid: UUID }),
        ),
    );
    for i in [1, 0, 2, 0, 1, 2] {
        o.handle_adv(t, &segs[i]);
    }
    o.handle_adv(t, &encode(id, 0x81, GenericProvisioningPdu::TransactionAck));
    let bad = TransactionStart {
        seg_n: 0,
        total_length: 1,
        fcs: fcs(&[0x08]) ^ 1,
        data: vec![0x08],
    };
    o.handle_adv(
        t,
        &encode(id, 0x02, GenericProvisioningPdu::TransactionStart(bad)),
    );
    o.handle_adv(t, &[1, 2, 3]);
    let kinds: Vec<ObservedKind> = std::iter::from_fn(|| o.poll_observation())
        .map(|ob| {
            assert_eq!(ob.link, LinkId(id));
            assert_eq!(ob.at, t);
            ob.kind
        })
        .collect();
    assert_eq!(kinds.len(), 4);
    assert_eq!(kinds[0], ObservedKind::LinkOpen { uuid: UUID });
    assert_eq!(
        kinds[1],
        ObservedKind::Transaction {
            direction: Direction::DeviceToProvisioner,
            pdu: key
        }
    );
    assert_eq!(kinds[2], ObservedKind::TransactionAck);
    assert!(matches!(
        kinds[3],
        ObservedKind::BadTransaction {
            direction: Direction::ProvisionerToDevice,
            ..
        }
    ));
    let s = o.stats();
    assert_eq!(
        (
            s.duplicates,
            s.fcs_errors,
            s.ignored,
            s.transactions_received
        ),
        (3, 1, 1, 1)
    );
    assert_eq!(o.incomplete(), 0);
    o.forget(LinkId(id));
}
