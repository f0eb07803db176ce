//! Mesh Protocol sample data §8.3 (messages #1, #6 and #7; reference §8.4) through the real
//! network, lower and upper transport layers, in both directions, byte for byte.

mod net_support;

use meshprov::crypto::network::decrypt_pdu;
use meshprov::crypto::{DevKey, toolbox};
use meshprov::net::config::ConfigMessage;
use meshprov::net::network::{IvIndex, MemorySeqSource, NetworkLayer};
use meshprov::net::transport::{
    AccessSend, Destination, KeySelect, KeyUsed, LowerPdu, SegmentAck, TransportEvent,
};
use meshprov::time::Instant;
use net_support::*;

/// Decrypts one of our transmits with the sample NetKey to look at the lower transport PDU.
fn open(iv: u32, pdu: &[u8]) -> meshprov::crypto::network::DecryptedNetworkPdu {
    decrypt_pdu(&toolbox::k2(&net_key(), &[0]), iv, pdu).expect("decrypts")
}

#[test]
fn message_1_control_sent_byte_exact() {
    let c = case("message_1");
    let src = hx(&c["src"]) as u16;
    let mut t = stack(IV, &[src]);
    t.network_mut()
        .seq_source_mut()
        .set_next(src, hx(&c["seq"]));
    let tp = h(&c["transport_pdu"]);
    t.send_control(
        Instant::ZERO,
        control(
            0,
            src,
            hx(&c["dst"]) as u16,
            Some(c["ttl"].as_u64().unwrap() as u8),
            tp[0] & 0x7f,
            tp[1..].to_vec(),
        ),
    )
    .expect("send");
    let tx = t.poll_transmit().expect("one PDU");
    assert_eq!(hex::encode(&tx.pdu), c["network_pdu"].as_str().unwrap());
    assert!(t.poll_transmit().is_none());
    assert!(matches!(
        t.poll_event(),
        Some(TransportEvent::Sent {
            acknowledged: false,
            ..
        })
    ));
}

#[test]
fn message_1_control_received() {
    let c = case("message_1");
    let mut t = stack(IV, &[0x0100]);
    t.network_mut().subscribe(0xfffd);
    t.handle_network_pdu(Instant::ZERO, &h(&c["network_pdu"]))
        .expect("accepted");
    let tp = h(&c["transport_pdu"]);
    match t.poll_event() {
        Some(TransportEvent::Control(m)) => {
            assert_eq!(m.src, 0x1201);
            assert_eq!(m.dst, 0xfffd);
            assert_eq!(m.ttl, 0);
            assert_eq!(m.opcode, tp[0]);
            assert_eq!(m.params, tp[1..]);
        }
        other => panic!("expected a control message, got {other:?}"),
    }
}

/// The IV Update in Progress state sends with IV Index − 1: the same sample bytes.
#[test]
fn message_1_sent_during_iv_update_uses_previous_iv_index() {
    let c = case("message_1");
    let src = hx(&c["src"]) as u16;
    let mut t = stack(
        IvIndex {
            index: 0x1234_5679,
            update: true,
        },
        &[src],
    );
    t.network_mut().seq_source_mut().set_next(src, 1);
    let tp = h(&c["transport_pdu"]);
    t.send_control(
        Instant::ZERO,
        control(0, src, 0xfffd, Some(0), 3, tp[1..].to_vec()),
    )
    .unwrap();
    assert_eq!(
        hex::encode(t.poll_transmit().unwrap().pdu),
        c["network_pdu"].as_str().unwrap()
    );
}

fn message_6_sender() -> (Transport6, serde_json::Value) {
    let c = case("message_6");
    let src = hx(&c["src"]) as u16;
    let dst = hx(&c["dst"]) as u16;
    let mut t = stack(IV, &[src]);
    t.network_mut()
        .seq_source_mut()
        .set_next(src, hx(&c["seq"]));
    t.add_dev_key(
        dst,
        DevKey::from_hex(c["dev_key"].as_str().unwrap()).unwrap(),
    );
    (t, c)
}

type Transport6 = meshprov::net::transport::Transport<meshprov::net::network::MemorySeqSource>;

fn message_6_receiver(c: &serde_json::Value) -> Transport6 {
    let dst = hx(&c["dst"]) as u16;
    let mut t = stack(IV, &[dst]);
    t.add_dev_key(
        dst,
        DevKey::from_hex(c["dev_key"].as_str().unwrap()).unwrap(),
    );
    t
}

fn send_message_6(t: &mut Transport6, c: &serde_json::Value) {
    let mut m = AccessSend::new(
        0,
        hx(&c["src"]) as u16,
        Destination::Address(hx(&c["dst"]) as u16),
        KeySelect::Dev,
        h(&c["access_pdu"]),
    );
    m.ttl = Some(c["ttl"].as_u64().unwrap() as u8);
    t.send_access(Instant::ZERO, m).expect("send");
}

#[test]
fn message_6_sent_byte_exact_through_segmentation() {
    let (mut t, c) = message_6_sender();
    // The access PDU is the Config AppKey Add of the sample: our emitter builds it too.
    let msg = ConfigMessage::parse_pdu(&h(&c["access_pdu"])).expect("AppKey Add");
    match &msg {
        ConfigMessage::AppKeyAdd {
            net_key_index,
            app_key_index,
            key,
        } => {
            assert_eq!((*net_key_index, *app_key_index), (0x456, 0x123));
            assert_eq!(
                hex::encode(key.expose_secret()),
                "63964771734fbd76e3b40519d1d94a48"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(msg.to_pdu(), h(&c["access_pdu"]));

    send_message_6(&mut t, &c);
    let pdus: Vec<_> = std::iter::from_fn(|| t.poll_transmit()).collect();
    let want: Vec<String> = c["network_pdus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let got: Vec<String> = pdus.iter().map(|p| hex::encode(&p.pdu)).collect();
    assert_eq!(got, want);
    // And the layers underneath: SEQs, lower transport PDUs, upper transport PDU.
    let lowers: Vec<_> = pdus
        .iter()
        .map(|p| open(hx(&c["iv_index"]), &p.pdu))
        .collect();
    for (i, d) in lowers.iter().enumerate() {
        assert_eq!(d.header.seq, hx(&c["seqs"][i]));
        assert_eq!(d.header.ttl, 4);
        assert_eq!(d.transport_pdu, h(&c["lower_transport_pdus"][i]));
    }
    let mut upper = Vec::new();
    for d in &lowers {
        match LowerPdu::parse(false, &d.transport_pdu).unwrap() {
            LowerPdu::SegmentedAccess {
                akf,
                aid,
                szmic,
                seg,
                segment,
            } => {
                assert!(!akf && aid == 0 && !szmic);
                assert_eq!((seg.seq_zero, seg.seg_n), (0x09ab, 1));
                upper.extend(segment);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(upper, h(&c["upper_transport_pdu"]));
    // A unicast segmented message waits for its acknowledgement.
    assert_eq!(t.sending(), 1);
    assert!(t.poll_event().is_none());
}

#[test]
fn message_6_received_reassembled_decrypted_and_acknowledged() {
    let c = case("message_6");
    let mut rx = message_6_receiver(&c);
    let pdus: Vec<Vec<u8>> = c["network_pdus"]
        .as_array()
        .unwrap()
        .iter()
        .map(h)
        .collect();
    rx.handle_network_pdu(Instant::ZERO, &pdus[0]).unwrap();
    assert!(rx.poll_event().is_none(), "one segment is not a message");
    rx.handle_network_pdu(Instant::from_millis(10), &pdus[1])
        .unwrap();
    match rx.poll_event() {
        Some(TransportEvent::Access(m)) => {
            assert_eq!(m.access_pdu, h(&c["access_pdu"]));
            assert_eq!((m.src, m.dst), (0x0003, 0x1201));
            assert_eq!(m.key, KeyUsed::Dev(0x1201));
            assert_eq!(m.seq_auth, 0x3129ab);
            assert_eq!(m.iv_index, 0x1234_5678);
            assert_eq!(m.label, None);
        }
        other => panic!("expected the access message, got {other:?}"),
    }
    // The complete message is acknowledged at once: OBO 0, SeqZero 0x09ab, both segments.
    let ack = rx.poll_transmit().expect("segment acknowledgment");
    let d = open(0x1234_5678, &ack.pdu);
    assert!(d.header.ctl);
    assert_eq!((d.header.src, d.header.dst), (0x1201, 0x0003));
    assert_eq!(hex::encode(&d.transport_pdu), "0026ac00000003");
}

/// Message #7 is the acknowledgement of message #6 sent by a friend for its Low Power node
/// (OBO = 1) after segment 1 only. Our node acknowledges the same state with OBO = 0: the
/// same octets but for the OBO bit.
#[test]
fn message_7_segment_ack_from_the_real_receiver() {
    let c = case("message_6");
    let mut rx = message_6_receiver(&c);
    let pdus: Vec<Vec<u8>> = c["network_pdus"]
        .as_array()
        .unwrap()
        .iter()
        .map(h)
        .collect();
    rx.handle_network_pdu(Instant::ZERO, &pdus[1]).unwrap();
    assert!(rx.poll_transmit().is_none(), "the ack waits for its timer");
    let at = rx.poll_timeout().expect("ack timer");
    assert!(at <= Instant::from_millis(150), "ack delay {at:?}");
    rx.handle_timeout(at);
    let ack = rx.poll_transmit().expect("segment acknowledgment");
    let d = open(0x1234_5678, &ack.pdu);
    let sample = hex::decode("00a6ac00000002").unwrap();
    let ours = SegmentAck::parse(&d.transport_pdu[1..]).unwrap();
    let theirs = SegmentAck::parse(&sample[1..]).unwrap();
    assert_eq!(d.transport_pdu[0], sample[0], "control opcode 0x00");
    assert_eq!(ours.seq_zero, theirs.seq_zero);
    assert_eq!(ours.block_ack, theirs.block_ack);
    assert_eq!(theirs.block_ack, 0x0000_0002);
    assert!(theirs.obo && !ours.obo);
    let mut without_obo = sample.clone();
    without_obo[1] &= 0x7f;
    assert_eq!(d.transport_pdu, without_obo);
    // The LowerPdu emitter gives the sample's bytes when asked for OBO = 1.
    let mut emitted = vec![0x00];
    SegmentAck { obo: true, ..ours }.emit(&mut emitted);
    assert_eq!(emitted, sample);
}

#[test]
fn message_6_end_to_end_ack_completes_the_sender() {
    let (mut tx, c) = message_6_sender();
    let mut rx = message_6_receiver(&c);
    send_message_6(&mut tx, &c);
    while let Some(p) = tx.poll_transmit() {
        rx.handle_network_pdu(Instant::ZERO, &p.pdu).unwrap();
    }
    assert!(matches!(rx.poll_event(), Some(TransportEvent::Access(_))));
    let ack = rx.poll_transmit().expect("ack");
    tx.handle_network_pdu(Instant::from_millis(20), &ack.pdu)
        .unwrap();
    assert!(matches!(
        tx.poll_event(),
        Some(TransportEvent::Sent {
            acknowledged: true,
            ..
        })
    ));
    assert_eq!(tx.sending(), 0);
    assert_eq!(tx.poll_timeout(), None);
}

#[test]
fn network_layer_alone_reproduces_message_6_header_fields() {
    let c = case("message_6");
    let mut net = NetworkLayer::new(Default::default(), IV, MemorySeqSource::new());
    net.add_subnet(0, &net_key());
    net.add_element(0x1201);
    let p = net.decrypt(&h(&c["network_pdus"][1])).expect("accepted");
    assert_eq!(p.header.seq, 0x3129ac);
    assert_eq!(p.iv_index, 0x1234_5678);
    assert_eq!(p.transport_pdu, h(&c["lower_transport_pdus"][1]));
}

/// Segments may arrive out of order (different relay paths): the second segment's higher SEQ
/// does not make the first a replay. A replay of the whole message afterwards is acknowledged
/// again — once, and not within 150 ms of the last acknowledgement (MshPRT v1.1 §3.5.3.4) —
/// and never delivered twice.
#[test]
fn message_6_segments_out_of_order_and_replayed() {
    let c = case("message_6");
    let mut rx = message_6_receiver(&c);
    let pdus: Vec<Vec<u8>> = c["network_pdus"]
        .as_array()
        .unwrap()
        .iter()
        .map(h)
        .collect();
    rx.handle_network_pdu(Instant::ZERO, &pdus[1]).unwrap();
    rx.handle_network_pdu(Instant::ZERO, &pdus[0]).unwrap();
    assert!(matches!(rx.poll_event(), Some(TransportEvent::Access(_))));
    let acks: Vec<_> = std::iter::from_fn(|| rx.poll_transmit()).collect();
    assert_eq!(acks.len(), 1);
    for p in &pdus {
        rx.handle_network_pdu(Instant::from_millis(5), p).unwrap();
    }
    assert!(rx.poll_event().is_none(), "never delivered twice");
    assert!(
        rx.poll_transmit().is_none(),
        "5 ms after the acknowledgement: not again yet"
    );
    for p in &pdus {
        rx.handle_network_pdu(Instant::from_millis(200), p).unwrap();
    }
    assert!(rx.poll_event().is_none(), "never delivered twice");
    let reacks: Vec<_> = std::iter::from_fn(|| rx.poll_transmit()).collect();
    assert_eq!(
        reacks.len(),
        1,
        "the replayed message is acknowledged again, once for both segments"
    );
    let d = open(0x1234_5678, &reacks[0].pdu);
    assert_eq!(hex::encode(&d.transport_pdu), "0026ac00000003");
}
