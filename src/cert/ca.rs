//! `meshprov ca`: a small manufacturer CA for in-house devices and for tests.
//!
//! Certificates are built field by field (a `TBSCertificate` encoded with `der`, signed with
//! ECDSA) rather than with x509-cert's `builder`: its profiles fix the extension set, and the
//! tests need to make every defective certificate the verifier must refuse (no CA flag, no
//! keyCertSign, a path length of 0, no keyAgreement, a P-384 device key, ...).
//!
//! - `ca init DIR [--intermediate]`: DIR/root.pem and DIR/root.key (and intermediate.pem/.key);
//!   P-256 keys, PKCS#8 PEM, written 0600, never overwritten.
//! - `ca issue --ca DIR --uuid UUID`: a device certificate whose subject is `CN=<32 lower-case
//!   hex digits of the UUID>` (the undashed form is what the beacon carries; the verifier
//!   accepts either form in any case), keyUsage keyAgreement (critical), basicConstraints
//!   CA:false, subject and authority key identifiers; signed by the intermediate when DIR has
//!   one, else by the root.
//! - `ca verify --trust DIR --uuid UUID CHAIN.pem`: [`verify_files`].

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use der::asn1::{BitString, OctetString};
use der::pem::LineEnding;
use der::{Decode, DecodePem, Encode, Sequence};
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::elliptic_curve::Generate;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256, Sha384};
use x509_cert::Version;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

use super::parse::{self, Parsed};
use super::{CertError, Policy, TrustStore, VerifiedDevice};
use crate::uuid::DeviceUuid;

/// A CA (or test) signing key: P-256 signs with SHA-256, P-384 with SHA-384.
pub enum CaKey {
    /// An ECDSA P-256 key.
    P256(p256::ecdsa::SigningKey),
    /// An ECDSA P-384 key (roots and intermediates only; devices must be P-256).
    P384(p384::ecdsa::SigningKey),
}

impl std::fmt::Debug for CaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::P256(_) => f.write_str("CaKey(P-256, …)"),
            Self::P384(_) => f.write_str("CaKey(P-384, …)"),
        }
    }
}

impl CaKey {
    /// A fresh P-256 key.
    pub fn generate_p256(rng: &mut dyn CryptoRng) -> Self {
        Self::P256(p256::ecdsa::SigningKey::generate_from_rng(rng))
    }

    /// A fresh P-384 key.
    pub fn generate_p384(rng: &mut dyn CryptoRng) -> Self {
        Self::P384(p384::ecdsa::SigningKey::generate_from_rng(rng))
    }

    /// The public key as a SubjectPublicKeyInfo.
    pub fn spki(&self) -> Result<SubjectPublicKeyInfoOwned, CertError> {
        let doc = match self {
            Self::P256(k) => k.verifying_key().to_public_key_der(),
            Self::P384(k) => k.verifying_key().to_public_key_der(),
        }
        .map_err(|e| CertError::Key(format!("cannot encode the public key: {e}")))?;
        SubjectPublicKeyInfoOwned::from_der(doc.as_bytes())
            .map_err(|e| CertError::Key(format!("cannot encode the public key: {e}")))
    }

    /// The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn to_pkcs8_pem(&self) -> Result<String, CertError> {
        let pem = match self {
            Self::P256(k) => k.to_pkcs8_pem(LineEnding::LF),
            Self::P384(k) => k.to_pkcs8_pem(LineEnding::LF),
        }
        .map_err(|e| CertError::Key(format!("cannot encode the private key: {e}")))?;
        Ok(pem.to_string())
    }

    /// A PKCS#8 PEM private key, P-256 or P-384.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, CertError> {
        if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            return Ok(Self::P256(k));
        }
        p384::ecdsa::SigningKey::from_pkcs8_pem(pem)
            .map(Self::P384)
            .map_err(|e| CertError::Key(format!("not a P-256 or P-384 PKCS#8 private key: {e}")))
    }

    /// The signature algorithm and the DER ECDSA signature of `msg`.
    fn sign(&self, msg: &[u8]) -> Result<(AlgorithmIdentifierOwned, Vec<u8>), CertError> {
        let err = |e: p256::ecdsa::Error| CertError::Key(format!("signing failed: {e}"));
        let (oid, sig) = match self {
            Self::P256(k) => {
                let s: p256::ecdsa::Signature =
                    k.sign_prehash(&Sha256::digest(msg)).map_err(err)?;
                (parse::ECDSA_WITH_SHA256, s.to_der().to_bytes().to_vec())
            }
            Self::P384(k) => {
                let s: p384::ecdsa::Signature =
                    k.sign_prehash(&Sha384::digest(msg)).map_err(err)?;
                (parse::ECDSA_WITH_SHA384, s.to_der().to_bytes().to_vec())
            }
        };
        Ok((
            AlgorithmIdentifierOwned {
                oid,
                parameters: None,
            },
            sig,
        ))
    }
}

/// The keyUsage bits a template can set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyUsageSpec {
    /// digitalSignature.
    pub digital_signature: bool,
    /// keyAgreement (required of device certificates).
    pub key_agreement: bool,
    /// keyCertSign (required of issuers when keyUsage is present).
    pub key_cert_sign: bool,
    /// cRLSign.
    pub crl_sign: bool,
}

/// What a certificate will say. The presets ([`CertTemplate::root`],
/// [`CertTemplate::intermediate`], [`CertTemplate::device`]) are what `meshprov ca` issues;
/// tests change fields to make defective certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertTemplate {
    /// The subject, RFC 4514 (`CN=Acme Root,O=Acme`).
    pub subject: String,
    /// The serial number (big-endian, positive).
    pub serial: Vec<u8>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// basicConstraints (critical): `Some((cA, pathLenConstraint))`, or `None` for none.
    pub basic_constraints: Option<(bool, Option<u8>)>,
    /// keyUsage (critical), or `None` for none.
    pub key_usage: Option<KeyUsageSpec>,
    /// Whether to write subject and authority key identifiers.
    pub key_identifiers: bool,
    /// Further extensions: (OID, critical, DER value), e.g. to test that an unknown critical
    /// extension is refused.
    pub extra_extensions: Vec<(String, bool, Vec<u8>)>,
}

impl CertTemplate {
    /// A manufacturer root: CA, keyCertSign + cRLSign, no path length limit.
    pub fn root(subject: &str, serial: Vec<u8>, not_before: SystemTime, days: u32) -> Self {
        Self {
            subject: subject.to_string(),
            serial,
            not_before,
            not_after: not_before + days_duration(days),
            basic_constraints: Some((true, None)),
            key_usage: Some(KeyUsageSpec {
                key_cert_sign: true,
                crl_sign: true,
                ..Default::default()
            }),
            key_identifiers: true,
            extra_extensions: Vec::new(),
        }
    }

    /// An intermediate: CA with pathLenConstraint 0 (it signs devices only), keyCertSign +
    /// cRLSign.
    pub fn intermediate(subject: &str, serial: Vec<u8>, not_before: SystemTime, days: u32) -> Self {
        Self {
            basic_constraints: Some((true, Some(0))),
            ..Self::root(subject, serial, not_before, days)
        }
    }

    /// A device: `CN=<32 lower-case hex digits>`, CA:false, keyUsage keyAgreement.
    pub fn device(uuid: &DeviceUuid, serial: Vec<u8>, not_before: SystemTime, days: u32) -> Self {
        Self {
            subject: format!("CN={}", hex::encode(uuid.0)),
            serial,
            not_before,
            not_after: not_before + days_duration(days),
            basic_constraints: Some((false, None)),
            key_usage: Some(KeyUsageSpec {
                key_agreement: true,
                ..Default::default()
            }),
            key_identifiers: true,
            extra_extensions: Vec::new(),
        }
    }
}

/// Certificates made by `ca init` and `ca issue` start this much before "now", so that a
/// provisioner whose clock is a little behind the CA's still finds them valid.
pub const BACKDATE: Duration = Duration::from_secs(3600);

fn days_duration(days: u32) -> Duration {
    Duration::from_secs(u64::from(days) * 86_400)
}

fn start(now: SystemTime) -> SystemTime {
    now.checked_sub(BACKDATE).unwrap_or(now)
}

/// A positive 16-octet serial number from `rng`.
pub fn random_serial(rng: &mut dyn CryptoRng) -> Vec<u8> {
    let mut s = vec![0u8; 16];
    rng.fill_bytes(&mut s);
    if let Some(b) = s.first_mut() {
        *b = (*b & 0x7f) | 0x40;
    }
    s
}

/// TBSCertificate (RFC 5280 §4.1), v3.
#[derive(Sequence)]
struct Tbs {
    #[asn1(context_specific = "0", default = "Default::default")]
    version: Version,
    serial_number: SerialNumber,
    signature: AlgorithmIdentifierOwned,
    issuer: Name,
    validity: Validity,
    subject: Name,
    subject_public_key_info: SubjectPublicKeyInfoOwned,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<Vec<Extension>>,
}

/// Certificate (RFC 5280 §4.1).
#[derive(Sequence)]
struct Cert {
    tbs_certificate: Tbs,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

/// Key identifier: the leftmost 160 bits of the SHA-256 of the subjectPublicKey bits
/// (RFC 7093 §2 method 1).
fn key_id(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    Sha256::digest(spki.subject_public_key.raw_bytes())[..20].to_vec()
}

fn ext<T: Encode>(oid: &str, critical: bool, value: &T) -> Result<Extension, CertError> {
    let bytes = value.to_der().map_err(encode_err)?;
    Ok(Extension {
        extn_id: der::asn1::ObjectIdentifier::new(oid)
            .map_err(|e| CertError::InvalidArgument(e.to_string()))?,
        critical,
        extn_value: OctetString::new(bytes).map_err(encode_err)?,
    })
}

fn encode_err(e: der::Error) -> CertError {
    CertError::InvalidArgument(format!("cannot encode the certificate: {e}"))
}

fn time(t: SystemTime) -> Result<Time, CertError> {
    Time::try_from(t).map_err(|e| CertError::InvalidArgument(format!("date out of range: {e}")))
}

/// Issues a certificate for `subject_key` from `template`, signed by `signer`. `issuer_der` is
/// the issuer's certificate (its subject becomes the issuer name, its subject key identifier the
/// authority key identifier); `None` makes a self-signed certificate. Returns the DER.
pub fn issue_certificate(
    template: &CertTemplate,
    subject_key: &SubjectPublicKeyInfoOwned,
    signer: &CaKey,
    issuer_der: Option<&[u8]>,
) -> Result<Vec<u8>, CertError> {
    let subject = Name::from_str(&template.subject).map_err(|e| {
        CertError::InvalidArgument(format!("'{}' is not a name: {e}", template.subject))
    })?;
    let (issuer, issuer_key_id) = match issuer_der {
        Some(der) => {
            let p = Parsed::from_der(der, "issuer certificate")?;
            let name = p.cert.tbs_certificate().subject().clone();
            let id = p.ski.clone().unwrap_or_else(|| key_id(p.spki()));
            (name, id)
        }
        None => (subject.clone(), key_id(&signer.spki()?)),
    };
    let mut extensions = Vec::new();
    if let Some((ca, path_len)) = template.basic_constraints {
        let bc = BasicConstraints {
            ca,
            path_len_constraint: path_len,
        };
        extensions.push(ext("2.5.29.19", true, &bc)?);
    }
    if let Some(ku) = template.key_usage {
        let mut k = KeyUsage(Default::default());
        if ku.digital_signature {
            k.0 |= KeyUsages::DigitalSignature;
        }
        if ku.key_agreement {
            k.0 |= KeyUsages::KeyAgreement;
        }
        if ku.key_cert_sign {
            k.0 |= KeyUsages::KeyCertSign;
        }
        if ku.crl_sign {
            k.0 |= KeyUsages::CRLSign;
        }
        extensions.push(ext("2.5.29.15", true, &k)?);
    }
    if template.key_identifiers {
        let ski = SubjectKeyIdentifier(OctetString::new(key_id(subject_key)).map_err(encode_err)?);
        extensions.push(ext("2.5.29.14", false, &ski)?);
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(OctetString::new(issuer_key_id).map_err(encode_err)?),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        };
        extensions.push(ext("2.5.29.35", false, &aki)?);
    }
    for (oid, critical, value) in &template.extra_extensions {
        extensions.push(Extension {
            extn_id: der::asn1::ObjectIdentifier::new(oid)
                .map_err(|e| CertError::InvalidArgument(format!("'{oid}': {e}")))?,
            critical: *critical,
            extn_value: OctetString::new(value.clone()).map_err(encode_err)?,
        });
    }
    let (algorithm, _) = signer.sign(b"")?;
    let tbs = Tbs {
        version: Version::V3,
        serial_number: SerialNumber::new(&template.serial).map_err(encode_err)?,
        signature: algorithm,
        issuer,
        validity: Validity::new(time(template.not_before)?, time(template.not_after)?),
        subject,
        subject_public_key_info: subject_key.clone(),
        extensions: (!extensions.is_empty()).then_some(extensions),
    };
    let tbs_der = tbs.to_der().map_err(encode_err)?;
    let (signature_algorithm, sig) = signer.sign(&tbs_der)?;
    let cert = Cert {
        tbs_certificate: tbs,
        signature_algorithm,
        signature: BitString::from_bytes(&sig).map_err(encode_err)?,
    };
    cert.to_der().map_err(encode_err)
}

/// A P-256 public key as a SubjectPublicKeyInfo, from 64 (X ‖ Y) or 65 (04 ‖ X ‖ Y) octets.
pub fn p256_spki(raw: &[u8]) -> Result<SubjectPublicKeyInfoOwned, CertError> {
    let sec1: Vec<u8> = match raw.len() {
        64 => [&[0x04][..], raw].concat(),
        _ => raw.to_vec(),
    };
    let key = p256::PublicKey::from_sec1_bytes(&sec1).map_err(|_| {
        CertError::Key(
            "not a P-256 public key (give 64 or 65 octets of a point on the curve)".into(),
        )
    })?;
    let doc = key
        .to_public_key_der()
        .map_err(|e| CertError::Key(e.to_string()))?;
    SubjectPublicKeyInfoOwned::from_der(doc.as_bytes()).map_err(|e| CertError::Key(e.to_string()))
}

/// A public key file: PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`), or 64/65 octets
/// of raw P-256 key in hex.
pub fn parse_public_key_file(text: &str) -> Result<SubjectPublicKeyInfoOwned, CertError> {
    if text.contains("-----BEGIN") {
        return SubjectPublicKeyInfoOwned::from_pem(text.trim())
            .map_err(|e| CertError::Key(format!("not a PEM public key: {e}")));
    }
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let raw = hex::decode(&digits)
        .map_err(|e| CertError::Key(format!("not a PEM public key nor hex ({e})")))?;
    if raw.len() != 64 && raw.len() != 65 {
        return Err(CertError::Key(format!(
            "a raw public key is 64 or 65 octets, not {}",
            raw.len()
        )));
    }
    p256_spki(&raw)
}

/// `-----BEGIN CERTIFICATE-----` PEM of a DER certificate.
pub fn to_pem(der: &[u8]) -> Result<String, CertError> {
    der::pem::encode_string("CERTIFICATE", LineEnding::LF, der)
        .map_err(|e| CertError::InvalidArgument(format!("cannot encode PEM: {e}")))
}

/// Writes a secret file 0600, refusing to replace an existing file.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => CertError::KeyExists {
                path: path.to_path_buf(),
            },
            _ => CertError::io(path, e),
        })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| CertError::io(path, e))
}

fn write_public(path: &Path, text: &str) -> Result<(), CertError> {
    std::fs::write(path, text).map_err(|e| CertError::io(path, e))
}

fn refuse_existing(paths: &[&Path]) -> Result<(), CertError> {
    match paths.iter().find(|p| p.exists()) {
        Some(p) => Err(CertError::KeyExists {
            path: p.to_path_buf(),
        }),
        None => Ok(()),
    }
}

/// Options of `meshprov ca init`.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// The manufacturer's name: the root is `CN=<name> Root`, the intermediate
    /// `CN=<name> Intermediate`, both with `O=<name>`.
    pub name: String,
    /// Also make an intermediate signed by the root.
    pub intermediate: bool,
    /// Validity in days.
    pub days: u32,
    /// Now: validity starts [`BACKDATE`] before.
    pub now: SystemTime,
}

/// What `meshprov ca init` wrote.
#[derive(Clone, Debug)]
pub struct InitReport {
    /// The root certificate's subject.
    pub root_subject: String,
    /// The intermediate's subject, if one was made.
    pub intermediate_subject: Option<String>,
    /// The files written.
    pub files: Vec<PathBuf>,
}

/// `meshprov ca init DIR`: a self-signed root (and an intermediate) with fresh P-256 keys.
/// Refuses to run if DIR already holds one of the key files.
pub fn init(
    dir: &Path,
    opts: &InitOptions,
    rng: &mut dyn CryptoRng,
) -> Result<InitReport, CertError> {
    if opts.name.is_empty()
        || opts
            .name
            .contains([',', '+', '=', '"', '\\', '<', '>', ';'])
    {
        return Err(CertError::InvalidArgument(format!(
            "invalid --name '{}': use letters, digits, spaces, '-' or '.'",
            opts.name
        )));
    }
    if opts.days == 0 {
        return Err(CertError::InvalidArgument(
            "--days must be at least 1".into(),
        ));
    }
    let root_key_path = dir.join("root.key");
    let int_key_path = dir.join("intermediate.key");
    refuse_existing(&[&root_key_path, &int_key_path])?;
    std::fs::create_dir_all(dir).map_err(|e| CertError::io(dir, e))?;

    let root_key = CaKey::generate_p256(rng);
    let root_subject = format!("CN={} Root,O={}", opts.name, opts.name);
    let root_t = CertTemplate::root(
        &root_subject,
        random_serial(rng),
        start(opts.now),
        opts.days,
    );
    let root_der = issue_certificate(&root_t, &root_key.spki()?, &root_key, None)?;
    write_secret(&root_key_path, root_key.to_pkcs8_pem()?.as_bytes())?;
    let root_pem_path = dir.join("root.pem");
    write_public(&root_pem_path, &to_pem(&root_der)?)?;
    let mut files = vec![root_pem_path, root_key_path];
    let mut intermediate_subject = None;
    if opts.intermediate {
        let key = CaKey::generate_p256(rng);
        let subject = format!("CN={} Intermediate,O={}", opts.name, opts.name);
        let t =
            CertTemplate::intermediate(&subject, random_serial(rng), start(opts.now), opts.days);
        let der = issue_certificate(&t, &key.spki()?, &root_key, Some(&root_der))?;
        write_secret(&int_key_path, key.to_pkcs8_pem()?.as_bytes())?;
        let pem_path = dir.join("intermediate.pem");
        write_public(&pem_path, &to_pem(&der)?)?;
        files.push(pem_path);
        files.push(int_key_path);
        intermediate_subject = Some(Parsed::from_der(&der, "intermediate")?.subject);
    }
    Ok(InitReport {
        root_subject: Parsed::from_der(&root_der, "root")?.subject,
        intermediate_subject,
        files,
    })
}

/// A CA directory's signer: the intermediate when there is one, else the root.
struct Signer {
    key: CaKey,
    cert_der: Vec<u8>,
    /// The chain above the device certificate that devices present (the intermediate).
    chain: Vec<Vec<u8>>,
}

fn load_signer(dir: &Path) -> Result<Signer, CertError> {
    let (cert_path, key_path, is_intermediate) = if dir.join("intermediate.pem").exists() {
        (
            dir.join("intermediate.pem"),
            dir.join("intermediate.key"),
            true,
        )
    } else {
        (dir.join("root.pem"), dir.join("root.key"), false)
    };
    let pem = std::fs::read(&cert_path).map_err(|e| CertError::io(&cert_path, e))?;
    let cert_der = parse::pem_or_der_certificates(&pem, &cert_path.display().to_string())?
        .into_iter()
        .next()
        .ok_or_else(|| CertError::Malformed {
            what: cert_path.display().to_string(),
            reason: "no certificate".into(),
        })?;
    let key_text = std::fs::read_to_string(&key_path).map_err(|e| CertError::io(&key_path, e))?;
    let key = CaKey::from_pkcs8_pem(&key_text)
        .map_err(|e| CertError::Key(format!("{}: {e}", key_path.display())))?;
    if key.spki()? != *Parsed::from_der(&cert_der, "CA certificate")?.spki() {
        return Err(CertError::Key(format!(
            "{} does not hold the key of {}",
            key_path.display(),
            cert_path.display()
        )));
    }
    let chain = if is_intermediate {
        vec![cert_der.clone()]
    } else {
        Vec::new()
    };
    Ok(Signer {
        key,
        cert_der,
        chain,
    })
}

/// Where `meshprov ca issue` takes the device key from.
#[derive(Clone, Debug)]
pub enum DeviceKeySource {
    /// A public key file (PEM SubjectPublicKeyInfo, or raw hex); the certificate goes to
    /// `out` (`OUT.pem`, `OUT.chain.pem`) or, if `None`, to standard output.
    PublicKey {
        /// The public key file.
        file: PathBuf,
        /// The output prefix.
        out: Option<PathBuf>,
    },
    /// Generate a key pair: `OUT.key` (PKCS#8 PEM, 0600), `OUT.key.hex` (the raw 32-octet
    /// private key in hex, 0600, for a simulated building file), `OUT.pem`, `OUT.chain.pem`.
    Generate {
        /// The output prefix.
        out: PathBuf,
    },
}

/// What `meshprov ca issue` made.
#[derive(Clone, Debug)]
pub struct IssueReport {
    /// The device certificate's subject.
    pub subject: String,
    /// The issuer's subject.
    pub issuer: String,
    /// The serial number, hex.
    pub serial: String,
    /// The device certificate followed by the intermediate (if any), PEM.
    pub chain_pem: String,
    /// The files written (empty when the chain goes to standard output).
    pub files: Vec<PathBuf>,
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(prefix.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

/// `meshprov ca issue`: a device certificate for `uuid` signed by the CA in `ca_dir`. Its
/// validity starts [`BACKDATE`] before `now` and ends after `days` or with the issuer's,
/// whichever is first.
pub fn issue(
    ca_dir: &Path,
    uuid: &DeviceUuid,
    source: &DeviceKeySource,
    days: u32,
    now: SystemTime,
    rng: &mut dyn CryptoRng,
) -> Result<IssueReport, CertError> {
    if days == 0 {
        return Err(CertError::InvalidArgument(
            "--days must be at least 1".into(),
        ));
    }
    let signer = load_signer(ca_dir)?;
    let (spki, generated, out) = match source {
        DeviceKeySource::PublicKey { file, out } => {
            let text = std::fs::read_to_string(file).map_err(|e| CertError::io(file, e))?;
            let spki = parse_public_key_file(&text)
                .map_err(|e| CertError::Key(format!("{}: {e}", file.display())))?;
            (spki, None, out.clone())
        }
        DeviceKeySource::Generate { out } => {
            refuse_existing(&[&with_suffix(out, ".key"), &with_suffix(out, ".key.hex")])?;
            let key = p256::ecdsa::SigningKey::generate_from_rng(rng);
            let spki = CaKey::P256(key.clone()).spki()?;
            (spki, Some(key), Some(out.clone()))
        }
    };
    if parse::device_key(&spki).is_err() {
        return Err(CertError::DeviceKeyNotP256 {
            found: parse::describe_key(&spki),
        });
    }
    let issuer = Parsed::from_der(&signer.cert_der, "CA certificate")?;
    let mut t = CertTemplate::device(uuid, random_serial(rng), start(now), days);
    let issuer_end = issuer.not_after().to_system_time();
    if t.not_after > issuer_end {
        t.not_after = issuer_end;
    }
    let der = issue_certificate(&t, &spki, &signer.key, Some(&signer.cert_der))?;
    let mut chain_pem = to_pem(&der)?;
    for c in &signer.chain {
        chain_pem.push_str(&to_pem(c)?);
    }
    let mut files = Vec::new();
    if let Some(key) = generated
        && let Some(out) = &out
    {
        let key_path = with_suffix(out, ".key");
        write_secret(
            &key_path,
            CaKey::P256(key.clone()).to_pkcs8_pem()?.as_bytes(),
        )?;
        files.push(key_path);
        let hex_path = with_suffix(out, ".key.hex");
        let mut hex_text = hex::encode(key.to_bytes());
        hex_text.push('\n');
        write_secret(&hex_path, hex_text.as_bytes())?;
        files.push(hex_path);
    }
    if let Some(out) = &out {
        let pem_path = with_suffix(out, ".pem");
        write_public(&pem_path, &to_pem(&der)?)?;
        files.push(pem_path);
        let chain_path = with_suffix(out, ".chain.pem");
        write_public(&chain_path, &chain_pem)?;
        files.push(chain_path);
    }
    let device = Parsed::from_der(&der, "device certificate")?;
    Ok(IssueReport {
        subject: device.subject,
        issuer: issuer.subject,
        serial: hex::encode(&device.serial),
        chain_pem,
        files,
    })
}

/// `meshprov ca verify`: verifies the chain file (device certificate first, then
/// intermediates; PEM or a single DER certificate) against the roots in `trust_dir`, with the
/// default policy plus the deny list of `deny` if given.
pub fn verify_files(
    trust_dir: &Path,
    uuid: &DeviceUuid,
    chain_file: &Path,
    deny: Option<&Path>,
    now: SystemTime,
) -> Result<VerifiedDevice, CertError> {
    let trust = TrustStore::from_dir(trust_dir)?;
    let policy = match deny {
        Some(p) => Policy::load_deny_list(p)?,
        None => Policy::default(),
    };
    let bytes = std::fs::read(chain_file).map_err(|e| CertError::io(chain_file, e))?;
    let (device, intermediates) = parse::load_chain_pem(&bytes, &chain_file.display().to_string())?;
    super::verify_device_chain(&device, &intermediates, &trust, &policy, uuid, now)
}
