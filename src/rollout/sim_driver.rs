//! The rollout engine on the simulated air, in virtual time: one provisioner radio that
//! provisions (a PB-ADV [`Host`], or PB-GATT connections) and configures (a [`ConfigHost`] on
//! the advertising bearer) at the same time, against the building's virtual devices, which
//! become nodes on the same air as soon as they are provisioned.
//!
//! The provisioner's one radio alternates between the two queues when both have something to
//! send (an advertising event each). A simulated installer reads Output OOB values and types
//! Input OOB values after [`INSTALLER_DELAY`] unless [`SimOptions::installer`] is off (then the
//! observer answers with [`Command::AnswerOob`]). Devices the store already has are put on the
//! air as the nodes the store says they are (the building does not persist between runs);
//! devices already configured are not on the air at all: nothing is sent to them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::bearer::pb_adv::PbAdvConfig;
use crate::config_host::{ConfigHost, ConfigNode};
use crate::host::{Host, HostEvent, SessionId, failure_message};
use crate::net::config::{ConfigClientConfig, ConfigMessage};
use crate::provisioning::{OobValue, ProvisioningError, ProvisioningParams};
use crate::radio::sim::{AdvPattern, AirStats, Delivery, EndpointId, RxFilter, SimAir};
use crate::rollout::engine::{Action, Command, Engine, EventKind, Heard, Phase};
use crate::rollout::jobs::{self, Job};
use crate::rollout::{
    Observer, Plan, PlanSink, Prepared, RolloutError, RolloutReport, SharedSeq, SharedStore,
    Target, engine_config, parse_oob_answer, retryable, session_config, template,
    transcript_events, transcript_names,
};
use crate::sim::building::Building;
use crate::sim::configure::ConfigOutcome;
use crate::sim::node::{
    AD_TYPE_MESH_BEACON, AD_TYPE_MESH_MESSAGE, AD_TYPE_PB_ADV, DeviceState, INSTALLER_DELAY,
    NetAdvQueue, VirtualDevice,
};
use crate::sim::run::BearerChoice;
use crate::time::Instant;
use crate::uuid::DeviceUuid;
use crate::wire::beacon::MeshBeacon;

/// Options of a simulated rollout.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Seed of the air and of every session's randomness.
    pub seed: u64,
    /// Overrides the building's advertising loss.
    pub loss: Option<f64>,
    /// Give up (as a stop) after this much virtual time.
    pub deadline: Duration,
    /// The simulated installer answers Output OOB and types Input OOB values.
    pub installer: bool,
    /// Overrides the plan's PB-ADV concurrency.
    pub concurrency: Option<usize>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            loss: None,
            deadline: Duration::from_secs(24 * 3600),
            installer: true,
            concurrency: None,
        }
    }
}

/// A simulated rollout's end: the report, what the air did and the virtual devices.
#[derive(Debug)]
pub struct SimOutcome {
    /// Summary and per-device status.
    pub report: RolloutReport,
    /// The air's counters.
    pub air: AirStats,
    /// PB-ADV retransmissions of the provisioner.
    pub retransmissions: u64,
    /// The virtual devices that were on the air, with their final state (their Config
    /// Server shows what they were given).
    pub nodes: Vec<(DeviceUuid, VirtualDevice)>,
}

/// The simulated installer's part in one session (and the GATT connection's set-up time): it
/// belongs to the session and is cleared when the session ends, whichever way.
#[derive(Default)]
struct Installer {
    output_pending: bool,
    output_at: Option<Instant>,
    input_value: Option<OobValue>,
    input_at: Option<Instant>,
    gatt_ready_at: Option<Instant>,
}

#[derive(Default)]
struct Run {
    session: Option<SessionId>,
    seen: usize,
    installer: Installer,
    job: Option<Job>,
    deadline: Option<Instant>,
    attention: bool,
    /// Committed, but its session failed before Provisioning Complete: the address and
    /// element count, until a new session tells whether the device got its data.
    unconfirmed: Option<(u16, u8)>,
}

/// Runs `plan` on `building`'s simulated air: `prepared` from [`crate::rollout::prepare`] on
/// the same `store`. Events and ticks go to `observer`.
pub fn run(
    plan: &Plan,
    building: &Building,
    store: SharedStore,
    prepared: &Prepared,
    opts: &SimOptions,
    observer: &mut dyn Observer,
) -> Result<SimOutcome, RolloutError> {
    let wall = std::time::Instant::now();
    let bearer = plan.policy.bearer;
    let mut air_config = building.air.clone();
    if let Some(loss) = opts.loss {
        air_config.loss = loss;
    }
    let mut air = SimAir::new(air_config, opts.seed);
    let me = air.add_endpoint();
    air.set_floor(me, building.provisioner.floor);
    // The provisioner hears PB-ADV while provisioning and network PDUs while configuring;
    // Unprovisioned Device beacons only as far as they matter (hearing every beacon of a large
    // building would cost the simulation half its time): every one while unplanned devices are
    // on the air, for the discovery rule; else only those of devices whose commit is
    // unconfirmed (their beacon proves they never took their Provisioning Data,
    // [`jobs::unprovisioned_again`]).
    let set_filter = |air: &mut SimAir, all_beacons: bool, watched: &[DeviceUuid]| {
        let mut patterns = vec![
            (AD_TYPE_PB_ADV, Vec::new()),
            (AD_TYPE_MESH_MESSAGE, Vec::new()),
        ];
        if all_beacons {
            patterns.push((AD_TYPE_MESH_BEACON, vec![0x00]));
        } else {
            for u in watched {
                let mut prefix = vec![0x00];
                prefix.extend_from_slice(&u.0);
                patterns.push((AD_TYPE_MESH_BEACON, prefix));
            }
        }
        air.set_rx_filter(
            me,
            RxFilter::Patterns(
                patterns
                    .into_iter()
                    .map(|(ad_type, bytes)| AdvPattern {
                        ad_type,
                        offset: 0,
                        bytes,
                    })
                    .collect(),
            ),
        );
    };
    set_filter(&mut air, false, &[]);

    let mut config = engine_config(plan);
    if let Some(c) = opts.concurrency {
        config.provision_limit = c.max(1);
    }
    let mut engine = Engine::new(Instant::ZERO, config, prepared.devices.clone(), "virtual");
    engine.set_discovery(plan.discovery.clone());

    // The devices of the run (the plan's, then unplanned nodes of earlier runs to finish), and
    // after them the building's devices that are in neither the plan nor the store: unplanned
    // devices that beacon, which the engine reports and the discovery rule may take.
    let mut targets: Vec<Target> = prepared.targets.clone();
    let mut stored: Vec<Option<(u16, u8, crate::rollout::Stage)>> =
        prepared.devices.iter().map(|d| d.stored).collect();
    let known: BTreeSet<DeviceUuid> = targets.iter().map(|t| t.uuid).collect();
    for spec in &building.devices {
        if !known.contains(&spec.uuid) && !prepared.stored_elsewhere.contains(&spec.uuid) {
            targets.push(Target::unplanned(plan, spec.uuid));
            stored.push(None);
        }
    }
    let unplanned_on_air = targets.len() > prepared.targets.len();
    set_filter(&mut air, unplanned_on_air, &[]);
    // The watched devices the filter was last set for.
    let mut filtered: BTreeSet<usize> = BTreeSet::new();
    // Devices configured from an unconfirmed commit in this run (their beacons are watched).
    let mut unconfirmed_watch: BTreeSet<usize> = BTreeSet::new();

    // The virtual devices, aligned with `targets`.
    let n = targets.len();
    let mut devs: Vec<Option<VirtualDevice>> = Vec::with_capacity(n);
    let mut by_uuid: BTreeMap<DeviceUuid, usize> = BTreeMap::new();
    let mut by_endpoint: BTreeMap<EndpointId, usize> = BTreeMap::new();
    for (i, (d, st)) in targets.iter().zip(&stored).enumerate() {
        by_uuid.insert(d.uuid, i);
        let Some(spec) = building.device(&d.uuid) else {
            devs.push(None);
            continue;
        };
        let seed = opts.seed.wrapping_add(1000 + i as u64);
        let dev = match *st {
            Some((_, _, crate::rollout::Stage::Done | crate::rollout::Stage::Excluded)) => None,
            Some((address, _, _)) => {
                let node = store.borrow().node_by_uuid(&d.uuid)?;
                let ep = air.add_endpoint();
                let mut v = VirtualDevice::provisioned(
                    spec.clone(),
                    ep,
                    seed,
                    DeviceState::Provisioned {
                        address,
                        device_key: node.device_key,
                        net_key: prepared.net_key.clone(),
                        net_key_index: prepared.net_key_index,
                        iv_index: prepared.iv_index,
                    },
                );
                v.attach(&mut air);
                // Deaf to other nodes' traffic until it is configured (see below).
                v.set_network_listening(&mut air, false);
                Some(v)
            }
            None => {
                let ep = air.add_endpoint();
                let mut v = VirtualDevice::new(spec.clone(), ep, seed);
                v.attach(&mut air);
                Some(v)
            }
        };
        if let Some(v) = &dev {
            by_endpoint.insert(v.endpoint, i);
        }
        devs.push(dev);
    }

    let params = ProvisioningParams {
        net_key: prepared.net_key.clone(),
        net_key_index: prepared.net_key_index,
        flags: 0,
        iv_index: prepared.iv_index,
    };
    let mut host = Host::new(
        params,
        PbAdvConfig::default(),
        Box::new(ChaCha20Rng::seed_from_u64(opts.seed ^ 0x4c49_4e4b)),
        prepared.verifier.clone(),
    );
    let own_address = store.borrow_mut().provisioner_address()?;
    let mut conf = ConfigHost::new(
        own_address,
        prepared.iv_index,
        &[(prepared.net_key_index, prepared.net_key.clone())],
        &[],
        ConfigClientConfig::default(),
        SharedSeq(store.clone()),
    );
    let mut sink = PlanSink::new(store.clone(), plan);
    let mut runs: Vec<Run> = (0..n).map(|_| Run::default()).collect();
    let mut dev_of_session: Vec<usize> = Vec::new();
    let mut live: BTreeSet<usize> = BTreeSet::new();
    let mut net_out = NetAdvQueue::default();
    let mut staged: Option<Vec<u8>> = None;
    let mut prefer_net = false;
    let deadline = Instant::ZERO + opts.deadline;
    let mut now = air.now();
    let mut stopped_by_deadline = false;
    // Nodes hear network PDUs only while they are configured (and a few seconds after, for
    // the provisioner's segment acks): `VirtualDevice::set_network_listening`. Mute times here.
    let mut muting: Vec<(Instant, usize)> = Vec::new();
    const MUTE_AFTER: Duration = Duration::from_secs(5);

    loop {
        // 1. What the engine asks for.
        while let Some(action) = engine.poll_action(now) {
            match action {
                Action::Provision { uuid, attempt } => {
                    let i = by_uuid[&uuid];
                    let Some(spec) = building.device(&uuid).cloned() else {
                        engine.phase_failed(
                            now,
                            &uuid,
                            Phase::Provisioning,
                            "the device is not in the building file: it is not on the simulated air".into(),
                            false,
                        );
                        continue;
                    };
                    let reachable = match bearer {
                        BearerChoice::Adv => spec.pb_adv,
                        BearerChoice::Gatt => spec.pb_gatt,
                    };
                    if !reachable {
                        engine.phase_failed(
                            now,
                            &uuid,
                            Phase::Provisioning,
                            format!("the device does not support {}", bearer.name()),
                            false,
                        );
                        continue;
                    }
                    let provisioned = devs[i]
                        .as_ref()
                        .is_some_and(|d| matches!(d.state(), DeviceState::Provisioned { .. }));
                    if attempt > 1
                        && !provisioned
                        && let Some(old) = devs[i].take()
                    {
                        // A device whose session failed starts over, as after a reset
                        // (its faults, if the building gives it any, stay).
                        let mut v = old.restarted(
                            opts.seed
                                .wrapping_add(1000 + i as u64 + 7919 * u64::from(attempt)),
                        );
                        v.attach(&mut air);
                        devs[i] = Some(v);
                    }
                    let Some(dev) = devs[i].as_mut() else {
                        continue;
                    };
                    let mut cfg = session_config(plan, &targets[i].auth, bearer, spec.mtu);
                    if runs[i].attention {
                        cfg.attention_duration = 5;
                    }
                    let rng = Box::new(ChaCha20Rng::seed_from_u64(
                        opts.seed
                            .wrapping_add(2000 + i as u64 + 7919 * u64::from(attempt)),
                    ));
                    let name = targets[i].name.clone();
                    let mut installer = Installer::default();
                    let id = match bearer {
                        BearerChoice::Adv => host.open_adv(now, uuid, name, cfg, rng),
                        BearerChoice::Gatt => {
                            let mtu = 517.min(spec.mtu);
                            dev.gatt_connected(me, mtu);
                            installer.gatt_ready_at = Some(now + Duration::from_millis(150));
                            host.open_gatt(now, uuid, name, cfg, rng, mtu)
                        }
                    };
                    debug_assert_eq!(id.0, dev_of_session.len());
                    dev_of_session.push(i);
                    runs[i].session = Some(id);
                    runs[i].seen = 0;
                    runs[i].installer = installer;
                    runs[i].deadline = Some(now + plan.policy.provision_timeout);
                    live.insert(i);
                }
                Action::Configure { uuid, address, .. } => {
                    let i = by_uuid[&uuid];
                    let node = store.borrow().node_by_uuid(&uuid)?;
                    conf.add_node(&ConfigNode {
                        address,
                        device_key: node.device_key,
                        net_key_index: prepared.net_key_index,
                    });
                    let Some(t) = plan.templates.get(&targets[i].template) else {
                        continue;
                    };
                    let reqs = template::requests(t, address, &prepared.resolved);
                    if let Some(d) = devs[i].as_mut() {
                        d.set_network_listening(&mut air, true);
                    }
                    runs[i].job = jobs::start(
                        &mut conf,
                        &mut engine,
                        now,
                        uuid,
                        address,
                        Phase::Configuring,
                        reqs,
                    );
                    runs[i].deadline = runs[i].job.map(|_| now + plan.policy.configure_timeout);
                    live.insert(i);
                }
                Action::Verify { uuid, address } => {
                    let i = by_uuid[&uuid];
                    if let Some(d) = devs[i].as_mut() {
                        d.set_network_listening(&mut air, true);
                    }
                    runs[i].job = jobs::start(
                        &mut conf,
                        &mut engine,
                        now,
                        uuid,
                        address,
                        Phase::Verifying,
                        vec![ConfigMessage::CompositionDataGet { page: 0 }],
                    );
                    runs[i].deadline = runs[i].job.map(|_| now + plan.policy.configure_timeout);
                    live.insert(i);
                }
                Action::Cancel { uuid } => {
                    let i = by_uuid[&uuid];
                    runs[i].installer = Installer::default();
                    if let Some(id) = runs[i].session.take() {
                        host.abort(now, id, ProvisioningError::LinkClosed);
                        if bearer == BearerChoice::Gatt
                            && let Some(d) = devs[i].as_mut()
                        {
                            d.gatt_disconnected();
                        }
                    }
                    runs[i].job = None;
                    runs[i].deadline = None;
                    engine.cancelled(now, &uuid);
                }
                Action::Exclude { uuid } => {
                    let address = store.borrow().node_by_uuid(&uuid).map(|n| n.address);
                    if let Ok(a) = address {
                        store.borrow_mut().exclude_node(a)?;
                    }
                }
                Action::Identify { uuid } => {
                    let i = by_uuid[&uuid];
                    let how = if engine.status(&uuid).is_some_and(|s| s.address.is_some()) {
                        "not possible: the node is provisioned and meshprov has no Health client (Attention Timer) yet".to_string()
                    } else {
                        runs[i].attention = true;
                        "Attention Duration 5 s in the Invite of its next provisioning attempt"
                            .to_string()
                    };
                    engine.notify(now, &uuid, EventKind::Identify { how });
                }
                Action::AnswerOob { uuid, value } => {
                    let i = by_uuid[&uuid];
                    if let Some(id) = runs[i].session {
                        let _ = host.provide_output_oob(now, id, parse_oob_answer(&value));
                    }
                }
            }
        }

        // 2. Everything that happens at this instant.
        let mut finished: Vec<SessionId> = Vec::new();
        loop {
            let mut progress = false;
            while let Some(d) = air.pop_due() {
                progress = true;
                if d.to() == me {
                    engine.air_heard(now);
                    match &d {
                        Delivery::Adv { ad_type, data, .. } if *ad_type == AD_TYPE_PB_ADV => {
                            host.handle_adv(now, data);
                        }
                        Delivery::Adv { ad_type, data, .. } if *ad_type == AD_TYPE_MESH_MESSAGE => {
                            conf.handle_network_pdu(now, data);
                        }
                        Delivery::Adv {
                            ad_type,
                            data,
                            from,
                            ..
                        } if *ad_type == AD_TYPE_MESH_BEACON => {
                            if let Ok(MeshBeacon::UnprovisionedDevice(b)) = MeshBeacon::parse(data)
                            {
                                let uuid = DeviceUuid(b.uuid);
                                if !prepared.stored_elsewhere.contains(&uuid) {
                                    engine.heard(
                                        now,
                                        Heard {
                                            uuid,
                                            rssi: Some(air.rssi(*from, me)),
                                            oob_info: b.oob_info.0,
                                            uri_hash: b.meaningful_uri_hash(),
                                        },
                                    );
                                }
                                if let Some(&i) = by_uuid.get(&uuid) {
                                    let busy = runs[i].session.is_some() || runs[i].job.is_some();
                                    if jobs::unprovisioned_again(
                                        &mut engine,
                                        &mut sink,
                                        now,
                                        &uuid,
                                        busy,
                                    )? {
                                        runs[i].unconfirmed = None;
                                    }
                                }
                            }
                        }
                        Delivery::Adv { .. } => {}
                        Delivery::Gatt { from, data, .. } => {
                            if let Some(id) = by_endpoint.get(from).and_then(|i| runs[*i].session) {
                                host.handle_gatt(now, id, data);
                            }
                        }
                    }
                } else if let Some(&i) = by_endpoint.get(&d.to())
                    && let Some(dev) = devs[i].as_mut()
                {
                    dev.handle_delivery(now, &d);
                    live.insert(i);
                }
            }
            for &i in &live {
                let Some(id) = runs[i].session else { continue };
                let inst = &mut runs[i].installer;
                if let Some(t) = inst.gatt_ready_at
                    && now >= t
                {
                    inst.gatt_ready_at = None;
                    host.gatt_ready(now, id);
                }
            }
            progress |= host.drive(now, &mut sink);
            while let Some((id, seg)) = host.poll_gatt_transmit() {
                progress = true;
                if let Some(d) = devs[dev_of_session[id.0]].as_ref() {
                    air.gatt_send(me, d.endpoint, &seg);
                }
            }
            while let Some(ev) = host.poll_event() {
                progress = true;
                match ev {
                    HostEvent::OutputOobRequested {
                        session,
                        action,
                        size,
                    } => {
                        let i = dev_of_session[session.0];
                        engine.notify(
                            now,
                            &targets[i].uuid,
                            EventKind::OobRequested {
                                action: action.name().unwrap_or("RFU").to_string(),
                                size,
                            },
                        );
                        runs[i].installer.output_pending = opts.installer;
                    }
                    HostEvent::InputOobDisplay {
                        session,
                        value,
                        action,
                    } => {
                        let i = dev_of_session[session.0];
                        let shown = match &value {
                            OobValue::Numeric(v) => v.to_string(),
                            OobValue::Alphanumeric(s) => s.clone(),
                        };
                        engine.notify(
                            now,
                            &targets[i].uuid,
                            EventKind::OobDisplay {
                                value: shown,
                                action: action.name().unwrap_or("RFU").to_string(),
                            },
                        );
                        if opts.installer {
                            runs[i].installer.input_value = Some(value);
                        }
                    }
                    HostEvent::Finished { session } => finished.push(session),
                }
            }
            // The simulated installer.
            for &i in &live {
                let (Some(id), Some(dev)) = (runs[i].session, devs[i].as_mut()) else {
                    continue;
                };
                let inst = &mut runs[i].installer;
                if inst.output_pending && inst.output_at.is_none() && dev.displayed().is_some() {
                    inst.output_at = Some(now + INSTALLER_DELAY);
                }
                if let (true, Some(t)) = (inst.output_pending, inst.output_at)
                    && now >= t
                {
                    inst.output_pending = false;
                    if let Some(v) = dev.displayed().cloned() {
                        let _ = host.provide_output_oob(now, id, v);
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
            progress |= conf.drive(now);
            // One network PDU at a time, taken when the copies of the previous one are out:
            // the backlog stays in the transport, which starts a segmented message's
            // retransmission timer only when its round has gone on air (MshPRT v1.1
            // §3.5.3.3.1) and withdraws what became stale meanwhile.
            if net_out.is_empty()
                && let Some(t) = conf.poll_transmit_at(now)
            {
                progress = true;
                net_out.push(now, &t);
            }
            for &i in &live {
                if let Some(d) = devs[i].as_mut() {
                    d.pump(now, &mut air);
                }
            }
            // One radio: an advertising event at a time, taking turns between the queues.
            if staged.is_none() {
                staged = host.poll_adv_transmit(now);
            }
            if air.adv_ready_at(me) <= now {
                let net_due = net_out.next_due().is_some_and(|t| t <= now);
                if net_due && (prefer_net || staged.is_none()) {
                    if net_out.pump(now, &mut air, me) {
                        progress = true;
                        prefer_net = false;
                    }
                } else if let Some(p) = staged.take() {
                    air.advertise(me, AD_TYPE_PB_ADV, &p);
                    progress = true;
                    prefer_net = true;
                }
            }
            if !progress {
                break;
            }
        }

        // 3. Sessions: progress events, ends, time limits.
        for &i in &live {
            let Some(id) = runs[i].session else { continue };
            let Some(s) = host.session(id) else { continue };
            let t = s.transcript();
            if t.len() > runs[i].seen {
                let uuid = targets[i].uuid;
                for kind in transcript_events(t, runs[i].seen) {
                    match kind {
                        EventKind::LinkOpened => {
                            // The device took a new link: it is unprovisioned, so it never
                            // got the Provisioning Data of its unconfirmed commit.
                            if runs[i].unconfirmed.take().is_some() {
                                store.borrow_mut().void_unconfirmed(
                                    &uuid,
                                    "the device acknowledged a new link, so it never received its Provisioning Data",
                                )?;
                                sink.committed.remove(&uuid);
                            }
                            engine.link_opened(now, &uuid);
                        }
                        EventKind::Authenticated { method } => {
                            engine.authenticated(now, &uuid, &method)
                        }
                        k @ EventKind::Capabilities { .. } => engine.capabilities(now, &uuid, k),
                        _ => {}
                    }
                }
                runs[i].seen = t.len();
            }
            if runs[i].deadline.is_some_and(|d| now >= d) && !s.is_finished() {
                host.abort(now, id, ProvisioningError::Timeout);
            }
        }
        for id in finished {
            let i = dev_of_session[id.0];
            if runs[i].session != Some(id) {
                continue;
            }
            runs[i].session = None;
            runs[i].deadline = None;
            runs[i].installer = Installer::default();
            let uuid = targets[i].uuid;
            if bearer == BearerChoice::Gatt
                && let Some(d) = devs[i].as_mut()
            {
                d.gatt_disconnected();
            }
            muting.push((now + MUTE_AFTER, i));
            let Some(s) = host.session(id) else { continue };
            engine.set_transcript(&uuid, transcript_names(s.transcript()));
            match &s.result {
                Some(Ok(o)) => engine.provisioned(now, &uuid, o.address, o.elements),
                Some(Err(e)) => {
                    if let Some((a, n)) = runs[i].unconfirmed.take() {
                        // The device did not take a new link either: it may well hold its
                        // keys. Configuring it tells, or its beacon if it is back without.
                        engine.provisioned(now, &uuid, a, n);
                        unconfirmed_watch.insert(i);
                    } else if let Some(&(a, n)) = sink.committed.get(&uuid) {
                        // Committed, Provisioning Complete never seen: did the device get its
                        // data? The next attempt's Link Open tells (a device that got it no
                        // longer takes links).
                        runs[i].unconfirmed = Some((a, n));
                        engine.phase_failed(
                            now,
                            &uuid,
                            Phase::Provisioning,
                            format!(
                                "{} after the node was committed at 0x{a:04x}: no Provisioning Complete",
                                e.user_message()
                            ),
                            true,
                        );
                        if engine
                            .status(&uuid)
                            .is_some_and(|d| d.stage == crate::rollout::Stage::Failed)
                        {
                            // No attempt left: the next run configures the stored node.
                            runs[i].unconfirmed = None;
                        }
                    } else {
                        // Not committed, or committed and voided at once because the device
                        // refused its Provisioning Data (a refusal: not retried).
                        engine.phase_failed(
                            now,
                            &uuid,
                            Phase::Provisioning,
                            failure_message(e, s.voided()),
                            retryable(e),
                        );
                    }
                }
                None => {}
            }
        }

        // 4. Configuration jobs.
        for &i in &live {
            let Some(job) = &runs[i].job else { continue };
            let uuid = targets[i].uuid;
            let past_deadline = runs[i].deadline.is_some_and(|d| now >= d);
            let done = job.done(&conf);
            if !done && !past_deadline {
                continue;
            }
            let phase = job.phase;
            let range = job.range();
            runs[i].job = None;
            runs[i].deadline = None;
            muting.push((now + MUTE_AFTER, i));
            if !done {
                jobs::timed_out(&mut engine, now, &uuid, phase, "");
                continue;
            }
            jobs::finish(
                &mut engine,
                &store,
                plan,
                prepared,
                &targets[i],
                now,
                phase,
                &conf.results()[range],
            );
        }

        muting.retain(|&(t, i)| {
            if t > now {
                return true;
            }
            if runs[i].job.is_none()
                && runs[i].session.is_none()
                && let Some(d) = devs[i].as_mut()
            {
                d.set_network_listening(&mut air, false);
            }
            false
        });

        unconfirmed_watch.retain(|&i| {
            engine.status(&targets[i].uuid).is_some_and(|s| {
                matches!(
                    s.stage,
                    crate::rollout::Stage::Committed
                        | crate::rollout::Stage::Configuring
                        | crate::rollout::Stage::Verifying
                ) && s.address.is_some()
            })
        });
        if !unplanned_on_air && unconfirmed_watch != filtered {
            let watched: Vec<DeviceUuid> =
                unconfirmed_watch.iter().map(|&i| targets[i].uuid).collect();
            set_filter(&mut air, false, &watched);
            filtered = unconfirmed_watch.clone();
        }

        // 5. The observer: events, snapshot, commands.
        let mut changed = false;
        while let Some(ev) = engine.poll_event() {
            changed = true;
            observer.event(&ev);
        }
        for c in observer.tick(&engine) {
            changed = true;
            let _ = engine.command(now, c);
        }

        live.retain(|&i| {
            runs[i].session.is_some()
                || runs[i].job.is_some()
                || devs[i]
                    .as_ref()
                    .is_some_and(|d| d.poll_timeout_with(&air).is_some())
        });
        if engine.is_finished()
            && host.is_idle()
            && staged.is_none()
            && net_out.is_empty()
            && !observer.keep_running()
        {
            break;
        }
        if changed {
            // Results may have freed slots: act on them at this same instant.
            continue;
        }
        let mut next: Option<Instant> = air.next_delivery();
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(host.poll_timeout());
        consider(conf.poll_timeout());
        consider(net_out.poll_timeout(&air, me));
        consider(staged.as_ref().map(|_| air.adv_ready_at(me)));
        consider(engine.poll_timeout());
        consider(muting.iter().map(|(t, _)| *t).min());
        for &i in &live {
            let r = &runs[i];
            consider(r.deadline);
            // The installer's timers only while their session runs: they are acted on only
            // then (step 2), and a time that nothing acts on would hold the clock at `now`
            // for ever (a Stop or a failure during the installer's delay once did just that).
            let inst = &r.installer;
            if r.session.is_some() {
                consider(inst.gatt_ready_at);
                consider(inst.output_at.filter(|_| inst.output_pending));
                consider(inst.input_at.filter(|_| inst.input_value.is_some()));
            }
            if let Some(d) = &devs[i] {
                consider(d.poll_timeout_with(&air));
            }
        }
        // Paced for a person (Observer::pace: the terminal UI); unpaced by default.
        let next = observer.pace(now, next).map(|t| t.max(now));
        let Some(t) = next else { break };
        if t > deadline {
            if !stopped_by_deadline {
                stopped_by_deadline = true;
                let _ = engine.command(now, Command::Stop);
                continue;
            }
            break;
        }
        air.advance_to(t.max(now));
        now = air.now();
        host.handle_timeout(now);
        conf.handle_timeout(now);
        engine.handle_timeout(now);
        for &i in &live {
            if let Some(d) = devs[i].as_mut() {
                d.handle_timeout(now);
            }
        }
    }

    let virtual_time = now.since_epoch();
    let summary = engine.summary(now, Some(virtual_time), wall.elapsed());
    while let Some(ev) = engine.poll_event() {
        observer.event(&ev);
    }
    let report = RolloutReport {
        summary,
        devices: engine.snapshot(now),
    };
    let nodes = targets
        .iter()
        .zip(devs)
        .filter_map(|(d, v)| v.map(|v| (d.uuid, v)))
        .collect();
    Ok(SimOutcome {
        report,
        air: air.stats(),
        retransmissions: host.retransmissions(),
        nodes,
    })
}

/// A finished job's verdict: Ok (with the Composition Data of a verification), or the reason
/// and whether another attempt may help (time-outs may, refusals do not).
pub(crate) fn judge(
    results: &[crate::sim::configure::ConfigResult],
    phase: Phase,
) -> Result<Vec<u8>, (String, bool)> {
    let mut data = Vec::new();
    for r in results {
        match &r.outcome {
            ConfigOutcome::TimedOut => {
                return Err((
                    format!(
                        "no answer to {} after {} attempts",
                        template::request_name(&r.request),
                        r.attempts
                    ),
                    true,
                ));
            }
            ConfigOutcome::Status(m) => {
                template::check(&r.request, m).map_err(|e| (e, false))?;
                if let ConfigMessage::CompositionDataStatus { page: 0, data: d } = m {
                    data = d.clone();
                }
            }
        }
    }
    if phase == Phase::Verifying && data.is_empty() {
        return Err(("no Composition Data page 0 in the answer".into(), false));
    }
    Ok(data)
}
