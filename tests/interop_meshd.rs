//! Interoperability with a mesh node nobody here wrote: BlueZ's bluetooth-meshd (Debian
//! package bluez-meshd) running as an unprovisioned device on its unit-test socket, started by
//! `../shared/peers/bluez-meshd/run_meshd_device.sh` (see its README).
//!
//! Each test provisions one meshd node over PB-ADV through `live::provision` on the
//! `meshd-unit` radio — No OOB, Static OOB, OOB public key — checks that the device key meshd
//! stored equals ours, then configures it through the network layer (Composition Data Get,
//! whose status is segmented; AppKey Add, segmented; Model App Bind) and asserts meshd's
//! status replies. meshd is slow (about one packet a second): a test takes 20–40 s.
//!
//! With `CI` set, a missing bluetooth-meshd fails the test; otherwise it is skipped with a
//! message. Every process started is killed by its pid when the test ends, and every wait has
//! a time-out (`meshd_support`).

mod meshd_support;

use std::time::Duration;

use mesh_crypto::ecdh::KeyPair;
use mesh_crypto::{AppKey, NetKey};
use meshd_support::{Meshd, available};
use meshprov::config_host::{ConfigHost, ConfigNode};
use meshprov::host::MemorySink;
use meshprov::live::{self, LiveOptions, LiveTarget};
use meshprov::net::config::{CompositionPage0, ConfigMessage, ConfigStatus, ModelId};
use meshprov::net::network::MemorySeqSource;
use meshprov::provisioning::{AuthPolicy, ProvisionerConfig, ProvisioningParams};
use meshprov::radio::unit::UnitRadio;
use meshprov::sim::run::BearerChoice;
use meshprov::tools::node::meshd_client;
use meshprov::tools::provision::meshd_pb_adv;
use meshprov::uuid::DeviceUuid;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

/// Provisions the node with `auth`, checks the device key, then configures it.
fn provision_and_configure(uuid_hex: &str, join_args: &[&str], config: ProvisionerConfig) {
    if !available() {
        return;
    }
    let uuid: DeviceUuid = uuid_hex.parse().unwrap();
    let node = Meshd::start(uuid_hex, join_args);
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let net_key = NetKey::generate(&mut rng);
    let opts = LiveOptions {
        params: ProvisioningParams {
            net_key: net_key.clone(),
            net_key_index: 0,
            flags: 0,
            iv_index: 0,
        },
        pb_adv: meshd_pb_adv(),
        bearer: BearerChoice::Adv,
        max_concurrent: 1,
        deadline: Duration::from_secs(90),
        discovery_timeout: Duration::from_secs(30),
        cert_verifier: None,
        seed: Some(11),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut sink = MemorySink::starting_at(0x0100);
    let mut radio = {
        let _rt = rt.enter();
        UnitRadio::open(node.path()).unwrap()
    };
    let target = LiveTarget {
        uuid,
        name: "meshd".into(),
        config,
    };
    let report = rt
        .block_on(live::provision(
            &mut radio,
            std::slice::from_ref(&target),
            &opts,
            &mut sink,
            None,
            &mut |_| {},
        ))
        .unwrap();
    let r = &report.results[0];
    let outcome = match &r.outcome {
        Ok(o) => o,
        Err(e) => panic!("provisioning failed: {e}\n{}", node.log()),
    };
    eprintln!(
        "{uuid_hex}: provisioned in {:.1} s, {} retransmissions",
        r.elapsed.as_secs_f64(),
        report.retransmissions
    );
    // meshd's own record of the node: the same address and device key.
    let (addr, key) = node.stored_node(uuid_hex);
    assert_eq!(addr, outcome.address);
    assert_eq!(
        key,
        meshprov::crypto::hex::encode(outcome.device_key.expose_secret())
    );
    assert_eq!(
        sink.records.len(),
        1,
        "the node was committed before its data went out"
    );
    assert_eq!(sink.confirmed, vec![uuid]);

    // Configure it through the network layer, under its device key.
    let app_key = AppKey::generate(&mut rng);
    let mut host = ConfigHost::new(
        0x7f00,
        0,
        &[(0, net_key)],
        &[ConfigNode {
            address: addr,
            device_key: outcome.device_key.clone(),
            net_key_index: 0,
        }],
        // meshd answers slowly: leave room for a segmented status at one packet a second.
        meshd_client(),
        MemorySeqSource::new(),
    );
    let requests = vec![
        (addr, ConfigMessage::CompositionDataGet { page: 0 }),
        (
            addr,
            ConfigMessage::AppKeyAdd {
                net_key_index: 0,
                app_key_index: 0,
                key: app_key,
            },
        ),
        (
            addr,
            ConfigMessage::ModelAppBind {
                element: addr,
                app_key_index: 0,
                model: ModelId::Sig(0x1000),
            },
        ),
    ];
    let started = std::time::Instant::now();
    let results = rt
        .block_on(live::configure(
            &mut radio,
            &mut host,
            &requests,
            Duration::from_secs(120),
            &mut |_| {},
        ))
        .unwrap();
    eprintln!(
        "{uuid_hex}: configured in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Composition Data Status (segmented): page 0 with the Generic OnOff Server the Join app
    // declared on its one element.
    match results[0].status() {
        Some(ConfigMessage::CompositionDataStatus { page: 0, data }) => {
            let page = CompositionPage0::parse(data).unwrap();
            assert_eq!(page.elements.len(), 1);
            assert!(
                page.elements[0].sig_models.contains(&0x1000),
                "{:?}",
                page.elements[0]
            );
            // Its Configuration Server is there too.
            assert!(page.elements[0].sig_models.contains(&0x0000));
        }
        other => panic!("Composition Data Get: {other:?}\n{}", node.log()),
    }
    match results[1].status() {
        Some(ConfigMessage::AppKeyStatus {
            status,
            app_key_index: 0,
            ..
        }) => {
            assert_eq!(*status, ConfigStatus::SUCCESS)
        }
        other => panic!("AppKey Add: {other:?}\n{}", node.log()),
    }
    match results[2].status() {
        Some(ConfigMessage::ModelAppStatus { status, model, .. }) => {
            assert_eq!(*status, ConfigStatus::SUCCESS);
            assert_eq!(*model, ModelId::Sig(0x1000));
        }
        other => panic!("Model App Bind: {other:?}\n{}", node.log()),
    }
}

fn no_oob() -> ProvisionerConfig {
    ProvisionerConfig {
        auth: AuthPolicy::NoOob,
        allow_no_oob: true,
        ..ProvisionerConfig::default()
    }
}

#[test]
fn meshd_no_oob() {
    provision_and_configure("7b2c1a90000040008000000000000a01", &[], no_oob());
}

#[test]
fn meshd_static_oob() {
    let value = "00112233445566778899aabbccddeeff";
    provision_and_configure(
        "7b2c1a90000040008000000000000a02",
        &["--caps", "static-oob", "--static-oob", value],
        ProvisionerConfig {
            auth: AuthPolicy::Static(hex::decode(value).unwrap()),
            ..ProvisionerConfig::default()
        },
    );
}

#[test]
fn meshd_oob_public_key() {
    // The device's key pair: meshd asks the Join app for the private key; we know the public
    // key out of band.
    let private = "529aa0670d72cd6497502ed473502b037e8803b5c60829a5a3caa219505530ba";
    let pair = KeyPair::from_private_bytes(&hex::decode(private).unwrap()).unwrap();
    provision_and_configure(
        "7b2c1a90000040008000000000000a03",
        &["--caps", "public-oob", "--private-key", private],
        ProvisionerConfig {
            auth: AuthPolicy::NoOob,
            allow_no_oob: true,
            oob_public_key: Some(pair.public_key().to_bytes()),
            ..no_oob()
        },
    );
}
