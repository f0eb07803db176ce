//! Certificate-based provisioning end to end on the simulated air with the REAL chain
//! validation (`cert::verify_device_chain`): happy paths on PB-ADV and PB-GATT with 0, 1 and 3
//! intermediates, and defective chains refused before any Provisioning Data is sent.

mod cert_support;

use std::sync::Arc;
use std::time::SystemTime;

use cert_support::{Node, Pki, now, uuid};
use meshprov::cert::ca::{self, CertTemplate};
use meshprov::cert::{Policy, TrustStore, verify_device_chain};
use meshprov::crypto::ecdh::KeyPair;
use meshprov::provisioning::{Direction, ProvisionerConfig, ProvisioningError, RecordsPolicy};
use meshprov::sim::building::Building;
use meshprov::sim::node::DeviceState;
use meshprov::sim::run::{self, BearerChoice, CertVerifier, MemorySink, RunOptions};

const DEVICE_PRIVATE: &str = "529aa0670d72cd6497502ed473502b037e8803b5c60829a5a3caa219505530ba";

fn device_cert(pki: &mut Pki, template: &CertTemplate, issuer: &Node) -> Vec<u8> {
    let kp = KeyPair::from_private_bytes(&hex::decode(DEVICE_PRIVATE).unwrap()).unwrap();
    let spki = ca::p256_spki(kp.public_key().as_bytes()).unwrap();
    let _ = pki;
    ca::issue_certificate(template, &spki, &issuer.key, Some(&issuer.der)).unwrap()
}

/// A building with one certified device, its files in a temporary directory.
fn building(device_der: &[u8], intermediates: &[Vec<u8>]) -> (tempfile::TempDir, Building) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("device.der"), device_der).unwrap();
    let mut names = Vec::new();
    for (i, der) in intermediates.iter().enumerate() {
        let name = format!("int{i}.pem");
        std::fs::write(dir.path().join(&name), ca::to_pem(der).unwrap()).unwrap();
        names.push(format!("\"{name}\""));
    }
    let text = format!(
        "[[device]]\nuuid = \"{}\"\ncertificate = \"device.der\"\nintermediates = [{}]\nprivate_key = \"{DEVICE_PRIVATE}\"\n",
        uuid(),
        names.join(", ")
    );
    let b = Building::parse_with_base(&text, "cert.toml", dir.path()).unwrap();
    (dir, b)
}

fn verifier(root_der: &[u8], policy: Policy, at: SystemTime) -> CertVerifier {
    let mut trust = TrustStore::new();
    trust.add_der(root_der).unwrap();
    Arc::new(move |u, device, ints| {
        verify_device_chain(device, ints, &trust, &policy, u, at)
            .map(|v| v.public_key)
            .map_err(|e| e.to_string())
    })
}

fn options(bearer: BearerChoice, verifier: CertVerifier) -> RunOptions {
    let records = match bearer {
        BearerChoice::Adv => RecordsPolicy::pb_adv(),
        BearerChoice::Gatt => RecordsPolicy::pb_gatt(69),
    };
    RunOptions {
        config: ProvisionerConfig {
            records,
            ..ProvisionerConfig::default()
        },
        bearer,
        cert_verifier: Some(verifier),
        ..RunOptions::default()
    }
}

#[test]
fn certified_devices_provision_on_both_bearers_with_0_1_3_intermediates() {
    for n in [0usize, 1, 3] {
        let mut pki = Pki::new(40 + n as u64);
        let root = pki.root("Acme Root");
        let mut chain: Vec<Node> = Vec::new();
        for i in 0..n {
            let issuer = chain.last().unwrap_or(&root);
            let int = pki.intermediate(&format!("Acme Intermediate {i}"), issuer);
            chain.push(int);
        }
        let issuer = chain.last().unwrap_or(&root);
        let t = pki.device_template();
        let dev = device_cert(&mut pki, &t, issuer);
        let ints: Vec<Vec<u8>> = chain.iter().rev().map(|c| c.der.clone()).collect();
        let (_dir, b) = building(&dev, &ints);
        for bearer in [BearerChoice::Adv, BearerChoice::Gatt] {
            let mut sink = MemorySink::default();
            let opts = options(bearer, verifier(&root.der, Policy::default(), now()));
            let r = run::run(&b, &[uuid()], &opts, &mut sink).unwrap();
            let d = &r.results[0];
            let o = d
                .outcome
                .as_ref()
                .unwrap_or_else(|e| panic!("{n} intermediates, {bearer:?}: {e:?}"));
            assert!(
                o.public_key_oob,
                "the certificate's key is used out of band"
            );
            match &d.device_state {
                DeviceState::Provisioned { device_key, .. } => {
                    assert_eq!(device_key, &o.device_key)
                }
                other => panic!("{other:?}"),
            }
            // The device never sent its public key.
            assert!(
                !d.device_transcript
                    .iter()
                    .any(|e| e.direction == Direction::Sent && e.bytes.first() == Some(&0x03)),
                "device sent a Public Key PDU"
            );
            eprintln!("{n} intermediates over {bearer:?}: {:?}", d.elapsed);
        }
    }
}

/// (what, device certificate, trusted root, policy, verification time, expected verdict).
type Case = (
    &'static str,
    Vec<u8>,
    Vec<u8>,
    Policy,
    SystemTime,
    &'static str,
);

/// Each defect is refused with its verdict, and the device never receives Provisioning Data.
#[test]
fn defective_chains_are_refused_before_data() {
    let mut pki = Pki::new(7);
    let root = pki.root("Acme Root");
    let int = pki.intermediate("Acme Intermediate", &root);
    let other_root = pki.root("Impostor Root");

    let good_t = pki.device_template();
    let good = device_cert(&mut pki, &good_t, &int);

    let mut wrong_cn = pki.device_template();
    wrong_cn.subject = "CN=00000000000000000000000000000bad".into();
    let mut no_agreement = pki.device_template();
    no_agreement.key_usage = Some(ca::KeyUsageSpec {
        digital_signature: true,
        ..Default::default()
    });
    let mut bad_sig = good.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 0x01;

    let serial_deny = {
        let mut p = Policy::default();
        p.deny_serials.push(good_t.serial.clone());
        p
    };
    let far_future = now() + cert_support::days(4000);
    let cases: Vec<Case> = vec![
        (
            "expired",
            good.clone(),
            root.der.clone(),
            Policy::default(),
            far_future,
            "expired",
        ),
        (
            "untrusted root",
            good.clone(),
            other_root.der.clone(),
            Policy::default(),
            now(),
            "trusted root",
        ),
        (
            "wrong CN",
            device_cert(&mut pki, &wrong_cn, &int),
            root.der.clone(),
            Policy::default(),
            now(),
            "is not the device UUID",
        ),
        (
            "no keyAgreement",
            device_cert(&mut pki, &no_agreement, &int),
            root.der.clone(),
            Policy::default(),
            now(),
            "keyAgreement",
        ),
        (
            "bad signature",
            bad_sig,
            root.der.clone(),
            Policy::default(),
            now(),
            "signature",
        ),
        (
            "deny list",
            good.clone(),
            root.der.clone(),
            serial_deny,
            now(),
            "deny list",
        ),
    ];
    let mut cases = cases;
    let mut chains: Vec<Vec<Vec<u8>>> = vec![vec![int.der.clone()]; cases.len()];
    // Not yet valid: verified the day before the chain was issued.
    cases.push((
        "not yet valid",
        good.clone(),
        root.der.clone(),
        Policy::default(),
        cert_support::at(cert_support::ISSUED) - cert_support::days(1),
        "not yet valid",
    ));
    chains.push(vec![int.der.clone()]);
    // An issuer that is not a CA.
    let mut not_ca_t = pki.intermediate_template("Not A CA");
    not_ca_t.basic_constraints = Some((false, None));
    let k = pki.p256();
    let not_ca = pki.make(&not_ca_t, k, Some(&root));
    let t = pki.device_template();
    cases.push((
        "issuer not a CA",
        device_cert(&mut pki, &t, &not_ca),
        root.der.clone(),
        Policy::default(),
        now(),
        "is not a CA",
    ));
    chains.push(vec![not_ca.der.clone()]);
    // An issuer whose keyUsage lacks keyCertSign.
    let mut no_sign_t = pki.intermediate_template("No keyCertSign");
    no_sign_t.basic_constraints = Some((true, None));
    no_sign_t.key_usage = Some(ca::KeyUsageSpec {
        crl_sign: true,
        ..Default::default()
    });
    let k = pki.p256();
    let no_sign = pki.make(&no_sign_t, k, Some(&root));
    let t = pki.device_template();
    cases.push((
        "missing keyCertSign",
        device_cert(&mut pki, &t, &no_sign),
        root.der.clone(),
        Policy::default(),
        now(),
        "keyCertSign",
    ));
    chains.push(vec![no_sign.der.clone()]);
    // Path length: an intermediate with pathLen 0 signs another intermediate.
    let mut p0_t = pki.intermediate_template("PathLen Zero");
    p0_t.basic_constraints = Some((true, Some(0)));
    let k = pki.p256();
    let p0 = pki.make(&p0_t, k, Some(&root));
    let below = pki.intermediate("Below PathLen Zero", &p0);
    let t = pki.device_template();
    cases.push((
        "path length exceeded",
        device_cert(&mut pki, &t, &below),
        root.der.clone(),
        Policy::default(),
        now(),
        "path length",
    ));
    chains.push(vec![below.der.clone(), p0.der.clone()]);
    // A device key that is not P-256.
    let t = pki.device_template();
    let k = pki.p384();
    let p384_dev = pki.make(&t, k, Some(&int));
    cases.push((
        "P-384 device key",
        p384_dev.der.clone(),
        root.der.clone(),
        Policy::default(),
        now(),
        "P-256",
    ));
    chains.push(vec![int.der.clone()]);

    for ((what, dev, trusted, policy, at, verdict), ints) in cases.into_iter().zip(chains) {
        let (_dir, b) = building(&dev, &ints);
        let mut sink = MemorySink::default();
        let opts = options(BearerChoice::Adv, verifier(&trusted, policy, at));
        let r = run::run(&b, &[uuid()], &opts, &mut sink).unwrap();
        let d = &r.results[0];
        match &d.outcome {
            Err(ProvisioningError::CertificateRejected(reason)) => {
                assert!(reason.contains(verdict), "{what}: {reason}");
            }
            other => panic!("{what}: {other:?}"),
        }
        assert!(sink.records.is_empty(), "{what}: nothing committed");
        assert!(
            matches!(d.device_state, DeviceState::Unprovisioned),
            "{what}"
        );
        assert!(
            !d.device_transcript
                .iter()
                .any(|e| e.bytes.first() == Some(&0x07)),
            "{what}: the device saw a Provisioning Data PDU"
        );
        assert!(
            !d.device_transcript
                .iter()
                .any(|e| e.bytes.first() == Some(&0x00)),
            "{what}: not even an Invite"
        );
    }
}
