//! The simulated building file: the virtual devices that live on the simulated air, and the
//! network the provisioner hands them. TOML, documented in README.md ("Simulated building
//! file").
//!
//! ```toml
//! [network]
//! net_key = "7dd7364cd842ad18c17c2b820c84c3d6"   # optional: a seeded random key otherwise
//! net_key_index = 0
//! iv_index = 0
//!
//! [air]               # the channel model: README "The simulated building", radio::sim
//! loss = 0.1          # per-packet loss on the advertising bearer, 0.0..=0.9
//! latency_ms = 10     # last bit on air to the receiver's host
//! jitter_ms = 10      # random extra delay per received copy
//! adv_interval_ms = 20      # advertising interval, 20..=10240
//! adv_delay_ms = 10         # largest advDelay before each advertising event, 0..=10
//! transmit_count = 1        # advertising events per PB-ADV PDU, 1..=8
//! scan_window_ms = 30       # receivers rotate 37 -> 38 -> 39 this often; 0: all at once
//! floor_loss = 0.3          # extra loss per floor between sender and receiver, 0.0..=0.9
//! max_floors = 1            # a transmission reaches (and disturbs) this many floors away
//! beacon_interval_ms = 5000 # devices' Unprovisioned Device beacon interval (0: none)
//! blackouts = [{ start_s = 300, duration_s = 60 }]  # the air delivers nothing then
//!
//! [provisioner]       # where the installer's laptop is
//! floor = 0
//! room = "lobby"
//!
//! [[device]]
//! uuid = "7b2c1a90-0000-4000-8000-000000000001"
//! name = "Lobby light 1"
//! floor = 0           # position: floor (any integer, default 0) and room (a label)
//! room = "lobby"
//! ecdh_ms = 50        # the device CPU's time for a P-256 ECDH (default 50)
//! beacon_interval_ms = 5000   # overrides [air] beacon_interval_ms
//! power_on_s = 240    # switched on this long into the run (default 0): silent and deaf before
//! elements = 2
//! algorithms = ["cmac", "hmac"]
//! static_oob = "00112233445566778899aabbccddeeff"       # 16 or 32 bytes
//! output_oob = { size = 4, actions = ["numeric", "blink"] }
//! input_oob = { size = 4, actions = ["push", "numeric"] }
//! public_key_oob = true
//! private_key = "529aa0670d72cd6497502ed473502b037e8803b5c60829a5a3caa219505530ba"
//! cid = 0x0059        # Composition Data page 0 (optional): Company, Product, Version IDs,
//! pid = 0x0001        # replay protection list size and features; defaults 0x05F1, 1, 1,
//! vid = 0x0001        # 32, ["relay", "proxy"]
//! crpl = 32
//! features = ["relay", "proxy", "friend", "low_power"]
//!
//! [[device.element]]  # one table per element (optional; their number is the element count)
//! location = 0x0100
//! models = ["0000", "0002", "1000", "0x0059:0001"]   # SIG IDs in hex, vendor CID:model
//! [[device.element]]
//! models = ["1000"]
//! ```
//!
//! Faults a device injects on purpose ([`crate::sim::fault`], README "Simulated building
//! file"), one table per device:
//!
//! ```toml
//! [device.fault]
//! vanish_at = "confirmation"   # or vanish_after_pdus = 12; return_after_s = 90 to come back
//! late_ms = 3000               # every provisioning answer this late
//! ```
//!
//! Without `[[device.element]]` tables, element 0 has the Configuration Server (0x0000), the
//! Health Server (0x0002) and a Generic OnOff Server (0x1000), every other element a Generic
//! OnOff Server ([`default_models`]). The primary element always gets a Configuration Server,
//! listed or not.
//!
//! What a device advertises while unprovisioned (`meshprov scan`; MshPRT v1.1 §3.10.2):
//!
//! ```toml
//! oob_info = ["number", "inside-manual"]   # OOB Information bits, see [`OOB_INFO_NAMES`]
//! uri = "https://www.example.com/mesh/products/light-switch-v3"  # sets bit 1, URI Hash
//! ```
//!
//! Certificate-based provisioning (MshPRT v1.1 §5.4.2; reference §7): a device with
//!
//! ```toml
//! certificate = "certs/device.pem"                 # PEM or DER, relative to this file
//! intermediates = ["certs/int1.pem"]               # at most 15, nearest the device first
//! private_key = "…"                                # the certificate's private key
//! ```
//!
//! serves record 0x0001 (the certificate, DER) and 0x0002.. (the intermediates, DER) before
//! Invite, offers its public key out of band (Public Key OOB in its Capabilities), and its
//! OOB Information has bits 7 and 8 set (certificate-based provisioning, provisioning
//! records) in its Unprovisioned Device beacon. The files
//! are read by [`Building::load`] (and [`Building::parse_with_base`]); their content is not
//! checked here: a chain is judged by the provisioner's verifier, as a real device's would be.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::net::config::{CompositionPage0, Element, Features, ModelId};
use crate::radio::sim::AirConfig;
use crate::sim::fault::{DeviceFaults, RawFault};
use crate::uuid::DeviceUuid;
use crate::wire::OobInformation;

/// A building file could not be used. Each message names the file, the device and the field.
#[derive(Debug, thiserror::Error)]
pub enum BuildingError {
    /// The file could not be read.
    #[error("cannot read building file {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys (the message has line and column).
    #[error("building file {path}: {message}")]
    Syntax {
        /// The path.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("building file {path}: {at}: {message}")]
    Invalid {
        /// The path.
        path: String,
        /// Where: `network`, `air`, or `device[3] (uuid …)`.
        at: String,
        /// What is wrong and what to write instead.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuilding {
    #[serde(default)]
    network: RawNetwork,
    #[serde(default)]
    air: RawAir,
    #[serde(default)]
    provisioner: RawProvisioner,
    #[serde(default, rename = "device")]
    devices: Vec<RawDevice>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    net_key: Option<String>,
    net_key_index: Option<u16>,
    iv_index: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAir {
    loss: Option<f64>,
    latency_ms: Option<u64>,
    jitter_ms: Option<u64>,
    adv_interval_ms: Option<u64>,
    adv_delay_ms: Option<u64>,
    transmit_count: Option<u8>,
    scan_window_ms: Option<u64>,
    floor_loss: Option<f64>,
    max_floors: Option<u32>,
    beacon_interval_ms: Option<u64>,
    blackouts: Option<Vec<RawBlackout>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlackout {
    start_s: u64,
    duration_s: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvisioner {
    floor: Option<i32>,
    room: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOob {
    size: u8,
    actions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    uuid: String,
    name: Option<String>,
    floor: Option<i32>,
    room: Option<String>,
    ecdh_ms: Option<u64>,
    beacon_interval_ms: Option<u64>,
    power_on_s: Option<u64>,
    elements: Option<u8>,
    algorithms: Option<Vec<String>>,
    static_oob: Option<String>,
    oob_only: Option<bool>,
    output_oob: Option<RawOob>,
    input_oob: Option<RawOob>,
    public_key_oob: Option<bool>,
    private_key: Option<String>,
    pb_adv: Option<bool>,
    pb_gatt: Option<bool>,
    mtu: Option<u16>,
    certificate: Option<String>,
    intermediates: Option<Vec<String>>,
    cid: Option<u16>,
    pid: Option<u16>,
    vid: Option<u16>,
    crpl: Option<u16>,
    features: Option<Vec<String>>,
    oob_info: Option<Vec<String>>,
    uri: Option<String>,
    #[serde(rename = "element")]
    element_list: Option<Vec<RawElement>>,
    fault: Option<RawFault>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawElement {
    location: Option<u16>,
    models: Option<Vec<String>>,
}

/// The network the provisioner gives the devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkSpec {
    /// NetKey bytes, if the file fixes one.
    pub net_key: Option<[u8; 16]>,
    /// Its key index (0..=4095).
    pub net_key_index: u16,
    /// The IV Index.
    pub iv_index: u32,
}

/// Output OOB actions a virtual device offers (MshPRT v1.1 §5.4.1.2, Table 5.22).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputAction {
    /// Blink a number of times.
    Blink,
    /// Beep a number of times.
    Beep,
    /// Vibrate a number of times.
    Vibrate,
    /// Show a number.
    Numeric,
    /// Show letters and digits.
    Alphanumeric,
}

/// Input OOB actions a virtual device offers (§5.4.1.2, Table 5.24).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputAction {
    /// Press a button a number of times.
    Push,
    /// Turn a knob a number of times.
    Twist,
    /// Type a number.
    Numeric,
    /// Type letters and digits.
    Alphanumeric,
}

/// One virtual device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Device UUID.
    pub uuid: DeviceUuid,
    /// A name for people.
    pub name: String,
    /// The floor it is on: radio range and collisions depend on floors (README, "The
    /// simulated building").
    pub floor: i32,
    /// The room it is in (a label for people).
    pub room: Option<String>,
    /// Its CPU's time for one P-256 ECDH: it answers nothing for this long after the
    /// provisioner's Public Key arrives.
    pub ecdh: Duration,
    /// How often it sends its Unprovisioned Device beacon while unprovisioned and without a
    /// link (MshPRT v1.1 §3.10.2; the device chooses). Zero: never.
    pub beacon_interval: Duration,
    /// When it is switched on, from the start of the simulation (a circuit the electrician
    /// powers late): before that it neither hears nor sends anything. Zero: from the start.
    pub power_on: Duration,
    /// Number of elements (1..=255).
    pub elements: u8,
    /// Offers BTM_ECDH_P256_CMAC_AES128_AES_CCM.
    pub cmac: bool,
    /// Offers BTM_ECDH_P256_HMAC_SHA256_AES_CCM.
    pub hmac: bool,
    /// Static OOB value (16 or 32 octets).
    pub static_oob: Option<Vec<u8>>,
    /// Mesh 1.1 "only OOB authenticated provisioning supported".
    pub oob_only: bool,
    /// Output OOB size and actions.
    pub output_oob: Option<(u8, Vec<OutputAction>)>,
    /// Input OOB size and actions.
    pub input_oob: Option<(u8, Vec<InputAction>)>,
    /// Offers its public key out of band.
    pub public_key_oob: bool,
    /// A fixed P-256 private key (32 octets); otherwise a seeded random key pair.
    pub private_key: Option<[u8; 32]>,
    /// Reachable over PB-ADV.
    pub pb_adv: bool,
    /// Reachable over PB-GATT.
    pub pb_gatt: bool,
    /// ATT MTU the device accepts on PB-GATT and on its Mesh Proxy service.
    pub mtu: u16,
    /// The device certificate (DER), served as record 0x0001 (certificate-based
    /// provisioning).
    pub certificate: Option<Vec<u8>>,
    /// Intermediate certificates (DER), served as records 0x0002.. in this order.
    pub intermediates: Vec<Vec<u8>>,
    /// Composition Data page 0 the device's Configuration Server reports: CID, PID, VID,
    /// CRPL, features and one entry per element with its models.
    pub composition: CompositionPage0,
    /// OOB Information of its Unprovisioned Device beacon and PB-GATT service data
    /// (MshPRT v1.1 §3.10.2): the file's `oob_info`, bit 1 with a `uri`, bits 7 and 8 with a
    /// certificate.
    pub oob_info: OobInformation,
    /// The URI it advertises (its beacon carries the URI Hash).
    pub uri: Option<String>,
    /// How it misbehaves (`[device.fault]`; [`crate::sim::fault`]): nothing by default.
    pub faults: DeviceFaults,
}

/// A device's ECDH time unless the file gives one.
pub const DEFAULT_ECDH: Duration = Duration::from_millis(50);

/// The Unprovisioned Device beacon interval unless the file gives one: 5 s, the interval of
/// Zephyr, ESP-IDF and NimBLE (`UNPROVISIONED_INTERVAL`).
pub const DEFAULT_BEACON_INTERVAL: Duration = Duration::from_secs(5);

/// Where the provisioner (the installer's laptop) is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProvisionerSpec {
    /// Its floor.
    pub floor: i32,
    /// Its room (a label).
    pub room: Option<String>,
}

/// The `oob_info` names of the building file and their OOB Information bits (MshPRT v1.1
/// §3.10.2, table "OOB Information field").
pub const OOB_INFO_NAMES: [(&str, OobInformation); 14] = [
    ("other", OobInformation::OTHER),
    ("uri", OobInformation::ELECTRONIC_URI),
    ("2d-code", OobInformation::MACHINE_READABLE_CODE_2D),
    ("bar-code", OobInformation::BAR_CODE),
    ("nfc", OobInformation::NFC),
    ("number", OobInformation::NUMBER),
    ("string", OobInformation::STRING),
    (
        "certificate-based",
        OobInformation::CERTIFICATE_BASED_PROVISIONING,
    ),
    ("records", OobInformation::PROVISIONING_RECORDS),
    ("on-box", OobInformation::ON_BOX),
    ("inside-box", OobInformation::INSIDE_BOX),
    ("on-paper", OobInformation::ON_PIECE_OF_PAPER),
    ("inside-manual", OobInformation::INSIDE_MANUAL),
    ("on-device", OobInformation::ON_DEVICE),
];

/// Company ID of a simulated device unless the file gives one (0x05F1, The Linux
/// Foundation).
pub const DEFAULT_CID: u16 = 0x05f1;

/// The models of element `i` when the building file lists none: the primary element has the
/// Configuration Server (0x0000), the Health Server (0x0002) and a Generic OnOff Server
/// (0x1000); the others a Generic OnOff Server.
pub fn default_models(i: usize) -> Vec<u16> {
    if i == 0 {
        vec![0x0000, 0x0002, 0x1000]
    } else {
        vec![0x1000]
    }
}

/// Parses a model ID of the building file: `"1000"` or `"0x1000"` (SIG, hex), or
/// `"0059:0001"` / `"0x0059:0x0001"` (vendor: Company ID, model, hex).
pub fn parse_model_id(s: &str) -> Result<ModelId, String> {
    let hex16 = |t: &str| {
        let t = t.trim();
        let t = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        if t.is_empty() || t.len() > 4 {
            return Err(format!("model ID '{s}': expected 1 to 4 hex digits"));
        }
        u16::from_str_radix(t, 16).map_err(|_| format!("model ID '{s}' is not hex"))
    };
    match s.split_once(':') {
        None => Ok(ModelId::Sig(hex16(s)?)),
        Some((c, m)) => Ok(ModelId::Vendor {
            company_id: hex16(c)?,
            model_id: hex16(m)?,
        }),
    }
}

/// A parsed building file.
#[derive(Clone, Debug)]
pub struct Building {
    /// The network.
    pub network: NetworkSpec,
    /// The air.
    pub air: AirConfig,
    /// Where the provisioner is.
    pub provisioner: ProvisionerSpec,
    /// The virtual devices.
    pub devices: Vec<DeviceSpec>,
}

fn hex_bytes(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim().trim_start_matches("0x");
    hex::decode(s).map_err(|e| format!("not hex ({e})"))
}

impl Building {
    /// Reads and validates a building file; certificate files are read relative to its
    /// directory.
    pub fn load(path: &Path) -> Result<Self, BuildingError> {
        let text = std::fs::read_to_string(path).map_err(|source| BuildingError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse_with_base(&text, &path.display().to_string(), base)
    }

    /// Parses building TOML; `path` only names the file in errors. Certificate files are read
    /// relative to the current directory.
    pub fn parse(text: &str, path: &str) -> Result<Self, BuildingError> {
        Self::parse_with_base(text, path, Path::new("."))
    }

    /// Parses building TOML; `path` only names the file in errors, and relative certificate
    /// paths are read from `base_dir`.
    pub fn parse_with_base(text: &str, path: &str, base_dir: &Path) -> Result<Self, BuildingError> {
        let raw: RawBuilding = toml::from_str(text).map_err(|e| BuildingError::Syntax {
            path: path.to_string(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let invalid = |at: String, message: String| BuildingError::Invalid {
            path: path.to_string(),
            at,
            message,
        };
        let net_key = match &raw.network.net_key {
            None => None,
            Some(s) => {
                let b = hex_bytes(s).map_err(|m| invalid("network.net_key".into(), m))?;
                Some(b.try_into().map_err(|b: Vec<u8>| {
                    invalid(
                        "network.net_key".into(),
                        format!("{} bytes instead of 16", b.len()),
                    )
                })?)
            }
        };
        let net_key_index = raw.network.net_key_index.unwrap_or(0);
        if net_key_index > 0x0fff {
            return Err(invalid(
                "network.net_key_index".into(),
                "must be 0..=4095".into(),
            ));
        }
        let mut air = AirConfig::default();
        if let Some(loss) = raw.air.loss {
            if !(0.0..=0.9).contains(&loss) {
                return Err(invalid(
                    "air.loss".into(),
                    format!("{loss} is not in 0.0..=0.9"),
                ));
            }
            air.loss = loss;
        }
        if let Some(ms) = raw.air.latency_ms {
            air.latency = std::time::Duration::from_millis(ms);
        }
        if let Some(ms) = raw.air.jitter_ms {
            air.jitter = std::time::Duration::from_millis(ms);
        }
        let air_ms = |v: Option<u64>, name: &str, range: std::ops::RangeInclusive<u64>| match v {
            Some(ms) if !range.contains(&ms) => Err(invalid(
                format!("air.{name}"),
                format!(
                    "{ms} is not in {}..={} (milliseconds)",
                    range.start(),
                    range.end()
                ),
            )),
            v => Ok(v.map(Duration::from_millis)),
        };
        if let Some(d) = air_ms(raw.air.adv_interval_ms, "adv_interval_ms", 20..=10_240)? {
            air.adv_interval = d;
        }
        if let Some(d) = air_ms(raw.air.adv_delay_ms, "adv_delay_ms", 0..=10)? {
            air.adv_delay = d;
        }
        if let Some(d) = air_ms(raw.air.scan_window_ms, "scan_window_ms", 0..=10_240)? {
            air.scan_window = d;
        }
        let beacon_interval = air_ms(
            raw.air.beacon_interval_ms,
            "beacon_interval_ms",
            0..=3_600_000,
        )?
        .unwrap_or(DEFAULT_BEACON_INTERVAL);
        if let Some(n) = raw.air.transmit_count {
            if !(1..=8).contains(&n) {
                return Err(invalid(
                    "air.transmit_count".into(),
                    format!("{n} is not in 1..=8"),
                ));
            }
            air.transmit_count = n;
        }
        if let Some(f) = raw.air.floor_loss {
            if !(0.0..=0.9).contains(&f) {
                return Err(invalid(
                    "air.floor_loss".into(),
                    format!("{f} is not in 0.0..=0.9"),
                ));
            }
            air.floor_loss = f;
        }
        if let Some(n) = raw.air.max_floors {
            if n > 200 {
                return Err(invalid(
                    "air.max_floors".into(),
                    format!("{n} is not in 0..=200"),
                ));
            }
            air.max_floors = n;
        }
        for (i, b) in raw.air.blackouts.iter().flatten().enumerate() {
            let at = format!("air.blackouts[{i}]");
            if b.start_s > 7 * 86_400 {
                return Err(invalid(
                    at,
                    format!("start_s {} is not in 0..=604800 (seconds)", b.start_s),
                ));
            }
            if !(1..=86_400).contains(&b.duration_s) {
                return Err(invalid(
                    at,
                    format!("duration_s {} is not in 1..=86400 (seconds)", b.duration_s),
                ));
            }
            air.blackouts.push(crate::radio::sim::Blackout {
                start: Duration::from_secs(b.start_s),
                duration: Duration::from_secs(b.duration_s),
            });
        }
        if air.blackouts.len() > 100 {
            return Err(invalid(
                "air.blackouts".into(),
                format!("{} windows; at most 100", air.blackouts.len()),
            ));
        }
        let provisioner = ProvisionerSpec {
            floor: raw.provisioner.floor.unwrap_or(0),
            room: raw.provisioner.room,
        };
        let mut devices = Vec::with_capacity(raw.devices.len());
        for (i, d) in raw.devices.into_iter().enumerate() {
            let at = format!("device[{i}] (uuid {})", d.uuid);
            let uuid: DeviceUuid = d
                .uuid
                .parse()
                .map_err(|e: crate::uuid::UuidError| invalid(at.clone(), e.to_string()))?;
            if devices.iter().any(|x: &DeviceSpec| x.uuid == uuid) {
                return Err(invalid(at, "this UUID appears twice".into()));
            }
            let elements = d.elements.unwrap_or(1);
            if elements == 0 {
                return Err(invalid(at, "elements must be 1..=255".into()));
            }
            let algs = d
                .algorithms
                .unwrap_or_else(|| vec!["cmac".into(), "hmac".into()]);
            let mut cmac = false;
            let mut hmac = false;
            for a in &algs {
                match a.as_str() {
                    "cmac" => cmac = true,
                    "hmac" => hmac = true,
                    other => {
                        return Err(invalid(
                            at,
                            format!("unknown algorithm '{other}' (use \"cmac\" or \"hmac\")"),
                        ));
                    }
                }
            }
            if !cmac && !hmac {
                return Err(invalid(
                    at,
                    "algorithms must name at least one of \"cmac\", \"hmac\"".into(),
                ));
            }
            let static_oob = match &d.static_oob {
                None => None,
                Some(s) => {
                    let b = hex_bytes(s).map_err(|m| invalid(format!("{at}.static_oob"), m))?;
                    if b.len() != 16 && b.len() != 32 {
                        return Err(invalid(
                            format!("{at}.static_oob"),
                            format!("{} bytes instead of 16 or 32", b.len()),
                        ));
                    }
                    Some(b)
                }
            };
            let output_oob = match d.output_oob {
                None => None,
                Some(o) => {
                    check_size(o.size).map_err(|m| invalid(format!("{at}.output_oob"), m))?;
                    let mut acts = Vec::new();
                    for a in &o.actions {
                        acts.push(match a.as_str() {
                            "blink" => OutputAction::Blink,
                            "beep" => OutputAction::Beep,
                            "vibrate" => OutputAction::Vibrate,
                            "numeric" => OutputAction::Numeric,
                            "alphanumeric" => OutputAction::Alphanumeric,
                            other => return Err(invalid(format!("{at}.output_oob"), format!("unknown action '{other}' (blink, beep, vibrate, numeric, alphanumeric)"))),
                        });
                    }
                    if acts.is_empty() {
                        return Err(invalid(
                            format!("{at}.output_oob"),
                            "needs at least one action".into(),
                        ));
                    }
                    Some((o.size, acts))
                }
            };
            let input_oob = match d.input_oob {
                None => None,
                Some(o) => {
                    check_size(o.size).map_err(|m| invalid(format!("{at}.input_oob"), m))?;
                    let mut acts = Vec::new();
                    for a in &o.actions {
                        acts.push(match a.as_str() {
                            "push" => InputAction::Push,
                            "twist" => InputAction::Twist,
                            "numeric" => InputAction::Numeric,
                            "alphanumeric" => InputAction::Alphanumeric,
                            other => return Err(invalid(format!("{at}.input_oob"), format!("unknown action '{other}' (push, twist, numeric, alphanumeric)"))),
                        });
                    }
                    if acts.is_empty() {
                        return Err(invalid(
                            format!("{at}.input_oob"),
                            "needs at least one action".into(),
                        ));
                    }
                    Some((o.size, acts))
                }
            };
            let private_key = match &d.private_key {
                None => None,
                Some(s) => {
                    let b = hex_bytes(s).map_err(|m| invalid(format!("{at}.private_key"), m))?;
                    let arr: [u8; 32] = b.try_into().map_err(|b: Vec<u8>| {
                        invalid(
                            format!("{at}.private_key"),
                            format!("{} bytes instead of 32", b.len()),
                        )
                    })?;
                    mesh_crypto::ecdh::KeyPair::from_private_bytes(&arr)
                        .map_err(|e| invalid(format!("{at}.private_key"), e.to_string()))?;
                    Some(arr)
                }
            };
            let oob_only = d.oob_only.unwrap_or(false);
            if oob_only && static_oob.is_none() && output_oob.is_none() && input_oob.is_none() {
                return Err(invalid(
                    at,
                    "oob_only needs static_oob, output_oob or input_oob".into(),
                ));
            }
            let pb_adv = d.pb_adv.unwrap_or(true);
            let pb_gatt = d.pb_gatt.unwrap_or(true);
            if !pb_adv && !pb_gatt {
                return Err(invalid(at, "a device needs pb_adv or pb_gatt".into()));
            }
            let ecdh = match d.ecdh_ms {
                None => DEFAULT_ECDH,
                Some(ms) if ms <= 30_000 => Duration::from_millis(ms),
                Some(ms) => {
                    return Err(invalid(
                        format!("{at}.ecdh_ms"),
                        format!("{ms} is not in 0..=30000 (milliseconds)"),
                    ));
                }
            };
            let power_on = match d.power_on_s {
                None => Duration::ZERO,
                Some(s) if s <= 86_400 => Duration::from_secs(s),
                Some(s) => {
                    return Err(invalid(
                        format!("{at}.power_on_s"),
                        format!("{s} is not in 0..=86400 (seconds)"),
                    ));
                }
            };
            let device_beacon_interval = match d.beacon_interval_ms {
                None => beacon_interval,
                Some(ms) if ms <= 3_600_000 => Duration::from_millis(ms),
                Some(ms) => {
                    return Err(invalid(
                        format!("{at}.beacon_interval_ms"),
                        format!("{ms} is not in 0..=3600000 (milliseconds)"),
                    ));
                }
            };
            let mtu = d.mtu.unwrap_or(69);
            if !(23..=517).contains(&mtu) {
                return Err(invalid(at, format!("mtu {mtu} is not in 23..=517")));
            }
            let certificate = match &d.certificate {
                None => None,
                Some(f) => Some(
                    read_certificate(base_dir, f)
                        .map_err(|m| invalid(format!("{at}.certificate"), m))?,
                ),
            };
            let mut intermediates = Vec::new();
            for f in d.intermediates.iter().flatten() {
                intermediates.push(
                    read_certificate(base_dir, f)
                        .map_err(|m| invalid(format!("{at}.intermediates"), m))?,
                );
            }
            if certificate.is_none() && !intermediates.is_empty() {
                return Err(invalid(
                    at,
                    "intermediates need a certificate (the device certificate)".into(),
                ));
            }
            if intermediates.len() > 15 {
                return Err(invalid(
                    format!("{at}.intermediates"),
                    format!("{} files; a device holds at most 15", intermediates.len()),
                ));
            }
            if certificate.is_some() {
                if private_key.is_none() {
                    return Err(invalid(
                        at,
                        "certificate needs private_key: the private key of the certificate's public key".into(),
                    ));
                }
                if d.public_key_oob == Some(false) {
                    return Err(invalid(
                        at,
                        "a device with a certificate offers its public key out of band: remove public_key_oob = false".into(),
                    ));
                }
            }
            let mut features = Features::RELAY | Features::PROXY;
            if let Some(list) = &d.features {
                features = 0;
                for f in list {
                    features |= match f.as_str() {
                        "relay" => Features::RELAY,
                        "proxy" => Features::PROXY,
                        "friend" => Features::FRIEND,
                        "low_power" => Features::LOW_POWER,
                        other => {
                            return Err(invalid(
                                format!("{at}.features"),
                                format!(
                                    "unknown feature '{other}' (relay, proxy, friend, low_power)"
                                ),
                            ));
                        }
                    };
                }
            }
            let raw_elements = d.element_list.unwrap_or_default();
            let elements = match (d.elements, raw_elements.len()) {
                (_, 0) => elements,
                (None, n) if n <= 255 => n as u8,
                (Some(e), n) if usize::from(e) == n => e,
                (_, n) => {
                    return Err(invalid(
                        at,
                        format!(
                            "{n} [[device.element]] tables but elements = {elements}: give one table per element"
                        ),
                    ));
                }
            };
            let mut element_specs = Vec::with_capacity(usize::from(elements));
            for i in 0..usize::from(elements) {
                let raw = raw_elements.get(i);
                let mut sig_models = Vec::new();
                let mut vendor_models = Vec::new();
                match raw.and_then(|r| r.models.as_ref()) {
                    None => sig_models = default_models(i),
                    Some(list) => {
                        for m in list {
                            match parse_model_id(m)
                                .map_err(|e| invalid(format!("{at}.element[{i}].models"), e))?
                            {
                                ModelId::Sig(id) if sig_models.contains(&id) => {}
                                ModelId::Sig(id) => sig_models.push(id),
                                v if vendor_models.contains(&v) => {}
                                v => vendor_models.push(v),
                            }
                        }
                    }
                }
                if i == 0 && !sig_models.contains(&0x0000) {
                    // Every node has a Configuration Server on its primary element.
                    sig_models.insert(0, 0x0000);
                }
                element_specs.push(Element {
                    location: raw.and_then(|r| r.location).unwrap_or(0),
                    sig_models,
                    vendor_models,
                });
            }
            let composition = CompositionPage0 {
                cid: d.cid.unwrap_or(DEFAULT_CID),
                pid: d.pid.unwrap_or(1),
                vid: d.vid.unwrap_or(1),
                crpl: d.crpl.unwrap_or(32),
                features: Features(features),
                elements: element_specs,
            };
            let mut oob_info = OobInformation::EMPTY;
            for name in d.oob_info.iter().flatten() {
                let Some((_, bit)) = OOB_INFO_NAMES.iter().find(|(n, _)| n == name) else {
                    let names: Vec<&str> = OOB_INFO_NAMES.iter().map(|(n, _)| *n).collect();
                    return Err(invalid(
                        format!("{at}.oob_info"),
                        format!("unknown name '{name}' (use {})", names.join(", ")),
                    ));
                };
                oob_info = oob_info | *bit;
            }
            if let Some(uri) = &d.uri {
                // The URI AD structure: length, type and data in 31 octets.
                let len = crate::scan::uri_ad_data(uri).len();
                if len > 29 {
                    return Err(invalid(
                        format!("{at}.uri"),
                        format!("{len} octets once encoded; an advertisement carries at most 29"),
                    ));
                }
                oob_info = oob_info | OobInformation::ELECTRONIC_URI;
            }
            if certificate.is_some() {
                oob_info = oob_info
                    | OobInformation::CERTIFICATE_BASED_PROVISIONING
                    | OobInformation::PROVISIONING_RECORDS;
            }
            let public_key_oob = d.public_key_oob.unwrap_or(certificate.is_some());
            let faults = match d.fault {
                None => DeviceFaults::default(),
                Some(f) => f.check(public_key_oob).map_err(|(field, m)| {
                    let at = if field == "fault" {
                        format!("{at}.fault")
                    } else {
                        format!("{at}.fault.{field}")
                    };
                    invalid(at, m)
                })?,
            };
            devices.push(DeviceSpec {
                oob_info,
                uri: d.uri,
                composition,
                uuid,
                name: d.name.unwrap_or_else(|| format!("device {}", uuid.short())),
                floor: d.floor.unwrap_or(0),
                room: d.room,
                ecdh,
                beacon_interval: device_beacon_interval,
                power_on,
                elements,
                cmac,
                hmac,
                static_oob,
                oob_only,
                output_oob,
                input_oob,
                public_key_oob,
                private_key,
                pb_adv,
                pb_gatt,
                mtu,
                certificate,
                intermediates,
                faults,
            });
        }
        Ok(Self {
            network: NetworkSpec {
                net_key,
                net_key_index,
                iv_index: raw.network.iv_index.unwrap_or(0),
            },
            air,
            provisioner,
            devices,
        })
    }

    /// The device with this UUID.
    pub fn device(&self, uuid: &DeviceUuid) -> Option<&DeviceSpec> {
        self.devices.iter().find(|d| d.uuid == *uuid)
    }
}

/// The largest certificate file read (a record's Total Length is 16 bits).
const MAX_CERTIFICATE_FILE: u64 = 65_535 * 2;

/// Reads one certificate file: PEM (one `CERTIFICATE` block) or DER; returns the DER.
fn read_certificate(base_dir: &Path, file: &str) -> Result<Vec<u8>, String> {
    let path = base_dir.join(file);
    let size = std::fs::metadata(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if size > MAX_CERTIFICATE_FILE {
        return Err(format!(
            "{} is {size} octets: too large for a certificate",
            path.display()
        ));
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let der = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        pem_certificate(&bytes).map_err(|m| format!("{}: {m}", path.display()))?
    } else {
        bytes
    };
    if der.is_empty() || der.len() > usize::from(u16::MAX) {
        return Err(format!(
            "{}: {} octets of certificate; a record holds 1..=65535",
            path.display(),
            der.len()
        ));
    }
    Ok(der)
}

/// The DER inside the one `-----BEGIN CERTIFICATE-----` block of a PEM file (RFC 7468). A
/// small decoder of our own: the building file needs nothing more, and `cert/` owns real
/// X.509 handling.
fn pem_certificate(text: &[u8]) -> Result<Vec<u8>, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = std::str::from_utf8(text).map_err(|_| "PEM file is not text".to_string())?;
    let count = text.matches(BEGIN).count();
    if count != 1 {
        return Err(format!(
            "expected one {BEGIN} block, found {count} (one certificate per file)"
        ));
    }
    let start = text.find(BEGIN).map_or(0, |i| i + BEGIN.len());
    let Some(len) = text[start..].find(END) else {
        return Err(format!("no {END} line"));
    };
    base64_decode(&text[start..start + len])
}

/// Standard base64 (RFC 4648 §4) with padding, whitespace ignored.
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut padding = 0usize;
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            _ => return Err(format!("invalid base64 character {:?}", char::from(c))),
        };
        if padding > 0 {
            return Err("base64 data after padding".into());
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // The low 8 bits after the shift: truncation intended.
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if padding > 2 || bits >= 6 {
        return Err("truncated base64 data".into());
    }
    Ok(out)
}

fn check_size(size: u8) -> Result<(), String> {
    if (1..=32).contains(&size) {
        Ok(())
    } else {
        Err(format!("size {size} is not in 1..=32"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[network]
net_key = "7dd7364cd842ad18c17c2b820c84c3d6"
iv_index = 5

[air]
loss = 0.3

[[device]]
uuid = "7b2c1a90-0000-4000-8000-000000000001"
elements = 2
algorithms = ["hmac"]
static_oob = "00112233445566778899aabbccddeeff"
output_oob = { size = 4, actions = ["numeric", "blink"] }

[[device]]
uuid = "7b2c1a900000400080000000000000ff"
pb_adv = false
"#;

    #[test]
    fn example_parses() {
        let b = Building::parse(EXAMPLE, "x.toml").unwrap();
        assert_eq!(b.network.iv_index, 5);
        assert_eq!(b.air.loss, 0.3);
        assert_eq!(b.devices.len(), 2);
        assert_eq!(b.devices[0].elements, 2);
        assert!(b.devices[0].hmac && !b.devices[0].cmac);
        assert!(b.devices[1].cmac && b.devices[1].hmac && !b.devices[1].pb_adv);
    }

    #[test]
    fn composition_defaults_and_lists() {
        let b = Building::parse(EXAMPLE, "x.toml").unwrap();
        let c = &b.devices[0].composition;
        assert_eq!((c.cid, c.pid, c.vid, c.crpl), (DEFAULT_CID, 1, 1, 32));
        assert_eq!(c.features, Features(Features::RELAY | Features::PROXY));
        assert_eq!(c.elements.len(), 2);
        assert_eq!(c.elements[0].sig_models, [0x0000, 0x0002, 0x1000]);
        assert_eq!(c.elements[1].sig_models, [0x1000]);
        let text = r#"
[[device]]
uuid = "7b2c1a90-0000-4000-8000-000000000001"
cid = 0x0059
features = ["friend"]
[[device.element]]
location = 0x0100
models = ["1000", "0x1001", "0059:0001", "1000"]
[[device.element]]
"#;
        let b = Building::parse(text, "x.toml").unwrap();
        let d = &b.devices[0];
        assert_eq!(d.elements, 2);
        let c = &d.composition;
        assert_eq!((c.cid, c.features), (0x0059, Features(Features::FRIEND)));
        assert_eq!(c.elements[0].location, 0x0100);
        assert_eq!(c.elements[0].sig_models, [0x0000, 0x1000, 0x1001]);
        assert_eq!(
            c.elements[0].vendor_models,
            [ModelId::Vendor {
                company_id: 0x0059,
                model_id: 1
            }]
        );
        assert_eq!(
            c.elements[1].sig_models,
            [0x1000],
            "no models listed: the default"
        );
        for (text, expected) in [
            (
                "elements = 3\n[[device.element]]\n",
                "1 [[device.element]] tables but elements = 3",
            ),
            (
                "[[device.element]]\nmodels = [\"xyz\"]\n",
                "element[0].models",
            ),
            (
                "[[device.element]]\nmodels = [\"12345\"]\n",
                "1 to 4 hex digits",
            ),
            ("features = [\"teleport\"]\n", "unknown feature 'teleport'"),
        ] {
            let t = format!("[[device]]\nuuid = \"7b2c1a90-0000-4000-8000-000000000001\"\n{text}");
            let e = Building::parse(&t, "b.toml").unwrap_err().to_string();
            assert!(e.contains(expected), "{text:?}: {e}");
        }
    }

    #[test]
    fn positions_air_and_device_timing() {
        let b = Building::parse(EXAMPLE, "x.toml").unwrap();
        assert_eq!(b.provisioner, ProvisionerSpec::default());
        let d = &b.devices[0];
        assert_eq!((d.floor, d.room.as_deref()), (0, None));
        assert_eq!(d.ecdh, DEFAULT_ECDH);
        assert_eq!(d.beacon_interval, DEFAULT_BEACON_INTERVAL);
        assert_eq!(b.air.scan_window, Duration::from_millis(30));
        let text = r#"
[air]
adv_interval_ms = 100
adv_delay_ms = 0
transmit_count = 3
scan_window_ms = 0
floor_loss = 0.5
max_floors = 2
beacon_interval_ms = 1000
[provisioner]
floor = 3
room = "3.12"
[[device]]
uuid = "7b2c1a90-0000-4000-8000-000000000001"
floor = -1
room = "garage"
ecdh_ms = 300
[[device]]
uuid = "7b2c1a90-0000-4000-8000-000000000002"
beacon_interval_ms = 0
"#;
        let b = Building::parse(text, "x.toml").unwrap();
        assert_eq!(b.air.adv_interval, Duration::from_millis(100));
        assert_eq!(b.air.adv_delay, Duration::ZERO);
        assert_eq!(b.air.transmit_count, 3);
        assert_eq!(b.air.scan_window, Duration::ZERO);
        assert_eq!((b.air.floor_loss, b.air.max_floors), (0.5, 2));
        assert_eq!(
            b.provisioner,
            ProvisionerSpec {
                floor: 3,
                room: Some("3.12".into())
            }
        );
        let (d0, d1) = (&b.devices[0], &b.devices[1]);
        assert_eq!((d0.floor, d0.room.as_deref()), (-1, Some("garage")));
        assert_eq!(d0.ecdh, Duration::from_millis(300));
        assert_eq!(d0.beacon_interval, Duration::from_secs(1), "[air] default");
        assert_eq!(d1.beacon_interval, Duration::ZERO, "no beacons");
        for (text, expected) in [
            (
                "[air]
adv_interval_ms = 10
",
                "air.adv_interval_ms",
            ),
            (
                "[air]
adv_delay_ms = 11
",
                "air.adv_delay_ms",
            ),
            (
                "[air]
transmit_count = 0
",
                "air.transmit_count",
            ),
            (
                "[air]
floor_loss = 1.0
",
                "air.floor_loss",
            ),
            (
                "[air]
max_floors = 500
",
                "air.max_floors",
            ),
            (
                "[provisioner]
floor = \"one\"
",
                "invalid type",
            ),
            (
                "[provisioner]
wing = 2
",
                "unknown field",
            ),
            (
                "[[device]]
uuid = \"7b2c1a90-0000-4000-8000-000000000001\"
ecdh_ms = 90000
",
                "ecdh_ms: 90000 is not in 0..=30000",
            ),
        ] {
            let e = Building::parse(text, "b.toml").unwrap_err().to_string();
            assert!(e.contains(expected), "{text:?}: {e}");
        }
    }

    #[test]
    fn faults_and_blackouts() {
        let text = r#"
[air]
blackouts = [{ start_s = 300, duration_s = 60 }, { start_s = 900, duration_s = 5 }]
[[device]]
uuid = "7b2c1a90-0000-4000-8000-000000000001"
[device.fault]
vanish_at = "random"
return_after_s = 120
late_ms = 250
[[device]]
uuid = "7b2c1a90-0000-4000-8000-000000000002"
fault = { reflect = ["public-key", "random"] }
[[device]]
uuid = "7b2c1a90-0000-4000-8000-000000000003"
"#;
        let b = Building::parse(text, "x.toml").unwrap();
        assert_eq!(b.air.blackouts.len(), 2);
        assert_eq!(b.air.blackouts[0].start, Duration::from_secs(300));
        assert_eq!(b.air.blackouts[1].duration, Duration::from_secs(5));
        let f = &b.devices[0].faults;
        assert_eq!(f.late, Duration::from_millis(250));
        assert_eq!(
            f.vanish.map(|v| v.back_after),
            Some(Some(Duration::from_secs(120)))
        );
        assert!(b.devices[1].faults.reflect.public_key && b.devices[1].faults.reflect.random);
        assert!(b.devices[2].faults.is_none());
        let dev = "[[device]]\nuuid = \"7b2c1a90-0000-4000-8000-000000000001\"\n";
        for (text, expected) in [
            (
                format!("{dev}[device.fault]\nvanish_at = \"later\"\n"),
                "device[0] (uuid 7b2c1a90-0000-4000-8000-000000000001).fault.vanish_at: unknown step 'later'",
            ),
            (
                format!("{dev}[device.fault]\nexplode = true\n"),
                "unknown field `explode`",
            ),
            (
                format!(
                    "{dev}public_key_oob = true\nprivate_key = \"529aa0670d72cd6497502ed473502b037e8803b5c60829a5a3caa219505530ba\"\n[device.fault]\nreflect = [\"public-key\"]\n"
                ),
                ".fault.reflect: a device that offers its public key out of band",
            ),
            (
                format!("{dev}[device.fault]\nfail_at = \"invite\"\ngarbage_at = \"data\"\n"),
                ".fault: give one of",
            ),
            (
                "[air]\nblackouts = [{ start_s = 10, duration_s = 0 }]\n".to_string(),
                "air.blackouts[0]: duration_s 0 is not in 1..=86400",
            ),
            (
                "[air]\nblackouts = [{ start_s = 10 }]\n".to_string(),
                "missing field `duration_s`",
            ),
        ] {
            let e = Building::parse(&text, "b.toml").unwrap_err().to_string();
            assert!(e.contains(expected), "{text:?}: {e}");
        }
    }

    #[test]
    fn base64_and_pem() {
        assert_eq!(base64_decode("TWFu").unwrap(), b"Man");
        assert_eq!(base64_decode("TWE=").unwrap(), b"Ma");
        assert_eq!(base64_decode("TQ==\n").unwrap(), b"M");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("TQ=x").is_err());
        assert!(base64_decode("T").is_err());
        assert!(base64_decode("TQ===").is_err());
        let pem = b"junk\n-----BEGIN CERTIFICATE-----\nMAMB\nAgM=\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_certificate(pem).unwrap(), [0x30, 0x03, 1, 2, 3]);
        assert!(pem_certificate(b"-----BEGIN CERTIFICATE-----\nMAMB").is_err());
    }

    #[test]
    fn errors_say_where() {
        let cases = [
            ("[[device]]\nuuid = \"12\"\n", "device[0] (uuid 12)"),
            (
                "[[device]]\nuuid = \"7b2c1a90-0000-4000-8000-000000000001\"\nalgorithms = [\"aes\"]\n",
                "unknown algorithm 'aes'",
            ),
            (
                "[[device]]\nuuid = \"7b2c1a90-0000-4000-8000-000000000001\"\nstatic_oob = \"0011\"\n",
                "2 bytes instead of 16 or 32",
            ),
            ("[air]\nloss = 1.5\n", "air.loss"),
            ("[network]\nnet_kee = \"00\"\n", "unknown field"),
            (
                "[[device]]\nuuid = \"7b2c1a90-0000-4000-8000-000000000001\"\n[[device]]\nuuid = \"7b2c1a90000040008000000000000001\"\n",
                "appears twice",
            ),
        ];
        for (text, expected) in cases {
            let e = Building::parse(text, "b.toml").unwrap_err().to_string();
            assert!(e.contains(expected), "{text:?}: {e}");
            assert!(e.starts_with("building file b.toml"), "{e}");
        }
    }

    #[test]
    fn oob_information_from_names_uri_and_certificate() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dev.der"), [0x30, 0x03, 0x02, 0x01, 0x01]).unwrap();
        let text = r#"
[[device]]
uuid = "7b2c1a90-0000-4000-8000-000000000001"
oob_info = ["number", "inside-manual"]
uri = "https://ex.com/a"
[[device]]
uuid = "7b2c1a90-0000-4000-8000-000000000002"
certificate = "dev.der"
private_key = "529aa0670d72cd6497502ed473502b037e8803b5c60829a5a3caa219505530ba"
[[device]]
uuid = "7b2c1a90-0000-4000-8000-000000000003"
"#;
        let b = Building::parse_with_base(text, "b.toml", dir.path()).unwrap();
        assert_eq!(
            b.devices[0].oob_info,
            OobInformation(0x4000 | 0x0020 | 0x0002)
        );
        assert_eq!(b.devices[0].uri.as_deref(), Some("https://ex.com/a"));
        assert_eq!(
            b.devices[1].oob_info,
            OobInformation(0x0180),
            "bits 7 and 8"
        );
        assert_eq!(b.devices[2].oob_info, OobInformation::EMPTY);
        for (line, expected) in [
            ("oob_info = [\"braille\"]", "unknown name 'braille'"),
            (
                "uri = \"https://example.com/a/very/long/path/x\"",
                "at most 29",
            ),
        ] {
            let t =
                format!("[[device]]\nuuid = \"7b2c1a90-0000-4000-8000-000000000001\"\n{line}\n");
            let e = Building::parse(&t, "b.toml").unwrap_err().to_string();
            assert!(e.contains(expected), "{line}: {e}");
        }
    }
}
