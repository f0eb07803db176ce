//! Secrets at rest (issue 11 item 3): an encrypted store's keys are sealed, bound to their rows,
//! opened only with the passphrase, and the database refuses a plaintext key in it; the
//! passphrase changes and comes off; the CLI takes the passphrase from `--passphrase-fd`,
//! `MESHPROV_PASSPHRASE` or nowhere (exit 2, saying how), and `net show` tells an encrypted
//! store from a plain one (which says nothing new).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use meshprov::crypto::{AppKey, DevKey, NetKey};
use meshprov::store::{KdfParams, NewNode, Passphrase, SEALED_LEN, Store, StoreError};
use meshprov::uuid::DeviceUuid;

const PASS: &str = "correct horse battery staple";

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s.into())
}

/// A store with two NetKeys' worth of material: NetKey 0 (refresh under way, so old and new),
/// two AppKeys (old and new), two nodes.
fn populated(path: &Path) -> Store {
    let mut s = Store::open(path).unwrap();
    let mut rng = meshprov::store::os_rng().unwrap();
    s.create_network("enc", Some(NetKey::from_bytes([0x11; 16])), &mut rng)
        .unwrap();
    s.add_app_key("a", 0, Some(AppKey::from_bytes([0x21; 16])), &mut rng)
        .unwrap();
    s.add_app_key("b", 0, Some(AppKey::from_bytes([0x22; 16])), &mut rng)
        .unwrap();
    for i in 1..=2u8 {
        let uuid = DeviceUuid([i; 16]);
        let address = s.allocate_unicast(&uuid, i).unwrap();
        s.commit_node(&NewNode {
            uuid,
            name: format!("n{i}"),
            address,
            elements: i,
            device_key: DevKey::from_bytes([0x30 + i; 16]),
            net_key_index: 0,
            location: None,
        })
        .unwrap();
    }
    s.begin_key_refresh(
        0,
        &NetKey::from_bytes([0x12; 16]),
        &[
            (0, AppKey::from_bytes([0x23; 16])),
            (1, AppKey::from_bytes([0x24; 16])),
        ],
        "{}",
    )
    .unwrap();
    s
}

const KEY_BYTES: [u8; 8] = [0x11, 0x12, 0x21, 0x22, 0x23, 0x24, 0x31, 0x32];

fn files_hold_a_key(path: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let f = format!("{}{suffix}", path.display());
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        for b in KEY_BYTES {
            if bytes.windows(16).any(|w| w == [b; 16]) {
                found.push(format!("{b:02x}… in {f}"));
            }
        }
    }
    found
}

#[test]
fn encrypted_keys_open_only_with_the_passphrase_and_are_the_same_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let mut s = populated(&path);
    let before = s.export_cdb(&Default::default()).unwrap();
    assert!(!files_hold_a_key(&path).is_empty(), "the check cannot fail");
    let o = s.encrypt(&pass(PASS), &KdfParams::TEST_ONLY_CHEAP).unwrap();
    // NetKey + old, 2 AppKeys + olds, 2 device keys.
    assert_eq!(o.keys, 8);
    assert!(o.scrubbed);
    // Even with the connection open (WAL and all), no plaintext key is in the files.
    assert_eq!(files_hold_a_key(&path), Vec::<String>::new());
    assert_eq!(s.export_cdb(&Default::default()).unwrap(), before);
    assert!(matches!(
        s.encrypt(&pass(PASS), &KdfParams::TEST_ONLY_CHEAP),
        Err(StoreError::InvalidArgument(m)) if m.contains("already encrypted")
    ));
    drop(s);

    let mut s = Store::open(&path).unwrap();
    assert!(s.is_locked());
    // What needs no key works while locked.
    let info = s.network().unwrap();
    assert_eq!(
        info.keys_at_rest.as_ref().unwrap().kdf,
        KdfParams::TEST_ONLY_CHEAP
    );
    assert!(meshprov::store::network_text(&info).contains("Keys at rest  encrypted"));
    // A key does not: an error that says how to give the passphrase.
    let e = s.net_key(0).unwrap_err();
    assert!(matches!(e, StoreError::Locked { .. }));
    assert!(e.to_string().contains("MESHPROV_PASSPHRASE"), "{e}");
    assert!(matches!(s.nodes(), Err(StoreError::Locked { .. })));
    let mut rng = meshprov::store::os_rng().unwrap();
    assert!(matches!(
        s.add_app_key("c", 0, None, &mut rng),
        Err(StoreError::Locked { .. })
    ));
    // A wrong passphrase is an error at once, never garbage keys.
    let e = s
        .unlock(&pass("correct horse battery stapler"))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("wrong passphrase for {}", path.display())
    );
    assert!(s.is_locked());
    let key = s.unlock(&pass(PASS)).unwrap();
    assert_eq!(s.export_cdb(&Default::default()).unwrap(), before);
    assert_eq!(
        s.key_refresh(0).unwrap().unwrap().old_net_key,
        NetKey::from_bytes([0x11; 16])
    );
    // A second connection opens with the derived key, without Argon2id.
    let mut second = Store::open(&path).unwrap();
    second.unlock_with_key(&key).unwrap();
    assert_eq!(second.net_key(0).unwrap(), NetKey::from_bytes([0x12; 16]));
    assert_eq!(format!("{key:?}"), "StoreKey(…)");

    // Writes seal too, and the key refresh ends as usual.
    let uuid = DeviceUuid([9; 16]);
    let address = s.allocate_unicast(&uuid, 1).unwrap();
    s.commit_node(&NewNode {
        uuid,
        name: "late".into(),
        address,
        elements: 1,
        device_key: DevKey::from_bytes([0x31; 16]),
        net_key_index: 0,
        location: None,
    })
    .unwrap();
    s.finish_key_refresh(0).unwrap();
    assert_eq!(
        s.node_by_uuid(&uuid).unwrap().device_key,
        DevKey::from_bytes([0x31; 16])
    );
    assert_eq!(files_hold_a_key(&path), Vec::<String>::new());
}

#[test]
fn a_sealed_key_moved_to_another_row_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let mut s = populated(&path);
    s.encrypt(&pass(PASS), &KdfParams::TEST_ONLY_CHEAP).unwrap();
    drop(s);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        // Node 2 gets node 1's sealed device key; AppKey 1 gets AppKey 0's; NetKey 0's old key
        // becomes its key.
        c.execute_batch(
            "UPDATE nodes SET device_key = (SELECT device_key FROM nodes WHERE uuid = X'01010101010101010101010101010101')
                 WHERE uuid = X'02020202020202020202020202020202';
             UPDATE app_keys SET key = (SELECT key FROM app_keys WHERE idx = 0) WHERE idx = 1;
             UPDATE net_keys SET key = old_key WHERE idx = 0;",
        )
        .unwrap();
    }
    let mut s = Store::open(&path).unwrap();
    s.unlock(&pass(PASS)).unwrap();
    for e in [
        s.node_by_uuid(&DeviceUuid([2; 16])).unwrap_err(),
        s.app_key(1).unwrap_err(),
        s.net_key(0).unwrap_err(),
    ] {
        assert!(
            matches!(&e, StoreError::Corrupt(m) if m.contains("does not open")),
            "{e}"
        );
    }
    // The rows left alone still open.
    assert_eq!(
        s.node_by_uuid(&DeviceUuid([1; 16])).unwrap().device_key,
        DevKey::from_bytes([0x31; 16])
    );
    assert_eq!(s.app_key(0).unwrap(), AppKey::from_bytes([0x23; 16]));
}

#[test]
fn the_database_refuses_plaintext_in_an_encrypted_store_and_sealed_keys_in_a_plain_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let mut s = populated(&path);
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    let sealed_len = format!("zeroblob({SEALED_LEN})");
    assert!(
        c.execute(&format!("UPDATE net_keys SET key = {sealed_len}"), [])
            .is_err()
    );
    drop(c);
    s = Store::open(&path).unwrap();
    s.encrypt(&pass(PASS), &KdfParams::TEST_ONLY_CHEAP).unwrap();
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    for sql in [
        "UPDATE net_keys SET key = zeroblob(16)",
        "UPDATE net_keys SET old_key = zeroblob(16)",
        "UPDATE app_keys SET key = zeroblob(16) WHERE idx = 0",
        "INSERT INTO app_keys (idx, name, bound_net_key, key) VALUES (9, 'x', 0, zeroblob(16))",
        "UPDATE nodes SET device_key = zeroblob(16)",
        "UPDATE nodes SET device_key = zeroblob(20)",
    ] {
        let e = c.execute(sql, []).unwrap_err().to_string();
        assert!(
            e.contains("sealed in an encrypted store") || e.contains("CHECK"),
            "{sql}: {e}"
        );
    }
}

#[test]
fn the_passphrase_changes_and_comes_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let mut s = populated(&path);
    let before = s.export_cdb(&Default::default()).unwrap();
    assert!(matches!(
        s.change_passphrase(&pass(PASS), &KdfParams::TEST_ONLY_CHEAP),
        Err(StoreError::InvalidArgument(m)) if m.contains("not encrypted")
    ));
    assert!(
        s.encrypt(&pass("short"), &KdfParams::TEST_ONLY_CHEAP)
            .unwrap_err()
            .to_string()
            .contains("at least 8")
    );
    s.encrypt(&pass(PASS), &KdfParams::TEST_ONLY_CHEAP).unwrap();
    let kdf = KdfParams {
        memory_kib: 128,
        ..KdfParams::TEST_ONLY_CHEAP
    };
    s.change_passphrase(&pass("another passphrase"), &kdf)
        .unwrap();
    drop(s);
    let mut s = Store::open(&path).unwrap();
    assert_eq!(s.keys_at_rest().unwrap().kdf, kdf);
    assert!(matches!(
        s.unlock(&pass(PASS)),
        Err(StoreError::WrongPassphrase { .. })
    ));
    assert!(matches!(s.decrypt(), Err(StoreError::Locked { .. })));
    s.unlock(&pass("another passphrase")).unwrap();
    assert_eq!(s.export_cdb(&Default::default()).unwrap(), before);
    let o = s.decrypt().unwrap();
    assert_eq!(o.keys, 8);
    assert!(s.keys_at_rest().is_none());
    drop(s);
    let s = Store::open(&path).unwrap();
    assert!(!s.is_locked());
    assert!(s.network().unwrap().keys_at_rest.is_none());
    assert_eq!(s.export_cdb(&Default::default()).unwrap(), before);
}

// --- the command line ---

/// Runs meshprov with `env` (MESHPROV_PASSPHRASE removed unless given) and `stdin`; killed by
/// its pid after 60 s.
fn cli(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meshprov"));
    c.args(args)
        .current_dir(dir)
        .env_remove("MESHPROV_PASSPHRASE")
        .env_remove("MESHPROV_NEW_PASSPHRASE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(match stdin {
        Some(p) => Stdio::from(std::fs::File::open(p).unwrap()),
        None => Stdio::null(),
    });
    let mut child = c.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("meshprov {args:?} hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn cli_encrypt_show_unlock_change_and_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cheap = ["--kdf-memory-kib", "64", "--kdf-time", "1"];
    assert!(
        cli(d, &["net", "create", "hq", "--store", "hq.db"], &[], None)
            .status
            .success()
    );
    let plain_show = out(&cli(d, &["net", "show", "--store", "hq.db"], &[], None));
    let plain_json = out(&cli(
        d,
        &["net", "show", "--json", "--store", "hq.db"],
        &[],
        None,
    ));
    // A plain store says nothing about encryption.
    assert!(!plain_show.contains("Keys at rest"), "{plain_show}");
    assert!(!plain_json.contains("keys_at_rest"), "{plain_json}");

    // No passphrase anywhere, no terminal: exit 2 and how to give one.
    let mut a = vec!["net", "encrypt", "--store", "hq.db"];
    a.extend(cheap);
    let o = cli(d, &a, &[], None);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("MESHPROV_PASSPHRASE"), "{}", err(&o));
    // From a file descriptor (here standard input, fd 0, a file).
    std::fs::write(d.join("p"), format!("{PASS}\nignored\n")).unwrap();
    a.extend(["--passphrase-fd", "0"]);
    let o = cli(d, &a, &[], Some(&d.join("p")));
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("keys sealed"), "{}", out(&o));
    assert!(!out(&o).contains(PASS) && !err(&o).contains(PASS));

    // net show works without the passphrase and says the store is encrypted.
    let o = cli(d, &["net", "show", "--store", "hq.db"], &[], None);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("Keys at rest  encrypted with a passphrase (Argon2id 64 KiB, t=1, p=1, XChaCha20-Poly1305"), "{}", out(&o));
    let o = cli(d, &["net", "show", "--json", "--store", "hq.db"], &[], None);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["keys_at_rest"]["encrypted"], true);
    assert_eq!(v["keys_at_rest"]["memory_kib"], 64);

    // Reading keys needs it: none (exit 2), wrong (exit 2), right.
    let export = ["cdb", "export", "-", "--store", "hq.db"];
    let o = cli(d, &export, &[], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("is encrypted and no passphrase was given"),
        "{}",
        err(&o)
    );
    let o = cli(
        d,
        &export,
        &[("MESHPROV_PASSPHRASE", "not the passphrase")],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("wrong passphrase for"), "{}", err(&o));
    assert!(!err(&o).contains("not the passphrase"), "{}", err(&o));
    let o = cli(d, &export, &[("MESHPROV_PASSPHRASE", PASS)], None);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("\"netKeys\""));

    // Change it: the new one from its own variable.
    let mut a = vec!["net", "change-passphrase", "--store", "hq.db"];
    a.extend(cheap);
    let o = cli(d, &a, &[("MESHPROV_PASSPHRASE", PASS)], None);
    assert_eq!(o.status.code(), Some(2), "no new passphrase: {}", err(&o));
    let o = cli(
        d,
        &a,
        &[
            ("MESHPROV_PASSPHRASE", PASS),
            ("MESHPROV_NEW_PASSPHRASE", "the new passphrase"),
        ],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    let o = cli(d, &export, &[("MESHPROV_PASSPHRASE", PASS)], None);
    assert_eq!(o.status.code(), Some(2));
    let o = cli(
        d,
        &["net", "decrypt", "--store", "hq.db"],
        &[("MESHPROV_PASSPHRASE", "the new passphrase")],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        out(&cli(d, &["net", "show", "--store", "hq.db"], &[], None))
            .lines()
            .filter(|l| !l.starts_with("Last change"))
            .collect::<Vec<_>>(),
        plain_show
            .lines()
            .filter(|l| !l.starts_with("Last change"))
            .collect::<Vec<_>>()
    );

    // Encrypted from creation: no key ever in the file in plaintext.
    let mut a = vec![
        "net",
        "create",
        "annex",
        "--store",
        "annex.db",
        "--encrypt",
        "--net-key",
        "7dd7364cd842ad18c17c2b820c84c3d6",
    ];
    a.extend(cheap);
    let o = cli(d, &a, &[("MESHPROV_PASSPHRASE", PASS)], None);
    assert!(o.status.success(), "{}", err(&o));
    let db = std::fs::read(d.join("annex.db")).unwrap();
    let key = hex::decode("7dd7364cd842ad18c17c2b820c84c3d6").unwrap();
    assert!(!db.windows(16).any(|w| w == key));
    let o = cli(
        d,
        &["net", "add-app-key", "L", "--store", "annex.db"],
        &[("MESHPROV_PASSPHRASE", PASS)],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    // A bad --passphrase-fd is a usage error.
    let o = cli(
        d,
        &[
            "net",
            "show",
            "--store",
            "annex.db",
            "--passphrase-fd",
            "77",
        ],
        &[],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("--passphrase-fd 77"), "{}", err(&o));
}
