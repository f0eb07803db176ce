//! Certificate-based provisioning on the simulated air (MshPRT v1.1 §5.4.2; reference §7):
//! virtual devices serve their certificate records from files named in the building file, the
//! driver asks `RunOptions::cert_verifier` for the verdict, over PB-ADV and PB-GATT, with both
//! algorithms and chains of 0, 1 and 3 intermediates.
//!
//! The certificate files are opaque test bytes, not X.509 (that is `cert/`'s business): the
//! stub verifier takes the public key from octets 4..68 and refuses a file that contains
//! `REVOKED`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use meshprov::bearer::pb_adv::CloseCause;
use meshprov::provisioning::{Direction, ProvisioningError, RecordsPolicy, TranscriptEntry};
use meshprov::sim::building::Building;
use meshprov::sim::node::DeviceState;
use meshprov::sim::run::{self, BearerChoice, CertVerifier, MemorySink, RunOptions};
use meshprov::uuid::DeviceUuid;
use meshprov::wire::{FailedCode, LinkCloseReason, PduType, ProvisioningPdu, StartPublicKey};

const DEVICE_PRIVATE: &str = "529aa0670d72cd6497502ed473502b037e8803b5c60829a5a3caa219505530ba";
const DEVICE_PUBLIC: &str = "f465e43ff23d3f1b9dc7dfc04da8758184dbc966204796eccf0d6cf5e16500cc0201d048bcbbd899eeefc424164e33c201c2b010ca6b4d43a8a155cad8ecb279";
/// Another valid P-256 private key (of the sample data's provisioner).
const OTHER_PRIVATE: &str = "06a516693c9aa31a6084545d0c5db641b48572b97203ddffb7ac73f7d0457663";

fn uuid(n: u8) -> DeviceUuid {
    format!("7b2c1a90-0000-4000-8000-0000000000{n:02x}")
        .parse()
        .unwrap()
}

/// An opaque 500-octet "device certificate" carrying `public` (hex) at octets 4..68.
fn device_cert(public: &str, marker: &[u8]) -> Vec<u8> {
    let mut c = b"CERT".to_vec();
    c.extend(hex::decode(public).unwrap());
    c.extend_from_slice(marker);
    c.extend((0..500 - c.len()).map(|i| (i * 13 + 1) as u8));
    c
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn pem(der: &[u8]) -> String {
    let body: Vec<String> = base64(der)
        .as_bytes()
        .chunks(64)
        .map(|l| String::from_utf8(l.to_vec()).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        body.join("\n")
    )
}

/// Writes the certificate files into `dir`: for device `n`, `dev{n}.der` or `.pem` and
/// `int{n}_{k}.der`.
fn write_chain(dir: &Path, n: u8, cert: &[u8], intermediates: usize, as_pem: bool) -> String {
    let cert_file = if as_pem {
        let f = format!("certs/dev{n}.pem");
        std::fs::write(dir.join(&f), pem(cert)).unwrap();
        f
    } else {
        let f = format!("certs/dev{n}.der");
        std::fs::write(dir.join(&f), cert).unwrap();
        f
    };
    let mut ints = Vec::new();
    for k in 0..intermediates {
        let f = format!("certs/int{n}_{k}.der");
        let body: Vec<u8> = (0..(150 + 40 * k)).map(|i| (i as u8) ^ (k as u8)).collect();
        std::fs::write(dir.join(&f), body).unwrap();
        ints.push(format!("\"{f}\""));
    }
    format!(
        "certificate = \"{cert_file}\"\nintermediates = [{}]\n",
        ints.join(", ")
    )
}

/// A building in a fresh directory: devices 1, 2, 3 with 0, 1 and 3 intermediates (device 2's
/// certificate as PEM), all holding the certificate's private key.
fn building(dir: &Path, algorithm: &str) -> Building {
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    let mut text = String::from("[air]\nloss = 0.0\n");
    for (n, ints) in [(1u8, 0usize), (2, 1), (3, 3)] {
        let chain = write_chain(dir, n, &device_cert(DEVICE_PUBLIC, b""), ints, n == 2);
        text += &format!(
            "[[device]]\nuuid = \"{}\"\nalgorithms = [\"{algorithm}\"]\nprivate_key = \"{DEVICE_PRIVATE}\"\n{chain}",
            uuid(n)
        );
    }
    std::fs::write(dir.join("building.toml"), &text).unwrap();
    Building::load(&dir.join("building.toml")).unwrap()
}

type Seen = Arc<Mutex<Vec<(DeviceUuid, usize, Vec<usize>)>>>;

/// The stub verifier; it records what it was shown.
fn verifier(seen: Seen) -> CertVerifier {
    Arc::new(move |uuid: &DeviceUuid, cert: &[u8], ints: &[Vec<u8>]| {
        seen.lock()
            .unwrap()
            .push((*uuid, cert.len(), ints.iter().map(Vec::len).collect()));
        if cert.windows(7).any(|w| w == b"REVOKED") {
            return Err("device certificate is on the deny-list".to_string());
        }
        cert.get(4..68)
            .and_then(|k| <[u8; 64]>::try_from(k).ok())
            .ok_or_else(|| "no key".to_string())
    })
}

fn options(bearer: BearerChoice, seen: &Seen) -> RunOptions {
    let mut opts = RunOptions {
        bearer,
        seed: 7,
        cert_verifier: Some(verifier(seen.clone())),
        ..RunOptions::default()
    };
    opts.config.records = match bearer {
        BearerChoice::Adv => RecordsPolicy::pb_adv(),
        // The devices' ATT MTU is the default 69: 57-octet fragments.
        BearerChoice::Gatt => RecordsPolicy::pb_gatt(69),
    };
    opts
}

fn types(t: &[TranscriptEntry], direction: Direction) -> Vec<PduType> {
    t.iter()
        .filter(|e| e.direction == direction)
        .filter_map(|e| e.pdu_type)
        .collect()
}

#[test]
fn certificate_provisioning_on_both_bearers_and_algorithms() {
    for bearer in [BearerChoice::Adv, BearerChoice::Gatt] {
        for alg in ["cmac", "hmac"] {
            let dir = tempfile::tempdir().unwrap();
            let b = building(dir.path(), alg);
            let seen: Seen = Arc::default();
            let mut sink = MemorySink::default();
            let targets = [uuid(1), uuid(2), uuid(3)];
            let report = run::run(&b, &targets, &options(bearer, &seen), &mut sink).unwrap();
            let ctx = format!("{} {alg}", bearer.name());
            for (r, n_ints) in report.results.iter().zip([0usize, 1, 3]) {
                let o = r
                    .outcome
                    .as_ref()
                    .unwrap_or_else(|e| panic!("{ctx} {}: {e:?}", r.uuid));
                assert!(o.public_key_oob, "{ctx}");
                assert_eq!(o.algorithm.id(), if alg == "cmac" { 0 } else { 1 }, "{ctx}");
                assert_eq!(
                    hex::encode(o.device_public_key.as_bytes()),
                    DEVICE_PUBLIC,
                    "{ctx}"
                );
                let DeviceState::Provisioned { device_key, .. } = &r.device_state else {
                    panic!("{ctx}: device not provisioned");
                };
                assert_eq!(device_key, &o.device_key, "{ctx}");
                // The device got Records Get first, never sent its public key, and was sent
                // a Start selecting the OOB public key.
                let got = types(&r.device_transcript, Direction::Received);
                assert_eq!(got[0], PduType::RECORDS_GET, "{ctx}");
                let requests = got
                    .iter()
                    .filter(|t| **t == PduType::RECORD_REQUEST)
                    .count();
                let frag = if bearer == BearerChoice::Adv { 56 } else { 57 };
                let mut expected = 500usize.div_ceil(frag);
                for k in 0..n_ints {
                    expected += (150 + 40 * k).div_ceil(frag);
                }
                assert_eq!(requests, expected, "{ctx}: fragments");
                let invite = got.iter().position(|t| *t == PduType::INVITE).unwrap();
                assert_eq!(invite, 1 + requests, "{ctx}: records before Invite");
                let start = r
                    .device_transcript
                    .iter()
                    .find_map(|e| match ProvisioningPdu::parse(&e.bytes) {
                        Ok(ProvisioningPdu::Start(s)) => Some(s),
                        _ => None,
                    })
                    .unwrap();
                assert_eq!(start.public_key, StartPublicKey::Oob, "{ctx}");
                let sent = types(&r.device_transcript, Direction::Sent);
                assert!(!sent.contains(&PduType::PUBLIC_KEY), "{ctx}");
                assert!(sent.contains(&PduType::COMPLETE), "{ctx}");
            }
            // The verifier saw each chain once, whole.
            let mut seen = seen.lock().unwrap().clone();
            seen.sort_by_key(|s| s.0);
            assert_eq!(
                seen,
                vec![
                    (uuid(1), 500, vec![]),
                    (uuid(2), 500, vec![150]),
                    (uuid(3), 500, vec![150, 190, 230]),
                ],
                "{ctx}"
            );
            assert_eq!(sink.records.len(), 3, "{ctx}");
        }
    }
}

#[test]
fn rejected_device_never_gets_data_and_the_link_closes_with_fail() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    let good = write_chain(dir.path(), 1, &device_cert(DEVICE_PUBLIC, b""), 1, false);
    let revoked = write_chain(
        dir.path(),
        2,
        &device_cert(DEVICE_PUBLIC, b"REVOKED"),
        1,
        true,
    );
    let text = format!(
        "[[device]]\nuuid = \"{}\"\nprivate_key = \"{DEVICE_PRIVATE}\"\n{good}\
         [[device]]\nuuid = \"{}\"\nprivate_key = \"{DEVICE_PRIVATE}\"\n{revoked}",
        uuid(1),
        uuid(2)
    );
    let b = Building::parse_with_base(&text, "b.toml", dir.path()).unwrap();
    for bearer in [BearerChoice::Adv, BearerChoice::Gatt] {
        let seen: Seen = Arc::default();
        let mut sink = MemorySink::default();
        let report = run::run(&b, &[uuid(1), uuid(2)], &options(bearer, &seen), &mut sink).unwrap();
        assert!(report.results[0].outcome.is_ok(), "{:?}", report.results[0]);
        let r = &report.results[1];
        let e = r.outcome.as_ref().unwrap_err();
        assert_eq!(
            e,
            &ProvisioningError::CertificateRejected(
                "device certificate is on the deny-list".into()
            )
        );
        assert!(matches!(r.device_state, DeviceState::Unprovisioned));
        let got = types(&r.device_transcript, Direction::Received);
        assert!(
            !got.contains(&PduType::DATA) && !got.contains(&PduType::INVITE),
            "{got:?}"
        );
        if bearer == BearerChoice::Adv {
            assert_eq!(
                r.device_link_close,
                Some(CloseCause::Remote(LinkCloseReason::FAIL))
            );
        }
        // Only the good device was committed.
        assert_eq!(sink.records.len(), 1);
        assert_eq!(sink.records[0].uuid, uuid(1));
    }
}

#[test]
fn a_device_without_the_certificates_private_key_fails_the_confirmation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    let chain = write_chain(dir.path(), 1, &device_cert(DEVICE_PUBLIC, b""), 0, false);
    let text = format!(
        "[[device]]\nuuid = \"{}\"\nprivate_key = \"{OTHER_PRIVATE}\"\n{chain}",
        uuid(1)
    );
    let b = Building::parse_with_base(&text, "b.toml", dir.path()).unwrap();
    let seen: Seen = Arc::default();
    let mut sink = MemorySink::default();
    let report = run::run(
        &b,
        &[uuid(1)],
        &options(BearerChoice::Adv, &seen),
        &mut sink,
    )
    .unwrap();
    let r = &report.results[0];
    // The device checks the provisioner's confirmation first and refuses it.
    assert_eq!(
        r.outcome.as_ref().unwrap_err(),
        &ProvisioningError::FailedReceived(FailedCode::CONFIRMATION_FAILED)
    );
    let sent = types(&r.device_transcript, Direction::Sent);
    assert!(sent.contains(&PduType::FAILED));
    assert!(!types(&r.device_transcript, Direction::Received).contains(&PduType::DATA));
    assert!(sink.records.is_empty());
}

#[test]
fn without_a_verifier_every_certificate_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let b = building(dir.path(), "hmac");
    let seen: Seen = Arc::default();
    let mut opts = options(BearerChoice::Gatt, &seen);
    opts.cert_verifier = None;
    let report = run::run(&b, &[uuid(1)], &opts, &mut MemorySink::default()).unwrap();
    assert_eq!(
        report.results[0].outcome.as_ref().unwrap_err(),
        &ProvisioningError::CertificateRejected("no certificate verifier is configured".into())
    );
    // Without a records policy the session starts with Invite, as before; these devices
    // offer no OOB authentication, so the default policy refuses them.
    let opts = RunOptions {
        bearer: BearerChoice::Gatt,
        ..RunOptions::default()
    };
    let report = run::run(&b, &[uuid(1)], &opts, &mut MemorySink::default()).unwrap();
    assert_eq!(
        report.results[0].outcome.as_ref().unwrap_err(),
        &ProvisioningError::NoOobNotAllowed
    );
    assert!(
        types(&report.results[0].device_transcript, Direction::Received)
            .first()
            .is_some_and(|t| *t == PduType::INVITE)
    );
}

#[test]
fn building_file_certificate_errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    std::fs::write(dir.path().join("certs/a.der"), [0x30, 0x03, 1, 2, 3]).unwrap();
    let two = format!("{}{}", pem(&[1, 2, 3]), pem(&[4, 5]));
    std::fs::write(dir.path().join("certs/two.pem"), two).unwrap();
    std::fs::write(
        dir.path().join("certs/bad.pem"),
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let u = uuid(1);
    let cases = [
        (
            "certificate = \"certs/a.der\"\n".to_string(),
            "certificate needs private_key",
        ),
        (
            format!("private_key = \"{DEVICE_PRIVATE}\"\ncertificate = \"certs/none.der\"\n"),
            ".certificate: cannot read",
        ),
        (
            format!("private_key = \"{DEVICE_PRIVATE}\"\ncertificate = \"certs/two.pem\"\n"),
            "one certificate per file",
        ),
        (
            format!("private_key = \"{DEVICE_PRIVATE}\"\ncertificate = \"certs/bad.pem\"\n"),
            "invalid base64",
        ),
        (
            "intermediates = [\"certs/a.der\"]\n".to_string(),
            "intermediates need a certificate",
        ),
        (
            format!(
                "private_key = \"{DEVICE_PRIVATE}\"\ncertificate = \"certs/a.der\"\npublic_key_oob = false\n"
            ),
            "remove public_key_oob = false",
        ),
        (
            format!(
                "private_key = \"{DEVICE_PRIVATE}\"\ncertificate = \"certs/a.der\"\nintermediates = [{}]\n",
                vec!["\"certs/a.der\""; 16].join(", ")
            ),
            "at most 15",
        ),
    ];
    for (keys, expected) in cases {
        let text = format!("[[device]]\nuuid = \"{u}\"\n{keys}");
        let e = Building::parse_with_base(&text, "b.toml", dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{keys}: {e}");
        assert!(e.starts_with("building file b.toml: device[0]"), "{e}");
    }
    // PEM and DER give the same bytes; the device then offers Public Key OOB.
    std::fs::write(dir.path().join("certs/a.pem"), pem(&[0x30, 0x03, 1, 2, 3])).unwrap();
    let text = format!(
        "[[device]]\nuuid = \"{u}\"\nprivate_key = \"{DEVICE_PRIVATE}\"\ncertificate = \"certs/a.pem\"\nintermediates = [\"certs/a.der\"]\n"
    );
    let b = Building::parse_with_base(&text, "b.toml", dir.path()).unwrap();
    let d = &b.devices[0];
    assert_eq!(d.certificate.as_deref(), Some(&[0x30, 0x03, 1, 2, 3][..]));
    assert_eq!(d.intermediates, vec![vec![0x30, 0x03, 1, 2, 3]]);
    assert!(d.public_key_oob);
}
