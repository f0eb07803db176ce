//! Provisioning on the simulated air, in virtual time: one provisioner with one PB-ADV
//! [`Links`] table (or one GATT connection per device) runs a [`Provisioner`] session per
//! device, up to a concurrency limit, against the building's virtual devices.
//!
//! This is the synchronous, virtual-time driver over the sans-IO cores; it serves
//! `meshprov provision --radio sim:FILE` and the tests. Output and Input OOB are answered by a
//! simulated installer who reads the device's display or types on the device after
//! [`INSTALLER_DELAY`]. Certificate-based provisioning ([`ProvisionerConfig::records`]) asks
//! [`RunOptions::cert_verifier`] for the verdict on each device's certificate chain.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use mesh_crypto::NetKey;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::bearer::pb_adv::{CloseCause, PbAdvConfig};
use crate::host::{Host, HostEvent, Session, SessionId};
use crate::provisioning::{
    AlgorithmPolicy, AuthPolicy, OobValue, Outcome, ProvisionerConfig, ProvisioningError,
    ProvisioningParams, TranscriptEntry,
};
use crate::radio::sim::{AdvPattern, AirStats, Delivery, EndpointId, RxFilter, SimAir};
use crate::sim::building::{Building, DeviceSpec};
use crate::sim::node::{AD_TYPE_PB_ADV, DeviceState, INSTALLER_DELAY, VirtualDevice};
use crate::time::Instant;
use crate::uuid::DeviceUuid;

/// The provisioning bearer to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BearerChoice {
    /// PB-ADV (MshPRT v1.1 §5.2.1).
    Adv,
    /// PB-GATT (§5.2.2).
    Gatt,
}

impl BearerChoice {
    /// `adv` or `gatt`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Adv => "pb-adv",
            Self::Gatt => "pb-gatt",
        }
    }
}

pub use crate::host::CertVerifier;

/// Options of a simulated provisioning run.
#[derive(Clone)]
pub struct RunOptions {
    /// Algorithm, authentication and the other session policies.
    pub config: ProvisionerConfig,
    /// PB-ADV or PB-GATT.
    pub bearer: BearerChoice,
    /// Seed of every random choice: the air, Link IDs, keys, randoms.
    pub seed: u64,
    /// Overrides the building's advertising loss.
    pub loss: Option<f64>,
    /// The NetKey to hand out; otherwise the building's, otherwise one from the seed.
    pub net_key: Option<NetKey>,
    /// The IV Index to hand out; otherwise the building's.
    pub iv_index: Option<u32>,
    /// Sessions in flight at once.
    pub max_concurrent: usize,
    /// Give up on the whole run after this much virtual time.
    pub deadline: Duration,
    /// ATT MTU the provisioner asks for on PB-GATT (the device's limit applies too).
    pub att_mtu: u16,
    /// Judges certificate chains when [`ProvisionerConfig::records`] fetches them; without one
    /// every certificate is rejected.
    pub cert_verifier: Option<CertVerifier>,
    /// Taps the provisioner's radio: a capture records what it sends and receives.
    pub tap: Option<crate::radio::capture::SharedTap>,
}

impl fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunOptions")
            .field("config", &self.config)
            .field("bearer", &self.bearer)
            .field("seed", &self.seed)
            .field("loss", &self.loss)
            .field("net_key", &self.net_key)
            .field("iv_index", &self.iv_index)
            .field("max_concurrent", &self.max_concurrent)
            .field("deadline", &self.deadline)
            .field("att_mtu", &self.att_mtu)
            .field("cert_verifier", &self.cert_verifier.as_ref().map(|_| "Fn"))
            .field("tap", &self.tap.as_ref().map(|_| "AirTap"))
            .finish()
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            config: ProvisionerConfig {
                algorithm: AlgorithmPolicy::Auto,
                auth: AuthPolicy::default(),
                ..ProvisionerConfig::default()
            },
            bearer: BearerChoice::Adv,
            seed: 1,
            loss: None,
            net_key: None,
            iv_index: None,
            max_concurrent: 64,
            deadline: Duration::from_secs(3600),
            att_mtu: 517,
            cert_verifier: None,
            tap: None,
        }
    }
}

pub use crate::host::{MemorySink, NodeRecord, NodeSink};

/// How one device's session ended.
#[derive(Debug)]
pub struct DeviceResult {
    /// The device.
    pub uuid: DeviceUuid,
    /// Success with its outcome, or the error.
    pub outcome: Result<Outcome, ProvisioningError>,
    /// Virtual time from the first packet of the session to its end.
    pub elapsed: Duration,
    /// The bearer used.
    pub bearer: BearerChoice,
    /// What the device itself ended with (its own view of the keys).
    pub device_state: DeviceState,
    /// Every provisioning PDU the device sent and received.
    pub device_transcript: Vec<TranscriptEntry>,
    /// How the device saw its PB-ADV link close (`None` on PB-GATT or if it never closed).
    pub device_link_close: Option<CloseCause>,
    /// The node committed and then voided because the device refused its Provisioning Data
    /// ([`crate::host::Session::voided`]): first address and element count, retired.
    pub voided: Option<(u16, u8)>,
}

/// The whole run.
#[derive(Debug)]
pub struct RunReport {
    /// One result per requested device, in the order asked.
    pub results: Vec<DeviceResult>,
    /// Virtual time of the whole run.
    pub virtual_time: Duration,
    /// What the air did.
    pub air: AirStats,
    /// PB-ADV retransmissions by the provisioner.
    pub retransmissions: u64,
    /// Seed of the PB-ADV link table's RNG (Link IDs, retransmission jitter).
    pub link_rng_seed: u64,
    /// What the provisioner handed out (NetKey, its index, flags, IV Index).
    pub params: ProvisioningParams,
    /// What the driver did for each session, in the order opened (index = session id): the
    /// inputs a replay of the run's capture needs besides the packets ([`crate::replay`]).
    pub sessions: Vec<SessionLog>,
}

/// One session of a run as its driver ran it: when it opened, what it was configured with,
/// the seed of its randomness and what the simulated installer answered, and when.
#[derive(Debug, Clone)]
pub struct SessionLog {
    /// Index of its device in the targets.
    pub device: usize,
    /// When the session was opened.
    pub opened: Instant,
    /// PB-GATT: when the connection was ready (notifications enabled).
    pub gatt_ready: Option<Instant>,
    /// PB-GATT: the ATT MTU.
    pub mtu: Option<u16>,
    /// Seed of the session's RNG (ECDH key, random, Input OOB value).
    pub rng_seed: u64,
    /// Its configuration (policies; the key log is not part of it).
    pub config: ProvisionerConfig,
    /// Output OOB: when the installer entered the value the device showed, and the value.
    pub output_oob: Option<(Instant, OobValue)>,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A requested UUID is not in the building file.
    #[error(
        "device {0} is not in the building file; `meshprov provision` takes a UUID listed there"
    )]
    UnknownDevice(DeviceUuid),
    /// The device cannot be reached over the chosen bearer.
    #[error("device {uuid} does not support {bearer}; use --bearer {other}")]
    BearerUnsupported {
        /// The device.
        uuid: DeviceUuid,
        /// What was asked.
        bearer: &'static str,
        /// What it supports.
        other: &'static str,
    },
}

/// The simulated installer's part in one session: reading the device's output, typing on it.
#[derive(Default)]
struct Installer {
    output_pending: bool,
    output_at: Option<Instant>,
    input_value: Option<OobValue>,
    input_at: Option<Instant>,
    gatt_ready_at: Option<Instant>,
}

/// Provisions `targets` (UUIDs from the building file) on a fresh simulated air. Addresses
/// come from `sink`, each device taking its element count.
pub fn run(
    building: &Building,
    targets: &[DeviceUuid],
    opts: &RunOptions,
    sink: &mut dyn NodeSink,
) -> Result<RunReport, RunError> {
    run_with(building, targets, opts, sink, |_, _| {})
}

/// [`run`], with `per_device` adjusting each session's configuration from its device's spec
/// (for example its static OOB value, as a plan gives it).
pub fn run_with(
    building: &Building,
    targets: &[DeviceUuid],
    opts: &RunOptions,
    sink: &mut dyn NodeSink,
    mut per_device: impl FnMut(&DeviceSpec, &mut ProvisionerConfig),
) -> Result<RunReport, RunError> {
    let mut air_config = building.air.clone();
    if let Some(loss) = opts.loss {
        air_config.loss = loss;
    }
    let mut air = SimAir::new(air_config, opts.seed);
    let me = air.add_endpoint();
    air.set_floor(me, building.provisioner.floor);
    // The session driver takes PB-ADV only: beacons and network PDUs would be dropped (and a
    // capture of the provisioner's radio shows what it takes).
    air.set_rx_filter(
        me,
        RxFilter::Patterns(vec![AdvPattern {
            ad_type: AD_TYPE_PB_ADV,
            offset: 0,
            bytes: Vec::new(),
        }]),
    );
    if let Some(tap) = &opts.tap {
        air.set_tap(me, tap.clone());
    }
    let mut devices = Vec::with_capacity(targets.len());
    for (i, uuid) in targets.iter().enumerate() {
        let spec = building
            .device(uuid)
            .ok_or(RunError::UnknownDevice(*uuid))?
            .clone();
        match opts.bearer {
            BearerChoice::Adv if !spec.pb_adv => {
                return Err(RunError::BearerUnsupported {
                    uuid: *uuid,
                    bearer: "pb-adv",
                    other: "gatt",
                });
            }
            BearerChoice::Gatt if !spec.pb_gatt => {
                return Err(RunError::BearerUnsupported {
                    uuid: *uuid,
                    bearer: "pb-gatt",
                    other: "adv",
                });
            }
            _ => {}
        }
        let ep = air.add_endpoint();
        let mut dev = VirtualDevice::new(spec, ep, opts.seed.wrapping_add(1000 + i as u64));
        dev.attach(&mut air);
        devices.push(dev);
    }
    let net_key = opts
        .net_key
        .clone()
        .unwrap_or_else(|| match building.network.net_key {
            Some(k) => NetKey::from_bytes(k),
            None => NetKey::generate(&mut ChaCha20Rng::seed_from_u64(opts.seed ^ 0x4e45_544b)),
        });
    let params = ProvisioningParams {
        net_key,
        net_key_index: building.network.net_key_index,
        flags: 0,
        iv_index: opts.iv_index.unwrap_or(building.network.iv_index),
    };

    let link_rng_seed = opts.seed ^ 0x4c49_4e4b;
    let mut host = Host::new(
        params.clone(),
        PbAdvConfig::default(),
        Box::new(ChaCha20Rng::seed_from_u64(link_rng_seed)),
        opts.cert_verifier.clone(),
    );
    let mut logs: Vec<SessionLog> = Vec::with_capacity(devices.len());
    // Device index by session and by air endpoint, and the installer's part per session.
    let mut waiting: VecDeque<usize> = (0..devices.len()).collect();
    let mut session_of: Vec<Option<SessionId>> = vec![None; devices.len()];
    let mut device_of: Vec<usize> = Vec::with_capacity(devices.len());
    let mut installers: Vec<Installer> = Vec::with_capacity(devices.len());
    let by_endpoint: BTreeMap<EndpointId, usize> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| (d.endpoint, i))
        .collect();
    // Devices whose session may still do something, in index order (= session order); a
    // device whose session has finished and that is quiet leaves it, and comes back when it
    // receives something. Only these are visited, so an instant costs what the live sessions
    // cost, not what all devices do.
    let mut live: BTreeSet<usize> = BTreeSet::new();
    let deadline = Instant::ZERO + opts.deadline;
    let mut now = air.now();
    let mut staged: Option<Vec<u8>> = None;

    loop {
        // Start sessions up to the limit.
        for _ in host.active()..opts.max_concurrent {
            let Some(i) = waiting.pop_front() else { break };
            let rng_seed = opts.seed.wrapping_add(2000 + i as u64);
            let rng = Box::new(ChaCha20Rng::seed_from_u64(rng_seed));
            let mut config = opts.config.clone();
            per_device(&devices[i].spec, &mut config);
            let mut log = SessionLog {
                device: i,
                opened: now,
                gatt_ready: None,
                mtu: None,
                rng_seed,
                config: ProvisionerConfig {
                    key_log: None,
                    ..config.clone()
                },
                output_oob: None,
            };
            let uuid = devices[i].spec.uuid;
            let name = devices[i].spec.name.clone();
            let mut installer = Installer::default();
            let id = match opts.bearer {
                BearerChoice::Adv => host.open_adv(now, uuid, name, config, rng),
                BearerChoice::Gatt => {
                    // Connection set-up and MTU exchange take a few connection intervals.
                    let mtu = opts.att_mtu.min(devices[i].spec.mtu);
                    devices[i].gatt_connected(me, mtu);
                    installer.gatt_ready_at = Some(now + Duration::from_millis(150));
                    log.gatt_ready = installer.gatt_ready_at;
                    log.mtu = Some(mtu);
                    host.open_gatt(now, uuid, name, config, rng, mtu)
                }
            };
            debug_assert_eq!(id.0, device_of.len());
            device_of.push(i);
            logs.push(log);
            installers.push(installer);
            session_of[i] = Some(id);
            live.insert(i);
        }

        // Let everything settle at this instant.
        loop {
            let mut progress = false;
            while let Some(d) = air.pop_due() {
                progress = true;
                if d.to() == me {
                    match &d {
                        Delivery::Adv { ad_type, data, .. } if *ad_type == AD_TYPE_PB_ADV => {
                            host.handle_adv(now, data);
                        }
                        Delivery::Adv { .. } => {}
                        Delivery::Gatt { from, data, .. } => {
                            if let Some(id) = by_endpoint.get(from).and_then(|i| session_of[*i]) {
                                host.handle_gatt(now, id, data);
                            }
                        }
                    }
                } else if let Some(&i) = by_endpoint.get(&d.to()) {
                    devices[i].handle_delivery(now, &d);
                    if session_of[i].is_some() {
                        live.insert(i);
                    }
                }
            }
            for k in live.iter().filter_map(|&i| session_of[i]) {
                let inst = &mut installers[k.0];
                if let Some(t) = inst.gatt_ready_at
                    && now >= t
                {
                    inst.gatt_ready_at = None;
                    host.gatt_ready(now, k);
                }
            }
            progress |= host.drive(now, sink);
            while let Some((id, seg)) = host.poll_gatt_transmit() {
                progress = true;
                air.gatt_send(me, devices[device_of[id.0]].endpoint, &seg);
            }
            while let Some(ev) = host.poll_event() {
                progress = true;
                match ev {
                    HostEvent::OutputOobRequested { session, .. } => {
                        installers[session.0].output_pending = true;
                    }
                    HostEvent::InputOobDisplay { session, value, .. } => {
                        installers[session.0].input_value = Some(value);
                    }
                    HostEvent::Finished { session } => {
                        let dev = &mut devices[device_of[session.0]];
                        if opts.bearer == BearerChoice::Gatt {
                            dev.gatt_disconnected();
                        }
                    }
                }
            }
            // The simulated installer.
            for &i in &live {
                let Some(SessionId(k)) = session_of[i] else {
                    continue;
                };
                let inst = &mut installers[k];
                let dev = &mut devices[i];
                if inst.output_pending && inst.output_at.is_none() && dev.displayed().is_some() {
                    inst.output_at = Some(now + INSTALLER_DELAY);
                }
                if let (true, Some(t)) = (inst.output_pending, inst.output_at)
                    && now >= t
                {
                    inst.output_pending = false;
                    if let Some(v) = dev.displayed().cloned() {
                        logs[k].output_oob = Some((now, v.clone()));
                        let _ = host.provide_output_oob(now, SessionId(k), v);
                        progress = true;
                    }
                }
                if inst.input_value.is_some() && inst.input_at.is_none() && dev.input_requested() {
                    inst.input_at = Some(now + INSTALLER_DELAY);
                }
                if let Some(t) = inst.input_at
                    && now >= t
                    && let Some(v) = inst.input_value.take()
                {
                    dev.enter_input(now, v);
                    progress = true;
                }
            }
            for &i in &live {
                devices[i].pump(now, &mut air);
            }
            // One advertisement per radio interval; the backlog stays in the bearer, which
            // withdraws segments that an ack made stale.
            if staged.is_none() {
                staged = host.poll_adv_transmit(now);
            }
            if air.adv_ready_at(me) <= now
                && let Some(payload) = staged.take()
            {
                progress = true;
                air.advertise(me, AD_TYPE_PB_ADV, &payload);
            }
            if !progress {
                break;
            }
        }

        // Devices whose session has ended, with nothing left to do, leave the live set.
        live.retain(|&i| {
            !session_of[i]
                .and_then(|id| host.session(id))
                .is_some_and(|s| s.is_finished())
                || devices[i].poll_timeout_with(&air).is_some()
        });
        if waiting.is_empty() && host.is_idle() && staged.is_none() {
            break;
        }
        // Next instant anything happens.
        let mut next: Option<Instant> = air.next_delivery();
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(host.poll_timeout());
        consider(staged.as_ref().map(|_| air.adv_ready_at(me)));
        for inst in live
            .iter()
            .filter_map(|&i| session_of[i])
            .map(|k| &installers[k.0])
        {
            consider(inst.gatt_ready_at);
            consider(inst.output_at.filter(|_| inst.output_pending));
            consider(inst.input_at.filter(|_| inst.input_value.is_some()));
        }
        for &i in &live {
            consider(devices[i].poll_timeout_with(&air));
        }
        let Some(t) = next else { break };
        if t > deadline {
            break;
        }
        let t = t.max(now);
        air.advance_to(t);
        now = air.now();
        host.handle_timeout(now);
        for &i in &live {
            devices[i].handle_timeout(now);
        }
    }

    let virtual_time = now.since_epoch();
    let retransmissions = host.retransmissions();
    let mut sessions: Vec<Option<Session>> = host.into_sessions().into_iter().map(Some).collect();
    let mut results = Vec::with_capacity(targets.len());
    for (i, dev) in devices.into_iter().enumerate() {
        let (outcome, elapsed, voided) = match session_of[i].and_then(|id| sessions[id.0].take()) {
            Some(s) => {
                let elapsed = s.elapsed(now);
                let voided = s.voided();
                (
                    s.result.unwrap_or(Err(ProvisioningError::Timeout)),
                    elapsed,
                    voided,
                )
            }
            None => (Err(ProvisioningError::Timeout), Duration::ZERO, None),
        };
        results.push(DeviceResult {
            uuid: dev.spec.uuid,
            outcome,
            elapsed,
            bearer: opts.bearer,
            device_state: dev.state().clone(),
            device_transcript: dev.transcript().to_vec(),
            device_link_close: dev.link_closed(),
            voided,
        });
    }
    Ok(RunReport {
        results,
        virtual_time,
        air: air.stats(),
        retransmissions,
        link_rng_seed,
        params,
        sessions: logs,
    })
}
