//! The provisioner against simulated devices on the simulated air, in virtual time:
//! every algorithm × authentication method × bearer, PB-ADV at 0 %, 10 % and 30 % loss,
//! 64 devices at once through one PB-ADV `Links` table, and determinism by seed.

use std::time::Duration;

use meshprov::provisioning::{AlgorithmPolicy, AuthPolicy, ProvisionerConfig};
use meshprov::sim::building::Building;
use meshprov::sim::node::DeviceState;
use meshprov::sim::run::{self, BearerChoice, MemorySink, RunOptions, RunReport};
use meshprov::uuid::DeviceUuid;

const DEVICE_PRIVATE: &str = "529aa0670d72cd6497502ed473502b037e8803b5c60829a5a3caa219505530ba";
const DEVICE_PUBLIC: &str = "f465e43ff23d3f1b9dc7dfc04da8758184dbc966204796eccf0d6cf5e16500cc0201d048bcbbd899eeefc424164e33c201c2b010ca6b4d43a8a155cad8ecb279";
const STATIC16: &str = "00112233445566778899aabbccddeeff";
const STATIC32: &str = "906d73a3c7a7cb3ff730dca68a46b9c18d673f50e078202311473ebbe253669f";

#[derive(Clone, Copy, Debug)]
enum Auth {
    NoOob,
    Static16,
    Static32,
    OutputNumeric,
    OutputAlphanumeric,
    OutputBlink,
    InputNumeric,
    InputAlphanumeric,
    InputPush,
    OobPublicKey,
}

const ALL_AUTH: [Auth; 10] = [
    Auth::NoOob,
    Auth::Static16,
    Auth::Static32,
    Auth::OutputNumeric,
    Auth::OutputAlphanumeric,
    Auth::OutputBlink,
    Auth::InputNumeric,
    Auth::InputAlphanumeric,
    Auth::InputPush,
    Auth::OobPublicKey,
];

/// A one-device building whose device offers exactly what `auth` needs.
fn building(auth: Auth, alg: &str, loss: f64) -> (Building, ProvisionerConfig) {
    let mut dev = format!(
        "[[device]]\nuuid = \"7b2c1a90-0000-4000-8000-0000000000aa\"\nelements = 3\nalgorithms = [\"{alg}\"]\n"
    );
    let mut config = ProvisionerConfig::default();
    match auth {
        Auth::NoOob => {
            config.allow_no_oob = true;
            config.auth = AuthPolicy::NoOob;
        }
        Auth::Static16 | Auth::Static32 => {
            let v = if matches!(auth, Auth::Static16) {
                STATIC16
            } else {
                STATIC32
            };
            dev += &format!("static_oob = \"{v}\"\n");
            config.auth = AuthPolicy::Static(hex::decode(v).unwrap());
        }
        Auth::OutputNumeric => {
            dev += "output_oob = { size = 8, actions = [\"numeric\"] }\n";
            config.auth = AuthPolicy::Output;
        }
        Auth::OutputAlphanumeric => {
            dev += "output_oob = { size = 6, actions = [\"alphanumeric\"] }\n";
            config.auth = AuthPolicy::Output;
        }
        Auth::OutputBlink => {
            dev += "output_oob = { size = 1, actions = [\"blink\"] }\n";
            config.auth = AuthPolicy::Output;
        }
        Auth::InputNumeric => {
            dev += "input_oob = { size = 6, actions = [\"numeric\"] }\n";
            config.auth = AuthPolicy::Input;
        }
        Auth::InputAlphanumeric => {
            dev += "input_oob = { size = 8, actions = [\"alphanumeric\"] }\n";
            config.auth = AuthPolicy::Input;
        }
        Auth::InputPush => {
            dev += "input_oob = { size = 1, actions = [\"push\"] }\n";
            config.auth = AuthPolicy::Input;
        }
        Auth::OobPublicKey => {
            dev += &format!(
                "public_key_oob = true\nprivate_key = \"{DEVICE_PRIVATE}\"\nstatic_oob = \"{STATIC16}\"\n"
            );
            config.oob_public_key = Some(hex::decode(DEVICE_PUBLIC).unwrap().try_into().unwrap());
            config.auth = AuthPolicy::Static(hex::decode(STATIC16).unwrap());
        }
    }
    config.algorithm = if alg == "cmac" {
        AlgorithmPolicy::Cmac
    } else {
        AlgorithmPolicy::Hmac
    };
    let text = format!(
        "[network]\nnet_key = \"efb2255e6422d330088e09bb015ed707\"\nnet_key_index = 5\niv_index = 7\n[air]\nloss = {loss}\n{dev}"
    );
    (Building::parse(&text, "test").unwrap(), config)
}

fn check_success(report: &RunReport, sink: &MemorySink, what: &str) {
    assert_eq!(report.results.len(), 1);
    let r = &report.results[0];
    let o = r
        .outcome
        .as_ref()
        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
    match &r.device_state {
        DeviceState::Provisioned {
            address,
            device_key,
            net_key,
            net_key_index,
            iv_index,
        } => {
            assert_eq!(*address, o.address, "{what}");
            assert_eq!(
                device_key, &o.device_key,
                "{what}: both sides derive the same device key"
            );
            assert_eq!(
                net_key.expose_secret(),
                &hex::decode("efb2255e6422d330088e09bb015ed707").unwrap()[..]
            );
            assert_eq!(*net_key_index, 5);
            assert_eq!(*iv_index, 7);
        }
        other => panic!("{what}: device ended {other:?}"),
    }
    assert_eq!(o.elements, 3);
    assert_eq!(sink.records.len(), 1, "{what}: committed once before Data");
    assert_eq!(sink.confirmed.len(), 1, "{what}: confirmed after Complete");
    assert_eq!(sink.records[0].device_key, o.device_key);
}

#[test]
fn every_algorithm_auth_and_bearer() {
    let mut adv_times = Vec::new();
    for alg in ["cmac", "hmac"] {
        for auth in ALL_AUTH {
            for (bearer, losses) in [
                (BearerChoice::Adv, &[0.0, 0.1, 0.3][..]),
                (BearerChoice::Gatt, &[0.0][..]),
            ] {
                for &loss in losses {
                    let (b, config) = building(auth, alg, loss);
                    let what = format!("{alg} {auth:?} {bearer:?} loss {loss}");
                    let opts = RunOptions {
                        config,
                        bearer,
                        seed: 11,
                        ..RunOptions::default()
                    };
                    let mut sink = MemorySink::starting_at(0x0100);
                    let uuid = b.devices[0].uuid;
                    let report = run::run(&b, &[uuid], &opts, &mut sink).expect(&what);
                    check_success(&report, &sink, &what);
                    let o = report.results[0].outcome.as_ref().unwrap();
                    assert_eq!(o.address, 0x0100);
                    assert_eq!(o.algorithm.name().contains("HMAC"), alg == "hmac", "{what}");
                    assert_eq!(
                        o.public_key_oob,
                        matches!(auth, Auth::OobPublicKey),
                        "{what}"
                    );
                    if bearer == BearerChoice::Adv {
                        adv_times.push((what, report.results[0].elapsed, report.retransmissions));
                    }
                }
            }
        }
    }
    for (what, t, rx) in &adv_times {
        eprintln!("{what}: {t:?}, {rx} retransmissions");
    }
}

#[test]
fn wrong_static_oob_fails_on_both_sides() {
    let (b, mut config) = building(Auth::Static16, "hmac", 0.0);
    config.auth = AuthPolicy::Static(vec![0x42; 16]);
    let mut sink = MemorySink::default();
    let uuid = b.devices[0].uuid;
    let report = run::run(
        &b,
        &[uuid],
        &RunOptions {
            config,
            ..RunOptions::default()
        },
        &mut sink,
    )
    .unwrap();
    let r = &report.results[0];
    let e = r
        .outcome
        .as_ref()
        .expect_err("a wrong static OOB value must fail");
    assert!(matches!(r.device_state, DeviceState::Unprovisioned));
    assert!(sink.records.is_empty(), "nothing committed: {e:?}");
}

#[test]
fn same_seed_same_run() {
    let go = |seed| {
        let (b, config) = building(Auth::Static32, "hmac", 0.3);
        let uuid = b.devices[0].uuid;
        let mut sink = MemorySink::default();
        let r = run::run(
            &b,
            &[uuid],
            &RunOptions {
                config,
                seed,
                ..RunOptions::default()
            },
            &mut sink,
        )
        .unwrap();
        let o = r.results.into_iter().next().unwrap().outcome.unwrap();
        (r.virtual_time, r.retransmissions, o.device_key)
    };
    assert_eq!(go(5), go(5));
    assert_ne!(go(5).2, go(6).2, "a different seed gives different keys");
}

fn many(n: usize, loss: f64) -> Building {
    let mut text = format!(
        "[network]\nnet_key = \"7dd7364cd842ad18c17c2b820c84c3d6\"\n[air]\nloss = {loss}\n"
    );
    for i in 0..n {
        text += &format!(
            "[[device]]\nuuid = \"7b2c1a90-0000-4000-8000-{i:012x}\"\nelements = {}\nstatic_oob = \"{:032x}\"\n",
            1 + i % 3,
            0x1000 + i
        );
    }
    Building::parse(&text, "many").unwrap()
}

/// 64 devices through one Links table at once, each with its own static OOB, at 0 % and 10 %
/// loss: every device ends provisioned with the key the provisioner holds, at distinct
/// non-overlapping addresses.
#[test]
fn sixty_four_devices_at_once() {
    for loss in [0.0, 0.1] {
        let b = many(64, loss);
        let targets: Vec<DeviceUuid> = b.devices.iter().map(|d| d.uuid).collect();
        // The policy gives each session its device's static value from the building file.
        let mut sink = MemorySink::default();
        let mut results = Vec::new();
        let opts = RunOptions {
            config: ProvisionerConfig {
                auth: AuthPolicy::Auto { static_oob: None },
                ..ProvisionerConfig::default()
            },
            max_concurrent: 64,
            ..RunOptions::default()
        };
        let report = run::run_with(&b, &targets, &opts, &mut sink, |spec, config| {
            config.auth = AuthPolicy::Static(spec.static_oob.clone().unwrap());
        })
        .unwrap();
        let mut used = std::collections::BTreeSet::new();
        for r in &report.results {
            let o = r
                .outcome
                .as_ref()
                .unwrap_or_else(|e| panic!("{} at loss {loss}: {e:?}", r.uuid));
            match &r.device_state {
                DeviceState::Provisioned {
                    device_key,
                    address,
                    ..
                } => {
                    assert_eq!(device_key, &o.device_key);
                    assert_eq!(*address, o.address);
                }
                other => panic!("{other:?}"),
            }
            for a in o.address..o.address + u16::from(o.elements) {
                assert!(used.insert(a), "address 0x{a:04x} given twice");
            }
            results.push(r.elapsed);
        }
        assert_eq!(sink.records.len(), 64);
        assert!(
            report.virtual_time < Duration::from_secs(120),
            "{:?}",
            report.virtual_time
        );
        eprintln!(
            "64 devices at {loss} loss: {:?} virtual, {} retransmissions",
            report.virtual_time, report.retransmissions
        );
    }
}

/// One PB-ADV provisioning (HMAC, static OOB) over 25 seeds at 0 % and 30 % loss: every run
/// succeeds, and the virtual time is reported (README "Performance").
#[test]
fn virtual_time_over_many_seeds() {
    for loss in [0.0, 0.3] {
        let mut times = Vec::new();
        for seed in 0..25 {
            let (b, config) = building(Auth::Static32, "hmac", loss);
            let uuid = b.devices[0].uuid;
            let mut sink = MemorySink::default();
            let r = run::run(
                &b,
                &[uuid],
                &RunOptions {
                    config,
                    seed,
                    ..RunOptions::default()
                },
                &mut sink,
            )
            .unwrap();
            let d = &r.results[0];
            assert!(
                d.outcome.is_ok(),
                "seed {seed} at loss {loss}: {:?}",
                d.outcome
            );
            times.push(d.elapsed);
        }
        times.sort();
        eprintln!(
            "one PB-ADV provisioning at {loss} loss over 25 seeds: min {:?}, median {:?}, max {:?}",
            times[0], times[12], times[24]
        );
    }
}
