//! The rollout engine's core, sans-IO: one state machine per device, the scheduler that keeps
//! within the concurrency limits, retries with backoff, pause/resume/stop and the installer's
//! commands. It never reads a clock or touches a radio or the store: a driver
//! ([`super::sim_driver`], [`super::live_driver`]) passes time in, asks for [`Action`]s
//! ([`Engine::poll_action`]), does them, and reports what happened (`provisioned`,
//! `configured`, `phase_failed`, ...). The engine answers with [`RolloutEvent`]s
//! ([`Engine::poll_event`]) and keeps a [`DeviceStatus`] per device ([`Engine::snapshot`]).
//!
//! Per device:
//!
//! ```text
//! discovered → scheduled → provisioning → committed → configuring → verifying → done
//!                  ↑  (retry, backoff)  │      ↑  (retry, backoff)    │
//!                  └────────────────────┘      └──────────────────────┘
//!              any phase → failed(phase, reason) once the retries are spent
//! ```
//!
//! `committed` means the device key and address are in the store (write-ahead, before the
//! Provisioning Data left): from there on the device is never provisioned again, only
//! configured. A device the store already has is created in `committed` (resume: it is
//! configured, or its configuration finished) or `done` (configured).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde::Serialize;

use crate::rollout::plan::{Discovery, PlanLocation};
use crate::time::Instant;
use crate::uuid::DeviceUuid;

/// Where a device stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Heard (or planned) and not yet scheduled.
    Discovered,
    /// Waiting for a provisioning slot (or its backoff).
    Scheduled,
    /// A provisioning session is running.
    Provisioning,
    /// Its device key and address are in the store; waiting for a configuration slot.
    Committed,
    /// Its template is being applied.
    Configuring,
    /// Its Composition Data is being checked against the plan.
    Verifying,
    /// Provisioned, configured and verified.
    Done,
    /// Given up (see [`DeviceStatus::failed_phase`] and [`DeviceStatus::last_error`]).
    Failed,
    /// Skipped by the installer (or not started before a stop).
    Skipped,
    /// Excluded from the network.
    Excluded,
}

impl Stage {
    /// Whether the device is finished (done, failed, skipped or excluded).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Stage::Done | Stage::Failed | Stage::Skipped | Stage::Excluded
        )
    }
}

/// A phase of the work on one device, for timings and failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Provisioning (link, handshake, Provisioning Data).
    Provisioning,
    /// Applying the template (Config messages).
    Configuring,
    /// Checking Composition Data against the plan.
    Verifying,
}

impl Phase {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Provisioning => "provisioning",
            Phase::Configuring => "configuring",
            Phase::Verifying => "verifying",
        }
    }
}

/// Milliseconds spent per phase (all attempts).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PhaseTimings {
    /// Provisioning, ms.
    pub provisioning_ms: u64,
    /// Configuring, ms.
    pub configuring_ms: u64,
    /// Verifying, ms.
    pub verifying_ms: u64,
}

impl PhaseTimings {
    fn add(&mut self, phase: Phase, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let slot = match phase {
            Phase::Provisioning => &mut self.provisioning_ms,
            Phase::Configuring => &mut self.configuring_ms,
            Phase::Verifying => &mut self.verifying_ms,
        };
        *slot = slot.saturating_add(ms);
    }
}

/// One device as the engine sees it (and a TUI shows it).
#[derive(Clone, Debug, Serialize)]
pub struct DeviceStatus {
    /// The device.
    #[serde(serialize_with = "display")]
    pub uuid: DeviceUuid,
    /// Name.
    pub name: String,
    /// Where it is installed.
    pub location: PlanLocation,
    /// Its template.
    pub template: String,
    /// The authentication the plan asks for (`cert`, `static`, ...).
    pub auth: String,
    /// The authentication the session used, once known.
    pub auth_used: Option<String>,
    /// Where it stands.
    pub stage: Stage,
    /// Attempt of the current phase (1 = first).
    pub attempt: u32,
    /// Engine time (ms) it entered its stage.
    pub stage_since_ms: u64,
    /// Primary address, once allocated.
    pub address: Option<u16>,
    /// Element count, once known.
    pub elements: Option<u8>,
    /// The last error (of any attempt).
    pub last_error: Option<String>,
    /// The phase it failed in, when failed.
    pub failed_phase: Option<Phase>,
    /// Time per phase.
    pub timings: PhaseTimings,
    /// Engine time (ms) of its next attempt, while backing off.
    pub retry_at_ms: Option<u64>,
    /// Provisioning PDUs of its last session (names, `>` sent, `<` received), when known.
    pub transcript: Vec<String>,
    /// Its Composition Data page 0 as one line, once read.
    pub composition: Option<String>,
    /// Whether it came from the store's earlier runs (resumed).
    pub resumed: bool,
    #[serde(skip)]
    entered: Instant,
    #[serde(skip)]
    retry_at: Option<Instant>,
    #[serde(skip)]
    phase_started: Option<Instant>,
    /// Failed attempts of this phase that did not count against `policy.retries`: nothing
    /// was heard on the radio while they ran ([`Engine::air_heard`]).
    #[serde(skip)]
    quiet_attempts: u32,
}

/// What the engine reports: the JSON lines of `meshprov rollout --json`, and what a TUI
/// renders. `t_ms` is engine time (virtual time on the simulated radio).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RolloutEvent {
    /// Engine time, ms since the start of the run.
    pub t_ms: u64,
    /// The device, for device events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The event itself; serialised with an `event` tag (`{"event":"provisioned",...}`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// The run starts.
    Start {
        /// Devices in the plan.
        devices: usize,
        /// Already done in the store.
        already_done: usize,
        /// `virtual` (simulated radio) or `wall`.
        clock: &'static str,
    },
    /// A planned device is known (or an unplanned one matched the discovery rule).
    Discovered {
        /// Name.
        name: String,
        /// Template.
        template: String,
        /// Planned authentication.
        auth: String,
    },
    /// A device that is not in the plan was heard (reported once per device, and again if it
    /// is taken later). `taken`: the discovery rule (or the installer's
    /// [`Command::Adopt`]) added it to the run, and a `discovered` event follows; otherwise
    /// `reason` says why not.
    Unplanned {
        /// Signal strength of the loudest advert heard, dBm (`null` when the radio gives none).
        rssi: Option<i8>,
        /// OOB Information field of its beacon (MshPRT v1.1 §3.10.2, Table 3.55).
        oob_info: u16,
        /// URI hash of its beacon, hex (`null` when it has none).
        uri_hash: Option<String>,
        /// Whether it is now part of the run.
        taken: bool,
        /// Why it was taken or not, for people.
        reason: String,
    },
    /// The installer chose to ignore an unplanned device ([`Command::Ignore`]).
    Ignored,
    /// A device from an earlier run, from the store.
    Resumed {
        /// Its stage now.
        stage: Stage,
        /// Its address.
        address: Option<u16>,
    },
    /// Waiting for a slot.
    Scheduled,
    /// A provisioning attempt starts.
    ProvisioningStarted {
        /// Attempt (1 = first).
        attempt: u32,
    },
    /// The PB-ADV link (or GATT connection) is open.
    LinkOpened,
    /// The device's Capabilities arrived.
    Capabilities {
        /// Element count.
        elements: u8,
        /// Algorithms offered.
        algorithms: Vec<String>,
        /// Whether it offers its public key out of band.
        public_key_oob: bool,
        /// Static OOB offered.
        static_oob: bool,
        /// Output OOB size (0: none).
        output_oob_size: u8,
        /// Output OOB actions offered, by name (`Blink`, `Output Numeric`, ...;
        /// MshPRT v1.1 §5.4.1.2, Table 5.22).
        output_oob_actions: Vec<String>,
        /// Input OOB size (0: none).
        input_oob_size: u8,
        /// Input OOB actions offered, by name (`Push`, `Input Numeric`, ...;
        /// MshPRT v1.1 §5.4.1.2, Table 5.24).
        input_oob_actions: Vec<String>,
    },
    /// The device shows a value: the installer enters it ([`Command::AnswerOob`]).
    OobRequested {
        /// What the device does (`blink`, `numeric`, ...).
        action: String,
        /// Digits or characters.
        size: u8,
    },
    /// The installer enters this value on the device.
    OobDisplay {
        /// The value.
        value: String,
        /// How (`push`, `numeric`, ...).
        action: String,
    },
    /// The device's confirmation checked out (its Random matched its Confirmation).
    Authenticated {
        /// The method used.
        method: String,
    },
    /// The node is committed: device key and address are in the store.
    Provisioned {
        /// Primary address.
        address: u16,
        /// Element count.
        elements: u8,
    },
    /// Configuration from the template starts.
    ConfiguringStarted {
        /// Attempt.
        attempt: u32,
        /// Config requests to send.
        requests: usize,
    },
    /// Every template request answered Success.
    Configured,
    /// Composition Data is checked.
    VerifyingStarted,
    /// The device is done.
    Done {
        /// Per phase, ms.
        timings: PhaseTimings,
    },
    /// A phase failed and will be tried again after `backoff_ms`.
    Retrying {
        /// The phase.
        phase: Phase,
        /// Why it failed.
        reason: String,
        /// The next attempt's number.
        attempt: u32,
        /// The wait before it.
        backoff_ms: u64,
    },
    /// The device failed for good.
    Failed {
        /// The phase.
        phase: Phase,
        /// Why.
        reason: String,
    },
    /// The installer skipped the device.
    Skipped,
    /// The device is excluded from the network.
    Excluded,
    /// The installer asked the device to identify itself.
    Identify {
        /// What was done.
        how: String,
    },
    /// The run is paused: running sessions finish, nothing new starts.
    Paused,
    /// The run goes on.
    Unpaused,
    /// The run is stopping: running sessions are abandoned, nothing new starts.
    Stopping,
    /// The last event.
    Summary(Summary),
}

/// The final counts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Devices in the plan (and discovered).
    pub devices: usize,
    /// Done (this run or before).
    pub done: usize,
    /// Done before this run (nothing was sent to them).
    pub already_done: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped (or not reached before a stop).
    pub skipped: usize,
    /// Excluded.
    pub excluded: usize,
    /// Retries over all devices and phases.
    pub retries: u64,
    /// Engine time of the run, ms (virtual time on the simulated radio).
    pub time_ms: u64,
    /// Virtual time, ms, on the simulated radio; `null` otherwise.
    pub virtual_time_ms: Option<u64>,
    /// Wall time of the run, ms (filled in by the driver).
    pub wall_time_ms: u64,
    /// Whether the run was stopped.
    pub stopped: bool,
    /// A sentence for people.
    pub message: String,
}

/// What the installer (or a TUI) asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Start nothing new; running work finishes.
    Pause,
    /// Start again.
    Resume,
    /// Abandon running work and end the run (committed nodes stay committed).
    Stop,
    /// A failed or skipped device gets a new set of attempts (its phase from where it stood).
    Retry(DeviceUuid),
    /// Leave this device alone (its running session is abandoned).
    Skip(DeviceUuid),
    /// Exclude this node from the network (the driver marks it in the store).
    Exclude(DeviceUuid),
    /// Ask the device to identify itself (see [`Action::Identify`]).
    Identify(DeviceUuid),
    /// The value the installer read from the device (Output OOB).
    AnswerOob(DeviceUuid, String),
    /// Take an unplanned device that was heard ([`EventKind::Unplanned`]) into the run, with the
    /// plan's `[discovery]` template and authentication (even when the rule is not enabled).
    Adopt(DeviceUuid),
    /// Do not report or take this unplanned device again in this run.
    Ignore(DeviceUuid),
}

/// An unprovisioned device heard on the air: an Unprovisioned Device beacon (MshPRT v1.1
/// §3.10.2) or a PB-GATT advert with Mesh Provisioning Service data (MshPRT v1.1 §7.1.2.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    /// Its Device UUID.
    pub uuid: DeviceUuid,
    /// Signal strength, dBm, when the radio reports it.
    pub rssi: Option<i8>,
    /// OOB Information.
    pub oob_info: u16,
    /// URI Hash (beacons only, when present).
    pub uri_hash: Option<[u8; 4]>,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start provisioning this device (attempt `attempt`).
    Provision {
        /// The device.
        uuid: DeviceUuid,
        /// Attempt (1 = first).
        attempt: u32,
    },
    /// Apply the device's template to the node at `address`.
    Configure {
        /// The device.
        uuid: DeviceUuid,
        /// Its primary address.
        address: u16,
        /// Attempt.
        attempt: u32,
    },
    /// Read its Composition Data and check it against the plan.
    Verify {
        /// The device.
        uuid: DeviceUuid,
        /// Its primary address.
        address: u16,
    },
    /// Abandon whatever runs for this device (skip, stop, exclude).
    Cancel {
        /// The device.
        uuid: DeviceUuid,
    },
    /// Mark the node excluded in the store (its addresses are never reused).
    Exclude {
        /// The device.
        uuid: DeviceUuid,
    },
    /// Make the device identify itself: a device not yet provisioned gets an Attention
    /// Duration in its next Invite (MshPRT v1.1 §5.4.1.1); meshprov has no Health client yet,
    /// so a node already provisioned cannot be asked (the driver says so in an event).
    Identify {
        /// The device.
        uuid: DeviceUuid,
    },
    /// The installer's Output OOB answer for the device's running session.
    AnswerOob {
        /// The device.
        uuid: DeviceUuid,
        /// What the installer read.
        value: String,
    },
}

/// Limits and retry policy of the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Provisioning sessions at once.
    pub provision_limit: usize,
    /// Nodes being configured or verified at once.
    pub configure_limit: usize,
    /// Attempts after the first, per phase.
    pub retries: u32,
    /// First backoff (doubles with each retry of a phase).
    pub backoff: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            provision_limit: 16,
            configure_limit: 4,
            retries: 3,
            backoff: Duration::from_secs(2),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// A device handed to the engine: from the plan, and where the store says it stands.
#[derive(Clone, Debug)]
pub struct EngineDevice {
    /// The device.
    pub uuid: DeviceUuid,
    /// Name.
    pub name: String,
    /// Location.
    pub location: PlanLocation,
    /// Template name.
    pub template: String,
    /// Planned authentication (`cert`, ...).
    pub auth: String,
    /// From the store: `None` (not a node yet), or its address, element count and stage
    /// ([`Stage::Committed`] to configure, [`Stage::Done`], [`Stage::Excluded`]).
    pub stored: Option<(u16, u8, Stage)>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    devices: Vec<DeviceStatus>,
    index: BTreeMap<DeviceUuid, usize>,
    events: VecDeque<RolloutEvent>,
    actions: VecDeque<Action>,
    paused: bool,
    stopping: bool,
    retries: u64,
    already_done: usize,
    started: Instant,
    now: Instant,
    summarised: bool,
    /// Set by every change that could let [`Engine::poll_action`] start something; with
    /// `idle_until`, spares the scan of every device at instants where nothing can start.
    dirty: bool,
    idle_until: Option<Instant>,
    /// The plan's rule for unplanned devices.
    discovery: Option<Discovery>,
    /// Unplanned devices heard and not taken: what was heard, and whether it was reported.
    unplanned: BTreeMap<DeviceUuid, Heard>,
    /// Unplanned devices the installer ignores.
    ignored: BTreeSet<DeviceUuid>,
    /// When the radio last brought anything (any advertisement or GATT data), once the driver
    /// reports it ([`Engine::air_heard`]).
    last_heard: Option<Instant>,
}

fn display<S: serde::Serializer>(u: &DeviceUuid, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(u)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Engine {
    /// An engine for `devices` at `now`, with `config`. Devices the store already has start
    /// in their stored stage and are reported as `resumed`; the others as `discovered`.
    pub fn new(
        now: Instant,
        config: EngineConfig,
        devices: Vec<EngineDevice>,
        clock: &'static str,
    ) -> Self {
        let mut e = Self {
            config,
            devices: Vec::new(),
            index: BTreeMap::new(),
            events: VecDeque::new(),
            actions: VecDeque::new(),
            paused: false,
            stopping: false,
            retries: 0,
            already_done: 0,
            started: now,
            now,
            summarised: false,
            dirty: true,
            idle_until: None,
            discovery: None,
            unplanned: BTreeMap::new(),
            ignored: BTreeSet::new(),
            last_heard: None,
        };
        let already_done = devices
            .iter()
            .filter(|d| matches!(d.stored, Some((_, _, Stage::Done))))
            .count();
        e.already_done = already_done;
        e.emit(
            None,
            EventKind::Start {
                devices: devices.len(),
                already_done,
                clock,
            },
        );
        for d in devices {
            e.add(d);
        }
        e
    }

    /// Adds a device (an unplanned one the discovery rule took, for example).
    pub fn add(&mut self, d: EngineDevice) {
        if self.index.contains_key(&d.uuid) {
            return;
        }
        let now = self.now;
        let (stage, address, elements) = match d.stored {
            Some((a, n, s)) => (s, Some(a), Some(n)),
            None => (Stage::Scheduled, None, None),
        };
        let status = DeviceStatus {
            uuid: d.uuid,
            name: d.name.clone(),
            location: d.location,
            template: d.template.clone(),
            auth: d.auth.clone(),
            auth_used: None,
            stage,
            attempt: 0,
            stage_since_ms: self.t(),
            address,
            elements,
            last_error: None,
            failed_phase: None,
            timings: PhaseTimings::default(),
            retry_at_ms: None,
            transcript: Vec::new(),
            composition: None,
            resumed: d.stored.is_some(),
            entered: now,
            retry_at: None,
            phase_started: None,
            quiet_attempts: 0,
        };
        self.index.insert(d.uuid, self.devices.len());
        self.devices.push(status);
        self.dirty = true;
        match d.stored {
            Some(_) => self.emit(Some(d.uuid), EventKind::Resumed { stage, address }),
            None => {
                self.emit(
                    Some(d.uuid),
                    EventKind::Discovered {
                        name: d.name,
                        template: d.template,
                        auth: d.auth,
                    },
                );
                self.emit(Some(d.uuid), EventKind::Scheduled);
            }
        }
    }

    /// Sets the plan's discovery rule (`[discovery]`): which unplanned devices
    /// [`Engine::heard`] takes, and the template and authentication [`Command::Adopt`] gives.
    pub fn set_discovery(&mut self, rule: Discovery) {
        self.discovery = Some(rule);
    }

    /// Why the discovery rule does not take `h`, or `None` when it does.
    fn refusal(&self, h: &Heard) -> Option<String> {
        let Some(rule) = self.discovery.as_ref().filter(|r| r.enabled) else {
            return Some("not in the plan (no [discovery] rule enabled)".into());
        };
        if !h.uuid.0.starts_with(&rule.uuid_prefix) {
            return Some(format!(
                "UUID does not start with the rule's prefix {}",
                hex::encode(&rule.uuid_prefix)
            ));
        }
        if let Some(want) = rule.uri_hash
            && h.uri_hash != Some(want)
        {
            return Some(format!("URI hash is not the rule's {}", hex::encode(want)));
        }
        if let Some(min) = rule.min_rssi {
            match h.rssi {
                Some(r) if r >= min => {}
                Some(r) => {
                    return Some(format!(
                        "heard at {r} dBm, the rule wants {min} dBm or more"
                    ));
                }
                None => {
                    return Some(format!(
                        "the radio gives no RSSI and the rule wants {min} dBm or more"
                    ));
                }
            }
        }
        None
    }

    /// The radio brought something at `now` (any advertisement or GATT data). Drivers call
    /// it for everything they receive; a failed attempt during which nothing at all was heard
    /// (the adapter or the whole air was out) does not count against `policy.retries`
    /// ([`Engine::phase_failed`]). Without these calls every attempt counts.
    pub fn air_heard(&mut self, now: Instant) {
        if self.last_heard.is_none_or(|t| t < now) {
            self.last_heard = Some(now);
        }
    }

    /// A device was heard on the air. A planned (or ignored) device changes nothing. An
    /// unplanned one is reported ([`EventKind::Unplanned`], once, and again when it is heard
    /// louder) and, when the plan's discovery rule matches it, added to the run with the rule's
    /// template and authentication. Returns whether it was added now.
    pub fn heard(&mut self, now: Instant, h: Heard) -> bool {
        self.handle_timeout(now);
        if self.index.contains_key(&h.uuid) || self.ignored.contains(&h.uuid) {
            return false;
        }
        let louder = |old: &Heard| match (old.rssi, h.rssi) {
            (Some(a), Some(b)) => b > a,
            (None, Some(_)) => true,
            _ => false,
        };
        let report = match self.unplanned.get(&h.uuid) {
            None => true,
            Some(old) => louder(old) && self.discovery.as_ref().is_some_and(|r| r.enabled),
        };
        if !report {
            return false;
        }
        match self.refusal(&h) {
            Some(reason) => {
                let quiet = self.unplanned.contains_key(&h.uuid);
                let uuid = h.uuid;
                let ev = Self::unplanned_event(&h, false, reason);
                self.unplanned.insert(uuid, h);
                if !quiet {
                    self.emit(Some(uuid), ev);
                }
                false
            }
            None => {
                self.take(h, "matches the plan's [discovery] rule".into());
                true
            }
        }
    }

    fn unplanned_event(h: &Heard, taken: bool, reason: String) -> EventKind {
        EventKind::Unplanned {
            rssi: h.rssi,
            oob_info: h.oob_info,
            uri_hash: h.uri_hash.map(hex::encode),
            taken,
            reason,
        }
    }

    /// Adds an unplanned device to the run with the discovery rule's template and auth.
    fn take(&mut self, h: Heard, reason: String) {
        let Some(rule) = self.discovery.clone() else {
            return;
        };
        self.unplanned.remove(&h.uuid);
        let uuid = h.uuid;
        let ev = Self::unplanned_event(&h, true, reason);
        self.emit(Some(uuid), ev);
        let short = uuid.to_string();
        self.add(EngineDevice {
            uuid,
            name: format!("unplanned-{}", &short[..8.min(short.len())]),
            location: PlanLocation::default(),
            template: rule.template.clone(),
            auth: rule.auth.kind().to_string(),
            stored: None,
        });
    }

    /// Unplanned devices heard and neither taken nor ignored, loudest first.
    pub fn unplanned(&self) -> Vec<Heard> {
        let mut v: Vec<Heard> = self.unplanned.values().cloned().collect();
        v.sort_by_key(|h| std::cmp::Reverse(h.rssi.unwrap_or(i8::MIN)));
        v
    }

    fn t(&self) -> u64 {
        ms(self.now.saturating_duration_since(self.started))
    }

    fn emit(&mut self, uuid: Option<DeviceUuid>, kind: EventKind) {
        self.events.push_back(RolloutEvent {
            t_ms: self.t(),
            uuid: uuid.map(|u| u.to_string()),
            kind,
        });
    }

    fn set_stage(&mut self, i: usize, stage: Stage) {
        self.dirty = true;
        let t = self.t();
        let d = &mut self.devices[i];
        d.stage = stage;
        d.entered = self.now;
        d.stage_since_ms = t;
    }

    fn count(&self, stages: &[Stage]) -> usize {
        self.devices
            .iter()
            .filter(|d| stages.contains(&d.stage))
            .count()
    }

    /// Time passes (the engine's own timers are the backoffs; nothing fires by itself, this
    /// just moves the clock).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// When the engine next has something to start: the earliest backoff that ends, if a slot
    /// would be free for it.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.paused || self.stopping {
            return None;
        }
        self.devices
            .iter()
            .filter(|d| matches!(d.stage, Stage::Scheduled | Stage::Committed))
            .filter_map(|d| d.retry_at)
            .filter(|t| *t > self.now)
            .min()
    }

    /// The next thing the driver must do at `now`, if any.
    pub fn poll_action(&mut self, now: Instant) -> Option<Action> {
        self.handle_timeout(now);
        if let Some(a) = self.actions.pop_front() {
            return Some(a);
        }
        if self.paused || self.stopping {
            return None;
        }
        if !self.dirty && self.idle_until.is_none_or(|t| now < t) {
            return None;
        }
        let provisioning = self.count(&[Stage::Provisioning]);
        let configuring = self.count(&[Stage::Configuring, Stage::Verifying]);
        let ready = |d: &DeviceStatus| d.retry_at.is_none_or(|t| t <= now);
        // Nodes first: finishing a device frees the air sooner than starting another.
        if configuring < self.config.configure_limit
            && let Some(i) = self
                .devices
                .iter()
                .position(|d| d.stage == Stage::Committed && ready(d))
        {
            let attempt = self.begin(i, Phase::Configuring);
            let d = &self.devices[i];
            // Committed devices always have an address.
            let address = d.address.unwrap_or(0);
            return Some(Action::Configure {
                uuid: d.uuid,
                address,
                attempt,
            });
        }
        if provisioning < self.config.provision_limit
            && let Some(i) = self
                .devices
                .iter()
                .position(|d| d.stage == Stage::Scheduled && ready(d))
        {
            let attempt = self.begin(i, Phase::Provisioning);
            let uuid = self.devices[i].uuid;
            self.emit(Some(uuid), EventKind::ProvisioningStarted { attempt });
            return Some(Action::Provision { uuid, attempt });
        }
        // Nothing can start until a device changes stage or a backoff ends.
        self.dirty = false;
        self.idle_until = self
            .devices
            .iter()
            .filter(|d| matches!(d.stage, Stage::Scheduled | Stage::Committed))
            .filter_map(|d| d.retry_at)
            .filter(|t| *t > now)
            .min();
        None
    }

    fn begin(&mut self, i: usize, phase: Phase) -> u32 {
        let stage = match phase {
            Phase::Provisioning => Stage::Provisioning,
            Phase::Configuring => Stage::Configuring,
            Phase::Verifying => Stage::Verifying,
        };
        self.set_stage(i, stage);
        let d = &mut self.devices[i];
        d.retry_at = None;
        d.retry_at_ms = None;
        d.attempt += 1;
        d.phase_started = Some(self.now);
        d.attempt
    }

    fn end_phase(&mut self, i: usize, phase: Phase) {
        let now = self.now;
        let d = &mut self.devices[i];
        if let Some(t) = d.phase_started.take() {
            d.timings.add(phase, now.saturating_duration_since(t));
        }
    }

    fn find(&self, uuid: &DeviceUuid, stage: &[Stage]) -> Option<usize> {
        self.index
            .get(uuid)
            .copied()
            .filter(|&i| stage.contains(&self.devices[i].stage))
    }

    /// The link (or GATT connection) of `uuid`'s session is open.
    pub fn link_opened(&mut self, now: Instant, uuid: &DeviceUuid) {
        self.handle_timeout(now);
        if self.find(uuid, &[Stage::Provisioning]).is_some() {
            self.emit(Some(*uuid), EventKind::LinkOpened);
        }
    }

    /// `uuid`'s Capabilities arrived (reported as an event).
    pub fn capabilities(&mut self, now: Instant, uuid: &DeviceUuid, kind: EventKind) {
        self.handle_timeout(now);
        if let Some(i) = self.find(uuid, &[Stage::Provisioning]) {
            if let EventKind::Capabilities { elements, .. } = &kind {
                self.devices[i].elements = Some(*elements);
            }
            self.emit(Some(*uuid), kind);
        }
    }

    /// An installer-facing event of `uuid`'s session ([`EventKind::OobRequested`],
    /// [`EventKind::OobDisplay`], [`EventKind::Identify`]).
    pub fn notify(&mut self, now: Instant, uuid: &DeviceUuid, kind: EventKind) {
        self.handle_timeout(now);
        self.emit(Some(*uuid), kind);
    }

    /// The device authenticated with `method`.
    pub fn authenticated(&mut self, now: Instant, uuid: &DeviceUuid, method: &str) {
        self.handle_timeout(now);
        if let Some(i) = self.find(uuid, &[Stage::Provisioning]) {
            self.devices[i].auth_used = Some(method.to_string());
            self.emit(
                Some(*uuid),
                EventKind::Authenticated {
                    method: method.to_string(),
                },
            );
        }
    }

    /// The provisioning PDUs of `uuid`'s session (for the snapshot).
    pub fn set_transcript(&mut self, uuid: &DeviceUuid, transcript: Vec<String>) {
        if let Some(&i) = self.index.get(uuid) {
            self.devices[i].transcript = transcript;
        }
    }

    /// `uuid`'s Composition Data as one line (for the snapshot).
    pub fn set_composition(&mut self, uuid: &DeviceUuid, composition: String) {
        if let Some(&i) = self.index.get(uuid) {
            self.devices[i].composition = Some(composition);
        }
    }

    /// `uuid` is committed at `address` with `elements` elements (its Provisioning Complete
    /// may or may not have come: the node is in the store either way).
    pub fn provisioned(&mut self, now: Instant, uuid: &DeviceUuid, address: u16, elements: u8) {
        self.handle_timeout(now);
        let Some(i) = self.find(uuid, &[Stage::Provisioning]) else {
            return;
        };
        self.end_phase(i, Phase::Provisioning);
        let d = &mut self.devices[i];
        d.address = Some(address);
        d.elements = Some(elements);
        d.attempt = 0;
        d.quiet_attempts = 0;
        self.set_stage(i, Stage::Committed);
        self.emit(Some(*uuid), EventKind::Provisioned { address, elements });
    }

    /// `uuid`, whose node was committed but never confirmed (no Provisioning Complete seen),
    /// is heard as an unprovisioned device again: it never took its Provisioning Data (or was
    /// reset since), and the driver has voided the commit. While it waits between
    /// configuration attempts, or after its configuration failed, it goes back to provisioning
    /// with fresh attempts (a `retrying` event with `reason`). Returns whether it did; in any
    /// other stage (a job under way, done, skipped, excluded) nothing changes.
    pub fn unprovisioned_again(&mut self, now: Instant, uuid: &DeviceUuid, reason: String) -> bool {
        self.handle_timeout(now);
        let Some(i) = self.find(uuid, &[Stage::Committed, Stage::Failed]) else {
            return false;
        };
        if self.devices[i].address.is_none() {
            return false;
        }
        self.set_stage(i, Stage::Scheduled);
        let d = &mut self.devices[i];
        d.address = None;
        d.elements = None;
        d.attempt = 0;
        d.quiet_attempts = 0;
        d.retry_at = None;
        d.retry_at_ms = None;
        d.failed_phase = None;
        d.last_error = Some(reason.clone());
        self.retries += 1;
        self.emit(
            Some(*uuid),
            EventKind::Retrying {
                phase: Phase::Provisioning,
                reason,
                attempt: 1,
                backoff_ms: 0,
            },
        );
        true
    }

    /// The configuration of `uuid` starts with `requests` Config requests.
    pub fn configuring(&mut self, now: Instant, uuid: &DeviceUuid, requests: usize) {
        self.handle_timeout(now);
        if let Some(i) = self.find(uuid, &[Stage::Configuring]) {
            let attempt = self.devices[i].attempt;
            self.emit(
                Some(*uuid),
                EventKind::ConfiguringStarted { attempt, requests },
            );
        }
    }

    /// Every template request of `uuid` answered Success: verification is next (an
    /// [`Action::Verify`] follows at once).
    pub fn configured(&mut self, now: Instant, uuid: &DeviceUuid) {
        self.handle_timeout(now);
        let Some(i) = self.find(uuid, &[Stage::Configuring]) else {
            return;
        };
        self.end_phase(i, Phase::Configuring);
        self.emit(Some(*uuid), EventKind::Configured);
        self.set_stage(i, Stage::Verifying);
        self.devices[i].phase_started = Some(self.now);
        self.emit(Some(*uuid), EventKind::VerifyingStarted);
        let address = self.devices[i].address.unwrap_or(0);
        self.actions.push_back(Action::Verify {
            uuid: *uuid,
            address,
        });
    }

    /// `uuid`'s Composition Data matched the plan: it is done.
    pub fn verified(&mut self, now: Instant, uuid: &DeviceUuid) {
        self.handle_timeout(now);
        let Some(i) = self.find(uuid, &[Stage::Verifying]) else {
            return;
        };
        self.end_phase(i, Phase::Verifying);
        self.set_stage(i, Stage::Done);
        let timings = self.devices[i].timings.clone();
        self.emit(Some(*uuid), EventKind::Done { timings });
    }

    /// A phase of `uuid` failed with `reason`. `retryable` failures (time-outs, a lost link)
    /// are tried again after a backoff while retries remain; the others fail the device at
    /// once. Other devices are not affected.
    pub fn phase_failed(
        &mut self,
        now: Instant,
        uuid: &DeviceUuid,
        phase: Phase,
        reason: String,
        retryable: bool,
    ) {
        self.handle_timeout(now);
        let stage = match phase {
            Phase::Provisioning => Stage::Provisioning,
            Phase::Configuring => Stage::Configuring,
            Phase::Verifying => Stage::Verifying,
        };
        let Some(i) = self.find(uuid, &[stage]) else {
            return;
        };
        // Nothing heard on the radio since this attempt began, though it was heard within
        // `backoff_max` before: the radio (or the whole air) went out, not just this device:
        // the attempt does not count, up to `retries` such attempts. An air that was already
        // silent (only dead devices left) counts as usual, so they still fail in time.
        let quiet = retryable
            && self.devices[i].quiet_attempts < self.config.retries
            && match (self.last_heard, self.devices[i].phase_started) {
                (Some(heard), Some(began)) => {
                    heard < began && heard + self.config.backoff_max >= began
                }
                _ => false,
            };
        self.end_phase(i, phase);
        let reason = if quiet {
            format!(
                "{reason}; nothing was heard on the radio during this attempt, so it does not count against policy.retries"
            )
        } else {
            reason
        };
        self.devices[i].last_error = Some(reason.clone());
        if quiet {
            let d = &mut self.devices[i];
            d.quiet_attempts += 1;
            d.attempt = d.attempt.saturating_sub(1);
        }
        let attempt = self.devices[i].attempt;
        if retryable && attempt <= self.config.retries && !self.stopping {
            let tries = attempt + self.devices[i].quiet_attempts;
            let shift = tries.saturating_sub(1).min(20);
            let backoff = self
                .config
                .backoff
                .saturating_mul(1u32 << shift)
                .min(self.config.backoff_max);
            let back = match phase {
                Phase::Provisioning => Stage::Scheduled,
                // A node retries its whole configuration: every request is idempotent.
                Phase::Configuring | Phase::Verifying => Stage::Committed,
            };
            self.set_stage(i, back);
            let at = self.now + backoff;
            let t = ms(at.saturating_duration_since(self.started));
            let d = &mut self.devices[i];
            d.retry_at = Some(at);
            d.retry_at_ms = Some(t);
            self.retries += 1;
            self.emit(
                Some(*uuid),
                EventKind::Retrying {
                    phase,
                    reason,
                    attempt: attempt + 1,
                    backoff_ms: ms(backoff),
                },
            );
        } else {
            self.set_stage(i, Stage::Failed);
            self.devices[i].failed_phase = Some(phase);
            self.emit(Some(*uuid), EventKind::Failed { phase, reason });
        }
    }

    /// Applies an installer's command. Returns an error for a command that names an unknown
    /// device or does not apply to its stage.
    pub fn command(&mut self, now: Instant, command: Command) -> Result<(), String> {
        self.handle_timeout(now);
        self.dirty = true;
        let lookup = |e: &Self, u: &DeviceUuid| {
            e.index
                .get(u)
                .copied()
                .ok_or_else(|| format!("device {u} is not in this rollout"))
        };
        match command {
            Command::Pause => {
                if !self.paused {
                    self.paused = true;
                    self.emit(None, EventKind::Paused);
                }
            }
            Command::Resume => {
                if self.paused {
                    self.paused = false;
                    self.emit(None, EventKind::Unpaused);
                }
            }
            Command::Stop => {
                if !self.stopping {
                    self.stopping = true;
                    self.emit(None, EventKind::Stopping);
                    for i in 0..self.devices.len() {
                        let d = &self.devices[i];
                        let uuid = d.uuid;
                        match d.stage {
                            Stage::Provisioning | Stage::Configuring | Stage::Verifying => {
                                self.actions.push_back(Action::Cancel { uuid });
                            }
                            _ => {}
                        }
                    }
                }
            }
            Command::Retry(u) => {
                let i = lookup(self, &u)?;
                let d = &self.devices[i];
                let back = match d.stage {
                    Stage::Failed | Stage::Skipped => {
                        if d.address.is_some() {
                            Stage::Committed
                        } else {
                            Stage::Scheduled
                        }
                    }
                    Stage::Scheduled | Stage::Committed => d.stage,
                    s => return Err(format!("device {u} is {s:?}: nothing to retry")),
                };
                self.set_stage(i, back);
                let d = &mut self.devices[i];
                d.attempt = 0;
                d.quiet_attempts = 0;
                d.retry_at = None;
                d.retry_at_ms = None;
                d.failed_phase = None;
                self.emit(Some(u), EventKind::Scheduled);
            }
            Command::Skip(u) => {
                let i = lookup(self, &u)?;
                let stage = self.devices[i].stage;
                if stage.is_final() {
                    return Err(format!("device {u} is already {stage:?}"));
                }
                if matches!(
                    stage,
                    Stage::Provisioning | Stage::Configuring | Stage::Verifying
                ) {
                    self.actions.push_back(Action::Cancel { uuid: u });
                }
                self.set_stage(i, Stage::Skipped);
                self.emit(Some(u), EventKind::Skipped);
            }
            Command::Exclude(u) => {
                let i = lookup(self, &u)?;
                let stage = self.devices[i].stage;
                if stage == Stage::Excluded {
                    return Ok(());
                }
                if matches!(
                    stage,
                    Stage::Provisioning | Stage::Configuring | Stage::Verifying
                ) {
                    self.actions.push_back(Action::Cancel { uuid: u });
                }
                if self.devices[i].address.is_some() {
                    self.actions.push_back(Action::Exclude { uuid: u });
                }
                self.set_stage(i, Stage::Excluded);
                self.emit(Some(u), EventKind::Excluded);
            }
            Command::Identify(u) => {
                lookup(self, &u)?;
                self.actions.push_back(Action::Identify { uuid: u });
            }
            Command::AnswerOob(u, value) => {
                let i = lookup(self, &u)?;
                if self.devices[i].stage != Stage::Provisioning {
                    return Err(format!(
                        "device {u} has no session waiting for an OOB value"
                    ));
                }
                self.actions.push_back(Action::AnswerOob { uuid: u, value });
            }
            Command::Adopt(u) => {
                if self.index.contains_key(&u) {
                    return Err(format!("device {u} is already in this rollout"));
                }
                let Some(h) = self.unplanned.get(&u).cloned() else {
                    return Err(format!("device {u} has not been heard in this run"));
                };
                if self
                    .discovery
                    .as_ref()
                    .is_none_or(|r| r.template.is_empty())
                {
                    return Err(format!(
                        "the plan has no [discovery] template to give device {u}: add a [discovery] section with template and auth, or add the device as a [[device]]"
                    ));
                }
                self.take(h, "added by the installer".into());
            }
            Command::Ignore(u) => {
                if self.index.contains_key(&u) {
                    return Err(format!(
                        "device {u} is in this rollout: skip or exclude it instead"
                    ));
                }
                self.unplanned.remove(&u);
                if self.ignored.insert(u) {
                    self.emit(Some(u), EventKind::Ignored);
                }
            }
        }
        Ok(())
    }

    /// A running phase was abandoned by the driver after [`Action::Cancel`] (stop): the
    /// device is left where a new run picks it up (scheduled, or committed).
    pub fn cancelled(&mut self, now: Instant, uuid: &DeviceUuid) {
        self.handle_timeout(now);
        let Some(i) = self.find(
            uuid,
            &[Stage::Provisioning, Stage::Configuring, Stage::Verifying],
        ) else {
            return;
        };
        let phase = match self.devices[i].stage {
            Stage::Provisioning => Phase::Provisioning,
            Stage::Configuring => Phase::Configuring,
            _ => Phase::Verifying,
        };
        self.end_phase(i, phase);
        let back = if self.devices[i].address.is_some() {
            Stage::Committed
        } else {
            Stage::Scheduled
        };
        self.set_stage(i, back);
    }

    /// Whether the run is over: every device is final, or a stop has no work left running.
    pub fn is_finished(&self) -> bool {
        if self.stopping {
            return self.actions.is_empty()
                && self.count(&[Stage::Provisioning, Stage::Configuring, Stage::Verifying]) == 0;
        }
        self.actions.is_empty() && self.devices.iter().all(|d| d.stage.is_final())
    }

    /// Whether the run is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<RolloutEvent> {
        self.events.pop_front()
    }

    /// Every device's status, in plan order (then discovered ones).
    pub fn snapshot(&self, now: Instant) -> Vec<DeviceStatus> {
        let _ = now;
        self.devices.clone()
    }

    /// One device's status.
    pub fn status(&self, uuid: &DeviceUuid) -> Option<&DeviceStatus> {
        self.index.get(uuid).map(|&i| &self.devices[i])
    }

    /// The counts so far; `virtual_time` on the simulated radio. After the first call at the
    /// end of a run, the summary is also queued as the last event.
    pub fn summary(
        &mut self,
        now: Instant,
        virtual_time: Option<Duration>,
        wall: Duration,
    ) -> Summary {
        self.handle_timeout(now);
        let c = |s: Stage| self.devices.iter().filter(|d| d.stage == s).count();
        // Devices not finished when a stop ended the run count as skipped.
        let unfinished = self.devices.iter().filter(|d| !d.stage.is_final()).count();
        let mut s = Summary {
            devices: self.devices.len(),
            done: c(Stage::Done),
            already_done: self.already_done,
            failed: c(Stage::Failed),
            skipped: c(Stage::Skipped) + unfinished,
            excluded: c(Stage::Excluded),
            retries: self.retries,
            time_ms: self.t(),
            virtual_time_ms: virtual_time.map(ms),
            wall_time_ms: ms(wall),
            stopped: self.stopping,
            message: String::new(),
        };
        s.message = if s.devices > 0 && s.already_done == s.devices {
            format!(
                "nothing to do: all {} planned devices were already done in the store",
                s.devices
            )
        } else if s.failed == 0 && s.skipped == 0 && s.excluded == 0 {
            format!("all {} devices done", s.devices)
        } else {
            format!(
                "{} of {} devices done, {} failed, {} skipped, {} excluded{}",
                s.done,
                s.devices,
                s.failed,
                s.skipped,
                s.excluded,
                if s.stopped { " (stopped)" } else { "" }
            )
        };
        if !self.summarised {
            self.summarised = true;
            self.emit(None, EventKind::Summary(s.clone()));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid(i: u8) -> DeviceUuid {
        let mut b = [0u8; 16];
        b[15] = i;
        DeviceUuid(b)
    }

    fn dev(i: u8) -> EngineDevice {
        EngineDevice {
            uuid: uuid(i),
            name: format!("d{i}"),
            location: PlanLocation::default(),
            template: "t".into(),
            auth: "static".into(),
            stored: None,
        }
    }

    fn engine(n: u8, config: EngineConfig) -> Engine {
        Engine::new(Instant::ZERO, config, (0..n).map(dev).collect(), "virtual")
    }

    fn drain(e: &mut Engine, now: Instant) -> Vec<Action> {
        std::iter::from_fn(|| e.poll_action(now)).collect()
    }

    fn events(e: &mut Engine) -> Vec<EventKind> {
        std::iter::from_fn(|| e.poll_event())
            .map(|e| e.kind)
            .collect()
    }

    #[test]
    fn schedules_within_the_limits() {
        let cfg = EngineConfig {
            provision_limit: 3,
            configure_limit: 2,
            ..EngineConfig::default()
        };
        let mut e = engine(10, cfg);
        let t0 = Instant::ZERO;
        let a = drain(&mut e, t0);
        assert_eq!(a.len(), 3, "{a:?}");
        assert!(
            a.iter()
                .all(|a| matches!(a, Action::Provision { attempt: 1, .. }))
        );
        // Three provisioned: two start configuring (limit 2), and three more provisioning.
        for i in 0..3 {
            e.provisioned(t0, &uuid(i), 0x10 + u16::from(i), 1);
        }
        let a = drain(&mut e, t0);
        let conf = a
            .iter()
            .filter(|a| matches!(a, Action::Configure { .. }))
            .count();
        let prov = a
            .iter()
            .filter(|a| matches!(a, Action::Provision { .. }))
            .count();
        assert_eq!((conf, prov), (2, 3), "{a:?}");
        assert_eq!(e.count(&[Stage::Committed]), 1);
    }

    #[test]
    fn retries_with_doubling_backoff_then_fails() {
        let cfg = EngineConfig {
            provision_limit: 1,
            retries: 2,
            backoff: Duration::from_secs(1),
            ..EngineConfig::default()
        };
        let mut e = engine(1, cfg);
        let u = uuid(0);
        let mut now = Instant::ZERO;
        let mut waits = Vec::new();
        for attempt in 1..=3 {
            let a = drain(&mut e, now);
            assert_eq!(a, vec![Action::Provision { uuid: u, attempt }]);
            e.phase_failed(now, &u, Phase::Provisioning, "timeout".into(), true);
            if attempt < 3 {
                // Nothing until the backoff ends.
                assert!(drain(&mut e, now).is_empty());
                let t = e.poll_timeout().expect("a backoff");
                waits.push(t.saturating_duration_since(now));
                now = t;
            }
        }
        assert_eq!(waits, vec![Duration::from_secs(1), Duration::from_secs(2)]);
        assert_eq!(e.status(&u).map(|s| s.stage), Some(Stage::Failed));
        assert_eq!(
            e.status(&u).and_then(|s| s.failed_phase),
            Some(Phase::Provisioning)
        );
        assert!(e.is_finished());
        let ev = events(&mut e);
        assert_eq!(
            ev.iter()
                .filter(|k| matches!(k, EventKind::Retrying { .. }))
                .count(),
            2
        );
        assert!(matches!(ev.last(), Some(EventKind::Failed { .. })));
    }

    /// Runs one device's provisioning attempts from 10 s, the radio last heard at
    /// `heard_before` (`None`: the driver never reports the radio): each `heard` entry says
    /// whether the radio brought anything during that attempt. Returns the Provision actions'
    /// attempt numbers and the device's final stage.
    fn attempts_with_radio(
        cfg: EngineConfig,
        heard_before: Option<Instant>,
        heard: &[bool],
    ) -> (Vec<u32>, Stage, Engine) {
        let mut e = engine(1, cfg);
        let u = uuid(0);
        let mut now = Instant::from_millis(10_000);
        if let Some(t) = heard_before {
            e.air_heard(t);
        }
        let mut numbers = Vec::new();
        for &h in heard {
            let a = drain(&mut e, now);
            let Some(Action::Provision { attempt, .. }) = a.first() else {
                break;
            };
            numbers.push(*attempt);
            if h {
                e.air_heard(now + Duration::from_secs(1));
            }
            now += Duration::from_secs(5);
            e.phase_failed(now, &u, Phase::Provisioning, "timeout".into(), true);
            if let Some(t) = e.poll_timeout() {
                now = t;
            }
        }
        let stage = e.status(&u).map(|s| s.stage).unwrap();
        (numbers, stage, e)
    }

    #[test]
    fn an_attempt_during_which_the_radio_heard_nothing_does_not_count() {
        let cfg = EngineConfig {
            provision_limit: 1,
            retries: 2,
            backoff: Duration::from_secs(1),
            ..EngineConfig::default()
        };
        // Attempt 1 heard the air; 2 and 3 ran in a blackout; then 2 and 3 again, heard.
        let (numbers, stage, mut e) =
            attempts_with_radio(cfg.clone(), BEACON, &[true, false, false, true, true, true]);
        assert_eq!(numbers, vec![1, 2, 2, 2, 3]);
        assert_eq!(stage, Stage::Failed);
        let quiet = events(&mut e)
            .into_iter()
            .filter(|k| {
                matches!(k, EventKind::Retrying { reason, .. }
                    if reason.contains("nothing was heard on the radio"))
            })
            .count();
        assert_eq!(quiet, 2, "the reason says why the attempt did not count");
        // Every attempt heard something: the usual three.
        let (numbers, stage, _) = attempts_with_radio(cfg.clone(), BEACON, &[true; 6]);
        assert_eq!((numbers, stage), (vec![1, 2, 3], Stage::Failed));
        // A radio that stays silent: at most `retries` attempts do not count.
        let (numbers, stage, _) = attempts_with_radio(cfg, BEACON, &[false; 8]);
        assert_eq!((numbers, stage), (vec![1, 1, 1, 2, 3], Stage::Failed));
    }

    /// The radio worked just before the first attempt (a beacon at 9 s).
    const BEACON: Option<Instant> = Some(Instant::from_millis(9_000));

    #[test]
    fn an_air_silent_for_longer_than_backoff_max_counts_as_usual() {
        // Only dead devices left: nothing has been heard for longer than backoff_max before
        // the attempts began, so their failures count and the device fails in time.
        let cfg = EngineConfig {
            provision_limit: 1,
            retries: 2,
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_millis(500),
            ..EngineConfig::default()
        };
        let (numbers, stage, _) = attempts_with_radio(cfg, BEACON, &[false; 6]);
        assert_eq!((numbers, stage), (vec![1, 2, 3], Stage::Failed));
    }

    #[test]
    fn without_radio_reports_every_attempt_counts() {
        let cfg = EngineConfig {
            provision_limit: 1,
            retries: 2,
            backoff: Duration::from_secs(1),
            ..EngineConfig::default()
        };
        let (numbers, stage, _) = attempts_with_radio(cfg, None, &[false; 6]);
        assert_eq!((numbers, stage), (vec![1, 2, 3], Stage::Failed));
    }

    #[test]
    fn a_device_unprovisioned_again_goes_back_to_provisioning_with_fresh_attempts() {
        let cfg = EngineConfig {
            provision_limit: 1,
            configure_limit: 1,
            retries: 1,
            ..EngineConfig::default()
        };
        let mut e = engine(1, cfg);
        let u = uuid(0);
        let now = Instant::ZERO;
        let why = || "beacons again".to_string();
        // Not provisioned yet: nothing to undo.
        assert_eq!(drain(&mut e, now).len(), 1);
        assert!(!e.unprovisioned_again(now, &u, why()), "provisioning");
        e.provisioned(now, &u, 0x10, 2);
        // Configuring (a job under way): left alone.
        assert!(matches!(
            drain(&mut e, now).as_slice(),
            [Action::Configure { .. }]
        ));
        assert!(!e.unprovisioned_again(now, &u, why()), "configuring");
        // Its configuration failed for good: back to provisioning, fresh attempts.
        e.phase_failed(now, &u, Phase::Configuring, "no answer".into(), true);
        let t = e.poll_timeout().unwrap();
        assert!(matches!(
            drain(&mut e, t).as_slice(),
            [Action::Configure { .. }]
        ));
        e.phase_failed(t, &u, Phase::Configuring, "no answer".into(), true);
        assert_eq!(e.status(&u).map(|s| s.stage), Some(Stage::Failed));
        let _ = events(&mut e);
        assert!(e.unprovisioned_again(t, &u, why()));
        let s = e.status(&u).unwrap();
        assert_eq!((s.stage, s.address, s.attempt), (Stage::Scheduled, None, 0));
        assert_eq!(s.failed_phase, None);
        assert!(matches!(
            events(&mut e).as_slice(),
            [EventKind::Retrying {
                phase: Phase::Provisioning,
                attempt: 1,
                ..
            }]
        ));
        assert_eq!(
            drain(&mut e, t),
            vec![Action::Provision {
                uuid: u,
                attempt: 1
            }]
        );
        // Done: a beacon cannot be its (nothing changes).
        e.provisioned(t, &u, 0x20, 2);
        let _ = drain(&mut e, t);
        e.configured(t, &u);
        assert!(!e.unprovisioned_again(t, &u, why()), "verifying");
    }

    #[test]
    fn a_permanent_failure_is_not_retried_and_does_not_stop_the_others() {
        let mut e = engine(2, EngineConfig::default());
        let now = Instant::ZERO;
        assert_eq!(drain(&mut e, now).len(), 2);
        e.phase_failed(
            now,
            &uuid(0),
            Phase::Provisioning,
            "wrong OOB".into(),
            false,
        );
        assert_eq!(e.status(&uuid(0)).map(|s| s.stage), Some(Stage::Failed));
        e.provisioned(now, &uuid(1), 5, 2);
        assert_eq!(
            drain(&mut e, now),
            vec![Action::Configure {
                uuid: uuid(1),
                address: 5,
                attempt: 1
            }]
        );
        e.configured(now, &uuid(1));
        assert_eq!(
            drain(&mut e, now),
            vec![Action::Verify {
                uuid: uuid(1),
                address: 5
            }]
        );
        e.verified(now + Duration::from_secs(1), &uuid(1));
        assert!(e.is_finished());
        let s = e.summary(now, None, Duration::ZERO);
        assert_eq!((s.done, s.failed), (1, 1));
    }

    #[test]
    fn configuration_failures_retry_from_committed_not_from_provisioning() {
        let mut e = engine(
            1,
            EngineConfig {
                backoff: Duration::ZERO,
                ..EngineConfig::default()
            },
        );
        let now = Instant::ZERO;
        drain(&mut e, now);
        e.provisioned(now, &uuid(0), 7, 1);
        drain(&mut e, now);
        e.phase_failed(now, &uuid(0), Phase::Configuring, "no answer".into(), true);
        assert_eq!(
            drain(&mut e, now),
            vec![Action::Configure {
                uuid: uuid(0),
                address: 7,
                attempt: 2
            }]
        );
    }

    #[test]
    fn pause_resume_and_stop() {
        let mut e = engine(
            4,
            EngineConfig {
                provision_limit: 1,
                ..EngineConfig::default()
            },
        );
        let now = Instant::ZERO;
        assert_eq!(drain(&mut e, now).len(), 1);
        e.command(now, Command::Pause).unwrap();
        e.provisioned(now, &uuid(0), 1, 1);
        assert!(drain(&mut e, now).is_empty(), "paused: nothing new starts");
        e.command(now, Command::Resume).unwrap();
        let a = drain(&mut e, now);
        assert_eq!(a.len(), 2, "{a:?}");
        e.command(now, Command::Stop).unwrap();
        let a = drain(&mut e, now);
        assert_eq!(
            a,
            vec![
                Action::Cancel { uuid: uuid(0) },
                Action::Cancel { uuid: uuid(1) }
            ]
        );
        assert!(!e.is_finished());
        e.cancelled(now, &uuid(0));
        e.cancelled(now, &uuid(1));
        assert!(e.is_finished());
        assert_eq!(e.status(&uuid(0)).map(|s| s.stage), Some(Stage::Committed));
        assert_eq!(e.status(&uuid(1)).map(|s| s.stage), Some(Stage::Scheduled));
        let s = e.summary(now, None, Duration::ZERO);
        assert!(s.stopped);
        assert_eq!(s.skipped, 4);
    }

    #[test]
    fn skip_exclude_retry_commands() {
        let mut e = engine(
            3,
            EngineConfig {
                retries: 0,
                ..EngineConfig::default()
            },
        );
        let now = Instant::ZERO;
        drain(&mut e, now);
        e.command(now, Command::Skip(uuid(0))).unwrap();
        assert_eq!(drain(&mut e, now), vec![Action::Cancel { uuid: uuid(0) }]);
        e.provisioned(now, &uuid(1), 9, 1);
        e.command(now, Command::Exclude(uuid(1))).unwrap();
        assert_eq!(drain(&mut e, now), vec![Action::Exclude { uuid: uuid(1) }]);
        e.phase_failed(now, &uuid(2), Phase::Provisioning, "timeout".into(), true);
        assert_eq!(e.status(&uuid(2)).map(|s| s.stage), Some(Stage::Failed));
        e.command(now, Command::Retry(uuid(2))).unwrap();
        assert_eq!(
            drain(&mut e, now),
            vec![Action::Provision {
                uuid: uuid(2),
                attempt: 1
            }]
        );
        assert!(e.command(now, Command::Retry(uuid(9))).is_err());
        assert!(e.command(now, Command::Skip(uuid(0))).is_err());
    }

    #[test]
    fn resumed_devices_are_not_provisioned_again_and_a_finished_plan_does_nothing() {
        let mut devs: Vec<EngineDevice> = (0..3).map(dev).collect();
        devs[0].stored = Some((1, 1, Stage::Done));
        devs[1].stored = Some((2, 1, Stage::Committed));
        let mut e = Engine::new(Instant::ZERO, EngineConfig::default(), devs, "virtual");
        let a = drain(&mut e, Instant::ZERO);
        assert_eq!(
            a,
            vec![
                Action::Configure {
                    uuid: uuid(1),
                    address: 2,
                    attempt: 1
                },
                Action::Provision {
                    uuid: uuid(2),
                    attempt: 1
                },
            ]
        );
        let mut devs: Vec<EngineDevice> = (0..2).map(dev).collect();
        for d in &mut devs {
            d.stored = Some((1, 1, Stage::Done));
        }
        let mut e = Engine::new(Instant::ZERO, EngineConfig::default(), devs, "virtual");
        assert!(drain(&mut e, Instant::ZERO).is_empty());
        assert!(e.is_finished());
        let s = e.summary(Instant::ZERO, None, Duration::ZERO);
        assert!(s.message.starts_with("nothing to do"), "{}", s.message);
    }

    #[test]
    fn events_serialise_as_json_lines() {
        let ev = RolloutEvent {
            t_ms: 12,
            uuid: Some(uuid(1).to_string()),
            kind: EventKind::Failed {
                phase: Phase::Configuring,
                reason: "x".into(),
            },
        };
        let j = serde_json::to_string(&ev).unwrap();
        assert_eq!(
            j,
            format!(
                r#"{{"t_ms":12,"uuid":"{}","event":"failed","phase":"configuring","reason":"x"}}"#,
                uuid(1)
            )
        );
    }

    fn rule(enabled: bool) -> Discovery {
        Discovery {
            enabled,
            uuid_prefix: vec![0xab],
            uri_hash: None,
            min_rssi: Some(-70),
            template: "light".into(),
            auth: crate::rollout::plan::AuthMethod::Output,
        }
    }

    fn heard(first: u8, rssi: i8) -> Heard {
        let mut b = [0u8; 16];
        b[0] = first;
        b[15] = 0x77;
        Heard {
            uuid: DeviceUuid(b),
            rssi: Some(rssi),
            oob_info: 0x0020,
            uri_hash: None,
        }
    }

    #[test]
    fn discovery_rule_takes_matching_devices_only() {
        let mut e = engine(1, EngineConfig::default());
        e.set_discovery(rule(true));
        events(&mut e);
        // A planned device heard: nothing.
        assert!(!e.heard(
            Instant::ZERO,
            Heard {
                uuid: uuid(0),
                ..heard(0xab, -40)
            }
        ));
        assert!(events(&mut e).is_empty());
        // Wrong prefix: reported, not taken, and only once.
        assert!(!e.heard(Instant::ZERO, heard(0x01, -40)));
        assert!(!e.heard(Instant::ZERO, heard(0x01, -40)));
        let ev = events(&mut e);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert!(
            matches!(&ev[0], EventKind::Unplanned { taken: false, reason, .. } if reason.contains("prefix"))
        );
        // Right prefix but too quiet; then heard louder: taken and scheduled.
        assert!(!e.heard(Instant::ZERO, heard(0xab, -80)));
        assert!(
            matches!(&events(&mut e)[0], EventKind::Unplanned { taken: false, reason, .. } if reason.contains("-80 dBm"))
        );
        assert_eq!(e.unplanned().len(), 2);
        assert!(e.heard(Instant::ZERO, heard(0xab, -60)));
        let ev = events(&mut e);
        assert!(
            matches!(&ev[0], EventKind::Unplanned { taken: true, .. }),
            "{ev:?}"
        );
        assert!(
            matches!(&ev[1], EventKind::Discovered { template, auth, .. } if template == "light" && auth == "output")
        );
        assert!(matches!(ev[2], EventKind::Scheduled));
        let u = heard(0xab, -60).uuid;
        assert_eq!(e.status(&u).map(|d| d.stage), Some(Stage::Scheduled));
        assert_eq!(e.unplanned().len(), 1);
        // Heard again: already in the run.
        assert!(!e.heard(Instant::ZERO, heard(0xab, -30)));
        let actions = drain(&mut e, Instant::ZERO);
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Provision { uuid, .. } if *uuid == u))
        );
    }

    #[test]
    fn installer_adopts_or_ignores_unplanned_devices() {
        let mut e = engine(1, EngineConfig::default());
        let other = heard(0x01, -50);
        // Without any [discovery] section, adopting is refused with what to do.
        assert!(!e.heard(Instant::ZERO, other.clone()));
        let err = e
            .command(Instant::ZERO, Command::Adopt(other.uuid))
            .unwrap_err();
        assert!(err.contains("[discovery]"), "{err}");
        // A disabled rule still gives the template the installer's Adopt uses.
        e.set_discovery(rule(false));
        e.command(Instant::ZERO, Command::Adopt(other.uuid))
            .unwrap();
        assert_eq!(
            e.status(&other.uuid).map(|d| d.template.as_str()),
            Some("light")
        );
        assert!(
            e.command(Instant::ZERO, Command::Adopt(other.uuid))
                .is_err()
        );
        assert!(
            e.command(Instant::ZERO, Command::Ignore(other.uuid))
                .is_err()
        );
        // Never heard: refused. Ignored: never reported again.
        let third = heard(0x02, -50);
        assert!(
            e.command(Instant::ZERO, Command::Adopt(third.uuid))
                .is_err()
        );
        e.heard(Instant::ZERO, third.clone());
        e.command(Instant::ZERO, Command::Ignore(third.uuid))
            .unwrap();
        events(&mut e);
        assert!(!e.heard(Instant::ZERO, heard(0x02, -20)));
        assert!(events(&mut e).is_empty());
        assert!(e.unplanned().is_empty());
    }
}
