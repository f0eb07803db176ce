//! Replaying a recorded session (`meshprov replay`, `tests/replay.rs`): the provisioner, built
//! with the recorded configuration and randomness and fed the capture's inbound packets at
//! their recorded times, must send byte for byte what the capture shows it sent, in the same
//! order, and derive the same device keys.
//!
//! **The input** is a capture meshprov recorded with `--capture FILE.pcapng --capture-secrets`
//! and its key sidecar `FILE.keys.json` (format `meshprov-capture-keys/2`), whose `replay`
//! object ([`ReplaySpec`]) holds what is not on the air: the driver (`sim` or `live`), the
//! NetKey, index, flags and IV Index handed out, the PB-ADV timings, the radio's pacing, the
//! seed of the link table's RNG, and per session its device, bearer, when it was opened (and,
//! on PB-GATT, when the connection was ready), its policies (algorithm, authentication and the
//! static value, OOB public key, attention, records), the seed of its RNG, the unicast address
//! the store gave, the Output OOB value the installer entered and when, and the verdict on the
//! device's certificate chain. A run on a real radio draws a fresh seed from the operating
//! system when its secrets are recorded, so that its randomness can be replayed like a
//! simulated run's (the ephemeral key it produces is as unpredictable; the sidecar that names
//! it holds the private key anyway).
//!
//! **The replay** ([`replay`]) builds a [`Host`] and drives it in virtual time the way the
//! recording driver did ([`crate::sim::run`] or [`crate::live`]): at each instant, timers, then
//! sessions to open, then inbound packets due (PB-ADV payloads from anyone but the
//! provisioner, GATT notifications; in capture order), GATT readiness, [`Host::drive`], GATT
//! writes, Output OOB answers, and one advertisement when the radio is free. The radio's
//! pacing is taken from the capture: on the simulated air a PB-ADV payload goes out as
//! `transmit_count` advertising events of three copies each, and the radio is free again
//! `adv_interval` after the start of the last event (or when its last copy ends, if later),
//! as [`crate::radio::sim::SimAir`] computes it; on a real radio, the next advertisement goes
//! when the capture shows it went. Retransmissions therefore fall where they fell.
//!
//! **What is compared**: every packet the provisioner sent — each PB-ADV payload (the copies
//! of one advertisement count once) and each GATT value written to Data In — in order, byte
//! for byte; then each session's device key against the sidecar's. Not compared: timestamps
//! of sent packets (they are the radio's), what the provisioner does not send (beacons of
//! others, link-layer details), anything after the provisioning sessions.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mesh_crypto::{DevKey, NetKey};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::bearer::pb_adv::PbAdvConfig;
use crate::decode::frames::AD_PB_ADV;
use crate::decode::{CaptureReader, ConnId, Extractor, MeshPacket, MeshPacketKind, ReadError};
use crate::host::{CertVerifier, Host, NodeRecord, NodeSink, SessionId};
use crate::provisioning::{
    AlgorithmPolicy, AuthPolicy, OobValue, ProvisionerConfig, ProvisioningParams, RecordsPolicy,
};
use crate::time::Instant;
use crate::uuid::DeviceUuid;

/// How late the real-time driver ([`crate::live`]) wakes for a due timer, as the replay of a
/// capture from a real radio models it: tokio's timers have a resolution of one millisecond.
pub const LIVE_TIMER_LATENCY: Duration = Duration::from_millis(1);

/// The provisioner's advertising address on the simulated air.
pub const SIM_PROVISIONER_ADDRESS: [u8; 6] = [0xC0, 0x4D, 0x50, 0x00, 0x00, 0x00];

/// A PB-ADV link table's timings, in microseconds ([`PbAdvConfig`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PbAdvSpec {
    /// [`PbAdvConfig::retransmit_interval`].
    pub retransmit_interval_us: u64,
    /// [`PbAdvConfig::retransmit_jitter`].
    pub retransmit_jitter_us: u64,
    /// [`PbAdvConfig::link_open_timeout`].
    pub link_open_timeout_us: u64,
    /// [`PbAdvConfig::transaction_timeout`].
    pub transaction_timeout_us: u64,
    /// [`PbAdvConfig::link_close_repeats`].
    pub link_close_repeats: u8,
    /// [`PbAdvConfig::link_close_interval`].
    pub link_close_interval_us: u64,
    /// [`PbAdvConfig::max_links`].
    pub max_links: usize,
    /// [`PbAdvConfig::implicit_ack`].
    pub implicit_ack: bool,
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl From<&PbAdvConfig> for PbAdvSpec {
    fn from(c: &PbAdvConfig) -> Self {
        Self {
            retransmit_interval_us: us(c.retransmit_interval),
            retransmit_jitter_us: us(c.retransmit_jitter),
            link_open_timeout_us: us(c.link_open_timeout),
            transaction_timeout_us: us(c.transaction_timeout),
            link_close_repeats: c.link_close_repeats,
            link_close_interval_us: us(c.link_close_interval),
            max_links: c.max_links,
            implicit_ack: c.implicit_ack,
        }
    }
}

impl From<&PbAdvSpec> for PbAdvConfig {
    fn from(s: &PbAdvSpec) -> Self {
        Self {
            retransmit_interval: Duration::from_micros(s.retransmit_interval_us),
            retransmit_jitter: Duration::from_micros(s.retransmit_jitter_us),
            link_open_timeout: Duration::from_micros(s.link_open_timeout_us),
            transaction_timeout: Duration::from_micros(s.transaction_timeout_us),
            link_close_repeats: s.link_close_repeats,
            link_close_interval: Duration::from_micros(s.link_close_interval_us),
            max_links: s.max_links,
            implicit_ack: s.implicit_ack,
        }
    }
}

/// How the recording radio paced the provisioner's advertisements.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RadioSpec {
    /// The shortest time from one advertising event to the next of the same radio, µs.
    pub adv_interval_us: u64,
    /// Simulated air: time to move from one advertising channel to the next, µs.
    pub channel_switch_us: Option<u64>,
    /// Simulated air: advertising events per advertisement (each recorded as three copies).
    pub transmit_count: Option<u8>,
}

/// A session's policies ([`ProvisionerConfig`] without its key log).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSpec {
    /// `auto`, `cmac` or `hmac` ([`AlgorithmPolicy`]).
    pub algorithm: String,
    /// `no-oob`, `static`, `output`, `input` or `auto` ([`AuthPolicy`]).
    pub auth: String,
    /// The static OOB value (`static`, or `auto`'s when known), hex.
    pub static_oob: Option<String>,
    /// [`ProvisionerConfig::allow_no_oob`].
    pub allow_no_oob: bool,
    /// [`ProvisionerConfig::oob_public_key`], hex `X ‖ Y`.
    pub oob_public_key: Option<String>,
    /// [`ProvisionerConfig::attention_duration`], seconds.
    pub attention_duration: u8,
    /// [`ProvisionerConfig::protocol_timeout`], ms.
    pub protocol_timeout_ms: u64,
    /// Certificate-based provisioning: the Fragment Maximum Size of record requests.
    pub records_fragment_size: Option<u16>,
}

impl From<&ProvisionerConfig> for ConfigSpec {
    fn from(c: &ProvisionerConfig) -> Self {
        let (auth, static_oob) = match &c.auth {
            AuthPolicy::NoOob => ("no-oob", None),
            AuthPolicy::Static(v) => ("static", Some(hex::encode(v))),
            AuthPolicy::Output => ("output", None),
            AuthPolicy::Input => ("input", None),
            AuthPolicy::Auto { static_oob } => ("auto", static_oob.as_ref().map(hex::encode)),
        };
        Self {
            algorithm: match c.algorithm {
                AlgorithmPolicy::Auto => "auto",
                AlgorithmPolicy::Cmac => "cmac",
                AlgorithmPolicy::Hmac => "hmac",
            }
            .to_string(),
            auth: auth.to_string(),
            static_oob,
            allow_no_oob: c.allow_no_oob,
            oob_public_key: c.oob_public_key.map(hex::encode),
            attention_duration: c.attention_duration,
            protocol_timeout_ms: u64::try_from(c.protocol_timeout.as_millis()).unwrap_or(u64::MAX),
            records_fragment_size: match c.records {
                RecordsPolicy::None => None,
                RecordsPolicy::Fetch { fragment_size } => Some(fragment_size),
            },
        }
    }
}

impl ConfigSpec {
    /// The configuration it describes.
    pub fn to_config(&self) -> Result<ProvisionerConfig, ReplayError> {
        let bad = |m: String| ReplayError::Sidecar(format!("replay.sessions[].config: {m}"));
        let static_oob = match &self.static_oob {
            Some(h) => Some(hex::decode(h).map_err(|e| bad(format!("static_oob: {e}")))?),
            None => None,
        };
        let auth = match self.auth.as_str() {
            "no-oob" => AuthPolicy::NoOob,
            "static" => AuthPolicy::Static(
                static_oob.ok_or_else(|| bad("static auth without static_oob".into()))?,
            ),
            "output" => AuthPolicy::Output,
            "input" => AuthPolicy::Input,
            "auto" => AuthPolicy::Auto { static_oob },
            other => return Err(bad(format!("unknown auth '{other}'"))),
        };
        let algorithm = match self.algorithm.as_str() {
            "auto" => AlgorithmPolicy::Auto,
            "cmac" => AlgorithmPolicy::Cmac,
            "hmac" => AlgorithmPolicy::Hmac,
            other => return Err(bad(format!("unknown algorithm '{other}'"))),
        };
        let oob_public_key = match &self.oob_public_key {
            Some(h) => Some(
                hex::decode(h)
                    .ok()
                    .and_then(|b| <[u8; 64]>::try_from(b).ok())
                    .ok_or_else(|| bad("oob_public_key is not 64 octets of hex".into()))?,
            ),
            None => None,
        };
        Ok(ProvisionerConfig {
            algorithm,
            auth,
            allow_no_oob: self.allow_no_oob,
            oob_public_key,
            attention_duration: self.attention_duration,
            protocol_timeout: Duration::from_millis(self.protocol_timeout_ms),
            records: match self.records_fragment_size {
                Some(fragment_size) => RecordsPolicy::Fetch { fragment_size },
                None => RecordsPolicy::None,
            },
            key_log: None,
        })
    }
}

/// The Output OOB value the installer entered, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OobAnswer {
    /// Time since the capture's time zero, ns.
    pub at_ns: u64,
    /// A number (decimal), or
    pub numeric: Option<String>,
    /// characters `0-9A-Z`.
    pub text: Option<String>,
}

impl OobAnswer {
    fn new(at: Instant, v: &OobValue) -> Self {
        let (numeric, text) = match v {
            OobValue::Numeric(n) => (Some(n.to_string()), None),
            OobValue::Alphanumeric(s) => (None, Some(s.clone())),
        };
        Self {
            at_ns: ns(at),
            numeric,
            text,
        }
    }

    fn value(&self) -> Result<OobValue, ReplayError> {
        let bad = || ReplayError::Sidecar("replay.sessions[].output_oob is not a value".into());
        match (&self.numeric, &self.text) {
            (Some(n), None) => n.parse().map(OobValue::Numeric).map_err(|_| bad()),
            (None, Some(t)) => OobValue::alphanumeric(t).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

/// What the certificate verifier said of a device's chain (certificate-based provisioning).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertVerdict {
    /// The device public key taken from the verified certificate, hex `X ‖ Y`.
    pub public_key: Option<String>,
    /// Why the chain was refused.
    pub rejected: Option<String>,
}

/// One session as its driver ran it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaySession {
    /// The device's UUID.
    pub uuid: String,
    /// Its name, as stored.
    pub name: String,
    /// `pb-adv` or `pb-gatt`.
    pub bearer: String,
    /// When the session was opened, ns since the capture's time zero; `null` on a real
    /// radio: the time of the capture's first packet sent (PB-ADV) or first write (PB-GATT).
    pub opened_ns: Option<u64>,
    /// PB-GATT: when notifications were enabled (the Invite goes then); `null`: at open.
    pub gatt_ready_ns: Option<u64>,
    /// PB-GATT: the ATT MTU.
    pub mtu: Option<u16>,
    /// Seed of the session's RNG (`ChaCha20Rng::seed_from_u64`).
    pub rng_seed: u64,
    /// Its policies.
    pub config: ConfigSpec,
    /// The unicast address the store gave it, when it got one.
    pub address: Option<u16>,
    /// Output OOB: the value the installer entered and when.
    pub output_oob: Option<OobAnswer>,
    /// Certificate-based provisioning: the verifier's verdict.
    pub certificate: Option<CertVerdict>,
}

/// The sidecar's `replay` object: everything a replay needs that is not on the air.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaySpec {
    /// The driver that ran the sessions: `sim` (virtual time) or `live` (a real radio).
    pub driver: String,
    /// Unix time, ns, of the capture's time zero (the tap's epoch).
    pub time_zero_unix_ns: u64,
    /// The address the provisioner's advertisements are recorded with.
    pub provisioner_address: String,
    /// The NetKey handed out, hex.
    pub net_key: String,
    /// Its index.
    pub net_key_index: u16,
    /// Flags handed out.
    pub flags: u8,
    /// IV Index handed out.
    pub iv_index: u32,
    /// The PB-ADV link table's timings.
    pub pb_adv: PbAdvSpec,
    /// The radio's pacing.
    pub radio: RadioSpec,
    /// Seed of the link table's RNG (Link IDs, retransmission jitter).
    pub link_rng_seed: u64,
    /// The sessions, in the order opened.
    pub sessions: Vec<ReplaySession>,
}

fn ns(t: Instant) -> u64 {
    u64::try_from(t.since_epoch().as_nanos()).unwrap_or(u64::MAX)
}

/// The replay spec of a simulated run: `building` and `opts` as run, `report` what it did,
/// `time_zero` the capture's epoch, `verdicts` what the certificate verifier said per device.
pub fn sim_spec(
    building: &crate::sim::building::Building,
    targets: &[DeviceUuid],
    opts: &crate::sim::run::RunOptions,
    report: &crate::sim::run::RunReport,
    time_zero: Duration,
    verdicts: &BTreeMap<DeviceUuid, Result<[u8; 64], String>>,
) -> ReplaySpec {
    let air = &building.air;
    let sessions = report
        .sessions
        .iter()
        .filter_map(|log| {
            let uuid = *targets.get(log.device)?;
            let spec = building.device(&uuid);
            let address = report
                .results
                .get(log.device)
                .and_then(|r| r.outcome.as_ref().ok())
                .map(|o| o.address);
            Some(ReplaySession {
                uuid: uuid.to_string(),
                name: spec.map(|s| s.name.clone()).unwrap_or_default(),
                bearer: opts.bearer.name().to_string(),
                opened_ns: Some(ns(log.opened)),
                gatt_ready_ns: log.gatt_ready.map(ns),
                mtu: log.mtu,
                rng_seed: log.rng_seed,
                config: ConfigSpec::from(&log.config),
                address,
                output_oob: log.output_oob.as_ref().map(|(t, v)| OobAnswer::new(*t, v)),
                certificate: verdicts.get(&uuid).map(verdict),
            })
        })
        .collect();
    ReplaySpec {
        driver: "sim".into(),
        time_zero_unix_ns: u64::try_from(time_zero.as_nanos()).unwrap_or(u64::MAX),
        provisioner_address: crate::radio::capture::format_bd_addr(&SIM_PROVISIONER_ADDRESS),
        net_key: hex::encode(report.params.net_key.expose_secret()),
        net_key_index: report.params.net_key_index,
        flags: report.params.flags,
        iv_index: report.params.iv_index,
        pb_adv: PbAdvSpec::from(&PbAdvConfig::default()),
        radio: RadioSpec {
            adv_interval_us: us(air.adv_interval),
            channel_switch_us: Some(us(air.channel_switch)),
            transmit_count: Some(air.transmit_count),
        },
        link_rng_seed: report.link_rng_seed,
        sessions,
    }
}

/// The replay spec of a real-time run ([`crate::live::provision`] with one target, seeded
/// with `seed`): `adv_interval` the radio's, `time_zero` the capture's epoch, `address` what
/// the store gave the device.
pub fn live_spec(
    opts: &crate::live::LiveOptions,
    target: &crate::live::LiveTarget,
    seed: u64,
    adv_interval: Duration,
    time_zero: Duration,
    address: Option<u16>,
    verdicts: &BTreeMap<DeviceUuid, Result<[u8; 64], String>>,
) -> ReplaySpec {
    ReplaySpec {
        driver: "live".into(),
        time_zero_unix_ns: u64::try_from(time_zero.as_nanos()).unwrap_or(u64::MAX),
        provisioner_address: crate::radio::capture::format_bd_addr(
            &crate::radio::tapped::PROVISIONER_ADDRESS,
        ),
        net_key: hex::encode(opts.params.net_key.expose_secret()),
        net_key_index: opts.params.net_key_index,
        flags: opts.params.flags,
        iv_index: opts.params.iv_index,
        pb_adv: PbAdvSpec::from(&opts.pb_adv),
        radio: RadioSpec {
            adv_interval_us: us(adv_interval),
            channel_switch_us: None,
            transmit_count: None,
        },
        // As `live::provision` seeds them: the link table with 0x4c494e4b, session i with
        // 2000 + i, added to the run's seed.
        link_rng_seed: seed.wrapping_add(0x4c49_4e4b),
        sessions: vec![ReplaySession {
            uuid: target.uuid.to_string(),
            name: target.name.clone(),
            bearer: opts.bearer.name().to_string(),
            opened_ns: None,
            gatt_ready_ns: None,
            mtu: None,
            rng_seed: seed.wrapping_add(2000),
            config: ConfigSpec::from(&target.config),
            address,
            output_oob: None,
            certificate: verdicts.get(&target.uuid).map(verdict),
        }],
    }
}

/// A verdict as recorded.
pub fn verdict(v: &Result<[u8; 64], String>) -> CertVerdict {
    match v {
        Ok(k) => CertVerdict {
            public_key: Some(hex::encode(k)),
            rejected: None,
        },
        Err(e) => CertVerdict {
            public_key: None,
            rejected: Some(e.clone()),
        },
    }
}

/// The verdicts a certificate verifier gave, per device (recorded for the sidecar).
pub type VerdictLog = Arc<std::sync::Mutex<BTreeMap<DeviceUuid, Result<[u8; 64], String>>>>;

/// Wraps `verifier` so that each verdict is also kept in `log`.
pub fn recording_verifier(verifier: CertVerifier, log: VerdictLog) -> CertVerifier {
    Arc::new(move |uuid, device, intermediates| {
        let v = verifier(uuid, device, intermediates);
        let mut l = match log.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        l.insert(*uuid, v.clone());
        v
    })
}

// ----- the result -----

/// Where a replay first went another way than the recording.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Divergence {
    /// The sent packet compared (1-based, in the order sent; copies of one advertisement
    /// count once); 0 for a device key.
    pub packet: u64,
    /// The capture frame of the expected packet (as Wireshark numbers them), when there is one.
    pub frame: Option<u64>,
    /// Replay time of the divergence, seconds since the capture's time zero.
    pub time: f64,
    /// What differs, in words.
    pub what: String,
    /// What the capture shows, hex (`null`: nothing).
    pub expected: Option<String>,
    /// What the replay sent, hex (`null`: nothing).
    pub got: Option<String>,
}

/// How a replay ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ReplayOutcome {
    /// Every sent packet and every device key as recorded.
    Identical {
        /// Provisioning sessions replayed.
        sessions: usize,
        /// Inbound packets fed to the provisioner (PB-ADV payloads and GATT values).
        packets_in: u64,
        /// Sent packets compared (PB-ADV payloads and GATT writes).
        packets_out: u64,
        /// Device keys derived and matched with the sidecar's.
        device_keys: usize,
        /// Virtual time the replay covered, seconds.
        virtual_time: f64,
    },
    /// The first difference.
    Diverged(Divergence),
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The capture cannot be read (or is cut short).
    #[error("{path}: {source}")]
    Capture {
        /// The file.
        path: String,
        /// Why.
        source: ReadError,
    },
    /// The key sidecar is missing or unreadable.
    #[error("{path}: {message}")]
    SidecarFile {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The sidecar has no replay information (recorded without `--capture-secrets`, or by a
    /// meshprov before replays, format `meshprov-capture-keys/1`).
    #[error(
        "the key sidecar has no replay information (format {format}): record the session again with --capture FILE.pcapng --capture-secrets"
    )]
    NotReplayable {
        /// The sidecar's format.
        format: String,
    },
    /// The sidecar's replay information is malformed.
    #[error("key sidecar: {0}")]
    Sidecar(String),
    /// The replay did not settle (a bug, reported instead of looping).
    #[error("the replay did not settle at {0:?}")]
    Stuck(Duration),
}

// ----- the input -----

/// A capture and its sidecar, ready to replay. The packets are public so that tests can
/// mutate them.
#[derive(Clone)]
pub struct ReplayInput {
    /// The sidecar's replay information.
    pub spec: ReplaySpec,
    /// Device keys of the sidecar: (device UUID, address, key).
    pub device_keys: Vec<SidecarDevKey>,
    /// The capture's mesh packets, in file order.
    pub packets: Vec<MeshPacket>,
}

impl std::fmt::Debug for ReplayInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayInput")
            .field("sessions", &self.spec.sessions.len())
            .field("packets", &self.packets.len())
            .finish_non_exhaustive()
    }
}

/// The sidecar of `capture` when none is named: `FILE.keys.json` beside it.
pub fn default_sidecar(capture: &Path) -> PathBuf {
    crate::radio::capture::sidecar_path(capture)
}

/// A device key of the sidecar: device UUID, primary address, key.
pub type SidecarDevKey = (String, u16, DevKey);

/// Reads a sidecar's JSON text: its replay spec and device keys.
pub fn parse_sidecar(text: &str) -> Result<(ReplaySpec, Vec<SidecarDevKey>), ReplayError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ReplayError::Sidecar(format!("not JSON: {e}")))?;
    let format = v
        .get("format")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("none")
        .to_string();
    let spec = match v.get("replay") {
        None | Some(serde_json::Value::Null) => {
            return Err(ReplayError::NotReplayable { format });
        }
        Some(r) => {
            ReplaySpec::deserialize(r).map_err(|e| ReplayError::Sidecar(format!("replay: {e}")))?
        }
    };
    let mut keys = Vec::new();
    if let Some(list) = v.get("device_keys").and_then(serde_json::Value::as_array) {
        for d in list {
            let field = |k: &str| d.get(k).and_then(serde_json::Value::as_str);
            let bad = || ReplayError::Sidecar("device_keys: an entry is malformed".into());
            let uuid = field("uuid").ok_or_else(bad)?.to_string();
            let address = field("address")
                .and_then(|a| crate::decode::keys::parse_number("address", a).ok())
                .and_then(|a| u16::try_from(a).ok())
                .ok_or_else(bad)?;
            let key = field("key")
                .and_then(|k| crate::decode::keys::parse_key_hex("key", k).ok())
                .ok_or_else(bad)?;
            keys.push((uuid, address, DevKey::from_bytes(key)));
        }
    }
    Ok((spec, keys))
}

/// Reads a capture's mesh packets (all of them, in file order); an error if the file is no
/// capture or is cut short.
pub fn read_packets<R: std::io::Read>(
    reader: &mut CaptureReader<R>,
) -> Result<Vec<MeshPacket>, ReadError> {
    let mut extractor = Extractor::new();
    for (h, c) in [
        (0x0012, crate::decode::Characteristic::ProvisioningDataIn),
        (0x0014, crate::decode::Characteristic::ProvisioningDataOut),
    ] {
        extractor.set_handle(h, c);
    }
    let mut out = Vec::new();
    while let Some(p) = reader.next_packet()? {
        extractor.push(&p, &mut out);
    }
    Ok(out)
}

/// Loads `capture` and its sidecar (`keys`, or `FILE.keys.json` beside it).
pub fn load(capture: &Path, keys: Option<&Path>) -> Result<ReplayInput, ReplayError> {
    let keys_path = keys.map_or_else(|| default_sidecar(capture), Path::to_path_buf);
    let text = std::fs::read_to_string(&keys_path).map_err(|e| ReplayError::SidecarFile {
        path: keys_path.display().to_string(),
        message: format!(
            "{e}; the replay needs the capture's key sidecar (recorded with --capture-secrets; name it with --keys)"
        ),
    })?;
    let (spec, device_keys) = parse_sidecar(&text)?;
    let cap = |source| ReplayError::Capture {
        path: capture.display().to_string(),
        source,
    };
    let mut reader = CaptureReader::open(capture).map_err(cap)?;
    let packets = read_packets(&mut reader).map_err(cap)?;
    Ok(ReplayInput {
        spec,
        device_keys,
        packets,
    })
}

/// [`load`] and [`replay`].
pub fn replay_file(capture: &Path, keys: Option<&Path>) -> Result<ReplayOutcome, ReplayError> {
    replay(&load(capture, keys)?)
}

// ----- the driver -----

/// One packet the capture shows the provisioner sent.
#[derive(Debug)]
enum Sent {
    /// A PB-ADV payload, with the start of each of its advertising events.
    Adv {
        frame: u64,
        payload: Vec<u8>,
        events: Vec<Instant>,
    },
    /// A value written to Data In.
    Gatt {
        frame: u64,
        at: Instant,
        conn: ConnId,
        value: Vec<u8>,
    },
}

impl Sent {
    fn frame(&self) -> u64 {
        match self {
            Sent::Adv { frame, .. } | Sent::Gatt { frame, .. } => *frame,
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Sent::Adv { payload, .. } => payload,
            Sent::Gatt { value, .. } => value,
        }
    }
}

/// One packet the provisioner received.
#[derive(Debug)]
enum Heard {
    Adv(Vec<u8>),
    Gatt(ConnId, Vec<u8>),
    Disconnected(ConnId),
}

fn parse_addr(s: &str) -> Result<[u8; 6], ReplayError> {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| ReplayError::Sidecar(format!("provisioner_address '{s}' is malformed")))?;
    <[u8; 6]>::try_from(v)
        .map_err(|_| ReplayError::Sidecar(format!("provisioner_address '{s}' is malformed")))
}

/// The capture split into what was sent (grouped into advertisements) and what was heard.
struct Timeline {
    sent: VecDeque<Sent>,
    heard: VecDeque<(Instant, Heard)>,
    /// GATT connections in the order they first appear.
    conns: Vec<ConnId>,
    end: Instant,
}

fn timeline(input: &ReplayInput) -> Result<Timeline, ReplayError> {
    let spec = &input.spec;
    let me = parse_addr(&spec.provisioner_address)?;
    let zero = i128::from(spec.time_zero_unix_ns);
    let at = |t: i128| -> Instant {
        let d = u64::try_from((t - zero).max(0)).unwrap_or(u64::MAX);
        Instant::from_epoch(Duration::from_nanos(d))
    };
    let copies = match spec.driver.as_str() {
        "sim" => usize::from(spec.radio.transmit_count.unwrap_or(1).max(1)) * 3,
        _ => 1,
    };
    let mut sent: VecDeque<Sent> = VecDeque::new();
    let mut heard: Vec<(Instant, Heard)> = Vec::new();
    let mut conns: Vec<ConnId> = Vec::new();
    let mut end = Instant::ZERO;
    // Copies of the advertisement being grouped: how many so far.
    let mut open_group = 0usize;
    for p in &input.packets {
        let t = at(p.time_ns);
        end = end.max(t);
        match &p.kind {
            MeshPacketKind::Adv {
                adv_addr,
                ad_type,
                data,
                ..
            } => {
                if *adv_addr == Some(me) {
                    if *ad_type != AD_PB_ADV {
                        continue;
                    }
                    if let Some(Sent::Adv {
                        payload, events, ..
                    }) = sent.back_mut()
                        && open_group > 0
                        && open_group < copies
                        && payload == data
                    {
                        if open_group.is_multiple_of(3) {
                            events.push(t);
                        }
                        open_group += 1;
                        continue;
                    }
                    sent.push_back(Sent::Adv {
                        frame: p.frame,
                        payload: data.clone(),
                        events: vec![t],
                    });
                    open_group = 1;
                } else if *ad_type == AD_PB_ADV {
                    heard.push((t, Heard::Adv(data.clone())));
                }
            }
            MeshPacketKind::Gatt {
                conn,
                characteristic,
                value,
            } => {
                if !characteristic.is_provisioning() {
                    continue;
                }
                if !conns.contains(conn) {
                    conns.push(*conn);
                }
                if characteristic.is_data_in() {
                    open_group = 0;
                    sent.push_back(Sent::Gatt {
                        frame: p.frame,
                        at: t,
                        conn: *conn,
                        value: value.clone(),
                    });
                } else {
                    heard.push((t, Heard::Gatt(*conn, value.clone())));
                }
            }
            MeshPacketKind::Connected { conn, .. } => {
                if !conns.contains(conn) {
                    conns.push(*conn);
                }
            }
            MeshPacketKind::Disconnected { conn, .. } => {
                heard.push((t, Heard::Disconnected(*conn)));
            }
            MeshPacketKind::Problem { .. } => {}
        }
    }
    // Stable: packets heard at one instant keep their capture order.
    heard.sort_by_key(|(t, _)| *t);
    Ok(Timeline {
        sent,
        heard: heard.into(),
        conns,
        end,
    })
}

/// Addresses as the store gave them; commits and confirmations kept.
struct ReplaySink {
    addresses: BTreeMap<DeviceUuid, u16>,
    records: Vec<NodeRecord>,
}

impl NodeSink for ReplaySink {
    fn allocate(&mut self, uuid: &DeviceUuid, _elements: u8) -> Result<u16, String> {
        self.addresses
            .get(uuid)
            .copied()
            .ok_or_else(|| format!("the recording gave device {uuid} no address"))
    }
    fn commit(&mut self, record: &NodeRecord) -> Result<(), String> {
        self.records.push(record.clone());
        Ok(())
    }
    fn confirm(&mut self, _uuid: &DeviceUuid) -> Result<(), String> {
        Ok(())
    }
    fn release(&mut self, _uuid: &DeviceUuid) {}
    fn void(&mut self, uuid: &DeviceUuid, _why: &str) -> Result<(), String> {
        self.records.retain(|r| r.uuid != *uuid);
        Ok(())
    }
}

fn secs(t: Instant) -> f64 {
    t.since_epoch().as_secs_f64()
}

/// Per session, what the replay still has to do for it.
struct Plan {
    uuid: DeviceUuid,
    name: String,
    gatt: bool,
    opened: Option<Instant>,
    gatt_ready: Option<Instant>,
    mtu: u16,
    rng_seed: u64,
    config: ProvisionerConfig,
    oob: Option<(Instant, OobValue)>,
}

/// Replays `input`: see the module documentation. A capture that does not match the
/// recording is a [`ReplayOutcome::Diverged`], never a panic.
pub fn replay(input: &ReplayInput) -> Result<ReplayOutcome, ReplayError> {
    let spec = &input.spec;
    let sim = match spec.driver.as_str() {
        "sim" => true,
        "live" => false,
        other => return Err(ReplayError::Sidecar(format!("unknown driver '{other}'"))),
    };
    let mut tl = timeline(input)?;
    let net_key = crate::decode::keys::parse_key_hex("replay.net_key", &spec.net_key)
        .map_err(|e| ReplayError::Sidecar(e.to_string()))?;
    let params = ProvisioningParams {
        net_key: NetKey::from_bytes(net_key),
        net_key_index: spec.net_key_index,
        flags: spec.flags,
        iv_index: spec.iv_index,
    };
    let mut verdicts: BTreeMap<DeviceUuid, Result<[u8; 64], String>> = BTreeMap::new();
    let mut addresses = BTreeMap::new();
    let mut plans: Vec<Plan> = Vec::with_capacity(spec.sessions.len());
    let first_sent = tl.sent.front().and_then(|s| match s {
        Sent::Adv { events, .. } => events.first().copied(),
        Sent::Gatt { at, .. } => Some(*at),
    });
    for s in &spec.sessions {
        let uuid: DeviceUuid = s
            .uuid
            .parse()
            .map_err(|_| ReplayError::Sidecar(format!("session uuid '{}' is malformed", s.uuid)))?;
        if let Some(a) = s.address {
            addresses.insert(uuid, a);
        }
        if let Some(c) = &s.certificate {
            let v = match (&c.public_key, &c.rejected) {
                (Some(k), _) => hex::decode(k)
                    .ok()
                    .and_then(|b| <[u8; 64]>::try_from(b).ok())
                    .ok_or_else(|| {
                        ReplayError::Sidecar("certificate.public_key is malformed".into())
                    })
                    .map(Ok)?,
                (None, Some(r)) => Err(r.clone()),
                (None, None) => Err("no verdict recorded".to_string()),
            };
            verdicts.insert(uuid, v);
        }
        let gatt = match s.bearer.as_str() {
            "pb-adv" => false,
            "pb-gatt" => true,
            other => return Err(ReplayError::Sidecar(format!("unknown bearer '{other}'"))),
        };
        let from_ns = |n: u64| Instant::from_epoch(Duration::from_nanos(n));
        // A real radio's session opens when its first packet went (see ReplaySession), and
        // its GATT connection is ready then.
        let opened = s.opened_ns.map(from_ns).or(first_sent);
        plans.push(Plan {
            uuid,
            name: s.name.clone(),
            gatt,
            opened,
            gatt_ready: if gatt {
                s.gatt_ready_ns.map(from_ns).or(opened)
            } else {
                None
            },
            mtu: s.mtu.unwrap_or(23),
            rng_seed: s.rng_seed,
            config: s.config.to_config()?,
            oob: match &s.output_oob {
                Some(a) => Some((from_ns(a.at_ns), a.value()?)),
                None => None,
            },
        });
    }
    let verifier: CertVerifier = Arc::new(move |uuid, _device, _intermediates| {
        verdicts
            .get(uuid)
            .cloned()
            .unwrap_or_else(|| Err("no verdict recorded for this device".into()))
    });
    let mut host = Host::new(
        params,
        PbAdvConfig::from(&spec.pb_adv),
        Box::new(ChaCha20Rng::seed_from_u64(spec.link_rng_seed)),
        Some(verifier),
    );
    let mut sink = ReplaySink {
        addresses,
        records: Vec::new(),
    };

    let adv_interval = Duration::from_micros(spec.radio.adv_interval_us);
    let channel_switch = Duration::from_micros(spec.radio.channel_switch_us.unwrap_or(0));
    let mut ids: Vec<Option<SessionId>> = vec![None; plans.len()];
    let mut plan_of: Vec<usize> = Vec::new();
    let mut conn_of: BTreeMap<ConnId, SessionId> = BTreeMap::new();
    let mut conn_for: Vec<Option<ConnId>> = Vec::new();
    let mut next_conn = 0usize;
    let mut staged: Option<Vec<u8>> = None;
    let mut ready_at = Instant::ZERO;
    let mut packets_in = 0u64;
    let mut packets_out = 0u64;
    let mut now = Instant::ZERO;
    // Nothing may happen long after the capture ends: a bound against a bearer that keeps
    // retransmitting to a device that no longer answers.
    let limit = tl.end + Duration::from_secs(600);
    let mut steps_here = 0u32;
    let mut last_now = None;

    let diverged = |packet: u64,
                    frame: Option<u64>,
                    now: Instant,
                    what: String,
                    e: Option<&[u8]>,
                    g: Option<&[u8]>| {
        Ok(ReplayOutcome::Diverged(Divergence {
            packet,
            frame,
            time: secs(now),
            what,
            expected: e.map(hex::encode),
            got: g.map(hex::encode),
        }))
    };

    loop {
        if last_now == Some(now) {
            steps_here += 1;
            if steps_here > 10_000 {
                return Err(ReplayError::Stuck(now.since_epoch()));
            }
        } else {
            steps_here = 0;
            last_now = Some(now);
        }
        // The simulator handles timers at every instant; the real-time driver when its sleep
        // for the earliest one ends, which tokio rounds up to its millisecond tick: a packet
        // that arrives less than that after a timer is due is handled first.
        if sim
            || host
                .poll_timeout()
                .is_some_and(|t| t + LIVE_TIMER_LATENCY <= now)
        {
            host.handle_timeout(now);
        }
        // Sessions to open, in order.
        for (k, p) in plans.iter().enumerate() {
            if ids[k].is_none()
                && let Some(t) = p.opened
                && t <= now
            {
                let rng = Box::new(ChaCha20Rng::seed_from_u64(p.rng_seed));
                let id = if p.gatt {
                    host.open_gatt(now, p.uuid, p.name.clone(), p.config.clone(), rng, p.mtu)
                } else {
                    host.open_adv(now, p.uuid, p.name.clone(), p.config.clone(), rng)
                };
                ids[k] = Some(id);
                if plan_of.len() <= id.0 {
                    plan_of.resize(id.0 + 1, usize::MAX);
                    conn_for.resize(id.0 + 1, None);
                }
                plan_of[id.0] = k;
            }
        }
        loop {
            let mut progress = false;
            while tl.heard.front().is_some_and(|(t, _)| *t <= now) {
                let Some((_, h)) = tl.heard.pop_front() else {
                    break;
                };
                progress = true;
                match h {
                    Heard::Adv(data) => {
                        packets_in += 1;
                        host.handle_adv(now, &data);
                    }
                    Heard::Gatt(conn, data) => {
                        if let Some(id) = conn_of.get(&conn) {
                            packets_in += 1;
                            host.handle_gatt(now, *id, &data);
                        }
                    }
                    Heard::Disconnected(conn) => {
                        if let Some(id) = conn_of.get(&conn) {
                            host.handle_gatt_disconnected(now, *id);
                        }
                    }
                }
            }
            for (k, p) in plans.iter_mut().enumerate() {
                if let Some(id) = ids[k]
                    && p.gatt
                    && p.gatt_ready.is_some_and(|t| t <= now)
                {
                    p.gatt_ready = None;
                    host.gatt_ready(now, id);
                }
            }
            progress |= host.drive(now, &mut sink);
            while let Some((id, seg)) = host.poll_gatt_transmit() {
                progress = true;
                packets_out += 1;
                let conn = match conn_for.get(id.0).copied().flatten() {
                    Some(c) => Some(c),
                    None => {
                        let c = tl.conns.get(next_conn).copied();
                        if let Some(c) = c {
                            next_conn += 1;
                            conn_of.insert(c, id);
                            if let Some(slot) = conn_for.get_mut(id.0) {
                                *slot = Some(c);
                            }
                        }
                        c
                    }
                };
                match tl.sent.pop_front() {
                    Some(Sent::Gatt {
                        frame,
                        conn: c,
                        value,
                        ..
                    }) => {
                        if Some(c) != conn || value != seg {
                            return diverged(
                                packets_out,
                                Some(frame),
                                now,
                                format!(
                                    "GATT write on {} differs from the capture's on {c}",
                                    conn.map_or("no connection".to_string(), |c| c.to_string())
                                ),
                                Some(&value),
                                Some(&seg),
                            );
                        }
                    }
                    Some(other) => {
                        return diverged(
                            packets_out,
                            Some(other.frame()),
                            now,
                            "the replay wrote a GATT value where the capture sent an advertisement"
                                .into(),
                            Some(other.bytes()),
                            Some(&seg),
                        );
                    }
                    None => {
                        return diverged(
                            packets_out,
                            None,
                            now,
                            "the replay wrote a GATT value the capture does not have".into(),
                            None,
                            Some(&seg),
                        );
                    }
                }
            }
            while host.poll_event().is_some() {
                progress = true;
            }
            for (k, p) in plans.iter_mut().enumerate() {
                if let Some(id) = ids[k]
                    && p.oob.as_ref().is_some_and(|(t, _)| *t <= now)
                    && let Some((_, v)) = p.oob.take()
                {
                    progress = true;
                    // A wrong moment shows as a divergence in what follows.
                    let _ = host.provide_output_oob(now, id, v);
                }
            }
            if staged.is_none() {
                staged = host.poll_adv_transmit(now);
            }
            if ready_at <= now
                && let Some(payload) = staged.take()
            {
                progress = true;
                packets_out += 1;
                match tl.sent.pop_front() {
                    Some(Sent::Adv {
                        frame,
                        payload: expected,
                        events,
                    }) => {
                        if expected != payload {
                            return diverged(
                                packets_out,
                                Some(frame),
                                now,
                                "PB-ADV payload differs".into(),
                                Some(&expected),
                                Some(&payload),
                            );
                        }
                        ready_at = if sim {
                            // The simulated radio is free when its last event allows.
                            let last = events.last().copied().unwrap_or(now);
                            let air = crate::radio::sim::airtime(payload.len());
                            let step = air + channel_switch;
                            (last + adv_interval).max(last + step + step + air)
                        } else {
                            // A real radio: the next advertisement went when the capture says.
                            tl.sent
                                .iter()
                                .find_map(|s| match s {
                                    Sent::Adv { events, .. } => events.first().copied(),
                                    Sent::Gatt { .. } => None,
                                })
                                .unwrap_or(now + adv_interval)
                        };
                    }
                    Some(other) => {
                        return diverged(
                            packets_out,
                            Some(other.frame()),
                            now,
                            "the replay sent an advertisement where the capture wrote a GATT value"
                                .into(),
                            Some(other.bytes()),
                            Some(&payload),
                        );
                    }
                    None => {
                        return diverged(
                            packets_out,
                            None,
                            now,
                            "the replay sent an advertisement the capture does not have".into(),
                            None,
                            Some(&payload),
                        );
                    }
                }
            }
            if !progress {
                break;
            }
        }
        let unopened = plans
            .iter()
            .enumerate()
            .any(|(k, p)| ids[k].is_none() && p.opened.is_some());
        if tl.heard.is_empty() && !unopened && host.is_idle() && staged.is_none() {
            break;
        }
        let mut next: Option<Instant> = tl.heard.front().map(|(t, _)| *t);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        consider(
            host.poll_timeout()
                .map(|t| if sim { t } else { t + LIVE_TIMER_LATENCY }),
        );
        consider(staged.as_ref().map(|_| ready_at));
        for (k, p) in plans.iter().enumerate() {
            if ids[k].is_none() {
                consider(p.opened);
            } else {
                consider(p.gatt.then_some(p.gatt_ready).flatten());
                consider(p.oob.as_ref().map(|(t, _)| *t));
            }
        }
        let Some(t) = next else { break };
        if t > limit {
            break;
        }
        now = t.max(now);
    }

    if let Some(s) = tl.sent.pop_front() {
        return diverged(
            packets_out + 1,
            Some(s.frame()),
            now,
            "the capture shows a packet sent that the replay never sent".into(),
            Some(s.bytes()),
            None,
        );
    }
    // Device keys: each session's against the sidecar's.
    let sessions = host.into_sessions();
    let mut matched = 0usize;
    for (uuid, address, key) in &input.device_keys {
        let derived = sessions
            .iter()
            .find(|s| s.uuid.to_string() == *uuid)
            .and_then(|s| s.result.as_ref());
        match derived {
            Some(Ok(o)) if o.address == *address && o.device_key == *key => matched += 1,
            Some(Ok(o)) => {
                return diverged(
                    0,
                    None,
                    now,
                    format!(
                        "device {uuid}: the replay derived another device key or address (0x{:04x}; the sidecar has 0x{address:04x})",
                        o.address
                    ),
                    None,
                    None,
                );
            }
            Some(Err(e)) => {
                return diverged(
                    0,
                    None,
                    now,
                    format!("device {uuid}: the replayed session failed: {e}"),
                    None,
                    None,
                );
            }
            None => {
                return diverged(
                    0,
                    None,
                    now,
                    format!("device {uuid}: no replayed session provisioned it"),
                    None,
                    None,
                );
            }
        }
    }
    Ok(ReplayOutcome::Identical {
        sessions: sessions.len(),
        packets_in,
        packets_out,
        device_keys: matched,
        virtual_time: secs(now),
    })
}
