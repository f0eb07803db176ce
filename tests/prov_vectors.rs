//! The provisioning sample data of MshPRT v1.1 §8.17.1 (CMAC) and §8.17.2 (HMAC-SHA256),
//! reproduced byte for byte by the real `Provisioner` and `Device` state machines.

mod prov_support;

use meshprov::crypto::NetKey;
use meshprov::crypto::ecdh::KeyPair;
use meshprov::crypto::provisioning::ProvRandom;
use std::sync::Arc;

use meshprov::provisioning::{
    AlgorithmPolicy, AuthPolicy, CloseReason, Device, DeviceConfig, DeviceEvent, KeyLogBuffer,
    Provisioner, ProvisionerConfig, ProvisioningParams, keylog,
};
use meshprov::wire::Capabilities;
use prov_support::{Pair, rng};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/").to_string() + name;
    // Fail, never skip, when the vectors are missing.
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn h(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(v[key].as_str().unwrap_or_else(|| panic!("missing {key}"))).unwrap()
}

fn run_sample(file: &str, algorithm: AlgorithmPolicy, auth_static: bool) {
    let v = load(file);
    let data = &v["provisioning_data"];
    let params = ProvisioningParams {
        net_key: NetKey::from_slice(&h(data, "net_key")).unwrap(),
        net_key_index: u16::from_str_radix(data["key_index"].as_str().unwrap(), 16).unwrap(),
        flags: u8::from_str_radix(data["flags"].as_str().unwrap(), 16).unwrap(),
        iv_index: u32::from_str_radix(data["iv_index"].as_str().unwrap(), 16).unwrap(),
    };
    let address = u16::from_str_radix(data["unicast_address"].as_str().unwrap(), 16).unwrap();
    let auth_value = h(&v, "auth_value");
    let key_log = Arc::new(KeyLogBuffer::new());
    let config = ProvisionerConfig {
        key_log: Some(key_log.clone()),
        algorithm,
        auth: if auth_static {
            AuthPolicy::Static(auth_value.clone())
        } else {
            AuthPolicy::NoOob
        },
        allow_no_oob: !auth_static,
        ..ProvisionerConfig::default()
    };
    let p = Provisioner::new(config, params, rng(1))
        .with_key_pair(KeyPair::from_private_bytes(&h(&v, "provisioner_private_key")).unwrap())
        .with_random(ProvRandom::from_slice(&h(&v, "random_provisioner")).unwrap());
    let caps_pdu = h(&v, "capabilities_pdu");
    let capabilities = Capabilities::parse_params(&caps_pdu[1..]).unwrap();
    let d = Device::new(
        DeviceConfig {
            uuid: [0; 16],
            capabilities,
            static_oob: auth_static.then(|| auth_value.clone()),
            key_pair: Some(KeyPair::from_private_bytes(&h(&v, "device_private_key")).unwrap()),
            output_value: None,
            records: Vec::new(),
            records_fault: None,
        },
        rng(2),
    )
    .with_random(ProvRandom::from_slice(&h(&v, "random_device")).unwrap());
    let mut pair = Pair::new(p, d);
    pair.address = address;
    pair.start();
    pair.run();

    let with_type = |ty: u8, key: &str| {
        let mut out = vec![ty];
        out.extend(h(&v, key));
        out
    };
    let expect_p2d = [
        h(&v, "invite_pdu"),
        h(&v, "start_pdu"),
        h(&v, "public_key_pdu_provisioner"),
        with_type(0x05, "confirmation_provisioner"),
        with_type(0x06, "random_provisioner"),
        h(&v, "data_pdu"),
    ];
    let expect_d2p = [
        caps_pdu.clone(),
        h(&v, "public_key_pdu_device"),
        with_type(0x05, "confirmation_device"),
        with_type(0x06, "random_device"),
        h(&v, "complete_pdu"),
    ];
    assert_eq!(
        pair.p2d.iter().map(hex::encode).collect::<Vec<_>>(),
        expect_p2d.iter().map(hex::encode).collect::<Vec<_>>(),
        "{file}: provisioner PDUs"
    );
    assert_eq!(
        pair.d2p.iter().map(hex::encode).collect::<Vec<_>>(),
        expect_d2p.iter().map(hex::encode).collect::<Vec<_>>(),
        "{file}: device PDUs"
    );
    let device_key = h(&v, "device_key");
    let outcome = pair.outcome().expect("provisioner completed");
    assert_eq!(outcome.device_key.expose_secret().as_slice(), device_key);
    assert_eq!(outcome.address, address);
    assert_eq!(pair.p.close_reason(), Some(CloseReason::SUCCESS));
    assert!(pair.p.is_finished() && pair.d.is_finished());
    let provisioned = pair
        .d_events
        .iter()
        .find_map(|e| match e {
            DeviceEvent::Provisioned {
                device_key,
                net_key,
                address,
                net_key_index,
                iv_index,
                ..
            } => Some((
                device_key.clone(),
                net_key.clone(),
                *address,
                *net_key_index,
                *iv_index,
            )),
            _ => None,
        })
        .expect("device provisioned");
    assert_eq!(provisioned.0.expose_secret().as_slice(), device_key);
    assert_eq!(provisioned.1.expose_secret().as_slice(), h(data, "net_key"));
    assert_eq!(
        (provisioned.2, provisioned.3, provisioned.4),
        (0x0b0c, 0x0567, 0x0102_0304)
    );
    // The key log has every session secret, in order, named by the provisioner's public key.
    let entries = key_log.entries();
    let labels: Vec<&str> = entries.iter().map(|e| e.label.as_str()).collect();
    assert_eq!(labels, keylog::LABELS, "{file}");
    for e in &entries {
        assert_eq!(
            e.session,
            h(&v, "provisioner_public_key"),
            "{file}: {}",
            e.label
        );
        let sample = match e.label.as_str() {
            keylog::PROVISIONER_PRIVATE_KEY => "provisioner_private_key",
            keylog::ECDH_SECRET => "ecdh_secret",
            keylog::AUTH_VALUE => "auth_value",
            keylog::PROVISIONER_RANDOM => "random_provisioner",
            keylog::DEVICE_RANDOM => "random_device",
            keylog::SESSION_KEY => "session_key",
            keylog::SESSION_NONCE => "session_nonce",
            keylog::DEVICE_KEY => "device_key",
            other => panic!("unexpected label {other}"),
        };
        assert_eq!(
            hex::encode(&e.secret),
            hex::encode(h(&v, sample)),
            "{file}: {sample}"
        );
    }
    // The transcript names every PDU, in order, both directions.
    let names: Vec<_> = pair.p.transcript().iter().map(|e| e.name()).collect();
    assert_eq!(names.len(), 11);
    assert_eq!(names[0], "Provisioning Invite");
    assert_eq!(names[10], "Provisioning Complete");
}

/// MshPRT v1.1 §8.17.1: BTM_ECDH_P256_CMAC_AES128_AES_CCM, No OOB.
#[test]
fn sample_cmac_no_oob_byte_exact() {
    run_sample("provisioning-cmac.json", AlgorithmPolicy::Cmac, false);
}

/// MshPRT v1.1 §8.17.2: BTM_ECDH_P256_HMAC_SHA256_AES_CCM, Static OOB (32 octets).
#[test]
fn sample_hmac_static_oob_byte_exact() {
    run_sample("provisioning-hmac.json", AlgorithmPolicy::Hmac, true);
}

/// The default algorithm policy picks HMAC-SHA256 when offered, which the §8.17.2 sample uses.
#[test]
fn sample_hmac_with_auto_policy() {
    run_sample("provisioning-hmac.json", AlgorithmPolicy::Auto, true);
}
