//! Certificate-based provisioning: X.509 chain validation and the `meshprov ca` tooling.
//!
//! MshPRT v1.1 §5.4.2.2 (certificate-based OOB) lets a device prove its identity with a device
//! certificate (record 0x0001) and up to 15 intermediate certificates (records 0x0002–0x0010)
//! leading to a manufacturer root that the installer trusts. The provisioner then takes the
//! device's P-256 public key from the certificate instead of from the air, so the ECDH handshake
//! cannot be man-in-the-middled.
//!
//! [`verify_device_chain`] is the one entry point: it builds the chain device → intermediates
//! (in any order) → a root of the [`TrustStore`], checks every signature, validity period, CA
//! flag, key usage and path length, and applies the installer's [`Policy`] (subject CN = device
//! UUID, deny list). Every refusal is a [`CertError`] whose message names the defect in words an
//! installer can act on.
//!
//! Decisions (also in the README):
//! - signatures are ECDSA with SHA-256 or SHA-384; the signing key may be P-256 or P-384 (roots
//!   and intermediates only: the device key itself must be P-256, it is used for ECDH);
//! - a device certificate without a keyUsage extension is refused: the specification asks
//!   for keyAgreement and an absent extension does not say it;
//! - an issuer is found by name (issuer = subject) and, when the child has an authority key
//!   identifier and the candidate a subject key identifier, by key identifier too;
//! - the roots of a [`TrustStore`] are trust anchors: their own signature is not checked, but
//!   their validity period, CA flag and key usage are (as `openssl verify` does);
//! - an unknown critical extension makes a certificate unusable (RFC 5280 §4.2).

pub mod ca;
mod parse;
mod verify;

use std::path::{Path, PathBuf};

pub use parse::{load_chain_pem, pem_or_der_certificates};
pub use verify::verify_device_chain;

/// Everything that can go wrong in this layer: a verdict on a certificate chain, or a problem
/// with the files the `ca` tooling and the trust store read and write.
///
/// Verdict messages name the certificate by its subject (RFC 4514, e.g. `'CN=Acme Root'`) and
/// dates as YYYY-MM-DD (UTC).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The bytes are not an X.509 certificate (or not one this verifier can read).
    #[error("malformed certificate: {what}: {reason}")]
    Malformed {
        /// Which certificate ("device certificate", "intermediate certificate 2", a file).
        what: String,
        /// What the parser found.
        reason: String,
    },
    /// A certificate's validity period ended before `now`.
    #[error("{who} expired on {date}")]
    Expired {
        /// "device certificate" or "certificate 'CN=...'".
        who: String,
        /// The notAfter date, YYYY-MM-DD.
        date: String,
    },
    /// A certificate's validity period starts after `now`.
    #[error("{who} is not yet valid (from {date})")]
    NotYetValid {
        /// "device certificate" or "certificate 'CN=...'".
        who: String,
        /// The notBefore date, YYYY-MM-DD.
        date: String,
    },
    /// No trusted root issued the last certificate that could be chained.
    #[error(
        "chain does not end at a trusted root (last issuer '{last_issuer}'): add the manufacturer's root to the trust directory, or the device is not genuine"
    )]
    UntrustedRoot {
        /// The issuer name of the last certificate of the chain that was built.
        last_issuer: String,
    },
    /// A signature does not verify with the key of the certificate's issuer.
    #[error("signature of '{subject}' does not verify with its issuer's key")]
    BadSignature {
        /// The subject of the certificate whose signature is wrong.
        subject: String,
    },
    /// A certificate is signed with an algorithm this verifier does not accept.
    #[error(
        "'{subject}' is signed with {algorithm}; only ECDSA with SHA-256 or SHA-384 is accepted"
    )]
    UnsupportedSignature {
        /// The subject of the certificate.
        subject: String,
        /// The signature algorithm's OID or name.
        algorithm: String,
    },
    /// An issuer's key is neither P-256 nor P-384 ECDSA.
    #[error("the key of '{issuer}' is {found}; only P-256 or P-384 ECDSA keys may sign")]
    UnsupportedIssuerKey {
        /// The issuer's subject.
        issuer: String,
        /// What the key is.
        found: String,
    },
    /// A certificate that is not a CA (basicConstraints cA) issued another one.
    #[error("'{issuer}' is not a CA (basicConstraints) but issued '{subject}'")]
    NotCa {
        /// The issuer's subject.
        issuer: String,
        /// The issued certificate's subject.
        subject: String,
    },
    /// An issuer's keyUsage does not include keyCertSign.
    #[error("'{issuer}' may not sign certificates (keyUsage lacks keyCertSign)")]
    NoKeyCertSign {
        /// The issuer's subject.
        issuer: String,
    },
    /// More CA certificates below an issuer than its pathLenConstraint allows.
    #[error("path length constraint of '{issuer}' exceeded")]
    PathLenExceeded {
        /// The constrained issuer's subject.
        issuer: String,
    },
    /// More intermediate certificates than the policy allows.
    #[error("{count} intermediate certificates; at most {max} are allowed")]
    TooManyIntermediates {
        /// How many were given or needed.
        count: usize,
        /// The policy's limit.
        max: usize,
    },
    /// A certificate carries a critical extension this verifier does not understand.
    #[error("{who} has a critical extension {oid} that meshprov does not understand")]
    UnsupportedCriticalExtension {
        /// "device certificate" or "certificate 'CN=...'".
        who: String,
        /// The extension's OID.
        oid: String,
    },
    /// Policy: the device certificate's subject CN is not the device UUID.
    #[error("CN '{cn}' is not the device UUID {uuid}")]
    CnNotUuid {
        /// The CN found.
        cn: String,
        /// The UUID of the device being provisioned, 32 hex digits.
        uuid: String,
    },
    /// Policy: the device certificate's subject has no CN at all.
    #[error("device certificate has no CN; the policy requires CN = the device UUID {uuid}")]
    NoCommonName {
        /// The UUID of the device being provisioned, 32 hex digits.
        uuid: String,
    },
    /// The device certificate's keyUsage does not include keyAgreement.
    #[error("device certificate does not allow keyAgreement")]
    NoKeyAgreement,
    /// The device certificate has no keyUsage extension (so it does not allow keyAgreement).
    #[error("device certificate does not allow keyAgreement (it has no keyUsage extension)")]
    NoKeyUsage,
    /// The device certificate's key is not a P-256 public key (provisioning ECDH is P-256).
    #[error("device key is not P-256 ({found})")]
    DeviceKeyNotP256 {
        /// What the key is.
        found: String,
    },
    /// A certificate of the chain is on the deny list.
    #[error("certificate '{subject}' (serial {serial}) is on the deny list ({entry})")]
    Denied {
        /// The certificate's subject.
        subject: String,
        /// Its serial number, hex.
        serial: String,
        /// The deny-list entry that matched (`serial:HEX` or `sha256:HEX`).
        entry: String,
    },
    /// A file could not be read or written.
    #[error("{}: {reason}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// A trust directory without any root certificate.
    #[error("{}: no root certificates (.pem, .crt or .der files of self-signed CAs)", path.display())]
    NoTrustedRoots {
        /// The directory.
        path: PathBuf,
    },
    /// A certificate given as a trusted root is not self-signed.
    #[error("'{subject}' is not a self-signed root certificate; only roots can be trusted")]
    NotARoot {
        /// The certificate's subject.
        subject: String,
    },
    /// A deny-list line that is not `serial:HEX` or `sha256:HEX`.
    #[error("{}:{line}: {reason} (write serial:HEX or sha256:HEX, # for comments)", path.display())]
    DenyList {
        /// The deny-list file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Refusing to overwrite a private key.
    #[error("{}: already exists; refusing to overwrite a key (move it away first)", path.display())]
    KeyExists {
        /// The key file.
        path: PathBuf,
    },
    /// A key (private or public) that cannot be used.
    #[error("{0}")]
    Key(String),
    /// An argument that cannot be used (the `ca` commands exit 2 on it).
    #[error("{0}")]
    InvalidArgument(String),
}

impl CertError {
    /// True when the error is about the command's arguments or input files rather than a
    /// verdict on a certificate (the `ca` commands exit 2 for these, 1 for verdicts).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Io { .. }
                | Self::NoTrustedRoots { .. }
                | Self::NotARoot { .. }
                | Self::DenyList { .. }
                | Self::InvalidArgument(_)
        )
    }

    pub(crate) fn io(path: &Path, e: impl std::fmt::Display) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }
}

/// The installer's trusted roots (manufacturer root certificates).
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    roots: Vec<parse::Parsed>,
}

impl TrustStore {
    /// An empty store (trusts nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Every self-signed certificate in the `.pem`, `.crt` and `.der` files of `dir` (PEM files
    /// may hold several). Certificates that are not self-signed (an intermediate beside its
    /// root, as `meshprov ca init --intermediate` writes them) are skipped: only roots are
    /// trust anchors. Other files (keys, notes) are ignored. A directory without any root is
    /// an error.
    pub fn from_dir(dir: &Path) -> Result<Self, CertError> {
        let entries = std::fs::read_dir(dir).map_err(|e| CertError::io(dir, e))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    matches!(e.to_ascii_lowercase().as_str(), "pem" | "crt" | "der")
                })
            })
            .collect();
        files.sort();
        let mut store = Self::new();
        for f in files {
            let bytes = std::fs::read(&f).map_err(|e| CertError::io(&f, e))?;
            for der in pem_or_der_certificates(&bytes, &f.display().to_string())? {
                let p = parse::Parsed::from_der(&der, &f.display().to_string())?;
                if p.is_self_issued() {
                    store.push(p);
                }
            }
        }
        if store.roots.is_empty() {
            return Err(CertError::NoTrustedRoots {
                path: dir.to_path_buf(),
            });
        }
        Ok(store)
    }

    /// The root certificates of a PEM bundle (every one must be self-signed).
    pub fn from_pem(pem: &[u8]) -> Result<Self, CertError> {
        let mut store = Self::new();
        for der in parse::pem_certificates(pem, "trusted roots")? {
            store.add_der(&der)?;
        }
        Ok(store)
    }

    /// Adds one root certificate (DER). It must be self-signed (issuer = subject).
    pub fn add_der(&mut self, der: &[u8]) -> Result<(), CertError> {
        let p = parse::Parsed::from_der(der, "trusted root")?;
        if !p.is_self_issued() {
            return Err(CertError::NotARoot { subject: p.subject });
        }
        self.push(p);
        Ok(())
    }

    fn push(&mut self, p: parse::Parsed) {
        if !self.roots.iter().any(|r| r.der == p.der) {
            self.roots.push(p);
        }
    }

    /// How many roots are trusted.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// True when nothing is trusted.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The subjects of the trusted roots, for display.
    pub fn subjects(&self) -> Vec<String> {
        self.roots.iter().map(|r| r.subject.clone()).collect()
    }
}

/// The installer's policy, applied on top of the X.509 checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The device certificate's subject CN must be the device UUID (32 hex digits or the dashed
    /// form, any case). On by default: it binds the certificate to the beacon being provisioned.
    pub require_cn_uuid: bool,
    /// Refused serial numbers (big-endian magnitude; leading zero octets are ignored).
    pub deny_serials: Vec<Vec<u8>>,
    /// Refused certificates by the SHA-256 of their DER encoding.
    pub deny_fingerprints: Vec<[u8; 32]>,
    /// The most intermediate certificates a chain may have (the records allow 15).
    pub max_intermediates: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            require_cn_uuid: true,
            deny_serials: Vec::new(),
            deny_fingerprints: Vec::new(),
            max_intermediates: 15,
        }
    }
}

impl Policy {
    /// The default policy with the deny list read from `path`: one entry per line,
    /// `serial:HEX` or `sha256:HEX` (colons and spaces inside HEX allowed, any case); blank
    /// lines and `#` comments are ignored.
    pub fn load_deny_list(path: &Path) -> Result<Policy, CertError> {
        let text = std::fs::read_to_string(path).map_err(|e| CertError::io(path, e))?;
        let mut policy = Policy::default();
        policy.add_deny_list(&text, path)?;
        Ok(policy)
    }

    /// Adds the entries of deny-list `text` (the format of [`Policy::load_deny_list`]);
    /// `path` only names the source in errors.
    pub fn add_deny_list(&mut self, text: &str, path: &Path) -> Result<(), CertError> {
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = |reason: String| CertError::DenyList {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            };
            let (kind, value) = line
                .split_once(':')
                .ok_or_else(|| err(format!("'{line}' has no 'serial:' or 'sha256:' prefix")))?;
            let digits: String = value
                .chars()
                .filter(|c| !matches!(c, ':' | ' ' | '\t'))
                .collect();
            let bytes = hex::decode(&digits).map_err(|e| err(format!("'{value}': {e}")))?;
            match kind.trim().to_ascii_lowercase().as_str() {
                "serial" => {
                    if bytes.is_empty() {
                        return Err(err("empty serial".into()));
                    }
                    self.deny_serials.push(bytes);
                }
                "sha256" => {
                    let fp: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
                        err(format!(
                            "a SHA-256 fingerprint is 32 bytes, not {}",
                            b.len()
                        ))
                    })?;
                    self.deny_fingerprints.push(fp);
                }
                other => return Err(err(format!("unknown entry kind '{other}'"))),
            }
        }
        Ok(())
    }
}

/// One certificate of a verified chain, for display and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSummary {
    /// The subject (RFC 4514).
    pub subject: String,
    /// The issuer (RFC 4514).
    pub issuer: String,
    /// The serial number, lower-case hex.
    pub serial: String,
    /// Start of validity, YYYY-MM-DD.
    pub not_before: String,
    /// End of validity, YYYY-MM-DD.
    pub not_after: String,
    /// SHA-256 of the DER encoding.
    pub sha256: [u8; 32],
}

/// A device whose certificate chain verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedDevice {
    /// The device's P-256 public key, X ‖ Y (big-endian), as
    /// `mesh_crypto::ecdh::PublicKey::from_bytes` takes it.
    pub public_key: [u8; 64],
    /// The chain from the device certificate (first) to the trusted root (last).
    pub chain: Vec<CertSummary>,
}

impl VerifiedDevice {
    /// The one-line verdict of `meshprov ca verify`:
    /// `OK: <device> -> <intermediate> -> <root>, device key <16 hex digits>…`.
    pub fn verdict_line(&self) -> String {
        let names: Vec<&str> = self.chain.iter().map(|c| c.subject.as_str()).collect();
        format!(
            "OK: {}, device key {}…",
            names.join(" -> "),
            hex::encode(&self.public_key[..8])
        )
    }
}
