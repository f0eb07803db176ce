//! Key handling: what each key does to the app state and which `Action` it hands the glue.

use std::time::Duration;

use meshprov_tui::app::{Action, App, KEYMAP, Modal, Screen, SortKey};
use meshprov_tui::model::{
    Category, InputAction, OobKind, OobPrompt, OutputAction, RunState, Stage, Update,
};
use meshprov_tui::sample::Script;
use meshprov_tui::theme::Theme;
use meshprov_tui::ui::render_to_text;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::from(code)
}

fn chr(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

fn press(app: &mut App, keys: &str) -> Vec<Action> {
    keys.chars()
        .filter_map(|c| app.handle_key(chr(c)))
        .collect()
}

fn app(n: usize, secs: u64) -> (Script, App) {
    let s = Script::new(n, 7);
    let m = s.model_at(Duration::from_secs(secs));
    (s, App::new(m, Theme::monochrome()))
}

#[test]
fn screens_by_number_and_tab() {
    let (_, mut a) = app(100, 30);
    assert_eq!(a.screen(), Screen::Dashboard);
    press(&mut a, "2");
    assert_eq!(a.screen(), Screen::Devices);
    a.handle_key(key(KeyCode::Tab));
    assert_eq!(a.screen(), Screen::Detail);
    a.handle_key(key(KeyCode::BackTab));
    a.handle_key(key(KeyCode::BackTab));
    assert_eq!(a.screen(), Screen::Dashboard);
    a.handle_key(key(KeyCode::BackTab));
    assert_eq!(a.screen(), Screen::Log);
    for (c, s) in "123456".chars().zip(Screen::ALL) {
        press(&mut a, &c.to_string());
        assert_eq!(a.screen(), s);
    }
    // Key releases are ignored.
    let mut release = chr('2');
    release.kind = KeyEventKind::Release;
    assert_eq!(a.handle_key(release), None);
    assert_eq!(a.screen(), Screen::Log);
}

#[test]
fn text_filter_narrows_live_and_esc_clears() {
    let (s, mut a) = app(1000, 100);
    press(&mut a, "2");
    assert_eq!(a.device_order().len(), 1000);
    press(&mut a, "/");
    assert!(a.is_editing_filter());
    // Keys are text while the filter is typed: `q` does not quit, `2` is not a screen.
    assert!(press(&mut a, "sensor 103").is_empty());
    assert_eq!(a.filter().text, "sensor 103");
    let names: Vec<String> = a
        .device_order()
        .to_vec()
        .iter()
        .map(|&p| a.model.devices.rows()[p as usize].name.clone())
        .collect();
    assert_eq!(names, ["Sensor 103-4", "Sensor 103-8"]);
    // Enter keeps it; the list keeps narrowing on the same text.
    a.handle_key(key(KeyCode::Enter));
    assert!(!a.is_editing_filter());
    assert_eq!(a.device_order().len(), 2);
    // UUIDs and errors match too.
    press(&mut a, "/");
    for c in s.uuid(17).to_string()[8..].chars() {
        a.handle_key(chr(c));
    }
    assert_eq!(a.device_order().len(), 1);
    a.handle_key(key(KeyCode::Esc));
    assert_eq!(a.filter().text, "");
    assert_eq!(a.device_order().len(), 1000);
    press(&mut a, "/timeout");
    a.handle_key(key(KeyCode::Enter));
    let failed = a.model.devices.counts().failed as usize;
    assert!(failed > 0);
    assert_eq!(a.device_order().len(), failed);
    // Backspace edits.
    press(&mut a, "/xy");
    a.handle_key(key(KeyCode::Backspace));
    assert_eq!(a.filter().text, "x");
}

#[test]
fn stage_and_floor_filters_cycle() {
    let (_, mut a) = app(2000, 400);
    press(&mut a, "2");
    let c = a.model.devices.counts();
    press(&mut a, "f");
    assert_eq!(a.filter().category, Some(Category::Failed));
    assert_eq!(a.device_order().len(), c.failed as usize);
    press(&mut a, "f");
    assert_eq!(a.device_order().len(), c.in_progress as usize);
    press(&mut a, "f");
    assert_eq!(a.device_order().len(), c.waiting as usize);
    press(&mut a, "f");
    assert_eq!(a.device_order().len(), c.done as usize);
    press(&mut a, "ff");
    assert_eq!(a.filter().category, None);
    // Floors: each in turn, then all again.
    let floors = a.model.devices.tree().floors();
    assert_eq!(floors.len(), 5);
    for f in &floors {
        press(&mut a, "F");
        assert_eq!(a.filter().floor.as_ref(), Some(f));
        let n = a.device_order().len();
        assert_eq!(n, 400, "{f:?}");
        let order = a.device_order().to_vec();
        let rows = a.model.devices.rows();
        assert!(
            order
                .iter()
                .all(|&p| rows[p as usize].location.floor == f.1)
        );
    }
    press(&mut a, "F");
    assert_eq!(a.filter().floor, None);
    // c clears everything.
    press(&mut a, "fF/x");
    a.handle_key(key(KeyCode::Enter));
    press(&mut a, "c");
    assert!(a.filter().is_empty());
}

#[test]
fn sort_cycles_columns_and_reverses() {
    let (_, mut a) = app(300, 100);
    press(&mut a, "2");
    assert_eq!(a.sort(), (SortKey::Plan, false));
    press(&mut a, "S");
    assert_eq!(a.sort(), (SortKey::Name, false));
    let names = |a: &mut App| -> Vec<String> {
        let order = a.device_order().to_vec();
        order
            .iter()
            .map(|&p| a.model.devices.rows()[p as usize].name.clone())
            .collect()
    };
    let asc = names(&mut a);
    assert_eq!(asc[0], "Lamp 101-1");
    assert!(
        asc.windows(2)
            .all(|w| meshprov_tui::model::natural_cmp(&w[0], &w[1]).is_le())
    );
    press(&mut a, "R");
    let desc = names(&mut a);
    assert_eq!(desc, asc.iter().rev().cloned().collect::<Vec<_>>());
    // Stage sort: every failed device together, in stage order.
    press(&mut a, "RSSS");
    assert_eq!(a.sort(), (SortKey::Stage, false));
    let order = a.device_order().to_vec();
    let stages: Vec<Stage> = order
        .iter()
        .map(|&p| a.model.devices.rows()[p as usize].stage)
        .collect();
    assert!(stages.windows(2).all(|w| w[0] <= w[1]));
    // All the way round.
    for _ in 0..SortKey::ALL.len() - 4 {
        press(&mut a, "S");
    }
    assert_eq!(a.sort().0, SortKey::Plan);
}

#[test]
fn selection_moves_pages_and_stays_in_range() {
    let (s, mut a) = app(10_000, 60);
    press(&mut a, "2");
    // Draw once so the page size is the table's height (24 rows - 4 lines of frame).
    render_to_text(&mut a, 80, 24);
    assert_eq!(a.selected(), 0);
    a.handle_key(key(KeyCode::Up));
    assert_eq!(a.selected(), 0);
    press(&mut a, "jjj");
    assert_eq!(a.selected(), 3);
    a.handle_key(key(KeyCode::PageDown));
    assert_eq!(a.selected(), 23);
    render_to_text(&mut a, 80, 24);
    assert_eq!(a.offset(), 4);
    a.handle_key(key(KeyCode::End));
    assert_eq!(a.selected(), 9_999);
    render_to_text(&mut a, 80, 24);
    assert_eq!(a.offset(), 10_000 - 20);
    a.handle_key(key(KeyCode::Down));
    assert_eq!(a.selected(), 9_999);
    a.handle_key(key(KeyCode::Home));
    assert_eq!(a.selected(), 0);
    // Enter opens the detail of the selected device and tells the glue.
    press(&mut a, "j");
    assert_eq!(
        a.handle_key(key(KeyCode::Enter)),
        Some(Action::OpenDetail(s.uuid(1)))
    );
    assert_eq!(a.screen(), Screen::Detail);
    assert_eq!(a.detail_uuid(), Some(s.uuid(1)));
    a.handle_key(key(KeyCode::Esc));
    assert_eq!(a.screen(), Screen::Devices);
    // A filter that shrinks the list pulls the selection back in range.
    a.handle_key(key(KeyCode::End));
    press(&mut a, "f");
    assert!(a.selected() < a.device_order().len().max(1));
}

#[test]
fn device_actions_only_where_they_make_sense() {
    let (s, mut a) = app(1000, 100);
    press(&mut a, "2");
    let failed = s.uuid(17);
    assert_eq!(a.model.devices.get(&failed).unwrap().stage, Stage::Failed);
    assert!(a.select(&failed));
    assert_eq!(press(&mut a, "r"), [Action::Retry(failed)]);
    assert_eq!(press(&mut a, "s"), [Action::Skip(failed)]);
    assert_eq!(press(&mut a, "i"), [Action::Identify(failed)]);
    // Not provisioned: cannot be excluded; the footer says why.
    assert!(press(&mut a, "X").is_empty());
    assert!(a.flash().unwrap().contains("only a provisioned node"));
    // A done device: no retry, no skip; exclusion asks first.
    let done = s.uuid(0);
    assert!(a.select(&done));
    assert!(press(&mut a, "r").is_empty());
    assert!(a.flash().unwrap().contains("retried"));
    assert!(press(&mut a, "s").is_empty());
    assert!(press(&mut a, "X").is_empty());
    assert_eq!(a.modal(), Some(&Modal::ExcludeConfirm(done)));
    // Any other key keeps the question; n dismisses; y confirms.
    assert!(press(&mut a, "x").is_empty());
    assert_eq!(a.modal(), Some(&Modal::ExcludeConfirm(done)));
    assert!(press(&mut a, "n").is_empty());
    assert_eq!(a.modal(), None);
    assert_eq!(press(&mut a, "Xy"), [Action::Exclude(done)]);
    // A device never heard cannot be identified.
    let silent = s.uuid(50);
    assert!(a.select(&silent));
    assert!(press(&mut a, "i").is_empty());
    // The same keys work on the detail screen, on the device shown.
    assert!(a.select(&failed));
    press(&mut a, "3");
    assert_eq!(press(&mut a, "r"), [Action::Retry(failed)]);
    assert!(!a.keys_shown());
    press(&mut a, "K");
    assert!(a.keys_shown());
}

#[test]
fn space_starts_pauses_resumes() {
    let (_, mut a) = app(10, 0);
    assert_eq!(a.model.run, RunState::Idle);
    assert_eq!(press(&mut a, " "), [Action::Start]);
    a.model.run = RunState::Running;
    assert_eq!(press(&mut a, " "), [Action::Pause]);
    a.model.run = RunState::Paused;
    assert_eq!(press(&mut a, " "), [Action::Resume]);
    a.model.run = RunState::Finished;
    assert!(press(&mut a, " ").is_empty());
    assert!(a.flash().is_some());
}

#[test]
fn quit_asks_only_while_work_runs() {
    // Idle: quit at once.
    let (_, mut a) = app(10, 0);
    assert_eq!(press(&mut a, "q"), [Action::Quit]);
    // Running: asks; n stays, y quits; Ctrl-C asks too and a second Ctrl-C quits.
    let (_, mut a) = app(100, 30);
    assert_eq!(a.model.run, RunState::Running);
    assert!(press(&mut a, "q").is_empty());
    assert_eq!(a.modal(), Some(&Modal::QuitConfirm));
    assert!(press(&mut a, "z").is_empty());
    assert_eq!(a.modal(), Some(&Modal::QuitConfirm));
    assert!(press(&mut a, "n").is_empty());
    assert_eq!(a.modal(), None);
    assert!(press(&mut a, "q").is_empty());
    assert_eq!(press(&mut a, "y"), [Action::Quit]);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(a.handle_key(ctrl_c), None);
    assert_eq!(a.handle_key(ctrl_c), Some(Action::Quit));
    // Paused with sessions still finishing: asks; paused with none: quits.
    a.model.run = RunState::Paused;
    assert!(a.model.devices.counts().in_progress > 0);
    assert!(press(&mut a, "q").is_empty());
    press(&mut a, "n");
    let (_, mut a) = app(100, 10_000);
    a.model.run = RunState::Paused;
    assert_eq!(a.model.devices.counts().in_progress, 0);
    assert_eq!(press(&mut a, "q"), [Action::Quit]);
}

#[test]
fn help_overlay_lists_every_key_and_closes() {
    let (_, mut a) = app(100, 30);
    press(&mut a, "?");
    assert!(a.help_open());
    let text = render_to_text(&mut a, 120, 60);
    for (keys, _, what) in KEYMAP {
        assert!(text.contains(what), "help lacks {keys}: {what}");
    }
    // Scrolls on a small terminal; any other key closes without acting.
    press(&mut a, "jj");
    assert!(a.help_open());
    assert!(press(&mut a, "q").is_empty());
    assert!(!a.help_open());
    assert_eq!(a.modal(), None);
}

#[test]
fn output_oob_dialog_takes_digits_and_answers() {
    let (s, mut a) = app(100, 30);
    let u = s.uuid(5);
    a.model
        .apply(Update::Prompt(OobPrompt {
            uuid: u,
            kind: OobKind::Output {
                action: OutputAction::Numeric,
                size: 4,
            },
        }))
        .unwrap();
    // The dialog opens by itself and takes the keys: `q` is refused as a value, not a quit.
    assert!(press(&mut a, "q").is_empty());
    assert!(matches!(a.modal(), Some(Modal::Oob { error: Some(_), .. })));
    assert!(press(&mut a, "12345").is_empty());
    match a.modal() {
        Some(Modal::Oob { entry, error, .. }) => {
            assert_eq!(entry, "1234");
            assert!(error.as_deref().unwrap().contains("at most 4"));
        }
        other => panic!("{other:?}"),
    }
    a.handle_key(key(KeyCode::Backspace));
    assert_eq!(press(&mut a, "9"), Vec::<Action>::new());
    assert_eq!(
        a.handle_key(key(KeyCode::Enter)),
        Some(Action::AnswerOob(u, "1239".into()))
    );
    assert_eq!(a.modal(), None);
    // Until the glue closes the prompt, it does not pop up again by itself.
    a.prepare();
    assert_eq!(a.modal(), None);
    a.model.apply(Update::PromptDone(u)).unwrap();
    assert_eq!(a.deferred_prompts(), 0);
}

#[test]
fn oob_dialogs_can_be_put_aside_and_brought_back() {
    let (s, mut a) = app(100, 30);
    let (u1, u2) = (s.uuid(5), s.uuid(6));
    for (u, kind) in [
        (
            u1,
            OobKind::Output {
                action: OutputAction::Blink,
                size: 1,
            },
        ),
        (
            u2,
            OobKind::Input {
                action: InputAction::Push,
                value: "3".into(),
            },
        ),
    ] {
        a.model
            .apply(Update::Prompt(OobPrompt { uuid: u, kind }))
            .unwrap();
    }
    a.prepare();
    assert!(matches!(a.modal(), Some(Modal::Oob { uuid, .. }) if *uuid == u1));
    // Letters are refused for a blink count; Enter with nothing typed is refused.
    press(&mut a, "a");
    a.handle_key(key(KeyCode::Enter));
    assert!(matches!(a.modal(), Some(Modal::Oob { error: Some(e), .. }) if e.contains("type")));
    // Esc puts it aside; the next prompt (Input) shows.
    a.handle_key(key(KeyCode::Esc));
    a.prepare();
    assert!(matches!(a.modal(), Some(Modal::Oob { uuid, .. }) if *uuid == u2));
    // Typing does nothing on an Input prompt; Esc puts it aside too.
    assert!(press(&mut a, "3").is_empty());
    a.handle_key(key(KeyCode::Esc));
    a.prepare();
    assert_eq!(a.modal(), None);
    assert_eq!(a.deferred_prompts(), 2);
    // `o` brings back the oldest.
    press(&mut a, "o");
    assert!(matches!(a.modal(), Some(Modal::Oob { uuid, .. }) if *uuid == u1));
    assert_eq!(press(&mut a, "4"), Vec::<Action>::new());
    assert_eq!(
        a.handle_key(key(KeyCode::Enter)),
        Some(Action::AnswerOob(u1, "4".into()))
    );
    // The device reports Input Complete: the glue closes the prompt, the dialog goes with it.
    press(&mut a, "o");
    a.model.apply(Update::PromptDone(u1)).unwrap();
    a.handle_key(key(KeyCode::Esc));
    press(&mut a, "o");
    assert!(matches!(a.modal(), Some(Modal::Oob { uuid, .. }) if *uuid == u2));
    a.model.apply(Update::PromptDone(u2)).unwrap();
    a.prepare();
    assert_eq!(a.modal(), None);
    assert!(press(&mut a, "o").is_empty());
    assert!(a.flash().unwrap().contains("no OOB prompt"));
}

#[test]
fn discovery_actions() {
    let (_, mut a) = app(100, 30);
    press(&mut a, "4");
    let first = a.model.discovery[0].uuid;
    let second = a.model.discovery[1].uuid;
    assert_eq!(press(&mut a, "a"), [Action::AddToPlan(first)]);
    press(&mut a, "j");
    assert_eq!(press(&mut a, "n"), [Action::Ignore(second)]);
    assert_eq!(press(&mut a, "i"), [Action::Identify(second)]);
    a.model.discovery.clear();
    assert!(press(&mut a, "a").is_empty());
}

#[test]
fn log_scrolls_back_and_follows_again() {
    let (_, mut a) = app(1000, 200);
    press(&mut a, "6");
    let newest = a.model.log.back().unwrap().text.clone();
    assert!(render_to_text(&mut a, 120, 20).contains(&newest));
    a.handle_key(key(KeyCode::PageUp));
    a.handle_key(key(KeyCode::PageUp));
    assert!(!render_to_text(&mut a, 120, 20).contains(&newest));
    a.handle_key(key(KeyCode::End));
    assert!(render_to_text(&mut a, 120, 20).contains(&newest));
}

/// The index is patched, not rebuilt, while the rollout moves and nothing else changes.
#[test]
fn a_running_rollout_does_not_rebuild_the_index_every_frame() {
    let (s, mut a) = app(10_000, 100);
    press(&mut a, "2S");
    render_to_text(&mut a, 120, 40);
    let rebuilds = a.index_rebuilds();
    for t in 0..50 {
        s.advance(&mut a.model, Duration::from_millis(100_000 + t * 500));
        render_to_text(&mut a, 120, 40);
    }
    assert_eq!(a.index_rebuilds(), rebuilds);
    // A new sort is a rebuild.
    press(&mut a, "S");
    render_to_text(&mut a, 120, 40);
    assert_eq!(a.index_rebuilds(), rebuilds + 1);
}

/// The README's key map is the help overlay's table: every key and its description appear in
/// the README's "Terminal UI" section.
#[test]
fn readme_key_map_matches_the_help() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("## Terminal UI")
        .expect("README has a Terminal UI section");
    let section = &readme[start..];
    for (keys, place, what) in KEYMAP {
        let row = format!("| `{keys}` | {place} | {what} |");
        assert!(section.contains(&row), "README lacks the key map row {row}");
    }
}
