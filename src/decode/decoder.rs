//! The mesh half of the decoder: from [`MeshPacket`]s to a timeline of [`Record`]s.
//!
//! - Advertising bearer: Unprovisioned Device, Secure Network (authenticated when a NetKey
//!   is known, §3.10.3) and Mesh Private (§3.10.4) beacons; PB-GATT and Mesh Proxy service
//!   data (§7.1.2.2, §7.2.2.2); PB-ADV links (§5.2.1, §5.3: Link Open/ACK/Close, transactions
//!   reassembled from their segments in any order, FCS checked, retransmissions and
//!   acknowledgments counted but shown once); network PDUs (§3.4).
//! - GATT: Proxy PDUs (§6.3.1) reassembled per connection and characteristic; provisioning
//!   PDUs of PB-GATT sessions; network PDUs, beacons and proxy configuration messages (§6.5)
//!   of the proxy.
//! - Provisioning PDUs (§5.4.1) decoded field by field. With the session secrets of a key
//!   sidecar the transcript is verified (§5.4.2.4: both confirmations; §5.4.2.5: the session
//!   key, the Provisioning Data MIC) and the device key derived; it is then used for the
//!   device-key access messages that follow. Without them the transcript's shape is still
//!   checked (value lengths against the algorithm, reflected values).
//! - Network PDUs decrypted with every NetKey whose NID matches (§3.4.6.3), lower transport
//!   (§3.5) segments reassembled by SeqAuth, access messages decrypted with the AppKeys whose
//!   AID matches or the device keys of the source and destination (§3.6.4), and named:
//!   Configuration messages (§4.3) and Generic OnOff (MshMDL §3.2.1); others by opcode.
//!
//! Repeats are not repeated: a beacon or service data seen again within
//! [`REPEAT_WINDOW_NS`] of its last record, a network PDU seen again (same source and SEQ: a
//! retransmission or a relay), a PB-ADV transaction or control PDU already shown — these are
//! counted in the final `summary` record. What cannot be decoded is a record of kind
//! `undecodable` that says which layer gave up and why; what cannot be decrypted for lack
//! of a key is shown with `decrypted: false` and the reason.

use std::collections::{BTreeMap, HashMap, HashSet};

use mesh_crypto::access::{AccessKey, AccessParams};
use mesh_crypto::beacon;
use mesh_crypto::ccm::MicLen;
use mesh_crypto::ecdh::{KeyPair, PublicKey as EcdhPublicKey};
use mesh_crypto::provisioning::{
    Algorithm as CryptoAlgorithm, Confirmation, ConfirmationContext, ProvRandom,
};
use mesh_crypto::toolbox::{K2Output, beacon_key, k2, k3, k4, private_beacon_key};
use mesh_crypto::{AppKey, AuthValue, BeaconKey, DevKey, EcdhSecret, NetKey, PrivateBeaconKey};
use serde_json::{Map, Value, json};

use super::frames::{
    AD_MESH_BEACON, AD_MESH_MESSAGE, AD_PB_ADV, AD_SERVICE_DATA_16, Characteristic, ConnId,
    MeshPacket, MeshPacketKind,
};
use super::keys::DecodeKeys;
use crate::net::access::Opcode;
use crate::net::config::ConfigMessage;
use crate::net::transport::{LowerPdu, SegmentAck};
use crate::wire::beacon::{MeshBeacon, PbGattServiceData, ProxyServiceData};
use crate::wire::pb_adv::{
    BearerControl, GenericProvisioningPdu, PbAdvPdu, TransactionContinuation, TransactionStart,
    reassemble,
};
use crate::wire::prov::ProvisioningPdu;
use crate::wire::proxy::{ProxyConfigMessage, ProxyMessageType, ProxyPdu, Sar};

/// A beacon or service data identical to one recorded less than this long ago (10 s) is
/// counted, not recorded again (devices repeat them on three channels every few seconds).
pub const REPEAT_WINDOW_NS: i128 = 10_000_000_000;

/// Longest reassembled Proxy PDU kept: the largest provisioning PDU a record response can make
/// is far below it (§5.4.1.12); a longer one is a broken or hostile stream.
const MAX_PROXY_MESSAGE: usize = 4096;

/// The kind of a timeline record (the `kind` field of `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// An Unprovisioned Device beacon.
    UnprovisionedBeacon,
    /// A Secure Network beacon.
    SecureNetworkBeacon,
    /// A Mesh Private beacon.
    MeshPrivateBeacon,
    /// Mesh Provisioning Service data of a connectable PB-GATT advertisement.
    PbGattAdvertisement,
    /// Mesh Proxy Service data of a proxy advertisement.
    ProxyAdvertisement,
    /// A PB-ADV link event (Link Open, Link ACK, Link Close).
    PbAdvLink,
    /// A PB-GATT session event (first provisioning PDU on a connection, disconnection).
    PbGattSession,
    /// A provisioning PDU (reassembled).
    ProvisioningPdu,
    /// The verification of a provisioning session's transcript.
    ProvisioningTranscript,
    /// A Proxy PDU of the Mesh Proxy service (reassembled).
    ProxyPdu,
    /// A network PDU.
    NetworkPdu,
    /// A decrypted access message.
    AccessMessage,
    /// Something that could not be decoded, and why.
    Undecodable,
    /// The counts at the end.
    Summary,
}

impl Kind {
    /// The `kind` string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::UnprovisionedBeacon => "unprovisioned_beacon",
            Kind::SecureNetworkBeacon => "secure_network_beacon",
            Kind::MeshPrivateBeacon => "mesh_private_beacon",
            Kind::PbGattAdvertisement => "pb_gatt_advertisement",
            Kind::ProxyAdvertisement => "proxy_advertisement",
            Kind::PbAdvLink => "pb_adv_link",
            Kind::PbGattSession => "pb_gatt_session",
            Kind::ProvisioningPdu => "provisioning_pdu",
            Kind::ProvisioningTranscript => "provisioning_transcript",
            Kind::ProxyPdu => "proxy_pdu",
            Kind::NetworkPdu => "network_pdu",
            Kind::AccessMessage => "access_message",
            Kind::Undecodable => "undecodable",
            Kind::Summary => "summary",
        }
    }
}

/// One entry of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The frame it was completed by (1-based; 0 for the summary).
    pub frame: u64,
    /// Seconds since the first frame of the capture.
    pub time: f64,
    /// What it is.
    pub kind: Kind,
    /// One line for an engineer.
    pub text: String,
    /// The decoded fields (the `--json` object without `time`, `frame` and `kind`).
    pub fields: Map<String, Value>,
}

impl Record {
    /// The `--json` object: `time`, `frame`, `kind`, then the fields.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("time".into(), json!((self.time * 1e6).round() / 1e6));
        m.insert("frame".into(), json!(self.frame));
        m.insert("kind".into(), json!(self.kind.as_str()));
        for (k, v) in &self.fields {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }

    /// One line of text output.
    pub fn to_text(&self) -> String {
        if self.kind == Kind::Summary {
            return self.text.clone();
        }
        format!(
            "{:>11.6} #{:<6} {:<23} {}",
            self.time,
            self.frame,
            self.kind.as_str(),
            self.text
        )
    }
}

/// Options of a decode.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeOptions {
    /// Put secret values (device keys, the NetKey of Provisioning Data) in the records.
    pub show_keys: bool,
}

/// Counts of a decode, in the `summary` record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Records by kind.
    pub records: BTreeMap<&'static str, u64>,
    /// Repeated beacons and service data not recorded again.
    pub repeated_adverts: u64,
    /// PB-ADV retransmissions (control PDUs and transaction segments already shown).
    pub pb_adv_retransmissions: u64,
    /// PB-ADV Transaction Acknowledgments.
    pub pb_adv_acks: u64,
    /// Network PDUs seen again (same source and SEQ: retransmissions and relays).
    pub network_duplicates: u64,
    /// Network PDUs that could not be decrypted (no NetKey matched).
    pub network_undecrypted: u64,
    /// Access messages that could not be decrypted (no AppKey or device key matched).
    pub access_undecrypted: u64,
    /// Provisioning transcripts verified (confirmations and Data MIC all correct).
    pub transcripts_verified: u64,
    /// Provisioning transcripts that failed a cryptographic check.
    pub transcripts_failed: u64,
}

impl DecodeStats {
    /// Records of `kind` so far.
    pub fn count(&self, kind: Kind) -> u64 {
        self.records.get(kind.as_str()).copied().unwrap_or(0)
    }
}

struct NetEntry {
    index: u16,
    key: NetKey,
    k2: K2Output,
    network_id: [u8; 8],
    beacon_key: BeaconKey,
    private_beacon_key: PrivateBeaconKey,
}

impl NetEntry {
    fn new(index: u16, key: NetKey) -> Self {
        Self {
            index,
            k2: k2(&key, &[0]),
            network_id: k3(&key),
            beacon_key: beacon_key(&key),
            private_beacon_key: private_beacon_key(&key),
            key,
        }
    }
}

/// A device key known to the decoder: primary address, element count, key, where from.
struct DevEntry {
    address: u16,
    elements: u8,
    key: DevKey,
}

/// Which bearer a provisioning session runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SessionId {
    Adv(u32),
    Gatt(ConnId),
}

#[derive(Default)]
struct Transaction {
    start: Option<TransactionStart>,
    continuations: BTreeMap<u8, TransactionContinuation>,
}

#[derive(Default)]
struct Link {
    uuid: Option<[u8; 16]>,
    acked: bool,
    closed: bool,
    transactions: HashMap<u8, Transaction>,
    done: HashMap<u8, (u8, u16)>,
}

/// What a provisioning session's PDUs said, for the transcript.
#[derive(Default)]
struct ProvSession {
    invite: Option<[u8; 1]>,
    capabilities: Option<[u8; 11]>,
    elements: u8,
    start: Option<[u8; 5]>,
    oob_public_key: bool,
    pk_provisioner: Option<[u8; 64]>,
    pk_device: Option<[u8; 64]>,
    conf_provisioner: Option<Vec<u8>>,
    conf_device: Option<Vec<u8>>,
    rand_provisioner: Option<Vec<u8>>,
    rand_device: Option<Vec<u8>>,
    data: Option<[u8; 33]>,
    failed: Option<u8>,
    reported: bool,
    pdus: u32,
}

struct SegBuf {
    seg_n: u8,
    segments: Vec<Option<Vec<u8>>>,
    done: bool,
}

struct ProxySar {
    ty: u8,
    data: Vec<u8>,
    segments: u32,
}

/// The decoder: feed it [`MeshPacket`]s ([`Decoder::push_mesh`]) or raw frames through
/// [`super::decode_reader`]; take the records with [`Decoder::poll_record`].
pub struct Decoder {
    options: DecodeOptions,
    iv_index: u32,
    nets: Vec<NetEntry>,
    apps: Vec<(u16, u8, AppKey)>,
    devs: Vec<DevEntry>,
    secrets: Vec<super::keys::SessionSecrets>,
    derived: Vec<(u16, DevKey)>,
    origin_ns: Option<i128>,
    frame: u64,
    time_ns: i128,
    out: std::collections::VecDeque<Record>,
    stats: DecodeStats,
    last_advert: HashMap<Vec<u8>, i128>,
    links: HashMap<u32, Link>,
    sessions: HashMap<SessionId, ProvSession>,
    gatt_sessions: HashSet<ConnId>,
    proxy_sar: HashMap<(ConnId, Characteristic), ProxySar>,
    seen_network: HashSet<(u16, u32, u32)>,
    segmented: HashMap<(u16, u32, u32), SegBuf>,
}

fn hex16(v: u16) -> String {
    format!("0x{v:04x}")
}

fn uuid_string(u: &[u8; 16]) -> String {
    let h = hex::encode(u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn addr_string(a: &[u8; 6]) -> String {
    crate::radio::capture::format_bd_addr(a)
}

impl Decoder {
    /// A decoder with these keys.
    pub fn new(keys: DecodeKeys, options: DecodeOptions) -> Self {
        let nets = keys
            .net_keys
            .iter()
            .map(|(i, k)| NetEntry::new(*i, k.clone()))
            .collect();
        let apps = keys
            .app_keys
            .iter()
            .map(|(i, _, k)| (*i, k4(k), k.clone()))
            .collect();
        let devs = keys
            .dev_keys
            .iter()
            .map(|(a, k)| DevEntry {
                address: *a,
                elements: 1,
                key: k.clone(),
            })
            .collect();
        Self {
            options,
            iv_index: keys.iv_index,
            nets,
            apps,
            devs,
            secrets: keys.sessions.clone(),
            derived: Vec::new(),
            origin_ns: None,
            frame: 0,
            time_ns: 0,
            out: Default::default(),
            stats: DecodeStats::default(),
            last_advert: HashMap::new(),
            links: HashMap::new(),
            sessions: HashMap::new(),
            gatt_sessions: HashSet::new(),
            proxy_sar: HashMap::new(),
            seen_network: HashSet::new(),
            segmented: HashMap::new(),
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    /// Device keys derived from verified provisioning transcripts: primary address and key.
    pub fn derived_device_keys(&self) -> &[(u16, DevKey)] {
        &self.derived
    }

    /// The next record of the timeline.
    pub fn poll_record(&mut self) -> Option<Record> {
        self.out.pop_front()
    }

    fn record(&mut self, kind: Kind, text: String, fields: Map<String, Value>) {
        *self.stats.records.entry(kind.as_str()).or_insert(0) += 1;
        let time = (self.time_ns - self.origin_ns.unwrap_or(self.time_ns)) as f64 / 1e9;
        self.out.push_back(Record {
            frame: self.frame,
            time,
            kind,
            text,
            fields,
        });
    }

    fn undecodable(&mut self, layer: &str, reason: String, bytes: &[u8]) {
        let mut f = Map::new();
        f.insert("layer".into(), json!(layer));
        f.insert("reason".into(), json!(reason));
        f.insert("hex".into(), json!(hex::encode(bytes)));
        self.record(Kind::Undecodable, format!("{layer}: {reason}"), f);
    }

    /// Notes the time of a frame that carried nothing for the mesh (so that `time` counts
    /// from the first frame of the capture).
    pub fn note_frame(&mut self, time_ns: i128) {
        if self.origin_ns.is_none() {
            self.origin_ns = Some(time_ns);
        }
    }

    /// Decodes one mesh packet.
    pub fn push_mesh(&mut self, p: &MeshPacket) {
        self.note_frame(p.time_ns);
        self.frame = p.frame;
        self.time_ns = p.time_ns;
        match &p.kind {
            MeshPacketKind::Adv {
                adv_addr,
                ad_type,
                data,
                ..
            } => self.adv(*adv_addr, *ad_type, data),
            MeshPacketKind::Gatt {
                conn,
                characteristic,
                value,
            } => self.gatt(*conn, *characteristic, value),
            MeshPacketKind::Connected { .. } => {}
            MeshPacketKind::Disconnected { conn, reason } => {
                self.proxy_sar.retain(|(c, _), _| c != conn);
                if self.gatt_sessions.remove(conn) {
                    let mut f = Map::new();
                    f.insert("session".into(), json!(conn.to_string()));
                    f.insert("event".into(), json!("disconnected"));
                    f.insert("reason".into(), json!(reason));
                    self.record(
                        Kind::PbGattSession,
                        match reason {
                            Some(r) => format!("{conn} disconnected (reason 0x{r:02x})"),
                            None => format!("{conn} disconnected"),
                        },
                        f,
                    );
                    self.finish_session(SessionId::Gatt(*conn));
                }
            }
            MeshPacketKind::Problem {
                layer,
                reason,
                bytes,
            } => self.undecodable(layer, reason.clone(), bytes),
        }
    }

    /// Flushes what is left at the end of the capture (incomplete transactions and sessions)
    /// and records the summary.
    pub fn finish(&mut self, frames: &super::frames::FrameStats) {
        let mut links: Vec<u32> = self.links.keys().copied().collect();
        links.sort_unstable();
        for id in links {
            let pending: Vec<(u8, usize, Option<u8>)> = self
                .links
                .get(&id)
                .map(|l| {
                    l.transactions
                        .iter()
                        .map(|(x, t)| {
                            (*x, t.continuations.len(), t.start.as_ref().map(|s| s.seg_n))
                        })
                        .collect()
                })
                .unwrap_or_default();
            for (xact, conts, seg_n) in pending {
                let reason = match seg_n {
                    None => format!(
                        "PB-ADV link 0x{id:08x} transaction 0x{xact:02x}: Transaction Start never received ({conts} continuations)"
                    ),
                    Some(n) => format!(
                        "PB-ADV link 0x{id:08x} transaction 0x{xact:02x}: {conts} of {n} continuations received by the end of the capture"
                    ),
                };
                self.undecodable("pb_adv", reason, &[]);
            }
            self.finish_session(SessionId::Adv(id));
        }
        let mut conns: Vec<ConnId> = self.gatt_sessions.iter().copied().collect();
        conns.sort_unstable();
        for c in conns {
            self.finish_session(SessionId::Gatt(c));
        }
        let incomplete: Vec<((u16, u32, u32), usize, u8)> = self
            .segmented
            .iter()
            .filter(|(_, b)| !b.done)
            .map(|(k, b)| {
                (
                    *k,
                    b.segments.iter().filter(|s| s.is_some()).count(),
                    b.seg_n,
                )
            })
            .collect();
        for ((src, _, seq_auth), got, seg_n) in incomplete {
            self.undecodable(
                "transport",
                format!(
                    "segmented message from {} SeqAuth 0x{seq_auth:06x}: {got} of {} segments received by the end of the capture",
                    hex16(src),
                    u32::from(seg_n) + 1
                ),
                &[],
            );
        }
        let s = self.stats.clone();
        let mut f = Map::new();
        f.insert("frames".into(), json!(frames.frames));
        f.insert("bad_crc".into(), json!(frames.bad_crc));
        f.insert(
            "ll_retransmissions".into(),
            json!(frames.ll_retransmissions),
        );
        f.insert("encrypted_ll".into(), json!(frames.encrypted));
        f.insert(
            "unsupported_link_type".into(),
            json!(frames.unsupported_link),
        );
        f.insert("malformed_frames".into(), json!(frames.malformed));
        f.insert("records".into(), json!(s.records));
        f.insert("repeated_adverts".into(), json!(s.repeated_adverts));
        f.insert(
            "pb_adv_retransmissions".into(),
            json!(s.pb_adv_retransmissions),
        );
        f.insert("pb_adv_acks".into(), json!(s.pb_adv_acks));
        f.insert("network_duplicates".into(), json!(s.network_duplicates));
        f.insert("network_undecrypted".into(), json!(s.network_undecrypted));
        f.insert("access_undecrypted".into(), json!(s.access_undecrypted));
        f.insert("transcripts_verified".into(), json!(s.transcripts_verified));
        f.insert("transcripts_failed".into(), json!(s.transcripts_failed));
        let text = format!(
            "{} frames: {} records ({} undecodable); repeats not shown: {} adverts, {} PB-ADV retransmissions, {} acks, {} network duplicates; not decrypted: {} network PDUs, {} access messages; transcripts verified {}, failed {}",
            frames.frames,
            s.records.values().sum::<u64>(),
            s.count(Kind::Undecodable),
            s.repeated_adverts,
            s.pb_adv_retransmissions,
            s.pb_adv_acks,
            s.network_duplicates,
            s.network_undecrypted,
            s.access_undecrypted,
            s.transcripts_verified,
            s.transcripts_failed
        );
        self.frame = 0;
        self.record(Kind::Summary, text, f);
    }

    // ----- advertising bearer -----

    fn repeated(&mut self, key: Vec<u8>) -> bool {
        let now = self.time_ns;
        match self.last_advert.get(&key) {
            Some(&t) if now - t < REPEAT_WINDOW_NS && now >= t => {
                self.stats.repeated_adverts += 1;
                true
            }
            _ => {
                if self.last_advert.len() >= 100_000 {
                    self.last_advert
                        .retain(|_, t| now - *t < REPEAT_WINDOW_NS && now >= *t);
                }
                self.last_advert.insert(key, now);
                false
            }
        }
    }

    fn adv(&mut self, addr: Option<[u8; 6]>, ad_type: u8, data: &[u8]) {
        match ad_type {
            AD_PB_ADV => self.pb_adv(data),
            AD_MESH_MESSAGE => self.network(data, "adv"),
            AD_MESH_BEACON => {
                let mut key = vec![ad_type];
                key.extend_from_slice(&addr.unwrap_or_default());
                key.extend_from_slice(data);
                if !self.repeated(key) {
                    self.beacon(addr, data, "adv");
                }
            }
            AD_SERVICE_DATA_16 => {
                let mut key = vec![ad_type];
                key.extend_from_slice(&addr.unwrap_or_default());
                key.extend_from_slice(data);
                if !self.repeated(key) {
                    self.service_data(addr, data);
                }
            }
            _ => {}
        }
    }

    fn beacon(&mut self, addr: Option<[u8; 6]>, data: &[u8], bearer: &str) {
        let b = match MeshBeacon::parse(data) {
            Ok(b) => b,
            Err(e) => {
                self.undecodable("beacon", format!("mesh beacon: {e}"), data);
                return;
            }
        };
        let mut f = Map::new();
        f.insert("bearer".into(), json!(bearer));
        if let Some(a) = addr {
            f.insert("from".into(), json!(addr_string(&a)));
        }
        match b {
            MeshBeacon::UnprovisionedDevice(u) => {
                f.insert("uuid".into(), json!(uuid_string(&u.uuid)));
                f.insert("oob_info".into(), json!(hex16(u.oob_info.0)));
                f.insert("oob_info_names".into(), json!(u.oob_info.names()));
                f.insert("uri_hash".into(), json!(u.uri_hash.map(hex::encode)));
                let text = format!(
                    "{} OOB {} {}",
                    uuid_string(&u.uuid),
                    hex16(u.oob_info.0),
                    u.oob_info.names().join(", ")
                );
                self.record(Kind::UnprovisionedBeacon, text, f);
            }
            MeshBeacon::SecureNetwork(s) => {
                f.insert("flags".into(), json!(s.flags.0));
                f.insert("key_refresh".into(), json!(s.flags.0 & 1 != 0));
                f.insert("iv_update".into(), json!(s.flags.0 & 2 != 0));
                f.insert("network_id".into(), json!(hex::encode(s.network_id)));
                f.insert("iv_index".into(), json!(s.iv_index));
                let mut auth = "unknown key";
                let mut index = None;
                for n in &self.nets {
                    if n.network_id == s.network_id {
                        index = Some(n.index);
                        auth = if beacon::secure_network_decode(&n.beacon_key, &n.network_id, data)
                            .is_ok()
                        {
                            "valid"
                        } else {
                            "invalid"
                        };
                        if auth == "valid" {
                            break;
                        }
                    }
                }
                f.insert("authentication".into(), json!(auth));
                f.insert("net_key_index".into(), json!(index));
                let text = format!(
                    "network {} IV {} flags {:02x} authentication {auth}",
                    hex::encode(s.network_id),
                    s.iv_index,
                    s.flags.0
                );
                self.record(Kind::SecureNetworkBeacon, text, f);
            }
            MeshBeacon::MeshPrivate(_) => {
                let found = self.nets.iter().find_map(|n| {
                    beacon::private_decode(&n.private_beacon_key, data)
                        .ok()
                        .map(|s| (n.index, s))
                });
                let text = match found {
                    Some((i, s)) => {
                        f.insert("authentication".into(), json!("valid"));
                        f.insert("net_key_index".into(), json!(i));
                        f.insert("iv_index".into(), json!(s.iv_index));
                        f.insert("flags".into(), json!(s.flags));
                        format!("IV {} flags {:02x} (NetKey {i})", s.iv_index, s.flags)
                    }
                    None => {
                        f.insert("authentication".into(), json!("unknown key"));
                        "not authenticated: no NetKey opens it".to_string()
                    }
                };
                self.record(Kind::MeshPrivateBeacon, text, f);
            }
        }
    }

    fn service_data(&mut self, addr: Option<[u8; 6]>, data: &[u8]) {
        let mut f = Map::new();
        if let Some(a) = addr {
            f.insert("from".into(), json!(addr_string(&a)));
        }
        let uuid = data.get(..2).map(|u| u16::from_le_bytes([u[0], u[1]]));
        if uuid == Some(crate::wire::beacon::MESH_PROVISIONING_SERVICE) {
            match PbGattServiceData::parse(data) {
                Ok(s) => {
                    f.insert("uuid".into(), json!(uuid_string(&s.uuid)));
                    f.insert("oob_info".into(), json!(hex::encode(s.oob_info_raw)));
                    let text = format!("{} connectable for PB-GATT", uuid_string(&s.uuid));
                    self.record(Kind::PbGattAdvertisement, text, f);
                }
                Err(e) => self.undecodable("ad", format!("PB-GATT service data: {e}"), data),
            }
        } else {
            match ProxyServiceData::parse(data) {
                Ok(ProxyServiceData::NetworkId(id)) => {
                    let index = self
                        .nets
                        .iter()
                        .find(|n| n.network_id == id)
                        .map(|n| n.index);
                    f.insert("identification".into(), json!("network_id"));
                    f.insert("network_id".into(), json!(hex::encode(id)));
                    f.insert("net_key_index".into(), json!(index));
                    let text = format!("proxy, Network ID {}", hex::encode(id));
                    self.record(Kind::ProxyAdvertisement, text, f);
                }
                Ok(other) => {
                    let t = match other {
                        ProxyServiceData::NodeIdentity { .. } => "node_identity",
                        ProxyServiceData::PrivateNetworkIdentity { .. } => {
                            "private_network_identity"
                        }
                        _ => "private_node_identity",
                    };
                    f.insert("identification".into(), json!(t));
                    f.insert("hex".into(), json!(hex::encode(data)));
                    self.record(Kind::ProxyAdvertisement, format!("proxy, {t}"), f);
                }
                Err(e) => self.undecodable("ad", format!("Mesh Proxy service data: {e}"), data),
            }
        }
    }

    // ----- PB-ADV -----

    fn pb_adv(&mut self, data: &[u8]) {
        let pdu = match PbAdvPdu::parse(data) {
            Ok(p) => p,
            Err(e) => {
                self.undecodable("pb_adv", format!("PB-ADV PDU: {e}"), data);
                return;
            }
        };
        let id = pdu.link_id;
        let xact = pdu.transaction_number;
        match pdu.pdu {
            GenericProvisioningPdu::BearerControl(c) => self.link_control(id, c),
            GenericProvisioningPdu::TransactionAck => self.stats.pb_adv_acks += 1,
            GenericProvisioningPdu::TransactionStart(s) => {
                let link = self.links.entry(id).or_default();
                if link.done.get(&xact) == Some(&(s.fcs, s.total_length)) {
                    self.stats.pb_adv_retransmissions += 1;
                    return;
                }
                let t = link.transactions.entry(xact).or_default();
                if t.start.is_some() {
                    self.stats.pb_adv_retransmissions += 1;
                    if t.start.as_ref() == Some(&s) {
                        return;
                    }
                }
                t.start = Some(s);
                self.try_complete(id, xact);
            }
            GenericProvisioningPdu::TransactionContinuation(c) => {
                let link = self.links.entry(id).or_default();
                if link.done.contains_key(&xact) && !link.transactions.contains_key(&xact) {
                    self.stats.pb_adv_retransmissions += 1;
                    return;
                }
                let t = link.transactions.entry(xact).or_default();
                if t.continuations.contains_key(&c.segment_index) {
                    self.stats.pb_adv_retransmissions += 1;
                    return;
                }
                t.continuations.insert(c.segment_index, c);
                self.try_complete(id, xact);
            }
        }
    }

    fn link_control(&mut self, id: u32, c: BearerControl) {
        let mut f = Map::new();
        f.insert("link_id".into(), json!(format!("0x{id:08x}")));
        match c {
            BearerControl::LinkOpen { uuid } => {
                if let Some(l) = self.links.get(&id)
                    && l.uuid == Some(uuid)
                    && !l.closed
                {
                    self.stats.pb_adv_retransmissions += 1;
                    return;
                }
                // A new link (or a Link ID used again after a close).
                if self.links.get(&id).is_some_and(|l| l.closed) {
                    self.sessions.remove(&SessionId::Adv(id));
                }
                self.links.insert(
                    id,
                    Link {
                        uuid: Some(uuid),
                        ..Default::default()
                    },
                );
                f.insert("event".into(), json!("link_open"));
                f.insert("uuid".into(), json!(uuid_string(&uuid)));
                let text = format!("link 0x{id:08x} Link Open to {}", uuid_string(&uuid));
                self.record(Kind::PbAdvLink, text, f);
            }
            BearerControl::LinkAck => {
                let link = self.links.entry(id).or_default();
                if link.acked {
                    self.stats.pb_adv_retransmissions += 1;
                    return;
                }
                link.acked = true;
                f.insert("event".into(), json!("link_ack"));
                self.record(Kind::PbAdvLink, format!("link 0x{id:08x} Link ACK"), f);
            }
            BearerControl::LinkClose { reason } => {
                let link = self.links.entry(id).or_default();
                if link.closed {
                    self.stats.pb_adv_retransmissions += 1;
                    return;
                }
                link.closed = true;
                let name = reason.name().unwrap_or("RFU");
                f.insert("event".into(), json!("link_close"));
                f.insert("reason".into(), json!(name));
                self.record(
                    Kind::PbAdvLink,
                    format!("link 0x{id:08x} Link Close ({name})"),
                    f,
                );
                self.finish_session(SessionId::Adv(id));
            }
        }
    }

    fn try_complete(&mut self, id: u32, xact: u8) {
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        let Some(t) = link.transactions.get(&xact) else {
            return;
        };
        let Some(start) = &t.start else {
            return;
        };
        if t.continuations.len() < usize::from(start.seg_n) {
            return;
        }
        let conts: Vec<TransactionContinuation> = t.continuations.values().cloned().collect();
        let result = reassemble(start, &conts);
        let key = (start.fcs, start.total_length);
        link.transactions.remove(&xact);
        match result {
            Ok(pdu) => {
                link.done.insert(xact, key);
                self.provisioning(SessionId::Adv(id), Some(xact < 0x80), &pdu, xact);
            }
            Err(e) => self.undecodable(
                "pb_adv",
                format!("PB-ADV link 0x{id:08x} transaction 0x{xact:02x}: {e}"),
                &[],
            ),
        }
    }

    // ----- provisioning -----

    fn provisioning(
        &mut self,
        sid: SessionId,
        from_provisioner: Option<bool>,
        pdu: &[u8],
        xact: u8,
    ) {
        let parsed = ProvisioningPdu::parse(pdu);
        let mut f = Map::new();
        match sid {
            SessionId::Adv(id) => {
                f.insert("bearer".into(), json!("pb-adv"));
                f.insert("link_id".into(), json!(format!("0x{id:08x}")));
                f.insert("transaction".into(), json!(xact));
            }
            SessionId::Gatt(c) => {
                f.insert("bearer".into(), json!("pb-gatt"));
                f.insert("link_id".into(), Value::Null);
                f.insert("session".into(), json!(c.to_string()));
            }
        }
        let p = match parsed {
            Ok(p) => p,
            Err(e) => {
                let ty = pdu.first().copied().unwrap_or(0);
                f.insert("pdu_type".into(), json!(format!("0x{ty:02x}")));
                f.insert("hex".into(), json!(hex::encode(pdu)));
                f.insert("error".into(), json!(e.to_string()));
                let text = format!("provisioning PDU not decoded: {e}");
                self.undecodable("provisioning", text, pdu);
                return;
            }
        };
        let name = p.pdu_type().name().unwrap_or("RFU");
        let session = self.sessions.entry(sid).or_default();
        session.pdus += 1;
        // Direction: the bearer says it (PB-ADV transaction numbers, GATT characteristic);
        // the PDU types that both sides send come provisioner first.
        let from_p = match (&p, from_provisioner) {
            (_, Some(d)) => d,
            (ProvisioningPdu::PublicKey(_), None) => session.pk_provisioner.is_none(),
            (ProvisioningPdu::Confirmation(_), None) => session.conf_provisioner.is_none(),
            (ProvisioningPdu::Random(_), None) => session.rand_provisioner.is_none(),
            (
                ProvisioningPdu::Invite(_)
                | ProvisioningPdu::Start(_)
                | ProvisioningPdu::Data(_)
                | ProvisioningPdu::RecordRequest(_)
                | ProvisioningPdu::RecordsGet,
                None,
            ) => true,
            _ => false,
        };
        let mut fields = Map::new();
        let mut detail = String::new();
        match &p {
            ProvisioningPdu::Invite(i) => {
                session.invite = Some([i.attention_duration]);
                fields.insert("attention_duration".into(), json!(i.attention_duration));
                detail = format!("attention {} s", i.attention_duration);
            }
            ProvisioningPdu::Capabilities(c) => {
                session.capabilities = Some(c.params());
                session.elements = c.num_elements;
                fields.insert("elements".into(), json!(c.num_elements));
                fields.insert("algorithms".into(), json!(c.algorithms.names()));
                fields.insert("public_key_type".into(), json!(c.public_key_type.names()));
                fields.insert("oob_type".into(), json!(c.oob_type.names()));
                fields.insert("output_oob_size".into(), json!(c.output_oob_size));
                fields.insert(
                    "output_oob_actions".into(),
                    json!(c.output_oob_action.names()),
                );
                fields.insert("input_oob_size".into(), json!(c.input_oob_size));
                fields.insert(
                    "input_oob_actions".into(),
                    json!(c.input_oob_action.names()),
                );
                detail = format!(
                    "{} element(s); algorithms {}; OOB type [{}]; output OOB size {} [{}]; input OOB size {} [{}]",
                    c.num_elements,
                    c.algorithms.names().join(", "),
                    c.oob_type.names().join(", "),
                    c.output_oob_size,
                    c.output_oob_action.names().join(", "),
                    c.input_oob_size,
                    c.input_oob_action.names().join(", ")
                );
            }
            ProvisioningPdu::Start(s) => {
                session.start = Some(s.params());
                session.oob_public_key =
                    matches!(s.public_key, crate::wire::prov::StartPublicKey::Oob);
                let alg = s.algorithm.name().unwrap_or("RFU");
                fields.insert("algorithm".into(), json!(alg));
                fields.insert("oob_public_key".into(), json!(session.oob_public_key));
                fields.insert("authentication".into(), json!(s.auth.method().name()));
                fields.insert("auth".into(), json!(format!("{:?}", s.auth)));
                detail = format!(
                    "{alg}, {} public key, {:?}",
                    if session.oob_public_key {
                        "OOB"
                    } else {
                        "no OOB"
                    },
                    s.auth
                );
            }
            ProvisioningPdu::PublicKey(k) => {
                let b = k.to_bytes();
                if from_p {
                    session.pk_provisioner = Some(b);
                } else {
                    session.pk_device = Some(b);
                }
                fields.insert("x".into(), json!(hex::encode(k.x)));
                fields.insert("y".into(), json!(hex::encode(k.y)));
                detail = format!("X {}…", hex::encode(&k.x[..8]));
            }
            ProvisioningPdu::Confirmation(v) => {
                let b = v.as_bytes().to_vec();
                fields.insert("confirmation".into(), json!(hex::encode(&b)));
                fields.insert("length".into(), json!(b.len()));
                detail = format!("{} octets {}", b.len(), hex::encode(&b));
                if from_p {
                    session.conf_provisioner = Some(b);
                } else {
                    session.conf_device = Some(b);
                }
            }
            ProvisioningPdu::Random(v) => {
                let b = v.as_bytes().to_vec();
                fields.insert("random".into(), json!(hex::encode(&b)));
                fields.insert("length".into(), json!(b.len()));
                detail = format!("{} octets {}", b.len(), hex::encode(&b));
                if from_p {
                    session.rand_provisioner = Some(b);
                } else {
                    session.rand_device = Some(b);
                }
            }
            ProvisioningPdu::Data(d) => {
                let mut b = [0u8; 33];
                b[..25].copy_from_slice(&d.encrypted_data);
                b[25..].copy_from_slice(&d.mic);
                session.data = Some(b);
                fields.insert(
                    "encrypted_data".into(),
                    json!(hex::encode(d.encrypted_data)),
                );
                fields.insert("mic".into(), json!(hex::encode(d.mic)));
                detail = format!("MIC {}", hex::encode(d.mic));
            }
            ProvisioningPdu::Complete => {}
            ProvisioningPdu::Failed(code) => {
                session.failed = Some(code.0);
                let n = code.name().unwrap_or("RFU");
                fields.insert("error_code".into(), json!(code.0));
                fields.insert("error".into(), json!(n));
                detail = format!("error 0x{:02x} {n}", code.0);
            }
            ProvisioningPdu::InputComplete | ProvisioningPdu::RecordsGet => {}
            ProvisioningPdu::RecordRequest(r) => {
                fields.insert("record_id".into(), json!(r.record_id.0));
                fields.insert("fragment_offset".into(), json!(r.fragment_offset));
                fields.insert("fragment_max_size".into(), json!(r.fragment_max_size));
                detail = format!(
                    "record 0x{:04x} offset {} max {}",
                    r.record_id.0, r.fragment_offset, r.fragment_max_size
                );
            }
            ProvisioningPdu::RecordResponse(r) => {
                fields.insert("status".into(), json!(r.status.0));
                fields.insert("record_id".into(), json!(r.record_id.0));
                fields.insert("fragment_offset".into(), json!(r.fragment_offset));
                fields.insert("total_length".into(), json!(r.total_length));
                fields.insert("fragment_length".into(), json!(r.data.len()));
                detail = format!(
                    "record 0x{:04x} status {} offset {} +{} of {}",
                    r.record_id.0,
                    r.status.0,
                    r.fragment_offset,
                    r.data.len(),
                    r.total_length
                );
            }
            ProvisioningPdu::RecordsList(l) => {
                let ids: Vec<u16> = l.record_ids.iter().map(|r| r.0).collect();
                fields.insert("record_ids".into(), json!(ids));
                detail = format!("records {ids:04x?}");
            }
        }
        let first_gatt = matches!(sid, SessionId::Gatt(_)) && session.pdus == 1;
        let is_data = matches!(p, ProvisioningPdu::Data(_));
        let ends = matches!(p, ProvisioningPdu::Complete | ProvisioningPdu::Failed(_));
        if let SessionId::Gatt(c) = sid
            && first_gatt
        {
            self.gatt_sessions.insert(c);
            let mut g = Map::new();
            g.insert("session".into(), json!(c.to_string()));
            g.insert("event".into(), json!("provisioning"));
            self.record(
                Kind::PbGattSession,
                format!("{c}: PB-GATT provisioning session"),
                g,
            );
        }
        f.insert("pdu_type".into(), json!(name));
        f.insert(
            "direction".into(),
            json!(if from_p { "provisioner" } else { "device" }),
        );
        f.insert("hex".into(), json!(hex::encode(pdu)));
        f.insert("fields".into(), Value::Object(fields));
        let where_ = match sid {
            SessionId::Adv(id) => format!("link 0x{id:08x}"),
            SessionId::Gatt(c) => c.to_string(),
        };
        let arrow = if from_p { "P→D" } else { "D→P" };
        self.record(
            Kind::ProvisioningPdu,
            format!("{where_} {arrow} {name} {detail}"),
            f,
        );
        if is_data {
            self.transcript(sid);
        } else if ends {
            // Complete/Failed after Data: nothing more to check; a Failed before it is
            // reported when the link ends.
        }
    }

    fn finish_session(&mut self, sid: SessionId) {
        let pending = self
            .sessions
            .get(&sid)
            .is_some_and(|s| !s.reported && s.invite.is_some());
        if pending {
            self.transcript(sid);
        }
    }

    /// Checks a session's transcript and records the result.
    fn transcript(&mut self, sid: SessionId) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if s.reported {
            return;
        }
        s.reported = true;
        let mut f = Map::new();
        let where_ = match sid {
            SessionId::Adv(id) => {
                f.insert("bearer".into(), json!("pb-adv"));
                f.insert("link_id".into(), json!(format!("0x{id:08x}")));
                format!("link 0x{id:08x}")
            }
            SessionId::Gatt(c) => {
                f.insert("bearer".into(), json!("pb-gatt"));
                f.insert("session".into(), json!(c.to_string()));
                c.to_string()
            }
        };
        let alg = s.start.map(|st| st[0]).and_then(CryptoAlgorithm::from_id);
        f.insert("algorithm".into(), json!(alg.map(CryptoAlgorithm::name)));
        if let Some(code) = s.failed {
            f.insert("failed".into(), json!(code));
        }
        // Shape checks that need no secret.
        let mut problems: Vec<String> = Vec::new();
        if let Some(a) = alg {
            for (what, v) in [
                ("provisioner Confirmation", &s.conf_provisioner),
                ("device Confirmation", &s.conf_device),
                ("provisioner Random", &s.rand_provisioner),
                ("device Random", &s.rand_device),
            ] {
                if let Some(v) = v
                    && v.len() != a.value_len()
                {
                    problems.push(format!(
                        "{what} has {} octets, {} wants {}",
                        v.len(),
                        a.name(),
                        a.value_len()
                    ));
                }
            }
        }
        if s.conf_device.is_some() && s.conf_device == s.conf_provisioner {
            problems.push("the device's Confirmation reflects the provisioner's".into());
        }
        if s.rand_device.is_some() && s.rand_device == s.rand_provisioner {
            problems.push("the device's Random reflects the provisioner's".into());
        }
        let mut missing = Vec::new();
        for (what, present) in [
            ("Invite", s.invite.is_some()),
            ("Capabilities", s.capabilities.is_some()),
            ("Start", s.start.is_some()),
            ("provisioner Public Key", s.pk_provisioner.is_some()),
            (
                "device Public Key",
                s.pk_device.is_some() || s.oob_public_key,
            ),
            ("provisioner Confirmation", s.conf_provisioner.is_some()),
            ("device Confirmation", s.conf_device.is_some()),
            ("provisioner Random", s.rand_provisioner.is_some()),
            ("device Random", s.rand_device.is_some()),
            ("Data", s.data.is_some()),
        ] {
            if !present {
                missing.push(what);
            }
        }
        f.insert("missing".into(), json!(missing));
        f.insert("problems".into(), json!(problems));
        let secrets = s.pk_provisioner.and_then(|pk| {
            self.secrets
                .iter()
                .find(|x| x.provisioner_public_key == pk)
                .cloned()
        });
        let elements = s.elements;
        let verdict = if !missing.is_empty() {
            format!("incomplete: no {}", missing.join(", "))
        } else if s.oob_public_key && s.pk_device.is_none() {
            "not verified: the device's public key was out of band (not in the capture)".into()
        } else if let (Some(sec), Some(alg)) = (secrets, alg) {
            match verify(s, alg, &sec) {
                Ok(v) => {
                    for (k, val) in v.fields {
                        f.insert(k, val);
                    }
                    if v.ok {
                        self.stats.transcripts_verified += 1;
                        if let Some((addr, key)) = v.device_key {
                            if self.options.show_keys {
                                f.insert(
                                    "device_key".into(),
                                    json!(hex::encode(key.expose_secret())),
                                );
                            }
                            self.devs.retain(|d| d.address != addr);
                            self.devs.push(DevEntry {
                                address: addr,
                                elements: elements.max(1),
                                key: key.clone(),
                            });
                            self.derived.push((addr, key));
                        }
                        if let Some((index, key)) = v.net_key
                            && !self.nets.iter().any(|n| n.key == key)
                        {
                            self.nets.push(NetEntry::new(index, key));
                        }
                        "verified: confirmations, session key and Data MIC correct".into()
                    } else {
                        self.stats.transcripts_failed += 1;
                        format!("FAILED: {}", v.failures.join("; "))
                    }
                }
                Err(e) => {
                    self.stats.transcripts_failed += 1;
                    format!("FAILED: {e}")
                }
            }
        } else if alg.is_none() {
            "not verified: unknown algorithm".into()
        } else {
            "not verified: no session secrets for this provisioner public key (record with --capture-secrets)".into()
        };
        if !problems.is_empty() {
            self.stats.transcripts_failed += 1;
        }
        f.insert("verdict".into(), json!(verdict));
        let text = format!(
            "{where_} {} {verdict}{}",
            alg.map(CryptoAlgorithm::name).unwrap_or("(no Start)"),
            if problems.is_empty() {
                String::new()
            } else {
                format!("; problems: {}", problems.join("; "))
            }
        );
        self.record(Kind::ProvisioningTranscript, text, f);
    }

    // ----- GATT -----

    fn gatt(&mut self, conn: ConnId, c: Characteristic, value: &[u8]) {
        let p = match ProxyPdu::parse(value) {
            Ok(p) => p,
            Err(e) => {
                self.undecodable("proxy", format!("{conn} {}: {e}", c.short_name()), value);
                return;
            }
        };
        let key = (conn, c);
        let (ty, data, segments) = match p.sar {
            Sar::Complete => {
                if let Some(old) = self.proxy_sar.remove(&key) {
                    self.undecodable(
                        "proxy",
                        format!(
                            "{conn} {}: segmented message of type 0x{:02x} abandoned after {} segments",
                            c.short_name(),
                            old.ty,
                            old.segments
                        ),
                        &old.data,
                    );
                }
                (p.message_type.0, p.data, 1)
            }
            Sar::First => {
                if let Some(old) = self.proxy_sar.insert(
                    key,
                    ProxySar {
                        ty: p.message_type.0,
                        data: p.data,
                        segments: 1,
                    },
                ) {
                    self.undecodable(
                        "proxy",
                        format!(
                            "{conn} {}: segmented message abandoned after {} segments (a new one started)",
                            c.short_name(),
                            old.segments
                        ),
                        &old.data,
                    );
                }
                return;
            }
            Sar::Continuation | Sar::Last => {
                let Some(buf) = self.proxy_sar.get_mut(&key) else {
                    self.undecodable(
                        "proxy",
                        format!(
                            "{conn} {}: {:?} segment without a first segment",
                            c.short_name(),
                            p.sar
                        ),
                        value,
                    );
                    return;
                };
                if buf.ty != p.message_type.0 {
                    let ty = buf.ty;
                    self.proxy_sar.remove(&key);
                    self.undecodable(
                        "proxy",
                        format!(
                            "{conn} {}: segment of type 0x{:02x} continues a message of type 0x{ty:02x}",
                            c.short_name(),
                            p.message_type.0
                        ),
                        value,
                    );
                    return;
                }
                buf.data.extend_from_slice(&p.data);
                buf.segments += 1;
                if buf.data.len() > MAX_PROXY_MESSAGE {
                    let n = buf.segments;
                    self.proxy_sar.remove(&key);
                    self.undecodable(
                        "proxy",
                        format!(
                            "{conn} {}: segmented message longer than {MAX_PROXY_MESSAGE} octets after {n} segments, dropped",
                            c.short_name()
                        ),
                        &[],
                    );
                    return;
                }
                if p.sar == Sar::Continuation {
                    return;
                }
                let Some(buf) = self.proxy_sar.remove(&key) else {
                    return;
                };
                (buf.ty, buf.data, buf.segments)
            }
        };
        let ty = ProxyMessageType(ty);
        if c.is_provisioning() {
            if ty == ProxyMessageType::PROVISIONING_PDU {
                self.provisioning(SessionId::Gatt(conn), Some(c.is_data_in()), &data, 0);
            } else {
                self.undecodable(
                    "proxy",
                    format!(
                        "{conn} {}: message type 0x{:02x} on the Mesh Provisioning service (only provisioning PDUs are allowed, §7.1)",
                        c.short_name(),
                        ty.0
                    ),
                    &data,
                );
            }
            return;
        }
        let mut f = Map::new();
        let tname = ty.name().unwrap_or("RFU");
        f.insert("session".into(), json!(conn.to_string()));
        f.insert(
            "direction".into(),
            json!(if c.is_data_in() { "client" } else { "server" }),
        );
        f.insert("message_type".into(), json!(tname));
        f.insert("segments".into(), json!(segments));
        f.insert("hex".into(), json!(hex::encode(&data)));
        let arrow = if c.is_data_in() { "C→S" } else { "S→C" };
        self.record(
            Kind::ProxyPdu,
            format!(
                "{conn} {arrow} {tname} ({} octets, {segments} segment(s))",
                data.len()
            ),
            f,
        );
        match ty {
            ProxyMessageType::NETWORK_PDU => self.network(&data, "gatt"),
            ProxyMessageType::MESH_BEACON => self.beacon(None, &data, "gatt"),
            ProxyMessageType::PROXY_CONFIGURATION => self.proxy_config(&data),
            _ => self.undecodable(
                "proxy",
                format!(
                    "{conn}: message type 0x{:02x} is not valid on the Mesh Proxy service",
                    ty.0
                ),
                &data,
            ),
        }
    }

    fn proxy_config(&mut self, pdu: &[u8]) {
        let ivi = pdu.first().is_some_and(|b| b & 0x80 != 0);
        let iv = mesh_crypto::network::rx_iv_index(self.iv_index, ivi);
        let opened = self.nets.iter().find_map(|n| {
            mesh_crypto::network::decrypt_proxy_config_pdu(&n.k2, iv, pdu)
                .ok()
                .map(|d| (n.index, d))
        });
        let mut f = Map::new();
        f.insert("bearer".into(), json!("gatt"));
        f.insert("proxy_configuration".into(), json!(true));
        match opened {
            None => {
                self.stats.network_undecrypted += 1;
                f.insert("decrypted".into(), json!(false));
                f.insert("reason".into(), json!(self.no_net_key_reason()));
                f.insert("hex".into(), json!(hex::encode(pdu)));
                let text = format!(
                    "proxy configuration, not decrypted: {}",
                    self.no_net_key_reason()
                );
                self.record(Kind::NetworkPdu, text, f);
            }
            Some((index, d)) => {
                let h = d.header;
                f.insert("decrypted".into(), json!(true));
                f.insert("net_key_index".into(), json!(index));
                f.insert("src".into(), json!(hex16(h.src)));
                f.insert("dst".into(), json!(hex16(h.dst)));
                f.insert("seq".into(), json!(h.seq));
                f.insert("ttl".into(), json!(h.ttl));
                f.insert("ctl".into(), json!(h.ctl));
                let msg = ProxyConfigMessage::parse(&d.transport_pdu);
                let text = match &msg {
                    Ok(m) => format!("{m:?}"),
                    Err(e) => format!("not decoded: {e}"),
                };
                f.insert(
                    "opcode".into(),
                    json!(d.transport_pdu.first().map(|o| format!("0x{o:02x}"))),
                );
                f.insert("message".into(), json!(text));
                self.record(
                    Kind::NetworkPdu,
                    format!(
                        "{} → proxy SEQ {} proxy configuration: {text}",
                        hex16(h.src),
                        h.seq
                    ),
                    f,
                );
            }
        }
    }

    fn no_net_key_reason(&self) -> &'static str {
        if self.nets.is_empty() {
            "no NetKey given"
        } else {
            "no NetKey with this NID authenticates it (another network, another IV Index or corrupted)"
        }
    }

    // ----- network and transport -----

    fn network(&mut self, pdu: &[u8], bearer: &str) {
        if pdu.len() < 14 || pdu.len() > mesh_crypto::network::MAX_NETWORK_PDU {
            self.undecodable(
                "network",
                format!("network PDU of {} octets (14 to 29 allowed)", pdu.len()),
                pdu,
            );
            return;
        }
        let ivi = pdu[0] & 0x80 != 0;
        let nid = pdu[0] & 0x7f;
        let iv = mesh_crypto::network::rx_iv_index(self.iv_index, ivi);
        let opened = self.nets.iter().filter(|n| n.k2.nid == nid).find_map(|n| {
            mesh_crypto::network::decrypt_pdu(&n.k2, iv, pdu)
                .ok()
                .map(|d| (n.index, d))
        });
        let mut f = Map::new();
        f.insert("bearer".into(), json!(bearer));
        f.insert("nid".into(), json!(format!("0x{nid:02x}")));
        f.insert("ivi".into(), json!(u8::from(ivi)));
        let Some((index, d)) = opened else {
            self.stats.network_undecrypted += 1;
            let reason = self.no_net_key_reason();
            f.insert("decrypted".into(), json!(false));
            f.insert("reason".into(), json!(reason));
            f.insert("hex".into(), json!(hex::encode(pdu)));
            self.record(
                Kind::NetworkPdu,
                format!("NID 0x{nid:02x} not decrypted: {reason}"),
                f,
            );
            return;
        };
        let h = d.header;
        if !self.seen_network.insert((h.src, h.seq, iv)) {
            self.stats.network_duplicates += 1;
            return;
        }
        if self.seen_network.len() > 1_000_000 {
            self.seen_network.clear();
        }
        f.insert("decrypted".into(), json!(true));
        f.insert("net_key_index".into(), json!(index));
        f.insert("iv_index".into(), json!(iv));
        f.insert("src".into(), json!(hex16(h.src)));
        f.insert("dst".into(), json!(hex16(h.dst)));
        f.insert("seq".into(), json!(h.seq));
        f.insert("ttl".into(), json!(h.ttl));
        f.insert("ctl".into(), json!(h.ctl));
        let lower = match LowerPdu::parse(h.ctl, &d.transport_pdu) {
            Ok(l) => l,
            Err(e) => {
                f.insert("transport".into(), json!(format!("not decoded: {e}")));
                f.insert("opcode".into(), Value::Null);
                self.record(
                    Kind::NetworkPdu,
                    format!("{} → {} SEQ {}", hex16(h.src), hex16(h.dst), h.seq),
                    f,
                );
                self.undecodable(
                    "transport",
                    format!("lower transport PDU from {}: {e}", hex16(h.src)),
                    &d.transport_pdu,
                );
                return;
            }
        };
        // The access message this PDU completes, if any: (seq_auth, akf, aid, szmic, upper).
        let mut complete: Option<(u32, bool, u8, bool, Vec<u8>, u32)> = None;
        let transport = match &lower {
            LowerPdu::UnsegmentedAccess { akf, aid, upper } => {
                complete = Some((h.seq, *akf, *aid, false, upper.clone(), 1));
                format!("unsegmented access, {}", key_flag(*akf, *aid))
            }
            LowerPdu::SegmentedAccess {
                akf,
                aid,
                szmic,
                seg,
                segment,
            } => {
                let seq_auth = seq_auth(h.seq, seg.seq_zero);
                let key = (h.src, iv, seq_auth);
                let buf = self.segmented.entry(key).or_insert_with(|| SegBuf {
                    seg_n: seg.seg_n,
                    segments: vec![None; usize::from(seg.seg_n) + 1],
                    done: false,
                });
                let desc = format!(
                    "segment {}/{} of SeqZero 0x{:04x}, {}",
                    seg.seg_o,
                    seg.seg_n,
                    seg.seq_zero,
                    key_flag(*akf, *aid)
                );
                if buf.seg_n != seg.seg_n {
                    desc + " (SegN differs from the message's first segment)"
                } else {
                    if let Some(slot) = buf.segments.get_mut(usize::from(seg.seg_o))
                        && slot.is_none()
                    {
                        *slot = Some(segment.clone());
                    }
                    if !buf.done && buf.segments.iter().all(Option::is_some) {
                        buf.done = true;
                        let upper: Vec<u8> =
                            buf.segments.iter().flatten().flatten().copied().collect();
                        complete = Some((
                            seq_auth,
                            *akf,
                            *aid,
                            *szmic,
                            upper,
                            u32::from(seg.seg_n) + 1,
                        ));
                    }
                    desc
                }
            }
            LowerPdu::UnsegmentedControl { opcode, params } => {
                if *opcode == 0 {
                    match SegmentAck::parse(params) {
                        Ok(a) => format!(
                            "Segment Acknowledgment SeqZero 0x{:04x} BlockAck 0x{:08x}{}",
                            a.seq_zero,
                            a.block_ack,
                            if a.obo { " (on behalf of an LPN)" } else { "" }
                        ),
                        Err(e) => format!("Segment Acknowledgment not decoded: {e}"),
                    }
                } else {
                    format!(
                        "control opcode 0x{opcode:02x} {} ({} octets)",
                        control_name(*opcode),
                        params.len()
                    )
                }
            }
            LowerPdu::SegmentedControl { opcode, seg, .. } => format!(
                "segmented control opcode 0x{opcode:02x} {}, segment {}/{}",
                control_name(*opcode),
                seg.seg_o,
                seg.seg_n
            ),
        };
        if self.segmented.len() > 100_000 {
            self.segmented.retain(|_, b| !b.done);
        }
        f.insert("transport".into(), json!(transport));
        let access = complete.map(|(seq_auth, akf, aid, szmic, upper, segments)| {
            (
                self.open_access(h.src, h.dst, iv, seq_auth, akf, aid, szmic, &upper),
                seq_auth,
                segments,
                upper,
            )
        });
        let opcode = access
            .as_ref()
            .and_then(|(r, ..)| r.as_ref().ok())
            .and_then(|(plain, _)| Opcode::parse(plain).ok())
            .map(|(o, _)| o);
        f.insert("opcode".into(), json!(opcode.map(opcode_string)));
        self.record(
            Kind::NetworkPdu,
            format!(
                "{} → {} SEQ {} TTL {} {transport}",
                hex16(h.src),
                hex16(h.dst),
                h.seq,
                h.ttl
            ),
            f,
        );
        if let Some((result, seq_auth, segments, upper)) = access {
            self.access(h.src, h.dst, seq_auth, segments, result, &upper);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn open_access(
        &self,
        src: u16,
        dst: u16,
        iv: u32,
        seq_auth: u32,
        akf: bool,
        aid: u8,
        szmic: bool,
        upper: &[u8],
    ) -> Result<(Vec<u8>, String), String> {
        if (0x8000..0xc000).contains(&dst) {
            return Err("virtual destination address: its Label UUID is not known".into());
        }
        let params = AccessParams {
            seq: seq_auth & 0xff_ffff,
            src,
            dst,
            iv_index: iv,
        };
        let mic = if szmic { MicLen::Mic8 } else { MicLen::Mic4 };
        if akf {
            let mut tried = false;
            for (index, a, key) in &self.apps {
                if *a != aid {
                    continue;
                }
                tried = true;
                if let Ok(p) =
                    mesh_crypto::access::decrypt(AccessKey::App(key), &params, None, upper, mic)
                {
                    return Ok((p, format!("app:{index}")));
                }
            }
            return Err(if tried {
                format!("no AppKey with AID 0x{aid:02x} opens it (TransMIC mismatch)")
            } else {
                format!("no AppKey with AID 0x{aid:02x}")
            });
        }
        let owner = |a: u16| {
            move |d: &&DevEntry| {
                a >= d.address && u32::from(a) < u32::from(d.address) + u32::from(d.elements.max(1))
            }
        };
        let candidates = self
            .devs
            .iter()
            .filter(owner(src))
            .chain(self.devs.iter().filter(owner(dst)))
            .chain(self.devs.iter());
        for d in candidates {
            if let Ok(p) =
                mesh_crypto::access::decrypt(AccessKey::Dev(&d.key), &params, None, upper, mic)
            {
                return Ok((p, format!("dev:{}", hex16(d.address))));
            }
        }
        Err(format!(
            "device key: none known for {} or {}",
            hex16(src),
            hex16(dst)
        ))
    }

    fn access(
        &mut self,
        src: u16,
        dst: u16,
        seq_auth: u32,
        segments: u32,
        result: Result<(Vec<u8>, String), String>,
        upper: &[u8],
    ) {
        let mut f = Map::new();
        f.insert("src".into(), json!(hex16(src)));
        f.insert("dst".into(), json!(hex16(dst)));
        f.insert("seq".into(), json!(seq_auth));
        f.insert("segments".into(), json!(segments));
        let (plain, key) = match result {
            Ok(x) => x,
            Err(reason) => {
                self.stats.access_undecrypted += 1;
                f.insert("decrypted".into(), json!(false));
                f.insert("reason".into(), json!(reason));
                f.insert("hex".into(), json!(hex::encode(upper)));
                self.record(
                    Kind::AccessMessage,
                    format!("{} → {} not decrypted: {reason}", hex16(src), hex16(dst)),
                    f,
                );
                return;
            }
        };
        f.insert("decrypted".into(), json!(true));
        f.insert("key".into(), json!(key));
        let (opcode, params) = match Opcode::parse(&plain) {
            Ok(x) => x,
            Err(e) => {
                self.undecodable(
                    "access",
                    format!("access message from {}: {e}", hex16(src)),
                    &plain,
                );
                return;
            }
        };
        f.insert("opcode".into(), json!(opcode_string(opcode)));
        f.insert("params".into(), json!(hex::encode(params)));
        let (name, detail) = if key.starts_with("dev:") {
            match ConfigMessage::parse(opcode, params) {
                Ok(m) => {
                    let dbg = format!("{m:?}");
                    let variant = dbg.split([' ', '{', '(']).next().unwrap_or("").to_string();
                    (format!("Config {}", spaced(&variant)), dbg)
                }
                Err(e) => (
                    format!("opcode {}", opcode_string(opcode)),
                    format!("not a Configuration message this decoder reads: {e}"),
                ),
            }
        } else {
            model_message(opcode, params)
        };
        f.insert("name".into(), json!(name));
        f.insert("message".into(), json!(detail));
        self.record(
            Kind::AccessMessage,
            format!("{} → {} [{key}] {name}: {detail}", hex16(src), hex16(dst)),
            f,
        );
    }
}

/// The result of checking a transcript with its secrets.
struct Verified {
    ok: bool,
    failures: Vec<String>,
    fields: Map<String, Value>,
    device_key: Option<(u16, DevKey)>,
    net_key: Option<(u16, NetKey)>,
}

fn verify(
    s: &ProvSession,
    alg: CryptoAlgorithm,
    sec: &super::keys::SessionSecrets,
) -> Result<Verified, String> {
    let (Some(invite), Some(caps), Some(start), Some(pkp), Some(pkd)) = (
        s.invite,
        s.capabilities,
        s.start,
        s.pk_provisioner,
        s.pk_device,
    ) else {
        return Err("transcript incomplete".into());
    };
    let mut failures = Vec::new();
    let mut fields = Map::new();
    // ECDH: computed from the provisioner's private key when it was logged (a real check
    // of the device's public key), else the logged secret.
    let logged = sec
        .secrets
        .get("ecdh_secret")
        .and_then(|b| EcdhSecret::from_slice(b).ok());
    let computed = sec
        .secrets
        .get("provisioner_private_key")
        .and_then(|p| KeyPair::from_private_bytes(p).ok())
        .and_then(|kp| {
            let dev = EcdhPublicKey::from_bytes(&pkd).ok()?;
            kp.ecdh(&dev).ok()
        });
    let ecdh = match (computed, logged) {
        (Some(c), Some(l)) => {
            let same = c.expose_secret() == l.expose_secret();
            fields.insert("ecdh_matches_key_log".into(), json!(same));
            if !same {
                failures.push(
                    "ECDH secret computed from the private key differs from the logged one".into(),
                );
            }
            c
        }
        (Some(c), None) => c,
        (None, Some(l)) => l,
        (None, None) => return Err("the session secrets have no ECDH secret or private key".into()),
    };
    let auth = sec
        .secrets
        .get("auth_value")
        .ok_or("the session secrets have no AuthValue")
        .and_then(|a| {
            AuthValue::from_slice(a).map_err(|_| "the logged AuthValue has a bad length")
        })?;
    let ci = mesh_crypto::provisioning::confirmation_inputs(&invite, &caps, &start, &pkp, &pkd);
    let ctx = ConfirmationContext::new(alg, &ecdh, &ci, auth).map_err(|e| e.to_string())?;
    let value = |v: &Option<Vec<u8>>| v.as_deref().and_then(|b| Confirmation::from_slice(b).ok());
    let random = |v: &Option<Vec<u8>>| v.as_deref().and_then(|b| ProvRandom::from_slice(b).ok());
    let (Some(cp), Some(cd), Some(rp), Some(rd)) = (
        value(&s.conf_provisioner),
        value(&s.conf_device),
        random(&s.rand_provisioner),
        random(&s.rand_device),
    ) else {
        return Err("confirmations or randoms missing or of a bad length".into());
    };
    let p_ok = ctx.verify(&rp, &cp);
    let d_ok = ctx.verify(&rd, &cd);
    fields.insert(
        "provisioner_confirmation".into(),
        json!(if p_ok { "verified" } else { "wrong" }),
    );
    fields.insert(
        "device_confirmation".into(),
        json!(if d_ok { "verified" } else { "wrong" }),
    );
    if !p_ok {
        failures.push("the provisioner's Confirmation does not match its Random".into());
    }
    if !d_ok {
        failures.push("the device's Confirmation does not match its Random".into());
    }
    let keys = ctx.session_keys(&ecdh, &rp, &rd);
    if let Some(logged) = sec.secrets.get("session_key") {
        let same = logged.as_slice() == keys.session_key.expose_secret();
        fields.insert("session_key_matches_key_log".into(), json!(same));
        if !same {
            failures.push("the derived SessionKey differs from the logged one".into());
        }
    }
    let mut device_key = None;
    let mut net_key = None;
    match s.data.map(|d| keys.decrypt_data(&d)) {
        Some(Ok(plain)) => {
            fields.insert("data_mic".into(), json!("verified"));
            let b = plain.expose_secret();
            let index = u16::from_be_bytes([b[16], b[17]]) & 0x0fff;
            let flags = b[18];
            let iv = u32::from_be_bytes([b[19], b[20], b[21], b[22]]);
            let addr = u16::from_be_bytes([b[23], b[24]]);
            fields.insert("net_key_index".into(), json!(index));
            fields.insert("flags".into(), json!(flags));
            fields.insert("iv_index".into(), json!(iv));
            fields.insert("unicast_address".into(), json!(hex16(addr)));
            let mut nk = [0u8; 16];
            nk.copy_from_slice(&b[..16]);
            net_key = Some((index, NetKey::from_bytes(nk)));
            nk.iter_mut().for_each(|x| *x = 0);
            if let Some(logged) = sec.secrets.get("device_key") {
                let same = logged.as_slice() == keys.device_key.expose_secret();
                fields.insert("device_key_matches_key_log".into(), json!(same));
                if !same {
                    failures.push("the derived DeviceKey differs from the logged one".into());
                }
            }
            device_key = Some((addr, keys.device_key.clone()));
        }
        Some(Err(_)) => {
            fields.insert("data_mic".into(), json!("wrong"));
            failures.push("the Provisioning Data MIC does not verify".into());
        }
        None => {}
    }
    Ok(Verified {
        ok: failures.is_empty(),
        failures,
        fields,
        device_key,
        net_key,
    })
}

fn key_flag(akf: bool, aid: u8) -> String {
    if akf {
        format!("AKF 1 AID 0x{aid:02x}")
    } else {
        "device key".into()
    }
}

/// SeqAuth's low 24 bits from a segment's SEQ and SeqZero (§3.5.3.1): the largest value
/// ≤ SEQ whose low 13 bits are SeqZero.
fn seq_auth(seq: u32, seq_zero: u16) -> u32 {
    let base = (seq & !0x1fff) | u32::from(seq_zero & 0x1fff);
    if base > seq {
        base.wrapping_sub(0x2000) & 0xff_ffff
    } else {
        base
    }
}

fn control_name(op: u8) -> &'static str {
    match op {
        0x00 => "Segment Acknowledgment",
        0x01 => "Friend Poll",
        0x02 => "Friend Update",
        0x03 => "Friend Request",
        0x04 => "Friend Offer",
        0x05 => "Friend Clear",
        0x06 => "Friend Clear Confirm",
        0x07 => "Friend Subscription List Add",
        0x08 => "Friend Subscription List Remove",
        0x09 => "Friend Subscription List Confirm",
        0x0a => "Heartbeat",
        _ => "",
    }
}

fn opcode_string(o: Opcode) -> String {
    match o.size() {
        1 => format!("0x{:02x}", o.0),
        2 => format!("0x{:04x}", o.0),
        _ => format!("0x{:06x}", o.0),
    }
}

/// `AppKeyAdd` → `AppKey Add`; `ModelAppBind` → `Model App Bind`.
fn spaced(variant: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = variant.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
        let prev_lower = i > 0 && chars[i - 1].is_lowercase();
        if i > 0 && c.is_uppercase() && (prev_lower || next_lower) && !out.ends_with(' ') {
            // Keep acronyms ("AppKey", "NetKey") together when followed by "Key".
            if !(out.ends_with("App") || out.ends_with("Net") || out.ends_with("Dev")) || *c != 'K'
            {
                out.push(' ');
            }
        }
        out.push(*c);
    }
    out
}

/// Names and fields of model messages sent with an application key: Generic OnOff
/// (MshMDL v1.1 §3.2.1); others by opcode.
fn model_message(o: Opcode, p: &[u8]) -> (String, String) {
    let transition = |t: u8| {
        let steps = u32::from(t & 0x3f);
        let ms = match t >> 6 {
            0 => 100,
            1 => 1000,
            2 => 10_000,
            _ => 600_000,
        };
        format!("{} ms", steps * ms)
    };
    match (o.0, p) {
        (0x8201, []) => ("Generic OnOff Get".into(), String::new()),
        (0x8202 | 0x8203, [onoff, tid, rest @ ..]) => {
            let name = if o.0 == 0x8202 {
                "Generic OnOff Set"
            } else {
                "Generic OnOff Set Unacknowledged"
            };
            let mut d = format!("OnOff {onoff} TID {tid}");
            if let [tt, delay] = rest {
                d += &format!(
                    " transition {} delay {} ms",
                    transition(*tt),
                    u32::from(*delay) * 5
                );
            }
            (name.into(), d)
        }
        (0x8204, [present, rest @ ..]) => {
            let mut d = format!("Present OnOff {present}");
            if let [target, remaining] = rest {
                d += &format!(
                    " Target OnOff {target} remaining {}",
                    transition(*remaining)
                );
            }
            ("Generic OnOff Status".into(), d)
        }
        _ => (
            format!("opcode {}", opcode_string(o)),
            format!("{} parameter octets", p.len()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_auth_from_seq_zero() {
        assert_eq!(seq_auth(0x3129ab, 0x09ab), 0x3129ab);
        assert_eq!(seq_auth(0x3129ac, 0x09ab), 0x3129ab);
        assert_eq!(seq_auth(0x002001, 0x1fff), 0x001fff);
    }

    #[test]
    fn names() {
        assert_eq!(spaced("AppKeyAdd"), "AppKey Add");
        assert_eq!(spaced("ModelAppBind"), "Model App Bind");
        assert_eq!(spaced("CompositionDataGet"), "Composition Data Get");
        let (n, d) = model_message(Opcode(0x8202), &[1, 7]);
        assert_eq!(
            (n.as_str(), d.as_str()),
            ("Generic OnOff Set", "OnOff 1 TID 7")
        );
    }
}
