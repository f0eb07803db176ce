//! The verifier never panics: random bytes, and valid chains with mutated DER.

mod cert_support;

use cert_support::{Pki, now, uuid};
use meshprov::cert::{Policy, TrustStore, load_chain_pem, verify_device_chain};
use proptest::prelude::*;

struct Fixture {
    root: Vec<u8>,
    int: Vec<u8>,
    dev: Vec<u8>,
    trust: TrustStore,
}

fn fixture() -> Fixture {
    let mut pki = Pki::new(99);
    let root = pki.root("Acme Root");
    let int = pki.intermediate("Acme Intermediate", &root);
    let dev = pki.device(&int);
    let mut trust = TrustStore::new();
    trust.add_der(&root.der).unwrap();
    Fixture {
        root: root.der,
        int: int.der,
        dev: dev.der,
        trust,
    }
}

/// A mutation: flip, set, delete or insert an octet, or truncate.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Delete(usize),
    Insert(usize, u8),
    Truncate(usize),
}

fn apply(der: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut d = der.to_vec();
    for m in muts {
        let n = d.len().max(1);
        match *m {
            Mutation::Flip(i, x) => {
                if let Some(b) = d.get_mut(i % n) {
                    *b ^= x | 1;
                }
            }
            Mutation::Set(i, x) => {
                if let Some(b) = d.get_mut(i % n) {
                    *b = x;
                }
            }
            Mutation::Delete(i) => {
                if !d.is_empty() {
                    d.remove(i % n);
                }
            }
            Mutation::Insert(i, x) => d.insert(i % (d.len() + 1), x),
            Mutation::Truncate(i) => d.truncate(i % n),
        }
    }
    d
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Set(i, x)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Insert(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(dev in proptest::collection::vec(any::<u8>(), 0..600),
                                int in proptest::collection::vec(any::<u8>(), 0..600)) {
        let f = fixture_cached();
        let r = verify_device_chain(&dev, &[int], &f.trust, &Policy::default(), &uuid(), now());
        prop_assert!(r.is_err());
        let _ = TrustStore::from_pem(&dev);
        let _ = load_chain_pem(&dev, "random");
    }

    #[test]
    fn mutated_chains_never_panic(which in 0u8..3, muts in proptest::collection::vec(mutation(), 1..4)) {
        let f = fixture_cached();
        let (mut dev, mut int, mut root) = (f.dev.clone(), f.int.clone(), f.root.clone());
        match which {
            0 => dev = apply(&dev, &muts),
            1 => int = apply(&int, &muts),
            _ => root = apply(&root, &muts),
        }
        let mut trust = TrustStore::new();
        let trust = match trust.add_der(&root) { Ok(()) => trust, Err(_) => f.trust.clone() };
        let r = verify_device_chain(&dev, &[int.clone()], &trust, &Policy::default(), &uuid(), now());
        // A mutation that changes nothing the signatures cover cannot exist in the signed
        // parts; whatever the verdict, it is a value, not a panic.
        if let Err(e) = &r {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn mutated_pem_never_panics(muts in proptest::collection::vec(mutation(), 1..6)) {
        let f = fixture_cached();
        let pem = format!("{}{}", meshprov::cert::ca::to_pem(&f.dev).unwrap(), meshprov::cert::ca::to_pem(&f.int).unwrap());
        let bytes = apply(pem.as_bytes(), &muts);
        if let Ok((d, i)) = load_chain_pem(&bytes, "mutated") {
            let _ = verify_device_chain(&d, &i, &f.trust, &Policy::default(), &uuid(), now());
        }
    }
}

fn fixture_cached() -> &'static Fixture {
    static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    F.get_or_init(fixture)
}

#[test]
fn unmutated_fixture_verifies() {
    let f = fixture_cached();
    verify_device_chain(
        &f.dev,
        std::slice::from_ref(&f.int),
        &f.trust,
        &Policy::default(),
        &uuid(),
        now(),
    )
    .unwrap();
}
