//! `meshprov node composition|add-app-key|bind|reset ADDR …`: one Configuration request to one
//! node of the store, on any radio, with the node's status reply by name.
//!
//! The request goes out under the node's device key from this provisioner's own unicast
//! address ([`Store::provisioner_address`]), with SEQ numbers reserved in the store
//! ([`StoreSeq`]), so that commands run one after another never repeat a SEQ towards a node's
//! replay protection.
//!
//! - `--radio sim:FILE.toml`: every node of the store whose device is in the building file is
//!   put on a fresh simulated air as a provisioned virtual device (a node whose device answered
//!   Node Reset is off the air: it is an unprovisioned device again). The simulated node starts
//!   from its provisioning state, so the AppKeys and bindings the store records for the target
//!   node are replayed first, as hidden requests (AppKey Add, Model App Bind) whose statuses are
//!   checked but not shown: `bind` after `add-app-key` works across separate commands, as on a
//!   real node that remembers.
//! - `--radio meshd-unit:DIR`: bluetooth-meshd's node in real time ([`live::configure`]), each
//!   attempt waiting 8, 12 and 16 s (meshd sends about one packet a second, and a segmented
//!   Composition Data Status takes several).
//! - `--radio bluez[:hciN]` / `btleplug`: through a GATT proxy ([`live::configure_via_proxy`]):
//!   `--via ADDRESS` names the proxy node's Bluetooth address; without it the command listens
//!   up to 10 s for a Mesh Proxy advert of the network ([`live::find_proxy`]: the target's own
//!   Node Identity first, else the first Network ID of the node's subnet) and connects to it.
//!
//! What a Success teaches is recorded in the store: Composition Data (CID, PID, VID, CRPL,
//! unsupported features, elements and models), the AppKey the node holds, the binding; a Node
//! Reset Status marks the node excluded and journals the reset.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::config_host::{ConfigHost, ConfigNode};
use crate::live;
use crate::net::config::{
    CompositionPage0, ConfigClientConfig, ConfigMessage, ConfigStatus, Features, ModelId,
};
use crate::net::proxy::ProxyClientConfig;
use crate::radio::BdAddr;
use crate::radio::unit::UnitRadio;
use crate::sim::building::Building;
use crate::sim::configure::{
    ConfigOptions, ConfigOutcome, ConfigResult, ProvisionedNode, StoreSeq, configure_with,
};
use crate::store::{self, CompositionRecord, Node, NodeRef, NodeState, Store, StoreError};

/// Which Configuration request to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeCommand {
    /// Composition Data Get, page 0 (MshPRT v1.1 §4.3.2.4).
    Composition,
    /// AppKey Add of the store's AppKey with this name (§4.3.2.37).
    AddAppKey {
        /// The AppKey's name in the store.
        app_key: String,
    },
    /// Model App Bind (§4.3.2.46).
    Bind {
        /// The element's unicast address (hex).
        element: String,
        /// The model: 4 hex digits (SIG) or 8 (vendor, Company ID first, `CCCCMMMM`).
        model: String,
        /// The AppKey's name in the store.
        app_key: String,
    },
    /// Node Reset (§4.3.2.53).
    Reset,
}

impl NodeCommand {
    /// The subcommand's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Composition => "composition",
            Self::AddAppKey { .. } => "add-app-key",
            Self::Bind { .. } => "bind",
            Self::Reset => "reset",
        }
    }
}

/// Everything a `meshprov node …` radio command was asked to do.
#[derive(Clone, Debug)]
pub struct NodeArgs {
    /// The node: a unicast address (hex) or its device UUID.
    pub node: String,
    /// The request.
    pub command: NodeCommand,
    /// `sim:FILE.toml`, `meshd-unit:DIR`, `bluez[:hciN]` or `btleplug`.
    pub radio: String,
    /// With `bluez`/`btleplug`: the Bluetooth address of the proxy node to connect to
    /// (otherwise one is found from its advert).
    pub via: Option<String>,
    /// The store file.
    pub store: Option<PathBuf>,
    /// The network whose default store to use.
    pub network: Option<String>,
    /// Seed of the simulated air.
    pub seed: u64,
    /// Advertising loss on the simulated air (overrides the building file).
    pub loss: Option<f64>,
}

/// How the node answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeResult {
    /// Its status says Success (or the reply carries no status: Composition Data, Node Reset).
    Success,
    /// Its status is something else.
    Refused,
    /// No status after every attempt.
    NoAnswer,
}

impl NodeResult {
    /// `success`, `refused` or `no answer` (the JSON `result`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Refused => "refused",
            Self::NoAnswer => "no answer",
        }
    }
}

/// What a node command did: printed as text or as one JSON object.
#[derive(Clone, Debug)]
pub struct NodeReport {
    /// The subcommand (`composition`, `add-app-key`, `bind`, `reset`).
    pub command: &'static str,
    /// How the node answered.
    pub result: NodeResult,
    /// The node's primary address.
    pub node: u16,
    /// The node's name in the store.
    pub name: String,
    /// The request's name (`AppKey Add`).
    pub request: &'static str,
    /// The reply's name (`AppKey Status`), when there was one.
    pub reply: Option<&'static str>,
    /// The status code of the reply, when it carries one.
    pub status: Option<ConfigStatus>,
    /// From the request's first transmission to its status (or to giving up).
    pub elapsed: Duration,
    /// What `elapsed` measures: `simulated air time` or `wall time`.
    pub time_kind: &'static str,
    /// Transmissions of the request.
    pub attempts: usize,
    /// The provisioner's own unicast address the request came from.
    pub from: u16,
    /// The store the outcome was recorded in (after a Success).
    pub stored: Option<PathBuf>,
    /// Detail lines for a terminal (after the heading).
    pub lines: Vec<String>,
    /// The command's own JSON fields (`composition`, `app_key`, `element`, `model`).
    pub extra: Map<String, Value>,
    /// Why the command failed (refusal or silence) and what to try; the line for stderr.
    pub error: Option<String>,
    /// What to do next, printed after a Success.
    pub notes: Vec<String>,
}

/// A command that could not run: exit code and one line for stderr.
#[derive(Debug)]
pub struct NodeFailure {
    /// Process exit code: 2 for a bad argument, an unknown node or AppKey; 1 otherwise.
    pub exit_code: i32,
    /// What went wrong and what to do.
    pub message: String,
}

fn usage(message: impl Into<String>) -> NodeFailure {
    NodeFailure {
        exit_code: crate::exit::USAGE,
        message: message.into(),
    }
}

fn failure(message: impl Into<String>) -> NodeFailure {
    NodeFailure {
        exit_code: crate::exit::FAILURE,
        message: message.into(),
    }
}

impl From<StoreError> for NodeFailure {
    fn from(e: StoreError) -> Self {
        failure(e.to_string())
    }
}

/// Timeouts of each attempt towards bluetooth-meshd: it sends about one packet a second, so a
/// segmented status (Composition Data) takes several seconds to arrive.
pub fn meshd_client() -> ConfigClientConfig {
    ConfigClientConfig {
        timeouts: vec![
            Duration::from_secs(8),
            Duration::from_secs(12),
            Duration::from_secs(16),
        ],
    }
}

/// Parses MODEL_ID: 4 hex digits for a SIG model (`1000`), 8 for a vendor model with the
/// Company ID first (`00590001`: company 0x0059, model 0x0001, as the Mesh CDB writes it), or
/// `CCCC:MMMM`; an optional `0x`.
pub fn parse_model_arg(s: &str) -> Result<ModelId, String> {
    let bad = || {
        format!(
            "invalid MODEL_ID '{s}': give 4 hex digits for a SIG model (1000 is the Generic OnOff Server) or 8 for a vendor model, Company ID first (00590001)"
        )
    };
    let strip = |t: &str| {
        let t = t.trim();
        t.strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t)
            .to_string()
    };
    let hex = |t: &str| -> Result<u32, String> {
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        u32::from_str_radix(t, 16).map_err(|_| bad())
    };
    if let Some((c, m)) = s.split_once(':') {
        let (c, m) = (strip(c), strip(m));
        if c.len() != 4 || m.len() != 4 {
            return Err(bad());
        }
        return Ok(ModelId::Vendor {
            company_id: hex(&c)? as u16,
            model_id: hex(&m)? as u16,
        });
    }
    let t = strip(s);
    match t.len() {
        4 => Ok(ModelId::Sig(hex(&t)? as u16)),
        8 => {
            let v = hex(&t)?;
            Ok(ModelId::Vendor {
                company_id: (v >> 16) as u16,
                model_id: v as u16,
            })
        }
        _ => Err(bad()),
    }
}

/// A model ID as the store writes it (CDB: vendor models as `CID << 16 | model`).
pub fn to_store_model(m: ModelId) -> store::ModelId {
    match m {
        ModelId::Sig(id) => store::ModelId {
            vendor: false,
            id: u32::from(id),
        },
        ModelId::Vendor {
            company_id,
            model_id,
        } => store::ModelId {
            vendor: true,
            id: u32::from(company_id) << 16 | u32::from(model_id),
        },
    }
}

/// A model ID of the store as a Config message carries it.
pub fn from_store_model(m: store::ModelId) -> ModelId {
    if m.vendor {
        ModelId::Vendor {
            company_id: (m.id >> 16) as u16,
            model_id: m.id as u16,
        }
    } else {
        ModelId::Sig(m.id as u16)
    }
}

/// The name of a SIG model (Mesh Protocol 1.1 foundation models, Mesh Model 1.1 models), for
/// the common ones.
pub fn sig_model_name(id: u16) -> Option<&'static str> {
    Some(match id {
        0x0000 => "Configuration Server",
        0x0001 => "Configuration Client",
        0x0002 => "Health Server",
        0x0003 => "Health Client",
        0x0004 => "Remote Provisioning Server",
        0x0005 => "Remote Provisioning Client",
        0x0008 => "Bridge Configuration Server",
        0x0009 => "Bridge Configuration Client",
        0x000a => "Mesh Private Beacon Server",
        0x000b => "Mesh Private Beacon Client",
        0x000c => "On-Demand Private Proxy Server",
        0x000d => "On-Demand Private Proxy Client",
        0x000e => "SAR Configuration Server",
        0x000f => "SAR Configuration Client",
        0x0010 => "Opcodes Aggregator Server",
        0x0011 => "Opcodes Aggregator Client",
        0x0012 => "Large Composition Data Server",
        0x0013 => "Large Composition Data Client",
        0x0014 => "Solicitation PDU RPL Configuration Server",
        0x0015 => "Solicitation PDU RPL Configuration Client",
        0x1000 => "Generic OnOff Server",
        0x1001 => "Generic OnOff Client",
        0x1002 => "Generic Level Server",
        0x1003 => "Generic Level Client",
        0x1004 => "Generic Default Transition Time Server",
        0x1005 => "Generic Default Transition Time Client",
        0x1006 => "Generic Power OnOff Server",
        0x1007 => "Generic Power OnOff Setup Server",
        0x1008 => "Generic Power OnOff Client",
        0x1009 => "Generic Power Level Server",
        0x100a => "Generic Power Level Setup Server",
        0x100b => "Generic Power Level Client",
        0x100c => "Generic Battery Server",
        0x100d => "Generic Battery Client",
        0x100e => "Generic Location Server",
        0x100f => "Generic Location Setup Server",
        0x1010 => "Generic Location Client",
        0x1011 => "Generic Admin Property Server",
        0x1012 => "Generic Manufacturer Property Server",
        0x1013 => "Generic User Property Server",
        0x1014 => "Generic Client Property Server",
        0x1015 => "Generic Property Client",
        0x1100 => "Sensor Server",
        0x1101 => "Sensor Setup Server",
        0x1102 => "Sensor Client",
        0x1200 => "Time Server",
        0x1201 => "Time Setup Server",
        0x1202 => "Time Client",
        0x1203 => "Scene Server",
        0x1204 => "Scene Setup Server",
        0x1205 => "Scene Client",
        0x1206 => "Scheduler Server",
        0x1207 => "Scheduler Setup Server",
        0x1208 => "Scheduler Client",
        0x1300 => "Light Lightness Server",
        0x1301 => "Light Lightness Setup Server",
        0x1302 => "Light Lightness Client",
        0x1303 => "Light CTL Server",
        0x1304 => "Light CTL Setup Server",
        0x1305 => "Light CTL Client",
        0x1306 => "Light CTL Temperature Server",
        0x1307 => "Light HSL Server",
        0x1308 => "Light HSL Setup Server",
        0x1309 => "Light HSL Client",
        0x130a => "Light HSL Hue Server",
        0x130b => "Light HSL Saturation Server",
        0x130c => "Light xyL Server",
        0x130d => "Light xyL Setup Server",
        0x130e => "Light xyL Client",
        0x130f => "Light LC Server",
        0x1310 => "Light LC Setup Server",
        0x1311 => "Light LC Client",
        0x1400 => "BLOB Transfer Server",
        0x1401 => "BLOB Transfer Client",
        0x1402 => "Firmware Update Server",
        0x1403 => "Firmware Update Client",
        0x1404 => "Firmware Distribution Server",
        0x1405 => "Firmware Distribution Client",
        _ => return None,
    })
}

/// A few Bluetooth SIG company identifiers (Assigned Numbers) common in mesh products.
pub fn company_name(cid: u16) -> Option<&'static str> {
    Some(match cid {
        0x0002 => "Intel Corp.",
        0x0006 => "Microsoft",
        0x000a => "Qualcomm Technologies International, Ltd. (QTIL)",
        0x000d => "Texas Instruments Inc.",
        0x000f => "Broadcom Corporation",
        0x0030 => "STMicroelectronics",
        0x004c => "Apple, Inc.",
        0x0059 => "Nordic Semiconductor ASA",
        0x005d => "Realtek Semiconductor Corporation",
        0x0075 => "Samsung Electronics Co. Ltd.",
        0x00e0 => "Google",
        0x0131 => "Cypress Semiconductor",
        0x0211 => "Telink Semiconductor Co. Ltd",
        0x02e5 => "Espressif Incorporated",
        0x02ff => "Silicon Laboratories",
        0x05f1 => "The Linux Foundation",
        _ => return None,
    })
}

/// `0x1000 Generic OnOff Server`, `0x0059:0x0001 vendor model of Nordic Semiconductor ASA`.
pub fn model_text(m: ModelId) -> String {
    match m {
        ModelId::Sig(id) => match sig_model_name(id) {
            Some(n) => format!("0x{id:04x} {n}"),
            None => format!("0x{id:04x} SIG model"),
        },
        ModelId::Vendor {
            company_id,
            model_id,
        } => match company_name(company_id) {
            Some(c) => format!("0x{company_id:04x}:0x{model_id:04x} vendor model of {c}"),
            None => format!("0x{company_id:04x}:0x{model_id:04x} vendor model"),
        },
    }
}

fn model_json(m: ModelId) -> Value {
    match m {
        ModelId::Sig(id) => json!({
            "id": format!("{id:04X}"), "vendor": false, "name": sig_model_name(id),
        }),
        ModelId::Vendor {
            company_id,
            model_id,
        } => json!({
            "id": format!("{company_id:04X}{model_id:04X}"), "vendor": true,
            "company_id": format!("{company_id:04X}"), "company": company_name(company_id),
        }),
    }
}

/// Name of a status code (`Invalid AppKey Index`, `RFU (0x42)`).
pub fn status_name(s: ConfigStatus) -> String {
    s.name()
        .map_or_else(|| format!("RFU (0x{:02x})", s.0), str::to_string)
}

fn feature_names(f: Features) -> Vec<&'static str> {
    [
        (Features::RELAY, "relay"),
        (Features::PROXY, "proxy"),
        (Features::FRIEND, "friend"),
        (Features::LOW_POWER, "low power"),
    ]
    .iter()
    .filter(|(b, _)| f.has(*b))
    .map(|(_, n)| *n)
    .collect()
}

fn request_name(m: &ConfigMessage) -> &'static str {
    match m {
        ConfigMessage::CompositionDataGet { .. } => "Composition Data Get",
        ConfigMessage::AppKeyAdd { .. } => "AppKey Add",
        ConfigMessage::ModelAppBind { .. } => "Model App Bind",
        ConfigMessage::NodeReset => "Node Reset",
        _ => "Configuration request",
    }
}

fn reply_name(m: &ConfigMessage) -> &'static str {
    match m {
        ConfigMessage::CompositionDataStatus { .. } => "Composition Data Status",
        ConfigMessage::AppKeyStatus { .. } => "AppKey Status",
        ConfigMessage::ModelAppStatus { .. } => "Model App Status",
        ConfigMessage::NodeResetStatus => "Node Reset Status",
        _ => "Configuration status",
    }
}

/// The request and what the command knows about it.
struct Plan {
    message: ConfigMessage,
    /// AppKey (index, name, bound NetKey) of add-app-key and bind.
    app_key: Option<(u16, String, u16)>,
    /// Element index and model of bind.
    binding: Option<(u8, ModelId)>,
}

/// Runs one node command. `Ok` when the node was reached or given up on (a refusal or silence
/// is a report with [`NodeReport::error`] and exit code 1); `Err` when the command could not
/// run (exit code 2 for a bad argument, an unknown node or AppKey).
pub fn run(args: &NodeArgs) -> Result<NodeReport, NodeFailure> {
    enum Radio<'a> {
        Sim(&'a Path),
        Meshd(&'a Path),
        Bluez(Option<&'a str>),
        Btleplug,
    }
    let radio = if let Some(f) = args.radio.strip_prefix("sim:") {
        Radio::Sim(Path::new(f))
    } else if let Some(d) = args.radio.strip_prefix("meshd-unit:") {
        Radio::Meshd(Path::new(d))
    } else if args.radio == "bluez" {
        Radio::Bluez(None)
    } else if let Some(a) = args.radio.strip_prefix("bluez:") {
        Radio::Bluez(Some(a).filter(|a| !a.is_empty()))
    } else if args.radio == "btleplug" {
        Radio::Btleplug
    } else {
        return Err(usage(format!(
            "unknown radio '{}'; use --radio bluez[:hciN] (BlueZ, through a GATT proxy; the default), btleplug, sim:FILE.toml (the simulated building) or meshd-unit:DIR (bluetooth-meshd's unit socket)",
            args.radio
        )));
    };
    let via = match (&args.via, &radio) {
        (None, _) => None,
        (Some(v), Radio::Bluez(_) | Radio::Btleplug) => Some(parse_bd_addr(v).map_err(usage)?),
        (Some(_), _) => {
            return Err(usage(format!(
                "--via names a GATT proxy for the bluez and btleplug radios; radio '{}' needs none",
                args.radio
            )));
        }
    };
    let path = store::resolve_path(args.store.as_deref(), args.network.as_deref())
        .map_err(|e| usage(e.to_string()))?;
    if !path.exists() {
        return Err(usage(format!(
            "no store at {}: node commands need the network's store (give --store FILE or --network NAME)",
            path.display()
        )));
    }
    let mut s = Store::open(&path)?;
    // An encrypted store: its passphrase before the node is asked anything.
    crate::tools::passphrase::unlock(&mut s, crate::tools::passphrase::Prompt::Terminal).map_err(
        |f| NodeFailure {
            exit_code: f.exit_code,
            message: f.message,
        },
    )?;
    let r: NodeRef = args.node.parse().map_err(usage)?;
    let node = s.node(&r).map_err(|e| match e {
        StoreError::NoSuchNode(_) => usage(format!(
            "no node {} in {}: `meshprov node list` shows the nodes",
            args.node.trim(),
            path.display()
        )),
        e => e.into(),
    })?;
    let plan = plan(&s, &node, &args.command)?;
    let from = s.provisioner_address()?;
    let net_key_index = node.net_keys.first().copied().unwrap_or(0);

    let (result, time_kind) = match radio {
        Radio::Sim(file) => (
            on_sim(&mut s, &node, file, &plan.message, from, args)?,
            "simulated air time",
        ),
        Radio::Meshd(dir) => (
            on_meshd(&mut s, &node, dir, &plan.message, from, net_key_index)?,
            "wall time",
        ),
        Radio::Bluez(adapter) => {
            let open = || async move {
                #[cfg(target_os = "linux")]
                {
                    crate::radio::bluez::BluezRadio::open(adapter).await
                }
                #[cfg(not(target_os = "linux"))]
                {
                    let _ = adapter;
                    Err::<crate::radio::unit::UnitRadio, _>(crate::radio::RadioError::Unavailable(
                        "BlueZ is Linux only; use --radio btleplug".into(),
                    ))
                }
            };
            (
                on_proxy(&mut s, &node, open, via, &plan.message, from, net_key_index)?,
                "wall time",
            )
        }
        Radio::Btleplug => {
            #[cfg(feature = "btleplug")]
            {
                (
                    on_proxy(
                        &mut s,
                        &node,
                        crate::radio::btleplug::BtleplugRadio::open,
                        via,
                        &plan.message,
                        from,
                        net_key_index,
                    )?,
                    "wall time",
                )
            }
            #[cfg(not(feature = "btleplug"))]
            {
                return Err(usage(
                    "this meshprov was built without the btleplug radio: rebuild with `cargo build --release --features btleplug`, or use --radio bluez",
                ));
            }
        }
    };
    conclude(&mut s, &node, args, plan, result, from, time_kind)
}

/// Checks the arguments against the store and builds the request.
fn plan(s: &Store, node: &Node, command: &NodeCommand) -> Result<Plan, NodeFailure> {
    let excluded = || {
        usage(format!(
            "node {:04X} is excluded from the network: it must not get keys (`meshprov node show {:04X}`)",
            node.address, node.address
        ))
    };
    let app_key = |name: &str| -> Result<(u16, String, u16), NodeFailure> {
        let keys = s.network()?.app_keys;
        let found: Vec<_> = keys.iter().filter(|k| k.name == name).collect();
        match found.as_slice() {
            [k] => Ok((k.index, k.name.clone(), k.bound_net_key)),
            [] => Err(usage(format!(
                "no AppKey named '{name}' in the store{}: create it with `meshprov net add-app-key {name}`",
                if keys.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (it has {})",
                        keys.iter()
                            .map(|k| format!("'{}'", k.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ))),
            several => Err(usage(format!(
                "{} AppKeys are named '{name}' (indexes {}): rename one in the store",
                several.len(),
                several
                    .iter()
                    .map(|k| k.index.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    };
    Ok(match command {
        NodeCommand::Composition => Plan {
            message: ConfigMessage::CompositionDataGet { page: 0 },
            app_key: None,
            binding: None,
        },
        NodeCommand::AddAppKey { app_key: name } => {
            if node.state == NodeState::Excluded {
                return Err(excluded());
            }
            let (index, name, bound) = app_key(name)?;
            Plan {
                message: ConfigMessage::AppKeyAdd {
                    net_key_index: bound,
                    app_key_index: index,
                    key: s.app_key(index)?,
                },
                app_key: Some((index, name, bound)),
                binding: None,
            }
        }
        NodeCommand::Bind {
            element,
            model,
            app_key: name,
        } => {
            if node.state == NodeState::Excluded {
                return Err(excluded());
            }
            let address = match element.parse::<NodeRef>().map_err(usage)? {
                NodeRef::Address(a) => a,
                NodeRef::Uuid(_) => {
                    return Err(usage(format!(
                        "ELEMENT_ADDR '{element}' is not a unicast address"
                    )));
                }
            };
            let last = u32::from(node.address) + u32::from(node.elements) - 1;
            if address < node.address || u32::from(address) > last {
                return Err(usage(format!(
                    "{address:04X} is not an element of node {:04X}: its elements are {:04X}-{last:04X}",
                    node.address, node.address
                )));
            }
            let model = parse_model_arg(model).map_err(usage)?;
            let (index, name, bound) = app_key(name)?;
            Plan {
                message: ConfigMessage::ModelAppBind {
                    element: address,
                    app_key_index: index,
                    model,
                },
                app_key: Some((index, name, bound)),
                // Cannot truncate: address - node.address < elements <= 255.
                binding: Some(((address - node.address) as u8, model)),
            }
        }
        NodeCommand::Reset => Plan {
            message: ConfigMessage::NodeReset,
            app_key: None,
            binding: None,
        },
    })
}

/// The request on the simulated building: the store's nodes on the air, the target's recorded
/// state replayed first.
fn on_sim(
    s: &mut Store,
    node: &Node,
    file: &Path,
    message: &ConfigMessage,
    from: u16,
    args: &NodeArgs,
) -> Result<ConfigResult, NodeFailure> {
    if let Some(l) = args.loss.filter(|l| !(0.0..=0.9).contains(l)) {
        return Err(usage(format!(
            "invalid --loss {l}: give a probability from 0.0 to 0.9"
        )));
    }
    let building = Building::load(file).map_err(|e| usage(e.to_string()))?;
    if building.device(&node.uuid).is_none() {
        return Err(usage(format!(
            "the device of node {:04X} ({}) is not in {}: give the building file it was provisioned from",
            node.address,
            node.uuid,
            file.display()
        )));
    }
    let target_reset = s.node_was_reset(&node.uuid)?;
    let mut on_air = Vec::new();
    for n in s.nodes()? {
        // Devices the building does not have are off this air; a reset device is no node.
        if building.device(&n.uuid).is_none()
            || (n.uuid != node.uuid && s.node_was_reset(&n.uuid)?)
        {
            continue;
        }
        on_air.push(ProvisionedNode::from_store(s, &NodeRef::Uuid(n.uuid))?);
    }
    let mut requests = Vec::new();
    if !target_reset {
        let keys = s.network()?.app_keys;
        for index in &node.app_keys {
            let bound = keys
                .iter()
                .find(|k| k.index == *index)
                .map_or(0, |k| k.bound_net_key);
            requests.push(ConfigMessage::AppKeyAdd {
                net_key_index: bound,
                app_key_index: *index,
                key: s.app_key(*index)?,
            });
        }
        for (element, model, app_key) in s.node_bindings(&node.uuid)? {
            requests.push(ConfigMessage::ModelAppBind {
                element: node.address + u16::from(element),
                app_key_index: app_key,
                model: from_store_model(model),
            });
        }
    }
    let hidden = requests.len();
    requests.push(message.clone());
    let opts = ConfigOptions {
        seed: args.seed,
        loss: args.loss,
        address: from,
        silent: if target_reset {
            vec![node.address]
        } else {
            Vec::new()
        },
        ..ConfigOptions::default()
    };
    let report = configure_with(
        &building,
        &on_air,
        &[(node.address, requests)],
        &opts,
        StoreSeq(s),
    )
    .map_err(|e| failure(format!("the simulation could not start: {e}")))?;
    for r in &report.results[..hidden] {
        if r.status().and_then(ConfigMessage::status) != Some(ConfigStatus::SUCCESS) {
            return Err(failure(format!(
                "the simulated node {:04X} could not be brought to the state the store records ({} {}): try again with another --seed",
                node.address,
                request_name(&r.request),
                match r.status() {
                    Some(m) => m
                        .status()
                        .map_or_else(|| "unexpected reply".into(), status_name),
                    None => "got no answer".into(),
                }
            )));
        }
    }
    report
        .results
        .into_iter()
        .nth(hidden)
        .ok_or_else(|| failure("the simulation lost the request"))
}

/// `C0:4D:50:00:00:01` (or without colons) as a [`BdAddr`].
fn parse_bd_addr(text: &str) -> Result<BdAddr, String> {
    let hex: String = text.chars().filter(|c| *c != ':' && *c != '-').collect();
    let bytes = ::hex::decode(&hex).ok().filter(|b| b.len() == 6);
    match bytes {
        Some(b) => {
            let mut a = [0u8; 6];
            a.copy_from_slice(&b);
            Ok(BdAddr(a))
        }
        None => Err(format!(
            "invalid --via '{text}': give the proxy node's Bluetooth address, as `bluetoothctl devices` prints it (C0:4D:50:00:00:01)"
        )),
    }
}

/// How long to listen for a proxy node's advert when `--via` is not given.
const FIND_PROXY: Duration = Duration::from_secs(10);

/// The request through a GATT proxy on a real radio, in real time: the proxy node is `via` or
/// found from its advert; each attempt waits as for a node that answers at once over GATT
/// (the default Config client time-outs).
fn on_proxy<R, F, Fut>(
    s: &mut Store,
    node: &Node,
    open: F,
    via: Option<BdAddr>,
    message: &ConfigMessage,
    from: u16,
    net_key_index: u16,
) -> Result<ConfigResult, NodeFailure>
where
    R: crate::radio::Radio,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<R, crate::radio::RadioError>>,
{
    let net_key = s.net_key(net_key_index)?;
    let iv_index = s.network()?.iv_index;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failure(format!("cannot start the runtime: {e}")))?;
    let client = ConfigClientConfig::default();
    let total: Duration = client.timeouts.iter().sum();
    let mut host = ConfigHost::new(
        from,
        iv_index,
        &[(net_key_index, net_key.clone())],
        &[ConfigNode {
            address: node.address,
            device_key: node.device_key.clone(),
            net_key_index,
        }],
        client,
        StoreSeq(s),
    );
    let target = node.address;
    let results = rt
        .block_on(async {
            let mut radio = open().await?;
            let address = match via {
                Some(a) => a,
                None => match live::find_proxy(&mut radio, &net_key, Some(target), FIND_PROXY)
                    .await?
                {
                    Some((a, _)) => a,
                    None => {
                        return Err(live::LiveError::Proxy(format!(
                            "no proxy node of this network was heard in {} s: move closer to a node with the GATT Proxy feature, check that it is powered, or name one with --via ADDRESS",
                            FIND_PROXY.as_secs()
                        )));
                    }
                },
            };
            let via = live::ProxyVia {
                address,
                client: ProxyClientConfig {
                    address: from,
                    net_key_index,
                    ..ProxyClientConfig::default()
                },
            };
            live::configure_via_proxy(
                &mut radio,
                &mut host,
                &via,
                &[(target, message.clone())],
                total + Duration::from_secs(4),
                &mut |_| {},
            )
            .await
        })
        .map_err(|e| failure(e.to_string()))?;
    results
        .into_iter()
        .next()
        .ok_or_else(|| failure("the radio lost the request"))
}

/// The request to bluetooth-meshd's node, in real time.
fn on_meshd(
    s: &mut Store,
    node: &Node,
    dir: &Path,
    message: &ConfigMessage,
    from: u16,
    net_key_index: u16,
) -> Result<ConfigResult, NodeFailure> {
    let net_key = s.net_key(net_key_index)?;
    let iv_index = s.network()?.iv_index;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failure(format!("cannot start the runtime: {e}")))?;
    let mut host = ConfigHost::new(
        from,
        iv_index,
        &[(net_key_index, net_key)],
        &[ConfigNode {
            address: node.address,
            device_key: node.device_key.clone(),
            net_key_index,
        }],
        meshd_client(),
        StoreSeq(s),
    );
    let total: Duration = meshd_client().timeouts.iter().sum();
    let results = rt
        .block_on(async {
            let mut radio = UnitRadio::open(dir)?;
            live::configure(
                &mut radio,
                &mut host,
                &[(node.address, message.clone())],
                total + Duration::from_secs(4),
                &mut |_| {},
            )
            .await
        })
        .map_err(|e| failure(e.to_string()))?;
    results
        .into_iter()
        .next()
        .ok_or_else(|| failure("the radio lost the request"))
}

/// Interprets the outcome, records what a Success teaches, and writes the report.
fn conclude(
    s: &mut Store,
    node: &Node,
    args: &NodeArgs,
    plan: Plan,
    r: ConfigResult,
    from: u16,
    time_kind: &'static str,
) -> Result<NodeReport, NodeFailure> {
    let addr = node.address;
    let mut report = NodeReport {
        command: args.command.name(),
        result: NodeResult::NoAnswer,
        node: addr,
        name: node.name.clone(),
        request: request_name(&plan.message),
        reply: None,
        status: None,
        elapsed: r.elapsed,
        time_kind,
        attempts: r.attempts,
        from,
        stored: None,
        lines: Vec::new(),
        extra: Map::new(),
        error: None,
        notes: Vec::new(),
    };
    if let Some((index, name, bound)) = &plan.app_key {
        report.lines.push(format!(
            "AppKey      {index} '{name}' (bound to NetKey {bound})"
        ));
        report.extra.insert(
            "app_key".into(),
            json!({"index": index, "name": name, "net_key_index": bound}),
        );
    }
    if let Some((element, model)) = plan.binding {
        let element_address = addr + u16::from(element);
        report.lines.push(format!(
            "element     0x{element_address:04x} (element {element})"
        ));
        report
            .lines
            .push(format!("model       {}", model_text(model)));
        report
            .extra
            .insert("element".into(), format!("0x{element_address:04x}").into());
        report.extra.insert("model".into(), model_json(model));
    }

    let reply = match r.outcome {
        ConfigOutcome::TimedOut => {
            let mut msg = format!(
                "node {addr:04X} did not answer {} ({} attempt{} over {:.1} s): move closer to it, check that it is powered, and that it really is node {addr:04X} (`meshprov node show {addr:04X}`)",
                report.request,
                r.attempts,
                if r.attempts == 1 { "" } else { "s" },
                r.elapsed.as_secs_f64()
            );
            let was_reset = s.node_was_reset(&node.uuid)?;
            if was_reset {
                msg += "; the store records that it answered a Node Reset: it is an unprovisioned device now";
            } else if node.state == NodeState::Unconfirmed {
                msg += "; its provisioning was never confirmed: the device may not have its keys";
            }
            if plan.message == ConfigMessage::NodeReset && node.state != NodeState::Excluded {
                msg += &format!(
                    "; if it did reset (it beacons as an unprovisioned device again), exclude it with `meshprov node exclude {addr:04X}` and run a key refresh"
                );
            }
            report.error = Some(msg);
            return Ok(report);
        }
        ConfigOutcome::Status(m) => m,
    };
    report.reply = Some(reply_name(&reply));
    report.status = reply.status();
    let ok = report.status.is_none_or(|c| c == ConfigStatus::SUCCESS);
    report.result = if ok {
        NodeResult::Success
    } else {
        NodeResult::Refused
    };
    if !ok {
        let code = report.status.unwrap_or(ConfigStatus::UNSPECIFIED_ERROR);
        report.error = Some(format!(
            "node {addr:04X} refused {}: {}{}",
            report.request,
            code,
            refusal_hint(node, &plan, code)
        ));
        return Ok(report);
    }

    let path = s.path().to_path_buf();
    match (&reply, &plan) {
        (ConfigMessage::CompositionDataStatus { page, data }, _) => {
            if *page != 0 {
                report.result = NodeResult::Refused;
                report.error = Some(format!(
                    "node {addr:04X} answered Composition Data page {page} instead of page 0"
                ));
                return Ok(report);
            }
            let c = match CompositionPage0::parse(data) {
                Ok(c) => c,
                Err(e) => {
                    report.result = NodeResult::Refused;
                    report.error = Some(format!(
                        "node {addr:04X} sent Composition Data that cannot be decoded: {e}"
                    ));
                    return Ok(report);
                }
            };
            let recorded = s.record_composition(&node.uuid, &composition_record(&c))?;
            report.stored = Some(path);
            composition_lines(&mut report, &c, addr);
            if c.elements.len() != usize::from(node.elements) {
                report.notes.push(format!(
                    "the node reports {} elements but was provisioned with {}: only {recorded} recorded",
                    c.elements.len(),
                    node.elements
                ));
            }
        }
        (
            ConfigMessage::AppKeyStatus { .. },
            Plan {
                app_key: Some((index, name, _)),
                ..
            },
        ) => {
            s.record_node_app_key(&node.uuid, *index)?;
            report.stored = Some(path);
            report.notes.push(format!(
                "bind it to the node's models with `meshprov node bind {addr:04X} ELEMENT_ADDR MODEL_ID {name}`"
            ));
        }
        (
            ConfigMessage::ModelAppStatus { .. },
            Plan {
                app_key: Some((index, ..)),
                binding: Some((element, model)),
                ..
            },
        ) => {
            s.record_binding(&node.uuid, *element, to_store_model(*model), *index)?;
            report.stored = Some(path);
        }
        (ConfigMessage::NodeResetStatus, _) => {
            s.record_node_reset(addr)?;
            report.stored = Some(path);
            let net_key = node.net_keys.first().copied().unwrap_or(0);
            report.notes.push(format!(
                "node {addr:04X} is excluded in the store; its addresses will not be reused"
            ));
            report.notes.push(format!(
                "the device held the network's keys (NetKey {net_key}{}): run a key refresh (`meshprov net key-refresh`) so that they stop working for whoever has the device now",
                if node.app_keys.is_empty() {
                    String::new()
                } else {
                    format!(
                        " and AppKey{} {}",
                        if node.app_keys.len() == 1 { "" } else { "s" },
                        node.app_keys
                            .iter()
                            .map(u16::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ));
        }
        _ => {}
    }
    Ok(report)
}

fn composition_record(c: &CompositionPage0) -> CompositionRecord {
    CompositionRecord {
        cid: c.cid,
        pid: c.pid,
        vid: c.vid,
        crpl: c.crpl,
        features_supported: [
            c.features.has(Features::RELAY),
            c.features.has(Features::PROXY),
            c.features.has(Features::FRIEND),
            c.features.has(Features::LOW_POWER),
        ],
        elements: c
            .elements
            .iter()
            .map(|e| {
                let models = e
                    .sig_models
                    .iter()
                    .map(|m| ModelId::Sig(*m))
                    .chain(e.vendor_models.iter().copied())
                    .map(to_store_model)
                    .collect();
                (e.location, models)
            })
            .collect(),
    }
}

fn composition_lines(report: &mut NodeReport, c: &CompositionPage0, addr: u16) {
    let company = company_name(c.cid);
    let features = feature_names(c.features);
    let l = &mut report.lines;
    l.push(match company {
        Some(n) => format!("company     0x{:04x} {n}", c.cid),
        None => format!("company     0x{:04x}", c.cid),
    });
    l.push(format!("product     0x{:04x}", c.pid));
    l.push(format!("version     0x{:04x}", c.vid));
    l.push(format!("CRPL        {}", c.crpl));
    l.push(format!(
        "features    {}",
        if features.is_empty() {
            "none".to_string()
        } else {
            features.join(", ")
        }
    ));
    let mut elements = Vec::new();
    for (i, e) in c.elements.iter().enumerate() {
        let address = u32::from(addr) + i as u32;
        l.push(format!(
            "element {i:<3} 0x{address:04x}, location {}",
            if e.location == 0 {
                "unknown".to_string()
            } else {
                format!("0x{:04x}", e.location)
            }
        ));
        let models: Vec<ModelId> = e
            .sig_models
            .iter()
            .map(|m| ModelId::Sig(*m))
            .chain(e.vendor_models.iter().copied())
            .collect();
        for m in &models {
            l.push(format!("  {}", model_text(*m)));
        }
        elements.push(json!({
            "index": i,
            "address": format!("0x{address:04x}"),
            "location": format!("{:04X}", e.location),
            "models": models.iter().map(|m| model_json(*m)).collect::<Vec<_>>(),
        }));
    }
    report.extra.insert(
        "composition".into(),
        json!({
            "cid": format!("{:04X}", c.cid),
            "company": company,
            "pid": format!("{:04X}", c.pid),
            "vid": format!("{:04X}", c.vid),
            "crpl": c.crpl,
            "features": features,
            "elements": elements,
        }),
    );
}

/// What a refusal means for this request and what to do about it.
fn refusal_hint(node: &Node, plan: &Plan, code: ConfigStatus) -> String {
    let addr = node.address;
    let key = plan.app_key.as_ref();
    let key_name = key.map_or(String::new(), |(i, n, _)| format!("{i} '{n}'"));
    match (&plan.message, code) {
        (ConfigMessage::AppKeyAdd { .. }, ConfigStatus::KEY_INDEX_ALREADY_STORED) => format!(
            ": the node holds another key under AppKey index {}; delete it on the node first",
            key.map_or(0, |k| k.0)
        ),
        (ConfigMessage::AppKeyAdd { .. }, ConfigStatus::INVALID_NETKEY_INDEX) => format!(
            ": the node does not know NetKey {}, which AppKey {key_name} is bound to",
            key.map_or(0, |k| k.2)
        ),
        (_, ConfigStatus::INSUFFICIENT_RESOURCES) => {
            ": the node has no room left for it (its key or binding list is full)".into()
        }
        (ConfigMessage::ModelAppBind { .. }, ConfigStatus::INVALID_APPKEY_INDEX) => format!(
            ": the node does not hold AppKey {key_name}: give it first with `meshprov node add-app-key {addr:04X} {}`",
            key.map_or("NAME", |k| k.1.as_str())
        ),
        (ConfigMessage::ModelAppBind { element, model, .. }, ConfigStatus::INVALID_MODEL) => {
            format!(
                ": element 0x{element:04x} has no model {}: `meshprov node composition {addr:04X}` lists its models",
                model_text(*model)
            )
        }
        (ConfigMessage::ModelAppBind { element, .. }, ConfigStatus::INVALID_ADDRESS) => {
            format!(": 0x{element:04x} is not an element of the node")
        }
        (ConfigMessage::ModelAppBind { .. }, ConfigStatus::CANNOT_BIND) => {
            ": this model cannot be bound to an AppKey (the Configuration models use the device key only)".into()
        }
        _ => String::new(),
    }
}

impl NodeResult {
    /// The process exit code: 0 for a Success, 1 for a refusal or silence.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Success => crate::exit::SUCCESS,
            Self::Refused | Self::NoAnswer => crate::exit::FAILURE,
        }
    }
}

impl NodeReport {
    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        self.result.exit_code()
    }

    /// The report for a terminal: the reply by name (`AppKey Status: Success`), then details.
    pub fn to_text(&self) -> String {
        let mut s = match (self.reply, self.status) {
            (Some(reply), Some(code)) => format!("{reply}: {}\n", status_name(code)),
            (Some("Composition Data Status"), None) => "Composition Data Status: page 0\n".into(),
            (Some(reply), None) => format!("{reply}\n"),
            (None, _) => format!("{}: no answer\n", self.request),
        };
        if self.name.is_empty() {
            s += &format!("  node        0x{:04x}\n", self.node);
        } else {
            s += &format!("  node        0x{:04x} ({})\n", self.node, self.name);
        }
        for l in &self.lines {
            s += &format!("  {l}\n");
        }
        if let Some(p) = &self.stored {
            s += &format!("  recorded in {}\n", p.display());
        }
        s += &format!(
            "  time        {:.2} s of {}, {} attempt{}, from 0x{:04x}\n",
            self.elapsed.as_secs_f64(),
            self.time_kind,
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            self.from
        );
        for n in &self.notes {
            s += &format!("Next: {n}\n");
        }
        s
    }

    /// One JSON object: `result`, `command`, `node`, `name`, `request`, `reply`, `status`,
    /// `status_code`, `elapsed_ms`, `time`, `attempts`, `from`, `stored`, `error`, `notes`, and
    /// the command's own fields (`composition`; `app_key`; `element`, `model`).
    pub fn to_json(&self) -> String {
        let mut o = json!({
            "result": self.result.as_str(),
            "command": self.command,
            "node": format!("0x{:04x}", self.node),
            "name": self.name,
            "request": self.request,
            "reply": self.reply,
            "status": self.status.map(status_name),
            "status_code": self.status.map(|c| c.0),
            "elapsed_ms": self.elapsed.as_millis() as u64,
            "time": self.time_kind,
            "attempts": self.attempts,
            "from": format!("0x{:04x}", self.from),
            "stored": self.stored.as_ref().map(|p| p.display().to_string()),
            "error": self.error,
            "notes": self.notes,
        });
        if let Some(map) = o.as_object_mut() {
            for (k, v) in &self.extra {
                map.insert(k.clone(), v.clone());
            }
        }
        o.to_string()
    }
}
