//! The only I/O of the crate: put the terminal in raw mode on the alternate screen, draw, read
//! keys, and always put it back — on [`Tui`]'s drop, on [`Tui::restore`], and from a panic hook
//! installed before the terminal is touched (so a panic anywhere prints its message on a sane
//! terminal, not into the alternate screen).

use std::io::{self, Stdout, Write};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::{cursor, event, execute, terminal};

use crate::app::App;

/// Whether this process has the terminal in raw mode on the alternate screen.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// Leave raw mode and the alternate screen and show the cursor, if [`Tui::enter`] set them up
/// and nothing restored them since. Safe to call any number of times, from anywhere (the panic
/// hook calls it).
pub fn restore_terminal() -> io::Result<()> {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return Ok(());
    }
    let raw = terminal::disable_raw_mode();
    let mut out = io::stdout();
    let screen = execute!(out, terminal::LeaveAlternateScreen, cursor::Show);
    let _ = out.flush();
    raw.and(screen)
}

/// Install (once per process) a panic hook that restores the terminal, then runs the hook
/// that was there before (which prints the panic message).
pub fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = restore_terminal();
            previous(info);
        }));
    });
}

/// The terminal while the UI owns it.
pub struct Tui {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Tui {
    /// Take over the terminal: panic hook, raw mode, alternate screen, hidden cursor.
    pub fn enter() -> io::Result<Self> {
        install_panic_hook();
        terminal::enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let setup = (|| {
            execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
            let mut t = Terminal::new(CrosstermBackend::new(io::stdout()))?;
            t.clear()?;
            Ok(t)
        })();
        match setup {
            Ok(terminal) => Ok(Tui { terminal }),
            Err(e) => {
                let _ = restore_terminal();
                Err(e)
            }
        }
    }

    /// Draw one frame of the UI (the layout follows the terminal's current size, so a resize
    /// is handled by drawing again).
    pub fn draw(&mut self, app: &mut App) -> io::Result<()> {
        self.terminal.draw(|f| crate::ui::render(f, app))?;
        Ok(())
    }

    /// Draw one frame with any render function (the passphrase dialog, which comes before the
    /// run and its [`App`]).
    pub fn draw_with(&mut self, render: impl FnOnce(&mut ratatui::Frame<'_>)) -> io::Result<()> {
        self.terminal.draw(render)?;
        Ok(())
    }

    /// Wait up to `timeout` for a terminal event (key, resize, ...).
    pub fn next_event(&mut self, timeout: Duration) -> io::Result<Option<event::Event>> {
        if event::poll(timeout)? {
            Ok(Some(event::read()?))
        } else {
            Ok(None)
        }
    }

    /// Give the terminal back now (also done on drop).
    pub fn restore(&mut self) -> io::Result<()> {
        restore_terminal()
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = restore_terminal();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restoring_an_untouched_terminal_does_nothing() {
        // No terminal was set up: nothing to undo, twice, and no error.
        restore_terminal().unwrap();
        restore_terminal().unwrap();
        install_panic_hook();
        install_panic_hook();
    }
}
