//! A real PB-ADV provisioning run between two ESP32 boards (ESP-IDF provisioner and node),
//! `../shared/captures-ext/esp32-pb-adv-hmac.pcap` (see its README), replayed through the wire
//! parsers, the passive `Observer` and a device-role `Links` table (MshPRT v1.1 §5.2.1, §5.3).
//!
//! The capture is read in place; the test fails (never skips) if it is missing.

use std::fs::File;
use std::time::Duration;

use meshprov::bearer::pb_adv::{
    Direction, LinkEvent, LinkId, Links, ObservedKind, Observer, PbAdvConfig, Role,
};
use meshprov::time::Instant;
use meshprov::wire::pb_adv::LinkCloseReason;
use meshprov::wire::{Algorithm, PbAdvPdu, ProvisioningPdu};
use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/captures-ext/esp32-pb-adv-hmac.pcap"
);

/// AD type of PB-ADV (Core Specification Supplement; MshPRT v1.1 §5.2.1).
const AD_PB_ADV: u8 = 0x29;

/// The PB-ADV payloads of the capture with their times since the first packet.
///
/// Link type 256 (BLUETOOTH_LE_LL_WITH_PHDR): a 10-octet RF pseudo-header, then the LE
/// advertising channel packet: access address (4), PDU header (2; payload length in the second
/// octet), AdvA (6), AdvData, CRC (3). AdvData is a list of `len ‖ type ‖ data` structures.
fn pb_adv_payloads() -> Vec<(Instant, Vec<u8>)> {
    let file = File::open(CAPTURE)
        .unwrap_or_else(|e| panic!("capture {CAPTURE} must be present (not skipping): {e}"));
    let mut reader = PcapReader::new(file).expect("a classic pcap file");
    assert_eq!(
        reader.header().datalink,
        DataLink::BLUETOOTH_LE_LL_WITH_PHDR
    );
    let mut first: Option<Duration> = None;
    let mut out = Vec::new();
    let mut packets = 0;
    while let Some(packet) = reader.next_packet() {
        let packet = packet.expect("a readable packet");
        packets += 1;
        let t0 = *first.get_or_insert(packet.timestamp);
        let at = Instant::from_epoch(packet.timestamp.saturating_sub(t0));
        let ll = &packet.data[10..];
        let length = usize::from(ll[5]);
        let payload = &ll[6..6 + length];
        assert_eq!(
            ll.len(),
            6 + length + 3,
            "access address, header, payload, CRC"
        );
        let Some(mut ad) = payload.get(6..) else {
            continue;
        };
        while let [len, rest @ ..] = ad {
            let len = usize::from(*len);
            if len == 0 || len > rest.len() {
                break;
            }
            let (structure, tail) = rest.split_at(len);
            if structure[0] == AD_PB_ADV {
                out.push((at, structure[1..].to_vec()));
            }
            ad = tail;
        }
    }
    assert_eq!(packets, 257, "the capture README says 257 packets");
    out
}

#[test]
fn esp32_capture_reassembles_a_complete_hmac_provisioning_run() {
    let payloads = pb_adv_payloads();
    assert!(payloads.len() > 100, "{} PB-ADV payloads", payloads.len());
    assert!(
        payloads.windows(2).all(|w| w[0].0 <= w[1].0),
        "in time order"
    );

    // Every payload parses with the wire layer.
    for (at, p) in &payloads {
        PbAdvPdu::parse(p)
            .unwrap_or_else(|e| panic!("at {at:?}: {} does not parse: {e}", hex::encode(p)));
    }

    let mut observer = Observer::new();
    for (at, p) in &payloads {
        observer.handle_adv(*at, p);
    }
    let seen: Vec<_> = std::iter::from_fn(|| observer.poll_observation()).collect();
    let stats = observer.stats();
    assert_eq!(stats.ignored, 0);
    assert_eq!(stats.fcs_errors, 0, "every transaction has a valid FCS");
    assert_eq!(
        observer.incomplete(),
        0,
        "no transaction left half reassembled"
    );
    assert!(
        stats.duplicates > 0,
        "the ESP32s retransmit every transaction"
    );
    assert!(
        !seen
            .iter()
            .any(|o| matches!(o.kind, ObservedKind::BadTransaction { .. })),
        "{seen:#?}"
    );

    let links: std::collections::BTreeSet<LinkId> = seen.iter().map(|o| o.link).collect();
    assert_eq!(links.len(), 1, "one link");
    let link = *links.first().unwrap();
    let uuid = seen
        .iter()
        .find_map(|o| match o.kind {
            ObservedKind::LinkOpen { uuid } => Some(uuid),
            _ => None,
        })
        .expect("Link Open seen");
    assert!(
        seen.iter().any(|o| o.kind == ObservedKind::LinkAck),
        "Link ACK seen"
    );
    assert!(
        seen.iter().any(|o| o.kind
            == ObservedKind::LinkClose {
                reason: LinkCloseReason::SUCCESS
            }),
        "Link Close (Success) seen"
    );
    assert!(seen.iter().any(|o| o.kind == ObservedKind::TransactionAck));

    let transactions: Vec<(Direction, Vec<u8>)> = seen
        .iter()
        .filter_map(|o| match &o.kind {
            ObservedKind::Transaction { direction, pdu } => Some((*direction, pdu.clone())),
            _ => None,
        })
        .collect();
    let types: Vec<u8> = transactions.iter().map(|(_, p)| p[0]).collect();
    assert_eq!(types, [0, 1, 2, 3, 3, 5, 5, 6, 6, 7, 8]);
    use Direction::{DeviceToProvisioner as D, ProvisionerToDevice as P};
    let directions: Vec<Direction> = transactions.iter().map(|(d, _)| *d).collect();
    assert_eq!(directions, [P, D, P, P, D, P, D, P, D, P, D]);
    for (_, pdu) in &transactions {
        let parsed = ProvisioningPdu::parse(pdu)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", hex::encode(pdu)));
        match parsed {
            ProvisioningPdu::Start(start) => assert_eq!(start.algorithm, Algorithm::HMAC_SHA256),
            ProvisioningPdu::Confirmation(v) | ProvisioningPdu::Random(v) => {
                assert_eq!(v.len(), 32)
            }
            _ => {}
        }
        ProvisioningPdu::parse_with_algorithm(pdu, Algorithm::HMAC_SHA256).unwrap();
    }

    // A device-role table fed the same air (both directions; its own direction's traffic is
    // the device's, which a real device would not hear back, and must be ignored or counted
    // as harmless) delivers the provisioner's six PDUs exactly once, in order.
    let mut device = Links::new(
        Role::Device { uuid },
        PbAdvConfig::default(),
        Box::new(ChaCha20Rng::seed_from_u64(1)),
    );
    let mut events = Vec::new();
    for (at, p) in &payloads {
        device.handle_adv(*at, p);
        while device.poll_transmit(*at).is_some() {}
        events.extend(std::iter::from_fn(|| device.poll_event()));
    }
    let received: Vec<Vec<u8>> = events
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Received(l, p) if *l == link => Some(p.clone()),
            _ => None,
        })
        .collect();
    let from_provisioner: Vec<Vec<u8>> = transactions
        .iter()
        .filter(|(d, _)| *d == P)
        .map(|(_, p)| p.clone())
        .collect();
    assert_eq!(received, from_provisioner);
    assert_eq!(events.first(), Some(&LinkEvent::Opened(link)));
    assert!(events.contains(&LinkEvent::Closed(
        link,
        meshprov::bearer::CloseCause::Remote(LinkCloseReason::SUCCESS)
    )));

    let first = seen.first().unwrap().at;
    let last = seen.last().unwrap().at;
    eprintln!(
        "capture: {} PB-ADV payloads, link {link}, {} transactions, {} duplicate segments, \
         provisioning took {:?}",
        payloads.len(),
        transactions.len(),
        stats.duplicates,
        last.saturating_duration_since(first)
    );
}
