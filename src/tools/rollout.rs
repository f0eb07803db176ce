//! `meshprov rollout PLAN.toml` and `meshprov demo`: the headless front end of the rollout
//! engine ([`crate::rollout`]) — JSON lines or one line per device on stdout, a progress bar on
//! stderr when it is a terminal, `--report FILE.json`, and the exit codes 0 (every planned
//! device done), 3 (some are not), 2 (plan or usage error, with the plan's line and field), 1
//! (internal error: the store, the radio).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

pub use crate::rollout::EXIT_INCOMPLETE;
use crate::rollout::{
    self, Command, Engine, EventKind, Observer, Plan, RolloutError, RolloutEvent, RolloutReport,
    SharedStore, Stage,
};
use crate::sim::building::Building;

/// `meshprov rollout` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RolloutArgs {
    /// The plan (TOML; README "Rollout plans").
    #[arg(value_name = "PLAN.toml")]
    pub plan: PathBuf,
    /// No terminal UI: one line per event on stdout (also when stdout is not a terminal, and
    /// with --json).
    #[arg(long)]
    pub headless: bool,
    /// One JSON object per event on stdout (schema in README); implies --headless.
    #[arg(long)]
    pub json: bool,
    /// Simulated radio in the terminal UI: virtual seconds per wall second (headless runs are
    /// not paced).
    #[arg(long, value_name = "X", default_value_t = DEFAULT_SPEED)]
    pub speed: f64,
    /// Write each device's outcome and phase timings to this JSON file.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// The radio, overriding the plan's `provisioner.radio`: `sim:FILE.toml`,
    /// `meshd-unit:DIR`, `bluez`, `bluez:hciN` or `btleplug` (cargo feature).
    #[arg(long, value_name = "RADIO")]
    pub radio: Option<String>,
    /// PB-ADV sessions at once, overriding the plan's `policy.concurrency` (1–64).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Simulated radio: the seed (same seed, same run).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated radio: advertising loss 0.0–0.9, overriding the building's.
    #[arg(long, value_name = "P")]
    pub loss: Option<f64>,
    /// Real radios, headless: answer Output OOB prompts (`oob_requested` events) with lines
    /// `UUID VALUE` on stdin. Without it, a device that shows an Output OOB value fails at once.
    #[arg(long)]
    pub oob_stdin: bool,
}

/// `meshprov demo` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Devices in the sample building.
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub devices: usize,
    /// The simulation's seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// No terminal UI (see `rollout --headless`).
    #[arg(long)]
    pub headless: bool,
    /// JSON lines on stdout (implies --headless).
    #[arg(long)]
    pub json: bool,
    /// In the terminal UI: simulated seconds per wall second (the default shows the 30-device
    /// building's two minutes in about twelve seconds).
    #[arg(long, value_name = "X", default_value_t = DEFAULT_SPEED)]
    pub speed: f64,
    /// Where to write the building, the plan, the CA and the store (`DIR/network.db`); the
    /// same DIR again resumes. Default: a new temporary directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Virtual seconds per wall second of a simulated run in the terminal UI (`--speed`).
pub const DEFAULT_SPEED: f64 = 10.0;

/// What the front end prints.
struct Printer {
    json: bool,
    bar: Option<indicatif::ProgressBar>,
    out: std::io::Stdout,
    /// `--oob-stdin`: the installer's `UUID VALUE` lines.
    oob: Option<std::sync::mpsc::Receiver<(crate::uuid::DeviceUuid, String)>>,
}

impl Printer {
    fn new(json: bool) -> Self {
        Self {
            json,
            bar: None,
            out: std::io::stdout(),
            oob: None,
        }
    }

    fn line(&mut self, s: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| {
                let _ = writeln!(self.out, "{s}");
            }),
            None => {
                let _ = writeln!(self.out, "{s}");
            }
        }
    }
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// The human line of an event, if it gets one.
pub fn text_line(ev: &RolloutEvent) -> Option<String> {
    let who = ev.uuid.clone().unwrap_or_default();
    let at = secs(ev.t_ms);
    Some(match &ev.kind {
        EventKind::Start {
            devices,
            already_done,
            clock,
        } => format!(
            "rollout of {devices} devices ({already_done} already done), {} time",
            if *clock == "virtual" {
                "simulated"
            } else {
                "wall"
            }
        ),
        EventKind::Resumed { stage, address } => format!(
            "{at:>9}  {who}  resumed: {} at {}",
            match stage {
                Stage::Done => "configured",
                Stage::Excluded => "excluded",
                _ => "provisioned, to configure",
            },
            address.map_or("-".into(), |a| format!("0x{a:04x}"))
        ),
        EventKind::Provisioned { address, elements } => {
            format!("{at:>9}  {who}  provisioned at 0x{address:04x} ({elements} elements)")
        }
        EventKind::OobRequested { action, size } => {
            format!("{at:>9}  {who}  reads its Output OOB value ({action}, {size} digits)")
        }
        EventKind::OobDisplay { value, action } => {
            format!("{at:>9}  {who}  enter {value} on the device ({action})")
        }
        EventKind::Done { timings } => format!(
            "{at:>9}  {who}  done (provisioning {}, configuring {}, verifying {})",
            secs(timings.provisioning_ms),
            secs(timings.configuring_ms),
            secs(timings.verifying_ms)
        ),
        EventKind::Retrying {
            phase,
            reason,
            attempt,
            backoff_ms,
        } => format!(
            "{at:>9}  {who}  {} failed ({reason}); attempt {attempt} in {}",
            phase.as_str(),
            secs(*backoff_ms)
        ),
        EventKind::Failed { phase, reason } => {
            format!("{at:>9}  {who}  FAILED in {}: {reason}", phase.as_str())
        }
        EventKind::Unplanned {
            rssi,
            taken,
            reason,
            ..
        } => format!(
            "{at:>9}  {who}  unplanned device heard{}: {} ({reason})",
            rssi.map_or(String::new(), |r| format!(" at {r} dBm")),
            if *taken { "taken" } else { "not taken" }
        ),
        EventKind::Ignored => format!("{at:>9}  {who}  ignored (unplanned)"),
        EventKind::Skipped => format!("{at:>9}  {who}  skipped"),
        EventKind::Excluded => format!("{at:>9}  {who}  excluded"),
        EventKind::Identify { how } => format!("{at:>9}  {who}  identify: {how}"),
        EventKind::Paused => format!("{at:>9}  paused"),
        EventKind::Unpaused => format!("{at:>9}  resumed"),
        EventKind::Stopping => format!("{at:>9}  stopping"),
        EventKind::Summary(s) => {
            let mut t = format!("{}\n", s.message);
            match s.virtual_time_ms {
                Some(v) => t.push_str(&format!(
                    "  simulated time {}, wall time {}, {} retries",
                    secs(v),
                    secs(s.wall_time_ms),
                    s.retries
                )),
                None => t.push_str(&format!(
                    "  wall time {}, {} retries",
                    secs(s.wall_time_ms),
                    s.retries
                )),
            }
            t
        }
        _ => return None,
    })
}

impl Observer for Printer {
    fn event(&mut self, ev: &RolloutEvent) {
        if let EventKind::Start { devices, .. } = &ev.kind
            && std::io::stderr().is_terminal()
        {
            let bar = indicatif::ProgressBar::new(*devices as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} devices finished, {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            self.bar = Some(bar);
        }
        if self.json {
            let line = serde_json::to_string(ev).unwrap_or_default();
            self.line(&line);
        } else if let Some(l) = text_line(ev) {
            self.line(&l);
        }
        if let Some(b) = &self.bar {
            match &ev.kind {
                EventKind::Done { .. }
                | EventKind::Failed { .. }
                | EventKind::Skipped
                | EventKind::Excluded => b.inc(1),
                EventKind::Resumed {
                    stage: Stage::Done | Stage::Excluded,
                    ..
                } => b.inc(1),
                EventKind::Summary(_) => b.finish_and_clear(),
                _ => {}
            }
        }
    }

    fn tick(&mut self, engine: &Engine) -> Vec<Command> {
        if let Some(b) = &self.bar {
            let n = engine
                .snapshot(crate::time::Instant::ZERO)
                .iter()
                .filter(|d| {
                    matches!(
                        d.stage,
                        Stage::Provisioning | Stage::Configuring | Stage::Verifying
                    )
                })
                .count();
            b.set_message(format!("{n} in progress"));
        }
        // --oob-stdin: the answers typed so far.
        let mut commands = Vec::new();
        if let Some(rx) = &self.oob {
            while let Ok((uuid, value)) = rx.try_recv() {
                commands.push(Command::AnswerOob(uuid, value));
            }
        }
        commands
    }
}

#[derive(Serialize)]
struct ReportFile<'a> {
    format: &'static str,
    plan: String,
    store: String,
    summary: &'a rollout::Summary,
    devices: &'a [rollout::DeviceStatus],
}

fn write_report(path: &Path, plan: &Plan, report: &RolloutReport) -> Result<(), RolloutError> {
    let file = ReportFile {
        format: "meshprov-rollout-report/1",
        plan: plan.path.display().to_string(),
        store: plan.store.display().to_string(),
        summary: &report.summary,
        devices: &report.devices,
    };
    let text = serde_json::to_string_pretty(&file)
        .map_err(|e| RolloutError::Usage(format!("report: {e}")))?;
    std::fs::write(path, text + "\n")
        .map_err(|e| RolloutError::Usage(format!("cannot write {}: {e}", path.display())))
}

/// Runs a plan as `args` say, printing as it goes; returns the process exit code.
pub fn rollout(args: &RolloutArgs) -> i32 {
    let mut printer = Printer::new(args.json);
    if args.oob_stdin {
        printer.oob = Some(oob_lines());
    }
    // --- the terminal UI (issue 9) ---
    // `--oob-stdin` is for batch runs: it keeps the run headless.
    let tui = !args.headless && !args.json && !args.oob_stdin && std::io::stdout().is_terminal();
    if tui && !(args.speed.is_finite() && args.speed > 0.0 && args.speed <= 10_000.0) {
        return fail(
            &RolloutError::Usage(format!(
                "invalid --speed {}: give simulated seconds per wall second, more than 0 and at most 10000",
                args.speed
            )),
            args.json,
        );
    }
    let front = if tui {
        Front::Tui { speed: args.speed }
    } else {
        Front::Headless(&mut printer)
    };
    // --- end terminal UI ---
    match run_plan(args, front) {
        Ok((plan, report)) => {
            if let Some(path) = &args.report
                && let Err(e) = write_report(path, &plan, &report)
            {
                return fail(&e, args.json);
            }
            report.exit_code()
        }
        Err(e) => fail(&e, args.json),
    }
}

/// `--oob-stdin`: a thread reads `UUID VALUE` lines from stdin until it closes; a line that
/// does not parse is reported on stderr and skipped.
fn oob_lines() -> std::sync::mpsc::Receiver<(crate::uuid::DeviceUuid, String)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            match parse_oob_line(&line) {
                Ok(Some(answer)) => {
                    if tx.send(answer).is_err() {
                        break;
                    }
                }
                Ok(None) => {}
                Err(e) => eprintln!("meshprov: --oob-stdin: {e}"),
            }
        }
    });
    rx
}

/// One `--oob-stdin` line: `UUID VALUE` (blank lines and `#` comments are skipped).
pub fn parse_oob_line(line: &str) -> Result<Option<(crate::uuid::DeviceUuid, String)>, String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return Ok(None);
    }
    let mut parts = t.split_whitespace();
    let (Some(u), Some(v), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("'{t}': expected UUID VALUE"));
    };
    let uuid = u
        .parse()
        .map_err(|e| format!("'{t}': {u} is not a device UUID: {e}"))?;
    Ok(Some((uuid, v.to_string())))
}

fn fail(e: &RolloutError, json: bool) -> i32 {
    if json {
        let v = match e {
            RolloutError::Plan(p) => serde_json::json!({
                "event": "error", "error": p.to_string(), "file": p.file, "line": p.line, "field": p.field,
            }),
            other => serde_json::json!({"event": "error", "error": other.to_string()}),
        };
        let _ = writeln!(std::io::stdout(), "{v}");
    }
    eprintln!("meshprov: {e}");
    e.exit_code()
}

/// Who watches the run: the headless printer, or the terminal UI.
enum Front<'a> {
    Headless(&'a mut dyn Observer),
    Tui { speed: f64 },
}

fn run_plan(args: &RolloutArgs, front: Front<'_>) -> Result<(Plan, RolloutReport), RolloutError> {
    if let Some(l) = args.loss.filter(|l| !(0.0..=0.9).contains(l)) {
        return Err(RolloutError::Usage(format!(
            "invalid --loss {l}: give a probability from 0.0 to 0.9"
        )));
    }
    if let Some(c) = args.concurrency.filter(|c| !(1..=64).contains(c)) {
        return Err(RolloutError::Usage(format!(
            "--concurrency {c} is not in 1..=64 (one PB-ADV link table holds 64 links)"
        )));
    }
    let plan = Plan::load(&args.plan)?;
    let radio = args.radio.clone().or_else(|| plan.radio.clone()).ok_or_else(|| {
        RolloutError::Usage(
            "no radio: give --radio (sim:FILE.toml, meshd-unit:DIR, bluez) or provisioner.radio in the plan".into(),
        )
    })?;
    let mut rng = crate::store::os_rng()?;
    // An encrypted store: its passphrase before the run starts (in the terminal UI, its
    // dialog; `--oob-stdin` keeps standard input for the OOB answers).
    let prompt = match front {
        Front::Tui { .. } => crate::tools::passphrase::Prompt::Tui,
        Front::Headless(_) if args.oob_stdin => crate::tools::passphrase::Prompt::Never,
        Front::Headless(_) => crate::tools::passphrase::Prompt::Terminal,
    };
    let store = rollout::open_store_with(&plan, &mut rng, &mut |s| {
        crate::tools::passphrase::unlock(s, prompt).map_err(|f| {
            if f.exit_code == crate::exit::USAGE {
                RolloutError::Usage(f.message)
            } else {
                RolloutError::Store(crate::store::StoreError::InvalidArgument(f.message))
            }
        })
    })?;
    let store: SharedStore = std::rc::Rc::new(std::cell::RefCell::new(store));
    let prepared = rollout::prepare(&plan, &mut store.borrow_mut(), &mut rng)?;
    // --- the terminal UI (issue 9) ---
    let mut tui_observer: Option<crate::tools::tui_glue::TuiObserver> = None;
    // The terminal UI's dialog answers Output OOB prompts on real radios.
    let answers = args.oob_stdin || matches!(front, Front::Tui { .. });
    let observer: &mut dyn Observer = match front {
        Front::Headless(o) => o,
        Front::Tui { speed } => {
            let sim = radio.starts_with("sim:");
            let label = if let Some(file) = radio.strip_prefix("sim:") {
                let name = Path::new(file)
                    .file_name()
                    .map_or(file.into(), |n| n.to_string_lossy());
                format!("sim {name} (seed {}, {speed}× speed)", args.seed)
            } else {
                radio.clone()
            };
            let templates = plan.templates.clone();
            let resolved = prepared.resolved.clone();
            let by_uuid: std::collections::BTreeMap<_, _> = plan
                .devices
                .iter()
                .map(|d| (d.uuid, d.template.clone()))
                .collect();
            let steps: crate::tools::tui_glue::StepNames = Box::new(move |u, address| {
                by_uuid
                    .get(u)
                    .and_then(|t| templates.get(t))
                    .map(|t| {
                        rollout::template::requests(t, address, &resolved)
                            .iter()
                            .map(rollout::template::request_name)
                            .collect()
                    })
                    .unwrap_or_default()
            });
            let started = crate::tools::tui_glue::TuiObserver::start(
                &prepared.devices,
                crate::tools::tui_glue::TuiOptions {
                    network: plan.network_name.clone(),
                    radio: label,
                    speed: sim.then_some(speed),
                    // On the simulated radio the simulated installer reads Output OOB values
                    // and types Input OOB ones: the prompts go to the log, not into dialogs.
                    prompts: !sim,
                },
                Some(steps),
            )
            .map_err(|e| RolloutError::Usage(format!("cannot open the terminal UI: {e}")))?;
            tui_observer.insert(started)
        }
    };
    // --- end terminal UI ---
    let report = if let Some(file) = radio.strip_prefix("sim:") {
        let building =
            Building::load(Path::new(file)).map_err(|e| RolloutError::Usage(e.to_string()))?;
        let opts = rollout::sim_driver::SimOptions {
            seed: args.seed,
            loss: args.loss,
            concurrency: args.concurrency,
            ..Default::default()
        };
        rollout::sim_driver::run(&plan, &building, store, &prepared, &opts, observer)?.report
    } else if let Some(dir) = radio.strip_prefix("meshd-unit:") {
        let rt = runtime()?;
        let mut r = {
            let _g = rt.enter();
            crate::radio::unit::UnitRadio::open(Path::new(dir))
                .map_err(|e| RolloutError::Usage(format!("{radio}: {e}")))?
        };
        let opts = rollout::live_driver::LiveRolloutOptions {
            pb_adv: crate::tools::provision::meshd_pb_adv(),
            client: crate::tools::node::meshd_client(),
            ..live_options(answers)
        };
        rt.block_on(rollout::live_driver::run(
            &mut r, &plan, store, &prepared, &opts, observer,
        ))?
    } else if radio == "bluez" || radio.starts_with("bluez:") {
        bluez(
            &radio,
            &plan,
            store,
            &prepared,
            &live_options(answers),
            observer,
        )?
    } else if radio == "btleplug" {
        btleplug(&plan, store, &prepared, &live_options(answers), observer)?
    } else {
        return Err(RolloutError::Usage(format!(
            "unknown radio '{radio}': use sim:FILE.toml, meshd-unit:DIR, bluez, bluez:hciN or btleplug"
        )));
    };
    // The terminal back (the view's last frame showed the final state), then the summary.
    // The terminal may be gone (it hung up): what cannot be printed is dropped, not a panic
    // (the exit code must stay the run's).
    if let Some(t) = tui_observer.as_mut() {
        if let Some(line) = t.finish() {
            let _ = writeln!(std::io::stdout(), "{line}");
        }
        if t.grace_used() {
            let _ = writeln!(
                std::io::stderr(),
                "meshprov: the run did not settle within 3 s of the stop and was ended as after a crash; the store resumes it (re-run the same command)"
            );
        }
    }
    Ok((plan, report))
}

/// The real-time driver's options: whether someone answers Output OOB (the terminal UI's
/// dialog, or `--oob-stdin`).
fn live_options(answers: bool) -> rollout::live_driver::LiveRolloutOptions {
    rollout::live_driver::LiveRolloutOptions {
        oob_answers: answers,
        no_oob_reason: "the device shows an Output OOB value and a headless run cannot read it: run on a terminal without --headless, or pass --oob-stdin and type `UUID VALUE` lines".into(),
        ..Default::default()
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, RolloutError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RolloutError::Radio(format!("cannot start the runtime: {e}")))
}

#[cfg(target_os = "linux")]
fn bluez(
    radio: &str,
    plan: &Plan,
    store: SharedStore,
    prepared: &rollout::Prepared,
    opts: &rollout::live_driver::LiveRolloutOptions,
    observer: &mut dyn Observer,
) -> Result<RolloutReport, RolloutError> {
    use crate::radio::bluez::{BluezOptions, BluezRadio};
    // BlueZ sends no mesh adverts: Config messages go through a node's GATT proxy.
    let opts = rollout::live_driver::LiveRolloutOptions {
        config_bearer: rollout::live_driver::ConfigBearer::Proxy,
        ..opts.clone()
    };
    let adapter = radio.strip_prefix("bluez:").filter(|a| !a.is_empty());
    let rt = runtime()?;
    rt.block_on(async {
        let mut r = BluezRadio::open_with(adapter, BluezOptions { power_on: false })
            .await
            .map_err(|e| RolloutError::Radio(e.to_string()))?;
        rollout::live_driver::run(&mut r, plan, store, prepared, &opts, observer).await
    })
}

/// The btleplug radio (cargo feature `btleplug`): PB-GATT, and Config messages through a GATT
/// proxy, as on BlueZ.
#[cfg(feature = "btleplug")]
fn btleplug(
    plan: &Plan,
    store: SharedStore,
    prepared: &rollout::Prepared,
    opts: &rollout::live_driver::LiveRolloutOptions,
    observer: &mut dyn Observer,
) -> Result<RolloutReport, RolloutError> {
    let opts = rollout::live_driver::LiveRolloutOptions {
        config_bearer: rollout::live_driver::ConfigBearer::Proxy,
        ..opts.clone()
    };
    let rt = runtime()?;
    rt.block_on(async {
        let mut r = crate::radio::btleplug::BtleplugRadio::open()
            .await
            .map_err(|e| RolloutError::Radio(e.to_string()))?;
        rollout::live_driver::run(&mut r, plan, store, prepared, &opts, observer).await
    })
}

#[cfg(not(feature = "btleplug"))]
fn btleplug(
    _plan: &Plan,
    _store: SharedStore,
    _prepared: &rollout::Prepared,
    _opts: &rollout::live_driver::LiveRolloutOptions,
    _observer: &mut dyn Observer,
) -> Result<RolloutReport, RolloutError> {
    Err(RolloutError::Usage(
        "this meshprov was built without the btleplug radio: rebuild with `cargo build --release --features btleplug`, or use --radio bluez".into(),
    ))
}

#[cfg(not(target_os = "linux"))]
fn bluez(
    radio: &str,
    _plan: &Plan,
    _store: SharedStore,
    _prepared: &rollout::Prepared,
    _opts: &rollout::live_driver::LiveRolloutOptions,
    _observer: &mut dyn Observer,
) -> Result<RolloutReport, RolloutError> {
    Err(RolloutError::Usage(format!(
        "radio '{radio}' needs BlueZ, which is Linux only"
    )))
}

// ---------------------------------------------------------------------------------------------
// The demo.

/// The demo's roles: (template, element models per element, planned element count).
const ROLES: [(&str, &[&[&str]]); 3] = [
    ("light", &[&["0000", "0002", "1000"], &["1000"]]),
    ("sensor", &[&["0000", "0002", "1100"]]),
    ("switch", &[&["0000", "0002", "1001"]]),
];

/// The demo plan's text: three templates (lights subscribe to their floor's group and to all
/// lights, sensors publish, switches publish to all lights), the devices of `devices`
/// (uuid, name, floor, role index, auth string).
pub fn demo_plan(devices: &[(String, String, i32, String, usize, String)]) -> String {
    let mut p = String::from(
        r#"# meshprov demo plan: a three-floor building, written by `meshprov demo`.
[network]
name = "demo"
store = "network.db"

[provisioner]
unicast_ranges = ["0001-0FFF"]
radio = "sim:building.toml"

[policy]
auth = ["cert", "static", "output"]
trust = "trust"
concurrency = 16
configure_concurrency = 4
retries = 5
backoff_ms = 2000

[templates.light]
app_keys = ["lighting"]
bind = [{ element = 0, model = "1000", app_key = "lighting" },
        { element = 1, model = "1000", app_key = "lighting" }]
subscribe = [{ element = 0, model = "1000", group = "all-lights" },
             { element = 1, model = "1000", group = "all-lights" }]
default_ttl = 5
relay = true
proxy = true
beacon = true
network_transmit = { count = 2, interval_ms = 20 }

[templates.sensor]
app_keys = ["sensors"]
bind = [{ element = 0, model = "1100", app_key = "sensors" }]
publish = [{ element = 0, model = "1100", group = "sensor-data", app_key = "sensors", ttl = 5, period_ms = 60000 }]
default_ttl = 5
relay = false

[templates.switch]
app_keys = ["lighting"]
bind = [{ element = 0, model = "1001", app_key = "lighting" }]
publish = [{ element = 0, model = "1001", group = "all-lights", app_key = "lighting", ttl = 5 }]
default_ttl = 5
"#,
    );
    for (uuid, name, floor, room, role, auth) in devices {
        let (template, elements) = ROLES[*role];
        p.push_str(&format!(
            "\n[[device]]\nuuid = \"{uuid}\"\nname = \"{name}\"\nlocation = {{ building = \"Demo\", floor = {floor}, room = \"{room}\" }}\nauth = \"{auth}\"\ntemplate = \"{template}\"\nelements = {}\n",
            elements.len()
        ));
    }
    p
}

/// The demo device whose circuit is switched on late (`light 1-02`, when the demo has more
/// than this many devices): its attempts are spent before it is on, so it fails, and a retry
/// (the terminal UI's `r`, or rerunning the demo on its directory) provisions it.
pub const LATE_DEVICE: usize = 7;

/// When the late device is switched on, seconds into the run: well after its attempts (60 s
/// each, the plan's `provision_timeout_s`, with backoffs of 2, 4, 8, 16 and 32 s) are spent, at
/// about 542 s (later if the installer pauses: no attempt starts while paused), so that it
/// fails, and late enough that a retry right away still runs for minutes before the device
/// is on (an installer, or the end-to-end test, can quit while it runs).
pub const LATE_POWER_ON_S: u64 = 900;

const LATE_NOTE: &str = "the late device: switched on 15 minutes into the run";

/// Writes the demo's building, CA and plan into `dir` (`n` devices, randomness from `seed`),
/// every device switched on from the start (the tests' building).
pub fn write_demo(dir: &Path, n: usize, seed: u64) -> Result<(), RolloutError> {
    write_demo_with(dir, n, seed, false)
}

/// [`write_demo`], with the late device ([`LATE_DEVICE`], switched on [`LATE_POWER_ON_S`]
/// into the run) when `late` is set: `meshprov demo`'s building.
pub fn write_demo_with(dir: &Path, n: usize, seed: u64, late: bool) -> Result<(), RolloutError> {
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::{Rng, SeedableRng};
    let io = |p: &Path, e: std::io::Error| RolloutError::Usage(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x4445_4d4f);
    let trust = dir.join("trust");
    let certs = dir.join("certs");
    let now = SystemTime::now();
    if !trust.join("root.pem").exists() {
        crate::cert::ca::init(
            &trust,
            &crate::cert::ca::InitOptions {
                name: "Demo Lighting".into(),
                intermediate: true,
                days: 3650,
                now,
            },
            &mut rng,
        )
        .map_err(|e| RolloutError::Usage(format!("demo CA: {e}")))?;
    }
    std::fs::create_dir_all(&certs).map_err(|e| io(&certs, e))?;
    let mut building = String::from(
        "# meshprov demo building: three floors, the provisioner on the middle one.\n[air]\nloss = 0.05\nmax_floors = 1\n\n[provisioner]\nfloor = 1\nroom = \"lobby\"\n",
    );
    let mut planned = Vec::new();
    for i in 0..n {
        let uuid = format!("d3e00000-0000-4000-8000-{i:012x}");
        let floor = (i % 3) as i32;
        let role = match i % 6 {
            0..=2 => 0,
            3 | 4 => 1,
            _ => 2,
        };
        let (template, elements) = ROLES[role];
        let name = format!("{template} {}-{:02}", floor, i / 3);
        let room = format!("{floor}{:02}", i % 20);
        building.push_str(&format!(
            "\n[[device]]\nuuid = \"{uuid}\"\nname = \"{name}\"\nfloor = {floor}\nroom = \"{room}\"\necdh_ms = {}\n",
            if i % 4 == 0 { 120 } else { 18 }
        ));
        if late && i == LATE_DEVICE {
            // Its circuit is switched on late: every attempt of the run's first minutes goes
            // unanswered and it fails; the installer retries it once it is on.
            building.push_str(&format!("power_on_s = {LATE_POWER_ON_S}   # {LATE_NOTE}\n"));
        }
        // Every fifth device has a certificate, every third of the rest shows an Output OOB
        // number, the others have a static OOB value on their label.
        let auth = if i % 5 == 0 {
            let out = certs.join(format!("dev{i}"));
            let parsed: crate::uuid::DeviceUuid = uuid
                .parse()
                .map_err(|e| RolloutError::Usage(format!("demo UUID: {e}")))?;
            if !certs.join(format!("dev{i}.key.hex")).exists() {
                crate::cert::ca::issue(
                    &trust,
                    &parsed,
                    &crate::cert::ca::DeviceKeySource::Generate { out: out.clone() },
                    3650,
                    now,
                    &mut rng,
                )
                .map_err(|e| RolloutError::Usage(format!("demo certificate: {e}")))?;
            }
            let key_file = certs.join(format!("dev{i}.key.hex"));
            let key = std::fs::read_to_string(&key_file).map_err(|e| io(&key_file, e))?;
            building.push_str(&format!(
                "certificate = \"certs/dev{i}.pem\"\nintermediates = [\"trust/intermediate.pem\"]\nprivate_key = \"{}\"\n",
                key.trim()
            ));
            "cert".to_string()
        } else if i % 3 == 1 {
            building.push_str("output_oob = { size = 4, actions = [\"numeric\"] }\n");
            "output".to_string()
        } else {
            let mut v = [0u8; 16];
            rng.fill_bytes(&mut v);
            let h = hex::encode(v);
            building.push_str(&format!("static_oob = \"{h}\"\n"));
            format!("static:{h}")
        };
        for models in elements {
            let list: Vec<String> = models.iter().map(|m| format!("\"{m}\"")).collect();
            building.push_str(&format!(
                "[[device.element]]\nmodels = [{}]\n",
                list.join(", ")
            ));
        }
        planned.push((uuid, name, floor, room, role, auth));
    }
    let b = dir.join("building.toml");
    std::fs::write(&b, building).map_err(|e| io(&b, e))?;
    let p = dir.join("plan.toml");
    std::fs::write(&p, demo_plan(&planned)).map_err(|e| io(&p, e))?;
    Ok(())
}

/// `meshprov demo`: writes the sample building and plan (unless DIR has them: then it resumes)
/// and runs the rollout on the simulated radio. Returns the exit code.
pub fn demo(args: &DemoArgs) -> i32 {
    if args.devices == 0 || args.devices > 4000 {
        eprintln!("meshprov: --devices {} is not in 1..=4000", args.devices);
        return crate::exit::USAGE;
    }
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            let stamp = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_millis();
            std::env::temp_dir().join(format!("meshprov-demo-{}-{stamp}", std::process::id()))
        }
    };
    let plan = dir.join("plan.toml");
    let resuming = plan.exists();
    // The late circuit is for an installer to retry in the terminal UI; a headless demo (a
    // script, CI, a pipe) has nobody to press `r`, so its building has every device on.
    let tui = !args.headless && !args.json && std::io::stdout().is_terminal();
    if !resuming && let Err(e) = write_demo_with(&dir, args.devices, args.seed, tui) {
        return fail(&e, args.json);
    }
    // On a rerun the late device's circuit has long been on (the simulation's clock starts
    // again at zero with every run).
    let building = dir.join("building.toml");
    if resuming
        && let Ok(text) = std::fs::read_to_string(&building)
        && text.contains(LATE_NOTE)
    {
        let kept: Vec<&str> = text.lines().filter(|l| !l.contains(LATE_NOTE)).collect();
        if let Err(e) = std::fs::write(&building, kept.join("\n") + "\n") {
            eprintln!("meshprov: {}: {e}", building.display());
        }
    }
    // Not println!: after the terminal UI the terminal may have hung up.
    let say = |s: String| {
        let _ = if args.json {
            writeln!(std::io::stderr(), "{s}")
        } else {
            writeln!(std::io::stdout(), "{s}")
        };
    };
    say(format!(
        "{} demo in {} (building.toml, plan.toml, trust/, network.db)",
        if resuming { "resuming the" } else { "a new" },
        dir.display()
    ));
    let code = rollout(&RolloutArgs {
        plan,
        headless: args.headless,
        json: args.json,
        report: Some(dir.join("report.json")),
        radio: None,
        concurrency: None,
        seed: args.seed,
        loss: None,
        speed: args.speed,
        oob_stdin: false,
    });
    say(format!(
        "report in {}; run `meshprov demo --dir {}` again to resume it, `meshprov node list --store {}` to see the nodes",
        dir.join("report.json").display(),
        dir.display(),
        dir.join("network.db").display()
    ));
    code
}

#[cfg(test)]
mod tests {
    use super::parse_oob_line;

    #[test]
    fn oob_stdin_lines() {
        let (u, v) = parse_oob_line("  7b2c1a90-0000-4000-8000-000000000002   4711 ")
            .unwrap()
            .unwrap();
        assert_eq!(u.to_string(), "7b2c1a90-0000-4000-8000-000000000002");
        assert_eq!(v, "4711");
        assert_eq!(parse_oob_line("").unwrap(), None);
        assert_eq!(parse_oob_line("# the lobby").unwrap(), None);
        assert!(parse_oob_line("7b2c1a90000040008000000000000002").is_err());
        assert!(
            parse_oob_line("nonsense 12")
                .unwrap_err()
                .contains("not a device UUID")
        );
        assert!(parse_oob_line("7b2c1a90000040008000000000000002 1 2").is_err());
    }
}
