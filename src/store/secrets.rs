//! Secrets at rest, the store's side: opening an encrypted store with its passphrase, and
//! turning encryption on (`net encrypt`), changing the passphrase, or turning it off
//! (`net decrypt`). The format is in [`super::seal`].
//!
//! Each change re-seals every key of the store in ONE transaction with the `store_encryption`
//! row, so a crash leaves either the old state or the new one, never a mix (the database's
//! triggers refuse a mix anyway). After the commit the old bytes are scrubbed from the files:
//! the WAL is checkpointed and truncated, the database is rebuilt with `VACUUM` (SQLite leaves
//! freed cells and pages as they were), and the WAL is truncated again. A crash between the
//! commit and the scrub leaves `store_encryption.scrubbed = 0`, and the next unlock scrubs.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::seal::{self, KdfParams, KeyCipher, KeysAtRest, Passphrase, SALT_LEN, Slot, StoreKey};
use super::{Store, StoreError, begin, now_iso8601, uuid_from};

/// The shortest passphrase `net encrypt` and `net change-passphrase` accept.
pub const MIN_PASSPHRASE_CHARS: usize = 8;

const AEAD_NAME: &str = "XChaCha20-Poly1305";

/// What an encryption change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptOutcome {
    /// Keys sealed again (NetKeys, AppKeys, old keys of a key refresh, device keys).
    pub keys: usize,
    /// The old bytes were scrubbed from the database and its WAL (false when another
    /// connection kept the WAL from being truncated: the next unlock tries again).
    pub scrubbed: bool,
}

/// The `store_encryption` row.
struct Meta {
    kdf: KdfParams,
    salt: [u8; SALT_LEN],
    verifier: Vec<u8>,
    scrubbed: bool,
    changed: String,
}

impl Meta {
    fn info(&self) -> KeysAtRest {
        KeysAtRest {
            kdf: self.kdf,
            aead: AEAD_NAME,
            changed: self.changed.clone(),
        }
    }
}

fn read_meta(conn: &Connection) -> Result<Option<Meta>, StoreError> {
    let row = conn
        .query_row(
            "SELECT memory_kib, time_cost, lanes, salt, verifier, scrubbed, changed FROM store_encryption",
            [],
            |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                    r.get::<_, bool>(5)?,
                    r.get::<_, String>(6)?,
                ))
            },
        )
        .optional()?;
    let Some((memory_kib, time_cost, lanes, salt, verifier, scrubbed, changed)) = row else {
        return Ok(None);
    };
    let salt: [u8; SALT_LEN] = salt
        .try_into()
        .map_err(|_| StoreError::Corrupt("the store's Argon2id salt is not 16 bytes".into()))?;
    let kdf = KdfParams {
        memory_kib,
        time_cost,
        lanes,
    };
    kdf.validate()
        .map_err(|e| StoreError::Corrupt(format!("the store's Argon2id parameters: {e}")))?;
    Ok(Some(Meta {
        kdf,
        salt,
        verifier,
        scrubbed,
        changed,
    }))
}

/// How a store just opened reads its keys: plaintext, or locked until its passphrase is given.
pub(crate) fn cipher_at_open(conn: &Connection, path: &Path) -> Result<KeyCipher, StoreError> {
    Ok(match read_meta(conn)? {
        None => KeyCipher::Plain,
        Some(m) => KeyCipher::Locked {
            path: path.to_path_buf(),
            info: m.info(),
        },
    })
}

fn check_new_passphrase(p: &Passphrase) -> Result<(), StoreError> {
    let n = p.chars();
    if n < MIN_PASSPHRASE_CHARS {
        return Err(StoreError::InvalidArgument(format!(
            "the new passphrase has {n} characters: use at least {MIN_PASSPHRASE_CHARS} (a few unrelated words are best)"
        )));
    }
    Ok(())
}

/// Reads every key with `from` and writes it back sealed with `to`; returns how many.
fn reseal_all(tx: &Transaction<'_>, from: &KeyCipher, to: &KeyCipher) -> Result<usize, StoreError> {
    let mut count = 0;
    let rows: Vec<(u16, Vec<u8>, Option<Vec<u8>>)> = tx
        .prepare("SELECT idx, key, old_key FROM net_keys ORDER BY idx")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (index, key, old) in rows {
        let key = from.open(Slot::NetKey { index, old: false }, key)?;
        let key = to.seal(Slot::NetKey { index, old: false }, &key)?;
        let old = match old {
            Some(o) => {
                count += 1;
                let o = from.open(Slot::NetKey { index, old: true }, o)?;
                Some(to.seal(Slot::NetKey { index, old: true }, &o)?)
            }
            None => None,
        };
        tx.execute(
            "UPDATE net_keys SET key = ?2, old_key = ?3 WHERE idx = ?1",
            params![index, &key[..], old.as_deref()],
        )?;
        count += 1;
    }
    let rows: Vec<(u16, Vec<u8>, Option<Vec<u8>>)> = tx
        .prepare("SELECT idx, key, old_key FROM app_keys ORDER BY idx")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (index, key, old) in rows {
        let key = from.open(Slot::AppKey { index, old: false }, key)?;
        let key = to.seal(Slot::AppKey { index, old: false }, &key)?;
        let old = match old {
            Some(o) => {
                count += 1;
                let o = from.open(Slot::AppKey { index, old: true }, o)?;
                Some(to.seal(Slot::AppKey { index, old: true }, &o)?)
            }
            None => None,
        };
        tx.execute(
            "UPDATE app_keys SET key = ?2, old_key = ?3 WHERE idx = ?1",
            params![index, &key[..], old.as_deref()],
        )?;
        count += 1;
    }
    let rows: Vec<(Vec<u8>, Vec<u8>)> = tx
        .prepare("SELECT uuid, device_key FROM nodes")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (u, key) in rows {
        let uuid = uuid_from(u)?;
        let key = from.open(Slot::DevKey(&uuid), key)?;
        let key = to.seal(Slot::DevKey(&uuid), &key)?;
        tx.execute(
            "UPDATE nodes SET device_key = ?2 WHERE uuid = ?1",
            params![&uuid.0[..], &key[..]],
        )?;
        count += 1;
    }
    Ok(count)
}

impl Store {
    /// How the store's keys are kept at rest: `None` for a store that is not encrypted.
    pub fn keys_at_rest(&self) -> Option<&KeysAtRest> {
        self.keys.info()
    }

    /// Whether the store is encrypted and its passphrase has not been given yet: every read or
    /// write of a key fails with [`StoreError::Locked`] until [`Store::unlock`].
    pub fn is_locked(&self) -> bool {
        matches!(self.keys, KeyCipher::Locked { .. })
    }

    /// The key derived from the passphrase, once unlocked: [`Store::unlock_with_key`] opens a
    /// second connection to the same store with it, without running Argon2id again.
    pub fn store_key(&self) -> Option<&StoreKey> {
        match &self.keys {
            KeyCipher::Unlocked { key, .. } => Some(key),
            _ => None,
        }
    }

    fn meta(&self) -> Result<Meta, StoreError> {
        read_meta(&self.conn)?.ok_or_else(|| {
            StoreError::InvalidArgument(format!(
                "{} is not encrypted: encrypt it with `meshprov net encrypt`",
                self.path.display()
            ))
        })
    }

    /// Opens an encrypted store's keys with its passphrase (Argon2id with the store's cost, then
    /// the verifier): [`StoreError::WrongPassphrase`] when it is not the store's. Returns the
    /// derived key, for [`Store::unlock_with_key`].
    pub fn unlock(&mut self, passphrase: &Passphrase) -> Result<StoreKey, StoreError> {
        let meta = self.meta()?;
        let key = seal::derive(passphrase, &meta.salt, &meta.kdf)?;
        self.unlock_checked(meta, key.clone())?;
        Ok(key)
    }

    /// Opens an encrypted store's keys with a key derived earlier from its passphrase (the same
    /// store, another connection): [`StoreError::WrongPassphrase`] when it does not fit.
    pub fn unlock_with_key(&mut self, key: &StoreKey) -> Result<(), StoreError> {
        let meta = self.meta()?;
        self.unlock_checked(meta, key.clone())
    }

    fn unlock_checked(&mut self, meta: Meta, key: StoreKey) -> Result<(), StoreError> {
        if key.salt() != &meta.salt || !seal::check_verifier(&key, &meta.verifier) {
            return Err(StoreError::WrongPassphrase {
                path: self.path.clone(),
            });
        }
        let scrubbed = meta.scrubbed;
        self.keys = KeyCipher::unlocked(meta.info(), key);
        if !scrubbed {
            // A crash came between a re-seal and its scrub: finish it now. A busy WAL (another
            // connection reading) leaves it for the next time.
            self.scrub()?;
        }
        Ok(())
    }

    /// Encrypts the store's key material with `passphrase` (README "Secrets at rest"): a new
    /// salt, Argon2id with `kdf`, and every key sealed again, in one transaction; then the old
    /// plaintext is scrubbed from the files. Refused when the store is already encrypted.
    pub fn encrypt(
        &mut self,
        passphrase: &Passphrase,
        kdf: &KdfParams,
    ) -> Result<EncryptOutcome, StoreError> {
        if self.keys.info().is_some() {
            return Err(StoreError::InvalidArgument(format!(
                "{} is already encrypted: change its passphrase with `meshprov net change-passphrase`",
                self.path.display()
            )));
        }
        check_new_passphrase(passphrase)?;
        self.reseal(Some((passphrase, kdf)))
    }

    /// Changes the passphrase of an unlocked encrypted store (and, with `kdf`, the Argon2id
    /// cost): a new salt and key, every key sealed again in one transaction, then scrubbed.
    pub fn change_passphrase(
        &mut self,
        passphrase: &Passphrase,
        kdf: &KdfParams,
    ) -> Result<EncryptOutcome, StoreError> {
        self.require_unlocked()?;
        check_new_passphrase(passphrase)?;
        self.reseal(Some((passphrase, kdf)))
    }

    /// Turns the encryption of an unlocked store off: every key is written back in plaintext,
    /// in one transaction.
    pub fn decrypt(&mut self) -> Result<EncryptOutcome, StoreError> {
        self.require_unlocked()?;
        self.reseal(None)
    }

    fn require_unlocked(&self) -> Result<(), StoreError> {
        match &self.keys {
            KeyCipher::Unlocked { .. } => Ok(()),
            KeyCipher::Locked { path, .. } => Err(StoreError::Locked { path: path.clone() }),
            KeyCipher::Plain => Err(StoreError::InvalidArgument(format!(
                "{} is not encrypted: encrypt it with `meshprov net encrypt`",
                self.path.display()
            ))),
        }
    }

    /// Seals every key anew: with a fresh key from `new` (passphrase, cost), or in plaintext.
    fn reseal(
        &mut self,
        new: Option<(&Passphrase, &KdfParams)>,
    ) -> Result<EncryptOutcome, StoreError> {
        let changed = now_iso8601();
        let target = match new {
            Some((passphrase, kdf)) => {
                let salt = seal::random_salt()?;
                let key = seal::derive(passphrase, &salt, kdf)?;
                let verifier = seal::make_verifier(&key)?;
                let info = KeysAtRest {
                    kdf: *kdf,
                    aead: AEAD_NAME,
                    changed: changed.clone(),
                };
                Some((KeyCipher::unlocked(info, key), salt, verifier, *kdf))
            }
            None => None,
        };
        let tx = begin(&mut self.conn)?;
        // The row first: the triggers then want every key written in this transaction sealed
        // (or, with the row gone, in plaintext).
        tx.execute("DELETE FROM store_encryption", [])?;
        if let Some((_, salt, verifier, kdf)) = &target {
            tx.execute(
                "INSERT INTO store_encryption (id, kdf, memory_kib, time_cost, lanes, salt, aead, verifier, scrubbed, changed)
                 VALUES (1, 'argon2id-v19', ?1, ?2, ?3, ?4, 'xchacha20poly1305', ?5, 0, ?6)",
                params![kdf.memory_kib, kdf.time_cost, kdf.lanes, &salt[..], verifier, changed],
            )?;
        }
        let plain = KeyCipher::Plain;
        let to = target.as_ref().map_or(&plain, |t| &t.0);
        let keys = reseal_all(&tx, &self.keys, to)?;
        tx.commit()?;
        self.keys = match target {
            Some((cipher, ..)) => cipher,
            None => KeyCipher::Plain,
        };
        let scrubbed = self.scrub()?;
        Ok(EncryptOutcome { keys, scrubbed })
    }

    /// Removes the bytes of replaced keys from the files: checkpoint and truncate the WAL,
    /// rebuild the database (`VACUUM`, in memory), truncate the WAL again; then records it in
    /// `store_encryption.scrubbed`. False when another connection kept the WAL busy.
    fn scrub(&mut self) -> Result<bool, StoreError> {
        let truncate = |c: &Connection| -> Result<bool, StoreError> {
            let busy: i64 = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
            Ok(busy == 0)
        };
        if !truncate(&self.conn)? {
            return Ok(false);
        }
        // VACUUM copies the database through a temporary one: keep that in memory, so no
        // temporary file holds the store's contents.
        self.conn.pragma_update(None, "temp_store", "MEMORY")?;
        self.conn.execute_batch("VACUUM")?;
        self.conn.pragma_update(None, "temp_store", "DEFAULT")?;
        if !truncate(&self.conn)? {
            return Ok(false);
        }
        self.conn
            .execute("UPDATE store_encryption SET scrubbed = 1", [])?;
        truncate(&self.conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::{APPLICATION_ID, MIGRATIONS};
    use crate::uuid::DeviceUuid;

    /// A version 2 store (before secrets at rest) with a network, a key refresh under way and
    /// nodes with their rows in every table that refers to them: the table rebuild keeps all
    /// of it, the triggers still refuse overlaps, and the store can then be encrypted.
    #[test]
    fn a_version_2_store_is_rebuilt_and_can_be_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.execute_batch(MIGRATIONS[1]).unwrap();
            c.pragma_update(None, "user_version", 2).unwrap();
            c.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            c.execute_batch(
                "INSERT INTO network (id, name, mesh_uuid, timestamp) VALUES (1, 'old', zeroblob(16), 't');
                 INSERT INTO net_keys (idx, name, key, old_key, phase, timestamp)
                     VALUES (0, 'n', X'11111111111111111111111111111111', X'22222222222222222222222222222222', 1, 't');
                 INSERT INTO app_keys (idx, name, bound_net_key, key, old_key) VALUES (0, 'a', 0, X'33333333333333333333333333333333', X'55555555555555555555555555555555');
                 INSERT INTO provisioners (uuid, name, is_self) VALUES (X'0102030405060708090a0b0c0d0e0f10', 'me', 1);
                 INSERT INTO provisioner_ranges (provisioner, kind, low, high) VALUES (1, 'unicast', 1, 100);
                 INSERT INTO nodes (uuid, address, elements, device_key, state, created)
                     VALUES (X'a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0', 5, 2, X'44444444444444444444444444444444', 'provisioned', 't');
                 INSERT INTO node_net_keys (node, idx) VALUES (X'a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0', 0);
                 INSERT INTO node_app_keys (node, idx) VALUES (X'a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0', 0);
                 INSERT INTO elements (node, idx) VALUES (X'a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0', 0);
                 INSERT INTO elements (node, idx) VALUES (X'a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0', 1);
                 INSERT INTO models (node, element, vendor, model_id) VALUES (X'a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0', 0, 0, 4096);
                 INSERT INTO key_refresh (net_key_index, started, updated, journal) VALUES (0, 't', 't', '{}');",
            )
            .unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        let v: u32 = s
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, crate::store::SCHEMA_VERSION);
        s.check_integrity().unwrap();
        assert!(s.keys_at_rest().is_none());
        let u = DeviceUuid([0xa0; 16]);
        let n = s.node_by_uuid(&u).unwrap();
        assert_eq!((n.address, n.elements), (5, 2));
        assert_eq!(n.device_key.expose_secret(), &[0x44; 16]);
        assert_eq!((n.net_keys.clone(), n.app_keys.clone()), (vec![0], vec![0]));
        let kr = s.key_refresh(0).unwrap().unwrap();
        assert_eq!(kr.old_net_key.expose_secret(), &[0x22; 16]);
        // Foreign keys are on again: a node's rows go with it; the overlap triggers hold.
        assert!(s.allocate_unicast(&DeviceUuid([1; 16]), 1).unwrap() == 1);
        assert!(s.allocate_unicast(&DeviceUuid([2; 16]), 4).unwrap() == 7);
        let overlap = s.conn.execute(
            "INSERT INTO reservations (uuid, address, elements, created) VALUES (zeroblob(16), 6, 1, 't')",
            [],
        );
        assert!(overlap.is_err());
        let fk: bool = s
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert!(fk);
        // And it can be encrypted now.
        let o = s
            .encrypt(
                &Passphrase::new("a passphrase".into()),
                &KdfParams::TEST_ONLY_CHEAP,
            )
            .unwrap();
        assert_eq!(o.keys, 5);
        assert!(o.scrubbed);
        drop(s);
        let mut s = Store::open(&path).unwrap();
        assert!(s.is_locked());
        s.unlock(&Passphrase::new("a passphrase".into())).unwrap();
        assert_eq!(
            s.key_refresh(0).unwrap().unwrap().old_net_key,
            kr.old_net_key
        );
        assert_eq!(s.node_by_uuid(&u).unwrap().device_key, n.device_key);
        let raw = std::fs::read(&path).unwrap();
        for b in [0x11u8, 0x22, 0x33, 0x44, 0x55] {
            assert!(
                !raw.windows(16).any(|w| w == [b; 16]),
                "plaintext key {b:02x}… left in the file"
            );
        }
    }

    /// A crash between a re-seal and its scrub leaves `scrubbed = 0`: the next unlock scrubs.
    #[test]
    fn an_unfinished_scrub_is_finished_at_the_next_unlock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let p = Passphrase::new("a passphrase".into());
        {
            let mut s = Store::open(&path).unwrap();
            s.encrypt(&p, &KdfParams::TEST_ONLY_CHEAP).unwrap();
            s.conn
                .execute("UPDATE store_encryption SET scrubbed = 0", [])
                .unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        s.unlock(&p).unwrap();
        let scrubbed: bool = s
            .conn
            .query_row("SELECT scrubbed FROM store_encryption", [], |r| r.get(0))
            .unwrap();
        assert!(scrubbed);
    }
}
