//! Property tests: random bytes into `handle_pdu` in every reachable state of both roles
//! never panic, and bytes that do not parse always end the session with a typed
//! `Malformed` error (MshPRT v1.1 §5.4.4).

mod prov_support;

use meshprov::provisioning::{
    AlgorithmPolicy, AuthPolicy, Device, Provisioner, ProvisionerConfig, ProvisioningError,
};
use meshprov::wire::{InputOobActions, OobType, OutputOobActions, ProvisioningPdu};
use proptest::prelude::*;
use prov_support::{Pair, caps, device_config, params, rng};

const STATES: [(&str, u8); 9] = [
    ("ExpectCapabilities", 0),
    ("ExpectAddress", 0),
    ("ExpectPublicKey", 0),
    ("ExpectOutputOob", 1),
    ("ExpectInputComplete", 2),
    ("ExpectConfirmation", 0),
    ("ExpectRandom", 0),
    ("ExpectCommit", 0),
    ("ExpectComplete", 0),
];

fn pair(kind: u8) -> Pair {
    let mut c = caps();
    c.oob_type = OobType::STATIC_OOB_AVAILABLE;
    c.output_oob_size = 4;
    c.output_oob_action = OutputOobActions::OUTPUT_NUMERIC;
    c.input_oob_size = 4;
    c.input_oob_action = InputOobActions::INPUT_NUMERIC;
    let config = ProvisionerConfig {
        algorithm: AlgorithmPolicy::Cmac,
        auth: match kind {
            0 => AuthPolicy::Static(vec![7; 16]),
            1 => AuthPolicy::Output,
            _ => AuthPolicy::Input,
        },
        ..ProvisionerConfig::default()
    };
    let mut dc = device_config(c);
    dc.static_oob = Some(vec![7; 16]);
    let mut p = Pair::new(
        Provisioner::new(config, params(), rng(1)),
        Device::new(dc, rng(2)),
    );
    p.start();
    p
}

/// Mostly PDU-shaped input: a type octet near the real ones and a length near the real ones.
fn pdu_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        (0u8..0x10, proptest::collection::vec(any::<u8>(), 0..70)).prop_map(|(t, mut v)| {
            v.insert(0, t);
            v
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn provisioner_never_panics(state in 0usize..STATES.len(), bytes in pdu_bytes()) {
        let (name, kind) = STATES[state];
        let mut pair = pair(kind);
        pair.run_until(name);
        pair.p.handle_pdu(pair.now, &bytes);
        if ProvisioningPdu::parse(&bytes).is_err() {
            prop_assert!(matches!(pair.p.error(), Some(ProvisioningError::Malformed(_))));
        }
        // Whatever happened, the session can be driven on without panicking.
        pair.run();
        prop_assert!(pair.p.is_finished() || pair.p.poll_timeout().is_some());
    }

    #[test]
    fn device_never_panics(steps in 0usize..6, bytes in pdu_bytes()) {
        let mut pair = pair(0);
        for _ in 0..steps * 2 {
            pair.step();
        }
        pair.d.handle_pdu(pair.now, &bytes);
        if ProvisioningPdu::parse(&bytes).is_err() {
            prop_assert!(matches!(pair.d.error(), Some(ProvisioningError::Malformed(_))));
            let sent: Vec<_> = std::iter::from_fn(|| pair.d.poll_transmit()).collect();
            prop_assert_eq!(sent.last().map(|p| p[0]), Some(0x09));
        }
        pair.run();
    }
}
