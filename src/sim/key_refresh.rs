//! The Key Refresh procedure ([`KeyRefresh`]) against the simulated nodes of a [`SimMesh`], in
//! virtual time.
//!
//! [`run_key_refresh`] hands the procedure's requests to the mesh's Config client (on the
//! refreshed subnet, with the nodes' device keys), feeds back every status and time-out, sets
//! the provisioner's own keys up whenever the procedure says so
//! ([`KeyRefresh::configure_transport`]), broadcasts the Secure Network beacons it asks for
//! every [`KeyRefreshOptions::beacon_interval`], and saves the progress through a
//! [`ProgressSink`] after every change, before the next request goes out. The nodes are real
//! virtual devices: their Configuration Servers change phase and their network layers change
//! keys, so a node that missed phase 1 cannot read phase 2.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::net::NetError;
use crate::net::config::ConfigEvent;
use crate::net::key_refresh::{KeyRefresh, KeyRefreshEvent, KeyRefreshProgress, KeyRefreshSummary};
use crate::net::network::SeqSource;
use crate::radio::sim::AirStats;
use crate::sim::mesh::SimMesh;
use crate::time::Instant;

/// Where the progress goes after every change (the store's key refresh journal, or memory).
pub trait ProgressSink {
    /// Saves `progress` durably; an error stops the run (going on without a record of what
    /// the nodes acknowledged would lose track of them).
    fn save(&mut self, progress: &KeyRefreshProgress) -> Result<(), String>;
}

/// A [`ProgressSink`] in memory (tests).
#[derive(Debug, Default, Clone)]
pub struct MemoryProgress {
    /// The last progress saved.
    pub saved: Option<KeyRefreshProgress>,
    /// How many times it was saved.
    pub saves: usize,
}

impl ProgressSink for MemoryProgress {
    fn save(&mut self, progress: &KeyRefreshProgress) -> Result<(), String> {
        self.saved = Some(progress.clone());
        self.saves += 1;
        Ok(())
    }
}

/// Options of a simulated key refresh run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRefreshOptions {
    /// Give up after this much virtual time (the progress is saved; a later run resumes).
    pub deadline: Duration,
    /// Time between two Secure Network beacons of the provisioner in phases 2 and 3 (10 s, the
    /// usual beacon interval).
    pub beacon_interval: Duration,
}

impl Default for KeyRefreshOptions {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(3600),
            beacon_interval: Duration::from_secs(10),
        }
    }
}

/// How a simulated run went.
#[derive(Debug, Clone)]
pub struct KeyRefreshReport {
    /// How the procedure ended; `None` if the run stopped first (the deadline, or a
    /// [`KeyRefreshEvent::Blocked`] decision awaited).
    pub summary: Option<KeyRefreshSummary>,
    /// The progress at the end.
    pub progress: KeyRefreshProgress,
    /// Virtual time at the start.
    pub started: Instant,
    /// Virtual time at the end.
    pub ended: Instant,
    /// What the air did during the run.
    pub air: AirStats,
    /// Request transmissions per node during the run (retries included).
    pub sent_to: BTreeMap<u16, usize>,
    /// Every event of the procedure, in order.
    pub events: Vec<KeyRefreshEvent>,
}

impl KeyRefreshReport {
    /// Virtual time the run took.
    pub fn virtual_time(&self) -> Duration {
        self.ended.saturating_duration_since(self.started)
    }
}

/// Why a simulated run stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum KeyRefreshRunError {
    /// The progress could not be saved.
    #[error("the key refresh progress could not be saved: {0}")]
    Journal(String),
    /// The Config client refused a request.
    #[error("request to {node:#06x}: {error}")]
    Request {
        /// The node.
        node: u16,
        /// Why.
        error: NetError,
    },
}

/// Runs `kr` against the nodes of `mesh` until it finishes, waits for a decision
/// ([`KeyRefreshEvent::Blocked`]) or the deadline passes. `on_event` sees every event of the
/// procedure as it happens, with the mesh (to print progress, or in tests to take nodes off
/// the air at a given phase). Requests sent before the run (none, usually) are not affected;
/// the mesh's counters in the report cover this run only.
pub fn run_key_refresh<S: SeqSource>(
    mesh: &mut SimMesh<S>,
    kr: &mut KeyRefresh,
    opts: &KeyRefreshOptions,
    sink: &mut dyn ProgressSink,
    on_event: &mut dyn FnMut(&KeyRefreshEvent, &mut SimMesh<S>),
) -> Result<KeyRefreshReport, KeyRefreshRunError> {
    run_key_refresh_paced(mesh, kr, opts, sink, on_event, &mut |_, deadline| {
        Some(deadline)
    })
}

/// [`run_key_refresh`] with a say in how virtual time moves: before each stretch of simulated
/// air, `pace(simulated, deadline)` — the air has been simulated up to `simulated` — returns
/// how far the air may run this time (an instant before `deadline` makes a step of it: the
/// terminal UI sleeps until the wall clock is past `simulated` so that virtual time follows
/// it, and reads keys), or `None` to stop the run here. A stop leaves the procedure at
/// a consistent point: every acknowledgement so far is saved, and a later run resumes from
/// the progress (requests still in flight are asked again then, and are idempotent).
pub fn run_key_refresh_paced<S: SeqSource>(
    mesh: &mut SimMesh<S>,
    kr: &mut KeyRefresh,
    opts: &KeyRefreshOptions,
    sink: &mut dyn ProgressSink,
    on_event: &mut dyn FnMut(&KeyRefreshEvent, &mut SimMesh<S>),
    pace: &mut dyn FnMut(Instant, Instant) -> Option<Instant>,
) -> Result<KeyRefreshReport, KeyRefreshRunError> {
    let started = mesh.now();
    let deadline = started + opts.deadline;
    let air_before = mesh.air_stats();
    let sent_before = mesh.sent_to().clone();
    let subnet = kr.net_key_index();
    let mut summary = None;
    let mut events = Vec::new();
    let mut saved: Option<KeyRefreshProgress> = None;
    kr.configure_transport(mesh.transport_mut());
    // How far the air has been simulated: a step that ended with nothing on the air up to its
    // end has been simulated to its end (the mesh's clock stays at the last thing that
    // happened).
    let mut simulated = mesh.now();
    loop {
        while let Some(ev) = kr.poll_event() {
            match &ev {
                KeyRefreshEvent::ProvisionerKeys(_) => kr.configure_transport(mesh.transport_mut()),
                KeyRefreshEvent::Beacons(_) => {
                    let iv = mesh.transport().network().iv_index().index;
                    let beacon = kr
                        .secure_network_beacon(iv)
                        .map(|b| (b.to_vec(), opts.beacon_interval));
                    mesh.set_beacon(beacon);
                }
                KeyRefreshEvent::Finished(s) => summary = Some(s.clone()),
                _ => {}
            }
            on_event(&ev, mesh);
            events.push(ev);
        }
        // Saved before the next request goes out: what a node acknowledged is on record
        // before anything else is asked of the network.
        if saved.as_ref() != Some(kr.progress()) {
            sink.save(kr.progress())
                .map_err(KeyRefreshRunError::Journal)?;
            saved = Some(kr.progress().clone());
        }
        while let Some(r) = kr.poll_request() {
            mesh.request(r.dst, subnet, r.message)
                .map_err(|error| KeyRefreshRunError::Request { node: r.dst, error })?;
        }
        if kr.is_finished() || kr.in_flight() == 0 {
            break;
        }
        let Some(until) = pace(simulated.max(mesh.now()), deadline) else {
            break;
        };
        let until = until.min(deadline).max(mesh.now());
        let answers = mesh.run_until_events(until);
        if answers.is_empty() {
            // Idle, the deadline, or a proxy connection that failed: the end. Otherwise the
            // step ended before the next thing on the air: the next step.
            if until >= deadline || mesh.pending() == 0 || mesh.proxy_failure().is_some() {
                break;
            }
            simulated = until;
            continue;
        }
        simulated = mesh.now();
        for a in answers {
            match a {
                ConfigEvent::Response { src, message, .. } => {
                    kr.handle_response(src, &message);
                }
                ConfigEvent::TimedOut { dst, .. } => kr.handle_no_response(dst),
            }
        }
    }
    mesh.set_beacon(None);
    let air = mesh.air_stats();
    let mut sent_to = mesh.sent_to().clone();
    for (node, n) in &mut sent_to {
        *n -= sent_before.get(node).copied().unwrap_or(0);
    }
    sent_to.retain(|_, n| *n > 0);
    Ok(KeyRefreshReport {
        summary,
        progress: kr.progress().clone(),
        started,
        ended: mesh.now(),
        air: AirStats {
            adv_sent: air.adv_sent - air_before.adv_sent,
            adv_delivered: air.adv_delivered - air_before.adv_delivered,
            adv_lost: air.adv_lost - air_before.adv_lost,
            adv_events: air.adv_events - air_before.adv_events,
            adv_collided: air.adv_collided - air_before.adv_collided,
            adv_deaf: air.adv_deaf - air_before.adv_deaf,
            gatt_sent: air.gatt_sent - air_before.gatt_sent,
            adv_blackout: air.adv_blackout - air_before.adv_blackout,
            gatt_lost: air.gatt_lost - air_before.gatt_lost,
        },
        sent_to,
        events,
    })
}
