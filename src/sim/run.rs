//! Provisioning on the simulated air, in virtual time: one provisioner with one PB-ADV
//! [`Links`] table (or one GATT connection per device) runs a [`Provisioner`] session per
//! device, up to a concurrency limit, against the building's virtual devices.
//!
//! This is the synchronous, virtual-time driver over the sans-IO cores; it serves
//! `meshprov provision --radio sim:FILE` and the tests. Output and Input OOB are answered by a
//! simulated installer who reads the device's display or types on the device after
//! [`INSTALLER_DELAY`]. Certificate-based provisioning ([`ProvisionerConfig::records`]) asks
//! [`RunOptions::cert_verifier`] for the verdict on each device's certificate chain.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mesh_crypto::{DevKey, NetKey};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::bearer::pb_adv::{CloseCause, LinkEvent, LinkId, Links, PbAdvConfig, Role};
use crate::bearer::pb_gatt::PbGattLink;
use crate::provisioning::{
    AlgorithmPolicy, AuthPolicy, CloseReason, Event, OobValue, Outcome, Provisioner,
    ProvisionerConfig, ProvisioningError, ProvisioningParams, TranscriptEntry,
};
use crate::radio::sim::{AirStats, Delivery, SimAir};
use crate::sim::building::{Building, DeviceSpec};
use crate::sim::node::{AD_TYPE_PB_ADV, DeviceState, INSTALLER_DELAY, VirtualDevice};
use crate::time::Instant;
use crate::uuid::DeviceUuid;
use crate::wire::LinkCloseReason;

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

/// The verdict on a device's certificate chain (certificate-based provisioning): given the
/// device's UUID, its Device Certificate record and its Intermediate Certificate records (as
/// received, DER for a conforming device), the device certificate's P-256 public key
/// (`X ‖ Y`), or why the chain is refused (words for the installer).
pub type CertVerifier =
    Arc<dyn Fn(&DeviceUuid, &[u8], &[Vec<u8>]) -> Result<[u8; 64], String> + Send + Sync>;

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

/// What is stored about a node before its Provisioning Data goes on air.
#[derive(Clone, Debug)]
pub struct NodeRecord {
    /// Device UUID.
    pub uuid: DeviceUuid,
    /// Its name in the building file.
    pub name: String,
    /// Primary element address.
    pub address: u16,
    /// Element count.
    pub elements: u8,
    /// Device key.
    pub device_key: DevKey,
    /// NetKey index given.
    pub net_key_index: u16,
}

/// The provisioner's durable state, as a session needs it: address ranges are reserved when
/// the device's element count is known, and the device key is committed before the
/// Provisioning Data goes on air (write-ahead), so a crash never loses a key or hands an
/// address out twice. An error fails that session before the device gets any key.
pub trait NodeSink {
    /// Reserves a free unicast range of `elements` addresses for `uuid`; returns its first.
    fn allocate(&mut self, uuid: &DeviceUuid, elements: u8) -> Result<u16, String>;
    /// Stores one node durably, before its Provisioning Data is sent.
    fn commit(&mut self, record: &NodeRecord) -> Result<(), String>;
    /// The device answered Provisioning Complete.
    fn confirm(&mut self, uuid: &DeviceUuid) -> Result<(), String>;
    /// The session failed before [`NodeSink::commit`]: the reservation may be reused.
    fn release(&mut self, uuid: &DeviceUuid);
}

/// A sink that keeps records in memory and allocates addresses upwards from a first one
/// (tests, and runs without a store).
#[derive(Debug)]
pub struct MemorySink {
    /// What was committed.
    pub records: Vec<NodeRecord>,
    /// Devices that confirmed.
    pub confirmed: Vec<DeviceUuid>,
    next: u32,
    reserved: BTreeMap<DeviceUuid, u16>,
}

impl MemorySink {
    /// Allocates from `first_address` upwards.
    pub fn starting_at(first_address: u16) -> Self {
        Self {
            records: Vec::new(),
            confirmed: Vec::new(),
            next: u32::from(first_address.max(1)),
            reserved: BTreeMap::new(),
        }
    }
}

impl Default for MemorySink {
    fn default() -> Self {
        Self::starting_at(1)
    }
}

impl NodeSink for MemorySink {
    fn allocate(&mut self, uuid: &DeviceUuid, elements: u8) -> Result<u16, String> {
        if let Some(a) = self.reserved.get(uuid) {
            return Ok(*a);
        }
        let end = self.next + u32::from(elements);
        if elements == 0 || end > 0x8000 {
            return Err(format!(
                "no room for {elements} elements in the unicast range (next free 0x{:04x})",
                self.next
            ));
        }
        // Checked just above: below 0x8000.
        let a = self.next as u16;
        self.next = end;
        self.reserved.insert(*uuid, a);
        Ok(a)
    }

    fn commit(&mut self, record: &NodeRecord) -> Result<(), String> {
        self.records.push(record.clone());
        Ok(())
    }

    fn confirm(&mut self, uuid: &DeviceUuid) -> Result<(), String> {
        self.confirmed.push(*uuid);
        Ok(())
    }

    fn release(&mut self, _uuid: &DeviceUuid) {
        // Addresses are only handed out upwards here; nothing to give back.
    }
}

/// The network store as a [`NodeSink`].
impl NodeSink for crate::store::Store {
    fn allocate(&mut self, uuid: &DeviceUuid, elements: u8) -> Result<u16, String> {
        self.allocate_unicast(uuid, elements)
            .map_err(|e| e.to_string())
    }

    fn commit(&mut self, record: &NodeRecord) -> Result<(), String> {
        self.commit_node(&crate::store::NewNode {
            uuid: record.uuid,
            name: record.name.clone(),
            address: record.address,
            elements: record.elements,
            device_key: record.device_key.clone(),
            net_key_index: record.net_key_index,
            location: None,
        })
        .map_err(|e| e.to_string())
    }

    fn confirm(&mut self, uuid: &DeviceUuid) -> Result<(), String> {
        self.confirm_node(uuid).map_err(|e| e.to_string())
    }

    fn release(&mut self, uuid: &DeviceUuid) {
        // Best effort: a reservation left behind is returned to the same UUID next time.
        let _ = self.release_reservation(uuid);
    }
}

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

struct Session {
    device: usize,
    prov: Provisioner,
    link: Option<LinkId>,
    gatt: Option<PbGattLink>,
    gatt_ready_at: Option<Instant>,
    started: Instant,
    output_pending: bool,
    output_at: Option<Instant>,
    input_value: Option<OobValue>,
    input_at: Option<Instant>,
    closing: bool,
    committed: bool,
    result: Option<Result<Outcome, ProvisioningError>>,
    ended: Option<Instant>,
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
        devices.push(VirtualDevice::new(
            spec,
            ep,
            opts.seed.wrapping_add(1000 + i as u64),
        ));
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

    let mut links = Links::new(
        Role::Provisioner,
        PbAdvConfig::default(),
        Box::new(ChaCha20Rng::seed_from_u64(opts.seed ^ 0x4c49_4e4b)),
    );
    let mut waiting: VecDeque<usize> = (0..devices.len()).collect();
    let mut sessions: Vec<Option<Session>> = (0..devices.len()).map(|_| None).collect();
    let mut by_link: BTreeMap<LinkId, usize> = BTreeMap::new();
    let deadline = Instant::ZERO + opts.deadline;
    let mut now = air.now();
    let mut staged: Option<Vec<u8>> = None;

    loop {
        // Start sessions up to the limit.
        let active = sessions
            .iter()
            .flatten()
            .filter(|s| s.result.is_none())
            .count();
        for _ in active..opts.max_concurrent {
            let Some(i) = waiting.pop_front() else { break };
            let rng = Box::new(ChaCha20Rng::seed_from_u64(
                opts.seed.wrapping_add(2000 + i as u64),
            ));
            let mut config = opts.config.clone();
            per_device(&devices[i].spec, &mut config);
            let mut s = Session {
                device: i,
                prov: Provisioner::new(config, params.clone(), rng),
                link: None,
                gatt: None,
                gatt_ready_at: None,
                started: now,
                output_pending: false,
                output_at: None,
                input_value: None,
                input_at: None,
                closing: false,
                committed: false,
                result: None,
                ended: None,
            };
            match opts.bearer {
                BearerChoice::Adv => match links.open(now, devices[i].spec.uuid.0) {
                    Ok(l) => {
                        s.link = Some(l);
                        by_link.insert(l, i);
                    }
                    // Only a full table or a second link to the same UUID refuse an open;
                    // either way this device gets no link.
                    Err(_) => {
                        s.result = Some(Err(ProvisioningError::LinkClosed));
                        s.ended = Some(now);
                    }
                },
                BearerChoice::Gatt => {
                    // Connection set-up and MTU exchange take a few connection intervals.
                    let mtu = opts.att_mtu.min(devices[i].spec.mtu);
                    devices[i].gatt_connected(me, mtu);
                    s.gatt = Some(PbGattLink::new(mtu));
                    s.gatt_ready_at = Some(now + Duration::from_millis(150));
                }
            }
            sessions[i] = Some(s);
        }

        // Let everything settle at this instant.
        loop {
            let mut progress = false;
            while let Some(d) = air.pop_due() {
                progress = true;
                if d.to() == me {
                    match &d {
                        Delivery::Adv { ad_type, data, .. } if *ad_type == AD_TYPE_PB_ADV => {
                            links.handle_adv(now, data);
                        }
                        Delivery::Adv { .. } => {}
                        Delivery::Gatt { from, data, .. } => {
                            if let Some(s) = sessions
                                .iter_mut()
                                .flatten()
                                .find(|s| devices[s.device].endpoint == *from)
                                && let Some(g) = &mut s.gatt
                            {
                                match g.handle_data(now, data) {
                                    Ok(Some(pdu)) => s.prov.handle_pdu(now, &pdu),
                                    Ok(None) => {}
                                    Err(_) => s.prov.handle_link_closed(now),
                                }
                            }
                        }
                    }
                } else if let Some(dev) = devices.iter_mut().find(|v| v.endpoint == d.to()) {
                    dev.handle_delivery(now, &d);
                }
            }
            while let Some(ev) = links.poll_event() {
                progress = true;
                match ev {
                    LinkEvent::Opened(l) => {
                        if let Some(s) = by_link.get(&l).and_then(|i| sessions[*i].as_mut()) {
                            s.prov.start(now);
                        }
                    }
                    LinkEvent::Received(l, pdu) => {
                        if let Some(s) = by_link.get(&l).and_then(|i| sessions[*i].as_mut()) {
                            s.prov.handle_pdu(now, &pdu);
                        }
                    }
                    LinkEvent::Delivered(_) => {}
                    LinkEvent::Closed(l, cause) => {
                        if let Some(i) = by_link.remove(&l)
                            && let Some(s) = sessions[i].as_mut()
                            && s.result.is_none()
                        {
                            s.prov.handle_link_closed(now);
                            if matches!(cause, CloseCause::OpenTimeout) {
                                s.result = Some(Err(ProvisioningError::LinkClosed));
                                s.ended = Some(now);
                            }
                        }
                    }
                }
            }
            for s in sessions.iter_mut().flatten() {
                let dev = &mut devices[s.device];
                if let Some(t) = s.gatt_ready_at
                    && now >= t
                {
                    s.gatt_ready_at = None;
                    s.prov.start(now);
                }
                while let Some(pdu) = s.prov.poll_transmit() {
                    progress = true;
                    if let Some(g) = &mut s.gatt {
                        g.send(&pdu);
                    } else if let Some(l) = s.link {
                        let _ = links.send(now, l, &pdu);
                    }
                }
                if let Some(g) = &mut s.gatt {
                    while let Some(seg) = g.poll_transmit() {
                        progress = true;
                        air.gatt_send(me, dev.endpoint, &seg);
                    }
                }
                while let Some(ev) = s.prov.poll_event() {
                    progress = true;
                    match ev {
                        Event::CapabilitiesReceived(_) => {}
                        Event::RecordsReceived {
                            device_certificate,
                            intermediates,
                            ..
                        } => {
                            let verdict = match &opts.cert_verifier {
                                Some(verify) => {
                                    verify(&dev.spec.uuid, &device_certificate, &intermediates)
                                }
                                None => Err("no certificate verifier is configured".to_string()),
                            };
                            // Either call is made in the state that takes it; a failure is
                            // reported as Event::Failed.
                            let _ = match verdict {
                                Ok(key) => s.prov.provide_device_public_key(now, key),
                                Err(reason) => s.prov.reject_certificate(now, reason),
                            };
                        }
                        Event::NeedUnicastAddress { elements } => {
                            match sink.allocate(&dev.spec.uuid, elements) {
                                Ok(a) => s.prov.set_unicast_address(now, a),
                                Err(e) => {
                                    s.result = Some(Err(ProvisioningError::Store(e)));
                                    s.ended = Some(now);
                                }
                            }
                        }
                        Event::OutputOobRequested { .. } => s.output_pending = true,
                        Event::InputOobDisplay { value, .. } => s.input_value = Some(value),
                        Event::CommitRequired {
                            address,
                            elements,
                            device_key,
                        } => {
                            let rec = NodeRecord {
                                uuid: dev.spec.uuid,
                                name: dev.spec.name.clone(),
                                address,
                                elements,
                                device_key,
                                net_key_index: params.net_key_index,
                            };
                            match sink.commit(&rec) {
                                Ok(()) => {
                                    s.committed = true;
                                    s.prov.commit_done(now);
                                }
                                Err(e) => {
                                    s.result = Some(Err(ProvisioningError::Store(e)));
                                    s.ended = Some(now);
                                }
                            }
                        }
                        Event::Complete(outcome) => {
                            // The node is committed; a failed confirmation only leaves it
                            // marked unconfirmed, which is safe.
                            let _ = sink.confirm(&dev.spec.uuid);
                            s.result = Some(Ok(outcome));
                            s.ended = Some(now);
                        }
                        Event::Failed(e) => {
                            s.result = Some(Err(e));
                            s.ended = Some(now);
                        }
                    }
                }
                // The simulated installer.
                if s.output_pending && s.output_at.is_none() && dev.displayed().is_some() {
                    s.output_at = Some(now + INSTALLER_DELAY);
                }
                if let (true, Some(t)) = (s.output_pending, s.output_at)
                    && now >= t
                {
                    s.output_pending = false;
                    if let Some(v) = dev.displayed().cloned() {
                        let _ = s.prov.provide_output_oob(now, v);
                        progress = true;
                    }
                }
                if s.input_value.is_some() && s.input_at.is_none() && dev.input_requested() {
                    s.input_at = Some(now + INSTALLER_DELAY);
                }
                if let Some(t) = s.input_at
                    && now >= t
                    && let Some(v) = s.input_value.take()
                {
                    dev.enter_input(now, v);
                    progress = true;
                }
                // Close the link once the session is over.
                if s.result.is_some() && !s.closing {
                    s.closing = true;
                    progress = true;
                    if !s.committed {
                        sink.release(&dev.spec.uuid);
                    }
                    let reason: CloseReason = match &s.result {
                        Some(Ok(_)) => LinkCloseReason::SUCCESS,
                        Some(Err(e)) => s.prov.close_reason().unwrap_or(e.close_reason()),
                        None => LinkCloseReason::FAIL,
                    };
                    if let Some(l) = s.link {
                        links.close(now, l, reason);
                    }
                    if s.gatt.take().is_some() {
                        dev.gatt_disconnected();
                    }
                }
                dev.pump(now, &mut air);
            }
            // One advertisement per radio interval; the backlog stays in the bearer, which
            // withdraws segments that an ack made stale.
            if staged.is_none() {
                staged = links.poll_transmit(now);
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

        let all_done = waiting.is_empty() && sessions.iter().flatten().all(|s| s.result.is_some());
        if all_done && links.is_empty() && staged.is_none() {
            break;
        }
        // Next instant anything happens.
        let mut next: Option<Instant> = air.next_delivery();
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(links.poll_timeout());
        consider(staged.as_ref().map(|_| air.adv_ready_at(me)));
        for s in sessions.iter().flatten() {
            if s.result.is_none() {
                consider(s.prov.poll_timeout());
            }
            consider(s.gatt_ready_at);
            consider(s.output_at.filter(|_| s.output_pending));
            consider(s.input_at.filter(|_| s.input_value.is_some()));
            consider(s.gatt.as_ref().and_then(|g| g.poll_timeout()));
        }
        for d in &devices {
            consider(d.poll_timeout_with(&air));
        }
        let Some(t) = next else { break };
        if t > deadline {
            break;
        }
        let t = t.max(now);
        air.advance_to(t);
        now = air.now();
        links.handle_timeout(now);
        for s in sessions.iter_mut().flatten() {
            if s.result.is_none() {
                s.prov.handle_timeout(now);
            }
            if let Some(g) = &mut s.gatt
                && g.handle_timeout(now).is_some()
            {
                s.prov.handle_link_closed(now);
            }
        }
        for d in &mut devices {
            d.handle_timeout(now);
        }
    }

    let virtual_time = now.since_epoch();
    let mut results = Vec::with_capacity(targets.len());
    for (i, dev) in devices.into_iter().enumerate() {
        let (outcome, elapsed) = match sessions[i].take() {
            Some(s) => {
                let end = s.ended.unwrap_or(now);
                (
                    s.result.unwrap_or(Err(ProvisioningError::Timeout)),
                    end.saturating_duration_since(s.started),
                )
            }
            None => (Err(ProvisioningError::Timeout), Duration::ZERO),
        };
        results.push(DeviceResult {
            uuid: dev.spec.uuid,
            outcome,
            elapsed,
            bearer: opts.bearer,
            device_state: dev.state().clone(),
            device_transcript: dev.transcript().to_vec(),
            device_link_close: dev.link_closed(),
        });
    }
    Ok(RunReport {
        results,
        virtual_time,
        air: air.stats(),
        retransmissions: links.stats().retransmitted,
    })
}
