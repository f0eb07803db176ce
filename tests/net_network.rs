//! Network layer: replay protection, IV Index and IVI, SEQ numbering, own-source and
//! destination filtering, network transmit metadata.

mod net_support;

use std::time::Duration;

use meshprov::net::network::{
    DropReason, IvIndex, MemorySeqSource, NetworkConfig, NetworkLayer, NetworkTransmit, SeqSource,
};
use meshprov::net::transport::Dropped;
use meshprov::time::Instant;
use net_support::*;

fn message_1() -> Vec<u8> {
    h(&case("message_1")["network_pdu"])
}

fn layer(iv: IvIndex) -> NetworkLayer<MemorySeqSource> {
    let mut n = NetworkLayer::new(NetworkConfig::default(), iv, MemorySeqSource::new());
    n.add_subnet(0, &net_key());
    n.add_element(0x0100);
    n.subscribe(0xfffd);
    n
}

#[test]
fn a_replayed_network_pdu_is_dropped() {
    let mut n = layer(IV);
    n.decrypt(&message_1()).expect("first time accepted");
    assert_eq!(n.decrypt(&message_1()), Err(DropReason::Replay));
    // Through the transport too: never delivered twice.
    let mut t = stack(IV, &[0x0100]);
    t.network_mut().subscribe(0xfffd);
    t.handle_network_pdu(Instant::ZERO, &message_1()).unwrap();
    assert!(t.poll_event().is_some());
    assert_eq!(
        t.handle_network_pdu(Instant::ZERO, &message_1()),
        Err(Dropped::Network(DropReason::Replay))
    );
    assert!(t.poll_event().is_none());
}

#[test]
fn a_pdu_under_a_wrong_iv_index_is_dropped() {
    // IVI 0 with current 0x1234567A selects 0x1234567A: the NetMIC does not verify.
    let mut n = layer(IvIndex {
        index: 0x1234_567a,
        update: false,
    });
    assert_eq!(n.decrypt(&message_1()), Err(DropReason::NotAuthenticated));
    // IVI 0 with current 0x12345677 (LSB 1) selects 0x12345676.
    let mut n = layer(IvIndex {
        index: 0x1234_5677,
        update: false,
    });
    assert_eq!(n.decrypt(&message_1()), Err(DropReason::NotAuthenticated));
    assert_eq!(n.replay_len(), 0, "a dropped PDU leaves no trace");
}

#[test]
fn ivi_selects_the_previous_iv_index() {
    // Current 0x12345679 (LSB 1); the PDU's IVI is 0: received under 0x12345678.
    for update in [false, true] {
        let mut n = layer(IvIndex {
            index: 0x1234_5679,
            update,
        });
        let p = n.decrypt(&message_1()).expect("accepted under IV - 1");
        assert_eq!(p.iv_index, 0x1234_5678);
    }
    assert_eq!(IV.rx(false), 0x1234_5678);
    assert_eq!(IV.rx(true), 0x1234_5677);
    assert_eq!(
        IvIndex {
            index: 5,
            update: true
        }
        .tx(),
        4
    );
}

#[test]
fn a_pdu_under_an_older_iv_index_than_the_last_is_a_replay() {
    let iv = IvIndex {
        index: 0x1234_5679,
        update: false,
    };
    let mut sender = layer(iv);
    let mut sender_net = NetworkLayer::new(NetworkConfig::default(), iv, MemorySeqSource::new());
    sender_net.add_subnet(0, &net_key());
    sender_net.add_element(0x1201);
    let _ = &mut sender;
    let seq = sender_net.next_seq(0x1201).unwrap();
    let header = meshprov::crypto::network::NetworkHeader {
        ctl: true,
        ttl: 0,
        seq,
        src: 0x1201,
        dst: 0xfffd,
    };
    let newer = sender_net.encrypt(0, &header, &[0x03, 1, 2, 3]).unwrap();
    let mut rx = layer(iv);
    assert_eq!(rx.decrypt(&newer.pdu).unwrap().iv_index, 0x1234_5679);
    // Message #1 from the same source under 0x12345678 with a higher SEQ... still older IV.
    assert_eq!(rx.decrypt(&message_1()), Err(DropReason::Replay));
}

#[test]
fn replay_list_full_drops_new_sources_only() {
    let mut n = NetworkLayer::new(
        NetworkConfig {
            replay_capacity: 0,
            ..NetworkConfig::default()
        },
        IV,
        MemorySeqSource::new(),
    );
    n.add_subnet(0, &net_key());
    n.subscribe(0xfffd);
    assert_eq!(n.decrypt(&message_1()), Err(DropReason::ReplayListFull));
}

#[test]
fn own_source_destination_and_key_filters() {
    let mut n = layer(IV);
    n.add_element(0x1201);
    assert_eq!(n.decrypt(&message_1()), Err(DropReason::OwnSource));
    let mut n = layer(IV);
    n.unsubscribe(0xfffd);
    assert_eq!(n.decrypt(&message_1()), Err(DropReason::NotForUs));
    let mut n = layer(IV);
    n.remove_subnet(0);
    assert_eq!(n.decrypt(&message_1()), Err(DropReason::NotAuthenticated));
    assert_eq!(n.decrypt(&[0u8; 13]), Err(DropReason::Malformed));
    assert_eq!(n.decrypt(&[0u8; 30]), Err(DropReason::Malformed));
    let mut bad = message_1();
    *bad.last_mut().unwrap() ^= 1;
    let mut n = layer(IV);
    assert_eq!(n.decrypt(&bad), Err(DropReason::NotAuthenticated));
}

#[test]
fn key_refresh_receives_with_both_keys() {
    let other = meshprov::crypto::NetKey::from_bytes([9; 16]);
    // Old key = some other key, new key = the sample's: phase 1 accepts the sample.
    let mut n = layer(IV);
    n.add_subnet(0, &other);
    assert_eq!(n.decrypt(&message_1()), Err(DropReason::NotAuthenticated));
    n.update_subnet(0, &net_key()).unwrap();
    let p = n.decrypt(&message_1()).expect("accepted with the new key");
    assert!(p.new_key);
    assert!(n.use_new_key(0).is_ok());
    assert!(n.revoke_old_key(0).is_ok());
    assert!(n.update_subnet(7, &other).is_err());
}

#[test]
fn seq_is_never_repeated_across_blocks_and_restarts() {
    let cfg = NetworkConfig {
        seq_block: 4,
        ..NetworkConfig::default()
    };
    let mut n = NetworkLayer::new(cfg.clone(), IV, MemorySeqSource::new());
    let a: Vec<u32> = (0..10).map(|_| n.next_seq(0x0001).unwrap()).collect();
    assert_eq!(a, (0..10).collect::<Vec<_>>());
    let other: Vec<u32> = (0..3).map(|_| n.next_seq(0x0002).unwrap()).collect();
    assert_eq!(other, vec![0, 1, 2], "per element");
    // A restart with the same source continues after the reserved block (10 used of 12).
    let source = n.seq_source_mut().clone();
    let mut n2 = NetworkLayer::new(cfg, IV, source);
    assert_eq!(n2.next_seq(0x0001).unwrap(), 12);
    // A new IV Index restarts numbering.
    n2.set_iv_index(IvIndex {
        index: IV.index + 1,
        update: false,
    });
    assert_eq!(n2.next_seq(0x0001).unwrap(), 0);
}

#[test]
fn seq_exhaustion_is_an_error() {
    let mut s = MemorySeqSource::new();
    s.set_next(1, (1 << 24) - 1);
    assert_eq!(s.clone().reserve_seq(1, 1).unwrap(), (1 << 24) - 1..1 << 24);
    let mut n = NetworkLayer::new(NetworkConfig::default(), IV, s);
    assert!(n.next_seq(1).is_err(), "a block of 256 does not fit");
}

#[test]
fn network_transmit_is_carried_on_each_transmit() {
    let mut n = layer(IV);
    let header = meshprov::crypto::network::NetworkHeader {
        ctl: false,
        ttl: 5,
        seq: 7,
        src: 0x0100,
        dst: 0x0200,
    };
    let t = n.encrypt(0, &header, &[0; 10]).unwrap();
    assert_eq!(
        (t.transmissions, t.interval),
        (3, Duration::from_millis(20))
    );
    let nt = NetworkTransmit::from_byte(0x1d);
    assert_eq!((nt.count, nt.interval_steps), (5, 3));
    assert_eq!(nt.to_byte(), 0x1d);
    n.set_transmit(nt);
    let t = n.encrypt(0, &header, &[0; 10]).unwrap();
    assert_eq!(
        (t.transmissions, t.interval),
        (6, Duration::from_millis(40))
    );
    assert!(n.encrypt(9, &header, &[0; 10]).is_err(), "unknown subnet");
    assert!(
        n.encrypt(0, &header, &[0; 17]).is_err(),
        "an access transport PDU is at most 16 octets"
    );
}

/// Two subnets with the same NID: the PDU is tried with both and authenticated by the right
/// one, whatever the order.
#[test]
fn decrypt_tries_every_subnet_with_a_matching_nid() {
    let nid = meshprov::crypto::toolbox::k2(&net_key(), &[0]).nid;
    let colliding = (0u16..)
        .map(|i| {
            let mut k = [0xa5; 16];
            k[..2].copy_from_slice(&i.to_be_bytes());
            meshprov::crypto::NetKey::from_bytes(k)
        })
        .find(|k| meshprov::crypto::toolbox::k2(k, &[0]).nid == nid)
        .expect("a key with the same NID");
    let mut n = NetworkLayer::new(NetworkConfig::default(), IV, MemorySeqSource::new());
    n.add_subnet(0, &colliding);
    n.add_subnet(1, &net_key());
    n.subscribe(0xfffd);
    let p = n.decrypt(&message_1()).expect("authenticated by subnet 1");
    assert_eq!(p.net_key_index, 1);
    assert!(!p.new_key);
}
