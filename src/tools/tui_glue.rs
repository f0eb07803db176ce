//! The glue between the rollout engine ([`crate::rollout`]) and the terminal UI
//! (`meshprov-tui`, which knows nothing of the protocol): `meshprov rollout` and
//! `meshprov demo` on a terminal.
//!
//! - [`updates`] turns every [`RolloutEvent`] into view-model [`Update`]s (stage, attempt,
//!   address, errors, capabilities, OOB prompts, configuration steps, discovery, log lines).
//! - [`command`] turns the installer's [`Action`]s into engine [`Command`]s.
//! - [`TuiObserver`] is the [`Observer`] a driver runs with: the view runs on a thread of its
//!   own (it draws at most 20 frames a second and reads keys whatever the driver is doing, a
//!   real-radio wave included), the driver hands it events and, at each tick, takes the
//!   commands the keys produced. On the simulated radio it paces virtual time to wall time
//!   ([`Observer::pace`], `--speed`); it keeps the run open once every device is finished
//!   ([`Observer::keep_running`]) until the installer quits, so a failed device can still be
//!   retried. Quitting stops the engine, waits until no session or configuration runs (the
//!   store is consistent), then gives the terminal back — also on SIGINT, SIGTERM and SIGHUP,
//!   and on a panic (the view's panic hook).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use meshprov_tui::app::{Action, App, Screen};
use meshprov_tui::model::{
    Beacon, CapabilitiesView, CompositionView, ConfigStep, DeviceRow, Direction, ElementView,
    InputAction, KeyRefreshView, KrNode, KrPhase, Level, Location, LogEntry, OobKind, OobPrompt,
    OutputAction, RunState, Stage, StepStatus, TranscriptEntry, Update, Uuid, ViewModel,
};
use meshprov_tui::terminal::Tui;
use meshprov_tui::theme::{ColorSupport, Theme};
use ratatui::crossterm::event::Event;

use crate::net::key_refresh::KeyRefreshEvent;
use crate::rollout::{
    Command, DeviceStatus, Engine, EngineDevice, EventKind, Observer, Phase, RolloutEvent,
    Stage as EngineStage,
};
use crate::time::Instant;
use crate::tools::key_refresh::{Report, report_text};
use crate::uuid::DeviceUuid;

/// The longest the view waits between two frames while something moves (the spinner, the
/// clock), and the shortest between two frames: at most 20 a second.
const FRAME: Duration = Duration::from_millis(50);
/// How long [`TuiObserver::finish`] waits for the view thread before leaving it behind.
const VIEW_JOIN: Duration = Duration::from_secs(2);
/// How long a quitting run may take to settle before the driver is told to end it.
const QUIT_GRACE: Duration = Duration::from_secs(3);

/// The view's device key for an engine device.
pub fn view_uuid(u: &DeviceUuid) -> Uuid {
    Uuid(u.0)
}

/// The engine's device for a view key.
pub fn engine_uuid(u: &Uuid) -> DeviceUuid {
    DeviceUuid(u.0)
}

/// The view's stage for an engine stage.
pub fn view_stage(s: EngineStage) -> Stage {
    match s {
        EngineStage::Discovered => Stage::Discovered,
        EngineStage::Scheduled => Stage::Scheduled,
        EngineStage::Provisioning => Stage::Provisioning,
        EngineStage::Committed => Stage::Committed,
        EngineStage::Configuring => Stage::Configuring,
        EngineStage::Verifying => Stage::Verifying,
        EngineStage::Done => Stage::Done,
        EngineStage::Failed => Stage::Failed,
        EngineStage::Skipped => Stage::Skipped,
        EngineStage::Excluded => Stage::Excluded,
    }
}

/// A device row from the engine's device, before anything happened to it.
pub fn planned_row(d: &EngineDevice) -> DeviceRow {
    let l = &d.location;
    DeviceRow::planned(
        view_uuid(&d.uuid),
        &d.name,
        Location::new(&l.building, &l.floor, &l.room),
        &d.auth,
    )
}

/// The engine command for an installer's action; `None` for the actions the glue handles
/// itself (opening a detail, quitting).
pub fn command(action: &Action) -> Option<Command> {
    Some(match action {
        // The engine starts at once; Space on a run that has not started resumes it.
        Action::Start | Action::Resume => Command::Resume,
        Action::Pause => Command::Pause,
        Action::Retry(u) => Command::Retry(engine_uuid(u)),
        Action::Skip(u) => Command::Skip(engine_uuid(u)),
        Action::Exclude(u) => Command::Exclude(engine_uuid(u)),
        Action::Identify(u) => Command::Identify(engine_uuid(u)),
        Action::AnswerOob(u, v) => Command::AnswerOob(engine_uuid(u), v.clone()),
        Action::AddToPlan(u) => Command::Adopt(engine_uuid(u)),
        Action::Ignore(u) => Command::Ignore(engine_uuid(u)),
        Action::OpenDetail(_) | Action::Quit => return None,
    })
}

fn output_action(name: &str) -> OutputAction {
    let n = name.to_ascii_lowercase();
    if n.contains("beep") {
        OutputAction::Beep
    } else if n.contains("vibrat") {
        OutputAction::Vibrate
    } else if n.contains("alpha") {
        OutputAction::Alphanumeric
    } else if n.contains("numeric") {
        OutputAction::Numeric
    } else {
        OutputAction::Blink
    }
}

fn input_action(name: &str) -> InputAction {
    let n = name.to_ascii_lowercase();
    if n.contains("twist") {
        InputAction::Twist
    } else if n.contains("alpha") {
        InputAction::Alphanumeric
    } else if n.contains("numeric") {
        InputAction::Numeric
    } else {
        InputAction::Push
    }
}

fn ms(t: u64) -> Duration {
    Duration::from_millis(t)
}

/// One transcript line of [`crate::rollout::transcript_names`] (`> Provisioning Invite (2 B,
/// +0.000 s)`) as the view's timeline entry; `None` for a line of another form.
pub fn transcript_entry(line: &str) -> Option<TranscriptEntry> {
    let (dir, rest) = line.split_at_checked(1)?;
    let direction = match dir {
        ">" => Direction::ToDevice,
        "<" => Direction::FromDevice,
        _ => return None,
    };
    let rest = rest.trim_start();
    let (name, tail) = match rest.rsplit_once(" (") {
        Some((n, t)) => (n, t.trim_end_matches(')')),
        None => (rest, ""),
    };
    let mut len = 0;
    let mut at = Duration::ZERO;
    for part in tail.split(", ") {
        if let Some(b) = part.strip_suffix(" B") {
            len = b.parse().unwrap_or(0);
        } else if let Some(s) = part.strip_prefix('+').and_then(|p| p.strip_suffix(" s")) {
            at = s
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map_or(Duration::ZERO, Duration::from_secs_f64);
        }
    }
    let pdu = name.strip_prefix("Provisioning ").unwrap_or(name);
    Some(TranscriptEntry {
        at,
        direction,
        pdu: pdu.to_string(),
        len,
        note: String::new(),
    })
}

/// The engine's one-line Composition Data (`cid 05f1 pid 0001 vid 0001 crpl 32 elements
/// [0000 0002 1000] [1000]`) as the view's.
pub fn composition_view(line: &str) -> CompositionView {
    let (ids, elements) = line.split_once(" elements ").unwrap_or((line, ""));
    let elements = elements
        .split(']')
        .filter_map(|e| {
            let e = e.trim().trim_start_matches('[');
            (!e.is_empty()).then(|| ElementView {
                location: "-".into(),
                models: e.split_whitespace().map(String::from).collect(),
            })
        })
        .collect();
    CompositionView {
        ids: ids.to_string(),
        features: "as configured by the template".into(),
        elements,
    }
}

/// What the glue needs beyond an event to map it.
#[derive(Debug, Clone, Copy)]
pub struct MapOptions {
    /// OOB prompts open dialogs (off when a simulated installer answers them).
    pub prompts: bool,
}

fn name_of(model: &ViewModel, u: &Uuid) -> String {
    model
        .devices
        .get(u)
        .map_or_else(|| u.short(), |r| r.name.clone())
}

/// The view-model updates one rollout event means. `model` is the view model before them
/// (for device names in log lines and for the configuration steps already listed).
pub fn updates(ev: &RolloutEvent, model: &ViewModel, opts: MapOptions) -> Vec<Update> {
    let at = ms(ev.t_ms);
    let uuid: Option<Uuid> = ev.uuid.as_deref().and_then(|s| s.parse().ok());
    let mut out = Vec::new();
    let log = |level: Level, text: String| {
        Update::Log(LogEntry {
            at,
            level,
            uuid,
            text,
        })
    };
    let stage = |u: Uuid, s: Stage| Update::Stage {
        uuid: u,
        stage: s,
        at,
    };
    let Some(u) = uuid else {
        match &ev.kind {
            EventKind::Start {
                devices,
                already_done,
                clock,
            } => {
                out.push(Update::Run(RunState::Running));
                out.push(log(
                    Level::Info,
                    format!(
                        "rollout of {devices} devices ({already_done} already done), {} time",
                        if *clock == "virtual" {
                            "simulated"
                        } else {
                            "wall"
                        }
                    ),
                ));
            }
            EventKind::Paused => {
                out.push(Update::Run(RunState::Paused));
                out.push(log(
                    Level::Info,
                    "paused: sessions under way finish, nothing new starts".into(),
                ));
            }
            EventKind::Unpaused => {
                out.push(Update::Run(RunState::Running));
                out.push(log(Level::Info, "resumed".into()));
            }
            EventKind::Stopping => out.push(log(
                Level::Warn,
                "stopping: waiting for the sessions under way to end".into(),
            )),
            EventKind::Summary(s) => {
                out.push(Update::Run(RunState::Finished));
                out.push(log(Level::Info, s.message.clone()));
            }
            _ => {}
        }
        return out;
    };
    let name = name_of(model, &u);
    let known = model.devices.get(&u).is_some();
    match &ev.kind {
        EventKind::Discovered {
            name: n,
            template,
            auth,
        } => {
            if !known {
                // A device the plan did not list, taken by the discovery rule or the installer.
                out.push(Update::Device(DeviceRow::planned(
                    u,
                    n,
                    Location::new("unplanned", "-", "-"),
                    auth,
                )));
                out.push(log(
                    Level::Info,
                    format!("{n}: added to the run (template {template}, auth {auth})"),
                ));
            }
            out.push(stage(u, Stage::Discovered));
        }
        EventKind::Unplanned {
            rssi,
            oob_info,
            uri_hash,
            taken,
            reason,
        } => {
            if *taken {
                out.push(Update::BeaconGone(u));
            } else {
                let names = crate::wire::beacon::OobInformation(*oob_info).names();
                out.push(Update::Beacon(Beacon {
                    uuid: u,
                    rssi: rssi.unwrap_or(i8::MIN),
                    oob_info: if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    },
                    uri_hash: uri_hash.clone(),
                    last_seen: at,
                }));
            }
            out.push(log(
                Level::Info,
                format!(
                    "unplanned device {} heard{}: {reason}",
                    u.short(),
                    rssi.map_or(String::new(), |r| format!(" at {r} dBm"))
                ),
            ));
        }
        EventKind::Ignored => {
            out.push(Update::BeaconGone(u));
            out.push(log(Level::Info, format!("{}: ignored", u.short())));
        }
        EventKind::Resumed { stage: s, address } => {
            out.push(stage(u, view_stage(*s)));
            if let Some(a) = address {
                out.push(Update::Address {
                    uuid: u,
                    address: *a,
                });
            }
            out.push(log(
                Level::Info,
                format!(
                    "{name}: resumed from the store ({})",
                    view_stage(*s).label()
                ),
            ));
        }
        EventKind::Scheduled => out.push(stage(u, Stage::Scheduled)),
        EventKind::ProvisioningStarted { attempt } => {
            out.push(stage(u, Stage::Provisioning));
            out.push(Update::Attempt {
                uuid: u,
                attempt: *attempt,
            });
        }
        EventKind::LinkOpened => {}
        EventKind::Capabilities {
            elements,
            algorithms,
            public_key_oob,
            static_oob,
            output_oob_size,
            output_oob_actions,
            input_oob_size,
            input_oob_actions,
        } => {
            let mut d = model.details.get(&u).cloned().unwrap_or_default();
            d.capabilities = Some(CapabilitiesView {
                elements: *elements,
                algorithms: algorithms.clone(),
                public_key_oob: *public_key_oob,
                static_oob: *static_oob,
                output_oob: output_oob_actions.clone(),
                output_size: *output_oob_size,
                input_oob: input_oob_actions.clone(),
                input_size: *input_oob_size,
            });
            d.algorithm = algorithms.last().cloned();
            out.push(Update::Detail {
                uuid: u,
                detail: Box::new(d),
            });
        }
        EventKind::OobRequested { action, size } => {
            if opts.prompts {
                out.push(Update::Prompt(OobPrompt {
                    uuid: u,
                    kind: OobKind::Output {
                        action: output_action(action),
                        size: *size,
                    },
                }));
            }
            out.push(log(
                Level::Info,
                format!(
                    "{name}: shows its Output OOB value ({action}, {size}){}",
                    if opts.prompts {
                        ": type it in the dialog"
                    } else {
                        "; the simulated installer reads it"
                    }
                ),
            ));
        }
        EventKind::OobDisplay { value, action } => {
            if opts.prompts {
                out.push(Update::Prompt(OobPrompt {
                    uuid: u,
                    kind: OobKind::Input {
                        action: input_action(action),
                        value: value.clone(),
                    },
                }));
            }
            out.push(log(
                Level::Info,
                format!("{name}: enter {value} on the device ({action})"),
            ));
        }
        EventKind::Authenticated { method } => {
            let mut d = model.details.get(&u).cloned().unwrap_or_default();
            d.auth = Some(method.clone());
            out.push(Update::Detail {
                uuid: u,
                detail: Box::new(d),
            });
            out.push(Update::PromptDone(u));
        }
        EventKind::Provisioned { address, elements } => {
            out.push(stage(u, Stage::Committed));
            out.push(Update::Address {
                uuid: u,
                address: *address,
            });
            out.push(Update::PromptDone(u));
            out.push(log(
                Level::Info,
                format!("{name}: provisioned at 0x{address:04x} ({elements} elements)"),
            ));
        }
        EventKind::ConfiguringStarted { attempt, requests } => {
            out.push(stage(u, Stage::Configuring));
            out.push(Update::Attempt {
                uuid: u,
                attempt: *attempt,
            });
            if model
                .details
                .get(&u)
                .is_none_or(|d| d.config_steps.is_empty())
            {
                out.push(Update::ConfigStep {
                    uuid: u,
                    step: ConfigStep {
                        name: format!("{requests} template requests"),
                        status: StepStatus::Running,
                    },
                });
            }
            for s in model.details.get(&u).map_or(&[][..], |d| &d.config_steps) {
                out.push(Update::ConfigStep {
                    uuid: u,
                    step: ConfigStep {
                        name: s.name.clone(),
                        status: StepStatus::Running,
                    },
                });
            }
        }
        EventKind::Configured => {
            for s in model.details.get(&u).map_or(&[][..], |d| &d.config_steps) {
                if s.name != VERIFY_STEP {
                    out.push(Update::ConfigStep {
                        uuid: u,
                        step: ConfigStep {
                            name: s.name.clone(),
                            status: StepStatus::Done,
                        },
                    });
                }
            }
        }
        EventKind::VerifyingStarted => {
            out.push(stage(u, Stage::Verifying));
            out.push(Update::ConfigStep {
                uuid: u,
                step: ConfigStep {
                    name: VERIFY_STEP.into(),
                    status: StepStatus::Running,
                },
            });
        }
        EventKind::Done { timings } => {
            out.push(stage(u, Stage::Done));
            out.push(Update::ConfigStep {
                uuid: u,
                step: ConfigStep {
                    name: VERIFY_STEP.into(),
                    status: StepStatus::Done,
                },
            });
            out.push(log(
                Level::Info,
                format!(
                    "{name}: done (provisioning {:.1} s, configuring {:.1} s, verifying {:.1} s)",
                    timings.provisioning_ms as f64 / 1000.0,
                    timings.configuring_ms as f64 / 1000.0,
                    timings.verifying_ms as f64 / 1000.0
                ),
            ));
        }
        EventKind::Retrying {
            phase,
            reason,
            attempt,
            backoff_ms,
        } => {
            out.push(stage(u, Stage::Retrying));
            out.push(Update::Error {
                uuid: u,
                error: Some(format!("{}: {reason}", phase.as_str())),
            });
            out.push(Update::PromptDone(u));
            out.extend(failed_steps(model, u, *phase, reason));
            out.push(log(
                Level::Warn,
                format!(
                    "{name}: {} failed ({reason}); attempt {attempt} in {:.1} s",
                    phase.as_str(),
                    *backoff_ms as f64 / 1000.0
                ),
            ));
        }
        EventKind::Failed { phase, reason } => {
            out.push(stage(u, Stage::Failed));
            out.push(Update::Error {
                uuid: u,
                error: Some(format!("{}: {reason}", phase.as_str())),
            });
            out.push(Update::PromptDone(u));
            out.extend(failed_steps(model, u, *phase, reason));
            out.push(log(
                Level::Error,
                format!(
                    "{name}: FAILED in {}: {reason} (r retries it)",
                    phase.as_str()
                ),
            ));
        }
        EventKind::Skipped => {
            out.push(stage(u, Stage::Skipped));
            out.push(Update::PromptDone(u));
            out.push(log(Level::Warn, format!("{name}: skipped")));
        }
        EventKind::Excluded => {
            out.push(stage(u, Stage::Excluded));
            out.push(Update::PromptDone(u));
            out.push(log(
                Level::Warn,
                format!("{name}: excluded from the network"),
            ));
        }
        EventKind::Identify { how } => {
            out.push(log(Level::Info, format!("{name}: identify: {how}")));
        }
        EventKind::Start { .. }
        | EventKind::Paused
        | EventKind::Unpaused
        | EventKind::Stopping
        | EventKind::Summary(_) => {}
    }
    // Updates about a device the table does not have would be refused: only a device the
    // engine added (Discovered, above) or an unplanned one (the discovery screen) is new.
    if !known && !matches!(ev.kind, EventKind::Discovered { .. }) {
        out.retain(|up| {
            matches!(
                up,
                Update::Log(_) | Update::Beacon(_) | Update::BeaconGone(_)
            )
        });
    }
    out
}

/// The name of the verification step in a device's configuration list.
const VERIFY_STEP: &str = "Composition Data Get (verify)";

fn failed_steps(model: &ViewModel, u: Uuid, phase: Phase, reason: &str) -> Vec<Update> {
    let Some(d) = model.details.get(&u) else {
        return Vec::new();
    };
    let target: Vec<&ConfigStep> = match phase {
        Phase::Provisioning => return Vec::new(),
        Phase::Verifying => d
            .config_steps
            .iter()
            .filter(|s| s.name == VERIFY_STEP)
            .collect(),
        Phase::Configuring => {
            // The reason names the request that failed when one did ("no answer to X").
            let named: Vec<&ConfigStep> = d
                .config_steps
                .iter()
                .filter(|s| reason.contains(s.name.as_str()))
                .collect();
            if named.is_empty() {
                d.config_steps
                    .iter()
                    .filter(|s| s.status == StepStatus::Running)
                    .collect()
            } else {
                named
            }
        }
    };
    target
        .into_iter()
        .map(|s| Update::ConfigStep {
            uuid: u,
            step: ConfigStep {
                name: s.name.clone(),
                status: StepStatus::Failed(reason.to_string()),
            },
        })
        .collect()
}

/// The detail updates from the engine's status of a device: the transcript of its last
/// session and its Composition Data.
pub fn detail_updates(status: &DeviceStatus, model: &ViewModel) -> Vec<Update> {
    let u = view_uuid(&status.uuid);
    if model.devices.get(&u).is_none() {
        return Vec::new();
    }
    let mut d = model.details.get(&u).cloned().unwrap_or_default();
    let transcript: Vec<TranscriptEntry> = status
        .transcript
        .iter()
        .filter_map(|l| transcript_entry(l))
        .collect();
    let composition = status.composition.as_deref().map(composition_view);
    let mut changed = false;
    if !transcript.is_empty() && d.transcript != transcript {
        d.transcript = transcript;
        changed = true;
    }
    if composition.is_some() && d.composition != composition {
        d.composition = composition;
        changed = true;
    }
    if let Some(a) = &status.auth_used
        && d.auth.as_ref() != Some(a)
    {
        d.auth = Some(a.clone());
        changed = true;
    }
    if changed {
        vec![Update::Detail {
            uuid: u,
            detail: Box::new(d),
        }]
    } else {
        Vec::new()
    }
}

/// Names of a device's configuration steps (its template's requests) at its address.
pub type StepNames = Box<dyn Fn(&DeviceUuid, u16) -> Vec<String>>;

/// How the terminal UI runs.
#[derive(Debug, Clone)]
pub struct TuiOptions {
    /// Network name for the header.
    pub network: String,
    /// Radio description for the header.
    pub radio: String,
    /// Virtual seconds per wall second on the simulated radio (`--speed`); `None` in real time.
    pub speed: Option<f64>,
    /// OOB prompts open dialogs (off when the simulated installer answers them).
    pub prompts: bool,
}

/// What the view thread and the driver share.
#[derive(Debug)]
struct State {
    app: App,
    /// Actions from keys, oldest first, for the next tick.
    actions: VecDeque<Action>,
    /// A frame is due (the model changed).
    dirty: bool,
    /// The view thread must end.
    close: bool,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic on the view thread leaves the data as it was: keep using it.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The terminal taken and the view thread that draws it and reads keys: what a rollout and a
/// key refresh share. Signals (SIGINT, SIGTERM, SIGHUP) become a quit.
struct View {
    state: Arc<Mutex<State>>,
    ui: Option<JoinHandle<io::Result<()>>>,
    signalled: Arc<AtomicBool>,
    /// When the terminal was last checked for a hang-up, and whether it had hung up.
    last_check: std::cell::Cell<Option<std::time::Instant>>,
    hung_up: std::cell::Cell<bool>,
}

/// How often a running view checks that its terminal is still there ([`View::must_end`]).
const TERMINAL_CHECK: Duration = Duration::from_millis(500);

impl View {
    /// Takes the terminal (alternate screen, raw mode; restored on every exit path) and starts
    /// the view thread over `model`, on `screen`.
    fn start(model: ViewModel, screen: Screen) -> io::Result<Self> {
        let mut app = App::new(model, Theme::new(ColorSupport::detect()));
        app.set_screen(screen);
        let state = Arc::new(Mutex::new(State {
            app,
            actions: VecDeque::new(),
            dirty: true,
            close: false,
        }));
        let signalled = Arc::new(AtomicBool::new(false));
        for sig in [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ] {
            signal_hook::flag::register(sig, signalled.clone())?;
        }
        let tui = Tui::enter()?;
        let ui = {
            let state = state.clone();
            let signalled = signalled.clone();
            std::thread::Builder::new()
                .name("meshprov-tui".into())
                .spawn(move || view_thread(tui, &state, &signalled))?
        };
        Ok(Self {
            state,
            ui: Some(ui),
            signalled,
            last_check: std::cell::Cell::new(None),
            hung_up: std::cell::Cell::new(false),
        })
    }

    /// Ends the view thread and gives the terminal back.
    fn finish(&mut self) {
        lock(&self.state).close = true;
        if let Some(ui) = self.ui.take() {
            // A terminal that hung up (its window closed, tmux killed) leaves the view thread
            // inside crossterm's poll, which then reads end-of-file forever and never returns:
            // wait for the thread a short while, then leave it behind so that the process ends.
            let deadline = std::time::Instant::now() + VIEW_JOIN;
            while !ui.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if ui.is_finished()
                && let Ok(Err(e)) = ui.join()
            {
                eprintln!("meshprov: terminal: {e}");
            }
        }
        let _ = meshprov_tui::terminal::restore_terminal();
    }

    /// The view thread ended (the terminal is gone), a signal asked the run to end, or the
    /// terminal hung up without a SIGHUP reaching meshprov.
    ///
    /// The kernel sends SIGHUP on a hang-up to the session leader only; when that is a shell
    /// that ignores it (`trap '' HUP`, a wrapper script) nobody forwards it, and the view
    /// thread sits in crossterm's poll reading end-of-file for ever. A hung-up terminal
    /// answers every ioctl with EIO, so `isatty` on our output turns false: checked at most
    /// every [`TERMINAL_CHECK`].
    fn must_end(&self) -> bool {
        self.ui.as_ref().is_none_or(|u| u.is_finished())
            || self.signalled.load(Ordering::SeqCst)
            || self.terminal_gone()
    }

    fn terminal_gone(&self) -> bool {
        if self.hung_up.get() {
            return true;
        }
        let now = std::time::Instant::now();
        if self
            .last_check
            .get()
            .is_some_and(|t| now.duration_since(t) < TERMINAL_CHECK)
        {
            return false;
        }
        self.last_check.set(Some(now));
        use std::io::IsTerminal;
        let gone = !io::stdout().is_terminal();
        self.hung_up.set(gone);
        gone
    }

    fn take_actions(&self) -> Vec<Action> {
        lock(&self.state).actions.drain(..).collect()
    }

    fn apply(&self, ups: Vec<Update>) {
        if ups.is_empty() {
            return;
        }
        let mut s = lock(&self.state);
        for up in ups {
            // The mapping only names devices the table has; a refusal changes nothing.
            let _ = s.app.model.apply(up);
        }
        s.dirty = true;
    }

    fn log(&self, level: Level, text: String) {
        let mut s = lock(&self.state);
        let at = s.app.model.elapsed;
        s.app.model.push_log(LogEntry {
            at,
            level,
            uuid: None,
            text,
        });
        s.dirty = true;
    }

    /// Actions wait for the driver, or the view thread is gone.
    fn pending(&self) -> bool {
        let s = lock(&self.state);
        !s.actions.is_empty() || self.ui.as_ref().is_none_or(|u| u.is_finished())
    }

    fn set_elapsed(&self, d: Duration) {
        let mut s = lock(&self.state);
        if s.app.model.elapsed != d {
            s.app.model.elapsed = d;
            s.dirty = true;
        }
    }
}

/// The [`Observer`] that shows a rollout in the terminal UI (see the module documentation).
pub struct TuiObserver {
    view: View,
    opts: TuiOptions,
    steps: Option<StepNames>,
    /// Wall and virtual time at the last re-anchoring of the pace.
    anchor: Option<(std::time::Instant, Instant)>,
    /// Devices whose detail to refresh from the engine at the next tick.
    refresh: BTreeSet<DeviceUuid>,
    /// The installer asked to quit: stop, settle, then let the driver return.
    quitting: bool,
    /// When the quit began (wall clock): the run gets [`QUIT_GRACE`] to settle.
    quit_at: Option<std::time::Instant>,
    /// The run was finished at the last tick (a summary line was logged).
    finished: bool,
    /// The summary line of the end of the run, for the terminal after the UI.
    summary: Option<String>,
    /// The quit's grace ran out: the run was ended without settling.
    graced: bool,
}

impl std::fmt::Debug for TuiObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TuiObserver")
            .field("opts", &self.opts)
            .field("quitting", &self.quitting)
            .finish_non_exhaustive()
    }
}

impl TuiObserver {
    /// Takes the terminal (alternate screen, raw mode; restored on every exit path) and starts
    /// the view thread over the plan's `devices`. `steps` names a device's configuration
    /// steps for its detail screen.
    pub fn start(
        devices: &[EngineDevice],
        opts: TuiOptions,
        steps: Option<StepNames>,
    ) -> io::Result<Self> {
        let mut model = ViewModel::new(&opts.network, &opts.radio);
        for d in devices {
            model.devices.upsert(planned_row(d));
        }
        Ok(Self {
            view: View::start(model, Screen::Dashboard)?,
            opts,
            steps,
            anchor: None,
            refresh: BTreeSet::new(),
            quitting: false,
            quit_at: None,
            finished: false,
            summary: None,
            graced: false,
        })
    }

    /// Ends the view thread and gives the terminal back (also done on drop); returns the run's
    /// summary line for the terminal, if the run ended with one.
    pub fn finish(&mut self) -> Option<String> {
        self.view.finish();
        self.summary.clone()
    }

    /// Whether the installer quit (or a signal asked the run to end).
    pub fn quit_requested(&self) -> bool {
        self.quitting
    }

    /// Whether a quitting run had to be ended by the grace ([`QUIT_GRACE`]) instead of
    /// settling: the normal path never needs it.
    pub fn grace_used(&self) -> bool {
        self.graced
    }

    fn apply(&mut self, ups: Vec<Update>) {
        self.view.apply(ups);
    }

    fn log(&mut self, level: Level, text: String) {
        self.view.log(level, text);
    }

    fn pending(&self) -> bool {
        self.view.pending()
    }

    fn set_elapsed(&self, d: Duration) {
        self.view.set_elapsed(d);
    }
}

impl Drop for TuiObserver {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

impl Observer for TuiObserver {
    fn event(&mut self, ev: &RolloutEvent) {
        let uuid = ev
            .uuid
            .as_deref()
            .and_then(|u| u.parse::<DeviceUuid>().ok());
        // The template's requests, listed (pending) when configuration first starts; the
        // mapping then marks them running, done or failed.
        if let (EventKind::ConfiguringStarted { .. }, Some(d), Some(names)) =
            (&ev.kind, uuid, &self.steps)
        {
            let u = view_uuid(&d);
            let mut s = lock(&self.view.state);
            let address = s.app.model.devices.get(&u).and_then(|r| r.address);
            let listed = s
                .app
                .model
                .details
                .get(&u)
                .is_some_and(|x| !x.config_steps.is_empty());
            if let (Some(address), false) = (address, listed) {
                let detail = s.app.model.detail_mut(u);
                detail.config_steps = names(&d, address)
                    .into_iter()
                    .map(|name| ConfigStep {
                        name,
                        status: StepStatus::Pending,
                    })
                    .collect();
            }
        }
        let ups = {
            let s = lock(&self.view.state);
            updates(
                ev,
                &s.app.model,
                MapOptions {
                    prompts: self.opts.prompts,
                },
            )
        };
        if let EventKind::Summary(s) = &ev.kind {
            self.summary = crate::tools::rollout::text_line(ev).or(Some(s.message.clone()));
        }
        if let Some(u) = uuid {
            self.refresh.insert(u);
        }
        self.apply(ups);
    }

    fn tick(&mut self, engine: &Engine) -> Vec<Command> {
        let actions = self.view.take_actions();
        let mut commands = Vec::new();
        let mut errors = Vec::new();
        for a in actions {
            match &a {
                Action::Quit => self.quitting = true,
                Action::OpenDetail(u) => {
                    self.refresh.insert(engine_uuid(u));
                }
                _ => {}
            }
            if let Some(c) = command(&a) {
                // Checked here so that a refusal reaches the log pane, not a panic or nothing.
                if let Err(e) = check(engine, &c) {
                    errors.push(e);
                } else {
                    commands.push(c);
                }
            }
        }
        for e in errors {
            self.log(Level::Warn, format!("refused: {e}"));
        }
        if self.view.must_end() && !self.quitting {
            self.quitting = true;
        }
        if self.quitting && !engine.is_finished() {
            commands.push(Command::Stop);
        }
        if self.quitting && self.quit_at.is_none() {
            self.quit_at = Some(std::time::Instant::now());
        }
        // Details: the transcript and Composition Data the engine keeps.
        let refresh = std::mem::take(&mut self.refresh);
        let ups: Vec<Update> = {
            let s = lock(&self.view.state);
            refresh
                .iter()
                .filter_map(|u| engine.status(u))
                .flat_map(|st| detail_updates(st, &s.app.model))
                .collect()
        };
        self.apply(ups);
        // The run's state and, when it ends, a summary line.
        let finished = engine.is_finished();
        let run = if finished {
            RunState::Finished
        } else if engine.is_paused() {
            RunState::Paused
        } else {
            RunState::Running
        };
        if lock(&self.view.state).app.model.run != run {
            self.apply(vec![Update::Run(run)]);
        }
        if finished && !self.finished && !self.quitting {
            let c = lock(&self.view.state).app.model.devices.counts();
            let text = if c.failed + c.skipped == 0 {
                format!("finished: all {} devices done; q quits", c.total())
            } else {
                format!(
                    "finished: {} of {} devices done, {} failed, {} skipped; r on a failed device retries it, q quits",
                    c.done,
                    c.total(),
                    c.failed,
                    c.skipped
                )
            };
            let level = if c.failed > 0 {
                Level::Warn
            } else {
                Level::Info
            };
            self.log(level, text);
        }
        self.finished = finished;
        commands
    }

    fn pace(&mut self, now: Instant, next: Option<Instant>) -> Option<Instant> {
        let Some(speed) = self.opts.speed.filter(|s| s.is_finite() && *s > 0.0) else {
            return next;
        };
        if self.quitting {
            // A last resort: a run that has not settled within the grace ends here, as a
            // crash would (every commit is already in the store, which is made to resume from
            // any moment). A stop settles in a few seconds of virtual time, well under a
            // second of wall time (`tests/rollout_sim.rs`); the grace once hid a driver whose
            // clock stood still after a Stop (the simulated installer's stale timer).
            if self.quit_at.is_some_and(|t| t.elapsed() >= QUIT_GRACE) {
                self.graced = true;
                return None;
            }
            // Settle as fast as the CPU goes: the installer is waiting for the terminal.
            return next.or(Some(now + Duration::from_millis(100)));
        }
        let start = std::time::Instant::now();
        let (mut w0, mut v0) = *self.anchor.get_or_insert((start, now));
        let reached = |w0: std::time::Instant, v0: Instant, w: std::time::Instant| {
            v0 + w.saturating_duration_since(w0).mul_f64(speed)
        };
        // Behind (the CPU could not keep up): never race to catch up, go on from here.
        if reached(w0, v0, start) > now + FRAME.mul_f64(speed * 5.0) {
            (w0, v0) = (start, now);
            self.anchor = Some((w0, v0));
        }
        loop {
            let w = std::time::Instant::now();
            let v = reached(w0, v0, w).max(now);
            self.set_elapsed(v.since_epoch());
            if let Some(t) = next
                && v >= t
            {
                return Some(t);
            }
            if self.pending() || w.saturating_duration_since(start) >= FRAME {
                // Commands to hand over, or a frame's worth of time passed: a tick now.
                return Some(next.map_or(v, |t| v.min(t)));
            }
            let left = next.map_or(FRAME, |t| {
                t.saturating_duration_since(v).div_f64(speed).min(FRAME)
            });
            std::thread::sleep(left.clamp(Duration::from_millis(1), Duration::from_millis(20)));
        }
    }

    fn keep_running(&self) -> bool {
        !self.quitting
    }
}

// ---------------------------------------------------------------------------------------------
// `meshprov key-refresh` on a terminal.

/// The view's phase for a number of acknowledged phases (0–3).
pub fn kr_phase(n: u8) -> KrPhase {
    match n {
        0 => KrPhase::Normal,
        1 => KrPhase::Distributing,
        2 => KrPhase::Switching,
        _ => KrPhase::Revoking,
    }
}

fn node_label(names: &BTreeMap<u16, String>, a: u16) -> String {
    names.get(&a).cloned().unwrap_or_default()
}

/// The view-model updates one line of a key refresh run means (the same [`Report`]s the text
/// and JSON output print). `model` is the view model before them, `names` the nodes' names
/// from the store, `at` the run's elapsed time for the log.
pub fn kr_updates(
    r: &Report,
    model: &ViewModel,
    names: &BTreeMap<u16, String>,
    at: Duration,
) -> Vec<Update> {
    let mut out = Vec::new();
    let log = |level: Level, text: String| {
        Update::Log(LogEntry {
            at,
            level,
            uuid: None,
            text,
        })
    };
    let kr = model.key_refresh.as_ref();
    let node = |address: u16| kr.and_then(|k| k.nodes.iter().find(|n| n.address == address));
    let text = report_text(r, names).map(|t| t.trim().to_string());
    match r {
        Report::Excluded { .. } => {
            out.extend(text.map(|t| log(Level::Warn, t)));
        }
        Report::Start {
            net_key_index,
            roster,
            ..
        } => {
            let nodes = roster
                .iter()
                .map(|n| KrNode {
                    address: n.address,
                    name: node_label(names, n.address),
                    phase: kr_phase(n.completed),
                    status: if n.excluded {
                        StepStatus::Excluded
                    } else if n.completed >= 3 {
                        StepStatus::Done
                    } else {
                        StepStatus::Pending
                    },
                })
                .collect();
            out.push(Update::KeyRefresh(Some(KeyRefreshView {
                net_key_index: *net_key_index,
                phase: KrPhase::Normal,
                nodes,
            })));
            out.push(Update::Run(RunState::Running));
            out.extend(text.map(|t| log(Level::Info, t)));
        }
        Report::NotOnAir { address } => {
            if let Some(n) = node(*address) {
                out.push(Update::KeyRefreshNode(KrNode {
                    status: StepStatus::Failed(
                        "not in the building file: not on the simulated air".into(),
                    ),
                    ..n.clone()
                }));
            }
            out.extend(text.map(|t| log(Level::Warn, t)));
        }
        Report::Event(ev) => match ev {
            KeyRefreshEvent::PhaseStarted(p) => {
                if let Some(k) = kr {
                    let phase = kr_phase(p.number());
                    let mut v = k.clone();
                    v.phase = phase;
                    // Every node still in the procedure has this phase to do, unless it did
                    // it in an earlier run.
                    for n in &mut v.nodes {
                        if matches!(
                            n.status,
                            StepStatus::Pending | StepStatus::Running | StepStatus::Done
                        ) {
                            n.status = if n.phase < phase {
                                StepStatus::Running
                            } else {
                                StepStatus::Done
                            };
                        }
                    }
                    out.push(Update::KeyRefresh(Some(v)));
                }
                out.extend(text.map(|t| log(Level::Info, t)));
            }
            KeyRefreshEvent::NodeUpdated { address, phase } => {
                out.push(Update::KeyRefreshNode(KrNode {
                    address: *address,
                    name: node_label(names, *address),
                    phase: kr_phase(phase.number()),
                    status: StepStatus::Done,
                }));
                out.extend(text.map(|t| log(Level::Info, t)));
            }
            KeyRefreshEvent::NodeFailed {
                address, reason, ..
            } => {
                let why = if reason.is_unreachable() {
                    format!("unreachable: {reason}")
                } else {
                    reason.to_string()
                };
                out.push(Update::KeyRefreshNode(KrNode {
                    address: *address,
                    name: node_label(names, *address),
                    phase: node(*address).map_or(KrPhase::Normal, |n| n.phase),
                    status: StepStatus::Failed(why),
                }));
                out.extend(text.map(|t| log(Level::Error, t)));
            }
            KeyRefreshEvent::PhaseComplete(_) | KeyRefreshEvent::Blocked { .. } => {
                let level = if matches!(ev, KeyRefreshEvent::Blocked { .. }) {
                    Level::Warn
                } else {
                    Level::Info
                };
                out.extend(text.map(|t| log(level, t)));
            }
            KeyRefreshEvent::ProvisionerKeys(k) => out.push(log(
                Level::Info,
                format!(
                    "the provisioner sends with the {} keys and receives with {}",
                    if k.tx_new { "new" } else { "old" },
                    if k.rx_old {
                        "both"
                    } else {
                        "the new ones only"
                    }
                ),
            )),
            KeyRefreshEvent::Beacons(b) => out.push(log(
                Level::Info,
                match b {
                    Some(true) => {
                        "Secure Network beacons under the new NetKey, Key Refresh flag set"
                    }
                    Some(false) => {
                        "Secure Network beacons under the new NetKey, Key Refresh flag cleared"
                    }
                    None => "no more Secure Network beacons",
                }
                .into(),
            )),
            KeyRefreshEvent::Finished(summary) => {
                if let Some(k) = kr
                    && summary.stopped.is_none()
                {
                    // Back to normal operation, with the new keys.
                    let mut v = k.clone();
                    v.phase = KrPhase::Normal;
                    out.push(Update::KeyRefresh(Some(v)));
                }
                out.push(Update::Run(RunState::Finished));
                let level = if summary.is_complete() {
                    Level::Info
                } else {
                    Level::Warn
                };
                out.extend(text.map(|t| log(level, t)));
                out.push(log(
                    level,
                    if summary.is_complete() {
                        "the key refresh is complete; q quits".into()
                    } else {
                        "nodes were left behind: q quits, and the same command resumes them".into()
                    },
                ));
            }
        },
    }
    out
}

/// `meshprov key-refresh` in the terminal UI: the dashboard and the key refresh screen follow
/// the procedure's [`Report`]s ([`kr_updates`]); [`KeyRefreshTui::pace`] paces the simulated
/// air to the wall clock at `--speed` and stops the run when the installer quits (`q` asks
/// while the procedure runs; SIGINT, SIGTERM, SIGHUP and a closed terminal quit without
/// asking). A stopped run has saved every acknowledgement: the same command resumes it.
pub struct KeyRefreshTui {
    view: View,
    names: BTreeMap<u16, String>,
    speed: f64,
    /// Wall and virtual time at the last re-anchoring of the pace.
    anchor: Option<(std::time::Instant, Instant)>,
    /// Virtual time when the run began (elapsed is counted from it).
    origin: Option<Instant>,
    quitting: bool,
    /// The text lines of the end, for the terminal after the UI.
    summary: Vec<String>,
}

impl std::fmt::Debug for KeyRefreshTui {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRefreshTui")
            .field("speed", &self.speed)
            .field("quitting", &self.quitting)
            .finish_non_exhaustive()
    }
}

impl KeyRefreshTui {
    /// Takes the terminal and opens the dashboard; `names` are the nodes' names from the
    /// store, `speed` the simulated seconds per wall second.
    pub fn start(
        network: &str,
        radio: &str,
        speed: f64,
        names: BTreeMap<u16, String>,
    ) -> io::Result<Self> {
        let model = ViewModel::new(network, radio);
        Ok(Self {
            view: View::start(model, Screen::Dashboard)?,
            names,
            speed,
            anchor: None,
            origin: None,
            quitting: false,
            summary: Vec::new(),
        })
    }

    /// One report of the run, into the view.
    pub fn report(&mut self, r: &Report) {
        if let Report::Event(KeyRefreshEvent::Finished(_)) = r
            && let Some(t) = report_text(r, &self.names)
        {
            self.summary.push(t);
        }
        let ups = {
            let s = lock(&self.view.state);
            kr_updates(r, &s.app.model, &self.names, s.app.model.elapsed)
        };
        self.view.apply(ups);
    }

    /// Keys since the last look: a quit ends the run; what a key refresh cannot do is said in
    /// the log pane.
    fn handle_actions(&mut self) {
        for a in self.view.take_actions() {
            match a {
                Action::Quit => self.quitting = true,
                Action::Start | Action::Pause | Action::Resume => self.view.log(
                    Level::Warn,
                    "a key refresh does not pause: q stops it, and the same command resumes it"
                        .into(),
                ),
                Action::OpenDetail(_) => {}
                other => self.view.log(
                    Level::Warn,
                    format!("refused: {other:?} is a rollout action, not one of a key refresh"),
                ),
            }
        }
        if self.view.must_end() {
            self.quitting = true;
        }
    }

    /// [`crate::tools::key_refresh::key_refresh_paced`]'s pace: the air has been simulated up
    /// to `simulated`; returns how far it may go now (sleeping until the wall clock at
    /// `--speed` is past `simulated`), or `None` once the installer quit.
    pub fn pace(&mut self, simulated: Instant, deadline: Instant) -> Option<Instant> {
        let speed = self.speed;
        let origin = *self.origin.get_or_insert(simulated);
        let start = std::time::Instant::now();
        let (mut w0, mut v0) = *self.anchor.get_or_insert((start, simulated));
        let reached = |w0: std::time::Instant, v0: Instant, w: std::time::Instant| {
            v0 + w.saturating_duration_since(w0).mul_f64(speed)
        };
        // Behind (the CPU could not keep up): never race to catch up, go on from here.
        if reached(w0, v0, start) > simulated + FRAME.mul_f64(speed * 5.0) {
            (w0, v0) = (start, simulated);
            self.anchor = Some((w0, v0));
        }
        // The smallest step worth a turn of the loop: a fifth of a frame.
        let min_step = (FRAME / 5).mul_f64(speed);
        loop {
            self.handle_actions();
            if self.quitting {
                return None;
            }
            let w = std::time::Instant::now();
            let v = reached(w0, v0, w);
            self.view
                .set_elapsed(v.saturating_duration_since(origin).max(Duration::ZERO));
            if v >= simulated + min_step || v >= deadline {
                return Some(v.min(deadline));
            }
            let left = (simulated + min_step)
                .saturating_duration_since(v)
                .div_f64(speed);
            std::thread::sleep(left.clamp(Duration::from_millis(1), Duration::from_millis(20)));
        }
    }

    /// After the procedure ended: the screen stays (the installer reads it) until `q`, a
    /// signal or a closed terminal.
    pub fn wait_for_quit(&mut self) {
        while !self.quitting {
            self.handle_actions();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the installer quit (or a signal asked the run to end).
    pub fn quit_requested(&self) -> bool {
        self.quitting
    }

    /// Gives the terminal back; returns the lines of the end for the terminal.
    pub fn finish(&mut self) -> Vec<String> {
        self.view.finish();
        std::mem::take(&mut self.summary)
    }
}

impl Drop for KeyRefreshTui {
    fn drop(&mut self) {
        self.view.finish();
    }
}

/// Whether the engine would take `c` now (the same checks [`Engine::command`] makes, so a
/// refusal can be shown before the driver applies the command).
fn check(engine: &Engine, c: &Command) -> Result<(), String> {
    let status = |u: &DeviceUuid| {
        engine
            .status(u)
            .ok_or_else(|| format!("device {u} is not in this rollout"))
    };
    match c {
        Command::Retry(u) => {
            let s = status(u)?;
            match s.stage {
                EngineStage::Failed
                | EngineStage::Skipped
                | EngineStage::Scheduled
                | EngineStage::Committed => Ok(()),
                st => Err(format!("{}: {st:?}, nothing to retry", s.name)),
            }
        }
        Command::Skip(u) => {
            let s = status(u)?;
            if s.stage.is_final() {
                Err(format!("{} is already {:?}", s.name, s.stage))
            } else {
                Ok(())
            }
        }
        Command::Exclude(u) | Command::Identify(u) => status(u).map(|_| ()),
        Command::AnswerOob(u, _) => {
            let s = status(u)?;
            if s.stage == EngineStage::Provisioning {
                Ok(())
            } else {
                Err(format!(
                    "{} has no session waiting for an OOB value",
                    s.name
                ))
            }
        }
        Command::Adopt(u) => {
            if engine.status(u).is_some() {
                Err(format!("device {u} is already in this rollout"))
            } else {
                Ok(())
            }
        }
        Command::Ignore(u) => {
            if engine.status(u).is_some() {
                Err(format!(
                    "device {u} is in this rollout: skip or exclude it instead"
                ))
            } else {
                Ok(())
            }
        }
        Command::Pause | Command::Resume | Command::Stop => Ok(()),
    }
}

/// The view thread: frames (at most one per [`FRAME`], and only when something changed or
/// the clock moves), keys into actions, signals into a quit.
fn view_thread(mut tui: Tui, state: &Mutex<State>, signalled: &AtomicBool) -> io::Result<()> {
    let mut last_frame: Option<std::time::Instant> = None;
    let mut last_elapsed = None;
    let result = (|| -> io::Result<()> {
        loop {
            {
                let mut s = lock(state);
                if s.close {
                    return Ok(());
                }
                if signalled.load(Ordering::SeqCst) && !s.actions.contains(&Action::Quit) {
                    s.actions.push_back(Action::Quit);
                }
                let moved = last_elapsed != Some(s.app.model.elapsed);
                let due = last_frame.is_none_or(|t| t.elapsed() >= FRAME);
                if due && (s.dirty || moved) {
                    s.dirty = false;
                    last_elapsed = Some(s.app.model.elapsed);
                    tui.draw(&mut s.app)?;
                    last_frame = Some(std::time::Instant::now());
                }
            }
            match tui.next_event(FRAME / 2)? {
                Some(Event::Key(k)) => {
                    let mut s = lock(state);
                    if let Some(a) = s.app.handle_key(k) {
                        s.actions.push_back(a);
                    }
                    s.dirty = true;
                    // Keys are answered on the next frame, without waiting for the pace.
                    last_frame = None;
                }
                Some(Event::Resize(..)) => {
                    lock(state).dirty = true;
                    last_frame = None;
                }
                _ => {}
            }
        }
    })();
    let restored = tui.restore();
    result.and(restored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::PhaseTimings;
    use crate::rollout::plan::PlanLocation;

    fn dev(i: u8) -> EngineDevice {
        let mut b = [0u8; 16];
        b[15] = i;
        EngineDevice {
            uuid: DeviceUuid(b),
            name: format!("light {i}"),
            location: PlanLocation {
                building: "HQ".into(),
                floor: "2".into(),
                room: "201".into(),
            },
            template: "light".into(),
            auth: "static".into(),
            stored: None,
        }
    }

    fn ev(t_ms: u64, d: Option<&EngineDevice>, kind: EventKind) -> RolloutEvent {
        RolloutEvent {
            t_ms,
            uuid: d.map(|d| d.uuid.to_string()),
            kind,
        }
    }

    fn model(devs: &[EngineDevice]) -> ViewModel {
        let mut m = ViewModel::new("net", "sim");
        for d in devs {
            m.devices.upsert(planned_row(d));
        }
        m
    }

    const OPTS: MapOptions = MapOptions { prompts: true };

    fn feed(m: &mut ViewModel, e: &RolloutEvent) -> Vec<Update> {
        let ups = updates(e, m, OPTS);
        for u in ups.clone() {
            m.apply(u).unwrap();
        }
        ups
    }

    #[test]
    fn a_device_s_life_reaches_the_view_model() {
        let d = dev(1);
        let mut m = model(std::slice::from_ref(&d));
        let u = view_uuid(&d.uuid);
        feed(
            &mut m,
            &ev(
                0,
                None,
                EventKind::Start {
                    devices: 1,
                    already_done: 0,
                    clock: "virtual",
                },
            ),
        );
        assert_eq!(m.run, RunState::Running);
        feed(&mut m, &ev(0, Some(&d), EventKind::Scheduled));
        assert_eq!(m.devices.get(&u).unwrap().stage, Stage::Scheduled);
        feed(
            &mut m,
            &ev(10, Some(&d), EventKind::ProvisioningStarted { attempt: 2 }),
        );
        let r = m.devices.get(&u).unwrap();
        assert_eq!((r.stage, r.attempt), (Stage::Provisioning, 2));
        assert_eq!(r.stage_since, Duration::from_millis(10));
        assert_eq!(m.devices.counts().in_progress, 1);
        feed(
            &mut m,
            &ev(
                20,
                Some(&d),
                EventKind::Capabilities {
                    elements: 2,
                    algorithms: vec!["CMAC".into(), "HMAC".into()],
                    public_key_oob: false,
                    static_oob: true,
                    output_oob_size: 4,
                    output_oob_actions: vec!["Blink".into(), "Output Numeric".into()],
                    input_oob_size: 0,
                    input_oob_actions: Vec::new(),
                },
            ),
        );
        let c = m.details[&u].capabilities.clone().unwrap();
        assert_eq!((c.elements, c.static_oob, c.output_size), (2, true, 4));
        assert_eq!(c.output_oob, ["Blink", "Output Numeric"]);
        assert!(c.input_oob.is_empty());
        feed(
            &mut m,
            &ev(
                30,
                Some(&d),
                EventKind::OobRequested {
                    action: "Output Numeric".into(),
                    size: 4,
                },
            ),
        );
        assert_eq!(
            m.prompts[0].kind,
            OobKind::Output {
                action: OutputAction::Numeric,
                size: 4
            }
        );
        feed(
            &mut m,
            &ev(
                40,
                Some(&d),
                EventKind::Authenticated {
                    method: "output".into(),
                },
            ),
        );
        assert!(m.prompts.is_empty());
        assert_eq!(m.details[&u].auth.as_deref(), Some("output"));
        feed(
            &mut m,
            &ev(
                50,
                Some(&d),
                EventKind::Provisioned {
                    address: 0x0012,
                    elements: 2,
                },
            ),
        );
        let r = m.devices.get(&u).unwrap();
        assert_eq!((r.stage, r.address), (Stage::Committed, Some(0x12)));
        feed(
            &mut m,
            &ev(
                60,
                Some(&d),
                EventKind::ConfiguringStarted {
                    attempt: 1,
                    requests: 7,
                },
            ),
        );
        assert_eq!(m.devices.get(&u).unwrap().stage, Stage::Configuring);
        assert_eq!(m.details[&u].config_steps[0].status, StepStatus::Running);
        feed(&mut m, &ev(70, Some(&d), EventKind::Configured));
        assert_eq!(m.details[&u].config_steps[0].status, StepStatus::Done);
        feed(&mut m, &ev(70, Some(&d), EventKind::VerifyingStarted));
        assert_eq!(m.devices.get(&u).unwrap().stage, Stage::Verifying);
        feed(
            &mut m,
            &ev(
                80,
                Some(&d),
                EventKind::Done {
                    timings: PhaseTimings::default(),
                },
            ),
        );
        assert_eq!(m.devices.get(&u).unwrap().stage, Stage::Done);
        assert_eq!(m.devices.counts().done, 1);
        assert!(
            m.details[&u]
                .config_steps
                .iter()
                .all(|s| s.status == StepStatus::Done)
        );
        assert!(m.log.iter().any(|l| l.text.starts_with("light 1: done")));
    }

    #[test]
    fn failures_retries_and_run_state_reach_the_view_model() {
        let d = dev(2);
        let mut m = model(std::slice::from_ref(&d));
        let u = view_uuid(&d.uuid);
        feed(
            &mut m,
            &ev(
                5,
                Some(&d),
                EventKind::Retrying {
                    phase: Phase::Provisioning,
                    reason: "no answer".into(),
                    attempt: 2,
                    backoff_ms: 2000,
                },
            ),
        );
        let r = m.devices.get(&u).unwrap();
        assert_eq!(r.stage, Stage::Retrying);
        assert_eq!(r.last_error.as_deref(), Some("provisioning: no answer"));
        feed(
            &mut m,
            &ev(
                9,
                Some(&d),
                EventKind::Failed {
                    phase: Phase::Provisioning,
                    reason: "no answer".into(),
                },
            ),
        );
        assert_eq!(m.devices.counts().failed, 1);
        assert_eq!(m.log.back().unwrap().level, Level::Error);
        // A retry puts it back in the queue; the error stays until it is done.
        feed(&mut m, &ev(12, Some(&d), EventKind::Scheduled));
        let r = m.devices.get(&u).unwrap();
        assert_eq!((r.stage, m.devices.counts().failed), (Stage::Scheduled, 0));
        feed(&mut m, &ev(13, None, EventKind::Paused));
        assert_eq!(m.run, RunState::Paused);
        feed(&mut m, &ev(14, None, EventKind::Unpaused));
        assert_eq!(m.run, RunState::Running);
        feed(&mut m, &ev(15, Some(&d), EventKind::Skipped));
        assert_eq!(m.devices.get(&u).unwrap().stage, Stage::Skipped);
        feed(&mut m, &ev(16, Some(&d), EventKind::Excluded));
        assert_eq!(m.devices.get(&u).unwrap().stage, Stage::Excluded);
        feed(
            &mut m,
            &ev(
                17,
                Some(&d),
                EventKind::Resumed {
                    stage: EngineStage::Committed,
                    address: Some(7),
                },
            ),
        );
        let r = m.devices.get(&u).unwrap();
        assert_eq!((r.stage, r.address), (Stage::Committed, Some(7)));
    }

    #[test]
    fn unplanned_devices_fill_the_discovery_screen() {
        let planned = dev(1);
        let stranger = dev(9);
        let mut m = model(std::slice::from_ref(&planned));
        let u = view_uuid(&stranger.uuid);
        feed(
            &mut m,
            &ev(
                3,
                Some(&stranger),
                EventKind::Unplanned {
                    rssi: Some(-61),
                    oob_info: 0x0002,
                    uri_hash: Some("0a0b0c0d".into()),
                    taken: false,
                    reason: "not in the plan".into(),
                },
            ),
        );
        assert_eq!(m.discovery.len(), 1);
        let b = &m.discovery[0];
        assert_eq!((b.uuid, b.rssi), (u, -61));
        assert_eq!(b.uri_hash.as_deref(), Some("0a0b0c0d"));
        assert!(b.oob_info.contains("URI"), "{}", b.oob_info);
        // Adopted: it leaves the discovery screen and becomes a row.
        feed(
            &mut m,
            &ev(
                4,
                Some(&stranger),
                EventKind::Unplanned {
                    rssi: Some(-61),
                    oob_info: 0,
                    uri_hash: None,
                    taken: true,
                    reason: "added by the installer".into(),
                },
            ),
        );
        assert!(m.discovery.is_empty());
        feed(
            &mut m,
            &ev(
                4,
                Some(&stranger),
                EventKind::Discovered {
                    name: "unplanned-00000000".into(),
                    template: "light".into(),
                    auth: "none".into(),
                },
            ),
        );
        assert_eq!(m.devices.len(), 2);
        assert_eq!(m.devices.get(&u).unwrap().stage, Stage::Discovered);
        // Ignored: gone from the screen, and no row.
        let other = dev(10);
        feed(
            &mut m,
            &ev(
                5,
                Some(&other),
                EventKind::Unplanned {
                    rssi: None,
                    oob_info: 0,
                    uri_hash: None,
                    taken: false,
                    reason: "no rule".into(),
                },
            ),
        );
        assert_eq!(m.discovery[0].rssi, i8::MIN);
        feed(&mut m, &ev(6, Some(&other), EventKind::Ignored));
        assert!(m.discovery.is_empty());
        assert_eq!(m.devices.len(), 2);
    }

    #[test]
    fn prompts_stay_in_the_log_when_a_simulated_installer_answers() {
        let d = dev(3);
        let m = model(std::slice::from_ref(&d));
        let e = ev(
            1,
            Some(&d),
            EventKind::OobDisplay {
                value: "4821".into(),
                action: "Input Numeric".into(),
            },
        );
        let with = updates(&e, &m, MapOptions { prompts: true });
        assert!(with.iter().any(|u| matches!(
            u,
            Update::Prompt(OobPrompt {
                kind: OobKind::Input {
                    action: InputAction::Numeric,
                    ..
                },
                ..
            })
        )));
        let without = updates(&e, &m, MapOptions { prompts: false });
        assert!(!without.iter().any(|u| matches!(u, Update::Prompt(_))));
        assert!(without.iter().any(|u| matches!(u, Update::Log(_))));
    }

    #[test]
    fn actions_become_engine_commands() {
        let u = Uuid([7; 16]);
        let d = DeviceUuid([7; 16]);
        let cases = [
            (Action::Start, Some(Command::Resume)),
            (Action::Resume, Some(Command::Resume)),
            (Action::Pause, Some(Command::Pause)),
            (Action::Retry(u), Some(Command::Retry(d))),
            (Action::Skip(u), Some(Command::Skip(d))),
            (Action::Exclude(u), Some(Command::Exclude(d))),
            (Action::Identify(u), Some(Command::Identify(d))),
            (
                Action::AnswerOob(u, "12".into()),
                Some(Command::AnswerOob(d, "12".into())),
            ),
            (Action::AddToPlan(u), Some(Command::Adopt(d))),
            (Action::Ignore(u), Some(Command::Ignore(d))),
            (Action::OpenDetail(u), None),
            (Action::Quit, None),
        ];
        for (a, c) in cases {
            assert_eq!(command(&a), c, "{a:?}");
        }
    }

    #[test]
    fn refused_commands_are_explained_not_applied() {
        let d = dev(1);
        let engine = Engine::new(
            Instant::ZERO,
            crate::rollout::EngineConfig::default(),
            vec![d.clone()],
            "virtual",
        );
        // Scheduled: a retry is accepted (nothing to do), an OOB answer is not.
        assert!(check(&engine, &Command::Retry(d.uuid)).is_ok());
        let e = check(&engine, &Command::AnswerOob(d.uuid, "1".into())).unwrap_err();
        assert!(e.contains("no session waiting"), "{e}");
        let stranger = DeviceUuid([9; 16]);
        assert!(check(&engine, &Command::Skip(stranger)).is_err());
        assert!(check(&engine, &Command::Ignore(d.uuid)).is_err());
        assert!(check(&engine, &Command::Adopt(d.uuid)).is_err());
    }

    #[test]
    fn transcript_lines_and_composition_parse() {
        let e = transcript_entry("< Provisioning Capabilities (12 B, +0.041 s)").unwrap();
        assert_eq!(e.direction, Direction::FromDevice);
        assert_eq!((e.pdu.as_str(), e.len), ("Capabilities", 12));
        assert_eq!(e.at, Duration::from_millis(41));
        let e = transcript_entry("> Provisioning Invite").unwrap();
        assert_eq!((e.direction, e.len), (Direction::ToDevice, 0));
        assert!(transcript_entry("? nonsense").is_none());
        assert!(transcript_entry("").is_none());
        let c =
            composition_view("cid 05f1 pid 0001 vid 0001 crpl 32 elements [0000 0002 1000] [1000]");
        assert_eq!(c.ids, "cid 05f1 pid 0001 vid 0001 crpl 32");
        assert_eq!(c.elements.len(), 2);
        assert_eq!(c.elements[0].models, ["0000", "0002", "1000"]);
        assert_eq!(c.elements[1].models, ["1000"]);
    }

    #[test]
    fn updates_for_unknown_devices_are_dropped_not_refused() {
        let m = model(&[]);
        let d = dev(4);
        let ups = updates(
            &ev(
                1,
                Some(&d),
                EventKind::Provisioned {
                    address: 1,
                    elements: 1,
                },
            ),
            &m,
            OPTS,
        );
        let mut m2 = m.clone();
        for u in ups {
            m2.apply(u).unwrap();
        }
        assert!(m2.devices.is_empty());
    }

    // --- key refresh ---

    fn kr_feed(m: &mut ViewModel, names: &BTreeMap<u16, String>, r: &Report) -> Vec<Update> {
        let ups = kr_updates(r, m, names, Duration::from_secs(5));
        for u in ups.clone() {
            m.apply(u).unwrap();
        }
        ups
    }

    fn kr_node(m: &ViewModel, a: u16) -> KrNode {
        m.key_refresh
            .as_ref()
            .unwrap()
            .nodes
            .iter()
            .find(|n| n.address == a)
            .cloned()
            .unwrap()
    }

    #[test]
    fn a_key_refresh_reaches_the_view_model() {
        use crate::net::key_refresh::{
            FailureReason, KeyRefreshSummary, NodeFailure, Phase as KrPhaseNet, ProvisionerKeys,
        };
        use crate::tools::key_refresh::RosterNode;
        let names: BTreeMap<u16, String> = [
            (1, "Lamp 1"),
            (3, "Lamp 2"),
            (5, "Lamp 3"),
            (7, "Lamp 4"),
            (9, "Lamp 5"),
        ]
        .into_iter()
        .map(|(a, n)| (a, n.to_string()))
        .collect();
        let mut m = ViewModel::new("HQ", "sim");
        let ev = |e: KeyRefreshEvent| Report::Event(e);
        kr_feed(&mut m, &names, &Report::Excluded { address: 9 });
        // A resumed run: Lamp 3 had acknowledged phase 1 before; Lamp 5 is excluded.
        let roster = [
            (1, 0, false),
            (3, 0, false),
            (5, 1, false),
            (7, 0, false),
            (9, 0, true),
        ]
        .into_iter()
        .map(|(address, completed, excluded)| RosterNode {
            address,
            completed,
            excluded,
        })
        .collect();
        kr_feed(
            &mut m,
            &names,
            &Report::Start {
                net_key_index: 0,
                app_keys: vec![0, 1],
                nodes: 4,
                excluded: 1,
                resumed: true,
                roster,
            },
        );
        assert_eq!(m.run, RunState::Running);
        let kr = m.key_refresh.clone().unwrap();
        assert_eq!((kr.net_key_index, kr.nodes.len()), (0, 5));
        assert_eq!(kr_node(&m, 5).phase, KrPhase::Distributing);
        assert_eq!(kr_node(&m, 9).status, StepStatus::Excluded);
        assert_eq!(kr_node(&m, 1).name, "Lamp 1");
        assert!(m.log.iter().any(|l| l.text.starts_with(
            "Resuming the key refresh of NetKey 0 and AppKeys 0, 1: 4 nodes, 1 excluded"
        )));
        assert!(
            m.log
                .iter()
                .any(|l| l.text == "excluded 0009 (Lamp 5)" && l.level == Level::Warn)
        );

        kr_feed(&mut m, &names, &Report::NotOnAir { address: 7 });
        assert!(
            matches!(kr_node(&m, 7).status, StepStatus::Failed(ref w) if w.contains("building file"))
        );
        kr_feed(
            &mut m,
            &names,
            &ev(KeyRefreshEvent::PhaseStarted(KrPhaseNet::KeyDistribution)),
        );
        kr_feed(
            &mut m,
            &names,
            &ev(KeyRefreshEvent::ProvisionerKeys(ProvisionerKeys {
                tx_new: false,
                rx_old: true,
            })),
        );
        let kr = m.key_refresh.clone().unwrap();
        assert_eq!(kr.phase, KrPhase::Distributing);
        assert_eq!(kr_node(&m, 1).status, StepStatus::Running);
        // Done with phase 1 in the earlier run; left out of the procedure, or off the air:
        // unchanged.
        assert_eq!(kr_node(&m, 5).status, StepStatus::Done);
        assert_eq!(kr_node(&m, 9).status, StepStatus::Excluded);
        assert!(matches!(kr_node(&m, 7).status, StepStatus::Failed(_)));

        kr_feed(
            &mut m,
            &names,
            &ev(KeyRefreshEvent::NodeUpdated {
                address: 1,
                phase: KrPhaseNet::KeyDistribution,
            }),
        );
        kr_feed(
            &mut m,
            &names,
            &ev(KeyRefreshEvent::NodeUpdated {
                address: 3,
                phase: KrPhaseNet::KeyDistribution,
            }),
        );
        kr_feed(
            &mut m,
            &names,
            &ev(KeyRefreshEvent::NodeFailed {
                address: 7,
                phase: KrPhaseNet::KeyDistribution,
                reason: FailureReason::Unreachable { rounds: 3 },
            }),
        );
        let n1 = kr_node(&m, 1);
        assert_eq!(
            (n1.phase, n1.status),
            (KrPhase::Distributing, StepStatus::Done)
        );
        assert_eq!(
            kr_node(&m, 7).status,
            StepStatus::Failed("unreachable: no answer after 3 rounds of requests".into())
        );
        assert!(m.log.iter().any(|l| l.level == Level::Error
            && l.text == "0007 (Lamp 4): FAILED in phase 1: no answer after 3 rounds of requests"));
        kr_feed(
            &mut m,
            &names,
            &ev(KeyRefreshEvent::PhaseComplete(KrPhaseNet::KeyDistribution)),
        );
        kr_feed(
            &mut m,
            &names,
            &ev(KeyRefreshEvent::PhaseStarted(KrPhaseNet::UsingNewKeys)),
        );
        kr_feed(&mut m, &names, &ev(KeyRefreshEvent::Beacons(Some(true))));
        assert_eq!(m.key_refresh.as_ref().unwrap().phase, KrPhase::Switching);
        for a in [1, 3, 5] {
            assert_eq!(kr_node(&m, a).status, StepStatus::Running, "{a}");
        }
        assert!(matches!(kr_node(&m, 7).status, StepStatus::Failed(_)));
        for p in [KrPhaseNet::UsingNewKeys, KrPhaseNet::Revoking] {
            if p == KrPhaseNet::Revoking {
                kr_feed(&mut m, &names, &ev(KeyRefreshEvent::PhaseStarted(p)));
            }
            for a in [1, 3, 5] {
                kr_feed(
                    &mut m,
                    &names,
                    &ev(KeyRefreshEvent::NodeUpdated {
                        address: a,
                        phase: p,
                    }),
                );
            }
        }
        let c = m.key_refresh.as_ref().unwrap().counts();
        assert_eq!(
            (c.nodes, c.confirmed, c.failed, c.excluded),
            (4, [3, 3, 3], 1, 1)
        );
        kr_feed(
            &mut m,
            &names,
            &ev(KeyRefreshEvent::Finished(KeyRefreshSummary {
                updated: vec![1, 3, 5],
                left_behind: vec![(
                    7,
                    0,
                    Some(NodeFailure {
                        phase: KrPhaseNet::KeyDistribution,
                        reason: FailureReason::Unreachable { rounds: 3 },
                    }),
                )],
                excluded: vec![9],
                stopped: None,
            })),
        );
        assert_eq!(m.run, RunState::Finished);
        assert_eq!(m.key_refresh.as_ref().unwrap().phase, KrPhase::Normal);
        let last: Vec<&str> = m
            .log
            .iter()
            .rev()
            .take(2)
            .map(|l| l.text.as_str())
            .collect();
        assert_eq!(
            last,
            [
                "nodes were left behind: q quits, and the same command resumes them",
                "Finished: 3 nodes use the new keys, 1 left behind, 1 excluded"
            ]
        );
        // Every log line is stamped with the run's elapsed time; none carries a key.
        assert!(m.log.iter().all(|l| l.at == Duration::from_secs(5)));
    }

    #[test]
    fn key_refresh_node_updates_need_a_running_key_refresh() {
        use crate::net::key_refresh::Phase as KrPhaseNet;
        // Before the start nothing lists the nodes: an event is logged, not applied.
        let m = ViewModel::new("HQ", "sim");
        let ups = kr_updates(
            &Report::Event(KeyRefreshEvent::PhaseStarted(KrPhaseNet::KeyDistribution)),
            &m,
            &BTreeMap::new(),
            Duration::ZERO,
        );
        assert!(ups.iter().all(|u| matches!(u, Update::Log(_))), "{ups:?}");
        assert_eq!(kr_phase(0), KrPhase::Normal);
        assert_eq!(kr_phase(3), KrPhase::Revoking);
        assert_eq!(kr_phase(9), KrPhase::Revoking);
    }
}
