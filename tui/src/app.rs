//! App state and input: which screen, sorting, filters, selection, dialogs; keys in, [`Action`]s
//! out for the glue to execute.
//!
//! The device screen shows the rows through a cached index (row positions, filtered and sorted).
//! The index is rebuilt only when the sort or a filter changes; when rows change it is patched:
//! the changed rows are taken out and put back by binary search, so a frame costs O(changes ·
//! log n) comparisons instead of a sort of every row.

use std::cmp::Ordering;
use std::collections::HashSet;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::model::{
    Category, DeviceRow, DeviceTable, OobKind, OutputAction, RunState, Stage, Uuid, ViewModel,
    natural_cmp,
};
use crate::theme::Theme;

/// What the installer asked for; the glue executes it (the view does nothing itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start the rollout.
    Start,
    /// Pause it: sessions under way finish, no new ones start.
    Pause,
    /// Resume it.
    Resume,
    /// Try a failed (or skipped) device again.
    Retry(Uuid),
    /// Leave a device out of this run.
    Skip(Uuid),
    /// Exclude a provisioned node from the network (confirmed by the installer).
    Exclude(Uuid),
    /// Make the device blink (Attention Timer).
    Identify(Uuid),
    /// The installer's answer to an Output OOB prompt.
    AnswerOob(Uuid, String),
    /// Add a discovered beacon to the plan.
    AddToPlan(Uuid),
    /// Ignore a discovered beacon.
    Ignore(Uuid),
    /// The detail screen opened on this device (the glue may fill its detail now).
    OpenDetail(Uuid),
    /// Quit (confirmed when work was running): the glue stops the rollout cleanly.
    Quit,
}

/// The screens, in tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    /// Counts, throughput, gauge, building tree, recent events.
    Dashboard,
    /// The device table.
    Devices,
    /// One device in full.
    Detail,
    /// Beacons not in the plan.
    Discovery,
    /// Key refresh progress.
    KeyRefresh,
    /// The event log.
    Log,
}

impl Screen {
    /// Every screen, in tab order (the number keys 1–6).
    pub const ALL: [Screen; 6] = [
        Screen::Dashboard,
        Screen::Devices,
        Screen::Detail,
        Screen::Discovery,
        Screen::KeyRefresh,
        Screen::Log,
    ];

    /// The tab title.
    pub fn title(self) -> &'static str {
        match self {
            Screen::Dashboard => "Dashboard",
            Screen::Devices => "Devices",
            Screen::Detail => "Detail",
            Screen::Discovery => "Discovery",
            Screen::KeyRefresh => "Key refresh",
            Screen::Log => "Log",
        }
    }

    fn index(self) -> usize {
        Screen::ALL.iter().position(|&s| s == self).unwrap_or(0)
    }
}

/// The column the device table is sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// The plan's order.
    Plan,
    /// Name (natural order).
    Name,
    /// UUID.
    Uuid,
    /// Location (building, floor, room in natural order).
    Location,
    /// Stage (rollout order).
    Stage,
    /// Attempt number.
    Attempt,
    /// Time in stage, shortest first.
    TimeInStage,
    /// Authentication method.
    Auth,
    /// Unicast address (unassigned last).
    Address,
    /// Last error (devices without one last).
    Error,
}

impl SortKey {
    /// Every key, in the order `S` cycles through them.
    pub const ALL: [SortKey; 10] = [
        SortKey::Plan,
        SortKey::Name,
        SortKey::Uuid,
        SortKey::Location,
        SortKey::Stage,
        SortKey::Attempt,
        SortKey::TimeInStage,
        SortKey::Auth,
        SortKey::Address,
        SortKey::Error,
    ];

    /// In words.
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Plan => "plan",
            SortKey::Name => "name",
            SortKey::Uuid => "uuid",
            SortKey::Location => "location",
            SortKey::Stage => "stage",
            SortKey::Attempt => "attempt",
            SortKey::TimeInStage => "time in stage",
            SortKey::Auth => "auth",
            SortKey::Address => "address",
            SortKey::Error => "error",
        }
    }

    fn compare(self, a: &DeviceRow, b: &DeviceRow) -> Ordering {
        match self {
            SortKey::Plan => Ordering::Equal,
            SortKey::Name => natural_cmp(&a.name, &b.name),
            SortKey::Uuid => a.uuid.cmp(&b.uuid),
            SortKey::Location => natural_cmp(&a.location.building, &b.location.building)
                .then_with(|| natural_cmp(&a.location.floor, &b.location.floor))
                .then_with(|| natural_cmp(&a.location.room, &b.location.room)),
            SortKey::Stage => a.stage.cmp(&b.stage),
            SortKey::Attempt => a.attempt.cmp(&b.attempt),
            SortKey::TimeInStage => b.stage_since.cmp(&a.stage_since),
            SortKey::Auth => a.auth.cmp(&b.auth),
            SortKey::Address => match (a.address, b.address) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
            SortKey::Error => match (&a.last_error, &b.last_error) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
        }
    }
}

/// The filters of the device table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Text that the name, UUID, location, stage, auth or last error must contain (any case).
    pub text: String,
    /// Only this category, if set.
    pub category: Option<Category>,
    /// Only this (building, floor), if set.
    pub floor: Option<(String, String)>,
}

impl Filter {
    /// Whether nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.category.is_none() && self.floor.is_none()
    }

    fn matches(&self, row: &DeviceRow, needle: &str) -> bool {
        if let Some(c) = self.category
            && row.stage.category() != c
        {
            return false;
        }
        if let Some((b, f)) = &self.floor
            && (row.location.building != *b || row.location.floor != *f)
        {
            return false;
        }
        if needle.is_empty() {
            return true;
        }
        contains_ci(&row.name, needle)
            || row.uuid.hex().contains(needle)
            || contains_ci(&row.location.to_string(), needle)
            || row.stage.label().contains(needle)
            || contains_ci(&row.auth, needle)
            || row
                .last_error
                .as_deref()
                .is_some_and(|e| contains_ci(e, needle))
    }
}

/// Whether `hay` contains `needle` (already lower case), ignoring ASCII case, without allocating.
fn contains_ci(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.len() > h.len() {
        return false;
    }
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// The stage filter's cycle (`f`): failed first, as that is what an installer looks for.
const CATEGORY_CYCLE: [Option<Category>; 6] = [
    None,
    Some(Category::Failed),
    Some(Category::InProgress),
    Some(Category::Waiting),
    Some(Category::Done),
    Some(Category::Skipped),
];

/// More changed rows than this share of the table and the index is rebuilt rather than patched.
const PATCH_LIMIT_DIVISOR: usize = 8;

/// The sorted, filtered list of row positions the device screen shows.
#[derive(Debug, Default)]
struct RowIndex {
    order: Vec<u32>,
    built_for: Option<(SortKey, bool, Filter)>,
    rebuilds: u64,
}

impl RowIndex {
    fn cmp(rows: &[DeviceRow], sort: SortKey, desc: bool, a: u32, b: u32) -> Ordering {
        let o = sort
            .compare(&rows[a as usize], &rows[b as usize])
            .then(a.cmp(&b));
        if desc { o.reverse() } else { o }
    }

    fn refresh(&mut self, table: &mut DeviceTable, sort: SortKey, desc: bool, filter: &Filter) {
        let changes = table.take_changes();
        let rows = table.rows();
        let needle = filter.text.to_ascii_lowercase();
        let same = self
            .built_for
            .as_ref()
            .is_some_and(|(s, d, f)| *s == sort && *d == desc && f == filter);
        let mut changed = changes.rows;
        changed.sort_unstable();
        changed.dedup();
        if !same || changes.overflowed || changed.len() > 64.max(rows.len() / PATCH_LIMIT_DIVISOR) {
            self.order = (0..rows.len() as u32)
                .filter(|&i| filter.matches(&rows[i as usize], &needle))
                .collect();
            if sort != SortKey::Plan || desc {
                self.order
                    .sort_unstable_by(|&a, &b| Self::cmp(rows, sort, desc, a, b));
            }
            self.built_for = Some((sort, desc, filter.clone()));
            self.rebuilds += 1;
            return;
        }
        if changed.is_empty() {
            return;
        }
        // Take every changed row out (the rest stay sorted), then put back those that match.
        self.order.retain(|r| changed.binary_search(r).is_err());
        for &r in &changed {
            if !filter.matches(&rows[r as usize], &needle) {
                continue;
            }
            let at = self
                .order
                .partition_point(|&x| Self::cmp(rows, sort, desc, x, r) == Ordering::Less);
            self.order.insert(at, r);
        }
    }
}

/// A dialog over the screen; keys go to it first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Modal {
    /// "Work is running: quit?"
    QuitConfirm,
    /// "Exclude this node?"
    ExcludeConfirm(Uuid),
    /// An OOB prompt of this device, with what the installer has typed so far.
    Oob {
        /// The device.
        uuid: Uuid,
        /// What was typed (Output OOB).
        entry: String,
        /// Why the last Enter was refused.
        error: Option<String>,
    },
}

/// The whole UI state: the view model and everything about how it is shown.
#[derive(Debug)]
pub struct App {
    /// What is shown. The glue updates it directly or through [`ViewModel::apply`].
    pub model: ViewModel,
    /// Colours or monochrome.
    pub theme: Theme,
    screen: Screen,
    sort: SortKey,
    descending: bool,
    filter: Filter,
    editing_filter: bool,
    index: RowIndex,
    selected: usize,
    offset: usize,
    page: usize,
    detail: Option<Uuid>,
    detail_scroll: usize,
    show_keys: bool,
    discovery_selected: usize,
    log_scroll: usize,
    kr_scroll: usize,
    tree_scroll: usize,
    modal: Option<Modal>,
    help: bool,
    help_scroll: usize,
    deferred: HashSet<Uuid>,
    flash: Option<String>,
}

impl App {
    /// The UI over a model, on the dashboard.
    pub fn new(model: ViewModel, theme: Theme) -> Self {
        App {
            model,
            theme,
            screen: Screen::Dashboard,
            sort: SortKey::Plan,
            descending: false,
            filter: Filter::default(),
            editing_filter: false,
            index: RowIndex::default(),
            selected: 0,
            offset: 0,
            page: 10,
            detail: None,
            detail_scroll: 0,
            show_keys: false,
            discovery_selected: 0,
            log_scroll: 0,
            kr_scroll: 0,
            tree_scroll: 0,
            modal: None,
            help: false,
            help_scroll: 0,
            deferred: HashSet::new(),
            flash: None,
        }
    }

    /// The screen shown.
    pub fn screen(&self) -> Screen {
        self.screen
    }

    /// Show a screen (the detail screen shows the selected device).
    pub fn set_screen(&mut self, screen: Screen) {
        self.prepare();
        if screen == Screen::Detail && self.detail.is_none() {
            self.detail = self.selected_uuid();
        }
        self.screen = screen;
    }

    /// The sort column and whether it is descending.
    pub fn sort(&self) -> (SortKey, bool) {
        (self.sort, self.descending)
    }

    /// Sort the device table.
    pub fn set_sort(&mut self, key: SortKey, descending: bool) {
        self.sort = key;
        self.descending = descending;
    }

    /// The device table's filters.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Replace the device table's filters.
    pub fn set_filter(&mut self, filter: Filter) {
        self.filter = filter;
        self.selected = 0;
        self.offset = 0;
    }

    /// Whether `/` is being typed.
    pub fn is_editing_filter(&self) -> bool {
        self.editing_filter
    }

    /// The dialog open, if any.
    pub fn modal(&self) -> Option<&Modal> {
        self.modal.as_ref()
    }

    /// Whether the help overlay is open.
    pub fn help_open(&self) -> bool {
        self.help
    }

    /// Whether keys are shown in clear on the detail screen.
    pub fn keys_shown(&self) -> bool {
        self.show_keys
    }

    /// The device the detail screen shows.
    pub fn detail_uuid(&self) -> Option<Uuid> {
        self.detail
    }

    /// A one-line message for the footer (why a key did nothing), cleared by the next key.
    pub fn flash(&self) -> Option<&str> {
        self.flash.as_deref()
    }

    /// Position of the selection in the filtered, sorted device list.
    pub fn selected(&self) -> usize {
        self.selected
    }

    /// First device row shown.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Selected row of the discovery list.
    pub fn discovery_selected(&self) -> usize {
        self.discovery_selected
    }

    /// Scroll positions: detail, log (lines up from the newest), key refresh, dashboard tree.
    pub(crate) fn scrolls(&self) -> (usize, usize, usize, usize) {
        (
            self.detail_scroll,
            self.log_scroll,
            self.kr_scroll,
            self.tree_scroll,
        )
    }

    /// Keep the dashboard tree's and the key refresh list's scroll within their lengths (the
    /// renderer knows them), so that `k` after `G` moves at once.
    pub(crate) fn clamp_scrolls(&mut self, tree_max: usize, kr_max: usize) {
        self.tree_scroll = self.tree_scroll.min(tree_max);
        self.kr_scroll = self.kr_scroll.min(kr_max);
    }

    pub(crate) fn help_scroll(&self) -> usize {
        self.help_scroll
    }

    /// How many times the device index was rebuilt from scratch (not patched); for tests and
    /// the benchmark.
    pub fn index_rebuilds(&self) -> u64 {
        self.index.rebuilds
    }

    /// OOB prompts the installer put aside with Esc.
    pub fn deferred_prompts(&self) -> usize {
        self.model
            .prompts
            .iter()
            .filter(|p| self.deferred.contains(&p.uuid))
            .count()
    }

    /// The rows the device screen shows, as positions in `model.devices.rows()`, in order.
    /// Brings the index up to date first.
    pub fn device_order(&mut self) -> &[u32] {
        self.prepare();
        &self.index.order
    }

    /// Put the device table's cursor on a device; `false` if the filters hide it (or it is not
    /// in the table).
    pub fn select(&mut self, uuid: &Uuid) -> bool {
        self.prepare();
        let Some(pos) = self.model.devices.position(uuid) else {
            return false;
        };
        match self.index.order.iter().position(|&p| p as usize == pos) {
            Some(i) => {
                self.selected = i;
                true
            }
            None => false,
        }
    }

    /// The index as last brought up to date (by [`App::prepare`]).
    pub(crate) fn current_order(&self) -> &[u32] {
        &self.index.order
    }

    /// The device under the cursor of the device table.
    pub fn selected_uuid(&self) -> Option<Uuid> {
        let &pos = self.index.order.get(self.selected)?;
        self.model.devices.rows().get(pos as usize).map(|r| r.uuid)
    }

    /// Bring derived state up to date with the model: the device index, the selection, the OOB
    /// dialog (opened for the oldest prompt not put aside; closed when its prompt is gone).
    /// Rendering and key handling call it; the glue need not.
    pub fn prepare(&mut self) {
        self.index.refresh(
            &mut self.model.devices,
            self.sort,
            self.descending,
            &self.filter,
        );
        let n = self.index.order.len();
        if self.selected >= n {
            self.selected = n.saturating_sub(1);
        }
        if self.discovery_selected >= self.model.discovery.len() {
            self.discovery_selected = self.model.discovery.len().saturating_sub(1);
        }
        let prompts = &self.model.prompts;
        self.deferred
            .retain(|u| prompts.iter().any(|p| p.uuid == *u));
        if let Some(Modal::Oob { uuid, .. }) = &self.modal
            && !prompts.iter().any(|p| p.uuid == *uuid)
        {
            self.modal = None;
        }
        if self.modal.is_none()
            && let Some(p) = prompts.iter().find(|p| !self.deferred.contains(&p.uuid))
        {
            self.modal = Some(Modal::Oob {
                uuid: p.uuid,
                entry: String::new(),
                error: None,
            });
        }
    }

    /// Keep the selection in view for a table of `height` rows; called by the renderer.
    pub(crate) fn scroll_to_selection(&mut self, height: usize) {
        self.page = height.max(1);
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + self.page {
            self.offset = self.selected + 1 - self.page;
        }
        let n = self.index.order.len();
        if self.offset + self.page > n {
            self.offset = n.saturating_sub(self.page);
        }
    }

    /// Handle a key; returns what the glue should do, if anything.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        self.prepare();
        self.flash = None;
        let ctrl_c =
            key.modifiers.contains(KeyModifiers::CONTROL) && matches!(key.code, KeyCode::Char('c'));
        if self.help {
            match key.code {
                KeyCode::Up | KeyCode::Char('k') => {
                    self.help_scroll = self.help_scroll.saturating_sub(1)
                }
                KeyCode::Down | KeyCode::Char('j') => self.help_scroll += 1,
                _ if ctrl_c => {
                    self.help = false;
                    return self.quit();
                }
                _ => self.help = false,
            }
            return None;
        }
        if let Some(modal) = self.modal.take() {
            return self.modal_key(modal, key, ctrl_c);
        }
        if self.editing_filter {
            match key.code {
                KeyCode::Enter => self.editing_filter = false,
                KeyCode::Esc => {
                    self.editing_filter = false;
                    self.filter.text.clear();
                }
                KeyCode::Backspace => {
                    self.filter.text.pop();
                }
                KeyCode::Char(_) if ctrl_c => {
                    self.editing_filter = false;
                    return self.quit();
                }
                KeyCode::Char(c) => self.filter.text.push(c),
                _ => {}
            }
            self.selected = 0;
            self.offset = 0;
            return None;
        }
        if ctrl_c {
            return self.quit();
        }
        match key.code {
            KeyCode::Char('?') => {
                self.help = true;
                self.help_scroll = 0;
                return None;
            }
            KeyCode::Char('q') => return self.quit(),
            KeyCode::Char(c @ '1'..='6') => {
                let s = Screen::ALL[(c as u8 - b'1') as usize];
                return self.go(s);
            }
            KeyCode::Tab => {
                let s = Screen::ALL[(self.screen.index() + 1) % Screen::ALL.len()];
                return self.go(s);
            }
            KeyCode::BackTab => {
                let n = Screen::ALL.len();
                let s = Screen::ALL[(self.screen.index() + n - 1) % n];
                return self.go(s);
            }
            KeyCode::Char(' ') => {
                return match self.model.run {
                    RunState::Idle => Some(Action::Start),
                    RunState::Running => Some(Action::Pause),
                    RunState::Paused => Some(Action::Resume),
                    RunState::Finished => {
                        self.flash = Some("the rollout is finished".into());
                        None
                    }
                };
            }
            KeyCode::Char('o') => {
                match self.model.prompts.first() {
                    Some(p) => {
                        let uuid = p.uuid;
                        self.deferred.remove(&uuid);
                        self.modal = Some(Modal::Oob {
                            uuid,
                            entry: String::new(),
                            error: None,
                        });
                    }
                    None => self.flash = Some("no OOB prompt is waiting".into()),
                }
                return None;
            }
            _ => {}
        }
        match self.screen {
            Screen::Dashboard => {
                self.tree_scroll = scroll(self.tree_scroll, key.code, self.page, usize::MAX);
                None
            }
            Screen::Devices => self.devices_key(key),
            Screen::Detail => self.detail_key(key),
            Screen::Discovery => self.discovery_key(key),
            Screen::KeyRefresh => {
                self.kr_scroll = scroll(self.kr_scroll, key.code, self.page, usize::MAX);
                None
            }
            Screen::Log => {
                // The log scrolls up from the newest line: Up goes back in time.
                let max = self.model.log.len().saturating_sub(1);
                self.log_scroll = match key.code {
                    KeyCode::Up | KeyCode::Char('k') => (self.log_scroll + 1).min(max),
                    KeyCode::Down | KeyCode::Char('j') => self.log_scroll.saturating_sub(1),
                    KeyCode::PageUp => (self.log_scroll + self.page).min(max),
                    KeyCode::PageDown => self.log_scroll.saturating_sub(self.page),
                    KeyCode::Home | KeyCode::Char('g') => max,
                    KeyCode::End | KeyCode::Char('G') => 0,
                    _ => self.log_scroll,
                };
                None
            }
        }
    }

    fn go(&mut self, screen: Screen) -> Option<Action> {
        if screen == Screen::Detail {
            let uuid = self.selected_uuid().or(self.detail);
            if let Some(u) = uuid
                && Some(u) != self.detail
            {
                self.detail = Some(u);
                self.detail_scroll = 0;
            }
            self.screen = screen;
            return uuid.map(Action::OpenDetail);
        }
        self.screen = screen;
        None
    }

    fn quit(&mut self) -> Option<Action> {
        let c = self.model.devices.counts();
        let busy = match self.model.run {
            RunState::Running => true,
            RunState::Paused => c.in_progress > 0,
            RunState::Idle | RunState::Finished => false,
        };
        if busy {
            self.modal = Some(Modal::QuitConfirm);
            None
        } else {
            Some(Action::Quit)
        }
    }

    fn modal_key(&mut self, modal: Modal, key: KeyEvent, ctrl_c: bool) -> Option<Action> {
        match modal {
            Modal::QuitConfirm => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => Some(Action::Quit),
                _ if ctrl_c => Some(Action::Quit),
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => None,
                _ => {
                    self.modal = Some(Modal::QuitConfirm);
                    None
                }
            },
            Modal::ExcludeConfirm(u) => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => Some(Action::Exclude(u)),
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => None,
                _ => {
                    self.modal = Some(Modal::ExcludeConfirm(u));
                    None
                }
            },
            Modal::Oob {
                uuid,
                mut entry,
                error,
            } => {
                let prompt = self.model.prompts.iter().find(|p| p.uuid == uuid)?;
                if ctrl_c {
                    self.deferred.insert(uuid);
                    return self.quit();
                }
                match &prompt.kind {
                    OobKind::Input { .. } => {
                        // Nothing to type here: the installer acts on the device, and the
                        // prompt closes when the device reports Input Complete.
                        match key.code {
                            KeyCode::Esc | KeyCode::Enter => {
                                self.deferred.insert(uuid);
                            }
                            _ => self.modal = Some(Modal::Oob { uuid, entry, error }),
                        }
                        None
                    }
                    &OobKind::Output { action, size } => {
                        let mut error = error;
                        match key.code {
                            KeyCode::Esc => {
                                self.deferred.insert(uuid);
                                return None;
                            }
                            KeyCode::Enter => {
                                if entry.is_empty() {
                                    error = Some("type the value first".into());
                                } else {
                                    self.deferred.insert(uuid);
                                    return Some(Action::AnswerOob(uuid, entry));
                                }
                            }
                            KeyCode::Backspace => {
                                entry.pop();
                                error = None;
                            }
                            KeyCode::Char(c) => {
                                let numeric = action.is_count() || action == OutputAction::Numeric;
                                let max = if action.is_count() {
                                    // A count is one digit or two (up to 99 blinks is plenty).
                                    2
                                } else {
                                    size.clamp(1, 8) as usize
                                };
                                if numeric && !c.is_ascii_digit() {
                                    error = Some("digits only".into());
                                } else if !numeric && !c.is_ascii_alphanumeric() {
                                    error = Some("letters and digits only".into());
                                } else if entry.chars().count() >= max {
                                    error = Some(format!("at most {max} characters"));
                                } else {
                                    entry.push(c.to_ascii_uppercase());
                                    error = None;
                                }
                            }
                            _ => {}
                        }
                        self.modal = Some(Modal::Oob { uuid, entry, error });
                        None
                    }
                }
            }
        }
    }

    fn devices_key(&mut self, key: KeyEvent) -> Option<Action> {
        let n = self.index.order.len();
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(n.saturating_sub(1))
            }
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(self.page),
            KeyCode::PageDown => {
                self.selected = (self.selected + self.page).min(n.saturating_sub(1))
            }
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected = n.saturating_sub(1),
            KeyCode::Enter => return self.go(Screen::Detail),
            KeyCode::Char('/') => {
                self.editing_filter = true;
                self.filter.text.clear();
            }
            KeyCode::Char('f') => {
                let i = CATEGORY_CYCLE
                    .iter()
                    .position(|c| *c == self.filter.category)
                    .unwrap_or(0);
                self.filter.category = CATEGORY_CYCLE[(i + 1) % CATEGORY_CYCLE.len()];
                self.selected = 0;
            }
            KeyCode::Char('F') => {
                let floors = self.model.devices.tree().floors();
                let next = match &self.filter.floor {
                    None => floors.first().cloned(),
                    Some(cur) => floors
                        .iter()
                        .position(|f| f == cur)
                        .and_then(|i| floors.get(i + 1).cloned()),
                };
                self.filter.floor = next;
                self.selected = 0;
            }
            KeyCode::Char('c') => {
                self.filter = Filter::default();
                self.selected = 0;
            }
            KeyCode::Char('S') => {
                let i = SortKey::ALL
                    .iter()
                    .position(|&k| k == self.sort)
                    .unwrap_or(0);
                self.sort = SortKey::ALL[(i + 1) % SortKey::ALL.len()];
            }
            KeyCode::Char('R') => self.descending = !self.descending,
            _ => return self.device_action(self.selected_uuid(), key),
        }
        None
    }

    fn detail_key(&mut self, key: KeyEvent) -> Option<Action> {
        match key.code {
            KeyCode::Esc | KeyCode::Backspace => self.screen = Screen::Devices,
            KeyCode::Char('K') => self.show_keys = !self.show_keys,
            KeyCode::Up | KeyCode::Char('k') => {
                self.detail_scroll = self.detail_scroll.saturating_sub(1)
            }
            KeyCode::Down | KeyCode::Char('j') => self.detail_scroll += 1,
            KeyCode::PageUp => self.detail_scroll = self.detail_scroll.saturating_sub(self.page),
            KeyCode::PageDown => self.detail_scroll += self.page,
            KeyCode::Home | KeyCode::Char('g') => self.detail_scroll = 0,
            _ => return self.device_action(self.detail, key),
        }
        None
    }

    fn device_action(&mut self, uuid: Option<Uuid>, key: KeyEvent) -> Option<Action> {
        if !matches!(
            key.code,
            KeyCode::Char('r') | KeyCode::Char('s') | KeyCode::Char('i') | KeyCode::Char('X')
        ) {
            return None;
        }
        let Some(row) = uuid.and_then(|u| self.model.devices.get(&u)) else {
            self.flash = Some("no device selected".into());
            return None;
        };
        let (u, stage) = (row.uuid, row.stage);
        let refuse = |why: &str| Some(format!("{}: {why}", row.name));
        let (action, why) = match key.code {
            KeyCode::Char('r') => match stage {
                Stage::Failed | Stage::Skipped => (Some(Action::Retry(u)), None),
                _ => (
                    None,
                    refuse("only a failed or skipped device can be retried"),
                ),
            },
            KeyCode::Char('s') => match stage {
                Stage::Done | Stage::Skipped | Stage::Excluded => {
                    (None, refuse("already done, skipped or excluded"))
                }
                _ => (Some(Action::Skip(u)), None),
            },
            KeyCode::Char('i') => match stage {
                Stage::Waiting | Stage::Excluded => {
                    (None, refuse("not in range (never heard) or excluded"))
                }
                _ => (Some(Action::Identify(u)), None),
            },
            KeyCode::Char('X') => {
                if row.address.is_some() && stage != Stage::Excluded {
                    self.modal = Some(Modal::ExcludeConfirm(u));
                    (None, None)
                } else {
                    (None, refuse("only a provisioned node can be excluded"))
                }
            }
            _ => (None, None),
        };
        self.flash = why;
        action
    }

    fn discovery_key(&mut self, key: KeyEvent) -> Option<Action> {
        let n = self.model.discovery.len();
        match key.code {
            KeyCode::Char('a') | KeyCode::Char('n') | KeyCode::Char('i') => {
                let Some(b) = self.model.discovery.get(self.discovery_selected) else {
                    self.flash = Some("no beacon selected".into());
                    return None;
                };
                let u = b.uuid;
                return Some(match key.code {
                    KeyCode::Char('a') => Action::AddToPlan(u),
                    KeyCode::Char('n') => Action::Ignore(u),
                    _ => Action::Identify(u),
                });
            }
            code => {
                self.discovery_selected = scroll(
                    self.discovery_selected,
                    code,
                    self.page,
                    n.saturating_sub(1),
                )
            }
        }
        None
    }
}

/// Move a scroll position with the list keys.
fn scroll(pos: usize, code: KeyCode, page: usize, max: usize) -> usize {
    match code {
        KeyCode::Up | KeyCode::Char('k') => pos.saturating_sub(1),
        KeyCode::Down | KeyCode::Char('j') => pos.saturating_add(1).min(max),
        KeyCode::PageUp => pos.saturating_sub(page),
        KeyCode::PageDown => pos.saturating_add(page).min(max),
        KeyCode::Home | KeyCode::Char('g') => 0,
        KeyCode::End | KeyCode::Char('G') => max,
        _ => pos,
    }
}

/// Every key, for the help overlay and the README: (keys, where, what).
pub const KEYMAP: &[(&str, &str, &str)] = &[
    ("?", "any", "this help (any key closes it)"),
    ("q  Ctrl-C", "any", "quit (asks while work runs)"),
    (
        "1 … 6",
        "any",
        "dashboard, devices, detail, discovery, key refresh, log",
    ),
    ("Tab  Shift-Tab", "any", "next / previous screen"),
    ("Space", "any", "start / pause / resume the rollout"),
    ("o", "any", "answer the oldest waiting OOB prompt"),
    ("↑ ↓  k j", "lists", "move / scroll"),
    ("PgUp PgDn", "lists", "a page up / down"),
    ("Home End  g G", "lists", "first / last"),
    ("Enter", "devices", "open the device's detail"),
    ("/", "devices", "filter by text (Enter keeps, Esc clears)"),
    (
        "f",
        "devices",
        "stage: all/failed/in progress/waiting/done/skipped",
    ),
    ("F", "devices", "floor filter: all, then each floor"),
    ("c", "devices", "clear all filters"),
    ("S  R", "devices", "sort by the next column / reverse"),
    ("r", "devices, detail", "retry a failed or skipped device"),
    ("s", "devices, detail", "skip the device in this run"),
    ("i", "devices, detail", "identify: make the device blink"),
    (
        "X",
        "devices, detail",
        "exclude the node from the network (asks)",
    ),
    ("K", "detail", "show / mask the keys"),
    ("Esc", "detail", "back to the devices"),
    (
        "a  n",
        "discovery",
        "add the beacon to the plan / ignore it",
    ),
    ("i", "discovery", "identify the beaconing device"),
    ("Enter", "OOB dialog", "send the value typed"),
    (
        "Esc",
        "OOB dialog",
        "put the prompt aside (o brings it back)",
    ),
    ("y  n", "questions", "yes / no"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Location, Update};
    use std::time::Duration;

    /// A tiny deterministic generator (xorshift) for the index test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn uuid(n: u32) -> Uuid {
        let mut b = [0u8; 16];
        b[12..].copy_from_slice(&n.to_be_bytes());
        Uuid(b)
    }

    /// The patched index is always the index a full rebuild gives, under every sort, both
    /// directions and several filters, over random changes.
    #[test]
    fn patched_index_equals_a_rebuild() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut model = ViewModel::new("n", "r");
        let n = 600u32;
        for i in 0..n {
            let loc = Location::new("HQ", &format!("{}", rng.below(4)), &format!("{}", i % 7));
            model.devices.upsert(DeviceRow::planned(
                uuid(i),
                &format!("dev {}", rng.below(50)),
                loc,
                "cert",
            ));
        }
        let filters = [
            Filter::default(),
            Filter {
                text: "dev 1".into(),
                ..Filter::default()
            },
            Filter {
                category: Some(Category::InProgress),
                ..Filter::default()
            },
            Filter {
                floor: Some(("HQ".into(), "2".into())),
                category: Some(Category::Failed),
                ..Filter::default()
            },
        ];
        let mut app = App::new(model, Theme::monochrome());
        let mut patched_rounds = 0;
        for round in 0..120 {
            if round % 10 == 0 {
                let sort = SortKey::ALL[rng.below(SortKey::ALL.len() as u64) as usize];
                app.set_sort(sort, rng.below(2) == 1);
                app.set_filter(filters[rng.below(filters.len() as u64) as usize].clone());
                app.prepare();
            }
            let before = app.index_rebuilds();
            for _ in 0..rng.below(40) {
                let u = uuid(rng.below(n as u64) as u32);
                let stage = Stage::ALL[rng.below(Stage::ALL.len() as u64) as usize];
                let at = Duration::from_millis(rng.below(100_000));
                app.model
                    .apply(Update::Stage { uuid: u, stage, at })
                    .unwrap();
                if rng.below(3) == 0 {
                    let e = Some(format!("timeout {}", rng.below(5)));
                    app.model
                        .apply(Update::Error { uuid: u, error: e })
                        .unwrap();
                    app.model
                        .apply(Update::Attempt {
                            uuid: u,
                            attempt: rng.below(4) as u32,
                        })
                        .unwrap();
                }
                if rng.below(4) == 0 {
                    let a = rng.below(0x7fff) as u16 + 1;
                    app.model
                        .apply(Update::Address {
                            uuid: u,
                            address: a,
                        })
                        .unwrap();
                }
            }
            let patched = app.device_order().to_vec();
            if app.index_rebuilds() == before {
                patched_rounds += 1;
            }
            let mut fresh = RowIndex::default();
            let (sort, desc) = app.sort();
            let filter = app.filter().clone();
            fresh.refresh(&mut app.model.devices.clone(), sort, desc, &filter);
            assert_eq!(
                patched, fresh.order,
                "round {round}, sort {sort:?} desc {desc}"
            );
        }
        // The test is about patching: most rounds must have been patched, not rebuilt.
        assert!(patched_rounds > 90, "only {patched_rounds} rounds patched");
    }
}
