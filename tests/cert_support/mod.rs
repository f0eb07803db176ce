//! Certificate chains made in-test with `meshprov::cert::ca`, deterministic (seeded RNG, fixed
//! dates).

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshprov::cert::ca::{self, CaKey, CertTemplate};
use meshprov::uuid::DeviceUuid;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// 2026-06-01T00:00:00Z: when the test chains are issued.
pub const ISSUED: u64 = 1_780_272_000;

pub fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

pub fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

/// "Now" for verification: 30 days after issue.
pub fn now() -> SystemTime {
    at(ISSUED) + days(30)
}

pub fn uuid() -> DeviceUuid {
    "7b2c1a90-0000-4000-8000-00000000000a".parse().unwrap()
}

/// A certificate with its subject key.
pub struct Node {
    pub key: CaKey,
    pub der: Vec<u8>,
}

pub struct Pki {
    pub rng: ChaCha20Rng,
    serial: u8,
}

impl Pki {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha20Rng::seed_from_u64(seed),
            serial: 0,
        }
    }

    fn next_serial(&mut self) -> Vec<u8> {
        self.serial += 1;
        vec![0x0a, self.serial]
    }

    pub fn p256(&mut self) -> CaKey {
        CaKey::generate_p256(&mut self.rng)
    }

    pub fn p384(&mut self) -> CaKey {
        CaKey::generate_p384(&mut self.rng)
    }

    pub fn root_template(&mut self, name: &str) -> CertTemplate {
        CertTemplate::root(&format!("CN={name}"), self.next_serial(), at(ISSUED), 3650)
    }

    pub fn intermediate_template(&mut self, name: &str) -> CertTemplate {
        CertTemplate::intermediate(&format!("CN={name}"), self.next_serial(), at(ISSUED), 3650)
    }

    pub fn device_template(&mut self) -> CertTemplate {
        CertTemplate::device(&uuid(), self.next_serial(), at(ISSUED), 365)
    }

    /// Signs `t` for `key` by `issuer` (self-signed when `None`).
    pub fn make(&mut self, t: &CertTemplate, key: CaKey, issuer: Option<&Node>) -> Node {
        let spki = key.spki().unwrap();
        let der = match issuer {
            Some(i) => ca::issue_certificate(t, &spki, &i.key, Some(&i.der)).unwrap(),
            None => ca::issue_certificate(t, &spki, &key, None).unwrap(),
        };
        Node { key, der }
    }

    pub fn root(&mut self, name: &str) -> Node {
        let t = self.root_template(name);
        let k = self.p256();
        self.make(&t, k, None)
    }

    /// An intermediate without a path length limit.
    pub fn intermediate(&mut self, name: &str, issuer: &Node) -> Node {
        let mut t = self.intermediate_template(name);
        t.basic_constraints = Some((true, None));
        let k = self.p256();
        self.make(&t, k, Some(issuer))
    }

    pub fn device(&mut self, issuer: &Node) -> Node {
        let t = self.device_template();
        let k = self.p256();
        self.make(&t, k, Some(issuer))
    }
}
