//! Reading certificates: PEM/DER input, the fields the verifier needs, keys and dates.

use std::time::Duration;

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Time;

use super::{CertError, CertSummary};

/// id-ecPublicKey (RFC 5480).
pub(crate) const ID_EC_PUBLIC_KEY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// prime256v1 / secp256r1.
pub(crate) const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// secp384r1.
pub(crate) const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// ecdsa-with-SHA256 (RFC 5758).
pub(crate) const ECDSA_WITH_SHA256: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// ecdsa-with-SHA384 (RFC 5758).
pub(crate) const ECDSA_WITH_SHA384: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");

/// Extensions this verifier understands (a critical one outside this list is refused).
const KNOWN_EXTENSIONS: [&str; 6] = [
    "2.5.29.19", // basicConstraints
    "2.5.29.15", // keyUsage
    "2.5.29.14", // subjectKeyIdentifier
    "2.5.29.35", // authorityKeyIdentifier
    "2.5.29.17", // subjectAltName (not used, harmless)
    "2.5.29.37", // extKeyUsage (not used, harmless)
];

/// A public key that may sign certificates.
#[derive(Clone, Debug)]
pub(crate) enum EcKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

/// A certificate with the fields the verifier reads, decoded once.
#[derive(Clone, Debug)]
pub(crate) struct Parsed {
    pub(crate) der: Vec<u8>,
    pub(crate) cert: Certificate,
    pub(crate) subject: String,
    pub(crate) issuer: String,
    pub(crate) subject_raw: Vec<u8>,
    pub(crate) issuer_raw: Vec<u8>,
    pub(crate) serial: Vec<u8>,
    pub(crate) sha256: [u8; 32],
    pub(crate) basic_constraints: Option<BasicConstraints>,
    pub(crate) key_usage: Option<KeyUsage>,
    pub(crate) ski: Option<Vec<u8>>,
    pub(crate) aki: Option<Vec<u8>>,
    /// The first critical extension not in [`KNOWN_EXTENSIONS`].
    pub(crate) unknown_critical: Option<String>,
}

impl Parsed {
    /// Decodes one DER certificate; `what` names it in errors.
    pub(crate) fn from_der(der: &[u8], what: &str) -> Result<Self, CertError> {
        let malformed = |reason: String| CertError::Malformed {
            what: what.to_string(),
            reason,
        };
        let cert = Certificate::from_der(der).map_err(|e| malformed(e.to_string()))?;
        let tbs = cert.tbs_certificate();
        let subject_raw = tbs
            .subject()
            .to_der()
            .map_err(|e| malformed(e.to_string()))?;
        let issuer_raw = tbs
            .issuer()
            .to_der()
            .map_err(|e| malformed(e.to_string()))?;
        let ext_err = |e: der::Error| malformed(format!("bad extension: {e}"));
        let basic_constraints = tbs
            .get_extension::<BasicConstraints>()
            .map_err(ext_err)?
            .map(|(_, v)| v);
        let key_usage = tbs
            .get_extension::<KeyUsage>()
            .map_err(ext_err)?
            .map(|(_, v)| v);
        let ski = tbs
            .get_extension::<SubjectKeyIdentifier>()
            .map_err(ext_err)?
            .map(|(_, v)| v.0.as_bytes().to_vec());
        let aki = tbs
            .get_extension::<AuthorityKeyIdentifier>()
            .map_err(ext_err)?
            .and_then(|(_, v)| v.key_identifier.map(|k| k.as_bytes().to_vec()));
        let unknown_critical = tbs.extensions().and_then(|exts| {
            exts.iter()
                .find(|e| e.critical && !KNOWN_EXTENSIONS.contains(&e.extn_id.to_string().as_str()))
                .map(|e| e.extn_id.to_string())
        });
        Ok(Self {
            der: der.to_vec(),
            subject: tbs.subject().to_string(),
            issuer: tbs.issuer().to_string(),
            subject_raw,
            issuer_raw,
            serial: tbs.serial_number().as_bytes().to_vec(),
            sha256: Sha256::digest(der).into(),
            basic_constraints,
            key_usage,
            ski,
            aki,
            unknown_critical,
            cert,
        })
    }

    /// Issuer = subject (a root, or a self-issued CA certificate).
    pub(crate) fn is_self_issued(&self) -> bool {
        self.subject_raw == self.issuer_raw
    }

    /// Whether `self` may be the issuer of `child` by name and key identifier (the signature
    /// is checked separately).
    pub(crate) fn may_have_issued(&self, child: &Parsed) -> bool {
        if self.subject_raw != child.issuer_raw {
            return false;
        }
        match (&child.aki, &self.ski) {
            (Some(a), Some(s)) => a == s,
            _ => true,
        }
    }

    pub(crate) fn key_usage_has(&self, usage: KeyUsages) -> Option<bool> {
        self.key_usage.as_ref().map(|k| k.0.contains(usage))
    }

    pub(crate) fn spki(&self) -> &SubjectPublicKeyInfoOwned {
        self.cert.tbs_certificate().subject_public_key_info()
    }

    pub(crate) fn not_before(&self) -> Time {
        self.cert.tbs_certificate().validity().not_before
    }

    pub(crate) fn not_after(&self) -> Time {
        self.cert.tbs_certificate().validity().not_after
    }

    pub(crate) fn summary(&self) -> CertSummary {
        CertSummary {
            subject: self.subject.clone(),
            issuer: self.issuer.clone(),
            serial: hex::encode(&self.serial),
            not_before: date(self.not_before()),
            not_after: date(self.not_after()),
            sha256: self.sha256,
        }
    }
}

/// `YYYY-MM-DD` (UTC).
pub(crate) fn date(t: Time) -> String {
    let d = t.to_date_time();
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

/// Seconds since the Unix epoch of a certificate time.
pub(crate) fn unix(t: Time) -> Duration {
    t.to_unix_duration()
}

/// What kind of key a SubjectPublicKeyInfo holds, for messages.
pub(crate) fn describe_key(spki: &SubjectPublicKeyInfoOwned) -> String {
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY {
        return match spki.algorithm.oid.to_string().as_str() {
            "1.2.840.113549.1.1.1" => "an RSA key".into(),
            "1.3.101.112" => "an Ed25519 key".into(),
            oid => format!("a key of algorithm {oid}"),
        };
    }
    match curve(spki) {
        Some(c) if c == SECP256R1 => "a P-256 key".into(),
        Some(c) if c == SECP384R1 => "a P-384 key".into(),
        Some(c) if c.to_string() == "1.3.132.0.35" => "a P-521 key".into(),
        Some(c) if c.to_string() == "1.3.132.0.10" => "a secp256k1 key".into(),
        Some(c) => format!("an EC key on curve {c}"),
        None => "an EC key without a named curve".into(),
    }
}

fn curve(spki: &SubjectPublicKeyInfoOwned) -> Option<ObjectIdentifier> {
    spki.algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
}

/// The key of an issuer, if it is P-256 or P-384 ECDSA; else what it is instead.
pub(crate) fn ec_key(spki: &SubjectPublicKeyInfoOwned) -> Result<EcKey, String> {
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err(describe_key(spki));
    }
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| "a key with a partial-octet bit string".to_string())?;
    match curve(spki) {
        Some(c) if c == SECP256R1 => p256::ecdsa::VerifyingKey::from_sec1_bytes(bits)
            .map(EcKey::P256)
            .map_err(|_| "a P-256 key that is not a point on the curve".into()),
        Some(c) if c == SECP384R1 => p384::ecdsa::VerifyingKey::from_sec1_bytes(bits)
            .map(EcKey::P384)
            .map_err(|_| "a P-384 key that is not a point on the curve".into()),
        _ => Err(describe_key(spki)),
    }
}

/// The device key as X ‖ Y, if it is a valid P-256 point; else what it is instead.
pub(crate) fn device_key(spki: &SubjectPublicKeyInfoOwned) -> Result<[u8; 64], String> {
    match ec_key(spki) {
        Ok(EcKey::P256(k)) => {
            let point = k.to_sec1_point(false);
            let bytes = point.as_bytes();
            let mut out = [0u8; 64];
            match bytes.get(1..65) {
                Some(xy) if bytes.len() == 65 => {
                    out.copy_from_slice(xy);
                    Ok(out)
                }
                _ => Err("a P-256 key that does not encode as a point".into()),
            }
        }
        Ok(EcKey::P384(_)) => Err("a P-384 key".into()),
        Err(e) => Err(e),
    }
}

/// The DER of every `CERTIFICATE` block of a PEM text, in order. Other blocks are skipped.
pub(crate) fn pem_certificates(pem: &[u8], what: &str) -> Result<Vec<Vec<u8>>, CertError> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let malformed = |reason: String| CertError::Malformed {
        what: what.to_string(),
        reason,
    };
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = find(rest, BEGIN) {
        let from = &rest[start..];
        let Some(end) = find(from, END) else {
            return Err(malformed("a PEM block without its END line".into()));
        };
        let block = &from[..end + END.len()];
        let (label, der) =
            der::pem::decode_vec(block).map_err(|e| malformed(format!("bad PEM: {e}")))?;
        if label == "CERTIFICATE" {
            out.push(der);
        }
        rest = &from[end + END.len()..];
    }
    Ok(out)
}

/// The certificates of a file that is either PEM (one or more blocks) or a single DER
/// certificate.
pub fn pem_or_der_certificates(bytes: &[u8], what: &str) -> Result<Vec<Vec<u8>>, CertError> {
    if find(bytes, b"-----BEGIN").is_some() {
        pem_certificates(bytes, what)
    } else {
        Ok(vec![bytes.to_vec()])
    }
}

/// A chain file (PEM or DER): the first certificate is the device's, the rest intermediates.
pub fn load_chain_pem(bytes: &[u8], what: &str) -> Result<(Vec<u8>, Vec<Vec<u8>>), CertError> {
    let mut certs = pem_or_der_certificates(bytes, what)?;
    if certs.is_empty() {
        return Err(CertError::Malformed {
            what: what.to_string(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    let device = certs.remove(0);
    Ok((device, certs))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
