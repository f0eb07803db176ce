//! The terminal UI's passphrase dialog (issue 11 item 3): `meshprov demo` on an encrypted store
//! in a tmux pane asks for the passphrase before the run starts, masks what is typed, says a
//! wrong one is wrong, starts the run with the right one, and Esc ends without running (exit 2).
//!
//! Every wait has a time limit; the tmux server runs on a socket of its own and is killed (and
//! its pid) at the end. Without tmux the test fails when `CI` is set and is skipped otherwise.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use meshprov::store::{KdfParams, Passphrase, Store};

const PASS: &str = "tui dialog passphrase";

struct Tmux {
    socket: String,
    pid: Option<u32>,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "pp"])
            .unwrap_or_default()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "pp"];
        args.extend_from_slice(keys);
        self.run(&args).expect("tmux send-keys");
        std::thread::sleep(Duration::from_millis(150));
    }

    fn text(&self, text: &str) {
        self.run(&["send-keys", "-t", "pp", "-l", text])
            .expect("tmux send-keys -l");
        std::thread::sleep(Duration::from_millis(150));
    }

    fn wait(&self, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {secs} s waiting for {what}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn start(&mut self, cmd: &str) {
        self.run(&[
            "new-session",
            "-d",
            "-s",
            "pp",
            "-x",
            "120",
            "-y",
            "40",
            cmd,
        ])
        .expect("tmux new-session");
        self.pid = self
            .run(&["display", "-p", "-t", "pp", "#{pid}"])
            .and_then(|s| s.trim().parse().ok());
    }

    fn stop(&mut self) {
        let _ = self.run(&["kill-server"]);
        if let Some(pid) = self.pid.take() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.stop();
    }
}

fn have_tmux() -> bool {
    match Command::new("tmux").arg("-V").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "tmux is needed for this test (CI installs it)"
            );
            eprintln!("skipped: tmux is not installed");
            false
        }
    }
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

#[test]
fn the_passphrase_dialog_before_a_run() {
    if !have_tmux() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    meshprov::tools::rollout::write_demo(&dir, 6, 1).unwrap();
    {
        let mut s = Store::open(&dir.join("network.db")).unwrap();
        s.encrypt(&Passphrase::new(PASS.into()), &KdfParams::TEST_ONLY_CHEAP)
            .unwrap();
    }
    let cmd = format!(
        "env -u MESHPROV_PASSPHRASE TERM=xterm-256color {} demo --dir {} --speed 200; echo EXIT=$?; sleep 60",
        shell_quote(Path::new(env!("CARGO_BIN_EXE_meshprov"))),
        shell_quote(&dir)
    );
    let mut tmux = Tmux {
        socket: format!("meshprov-pp-{}", std::process::id()),
        pid: None,
    };
    tmux.start(&cmd);
    let s = tmux.wait("the passphrase dialog", 20, |s| {
        s.contains("Passphrase") && s.contains("network store is encrypted")
    });
    assert!(s.contains("network.db"), "{s}");
    // Masked: dots, never the text.
    tmux.text("wrong guess");
    let s = tmux.wait("the masked field", 5, |s| s.contains("•••••••••••"));
    assert!(!s.contains("wrong guess"), "{s}");
    tmux.keys(&["Enter"]);
    let s = tmux.wait("the wrong passphrase", 10, |s| {
        s.contains("wrong passphrase, try again")
    });
    assert!(!s.contains("•"), "the field was not emptied:\n{s}");
    tmux.text(PASS);
    tmux.keys(&["Enter"]);
    let s = tmux.wait("the run", 30, |s| s.contains("1 Dashboard"));
    assert!(!s.contains(PASS), "{s}");
    tmux.wait("every device done", 60, |s| s.contains("done 6"));
    tmux.keys(&["q"]);
    let s = tmux.wait("the exit", 20, |s| s.contains("EXIT="));
    assert!(s.contains("EXIT=0"), "{s}");
    assert!(!s.contains(PASS) && !s.contains("wrong guess"), "{s}");
    tmux.stop();

    // Esc: no run, exit 2, and the terminal back.
    let mut tmux = Tmux {
        socket: format!("meshprov-pp2-{}", std::process::id()),
        pid: None,
    };
    tmux.start(&cmd);
    tmux.wait("the passphrase dialog", 20, |s| s.contains("Passphrase"));
    tmux.keys(&["Escape"]);
    let s = tmux.wait("the exit", 20, |s| s.contains("EXIT="));
    assert!(s.contains("EXIT=2"), "{s}");
    assert!(s.contains("no passphrase given"), "{s}");
}

/// Without the terminal UI: a no-echo prompt on the terminal, three tries.
#[test]
fn the_no_echo_prompt_on_a_terminal() {
    if !have_tmux() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("hq.db");
    {
        let mut s = Store::open(&db).unwrap();
        s.encrypt(&Passphrase::new(PASS.into()), &KdfParams::TEST_ONLY_CHEAP)
            .unwrap();
        let mut rng = meshprov::store::os_rng().unwrap();
        s.create_network("hq", None, &mut rng).unwrap();
    }
    let cmd = format!(
        "env -u MESHPROV_PASSPHRASE {} cdb export - --store {} | grep -c netKeys; echo EXIT=$?; sleep 60",
        shell_quote(Path::new(env!("CARGO_BIN_EXE_meshprov"))),
        shell_quote(&db)
    );
    let mut tmux = Tmux {
        socket: format!("meshprov-pp3-{}", std::process::id()),
        pid: None,
    };
    tmux.start(&cmd);
    tmux.wait("the prompt", 20, |s| s.contains("Passphrase for"));
    tmux.text("not it at all");
    tmux.keys(&["Enter"]);
    tmux.wait("a second try", 10, |s| {
        s.contains("wrong passphrase, try again")
    });
    tmux.text(PASS);
    tmux.keys(&["Enter"]);
    let s = tmux.wait("the export", 20, |s| s.contains("EXIT="));
    assert!(s.contains("EXIT=0") && s.contains("\n1\n"), "{s}");
    assert!(
        !s.contains("not it at all") && !s.contains(PASS),
        "echoed:\n{s}"
    );
}
