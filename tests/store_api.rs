//! The store as the provisioning engine uses it: write-ahead node records, address allocation,
//! reservations, SEQ blocks, file modes, schema versions.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use meshprov::crypto::{DevKey, NetKey};
use meshprov::store::{
    self, NetworkOptions, NewNode, NodeRef, NodeState, Range16, Store, StoreError,
};
use meshprov::uuid::DeviceUuid;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(6)
}

fn dev(n: u32) -> DeviceUuid {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&n.to_be_bytes());
    b[6] = 0x40;
    b[8] = 0x80;
    DeviceUuid(b)
}

fn new_node(uuid: DeviceUuid, address: u16, elements: u8) -> NewNode {
    NewNode {
        uuid,
        name: format!("dev {}", uuid.short()),
        address,
        elements,
        device_key: DevKey::from_bytes([uuid.0[3]; 16]),
        net_key_index: 0,
        location: None,
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn with_network(dir: &tempfile::TempDir) -> Store {
    let mut s = Store::open(&dir.path().join("net.db")).unwrap();
    s.create_network("Test", None, &mut rng()).unwrap();
    s
}

#[test]
fn create_network_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("net.db")).unwrap();
    assert!(matches!(s.network(), Err(StoreError::NoNetwork)));
    let key = NetKey::from_hex("7dd7364cd842ad18c17c2b820c84c3d6").unwrap();
    let info = s
        .create_network("HQ", Some(key.clone()), &mut rng())
        .unwrap();
    assert_eq!(info.name, "HQ");
    assert_eq!(info.iv_index, 0);
    assert!(!info.iv_update);
    assert_eq!(info.net_keys.len(), 1);
    assert_eq!((info.net_keys[0].index, info.net_keys[0].phase), (0, 0));
    assert_eq!(
        info.unicast_ranges,
        vec![Range16 {
            low: 1,
            high: 0x7fff
        }]
    );
    assert_eq!(s.net_key(0).unwrap(), key);
    assert!(matches!(s.net_key(1), Err(StoreError::UnknownNetKey(1))));
    assert!(matches!(
        s.create_network("Again", None, &mut rng()),
        Err(StoreError::NetworkExists { .. })
    ));
    let mut r = rng();
    let i = s.add_app_key("Lights", 0, None, &mut r).unwrap();
    let j = s.add_app_key("Blinds", 0, None, &mut r).unwrap();
    assert_eq!((i, j), (0, 1));
    assert_ne!(s.app_key(0).unwrap(), s.app_key(1).unwrap());
    assert!(matches!(
        s.add_app_key("x", 3, None, &mut rng()),
        Err(StoreError::UnknownNetKey(3))
    ));
}

#[test]
fn write_ahead_life_of_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.db");
    {
        let mut s = with_network(&dir);
        let a = s.allocate_unicast(&dev(1), 3).unwrap();
        assert_eq!(a, 1);
        // Idempotent while the session runs.
        assert_eq!(s.allocate_unicast(&dev(1), 3).unwrap(), 1);
        assert_eq!(s.allocate_unicast(&dev(2), 1).unwrap(), 4);
        s.commit_node(&new_node(dev(1), 1, 3)).unwrap();
        assert_eq!(
            s.node_by_uuid(&dev(1)).unwrap().state,
            NodeState::Unconfirmed
        );
        // The process dies here, before Provisioning Complete.
    }
    let mut s = Store::open(&path).unwrap();
    let n = s.node_by_address(2).unwrap();
    assert_eq!(n.uuid, dev(1));
    assert_eq!(n.state, NodeState::Unconfirmed, "kept, not forgotten");
    assert_eq!(n.device_key, DevKey::from_bytes([1; 16]));
    // Its addresses and the other reservation are never handed out again.
    assert_eq!(s.allocate_unicast(&dev(3), 1).unwrap(), 5);
    assert!(matches!(
        s.allocate_unicast(&dev(1), 3),
        Err(StoreError::UuidInUse {
            address: 1,
            state: NodeState::Unconfirmed,
            ..
        })
    ));
    s.confirm_node(&dev(1)).unwrap();
    assert_eq!(
        s.node_by_uuid(&dev(1)).unwrap().state,
        NodeState::Provisioned
    );
    s.set_config_complete(&dev(1), true).unwrap();
    assert_eq!(
        s.node_by_uuid(&dev(1)).unwrap().state,
        NodeState::Configured
    );
    // A session that fails before commit_node gives its range back.
    s.release_reservation(&dev(2)).unwrap();
    assert_eq!(s.allocate_unicast(&dev(4), 1).unwrap(), 4);
    // Exclusion keeps the node and its addresses.
    let ex = s.exclude_node(3).unwrap();
    assert_eq!(ex.uuid, dev(1));
    assert_eq!(s.node_by_uuid(&dev(1)).unwrap().state, NodeState::Excluded);
    assert_eq!(s.allocate_unicast(&dev(5), 1).unwrap(), 6);
    assert_eq!(s.nodes().unwrap().len(), 1);
    assert_eq!(
        s.node(&NodeRef::Uuid(dev(1))).unwrap(),
        s.node(&"0002".parse().unwrap()).unwrap()
    );
}

#[test]
fn commit_refuses_addresses_that_are_not_the_devices() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = with_network(&dir);
    s.allocate_unicast(&dev(1), 2).unwrap(); // 0001-0002
    // Someone else's reservation.
    let e = s.commit_node(&new_node(dev(2), 2, 1)).unwrap_err();
    assert!(matches!(e, StoreError::AddressNotReserved { .. }), "{e}");
    // Its own reservation with another element count.
    assert!(s.commit_node(&new_node(dev(1), 1, 3)).is_err());
    // Free addresses without a reservation are accepted.
    s.commit_node(&new_node(dev(3), 10, 2)).unwrap();
    // ... but not twice, and not overlapping.
    assert!(matches!(
        s.commit_node(&new_node(dev(3), 20, 1)),
        Err(StoreError::UuidInUse { .. })
    ));
    assert!(s.commit_node(&new_node(dev(4), 11, 1)).is_err());
    // A NetKey the network lacks is refused.
    assert!(matches!(
        s.commit_node(&NewNode {
            net_key_index: 9,
            ..new_node(dev(5), 30, 1)
        }),
        Err(StoreError::UnknownNetKey(9))
    ));
}

#[test]
fn exhaustion_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("small.db")).unwrap();
    s.create_network_with(
        "Small",
        None,
        &NetworkOptions {
            unicast: Range16 {
                low: 0x0100,
                high: 0x0104,
            },
            ..Default::default()
        },
        &mut rng(),
    )
    .unwrap();
    assert_eq!(s.allocate_unicast(&dev(1), 3).unwrap(), 0x0100);
    let e = s.allocate_unicast(&dev(2), 3).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no 3 consecutive free unicast addresses left in this provisioner's ranges (0100-0104)"
    );
    assert_eq!(s.allocate_unicast(&dev(2), 2).unwrap(), 0x0103);
    assert!(s.allocate_unicast(&dev(3), 1).is_err());
    assert!(matches!(
        s.allocate_unicast(&dev(3), 0),
        Err(StoreError::InvalidArgument(_))
    ));
}

#[test]
fn seq_blocks_never_repeat_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.db");
    let mut s = with_network(&dir);
    assert_eq!(s.reserve_seq(0x7fff, 100).unwrap(), 0..100);
    assert_eq!(s.reserve_seq(0x7fff, 100).unwrap(), 100..200);
    assert_eq!(s.reserve_seq(0x7ffe, 10).unwrap(), 0..10);
    drop(s);
    let mut s = Store::open(&path).unwrap();
    assert_eq!(s.reserve_seq(0x7fff, 50).unwrap(), 200..250);
    assert_eq!(
        s.reserve_seq(0x7fff, (1 << 24) - 250).unwrap(),
        250..(1 << 24)
    );
    assert!(matches!(
        s.reserve_seq(0x7fff, 1),
        Err(StoreError::SeqExhausted { element: 0x7fff })
    ));
    // A new IV Index starts SEQ over.
    s.set_iv_index(1, false).unwrap();
    assert_eq!(s.reserve_seq(0x7fff, 1).unwrap(), 0..1);
    assert!(s.set_iv_index(0, false).is_err());
}

#[test]
fn files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/net.db");
    let mut s = Store::open(&path).unwrap();
    s.create_network("P", None, &mut rng()).unwrap();
    s.allocate_unicast(&dev(1), 1).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("sub/dir")), 0o700);
    let wal = dir.path().join("sub/dir/net.db-wal");
    let shm = dir.path().join("sub/dir/net.db-shm");
    assert!(
        wal.exists() && shm.exists(),
        "WAL mode keeps its files while open"
    );
    assert_eq!(mode(&wal), 0o600);
    assert_eq!(mode(&shm), 0o600);
    drop(s);
    // An existing store that others could read is tightened when opened.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _s = Store::open(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    // Exports: 0600 with keys.
    let out = dir.path().join("net.json");
    store::write_atomically(&out, b"{}", true).unwrap();
    assert_eq!(mode(&out), 0o600);
}

#[test]
fn schema_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.db");
    drop(Store::open(&path).unwrap());
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: u32 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, store::SCHEMA_VERSION);
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    let e = Store::open(&path).unwrap_err();
    assert!(
        matches!(e, StoreError::SchemaTooNew { found: 99, .. }),
        "{e}"
    );
}

#[test]
fn journal_and_node_refs() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = with_network(&dir);
    let a = s
        .journal_append(Some(&dev(1)), "session-start", "PB-ADV")
        .unwrap();
    let b = s.journal_append(None, "rollout-end", "").unwrap();
    assert!(b > a);
    let j = s.journal().unwrap();
    assert_eq!(j.len(), 2);
    assert_eq!(j[0].uuid, Some(dev(1)));
    assert_eq!(j[1].event, "rollout-end");
    assert_eq!("0x0a".parse::<NodeRef>().unwrap(), NodeRef::Address(10));
    assert_eq!(
        "00000001-0000-4000-8000-000000000000"
            .parse::<NodeRef>()
            .unwrap(),
        NodeRef::Uuid(dev(1))
    );
    assert!("8000".parse::<NodeRef>().is_err());
    assert!("0".parse::<NodeRef>().is_err());
    assert!(s.check_integrity().is_ok());
}

#[test]
fn default_paths_follow_xdg() {
    // Only the pure part: the file name of a network.
    assert_eq!(store::file_stem("Floor 3/West"), "Floor_3_West");
}

/// A device provisioned afresh while its earlier node is `unconfirmed` (it was heard as
/// unprovisioned): its new range avoids the earlier one, and only its new commit — made once
/// the new session authenticated the device — voids the earlier node, in one transaction. A
/// superseding session that never commits (a spoofed beacon: the real device holds its keys
/// and takes no link) leaves the earlier node and its key as they were. A confirmed node is
/// never superseded.
#[test]
fn a_superseding_commit_voids_the_unconfirmed_node_it_replaces_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = with_network(&dir);
    let (u, v) = (dev(1), dev(2));
    assert_eq!(s.allocate_unicast(&u, 2).unwrap(), 1);
    s.commit_node(&new_node(u, 1, 2)).unwrap(); // unconfirmed, 0001-0002
    assert_eq!(s.allocate_unicast(&v, 1).unwrap(), 3);
    s.commit_node(&new_node(v, 3, 1)).unwrap();
    s.confirm_node(&v).unwrap(); // provisioned, 0003
    // A plain allocation or commit still refuses the UUID.
    assert!(matches!(
        s.allocate_unicast(&u, 2),
        Err(StoreError::UuidInUse { .. })
    ));
    // A superseding session that gives up before its commit: nothing changes.
    let b = s.allocate_unicast_superseding(&u, 2).unwrap();
    assert_eq!(b, 4, "the new range avoids 0001-0002 and 0003");
    s.release_reservation(&u).unwrap();
    let n = s.node_by_uuid(&u).unwrap();
    assert_eq!((n.address, n.state), (1, NodeState::Unconfirmed));
    assert_eq!(
        n.device_key,
        new_node(u, 1, 2).device_key,
        "its key is kept"
    );
    // A superseding session that commits: the earlier node voided, the new one committed.
    let b = s.allocate_unicast_superseding(&u, 2).unwrap();
    let mut fresh = new_node(u, b, 2);
    fresh.device_key = DevKey::from_bytes([0x5a; 16]);
    s.commit_node_superseding(&fresh, "authenticated anew")
        .unwrap();
    let n = s.node_by_uuid(&u).unwrap();
    assert_eq!((n.address, n.state), (b, NodeState::Unconfirmed));
    assert_eq!(n.device_key, fresh.device_key);
    let voids: Vec<String> = s
        .journal()
        .unwrap()
        .into_iter()
        .filter(|j| j.uuid == Some(u) && j.event == "unconfirmed-void")
        .map(|j| j.detail)
        .collect();
    assert_eq!(
        voids,
        vec!["addresses 0001-0002 retired: authenticated anew".to_string()]
    );
    // Retired, not released: another device never gets 0001-0002.
    assert_eq!(s.allocate_unicast(&dev(3), 2).unwrap(), b + 2);
    // A confirmed node is never superseded.
    assert!(matches!(
        s.allocate_unicast_superseding(&v, 1),
        Err(StoreError::UuidInUse { .. })
    ));
    assert!(matches!(
        s.commit_node_superseding(&new_node(v, 20, 1), "no"),
        Err(StoreError::UuidInUse { .. })
    ));
    assert_eq!(s.node_by_uuid(&v).unwrap().state, NodeState::Provisioned);
}
