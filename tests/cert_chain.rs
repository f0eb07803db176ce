//! Chain validation: good chains with 0, 1 and 3 intermediates, and one test per defect, each
//! with the verdict an installer reads. Chains are made in-test by `meshprov::cert::ca`.

mod cert_support;

use std::path::Path;

use cert_support::{Node, Pki, at, days, now, uuid};
use meshprov::cert::ca::{CertTemplate, KeyUsageSpec};
use meshprov::cert::{CertError, Policy, TrustStore, verify_device_chain};
use meshprov::crypto::ecdh::PublicKey;

fn trust(root: &Node) -> TrustStore {
    let mut t = TrustStore::new();
    t.add_der(&root.der).unwrap();
    t
}

fn verify(
    device: &Node,
    inters: &[&Node],
    root: &Node,
) -> Result<meshprov::cert::VerifiedDevice, CertError> {
    verify_with(device, inters, root, &Policy::default())
}

fn verify_with(
    device: &Node,
    inters: &[&Node],
    root: &Node,
    policy: &Policy,
) -> Result<meshprov::cert::VerifiedDevice, CertError> {
    let inters: Vec<Vec<u8>> = inters.iter().map(|n| n.der.clone()).collect();
    verify_device_chain(&device.der, &inters, &trust(root), policy, &uuid(), now())
}

fn err(r: Result<meshprov::cert::VerifiedDevice, CertError>) -> (CertError, String) {
    let e = r.expect_err("the chain must be refused");
    let s = e.to_string();
    (e, s)
}

fn device_public_key(n: &Node) -> [u8; 64] {
    let spki = n.key.spki().unwrap();
    let bits = spki.subject_public_key.raw_bytes();
    assert_eq!(bits.len(), 65);
    bits[1..].try_into().unwrap()
}

#[test]
fn no_intermediate() {
    let mut pki = Pki::new(1);
    let root = pki.root("Acme Root");
    let dev = pki.device(&root);
    let v = verify(&dev, &[], &root).unwrap();
    assert_eq!(v.public_key, device_public_key(&dev));
    PublicKey::from_bytes(&v.public_key).expect("usable for ECDH");
    assert_eq!(v.chain.len(), 2);
    assert_eq!(v.chain[0].subject, "CN=7b2c1a9000004000800000000000000a");
    assert_eq!(v.chain[1].subject, "CN=Acme Root");
    assert_eq!(v.chain[0].issuer, "CN=Acme Root");
    assert_eq!(v.chain[0].not_before, "2026-06-01");
    assert_eq!(v.chain[0].not_after, "2027-06-01");
    assert_eq!(v.chain[0].serial, "0a02");
    assert!(
        v.verdict_line()
            .starts_with("OK: CN=7b2c1a9000004000800000000000000a -> CN=Acme Root, device key ")
    );
}

#[test]
fn one_intermediate() {
    let mut pki = Pki::new(2);
    let root = pki.root("Acme Root");
    let t = pki.intermediate_template("Acme Intermediate");
    let k = pki.p256();
    let int = pki.make(&t, k, Some(&root));
    let dev = pki.device(&int);
    let v = verify(&dev, &[&int], &root).unwrap();
    assert_eq!(v.public_key, device_public_key(&dev));
    let names: Vec<_> = v.chain.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(
        names,
        [
            "CN=7b2c1a9000004000800000000000000a",
            "CN=Acme Intermediate",
            "CN=Acme Root"
        ]
    );
    // The root among the intermediates is harmless.
    verify(&dev, &[&root, &int], &root).unwrap();
}

#[test]
fn three_intermediates_in_any_order() {
    let mut pki = Pki::new(3);
    let root = pki.root("Acme Root");
    let i1 = pki.intermediate("Acme Region", &root);
    let i2 = pki.intermediate("Acme Factory", &i1);
    let t = pki.intermediate_template("Acme Line 3");
    let k = pki.p256();
    let i3 = pki.make(&t, k, Some(&i2));
    let dev = pki.device(&i3);
    for order in [[&i1, &i2, &i3], [&i3, &i1, &i2], [&i2, &i3, &i1]] {
        let v = verify(&dev, &order, &root).unwrap();
        assert_eq!(v.chain.len(), 5);
        assert_eq!(v.chain[1].subject, "CN=Acme Line 3");
        assert_eq!(v.chain[4].subject, "CN=Acme Root");
    }
    // A missing link is an untrusted chain.
    let (e, s) = err(verify(&dev, &[&i3, &i1], &root));
    assert!(matches!(e, CertError::UntrustedRoot { .. }), "{s}");
    assert!(
        s.starts_with("chain does not end at a trusted root (last issuer 'CN=Acme Factory')"),
        "{s}"
    );
}

#[test]
fn p384_root_and_intermediate_may_sign() {
    let mut pki = Pki::new(4);
    let t = pki.root_template("Acme P-384 Root");
    let k = pki.p384();
    let root = pki.make(&t, k, None);
    let t = pki.intermediate_template("Acme P-384 Intermediate");
    let k = pki.p384();
    let int = pki.make(&t, k, Some(&root));
    let dev = pki.device(&int);
    verify(&dev, &[&int], &root).unwrap();
}

#[test]
fn cn_may_be_dashed_and_upper_case() {
    for cn in [
        "CN=7B2C1A90-0000-4000-8000-00000000000A",
        "CN=7b2c1a90-0000-4000-8000-00000000000a",
        "CN=7B2C1A9000004000800000000000000A",
    ] {
        let mut pki = Pki::new(5);
        let root = pki.root("Acme Root");
        let mut t = pki.device_template();
        t.subject = cn.into();
        let k = pki.p256();
        let dev = pki.make(&t, k, Some(&root));
        verify(&dev, &[], &root).unwrap_or_else(|e| panic!("{cn}: {e}"));
    }
}

#[test]
fn expired_device_certificate() {
    let mut pki = Pki::new(6);
    let root = pki.root("Acme Root");
    let mut t = pki.device_template();
    t.not_before = at(cert_support::ISSUED) - days(400);
    t.not_after = at(cert_support::ISSUED) - days(92); // 2026-03-01
    let k = pki.p256();
    let dev = pki.make(&t, k, Some(&root));
    let (e, s) = err(verify(&dev, &[], &root));
    assert!(matches!(e, CertError::Expired { .. }));
    assert_eq!(s, "device certificate expired on 2026-03-01");
}

#[test]
fn intermediate_not_yet_valid() {
    let mut pki = Pki::new(7);
    let root = pki.root("Acme Root");
    let mut t = pki.intermediate_template("Acme Intermediate");
    t.not_before = at(1_798_761_600); // 2027-01-01
    let k = pki.p256();
    let int = pki.make(&t, k, Some(&root));
    let dev = pki.device(&int);
    let (e, s) = err(verify(&dev, &[&int], &root));
    assert!(matches!(e, CertError::NotYetValid { .. }));
    assert_eq!(
        s,
        "certificate 'CN=Acme Intermediate' is not yet valid (from 2027-01-01)"
    );
}

#[test]
fn untrusted_root() {
    let mut pki = Pki::new(8);
    let root = pki.root("Acme Root");
    let other = pki.root("Unknown CA");
    let dev = pki.device(&other);
    let (e, s) = err(verify(&dev, &[], &root));
    assert_eq!(
        e,
        CertError::UntrustedRoot {
            last_issuer: "CN=Unknown CA".into()
        }
    );
    assert!(s.starts_with("chain does not end at a trusted root (last issuer 'CN=Unknown CA')"));
    // The untrusted root sent along as an intermediate does not help.
    let (e, _) = err(verify(&dev, &[&other], &root));
    assert!(matches!(e, CertError::UntrustedRoot { .. }));
    // Nor does an impostor with the trusted root's name (its key identifiers differ).
    let t = pki.root_template("Acme Root");
    let k = pki.p256();
    let impostor = pki.make(&t, k, None);
    let dev = pki.device(&impostor);
    let (e, _) = err(verify(&dev, &[], &root));
    assert!(matches!(e, CertError::UntrustedRoot { .. }));
}

#[test]
fn impostor_with_same_name_and_no_key_identifiers_fails_the_signature() {
    let mut pki = Pki::new(9);
    let root = pki.root("Acme Root");
    let mut t = pki.root_template("Acme Root");
    t.key_identifiers = false;
    let k = pki.p256();
    let impostor = pki.make(&t, k, None);
    let mut t = pki.device_template();
    t.key_identifiers = false;
    let k = pki.p256();
    let dev = pki.make(&t, k, Some(&impostor));
    let (e, s) = err(verify(&dev, &[], &root));
    assert!(matches!(e, CertError::BadSignature { .. }));
    assert_eq!(
        s,
        "signature of 'CN=7b2c1a9000004000800000000000000a' does not verify with its issuer's key"
    );
}

#[test]
fn bad_signature() {
    let mut pki = Pki::new(10);
    let root = pki.root("Acme Root");
    let int = pki.intermediate("Acme Intermediate", &root);
    let mut dev = pki.device(&int);
    let last = dev.der.len() - 1;
    dev.der[last] ^= 0x01; // inside the ECDSA signature's s
    let (e, s) = err(verify(&dev, &[&int], &root));
    assert!(matches!(e, CertError::BadSignature { .. }));
    assert_eq!(
        s,
        "signature of 'CN=7b2c1a9000004000800000000000000a' does not verify with its issuer's key"
    );
    // And on the intermediate.
    let dev = pki.device(&int);
    let mut int = Node {
        key: pki.p256(),
        der: int.der.clone(),
    };
    let last = int.der.len() - 1;
    int.der[last] ^= 0x80;
    let (e, s) = err(verify(&dev, &[&int], &root));
    assert!(matches!(e, CertError::BadSignature { .. }), "{s}");
    assert!(s.contains("'CN=Acme Intermediate'"), "{s}");
}

#[test]
fn issuer_not_a_ca() {
    let mut pki = Pki::new(11);
    let root = pki.root("Acme Root");
    let mut t = pki.intermediate_template("Acme Intermediate");
    t.basic_constraints = Some((false, None));
    let k = pki.p256();
    let int = pki.make(&t, k, Some(&root));
    let dev = pki.device(&int);
    let (e, s) = err(verify(&dev, &[&int], &root));
    assert!(matches!(e, CertError::NotCa { .. }));
    assert_eq!(
        s,
        "'CN=Acme Intermediate' is not a CA (basicConstraints) but issued 'CN=7b2c1a9000004000800000000000000a'"
    );
    // No basicConstraints at all is not a CA either.
    let mut t = pki.intermediate_template("Acme Intermediate");
    t.basic_constraints = None;
    let k = pki.p256();
    let int = pki.make(&t, k, Some(&root));
    let dev = pki.device(&int);
    let (e, _) = err(verify(&dev, &[&int], &root));
    assert!(matches!(e, CertError::NotCa { .. }));
}

#[test]
fn issuer_without_key_cert_sign() {
    let mut pki = Pki::new(12);
    let root = pki.root("Acme Root");
    let mut t = pki.intermediate_template("Acme Intermediate");
    t.key_usage = Some(KeyUsageSpec {
        crl_sign: true,
        digital_signature: true,
        ..Default::default()
    });
    let k = pki.p256();
    let int = pki.make(&t, k, Some(&root));
    let dev = pki.device(&int);
    let (e, s) = err(verify(&dev, &[&int], &root));
    assert!(matches!(e, CertError::NoKeyCertSign { .. }));
    assert_eq!(
        s,
        "'CN=Acme Intermediate' may not sign certificates (keyUsage lacks keyCertSign)"
    );
    // Without a keyUsage extension, a CA may sign.
    let mut t = pki.intermediate_template("Acme Intermediate");
    t.key_usage = None;
    let k = pki.p256();
    let int = pki.make(&t, k, Some(&root));
    let dev = pki.device(&int);
    verify(&dev, &[&int], &root).unwrap();
}

#[test]
fn path_length_exceeded() {
    let mut pki = Pki::new(13);
    let mut t = pki.root_template("Acme Root");
    t.basic_constraints = Some((true, Some(1)));
    let k = pki.p256();
    let root = pki.make(&t, k, None);
    let i1 = pki.intermediate("Acme Region", &root);
    let dev1 = pki.device(&i1);
    verify(&dev1, &[&i1], &root).unwrap(); // one CA below the root: allowed
    let i2 = pki.intermediate("Acme Factory", &i1);
    let dev = pki.device(&i2);
    let (e, s) = err(verify(&dev, &[&i1, &i2], &root));
    assert!(matches!(e, CertError::PathLenExceeded { .. }));
    assert_eq!(s, "path length constraint of 'CN=Acme Root' exceeded");
    // pathLen 0 on an intermediate that signs another CA.
    let t = pki.intermediate_template("Acme Zero"); // pathLen 0
    let k = pki.p256();
    let zero = pki.make(&t, k, Some(&root));
    let below = pki.intermediate("Acme Below", &zero);
    let dev = pki.device(&below);
    let (_, s) = err(verify(&dev, &[&zero, &below], &root));
    assert!(
        s.contains("'CN=Acme Zero'") || s.contains("'CN=Acme Root'"),
        "{s}"
    );
}

#[test]
fn wrong_uuid_in_cn() {
    let mut pki = Pki::new(14);
    let root = pki.root("Acme Root");
    for cn in [
        "abc",
        "7b2c1a9000004000800000000000000b",
        " 7b2c1a9000004000800000000000000a",
        "7b2c-1a9000004000800000000000000a",
    ] {
        let mut t = pki.device_template();
        t.subject = format!("CN={cn}");
        let k = pki.p256();
        let dev = pki.make(&t, k, Some(&root));
        let (e, s) = err(verify(&dev, &[], &root));
        assert!(matches!(e, CertError::CnNotUuid { .. }), "{cn}: {s}");
        assert_eq!(
            s,
            format!("CN '{cn}' is not the device UUID 7b2c1a9000004000800000000000000a")
        );
        // With the policy off, the certificate is acceptable.
        let policy = Policy {
            require_cn_uuid: false,
            ..Policy::default()
        };
        verify_with(&dev, &[], &root, &policy).unwrap();
    }
    let mut t = pki.device_template();
    t.subject = "O=Acme".into();
    let k = pki.p256();
    let dev = pki.make(&t, k, Some(&root));
    let (e, _) = err(verify(&dev, &[], &root));
    assert!(matches!(e, CertError::NoCommonName { .. }));
}

#[test]
fn device_without_key_agreement() {
    let mut pki = Pki::new(15);
    let root = pki.root("Acme Root");
    let mut t = pki.device_template();
    t.key_usage = Some(KeyUsageSpec {
        digital_signature: true,
        ..Default::default()
    });
    let k = pki.p256();
    let dev = pki.make(&t, k, Some(&root));
    let (e, s) = err(verify(&dev, &[], &root));
    assert_eq!(e, CertError::NoKeyAgreement);
    assert_eq!(s, "device certificate does not allow keyAgreement");
    // A missing keyUsage is refused too (documented decision).
    let mut t = pki.device_template();
    t.key_usage = None;
    let k = pki.p256();
    let dev = pki.make(&t, k, Some(&root));
    let (e, s) = err(verify(&dev, &[], &root));
    assert_eq!(e, CertError::NoKeyUsage);
    assert!(s.starts_with("device certificate does not allow keyAgreement"));
}

#[test]
fn device_key_not_p256() {
    let mut pki = Pki::new(16);
    let root = pki.root("Acme Root");
    let t = pki.device_template();
    let k = pki.p384();
    let dev = pki.make(&t, k, Some(&root));
    let (e, s) = err(verify(&dev, &[], &root));
    assert!(matches!(e, CertError::DeviceKeyNotP256 { .. }));
    assert_eq!(s, "device key is not P-256 (a P-384 key)");
}

#[test]
fn deny_list_by_serial_and_fingerprint() {
    let mut pki = Pki::new(17);
    let root = pki.root("Acme Root");
    let int = pki.intermediate("Acme Intermediate", &root);
    let dev = pki.device(&int);
    // Serials are 0a01 (root), 0a02 (intermediate), 0a03 (device).
    let by_serial = Policy {
        deny_serials: vec![vec![0x00, 0x0a, 0x03]],
        ..Policy::default()
    };
    let (e, s) = err(verify_with(&dev, &[&int], &root, &by_serial));
    assert!(matches!(e, CertError::Denied { .. }));
    assert_eq!(
        s,
        "certificate 'CN=7b2c1a9000004000800000000000000a' (serial 0a03) is on the deny list (serial:000a03)"
    );
    use sha2::Digest;
    let fp: [u8; 32] = sha2::Sha256::digest(&int.der).into();
    let by_fp = Policy {
        deny_fingerprints: vec![fp],
        ..Policy::default()
    };
    let (_, s) = err(verify_with(&dev, &[&int], &root, &by_fp));
    assert!(
        s.starts_with(
            "certificate 'CN=Acme Intermediate' (serial 0a02) is on the deny list (sha256:"
        ),
        "{s}"
    );
    // The root can be denied too.
    let root_fp: [u8; 32] = sha2::Sha256::digest(&root.der).into();
    let deny_root = Policy {
        deny_fingerprints: vec![root_fp],
        ..Policy::default()
    };
    let (_, s) = err(verify_with(&dev, &[&int], &root, &deny_root));
    assert!(s.contains("'CN=Acme Root'"), "{s}");
}

#[test]
fn deny_list_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deny.txt");
    let fp = "AB".repeat(32);
    std::fs::write(
        &path,
        format!("# revoked at the factory\nserial:0A:1B\n\n  sha256:{fp}  # lost laptop\nSERIAL: 00 ff\n"),
    )
    .unwrap();
    let p = Policy::load_deny_list(&path).unwrap();
    assert_eq!(p.deny_serials, vec![vec![0x0a, 0x1b], vec![0x00, 0xff]]);
    assert_eq!(p.deny_fingerprints, vec![[0xab; 32]]);
    assert!(p.require_cn_uuid);
    assert_eq!(p.max_intermediates, 15);
    for (bad, why) in [
        ("0a1b\n", "no 'serial:'"),
        ("serial:xyzw\n", "Invalid character"),
        ("sha256:abcd\n", "32 bytes"),
        ("md5:abcd\n", "unknown entry kind"),
    ] {
        std::fs::write(&path, format!("# c\n{bad}")).unwrap();
        let e = Policy::load_deny_list(&path).unwrap_err();
        let s = e.to_string();
        assert!(s.contains(":2: ") && s.contains(why), "{s}");
    }
    assert!(matches!(
        Policy::load_deny_list(Path::new("/nonexistent/deny")).unwrap_err(),
        CertError::Io { .. }
    ));
}

#[test]
fn too_many_intermediates() {
    let mut pki = Pki::new(18);
    let root = pki.root("Acme Root");
    let mut chain = vec![pki.intermediate("Acme CA 1", &root)];
    for i in 2..=16 {
        let next = pki.intermediate(&format!("Acme CA {i}"), chain.last().unwrap());
        chain.push(next);
    }
    let dev = pki.device(chain.last().unwrap());
    let refs: Vec<&Node> = chain.iter().collect();
    let (e, s) = err(verify(&dev, &refs, &root));
    assert_eq!(e, CertError::TooManyIntermediates { count: 16, max: 15 });
    assert_eq!(s, "16 intermediate certificates; at most 15 are allowed");
    // Fifteen are allowed.
    let dev = pki.device(&chain[14]);
    let v = verify(&dev, &refs[..15], &root).unwrap();
    assert_eq!(v.chain.len(), 17);
    // A stricter policy counts the intermediates the chain needs.
    let policy = Policy {
        max_intermediates: 2,
        ..Policy::default()
    };
    let dev = pki.device(&chain[2]);
    let (e, _) = err(verify_with(&dev, &refs[..2], &root, &policy));
    assert!(matches!(e, CertError::UntrustedRoot { .. })); // the third is missing
    let (e, _) = err(verify_with(&dev, &refs[..3], &root, &policy));
    assert!(matches!(e, CertError::TooManyIntermediates { .. }));
}

#[test]
fn malformed_der() {
    let mut pki = Pki::new(19);
    let root = pki.root("Acme Root");
    let int = pki.intermediate("Acme Intermediate", &root);
    let dev = pki.device(&int);
    let t = trust(&root);
    let p = Policy::default();
    for bad in [
        &b""[..],
        b"\x30\x03\x02\x01\x01",
        &dev.der[..dev.der.len() - 1],
        b"not a certificate",
    ] {
        let e = verify_device_chain(bad, std::slice::from_ref(&int.der), &t, &p, &uuid(), now())
            .unwrap_err();
        assert!(matches!(e, CertError::Malformed { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("malformed certificate: device certificate: "),
            "{e}"
        );
    }
    let mut trailing = dev.der.clone();
    trailing.push(0);
    assert!(matches!(
        verify_device_chain(&trailing, &[], &t, &p, &uuid(), now()).unwrap_err(),
        CertError::Malformed { .. }
    ));
    let e = verify_device_chain(&dev.der, &[int.der[..40].to_vec()], &t, &p, &uuid(), now())
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("malformed certificate: intermediate certificate 1: "),
        "{e}"
    );
}

#[test]
fn unknown_critical_extension_is_refused() {
    let mut pki = Pki::new(20);
    let root = pki.root("Acme Root");
    let mut t = pki.device_template();
    t.extra_extensions = vec![("1.3.6.1.4.1.99999.1".into(), true, vec![0x05, 0x00])];
    let k = pki.p256();
    let dev = pki.make(&t, k, Some(&root));
    let (e, s) = err(verify(&dev, &[], &root));
    assert!(matches!(e, CertError::UnsupportedCriticalExtension { .. }));
    assert_eq!(
        s,
        "device certificate has a critical extension 1.3.6.1.4.1.99999.1 that meshprov does not understand"
    );
    // Not critical: ignored.
    let mut t = pki.device_template();
    t.extra_extensions = vec![("1.3.6.1.4.1.99999.1".into(), false, vec![0x05, 0x00])];
    let k = pki.p256();
    let dev = pki.make(&t, k, Some(&root));
    verify(&dev, &[], &root).unwrap();
}

#[test]
fn trust_store_sources() {
    let mut pki = Pki::new(21);
    let root = pki.root("Acme Root");
    let int = pki.intermediate("Acme Intermediate", &root);
    let dev = pki.device(&int);
    let pem = |d: &[u8]| meshprov::cert::ca::to_pem(d).unwrap();

    // A directory: PEM and DER roots; the intermediate beside them is not an anchor.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), pem(&root.der)).unwrap();
    std::fs::write(dir.path().join("intermediate.pem"), pem(&int.der)).unwrap();
    std::fs::write(dir.path().join("root.key"), "not a certificate").unwrap();
    let other = pki.root("Other Root");
    std::fs::write(dir.path().join("other.DER"), &other.der).unwrap();
    let store = TrustStore::from_dir(dir.path()).unwrap();
    assert_eq!(store.len(), 2);
    assert_eq!(store.subjects(), ["CN=Other Root", "CN=Acme Root"]);
    verify_device_chain(
        &dev.der,
        std::slice::from_ref(&int.der),
        &store,
        &Policy::default(),
        &uuid(),
        now(),
    )
    .unwrap();
    // Without the intermediate, the device does not chain: the intermediate was not trusted.
    let e =
        verify_device_chain(&dev.der, &[], &store, &Policy::default(), &uuid(), now()).unwrap_err();
    assert!(matches!(e, CertError::UntrustedRoot { .. }));

    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        TrustStore::from_dir(empty.path()).unwrap_err(),
        CertError::NoTrustedRoots { .. }
    ));
    assert!(matches!(
        TrustStore::from_dir(Path::new("/nonexistent/trust")).unwrap_err(),
        CertError::Io { .. }
    ));

    // A PEM bundle of roots.
    let bundle = format!("{}{}", pem(&root.der), pem(&other.der));
    assert_eq!(TrustStore::from_pem(bundle.as_bytes()).unwrap().len(), 2);
    // Only roots can be trusted.
    let e = TrustStore::new().add_der(&int.der).unwrap_err();
    assert_eq!(
        e.to_string(),
        "'CN=Acme Intermediate' is not a self-signed root certificate; only roots can be trusted"
    );
    let e = TrustStore::from_pem(pem(&int.der).as_bytes()).unwrap_err();
    assert!(matches!(e, CertError::NotARoot { .. }));
}

#[test]
fn expired_root_is_refused() {
    let mut pki = Pki::new(22);
    let mut t: CertTemplate = pki.root_template("Acme Root");
    t.not_after = at(cert_support::ISSUED) + days(10);
    let k = pki.p256();
    let root = pki.make(&t, k, None);
    let dev = pki.device(&root);
    let (e, s) = err(verify(&dev, &[], &root));
    assert!(matches!(e, CertError::Expired { .. }));
    assert_eq!(s, "certificate 'CN=Acme Root' expired on 2026-06-11");
}
