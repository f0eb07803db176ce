//! `meshprov provision --capture` and `meshprov scan` as an engineer runs them: the key sidecar
//! is private (0600), holds the network's keys and the node's device key, and the session
//! secrets only with `--capture-secrets`; no key ever reaches the capture itself; the scan
//! lists every device of the building with its bearers and OOB information.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use meshprov::sim::building::Building;

const BUILDING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/building.toml");
const LIGHT: &str = "7b2c1a90-0000-4000-8000-000000000001";
const NET_KEY: &str = "7dd7364cd842ad18c17c2b820c84c3d6";

fn meshprov(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshprov"))
        .args(args)
        .env("XDG_DATA_HOME", "/nonexistent-meshprov-test")
        .output()
        .expect("run meshprov");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sim() -> String {
    format!("sim:{BUILDING}")
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Provisions the light with a capture; returns the report, the capture's bytes and the
/// sidecar.
fn provision(dir: &Path, name: &str, extra: &[&str]) -> (serde_json::Value, Vec<u8>, String) {
    let file = dir.join(format!("{name}.pcapng"));
    let sim = sim();
    let mut args = vec![
        "provision",
        LIGHT,
        "--radio",
        &sim,
        "--algorithm",
        "cmac",
        "--show-keys",
        "--json",
        "--capture",
        file.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = meshprov(&args);
    assert_eq!(code, 0, "{err}");
    let report = json(&out);
    let keys = dir.join(format!("{name}.keys.json"));
    assert_eq!(report["capture"]["keys"], keys.to_str().expect("utf-8"));
    let mode = std::fs::metadata(&keys)
        .expect("sidecar")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the sidecar is private");
    (
        report,
        std::fs::read(&file).expect("capture"),
        std::fs::read_to_string(&keys).expect("sidecar"),
    )
}

#[test]
fn sidecar_has_keys_and_secrets_only_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (plain_report, plain_capture, plain_keys) = provision(dir.path(), "plain", &[]);
    let (report, capture, keys) = provision(dir.path(), "secret", &["--capture-secrets"]);
    let device_key = report["device_key"]
        .as_str()
        .expect("--show-keys")
        .to_string();
    assert_eq!(
        plain_report["device_key"], report["device_key"],
        "same seed, same run"
    );
    assert_eq!(report["capture"]["secrets"], true);
    assert_eq!(plain_report["capture"]["secrets"], false);

    // The network's keys are what a sidecar is for.
    let plain = json(&plain_keys);
    assert_eq!(plain["format"], "meshprov-capture-keys/2");
    assert_eq!(plain["net_keys"][0]["key"], NET_KEY);
    assert_eq!(plain["net_keys"][0]["index"], 0);
    assert_eq!(plain["device_keys"][0]["key"], device_key.as_str());
    assert_eq!(plain["device_keys"][0]["address"], "0x0001");
    assert_eq!(plain["device_keys"][0]["uuid"], LIGHT);
    assert!(plain["secrets"].is_null(), "{plain_keys}");
    // The replay information goes with the secrets only.
    assert!(plain["replay"].is_null(), "{plain_keys}");

    // With --capture-secrets: one session, named by the provisioner's public key.
    let v = json(&keys);
    let sessions = v["secrets"]["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(s["device_uuid"], LIGHT);
    assert_eq!(v["secrets"]["seed"], 1);
    assert_eq!(s["device_key"], device_key.as_str());
    let hexs = |k: &str| hex::decode(s[k].as_str().unwrap_or_else(|| panic!("{k}"))).expect(k);
    let private = hexs("provisioner_private_key");
    let public = hexs("provisioner_public_key");
    let pair = meshprov::crypto::ecdh::KeyPair::from_private_bytes(&private).expect("a key");
    assert_eq!(
        pair.public_key().as_bytes()[..],
        public[..],
        "the pair matches"
    );
    // The light's static OOB value, cut to 16 octets for the CMAC algorithm.
    assert_eq!(s["auth_value"], "7ddb5a3c2f0e4d1b8a6f9c3e2d1b0a99");
    for k in [
        "ecdh_secret",
        "provisioner_random",
        "device_random",
        "session_key",
        "session_nonce",
    ] {
        assert!(!hexs(k).is_empty(), "{k}");
    }

    // The public key is on air (PB-ADV segments it: its first 16 octets travel together in
    // the Transaction Start); no key or secret is.
    assert!(
        contains(&capture, &public[..16]),
        "the public key is in the capture"
    );
    let mut secrets: Vec<Vec<u8>> = vec![
        hex::decode(NET_KEY).expect("hex"),
        hex::decode(&device_key).expect("hex"),
        private.clone(),
    ];
    for k in ["ecdh_secret", "auth_value", "session_key"] {
        secrets.push(hexs(k));
    }
    for secret in &secrets {
        assert!(!contains(&capture, secret), "a secret in the capture");
        assert!(!contains(&plain_capture, secret), "a secret in the capture");
    }
    // And the plain sidecar holds none of the session secrets.
    for k in [
        "provisioner_private_key",
        "ecdh_secret",
        "auth_value",
        "session_key",
        "provisioner_random",
    ] {
        let value = s[k].as_str().expect(k);
        assert!(!plain_keys.contains(value), "{k} in the plain sidecar");
    }
    assert!(
        !plain_keys.contains("7ddb5a3c2f0e4d1b8a6f9c3e2d1b0a99"),
        "static OOB value"
    );
}

#[test]
fn capture_needs_a_writable_path_and_secrets_need_a_capture() {
    let sim = sim();
    let (code, _, err) = meshprov(&[
        "provision",
        LIGHT,
        "--radio",
        &sim,
        "--capture",
        "/nonexistent-dir/x.pcapng",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot write capture /nonexistent-dir/x.pcapng"),
        "{err}"
    );
    let (code, _, err) = meshprov(&["provision", LIGHT, "--radio", &sim, "--capture-secrets"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--capture"), "{err}");
}

#[test]
fn a_failed_session_is_still_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("wrong.pcapng");
    let sim = sim();
    let (code, _, err) = meshprov(&[
        "provision",
        LIGHT,
        "--radio",
        &sim,
        "--auth",
        "static:00000000000000000000000000000000",
        "--capture",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the session was recorded in"), "{err}");
    let keys = json(&std::fs::read_to_string(dir.path().join("wrong.keys.json")).expect("keys"));
    assert_eq!(keys["net_keys"][0]["key"], NET_KEY);
    assert_eq!(keys["device_keys"], serde_json::json!([]), "no node");
    assert!(std::fs::metadata(&file).expect("capture").len() > 500);
}

#[test]
fn scan_lists_every_device_with_bearers_and_oob_information() {
    let building = Building::load(Path::new(BUILDING)).expect("building");
    let (code, out, err) = meshprov(&["scan", "--radio", &sim(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(json).collect();
    let (summary, devices) = lines.split_last().expect("lines");
    assert_eq!(summary["summary"]["devices"], building.devices.len());
    assert_eq!(summary["summary"]["duration_ms"], 10_000);
    assert_eq!(devices.len(), building.devices.len());
    for spec in &building.devices {
        let d = devices
            .iter()
            .find(|d| d["uuid"] == spec.uuid.to_string())
            .unwrap_or_else(|| panic!("{} not listed: {out}", spec.uuid));
        let mut bearers = Vec::new();
        if spec.pb_adv {
            bearers.push("pb-adv");
        }
        if spec.pb_gatt {
            bearers.push("pb-gatt");
        }
        assert_eq!(d["bearers"], serde_json::json!(bearers), "{}", spec.uuid);
        assert_eq!(d["oob_info"], format!("0x{:04x}", spec.oob_info.0));
        assert_eq!(d["oob"], serde_json::json!(spec.oob_info.names()));
        // −50 dBm on the scanner's floor, 15 dB less per floor between.
        let floors = i64::from(spec.floor.abs_diff(building.provisioner.floor));
        assert_eq!(d["rssi"], -50 - 15 * floors, "{}", spec.uuid);
        assert_eq!(d["certificate_based"], false);
        assert_eq!(d["records"], false);
        let hash = spec
            .uri
            .as_deref()
            .map(|u| hex::encode(meshprov::scan::uri_hash(&meshprov::scan::uri_ad_data(u))));
        assert_eq!(d["uri_hash"], serde_json::json!(hash));
    }
    // What the building file says, spelled out for three of them.
    let by = |n: u8| {
        devices
            .iter()
            .find(|d| d["uuid"] == format!("7b2c1a90-0000-4000-8000-00000000000{n}"))
            .expect("listed")
    };
    assert_eq!(
        by(1)["oob"],
        serde_json::json!(["2D machine-readable code", "On device"])
    );
    assert_eq!(by(2)["oob"], serde_json::json!(["Electronic / URI"]));
    assert!(by(2)["uri_hash"].is_string());
    assert_eq!(by(6)["bearers"], serde_json::json!(["pb-gatt"]));

    // Text when stdout is not a terminal: a header, one row per device, a total.
    let (code, out, err) = meshprov(&["scan", "--radio", &sim(), "--duration", "2"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out.lines().collect();
    assert!(rows[0].starts_with("UUID"), "{out}");
    assert_eq!(rows.len(), 1 + building.devices.len() + 1, "{out}");
    assert!(out.contains("2D machine-readable code, On device"), "{out}");
    assert!(out.ends_with("6 unprovisioned devices in 2.0 s\n"), "{out}");
}

#[test]
fn scan_refuses_bad_arguments() {
    for (args, expected) in [
        (
            vec!["scan", "--radio", "nosuch"],
            "unknown radio 'nosuch'; use --radio bluez",
        ),
        (
            vec!["scan", "--radio", "sim:x", "--power-on"],
            "--power-on powers a BlueZ adapter on",
        ),
        (
            vec!["scan", "--radio", "sim:x", "--duration", "0"],
            "--duration",
        ),
        (vec!["scan", "--radio", "sim:x", "--loss", "2"], "--loss"),
        (
            vec!["scan", "--radio", "sim:/nonexistent.toml"],
            "cannot read building file",
        ),
    ] {
        let (code, _, err) = meshprov(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}
