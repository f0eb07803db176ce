//! Frame render time for 10,000 devices: `cargo bench -p meshprov-tui --bench render`.
//!
//! Each frame is drawn into a persistent `TestBackend` terminal of 120×40, as a real terminal
//! would be (ratatui renders into a buffer and diffs it against the previous one); only the
//! terminal's own I/O is missing.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use meshprov_tui::app::{App, Screen, SortKey};
use meshprov_tui::model::{Stage, Update};
use meshprov_tui::sample::Script;
use meshprov_tui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const N: usize = 10_000;

fn setup(screen: Screen) -> (Script, App, Terminal<TestBackend>) {
    setup_n(N, screen)
}

fn setup_n(n: usize, screen: Screen) -> (Script, App, Terminal<TestBackend>) {
    let script = Script::new(n, 7);
    let m = script.model_at(Duration::from_secs(3_600));
    let mut app = App::new(m, Theme::colour());
    app.set_screen(screen);
    let terminal = match Terminal::new(TestBackend::new(120, 40)) {
        Ok(t) => t,
        Err(never) => match never {},
    };
    (script, app, terminal)
}

fn draw(terminal: &mut Terminal<TestBackend>, app: &mut App) {
    if let Err(never) = terminal.draw(|f| meshprov_tui::ui::render(f, app)) {
        match never {}
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_10000_devices_120x40");

    let (_, mut app, mut term) = setup(Screen::Dashboard);
    g.bench_function("dashboard", |b| {
        b.iter(|| draw(&mut term, black_box(&mut app)))
    });

    let (_, mut app, mut term) = setup(Screen::Devices);
    g.bench_function("devices_unchanged", |b| {
        b.iter(|| draw(&mut term, black_box(&mut app)))
    });

    // For comparison: the same screen over 100 devices (the cost is the screen, not the rows).
    let (_, mut app, mut term) = setup_n(100, Screen::Devices);
    g.bench_function("devices_unchanged_100_devices_for_comparison", |b| {
        b.iter(|| draw(&mut term, black_box(&mut app)))
    });

    // The steady state of a running rollout: 16 devices change stage between two frames,
    // with the table sorted by name (the index is patched, not re-sorted).
    let (script, mut app, mut term) = setup(Screen::Devices);
    app.set_sort(SortKey::Name, false);
    let mut k = 0usize;
    let stages = [Stage::Provisioning, Stage::Configuring, Stage::Done];
    g.bench_function("devices_16_changes_sorted_by_name", |b| {
        b.iter(|| {
            for j in 0..16 {
                k = k.wrapping_add(7_919);
                let uuid = script.uuid(k % N);
                let stage = stages[(k + j) % stages.len()];
                let at = Duration::from_secs(3_600);
                let _ = app.model.apply(Update::Stage { uuid, stage, at });
            }
            draw(&mut term, black_box(&mut app))
        })
    });

    // The worst case: the sort changes every frame, so the index is rebuilt and sorted.
    let (_, mut app, mut term) = setup(Screen::Devices);
    let mut flip = false;
    g.bench_function("devices_resorted_every_frame", |b| {
        b.iter(|| {
            flip = !flip;
            app.set_sort(SortKey::Name, flip);
            draw(&mut term, black_box(&mut app))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
