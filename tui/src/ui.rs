//! Rendering: every screen from the [`App`], layout from the frame's size.
//!
//! Rendering does no I/O and reads no clock (the spinner turns with the model's elapsed time),
//! so a given state always draws the same frame. The device table builds widgets for the visible
//! rows only.

use std::time::Duration;

use ratatui::Frame;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::{Buffer, CellWidth};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Clear, Gauge, Paragraph, Row, Table, Wrap};

use crate::app::{App, KEYMAP, Modal, Screen};
use crate::model::{
    Category, Counts, DeviceDetail, DeviceRow, Direction, KrPhase, Level, OobKind, Stage,
    StepStatus, ViewModel,
};
use crate::theme::Theme;

/// Braille spinner frames, one per 100 ms of the rollout's elapsed time.
const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// Below this width the screens drop columns and use short titles.
const WIDE: u16 = 100;

/// Below this width the footer's key hints are the short ones.
const FOOTER_WIDE: u16 = 120;

/// Draw the whole UI into a frame.
pub fn render(frame: &mut Frame<'_>, app: &mut App) {
    app.prepare();
    let area = frame.area();
    if area.width < 20 || area.height < 6 {
        frame.render_widget(
            Paragraph::new("meshprov: terminal too small").wrap(Wrap { trim: true }),
            area,
        );
        return;
    }
    let [top, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_tabs(frame, app, top);
    match app.screen() {
        Screen::Dashboard => render_dashboard(frame, app, body),
        Screen::Devices => render_devices(frame, app, body),
        Screen::Detail => render_detail(frame, app, body),
        Screen::Discovery => render_discovery(frame, app, body),
        Screen::KeyRefresh => render_key_refresh(frame, app, body),
        Screen::Log => render_log(frame, app, body),
    }
    render_footer(frame, app, footer);
    if let Some(modal) = app.modal().cloned() {
        render_modal(frame, app, &modal, area);
    }
    if app.help_open() {
        render_help(frame, app, area);
    }
}

/// Draw the UI on an off-screen terminal of the given size and return its text, one line per
/// row with trailing blanks trimmed (what the snapshot tests compare and `demo-view --print`
/// prints).
pub fn render_to_text(app: &mut App, width: u16, height: u16) -> String {
    let buffer = render_to_buffer(app, width, height);
    buffer_text(&buffer)
}

/// Draw the UI on an off-screen terminal and return the buffer (text and styles).
pub fn render_to_buffer(app: &mut App, width: u16, height: u16) -> Buffer {
    let mut terminal = match Terminal::new(TestBackend::new(width, height)) {
        Ok(t) => t,
        Err(never) => match never {},
    };
    if let Err(never) = terminal.draw(|f| render(f, app)) {
        match never {}
    }
    terminal.backend().buffer().clone()
}

/// The text of a buffer, one line per row, trailing blanks trimmed.
pub fn buffer_text(buffer: &Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in area.top()..area.bottom() {
        let mut line = String::new();
        // Cells under a wide symbol are not printed (as ratatui's own buffer view does).
        let mut skip: u16 = 0;
        for x in area.left()..area.right() {
            if let Some(cell) = buffer.cell((x, y)) {
                if skip == 0 {
                    line.push_str(cell.symbol());
                }
                skip = skip.max(cell.cell_width()).saturating_sub(1);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `1h02m03s`-style short durations for the table.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s / 60) % 60)
    }
}

/// `01:02:03` clock-style durations for the header.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

fn spinner(model: &ViewModel) -> &'static str {
    SPINNER[((model.elapsed.as_millis() / 100) % SPINNER.len() as u128) as usize]
}

fn render_tabs(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let t = app.theme;
    let wide = area.width >= WIDE;
    let mut spans = vec![Span::styled(
        if wide { " meshprov " } else { " " },
        t.title(),
    )];
    for (i, s) in Screen::ALL.iter().enumerate() {
        let title = if wide {
            s.title()
        } else {
            match s {
                Screen::Dashboard => "Dash",
                Screen::Discovery => "Disc",
                Screen::KeyRefresh => "KeyRef",
                other => other.title(),
            }
        };
        let label = format!(" {} {} ", i + 1, title);
        let style = if *s == app.screen() {
            t.selected()
        } else {
            t.dim()
        };
        spans.push(Span::styled(label, style));
    }
    let m = &app.model;
    let state = format!(" {} {} ", m.run.label(), clock(m.elapsed));
    let left: usize = spans.iter().map(|s| s.width()).sum();
    let pad = (area.width as usize).saturating_sub(left + state.chars().count());
    spans.push(Span::raw(" ".repeat(pad)));
    spans.push(Span::styled(state, t.title()));
    frame.render_widget(Line::from(spans), area);
}

fn hint<'a>(t: &Theme, key: &'a str, what: &'a str) -> Vec<Span<'a>> {
    vec![
        Span::styled(key, t.key()),
        Span::styled(format!(" {what}  "), t.dim()),
    ]
}

fn render_footer(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let t = app.theme;
    if let Some(msg) = app.flash() {
        frame.render_widget(Line::styled(format!(" {msg}"), t.error()), area);
        return;
    }
    if app.is_editing_filter() {
        let line = Line::from(vec![
            Span::styled(" filter: ", t.key()),
            Span::raw(format!("{}▏", app.filter().text)),
            Span::styled("  Enter keep · Esc clear", t.dim()),
        ]);
        frame.render_widget(line, area);
        return;
    }
    let mut spans = vec![Span::raw(" ")];
    spans.extend(hint(&t, "?", "help"));
    spans.extend(hint(&t, "q", "quit"));
    let space = match app.model.run {
        crate::model::RunState::Idle => "start",
        crate::model::RunState::Running => "pause",
        crate::model::RunState::Paused => "resume",
        crate::model::RunState::Finished => "finished",
    };
    // A key refresh on its own does not pause (q stops it; the same command resumes it).
    if !(app.model.devices.is_empty() && app.model.key_refresh.is_some()) {
        spans.extend(hint(&t, "Space", space));
    }
    let acts = if area.width >= FOOTER_WIDE {
        "retry skip identify exclude"
    } else {
        "act"
    };
    match app.screen() {
        Screen::Devices if area.width < FOOTER_WIDE => {
            spans.extend(hint(&t, "/ f F S", "filter/sort"));
            spans.extend(hint(&t, "Enter", "detail"));
            spans.extend(hint(&t, "r s i X", acts));
        }
        Screen::Devices => {
            spans.extend(hint(&t, "/", "filter"));
            spans.extend(hint(&t, "f F", "stage/floor"));
            spans.extend(hint(&t, "S", "sort"));
            spans.extend(hint(&t, "Enter", "detail"));
            spans.extend(hint(&t, "r s i X", acts));
        }
        Screen::Detail => {
            spans.extend(hint(&t, "K", "keys"));
            spans.extend(hint(&t, "Esc", "back"));
            spans.extend(hint(&t, "r s i X", acts));
        }
        Screen::Discovery => {
            spans.extend(hint(&t, "a", "add to plan"));
            spans.extend(hint(&t, "n", "ignore"));
            spans.extend(hint(&t, "i", "identify"));
        }
        _ => spans.extend(hint(&t, "1-6", "screens")),
    }
    let waiting = app.deferred_prompts();
    if waiting > 0 {
        let text = format!(
            " {waiting} OOB prompt{} waiting: press o ",
            if waiting == 1 { "" } else { "s" }
        );
        // The prompt notice goes first: it is what the installer must not miss.
        let mut v = vec![Span::styled(text, t.selected()), Span::raw(" ")];
        v.extend(spans);
        spans = v;
    }
    frame.render_widget(Line::from(spans), area);
}

fn counts_line(t: &Theme, c: &Counts) -> Line<'static> {
    let mut spans = Vec::new();
    for cat in Category::ALL {
        spans.push(Span::styled(
            format!("{} {}", cat.label(), c.get(cat)),
            t.category(cat),
        ));
        spans.push(Span::raw("  "));
    }
    spans.push(Span::styled(format!("of {}", c.total()), t.dim()));
    Line::from(spans)
}

/// A dashboard's progress gauge: `ratio` done, with `label` over it.
fn progress_gauge(t: &Theme, ratio: f64, label: String) -> Gauge<'static> {
    Gauge::default()
        .ratio(ratio.clamp(0.0, 1.0))
        .label(label)
        .use_unicode(true)
        .gauge_style(t.gauge())
}

/// A dashboard's body under its gauge: the main part beside the recent events on a wide
/// terminal, above them (a third of the height, 3–8 lines) on a narrow one.
fn body_and_log(rest: Rect) -> (Rect, Rect) {
    if rest.width >= WIDE {
        let [a, b] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
            .areas(rest);
        (a, b)
    } else {
        let log_h = (rest.height / 3).clamp(3, 8);
        let [a, b] = Layout::vertical([Constraint::Min(3), Constraint::Length(log_h)]).areas(rest);
        (a, b)
    }
}

fn render_dashboard(frame: &mut Frame<'_>, app: &mut App, area: Rect) {
    if app.model.devices.is_empty() && app.model.key_refresh.is_some() {
        // `meshprov key-refresh`: no devices to roll out, a key refresh to follow.
        render_kr_dashboard(frame, app, area);
        return;
    }
    let t = app.theme;
    let m = &app.model;
    let c = m.devices.counts();
    let [summary, gauge, rest] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Length(1),
        Constraint::Min(3),
    ])
    .areas(area);
    let rate = match (m.throughput_per_min(), m.eta()) {
        (Some(r), Some(eta)) => format!("{r:.1} devices/min · ETA {}", clock(eta)),
        (Some(r), None) => format!("{r:.1} devices/min · ETA unknown"),
        (None, _) => "throughput: none finished yet".to_owned(),
    };
    let lines = vec![
        run_header(&t, m),
        counts_line(&t, &c),
        Line::from(Span::raw(rate)),
    ];
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Rollout ")),
        summary,
    );
    let total = c.total().max(1);
    let ratio = f64::from(c.done) / f64::from(total);
    let label = format!("{} / {} done ({:.0}%)", c.done, c.total(), ratio * 100.0);
    frame.render_widget(progress_gauge(&t, ratio, label), gauge);
    let (tree_area, log_area) = body_and_log(rest);
    render_tree(frame, app, tree_area);
    render_log_block(frame, app, log_area, " Recent events ", 0, false);
}

/// The first line of both dashboards: network, radio, elapsed time and the run's state.
fn run_header(t: &Theme, m: &ViewModel) -> Line<'static> {
    Line::from(vec![
        Span::styled("Network ", t.dim()),
        Span::styled(m.network.clone(), t.title()),
        Span::styled("  radio ", t.dim()),
        Span::raw(m.radio.clone()),
        Span::styled("  elapsed ", t.dim()),
        Span::raw(clock(m.elapsed)),
        Span::styled("  ", t.dim()),
        Span::styled(m.run.label(), t.title()),
    ])
}

/// The dashboard of a key refresh run: network, radio, elapsed time and state, the phase, the
/// nodes' counts and a gauge of the acknowledgements, each phase's progress and the nodes left
/// behind, and the recent events.
fn render_kr_dashboard(frame: &mut Frame<'_>, app: &mut App, area: Rect) {
    let t = app.theme;
    let m = &app.model;
    let Some(kr) = &m.key_refresh else { return };
    let c = kr.counts();
    let [summary, gauge, rest] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Length(1),
        Constraint::Min(3),
    ])
    .areas(area);
    let finished = c.confirmed[2];
    let in_progress = c.nodes.saturating_sub(finished + c.failed);
    let lines = vec![
        run_header(&t, m),
        Line::from(vec![
            Span::styled(format!("NetKey {} · phase ", kr.net_key_index), t.dim()),
            Span::styled(kr.phase.label(), t.title()),
        ]),
        Line::from(vec![
            Span::styled(format!("finished {finished}"), t.category(Category::Done)),
            Span::raw("  "),
            Span::styled(
                format!("in progress {in_progress}"),
                t.category(Category::InProgress),
            ),
            Span::raw("  "),
            Span::styled(format!("failed {}", c.failed), t.category(Category::Failed)),
            Span::raw("  "),
            Span::styled(
                format!("excluded {}", c.excluded),
                t.category(Category::Skipped),
            ),
            Span::raw("  "),
            Span::styled(format!("of {} nodes", c.nodes + c.excluded), t.dim()),
        ]),
    ];
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Key refresh ")),
        summary,
    );
    // Acknowledgements: three per node in the procedure.
    let acks: u32 = c.confirmed.iter().sum();
    let ratio = f64::from(acks) / f64::from((3 * c.nodes).max(1));
    let label = format!(
        "{finished} / {} nodes finished, {acks} of {} phase acknowledgements ({:.0}%)",
        c.nodes,
        3 * c.nodes,
        ratio * 100.0
    );
    frame.render_widget(progress_gauge(&t, ratio, label), gauge);
    let (left, log_area) = body_and_log(rest);
    let block = Block::bordered().title(" Phases · nodes left behind ");
    let inner = block.inner(left);
    frame.render_widget(block, left);
    let w = inner.width as usize;
    let bar_w = if w >= 50 { 10 } else { 5 };
    let mut l = Vec::new();
    for (i, p) in [KrPhase::Distributing, KrPhase::Switching, KrPhase::Revoking]
        .into_iter()
        .enumerate()
    {
        let done = c.confirmed[i];
        let style = if p == kr.phase { t.title() } else { t.dim() };
        l.push(Line::from(vec![
            Span::styled(format!("{:<24}", p.label()), style),
            Span::styled(
                format!("{done:>5}/{:<5} ", c.nodes),
                t.category(Category::Done),
            ),
            Span::styled(mini_bar(done, c.nodes, bar_w), t.gauge()),
        ]));
    }
    l.push(Line::raw(""));
    let behind: Vec<&crate::model::KrNode> = kr
        .nodes
        .iter()
        .filter(|n| matches!(n.status, StepStatus::Failed(_)))
        .collect();
    if behind.is_empty() {
        l.push(Line::styled("no node left behind", t.dim()));
    }
    for n in behind {
        let why = match &n.status {
            StepStatus::Failed(why) => why.as_str(),
            _ => "",
        };
        l.push(Line::from(vec![
            Span::styled("✗ ", t.error()),
            Span::raw(format!("{:04x} {} ", n.address, n.name)),
            Span::styled(
                format!("(phase {} confirmed): {why}", n.phase.number()),
                t.error(),
            ),
        ]));
    }
    frame.render_widget(Paragraph::new(l).wrap(Wrap { trim: false }), inner);
    render_log_block(frame, app, log_area, " Recent events ", 0, false);
}

/// A bar of `width` cells for done/total.
fn mini_bar(done: u32, total: u32, width: usize) -> String {
    let filled = if total == 0 {
        0
    } else {
        ((done as usize * width) + total as usize / 2) / total as usize
    };
    let filled = filled.min(width);
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

fn tree_line(t: &Theme, name: String, c: &Counts, name_w: usize, bar_w: usize) -> Line<'static> {
    let name: String = if name.chars().count() > name_w {
        let mut s: String = name.chars().take(name_w.saturating_sub(1)).collect();
        s.push('…');
        s
    } else {
        name
    };
    let mut spans = vec![
        Span::raw(format!("{name:<name_w$} ")),
        Span::styled(
            format!("{:>5}/{:<5} ", c.done, c.total()),
            t.category(Category::Done),
        ),
    ];
    if bar_w > 0 {
        spans.push(Span::styled(
            format!("{} ", mini_bar(c.done, c.total(), bar_w)),
            t.gauge(),
        ));
    }
    if c.in_progress > 0 {
        spans.push(Span::styled(
            format!("{} running ", c.in_progress),
            t.category(Category::InProgress),
        ));
    }
    if c.failed > 0 {
        spans.push(Span::styled(
            format!("{} failed", c.failed),
            t.category(Category::Failed),
        ));
    }
    Line::from(spans)
}

/// The lines of a list that fall in a window, formatted only when visible.
struct Window {
    n: usize,
    start: usize,
    end: usize,
    lines: Vec<Line<'static>>,
}

impl Window {
    /// Count a line (formatting it if it is visible); `false` once past the window.
    fn push(&mut self, make: impl FnOnce() -> Line<'static>) -> bool {
        if self.n >= self.start && self.n < self.end {
            self.lines.push(make());
        }
        self.n += 1;
        self.n < self.end
    }
}

fn render_tree(frame: &mut Frame<'_>, app: &mut App, area: Rect) {
    let t = app.theme;
    let block = Block::bordered().title(" Building · floor · room ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let w = inner.width as usize;
    let bar_w = if w >= 60 {
        10
    } else if w >= 48 {
        5
    } else {
        0
    };
    let name_w = w
        .saturating_sub(13 + bar_w + if bar_w > 0 { 1 } else { 0 } + 20)
        .clamp(8, 24);
    let tree = app.model.devices.tree();
    // Only the visible lines are formatted: a big building has thousands of rooms.
    let total: usize = tree
        .buildings
        .values()
        .map(|b| 1 + b.floors.len() + b.floors.values().map(|f| f.rooms.len()).sum::<usize>())
        .sum();
    let h = inner.height as usize;
    let (_, _, _, tree_scroll) = app.scrolls();
    let start = tree_scroll.min(total.saturating_sub(h));
    let mut w = Window {
        n: 0,
        start,
        end: start + h,
        lines: Vec::with_capacity(h),
    };
    'tree: for (b, bn) in &tree.buildings {
        if !w.push(|| tree_line(&t, b.0.clone(), &bn.counts, name_w, bar_w)) {
            break;
        }
        for (f, fnode) in &bn.floors {
            if !w.push(|| tree_line(&t, format!("  floor {}", f.0), &fnode.counts, name_w, bar_w)) {
                break 'tree;
            }
            if w.n + fnode.rooms.len() <= w.start {
                // The whole floor is above the window.
                w.n += fnode.rooms.len();
                continue;
            }
            for (r, rc) in &fnode.rooms {
                if !w.push(|| tree_line(&t, format!("    {}", r.0), rc, name_w, bar_w)) {
                    break 'tree;
                }
            }
        }
    }
    let mut visible = w.lines;
    app.clamp_scrolls(start, usize::MAX);
    if total == 0 {
        visible.push(Line::styled("no devices in the plan", t.dim()));
    }
    frame.render_widget(Paragraph::new(visible), inner);
}

fn log_line<'a>(t: &Theme, e: &'a crate::model::LogEntry, full: bool) -> Line<'a> {
    // The log screen spells the level out and names the device; the dashboard's narrower
    // pane marks the level with one character.
    let level = match (e.level, full) {
        (Level::Info, true) => "info ",
        (Level::Warn, true) => "warn ",
        (Level::Error, true) => "error",
        (Level::Info, false) => " ",
        (Level::Warn, false) => "!",
        (Level::Error, false) => "✗",
    };
    let mut spans = vec![
        Span::styled(format!("{} ", clock(e.at)), t.dim()),
        Span::styled(format!("{level} "), t.level(e.level)),
    ];
    if let Some(u) = e.uuid.filter(|_| full) {
        spans.push(Span::styled(format!("{} ", u.short()), t.dim()));
    }
    spans.push(Span::styled(e.text.as_str(), t.level(e.level)));
    Line::from(spans)
}

/// The last lines of the log that fit, `back` lines up from the newest.
/// `with_uuid`: the log screen shows each event's device and level in words; the dashboard's
/// narrower pane does not.
fn render_log_block(
    frame: &mut Frame<'_>,
    app: &App,
    area: Rect,
    title: &str,
    back: usize,
    with_uuid: bool,
) {
    let t = app.theme;
    let block = Block::bordered().title(title.to_owned());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let h = inner.height as usize;
    let log = &app.model.log;
    let end = log.len().saturating_sub(back);
    let start = end.saturating_sub(h);
    let lines: Vec<Line<'_>> = log
        .range(start..end)
        .map(|e| log_line(&t, e, with_uuid))
        .collect();
    if lines.is_empty() {
        frame.render_widget(Line::styled("nothing yet", t.dim()), inner);
    } else {
        frame.render_widget(Paragraph::new(lines), inner);
    }
}

/// A device table column: title, width, and how readily it is dropped on a narrow terminal
/// (lowest first).
struct Column {
    title: &'static str,
    width: u16,
    keep: u8,
}

const COLUMNS: [Column; 9] = [
    Column {
        title: "Stage",
        width: 14,
        keep: 10,
    },
    Column {
        title: "Name",
        width: 17,
        keep: 10,
    },
    Column {
        title: "UUID",
        width: 9,
        keep: 3,
    },
    Column {
        title: "Location",
        width: 14,
        keep: 6,
    },
    Column {
        title: "Try",
        width: 3,
        keep: 4,
    },
    Column {
        title: "In stage",
        width: 8,
        keep: 5,
    },
    Column {
        title: "Auth",
        width: 7,
        keep: 2,
    },
    Column {
        title: "Addr",
        width: 6,
        keep: 7,
    },
    // The error takes what is left, at least this much.
    Column {
        title: "Last error",
        width: 16,
        keep: 9,
    },
];

/// Which columns fit in `width` (by position in `COLUMNS`).
fn fit_columns(width: u16) -> Vec<usize> {
    let mut shown: Vec<usize> = (0..COLUMNS.len()).collect();
    loop {
        let need: u16 = shown.iter().map(|&i| COLUMNS[i].width).sum::<u16>()
            + shown.len().saturating_sub(1) as u16;
        if need <= width || shown.len() <= 2 {
            return shown;
        }
        let drop = shown
            .iter()
            .enumerate()
            .min_by_key(|&(_, &i)| COLUMNS[i].keep)
            .map(|(pos, _)| pos);
        match drop {
            Some(p) => {
                shown.remove(p);
            }
            None => return shown,
        }
    }
}

fn device_cells<'a>(
    t: &Theme,
    m: &ViewModel,
    row: &'a DeviceRow,
    columns: &[usize],
    spin: &str,
) -> Vec<Cell<'a>> {
    columns
        .iter()
        .map(|&c| match c {
            0 => {
                let mark = if row.stage.is_active() { spin } else { " " };
                Cell::from(Span::styled(
                    format!("{mark} {}", row.stage.label()),
                    t.stage(row.stage),
                ))
            }
            1 => Cell::from(row.name.as_str()),
            2 => Cell::from(row.uuid.short()),
            3 => Cell::from(row.location.to_string()),
            4 => Cell::from(if row.attempt == 0 {
                String::new()
            } else {
                row.attempt.to_string()
            }),
            5 => {
                let show = !matches!(
                    row.stage,
                    Stage::Waiting | Stage::Done | Stage::Skipped | Stage::Excluded
                );
                Cell::from(if show {
                    short_duration(m.elapsed.saturating_sub(row.stage_since))
                } else {
                    String::new()
                })
            }
            6 => Cell::from(row.auth.as_str()),
            7 => Cell::from(row.address.map(|a| format!("{a:04x}")).unwrap_or_default()),
            _ => Cell::from(Span::styled(
                row.last_error.as_deref().unwrap_or(""),
                t.error(),
            )),
        })
        .collect()
}

fn render_devices(frame: &mut Frame<'_>, app: &mut App, area: Rect) {
    let [status, table_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    // Header row + rows.
    let rows_h = table_area.height.saturating_sub(1) as usize;
    app.scroll_to_selection(rows_h);
    let t = app.theme;
    let total = app.model.devices.len();
    let shown = app.device_order().len();
    let (sort, desc) = app.sort();
    let f = app.filter();
    let mut spans = vec![Span::styled(
        format!(" {shown} of {total} devices"),
        t.title(),
    )];
    spans.push(Span::styled(
        format!(" · sort {} {}", sort.label(), if desc { "↓" } else { "↑" }),
        t.dim(),
    ));
    if !f.text.is_empty() {
        spans.push(Span::raw(format!(" · /{}", f.text)));
    }
    if let Some(c) = f.category {
        spans.push(Span::raw(format!(" · stage {}", c.label())));
    }
    if let Some((b, fl)) = &f.floor {
        spans.push(Span::raw(format!(" · floor {b}/{fl}")));
    }
    if shown > 0 {
        spans.push(Span::styled(
            format!(" · row {} ", app.selected() + 1),
            t.dim(),
        ));
    }
    frame.render_widget(Line::from(spans), status);

    let columns = fit_columns(table_area.width);
    let widths: Vec<Constraint> = columns
        .iter()
        .map(|&c| {
            if c == COLUMNS.len() - 1 {
                Constraint::Min(COLUMNS[c].width)
            } else {
                Constraint::Length(COLUMNS[c].width)
            }
        })
        .collect();
    let header = Row::new(columns.iter().map(|&c| COLUMNS[c].title))
        .style(t.title().add_modifier(Modifier::UNDERLINED));
    let spin = spinner(&app.model);
    let (offset, selected) = (app.offset(), app.selected());
    let order = &app.current_order()[offset.min(shown)..(offset + rows_h).min(shown)];
    let rows_all = app.model.devices.rows();
    let m = &app.model;
    let rows: Vec<Row<'_>> = order
        .iter()
        .enumerate()
        .map(|(i, &pos)| {
            let row = &rows_all[pos as usize];
            let r = Row::new(device_cells(&t, m, row, &columns, spin));
            if offset + i == selected {
                r.style(t.selected())
            } else {
                r
            }
        })
        .collect();
    if rows.is_empty() {
        let msg = if total == 0 {
            "no devices in the plan"
        } else {
            "no device matches the filters (c clears them)"
        };
        frame.render_widget(
            Paragraph::new(vec![
                Line::raw(""),
                Line::styled(format!(" {msg}"), t.dim()),
            ]),
            table_area,
        );
        return;
    }
    frame.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        table_area,
    );
}

fn section<'a>(t: &Theme, title: &str) -> Line<'a> {
    Line::styled(format!("── {title} "), t.title())
}

fn kv<'a>(t: &Theme, k: &str, v: String) -> Line<'a> {
    Line::from(vec![
        Span::styled(format!("{k:<12}"), t.dim()),
        Span::raw(v),
    ])
}

fn detail_left<'a>(
    t: &Theme,
    row: &DeviceRow,
    d: Option<&DeviceDetail>,
    m: &ViewModel,
    show_keys: bool,
) -> Vec<Line<'a>> {
    let mut l = Vec::new();
    l.push(Line::from(vec![
        Span::styled(row.name.clone(), t.title()),
        Span::raw("  "),
        Span::styled(row.stage.label(), t.stage(row.stage)),
        Span::styled(
            format!(
                "  attempt {} · {} in stage",
                row.attempt,
                short_duration(m.elapsed.saturating_sub(row.stage_since))
            ),
            t.dim(),
        ),
    ]));
    l.push(kv(t, "UUID", row.uuid.to_string()));
    l.push(kv(
        t,
        "Location",
        format!(
            "building {} · floor {} · room {}",
            row.location.building, row.location.floor, row.location.room
        ),
    ));
    l.push(kv(
        t,
        "Address",
        row.address
            .map(|a| format!("{a:04x}"))
            .unwrap_or_else(|| "not assigned".into()),
    ));
    l.push(kv(t, "Auth (plan)", row.auth.clone()));
    if let Some(e) = &row.last_error {
        l.push(Line::from(vec![
            Span::styled(format!("{:<12}", "Last error"), t.dim()),
            Span::styled(e.clone(), t.error()),
        ]));
    }
    let Some(d) = d else {
        l.push(Line::raw(""));
        l.push(Line::styled(
            "no detail yet (the session has not started)",
            t.dim(),
        ));
        return l;
    };
    l.push(section(t, "Capabilities"));
    match &d.capabilities {
        None => l.push(Line::styled("not received yet", t.dim())),
        Some(c) => {
            let list = |v: &[String]| {
                if v.is_empty() {
                    "none".to_owned()
                } else {
                    v.join(", ")
                }
            };
            l.push(kv(t, "Elements", c.elements.to_string()));
            l.push(kv(t, "Algorithms", list(&c.algorithms)));
            l.push(kv(
                t,
                "OOB",
                format!(
                    "public key {} · static {}",
                    if c.public_key_oob { "yes" } else { "no" },
                    if c.static_oob { "yes" } else { "no" }
                ),
            ));
            l.push(kv(
                t,
                "Output OOB",
                format!("{} (size {})", list(&c.output_oob), c.output_size),
            ));
            l.push(kv(
                t,
                "Input OOB",
                format!("{} (size {})", list(&c.input_oob), c.input_size),
            ));
        }
    }
    l.push(section(t, "Algorithm and authentication"));
    l.push(kv(
        t,
        "Algorithm",
        d.algorithm
            .clone()
            .unwrap_or_else(|| "not chosen yet".into()),
    ));
    l.push(kv(
        t,
        "Auth",
        d.auth.clone().unwrap_or_else(|| "not chosen yet".into()),
    ));
    l.push(section(t, "Certificate chain"));
    if d.certificates.is_empty() {
        l.push(Line::styled("none", t.dim()));
    }
    for (i, c) in d.certificates.iter().enumerate() {
        let bad = !matches!(c.status.as_str(), "ok" | "trusted root" | "trusted");
        l.push(Line::from(vec![
            Span::raw(format!("{}. {}", i + 1, c.subject)),
            Span::styled(
                format!("  {}", c.status),
                if bad {
                    t.error()
                } else {
                    t.category(Category::Done)
                },
            ),
        ]));
        l.push(Line::styled(format!("   issuer {}", c.issuer), t.dim()));
        l.push(Line::styled(
            format!("   valid {} … {}", c.not_before, c.not_after),
            t.dim(),
        ));
    }
    l.push(section(
        t,
        if show_keys {
            "Keys (K masks)"
        } else {
            "Keys (K shows)"
        },
    ));
    if d.keys.is_empty() {
        l.push(Line::styled("none yet", t.dim()));
    }
    for k in &d.keys {
        let v = if show_keys {
            k.value.reveal().to_owned()
        } else {
            "•".repeat(k.value.reveal().chars().count().clamp(8, 32))
        };
        l.push(kv(t, &k.label, v));
    }
    l
}

fn detail_right<'a>(t: &Theme, d: Option<&DeviceDetail>) -> Vec<Line<'a>> {
    let mut l = Vec::new();
    let Some(d) = d else { return l };
    l.push(section(t, "Provisioning transcript"));
    if d.transcript.is_empty() {
        l.push(Line::styled("no PDU yet", t.dim()));
    }
    for e in &d.transcript {
        let arrow = match e.direction {
            Direction::ToDevice => "→",
            Direction::FromDevice => "←",
        };
        let ms = e.at.as_millis();
        l.push(Line::from(vec![
            Span::styled(format!("{:>4}.{:03}s ", ms / 1000, ms % 1000), t.dim()),
            Span::raw(format!("{arrow} {:<16} {:>3} B ", e.pdu, e.len)),
            Span::styled(e.note.clone(), t.dim()),
        ]));
    }
    l.push(section(t, "Composition data"));
    match &d.composition {
        None => l.push(Line::styled("not read yet", t.dim())),
        Some(c) => {
            l.push(kv(t, "Ids", c.ids.clone()));
            l.push(kv(t, "Features", c.features.clone()));
            for (i, e) in c.elements.iter().enumerate() {
                l.push(Line::raw(format!(
                    "element {i} ({}): {}",
                    e.location,
                    e.models.join(", ")
                )));
            }
        }
    }
    l.push(section(t, "Configuration"));
    if d.config_steps.is_empty() {
        l.push(Line::styled("not started", t.dim()));
    }
    for s in &d.config_steps {
        let (mark, style) = match &s.status {
            StepStatus::Pending => ("·", t.dim()),
            StepStatus::Running => ("▶", t.category(Category::InProgress)),
            StepStatus::Done => ("✓", t.category(Category::Done)),
            StepStatus::Failed(_) => ("✗", t.error()),
            StepStatus::Excluded => ("-", t.dim()),
        };
        let mut spans = vec![
            Span::styled(format!("{mark} {:<8}", s.status.label()), style),
            Span::raw(s.name.clone()),
        ];
        if let StepStatus::Failed(why) = &s.status {
            spans.push(Span::styled(format!(": {why}"), t.error()));
        }
        l.push(Line::from(spans));
    }
    l
}

fn render_detail(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let t = app.theme;
    let m = &app.model;
    let Some(row) = app.detail_uuid().and_then(|u| m.devices.get(&u)) else {
        frame.render_widget(
            Paragraph::new(vec![
                Line::raw(""),
                Line::styled(
                    " no device selected: choose one on the devices screen (2)",
                    t.dim(),
                ),
            ]),
            area,
        );
        return;
    };
    let d = m.details.get(&row.uuid);
    let left = detail_left(&t, row, d, m, app.keys_shown());
    let right = detail_right(&t, d);
    let (scroll, _, _, _) = app.scrolls();
    let scroll = scroll.min(u16::MAX as usize) as u16;
    let title = format!(" Device {} ", row.name);
    if area.width >= 110 {
        let [a, b] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(area);
        frame.render_widget(
            Paragraph::new(left)
                .block(Block::bordered().title(title))
                .wrap(Wrap { trim: false })
                .scroll((scroll, 0)),
            a,
        );
        frame.render_widget(
            Paragraph::new(right)
                .block(Block::bordered().title(" Session "))
                .wrap(Wrap { trim: false })
                .scroll((scroll, 0)),
            b,
        );
    } else {
        let mut all = left;
        all.extend(right);
        frame.render_widget(
            Paragraph::new(all)
                .block(Block::bordered().title(title))
                .wrap(Wrap { trim: false })
                .scroll((scroll, 0)),
            area,
        );
    }
}

fn rssi_bar(rssi: i8) -> &'static str {
    match rssi {
        r if r >= -55 => "▇▇▇▇",
        r if r >= -67 => "▇▇▇ ",
        r if r >= -80 => "▇▇  ",
        _ => "▇   ",
    }
}

fn render_discovery(frame: &mut Frame<'_>, app: &mut App, area: Rect) {
    let t = app.theme;
    let [status, table_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    let m = &app.model;
    frame.render_widget(
        Line::from(vec![
            Span::styled(
                format!(" {} beacons not in the plan", m.discovery.len()),
                t.title(),
            ),
            Span::styled(" · a adds to the plan · n ignores", t.dim()),
        ]),
        status,
    );
    if m.discovery.is_empty() {
        frame.render_widget(
            Paragraph::new(vec![Line::raw(""), Line::styled(" none heard", t.dim())]),
            table_area,
        );
        return;
    }
    let h = table_area.height.saturating_sub(1) as usize;
    let sel = app.discovery_selected();
    let start = (sel + 1).saturating_sub(h);
    let wide = table_area.width >= WIDE;
    let rows: Vec<Row<'_>> = m
        .discovery
        .iter()
        .enumerate()
        .skip(start)
        .take(h)
        .map(|(i, b)| {
            let uuid = if wide {
                b.uuid.to_string()
            } else {
                b.uuid.short()
            };
            let r = Row::new(vec![
                Cell::from(uuid),
                Cell::from(format!("{:>4} {}", b.rssi, rssi_bar(b.rssi))),
                Cell::from(b.oob_info.clone()),
                Cell::from(b.uri_hash.clone().unwrap_or_default()),
                Cell::from(short_duration(m.elapsed.saturating_sub(b.last_seen))),
            ]);
            if i == sel { r.style(t.selected()) } else { r }
        })
        .collect();
    let widths = [
        Constraint::Length(if wide { 32 } else { 9 }),
        Constraint::Length(9),
        Constraint::Min(12),
        Constraint::Length(8),
        Constraint::Length(6),
    ];
    let header = Row::new(["UUID", "RSSI dBm", "OOB information", "URI hash", "Heard"])
        .style(t.title().add_modifier(Modifier::UNDERLINED));
    frame.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        table_area,
    );
}

fn render_key_refresh(frame: &mut Frame<'_>, app: &mut App, area: Rect) {
    let t = app.theme;
    let Some(kr) = &app.model.key_refresh else {
        frame.render_widget(
            Paragraph::new(vec![
                Line::raw(""),
                Line::styled(" no key refresh is running", t.dim()),
            ]),
            area,
        );
        return;
    };
    let [status, phases, table_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(area);
    let confirmed = kr
        .nodes
        .iter()
        .filter(|n| n.status != StepStatus::Excluded && n.phase >= kr.phase)
        .count();
    let in_procedure = kr
        .nodes
        .iter()
        .filter(|n| n.status != StepStatus::Excluded)
        .count();
    let failed = kr
        .nodes
        .iter()
        .filter(|n| matches!(n.status, StepStatus::Failed(_)))
        .count();
    frame.render_widget(
        Line::from(vec![
            Span::styled(
                format!(" NetKey {} · phase {}", kr.net_key_index, kr.phase.label()),
                t.title(),
            ),
            Span::raw(if kr.phase == KrPhase::Normal {
                // Not started, or over: what counts is who finished.
                let done = kr
                    .nodes
                    .iter()
                    .filter(|n| n.status != StepStatus::Excluded && n.phase == KrPhase::Revoking)
                    .count();
                format!(" · {done}/{in_procedure} nodes finished")
            } else {
                format!(" · {confirmed}/{in_procedure} nodes in this phase")
            }),
            Span::styled(
                if failed > 0 {
                    format!(" · {failed} failed")
                } else {
                    String::new()
                },
                t.error(),
            ),
        ]),
        status,
    );
    let mut spans = vec![Span::raw(" ")];
    for p in [
        crate::model::KrPhase::Distributing,
        crate::model::KrPhase::Switching,
        crate::model::KrPhase::Revoking,
        crate::model::KrPhase::Normal,
    ] {
        let label = if p == crate::model::KrPhase::Normal {
            "0 normal again".to_owned()
        } else {
            p.label().to_owned()
        };
        let style = if p == kr.phase { t.selected() } else { t.dim() };
        spans.push(Span::styled(format!(" {label} "), style));
        spans.push(Span::raw(" → "));
    }
    spans.pop();
    frame.render_widget(Line::from(spans), phases);
    let h = table_area.height.saturating_sub(1) as usize;
    let (_, _, kr_scroll, _) = app.scrolls();
    let start = kr_scroll.min(kr.nodes.len().saturating_sub(h));
    let rows: Vec<Row<'_>> = kr
        .nodes
        .iter()
        .skip(start)
        .take(h)
        .map(|n| {
            let status = match &n.status {
                StepStatus::Failed(why) => Span::styled(format!("failed: {why}"), t.error()),
                StepStatus::Excluded => Span::styled("excluded", t.dim()),
                s => Span::raw(s.label().to_owned()),
            };
            Row::new(vec![
                Cell::from(format!("{:04x}", n.address)),
                Cell::from(n.name.clone()),
                Cell::from(format!("{}", n.phase.number())),
                Cell::from(status),
            ])
        })
        .collect();
    let header = Row::new(["Addr", "Name", "Phase", "Status"])
        .style(t.title().add_modifier(Modifier::UNDERLINED));
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(6),
                Constraint::Length(20),
                Constraint::Length(5),
                Constraint::Min(10),
            ],
        )
        .header(header)
        .column_spacing(1),
        table_area,
    );
    app.clamp_scrolls(usize::MAX, start);
}

fn render_log(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let (_, back, _, _) = app.scrolls();
    let title = if back == 0 {
        format!(" Log · {} events · newest last ", app.model.log.len())
    } else {
        format!(
            " Log · {} events · {back} lines up (End: newest) ",
            app.model.log.len()
        )
    };
    render_log_block(frame, app, area, &title, back, true);
}

/// A centred rectangle of at most `w`×`h` inside `area`.
pub(crate) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// 3×5 glyphs for the Input OOB value (digits and the capital letters the spec allows),
/// `#` for ink. Letters that look like digits are drawn apart (O is round, S is not a 5).
fn glyph(c: char) -> [&'static str; 5] {
    match c {
        '0' => ["###", "#.#", "#.#", "#.#", "###"],
        '1' => [".#.", "##.", ".#.", ".#.", "###"],
        '2' => ["###", "..#", "###", "#..", "###"],
        '3' => ["###", "..#", "###", "..#", "###"],
        '4' => ["#.#", "#.#", "###", "..#", "..#"],
        '5' => ["###", "#..", "###", "..#", "###"],
        '6' => ["###", "#..", "###", "#.#", "###"],
        '7' => ["###", "..#", "..#", "..#", "..#"],
        '8' => ["###", "#.#", "###", "#.#", "###"],
        '9' => ["###", "#.#", "###", "..#", "###"],
        'A' => [".#.", "#.#", "###", "#.#", "#.#"],
        'B' => ["##.", "#.#", "##.", "#.#", "##."],
        'C' => ["###", "#..", "#..", "#..", "###"],
        'D' => ["##.", "#.#", "#.#", "#.#", "##."],
        'E' => ["###", "#..", "##.", "#..", "###"],
        'F' => ["###", "#..", "##.", "#..", "#.."],
        'G' => ["###", "#..", "#.#", "#.#", "###"],
        'H' => ["#.#", "#.#", "###", "#.#", "#.#"],
        'I' => ["###", ".#.", ".#.", ".#.", "###"],
        'J' => ["..#", "..#", "..#", "#.#", "###"],
        'K' => ["#.#", "#.#", "##.", "#.#", "#.#"],
        'L' => ["#..", "#..", "#..", "#..", "###"],
        'M' => ["#.#", "###", "###", "#.#", "#.#"],
        'N' => ["##.", "#.#", "#.#", "#.#", "#.#"],
        'O' => [".#.", "#.#", "#.#", "#.#", ".#."],
        'P' => ["###", "#.#", "###", "#..", "#.."],
        'Q' => ["###", "#.#", "#.#", "###", "..#"],
        'R' => ["###", "#.#", "##.", "#.#", "#.#"],
        'S' => [".##", "#..", ".#.", "..#", "##."],
        'T' => ["###", ".#.", ".#.", ".#.", ".#."],
        'U' => ["#.#", "#.#", "#.#", "#.#", "###"],
        'V' => ["#.#", "#.#", "#.#", "#.#", ".#."],
        'W' => ["#.#", "#.#", "###", "###", "#.#"],
        'X' => ["#.#", "#.#", ".#.", "#.#", "#.#"],
        'Y' => ["#.#", "#.#", ".#.", ".#.", ".#."],
        'Z' => ["###", "..#", ".#.", "#..", "###"],
        _ => ["...", "...", ".#.", "...", "..."],
    }
}

/// The value in large glyphs, each glyph cell two columns wide so it reads square.
pub fn big_text(value: &str) -> Vec<String> {
    let mut rows = vec![String::new(); 5];
    for (i, c) in value.chars().enumerate() {
        let g = glyph(c.to_ascii_uppercase());
        for (r, row) in rows.iter_mut().enumerate() {
            if i > 0 {
                row.push_str("  ");
            }
            for px in g[r].chars() {
                row.push_str(if px == '#' { "██" } else { "  " });
            }
        }
    }
    rows
}

fn render_modal(frame: &mut Frame<'_>, app: &App, modal: &Modal, area: Rect) {
    let t = app.theme;
    let m = &app.model;
    let name_of = |u: &crate::model::Uuid| {
        m.devices
            .get(u)
            .map(|r| r.name.clone())
            .unwrap_or_else(|| u.short())
    };
    let (title, lines): (String, Vec<Line<'_>>) = match modal {
        Modal::QuitConfirm => {
            let c = m.devices.counts();
            let (what, how) = match &m.key_refresh {
                Some(kr) if m.devices.is_empty() => {
                    let k = kr.counts();
                    let left = k.nodes.saturating_sub(k.confirmed[2] + k.failed);
                    (
                        format!(
                            "The key refresh is {}: {left} node{} not finished.",
                            m.run.label(),
                            if left == 1 { "" } else { "s" }
                        ),
                        [
                            "Quitting stops it: every acknowledgement is saved,",
                            "and the same command resumes it.",
                        ],
                    )
                }
                _ => (
                    format!(
                        "The rollout is {}: {} device{} in progress.",
                        m.run.label(),
                        c.in_progress,
                        if c.in_progress == 1 { "" } else { "s" }
                    ),
                    [
                        "Quitting stops it cleanly: the store stays consistent",
                        "and the next run resumes where this one stopped.",
                    ],
                ),
            };
            (
                " Quit? ".into(),
                vec![
                    Line::raw(what),
                    Line::raw(how[0]),
                    Line::raw(how[1]),
                    Line::raw(""),
                    Line::from(vec![
                        Span::styled("y", t.key()),
                        Span::raw(" quit   "),
                        Span::styled("n", t.key()),
                        Span::raw(" stay"),
                    ]),
                ],
            )
        }
        Modal::ExcludeConfirm(u) => {
            let addr = m
                .devices
                .get(u)
                .and_then(|r| r.address)
                .map(|a| format!(" ({a:04x})"))
                .unwrap_or_default();
            (
                " Exclude node? ".into(),
                vec![
                    Line::raw(format!("Exclude {}{addr} from the network?", name_of(u))),
                    Line::raw("A key refresh revokes its keys; it cannot be undone"),
                    Line::raw("short of provisioning the device again."),
                    Line::raw(""),
                    Line::from(vec![
                        Span::styled("y", t.key()),
                        Span::raw(" exclude   "),
                        Span::styled("n", t.key()),
                        Span::raw(" keep it"),
                    ]),
                ],
            )
        }
        Modal::Oob { uuid, entry, error } => {
            let Some(p) = m.prompts.iter().find(|p| p.uuid == *uuid) else {
                return;
            };
            match &p.kind {
                OobKind::Output { action, size } => {
                    let ask = if action.is_count() {
                        format!(
                            "The device {} now: count the {} and type the number.",
                            verb(action.label()),
                            action.label()
                        )
                    } else {
                        format!(
                            "The device shows a {} of {size} characters: type it.",
                            action.label()
                        )
                    };
                    let mut lines = vec![
                        Line::raw(ask),
                        Line::raw(""),
                        Line::from(vec![
                            Span::raw("  Value: "),
                            Span::styled(
                                format!(
                                    " {entry}▏{} ",
                                    " ".repeat(8usize.saturating_sub(entry.chars().count()))
                                ),
                                t.selected(),
                            ),
                        ]),
                        Line::styled(
                            error.clone().map(|e| format!("  {e}")).unwrap_or_default(),
                            t.error(),
                        ),
                        Line::from(vec![
                            Span::styled("Enter", t.key()),
                            Span::raw(" send   "),
                            Span::styled("Esc", t.key()),
                            Span::raw(" later (o)   "),
                            Span::styled("Backspace", t.key()),
                            Span::raw(" erase"),
                        ]),
                    ];
                    lines.insert(
                        0,
                        Line::styled(format!("{} · {}", name_of(uuid), uuid.short()), t.dim()),
                    );
                    (" Output OOB ".into(), lines)
                }
                OobKind::Input { action, value } => {
                    let mut lines = vec![
                        Line::styled(format!("{} · {}", name_of(uuid), uuid.short()), t.dim()),
                        Line::raw(action.instruction()),
                        Line::raw(""),
                    ];
                    let big = big_text(value);
                    let fits = big
                        .iter()
                        .all(|r| r.chars().count() + 4 <= area.width as usize);
                    if fits && area.height >= 16 {
                        for r in big {
                            lines.push(Line::styled(format!("  {r}"), t.title()));
                        }
                        lines.push(Line::raw(""));
                    }
                    lines.push(Line::from(vec![
                        Span::raw("  value: "),
                        Span::styled(value.clone(), t.title().add_modifier(Modifier::BOLD)),
                    ]));
                    lines.push(Line::styled(
                        "The dialog closes when the device reports Input Complete.",
                        t.dim(),
                    ));
                    lines.push(Line::from(vec![
                        Span::styled("Esc", t.key()),
                        Span::raw(" later (o brings it back)"),
                    ]));
                    (" Input OOB ".into(), lines)
                }
            }
        }
    };
    let w = lines.iter().map(|l| l.width()).max().unwrap_or(20) as u16 + 4;
    let h = lines.len() as u16 + 2;
    let rect = centered(area, w.max(30), h);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(Text::from(lines))
            .wrap(Wrap { trim: false })
            .block(
                Block::bordered()
                    .title(title)
                    .border_style(t.dialog())
                    .padding(ratatui::widgets::Padding::horizontal(1)),
            ),
        rect,
    );
}

fn verb(label: &str) -> &'static str {
    match label {
        "blinks" => "blinks",
        "beeps" => "beeps",
        _ => "vibrates",
    }
}

fn render_help(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let t = app.theme;
    let mut lines = Vec::new();
    let mut last = "";
    for (keys, place, what) in KEYMAP {
        if *place != last {
            lines.push(Line::styled(
                if *place == "any" {
                    "anywhere".to_owned()
                } else {
                    place.to_string()
                },
                t.title(),
            ));
            last = place;
        }
        lines.push(Line::from(vec![
            Span::styled(format!("  {keys:<16}"), t.key()),
            Span::raw(*what),
        ]));
    }
    let w = lines.iter().map(|l| l.width()).max().unwrap_or(40) as u16 + 4;
    let rect = centered(area, w, lines.len() as u16 + 2);
    let inner_h = rect.height.saturating_sub(2) as usize;
    let max = lines.len().saturating_sub(inner_h);
    let start = app.help_scroll().min(max);
    let more = if start < max { " · ↓ j more " } else { " " };
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines.into_iter().skip(start).collect::<Vec<_>>()).block(
            Block::bordered()
                .title(" Keys ")
                .title_bottom(Line::styled(
                    format!(" any other key closes{more}"),
                    t.dim(),
                ))
                .border_style(t.dialog()),
        ),
        rect,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_the_width() {
        for w in [40u16, 80, 100, 120, 200] {
            let cols = fit_columns(w);
            let need: u16 =
                cols.iter().map(|&i| COLUMNS[i].width).sum::<u16>() + cols.len() as u16 - 1;
            assert!(need <= w || cols.len() == 2, "{w}: {cols:?}");
            // Stage and name are never dropped.
            assert!(cols.contains(&0) && cols.contains(&1));
        }
        assert_eq!(fit_columns(200).len(), COLUMNS.len());
        // At 80 columns the time in stage and the last error stay (they say which devices are
        // stuck, and why); so do location and address.
        assert_eq!(fit_columns(80), [0, 1, 3, 5, 7, 8]);
    }

    #[test]
    fn big_glyphs_are_distinct() {
        let chars: Vec<char> = ('0'..='9').chain('A'..='Z').collect();
        for (i, a) in chars.iter().enumerate() {
            assert_ne!(glyph(*a), glyph('?'), "{a} has no glyph");
            for b in &chars[i + 1..] {
                assert_ne!(glyph(*a), glyph(*b), "{a} and {b} look the same");
            }
        }
        assert_eq!(big_text("1")[1], "████  ");
    }

    #[test]
    fn durations() {
        assert_eq!(short_duration(Duration::from_secs(5)), "5s");
        assert_eq!(short_duration(Duration::from_secs(65)), "1m05s");
        assert_eq!(short_duration(Duration::from_secs(3725)), "1h02m");
        assert_eq!(clock(Duration::from_secs(3725)), "01:02:05");
        assert_eq!(mini_bar(1, 4, 8), "██░░░░░░");
        assert_eq!(mini_bar(0, 0, 4), "░░░░");
    }
}
