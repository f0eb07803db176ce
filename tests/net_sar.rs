//! Segmentation and reassembly between two real stacks over a lossy, deterministic "air":
//! retransmission of unacknowledged segments, reassembly with duplicates, acknowledgement
//! timers, busy receivers, give-up, discard timeout, multicast, virtual addresses, control.

mod net_support;

use meshprov::crypto::network::decrypt_pdu;
use meshprov::crypto::toolbox;
use meshprov::net::network::MemorySeqSource;
use meshprov::net::transport::{
    AccessSend, Destination, KeySelect, KeyUsed, LowerPdu, SarConfig, SegmentAck, SendFailure,
    Transport, TransportConfig, TransportEvent,
};
use meshprov::time::Instant;
use net_support::*;
use std::time::Duration;

type T = Transport<MemorySeqSource>;

const PROV: u16 = 0x0001;
const NODE: u16 = 0x0100;

fn pair() -> (T, T) {
    let mut a = stack(IV, &[PROV]);
    let mut b = stack(IV, &[NODE]);
    a.add_dev_key(NODE, dev_key(NODE));
    b.add_dev_key(NODE, dev_key(NODE));
    a.add_app_key(0, 0, app_key());
    b.add_app_key(0, 0, app_key());
    (a, b)
}

/// Runs both stacks until nothing is pending or `until`. `drop(from_a, n)` decides whether the
/// n-th PDU sent by that side is lost. Returns the events of each side and the PDU counts.
fn run(
    a: &mut T,
    b: &mut T,
    until: Instant,
    mut drop: impl FnMut(bool, usize) -> bool,
) -> (Vec<TransportEvent>, Vec<TransportEvent>, usize, usize) {
    let mut now = Instant::ZERO;
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    let (mut na, mut nb) = (0, 0);
    loop {
        let mut moved = false;
        while let Some(p) = a.poll_transmit() {
            moved = true;
            na += 1;
            if !drop(true, na) {
                let _ = b.handle_network_pdu(now, &p.pdu);
            }
        }
        while let Some(p) = b.poll_transmit() {
            moved = true;
            nb += 1;
            if !drop(false, nb) {
                let _ = a.handle_network_pdu(now, &p.pdu);
            }
        }
        ea.extend(std::iter::from_fn(|| a.poll_event()));
        eb.extend(std::iter::from_fn(|| b.poll_event()));
        if moved {
            continue;
        }
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(t) if t <= until => {
                now = now.max(t);
                a.handle_timeout(now);
                b.handle_timeout(now);
            }
            _ => break,
        }
    }
    (ea, eb, na, nb)
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

fn access_to_node(pdu: Vec<u8>) -> AccessSend {
    AccessSend::new(0, PROV, Destination::Address(NODE), KeySelect::Dev, pdu)
}

fn received(events: &[TransportEvent]) -> Vec<&meshprov::net::transport::ReceivedAccess> {
    events
        .iter()
        .filter_map(|e| match e {
            TransportEvent::Access(m) => Some(m),
            _ => None,
        })
        .collect()
}

#[test]
fn lossless_segmented_message_is_delivered_and_acknowledged() {
    let (mut a, mut b) = pair();
    let id = a
        .send_access(Instant::ZERO, access_to_node(payload(100)))
        .unwrap();
    let (ea, eb, na, nb) = run(&mut a, &mut b, Instant::from_millis(60_000), |_, _| false);
    assert_eq!(
        na, 9,
        "104 octets of upper PDU in 9 segments, each sent once"
    );
    assert_eq!(nb, 1, "one acknowledgement");
    let got = received(&eb);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].access_pdu, payload(100));
    assert_eq!(got[0].key, KeyUsed::Dev(NODE));
    assert_eq!(
        ea,
        vec![TransportEvent::Sent {
            id,
            acknowledged: true
        }]
    );
    assert_eq!(b.reassembling(), 0);
}

#[test]
fn lost_segments_are_retransmitted_and_reassembly_completes() {
    let (mut a, mut b) = pair();
    let id = a
        .send_access(Instant::ZERO, access_to_node(payload(100)))
        .unwrap();
    // Lose segments 2 and 5 of the first round, the first acknowledgement, and one
    // retransmission.
    let (ea, eb, na, _) = run(&mut a, &mut b, Instant::from_millis(60_000), |from_a, n| {
        if from_a {
            [3, 6, 10].contains(&n)
        } else {
            n == 1
        }
    });
    assert!(na > 9, "segments were retransmitted ({na} PDUs)");
    let got = received(&eb);
    assert_eq!(got.len(), 1, "delivered exactly once");
    assert_eq!(got[0].access_pdu, payload(100));
    assert_eq!(
        ea,
        vec![TransportEvent::Sent {
            id,
            acknowledged: true
        }]
    );
}

#[test]
fn heavy_deterministic_loss_still_completes() {
    let (mut a, mut b) = pair();
    a.send_access(Instant::ZERO, access_to_node(payload(300)))
        .unwrap();
    // Every third PDU in each direction is lost.
    let (ea, eb, _, _) = run(&mut a, &mut b, Instant::from_millis(60_000), |_, n| {
        n % 3 == 0
    });
    assert_eq!(received(&eb).len(), 1);
    assert_eq!(received(&eb)[0].access_pdu, payload(300));
    assert!(matches!(
        ea.as_slice(),
        [TransportEvent::Sent {
            acknowledged: true,
            ..
        }]
    ));
}

#[test]
fn duplicates_are_ignored_and_a_completed_message_is_acknowledged_again() {
    let (mut a, mut b) = pair();
    a.send_access(Instant::ZERO, access_to_node(payload(30)))
        .unwrap();
    let pdus: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
    assert_eq!(pdus.len(), 3);
    // Out of order: the lower SEQ of segment 0 after segment 2 is not a replay.
    b.handle_network_pdu(Instant::ZERO, &pdus[2].pdu).unwrap();
    b.handle_network_pdu(Instant::ZERO, &pdus[0].pdu).unwrap();
    assert_eq!(b.reassembling(), 1);
    // The sender's timer fires: it resends the unacknowledged segments with new SEQs.
    let t = a.poll_timeout().unwrap();
    a.handle_timeout(t);
    let again: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
    assert_eq!(again.len(), 3, "nothing was acknowledged yet");
    for p in &again {
        let _ = b.handle_network_pdu(t, &p.pdu);
    }
    let events: Vec<_> = std::iter::from_fn(|| b.poll_event()).collect();
    assert_eq!(
        received(&events).len(),
        1,
        "delivered once despite duplicates"
    );
    let acks: Vec<_> = std::iter::from_fn(|| b.poll_transmit()).collect();
    assert!(!acks.is_empty());
    // The acknowledgement is lost; a further retransmission of the completed message gets a
    // new acknowledgement and no second delivery.
    let t2 = a.poll_timeout().unwrap();
    a.handle_timeout(t2);
    let third: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
    for p in &third {
        let _ = b.handle_network_pdu(t2, &p.pdu);
    }
    assert!(b.poll_event().is_none());
    let reacks: Vec<_> = std::iter::from_fn(|| b.poll_transmit()).collect();
    assert_eq!(
        reacks.len(),
        1,
        "one ack for the whole retransmitted round (MshPRT v1.1 §3.5.3.4)"
    );
    a.handle_network_pdu(t2, &reacks[0].pdu).unwrap();
    assert!(matches!(
        a.poll_event(),
        Some(TransportEvent::Sent {
            acknowledged: true,
            ..
        })
    ));
}

/// MshPRT v1.1 §3.5.3.4, Most Recent SeqAuth: segments of a message already received in full
/// are acknowledged again, but not more than once per SeqAuth in `acknowledgment delay
/// increment × segment reception interval` (2.5 × 60 ms = 150 ms). Acknowledging every copy
/// flooded the provisioner's own advertising queue in the 1,000-device soak: a node's
/// retransmitted round of three segments arrives as nine copies (Network Transmit count 3),
/// and each got its own acknowledgement — 19,234 acks for about a thousand Composition Data
/// Status messages — until the queue held ten seconds of PDUs and a node's configuration
/// requests went unanswered six attempts in a row.
#[test]
fn a_completed_message_is_acknowledged_again_at_most_once_per_interval() {
    let (mut a, mut b) = pair();
    let id = a
        .send_access(Instant::ZERO, access_to_node(payload(30)))
        .unwrap();
    let first: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
    assert_eq!(first.len(), 3, "34 octets of upper PDU in 3 segments");
    for p in &first {
        b.handle_network_pdu(Instant::ZERO, &p.pdu).unwrap();
    }
    assert_eq!(
        received(&std::iter::from_fn(|| b.poll_event()).collect::<Vec<_>>()).len(),
        1
    );
    let acks: Vec<_> = std::iter::from_fn(|| b.poll_transmit()).collect();
    assert_eq!(acks.len(), 1, "the completion is acknowledged at once");
    // Copies of the first round still arriving within the interval get no second ack.
    b.handle_network_pdu(Instant::from_millis(40), &first[2].pdu)
        .unwrap();
    assert!(b.poll_transmit().is_none(), "within 150 ms of the last ack");
    // The acknowledgement is lost: the sender retransmits all three segments, and the bearer
    // sends each PDU three times (Network Transmit): nine copies 15 ms apart.
    let mut reacks = 0;
    for round in 0..2 {
        let t = a.poll_timeout().expect("retransmission timer");
        a.handle_timeout(t);
        let again: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
        assert_eq!(again.len(), 3, "round {round}: every segment again");
        let mut at = t;
        for p in &again {
            for _copy in 0..3 {
                let _ = b.handle_network_pdu(at, &p.pdu);
                at += Duration::from_millis(15);
            }
        }
        assert!(b.poll_event().is_none(), "never delivered twice");
        let sent: Vec<_> = std::iter::from_fn(|| b.poll_transmit()).collect();
        assert_eq!(
            sent.len(),
            1,
            "round {round}: one acknowledgement for nine copies in 135 ms"
        );
        reacks += sent.len();
        if round == 1 {
            a.handle_network_pdu(at, &sent[0].pdu).unwrap();
        }
    }
    assert_eq!(reacks, 2);
    assert_eq!(
        std::iter::from_fn(|| a.poll_event()).collect::<Vec<_>>(),
        vec![TransportEvent::Sent {
            id,
            acknowledged: true
        }]
    );
}

/// The Segment Acknowledgment in a PDU `to` sent (its BlockAck).
fn block_ack_of(pdu: &[u8]) -> u32 {
    let d = decrypt_pdu(&toolbox::k2(&net_key(), &[0]), IV.index, pdu).expect("decrypts");
    match LowerPdu::parse(true, &d.transport_pdu).expect("lower transport PDU") {
        LowerPdu::UnsegmentedControl { opcode: 0, params } => {
            SegmentAck::parse(&params).expect("an ack").block_ack
        }
        other => panic!("not a Segment Acknowledgment: {other:?}"),
    }
}

/// MshPRT v1.1 §3.5.3.3.1/§3.5.3.3.3: the SAR Unicast Retransmissions timer starts "when the
/// last segment marked as unacknowledged is transmitted". A round still waiting for the bearer
/// (a radio busy with other PDUs) is not retransmitted on top of itself. In the 1,000-device
/// soak the timer ran from the moment a round was queued behind 8–16 s of PDUs, so every
/// segmented request was queued three times before its first copy went on air.
#[test]
fn the_retransmission_timer_starts_when_the_round_has_been_taken() {
    let (mut a, _b) = pair();
    a.send_access(Instant::ZERO, access_to_node(payload(30)))
        .unwrap();
    assert_eq!(a.transmits_waiting(), 3);
    assert_eq!(a.poll_timeout(), None, "no timer while the round waits");
    // The radio is busy for two seconds: nothing is queued again meanwhile.
    a.handle_timeout(Instant::from_millis(2_000));
    assert_eq!(a.transmits_waiting(), 3, "the round was not queued again");
    let taken = Instant::from_millis(2_000);
    for k in 0..3 {
        assert!(a.poll_transmit_at(taken).is_some(), "segment {k}");
        let expect = (k == 2).then(|| taken + Duration::from_millis(200 + 50 * 7));
        assert_eq!(a.poll_timeout(), expect, "after segment {k}");
    }
    a.handle_timeout(taken + Duration::from_millis(549));
    assert_eq!(a.transmits_waiting(), 0);
    a.handle_timeout(taken + Duration::from_millis(550));
    assert_eq!(
        a.transmits_waiting(),
        3,
        "the second round, 550 ms after the first left"
    );
}

/// A segment that the receiver acknowledges while its retransmission still waits for the
/// bearer is withdrawn (and with the whole message acknowledged, every waiting segment).
#[test]
fn segments_acknowledged_while_they_wait_are_withdrawn() {
    let (mut a, mut b) = pair();
    let id = a
        .send_access(Instant::ZERO, access_to_node(payload(30)))
        .unwrap();
    let first: Vec<_> = std::iter::from_fn(|| a.poll_transmit_at(Instant::ZERO)).collect();
    // Segment 2 is late (another path); the receiver acknowledges 0 and 1.
    b.handle_network_pdu(Instant::ZERO, &first[0].pdu).unwrap();
    b.handle_network_pdu(Instant::ZERO, &first[1].pdu).unwrap();
    let t = b.poll_timeout().expect("ack timer");
    b.handle_timeout(t);
    let ack = b.poll_transmit_at(t).expect("ack");
    assert_eq!(block_ack_of(&ack.pdu), 0b011);
    // The sender's timer fires first: segment 2 is queued again (its ack is late).
    let t = a.poll_timeout().expect("retransmission timer");
    a.handle_timeout(t);
    assert_eq!(
        a.transmits_waiting(),
        3,
        "nothing acknowledged yet: all three"
    );
    a.handle_network_pdu(t, &ack.pdu).unwrap();
    assert_eq!(a.transmits_waiting(), 1, "segments 0 and 1 withdrawn");
    assert_eq!(a.poll_timeout(), None, "segment 2 still waits: no timer");
    // The late copy of segment 2 completes the message; the ack finishes the sender, and the
    // waiting copy of segment 2 is never sent.
    b.handle_network_pdu(t, &first[2].pdu).unwrap();
    let done = b.poll_transmit_at(t).expect("the completion ack");
    assert_eq!(block_ack_of(&done.pdu), 0b111);
    a.handle_network_pdu(t, &done.pdu).unwrap();
    assert_eq!(a.transmits_waiting(), 0);
    assert!(a.poll_transmit_at(t).is_none());
    assert_eq!(
        std::iter::from_fn(|| a.poll_event()).collect::<Vec<_>>(),
        vec![TransportEvent::Sent {
            id,
            acknowledged: true
        }]
    );
}

/// An acknowledgement that withdraws the rest of a round still being taken ends the round: the
/// retransmission timer starts (§3.5.3.3.1), and the segments of this round already taken are
/// not queued again at once (the progress resend of §3.5.3.3.2 is for a running timer only).
#[test]
fn an_acknowledgement_that_completes_a_round_being_taken_starts_the_timer() {
    let (mut a, mut b) = pair();
    a.send_access(Instant::ZERO, access_to_node(payload(30)))
        .unwrap();
    let first: Vec<_> = std::iter::from_fn(|| a.poll_transmit_at(Instant::ZERO)).collect();
    assert_eq!(first.len(), 3);
    // Segment 1 is lost; the receiver acknowledges 0 and 2, and its ack is late.
    b.handle_network_pdu(Instant::ZERO, &first[0].pdu).unwrap();
    b.handle_network_pdu(Instant::ZERO, &first[2].pdu).unwrap();
    let t = b.poll_timeout().expect("ack timer");
    b.handle_timeout(t);
    let ack = b.poll_transmit_at(t).expect("ack");
    assert_eq!(block_ack_of(&ack.pdu), 0b101);
    // The sender's timer fires: all three queued again; segments 0 and 1 are taken.
    let t = a.poll_timeout().expect("retransmission timer");
    a.handle_timeout(t);
    assert_eq!(a.transmits_waiting(), 3);
    assert!(a.poll_transmit_at(t).is_some());
    assert!(a.poll_transmit_at(t).is_some());
    assert_eq!(a.transmits_waiting(), 1, "segment 2 waits");
    assert_eq!(a.poll_timeout(), None, "the round is not out: no timer");
    // The ack withdraws segment 2: the round is out, segment 1 has just been taken.
    a.handle_network_pdu(t, &ack.pdu).unwrap();
    assert_eq!(
        a.transmits_waiting(),
        0,
        "segment 1 is not queued again at once"
    );
    let next = a.poll_timeout().expect("the retransmission timer runs");
    assert!(next > t, "{next:?} after {t:?}");
    // When it fires, the one missing segment goes again.
    a.handle_timeout(next);
    assert_eq!(a.transmits_waiting(), 1, "segment 1 again");
}

/// A receiver whose Segment Acknowledgment still waits for the bearer when it acknowledges
/// the same message again sends only the newer one, in the older one's place.
#[test]
fn a_waiting_acknowledgement_is_replaced_by_a_newer_one() {
    let (mut a, mut b) = pair();
    a.send_access(Instant::ZERO, access_to_node(payload(30)))
        .unwrap();
    let first: Vec<_> = std::iter::from_fn(|| a.poll_transmit_at(Instant::ZERO)).collect();
    b.handle_network_pdu(Instant::ZERO, &first[0].pdu).unwrap();
    let t = b.poll_timeout().expect("ack timer");
    b.handle_timeout(t);
    assert_eq!(b.transmits_waiting(), 1);
    b.handle_network_pdu(t, &first[1].pdu).unwrap();
    let t = b.poll_timeout().expect("ack timer");
    b.handle_timeout(t);
    assert_eq!(b.transmits_waiting(), 1, "replaced, not added");
    let ack = b.poll_transmit_at(t).expect("ack");
    assert_eq!(block_ack_of(&ack.pdu), 0b011, "the newer acknowledgement");
    b.handle_network_pdu(t, &first[2].pdu).unwrap();
    assert_eq!(b.transmits_waiting(), 1, "the completion ack");
    assert_eq!(block_ack_of(&b.poll_transmit_at(t).unwrap().pdu), 0b111);
}

#[test]
fn the_sender_gives_up_when_nothing_is_acknowledged() {
    let (mut a, mut b) = pair();
    let id = a
        .send_access(Instant::ZERO, access_to_node(payload(20)))
        .unwrap();
    let (ea, eb, na, _) = run(&mut a, &mut b, Instant::from_millis(60_000), |from_a, _| {
        from_a
    });
    assert!(eb.is_empty());
    // Initial round + 2 rounds without progress (2 segments each).
    assert_eq!(na, 6);
    assert_eq!(
        ea,
        vec![TransportEvent::Failed {
            id,
            reason: SendFailure::Timeout
        }]
    );
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn a_busy_receiver_cancels_the_message() {
    let mut cfg = TransportConfig::default();
    cfg.sar.max_rx_sessions = 0;
    let mut a = stack(IV, &[PROV]);
    let mut b = stack_with(IV, &[NODE], cfg);
    a.add_dev_key(NODE, dev_key(NODE));
    b.add_dev_key(NODE, dev_key(NODE));
    let id = a
        .send_access(Instant::ZERO, access_to_node(payload(20)))
        .unwrap();
    let (ea, eb, _, nb) = run(&mut a, &mut b, Instant::from_millis(60_000), |_, _| false);
    assert!(eb.is_empty());
    assert!(nb >= 1);
    assert_eq!(
        ea,
        vec![TransportEvent::Failed {
            id,
            reason: SendFailure::ReceiverBusy
        }]
    );
}

#[test]
fn an_incomplete_message_is_discarded_after_the_timeout() {
    let (mut a, mut b) = pair();
    a.send_access(Instant::ZERO, access_to_node(payload(30)))
        .unwrap();
    let first = a.poll_transmit().unwrap();
    b.handle_network_pdu(Instant::ZERO, &first.pdu).unwrap();
    assert_eq!(b.reassembling(), 1);
    let mut now = Instant::ZERO;
    while let Some(t) = b.poll_timeout() {
        now = t;
        b.handle_timeout(t);
        let _ = b.poll_transmit();
    }
    assert_eq!(b.reassembling(), 0);
    assert_eq!(now, Instant::ZERO + SarConfig::default().discard_timeout);
    assert!(b.poll_event().is_none());
}

#[test]
fn segmented_multicast_is_sent_without_acks() {
    let (mut a, mut b) = pair();
    b.network_mut().subscribe(0xc001);
    let mut m = AccessSend::new(
        0,
        PROV,
        Destination::Address(0xc001),
        KeySelect::App(0),
        payload(40),
    );
    m.big_mic = true;
    let id = a.send_access(Instant::ZERO, m).unwrap();
    let (ea, eb, na, nb) = run(&mut a, &mut b, Instant::from_millis(60_000), |_, _| false);
    assert_eq!(nb, 0, "no acknowledgement to a group");
    assert_eq!(na, 4 * 3, "4 segments, initial round and 2 retransmissions");
    let got = received(&eb);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].key, KeyUsed::App(0));
    assert_eq!(
        ea,
        vec![TransportEvent::Sent {
            id,
            acknowledged: false
        }]
    );
}

#[test]
fn virtual_addresses_use_the_label_uuid() {
    let label = [
        0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x12, 0x34, 0x12, 0x34, 0x12, 0x34, 0x56, 0x78, 0xab,
        0xcd,
    ];
    assert_eq!(
        Destination::Virtual(label).address(),
        0xadd5,
        "reference §8.2"
    );
    for len in [5, 60] {
        let (mut a, mut b) = pair();
        b.subscribe_label(label);
        let m = AccessSend::new(
            0,
            PROV,
            Destination::Virtual(label),
            KeySelect::App(0),
            payload(len),
        );
        a.send_access(Instant::ZERO, m).unwrap();
        let (_, eb, _, _) = run(&mut a, &mut b, Instant::from_millis(60_000), |_, _| false);
        let got = received(&eb);
        assert_eq!(got.len(), 1, "payload {len}");
        assert_eq!(got[0].label, Some(label));
        assert_eq!(got[0].dst, 0xadd5);
        assert_eq!(got[0].access_pdu, payload(len));
    }
    // Without the label the message cannot be opened.
    let (mut a, mut b) = pair();
    b.network_mut().subscribe(0xadd5);
    let m = AccessSend::new(
        0,
        PROV,
        Destination::Virtual(label),
        KeySelect::App(0),
        payload(5),
    );
    a.send_access(Instant::ZERO, m).unwrap();
    let (_, eb, _, _) = run(&mut a, &mut b, Instant::from_millis(60_000), |_, _| false);
    assert!(received(&eb).is_empty());
}

#[test]
fn app_key_aid_matching_picks_the_right_key() {
    let (mut a, mut b) = pair();
    b.add_app_key(1, 0, meshprov::crypto::AppKey::from_bytes([0x11; 16]));
    a.add_app_key(1, 0, meshprov::crypto::AppKey::from_bytes([0x11; 16]));
    let m = AccessSend::new(
        0,
        PROV,
        Destination::Address(NODE),
        KeySelect::App(1),
        payload(8),
    );
    a.send_access(Instant::ZERO, m).unwrap();
    let (_, eb, _, _) = run(&mut a, &mut b, Instant::from_millis(1000), |_, _| false);
    assert_eq!(received(&eb)[0].key, KeyUsed::App(1));
    // A receiver without the key drops it.
    let (mut a, mut b) = pair();
    a.add_app_key(1, 0, meshprov::crypto::AppKey::from_bytes([0x11; 16]));
    let m = AccessSend::new(
        0,
        PROV,
        Destination::Address(NODE),
        KeySelect::App(1),
        payload(8),
    );
    a.send_access(Instant::ZERO, m).unwrap();
    let (_, eb, _, _) = run(&mut a, &mut b, Instant::from_millis(1000), |_, _| false);
    assert!(received(&eb).is_empty());
}

#[test]
fn device_key_of_the_source_opens_replies() {
    // The node answers with its own device key; the provisioner finds it by source address.
    let (mut a, mut b) = pair();
    let m = AccessSend::new(
        0,
        NODE,
        Destination::Address(PROV),
        KeySelect::Dev,
        payload(30),
    );
    b.send_access(Instant::ZERO, m).unwrap();
    let (ea, _, _, _) = run(&mut a, &mut b, Instant::from_millis(60_000), |_, _| false);
    let got = received(&ea);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].key, KeyUsed::Dev(NODE));
}

#[test]
fn segmented_control_messages_are_reassembled() {
    let (mut a, mut b) = pair();
    let params: Vec<u8> = (0..20).collect();
    a.send_control(
        Instant::ZERO,
        control(0, PROV, NODE, None, 0x0a, params.clone()),
    )
    .unwrap();
    let (ea, eb, na, _) = run(&mut a, &mut b, Instant::from_millis(60_000), |_, _| false);
    assert_eq!(na, 3, "20 octets in 8-octet segments");
    match eb.as_slice() {
        [TransportEvent::Control(c)] => {
            assert_eq!((c.opcode, c.src, c.dst), (0x0a, PROV, NODE));
            assert_eq!(c.params, params);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ea.as_slice(),
        [TransportEvent::Sent {
            acknowledged: true,
            ..
        }]
    ));
}

#[test]
fn messages_to_one_destination_are_sent_one_after_the_other() {
    let (mut a, mut b) = pair();
    let first = a
        .send_access(Instant::ZERO, access_to_node(payload(30)))
        .unwrap();
    let second = a
        .send_access(Instant::ZERO, access_to_node(payload(31)))
        .unwrap();
    assert_eq!(a.sending(), 1, "the second waits");
    let (ea, eb, _, _) = run(&mut a, &mut b, Instant::from_millis(60_000), |_, _| false);
    let got: Vec<_> = received(&eb).iter().map(|m| m.access_pdu.len()).collect();
    assert_eq!(got, vec![30, 31]);
    assert_eq!(
        ea,
        vec![
            TransportEvent::Sent {
                id: first,
                acknowledged: true
            },
            TransportEvent::Sent {
                id: second,
                acknowledged: true
            }
        ]
    );
}

#[test]
fn send_rejects_bad_arguments() {
    let (mut a, _) = pair();
    let now = Instant::ZERO;
    assert!(a.send_access(now, access_to_node(vec![])).is_err());
    assert!(a.send_access(now, access_to_node(payload(381))).is_err());
    assert!(a.send_access(now, access_to_node(payload(380))).is_ok());
    let mut m = access_to_node(payload(4));
    m.ttl = Some(1);
    assert!(a.send_access(now, m).is_err(), "TTL 1 is prohibited");
    let mut m = access_to_node(payload(4));
    m.net_key_index = 5;
    assert!(a.send_access(now, m).is_err());
    let m = AccessSend::new(
        0,
        0xc000,
        Destination::Address(NODE),
        KeySelect::Dev,
        payload(4),
    );
    assert!(a.send_access(now, m).is_err(), "group source");
    let m = AccessSend::new(
        0,
        PROV,
        Destination::Address(NODE),
        KeySelect::App(9),
        payload(4),
    );
    assert!(a.send_access(now, m).is_err(), "unknown AppKey");
    let m = AccessSend::new(
        0,
        PROV,
        Destination::Address(0x0200),
        KeySelect::Dev,
        payload(4),
    );
    assert!(a.send_access(now, m).is_err(), "no device key");
    assert!(
        a.send_control(now, control(0, PROV, NODE, None, 0x00, vec![]))
            .is_err()
    );
    assert!(
        a.send_control(now, control(0, PROV, NODE, None, 0x0a, vec![0; 257]))
            .is_err()
    );
}

#[test]
fn an_iv_index_change_aborts_a_message_in_flight() {
    let (mut a, _) = pair();
    let id = a
        .send_access(Instant::ZERO, access_to_node(payload(30)))
        .unwrap();
    while a.poll_transmit().is_some() {}
    a.network_mut()
        .set_iv_index(meshprov::net::network::IvIndex {
            index: IV.index + 1,
            update: false,
        });
    let t = a.poll_timeout().unwrap();
    a.handle_timeout(t);
    assert!(
        a.poll_transmit().is_none(),
        "no segment under another IV Index"
    );
    assert_eq!(
        a.poll_event(),
        Some(TransportEvent::Failed {
            id,
            reason: SendFailure::Aborted
        })
    );
}
