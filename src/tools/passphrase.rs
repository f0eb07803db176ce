//! Where an encrypted store's passphrase comes from, for every command (README "Secrets at
//! rest"), in this order:
//!
//! 1. `--passphrase-fd N`: one line read from the inherited file descriptor N (automation: a
//!    pipe, never the command line or the environment of other processes);
//! 2. the environment variable `MESHPROV_PASSPHRASE`;
//! 3. a prompt: the terminal UI's dialog before a `rollout`/`demo` run on a terminal, or a
//!    no-echo prompt on the terminal when standard input is one.
//!
//! Otherwise the command ends with exit code 2 and says how to give it. A wrong passphrase is
//! asked again at a prompt (three tries) and is exit code 2 from the other sources. The
//! passphrase is never echoed, logged or put in a message.
//!
//! This is the CLI's glue, kept process-wide on purpose: one command may open the same store
//! more than once (`key-refresh` has a second connection for SEQ numbers, the text output a
//! third), and should neither prompt nor run Argon2id again. The passphrase read from the file
//! descriptor and the keys derived from it are held here until [`forget`], which `main` calls
//! before it exits; both are wiped when dropped.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::store::{Passphrase, Store, StoreError, StoreKey};

/// The environment variable that holds a store's passphrase.
pub const ENV: &str = "MESHPROV_PASSPHRASE";
/// The environment variable that holds the new passphrase of `net change-passphrase`.
pub const NEW_ENV: &str = "MESHPROV_NEW_PASSPHRASE";
/// Tries at an interactive prompt.
const TRIES: u32 = 3;

/// An unlock that did not happen: the exit code and the one line for stderr (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlockFailure {
    /// Process exit code: 2 when no (right) passphrase was given, 1 for a store error.
    pub exit_code: i32,
    /// What happened and what to do.
    pub message: String,
}

impl UnlockFailure {
    fn usage(message: String) -> Self {
        UnlockFailure {
            exit_code: crate::exit::USAGE,
            message,
        }
    }
}

impl From<StoreError> for UnlockFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::WrongPassphrase { .. } | StoreError::Locked { .. } => {
                UnlockFailure::usage(e.to_string())
            }
            e => UnlockFailure {
                exit_code: crate::exit::FAILURE,
                message: e.to_string(),
            },
        }
    }
}

/// How the installer can be asked when neither `--passphrase-fd` nor the environment gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// A no-echo prompt on the terminal, when standard input is one.
    Terminal,
    /// The terminal UI's dialog (`rollout`/`demo` on a terminal).
    Tui,
    /// Nobody to ask (standard input carries something else, e.g. `--oob-stdin`).
    Never,
}

#[derive(Default)]
struct State {
    fd: Option<(i32, Passphrase)>,
    new_fd: Option<(i32, Passphrase)>,
    keys: Vec<(PathBuf, StoreKey)>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn state() -> MutexGuard<'static, Option<State>> {
    // A panic while holding the lock leaves plain data behind: keep using it.
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    let mut g = state();
    f(g.get_or_insert_with(State::default))
}

/// Reads one line (without its line end) from the inherited file descriptor `fd`, through
/// `/dev/fd/N` (Linux; meshprov forbids `unsafe`, so no `from_raw_fd`).
pub fn read_fd(fd: i32) -> Result<Passphrase, UnlockFailure> {
    let bad = |why: String| {
        UnlockFailure::usage(format!(
            "--passphrase-fd {fd}: {why}: give a file descriptor this process inherited, open for reading, e.g. `3< FILE` or `3<<< \"$PASS\"`"
        ))
    };
    if fd < 0 {
        return Err(bad("not a file descriptor".into()));
    }
    let mut f = std::fs::File::open(format!("/dev/fd/{fd}")).map_err(|e| bad(e.to_string()))?;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    let mut b = [0u8; 1];
    // One octet at a time: nothing past the line is consumed from a shared pipe.
    loop {
        match f.read(&mut b) {
            Ok(0) => break,
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => bytes.push(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(bad(e.to_string())),
        }
        if bytes.len() > 4096 {
            return Err(bad("the line is longer than 4096 octets".into()));
        }
    }
    zeroize::Zeroize::zeroize(&mut b);
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    let text = String::from_utf8(std::mem::take(&mut *bytes))
        .map_err(|_| bad("the passphrase is not UTF-8".into()))?;
    Ok(Passphrase::new(text))
}

/// `--passphrase-fd N`: the passphrase read from it, for every store this command opens.
pub fn set_fd_passphrase(fd: i32, p: Passphrase) {
    with_state(|s| s.fd = Some((fd, p)));
}

/// `--new-passphrase-fd N`: the new passphrase of `net change-passphrase`.
pub fn set_new_fd_passphrase(fd: i32, p: Passphrase) {
    with_state(|s| s.new_fd = Some((fd, p)));
}

/// Wipes the passphrases and derived keys held for this process.
pub fn forget() {
    *state() = None;
}

fn env_passphrase(var: &str) -> Option<Passphrase> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Passphrase::new)
}

/// Where a non-interactive passphrase came from, for messages.
fn given() -> Option<(Passphrase, String)> {
    if let Some((n, p)) = with_state(|s| s.fd.clone()) {
        return Some((p, format!("--passphrase-fd {n}")));
    }
    env_passphrase(ENV).map(|p| (p, ENV.to_string()))
}

fn key_path(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Gives an encrypted store its passphrase (nothing to do for a plain or unlocked store): a key
/// this process derived before for the same file, else `--passphrase-fd`, `MESHPROV_PASSPHRASE`
/// or `prompt`.
pub fn unlock(store: &mut Store, prompt: Prompt) -> Result<(), UnlockFailure> {
    if !store.is_locked() {
        return Ok(());
    }
    let path = key_path(store.path());
    let cached = with_state(|s| {
        s.keys
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, k)| k.clone())
    });
    if let Some(k) = cached {
        match store.unlock_with_key(&k) {
            Ok(()) => return Ok(()),
            // The passphrase was changed meanwhile: forget the key and ask again.
            Err(StoreError::WrongPassphrase { .. }) => {
                with_state(|s| s.keys.retain(|(p, _)| *p != path));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let key = if let Some((p, source)) = given() {
        store.unlock(&p).map_err(|e| match e {
            StoreError::WrongPassphrase { path } => UnlockFailure::usage(format!(
                "wrong passphrase for {} (from {source})",
                path.display()
            )),
            e => e.into(),
        })?
    } else {
        match prompt {
            Prompt::Terminal if std::io::stdin().is_terminal() => ask_on_terminal(
                store,
                &format!("Passphrase for {}: ", store.path().display()),
            )?,
            Prompt::Tui => ask_in_tui(store)?,
            _ => return Err(no_passphrase(store.path())),
        }
    };
    with_state(|s| s.keys.push((path, key)));
    Ok(())
}

fn no_passphrase(path: &Path) -> UnlockFailure {
    UnlockFailure::usage(format!(
        "{} is encrypted and no passphrase was given: set {ENV}, or pass --passphrase-fd N with the passphrase on one line of file descriptor N, or run on a terminal to be asked",
        path.display()
    ))
}

/// Up to three no-echo prompts on the terminal.
fn ask_on_terminal(store: &mut Store, prompt: &str) -> Result<StoreKey, UnlockFailure> {
    for attempt in 1..=TRIES {
        let p = read_hidden(prompt)?;
        if p.is_empty() {
            return Err(no_passphrase(store.path()));
        }
        match store.unlock(&p) {
            Ok(k) => return Ok(k),
            Err(StoreError::WrongPassphrase { .. }) if attempt < TRIES => {
                eprintln!("meshprov: wrong passphrase, try again");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(UnlockFailure::usage(format!(
        "wrong passphrase for {}",
        store.path().display()
    )))
}

/// A new passphrase for `net encrypt` / `net create --encrypt` (`new: false`: from
/// `--passphrase-fd` or `MESHPROV_PASSPHRASE`, which will open the store from now on) or for
/// `net change-passphrase` (`new: true`: `--new-passphrase-fd` or `MESHPROV_NEW_PASSPHRASE`);
/// else asked twice on the terminal.
pub fn new_passphrase(new: bool) -> Result<Passphrase, UnlockFailure> {
    let given = if new {
        with_state(|s| s.new_fd.clone())
            .map(|(_, p)| p)
            .or_else(|| env_passphrase(NEW_ENV))
    } else {
        given().map(|(p, _)| p)
    };
    if let Some(p) = given {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        let (fd, var) = if new {
            ("--new-passphrase-fd", NEW_ENV)
        } else {
            ("--passphrase-fd", ENV)
        };
        return Err(UnlockFailure::usage(format!(
            "no {}passphrase given: set {var}, or pass {fd} N with it on one line of file descriptor N, or run on a terminal to be asked",
            if new { "new " } else { "" }
        )));
    }
    let what = if new { "New passphrase" } else { "Passphrase" };
    let first = read_hidden(&format!("{what} for the store: "))?;
    let again = read_hidden(&format!("{what} again: "))?;
    if first.expose_secret() != again.expose_secret() {
        return Err(UnlockFailure::usage(
            "the two passphrases differ: nothing was changed".into(),
        ));
    }
    Ok(first)
}

/// Raw mode for a no-echo prompt, undone on drop (also on a panic).
struct RawMode;

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = ratatui::crossterm::terminal::disable_raw_mode();
    }
}

/// Reads a line on the terminal without echo (raw mode through crossterm, already in the
/// tree): Backspace deletes, Ctrl-U clears, Enter ends, Esc / Ctrl-C / Ctrl-D give up.
fn read_hidden(prompt: &str) -> Result<Passphrase, UnlockFailure> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    let io = |e: std::io::Error| UnlockFailure::usage(format!("cannot read the passphrase: {e}"));
    let mut err = std::io::stderr();
    let _ = write!(err, "{prompt}");
    let _ = err.flush();
    ratatui::crossterm::terminal::enable_raw_mode().map_err(io)?;
    let guard = RawMode;
    let mut text = zeroize::Zeroizing::new(String::new());
    let done = loop {
        let Event::Key(k) = event::read().map_err(io)? else {
            continue;
        };
        if k.kind == KeyEventKind::Release {
            continue;
        }
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match k.code {
            KeyCode::Enter => break true,
            KeyCode::Esc => break false,
            KeyCode::Char('c' | 'd') if ctrl => break false,
            KeyCode::Char('u') if ctrl => text.clear(),
            KeyCode::Char(c) if !ctrl => text.push(c),
            KeyCode::Backspace => {
                text.pop();
            }
            _ => {}
        }
    };
    drop(guard);
    let _ = writeln!(err);
    if !done {
        return Err(UnlockFailure::usage(
            "no passphrase given: nothing was done".into(),
        ));
    }
    Ok(Passphrase::new(std::mem::take(&mut *text)))
}

/// The terminal UI's passphrase dialog, before the run's own screen opens.
fn ask_in_tui(store: &mut Store) -> Result<StoreKey, UnlockFailure> {
    use meshprov_tui::passphrase::{self, PassphrasePrompt, PromptOutcome};
    use meshprov_tui::terminal::Tui;
    use meshprov_tui::theme::{ColorSupport, Theme};
    use ratatui::crossterm::event::Event;
    let io = |e: std::io::Error| UnlockFailure {
        exit_code: crate::exit::FAILURE,
        message: format!("the terminal UI: {e}"),
    };
    let theme = Theme::new(ColorSupport::detect());
    let mut dialog = PassphrasePrompt::new(store.path().display().to_string());
    let mut tui = Tui::enter().map_err(io)?;
    let mut wrong = 0;
    loop {
        tui.draw_with(|f| passphrase::render(f, f.area(), &dialog, &theme))
            .map_err(io)?;
        let Some(Event::Key(k)) = tui
            .next_event(std::time::Duration::from_millis(250))
            .map_err(io)?
        else {
            continue;
        };
        match dialog.handle_key(k) {
            None => {}
            Some(PromptOutcome::Cancel) => {
                return Err(UnlockFailure::usage(format!(
                    "no passphrase given for {}: the run did not start",
                    store.path().display()
                )));
            }
            Some(PromptOutcome::Submit(text)) => {
                dialog.set_busy(true);
                tui.draw_with(|f| passphrase::render(f, f.area(), &dialog, &theme))
                    .map_err(io)?;
                let p = Passphrase::new(String::clone(&text));
                drop(text);
                match store.unlock(&p) {
                    Ok(k) => return Ok(k),
                    Err(StoreError::WrongPassphrase { path }) => {
                        wrong += 1;
                        if wrong >= TRIES + 2 {
                            return Err(UnlockFailure::usage(format!(
                                "wrong passphrase for {}",
                                path.display()
                            )));
                        }
                        dialog.set_error("wrong passphrase, try again");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_never_carry_the_passphrase() {
        let e = no_passphrase(Path::new("/x/hq.db"));
        assert_eq!(e.exit_code, crate::exit::USAGE);
        assert!(e.message.contains("MESHPROV_PASSPHRASE"), "{}", e.message);
        assert!(e.message.contains("--passphrase-fd"), "{}", e.message);
        let bad = read_fd(-1).unwrap_err();
        assert_eq!(bad.exit_code, crate::exit::USAGE);
    }

    #[test]
    fn one_line_from_a_file_descriptor() {
        // /dev/fd/N of a file this test opened: the same path main reads.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p");
        std::fs::write(&f, "correct horse battery\r\nsecond line\n").unwrap();
        let file = std::fs::File::open(&f).unwrap();
        let fd = {
            use std::os::fd::AsRawFd;
            file.as_raw_fd()
        };
        let p = read_fd(fd).unwrap();
        assert_eq!(p.expose_secret(), b"correct horse battery");
        assert!(read_fd(9999).is_err());
    }
}
