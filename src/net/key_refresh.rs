//! The network-wide Key Refresh procedure (MshPRT v1.1 §3.6.4) for one NetKey and the AppKeys
//! bound to it, run by the Configuration Client; sans-IO.
//!
//! [`KeyRefresh`] decides which Configuration request goes to which node and when; a driver
//! sends them with a [`ConfigClient`](super::config::ConfigClient) (which retries each request
//! on its own timer) and reports back each status ([`KeyRefresh::handle_response`]) or the
//! client's time-out ([`KeyRefresh::handle_no_response`]). The procedure has no timers of its
//! own and never reads a clock.
//!
//! # Phases
//!
//! 1. **Key distribution**: Config NetKey Update (§4.3.2, NetKey Update) and then Config AppKey
//!    Update for each bound AppKey the node holds, to every node that is not excluded. The
//!    provisioner receives with the old and the new keys and still transmits with the old ones
//!    (a node in phase 0 knows only those).
//! 2. **Using the new keys**: Config Key Refresh Phase Set, transition 2, to every node; the
//!    provisioner transmits with the new keys from the start of this phase, and sends Secure
//!    Network beacons with the Key Refresh flag set, secured with the new NetKey
//!    ([`KeyRefresh::secure_network_beacon`]): a node in phase 1 that hears one moves to phase 2
//!    on its own (§3.6.4.1).
//! 3. **Revoking the old keys**: Key Refresh Phase Set, transition 3, to every node; beacons
//!    with the flag cleared (a node in phase 1 or 2 that hears one revokes its old keys). The
//!    provisioner revokes its own old keys when this phase starts.
//!
//! A phase starts only when every node that is still in the procedure has acknowledged the
//! previous one ([`Phase`]): no node is asked to transmit with keys another node lacks.
//!
//! # Unreachable nodes
//!
//! A node whose request the client gave up on is retried in the next round; a round starts
//! when every other node of the phase has answered or timed out, and there are
//! [`KeyRefreshConfig::retry_rounds`] extra rounds. A node still silent after the last round is
//! reported ([`KeyRefreshEvent::NodeFailed`] with [`FailureReason::Unreachable`]) and left
//! behind; so is a node that answers with a status other than Success (its name is kept:
//! "Invalid NetKey Index", "Cannot Update", ...). What happens next is the caller's choice
//! ([`UnreachablePolicy`]); the default, as befits a security procedure, is to go on without
//! them, report them, and finish: the rest of the network must not keep a leaked key because
//! one device is switched off. A node left behind must be resumed (a later run picks it up where
//! it stopped) or excluded and re-provisioned.
//!
//! # Stop and resume
//!
//! [`KeyRefreshProgress`] (serde) records the phase and, per node, the last phase it
//! acknowledged and, inside phase 1, which keys it acknowledged. The driver saves it after each
//! change; a procedure built from saved progress ([`KeyRefresh::new`]) starts at the lowest
//! phase some node still needs and sends nothing to nodes that already did what a phase asks.
//! Requests are idempotent on the node's side as well (a node that already holds the new key
//! answers NetKey Update with Success; Key Refresh Phase Set 2 in phase 2 and 3 in phase 0 are
//! Success), so a node whose answer was lost before the progress was saved is simply asked
//! again. A node that answers Key Refresh Phase Set 2 with phase 0 read a request secured with
//! the new NetKey and has revoked the old one: it already finished (a Secure Network beacon of
//! another node moved it on) and is counted as done. The new keys themselves are not part of
//! the progress: the store keeps them with the other keys.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use mesh_crypto::beacon::{BeaconState, SECURE_NETWORK_BEACON_LEN, secure_network_encode};
use mesh_crypto::{AppKey, DevKey, NetKey, toolbox};
use serde::{Deserialize, Serialize};

use super::address;
use super::config::{ConfigMessage, ConfigStatus};
use super::network::SeqSource;
use super::transport::Transport;

/// A phase of the Key Refresh procedure as the provisioner runs it (§3.6.4). Phase 3 is the
/// transition back to normal operation (Key Refresh Phase 0 on the nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum Phase {
    /// Phase 1: the new NetKey and AppKeys are distributed (NetKey Update, AppKey Update).
    KeyDistribution = 1,
    /// Phase 2: every node transmits with the new keys (Key Refresh Phase Set, transition 2).
    UsingNewKeys = 2,
    /// Phase 3: every node revokes the old keys (transition 3) and is back in phase 0.
    Revoking = 3,
}

impl Phase {
    /// 1, 2 or 3.
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// The phase with this number.
    pub const fn from_number(n: u8) -> Option<Self> {
        match n {
            1 => Some(Self::KeyDistribution),
            2 => Some(Self::UsingNewKeys),
            3 => Some(Self::Revoking),
            _ => None,
        }
    }

    /// The phase after this one.
    pub const fn next(self) -> Option<Self> {
        Self::from_number(self.number() + 1)
    }

    /// What the phase does, in a few words.
    pub const fn name(self) -> &'static str {
        match self {
            Self::KeyDistribution => "key distribution",
            Self::UsingNewKeys => "using the new keys",
            Self::Revoking => "revoking the old keys",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "phase {} ({})", self.number(), self.name())
    }
}

impl From<Phase> for u8 {
    fn from(p: Phase) -> u8 {
        p.number()
    }
}

impl TryFrom<u8> for Phase {
    type Error = String;
    fn try_from(n: u8) -> Result<Self, String> {
        Self::from_number(n).ok_or_else(|| format!("key refresh phase {n} is not 1, 2 or 3"))
    }
}

/// Why a node was left behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailureReason {
    /// No answer after every attempt of every round.
    Unreachable {
        /// Rounds of requests that went unanswered.
        rounds: u32,
    },
    /// The node answered with a status other than Success.
    Status {
        /// The request, e.g. "NetKey Update".
        request: String,
        /// The status code (see [`FailureReason::status`]).
        status: u8,
    },
    /// The node answered Key Refresh Phase Set with a phase the transition does not lead to.
    WrongPhase {
        /// The request.
        request: String,
        /// The Key Refresh Phase the node reported.
        phase: u8,
    },
}

impl FailureReason {
    /// The status code, for [`FailureReason::Status`].
    pub fn status(&self) -> Option<ConfigStatus> {
        match self {
            Self::Status { status, .. } => Some(ConfigStatus(*status)),
            _ => None,
        }
    }

    /// Whether the node did not answer at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable { rounds } => write!(
                f,
                "no answer after {rounds} round{} of requests",
                if *rounds == 1 { "" } else { "s" }
            ),
            Self::Status { request, status } => match ConfigStatus(*status).name() {
                Some(name) => write!(f, "{request}: {name}"),
                None => write!(f, "{request}: status {status:#04x}"),
            },
            Self::WrongPhase { request, phase } => {
                write!(f, "{request}: the node reports Key Refresh Phase {phase}")
            }
        }
    }
}

/// A node left behind in a phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFailure {
    /// The phase it failed in.
    pub phase: Phase,
    /// Why.
    pub reason: FailureReason,
}

/// Where one node stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeProgress {
    /// The last phase it acknowledged: 0 none, 1 it holds the new keys, 2 it transmits with
    /// them, 3 it revoked the old ones (back in Key Refresh Phase 0).
    pub completed: u8,
    /// Inside phase 1: the NetKey Update was acknowledged.
    #[serde(default)]
    pub net_key_updated: bool,
    /// Inside phase 1: the AppKeys whose AppKey Update was acknowledged.
    #[serde(default)]
    pub app_keys_updated: Vec<u16>,
    /// Why it was left behind in the last run, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<NodeFailure>,
}

/// The state of a key refresh that can be saved and resumed (the keys are not in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRefreshProgress {
    /// Format version of this record (1).
    pub version: u32,
    /// The NetKey being refreshed.
    pub net_key_index: u16,
    /// The AppKeys bound to it that are refreshed with it.
    pub app_key_indexes: Vec<u16>,
    /// The phase the procedure is in (or ended in).
    pub phase: Phase,
    /// The last run reached its end (every node done, or some left behind).
    pub finished: bool,
    /// The nodes in the procedure, by primary address.
    pub nodes: BTreeMap<u16, NodeProgress>,
    /// Nodes kept out of the procedure (they never receive the new keys).
    pub excluded: BTreeSet<u16>,
}

/// The format version [`KeyRefreshProgress`] is written with.
pub const PROGRESS_VERSION: u32 = 1;

impl KeyRefreshProgress {
    /// A procedure that has not started: phase 1, every node at 0.
    pub fn new(net_key_index: u16, app_key_indexes: Vec<u16>, nodes: &[u16]) -> Self {
        Self {
            version: PROGRESS_VERSION,
            net_key_index,
            app_key_indexes,
            phase: Phase::KeyDistribution,
            finished: false,
            nodes: nodes
                .iter()
                .map(|a| (*a, NodeProgress::default()))
                .collect(),
            excluded: BTreeSet::new(),
        }
    }

    /// Every node in the procedure revoked the old keys.
    pub fn is_complete(&self) -> bool {
        self.nodes.values().all(|n| n.completed >= 3)
    }

    /// The nodes that have not finished, by address.
    pub fn unfinished(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.completed < 3)
            .map(|(a, _)| *a)
            .collect()
    }

    /// As JSON (the store keeps it so).
    pub fn to_json(&self) -> String {
        // Serialising plain data with string-able map keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// From JSON written by [`to_json`](Self::to_json).
    pub fn from_json(s: &str) -> Result<Self, KeyRefreshError> {
        let p: Self =
            serde_json::from_str(s).map_err(|e| KeyRefreshError::BadProgress(e.to_string()))?;
        if p.version != PROGRESS_VERSION {
            return Err(KeyRefreshError::BadProgress(format!(
                "format version {} (this meshprov reads {PROGRESS_VERSION})",
                p.version
            )));
        }
        Ok(p)
    }
}

/// One node of the network, as the procedure needs it.
#[derive(Debug, Clone)]
pub struct KeyRefreshNode {
    /// Primary element address.
    pub address: u16,
    /// Its device key (Configuration messages are secured with it).
    pub device_key: DevKey,
    /// Excluded from the network: it never receives the new keys and gets no message.
    pub excluded: bool,
    /// The AppKeys bound to the refreshed NetKey that the node holds (each gets an AppKey
    /// Update); others are not sent to it.
    pub app_keys: Vec<u16>,
}

/// An AppKey bound to the refreshed NetKey, with its replacement.
#[derive(Debug, Clone)]
pub struct AppKeyChange {
    /// AppKey index.
    pub index: u16,
    /// The key in use until now.
    pub old: AppKey,
    /// Its replacement.
    pub new: AppKey,
}

/// The keys of one key refresh.
#[derive(Debug, Clone)]
pub struct KeyRefreshKeys {
    /// The NetKey index.
    pub net_key_index: u16,
    /// The NetKey in use until now.
    pub old_net_key: NetKey,
    /// Its replacement.
    pub new_net_key: NetKey,
    /// The AppKeys bound to it, with their replacements.
    pub app_keys: Vec<AppKeyChange>,
}

/// What to do when a phase ends with nodes left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnreachablePolicy {
    /// Go on without them and report them (the default: the rest of the network must not keep
    /// a compromised key).
    #[default]
    Continue,
    /// Stop; the saved progress resumes in the same phase.
    Stop,
    /// Emit [`KeyRefreshEvent::Blocked`] and wait for [`KeyRefresh::continue_without`] or
    /// [`KeyRefresh::stop`].
    Ask,
}

/// Settings of the procedure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRefreshConfig {
    /// Extra rounds for nodes whose request timed out (default 2: three rounds in all; each
    /// round is every attempt of the Config client).
    pub retry_rounds: u32,
    /// What to do when a phase ends with nodes left behind.
    pub unreachable: UnreachablePolicy,
    /// Nodes with a request in flight at once (default 4): on one advertising radio more
    /// segmented requests only queue, run into the SAR and client time-outs and slow every
    /// node down (see `sim::configure::ConfigOptions::max_nodes_in_flight`).
    pub max_in_flight: usize,
}

impl Default for KeyRefreshConfig {
    fn default() -> Self {
        Self {
            retry_rounds: 2,
            unreachable: UnreachablePolicy::Continue,
            max_in_flight: 4,
        }
    }
}

/// A Configuration request to send (with the node's device key, on the refreshed subnet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRefreshRequest {
    /// The node's primary address.
    pub dst: u16,
    /// The request.
    pub message: ConfigMessage,
}

/// Which keys of the refreshed subnet the provisioner itself uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvisionerKeys {
    /// Transmit with the new keys (from phase 2).
    pub tx_new: bool,
    /// Still receive with the old keys too (phases 1 and 2).
    pub rx_old: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRefreshSummary {
    /// Nodes that use only the new keys now.
    pub updated: Vec<u16>,
    /// Nodes that did not finish: address, the last phase they acknowledged (0–2) and why.
    pub left_behind: Vec<(u16, u8, Option<NodeFailure>)>,
    /// Nodes kept out.
    pub excluded: Vec<u16>,
    /// The phase the run stopped in, when [`UnreachablePolicy`] stopped it.
    pub stopped: Option<Phase>,
}

impl KeyRefreshSummary {
    /// Every node in the procedure finished.
    pub fn is_complete(&self) -> bool {
        self.left_behind.is_empty() && self.stopped.is_none()
    }
}

/// What the procedure reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRefreshEvent {
    /// A phase started.
    PhaseStarted(Phase),
    /// The provisioner's own keys change: apply them with [`KeyRefresh::configure_transport`]
    /// before sending the next request.
    ProvisionerKeys(ProvisionerKeys),
    /// From now on send Secure Network beacons secured with the new NetKey, with the Key
    /// Refresh flag set (`Some(true)`, phase 2) or cleared (`Some(false)`, phase 3); `None`:
    /// stop sending them. [`KeyRefresh::secure_network_beacon`] builds them.
    Beacons(Option<bool>),
    /// A node acknowledged a phase.
    NodeUpdated {
        /// Its primary address.
        address: u16,
        /// The phase it completed.
        phase: Phase,
    },
    /// A node was left behind.
    NodeFailed {
        /// Its primary address.
        address: u16,
        /// The phase it failed in.
        phase: Phase,
        /// Why.
        reason: FailureReason,
    },
    /// Every node still in the procedure is done with this phase.
    PhaseComplete(Phase),
    /// [`UnreachablePolicy::Ask`]: nodes were left behind in this phase; call
    /// [`KeyRefresh::continue_without`] or [`KeyRefresh::stop`].
    Blocked {
        /// The phase that just ended.
        phase: Phase,
        /// The nodes left behind in it.
        left_behind: Vec<u16>,
    },
    /// The run ended.
    Finished(KeyRefreshSummary),
}

/// Why a key refresh cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRefreshError {
    /// The new NetKey is the old one.
    #[error("the new NetKey equals the old one")]
    SameNetKey,
    /// A node address is not unicast.
    #[error("{0:#06x} is not a unicast address")]
    NotUnicast(u16),
    /// A node is listed twice.
    #[error("node {0:#06x} is listed twice")]
    DuplicateNode(u16),
    /// An AppKey is listed twice.
    #[error("AppKey {0} is listed twice")]
    DuplicateAppKey(u16),
    /// A node holds an AppKey that is not one of those refreshed.
    #[error(
        "node {node:#06x} holds AppKey {app_key}, which is not bound to NetKey {net_key_index}"
    )]
    UnknownAppKey {
        /// The node.
        node: u16,
        /// The AppKey index.
        app_key: u16,
        /// The refreshed NetKey.
        net_key_index: u16,
    },
    /// The saved progress belongs to another key refresh.
    #[error(
        "the saved progress is of NetKey {saved} with AppKeys {saved_app_keys:?}, not NetKey {given} with AppKeys {given_app_keys:?}"
    )]
    ProgressMismatch {
        /// Its NetKey index.
        saved: u16,
        /// Its AppKeys.
        saved_app_keys: Vec<u16>,
        /// The NetKey index given.
        given: u16,
        /// The AppKeys given.
        given_app_keys: Vec<u16>,
    },
    /// The saved progress cannot be read.
    #[error("the saved key refresh progress cannot be read: {0}")]
    BadProgress(String),
}

#[derive(Debug, Clone)]
struct Participant {
    device_key: DevKey,
    app_keys: Vec<u16>,
}

#[derive(Debug)]
struct Round {
    phase: Phase,
    round: u32,
    queue: VecDeque<u16>,
    in_flight: BTreeMap<u16, ConfigMessage>,
    timed_out: Vec<u16>,
}

#[derive(Debug)]
enum State {
    Running(Round),
    Blocked(Phase),
    Finished,
}

/// The Key Refresh procedure of one NetKey (see the module documentation).
#[derive(Debug)]
pub struct KeyRefresh {
    keys: KeyRefreshKeys,
    config: KeyRefreshConfig,
    progress: KeyRefreshProgress,
    participants: BTreeMap<u16, Participant>,
    state: State,
    local: Option<ProvisionerKeys>,
    beacons: Option<bool>,
    requests: VecDeque<KeyRefreshRequest>,
    events: VecDeque<KeyRefreshEvent>,
}

/// What an accepted status means for the node.
enum Ack {
    NetKey,
    AppKey(u16),
    Phase(u8),
}

impl KeyRefresh {
    /// Sets the procedure up and starts it: from phase 1 without `saved` progress, else at the
    /// lowest phase a node still needs (failures of the last run are forgotten: those nodes
    /// are tried again). Nodes marked excluded here or in `saved` are kept out; nodes of `saved`
    /// that are not in `nodes` any more are dropped. The first requests and events are ready
    /// to poll.
    pub fn new(
        keys: KeyRefreshKeys,
        nodes: &[KeyRefreshNode],
        config: KeyRefreshConfig,
        saved: Option<KeyRefreshProgress>,
    ) -> Result<Self, KeyRefreshError> {
        if keys.old_net_key == keys.new_net_key {
            return Err(KeyRefreshError::SameNetKey);
        }
        let mut app_indexes: Vec<u16> = keys.app_keys.iter().map(|a| a.index).collect();
        app_indexes.sort_unstable();
        if let Some(w) = app_indexes.windows(2).find(|w| w[0] == w[1]) {
            return Err(KeyRefreshError::DuplicateAppKey(w[0]));
        }
        let mut seen = BTreeSet::new();
        for n in nodes {
            if !address::is_unicast(n.address) {
                return Err(KeyRefreshError::NotUnicast(n.address));
            }
            if !seen.insert(n.address) {
                return Err(KeyRefreshError::DuplicateNode(n.address));
            }
            if let Some(a) = n.app_keys.iter().find(|a| !app_indexes.contains(a)) {
                return Err(KeyRefreshError::UnknownAppKey {
                    node: n.address,
                    app_key: *a,
                    net_key_index: keys.net_key_index,
                });
            }
        }
        let mut progress = match saved {
            Some(p) => {
                let mut saved_apps = p.app_key_indexes.clone();
                saved_apps.sort_unstable();
                if p.net_key_index != keys.net_key_index || saved_apps != app_indexes {
                    return Err(KeyRefreshError::ProgressMismatch {
                        saved: p.net_key_index,
                        saved_app_keys: saved_apps,
                        given: keys.net_key_index,
                        given_app_keys: app_indexes,
                    });
                }
                p
            }
            None => KeyRefreshProgress::new(keys.net_key_index, app_indexes.clone(), &[]),
        };
        let mut participants = BTreeMap::new();
        for n in nodes {
            if n.excluded || progress.excluded.contains(&n.address) {
                progress.excluded.insert(n.address);
                continue;
            }
            // Keep the key order of `keys` (the order AppKey Updates are sent in).
            let app_keys = keys
                .app_keys
                .iter()
                .map(|a| a.index)
                .filter(|i| n.app_keys.contains(i))
                .collect();
            participants.insert(
                n.address,
                Participant {
                    device_key: n.device_key.clone(),
                    app_keys,
                },
            );
            progress.nodes.entry(n.address).or_default().failure = None;
        }
        progress.nodes.retain(|a, _| participants.contains_key(a));
        progress.finished = false;
        let start = progress
            .nodes
            .values()
            .filter(|n| n.completed < 3)
            .map(|n| n.completed + 1)
            .min();
        let mut kr = Self {
            keys,
            config,
            progress,
            participants,
            state: State::Finished,
            local: None,
            beacons: None,
            requests: VecDeque::new(),
            events: VecDeque::new(),
        };
        match start.and_then(Phase::from_number) {
            Some(p) => kr.start_phase(p),
            None => {
                kr.set_local(Phase::Revoking);
                kr.finish(None);
            }
        }
        Ok(kr)
    }

    /// The refreshed NetKey index.
    pub fn net_key_index(&self) -> u16 {
        self.keys.net_key_index
    }

    /// The progress to save (it changes with every event and every handled answer).
    pub fn progress(&self) -> &KeyRefreshProgress {
        &self.progress
    }

    /// The phase running, `None` once finished or while [`KeyRefreshEvent::Blocked`].
    pub fn phase(&self) -> Option<Phase> {
        match &self.state {
            State::Running(r) => Some(r.phase),
            _ => None,
        }
    }

    /// The run ended ([`KeyRefreshEvent::Finished`] was emitted).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// The keys the provisioner must use now.
    pub fn provisioner_keys(&self) -> ProvisionerKeys {
        self.local.unwrap_or(ProvisionerKeys {
            tx_new: false,
            rx_old: true,
        })
    }

    /// Nodes with a request in flight.
    pub fn in_flight(&self) -> usize {
        match &self.state {
            State::Running(r) => r.in_flight.len(),
            _ => 0,
        }
    }

    /// The next request to send.
    pub fn poll_request(&mut self) -> Option<KeyRefreshRequest> {
        self.requests.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<KeyRefreshEvent> {
        self.events.pop_front()
    }

    /// Sets `transport` up for the current phase ([`KeyRefreshEvent::ProvisionerKeys`]): the
    /// refreshed subnet and its AppKeys with the old and new keys (phases 1 and 2; sending
    /// with the new ones from phase 2) or only the new ones (phase 3 and after), and the
    /// device keys of the nodes in the procedure. Idempotent.
    pub fn configure_transport<S: SeqSource>(&self, transport: &mut Transport<S>) {
        let k = self.provisioner_keys();
        let idx = self.keys.net_key_index;
        let net = transport.network_mut();
        if k.rx_old {
            net.add_subnet(idx, &self.keys.old_net_key);
            // Cannot fail: the subnet was just added.
            let _ = net.update_subnet(idx, &self.keys.new_net_key);
            if k.tx_new {
                let _ = net.use_new_key(idx);
            }
        } else {
            net.add_subnet(idx, &self.keys.new_net_key);
        }
        for a in &self.keys.app_keys {
            if k.rx_old {
                transport.add_app_key(a.index, idx, a.old.clone());
                // Cannot fail: the key was just added.
                let _ = transport.update_app_key(a.index, a.new.clone());
                if k.tx_new {
                    let _ = transport.use_new_app_key(a.index);
                }
            } else {
                transport.add_app_key(a.index, idx, a.new.clone());
            }
        }
        for (address, p) in &self.participants {
            transport.add_dev_key(*address, p.device_key.clone());
        }
    }

    /// The Secure Network beacon to send now (with its type octet, for AD type 0x2B): secured
    /// with the new NetKey, Key Refresh flag as [`KeyRefreshEvent::Beacons`] said, IV Update
    /// flag clear; `None` when no beacon is due.
    pub fn secure_network_beacon(&self, iv_index: u32) -> Option<[u8; SECURE_NETWORK_BEACON_LEN]> {
        let kr = self.beacons?;
        let new = &self.keys.new_net_key;
        Some(secure_network_encode(
            &toolbox::beacon_key(new),
            BeaconState {
                flags: u8::from(kr),
                iv_index,
            },
            &toolbox::k3(new),
        ))
    }

    /// A status message from `src` (already matched to its request by the Config client).
    /// Returns whether it answered the request in flight to that node.
    pub fn handle_response(&mut self, src: u16, message: &ConfigMessage) -> bool {
        let State::Running(r) = &mut self.state else {
            return false;
        };
        if !r
            .in_flight
            .get(&src)
            .is_some_and(|request| request.is_answered_by(message))
        {
            return false;
        }
        let Some(request) = r.in_flight.remove(&src) else {
            return false;
        };
        let phase = r.phase;
        match judge(&request, message) {
            Ok(ack) => {
                let node = self.progress.nodes.entry(src).or_default();
                match ack {
                    Ack::NetKey => node.net_key_updated = true,
                    Ack::AppKey(i) => {
                        if !node.app_keys_updated.contains(&i) {
                            node.app_keys_updated.push(i);
                        }
                    }
                    Ack::Phase(done) => node.completed = node.completed.max(done),
                }
                self.continue_node(src, phase);
            }
            Err(reason) => self.fail(src, phase, reason),
        }
        self.fill();
        self.check_round_end();
        true
    }

    /// The Config client gave up on the request to `dst` (every attempt went unanswered). The
    /// node is tried again in the next round, or reported once the rounds are used up.
    pub fn handle_no_response(&mut self, dst: u16) {
        let State::Running(r) = &mut self.state else {
            return;
        };
        if r.in_flight.remove(&dst).is_some() {
            r.timed_out.push(dst);
            self.fill();
            self.check_round_end();
        }
    }

    /// [`UnreachablePolicy::Ask`]: go on to the next phase without the nodes left behind.
    /// Returns whether a decision was awaited.
    pub fn continue_without(&mut self) -> bool {
        let State::Blocked(p) = self.state else {
            return false;
        };
        self.advance(p);
        true
    }

    /// [`UnreachablePolicy::Ask`]: stop here (the saved progress resumes in this phase).
    /// Returns whether a decision was awaited.
    pub fn stop(&mut self) -> bool {
        let State::Blocked(p) = self.state else {
            return false;
        };
        self.finish(Some(p));
        true
    }

    fn set_local(&mut self, phase: Phase) {
        let k = ProvisionerKeys {
            tx_new: phase >= Phase::UsingNewKeys,
            rx_old: phase <= Phase::UsingNewKeys,
        };
        if self.local != Some(k) {
            self.local = Some(k);
            self.events.push_back(KeyRefreshEvent::ProvisionerKeys(k));
        }
    }

    fn set_beacons(&mut self, b: Option<bool>) {
        if self.beacons != b {
            self.beacons = b;
            self.events.push_back(KeyRefreshEvent::Beacons(b));
        }
    }

    fn start_phase(&mut self, phase: Phase) {
        self.progress.phase = phase;
        self.set_local(phase);
        self.set_beacons(match phase {
            Phase::KeyDistribution => None,
            Phase::UsingNewKeys => Some(true),
            Phase::Revoking => Some(false),
        });
        self.events.push_back(KeyRefreshEvent::PhaseStarted(phase));
        let queue = self
            .progress
            .nodes
            .iter()
            .filter(|(_, n)| n.failure.is_none() && n.completed < phase.number())
            .map(|(a, _)| *a)
            .collect();
        self.state = State::Running(Round {
            phase,
            round: 0,
            queue,
            in_flight: BTreeMap::new(),
            timed_out: Vec::new(),
        });
        self.fill();
        self.check_round_end();
    }

    /// The next request a node needs in `phase`, or `None` when it is done with it.
    fn next_request(&self, node: u16, phase: Phase) -> Option<ConfigMessage> {
        let p = self.progress.nodes.get(&node)?;
        let idx = self.keys.net_key_index;
        if p.completed >= phase.number() {
            return None;
        }
        match phase {
            Phase::KeyDistribution => {
                if !p.net_key_updated {
                    return Some(ConfigMessage::NetKeyUpdate {
                        net_key_index: idx,
                        key: self.keys.new_net_key.clone(),
                    });
                }
                let part = self.participants.get(&node)?;
                let app = part
                    .app_keys
                    .iter()
                    .find(|a| !p.app_keys_updated.contains(a))?;
                let key = self.keys.app_keys.iter().find(|k| k.index == *app)?;
                Some(ConfigMessage::AppKeyUpdate {
                    net_key_index: idx,
                    app_key_index: *app,
                    key: key.new.clone(),
                })
            }
            Phase::UsingNewKeys => Some(ConfigMessage::KeyRefreshPhaseSet {
                net_key_index: idx,
                transition: 2,
            }),
            Phase::Revoking => Some(ConfigMessage::KeyRefreshPhaseSet {
                net_key_index: idx,
                transition: 3,
            }),
        }
    }

    /// Sends the node's next request of this phase, or records it as done.
    fn continue_node(&mut self, node: u16, phase: Phase) {
        match self.next_request(node, phase) {
            Some(message) => {
                if let State::Running(r) = &mut self.state {
                    r.in_flight.insert(node, message.clone());
                }
                self.requests
                    .push_back(KeyRefreshRequest { dst: node, message });
            }
            None => {
                let n = self.progress.nodes.entry(node).or_default();
                n.completed = n.completed.max(phase.number());
                let done = Phase::from_number(n.completed).unwrap_or(phase);
                self.events.push_back(KeyRefreshEvent::NodeUpdated {
                    address: node,
                    phase: done,
                });
            }
        }
    }

    fn fail(&mut self, node: u16, phase: Phase, reason: FailureReason) {
        self.progress.nodes.entry(node).or_default().failure = Some(NodeFailure {
            phase,
            reason: reason.clone(),
        });
        self.events.push_back(KeyRefreshEvent::NodeFailed {
            address: node,
            phase,
            reason,
        });
    }

    /// Starts nodes of the queue up to the in-flight limit.
    fn fill(&mut self) {
        loop {
            let State::Running(r) = &mut self.state else {
                return;
            };
            if r.in_flight.len() >= self.config.max_in_flight.max(1) {
                return;
            }
            let Some(node) = r.queue.pop_front() else {
                return;
            };
            let phase = r.phase;
            self.continue_node(node, phase);
        }
    }

    fn check_round_end(&mut self) {
        let State::Running(r) = &mut self.state else {
            return;
        };
        if !r.queue.is_empty() || !r.in_flight.is_empty() {
            return;
        }
        if !r.timed_out.is_empty() && r.round < self.config.retry_rounds {
            r.round += 1;
            r.queue = std::mem::take(&mut r.timed_out).into();
            self.fill();
            return;
        }
        let phase = r.phase;
        let rounds = r.round + 1;
        for node in std::mem::take(&mut r.timed_out) {
            self.fail(node, phase, FailureReason::Unreachable { rounds });
        }
        self.events.push_back(KeyRefreshEvent::PhaseComplete(phase));
        let left_behind: Vec<u16> = self
            .progress
            .nodes
            .iter()
            .filter(|(_, n)| n.failure.as_ref().is_some_and(|f| f.phase == phase))
            .map(|(a, _)| *a)
            .collect();
        if left_behind.is_empty() {
            self.advance(phase);
            return;
        }
        match self.config.unreachable {
            UnreachablePolicy::Continue => self.advance(phase),
            UnreachablePolicy::Stop => self.finish(Some(phase)),
            UnreachablePolicy::Ask => {
                self.state = State::Blocked(phase);
                self.events
                    .push_back(KeyRefreshEvent::Blocked { phase, left_behind });
            }
        }
    }

    fn advance(&mut self, phase: Phase) {
        match phase.next() {
            Some(p) => self.start_phase(p),
            None => self.finish(None),
        }
    }

    fn finish(&mut self, stopped: Option<Phase>) {
        self.state = State::Finished;
        self.progress.finished = true;
        self.set_beacons(None);
        let mut summary = KeyRefreshSummary {
            updated: Vec::new(),
            left_behind: Vec::new(),
            excluded: self.progress.excluded.iter().copied().collect(),
            stopped,
        };
        for (a, n) in &self.progress.nodes {
            if n.completed >= 3 {
                summary.updated.push(*a);
            } else {
                summary
                    .left_behind
                    .push((*a, n.completed, n.failure.clone()));
            }
        }
        self.events.push_back(KeyRefreshEvent::Finished(summary));
    }
}

/// The name of a request in failure reports.
fn request_name(m: &ConfigMessage) -> String {
    match m {
        ConfigMessage::NetKeyUpdate { .. } => "NetKey Update".into(),
        ConfigMessage::AppKeyUpdate { app_key_index, .. } => {
            format!("AppKey Update (AppKey {app_key_index})")
        }
        ConfigMessage::KeyRefreshPhaseSet { transition, .. } => {
            format!("Key Refresh Phase Set {transition}")
        }
        other => format!("{:?}", other.opcode()),
    }
}

/// Whether `status` acknowledges `request`.
fn judge(request: &ConfigMessage, status: &ConfigMessage) -> Result<Ack, FailureReason> {
    let name = || request_name(request);
    let bad = |s: ConfigStatus| FailureReason::Status {
        request: name(),
        status: s.0,
    };
    match (request, status) {
        (ConfigMessage::NetKeyUpdate { .. }, ConfigMessage::NetKeyStatus { status, .. }) => {
            if *status == ConfigStatus::SUCCESS {
                Ok(Ack::NetKey)
            } else {
                Err(bad(*status))
            }
        }
        (
            ConfigMessage::AppKeyUpdate { app_key_index, .. },
            ConfigMessage::AppKeyStatus { status, .. },
        ) => {
            if *status == ConfigStatus::SUCCESS {
                Ok(Ack::AppKey(*app_key_index))
            } else {
                Err(bad(*status))
            }
        }
        (
            ConfigMessage::KeyRefreshPhaseSet { transition, .. },
            ConfigMessage::KeyRefreshPhaseStatus { status, phase, .. },
        ) => match (*transition, *status, *phase) {
            (2, ConfigStatus::SUCCESS, 2) | (3, ConfigStatus::SUCCESS, 0) => {
                Ok(Ack::Phase(*transition))
            }
            // Phase 0 in answer to a request secured with the new NetKey: the node holds only
            // the new keys already (a beacon moved it on), nothing is left to do there.
            (2, ConfigStatus::SUCCESS | ConfigStatus::CANNOT_UPDATE, 0) => Ok(Ack::Phase(3)),
            (_, s, _) if s != ConfigStatus::SUCCESS => Err(bad(s)),
            (_, _, p) => Err(FailureReason::WrongPhase {
                request: name(),
                phase: p,
            }),
        },
        // is_answered_by() matched the opcode; nothing else reaches here.
        (_, other) => Err(FailureReason::Status {
            request: name(),
            status: other
                .status()
                .map_or(ConfigStatus::UNSPECIFIED_ERROR.0, |s| s.0),
        }),
    }
}

#[cfg(test)]
mod tests {
    use mesh_crypto::beacon::secure_network_decode;
    use mesh_crypto::network::NetworkHeader;

    use super::*;
    use crate::net::network::{IvIndex, MemorySeqSource, NetworkConfig, NetworkLayer};
    use crate::net::transport::TransportConfig;

    const NET: u16 = 0;

    fn keys(apps: &[u16]) -> KeyRefreshKeys {
        KeyRefreshKeys {
            net_key_index: NET,
            old_net_key: NetKey::from_bytes([0x01; 16]),
            new_net_key: NetKey::from_bytes([0x02; 16]),
            app_keys: apps
                .iter()
                .map(|i| AppKeyChange {
                    index: *i,
                    old: AppKey::from_bytes([0x10 + *i as u8; 16]),
                    new: AppKey::from_bytes([0x20 + *i as u8; 16]),
                })
                .collect(),
        }
    }

    fn node(address: u16, excluded: bool, app_keys: &[u16]) -> KeyRefreshNode {
        KeyRefreshNode {
            address,
            device_key: DevKey::from_bytes([address as u8; 16]),
            excluded,
            app_keys: app_keys.to_vec(),
        }
    }

    fn start(nodes: &[KeyRefreshNode], config: KeyRefreshConfig) -> KeyRefresh {
        KeyRefresh::new(keys(&[0, 1]), nodes, config, None).expect("valid set-up")
    }

    fn requests(kr: &mut KeyRefresh) -> Vec<KeyRefreshRequest> {
        std::iter::from_fn(|| kr.poll_request()).collect()
    }

    fn events(kr: &mut KeyRefresh) -> Vec<KeyRefreshEvent> {
        std::iter::from_fn(|| kr.poll_event()).collect()
    }

    /// What a node that does what it is asked answers.
    fn success(request: &ConfigMessage) -> ConfigMessage {
        match request {
            ConfigMessage::NetKeyUpdate { net_key_index, .. } => ConfigMessage::NetKeyStatus {
                status: ConfigStatus::SUCCESS,
                net_key_index: *net_key_index,
            },
            ConfigMessage::AppKeyUpdate {
                net_key_index,
                app_key_index,
                ..
            } => ConfigMessage::AppKeyStatus {
                status: ConfigStatus::SUCCESS,
                net_key_index: *net_key_index,
                app_key_index: *app_key_index,
            },
            ConfigMessage::KeyRefreshPhaseSet {
                net_key_index,
                transition,
            } => ConfigMessage::KeyRefreshPhaseStatus {
                status: ConfigStatus::SUCCESS,
                net_key_index: *net_key_index,
                phase: if *transition == 2 { 2 } else { 0 },
            },
            other => panic!("unexpected request {other:?}"),
        }
    }

    /// Answers every request with Success, except those to `silent` (no answer); returns
    /// every request sent, in order.
    fn run(kr: &mut KeyRefresh, silent: &[u16]) -> Vec<KeyRefreshRequest> {
        let mut all = Vec::new();
        loop {
            let batch = requests(kr);
            if batch.is_empty() {
                return all;
            }
            for r in &batch {
                if silent.contains(&r.dst) {
                    kr.handle_no_response(r.dst);
                } else {
                    assert!(kr.handle_response(r.dst, &success(&r.message)));
                }
            }
            all.extend(batch);
        }
    }

    fn is_phase_set(m: &ConfigMessage, t: u8) -> bool {
        matches!(m, ConfigMessage::KeyRefreshPhaseSet { transition, .. } if *transition == t)
    }

    fn finished(ev: &[KeyRefreshEvent]) -> &KeyRefreshSummary {
        ev.iter()
            .find_map(|e| match e {
                KeyRefreshEvent::Finished(s) => Some(s),
                _ => None,
            })
            .expect("finished")
    }

    #[test]
    fn phases_run_in_order_with_the_provisioner_keys_and_beacons_of_each() {
        let nodes = [
            node(1, false, &[0, 1]),
            node(2, false, &[0, 1]),
            node(3, false, &[1]),
        ];
        let mut kr = start(&nodes, KeyRefreshConfig::default());
        let sent = run(&mut kr, &[]);
        // Phase 1 to every node, then transition 2 to every node, then transition 3.
        let first_set2 = sent
            .iter()
            .position(|r| is_phase_set(&r.message, 2))
            .unwrap();
        let first_set3 = sent
            .iter()
            .position(|r| is_phase_set(&r.message, 3))
            .unwrap();
        assert_eq!(first_set2, 2 + 2 + 1 + 3, "NetKey + AppKey Updates first");
        assert!(
            sent[..first_set2]
                .iter()
                .all(|r| !matches!(r.message, ConfigMessage::KeyRefreshPhaseSet { .. }))
        );
        assert!(
            sent[first_set2..first_set3]
                .iter()
                .all(|r| is_phase_set(&r.message, 2))
        );
        assert!(
            sent[first_set3..]
                .iter()
                .all(|r| is_phase_set(&r.message, 3))
        );
        assert_eq!(sent.len() - first_set3, 3);
        // Per node: NetKey Update before its AppKey Updates, only the AppKeys it holds.
        let to3: Vec<&ConfigMessage> = sent
            .iter()
            .filter(|r| r.dst == 3)
            .map(|r| &r.message)
            .collect();
        assert!(
            matches!(to3[0], ConfigMessage::NetKeyUpdate { key, .. } if *key == NetKey::from_bytes([2; 16]))
        );
        assert!(matches!(
            to3[1],
            ConfigMessage::AppKeyUpdate { app_key_index: 1, key, .. } if *key == AppKey::from_bytes([0x21; 16])
        ));
        assert!(is_phase_set(to3[2], 2) && is_phase_set(to3[3], 3) && to3.len() == 4);

        let ev = events(&mut kr);
        let keys: Vec<ProvisionerKeys> = ev
            .iter()
            .filter_map(|e| match e {
                KeyRefreshEvent::ProvisionerKeys(k) => Some(*k),
                _ => None,
            })
            .collect();
        assert_eq!(
            keys,
            [
                ProvisionerKeys {
                    tx_new: false,
                    rx_old: true
                },
                ProvisionerKeys {
                    tx_new: true,
                    rx_old: true
                },
                ProvisionerKeys {
                    tx_new: true,
                    rx_old: false
                },
            ]
        );
        let beacons: Vec<Option<bool>> = ev
            .iter()
            .filter_map(|e| match e {
                KeyRefreshEvent::Beacons(b) => Some(*b),
                _ => None,
            })
            .collect();
        assert_eq!(beacons, [Some(true), Some(false), None]);
        let complete: Vec<Phase> = ev
            .iter()
            .filter_map(|e| match e {
                KeyRefreshEvent::PhaseComplete(p) => Some(*p),
                _ => None,
            })
            .collect();
        assert_eq!(
            complete,
            [Phase::KeyDistribution, Phase::UsingNewKeys, Phase::Revoking]
        );
        let updated = ev
            .iter()
            .filter(|e| matches!(e, KeyRefreshEvent::NodeUpdated { .. }))
            .count();
        assert_eq!(updated, 9, "3 nodes × 3 phases");
        let s = finished(&ev);
        assert!(s.is_complete());
        assert_eq!(s.updated, [1, 2, 3]);
        assert!(kr.is_finished() && kr.progress().is_complete() && kr.progress().finished);
    }

    #[test]
    fn no_phase_2_before_every_reachable_node_acknowledged_phase_1() {
        let nodes = [
            node(1, false, &[0]),
            node(2, false, &[0]),
            node(3, false, &[0]),
        ];
        let mut kr = start(&nodes, KeyRefreshConfig::default());
        // Nodes 1 and 2 finish phase 1; node 3's NetKey Update is still in flight.
        let mut outstanding = Vec::new();
        loop {
            let batch = requests(&mut kr);
            if batch.is_empty() {
                break;
            }
            for r in batch {
                assert!(!matches!(
                    r.message,
                    ConfigMessage::KeyRefreshPhaseSet { .. }
                ));
                if r.dst == 3 {
                    outstanding.push(r);
                } else {
                    kr.handle_response(r.dst, &success(&r.message));
                }
            }
        }
        assert_eq!(kr.phase(), Some(Phase::KeyDistribution));
        assert_eq!(outstanding.len(), 1);
        // Node 3 does not answer: it is asked again in each of the 2 extra rounds, and only
        // then does phase 2 start, without it.
        let mut asked = 1;
        kr.handle_no_response(3);
        loop {
            let batch = requests(&mut kr);
            let (to3, others): (Vec<_>, Vec<_>) = batch.into_iter().partition(|r| r.dst == 3);
            if !others.is_empty() {
                assert!(others.iter().all(|r| is_phase_set(&r.message, 2)));
                assert!(to3.is_empty(), "node 3 gets no phase 2 request");
                for r in others {
                    kr.handle_response(r.dst, &success(&r.message));
                }
                break;
            }
            assert_eq!(to3.len(), 1);
            assert!(matches!(to3[0].message, ConfigMessage::NetKeyUpdate { .. }));
            asked += 1;
            kr.handle_no_response(3);
        }
        assert_eq!(asked, 3, "1 round + 2 retry rounds");
        let ev = events(&mut kr);
        let failed = ev
            .iter()
            .find_map(|e| match e {
                KeyRefreshEvent::NodeFailed {
                    address: 3,
                    phase,
                    reason,
                } => Some((*phase, reason.clone())),
                _ => None,
            })
            .expect("node 3 reported");
        assert_eq!(failed.0, Phase::KeyDistribution);
        assert_eq!(failed.1, FailureReason::Unreachable { rounds: 3 });
        assert_eq!(failed.1.to_string(), "no answer after 3 rounds of requests");
        let rest = run(&mut kr, &[]);
        assert!(rest.iter().all(|r| r.dst != 3));
        let s = finished(&events(&mut kr)).clone();
        assert_eq!(s.updated, [1, 2]);
        assert_eq!(s.left_behind.len(), 1);
        assert_eq!(s.left_behind[0].0, 3);
        assert_eq!(s.left_behind[0].1, 0);
        assert!(!s.is_complete());
    }

    #[test]
    fn status_failures_are_reported_by_name() {
        let nodes = [
            node(1, false, &[0]),
            node(2, false, &[0]),
            node(3, false, &[0]),
            node(4, false, &[]),
        ];
        let mut kr = start(&nodes, KeyRefreshConfig::default());
        let mut reasons = BTreeMap::new();
        loop {
            let batch = requests(&mut kr);
            if batch.is_empty() {
                break;
            }
            for r in batch {
                let answer = match (r.dst, &r.message) {
                    (1, ConfigMessage::NetKeyUpdate { .. }) => ConfigMessage::NetKeyStatus {
                        status: ConfigStatus::INVALID_NETKEY_INDEX,
                        net_key_index: NET,
                    },
                    (2, ConfigMessage::AppKeyUpdate { .. }) => ConfigMessage::AppKeyStatus {
                        status: ConfigStatus::CANNOT_UPDATE,
                        net_key_index: NET,
                        app_key_index: 0,
                    },
                    (3, ConfigMessage::KeyRefreshPhaseSet { .. }) => {
                        ConfigMessage::KeyRefreshPhaseStatus {
                            status: ConfigStatus::SUCCESS,
                            net_key_index: NET,
                            phase: 1,
                        }
                    }
                    (_, m) => success(m),
                };
                kr.handle_response(r.dst, &answer);
            }
            for e in events(&mut kr) {
                if let KeyRefreshEvent::NodeFailed {
                    address, reason, ..
                } = e
                {
                    reasons.insert(address, reason);
                }
            }
        }
        assert_eq!(
            reasons[&1].to_string(),
            "NetKey Update: Invalid NetKey Index"
        );
        assert_eq!(
            reasons[&1].status(),
            Some(ConfigStatus::INVALID_NETKEY_INDEX)
        );
        assert_eq!(
            reasons[&2].to_string(),
            "AppKey Update (AppKey 0): Cannot Update"
        );
        assert_eq!(
            reasons[&3].to_string(),
            "Key Refresh Phase Set 2: the node reports Key Refresh Phase 1"
        );
        assert!(!reasons.contains_key(&4));
        assert_eq!(kr.progress().nodes[&4].completed, 3);
        assert_eq!(kr.progress().nodes[&2].completed, 0);
        assert!(kr.progress().nodes[&2].net_key_updated);
        assert_eq!(kr.progress().nodes[&3].completed, 1);
    }

    #[test]
    fn excluded_nodes_receive_nothing() {
        let nodes = [
            node(1, false, &[0, 1]),
            node(2, true, &[0, 1]),
            node(3, false, &[0, 1]),
        ];
        let mut kr = start(&nodes, KeyRefreshConfig::default());
        let sent = run(&mut kr, &[]);
        assert!(!sent.is_empty());
        assert!(sent.iter().all(|r| r.dst != 2));
        let s = finished(&events(&mut kr)).clone();
        assert_eq!(s.excluded, [2]);
        assert_eq!(s.updated, [1, 3]);
        assert!(s.is_complete());
        assert!(kr.progress().excluded.contains(&2));
        assert!(!kr.progress().nodes.contains_key(&2));
        // A node excluded in saved progress stays out even if the caller forgot it.
        let again = KeyRefresh::new(
            keys(&[0, 1]),
            &[
                node(1, false, &[]),
                node(2, false, &[]),
                node(3, false, &[]),
            ],
            KeyRefreshConfig::default(),
            Some(kr.progress().clone()),
        )
        .unwrap();
        assert!(again.progress().excluded.contains(&2));
    }

    #[test]
    fn a_resumed_run_skips_what_nodes_acknowledged() {
        let nodes = [
            node(1, false, &[0, 1]),
            node(2, false, &[0, 1]),
            node(3, false, &[0, 1]),
        ];
        let mut kr = start(&nodes, KeyRefreshConfig::default());
        // Node 1 does all of phase 1, node 2 only its NetKey Update; node 3 nothing. Then the
        // laptop dies.
        for _ in 0..3 {
            for r in requests(&mut kr) {
                let take = r.dst == 1
                    || (r.dst == 2 && matches!(r.message, ConfigMessage::NetKeyUpdate { .. }));
                if take {
                    kr.handle_response(r.dst, &success(&r.message));
                }
            }
        }
        let saved = KeyRefreshProgress::from_json(&kr.progress().to_json()).unwrap();
        assert_eq!(saved.nodes[&1].completed, 1);
        assert!(saved.nodes[&2].net_key_updated && saved.nodes[&2].completed == 0);

        let mut resumed = KeyRefresh::new(
            keys(&[0, 1]),
            &nodes,
            KeyRefreshConfig::default(),
            Some(saved),
        )
        .unwrap();
        let first = requests(&mut resumed);
        assert_eq!(first.len(), 2, "{first:?}");
        assert!(
            matches!(
                first[0].message,
                ConfigMessage::AppKeyUpdate {
                    app_key_index: 0,
                    ..
                }
            ) && first[0].dst == 2
        );
        assert!(
            matches!(first[1].message, ConfigMessage::NetKeyUpdate { .. }) && first[1].dst == 3
        );
        for r in &first {
            resumed.handle_response(r.dst, &success(&r.message));
        }
        let rest = run(&mut resumed, &[]);
        let to1: Vec<&ConfigMessage> = rest
            .iter()
            .filter(|r| r.dst == 1)
            .map(|r| &r.message)
            .collect();
        assert!(to1.len() == 2 && is_phase_set(to1[0], 2) && is_phase_set(to1[1], 3));
        assert!(finished(&events(&mut resumed)).is_complete());

        // Resuming a finished procedure sends nothing and finishes at once.
        let mut done = KeyRefresh::new(
            keys(&[0, 1]),
            &nodes,
            KeyRefreshConfig::default(),
            Some(resumed.progress().clone()),
        )
        .unwrap();
        assert!(requests(&mut done).is_empty());
        assert!(done.is_finished());
        assert!(finished(&events(&mut done)).is_complete());
    }

    #[test]
    fn nodes_left_behind_in_phase_2_resume_from_phase_2() {
        let nodes = [node(1, false, &[0]), node(2, false, &[0])];
        let mut kr = start(&nodes, KeyRefreshConfig::default());
        // Node 2 answers phase 1, then goes silent.
        loop {
            let batch = requests(&mut kr);
            if batch.is_empty() {
                break;
            }
            for r in batch {
                if r.dst == 2 && matches!(r.message, ConfigMessage::KeyRefreshPhaseSet { .. }) {
                    kr.handle_no_response(2);
                } else {
                    kr.handle_response(r.dst, &success(&r.message));
                }
            }
        }
        let s = finished(&events(&mut kr)).clone();
        assert_eq!(s.left_behind[0].0, 2);
        assert_eq!(s.left_behind[0].1, 1);
        assert_eq!(
            s.left_behind[0].2.as_ref().map(|f| f.phase),
            Some(Phase::UsingNewKeys)
        );

        let mut resumed = KeyRefresh::new(
            keys(&[0, 1]),
            &nodes,
            KeyRefreshConfig::default(),
            Some(kr.progress().clone()),
        )
        .unwrap();
        let ev = events(&mut resumed);
        assert_eq!(
            ev[0],
            KeyRefreshEvent::ProvisionerKeys(ProvisionerKeys {
                tx_new: true,
                rx_old: true
            })
        );
        assert!(ev.contains(&KeyRefreshEvent::PhaseStarted(Phase::UsingNewKeys)));
        let sent = run(&mut resumed, &[]);
        assert_eq!(sent.len(), 2);
        assert!(sent.iter().all(|r| r.dst == 2));
        assert!(finished(&events(&mut resumed)).is_complete());
    }

    #[test]
    fn phase_0_in_answer_to_transition_2_means_the_node_is_done() {
        let nodes = [node(1, false, &[])];
        let mut kr = start(&nodes, KeyRefreshConfig::default());
        let r = requests(&mut kr);
        kr.handle_response(1, &success(&r[0].message));
        let r = requests(&mut kr);
        assert!(is_phase_set(&r[0].message, 2));
        kr.handle_response(
            1,
            &ConfigMessage::KeyRefreshPhaseStatus {
                status: ConfigStatus::CANNOT_UPDATE,
                net_key_index: NET,
                phase: 0,
            },
        );
        assert!(requests(&mut kr).is_empty(), "no transition 3 needed");
        let ev = events(&mut kr);
        assert!(ev.contains(&KeyRefreshEvent::NodeUpdated {
            address: 1,
            phase: Phase::Revoking
        }));
        assert!(finished(&ev).is_complete());
    }

    #[test]
    fn answers_that_match_nothing_are_ignored() {
        let mut kr = start(&[node(1, false, &[])], KeyRefreshConfig::default());
        let r = requests(&mut kr);
        // From another node, for another NetKey, another message.
        assert!(!kr.handle_response(2, &success(&r[0].message)));
        assert!(!kr.handle_response(
            1,
            &ConfigMessage::NetKeyStatus {
                status: ConfigStatus::SUCCESS,
                net_key_index: 5
            }
        ));
        assert!(!kr.handle_response(1, &ConfigMessage::NodeResetStatus));
        kr.handle_no_response(9);
        assert_eq!(kr.in_flight(), 1);
        assert!(kr.handle_response(1, &success(&r[0].message)));
    }

    #[test]
    fn stop_and_ask_policies() {
        let nodes = [node(1, false, &[]), node(2, false, &[])];
        for policy in [UnreachablePolicy::Stop, UnreachablePolicy::Ask] {
            let config = KeyRefreshConfig {
                retry_rounds: 0,
                unreachable: policy,
                ..KeyRefreshConfig::default()
            };
            let mut kr = start(&nodes, config);
            let sent = run(&mut kr, &[2]);
            assert!(
                sent.iter()
                    .all(|r| matches!(r.message, ConfigMessage::NetKeyUpdate { .. }))
            );
            let ev = events(&mut kr);
            match policy {
                UnreachablePolicy::Stop => {
                    assert!(kr.is_finished());
                    assert_eq!(finished(&ev).stopped, Some(Phase::KeyDistribution));
                    // Stopped in phase 1: the provisioner keeps both keys for the resume.
                    assert!(kr.provisioner_keys().rx_old && !kr.provisioner_keys().tx_new);
                }
                _ => {
                    assert!(ev.contains(&KeyRefreshEvent::Blocked {
                        phase: Phase::KeyDistribution,
                        left_behind: vec![2]
                    }));
                    assert!(!kr.is_finished() && kr.phase().is_none());
                    assert!(kr.continue_without());
                    assert_eq!(kr.phase(), Some(Phase::UsingNewKeys));
                    let rest = run(&mut kr, &[]);
                    assert!(rest.iter().all(|r| r.dst == 1));
                    assert!(!kr.stop(), "nothing to decide");
                }
            }
        }
    }

    #[test]
    fn bad_set_ups_are_refused() {
        let same = KeyRefreshKeys {
            new_net_key: NetKey::from_bytes([0x01; 16]),
            ..keys(&[])
        };
        let n = [node(1, false, &[])];
        let c = KeyRefreshConfig::default;
        assert_eq!(
            KeyRefresh::new(same, &n, c(), None).unwrap_err(),
            KeyRefreshError::SameNetKey
        );
        assert_eq!(
            KeyRefresh::new(
                keys(&[]),
                &[node(1, false, &[]), node(1, false, &[])],
                c(),
                None
            )
            .unwrap_err(),
            KeyRefreshError::DuplicateNode(1)
        );
        assert_eq!(
            KeyRefresh::new(keys(&[]), &[node(0xc000, false, &[])], c(), None).unwrap_err(),
            KeyRefreshError::NotUnicast(0xc000)
        );
        assert_eq!(
            KeyRefresh::new(keys(&[0, 0]), &n, c(), None).unwrap_err(),
            KeyRefreshError::DuplicateAppKey(0)
        );
        assert!(matches!(
            KeyRefresh::new(keys(&[0]), &[node(1, false, &[4])], c(), None).unwrap_err(),
            KeyRefreshError::UnknownAppKey { app_key: 4, .. }
        ));
        let other = KeyRefreshProgress::new(3, vec![], &[1]);
        assert!(matches!(
            KeyRefresh::new(keys(&[]), &n, c(), Some(other)).unwrap_err(),
            KeyRefreshError::ProgressMismatch { saved: 3, .. }
        ));
        let apps = KeyRefreshProgress::new(NET, vec![7], &[1]);
        assert!(matches!(
            KeyRefresh::new(keys(&[]), &n, c(), Some(apps)).unwrap_err(),
            KeyRefreshError::ProgressMismatch { .. }
        ));
    }

    #[test]
    fn progress_round_trips_through_json() {
        let mut p = KeyRefreshProgress::new(5, vec![1, 2], &[1, 2, 3, 4]);
        p.phase = Phase::Revoking;
        p.finished = true;
        p.excluded.insert(9);
        p.nodes.insert(
            1,
            NodeProgress {
                completed: 3,
                net_key_updated: true,
                app_keys_updated: vec![1, 2],
                failure: None,
            },
        );
        p.nodes.insert(
            2,
            NodeProgress {
                completed: 1,
                net_key_updated: true,
                app_keys_updated: vec![2],
                failure: Some(NodeFailure {
                    phase: Phase::UsingNewKeys,
                    reason: FailureReason::Unreachable { rounds: 3 },
                }),
            },
        );
        p.nodes.insert(
            3,
            NodeProgress {
                completed: 0,
                net_key_updated: false,
                app_keys_updated: vec![],
                failure: Some(NodeFailure {
                    phase: Phase::KeyDistribution,
                    reason: FailureReason::Status {
                        request: "NetKey Update".into(),
                        status: ConfigStatus::CANNOT_UPDATE.0,
                    },
                }),
            },
        );
        p.nodes.get_mut(&4).unwrap().failure = Some(NodeFailure {
            phase: Phase::Revoking,
            reason: FailureReason::WrongPhase {
                request: "Key Refresh Phase Set 3".into(),
                phase: 2,
            },
        });
        let json = p.to_json();
        assert_eq!(KeyRefreshProgress::from_json(&json).unwrap(), p);
        assert!(json.contains("\"phase\":3"), "{json}");
        assert!(
            !json.to_lowercase().contains("key\":\""),
            "no key material: {json}"
        );
        assert!(matches!(
            KeyRefreshProgress::from_json("{\"version\":2}"),
            Err(KeyRefreshError::BadProgress(_))
        ));
        let newer = json.replace("\"version\":1", "\"version\":2");
        assert!(matches!(
            KeyRefreshProgress::from_json(&newer),
            Err(KeyRefreshError::BadProgress(m)) if m.contains("version 2")
        ));
        let bad_phase = json.replace("\"phase\":3", "\"phase\":4");
        assert!(KeyRefreshProgress::from_json(&bad_phase).is_err());
    }

    #[test]
    fn beacons_are_secured_with_the_new_key() {
        let nodes = [node(1, false, &[])];
        let mut kr = start(&nodes, KeyRefreshConfig::default());
        assert_eq!(kr.secure_network_beacon(7), None, "no beacon in phase 1");
        let r = requests(&mut kr);
        kr.handle_response(1, &success(&r[0].message));
        assert_eq!(kr.phase(), Some(Phase::UsingNewKeys));
        let new = NetKey::from_bytes([2; 16]);
        let old = NetKey::from_bytes([1; 16]);
        let b = kr.secure_network_beacon(7).unwrap();
        let state = secure_network_decode(&toolbox::beacon_key(&new), &toolbox::k3(&new), &b)
            .expect("authenticated with the new key");
        assert_eq!(state.flags, 0x01);
        assert_eq!(state.iv_index, 7);
        assert!(secure_network_decode(&toolbox::beacon_key(&old), &toolbox::k3(&old), &b).is_err());
        let r = requests(&mut kr);
        kr.handle_response(1, &success(&r[0].message));
        let b = kr.secure_network_beacon(7).unwrap();
        let state =
            secure_network_decode(&toolbox::beacon_key(&new), &toolbox::k3(&new), &b).unwrap();
        assert_eq!(state.flags, 0x00, "phase 3: Key Refresh flag cleared");
        let r = requests(&mut kr);
        kr.handle_response(1, &success(&r[0].message));
        assert!(kr.is_finished());
        assert_eq!(kr.secure_network_beacon(7), None);
    }

    /// A network layer holding only `key`, at element 0x0001.
    fn peer(key: &NetKey) -> NetworkLayer<MemorySeqSource> {
        let mut n = NetworkLayer::new(
            NetworkConfig::default(),
            IvIndex::default(),
            MemorySeqSource::new(),
        );
        n.add_subnet(NET, key);
        n.add_element(0x0001);
        n
    }

    fn pdu(from: &mut NetworkLayer<MemorySeqSource>, src: u16, dst: u16) -> Vec<u8> {
        let header = NetworkHeader {
            ctl: false,
            ttl: 5,
            seq: from.next_seq(src).unwrap(),
            src,
            dst,
        };
        from.encrypt(NET, &header, &[0x00, 1, 2, 3, 4, 5])
            .unwrap()
            .pdu
    }

    #[test]
    fn the_provisioner_sends_old_then_new_and_drops_the_old_in_phase_3() {
        let old = NetKey::from_bytes([1; 16]);
        let new = NetKey::from_bytes([2; 16]);
        let mut t = Transport::new(
            TransportConfig::default(),
            NetworkLayer::new(
                NetworkConfig::default(),
                IvIndex::default(),
                MemorySeqSource::new(),
            ),
        );
        t.network_mut().add_element(0x7fff);
        let mut kr = start(&[node(1, false, &[0])], KeyRefreshConfig::default());
        let (mut with_old, mut with_new) = (peer(&old), peer(&new));
        for phase in 1..=3u8 {
            assert_eq!(kr.phase().map(Phase::number), Some(phase));
            kr.configure_transport(&mut t);
            // What the provisioner sends: old key in phase 1, new key from phase 2.
            let mine = pdu(t.network_mut(), 0x7fff, 0x0001);
            assert_eq!(with_new.decrypt(&mine).is_ok(), phase >= 2, "phase {phase}");
            assert_eq!(with_old.decrypt(&mine).is_ok(), phase == 1, "phase {phase}");
            // What it receives: both keys in phases 1 and 2, only the new one in phase 3.
            let from_new = pdu(&mut with_new, 0x0001, 0x7fff);
            let from_old = pdu(&mut with_old, 0x0001, 0x7fff);
            assert!(t.network().decrypt_unchecked(&from_new).is_ok());
            assert_eq!(t.network().decrypt_unchecked(&from_old).is_ok(), phase <= 2);
            for r in requests(&mut kr) {
                kr.handle_response(r.dst, &success(&r.message));
            }
            while kr.phase().map(Phase::number) == Some(phase) {
                let batch = requests(&mut kr);
                if batch.is_empty() {
                    break;
                }
                for r in batch {
                    kr.handle_response(r.dst, &success(&r.message));
                }
            }
        }
        assert!(kr.is_finished());
        kr.configure_transport(&mut t);
        let from_old = pdu(&mut with_old, 0x0001, 0x7fff);
        assert!(t.network().decrypt_unchecked(&from_old).is_err());
    }
}
