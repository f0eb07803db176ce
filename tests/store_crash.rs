//! Crash safety: a writer process is killed with SIGKILL at random moments, again and again;
//! after every kill the store must open, pass SQLite's integrity check, hold every device key
//! the writer reported as committed, and never have allocated an address twice.
//!
//! The writer is this test binary itself, re-executed with `MESHPROV_CRASH_CHILD_DB` set: the
//! `crash_child` test then runs the provisioning engine's write pattern in a loop (reserve,
//! commit write-ahead, confirm; sometimes a failed session that releases its reservation; SEQ
//! blocks) and prints a line after each call returns. Without the variable it does nothing.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshprov::crypto::DevKey;
use meshprov::store::{NewNode, Store};
use meshprov::uuid::DeviceUuid;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

const CHILD_DB: &str = "MESHPROV_CRASH_CHILD_DB";
const CHILD_RUN: &str = "MESHPROV_CRASH_CHILD_RUN";
const RUNS: u32 = 60;
const SEQ_ELEMENT: u16 = 0x7fff;

/// Device `i` of run `run`: unique across runs.
fn device(run: u32, i: u32) -> DeviceUuid {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&run.to_be_bytes());
    b[4..8].copy_from_slice(&i.to_be_bytes());
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = 0x80;
    b[9..13].copy_from_slice(&i.to_be_bytes());
    DeviceUuid(b)
}

/// The device key the writer stores for a device: derived from its UUID so the checker knows
/// what every key must be.
fn key_of(u: &DeviceUuid) -> DevKey {
    let mut k = [0u8; 16];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u.0[i] ^ 0xa5 ^ (i as u8).wrapping_mul(31);
    }
    DevKey::from_bytes(k)
}

#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let run: u32 = std::env::var(CHILD_RUN)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let mut out = std::io::stdout().lock();
    let mut s = Store::open(Path::new(&path)).expect("child opens the store");
    for i in 0.. {
        let uuid = device(run, i);
        let elements = (1 + (i + run) % 4) as u8;
        let Ok(address) = s.allocate_unicast(&uuid, elements) else {
            // Address space used up: wait to be killed.
            std::thread::sleep(Duration::from_secs(60));
            return;
        };
        if i % 5 == 4 {
            // A session that failed before Provisioning Data: its range goes back.
            s.release_reservation(&uuid).expect("release");
            continue;
        }
        s.commit_node(&NewNode {
            uuid,
            name: format!("run {run} device {i}"),
            address,
            elements,
            device_key: key_of(&uuid),
            net_key_index: 0,
            location: None,
        })
        .expect("commit_node");
        writeln!(out, "committed {uuid} {address} {elements}").expect("stdout");
        out.flush().expect("stdout");
        if i % 3 != 0 {
            s.confirm_node(&uuid).expect("confirm");
        }
        let seq = s.reserve_seq(SEQ_ELEMENT, 64).expect("seq");
        writeln!(out, "seq {}", seq.end).expect("stdout");
        out.flush().expect("stdout");
    }
}

#[test]
fn killed_writers_never_lose_keys_or_reuse_addresses() {
    if std::env::var_os(CHILD_DB).is_some() {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    {
        let mut s = Store::open(&path).unwrap();
        s.create_network("Crash", None, &mut ChaCha20Rng::seed_from_u64(1))
            .unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(0x5eed);
    let mut committed: BTreeMap<DeviceUuid, (u16, u8)> = BTreeMap::new();
    let mut seq_end = 0u32;
    let mut killed = 0;

    // RUNS kills at random moments; then, on a slow or loaded machine where the writers got
    // little done before their kills, more kills later in the write loop until at least 50
    // committed nodes have been checked (bounded).
    let mut run = 0;
    while run < RUNS || (committed.len() < 50 && run < RUNS + 100) {
        run += 1;
        let log_path = dir.path().join(format!("run-{run}.log"));
        let log = File::create(&log_path).unwrap();
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DB, &path)
            .env(CHILD_RUN, run.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Anywhere from start-up (opening, migrating) to deep inside the write loop.
        let delay = if run <= RUNS {
            2 + rng.next_u32() % 70
        } else {
            50 + rng.next_u32() % 400
        };
        std::thread::sleep(Duration::from_millis(u64::from(delay)));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "run {run}: the writer ended by itself ({status}); see {}",
            log_path.display()
        );
        killed += 1;

        for line in std::fs::read_to_string(&log_path).unwrap().lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["committed", u, a, e] => {
                    committed.insert(u.parse().unwrap(), (a.parse().unwrap(), e.parse().unwrap()));
                }
                ["seq", end] => seq_end = seq_end.max(end.parse().unwrap()),
                _ => {}
            }
        }

        // The database opens and is consistent.
        let mut s = Store::open(&path).unwrap_or_else(|e| panic!("run {run}: open: {e}"));
        s.check_integrity()
            .unwrap_or_else(|e| panic!("run {run}: {e}"));
        let nodes = s.nodes().unwrap();
        let by_uuid: BTreeMap<_, _> = nodes.iter().map(|n| (n.uuid, n)).collect();
        // Every committed device key is intact, at the address it was given.
        for (u, (a, e)) in &committed {
            let n = by_uuid
                .get(u)
                .unwrap_or_else(|| panic!("run {run}: committed node {u} is gone"));
            assert_eq!((n.address, n.elements), (*a, *e), "run {run}: {u}");
            assert_eq!(n.device_key, key_of(u), "run {run}: device key of {u}");
        }
        // No address is allocated twice: nodes and open reservations are disjoint.
        let mut spans: Vec<(u16, u16)> = nodes
            .iter()
            .map(|n| (n.address, n.address + u16::from(n.elements) - 1))
            .chain(
                s.reservations()
                    .unwrap()
                    .iter()
                    .map(|(_, a, e)| (*a, *a + u16::from(*e) - 1)),
            )
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(
                w[0].1 < w[1].0,
                "run {run}: {:04X}-{:04X} overlaps {:04X}-{:04X}",
                w[0].0,
                w[0].1,
                w[1].0,
                w[1].1
            );
        }
        // A SEQ block reported as reserved is never handed out again. (The checker's own
        // reservation moves the counter on, as a restart of the engine would.)
        let next = s.reserve_seq(SEQ_ELEMENT, 1).unwrap();
        assert!(
            next.start >= seq_end,
            "run {run}: SEQ {} reused",
            next.start
        );
        seq_end = next.end;
    }
    assert!(killed >= 50);
    assert!(
        committed.len() >= 50,
        "the writers committed only {} nodes: the kills came too early to test much",
        committed.len()
    );
    eprintln!(
        "crash test: {killed} kills, {} committed nodes checked, {:.1} s",
        committed.len(),
        started.elapsed().as_secs_f64()
    );
}
