//! The terminal UI's passphrase dialog (issue 11 item 3): `meshprov demo` on an encrypted store
//! in a tmux pane asks for the passphrase before the run starts, masks what is typed, says a
//! wrong one is wrong, starts the run with the right one, and Esc ends without running (exit 2).
//!
//! Every wait has a time limit; the tmux server runs on a socket of its own and is killed (and
//! its pid) at the end. Without tmux the test fails when `CI` is set and is skipped otherwise.

use std::path::Path;

use meshprov::store::{KdfParams, Passphrase, Store};

const PASS: &str = "tui dialog passphrase";

mod tmux_support;
use tmux_support::{Pane, shell_quote};

#[test]
fn the_passphrase_dialog_before_a_run() {
    if !tmux_support::available() {
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
    let mut tmux = Pane::start("meshprov-pp", 120, 40, &cmd).expect("tmux");
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
    let tmux = Pane::start("meshprov-pp2", 120, 40, &cmd).expect("tmux");
    tmux.wait("the passphrase dialog", 20, |s| s.contains("Passphrase"));
    tmux.keys(&["Escape"]);
    let s = tmux.wait("the exit", 20, |s| s.contains("EXIT="));
    assert!(s.contains("EXIT=2"), "{s}");
    assert!(s.contains("no passphrase given"), "{s}");
}

/// Without the terminal UI: a no-echo prompt on the terminal, three tries.
#[test]
fn the_no_echo_prompt_on_a_terminal() {
    if !tmux_support::available() {
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
    let tmux = Pane::start("meshprov-pp3", 120, 40, &cmd).expect("tmux");
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
