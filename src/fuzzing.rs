//! Fuzz target bodies (issue 11): one function per target, each taking arbitrary bytes.
//!
//! Every parser and state machine that takes outside input has a function here that parses
//! or drives it with `data` and asserts the invariants that must hold for *any* input: no
//! panic; parse → encode → parse gives the same value where the format has an encoder; state
//! machines stay within their bounds (one session per link, reassembly buffers drained by
//! their timers, transmits that fit the bearer) and finish when time runs out.
//!
//! The functions live in the main crate so that they run on the stable toolchain:
//! `tests/fuzz/fuzz_targets/NAME.rs` (cargo-fuzz, nightly) is a three-line wrapper around
//! `meshprov::fuzzing::NAME` and `tests/fuzz_smoke.rs` runs each of them over its seed corpus
//! (`tests/fuzz/corpus/NAME/`) and a few thousand seeded random mutations in `cargo test`.
//! [`TARGETS`] lists them by name.
//!
//! Inputs that drive a state machine are read as a script by [`Script`]: an operation octet,
//! then a length octet and that many octets, repeated. Where a MIC would stop the fuzzer
//! (network and transport PDUs, proxy configuration), some operations first secure the fuzzed
//! octets with the known test NetKey and feed the result, so the layers above the MIC check
//! see fuzzed plaintext.
//!
//! A failed assertion here is a bug in meshprov, not in the fuzz target: every assertion
//! states a property the module under test promises in its documentation.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use mesh_crypto::network::NetworkHeader;
use mesh_crypto::{AppKey, DevKey, NetKey};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::bearer::pb_adv::{Links, PbAdvConfig, Role};
use crate::bearer::pb_gatt::{MAX_MESSAGE_LEN, PbGattLink, ProxySar};
use crate::host::{Host, MemorySink};
use crate::net::access::AccessMessage;
use crate::net::config::{CompositionPage0, ConfigClient, ConfigClientConfig, ConfigMessage};
use crate::net::network::{IvIndex, MemorySeqSource, NetworkConfig, NetworkLayer};
use crate::net::proxy::{ProxyClient, ProxyClientConfig, ProxyServer, ProxyServerConfig};
use crate::net::transport::{
    AccessSend, Destination, KeySelect, LowerPdu, Transport, TransportConfig,
};
use crate::provisioning::{AuthPolicy, ProvisionerConfig, ProvisioningParams, RecordsPolicy};
use crate::time::Instant;
use crate::uuid::DeviceUuid;
use crate::wire::beacon::{MeshBeacon, PbGattServiceData, ProxyServiceData};
use crate::wire::pb_adv::{GenericProvisioningPdu, PbAdvPdu, TransactionStart, segment};
use crate::wire::prov::{Algorithm, Capabilities, ProvisioningPdu, Start};
use crate::wire::proxy::{ProxyConfigMessage, ProxyMessageType, ProxyPdu};

/// A fuzz target body.
pub type Target = fn(&[u8]);

/// Every target: its name (the cargo-fuzz target and corpus directory) and its function.
pub const TARGETS: &[(&str, Target)] = &[
    ("prov_pdu", prov_pdu),
    ("pb_adv", pb_adv),
    ("proxy_sar", proxy_sar),
    ("network", network),
    ("access_config", access_config),
    ("beacon", beacon),
    ("cert", cert),
    ("decode", decode),
    ("plan", plan),
    ("cdb", cdb),
    ("building", building),
];

/// The NetKey of the network targets: the MshPRT v1.1 §8.3 sample NetKey
/// (`../shared/vectors/network.json`), so seeds cut from the sample PDUs decrypt.
pub const NET_KEY: [u8; 16] = [
    0x7d, 0xd7, 0x36, 0x4c, 0xd8, 0x42, 0xad, 0x18, 0xc1, 0x7c, 0x2b, 0x82, 0x0c, 0x84, 0xc3, 0xd6,
];

/// The IV Index of the network targets (that of the §8.3 samples).
pub const IV_INDEX: u32 = 0x1234_5678;

/// The NetKey of the ESP32 PB-ADV capture in `../shared/captures-ext` (published with it),
/// so that the decoder decrypts seeds cut from that capture (IV Index 0).
pub const CAPTURE_NET_KEY: [u8; 16] = [
    0x99, 0xd8, 0x96, 0x27, 0xbc, 0x96, 0xd8, 0xe4, 0x9c, 0x62, 0xcf, 0x0a, 0xd7, 0x66, 0x24, 0xca,
];

/// The AppKey of the network targets (index 0, bound to NetKey index 0).
pub const APP_KEY: [u8; 16] = [0x63; 16];

/// The unicast address of the stack under test in the network targets (one element).
pub const OUR_ADDRESS: u16 = 0x0001;

/// The peer that sends to it, whose device key the stack knows.
pub const PEER_ADDRESS: u16 = 0x0100;

fn dev_key() -> DevKey {
    DevKey::from_bytes([0x5a; 16])
}

/// A reader of a fuzz input as a script: operation octets and length-prefixed chunks.
/// Reading past the end gives zeros and empty chunks, so every input is a valid script.
#[derive(Debug, Clone)]
pub struct Script<'a> {
    data: &'a [u8],
}

impl<'a> Script<'a> {
    /// A script over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether anything is left.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next octet (0 at the end).
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two octets, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// Up to `n` octets.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A chunk: a length octet, then up to that many octets.
    pub fn chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.take(n)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}

// ---------------------------------------------------------------------------------------------
// Provisioning PDUs (src/wire/prov.rs)

/// Provisioning PDUs, MshPRT v1.1 §5.4.1: every type, both algorithms' Confirmation and
/// Random lengths. Parse → emit → parse is the identity; a PDU accepted under an algorithm
/// has that algorithm's value length; Capabilities and Start parameters parse on their own
/// and a parsed Start is checked against a parsed Capabilities without panicking.
pub fn prov_pdu(data: &[u8]) {
    if let Ok(pdu) = ProvisioningPdu::parse(data) {
        let bytes = pdu.to_vec();
        assert_eq!(bytes.first(), data.first(), "type octet kept");
        let again = ProvisioningPdu::parse(&bytes).expect("an emitted PDU parses");
        assert_eq!(again, pdu, "parse → emit → parse");
        assert_eq!(again.to_vec(), bytes, "emit is stable");
    }
    for algorithm in [
        Algorithm::CMAC_AES128,
        Algorithm::HMAC_SHA256,
        Algorithm(data.last().copied().unwrap_or(2)),
    ] {
        if let Ok(pdu) = ProvisioningPdu::parse_with_algorithm(data, algorithm) {
            assert_eq!(ProvisioningPdu::parse(data).as_ref(), Ok(&pdu));
            if let (ProvisioningPdu::Confirmation(v) | ProvisioningPdu::Random(v), Some(len)) =
                (&pdu, algorithm.value_len())
            {
                assert_eq!(v.len(), len, "value length of {algorithm:?}");
            }
        }
    }
    let caps = Capabilities::parse_params(data.get(..11).unwrap_or(data));
    if let Ok(c) = &caps {
        assert_eq!(Capabilities::parse_params(&c.params()).as_ref(), Ok(c));
    }
    let start = Start::parse_params(data.get(data.len().saturating_sub(5)..).unwrap_or(data));
    if let Ok(s) = &start {
        assert_eq!(Start::parse_params(&s.params()).as_ref(), Ok(s));
    }
    if let (Ok(c), Ok(s)) = (caps, start) {
        let _ = s.check_against(&c);
    }
}

// ---------------------------------------------------------------------------------------------
// PB-ADV (src/bearer/pb_adv.rs, src/host.rs)

fn provisioning_params() -> ProvisioningParams {
    ProvisioningParams {
        net_key: NetKey::from_bytes(NET_KEY),
        net_key_index: 0,
        flags: 0,
        iv_index: IV_INDEX,
    }
}

/// Emits a PB-ADV PDU.
fn pb_adv_pdu(link_id: u32, transaction_number: u8, pdu: GenericProvisioningPdu) -> Vec<u8> {
    let mut out = Vec::new();
    PbAdvPdu {
        link_id,
        transaction_number,
        pdu,
    }
    .emit(&mut out);
    out
}

/// PB-ADV, MshPRT v1.1 §5.2.1, §5.3, on the provisioner side: a [`Host`] with one session on
/// an open link (the device's Link ACK is fed first) is fed PB-ADV payloads in time order:
/// raw payloads (with our Link ID put in or not), whole transactions carrying fuzzed
/// provisioning PDUs with a valid FCS (so the provisioner's state machine sees them),
/// acknowledgments of what it sent, and time steps. The raw input also goes through the
/// PB-ADV PDU parser (parse → emit → parse) and a bare provisioner [`Links`] table.
///
/// Invariants: every transmit is a PB-ADV PDU of our link; at most one session is active;
/// the provisioning records fetch is bounded; once the link and protocol timers have run out
/// the host is idle (the session ended and the link closed).
pub fn pb_adv(data: &[u8]) {
    if let Ok(p) = PbAdvPdu::parse(data) {
        let mut out = Vec::new();
        p.emit(&mut out);
        assert_eq!(
            PbAdvPdu::parse(&out).as_ref(),
            Ok(&p),
            "parse → emit → parse"
        );
    }
    if let Ok(p) = GenericProvisioningPdu::parse(data) {
        let mut out = Vec::new();
        p.emit(&mut out);
        assert_eq!(GenericProvisioningPdu::parse(&out).as_ref(), Ok(&p));
    }

    let mut s = Script::new(data);
    let flags = s.u8();
    let config = ProvisionerConfig {
        auth: if flags & 1 == 0 {
            AuthPolicy::NoOob
        } else {
            AuthPolicy::Auto {
                static_oob: Some(vec![0x42; 16]),
            }
        },
        allow_no_oob: true,
        records: if flags & 2 == 0 {
            RecordsPolicy::None
        } else {
            RecordsPolicy::pb_adv()
        },
        ..ProvisionerConfig::default()
    };
    let mut host = Host::new(
        provisioning_params(),
        PbAdvConfig::default(),
        Box::new(ChaCha20Rng::seed_from_u64(1)),
        None,
    );
    let mut sink = MemorySink::default();
    let mut now = Instant::ZERO;
    let uuid = DeviceUuid([0xdd; 16]);
    let session = host.open_adv(
        now,
        uuid,
        "fuzz".into(),
        config,
        Box::new(ChaCha20Rng::seed_from_u64(2)),
    );
    // The first transmit is our Link Open: it names the Link ID.
    let Some(open) = host.poll_adv_transmit(now) else {
        panic!("a new session sends Link Open at once");
    };
    let link_id = PbAdvPdu::parse(&open).expect("Link Open parses").link_id;
    let mut links = Links::new(
        Role::Provisioner,
        PbAdvConfig::default(),
        Box::new(ChaCha20Rng::seed_from_u64(3)),
    );
    let bare = links
        .open(now, uuid.0)
        .expect("an empty table opens a link");
    let mut sent_xacts: Vec<u8> = Vec::new();
    let mut device_xact: u8 = 0x80;
    let feed = |host: &mut Host, links: &mut Links, now: Instant, payload: &[u8]| {
        host.handle_adv(now, payload);
        links.handle_adv(now, payload);
    };
    feed(
        &mut host,
        &mut links,
        now,
        &pb_adv_pdu(
            link_id,
            0,
            GenericProvisioningPdu::BearerControl(crate::wire::pb_adv::BearerControl::LinkAck),
        ),
    );
    settle_host(
        &mut host,
        &mut links,
        now,
        &mut sink,
        link_id,
        &mut sent_xacts,
    );
    let mut steps = 0;
    while !s.is_empty() && steps < 256 {
        steps += 1;
        let op = s.u8();
        match op % 5 {
            0 => {
                let payload = s.chunk();
                feed(&mut host, &mut links, now, payload);
            }
            1 => {
                // A raw payload on our link.
                let mut payload = link_id.to_be_bytes().to_vec();
                payload.extend_from_slice(s.chunk());
                feed(&mut host, &mut links, now, &payload);
                let mut bare_payload = bare.0.to_be_bytes().to_vec();
                bare_payload.extend_from_slice(&payload[4..]);
                links.handle_adv(now, &bare_payload);
            }
            2 => {
                // A whole provisioning PDU from the device, segmented with a valid FCS.
                let pdu = s.chunk();
                if let Ok(segments) = segment(pdu) {
                    for seg in segments {
                        let bytes = pb_adv_pdu(link_id, device_xact, seg);
                        feed(&mut host, &mut links, now, &bytes);
                    }
                }
                if op & 0x80 == 0 {
                    device_xact = device_xact.wrapping_add(1) | 0x80;
                }
            }
            3 => {
                // Acknowledge what the provisioner sent.
                for &x in &sent_xacts {
                    let ack = pb_adv_pdu(link_id, x, GenericProvisioningPdu::TransactionAck);
                    feed(&mut host, &mut links, now, &ack);
                }
            }
            _ => {
                now += Duration::from_millis(u64::from(s.u8()) * 40);
                host.handle_timeout(now);
                links.handle_timeout(now);
            }
        }
        settle_host(
            &mut host,
            &mut links,
            now,
            &mut sink,
            link_id,
            &mut sent_xacts,
        );
        assert!(host.active() <= 1, "one session");
        assert!(links.len() <= 1, "one link in the bare table");
    }
    // Let every timer run out: the session must end and its link close.
    let end = now + Duration::from_secs(300);
    let mut rounds = 0;
    while let Some(t) = host.poll_timeout() {
        if t > end || rounds > 100_000 {
            break;
        }
        rounds += 1;
        now = t.max(now);
        host.handle_timeout(now);
        settle_host(
            &mut host,
            &mut links,
            now,
            &mut sink,
            link_id,
            &mut sent_xacts,
        );
    }
    now = end;
    host.handle_timeout(now);
    links.handle_timeout(now);
    settle_host(
        &mut host,
        &mut links,
        now,
        &mut sink,
        link_id,
        &mut sent_xacts,
    );
    assert!(
        host.session(session).is_some_and(|s| s.is_finished()),
        "the session ends when its timers run out: {:?} in {}",
        host.session(session).map(|s| &s.result),
        host.session(session).map_or("?", |s| s.state_name()),
    );
    assert!(host.is_idle(), "the link is closed when the timers run out");
}

/// Drives the host at `now` until quiet, checking its transmits.
fn settle_host(
    host: &mut Host,
    links: &mut Links,
    now: Instant,
    sink: &mut MemorySink,
    link_id: u32,
    sent_xacts: &mut Vec<u8>,
) {
    let mut rounds = 0;
    while host.drive(now, sink) {
        rounds += 1;
        assert!(rounds < 10_000, "Host::drive settles");
    }
    while let Some(tx) = host.poll_adv_transmit(now) {
        let p = PbAdvPdu::parse(&tx).expect("the host transmits valid PB-ADV PDUs");
        assert_eq!(p.link_id, link_id, "transmits belong to our link");
        if let GenericProvisioningPdu::TransactionStart(TransactionStart { .. }) = p.pdu {
            assert!(
                p.transaction_number < 0x80,
                "provisioner transaction numbers"
            );
            if !sent_xacts.contains(&p.transaction_number) {
                sent_xacts.push(p.transaction_number);
                if sent_xacts.len() > 8 {
                    sent_xacts.remove(0);
                }
            }
        }
    }
    while host.poll_event().is_some() {}
    while links.poll_transmit(now).is_some() {}
    while links.poll_event().is_some() {}
}

// ---------------------------------------------------------------------------------------------
// PB-GATT and proxy SAR (src/bearer/pb_gatt.rs, src/net/proxy.rs)

/// A receiving stack on subnet 0 with [`OUR_ADDRESS`], and the peer's device key and the
/// AppKey.
fn stack() -> Transport<MemorySeqSource> {
    stack_at(OUR_ADDRESS, PEER_ADDRESS)
}

/// The peer's stack: sends from [`PEER_ADDRESS`] with the same keys.
fn peer_stack() -> Transport<MemorySeqSource> {
    stack_at(PEER_ADDRESS, OUR_ADDRESS)
}

/// A stack on subnet 0 whose element is `own`, with the AppKey and `other`'s device key.
fn stack_at(own: u16, other: u16) -> Transport<MemorySeqSource> {
    let mut net = NetworkLayer::new(
        NetworkConfig::default(),
        IvIndex {
            index: IV_INDEX,
            update: false,
        },
        MemorySeqSource::new(),
    );
    net.add_subnet(0, &NetKey::from_bytes(NET_KEY));
    net.add_element(own);
    let mut t = Transport::new(TransportConfig::default(), net);
    t.add_app_key(0, 0, AppKey::from_bytes(APP_KEY));
    t.add_dev_key(other, dev_key());
    t
}

/// Secures `transport_pdu` as a network PDU from the peer with a header taken from `s`.
fn encrypt_from_peer(
    peer: &mut Transport<MemorySeqSource>,
    s: &mut Script<'_>,
    transport_pdu: &[u8],
) -> Option<Vec<u8>> {
    let bits = s.u8();
    let ctl = bits & 1 != 0;
    let ttl = (bits >> 1) & 0x7f;
    let dst = match bits >> 6 {
        0 => OUR_ADDRESS,
        1 => 0xffff,
        2 => 0x0000,
        _ => s.u16(),
    };
    let seq = peer.network_mut().next_seq(PEER_ADDRESS).ok()?;
    let header = NetworkHeader {
        ctl,
        ttl,
        seq,
        src: PEER_ADDRESS,
        dst,
    };
    peer.network()
        .encrypt(0, &header, transport_pdu)
        .ok()
        .map(|t| t.pdu)
}

/// PB-GATT and proxy SAR, MshPRT v1.1 §5.2.2, §6.3.1, §6.5–§6.7: Proxy PDUs and proxy
/// configuration messages round-trip through their parsers; a [`PbGattLink`], a
/// [`ProxyClient`] (after its filter set-up has started) and a [`ProxyServer`] are fed the
/// same notifications / writes in time order — raw segments, and messages the peer secured
/// with the test NetKey (proxy configuration messages built from fuzzed octets, network PDUs
/// around fuzzed transport PDUs) segmented at the connection's MTU.
///
/// Invariants: a reassembled message is at most [`MAX_MESSAGE_LEN`] octets; every transmit
/// fits the ATT MTU; the server's filter never exceeds its capacity; reassembly state is
/// dropped by the 20 s SAR timeout.
pub fn proxy_sar(data: &[u8]) {
    if let Ok(p) = ProxyPdu::parse(data) {
        let mut out = Vec::new();
        p.emit(&mut out);
        assert_eq!(ProxyPdu::parse(&out).as_ref(), Ok(&p));
    }
    if let Ok(m) = ProxyConfigMessage::parse(data) {
        assert_eq!(ProxyConfigMessage::parse(&m.to_vec()).as_ref(), Ok(&m));
    }

    let mut s = Script::new(data);
    let mtu = 23 + u16::from(s.u8() % 64);
    let mut now = Instant::ZERO;
    let mut gatt = PbGattLink::new(mtu);
    let mut client_stack = stack();
    let mut client = ProxyClient::new(ProxyClientConfig::default());
    client.add_subnet(0, &NetKey::from_bytes(NET_KEY));
    let _ = client.connect(now, mtu, &mut client_stack);
    let mut server_stack = stack();
    let server_config = ProxyServerConfig::default();
    let filter_capacity = server_config.filter_capacity;
    let mut server = ProxyServer::new(mtu, OUR_ADDRESS, server_config);
    let mut peer = peer_stack();
    let sar = ProxySar::new(mtu);
    let max_value = usize::from(mtu) - 3;

    let mut steps = 0;
    while !s.is_empty() && steps < 256 {
        steps += 1;
        let op = s.u8();
        let values: Vec<Vec<u8>> = match op % 4 {
            0 => vec![s.chunk().to_vec()],
            1 => {
                let msg = s.chunk();
                peer.network_mut()
                    .encrypt_proxy_config(0, PEER_ADDRESS, msg)
                    .map(|pdu| sar.segment(ProxyMessageType::PROXY_CONFIGURATION, &pdu))
                    .unwrap_or_default()
            }
            2 => {
                let transport_pdu = s.chunk();
                let ty = ProxyMessageType(s.u8() % 5);
                encrypt_from_peer(&mut peer, &mut s, transport_pdu)
                    .map(|pdu| sar.segment(ty, &pdu))
                    .unwrap_or_default()
            }
            _ => {
                now += Duration::from_millis(u64::from(s.u8()) * 100);
                if gatt.handle_timeout(now).is_some() {
                    gatt = PbGattLink::new(mtu);
                }
                client.handle_timeout(now, &mut client_stack);
                let _ = server.handle_timeout(now);
                Vec::new()
            }
        };
        for v in values {
            match gatt.handle_data(now, &v) {
                Ok(Some(pdu)) => assert!(pdu.len() <= MAX_MESSAGE_LEN),
                Ok(None) => {}
                // A SAR violation drops the connection: start a new one.
                Err(_) => gatt = PbGattLink::new(mtu),
            }
            let _ = client.handle_notification(now, &v, &mut client_stack);
            if server.handle_data(now, &v, &mut server_stack).is_err() {
                server = ProxyServer::new(mtu, OUR_ADDRESS, ProxyServerConfig::default());
            }
        }
        while let Some(tx) = client.poll_transmit() {
            assert!(tx.len() <= max_value, "client writes fit the MTU");
        }
        while client.poll_event().is_some() {}
        while let Some(tx) = server.poll_transmit() {
            assert!(tx.len() <= max_value, "server notifications fit the MTU");
        }
        while server.poll_relay().is_some() {}
        assert!(server.filter_addresses().count() <= filter_capacity);
        for t in [&mut client_stack, &mut server_stack] {
            while t.poll_event().is_some() {}
            while t.poll_transmit().is_some() {}
        }
    }
    // The 20 s SAR timeout (§6.6) drops every partial message.
    now += Duration::from_secs(21);
    let _ = gatt.handle_timeout(now);
    assert!(
        gatt.poll_timeout().is_none(),
        "PB-GATT SAR state dropped after 20 s"
    );
    let _ = server.handle_timeout(now);
    assert!(
        server.poll_timeout().is_none(),
        "proxy server SAR state dropped after 20 s"
    );
}

// ---------------------------------------------------------------------------------------------
// Network and transport (src/net/network.rs, src/net/transport.rs)

/// Network and lower / upper transport layers, MshPRT v1.1 §3.4–§3.7: a stack that knows the
/// test NetKey, AppKey and the peer's device key is fed network PDUs in time order — raw
/// octets; network PDUs the peer secured around fuzzed transport PDUs (so lower transport
/// parsing and segment reassembly see fuzzed octets behind a valid NetMIC); and access
/// messages the peer's own stack sent (segmented or not) around fuzzed access PDUs. The
/// lower transport parser round-trips (parse → emit → parse).
///
/// Invariants: no panic; events are drained; once the reassembly and segment-ack timers
/// have run out nothing is being reassembled.
pub fn network(data: &[u8]) {
    for ctl in [false, true] {
        if let Ok(p) = LowerPdu::parse(ctl, data) {
            assert_eq!(p.is_control(), ctl);
            assert_eq!(LowerPdu::parse(ctl, &p.to_vec()).as_ref(), Ok(&p));
        }
    }
    let mut s = Script::new(data);
    let mut now = Instant::ZERO;
    let mut rx = stack();
    let mut peer = peer_stack();
    let mut steps = 0;
    while !s.is_empty() && steps < 256 {
        steps += 1;
        let op = s.u8();
        let pdus: Vec<Vec<u8>> = match op % 4 {
            0 => vec![s.chunk().to_vec()],
            1 => {
                let transport_pdu = s.chunk();
                encrypt_from_peer(&mut peer, &mut s, transport_pdu)
                    .into_iter()
                    .collect()
            }
            2 => {
                let access_pdu = s.chunk().to_vec();
                let bits = s.u8();
                let mut msg = AccessSend::new(
                    0,
                    PEER_ADDRESS,
                    Destination::Address(OUR_ADDRESS),
                    if bits & 1 == 0 {
                        KeySelect::Dev
                    } else {
                        KeySelect::App(0)
                    },
                    access_pdu,
                );
                msg.big_mic = bits & 2 != 0;
                msg.force_segmented = bits & 4 != 0;
                // Segments may be lost (bit 3) or repeated (bit 4).
                let _ = peer.send_access(now, msg);
                let mut out = Vec::new();
                let mut i = 0u32;
                while let Some(t) = peer.poll_transmit() {
                    i += 1;
                    if bits & 8 != 0 && i.is_multiple_of(2) {
                        continue;
                    }
                    if bits & 16 != 0 {
                        out.push(t.pdu.clone());
                    }
                    out.push(t.pdu);
                }
                out
            }
            _ => {
                now += Duration::from_millis(u64::from(s.u8()) * 50);
                rx.handle_timeout(now);
                peer.handle_timeout(now);
                Vec::new()
            }
        };
        for p in pdus {
            let _ = rx.handle_network_pdu(now, &p);
        }
        // The receiver's acks go back to the peer.
        while let Some(t) = rx.poll_transmit() {
            let _ = peer.handle_network_pdu(now, &t.pdu);
        }
        while rx.poll_event().is_some() {}
        while peer.poll_event().is_some() {}
        while peer.poll_transmit().is_some() {}
    }
    // Run every timer out.
    let end = now + Duration::from_secs(120);
    let mut rounds = 0;
    while let Some(t) = rx.poll_timeout() {
        if t > end || rounds > 10_000 {
            break;
        }
        rounds += 1;
        now = t.max(now);
        rx.handle_timeout(now);
        while rx.poll_transmit().is_some() {}
        while rx.poll_event().is_some() {}
    }
    rx.handle_timeout(end);
    assert_eq!(
        rx.reassembling(),
        0,
        "incomplete messages are dropped by their timer"
    );
}

// ---------------------------------------------------------------------------------------------
// Access and Config (src/net/access.rs, src/net/config.rs)

/// Access messages and Configuration messages, MshPRT v1.1 §3.7.3, §4.3.2: the access
/// message and Config message parsers round-trip (parse → emit → parse), Composition Data
/// page 0 round-trips, and a [`ConfigClient`] is driven by the script — requests parsed from
/// fuzzed octets, responses from fuzzed octets, time steps.
///
/// Invariants: a request is answered at most once; when every timeout has passed nothing is
/// pending.
pub fn access_config(data: &[u8]) {
    if let Ok(m) = AccessMessage::parse(data) {
        assert_eq!(AccessMessage::parse(&m.to_vec()).as_ref(), Ok(&m));
    }
    if let Ok(m) = ConfigMessage::parse_pdu(data) {
        let pdu = m.to_pdu();
        let again = ConfigMessage::parse_pdu(&pdu).expect("an emitted Config message parses");
        assert_eq!(again, m, "parse → emit → parse");
        if let ConfigMessage::CompositionDataStatus { page: 0, data } = &m
            && let Ok(c) = CompositionPage0::parse(data)
        {
            let mut out = Vec::new();
            c.emit(&mut out);
            assert_eq!(CompositionPage0::parse(&out).as_ref(), Ok(&c));
        }
    }
    if let Ok(c) = CompositionPage0::parse(data) {
        let mut out = Vec::new();
        c.emit(&mut out);
        assert_eq!(CompositionPage0::parse(&out).as_ref(), Ok(&c));
    }

    let mut s = Script::new(data);
    let mut now = Instant::ZERO;
    let mut client = ConfigClient::new(ConfigClientConfig::default());
    let mut requested = 0usize;
    let mut answered = 0usize;
    let mut steps = 0;
    while !s.is_empty() && steps < 256 {
        steps += 1;
        match s.u8() % 3 {
            0 => {
                if let Ok(m) = ConfigMessage::parse_pdu(s.chunk())
                    && client.request(now, PEER_ADDRESS, m).is_ok()
                {
                    requested += 1;
                }
            }
            1 => {
                let src = if s.u8() & 1 == 0 {
                    PEER_ADDRESS
                } else {
                    0x0200
                };
                if client.handle_message(now, src, s.chunk()) {
                    answered += 1;
                }
            }
            _ => {
                now += Duration::from_millis(u64::from(s.u8()) * 100);
                client.handle_timeout(now);
            }
        }
        while client.poll_transmit().is_some() {}
        while client.poll_event().is_some() {}
        assert!(answered <= requested, "every answer matches one request");
        assert!(client.pending() <= requested - answered);
    }
    let mut rounds = 0;
    while let Some(t) = client.poll_timeout() {
        rounds += 1;
        assert!(rounds < 100_000, "Config client timers run out");
        now = t.max(now);
        client.handle_timeout(now);
        while client.poll_transmit().is_some() {}
        while client.poll_event().is_some() {}
    }
    assert_eq!(client.pending(), 0, "every request answered or timed out");
}

// ---------------------------------------------------------------------------------------------
// Beacons and service data (src/wire/beacon.rs)

/// Mesh beacons (MshPRT v1.1 §3.10) and the PB-GATT / Mesh Proxy service data (§7.1.2.2.1,
/// §7.2.2.2.1): parse → emit → parse is the identity for each; a parsed Secure Network
/// Beacon is authenticated against the test NetKey without panicking.
pub fn beacon(data: &[u8]) {
    if let Ok(b) = MeshBeacon::parse(data) {
        let mut out = Vec::new();
        b.emit(&mut out);
        assert_eq!(MeshBeacon::parse(&out).as_ref(), Ok(&b));
    }
    if let Ok(b) = PbGattServiceData::parse(data) {
        let mut out = Vec::new();
        b.emit(&mut out);
        assert_eq!(PbGattServiceData::parse(&out).as_ref(), Ok(&b));
    }
    if let Ok(b) = ProxyServiceData::parse(data) {
        let mut out = Vec::new();
        b.emit(&mut out);
        assert_eq!(ProxyServiceData::parse(&out).as_ref(), Ok(&b));
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates and provisioning records (src/cert/)

/// A test PKI: a root, an intermediate and a device certificate, made once.
struct TestPki {
    root: Vec<u8>,
    intermediate: Vec<u8>,
    device: Vec<u8>,
}

/// When the test certificates were issued (2026-06-01).
const ISSUED: u64 = 1_780_272_000;

fn cert_uuid() -> DeviceUuid {
    DeviceUuid([
        0x7b, 0x2c, 0x1a, 0x90, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0x0a,
    ])
}

fn test_pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| {
        use crate::cert::ca::{self, CaKey, CertTemplate};
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let at = UNIX_EPOCH + Duration::from_secs(ISSUED);
        let root_key = CaKey::generate_p256(&mut rng);
        let root_t = CertTemplate::root("CN=Fuzz Root", vec![0x0a, 1], at, 3650);
        let spki = root_key.spki().expect("P-256 SPKI");
        let root = ca::issue_certificate(&root_t, &spki, &root_key, None).expect("root");
        let int_key = CaKey::generate_p256(&mut rng);
        let mut int_t = CertTemplate::intermediate("CN=Fuzz CA", vec![0x0a, 2], at, 3650);
        int_t.basic_constraints = Some((true, None));
        let spki = int_key.spki().expect("P-256 SPKI");
        let intermediate =
            ca::issue_certificate(&int_t, &spki, &root_key, Some(&root)).expect("intermediate");
        let dev_key = CaKey::generate_p256(&mut rng);
        let dev_t = CertTemplate::device(&cert_uuid(), vec![0x0a, 3], at, 365);
        let spki = dev_key.spki().expect("P-256 SPKI");
        let device =
            ca::issue_certificate(&dev_t, &spki, &int_key, Some(&intermediate)).expect("device");
        TestPki {
            root,
            intermediate,
            device,
        }
    })
}

/// The test PKI's certificates (root, intermediate, device; DER), for seeds and tests.
pub fn test_certificates() -> [Vec<u8>; 3] {
    let p = test_pki();
    [p.root.clone(), p.intermediate.clone(), p.device.clone()]
}

/// Certificate-based provisioning, MshPRT v1.1 §5.4.2.6, and the X.509 checks of `cert/`:
/// fuzzed octets are read as a device certificate (DER) with the test intermediate, as a
/// device certificate and intermediates split at fuzzed lengths, and as a patch over the
/// test device certificate (so the fuzzer starts from a chain that verifies); each chain is
/// verified against a trust store holding the test root. The PEM / DER certificate-list
/// reader and the trust store's `add_der` take the raw octets too.
///
/// Invariants: no panic; a chain that verifies has a device certificate among the inputs and
/// ends at the test root.
pub fn cert(data: &[u8]) {
    let pki = test_pki();
    let mut trust = crate::cert::TrustStore::new();
    trust.add_der(&pki.root).expect("the test root is a CA");
    let policy = crate::cert::Policy::default();
    let now = UNIX_EPOCH + Duration::from_secs(ISSUED + 30 * 86_400);
    let uuid = cert_uuid();
    let check = |device: &[u8], inters: &[Vec<u8>]| {
        if let Ok(v) = crate::cert::verify_device_chain(device, inters, &trust, &policy, &uuid, now)
        {
            assert!(v.chain.len() >= 2, "device and root at least");
        }
    };

    check(data, std::slice::from_ref(&pki.intermediate));

    let mut s = Script::new(data);
    let mode = s.u8();
    match mode % 3 {
        0 => {
            let n = usize::from(s.u16()) % 4096 + 1;
            let device = s.take(n).to_vec();
            let mut inters = Vec::new();
            while !s.is_empty() && inters.len() < 16 {
                let n = usize::from(s.u16()) % 4096;
                inters.push(s.take(n).to_vec());
            }
            check(&device, &inters);
        }
        1 => {
            // Patches over the good device certificate: (offset, octet) pairs.
            let mut device = pki.device.clone();
            while !s.is_empty() {
                let at = usize::from(s.u16()) % device.len();
                device[at] = s.u8();
            }
            check(&device, std::slice::from_ref(&pki.intermediate));
        }
        _ => {
            // Patches over the intermediate, with a good device certificate.
            let mut inter = pki.intermediate.clone();
            while !s.is_empty() {
                let at = usize::from(s.u16()) % inter.len();
                inter[at] = s.u8();
            }
            check(&pki.device, &[inter]);
        }
    }
    let _ = crate::cert::pem_or_der_certificates(data, "fuzz");
    let _ = crate::cert::load_chain_pem(data, "fuzz");
    let _ = crate::cert::TrustStore::new().add_der(data);
    let _ = crate::cert::TrustStore::from_pem(data);
}

// ---------------------------------------------------------------------------------------------
// Capture readers and the decoder (src/decode)

fn decode_keys() -> crate::decode::DecodeKeys {
    crate::decode::DecodeKeys {
        iv_index: 0,
        net_keys: vec![
            (0, NetKey::from_bytes(NET_KEY)),
            (1, NetKey::from_bytes(CAPTURE_NET_KEY)),
        ],
        app_keys: vec![
            (0, 0, AppKey::from_bytes(APP_KEY)),
            (1, 1, AppKey::from_bytes([0x12; 16])),
        ],
        dev_keys: vec![(PEER_ADDRESS, dev_key())],
        ..Default::default()
    }
}

/// Wraps script chunks into a classic pcap with a Bluetooth link type, so that the fuzzer
/// reaches the frame extractor and decoder without learning the file format.
fn wrap_pcap(s: &mut Script<'_>) -> Vec<u8> {
    let link: u32 = match s.u8() % 5 {
        0 => 201,
        1 => 187,
        2 => 251,
        3 => 256,
        _ => 272,
    };
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&link.to_le_bytes());
    let mut t = 0u32;
    while !s.is_empty() {
        let p = s.chunk();
        t += 1;
        out.extend_from_slice(&(t / 8).to_le_bytes());
        out.extend_from_slice(&((t % 8) * 125_000).to_le_bytes());
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// Capture readers (pcap, pcapng, btsnoop) and the decoder behind `meshprov decode`:
/// the raw octets are read as a capture file, and (first octet odd) the rest is wrapped as
/// the packets of a classic pcap with one of the Bluetooth link types the reader knows. The
/// decoder has the test NetKey and AppKey, the ESP32 capture's NetKey and AppKey (IV Index
/// 0) and the peer's device key. Every record renders as JSON and text.
///
/// Invariant: no panic.
pub fn decode(data: &[u8]) {
    let options = crate::decode::DecodeOptions::default();
    let run = |bytes: &[u8]| {
        if let Ok((records, _, _)) = crate::decode::decode_bytes(bytes, decode_keys(), options) {
            for r in &records {
                let _ = r.to_json();
                let _ = r.to_text();
            }
        }
    };
    run(data);
    let mut s = Script::new(data);
    if s.u8() & 1 == 1 {
        let pcap = wrap_pcap(&mut s);
        run(&pcap);
    }
}

// ---------------------------------------------------------------------------------------------
// Plan, CDB and building files

/// A directory that does not exist: the base of relative paths in plan and building files.
const NO_DIR: &str = "/nonexistent/meshprov-fuzz";

/// Rollout plan files (`rollout::plan::Plan::parse`, TOML): no panic on any text.
pub fn plan(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::rollout::plan::Plan::parse(text, "fuzz.toml", Path::new(NO_DIR));
    }
}

/// Mesh CDB files (`store::cdb::parse`, JSON): no panic; a parsed CDB exports
/// (`store::cdb::to_json`) to a document that parses, with the same nodes and keys, and whose
/// export is the same document (the export is canonical: it sorts models and groups).
pub fn cdb(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(c) = crate::store::cdb::parse(text)
    {
        // The export is canonical (keys, models and groups sorted): it is a fixed point, and
        // what it says is what was parsed up to that order.
        let json = crate::store::cdb::to_json(&c);
        let again = crate::store::cdb::parse(&json).expect("an exported CDB parses");
        assert_eq!(
            crate::store::cdb::to_json(&again),
            json,
            "export → parse → export"
        );
        assert_eq!(again.nodes.len(), c.nodes.len());
        assert_eq!(again.net_keys.len(), c.net_keys.len());
        assert_eq!(again.app_keys.len(), c.app_keys.len());
        assert_eq!(again.groups.len(), c.groups.len());
    }
}

/// Simulated building files (`sim::building::Building::parse`, TOML): no panic.
pub fn building(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ =
            crate::sim::building::Building::parse_with_base(text, "fuzz.toml", Path::new(NO_DIR));
    }
}
