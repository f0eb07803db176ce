//! Snapshot tests of every screen, drawn with ratatui's `TestBackend` from scripted view-model
//! states (`meshprov_tui::sample`), at 120×40 and at a tiny 80×24, including 10,000 devices.
//! The snapshots are under `tests/snapshots/`; review a change with `cargo insta review`, or
//! regenerate with `INSTA_UPDATE=always cargo test -p meshprov-tui --test snapshots`.

use std::time::Duration;

use meshprov_tui::app::{App, Filter, Screen, SortKey};
use meshprov_tui::model::{
    Category, InputAction, KrPhase, OobKind, OobPrompt, OutputAction, RunState, Update, ViewModel,
};
use meshprov_tui::sample::{self, Script};
use meshprov_tui::theme::Theme;
use meshprov_tui::ui::{render_to_buffer, render_to_text};
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::style::Modifier;

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::from(code)
}

fn chr(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

/// A 1,000-device building 100 s into its rollout, device 2 with its detail.
fn app_at(n: usize, secs: u64) -> (Script, App) {
    let script = Script::new(n, 7);
    let now = Duration::from_secs(secs);
    let mut m = script.model_at(now);
    m.details.insert(script.uuid(2), script.detail(2, now));
    m.key_refresh = Some(sample::key_refresh(&m, 40, KrPhase::Switching));
    let mut app = App::new(m, Theme::monochrome());
    assert!(app.select(&script.uuid(2)));
    (script, app)
}

fn snap(app: &mut App, w: u16, h: u16) -> String {
    render_to_text(app, w, h)
}

#[test]
fn dashboard() {
    let (_, mut app) = app_at(1000, 100);
    insta::assert_snapshot!("dashboard_120x40", snap(&mut app, 120, 40));
    insta::assert_snapshot!("dashboard_80x24", snap(&mut app, 80, 24));
}

#[test]
fn dashboard_10000_tree_scrolled() {
    // 25 floors of 50 rooms: scrolled into the middle of the tree, then past its end.
    let (_, mut app) = app_at(10_000, 3_600);
    for _ in 0..3 {
        app.handle_key(KeyEvent::from(KeyCode::PageDown));
    }
    for _ in 0..4 {
        app.handle_key(chr('j'));
    }
    insta::assert_snapshot!(
        "dashboard_10000_tree_scrolled_80x24",
        snap(&mut app, 80, 24)
    );
    app.handle_key(chr('G'));
    insta::assert_snapshot!("dashboard_10000_tree_end_80x24", snap(&mut app, 80, 24));
}

#[test]
fn dashboard_before_anything() {
    let mut app = App::new(ViewModel::new("HQ-mesh", "bluez hci0"), Theme::monochrome());
    insta::assert_snapshot!("dashboard_empty_80x24", snap(&mut app, 80, 24));
}

#[test]
fn devices() {
    let (_, mut app) = app_at(1000, 100);
    app.set_screen(Screen::Devices);
    insta::assert_snapshot!("devices_120x40", snap(&mut app, 120, 40));
    insta::assert_snapshot!("devices_80x24", snap(&mut app, 80, 24));
}

#[test]
fn devices_10000_rows() {
    // 10,000 devices an hour in: scrolled deep into the table, on the rows being worked on.
    let (script, mut app) = app_at(10_000, 3_600);
    app.set_screen(Screen::Devices);
    let busy = (0..10_000)
        .find(|&i| {
            let u = script.uuid(i);
            app.model
                .devices
                .get(&u)
                .is_some_and(|r| r.stage.category() == Category::InProgress)
        })
        .expect("a device in progress");
    assert!(app.select(&script.uuid(busy)));
    insta::assert_snapshot!("devices_10000_120x40", snap(&mut app, 120, 40));
    insta::assert_snapshot!("devices_10000_80x24", snap(&mut app, 80, 24));
    // The end of the table.
    app.handle_key(chr('G'));
    insta::assert_snapshot!("devices_10000_end_80x24", snap(&mut app, 80, 24));
}

#[test]
fn devices_filtered_and_sorted() {
    let (_, mut app) = app_at(10_000, 3_600);
    app.set_screen(Screen::Devices);
    app.set_filter(Filter {
        category: Some(Category::Failed),
        floor: Some(("HQ".into(), "2".into())),
        ..Filter::default()
    });
    app.set_sort(SortKey::Name, true);
    insta::assert_snapshot!(
        "devices_failed_floor2_by_name_120x40",
        snap(&mut app, 120, 40)
    );
    // Typing a filter that matches nothing.
    app.handle_key(chr('/'));
    for c in "no such device".chars() {
        app.handle_key(chr(c));
    }
    insta::assert_snapshot!("devices_filter_typing_80x24", snap(&mut app, 80, 24));
}

#[test]
fn detail() {
    let (_, mut app) = app_at(1000, 100);
    app.set_screen(Screen::Detail);
    insta::assert_snapshot!("detail_120x40", snap(&mut app, 120, 40));
    app.handle_key(chr('K'));
    // Keys shown, scrolled down to the session on a small terminal.
    for _ in 0..12 {
        app.handle_key(key(KeyCode::Down));
    }
    insta::assert_snapshot!("detail_keys_shown_80x24", snap(&mut app, 80, 24));
}

#[test]
fn detail_mid_session_with_certificates() {
    // Device 24 (cert) is in the middle of its session 100 s in.
    let script = Script::new(1000, 7);
    let now = Duration::from_millis(2_000 + 6_000 * 3 + 2_300);
    let mut m = script.model_at(now);
    m.details.insert(script.uuid(24), script.detail(24, now));
    let mut app = App::new(m, Theme::monochrome());
    assert!(app.select(&script.uuid(24)));
    app.set_screen(Screen::Detail);
    insta::assert_snapshot!("detail_mid_session_120x40", snap(&mut app, 120, 40));
}

#[test]
fn discovery_key_refresh_and_log() {
    let (_, mut app) = app_at(1000, 100);
    app.set_screen(Screen::Discovery);
    insta::assert_snapshot!("discovery_80x24", snap(&mut app, 80, 24));
    insta::assert_snapshot!("discovery_120x40", snap(&mut app, 120, 40));
    app.set_screen(Screen::KeyRefresh);
    insta::assert_snapshot!("key_refresh_80x24", snap(&mut app, 80, 24));
    app.set_screen(Screen::Log);
    insta::assert_snapshot!("log_80x24", snap(&mut app, 80, 24));
    app.model.key_refresh = None;
    app.set_screen(Screen::KeyRefresh);
    insta::assert_snapshot!("key_refresh_none_80x24", snap(&mut app, 80, 24));
}

/// `meshprov key-refresh` alone: the dashboard follows the key refresh (no devices), and the
/// key refresh screen shows a failed and an excluded node.
#[test]
fn key_refresh_run() {
    let mut app = App::new(sample::key_refresh_run(12), Theme::monochrome());
    insta::assert_snapshot!("key_refresh_dashboard_120x40", snap(&mut app, 120, 40));
    insta::assert_snapshot!("key_refresh_dashboard_80x24", snap(&mut app, 80, 24));
    app.set_screen(Screen::KeyRefresh);
    insta::assert_snapshot!("key_refresh_run_80x24", snap(&mut app, 80, 24));
    // Quitting while it runs asks, in the key refresh's words.
    app.set_screen(Screen::Dashboard);
    assert_eq!(app.handle_key(chr('q')), None);
    insta::assert_snapshot!("key_refresh_quit_80x24", snap(&mut app, 80, 24));
    let c = app.model.key_refresh.as_ref().unwrap().counts();
    assert_eq!((c.nodes, c.failed, c.excluded), (11, 1, 1));
    assert_eq!(c.confirmed, [10, 3, 0]);
    // Over: back to normal, and the screen counts who finished (not who is "in phase 0").
    let kr = app.model.key_refresh.as_mut().unwrap();
    kr.phase = KrPhase::Normal;
    for n in &mut kr.nodes {
        if n.status == meshprov_tui::model::StepStatus::Running
            || n.status == meshprov_tui::model::StepStatus::Done
        {
            n.phase = KrPhase::Revoking;
            n.status = meshprov_tui::model::StepStatus::Done;
        }
    }
    app.model.run = RunState::Finished;
    app.set_screen(Screen::KeyRefresh);
    let text = snap(&mut app, 80, 24);
    assert!(
        text.contains("NetKey 0 · phase normal · 10/11 nodes finished · 1 failed"),
        "{text}"
    );
}

#[test]
fn oob_dialogs() {
    let (script, mut app) = app_at(1000, 100);
    app.model
        .apply(Update::Prompt(OobPrompt {
            uuid: script.uuid(5),
            kind: OobKind::Output {
                action: OutputAction::Blink,
                size: 1,
            },
        }))
        .unwrap();
    app.handle_key(chr('x'));
    app.handle_key(chr('7'));
    insta::assert_snapshot!("oob_output_typed_80x24", snap(&mut app, 80, 24));
    app.model.apply(Update::PromptDone(script.uuid(5))).unwrap();
    app.model
        .apply(Update::Prompt(OobPrompt {
            uuid: script.uuid(8),
            kind: OobKind::Input {
                action: InputAction::Alphanumeric,
                value: "K4S9".into(),
            },
        }))
        .unwrap();
    insta::assert_snapshot!("oob_input_120x40", snap(&mut app, 120, 40));
    insta::assert_snapshot!("oob_input_80x24", snap(&mut app, 80, 24));
    // Put aside: the footer says a prompt waits.
    app.handle_key(key(KeyCode::Esc));
    insta::assert_snapshot!("oob_deferred_80x24", snap(&mut app, 80, 24));
}

#[test]
fn help_and_questions() {
    let (script, mut app) = app_at(1000, 100);
    app.handle_key(chr('?'));
    insta::assert_snapshot!("help_120x40", snap(&mut app, 120, 40));
    insta::assert_snapshot!("help_80x24", snap(&mut app, 80, 24));
    app.handle_key(key(KeyCode::Esc));
    app.handle_key(chr('q'));
    insta::assert_snapshot!("quit_confirm_80x24", snap(&mut app, 80, 24));
    app.handle_key(chr('n'));
    app.set_screen(Screen::Devices);
    assert!(app.select(&script.uuid(0)));
    app.handle_key(chr('X'));
    insta::assert_snapshot!("exclude_confirm_80x24", snap(&mut app, 80, 24));
}

#[test]
fn finished_and_too_small() {
    let script = Script::new(200, 7);
    let mut m = script.model_at(script.end() + Duration::from_secs(10));
    assert_eq!(m.run, RunState::Finished);
    m.radio = "bluez hci0".into();
    let mut app = App::new(m, Theme::monochrome());
    insta::assert_snapshot!("dashboard_finished_80x24", snap(&mut app, 80, 24));
    insta::assert_snapshot!("too_small_19x5", snap(&mut app, 19, 5));
}

/// Colours degrade to attributes: in monochrome no cell has a colour, and the selected row is
/// still marked (reversed); in colour the selection has a background.
#[test]
fn monochrome_frames_have_no_colour() {
    let (_, mut app) = app_at(1000, 100);
    app.set_screen(Screen::Devices);
    let buf = render_to_buffer(&mut app, 80, 24);
    assert!(
        buf.content
            .iter()
            .all(|c| c.fg == ratatui::style::Color::Reset && c.bg == ratatui::style::Color::Reset)
    );
    // Row 3 of the table is device 2, selected (status line, header, then rows 0, 1, 2).
    let sel = buf.cell((5, 5)).unwrap();
    assert!(sel.modifier.contains(Modifier::REVERSED), "{sel:?}");
    let other = buf.cell((5, 4)).unwrap();
    assert!(!other.modifier.contains(Modifier::REVERSED));

    app.theme = Theme::colour();
    let buf = render_to_buffer(&mut app, 80, 24);
    assert_ne!(buf.cell((5, 5)).unwrap().bg, ratatui::style::Color::Reset);
    assert!(
        buf.content
            .iter()
            .any(|c| c.fg != ratatui::style::Color::Reset)
    );
}

/// The layout follows the frame: every screen draws at several sizes without losing its frame
/// lines (the tab bar on top, the hints at the bottom).
#[test]
fn every_screen_at_every_size() {
    let (_, mut app) = app_at(1000, 100);
    for screen in Screen::ALL {
        app.set_screen(screen);
        for (w, h) in [(80, 24), (100, 30), (160, 50), (60, 15), (200, 12)] {
            let text = snap(&mut app, w, h);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), h as usize);
            assert!(
                lines[0].contains("1 Dash"),
                "{screen:?} {w}x{h}: {}",
                lines[0]
            );
            assert!(
                lines[h as usize - 1].contains("? help"),
                "{screen:?} {w}x{h}"
            );
        }
    }
}
