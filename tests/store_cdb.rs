//! Mesh CDB JSON import and export: hand-written nRF Mesh and BlueZ style files, round trips,
//! byte-stable exports, and precise errors for malformed files.

use std::path::{Path, PathBuf};

use meshprov::crypto::{DevKey, NetKey};
use meshprov::store::{
    ExportOptions, ImportOptions, Location, NewNode, NodeRef, NodeState, Store, StoreError,
};
use meshprov::uuid::DeviceUuid;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Value, json};

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/cdb")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(6)
}

fn store(dir: &tempfile::TempDir, name: &str) -> (Store, PathBuf) {
    let p = dir.path().join(name);
    (Store::open(&p).expect("open"), p)
}

fn import(s: &mut Store, json: &str) -> Result<meshprov::store::ImportSummary, StoreError> {
    s.import_cdb(json, &ImportOptions::default(), &mut rng())
}

fn uuid(s: &str) -> DeviceUuid {
    s.parse().unwrap()
}

#[test]
fn nrf_mesh_file_imports_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = store(&dir, "n.db");
    let sum = import(&mut s, &fixture("nrf-mesh.json")).expect("import");
    assert_eq!(sum.name, "nRF Mesh Network");
    assert_eq!((sum.net_keys, sum.app_keys, sum.nodes), (2, 2, 3));
    // The file's provisioner owns 0001-199A: meshprov gets the largest free range beside it.
    assert!(sum.provisioner_added);
    assert_eq!(sum.unicast_ranges.len(), 1);
    assert_eq!(
        (sum.unicast_ranges[0].low, sum.unicast_ranges[0].high),
        (0x199b, 0x7fff)
    );

    let net = s.network().unwrap();
    assert_eq!(net.mesh_uuid, uuid("9d6dd0e9-6b2a-4c1a-9e6f-0e3d3b1e8a21"));
    assert_eq!(net.net_keys[1].phase, 1);
    assert_eq!(
        s.net_key(0).unwrap(),
        NetKey::from_hex("7dd7364cd842ad18c17c2b820c84c3d6").unwrap()
    );

    let light = s
        .node(&NodeRef::Uuid(uuid("70cf7c97-32a3-45b6-9149-4810d2e9cbf4")))
        .unwrap();
    assert_eq!((light.address, light.elements), (2, 2));
    assert_eq!(light.state, NodeState::Configured);
    assert_eq!(light.cid, Some(0x0059));
    assert_eq!(
        light.device_key,
        DevKey::from_hex("37C612C4A9E3C52F8B2E7D1A0F9C6B33").unwrap()
    );
    // The second element's address finds the node too.
    assert_eq!(s.node_by_address(3).unwrap().uuid, light.uuid);
    let guest = s.node_by_address(4).unwrap();
    assert_eq!(guest.state, NodeState::Provisioned);
    assert_eq!(guest.net_keys, vec![1]);

    // Vendor models, virtual labels, publications and exclusions come back out.
    let out: Value = serde_json::from_str(&s.export_cdb(&ExportOptions::default()).unwrap())
        .expect("export is JSON");
    let models = &out["nodes"][1]["elements"][0]["models"];
    assert_eq!(models[3]["modelId"], "00590001");
    assert_eq!(
        models[2]["subscribe"],
        json!(["0073E7E4D8B9440FAF8415DF4C56C0E1", "C000"])
    );
    assert_eq!(
        models[2]["publish"]["period"],
        json!({"numberOfSteps": 10, "resolution": 1000})
    );
    assert_eq!(
        out["groups"][0]["address"],
        "0073E7E4D8B9440FAF8415DF4C56C0E1"
    );
    assert_eq!(
        out["networkExclusions"],
        json!([{"ivIndex": 0, "addresses": ["0010", "0011"]}])
    );
    assert_eq!(out["nodes"][1]["features"]["friend"], 2);
    assert_eq!(out["nodes"][1]["heartbeatPub"]["address"], "C001");
    assert_eq!(out["version"], "1.0.1");
    assert_eq!(out["provisioners"][1]["provisionerName"], "meshprov");
}

#[test]
fn allocation_after_import_avoids_nodes_ranges_and_exclusions() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = store(&dir, "n.db");
    // Act as the nRF provisioner: its range 0001-199A holds nodes 0001, 0002-0003, 0004 and
    // the excluded addresses 0010-0011.
    s.import_cdb(
        &fixture("nrf-mesh.json"),
        &ImportOptions {
            as_provisioner: Some(uuid("5C2A9A3B-D1E8-4F1E-9B2C-8BB5A2D3F4C1")),
            ..Default::default()
        },
        &mut rng(),
    )
    .unwrap();
    let a = s
        .allocate_unicast(&uuid("11111111-0000-4000-8000-000000000001"), 11)
        .unwrap();
    assert_eq!(a, 0x0005, "0005-000F is the first gap of 11");
    let b = s
        .allocate_unicast(&uuid("11111111-0000-4000-8000-000000000002"), 1)
        .unwrap();
    assert_eq!(b, 0x0012, "0010 and 0011 are excluded");
}

#[test]
fn bluez_file_imports_with_lower_case_and_millisecond_periods() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = store(&dir, "b.db");
    let sum = import(&mut s, &fixture("bluez.json")).expect("import");
    assert_eq!(sum.nodes, 2);
    assert_eq!(
        (sum.unicast_ranges[0].low, sum.unicast_ranges[0].high),
        (0x7f01, 0x7fff)
    );
    let net = s.network().unwrap();
    assert_eq!(net.iv_index, 5, "BlueZ's private ivIndex is read");
    let n = s.node_by_address(0xaa).unwrap();
    assert_eq!(n.uuid, uuid("0b2c1a90-0000-4000-8000-00000000000a"));
    assert_eq!(n.elements, 2);
    assert_eq!(n.crpl, Some(0x000a));
    let out: Value =
        serde_json::from_str(&s.export_cdb(&ExportOptions::default()).unwrap()).unwrap();
    assert_eq!(out["meshUUID"], "E2F7C8B4-5F1A-4B3D-8C9E-1A2B3C4D5E6F");
    let publish = &out["nodes"][1]["elements"][0]["models"][1]["publish"];
    assert_eq!(
        publish["period"],
        json!({"numberOfSteps": 20, "resolution": 1000})
    );
    assert_eq!(publish["address"], "C001");
    assert_eq!(
        out["ivIndex"], 5,
        "the IV Index travels, under BlueZ's name"
    );
}

#[test]
fn partial_nrf_export_imports() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = store(&dir, "p.db");
    let sum = import(&mut s, &fixture("nrf-mesh-partial.json")).expect("import");
    assert_eq!((sum.net_keys, sum.app_keys, sum.nodes), (1, 1, 1));
    assert_eq!(s.node_by_address(3).unwrap().name, "Kitchen Light");
}

#[test]
fn round_trip_is_stable_and_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["nrf-mesh.json", "bluez.json", "nrf-mesh-partial.json"] {
        let (mut a, _) = store(&dir, &format!("a-{file}.db"));
        import(&mut a, &fixture(file)).unwrap();
        let export_a = a.export_cdb(&ExportOptions::default()).unwrap();
        assert_eq!(
            export_a,
            a.export_cdb(&ExportOptions::default()).unwrap(),
            "{file}: same database, same bytes"
        );
        let me = a.network().unwrap().provisioner_uuid;
        let (mut b, _) = store(&dir, &format!("b-{file}.db"));
        b.import_cdb(
            &export_a,
            &ImportOptions {
                as_provisioner: Some(me),
                ..Default::default()
            },
            &mut rng(),
        )
        .unwrap();
        assert_eq!(a.document().unwrap(), b.document().unwrap(), "{file}");
        assert_eq!(
            export_a,
            b.export_cdb(&ExportOptions::default()).unwrap(),
            "{file}"
        );
        // Importing its own export again changes nothing.
        import(&mut b, &export_a).unwrap();
        assert_eq!(
            export_a,
            b.export_cdb(&ExportOptions::default()).unwrap(),
            "{file}"
        );
    }
}

#[test]
fn meshprov_nodes_round_trip_with_location_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = store(&dir, "m.db");
    s.create_network("HQ", None, &mut rng()).unwrap();
    let dev = uuid("7b2c1a90-0000-4000-8000-00000000000a");
    let a = s.allocate_unicast(&dev, 3).unwrap();
    s.commit_node(&NewNode {
        uuid: dev,
        name: "Lamp, 3".into(),
        address: a,
        elements: 3,
        device_key: DevKey::from_bytes([7; 16]),
        net_key_index: 0,
        location: Some(Location {
            building: "HQ".into(),
            floor: "2".into(),
            room: "204".into(),
        }),
    })
    .unwrap();
    s.set_serial(&dev, Some("SN-0042")).unwrap();
    let out = s.export_cdb(&ExportOptions::default()).unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["nodes"][0]["name"],
        "Lamp, 3 [meshprov serial=SN-0042, building=HQ, floor=2, room=204]"
    );
    // Re-importing over the same store keeps the node unconfirmed (the file cannot say so).
    import(&mut s, &out).unwrap();
    let n = s.node_by_uuid(&dev).unwrap();
    assert_eq!(n.state, NodeState::Unconfirmed);
    assert_eq!(n.name, "Lamp, 3");
    assert_eq!(n.serial.as_deref(), Some("SN-0042"));
    assert_eq!(n.location.as_ref().map(|l| l.room.as_str()), Some("204"));
    // A fresh store cannot share meshprov's range 0001-7FFF with the file's provisioner...
    let (mut f, _) = store(&dir, "f.db");
    let e = import(&mut f, &out).unwrap_err();
    assert!(e.to_string().contains("give --as-provisioner UUID"), "{e}");
    // ... but may take over as that provisioner (the store moved to a new laptop). The node
    // arrives as provisioned, with its location.
    let me = s.network().unwrap().provisioner_uuid;
    f.import_cdb(
        &out,
        &ImportOptions {
            as_provisioner: Some(me),
            ..Default::default()
        },
        &mut rng(),
    )
    .unwrap();
    let n = f.node_by_uuid(&dev).unwrap();
    assert_eq!(n.state, NodeState::Provisioned);
    assert_eq!(n.location.unwrap().building, "HQ");
}

#[test]
fn partial_and_keyless_exports() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = store(&dir, "n.db");
    import(&mut s, &fixture("nrf-mesh.json")).unwrap();
    let out: Value = serde_json::from_str(
        &s.export_cdb(&ExportOptions {
            no_keys: false,
            partial_nodes: Some(vec![NodeRef::Address(4)]),
        })
        .unwrap(),
    )
    .unwrap();
    assert_eq!(out["partial"], true);
    assert_eq!(out["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(out["nodes"][0]["unicastAddress"], "0004");
    // Only the keys the guest switch knows.
    assert_eq!(out["netKeys"].as_array().unwrap().len(), 1);
    assert_eq!(out["netKeys"][0]["index"], 1);
    assert_eq!(
        out["netKeys"][0]["oldKey"],
        "F9E8D7C6B5A4938271605F4E3D2C1B0A"
    );
    assert_eq!(out["appKeys"][0]["index"], 1);

    let text = s
        .export_cdb(&ExportOptions {
            no_keys: true,
            partial_nodes: None,
        })
        .unwrap();
    for secret in [
        "7DD7364CD842AD18C17C2B820C84C3D6",
        "63964771734FBD76E3B40519D1D94A48",
        "37C612C4A9E3C52F8B2E7D1A0F9C6B33",
        "F9E8D7C6B5A4938271605F4E3D2C1B0A",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into a --no-keys export"
        );
    }
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["nodes"][0].get("deviceKey").is_none());
    // Such a file cannot be imported: it says which key is missing.
    let (mut t, _) = store(&dir, "t.db");
    let e = import(&mut t, &text).unwrap_err().to_string();
    assert_eq!(
        e,
        "netKeys[0].key: missing (a file exported without keys cannot be imported)"
    );
}

#[test]
fn refuses_another_network_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = store(&dir, "n.db");
    import(&mut s, &fixture("nrf-mesh.json")).unwrap();
    let e = import(&mut s, &fixture("bluez.json")).unwrap_err();
    assert!(matches!(e, StoreError::DifferentNetwork { .. }), "{e}");
    assert!(e.to_string().contains("give --force"), "{e}");
    // Nothing changed.
    assert_eq!(s.network().unwrap().name, "nRF Mesh Network");
    s.import_cdb(
        &fixture("bluez.json"),
        &ImportOptions {
            force: true,
            ..Default::default()
        },
        &mut rng(),
    )
    .unwrap();
    assert_eq!(s.network().unwrap().name, "BT Mesh");
    assert_eq!(s.nodes().unwrap().len(), 2);
}

#[test]
fn refuses_to_lose_a_node_of_the_same_network() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = store(&dir, "n.db");
    import(&mut s, &fixture("nrf-mesh.json")).unwrap();
    // The partial file lacks the provisioner node and the guest switch.
    let e = import(&mut s, &fixture("nrf-mesh-partial.json"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "the file lacks node 0001 (5c2a9a3b-d1e8-4f1e-9b2c-8bb5a2d3f4c1) that the store has; give --force to import anyway"
    );
    let mut v: Value = serde_json::from_str(&fixture("nrf-mesh.json")).unwrap();
    v["nodes"][1]["deviceKey"] = json!("00000000000000000000000000000000");
    let e = import(&mut s, &v.to_string()).unwrap_err().to_string();
    assert!(
        e.starts_with("the file has another device key for node 0002"),
        "{e}"
    );
    assert_eq!(s.nodes().unwrap().len(), 3);
}

/// A change to the nRF fixture that makes it malformed.
type Edit = Box<dyn FnOnce(&mut Value)>;

/// Edits the nRF fixture with `edit` and returns the import error.
fn error_of(edit: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(&fixture("nrf-mesh.json")).unwrap();
    edit(&mut v);
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = store(&dir, "e.db");
    let e = import(&mut s, &v.to_string()).expect_err("must be refused");
    assert!(
        s.network().is_err(),
        "a refused import leaves the store empty"
    );
    e.to_string()
}

#[test]
fn malformed_files_give_precise_errors() {
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|v| v["nodes"][1]["deviceKey"] = json!("37C612C4A9E3C52F8B2E7D1A0F9C6B3G")),
            "nodes[1].deviceKey: 'G' at position 32 is not a hex digit (expected 32 hex digits, 16 bytes)",
        ),
        (
            Box::new(|v| v["netKeys"][0]["key"] = json!("7DD7364CD842AD18C17C2B820C84C3D")),
            "netKeys[0].key: expected 32 hex digits (16 bytes), got 31",
        ),
        (
            Box::new(|v| {
                v["provisioners"].as_array_mut().unwrap().push(json!({
                    "provisionerName": "Other",
                    "UUID": "00000000-0000-4000-8000-000000000001",
                    "allocatedUnicastRange": [{"lowAddress": "1000", "highAddress": "2000"}],
                }))
            }),
            "provisioners[1].allocatedUnicastRange[0]: unicast range 1000-2000 overlaps provisioners[0].allocatedUnicastRange[0] (0001-199A)",
        ),
        (
            Box::new(|v| v["nodes"][2]["unicastAddress"] = json!("0003")),
            "nodes[2].unicastAddress: addresses 0003-0003 overlap nodes[1] (0002-0003): an address is used twice",
        ),
        (
            Box::new(|v| v["nodes"][2]["netKeys"][0]["index"] = json!(7)),
            "nodes[2].netKeys[0].index: unknown NetKey index 7 (not in netKeys)",
        ),
        (
            Box::new(|v| v["appKeys"][1]["boundNetKey"] = json!(9)),
            "appKeys[1].boundNetKey: unknown NetKey index 9 (not in netKeys)",
        ),
        (
            Box::new(|v| v["nodes"][1]["elements"][0]["models"][2]["bind"] = json!([0, 5])),
            "nodes[1].elements[0].models[2].bind: unknown AppKey index 5 (not in appKeys)",
        ),
        (
            Box::new(|v| v["nodes"][1]["elements"][0]["models"][2]["publish"]["index"] = json!(3)),
            "nodes[1].elements[0].models[2].publish.index: unknown AppKey index 3 (not in appKeys)",
        ),
        (
            Box::new(|v| v["netKeys"][1]["index"] = json!(0)),
            "netKeys[1].index: NetKey index 0 appears twice",
        ),
        (
            Box::new(|v| v["netKeys"][0]["index"] = json!(4096)),
            "netKeys[0].index: 4096 is out of range (0 to 4095)",
        ),
        (
            Box::new(|v| v["nodes"][0]["UUID"] = json!("70CF7C97-32A3-45B6-9149-4810D2E9CBF4")),
            "nodes[1].UUID: 70cf7c97-32a3-45b6-9149-4810d2e9cbf4 is also the UUID of nodes[0]",
        ),
        (
            Box::new(|v| {
                v["provisioners"][0]["allocatedUnicastRange"][0]["highAddress"] = json!("8000")
            }),
            "provisioners[0].allocatedUnicastRange[0]: 0001-8000 is outside 0001-7FFF",
        ),
        (
            Box::new(|v| v["nodes"][1]["elements"][0]["models"][3]["modelId"] = json!("0059001")),
            "nodes[1].elements[0].models[3].modelId: expected 4 hex digits (SIG model) or 8 (vendor model), got 7",
        ),
        (
            Box::new(|v| v["nodes"][2]["security"] = json!("medium")),
            "nodes[2].security: 'medium' is not a security level (expected \"secure\" or \"insecure\")",
        ),
        (
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("meshUUID");
            }),
            "meshUUID: missing",
        ),
        (
            Box::new(|v| v["nodes"][1]["elements"][1]["index"] = json!(2)),
            "nodes[1].elements: element indexes must be 0 to 1 without gaps or repeats",
        ),
        (
            Box::new(|v| v["nodes"][1]["configComplete"] = json!("yes")),
            "nodes[1].configComplete: expected true or false, found a string",
        ),
        (
            Box::new(|v| {
                v["netKeys"][1]
                    .as_object_mut()
                    .unwrap()
                    .remove("oldKey")
                    .map(drop)
                    .unwrap_or(())
            }),
            "netKeys[1].oldKey: missing: a NetKey in key refresh phase 1 needs its old key",
        ),
        (
            Box::new(|v| v["groups"][0]["address"] = json!("0005")),
            "groups[0].address: 0005 is not a group address (C000-FEFF) or a virtual label",
        ),
        (
            Box::new(|v| v["version"] = json!("2.0.0")),
            "version: CDB version 2.0.0 is not supported (1.0.0 and 1.0.1 are)",
        ),
    ];
    for (edit, expected) in cases {
        assert_eq!(error_of(edit), expected);
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = store(&dir, "j.db");
    let e = import(&mut s, "{\"meshUUID\": ").unwrap_err().to_string();
    assert!(e.starts_with("not valid JSON: "), "{e}");
}
