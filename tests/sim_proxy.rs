//! Configuration through a GATT proxy node on the simulated air, in virtual time: the
//! provisioner talks GATT to one node only and reaches the two others through it (the proxy
//! node relays to and from the advertising bearer). Composition Data Get (segmented status),
//! AppKey Add (segmented) and Model App Bind to the proxy node itself and to the two others,
//! at 0 % and 20 % advertising loss, each node's state checked afterwards; a node without the
//! proxy feature refuses the connection; a silent proxy node makes the filter set-up retry and
//! fail with a typed error.

use std::time::Duration;

use meshprov::crypto::{AppKey, DevKey, NetKey};
use meshprov::net::config::{CompositionPage0, ConfigMessage, ConfigStatus, ModelId};
use meshprov::net::proxy::ProxyError;
use meshprov::sim::building::Building;
use meshprov::sim::configure::{
    self, ConfigBearer, ConfigOptions, ConfigReport, ConfigureError, ProvisionedNode,
};
use meshprov::sim::node::ProxyRefused;
use meshprov::wire::{FilterType, ProxyConfigOpcode};

const BUILDING: &str = r#"
[network]
net_key = "7dd7364cd842ad18c17c2b820c84c3d6"
iv_index = 0x12345678

# The node the provisioner connects to. ATT MTU 23: every network PDU of 20 octets or more
# crosses GATT in two segments.
[[device]]
uuid = "7b2c1a90-0000-4000-8000-0000000000b1"
name = "proxy light"
elements = 2
mtu = 23

[[device]]
uuid = "7b2c1a90-0000-4000-8000-0000000000b2"
name = "far light"
features = ["relay"]

[[device]]
uuid = "7b2c1a90-0000-4000-8000-0000000000b3"
name = "far switch"
features = []

[[device.element]]
models = ["0000", "0002", "1001"]
"#;

const PROXY: u16 = 0x0010;
const ONOFF: ModelId = ModelId::Sig(0x1000);

fn building() -> Building {
    Building::parse(BUILDING, "sim_proxy.toml").expect("building")
}

/// The three nodes as the provisioner knows them, at 0x0010, 0x0020, 0x0030.
fn nodes(b: &Building) -> Vec<ProvisionedNode> {
    let net_key = b.network.net_key.expect("net key");
    b.devices
        .iter()
        .zip(1u8..)
        .map(|(d, i)| ProvisionedNode {
            uuid: d.uuid,
            address: 0x0010 * u16::from(i),
            device_key: DevKey::from_bytes([i; 16]),
            net_key: NetKey::from_bytes(net_key),
            net_key_index: 0,
            iv_index: b.network.iv_index,
        })
        .collect()
}

fn app_key() -> AppKey {
    AppKey::from_bytes([0x63; 16])
}

/// The model each node binds: Generic OnOff Server on the proxy node's second element and on
/// the far light, Generic Level Server (0x1001, listed) on the far switch.
fn bound(node: &ProvisionedNode) -> (u16, ModelId) {
    match node.address {
        PROXY => (PROXY + 1, ONOFF),
        0x0020 => (0x0020, ONOFF),
        a => (a, ModelId::Sig(0x1001)),
    }
}

fn requests(node: &ProvisionedNode) -> Vec<ConfigMessage> {
    let (element, model) = bound(node);
    vec![
        ConfigMessage::CompositionDataGet { page: 0 },
        ConfigMessage::AppKeyAdd {
            net_key_index: 0,
            app_key_index: 1,
            key: app_key(),
        },
        ConfigMessage::ModelAppBind {
            element,
            app_key_index: 1,
            model,
        },
    ]
}

fn run(bearer: ConfigBearer, loss: f64, seed: u64) -> Result<ConfigReport, ConfigureError> {
    let b = building();
    let nodes = nodes(&b);
    let requests: Vec<(u16, Vec<ConfigMessage>)> =
        nodes.iter().map(|n| (n.address, requests(n))).collect();
    configure::configure(
        &b,
        &nodes,
        &requests,
        &ConfigOptions {
            seed,
            loss: Some(loss),
            bearer,
            ..ConfigOptions::default()
        },
    )
}

fn print(label: &str, report: &ConfigReport) {
    for r in &report.results {
        println!(
            "{label}  node {:#06x}  {:<32} attempts {}  {:>6} ms",
            r.node,
            format!("{:?}", r.request.opcode()),
            r.attempts,
            r.elapsed.as_millis(),
        );
    }
    println!(
        "{label}: configuration of 3 nodes took {} ms of virtual time; air {:?}",
        report.virtual_time.as_millis(),
        report.air
    );
}

/// Every request answered with the right status, and every node's state as asked.
fn check(report: &ConfigReport) {
    let b = building();
    for (n, spec) in nodes(&b).iter().zip(&b.devices) {
        let mine: Vec<_> = report
            .results
            .iter()
            .filter(|r| r.node == n.address)
            .collect();
        assert_eq!(mine.len(), 3);
        let status = |i: usize| {
            mine[i]
                .status()
                .unwrap_or_else(|| panic!("{:#06x}: {:?} timed out", n.address, mine[i].request))
        };
        match status(0) {
            ConfigMessage::CompositionDataStatus { page: 0, data } => {
                assert!(data.len() + 2 + 4 > 15, "fits one PDU: not segmented");
                assert_eq!(CompositionPage0::parse(data).unwrap(), spec.composition);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(status(1).status(), Some(ConfigStatus::SUCCESS));
        assert_eq!(status(2).status(), Some(ConfigStatus::SUCCESS));
        let server = report
            .device(n.address)
            .and_then(|d| d.config_server())
            .expect("provisioned node");
        let k = &server.app_keys()[&1];
        assert_eq!(k.net_key_index, 0);
        assert!(k.key == app_key());
        let (element, model) = bound(n);
        assert_eq!(server.model(element, model).unwrap().bindings, [1]);
    }
}

fn through_the_proxy(loss: f64, seed: u64) -> ConfigReport {
    let report = run(ConfigBearer::Proxy { via: PROXY }, loss, seed).expect("run");
    print(&format!("proxy, loss {:>2.0} %", loss * 100.0), &report);
    check(&report);
    assert!(report.air.gatt_sent > 0);
    let proxy = report
        .device(PROXY)
        .unwrap()
        .proxy_server()
        .expect("still connected");
    let stats = proxy.stats();
    println!("proxy server: {stats:?}");
    // The provisioner's accept list: its own address.
    assert_eq!(proxy.filter_type(), FilterType::ACCEPT_LIST);
    assert_eq!(proxy.filter_addresses().collect::<Vec<_>>(), [0x7fff]);
    // Requests to the far nodes went through the proxy node, and so did their answers.
    assert!(stats.relayed_to_adv >= 6, "{stats:?}");
    assert!(stats.relayed_to_client >= 6, "{stats:?}");
    assert!(stats.own_to_client >= 3, "{stats:?}");
    report
}

#[test]
fn configuration_through_a_proxy_over_a_clean_air() {
    let report = through_the_proxy(0.0, 31);
    // On a clean air each PDU of a far node arrives three times (Network Transmit count 3):
    // the network message cache forwards it once and drops the other copies (those of the
    // last PDUs may still be in flight when the run ends).
    let stats = report
        .device(PROXY)
        .unwrap()
        .proxy_server()
        .unwrap()
        .stats();
    assert!(stats.cached + 4 >= 2 * stats.relayed_to_client, "{stats:?}");
    assert!(stats.cached <= 2 * stats.relayed_to_client, "{stats:?}");
    // For comparison: the same configuration on the advertising bearer.
    let adv = run(ConfigBearer::Adv, 0.0, 31).expect("run");
    print("adv,   loss  0 %", &adv);
    check(&adv);
    assert_eq!(adv.air.gatt_sent, 0);
}

#[test]
fn configuration_through_a_proxy_at_20_percent_loss() {
    let report = through_the_proxy(0.2, 32);
    let adv = run(ConfigBearer::Adv, 0.2, 32).expect("run");
    print("adv,   loss 20 %", &adv);
    check(&adv);
    println!(
        "virtual time at 20 % loss: {} ms through the proxy, {} ms on the advertising bearer",
        report.virtual_time.as_millis(),
        adv.virtual_time.as_millis()
    );
}

#[test]
fn the_same_seed_gives_the_same_proxy_run() {
    let once = || {
        let r = run(ConfigBearer::Proxy { via: PROXY }, 0.2, 33).unwrap();
        let times: Vec<(usize, Duration)> =
            r.results.iter().map(|r| (r.attempts, r.elapsed)).collect();
        (r.virtual_time, r.air, times)
    };
    assert_eq!(once(), once());
}

#[test]
fn a_node_without_the_proxy_feature_refuses_the_connection() {
    let e = run(ConfigBearer::Proxy { via: 0x0020 }, 0.0, 34).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigureError::ProxyRefused {
                via: 0x0020,
                reason: ProxyRefused::NotSupported
            }
        ),
        "{e}"
    );
    let e = run(ConfigBearer::Proxy { via: 0x0444 }, 0.0, 34).unwrap_err();
    assert!(matches!(e, ConfigureError::UnknownNode(0x0444)), "{e}");
}

#[test]
fn a_silent_proxy_node_fails_the_filter_set_up_after_its_retries() {
    let b = building();
    let nodes = nodes(&b);
    let requests: Vec<(u16, Vec<ConfigMessage>)> =
        nodes.iter().map(|n| (n.address, requests(n))).collect();
    let e = configure::configure(
        &b,
        &nodes,
        &requests,
        &ConfigOptions {
            bearer: ConfigBearer::Proxy { via: PROXY },
            silent: vec![PROXY],
            ..ConfigOptions::default()
        },
    )
    .unwrap_err();
    match &e {
        ConfigureError::Proxy {
            via: PROXY,
            error:
                ProxyError::FilterTimeout {
                    step: ProxyConfigOpcode::SET_FILTER_TYPE,
                    attempts: 3,
                },
        } => {}
        other => panic!("{other}"),
    }
    println!("silent proxy node: {e}");
}

fn proxy_only(requests: Vec<ConfigMessage>) -> Result<ConfigReport, ConfigureError> {
    let b = building();
    configure::configure(
        &b,
        &nodes(&b),
        &[(PROXY, requests)],
        &ConfigOptions {
            bearer: ConfigBearer::Proxy { via: PROXY },
            ..ConfigOptions::default()
        },
    )
}

#[test]
fn the_proxy_node_s_own_reset_status_reaches_the_provisioner() {
    let report = proxy_only(vec![ConfigMessage::BeaconGet, ConfigMessage::NodeReset]).unwrap();
    assert_eq!(
        report.results[1].status(),
        Some(&ConfigMessage::NodeResetStatus)
    );
    let dev = report.device(PROXY).unwrap();
    assert!(dev.config_server().is_none() && dev.proxy_server().is_none());
}

#[test]
fn a_proxy_node_that_closes_the_connection_ends_the_run_with_a_typed_error() {
    // GATT Proxy Set 0: the node answers, then closes the connection; the next request has
    // no way to the node any more.
    let e = proxy_only(vec![
        ConfigMessage::GattProxySet { state: 0 },
        ConfigMessage::BeaconGet,
    ])
    .unwrap_err();
    assert!(
        matches!(
            e,
            ConfigureError::Proxy {
                via: PROXY,
                error: ProxyError::ConnectionLost
            }
        ),
        "{e}"
    );
}
