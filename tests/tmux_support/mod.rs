//! A tmux pane for the end-to-end tests of the terminal UI (`tests/tui_e2e.rs`,
//! `tests/tui_passphrase.rs`, `tests/radio_bluez.rs`): a tmux server of the test's own (its own
//! socket, named after the test and this process), one session running a command, keys sent and
//! the pane's text read back, every wait bounded. Dropping the pane kills the server and the
//! pids it recorded. Without tmux, [`Pane::start`] fails the test when `CI` is set (the house
//! rule for external tools) and returns `None` (skipped, with a message) otherwise.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The session's name inside the test's own server.
const SESSION: &str = "t";

/// A tmux server of the test's own with one pane.
pub(crate) struct Pane {
    socket: String,
    /// The tmux server's pid, killed on drop.
    pub(crate) server: Option<u32>,
    /// The pid of the process in the pane (its first command), killed with -9 on drop.
    pub(crate) process: Option<u32>,
}

impl Pane {
    /// Starts `cmd` in a `width`×`height` pane of a new tmux server; `None` when tmux is
    /// missing outside CI.
    pub(crate) fn start(socket: &str, width: u16, height: u16, cmd: &str) -> Option<Pane> {
        if !available() {
            return None;
        }
        let mut pane = Pane {
            socket: format!("{socket}-{}", std::process::id()),
            server: None,
            process: None,
        };
        let (w, h) = (width.to_string(), height.to_string());
        pane.run(&["new-session", "-d", "-s", SESSION, "-x", &w, "-y", &h, cmd])
            .expect("tmux new-session");
        pane.server = pane.display("#{pid}").and_then(|s| s.trim().parse().ok());
        pane.process = pane
            .display("#{pane_pid}")
            .and_then(|s| s.trim().parse().ok());
        Some(pane)
    }

    /// A tmux command on this server; its stdout when it succeeded.
    pub(crate) fn run(&self, args: &[&str]) -> Option<String> {
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

    /// A format (`#{pid}`, `#{alternate_on}`) of the pane.
    pub(crate) fn display(&self, format: &str) -> Option<String> {
        self.run(&["display", "-p", "-t", SESSION, format])
    }

    /// The pane's text now.
    pub(crate) fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", SESSION])
            .unwrap_or_default()
    }

    /// Whether the program in the pane has the alternate screen.
    pub(crate) fn alternate_on(&self) -> bool {
        self.display("#{alternate_on}")
            .is_some_and(|s| s.trim() == "1")
    }

    /// Sends keys by tmux name (`Enter`, `Escape`, `q`), then gives the UI a frame to react.
    pub(crate) fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", SESSION];
        args.extend_from_slice(keys);
        self.run(&args).expect("tmux send-keys");
        std::thread::sleep(Duration::from_millis(150));
    }

    /// Types `text` literally, then gives the UI a frame to react.
    pub(crate) fn text(&self, text: &str) {
        self.run(&["send-keys", "-t", SESSION, "-l", text])
            .expect("tmux send-keys -l");
        std::thread::sleep(Duration::from_millis(150));
    }

    /// Waits until the screen satisfies `ok` (at most `secs`); returns it, or fails with the
    /// last screen and what was waited for.
    pub(crate) fn wait(&self, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
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

    /// Kills the server and what the pane ran (also done on drop).
    pub(crate) fn stop(&mut self) {
        let _ = self.run(&["kill-server"]);
        if let Some(pid) = self.server.take() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        if let Some(pid) = self.process.take() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether tmux can be run; without it a test fails under `CI` and is skipped otherwise.
pub(crate) fn available() -> bool {
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

/// `p` quoted for the shell command a pane runs.
pub(crate) fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}
