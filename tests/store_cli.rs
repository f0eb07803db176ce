//! The store commands as a user runs them: `net`, `node` and `cdb`, their output, file modes
//! and exit codes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use meshprov::crypto::DevKey;
use meshprov::store::{Location, NewNode, Store};
use meshprov::uuid::DeviceUuid;

/// Runs meshprov with its data directory inside `home`.
fn meshprov(home: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshprov"))
        .args(args)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("HOME", home)
        .output()
        .expect("run meshprov");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/cdb")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn net_create_uses_the_xdg_default_and_show_hides_keys() {
    let home = tempfile::tempdir().unwrap();
    let key = "7dd7364cd842ad18c17c2b820c84c3d6";
    let (code, out, err) = meshprov(
        home.path(),
        &["net", "create", "HQ North", "--net-key", key],
    );
    assert_eq!(code, 0, "{err}");
    let db = home.path().join("data/meshprov/HQ_North.db");
    assert!(out.contains(&db.display().to_string()), "{out}");
    assert_eq!(mode(&db), 0o600);
    assert!(!out.contains(key));

    // With a single network, commands find it without --store.
    let (code, out, _) = meshprov(home.path(), &["net", "add-app-key", "Lights"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "AppKey 0 'Lights' bound to NetKey 0");
    let (code, out, _) = meshprov(home.path(), &["net", "show", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["name"], "HQ North");
    assert_eq!(v["app_keys"][0]["name"], "Lights");
    assert_eq!(v["unicast_ranges"][0], "0001-7FFF");
    assert!(!out.to_lowercase().contains(key));

    // A second network: now the choice must be made.
    let (code, _, _) = meshprov(home.path(), &["net", "create", "Annex"]);
    assert_eq!(code, 0);
    let (code, _, err) = meshprov(home.path(), &["node", "list"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("meshprov: several networks"), "{err}");
    assert!(err.contains("Annex, HQ_North"), "{err}");
    let (code, _, _) = meshprov(home.path(), &["node", "list", "--network", "Annex"]);
    assert_eq!(code, 0);
    // Creating it again fails.
    let (code, _, err) = meshprov(home.path(), &["net", "create", "Annex"]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "meshprov: the store already holds the network 'Annex' (one network per store)"
    );
}

#[test]
fn bad_arguments_exit_2_and_failures_exit_1() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("x.db");
    let s = db.to_str().unwrap();
    let (code, _, err) = meshprov(
        home.path(),
        &["net", "create", "X", "--net-key", "12", "--store", s],
    );
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        "meshprov: invalid --net-key: NetKey: expected 32 hex digits (16 bytes), got 2"
    );
    let (code, _, err) = meshprov(
        home.path(),
        &[
            "net",
            "create",
            "X",
            "--unicast-range",
            "7000-9000x",
            "--store",
            s,
        ],
    );
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = meshprov(home.path(), &["net", "create", "X", "--store", s]);
    assert_eq!(code, 0);
    let (code, _, err) = meshprov(home.path(), &["node", "show", "zz", "--store", s]);
    assert_eq!(code, 2);
    assert!(err.starts_with("meshprov: 'zz' is not an address"), "{err}");
    let (code, _, err) = meshprov(home.path(), &["node", "show", "0042", "--store", s]);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "meshprov: no node at address 0042");
    let (code, _, err) = meshprov(
        home.path(),
        &["node", "list", "--store", "/nonexistent/y.db"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("no such store"), "{err}");
    let (code, _, _) = meshprov(
        home.path(),
        &["cdb", "export", "--nodes", "1", "out.json", "--store", s],
    );
    assert_eq!(code, 2, "--nodes needs --partial");
}

#[test]
fn node_commands_show_states_and_keys_only_on_request() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("n.db");
    let s = db.to_str().unwrap();
    assert_eq!(
        meshprov(home.path(), &["net", "create", "N", "--store", s]).0,
        0
    );
    {
        let mut st = Store::open(&db).unwrap();
        for (i, elements) in [(1u8, 2u8), (2, 1), (3, 1), (4, 1)] {
            let uuid = DeviceUuid([i; 16]);
            let address = st.allocate_unicast(&uuid, elements).unwrap();
            st.commit_node(&NewNode {
                uuid,
                name: format!("Lamp {i}"),
                address,
                elements,
                device_key: DevKey::from_bytes([0xd0 + i; 16]),
                net_key_index: 0,
                location: Some(Location {
                    building: "HQ".into(),
                    floor: "2".into(),
                    room: format!("20{i}"),
                }),
            })
            .unwrap();
            if i >= 2 {
                st.confirm_node(&uuid).unwrap();
            }
            if i == 3 {
                st.set_config_complete(&uuid, true).unwrap();
            }
        }
    }
    let (code, out, _) = meshprov(home.path(), &["node", "exclude", "5", "--store", s]);
    assert_eq!(code, 0);
    assert!(out.starts_with("node 0005 (04040404-"), "{out}");

    let (code, out, _) = meshprov(home.path(), &["node", "list", "--store", s]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines[1]
            .starts_with("0001-0002  unconfirmed  01010101-0101-0101-0101-010101010101  Lamp 1"),
        "{out}"
    );
    assert!(lines[1].ends_with("HQ/2/201"), "{out}");
    assert!(lines[2].starts_with("0003       provisioned"), "{out}");
    assert!(lines[3].starts_with("0004       configured"), "{out}");
    assert!(lines[4].starts_with("0005       excluded"), "{out}");

    let (_, out, _) = meshprov(home.path(), &["node", "list", "--json", "--store", s]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["state"], "unconfirmed");
    assert_eq!(v[0]["elements"], 2);
    assert!(v[0].get("device_key").is_none());
    assert!(!out.contains("d1d1d1d1"));

    // By the second element's address or by UUID; the key only with --show-keys.
    let (code, out, _) = meshprov(home.path(), &["node", "show", "0002", "--store", s]);
    assert_eq!(code, 0);
    assert!(out.contains("(hidden: give --show-keys)"), "{out}");
    assert!(!out.contains("d1d1d1d1"));
    let (_, out, _) = meshprov(
        home.path(),
        &[
            "node",
            "show",
            "01010101010101010101010101010101",
            "--show-keys",
            "--store",
            s,
        ],
    );
    assert!(out.contains("d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1"), "{out}");
    let (_, out, _) = meshprov(
        home.path(),
        &["node", "show", "1", "--json", "--show-keys", "--store", s],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["device_key"], "d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1");
}

#[test]
fn cdb_export_and_import_from_the_command_line() {
    let home = tempfile::tempdir().unwrap();
    // Import into the default store named after meshName.
    let (code, out, err) = meshprov(home.path(), &["cdb", "import", &fixture("nrf-mesh.json")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imported 'nRF Mesh Network'"), "{out}");
    assert!(out.contains("3 nodes"), "{out}");
    assert!(
        out.contains("added provisioner 'meshprov' with unicast range 199B-7FFF"),
        "{out}"
    );
    let db = home.path().join("data/meshprov/nRF_Mesh_Network.db");
    assert_eq!(mode(&db), 0o600);

    let with_keys = home.path().join("out.json");
    let (code, _, err) = meshprov(home.path(), &["cdb", "export", with_keys.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(mode(&with_keys), 0o600);
    let first = std::fs::read(&with_keys).unwrap();
    // Deterministic: the same database exports the same bytes.
    let (_, stdout, _) = meshprov(home.path(), &["cdb", "export", "-"]);
    assert_eq!(stdout.as_bytes(), first.as_slice());

    let public = home.path().join("public.json");
    let (code, _, _) = meshprov(
        home.path(),
        &[
            "cdb",
            "export",
            "--no-keys",
            "--partial",
            "--nodes",
            "0002,A1B2C3D4-E5F6-4789-8ABC-DEF012345678",
            public.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&public).unwrap();
    assert!(!text.contains("deviceKey"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["nodes"].as_array().unwrap().len(), 2);

    // Another network is refused without --force, naming both.
    let (code, _, err) = meshprov(
        home.path(),
        &[
            "cdb",
            "import",
            &fixture("bluez.json"),
            "--store",
            db.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("give --force to replace it"), "{err}");
    // A malformed file: the error names the file, the field and the problem.
    let bad = home.path().join("bad.json");
    std::fs::write(
        &bad,
        first
            .iter()
            .map(|b| *b as char)
            .collect::<String>()
            .replace("\"0002\"", "\"00g2\""),
    )
    .unwrap();
    let (code, _, err) = meshprov(home.path(), &["cdb", "import", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        format!(
            "meshprov: {}: nodes[1].unicastAddress: 'g' at position 3 is not a hex digit (expected 4 hex digits)",
            bad.display()
        )
    );
}
