//! Misbehaving virtual devices: the faults of a building file's `[device.fault]` table
//! (README "Simulated building file"), injected in the simulated device, never in the
//! provisioner. Each is a misbehaviour met in the field or an attack the provisioner must
//! resist:
//!
//! - **vanish** — the device loses power mid-session: when a chosen provisioning PDU arrives
//!   (`vanish_at`), or once it has put a number of PB-ADV PDUs on air (`vanish_after_pdus`), it
//!   stops hearing and sending anything, beacons included. With `return_after_s` it is powered
//!   again that long later: unprovisioned with a fresh session (or, if it had already taken its
//!   Provisioning Data, a node with the keys it stored), and it does not vanish a second time.
//! - **late** — every provisioning PDU it sends goes out `late_ms` after the PDU it answers
//!   arrived (on top of its ECDH time): a slow firmware. PB-ADV acknowledgments are not
//!   delayed (the bearer acknowledges at once, as mesh stacks do).
//! - **Provisioning Failed** — it answers a chosen PDU (`fail_at`) with Provisioning Failed and
//!   a chosen error code (`fail_code`, MshPRT v1.1 §5.4.1.10), then ignores the session.
//! - **reflection** — it sends the provisioner's own Public Key, Confirmation or Random back in
//!   place of its own (`reflect`): the reflection attacks of MshPRT v1.1 §5.4.2.3 and
//!   CVE-2020-26560 (impersonation by reflecting the Confirmation and Random), which the
//!   provisioner must refuse.
//! - **garbage** — it answers a chosen PDU (`garbage_at`) with random octets
//!   (`garbage = "random"`) or with the PDU type it owes and parameters of a wrong length
//!   (`"malformed"`), in a PB-ADV transaction whose FCS is valid or not (`garbage_fcs`), then
//!   ignores the session. A bad FCS makes the provisioner drop the transaction unacknowledged
//!   (MshPRT v1.1 §5.3.3), so the device's bearer gives up after its transaction timeout.
//!
//! At most one of vanish, Provisioning Failed, reflection and garbage per device; `late_ms`
//! combines with any of them. A device restarted by the rollout driver after a failed session
//! keeps its faults and what happened to them ([`FaultState`]): it vanishes or refuses again
//! on every attempt, but a device that vanished and came back does not vanish again.
//!
//! The air's own fault, a radio that stops delivering anything for a while, is
//! [`crate::radio::sim::AirConfig::blackouts`].

use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use serde::Deserialize;

use crate::time::Instant;
use crate::wire::pb_adv::{GenericProvisioningPdu, PbAdvPdu, fcs};
use crate::wire::{FailedCode, PduType};

/// A step of the session, named by the provisioner's PDU that the device receives
/// (MshPRT v1.1 §5.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Provisioning Invite (§5.4.1.1); the device owes Capabilities.
    Invite,
    /// Provisioning Start (§5.4.1.3); nothing is owed until the Public Key.
    Start,
    /// The provisioner's Provisioning Public Key (§5.4.1.4); the device owes its own.
    PublicKey,
    /// The provisioner's Provisioning Confirmation (§5.4.1.6); the device owes its own.
    Confirmation,
    /// The provisioner's Provisioning Random (§5.4.1.7); the device owes its own.
    Random,
    /// Provisioning Data (§5.4.1.8); the device owes Provisioning Complete.
    Data,
}

/// The names of [`Step`] in a building file.
pub const STEP_NAMES: [(&str, Step); 6] = [
    ("invite", Step::Invite),
    ("start", Step::Start),
    ("public-key", Step::PublicKey),
    ("confirmation", Step::Confirmation),
    ("random", Step::Random),
    ("data", Step::Data),
];

impl Step {
    /// The provisioning PDU type that marks this step.
    pub fn pdu_type(self) -> PduType {
        match self {
            Step::Invite => PduType::INVITE,
            Step::Start => PduType::START,
            Step::PublicKey => PduType::PUBLIC_KEY,
            Step::Confirmation => PduType::CONFIRMATION,
            Step::Random => PduType::RANDOM,
            Step::Data => PduType::DATA,
        }
    }

    /// Its name in a building file.
    pub fn name(self) -> &'static str {
        STEP_NAMES
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("?", |(n, _)| n)
    }

    /// The PDU type the device answers this step with, and the parameter lengths that are
    /// right for it (Confirmation and Random: 16 or 32 octets by algorithm).
    fn answer(self) -> (PduType, &'static [usize]) {
        match self {
            Step::Invite => (PduType::CAPABILITIES, &[11]),
            Step::Start | Step::PublicKey => (PduType::PUBLIC_KEY, &[64]),
            Step::Confirmation => (PduType::CONFIRMATION, &[16, 32]),
            Step::Random => (PduType::RANDOM, &[16, 32]),
            Step::Data => (PduType::COMPLETE, &[0]),
        }
    }

    fn parse(s: &str) -> Result<Step, String> {
        STEP_NAMES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, step)| *step)
            .ok_or_else(|| format!("unknown step '{s}' (use {})", step_list()))
    }
}

fn step_list() -> String {
    STEP_NAMES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The names of the Provisioning Failed error codes in a building file (MshPRT v1.1
/// §5.4.1.10); a number 0x01–0xFF is accepted too (RFU codes included).
pub const FAILED_CODE_NAMES: [(&str, FailedCode); 9] = [
    ("invalid-pdu", FailedCode::INVALID_PDU),
    ("invalid-format", FailedCode::INVALID_FORMAT),
    ("unexpected-pdu", FailedCode::UNEXPECTED_PDU),
    ("confirmation-failed", FailedCode::CONFIRMATION_FAILED),
    ("out-of-resources", FailedCode::OUT_OF_RESOURCES),
    ("decryption-failed", FailedCode::DECRYPTION_FAILED),
    ("unexpected-error", FailedCode::UNEXPECTED_ERROR),
    (
        "cannot-assign-addresses",
        FailedCode::CANNOT_ASSIGN_ADDRESSES,
    ),
    ("invalid-data", FailedCode::INVALID_DATA),
];

/// When a device vanishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VanishTrigger {
    /// When the PDU of this step arrives (it is never handled).
    At(Step),
    /// Right after it has put this many PB-ADV PDUs on air (Link ACK, transaction segments,
    /// acknowledgments and retransmissions all count), or GATT segments on PB-GATT.
    AfterPdus(u32),
}

/// A device that loses power mid-session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vanish {
    /// When.
    pub trigger: VanishTrigger,
    /// Powered again this long after; `None`: never.
    pub back_after: Option<Duration>,
}

/// What a garbage answer is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GarbageKind {
    /// 1–64 random octets (the type octet too).
    Random,
    /// The PDU type the device owes, with random parameters of a wrong length.
    Malformed,
}

/// A garbage answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Garbage {
    /// Which PDU it answers.
    pub at: Step,
    /// What it is.
    pub kind: GarbageKind,
    /// Whether its PB-ADV transaction has the right FCS (PB-GATT has none).
    pub valid_fcs: bool,
}

/// Which of the provisioner's values a device sends back as its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reflect {
    /// Its Public Key (MshPRT v1.1 §5.4.2.3).
    pub public_key: bool,
    /// Its Confirmation (CVE-2020-26560).
    pub confirmation: bool,
    /// Its Random (CVE-2020-26560).
    pub random: bool,
}

impl Reflect {
    /// Whether any value is reflected.
    pub fn any(self) -> bool {
        self.public_key || self.confirmation || self.random
    }
}

/// A device's faults (none by default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceFaults {
    /// It vanishes mid-session.
    pub vanish: Option<Vanish>,
    /// Every provisioning PDU it sends is this late.
    pub late: Duration,
    /// It answers this step with Provisioning Failed and this code.
    pub fail: Option<(Step, FailedCode)>,
    /// It reflects these values.
    pub reflect: Reflect,
    /// It answers with garbage.
    pub garbage: Option<Garbage>,
}

impl DeviceFaults {
    /// Whether the device behaves.
    pub fn is_none(&self) -> bool {
        *self == DeviceFaults::default()
    }
}

/// The `[device.fault]` table of a building file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFault {
    vanish_at: Option<String>,
    vanish_after_pdus: Option<u32>,
    return_after_s: Option<u64>,
    late_ms: Option<u64>,
    fail_at: Option<String>,
    fail_code: Option<toml::Value>,
    reflect: Option<Vec<String>>,
    garbage_at: Option<String>,
    garbage: Option<String>,
    garbage_fcs: Option<String>,
}

/// The longest `late_ms` (10 minutes: far beyond every provisioning timer).
pub const MAX_LATE_MS: u64 = 600_000;

impl RawFault {
    /// Checks the table; an error is `(field, message)`, the field relative to `fault`.
    pub(crate) fn check(
        self,
        public_key_oob: bool,
    ) -> Result<DeviceFaults, (&'static str, String)> {
        let mut f = DeviceFaults::default();
        let vanish = match (self.vanish_at, self.vanish_after_pdus) {
            (Some(_), Some(_)) => {
                return Err((
                    "vanish_at",
                    "give vanish_at or vanish_after_pdus, not both".into(),
                ));
            }
            (Some(s), None) => Some(VanishTrigger::At(
                Step::parse(&s).map_err(|m| ("vanish_at", m))?,
            )),
            (None, Some(0)) => {
                return Err((
                    "vanish_after_pdus",
                    "0 PDUs: a device that is never on the air needs no fault (use power_on_s)"
                        .into(),
                ));
            }
            (None, Some(n)) => Some(VanishTrigger::AfterPdus(n)),
            (None, None) => None,
        };
        let back_after = match self.return_after_s {
            None => None,
            Some(_) if vanish.is_none() => {
                return Err((
                    "return_after_s",
                    "needs vanish_at or vanish_after_pdus".into(),
                ));
            }
            Some(s) if (1..=86_400).contains(&s) => Some(Duration::from_secs(s)),
            Some(s) => {
                return Err((
                    "return_after_s",
                    format!("{s} is not in 1..=86400 (seconds)"),
                ));
            }
        };
        f.vanish = vanish.map(|trigger| Vanish {
            trigger,
            back_after,
        });
        if let Some(ms) = self.late_ms {
            if ms > MAX_LATE_MS {
                return Err((
                    "late_ms",
                    format!("{ms} is not in 0..={MAX_LATE_MS} (milliseconds)"),
                ));
            }
            f.late = Duration::from_millis(ms);
        }
        match (self.fail_at, self.fail_code) {
            (None, Some(_)) => return Err(("fail_code", "needs fail_at".into())),
            (None, None) => {}
            (Some(at), code) => {
                let step = Step::parse(&at).map_err(|m| ("fail_at", m))?;
                let code = match code {
                    None => FailedCode::UNEXPECTED_ERROR,
                    Some(v) => failed_code(&v).map_err(|m| ("fail_code", m))?,
                };
                f.fail = Some((step, code));
            }
        }
        for name in self.reflect.iter().flatten() {
            match name.as_str() {
                "public-key" => f.reflect.public_key = true,
                "confirmation" => f.reflect.confirmation = true,
                "random" => f.reflect.random = true,
                other => {
                    return Err((
                        "reflect",
                        format!("unknown value '{other}' (public-key, confirmation, random)"),
                    ));
                }
            }
        }
        if self.reflect.as_ref().is_some_and(Vec::is_empty) {
            return Err((
                "reflect",
                "name at least one of public-key, confirmation, random".into(),
            ));
        }
        if f.reflect.public_key && public_key_oob {
            return Err((
                "reflect",
                "a device that offers its public key out of band sends none to reflect: remove \"public-key\" or public_key_oob".into(),
            ));
        }
        match (self.garbage_at, self.garbage, self.garbage_fcs) {
            (None, None, None) => {}
            (None, _, _) => {
                return Err((
                    "garbage_at",
                    "garbage and garbage_fcs need garbage_at (the step it answers)".into(),
                ));
            }
            (Some(at), kind, fcs) => {
                let at = Step::parse(&at).map_err(|m| ("garbage_at", m))?;
                let kind = match kind.as_deref() {
                    None | Some("random") => GarbageKind::Random,
                    Some("malformed") => GarbageKind::Malformed,
                    Some(other) => {
                        return Err((
                            "garbage",
                            format!("unknown kind '{other}' (random, malformed)"),
                        ));
                    }
                };
                let valid_fcs = match fcs.as_deref() {
                    None | Some("valid") => true,
                    Some("invalid") => false,
                    Some(other) => {
                        return Err((
                            "garbage_fcs",
                            format!("unknown value '{other}' (valid, invalid)"),
                        ));
                    }
                };
                f.garbage = Some(Garbage {
                    at,
                    kind,
                    valid_fcs,
                });
            }
        }
        let kinds = [
            f.vanish.is_some(),
            f.fail.is_some(),
            f.reflect.any(),
            f.garbage.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            return Err((
                "fault",
                "give one of vanish_at / vanish_after_pdus, fail_at, reflect, garbage_at per device (late_ms combines with any)".into(),
            ));
        }
        Ok(f)
    }
}

/// A `fail_code`: a name of [`FAILED_CODE_NAMES`] or a number 0x01–0xFF.
fn failed_code(v: &toml::Value) -> Result<FailedCode, String> {
    let names = || {
        FAILED_CODE_NAMES
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match v {
        toml::Value::String(s) => FAILED_CODE_NAMES
            .iter()
            .find(|(n, _)| n == s)
            .map(|(_, c)| *c)
            .ok_or_else(|| format!("unknown code '{s}' (use {}, or a number)", names())),
        toml::Value::Integer(n) => u8::try_from(*n)
            .ok()
            .filter(|n| *n != 0)
            .map(FailedCode)
            .ok_or_else(|| format!("{n} is not in 1..=255 (0x00 is prohibited)")),
        other => Err(format!(
            "expected a code name ({}) or a number, found {}",
            names(),
            other.type_str()
        )),
    }
}

/// What a device's faults have done so far. It outlives a session: the rollout driver's
/// restart of a device after a failed attempt carries it over.
#[derive(Debug)]
pub struct FaultState {
    faults: DeviceFaults,
    /// PB-ADV PDUs (or GATT segments) put on air since it was switched on.
    pdus_sent: u32,
    /// It has vanished (and come back, or not): it does not vanish again.
    vanished: bool,
    /// Off: `Some(None)` for good, `Some(Some(t))` until `t`.
    off: Option<Option<Instant>>,
    /// The provisioner's values of this session, for reflection: Public Key, Confirmation,
    /// Random (parameters only).
    theirs: [Option<Vec<u8>>; 3],
    /// The session is abandoned after a Provisioning Failed or garbage answer: PDUs are
    /// ignored until the next session.
    refused: bool,
    /// A garbage transaction whose FCS goes out wrong: its Total Length and right FCS.
    corrupt: Option<(u16, u8)>,
    rng: ChaCha20Rng,
}

/// What a device does with a provisioning PDU that arrived, once its faults had their say.
#[derive(Debug, PartialEq, Eq)]
pub enum Intercept {
    /// Handle it as a healthy device would.
    Pass,
    /// Drop it.
    Drop,
    /// Drop it and send this PDU instead (Provisioning Failed or garbage).
    Answer(Vec<u8>),
    /// Drop it: the device loses power now.
    Vanish,
}

impl FaultState {
    /// The state of a device with `faults`, its random choices from `seed`.
    pub fn new(faults: DeviceFaults, seed: u64) -> Self {
        Self {
            faults,
            pdus_sent: 0,
            vanished: false,
            off: None,
            theirs: [None, None, None],
            refused: false,
            corrupt: None,
            rng: ChaCha20Rng::seed_from_u64(seed ^ 0x6661_756c_7473),
        }
    }

    /// The faults.
    pub fn faults(&self) -> &DeviceFaults {
        &self.faults
    }

    /// A new session starts (the device was restarted): what the last one saw is forgotten.
    pub fn new_session(&mut self) {
        self.theirs = [None, None, None];
        self.refused = false;
        self.corrupt = None;
    }

    /// Whether the device is off (it vanished and [`FaultState::wake`] has not brought it
    /// back yet).
    pub fn powered_off(&self) -> bool {
        self.off.is_some()
    }

    /// Whether the device has vanished at some point.
    pub fn has_vanished(&self) -> bool {
        self.vanished
    }

    /// When it comes back, while it is off for a while.
    pub fn back_at(&self) -> Option<Instant> {
        self.off.flatten()
    }

    /// Comes back on if its time has come; returns whether it just did.
    pub fn wake(&mut self, now: Instant) -> bool {
        if let Some(Some(t)) = self.off
            && now >= t
        {
            self.off = None;
            self.new_session();
            return true;
        }
        false
    }

    /// The device loses power at `now`.
    pub fn vanish(&mut self, now: Instant) {
        self.vanished = true;
        let back = self
            .faults
            .vanish
            .and_then(|v| v.back_after)
            .map(|d| now + d);
        self.off = Some(back);
        self.new_session();
    }

    /// How long the device waits before it answers a PDU.
    pub fn late(&self) -> Duration {
        self.faults.late
    }

    /// A provisioning PDU from the provisioner arrives.
    pub fn received(&mut self, pdu: &[u8]) -> Intercept {
        if self.refused {
            return Intercept::Drop;
        }
        let Some(ty) = pdu.first().map(|t| PduType(t & 0x3f)) else {
            return Intercept::Pass;
        };
        let params = pdu.get(1..).unwrap_or_default().to_vec();
        match ty {
            PduType::PUBLIC_KEY => self.theirs[0] = Some(params),
            PduType::CONFIRMATION => self.theirs[1] = Some(params),
            PduType::RANDOM => self.theirs[2] = Some(params),
            _ => {}
        }
        if let Some(v) = self.faults.vanish
            && !self.vanished
            && let Some(step) = step_of(ty)
            && v.trigger == VanishTrigger::At(step)
        {
            return Intercept::Vanish;
        }
        if let Some((step, code)) = self.faults.fail
            && step.pdu_type() == ty
        {
            self.refused = true;
            return Intercept::Answer(vec![PduType::FAILED.0, code.0]);
        }
        if let Some(g) = self.faults.garbage
            && g.at.pdu_type() == ty
        {
            self.refused = true;
            let pdu = self.garbage(g);
            if !g.valid_fcs {
                // The Total Length fits: garbage is at most 65 octets.
                self.corrupt = Some((pdu.len() as u16, fcs(&pdu)));
            }
            return Intercept::Answer(pdu);
        }
        Intercept::Pass
    }

    fn garbage(&mut self, g: Garbage) -> Vec<u8> {
        match g.kind {
            GarbageKind::Random => {
                let len = 1 + (self.rng.next_u32() % 64) as usize;
                let mut out = vec![0u8; len];
                self.rng.fill_bytes(&mut out);
                out
            }
            GarbageKind::Malformed => {
                let (ty, right) = g.at.answer();
                // A wrong length of 0..=64 octets of parameters.
                let len = loop {
                    let n = (self.rng.next_u32() % 65) as usize;
                    if !right.contains(&n) {
                        break n;
                    }
                };
                let mut out = vec![0u8; 1 + len];
                out[0] = ty.0;
                self.rng.fill_bytes(&mut out[1..]);
                out
            }
        }
    }

    /// A provisioning PDU the device is about to send: a reflected value replaces its own.
    pub fn outgoing(&self, mut pdu: Vec<u8>) -> Vec<u8> {
        let r = self.faults.reflect;
        let slot = match pdu.first().map(|t| PduType(t & 0x3f)) {
            Some(PduType::PUBLIC_KEY) if r.public_key => 0,
            Some(PduType::CONFIRMATION) if r.confirmation => 1,
            Some(PduType::RANDOM) if r.random => 2,
            _ => return pdu,
        };
        if let Some(theirs) = &self.theirs[slot]
            && theirs.len() + 1 == pdu.len()
        {
            pdu.truncate(1);
            pdu.extend_from_slice(theirs);
        }
        pdu
    }

    /// A PB-ADV payload about to go on air: the Transaction Start of a garbage transaction
    /// with a bad FCS gets it.
    pub fn on_air(&self, payload: Vec<u8>) -> Vec<u8> {
        let Some((total_length, right)) = self.corrupt else {
            return payload;
        };
        let Ok(mut p) = PbAdvPdu::parse(&payload) else {
            return payload;
        };
        match &mut p.pdu {
            GenericProvisioningPdu::TransactionStart(s)
                if s.total_length == total_length && s.fcs == right =>
            {
                s.fcs = right ^ 0x5a;
            }
            _ => return payload,
        }
        let mut out = Vec::with_capacity(payload.len());
        p.emit(&mut out);
        out
    }

    /// The device put one PDU on air; returns whether it vanishes now.
    pub fn sent_one(&mut self) -> bool {
        self.pdus_sent = self.pdus_sent.saturating_add(1);
        matches!(
            self.faults.vanish,
            Some(Vanish { trigger: VanishTrigger::AfterPdus(n), .. }) if !self.vanished && self.pdus_sent >= n
        )
    }
}

/// The step a PDU type from the provisioner marks.
fn step_of(ty: PduType) -> Option<Step> {
    STEP_NAMES
        .iter()
        .map(|(_, s)| *s)
        .find(|s| s.pdu_type() == ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawFault {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn tables_parse_and_bad_ones_say_why() {
        let f = raw("vanish_at = \"confirmation\"\nreturn_after_s = 90\nlate_ms = 2000")
            .check(false)
            .unwrap();
        assert_eq!(
            f.vanish,
            Some(Vanish {
                trigger: VanishTrigger::At(Step::Confirmation),
                back_after: Some(Duration::from_secs(90))
            })
        );
        assert_eq!(f.late, Duration::from_millis(2000));
        let f = raw("fail_at = \"start\"\nfail_code = \"out-of-resources\"")
            .check(false)
            .unwrap();
        assert_eq!(f.fail, Some((Step::Start, FailedCode::OUT_OF_RESOURCES)));
        let f = raw("fail_at = \"invite\"\nfail_code = 0x0c")
            .check(false)
            .unwrap();
        assert_eq!(f.fail, Some((Step::Invite, FailedCode(0x0c))));
        let f = raw("garbage_at = \"random\"\ngarbage = \"malformed\"\ngarbage_fcs = \"invalid\"")
            .check(false)
            .unwrap();
        assert_eq!(
            f.garbage,
            Some(Garbage {
                at: Step::Random,
                kind: GarbageKind::Malformed,
                valid_fcs: false
            })
        );
        assert!(raw("").check(false).unwrap().is_none());
        for (text, field, expected) in [
            ("vanish_at = \"lunch\"", "vanish_at", "unknown step 'lunch'"),
            (
                "vanish_at = \"data\"\nvanish_after_pdus = 3",
                "vanish_at",
                "not both",
            ),
            ("vanish_after_pdus = 0", "vanish_after_pdus", "0 PDUs"),
            ("return_after_s = 5", "return_after_s", "needs vanish_at"),
            (
                "vanish_at = \"data\"\nreturn_after_s = 0",
                "return_after_s",
                "1..=86400",
            ),
            ("late_ms = 600001", "late_ms", "0..=600000"),
            ("fail_code = 4", "fail_code", "needs fail_at"),
            (
                "fail_at = \"data\"\nfail_code = 0",
                "fail_code",
                "prohibited",
            ),
            (
                "fail_at = \"data\"\nfail_code = \"oops\"",
                "fail_code",
                "unknown code 'oops'",
            ),
            (
                "fail_at = \"data\"\nfail_code = 1.5",
                "fail_code",
                "found float",
            ),
            (
                "reflect = [\"address\"]",
                "reflect",
                "unknown value 'address'",
            ),
            ("reflect = []", "reflect", "at least one"),
            ("garbage = \"random\"", "garbage_at", "need garbage_at"),
            (
                "garbage_at = \"invite\"\ngarbage = \"noise\"",
                "garbage",
                "unknown kind",
            ),
            (
                "garbage_at = \"invite\"\ngarbage_fcs = \"maybe\"",
                "garbage_fcs",
                "valid, invalid",
            ),
            (
                "fail_at = \"invite\"\nreflect = [\"random\"]",
                "fault",
                "give one of",
            ),
        ] {
            let (f, m) = raw(text).check(false).unwrap_err();
            assert_eq!(f, field, "{text}");
            assert!(m.contains(expected), "{text}: {m}");
        }
        let (f, m) = raw("reflect = [\"public-key\"]").check(true).unwrap_err();
        assert_eq!(f, "reflect");
        assert!(m.contains("out of band"), "{m}");
        assert!(
            toml::from_str::<RawFault>("vanish = true").is_err(),
            "unknown key"
        );
    }

    fn state(text: &str) -> FaultState {
        FaultState::new(raw(text).check(false).unwrap(), 7)
    }

    #[test]
    fn vanishing_at_a_step_and_coming_back() {
        let mut s = state("vanish_at = \"public-key\"\nreturn_after_s = 10");
        assert_eq!(s.received(&[0x00, 0x00]), Intercept::Pass, "Invite");
        assert_eq!(s.received(&[0x03; 65]), Intercept::Vanish);
        let t = Instant::from_millis(1000);
        s.vanish(t);
        assert!(s.powered_off() && s.has_vanished());
        assert_eq!(s.back_at(), Some(t + Duration::from_secs(10)));
        assert!(!s.wake(t + Duration::from_secs(9)));
        assert!(s.powered_off());
        assert!(s.wake(t + Duration::from_secs(10)));
        assert!(!s.powered_off());
        assert_eq!(s.received(&[0x03; 65]), Intercept::Pass, "only once");
        let mut s = state("vanish_after_pdus = 3");
        assert!(!s.sent_one() && !s.sent_one());
        assert!(s.sent_one());
        s.vanish(t);
        assert!(
            !s.wake(t + Duration::from_secs(100_000)) && s.powered_off(),
            "for good"
        );
        assert!(!s.sent_one(), "only once");
    }

    #[test]
    fn failed_and_garbage_answers_end_the_session() {
        let mut s = state("fail_at = \"confirmation\"\nfail_code = \"confirmation-failed\"");
        assert_eq!(s.received(&[0x00, 0x05]), Intercept::Pass);
        assert_eq!(s.received(&[0x05; 17]), Intercept::Answer(vec![0x09, 0x04]));
        assert_eq!(s.received(&[0x06; 17]), Intercept::Drop, "ignored after");
        s.new_session();
        assert_eq!(s.received(&[0x05; 17]), Intercept::Answer(vec![0x09, 0x04]));
        for _ in 0..50 {
            let mut s = state("garbage_at = \"invite\"\ngarbage = \"malformed\"");
            let Intercept::Answer(p) = s.received(&[0x00, 0x05]) else {
                panic!("no garbage")
            };
            assert_eq!(p[0], 0x01, "Capabilities");
            assert_ne!(p.len(), 12, "a wrong length");
            assert!(crate::wire::ProvisioningPdu::parse(&p).is_err());
        }
        let mut s = state("garbage_at = \"invite\"");
        let Intercept::Answer(p) = s.received(&[0x00, 0x05]) else {
            panic!("no garbage")
        };
        assert!((1..=64).contains(&p.len()));
        assert_eq!(
            s.on_air(vec![1, 2, 3]),
            vec![1, 2, 3],
            "valid FCS: untouched"
        );
    }

    #[test]
    fn a_bad_fcs_goes_on_the_garbage_transaction_only() {
        let mut s = state("garbage_at = \"invite\"\ngarbage_fcs = \"invalid\"");
        let Intercept::Answer(p) = s.received(&[0x00, 0x05]) else {
            panic!("no garbage")
        };
        let segments = crate::wire::pb_adv::segment(&p).unwrap();
        let mut start = Vec::new();
        PbAdvPdu {
            link_id: 9,
            transaction_number: 0x80,
            pdu: segments[0].clone(),
        }
        .emit(&mut start);
        let sent = PbAdvPdu::parse(&s.on_air(start.clone())).unwrap();
        let GenericProvisioningPdu::TransactionStart(t) = sent.pdu else {
            panic!("not a start")
        };
        assert_eq!(t.fcs, fcs(&p) ^ 0x5a);
        let mut other = Vec::new();
        PbAdvPdu {
            link_id: 9,
            transaction_number: 0x81,
            pdu: crate::wire::pb_adv::segment(&[0x08]).unwrap()[0].clone(),
        }
        .emit(&mut other);
        assert_eq!(s.on_air(other.clone()), other, "another transaction");
    }

    #[test]
    fn reflection_swaps_in_the_provisioners_value() {
        let mut s = state("reflect = [\"confirmation\", \"random\"]");
        let theirs: Vec<u8> = std::iter::once(0x05).chain(1..=16).collect();
        assert_eq!(s.received(&theirs), Intercept::Pass);
        let ours = vec![0x05; 17];
        assert_eq!(s.outgoing(ours), theirs);
        let pk = vec![0x03; 65];
        assert_eq!(s.outgoing(pk.clone()), pk, "not reflected");
        let random = vec![0x06; 17];
        assert_eq!(
            s.outgoing(random.clone()),
            random,
            "nothing received to reflect"
        );
    }
}
