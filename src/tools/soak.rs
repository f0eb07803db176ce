//! `meshprov soak`: a soak and fault run of the rollout engine on the simulated radio
//! (README "Soak and fault runs"). It writes a building of N devices at a given loss — most of
//! them healthy, a fraction with every fault of [`crate::sim::fault`] — and a plan for them,
//! runs the same engine and simulated driver as `meshprov rollout` headless, samples the
//! process's memory as devices finish, and then checks what must hold after any run:
//!
//! 1. the run completed (it was not stopped by the driver's 24 h virtual deadline);
//! 2. every device is in a final state (done, failed with a phase and a reason, skipped),
//!    reported by exactly one final event;
//! 3. every healthy device is done (and so is every device whose fault it can survive: late
//!    within the timers, vanished and back);
//! 4. every faulty kind ends as it must: reflectors and garbage senders never provisioned,
//!    reflectors refused with the reflection named and not retried after it, Provisioning Failed
//!    reported with its code, vanished devices failed after retries or done after one;
//! 5. no unicast address handed to two devices (every `provisioned` event and every node of
//!    the store);
//! 6. every device key a virtual device holds is the store's for its node, at the same
//!    address, and every done device's node is `configured`;
//! 7. memory stays bounded: the peak resident set (VmHWM) stays under
//!    [`SoakOptions::max_rss_mb`] (default [`default_rss_bound_mb`]: a fixed base plus a
//!    per-device allowance), and the resident set measured as each quarter of the devices
//!    finishes grows no faster in the second half of the run than in the first.
//!
//! A soak is a subcommand, not a test flag, so that it runs on the release build the way an
//! installer's rollout does, on any machine, with its own exit code; `tests/soak.rs` runs the
//! same [`run`] small in the default suite and at 2,000 devices behind `#[ignore]`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

use crate::rollout::sim_driver::{self, SimOptions};
use crate::rollout::{
    self, EventKind, Observer, Plan, RolloutError, RolloutEvent, SharedStore, Stage,
};
use crate::sim::building::Building;
use crate::sim::node::DeviceState;
use crate::store::NodeState;
use crate::uuid::DeviceUuid;

/// Exit code of a soak run in which a check failed (0: every check passed; 2: usage; 1: an
/// internal error such as the store).
pub const EXIT_CHECK_FAILED: i32 = 3;

/// `meshprov soak` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// Devices in the generated building.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub devices: usize,
    /// Advertising loss on every floor, 0.0–0.9.
    #[arg(long, default_value_t = 0.3, value_name = "P")]
    pub loss: f64,
    /// Fraction of the devices that get a fault (every kind at least once), 0.0–1.0.
    #[arg(long, default_value_t = 0.1, value_name = "F")]
    pub faulty: f64,
    /// The radio blackout, `START_S:DURATION_S` (seconds of virtual time), or `none`.
    #[arg(long, default_value = "300:60", value_name = "START:DURATION")]
    pub blackout: String,
    /// The seed of the building, the faults and the simulation (same seed, same run).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Fail the run if the peak resident set exceeds this many MB (default: 40 MB plus 32 kB
    /// per device).
    #[arg(long, value_name = "MB")]
    pub max_rss_mb: Option<f64>,
    /// PB-ADV sessions at once (1–64; default the plan's 16).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Where to write the building, the plan, the store and the report; it must not hold a
    /// store already. Default: a new temporary directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// What a soak run does.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    /// Devices.
    pub devices: usize,
    /// Advertising loss.
    pub loss: f64,
    /// Fraction with a fault.
    pub faulty: f64,
    /// Blackout: start and duration.
    pub blackout: Option<(Duration, Duration)>,
    /// Seed.
    pub seed: u64,
    /// Peak resident set allowed, MB; `None`: [`default_rss_bound_mb`].
    pub max_rss_mb: Option<f64>,
    /// Overrides the plan's PB-ADV concurrency.
    pub concurrency: Option<usize>,
    /// The run's directory (created; must not hold a store).
    pub dir: PathBuf,
    /// Print progress lines (each quarter of the devices finished) on stderr.
    pub progress: bool,
}

/// The default peak-RSS bound for `devices` devices, MB: a 40 MB base (the program, its
/// allocator's arenas, the store's page cache) plus 32 kB per device (a virtual device with
/// its node stack, its rollout status and transcript, its finished sessions). Measured peaks
/// (release build, README "Soak and fault runs"): 13 MB for 60 devices, 28 MB for 500, 44 MB
/// for 1,000, 75 MB for 2,000 — about 30 kB per device over a 15 MB base.
pub fn default_rss_bound_mb(devices: usize) -> f64 {
    40.0 + devices as f64 * 32.0 / 1024.0
}

/// The kinds of device in a soak building.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// No fault.
    Healthy,
    /// Vanishes at a step and never comes back.
    VanishForGood,
    /// Vanishes at a step and comes back 30–120 s later.
    VanishAndReturn,
    /// Vanishes after 3–20 PB-ADV PDUs and comes back 60 s later.
    VanishAfterPdus,
    /// Answers 1–5 s late (within the timers).
    LateWithin,
    /// Answers 65–90 s late (beyond the 60 s protocol timer).
    LateBeyond,
    /// Answers a step before the Provisioning Data with Provisioning Failed and a code.
    ProvisioningFailed,
    /// Answers its Provisioning Data with Provisioning Failed and a code (it takes no key).
    RefusesData,
    /// Sends the provisioner's Public Key back.
    ReflectPublicKey,
    /// Sends the provisioner's Confirmation back.
    ReflectConfirmation,
    /// Sends the provisioner's Random back.
    ReflectRandom,
    /// Answers a step with random octets (valid FCS).
    GarbageRandom,
    /// Answers a step with a malformed PDU (valid FCS).
    GarbageMalformed,
    /// Answers a step with garbage whose FCS is wrong.
    GarbageBadFcs,
}

/// Every faulty kind, in the order they are handed out.
pub const FAULTY_KINDS: [Kind; 13] = [
    Kind::VanishForGood,
    Kind::VanishAndReturn,
    Kind::VanishAfterPdus,
    Kind::LateWithin,
    Kind::LateBeyond,
    Kind::ProvisioningFailed,
    Kind::RefusesData,
    Kind::ReflectPublicKey,
    Kind::ReflectConfirmation,
    Kind::ReflectRandom,
    Kind::GarbageRandom,
    Kind::GarbageMalformed,
    Kind::GarbageBadFcs,
];

impl Kind {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Healthy => "healthy",
            Kind::VanishForGood => "vanish for good",
            Kind::VanishAndReturn => "vanish and return",
            Kind::VanishAfterPdus => "vanish after N PDUs",
            Kind::LateWithin => "late (1-5 s)",
            Kind::LateBeyond => "late (65-90 s)",
            Kind::ProvisioningFailed => "Provisioning Failed",
            Kind::RefusesData => "refuses its Provisioning Data",
            Kind::ReflectPublicKey => "reflect public key",
            Kind::ReflectConfirmation => "reflect confirmation",
            Kind::ReflectRandom => "reflect random",
            Kind::GarbageRandom => "garbage (random)",
            Kind::GarbageMalformed => "garbage (malformed)",
            Kind::GarbageBadFcs => "garbage (bad FCS)",
        }
    }

    /// What is expected of a device of this kind, in words.
    pub fn expected(self) -> &'static str {
        match self {
            Kind::Healthy | Kind::LateWithin => "done",
            Kind::VanishAndReturn => "done after a retry",
            Kind::VanishAfterPdus => "done after a retry, or failed",
            Kind::VanishForGood | Kind::LateBeyond | Kind::GarbageBadFcs => {
                "failed after retries, never provisioned"
            }
            Kind::ProvisioningFailed => "failed, the code reported, never provisioned",
            Kind::RefusesData => {
                "failed with the code, voided (not in the store) and not retried after it"
            }
            Kind::ReflectPublicKey | Kind::ReflectConfirmation | Kind::ReflectRandom => {
                "failed, reflection named and not retried, never provisioned"
            }
            Kind::GarbageRandom | Kind::GarbageMalformed => "failed, never provisioned",
        }
    }

    /// The `[device.fault]` lines of a device of this kind (empty when healthy).
    fn fault_toml(self, rng: &mut ChaCha20Rng) -> String {
        const STEPS: [&str; 6] = [
            "invite",
            "start",
            "public-key",
            "confirmation",
            "random",
            "data",
        ];
        const CODES: [&str; 10] = [
            "invalid-pdu",
            "invalid-format",
            "unexpected-pdu",
            "confirmation-failed",
            "out-of-resources",
            "decryption-failed",
            "unexpected-error",
            "cannot-assign-addresses",
            "invalid-data",
            "0x0c",
        ];
        let mut pick = |n: usize| (rng.next_u32() as usize) % n;
        match self {
            Kind::Healthy => String::new(),
            Kind::VanishForGood => format!("vanish_at = \"{}\"\n", STEPS[pick(6)]),
            Kind::VanishAndReturn => format!(
                "vanish_at = \"{}\"\nreturn_after_s = {}\n",
                STEPS[pick(6)],
                30 + pick(91)
            ),
            Kind::VanishAfterPdus => format!(
                "vanish_after_pdus = {}\nreturn_after_s = 60\n",
                3 + pick(18)
            ),
            Kind::LateWithin => format!("late_ms = {}\n", 1000 + 500 * pick(9)),
            Kind::LateBeyond => format!("late_ms = {}\n", 65_000 + 5000 * pick(6)),
            Kind::ProvisioningFailed => {
                let code = CODES[pick(10)];
                let code = if code.starts_with("0x") {
                    code.to_string()
                } else {
                    format!("\"{code}\"")
                };
                // Before the Provisioning Data (a refused Data is RefusesData).
                format!("fail_at = \"{}\"\nfail_code = {code}\n", STEPS[pick(5)])
            }
            Kind::RefusesData => {
                // The codes a device answers a Provisioning Data with (MshPRT v1.1 §5.4.4).
                const DATA_CODES: [&str; 5] = [
                    "decryption-failed",
                    "unexpected-error",
                    "cannot-assign-addresses",
                    "invalid-data",
                    "out-of-resources",
                ];
                format!(
                    "fail_at = \"data\"\nfail_code = \"{}\"\n",
                    DATA_CODES[pick(5)]
                )
            }
            Kind::ReflectPublicKey => "reflect = [\"public-key\"]\n".into(),
            Kind::ReflectConfirmation => "reflect = [\"confirmation\"]\n".into(),
            Kind::ReflectRandom => "reflect = [\"random\"]\n".into(),
            Kind::GarbageRandom => format!("garbage_at = \"{}\"\n", STEPS[pick(5)]),
            Kind::GarbageMalformed => format!(
                "garbage_at = \"{}\"\ngarbage = \"malformed\"\n",
                STEPS[pick(5)]
            ),
            Kind::GarbageBadFcs => format!(
                "garbage_at = \"{}\"\ngarbage = \"{}\"\ngarbage_fcs = \"invalid\"\n",
                STEPS[pick(5)],
                if pick(2) == 0 { "random" } else { "malformed" }
            ),
        }
    }
}

/// One generated device.
#[derive(Clone, Debug)]
pub struct SoakDevice {
    /// Its UUID.
    pub uuid: DeviceUuid,
    /// Its kind.
    pub kind: Kind,
    /// Its `[device.fault]` lines.
    pub fault: String,
}

/// The plan's templates: a light with two elements, a sensor with one (3 Config requests
/// each, and the Composition Data check).
const PLAN_HEAD: &str = r#"# meshprov soak plan, written by `meshprov soak`.
[network]
name = "soak"
store = "network.db"

[provisioner]
unicast_ranges = ["0001-7FFF"]
radio = "sim:building.toml"

[policy]
auth = ["static", "output"]
concurrency = 16
configure_concurrency = 4
retries = 5
backoff_ms = 2000
backoff_max_ms = 60000
provision_timeout_s = 120
configure_timeout_s = 180

[templates.light]
app_keys = ["lighting"]
bind = [{ element = 0, model = "1000", app_key = "lighting" }]
subscribe = [{ element = 1, model = "1000", group = "all-lights" }]

[templates.sensor]
app_keys = ["sensors"]
bind = [{ element = 0, model = "1100", app_key = "sensors" }]
publish = [{ element = 0, model = "1100", group = "sensor-data", app_key = "sensors", ttl = 5 }]
"#;

/// Writes the soak's building and plan into `dir`; returns the devices.
pub fn write_soak(dir: &Path, opts: &SoakOptions) -> Result<Vec<SoakDevice>, RolloutError> {
    let io = |p: &Path, e: std::io::Error| RolloutError::Usage(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut rng = ChaCha20Rng::seed_from_u64(opts.seed ^ 0x736f_616b);
    let n = opts.devices;
    // Which devices are faulty: a seeded permutation's first k, kinds handed out in turn.
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let wanted = (opts.faulty * n as f64).round() as usize;
    let k = wanted.max(FAULTY_KINDS.len()).min(n);
    let mut kinds = vec![Kind::Healthy; n];
    for (slot, &i) in order.iter().take(k).enumerate() {
        kinds[i] = FAULTY_KINDS[slot % FAULTY_KINDS.len()];
    }
    let mut building = format!(
        "# meshprov soak building: {n} devices on three floors, the provisioner on the middle one,\n# {} % loss on every floor, written by `meshprov soak`.\n[air]\nloss = {}\nfloor_loss = 0.0\nmax_floors = 1\n",
        opts.loss * 100.0,
        opts.loss
    );
    if let Some((start, len)) = opts.blackout {
        building.push_str(&format!(
            "blackouts = [{{ start_s = {}, duration_s = {} }}]\n",
            start.as_secs(),
            len.as_secs()
        ));
    }
    building.push_str("\n[provisioner]\nfloor = 1\nroom = \"lobby\"\n");
    let mut plan = String::from(PLAN_HEAD);
    let mut devices = Vec::with_capacity(n);
    for (i, &kind) in kinds.iter().enumerate() {
        let uuid = format!("50a50000-0000-4000-8000-{i:012x}");
        let floor = i % 3;
        let light = i % 3 != 2;
        let output = i % 7 == 3;
        let mut value = [0u8; 16];
        rng.fill_bytes(&mut value);
        let value = hex::encode(value);
        building.push_str(&format!(
            "\n[[device]]\nuuid = \"{uuid}\"\nfloor = {floor}\necdh_ms = {}\nelements = {}\n",
            if i % 4 == 0 { 120 } else { 18 },
            if light { 2 } else { 1 },
        ));
        let auth = if output {
            building.push_str("output_oob = { size = 4, actions = [\"numeric\"] }\n");
            "output".to_string()
        } else {
            building.push_str(&format!("static_oob = \"{value}\"\n"));
            format!("static:{value}")
        };
        // The tables after the device's own keys.
        if light {
            building.push_str("[[device.element]]\nmodels = [\"0000\", \"0002\", \"1000\"]\n[[device.element]]\nmodels = [\"1000\"]\n");
        } else {
            building.push_str("[[device.element]]\nmodels = [\"0000\", \"0002\", \"1100\"]\n");
        }
        let fault = kind.fault_toml(&mut rng);
        if !fault.is_empty() {
            building.push_str(&format!("[device.fault]   # {}\n{fault}", kind.name()));
        }
        plan.push_str(&format!(
            "\n[[device]]\nuuid = \"{uuid}\"\nname = \"{} {i}\"\nauth = \"{auth}\"\ntemplate = \"{}\"\nelements = {}\n",
            if light { "light" } else { "sensor" },
            if light { "light" } else { "sensor" },
            if light { 2 } else { 1 },
        ));
        devices.push(SoakDevice {
            uuid: uuid
                .parse()
                .map_err(|e| RolloutError::Usage(format!("soak UUID {uuid}: {e}")))?,
            kind,
            fault,
        });
    }
    let b = dir.join("building.toml");
    std::fs::write(&b, building).map_err(|e| io(&b, e))?;
    let p = dir.join("plan.toml");
    std::fs::write(&p, plan).map_err(|e| io(&p, e))?;
    Ok(devices)
}

/// One memory sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MemSample {
    /// Devices finished when it was taken.
    pub finished: usize,
    /// Virtual time, ms.
    pub t_ms: u64,
    /// Resident set, kB (`VmRSS`).
    pub rss_kb: u64,
}

/// The resident set and its peak, kB (`VmRSS`, `VmHWM` of `/proc/self/status`); `None` where
/// there is no procfs.
pub fn rss_kb() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time of this process (user + system) from `/proc/self/stat`, in clock ticks of
/// USER_HZ (100 per second on Linux).
pub fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3, the state.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// What the soak's observer saw.
#[derive(Debug, Default)]
struct Watch {
    devices: usize,
    finished: usize,
    /// Final events per device.
    finals: BTreeMap<String, usize>,
    /// The reasons of the retry events per device (any phase).
    retries: BTreeMap<String, Vec<String>>,
    /// Every address range handed out: (uuid, address, elements).
    handed_out: Vec<(String, u16, u8)>,
    samples: Vec<MemSample>,
    next_quarter: usize,
    progress: bool,
    started: Option<std::time::Instant>,
    /// When the last progress line was printed (wall clock).
    last_line: Option<std::time::Instant>,
}

impl Watch {
    fn sample(&mut self, t_ms: u64) {
        if let Some((rss, _)) = rss_kb() {
            self.samples.push(MemSample {
                finished: self.finished,
                t_ms,
                rss_kb: rss,
            });
        }
    }
}

impl Observer for Watch {
    fn pace(
        &mut self,
        now: crate::time::Instant,
        next: Option<crate::time::Instant>,
    ) -> Option<crate::time::Instant> {
        // A line every 10 s of wall time: long work shows progress.
        let wall = std::time::Instant::now();
        if self.progress
            && self
                .last_line
                .is_none_or(|t| wall - t >= Duration::from_secs(10))
        {
            self.last_line = Some(wall);
            eprintln!(
                "soak: {} of {} devices finished, {:.0} s of virtual time, {:.0} s of wall time, resident set {}",
                self.finished,
                self.devices,
                now.since_epoch().as_secs_f64(),
                self.started.map_or(0.0, |t| t.elapsed().as_secs_f64()),
                rss_kb().map_or("?".into(), |(r, _)| format!("{:.1} MB", r as f64 / 1024.0))
            );
        }
        next
    }

    fn event(&mut self, ev: &RolloutEvent) {
        let uuid = ev.uuid.clone().unwrap_or_default();
        match &ev.kind {
            EventKind::Start { devices, .. } => {
                self.devices = *devices;
                self.next_quarter = 1;
                self.started = Some(std::time::Instant::now());
                self.sample(ev.t_ms);
            }
            EventKind::Provisioned { address, elements } => {
                self.handed_out.push((uuid, *address, *elements));
            }
            EventKind::Retrying { reason, .. } => {
                self.retries.entry(uuid).or_default().push(reason.clone());
            }
            EventKind::Done { .. }
            | EventKind::Failed { .. }
            | EventKind::Skipped
            | EventKind::Excluded => {
                *self.finals.entry(uuid).or_default() += 1;
                self.finished += 1;
                while self.next_quarter <= 4
                    && self.finished * 4 >= self.devices * self.next_quarter
                {
                    self.sample(ev.t_ms);
                    if self.progress
                        && let Some(s) = self.samples.last()
                    {
                        eprintln!(
                            "soak: {:>3} % of the devices finished at {:>8.1} s of virtual time ({:.1} s of wall time), resident set {:.1} MB",
                            self.next_quarter * 25,
                            s.t_ms as f64 / 1000.0,
                            self.started.map_or(0.0, |t| t.elapsed().as_secs_f64()),
                            s.rss_kb as f64 / 1024.0
                        );
                    }
                    self.next_quarter += 1;
                }
            }
            _ => {}
        }
    }
}

/// One check and its verdict.
#[derive(Clone, Debug)]
pub struct Check {
    /// What it checks.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// Details: counts, or the first offenders.
    pub detail: String,
}

/// Per-kind counts.
#[derive(Clone, Debug, Default)]
pub struct KindCounts {
    /// Devices.
    pub devices: usize,
    /// Done.
    pub done: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped (or anything else).
    pub other: usize,
    /// With at least one retry.
    pub retried: usize,
    /// Whose virtual device holds keys at the end.
    pub provisioned: usize,
}

/// The end of a soak run.
#[derive(Debug)]
pub struct SoakOutcome {
    /// The rollout report.
    pub report: rollout::RolloutReport,
    /// Per kind.
    pub kinds: BTreeMap<Kind, KindCounts>,
    /// Every check.
    pub checks: Vec<Check>,
    /// Resident set at the start and as each quarter of the devices finished.
    pub samples: Vec<MemSample>,
    /// Peak resident set (VmHWM) at the end, kB.
    pub peak_rss_kb: Option<u64>,
    /// The bound enforced, MB.
    pub rss_bound_mb: f64,
    /// Wall time of the run.
    pub wall: Duration,
    /// CPU time of the run (this process, user + system), if known.
    pub cpu: Option<Duration>,
    /// PB-ADV retransmissions of the provisioner.
    pub retransmissions: u64,
    /// What the air did.
    pub air: crate::radio::sim::AirStats,
}

impl SoakOutcome {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The first check that failed.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| !c.passed)
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let s = &self.report.summary;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "soak: {} devices: {} done, {} failed, {} skipped; {} retries, {} PB-ADV retransmissions",
            s.devices, s.done, s.failed, s.skipped, s.retries, self.retransmissions
        );
        let _ = writeln!(
            t,
            "  virtual time {:.1} s, wall time {:.1} s, CPU time {}",
            s.virtual_time_ms.unwrap_or(s.time_ms) as f64 / 1000.0,
            self.wall.as_secs_f64(),
            self.cpu
                .map_or("unknown".into(), |c| format!("{:.1} s", c.as_secs_f64()))
        );
        let a = &self.air;
        let _ = writeln!(
            t,
            "  air: {} advertising events, copies delivered {}, lost {}, collided {}, deaf {}, lost to the blackout {}",
            a.adv_events, a.adv_delivered, a.adv_lost, a.adv_collided, a.adv_deaf, a.adv_blackout
        );
        let _ = writeln!(
            t,
            "\n  {:<22} {:>6} {:>6} {:>6} {:>6} {:>8} {:>6}  expected",
            "kind", "count", "done", "failed", "other", "retried", "keys"
        );
        for (k, c) in &self.kinds {
            let _ = writeln!(
                t,
                "  {:<22} {:>6} {:>6} {:>6} {:>6} {:>8} {:>6}  {}",
                k.name(),
                c.devices,
                c.done,
                c.failed,
                c.other,
                c.retried,
                c.provisioned,
                k.expected()
            );
        }
        let _ = writeln!(t, "\n  memory (resident set as the devices finished):");
        for (i, m) in self.samples.iter().enumerate() {
            let _ = writeln!(
                t,
                "    {:>5} finished  {:>9.1} s virtual  {:>7.1} MB{}",
                m.finished,
                m.t_ms as f64 / 1000.0,
                m.rss_kb as f64 / 1024.0,
                if i + 1 == self.samples.len() {
                    "  (after the run)"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(
            t,
            "    peak (VmHWM) {}, bound {:.1} MB",
            self.peak_rss_kb
                .map_or("unknown".into(), |p| format!("{:.1} MB", p as f64 / 1024.0)),
            self.rss_bound_mb
        );
        let _ = writeln!(t, "\n  checks:");
        for c in &self.checks {
            let _ = writeln!(
                t,
                "    {} {}: {}",
                if c.passed { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        match self.first_failure() {
            None => {
                let _ = writeln!(t, "soak passed: every check held");
            }
            Some(c) => {
                let _ = writeln!(t, "soak FAILED: {}: {}", c.name, c.detail);
            }
        }
        t
    }
}

/// Runs a soak: writes the building and plan into `opts.dir`, rolls them out on the
/// simulated radio and checks the outcome.
pub fn run(opts: &SoakOptions) -> Result<SoakOutcome, RolloutError> {
    if opts.devices == 0 || opts.devices > 10_000 {
        return Err(RolloutError::Usage(format!(
            "--devices {} is not in 1..=10000",
            opts.devices
        )));
    }
    if !(0.0..=0.9).contains(&opts.loss) {
        return Err(RolloutError::Usage(format!(
            "--loss {} is not in 0.0..=0.9",
            opts.loss
        )));
    }
    if !(0.0..=1.0).contains(&opts.faulty) {
        return Err(RolloutError::Usage(format!(
            "--faulty {} is not in 0.0..=1.0",
            opts.faulty
        )));
    }
    if opts.dir.join("network.db").exists() {
        return Err(RolloutError::Usage(format!(
            "{} already holds a store (network.db): a soak starts from an empty directory; give another --dir or remove it",
            opts.dir.display()
        )));
    }
    let devices = write_soak(&opts.dir, opts)?;
    let plan = Plan::load(&opts.dir.join("plan.toml"))?;
    let building = Building::load(&opts.dir.join("building.toml"))
        .map_err(|e| RolloutError::Usage(e.to_string()))?;
    let mut rng = ChaCha20Rng::seed_from_u64(opts.seed ^ 0x4e45_5457);
    let store = rollout::open_store(&plan, &mut rng)?;
    let store: SharedStore = std::rc::Rc::new(std::cell::RefCell::new(store));
    let prepared = rollout::prepare(&plan, &mut store.borrow_mut(), &mut rng)?;
    let sim = SimOptions {
        seed: opts.seed,
        concurrency: opts.concurrency,
        ..SimOptions::default()
    };
    let mut watch = Watch {
        progress: opts.progress,
        ..Watch::default()
    };
    let cpu_before = cpu_time();
    let wall = std::time::Instant::now();
    let out = sim_driver::run(&plan, &building, store.clone(), &prepared, &sim, &mut watch)?;
    let wall = wall.elapsed();
    let cpu = cpu_time().zip(cpu_before).map(|(a, b)| a.saturating_sub(b));
    let peak_rss_kb = rss_kb().map(|(_, hwm)| hwm);
    let report_path = opts.dir.join("report.json");
    let text = serde_json::json!({
        "format": "meshprov-rollout-report/1",
        "summary": out.report.summary,
        "devices": out.report.devices,
    });
    std::fs::write(&report_path, format!("{text:#}\n"))
        .map_err(|e| RolloutError::Usage(format!("{}: {e}", report_path.display())))?;

    let rss_bound_mb = opts
        .max_rss_mb
        .unwrap_or_else(|| default_rss_bound_mb(opts.devices));
    let keys_of: BTreeMap<DeviceUuid, &crate::sim::node::VirtualDevice> =
        out.nodes.iter().map(|(u, v)| (*u, v)).collect();
    let status: BTreeMap<DeviceUuid, &rollout::DeviceStatus> =
        out.report.devices.iter().map(|d| (d.uuid, d)).collect();
    let store_nodes = store.borrow().nodes()?;
    let mut checks = Vec::new();
    let mut check = |name: &str, offenders: Vec<String>, ok_detail: String| {
        let passed = offenders.is_empty();
        let detail = if passed {
            ok_detail
        } else {
            let mut d = format!("{} offender(s): ", offenders.len());
            d.push_str(
                &offenders
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; "),
            );
            if offenders.len() > 5 {
                d.push_str("; …");
            }
            d
        };
        checks.push(Check {
            name: name.to_string(),
            passed,
            detail,
        });
    };
    let s = &out.report.summary;

    // 1. The run completed.
    check(
        "the run completed",
        if s.stopped {
            vec![format!(
                "stopped at {:.1} s of virtual time: {}",
                s.time_ms as f64 / 1000.0,
                s.message
            )]
        } else {
            Vec::new()
        },
        format!(
            "ended by itself after {:.1} s of virtual time",
            s.time_ms as f64 / 1000.0
        ),
    );

    // 2. Every device in a reported final state.
    let mut offenders = Vec::new();
    for d in &devices {
        let key = d.uuid.to_string();
        match status.get(&d.uuid) {
            None => offenders.push(format!("{key}: not in the report")),
            Some(st) if !st.stage.is_final() => {
                offenders.push(format!("{key}: left in {:?}", st.stage))
            }
            Some(st)
                if st.stage == Stage::Failed
                    && (st.last_error.is_none() || st.failed_phase.is_none()) =>
            {
                offenders.push(format!("{key}: failed without a phase and a reason"))
            }
            Some(_) => {}
        }
        let finals = watch.finals.get(&key).copied().unwrap_or(0);
        if finals != 1 {
            offenders.push(format!("{key}: {finals} final events"));
        }
    }
    check(
        "every device in a reported final state",
        offenders,
        format!(
            "{} devices: {} done, {} failed, {} skipped, each with one final event",
            devices.len(),
            s.done,
            s.failed,
            s.skipped
        ),
    );

    // 3 and 4. Each kind as expected.
    let mut kinds: BTreeMap<Kind, KindCounts> = BTreeMap::new();
    let mut healthy_bad = Vec::new();
    let mut faulty_bad = Vec::new();
    for d in &devices {
        let key = d.uuid.to_string();
        let Some(st) = status.get(&d.uuid) else {
            continue;
        };
        let retry_reasons = watch.retries.get(&key).map_or(&[][..], Vec::as_slice);
        let retried = !retry_reasons.is_empty();
        let holds_keys = keys_of
            .get(&d.uuid)
            .is_some_and(|v| matches!(v.state(), DeviceState::Provisioned { .. }));
        let in_store = store_nodes
            .iter()
            .any(|n| n.uuid == d.uuid && n.state != NodeState::Unconfirmed);
        let c = kinds.entry(d.kind).or_default();
        c.devices += 1;
        match st.stage {
            Stage::Done => c.done += 1,
            Stage::Failed => c.failed += 1,
            _ => c.other += 1,
        }
        c.retried += usize::from(retried);
        c.provisioned += usize::from(holds_keys);
        let reason = st.last_error.clone().unwrap_or_default();
        let done = st.stage == Stage::Done;
        let failed = st.stage == Stage::Failed;
        let never = !holds_keys && !in_store;
        let why = |what: &str| {
            format!(
                "{key} ({}{}): {what}; it is {:?}{}{}",
                d.kind.name(),
                if d.fault.trim().is_empty() {
                    String::new()
                } else {
                    format!("; {}", d.fault.trim().replace('\n', ", "))
                },
                st.stage,
                if reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({reason})")
                },
                if retry_reasons.is_empty() {
                    String::new()
                } else {
                    format!("; retried after: {}", retry_reasons.join("; "))
                }
            )
        };
        let bad = match d.kind {
            Kind::Healthy | Kind::LateWithin => (!done).then(|| why("should be done")),
            // Vanished at its Provisioning Data (committed first) and silent when the next
            // attempt's Link Open came: configured as a node that may hold its keys until it
            // beacons again, then voided and provisioned afresh: done too.
            Kind::VanishAndReturn => {
                (!(done && retried)).then(|| why("should be done after a retry"))
            }
            Kind::VanishAfterPdus => (!(done && retried || failed))
                .then(|| why("should be done after a retry, or failed")),
            Kind::VanishForGood | Kind::LateBeyond | Kind::GarbageBadFcs => {
                (!(failed && retried && !holds_keys))
                    .then(|| why("should fail after retries without keys"))
            }
            Kind::ProvisioningFailed | Kind::RefusesData => {
                let code = d
                    .fault
                    .lines()
                    .find_map(|l| l.strip_prefix("fail_code = "))
                    .map(|c| c.trim_matches('"').to_string())
                    .unwrap_or_default();
                let hex = crate::sim::fault::FAILED_CODE_NAMES
                    .iter()
                    .find(|(n, _)| *n == code)
                    .map(|(_, c)| c.0)
                    .or_else(|| u8::from_str_radix(code.trim_start_matches("0x"), 16).ok())
                    .map(|c| format!("({c:#04x})"))
                    .unwrap_or_default();
                // A refused Data voids the commit at once (not in the store) and is not
                // retried (earlier attempts may have lost their link before it).
                let refused_again = d.kind == Kind::RefusesData
                    && retry_reasons
                        .iter()
                        .any(|r| r.contains("refused its Provisioning Data"));
                (!(failed && never && !refused_again && !hex.is_empty() && reason.contains(&hex)))
                    .then(|| {
                        why(&format!(
                            "should fail with {hex} in its reason, not retried after a refused Data, never provisioned"
                        ))
                    })
            }
            Kind::ReflectPublicKey | Kind::ReflectConfirmation | Kind::ReflectRandom => {
                let named = match d.kind {
                    Kind::ReflectPublicKey => "our own public key back",
                    Kind::ReflectConfirmation => "our own confirmation back",
                    _ => "our own random back",
                };
                // Refused, not retried: a possible attack (earlier attempts may have lost
                // their link before the reflection).
                let refused_again = retry_reasons.iter().any(|r| r.contains(named));
                (!(failed && never && !refused_again && reason.contains(named))).then(|| {
                    why(&format!(
                        "should fail with \"{named}\" and not be retried after it, never provisioned"
                    ))
                })
            }
            Kind::GarbageRandom | Kind::GarbageMalformed => {
                (!(failed && never)).then(|| why("should fail, never provisioned"))
            }
        };
        if let Some(b) = bad {
            if matches!(d.kind, Kind::Healthy) {
                healthy_bad.push(b);
            } else {
                faulty_bad.push(b);
            }
        }
    }
    let healthy = kinds.get(&Kind::Healthy).map_or(0, |c| c.devices);
    check(
        "healthy devices all done",
        healthy_bad,
        format!("{healthy} of {healthy}"),
    );
    let faulty: usize = kinds
        .iter()
        .filter(|(k, _)| **k != Kind::Healthy)
        .map(|(_, c)| c.devices)
        .sum();
    check(
        "each faulty kind ends as expected",
        faulty_bad,
        format!(
            "{faulty} faulty devices of {} kinds",
            kinds.len().saturating_sub(1)
        ),
    );

    // 5. No address handed out twice.
    let mut owner: BTreeMap<u16, String> = BTreeMap::new();
    let mut offenders = BTreeSet::new();
    let mut ranges: Vec<(String, u16, u8)> = watch.handed_out.clone();
    ranges.extend(
        store_nodes
            .iter()
            .map(|n| (n.uuid.to_string(), n.address, n.elements)),
    );
    for (uuid, address, elements) in &ranges {
        for a in u32::from(*address)..u32::from(*address) + u32::from(*elements) {
            let a = u16::try_from(a).unwrap_or(u16::MAX);
            match owner.get(&a) {
                Some(o) if o != uuid => {
                    offenders.insert(format!("0x{a:04x}: {o} and {uuid}"));
                }
                Some(_) => {}
                None => {
                    owner.insert(a, uuid.clone());
                }
            }
        }
    }
    check(
        "no address handed out twice",
        offenders.into_iter().collect(),
        format!(
            "{} addresses in {} commits and {} store nodes",
            owner.len(),
            watch.handed_out.len(),
            store_nodes.len()
        ),
    );

    // 6. Every key a device holds is in the store.
    let mut offenders = Vec::new();
    let mut holding = 0usize;
    for (uuid, v) in &out.nodes {
        if let DeviceState::Provisioned {
            address,
            device_key,
            ..
        } = v.state()
        {
            holding += 1;
            match store_nodes.iter().find(|n| n.uuid == *uuid) {
                None => offenders.push(format!("{uuid}: holds keys, not in the store")),
                Some(n) if n.address != *address => offenders.push(format!(
                    "{uuid}: at 0x{address:04x}, the store says 0x{:04x}",
                    n.address
                )),
                Some(n) if n.device_key.expose_secret() != device_key.expose_secret() => {
                    offenders.push(format!("{uuid}: its device key is not the store's"))
                }
                Some(_) => {}
            }
        }
    }
    for d in out.report.devices.iter().filter(|d| d.stage == Stage::Done) {
        match store_nodes.iter().find(|n| n.uuid == d.uuid) {
            Some(n) if n.state == NodeState::Configured => {}
            Some(n) => offenders.push(format!("{}: done, but {} in the store", d.uuid, n.state)),
            None => offenders.push(format!("{}: done, not in the store", d.uuid)),
        }
    }
    check(
        "every committed device key in the store",
        offenders,
        format!(
            "{holding} devices hold keys, each the store's; {} done nodes configured",
            s.done
        ),
    );

    // 7. Memory.
    let mut samples = watch.samples.clone();
    if let Some((rss, _)) = rss_kb() {
        samples.push(MemSample {
            finished: watch.finished,
            t_ms: s.time_ms,
            rss_kb: rss,
        });
    }
    let mut offenders = Vec::new();
    match peak_rss_kb {
        Some(p) if p as f64 / 1024.0 > rss_bound_mb => offenders.push(format!(
            "peak resident set {:.1} MB is over the bound of {rss_bound_mb:.1} MB",
            p as f64 / 1024.0
        )),
        Some(_) => {}
        None => offenders.push("no /proc/self/status: the resident set cannot be read".into()),
    }
    // Growth per device finished: the second half of the run may not grow faster than the
    // first (a leak per unit of virtual time or per retry would); 8 MB of slack for the
    // allocator's steps.
    let at = |q: usize| {
        samples
            .iter()
            .find(|m| m.finished * 4 >= watch.devices * q)
            .map(|m| m.rss_kb)
    };
    if let (Some(r0), Some(r2), Some(r4)) = (samples.first().map(|m| m.rss_kb), at(2), at(4)) {
        let first = r2.saturating_sub(r0);
        let second = r4.saturating_sub(r2);
        if second > first + 8 * 1024 {
            offenders.push(format!(
                "the resident set grew {:.1} MB in the second half of the devices, {:.1} MB in the first",
                second as f64 / 1024.0,
                first as f64 / 1024.0
            ));
        }
    }
    check(
        "memory bounded",
        offenders,
        format!(
            "peak {} ≤ {rss_bound_mb:.1} MB; second half's growth ≤ the first's + 8 MB",
            peak_rss_kb.map_or("?".into(), |p| format!("{:.1} MB", p as f64 / 1024.0))
        ),
    );

    Ok(SoakOutcome {
        report: out.report,
        kinds,
        checks,
        samples,
        peak_rss_kb,
        rss_bound_mb,
        wall,
        cpu,
        retransmissions: out.retransmissions,
        air: out.air,
    })
}

/// Parses `--blackout`: `START:DURATION` in seconds, or `none`.
pub fn parse_blackout(s: &str) -> Result<Option<(Duration, Duration)>, String> {
    if s == "none" {
        return Ok(None);
    }
    let (a, b) = s.split_once(':').ok_or_else(|| {
        format!("--blackout '{s}': give START_S:DURATION_S (e.g. 300:60) or none")
    })?;
    let start: u64 = a
        .trim()
        .parse()
        .map_err(|_| format!("--blackout '{s}': '{a}' is not a number of seconds"))?;
    let len: u64 = b
        .trim()
        .parse()
        .map_err(|_| format!("--blackout '{s}': '{b}' is not a number of seconds"))?;
    if !(1..=86_400).contains(&len) || start > 7 * 86_400 {
        return Err(format!(
            "--blackout '{s}': the start must be at most 604800 s and the duration 1..=86400 s"
        ));
    }
    Ok(Some((Duration::from_secs(start), Duration::from_secs(len))))
}

/// `meshprov soak`: returns the exit code (0 every check passed, 3 a check failed, 2 usage,
/// 1 internal error).
pub fn soak(args: &SoakArgs) -> i32 {
    let blackout = match parse_blackout(&args.blackout) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("meshprov: {e}");
            return crate::exit::USAGE;
        }
    };
    if let Some(c) = args.concurrency.filter(|c| !(1..=64).contains(c)) {
        eprintln!("meshprov: --concurrency {c} is not in 1..=64");
        return crate::exit::USAGE;
    }
    let dir = args.dir.clone().unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis();
        std::env::temp_dir().join(format!("meshprov-soak-{}-{stamp}", std::process::id()))
    });
    let opts = SoakOptions {
        devices: args.devices,
        loss: args.loss,
        faulty: args.faulty,
        blackout,
        seed: args.seed,
        max_rss_mb: args.max_rss_mb,
        concurrency: args.concurrency,
        dir: dir.clone(),
        progress: true,
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(
        stdout,
        "soak of {} devices at {} % loss, {} % faulty, blackout {}, seed {}, in {}\n",
        opts.devices,
        opts.loss * 100.0,
        opts.faulty * 100.0,
        match blackout {
            Some((s, d)) => format!("{}–{} s", s.as_secs(), (s + d).as_secs()),
            None => "none".into(),
        },
        opts.seed,
        dir.display()
    );
    match run(&opts) {
        Ok(out) => {
            let _ = write!(stdout, "{}", out.to_text());
            let _ = writeln!(
                stdout,
                "building, plan, store and report.json in {}",
                dir.display()
            );
            if out.passed() {
                crate::exit::SUCCESS
            } else {
                EXIT_CHECK_FAILED
            }
        }
        Err(e) => {
            eprintln!("meshprov: {e}");
            e.exit_code()
        }
    }
}
