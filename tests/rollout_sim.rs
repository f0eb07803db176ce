//! Rollouts on the simulated air (`rollout::sim_driver`): a building of the demo's mix (lights
//! with two elements, sensors, switches; certificate, static OOB and Output OOB devices) at
//! 10 % loss provisioned and configured, each node checked in the virtual device's own
//! Configuration Server state against its template; a rerun of a finished plan that sends
//! nothing; a device that cannot succeed failing alone; and (ignored in CI) the benchmarks of
//! README "Rollout performance".

use std::collections::BTreeSet;
use std::path::Path;

use meshprov::rollout::sim_driver::{self, SimOptions, SimOutcome};
use meshprov::rollout::{self, Collect, EventKind, Plan, SharedStore, Stage};
use meshprov::sim::building::Building;
use meshprov::store::{NodeState, Store};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

fn run(dir: &Path, opts: &SimOptions) -> (Plan, SharedStore, SimOutcome, Collect) {
    let plan = Plan::load(&dir.join("plan.toml")).unwrap();
    let building = Building::load(&dir.join("building.toml")).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(opts.seed);
    let store = rollout::open_store(&plan, &mut rng).unwrap();
    let store: SharedStore = std::rc::Rc::new(std::cell::RefCell::new(store));
    let prepared = rollout::prepare(&plan, &mut store.borrow_mut(), &mut rng).unwrap();
    let mut events = Collect::default();
    let out = sim_driver::run(
        &plan,
        &building,
        store.clone(),
        &prepared,
        opts,
        &mut events,
    )
    .unwrap();
    (plan, store, out, events)
}

fn group(store: &Store, name: &str) -> u16 {
    store
        .groups()
        .unwrap()
        .into_iter()
        .find(|(_, n)| n == name)
        .unwrap_or_else(|| panic!("group {name} is not in the store"))
        .0
}

/// Every node's virtual device holds exactly what its template gives it, with the store's
/// AppKeys and group addresses; the store agrees.
fn check_nodes(plan: &Plan, store: &Store, out: &SimOutcome) {
    let mut addresses = BTreeSet::new();
    for d in &plan.devices {
        let node = store.node_by_uuid(&d.uuid).unwrap();
        assert_eq!(node.state, NodeState::Configured, "{}", d.uuid);
        for a in node.address..node.address + u16::from(node.elements) {
            assert!(addresses.insert(a), "address {a:#06x} used twice");
        }
        let t = &plan.templates[&d.template];
        let (_, dev) = out
            .nodes
            .iter()
            .find(|(u, _)| *u == d.uuid)
            .unwrap_or_else(|| panic!("{} was not on the air", d.uuid));
        let server = dev.config_server().expect("provisioned");
        assert_eq!(server.primary(), node.address);
        assert_eq!(
            server.composition().elements.len(),
            usize::from(d.elements.unwrap())
        );
        for name in &t.app_keys {
            let index = store.app_key_by_name(name).unwrap().unwrap();
            let held = &server.app_keys()[&index];
            assert_eq!(
                held.key.expose_secret(),
                store.app_key(index).unwrap().expose_secret(),
                "AppKey {name} on {}",
                d.uuid
            );
        }
        for b in &t.bindings {
            let index = store.app_key_by_name(&b.app_key).unwrap().unwrap();
            let m = server
                .model(node.address + u16::from(b.element), b.model)
                .unwrap();
            assert!(m.bindings.contains(&index), "{} binding {b:?}", d.uuid);
        }
        for s in &t.subscriptions {
            let g = group(store, &s.group);
            let m = server
                .model(node.address + u16::from(s.element), s.model)
                .unwrap();
            assert_eq!(m.subscriptions, vec![g], "{} subscription {s:?}", d.uuid);
        }
        for p in &t.publications {
            let g = group(store, &p.group);
            let m = server
                .model(node.address + u16::from(p.element), p.model)
                .unwrap();
            let publication = m.publication.as_ref().expect("publication set");
            assert_eq!(publication.address, g);
            assert_eq!(publication.params.ttl, p.ttl);
            assert_eq!(publication.params.period, p.period);
        }
        if let Some(ttl) = t.default_ttl {
            assert_eq!(server.default_ttl(), ttl);
        }
        if let Some(relay) = t.relay {
            assert_eq!(server.relay().0, u8::from(relay));
        }
        if let Some((count, interval)) = t.network_transmit {
            let nt = server.network_transmit();
            assert_eq!(
                (nt.count + 1, (u16::from(nt.interval_steps) + 1) * 10),
                (count, interval)
            );
        }
        // The store records what the node was given.
        let bindings = store.node_bindings(&d.uuid).unwrap();
        assert_eq!(bindings.len(), t.bindings.len(), "{}", d.uuid);
        assert_eq!(
            store.node_subscriptions(&d.uuid).unwrap().len(),
            t.subscriptions.len()
        );
        assert_eq!(
            store.node_publications(&d.uuid).unwrap().len(),
            t.publications.len()
        );
    }
    // The only reservation left is the provisioner's own address, none of a device's.
    assert!(
        store
            .reservations()
            .unwrap()
            .iter()
            .all(|(u, _, _)| plan.devices.iter().all(|d| d.uuid != *u)),
        "a device's reservation was left behind"
    );
}

#[test]
fn a_building_at_ten_percent_loss_is_provisioned_once_and_configured_as_planned() {
    let dir = tempfile::tempdir().unwrap();
    let n = 200;
    meshprov::tools::rollout::write_demo(dir.path(), n, 5).unwrap();
    let opts = SimOptions {
        seed: 5,
        loss: Some(0.1),
        ..SimOptions::default()
    };
    let (plan, store, out, events) = run(dir.path(), &opts);
    let s = &out.report.summary;
    eprintln!(
        "{n} devices at 10 % loss: {} done in {:.1} s of virtual time ({:.1} s wall), {} retries, {} PB-ADV retransmissions",
        s.done,
        s.virtual_time_ms.unwrap() as f64 / 1000.0,
        s.wall_time_ms as f64 / 1000.0,
        s.retries,
        out.retransmissions
    );
    assert_eq!((s.done, s.failed, s.skipped), (n, 0, 0), "{}", s.message);
    // Mixed authentication really happened.
    let methods: BTreeSet<&str> = events
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Authenticated { method } => Some(method.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        methods.contains("static") && methods.contains("output"),
        "{methods:?}"
    );
    // The capabilities name the Output OOB actions the building gives its devices.
    let output_actions: BTreeSet<Vec<String>> = events
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Capabilities {
                output_oob_size: 4,
                output_oob_actions,
                input_oob_actions,
                ..
            } if input_oob_actions.is_empty() => Some(output_oob_actions.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        output_actions,
        BTreeSet::from([vec!["Output Numeric".to_string()]])
    );
    assert!(
        plan.devices
            .iter()
            .any(|d| d.auth == rollout::AuthMethod::Cert)
    );
    // Provisioned once each: one `provisioned` event per device.
    let provisioned = events
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Provisioned { .. }))
        .count();
    assert_eq!(provisioned, n);
    check_nodes(&plan, &store.borrow(), &out);

    // A finished plan does nothing and says so.
    let (_, _, again, events) = run(dir.path(), &opts);
    let s = &again.report.summary;
    assert_eq!((s.already_done, s.done), (n, n));
    assert!(s.message.starts_with("nothing to do"), "{}", s.message);
    assert_eq!(s.virtual_time_ms, Some(0));
    assert!(
        again.nodes.is_empty(),
        "no device of a finished plan is on the air"
    );
    assert!(
        !events.events.iter().any(|e| matches!(
            e.kind,
            EventKind::ProvisioningStarted { .. } | EventKind::ConfiguringStarted { .. }
        )),
        "nothing is sent"
    );
}

#[test]
fn a_device_that_cannot_succeed_fails_alone_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    meshprov::tools::rollout::write_demo(dir.path(), 6, 2).unwrap();
    // Device 2 gets a wrong static OOB value in the plan, device 3 is not in the building.
    let plan_path = dir.path().join("plan.toml");
    let text = std::fs::read_to_string(&plan_path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut seen = 0;
    for l in &mut lines {
        if l.starts_with("auth = \"static:") {
            seen += 1;
            if seen == 1 {
                *l = format!("auth = \"static:{}\"", "ab".repeat(16));
            }
        }
    }
    let text = lines.join("\n").replace(
        "d3e00000-0000-4000-8000-000000000003",
        "d3e00000-0000-4000-8000-0000000000ff",
    );
    std::fs::write(&plan_path, text).unwrap();
    let (plan, _store, out, _) = run(dir.path(), &SimOptions::default());
    let s = &out.report.summary;
    assert_eq!((s.done, s.failed), (4, 2), "{}", s.message);
    let failed: Vec<_> = out
        .report
        .devices
        .iter()
        .filter(|d| d.stage == Stage::Failed)
        .collect();
    assert!(
        failed
            .iter()
            .all(|d| d.failed_phase == Some(rollout::Phase::Provisioning))
    );
    let reasons: Vec<&str> = failed
        .iter()
        .map(|d| d.last_error.as_deref().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("building file")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("onfirmation")),
        "{reasons:?}"
    );
    assert_eq!(plan.devices.len(), 6);
}

/// README "Rollout performance": the 100-device building at 10 % loss with the default
/// concurrency and with one session at a time, in the same run.
#[test]
#[ignore = "benchmark: cargo test --release --test rollout_sim -- --ignored --nocapture"]
fn bench_concurrency_ratio() {
    let mut times = Vec::new();
    for concurrency in [None, Some(1)] {
        let dir = tempfile::tempdir().unwrap();
        meshprov::tools::rollout::write_demo(dir.path(), 100, 9).unwrap();
        let opts = SimOptions {
            seed: 9,
            loss: Some(0.1),
            concurrency,
            ..SimOptions::default()
        };
        let (_, _, out, _) = run(dir.path(), &opts);
        let s = &out.report.summary;
        assert_eq!(s.done, 100, "{}", s.message);
        let v = s.virtual_time_ms.unwrap() as f64 / 1000.0;
        eprintln!(
            "concurrency {:?}: {v:.1} s virtual, {:.1} s wall, {} retries, {} retransmissions",
            concurrency.unwrap_or(16),
            s.wall_time_ms as f64 / 1000.0,
            s.retries,
            out.retransmissions
        );
        times.push(v);
    }
    eprintln!(
        "ratio (concurrency 1 / default): {:.2}",
        times[1] / times[0]
    );
}

const SHARED_OOB: &str = "00112233445566778899aabbccddeeff";

/// A building with one planned light and three unplanned devices: `cafe…01` on the
/// provisioner's floor (heard at -50 dBm), `cafe…02` a floor away (-65 dBm), `beef…03` on the
/// provisioner's floor with another prefix. The plan's discovery rule (`rule`) is appended.
fn discovery_building(dir: &Path, rule: &str) {
    let device = |uuid: &str, floor: i32, elements: usize| {
        let mut d = format!(
            "\n[[device]]\nuuid = \"{uuid}\"\nname = \"d-{floor}\"\nfloor = {floor}\nstatic_oob = \"{SHARED_OOB}\"\n"
        );
        for _ in 0..elements {
            d.push_str("[[device.element]]\nmodels = [\"0000\", \"0002\", \"1000\"]\n");
        }
        d
    };
    let mut building = String::from(
        "[air]\nloss = 0.0\nmax_floors = 2\nbeacon_interval_ms = 500\n\n[provisioner]\nfloor = 0\n",
    );
    building.push_str(&device("aa000000-0000-4000-8000-000000000001", 0, 1));
    building.push_str(&device("cafe0000-0000-4000-8000-000000000001", 0, 2));
    building.push_str(&device("cafe0000-0000-4000-8000-000000000002", 1, 1));
    building.push_str(&device("beef0000-0000-4000-8000-000000000003", 0, 1));
    std::fs::write(dir.join("building.toml"), building).unwrap();
    std::fs::write(
        dir.join("plan.toml"),
        format!(
            r#"
[network]
name = "discovery"
store = "net.db"

[provisioner]
# Two ranges, filled in this order: the second one is used once the first is full.
unicast_ranges = ["0100-0101", "0010-001F"]
radio = "sim:building.toml"

[policy]
auth = ["static"]

[templates.light]
app_keys = ["lights"]
bind = [{{ element = 0, model = "1000", app_key = "lights" }}]

[templates.found]
app_keys = ["found"]
bind = [{{ element = 0, model = "1000", app_key = "found" }}]
default_ttl = 7

[[device]]
uuid = "aa000000-0000-4000-8000-000000000001"
auth = "static:{SHARED_OOB}"
template = "light"
elements = 1
{rule}
"#
        ),
    )
    .unwrap();
}

fn unplanned_events(events: &Collect) -> Vec<(String, bool, String)> {
    events
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Unplanned { taken, reason, .. } => {
                Some((e.uuid.clone().unwrap_or_default(), *taken, reason.clone()))
            }
            _ => None,
        })
        .collect()
}

fn sim_node<'a>(out: &'a SimOutcome, uuid: &str) -> &'a meshprov::sim::node::VirtualDevice {
    let u: meshprov::uuid::DeviceUuid = uuid.parse().unwrap();
    &out.nodes
        .iter()
        .find(|(d, _)| *d == u)
        .unwrap_or_else(|| panic!("{uuid} is not on the air"))
        .1
}

/// With no discovery rule, unplanned devices heard beaconing are reported (`unplanned`,
/// `taken: false`) and left alone: their virtual devices are still unprovisioned.
#[test]
fn unplanned_devices_are_reported_and_untouched_without_a_rule() {
    let dir = tempfile::tempdir().unwrap();
    discovery_building(dir.path(), "");
    let (_, store, out, events) = run(dir.path(), &SimOptions::default());
    let s = &out.report.summary;
    assert_eq!((s.devices, s.done), (1, 1), "{}", s.message);
    let heard = unplanned_events(&events);
    let uuids: BTreeSet<&str> = heard.iter().map(|(u, _, _)| u.as_str()).collect();
    assert_eq!(
        uuids,
        BTreeSet::from([
            "cafe0000-0000-4000-8000-000000000001",
            "cafe0000-0000-4000-8000-000000000002",
            "beef0000-0000-4000-8000-000000000003",
        ]),
        "{heard:?}"
    );
    assert_eq!(heard.len(), 3, "each reported once: {heard:?}");
    assert!(heard.iter().all(|(_, taken, _)| !taken), "{heard:?}");
    assert!(
        heard
            .iter()
            .all(|(_, _, r)| r.contains("no [discovery] rule")),
        "{heard:?}"
    );
    for u in [
        "cafe0000-0000-4000-8000-000000000001",
        "cafe0000-0000-4000-8000-000000000002",
        "beef0000-0000-4000-8000-000000000003",
    ] {
        assert!(
            matches!(
                sim_node(&out, u).state(),
                meshprov::sim::node::DeviceState::Unprovisioned
            ),
            "{u} was touched"
        );
        assert!(store.borrow().node_by_uuid(&u.parse().unwrap()).is_err());
    }
    assert_eq!(store.borrow().nodes().unwrap().len(), 1);
}

/// With the rule on (UUID prefix `cafe`, at least -60 dBm), exactly the matching unplanned
/// device is provisioned and configured with the rule's template; the others are reported with
/// the reason and untouched. Addresses come from the plan's first range, then its second. A
/// rerun finds the taken node in the store and does not provision it again.
#[test]
fn the_discovery_rule_takes_exactly_the_matching_devices() {
    let dir = tempfile::tempdir().unwrap();
    discovery_building(
        dir.path(),
        &format!(
            "[discovery]\nenabled = true\nuuid_prefix = \"cafe\"\nmin_rssi = -60\ntemplate = \"found\"\nauth = \"static:{SHARED_OOB}\"\n"
        ),
    );
    let (plan, store, out, events) = run(dir.path(), &SimOptions::default());
    let s = &out.report.summary;
    assert_eq!((s.devices, s.done, s.failed), (2, 2, 0), "{}", s.message);
    let heard = unplanned_events(&events);
    let taken: Vec<&str> = heard
        .iter()
        .filter(|(_, t, _)| *t)
        .map(|(u, _, _)| u.as_str())
        .collect();
    assert_eq!(
        taken,
        vec!["cafe0000-0000-4000-8000-000000000001"],
        "{heard:?}"
    );
    let reason = |u: &str| {
        heard
            .iter()
            .find(|(x, _, _)| x == u)
            .map(|(_, _, r)| r.clone())
            .unwrap_or_default()
    };
    assert!(
        reason("cafe0000-0000-4000-8000-000000000002").contains("-65 dBm"),
        "{heard:?}"
    );
    assert!(
        reason("beef0000-0000-4000-8000-000000000003").contains("prefix"),
        "{heard:?}"
    );
    // The taken device: provisioned once, configured as the rule's template says.
    let found: meshprov::uuid::DeviceUuid = "cafe0000-0000-4000-8000-000000000001".parse().unwrap();
    let node = store.borrow().node_by_uuid(&found).unwrap();
    assert_eq!(node.state, NodeState::Configured);
    let server = sim_node(&out, "cafe0000-0000-4000-8000-000000000001")
        .config_server()
        .expect("provisioned");
    assert_eq!(server.primary(), node.address);
    assert_eq!(server.default_ttl(), 7);
    let k = store.borrow().app_key_by_name("found").unwrap().unwrap();
    assert!(server.app_keys().contains_key(&k));
    assert!(
        server
            .model(node.address, plan.templates["found"].bindings[0].model)
            .unwrap()
            .bindings
            .contains(&k)
    );
    let provisioned = events
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Provisioned { .. }))
        .count();
    assert_eq!(provisioned, 2);
    // The others are untouched.
    for u in [
        "cafe0000-0000-4000-8000-000000000002",
        "beef0000-0000-4000-8000-000000000003",
    ] {
        assert!(matches!(
            sim_node(&out, u).state(),
            meshprov::sim::node::DeviceState::Unprovisioned
        ));
    }
    // Addresses: inside the plan's ranges, the first range used first (its first address).
    let addresses: BTreeSet<u16> = store
        .borrow()
        .nodes()
        .unwrap()
        .iter()
        .map(|n| n.address)
        .collect();
    assert!(addresses.contains(&0x0100), "{addresses:?}");
    assert!(
        addresses
            .iter()
            .all(|a| (0x0100..=0x0101).contains(a) || (0x0010..=0x001f).contains(a)),
        "{addresses:?}"
    );

    // A rerun: both are done; the taken node is not in the plan, is not heard (it no longer
    // beacons) and is not provisioned again.
    let (_, _, again, events) = run(dir.path(), &SimOptions::default());
    assert_eq!(again.report.summary.already_done, 1);
    assert!(
        !events
            .events
            .iter()
            .any(|e| matches!(e.kind, EventKind::ProvisioningStarted { .. })),
        "nothing is provisioned again"
    );
    assert!(store.borrow().node_by_uuid(&found).is_ok());
}

/// What the terminal UI does when the installer quits (or the terminal hangs up): from
/// `stop_at` on it sends [`Command::Stop`] at every tick until the engine has no work running,
/// no longer keeps the run open, and lets virtual time run as fast as the CPU goes. Counts the
/// driver's steps after the stop.
struct Quitter {
    stop_at: meshprov::time::Instant,
    stopped_at: Option<meshprov::time::Instant>,
    steps_after_stop: u64,
    last: meshprov::time::Instant,
}

/// More steps than any stop needs (a few thousand at most): past it the run is spinning.
const STOP_STEP_LIMIT: u64 = 50_000;

impl rollout::Observer for Quitter {
    fn event(&mut self, _: &rollout::RolloutEvent) {}

    fn tick(&mut self, engine: &rollout::Engine) -> Vec<rollout::Command> {
        if self.stopped_at.is_none() {
            return Vec::new();
        }
        self.steps_after_stop += 1;
        assert!(
            self.steps_after_stop < STOP_STEP_LIMIT,
            "the run does not settle after a Stop at {:?}: {} steps, virtual time held at {:?}, engine finished {}",
            self.stopped_at,
            self.steps_after_stop,
            self.last,
            engine.is_finished()
        );
        if engine.is_finished() {
            Vec::new()
        } else {
            vec![rollout::Command::Stop]
        }
    }

    fn pace(
        &mut self,
        now: meshprov::time::Instant,
        next: Option<meshprov::time::Instant>,
    ) -> Option<meshprov::time::Instant> {
        self.last = now;
        if self.stopped_at.is_none() && next.is_none_or(|t| t >= self.stop_at) {
            // The installer quits now (a tick follows at once).
            self.stopped_at = Some(now);
            return Some(now);
        }
        if self.stopped_at.is_some() {
            return next.or(Some(now + std::time::Duration::from_millis(100)));
        }
        next
    }

    fn keep_running(&self) -> bool {
        self.stopped_at.is_none()
    }
}

/// A Stop in the middle of a run (the terminal UI's quit, a closed terminal) ends it within a
/// bounded number of steps and of virtual time, with every device in a stage a rerun resumes
/// from and the store agreeing; the rerun finishes the building. It once did not end: a Stop
/// during the simulated installer's delay before an Output OOB answer left the installer's
/// timer behind its cancelled session, in the past, and the driver's clock stopped there.
#[test]
fn a_stop_mid_run_settles_and_the_store_resumes() {
    // Instants that fall in every part of the run: first sessions and the installers' delays
    // (5 s), provisioning and configuration in full swing, the last devices. Since the
    // provisioner's transport no longer floods its own advertising queue (MshPRT v1.1
    // §3.5.3.3, §3.5.3.4), 29 of the 30 are done at 70 s and all at 100 s; before, 27 were
    // done at 100 s.
    for stop_s in [5u64, 7, 13, 20, 30, 45, 60] {
        let dir = tempfile::tempdir().unwrap();
        meshprov::tools::rollout::write_demo(dir.path(), 30, 1).unwrap();
        let plan = Plan::load(&dir.path().join("plan.toml")).unwrap();
        let building = Building::load(&dir.path().join("building.toml")).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let store = rollout::open_store(&plan, &mut rng).unwrap();
        let store: SharedStore = std::rc::Rc::new(std::cell::RefCell::new(store));
        let prepared = rollout::prepare(&plan, &mut store.borrow_mut(), &mut rng).unwrap();
        let mut q = Quitter {
            stop_at: meshprov::time::Instant::ZERO + std::time::Duration::from_secs(stop_s),
            stopped_at: None,
            steps_after_stop: 0,
            last: meshprov::time::Instant::ZERO,
        };
        let out = sim_driver::run(
            &plan,
            &building,
            store.clone(),
            &prepared,
            &SimOptions::default(),
            &mut q,
        )
        .unwrap();
        let stopped = q.stopped_at.expect("the run reached the stop");
        let s = &out.report.summary;
        let settle = std::time::Duration::from_millis(s.virtual_time_ms.unwrap())
            .saturating_sub(stopped.since_epoch());
        eprintln!(
            "stop at {stop_s} s: {} steps, {:.1} s of virtual time to settle; {} of 30 done",
            q.steps_after_stop,
            settle.as_secs_f64(),
            s.done
        );
        // Settling is the links' and the transport's own ends (Link Close, segments in
        // flight), seconds at most.
        assert!(
            settle < std::time::Duration::from_secs(30),
            "stop at {stop_s} s: {settle:?} to settle"
        );
        assert!(
            s.stopped && s.done < 30,
            "stop at {stop_s} s: {}",
            s.message
        );
        // Every device is in a stage a rerun resumes from, and the store agrees with it.
        let st = store.borrow();
        for d in &out.report.devices {
            let node = st.node_by_uuid(&d.uuid).ok();
            match d.stage {
                Stage::Scheduled => assert!(
                    node.as_ref()
                        .is_none_or(|n| n.state == NodeState::Unconfirmed),
                    "{} scheduled but {:?} in the store",
                    d.name,
                    node.map(|n| n.state)
                ),
                Stage::Committed => {
                    let n = node.unwrap_or_else(|| panic!("{} committed, not stored", d.name));
                    assert_eq!(Some(n.address), d.address, "{}", d.name);
                    assert_ne!(n.state, NodeState::Configured, "{}", d.name);
                }
                Stage::Done => {
                    let n = node.unwrap_or_else(|| panic!("{} done, not stored", d.name));
                    assert_eq!(n.state, NodeState::Configured, "{}", d.name);
                    assert_eq!(Some(n.address), d.address, "{}", d.name);
                }
                other => panic!("stop at {stop_s} s: {} left {other:?}", d.name),
            }
        }
        drop(st);
        // A rerun on the same store resumes and finishes the building.
        let (_, store2, out2, _) = run(dir.path(), &SimOptions::default());
        let s2 = &out2.report.summary;
        assert_eq!(
            s2.done, 30,
            "rerun after a stop at {stop_s} s: {}",
            s2.message
        );
        let st = store2.borrow();
        let mut addresses = BTreeSet::new();
        for d in &plan.devices {
            let n = st.node_by_uuid(&d.uuid).unwrap();
            assert_eq!(n.state, NodeState::Configured, "{}", d.uuid);
            for a in n.address..n.address + u16::from(n.elements) {
                assert!(addresses.insert(a), "address {a:#06x} used twice");
            }
        }
    }
}

/// The same cause without a Stop: sessions that time out (4 s here) while the simulated
/// installer waits to answer an Output OOB prompt. Each device fails after its attempts, and
/// the run ends; it used to spin at one instant for ever.
#[test]
fn sessions_that_end_during_the_installer_s_delay_do_not_stop_the_clock() {
    struct Steps(u64);
    impl rollout::Observer for Steps {
        fn event(&mut self, _: &rollout::RolloutEvent) {}
        fn tick(&mut self, _: &rollout::Engine) -> Vec<rollout::Command> {
            self.0 += 1;
            // About 10,000 steps are enough; far more is a clock that does not move.
            assert!(self.0 < 200_000, "the run spins: {} steps", self.0);
            Vec::new()
        }
    }
    let dir = tempfile::tempdir().unwrap();
    meshprov::tools::rollout::write_demo(dir.path(), 30, 1).unwrap();
    let p = dir.path().join("plan.toml");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("[policy]\n", "[policy]\nprovision_timeout_s = 4\n");
    std::fs::write(&p, text).unwrap();
    let plan = Plan::load(&p).unwrap();
    assert_eq!(plan.policy.provision_timeout.as_secs(), 4);
    let building = Building::load(&dir.path().join("building.toml")).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let store = rollout::open_store(&plan, &mut rng).unwrap();
    let store: SharedStore = std::rc::Rc::new(std::cell::RefCell::new(store));
    let prepared = rollout::prepare(&plan, &mut store.borrow_mut(), &mut rng).unwrap();
    let mut steps = Steps(0);
    let out = sim_driver::run(
        &plan,
        &building,
        store,
        &prepared,
        &SimOptions::default(),
        &mut steps,
    )
    .unwrap();
    let s = &out.report.summary;
    assert_eq!(s.done + s.failed, 30, "{}", s.message);
    assert!(s.failed > 0 && !s.stopped, "{}", s.message);
}

/// `meshprov key-refresh` after a rollout, as the terminal UI runs it
/// (`tools::key_refresh::key_refresh_paced`): a run stepped in 100 ms stretches of simulated
/// air (the UI's pace) reports exactly what an unstepped one does; a run stopped at its first
/// phase 2 acknowledgement leaves the journal in phase 2, says how to resume, and the same
/// call resumes and completes it.
#[test]
fn a_key_refresh_steps_stops_and_resumes() {
    use meshprov::net::key_refresh::{KeyRefreshEvent, Phase};
    use meshprov::tools::key_refresh::{KeyRefreshArgs, Report, key_refresh, key_refresh_paced};

    let mut runs = Vec::new();
    for stepped in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        meshprov::tools::rollout::write_demo(dir.path(), 12, 1).unwrap();
        let (_, _, out, _) = run(dir.path(), &SimOptions::default());
        assert_eq!(out.report.summary.done, 12);
        let args = KeyRefreshArgs {
            store: dir.path().join("network.db"),
            radio: format!("sim:{}", dir.path().join("building.toml").display()),
            net_key_index: 0,
            exclude: Vec::new(),
            seed: 1,
            loss: None,
            silent: Vec::new(),
        };
        let mut reports = Vec::new();
        let mut steps = 0u32;
        let outcome = key_refresh_paced(
            &args,
            &mut |r| reports.push(r.clone()),
            &mut |simulated, deadline| {
                steps += 1;
                Some(if stepped {
                    (simulated + std::time::Duration::from_millis(100)).min(deadline)
                } else {
                    deadline
                })
            },
        )
        .unwrap();
        assert_eq!(outcome.exit_code(), 0, "{:?}", outcome.problem());
        assert_eq!(outcome.stopped_in, None);
        eprintln!(
            "key refresh of 12 nodes, stepped {stepped}: {steps} steps, {:.1} s",
            outcome.virtual_time.as_secs_f64()
        );
        runs.push((reports, outcome.virtual_time, steps));
        if !stepped {
            continue;
        }
        // The stop: at the first acknowledgement of phase 2, the next step does not come.
        let seen_phase_2 = std::cell::Cell::new(false);
        let mut reports = Vec::new();
        let stopped = key_refresh_paced(
            &args,
            &mut |r| {
                if let Report::Event(KeyRefreshEvent::NodeUpdated {
                    phase: Phase::UsingNewKeys,
                    ..
                }) = r
                {
                    seen_phase_2.set(true);
                }
                reports.push(r.clone());
            },
            &mut |_, deadline| (!seen_phase_2.get()).then_some(deadline),
        )
        .unwrap();
        assert_eq!(stopped.stopped_in, Some(Phase::UsingNewKeys));
        assert!(stopped.summary.is_none());
        assert_ne!(stopped.exit_code(), 0);
        assert!(
            stopped.problem().unwrap().contains(
                "stopped in phase 2 (using the new keys); re-run the same command to resume it"
            ),
            "{:?}",
            stopped.problem()
        );
        let journal = Store::open(&args.store)
            .unwrap()
            .key_refresh(0)
            .unwrap()
            .expect("the journal of the stopped key refresh");
        assert_eq!(journal.phase, 2);
        // The same command resumes it and completes it; the journal is then closed.
        let mut reports = Vec::new();
        let resumed = key_refresh(&args, &mut |r| reports.push(r.clone())).unwrap();
        assert_eq!(resumed.exit_code(), 0, "{:?}", resumed.problem());
        assert!(resumed.resumed);
        assert!(matches!(
            reports.iter().find(|r| matches!(r, Report::Start { .. })),
            Some(Report::Start { resumed: true, roster, .. })
                if roster.iter().filter(|n| n.completed >= 1).count() == 12
        ));
        assert!(
            Store::open(&args.store)
                .unwrap()
                .key_refresh(0)
                .unwrap()
                .is_none()
        );
    }
    let ((plain, t_plain, _), (stepped, t_stepped, steps)) = (&runs[0], &runs[1]);
    assert!(*steps > 100, "{steps} steps");
    assert_eq!(t_plain, t_stepped);
    assert_eq!(plain, stepped, "stepping changed what happened");
}
