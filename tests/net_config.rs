//! Access opcodes and Configuration messages: round trips of every message, parsers that
//! never panic, Composition Data page 0, and the Config client's retries and matching.

use std::time::Duration;

use meshprov::crypto::{AppKey, NetKey};
use meshprov::net::access::{AccessMessage, Opcode};
use meshprov::net::config::{
    CompositionPage0, ConfigClient, ConfigClientConfig, ConfigEvent, ConfigMessage, ConfigStatus,
    Features, ModelId, PublishParams, opcode, pack_key_indexes, parse_key_index_list,
    unpack_key_indexes,
};
use meshprov::net::network::NetworkTransmit;
use meshprov::net::transport::{LowerPdu, SegmentAck};
use meshprov::time::Instant;
use proptest::prelude::*;

const LABEL: [u8; 16] = [
    0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x12, 0x34, 0x12, 0x34, 0x12, 0x34, 0x56, 0x78, 0xab, 0xcd,
];

fn vendor() -> ModelId {
    ModelId::Vendor {
        company_id: 0x0059,
        model_id: 0x1234,
    }
}

/// One example of every message.
fn examples() -> Vec<ConfigMessage> {
    use ConfigMessage as M;
    let publish = PublishParams {
        app_key_index: 0x123,
        credential: true,
        ttl: 0xff,
        period: 0x41,
        retransmit: 0x2a,
    };
    let ok = ConfigStatus::SUCCESS;
    let nt = NetworkTransmit::from_byte(0x3a);
    vec![
        M::CompositionDataGet { page: 0 },
        M::CompositionDataStatus {
            page: 0,
            data: vec![1, 2, 3],
        },
        M::AppKeyAdd {
            net_key_index: 0x456,
            app_key_index: 0x123,
            key: AppKey::from_bytes([7; 16]),
        },
        M::AppKeyUpdate {
            net_key_index: 0x001,
            app_key_index: 0xfff,
            key: AppKey::from_bytes([8; 16]),
        },
        M::AppKeyDelete {
            net_key_index: 0x456,
            app_key_index: 0x123,
        },
        M::AppKeyGet {
            net_key_index: 0x456,
        },
        M::AppKeyStatus {
            status: ConfigStatus::INVALID_NETKEY_INDEX,
            net_key_index: 0x456,
            app_key_index: 0x123,
        },
        M::AppKeyList {
            status: ok,
            net_key_index: 1,
            app_key_indexes: vec![1, 2, 3],
        },
        M::NetKeyAdd {
            net_key_index: 0x0aa,
            key: NetKey::from_bytes([9; 16]),
        },
        M::NetKeyUpdate {
            net_key_index: 0x0aa,
            key: NetKey::from_bytes([10; 16]),
        },
        M::NetKeyDelete {
            net_key_index: 0x0aa,
        },
        M::NetKeyGet,
        M::NetKeyStatus {
            status: ok,
            net_key_index: 0x0aa,
        },
        M::NetKeyList {
            net_key_indexes: vec![0, 0x0aa],
        },
        M::ModelAppBind {
            element: 0x0100,
            app_key_index: 1,
            model: ModelId::Sig(0x1000),
        },
        M::ModelAppUnbind {
            element: 0x0101,
            app_key_index: 2,
            model: vendor(),
        },
        M::ModelAppStatus {
            status: ConfigStatus::CANNOT_BIND,
            element: 0x0100,
            app_key_index: 1,
            model: ModelId::Sig(0x1000),
        },
        M::ModelPublicationGet {
            element: 0x0100,
            model: ModelId::Sig(0x1000),
        },
        M::ModelPublicationSet {
            element: 0x0100,
            address: 0xc000,
            publish,
            model: ModelId::Sig(0x1000),
        },
        M::ModelPublicationVirtualSet {
            element: 0x0100,
            label: LABEL,
            publish,
            model: vendor(),
        },
        M::ModelPublicationStatus {
            status: ok,
            element: 0x0100,
            address: 0xadd5,
            publish,
            model: vendor(),
        },
        M::ModelSubscriptionAdd {
            element: 0x0100,
            address: 0xc000,
            model: ModelId::Sig(0x1000),
        },
        M::ModelSubscriptionDelete {
            element: 0x0100,
            address: 0xc001,
            model: vendor(),
        },
        M::ModelSubscriptionOverwrite {
            element: 0x0100,
            address: 0xfffd,
            model: ModelId::Sig(0x1001),
        },
        M::ModelSubscriptionDeleteAll {
            element: 0x0100,
            model: ModelId::Sig(0x1000),
        },
        M::ModelSubscriptionVirtualAdd {
            element: 0x0100,
            label: LABEL,
            model: ModelId::Sig(0x1000),
        },
        M::ModelSubscriptionVirtualDelete {
            element: 0x0100,
            label: LABEL,
            model: vendor(),
        },
        M::ModelSubscriptionVirtualOverwrite {
            element: 0x0100,
            label: LABEL,
            model: ModelId::Sig(0x1000),
        },
        M::ModelSubscriptionStatus {
            status: ConfigStatus::NOT_A_SUBSCRIBE_MODEL,
            element: 0x0100,
            address: 0xc000,
            model: ModelId::Sig(0x1000),
        },
        M::DefaultTtlGet,
        M::DefaultTtlSet { ttl: 5 },
        M::DefaultTtlStatus { ttl: 0x7f },
        M::RelayGet,
        M::RelaySet {
            relay: 1,
            retransmit: nt,
        },
        M::RelayStatus {
            relay: 2,
            retransmit: nt,
        },
        M::GattProxyGet,
        M::GattProxySet { state: 1 },
        M::GattProxyStatus { state: 2 },
        M::BeaconGet,
        M::BeaconSet { state: 0 },
        M::BeaconStatus { state: 1 },
        M::NetworkTransmitGet,
        M::NetworkTransmitSet { transmit: nt },
        M::NetworkTransmitStatus { transmit: nt },
        M::NodeReset,
        M::NodeResetStatus,
        M::KeyRefreshPhaseGet {
            net_key_index: 0x0aa,
        },
        M::KeyRefreshPhaseSet {
            net_key_index: 0x0aa,
            transition: 2,
        },
        M::KeyRefreshPhaseStatus {
            status: ok,
            net_key_index: 0x0aa,
            phase: 1,
        },
    ]
}

#[test]
fn every_message_round_trips_and_every_opcode_is_covered() {
    let ex = examples();
    let mut ops: Vec<Opcode> = ex.iter().map(ConfigMessage::opcode).collect();
    ops.sort();
    ops.dedup();
    let mut all = opcode::ALL.to_vec();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), opcode::ALL.len(), "no opcode listed twice");
    assert_eq!(ops, all, "one example per opcode");
    for m in ex {
        let pdu = m.to_pdu();
        assert_eq!(ConfigMessage::parse_pdu(&pdu).as_ref(), Ok(&m), "{m:?}");
    }
}

#[test]
fn opcode_values_are_the_assigned_numbers() {
    // Spot checks against the brief and reference §6.4 (BlueZ cfgmod.h).
    assert_eq!(opcode::APPKEY_ADD, Opcode(0x00));
    assert_eq!(opcode::APPKEY_UPDATE, Opcode(0x01));
    assert_eq!(opcode::COMPOSITION_DATA_STATUS, Opcode(0x02));
    assert_eq!(opcode::MODEL_PUBLICATION_SET, Opcode(0x03));
    assert_eq!(opcode::COMPOSITION_DATA_GET, Opcode(0x8008));
    assert_eq!(opcode::APPKEY_STATUS, Opcode(0x8003));
    assert_eq!(opcode::MODEL_APP_BIND, Opcode(0x803d));
    assert_eq!(opcode::NODE_RESET, Opcode(0x8049));
    assert_eq!(opcode::NETKEY_UPDATE, Opcode(0x8045));
    assert_eq!(opcode::MODEL_SUBSCRIPTION_VIRTUAL_OVERWRITE, Opcode(0x8022));
    // Wire forms.
    assert_eq!(ConfigMessage::NodeReset.to_pdu(), vec![0x80, 0x49]);
    assert_eq!(
        ConfigMessage::CompositionDataGet { page: 0xff }.to_pdu(),
        vec![0x80, 0x08, 0xff]
    );
    assert_eq!(
        ConfigMessage::ModelAppBind {
            element: 0x1201,
            app_key_index: 0x123,
            model: vendor()
        }
        .to_pdu(),
        vec![0x80, 0x3d, 0x01, 0x12, 0x23, 0x01, 0x59, 0x00, 0x34, 0x12]
    );
}

#[test]
fn status_codes_are_named() {
    assert_eq!(ConfigStatus::SUCCESS.name(), Some("Success"));
    assert_eq!(ConfigStatus(0x06).name(), Some("Key Index Already Stored"));
    assert_eq!(
        ConfigStatus(0x0e).name(),
        Some("Temporarily Unable to Change State")
    );
    assert_eq!(ConfigStatus(0x11).name(), Some("Invalid Binding"));
    assert_eq!(ConfigStatus(0x14).name(), Some("Obsolete Information"));
    assert_eq!(ConfigStatus(0x15).name(), Some("Invalid Bearer"));
    assert_eq!(ConfigStatus(0x16).name(), None);
    assert_eq!(ConfigStatus(0x16).to_string(), "RFU (0x16)");
    assert_eq!(ConfigStatus::CANNOT_BIND.to_string(), "Cannot Bind (0x0d)");
}

#[test]
fn key_index_packing_follows_reference_6_4() {
    // Message #6: 56 34 12 -> NetKeyIndex 0x456, AppKeyIndex 0x123.
    assert_eq!(pack_key_indexes(0x456, 0x123), [0x56, 0x34, 0x12]);
    assert_eq!(unpack_key_indexes([0x56, 0x34, 0x12]), (0x456, 0x123));
    assert_eq!(
        parse_key_index_list(&[0x56, 0x34, 0x12, 0x01, 0x00]).unwrap(),
        vec![0x456, 0x123, 1]
    );
    assert!(parse_key_index_list(&[1]).is_err());
    assert!(parse_key_index_list(&[1, 2, 3, 4]).is_err());
}

#[test]
fn prohibited_values_are_rejected() {
    let p = |b: &[u8]| ConfigMessage::parse_pdu(b);
    assert!(p(&[0x80, 0x0d, 0x01]).is_err(), "Default TTL 1");
    assert!(p(&[0x80, 0x0d, 0x80]).is_err(), "Default TTL 0x80");
    assert!(p(&[0x80, 0x0a, 0x02]).is_err(), "Beacon Set 2");
    assert!(
        p(&[0x80, 0x16, 0x00, 0x00, 0x01]).is_err(),
        "KR transition 1"
    );
    assert!(
        p(&[0x80, 0x3d, 0x00, 0xc0, 0x01, 0x00, 0x00, 0x10]).is_err(),
        "group element"
    );
    assert!(
        p(&[0x80, 0x1b, 0x00, 0x01, 0x02, 0x00, 0x00, 0x10]).is_err(),
        "unicast subscription"
    );
    assert!(
        p(&[0x80, 0x3d, 0x00, 0x01, 0x01, 0x00, 0x00]).is_err(),
        "3-octet model ID"
    );
    assert!(p(&[0x80, 0x49, 0x00]).is_err(), "trailing octet");
    assert!(p(&[0x7f]).is_err(), "RFU opcode");
    assert_eq!(
        p(&[0x80, 0x50]),
        Err(meshprov::net::NetError::UnknownOpcode(0x8050))
    );
}

#[test]
fn opcodes_of_every_size() {
    for (bytes, op, len) in [
        (vec![0x00], Opcode(0x00), 1),
        (vec![0x7e], Opcode(0x7e), 1),
        (vec![0x80, 0x08], Opcode(0x8008), 2),
        (vec![0xbf, 0xff], Opcode(0xbfff), 2),
        (vec![0xc1, 0x59, 0x00], Opcode::vendor(0x01, 0x0059), 3),
    ] {
        let (got, rest) = Opcode::parse(&bytes).unwrap();
        assert_eq!((got, rest.len(), got.size()), (op, 0, len));
        let mut out = Vec::new();
        got.emit(&mut out);
        assert_eq!(out, bytes);
    }
    let v = Opcode::vendor(0x01, 0x0059);
    assert_eq!((v.is_vendor(), v.company_id()), (true, Some(0x0059)));
    assert!(Opcode::parse(&[]).is_err());
    assert!(Opcode::parse(&[0x80]).is_err());
    assert!(Opcode::parse(&[0xc0, 0x59]).is_err());
    let m = AccessMessage::parse(&[0xc1, 0x59, 0x00, 1, 2]).unwrap();
    assert_eq!(m.params, vec![1, 2]);
    assert_eq!(m.to_vec(), vec![0xc1, 0x59, 0x00, 1, 2]);
}

/// A hand-made page 0: Nordic CID, two elements, SIG and vendor models.
#[test]
fn composition_data_page_0_is_decoded() {
    #[rustfmt::skip]
    let data: Vec<u8> = vec![
        0x59, 0x00, // CID 0x0059
        0x34, 0x12, // PID 0x1234
        0x02, 0x01, // VID 0x0102
        0x20, 0x00, // CRPL 32
        0x03, 0x00, // features: relay, proxy
        // element 0: location 0x0100, 3 SIG models, 1 vendor model
        0x00, 0x01, 0x03, 0x01,
        0x00, 0x00, 0x02, 0x00, 0x00, 0x10,
        0x59, 0x00, 0x01, 0x00,
        // element 1: location 0x0101, 1 SIG model, no vendor model
        0x01, 0x01, 0x01, 0x00,
        0x00, 0x13,
    ];
    let status = ConfigMessage::parse_pdu(&[&[0x02u8, 0x00][..], &data].concat()).unwrap();
    let ConfigMessage::CompositionDataStatus { page: 0, data: raw } = &status else {
        panic!("{status:?}")
    };
    let p = CompositionPage0::parse(raw).unwrap();
    assert_eq!((p.cid, p.pid, p.vid, p.crpl), (0x0059, 0x1234, 0x0102, 32));
    assert!(p.features.has(Features::RELAY) && p.features.has(Features::PROXY));
    assert!(!p.features.has(Features::FRIEND) && !p.features.has(Features::LOW_POWER));
    assert_eq!(p.elements.len(), 2);
    assert_eq!(p.elements[0].location, 0x0100);
    assert_eq!(p.elements[0].sig_models, vec![0x0000, 0x0002, 0x1000]);
    assert_eq!(
        p.elements[0].vendor_models,
        vec![ModelId::Vendor {
            company_id: 0x0059,
            model_id: 0x0001
        }]
    );
    assert_eq!(p.elements[1].sig_models, vec![0x1300]);
    assert!(p.elements[1].vendor_models.is_empty());
    let mut out = Vec::new();
    p.emit(&mut out);
    assert_eq!(out, data);
    // Truncations are errors.
    for cut in [0, 9, 11, 13, data.len() - 1] {
        assert!(CompositionPage0::parse(&data[..cut]).is_err(), "cut {cut}");
    }
}

fn arb_page0() -> impl Strategy<Value = CompositionPage0> {
    let element = (
        any::<u16>(),
        prop::collection::vec(any::<u16>(), 0..5),
        prop::collection::vec((any::<u16>(), any::<u16>()), 0..3),
    )
        .prop_map(|(location, sig, ven)| meshprov::net::config::Element {
            location,
            sig_models: sig,
            vendor_models: ven
                .into_iter()
                .map(|(c, m)| ModelId::Vendor {
                    company_id: c,
                    model_id: m,
                })
                .collect(),
        });
    (any::<[u16; 5]>(), prop::collection::vec(element, 1..4)).prop_map(|(h, elements)| {
        CompositionPage0 {
            cid: h[0],
            pid: h[1],
            vid: h[2],
            crpl: h[3],
            features: Features(h[4]),
            elements,
        }
    })
}

proptest! {
    /// parse(emit(x)) == x for every message parsed from random parameters of every Config
    /// opcode (lengths 0..=40), and parsers never panic.
    #[test]
    fn config_messages_round_trip(i in 0..opcode::ALL.len(), params in prop::collection::vec(any::<u8>(), 0..40)) {
        let op = opcode::ALL[i];
        if let Ok(m) = ConfigMessage::parse(op, &params) {
            prop_assert_eq!(m.opcode(), op);
            prop_assert_eq!(ConfigMessage::parse_pdu(&m.to_pdu()), Ok(m));
        }
    }

    /// Messages of the exact length of each example, with random content.
    #[test]
    fn config_messages_with_example_lengths_round_trip(i in 0..49usize, seed in any::<u64>()) {
        let ex = examples();
        let m = &ex[i % ex.len()];
        let mut pdu = m.to_pdu();
        let op = m.opcode().size();
        let mut x = seed;
        for b in pdu.iter_mut().skip(op) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            *b = (x >> 56) as u8;
        }
        if let Ok(parsed) = ConfigMessage::parse_pdu(&pdu) {
            prop_assert_eq!(ConfigMessage::parse_pdu(&parsed.to_pdu()), Ok(parsed));
        }
    }

    #[test]
    fn access_parsers_never_panic(b in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = ConfigMessage::parse_pdu(&b);
        if let Ok((op, rest)) = Opcode::parse(&b) {
            let mut out = Vec::new();
            op.emit(&mut out);
            out.extend_from_slice(rest);
            prop_assert_eq!(out, b.clone());
        }
        let _ = CompositionPage0::parse(&b);
    }

    #[test]
    fn page0_round_trips(p in arb_page0()) {
        let mut out = Vec::new();
        p.emit(&mut out);
        prop_assert_eq!(CompositionPage0::parse(&out), Ok(p));
    }

    #[test]
    fn lower_transport_parsers_never_panic_and_round_trip(ctl in any::<bool>(), b in prop::collection::vec(any::<u8>(), 0..20)) {
        if let Ok(p) = LowerPdu::parse(ctl, &b) {
            prop_assert_eq!(p.is_control(), ctl);
            prop_assert_eq!(LowerPdu::parse(ctl, &p.to_vec()), Ok(p.clone()));
            if !matches!(p, LowerPdu::SegmentedControl { .. }) {
                prop_assert_eq!(p.to_vec(), b.clone(), "no RFU bits outside segmented control");
            }
        }
        if let Ok(a) = SegmentAck::parse(&b) {
            let mut out = Vec::new();
            a.emit(&mut out);
            prop_assert_eq!(SegmentAck::parse(&out), Ok(a));
        }
    }

    /// Random bytes fed to a whole stack: nothing panics, nothing is delivered.
    #[test]
    fn transport_never_panics_on_random_network_pdus(pdus in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..32), 1..8)) {
        let mut net = meshprov::net::network::NetworkLayer::new(
            Default::default(),
            meshprov::net::network::IvIndex { index: 1, update: false },
            meshprov::net::network::MemorySeqSource::new(),
        );
        net.add_subnet(0, &NetKey::from_bytes([1; 16]));
        net.add_element(1);
        let mut t = meshprov::net::transport::Transport::new(Default::default(), net);
        for p in &pdus {
            prop_assert!(t.handle_network_pdu(Instant::ZERO, p).is_err());
        }
        prop_assert!(t.poll_event().is_none());
    }
}

// ----- Config client -----

const NODE: u16 = 0x0100;

fn add() -> ConfigMessage {
    ConfigMessage::AppKeyAdd {
        net_key_index: 0,
        app_key_index: 1,
        key: AppKey::from_bytes([3; 16]),
    }
}

fn status_pdu(net: u16, app: u16) -> Vec<u8> {
    ConfigMessage::AppKeyStatus {
        status: ConfigStatus::SUCCESS,
        net_key_index: net,
        app_key_index: app,
    }
    .to_pdu()
}

#[test]
fn client_retries_with_backoff_then_times_out() {
    let mut c = ConfigClient::new(ConfigClientConfig::default());
    let t0 = Instant::ZERO;
    let id = c.request(t0, NODE, add()).unwrap();
    let first = c.poll_transmit().unwrap();
    assert_eq!((first.id, first.dst, first.attempt), (id, NODE, 1));
    assert_eq!(first.access_pdu, add().to_pdu());
    assert!(c.poll_transmit().is_none());
    let mut sent_at = vec![t0];
    while let Some(t) = c.poll_timeout() {
        c.handle_timeout(t);
        // A spurious timeout is a no-op.
        c.handle_timeout(t);
        if let Some(tx) = c.poll_transmit() {
            assert_eq!(tx.attempt, sent_at.len() + 1);
            sent_at.push(t);
        }
    }
    assert_eq!(
        sent_at,
        vec![t0, Instant::from_millis(2_000), Instant::from_millis(6_000)]
    );
    assert_eq!(
        c.poll_event(),
        Some(ConfigEvent::TimedOut { id, dst: NODE })
    );
    assert_eq!(c.pending(), 0);
}

#[test]
fn client_timeouts_are_configurable() {
    let mut c = ConfigClient::new(ConfigClientConfig {
        timeouts: vec![Duration::from_millis(100)],
    });
    let id = c
        .request(Instant::ZERO, NODE, ConfigMessage::NodeReset)
        .unwrap();
    assert_eq!(c.poll_timeout(), Some(Instant::from_millis(100)));
    c.handle_timeout(Instant::from_millis(100));
    assert_eq!(
        c.poll_event(),
        Some(ConfigEvent::TimedOut { id, dst: NODE })
    );
}

#[test]
fn client_matches_replies_and_ignores_the_rest() {
    let mut c = ConfigClient::new(ConfigClientConfig::default());
    let now = Instant::from_millis(500);
    let id = c.request(Instant::ZERO, NODE, add()).unwrap();
    let _ = c.poll_transmit();
    // Wrong source, wrong key indexes, wrong opcode, garbage: ignored.
    assert!(!c.handle_message(now, 0x0200, &status_pdu(0, 1)));
    assert!(!c.handle_message(now, NODE, &status_pdu(0, 2)));
    assert!(!c.handle_message(now, NODE, &status_pdu(1, 1)));
    assert!(
        !c.handle_message(
            now,
            NODE,
            &ConfigMessage::NetKeyStatus {
                status: ConfigStatus::SUCCESS,
                net_key_index: 0
            }
            .to_pdu()
        )
    );
    assert!(!c.handle_message(now, NODE, &[0x80, 0x03]));
    assert!(
        !c.handle_message(now, NODE, &add().to_pdu()),
        "a request is not an answer"
    );
    assert!(c.poll_event().is_none());
    // The right one.
    assert!(c.handle_message(now, NODE, &status_pdu(0, 1)));
    match c.poll_event() {
        Some(ConfigEvent::Response {
            id: got,
            src,
            message,
        }) => {
            assert_eq!((got, src), (id, NODE));
            assert_eq!(message.status(), Some(ConfigStatus::SUCCESS));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.poll_timeout(), None, "no retry after the answer");
    assert!(
        !c.handle_message(now, NODE, &status_pdu(0, 1)),
        "a late duplicate is ignored"
    );
}

#[test]
fn client_matches_model_and_subscription_fields() {
    let mut c = ConfigClient::new(ConfigClientConfig::default());
    let bind = ConfigMessage::ModelAppBind {
        element: 0x0101,
        app_key_index: 1,
        model: vendor(),
    };
    c.request(Instant::ZERO, NODE, bind).unwrap();
    let other_model = ConfigMessage::ModelAppStatus {
        status: ConfigStatus::SUCCESS,
        element: 0x0101,
        app_key_index: 1,
        model: ModelId::Sig(0x1234),
    };
    let other_element = ConfigMessage::ModelAppStatus {
        status: ConfigStatus::SUCCESS,
        element: 0x0100,
        app_key_index: 1,
        model: vendor(),
    };
    let right = ConfigMessage::ModelAppStatus {
        status: ConfigStatus::INVALID_MODEL,
        element: 0x0101,
        app_key_index: 1,
        model: vendor(),
    };
    assert!(!c.handle_message(Instant::ZERO, NODE, &other_model.to_pdu()));
    assert!(!c.handle_message(Instant::ZERO, NODE, &other_element.to_pdu()));
    assert!(c.handle_message(Instant::ZERO, NODE, &right.to_pdu()));

    let sub = ConfigMessage::ModelSubscriptionVirtualAdd {
        element: 0x0100,
        label: LABEL,
        model: ModelId::Sig(0x1000),
    };
    c.request(Instant::ZERO, NODE, sub).unwrap();
    let wrong = ConfigMessage::ModelSubscriptionStatus {
        status: ConfigStatus::SUCCESS,
        element: 0x0100,
        address: 0xc000,
        model: ModelId::Sig(0x1000),
    };
    let right = ConfigMessage::ModelSubscriptionStatus {
        status: ConfigStatus::SUCCESS,
        element: 0x0100,
        address: 0xadd5,
        model: ModelId::Sig(0x1000),
    };
    assert!(!c.handle_message(Instant::ZERO, NODE, &wrong.to_pdu()));
    assert!(c.handle_message(Instant::ZERO, NODE, &right.to_pdu()));
}

#[test]
fn client_sends_one_request_per_node_at_a_time() {
    let mut c = ConfigClient::new(ConfigClientConfig::default());
    let now = Instant::ZERO;
    let a = c.request(now, NODE, add()).unwrap();
    let b = c.request(now, NODE, ConfigMessage::DefaultTtlGet).unwrap();
    let other = c
        .request(now, 0x0200, ConfigMessage::DefaultTtlGet)
        .unwrap();
    let sent: Vec<_> = std::iter::from_fn(|| c.poll_transmit())
        .map(|t| t.id)
        .collect();
    assert_eq!(sent, vec![a, other]);
    // The Default TTL status from NODE does not answer `b` before it is sent.
    let ttl = ConfigMessage::DefaultTtlStatus { ttl: 5 }.to_pdu();
    assert!(!c.handle_message(now, NODE, &ttl));
    assert!(c.handle_message(now, NODE, &status_pdu(0, 1)));
    let next = c.poll_transmit().unwrap();
    assert_eq!((next.id, next.attempt), (b, 1));
    assert!(c.handle_message(now, NODE, &ttl));
    assert!(c.handle_message(now, 0x0200, &ttl));
    assert_eq!(c.pending(), 0);
    // Cancel forgets a request.
    let d = c.request(now, NODE, ConfigMessage::BeaconGet).unwrap();
    assert!(c.cancel(now, d));
    assert!(!c.cancel(now, d));
}

#[test]
fn client_rejects_statuses_and_non_unicast_destinations() {
    let mut c = ConfigClient::new(ConfigClientConfig::default());
    assert!(
        c.request(Instant::ZERO, NODE, ConfigMessage::NodeResetStatus)
            .is_err()
    );
    assert!(
        c.request(Instant::ZERO, 0xc000, ConfigMessage::NodeReset)
            .is_err()
    );
    let mut c = ConfigClient::new(ConfigClientConfig { timeouts: vec![] });
    assert!(
        c.request(Instant::ZERO, NODE, ConfigMessage::NodeReset)
            .is_err()
    );
}
