//! Configuration against simulated nodes over the simulated advertising bearer, in virtual
//! time: Composition Data Get (segmented status), AppKey Add (segmented), Model App Bind,
//! Model Publication Set, Model Subscription Add and Node Reset at 0 % and 20 % loss, each
//! checked against the node's resulting Configuration Server state; error statuses; a node
//! that does not answer; and the Configuration Server's status codes one by one.

use std::time::Duration;

use meshprov::crypto::{AppKey, NetKey};
use meshprov::net::config::{
    CompositionPage0, ConfigMessage, ConfigStatus, Features, ModelId, PublishParams,
};
use meshprov::net::config_server::{ConfigServer, ServerEffect};
use meshprov::provisioning::{AuthPolicy, ProvisionerConfig};
use meshprov::sim::building::Building;
use meshprov::sim::configure::{
    self, ConfigOptions, ConfigOutcome, ConfigReport, ProvisionedNode, provision_and_configure,
};
use meshprov::sim::node::DeviceState;
use meshprov::sim::run::{MemorySink, RunOptions};
use meshprov::uuid::DeviceUuid;

const BUILDING: &str = r#"
[network]
net_key = "7dd7364cd842ad18c17c2b820c84c3d6"
iv_index = 0x12345678

[[device]]
uuid = "7b2c1a90-0000-4000-8000-0000000000a1"
name = "default models"
elements = 2

[[device]]
uuid = "7b2c1a90-0000-4000-8000-0000000000a2"
name = "listed models"
cid = 0x0059
pid = 0x1234
vid = 7
crpl = 64
features = ["relay", "friend"]

[[device.element]]
location = 0x0100
models = ["1000", "1001", "0x0059:0001"]

[[device.element]]
models = ["1000", "1002"]
"#;

const ONOFF: ModelId = ModelId::Sig(0x1000);
const HEALTH: ModelId = ModelId::Sig(0x0002);
const GROUP_PUB: u16 = 0xc001;
const GROUP_SUB: u16 = 0xc002;

fn building() -> Building {
    Building::parse(BUILDING, "sim_config.toml").expect("building")
}

fn uuids(b: &Building) -> Vec<DeviceUuid> {
    b.devices.iter().map(|d| d.uuid).collect()
}

fn run_options(seed: u64, loss: f64) -> RunOptions {
    RunOptions {
        config: ProvisionerConfig {
            allow_no_oob: true,
            auth: AuthPolicy::NoOob,
            ..ProvisionerConfig::default()
        },
        seed,
        loss: Some(loss),
        ..RunOptions::default()
    }
}

fn app_key() -> AppKey {
    AppKey::from_bytes([0x63; 16])
}

fn publish() -> PublishParams {
    PublishParams {
        app_key_index: 1,
        credential: false,
        ttl: 5,
        period: 0x41,
        retransmit: 0x0a,
    }
}

/// The configuration of one node; `reset` ends it with Node Reset.
fn requests(node: &ProvisionedNode, reset: bool) -> Vec<ConfigMessage> {
    let a = node.address;
    let mut v = vec![
        ConfigMessage::CompositionDataGet { page: 0 },
        ConfigMessage::AppKeyAdd {
            net_key_index: 0,
            app_key_index: 1,
            key: app_key(),
        },
        ConfigMessage::ModelAppBind {
            element: a + 1,
            app_key_index: 1,
            model: ONOFF,
        },
        ConfigMessage::ModelPublicationSet {
            element: a,
            address: GROUP_PUB,
            publish: publish(),
            model: ONOFF,
        },
        ConfigMessage::ModelSubscriptionAdd {
            element: a,
            address: GROUP_SUB,
            model: ONOFF,
        },
        // Errors: an AppKey the node does not have, a model the element lacks.
        ConfigMessage::ModelAppBind {
            element: a,
            app_key_index: 7,
            model: ONOFF,
        },
        ConfigMessage::ModelAppBind {
            element: a + 1,
            app_key_index: 1,
            model: HEALTH,
        },
    ];
    if reset {
        v.push(ConfigMessage::NodeReset);
    }
    v
}

fn status_of(report: &ConfigReport, i: usize) -> &ConfigMessage {
    let r = &report.results[i];
    r.status()
        .unwrap_or_else(|| panic!("request {i} ({:?}) timed out", r.request))
}

fn full_configuration(loss: f64, seed: u64) {
    let b = building();
    let mut sink = MemorySink::starting_at(0x0010);
    let first_uuid = b.devices[0].uuid;
    let (prov, report) = provision_and_configure(
        &b,
        &uuids(&b),
        &run_options(seed, loss),
        &mut sink,
        // The first device keeps its configuration, the second is reset at the end.
        |n| requests(n, n.uuid != first_uuid),
        &ConfigOptions {
            seed,
            loss: Some(loss),
            ..ConfigOptions::default()
        },
    )
    .expect("run");
    assert!(
        prov.results.iter().all(|r| r.outcome.is_ok()),
        "provisioning failed"
    );
    let per_node = requests(
        &ProvisionedNode::from_result(&prov.results[0]).unwrap(),
        false,
    )
    .len();
    assert_eq!(report.results.len(), 2 * per_node + 1);
    for r in &report.results {
        println!(
            "loss {:>3.0} %  node {:#06x}  {:<28} attempts {}  {:>6} ms  (started at {} ms)",
            loss * 100.0,
            r.node,
            format!("{:?}", r.request.opcode()),
            r.attempts,
            r.elapsed.as_millis(),
            r.started.map_or(0, |t| t.since_epoch().as_millis()),
        );
    }
    println!(
        "loss {:.0} %: provisioning ended at {} ms, configuration at {} ms; air {:?}",
        loss * 100.0,
        prov.virtual_time.as_millis(),
        report.virtual_time.as_millis(),
        report.air
    );

    for (n, spec) in b.devices.iter().enumerate() {
        let base = n * per_node;
        let addr = report.results[base].node;
        // Composition Data Status: segmented (longer than one unsegmented PDU) and equal to
        // the building file's device.
        match status_of(&report, base) {
            ConfigMessage::CompositionDataStatus { page: 0, data } => {
                assert!(data.len() + 2 + 4 > 15, "fits one PDU: not segmented");
                assert_eq!(CompositionPage0::parse(data).unwrap(), spec.composition);
            }
            other => panic!("{other:?}"),
        }
        let expect = [
            (1, ConfigStatus::SUCCESS),
            (2, ConfigStatus::SUCCESS),
            (3, ConfigStatus::SUCCESS),
            (4, ConfigStatus::SUCCESS),
            (5, ConfigStatus::INVALID_APPKEY_INDEX),
            (6, ConfigStatus::INVALID_MODEL),
        ];
        for (i, status) in expect {
            assert_eq!(
                status_of(&report, base + i).status(),
                Some(status),
                "request {i} of {addr:#06x}: {:?}",
                report.results[base + i].request
            );
        }
        let dev = report.device(addr).expect("device");
        if n == 0 {
            let s = dev.config_server().expect("still provisioned");
            let k = &s.app_keys()[&1];
            assert_eq!(k.net_key_index, 0);
            assert!(k.key == app_key());
            assert_eq!(s.model(addr + 1, ONOFF).unwrap().bindings, [1]);
            assert!(s.model(addr, ONOFF).unwrap().bindings.is_empty());
            let p = s
                .model(addr, ONOFF)
                .unwrap()
                .publication
                .expect("publication");
            assert_eq!((p.address, p.params), (GROUP_PUB, publish()));
            assert_eq!(s.model(addr, ONOFF).unwrap().subscriptions, [GROUP_SUB]);
            assert!(matches!(dev.state(), DeviceState::Provisioned { .. }));
        } else {
            assert_eq!(
                status_of(&report, base + per_node),
                &ConfigMessage::NodeResetStatus
            );
            assert!(dev.config_server().is_none(), "reset node keeps its state");
            assert!(matches!(dev.state(), DeviceState::Unprovisioned));
        }
    }
}

#[test]
fn configuration_over_a_clean_air() {
    full_configuration(0.0, 11);
}

#[test]
fn configuration_at_20_percent_loss() {
    full_configuration(0.2, 12);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let once = || {
        let b = building();
        let mut sink = MemorySink::starting_at(0x0010);
        let (_, report) = provision_and_configure(
            &b,
            &uuids(&b),
            &run_options(21, 0.2),
            &mut sink,
            |n| requests(n, false),
            &ConfigOptions {
                seed: 21,
                loss: Some(0.2),
                ..ConfigOptions::default()
            },
        )
        .unwrap();
        let times: Vec<(usize, Duration)> = report
            .results
            .iter()
            .map(|r| (r.attempts, r.elapsed))
            .collect();
        (report.virtual_time, report.air, times)
    };
    assert_eq!(once(), once());
}

#[test]
fn a_node_that_does_not_answer_times_out() {
    let b = building();
    let mut sink = MemorySink::starting_at(0x0010);
    let prov = meshprov::sim::run::run(&b, &uuids(&b), &run_options(3, 0.0), &mut sink).unwrap();
    let nodes: Vec<ProvisionedNode> = prov
        .results
        .iter()
        .filter_map(ProvisionedNode::from_result)
        .collect();
    assert_eq!(nodes.len(), 2);
    let silent = nodes[1].address;
    let report = configure::configure(
        &b,
        &nodes,
        &[
            (nodes[0].address, vec![ConfigMessage::BeaconGet]),
            (silent, vec![ConfigMessage::CompositionDataGet { page: 0 }]),
        ],
        &ConfigOptions {
            silent: vec![silent],
            ..ConfigOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        report.results[0].outcome,
        ConfigOutcome::Status(ConfigMessage::BeaconStatus { state: 1 })
    );
    let r = &report.results[1];
    assert_eq!(r.outcome, ConfigOutcome::TimedOut);
    assert_eq!(r.attempts, 3);
    assert_eq!(r.elapsed, Duration::from_secs(14));
    println!("silent node: timed out after {} ms", r.elapsed.as_millis());
}

#[test]
fn nodes_and_seq_numbers_from_the_store() {
    use meshprov::store::{NodeRef, Store};
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::SeedableRng;

    let b = building();
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("net.db")).unwrap();
    let net_key = NetKey::from_bytes(b.network.net_key.unwrap());
    store
        .create_network(
            "sim",
            Some(net_key.clone()),
            &mut ChaCha20Rng::seed_from_u64(5),
        )
        .unwrap();
    let opts = RunOptions {
        net_key: Some(net_key),
        ..run_options(5, 0.0)
    };
    let prov = meshprov::sim::run::run(&b, &uuids(&b)[..1], &opts, &mut store).unwrap();
    assert!(prov.results[0].outcome.is_ok());
    let node = ProvisionedNode::from_store(&store, &NodeRef::Uuid(b.devices[0].uuid)).unwrap();
    let report = configure::configure_with(
        &b,
        std::slice::from_ref(&node),
        &[(
            node.address,
            vec![
                ConfigMessage::CompositionDataGet { page: 0 },
                ConfigMessage::DefaultTtlSet { ttl: 9 },
            ],
        )],
        &ConfigOptions::default(),
        configure::StoreSeq(&mut store),
    )
    .unwrap();
    assert!(matches!(
        report.results[0].status(),
        Some(ConfigMessage::CompositionDataStatus { .. })
    ));
    assert_eq!(
        report.results[1].status(),
        Some(&ConfigMessage::DefaultTtlStatus { ttl: 9 })
    );
    assert_eq!(
        report
            .device(node.address)
            .unwrap()
            .config_server()
            .unwrap()
            .default_ttl(),
        9
    );
    // The provisioner's SEQ numbers came from the store: the next block starts after them.
    let next = store
        .reserve_seq(ConfigOptions::default().address, 1)
        .unwrap();
    assert!(next.start >= 256, "{next:?}");
}

#[test]
fn a_reset_node_can_be_configured_no_more() {
    let b = building();
    let mut sink = MemorySink::starting_at(0x0010);
    let prov =
        meshprov::sim::run::run(&b, &uuids(&b)[..1], &run_options(4, 0.0), &mut sink).unwrap();
    let nodes: Vec<ProvisionedNode> = prov
        .results
        .iter()
        .filter_map(ProvisionedNode::from_result)
        .collect();
    let a = nodes[0].address;
    let report = configure::configure(
        &b,
        &nodes,
        &[(a, vec![ConfigMessage::NodeReset, ConfigMessage::BeaconGet])],
        &ConfigOptions::default(),
    )
    .unwrap();
    assert_eq!(
        report.results[0].outcome,
        ConfigOutcome::Status(ConfigMessage::NodeResetStatus)
    );
    assert_eq!(report.results[1].outcome, ConfigOutcome::TimedOut);
}

// The Configuration Server's status codes, without the air.

fn server() -> ConfigServer {
    let b = building();
    ConfigServer::new(
        b.devices[1].composition.clone(),
        0x0100,
        0,
        NetKey::from_bytes([1; 16]),
    )
}

fn status(s: &mut ConfigServer, m: ConfigMessage) -> Option<ConfigStatus> {
    s.handle(0, &m).reply.and_then(|r| r.status())
}

#[test]
fn server_key_statuses() {
    let mut s = server();
    let add = |idx, net, byte| ConfigMessage::AppKeyAdd {
        net_key_index: net,
        app_key_index: idx,
        key: AppKey::from_bytes([byte; 16]),
    };
    assert_eq!(status(&mut s, add(1, 0, 1)), Some(ConfigStatus::SUCCESS));
    assert_eq!(
        status(&mut s, add(1, 0, 1)),
        Some(ConfigStatus::SUCCESS),
        "the same key again"
    );
    assert_eq!(
        status(&mut s, add(1, 0, 2)),
        Some(ConfigStatus::KEY_INDEX_ALREADY_STORED)
    );
    assert_eq!(
        status(&mut s, add(2, 5, 1)),
        Some(ConfigStatus::INVALID_NETKEY_INDEX)
    );
    let net_add = |idx, byte| ConfigMessage::NetKeyAdd {
        net_key_index: idx,
        key: NetKey::from_bytes([byte; 16]),
    };
    assert_eq!(status(&mut s, net_add(0, 1)), Some(ConfigStatus::SUCCESS));
    assert_eq!(
        status(&mut s, net_add(0, 9)),
        Some(ConfigStatus::KEY_INDEX_ALREADY_STORED)
    );
    let r = s.handle(0, &net_add(3, 3));
    assert_eq!(r.reply.unwrap().status(), Some(ConfigStatus::SUCCESS));
    assert!(matches!(
        r.effects[..],
        [ServerEffect::NetKeyAdded { index: 3, .. }]
    ));
    assert_eq!(
        s.handle(3, &ConfigMessage::NetKeyDelete { net_key_index: 3 })
            .reply
            .and_then(|r| r.status()),
        Some(ConfigStatus::CANNOT_REMOVE),
        "the NetKey the request came in on"
    );
    assert_eq!(
        status(&mut s, ConfigMessage::NetKeyDelete { net_key_index: 3 }),
        Some(ConfigStatus::SUCCESS)
    );
    assert_eq!(
        status(&mut s, ConfigMessage::NetKeyDelete { net_key_index: 0 }),
        Some(ConfigStatus::CANNOT_REMOVE),
        "the last NetKey"
    );
    assert_eq!(
        status(
            &mut s,
            ConfigMessage::AppKeyDelete {
                net_key_index: 0,
                app_key_index: 9
            }
        ),
        Some(ConfigStatus::SUCCESS),
        "deleting an absent key is idempotent"
    );
}

#[test]
fn server_model_statuses() {
    let mut s = server();
    s.handle(
        0,
        &ConfigMessage::AppKeyAdd {
            net_key_index: 0,
            app_key_index: 1,
            key: app_key(),
        },
    );
    let bind = |element, model| ConfigMessage::ModelAppBind {
        element,
        app_key_index: 1,
        model,
    };
    let vendor = ModelId::Vendor {
        company_id: 0x0059,
        model_id: 1,
    };
    assert_eq!(
        status(&mut s, bind(0x0100, vendor)),
        Some(ConfigStatus::SUCCESS)
    );
    assert_eq!(
        status(&mut s, bind(0x0100, ModelId::CONFIG_SERVER)),
        Some(ConfigStatus::CANNOT_BIND)
    );
    assert_eq!(
        status(&mut s, bind(0x0102, ONOFF)),
        Some(ConfigStatus::INVALID_ADDRESS),
        "element 3 of a 2-element node"
    );
    assert_eq!(
        status(&mut s, bind(0x0101, ModelId::Sig(0x1001))),
        Some(ConfigStatus::INVALID_MODEL)
    );
    assert_eq!(
        status(
            &mut s,
            ConfigMessage::ModelSubscriptionAdd {
                element: 0x0100,
                address: 0xc000,
                model: ModelId::CONFIG_SERVER
            }
        ),
        Some(ConfigStatus::NOT_A_SUBSCRIBE_MODEL)
    );
    assert_eq!(
        status(
            &mut s,
            ConfigMessage::ModelPublicationSet {
                element: 0x0100,
                address: 0xc000,
                publish: PublishParams {
                    app_key_index: 4,
                    ..publish()
                },
                model: ONOFF
            }
        ),
        Some(ConfigStatus::INVALID_APPKEY_INDEX)
    );
    assert_eq!(
        status(
            &mut s,
            ConfigMessage::ModelSubscriptionAdd {
                element: 0x0100,
                address: 0xffff,
                model: ONOFF
            }
        ),
        Some(ConfigStatus::INVALID_ADDRESS),
        "all-nodes"
    );
    let label = [0x42; 16];
    let virt = meshprov::crypto::toolbox::virtual_address(&label);
    let r = s.handle(
        0,
        &ConfigMessage::ModelSubscriptionVirtualAdd {
            element: 0x0101,
            label,
            model: ONOFF,
        },
    );
    assert_eq!(
        r.reply,
        Some(ConfigMessage::ModelSubscriptionStatus {
            status: ConfigStatus::SUCCESS,
            element: 0x0101,
            address: virt,
            model: ONOFF
        })
    );
    assert_eq!(r.effects, [ServerEffect::Subscribe(virt)]);
    assert_eq!(s.labels(), [label]);
    let r = s.handle(
        0,
        &ConfigMessage::ModelSubscriptionDeleteAll {
            element: 0x0101,
            model: ONOFF,
        },
    );
    assert_eq!(r.effects, [ServerEffect::Unsubscribe(virt)]);
    assert!(s.labels().is_empty());
    // Deleting the AppKey unbinds it everywhere.
    s.handle(
        0,
        &ConfigMessage::AppKeyDelete {
            net_key_index: 0,
            app_key_index: 1,
        },
    );
    assert!(s.model(0x0100, vendor).unwrap().bindings.is_empty());
    assert_eq!(
        s.composition().features,
        Features(Features::RELAY | Features::FRIEND)
    );
    assert_eq!(s.gatt_proxy(), 2, "no proxy feature: not supported");
}

#[test]
fn server_key_refresh_phases() {
    let mut s = server();
    s.handle(
        0,
        &ConfigMessage::AppKeyAdd {
            net_key_index: 0,
            app_key_index: 1,
            key: app_key(),
        },
    );
    let phase = |s: &mut ConfigServer, transition| match s
        .handle(
            0,
            &ConfigMessage::KeyRefreshPhaseSet {
                net_key_index: 0,
                transition,
            },
        )
        .reply
    {
        Some(ConfigMessage::KeyRefreshPhaseStatus { status, phase, .. }) => (status, phase),
        other => panic!("{other:?}"),
    };
    assert_eq!(phase(&mut s, 2), (ConfigStatus::CANNOT_UPDATE, 0));
    let update = ConfigMessage::AppKeyUpdate {
        net_key_index: 0,
        app_key_index: 1,
        key: AppKey::from_bytes([7; 16]),
    };
    assert_eq!(
        status(&mut s, update.clone()),
        Some(ConfigStatus::CANNOT_UPDATE),
        "AppKey Update outside phase 1"
    );
    let new_net = NetKey::from_bytes([2; 16]);
    assert_eq!(
        status(
            &mut s,
            ConfigMessage::NetKeyUpdate {
                net_key_index: 0,
                key: new_net.clone()
            }
        ),
        Some(ConfigStatus::SUCCESS)
    );
    assert_eq!(s.key_refresh_phase(0), Some(1));
    assert_eq!(status(&mut s, update), Some(ConfigStatus::SUCCESS));
    assert_eq!(phase(&mut s, 2), (ConfigStatus::SUCCESS, 2));
    assert_eq!(phase(&mut s, 3), (ConfigStatus::SUCCESS, 0));
    assert!(s.net_keys()[&0].key == new_net);
    assert!(s.app_keys()[&1].key == AppKey::from_bytes([7; 16]));
    assert_eq!(
        status(
            &mut s,
            ConfigMessage::KeyRefreshPhaseGet { net_key_index: 9 }
        ),
        Some(ConfigStatus::INVALID_NETKEY_INDEX)
    );
}
