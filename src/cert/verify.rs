//! Chain building and validation.

use std::time::{SystemTime, UNIX_EPOCH};

use der::Encode;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest, Sha256, Sha384};
use x509_cert::ext::pkix::KeyUsages;

use super::parse::{self, EcKey, Parsed};
use super::{CertError, Policy, TrustStore, VerifiedDevice};
use crate::uuid::DeviceUuid;

/// Verifies a device's certificate chain and returns its P-256 public key.
///
/// `device_cert_der` is the device certificate (record 0x0001), `intermediates_der` the
/// intermediate certificates (records 0x0002–0x0010) in any order; a copy of the root among
/// them is harmless. The chain is built from the device certificate by issuer name (and key
/// identifier when both sides have one) up to a root of `trust`, then checked:
///
/// - every signature (ECDSA P-256 or P-384 key, SHA-256 or SHA-384);
/// - every certificate's validity period at `now`, the root's included;
/// - every issuer is a CA (basicConstraints cA) whose keyUsage, when present, has
///   keyCertSign, and its pathLenConstraint is honoured; at most `policy.max_intermediates`;
/// - no critical extension that this verifier does not understand;
/// - the device key is P-256 and the device certificate's keyUsage has keyAgreement (a
///   device certificate without keyUsage is refused);
/// - the policy: CN = `uuid` (when `require_cn_uuid`), and no certificate on the deny list.
///
/// Never panics, whatever the input.
pub fn verify_device_chain(
    device_cert_der: &[u8],
    intermediates_der: &[Vec<u8>],
    trust: &TrustStore,
    policy: &Policy,
    uuid: &DeviceUuid,
    now: SystemTime,
) -> Result<VerifiedDevice, CertError> {
    let device = Parsed::from_der(device_cert_der, "device certificate")?;
    if intermediates_der.len() > policy.max_intermediates {
        return Err(CertError::TooManyIntermediates {
            count: intermediates_der.len(),
            max: policy.max_intermediates,
        });
    }
    let intermediates = intermediates_der
        .iter()
        .enumerate()
        .map(|(i, der)| Parsed::from_der(der, &format!("intermediate certificate {}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    check_deny(&device, policy)?;
    for c in &intermediates {
        check_deny(c, policy)?;
    }

    // Build the path: device, intermediates..., then the root (a trust anchor).
    let mut path: Vec<&Parsed> = vec![&device];
    let mut used = vec![false; intermediates.len()];
    let root: &Parsed = loop {
        let cur = *path.last().unwrap_or(&&device);
        if let Some(anchor) = pick_issuer(cur, trust.roots.iter()) {
            break anchor;
        }
        let candidates = intermediates
            .iter()
            .enumerate()
            .filter(|(i, c)| !used.get(*i).copied().unwrap_or(true) && c.may_have_issued(cur));
        let Some((i, next)) = pick_issuer_indexed(cur, candidates) else {
            return Err(CertError::UntrustedRoot {
                last_issuer: cur.issuer.clone(),
            });
        };
        if path.len() > policy.max_intermediates {
            return Err(CertError::TooManyIntermediates {
                count: path.len(),
                max: policy.max_intermediates,
            });
        }
        if let Some(u) = used.get_mut(i) {
            *u = true;
        }
        path.push(next);
    };
    check_deny(root, policy)?;
    let mut chain = path.clone();
    chain.push(root);

    // Signatures, child by child.
    for pair in chain.windows(2) {
        if let [child, issuer] = pair {
            check_signature(child, issuer)?;
        }
    }

    // Validity at `now`.
    let now = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(std::time::Duration::ZERO);
    for (i, c) in chain.iter().enumerate() {
        let who = who(c, i == 0);
        if parse::unix(c.not_before()) > now {
            return Err(CertError::NotYetValid {
                who,
                date: parse::date(c.not_before()),
            });
        }
        if parse::unix(c.not_after()) < now {
            return Err(CertError::Expired {
                who,
                date: parse::date(c.not_after()),
            });
        }
    }

    // Extensions we must understand.
    for (i, c) in chain.iter().enumerate() {
        if let Some(oid) = &c.unknown_critical {
            return Err(CertError::UnsupportedCriticalExtension {
                who: who(c, i == 0),
                oid: oid.clone(),
            });
        }
    }

    // Issuers: CA, keyCertSign, path length. chain[j] has j - 1 intermediates below it.
    for (j, pair) in chain.windows(2).enumerate() {
        let [child, issuer] = pair else { continue };
        let below = j;
        if !issuer.basic_constraints.as_ref().is_some_and(|b| b.ca) {
            return Err(CertError::NotCa {
                issuer: issuer.subject.clone(),
                subject: child.subject.clone(),
            });
        }
        if issuer.key_usage_has(KeyUsages::KeyCertSign) == Some(false) {
            return Err(CertError::NoKeyCertSign {
                issuer: issuer.subject.clone(),
            });
        }
        if let Some(limit) = issuer
            .basic_constraints
            .as_ref()
            .and_then(|b| b.path_len_constraint)
            && below > usize::from(limit)
        {
            return Err(CertError::PathLenExceeded {
                issuer: issuer.subject.clone(),
            });
        }
    }

    // The device certificate.
    let public_key =
        parse::device_key(device.spki()).map_err(|found| CertError::DeviceKeyNotP256 { found })?;
    match device.key_usage_has(KeyUsages::KeyAgreement) {
        None => return Err(CertError::NoKeyUsage),
        Some(false) => return Err(CertError::NoKeyAgreement),
        Some(true) => {}
    }

    // Policy: the certificate names this device.
    if policy.require_cn_uuid {
        check_cn(&device, uuid)?;
    }

    Ok(VerifiedDevice {
        public_key,
        chain: chain.iter().map(|c| c.summary()).collect(),
    })
}

/// "device certificate" or "certificate 'CN=...'".
fn who(c: &Parsed, is_device: bool) -> String {
    if is_device {
        "device certificate".into()
    } else {
        format!("certificate '{}'", c.subject)
    }
}

/// Among `candidates` that may have issued `child` by name, the first whose key verifies the
/// signature, else the first by name (whose signature check then reports the defect).
fn pick_issuer<'a>(
    child: &Parsed,
    candidates: impl Iterator<Item = &'a Parsed>,
) -> Option<&'a Parsed> {
    pick_issuer_indexed(
        child,
        candidates
            .enumerate()
            .filter(|(_, c)| c.may_have_issued(child)),
    )
    .map(|(_, c)| c)
}

fn pick_issuer_indexed<'a>(
    child: &Parsed,
    candidates: impl Iterator<Item = (usize, &'a Parsed)>,
) -> Option<(usize, &'a Parsed)> {
    let mut first = None;
    for (i, c) in candidates {
        if !c.may_have_issued(child) {
            continue;
        }
        if check_signature(child, c).is_ok() {
            return Some((i, c));
        }
        first.get_or_insert((i, c));
    }
    first
}

/// The signature of `child` verifies with the key of `issuer`.
fn check_signature(child: &Parsed, issuer: &Parsed) -> Result<(), CertError> {
    let alg = child.cert.signature_algorithm();
    if alg != child.cert.tbs_certificate().signature() {
        return Err(CertError::Malformed {
            what: format!("'{}'", child.subject),
            reason: "the signature algorithm inside and outside the signed part differ".into(),
        });
    }
    let tbs = child
        .cert
        .tbs_certificate()
        .to_der()
        .map_err(|e| CertError::Malformed {
            what: format!("'{}'", child.subject),
            reason: e.to_string(),
        })?;
    let digest: Vec<u8> = if alg.oid == parse::ECDSA_WITH_SHA256 {
        Sha256::digest(&tbs).to_vec()
    } else if alg.oid == parse::ECDSA_WITH_SHA384 {
        Sha384::digest(&tbs).to_vec()
    } else {
        return Err(CertError::UnsupportedSignature {
            subject: child.subject.clone(),
            algorithm: algorithm_name(&alg.oid.to_string()),
        });
    };
    let key = parse::ec_key(issuer.spki()).map_err(|found| CertError::UnsupportedIssuerKey {
        issuer: issuer.subject.clone(),
        found,
    })?;
    let bad = || CertError::BadSignature {
        subject: child.subject.clone(),
    };
    let sig = child.cert.signature().as_bytes().ok_or_else(bad)?;
    let ok = match key {
        EcKey::P256(k) => p256::ecdsa::Signature::from_der(sig)
            .ok()
            .is_some_and(|s| k.verify_prehash(&digest, &s).is_ok()),
        EcKey::P384(k) => p384::ecdsa::Signature::from_der(sig)
            .ok()
            .is_some_and(|s| k.verify_prehash(&digest, &s).is_ok()),
    };
    if ok { Ok(()) } else { Err(bad()) }
}

fn algorithm_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption".into(),
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption".into(),
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1".into(),
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512".into(),
        "1.3.101.112" => "Ed25519".into(),
        other => format!("algorithm {other}"),
    }
}

fn check_deny(c: &Parsed, policy: &Policy) -> Result<(), CertError> {
    let strip = |b: &[u8]| -> Vec<u8> {
        let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
        b[first..].to_vec()
    };
    let serial = strip(&c.serial);
    let denied = |entry: String| CertError::Denied {
        subject: c.subject.clone(),
        serial: hex::encode(&c.serial),
        entry,
    };
    if let Some(s) = policy.deny_serials.iter().find(|s| strip(s) == serial) {
        return Err(denied(format!("serial:{}", hex::encode(s))));
    }
    if policy.deny_fingerprints.contains(&c.sha256) {
        return Err(denied(format!("sha256:{}", hex::encode(c.sha256))));
    }
    Ok(())
}

fn check_cn(device: &Parsed, uuid: &DeviceUuid) -> Result<(), CertError> {
    let want = hex::encode(uuid.0);
    let cn = device
        .cert
        .tbs_certificate()
        .subject()
        .common_name()
        .map_err(|e| CertError::Malformed {
            what: "device certificate".into(),
            reason: format!("subject CN: {e}"),
        })?
        .map(String::from);
    let Some(cn) = cn else {
        return Err(CertError::NoCommonName { uuid: want });
    };
    if cn_uuid(&cn) == Some(uuid.0) {
        Ok(())
    } else {
        Err(CertError::CnNotUuid { cn, uuid: want })
    }
}

/// The UUID a CN spells: exactly 32 hex digits, or the dashed 8-4-4-4-12 form; any case.
fn cn_uuid(cn: &str) -> Option<[u8; 16]> {
    let digits: String = match cn.len() {
        32 => cn.to_string(),
        36 => {
            let dashes_ok = cn
                .char_indices()
                .all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) == (c == '-'));
            if !dashes_ok {
                return None;
            }
            cn.chars().filter(|c| *c != '-').collect()
        }
        _ => return None,
    };
    if !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    hex::decode(digits).ok()?.try_into().ok()
}
