//! `meshprov net key-refresh --store FILE --radio sim:BUILDING.toml`: the network-wide key
//! refresh of one NetKey and the AppKeys bound to it, with the store as the source of the nodes
//! and keys and as the journal that makes it resumable.
//!
//! The first run generates the new NetKey and AppKeys from the operating system's RNG and
//! stores them with the first journal entry ([`Store::begin_key_refresh`]) before any node is
//! told; every acknowledgement is journaled before the next request goes out
//! ([`StoreJournal`]); a later run of the same command resumes from the journal with the same
//! new keys. When every node in the procedure finished, the old keys are dropped.
//!
//! # On the simulated radio
//!
//! The simulated building does not persist between commands: each run puts every node of the
//! store that holds the NetKey and whose UUID is in the building file on a fresh simulated air,
//! as the store and the journal say it is — provisioned with its address and device key, the
//! old NetKey, the AppKeys the store says it holds (old values), and the key refresh state it
//! acknowledged in earlier runs (new keys, phase). That is how this command "provisions in
//! process" the nodes that earlier `meshprov provision --radio sim:` runs left in the store. A
//! node of the store that is not in the building file is not on the air and ends unreachable;
//! `--silent` takes nodes off the air to try what happens to unreachable nodes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mesh_crypto::{AppKey, NetKey};
use rand_core::CryptoRng;
use serde_json::{Value, json};

use crate::exit;
use crate::net::config::ConfigMessage;
use crate::net::key_refresh::{
    AppKeyChange, KeyRefresh, KeyRefreshConfig, KeyRefreshEvent, KeyRefreshKeys, KeyRefreshNode,
    KeyRefreshProgress, KeyRefreshSummary, NodeProgress, Phase,
};
use crate::sim::building::Building;
use crate::sim::configure::{ConfigOptions, StoreSeq};
use crate::sim::key_refresh::{KeyRefreshOptions, ProgressSink, run_key_refresh_paced};
use crate::sim::mesh::SimMesh;
use crate::sim::node::DeviceState;
use crate::store::{NodeKeysUpdated, NodeState, Store};

/// The store as the journal of a key refresh: each save writes the progress, the NetKey's
/// phase and the nodes' `updated` flags, and once every node finished, drops the old keys
/// ([`Store::finish_key_refresh`]).
#[derive(Debug)]
pub struct StoreJournal<'a> {
    /// The store.
    pub store: &'a mut Store,
    /// The NetKey being refreshed.
    pub net_key_index: u16,
}

impl ProgressSink for StoreJournal<'_> {
    fn save(&mut self, progress: &KeyRefreshProgress) -> Result<(), String> {
        if progress.is_complete() {
            return self
                .store
                .finish_key_refresh(self.net_key_index)
                .map_err(|e| e.to_string());
        }
        let nodes: Vec<NodeKeysUpdated> = progress
            .nodes
            .iter()
            .map(|(address, n)| NodeKeysUpdated {
                address: *address,
                net_key: n.net_key_updated || n.completed >= 1,
                app_keys: n.app_keys_updated.clone(),
            })
            .collect();
        self.store
            .save_key_refresh(
                self.net_key_index,
                progress.phase.number().min(2),
                &progress.to_json(),
                &nodes,
            )
            .map_err(|e| e.to_string())
    }
}

/// A key refresh read from the store, ready to run.
#[derive(Debug, Clone)]
pub struct KeyRefreshSetup {
    /// The old and new keys.
    pub keys: KeyRefreshKeys,
    /// Every node of the store that holds the NetKey (excluded ones marked).
    pub nodes: Vec<KeyRefreshNode>,
    /// The journal's progress.
    pub progress: KeyRefreshProgress,
    /// Whether the journal existed (a resumed run) or was begun now.
    pub resumed: bool,
}

/// Reads the key refresh of NetKey `net_key_index` from the store, or begins one: new keys
/// from `rng` for the NetKey and every AppKey bound to it, stored with the first journal entry
/// in one transaction. A node of the store that holds the NetKey but is not in the journal was
/// provisioned while the key refresh was under way, with the new key (the store's key then):
/// it counts as done.
pub fn prepare(
    store: &mut Store,
    net_key_index: u16,
    rng: &mut dyn CryptoRng,
) -> Result<KeyRefreshSetup, String> {
    let info = store.network().map_err(|e| e.to_string())?;
    let bound: Vec<u16> = info
        .app_keys
        .iter()
        .filter(|a| a.bound_net_key == net_key_index)
        .map(|a| a.index)
        .collect();
    let nodes: Vec<KeyRefreshNode> = store
        .nodes()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|n| n.net_keys.contains(&net_key_index))
        .map(|n| KeyRefreshNode {
            address: n.address,
            device_key: n.device_key,
            excluded: n.state == NodeState::Excluded,
            app_keys: n
                .app_keys
                .iter()
                .copied()
                .filter(|a| bound.contains(a))
                .collect(),
        })
        .collect();
    let (record, progress, resumed) = match store
        .key_refresh(net_key_index)
        .map_err(|e| e.to_string())?
    {
        Some(r) => {
            let mut p = KeyRefreshProgress::from_json(&r.journal).map_err(|e| e.to_string())?;
            // A node the journal does not know was provisioned after the key refresh began,
            // with the store's key then: the new one. It holds nothing else.
            for n in nodes.iter().filter(|n| !n.excluded) {
                if !p.nodes.contains_key(&n.address) && !p.excluded.contains(&n.address) {
                    p.nodes.insert(
                        n.address,
                        NodeProgress {
                            completed: 3,
                            ..NodeProgress::default()
                        },
                    );
                }
            }
            (r, p, true)
        }
        None => {
            let new_net_key = NetKey::generate(rng);
            let new_app_keys: Vec<(u16, AppKey)> =
                bound.iter().map(|i| (*i, AppKey::generate(rng))).collect();
            let addresses: Vec<u16> = nodes
                .iter()
                .filter(|n| !n.excluded)
                .map(|n| n.address)
                .collect();
            let mut p = KeyRefreshProgress::new(net_key_index, bound.clone(), &addresses);
            p.excluded = nodes
                .iter()
                .filter(|n| n.excluded)
                .map(|n| n.address)
                .collect();
            let r = store
                .begin_key_refresh(net_key_index, &new_net_key, &new_app_keys, &p.to_json())
                .map_err(|e| e.to_string())?;
            (r, p, false)
        }
    };
    let keys = KeyRefreshKeys {
        net_key_index,
        old_net_key: record.old_net_key,
        new_net_key: record.new_net_key,
        app_keys: record
            .app_keys
            .into_iter()
            .map(|(index, old, new)| AppKeyChange { index, old, new })
            .collect(),
    };
    Ok(KeyRefreshSetup {
        keys,
        nodes,
        progress,
        resumed,
    })
}

/// Everything `meshprov net key-refresh` was asked to do.
#[derive(Debug, Clone)]
pub struct KeyRefreshArgs {
    /// The store file.
    pub store: PathBuf,
    /// `sim:FILE.toml`.
    pub radio: String,
    /// The NetKey to refresh.
    pub net_key_index: u16,
    /// Nodes to exclude (by address) before the run: marked excluded in the store.
    pub exclude: Vec<u16>,
    /// Seed of the simulation.
    pub seed: u64,
    /// Advertising loss override.
    pub loss: Option<f64>,
    /// Simulated radio only: nodes taken off the air for this run.
    pub silent: Vec<u16>,
}

/// Why the command failed: exit code and one line for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRefreshFailure {
    /// Process exit code.
    pub exit_code: i32,
    /// What went wrong and what to do.
    pub message: String,
}

fn usage(message: String) -> KeyRefreshFailure {
    KeyRefreshFailure {
        exit_code: exit::USAGE,
        message,
    }
}

fn failure(message: String) -> KeyRefreshFailure {
    KeyRefreshFailure {
        exit_code: exit::FAILURE,
        message,
    }
}

/// What one line of output says.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// A node was excluded before the run.
    Excluded {
        /// Its address.
        address: u16,
    },
    /// The run begins.
    Start {
        /// The NetKey.
        net_key_index: u16,
        /// The AppKeys refreshed with it.
        app_keys: Vec<u16>,
        /// Nodes in the procedure.
        nodes: usize,
        /// Nodes excluded.
        excluded: usize,
        /// A journal was resumed.
        resumed: bool,
        /// Every node that holds the NetKey, in address order, where the journal says it
        /// stands (the text and JSON output leave this out; the terminal UI lists them).
        roster: Vec<RosterNode>,
    },
    /// A node of the store that is not on the simulated air.
    NotOnAir {
        /// Its address.
        address: u16,
    },
    /// An event of the procedure.
    Event(KeyRefreshEvent),
}

/// One node of a key refresh as the run begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterNode {
    /// Its primary address.
    pub address: u16,
    /// The last phase it acknowledged (0–3; 3 also for a node provisioned with the new key).
    pub completed: u8,
    /// Kept out of the procedure.
    pub excluded: bool,
}

/// The end of a run.
#[derive(Debug, Clone)]
pub struct KeyRefreshOutcome {
    /// How the procedure ended (`None`: the run's deadline passed first, or it was stopped).
    pub summary: Option<KeyRefreshSummary>,
    /// The run was stopped (the terminal UI's quit) in this phase before it ended; the
    /// journal has every acknowledgement, and the same command resumes it.
    pub stopped_in: Option<Phase>,
    /// Virtual time of the run.
    pub virtual_time: Duration,
    /// A journal was resumed.
    pub resumed: bool,
}

impl KeyRefreshOutcome {
    /// The exit code: 0 when every node in the procedure finished, else 1.
    pub fn exit_code(&self) -> i32 {
        match &self.summary {
            Some(s) if s.is_complete() => exit::SUCCESS,
            _ => exit::FAILURE,
        }
    }

    /// For exit code 1: which nodes did not finish, and how to go on.
    pub fn problem(&self) -> Option<String> {
        if let (None, Some(p)) = (&self.summary, self.stopped_in) {
            return Some(format!(
                "the key refresh was stopped in {p}; re-run the same command to resume it"
            ));
        }
        let Some(s) = &self.summary else {
            return Some(
                "the key refresh did not finish in time; re-run the same command to resume it"
                    .into(),
            );
        };
        if s.is_complete() {
            return None;
        }
        let list: Vec<String> = s
            .left_behind
            .iter()
            .map(|(a, _, f)| match f {
                Some(f) => format!("{a:04X} ({})", f.reason),
                None => format!("{a:04X}"),
            })
            .collect();
        Some(format!(
            "{} node{} did not finish the key refresh: {}; re-run the same command to resume {}, or exclude {} (--exclude) and re-provision {}",
            list.len(),
            if list.len() == 1 { "" } else { "s" },
            list.join(", "),
            if list.len() == 1 { "it" } else { "them" },
            if list.len() == 1 { "it" } else { "them" },
            if list.len() == 1 { "it" } else { "them" },
        ))
    }
}

/// The requests that put a freshly materialised simulated node in the state the store and the
/// journal say it acknowledged: its AppKeys (old values), then the new keys and phases.
fn acknowledged_state(
    keys: &KeyRefreshKeys,
    app_keys: &[u16],
    progress: &KeyRefreshProgress,
    address: u16,
) -> Vec<ConfigMessage> {
    let idx = keys.net_key_index;
    let mut v: Vec<ConfigMessage> = keys
        .app_keys
        .iter()
        .filter(|a| app_keys.contains(&a.index))
        .map(|a| ConfigMessage::AppKeyAdd {
            net_key_index: idx,
            app_key_index: a.index,
            key: a.old.clone(),
        })
        .collect();
    let Some(p) = progress.nodes.get(&address) else {
        return v;
    };
    if p.net_key_updated || p.completed >= 1 {
        v.push(ConfigMessage::NetKeyUpdate {
            net_key_index: idx,
            key: keys.new_net_key.clone(),
        });
        for a in keys
            .app_keys
            .iter()
            .filter(|a| p.app_keys_updated.contains(&a.index))
        {
            v.push(ConfigMessage::AppKeyUpdate {
                net_key_index: idx,
                app_key_index: a.index,
                key: a.new.clone(),
            });
        }
    }
    for t in [2u8, 3] {
        if p.completed >= t {
            v.push(ConfigMessage::KeyRefreshPhaseSet {
                net_key_index: idx,
                transition: t,
            });
        }
    }
    v
}

/// Runs `meshprov net key-refresh` on the simulated radio; `report` gets each line's content
/// as it happens.
pub fn key_refresh(
    args: &KeyRefreshArgs,
    report: &mut dyn FnMut(&Report),
) -> Result<KeyRefreshOutcome, KeyRefreshFailure> {
    key_refresh_paced(args, report, &mut |_, deadline| Some(deadline))
}

/// [`key_refresh`] with a say in how the simulated clock moves and when to stop
/// ([`crate::sim::key_refresh::run_key_refresh_paced`]): the terminal UI paces virtual time
/// to the wall clock and stops the run when the installer quits.
pub fn key_refresh_paced(
    args: &KeyRefreshArgs,
    report: &mut dyn FnMut(&Report),
    pace: &mut dyn FnMut(
        crate::time::Instant,
        crate::time::Instant,
    ) -> Option<crate::time::Instant>,
) -> Result<KeyRefreshOutcome, KeyRefreshFailure> {
    let Some(file) = args.radio.strip_prefix("sim:") else {
        return Err(usage(format!(
            "radio '{}' is not available in this build; use --radio sim:FILE.toml (the simulated building)",
            args.radio
        )));
    };
    let building = Building::load(Path::new(file)).map_err(|e| usage(e.to_string()))?;
    if !args.store.exists() {
        return Err(usage(format!(
            "no store at {}: create the network first with `meshprov net create NAME --store {}`",
            args.store.display(),
            args.store.display()
        )));
    }
    let in_store = |e: crate::store::StoreError| failure(format!("{}: {e}", args.store.display()));
    let mut store = Store::open(&args.store).map_err(in_store)?;
    // An encrypted store: its passphrase first (the SEQ connection below reads no key).
    crate::tools::passphrase::unlock(&mut store, crate::tools::passphrase::Prompt::Terminal)
        .map_err(|f| KeyRefreshFailure {
            exit_code: f.exit_code,
            message: f.message,
        })?;
    let info = store.network().map_err(in_store)?;
    if !info.net_keys.iter().any(|k| k.index == args.net_key_index) {
        let have: Vec<String> = info.net_keys.iter().map(|k| k.index.to_string()).collect();
        return Err(usage(format!(
            "--net-key-index {}: the store has no such NetKey (it has {})",
            args.net_key_index,
            have.join(", ")
        )));
    }
    for a in args.exclude.iter().chain(&args.silent) {
        if store.node_by_address(*a).is_err() {
            return Err(usage(format!(
                "{a:04X} is not the address of a node of the store"
            )));
        }
    }
    for a in &args.exclude {
        let node = store.node_by_address(*a).map_err(in_store)?;
        if node.state != NodeState::Excluded {
            store.exclude_node(*a).map_err(in_store)?;
            report(&Report::Excluded {
                address: node.address,
            });
        }
    }

    let setup = prepare(
        &mut store,
        args.net_key_index,
        &mut crate::store::os_rng().map_err(in_store)?,
    )
    .map_err(failure)?;
    let mut kr = KeyRefresh::new(
        setup.keys.clone(),
        &setup.nodes,
        KeyRefreshConfig::default(),
        Some(setup.progress.clone()),
    )
    .map_err(|e| failure(e.to_string()))?;
    let progress = kr.progress();
    let mut roster: Vec<RosterNode> = progress
        .nodes
        .iter()
        .map(|(a, n)| RosterNode {
            address: *a,
            completed: n.completed,
            excluded: false,
        })
        .chain(progress.excluded.iter().map(|a| RosterNode {
            address: *a,
            completed: 0,
            excluded: true,
        }))
        .collect();
    roster.sort_by_key(|n| n.address);
    report(&Report::Start {
        net_key_index: args.net_key_index,
        app_keys: setup.keys.app_keys.iter().map(|a| a.index).collect(),
        nodes: progress.nodes.len(),
        excluded: progress.excluded.len(),
        resumed: setup.resumed,
        roster,
    });

    // The provisioner's own address, reserved in the store (the scan this replaced looked only
    // at primary addresses and could land inside a multi-element node's range).
    let me = store.provisioner_address().map_err(in_store)?;
    let opts = ConfigOptions {
        seed: args.seed,
        loss: args.loss,
        address: me,
        ..ConfigOptions::default()
    };
    // A second connection to the same store gives the SEQ numbers (committed before use),
    // while the first one keeps the journal.
    let mut seq_store = Store::open(&args.store).map_err(in_store)?;
    let mut mesh = SimMesh::new(&building, &opts, info.iv_index, StoreSeq(&mut seq_store));
    let stored = store.nodes().map_err(in_store)?;
    for (i, n) in stored.iter().enumerate() {
        let Some(kr_node) = setup.nodes.iter().find(|k| k.address == n.address) else {
            continue;
        };
        let Some(spec) = building.device(&n.uuid) else {
            if !kr_node.excluded {
                report(&Report::NotOnAir { address: n.address });
            }
            continue;
        };
        let state = DeviceState::Provisioned {
            address: n.address,
            device_key: n.device_key.clone(),
            net_key: setup.keys.old_net_key.clone(),
            net_key_index: args.net_key_index,
            iv_index: info.iv_index,
        };
        let device =
            mesh.add_provisioned(spec.clone(), state, args.seed.wrapping_add(3000 + i as u64));
        for m in acknowledged_state(&setup.keys, &kr_node.app_keys, &setup.progress, n.address) {
            device.configure_locally(&m);
        }
    }
    for a in &args.silent {
        mesh.set_silent(*a, true);
    }

    let mut journal = StoreJournal {
        store: &mut store,
        net_key_index: args.net_key_index,
    };
    let mut stopped = false;
    let r = run_key_refresh_paced(
        &mut mesh,
        &mut kr,
        &KeyRefreshOptions::default(),
        &mut journal,
        &mut |ev, _| report(&Report::Event(ev.clone())),
        &mut |now, deadline| {
            let step = pace(now, deadline);
            stopped |= step.is_none();
            step
        },
    )
    .map_err(|e| failure(e.to_string()))?;
    Ok(KeyRefreshOutcome {
        summary: r.summary.clone(),
        stopped_in: (stopped && r.summary.is_none()).then_some(r.progress.phase),
        virtual_time: r.virtual_time(),
        resumed: setup.resumed,
    })
}

fn addr(a: u16) -> String {
    format!("{a:04X}")
}

/// One line of text for a report, or `None` for what the text output leaves out (the
/// provisioner's own key changes and beacons).
pub fn report_text(r: &Report, names: &BTreeMap<u16, String>) -> Option<String> {
    let who = |a: u16| match names.get(&a).filter(|n| !n.is_empty()) {
        Some(n) => format!("{} ({n})", addr(a)),
        None => addr(a),
    };
    Some(match r {
        Report::Excluded { address } => format!("excluded {}", who(*address)),
        Report::Start {
            net_key_index,
            app_keys,
            nodes,
            excluded,
            resumed,
            ..
        } => format!(
            "{} key refresh of NetKey {net_key_index}{}: {nodes} node{}, {excluded} excluded",
            if *resumed {
                "Resuming the"
            } else {
                "Starting a"
            },
            if app_keys.is_empty() {
                " (no AppKeys bound)".to_string()
            } else {
                format!(
                    " and AppKey{} {}",
                    if app_keys.len() == 1 { "" } else { "s" },
                    app_keys
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            if *nodes == 1 { "" } else { "s" },
        ),
        Report::NotOnAir { address } => format!(
            "{}: not in the building file, it cannot answer",
            who(*address)
        ),
        Report::Event(ev) => match ev {
            KeyRefreshEvent::PhaseStarted(p) => format!("{p}"),
            KeyRefreshEvent::NodeUpdated { address, phase } => {
                format!("  {}: done with phase {}", who(*address), phase.number())
            }
            KeyRefreshEvent::NodeFailed {
                address,
                phase,
                reason,
            } => format!(
                "  {}: FAILED in phase {}: {reason}",
                who(*address),
                phase.number()
            ),
            KeyRefreshEvent::PhaseComplete(p) => format!("  phase {} complete", p.number()),
            KeyRefreshEvent::Blocked { phase, left_behind } => format!(
                "  phase {} left {} node(s) behind",
                phase.number(),
                left_behind.len()
            ),
            KeyRefreshEvent::Finished(s) => format!(
                "Finished: {} node{} use the new keys, {} left behind, {} excluded",
                s.updated.len(),
                if s.updated.len() == 1 { "" } else { "s" },
                s.left_behind.len(),
                s.excluded.len()
            ),
            KeyRefreshEvent::ProvisionerKeys(_) | KeyRefreshEvent::Beacons(_) => return None,
        },
    })
}

/// One JSON object (one line of `--json`) for a report.
pub fn report_json(r: &Report) -> Value {
    match r {
        Report::Excluded { address } => json!({"event": "excluded", "address": addr(*address)}),
        Report::Start {
            net_key_index,
            app_keys,
            nodes,
            excluded,
            resumed,
            ..
        } => json!({
            "event": "start",
            "net_key_index": net_key_index,
            "app_key_indexes": app_keys,
            "nodes": nodes,
            "excluded": excluded,
            "resumed": resumed,
        }),
        Report::NotOnAir { address } => {
            json!({"event": "not_on_air", "address": addr(*address)})
        }
        Report::Event(ev) => match ev {
            KeyRefreshEvent::PhaseStarted(p) => {
                json!({"event": "phase_started", "phase": p.number()})
            }
            KeyRefreshEvent::ProvisionerKeys(k) => json!({
                "event": "provisioner_keys", "transmit_new": k.tx_new, "receive_old": k.rx_old,
            }),
            KeyRefreshEvent::Beacons(b) => {
                json!({"event": "beacons", "key_refresh_flag": b})
            }
            KeyRefreshEvent::NodeUpdated { address, phase } => json!({
                "event": "node_updated", "address": addr(*address), "phase": phase.number(),
            }),
            KeyRefreshEvent::NodeFailed {
                address,
                phase,
                reason,
            } => json!({
                "event": "node_failed",
                "address": addr(*address),
                "phase": phase.number(),
                "unreachable": reason.is_unreachable(),
                "reason": reason.to_string(),
            }),
            KeyRefreshEvent::PhaseComplete(p) => {
                json!({"event": "phase_complete", "phase": p.number()})
            }
            KeyRefreshEvent::Blocked { phase, left_behind } => json!({
                "event": "blocked",
                "phase": phase.number(),
                "left_behind": left_behind.iter().map(|a| addr(*a)).collect::<Vec<_>>(),
            }),
            KeyRefreshEvent::Finished(s) => summary_json(s),
        },
    }
}

fn summary_json(s: &KeyRefreshSummary) -> Value {
    json!({
        "event": "finished",
        "complete": s.is_complete(),
        "updated": s.updated.iter().map(|a| addr(*a)).collect::<Vec<_>>(),
        "left_behind": s.left_behind.iter().map(|(a, done, f)| json!({
            "address": addr(*a),
            "completed_phase": done,
            "failed_phase": f.as_ref().map(|f| f.phase.number()),
            "reason": f.as_ref().map(|f| f.reason.to_string()),
        })).collect::<Vec<_>>(),
        "excluded": s.excluded.iter().map(|a| addr(*a)).collect::<Vec<_>>(),
        "stopped_in_phase": s.stopped.map(|p| p.number()),
    })
}

/// The last JSON line: the result, with the virtual time.
pub fn outcome_json(o: &KeyRefreshOutcome) -> Value {
    json!({
        "event": "result",
        "result": if o.exit_code() == exit::SUCCESS { "complete" } else { "incomplete" },
        "resumed": o.resumed,
        "virtual_time_ms": o.virtual_time.as_millis() as u64,
        "problem": o.problem(),
    })
}
