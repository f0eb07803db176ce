//! Misbehaving virtual devices (`[device.fault]`, `sim::fault`) against the provisioner, one
//! session each, no loss: each fault ends the session the way the specification asks, and the
//! provisioner names the exact error — reflected values refused (MshPRT v1.1 §5.4.2.3,
//! CVE-2020-26560), Provisioning Failed with its code, malformed answers, a bad FCS dropped
//! by the bearer, a device that vanishes or answers later than the protocol timer, and one
//! that is late within it. The same faults in a whole rollout, with retries and a radio
//! blackout, are `tests/soak.rs`.

use std::time::Duration;

use meshprov::provisioning::{AuthPolicy, Direction, Fault, ProvisionerConfig, ProvisioningError};
use meshprov::sim::building::Building;
use meshprov::sim::node::DeviceState;
use meshprov::sim::run::{self, DeviceResult, MemorySink, RunOptions};
use meshprov::wire::{FailedCode, PduType};

const STATIC: &str = "00112233445566778899aabbccddeeff";

/// The faults under test, one device each (`[device.fault]` lines; empty: healthy).
const CASES: [(&str, &str); 17] = [
    ("healthy", ""),
    ("reflect-public-key", "reflect = [\"public-key\"]"),
    ("reflect-confirmation", "reflect = [\"confirmation\"]"),
    ("reflect-random", "reflect = [\"random\"]"),
    (
        "failed-out-of-resources",
        "fail_at = \"public-key\"\nfail_code = \"out-of-resources\"",
    ),
    ("failed-rfu", "fail_at = \"invite\"\nfail_code = 0x0c"),
    ("garbage-random", "garbage_at = \"invite\""),
    (
        "garbage-malformed",
        "garbage_at = \"confirmation\"\ngarbage = \"malformed\"",
    ),
    (
        "garbage-bad-fcs",
        "garbage_at = \"invite\"\ngarbage_fcs = \"invalid\"",
    ),
    ("vanish-at-confirmation", "vanish_at = \"confirmation\""),
    ("vanish-after-pdus", "vanish_after_pdus = 4"),
    ("vanish-at-data", "vanish_at = \"data\""),
    (
        "vanish-and-return",
        "vanish_at = \"invite\"\nreturn_after_s = 20",
    ),
    ("late-within", "late_ms = 5000"),
    ("late-beyond", "late_ms = 70000"),
    ("late-gatt", "late_ms = 2000"),
    (
        "refused-data",
        "fail_at = \"data\"\nfail_code = \"cannot-assign-addresses\"",
    ),
];

fn building() -> Building {
    let mut text = String::new();
    for (i, (_, fault)) in CASES.iter().enumerate() {
        text += &format!(
            "[[device]]\nuuid = \"7b2c1a90-0000-4000-8000-{i:012x}\"\nstatic_oob = \"{STATIC}\"\necdh_ms = 20\n"
        );
        if !fault.is_empty() {
            text += &format!("[device.fault]\n{fault}\n");
        }
    }
    Building::parse(&text, "faults.toml").unwrap()
}

fn run_all(gatt: bool) -> (Vec<DeviceResult>, MemorySink) {
    let b = building();
    let opts = RunOptions {
        config: ProvisionerConfig {
            auth: AuthPolicy::Static(hex::decode(STATIC).unwrap()),
            ..ProvisionerConfig::default()
        },
        bearer: if gatt {
            run::BearerChoice::Gatt
        } else {
            run::BearerChoice::Adv
        },
        seed: 11,
        loss: Some(0.0),
        ..RunOptions::default()
    };
    let targets: Vec<_> = b.devices.iter().map(|d| d.uuid).collect();
    let mut sink = MemorySink::default();
    let report = run::run(&b, &targets, &opts, &mut sink).unwrap();
    (report.results, sink)
}

fn result<'a>(results: &'a [DeviceResult], name: &str) -> &'a DeviceResult {
    let i = CASES.iter().position(|(n, _)| *n == name).unwrap();
    &results[i]
}

fn error(r: &DeviceResult) -> &ProvisioningError {
    match &r.outcome {
        Ok(_) => panic!("{} was provisioned", r.uuid),
        Err(e) => e,
    }
}

fn unprovisioned(r: &DeviceResult) -> bool {
    matches!(r.device_state, DeviceState::Unprovisioned)
}

#[test]
fn each_fault_ends_the_session_as_the_specification_asks() {
    let (results, sink) = run_all(false);
    let healthy = result(&results, "healthy");
    assert!(healthy.outcome.is_ok(), "{:?}", healthy.outcome);
    assert!(matches!(
        healthy.device_state,
        DeviceState::Provisioned { .. }
    ));

    // Reflections are refused by name, before any key is derived from them (§5.4.2.3,
    // CVE-2020-26560), and are the peer's fault.
    for (name, expected) in [
        ("reflect-public-key", ProvisioningError::ReflectedPublicKey),
        (
            "reflect-confirmation",
            ProvisioningError::ReflectedConfirmation,
        ),
        ("reflect-random", ProvisioningError::ReflectedRandom),
    ] {
        let r = result(&results, name);
        assert_eq!(error(r), &expected, "{name}");
        assert!(unprovisioned(r), "{name}");
        assert!(
            error(r).user_message().contains("possible attack"),
            "{name}: {}",
            error(r).user_message()
        );
    }

    // Provisioning Failed, with its code (an RFU one too), reported with the code.
    let r = result(&results, "failed-out-of-resources");
    assert_eq!(
        error(r),
        &ProvisioningError::FailedReceived(FailedCode::OUT_OF_RESOURCES)
    );
    assert!(
        error(r).user_message().contains("(0x05)"),
        "{}",
        error(r).user_message()
    );
    let r = result(&results, "failed-rfu");
    assert_eq!(
        error(r),
        &ProvisioningError::FailedReceived(FailedCode(0x0c))
    );
    assert!(error(r).user_message().contains("RFU (0x0c)"));

    // Garbage with a valid FCS reaches the state machine: the peer's fault, at once.
    let r = result(&results, "garbage-random");
    assert_eq!(error(r).fault(), Fault::Peer, "{:?}", error(r));
    assert!(unprovisioned(r));
    let r = result(&results, "garbage-malformed");
    assert!(
        matches!(error(r), ProvisioningError::Malformed(_)),
        "{:?}",
        error(r)
    );
    assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);
    // A bad FCS never gets past the bearer (§5.3.3): nothing is acknowledged, the device's
    // transaction times out after 30 s and it closes the link.
    let r = result(&results, "garbage-bad-fcs");
    assert_eq!(error(r).fault(), Fault::Link, "{:?}", error(r));
    assert!(r.elapsed >= Duration::from_secs(30), "{:?}", r.elapsed);
    assert!(unprovisioned(r));

    // Vanished devices: the link's fault, after the bearer's or the protocol's timer.
    for name in [
        "vanish-at-confirmation",
        "vanish-after-pdus",
        "vanish-and-return",
    ] {
        let r = result(&results, name);
        assert_eq!(error(r).fault(), Fault::Link, "{name}: {:?}", error(r));
        assert!(
            r.elapsed >= Duration::from_secs(30),
            "{name}: {:?}",
            r.elapsed
        );
        assert!(unprovisioned(r), "{name}");
    }
    // It vanished when the Confirmation arrived: it never received it.
    let r = result(&results, "vanish-at-confirmation");
    assert!(
        r.device_transcript
            .iter()
            .all(|e| e.pdu_type != Some(PduType::CONFIRMATION)),
        "{:?}",
        r.device_transcript
    );
    // Four PB-ADV PDUs: Link ACK, acknowledgments and Capabilities; never its Public Key.
    let r = result(&results, "vanish-after-pdus");
    assert!(
        !r.device_transcript
            .iter()
            .any(|e| e.direction == Direction::Sent && e.pdu_type == Some(PduType::PUBLIC_KEY)),
        "{:?}",
        r.device_transcript
    );
    // Vanished when its Provisioning Data arrived: the node was committed first (the store's
    // write-ahead rule), and the device holds no key.
    let r = result(&results, "vanish-at-data");
    assert_eq!(error(r).fault(), Fault::Link, "{:?}", error(r));
    assert!(unprovisioned(r));
    assert!(sink.records.iter().any(|n| n.uuid == r.uuid), "committed");
    assert!(!sink.confirmed.contains(&r.uuid), "never confirmed");

    // Late: within the 60 s protocol timer it is provisioned, after five answers of 5 s each
    // (Capabilities, Public Key, Confirmation, Random, Complete); beyond it the session times
    // out.
    let r = result(&results, "late-within");
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    assert!(r.elapsed >= Duration::from_secs(25), "{:?}", r.elapsed);
    assert!(
        healthy.elapsed < Duration::from_secs(10),
        "{:?}",
        healthy.elapsed
    );
    let r = result(&results, "late-beyond");
    assert_eq!(error(r), &ProvisioningError::Timeout);
    assert!(unprovisioned(r));

    // Refused its Provisioning Data with Provisioning Failed (§5.4.4): it holds no key, so
    // the node committed before the Data was voided at once (not kept as if its Complete were
    // lost), and the line names the code and the retired address.
    let r = result(&results, "refused-data");
    assert_eq!(
        error(r),
        &ProvisioningError::DataRefused(FailedCode::CANNOT_ASSIGN_ADDRESSES)
    );
    assert!(unprovisioned(r));
    assert!(
        !sink.records.iter().any(|n| n.uuid == r.uuid),
        "no commit left"
    );
    let (_, address, elements) = *sink.voided.iter().find(|v| v.0 == r.uuid).expect("voided");
    assert_eq!(r.voided, Some((address, elements)));
    let m = meshprov::host::failure_message(error(r), r.voided);
    assert!(
        m.contains("(0x08)") && m.contains(&format!("0x{address:04x} is retired")),
        "{m}"
    );
    // The other failures had nothing to void.
    assert_eq!(sink.voided.len(), 1);
    assert!(result(&results, "vanish-at-data").voided.is_none());
}

#[test]
fn faults_work_on_pb_gatt_too() {
    let (results, _) = run_all(true);
    assert!(result(&results, "healthy").outcome.is_ok());
    assert!(result(&results, "late-gatt").outcome.is_ok());
    assert_eq!(
        error(result(&results, "reflect-confirmation")),
        &ProvisioningError::ReflectedConfirmation
    );
    assert_eq!(
        error(result(&results, "failed-out-of-resources")),
        &ProvisioningError::FailedReceived(FailedCode::OUT_OF_RESOURCES)
    );
    assert!(matches!(
        error(result(&results, "garbage-malformed")),
        ProvisioningError::Malformed(_)
    ));
    // No FCS on PB-GATT: the garbage arrives as it is.
    assert_eq!(
        error(result(&results, "garbage-bad-fcs")).fault(),
        Fault::Peer
    );
    let r = result(&results, "vanish-at-confirmation");
    assert_eq!(error(r), &ProvisioningError::Timeout);
    let r = result(&results, "refused-data");
    assert_eq!(
        error(r),
        &ProvisioningError::DataRefused(FailedCode::CANNOT_ASSIGN_ADDRESSES)
    );
    assert!(r.voided.is_some() && unprovisioned(r));
}

/// Counts the simulated driver's steps at one instant: a run whose virtual time stops moving
/// calls `pace` forever at the same `now`. After 100,000 such calls it ends the run.
#[derive(Default)]
struct SpinGuard {
    events: meshprov::rollout::Collect,
    last: Option<meshprov::time::Instant>,
    same: u64,
    spun: bool,
}

impl meshprov::rollout::Observer for SpinGuard {
    fn event(&mut self, e: &meshprov::rollout::RolloutEvent) {
        self.events.event(e);
    }

    fn pace(
        &mut self,
        now: meshprov::time::Instant,
        next: Option<meshprov::time::Instant>,
    ) -> Option<meshprov::time::Instant> {
        if self.last == Some(now) {
            self.same += 1;
        } else {
            (self.last, self.same) = (Some(now), 0);
        }
        if self.same > 100_000 {
            self.spun = true;
            return None;
        }
        next
    }
}

/// Regression (found by the 2,000-device soak): an Output OOB session that ended — here its
/// 10 s time limit — while the simulated installer was still about to read the value left
/// the installer's instant in the past; the driver kept waking up for it without moving
/// virtual time, and the rollout never ended.
#[test]
fn a_session_that_ends_before_the_installer_reads_the_value_does_not_stop_time() {
    use meshprov::rollout::sim_driver::{self, SimOptions};
    use meshprov::rollout::{self, EventKind, Plan, SharedStore, Stage};
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::SeedableRng;

    let dir = tempfile::tempdir().unwrap();
    let uuid = "7b2c1a90-0000-4000-8000-000000000077";
    // Capabilities after 4 s, its Public Key 4 s after the provisioner's: the installer would
    // read the value at about 11.4 s, after the 10 s limit.
    std::fs::write(
        dir.path().join("building.toml"),
        format!(
            "[[device]]\nuuid = \"{uuid}\"\noutput_oob = {{ size = 4, actions = [\"numeric\"] }}\n[device.fault]\nlate_ms = 4000\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("plan.toml"),
        format!(
            "[network]\nname = \"spin\"\nstore = \"network.db\"\n[provisioner]\nunicast_ranges = [\"0001-00FF\"]\n[policy]\nauth = [\"output\"]\nretries = 1\nprovision_timeout_s = 10\n[templates.t]\ndefault_ttl = 5\n[[device]]\nuuid = \"{uuid}\"\nauth = \"output\"\ntemplate = \"t\"\n"
        ),
    )
    .unwrap();
    let plan = Plan::load(&dir.path().join("plan.toml")).unwrap();
    let building =
        meshprov::sim::building::Building::load(&dir.path().join("building.toml")).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let store = rollout::open_store(&plan, &mut rng).unwrap();
    let store: SharedStore = std::rc::Rc::new(std::cell::RefCell::new(store));
    let prepared = rollout::prepare(&plan, &mut store.borrow_mut(), &mut rng).unwrap();
    let mut guard = SpinGuard::default();
    let opts = SimOptions {
        seed: 4,
        loss: Some(0.0),
        ..SimOptions::default()
    };
    let out = sim_driver::run(&plan, &building, store, &prepared, &opts, &mut guard).unwrap();
    assert!(
        !guard.spun,
        "virtual time stopped at {:?}",
        guard.last.unwrap()
    );
    // Both attempts asked the installer and ran out of time; then the device failed.
    let asked = guard
        .events
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::OobRequested { .. }))
        .count();
    assert_eq!(asked, 2);
    let d = &out.report.devices[0];
    assert_eq!(d.stage, Stage::Failed);
    assert!(!out.report.summary.stopped);
}

/// Found by the soak (README "Soak and fault runs"): a device that answers its Provisioning
/// Data with Provisioning Failed took no key (MshPRT v1.1 §5.4.4), yet the rollout treated it
/// as a lost Provisioning Complete — retried it, one more retired address range per attempt,
/// and left an `unconfirmed` node that the next run configured. Now the commit is voided at
/// once (addresses retired, journal `unconfirmed-void` with the code), the device fails with
/// the code and is not retried, and a rerun provisions it afresh.
#[test]
fn a_device_that_refuses_its_provisioning_data_is_voided_at_once_and_provisioned_afresh_later() {
    use meshprov::rollout::{self, EventKind, Plan, Stage};
    use meshprov::store::{NodeState, StoreError};
    use meshprov::uuid::DeviceUuid;

    const HEALTHY: &str = "7b2c1a90-0000-4000-8000-0000000000a1";
    const ADDRESSES: &str = "7b2c1a90-0000-4000-8000-0000000000a2";
    const UNEXPECTED: &str = "7b2c1a90-0000-4000-8000-0000000000a3";
    let dir = tempfile::tempdir().unwrap();
    let device = |uuid: &str, fault: &str| {
        let mut d = format!(
            "[[device]]\nuuid = \"{uuid}\"\nstatic_oob = \"{STATIC}\"\necdh_ms = 20\nelements = 2\n"
        );
        if !fault.is_empty() {
            d += &format!("[device.fault]\nfail_at = \"data\"\nfail_code = \"{fault}\"\n");
        }
        d
    };
    let faulty = [
        device(HEALTHY, ""),
        device(ADDRESSES, "cannot-assign-addresses"),
        device(UNEXPECTED, "unexpected-error"),
    ]
    .concat();
    let mended = [
        device(HEALTHY, ""),
        device(ADDRESSES, ""),
        device(UNEXPECTED, ""),
    ]
    .concat();
    let mut plan_text = String::from(
        "[network]\nname = \"refusals\"\nstore = \"network.db\"\n[provisioner]\nunicast_ranges = [\"0001-00FF\"]\n[policy]\nauth = [\"static\"]\nretries = 3\nbackoff_ms = 1000\n[templates.t]\ndefault_ttl = 5\n",
    );
    for uuid in [HEALTHY, ADDRESSES, UNEXPECTED] {
        plan_text += &format!(
            "[[device]]\nuuid = \"{uuid}\"\nauth = \"static:{STATIC}\"\ntemplate = \"t\"\n"
        );
    }
    std::fs::write(dir.path().join("plan.toml"), plan_text).unwrap();
    let plan = Plan::load(&dir.path().join("plan.toml")).unwrap();
    let run = |building: &str, seed: u64| rollout_on_sim(&plan, building, seed);
    let of = |events: &[rollout::RolloutEvent], uuid: &str| -> Vec<EventKind> {
        events
            .iter()
            .filter(|e| e.uuid.as_deref() == Some(uuid))
            .map(|e| e.kind.clone())
            .collect()
    };
    let uuid = |s: &str| s.parse::<DeviceUuid>().unwrap();

    // First run: both refusers fail at once, with their code, on their first attempt.
    let (out, events, store) = run(&faulty, 21);
    let status = |uuid: &str| {
        out.report
            .devices
            .iter()
            .find(|d| d.uuid.to_string() == uuid)
            .unwrap()
            .clone()
    };
    assert_eq!(status(HEALTHY).stage, Stage::Done);
    let mut retired = Vec::new();
    for (id, code, words) in [
        (ADDRESSES, "(0x08)", "Cannot Assign Addresses (0x08)"),
        (UNEXPECTED, "(0x07)", "Unexpected Error (0x07)"),
    ] {
        let d = status(id);
        assert_eq!(d.stage, Stage::Failed, "{id}");
        assert_eq!(d.attempt, 1, "{id}: a refusal is not retried");
        let reason = d.last_error.clone().unwrap();
        assert!(
            reason.contains("refused its Provisioning Data")
                && reason.contains(code)
                && reason.contains("retired"),
            "{id}: {reason}"
        );
        let ev = of(&events, id);
        assert!(
            !ev.iter().any(|k| matches!(
                k,
                EventKind::Retrying { .. } | EventKind::Provisioned { .. }
            )),
            "{id}: {ev:?}"
        );
        assert_eq!(
            ev.iter()
                .filter(|k| matches!(k, EventKind::Failed { .. }))
                .count(),
            1,
            "{id}"
        );
        // The store: no node (not even unconfirmed), and one journal line with the code.
        let s = store.borrow();
        assert!(
            matches!(s.node_by_uuid(&uuid(id)), Err(StoreError::NoSuchNode(_))),
            "{id}"
        );
        let voids: Vec<_> = s
            .journal()
            .unwrap()
            .into_iter()
            .filter(|j| j.uuid == Some(uuid(id)) && j.event == "unconfirmed-void")
            .collect();
        assert_eq!(voids.len(), 1, "{id}: one commit, voided once: {voids:?}");
        let detail = &voids[0].detail;
        assert!(
            detail.contains(&format!("Provisioning Failed: {words}")),
            "{detail}"
        );
        // "addresses 0003-0004 retired: ..."
        let range = detail
            .strip_prefix("addresses ")
            .and_then(|d| d.split(' ').next())
            .unwrap();
        let (first, last) = range.split_once('-').unwrap();
        let first = u16::from_str_radix(first, 16).unwrap();
        assert_eq!(u16::from_str_radix(last, 16).unwrap(), first + 1);
        assert!(
            reason.contains(&format!("0x{first:04x}-0x{:04x}", first + 1)),
            "{reason}"
        );
        retired.push(first);
    }
    {
        let s = store.borrow();
        let nodes = s.nodes().unwrap();
        assert_eq!(nodes.len(), 1, "only the healthy node: {nodes:?}");
        assert!(nodes.iter().all(|n| n.state != NodeState::Unconfirmed));
        assert!(!retired.contains(&nodes[0].address));
    }
    drop(store);

    // Rerun with the devices mended: both are provisioned afresh (never configured as nodes
    // that may hold keys), at new addresses; the healthy node gets no message.
    let (out, events, store) = run(&mended, 22);
    assert_eq!(out.report.summary.done, 3, "{:?}", out.report.summary);
    assert!(of(&events, HEALTHY).iter().all(|k| !matches!(
        k,
        EventKind::ProvisioningStarted { .. } | EventKind::ConfiguringStarted { .. }
    )));
    for id in [ADDRESSES, UNEXPECTED] {
        let ev = of(&events, id);
        assert!(
            !ev.iter().any(|k| matches!(k, EventKind::Resumed { .. })),
            "{id}: not resumed as a node: {ev:?}"
        );
        let provisioned = ev.iter().find_map(|k| match k {
            EventKind::Provisioned { address, .. } => Some(*address),
            _ => None,
        });
        let Some(address) = provisioned else {
            panic!("{id} was not provisioned afresh: {ev:?}");
        };
        assert!(
            !retired
                .iter()
                .any(|r| (*r..=*r + 1).contains(&address) || (*r..=*r + 1).contains(&(address + 1))),
            "{id}: {address:#06x} overlaps a retired range {retired:?}"
        );
        let node = store.borrow().node_by_uuid(&uuid(id)).unwrap();
        assert_eq!((node.address, node.state), (address, NodeState::Configured));
    }
}

/// A device that vanishes when its Provisioning Data arrives (it never takes it) and is still
/// away at the next attempt's Link Open: the driver cannot tell it from a node that took its
/// keys, so it configures the unconfirmed node, which cannot answer. When the device is back it
/// beacons as unprovisioned: that proves it holds no key, so the commit is voided (addresses
/// retired, journal `unconfirmed-void`) and the device is provisioned afresh, at a new address,
/// and ends done. (It ended failed before; the soak's `vanish and return` kind met it.)
#[test]
fn a_device_back_after_vanishing_at_its_data_is_voided_when_it_beacons_and_provisioned_afresh() {
    use meshprov::rollout::{self, EventKind, Plan, Stage};
    use meshprov::store::NodeState;
    use meshprov::uuid::DeviceUuid;

    const UUID: &str = "7b2c1a90-0000-4000-8000-0000000000b1";
    let dir = tempfile::tempdir().unwrap();
    let building = format!(
        "[[device]]\nuuid = \"{UUID}\"\nstatic_oob = \"{STATIC}\"\necdh_ms = 20\nelements = 2\n\
         [device.fault]\nvanish_at = \"data\"\nreturn_after_s = 120\n"
    );
    let plan_text = format!(
        "[network]\nname = \"vanish\"\nstore = \"network.db\"\n[provisioner]\nunicast_ranges = [\"0001-00FF\"]\n\
         [policy]\nauth = [\"static\"]\nretries = 8\nbackoff_ms = 1000\n[templates.t]\ndefault_ttl = 5\n\
         [[device]]\nuuid = \"{UUID}\"\nauth = \"static:{STATIC}\"\ntemplate = \"t\"\n"
    );
    std::fs::write(dir.path().join("plan.toml"), plan_text).unwrap();
    let plan = Plan::load(&dir.path().join("plan.toml")).unwrap();
    let (out, events, store) = rollout_on_sim(&plan, &building, 5);
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind.clone()).collect();
    let d = &out.report.devices[0];
    assert_eq!(d.stage, Stage::Done, "{:?}: {kinds:#?}", d.last_error);
    // Provisioned twice: the unconfirmed commit, then afresh at another address.
    let addresses: Vec<u16> = kinds
        .iter()
        .filter_map(|k| match k {
            EventKind::Provisioned { address, .. } => Some(*address),
            _ => None,
        })
        .collect();
    assert_eq!(addresses.len(), 2, "{kinds:#?}");
    let (first, second) = (addresses[0], addresses[1]);
    assert!(
        second > first + 1,
        "the new range {second:#06x} is past the voided one {first:#06x}"
    );
    // Its configuration was tried and failed while it was away, then the beacon voided it.
    let back = kinds
        .iter()
        .position(|k| {
            matches!(k, EventKind::Retrying { phase: rollout::Phase::Provisioning, reason, .. }
                if reason.contains("Unprovisioned Device beacons again")
                    && reason.contains(&format!("0x{first:04x}")))
        })
        .unwrap_or_else(|| panic!("no retry after its beacon: {kinds:#?}"));
    assert!(
        kinds[..back]
            .iter()
            .any(|k| matches!(k, EventKind::ConfiguringStarted { .. })),
        "{kinds:#?}"
    );
    // The store: the node at the new address, configured; the first commit voided and its
    // addresses retired, with the reason in the journal.
    let s = store.borrow();
    let uuid: DeviceUuid = UUID.parse().unwrap();
    let node = s.node_by_uuid(&uuid).unwrap();
    assert_eq!((node.address, node.state), (second, NodeState::Configured));
    let voids: Vec<_> = s
        .journal()
        .unwrap()
        .into_iter()
        .filter(|j| j.uuid == Some(uuid) && j.event == "unconfirmed-void")
        .collect();
    assert_eq!(voids.len(), 1, "{voids:?}");
    assert_eq!(
        voids[0].detail,
        format!(
            "addresses {first:04X}-{:04X} retired: {}",
            first + 1,
            meshprov::rollout::SUPERSEDED
        )
    );
}

/// `plan` rolled out on the simulated radio over `building` (a building file's text), without
/// loss, from a new store: the outcome, the events, the store.
fn rollout_on_sim(
    plan: &meshprov::rollout::Plan,
    building: &str,
    seed: u64,
) -> (
    meshprov::rollout::sim_driver::SimOutcome,
    Vec<meshprov::rollout::RolloutEvent>,
    meshprov::rollout::SharedStore,
) {
    use meshprov::rollout::sim_driver::{self, SimOptions};
    use meshprov::rollout::{self, Collect, SharedStore};
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::SeedableRng;
    let building = meshprov::sim::building::Building::parse(building, "b.toml").unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let store = rollout::open_store(plan, &mut rng).unwrap();
    let store: SharedStore = std::rc::Rc::new(std::cell::RefCell::new(store));
    let prepared = rollout::prepare(plan, &mut store.borrow_mut(), &mut rng).unwrap();
    let mut events = Collect::default();
    let opts = SimOptions {
        seed,
        loss: Some(0.0),
        ..SimOptions::default()
    };
    let out = sim_driver::run(
        plan,
        &building,
        store.clone(),
        &prepared,
        &opts,
        &mut events,
    )
    .unwrap();
    (out, events.events, store)
}
