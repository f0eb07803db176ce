//! The view model: plain data that the glue in `src/` fills from rollout events.
//!
//! Nothing here knows the mesh protocol: a stage is a label with a category, a key is text that
//! is masked unless the installer asks to see it, a PDU is a name and a length. The glue updates
//! the model either field by field (the methods of [`ViewModel`] and [`DeviceTable`]) or through
//! [`ViewModel::apply`] with an [`Update`], one per rollout event.
//!
//! The device table is keyed by UUID with an index, keeps the counts per category and the
//! building tree up to date on every change (so neither is recomputed per frame), and records
//! which rows changed so that the sorted and filtered index of the device screen is patched
//! rather than rebuilt (see `crate::app`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A device UUID (16 bytes), shown as 32 hex digits or shortened for the table.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The short form for the device table: the last four bytes, `…89abcdef` (vendors put the
    /// serial number or MAC address at the end; the start is often a shared company prefix).
    pub fn short(&self) -> String {
        let b = &self.0;
        format!("…{:02x}{:02x}{:02x}{:02x}", b[12], b[13], b[14], b[15])
    }

    /// Lower-case hex, 32 digits (what the filter matches against).
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(32);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

/// Why text is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseUuidError;

impl fmt::Display for ParseUuidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a UUID is 32 hex digits (dashes allowed)")
    }
}

impl std::error::Error for ParseUuidError {}

impl FromStr for Uuid {
    type Err = ParseUuidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits: Vec<u8> = s.bytes().filter(|&c| c != b'-').collect();
        if digits.len() != 32 {
            return Err(ParseUuidError);
        }
        let mut out = [0u8; 16];
        for (i, pair) in digits.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16).ok_or(ParseUuidError)?;
            let lo = (pair[1] as char).to_digit(16).ok_or(ParseUuidError)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Ok(Uuid(out))
    }
}

/// Where a stage falls in the dashboard's counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Planned but not started: not yet seen, discovered, or scheduled.
    Waiting,
    /// A session or configuration is under way (or a retry is waiting out its backoff).
    InProgress,
    /// Provisioned, configured and verified.
    Done,
    /// Failed permanently (the row's last error says why).
    Failed,
    /// Skipped or excluded by the installer.
    Skipped,
}

impl Category {
    /// Every category, in the order the dashboard shows them.
    pub const ALL: [Category; 5] = [
        Category::Done,
        Category::InProgress,
        Category::Failed,
        Category::Waiting,
        Category::Skipped,
    ];

    /// The label the dashboard and the stage filter show.
    pub fn label(self) -> &'static str {
        match self {
            Category::Waiting => "waiting",
            Category::InProgress => "in progress",
            Category::Done => "done",
            Category::Failed => "failed",
            Category::Skipped => "skipped",
        }
    }
}

/// A device's stage in the rollout (the rollout engine's per-device state machine, as text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// In the plan, not yet heard.
    Waiting,
    /// Its beacon was heard.
    Discovered,
    /// Waiting for a free link under the concurrency limit.
    Scheduled,
    /// The provisioning session runs (link, capabilities, keys, authentication, data).
    Provisioning,
    /// Provisioned and recorded in the store.
    Committed,
    /// Being configured from its template.
    Configuring,
    /// Its Composition Data is being checked against the plan.
    Verifying,
    /// Failed once, waiting out the backoff before the next attempt.
    Retrying,
    /// Finished.
    Done,
    /// Failed permanently.
    Failed,
    /// Skipped by the installer.
    Skipped,
    /// Excluded from the network by the installer.
    Excluded,
}

impl Stage {
    /// Every stage, in rollout order.
    pub const ALL: [Stage; 12] = [
        Stage::Waiting,
        Stage::Discovered,
        Stage::Scheduled,
        Stage::Provisioning,
        Stage::Committed,
        Stage::Configuring,
        Stage::Verifying,
        Stage::Retrying,
        Stage::Done,
        Stage::Failed,
        Stage::Skipped,
        Stage::Excluded,
    ];

    /// The stage's label in the table.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Waiting => "waiting",
            Stage::Discovered => "discovered",
            Stage::Scheduled => "scheduled",
            Stage::Provisioning => "provisioning",
            Stage::Committed => "committed",
            Stage::Configuring => "configuring",
            Stage::Verifying => "verifying",
            Stage::Retrying => "retrying",
            Stage::Done => "done",
            Stage::Failed => "failed",
            Stage::Skipped => "skipped",
            Stage::Excluded => "excluded",
        }
    }

    /// The dashboard category of this stage.
    pub fn category(self) -> Category {
        match self {
            Stage::Waiting | Stage::Discovered | Stage::Scheduled => Category::Waiting,
            Stage::Provisioning
            | Stage::Committed
            | Stage::Configuring
            | Stage::Verifying
            | Stage::Retrying => Category::InProgress,
            Stage::Done => Category::Done,
            Stage::Failed => Category::Failed,
            Stage::Skipped | Stage::Excluded => Category::Skipped,
        }
    }

    /// Whether the table shows a spinner beside this stage (work is being done on the device).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Stage::Provisioning | Stage::Committed | Stage::Configuring | Stage::Verifying
        )
    }
}

/// Device counts per category.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Not started.
    pub waiting: u32,
    /// Under way.
    pub in_progress: u32,
    /// Finished.
    pub done: u32,
    /// Failed permanently.
    pub failed: u32,
    /// Skipped or excluded.
    pub skipped: u32,
}

impl Counts {
    /// All devices counted.
    pub fn total(&self) -> u32 {
        self.waiting + self.in_progress + self.done + self.failed + self.skipped
    }

    /// The count of one category.
    pub fn get(&self, c: Category) -> u32 {
        match c {
            Category::Waiting => self.waiting,
            Category::InProgress => self.in_progress,
            Category::Done => self.done,
            Category::Failed => self.failed,
            Category::Skipped => self.skipped,
        }
    }

    fn slot(&mut self, c: Category) -> &mut u32 {
        match c {
            Category::Waiting => &mut self.waiting,
            Category::InProgress => &mut self.in_progress,
            Category::Done => &mut self.done,
            Category::Failed => &mut self.failed,
            Category::Skipped => &mut self.skipped,
        }
    }

    fn add(&mut self, c: Category) {
        *self.slot(c) += 1;
    }

    fn sub(&mut self, c: Category) {
        let s = self.slot(c);
        *s = s.saturating_sub(1);
    }
}

/// Where a device is in the building.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Location {
    /// Building name.
    pub building: String,
    /// Floor name or number.
    pub floor: String,
    /// Room name or number.
    pub room: String,
}

impl Location {
    /// A location from its three parts.
    pub fn new(building: &str, floor: &str, room: &str) -> Self {
        Location {
            building: building.to_owned(),
            floor: floor.to_owned(),
            room: room.to_owned(),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.building, self.floor, self.room)
    }
}

/// One row of the device table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRow {
    /// The device UUID (the table's key).
    pub uuid: Uuid,
    /// The plan's name for it.
    pub name: String,
    /// Where it is.
    pub location: Location,
    /// Its stage.
    pub stage: Stage,
    /// When it entered that stage, as elapsed time since the rollout began.
    pub stage_since: Duration,
    /// Attempt number (1 for the first).
    pub attempt: u32,
    /// The authentication method, as the plan names it (`cert`, `static`, `output`, ...).
    pub auth: String,
    /// The unicast address, once assigned.
    pub address: Option<u16>,
    /// The last error, if any.
    pub last_error: Option<String>,
}

impl DeviceRow {
    /// A planned device that has not been heard yet.
    pub fn planned(uuid: Uuid, name: &str, location: Location, auth: &str) -> Self {
        DeviceRow {
            uuid,
            name: name.to_owned(),
            location,
            stage: Stage::Waiting,
            stage_since: Duration::ZERO,
            attempt: 0,
            auth: auth.to_owned(),
            address: None,
            last_error: None,
        }
    }
}

/// Strings compared with runs of digits as numbers, so `Lamp 2` comes before `Lamp 10` and
/// floor `10` after floor `9`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    natural_cmp_ci(a, b).then_with(|| a.cmp(b))
}

/// [`natural_cmp`] ignoring ASCII case (and leading zeros): the order before the tie-break.
fn natural_cmp_ci(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (da, db) = (&a[..na], &b[..nb]);
                let ta = trim_zeros(da);
                let tb = trim_zeros(db);
                let ord = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                let ord = x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase());
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let z = d.iter().take_while(|&&c| c == b'0').count();
    &d[z..]
}

/// A name ordered by [`natural_cmp`] (the keys of the building tree).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NaturalKey(pub String);

impl Ord for NaturalKey {
    fn cmp(&self, other: &Self) -> Ordering {
        natural_cmp(&self.0, &other.0)
    }
}

impl PartialOrd for NaturalKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A floor of the building tree: its counts and its rooms' counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FloorNode {
    /// Devices on this floor per category.
    pub counts: Counts,
    /// Rooms of this floor, in natural order.
    pub rooms: BTreeMap<NaturalKey, Counts>,
}

/// A building of the tree: its counts and its floors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildingNode {
    /// Devices in this building per category.
    pub counts: Counts,
    /// Floors of this building, in natural order.
    pub floors: BTreeMap<NaturalKey, FloorNode>,
}

/// The building → floor → room tree with counts at every node, kept up to date incrementally.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    /// Buildings in natural order.
    pub buildings: BTreeMap<NaturalKey, BuildingNode>,
}

impl Tree {
    fn add(&mut self, loc: &Location, c: Category) {
        let b = self
            .buildings
            .entry(NaturalKey(loc.building.clone()))
            .or_default();
        b.counts.add(c);
        let f = b.floors.entry(NaturalKey(loc.floor.clone())).or_default();
        f.counts.add(c);
        f.rooms
            .entry(NaturalKey(loc.room.clone()))
            .or_default()
            .add(c);
    }

    fn sub(&mut self, loc: &Location, c: Category) {
        let Some(b) = self.buildings.get_mut(&NaturalKey(loc.building.clone())) else {
            return;
        };
        b.counts.sub(c);
        if let Some(f) = b.floors.get_mut(&NaturalKey(loc.floor.clone())) {
            f.counts.sub(c);
            if let Some(r) = f.rooms.get_mut(&NaturalKey(loc.room.clone())) {
                r.sub(c);
                if r.total() == 0 {
                    f.rooms.remove(&NaturalKey(loc.room.clone()));
                }
            }
            if f.counts.total() == 0 {
                b.floors.remove(&NaturalKey(loc.floor.clone()));
            }
        }
        if b.counts.total() == 0 {
            self.buildings.remove(&NaturalKey(loc.building.clone()));
        }
    }

    /// Every (building, floor) pair, in tree order (what the floor filter cycles through).
    pub fn floors(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (b, node) in &self.buildings {
            for f in node.floors.keys() {
                out.push((b.0.clone(), f.0.clone()));
            }
        }
        out
    }
}

/// What changed in the device table since the index last looked.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// Rows that were added or modified (positions in the table), possibly repeated.
    pub(crate) rows: Vec<u32>,
    /// Too many changes piled up unread and were dropped: rebuild.
    pub(crate) overflowed: bool,
}

/// The device rows, keyed by UUID, with counts and the building tree kept up to date.
///
/// Rows are never removed (an excluded device stays, in stage `Excluded`); row positions are
/// therefore stable and are what the screen's sorted index refers to.
#[derive(Clone, Debug, Default)]
pub struct DeviceTable {
    rows: Vec<DeviceRow>,
    index: HashMap<Uuid, u32>,
    counts: Counts,
    tree: Tree,
    changed: Vec<u32>,
    overflowed: bool,
    generation: u64,
}

impl DeviceTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// All rows, in the order they were added (the plan's order).
    pub fn rows(&self) -> &[DeviceRow] {
        &self.rows
    }

    /// The row of a device.
    pub fn get(&self, uuid: &Uuid) -> Option<&DeviceRow> {
        self.index.get(uuid).map(|&i| &self.rows[i as usize])
    }

    /// The position of a device in [`DeviceTable::rows`].
    pub fn position(&self, uuid: &Uuid) -> Option<usize> {
        self.index.get(uuid).map(|&i| i as usize)
    }

    /// Counts per category over all devices.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The building tree with counts.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// A number that changes whenever any row does.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Add a device, or replace the row of a device already in the table.
    pub fn upsert(&mut self, row: DeviceRow) {
        match self.index.get(&row.uuid) {
            Some(&i) => {
                let old = std::mem::replace(&mut self.rows[i as usize], row);
                self.after_change(i, &old.location, old.stage.category());
            }
            None => {
                let i = self.rows.len() as u32;
                self.counts.add(row.stage.category());
                self.tree.add(&row.location, row.stage.category());
                self.index.insert(row.uuid, i);
                self.rows.push(row);
                self.note_change(i);
            }
        }
    }

    /// Change a device's row in place; counts, tree and index follow. `None` if the device is
    /// not in the table.
    pub fn update<R>(&mut self, uuid: &Uuid, f: impl FnOnce(&mut DeviceRow) -> R) -> Option<R> {
        let i = *self.index.get(uuid)?;
        let row = &mut self.rows[i as usize];
        let (old_loc, old_cat) = (row.location.clone(), row.stage.category());
        let r = f(row);
        // The key must not change under the index.
        if row.uuid != *uuid {
            row.uuid = *uuid;
        }
        self.after_change(i, &old_loc, old_cat);
        Some(r)
    }

    fn after_change(&mut self, i: u32, old_loc: &Location, old_cat: Category) {
        let row = &self.rows[i as usize];
        let new_cat = row.stage.category();
        if old_cat != new_cat || *old_loc != row.location {
            self.counts.sub(old_cat);
            self.counts.add(new_cat);
            self.tree.sub(old_loc, old_cat);
            let loc = row.location.clone();
            self.tree.add(&loc, new_cat);
        }
        self.note_change(i);
    }

    fn note_change(&mut self, i: u32) {
        self.generation += 1;
        if self.overflowed {
            return;
        }
        // Nobody is reading the changes (no screen is drawn): stop recording them.
        if self.changed.len() > self.rows.len() + 1024 {
            self.changed = Vec::new();
            self.overflowed = true;
            return;
        }
        self.changed.push(i);
    }

    /// Hand over the list of changed rows (the index of the device screen patches itself).
    pub(crate) fn take_changes(&mut self) -> Changes {
        Changes {
            rows: std::mem::take(&mut self.changed),
            overflowed: std::mem::take(&mut self.overflowed),
        }
    }
}

/// Text that must not be shown unless the installer asks (a key in hex). `Debug` never prints
/// it; only the detail screen's renderer does, when keys are toggled visible.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap text (normally the hex of a key).
    pub fn new(text: impl Into<String>) -> Self {
        Secret(text.into())
    }

    /// The text itself, for the renderer when keys are shown.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// What the device said it can do (its Provisioning Capabilities, as text).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapabilitiesView {
    /// Number of elements.
    pub elements: u8,
    /// Algorithms it supports, by name.
    pub algorithms: Vec<String>,
    /// Whether its public key is available out of band.
    pub public_key_oob: bool,
    /// Whether it has static OOB information.
    pub static_oob: bool,
    /// Output OOB actions, by name, and the maximum size.
    pub output_oob: Vec<String>,
    /// Output OOB size (digits or characters), 0 if none.
    pub output_size: u8,
    /// Input OOB actions, by name.
    pub input_oob: Vec<String>,
    /// Input OOB size, 0 if none.
    pub input_size: u8,
}

/// One certificate of a device's chain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertSummary {
    /// Subject, as a distinguished name.
    pub subject: String,
    /// Issuer, as a distinguished name.
    pub issuer: String,
    /// Not valid before (as text).
    pub not_before: String,
    /// Not valid after (as text).
    pub not_after: String,
    /// The verdict on this certificate (`trusted root`, `ok`, `expired`, ...).
    pub status: String,
}

/// Direction of a PDU in the transcript.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the provisioner to the device.
    ToDevice,
    /// From the device to the provisioner.
    FromDevice,
}

/// One PDU of the provisioning transcript.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranscriptEntry {
    /// When, counted from the link's opening.
    pub at: Duration,
    /// Which way.
    pub direction: Direction,
    /// The PDU's name (`Invite`, `Capabilities`, `Public Key`, ...).
    pub pdu: String,
    /// Its length in octets.
    pub len: usize,
    /// A short note (the fields that matter), may be empty.
    pub note: String,
}

/// One element of the Composition Data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElementView {
    /// Location descriptor, as text.
    pub location: String,
    /// Models, by name or id.
    pub models: Vec<String>,
}

/// Composition Data page 0, as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompositionView {
    /// Company, product and version ids, as the detail screen shows them.
    pub ids: String,
    /// Features (relay, proxy, friend, low power).
    pub features: String,
    /// Elements.
    pub elements: Vec<ElementView>,
}

/// Status of one step (a configuration step, or a node in the key refresh).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// Under way.
    Running,
    /// Finished.
    Done,
    /// Failed, with the reason.
    Failed(String),
    /// Left out on purpose (a node excluded from a key refresh).
    Excluded,
}

impl StepStatus {
    /// Short label.
    pub fn label(&self) -> &str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Done => "done",
            StepStatus::Failed(_) => "failed",
            StepStatus::Excluded => "excluded",
        }
    }
}

/// One configuration step from the template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigStep {
    /// What it does (`AppKey Add "lights"`, `Model App Bind 0x1000`, ...); the step's key.
    pub name: String,
    /// How it went.
    pub status: StepStatus,
}

/// A key of the device, masked on screen unless toggled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyView {
    /// Which key (`DevKey`, `NetKey 0`, `AppKey lights`).
    pub label: String,
    /// Its hex.
    pub value: Secret,
}

/// Everything the detail screen shows beyond the table row; the glue fills what it knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceDetail {
    /// The device's capabilities, once received.
    pub capabilities: Option<CapabilitiesView>,
    /// The algorithm chosen.
    pub algorithm: Option<String>,
    /// The authentication chosen, in words.
    pub auth: Option<String>,
    /// The certificate chain, leaf first.
    pub certificates: Vec<CertSummary>,
    /// The provisioning PDUs in order.
    pub transcript: Vec<TranscriptEntry>,
    /// Composition Data page 0, once read.
    pub composition: Option<CompositionView>,
    /// Configuration steps in template order.
    pub config_steps: Vec<ConfigStep>,
    /// Keys (masked unless toggled).
    pub keys: Vec<KeyView>,
}

/// A beacon heard from a device that is not in the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Beacon {
    /// Its UUID.
    pub uuid: Uuid,
    /// Last RSSI, dBm.
    pub rssi: i8,
    /// OOB information, in words.
    pub oob_info: String,
    /// URI hash, hex, if present.
    pub uri_hash: Option<String>,
    /// When last heard (elapsed time of the rollout).
    pub last_seen: Duration,
}

/// What an Output OOB device does to show its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputAction {
    /// Blinks a number of times.
    Blink,
    /// Beeps a number of times.
    Beep,
    /// Vibrates a number of times.
    Vibrate,
    /// Shows a number.
    Numeric,
    /// Shows letters and digits.
    Alphanumeric,
}

impl OutputAction {
    /// Whether the installer counts (blinks, beeps, vibrations) rather than reads.
    pub fn is_count(self) -> bool {
        matches!(
            self,
            OutputAction::Blink | OutputAction::Beep | OutputAction::Vibrate
        )
    }

    /// The verb the dialog uses.
    pub fn label(self) -> &'static str {
        match self {
            OutputAction::Blink => "blinks",
            OutputAction::Beep => "beeps",
            OutputAction::Vibrate => "vibrations",
            OutputAction::Numeric => "number",
            OutputAction::Alphanumeric => "code",
        }
    }
}

/// What the installer does on an Input OOB device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputAction {
    /// Push a button that many times.
    Push,
    /// Twist a knob that many times.
    Twist,
    /// Type a number.
    Numeric,
    /// Type letters and digits.
    Alphanumeric,
}

impl InputAction {
    /// The instruction the dialog gives.
    pub fn instruction(self) -> &'static str {
        match self {
            InputAction::Push => "Push the device's button this many times:",
            InputAction::Twist => "Twist the device's knob this many times:",
            InputAction::Numeric => "Type this number on the device:",
            InputAction::Alphanumeric => "Type this code on the device:",
        }
    }
}

/// The kind of OOB prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OobKind {
    /// The device outputs a value; the installer types it.
    Output {
        /// How the device shows it.
        action: OutputAction,
        /// Its size in digits or characters.
        size: u8,
    },
    /// The provisioner shows a value; the installer enters it on the device.
    Input {
        /// How to enter it.
        action: InputAction,
        /// The value.
        value: String,
    },
}

/// A pending OOB prompt (a modal dialog until answered or deferred).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OobPrompt {
    /// The device asking.
    pub uuid: Uuid,
    /// What kind of prompt.
    pub kind: OobKind,
}

/// The phase of a key refresh (Key Refresh Phase, MshPRT v1.1 §3.8.4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum KrPhase {
    /// Normal operation (phase 0).
    Normal,
    /// Phase 1: new keys are being distributed.
    Distributing,
    /// Phase 2: nodes switch to transmitting with the new keys.
    Switching,
    /// Phase 3: old keys are being revoked.
    Revoking,
}

impl KrPhase {
    /// The phase number (0..=3).
    pub fn number(self) -> u8 {
        match self {
            KrPhase::Normal => 0,
            KrPhase::Distributing => 1,
            KrPhase::Switching => 2,
            KrPhase::Revoking => 3,
        }
    }

    /// In words.
    pub fn label(self) -> &'static str {
        match self {
            KrPhase::Normal => "normal",
            KrPhase::Distributing => "1 distributing keys",
            KrPhase::Switching => "2 switching to new keys",
            KrPhase::Revoking => "3 revoking old keys",
        }
    }
}

/// One node in a key refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KrNode {
    /// Its primary address.
    pub address: u16,
    /// Its name.
    pub name: String,
    /// The phase it has confirmed.
    pub phase: KrPhase,
    /// How its current step goes.
    pub status: StepStatus,
}

/// A key refresh in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRefreshView {
    /// The NetKey index being refreshed.
    pub net_key_index: u16,
    /// The phase the network is in.
    pub phase: KrPhase,
    /// Per node.
    pub nodes: Vec<KrNode>,
}

/// Counts over the nodes of a key refresh (excluded nodes are counted apart, in nothing else).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KrCounts {
    /// Nodes in the procedure (not excluded).
    pub nodes: u32,
    /// Of those, the ones that confirmed phase 1, 2 and 3 (or a later one).
    pub confirmed: [u32; 3],
    /// Nodes left behind (failed, unreachable).
    pub failed: u32,
    /// Nodes kept out.
    pub excluded: u32,
}

impl KeyRefreshView {
    /// The counts the dashboard shows.
    pub fn counts(&self) -> KrCounts {
        let mut c = KrCounts::default();
        for n in &self.nodes {
            if n.status == StepStatus::Excluded {
                c.excluded += 1;
                continue;
            }
            c.nodes += 1;
            for p in 1..=3u8 {
                if n.phase.number() >= p {
                    c.confirmed[usize::from(p - 1)] += 1;
                }
            }
            if matches!(n.status, StepStatus::Failed(_)) {
                c.failed += 1;
            }
        }
        c
    }
}

/// How bad a log event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Information.
    Info,
    /// Something to look at.
    Warn,
    /// A failure.
    Error,
}

/// One line of the event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// When (elapsed time of the rollout).
    pub at: Duration,
    /// How bad.
    pub level: Level,
    /// The device concerned, if any.
    pub uuid: Option<Uuid>,
    /// What happened.
    pub text: String,
}

/// The state of the rollout as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Not started.
    Idle,
    /// Running.
    Running,
    /// Paused by the installer (sessions under way finish; no new ones start).
    Paused,
    /// Every device is done, failed or skipped.
    Finished,
}

impl RunState {
    /// In words.
    pub fn label(self) -> &'static str {
        match self {
            RunState::Idle => "idle",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Finished => "finished",
        }
    }
}

/// The most recent log lines kept (older ones are dropped).
pub const LOG_CAPACITY: usize = 2000;

/// A change to the view model, one per rollout event (see [`ViewModel::apply`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// Network and radio names for the header.
    Header {
        /// Network name.
        network: String,
        /// Radio description.
        radio: String,
    },
    /// Time since the rollout began.
    Elapsed(Duration),
    /// The rollout's state.
    Run(RunState),
    /// Add or replace a device row.
    Device(DeviceRow),
    /// A device entered a stage at the given elapsed time.
    Stage {
        /// Which device.
        uuid: Uuid,
        /// The new stage.
        stage: Stage,
        /// When.
        at: Duration,
    },
    /// A device's attempt number.
    Attempt {
        /// Which device.
        uuid: Uuid,
        /// Attempt number.
        attempt: u32,
    },
    /// A device got its address.
    Address {
        /// Which device.
        uuid: Uuid,
        /// The unicast address.
        address: u16,
    },
    /// A device's last error (or `None` to clear it).
    Error {
        /// Which device.
        uuid: Uuid,
        /// The error text.
        error: Option<String>,
    },
    /// Replace a device's detail.
    Detail {
        /// Which device.
        uuid: Uuid,
        /// Its detail.
        detail: Box<DeviceDetail>,
    },
    /// Append a PDU to a device's transcript.
    Transcript {
        /// Which device.
        uuid: Uuid,
        /// The PDU.
        entry: TranscriptEntry,
    },
    /// Add a configuration step, or change the status of the step of the same name.
    ConfigStep {
        /// Which device.
        uuid: Uuid,
        /// The step.
        step: ConfigStep,
    },
    /// A beacon not in the plan was heard (added or refreshed).
    Beacon(Beacon),
    /// Forget a beacon (added to the plan, or ignored).
    BeaconGone(Uuid),
    /// An OOB prompt opened.
    Prompt(OobPrompt),
    /// The prompt of this device is over (answered, or the session ended).
    PromptDone(Uuid),
    /// A key refresh started, changed phase, or ended (`None`).
    KeyRefresh(Option<KeyRefreshView>),
    /// One node of the key refresh moved.
    KeyRefreshNode(KrNode),
    /// A log line.
    Log(LogEntry),
}

/// Why an update could not be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyError {
    /// The update names a device that is not in the table.
    UnknownDevice(Uuid),
    /// A key refresh node update came with no key refresh running.
    NoKeyRefresh,
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::UnknownDevice(u) => write!(f, "device {u} is not in the table"),
            ApplyError::NoKeyRefresh => f.write_str("no key refresh is running"),
        }
    }
}

impl std::error::Error for ApplyError {}

/// Everything the screens show.
#[derive(Clone, Debug)]
pub struct ViewModel {
    /// Network name.
    pub network: String,
    /// Radio description (`sim (seed 7)`, `bluez hci0`).
    pub radio: String,
    /// Time since the rollout began.
    pub elapsed: Duration,
    /// The rollout's state.
    pub run: RunState,
    /// The devices of the plan.
    pub devices: DeviceTable,
    /// Detail per device, for those the glue has filled.
    pub details: HashMap<Uuid, DeviceDetail>,
    /// Beacons not in the plan, in the order first heard.
    pub discovery: Vec<Beacon>,
    /// OOB prompts waiting for the installer, oldest first.
    pub prompts: Vec<OobPrompt>,
    /// The key refresh, if one runs.
    pub key_refresh: Option<KeyRefreshView>,
    /// Recent events, oldest first, at most [`LOG_CAPACITY`].
    pub log: VecDeque<LogEntry>,
}

impl Default for ViewModel {
    fn default() -> Self {
        ViewModel {
            network: String::new(),
            radio: String::new(),
            elapsed: Duration::ZERO,
            run: RunState::Idle,
            devices: DeviceTable::new(),
            details: HashMap::new(),
            discovery: Vec::new(),
            prompts: Vec::new(),
            key_refresh: None,
            log: VecDeque::new(),
        }
    }
}

impl ViewModel {
    /// An empty model for a network on a radio.
    pub fn new(network: &str, radio: &str) -> Self {
        ViewModel {
            network: network.to_owned(),
            radio: radio.to_owned(),
            ..Self::default()
        }
    }

    /// Devices finished per minute since the start, once a device is done.
    pub fn throughput_per_min(&self) -> Option<f64> {
        let done = self.devices.counts().done;
        let secs = self.elapsed.as_secs_f64();
        if done == 0 || secs < 1.0 {
            return None;
        }
        Some(done as f64 * 60.0 / secs)
    }

    /// Time left at the current throughput for the devices still waiting or in progress.
    pub fn eta(&self) -> Option<Duration> {
        let c = self.devices.counts();
        let left = c.waiting + c.in_progress;
        if left == 0 {
            return Some(Duration::ZERO);
        }
        let per_min = self.throughput_per_min()?;
        let secs = left as f64 * 60.0 / per_min;
        if !secs.is_finite() || secs > 1e9 {
            return None;
        }
        Some(Duration::from_secs_f64(secs))
    }

    /// Append a log line, dropping the oldest beyond [`LOG_CAPACITY`].
    pub fn push_log(&mut self, entry: LogEntry) {
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }

    /// Add or refresh a beacon.
    pub fn upsert_beacon(&mut self, beacon: Beacon) {
        match self.discovery.iter_mut().find(|b| b.uuid == beacon.uuid) {
            Some(b) => *b = beacon,
            None => self.discovery.push(beacon),
        }
    }

    /// The detail of a device, created empty if the glue has not filled it yet.
    pub fn detail_mut(&mut self, uuid: Uuid) -> &mut DeviceDetail {
        self.details.entry(uuid).or_default()
    }

    /// Apply one update. Updates that name a device not in the table are refused (the glue adds
    /// the plan's devices first); nothing is changed then.
    pub fn apply(&mut self, update: Update) -> Result<(), ApplyError> {
        let known = |m: &Self, u: &Uuid| {
            if m.devices.get(u).is_some() {
                Ok(())
            } else {
                Err(ApplyError::UnknownDevice(*u))
            }
        };
        match update {
            Update::Header { network, radio } => {
                self.network = network;
                self.radio = radio;
            }
            Update::Elapsed(d) => self.elapsed = d,
            Update::Run(r) => self.run = r,
            Update::Device(row) => self.devices.upsert(row),
            Update::Stage { uuid, stage, at } => {
                self.devices
                    .update(&uuid, |r| {
                        r.stage = stage;
                        r.stage_since = at;
                        if stage == Stage::Done {
                            r.last_error = None;
                        }
                    })
                    .ok_or(ApplyError::UnknownDevice(uuid))?;
            }
            Update::Attempt { uuid, attempt } => {
                self.devices
                    .update(&uuid, |r| r.attempt = attempt)
                    .ok_or(ApplyError::UnknownDevice(uuid))?;
            }
            Update::Address { uuid, address } => {
                self.devices
                    .update(&uuid, |r| r.address = Some(address))
                    .ok_or(ApplyError::UnknownDevice(uuid))?;
            }
            Update::Error { uuid, error } => {
                self.devices
                    .update(&uuid, |r| r.last_error = error)
                    .ok_or(ApplyError::UnknownDevice(uuid))?;
            }
            Update::Detail { uuid, detail } => {
                known(self, &uuid)?;
                self.details.insert(uuid, *detail);
            }
            Update::Transcript { uuid, entry } => {
                known(self, &uuid)?;
                self.detail_mut(uuid).transcript.push(entry);
            }
            Update::ConfigStep { uuid, step } => {
                known(self, &uuid)?;
                let d = self.detail_mut(uuid);
                match d.config_steps.iter_mut().find(|s| s.name == step.name) {
                    Some(s) => s.status = step.status,
                    None => d.config_steps.push(step),
                }
            }
            Update::Beacon(b) => self.upsert_beacon(b),
            Update::BeaconGone(u) => self.discovery.retain(|b| b.uuid != u),
            Update::Prompt(p) => {
                known(self, &p.uuid)?;
                self.prompts.retain(|q| q.uuid != p.uuid);
                self.prompts.push(p);
            }
            Update::PromptDone(u) => self.prompts.retain(|p| p.uuid != u),
            Update::KeyRefresh(kr) => self.key_refresh = kr,
            Update::KeyRefreshNode(node) => {
                let kr = self.key_refresh.as_mut().ok_or(ApplyError::NoKeyRefresh)?;
                match kr.nodes.iter_mut().find(|n| n.address == node.address) {
                    Some(n) => *n = node,
                    None => kr.nodes.push(node),
                }
            }
            Update::Log(e) => self.push_log(e),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid(n: u16) -> Uuid {
        let mut b = [0u8; 16];
        b[14..].copy_from_slice(&n.to_be_bytes());
        Uuid(b)
    }

    #[test]
    fn uuid_parses_and_prints() {
        let u: Uuid = "0011-2233445566778899aabbccddeeff".parse().unwrap();
        assert_eq!(u.to_string(), "00112233445566778899aabbccddeeff");
        assert_eq!(u.short(), "…ccddeeff");
        assert!("0011".parse::<Uuid>().is_err());
        assert!("zz112233445566778899aabbccddeeff".parse::<Uuid>().is_err());
    }

    #[test]
    fn natural_order() {
        let mut v = vec![
            "Lamp 10", "lamp 2", "Lamp 1", "Floor 09", "Floor 9", "Floor 10",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            [
                "Floor 09", "Floor 9", "Floor 10", "Lamp 1", "lamp 2", "Lamp 10"
            ]
        );
    }

    #[test]
    fn counts_and_tree_follow_every_change() {
        let mut m = ViewModel::new("net", "sim");
        for n in 0..6 {
            let floor = if n < 4 { "1" } else { "2" };
            let room = format!("{}", 100 + n % 2);
            m.apply(Update::Device(DeviceRow::planned(
                uuid(n),
                &format!("d{n}"),
                Location::new("HQ", floor, &room),
                "cert",
            )))
            .unwrap();
        }
        let c = m.devices.counts();
        assert_eq!((c.waiting, c.total()), (6, 6));
        m.apply(Update::Stage {
            uuid: uuid(0),
            stage: Stage::Provisioning,
            at: Duration::from_secs(1),
        })
        .unwrap();
        m.apply(Update::Stage {
            uuid: uuid(4),
            stage: Stage::Failed,
            at: Duration::from_secs(2),
        })
        .unwrap();
        m.apply(Update::Stage {
            uuid: uuid(1),
            stage: Stage::Done,
            at: Duration::from_secs(3),
        })
        .unwrap();
        let c = m.devices.counts();
        assert_eq!((c.waiting, c.in_progress, c.done, c.failed), (3, 1, 1, 1));
        let tree = m.devices.tree();
        let hq = &tree.buildings[&NaturalKey("HQ".into())];
        assert_eq!(hq.counts, c);
        let f1 = &hq.floors[&NaturalKey("1".into())];
        assert_eq!(
            (f1.counts.done, f1.counts.in_progress, f1.counts.waiting),
            (1, 1, 2)
        );
        assert_eq!(f1.rooms[&NaturalKey("100".into())].in_progress, 1);
        assert_eq!(f1.rooms[&NaturalKey("101".into())].done, 1);
        let f2 = &hq.floors[&NaturalKey("2".into())];
        assert_eq!((f2.counts.failed, f2.counts.waiting), (1, 1));
        // Moving a device moves its count.
        m.devices
            .update(&uuid(5), |r| r.location = Location::new("Annex", "G", "1"))
            .unwrap();
        let tree = m.devices.tree();
        assert_eq!(tree.buildings.len(), 2);
        assert_eq!(
            tree.floors(),
            vec![
                ("Annex".into(), "G".into()),
                ("HQ".into(), "1".into()),
                ("HQ".into(), "2".into())
            ]
        );
        assert_eq!(tree.buildings[&NaturalKey("HQ".into())].counts.total(), 5);
    }

    #[test]
    fn unknown_devices_are_refused() {
        let mut m = ViewModel::default();
        let e = m.apply(Update::Stage {
            uuid: uuid(9),
            stage: Stage::Done,
            at: Duration::ZERO,
        });
        assert_eq!(e, Err(ApplyError::UnknownDevice(uuid(9))));
        assert!(m.details.is_empty());
        assert_eq!(
            m.apply(Update::KeyRefreshNode(KrNode {
                address: 1,
                name: "a".into(),
                phase: KrPhase::Normal,
                status: StepStatus::Pending
            })),
            Err(ApplyError::NoKeyRefresh)
        );
    }

    #[test]
    fn throughput_and_eta() {
        let mut m = ViewModel::new("n", "r");
        for n in 0..10 {
            m.devices.upsert(DeviceRow::planned(
                uuid(n),
                "d",
                Location::default(),
                "none",
            ));
        }
        assert_eq!(m.throughput_per_min(), None);
        for n in 0..4 {
            m.devices
                .update(&uuid(n), |r| r.stage = Stage::Done)
                .unwrap();
        }
        m.devices
            .update(&uuid(4), |r| r.stage = Stage::Failed)
            .unwrap();
        m.elapsed = Duration::from_secs(120);
        assert_eq!(m.throughput_per_min(), Some(2.0));
        // Five left (the failed one is not waited for) at two a minute.
        assert_eq!(m.eta(), Some(Duration::from_secs(150)));
    }

    #[test]
    fn log_is_bounded_and_steps_update_by_name() {
        let mut m = ViewModel::default();
        for i in 0..LOG_CAPACITY + 5 {
            m.push_log(LogEntry {
                at: Duration::from_secs(i as u64),
                level: Level::Info,
                uuid: None,
                text: format!("{i}"),
            });
        }
        assert_eq!(m.log.len(), LOG_CAPACITY);
        assert_eq!(m.log.front().unwrap().text, "5");
        m.devices.upsert(DeviceRow::planned(
            uuid(1),
            "d",
            Location::default(),
            "none",
        ));
        for status in [StepStatus::Running, StepStatus::Done] {
            m.apply(Update::ConfigStep {
                uuid: uuid(1),
                step: ConfigStep {
                    name: "AppKey Add".into(),
                    status,
                },
            })
            .unwrap();
        }
        assert_eq!(m.details[&uuid(1)].config_steps.len(), 1);
        assert_eq!(m.details[&uuid(1)].config_steps[0].status, StepStatus::Done);
        assert_eq!(format!("{:?}", Secret::new("00ff")), "Secret(…)");
    }
}
