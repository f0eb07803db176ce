//! The rollout engine on a real node: a one-device plan rolled out over bluetooth-meshd's
//! unit socket (`meshd-unit`) through the real-time driver (`rollout::live_driver`): Static
//! OOB provisioning, then the template (AppKey Add, Model App Bind of the Generic OnOff
//! Server) and the Composition Data check. meshd is slow (about one packet a second): about
//! 20–30 s. With `CI` set, a missing bluetooth-meshd fails the test; otherwise it is skipped.
//!
//! One meshd unit socket is one node, so provisioning one device while configuring another
//! needs two: the second test joins two meshd nodes into one radio (adverts go to both, events
//! come from either) and shows that the real-time driver configures the first node while the
//! second is still being provisioned.

mod meshd_support;

use meshd_support::{Meshd, available};
use meshprov::rollout::live_driver::{self, LiveRolloutOptions};
use meshprov::rollout::{self, Collect, EventKind, Plan, SharedStore};
use meshprov::store::NodeState;
use meshprov::uuid::DeviceUuid;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

#[test]
fn a_plan_rolls_out_to_bluetooth_meshd_in_real_time() {
    if !available() {
        return;
    }
    let uuid_hex = "7b2c1a90000040008000000000000a81";
    let value = "00112233445566778899aabbccddeeff";
    let node = Meshd::start(uuid_hex, &["--caps", "static-oob", "--static-oob", value]);
    let dir = tempfile::tempdir().unwrap();
    let plan_path = dir.path().join("plan.toml");
    std::fs::write(
        &plan_path,
        format!(
            r#"
[network]
name = "meshd"
store = "net.db"

[provisioner]
unicast_ranges = ["0100-01FF"]
radio = "meshd-unit:{}"

[policy]
auth = ["static"]
retries = 1
provision_timeout_s = 40
configure_timeout_s = 40

[templates.join]
app_keys = ["k"]
bind = [{{ element = 0, model = "1000", app_key = "k" }}]

[[device]]
uuid = "{uuid_hex}"
name = "meshd"
auth = "static:{value}"
template = "join"
elements = 1
"#,
            node.path().display()
        ),
    )
    .unwrap();
    let plan = Plan::load(&plan_path).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let store: SharedStore = std::rc::Rc::new(std::cell::RefCell::new(
        rollout::open_store(&plan, &mut rng).unwrap(),
    ));
    let prepared = rollout::prepare(&plan, &mut store.borrow_mut(), &mut rng).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut radio = {
        let _g = rt.enter();
        meshprov::radio::unit::UnitRadio::open(node.path()).unwrap()
    };
    let opts = LiveRolloutOptions {
        pb_adv: meshprov::tools::provision::meshd_pb_adv(),
        client: meshprov::tools::node::meshd_client(),
        seed: Some(5),
        ..LiveRolloutOptions::default()
    };
    let mut events = Collect::default();
    let t0 = std::time::Instant::now();
    let report = rt
        .block_on(live_driver::run(
            &mut radio,
            &plan,
            store.clone(),
            &prepared,
            &opts,
            &mut events,
        ))
        .unwrap();
    let s = &report.summary;
    assert_eq!(
        s.done,
        1,
        "{}\n{:?}\n{}",
        s.message,
        report.devices,
        node.log()
    );
    assert!(
        events
            .events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Authenticated { method } if method == "static"))
    );
    let uuid: DeviceUuid = uuid_hex.parse().unwrap();
    let stored = store.borrow().node_by_uuid(&uuid).unwrap();
    assert_eq!(stored.state, NodeState::Configured);
    // meshd's own record: the same address and device key as the store's.
    let (addr, key) = node.stored_node(uuid_hex);
    assert_eq!(addr, stored.address);
    assert_eq!(key, hex::encode(stored.device_key.expose_secret()));
    assert_eq!(store.borrow().node_bindings(&uuid).unwrap().len(), 1);
    eprintln!(
        "meshd rollout: done in {:.1} s ({:?})",
        t0.elapsed().as_secs_f64(),
        report.devices[0].timings
    );
}

/// Two bluetooth-meshd nodes as one radio: what is advertised reaches both, what either sends
/// is heard.
struct Pair(
    meshprov::radio::unit::UnitRadio,
    meshprov::radio::unit::UnitRadio,
);

impl meshprov::radio::Radio for Pair {
    fn name(&self) -> String {
        format!("{} + {}", self.0.name(), self.1.name())
    }
    fn adv_interval(&self) -> std::time::Duration {
        self.0.adv_interval().max(self.1.adv_interval())
    }
    async fn advertise(
        &mut self,
        ad_type: u8,
        data: &[u8],
        params: meshprov::radio::AdvParams,
    ) -> Result<(), meshprov::radio::RadioError> {
        self.0.advertise(ad_type, data, params).await?;
        self.1.advertise(ad_type, data, params).await
    }
    async fn next_event(
        &mut self,
    ) -> Result<meshprov::radio::RadioEvent, meshprov::radio::RadioError> {
        tokio::select! {
            e = self.0.next_event() => e,
            e = self.1.next_event() => e,
        }
    }
}

/// Two meshd nodes, one provisioning session at a time (`concurrency = 1`): the first node is
/// configured while the second is being provisioned — the real-time driver overlaps the two
/// phases (one loop owns the radio and runs both the provisioning host and the Config client).
#[test]
fn provisioning_and_configuration_overlap_on_a_real_radio() {
    if !available() {
        return;
    }
    let uuids = [
        "7b2c1a90000040008000000000000b01",
        "7b2c1a90000040008000000000000b02",
    ];
    let value = "00112233445566778899aabbccddeeff";
    let args = ["--caps", "static-oob", "--static-oob", value];
    let nodes = [Meshd::start(uuids[0], &args), Meshd::start(uuids[1], &args)];
    let dir = tempfile::tempdir().unwrap();
    let plan_path = dir.path().join("plan.toml");
    let mut text = String::from(
        r#"
[network]
name = "meshd2"
store = "net.db"

[provisioner]
unicast_ranges = ["0100-01FF"]

[policy]
auth = ["static"]
concurrency = 1
configure_concurrency = 2
retries = 1
provision_timeout_s = 60
configure_timeout_s = 60

[templates.join]
app_keys = ["k"]
bind = [{ element = 0, model = "1000", app_key = "k" }]
"#,
    );
    for (i, u) in uuids.iter().enumerate() {
        text.push_str(&format!(
            "\n[[device]]\nuuid = \"{u}\"\nname = \"meshd {i}\"\nauth = \"static:{value}\"\ntemplate = \"join\"\nelements = 1\n"
        ));
    }
    std::fs::write(&plan_path, text).unwrap();
    let plan = Plan::load(&plan_path).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let store: SharedStore = std::rc::Rc::new(std::cell::RefCell::new(
        rollout::open_store(&plan, &mut rng).unwrap(),
    ));
    let prepared = rollout::prepare(&plan, &mut store.borrow_mut(), &mut rng).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut radio = {
        let _g = rt.enter();
        Pair(
            meshprov::radio::unit::UnitRadio::open(nodes[0].path()).unwrap(),
            meshprov::radio::unit::UnitRadio::open(nodes[1].path()).unwrap(),
        )
    };
    let opts = LiveRolloutOptions {
        pb_adv: meshprov::tools::provision::meshd_pb_adv(),
        client: meshprov::tools::node::meshd_client(),
        seed: Some(6),
        ..LiveRolloutOptions::default()
    };
    let mut events = Collect::default();
    let t0 = std::time::Instant::now();
    let report = rt
        .block_on(live_driver::run(
            &mut radio,
            &plan,
            store.clone(),
            &prepared,
            &opts,
            &mut events,
        ))
        .unwrap();
    let s = &report.summary;
    assert_eq!(
        s.done,
        2,
        "{}\n{:?}\n{}\n{}",
        s.message,
        report.devices,
        nodes[0].log(),
        nodes[1].log()
    );
    // When each phase of each device started and ended (ms of the run).
    let at = |uuid: &str, pick: fn(&EventKind) -> bool| {
        events
            .events
            .iter()
            .find(|e| e.uuid.as_deref() == Some(uuid) && pick(&e.kind))
            .map(|e| e.t_ms)
            .unwrap_or_else(|| panic!("{uuid}: event missing in {:?}", events.events))
    };
    let id = |u: &str| u.parse::<DeviceUuid>().unwrap().to_string();
    let (a, b) = (id(uuids[0]), id(uuids[1]));
    let started = |k: &EventKind| matches!(k, EventKind::ProvisioningStarted { .. });
    let provisioned = |k: &EventKind| matches!(k, EventKind::Provisioned { .. });
    let configuring = |k: &EventKind| matches!(k, EventKind::ConfiguringStarted { .. });
    let done = |k: &EventKind| matches!(k, EventKind::Done { .. });
    // Whichever was provisioned first is configured while the other is being provisioned.
    let (first, second) = if at(&a, provisioned) <= at(&b, provisioned) {
        (a, b)
    } else {
        (b, a)
    };
    assert!(
        at(&first, configuring) < at(&second, provisioned)
            && at(&second, started) < at(&first, done),
        "no overlap: first configured {}..{} ms, second provisioned {}..{} ms",
        at(&first, configuring),
        at(&first, done),
        at(&second, started),
        at(&second, provisioned)
    );
    for (u, node) in uuids.iter().zip(&nodes) {
        let stored = store.borrow().node_by_uuid(&u.parse().unwrap()).unwrap();
        assert_eq!(stored.state, NodeState::Configured);
        let (addr, key) = node.stored_node(u);
        assert_eq!(addr, stored.address);
        assert_eq!(key, hex::encode(stored.device_key.expose_secret()));
    }
    eprintln!(
        "two meshd nodes, overlapping: done in {:.1} s (first configured from {} ms, second provisioned {}..{} ms)",
        t0.elapsed().as_secs_f64(),
        at(&first, configuring),
        at(&second, started),
        at(&second, provisioned)
    );
}
