//! Recorded sessions as tests (issue 10): every capture in `captures/` (recorded by
//! `captures/record.sh` through the capture wrapper, with its key sidecar) replays byte for
//! byte with the same device keys, decodes with no undecodable mesh packet and its transcripts
//! verify; mutated copies end in a reported divergence or a clean error, never a panic.
//!
//! A new `captures/NAME.pcapng` with its `NAME.keys.json` is covered without any change here.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;

use meshprov::decode::{self, DecodeKeys, DecodeOptions, MeshPacketKind};
use meshprov::replay::{self, ReplayError, ReplayInput, ReplayOutcome};
use proptest::prelude::*;

fn captures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcapng"))
        .collect();
    v.sort();
    v
}

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join(format!("{name}.pcapng"))
}

fn sidecar(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(replay::default_sidecar(p)).unwrap()).unwrap()
}

/// Replays without letting a panic through: a panic is a test failure with its message.
fn replay_no_panic(input: &ReplayInput) -> Result<ReplayOutcome, ReplayError> {
    match catch_unwind(AssertUnwindSafe(|| replay::replay(input))) {
        Ok(r) => r,
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("the replay panicked: {msg}");
        }
    }
}

#[test]
fn every_capture_replays_byte_for_byte_and_decodes() {
    let all = captures();
    assert!(all.len() >= 11, "captures/ holds {} sessions", all.len());
    let mut bearers = std::collections::BTreeSet::new();
    let mut auths = std::collections::BTreeSet::new();
    let mut drivers = std::collections::BTreeSet::new();
    let mut algorithms = std::collections::BTreeSet::new();
    for p in &all {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let side = sidecar(p);
        assert_eq!(side["format"], "meshprov-capture-keys/2", "{name}");
        let spec = &side["replay"];
        drivers.insert(spec["driver"].as_str().unwrap().to_string());
        let mut on_air_keys = 0;
        for s in spec["sessions"].as_array().unwrap() {
            bearers.insert(s["bearer"].as_str().unwrap().to_string());
            let c = &s["config"];
            let auth = if !c["records_fragment_size"].is_null() {
                "cert".to_string()
            } else if !c["oob_public_key"].is_null() {
                "oob-public-key".to_string()
            } else {
                c["auth"].as_str().unwrap().to_string()
            };
            if auth != "cert" && auth != "oob-public-key" {
                on_air_keys += 1;
            }
            auths.insert(auth);
        }
        let sessions = spec["sessions"].as_array().unwrap().len();
        let keys = side["device_keys"].as_array().unwrap().len();
        assert_eq!(
            keys, sessions,
            "{name}: every session provisioned its device"
        );

        // The replay.
        let input = replay::load(p, None).unwrap();
        match replay_no_panic(&input).unwrap() {
            ReplayOutcome::Identical {
                sessions: s,
                packets_in,
                packets_out,
                device_keys,
                ..
            } => {
                assert_eq!(s, sessions, "{name}");
                assert_eq!(device_keys, keys, "{name}");
                assert!(packets_in > 0 && packets_out > 0, "{name}");
            }
            ReplayOutcome::Diverged(d) => panic!("{name}: {d:?}"),
        }

        // The decode: no undecodable mesh packet, transcripts verified.
        let keys_file = DecodeKeys::from_file(&replay::default_sidecar(p)).unwrap();
        let mut records = Vec::new();
        let (summary, err) = decode::decode_file(p, keys_file, DecodeOptions::default(), |r| {
            records.push(r.to_text())
        })
        .unwrap();
        assert!(err.is_none(), "{name}: {err:?}");
        assert_eq!(
            summary
                .stats
                .records
                .get("undecodable")
                .copied()
                .unwrap_or(0),
            0,
            "{name}:\n{}",
            records.join("\n")
        );
        assert_eq!(summary.stats.transcripts_failed, 0, "{name}");
        assert_eq!(
            summary.stats.transcripts_verified, on_air_keys as u64,
            "{name}: every transcript whose device public key is on air verifies"
        );
        for r in &records {
            if r.contains("provisioning_pdu") && r.contains("Provisioning Start") {
                if r.contains("HMAC") {
                    algorithms.insert("hmac");
                } else if r.contains("CMAC") {
                    algorithms.insert("cmac");
                }
            }
        }
    }
    // A covering set: both bearers and algorithms, every authentication method, certificates,
    // simulated and real-time sessions.
    assert_eq!(
        bearers.into_iter().collect::<Vec<_>>(),
        ["pb-adv", "pb-gatt"]
    );
    assert_eq!(algorithms.into_iter().collect::<Vec<_>>(), ["cmac", "hmac"]);
    for a in [
        "no-oob",
        "static",
        "output",
        "input",
        "oob-public-key",
        "cert",
    ] {
        assert!(
            auths.contains(a) || (a == "static" && auths.contains("auto")),
            "no capture with {a}: {auths:?}"
        );
    }
    assert!(
        drivers.contains("sim") && drivers.contains("live"),
        "{drivers:?}"
    );
}

/// Indices of the packets the provisioner received (PB-ADV from others, GATT notifications).
fn inbound(input: &ReplayInput) -> Vec<usize> {
    let me = input.spec.provisioner_address.to_ascii_uppercase();
    input
        .packets
        .iter()
        .enumerate()
        .filter(|(_, p)| match &p.kind {
            MeshPacketKind::Adv {
                adv_addr, ad_type, ..
            } => {
                *ad_type == 0x29
                    && adv_addr.map(|a| meshprov::radio::capture::format_bd_addr(&a))
                        != Some(me.clone())
            }
            MeshPacketKind::Gatt { characteristic, .. } => !characteristic.is_data_in(),
            _ => false,
        })
        .map(|(i, _)| i)
        .collect()
}

fn payload_mut(p: &mut meshprov::decode::MeshPacket) -> Option<&mut Vec<u8>> {
    match &mut p.kind {
        MeshPacketKind::Adv { data, .. } => Some(data),
        MeshPacketKind::Gatt { value, .. } => Some(value),
        _ => None,
    }
}

#[test]
fn mutated_inbound_packets_end_in_recovery_or_a_reported_divergence() {
    for name in ["adv-static-hmac", "gatt-static-hmac", "adv-concurrent-8"] {
        let base = replay::load(&capture(name), None).unwrap();
        let ins = inbound(&base);
        assert!(ins.len() > 4, "{name}");
        let picks = [
            ins[0],
            ins[ins.len() / 3],
            ins[ins.len() / 2],
            ins[ins.len() - 1],
        ];
        for &i in &picks {
            // Dropped.
            let mut m = base.clone();
            m.packets.remove(i);
            replay_no_panic(&m).unwrap();
            // Duplicated.
            let mut m = base.clone();
            let dup = m.packets[i].clone();
            m.packets.insert(i, dup);
            replay_no_panic(&m).unwrap();
            // Reordered: its content swapped with the next inbound packet's.
            let mut m = base.clone();
            if let Some(&j) = ins.iter().find(|&&j| j > i) {
                let a = m.packets[i].kind.clone();
                m.packets[i].kind = m.packets[j].kind.clone();
                m.packets[j].kind = a;
            }
            replay_no_panic(&m).unwrap();
            // Corrupted: every octet flipped in turn would be slow; the last and a middle one.
            for k in [usize::MAX, 5] {
                let mut m = base.clone();
                if let Some(d) = payload_mut(&mut m.packets[i])
                    && !d.is_empty()
                {
                    let at = k.min(d.len() - 1);
                    d[at] ^= 0x5a;
                }
                replay_no_panic(&m).unwrap();
            }
        }
        // Whatever the device said after the middle of the session never arrives: the
        // provisioner cannot do what the capture shows, and the replay says where.
        let mut m = base.clone();
        let cut = ins[ins.len() / 2];
        let gone: Vec<usize> = ins.iter().copied().filter(|&i| i >= cut).collect();
        for i in gone.into_iter().rev() {
            m.packets.remove(i);
        }
        match replay_no_panic(&m).unwrap() {
            ReplayOutcome::Diverged(d) => assert!(!d.what.is_empty(), "{name}: {d:?}"),
            o => panic!("{name}: a session without half its inbound packets replayed as {o:?}"),
        }
    }
}

#[test]
fn a_changed_sent_packet_is_the_divergence_reported() {
    let base = replay::load(&capture("adv-static-hmac"), None).unwrap();
    let me = base.spec.provisioner_address.to_ascii_uppercase();
    // The provisioner's third advertisement, every copy of it.
    let sent: Vec<usize> = base
        .packets
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(&p.kind, MeshPacketKind::Adv { adv_addr: Some(a), .. } if meshprov::radio::capture::format_bd_addr(a) == me))
        .map(|(i, _)| i)
        .collect();
    let copies = usize::from(base.spec.radio.transmit_count.unwrap()) * 3;
    let third = &sent[2 * copies..3 * copies];
    let frame = base.packets[third[0]].frame;
    let mut m = base.clone();
    for &i in third {
        let d = payload_mut(&mut m.packets[i]).unwrap();
        let last = d.len() - 1;
        d[last] ^= 0x01;
    }
    match replay_no_panic(&m).unwrap() {
        ReplayOutcome::Diverged(d) => {
            assert_eq!(d.packet, 3, "{d:?}");
            assert_eq!(d.frame, Some(frame), "{d:?}");
            assert_ne!(d.expected, d.got);
            assert!(d.expected.is_some() && d.got.is_some());
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn truncated_and_unreplayable_files_are_clean_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = capture("adv-static-hmac");
    let bytes = std::fs::read(&src).unwrap();
    let keys = std::fs::read_to_string(replay::default_sidecar(&src)).unwrap();
    // Cut short in the middle of a packet.
    let cut = dir.path().join("cut.pcapng");
    std::fs::write(&cut, &bytes[..bytes.len() / 2 + 3]).unwrap();
    std::fs::write(dir.path().join("cut.keys.json"), &keys).unwrap();
    match replay::replay_file(&cut, None) {
        Err(ReplayError::Capture { .. }) => {}
        r => panic!("{r:?}"),
    }
    // No sidecar.
    let lone = dir.path().join("lone.pcapng");
    std::fs::write(&lone, &bytes).unwrap();
    let e = replay::replay_file(&lone, None).unwrap_err();
    assert!(matches!(e, ReplayError::SidecarFile { .. }), "{e}");
    assert!(e.to_string().contains("--capture-secrets"), "{e}");
    // A format-1 sidecar (no replay information).
    let mut v: serde_json::Value = serde_json::from_str(&keys).unwrap();
    v["format"] = "meshprov-capture-keys/1".into();
    v.as_object_mut().unwrap().remove("replay");
    let old = dir.path().join("old.pcapng");
    std::fs::write(&old, &bytes).unwrap();
    std::fs::write(dir.path().join("old.keys.json"), v.to_string()).unwrap();
    let e = replay::replay_file(&old, None).unwrap_err();
    assert!(matches!(e, ReplayError::NotReplayable { .. }), "{e}");
    assert!(e.to_string().contains("record the session again"), "{e}");
    // Not a capture at all.
    let junk = dir.path().join("junk.pcapng");
    std::fs::write(&junk, b"hello").unwrap();
    std::fs::write(dir.path().join("junk.keys.json"), &keys).unwrap();
    assert!(matches!(
        replay::replay_file(&junk, None),
        Err(ReplayError::Capture { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random damage to the file (octets changed, the end cut) is a divergence, a recovery or
    /// a clean error — never a panic.
    #[test]
    fn random_file_mutations_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..6),
        keep in 0.3f64..=1.0,
    ) {
        let src = capture("adv-output-cmac");
        let mut bytes = std::fs::read(&src).unwrap();
        let keys = std::fs::read_to_string(replay::default_sidecar(&src)).unwrap();
        for (at, x) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        bytes.truncate(((bytes.len() as f64) * keep) as usize);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.pcapng");
        std::fs::write(&p, &bytes).unwrap();
        std::fs::write(dir.path().join("m.keys.json"), &keys).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| replay::replay_file(&p, None)));
        prop_assert!(r.is_ok(), "the replay panicked");
    }
}

fn meshprov(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshprov"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_exits_0_when_identical_and_3_naming_the_packet_when_not() {
    let src = capture("adv-static-hmac");
    let (c, out, err) = meshprov(&["replay", src.to_str().unwrap()]);
    assert_eq!(c, 0, "{out}{err}");
    assert!(out.contains("identical"), "{out}");
    assert!(out.contains("device keys    1 matched"), "{out}");
    let (c, out, _) = meshprov(&["replay", src.to_str().unwrap(), "--json"]);
    assert_eq!(c, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["result"], "identical");
    assert_eq!(v["device_keys"], 1);

    // The provisioner's Invite changed in every copy in the file: the attention duration.
    let input = replay::load(&src, None).unwrap();
    let me = input.spec.provisioner_address.to_ascii_uppercase();
    let invite = input.packets.iter().find_map(|p| match &p.kind {
        MeshPacketKind::Adv {
            adv_addr: Some(a),
            data,
            ..
        } if meshprov::radio::capture::format_bd_addr(a) == me
                // Link ID, transaction 0, Transaction Start of 2 octets, FCS, Invite (0x00).
                && data.len() == 11
                && data[4..8] == [0x00, 0x00, 0x00, 0x02]
                && data[9] == 0x00 =>
        {
            Some((p.frame, data.clone()))
        }
        _ => None,
    });
    let (frame, invite) = invite.expect("the Invite is in the capture");
    let mut bytes = std::fs::read(&src).unwrap();
    let mut changed = 0;
    let mut i = 0;
    while i + invite.len() <= bytes.len() {
        if bytes[i..i + invite.len()] == invite[..] {
            bytes[i + invite.len() - 1] = 0x05;
            changed += 1;
        }
        i += 1;
    }
    assert!(changed >= 3, "{changed}");
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.pcapng");
    std::fs::write(&m, &bytes).unwrap();
    std::fs::copy(
        replay::default_sidecar(&src),
        dir.path().join("m.keys.json"),
    )
    .unwrap();
    let (c, out, err) = meshprov(&["replay", m.to_str().unwrap()]);
    assert_eq!(c, 3, "{out}{err}");
    assert!(out.contains("diverged at sent packet"), "{out}");
    assert!(out.contains(&format!("capture frame {frame}")), "{out}");
    // Unreadable: exit 1 with what to do.
    let (c, _, err) = meshprov(&["replay", dir.path().join("none.pcapng").to_str().unwrap()]);
    assert_eq!(c, 1);
    assert!(err.contains("--capture-secrets"), "{err}");
}
