//! Every algorithm × authentication method completes between the real `Provisioner` and
//! `Device` (MshPRT v1.1 §5.4.2.4, §5.4.3), with the same device key on both sides and the
//! right Provisioning Data delivered.

mod prov_support;

use meshprov::crypto::provisioning::Algorithm;
use meshprov::provisioning::{
    AlgorithmPolicy, AuthPolicy, CloseReason, Device, DeviceEvent, Event, Provisioner,
    ProvisionerConfig,
};
use meshprov::wire::{
    InputOobAction, InputOobActions, OobType, OutputOobAction, OutputOobActions, PublicKeyType,
    StartAuth,
};
use prov_support::{NET_KEY, Pair, caps, device_config, key_pair, params, rng};

#[derive(Debug, Clone, Copy)]
enum Method {
    NoOob,
    Static16,
    Static32,
    OutputNumeric(u8),
    OutputAlphanumeric,
    OutputBlink,
    InputNumeric(u8),
    InputAlphanumeric,
    InputPush,
    OobPublicKey,
}

const METHODS: [Method; 12] = [
    Method::NoOob,
    Method::Static16,
    Method::Static32,
    Method::OutputNumeric(8),
    Method::OutputNumeric(32),
    Method::OutputAlphanumeric,
    Method::OutputBlink,
    Method::InputNumeric(6),
    Method::InputNumeric(32),
    Method::InputAlphanumeric,
    Method::InputPush,
    Method::OobPublicKey,
];

fn run(alg: Algorithm, method: Method, seed: u64) -> Pair {
    let mut c = caps();
    let mut dc_static = None;
    let mut dc_key = None;
    let mut config = ProvisionerConfig {
        algorithm: match alg {
            Algorithm::CmacAes128 => AlgorithmPolicy::Cmac,
            Algorithm::HmacSha256 => AlgorithmPolicy::Hmac,
        },
        ..ProvisionerConfig::default()
    };
    match method {
        Method::NoOob => {
            config.auth = AuthPolicy::NoOob;
            config.allow_no_oob = true;
        }
        Method::Static16 | Method::Static32 => {
            let len = if matches!(method, Method::Static16) {
                16
            } else {
                32
            };
            let value: Vec<u8> = (0..len).map(|i| 0xa0 ^ i as u8).collect();
            c.oob_type = OobType::STATIC_OOB_AVAILABLE;
            dc_static = Some(value.clone());
            config.auth = AuthPolicy::Static(value);
        }
        Method::OutputNumeric(size) => {
            c.output_oob_size = size;
            c.output_oob_action = OutputOobActions::OUTPUT_NUMERIC;
            config.auth = AuthPolicy::Output;
        }
        Method::OutputAlphanumeric => {
            c.output_oob_size = 32;
            c.output_oob_action = OutputOobActions::OUTPUT_ALPHANUMERIC;
            config.auth = AuthPolicy::Output;
        }
        Method::OutputBlink => {
            c.output_oob_size = 2;
            c.output_oob_action = OutputOobActions::BLINK | OutputOobActions::BEEP;
            config.auth = AuthPolicy::Output;
        }
        Method::InputNumeric(size) => {
            c.input_oob_size = size;
            c.input_oob_action = InputOobActions::INPUT_NUMERIC;
            config.auth = AuthPolicy::Input;
        }
        Method::InputAlphanumeric => {
            c.input_oob_size = 20;
            c.input_oob_action = InputOobActions::INPUT_ALPHANUMERIC;
            config.auth = AuthPolicy::Input;
        }
        Method::InputPush => {
            c.input_oob_size = 1;
            c.input_oob_action = InputOobActions::PUSH;
            config.auth = AuthPolicy::Input;
        }
        Method::OobPublicKey => {
            let kp = key_pair(seed + 100);
            c.public_key_type = PublicKeyType::OOB_AVAILABLE;
            c.oob_type = OobType::STATIC_OOB_AVAILABLE;
            config.oob_public_key = Some(kp.public_key().to_bytes());
            dc_key = Some(kp);
            dc_static = Some(vec![0x5a; 16]);
            config.auth = AuthPolicy::Auto {
                static_oob: Some(vec![0x5a; 16]),
            };
        }
    }
    let mut dc = device_config(c);
    dc.static_oob = dc_static;
    dc.key_pair = dc_key;
    let p = Provisioner::new(config, params(), rng(seed));
    let d = Device::new(dc, rng(seed + 1));
    let mut pair = Pair::new(p, d);
    pair.address = 0x0100;
    pair.start();
    pair.run();
    pair
}

fn check(alg: Algorithm, method: Method, pair: &Pair) {
    let ctx = format!("{alg:?} × {method:?}");
    assert!(pair.p_failed().is_none(), "{ctx}: {:?}", pair.p_failed());
    assert!(pair.d_failed().is_none(), "{ctx}: {:?}", pair.d_failed());
    let outcome = pair
        .outcome()
        .unwrap_or_else(|| panic!("{ctx}: no outcome"));
    assert_eq!(outcome.algorithm, alg, "{ctx}");
    assert_eq!(outcome.address, 0x0100, "{ctx}");
    assert_eq!(outcome.elements, 2, "{ctx}");
    assert_eq!(pair.p.close_reason(), Some(CloseReason::SUCCESS), "{ctx}");
    let (device_key, net_key, address) = pair
        .d_events
        .iter()
        .find_map(|e| match e {
            DeviceEvent::Provisioned {
                device_key,
                net_key,
                address,
                ..
            } => Some((device_key.clone(), net_key.clone(), *address)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{ctx}: device not provisioned"));
    assert_eq!(device_key, outcome.device_key, "{ctx}");
    assert_eq!(net_key.expose_secret(), &NET_KEY, "{ctx}");
    assert_eq!(address, 0x0100, "{ctx}");
    let value_len = alg.value_len() + 1;
    // Confirmation and Random PDUs have the algorithm's length.
    for pdu in pair.p2d.iter().chain(&pair.d2p) {
        if pdu[0] == 0x05 || pdu[0] == 0x06 {
            assert_eq!(pdu.len(), value_len, "{ctx}");
        }
    }
    match method {
        Method::NoOob => assert_eq!(outcome.auth, StartAuth::NoOob),
        Method::Static16 | Method::Static32 => assert_eq!(outcome.auth, StartAuth::StaticOob),
        Method::OutputNumeric(size) => assert_eq!(
            outcome.auth,
            StartAuth::OutputOob {
                action: OutputOobAction::OUTPUT_NUMERIC,
                size
            }
        ),
        Method::OutputAlphanumeric => {
            let size = if alg == Algorithm::CmacAes128 { 16 } else { 32 };
            assert_eq!(
                outcome.auth,
                StartAuth::OutputOob {
                    action: OutputOobAction::OUTPUT_ALPHANUMERIC,
                    size
                },
                "{ctx}"
            );
        }
        Method::OutputBlink => assert_eq!(
            outcome.auth,
            StartAuth::OutputOob {
                action: OutputOobAction::BLINK,
                size: 2
            }
        ),
        Method::InputNumeric(size) => assert_eq!(
            outcome.auth,
            StartAuth::InputOob {
                action: InputOobAction::INPUT_NUMERIC,
                size
            }
        ),
        Method::InputAlphanumeric => {
            let size = if alg == Algorithm::CmacAes128 { 16 } else { 20 };
            assert_eq!(
                outcome.auth,
                StartAuth::InputOob {
                    action: InputOobAction::INPUT_ALPHANUMERIC,
                    size
                },
                "{ctx}"
            );
        }
        Method::InputPush => assert_eq!(
            outcome.auth,
            StartAuth::InputOob {
                action: InputOobAction::PUSH,
                size: 1
            }
        ),
        Method::OobPublicKey => {
            assert!(outcome.public_key_oob, "{ctx}");
            // The device never sent its public key.
            assert!(pair.d2p.iter().all(|p| p[0] != 0x03), "{ctx}");
            assert_eq!(pair.p2d.iter().filter(|p| p[0] == 0x03).count(), 1, "{ctx}");
        }
    }
}

#[test]
fn every_algorithm_and_method_completes() {
    let mut seed = 10;
    for alg in [Algorithm::CmacAes128, Algorithm::HmacSha256] {
        for method in METHODS {
            seed += 7;
            let pair = run(alg, method, seed);
            check(alg, method, &pair);
        }
    }
}

/// Input OOB: the provisioner shows a value and waits for Input Complete before it sends its
/// Confirmation (MshPRT v1.1 §5.4.2.4; reference §4.3 step 6).
#[test]
fn input_oob_waits_for_input_complete() {
    let pair = run(Algorithm::HmacSha256, Method::InputNumeric(6), 3);
    let input_complete = pair.d2p.iter().position(|p| p == &[0x04]).unwrap();
    let names: Vec<_> = pair.p.transcript().iter().map(|e| e.name()).collect();
    let ic = names
        .iter()
        .position(|n| *n == "Provisioning Input Complete")
        .unwrap();
    let conf = names
        .iter()
        .position(|n| *n == "Provisioning Confirmation")
        .unwrap();
    assert!(ic < conf, "{names:?}");
    assert!(input_complete >= 1);
    assert!(
        pair.p_events
            .iter()
            .any(|e| matches!(e, Event::InputOobDisplay { .. }))
    );
}

/// The same seeds give the same session, byte for byte (DESIGN.md rule 7).
#[test]
fn sessions_are_deterministic() {
    let a = run(Algorithm::HmacSha256, Method::OutputNumeric(8), 42);
    let b = run(Algorithm::HmacSha256, Method::OutputNumeric(8), 42);
    assert_eq!(a.p2d, b.p2d);
    assert_eq!(a.d2p, b.d2p);
    let c = run(Algorithm::HmacSha256, Method::OutputNumeric(8), 43);
    assert_ne!(a.p2d, c.p2d);
}
