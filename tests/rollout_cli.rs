//! `meshprov rollout` and `meshprov demo` as an installer's script sees them: exit codes
//! (0 all done, 3 some not, 2 a plan or usage error naming the plan's line and field), the
//! JSON lines schema and the report file, the demo and its resume, and crash safety: the
//! rollout process killed with SIGKILL at 30 moments of a 100-device run, resumed each time.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use meshprov::store::{NodeState, Store};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use serde_json::Value;

fn meshprov(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshprov"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn demo_dir(n: usize, seed: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    meshprov::tools::rollout::write_demo(dir.path(), n, seed).unwrap();
    dir
}

fn plan_arg(dir: &Path) -> String {
    dir.join("plan.toml").display().to_string()
}

const GOOD: &str = r#"
[network]
name = "hq"
store = "hq.db"

[provisioner]
unicast_ranges = ["0001-00FF"]
radio = "sim:building.toml"

[policy]
auth = ["static", "output"]

[templates.light]
app_keys = ["lights"]
bind = [{ model = "1000", app_key = "lights" }]

[[device]]
uuid = "7b2c1a90-0000-4000-8000-000000000001"
auth = "static:00112233445566778899aabbccddeeff"
template = "light"
"#;

/// Each kind of plan error: exit 2, the file, the line and the field named.
#[test]
fn plan_errors_name_the_line_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.toml");
    let cases: Vec<(String, usize, &str, &str)> = vec![
        (
            GOOD.replace("template = \"light\"", "template = \"lamp\""),
            20,
            "device[0].template",
            "unknown template 'lamp'",
        ),
        (
            format!(
                "{GOOD}\n[[device]]\nuuid = \"7b2c1a90000040008000000000000001\"\nauth = \"output\"\ntemplate = \"light\"\n"
            ),
            23,
            "device[1].uuid",
            "duplicate UUID",
        ),
        (
            GOOD.replace(
                "static:00112233445566778899aabbccddeeff",
                "static:0011223344556677889900112233445g",
            ),
            19,
            "device[0].auth",
            "not hex",
        ),
        (
            GOOD.replace("[\"0001-00FF\"]", "[\"0001-00FF\", \"0080-0100\"]"),
            7,
            "provisioner.unicast_ranges[1]",
            "overlaps 0001-00FF",
        ),
        (
            GOOD.replace("name = \"hq\"", "name = \"hq\"\ncolour = \"blue\""),
            4,
            "network.colour",
            "unknown field",
        ),
        (
            GOOD.replace("auth = [\"static\", \"output\"]", "auth = [\"static\"]"),
            19,
            "device[0].auth",
            "not allowed",
        ),
        (
            GOOD.replace("app_keys = [\"lights\"]", "app_keys = \"lights\""),
            14,
            "templates.light.app_keys",
            "invalid type",
        ),
    ];
    // A device whose method the policy refuses: an output device under `auth = ["static"]`.
    let mut cases = cases;
    cases[5].0 = cases[5].0.replace(
        "auth = \"static:00112233445566778899aabbccddeeff\"",
        "auth = \"output\"",
    );
    for (body, line, field, words) in &cases {
        std::fs::write(&plan, body).unwrap();
        let out = meshprov(&["rollout", &plan.display().to_string(), "--json"]);
        assert_eq!(out.status.code(), Some(2), "{field}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        let want = format!("plan.toml:{line}: {field}: ");
        assert!(err.contains(&want), "expected '{want}' in: {err}");
        assert!(err.contains(words), "expected '{words}' in: {err}");
        let v: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
        assert_eq!(v["event"], "error");
        assert_eq!(v["line"], *line as u64);
        assert_eq!(v["field"], *field);
    }
    // Usage errors are 2 as well.
    let out = meshprov(&["rollout", "/nonexistent/plan.toml"]);
    assert_eq!(out.status.code(), Some(2));
    std::fs::write(&plan, GOOD).unwrap();
    let out = meshprov(&["rollout", &plan.display().to_string(), "--concurrency", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Every line is one JSON object with `t_ms` and `event`; device events carry the UUID; the
/// events of a whole device life appear; the last line is the summary; `--report` has every
/// device's phase timings.
#[test]
fn json_lines_schema_report_and_exit_codes() {
    let dir = demo_dir(8, 4);
    let report = dir.path().join("r.json");
    let out = meshprov(&[
        "rollout",
        &plan_arg(dir.path()),
        "--json",
        "--report",
        &report.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let mut names = BTreeSet::new();
    let mut last_t = 0;
    for v in &lines {
        let ev = v["event"].as_str().unwrap();
        names.insert(ev.to_string());
        let t = v["t_ms"].as_u64().unwrap();
        assert!(t >= last_t, "time goes forward");
        last_t = t;
        if !["start", "summary", "paused", "unpaused", "stopping"].contains(&ev) {
            assert_eq!(v["uuid"].as_str().map(str::len), Some(36), "{v}");
        }
        match ev {
            "provisioned" => assert!(v["address"].is_u64() && v["elements"].is_u64()),
            "failed" => assert!(v["phase"].is_string() && v["reason"].is_string()),
            "authenticated" => assert!(v["method"].is_string()),
            "capabilities" => assert!(v["algorithms"].is_array()),
            _ => {}
        }
    }
    for want in [
        "start",
        "discovered",
        "scheduled",
        "provisioning_started",
        "link_opened",
        "capabilities",
        "authenticated",
        "provisioned",
        "configuring_started",
        "configured",
        "verifying_started",
        "done",
        "summary",
    ] {
        assert!(names.contains(want), "no '{want}' event in {names:?}");
    }
    let summary = lines.last().unwrap();
    assert_eq!(summary["event"], "summary");
    for k in [
        "devices",
        "done",
        "failed",
        "skipped",
        "retries",
        "wall_time_ms",
        "virtual_time_ms",
    ] {
        assert!(summary.get(k).is_some(), "summary lacks {k}");
    }
    assert_eq!(summary["done"], 8);
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let devices = r["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 8);
    for d in devices {
        assert_eq!(d["stage"], "done");
        assert!(d["timings"]["provisioning_ms"].as_u64().unwrap() > 0);
        assert!(d["timings"]["configuring_ms"].as_u64().unwrap() > 0);
        assert!(d["address"].is_u64());
    }

    // Exit 3: a planned device that is not on the air fails (and only it).
    let plan = dir.path().join("plan.toml");
    let t = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(
        &plan,
        format!("{t}\n[[device]]\nuuid = \"d3e00000-0000-4000-8000-0000000000ff\"\nauth = \"output\"\ntemplate = \"sensor\"\n"),
    )
    .unwrap();
    let out = meshprov(&["rollout", &plan_arg(dir.path()), "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let failed: Vec<Value> = text(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["phase"], "provisioning");
}

#[test]
fn the_demo_runs_on_its_own_and_resumes() {
    // Default --devices, in a temporary directory of its own.
    let tmp = tempfile::tempdir().unwrap();
    let t0 = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_meshprov"))
        .arg("demo")
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // Not a terminal: headless, so the demo has no late circuit (nobody could retry it) and
    // every device is done: exit 0.
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("all 30 devices done"), "{stdout}");
    assert!(t0.elapsed().as_secs() < 60);
    let made = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.join("plan.toml").exists())
        .expect("the demo's directory");
    assert!(
        !std::fs::read_to_string(made.join("building.toml"))
            .unwrap()
            .contains("power_on_s"),
        "a headless demo has no late circuit"
    );
    // The late circuit (as the terminal UI's demo has it): its light spends its attempts
    // before it is on and fails, exit 3; the rerun on the same directory finishes it.
    let late = tempfile::tempdir().unwrap();
    meshprov::tools::rollout::write_demo_with(late.path(), 30, 1, true).unwrap();
    let out = meshprov(&["rollout", &plan_arg(late.path()), "--headless"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("29 of 30 devices done, 1 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("000000000007  FAILED in provisioning"),
        "{stdout}"
    );
    let ls = late.path().display().to_string();
    let out = meshprov(&["demo", "--dir", &ls]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("all 30 devices done"));
    // The same --dir again: nothing to do.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("demo");
    let ds = d.display().to_string();
    let out = meshprov(&["demo", "--devices", "5", "--dir", &ds, "--headless"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(d.join("network.db").exists() && d.join("plan.toml").exists());
    let out = meshprov(&["demo", "--devices", "5", "--dir", &ds, "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let last: Value = serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["already_done"], 5);
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .starts_with("nothing to do")
    );
}

/// The rollout process is killed with SIGKILL at 30 moments of a 100-device run (after a
/// random number of progress events each time) and resumed; at the end every device is a
/// node exactly once, no address is used twice, and every node is configured — which it
/// becomes only after answering Config requests under the device key the store holds.
#[test]
fn killed_rollouts_resume_without_losing_or_repeating_anything() {
    let dir = demo_dir(100, 12);
    let plan = plan_arg(dir.path());
    let mut rng = ChaCha20Rng::seed_from_u64(30);
    let t0 = std::time::Instant::now();
    let mut kills = 0;
    for round in 0..30 {
        let wait_for = 1 + (rng.next_u32() % 25) as usize;
        let mut child = Command::new(env!("CARGO_BIN_EXE_meshprov"))
            .args([
                "rollout",
                &plan,
                "--json",
                "--seed",
                &round.to_string(),
                "--loss",
                "0.1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut progress = 0;
        let mut finished = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("\"event\":\"summary\"") {
                finished = true;
            }
            if [
                "provisioned",
                "configured",
                "done",
                "authenticated",
                "link_opened",
            ]
            .iter()
            .any(|e| line.contains(&format!("\"event\":\"{e}\"")))
            {
                progress += 1;
                if progress >= wait_for {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if !finished {
            kills += 1;
        }
        // After every kill the store opens and is sound.
        let s = Store::open(&dir.path().join("network.db")).unwrap();
        s.check_integrity().unwrap();
    }
    let out = meshprov(&["rollout", &plan, "--json", "--loss", "0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        kills >= 20,
        "only {kills} runs were killed before they finished"
    );

    let s = Store::open(&dir.path().join("network.db")).unwrap();
    s.check_integrity().unwrap();
    let nodes = s.nodes().unwrap();
    assert_eq!(nodes.len(), 100, "every device exactly once");
    let uuids: BTreeSet<_> = nodes.iter().map(|n| n.uuid).collect();
    assert_eq!(uuids.len(), 100);
    let mut addresses = BTreeSet::new();
    for n in &nodes {
        assert_eq!(n.state, NodeState::Configured, "{}", n.uuid);
        for a in n.address..n.address + u16::from(n.elements) {
            assert!(addresses.insert(a), "address {a:#06x} used twice");
        }
    }
    // The only reservation left is the provisioner's own address (README "The provisioner's
    // own address"), none of a device's.
    assert!(
        s.reservations()
            .unwrap()
            .iter()
            .all(|(u, _, _)| !uuids.contains(u)),
        "a device's reservation was left behind"
    );
    // Every stored device key opened a Config exchange with its node: a node becomes
    // `configured` only after it answered its template's requests and Composition Data Get
    // under the device key read from the store (the run that configured it may be a resumed
    // one, whose virtual node was rebuilt from the store).
    eprintln!(
        "crash test: {kills} kills of a 100-device rollout, resumed to the end in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// `meshprov key-refresh` with the rollout's conventions: JSON lines with an `event` each,
/// exit 0 when every node finished, 3 when one did not (here: a node off the air), and a
/// re-run resumes it.
#[test]
fn key_refresh_after_a_rollout_uses_the_same_conventions() {
    let dir = demo_dir(4, 8);
    let out = meshprov(&["rollout", &plan_arg(dir.path())]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let building = format!("sim:{}", dir.path().join("building.toml").display());
    let store = dir.path().join("network.db").display().to_string();
    let s = Store::open(&dir.path().join("network.db")).unwrap();
    let silent = format!("{:04x}", s.nodes().unwrap()[0].address);
    drop(s);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "key-refresh",
            "--radio",
            &building,
            "--store",
            &store,
            "--net-key",
            "0",
            "--headless",
            "--json",
        ];
        args.extend_from_slice(extra);
        meshprov(&args)
    };
    let out = run(&["--silent", &silent]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().all(|v| v["event"].is_string()));
    assert_eq!(lines.last().unwrap()["result"], "incomplete");
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let last: Value = serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["result"], "complete");
}
