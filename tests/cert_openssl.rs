//! Interop with OpenSSL's command line: chains made by `openssl` are accepted or refused by
//! meshprov exactly as `openssl verify -CAfile ROOT -untrusted INTERMEDIATES` judges them, and
//! chains made by `meshprov ca` pass `openssl verify` and show "Key Agreement".
//!
//! Every openssl run has a 30 s timeout. Without openssl the tests fail when `CI` is set, and
//! print a note and pass otherwise. Both sides judge at the same instant (`-attime`).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meshprov::cert::{CertError, Policy, TrustStore, load_chain_pem, verify_device_chain};
use meshprov::uuid::DeviceUuid;

const UUID: &str = "7b2c1a90-0000-4000-8000-00000000000a";
const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a command with a timeout; kills it and panics when the time is up.
fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether openssl can run; fails in CI when it cannot.
fn have_openssl() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .is_ok();
    if ok {
        let out = run(Command::new("openssl").arg("version"));
        eprintln!("using {}", String::from_utf8_lossy(&out.stdout).trim());
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "openssl is not installed, and CI is set: .ci/run installs it (apt-get install openssl)"
    );
    eprintln!("note: openssl is not installed; skipping the OpenSSL interop test");
    false
}

/// Runs openssl in `dir`; panics with its stderr when it fails.
fn openssl(dir: &Path, args: &[&str]) -> Output {
    let out = run(Command::new("openssl").args(args).current_dir(dir));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `openssl verify` at `at`: true when it accepts the chain.
fn openssl_verify(
    dir: &Path,
    root: &str,
    untrusted: &[&str],
    leaf: &str,
    at: u64,
    strict: bool,
) -> bool {
    let at = at.to_string();
    let mut args = vec!["verify", "-attime", &at, "-CAfile", root];
    if strict {
        args.push("-x509_strict");
    }
    let bundle;
    if !untrusted.is_empty() {
        let mut text = String::new();
        for u in untrusted {
            text.push_str(&std::fs::read_to_string(dir.join(u)).unwrap());
        }
        std::fs::write(dir.join("untrusted.pem"), text).unwrap();
        bundle = "untrusted.pem".to_string();
        args.push("-untrusted");
        args.push(&bundle);
    }
    args.push(leaf);
    let out = run(Command::new("openssl").args(&args).current_dir(dir));
    let stdout = String::from_utf8_lossy(&out.stdout);
    out.status.success() && stdout.contains(": OK")
}

fn meshprov_verify(
    dir: &Path,
    root: &str,
    untrusted: &[&str],
    leaf: &str,
    at: u64,
) -> Result<(), CertError> {
    let mut trust = TrustStore::new();
    let (root_der, _) = load_chain_pem(&std::fs::read(dir.join(root)).unwrap(), root).unwrap();
    trust.add_der(&root_der)?;
    let (leaf_der, _) = load_chain_pem(&std::fs::read(dir.join(leaf)).unwrap(), leaf).unwrap();
    let inters: Vec<Vec<u8>> = untrusted
        .iter()
        .map(|u| {
            load_chain_pem(&std::fs::read(dir.join(u)).unwrap(), u)
                .unwrap()
                .0
        })
        .collect();
    let uuid: DeviceUuid = UUID.parse().unwrap();
    verify_device_chain(
        &leaf_der,
        &inters,
        &trust,
        &Policy::default(),
        &uuid,
        UNIX_EPOCH + Duration::from_secs(at),
    )
    .map(|_| ())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const CA_EXT: &str = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n";
const DEVICE_EXT: &str = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,keyAgreement\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n";

/// An openssl CA: `NAME.key` and `NAME.pem`, self-signed when `issuer` is `None`.
fn openssl_ca(dir: &Path, name: &str, cn: &str, curve: &str, issuer: Option<&str>, days: &str) {
    let key = format!("{name}.key");
    let pem = format!("{name}.pem");
    openssl(
        dir,
        &["ecparam", "-name", curve, "-genkey", "-noout", "-out", &key],
    );
    std::fs::write(dir.join("ca.ext"), CA_EXT).unwrap();
    let subj = format!("/CN={cn}");
    match issuer {
        None => {
            openssl(
                dir,
                &[
                    "req",
                    "-new",
                    "-x509",
                    "-key",
                    &key,
                    "-subj",
                    &subj,
                    "-days",
                    days,
                    "-sha256",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                    "-out",
                    &pem,
                ],
            );
        }
        Some(issuer) => {
            let csr = format!("{name}.csr");
            openssl(
                dir,
                &["req", "-new", "-key", &key, "-subj", &subj, "-out", &csr],
            );
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &format!("{issuer}.pem"),
                    "-CAkey",
                    &format!("{issuer}.key"),
                    "-set_serial",
                    "0x1001",
                    "-days",
                    days,
                    "-sha256",
                    "-extfile",
                    "ca.ext",
                    "-out",
                    &pem,
                ],
            );
        }
    }
}

/// An openssl device certificate `NAME.pem` (key `NAME.key`, P-256) issued by `issuer`.
fn openssl_device(dir: &Path, name: &str, issuer: &str, days: &str, ext: &str) {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &key,
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &key,
            "-subj",
            &format!("/CN={}", UUID.replace('-', "")),
            "-out",
            &csr,
        ],
    );
    std::fs::write(dir.join("dev.ext"), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{issuer}.pem"),
            "-CAkey",
            &format!("{issuer}.key"),
            "-set_serial",
            "0x2002",
            "-days",
            days,
            "-sha256",
            "-extfile",
            "dev.ext",
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// Both verifiers judge the same chain the same way; returns meshprov's verdict.
fn agree(dir: &Path, root: &str, untrusted: &[&str], leaf: &str, at: u64) -> Result<(), CertError> {
    let theirs = openssl_verify(dir, root, untrusted, leaf, at, false);
    let ours = meshprov_verify(dir, root, untrusted, leaf, at);
    assert_eq!(
        ours.is_ok(),
        theirs,
        "{leaf} with {untrusted:?} under {root}: openssl says {theirs}, meshprov says {ours:?}"
    );
    ours
}

#[test]
fn openssl_made_chains_are_judged_as_openssl_judges_them() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let now = unix_now();
    openssl_ca(dir, "root", "Interop Root", "prime256v1", None, "3650");
    openssl_ca(
        dir,
        "int",
        "Interop Intermediate",
        "prime256v1",
        Some("root"),
        "3650",
    );
    openssl_device(dir, "dev", "int", "365", DEVICE_EXT);

    // A good chain.
    agree(dir, "root.pem", &["int.pem"], "dev.pem", unix_now()).expect("good chain");
    // Without its intermediate: both refuse.
    let e = agree(dir, "root.pem", &[], "dev.pem", unix_now()).unwrap_err();
    assert!(matches!(e, CertError::UntrustedRoot { .. }), "{e}");
    // Expired: a year and a half later the device certificate has expired.
    let e = agree(dir, "root.pem", &["int.pem"], "dev.pem", now + 550 * 86_400).unwrap_err();
    assert_eq!(
        e.to_string().split(" expired on ").next(),
        Some("device certificate")
    );
    // Not yet valid: a day before issue.
    let e = agree(dir, "root.pem", &["int.pem"], "dev.pem", now - 2 * 86_400).unwrap_err();
    assert!(matches!(e, CertError::NotYetValid { .. }), "{e}");

    // Wrong issuer: another root that signed nothing of this chain.
    openssl_ca(dir, "other", "Other Root", "prime256v1", None, "3650");
    let e = agree(dir, "other.pem", &["int.pem"], "dev.pem", unix_now()).unwrap_err();
    assert!(matches!(e, CertError::UntrustedRoot { .. }), "{e}");
    // Wrong issuer with the right name: an impostor intermediate called the same.
    openssl_ca(
        dir,
        "fake",
        "Interop Intermediate",
        "prime256v1",
        Some("root"),
        "3650",
    );
    agree(dir, "root.pem", &["fake.pem"], "dev.pem", unix_now()).unwrap_err();
    // A device signed by the impostor does not chain to the real intermediate either.
    openssl_device(dir, "dev2", "fake", "365", DEVICE_EXT);
    agree(dir, "root.pem", &["int.pem"], "dev2.pem", unix_now()).unwrap_err();
    agree(dir, "root.pem", &["fake.pem"], "dev2.pem", unix_now())
        .expect("the impostor is a real CA of root");

    // A P-384 root signing with SHA-256 (openssl's default): both accept.
    openssl_ca(
        dir,
        "root384",
        "Interop P-384 Root",
        "secp384r1",
        None,
        "3650",
    );
    openssl_ca(
        dir,
        "int384",
        "Interop P-384 Intermediate",
        "secp384r1",
        Some("root384"),
        "3650",
    );
    openssl_device(dir, "dev384", "int384", "365", DEVICE_EXT);
    agree(
        dir,
        "root384.pem",
        &["int384.pem"],
        "dev384.pem",
        unix_now(),
    )
    .expect("P-384 CAs");
}

#[test]
fn openssl_ca_flags_are_honoured() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    openssl_ca(dir, "root", "Interop Root", "prime256v1", None, "3650");
    // An "intermediate" that is not a CA: openssl refuses, and so do we.
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "leafca.key",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "leafca.key",
            "-subj",
            "/CN=Not A CA",
            "-out",
            "leafca.csr",
        ],
    );
    std::fs::write(dir.join("notca.ext"), "basicConstraints=critical,CA:FALSE\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leafca.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-set_serial",
            "7",
            "-days",
            "365",
            "-extfile",
            "notca.ext",
            "-out",
            "leafca.pem",
        ],
    );
    openssl_device(dir, "dev", "leafca", "365", DEVICE_EXT);
    let e = agree(dir, "root.pem", &["leafca.pem"], "dev.pem", unix_now()).unwrap_err();
    assert!(matches!(e, CertError::NotCa { .. }), "{e}");
}

/// Runs the meshprov binary: (exit code, stdout, stderr).
fn meshprov(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = run(Command::new(env!("CARGO_BIN_EXE_meshprov"))
        .args(args)
        .current_dir(dir));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn meshprov_ca_chains_pass_openssl_verify() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (c, out, err) = meshprov(
        dir,
        &[
            "ca",
            "init",
            "acme",
            "--name",
            "Acme Lighting",
            "--intermediate",
        ],
    );
    assert_eq!(c, 0, "{err}");
    assert!(
        out.contains("root 'CN=Acme Lighting Root,O=Acme Lighting'"),
        "{out}"
    );
    let (c, out, err) = meshprov(
        dir,
        &[
            "ca",
            "issue",
            "--ca",
            "acme",
            "--uuid",
            UUID,
            "--generate",
            "dev1",
        ],
    );
    assert_eq!(c, 0, "{err}");
    assert!(
        out.contains("issued 'CN=7b2c1a9000004000800000000000000a'"),
        "{out}"
    );

    for strict in [false, true] {
        assert!(
            openssl_verify(
                dir,
                "acme/root.pem",
                &["acme/intermediate.pem"],
                "dev1.pem",
                unix_now(),
                strict
            ),
            "strict={strict}"
        );
        assert!(openssl_verify(
            dir,
            "acme/root.pem",
            &["acme/intermediate.pem"],
            "acme/intermediate.pem",
            unix_now(),
            strict
        ));
    }
    let text =
        String::from_utf8(openssl(dir, &["x509", "-in", "dev1.pem", "-noout", "-text"]).stdout)
            .unwrap();
    assert!(text.contains("Key Agreement"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(
        text.contains("Subject: CN = 7b2c1a9000004000800000000000000a"),
        "{text}"
    );
    let root_text = String::from_utf8(
        openssl(dir, &["x509", "-in", "acme/root.pem", "-noout", "-text"]).stdout,
    )
    .unwrap();
    assert!(
        root_text.contains("CA:TRUE") && root_text.contains("Certificate Sign, CRL Sign"),
        "{root_text}"
    );

    // The generated key is the certificate's, in both forms.
    let cert_pub = openssl(dir, &["x509", "-in", "dev1.pem", "-noout", "-pubkey"]).stdout;
    let key_pub = openssl(dir, &["pkey", "-in", "dev1.key", "-pubout"]).stdout;
    assert_eq!(cert_pub, key_pub);
    let hex = std::fs::read_to_string(dir.join("dev1.key.hex")).unwrap();
    let text =
        String::from_utf8(openssl(dir, &["pkey", "-in", "dev1.key", "-noout", "-text"]).stdout)
            .unwrap();
    let priv_hex: String = text
        .split("priv:")
        .nth(1)
        .and_then(|s| s.split("pub:").next())
        .unwrap()
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    assert_eq!(
        priv_hex.trim_start_matches("00"),
        hex.trim().trim_start_matches("00")
    );

    // meshprov ca verify agrees.
    let (c, out, err) = meshprov(
        dir,
        &[
            "ca",
            "verify",
            "--trust",
            "acme",
            "--uuid",
            UUID,
            "dev1.chain.pem",
        ],
    );
    assert_eq!(c, 0, "{err}");
    assert!(out.starts_with("OK: CN=7b2c1a9000004000800000000000000a -> CN=Acme Lighting Intermediate,O=Acme Lighting -> CN=Acme Lighting Root,O=Acme Lighting, device key "), "{out}");
    assert_eq!(out.lines().count(), 1);

    // A device key made by openssl, certified with --public-key.
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "own.key",
        ],
    );
    openssl(
        dir,
        &["pkey", "-in", "own.key", "-pubout", "-out", "own.pub"],
    );
    let (c, _, err) = meshprov(
        dir,
        &[
            "ca",
            "issue",
            "--ca",
            "acme",
            "--uuid",
            UUID,
            "--public-key",
            "own.pub",
            "--out",
            "own",
        ],
    );
    assert_eq!(c, 0, "{err}");
    assert!(openssl_verify(
        dir,
        "acme/root.pem",
        &["acme/intermediate.pem"],
        "own.pem",
        unix_now(),
        true
    ));
    let cert_pub = openssl(dir, &["x509", "-in", "own.pem", "-noout", "-pubkey"]).stdout;
    assert_eq!(cert_pub, std::fs::read(dir.join("own.pub")).unwrap());
}

#[test]
fn meshprov_ca_cli_exit_codes_and_files() {
    // No openssl needed.
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (c, _, err) = meshprov(dir, &["ca", "init", "acme"]);
    assert_eq!(c, 0, "{err}");
    let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("acme/root.key"), 0o600);
    assert!(!dir.join("acme/intermediate.pem").exists());
    // Never overwrite a key.
    let before = std::fs::read(dir.join("acme/root.key")).unwrap();
    let (c, _, err) = meshprov(dir, &["ca", "init", "acme", "--intermediate"]);
    assert_eq!(c, 1);
    assert!(
        err.contains("root.key: already exists; refusing to overwrite a key"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.join("acme/root.key")).unwrap(), before);

    // Issued by the root when there is no intermediate; the chain is the device alone.
    let (c, _, err) = meshprov(
        dir,
        &[
            "ca",
            "issue",
            "--ca",
            "acme",
            "--uuid",
            UUID,
            "--generate",
            "d",
        ],
    );
    assert_eq!(c, 0, "{err}");
    assert_eq!(mode("d.key"), 0o600);
    assert_eq!(mode("d.key.hex"), 0o600);
    let chain = std::fs::read_to_string(dir.join("d.chain.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 1);
    let (c, _, err) = meshprov(
        dir,
        &[
            "ca",
            "issue",
            "--ca",
            "acme",
            "--uuid",
            UUID,
            "--generate",
            "d",
        ],
    );
    assert_eq!(c, 1);
    assert!(err.contains("d.key: already exists"), "{err}");

    // The verdicts.
    let (c, out, _) = meshprov(
        dir,
        &[
            "ca",
            "verify",
            "--trust",
            "acme",
            "--uuid",
            UUID,
            "d.chain.pem",
        ],
    );
    assert_eq!(c, 0);
    assert!(
        out.starts_with(
            "OK: CN=7b2c1a9000004000800000000000000a -> CN=meshprov Root,O=meshprov, device key "
        ),
        "{out}"
    );
    let (c, out, err) = meshprov(
        dir,
        &[
            "ca",
            "verify",
            "--trust",
            "acme",
            "--uuid",
            "7b2c1a90-0000-4000-8000-00000000000b",
            "d.chain.pem",
        ],
    );
    assert_eq!((c, out.as_str()), (1, ""));
    assert_eq!(
        err.trim(),
        "meshprov: CN '7b2c1a9000004000800000000000000a' is not the device UUID 7b2c1a9000004000800000000000000b"
    );
    // Deny list.
    let serial = {
        let (der, _) = load_chain_pem(chain.as_bytes(), "d").unwrap();
        let mut t = TrustStore::new();
        t.add_der(
            &load_chain_pem(&std::fs::read(dir.join("acme/root.pem")).unwrap(), "r")
                .unwrap()
                .0,
        )
        .unwrap();
        let v = verify_device_chain(
            &der,
            &[],
            &t,
            &Policy::default(),
            &UUID.parse().unwrap(),
            SystemTime::now(),
        )
        .unwrap();
        v.chain[0].serial.clone()
    };
    std::fs::write(dir.join("deny.txt"), format!("# stolen\nserial:{serial}\n")).unwrap();
    let (c, _, err) = meshprov(
        dir,
        &[
            "ca",
            "verify",
            "--trust",
            "acme",
            "--uuid",
            UUID,
            "d.chain.pem",
            "--deny",
            "deny.txt",
        ],
    );
    assert_eq!(c, 1);
    assert!(err.contains("is on the deny list"), "{err}");
    // Bad arguments: exit 2.
    for args in [
        &[
            "ca",
            "verify",
            "--trust",
            "acme",
            "--uuid",
            "nope",
            "d.chain.pem",
        ][..],
        &[
            "ca",
            "verify",
            "--trust",
            "missing-dir",
            "--uuid",
            UUID,
            "d.chain.pem",
        ],
        &[
            "ca",
            "verify",
            "--trust",
            "acme",
            "--uuid",
            UUID,
            "missing.pem",
        ],
        &[
            "ca",
            "verify",
            "--trust",
            "acme",
            "--uuid",
            UUID,
            "d.chain.pem",
            "--deny",
            "missing.txt",
        ],
        &["ca", "issue", "--ca", "acme", "--uuid", UUID],
        &[
            "ca",
            "issue",
            "--ca",
            "acme",
            "--uuid",
            "xyz",
            "--generate",
            "e",
        ],
        &["ca", "init", "other", "--name", "A,B"],
    ] {
        let (c, _, err) = meshprov(dir, args);
        assert_eq!(c, 2, "{args:?}: {err}");
    }
    // A malformed chain file is a verdict: exit 1.
    std::fs::write(
        dir.join("junk.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let (c, _, err) = meshprov(
        dir,
        &[
            "ca", "verify", "--trust", "acme", "--uuid", UUID, "junk.pem",
        ],
    );
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("malformed certificate"), "{err}");
}
