//! What a rollout keeps in the store besides nodes: AppKeys and groups by name (the plan's
//! templates name them; the store gives them their index and address once and for all), and
//! the subscriptions and publications a template gave each node.
//!
//! Additions only: existing tables (`app_keys`, `groups`, `models`, `model_subscriptions`),
//! no schema change.

use rusqlite::{OptionalExtension, params};

use super::{ModelId, Store, StoreError, touch};
use crate::uuid::DeviceUuid;

/// The first group address a rollout hands out (MshPRT v1.1 §3.4.2.4: 0xC000–0xFEFF are
/// group addresses; 0xFF00 and above are fixed or RFU).
pub const FIRST_GROUP: u16 = 0xc000;
/// The last group address a rollout hands out.
pub const LAST_GROUP: u16 = 0xfeff;

impl Store {
    /// The index of the AppKey named `name`, if the store has one.
    pub fn app_key_by_name(&self, name: &str) -> Result<Option<u16>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT idx FROM app_keys WHERE name = ?1 ORDER BY idx LIMIT 1",
                [name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The group address named `name`: the one recorded, or the lowest free one from
    /// [`FIRST_GROUP`] (recorded before it returns, CDB `groups`).
    pub fn group_address(&mut self, name: &str) -> Result<u16, StoreError> {
        let tx = self.write()?;
        let found: Option<String> = tx
            .query_row(
                "SELECT address FROM groups WHERE name = ?1 ORDER BY address LIMIT 1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(a) = found
            .as_deref()
            .and_then(|a| u16::from_str_radix(a, 16).ok())
        {
            return Ok(a);
        }
        let used: Vec<String> = tx
            .prepare("SELECT address FROM groups")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let used: Vec<u16> = used
            .iter()
            .filter_map(|a| u16::from_str_radix(a, 16).ok())
            .collect();
        let address = (FIRST_GROUP..=LAST_GROUP)
            .find(|a| !used.contains(a))
            .ok_or_else(|| {
                StoreError::InvalidArgument("every group address C000-FEFF is in use".into())
            })?;
        tx.execute(
            "INSERT INTO groups (address, name, parent) VALUES (?1, ?2, '0000')",
            params![format!("{address:04X}"), name],
        )?;
        touch(&tx)?;
        tx.commit()?;
        Ok(address)
    }

    /// Voids the commit of an `unconfirmed` node whose device proved it never took its
    /// Provisioning Data: it acknowledged a new Link Open as an unprovisioned device, or it
    /// answered the Data with Provisioning Failed (MshPRT v1.1 §5.4.4). `why` says which, in
    /// words, for the journal. The node's addresses join the exclusions, so they are never
    /// handed out again (retired, not released: a Provisioning Failed is neither encrypted nor
    /// authenticated, so nothing proves the device never used them), the node is removed (its
    /// device key is not in the device), and the journal says so in one line
    /// (`unconfirmed-void`, detail `addresses 0001-0002 retired: <why>`); all in one
    /// transaction. Any other state is refused and changes nothing. Returns the voided primary
    /// address.
    pub fn void_unconfirmed(&mut self, uuid: &DeviceUuid, why: &str) -> Result<u16, StoreError> {
        let node = self.node_by_uuid(uuid)?;
        if node.state != super::NodeState::Unconfirmed {
            return Err(StoreError::InvalidArgument(format!(
                "node {uuid} is {}, not unconfirmed: its commit stands",
                node.state
            )));
        }
        let tx = self.write()?;
        void_in(&tx, uuid, node.address, node.elements, why)?;
        touch(&tx)?;
        tx.commit()?;
        Ok(node.address)
    }

    /// Runs `f` with `PRAGMA synchronous = NORMAL` instead of `FULL`, then restores `FULL`: for
    /// records whose loss in a power cut costs only work done again — what a configured node
    /// holds, written before its `configComplete` flag — never for key material. In WAL mode
    /// NORMAL keeps the database consistent and skips the fsync of each commit, which is most
    /// of the time a 1,000-node rollout spends writing.
    pub fn with_relaxed_sync<T>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let r = f(self);
        let back = self.conn.pragma_update(None, "synchronous", "FULL");
        let v = r?;
        back?;
        Ok(v)
    }

    /// The groups: (address, name), by address.
    pub fn groups(&self) -> Result<Vec<(u16, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT address, name FROM groups ORDER BY address")?;
        let rows: Vec<(String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows
            .into_iter()
            .filter_map(|(a, n)| u16::from_str_radix(&a, 16).ok().map(|a| (a, n)))
            .collect())
    }

    /// The node's model on `element` subscribes to `address` (CDB `subscribe`).
    pub fn record_subscription(
        &mut self,
        uuid: &DeviceUuid,
        element: u8,
        model: ModelId,
        address: u16,
    ) -> Result<(), StoreError> {
        let tx = self.write()?;
        let u = &uuid.0[..];
        ensure_model(&tx, u, element, model)?;
        tx.execute(
            "INSERT OR IGNORE INTO model_subscriptions (node, element, vendor, model_id, address)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![u, element, model.vendor, model.id, format!("{address:04X}")],
        )?;
        touch(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// The node's subscriptions: (element, model, address), ordered.
    pub fn node_subscriptions(
        &self,
        uuid: &DeviceUuid,
    ) -> Result<Vec<(u8, ModelId, u16)>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT element, vendor, model_id, address FROM model_subscriptions WHERE node = ?1
             ORDER BY element, vendor, model_id, address",
        )?;
        let rows: Vec<(u8, bool, u32, String)> = st
            .query_map([&uuid.0[..]], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows
            .into_iter()
            .filter_map(|(e, vendor, id, a)| {
                u16::from_str_radix(&a, 16)
                    .ok()
                    .map(|a| (e, ModelId { vendor, id }, a))
            })
            .collect())
    }

    /// The node's model on `element` publishes to `address` with AppKey `app_key`, `ttl`,
    /// the Publish Period octet `period` and the Publish Retransmit octet `retransmit`
    /// (MshPRT v1.1 §4.2.3; CDB `publish`).
    #[allow(clippy::too_many_arguments)]
    pub fn record_publication(
        &mut self,
        uuid: &DeviceUuid,
        element: u8,
        model: ModelId,
        address: u16,
        app_key: u16,
        ttl: u8,
        period: u8,
        retransmit: u8,
    ) -> Result<(), StoreError> {
        let tx = self.write()?;
        let u = &uuid.0[..];
        ensure_model(&tx, u, element, model)?;
        tx.execute(
            "UPDATE models SET pub_address = ?5, pub_index = ?6, pub_ttl = ?7,
                 pub_period_steps = ?8, pub_period_resolution = ?9, pub_credentials = 0,
                 pub_retransmit_count = ?10, pub_retransmit_interval = ?11
             WHERE node = ?1 AND element = ?2 AND vendor = ?3 AND model_id = ?4",
            params![
                u,
                element,
                model.vendor,
                model.id,
                format!("{address:04X}"),
                app_key,
                ttl,
                period & 0x3f,
                period >> 6,
                retransmit & 0x07,
                // CDB: the interval in ms.
                (u32::from(retransmit >> 3) + 1) * 50
            ],
        )?;
        touch(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// The node's publications: (element, model, address, AppKey index), ordered.
    pub fn node_publications(
        &self,
        uuid: &DeviceUuid,
    ) -> Result<Vec<(u8, ModelId, u16, u16)>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT element, vendor, model_id, pub_address, pub_index FROM models
             WHERE node = ?1 AND pub_address IS NOT NULL ORDER BY element, vendor, model_id",
        )?;
        let rows: Vec<(u8, bool, u32, String, u16)> = st
            .query_map([&uuid.0[..]], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows
            .into_iter()
            .filter_map(|(e, vendor, id, a, k)| {
                u16::from_str_radix(&a, 16)
                    .ok()
                    .map(|a| (e, ModelId { vendor, id }, a, k))
            })
            .collect())
    }
}

fn ensure_model(
    tx: &rusqlite::Transaction<'_>,
    u: &[u8],
    element: u8,
    model: ModelId,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR IGNORE INTO elements (node, idx, location) VALUES (?1, ?2, 0)",
        params![u, element],
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO models (node, element, vendor, model_id) VALUES (?1, ?2, ?3, ?4)",
        params![u, element, model.vendor, model.id],
    )?;
    Ok(())
}

/// The body of [`Store::void_unconfirmed`] inside `tx`: the node's addresses retired, the node
/// removed, one journal line. The caller has checked that the node is `unconfirmed`.
pub(super) fn void_in(
    tx: &rusqlite::Transaction<'_>,
    uuid: &DeviceUuid,
    address: u16,
    elements: u8,
    why: &str,
) -> Result<(), StoreError> {
    let iv: u32 = tx.query_row("SELECT iv_index FROM network", [], |r| r.get(0))?;
    for a in address..address + u16::from(elements) {
        tx.execute(
            "INSERT OR IGNORE INTO exclusions (iv_index, address) VALUES (?1, ?2)",
            params![iv, a],
        )?;
    }
    tx.execute("DELETE FROM nodes WHERE uuid = ?1", [&uuid.0[..]])?;
    tx.execute(
        "INSERT INTO journal (at, uuid, event, detail) VALUES (?1, ?2, 'unconfirmed-void', ?3)",
        params![
            super::now_iso8601(),
            &uuid.0[..],
            format!(
                "addresses {:04X}-{:04X} retired: {why}",
                address,
                address + u16::from(elements) - 1
            )
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_allocated_once_per_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("n.db")).unwrap();
        let mut rng = rand_chacha::rand_core::SeedableRng::seed_from_u64(1);
        let rng: &mut rand_chacha::ChaCha20Rng = &mut rng;
        s.create_network("n", None, rng).unwrap();
        let a = s.group_address("floor-1").unwrap();
        let b = s.group_address("floor-2").unwrap();
        assert_eq!((a, b), (0xc000, 0xc001));
        assert_eq!(s.group_address("floor-1").unwrap(), 0xc000);
        assert_eq!(s.groups().unwrap().len(), 2);
        assert_eq!(s.app_key_by_name("lights").unwrap(), None);
        let i = s.add_app_key("lights", 0, None, rng).unwrap();
        assert_eq!(s.app_key_by_name("lights").unwrap(), Some(i));
    }

    /// A device that refused its Provisioning Data (or took a new link): its commit is voided,
    /// its addresses retired — never handed out again, to it or any other device — and the
    /// journal says why; a node whose commit stands cannot be voided.
    #[test]
    fn a_voided_commit_retires_its_addresses_and_the_journal_says_why() {
        use crate::store::{NewNode, NodeState};
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("n.db")).unwrap();
        let mut rng: rand_chacha::ChaCha20Rng =
            rand_chacha::rand_core::SeedableRng::seed_from_u64(2);
        s.create_network("n", None, &mut rng).unwrap();
        let u = |b: u8| DeviceUuid([b; 16]);
        let commit = |s: &mut Store, uuid: DeviceUuid, elements: u8| {
            let address = s.allocate_unicast(&uuid, elements).unwrap();
            s.commit_node(&NewNode {
                uuid,
                name: "light".into(),
                address,
                elements,
                device_key: mesh_crypto::DevKey::from_bytes([7; 16]),
                net_key_index: 0,
                location: None,
            })
            .unwrap();
            address
        };
        assert_eq!(commit(&mut s, u(1), 2), 0x0001);
        let why = "the device answered its Provisioning Data with Provisioning Failed: Cannot Assign Addresses (0x08), so it holds no key";
        assert_eq!(s.void_unconfirmed(&u(1), why).unwrap(), 0x0001);
        assert!(matches!(
            s.node_by_uuid(&u(1)),
            Err(StoreError::NoSuchNode(_))
        ));
        let j = s.journal().unwrap();
        let last = j.last().unwrap();
        assert_eq!(last.event, "unconfirmed-void");
        assert_eq!(last.uuid, Some(u(1)));
        assert_eq!(last.detail, format!("addresses 0001-0002 retired: {why}"));
        // Retired: another device does not get 0001-0002, and the same device is provisioned
        // afresh at a new range.
        assert_eq!(s.allocate_unicast(&u(2), 1).unwrap(), 0x0003);
        assert_eq!(commit(&mut s, u(1), 2), 0x0004);
        // A confirmed node's commit stands.
        s.confirm_node(&u(1)).unwrap();
        let e = s.void_unconfirmed(&u(1), why).unwrap_err();
        assert!(e.to_string().contains("its commit stands"), "{e}");
        assert_eq!(s.node_by_uuid(&u(1)).unwrap().state, NodeState::Provisioned);
        assert_eq!(s.journal().unwrap().len(), j.len());
    }
}
