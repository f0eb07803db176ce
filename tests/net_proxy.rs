//! The Mesh Proxy protocol: proxy configuration messages on the wire (round trips, bad input,
//! random bytes), their encryption with the proxy nonce against a computation by hand, and a
//! proxy client against a proxy server over a direct GATT pipe: filter set-up (with retries,
//! time-out and refusal), network PDUs both ways and segmented to a small MTU, beacons moving
//! the IV Index and the Key Refresh phase, relaying with TTL − 1 and the network message cache.

mod net_support;

use std::time::Duration;

use meshprov::crypto::ccm::{self, MicLen};
use meshprov::crypto::network::{self as netcrypto, NetworkHeader};
use meshprov::crypto::{CryptoError, NetKey, toolbox};
use meshprov::net::network::{DropReason, IvIndex, MemorySeqSource, NetworkConfig, NetworkLayer};
use meshprov::net::proxy::{
    NetworkCache, ProxyClient, ProxyClientConfig, ProxyError, ProxyEvent, ProxyServer,
    ProxyServerConfig, ProxyState,
};
use meshprov::net::transport::{AccessSend, Destination, KeySelect, Transport, TransportEvent};
use meshprov::time::Instant;
use meshprov::wire::{
    FilterType, ProxyConfigMessage, ProxyConfigOpcode, ProxyMessageType, ProxyPdu, Sar, WireError,
};
use net_support::*;
use proptest::collection::vec;
use proptest::prelude::*;

const PROV: u16 = 0x7fff;
const NODE: u16 = 0x0100;
const OTHER: u16 = 0x0200;
const GROUP: u16 = 0xc001;

// ---------------------------------------------------------------------------------------------
// Wire

fn every_message() -> Vec<(ProxyConfigMessage, &'static str)> {
    vec![
        (
            ProxyConfigMessage::SetFilterType {
                filter_type: FilterType::ACCEPT_LIST,
            },
            "0000",
        ),
        (
            ProxyConfigMessage::SetFilterType {
                filter_type: FilterType::REJECT_LIST,
            },
            "0001",
        ),
        (
            ProxyConfigMessage::AddAddresses {
                addresses: vec![0x7fff, 0xc001],
            },
            "017fffc001",
        ),
        (ProxyConfigMessage::AddAddresses { addresses: vec![] }, "01"),
        (
            ProxyConfigMessage::RemoveAddresses {
                addresses: vec![0x0001, 0x0002, 0x0003, 0x0004, 0x0005],
            },
            "0200010002000300040005",
        ),
        (
            ProxyConfigMessage::FilterStatus {
                filter_type: FilterType::ACCEPT_LIST,
                list_size: 0x0102,
            },
            "03000102",
        ),
        (
            ProxyConfigMessage::FilterStatus {
                filter_type: FilterType::REJECT_LIST,
                list_size: 0,
            },
            "03010000",
        ),
    ]
}

#[test]
fn every_proxy_configuration_message_round_trips() {
    for (m, bytes) in every_message() {
        assert_eq!(hex::encode(m.to_vec()), bytes, "{m:?}");
        assert_eq!(ProxyConfigMessage::parse(&m.to_vec()), Ok(m.clone()));
        assert_eq!(m.opcode().0, m.to_vec()[0]);
        assert!(m.opcode().is_known());
    }
}

#[test]
fn bad_proxy_configuration_messages_are_typed_errors() {
    let cases: Vec<(&str, WireError)> = vec![
        (
            "",
            WireError::TooShort {
                what: "proxy configuration message",
                min: 1,
                actual: 0,
            },
        ),
        (
            "00",
            WireError::BadLength {
                what: "Set Filter Type",
                expected: 2,
                actual: 1,
            },
        ),
        (
            "000000",
            WireError::BadLength {
                what: "Set Filter Type",
                expected: 2,
                actual: 3,
            },
        ),
        (
            "0002",
            WireError::Prohibited {
                what: "Set Filter Type",
                field: "Filter Type",
                value: 2,
                reason: "0x02-0xFF are prohibited",
            },
        ),
        (
            "00ff",
            WireError::Prohibited {
                what: "Set Filter Type",
                field: "Filter Type",
                value: 0xff,
                reason: "0x02-0xFF are prohibited",
            },
        ),
        (
            "017fff01",
            WireError::IllegalLength {
                what: "Add Addresses to Filter",
                allowed: "1 + 2 × N",
                actual: 4,
            },
        ),
        (
            "0201",
            WireError::IllegalLength {
                what: "Remove Addresses from Filter",
                allowed: "1 + 2 × N",
                actual: 2,
            },
        ),
        (
            "030001",
            WireError::BadLength {
                what: "Filter Status",
                expected: 4,
                actual: 3,
            },
        ),
        (
            "0300000100",
            WireError::BadLength {
                what: "Filter Status",
                expected: 4,
                actual: 5,
            },
        ),
        (
            "03020000",
            WireError::Prohibited {
                what: "Filter Status",
                field: "Filter Type",
                value: 2,
                reason: "0x02-0xFF are prohibited",
            },
        ),
        ("04", WireError::UnknownProxyConfigOpcode(0x04)),
        ("050000", WireError::UnknownProxyConfigOpcode(0x05)),
        ("ff", WireError::UnknownProxyConfigOpcode(0xff)),
    ];
    for (bytes, error) in cases {
        assert_eq!(
            ProxyConfigMessage::parse(&hex::decode(bytes).unwrap()),
            Err(error),
            "{bytes}"
        );
    }
    assert!(!ProxyConfigOpcode(0x04).is_known());
    assert!(!FilterType(0x02).is_known());
}

fn arbitrary_message() -> impl Strategy<Value = ProxyConfigMessage> {
    prop_oneof![
        (0u8..2).prop_map(|t| ProxyConfigMessage::SetFilterType {
            filter_type: FilterType(t)
        }),
        vec(any::<u16>(), 0..8)
            .prop_map(|addresses| ProxyConfigMessage::AddAddresses { addresses }),
        vec(any::<u16>(), 0..8)
            .prop_map(|addresses| ProxyConfigMessage::RemoveAddresses { addresses }),
        ((0u8..2), any::<u16>()).prop_map(|(t, list_size)| ProxyConfigMessage::FilterStatus {
            filter_type: FilterType(t),
            list_size
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Random bytes never make the parser panic, and what parses re-emits identically.
    #[test]
    fn parsing_random_bytes_never_panics(bytes in vec(any::<u8>(), 0..40)) {
        if let Ok(m) = ProxyConfigMessage::parse(&bytes) {
            prop_assert_eq!(m.to_vec(), bytes);
        }
    }

    /// With a plausible opcode, so that the length and value checks are reached.
    #[test]
    fn parsing_random_parameters_never_panics(op in 0u8..6, rest in vec(any::<u8>(), 0..14)) {
        let mut bytes = vec![op];
        bytes.extend(rest);
        if let Ok(m) = ProxyConfigMessage::parse(&bytes) {
            prop_assert_eq!(m.to_vec(), bytes);
        }
    }

    /// Every message survives emit and parse.
    #[test]
    fn messages_round_trip(m in arbitrary_message()) {
        prop_assert_eq!(ProxyConfigMessage::parse(&m.to_vec()), Ok(m));
    }

    /// Random notifications never make the client panic, whatever state it is in.
    #[test]
    fn random_notifications_never_panic_the_client(
        values in vec(vec(any::<u8>(), 0..40), 0..12),
    ) {
        let mut pair = Pair::new(69);
        pair.connect();
        for v in &values {
            let _ = pair.client.handle_notification(pair.now, v, &mut pair.prov);
        }
        pair.now += Duration::from_secs(30);
        pair.client.handle_timeout(pair.now, &mut pair.prov);
    }

    /// Random writes never make the server panic.
    #[test]
    fn random_writes_never_panic_the_server(values in vec(vec(any::<u8>(), 0..40), 0..12)) {
        let mut pair = Pair::new(69);
        for v in &values {
            let _ = pair.server.handle_data(pair.now, v, &mut pair.node);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encryption with the proxy nonce

/// The network PDU of a proxy configuration message, computed from the toolbox primitives
/// with the layout of MshPRT v1.1 §3.9.5.4 (proxy nonce) and §3.4.4 (network PDU), written out
/// here rather than taken from the code under test.
fn by_hand(key: &NetKey, iv_index: u32, seq: u32, src: u16, message: &[u8]) -> Vec<u8> {
    let k = toolbox::k2(key, &[0]);
    // Proxy nonce: 0x03 ‖ 0x00 ‖ SEQ (3) ‖ SRC (2) ‖ 0x0000 ‖ IV Index (4).
    let mut nonce = [0u8; 13];
    nonce[0] = 0x03;
    nonce[2..5].copy_from_slice(&seq.to_be_bytes()[1..]);
    nonce[5..7].copy_from_slice(&src.to_be_bytes());
    nonce[9..13].copy_from_slice(&iv_index.to_be_bytes());
    // DST (unassigned) ‖ TransportPDU, encrypted, with a 64-bit NetMIC (CTL = 1).
    let mut body = vec![0x00, 0x00];
    body.extend_from_slice(message);
    let mic = ccm::encrypt_in_place(
        k.encryption_key.expose_secret(),
        &nonce,
        &[],
        &mut body,
        MicLen::Mic8,
    )
    .unwrap();
    body.extend_from_slice(mic.as_bytes());
    // PECB = e(PrivacyKey, 0x0000000000 ‖ IV Index ‖ PrivacyRandom).
    let mut block = [0u8; 16];
    block[5..9].copy_from_slice(&iv_index.to_be_bytes());
    block[9..16].copy_from_slice(&body[..7]);
    let pecb = toolbox::e(k.privacy_key.expose_secret(), &block);
    // CTL = 1, TTL = 0 ‖ SEQ ‖ SRC, obfuscated.
    let mut clear = vec![0x80];
    clear.extend_from_slice(&seq.to_be_bytes()[1..]);
    clear.extend_from_slice(&src.to_be_bytes());
    let mut pdu = vec![(((iv_index & 1) as u8) << 7) | k.nid];
    pdu.extend(clear.iter().zip(&pecb).map(|(c, p)| c ^ p));
    pdu.extend(body);
    pdu
}

#[test]
fn proxy_configuration_pdu_matches_a_computation_by_hand() {
    let message = ProxyConfigMessage::AddAddresses {
        addresses: vec![PROV, GROUP],
    }
    .to_vec();
    for (iv_index, seq) in [(0x1234_5678u32, 0x00_0123u32), (0x1234_5679, 0xfe_dcba)] {
        let mut net = NetworkLayer::new(
            NetworkConfig::default(),
            IvIndex {
                index: iv_index,
                update: false,
            },
            MemorySeqSource::new(),
        );
        net.add_subnet(0, &net_key());
        net.seq_source_mut().set_next(PROV, seq);
        let pdu = net.encrypt_proxy_config(0, PROV, &message).unwrap();
        let expected = by_hand(&net_key(), iv_index, seq, PROV, &message);
        assert_eq!(hex::encode(&pdu), hex::encode(&expected));
        assert_eq!(pdu.len(), 9 + message.len() + 8);

        // The network nonce does not open it, and the proxy nonce opens nothing else.
        let k = toolbox::k2(&net_key(), &[0]);
        assert_eq!(
            netcrypto::decrypt_pdu(&k, iv_index, &pdu),
            Err(CryptoError::MicMismatch)
        );
        assert_eq!(net.authenticate(&pdu), Err(DropReason::NotAuthenticated));
        let header = NetworkHeader {
            ctl: true,
            ttl: 0,
            seq,
            src: PROV,
            dst: NODE,
        };
        let normal = netcrypto::encrypt_pdu(&k, iv_index, &header, &message).unwrap();
        assert_eq!(
            net.decrypt_proxy_config(&normal),
            Err(DropReason::NotAuthenticated)
        );

        // It opens with the proxy nonce: CTL 1, TTL 0, DST unassigned.
        let opened = net.decrypt_proxy_config(&pdu).unwrap();
        assert_eq!(
            opened.header,
            NetworkHeader {
                ctl: true,
                ttl: 0,
                seq,
                src: PROV,
                dst: 0
            }
        );
        assert_eq!(opened.transport_pdu, message);
    }
}

#[test]
fn the_server_decrypts_a_hand_made_proxy_configuration_pdu() {
    let mut pair = Pair::new(69);
    let seq = 0x00_4242;
    let add = ProxyConfigMessage::AddAddresses {
        addresses: vec![PROV, GROUP, 0x0042],
    };
    let pdu = by_hand(&net_key(), IV.index, seq, PROV, &add.to_vec());
    let mut value = Vec::new();
    ProxyPdu {
        sar: Sar::Complete,
        message_type: ProxyMessageType::PROXY_CONFIGURATION,
        data: pdu,
    }
    .emit(&mut value);
    pair.server
        .handle_data(pair.now, &value, &mut pair.node)
        .unwrap();
    assert_eq!(
        pair.server.filter_addresses().collect::<Vec<_>>(),
        [0x0042, PROV, GROUP]
    );
    assert_eq!(pair.server.stats().config_messages, 1);
    // Its answer: a Filter Status from the node's primary element, proxy nonce, TTL 0.
    let reply = pair.server.poll_transmit().expect("Filter Status");
    let reply = ProxyPdu::parse(&reply).unwrap();
    assert_eq!(reply.message_type, ProxyMessageType::PROXY_CONFIGURATION);
    let opened = pair
        .prov
        .network()
        .decrypt_proxy_config(&reply.data)
        .unwrap();
    assert_eq!((opened.header.src, opened.header.ttl), (NODE, 0));
    assert_eq!(
        ProxyConfigMessage::parse(&opened.transport_pdu),
        Ok(ProxyConfigMessage::FilterStatus {
            filter_type: FilterType::ACCEPT_LIST,
            list_size: 3
        })
    );
    // The same PDU again is a replay: not applied, not answered.
    pair.server
        .handle_data(pair.now, &value, &mut pair.node)
        .unwrap();
    assert!(pair.server.poll_transmit().is_none());
    assert_eq!(pair.server.stats().config_messages, 1);
}

#[test]
fn proxy_configuration_messages_longer_than_one_network_pdu_are_refused() {
    let mut net = NetworkLayer::new(NetworkConfig::default(), IV, MemorySeqSource::new());
    net.add_subnet(0, &net_key());
    let six = ProxyConfigMessage::AddAddresses {
        addresses: vec![1, 2, 3, 4, 5, 6],
    };
    assert!(net.encrypt_proxy_config(0, PROV, &six.to_vec()).is_err());
    assert!(net.encrypt_proxy_config(0, 0xc000, &[0, 0]).is_err());
    assert!(net.encrypt_proxy_config(3, PROV, &[0, 0]).is_err());
}

// ---------------------------------------------------------------------------------------------
// A client and a server over a direct GATT pipe

/// The provisioner (client) and one node (server) connected over GATT; values cross at once,
/// reliably and in order. Network PDUs the server relays to the advertising bearer, and those
/// the node's stack sends there, are collected in `adv`.
struct Pair {
    now: Instant,
    client: ProxyClient,
    prov: Transport<MemorySeqSource>,
    server: ProxyServer,
    node: Transport<MemorySeqSource>,
    adv: Vec<Vec<u8>>,
    writes: usize,
    notifications: usize,
}

impl Pair {
    fn new(mtu: u16) -> Self {
        Self::with(
            mtu,
            ProxyClientConfig::default(),
            ProxyServerConfig::default(),
            IV,
        )
    }

    fn with(
        mtu: u16,
        client_config: ProxyClientConfig,
        server_config: ProxyServerConfig,
        node_iv: IvIndex,
    ) -> Self {
        let mut prov = stack(IV, &[PROV]);
        prov.add_dev_key(NODE, dev_key(NODE));
        prov.add_dev_key(OTHER, dev_key(OTHER));
        let mut node = stack(node_iv, &[NODE]);
        node.add_dev_key(NODE, dev_key(NODE));
        let mut client = ProxyClient::new(client_config);
        client.add_subnet(0, &net_key());
        Self {
            now: Instant::from_millis(1000),
            client,
            prov,
            server: ProxyServer::new(mtu, NODE, server_config),
            node,
            adv: Vec::new(),
            writes: 0,
            notifications: 0,
        }
    }

    fn connect(&mut self) {
        let mtu = 69;
        self.client
            .connect(self.now, mtu, &mut self.prov)
            .expect("connect");
    }

    /// Moves everything across until nothing moves.
    fn drive(&mut self) {
        loop {
            let mut progress = false;
            while let Some(t) = self.prov.poll_transmit() {
                progress = true;
                self.client.send_network_pdu(&t.pdu).expect("send");
            }
            while let Some(v) = self.client.poll_transmit() {
                progress = true;
                self.writes += 1;
                self.server
                    .handle_data(self.now, &v, &mut self.node)
                    .expect("server");
            }
            while let Some(t) = self.node.poll_transmit() {
                progress = true;
                if self.server.route_own(&t, self.node.network()) {
                    self.adv.push(t.pdu);
                }
            }
            while let Some(t) = self.server.poll_relay() {
                progress = true;
                self.adv.push(t.pdu);
            }
            while let Some(v) = self.server.poll_transmit() {
                progress = true;
                self.notifications += 1;
                self.client
                    .handle_notification(self.now, &v, &mut self.prov)
                    .expect("client");
            }
            if !progress {
                break;
            }
        }
    }

    fn events(&mut self) -> Vec<ProxyEvent> {
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }

    /// Runs the client's timers until it stops asking, at most `limit` later.
    fn run_timers(&mut self, limit: Duration) {
        let end = self.now + limit;
        while let Some(t) = self.client.poll_timeout() {
            if t > end {
                break;
            }
            self.now = t;
            self.client.handle_timeout(self.now, &mut self.prov);
        }
    }
}

fn config_request(dst: u16) -> AccessSend {
    // Composition Data Get, page 0.
    AccessSend::new(
        0,
        PROV,
        Destination::Address(dst),
        KeySelect::Dev,
        vec![0x80, 0x08, 0x00],
    )
}

#[test]
fn the_filter_is_set_up_before_network_pdus_flow() {
    let mut pair = Pair::new(69);
    pair.connect();
    assert_eq!(pair.client.state(), ProxyState::SettingUpFilter);
    // A PDU given now waits for the filter.
    pair.prov
        .send_access(pair.now, config_request(NODE))
        .unwrap();
    let t = pair.prov.poll_transmit().unwrap();
    pair.client.send_network_pdu(&t.pdu).unwrap();
    // Only Set Filter Type is written so far.
    let first = pair.client.poll_transmit().expect("Set Filter Type");
    assert!(pair.client.poll_transmit().is_none());
    let first = ProxyPdu::parse(&first).unwrap();
    assert_eq!(first.message_type, ProxyMessageType::PROXY_CONFIGURATION);
    let opened = pair
        .node
        .network()
        .decrypt_proxy_config(&first.data)
        .unwrap();
    assert_eq!(
        ProxyConfigMessage::parse(&opened.transport_pdu),
        Ok(ProxyConfigMessage::SetFilterType {
            filter_type: FilterType::ACCEPT_LIST
        })
    );
    pair.server
        .handle_data(pair.now, &ProxyPdu { ..first }.to_bytes(), &mut pair.node)
        .unwrap();
    pair.drive();
    assert!(pair.client.is_ready());
    assert_eq!(
        pair.events(),
        [
            ProxyEvent::FilterStatus {
                filter_type: FilterType::ACCEPT_LIST,
                list_size: 0
            },
            ProxyEvent::FilterStatus {
                filter_type: FilterType::ACCEPT_LIST,
                list_size: 1
            },
            ProxyEvent::Ready {
                filter_type: FilterType::ACCEPT_LIST,
                list_size: 1
            },
        ]
    );
    assert_eq!(pair.server.filter_addresses().collect::<Vec<_>>(), [PROV]);
    assert_eq!(pair.client.filter(), Some((FilterType::ACCEPT_LIST, 1)));
    // The held request reached the node's stack after the filter, and its answer came back.
    let got: Vec<TransportEvent> = std::iter::from_fn(|| pair.node.poll_event()).collect();
    assert!(
        got.iter().any(|e| matches!(e, TransportEvent::Access(m)
            if m.src == PROV && m.access_pdu == [0x80, 0x08, 0x00])),
        "{got:?}"
    );
    let stats = pair.client.stats();
    assert_eq!(stats.config_messages_out, 2);
    assert_eq!(stats.network_pdus_out, 1);
    // Nothing for the node itself is relayed to the advertising bearer.
    assert!(pair.adv.is_empty());
}

trait ToBytes {
    fn to_bytes(&self) -> Vec<u8>;
}

impl ToBytes for ProxyPdu {
    fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.emit(&mut v);
        v
    }
}

#[test]
fn network_pdus_cross_both_ways_segmented_to_a_small_mtu() {
    // ATT MTU 23: 19 octets per write; an access network PDU of 29 octets takes two.
    let mut pair = Pair::new(23);
    pair.client.connect(pair.now, 23, &mut pair.prov).unwrap();
    pair.drive();
    assert!(pair.client.is_ready());
    let writes_before = pair.writes;
    // 11 octets of access payload + TransMIC: unsegmented, a 9 + 16 + 4 = 29 octet PDU.
    let mut send = config_request(NODE);
    send.access_pdu = vec![0x80, 0x08, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    pair.prov.send_access(pair.now, send).unwrap();
    pair.drive();
    assert_eq!(pair.writes - writes_before, 2, "one PDU in two segments");
    let got: Vec<TransportEvent> = std::iter::from_fn(|| pair.node.poll_event()).collect();
    assert!(matches!(&got[..], [TransportEvent::Access(m)] if m.access_pdu.len() == 11));
    // The node answers: its reply goes to the client only (unicast to a filtered address).
    let notes_before = pair.notifications;
    let mut reply = AccessSend::new(
        0,
        NODE,
        Destination::Address(PROV),
        KeySelect::Dev,
        vec![0x80, 0x03, 0, 1, 2, 3, 4, 5, 6, 7, 8],
    );
    reply.ttl = Some(5);
    pair.node.send_access(pair.now, reply).unwrap();
    pair.drive();
    assert_eq!(pair.notifications - notes_before, 2);
    assert!(pair.adv.is_empty(), "went over GATT only");
    let got: Vec<TransportEvent> = std::iter::from_fn(|| pair.prov.poll_event())
        .filter(|e| matches!(e, TransportEvent::Access(_)))
        .collect();
    assert!(
        matches!(&got[..], [TransportEvent::Access(m)] if m.src == NODE && m.ttl == 5),
        "{got:?}"
    );
}

#[test]
fn a_silent_server_makes_the_filter_set_up_retry_and_fail() {
    let mut pair = Pair::new(69);
    let start = pair.now;
    pair.connect();
    let mut written = Vec::new();
    pair.client.send_network_pdu(&[0; 20]).unwrap();
    loop {
        while let Some(v) = pair.client.poll_transmit() {
            written.push((pair.now.saturating_duration_since(start), v));
        }
        let Some(t) = pair.client.poll_timeout() else {
            break;
        };
        pair.now = t;
        pair.client.handle_timeout(pair.now, &mut pair.prov);
    }
    // Three attempts: at 0, 1 s and 3 s; given up at 7 s (waits of 1, 2 and 4 s).
    let times: Vec<u128> = written.iter().map(|(t, _)| t.as_millis()).collect();
    assert_eq!(times, [0, 1000, 3000]);
    assert_eq!(
        pair.now.saturating_duration_since(start),
        Duration::from_secs(7)
    );
    // Each attempt is Set Filter Type with a new SEQ.
    let seqs: Vec<u32> = written
        .iter()
        .map(|(_, v)| {
            let p = ProxyPdu::parse(v).unwrap();
            let n = pair.node.network().decrypt_proxy_config(&p.data).unwrap();
            assert_eq!(n.transport_pdu, [0x00, 0x00]);
            n.header.seq
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let error = ProxyError::FilterTimeout {
        step: ProxyConfigOpcode::SET_FILTER_TYPE,
        attempts: 3,
    };
    assert_eq!(pair.events(), [ProxyEvent::Failed(error.clone())]);
    assert_eq!(pair.client.state(), ProxyState::Failed(error));
    assert!(!pair.client.is_ready());
    assert_eq!(
        pair.client.send_network_pdu(&[0; 20]),
        Err(ProxyError::NotConnected)
    );
    assert_eq!(pair.client.poll_timeout(), None);
    assert!(
        pair.client.poll_transmit().is_none(),
        "the held PDU is dropped"
    );
}

#[test]
fn a_lost_filter_status_is_retried() {
    let mut pair = Pair::new(69);
    pair.connect();
    // The first Set Filter Type is lost on the way.
    assert!(pair.client.poll_transmit().is_some());
    pair.run_timers(Duration::from_millis(1000));
    pair.drive();
    assert!(pair.client.is_ready());
    assert_eq!(pair.client.stats().config_messages_out, 3);
}

#[test]
fn a_full_server_filter_is_a_refusal() {
    let mut pair = Pair::with(
        69,
        ProxyClientConfig::default(),
        ProxyServerConfig {
            filter_capacity: 0,
            ..ProxyServerConfig::default()
        },
        IV,
    );
    pair.connect();
    pair.drive();
    assert_eq!(pair.client.state(), ProxyState::SettingUpFilter);
    // Every retry gets the same answer: nothing was added.
    for _ in 0..3 {
        pair.run_timers(Duration::from_secs(4));
        pair.drive();
    }
    let error = ProxyError::FilterRefused {
        filter_type: FilterType::ACCEPT_LIST,
        list_size: 0,
        expected_type: FilterType::ACCEPT_LIST,
        expected_size: 1,
    };
    assert_eq!(pair.client.state(), ProxyState::Failed(error.clone()));
    assert!(pair.events().contains(&ProxyEvent::Failed(error)));
}

#[test]
fn long_address_lists_go_in_several_messages() {
    let extra: Vec<u16> = (0..9).map(|i| 0xc000 + i).collect();
    let mut pair = Pair::with(
        69,
        ProxyClientConfig {
            extra_addresses: extra.clone(),
            ..ProxyClientConfig::default()
        },
        ProxyServerConfig::default(),
        IV,
    );
    pair.connect();
    pair.drive();
    assert!(pair.client.is_ready());
    // Set Filter Type + 10 addresses in two messages of 5.
    assert_eq!(pair.client.stats().config_messages_out, 3);
    let mut want = extra;
    want.push(PROV);
    want.sort();
    assert_eq!(pair.server.filter_addresses().collect::<Vec<_>>(), want);
    assert_eq!(pair.client.filter(), Some((FilterType::ACCEPT_LIST, 10)));
}

#[test]
fn a_provisioning_pdu_on_the_proxy_service_fails_the_connection() {
    let mut pair = Pair::new(69);
    pair.connect();
    let value = ProxyPdu {
        sar: Sar::Complete,
        message_type: ProxyMessageType::PROVISIONING_PDU,
        data: vec![0x00, 0x05],
    }
    .to_bytes();
    let e = pair
        .client
        .handle_notification(pair.now, &value, &mut pair.prov)
        .unwrap_err();
    assert_eq!(
        e,
        ProxyError::WrongMessageType(ProxyMessageType::PROVISIONING_PDU)
    );
    assert!(e.requires_disconnect());
    assert_eq!(pair.client.state(), ProxyState::Failed(e.clone()));
    // The server refuses it likewise; a continuation without a first segment too.
    assert_eq!(
        pair.server.handle_data(pair.now, &value, &mut pair.node),
        Err(e)
    );
    let cont = ProxyPdu {
        sar: Sar::Continuation,
        message_type: ProxyMessageType::NETWORK_PDU,
        data: vec![1, 2, 3],
    }
    .to_bytes();
    let e = pair
        .server
        .handle_data(pair.now, &cont, &mut pair.node)
        .unwrap_err();
    assert!(e.requires_disconnect(), "{e}");
}

#[test]
fn an_unfinished_segmented_notification_times_out_after_20_s() {
    let mut pair = Pair::new(69);
    pair.connect();
    pair.drive();
    let first = ProxyPdu {
        sar: Sar::First,
        message_type: ProxyMessageType::NETWORK_PDU,
        data: vec![0; 10],
    }
    .to_bytes();
    pair.client
        .handle_notification(pair.now, &first, &mut pair.prov)
        .unwrap();
    assert_eq!(
        pair.client.poll_timeout(),
        Some(pair.now + Duration::from_secs(20))
    );
    pair.run_timers(Duration::from_secs(20));
    assert!(matches!(
        pair.client.state(),
        ProxyState::Failed(ProxyError::Sar(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Beacons through the proxy

#[test]
fn a_beacon_through_the_proxy_moves_the_iv_index() {
    let newer = IvIndex {
        index: IV.index + 1,
        update: true,
    };
    let mut pair = Pair::with(
        69,
        ProxyClientConfig::default(),
        ProxyServerConfig::default(),
        newer,
    );
    // The node sends a Secure Network beacon when the connection opens.
    pair.server
        .send_secure_network_beacon(&net_key(), false, newer);
    pair.connect();
    pair.drive();
    assert_eq!(pair.prov.network().iv_index(), newer);
    let events = pair.events();
    assert_eq!(
        events[0],
        ProxyEvent::IvIndexUpdated {
            from: IV,
            to: newer
        }
    );
    assert_eq!(pair.client.stats().beacons, 1);
    // The filter set-up went on under the new IV Index (sending with IV Index − 1 during the
    // update: the node still receives it).
    assert!(pair.client.is_ready());

    // An older state, one 43 ahead, another network and a forgery change nothing.
    let before = pair.prov.network().iv_index();
    pair.server
        .send_secure_network_beacon(&net_key(), false, IV);
    pair.server.send_secure_network_beacon(
        &net_key(),
        false,
        IvIndex {
            index: newer.index + 43,
            update: false,
        },
    );
    pair.server
        .send_secure_network_beacon(&NetKey::from_bytes([9; 16]), false, newer);
    let mut forged = meshprov::crypto::beacon::secure_network_encode(
        &toolbox::beacon_key(&net_key()),
        meshprov::crypto::beacon::BeaconState {
            flags: 0,
            iv_index: IV.index + 2,
        },
        &toolbox::k3(&net_key()),
    );
    forged[13] ^= 1;
    pair.server.send_beacon(&forged);
    pair.drive();
    assert_eq!(pair.prov.network().iv_index(), before);
    assert_eq!(pair.client.stats().beacons, 3);
    assert_eq!(pair.client.stats().dropped, 2);

    // The end of the update: Normal Operation under the same index.
    let done = IvIndex {
        index: IV.index + 1,
        update: false,
    };
    pair.server
        .send_secure_network_beacon(&net_key(), false, done);
    pair.drive();
    assert_eq!(pair.prov.network().iv_index(), done);
}

#[test]
fn a_mesh_private_beacon_moves_the_iv_index_too() {
    let mut pair = Pair::new(69);
    pair.connect();
    pair.drive();
    let to = IvIndex {
        index: IV.index + 5,
        update: false,
    };
    let beacon = meshprov::crypto::beacon::private_encode(
        &toolbox::private_beacon_key(&net_key()),
        meshprov::crypto::beacon::BeaconState {
            flags: 0,
            iv_index: to.index,
        },
        &[7; 13],
    )
    .unwrap();
    pair.server.send_beacon(&beacon);
    pair.drive();
    assert_eq!(pair.prov.network().iv_index(), to);
}

#[test]
fn beacons_with_the_new_key_move_the_key_refresh_phase() {
    let new_key = NetKey::from_bytes([0x42; 16]);
    let mut pair = Pair::new(69);
    pair.prov.add_app_key(1, 0, app_key());
    pair.prov
        .update_app_key(1, meshprov::crypto::AppKey::from_bytes([0x24; 16]))
        .unwrap();
    pair.prov.network_mut().update_subnet(0, &new_key).unwrap();
    pair.client.update_subnet(0, &new_key).unwrap();
    pair.connect();
    pair.drive();

    // A beacon with the old key and the Key Refresh flag does nothing.
    pair.server.send_secure_network_beacon(&net_key(), true, IV);
    pair.drive();
    assert!(
        !pair
            .events()
            .iter()
            .any(|e| matches!(e, ProxyEvent::KeyRefresh { .. }))
    );

    // With the new key: phase 2, the provisioner sends with the new key.
    pair.server.send_secure_network_beacon(&new_key, true, IV);
    pair.drive();
    assert_eq!(
        pair.events(),
        [ProxyEvent::KeyRefresh {
            net_key_index: 0,
            phase: 2
        }]
    );
    let mut only_new = stack(IV, &[OTHER]);
    only_new.network_mut().remove_subnet(0);
    only_new.network_mut().add_subnet(0, &new_key);
    only_new.add_dev_key(OTHER, dev_key(OTHER));
    pair.prov
        .send_access(pair.now, config_request(OTHER))
        .unwrap();
    let t = pair.prov.poll_transmit().unwrap();
    only_new
        .handle_network_pdu(pair.now, &t.pdu)
        .expect("secured with the new NetKey");

    // Key Refresh flag 0 with the new key: the old key is revoked.
    pair.server.send_secure_network_beacon(&new_key, false, IV);
    pair.drive();
    assert_eq!(
        pair.events(),
        [ProxyEvent::KeyRefresh {
            net_key_index: 0,
            phase: 0
        }]
    );
    let mut only_old = stack(IV, &[OTHER]);
    only_old.add_dev_key(OTHER, dev_key(OTHER));
    pair.prov
        .send_access(pair.now, config_request(OTHER))
        .unwrap();
    let t = pair.prov.poll_transmit().unwrap();
    assert!(only_old.handle_network_pdu(pair.now, &t.pdu).is_err());
    assert!(only_new.handle_network_pdu(pair.now, &t.pdu).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Relaying and the network message cache

fn ttl_of(net: &NetworkLayer<MemorySeqSource>, pdu: &[u8]) -> u8 {
    net.authenticate(pdu).expect("authenticates").header.ttl
}

#[test]
fn pdus_from_the_client_for_others_are_relayed_with_ttl_minus_one() {
    let mut pair = Pair::new(69);
    pair.connect();
    pair.drive();
    let mut send = config_request(OTHER);
    send.ttl = Some(7);
    pair.prov.send_access(pair.now, send).unwrap();
    pair.drive();
    assert_eq!(pair.adv.len(), 1);
    let relayed = pair.adv.pop().unwrap();
    assert_eq!(ttl_of(pair.node.network(), &relayed), 6);
    assert_eq!(pair.server.stats().relayed_to_adv, 1);
    // The other node takes it.
    let mut other = stack(IV, &[OTHER]);
    other.add_dev_key(OTHER, dev_key(OTHER));
    other.handle_network_pdu(pair.now, &relayed).unwrap();

    // TTL 0 and TTL 2 → 1 ... TTL 0 is not relayed; TTL 2 is, with TTL 1.
    for (ttl, relayed) in [(0u8, false), (2, true)] {
        let mut send = config_request(OTHER);
        send.ttl = Some(ttl);
        pair.prov.send_access(pair.now, send).unwrap();
        pair.drive();
        assert_eq!(pair.adv.len(), usize::from(relayed), "TTL {ttl}");
        if let Some(p) = pair.adv.pop() {
            assert_eq!(ttl_of(pair.node.network(), &p), ttl - 1);
        }
    }
    // The same PDU twice from the client: once.
    pair.prov
        .send_access(pair.now, config_request(OTHER))
        .unwrap();
    let t = pair.prov.poll_transmit().unwrap();
    pair.client.send_network_pdu(&t.pdu).unwrap();
    pair.client.send_network_pdu(&t.pdu).unwrap();
    pair.drive();
    assert_eq!(pair.adv.len(), 1);
    assert_eq!(pair.server.stats().cached, 1);
    // The client's address joined the accept list on its own (§6.6) — it was there already.
    assert_eq!(pair.server.filter_addresses().collect::<Vec<_>>(), [PROV]);
}

#[test]
fn pdus_heard_on_the_advertising_bearer_reach_the_client_once() {
    let mut pair = Pair::new(69);
    pair.connect();
    pair.drive();
    let mut other = stack(IV, &[OTHER]);
    other.add_dev_key(OTHER, dev_key(OTHER));
    let mut reply = AccessSend::new(
        0,
        OTHER,
        Destination::Address(PROV),
        KeySelect::Dev,
        vec![0x80, 0x03, 0x00],
    );
    reply.ttl = Some(5);
    other.send_access(pair.now, reply).unwrap();
    let t = other.poll_transmit().unwrap();
    // Three copies on the air (Network Transmit count): forwarded once, TTL 4.
    for _ in 0..3 {
        pair.node.handle_network_pdu(pair.now, &t.pdu).ok();
        pair.server.relay_from_adv(&t.pdu, pair.node.network());
    }
    let stats = pair.server.stats();
    assert_eq!((stats.relayed_to_client, stats.cached), (1, 2));
    let before = pair.notifications;
    pair.drive();
    assert_eq!(pair.notifications - before, 1);
    let got: Vec<TransportEvent> = std::iter::from_fn(|| pair.prov.poll_event()).collect();
    assert!(
        matches!(&got[..], [TransportEvent::Access(m)] if m.src == OTHER && m.ttl == 4),
        "{got:?}"
    );

    // Not forwarded: to an address outside the filter, with TTL 1, from the node itself.
    for (dst, ttl) in [(0x0300u16, 5u8), (PROV, 1)] {
        let mut m = AccessSend::new(
            0,
            OTHER,
            Destination::Address(dst),
            KeySelect::Dev,
            vec![0x80, 0x03, 0x00],
        );
        m.ttl = Some(5);
        other.add_dev_key(dst, dev_key(dst));
        other.send_access(pair.now, m).unwrap();
        let t = other.poll_transmit().unwrap();
        // TTL 1 cannot be asked of the transport: set it on the wire.
        let n = other.network().authenticate(&t.pdu).unwrap();
        let pdu = other.network().reencrypt(&n, ttl).unwrap().pdu;
        assert!(
            !pair.server.relay_from_adv(&pdu, pair.node.network()),
            "{dst:#x} TTL {ttl}"
        );
    }
    assert_eq!(pair.server.stats().relayed_to_client, 1);
    let mut own = AccessSend::new(
        0,
        NODE,
        Destination::Address(PROV),
        KeySelect::Dev,
        vec![0x80, 0x03, 0x00],
    );
    own.ttl = Some(5);
    pair.node.send_access(pair.now, own).unwrap();
    let t = pair.node.poll_transmit().unwrap();
    assert!(!pair.server.relay_from_adv(&t.pdu, pair.node.network()));

    // A reject list lets everything through but the listed addresses.
    let mut net = NetworkLayer::new(NetworkConfig::default(), IV, MemorySeqSource::new());
    net.add_subnet(0, &net_key());
    // SEQ beyond the client's own proxy configuration messages of this connection.
    net.seq_source_mut().set_next(PROV, 0x10_0000);
    let set = net
        .encrypt_proxy_config(
            0,
            PROV,
            &ProxyConfigMessage::SetFilterType {
                filter_type: FilterType::REJECT_LIST,
            }
            .to_vec(),
        )
        .unwrap();
    let add = net
        .encrypt_proxy_config(
            0,
            PROV,
            &ProxyConfigMessage::AddAddresses {
                addresses: vec![0x0300],
            }
            .to_vec(),
        )
        .unwrap();
    for pdu in [set, add] {
        let v = ProxyPdu {
            sar: Sar::Complete,
            message_type: ProxyMessageType::PROXY_CONFIGURATION,
            data: pdu,
        }
        .to_bytes();
        pair.server
            .handle_data(pair.now, &v, &mut pair.node)
            .unwrap();
    }
    assert_eq!(pair.server.filter_type(), FilterType::REJECT_LIST);
    assert!(pair.server.accepts(0x0400) && pair.server.accepts(GROUP));
    assert!(!pair.server.accepts(0x0300));
}

#[test]
fn the_node_s_own_pdus_go_to_the_client_and_group_ones_to_the_air_too() {
    let mut pair = Pair::with(
        69,
        ProxyClientConfig {
            extra_addresses: vec![GROUP],
            ..ProxyClientConfig::default()
        },
        ProxyServerConfig::default(),
        IV,
    );
    pair.connect();
    pair.drive();
    pair.node.add_app_key(1, 0, app_key());
    let to_group = AccessSend::new(
        0,
        NODE,
        Destination::Address(GROUP),
        KeySelect::App(1),
        vec![0x82, 0x04],
    );
    pair.node.send_access(pair.now, to_group).unwrap();
    let to_other = AccessSend::new(
        0,
        NODE,
        Destination::Address(OTHER),
        KeySelect::App(1),
        vec![0x82, 0x04],
    );
    pair.node.send_access(pair.now, to_other).unwrap();
    let before = pair.notifications;
    pair.drive();
    // The group PDU: to the client and the air; the one to another node: the air only.
    assert_eq!(pair.notifications - before, 1);
    assert_eq!(pair.adv.len(), 2);
    assert_eq!(pair.server.stats().own_to_client, 1);
}

#[test]
fn the_network_cache_forgets_its_oldest_entries() {
    let mut cache = NetworkCache::new(2);
    let mut net = stack(IV, &[PROV]);
    net.add_dev_key(NODE, dev_key(NODE));
    let pdus: Vec<_> = (0..3)
        .map(|_| {
            net.send_access(Instant::ZERO, config_request(NODE))
                .unwrap();
            let t = net.poll_transmit().unwrap();
            net.network().authenticate(&t.pdu).unwrap()
        })
        .collect();
    assert!(cache.insert(&pdus[0]));
    assert!(!cache.insert(&pdus[0]));
    assert!(cache.insert(&pdus[1]));
    assert!(cache.insert(&pdus[2]));
    assert_eq!(cache.len(), 2);
    assert!(cache.insert(&pdus[0]), "forgotten");
    assert!(!cache.insert(&pdus[2]));
}
