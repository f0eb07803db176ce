//! Shared helpers of the tests against BlueZ's bluetooth-meshd (Debian package bluez-meshd),
//! running as an unprovisioned device on its unit-test socket, started by
//! `../shared/peers/bluez-meshd/run_meshd_device.sh` (see its README).
//!
//! With `CI` set, a missing bluetooth-meshd fails the test; otherwise it is skipped with a
//! message. Every process started is killed by its pid when the test ends, and every wait has
//! a time-out.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The daemon.
pub const MESHD: &str = "/usr/libexec/bluetooth/bluetooth-meshd";

/// `../shared/peers/bluez-meshd` (or `$MESHPROV_SHARED/peers/bluez-meshd`).
pub fn peers() -> PathBuf {
    let shared = std::env::var_os("MESHPROV_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    shared.join("peers/bluez-meshd")
}

/// Whether the peer can run here; panics under CI when it cannot.
pub fn available() -> bool {
    let ok = Path::new(MESHD).exists() && peers().join("run_meshd_device.sh").exists();
    if !ok {
        let msg = format!(
            "bluetooth-meshd ({MESHD}) or {} is missing: apt-get install bluez-meshd dbus python3-dbus python3-gi libssl-dev gcc",
            peers().display()
        );
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("skipped: {msg}");
    }
    ok
}

/// A running meshd node; killed (every pid in DIR/pids) on drop.
pub struct Meshd {
    dir: tempfile::TempDir,
}

impl Meshd {
    /// Starts meshd as the unprovisioned device `uuid_hex` (32 hex digits of a version-4 UUID);
    /// `join_args` go to the Join app (`--caps static-oob --static-oob HEX`, ...).
    pub fn start(uuid_hex: &str, join_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // The script leaves meshd, its D-Bus and the Join app running in the background: their
        // output goes to a file, not to a pipe we would wait on.
        let out = std::fs::File::create(dir.path().join("start.log")).unwrap();
        let status = Command::new("timeout")
            .arg("60")
            .arg(peers().join("run_meshd_device.sh"))
            .arg(dir.path())
            .arg(uuid_hex)
            .args(["--timeout", "180"])
            .args(join_args)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .status()
            .expect("run_meshd_device.sh runs");
        let node = Self { dir };
        let join = std::fs::read_to_string(node.dir.path().join("join.log")).unwrap_or_default();
        assert!(
            status.success() && join.contains("JOIN_STARTED"),
            "meshd did not start: {}\n{join}\n{}",
            std::fs::read_to_string(node.dir.path().join("start.log")).unwrap_or_default(),
            node.log()
        );
        node
    }

    /// Its directory: `meshd.sock`, `peer.sock`, `storage/`, the logs.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// meshd's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("meshd.log")).unwrap_or_default()
    }

    /// meshd's `node.json` of the device `uuid_hex` (present while it is provisioned).
    pub fn node_json(&self, uuid_hex: &str) -> PathBuf {
        self.path()
            .join("storage")
            .join(uuid_hex.to_ascii_lowercase())
            .join("node.json")
    }

    /// meshd's record of the node after provisioning: (unicast address, device key hex).
    pub fn stored_node(&self, uuid_hex: &str) -> (u16, String) {
        let p = self.node_json(uuid_hex);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let addr = u16::from_str_radix(v["unicastAddress"].as_str().unwrap(), 16).unwrap();
        let key = v["deviceKey"].as_str().unwrap().to_ascii_lowercase();
        (addr, key)
    }
}

impl Drop for Meshd {
    fn drop(&mut self) {
        if let Ok(pids) = std::fs::read_to_string(self.path().join("pids")) {
            for pid in pids.split_whitespace() {
                let _ = Command::new("kill")
                    .arg(pid)
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}
