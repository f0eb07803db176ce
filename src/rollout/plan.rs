//! The rollout plan: a TOML file that lists the network, the provisioner's address ranges, the
//! policy (authentication, concurrency, retries), the templates (what a node of each role gets
//! after provisioning) and the devices.
//!
//! Every error names the line and the field of the plan ([`PlanError`]): syntax and type errors
//! through the TOML parser's spans, semantic errors (an unknown template, a duplicate UUID, bad
//! hex, overlapping ranges, ...) through [`toml::Spanned`] fields. README.md ("Rollout plans")
//! has a complete example, and `meshprov demo` writes one (`tools::rollout::demo_plan`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::net::config::ModelId;
use crate::provisioning::AlgorithmPolicy;
use crate::sim::building::parse_model_id;
use crate::store::Range16;
use crate::uuid::DeviceUuid;

/// A plan error: where (line, field) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct PlanError {
    /// The plan file's name as given.
    pub file: String,
    /// 1-based line of the offending value (0 when the file could not be read).
    pub line: usize,
    /// The field, as a path (`device[3].template`, `policy.concurrency`).
    pub field: String,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

/// An authentication method a plan names (MshPRT v1.1 §5.4.2.4 and certificate-based
/// provisioning, §5.4.2.6 of the 1.1 specification's records).
#[derive(Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// Certificate-based: the chain is checked against `policy.trust`.
    Cert,
    /// Static OOB with this value (16 or 32 octets).
    Static(Vec<u8>),
    /// Output OOB: the device shows a value and the installer enters it.
    Output,
    /// Input OOB: the installer types a value on the device.
    Input,
    /// The device's public key out of band (X ‖ Y), read from a file of 128 hex digits.
    OobPublicKey([u8; 64]),
    /// No OOB (refused unless `policy.auth` lists `none`).
    None,
}

impl Drop for AuthMethod {
    /// A static OOB value is an AuthValue: wiped when the plan is dropped.
    fn drop(&mut self) {
        if let AuthMethod::Static(v) = self {
            zeroize::Zeroize::zeroize(v);
        }
    }
}

impl std::fmt::Debug for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Static OOB values are secrets: never printed.
        f.write_str(self.kind())
    }
}

impl AuthMethod {
    /// The method's name in the plan (`cert`, `static`, `output`, `input`, `oob-public-key`,
    /// `none`).
    pub fn kind(&self) -> &'static str {
        match self {
            AuthMethod::Cert => "cert",
            AuthMethod::Static(_) => "static",
            AuthMethod::Output => "output",
            AuthMethod::Input => "input",
            AuthMethod::OobPublicKey(_) => "oob-public-key",
            AuthMethod::None => "none",
        }
    }

    fn parse(s: &str, base: &Path) -> Result<Self, String> {
        let hex_err = |what: &str, e: String| format!("{what}: {e}");
        match s {
            "cert" => Ok(Self::Cert),
            "output" => Ok(Self::Output),
            "input" => Ok(Self::Input),
            "none" => Ok(Self::None),
            _ => {
                if let Some(h) = s.strip_prefix("static:") {
                    let v = parse_hex(h).map_err(|e| hex_err("static OOB value", e))?;
                    if v.len() != 16 && v.len() != 32 {
                        return Err(format!(
                            "static OOB value: expected 32 or 64 hex digits (16 or 32 bytes), got {}",
                            h.trim().len()
                        ));
                    }
                    Ok(Self::Static(v))
                } else if let Some(file) = s.strip_prefix("oob-public-key:") {
                    let path = base.join(file);
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    let v = parse_hex(text.trim())
                        .map_err(|e| hex_err(&format!("public key in {}", path.display()), e))?;
                    let key: [u8; 64] = v.try_into().map_err(|v: Vec<u8>| {
                        format!(
                            "public key in {}: expected 128 hex digits (X ‖ Y), got {}",
                            path.display(),
                            v.len() * 2
                        )
                    })?;
                    Ok(Self::OobPublicKey(key))
                } else {
                    Err(format!(
                        "unknown auth '{s}': use cert, static:HEX, output, input, oob-public-key:FILE or none"
                    ))
                }
            }
        }
    }
}

fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let t = s.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    if !t.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({})", t.len()));
    }
    hex::decode(t).map_err(|_| format!("'{t}' is not hex"))
}

/// Where a device is installed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlanLocation {
    /// Building.
    #[serde(default)]
    pub building: String,
    /// Floor (a label: "2", "B1").
    #[serde(default, deserialize_with = "de_label")]
    pub floor: String,
    /// Room.
    #[serde(default)]
    pub room: String,
}

fn de_label<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum L {
        S(String),
        I(i64),
    }
    Ok(match L::deserialize(d)? {
        L::S(s) => s,
        L::I(i) => i.to_string(),
    })
}

/// A model binding of a template: the model on element `element` gets AppKey `app_key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Element index (0 = primary).
    pub element: u8,
    /// The model.
    pub model: ModelId,
    /// AppKey by name.
    pub app_key: String,
}

/// A publication of a template (Config Model Publication Set, MshPRT v1.1 §4.3.2.16).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    /// Element index.
    pub element: u8,
    /// The model.
    pub model: ModelId,
    /// Group by name (its address is allocated in the store).
    pub group: String,
    /// AppKey by name.
    pub app_key: String,
    /// Publish TTL (0–127, or 255 for the node's default TTL).
    pub ttl: u8,
    /// Publish period as the wire's octet (steps and resolution, §4.2.3.2).
    pub period: u8,
    /// Publish retransmit count (0–7) and interval steps (0–31) as the wire's octet.
    pub retransmit: u8,
}

/// A subscription of a template (Config Model Subscription Add, §4.3.2.19).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// Element index.
    pub element: u8,
    /// The model.
    pub model: ModelId,
    /// Group by name.
    pub group: String,
}

/// What a node of one role gets after provisioning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template {
    /// Its name.
    pub name: String,
    /// AppKeys by name (generated and stored on first use).
    pub app_keys: Vec<String>,
    /// Model bindings.
    pub bindings: Vec<Binding>,
    /// Publications.
    pub publications: Vec<Publication>,
    /// Subscriptions.
    pub subscriptions: Vec<Subscription>,
    /// Default TTL (§4.2.7), if set.
    pub default_ttl: Option<u8>,
    /// Relay on/off (§4.2.8), if set.
    pub relay: Option<bool>,
    /// GATT Proxy on/off (§4.2.10), if set.
    pub proxy: Option<bool>,
    /// Secure Network Beacon on/off (§4.2.11), if set.
    pub beacon: Option<bool>,
    /// Network Transmit count (1–8 transmissions) and interval (10–320 ms) (§4.2.19), if set.
    pub network_transmit: Option<(u8, u16)>,
}

/// One planned device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedDevice {
    /// Its UUID.
    pub uuid: DeviceUuid,
    /// Serial number, if the plan gives one.
    pub serial: Option<String>,
    /// Name for people.
    pub name: String,
    /// Where it is installed.
    pub location: PlanLocation,
    /// How it authenticates.
    pub auth: AuthMethod,
    /// Its role: a key of [`Plan::templates`].
    pub template: String,
    /// Element count it must report (verified against Composition Data page 0).
    pub elements: Option<u8>,
    /// 1-based line of its `[[device]]` entry.
    pub line: usize,
}

/// The rule that takes unplanned devices heard beaconing (off by default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovery {
    /// Whether unplanned devices are taken at all.
    pub enabled: bool,
    /// Only UUIDs starting with these octets.
    pub uuid_prefix: Vec<u8>,
    /// Only beacons with this URI hash (4 octets).
    pub uri_hash: Option<[u8; 4]>,
    /// Only devices heard at least this loud (dBm).
    pub min_rssi: Option<i8>,
    /// The template they get.
    pub template: String,
    /// Their authentication.
    pub auth: AuthMethod,
}

/// The rollout policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Authentication methods allowed; a device whose `auth` is not listed is refused in the
    /// plan. Default: every method but `none`.
    pub auth: BTreeSet<String>,
    /// Algorithm preference.
    pub algorithm: AlgorithmPolicy,
    /// Directory of trusted manufacturer roots (for `cert`), relative to the plan.
    pub trust: Option<PathBuf>,
    /// PB-ADV links at once (1–64).
    pub concurrency: usize,
    /// PB-GATT connections at once.
    pub gatt_connections: usize,
    /// Nodes being configured at once (see `ConfigOptions::max_nodes_in_flight`).
    pub configure_concurrency: usize,
    /// Attempts after the first, per phase.
    pub retries: u32,
    /// First backoff; doubles per retry.
    pub backoff: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
    /// A provisioning attempt that takes longer fails.
    pub provision_timeout: Duration,
    /// A configuration attempt (all its requests) that takes longer fails.
    pub configure_timeout: Duration,
    /// PB-ADV (`adv`) or PB-GATT (`gatt`).
    pub bearer: crate::sim::run::BearerChoice,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            auth: ["cert", "static", "output", "input", "oob-public-key"]
                .into_iter()
                .map(String::from)
                .collect(),
            algorithm: AlgorithmPolicy::Auto,
            trust: None,
            concurrency: 16,
            gatt_connections: 1,
            configure_concurrency: 4,
            retries: 3,
            backoff: Duration::from_secs(2),
            backoff_max: Duration::from_secs(60),
            provision_timeout: Duration::from_secs(120),
            configure_timeout: Duration::from_secs(180),
            bearer: crate::sim::run::BearerChoice::Adv,
        }
    }
}

/// A parsed, checked plan.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The file it came from.
    pub path: PathBuf,
    /// Network name.
    pub network_name: String,
    /// The store (relative paths are relative to the plan's directory).
    pub store: PathBuf,
    /// NetKey index handed out.
    pub net_key_index: u16,
    /// IV Index of a new network.
    pub iv_index: u32,
    /// The provisioner's unicast ranges (non-overlapping), in the plan's order: addresses are
    /// allocated from the first range until it is full, then from the next.
    pub unicast_ranges: Vec<Range16>,
    /// The radio, if the plan names one (`sim:FILE.toml` relative to the plan, `meshd-unit:DIR`,
    /// `bluez`); the command line's `--radio` wins.
    pub radio: Option<String>,
    /// The policy.
    pub policy: Policy,
    /// Templates by name.
    pub templates: BTreeMap<String, Template>,
    /// Devices, in plan order.
    pub devices: Vec<PlannedDevice>,
    /// The discovery rule.
    pub discovery: Discovery,
}

// ---------------------------------------------------------------------------------------------
// Raw (serde) form.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    network: Spanned<RawNetwork>,
    #[serde(default)]
    provisioner: Option<RawProvisioner>,
    #[serde(default)]
    policy: Option<RawPolicy>,
    #[serde(default)]
    templates: BTreeMap<String, Spanned<RawTemplate>>,
    #[serde(default)]
    device: Vec<Spanned<RawDevice>>,
    #[serde(default)]
    discovery: Option<Spanned<RawDiscovery>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    name: String,
    store: Spanned<String>,
    #[serde(default)]
    net_key_index: Option<Spanned<u16>>,
    #[serde(default)]
    iv_index: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvisioner {
    #[serde(default)]
    unicast_ranges: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    radio: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    auth: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    algorithm: Option<Spanned<String>>,
    #[serde(default)]
    trust: Option<String>,
    #[serde(default)]
    concurrency: Option<Spanned<i64>>,
    #[serde(default)]
    gatt_connections: Option<Spanned<i64>>,
    #[serde(default)]
    configure_concurrency: Option<Spanned<i64>>,
    #[serde(default)]
    retries: Option<Spanned<i64>>,
    #[serde(default)]
    backoff_ms: Option<Spanned<i64>>,
    #[serde(default)]
    backoff_max_ms: Option<Spanned<i64>>,
    #[serde(default)]
    provision_timeout_s: Option<Spanned<i64>>,
    #[serde(default)]
    configure_timeout_s: Option<Spanned<i64>>,
    #[serde(default)]
    bearer: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBinding {
    #[serde(default)]
    element: u8,
    model: Spanned<String>,
    app_key: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublication {
    #[serde(default)]
    element: u8,
    model: Spanned<String>,
    group: String,
    app_key: Spanned<String>,
    #[serde(default)]
    ttl: Option<Spanned<u8>>,
    #[serde(default)]
    period_ms: Option<Spanned<u64>>,
    #[serde(default)]
    retransmit_count: Option<Spanned<u8>>,
    #[serde(default)]
    retransmit_interval_ms: Option<Spanned<u16>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscription {
    #[serde(default)]
    element: u8,
    model: Spanned<String>,
    group: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetTransmit {
    count: Spanned<u8>,
    interval_ms: Spanned<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    #[serde(default)]
    app_keys: Vec<Spanned<String>>,
    #[serde(default)]
    bind: Vec<RawBinding>,
    #[serde(default)]
    publish: Vec<RawPublication>,
    #[serde(default)]
    subscribe: Vec<RawSubscription>,
    #[serde(default)]
    default_ttl: Option<Spanned<u8>>,
    #[serde(default)]
    relay: Option<bool>,
    #[serde(default)]
    proxy: Option<bool>,
    #[serde(default)]
    beacon: Option<bool>,
    #[serde(default)]
    network_transmit: Option<RawNetTransmit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    uuid: Spanned<String>,
    #[serde(default)]
    serial: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    location: Option<PlanLocation>,
    auth: Spanned<String>,
    template: Spanned<String>,
    #[serde(default)]
    elements: Option<Spanned<u8>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscovery {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    uuid_prefix: Option<Spanned<String>>,
    #[serde(default)]
    uri_hash: Option<Spanned<String>>,
    #[serde(default)]
    min_rssi: Option<i8>,
    #[serde(default)]
    template: Option<Spanned<String>>,
    #[serde(default)]
    auth: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------------------------

struct Ctx<'a> {
    file: String,
    text: &'a str,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn err(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> PlanError {
        PlanError {
            file: self.file.clone(),
            line: self.line(span.start),
            field: field.into(),
            message: message.into(),
        }
    }

    fn positive(
        &self,
        v: &Option<Spanned<i64>>,
        field: &str,
        max: i64,
        default: usize,
    ) -> Result<usize, PlanError> {
        match v {
            None => Ok(default),
            Some(s) if (1..=max).contains(s.get_ref()) => Ok(*s.get_ref() as usize),
            Some(s) => Err(self.err(
                s.span(),
                field,
                format!("{} is not in 1..={max}", s.get_ref()),
            )),
        }
    }

    fn millis(
        &self,
        v: &Option<Spanned<i64>>,
        field: &str,
        scale: u64,
        default: Duration,
    ) -> Result<Duration, PlanError> {
        match v {
            None => Ok(default),
            Some(s) if *s.get_ref() >= 0 => Ok(Duration::from_millis(*s.get_ref() as u64 * scale)),
            Some(s) => Err(self.err(s.span(), field, "must not be negative")),
        }
    }
}

/// The field a TOML syntax or type error points at: the key on the error's line, if any.
fn field_at(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let l = lines.get(line.saturating_sub(1)).copied().unwrap_or("");
    let header = |s: &str| s.trim().trim_matches(|c| c == '[' || c == ']').to_string();
    match l.split_once('=') {
        Some((k, _)) => {
            let key = k.trim().trim_matches('"');
            // The table the key is in: the nearest header above it.
            let table = lines[..line.saturating_sub(1).min(lines.len())]
                .iter()
                .rev()
                .find(|s| s.trim_start().starts_with('['))
                .map(|s| header(s));
            match table {
                Some(t) if !t.is_empty() => format!("{t}.{key}"),
                _ => key.to_string(),
            }
        }
        None => header(l),
    }
}

fn model(ctx: &Ctx<'_>, s: &Spanned<String>, field: &str) -> Result<ModelId, PlanError> {
    parse_model_id(s.get_ref()).map_err(|e| ctx.err(s.span(), field, e))
}

/// Publish period in milliseconds as the Publish Period octet (§4.2.3.2): the finest
/// resolution (100 ms, 1 s, 10 s, 10 min) whose 6-bit step count holds it exactly.
pub fn publish_period(ms: u64) -> Option<u8> {
    for (res, unit) in [(0u8, 100u64), (1, 1000), (2, 10_000), (3, 600_000)] {
        if ms.is_multiple_of(unit) && ms / unit <= 63 {
            return Some((res << 6) | (ms / unit) as u8);
        }
    }
    None
}

impl Plan {
    /// Reads and checks the plan at `path`.
    pub fn load(path: &Path) -> Result<Self, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanError {
            file: path.display().to_string(),
            line: 0,
            field: "-".into(),
            message: format!("cannot read the plan: {e}"),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &path.display().to_string(), base)
    }

    /// Parses and checks plan text; `file` names it in errors, relative paths are relative to
    /// `base`.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Self, PlanError> {
        let ctx = Ctx {
            file: file.to_string(),
            text,
        };
        let raw: RawPlan = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| ctx.line(s.start)).unwrap_or(0);
            PlanError {
                file: file.to_string(),
                line,
                field: field_at(text, line),
                message: e.message().trim().replace('\n', " "),
            }
        })?;

        // [network]
        let net = raw.network.get_ref();
        let net_key_index = match &net.net_key_index {
            Some(i) if *i.get_ref() > 0x0fff => {
                return Err(ctx.err(
                    i.span(),
                    "network.net_key_index",
                    "a NetKey index is 0..=4095",
                ));
            }
            Some(i) => *i.get_ref(),
            None => 0,
        };
        if net.store.get_ref().trim().is_empty() {
            return Err(ctx.err(net.store.span(), "network.store", "give the store's path"));
        }
        let store = base.join(net.store.get_ref());

        // [provisioner]
        let mut unicast_ranges: Vec<(Range16, Range<usize>)> = Vec::new();
        let mut radio = None;
        if let Some(p) = &raw.provisioner {
            radio = p.radio.clone().map(|r| match r.strip_prefix("sim:") {
                Some(f) => format!("sim:{}", base.join(f).display()),
                None => r,
            });
            for (i, r) in p.unicast_ranges.iter().flatten().enumerate() {
                let field = format!("provisioner.unicast_ranges[{i}]");
                let range: Range16 = r
                    .get_ref()
                    .parse()
                    .map_err(|e: String| ctx.err(r.span(), &field, e))?;
                if range.low == 0 || range.high > 0x7fff || range.low > range.high {
                    return Err(ctx.err(
                        r.span(),
                        &field,
                        format!("{} is not a unicast range inside 0001-7FFF", r.get_ref()),
                    ));
                }
                if let Some((other, _)) = unicast_ranges
                    .iter()
                    .find(|(o, _)| o.low <= range.high && range.low <= o.high)
                {
                    return Err(ctx.err(
                        r.span(),
                        &field,
                        format!(
                            "{} overlaps {:04X}-{:04X}: ranges must not overlap",
                            r.get_ref(),
                            other.low,
                            other.high
                        ),
                    ));
                }
                unicast_ranges.push((range, r.span()));
            }
        }
        // [policy]
        let mut policy = Policy::default();
        if let Some(p) = &raw.policy {
            if let Some(list) = &p.auth {
                policy.auth.clear();
                for (i, a) in list.iter().enumerate() {
                    let ok = [
                        "cert",
                        "static",
                        "output",
                        "input",
                        "oob-public-key",
                        "none",
                    ];
                    if !ok.contains(&a.get_ref().as_str()) {
                        return Err(ctx.err(
                            a.span(),
                            format!("policy.auth[{i}]"),
                            format!("unknown method '{}': use {}", a.get_ref(), ok.join(", ")),
                        ));
                    }
                    policy.auth.insert(a.get_ref().clone());
                }
            }
            if let Some(a) = &p.algorithm {
                policy.algorithm = match a.get_ref().as_str() {
                    "auto" => AlgorithmPolicy::Auto,
                    "cmac" => AlgorithmPolicy::Cmac,
                    "hmac" => AlgorithmPolicy::Hmac,
                    other => {
                        return Err(ctx.err(
                            a.span(),
                            "policy.algorithm",
                            format!("unknown algorithm '{other}': use auto, cmac or hmac"),
                        ));
                    }
                };
            }
            policy.trust = p.trust.as_ref().map(|t| base.join(t));
            policy.concurrency = ctx.positive(&p.concurrency, "policy.concurrency", 64, 16)?;
            policy.gatt_connections =
                ctx.positive(&p.gatt_connections, "policy.gatt_connections", 16, 1)?;
            policy.configure_concurrency = ctx.positive(
                &p.configure_concurrency,
                "policy.configure_concurrency",
                64,
                4,
            )?;
            policy.retries = match &p.retries {
                None => 3,
                Some(r) if (0..=100).contains(r.get_ref()) => *r.get_ref() as u32,
                Some(r) => return Err(ctx.err(r.span(), "policy.retries", "retries are 0..=100")),
            };
            policy.backoff = ctx.millis(&p.backoff_ms, "policy.backoff_ms", 1, policy.backoff)?;
            policy.backoff_max = ctx.millis(
                &p.backoff_max_ms,
                "policy.backoff_max_ms",
                1,
                policy.backoff_max,
            )?;
            policy.provision_timeout = ctx.millis(
                &p.provision_timeout_s,
                "policy.provision_timeout_s",
                1000,
                policy.provision_timeout,
            )?;
            policy.configure_timeout = ctx.millis(
                &p.configure_timeout_s,
                "policy.configure_timeout_s",
                1000,
                policy.configure_timeout,
            )?;
            if let Some(b) = &p.bearer {
                policy.bearer = match b.get_ref().as_str() {
                    "adv" => crate::sim::run::BearerChoice::Adv,
                    "gatt" => crate::sim::run::BearerChoice::Gatt,
                    other => {
                        return Err(ctx.err(
                            b.span(),
                            "policy.bearer",
                            format!("unknown bearer '{other}': use adv or gatt"),
                        ));
                    }
                };
            }
        }

        // [templates.NAME]
        let mut templates = BTreeMap::new();
        for (name, t) in &raw.templates {
            let tf = |f: &str| format!("templates.{name}.{f}");
            let rt = t.get_ref();
            let app_keys: Vec<String> = rt.app_keys.iter().map(|k| k.get_ref().clone()).collect();
            let known_key = |k: &Spanned<String>, field: String| -> Result<String, PlanError> {
                if app_keys.contains(k.get_ref()) {
                    Ok(k.get_ref().clone())
                } else {
                    Err(ctx.err(
                        k.span(),
                        field,
                        format!(
                            "AppKey '{}' is not in this template's app_keys ({})",
                            k.get_ref(),
                            app_keys.join(", ")
                        ),
                    ))
                }
            };
            let mut bindings = Vec::new();
            for (i, b) in rt.bind.iter().enumerate() {
                bindings.push(Binding {
                    element: b.element,
                    model: model(&ctx, &b.model, &tf(&format!("bind[{i}].model")))?,
                    app_key: known_key(&b.app_key, tf(&format!("bind[{i}].app_key")))?,
                });
            }
            let mut publications = Vec::new();
            for (i, p) in rt.publish.iter().enumerate() {
                let ttl = match &p.ttl {
                    None => 0xff,
                    Some(v) if *v.get_ref() <= 0x7f || *v.get_ref() == 0xff => *v.get_ref(),
                    Some(v) => {
                        return Err(ctx.err(
                            v.span(),
                            tf(&format!("publish[{i}].ttl")),
                            "publish TTL is 0..=127, or 255 for the default TTL",
                        ));
                    }
                };
                let period = match &p.period_ms {
                    None => 0,
                    Some(v) => publish_period(*v.get_ref()).ok_or_else(|| {
                        ctx.err(
                            v.span(),
                            tf(&format!("publish[{i}].period_ms")),
                            format!("{} ms is not a publish period (0-63 steps of 100 ms, 1 s, 10 s or 10 min)", v.get_ref()),
                        )
                    })?,
                };
                let count = match &p.retransmit_count {
                    None => 0,
                    Some(v) if *v.get_ref() <= 7 => *v.get_ref(),
                    Some(v) => {
                        return Err(ctx.err(
                            v.span(),
                            tf(&format!("publish[{i}].retransmit_count")),
                            "0..=7",
                        ));
                    }
                };
                let steps = match &p.retransmit_interval_ms {
                    None => 0,
                    Some(v)
                        if *v.get_ref() >= 50 && *v.get_ref() <= 1600 && v.get_ref() % 50 == 0 =>
                    {
                        (*v.get_ref() / 50 - 1) as u8
                    }
                    Some(v) => {
                        return Err(ctx.err(
                            v.span(),
                            tf(&format!("publish[{i}].retransmit_interval_ms")),
                            "a multiple of 50 in 50..=1600",
                        ));
                    }
                };
                publications.push(Publication {
                    element: p.element,
                    model: model(&ctx, &p.model, &tf(&format!("publish[{i}].model")))?,
                    group: p.group.clone(),
                    app_key: known_key(&p.app_key, tf(&format!("publish[{i}].app_key")))?,
                    ttl,
                    period,
                    retransmit: (steps << 3) | count,
                });
            }
            let mut subscriptions = Vec::new();
            for (i, s) in rt.subscribe.iter().enumerate() {
                subscriptions.push(Subscription {
                    element: s.element,
                    model: model(&ctx, &s.model, &tf(&format!("subscribe[{i}].model")))?,
                    group: s.group.clone(),
                });
            }
            let default_ttl = match &rt.default_ttl {
                Some(v) if *v.get_ref() == 1 || *v.get_ref() > 0x7f => {
                    return Err(ctx.err(
                        v.span(),
                        tf("default_ttl"),
                        "Default TTL is 0 or 2..=127 (§4.2.7)",
                    ));
                }
                v => v.as_ref().map(|v| *v.get_ref()),
            };
            let network_transmit = match &rt.network_transmit {
                None => None,
                Some(n) => {
                    if !(1..=8).contains(n.count.get_ref()) {
                        return Err(ctx.err(
                            n.count.span(),
                            tf("network_transmit.count"),
                            "1..=8 transmissions",
                        ));
                    }
                    let iv = *n.interval_ms.get_ref();
                    if !(10..=320).contains(&iv) || iv % 10 != 0 {
                        return Err(ctx.err(
                            n.interval_ms.span(),
                            tf("network_transmit.interval_ms"),
                            "a multiple of 10 in 10..=320",
                        ));
                    }
                    Some((*n.count.get_ref(), iv))
                }
            };
            templates.insert(
                name.clone(),
                Template {
                    name: name.clone(),
                    app_keys,
                    bindings,
                    publications,
                    subscriptions,
                    default_ttl,
                    relay: rt.relay,
                    proxy: rt.proxy,
                    beacon: rt.beacon,
                    network_transmit,
                },
            );
        }

        let check_auth = |a: &Spanned<String>, field: String| -> Result<AuthMethod, PlanError> {
            let m =
                AuthMethod::parse(a.get_ref(), base).map_err(|e| ctx.err(a.span(), &field, e))?;
            if !policy.auth.contains(m.kind()) {
                let why = if m == AuthMethod::None {
                    "No OOB is unauthenticated: add \"none\" to policy.auth only if you accept that"
                        .to_string()
                } else {
                    format!(
                        "'{}' is not allowed by policy.auth ({})",
                        m.kind(),
                        policy.auth.iter().cloned().collect::<Vec<_>>().join(", ")
                    )
                };
                return Err(ctx.err(a.span(), &field, why));
            }
            if m == AuthMethod::Cert && policy.trust.is_none() {
                return Err(ctx.err(
                    a.span(),
                    &field,
                    "auth cert needs policy.trust: the directory of trusted manufacturer roots",
                ));
            }
            Ok(m)
        };
        let check_template = |t: &Spanned<String>, field: String| -> Result<String, PlanError> {
            if templates.contains_key(t.get_ref()) {
                Ok(t.get_ref().clone())
            } else {
                Err(ctx.err(
                    t.span(),
                    field,
                    format!(
                        "unknown template '{}' (the plan has: {})",
                        t.get_ref(),
                        templates.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ))
            }
        };

        // [[device]]
        let mut devices = Vec::new();
        let mut seen: BTreeMap<DeviceUuid, usize> = BTreeMap::new();
        for (i, d) in raw.device.iter().enumerate() {
            let rd = d.get_ref();
            let f = |x: &str| format!("device[{i}].{x}");
            let uuid: DeviceUuid = rd
                .uuid
                .get_ref()
                .parse()
                .map_err(|e| ctx.err(rd.uuid.span(), f("uuid"), format!("{e}")))?;
            let line = ctx.line(d.span().start);
            if let Some(first) = seen.insert(uuid, ctx.line(rd.uuid.span().start)) {
                return Err(ctx.err(
                    rd.uuid.span(),
                    f("uuid"),
                    format!("duplicate UUID {uuid}: already planned on line {first}"),
                ));
            }
            let elements = match &rd.elements {
                Some(e) if *e.get_ref() == 0 => {
                    return Err(ctx.err(e.span(), f("elements"), "at least 1 element"));
                }
                e => e.as_ref().map(|e| *e.get_ref()),
            };
            devices.push(PlannedDevice {
                uuid,
                serial: rd.serial.clone(),
                name: rd.name.clone().unwrap_or_default(),
                location: rd.location.clone().unwrap_or_default(),
                auth: check_auth(&rd.auth, f("auth"))?,
                template: check_template(&rd.template, f("template"))?,
                elements,
                line,
            });
        }

        // [discovery]
        let discovery = match &raw.discovery {
            None => Discovery {
                enabled: false,
                uuid_prefix: Vec::new(),
                uri_hash: None,
                min_rssi: None,
                template: String::new(),
                auth: AuthMethod::Output,
            },
            Some(s) => {
                let d = s.get_ref();
                let uuid_prefix = match &d.uuid_prefix {
                    None => Vec::new(),
                    Some(p) => parse_hex(&p.get_ref().replace('-', ""))
                        .map_err(|e| ctx.err(p.span(), "discovery.uuid_prefix", e))?,
                };
                let uri_hash = match &d.uri_hash {
                    None => None,
                    Some(h) => Some(
                        parse_hex(h.get_ref())
                            .map_err(|e| ctx.err(h.span(), "discovery.uri_hash", e))?
                            .try_into()
                            .map_err(|_| {
                                ctx.err(
                                    h.span(),
                                    "discovery.uri_hash",
                                    "expected 8 hex digits (4 bytes)",
                                )
                            })?,
                    ),
                };
                let template = match &d.template {
                    Some(t) => check_template(t, "discovery.template".into())?,
                    None if d.enabled => {
                        return Err(ctx.err(
                            s.span(),
                            "discovery.template",
                            "an enabled discovery rule needs a template",
                        ));
                    }
                    None => String::new(),
                };
                let auth = match &d.auth {
                    Some(a) => check_auth(a, "discovery.auth".into())?,
                    None => AuthMethod::Output,
                };
                Discovery {
                    enabled: d.enabled,
                    uuid_prefix,
                    uri_hash,
                    min_rssi: d.min_rssi,
                    template,
                    auth,
                }
            }
        };

        Ok(Plan {
            path: PathBuf::from(file),
            network_name: net.name.clone(),
            store,
            net_key_index,
            iv_index: net.iv_index.unwrap_or(0),
            unicast_ranges: unicast_ranges.into_iter().map(|(r, _)| r).collect(),
            radio,
            policy,
            templates,
            devices,
            discovery,
        })
    }

    /// The template of `device`.
    pub fn template_of(&self, device: &PlannedDevice) -> Option<&Template> {
        self.templates.get(&device.template)
    }

    /// Every group name the templates use, sorted.
    pub fn group_names(&self) -> BTreeSet<String> {
        self.templates
            .values()
            .flat_map(|t| {
                t.publications
                    .iter()
                    .map(|p| p.group.clone())
                    .chain(t.subscriptions.iter().map(|s| s.group.clone()))
            })
            .collect()
    }

    /// Every AppKey name the templates use, sorted.
    pub fn app_key_names(&self) -> BTreeSet<String> {
        self.templates
            .values()
            .flat_map(|t| t.app_keys.iter().cloned())
            .collect()
    }
}
