//! Text and JSON views of the store for the `net` and `node` commands. Keys appear only where a
//! caller asks for them explicitly.

use std::fmt::Write as _;

use mesh_crypto::hex::encode;
use serde_json::{Value, json};

use super::{NetworkInfo, Node};

/// `meshprov net show`: the network without key material.
pub fn network_text(n: &NetworkInfo) -> String {
    let mut s = String::new();
    let ranges = n
        .unicast_ranges
        .iter()
        .map(|r| format!("{:04X}-{:04X}", r.low, r.high))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(s, "{:<13} {}", "Network", n.name);
    let _ = writeln!(s, "{:<13} {}", "Mesh UUID", n.mesh_uuid);
    let _ = writeln!(
        s,
        "{:<13} {}{}",
        "IV Index",
        n.iv_index,
        if n.iv_update {
            " (IV Update in progress)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "{:<13} {} ({})",
        "Provisioner", n.provisioner_name, n.provisioner_uuid
    );
    let _ = writeln!(s, "{:<13} {}", "Unicast range", ranges);
    let _ = writeln!(s, "{:<13} {}", "Nodes", n.node_count);
    let _ = writeln!(s, "{:<13} {}", "Last change", n.timestamp);
    if let Some(k) = &n.keys_at_rest {
        let _ = writeln!(
            s,
            "{:<13} encrypted with a passphrase ({}, {}; set {})",
            "Keys at rest", k.kdf, k.aead, k.changed
        );
    }
    let _ = writeln!(s, "NetKeys");
    for k in &n.net_keys {
        let _ = writeln!(
            s,
            "  {:>4}  phase {}  {:<8}  {}",
            k.index,
            k.phase,
            k.min_security.as_str(),
            k.name
        );
    }
    let _ = writeln!(s, "AppKeys");
    if n.app_keys.is_empty() {
        let _ = writeln!(s, "  (none: add one with `meshprov net add-app-key NAME`)");
    }
    for k in &n.app_keys {
        let _ = writeln!(
            s,
            "  {:>4}  bound to NetKey {}  {}",
            k.index, k.bound_net_key, k.name
        );
    }
    s
}

/// `meshprov net show --json`.
pub fn network_json(n: &NetworkInfo) -> String {
    let mut v = json!({
        "name": n.name,
        "mesh_uuid": n.mesh_uuid.to_string(),
        "iv_index": n.iv_index,
        "iv_update": n.iv_update,
        "timestamp": n.timestamp,
        "provisioner": {"name": n.provisioner_name, "uuid": n.provisioner_uuid.to_string()},
        "unicast_ranges": n.unicast_ranges.iter()
            .map(|r| format!("{:04X}-{:04X}", r.low, r.high)).collect::<Vec<_>>(),
        "nodes": n.node_count,
        "net_keys": n.net_keys.iter().map(|k| json!({
            "index": k.index, "name": k.name, "phase": k.phase,
            "min_security": k.min_security.as_str(),
        })).collect::<Vec<_>>(),
        "app_keys": n.app_keys.iter().map(|k| json!({
            "index": k.index, "name": k.name, "bound_net_key": k.bound_net_key,
        })).collect::<Vec<_>>(),
    });
    // Only an encrypted store says anything about it: a plain store's JSON is as it was.
    if let Some(k) = &n.keys_at_rest {
        v["keys_at_rest"] = json!({
            "encrypted": true,
            "kdf": "argon2id", "memory_kib": k.kdf.memory_kib, "time_cost": k.kdf.time_cost,
            "lanes": k.kdf.lanes, "aead": k.aead, "changed": k.changed,
        });
    }
    v.to_string()
}

fn location_text(n: &Node) -> String {
    n.location
        .as_ref()
        .map(|l| format!("{}/{}/{}", l.building, l.floor, l.room))
        .unwrap_or_default()
}

/// `meshprov node list`: one line per node with address range, state, UUID, name, location.
pub fn node_list_text(nodes: &[Node]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<9}  {:<11}  {:<36}  {:<20}  LOCATION",
        "ADDRESS", "STATE", "UUID", "NAME"
    );
    for n in nodes {
        let range = if n.elements > 1 {
            format!(
                "{:04X}-{:04X}",
                n.address,
                n.address + u16::from(n.elements) - 1
            )
        } else {
            format!("{:04X}", n.address)
        };
        let _ = writeln!(
            s,
            "{:<9}  {:<11}  {:<36}  {:<20}  {}",
            range,
            n.state.as_str(),
            n.uuid.to_string(),
            n.name,
            location_text(n)
        );
    }
    s
}

/// One node as a JSON object; the device key only with `show_keys`.
pub fn node_json(n: &Node, show_keys: bool) -> Value {
    let mut v = json!({
        "address": format!("{:04X}", n.address),
        "elements": n.elements,
        "state": n.state.as_str(),
        "uuid": n.uuid.to_string(),
        "name": n.name,
        "serial": n.serial,
        "location": n.location.as_ref().map(|l| json!({
            "building": l.building, "floor": l.floor, "room": l.room,
        })),
        "security": n.security.as_str(),
        "net_keys": n.net_keys,
        "app_keys": n.app_keys,
        "cid": n.cid.map(|v| format!("{v:04X}")),
        "pid": n.pid.map(|v| format!("{v:04X}")),
        "vid": n.vid.map(|v| format!("{v:04X}")),
        "crpl": n.crpl.map(|v| format!("{v:04X}")),
        "created": n.created,
    });
    if show_keys && let Some(o) = v.as_object_mut() {
        o.insert(
            "device_key".into(),
            encode(n.device_key.expose_secret()).into(),
        );
    }
    v
}

/// `meshprov node list --json`: one array, no keys.
pub fn node_list_json(nodes: &[Node]) -> String {
    Value::Array(nodes.iter().map(|n| node_json(n, false)).collect()).to_string()
}

/// `meshprov node show`: every field; the device key only with `show_keys`.
pub fn node_show_text(n: &Node, show_keys: bool) -> String {
    let mut s = String::new();
    let opt = |v: Option<u16>| v.map(|v| format!("{v:04X}")).unwrap_or_else(|| "-".into());
    let last = n.address + u16::from(n.elements) - 1;
    let rows: Vec<(&str, String)> = vec![
        (
            "Address",
            format!("{:04X}-{last:04X} ({} elements)", n.address, n.elements),
        ),
        ("State", n.state.as_str().into()),
        ("UUID", n.uuid.to_string()),
        ("Name", n.name.clone()),
        ("Serial", n.serial.clone().unwrap_or_else(|| "-".into())),
        ("Location", {
            let l = location_text(n);
            if l.is_empty() { "-".into() } else { l }
        }),
        ("Security", n.security.as_str().into()),
        (
            "NetKeys",
            n.net_keys
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "AppKeys",
            n.app_keys
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "CID/PID/VID",
            format!("{}/{}/{}", opt(n.cid), opt(n.pid), opt(n.vid)),
        ),
        ("CRPL", opt(n.crpl)),
        ("Committed", n.created.clone()),
        (
            "Device key",
            if show_keys {
                encode(n.device_key.expose_secret())
            } else {
                "(hidden: give --show-keys)".into()
            },
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "{k:<12} {v}");
    }
    s
}
