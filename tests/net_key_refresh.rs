//! The network-wide Key Refresh procedure against simulated nodes over the simulated advertising
//! bearer, in virtual time: 30 nodes with 2 AppKeys, 3 excluded, 2 that stop answering after
//! phase 1, at 0 % and 20 % loss; the store as journal and a resumed run that finishes the two;
//! the simulated node's network layer and Secure Network beacons through the phases; and
//! `meshprov net key-refresh` from the command line.
//!
//! `cargo test --test net_key_refresh -- --nocapture` prints the virtual time of each run.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use meshprov::crypto::beacon::{BeaconState, secure_network_encode};
use meshprov::crypto::{AppKey, DevKey, NetKey, toolbox};
use meshprov::net::config::{ConfigEvent, ConfigMessage, ConfigStatus};
use meshprov::net::key_refresh::{
    FailureReason, KeyRefresh, KeyRefreshConfig, KeyRefreshEvent, Phase,
};
use meshprov::net::network::MemorySeqSource;
use meshprov::provisioning::{AuthPolicy, ProvisionerConfig};
use meshprov::radio::sim::{Delivery, EndpointId};
use meshprov::sim::building::Building;
use meshprov::sim::configure::{ConfigOptions, ProvisionedNode, StoreSeq, configure_with};
use meshprov::sim::key_refresh::{KeyRefreshOptions, run_key_refresh};
use meshprov::sim::mesh::SimMesh;
use meshprov::sim::node::{AD_TYPE_MESH_BEACON, DeviceState, VirtualDevice};
use meshprov::sim::run::{RunOptions, run};
use meshprov::store::{NewNode, Store};
use meshprov::time::Instant;
use meshprov::tools::key_refresh::{StoreJournal, prepare};
use meshprov::uuid::DeviceUuid;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

const NODES: usize = 30;
/// Lamps (1-based) excluded before the key refresh.
const EXCLUDED: [usize; 3] = [4, 11, 23];
/// Lamps that stop answering when phase 2 starts, and answer again in the resumed run.
const SILENT: [usize; 2] = [7, 19];

fn uuid(i: usize) -> String {
    format!("7b2c1a90-0000-4000-8000-{:012x}", 0x100 + i)
}

fn building_toml(n: usize) -> String {
    let mut s = String::from("[network]\nnet_key_index = 0\n\n");
    for i in 1..=n {
        s += &format!(
            "[[device]]\nuuid = \"{}\"\nname = \"Lamp {i}\"\n\n",
            uuid(i)
        );
    }
    s
}

fn no_oob(seed: u64, loss: f64, net_key: NetKey) -> RunOptions {
    RunOptions {
        config: ProvisionerConfig {
            allow_no_oob: true,
            auth: AuthPolicy::NoOob,
            ..ProvisionerConfig::default()
        },
        seed,
        loss: Some(loss),
        net_key: Some(net_key),
        iv_index: Some(0),
        ..RunOptions::default()
    }
}

/// The 30-node scenario at `loss`: provision and configure (2 AppKeys per node) into a store,
/// exclude 3, run the key refresh with 2 nodes going silent at phase 2, check everything, then
/// resume with the 2 back on the air. Returns the virtual time of the two key refresh runs.
fn thirty_nodes(loss: f64, seed: u64) -> (Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hq.db");
    let mut store = Store::open(&path).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    store.create_network("HQ", None, &mut rng).unwrap();
    store.add_app_key("Lights", 0, None, &mut rng).unwrap();
    store.add_app_key("Blinds", 0, None, &mut rng).unwrap();
    let old_net = store.net_key(0).unwrap();
    let old_apps = [store.app_key(0).unwrap(), store.app_key(1).unwrap()];
    // A second connection gives the provisioner's SEQ numbers, as the CLI does.
    let mut seq_store = Store::open(&path).unwrap();

    let building = Building::parse(&building_toml(NODES), "thirty.toml").unwrap();
    let uuids: Vec<DeviceUuid> = building.devices.iter().map(|d| d.uuid).collect();
    let provisioned = run(
        &building,
        &uuids,
        &no_oob(seed, loss, old_net.clone()),
        &mut store,
    )
    .unwrap();
    let nodes: Vec<ProvisionedNode> = provisioned
        .results
        .iter()
        .filter_map(ProvisionedNode::from_result)
        .collect();
    assert_eq!(nodes.len(), NODES, "every device provisioned");
    let lamp: BTreeMap<usize, u16> = (1..=NODES)
        .map(|i| {
            let u: DeviceUuid = uuid(i).parse().unwrap();
            (i, nodes.iter().find(|n| n.uuid == u).unwrap().address)
        })
        .collect();

    // Configuration: AppKey Add of both AppKeys to every node, recorded in the store.
    let requests: Vec<(u16, Vec<ConfigMessage>)> = nodes
        .iter()
        .map(|n| {
            let adds = (0..2u16)
                .map(|i| ConfigMessage::AppKeyAdd {
                    net_key_index: 0,
                    app_key_index: i,
                    key: old_apps[usize::from(i)].clone(),
                })
                .collect();
            (n.address, adds)
        })
        .collect();
    let config_opts = ConfigOptions {
        seed: seed + 1,
        loss: Some(loss),
        start: Instant::ZERO + provisioned.virtual_time,
        ..ConfigOptions::default()
    };
    let configured = configure_with(
        &building,
        &nodes,
        &requests,
        &config_opts,
        StoreSeq(&mut seq_store),
    )
    .unwrap();
    for r in &configured.results {
        assert_eq!(
            r.status().and_then(ConfigMessage::status),
            Some(ConfigStatus::SUCCESS),
            "{r:?}"
        );
        let ConfigMessage::AppKeyAdd { app_key_index, .. } = r.request else {
            unreachable!()
        };
        store.add_node_app_key(r.node, app_key_index).unwrap();
    }
    for i in EXCLUDED {
        store.exclude_node(lamp[&i]).unwrap();
    }
    let excluded: Vec<u16> = EXCLUDED.iter().map(|i| lamp[i]).collect();
    let silent: Vec<u16> = SILENT.iter().map(|i| lamp[i]).collect();

    // The key refresh: new keys into the store, nodes and progress from it.
    let setup = prepare(&mut store, 0, &mut rng).unwrap();
    assert!(!setup.resumed);
    let new_net = setup.keys.new_net_key.clone();
    let new_apps: Vec<AppKey> = setup.keys.app_keys.iter().map(|a| a.new.clone()).collect();
    assert_eq!(
        store.net_key(0).unwrap(),
        new_net,
        "the store holds the new key"
    );
    assert!(new_net != old_net && new_apps[0] != old_apps[0] && new_apps[1] != old_apps[1]);
    let mut kr = KeyRefresh::new(
        setup.keys.clone(),
        &setup.nodes,
        KeyRefreshConfig::default(),
        Some(setup.progress.clone()),
    )
    .unwrap();

    let start = Instant::ZERO + configured.virtual_time;
    let mesh_opts = ConfigOptions {
        seed: seed + 2,
        loss: Some(loss),
        start,
        ..ConfigOptions::default()
    };
    let mut mesh = SimMesh::new(&building, &mesh_opts, 0, StoreSeq(&mut seq_store));
    for (a, d) in configured.devices {
        mesh.add_device(a, d);
    }
    let served_before: Vec<u64> = excluded
        .iter()
        .map(|a| mesh.device(*a).unwrap().requests_served())
        .collect();
    let mut problems = Vec::new();
    let mut updated_in_phase_2 = Vec::new();
    let mut phase_done = Vec::new();
    let mut last_in_phase_2 = Duration::ZERO;
    let report = run_key_refresh(
        &mut mesh,
        &mut kr,
        &KeyRefreshOptions::default(),
        &mut StoreJournal {
            store: &mut store,
            net_key_index: 0,
        },
        &mut |ev, mesh| match ev {
            KeyRefreshEvent::PhaseStarted(Phase::UsingNewKeys) => {
                for a in &silent {
                    assert!(mesh.set_silent(*a, true));
                }
            }
            KeyRefreshEvent::NodeUpdated {
                address,
                phase: Phase::UsingNewKeys,
            } => {
                updated_in_phase_2.push(*address);
                last_in_phase_2 = mesh.now().saturating_duration_since(start);
            }
            KeyRefreshEvent::PhaseComplete(p) if *p != Phase::UsingNewKeys => {
                phase_done.push(mesh.now().saturating_duration_since(start));
            }
            KeyRefreshEvent::PhaseComplete(Phase::UsingNewKeys) => {
                phase_done.push(mesh.now().saturating_duration_since(start));
                // Every node that acknowledged phase 2 is in phase 2 (or already past it: a
                // beacon with the flag cleared may have reached it first).
                for a in &updated_in_phase_2 {
                    let s = mesh.device(*a).unwrap().config_server().unwrap();
                    if s.net_keys()[&0].phase != 2 {
                        problems.push(format!("{a:04x} in phase {}", s.net_keys()[&0].phase));
                    }
                }
            }
            _ => {}
        },
    )
    .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let first = report.virtual_time();
    assert_eq!(phase_done.len(), 3);
    println!(
        "loss {:>3.0} %: phases complete at {:.1} s, {:.1} s (last reachable node at {:.1} s; then rounds for the 2 silent nodes), {:.1} s",
        loss * 100.0,
        phase_done[0].as_secs_f64(),
        phase_done[1].as_secs_f64(),
        last_in_phase_2.as_secs_f64(),
        phase_done[2].as_secs_f64()
    );
    println!(
        "loss {:>3.0} %: key refresh of 30 nodes (3 excluded, 2 silent from phase 2) took {:.1} s of virtual time ({} advertisements, {} lost)",
        loss * 100.0,
        first.as_secs_f64(),
        report.air.adv_sent,
        report.air.adv_lost
    );

    // The summary: 25 done, the 2 silent ones unreachable in phase 2, 3 excluded.
    let s = report.summary.clone().expect("finished");
    assert_eq!(s.updated.len(), NODES - 5);
    assert!(
        s.updated
            .iter()
            .all(|a| !silent.contains(a) && !excluded.contains(a))
    );
    let mut left: Vec<u16> = s.left_behind.iter().map(|l| l.0).collect();
    left.sort_unstable();
    let mut want = silent.clone();
    want.sort_unstable();
    assert_eq!(left, want);
    for (_, done, f) in &s.left_behind {
        assert_eq!(*done, 1, "they acknowledged phase 1");
        let f = f.as_ref().unwrap();
        assert_eq!(f.phase, Phase::UsingNewKeys);
        assert_eq!(f.reason, FailureReason::Unreachable { rounds: 3 });
    }
    let mut ex = excluded.clone();
    ex.sort_unstable();
    assert_eq!(s.excluded, ex);

    // The nodes' own state.
    for a in &s.updated {
        let cs = mesh.device(*a).unwrap().config_server().unwrap();
        let k = &cs.net_keys()[&0];
        assert!(
            k.key == new_net && k.new_key.is_none() && k.phase == 0,
            "{a:04x}"
        );
        for (i, new) in new_apps.iter().enumerate() {
            let ak = &cs.app_keys()[&(i as u16)];
            assert!(ak.key == *new && ak.new_key.is_none(), "{a:04x} AppKey {i}");
        }
    }
    for (a, before) in excluded.iter().zip(&served_before) {
        let d = mesh.device(*a).unwrap();
        let cs = d.config_server().unwrap();
        let k = &cs.net_keys()[&0];
        assert!(
            k.key == old_net && k.new_key.is_none() && k.phase == 0,
            "{a:04x}"
        );
        for (i, old) in old_apps.iter().enumerate() {
            let ak = &cs.app_keys()[&(i as u16)];
            assert!(ak.key == *old && ak.new_key.is_none());
        }
        assert_eq!(d.requests_served(), *before, "{a:04x} received no request");
        assert!(
            !report.sent_to.contains_key(a),
            "nothing was sent to {a:04x}"
        );
    }
    for a in &silent {
        let k = &mesh.device(*a).unwrap().config_server().unwrap().net_keys()[&0];
        assert!(k.phase == 1 && k.new_key.as_ref() == Some(&new_net) && k.key == old_net);
    }
    // The store: new keys, old ones kept for the two left behind, the journal says so.
    let record = store.key_refresh(0).unwrap().expect("journal kept");
    assert_eq!(record.old_net_key, old_net);
    assert_eq!(record.new_net_key, new_net);
    assert_eq!(record.phase, 2);
    assert_eq!(report.progress.unfinished(), want);

    // Resume: the two are back; a new procedure from the store's journal finishes them.
    let devices = mesh.into_devices();
    let setup = prepare(&mut store, 0, &mut rng).unwrap();
    assert!(setup.resumed);
    assert!(setup.keys.new_net_key == new_net, "the same new keys");
    let mut kr = KeyRefresh::new(
        setup.keys,
        &setup.nodes,
        KeyRefreshConfig::default(),
        Some(setup.progress),
    )
    .unwrap();
    let mut mesh = SimMesh::new(
        &building,
        &ConfigOptions {
            seed: seed + 3,
            start: report.ended,
            ..mesh_opts
        },
        0,
        StoreSeq(&mut seq_store),
    );
    for (a, d) in devices {
        mesh.add_device(a, d);
    }
    let resumed = run_key_refresh(
        &mut mesh,
        &mut kr,
        &KeyRefreshOptions::default(),
        &mut StoreJournal {
            store: &mut store,
            net_key_index: 0,
        },
        &mut |_, _| {},
    )
    .unwrap();
    let second = resumed.virtual_time();
    println!(
        "loss {:>3.0} %: resumed run for the 2 nodes took {:.1} s of virtual time",
        loss * 100.0,
        second.as_secs_f64()
    );
    let s = resumed.summary.expect("finished");
    assert!(s.is_complete(), "{s:?}");
    assert_eq!(s.updated.len(), NODES - 3);
    let mut to: Vec<u16> = resumed.sent_to.keys().copied().collect();
    to.sort_unstable();
    assert_eq!(to, want, "only the two left behind were asked anything");
    for a in &silent {
        let cs = mesh.device(*a).unwrap().config_server().unwrap();
        let k = &cs.net_keys()[&0];
        assert!(k.key == new_net && k.new_key.is_none() && k.phase == 0);
        for (i, new) in new_apps.iter().enumerate() {
            assert!(cs.app_keys()[&(i as u16)].key == *new);
        }
    }
    for a in &excluded {
        let k = &mesh.device(*a).unwrap().config_server().unwrap().net_keys()[&0];
        assert!(k.key == old_net && k.phase == 0);
    }
    assert!(store.key_refresh(0).unwrap().is_none(), "journal closed");
    let info = store.network().unwrap();
    assert_eq!(info.net_keys[0].phase, 0);
    let cdb = store.export_cdb(&Default::default()).unwrap();
    assert!(!cdb.contains("oldKey"), "old keys dropped");
    (first, second)
}

#[test]
fn thirty_nodes_at_0_percent_loss() {
    thirty_nodes(0.0, 11);
}

#[test]
fn thirty_nodes_at_20_percent_loss() {
    thirty_nodes(0.2, 12);
}

#[test]
fn a_journal_resumes_and_nodes_provisioned_meanwhile_count_as_done() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("j.db")).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    store.create_network("J", None, &mut rng).unwrap();
    store.add_app_key("a", 0, None, &mut rng).unwrap();
    let add = |store: &mut Store, i: u8| {
        let uuid = DeviceUuid([i; 16]);
        let address = store.allocate_unicast(&uuid, 1).unwrap();
        store
            .commit_node(&NewNode {
                uuid,
                name: format!("n{i}"),
                address,
                elements: 1,
                device_key: DevKey::from_bytes([i; 16]),
                net_key_index: 0,
                location: None,
            })
            .unwrap();
        address
    };
    let first = add(&mut store, 1);
    store.add_node_app_key(first, 0).unwrap();
    let old = store.net_key(0).unwrap();
    let begun = prepare(&mut store, 0, &mut rng).unwrap();
    assert!(!begun.resumed);
    assert!(begun.keys.old_net_key == old && begun.keys.new_net_key != old);
    assert_eq!(begun.nodes.len(), 1);
    assert_eq!(begun.nodes[0].app_keys, [0]);
    assert_eq!(begun.progress.nodes[&first].completed, 0);
    // Provisioned now: with the store's key, the new one.
    let later = add(&mut store, 2);
    let resumed = prepare(&mut store, 0, &mut rng).unwrap();
    assert!(resumed.resumed);
    assert!(
        resumed.keys.new_net_key == begun.keys.new_net_key,
        "same new key"
    );
    assert!(resumed.keys.app_keys[0].new == begun.keys.app_keys[0].new);
    assert_eq!(resumed.progress.nodes[&first].completed, 0);
    assert_eq!(resumed.progress.nodes[&later].completed, 3);
}

const OLD: [u8; 16] = [0x11; 16];
const NEW: [u8; 16] = [0x22; 16];

fn one_node_building() -> Building {
    Building::parse(&building_toml(1), "one.toml").unwrap()
}

/// One provisioned node at 0x0001 (device key 0x33…) with the old NetKey.
fn one_node(mesh: &mut SimMesh<MemorySeqSource>, building: &Building) {
    let state = DeviceState::Provisioned {
        address: 1,
        device_key: DevKey::from_bytes([0x33; 16]),
        net_key: NetKey::from_bytes(OLD),
        net_key_index: 0,
        iv_index: 0,
    };
    mesh.add_provisioned(building.devices[0].clone(), state, 5);
    mesh.transport_mut()
        .add_dev_key(1, DevKey::from_bytes([0x33; 16]));
}

/// The provisioner's keys: `tx` to send with, `rx` to receive with too.
fn provisioner_keys(mesh: &mut SimMesh<MemorySeqSource>, tx: [u8; 16], rx: Option<[u8; 16]>) {
    let net = mesh.transport_mut().network_mut();
    match rx {
        Some(other) => {
            net.add_subnet(0, &NetKey::from_bytes(other));
            net.update_subnet(0, &NetKey::from_bytes(tx)).unwrap();
            net.use_new_key(0).unwrap();
        }
        None => net.add_subnet(0, &NetKey::from_bytes(tx)),
    }
}

/// Sends one request and returns the status, or `None` if the node never answered.
fn ask(mesh: &mut SimMesh<MemorySeqSource>, m: ConfigMessage) -> Option<ConfigMessage> {
    mesh.request(1, 0, m).unwrap();
    let deadline = mesh.now() + Duration::from_secs(60);
    match mesh.run_until_events(deadline).pop()? {
        ConfigEvent::Response { message, .. } => Some(message),
        ConfigEvent::TimedOut { .. } => None,
    }
}

fn phase_get() -> ConfigMessage {
    ConfigMessage::KeyRefreshPhaseGet { net_key_index: 0 }
}

#[test]
fn the_node_sends_old_then_new_keys_and_drops_the_old_ones() {
    let b = one_node_building();
    let opts = ConfigOptions {
        client: meshprov::net::config::ConfigClientConfig {
            timeouts: vec![Duration::from_secs(2)],
        },
        ..ConfigOptions::default()
    };
    let mut mesh = SimMesh::new(&b, &opts, 0, MemorySeqSource::new());
    one_node(&mut mesh, &b);
    provisioner_keys(&mut mesh, OLD, None);
    let r = ask(
        &mut mesh,
        ConfigMessage::NetKeyUpdate {
            net_key_index: 0,
            key: NetKey::from_bytes(NEW),
        },
    );
    assert!(
        matches!(r, Some(ConfigMessage::NetKeyStatus { status, .. }) if status == ConfigStatus::SUCCESS)
    );

    // Phase 1: the node reads the new key but still sends with the old one.
    provisioner_keys(&mut mesh, NEW, None);
    assert_eq!(
        ask(&mut mesh, phase_get()),
        None,
        "its answer is under the old key"
    );
    provisioner_keys(&mut mesh, NEW, Some(OLD));
    assert!(matches!(
        ask(&mut mesh, phase_get()),
        Some(ConfigMessage::KeyRefreshPhaseStatus { phase: 1, .. })
    ));

    // Phase 2: it sends with the new key and still reads the old one.
    let r = ask(
        &mut mesh,
        ConfigMessage::KeyRefreshPhaseSet {
            net_key_index: 0,
            transition: 2,
        },
    );
    assert!(matches!(
        r,
        Some(ConfigMessage::KeyRefreshPhaseStatus { phase: 2, .. })
    ));
    provisioner_keys(&mut mesh, NEW, None);
    assert!(matches!(
        ask(&mut mesh, phase_get()),
        Some(ConfigMessage::KeyRefreshPhaseStatus { phase: 2, .. })
    ));
    // Sending with the old key (and reading both).
    provisioner_keys(&mut mesh, OLD, Some(NEW));
    assert!(
        ask(&mut mesh, phase_get()).is_some(),
        "phase 2 still reads the old key"
    );

    // Phase 3: the old key is gone.
    provisioner_keys(&mut mesh, NEW, None);
    assert!(matches!(
        ask(
            &mut mesh,
            ConfigMessage::KeyRefreshPhaseSet {
                net_key_index: 0,
                transition: 3
            }
        ),
        Some(ConfigMessage::KeyRefreshPhaseStatus { phase: 0, .. })
    ));
    provisioner_keys(&mut mesh, OLD, Some(NEW));
    assert_eq!(ask(&mut mesh, phase_get()), None, "the old key is not read");
    provisioner_keys(&mut mesh, NEW, None);
    assert!(ask(&mut mesh, phase_get()).is_some());
    let k = &mesh.device(1).unwrap().config_server().unwrap().net_keys()[&0];
    assert!(k.key == NetKey::from_bytes(NEW) && k.new_key.is_none());
}

fn beacon(key: [u8; 16], key_refresh: bool) -> Delivery {
    let k = NetKey::from_bytes(key);
    let b = secure_network_encode(
        &toolbox::beacon_key(&k),
        BeaconState {
            flags: u8::from(key_refresh),
            iv_index: 0,
        },
        &toolbox::k3(&k),
    );
    Delivery::Adv {
        to: EndpointId(1),
        from: EndpointId(0),
        ad_type: AD_TYPE_MESH_BEACON,
        data: b.to_vec(),
    }
}

fn phase_of(d: &VirtualDevice) -> (u8, bool) {
    let k = &d.config_server().unwrap().net_keys()[&0];
    (k.phase, k.key == NetKey::from_bytes(NEW))
}

#[test]
fn secure_network_beacons_move_a_node_through_the_phases() {
    let b = one_node_building();
    let state = || DeviceState::Provisioned {
        address: 1,
        device_key: DevKey::from_bytes([0x33; 16]),
        net_key: NetKey::from_bytes(OLD),
        net_key_index: 0,
        iv_index: 0,
    };
    let update = ConfigMessage::NetKeyUpdate {
        net_key_index: 0,
        key: NetKey::from_bytes(NEW),
    };
    let now = Instant::ZERO;
    let mut d = VirtualDevice::provisioned(b.devices[0].clone(), EndpointId(1), 1, state());

    // Phase 0: a beacon with the flag set, under either key, changes nothing.
    d.handle_delivery(now, &beacon(OLD, true));
    d.handle_delivery(now, &beacon(NEW, true));
    assert_eq!(phase_of(&d), (0, false));

    assert!(matches!(
        d.configure_locally(&update),
        Some(ConfigMessage::NetKeyStatus { status, .. }) if status == ConfigStatus::SUCCESS
    ));
    assert_eq!(phase_of(&d), (1, false));
    // Under the old key: ignored.
    d.handle_delivery(now, &beacon(OLD, true));
    d.handle_delivery(now, &beacon(OLD, false));
    assert_eq!(phase_of(&d), (1, false));
    // Under the new key with the flag set: phase 2; cleared: normal operation, new key.
    d.handle_delivery(now, &beacon(NEW, true));
    assert_eq!(phase_of(&d), (2, false));
    d.handle_delivery(now, &beacon(NEW, true));
    assert_eq!(phase_of(&d), (2, false));
    d.handle_delivery(now, &beacon(NEW, false));
    assert_eq!(phase_of(&d), (0, true));

    // From phase 1 a cleared flag under the new key skips phase 2.
    let mut d = VirtualDevice::provisioned(b.devices[0].clone(), EndpointId(1), 1, state());
    d.configure_locally(&update);
    d.handle_delivery(now, &beacon(NEW, false));
    assert_eq!(phase_of(&d), (0, true));
    // A truncated or foreign beacon is ignored.
    let mut short = beacon(NEW, true);
    if let Delivery::Adv { data, .. } = &mut short {
        data.truncate(10);
    }
    d.handle_delivery(now, &short);
    assert_eq!(phase_of(&d), (0, true));
}

// --- the command line ---

fn meshprov(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshprov"))
        .args(args)
        .env("XDG_DATA_HOME", "/nonexistent-meshprov-test")
        .output()
        .expect("run meshprov");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn key_refresh_from_the_command_line_resumes_and_exits_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hq.db");
    let db = db.to_str().unwrap();
    let file = dir.path().join("b.toml");
    std::fs::write(&file, building_toml(5)).unwrap();
    let radio = format!("sim:{}", file.display());

    let (c, _, e) = meshprov(&["net", "create", "hq", "--store", db]);
    assert_eq!(c, 0, "{e}");
    let (c, _, e) = meshprov(&["net", "add-app-key", "Lights", "--store", db]);
    assert_eq!(c, 0, "{e}");
    for i in 1..=5 {
        let (c, out, e) = meshprov(&[
            "provision",
            &uuid(i),
            "--radio",
            &radio,
            "--auth",
            "none",
            "--store",
            db,
        ]);
        assert_eq!(c, 0, "{out}{e}");
    }

    // Usage errors: exit 2, nothing changes.
    for bad in [
        &["--radio", "ble:hci0"][..],
        &["--radio", &radio, "--net-key-index", "7"],
        &["--radio", &radio, "--exclude", "zz"],
        &["--radio", &radio, "--exclude", "0042"],
        &["--radio", &radio, "--loss", "2"],
        &["--radio", "sim:/nonexistent/b.toml"],
    ] {
        let mut args = vec!["net", "key-refresh", "--store", db];
        args.extend_from_slice(bad);
        let (c, _, e) = meshprov(&args);
        assert_eq!(c, 2, "{bad:?}: {e}");
        assert!(e.starts_with("meshprov: ") && e.lines().count() == 1, "{e}");
    }
    let (_, show, _) = meshprov(&["net", "show", "--store", db, "--json"]);
    assert!(show.contains("\"phase\":0"), "no key refresh began: {show}");

    // Node 0005 excluded, node 0003 off the air: exit 1, and how to resume.
    let (c, out, e) = meshprov(&[
        "net",
        "key-refresh",
        "--store",
        db,
        "--radio",
        &radio,
        "--exclude",
        "0005",
        "--silent",
        "0003",
    ]);
    assert_eq!(c, 1, "{out}{e}");
    assert!(out.contains("excluded 0005 (Lamp 5)"), "{out}");
    assert!(
        out.contains("Starting a key refresh of NetKey 0 and AppKey 0: 4 nodes, 1 excluded"),
        "{out}"
    );
    assert!(out.contains("0001 (Lamp 1): done with phase 3"), "{out}");
    assert!(
        out.contains("0003 (Lamp 3): FAILED in phase 1: no answer after 3 rounds of requests"),
        "{out}"
    );
    assert!(!out.contains("0005 (Lamp 5): done"), "{out}");
    assert!(out.contains("virtual time"), "{out}");
    assert!(
        e.contains("0003 (no answer after 3 rounds of requests)"),
        "{e}"
    );
    assert!(e.contains("re-run the same command to resume it"), "{e}");
    let (_, list, _) = meshprov(&["node", "list", "--store", db]);
    assert!(list.contains("excluded"), "{list}");

    // Re-running resumes: only node 0003 is left, with the same new keys.
    let (c, out, e) = meshprov(&[
        "net",
        "key-refresh",
        "--store",
        db,
        "--radio",
        &radio,
        "--json",
    ]);
    assert_eq!(c, 0, "{out}{e}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines[0]["event"], "start");
    assert_eq!(lines[0]["resumed"], true);
    let updated: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["event"] == "node_updated")
        .collect();
    assert!(!updated.is_empty());
    assert!(updated.iter().all(|l| l["address"] == "0003"), "{out}");
    let last = lines.last().unwrap();
    assert_eq!(last["result"], "complete", "{out}");
    assert!(last["virtual_time_ms"].as_u64().unwrap() > 0);
    let fin = lines.iter().find(|l| l["event"] == "finished").unwrap();
    assert_eq!(fin["updated"].as_array().unwrap().len(), 4);
    assert_eq!(fin["excluded"], serde_json::json!(["0005"]));

    // Done: the old keys are gone from the store.
    let (c, cdb, e) = meshprov(&["cdb", "export", "-", "--store", db]);
    assert_eq!(c, 0, "{e}");
    assert!(!cdb.contains("oldKey"), "{cdb}");
}
