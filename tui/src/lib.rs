//! meshprov's terminal UI: a view with its own view model. It knows nothing of the mesh protocol
//! and does not depend on the `meshprov` crate; the glue in `src/` turns rollout events into
//! [`model::Update`]s and executes the [`app::Action`]s that keys produce (DESIGN.md rule 8).
//!
//! - [`model`]: the view model (network, counts, building tree, device rows keyed by UUID,
//!   device detail, discovery, OOB prompts, key refresh, log), updated incrementally.
//! - [`app`]: screens, sorting, filters, selection, dialogs; `App::handle_key` → [`app::Action`].
//! - [`ui`]: pure rendering of every screen with ratatui; [`ui::render_to_text`] for tests.
//! - [`theme`]: colour or monochrome styles, from `NO_COLOR` and `TERM`.
//! - [`passphrase`]: the masked passphrase dialog shown before a run on an encrypted store.
//! - [`terminal`]: the only I/O — raw mode, alternate screen, restored on drop and on panic.
//! - [`sample`]: scripted view-model states for the snapshot tests, the benchmark and the
//!   `demo-view` example.
//!
//! A minimal loop:
//!
//! ```no_run
//! use meshprov_tui::{app::{Action, App}, model::ViewModel, terminal::Tui, theme::{ColorSupport, Theme}};
//! use ratatui::crossterm::event::Event;
//! use std::time::Duration;
//!
//! let mut app = App::new(ViewModel::new("HQ", "sim"), Theme::new(ColorSupport::detect()));
//! let mut tui = Tui::enter()?;
//! loop {
//!     tui.draw(&mut app)?;
//!     if let Some(Event::Key(k)) = tui.next_event(Duration::from_millis(100))? {
//!         if app.handle_key(k) == Some(Action::Quit) {
//!             break;
//!         }
//!     }
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod app;
pub mod model;
pub mod passphrase;
pub mod sample;
pub mod terminal;
pub mod theme;
pub mod ui;

pub use app::{Action, App, Screen};
pub use model::{Update, ViewModel};
