//! `meshprov provision UUID [--radio RADIO]`: provision one device and report it, on the
//! simulated building or on a real radio (BlueZ, btleplug, bluetooth-meshd's unit socket),
//! optionally recording the session as a capture (`--capture FILE.pcapng`) with its key
//! sidecar; `meshprov provision --all --radio sim:FILE.toml`: every device of the building,
//! many at once ([`provision_all`]).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::bearer::pb_adv::PbAdvConfig;
use crate::cert::{Policy, TrustStore, verify_device_chain};
use crate::host::{CertVerifier, SessionId, failure_message};
use crate::live::{self, LiveEvent, LiveOptions, LiveTarget};
use crate::provisioning::{
    AlgorithmPolicy, AuthPolicy, KeyLogBuffer, ProvisionerConfig, RecordsPolicy,
};
use crate::provisioning::{OobValue, Outcome, ProvisioningParams};
use crate::radio::capture::{
    CaptureError, CaptureStats, CaptureTap, KeySidecar, SharedTap, section_comment, sidecar_path,
};
use crate::radio::tapped::{TappedRadio, wall_clock_capture};
use crate::radio::unit::UnitRadio;
use crate::radio::{Radio, RadioError};
use crate::sim::building::Building;
use crate::sim::node::DeviceState;
use crate::sim::run::{self, BearerChoice, DeviceResult, MemorySink, NodeSink, RunOptions};
use crate::store::Store;
use crate::uuid::DeviceUuid;
use crate::wire::OutputOobAction;
use mesh_crypto::NetKey;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

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
    /// `bluez[:hciN]`, `btleplug`, `sim:FILE.toml` or `meshd-unit:DIR`.
    pub radio: String,
    /// With `bluez`: power the adapter on if it is off.
    pub power_on: bool,
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
    /// Record the session to this pcapng file (and its key sidecar beside it).
    pub capture: Option<PathBuf>,
    /// Also write the session secrets to the sidecar (test and development runs only).
    pub capture_secrets: bool,
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
    /// Time of the session, in milliseconds.
    pub time_ms: u64,
    /// What `time_ms` measures: `simulated air time` or `wall time`.
    pub time_kind: &'static str,
    /// PB-ADV retransmissions by the provisioner.
    pub retransmissions: u64,
    /// The capture written, if one was asked for.
    pub capture: Option<CaptureSummary>,
}

/// What `--capture` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureSummary {
    /// The pcapng file.
    pub file: String,
    /// Its key sidecar.
    pub keys: String,
    /// Packets in the file.
    pub packets: u64,
    /// Whether the sidecar holds the session secrets.
    pub secrets: bool,
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

/// The radio `meshprov provision` uses without `--radio`: BlueZ, the Bluetooth stack of Linux.
pub const DEFAULT_RADIO: &str = "bluez";

/// The bearer used when `--bearer` is not given: PB-GATT on the radios that reach devices
/// through a GATT central (`bluez`, whose stock bluetoothd cannot send mesh advertisements,
/// and `btleplug`, which cannot advertise), PB-ADV on the others.
pub fn default_bearer(radio: &str) -> BearerChoice {
    if radio == "bluez" || radio.starts_with("bluez:") || radio == "btleplug" {
        BearerChoice::Gatt
    } else {
        BearerChoice::Adv
    }
}

/// Provisions one device: on the simulated building (`--radio sim:FILE`) or on a real
/// radio (`--radio bluez[:hciN]`, `btleplug`, `meshd-unit:DIR`).
pub fn provision(args: &ProvisionArgs) -> Result<ProvisionReport, ProvisionFailure> {
    let bluez = args.radio == "bluez" || args.radio.starts_with("bluez:");
    if args.power_on && !bluez {
        return Err(usage(format!(
            "--power-on powers a BlueZ adapter on; radio '{}' has none to power",
            args.radio
        )));
    }
    if let Some(file) = args.radio.strip_prefix("sim:") {
        return provision_sim(args, Path::new(file));
    }
    if let Some(dir) = args.radio.strip_prefix("meshd-unit:") {
        return provision_unit(args, Path::new(dir));
    }
    if bluez {
        return provision_bluez(args);
    }
    if args.radio == "btleplug" {
        return provision_btleplug(args);
    }
    Err(usage(format!(
        "unknown radio '{}'; use --radio bluez[:hciN] (BlueZ, the default), btleplug (PB-GATT through btleplug), sim:FILE.toml (the simulated building) or meshd-unit:DIR (bluetooth-meshd's unit socket)",
        args.radio
    )))
}

/// The session's policies from the arguments; `static_oob` is what a building file says of
/// the device, `mtu` its ATT MTU on PB-GATT.
fn session_config(
    args: &ProvisionArgs,
    static_oob: Option<Vec<u8>>,
    mtu: u16,
) -> Result<(ProvisionerConfig, Option<CertVerifier>), ProvisionFailure> {
    let policy = SessionPolicy::new(
        &args.auth,
        args.algorithm,
        args.trust.as_deref(),
        args.deny.as_deref(),
    )?;
    let mut config = policy.config.clone();
    policy.adjust(&args.auth, args.bearer, static_oob, mtu, &mut config);
    Ok((config, policy.verifier))
}

/// How each session authenticates, from `--auth`, `--algorithm`, `--trust` and `--deny`: the
/// part shared by every device of a run ([`SessionPolicy::new`], which loads the trust store
/// once) and the part that depends on the device ([`SessionPolicy::adjust`]).
struct SessionPolicy {
    config: ProvisionerConfig,
    verifier: Option<CertVerifier>,
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
        let mut verifier: Option<CertVerifier> = None;
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
                ) as CertVerifier);
            }
        }
        Ok(Self { config, verifier })
    }

    /// The parts of a session's configuration that depend on its device: its static OOB
    /// value (from the building file) under `--auth auto`, `oob-public-key` and `cert`, and
    /// the record sizes under `--auth cert` (`mtu`: its ATT MTU on PB-GATT).
    fn adjust(
        &self,
        auth: &AuthArg,
        bearer: BearerChoice,
        static_oob: Option<Vec<u8>>,
        mtu: u16,
        config: &mut ProvisionerConfig,
    ) {
        match auth {
            AuthArg::Auto | AuthArg::OobPublicKey(_) | AuthArg::Cert => {
                config.auth = AuthPolicy::Auto { static_oob };
            }
            AuthArg::None | AuthArg::Static(_) | AuthArg::Output | AuthArg::Input => {}
        }
        if matches!(auth, AuthArg::Cert) {
            config.records = match bearer {
                BearerChoice::Adv => RecordsPolicy::pb_adv(),
                BearerChoice::Gatt => RecordsPolicy::pb_gatt(mtu),
            };
        }
    }
}

fn failure_for(args: &ProvisionArgs) -> impl Fn(String) -> ProvisionFailure + '_ {
    move |message: String| ProvisionFailure {
        exit_code: crate::exit::FAILURE,
        message,
        uuid: Some(args.uuid.to_string()),
    }
}

/// The store named by `--store`/`--network`, with the NetKey and IV Index to hand out;
/// refuses a device that is already a node there.
#[allow(clippy::type_complexity)]
fn open_store(
    args: &ProvisionArgs,
) -> Result<Option<(Store, PathBuf, NetKey, u32)>, ProvisionFailure> {
    if args.store.is_none() && args.network.is_none() {
        return Ok(None);
    }
    let failure = failure_for(args);
    let Some((s, path)) =
        open_store_path(args.store.as_deref(), args.network.as_deref()).map_err(|f| {
            match f.exit_code {
                crate::exit::FAILURE => failure(f.message),
                _ => f,
            }
        })?
    else {
        return Ok(None);
    };
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
    let net_key = s.net_key(0).map_err(|e| failure(e.to_string()))?;
    Ok(Some((s, path, net_key, info.iv_index)))
}

fn report(
    args: &ProvisionArgs,
    name: String,
    o: &Outcome,
    stored: Option<&Path>,
    elapsed: Duration,
    retransmissions: u64,
    air: &'static str,
) -> ProvisionReport {
    ProvisionReport {
        result: "provisioned",
        uuid: args.uuid.to_string(),
        name,
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
        stored: stored.map(|p| p.display().to_string()),
        time_ms: elapsed.as_millis() as u64,
        time_kind: air,
        retransmissions,
        capture: None,
    }
}

/// Provisions one device of a simulated building.
fn provision_sim(args: &ProvisionArgs, file: &Path) -> Result<ProvisionReport, ProvisionFailure> {
    let building = Building::load(file).map_err(|e| usage(e.to_string()))?;
    let spec = building.device(&args.uuid).ok_or_else(|| {
        usage(format!(
            "device {} is not in {}; it lists {}",
            args.uuid,
            file.display(),
            list(&building)
        ))
    })?;
    let (mut config, verifier) = session_config(args, spec.static_oob.clone(), spec.mtu)?;
    let failure = failure_for(args);
    let mut store = open_store(args)?;
    let net_key = store.as_ref().map(|s| s.2.clone());
    let iv_index = store.as_ref().map(|s| s.3);
    let key_log = args.capture_secrets.then(|| Arc::new(KeyLogBuffer::new()));
    if let Some(log) = &key_log {
        config.key_log = Some(log.clone());
    }
    let epoch = capture_epoch();
    let capture = match &args.capture {
        None => None,
        Some(path) => {
            let tap = CaptureTap::create(path, &section_comment(&args.radio, epoch, true), epoch)
                .map_err(|e| usage(format!("{e}; check the --capture path")))?;
            Some((path.clone(), Arc::new(Mutex::new(tap))))
        }
    };
    // With the secrets, the certificate verdicts are kept for the replay.
    let verdicts: crate::replay::VerdictLog = Arc::default();
    let verifier = match (verifier, args.capture_secrets) {
        (Some(v), true) => Some(crate::replay::recording_verifier(v, verdicts.clone())),
        (v, _) => v,
    };
    let opts = RunOptions {
        config,
        cert_verifier: verifier,
        tap: capture.as_ref().map(|(_, t)| t.clone() as SharedTap),
        net_key: net_key.clone(),
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
        Some((s, ..)) => s,
        None => &mut memory,
    };
    let run_report = run::run(&building, &[args.uuid], &opts, sink);
    let capture = match capture {
        None => None,
        Some((path, tap)) => {
            let stats = finish_capture(&tap).map_err(|e| failure(e.to_string()))?;
            let first = run_report.as_ref().ok().and_then(|r| r.results.first());
            let mut sidecar = RunKeys {
                building: &building,
                store: store.as_ref().map(|(s, ..)| s),
                net_key: net_key.as_ref(),
                iv_index,
                result: first,
                seed: args.seed,
                key_log: key_log.as_deref(),
            }
            .sidecar(&path, &args.radio, epoch);
            if args.capture_secrets
                && let Ok(r) = &run_report
            {
                let verdicts = match verdicts.lock() {
                    Ok(v) => v.clone(),
                    Err(p) => p.into_inner().clone(),
                };
                sidecar.replay = Some(crate::replay::sim_spec(
                    &building,
                    &[args.uuid],
                    &opts,
                    r,
                    epoch,
                    &verdicts,
                ));
            }
            let keys = sidecar_path(&path);
            sidecar.write(&keys).map_err(|e| failure(e.to_string()))?;
            Some(CaptureSummary {
                file: path.display().to_string(),
                keys: keys.display().to_string(),
                packets: stats.packets,
                secrets: args.capture_secrets,
            })
        }
    };
    let run_report = run_report.map_err(|e| usage(e.to_string()))?;
    let Some(r) = run_report.results.into_iter().next() else {
        return Err(failure("no result".into()));
    };
    match r.outcome {
        Ok(o) => {
            let mut rep = report(
                args,
                spec.name.clone(),
                &o,
                store.as_ref().map(|s| s.1.as_path()),
                r.elapsed,
                run_report.retransmissions,
                "simulated air time",
            );
            rep.capture = capture;
            Ok(rep)
        }
        Err(e) => {
            // A device that refused its Provisioning Data: its node was voided in the store
            // (nothing is stored for it; its addresses are retired), and the line says so.
            let message = failure_message(&e, r.voided.filter(|_| store.is_some()));
            Err(failure(match &capture {
                Some(c) => format!(
                    "{message} (the session was recorded in {}, keys in {})",
                    c.file, c.keys
                ),
                None => message,
            }))
        }
    }
}

/// PB-ADV timings for bluetooth-meshd: it sends about one packet a second and a Link Open
/// repeated more often than once a second starves its Link Ack (../shared/peers), so links
/// retry every 1.5 s; the rest as usual.
pub fn meshd_pb_adv() -> PbAdvConfig {
    PbAdvConfig {
        retransmit_interval: Duration::from_millis(1500),
        retransmit_jitter: Duration::from_millis(200),
        ..PbAdvConfig::default()
    }
}

/// Provisions bluetooth-meshd's node over its unit socket, in real time.
fn provision_unit(args: &ProvisionArgs, dir: &Path) -> Result<ProvisionReport, ProvisionFailure> {
    if args.bearer == BearerChoice::Gatt {
        return Err(usage(
            "the meshd-unit radio carries advertising only; use --bearer adv".into(),
        ));
    }
    provision_live(args, meshd_pb_adv(), || async { UnitRadio::open(dir) })
}

/// Provisions a device through BlueZ (`--radio bluez[:hciN]`), in real time. With a stock
/// bluetoothd only PB-GATT goes through (see [`crate::radio::bluez`]); PB-ADV fails at the
/// first advertisement with a message that says so.
#[cfg(target_os = "linux")]
fn provision_bluez(args: &ProvisionArgs) -> Result<ProvisionReport, ProvisionFailure> {
    use crate::radio::bluez::{BluezOptions, BluezRadio};
    let adapter = args.radio.strip_prefix("bluez:").filter(|a| !a.is_empty());
    let opts = BluezOptions {
        power_on: args.power_on,
    };
    provision_live(args, PbAdvConfig::default(), || {
        BluezRadio::open_with(adapter, opts)
    })
}

#[cfg(not(target_os = "linux"))]
fn provision_bluez(args: &ProvisionArgs) -> Result<ProvisionReport, ProvisionFailure> {
    Err(usage(format!(
        "radio '{}' needs BlueZ, which is Linux only; use --radio btleplug (PB-GATT)",
        args.radio
    )))
}

/// Provisions a device over PB-GATT through btleplug (`--radio btleplug`), in real time.
#[cfg(feature = "btleplug")]
fn provision_btleplug(args: &ProvisionArgs) -> Result<ProvisionReport, ProvisionFailure> {
    if args.bearer != BearerChoice::Gatt {
        return Err(usage(
            "the btleplug radio does not advertise (no PB-ADV); use --bearer gatt".into(),
        ));
    }
    provision_live(args, PbAdvConfig::default(), || {
        crate::radio::btleplug::BtleplugRadio::open()
    })
}

#[cfg(not(feature = "btleplug"))]
fn provision_btleplug(_args: &ProvisionArgs) -> Result<ProvisionReport, ProvisionFailure> {
    Err(usage(
        "this meshprov was built without the btleplug radio: rebuild with `cargo build --release --features btleplug`, or use --radio bluez".into(),
    ))
}

/// Provisions one device over a real radio in real time through [`live::provision`]: keys
/// from the store (or a fresh NetKey), operating-system randomness, the installer asked on
/// the terminal. `open` starts the radio inside the runtime.
fn provision_live<R, F, Fut>(
    args: &ProvisionArgs,
    pb_adv: PbAdvConfig,
    open: F,
) -> Result<ProvisionReport, ProvisionFailure>
where
    R: Radio,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<R, RadioError>>,
{
    // The ATT MTU is not known before the connection: records are fetched in fragments that
    // fit the smallest one.
    let (mut config, verifier) = session_config(args, None, 23)?;
    let failure = failure_for(args);
    let mut store = open_store(args)?;
    let (net_key, iv_index) = match &store {
        Some((_, _, k, iv)) => (k.clone(), *iv),
        None => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| failure(format!("no randomness: {e}")))?;
            (
                NetKey::generate(&mut <ChaCha20Rng as SeedableRng>::from_seed(seed)),
                0,
            )
        }
    };
    let key_log = args.capture_secrets.then(|| Arc::new(KeyLogBuffer::new()));
    if let Some(log) = &key_log {
        config.key_log = Some(log.clone());
    }
    let verdicts: crate::replay::VerdictLog = Arc::default();
    let verifier = match (verifier, args.capture_secrets) {
        (Some(v), true) => Some(crate::replay::recording_verifier(v, verdicts.clone())),
        (v, _) => v,
    };
    let capture = match &args.capture {
        None => None,
        Some(path) => {
            let (tap, start) = wall_clock_capture(path, &args.radio)
                .map_err(|e| usage(format!("{e}; check the --capture path")))?;
            Some((path.clone(), tap, start))
        }
    };
    let opts = LiveOptions {
        params: ProvisioningParams {
            net_key: net_key.clone(),
            net_key_index: 0,
            flags: 0,
            iv_index,
        },
        pb_adv,
        bearer: args.bearer,
        max_concurrent: 1,
        deadline: Duration::from_secs(120),
        discovery_timeout: Duration::from_secs(30),
        cert_verifier: verifier,
        // Recording the secrets: the run's randomness comes from one fresh seed drawn from the
        // operating system, written to the sidecar, so that the session can be replayed.
        seed: match args.capture_secrets {
            true => {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).map_err(|e| failure(format!("no randomness: {e}")))?;
                Some(u64::from_le_bytes(b))
            }
            false => None,
        },
    };
    let target = LiveTarget {
        uuid: args.uuid,
        name: String::new(),
        config,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failure(format!("cannot start the runtime: {e}")))?;
    let mut memory = MemorySink::default();
    let sink: &mut dyn NodeSink = match &mut store {
        Some((s, ..)) => s,
        None => &mut memory,
    };
    let (oob_tx, oob_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut adv_interval = Duration::from_millis(20);
    let live_report = rt.block_on(async {
        let radio = open().await?;
        adv_interval = radio.adv_interval();
        let targets = std::slice::from_ref(&target);
        let mut ask = |ev: &LiveEvent| prompt_installer(ev, &oob_tx);
        match &capture {
            Some((_, tap, start)) => {
                let mut radio = TappedRadio::starting_at(radio, tap.clone() as SharedTap, *start);
                live::provision(&mut radio, targets, &opts, sink, Some(oob_rx), &mut ask).await
            }
            None => {
                let mut radio = radio;
                live::provision(&mut radio, targets, &opts, sink, Some(oob_rx), &mut ask).await
            }
        }
    });
    // The recording is finished and its sidecar written whatever happened: a failed session
    // is what a capture is most often wanted for.
    let capture = match capture {
        None => None,
        Some((path, tap, _)) => {
            let stats = finish_capture(&tap).map_err(|e| failure(e.to_string()))?;
            let mut sidecar = KeySidecar::new(&path, &args.radio, None);
            sidecar.iv_index = iv_index;
            if !add_store_keys(&mut sidecar, store.as_ref().map(|s| &s.0)) {
                sidecar.add_net_key(0, &net_key);
            }
            let result = live_report.as_ref().ok().and_then(|r| r.results.first());
            if let Some(r) = result
                && let Ok(o) = &r.outcome
            {
                sidecar.add_device_key(o.address, o.elements, &r.uuid, &o.device_key);
            }
            if let Some(log) = &key_log {
                // One device per run: every session logged is its.
                let uuid = args.uuid.to_string();
                sidecar.set_secrets(None, &log.entries(), |_| Some(uuid.clone()));
            }
            if let Some(seed) = opts.seed {
                let epoch = match tap.lock() {
                    Ok(t) => t.epoch(),
                    Err(p) => p.into_inner().epoch(),
                };
                let address = live_report
                    .as_ref()
                    .ok()
                    .and_then(|r| r.results.first())
                    .and_then(|r| r.outcome.as_ref().ok())
                    .map(|o| o.address);
                sidecar.replay = Some(crate::replay::live_spec(
                    &opts,
                    &target,
                    seed,
                    adv_interval,
                    epoch,
                    address,
                    &match verdicts.lock() {
                        Ok(v) => v.clone(),
                        Err(p) => p.into_inner().clone(),
                    },
                ));
            }
            sidecar.fill_wireshark_options();
            let keys = sidecar_path(&path);
            sidecar.write(&keys).map_err(|e| failure(e.to_string()))?;
            Some(CaptureSummary {
                file: path.display().to_string(),
                keys: keys.display().to_string(),
                packets: stats.packets,
                secrets: args.capture_secrets,
            })
        }
    };
    let recorded = |message: String| match &capture {
        Some(c) => format!(
            "{message} (the session was recorded in {}, keys in {})",
            c.file, c.keys
        ),
        None => message,
    };
    let live_report = live_report.map_err(|e| failure(recorded(e.to_string())))?;
    let Some(r) = live_report.results.into_iter().next() else {
        return Err(failure("no result".into()));
    };
    match r.outcome {
        Ok(o) => {
            let mut rep = report(
                args,
                String::new(),
                &o,
                store.as_ref().map(|s| s.1.as_path()),
                r.elapsed,
                live_report.retransmissions,
                "wall time",
            );
            rep.capture = capture;
            Ok(rep)
        }
        Err(e) => Err(failure(recorded(failure_message(
            &e,
            r.voided.filter(|_| store.is_some()),
        )))),
    }
}

/// Asks the installer on the terminal: Output OOB is read from stdin on its own thread (the
/// session keeps running meanwhile); Input OOB is shown on stderr.
fn prompt_installer(
    ev: &LiveEvent,
    answers: &tokio::sync::mpsc::UnboundedSender<(SessionId, OobValue)>,
) {
    match ev {
        LiveEvent::OutputOobRequested {
            session,
            uuid,
            action,
            size,
        } => {
            eprintln!(
                "Device {uuid} outputs a value ({action:?}, up to {size} characters): type what it shows and press Enter"
            );
            let tx = answers.clone();
            let session = *session;
            let numeric = !matches!(*action, OutputOobAction::OUTPUT_ALPHANUMERIC);
            std::thread::spawn(move || {
                let mut line = String::new();
                if std::io::stdin().read_line(&mut line).is_ok() {
                    let v = if numeric {
                        line.trim().parse::<u128>().ok().map(OobValue::Numeric)
                    } else {
                        OobValue::alphanumeric(&line).ok()
                    };
                    match v {
                        Some(v) => {
                            let _ = tx.send((session, v));
                        }
                        None => eprintln!(
                            "not a valid value: the session will time out; run the command again"
                        ),
                    }
                }
            });
        }
        LiveEvent::InputOobDisplay {
            uuid,
            value,
            action,
        } => {
            eprintln!(
                "Enter {} on device {uuid} ({action:?})",
                value.expose_secret()
            );
        }
        LiveEvent::Started { .. } | LiveEvent::Finished { .. } => {}
    }
}

/// Time zero of the simulated air in a capture: now, to the second (so that the capture's
/// dates are plausible; the section header says the times are virtual).
pub fn capture_epoch() -> Duration {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(now.as_secs())
}

/// Flushes a capture; its first error, if any.
pub fn finish_capture<W: std::io::Write>(
    tap: &Mutex<CaptureTap<W>>,
) -> Result<CaptureStats, CaptureError> {
    match tap.lock() {
        Ok(mut t) => t.finish(),
        Err(poisoned) => poisoned.into_inner().finish(),
    }
}

/// Adds the store's NetKeys and AppKeys to a sidecar; false when there is no store (or it
/// cannot be read), and the caller adds the run's NetKey itself.
fn add_store_keys(s: &mut KeySidecar, store: Option<&Store>) -> bool {
    let Some((st, info)) = store.and_then(|st| st.network().ok().map(|i| (st, i))) else {
        return false;
    };
    for n in &info.net_keys {
        if let Ok(k) = st.net_key(n.index) {
            s.add_net_key(n.index, &k);
        }
    }
    for a in &info.app_keys {
        if let Ok(k) = st.app_key(a.index) {
            s.add_app_key(a.index, a.bound_net_key, &k);
        }
    }
    true
}

/// What the key sidecar of a simulated provisioning run is made of.
struct RunKeys<'a> {
    building: &'a Building,
    store: Option<&'a Store>,
    net_key: Option<&'a mesh_crypto::NetKey>,
    iv_index: Option<u32>,
    result: Option<&'a DeviceResult>,
    seed: u64,
    key_log: Option<&'a KeyLogBuffer>,
}

impl RunKeys<'_> {
    /// The network's keys (the store's NetKeys and AppKeys; otherwise the building's NetKey,
    /// or the one the device received), the new node's device key, and the session secrets
    /// when a key log was kept.
    fn sidecar(&self, capture: &Path, radio: &str, epoch: Duration) -> KeySidecar {
        let mut s = KeySidecar::new(capture, radio, Some(epoch));
        s.iv_index = self.iv_index.unwrap_or(self.building.network.iv_index);
        if !add_store_keys(&mut s, self.store) {
            let index = self.building.network.net_key_index;
            if let Some(k) = self.net_key {
                s.add_net_key(index, k);
            } else if let Some(k) = self.building.network.net_key {
                s.add_net_key(index, &mesh_crypto::NetKey::from_bytes(k));
            } else if let Some(DeviceState::Provisioned {
                net_key,
                net_key_index,
                ..
            }) = self.result.map(|r| &r.device_state)
            {
                // A NetKey drawn from the seed: the device knows it.
                s.add_net_key(*net_key_index, net_key);
            }
        }
        if let Some(r) = self.result
            && let Ok(o) = &r.outcome
        {
            s.add_device_key(o.address, o.elements, &r.uuid, &o.device_key);
        }
        if let Some(log) = self.key_log {
            let result = self.result;
            s.set_secrets(Some(self.seed), &log.entries(), |session| {
                // The device received the provisioner's public key: 0x03 ‖ X ‖ Y.
                result
                    .filter(|r| {
                        r.device_transcript.iter().any(|e| {
                            e.direction == crate::provisioning::Direction::Received
                                && e.bytes.first() == Some(&0x03)
                                && e.bytes.get(1..) == Some(session)
                        })
                    })
                    .map(|r| r.uuid.to_string())
            });
        }
        s.fill_wireshark_options();
        s
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
    /// Record the whole run to this pcapng file (and its key sidecar beside it).
    pub capture: Option<PathBuf>,
    /// Also write the session secrets and the replay information to the sidecar.
    pub capture_secrets: bool,
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
            "--all provisions a simulated building; radio '{}' is not one: use --radio sim:FILE.toml (or give one UUID)",
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
    let mut store = open_store_path(args.store.as_deref(), args.network.as_deref())?;
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
    let mut config = policy.config.clone();
    let key_log = args.capture_secrets.then(|| Arc::new(KeyLogBuffer::new()));
    if let Some(log) = &key_log {
        config.key_log = Some(log.clone());
    }
    let verdicts: crate::replay::VerdictLog = Arc::default();
    let verifier = match (policy.verifier.clone(), args.capture_secrets) {
        (Some(v), true) => Some(crate::replay::recording_verifier(v, verdicts.clone())),
        (v, _) => v,
    };
    let epoch = capture_epoch();
    let capture = match &args.capture {
        None => None,
        Some(path) => {
            let tap = CaptureTap::create(path, &section_comment(&args.radio, epoch, true), epoch)
                .map_err(|e| usage(format!("{e}; check the --capture path")))?;
            Some((path.clone(), Arc::new(Mutex::new(tap))))
        }
    };
    let opts = RunOptions {
        config,
        cert_verifier: verifier,
        tap: capture.as_ref().map(|(_, t)| t.clone() as SharedTap),
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
        policy.adjust(
            &args.auth,
            args.bearer,
            spec.static_oob.clone(),
            spec.mtu,
            config,
        );
    })
    .map_err(|e| usage(e.to_string()))?;
    if let Some((path, tap)) = &capture {
        finish_capture(tap).map_err(|e| failure(e.to_string()))?;
        let mut s = KeySidecar::new(path, &args.radio, Some(epoch));
        s.iv_index = report.params.iv_index;
        if !add_store_keys(&mut s, store.as_ref().map(|(st, _)| st)) {
            s.add_net_key(report.params.net_key_index, &report.params.net_key);
        }
        for r in &report.results {
            if let Ok(o) = &r.outcome {
                s.add_device_key(o.address, o.elements, &r.uuid, &o.device_key);
            }
        }
        if let Some(log) = &key_log {
            s.set_secrets(Some(args.seed), &log.entries(), |session| {
                // The device that received this provisioner public key: 0x03 ‖ X ‖ Y.
                report
                    .results
                    .iter()
                    .find(|r| {
                        r.device_transcript.iter().any(|e| {
                            e.direction == crate::provisioning::Direction::Received
                                && e.bytes.first() == Some(&0x03)
                                && e.bytes.get(1..) == Some(session)
                        })
                    })
                    .map(|r| r.uuid.to_string())
            });
            let verdicts = match verdicts.lock() {
                Ok(v) => v.clone(),
                Err(p) => p.into_inner().clone(),
            };
            s.replay = Some(crate::replay::sim_spec(
                &building, &targets, &opts, &report, epoch, &verdicts,
            ));
        }
        s.fill_wireshark_options();
        s.write(&sidecar_path(path))
            .map_err(|e| failure(e.to_string()))?;
    }
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
                error: failure_message(e, r.voided.filter(|_| store.is_some())),
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

/// The store of `--store` or `--network`, if one was asked for (it must exist).
fn open_store_path(
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
    let mut s = Store::open(&path).map_err(|e| ProvisionFailure {
        exit_code: crate::exit::FAILURE,
        message: e.to_string(),
        uuid: None,
    })?;
    // An encrypted store: its passphrase before any session starts.
    crate::tools::passphrase::unlock(&mut s, crate::tools::passphrase::Prompt::Terminal).map_err(
        |f| ProvisionFailure {
            exit_code: f.exit_code,
            message: f.message,
            uuid: None,
        },
    )?;
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
        let mut s = if self.name.is_empty() {
            format!("Provisioned {}\n", self.uuid)
        } else {
            format!("Provisioned {} ({})\n", self.uuid, self.name)
        };
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
            "  time        {:.2} s of {}, {} retransmissions\n",
            self.time_ms as f64 / 1000.0,
            self.time_kind,
            self.retransmissions
        );
        if let Some(c) = &self.capture {
            s += &format!(
                "  capture     {} ({} packets), keys in {}{}\n",
                c.file,
                c.packets,
                c.keys,
                if c.secrets {
                    " with the session secrets"
                } else {
                    ""
                }
            );
        }
        s
    }
}
