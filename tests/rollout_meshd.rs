//! The rollout engine on a real node: a one-device plan rolled out over bluetooth-meshd's
//! unit socket (`meshd-unit`) through the real-time driver (`rollout::live_driver`): Static
//! OOB provisioning, then the template (AppKey Add, Model App Bind of the Generic OnOff
//! Server) and the Composition Data check. meshd is slow (about one packet a second): about
//! 20–30 s. With `CI` set, a missing bluetooth-meshd fails the test; otherwise it is skipped.

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
