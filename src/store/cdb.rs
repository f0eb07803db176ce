//! The Mesh Configuration Database (CDB) JSON document: parsing with validation, and
//! deterministic output in the 1.0.1 layout.
//!
//! Reading accepts what the tools in the field write (reference §9): nRF Mesh (1.0.1,
//! upper-case dashed UUIDs, vendor model IDs, virtual label groups, partial exports) and BlueZ
//! mesh-cfgclient (1.0.0, lower-case UUIDs, publication period in milliseconds, the private
//! top-level `ivIndex`). Every problem is reported with the JSON path of the field, e.g.
//! `nodes[2].deviceKey: expected 32 hex digits (16 bytes), got 31`.
//!
//! Writing is deterministic: object keys in sorted order (serde_json's default map), arrays in a
//! fixed order (keys and scenes by index or number, nodes by address, models by ID, addresses
//! ascending, provisioners as stored), two-space indentation and a final newline, so the same
//! database always exports to the same bytes and two exports diff well. UUIDs and hex values
//! are written in upper case, as nRF Mesh writes them.

use std::collections::{BTreeMap, BTreeSet};

use mesh_crypto::hex::encode;
use mesh_crypto::{AppKey, DevKey, NetKey};
use serde_json::{Map, Value, json};

use super::{Location, Security};
use crate::uuid::DeviceUuid;

/// `$schema` written on export.
pub const SCHEMA: &str = "http://json-schema.org/draft-04/schema#";
/// `id` written on export: the Mesh CDB 1.0.1 schema.
pub const SCHEMA_ID: &str =
    "https://www.bluetooth.com/specifications/specs/mesh-cdb-1-0-1-schema.json#";
/// `version` written on export.
pub const VERSION: &str = "1.0.1";

/// A CDB file that cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdbError {
    /// The file is not JSON at all.
    #[error("not valid JSON: {0}")]
    Json(String),
    /// A field is missing, has the wrong type or an invalid value, or contradicts another field.
    #[error("{path}: {problem}")]
    Invalid {
        /// JSON path of the field, e.g. `nodes[2].deviceKey`.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// An inclusive range of addresses or scene numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range16 {
    /// First value.
    pub low: u16,
    /// Last value (inclusive).
    pub high: u16,
}

impl std::str::FromStr for Range16 {
    type Err = String;
    /// `LOW-HIGH` in hex, e.g. `0001-00FF`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (lo, hi) = s
            .split_once('-')
            .ok_or_else(|| format!("'{s}' is not a range: give LOW-HIGH in hex, e.g. 0001-00FF"))?;
        let p = |v: &str| {
            let v = v.trim();
            let v = v.strip_prefix("0x").unwrap_or(v);
            u16::from_str_radix(v, 16)
                .map_err(|_| format!("'{v}' in '{s}' is not 1 to 4 hex digits"))
        };
        let (low, high) = (p(lo)?, p(hi)?);
        if low > high {
            return Err(format!("'{s}': {low:04X} is above {high:04X}"));
        }
        Ok(Range16 { low, high })
    }
}

/// A whole network as a CDB document holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cdb {
    /// `meshUUID`.
    pub mesh_uuid: DeviceUuid,
    /// `meshName`.
    pub mesh_name: String,
    /// `timestamp` of the last change, ISO-8601.
    pub timestamp: String,
    /// `partial`: a subset of the network.
    pub partial: bool,
    /// The current IV Index as a top-level `ivIndex`. The CDB 1.0.1 layout has no such field,
    /// but a network restored with IV Index 0 would be unusable, so meshprov writes it under
    /// the name BlueZ uses in its own files (other tools ignore unknown members).
    pub iv_index: Option<u32>,
    /// `netKeys`.
    pub net_keys: Vec<CdbNetKey>,
    /// `appKeys`.
    pub app_keys: Vec<CdbAppKey>,
    /// `provisioners`.
    pub provisioners: Vec<CdbProvisioner>,
    /// `nodes`.
    pub nodes: Vec<CdbNode>,
    /// `groups`.
    pub groups: Vec<CdbGroup>,
    /// `scenes`.
    pub scenes: Vec<CdbScene>,
    /// `networkExclusions`.
    pub exclusions: Vec<CdbExclusion>,
}

/// An entry of `netKeys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdbNetKey {
    /// `index`, 0–4095.
    pub index: u16,
    /// `name`.
    pub name: String,
    /// `key`; `None` in an export without keys.
    pub key: Option<NetKey>,
    /// `oldKey` during a key refresh.
    pub old_key: Option<NetKey>,
    /// `phase`: key refresh phase 0, 1 or 2.
    pub phase: u8,
    /// `minSecurity`.
    pub min_security: Security,
    /// `timestamp`.
    pub timestamp: String,
}

/// An entry of `appKeys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdbAppKey {
    /// `index`, 0–4095.
    pub index: u16,
    /// `name`.
    pub name: String,
    /// `boundNetKey`.
    pub bound_net_key: u16,
    /// `key`; `None` in an export without keys.
    pub key: Option<AppKey>,
    /// `oldKey`.
    pub old_key: Option<AppKey>,
}

/// An entry of `provisioners`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdbProvisioner {
    /// `UUID`.
    pub uuid: DeviceUuid,
    /// `provisionerName`.
    pub name: String,
    /// `allocatedUnicastRange`.
    pub unicast: Vec<Range16>,
    /// `allocatedGroupRange`.
    pub group: Vec<Range16>,
    /// `allocatedSceneRange`.
    pub scene: Vec<Range16>,
}

/// Feature states of a node: 0 not enabled, 1 enabled, 2 not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// `relay`.
    pub relay: Option<u8>,
    /// `proxy`.
    pub proxy: Option<u8>,
    /// `friend`.
    pub friend: Option<u8>,
    /// `lowPower`.
    pub low_power: Option<u8>,
}

/// An entry of `nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdbNode {
    /// `UUID`.
    pub uuid: DeviceUuid,
    /// `unicastAddress` of the primary element.
    pub address: u16,
    /// `deviceKey`; `None` in an export without keys.
    pub device_key: Option<DevKey>,
    /// `security`.
    pub security: Security,
    /// `netKeys`: (index, updated).
    pub net_keys: Vec<(u16, bool)>,
    /// `appKeys`: (index, updated).
    pub app_keys: Vec<(u16, bool)>,
    /// `configComplete`.
    pub config_complete: bool,
    /// `name`, with meshprov's serial and location tag (see [`encode_name`]).
    pub name: String,
    /// `cid`.
    pub cid: Option<u16>,
    /// `pid`.
    pub pid: Option<u16>,
    /// `vid`.
    pub vid: Option<u16>,
    /// `crpl`.
    pub crpl: Option<u16>,
    /// `features`.
    pub features: Option<Features>,
    /// `secureNetworkBeacon`.
    pub secure_network_beacon: Option<bool>,
    /// `defaultTTL`.
    pub default_ttl: Option<u8>,
    /// `networkTransmit`, kept as canonical JSON.
    pub network_transmit: Option<String>,
    /// `relayRetransmit`, kept as canonical JSON.
    pub relay_retransmit: Option<String>,
    /// `elements`, by index.
    pub elements: Vec<CdbElement>,
    /// `excluded` (legacy `blacklisted`).
    pub excluded: bool,
    /// `heartbeatPub`, kept as canonical JSON.
    pub heartbeat_pub: Option<String>,
    /// `heartbeatSub`, kept as canonical JSON.
    pub heartbeat_sub: Option<String>,
}

/// An element of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdbElement {
    /// `index` (the element's address is the node's plus this).
    pub index: u8,
    /// `name`.
    pub name: Option<String>,
    /// `location`, a GATT Namespace Descriptor.
    pub location: u16,
    /// `models`, sorted by ID.
    pub models: Vec<CdbModel>,
}

/// A model ID: 16-bit SIG, or vendor `CID << 16 | model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelId {
    /// A vendor model (8 hex digits in the CDB).
    pub vendor: bool,
    /// The ID, 16 bits for SIG models, 32 for vendor models.
    pub id: u32,
}

impl ModelId {
    /// The CDB spelling: 4 hex digits for SIG, 8 for vendor models.
    pub fn to_hex(self) -> String {
        if self.vendor {
            format!("{:08X}", self.id)
        } else {
            format!("{:04X}", self.id)
        }
    }
}

/// A model of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdbModel {
    /// `modelId`.
    pub id: ModelId,
    /// `subscribe`: group addresses or virtual labels, canonical hex.
    pub subscribe: BTreeSet<String>,
    /// `publish`.
    pub publish: Option<Publication>,
    /// `bind`: AppKey indexes.
    pub bind: BTreeSet<u16>,
}

/// A model publication (`publish`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// `address`: 4 hex digits or a 32-digit virtual label.
    pub address: String,
    /// `index`: the AppKey index.
    pub index: u16,
    /// `ttl`.
    pub ttl: u8,
    /// `period.numberOfSteps`, 0–63.
    pub period_steps: u8,
    /// `period.resolution` in milliseconds: 100, 1000, 10000 or 600000.
    pub period_resolution: u32,
    /// `credentials`: 0 managed flooding, 1 friendship.
    pub credentials: u8,
    /// `retransmit.count`, 0–7.
    pub retransmit_count: u8,
    /// `retransmit.interval` in milliseconds, 50–1600 in steps of 50.
    pub retransmit_interval: u16,
}

/// An entry of `groups`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdbGroup {
    /// `name`.
    pub name: String,
    /// `address`: 4 hex digits (C000–FEFF) or a 32-digit virtual label.
    pub address: String,
    /// `parentAddress`, `0000` for none.
    pub parent: String,
}

/// An entry of `scenes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdbScene {
    /// `name`.
    pub name: String,
    /// `number`, 0001–FFFF.
    pub number: u16,
    /// `addresses` of the nodes that store it.
    pub addresses: BTreeSet<u16>,
}

/// An entry of `networkExclusions`: addresses not to reuse before the IV Index moves on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdbExclusion {
    /// `ivIndex` when the addresses were excluded.
    pub iv_index: u32,
    /// `addresses`.
    pub addresses: BTreeSet<u16>,
}

// ---------------------------------------------------------------------------------------------
// Node names: meshprov's serial and location travel inside the standard `name` field.

const TAG_OPEN: &str = " [meshprov ";

fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => o.push_str("%25"),
            ',' => o.push_str("%2C"),
            '=' => o.push_str("%3D"),
            ']' => o.push_str("%5D"),
            c => o.push(c),
        }
    }
    o
}

fn unescape(s: &str) -> String {
    s.replace("%2C", ",")
        .replace("%3D", "=")
        .replace("%5D", "]")
        .replace("%25", "%")
}

/// The CDB `name` of a node: its name, then, if it has a serial or location, a tag such as
/// `Lamp 3 [meshprov serial=SN1, building=HQ, floor=2, room=204]` (`%`, `,`, `=` and `]` in
/// values are percent-escaped). Other tools show it as part of the name; [`decode_name`] reads
/// it back.
pub fn encode_name(name: &str, serial: Option<&str>, location: Option<&Location>) -> String {
    let mut parts = Vec::new();
    if let Some(s) = serial {
        parts.push(format!("serial={}", escape(s)));
    }
    if let Some(l) = location {
        parts.push(format!("building={}", escape(&l.building)));
        parts.push(format!("floor={}", escape(&l.floor)));
        parts.push(format!("room={}", escape(&l.room)));
    }
    if parts.is_empty() {
        name.to_string()
    } else {
        format!("{name}{TAG_OPEN}{}]", parts.join(", "))
    }
}

/// Splits a CDB `name` into name, serial and location; a name without a well-formed tag is
/// returned whole.
pub fn decode_name(full: &str) -> (String, Option<String>, Option<Location>) {
    let whole = || (full.to_string(), None, None);
    let Some(start) = full.rfind(TAG_OPEN) else {
        return whole();
    };
    let Some(inner) = full[start + TAG_OPEN.len()..].strip_suffix(']') else {
        return whole();
    };
    let mut fields = BTreeMap::new();
    for part in inner.split(", ") {
        let Some((k, v)) = part.split_once('=') else {
            return whole();
        };
        if !matches!(k, "serial" | "building" | "floor" | "room") || fields.contains_key(k) {
            return whole();
        }
        fields.insert(k, unescape(v));
    }
    let serial = fields.remove("serial");
    let location = match (
        fields.remove("building"),
        fields.remove("floor"),
        fields.remove("room"),
    ) {
        (Some(building), Some(floor), Some(room)) => Some(Location {
            building,
            floor,
            room,
        }),
        (None, None, None) => None,
        _ => return whole(),
    };
    (full[..start].to_string(), serial, location)
}

// ---------------------------------------------------------------------------------------------
// Parsing.

/// A JSON value and its path, for errors that name the field.
#[derive(Clone, Copy)]
struct At<'a> {
    v: &'a Value,
    path: &'a str,
}

type R<T> = Result<T, CdbError>;

fn invalid(path: &str, problem: impl Into<String>) -> CdbError {
    CdbError::Invalid {
        path: if path.is_empty() {
            "$".into()
        } else {
            path.into()
        },
        problem: problem.into(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> At<'a> {
    fn err(&self, problem: impl Into<String>) -> CdbError {
        invalid(self.path, problem)
    }

    fn obj(&self) -> R<&'a Map<String, Value>> {
        self.v
            .as_object()
            .ok_or_else(|| self.err(format!("expected an object, found {}", type_name(self.v))))
    }

    /// A present, non-null member, with its path in `buf`.
    fn get(&self, key: &str) -> R<Option<&'a Value>> {
        Ok(self.obj()?.get(key).filter(|v| !v.is_null()))
    }

    fn str(&self) -> R<&'a str> {
        self.v
            .as_str()
            .ok_or_else(|| self.err(format!("expected a string, found {}", type_name(self.v))))
    }

    fn bool(&self) -> R<bool> {
        self.v.as_bool().ok_or_else(|| {
            self.err(format!(
                "expected true or false, found {}",
                type_name(self.v)
            ))
        })
    }

    fn uint(&self, max: u64) -> R<u64> {
        let n = self.v.as_u64().ok_or_else(|| {
            self.err(format!(
                "expected a whole number, found {}",
                match self.v {
                    Value::Number(n) => format!("{n}"),
                    v => type_name(v).to_string(),
                }
            ))
        })?;
        if n > max {
            return Err(self.err(format!("{n} is out of range (0 to {max})")));
        }
        Ok(n)
    }

    fn array(&self) -> R<&'a [Value]> {
        self.v
            .as_array()
            .map(Vec::as_slice)
            .ok_or_else(|| self.err(format!("expected an array, found {}", type_name(self.v))))
    }

    /// Exactly `digits` hex digits.
    fn hex(&self, digits: usize) -> R<u32> {
        let s = self.str()?;
        if let Some((i, c)) = s.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(self.err(format!(
                "'{}' at position {} is not a hex digit (expected {digits} hex digits)",
                c.escape_default(),
                i + 1
            )));
        }
        if s.len() != digits {
            return Err(self.err(format!("expected {digits} hex digits, got {}", s.len())));
        }
        u32::from_str_radix(s, 16).map_err(|e| self.err(e.to_string()))
    }

    fn hex16(&self) -> R<u16> {
        // Cannot truncate: four hex digits.
        self.hex(4).map(|v| v as u16)
    }

    fn uuid(&self) -> R<DeviceUuid> {
        let s = self.str()?;
        s.parse::<DeviceUuid>().map_err(|e| self.err(e.reason))
    }

    fn key<K>(&self, parse: fn(&str) -> mesh_crypto::Result<K>) -> R<K> {
        let s = self.str()?;
        parse(s).map_err(|e| match e {
            mesh_crypto::CryptoError::InvalidHex { reason, .. } => self.err(reason),
            other => self.err(other.to_string()),
        })
    }
}

/// Runs `f` on a member that must be present.
fn req<'a, T>(at: At<'a>, key: &str, f: impl FnOnce(At<'_>) -> R<T>) -> R<T> {
    let path = join(at.path, key);
    match at.get(key)? {
        Some(v) => f(At { v, path: &path }),
        None => Err(invalid(&path, "missing")),
    }
}

/// Runs `f` on a member that may be absent or null.
fn opt<'a, T>(at: At<'a>, key: &str, f: impl FnOnce(At<'_>) -> R<T>) -> R<Option<T>> {
    let path = join(at.path, key);
    match at.get(key)? {
        Some(v) => f(At { v, path: &path }).map(Some),
        None => Ok(None),
    }
}

/// Runs `f` on every item of an array member (absent means empty).
fn each<'a, T>(at: At<'a>, key: &str, mut f: impl FnMut(At<'_>) -> R<T>) -> R<Vec<T>> {
    let path = join(at.path, key);
    let Some(v) = at.get(key)? else {
        return Ok(Vec::new());
    };
    let arr = At { v, path: &path }.array()?;
    let mut out = Vec::with_capacity(arr.len());
    for (i, v) in arr.iter().enumerate() {
        let p = format!("{path}[{i}]");
        out.push(f(At { v, path: &p })?);
    }
    Ok(out)
}

fn security(at: At<'_>) -> R<Security> {
    match at.str()? {
        "secure" | "high" => Ok(Security::Secure),
        "insecure" | "low" => Ok(Security::Insecure),
        other => Err(at.err(format!(
            "'{other}' is not a security level (expected \"secure\" or \"insecure\")"
        ))),
    }
}

/// A unicast, group or virtual address as canonical upper-case hex (4 or 32 digits).
fn any_address(at: At<'_>) -> R<String> {
    let s = at.str()?;
    if s.len() == 32 || s.len() == 36 {
        let u = at.uuid()?;
        return Ok(encode(&u.0).to_uppercase());
    }
    at.hex16().map(|a| format!("{a:04X}"))
}

fn key_index(at: At<'_>) -> R<u16> {
    // Cannot truncate: at most 4095.
    at.uint(4095).map(|v| v as u16)
}

fn range(at: At<'_>, low: &str, high: &str, min: u16, max: u16) -> R<Range16> {
    let lo = req(at, low, |a| a.hex16())?;
    let hi = req(at, high, |a| a.hex16())?;
    if lo < min || hi > max {
        return Err(at.err(format!("{lo:04X}-{hi:04X} is outside {min:04X}-{max:04X}")));
    }
    if lo > hi {
        return Err(at.err(format!("{low} {lo:04X} is above {high} {hi:04X}")));
    }
    Ok(Range16 { low: lo, high: hi })
}

fn period(at: At<'_>) -> R<(u8, u32)> {
    if at.v.is_number() {
        // CDB 1.0.0 (BlueZ): the period in milliseconds.
        let ms = at.uint(u64::from(u32::MAX))?;
        if ms == 0 {
            return Ok((0, 100));
        }
        for res in [100u64, 1000, 10_000, 600_000] {
            if ms % res == 0 && ms / res <= 63 {
                // Cannot truncate: at most 63.
                return Ok(((ms / res) as u8, res as u32));
            }
        }
        return Err(at.err(format!(
            "{ms} ms is not a publish period (steps 0-63 of 100 ms, 1 s, 10 s or 10 min)"
        )));
    }
    // Cannot truncate: at most 63.
    let steps = req(at, "numberOfSteps", |a| a.uint(63))? as u8;
    let res = req(at, "resolution", |a| {
        let r = a.uint(600_000)?;
        if matches!(r, 100 | 1000 | 10_000 | 600_000) {
            Ok(r as u32)
        } else {
            Err(a.err(format!(
                "{r} is not a resolution (100, 1000, 10000 or 600000 ms)"
            )))
        }
    })?;
    Ok((steps, res))
}

fn publication(at: At<'_>) -> R<Publication> {
    let address = req(at, "address", any_address)?;
    let index = req(at, "index", key_index)?;
    // Cannot truncate: bounded by uint().
    let ttl = req(at, "ttl", |a| a.uint(255))? as u8;
    let (period_steps, period_resolution) = opt(at, "period", period)?.unwrap_or((0, 100));
    let credentials = opt(at, "credentials", |a| a.uint(1))?.unwrap_or(0) as u8;
    let (retransmit_count, retransmit_interval) = opt(at, "retransmit", |r| {
        let c = req(r, "count", |a| a.uint(7))? as u8;
        let i = req(r, "interval", |a| {
            let i = a.uint(1600)?;
            if i < 50 || i % 50 != 0 {
                Err(a.err(format!(
                    "{i} ms is not a retransmit interval (50-1600 in steps of 50)"
                )))
            } else {
                Ok(i as u16)
            }
        })?;
        Ok((c, i))
    })?
    .unwrap_or((0, 50));
    Ok(Publication {
        address,
        index,
        ttl,
        period_steps,
        period_resolution,
        credentials,
        retransmit_count,
        retransmit_interval,
    })
}

fn model(at: At<'_>) -> R<CdbModel> {
    let id = req(at, "modelId", |a| {
        let s = a.str()?;
        match s.len() {
            4 => a.hex(4).map(|id| ModelId { vendor: false, id }),
            8 => a.hex(8).map(|id| ModelId { vendor: true, id }),
            n => Err(a.err(format!(
                "expected 4 hex digits (SIG model) or 8 (vendor model), got {n}"
            ))),
        }
    })?;
    let subscribe = each(at, "subscribe", any_address)?.into_iter().collect();
    let publish = opt(at, "publish", publication)?;
    let bind = each(at, "bind", key_index)?.into_iter().collect();
    Ok(CdbModel {
        id,
        subscribe,
        publish,
        bind,
    })
}

fn element(at: At<'_>) -> R<CdbElement> {
    // Cannot truncate: at most 254.
    let index = req(at, "index", |a| a.uint(254))? as u8;
    let name = opt(at, "name", |a| a.str().map(str::to_string))?;
    let location = opt(at, "location", |a| a.hex16())?.unwrap_or(0);
    let models = each(at, "models", model)?;
    let mut seen = BTreeSet::new();
    for (i, m) in models.iter().enumerate() {
        if !seen.insert(m.id) {
            return Err(invalid(
                &format!("{}.models[{i}].modelId", at.path),
                format!("model {} appears twice in this element", m.id.to_hex()),
            ));
        }
    }
    Ok(CdbElement {
        index,
        name,
        location,
        models,
    })
}

fn features(at: At<'_>) -> R<Features> {
    at.obj()?;
    let f = |k: &str| opt(at, k, |a| a.uint(2).map(|v| v as u8));
    Ok(Features {
        relay: f("relay")?,
        proxy: f("proxy")?,
        friend: f("friend")?,
        low_power: f("lowPower")?,
    })
}

fn canonical_object(at: At<'_>) -> R<String> {
    at.obj()?;
    Ok(at.v.to_string())
}

fn key_refs(at: At<'_>, key: &str) -> R<Vec<(u16, bool)>> {
    each(at, key, |k| {
        let i = req(k, "index", key_index)?;
        let u = opt(k, "updated", |a| a.bool())?.unwrap_or(false);
        Ok((i, u))
    })
}

fn node(at: At<'_>) -> R<CdbNode> {
    let uuid = req(at, "UUID", |a| a.uuid())?;
    let address = req(at, "unicastAddress", |a| {
        let v = a.hex16()?;
        if v == 0 || v > 0x7fff {
            Err(a.err(format!("{v:04X} is not a unicast address (0001-7FFF)")))
        } else {
            Ok(v)
        }
    })?;
    let device_key = opt(at, "deviceKey", |a| a.key(DevKey::from_hex))?;
    let mut elements = each(at, "elements", element)?;
    if elements.is_empty() {
        return Err(invalid(
            &join(at.path, "elements"),
            "a node has at least one element",
        ));
    }
    elements.sort_by_key(|e| e.index);
    for (i, e) in elements.iter().enumerate() {
        if usize::from(e.index) != i {
            return Err(invalid(
                &join(at.path, "elements"),
                format!(
                    "element indexes must be 0 to {} without gaps or repeats",
                    elements.len() - 1
                ),
            ));
        }
    }
    let last = u32::from(address) + elements.len() as u32 - 1;
    if last > 0x7fff {
        return Err(invalid(
            &join(at.path, "unicastAddress"),
            format!(
                "{address:04X} with {} elements runs past 7FFF",
                elements.len()
            ),
        ));
    }
    let excluded = match opt(at, "excluded", |a| a.bool())? {
        Some(e) => e,
        None => opt(at, "blacklisted", |a| a.bool())?.unwrap_or(false),
    };
    Ok(CdbNode {
        uuid,
        address,
        device_key,
        security: opt(at, "security", security)?.unwrap_or(Security::Secure),
        net_keys: key_refs(at, "netKeys")?,
        app_keys: key_refs(at, "appKeys")?,
        config_complete: opt(at, "configComplete", |a| a.bool())?.unwrap_or(false),
        name: opt(at, "name", |a| a.str().map(str::to_string))?.unwrap_or_default(),
        cid: opt(at, "cid", |a| a.hex16())?,
        pid: opt(at, "pid", |a| a.hex16())?,
        vid: opt(at, "vid", |a| a.hex16())?,
        crpl: opt(at, "crpl", |a| a.hex16())?,
        features: opt(at, "features", features)?,
        secure_network_beacon: opt(at, "secureNetworkBeacon", |a| a.bool())?,
        default_ttl: opt(at, "defaultTTL", |a| a.uint(255).map(|v| v as u8))?,
        network_transmit: opt(at, "networkTransmit", canonical_object)?,
        relay_retransmit: opt(at, "relayRetransmit", canonical_object)?,
        elements,
        excluded,
        heartbeat_pub: opt(at, "heartbeatPub", canonical_object)?,
        heartbeat_sub: opt(at, "heartbeatSub", canonical_object)?,
    })
}

/// Parses and validates a CDB document.
///
/// Checks beyond the field formats: unique key indexes, every AppKey bound to a known NetKey,
/// every node, model binding and publication referring to known keys, no two nodes with the
/// same UUID or overlapping unicast ranges (address plus element count), no overlapping
/// provisioner ranges, and NetKeys in a key refresh phase carrying their old key.
pub fn parse(json: &str) -> Result<Cdb, CdbError> {
    let mut v: Value = serde_json::from_str(json).map_err(|e| CdbError::Json(e.to_string()))?;
    let cdb = parse_value(&v);
    // The keys' hex strings are wiped before the parsed document is dropped.
    wipe_json(&mut v);
    cdb
}

/// Overwrites every string of a JSON document with zeros (key material in hex), before it is
/// dropped.
pub(crate) fn wipe_json(v: &mut Value) {
    use zeroize::Zeroize;
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(wipe_json),
        Value::Object(o) => o.values_mut().for_each(wipe_json),
        _ => {}
    }
}

fn parse_value(v: &Value) -> Result<Cdb, CdbError> {
    let root = At { v, path: "" };
    root.obj()?;
    if let Some(ver) = opt(root, "version", |a| a.str().map(str::to_string))?
        && !ver.starts_with("1.")
    {
        return Err(invalid(
            "version",
            format!("CDB version {ver} is not supported (1.0.0 and 1.0.1 are)"),
        ));
    }
    let mesh_uuid = req(root, "meshUUID", |a| a.uuid())?;
    let mesh_name = opt(root, "meshName", |a| a.str().map(str::to_string))?.unwrap_or_default();
    let timestamp = opt(root, "timestamp", |a| a.str().map(str::to_string))?.unwrap_or_default();
    let partial = opt(root, "partial", |a| a.bool())?.unwrap_or(false);
    let iv_index = opt(root, "ivIndex", |a| {
        a.uint(u64::from(u32::MAX)).map(|v| v as u32)
    })?;

    let net_keys = each(root, "netKeys", |k| {
        let phase = opt(k, "phase", |a| a.uint(2).map(|v| v as u8))?.unwrap_or(0);
        let old_key = opt(k, "oldKey", |a| a.key(NetKey::from_hex))?;
        let key = opt(k, "key", |a| a.key(NetKey::from_hex))?;
        if phase != 0 && key.is_some() && old_key.is_none() {
            return Err(invalid(
                &join(k.path, "oldKey"),
                format!("missing: a NetKey in key refresh phase {phase} needs its old key"),
            ));
        }
        Ok(CdbNetKey {
            index: req(k, "index", key_index)?,
            name: opt(k, "name", |a| a.str().map(str::to_string))?.unwrap_or_default(),
            key,
            old_key,
            phase,
            min_security: opt(k, "minSecurity", security)?.unwrap_or(Security::Secure),
            timestamp: opt(k, "timestamp", |a| a.str().map(str::to_string))?.unwrap_or_default(),
        })
    })?;
    if net_keys.is_empty() {
        return Err(invalid("netKeys", "a network has at least one NetKey"));
    }
    let mut nk_seen = BTreeSet::new();
    for (i, k) in net_keys.iter().enumerate() {
        if !nk_seen.insert(k.index) {
            return Err(invalid(
                &format!("netKeys[{i}].index"),
                format!("NetKey index {} appears twice", k.index),
            ));
        }
    }

    let app_keys = each(root, "appKeys", |k| {
        let bound = req(k, "boundNetKey", key_index)?;
        if !nk_seen.contains(&bound) {
            return Err(invalid(
                &join(k.path, "boundNetKey"),
                format!("unknown NetKey index {bound} (not in netKeys)"),
            ));
        }
        Ok(CdbAppKey {
            index: req(k, "index", key_index)?,
            name: opt(k, "name", |a| a.str().map(str::to_string))?.unwrap_or_default(),
            bound_net_key: bound,
            key: opt(k, "key", |a| a.key(AppKey::from_hex))?,
            old_key: opt(k, "oldKey", |a| a.key(AppKey::from_hex))?,
        })
    })?;
    let mut ak_seen = BTreeSet::new();
    for (i, k) in app_keys.iter().enumerate() {
        if !ak_seen.insert(k.index) {
            return Err(invalid(
                &format!("appKeys[{i}].index"),
                format!("AppKey index {} appears twice", k.index),
            ));
        }
    }

    let provisioners = each(root, "provisioners", |p| {
        Ok(CdbProvisioner {
            uuid: req(p, "UUID", |a| a.uuid())?,
            name: opt(p, "provisionerName", |a| a.str().map(str::to_string))?.unwrap_or_default(),
            unicast: each(p, "allocatedUnicastRange", |r| {
                range(r, "lowAddress", "highAddress", 0x0001, 0x7fff)
            })?,
            group: each(p, "allocatedGroupRange", |r| {
                range(r, "lowAddress", "highAddress", 0xc000, 0xfeff)
            })?,
            scene: each(p, "allocatedSceneRange", |r| {
                range(r, "firstScene", "lastScene", 0x0001, 0xffff)
            })?,
        })
    })?;
    let mut uuids = BTreeMap::new();
    for (i, p) in provisioners.iter().enumerate() {
        if let Some(j) = uuids.insert(p.uuid, i) {
            return Err(invalid(
                &format!("provisioners[{i}].UUID"),
                format!("the same UUID as provisioners[{j}]"),
            ));
        }
    }
    for (kind, field, get) in [
        (
            "unicast",
            "allocatedUnicastRange",
            (|p| &p.unicast) as fn(&CdbProvisioner) -> &Vec<Range16>,
        ),
        ("group", "allocatedGroupRange", |p| &p.group),
        ("scene", "allocatedSceneRange", |p| &p.scene),
    ] {
        let mut all: Vec<(Range16, String)> = Vec::new();
        for (i, p) in provisioners.iter().enumerate() {
            for (j, r) in get(p).iter().enumerate() {
                let path = format!("provisioners[{i}].{field}[{j}]");
                if let Some((o, opath)) =
                    all.iter().find(|(o, _)| o.low <= r.high && r.low <= o.high)
                {
                    return Err(invalid(
                        &path,
                        format!(
                            "{kind} range {:04X}-{:04X} overlaps {opath} ({:04X}-{:04X})",
                            r.low, r.high, o.low, o.high
                        ),
                    ));
                }
                all.push((*r, path));
            }
        }
    }

    let nodes = each(root, "nodes", node)?;
    let mut node_uuids = BTreeMap::new();
    let mut spans: Vec<(u16, u16, usize)> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        if let Some(j) = node_uuids.insert(n.uuid, i) {
            return Err(invalid(
                &format!("nodes[{i}].UUID"),
                format!("{} is also the UUID of nodes[{j}]", n.uuid),
            ));
        }
        let last = n.address + (n.elements.len() as u16 - 1);
        if let Some((a, b, j)) = spans.iter().find(|(a, b, _)| *a <= last && n.address <= *b) {
            return Err(invalid(
                &format!("nodes[{i}].unicastAddress"),
                format!(
                    "addresses {:04X}-{last:04X} overlap nodes[{j}] ({a:04X}-{b:04X}): an address is used twice",
                    n.address
                ),
            ));
        }
        spans.push((n.address, last, i));
        for (j, (k, _)) in n.net_keys.iter().enumerate() {
            if !nk_seen.contains(k) {
                return Err(invalid(
                    &format!("nodes[{i}].netKeys[{j}].index"),
                    format!("unknown NetKey index {k} (not in netKeys)"),
                ));
            }
        }
        for (j, (k, _)) in n.app_keys.iter().enumerate() {
            if !ak_seen.contains(k) {
                return Err(invalid(
                    &format!("nodes[{i}].appKeys[{j}].index"),
                    format!("unknown AppKey index {k} (not in appKeys)"),
                ));
            }
        }
        for (e, el) in n.elements.iter().enumerate() {
            for (m, model) in el.models.iter().enumerate() {
                let mpath = format!("nodes[{i}].elements[{e}].models[{m}]");
                if let Some(k) = model.bind.iter().find(|k| !ak_seen.contains(k)) {
                    return Err(invalid(
                        &format!("{mpath}.bind"),
                        format!("unknown AppKey index {k} (not in appKeys)"),
                    ));
                }
                if let Some(p) = &model.publish
                    && !ak_seen.contains(&p.index)
                {
                    return Err(invalid(
                        &format!("{mpath}.publish.index"),
                        format!("unknown AppKey index {} (not in appKeys)", p.index),
                    ));
                }
            }
        }
    }

    let groups = each(root, "groups", |g| {
        let address = req(g, "address", any_address)?;
        if address.len() == 4 {
            let a = u16::from_str_radix(&address, 16).unwrap_or(0);
            if !(0xc000..=0xfeff).contains(&a) {
                return Err(invalid(
                    &join(g.path, "address"),
                    format!("{address} is not a group address (C000-FEFF) or a virtual label"),
                ));
            }
        }
        Ok(CdbGroup {
            name: opt(g, "name", |a| a.str().map(str::to_string))?.unwrap_or_default(),
            address,
            parent: opt(g, "parentAddress", any_address)?.unwrap_or_else(|| "0000".into()),
        })
    })?;
    let mut gseen = BTreeSet::new();
    for (i, g) in groups.iter().enumerate() {
        if !gseen.insert(g.address.clone()) {
            return Err(invalid(
                &format!("groups[{i}].address"),
                format!("group {} appears twice", g.address),
            ));
        }
    }
    let scenes = each(root, "scenes", |s| {
        let number = req(s, "number", |a| {
            let n = if a.v.is_number() {
                a.uint(0xffff)? as u16
            } else {
                a.hex16()?
            };
            if n == 0 {
                Err(a.err("scene number 0000 is prohibited"))
            } else {
                Ok(n)
            }
        })?;
        Ok(CdbScene {
            name: opt(s, "name", |a| a.str().map(str::to_string))?.unwrap_or_default(),
            number,
            addresses: each(s, "addresses", |a| a.hex16())?.into_iter().collect(),
        })
    })?;
    let mut sseen = BTreeSet::new();
    for (i, s) in scenes.iter().enumerate() {
        if !sseen.insert(s.number) {
            return Err(invalid(
                &format!("scenes[{i}].number"),
                format!("scene {:04X} appears twice", s.number),
            ));
        }
    }
    let exclusions = each(root, "networkExclusions", |x| {
        Ok(CdbExclusion {
            iv_index: req(x, "ivIndex", |a| {
                a.uint(u64::from(u32::MAX)).map(|v| v as u32)
            })?,
            addresses: each(x, "addresses", |a| a.hex16())?.into_iter().collect(),
        })
    })?;

    Ok(Cdb {
        mesh_uuid,
        mesh_name,
        timestamp,
        partial,
        iv_index,
        net_keys,
        app_keys,
        provisioners,
        nodes,
        groups,
        scenes,
        exclusions,
    })
}

// ---------------------------------------------------------------------------------------------
// Writing.

fn uuid_upper(u: &DeviceUuid) -> String {
    u.to_string().to_uppercase()
}

fn hex_key(k: &[u8; 16]) -> Value {
    Value::String(encode(k).to_uppercase())
}

fn ranges(rs: &[Range16], low: &str, high: &str) -> Value {
    let mut rs = rs.to_vec();
    rs.sort();
    Value::Array(
        rs.iter()
            .map(|r| json!({ low: format!("{:04X}", r.low), high: format!("{:04X}", r.high) }))
            .collect(),
    )
}

fn parsed_object(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

fn node_json(n: &CdbNode) -> Value {
    let mut o = Map::new();
    o.insert("UUID".into(), uuid_upper(&n.uuid).into());
    o.insert("unicastAddress".into(), format!("{:04X}", n.address).into());
    if let Some(k) = &n.device_key {
        o.insert("deviceKey".into(), hex_key(k.expose_secret()));
    }
    o.insert("security".into(), n.security.as_str().into());
    let refs = |v: &[(u16, bool)]| {
        let mut v = v.to_vec();
        v.sort();
        Value::Array(
            v.iter()
                .map(|(i, u)| json!({"index": i, "updated": u}))
                .collect(),
        )
    };
    o.insert("netKeys".into(), refs(&n.net_keys));
    o.insert("appKeys".into(), refs(&n.app_keys));
    o.insert("configComplete".into(), n.config_complete.into());
    o.insert("name".into(), n.name.clone().into());
    for (k, v) in [
        ("cid", n.cid),
        ("pid", n.pid),
        ("vid", n.vid),
        ("crpl", n.crpl),
    ] {
        if let Some(v) = v {
            o.insert(k.into(), format!("{v:04X}").into());
        }
    }
    if let Some(f) = n.features {
        let mut fo = Map::new();
        for (k, v) in [
            ("relay", f.relay),
            ("proxy", f.proxy),
            ("friend", f.friend),
            ("lowPower", f.low_power),
        ] {
            if let Some(v) = v {
                fo.insert(k.into(), v.into());
            }
        }
        o.insert("features".into(), Value::Object(fo));
    }
    if let Some(b) = n.secure_network_beacon {
        o.insert("secureNetworkBeacon".into(), b.into());
    }
    if let Some(t) = n.default_ttl {
        o.insert("defaultTTL".into(), t.into());
    }
    for (k, v) in [
        ("networkTransmit", &n.network_transmit),
        ("relayRetransmit", &n.relay_retransmit),
        ("heartbeatPub", &n.heartbeat_pub),
        ("heartbeatSub", &n.heartbeat_sub),
    ] {
        if let Some(v) = v {
            o.insert(k.into(), parsed_object(v));
        }
    }
    let mut elements = n.elements.clone();
    elements.sort_by_key(|e| e.index);
    o.insert(
        "elements".into(),
        Value::Array(elements.iter().map(element_json).collect()),
    );
    o.insert("excluded".into(), n.excluded.into());
    Value::Object(o)
}

fn element_json(e: &CdbElement) -> Value {
    let mut models = e.models.clone();
    models.sort_by_key(|m| m.id);
    let mut o = Map::new();
    o.insert("index".into(), e.index.into());
    o.insert("location".into(), format!("{:04X}", e.location).into());
    if let Some(n) = &e.name {
        o.insert("name".into(), n.clone().into());
    }
    o.insert(
        "models".into(),
        Value::Array(
            models
                .iter()
                .map(|m| {
                    let mut mo = Map::new();
                    mo.insert("modelId".into(), m.id.to_hex().into());
                    mo.insert(
                        "subscribe".into(),
                        m.subscribe.iter().cloned().map(Value::String).collect(),
                    );
                    mo.insert(
                        "bind".into(),
                        m.bind.iter().copied().map(Value::from).collect(),
                    );
                    if let Some(p) = &m.publish {
                        mo.insert(
                            "publish".into(),
                            json!({
                                "address": p.address,
                                "index": p.index,
                                "ttl": p.ttl,
                                "period": {
                                    "numberOfSteps": p.period_steps,
                                    "resolution": p.period_resolution,
                                },
                                "credentials": p.credentials,
                                "retransmit": {
                                    "count": p.retransmit_count,
                                    "interval": p.retransmit_interval,
                                },
                            }),
                        );
                    }
                    Value::Object(mo)
                })
                .collect(),
        ),
    );
    Value::Object(o)
}

/// The document as CDB 1.0.1 JSON, deterministic (see the module documentation). Keys that are
/// `None` are left out.
pub fn to_json(cdb: &Cdb) -> String {
    let mut net_keys = cdb.net_keys.clone();
    net_keys.sort_by_key(|k| k.index);
    let mut app_keys = cdb.app_keys.clone();
    app_keys.sort_by_key(|k| k.index);
    let mut nodes = cdb.nodes.clone();
    nodes.sort_by_key(|n| n.address);
    let mut groups = cdb.groups.clone();
    groups.sort_by(|a, b| a.address.cmp(&b.address));
    let mut scenes = cdb.scenes.clone();
    scenes.sort_by_key(|s| s.number);
    let mut exclusions = cdb.exclusions.clone();
    exclusions.sort_by_key(|x| x.iv_index);

    let mut doc = json!({
        "$schema": SCHEMA,
        "id": SCHEMA_ID,
        "version": VERSION,
        "meshUUID": uuid_upper(&cdb.mesh_uuid),
        "meshName": cdb.mesh_name,
        "timestamp": cdb.timestamp,
        "partial": cdb.partial,
        "netKeys": net_keys.iter().map(|k| {
            let mut o = Map::new();
            o.insert("name".into(), k.name.clone().into());
            o.insert("index".into(), k.index.into());
            if let Some(key) = &k.key {
                o.insert("key".into(), hex_key(key.expose_secret()));
            }
            if let Some(old) = &k.old_key {
                o.insert("oldKey".into(), hex_key(old.expose_secret()));
            }
            o.insert("phase".into(), k.phase.into());
            o.insert("minSecurity".into(), k.min_security.as_str().into());
            o.insert("timestamp".into(), k.timestamp.clone().into());
            Value::Object(o)
        }).collect::<Vec<_>>(),
        "appKeys": app_keys.iter().map(|k| {
            let mut o = Map::new();
            o.insert("name".into(), k.name.clone().into());
            o.insert("index".into(), k.index.into());
            o.insert("boundNetKey".into(), k.bound_net_key.into());
            if let Some(key) = &k.key {
                o.insert("key".into(), hex_key(key.expose_secret()));
            }
            if let Some(old) = &k.old_key {
                o.insert("oldKey".into(), hex_key(old.expose_secret()));
            }
            Value::Object(o)
        }).collect::<Vec<_>>(),
        "provisioners": cdb.provisioners.iter().map(|p| json!({
            "provisionerName": p.name,
            "UUID": uuid_upper(&p.uuid),
            "allocatedUnicastRange": ranges(&p.unicast, "lowAddress", "highAddress"),
            "allocatedGroupRange": ranges(&p.group, "lowAddress", "highAddress"),
            "allocatedSceneRange": ranges(&p.scene, "firstScene", "lastScene"),
        })).collect::<Vec<_>>(),
        "nodes": nodes.iter().map(node_json).collect::<Vec<_>>(),
        "groups": groups.iter().map(|g| json!({
            "name": g.name, "address": g.address, "parentAddress": g.parent,
        })).collect::<Vec<_>>(),
        "scenes": scenes.iter().map(|s| json!({
            "name": s.name,
            "number": format!("{:04X}", s.number),
            "addresses": s.addresses.iter().map(|a| format!("{a:04X}")).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "networkExclusions": exclusions.iter().map(|x| json!({
            "ivIndex": x.iv_index,
            "addresses": x.addresses.iter().map(|a| format!("{a:04X}")).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    // Serializing a Value cannot fail.
    if let (Some(iv), Some(o)) = (cdb.iv_index, doc.as_object_mut()) {
        o.insert("ivIndex".into(), iv.into());
    }
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    wipe_json(&mut doc);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_serial_and_location() {
        let loc = Location {
            building: "HQ, north".into(),
            floor: "2".into(),
            room: "20%]4=".into(),
        };
        let s = encode_name("Lamp 3", Some("SN-1"), Some(&loc));
        assert_eq!(
            s,
            "Lamp 3 [meshprov serial=SN-1, building=HQ%2C north, floor=2, room=20%25%5D4%3D]"
        );
        assert_eq!(
            decode_name(&s),
            ("Lamp 3".into(), Some("SN-1".into()), Some(loc))
        );
        assert_eq!(encode_name("Plain", None, None), "Plain");
        assert_eq!(decode_name("Odd [meshprov x=1]").0, "Odd [meshprov x=1]");
        assert_eq!(
            decode_name("Lamp [meshprov serial=7]").1.as_deref(),
            Some("7")
        );
    }

    #[test]
    fn period_in_milliseconds_converts() {
        let v = json!(20000);
        assert_eq!(period(At { v: &v, path: "p" }).unwrap(), (20, 1000));
        let v = json!(123);
        assert!(period(At { v: &v, path: "p" }).is_err());
    }
}
