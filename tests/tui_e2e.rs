//! The terminal UI end to end: the real `meshprov demo` binary in a tmux pane (120×40), driven
//! by keys and read back from the pane's text at every step — progress, pause, a filter, a
//! device's detail, the retry of the demo's late device, and quitting (the confirmation while
//! work runs, the store left consistent, the terminal given back).
//!
//! Every wait has a time limit; the tmux server runs on a socket of its own and is killed by
//! its pid at the end. Without tmux the test fails when `CI` is set (the house rule for
//! external tools) and is skipped with a message otherwise.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod tmux_support;
use tmux_support::{Pane, shell_quote};

/// The dashboard's count of a category (`done 12`, `failed 1`), if the dashboard is shown.
fn count(screen: &str, label: &str) -> Option<u32> {
    let at = screen.find(&format!("{label} "))?;
    screen[at + label.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Rows of the device table: the lines that hold a demo device's name and a short UUID.
fn device_rows(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .filter(|l| {
            l.contains('…')
                && ["light ", "sensor ", "switch "]
                    .iter()
                    .any(|n| l.contains(n))
        })
        .collect()
}

#[test]
fn the_demo_in_the_terminal_ui() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    // After the binary: its exit code, whether the line discipline is cooked again, then a
    // pause so the pane can be read.
    let cmd = format!(
        "TERM=xterm-256color {} demo --dir {} --speed 30; echo EXIT=$?; \
         stty -a | grep -o -- '-*icanon' | sed 's/^/STTY:/'; sleep 60",
        shell_quote(Path::new(env!("CARGO_BIN_EXE_meshprov"))),
        shell_quote(&dir)
    );
    let Some(tmux) = Pane::start("meshprov-e2e", 120, 40, &cmd) else {
        return;
    };

    // 1. The dashboard, and progress: the done count rises.
    let s = tmux.wait("the dashboard, running", 20, |s| {
        s.contains("1 Dashboard") && s.contains("running") && count(s, "done").is_some()
    });
    assert!(tmux.alternate_on(), "not on the alternate screen:\n{s}");
    assert!(s.contains("demo") && s.contains("running"), "{s}");
    let first = count(&s, "done").unwrap();
    let s = tmux.wait("devices done", 20, |s| {
        count(s, "done").is_some_and(|d| d >= first + 6)
    });
    assert!(s.contains("devices/min"), "no throughput:\n{s}");

    // 2. Pause: the screen says so and the counts stop once the sessions under way end. Kept
    //    short: no attempt starts while paused, so a pause delays the late light's failure
    //    (switched on at 900 s, it must fail first, at 542 s plus the pause).
    tmux.keys(&["Space"]);
    tmux.wait("paused", 5, |s| s.contains("paused"));
    let mut last = (u32::MAX, u32::MAX);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = tmux.screen();
        let now = (
            count(&s, "done").unwrap_or(0),
            count(&s, "in progress").unwrap_or(0),
        );
        if now == last {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counts still move while paused:\n{s}"
        );
        last = now;
        std::thread::sleep(Duration::from_millis(500));
    }
    let paused_done = last.0;
    std::thread::sleep(Duration::from_millis(1000));
    let s = tmux.screen();
    assert_eq!(
        count(&s, "done"),
        Some(paused_done),
        "done moved while paused:\n{s}"
    );
    assert!(s.contains("paused"), "{s}");

    tmux.keys(&["Space"]);
    tmux.wait("running again", 5, |s| s.contains("running"));

    // 3. The device table filtered by text: only the sensors (while the run goes on).
    tmux.keys(&["2"]);
    tmux.keys(&["/"]);
    tmux.text("sensor");
    tmux.keys(&["Enter"]);
    let s = tmux.wait("the filtered table", 5, |s| !device_rows(s).is_empty());
    let rows = device_rows(&s);
    assert!(
        rows.iter()
            .all(|r| r.contains("sensor ") && !r.contains("light ") && !r.contains("switch ")),
        "rows that are not sensors:\n{s}"
    );
    // The demo's 30 devices have 10 sensors; all fit on the screen.
    assert_eq!(rows.len(), 10, "{s}");

    // 4. The detail of a device that is done: its transcript and Composition Data.
    // Static OOB devices (no certificate records before the Invite), stage category done
    // (`f` cycles all → failed → in progress → waiting → done).
    tmux.keys(&["/"]);
    tmux.text("static");
    tmux.keys(&["Enter"]);
    tmux.keys(&["f", "f", "f", "f"]);
    let s = tmux.wait("done static devices", 5, |s| {
        let rows = device_rows(s);
        !rows.is_empty()
            && rows
                .iter()
                .all(|r| r.contains(" done ") && r.contains("static"))
    });
    assert!(!device_rows(&s).iter().any(|r| r.contains("cert")), "{s}");
    tmux.keys(&["Enter"]);
    let s = tmux.wait("the detail", 5, |s| {
        s.contains("Provisioning transcript") && s.contains("Invite")
    });
    assert!(s.contains("Capabilities") && s.contains("Complete"), "{s}");
    assert!(
        s.contains("cid ") && s.contains("element 0"),
        "no Composition Data:\n{s}"
    );
    assert!(s.contains("AppKey Add"), "no configuration steps:\n{s}");

    // 5. The late light (switched on 15 minutes into the run) fails; retry it. Its new
    //    attempts run until then, so the quit below comes while work runs.
    tmux.keys(&["1"]);
    let s = tmux.wait("the late device to fail", 40, |s| {
        count(s, "failed") == Some(1)
    });
    assert!(s.contains("light 1-02"), "{s}");
    tmux.keys(&["2"]);
    tmux.keys(&["c"]);
    tmux.keys(&["/"]);
    tmux.text("light 1-02");
    tmux.keys(&["Enter"]);
    let s = tmux.wait("the failed row", 5, |s| device_rows(s).len() == 1);
    assert!(device_rows(&s)[0].contains("failed"), "{s}");
    tmux.keys(&["r"]);
    let s = tmux.wait("the retried row", 5, |s| {
        device_rows(s).len() == 1 && !device_rows(s)[0].contains("failed")
    });
    let row = device_rows(&s)[0].to_string();
    assert!(
        ["scheduled", "provisioning", "retrying"]
            .iter()
            .any(|st| row.contains(st)),
        "{row}"
    );

    // 6. Quit while it runs: asked first; then the terminal is back, and the exit code says
    //    that not every device is done (the run was stopped).
    tmux.keys(&["q"]);
    let s = tmux.wait("the quit question", 5, |s| {
        s.contains("quit") && s.contains("y")
    });
    assert!(tmux.alternate_on(), "{s}");
    tmux.keys(&["y"]);
    let s = tmux.wait("the end", 20, |s| s.contains("STTY:"));
    assert!(!tmux.alternate_on(), "still on the alternate screen:\n{s}");
    assert!(s.contains("STTY:icanon"), "still raw:\n{s}");
    assert!(s.contains("EXIT=3"), "{s}");
    assert!(s.contains("(stopped)"), "no summary line:\n{s}");
    assert!(
        !s.contains("did not settle"),
        "the quit needed the grace:\n{s}"
    );
    assert!(!s.contains("1 Dashboard"), "{s}");
    // The store is consistent: a rerun resumes and finishes the building (headless).
    let stdout = headless_demo(&dir);
    assert!(stdout.contains("devices done"), "{stdout}");
    eprintln!("tui_e2e: {:.1} s", t0.elapsed().as_secs_f64());
}

/// The installer closes the terminal window mid-run (here: the tmux server is killed): the
/// kernel hangs the terminal up, and meshprov must stop the run and exit — not spin on a dead
/// terminal for ever (it did: crossterm's poll reads end-of-file in a loop and never returns).
#[test]
fn a_closed_terminal_ends_the_run() {
    // meshprov is the session leader: the kernel's SIGHUP reaches it.
    closed_terminal_ends_the_run("meshprov-e2e-hup", "exec ", "");
}

/// The same when no SIGHUP comes: the kernel signals only the session leader, here a shell
/// that ignores it and forwards nothing (a wrapper script, `trap '' HUP`). meshprov notices
/// the hung-up terminal itself (it spun at 80 % CPU for ever before).
#[test]
fn a_closed_terminal_ends_the_run_without_a_sighup() {
    closed_terminal_ends_the_run("meshprov-e2e-nohup", "trap '' HUP; ", "; exit $?");
}

/// Starts the demo in tmux as `{before}meshprov demo …{after}` (a `sh -c` line), kills the
/// tmux server once devices are done, and asserts that what the pane ran exits within 15 s,
/// without the last-resort grace, and that a rerun finishes the building.
fn closed_terminal_ends_the_run(socket: &str, before: &str, after: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    // Its stderr to a file: the terminal will be gone when it writes there.
    let stderr = tmp.path().join("stderr.txt");
    let cmd = format!(
        "{before}env TERM=xterm-256color {} demo --dir {} --speed 30 2>{}{after}",
        shell_quote(Path::new(env!("CARGO_BIN_EXE_meshprov"))),
        shell_quote(&dir),
        shell_quote(&stderr)
    );
    let Some(tmux) = Pane::start(socket, 100, 30, &cmd) else {
        return;
    };
    tmux.wait("the dashboard, running", 20, |s| {
        s.contains("1 Dashboard") && count(s, "done").is_some_and(|d| d >= 1)
    });
    let (server, pane) = (
        tmux.server.expect("tmux pid"),
        tmux.process.expect("pane pid"),
    );
    let alive = |pid: u32| {
        Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    };
    assert!(alive(pane));
    Command::new("kill")
        .args(["-9", &server.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive(pane) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if alive(pane) {
        let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pane}/task"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| {
                        let f =
                            |n: &str| std::fs::read_to_string(e.path().join(n)).unwrap_or_default();
                        format!("{} {}", f("comm").trim(), f("wchan").trim())
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Kill what the pane ran (and the shell's children) before failing: nothing is left
        // spinning after the test.
        let children = std::fs::read_to_string(format!("/proc/{pane}/task/{pane}/children"))
            .unwrap_or_default();
        for pid in children
            .split_whitespace()
            .chain([pane.to_string().as_str()])
        {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
        panic!(
            "meshprov (pid {pane}, children {children:?}) still runs 15 s after its terminal went away; threads: {threads:?}"
        );
    }
    // The run settled after the stop: the last-resort grace (which ends a run that does not
    // settle, as a crash would) was not needed; and printing the summary to the dead terminal
    // did not panic (the exit code stays the run's).
    let err = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert!(!err.contains("did not settle"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The store is consistent: a headless rerun finishes the building.
    headless_demo(&dir);
}

/// `meshprov key-refresh` in the terminal UI on a store a headless demo rollout made: the
/// dashboard follows the procedure through its phases to the end, the key refresh screen lists
/// every node done with phase 3, `q` quits without a question once it is over, and the store
/// says the refresh is complete. A second refresh quit in phase 1 (the question first) exits 3
/// with the way to resume, and a headless re-run of the same command resumes and completes it.
#[test]
fn key_refresh_in_the_terminal_ui() {
    if !tmux_support::available() {
        return;
    }
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let bin = Path::new(env!("CARGO_BIN_EXE_meshprov"));
    headless_demo(&dir);
    let store = dir.join("network.db");
    let radio = format!("sim:{}", dir.join("building.toml").display());
    let kr_cmd = |speed: u32| {
        format!(
            "TERM=xterm-256color {} key-refresh --radio {} --store {} --speed {speed}; echo EXIT=$?; \
             stty -a | grep -o -- '-*icanon' | sed 's/^/STTY:/'; sleep 60",
            shell_quote(bin),
            shell_quote(Path::new(&radio)),
            shell_quote(&store)
        )
    };
    let journal = || {
        meshprov::store::Store::open(&store)
            .unwrap()
            .key_refresh(0)
            .unwrap()
            .map(|r| r.phase)
    };

    // 1. A whole key refresh: the phases go by on the dashboard.
    let tmux = Pane::start("meshprov-e2e-kr", 120, 40, &kr_cmd(5)).expect("tmux");
    let s = tmux.wait("the key refresh dashboard", 20, |s| {
        s.contains("┌ Key refresh") && s.contains("Network demo") && s.contains("of 30 nodes")
    });
    assert!(tmux.alternate_on(), "{s}");
    assert!(
        s.contains("radio sim building.toml (seed 1, 5× speed)"),
        "{s}"
    );
    let s = tmux.wait("phase 2 or 3", 30, |s| {
        s.contains("phase 2 switching to new keys") || s.contains("phase 3 revoking old keys")
    });
    assert!(s.contains("1 distributing keys        30/30"), "{s}");
    // The key refresh screen: nodes in phase 2 or 3, each with its status.
    tmux.keys(&["5"]);
    let s = tmux.wait("the node list", 5, |s| s.contains("Addr   Name"));
    assert!(
        s.lines()
            .any(|l| l.contains("light ") && (l.contains(" 2     ") || l.contains(" 3     "))),
        "{s}"
    );
    let s = tmux.wait("the end of the key refresh", 30, |s| {
        s.contains("finished") && s.contains("phase normal")
    });
    let rows: Vec<&str> = s
        .lines()
        .filter(|l| {
            ["light ", "sensor ", "switch "]
                .iter()
                .any(|n| l.contains(n))
        })
        .collect();
    assert!(rows.len() >= 20, "{s}");
    assert!(
        rows.iter().all(|r| r.contains(" 3     done")),
        "a node not done with phase 3:\n{s}"
    );
    tmux.keys(&["1"]);
    let s = tmux.wait("the dashboard at the end", 5, |s| s.contains("finished 30"));
    assert!(
        s.contains("30 / 30 nodes finished") && s.contains("no node left behind"),
        "{s}"
    );
    assert!(s.contains("the key refresh is complete; q quits"), "{s}");
    // Over: q quits at once, the terminal is back, exit 0, the store closed the journal.
    tmux.keys(&["q"]);
    let s = tmux.wait("the exit", 10, |s| s.contains("STTY:"));
    assert!(!tmux.alternate_on(), "{s}");
    assert!(s.contains("STTY:icanon"), "{s}");
    assert!(s.contains("EXIT=0"), "{s}");
    assert!(
        s.contains("Finished: 30 nodes use the new keys, 0 left behind, 0 excluded"),
        "{s}"
    );
    assert_eq!(journal(), None, "the store still has a key refresh journal");
    drop(tmux);

    // 2. Another refresh, quit in phase 1: asked first, exit 3, the journal kept.
    let tmux = Pane::start("meshprov-e2e-kr2", 100, 30, &kr_cmd(2)).expect("tmux");
    tmux.wait("phase 1 under way", 20, |s| {
        s.lines().any(|l| {
            l.contains("1 distributing keys")
                && l.split_whitespace()
                    .find(|w| w.contains("/30"))
                    .and_then(|w| w.split('/').next()?.parse::<u32>().ok())
                    .is_some_and(|n| (3..30).contains(&n))
        })
    });
    tmux.keys(&["q"]);
    let s = tmux.wait("the quit question", 5, |s| s.contains("Quit?"));
    assert!(
        s.contains("The key refresh is running") && s.contains("same command resumes it"),
        "{s}"
    );
    tmux.keys(&["y"]);
    let s = tmux.wait("the exit", 10, |s| s.contains("STTY:"));
    assert!(s.contains("EXIT=3"), "{s}");
    assert!(s.contains("STTY:icanon"), "{s}");
    assert!(
        s.replace('\n', "")
            .contains("the key refresh was stopped in phase 1"),
        "{s}"
    );
    drop(tmux);
    assert_eq!(journal(), Some(1), "the stopped key refresh's journal");
    // The same command, headless, resumes it and completes it.
    let out = Command::new(bin)
        .args(["key-refresh", "--headless", "--radio", &radio, "--store"])
        .arg(&store)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("Resuming the key refresh of NetKey 0"),
        "{stdout}"
    );
    assert_eq!(journal(), None);
    eprintln!(
        "key_refresh_in_the_terminal_ui: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// `meshprov demo --headless --dir DIR`, which must finish every device (exit 0); its stdout.
fn headless_demo(dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_meshprov"))
        .args(["demo", "--headless", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    stdout
}
