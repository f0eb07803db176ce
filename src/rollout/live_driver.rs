//! The rollout engine in real time over any [`Radio`] (bluetooth-meshd's socket, BlueZ), under
//! tokio.
//!
//! It runs the engine's actions in waves: the provisioning sessions the engine starts at one
//! moment run together through [`live::provision`] (up to the plan's concurrency), then the
//! configurations and verifications it starts run together through [`live::configure`] (one
//! request per node in flight, every node at once), and the results go back to the engine,
//! which schedules the next wave (retries after their backoff). Unlike the simulated driver,
//! provisioning and configuration do not overlap: a radio that serves one link table and one
//! network layer at the same instant is the next step (`live::provision` and `live::configure`
//! each own the radio while they run). Output OOB on a real radio needs an installer's answer
//! that a headless run cannot give: such sessions time out and fail with that reason.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::bearer::pb_adv::PbAdvConfig;
use crate::config_host::{ConfigHost, ConfigNode};
use crate::live::{self, LiveEvent, LiveOptions, LiveTarget};
use crate::net::config::{ConfigClientConfig, ConfigMessage};
use crate::provisioning::ProvisioningParams;
use crate::radio::Radio;
use crate::rollout::engine::{Action, Engine, EventKind, Phase};
use crate::rollout::sim_driver::judge;
use crate::rollout::{
    Observer, Plan, PlanSink, Prepared, RolloutError, RolloutReport, SharedSeq, SharedStore,
    engine_config, retryable, session_config, template, transcript_events, transcript_names,
};
use crate::time::Instant;
use crate::uuid::DeviceUuid;

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
}

impl Default for LiveRolloutOptions {
    fn default() -> Self {
        Self {
            pb_adv: PbAdvConfig::default(),
            client: ConfigClientConfig::default(),
            discovery_timeout: Duration::from_secs(30),
            seed: None,
        }
    }
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
    let epoch = std::time::Instant::now();
    let clock = move || Instant::from_epoch(epoch.elapsed());
    let bearer = plan.policy.bearer;
    let mut engine = Engine::new(
        clock(),
        engine_config(plan),
        prepared.devices.clone(),
        "wall",
    );
    let by_uuid: BTreeMap<DeviceUuid, usize> = plan
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| (d.uuid, i))
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
    let mut sink = PlanSink::new(store.clone(), plan);
    let mut attention: BTreeMap<DeviceUuid, bool> = BTreeMap::new();
    let mut wave = 0u64;

    loop {
        let now = clock();
        let mut provision: Vec<DeviceUuid> = Vec::new();
        let mut jobs: Vec<(DeviceUuid, u16, Phase, Vec<ConfigMessage>)> = Vec::new();
        while let Some(a) = engine.poll_action(now) {
            match a {
                Action::Provision { uuid, .. } => provision.push(uuid),
                Action::Configure { uuid, address, .. } => {
                    let node = store.borrow().node_by_uuid(&uuid)?;
                    conf.add_node(&ConfigNode {
                        address,
                        device_key: node.device_key,
                        net_key_index: prepared.net_key_index,
                    });
                    let i = by_uuid[&uuid];
                    let reqs = plan
                        .templates
                        .get(&plan.devices[i].template)
                        .map(|t| template::requests(t, address, &prepared.resolved))
                        .unwrap_or_default();
                    engine.configuring(now, &uuid, reqs.len());
                    jobs.push((uuid, address, Phase::Configuring, reqs));
                }
                Action::Verify { uuid, address } => jobs.push((
                    uuid,
                    address,
                    Phase::Verifying,
                    vec![ConfigMessage::CompositionDataGet { page: 0 }],
                )),
                // Waves are not interrupted: a cancelled device is simply not started again.
                Action::Cancel { uuid } => engine.cancelled(now, &uuid),
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
                        attention.insert(uuid, true);
                        "Attention Duration 5 s in the Invite of its next provisioning attempt".to_string()
                    };
                    engine.notify(now, &uuid, EventKind::Identify { how });
                }
                Action::AnswerOob { uuid, .. } => engine.notify(
                    now,
                    &uuid,
                    EventKind::Identify {
                        how: "Output OOB answers reach a running wave only through the terminal UI (issue 9)".into(),
                    },
                ),
            }
        }

        let idle = provision.is_empty() && jobs.is_empty();
        if !provision.is_empty() {
            wave += 1;
            let targets: Vec<LiveTarget> = provision
                .iter()
                .map(|u| {
                    let d = &plan.devices[by_uuid[u]];
                    let mut config = session_config(plan, &d.auth, bearer, 23);
                    if attention.get(u).copied().unwrap_or(false) {
                        config.attention_duration = 5;
                    }
                    LiveTarget {
                        uuid: *u,
                        name: d.name.clone(),
                        config,
                    }
                })
                .collect();
            let lo = LiveOptions {
                params: ProvisioningParams {
                    net_key: prepared.net_key.clone(),
                    net_key_index: prepared.net_key_index,
                    flags: 0,
                    iv_index: prepared.iv_index,
                },
                pb_adv: opts.pb_adv.clone(),
                bearer,
                max_concurrent: targets.len(),
                deadline: plan.policy.provision_timeout,
                discovery_timeout: opts.discovery_timeout,
                cert_verifier: prepared.verifier.clone(),
                seed: opts.seed.map(|s| s.wrapping_add(wave * 10_007)),
            };
            let mut notes: Vec<(DeviceUuid, EventKind)> = Vec::new();
            let report =
                live::provision(radio, &targets, &lo, &mut sink, None, &mut |ev| match ev {
                    LiveEvent::OutputOobRequested {
                        uuid, action, size, ..
                    } => notes.push((
                        *uuid,
                        EventKind::OobRequested {
                            action: action.name().unwrap_or("RFU").to_string(),
                            size: *size,
                        },
                    )),
                    LiveEvent::InputOobDisplay {
                        uuid,
                        value,
                        action,
                    } => notes.push((
                        *uuid,
                        EventKind::OobDisplay {
                            value: match value {
                                crate::provisioning::OobValue::Numeric(v) => v.to_string(),
                                crate::provisioning::OobValue::Alphanumeric(s) => s.clone(),
                            },
                            action: action.name().unwrap_or("RFU").to_string(),
                        },
                    )),
                    LiveEvent::Started { .. } | LiveEvent::Finished { .. } => {}
                })
                .await
                .map_err(|e| RolloutError::Radio(e.to_string()))?;
            let now = clock();
            for (u, k) in notes {
                engine.notify(now, &u, k);
            }
            for r in &report.results {
                for k in transcript_events(&r.transcript, 0) {
                    match k {
                        EventKind::LinkOpened => engine.link_opened(now, &r.uuid),
                        EventKind::Authenticated { method } => {
                            engine.authenticated(now, &r.uuid, &method)
                        }
                        k @ EventKind::Capabilities { .. } => engine.capabilities(now, &r.uuid, k),
                        _ => {}
                    }
                }
                engine.set_transcript(&r.uuid, transcript_names(&r.transcript));
                match &r.outcome {
                    Ok(o) => engine.provisioned(now, &r.uuid, o.address, o.elements),
                    Err(e) => match sink.committed.get(&r.uuid) {
                        Some((a, n)) => engine.provisioned(now, &r.uuid, *a, *n),
                        None => engine.phase_failed(
                            now,
                            &r.uuid,
                            Phase::Provisioning,
                            e.user_message(),
                            retryable(e),
                        ),
                    },
                }
            }
        }

        if !jobs.is_empty() {
            let mut requests: Vec<(u16, ConfigMessage)> = Vec::new();
            let mut spans = Vec::new();
            for (uuid, address, phase, reqs) in &jobs {
                spans.push((*uuid, *phase, requests.len(), reqs.len()));
                requests.extend(reqs.iter().map(|m| (*address, m.clone())));
            }
            let results = live::configure(
                radio,
                &mut conf,
                &requests,
                plan.policy.configure_timeout,
                &mut |_| {},
            )
            .await
            .map_err(|e| RolloutError::Radio(e.to_string()))?;
            let now = clock();
            for (uuid, phase, first, count) in spans {
                let verdict = judge(&results[first..first + count], phase);
                match (phase, verdict) {
                    (_, Err((reason, again))) => {
                        engine.phase_failed(now, &uuid, phase, reason, again)
                    }
                    (Phase::Configuring, Ok(_)) => engine.configured(now, &uuid),
                    (_, Ok(data)) => {
                        let d = &plan.devices[by_uuid[&uuid]];
                        let Some(t) = plan.templates.get(&d.template) else {
                            continue;
                        };
                        match template::verify(&data, d.elements, t) {
                            Ok(page) => {
                                engine.set_composition(&uuid, template::composition_line(&page));
                                match template::record(
                                    &mut store.borrow_mut(),
                                    &uuid,
                                    &page,
                                    t,
                                    &prepared.resolved,
                                ) {
                                    Ok(()) => engine.verified(now, &uuid),
                                    Err(e) => engine.phase_failed(
                                        now,
                                        &uuid,
                                        phase,
                                        format!("store: {e}"),
                                        false,
                                    ),
                                }
                            }
                            Err(reason) => engine.phase_failed(now, &uuid, phase, reason, false),
                        }
                    }
                }
            }
        }

        while let Some(ev) = engine.poll_event() {
            observer.event(&ev);
        }
        let now = clock();
        for c in observer.tick(&engine) {
            let _ = engine.command(now, c);
        }
        if engine.is_finished() && !observer.keep_running() {
            break;
        }
        // Nothing to start: wait for the next backoff to end (or a moment, for commands).
        let wake = engine
            .poll_timeout()
            .map_or(Duration::from_millis(100), |t| {
                t.saturating_duration_since(now)
            })
            .min(Duration::from_millis(100));
        if idle {
            tokio::time::sleep(wake).await;
        }
    }
    let now = clock();
    let summary = engine.summary(now, None, epoch.elapsed());
    while let Some(ev) = engine.poll_event() {
        observer.event(&ev);
    }
    Ok(RolloutReport {
        summary,
        devices: engine.snapshot(now),
    })
}
