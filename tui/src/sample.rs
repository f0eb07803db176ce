//! Scripted view-model states: a made-up building whose rollout follows a fixed timetable, for
//! the snapshot tests, the render benchmark and the `demo-view` example. Nothing here talks to
//! a radio; the real states come from the rollout engine through the glue in `src/`.
//!
//! Device `i` of `n` is provisioned in slot `i / CONCURRENCY` (each slot lasts `SLOT`), goes
//! through every stage on the way, and some devices fail (with a retry first), or are never
//! heard, on a fixed pattern — so any moment of the rollout can be reproduced exactly.

use std::time::Duration;

use crate::model::{
    Beacon, CapabilitiesView, CertSummary, CompositionView, ConfigStep, DeviceDetail, DeviceRow,
    Direction, ElementView, KeyRefreshView, KeyView, KrNode, KrPhase, Level, Location, LogEntry,
    OobKind, OobPrompt, OutputAction, RunState, Secret, Stage, StepStatus, TranscriptEntry, Uuid,
    ViewModel,
};

/// Devices provisioned at once in the script.
pub const CONCURRENCY: usize = 8;
/// Time one device takes, start to done.
pub const SLOT: Duration = Duration::from_secs(6);
/// Devices per room.
const PER_ROOM: usize = 8;

/// A scripted rollout of `n` devices.
#[derive(Clone, Debug)]
pub struct Script {
    n: usize,
    seed: u32,
    floors: usize,
}

/// Where a device is at one moment of the script.
#[derive(Clone, Debug, PartialEq, Eq)]
struct At {
    stage: Stage,
    since: Duration,
    attempt: u32,
    error: Option<String>,
    address: Option<u16>,
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

impl Script {
    /// A building of `n` devices; `seed` changes the UUIDs only.
    pub fn new(n: usize, seed: u32) -> Self {
        Script {
            n,
            seed,
            floors: (n / 400).clamp(3, 40),
        }
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the building has no device.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The UUID of device `i`.
    pub fn uuid(&self, i: usize) -> Uuid {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(b"mesh");
        b[4..8].copy_from_slice(&self.seed.to_be_bytes());
        b[8..12].copy_from_slice(&(i as u32).wrapping_mul(0x9e37_79b9).to_be_bytes());
        b[12..].copy_from_slice(&(i as u32).to_be_bytes());
        Uuid(b)
    }

    /// The index of a device of this script.
    pub fn index(&self, uuid: &Uuid) -> Option<usize> {
        let i = u32::from_be_bytes([uuid.0[12], uuid.0[13], uuid.0[14], uuid.0[15]]) as usize;
        (i < self.n && self.uuid(i) == *uuid).then_some(i)
    }

    fn location(&self, i: usize) -> Location {
        let per_floor = self.n.div_ceil(self.floors).max(1);
        let floor = i / per_floor + 1;
        let room = (i % per_floor) / PER_ROOM + 1;
        Location::new("HQ", &floor.to_string(), &format!("{floor}{room:02}"))
    }

    fn auth(i: usize) -> &'static str {
        match i % 3 {
            0 => "cert",
            1 => "static",
            _ => "output",
        }
    }

    fn name(&self, i: usize) -> String {
        let role = match i % 4 {
            0 | 1 => "Lamp",
            2 => "Switch",
            _ => "Sensor",
        };
        let loc = self.location(i);
        let per_floor = self.n.div_ceil(self.floors).max(1);
        format!("{role} {}-{}", loc.room, (i % per_floor) % PER_ROOM + 1)
    }

    /// The plan row of device `i` (not started).
    pub fn row(&self, i: usize) -> DeviceRow {
        DeviceRow::planned(self.uuid(i), &self.name(i), self.location(i), Self::auth(i))
    }

    fn never_heard(i: usize) -> bool {
        i % 97 == 50
    }

    fn fails(i: usize) -> bool {
        i % 53 == 17
    }

    /// When device `i` starts provisioning.
    fn start(i: usize) -> Duration {
        ms(2_000) + SLOT * (i / CONCURRENCY) as u32
    }

    /// The time every device has settled.
    pub fn end(&self) -> Duration {
        Self::start(self.n.saturating_sub(1)) + SLOT
    }

    fn at(&self, i: usize, now: Duration) -> At {
        let s = Self::start(i);
        let address = Some(0x0100 + (i as u16).wrapping_mul(2));
        let mut at = At {
            stage: Stage::Waiting,
            since: Duration::ZERO,
            attempt: 0,
            error: None,
            address: None,
        };
        if Self::never_heard(i) {
            return at;
        }
        let heard = s.saturating_sub(ms(5_000));
        let steps: Vec<(Duration, Stage, u32, Option<&str>, bool)> = if Self::fails(i) {
            vec![
                (heard, Stage::Discovered, 0, None, false),
                (
                    s.saturating_sub(ms(1_000)),
                    Stage::Scheduled,
                    0,
                    None,
                    false,
                ),
                (s, Stage::Provisioning, 1, None, false),
                (
                    s + ms(2_000),
                    Stage::Retrying,
                    1,
                    Some("timeout waiting for Public Key"),
                    false,
                ),
                (
                    s + ms(3_000),
                    Stage::Provisioning,
                    2,
                    Some("timeout waiting for Public Key"),
                    false,
                ),
                (
                    s + ms(5_000),
                    Stage::Failed,
                    2,
                    Some("provisioning: timeout waiting for Public Key (2 attempts)"),
                    false,
                ),
            ]
        } else {
            vec![
                (heard, Stage::Discovered, 0, None, false),
                (
                    s.saturating_sub(ms(1_000)),
                    Stage::Scheduled,
                    0,
                    None,
                    false,
                ),
                (s, Stage::Provisioning, 1, None, false),
                (s + ms(3_500), Stage::Committed, 1, None, true),
                (s + ms(3_700), Stage::Configuring, 1, None, true),
                (s + ms(5_200), Stage::Verifying, 1, None, true),
                (s + ms(5_800), Stage::Done, 1, None, true),
            ]
        };
        for (t, stage, attempt, error, addressed) in steps {
            if now < t {
                break;
            }
            at = At {
                stage,
                since: t,
                attempt,
                error: error.map(str::to_owned),
                address: if addressed { address } else { None },
            };
        }
        at
    }

    /// The model before the rollout: header, every planned device waiting, beacons heard that
    /// are not in the plan.
    pub fn model(&self) -> ViewModel {
        let mut m = ViewModel::new("HQ-mesh", "sim (seed 7, 10% loss)");
        for i in 0..self.n {
            m.devices.upsert(self.row(i));
        }
        for k in 0..5u8 {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(b"othr");
            b[15] = k;
            m.upsert_beacon(Beacon {
                uuid: Uuid(b),
                rssi: -48 - 9 * k as i8,
                oob_info: [
                    "none",
                    "number, inside box",
                    "on device",
                    "URI",
                    "certificate",
                ][k as usize]
                    .into(),
                uri_hash: (k == 3).then(|| "5f2a9c01".into()),
                last_seen: Duration::ZERO,
            });
        }
        m
    }

    /// Bring every device (and the opened details) to its state at `now`; set the elapsed time
    /// and the run state; log the changes. Rows that did not change are not touched.
    pub fn advance(&self, m: &mut ViewModel, now: Duration) {
        m.elapsed = now;
        if m.run == RunState::Idle && now > Duration::ZERO {
            m.run = RunState::Running;
        }
        for i in 0..self.n {
            let uuid = self.uuid(i);
            let at = self.at(i, now);
            let Some(row) = m.devices.get(&uuid) else {
                continue;
            };
            let same = row.stage == at.stage
                && row.stage_since == at.since
                && row.attempt == at.attempt
                && row.last_error == at.error
                && row.address == at.address;
            if same {
                continue;
            }
            let name = row.name.clone();
            let (stage, since) = (at.stage, at.since);
            let log = match stage {
                Stage::Done => Some((Level::Info, format!("{name}: configured and verified"))),
                Stage::Failed => Some((
                    Level::Error,
                    format!("{name}: {}", at.error.clone().unwrap_or_default()),
                )),
                Stage::Retrying => Some((Level::Warn, format!("{name}: retrying after a timeout"))),
                Stage::Committed => Some((
                    Level::Info,
                    format!("{name}: provisioned at {:04x}", at.address.unwrap_or(0)),
                )),
                _ => None,
            };
            m.devices.update(&uuid, |r| {
                r.stage = at.stage;
                r.stage_since = at.since;
                r.attempt = at.attempt;
                r.last_error = at.error;
                r.address = at.address;
            });
            if let Some((level, text)) = log {
                m.push_log(LogEntry {
                    at: since,
                    level,
                    uuid: Some(uuid),
                    text,
                });
            }
            if m.details.contains_key(&uuid) {
                m.details.insert(uuid, self.detail(i, now));
            }
        }
        let c = m.devices.counts();
        if c.waiting + c.in_progress == Self::never_heard_count(self.n) as u32 && now >= self.end()
        {
            m.run = RunState::Finished;
        }
    }

    fn never_heard_count(n: usize) -> usize {
        (0..n).filter(|&i| Self::never_heard(i)).count()
    }

    /// Device `i`'s detail at `now`: what a session would have shown by then.
    pub fn detail(&self, i: usize, now: Duration) -> DeviceDetail {
        let at = self.at(i, now);
        let s = Self::start(i);
        let mut d = DeviceDetail::default();
        if now < s || Self::never_heard(i) {
            return d;
        }
        let t = now - s;
        let cert = Self::auth(i) == "cert";
        let pdus: [(u64, Direction, &str, usize, String); 9] = [
            (0, Direction::ToDevice, "Invite", 2, "attention 5 s".into()),
            (
                180,
                Direction::FromDevice,
                "Capabilities",
                12,
                "2 elements, P-256 HMAC".into(),
            ),
            (
                260,
                Direction::ToDevice,
                "Start",
                6,
                format!("{} OOB", Self::auth(i)),
            ),
            (900, Direction::ToDevice, "Public Key", 65, String::new()),
            (
                1_500,
                Direction::FromDevice,
                "Public Key",
                65,
                String::new(),
            ),
            (
                2_100,
                Direction::ToDevice,
                "Confirmation",
                33,
                String::new(),
            ),
            (
                2_600,
                Direction::FromDevice,
                "Confirmation",
                33,
                String::new(),
            ),
            (
                3_000,
                Direction::ToDevice,
                "Data",
                34,
                "encrypted, MIC ok".into(),
            ),
            (3_400, Direction::FromDevice, "Complete", 1, String::new()),
        ];
        let failed_at = if Self::fails(i) { 4 } else { pdus.len() };
        for (k, (off, dir, name, len, note)) in pdus.into_iter().enumerate() {
            if ms(off) > t || k >= failed_at {
                break;
            }
            d.transcript.push(TranscriptEntry {
                at: ms(off),
                direction: dir,
                pdu: name.into(),
                len,
                note,
            });
        }
        if t >= ms(180) {
            d.capabilities = Some(CapabilitiesView {
                elements: 2,
                algorithms: vec![
                    "P-256 CMAC/AES-CCM".into(),
                    "P-256 HMAC-SHA256/AES-CCM".into(),
                ],
                public_key_oob: cert,
                static_oob: true,
                output_oob: vec!["blink".into(), "numeric".into()],
                output_size: 4,
                input_oob: vec![],
                input_size: 0,
            });
        }
        if t >= ms(260) {
            d.algorithm = Some("BTM_ECDH_P256_HMAC_SHA256_AES_CCM".into());
            d.auth = Some(match Self::auth(i) {
                "cert" => "static OOB from the device certificate".into(),
                "static" => "static OOB from the plan".into(),
                _ => "output OOB: numeric, 4 digits".into(),
            });
        }
        if cert {
            d.certificates = vec![
                CertSummary {
                    subject: format!("CN={}, O=Acme Lighting", self.uuid(i)),
                    issuer: "CN=Acme Device CA 3".into(),
                    not_before: "2026-01-05".into(),
                    not_after: "2046-01-05".into(),
                    status: "ok".into(),
                },
                CertSummary {
                    subject: "CN=Acme Device CA 3".into(),
                    issuer: "CN=Acme Root CA".into(),
                    not_before: "2024-03-01".into(),
                    not_after: "2049-03-01".into(),
                    status: "trusted root".into(),
                },
            ];
        }
        if at.address.is_some() {
            d.keys = vec![KeyView {
                label: "DevKey".into(),
                value: Secret::new(format!("{:08x}{}", i, "5a17c0de".repeat(3))),
            }];
        }
        if t >= ms(3_700) && !Self::fails(i) {
            let steps = [
                "AppKey Add lights",
                "Model App Bind Generic OnOff Server",
                "Model Publication Set → Floor group",
                "Model Subscription Add → All lights",
                "Default TTL Set 5",
            ];
            for (k, name) in steps.iter().enumerate() {
                let due = ms(3_700 + 300 * k as u64);
                let status = if t >= due + ms(300) {
                    StepStatus::Done
                } else if t >= due {
                    StepStatus::Running
                } else {
                    StepStatus::Pending
                };
                d.config_steps.push(ConfigStep {
                    name: (*name).into(),
                    status,
                });
            }
        }
        if t >= ms(5_200) && !Self::fails(i) {
            d.composition = Some(CompositionView {
                ids: "CID 0x0059 · PID 0x0002 · VID 0x0103 · CRPL 32".into(),
                features: "relay, proxy".into(),
                elements: vec![
                    ElementView {
                        location: "main".into(),
                        models: vec![
                            "Config Server".into(),
                            "Health Server".into(),
                            "Generic OnOff Server".into(),
                        ],
                    },
                    ElementView {
                        location: "second".into(),
                        models: vec!["Light Lightness Server".into()],
                    },
                ],
            });
        }
        d
    }

    /// A model at `now`: the plan advanced to that moment.
    pub fn model_at(&self, now: Duration) -> ViewModel {
        let mut m = self.model();
        self.advance(&mut m, now);
        m
    }
}

/// An Output OOB prompt for device `i` of a script (the device blinks a count).
pub fn output_prompt(script: &Script, i: usize) -> OobPrompt {
    OobPrompt {
        uuid: script.uuid(i),
        kind: OobKind::Output {
            action: OutputAction::Blink,
            size: 1,
        },
    }
}

/// A key refresh over the first `nodes` done devices of a model, in `phase`, with some nodes
/// behind and one failing.
pub fn key_refresh(m: &ViewModel, nodes: usize, phase: KrPhase) -> KeyRefreshView {
    let mut out = Vec::new();
    for (k, r) in m
        .devices
        .rows()
        .iter()
        .filter(|r| r.stage == Stage::Done)
        .take(nodes)
        .enumerate()
    {
        let (p, status) = if k % 11 == 4 {
            (
                KrPhase::Normal,
                StepStatus::Failed("no Config Key Refresh Phase Status after 3 tries".into()),
            )
        } else if k % 3 == 0 {
            (prev(phase), StepStatus::Running)
        } else {
            (phase, StepStatus::Done)
        };
        out.push(KrNode {
            address: r.address.unwrap_or(0),
            name: r.name.clone(),
            phase: p,
            status,
        });
    }
    KeyRefreshView {
        net_key_index: 0,
        phase,
        nodes: out,
    }
}

/// A `meshprov key-refresh` run on its own (no devices to roll out): `nodes` lamps in phase 2
/// of the refresh of NetKey 0, the first third done with it, node 3 unreachable in phase 1 and
/// the last node excluded, with the log lines the glue writes.
pub fn key_refresh_run(nodes: u16) -> ViewModel {
    let mut m = ViewModel::new("HQ-mesh", "sim building.toml (seed 1, 10× speed)");
    m.run = RunState::Running;
    m.elapsed = Duration::from_secs(41);
    let mut list = Vec::new();
    for i in 0..nodes {
        let address = 1 + 2 * i;
        let (phase, status) = if i + 1 == nodes {
            (KrPhase::Normal, StepStatus::Excluded)
        } else if i == 3 {
            (
                KrPhase::Normal,
                StepStatus::Failed("unreachable: no answer after 3 rounds of requests".into()),
            )
        } else if i < nodes / 3 {
            (KrPhase::Switching, StepStatus::Done)
        } else {
            (KrPhase::Distributing, StepStatus::Running)
        };
        list.push(KrNode {
            address,
            name: format!("Lamp {}", i + 1),
            phase,
            status,
        });
    }
    m.key_refresh = Some(KeyRefreshView {
        net_key_index: 0,
        phase: KrPhase::Switching,
        nodes: list,
    });
    let log = [
        (
            0,
            Level::Info,
            "starting a key refresh of NetKey 0 and AppKey 0".to_string(),
        ),
        (0, Level::Info, "phase 1 (key distribution)".into()),
        (
            33,
            Level::Error,
            "0007 (Lamp 4): FAILED in phase 1: no answer after 3 rounds of requests".into(),
        ),
        (33, Level::Info, "phase 1 complete".into()),
        (33, Level::Info, "phase 2 (using the new keys)".into()),
        (37, Level::Info, "0001 (Lamp 1): done with phase 2".into()),
    ];
    for (at, level, text) in log {
        m.push_log(LogEntry {
            at: Duration::from_secs(at),
            level,
            uuid: None,
            text,
        });
    }
    m
}

fn prev(p: KrPhase) -> KrPhase {
    match p {
        KrPhase::Normal | KrPhase::Distributing => KrPhase::Normal,
        KrPhase::Switching => KrPhase::Distributing,
        KrPhase::Revoking => KrPhase::Switching,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Category;

    #[test]
    fn the_script_reaches_every_end() {
        let s = Script::new(400, 1);
        let m = s.model_at(s.end() + SLOT);
        let c = m.devices.counts();
        let never = (0..400).filter(|&i| Script::never_heard(i)).count() as u32;
        let failed = (0..400).filter(|&i| Script::fails(i)).count() as u32;
        assert_eq!(
            (c.waiting, c.failed, c.done),
            (never, failed, 400 - never - failed)
        );
        assert_eq!(m.run, RunState::Finished);
        for i in [0usize, 17, 50, 399] {
            assert_eq!(s.index(&s.uuid(i)), Some(i));
        }
        // Midway, the concurrency limit holds.
        let m = s.model_at(Duration::from_secs(60));
        assert!(m.devices.counts().get(Category::InProgress) as usize <= CONCURRENCY);
        assert_eq!(m.run, RunState::Running);
    }

    #[test]
    fn advancing_touches_only_rows_that_change() {
        let s = Script::new(1000, 1);
        let mut m = s.model_at(Duration::from_secs(100));
        let g = m.devices.generation();
        s.advance(&mut m, Duration::from_secs(100));
        assert_eq!(m.devices.generation(), g);
        s.advance(&mut m, Duration::from_secs(104));
        let changed = m.devices.generation() - g;
        // Two slots of devices moved (one starts, one is configured): no more rows than that.
        assert!(
            changed >= CONCURRENCY as u64 && changed <= 2 * CONCURRENCY as u64,
            "{changed}"
        );
    }
}
