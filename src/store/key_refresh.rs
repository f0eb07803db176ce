//! The key refresh journal: the new keys next to the old ones, and the procedure's progress.
//!
//! [`Store::begin_key_refresh`] stores, in one transaction, the new NetKey and the new AppKeys
//! bound to it (the current keys move to `old_key`, the NetKey's phase becomes 1) and the first
//! journal entry, so a crash right after it leaves keys and journal that agree: the next run
//! resumes with the same new keys. [`Store::save_key_refresh`] records every change of the
//! progress with the phase and the nodes' `updated` flags (CDB `netKeys[].updated`,
//! `appKeys[].updated`); [`Store::finish_key_refresh`] drops the old keys once every node in
//! the procedure finished. The journal is opaque JSON here (the
//! [`KeyRefreshProgress`](crate::net::key_refresh::KeyRefreshProgress) of `net/`); key material
//! is never in it.

use mesh_crypto::{AppKey, NetKey};
use rusqlite::{OptionalExtension, params};

use super::seal::Slot;
use super::{Store, StoreError, begin, now_iso8601, touch};

/// A key refresh under way, as stored.
#[derive(Debug, Clone)]
pub struct KeyRefreshRecord {
    /// The NetKey index.
    pub net_key_index: u16,
    /// The NetKey in use before the key refresh.
    pub old_net_key: NetKey,
    /// The new NetKey.
    pub new_net_key: NetKey,
    /// The AppKeys bound to it: index, old key, new key.
    pub app_keys: Vec<(u16, AppKey, AppKey)>,
    /// The NetKey's Key Refresh phase in the store (1 or 2; CDB `phase`).
    pub phase: u8,
    /// The procedure's progress (JSON).
    pub journal: String,
    /// When it began, ISO-8601.
    pub started: String,
}

/// What one node acknowledged, for its `updated` flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeKeysUpdated {
    /// The node's primary address.
    pub address: u16,
    /// It holds the new NetKey.
    pub net_key: bool,
    /// The AppKeys whose new key it holds.
    pub app_keys: Vec<u16>,
}

fn app_keys_of(tx: &rusqlite::Connection, net_key_index: u16) -> Result<Vec<u16>, StoreError> {
    Ok(tx
        .prepare("SELECT idx FROM app_keys WHERE bound_net_key = ?1 ORDER BY idx")?
        .query_map([net_key_index], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

impl Store {
    /// Begins a key refresh of NetKey `net_key_index`: `new_net_key` and `new_app_keys` (one for
    /// every AppKey bound to it, by index) become the keys, the current ones are kept as the
    /// old keys, the phase becomes 1 and `journal` is the first journal entry — all in one
    /// transaction. Refused while a key refresh of this NetKey is under way, when a new key
    /// equals the one it replaces, or when the AppKeys given are not exactly those bound.
    pub fn begin_key_refresh(
        &mut self,
        net_key_index: u16,
        new_net_key: &NetKey,
        new_app_keys: &[(u16, AppKey)],
        journal: &str,
    ) -> Result<KeyRefreshRecord, StoreError> {
        let keys = &self.keys;
        let tx = begin(&mut self.conn)?;
        let current: Option<(Vec<u8>, u8)> = tx
            .query_row(
                "SELECT key, phase FROM net_keys WHERE idx = ?1",
                [net_key_index],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((current, phase)) = current else {
            return Err(StoreError::UnknownNetKey(net_key_index));
        };
        let running: Option<String> = tx
            .query_row(
                "SELECT started FROM key_refresh WHERE net_key_index = ?1",
                [net_key_index],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(started) = running {
            return Err(StoreError::InvalidArgument(format!(
                "a key refresh of NetKey {net_key_index} began on {started} and is not finished: resume it"
            )));
        }
        if phase != 0 {
            return Err(StoreError::InvalidArgument(format!(
                "NetKey {net_key_index} is in key refresh phase {phase} without a journal (imported?): finish that key refresh with the tool that began it"
            )));
        }
        let current = NetKey::from_bytes(*keys.open(
            Slot::NetKey {
                index: net_key_index,
                old: false,
            },
            current,
        )?);
        if current == *new_net_key {
            return Err(StoreError::InvalidArgument(
                "the new NetKey equals the current one".into(),
            ));
        }
        let bound = app_keys_of(&tx, net_key_index)?;
        let mut given: Vec<u16> = new_app_keys.iter().map(|(i, _)| *i).collect();
        given.sort_unstable();
        if given != bound {
            return Err(StoreError::InvalidArgument(format!(
                "new AppKeys for {given:?}, but the AppKeys bound to NetKey {net_key_index} are {bound:?}"
            )));
        }
        let now = now_iso8601();
        // The current key becomes the old one: opened and sealed again for its new column (a
        // sealed value is bound to its column, so it is not copied as it is).
        let old_sealed = keys.seal(
            Slot::NetKey {
                index: net_key_index,
                old: true,
            },
            current.expose_secret(),
        )?;
        let new_sealed = keys.seal(
            Slot::NetKey {
                index: net_key_index,
                old: false,
            },
            new_net_key.expose_secret(),
        )?;
        tx.execute(
            "UPDATE net_keys SET old_key = ?2, key = ?3, phase = 1, timestamp = ?4 WHERE idx = ?1",
            params![net_key_index, &old_sealed[..], &new_sealed[..], now],
        )?;
        for (index, key) in new_app_keys {
            let old: Vec<u8> =
                tx.query_row("SELECT key FROM app_keys WHERE idx = ?1", [index], |r| {
                    r.get(0)
                })?;
            let index = *index;
            let old = AppKey::from_bytes(*keys.open(Slot::AppKey { index, old: false }, old)?);
            if old == *key {
                return Err(StoreError::InvalidArgument(format!(
                    "the new AppKey {index} equals the current one"
                )));
            }
            tx.execute(
                "UPDATE app_keys SET old_key = ?2, key = ?3 WHERE idx = ?1",
                params![
                    index,
                    &keys.seal(Slot::AppKey { index, old: true }, old.expose_secret())?[..],
                    &keys.seal(Slot::AppKey { index, old: false }, key.expose_secret())?[..]
                ],
            )?;
        }
        tx.execute(
            "UPDATE node_net_keys SET updated = 0 WHERE idx = ?1",
            [net_key_index],
        )?;
        tx.execute(
            "UPDATE node_app_keys SET updated = 0
             WHERE idx IN (SELECT idx FROM app_keys WHERE bound_net_key = ?1)",
            [net_key_index],
        )?;
        tx.execute(
            "INSERT INTO key_refresh (net_key_index, started, updated, journal) VALUES (?1, ?2, ?2, ?3)",
            params![net_key_index, now, journal],
        )?;
        touch(&tx)?;
        tx.commit()?;
        self.key_refresh(net_key_index)?.ok_or_else(|| {
            StoreError::Corrupt("the key refresh just begun is not in the store".into())
        })
    }

    /// The key refresh of NetKey `net_key_index` under way, if there is one.
    pub fn key_refresh(&self, net_key_index: u16) -> Result<Option<KeyRefreshRecord>, StoreError> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT journal, started FROM key_refresh WHERE net_key_index = ?1",
                [net_key_index],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((journal, started)) = row else {
            return Ok(None);
        };
        let (key, old, phase): (Vec<u8>, Option<Vec<u8>>, u8) = self.conn.query_row(
            "SELECT key, old_key, phase FROM net_keys WHERE idx = ?1",
            [net_key_index],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let missing = |what: String| {
            StoreError::Corrupt(format!(
                "a key refresh of NetKey {net_key_index} is under way but {what} has no old key"
            ))
        };
        let old = old.ok_or_else(|| missing(format!("NetKey {net_key_index}")))?;
        let mut app_keys = Vec::new();
        let mut st = self.conn.prepare(
            "SELECT idx, key, old_key FROM app_keys WHERE bound_net_key = ?1 ORDER BY idx",
        )?;
        let rows = st
            .query_map([net_key_index], |r| {
                Ok((
                    r.get::<_, u16>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Option<Vec<u8>>>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for (index, key, old) in rows {
            let old = old.ok_or_else(|| missing(format!("AppKey {index}")))?;
            app_keys.push((
                index,
                AppKey::from_bytes(*self.keys.open(Slot::AppKey { index, old: true }, old)?),
                AppKey::from_bytes(*self.keys.open(Slot::AppKey { index, old: false }, key)?),
            ));
        }
        Ok(Some(KeyRefreshRecord {
            net_key_index,
            old_net_key: NetKey::from_bytes(*self.keys.open(
                Slot::NetKey {
                    index: net_key_index,
                    old: true,
                },
                old,
            )?),
            new_net_key: NetKey::from_bytes(*self.keys.open(
                Slot::NetKey {
                    index: net_key_index,
                    old: false,
                },
                key,
            )?),
            app_keys,
            phase,
            journal,
            started,
        }))
    }

    /// Records the progress of the key refresh of NetKey `net_key_index`: the journal, the
    /// NetKey's phase (1 or 2) and, for the nodes listed, which new keys they hold (their
    /// `updated` flags). Durable when it returns.
    pub fn save_key_refresh(
        &mut self,
        net_key_index: u16,
        phase: u8,
        journal: &str,
        nodes: &[NodeKeysUpdated],
    ) -> Result<(), StoreError> {
        if !(1..=2).contains(&phase) {
            return Err(StoreError::InvalidArgument(format!(
                "a key refresh under way is in phase 1 or 2, not {phase}"
            )));
        }
        let tx = self.write()?;
        let n = tx.execute(
            "UPDATE key_refresh SET journal = ?2, updated = ?3 WHERE net_key_index = ?1",
            params![net_key_index, journal, now_iso8601()],
        )?;
        if n == 0 {
            return Err(StoreError::InvalidArgument(format!(
                "no key refresh of NetKey {net_key_index} is under way"
            )));
        }
        tx.execute(
            "UPDATE net_keys SET phase = ?2 WHERE idx = ?1",
            params![net_key_index, phase],
        )?;
        let bound = app_keys_of(&tx, net_key_index)?;
        for u in nodes {
            let uuid: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT uuid FROM nodes WHERE address = ?1",
                    [u.address],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(uuid) = uuid else { continue };
            tx.execute(
                "UPDATE node_net_keys SET updated = ?3 WHERE node = ?1 AND idx = ?2",
                params![uuid, net_key_index, u.net_key],
            )?;
            for a in &bound {
                tx.execute(
                    "UPDATE node_app_keys SET updated = ?3 WHERE node = ?1 AND idx = ?2",
                    params![uuid, a, u.app_keys.contains(a)],
                )?;
            }
        }
        touch(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Ends the key refresh of NetKey `net_key_index`: the old NetKey and AppKeys are dropped,
    /// the phase is 0 again, the `updated` flags are cleared and the journal is deleted. Call it
    /// when every node in the procedure finished (a node left behind could only be reached with
    /// the old keys). Without a key refresh under way this does nothing.
    pub fn finish_key_refresh(&mut self, net_key_index: u16) -> Result<(), StoreError> {
        let tx = self.write()?;
        let n = tx.execute(
            "DELETE FROM key_refresh WHERE net_key_index = ?1",
            [net_key_index],
        )?;
        if n == 0 {
            return Ok(());
        }
        tx.execute(
            "UPDATE net_keys SET old_key = NULL, phase = 0, timestamp = ?2 WHERE idx = ?1",
            params![net_key_index, now_iso8601()],
        )?;
        tx.execute(
            "UPDATE app_keys SET old_key = NULL WHERE bound_net_key = ?1",
            [net_key_index],
        )?;
        tx.execute(
            "UPDATE node_net_keys SET updated = 0 WHERE idx = ?1",
            [net_key_index],
        )?;
        tx.execute(
            "UPDATE node_app_keys SET updated = 0
             WHERE idx IN (SELECT idx FROM app_keys WHERE bound_net_key = ?1)",
            [net_key_index],
        )?;
        touch(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Records that the node at `address` holds AppKey `app_key_index` (after a successful
    /// AppKey Add; CDB `appKeys` of the node). Idempotent. The same as
    /// [`Store::record_node_app_key`], for callers that know the node by its address.
    pub fn add_node_app_key(&mut self, address: u16, app_key_index: u16) -> Result<(), StoreError> {
        let node = self.node_by_address(address)?;
        self.record_node_app_key(&node.uuid, app_key_index)
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::SeedableRng;

    use super::*;
    use crate::store::{ExportOptions, NewNode};
    use crate::uuid::DeviceUuid;

    fn store(dir: &tempfile::TempDir) -> Store {
        let mut s = Store::open(&dir.path().join("kr.db")).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        s.create_network("KR", Some(NetKey::from_bytes([1; 16])), &mut rng)
            .unwrap();
        s.add_app_key("a", 0, Some(AppKey::from_bytes([0x10; 16])), &mut rng)
            .unwrap();
        s.add_app_key("b", 0, Some(AppKey::from_bytes([0x11; 16])), &mut rng)
            .unwrap();
        for i in 1..=2u8 {
            let uuid = DeviceUuid([i; 16]);
            let address = s.allocate_unicast(&uuid, 1).unwrap();
            s.commit_node(&NewNode {
                uuid,
                name: format!("n{i}"),
                address,
                elements: 1,
                device_key: mesh_crypto::DevKey::from_bytes([i; 16]),
                net_key_index: 0,
                location: None,
            })
            .unwrap();
            s.add_node_app_key(address, 0).unwrap();
            s.add_node_app_key(address, 1).unwrap();
        }
        s
    }

    fn new_apps() -> Vec<(u16, AppKey)> {
        vec![
            (0, AppKey::from_bytes([0x20; 16])),
            (1, AppKey::from_bytes([0x21; 16])),
        ]
    }

    #[test]
    fn begin_save_finish() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(&dir);
        assert!(s.key_refresh(0).unwrap().is_none());
        let new = NetKey::from_bytes([2; 16]);
        let r = s
            .begin_key_refresh(0, &new, &new_apps(), r#"{"step":1}"#)
            .unwrap();
        assert!(r.old_net_key == NetKey::from_bytes([1; 16]) && r.new_net_key == new);
        assert_eq!(r.phase, 1);
        assert_eq!(r.journal, r#"{"step":1}"#);
        assert_eq!(r.app_keys.len(), 2);
        assert!(r.app_keys[1].1 == AppKey::from_bytes([0x11; 16]));
        assert!(r.app_keys[1].2 == AppKey::from_bytes([0x21; 16]));
        assert!(s.net_key(0).unwrap() == new, "the new key is the key");
        assert!(s.app_key(0).unwrap() == AppKey::from_bytes([0x20; 16]));
        // Only one key refresh of a NetKey at a time.
        let again = s.begin_key_refresh(0, &NetKey::from_bytes([3; 16]), &new_apps(), "{}");
        assert!(matches!(again, Err(StoreError::InvalidArgument(m)) if m.contains("resume it")));

        s.save_key_refresh(
            0,
            2,
            r#"{"step":2}"#,
            &[NodeKeysUpdated {
                address: 1,
                net_key: true,
                app_keys: vec![1],
            }],
        )
        .unwrap();
        let r = s.key_refresh(0).unwrap().unwrap();
        assert_eq!((r.phase, r.journal.as_str()), (2, r#"{"step":2}"#));
        let cdb = s.export_cdb(&ExportOptions::default()).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&cdb).unwrap();
        assert_eq!(doc["netKeys"][0]["phase"], 2);
        assert!(doc["netKeys"][0]["oldKey"].is_string());
        let n1 = &doc["nodes"][0];
        assert_eq!(n1["netKeys"][0]["updated"], true);
        assert_eq!(n1["appKeys"][0]["updated"], false);
        assert_eq!(n1["appKeys"][1]["updated"], true);
        assert_eq!(doc["nodes"][1]["netKeys"][0]["updated"], false);
        assert!(
            s.save_key_refresh(0, 3, "{}", &[]).is_err(),
            "phase 1 or 2 only"
        );
        assert!(
            s.save_key_refresh(0, 2, "not json", &[]).is_err(),
            "the journal is JSON"
        );

        s.finish_key_refresh(0).unwrap();
        assert!(s.key_refresh(0).unwrap().is_none());
        let cdb = s.export_cdb(&ExportOptions::default()).unwrap();
        assert!(!cdb.contains("oldKey"), "{cdb}");
        let doc: serde_json::Value = serde_json::from_str(&cdb).unwrap();
        assert_eq!(doc["netKeys"][0]["phase"], 0);
        assert_eq!(doc["nodes"][0]["netKeys"][0]["updated"], false);
        assert!(s.net_key(0).unwrap() == new);
        s.finish_key_refresh(0).unwrap();
        assert!(
            s.save_key_refresh(0, 1, "{}", &[]).is_err(),
            "nothing under way"
        );
        // A new key refresh can begin now, from the new key.
        s.begin_key_refresh(
            0,
            &NetKey::from_bytes([4; 16]),
            &[
                (0, AppKey::from_bytes([0x30; 16])),
                (1, AppKey::from_bytes([0x31; 16])),
            ],
            "{}",
        )
        .unwrap();
        assert!(s.key_refresh(0).unwrap().unwrap().old_net_key == new);
    }

    #[test]
    fn bad_beginnings_are_refused_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(&dir);
        let new = NetKey::from_bytes([2; 16]);
        assert!(matches!(
            s.begin_key_refresh(7, &new, &[], "{}"),
            Err(StoreError::UnknownNetKey(7))
        ));
        let same = s.begin_key_refresh(0, &NetKey::from_bytes([1; 16]), &new_apps(), "{}");
        assert!(matches!(same, Err(StoreError::InvalidArgument(m)) if m.contains("equals")));
        let missing = s.begin_key_refresh(0, &new, &new_apps()[..1], "{}");
        assert!(matches!(missing, Err(StoreError::InvalidArgument(m)) if m.contains("bound")));
        let same_app = s.begin_key_refresh(
            0,
            &new,
            &[(0, AppKey::from_bytes([0x10; 16])), new_apps()[1].clone()],
            "{}",
        );
        assert!(matches!(same_app, Err(StoreError::InvalidArgument(_))));
        assert!(s.key_refresh(0).unwrap().is_none());
        assert!(s.net_key(0).unwrap() == NetKey::from_bytes([1; 16]));
        assert!(s.app_key(0).unwrap() == AppKey::from_bytes([0x10; 16]));
        assert_eq!(s.network().unwrap().net_keys[0].phase, 0);
    }

    #[test]
    fn node_app_keys_are_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(&dir);
        s.add_node_app_key(1, 0).unwrap();
        assert_eq!(s.node_by_address(1).unwrap().app_keys, [0, 1]);
        assert!(s.add_node_app_key(1, 9).is_err());
        assert!(matches!(
            s.add_node_app_key(0x0100, 0),
            Err(StoreError::NoSuchNode(_))
        ));
    }

    #[test]
    fn a_version_1_store_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(crate::store::schema::MIGRATIONS[0])
                .unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.pragma_update(None, "application_id", crate::store::schema::APPLICATION_ID)
                .unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        s.create_network("old", None, &mut ChaCha20Rng::seed_from_u64(1))
            .unwrap();
        assert!(s.key_refresh(0).unwrap().is_none());
        s.begin_key_refresh(0, &NetKey::from_bytes([9; 16]), &[], "{}")
            .unwrap();
        assert!(s.key_refresh(0).unwrap().is_some());
    }
}
