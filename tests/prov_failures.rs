//! Failure paths of the provisioning state machines (MshPRT v1.1 §5.4.3, §5.4.4; reference
//! §4, §5): wrong OOB values, reflection (CVE-2020-26560), Provisioning Failed, unexpected and
//! malformed PDUs in every state, timeouts, and redaction of secrets in Debug output.

mod prov_support;

use std::time::Duration;

use meshprov::crypto::provisioning::Algorithm;
use meshprov::provisioning::{
    AlgorithmPolicy, AuthPolicy, CloseReason, Device, DeviceEvent, Event, Fault, OobValue,
    Provisioner, ProvisionerConfig, ProvisioningError,
};
use meshprov::time::Instant;
use meshprov::wire::{
    Algorithms, FailedCode, InputOobActions, OobType, OutputOobActions, PduType, PublicKeyType,
};
use prov_support::{NET_KEY, Pair, caps, device_config, key_pair, no_oob_config, params, rng};

const STATIC: [u8; 16] = [0x3c; 16];

#[derive(Clone, Copy, Debug)]
enum Scenario {
    Static,
    Output,
    Input,
}

fn scenario(s: Scenario, seed: u64) -> Pair {
    let mut c = caps();
    let mut config = ProvisionerConfig {
        algorithm: AlgorithmPolicy::Cmac,
        ..ProvisionerConfig::default()
    };
    match s {
        Scenario::Static => {
            c.oob_type = OobType::STATIC_OOB_AVAILABLE;
            config.auth = AuthPolicy::Static(STATIC.to_vec());
        }
        Scenario::Output => {
            c.output_oob_size = 6;
            c.output_oob_action = OutputOobActions::OUTPUT_NUMERIC;
            config.auth = AuthPolicy::Output;
        }
        Scenario::Input => {
            c.input_oob_size = 6;
            c.input_oob_action = InputOobActions::INPUT_NUMERIC;
            config.auth = AuthPolicy::Input;
        }
    }
    let mut dc = device_config(c);
    dc.static_oob = Some(STATIC.to_vec());
    let mut pair = Pair::new(
        Provisioner::new(config, params(), rng(seed)),
        Device::new(dc, rng(seed + 1)),
    );
    pair.start();
    pair
}

/// Every state the provisioner can wait in, the scenario that reaches it, and the PDU type it
/// expects (None: it waits for its caller).
const STATES: [(&str, Scenario, Option<u8>); 9] = [
    ("ExpectCapabilities", Scenario::Static, Some(0x01)),
    ("ExpectAddress", Scenario::Static, None),
    ("ExpectPublicKey", Scenario::Static, Some(0x03)),
    ("ExpectOutputOob", Scenario::Output, None),
    ("ExpectInputComplete", Scenario::Input, Some(0x04)),
    ("ExpectConfirmation", Scenario::Static, Some(0x05)),
    ("ExpectRandom", Scenario::Static, Some(0x06)),
    ("ExpectCommit", Scenario::Static, None),
    ("ExpectComplete", Scenario::Static, Some(0x08)),
];

fn reach(state: &str, s: Scenario) -> Pair {
    let mut pair = scenario(s, 5);
    pair.run_until(state);
    pair
}

/// One well-formed PDU of every type but Failed (CMAC lengths).
fn valid_pdus() -> Vec<Vec<u8>> {
    let mut caps_pdu = vec![0x01];
    caps_pdu.extend(caps().params());
    let mut pk = vec![0x03];
    pk.extend(key_pair(9).public_key().to_bytes());
    let mut v = vec![
        vec![0x00, 0x00],
        caps_pdu,
        vec![0x02, 0, 0, 0, 0, 0],
        pk,
        vec![0x04],
        [vec![0x05], vec![0x11; 16]].concat(),
        [vec![0x06], vec![0x22; 16]].concat(),
        [vec![0x07], vec![0x33; 33]].concat(),
        vec![0x08],
        vec![0x0a, 0, 1, 0, 0, 0, 16],
        vec![0x0b, 0, 0, 1, 0, 0, 0, 4, 1, 2, 3, 4],
        vec![0x0c],
        vec![0x0d, 0, 0, 0, 1],
    ];
    v.retain(|p| p[0] != 0x09);
    v
}

fn assert_failed_closed(pair: &mut Pair, ctx: &str) -> ProvisioningError {
    assert!(pair.p.is_finished(), "{ctx}: not finished");
    let err = pair
        .p
        .error()
        .cloned()
        .unwrap_or_else(|| panic!("{ctx}: no error"));
    assert_eq!(pair.p.close_reason(), Some(CloseReason::FAIL), "{ctx}");
    assert_eq!(pair.p.poll_timeout(), None, "{ctx}");
    // The provisioner never sends Provisioning Failed.
    while let Some(pdu) = pair.p.poll_transmit() {
        assert_ne!(pdu[0], 0x09, "{ctx}: provisioner sent Failed");
    }
    assert!(
        pair.p
            .transcript()
            .iter()
            .all(|e| e.pdu_type != Some(PduType::FAILED)
                || e.direction == meshprov::provisioning::Direction::Received),
        "{ctx}"
    );
    // Exactly one Failed event.
    let mut failed = 0;
    while let Some(ev) = pair.p.poll_event() {
        if matches!(ev, Event::Failed(_)) {
            failed += 1;
        }
    }
    failed += pair
        .p_events
        .iter()
        .filter(|e| matches!(e, Event::Failed(_)))
        .count();
    assert_eq!(failed, 1, "{ctx}");
    err
}

#[test]
fn wrong_static_oob_fails_on_both_sides() {
    let mut c = caps();
    c.oob_type = OobType::STATIC_OOB_AVAILABLE;
    let mut dc = device_config(c);
    dc.static_oob = Some(vec![0x01; 16]);
    let config = ProvisionerConfig {
        auth: AuthPolicy::Static(vec![0x02; 16]),
        ..ProvisionerConfig::default()
    };
    let mut pair = Pair::new(
        Provisioner::new(config, params(), rng(1)),
        Device::new(dc, rng(2)),
    );
    pair.start();
    pair.run();
    // The device verifies first: it receives the provisioner's Random before the provisioner
    // receives the device's. It answers Confirmation Failed.
    assert_eq!(
        pair.d_failed(),
        Some(&ProvisioningError::ConfirmationFailed)
    );
    assert_eq!(pair.d2p.last().unwrap(), &vec![0x09, 0x04]);
    let err = assert_failed_closed(&mut pair, "wrong static");
    assert_eq!(
        err,
        ProvisioningError::FailedReceived(FailedCode::CONFIRMATION_FAILED)
    );
    assert!(err.to_string().contains("Confirmation Failed"));
    assert!(err.user_message().contains("OOB value"));
    assert!(pair.d.is_finished());
    assert!(pair.outcome().is_none());
    assert!(
        pair.p2d.iter().all(|p| p[0] != 0x07),
        "no Data after a failure"
    );
}

fn flip_once(ty: u8, byte: usize, bit: u8) -> prov_support::Tamper {
    let mut done = false;
    Box::new(move |_, mut pdu: Vec<u8>| {
        if !done && pdu[0] == ty {
            done = true;
            pdu[byte] ^= 1 << bit;
        }
        pdu
    })
}

#[test]
fn provisioner_detects_a_wrong_device_confirmation() {
    let mut pair = scenario(Scenario::Static, 3);
    pair.tamper = Some(flip_once(0x05, 3, 0));
    pair.run();
    let err = assert_failed_closed(&mut pair, "confirmation");
    assert_eq!(err, ProvisioningError::ConfirmationFailed);
    assert_eq!(err.failed_code(), FailedCode::CONFIRMATION_FAILED);
    assert_eq!(err.fault(), Fault::Peer);
    assert!(pair.p2d.iter().all(|p| p[0] != 0x07));
}

/// Replaces the device's PDU of type `ty` with the provisioner's own PDU of that type.
fn reflect(ty: u8) -> prov_support::Tamper {
    Box::new(move |p2d: &[Vec<u8>], pdu: Vec<u8>| {
        if pdu[0] == ty {
            p2d.iter()
                .rev()
                .find(|p| p[0] == ty)
                .cloned()
                .unwrap_or(pdu)
        } else {
            pdu
        }
    })
}

#[test]
fn reflected_public_key_is_refused() {
    let mut pair = scenario(Scenario::Static, 4);
    pair.tamper = Some(reflect(0x03));
    pair.run();
    let err = assert_failed_closed(&mut pair, "reflected key");
    assert_eq!(err, ProvisioningError::ReflectedPublicKey);
}

#[test]
fn reflected_confirmation_is_refused() {
    let mut pair = scenario(Scenario::Static, 4);
    pair.tamper = Some(reflect(0x05));
    pair.run();
    let err = assert_failed_closed(&mut pair, "reflected confirmation");
    assert_eq!(err, ProvisioningError::ReflectedConfirmation);
    assert!(
        pair.p2d.iter().all(|p| p[0] != 0x06),
        "our Random stays secret"
    );
}

#[test]
fn reflected_random_is_refused() {
    let mut pair = scenario(Scenario::Static, 4);
    pair.tamper = Some(reflect(0x06));
    pair.run();
    let err = assert_failed_closed(&mut pair, "reflected random");
    assert_eq!(err, ProvisioningError::ReflectedRandom);
}

#[test]
fn provisioning_failed_in_every_state_names_the_code() {
    for (state, s, _) in STATES {
        let mut pair = reach(state, s);
        pair.p.handle_pdu(pair.now, &[0x09, 0x05]);
        let err = assert_failed_closed(&mut pair, state);
        // In answer to the Provisioning Data it is a refusal of the data (§5.4.4): the device
        // holds no key, which the host needs to know to void its write-ahead commit.
        let expected = if state == "ExpectComplete" {
            ProvisioningError::DataRefused(FailedCode::OUT_OF_RESOURCES)
        } else {
            ProvisioningError::FailedReceived(FailedCode::OUT_OF_RESOURCES)
        };
        assert_eq!(err, expected, "{state}");
        assert!(err.to_string().contains("Out of Resources"), "{err}");
        assert!(err.user_message().contains("(0x05)"), "{err}");
        assert_eq!(err.fault(), Fault::Peer, "{state}");
        assert!(!meshprov::rollout::retryable(&err), "{state}: a refusal");
    }
}

/// The codes a device answers its Provisioning Data with (MshPRT v1.1 §5.4.4): each is a
/// refusal of the data, named with its code, whose fault is the device's, and none is retried
/// by a rollout — not even Unexpected Error or Cannot Assign Addresses, which another attempt
/// with another address cannot cure: every range meshprov gives is a valid unicast range for
/// the device's element count, and each attempt would retire one more range.
#[test]
fn a_refused_provisioning_data_is_a_refusal_with_its_code_and_not_retried() {
    for (code, words) in [
        (0x06, "Decryption Failed (0x06)"),
        (0x07, "Unexpected Error (0x07)"),
        (0x08, "Cannot Assign Addresses (0x08)"),
        (0x09, "Invalid Data (0x09)"),
        (0x0c, "(0x0c)"),
    ] {
        let mut pair = reach("ExpectComplete", Scenario::Static);
        assert!(
            pair.p2d.iter().any(|p| p[0] == 0x07),
            "the Provisioning Data went out"
        );
        pair.p.handle_pdu(pair.now, &[0x09, code]);
        let err = assert_failed_closed(&mut pair, words);
        assert_eq!(err, ProvisioningError::DataRefused(FailedCode(code)));
        assert_eq!(err.failed_code(), FailedCode(code));
        let m = err.user_message();
        assert!(m.contains(words) && m.contains("took no key"), "{m}");
        assert!(!meshprov::rollout::retryable(&err), "{words}");
    }
    // Before the Data it stays a plain Provisioning Failed: nothing was committed.
    let mut pair = reach("ExpectCommit", Scenario::Static);
    pair.p.handle_pdu(pair.now, &[0x09, 0x07]);
    assert_eq!(
        pair.p.error(),
        Some(&ProvisioningError::FailedReceived(FailedCode(0x07)))
    );
    // A link lost after the Data is the link's fault, retried: the device may hold its keys.
    let mut pair = reach("ExpectComplete", Scenario::Static);
    pair.p.handle_link_closed(pair.now);
    assert_eq!(pair.p.error(), Some(&ProvisioningError::LinkClosed));
    assert!(meshprov::rollout::retryable(&ProvisioningError::LinkClosed));
}

#[test]
fn unexpected_pdu_in_every_state_is_a_typed_error() {
    for (state, s, expected) in STATES {
        for pdu in valid_pdus() {
            if Some(pdu[0]) == expected {
                continue;
            }
            let mut pair = reach(state, s);
            pair.p.handle_pdu(pair.now, &pdu);
            let ctx = format!("{state} ← {:#04x}", pdu[0]);
            let err = assert_failed_closed(&mut pair, &ctx);
            assert_eq!(
                err,
                ProvisioningError::UnexpectedPdu {
                    expected: match &err {
                        ProvisioningError::UnexpectedPdu { expected, .. } => expected,
                        _ => "",
                    },
                    received: PduType(pdu[0]),
                },
                "{ctx}"
            );
            assert_eq!(err.failed_code(), FailedCode::UNEXPECTED_PDU, "{ctx}");
            assert_eq!(err.close_reason(), CloseReason::FAIL, "{ctx}");
        }
    }
}

#[test]
fn malformed_pdus_in_every_state_are_typed_errors() {
    let valid = valid_pdus();
    for (state, s, expected) in STATES {
        let base = valid
            .iter()
            .find(|p| Some(p[0]) == expected)
            .cloned()
            .unwrap_or_else(|| valid[5].clone());
        let truncated = base[..base.len() - 1].to_vec();
        let extended = [base.clone(), vec![0]].concat();
        let cases: [(&str, Vec<u8>, FailedCode); 6] = [
            ("truncated", truncated, FailedCode::INVALID_FORMAT),
            ("extended", extended, FailedCode::INVALID_FORMAT),
            ("empty", vec![], FailedCode::INVALID_FORMAT),
            ("RFU type", vec![0x0e], FailedCode::INVALID_PDU),
            (
                "padding bits",
                vec![0x40 | base[0]],
                FailedCode::INVALID_PDU,
            ),
            ("Failed 0x00", vec![0x09, 0x00], FailedCode::INVALID_FORMAT),
        ];
        for (what, pdu, code) in cases {
            let ctx = format!("{state} ← {what}");
            let code = if what == "truncated" && base.len() == 1 {
                FailedCode::INVALID_FORMAT
            } else {
                code
            };
            let mut pair = reach(state, s);
            pair.p.handle_pdu(pair.now, &pdu);
            let err = assert_failed_closed(&mut pair, &ctx);
            assert!(
                matches!(err, ProvisioningError::Malformed(_)),
                "{ctx}: {err:?}"
            );
            assert_eq!(err.failed_code(), code, "{ctx}");
        }
    }
}

/// A Confirmation or Random of the other algorithm's length is malformed once the algorithm
/// is known (MshPRT v1.1 §5.4.1.6).
#[test]
fn confirmation_of_the_wrong_length_is_malformed() {
    let mut pair = reach("ExpectConfirmation", Scenario::Static);
    pair.p
        .handle_pdu(pair.now, &[vec![0x05], vec![1; 32]].concat());
    let err = assert_failed_closed(&mut pair, "long confirmation");
    assert!(matches!(err, ProvisioningError::Malformed(_)));
}

#[test]
fn bit_flips_of_the_devices_pdus_fail_the_session() {
    // (PDU type, byte, bit, expected error or None for "some error")
    let cases: [(u8, usize, u8, Option<ProvisioningError>); 8] = [
        (0x03, 1, 0, None),
        (0x03, 64, 7, None),
        (0x05, 1, 0, Some(ProvisioningError::ConfirmationFailed)),
        (0x05, 16, 7, Some(ProvisioningError::ConfirmationFailed)),
        (0x06, 1, 0, Some(ProvisioningError::ConfirmationFailed)),
        (0x06, 16, 7, Some(ProvisioningError::ConfirmationFailed)),
        (0x01, 0, 3, None),
        (0x08, 0, 4, None),
    ];
    for bit in 0..8 {
        // Every bit of the type octet of every PDU the device sends.
        for ty in [0x01u8, 0x03, 0x05, 0x06, 0x08] {
            let mut pair = scenario(Scenario::Static, 8);
            pair.tamper = Some(flip_once(ty, 0, bit));
            pair.run();
            let ctx = format!("type {ty:#04x} bit {bit}");
            assert!(pair.outcome().is_none(), "{ctx}");
            assert_failed_closed(&mut pair, &ctx);
        }
    }
    for (ty, byte, bit, want) in cases {
        let mut pair = scenario(Scenario::Static, 8);
        pair.tamper = Some(flip_once(ty, byte, bit));
        pair.run();
        let ctx = format!("type {ty:#04x} byte {byte} bit {bit}");
        assert!(pair.outcome().is_none(), "{ctx}");
        let err = assert_failed_closed(&mut pair, &ctx);
        if let Some(want) = want {
            assert_eq!(err, want, "{ctx}");
        }
        if ty == 0x03 {
            assert!(
                matches!(err, ProvisioningError::InvalidPublicKey(_)),
                "{ctx}: {err:?}"
            );
        }
    }
}

#[test]
fn protocol_timeout_after_60_s_of_silence() {
    let t0 = Instant::from_millis(5_000);
    let mut p = Provisioner::new(no_oob_config(), params(), rng(1));
    assert_eq!(p.poll_timeout(), None);
    p.start(t0);
    assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    p.handle_timeout(t0 + Duration::from_millis(59_999));
    assert!(!p.is_finished());
    p.handle_timeout(t0 + Duration::from_secs(60));
    assert_eq!(p.error(), Some(&ProvisioningError::Timeout));
    assert_eq!(p.close_reason(), Some(CloseReason::TIMEOUT));
    assert_eq!(p.poll_timeout(), None);
    assert_eq!(ProvisioningError::Timeout.fault(), Fault::Link);
}

#[test]
fn timer_is_rearmed_by_progress_and_runs_while_waiting_for_the_installer() {
    let mut pair = reach("ExpectOutputOob", Scenario::Output);
    let deadline = pair
        .p
        .poll_timeout()
        .expect("timer runs while waiting for input");
    assert!(deadline > Instant::from_millis(1_000) + Duration::from_secs(60));
    pair.p.handle_timeout(Instant::from_epoch(
        deadline.since_epoch() - Duration::from_millis(1),
    ));
    assert_eq!(pair.p.state_name(), "ExpectOutputOob");
    pair.p.handle_timeout(deadline);
    assert_eq!(pair.p.error(), Some(&ProvisioningError::Timeout));
}

#[test]
fn spurious_handle_timeout_is_a_no_op() {
    let mut pair = scenario(Scenario::Static, 6);
    pair.run_until("ExpectConfirmation");
    let before = pair.p.poll_timeout();
    pair.p.handle_timeout(pair.now);
    pair.p.handle_timeout(Instant::ZERO);
    assert_eq!(pair.p.state_name(), "ExpectConfirmation");
    assert_eq!(pair.p.poll_timeout(), before);
    pair.run();
    assert!(pair.outcome().is_some());
    pair.p.handle_timeout(pair.now + Duration::from_secs(3600));
    pair.p.handle_link_closed(pair.now);
    assert_eq!(pair.p.close_reason(), Some(CloseReason::SUCCESS));
    assert!(pair.p.poll_event().is_none());
}

#[test]
fn device_timeout_sends_nothing() {
    let mut d = Device::new(device_config(caps()), rng(1));
    let t = Instant::from_millis(1);
    d.handle_pdu(t, &[0x00, 0x00]);
    assert!(d.poll_transmit().is_some());
    let deadline = d.poll_timeout().unwrap();
    d.handle_timeout(t);
    assert!(!d.is_finished());
    d.handle_timeout(deadline);
    assert_eq!(d.error(), Some(&ProvisioningError::Timeout));
    assert!(d.poll_transmit().is_none());
}

#[test]
fn no_oob_is_refused_by_default() {
    let mut pair = Pair::new(
        Provisioner::new(ProvisionerConfig::default(), params(), rng(1)),
        Device::new(device_config(caps()), rng(2)),
    );
    pair.start();
    pair.run();
    let err = assert_failed_closed(&mut pair, "no oob");
    assert_eq!(err, ProvisioningError::NoOobNotAllowed);
    assert_eq!(err.fault(), Fault::Local);
    assert!(pair.p2d.iter().all(|p| p[0] != 0x02), "no Start sent");
    // Explicit No OOB still needs allow_no_oob.
    let config = ProvisionerConfig {
        auth: AuthPolicy::NoOob,
        ..ProvisionerConfig::default()
    };
    let mut pair = Pair::new(
        Provisioner::new(config, params(), rng(1)),
        Device::new(device_config(caps()), rng(2)),
    );
    pair.start();
    pair.run();
    assert_eq!(pair.p.error(), Some(&ProvisioningError::NoOobNotAllowed));
}

#[test]
fn policy_refusals() {
    // HMAC required, device offers CMAC only.
    let mut c = caps();
    c.algorithms = Algorithms::CMAC_AES128;
    let config = ProvisionerConfig {
        algorithm: AlgorithmPolicy::Hmac,
        ..no_oob_config()
    };
    let mut pair = Pair::new(
        Provisioner::new(config, params(), rng(1)),
        Device::new(device_config(c), rng(2)),
    );
    pair.start();
    pair.run();
    assert!(matches!(
        pair.p.error(),
        Some(ProvisioningError::NoAcceptableAlgorithm { .. })
    ));
    // Static required, not offered.
    let config = ProvisionerConfig {
        auth: AuthPolicy::Static(vec![1; 16]),
        ..ProvisionerConfig::default()
    };
    let mut pair = Pair::new(
        Provisioner::new(config, params(), rng(1)),
        Device::new(device_config(caps()), rng(2)),
    );
    pair.start();
    pair.run();
    assert!(matches!(
        pair.p.error(),
        Some(ProvisioningError::NoAcceptableAuthMethod(_))
    ));
}

#[test]
fn oob_public_key_mismatch_is_refused() {
    // The device does not advertise an OOB key, so it sends its own, which differs.
    let config = ProvisionerConfig {
        oob_public_key: Some(key_pair(77).public_key().to_bytes()),
        ..no_oob_config()
    };
    let mut pair = Pair::new(
        Provisioner::new(config, params(), rng(1)),
        Device::new(device_config(caps()), rng(2)),
    );
    pair.start();
    pair.run();
    assert_eq!(
        pair.p.error(),
        Some(&ProvisioningError::OobPublicKeyMismatch)
    );
    // With the right key it completes, in band.
    let d = Device::new(device_config(caps()), rng(2));
    let config = ProvisionerConfig {
        oob_public_key: Some(d.public_key().to_bytes()),
        ..no_oob_config()
    };
    let mut pair = Pair::new(Provisioner::new(config, params(), rng(1)), d);
    pair.start();
    pair.run();
    assert!(!pair.outcome().unwrap().public_key_oob);
}

#[test]
fn invalid_address_and_link_loss() {
    let mut pair = reach("ExpectAddress", Scenario::Static);
    pair.p.set_unicast_address(pair.now, 0x7fff); // 2 elements: 0x8000 is not unicast
    let err = assert_failed_closed(&mut pair, "address");
    assert!(matches!(err, ProvisioningError::InvalidAddress { .. }));
    assert_eq!(err.failed_code(), FailedCode::CANNOT_ASSIGN_ADDRESSES);

    let mut pair = reach("ExpectRandom", Scenario::Static);
    pair.p.handle_link_closed(pair.now);
    let err = assert_failed_closed(&mut pair, "link");
    assert_eq!(err, ProvisioningError::LinkClosed);
    assert!(err.user_message().contains("closer"));
}

#[test]
fn calls_in_the_wrong_state_change_nothing() {
    let mut pair = reach("ExpectConfirmation", Scenario::Static);
    pair.p.set_unicast_address(pair.now, 0x0200);
    pair.p.commit_done(pair.now);
    assert_eq!(
        pair.p.provide_output_oob(pair.now, OobValue::Numeric(1)),
        Err(ProvisioningError::WrongState("provide_output_oob"))
    );
    assert_eq!(pair.p.state_name(), "ExpectConfirmation");
    pair.run();
    assert_eq!(pair.outcome().unwrap().address, 0x0b0c);
}

#[test]
fn a_bad_output_value_is_refused_and_the_session_waits() {
    let mut pair = reach("ExpectOutputOob", Scenario::Output);
    let now = pair.now;
    assert!(matches!(
        pair.p.provide_output_oob(now, OobValue::Numeric(1_000_000)),
        Err(ProvisioningError::InvalidOobValue(_))
    ));
    assert!(matches!(
        pair.p
            .provide_output_oob(now, OobValue::Alphanumeric("AB".into())),
        Err(ProvisioningError::InvalidOobValue(_))
    ));
    assert_eq!(pair.p.state_name(), "ExpectOutputOob");
    pair.run();
    assert!(pair.outcome().is_some());
}

#[test]
fn wrong_output_value_fails_with_confirmation_failed() {
    let mut pair = reach("ExpectOutputOob", Scenario::Output);
    pair.auto_answer = false;
    let shown = pair
        .d_events
        .iter()
        .find_map(|e| match e {
            DeviceEvent::Display(OobValue::Numeric(n)) => Some(*n),
            _ => None,
        })
        .unwrap();
    pair.p
        .provide_output_oob(pair.now, OobValue::Numeric((shown + 1) % 1_000_000))
        .unwrap();
    pair.run();
    assert_eq!(
        pair.d_failed(),
        Some(&ProvisioningError::ConfirmationFailed)
    );
    assert_eq!(
        pair.p.error(),
        Some(&ProvisioningError::FailedReceived(
            FailedCode::CONFIRMATION_FAILED
        ))
    );
}

/// The device answers bad input with Provisioning Failed and the code of §5.4.4.
#[test]
fn device_sends_the_right_failed_codes() {
    let t = Instant::from_millis(1);
    let cases: [(&[&[u8]], u8); 5] = [
        (&[&[0x02, 0, 0, 0, 0, 0]], 0x03), // Start before Invite: Unexpected PDU
        (&[&[0x00]], 0x02),                // Invite without parameter: Invalid Format
        (&[&[0x1f]], 0x01),                // RFU type: Invalid PDU
        (&[&[0x00, 0x00], &[0x02, 0, 0, 1, 0, 0]], 0x02), // Static not offered: Invalid Format
        (&[&[0x00, 0x00], &[0x02, 0, 1, 0, 0, 0]], 0x02), // OOB key not offered
    ];
    for (pdus, code) in cases {
        let mut d = Device::new(device_config(caps()), rng(1));
        for pdu in pdus {
            d.handle_pdu(t, pdu);
        }
        let mut last = None;
        while let Some(p) = d.poll_transmit() {
            last = Some(p);
        }
        assert_eq!(last, Some(vec![0x09, code]), "{pdus:?}");
        assert!(d.is_finished());
        // Further input is ignored.
        d.handle_pdu(t, &[0x00, 0x00]);
        assert!(d.poll_transmit().is_none());
    }
    // A tampered Data PDU: Decryption Failed, which the provisioner reports.
    let mut pair = scenario(Scenario::Static, 9);
    pair.tamper_p2d = Some(Box::new(|mut pdu: Vec<u8>| {
        if pdu[0] == 0x07 {
            pdu[10] ^= 0x80;
        }
        pdu
    }));
    pair.run();
    assert_eq!(pair.d_failed(), Some(&ProvisioningError::DecryptionFailed));
    assert_eq!(
        pair.p.error(),
        Some(&ProvisioningError::DataRefused(
            FailedCode::DECRYPTION_FAILED
        ))
    );
    // A Start that the device's capabilities do not support with its algorithm.
    let mut c = caps();
    c.algorithms = Algorithms::HMAC_SHA256;
    let mut d = Device::new(device_config(c), rng(1));
    d.handle_pdu(t, &[0x00, 0x00]);
    d.handle_pdu(t, &[0x02, 0, 0, 0, 0, 0]);
    let sent: Vec<_> = std::iter::from_fn(|| d.poll_transmit()).collect();
    assert_eq!(sent.last(), Some(&vec![0x09, 0x02]));
    let _ = PublicKeyType::EMPTY;
}

#[test]
fn debug_output_carries_no_secrets() {
    let static_value: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0x5c).collect();
    let mut c = caps();
    c.oob_type = OobType::STATIC_OOB_AVAILABLE;
    let mut dc = device_config(c);
    dc.static_oob = Some(static_value.clone());
    let config = ProvisionerConfig {
        auth: AuthPolicy::Static(static_value.clone()),
        ..ProvisionerConfig::default()
    };
    let mut pair = Pair::new(
        Provisioner::new(config, params(), rng(11)),
        Device::new(dc, rng(12)),
    );
    pair.start();
    let mut debug = Vec::new();
    while pair.step() {
        debug.push(format!("{:?}", pair.p));
        debug.push(format!("{:?}", pair.d));
    }
    let outcome = pair.outcome().unwrap().clone();
    assert_eq!(outcome.algorithm, Algorithm::HmacSha256);
    debug.push(format!("{outcome:?}"));
    debug.push(format!("{:#?}", pair.p_events));
    debug.push(format!("{:#?}", pair.d_events));
    debug.push(format!("{:?}", pair.p.transcript()));
    let secrets = [
        hex::encode(outcome.device_key.expose_secret()),
        hex::encode(&outcome.device_key.expose_secret()[..6]),
        hex::encode(NET_KEY),
        hex::encode(&NET_KEY[..6]),
        hex::encode(&static_value),
        hex::encode(&static_value[..6]),
    ];
    for text in &debug {
        for s in &secrets {
            assert!(!text.to_lowercase().contains(s), "{s} leaked in {text}");
        }
        // Not as a decimal byte list either.
        assert!(!text.contains(&format!("{:?}", &NET_KEY[..4])), "{text}");
    }
}
