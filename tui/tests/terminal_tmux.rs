//! The terminal is given back — out of raw mode, off the alternate screen — when the UI ends
//! normally (drop) and when it panics (the panic hook), on a real pseudo-terminal under tmux.
//!
//! The test binary runs itself in a tmux pane as the child (`child_takes_the_terminal`,
//! ignored unless asked for), then reads the pane: tmux says whether the alternate screen is on,
//! and `stty` run after the child says whether the line discipline is cooked again.
//! Without tmux the test fails when `CI` is set (the house rule for external tools) and is
//! skipped with a message otherwise.

use std::process::Command;
use std::time::{Duration, Instant};

use meshprov_tui::app::App;
use meshprov_tui::sample::Script;
use meshprov_tui::terminal::Tui;
use meshprov_tui::theme::Theme;

const MODE: &str = "MESHPROV_TUI_CHILD";

/// The child: take the terminal, draw, then panic or return (dropping the `Tui`), as `MODE`
/// says. Run only by the test below, inside tmux.
#[test]
#[ignore = "the child process of the tmux tests; run by them"]
fn child_takes_the_terminal() {
    let mode = std::env::var(MODE).unwrap_or_default();
    let mut app = App::new(
        Script::new(50, 7).model_at(Duration::from_secs(20)),
        Theme::monochrome(),
    );
    let mut tui = Tui::enter().expect("a terminal");
    tui.draw(&mut app).expect("draw");
    // Let the parent see the UI on the alternate screen.
    std::thread::sleep(Duration::from_millis(1500));
    match mode.as_str() {
        "panic" => panic!("child panicked on purpose"),
        _ => drop(tui),
    }
}

fn tmux(args: &[&str]) -> Option<String> {
    let out = Command::new("tmux").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
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

/// Run the child in a fresh tmux session in `mode`; return what the pane showed while the UI
/// ran, whether the alternate screen was on then and at the end, and the pane at the end.
fn run_child(mode: &str) -> (String, bool, bool, String) {
    let exe = std::env::current_exe().expect("test binary path");
    let session = format!("meshprov-tui-{}-{mode}", std::process::id());
    let _ = tmux(&["kill-session", "-t", &session]);
    let cmd = format!(
        "{MODE}={mode} TERM=xterm-256color '{}' --ignored --exact child_takes_the_terminal \
         --nocapture --test-threads=1; echo CHILD-EXIT=$?; stty -a | grep -o -- '-*icanon' | sed 's/^/STTY:/'; sleep 30",
        exe.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "100",
        "-y",
        "30",
        &cmd,
    ])
    .expect("tmux new-session");
    let capture = || tmux(&["capture-pane", "-p", "-t", &session]).unwrap_or_default();
    let alt = || tmux(&["display", "-p", "-t", &session, "#{alternate_on}"]).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut during = String::new();
    let mut alt_during = false;
    let mut end = String::new();
    while Instant::now() < deadline {
        let screen = capture();
        if screen.contains("1 Dash") && !alt_during {
            during = screen.clone();
            alt_during = alt().trim() == "1";
        }
        if screen.contains("STTY:") {
            end = screen;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let alt_end = alt().trim() == "1";
    let _ = tmux(&["kill-session", "-t", &session]);
    (during, alt_during, alt_end, end)
}

#[test]
fn terminal_is_restored_on_drop_and_on_panic() {
    if !have_tmux() {
        return;
    }
    for mode in ["drop", "panic"] {
        let (during, alt_during, alt_end, end) = run_child(mode);
        assert!(
            during.contains("Rollout"),
            "{mode}: the UI was not seen:\n{during}"
        );
        assert!(alt_during, "{mode}: the UI was not on the alternate screen");
        assert!(!end.is_empty(), "{mode}: the child did not finish");
        assert!(!alt_end, "{mode}: still on the alternate screen:\n{end}");
        // Canonical mode is back (raw mode clears icanon).
        assert!(end.contains("STTY:icanon"), "{mode}: still raw:\n{end}");
        // The UI is gone from the screen, and a panic's message is readable on it.
        assert!(!end.contains("1 Dash"), "{mode}:\n{end}");
        if mode == "panic" {
            assert!(end.contains("child panicked on purpose"), "{end}");
            assert!(end.contains("CHILD-EXIT=101"), "{end}");
        } else {
            assert!(end.contains("CHILD-EXIT=0"), "{end}");
        }
    }
}
