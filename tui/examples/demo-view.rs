//! The TUI on a scripted rollout, before the glue to the real engine exists.
//!
//! ```text
//! cargo run -p meshprov-tui --example demo-view [-- --devices N] [--speed X] [--mono]
//! cargo run -p meshprov-tui --example demo-view -- --print 120x40 [--screen devices] [--at SECS]
//! ```
//!
//! Interactive: the scripted building's rollout starts with Space; actions are not executed
//! (there is no engine) but logged to the log pane. `--print` draws one frame to stdout and
//! exits. `--panic-after SECS` panics inside the UI loop (to check that the terminal is
//! restored).

use std::time::{Duration, Instant};

use meshprov_tui::app::{Action, App, Screen};
use meshprov_tui::model::{
    InputAction, Level, LogEntry, OobKind, OobPrompt, RunState, Stage, Update,
};
use meshprov_tui::sample::{Script, output_prompt};
use meshprov_tui::terminal::Tui;
use meshprov_tui::theme::{ColorSupport, Theme};
use ratatui::crossterm::event::Event;

struct Args {
    devices: usize,
    speed: f64,
    mono: bool,
    print: Option<(u16, u16)>,
    screen: Screen,
    at: f64,
    panic_after: Option<f64>,
}

fn usage() -> ! {
    eprintln!(
        "usage: demo-view [--devices N] [--speed X] [--mono] [--panic-after SECS]\n       \
         demo-view --print WxH [--screen dashboard|devices|detail|discovery|keyrefresh|log] [--at SECS]"
    );
    std::process::exit(2)
}

fn parse() -> Args {
    let mut a = Args {
        devices: 1000,
        speed: 10.0,
        mono: false,
        print: None,
        screen: Screen::Dashboard,
        at: 120.0,
        panic_after: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--devices" => a.devices = value().parse().unwrap_or_else(|_| usage()),
            "--speed" => a.speed = value().parse().unwrap_or_else(|_| usage()),
            "--mono" => a.mono = true,
            "--at" => a.at = value().parse().unwrap_or_else(|_| usage()),
            "--panic-after" => a.panic_after = Some(value().parse().unwrap_or_else(|_| usage())),
            "--print" => {
                let v = value();
                let (w, h) = v.split_once('x').unwrap_or_else(|| usage());
                a.print = Some((
                    w.parse().unwrap_or_else(|_| usage()),
                    h.parse().unwrap_or_else(|_| usage()),
                ));
            }
            "--screen" => {
                a.screen = match value().as_str() {
                    "dashboard" => Screen::Dashboard,
                    "devices" => Screen::Devices,
                    "detail" => Screen::Detail,
                    "discovery" => Screen::Discovery,
                    "keyrefresh" => Screen::KeyRefresh,
                    "log" => Screen::Log,
                    _ => usage(),
                }
            }
            _ => usage(),
        }
    }
    a
}

fn log(app: &mut App, text: String) {
    let at = app.model.elapsed;
    app.model.push_log(LogEntry {
        at,
        level: Level::Warn,
        uuid: None,
        text,
    });
}

fn main() -> std::io::Result<()> {
    let args = parse();
    let script = Script::new(args.devices, 7);
    let theme = if args.mono {
        Theme::monochrome()
    } else {
        Theme::new(ColorSupport::detect())
    };
    if let Some((w, h)) = args.print {
        let now = Duration::from_secs_f64(args.at);
        let mut m = script.model_at(now);
        if args.devices > 2 {
            let u = script.uuid(2);
            m.details.insert(u, script.detail(2, now));
        }
        m.key_refresh = Some(meshprov_tui::sample::key_refresh(
            &m,
            40,
            meshprov_tui::model::KrPhase::Switching,
        ));
        let mut app = App::new(m, theme);
        if args.devices > 2 {
            app.select(&script.uuid(2));
        }
        app.set_screen(args.screen);
        print!("{}", meshprov_tui::ui::render_to_text(&mut app, w, h));
        return Ok(());
    }

    let mut app = App::new(script.model(), theme);
    let mut tui = Tui::enter()?;
    let started = Instant::now();
    let mut virtual_now = Duration::ZERO;
    let mut last = Instant::now();
    let mut input_shown = false;
    let mut output_answered = false;
    loop {
        if let Some(p) = args.panic_after
            && started.elapsed().as_secs_f64() >= p
        {
            panic!("demo-view: --panic-after {p} s, as asked");
        }
        let tick = last.elapsed();
        last = Instant::now();
        if app.model.run == RunState::Running {
            virtual_now += tick.mul_f64(args.speed);
            script.advance(&mut app.model, virtual_now);
        }
        // Device 2 (output OOB) asks for the blinks it shows while it is being provisioned.
        if args.devices > 2 {
            let u = script.uuid(2);
            let provisioning = app
                .model
                .devices
                .get(&u)
                .is_some_and(|r| r.stage == Stage::Provisioning);
            let asked = app.model.prompts.iter().any(|p| p.uuid == u);
            if provisioning && !asked && !output_answered {
                let _ = app.model.apply(Update::Prompt(output_prompt(&script, 2)));
            }
            if !provisioning && asked {
                app.model.prompts.retain(|p| p.uuid != u);
            }
        }
        // An Input OOB prompt half a minute in, gone fifteen seconds later.
        if args.devices > 5 {
            let u = script.uuid(5);
            if !input_shown && virtual_now >= Duration::from_secs(30) {
                input_shown = true;
                let _ = app.model.apply(Update::Prompt(OobPrompt {
                    uuid: u,
                    kind: OobKind::Input {
                        action: InputAction::Numeric,
                        value: "4821".into(),
                    },
                }));
            }
            if virtual_now >= Duration::from_secs(45) {
                app.model
                    .prompts
                    .retain(|p| !(p.uuid == u && matches!(p.kind, OobKind::Input { .. })));
            }
        }
        tui.draw(&mut app)?;
        let Some(Event::Key(key)) = tui.next_event(Duration::from_millis(100))? else {
            continue;
        };
        let Some(action) = app.handle_key(key) else {
            continue;
        };
        match action {
            Action::Quit => break,
            Action::Start | Action::Resume => app.model.run = RunState::Running,
            Action::Pause => app.model.run = RunState::Paused,
            Action::AnswerOob(u, v) => {
                output_answered = true;
                app.model.prompts.retain(|p| p.uuid != u);
                log(&mut app, format!("demo: OOB answer {v} for {}", u.short()));
            }
            Action::OpenDetail(u) => {
                if let Some(i) = script.index(&u) {
                    let d = script.detail(i, virtual_now);
                    app.model.details.insert(u, d);
                }
            }
            Action::AddToPlan(u) | Action::Ignore(u) => {
                app.model.discovery.retain(|b| b.uuid != u);
                log(
                    &mut app,
                    format!("demo: {action:?} (no engine: nothing done)"),
                );
            }
            other => log(
                &mut app,
                format!("demo: {other:?} (no engine: nothing done)"),
            ),
        }
    }
    tui.restore()
}
