//! The rollout engine in real time over any [`Radio`] (bluetooth-meshd's socket, BlueZ), under
//! tokio.
//!
//! One loop owns the radio ([`Mux`]) and multiplexes the provisioning [`Host`] (PB-ADV links,
//! PB-GATT connections) and the [`ConfigHost`] (the network layer), as the simulated driver
//! does on the simulated air: a device is configured while others are still being provisioned,
//! up to the plan's limits for each. Network PDUs go either on the advertising bearer
//! ([`ConfigBearer::Advertising`]: bluetooth-meshd's socket, radios that send raw adverts) or
//! through a GATT proxy connection ([`ConfigBearer::Proxy`]: BlueZ and btleplug, which cannot
//! send mesh adverts): the driver connects to a node's Mesh Proxy service — the node being
//! configured when it advertises its Node Identity, else any node of the subnet by Network ID
//! (MshPRT v1.1 §7.2.2.2) after waiting [`PROXY_IDENTITY_GRACE`] for the node's own identity —
//! keeps the connection while nodes are being configured (every node through it), connects
//! again when it is lost or its filter set-up is not answered, and closes it when no node is
//! being configured (the next one is then reached through itself, if it advertises its
//! identity).
//!
//! Every Unprovisioned Device beacon and PB-GATT advert heard goes to [`Engine::heard`]: the
//! plan's `[discovery]` rule takes matching unplanned devices, which are then provisioned with
//! the rule's authentication and configured with its template ([`Target::unplanned`]). Devices
//! the store has but the plan does not are never provisioned again, even when heard.
//!
//! Output OOB needs someone to read the device: the observer answers with
//! [`Command::AnswerOob`](crate::rollout::Command::AnswerOob) (the terminal UI, or `rollout --oob-stdin`). Without one
//! ([`LiveRolloutOptions::oob_answers`] off), a device that shows an Output OOB value fails at
//! once with what to do.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::bearer::pb_adv::PbAdvConfig;
use crate::config_host::{ConfigHost, ConfigNode};
use crate::host::{Host, HostEvent, SessionId, failure_message};
use crate::live::{Mux, MuxEvent, PROXY_IDENTITY_GRACE, session_rng};
use crate::net::config::{ConfigClientConfig, ConfigMessage};
use crate::net::proxy::ProxyClientConfig;
use crate::provisioning::{ProvisioningError, ProvisioningParams};
use crate::radio::{BdAddr, Radio};
use crate::rollout::engine::{Action, Engine, EventKind, Heard, Phase};
use crate::rollout::jobs::{self, Job};
use crate::rollout::{
    Observer, Plan, PlanSink, Prepared, RolloutError, RolloutReport, SharedSeq, SharedStore,
    Target, engine_config, parse_oob_answer, retryable, session_config, template,
    transcript_events, transcript_names,
};
use crate::sim::run::BearerChoice;
use crate::time::Instant;
use crate::uuid::DeviceUuid;
use crate::wire::beacon::ProxyServiceData;

/// How Config messages reach the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConfigBearer {
    /// Network PDUs on the advertising bearer (AD type 0x2A, MshPRT v1.1 §3.3.1).
    #[default]
    Advertising,
    /// Through a node's GATT proxy (Mesh Proxy service 0x1828, MshPRT v1.1 §6).
    Proxy,
}

/// Options of a real-time rollout.
#[derive(Clone, Debug)]
pub struct LiveRolloutOptions {
    /// PB-ADV timings (bluetooth-meshd needs slower ones).
    pub pb_adv: PbAdvConfig,
    /// The Config client's waits (bluetooth-meshd answers slowly).
    pub client: ConfigClientConfig,
    /// How long a PB-GATT session waits for the device's connectable advert.
    pub discovery_timeout: Duration,
    /// Seed for session randomness; `None` (always, outside tests) draws from the OS.
    pub seed: Option<u64>,
    /// How Config messages reach the nodes.
    pub config_bearer: ConfigBearer,
    /// Whether the observer answers Output OOB prompts ([`Command::AnswerOob`](crate::rollout::Command::AnswerOob)); when not, a
    /// device that shows an Output OOB value fails at once.
    pub oob_answers: bool,
    /// What a device that asks for Output OOB nobody can answer fails with.
    pub no_oob_reason: String,
}

impl Default for LiveRolloutOptions {
    fn default() -> Self {
        Self {
            pb_adv: PbAdvConfig::default(),
            client: ConfigClientConfig::default(),
            discovery_timeout: Duration::from_secs(30),
            seed: None,
            config_bearer: ConfigBearer::Advertising,
            oob_answers: true,
            no_oob_reason: "the device shows an Output OOB value and nobody can read it".into(),
        }
    }
}

/// How long a proxy connection may take to set up its filter before another node is tried.
const PROXY_SETUP: Duration = Duration::from_secs(10);

/// How long a proxy connection is kept without any node being configured through it (the
/// next node's configuration usually follows at once).
const PROXY_IDLE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Run {
    session: Option<SessionId>,
    /// Waiting for its PB-GATT advert.
    discovering: bool,
    seen: usize,
    job: Option<Job>,
    deadline: Option<Instant>,
    attention: bool,
    /// Why its session was aborted by the driver (instead of the session's own error).
    abort_reason: Option<String>,
}

/// The GATT proxy the Config host goes through ([`ConfigBearer::Proxy`]).
#[derive(Default)]
struct ProxyChoice {
    /// A node of the subnet heard by Network ID: (address, when first heard).
    network: Option<(BdAddr, Instant)>,
    /// Node Identity adverts heard (a node advertises it for a while after provisioning, and
    /// a radio may report it once): the latest per address.
    identities: BTreeMap<BdAddr, ([u8; 8], [u8; 8])>,
    /// The node connected to, and its unicast address when it was chosen by its identity.
    connected_to: Option<BdAddr>,
    node: Option<u16>,
    /// Since when no node has been configured through the connection.
    idle_since: Option<Instant>,
    /// Since when the connection has been waiting for its filter set-up.
    connecting_since: Option<Instant>,
}

/// Runs `plan` over `radio` in real time; `prepared` from [`crate::rollout::prepare`] on the
/// same `store`.
pub async fn run<R: Radio>(
    radio: &mut R,
    plan: &Plan,
    store: SharedStore,
    prepared: &Prepared,
    opts: &LiveRolloutOptions,
    observer: &mut dyn Observer,
) -> Result<RolloutReport, RolloutError> {
    let radio_err = |e: crate::live::LiveError| RolloutError::Radio(e.to_string());
    let mut mux = Mux::new(opts.discovery_timeout);
    let bearer = plan.policy.bearer;
    let mut engine = Engine::new(
        mux.now(),
        engine_config(plan),
        prepared.devices.clone(),
        "wall",
    );
    engine.set_discovery(plan.discovery.clone());
    let mut targets: BTreeMap<DeviceUuid, Target> = prepared
        .targets
        .iter()
        .map(|t| (t.uuid, t.clone()))
        .collect();
    let own_address = store.borrow_mut().provisioner_address()?;
    let mut conf = ConfigHost::new(
        own_address,
        prepared.iv_index,
        &[(prepared.net_key_index, prepared.net_key.clone())],
        &[],
        opts.client.clone(),
        SharedSeq(store.clone()),
    );
    let mut host = Host::new(
        ProvisioningParams {
            net_key: prepared.net_key.clone(),
            net_key_index: prepared.net_key_index,
            flags: 0,
            iv_index: prepared.iv_index,
        },
        opts.pb_adv.clone(),
        Box::new(session_rng(opts.seed, 0x4c49_4e4b)),
        prepared.verifier.clone(),
    );
    let mut sink = PlanSink::new(store.clone(), plan);
    let mut runs: BTreeMap<DeviceUuid, Run> = BTreeMap::new();
    let mut of_session: BTreeMap<SessionId, DeviceUuid> = BTreeMap::new();
    let mut proxy = ProxyChoice::default();
    let network_id = mesh_crypto::toolbox::k3(&prepared.net_key);
    let identity_key = mesh_crypto::toolbox::identity_key(&prepared.net_key);
    let mut sessions_opened = 0u64;

    loop {
        let now = mux.now();
        // 1. What the engine asks for.
        while let Some(a) = engine.poll_action(now) {
            match a {
                Action::Provision { uuid, attempt } => {
                    let t = targets
                        .entry(uuid)
                        .or_insert_with(|| Target::unplanned(plan, uuid))
                        .clone();
                    let run = runs.entry(uuid).or_default();
                    let mut config = session_config(plan, &t.auth, bearer, 23);
                    if run.attention {
                        config.attention_duration = 5;
                    }
                    sessions_opened += 1;
                    let rng = Box::new(session_rng(
                        opts.seed,
                        2000 + sessions_opened * 7919 + u64::from(attempt),
                    ));
                    run.seen = 0;
                    run.abort_reason = None;
                    match bearer {
                        BearerChoice::Adv => {
                            let id = mux.open_adv(&mut host, uuid, t.name.clone(), config, rng);
                            of_session.insert(id, uuid);
                            run.session = Some(id);
                            run.deadline = Some(now + plan.policy.provision_timeout);
                        }
                        BearerChoice::Gatt => {
                            mux.await_gatt(uuid, t.name.clone(), config, rng);
                            run.discovering = true;
                            run.deadline = None;
                        }
                    }
                }
                Action::Configure { uuid, address, .. } => {
                    let node = store.borrow().node_by_uuid(&uuid)?;
                    conf.add_node(&ConfigNode {
                        address,
                        device_key: node.device_key,
                        net_key_index: prepared.net_key_index,
                    });
                    let t = targets
                        .entry(uuid)
                        .or_insert_with(|| Target::unplanned(plan, uuid));
                    let reqs = plan
                        .templates
                        .get(&t.template)
                        .map(|t| template::requests(t, address, &prepared.resolved))
                        .unwrap_or_default();
                    let run = runs.entry(uuid).or_default();
                    run.job = jobs::start(
                        &mut conf,
                        &mut engine,
                        now,
                        uuid,
                        address,
                        Phase::Configuring,
                        reqs,
                    );
                    run.deadline = run.job.map(|_| now + plan.policy.configure_timeout);
                }
                Action::Verify { uuid, address } => {
                    let run = runs.entry(uuid).or_default();
                    run.job = jobs::start(
                        &mut conf,
                        &mut engine,
                        now,
                        uuid,
                        address,
                        Phase::Verifying,
                        vec![ConfigMessage::CompositionDataGet { page: 0 }],
                    );
                    run.deadline = run.job.map(|_| now + plan.policy.configure_timeout);
                }
                Action::Cancel { uuid } => {
                    if let Some(run) = runs.get_mut(&uuid) {
                        if let Some(id) = run.session.take() {
                            host.abort(now, id, ProvisioningError::LinkClosed);
                        }
                        if run.discovering {
                            mux.cancel_gatt(&uuid);
                            run.discovering = false;
                        }
                        run.job = None;
                        run.deadline = None;
                    }
                    engine.cancelled(now, &uuid);
                }
                Action::Exclude { uuid } => {
                    let a = store.borrow().node_by_uuid(&uuid).map(|n| n.address);
                    if let Ok(a) = a {
                        store.borrow_mut().exclude_node(a)?;
                    }
                }
                Action::Identify { uuid } => {
                    let how = if engine.status(&uuid).is_some_and(|s| s.address.is_some()) {
                        "not possible: the node is provisioned and meshprov has no Health client (Attention Timer) yet".to_string()
                    } else {
                        runs.entry(uuid).or_default().attention = true;
                        "Attention Duration 5 s in the Invite of its next provisioning attempt"
                            .to_string()
                    };
                    engine.notify(now, &uuid, EventKind::Identify { how });
                }
                Action::AnswerOob { uuid, value } => {
                    if let Some(id) = runs.get(&uuid).and_then(|r| r.session) {
                        // A wrong value fails the session (Confirmation Failed), as it should.
                        let _ = host.provide_output_oob(now, id, parse_oob_answer(&value));
                    }
                }
            }
        }

        // 2. The cores at this instant, and what the radio brought.
        let proxy_mode = opts.config_bearer == ConfigBearer::Proxy;
        // Without a proxy connection, Config requests wait (the advertising bearer is not ours).
        let conf_now = !proxy_mode || mux.proxy().is_some();
        mux.settle(
            radio,
            Some((&mut host, &mut sink)),
            conf_now.then_some(&mut conf),
        )
        .await
        .map_err(radio_err)?;
        if let Some(t) = mux.last_heard() {
            engine.air_heard(t);
        }
        while let Some(ev) = mux.poll_event() {
            match ev {
                MuxEvent::Unprovisioned {
                    uuid,
                    rssi,
                    oob_info,
                    uri_hash,
                } => {
                    if !prepared.stored_elsewhere.contains(&uuid) {
                        engine.heard(
                            now,
                            Heard {
                                uuid,
                                rssi,
                                oob_info,
                                uri_hash,
                            },
                        );
                    }
                    let busy = runs
                        .get(&uuid)
                        .is_some_and(|r| r.session.is_some() || r.discovering || r.job.is_some());
                    jobs::unprovisioned_again(&mut engine, &mut sink, now, &uuid, busy)?;
                }
                MuxEvent::ProxyAdvert { address, data, .. } => {
                    if !proxy_mode {
                        continue;
                    }
                    match data {
                        ProxyServiceData::NetworkId(id)
                            if id == network_id && proxy.network.is_none() =>
                        {
                            proxy.network = Some((address, now));
                        }
                        ProxyServiceData::NodeIdentity { hash, random } => {
                            proxy.identities.insert(address, (hash, random));
                        }
                        _ => {}
                    }
                }
                MuxEvent::ProxyLost(_reason) => {
                    // Requests in flight are retried through the next connection.
                    proxy.network = None;
                    proxy.connecting_since = None;
                    proxy.node = None;
                }
                MuxEvent::Host(HostEvent::OutputOobRequested {
                    session,
                    action,
                    size,
                }) => {
                    let Some(uuid) = of_session.get(&session).copied() else {
                        continue;
                    };
                    engine.notify(
                        now,
                        &uuid,
                        EventKind::OobRequested {
                            action: action.name().unwrap_or("RFU").to_string(),
                            size,
                        },
                    );
                    if !opts.oob_answers {
                        if let Some(r) = runs.get_mut(&uuid) {
                            r.abort_reason = Some(opts.no_oob_reason.clone());
                        }
                        host.abort(now, session, ProvisioningError::LinkClosed);
                    }
                }
                MuxEvent::Host(HostEvent::InputOobDisplay {
                    session,
                    value,
                    action,
                }) => {
                    if let Some(uuid) = of_session.get(&session) {
                        engine.notify(
                            now,
                            uuid,
                            EventKind::OobDisplay {
                                value: match value {
                                    crate::provisioning::OobValue::Numeric(v) => v.to_string(),
                                    crate::provisioning::OobValue::Alphanumeric(s) => s,
                                },
                                action: action.name().unwrap_or("RFU").to_string(),
                            },
                        );
                    }
                }
                MuxEvent::Host(HostEvent::Finished { session }) => {
                    let Some(uuid) = of_session.get(&session).copied() else {
                        continue;
                    };
                    let run = runs.entry(uuid).or_default();
                    if run.session != Some(session) {
                        continue;
                    }
                    run.session = None;
                    run.deadline = None;
                    let Some(s) = host.session(session) else {
                        continue;
                    };
                    for k in transcript_events(s.transcript(), run.seen) {
                        progress(&mut engine, now, &uuid, k);
                    }
                    engine.set_transcript(&uuid, transcript_names(s.transcript()));
                    match &s.result {
                        Some(Ok(o)) => engine.provisioned(now, &uuid, o.address, o.elements),
                        Some(Err(e)) => match sink.committed.get(&uuid) {
                            // Committed, Complete not seen: configuring it tells whether it
                            // got its keys.
                            Some((a, n)) => engine.provisioned(now, &uuid, *a, *n),
                            // A reason of the driver's own (nobody to read Output OOB) is
                            // final; the session's error is retried when the link failed. A
                            // device that refused its Provisioning Data had its commit voided
                            // (no longer in `committed`): a refusal, not retried.
                            None => {
                                let (reason, again) = match run.abort_reason.take() {
                                    Some(reason) => (reason, false),
                                    None => (failure_message(e, s.voided()), retryable(e)),
                                };
                                engine.phase_failed(now, &uuid, Phase::Provisioning, reason, again);
                            }
                        },
                        None => {}
                    }
                }
                MuxEvent::GattOpened { uuid, session } => {
                    of_session.insert(session, uuid);
                    let run = runs.entry(uuid).or_default();
                    run.discovering = false;
                    run.session = Some(session);
                    run.deadline = Some(now + plan.policy.provision_timeout);
                }
                MuxEvent::GattFailed { uuid, error } => {
                    if let Some(r) = runs.get_mut(&uuid) {
                        r.discovering = false;
                    }
                    let reason = match &error {
                        ProvisioningError::Timeout => format!(
                            "no PB-GATT advert from the device within {} s",
                            opts.discovery_timeout.as_secs()
                        ),
                        e => e.user_message(),
                    };
                    engine.phase_failed(now, &uuid, Phase::Provisioning, reason, true);
                }
            }
        }

        // 3. Sessions' progress and time limits; finished jobs.
        for (uuid, run) in runs.iter_mut() {
            if let Some(id) = run.session
                && let Some(s) = host.session(id)
            {
                let t = s.transcript();
                if t.len() > run.seen {
                    for k in transcript_events(t, run.seen) {
                        progress(&mut engine, now, uuid, k);
                    }
                    run.seen = t.len();
                }
                if run.deadline.is_some_and(|d| now >= d) && !s.is_finished() {
                    host.abort(now, id, ProvisioningError::Timeout);
                }
            }
            let Some(job) = run.job else { continue };
            let done = job.done(&conf);
            if !done && run.deadline.is_none_or(|d| now < d) {
                continue;
            }
            run.job = None;
            run.deadline = None;
            if !done {
                let how = if proxy_mode && mux.proxy().is_none() {
                    " (no GATT proxy of the network was reachable)"
                } else {
                    ""
                };
                jobs::timed_out(&mut engine, now, uuid, job.phase, how);
                continue;
            }
            let Some(t) = targets.get(uuid) else { continue };
            jobs::finish(
                &mut engine,
                &store,
                plan,
                prepared,
                t,
                now,
                job.phase,
                &conf.results()[job.range()],
            );
        }

        // 4. The proxy: the node being configured itself (by its Node Identity), else any node
        // of the subnet (by Network ID); kept while nodes are being configured through it,
        // closed after PROXY_IDLE without any.
        if proxy_mode {
            // The nodes being configured (or verified), and the one that advertises itself.
            let configured: Vec<u16> = runs
                .iter()
                .filter(|(_, r)| r.job.is_some())
                .filter_map(|(u, _)| engine.status(u).and_then(|s| s.address))
                .collect();
            let itself = proxy
                .identities
                .iter()
                .find_map(|(address, (hash, random))| {
                    configured
                        .iter()
                        .find(|a| {
                            mesh_crypto::beacon::node_identity_hash(&identity_key, random, **a)
                                == *hash
                        })
                        .map(|a| (*address, *a))
                });
            if configured.is_empty() {
                proxy.idle_since.get_or_insert(now);
            } else {
                proxy.idle_since = None;
            }
            let idle = proxy
                .idle_since
                .is_some_and(|t| now.saturating_duration_since(t) >= PROXY_IDLE);
            let unanswered = proxy
                .connecting_since
                .is_some_and(|t| now.saturating_duration_since(t) > PROXY_SETUP);
            // A proxy that is a node no longer being configured gives way to a node that is
            // and that advertises itself (a node's own proxy needs no relay to reach it).
            let elsewhere = proxy.node.is_some_and(|n| !configured.contains(&n))
                && itself.is_some_and(|(_, a)| Some(a) != proxy.node);
            if mux.proxy().is_some() && (idle || unanswered || elsewhere) {
                mux.disconnect_proxy(radio).await;
                if unanswered && let Some(a) = proxy.connected_to {
                    // Its filter set-up was not answered: another node next time.
                    proxy.identities.remove(&a);
                }
                proxy.network = None;
                proxy.connecting_since = None;
                proxy.node = None;
            }
            if mux.proxy().is_some() && mux.proxy_ready() {
                proxy.connecting_since = None;
            }
            if mux.proxy().is_none() && !configured.is_empty() {
                let network = proxy
                    .network
                    .filter(|(_, since)| {
                        now.saturating_duration_since(*since) >= PROXY_IDENTITY_GRACE
                    })
                    .map(|(address, _)| (address, None));
                let choice = itself.map(|(address, a)| (address, Some(a))).or(network);
                if let Some((address, node)) = choice {
                    let client = ProxyClientConfig {
                        address: own_address,
                        net_key_index: prepared.net_key_index,
                        ..ProxyClientConfig::default()
                    };
                    match mux.connect_proxy(radio, &mut conf, address, client).await {
                        Ok(()) => {
                            proxy.connecting_since = Some(now);
                            proxy.connected_to = Some(address);
                            proxy.node = node;
                        }
                        // This node cannot be reached: wait for another advert.
                        Err(
                            crate::live::LiveError::Radio(_) | crate::live::LiveError::Proxy(_),
                        ) => {
                            proxy.identities.remove(&address);
                            proxy.network = None;
                        }
                        Err(e) => return Err(RolloutError::Radio(e.to_string())),
                    }
                }
            }
        }

        // 5. The observer: events, snapshot, commands.
        while let Some(ev) = engine.poll_event() {
            observer.event(&ev);
        }
        for c in observer.tick(&engine) {
            let _ = engine.command(now, c);
        }
        if engine.is_finished()
            && !observer.keep_running()
            && host.is_idle()
            && mux.adverts_queued() == 0
        {
            break;
        }

        // 6. Wait: an advertising event, the next deadline, the radio, or 100 ms (commands).
        let mut wake = now + Duration::from_millis(100);
        for t in [engine.poll_timeout()]
            .into_iter()
            .chain(runs.values().map(|r| r.deadline))
            .flatten()
        {
            wake = wake.min(t);
        }
        mux.wait(
            radio,
            Some(&mut host),
            conf_now.then_some(&mut conf),
            Some(wake.max(now)),
        )
        .await
        .map_err(radio_err)?;
        engine.handle_timeout(mux.now());
    }
    if mux.proxy().is_some() {
        mux.disconnect_proxy(radio).await;
    }
    let now = mux.now();
    let summary = engine.summary(now, None, now.since_epoch());
    while let Some(ev) = engine.poll_event() {
        observer.event(&ev);
    }
    Ok(RolloutReport {
        summary,
        devices: engine.snapshot(now),
    })
}

/// A session's transcript progress to the engine.
fn progress(engine: &mut Engine, now: Instant, uuid: &DeviceUuid, k: EventKind) {
    match k {
        EventKind::LinkOpened => engine.link_opened(now, uuid),
        EventKind::Authenticated { method } => engine.authenticated(now, uuid, &method),
        k @ EventKind::Capabilities { .. } => engine.capabilities(now, uuid, k),
        _ => {}
    }
}
