//! `meshprov provision UUID --radio sim:FILE.toml`: provision one device and report it;
//! `meshprov provision --all --radio sim:FILE.toml`: every device of the building, many at
//! once ([`provision_all`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use std::sync::Arc;
use std::time::SystemTime;

use crate::cert::{Policy, TrustStore, verify_device_chain};
use crate::provisioning::{AlgorithmPolicy, AuthPolicy, ProvisionerConfig, RecordsPolicy};
use crate::sim::building::{Building, DeviceSpec};
use crate::sim::run::{self, BearerChoice, MemorySink, NodeSink, RunOptions};
use crate::store::Store;
use crate::uuid::DeviceUuid;

/// The `--auth` choices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthArg {
    /// Static OOB from the building file if the device has one, else Output, else Input OOB.
    Auto,
    /// No OOB authentication (allowed only when asked for by name).
    None,
    /// Static OOB with this value.
    Static(Vec<u8>),
    /// Output OOB: the device shows a value, the installer enters it.
    Output,
    /// Input OOB: meshprov shows a value, the installer enters it on the device.
    Input,
    /// The device's public key, known out of band.
    OobPublicKey([u8; 64]),
    /// Certificate-based provisioning.
    Cert,
}

/// A command-line argument that cannot be used. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ArgError(pub String);

impl std::str::FromStr for AuthArg {
    type Err = ArgError;
    fn from_str(s: &str) -> Result<Self, ArgError> {
        let bad = |m: &str| ArgError(format!("invalid --auth '{s}': {m}"));
        match s {
            "auto" => Ok(Self::Auto),
            "none" => Ok(Self::None),
            "output" => Ok(Self::Output),
            "input" => Ok(Self::Input),
            "cert" => Ok(Self::Cert),
            _ => {
                if let Some(h) = s.strip_prefix("static:") {
                    let b = hex::decode(h)
                        .map_err(|e| bad(&format!("static value is not hex ({e})")))?;
                    if b.len() != 16 && b.len() != 32 {
                        return Err(bad(&format!(
                            "static value is {} bytes; give 16 or 32 (32 or 64 hex digits)",
                            b.len()
                        )));
                    }
                    Ok(Self::Static(b))
                } else if let Some(h) = s.strip_prefix("oob-public-key:") {
                    let b =
                        hex::decode(h).map_err(|e| bad(&format!("public key is not hex ({e})")))?;
                    let arr: [u8; 64] = b.try_into().map_err(|b: Vec<u8>| {
                        bad(&format!(
                            "public key is {} bytes; give X ‖ Y, 64 bytes (128 hex digits)",
                            b.len()
                        ))
                    })?;
                    mesh_crypto::ecdh::PublicKey::from_bytes(&arr)
                        .map_err(|e| bad(&e.to_string()))?;
                    Ok(Self::OobPublicKey(arr))
                } else {
                    Err(bad(
                        "use auto, none, static:HEX, output, input, oob-public-key:HEX128 or cert",
                    ))
                }
            }
        }
    }
}

/// Everything `meshprov provision` was asked to do.
#[derive(Clone, Debug)]
pub struct ProvisionArgs {
    /// The device.
    pub uuid: DeviceUuid,
    /// `sim:FILE.toml`.
    pub radio: String,
    /// Authentication.
    pub auth: AuthArg,
    /// Algorithm policy.
    pub algorithm: AlgorithmPolicy,
    /// Bearer.
    pub bearer: BearerChoice,
    /// The network store (SQLite) to take the network from and record the node in.
    pub store: Option<PathBuf>,
    /// The network whose default store to use.
    pub network: Option<String>,
    /// Print the device key.
    pub show_keys: bool,
    /// Trusted manufacturer roots for `--auth cert`.
    pub trust: Option<PathBuf>,
    /// Deny list of certificate serials / fingerprints for `--auth cert`.
    pub deny: Option<PathBuf>,
    /// Seed of the simulation.
    pub seed: u64,
    /// Advertising loss override.
    pub loss: Option<f64>,
}

/// The report printed on success.
#[derive(Debug, Clone, Serialize)]
pub struct ProvisionReport {
    /// `"provisioned"`.
    pub result: &'static str,
    /// Device UUID.
    pub uuid: String,
    /// Name from the building file.
    pub name: String,
    /// Primary element address, `0x0001` style.
    pub address: String,
    /// Element count.
    pub elements: u8,
    /// Algorithm name.
    pub algorithm: &'static str,
    /// Authentication used.
    pub auth: String,
    /// Whether the device public key came out of band.
    pub public_key_oob: bool,
    /// `pb-adv` or `pb-gatt`.
    pub bearer: &'static str,
    /// Device key, only with `--show-keys`.
    pub device_key: Option<String>,
    /// Where the node was stored, if anywhere.
    pub stored: Option<String>,
    /// Virtual time of the session, in milliseconds.
    pub time_ms: u64,
    /// PB-ADV retransmissions by the provisioner.
    pub retransmissions: u64,
}

/// Why `provision` failed: exit code and one line for the user.
#[derive(Debug)]
pub struct ProvisionFailure {
    /// Process exit code.
    pub exit_code: i32,
    /// One line that says what went wrong and what to do.
    pub message: String,
    /// The device, when known.
    pub uuid: Option<String>,
}

fn usage(message: String) -> ProvisionFailure {
    ProvisionFailure {
        exit_code: crate::exit::USAGE,
        message,
        uuid: None,
    }
}

/// Provisions one device of a simulated building.
pub fn provision(args: &ProvisionArgs) -> Result<ProvisionReport, ProvisionFailure> {
    let Some(file) = args.radio.strip_prefix("sim:") else {
        return Err(usage(format!(
            "radio '{}' is not available in this build; use --radio sim:FILE.toml (the simulated building)",
            args.radio
        )));
    };
    let building = Building::load(Path::new(file)).map_err(|e| usage(e.to_string()))?;
    let spec = building.device(&args.uuid).ok_or_else(|| {
        usage(format!(
            "device {} is not in {file}; it lists {}",
            args.uuid,
            list(&building)
        ))
    })?;
    let policy = SessionPolicy::new(
        &args.auth,
        args.algorithm,
        args.trust.as_deref(),
        args.deny.as_deref(),
    )?;
    let mut config = policy.config.clone();
    policy.adjust(&args.auth, args.bearer, spec, &mut config);
    let verifier = policy.verifier.clone();
    let failure = |message: String| ProvisionFailure {
        exit_code: crate::exit::FAILURE,
        message,
        uuid: Some(args.uuid.to_string()),
    };
    let mut store = if args.store.is_some() || args.network.is_some() {
        let path = crate::store::resolve_path(args.store.as_deref(), args.network.as_deref())
            .map_err(|e| usage(e.to_string()))?;
        if !path.exists() {
            return Err(usage(format!(
                "no store at {}: create the network first with `meshprov net create NAME --store {}`",
                path.display(),
                path.display()
            )));
        }
        Some((
            Store::open(&path).map_err(|e| failure(e.to_string()))?,
            path,
        ))
    } else {
        None
    };
    let mut net_key = None;
    let mut iv_index = None;
    if let Some((s, path)) = &store {
        let info = s
            .network()
            .map_err(|e| failure(format!("{}: {e}", path.display())))?;
        if let Ok(node) = s.node_by_uuid(&args.uuid) {
            return Err(failure(format!(
                "device {} is already node 0x{:04x} in {} ({}); reset the device and remove the node before provisioning it again",
                args.uuid,
                node.address,
                path.display(),
                node.state
            )));
        }
        net_key = Some(s.net_key(0).map_err(|e| failure(e.to_string()))?);
        iv_index = Some(info.iv_index);
    }
    let opts = RunOptions {
        config,
        cert_verifier: verifier,
        net_key,
        iv_index,
        bearer: args.bearer,
        seed: args.seed,
        loss: args.loss,
        max_concurrent: 1,
        deadline: Duration::from_secs(600),
        ..RunOptions::default()
    };
    let mut memory = MemorySink::default();
    let sink: &mut dyn NodeSink = match &mut store {
        Some((s, _)) => s,
        None => &mut memory,
    };
    let report =
        run::run(&building, &[args.uuid], &opts, sink).map_err(|e| usage(e.to_string()))?;
    let Some(r) = report.results.into_iter().next() else {
        return Err(ProvisionFailure {
            exit_code: crate::exit::FAILURE,
            message: "no result".into(),
            uuid: None,
        });
    };
    match r.outcome {
        Ok(o) => Ok(ProvisionReport {
            result: "provisioned",
            uuid: args.uuid.to_string(),
            name: spec.name.clone(),
            address: format!("0x{:04x}", o.address),
            elements: o.elements,
            algorithm: o.algorithm.name(),
            auth: if matches!(args.auth, AuthArg::Cert) {
                format!(
                    "certificate-based ({}, device key from its verified certificate)",
                    o.auth
                )
            } else {
                format!("{}", o.auth)
            },
            public_key_oob: o.public_key_oob,
            bearer: args.bearer.name(),
            device_key: args
                .show_keys
                .then(|| mesh_crypto::hex::encode(o.device_key.expose_secret())),
            stored: store.as_ref().map(|(_, p)| p.display().to_string()),
            time_ms: r.elapsed.as_millis() as u64,
            retransmissions: report.retransmissions,
        }),
        Err(e) => Err(failure(e.user_message())),
    }
}

/// How each session authenticates, from `--auth`, `--algorithm`, `--trust` and `--deny`.
struct SessionPolicy {
    config: ProvisionerConfig,
    verifier: Option<crate::sim::run::CertVerifier>,
}

impl SessionPolicy {
    fn new(
        auth: &AuthArg,
        algorithm: AlgorithmPolicy,
        trust: Option<&Path>,
        deny: Option<&Path>,
    ) -> Result<Self, ProvisionFailure> {
        let mut config = ProvisionerConfig {
            algorithm,
            ..ProvisionerConfig::default()
        };
        let mut verifier: Option<crate::sim::run::CertVerifier> = None;
        match auth {
            AuthArg::None => {
                config.allow_no_oob = true;
                config.auth = AuthPolicy::NoOob;
            }
            AuthArg::Static(v) => config.auth = AuthPolicy::Static(v.clone()),
            AuthArg::Output => config.auth = AuthPolicy::Output,
            AuthArg::Input => config.auth = AuthPolicy::Input,
            AuthArg::OobPublicKey(k) => config.oob_public_key = Some(*k),
            AuthArg::Auto => {}
            AuthArg::Cert => {
                let Some(dir) = trust else {
                    return Err(usage(
                        "--auth cert needs --trust DIR: the directory of the trusted manufacturer root certificates (PEM or DER)".into(),
                    ));
                };
                let trust = TrustStore::from_dir(dir).map_err(|e| usage(e.to_string()))?;
                let policy = match deny {
                    Some(p) => Policy::load_deny_list(p).map_err(|e| usage(e.to_string()))?,
                    None => Policy::default(),
                };
                verifier = Some(Arc::new(
                    move |uuid: &DeviceUuid, device: &[u8], intermediates: &[Vec<u8>]| {
                        verify_device_chain(
                            device,
                            intermediates,
                            &trust,
                            &policy,
                            uuid,
                            SystemTime::now(),
                        )
                        .map(|v| v.public_key)
                        .map_err(|e| e.to_string())
                    },
                ) as crate::sim::run::CertVerifier);
            }
        }
        Ok(Self { config, verifier })
    }

    /// The parts of a session's configuration that depend on its device: the static OOB
    /// value of the building file under `--auth auto`, the record sizes under `--auth cert`.
    fn adjust(
        &self,
        auth: &AuthArg,
        bearer: BearerChoice,
        spec: &DeviceSpec,
        config: &mut ProvisionerConfig,
    ) {
        match auth {
            AuthArg::Auto | AuthArg::OobPublicKey(_) | AuthArg::Cert => {
                config.auth = AuthPolicy::Auto {
                    static_oob: spec.static_oob.clone(),
                };
            }
            AuthArg::None | AuthArg::Static(_) | AuthArg::Output | AuthArg::Input => {}
        }
        if matches!(auth, AuthArg::Cert) {
            config.records = match bearer {
                BearerChoice::Adv => RecordsPolicy::pb_adv(),
                BearerChoice::Gatt => RecordsPolicy::pb_gatt(spec.mtu),
            };
        }
    }
}

/// Everything `meshprov provision --all` was asked to do.
#[derive(Clone, Debug)]
pub struct ProvisionAllArgs {
    /// `sim:FILE.toml`.
    pub radio: String,
    /// Authentication, for every device (`oob-public-key:` is refused: one key cannot fit
    /// every device).
    pub auth: AuthArg,
    /// Algorithm policy.
    pub algorithm: AlgorithmPolicy,
    /// Bearer; devices that do not offer it are skipped.
    pub bearer: BearerChoice,
    /// The network store to take the network from and record the nodes in.
    pub store: Option<PathBuf>,
    /// The network whose default store to use.
    pub network: Option<String>,
    /// Trusted manufacturer roots for `--auth cert`.
    pub trust: Option<PathBuf>,
    /// Deny list for `--auth cert`.
    pub deny: Option<PathBuf>,
    /// Seed of the simulation.
    pub seed: u64,
    /// Advertising loss override.
    pub loss: Option<f64>,
    /// Sessions at once (1..=64 on PB-ADV: one `Links` table).
    pub concurrency: usize,
}

/// One device of a batch that was not provisioned.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceFailure {
    /// Device UUID.
    pub uuid: String,
    /// Why, in words for the installer.
    pub error: String,
}

/// One node a batch provisioned.
#[derive(Debug, Clone, Serialize)]
pub struct BatchNode {
    /// Device UUID.
    pub uuid: String,
    /// Name from the building file.
    pub name: String,
    /// Primary element address, `0x0001` style.
    pub address: String,
    /// Element count.
    pub elements: u8,
    /// Virtual time of its session, in milliseconds.
    pub time_ms: u64,
}

/// What the simulated air did in a batch.
#[derive(Debug, Clone, Serialize)]
pub struct AirSummary {
    /// Advertising events on air (three copies each).
    pub adv_events: u64,
    /// Copies delivered.
    pub delivered: u64,
    /// Copies lost to the per-packet and floor loss.
    pub lost: u64,
    /// Copies lost to collisions.
    pub collided: u64,
    /// Copies missed while the receiver was transmitting.
    pub deaf: u64,
}

/// The report of `meshprov provision --all`.
#[derive(Debug, Clone, Serialize)]
pub struct ProvisionAllReport {
    /// `"provisioned"` when every device tried was, else `"failed"`.
    pub result: &'static str,
    /// Devices in the building file.
    pub devices: usize,
    /// Devices provisioned.
    pub provisioned: usize,
    /// Devices whose session failed.
    pub failed: Vec<DeviceFailure>,
    /// Devices not tried (already in the store, or without the bearer), with the reason.
    pub skipped: Vec<DeviceFailure>,
    /// `pb-adv` or `pb-gatt`.
    pub bearer: &'static str,
    /// Sessions at once.
    pub concurrency: usize,
    /// Where the nodes were stored, if anywhere.
    pub stored: Option<String>,
    /// Virtual time of the whole run, in milliseconds.
    pub time_ms: u64,
    /// PB-ADV retransmissions by the provisioner.
    pub retransmissions: u64,
    /// What the air did.
    pub air: AirSummary,
    /// The nodes, in the order of the building file.
    pub nodes: Vec<BatchNode>,
}

/// Provisions every device of a simulated building, `concurrency` at once, each with the
/// authentication `--auth` gives it (its own static OOB value under `auto`).
pub fn provision_all(args: &ProvisionAllArgs) -> Result<ProvisionAllReport, ProvisionFailure> {
    let Some(file) = args.radio.strip_prefix("sim:") else {
        return Err(usage(format!(
            "radio '{}' is not available in this build; use --radio sim:FILE.toml (the simulated building)",
            args.radio
        )));
    };
    if matches!(args.auth, AuthArg::OobPublicKey(_)) {
        return Err(usage(
            "--auth oob-public-key:HEX names one device's key; with --all use --auth auto (each device's own value from the building file)".into(),
        ));
    }
    if args.concurrency == 0 || (args.bearer == BearerChoice::Adv && args.concurrency > 64) {
        return Err(usage(format!(
            "--concurrency {} is not in 1..=64 (one PB-ADV link table holds 64 links)",
            args.concurrency
        )));
    }
    let building = Building::load(Path::new(file)).map_err(|e| usage(e.to_string()))?;
    let policy = SessionPolicy::new(
        &args.auth,
        args.algorithm,
        args.trust.as_deref(),
        args.deny.as_deref(),
    )?;
    let failure = |message: String| ProvisionFailure {
        exit_code: crate::exit::FAILURE,
        message,
        uuid: None,
    };
    let mut store = open_store(args.store.as_deref(), args.network.as_deref())?;
    let mut skipped = Vec::new();
    let mut targets = Vec::new();
    for d in &building.devices {
        let unsupported = match args.bearer {
            BearerChoice::Adv if !d.pb_adv => Some("not reachable over PB-ADV; use --bearer gatt"),
            BearerChoice::Gatt if !d.pb_gatt => {
                Some("not reachable over PB-GATT; use --bearer adv")
            }
            _ => None,
        };
        if let Some(why) = unsupported {
            skipped.push(DeviceFailure {
                uuid: d.uuid.to_string(),
                error: why.into(),
            });
            continue;
        }
        if let Some((s, path)) = &store
            && let Ok(node) = s.node_by_uuid(&d.uuid)
        {
            skipped.push(DeviceFailure {
                uuid: d.uuid.to_string(),
                error: format!(
                    "already node 0x{:04x} in {} ({})",
                    node.address,
                    path.display(),
                    node.state
                ),
            });
            continue;
        }
        targets.push(d.uuid);
    }
    let (net_key, iv_index) = match &store {
        Some((s, path)) => {
            let info = s
                .network()
                .map_err(|e| failure(format!("{}: {e}", path.display())))?;
            (
                Some(s.net_key(0).map_err(|e| failure(e.to_string()))?),
                Some(info.iv_index),
            )
        }
        None => (None, None),
    };
    let opts = RunOptions {
        config: policy.config.clone(),
        cert_verifier: policy.verifier.clone(),
        net_key,
        iv_index,
        bearer: args.bearer,
        seed: args.seed,
        loss: args.loss,
        max_concurrent: args.concurrency,
        // Room for a whole building: a session has its own protocol timeouts.
        deadline: Duration::from_secs(24 * 3600),
        ..RunOptions::default()
    };
    let mut memory = MemorySink::default();
    let sink: &mut dyn NodeSink = match &mut store {
        Some((s, _)) => s,
        None => &mut memory,
    };
    let report = run::run_with(&building, &targets, &opts, sink, |spec, config| {
        policy.adjust(&args.auth, args.bearer, spec, config);
    })
    .map_err(|e| usage(e.to_string()))?;
    let mut failed = Vec::new();
    let mut nodes = Vec::new();
    for r in &report.results {
        match &r.outcome {
            Ok(o) => nodes.push(BatchNode {
                uuid: r.uuid.to_string(),
                name: building
                    .device(&r.uuid)
                    .map(|d| d.name.clone())
                    .unwrap_or_default(),
                address: format!("0x{:04x}", o.address),
                elements: o.elements,
                time_ms: u64::try_from(r.elapsed.as_millis()).unwrap_or(u64::MAX),
            }),
            Err(e) => failed.push(DeviceFailure {
                uuid: r.uuid.to_string(),
                error: e.user_message(),
            }),
        }
    }
    Ok(ProvisionAllReport {
        result: if failed.is_empty() {
            "provisioned"
        } else {
            "failed"
        },
        devices: building.devices.len(),
        provisioned: nodes.len(),
        failed,
        skipped,
        bearer: args.bearer.name(),
        concurrency: args.concurrency,
        stored: store.as_ref().map(|(_, p)| p.display().to_string()),
        time_ms: u64::try_from(report.virtual_time.as_millis()).unwrap_or(u64::MAX),
        retransmissions: report.retransmissions,
        air: AirSummary {
            adv_events: report.air.adv_events,
            delivered: report.air.adv_delivered,
            lost: report.air.adv_lost,
            collided: report.air.adv_collided,
            deaf: report.air.adv_deaf,
        },
        nodes,
    })
}

impl ProvisionAllReport {
    /// The report for a terminal.
    pub fn to_text(&self) -> String {
        let copies = self.air.delivered + self.air.lost + self.air.collided + self.air.deaf;
        let pct = |n: u64| {
            if copies == 0 {
                0.0
            } else {
                100.0 * n as f64 / copies as f64
            }
        };
        let mut s = format!(
            "Provisioned {} of {} devices in {:.2} s of simulated air time ({} at once over {})\n",
            self.provisioned,
            self.devices,
            self.time_ms as f64 / 1000.0,
            self.concurrency,
            self.bearer
        );
        s += &format!("  retransmissions  {}\n", self.retransmissions);
        s += &format!(
            "  air              {} advertising events; of the copies heard, {:.1} % lost, {:.1} % collided, {:.1} % missed while sending\n",
            self.air.adv_events,
            pct(self.air.lost),
            pct(self.air.collided),
            pct(self.air.deaf)
        );
        s += &match &self.stored {
            Some(p) => format!("  stored in        {p}\n"),
            None => "  stored in        nowhere (no --store): the device keys are lost when meshprov exits\n".to_string(),
        };
        if !self.skipped.is_empty() {
            s += &format!("Skipped {}:\n", self.skipped.len());
            for f in &self.skipped {
                s += &format!("  {}  {}\n", f.uuid, f.error);
            }
        }
        if !self.failed.is_empty() {
            s += &format!("Failed {}:\n", self.failed.len());
            for f in &self.failed {
                s += &format!("  {}  {}\n", f.uuid, f.error);
            }
        }
        s
    }
}

/// The store of `--store` or `--network`, if one was asked for.
fn open_store(
    store: Option<&Path>,
    network: Option<&str>,
) -> Result<Option<(Store, PathBuf)>, ProvisionFailure> {
    if store.is_none() && network.is_none() {
        return Ok(None);
    }
    let path = crate::store::resolve_path(store, network).map_err(|e| usage(e.to_string()))?;
    if !path.exists() {
        return Err(usage(format!(
            "no store at {}: create the network first with `meshprov net create NAME --store {}`",
            path.display(),
            path.display()
        )));
    }
    let s = Store::open(&path).map_err(|e| ProvisionFailure {
        exit_code: crate::exit::FAILURE,
        message: e.to_string(),
        uuid: None,
    })?;
    Ok(Some((s, path)))
}

fn list(b: &Building) -> String {
    let mut v: Vec<String> = b
        .devices
        .iter()
        .take(5)
        .map(|d| d.uuid.to_string())
        .collect();
    if b.devices.len() > 5 {
        v.push(format!("and {} more", b.devices.len() - 5));
    }
    if v.is_empty() {
        "no devices".into()
    } else {
        v.join(", ")
    }
}

impl ProvisionReport {
    /// The report for a terminal.
    pub fn to_text(&self) -> String {
        let last =
            u32::from(u16::from_str_radix(self.address.trim_start_matches("0x"), 16).unwrap_or(0))
                + u32::from(self.elements.max(1))
                - 1;
        let mut s = format!("Provisioned {} ({})\n", self.uuid, self.name);
        s += &format!(
            "  address     {} ({} element{}, up to 0x{:04x})\n",
            self.address,
            self.elements,
            if self.elements == 1 { "" } else { "s" },
            last
        );
        s += &format!("  algorithm   {}\n", self.algorithm);
        s += &format!(
            "  auth        {}{}\n",
            self.auth,
            if self.public_key_oob {
                ", device public key out of band"
            } else {
                ""
            }
        );
        s += &format!("  bearer      {}\n", self.bearer);
        s += &match &self.device_key {
            Some(k) => format!("  device key  {k}\n"),
            None => "  device key  (not shown; add --show-keys)\n".to_string(),
        };
        s += &match &self.stored {
            Some(p) => format!("  stored in   {p}\n"),
            None => "  stored in   nowhere (no --store): the device key is lost when meshprov exits; add --show-keys or --store\n".to_string(),
        };
        s += &format!(
            "  time        {:.2} s of simulated air time, {} retransmissions\n",
            self.time_ms as f64 / 1000.0,
            self.retransmissions
        );
        s
    }
}
