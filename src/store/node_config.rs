//! What configuring a node teaches the store: its Composition Data, the AppKeys it accepted,
//! its model bindings, a Node Reset — and the unicast address this provisioner itself sends
//! Configuration messages from.
//!
//! These are additions only: existing tables (`nodes`, `elements`, `models`,
//! `node_app_keys`, `model_bindings`, `reservations`, `journal`), no schema change.

use rusqlite::{OptionalExtension, params};

use super::{ModelId, Node, Store, StoreError, format_ranges, now_iso8601, taken_spans, touch};
use crate::uuid::DeviceUuid;

/// Journal event of a node that answered Node Reset: its device forgot the network.
pub const JOURNAL_NODE_RESET: &str = "node-reset";

/// Composition Data page 0 as the store records it (MshPRT v1.1 §4.2.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompositionRecord {
    /// Company ID.
    pub cid: u16,
    /// Product ID.
    pub pid: u16,
    /// Version ID.
    pub vid: u16,
    /// Replay protection list size.
    pub crpl: u16,
    /// Relay, Proxy, Friend, Low Power: supported or not.
    pub features_supported: [bool; 4],
    /// One entry per element, primary first: its location and models.
    pub elements: Vec<(u16, Vec<ModelId>)>,
}

impl Store {
    /// The unicast address this provisioner sends from (its Configuration Client's element).
    ///
    /// Chosen once, on first use, as the highest free address of this provisioner's unicast
    /// ranges (0x7FFF with the default range 0001-7FFF), and kept as a reservation under the
    /// provisioner's own UUID: the database's triggers and the allocator then never give it to
    /// a node. SEQ numbers of that address come from [`Store::reserve_seq`], so they never
    /// repeat across runs.
    pub fn provisioner_address(&mut self) -> Result<u16, StoreError> {
        let (uuid, _) = self.self_provisioner()?;
        let mut ranges = self.unicast_ranges()?;
        ranges.sort_by_key(|r| std::cmp::Reverse(r.high));
        // Another process may reserve meanwhile: the database's triggers refuse an overlap.
        let tx = self.write()?;
        let existing: Option<u16> = tx
            .query_row(
                "SELECT address FROM reservations WHERE uuid = ?1",
                [&uuid.0[..]],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(a) = existing {
            return Ok(a);
        }
        let taken = taken_spans(&tx)?;
        let free = |a: u16| !taken.iter().any(|(f, l)| *f <= a && a <= *l);
        let address = ranges
            .iter()
            .find_map(|r| (r.low.max(1)..=r.high.min(0x7fff)).rev().find(|a| free(*a)))
            .ok_or_else(|| StoreError::AddressesExhausted {
                elements: 1,
                ranges: format_ranges(&ranges),
            })?;
        tx.execute(
            "INSERT INTO reservations (uuid, address, elements, created) VALUES (?1, ?2, 1, ?3)",
            params![&uuid.0[..], address, now_iso8601()],
        )?;
        tx.commit()?;
        Ok(address)
    }

    /// Records a node's Composition Data page 0: CID, PID, VID, CRPL; a feature it does not
    /// support as 2 ("not supported", as in the CDB); and, for each of its elements, the
    /// location and the models (models no longer listed are removed with their bindings).
    /// Elements beyond the node's element count are not recorded (their addresses are not the
    /// node's). Returns how many elements were recorded.
    pub fn record_composition(
        &mut self,
        uuid: &DeviceUuid,
        c: &CompositionRecord,
    ) -> Result<usize, StoreError> {
        let tx = self.write()?;
        let elements: Option<u8> = tx
            .query_row(
                "SELECT elements FROM nodes WHERE uuid = ?1",
                [&uuid.0[..]],
                |r| r.get(0),
            )
            .optional()?;
        let elements = elements.ok_or_else(|| StoreError::NoSuchNode(uuid.to_string()))?;
        let u = &uuid.0[..];
        tx.execute(
            "UPDATE nodes SET cid = ?2, pid = ?3, vid = ?4, crpl = ?5 WHERE uuid = ?1",
            params![u, c.cid, c.pid, c.vid, c.crpl],
        )?;
        for (column, supported) in ["relay", "proxy", "friend", "low_power"]
            .iter()
            .zip(c.features_supported)
        {
            // A supported feature's state (enabled or not) is not in the Composition Data:
            // keep what is known, but forget an earlier "not supported".
            let sql = if supported {
                format!("UPDATE nodes SET {column} = NULL WHERE uuid = ?1 AND {column} = 2")
            } else {
                format!("UPDATE nodes SET {column} = 2 WHERE uuid = ?1")
            };
            tx.execute(&sql, [u])?;
        }
        let recorded = c.elements.len().min(usize::from(elements));
        for (i, (location, models)) in (0u8..).zip(c.elements.iter().take(recorded)) {
            tx.execute(
                "INSERT INTO elements (node, idx, location) VALUES (?1, ?2, ?3)
                 ON CONFLICT (node, idx) DO UPDATE SET location = excluded.location",
                params![u, i, location],
            )?;
            let stored: Vec<(bool, u32)> = tx
                .prepare("SELECT vendor, model_id FROM models WHERE node = ?1 AND element = ?2")?
                .query_map(params![u, i], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (vendor, id) in stored {
                if !models.contains(&ModelId { vendor, id }) {
                    tx.execute(
                        "DELETE FROM models WHERE node = ?1 AND element = ?2 AND vendor = ?3 AND model_id = ?4",
                        params![u, i, vendor, id],
                    )?;
                }
            }
            for m in models {
                tx.execute(
                    "INSERT OR IGNORE INTO models (node, element, vendor, model_id) VALUES (?1, ?2, ?3, ?4)",
                    params![u, i, m.vendor, m.id],
                )?;
            }
        }
        touch(&tx)?;
        tx.commit()?;
        Ok(recorded)
    }

    /// The models recorded for a node (from its Composition Data or a CDB import), by element
    /// index.
    pub fn node_models(&self, uuid: &DeviceUuid) -> Result<Vec<(u8, ModelId)>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT element, vendor, model_id FROM models WHERE node = ?1
             ORDER BY element, vendor, model_id",
        )?;
        Ok(st
            .query_map([&uuid.0[..]], |r| {
                Ok((
                    r.get(0)?,
                    ModelId {
                        vendor: r.get(1)?,
                        id: r.get(2)?,
                    },
                ))
            })?
            .collect::<Result<_, _>>()?)
    }

    /// The node accepted AppKey `app_key` (AppKey Status: Success). Idempotent; an AppKey
    /// index the network does not have is refused.
    pub fn record_node_app_key(
        &mut self,
        uuid: &DeviceUuid,
        app_key: u16,
    ) -> Result<(), StoreError> {
        let tx = self.write()?;
        let known: bool = tx.query_row(
            "SELECT count(*) FROM app_keys WHERE idx = ?1",
            [app_key],
            |r| r.get(0),
        )?;
        if !known {
            return Err(StoreError::InvalidArgument(format!(
                "no AppKey with index {app_key}"
            )));
        }
        tx.execute(
            "INSERT OR IGNORE INTO node_app_keys (node, idx, updated) VALUES (?1, ?2, 0)",
            params![&uuid.0[..], app_key],
        )?;
        touch(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// The node bound AppKey `app_key` to `model` of its element `element` (an index from 0;
    /// Model App Status: Success). The element and model rows are created when the node's
    /// composition was never recorded.
    pub fn record_binding(
        &mut self,
        uuid: &DeviceUuid,
        element: u8,
        model: ModelId,
        app_key: u16,
    ) -> Result<(), StoreError> {
        let tx = self.write()?;
        let u = &uuid.0[..];
        tx.execute(
            "INSERT OR IGNORE INTO elements (node, idx, location) VALUES (?1, ?2, 0)",
            params![u, element],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO models (node, element, vendor, model_id) VALUES (?1, ?2, ?3, ?4)",
            params![u, element, model.vendor, model.id],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO model_bindings (node, element, vendor, model_id, app_key)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![u, element, model.vendor, model.id, app_key],
        )?;
        touch(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// A node's model bindings: (element index, model, AppKey index), ordered.
    pub fn node_bindings(&self, uuid: &DeviceUuid) -> Result<Vec<(u8, ModelId, u16)>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT element, vendor, model_id, app_key FROM model_bindings WHERE node = ?1
             ORDER BY element, vendor, model_id, app_key",
        )?;
        Ok(st
            .query_map([&uuid.0[..]], |r| {
                Ok((
                    r.get(0)?,
                    ModelId {
                        vendor: r.get(1)?,
                        id: r.get(2)?,
                    },
                    r.get(3)?,
                ))
            })?
            .collect::<Result<_, _>>()?)
    }

    /// The node at `address` answered Node Reset: it is marked excluded ([`Store::exclude_node`]:
    /// kept, its addresses never reused, its element addresses in the exclusions), then a
    /// `node-reset` line goes to the journal. Returns the node as it was.
    pub fn record_node_reset(&mut self, address: u16) -> Result<Node, StoreError> {
        // Exclusion first: should the journal line be lost in a crash, the network's record is
        // still right; only a simulation would think the device still provisioned.
        let node = self.exclude_node(address)?;
        self.journal_append(
            Some(&node.uuid),
            JOURNAL_NODE_RESET,
            &format!("node {:04X} answered Node Reset", node.address),
        )?;
        Ok(node)
    }

    /// Whether the node's device answered a Node Reset (journal event `node-reset`): it is an
    /// unprovisioned device again.
    pub fn node_was_reset(&self, uuid: &DeviceUuid) -> Result<bool, StoreError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM journal WHERE uuid = ?1 AND event = ?2",
            params![&uuid.0[..], JOURNAL_NODE_RESET],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }
}
