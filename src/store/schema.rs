//! The versioned SQLite schema and its migrations.
//!
//! The schema version is SQLite's `PRAGMA user_version`: `0` is an empty file, and
//! [`MIGRATIONS`]`[n]` takes a database from version `n` to `n + 1`. Every migration runs in one
//! transaction with the version bump, so a crash mid-migration leaves the old version intact.
//! A database newer than this program refuses to open rather than be misread.
//!
//! Invariants that protect devices are enforced by the database itself, not only by the code
//! above it: key lengths (`CHECK`), one network per file, and triggers that refuse any node or
//! reservation whose unicast range overlaps another one — so no code path can allocate an address
//! twice.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::StoreError;

/// `PRAGMA application_id` of a meshprov store: "MSHP".
pub(crate) const APPLICATION_ID: i32 = 0x4d53_4850;

/// Migration `n` upgrades a database from schema version `n` to `n + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[V1, V2, V3];

/// The schema version this program writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

const V1: &str = r#"
CREATE TABLE network (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    name        TEXT NOT NULL,
    mesh_uuid   BLOB NOT NULL CHECK (length(mesh_uuid) = 16),
    iv_index    INTEGER NOT NULL DEFAULT 0 CHECK (iv_index BETWEEN 0 AND 4294967295),
    iv_update   INTEGER NOT NULL DEFAULT 0 CHECK (iv_update IN (0, 1)),
    timestamp   TEXT NOT NULL
) STRICT;

CREATE TABLE net_keys (
    idx          INTEGER PRIMARY KEY CHECK (idx BETWEEN 0 AND 4095),
    name         TEXT NOT NULL,
    key          BLOB NOT NULL CHECK (length(key) = 16),
    old_key      BLOB CHECK (old_key IS NULL OR length(old_key) = 16),
    phase        INTEGER NOT NULL DEFAULT 0 CHECK (phase IN (0, 1, 2)),
    min_security TEXT NOT NULL DEFAULT 'secure' CHECK (min_security IN ('secure', 'insecure')),
    timestamp    TEXT NOT NULL
) STRICT;

CREATE TABLE app_keys (
    idx           INTEGER PRIMARY KEY CHECK (idx BETWEEN 0 AND 4095),
    name          TEXT NOT NULL,
    bound_net_key INTEGER NOT NULL REFERENCES net_keys(idx),
    key           BLOB NOT NULL CHECK (length(key) = 16),
    old_key       BLOB CHECK (old_key IS NULL OR length(old_key) = 16)
) STRICT;

CREATE TABLE provisioners (
    id       INTEGER PRIMARY KEY,
    uuid     BLOB NOT NULL UNIQUE CHECK (length(uuid) = 16),
    name     TEXT NOT NULL,
    is_self  INTEGER NOT NULL DEFAULT 0 CHECK (is_self IN (0, 1))
) STRICT;
CREATE UNIQUE INDEX provisioners_one_self ON provisioners(is_self) WHERE is_self = 1;

CREATE TABLE provisioner_ranges (
    provisioner INTEGER NOT NULL REFERENCES provisioners(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('unicast', 'group', 'scene')),
    low         INTEGER NOT NULL CHECK (low BETWEEN 0 AND 65535),
    high        INTEGER NOT NULL CHECK (high BETWEEN 0 AND 65535),
    CHECK (low <= high)
) STRICT;

CREATE TABLE reservations (
    uuid     BLOB PRIMARY KEY CHECK (length(uuid) = 16),
    address  INTEGER NOT NULL CHECK (address BETWEEN 1 AND 32767),
    elements INTEGER NOT NULL CHECK (elements BETWEEN 1 AND 255 AND address + elements - 1 <= 32767),
    created  TEXT NOT NULL
) STRICT;

CREATE TABLE nodes (
    uuid            BLOB PRIMARY KEY CHECK (length(uuid) = 16),
    address         INTEGER NOT NULL UNIQUE CHECK (address BETWEEN 1 AND 32767),
    elements        INTEGER NOT NULL CHECK (elements BETWEEN 1 AND 255 AND address + elements - 1 <= 32767),
    device_key      BLOB NOT NULL CHECK (length(device_key) = 16),
    state           TEXT NOT NULL CHECK (state IN ('unconfirmed', 'provisioned')),
    config_complete INTEGER NOT NULL DEFAULT 0 CHECK (config_complete IN (0, 1)),
    excluded        INTEGER NOT NULL DEFAULT 0 CHECK (excluded IN (0, 1)),
    security        TEXT NOT NULL DEFAULT 'secure' CHECK (security IN ('secure', 'insecure')),
    name            TEXT NOT NULL DEFAULT '',
    serial          TEXT,
    building        TEXT,
    floor           TEXT,
    room            TEXT,
    cid             INTEGER,
    pid             INTEGER,
    vid             INTEGER,
    crpl            INTEGER,
    relay           INTEGER,
    proxy           INTEGER,
    friend          INTEGER,
    low_power       INTEGER,
    secure_network_beacon INTEGER,
    default_ttl     INTEGER,
    network_transmit TEXT,
    relay_retransmit TEXT,
    heartbeat_pub   TEXT,
    heartbeat_sub   TEXT,
    created         TEXT NOT NULL
) STRICT;

CREATE TRIGGER nodes_no_overlap_insert BEFORE INSERT ON nodes
WHEN EXISTS (SELECT 1 FROM nodes n
             WHERE n.address <= NEW.address + NEW.elements - 1
               AND NEW.address <= n.address + n.elements - 1)
  OR EXISTS (SELECT 1 FROM reservations r
             WHERE r.uuid != NEW.uuid
               AND r.address <= NEW.address + NEW.elements - 1
               AND NEW.address <= r.address + r.elements - 1)
BEGIN SELECT RAISE(ABORT, 'unicast range overlaps another node or reservation'); END;

CREATE TRIGGER nodes_no_overlap_update BEFORE UPDATE OF address, elements ON nodes
WHEN EXISTS (SELECT 1 FROM nodes n
             WHERE n.uuid != NEW.uuid
               AND n.address <= NEW.address + NEW.elements - 1
               AND NEW.address <= n.address + n.elements - 1)
BEGIN SELECT RAISE(ABORT, 'unicast range overlaps another node'); END;

CREATE TABLE node_net_keys (
    node    BLOB NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
    idx     INTEGER NOT NULL REFERENCES net_keys(idx),
    updated INTEGER NOT NULL DEFAULT 0 CHECK (updated IN (0, 1)),
    PRIMARY KEY (node, idx)
) STRICT;

CREATE TABLE node_app_keys (
    node    BLOB NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
    idx     INTEGER NOT NULL REFERENCES app_keys(idx),
    updated INTEGER NOT NULL DEFAULT 0 CHECK (updated IN (0, 1)),
    PRIMARY KEY (node, idx)
) STRICT;

CREATE TABLE elements (
    node     BLOB NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
    idx      INTEGER NOT NULL CHECK (idx BETWEEN 0 AND 254),
    name     TEXT,
    location INTEGER NOT NULL DEFAULT 0 CHECK (location BETWEEN 0 AND 65535),
    PRIMARY KEY (node, idx)
) STRICT;

CREATE TABLE models (
    node        BLOB NOT NULL,
    element     INTEGER NOT NULL,
    vendor      INTEGER NOT NULL CHECK (vendor IN (0, 1)),
    model_id    INTEGER NOT NULL CHECK (model_id BETWEEN 0 AND 4294967295),
    pub_address TEXT,
    pub_index   INTEGER,
    pub_ttl     INTEGER,
    pub_period_steps INTEGER,
    pub_period_resolution INTEGER,
    pub_credentials INTEGER,
    pub_retransmit_count INTEGER,
    pub_retransmit_interval INTEGER,
    PRIMARY KEY (node, element, vendor, model_id),
    FOREIGN KEY (node, element) REFERENCES elements(node, idx) ON DELETE CASCADE
) STRICT;

CREATE TABLE model_bindings (
    node     BLOB NOT NULL,
    element  INTEGER NOT NULL,
    vendor   INTEGER NOT NULL,
    model_id INTEGER NOT NULL,
    app_key  INTEGER NOT NULL,
    PRIMARY KEY (node, element, vendor, model_id, app_key),
    FOREIGN KEY (node, element, vendor, model_id)
        REFERENCES models(node, element, vendor, model_id) ON DELETE CASCADE
) STRICT;

CREATE TABLE model_subscriptions (
    node     BLOB NOT NULL,
    element  INTEGER NOT NULL,
    vendor   INTEGER NOT NULL,
    model_id INTEGER NOT NULL,
    address  TEXT NOT NULL,
    PRIMARY KEY (node, element, vendor, model_id, address),
    FOREIGN KEY (node, element, vendor, model_id)
        REFERENCES models(node, element, vendor, model_id) ON DELETE CASCADE
) STRICT;

CREATE TRIGGER reservations_no_overlap BEFORE INSERT ON reservations
WHEN EXISTS (SELECT 1 FROM nodes n
             WHERE n.address <= NEW.address + NEW.elements - 1
               AND NEW.address <= n.address + n.elements - 1)
  OR EXISTS (SELECT 1 FROM reservations r
             WHERE r.uuid != NEW.uuid
               AND r.address <= NEW.address + NEW.elements - 1
               AND NEW.address <= r.address + r.elements - 1)
BEGIN SELECT RAISE(ABORT, 'unicast range overlaps a node or another reservation'); END;

CREATE TABLE exclusions (
    iv_index INTEGER NOT NULL,
    address  INTEGER NOT NULL CHECK (address BETWEEN 1 AND 32767),
    PRIMARY KEY (iv_index, address)
) STRICT;

CREATE TABLE groups (
    address TEXT PRIMARY KEY,
    name    TEXT NOT NULL,
    parent  TEXT NOT NULL
) STRICT;

CREATE TABLE scenes (
    number INTEGER PRIMARY KEY CHECK (number BETWEEN 1 AND 65535),
    name   TEXT NOT NULL
) STRICT;

CREATE TABLE scene_addresses (
    scene   INTEGER NOT NULL REFERENCES scenes(number) ON DELETE CASCADE,
    address INTEGER NOT NULL,
    PRIMARY KEY (scene, address)
) STRICT;

CREATE TABLE seq_blocks (
    element INTEGER PRIMARY KEY CHECK (element BETWEEN 0 AND 65535),
    next    INTEGER NOT NULL CHECK (next BETWEEN 0 AND 16777216)
) STRICT;

CREATE TABLE journal (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     TEXT NOT NULL,
    uuid   BLOB,
    event  TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
) STRICT;
"#;

/// Version 2: the key refresh journal, one row per NetKey whose key refresh is under way. The
/// new and old keys themselves live in `net_keys` / `app_keys` (`key`, `old_key`, `phase`), as
/// for any other key; the journal is the procedure's progress as JSON (which node acknowledged
/// which phase), written after every acknowledgement.
const V2: &str = r#"
CREATE TABLE key_refresh (
    net_key_index INTEGER PRIMARY KEY REFERENCES net_keys(idx),
    started       TEXT NOT NULL,
    updated       TEXT NOT NULL,
    journal       TEXT NOT NULL CHECK (json_valid(journal))
) STRICT;
"#;

/// Version 3: secrets at rest (README "Secrets at rest"). The `store_encryption` row, present
/// only in an encrypted store, holds the Argon2id cost and salt and the passphrase verifier
/// (`store/seal.rs`). The three tables with key columns are rebuilt (SQLite cannot change a
/// CHECK in place) so that a key is either 16 plaintext octets or a 56-octet sealed value, and
/// triggers make the database itself refuse a plaintext key in an encrypted store and a sealed
/// one in a plain store, whatever the code above it does. Foreign keys are off while this runs
/// (see [`prepare`]), and checked before it commits.
const V3: &str = r#"
CREATE TABLE store_encryption (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    kdf        TEXT NOT NULL CHECK (kdf = 'argon2id-v19'),
    memory_kib INTEGER NOT NULL CHECK (memory_kib BETWEEN 8 AND 4194304),
    time_cost  INTEGER NOT NULL CHECK (time_cost BETWEEN 1 AND 100),
    lanes      INTEGER NOT NULL CHECK (lanes BETWEEN 1 AND 16),
    salt       BLOB NOT NULL CHECK (length(salt) = 16),
    aead       TEXT NOT NULL CHECK (aead = 'xchacha20poly1305'),
    verifier   BLOB NOT NULL CHECK (length(verifier) = 56),
    scrubbed   INTEGER NOT NULL DEFAULT 0 CHECK (scrubbed IN (0, 1)),
    changed    TEXT NOT NULL
) STRICT;

DROP TRIGGER reservations_no_overlap;

CREATE TABLE net_keys_v3 (
    idx          INTEGER PRIMARY KEY CHECK (idx BETWEEN 0 AND 4095),
    name         TEXT NOT NULL,
    key          BLOB NOT NULL CHECK (length(key) IN (16, 56)),
    old_key      BLOB CHECK (old_key IS NULL OR length(old_key) IN (16, 56)),
    phase        INTEGER NOT NULL DEFAULT 0 CHECK (phase IN (0, 1, 2)),
    min_security TEXT NOT NULL DEFAULT 'secure' CHECK (min_security IN ('secure', 'insecure')),
    timestamp    TEXT NOT NULL
) STRICT;
INSERT INTO net_keys_v3 (idx, name, key, old_key, phase, min_security, timestamp)
    SELECT idx, name, key, old_key, phase, min_security, timestamp FROM net_keys;
DROP TABLE net_keys;
ALTER TABLE net_keys_v3 RENAME TO net_keys;

CREATE TABLE app_keys_v3 (
    idx           INTEGER PRIMARY KEY CHECK (idx BETWEEN 0 AND 4095),
    name          TEXT NOT NULL,
    bound_net_key INTEGER NOT NULL REFERENCES net_keys(idx),
    key           BLOB NOT NULL CHECK (length(key) IN (16, 56)),
    old_key       BLOB CHECK (old_key IS NULL OR length(old_key) IN (16, 56))
) STRICT;
INSERT INTO app_keys_v3 (idx, name, bound_net_key, key, old_key)
    SELECT idx, name, bound_net_key, key, old_key FROM app_keys;
DROP TABLE app_keys;
ALTER TABLE app_keys_v3 RENAME TO app_keys;

CREATE TABLE nodes_v3 (
    uuid            BLOB PRIMARY KEY CHECK (length(uuid) = 16),
    address         INTEGER NOT NULL UNIQUE CHECK (address BETWEEN 1 AND 32767),
    elements        INTEGER NOT NULL CHECK (elements BETWEEN 1 AND 255 AND address + elements - 1 <= 32767),
    device_key      BLOB NOT NULL CHECK (length(device_key) IN (16, 56)),
    state           TEXT NOT NULL CHECK (state IN ('unconfirmed', 'provisioned')),
    config_complete INTEGER NOT NULL DEFAULT 0 CHECK (config_complete IN (0, 1)),
    excluded        INTEGER NOT NULL DEFAULT 0 CHECK (excluded IN (0, 1)),
    security        TEXT NOT NULL DEFAULT 'secure' CHECK (security IN ('secure', 'insecure')),
    name            TEXT NOT NULL DEFAULT '',
    serial          TEXT,
    building        TEXT,
    floor           TEXT,
    room            TEXT,
    cid             INTEGER,
    pid             INTEGER,
    vid             INTEGER,
    crpl            INTEGER,
    relay           INTEGER,
    proxy           INTEGER,
    friend          INTEGER,
    low_power       INTEGER,
    secure_network_beacon INTEGER,
    default_ttl     INTEGER,
    network_transmit TEXT,
    relay_retransmit TEXT,
    heartbeat_pub   TEXT,
    heartbeat_sub   TEXT,
    created         TEXT NOT NULL
) STRICT;
INSERT INTO nodes_v3 SELECT uuid, address, elements, device_key, state, config_complete, excluded,
    security, name, serial, building, floor, room, cid, pid, vid, crpl, relay, proxy, friend,
    low_power, secure_network_beacon, default_ttl, network_transmit, relay_retransmit,
    heartbeat_pub, heartbeat_sub, created FROM nodes;
DROP TABLE nodes;
ALTER TABLE nodes_v3 RENAME TO nodes;

CREATE TRIGGER nodes_no_overlap_insert BEFORE INSERT ON nodes
WHEN EXISTS (SELECT 1 FROM nodes n
             WHERE n.address <= NEW.address + NEW.elements - 1
               AND NEW.address <= n.address + n.elements - 1)
  OR EXISTS (SELECT 1 FROM reservations r
             WHERE r.uuid != NEW.uuid
               AND r.address <= NEW.address + NEW.elements - 1
               AND NEW.address <= r.address + r.elements - 1)
BEGIN SELECT RAISE(ABORT, 'unicast range overlaps another node or reservation'); END;

CREATE TRIGGER nodes_no_overlap_update BEFORE UPDATE OF address, elements ON nodes
WHEN EXISTS (SELECT 1 FROM nodes n
             WHERE n.uuid != NEW.uuid
               AND n.address <= NEW.address + NEW.elements - 1
               AND NEW.address <= n.address + n.elements - 1)
BEGIN SELECT RAISE(ABORT, 'unicast range overlaps another node'); END;

CREATE TRIGGER reservations_no_overlap BEFORE INSERT ON reservations
WHEN EXISTS (SELECT 1 FROM nodes n
             WHERE n.address <= NEW.address + NEW.elements - 1
               AND NEW.address <= n.address + n.elements - 1)
  OR EXISTS (SELECT 1 FROM reservations r
             WHERE r.uuid != NEW.uuid
               AND r.address <= NEW.address + NEW.elements - 1
               AND NEW.address <= r.address + r.elements - 1)
BEGIN SELECT RAISE(ABORT, 'unicast range overlaps a node or another reservation'); END;

CREATE TRIGGER net_keys_at_rest_insert BEFORE INSERT ON net_keys
WHEN length(NEW.key) != (SELECT CASE WHEN count(*) > 0 THEN 56 ELSE 16 END FROM store_encryption)
  OR (NEW.old_key IS NOT NULL AND length(NEW.old_key) != (SELECT CASE WHEN count(*) > 0 THEN 56 ELSE 16 END FROM store_encryption))
BEGIN SELECT RAISE(ABORT, 'a key must be sealed in an encrypted store and plaintext in any other'); END;
CREATE TRIGGER net_keys_at_rest_update BEFORE UPDATE OF key, old_key ON net_keys
WHEN length(NEW.key) != (SELECT CASE WHEN count(*) > 0 THEN 56 ELSE 16 END FROM store_encryption)
  OR (NEW.old_key IS NOT NULL AND length(NEW.old_key) != (SELECT CASE WHEN count(*) > 0 THEN 56 ELSE 16 END FROM store_encryption))
BEGIN SELECT RAISE(ABORT, 'a key must be sealed in an encrypted store and plaintext in any other'); END;
CREATE TRIGGER app_keys_at_rest_insert BEFORE INSERT ON app_keys
WHEN length(NEW.key) != (SELECT CASE WHEN count(*) > 0 THEN 56 ELSE 16 END FROM store_encryption)
  OR (NEW.old_key IS NOT NULL AND length(NEW.old_key) != (SELECT CASE WHEN count(*) > 0 THEN 56 ELSE 16 END FROM store_encryption))
BEGIN SELECT RAISE(ABORT, 'a key must be sealed in an encrypted store and plaintext in any other'); END;
CREATE TRIGGER app_keys_at_rest_update BEFORE UPDATE OF key, old_key ON app_keys
WHEN length(NEW.key) != (SELECT CASE WHEN count(*) > 0 THEN 56 ELSE 16 END FROM store_encryption)
  OR (NEW.old_key IS NOT NULL AND length(NEW.old_key) != (SELECT CASE WHEN count(*) > 0 THEN 56 ELSE 16 END FROM store_encryption))
BEGIN SELECT RAISE(ABORT, 'a key must be sealed in an encrypted store and plaintext in any other'); END;
CREATE TRIGGER nodes_key_at_rest_insert BEFORE INSERT ON nodes
WHEN length(NEW.device_key) != (SELECT CASE WHEN count(*) > 0 THEN 56 ELSE 16 END FROM store_encryption)
BEGIN SELECT RAISE(ABORT, 'a key must be sealed in an encrypted store and plaintext in any other'); END;
CREATE TRIGGER nodes_key_at_rest_update BEFORE UPDATE OF device_key ON nodes
WHEN length(NEW.device_key) != (SELECT CASE WHEN count(*) > 0 THEN 56 ELSE 16 END FROM store_encryption)
BEGIN SELECT RAISE(ABORT, 'a key must be sealed in an encrypted store and plaintext in any other'); END;
"#;

/// Sets the connection up (WAL, synchronous=FULL, foreign keys) and migrates the schema.
pub(crate) fn prepare(conn: &mut Connection) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // WAL: readers never block the writer, and a torn write can only lose the uncommitted tail.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!(
            "SQLite refused WAL mode (journal mode is {mode})"
        )));
    }
    // FULL: every commit is fsynced before it returns, so a committed device key survives a
    // power cut, not only a killed process.
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Foreign keys are off while migrations run: a table rebuild (V3) drops and renames
    // tables that others refer to, which with foreign keys on would cascade deletes. Each
    // migration checks them before it commits instead. (The pragma is per connection and a
    // no-op inside a transaction, so it is set here, outside.)
    conn.pragma_update(None, "foreign_keys", false)?;
    migrate(conn)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        // Another process may have migrated while we waited for the lock.
        let now: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now as usize > from {
            continue;
        }
        if from == 0 {
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        }
        tx.execute_batch(sql)?;
        let broken: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()?;
        if let Some(table) = broken {
            return Err(StoreError::Corrupt(format!(
                "migration to schema version {} left a row of {table} pointing at a missing row; the store is unchanged",
                from + 1
            )));
        }
        tx.pragma_update(None, "user_version", from as u32 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
