//! The Config client driving a real transport against a minimal in-test responder (a node
//! that answers AppKey Add and Composition Data Get with its device key), over a lossy air:
//! the glue a driver writes between `ConfigClient` and `Transport`.

mod net_support;

use meshprov::net::config::{
    CompositionPage0, ConfigClient, ConfigClientConfig, ConfigEvent, ConfigMessage, ConfigStatus,
    Element, Features, ModelId,
};
use meshprov::net::network::MemorySeqSource;
use meshprov::net::transport::{AccessSend, Destination, KeySelect, Transport, TransportEvent};
use meshprov::time::Instant;
use net_support::*;

type T = Transport<MemorySeqSource>;

const PROV: u16 = 0x0001;
const NODE: u16 = 0x0100;

fn page0() -> CompositionPage0 {
    CompositionPage0 {
        cid: 0x0059,
        pid: 1,
        vid: 2,
        crpl: 32,
        features: Features(Features::RELAY),
        elements: vec![Element {
            location: 0x0100,
            sig_models: vec![0x0000, 0x1000, 0x1001, 0x1002, 0x1003, 0x1004, 0x1005],
            vendor_models: vec![ModelId::Vendor {
                company_id: 0x0059,
                model_id: 1,
            }],
        }],
    }
}

/// What the toy node answers.
fn answer(req: &ConfigMessage) -> Option<ConfigMessage> {
    match req {
        ConfigMessage::AppKeyAdd {
            net_key_index,
            app_key_index,
            ..
        } => Some(ConfigMessage::AppKeyStatus {
            status: ConfigStatus::SUCCESS,
            net_key_index: *net_key_index,
            app_key_index: *app_key_index,
        }),
        ConfigMessage::CompositionDataGet { .. } => {
            let mut data = Vec::new();
            page0().emit(&mut data);
            Some(ConfigMessage::CompositionDataStatus { page: 0, data })
        }
        _ => None,
    }
}

/// Runs client + provisioner stack + node stack until the client has no pending request.
/// `lose(from_prov, n)` drops the n-th network PDU of one side.
fn drive(
    client: &mut ConfigClient,
    a: &mut T,
    b: &mut T,
    mut lose: impl FnMut(bool, usize) -> bool,
) -> Vec<ConfigEvent> {
    let mut now = Instant::ZERO;
    let mut events = Vec::new();
    let (mut na, mut nb) = (0, 0);
    for _ in 0..10_000 {
        let mut moved = false;
        while let Some(r) = client.poll_transmit() {
            moved = true;
            let m = AccessSend::new(
                0,
                PROV,
                Destination::Address(r.dst),
                KeySelect::Dev,
                r.access_pdu,
            );
            a.send_access(now, m).expect("send request");
        }
        while let Some(p) = a.poll_transmit() {
            moved = true;
            na += 1;
            if !lose(true, na) {
                let _ = b.handle_network_pdu(now, &p.pdu);
            }
        }
        while let Some(p) = b.poll_transmit() {
            moved = true;
            nb += 1;
            if !lose(false, nb) {
                let _ = a.handle_network_pdu(now, &p.pdu);
            }
        }
        while let Some(e) = b.poll_event() {
            moved = true;
            if let TransportEvent::Access(m) = e {
                let req = ConfigMessage::parse_pdu(&m.access_pdu).expect("a Config request");
                if let Some(reply) = answer(&req) {
                    let r = AccessSend::new(
                        0,
                        NODE,
                        Destination::Address(m.src),
                        KeySelect::Dev,
                        reply.to_pdu(),
                    );
                    b.send_access(now, r).expect("send reply");
                }
            }
        }
        while let Some(e) = a.poll_event() {
            moved = true;
            if let TransportEvent::Access(m) = e {
                client.handle_message(now, m.src, &m.access_pdu);
            }
        }
        events.extend(std::iter::from_fn(|| client.poll_event()));
        if moved {
            continue;
        }
        if client.pending() == 0 {
            break;
        }
        let next = [client.poll_timeout(), a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .expect("something is waiting");
        now = now.max(next);
        client.handle_timeout(now);
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    events
}

fn stacks() -> (T, T) {
    let mut a = stack(IV, &[PROV]);
    let mut b = stack(IV, &[NODE]);
    a.add_dev_key(NODE, dev_key(NODE));
    b.add_dev_key(NODE, dev_key(NODE));
    (a, b)
}

#[test]
fn app_key_add_and_segmented_composition_status_over_a_clean_air() {
    let (mut a, mut b) = stacks();
    let mut c = ConfigClient::new(ConfigClientConfig::default());
    let add = c
        .request(
            Instant::ZERO,
            NODE,
            ConfigMessage::AppKeyAdd {
                net_key_index: 0,
                app_key_index: 1,
                key: app_key(),
            },
        )
        .unwrap();
    let comp = c
        .request(
            Instant::ZERO,
            NODE,
            ConfigMessage::CompositionDataGet { page: 0 },
        )
        .unwrap();
    let events = drive(&mut c, &mut a, &mut b, |_, _| false);
    assert_eq!(events.len(), 2);
    match &events[0] {
        ConfigEvent::Response { id, message, .. } => {
            assert_eq!(*id, add);
            assert_eq!(message.status(), Some(ConfigStatus::SUCCESS));
        }
        other => panic!("{other:?}"),
    }
    match &events[1] {
        ConfigEvent::Response {
            id,
            message: ConfigMessage::CompositionDataStatus { page: 0, data },
            ..
        } => {
            assert_eq!(*id, comp);
            assert_eq!(CompositionPage0::parse(data).unwrap(), page0());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lost_reply_is_recovered_by_the_client_retry() {
    let (mut a, mut b) = stacks();
    let mut c = ConfigClient::new(ConfigClientConfig::default());
    let id = c
        .request(
            Instant::ZERO,
            NODE,
            ConfigMessage::AppKeyAdd {
                net_key_index: 0,
                app_key_index: 1,
                key: app_key(),
            },
        )
        .unwrap();
    // Every PDU the node sends for the first attempt is lost — the transport ack, the status,
    // and one re-ack for each of the two retransmitted rounds (MshPRT v1.1 §3.5.3.4: one per
    // SeqAuth and 150 ms) — until the transport gives up; the client's retry gets through.
    let events = drive(&mut c, &mut a, &mut b, |from_prov, n| !from_prov && n <= 4);
    assert!(
        matches!(events.as_slice(), [ConfigEvent::Response { id: got, .. }] if *got == id),
        "{events:?}"
    );
}

#[test]
fn a_silent_node_times_out() {
    let (mut a, mut b) = stacks();
    let mut c = ConfigClient::new(ConfigClientConfig::default());
    let id = c
        .request(Instant::ZERO, NODE, ConfigMessage::NodeReset)
        .unwrap();
    let events = drive(&mut c, &mut a, &mut b, |_, _| false);
    assert_eq!(events, vec![ConfigEvent::TimedOut { id, dst: NODE }]);
}
