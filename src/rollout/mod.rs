//! Building-wide rollout: a plan ([`plan`]), the engine that provisions and configures many
//! devices at once ([`engine`]), the templates' Config messages ([`template`]), and the drivers
//! that run the engine on a radio: [`sim_driver`] on the simulated air in virtual time,
//! [`live_driver`] in real time over any [`Radio`](crate::radio::Radio).
//!
//! # The API a front end uses (CLI, TUI)
//!
//! - **Start**: [`plan::Plan::load`], [`open_store`] (creates the plan's network in its store on
//!   first use), then [`sim_driver::run`] or [`live_driver::run`] with an [`Observer`].
//! - **Events**: the driver hands every [`RolloutEvent`] to [`Observer::event`] as it happens;
//!   serialised with serde they are the JSON lines of `meshprov rollout --json` (README, "JSON
//!   lines"): `discovered`, `resumed`, `scheduled`, `provisioning_started`, `link_opened`,
//!   `capabilities`, `oob_requested`, `oob_display`, `authenticated`, `provisioned`,
//!   `configuring_started`, `configured`, `verifying_started`, `done`, `retrying`, `failed`,
//!   `skipped`, `excluded`, `identify`, `paused`, `unpaused`, `stopping`, and last `summary`.
//! - **Snapshot**: [`Observer::tick`] receives the [`Engine`] between steps;
//!   [`Engine::snapshot`] gives every device's [`DeviceStatus`] (stage, attempt, time in stage,
//!   planned and used authentication, address, last error, location, per-phase timings,
//!   provisioning transcript and Composition Data once known).
//! - **Commands**: [`Observer::tick`] returns [`Command`]s — pause, resume, stop,
//!   retry/skip/exclude/identify a device, answer an Output OOB prompt — applied at once.
//!   `identify` sets the Attention Timer through the Invite's Attention Duration of the
//!   device's next provisioning attempt (MshPRT v1.1 §5.4.1.1); meshprov has no Health client
//!   yet, so a node already provisioned cannot be made to blink (the `identify` event says so).
//!
//! # Crash safety and resume
//!
//! Each node is committed to the store (device key, addresses, location) before its
//! Provisioning Data goes out ([`crate::host::NodeSink`]). A device that answers the Data with
//! Provisioning Failed took no key: its commit is voided at once ([`NodeSink::void`]: no node,
//! addresses retired, journal `unconfirmed-void`) and it fails with the code, not retried
//! ([`retryable`]). A rerun of the same plan starts
//! every device the store has from its stored stage: `provisioned`/`unconfirmed` nodes are
//! configured (their whole template again: every request is idempotent), `configured` ones are
//! done and get no message at all, `excluded` ones are left alone. A plan whose devices are
//! all configured does nothing and says so.

pub mod engine;
mod jobs;
pub mod live_driver;
pub mod plan;
pub mod sim_driver;
pub mod template;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use mesh_crypto::NetKey;

pub use engine::{
    Action, Command, DeviceStatus, Engine, EngineConfig, EngineDevice, EventKind, Phase,
    PhaseTimings, RolloutEvent, Stage, Summary,
};
pub use plan::{AuthMethod, Plan, PlanError, PlannedDevice};

use crate::cert::{Policy as CertPolicy, TrustStore, verify_device_chain};
use crate::host::{CertVerifier, NodeRecord, NodeSink};
use crate::provisioning::{AuthPolicy, OobValue, ProvisionerConfig, RecordsPolicy};
use crate::sim::run::BearerChoice;
use crate::store::{Location, NetworkOptions, NodeState, Store, StoreError};
use crate::time::Instant;
use crate::uuid::DeviceUuid;

/// Why a rollout could not run (a device that fails is not an error: it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The plan is wrong (line and field named).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The command line or the plan's environment is wrong (a radio that does not exist, a
    /// building file that does not parse, a trust directory that cannot be read).
    #[error("{0}")]
    Usage(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The radio failed.
    #[error("radio: {0}")]
    Radio(String),
}

impl RolloutError {
    /// The process exit code: 2 for plan and usage errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            RolloutError::Plan(_) | RolloutError::Usage(_) => crate::exit::USAGE,
            RolloutError::Store(_) | RolloutError::Radio(_) => crate::exit::FAILURE,
        }
    }
}

/// What a front end sees of a running rollout.
pub trait Observer {
    /// One event, in order.
    fn event(&mut self, event: &RolloutEvent);
    /// Called between steps of the run (after each settled instant on the simulated air, at
    /// least every 100 ms in real time) with the engine, for snapshots; returns commands to
    /// apply now.
    fn tick(&mut self, engine: &Engine) -> Vec<Command> {
        let _ = engine;
        Vec::new()
    }
    // --- pacing and keeping the run open (the terminal UI, issue 9) ---
    /// The simulated driver is about to move virtual time from `now` to `next` (`None`:
    /// nothing is scheduled). Returns the instant to move to: `next` by default (unpaced, as
    /// fast as the CPU goes), or an earlier instant (never before `now`) when the observer
    /// has commands to hand over at once; `None` ends a run that has nothing scheduled. An
    /// observer that shows the run to a person sleeps here so that virtual time follows wall
    /// time at a chosen speed. The real-time driver does not call it (its time is the wall's).
    fn pace(&mut self, now: Instant, next: Option<Instant>) -> Option<Instant> {
        let _ = now;
        next
    }
    /// Whether the run must go on once every device is finished: a terminal UI keeps it open
    /// until the installer quits (a retry there continues the run). The drivers then keep
    /// ticking (the simulated one through [`Observer::pace`]) instead of returning.
    fn keep_running(&self) -> bool {
        false
    }
    // --- end pacing ---
}

/// An observer that keeps the events (tests, `--report`).
#[derive(Debug, Default)]
pub struct Collect {
    /// Every event so far.
    pub events: Vec<RolloutEvent>,
}

impl Observer for Collect {
    fn event(&mut self, event: &RolloutEvent) {
        self.events.push(event.clone());
    }
}

/// The end of a run.
#[derive(Debug, Clone)]
pub struct RolloutReport {
    /// The counts.
    pub summary: Summary,
    /// Every device's final status.
    pub devices: Vec<DeviceStatus>,
}

impl RolloutReport {
    /// Process exit code: 0 when every planned device is done, 3 when some failed, were
    /// skipped or excluded (or the run was stopped).
    pub fn exit_code(&self) -> i32 {
        let s = &self.summary;
        if s.done == s.devices && !s.stopped {
            crate::exit::SUCCESS
        } else {
            EXIT_INCOMPLETE
        }
    }
}

/// Exit code of a rollout in which some planned devices are not done.
pub const EXIT_INCOMPLETE: i32 = 3;

/// Opens the plan's store, creating it with the plan's network (name, unicast ranges) if it
/// does not exist yet, and makes the plan's `unicast_ranges` this provisioner's, in the plan's
/// order; `rng` makes the NetKey of a new network.
pub fn open_store(plan: &Plan, rng: &mut dyn rand_core::CryptoRng) -> Result<Store, RolloutError> {
    open_store_with(plan, rng, &mut |_| Ok(()))
}

/// [`open_store`], with `unlock` called on the store as soon as it is open, before anything
/// is read or written: it gives an encrypted store its passphrase (README "Secrets at rest").
pub fn open_store_with(
    plan: &Plan,
    rng: &mut dyn rand_core::CryptoRng,
    unlock: &mut dyn FnMut(&mut Store) -> Result<(), RolloutError>,
) -> Result<Store, RolloutError> {
    if let Some(dir) = plan.store.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| RolloutError::Usage(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut store = Store::open(&plan.store)?;
    unlock(&mut store)?;
    if store.network().is_err() {
        let mut options = NetworkOptions::default();
        if let Some(r) = plan.unicast_ranges.first() {
            options.unicast = *r;
        }
        store.create_network_with(&plan.network_name, None, &options, rng)?;
    }
    // The plan's ranges, in its order, are this provisioner's (a plan that changed them since
    // the store was made moves the allocation; nodes keep their addresses).
    if !plan.unicast_ranges.is_empty() {
        let mut current = store.unicast_ranges()?;
        let mut wanted = plan.unicast_ranges.clone();
        current.sort();
        wanted.sort();
        if current != wanted || plan.unicast_ranges.len() > 1 {
            store
                .set_unicast_ranges(&plan.unicast_ranges)
                .map_err(|e| {
                    RolloutError::Usage(format!(
                        "{}: provisioner.unicast_ranges: {e}",
                        plan.path.display()
                    ))
                })?;
        }
    }
    Ok(store)
}

/// What a driver needs to provision and configure one device of the run: a planned device,
/// or an unplanned one the `[discovery]` rule (or the installer) takes, which gets the rule's
/// authentication and template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Its UUID.
    pub uuid: DeviceUuid,
    /// Its name (an unplanned device's is `unplanned-` and the start of its UUID).
    pub name: String,
    /// How it is authenticated.
    pub auth: AuthMethod,
    /// Its template.
    pub template: String,
    /// The element count it must report, when the plan says.
    pub elements: Option<u8>,
    /// Whether it is a `[[device]]` of the plan.
    pub planned: bool,
}

impl Target {
    /// A planned device.
    pub fn planned(d: &PlannedDevice) -> Self {
        Self {
            uuid: d.uuid,
            name: d.name.clone(),
            auth: d.auth.clone(),
            template: d.template.clone(),
            elements: d.elements,
            planned: true,
        }
    }

    /// An unplanned device, as the plan's `[discovery]` rule gives it (the same name, template
    /// and authentication as [`Engine::heard`] and [`Command::Adopt`] give it).
    pub fn unplanned(plan: &Plan, uuid: DeviceUuid) -> Self {
        let short = uuid.to_string();
        Self {
            uuid,
            name: format!("unplanned-{}", &short[..8.min(short.len())]),
            auth: plan.discovery.auth.clone(),
            template: plan.discovery.template.clone(),
            elements: None,
            planned: false,
        }
    }
}

/// Whether a node in the store that is not in the plan belongs to the run: it was taken by the
/// discovery rule (or adopted) in an earlier run, which named it `unplanned-…`, or the plan's
/// enabled rule matches its UUID; and the plan has a `[discovery]` template to finish it with.
pub fn stored_unplanned_belongs(plan: &Plan, node: &crate::store::Node) -> bool {
    let rule = &plan.discovery;
    !rule.template.is_empty()
        && (node.name.starts_with("unplanned-")
            || (rule.enabled && node.uuid.0.starts_with(&rule.uuid_prefix)))
}

/// What a driver needs besides the plan: the engine's devices with their stored stage, the
/// template names resolved in the store, the network's key and IV Index, the certificate
/// verifier.
pub struct Prepared {
    /// The devices for [`Engine::new`]: the plan's, then the unplanned nodes of earlier runs
    /// that are not configured yet ([`stored_unplanned_belongs`]).
    pub devices: Vec<EngineDevice>,
    /// How to provision and configure each of `devices` (same order).
    pub targets: Vec<Target>,
    /// Nodes in the store that are not in the plan (taken by discovery in an earlier run, or
    /// provisioned by other means): never provisioned again, even when heard beaconing.
    pub stored_elsewhere: std::collections::BTreeSet<DeviceUuid>,
    /// AppKeys and groups by name.
    pub resolved: template::Resolved,
    /// The NetKey handed out.
    pub net_key: NetKey,
    /// Its index.
    pub net_key_index: u16,
    /// IV Index.
    pub iv_index: u32,
    /// Judges certificate chains (plans with `cert` devices).
    pub verifier: Option<CertVerifier>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("devices", &self.devices.len())
            .field("net_key_index", &self.net_key_index)
            .finish_non_exhaustive()
    }
}

/// Reads where each planned device stands in `store`, resolves the templates' AppKeys and
/// groups (creating them), and loads the trust roots.
pub fn prepare(
    plan: &Plan,
    store: &mut Store,
    rng: &mut dyn rand_core::CryptoRng,
) -> Result<Prepared, RolloutError> {
    let info = store.network()?;
    let net_key = store.net_key(plan.net_key_index).map_err(|_| {
        RolloutError::Usage(format!(
            "{}: the store has no NetKey {} (plan network.net_key_index)",
            store.path().display(),
            plan.net_key_index
        ))
    })?;
    let resolved =
        template::Resolved::from_store(store, plan.templates.values(), plan.net_key_index, rng)?;
    let mut devices = Vec::with_capacity(plan.devices.len());
    let mut targets = Vec::with_capacity(plan.devices.len());
    let stage_of = |n: &crate::store::Node| match n.state {
        NodeState::Configured => Stage::Done,
        NodeState::Excluded => Stage::Excluded,
        NodeState::Provisioned | NodeState::Unconfirmed => Stage::Committed,
    };
    for d in &plan.devices {
        let stored = match store.node_by_uuid(&d.uuid) {
            Ok(n) => Some((n.address, n.elements, stage_of(&n))),
            Err(StoreError::NoSuchNode(_)) => None,
            Err(e) => return Err(e.into()),
        };
        devices.push(EngineDevice {
            uuid: d.uuid,
            name: d.name.clone(),
            location: d.location.clone(),
            template: d.template.clone(),
            auth: d.auth.kind().to_string(),
            stored,
        });
        targets.push(Target::planned(d));
    }
    // Nodes that are not in the plan: an unplanned device taken in an earlier run that did not
    // get configured is finished now (with the discovery template, never provisioned again);
    // every other one is left alone and is not provisioned again when heard.
    let planned: std::collections::BTreeSet<DeviceUuid> =
        plan.devices.iter().map(|d| d.uuid).collect();
    let mut stored_elsewhere = std::collections::BTreeSet::new();
    for n in store.nodes()? {
        if planned.contains(&n.uuid) {
            continue;
        }
        stored_elsewhere.insert(n.uuid);
        if stage_of(&n) == Stage::Committed && stored_unplanned_belongs(plan, &n) {
            let t = Target {
                name: n.name.clone(),
                ..Target::unplanned(plan, n.uuid)
            };
            devices.push(EngineDevice {
                uuid: n.uuid,
                name: n.name.clone(),
                location: plan::PlanLocation::default(),
                template: t.template.clone(),
                auth: t.auth.kind().to_string(),
                stored: Some((n.address, n.elements, Stage::Committed)),
            });
            targets.push(t);
        }
    }
    let verifier = match &plan.policy.trust {
        Some(dir)
            if plan.devices.iter().any(|d| d.auth == AuthMethod::Cert)
                || plan.discovery.auth == AuthMethod::Cert =>
        {
            let trust = TrustStore::from_dir(dir)
                .map_err(|e| RolloutError::Usage(format!("policy.trust {}: {e}", dir.display())))?;
            let policy = CertPolicy::default();
            Some(Arc::new(
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
            ) as CertVerifier)
        }
        _ => None,
    };
    Ok(Prepared {
        devices,
        targets,
        stored_elsewhere,
        resolved,
        net_key,
        net_key_index: plan.net_key_index,
        iv_index: info.iv_index,
        verifier,
    })
}

/// The provisioning session's configuration for a planned device: its authentication (the
/// only method the plan allows it), the plan's algorithm preference, records on `cert`.
pub fn session_config(
    plan: &Plan,
    auth: &AuthMethod,
    bearer: BearerChoice,
    mtu: u16,
) -> ProvisionerConfig {
    let mut c = ProvisionerConfig {
        algorithm: plan.policy.algorithm,
        protocol_timeout: plan
            .policy
            .provision_timeout
            .min(crate::provisioning::PROTOCOL_TIMEOUT),
        ..ProvisionerConfig::default()
    };
    match auth {
        AuthMethod::Cert => {
            // The certificate authenticates the device; a static/output/input method it also
            // offers is used too (Auto without a static value picks Output, then Input).
            c.auth = AuthPolicy::Auto { static_oob: None };
            c.allow_no_oob = true;
            c.records = match bearer {
                BearerChoice::Adv => RecordsPolicy::pb_adv(),
                BearerChoice::Gatt => RecordsPolicy::pb_gatt(mtu),
            };
        }
        AuthMethod::Static(v) => c.auth = AuthPolicy::Static(v.clone()),
        AuthMethod::Output => c.auth = AuthPolicy::Output,
        AuthMethod::Input => c.auth = AuthPolicy::Input,
        AuthMethod::OobPublicKey(k) => {
            c.oob_public_key = Some(*k);
            c.auth = AuthPolicy::Auto { static_oob: None };
        }
        AuthMethod::None => {
            c.auth = AuthPolicy::NoOob;
            c.allow_no_oob = true;
        }
    }
    c
}

/// Whether a provisioning error is worth another attempt: the link's fault (a time-out, a
/// lost link, an unreachable device), not a refusal or a wrong value. A Provisioning Failed
/// is a refusal, before the Data or in answer to it
/// ([`crate::provisioning::ProvisioningError::DataRefused`]) — Unexpected Error (0x07) and
/// Cannot Assign Addresses (0x08) included: every range meshprov hands out is a valid unicast
/// range for the device's element count, so another one cannot cure the refusal, and each
/// attempt would retire one more range. The installer retries by hand ([`Command::Retry`], the
/// terminal UI's retry, or a rerun of the plan).
pub fn retryable(e: &crate::provisioning::ProvisioningError) -> bool {
    e.fault() == crate::provisioning::Fault::Link
}

/// An installer's typed Output OOB answer: digits are a number, anything else alphanumeric
/// (upper case).
pub fn parse_oob_answer(s: &str) -> OobValue {
    let t = s.trim();
    match t.parse::<u128>() {
        Ok(n) => OobValue::Numeric(n),
        Err(_) => OobValue::Alphanumeric(t.to_ascii_uppercase()),
    }
}

/// The store as the sessions' [`NodeSink`], committing each node with its plan location and
/// serial, and remembering which sessions committed (so a session that failed after its
/// commit is resumed as a node, not provisioned again).
pub struct PlanSink {
    /// The store.
    pub store: SharedStore,
    /// Location and serial per device.
    pub details: BTreeMap<DeviceUuid, (Option<Location>, Option<String>)>,
    /// Committed in this run: address and element count.
    pub committed: BTreeMap<DeviceUuid, (u16, u8)>,
    /// Devices provisioned afresh while their earlier node is `unconfirmed` (heard as
    /// unprovisioned since): their next commit voids that node in the same transaction
    /// ([`Store::commit_node_superseding`](crate::store::Store::commit_node_superseding)).
    pub superseding: std::collections::BTreeSet<DeviceUuid>,
}

/// Why an `unconfirmed` node is voided when its device, heard as unprovisioned since, is
/// committed again by an authenticated session.
pub const SUPERSEDED: &str = "the device sent Unprovisioned Device beacons after its Provisioning Complete was lost and was authenticated in a new session, so it never took its earlier Provisioning Data";

impl std::fmt::Debug for PlanSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanSink")
            .field("committed", &self.committed.len())
            .finish_non_exhaustive()
    }
}

impl PlanSink {
    /// A sink over `store` for `plan`'s devices.
    pub fn new(store: SharedStore, plan: &Plan) -> Self {
        let details = plan
            .devices
            .iter()
            .map(|d| {
                let l = &d.location;
                let loc = (!l.building.is_empty() || !l.floor.is_empty() || !l.room.is_empty())
                    .then(|| Location {
                        building: l.building.clone(),
                        floor: l.floor.clone(),
                        room: l.room.clone(),
                    });
                (d.uuid, (loc, d.serial.clone()))
            })
            .collect();
        Self {
            store,
            details,
            committed: BTreeMap::new(),
            superseding: std::collections::BTreeSet::new(),
        }
    }
}

impl NodeSink for PlanSink {
    fn allocate(&mut self, uuid: &DeviceUuid, elements: u8) -> Result<u16, String> {
        let mut store = self.store.borrow_mut();
        if self.superseding.contains(uuid) {
            store.allocate_unicast_superseding(uuid, elements)
        } else {
            store.allocate_unicast(uuid, elements)
        }
        .map_err(|e| e.to_string())
    }

    fn commit(&mut self, record: &NodeRecord) -> Result<(), String> {
        let (location, serial) = self
            .details
            .get(&record.uuid)
            .cloned()
            .unwrap_or((None, None));
        let new = crate::store::NewNode {
            uuid: record.uuid,
            name: record.name.clone(),
            address: record.address,
            elements: record.elements,
            device_key: record.device_key.clone(),
            net_key_index: record.net_key_index,
            location,
        };
        {
            let mut store = self.store.borrow_mut();
            if self.superseding.contains(&record.uuid) {
                store.commit_node_superseding(&new, SUPERSEDED)
            } else {
                store.commit_node(&new)
            }
            .map_err(|e| e.to_string())?;
        }
        self.superseding.remove(&record.uuid);
        self.committed
            .insert(record.uuid, (record.address, record.elements));
        if serial.is_some() {
            // The key is safe already; a serial lost in a crash is only a label.
            let _ = self
                .store
                .borrow_mut()
                .set_serial(&record.uuid, serial.as_deref());
        }
        Ok(())
    }

    fn confirm(&mut self, uuid: &DeviceUuid) -> Result<(), String> {
        self.store
            .borrow_mut()
            .confirm_node(uuid)
            .map_err(|e| e.to_string())
    }

    fn release(&mut self, uuid: &DeviceUuid) {
        let _ = self.store.borrow_mut().release_reservation(uuid);
    }

    fn void(&mut self, uuid: &DeviceUuid, why: &str) -> Result<(), String> {
        self.store
            .borrow_mut()
            .void_unconfirmed(uuid, why)
            .map_err(|e| e.to_string())?;
        // No longer committed: the driver reports a refusal, not a node that may hold keys.
        self.committed.remove(uuid);
        Ok(())
    }
}

/// The store shared by the sessions' sink, the Config client's SEQ numbers and the driver.
pub type SharedStore = std::rc::Rc<std::cell::RefCell<Store>>;

/// The store as a [`SeqSource`](crate::net::network::SeqSource): every block of SEQ numbers is
/// committed before it is used, so a rerun never repeats one towards a node's replay list.
#[derive(Debug, Clone)]
pub struct SharedSeq(pub SharedStore);

impl crate::net::network::SeqSource for SharedSeq {
    fn reserve_seq(
        &mut self,
        element: u16,
        block: u32,
    ) -> Result<std::ops::Range<u32>, crate::net::NetError> {
        self.0
            .borrow_mut()
            .reserve_seq(element, block)
            .map_err(|e| crate::net::NetError::SeqUnavailable(e.to_string()))
    }
}

/// Engine limits from the plan's policy for `bearer`.
pub fn engine_config(plan: &Plan) -> EngineConfig {
    EngineConfig {
        provision_limit: match plan.policy.bearer {
            BearerChoice::Adv => plan.policy.concurrency,
            BearerChoice::Gatt => plan.policy.gatt_connections,
        },
        configure_limit: plan.policy.configure_concurrency,
        retries: plan.policy.retries,
        backoff: plan.policy.backoff,
        backoff_max: plan.policy.backoff_max,
    }
}

/// A session's transcript, one line per PDU with its length and its time from the first PDU:
/// `> Provisioning Invite (2 B, +0.000 s)`, `< Provisioning Capabilities (12 B, +0.041 s)`
/// (`>` sent, `<` received; the terminal UI draws its timeline from these lines).
pub fn transcript_names(t: &[crate::provisioning::TranscriptEntry]) -> Vec<String> {
    let first = t.first().map(|e| e.at);
    t.iter()
        .map(|e| {
            let dir = match e.direction {
                crate::provisioning::Direction::Sent => '>',
                crate::provisioning::Direction::Received => '<',
            };
            let since = first.map_or(std::time::Duration::ZERO, |f| {
                e.at.saturating_duration_since(f)
            });
            format!(
                "{dir} {} ({} B, +{:.3} s)",
                e.name(),
                e.bytes.len(),
                since.as_secs_f64()
            )
        })
        .collect()
}

/// Events a session's new transcript entries mean: `link_opened` at the first PDU,
/// `capabilities` when they arrive, `authenticated` when the Provisioning Data goes out (the
/// device's confirmation was checked first). `seen` is how many entries were looked at before.
pub fn transcript_events(
    t: &[crate::provisioning::TranscriptEntry],
    seen: usize,
) -> Vec<EventKind> {
    use crate::provisioning::Direction;
    use crate::wire::PduType;
    let names = |v: Vec<&str>| v.into_iter().map(String::from).collect::<Vec<_>>();
    let mut out = Vec::new();
    for (i, e) in t.iter().enumerate().skip(seen) {
        if i == 0 {
            out.push(EventKind::LinkOpened);
        }
        match (e.direction, e.pdu_type) {
            (Direction::Received, Some(PduType::CAPABILITIES)) => {
                if let Some(c) = e
                    .bytes
                    .get(1..)
                    .and_then(|b| crate::wire::prov::Capabilities::parse_params(b).ok())
                {
                    out.push(EventKind::Capabilities {
                        elements: c.num_elements,
                        algorithms: c.algorithms.names().into_iter().map(String::from).collect(),
                        public_key_oob: c.public_key_type.0 & 1 != 0,
                        static_oob: c.oob_type.0 & 1 != 0,
                        output_oob_size: c.output_oob_size,
                        output_oob_actions: names(c.output_oob_action.names()),
                        input_oob_size: c.input_oob_size,
                        input_oob_actions: names(c.input_oob_action.names()),
                    });
                }
            }
            (Direction::Sent, Some(PduType::DATA)) => {
                let method = t
                    .iter()
                    .find(|s| s.direction == Direction::Sent && s.pdu_type == Some(PduType::START))
                    .and_then(|s| s.bytes.get(3).copied())
                    .map_or("unknown", |m| match m {
                        0 => "none",
                        1 => "static",
                        2 => "output",
                        3 => "input",
                        _ => "unknown",
                    });
                out.push(EventKind::Authenticated {
                    method: method.to_string(),
                });
            }
            _ => {}
        }
    }
    out
}

/// Reads a plan and opens (or creates) its store; the first step of every run.
pub fn load(plan_path: &Path) -> Result<Plan, RolloutError> {
    Ok(Plan::load(plan_path)?)
}
