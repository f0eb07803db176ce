//! Moving a whole network between the database and a [`Cdb`] document: export and import.

use std::collections::{BTreeMap, BTreeSet};

use mesh_crypto::{AppKey, DevKey, NetKey};
use rand_core::CryptoRng;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::cdb::{
    self, Cdb, CdbAppKey, CdbElement, CdbError, CdbExclusion, CdbGroup, CdbModel, CdbNetKey,
    CdbNode, CdbProvisioner, CdbScene, Features, ModelId, Publication, Range16,
};
use super::seal::{KeyCipher, Slot};
use super::{Location, NodeRef, Security, Store, StoreError, random_uuid, uuid_from};
use crate::uuid::DeviceUuid;

/// What `cdb export` writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// Leave out every key (`key`, `oldKey`, `deviceKey`). Such a file cannot be imported.
    pub no_keys: bool,
    /// A partial export (`"partial": true`) of these nodes, with only the keys they know.
    pub partial_nodes: Option<Vec<NodeRef>>,
}

/// How `cdb import` treats the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Replace a different network, or drop nodes the file lacks.
    pub force: bool,
    /// Act as this provisioner of the file (e.g. after moving the store to a new laptop).
    pub as_provisioner: Option<DeviceUuid>,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// `meshName`.
    pub name: String,
    /// `meshUUID`.
    pub mesh_uuid: DeviceUuid,
    /// Number of NetKeys.
    pub net_keys: usize,
    /// Number of AppKeys.
    pub app_keys: usize,
    /// Number of nodes.
    pub nodes: usize,
    /// This provisioner's unicast ranges after the import.
    pub unicast_ranges: Vec<Range16>,
    /// A provisioner entry was added for meshprov because the file had none for it.
    pub provisioner_added: bool,
    /// A different network was replaced (`--force`).
    pub replaced_other: bool,
}

/// Reads the whole network, keys included (opened with `keys`).
pub(crate) fn read_document(conn: &Connection, keys: &KeyCipher) -> Result<Cdb, StoreError> {
    let (mesh_name, uuid, timestamp, iv) = conn
        .query_row(
            "SELECT name, mesh_uuid, timestamp, iv_index FROM network",
            [],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, u32>(3)?,
                ))
            },
        )
        .optional()?
        .ok_or(StoreError::NoNetwork)?;

    let mut net_keys = Vec::new();
    let mut st = conn.prepare(
        "SELECT idx, name, key, old_key, phase, min_security, timestamp FROM net_keys ORDER BY idx",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let index: u16 = r.get(0)?;
        let key = keys.open(Slot::NetKey { index, old: false }, r.get(2)?)?;
        let old_key = r
            .get::<_, Option<Vec<u8>>>(3)?
            .map(|b| keys.open(Slot::NetKey { index, old: true }, b))
            .transpose()?;
        net_keys.push(CdbNetKey {
            index,
            name: r.get(1)?,
            key: Some(NetKey::from_bytes(*key)),
            old_key: old_key.map(|k| NetKey::from_bytes(*k)),
            phase: r.get(4)?,
            min_security: Security::parse(&r.get::<_, String>(5)?),
            timestamp: r.get(6)?,
        });
    }

    let mut app_keys = Vec::new();
    let mut st =
        conn.prepare("SELECT idx, name, bound_net_key, key, old_key FROM app_keys ORDER BY idx")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let index: u16 = r.get(0)?;
        let key = keys.open(Slot::AppKey { index, old: false }, r.get(3)?)?;
        let old_key = r
            .get::<_, Option<Vec<u8>>>(4)?
            .map(|b| keys.open(Slot::AppKey { index, old: true }, b))
            .transpose()?;
        app_keys.push(CdbAppKey {
            index,
            name: r.get(1)?,
            bound_net_key: r.get(2)?,
            key: Some(AppKey::from_bytes(*key)),
            old_key: old_key.map(|k| AppKey::from_bytes(*k)),
        });
    }

    let mut provisioners = Vec::new();
    let mut st = conn.prepare("SELECT id, uuid, name FROM provisioners ORDER BY id")?;
    let list = st
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut rst = conn.prepare(
        "SELECT low, high FROM provisioner_ranges WHERE provisioner = ?1 AND kind = ?2 ORDER BY low",
    )?;
    for (id, uuid, name) in list {
        let mut get = |kind: &str| -> Result<Vec<Range16>, StoreError> {
            Ok(rst
                .query_map(params![id, kind], |r| {
                    Ok(Range16 {
                        low: r.get(0)?,
                        high: r.get(1)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?)
        };
        provisioners.push(CdbProvisioner {
            uuid: uuid_from(uuid)?,
            name,
            unicast: get("unicast")?,
            group: get("group")?,
            scene: get("scene")?,
        });
    }

    let nodes = read_nodes(conn, keys)?;

    let mut st = conn.prepare("SELECT address, name, parent FROM groups ORDER BY address")?;
    let groups = st
        .query_map([], |r| {
            Ok(CdbGroup {
                address: r.get(0)?,
                name: r.get(1)?,
                parent: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut st = conn.prepare("SELECT number, name FROM scenes ORDER BY number")?;
    let scene_rows = st
        .query_map([], |r| Ok((r.get::<_, u16>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut ast = conn.prepare("SELECT address FROM scene_addresses WHERE scene = ?1")?;
    let mut scenes = Vec::new();
    for (number, name) in scene_rows {
        let addresses = ast
            .query_map([number], |r| r.get::<_, u16>(0))?
            .collect::<Result<BTreeSet<_>, _>>()?;
        scenes.push(CdbScene {
            name,
            number,
            addresses,
        });
    }
    let mut st = conn.prepare("SELECT iv_index, address FROM exclusions")?;
    let mut ex: BTreeMap<u32, BTreeSet<u16>> = BTreeMap::new();
    for row in st.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, u16>(1)?)))? {
        let (iv, a) = row?;
        ex.entry(iv).or_default().insert(a);
    }
    let exclusions = ex
        .into_iter()
        .map(|(iv_index, addresses)| CdbExclusion {
            iv_index,
            addresses,
        })
        .collect();

    Ok(Cdb {
        mesh_uuid: uuid_from(uuid)?,
        mesh_name,
        timestamp,
        partial: false,
        iv_index: Some(iv),
        net_keys,
        app_keys,
        provisioners,
        nodes,
        groups,
        scenes,
        exclusions,
    })
}

fn read_nodes(conn: &Connection, keys: &KeyCipher) -> Result<Vec<CdbNode>, StoreError> {
    let mut st = conn.prepare(
        "SELECT uuid, address, device_key, security, config_complete, name, serial, building, floor,
                room, cid, pid, vid, crpl, relay, proxy, friend, low_power, secure_network_beacon,
                default_ttl, network_transmit, relay_retransmit, excluded, heartbeat_pub, heartbeat_sub
         FROM nodes ORDER BY address",
    )?;
    let mut rows = st.query([])?;
    let mut nodes = Vec::new();
    let mut kst =
        conn.prepare("SELECT idx, updated FROM node_net_keys WHERE node = ?1 ORDER BY idx")?;
    let mut ast =
        conn.prepare("SELECT idx, updated FROM node_app_keys WHERE node = ?1 ORDER BY idx")?;
    let mut est =
        conn.prepare("SELECT idx, name, location FROM elements WHERE node = ?1 ORDER BY idx")?;
    let mut mst = conn.prepare(
        "SELECT vendor, model_id, pub_address, pub_index, pub_ttl, pub_period_steps,
                pub_period_resolution, pub_credentials, pub_retransmit_count, pub_retransmit_interval
         FROM models WHERE node = ?1 AND element = ?2 ORDER BY vendor, model_id",
    )?;
    let mut bst = conn.prepare(
        "SELECT app_key FROM model_bindings WHERE node = ?1 AND element = ?2 AND vendor = ?3 AND model_id = ?4",
    )?;
    let mut sst = conn.prepare(
        "SELECT address FROM model_subscriptions WHERE node = ?1 AND element = ?2 AND vendor = ?3 AND model_id = ?4",
    )?;
    while let Some(r) = rows.next()? {
        let uuid_blob: Vec<u8> = r.get(0)?;
        let uuid = uuid_from(uuid_blob.clone())?;
        let building: Option<String> = r.get(7)?;
        let floor: Option<String> = r.get(8)?;
        let room: Option<String> = r.get(9)?;
        let location =
            (building.is_some() || floor.is_some() || room.is_some()).then(|| Location {
                building: building.unwrap_or_default(),
                floor: floor.unwrap_or_default(),
                room: room.unwrap_or_default(),
            });
        let serial: Option<String> = r.get(6)?;
        let name: String = r.get(5)?;
        let feats: [Option<u8>; 4] = [r.get(14)?, r.get(15)?, r.get(16)?, r.get(17)?];
        let features = feats.iter().any(Option::is_some).then_some(Features {
            relay: feats[0],
            proxy: feats[1],
            friend: feats[2],
            low_power: feats[3],
        });
        let net_keys = kst
            .query_map([&uuid_blob], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        let app_keys = ast
            .query_map([&uuid_blob], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        let els = est
            .query_map([&uuid_blob], |r| {
                Ok((
                    r.get::<_, u8>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, u16>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut elements = Vec::new();
        for (index, ename, loc) in els {
            let mrows = mst
                .query_map(params![&uuid_blob, index], |r| {
                    Ok((
                        r.get::<_, bool>(0)?,
                        r.get::<_, u32>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<u16>>(3)?,
                        r.get::<_, Option<u8>>(4)?,
                        r.get::<_, Option<u8>>(5)?,
                        r.get::<_, Option<u32>>(6)?,
                        r.get::<_, Option<u8>>(7)?,
                        r.get::<_, Option<u8>>(8)?,
                        r.get::<_, Option<u16>>(9)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut models = Vec::new();
            for (vendor, id, pa, pi, pt, ps, pr, pc, rc, ri) in mrows {
                let bind = bst
                    .query_map(params![&uuid_blob, index, vendor, id], |r| {
                        r.get::<_, u16>(0)
                    })?
                    .collect::<Result<BTreeSet<_>, _>>()?;
                let subscribe = sst
                    .query_map(params![&uuid_blob, index, vendor, id], |r| {
                        r.get::<_, String>(0)
                    })?
                    .collect::<Result<BTreeSet<_>, _>>()?;
                let publish = match (pa, pi) {
                    (Some(address), Some(index)) => Some(Publication {
                        address,
                        index,
                        ttl: pt.unwrap_or(0),
                        period_steps: ps.unwrap_or(0),
                        period_resolution: pr.unwrap_or(100),
                        credentials: pc.unwrap_or(0),
                        retransmit_count: rc.unwrap_or(0),
                        retransmit_interval: ri.unwrap_or(50),
                    }),
                    _ => None,
                };
                models.push(CdbModel {
                    id: ModelId { vendor, id },
                    subscribe,
                    publish,
                    bind,
                });
            }
            elements.push(CdbElement {
                index,
                name: ename,
                location: loc,
                models,
            });
        }
        nodes.push(CdbNode {
            uuid,
            address: r.get(1)?,
            device_key: Some(DevKey::from_bytes(
                *keys.open(Slot::DevKey(&uuid), r.get(2)?)?,
            )),
            security: Security::parse(&r.get::<_, String>(3)?),
            net_keys,
            app_keys,
            config_complete: r.get(4)?,
            name: cdb::encode_name(&name, serial.as_deref(), location.as_ref()),
            cid: r.get(10)?,
            pid: r.get(11)?,
            vid: r.get(12)?,
            crpl: r.get(13)?,
            features,
            secure_network_beacon: r.get(18)?,
            default_ttl: r.get(19)?,
            network_transmit: r.get(20)?,
            relay_retransmit: r.get(21)?,
            elements,
            excluded: r.get(22)?,
            heartbeat_pub: r.get(23)?,
            heartbeat_sub: r.get(24)?,
        });
    }
    Ok(nodes)
}

/// The largest free span of `within` not covered by `taken`.
fn largest_gap(within: Range16, taken: &[(u16, u16)]) -> Option<Range16> {
    let mut taken = taken.to_vec();
    taken.sort();
    let mut best: Option<Range16> = None;
    let mut next = u32::from(within.low);
    let consider = |lo: u32, hi: u32, best: &mut Option<Range16>| {
        if lo <= hi && best.is_none_or(|b| hi - lo > u32::from(b.high - b.low)) {
            // Cannot truncate: both within a u16 range.
            *best = Some(Range16 {
                low: lo as u16,
                high: hi as u16,
            });
        }
    };
    for (f, l) in taken {
        let (f, l) = (u32::from(f), u32::from(l));
        if l < next {
            continue;
        }
        if f > next {
            consider(next, (f - 1).min(u32::from(within.high)), &mut best);
        }
        next = next.max(l + 1);
        if next > u32::from(within.high) {
            break;
        }
    }
    consider(next, u32::from(within.high), &mut best);
    best
}

/// Finds or makes this provisioner's entry in `doc`; returns its UUID and whether it was added.
fn choose_self(
    doc: &mut Cdb,
    stored_self: Option<DeviceUuid>,
    options: &ImportOptions,
    rng: &mut dyn CryptoRng,
) -> Result<(DeviceUuid, bool), StoreError> {
    if let Some(u) = options.as_provisioner {
        if doc.provisioners.iter().any(|p| p.uuid == u) {
            return Ok((u, false));
        }
        return Err(StoreError::InvalidArgument(format!(
            "--as-provisioner {u}: the file has no provisioner with this UUID"
        )));
    }
    if let Some(u) = stored_self
        && doc.provisioners.iter().any(|p| p.uuid == u)
    {
        return Ok((u, false));
    }
    let mut taken_u: Vec<(u16, u16)> = doc
        .provisioners
        .iter()
        .flat_map(|p| p.unicast.iter().map(|r| (r.low, r.high)))
        .collect();
    taken_u.extend(
        doc.nodes
            .iter()
            .map(|n| (n.address, n.address + n.elements.len() as u16 - 1)),
    );
    let unicast = largest_gap(Range16 { low: 1, high: 0x7fff }, &taken_u).ok_or_else(|| {
        StoreError::NoProvisionerRange(
            "every unicast address of the file is allocated to its provisioners, so meshprov has none to hand out: \
             give --as-provisioner UUID to act as one of them"
                .into(),
        )
    })?;
    let gaps = |within: Range16, get: fn(&CdbProvisioner) -> &Vec<Range16>| {
        let taken: Vec<(u16, u16)> = doc
            .provisioners
            .iter()
            .flat_map(|p| get(p).iter().map(|r| (r.low, r.high)))
            .collect();
        largest_gap(within, &taken)
    };
    let group = gaps(
        Range16 {
            low: 0xc000,
            high: 0xfeff,
        },
        |p| &p.group,
    );
    let scene = gaps(
        Range16 {
            low: 1,
            high: 0xffff,
        },
        |p| &p.scene,
    );
    let uuid = stored_self
        .filter(|u| !doc.provisioners.iter().any(|p| p.uuid == *u))
        .unwrap_or_else(|| random_uuid(rng));
    doc.provisioners.push(CdbProvisioner {
        uuid,
        name: "meshprov".into(),
        unicast: vec![unicast],
        group: group.into_iter().collect(),
        scene: scene.into_iter().collect(),
    });
    Ok((uuid, true))
}

fn missing_key(path: String) -> StoreError {
    StoreError::Cdb(CdbError::Invalid {
        path,
        problem: "missing (a file exported without keys cannot be imported)".into(),
    })
}

impl Store {
    /// The whole network as a CDB document, keys included.
    pub fn document(&self) -> Result<Cdb, StoreError> {
        read_document(&self.conn, &self.keys)
    }

    /// The network as CDB 1.0.1 JSON, deterministic: the same database gives the same bytes.
    pub fn export_cdb(&self, options: &ExportOptions) -> Result<String, StoreError> {
        let mut doc = read_document(&self.conn, &self.keys)?;
        if let Some(sel) = &options.partial_nodes {
            let mut chosen = Vec::new();
            for r in sel {
                let n = self.node(r)?;
                chosen.push(n.uuid);
            }
            doc.partial = true;
            doc.nodes.retain(|n| chosen.contains(&n.uuid));
            let app: BTreeSet<u16> = doc
                .nodes
                .iter()
                .flat_map(|n| n.app_keys.iter().map(|k| k.0))
                .collect();
            let mut net: BTreeSet<u16> = doc
                .nodes
                .iter()
                .flat_map(|n| n.net_keys.iter().map(|k| k.0))
                .collect();
            doc.app_keys.retain(|k| app.contains(&k.index));
            net.extend(doc.app_keys.iter().map(|k| k.bound_net_key));
            doc.net_keys.retain(|k| net.contains(&k.index));
            let addresses: BTreeSet<u16> = doc
                .nodes
                .iter()
                .flat_map(|n| n.address..n.address + n.elements.len() as u16)
                .collect();
            for s in &mut doc.scenes {
                s.addresses.retain(|a| addresses.contains(a));
            }
        }
        if options.no_keys {
            for k in &mut doc.net_keys {
                k.key = None;
                k.old_key = None;
            }
            for k in &mut doc.app_keys {
                k.key = None;
                k.old_key = None;
            }
            for n in &mut doc.nodes {
                n.device_key = None;
            }
        }
        Ok(cdb::to_json(&doc))
    }

    /// Imports a whole network from CDB JSON (validated first; nothing changes on any error).
    ///
    /// Into an empty store: the network is created. Over the same network (same `meshUUID`):
    /// the store becomes the file, but only if no node of the store is missing from the file or
    /// has another address or device key there (else [`StoreError::ImportWouldLose`], unless
    /// `force`). Over a different network: refused unless `force`. meshprov acts as the
    /// provisioner given by `as_provisioner`, else as the one it already was, else a new
    /// provisioner entry is added with the largest unallocated unicast range. A key refresh
    /// journal is dropped: the file's keys and phases replace the store's.
    pub fn import_cdb(
        &mut self,
        json: &str,
        options: &ImportOptions,
        rng: &mut dyn CryptoRng,
    ) -> Result<ImportSummary, StoreError> {
        let mut doc = cdb::parse(json)?;
        for (i, k) in doc.net_keys.iter().enumerate() {
            if k.key.is_none() {
                return Err(missing_key(format!("netKeys[{i}].key")));
            }
        }
        for (i, k) in doc.app_keys.iter().enumerate() {
            if k.key.is_none() {
                return Err(missing_key(format!("appKeys[{i}].key")));
            }
        }
        for (i, n) in doc.nodes.iter().enumerate() {
            if n.device_key.is_none() {
                return Err(missing_key(format!("nodes[{i}].deviceKey")));
            }
        }

        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored: Option<(DeviceUuid, String, u32)> = tx
            .query_row("SELECT mesh_uuid, name, iv_index FROM network", [], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                ))
            })
            .optional()?
            .map(|(u, n, iv)| uuid_from(u).map(|u| (u, n, iv)))
            .transpose()?;
        let stored_self: Option<DeviceUuid> = tx
            .query_row("SELECT uuid FROM provisioners WHERE is_self = 1", [], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .optional()?
            .map(uuid_from)
            .transpose()?;
        let mut replaced_other = false;
        let mut old_states: BTreeMap<DeviceUuid, String> = BTreeMap::new();
        let mut iv_index = doc.iv_index.unwrap_or(0);
        if let Some((uuid, name, iv)) = &stored {
            if *uuid != doc.mesh_uuid {
                if !options.force {
                    return Err(StoreError::DifferentNetwork {
                        stored: *uuid,
                        stored_name: name.clone(),
                        file: doc.mesh_uuid,
                    });
                }
                replaced_other = true;
            } else {
                iv_index = doc.iv_index.unwrap_or(*iv).max(*iv);
                let current = read_nodes(&tx, &self.keys)?;
                for n in &current {
                    let found = doc.nodes.iter().find(|d| d.uuid == n.uuid);
                    let problem = match found {
                        None => Some("the file lacks"),
                        Some(d)
                            if d.address != n.address || d.elements.len() != n.elements.len() =>
                        {
                            Some("the file has other addresses for")
                        }
                        Some(d) if d.device_key != n.device_key => {
                            Some("the file has another device key for")
                        }
                        Some(_) => None,
                    };
                    if let Some(p) = problem
                        && !options.force
                    {
                        return Err(StoreError::ImportWouldLose(format!(
                            "{p} node {:04X} ({}) that the store has",
                            n.address, n.uuid
                        )));
                    }
                }
                let mut st = tx.prepare("SELECT uuid, state FROM nodes")?;
                for row in st.query_map([], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
                })? {
                    let (u, s) = row?;
                    old_states.insert(uuid_from(u)?, s);
                }
            }
        }
        let (self_uuid, provisioner_added) = choose_self(&mut doc, stored_self, options, rng)?;

        clear(&tx, replaced_other)?;
        // Reservations of running sessions survive unless the file now uses their addresses
        // or their device.
        let reservations: Vec<(Vec<u8>, u16, u16)> = tx
            .prepare("SELECT uuid, address, address + elements - 1 FROM reservations")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        for (u, first, last) in reservations {
            let clash = doc.nodes.iter().any(|n| {
                let n_last = n.address + n.elements.len() as u16 - 1;
                n.uuid.0[..] == u[..] || (n.address <= last && first <= n_last)
            });
            if clash {
                tx.execute("DELETE FROM reservations WHERE uuid = ?1", [&u])?;
            }
        }
        write_document(&tx, &doc, self_uuid, iv_index, &old_states, &self.keys)?;
        tx.commit()?;
        Ok(ImportSummary {
            name: doc.mesh_name.clone(),
            mesh_uuid: doc.mesh_uuid,
            net_keys: doc.net_keys.len(),
            app_keys: doc.app_keys.len(),
            nodes: doc.nodes.len(),
            unicast_ranges: self.unicast_ranges()?,
            provisioner_added,
            replaced_other,
        })
    }
}

fn clear(tx: &Transaction<'_>, other_network: bool) -> Result<(), StoreError> {
    tx.execute_batch(
        "DELETE FROM key_refresh;
         DELETE FROM model_subscriptions; DELETE FROM model_bindings; DELETE FROM models;
         DELETE FROM elements; DELETE FROM node_app_keys; DELETE FROM node_net_keys;
         DELETE FROM nodes; DELETE FROM app_keys; DELETE FROM net_keys;
         DELETE FROM provisioner_ranges; DELETE FROM provisioners; DELETE FROM groups;
         DELETE FROM scene_addresses; DELETE FROM scenes; DELETE FROM exclusions;
         DELETE FROM network;",
    )?;
    if other_network {
        tx.execute_batch("DELETE FROM reservations; DELETE FROM seq_blocks;")?;
    }
    Ok(())
}

fn write_document(
    tx: &Transaction<'_>,
    doc: &Cdb,
    self_uuid: DeviceUuid,
    iv_index: u32,
    old_states: &BTreeMap<DeviceUuid, String>,
    keys: &KeyCipher,
) -> Result<(), StoreError> {
    let timestamp = if doc.timestamp.is_empty() {
        super::now_iso8601()
    } else {
        doc.timestamp.clone()
    };
    tx.execute(
        "INSERT INTO network (id, name, mesh_uuid, iv_index, iv_update, timestamp) VALUES (1, ?1, ?2, ?3, 0, ?4)",
        params![doc.mesh_name, &doc.mesh_uuid.0[..], iv_index, timestamp],
    )?;
    // The stored value (in a plain store, the key itself) is wiped once its statement has run.
    let seal = |slot: Slot<'_>,
                key: Option<&[u8; 16]>|
     -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, StoreError> {
        key.map(|k| keys.seal(slot, k)).transpose()
    };
    for k in &doc.net_keys {
        let index = k.index;
        tx.execute(
            "INSERT INTO net_keys (idx, name, key, old_key, phase, min_security, timestamp) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                k.index,
                k.name,
                seal(
                    Slot::NetKey { index, old: false },
                    k.key.as_ref().map(|k| k.expose_secret())
                )?.as_deref(),
                seal(
                    Slot::NetKey { index, old: true },
                    k.old_key.as_ref().map(|k| k.expose_secret())
                )?.as_deref(),
                k.phase,
                k.min_security.as_str(),
                k.timestamp,
            ],
        )?;
    }
    for k in &doc.app_keys {
        let index = k.index;
        tx.execute(
            "INSERT INTO app_keys (idx, name, bound_net_key, key, old_key) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                k.index,
                k.name,
                k.bound_net_key,
                seal(
                    Slot::AppKey { index, old: false },
                    k.key.as_ref().map(|k| k.expose_secret())
                )?.as_deref(),
                seal(
                    Slot::AppKey { index, old: true },
                    k.old_key.as_ref().map(|k| k.expose_secret())
                )?.as_deref(),
            ],
        )?;
    }
    for p in &doc.provisioners {
        tx.execute(
            "INSERT INTO provisioners (uuid, name, is_self) VALUES (?1, ?2, ?3)",
            params![&p.uuid.0[..], p.name, p.uuid == self_uuid],
        )?;
        let id = tx.last_insert_rowid();
        for (kind, rs) in [
            ("unicast", &p.unicast),
            ("group", &p.group),
            ("scene", &p.scene),
        ] {
            for r in rs {
                tx.execute(
                    "INSERT INTO provisioner_ranges (provisioner, kind, low, high) VALUES (?1, ?2, ?3, ?4)",
                    params![id, kind, r.low, r.high],
                )?;
            }
        }
    }
    let now = super::now_iso8601();
    for n in &doc.nodes {
        let u = &n.uuid.0[..];
        let (name, serial, location) = cdb::decode_name(&n.name);
        let state = match old_states.get(&n.uuid).map(String::as_str) {
            Some("unconfirmed") => "unconfirmed",
            _ => "provisioned",
        };
        let f = n.features.unwrap_or_default();
        tx.execute(
            "INSERT INTO nodes (uuid, address, elements, device_key, state, config_complete, excluded,
                security, name, serial, building, floor, room, cid, pid, vid, crpl, relay, proxy,
                friend, low_power, secure_network_beacon, default_ttl, network_transmit,
                relay_retransmit, heartbeat_pub, heartbeat_sub, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)",
            params![
                u,
                n.address,
                n.elements.len() as u32,
                seal(
                    Slot::DevKey(&n.uuid),
                    n.device_key.as_ref().map(|k| k.expose_secret())
                )?.as_deref(),
                state,
                n.config_complete,
                n.excluded,
                n.security.as_str(),
                name,
                serial,
                location.as_ref().map(|l| l.building.clone()),
                location.as_ref().map(|l| l.floor.clone()),
                location.as_ref().map(|l| l.room.clone()),
                n.cid,
                n.pid,
                n.vid,
                n.crpl,
                f.relay,
                f.proxy,
                f.friend,
                f.low_power,
                n.secure_network_beacon,
                n.default_ttl,
                n.network_transmit,
                n.relay_retransmit,
                n.heartbeat_pub,
                n.heartbeat_sub,
                now,
            ],
        )?;
        for (k, upd) in &n.net_keys {
            tx.execute(
                "INSERT OR REPLACE INTO node_net_keys (node, idx, updated) VALUES (?1, ?2, ?3)",
                params![u, k, upd],
            )?;
        }
        for (k, upd) in &n.app_keys {
            tx.execute(
                "INSERT OR REPLACE INTO node_app_keys (node, idx, updated) VALUES (?1, ?2, ?3)",
                params![u, k, upd],
            )?;
        }
        for e in &n.elements {
            tx.execute(
                "INSERT INTO elements (node, idx, name, location) VALUES (?1, ?2, ?3, ?4)",
                params![u, e.index, e.name, e.location],
            )?;
            for m in &e.models {
                let p = m.publish.as_ref();
                tx.execute(
                    "INSERT INTO models (node, element, vendor, model_id, pub_address, pub_index, pub_ttl,
                        pub_period_steps, pub_period_resolution, pub_credentials, pub_retransmit_count,
                        pub_retransmit_interval)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![
                        u,
                        e.index,
                        m.id.vendor,
                        m.id.id,
                        p.map(|p| p.address.clone()),
                        p.map(|p| p.index),
                        p.map(|p| p.ttl),
                        p.map(|p| p.period_steps),
                        p.map(|p| p.period_resolution),
                        p.map(|p| p.credentials),
                        p.map(|p| p.retransmit_count),
                        p.map(|p| p.retransmit_interval),
                    ],
                )?;
                for k in &m.bind {
                    tx.execute(
                        "INSERT INTO model_bindings (node, element, vendor, model_id, app_key) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![u, e.index, m.id.vendor, m.id.id, k],
                    )?;
                }
                for a in &m.subscribe {
                    tx.execute(
                        "INSERT INTO model_subscriptions (node, element, vendor, model_id, address) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![u, e.index, m.id.vendor, m.id.id, a],
                    )?;
                }
            }
        }
    }
    for g in &doc.groups {
        tx.execute(
            "INSERT INTO groups (address, name, parent) VALUES (?1, ?2, ?3)",
            params![g.address, g.name, g.parent],
        )?;
    }
    for s in &doc.scenes {
        tx.execute(
            "INSERT INTO scenes (number, name) VALUES (?1, ?2)",
            params![s.number, s.name],
        )?;
        for a in &s.addresses {
            tx.execute(
                "INSERT INTO scene_addresses (scene, address) VALUES (?1, ?2)",
                params![s.number, a],
            )?;
        }
    }
    for x in &doc.exclusions {
        for a in &x.addresses {
            tx.execute(
                "INSERT OR IGNORE INTO exclusions (iv_index, address) VALUES (?1, ?2)",
                params![x.iv_index, a],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_gap_finds_room() {
        let r = |low, high| Range16 { low, high };
        assert_eq!(largest_gap(r(1, 0x7fff), &[]), Some(r(1, 0x7fff)));
        assert_eq!(
            largest_gap(r(1, 0x7fff), &[(1, 0x199a)]),
            Some(r(0x199b, 0x7fff))
        );
        assert_eq!(
            largest_gap(r(1, 100), &[(10, 20), (1, 5), (60, 100)]),
            Some(r(21, 59))
        );
        assert_eq!(largest_gap(r(1, 10), &[(1, 10)]), None);
    }
}
