//! `meshprov provision` as an installer or a script runs it: text and JSON output, the store,
//! exit codes and the one-line errors.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const BUILDING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/building.toml");
const LIGHT: &str = "7b2c1a90-0000-4000-8000-000000000001";

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

#[test]
fn provisions_with_default_auth_and_reports() {
    let (code, out, err) = meshprov(&["provision", LIGHT, "--radio", &sim()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Provisioned 7b2c1a90-0000-4000-8000-000000000001 (Lobby light 1)"),
        "{out}"
    );
    assert!(
        out.contains("BTM_ECDH_P256_HMAC_SHA256_AES_CCM"),
        "auto prefers HMAC: {out}"
    );
    assert!(out.contains("Static OOB"), "{out}");
    assert!(out.contains("(not shown; add --show-keys)"), "{out}");
    assert!(
        out.contains("stored in   nowhere"),
        "says the key is not stored: {out}"
    );
}

#[test]
fn json_for_every_kind_of_device() {
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "7b2c1a90-0000-4000-8000-000000000002",
            &["--auth", "output"],
            "Output OOB",
        ),
        (
            "7b2c1a90-0000-4000-8000-000000000003",
            &["--auth", "input", "--algorithm", "cmac"],
            "Input OOB",
        ),
        (
            "7b2c1a90-0000-4000-8000-000000000005",
            &["--auth", "none", "--loss", "0.3"],
            "No OOB",
        ),
        (
            "7b2c1a90-0000-4000-8000-000000000006",
            &["--bearer", "gatt"],
            "Static OOB",
        ),
        (
            "7b2c1a90-0000-4000-8000-000000000004",
            &[
                "--auth",
                "oob-public-key:f465e43ff23d3f1b9dc7dfc04da8758184dbc966204796eccf0d6cf5e16500cc0201d048bcbbd899eeefc424164e33c201c2b010ca6b4d43a8a155cad8ecb279",
            ],
            "Static OOB",
        ),
    ];
    for (uuid, extra, auth) in cases {
        let mut args = vec![
            "provision",
            uuid,
            "--radio",
            BUILDING,
            "--json",
            "--show-keys",
        ];
        let radio = sim();
        args[3] = &radio;
        args.extend_from_slice(extra);
        let (code, out, err) = meshprov(&args);
        assert_eq!(code, 0, "{uuid} {extra:?}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
        assert_eq!(v["result"], "provisioned");
        assert_eq!(v["uuid"], *uuid);
        assert!(v["auth"].as_str().unwrap().starts_with(auth), "{v}");
        assert_eq!(v["device_key"].as_str().unwrap().len(), 32, "{v}");
        assert!(v["time_ms"].as_u64().unwrap() > 0);
    }
}

#[test]
fn store_gets_the_node_and_refuses_it_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hq.db");
    let db = db.to_str().unwrap();
    let (code, _, err) = meshprov(&["net", "create", "hq", "--store", db]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = meshprov(&[
        "provision",
        LIGHT,
        "--radio",
        &sim(),
        "--store",
        db,
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["address"], "0x0001");
    assert_eq!(v["stored"], db);
    assert!(v["device_key"].is_null(), "no key without --show-keys");
    let mode = std::fs::metadata(db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The next device gets the next free address after the light's two elements.
    let (code, out, _) = meshprov(&[
        "provision",
        "7b2c1a90-0000-4000-8000-000000000002",
        "--radio",
        &sim(),
        "--store",
        db,
        "--auth",
        "output",
        "--json",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("\"address\":\"0x0003\""), "{out}");
    let (code, out, _) = meshprov(&["node", "list", "--store", db, "--json"]);
    assert_eq!(code, 0);
    assert!(out.contains(LIGHT) && out.contains("provisioned"), "{out}");
    // Provisioning the same device again is refused with a line that says what to do.
    let (code, _, err) = meshprov(&["provision", LIGHT, "--radio", &sim(), "--store", db]);
    assert_eq!(code, 1);
    assert!(
        err.contains("already node 0x0001") && err.contains("reset the device"),
        "{err}"
    );
}

#[test]
fn failures_say_what_to_do() {
    // Wrong static value: the device rejects the confirmation.
    let (code, out, err) = meshprov(&[
        "provision",
        LIGHT,
        "--radio",
        &sim(),
        "--auth",
        "static:00112233445566778899aabbccddeeff",
        "--json",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("OOB value is probably wrong"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["result"], "failed");
    // No OOB is refused unless asked for.
    let (code, _, err) = meshprov(&[
        "provision",
        "7b2c1a90-0000-4000-8000-000000000005",
        "--radio",
        &sim(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("--auth none"), "{err}");
    // A store that does not exist is not created behind the installer's back.
    let (code, _, err) = meshprov(&[
        "provision",
        LIGHT,
        "--radio",
        &sim(),
        "--store",
        "/tmp/meshprov-no-such.db",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("net create"), "{err}");
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["provision", "7b2c", "--radio", "sim:x"],
            "is not a device UUID",
        ),
        (
            &["provision", LIGHT, "--radio", "carrier-pigeon"],
            "unknown radio 'carrier-pigeon'; use --radio bluez[:hciN]",
        ),
        (
            &["provision", LIGHT, "--radio", "sim:/no/such.toml"],
            "cannot read building file",
        ),
        (
            &[
                "provision",
                LIGHT,
                "--radio",
                "SIM",
                "--auth",
                "static:0011",
            ],
            "give 16 or 32",
        ),
        (
            &["provision", LIGHT, "--radio", "SIM", "--auth", "telepathy"],
            "use auto, none",
        ),
        (
            &[
                "provision",
                LIGHT,
                "--radio",
                "SIM",
                "--auth",
                "oob-public-key:00",
            ],
            "64 bytes",
        ),
        (
            &["provision", LIGHT, "--radio", "SIM", "--auth", "cert"],
            "--auth cert",
        ),
        (
            &["provision", LIGHT, "--radio", "SIM", "--power-on"],
            "--power-on powers a BlueZ adapter on",
        ),
        (
            &["provision", LIGHT, "--radio", "SIM", "--loss", "1.5"],
            "invalid --loss",
        ),
        (
            &[
                "provision",
                "7b2c1a90-0000-4000-8000-0000000000ff",
                "--radio",
                "SIM",
            ],
            "is not in",
        ),
        (
            &[
                "provision",
                "7b2c1a90-0000-4000-8000-000000000006",
                "--radio",
                "SIM",
            ],
            "use --bearer gatt",
        ),
    ];
    let radio = sim();
    for (args, expected) in cases {
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "SIM" { radio.as_str() } else { a })
            .collect();
        let (code, out, err) = meshprov(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

/// The README's worked example: an in-house CA, a device certificate, provisioning with
/// `--auth cert` (and refused against another CA's root).
#[test]
fn certificate_based_provisioning_worked_example() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).to_str().unwrap().to_string();
    let uuid = "7b2c1a90-0000-4000-8000-00000000000a";
    let (code, _, err) = meshprov(&[
        "ca",
        "init",
        &d("acme-ca"),
        "--name",
        "Acme Lighting",
        "--intermediate",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = meshprov(&[
        "ca",
        "issue",
        "--ca",
        &d("acme-ca"),
        "--uuid",
        uuid,
        "--generate",
        &d("dev1"),
    ]);
    assert_eq!(code, 0, "{err}");
    let key = std::fs::read_to_string(d("dev1.key.hex")).unwrap();
    std::fs::write(
        d("building.toml"),
        format!(
            "[[device]]\nuuid = \"{uuid}\"\nname = \"Certified lamp\"\ncertificate = \"dev1.pem\"\nintermediates = [\"acme-ca/intermediate.pem\"]\nprivate_key = \"{}\"\n",
            key.trim()
        ),
    )
    .unwrap();
    let radio = format!("sim:{}", d("building.toml"));
    for bearer in ["adv", "gatt"] {
        let (code, out, err) = meshprov(&[
            "provision",
            uuid,
            "--radio",
            &radio,
            "--auth",
            "cert",
            "--trust",
            &d("acme-ca"),
            "--bearer",
            bearer,
            "--json",
        ]);
        assert_eq!(code, 0, "{bearer}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["public_key_oob"], true);
        assert!(
            v["auth"].as_str().unwrap().starts_with("certificate-based"),
            "{v}"
        );
    }
    let (code, _, _) = meshprov(&["ca", "init", &d("other-ca")]);
    assert_eq!(code, 0);
    let (code, _, err) = meshprov(&[
        "provision",
        uuid,
        "--radio",
        &radio,
        "--auth",
        "cert",
        "--trust",
        &d("other-ca"),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("chain does not end at a trusted root"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// `provision --all`: every device of the example building at once. The GATT-only lamp is
/// skipped on PB-ADV, the legacy plug (no OOB) fails under `--auth auto`, the others are
/// provisioned (output and input OOB through the simulated installer); exit code 1 because
/// one failed. With a store, a second run skips the nodes it holds.
#[test]
fn provision_all_devices_of_a_building() {
    let (code, out, err) = meshprov(&["provision", "--all", "--radio", &sim()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("Provisioned 4 of 6 devices in "), "{out}");
    assert!(out.contains("Skipped 1:"), "{out}");
    assert!(
        out.contains("7b2c1a90-0000-4000-8000-000000000006  not reachable over PB-ADV"),
        "{out}"
    );
    assert!(out.contains("Failed 1:"), "{out}");
    assert!(
        out.contains("7b2c1a90-0000-4000-8000-000000000005  "),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hq.db");
    let db = db.to_str().unwrap();
    let (code, _, err) = meshprov(&["net", "create", "hq", "--store", db]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = meshprov(&[
        "provision",
        "--all",
        "--radio",
        &sim(),
        "--store",
        db,
        "--json",
        "--seed",
        "3",
    ]);
    assert_eq!(code, 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["result"], "failed");
    assert_eq!(
        (v["devices"].as_u64(), v["provisioned"].as_u64()),
        (Some(6), Some(4))
    );
    assert_eq!(v["failed"].as_array().unwrap().len(), 1);
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4);
    assert_eq!(nodes[0]["uuid"], LIGHT);
    let addresses: std::collections::BTreeSet<&str> = nodes
        .iter()
        .map(|n| n["address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses.len(), 4, "{nodes:?}");
    assert!(v["time_ms"].as_u64().unwrap() > 0);
    assert!(v["air"]["adv_events"].as_u64().unwrap() > 0);
    let (code, out, _) = meshprov(&["node", "list", "--store", db, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(out.matches("\"provisioned\"").count(), 4, "{out}");
    // Again: the four nodes are skipped, the plug fails again.
    let (code, out, _) = meshprov(&[
        "provision",
        "--all",
        "--radio",
        &sim(),
        "--store",
        db,
        "--json",
    ]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["skipped"].as_array().unwrap().len(), 5, "{v}");
    assert_eq!(v["provisioned"], 0);
}

#[test]
fn provision_all_refuses_what_cannot_apply_to_every_device() {
    for (args, expected) in [
        (&["--all", LIGHT][..], "cannot be used with"),
        (
            &[
                "--all",
                "--auth",
                "oob-public-key:f465e43ff23d3f1b9dc7dfc04da8758184dbc966204796eccf0d6cf5e16500cc0201d048bcbbd899eeefc424164e33c201c2b010ca6b4d43a8a155cad8ecb279",
            ][..],
            "with --all use --auth auto",
        ),
        (
            &["--all", "--concurrency", "0"][..],
            "--concurrency 0 is not in 1..=64",
        ),
        (
            &["--all", "--concurrency", "65"][..],
            "--concurrency 65 is not in 1..=64",
        ),
        (
            &["--all", "--show-keys"][..],
            "--show-keys prints one device's key",
        ),
        (&["--concurrency", "4", LIGHT][..], "--all"),
    ] {
        let radio = sim();
        let mut full = vec!["provision", "--radio", &radio];
        full.extend_from_slice(args);
        let (code, _, err) = meshprov(&full);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

/// A device that answers its Provisioning Data with Provisioning Failed took no key (MshPRT
/// v1.1 §5.4.4): `meshprov provision` says so with the code, never that its key is stored; the
/// node committed before the Data is voided (no `unconfirmed` node left, its addresses retired,
/// a journal line), so the same command provisions the mended device afresh at a new address.
#[test]
fn a_device_that_refuses_its_provisioning_data_is_not_stored() {
    const REFUSER: &str = "7b2c1a90-0000-4000-8000-0000000000b1";
    let dir = tempfile::tempdir().unwrap();
    let building = |fault: &str| {
        let path = dir.path().join(format!("b{}.toml", fault.len()));
        std::fs::write(
            &path,
            format!(
                "[[device]]\nuuid = \"{REFUSER}\"\nname = \"Refuser\"\nelements = 2\nstatic_oob = \"00112233445566778899aabbccddeeff\"\n{fault}"
            ),
        )
        .unwrap();
        format!("sim:{}", path.display())
    };
    let refusing = building("[device.fault]\nfail_at = \"data\"\nfail_code = \"invalid-data\"\n");
    let mended = building("");
    let db = dir.path().join("hq.db");
    let db = db.to_str().unwrap();
    let (code, _, err) = meshprov(&["net", "create", "hq", "--store", db]);
    assert_eq!(code, 0, "{err}");
    let provision = |radio: &str, json: bool| {
        let mut args = vec!["provision", REFUSER, "--radio", radio, "--store", db];
        if json {
            args.push("--json");
        }
        meshprov(&args)
    };

    let (code, out, err) = provision(&refusing, false);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "no report on stdout: {out}");
    assert!(
        err.contains("refused its Provisioning Data (Provisioning Failed: Invalid Data (0x09))")
            && err.contains("took no key")
            && err.contains("nothing is stored for it")
            && err.contains("addresses 0x0001-0x0002 are retired"),
        "{err}"
    );
    let (code, out, _) = meshprov(&["node", "list", "--store", db, "--json"]);
    assert_eq!(code, 0);
    assert!(
        !out.contains(REFUSER),
        "no node, not even unconfirmed: {out}"
    );
    // Its addresses are retired: the next commit (the same device, once more refusing) gets
    // a new range, voided in turn. In JSON the failure is the same line, with no `stored`.
    let (code, out, _) = provision(&refusing, true);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["result"], "failed");
    assert_eq!(v["uuid"], REFUSER);
    assert!(v.get("stored").is_none(), "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("(0x09)") && error.contains("addresses 0x0003-0x0004 are retired"),
        "{error}"
    );
    let store = meshprov::store::Store::open(std::path::Path::new(db)).unwrap();
    let voids: Vec<_> = store
        .journal()
        .unwrap()
        .into_iter()
        .filter(|j| j.event == "unconfirmed-void")
        .map(|j| j.detail)
        .collect();
    assert_eq!(voids.len(), 2, "{voids:?}");
    assert!(
        voids[0].starts_with("addresses 0001-0002 retired: ")
            && voids[0].contains("Provisioning Failed: Invalid Data (0x09)"),
        "{voids:?}"
    );
    drop(store);

    // Mended, the device is provisioned afresh (not refused as "already node"), at 0x0005.
    let (code, out, err) = provision(&mended, true);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["address"], "0x0005");
    assert_eq!(v["stored"], db);
    let (_, out, _) = meshprov(&["node", "list", "--store", db]);
    assert!(out.contains("0005") && out.contains("provisioned"), "{out}");

    // `--all` lists the refusal with the same words.
    let other = tempfile::tempdir().unwrap();
    let db = other.path().join("all.db");
    let db = db.to_str().unwrap();
    assert_eq!(meshprov(&["net", "create", "all", "--store", db]).0, 0);
    let (code, out, _) = meshprov(&[
        "provision",
        "--all",
        "--radio",
        &refusing,
        "--store",
        db,
        "--json",
    ]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["provisioned"], 0);
    let error = v["failed"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("(0x09)") && error.contains("retired"),
        "{error}"
    );
}
