//! Recorded simulated sessions opened by Debian's `tshark -2` (Wireshark 4.0): the mesh layers
//! are dissected (`pbadv`, `provisioning` with the PDUs in the session's order, `btmproxy` on
//! PB-GATT, `beacon` in a scan, `btmesh` with the sidecar's keys) and nothing is malformed.
//!
//! Every tshark run has a timeout and is killed by its pid when it hangs. Without tshark the
//! tests fail when `CI` is set (`.ci/run` installs it), and print a note and pass otherwise.
//!
//! Wireshark 4.0 predates Mesh Protocol 1.1: it flags the HMAC-SHA256 algorithm bit of
//! Capabilities ("RFU value not equal to 0", a warning) and cannot parse the 32-octet
//! Confirmation and Random of BTM_ECDH_P256_HMAC_SHA256_AES_CCM ("Unknown Payload", an error).
//! The CMAC sessions must show no error at all; the HMAC session's errors must be exactly those.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meshprov::radio::capture::{
    AirTap, CaptureTap, KeySidecar, TapDirection, TapPacket, TapRecord, sidecar_path,
};
use pcap_file::pcapng::{Block, PcapNgReader, PcapNgWriter};

const BUILDING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/building.toml");
const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/vectors/network.json"
);
const LIGHT: &str = "7b2c1a90-0000-4000-8000-000000000001";
const DESK_LAMP: &str = "7b2c1a90-0000-4000-8000-000000000006";
const TIMEOUT: Duration = Duration::from_secs(60);

/// `_ws.expert.severity` of an error (PI_ERROR) and of a warning (PI_WARN).
const SEVERITY_ERROR: &str = "8388608";
const SEVERITY_WARN: &str = "6291456";

/// The tshark binary, or `None` (with a note) outside CI when it is missing.
fn tshark() -> Option<PathBuf> {
    for candidate in ["/usr/bin/tshark", "tshark"] {
        let ok = Command::new(candidate)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(PathBuf::from(candidate));
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "tshark is not installed, and CI is set: .ci/run installs it (apt-get install tshark)"
    );
    eprintln!("note: tshark is not installed; skipping the Wireshark dissection test");
    None
}

/// `tshark -2 -r FILE [-o OPT]... -T fields -E occurrence=a -e F...`: one row per frame, one
/// column per field (multiple occurrences joined by commas). Killed by pid after [`TIMEOUT`].
fn fields(tshark: &Path, file: &Path, options: &[String], names: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new(tshark);
    cmd.arg("-2").arg("-n").arg("-r").arg(file);
    for o in options {
        cmd.arg("-o").arg(o);
    }
    cmd.args(["-T", "fields", "-E", "occurrence=a", "-E", "separator=/t"]);
    for n in names {
        cmd.arg("-e").arg(n);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    // Read the pipes on their own threads so a large output cannot block tshark.
    let mut stdout = child.stdout.take().expect("stdout");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let mut stderr = child.stderr.take().expect("stderr");
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            // Child::kill signals this child's pid only.
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = out.join().expect("stdout reader");
    let err = err.join().expect("stderr reader");
    assert!(status.success(), "{cmd:?}: {err}");
    out.lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

fn meshprov(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_meshprov"))
        .args(args)
        .env("XDG_DATA_HOME", "/nonexistent-meshprov-test")
        .output()
        .expect("run meshprov");
    assert!(
        out.status.success(),
        "meshprov {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Records `meshprov provision UUID ARGS... --capture DIR/NAME.pcapng`.
fn record_session(dir: &Path, name: &str, uuid: &str, args: &[&str]) -> PathBuf {
    let file = dir.join(format!("{name}.pcapng"));
    let sim = format!("sim:{BUILDING}");
    let mut a = vec![
        "provision",
        uuid,
        "--radio",
        &sim,
        "--capture",
        file.to_str().expect("utf-8 path"),
    ];
    a.extend_from_slice(args);
    meshprov(&a);
    file
}

/// The rows' column `i`, with empty cells left out.
fn column(rows: &[Vec<String>], i: usize) -> Vec<String> {
    rows.iter()
        .filter_map(|r| r.get(i))
        .filter(|c| !c.is_empty())
        .cloned()
        .collect()
}

/// The provisioner's address on the simulated air (endpoint 0).
const PROVISIONER: &str = "c0:4d:50:00:00:00";

/// RF channel numbers (`btle_rf.channel`) of the advertising channels 37, 38 and 39.
const RF_37_38_39: [&str; 3] = ["0", "12", "39"];

/// The rows without the channel 38 and 39 copies of the provisioner's advertising events:
/// the capture holds every copy it sends (each event goes out on 37, 38 and 39), so a PDU it
/// sent once is in three frames. Columns `ch` and `adva` are `btle_rf.channel` and
/// `btle.advertising_address`. Received copies are kept: a receiver scans one channel at a
/// time.
fn one_copy_per_event(rows: &[Vec<String>], ch: usize, adva: usize) -> Vec<Vec<String>> {
    rows.iter()
        .filter(|r| {
            r.get(adva).map(String::as_str) != Some(PROVISIONER)
                || r.get(ch).map(String::as_str) == Some(RF_37_38_39[0])
        })
        .cloned()
        .collect()
}

/// Expert infos `(frame, severity, message)` and malformed frames of a capture.
struct Findings {
    experts: Vec<(String, String, String)>,
    malformed: Vec<String>,
}

fn findings(tshark: &Path, file: &Path, options: &[String]) -> Findings {
    let rows = fields(
        tshark,
        file,
        options,
        &[
            "frame.number",
            "_ws.expert.severity",
            "_ws.expert.message",
            "_ws.malformed",
        ],
    );
    let mut experts = Vec::new();
    let mut malformed = Vec::new();
    for r in &rows {
        let get = |i: usize| r.get(i).cloned().unwrap_or_default();
        if !get(1).is_empty() {
            for (s, m) in get(1).split(',').zip(get(2).split(',')) {
                experts.push((get(0), s.to_string(), m.to_string()));
            }
        }
        if !get(3).is_empty() {
            malformed.push(get(0));
        }
    }
    Findings { experts, malformed }
}

/// The provisioning PDU types of a capture in frame order (each reassembled PDU once: the
/// simulated air at 0 % loss retransmits nothing).
fn pdu_types(rows: &[Vec<String>], i: usize) -> Vec<u8> {
    column(rows, i)
        .iter()
        .flat_map(|c| c.split(','))
        .map(|t| t.parse().expect("a PDU type"))
        .collect()
}

/// Rewrites a capture with the advertising packets' "CRC checked" and "CRC valid" flags
/// cleared, so that Wireshark computes the CRC itself.
fn clear_crc_flags(from: &Path, to: &Path) {
    let bytes = std::fs::read(from).expect("read capture");
    let mut reader = PcapNgReader::new(&bytes[..]).expect("pcapng");
    let out = std::fs::File::create(to).expect("create");
    let mut writer =
        PcapNgWriter::with_section_header(out, reader.section().clone()).expect("writer");
    while let Some(block) = reader.next_block() {
        let mut block = block.expect("block").into_owned();
        if let Block::EnhancedPacket(p) = &mut block
            && p.interface_id == 0
        {
            let mut data = p.data.to_vec();
            data[9] &= !0x0c; // flags bits 10 and 11 (little-endian u16 at offset 8)
            p.data = data.into();
        }
        writer.write_block(&block).expect("write");
    }
}

#[test]
fn pb_adv_session_dissects_without_errors() {
    let Some(tshark) = tshark() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = record_session(dir.path(), "adv", LIGHT, &["--algorithm", "cmac"]);
    let rows = fields(
        &tshark,
        &file,
        &[],
        &[
            "frame.protocols",
            "pbadv.gen_prov.gpcf.bearer_opcode",
            "provisioning.pdu_type",
            "btle.advertising_address",
            "btle_rf.channel",
        ],
    );
    // Each advertising event of the provisioner is on air, and in the capture, three times.
    let sent_on = |rf: &str| {
        rows.iter()
            .filter(|r| r[3] == PROVISIONER && r.get(4).map(String::as_str) == Some(rf))
            .count()
    };
    let per_channel = RF_37_38_39.map(sent_on);
    assert!(per_channel[0] > 5, "{per_channel:?}");
    assert!(
        per_channel.iter().all(|&n| n == per_channel[0]),
        "{per_channel:?}"
    );
    // Received copies: on the channel the provisioner was listening to, any of the three.
    assert!(
        rows.iter()
            .filter(|r| r[3] != PROVISIONER)
            .all(|r| RF_37_38_39.contains(&r.get(4).map_or("", String::as_str))),
        "{rows:?}"
    );
    let all_rows = rows;
    let rows = one_copy_per_event(&all_rows, 4, 3);
    assert!(rows.len() > 20, "{} frames", rows.len());
    assert!(
        rows.iter().all(|r| r[0].contains("btle:btcommon:pbadv")),
        "every frame is PB-ADV on the LE link layer: {rows:?}"
    );
    // Link Open, Link Ack, Link Close.
    assert_eq!(column(&rows, 1), ["0", "1", "2"]);
    // Invite, Capabilities, Start, Public Key ×2, Confirmation ×2, Random ×2, Data, Complete.
    assert_eq!(pdu_types(&rows, 2), [0, 1, 2, 3, 3, 5, 5, 6, 6, 7, 8]);
    let addresses: std::collections::BTreeSet<String> = column(&rows, 3).into_iter().collect();
    assert_eq!(
        addresses.into_iter().collect::<Vec<_>>(),
        ["c0:4d:50:00:00:00", "c0:4d:50:00:00:01"],
        "AdvA: the provisioner and the device"
    );
    let f = findings(&tshark, &file, &[]);
    assert!(f.malformed.is_empty(), "malformed: {:?}", f.malformed);
    assert!(
        f.experts.iter().all(|(_, s, _)| s != SEVERITY_ERROR),
        "{:?}",
        f.experts
    );
    // The device offers HMAC too: Wireshark 4.0 calls that bit RFU (a warning), nothing else.
    assert!(
        f.experts
            .iter()
            .all(|(_, s, m)| s == SEVERITY_WARN && m == "RFU value not equal to 0"),
        "{:?}",
        f.experts
    );

    // Wireshark checks our CRC-24 itself once the capture no longer says it was checked.
    let unchecked = dir.path().join("unchecked.pcapng");
    clear_crc_flags(&file, &unchecked);
    let rows = fields(
        &tshark,
        &unchecked,
        &[],
        &["btle.crc", "btle.crc.incorrect"],
    );
    assert_eq!(column(&rows, 0).len(), rows.len(), "every frame has a CRC");
    assert!(column(&rows, 1).is_empty(), "incorrect CRC: {rows:?}");
}

#[test]
fn hmac_session_shows_only_wireshark_4_limits() {
    let Some(tshark) = tshark() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = record_session(dir.path(), "hmac", LIGHT, &["--algorithm", "hmac"]);
    let rows = fields(
        &tshark,
        &file,
        &[],
        &[
            "frame.number",
            "provisioning.pdu_type",
            "btle_rf.channel",
            "btle.advertising_address",
        ],
    );
    assert_eq!(
        pdu_types(&one_copy_per_event(&rows, 2, 3), 1),
        [0, 1, 2, 3, 3, 5, 5, 6, 6, 7, 8]
    );
    let confirmation_or_random: Vec<String> = rows
        .iter()
        .filter(|r| matches!(r.get(1).map(String::as_str), Some("5" | "6")))
        .map(|r| r[0].clone())
        .collect();
    let f = findings(&tshark, &file, &[]);
    assert!(f.malformed.is_empty(), "malformed: {:?}", f.malformed);
    let errors: Vec<_> = f
        .experts
        .iter()
        .filter(|(_, s, _)| s == SEVERITY_ERROR)
        .collect();
    assert_eq!(
        errors.len(),
        4,
        "one per 32-octet Confirmation and Random: {errors:?}"
    );
    for (frame, _, message) in errors {
        assert_eq!(message, "Unknown Payload");
        assert!(confirmation_or_random.contains(frame), "frame {frame}");
    }
}

#[test]
fn pb_gatt_session_dissects_through_att_and_proxy() {
    let Some(tshark) = tshark() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = record_session(
        dir.path(),
        "gatt",
        DESK_LAMP,
        &["--bearer", "gatt", "--algorithm", "cmac"],
    );
    let rows = fields(
        &tshark,
        &file,
        &[],
        &[
            "frame.protocols",
            "btatt.opcode",
            "btatt.handle",
            "btmproxy.type",
            "provisioning.pdu_type",
        ],
    );
    assert!(
        rows[0][0].ends_with("bthci_evt"),
        "the connection event first"
    );
    let writes_and_notifications: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r[1] == "0x52" || r[1] == "0x1b")
        .collect();
    assert!(writes_and_notifications.len() > 10);
    for r in &writes_and_notifications {
        let handle = if r[1] == "0x52" { "0x0012" } else { "0x0014" };
        assert_eq!(r[2], handle, "Data In / Data Out: {r:?}");
        assert!(r[0].ends_with("btatt:btmproxy") || r[0].ends_with("btmproxy:provisioning"));
        assert_eq!(r[3], "3", "proxy PDU type Provisioning");
    }
    // The 65-octet public keys go in several writes at MTU 23; tshark reassembles them.
    assert_eq!(pdu_types(&rows, 4), [0, 1, 2, 3, 3, 5, 5, 6, 6, 7, 8]);
    let f = findings(&tshark, &file, &[]);
    assert!(f.malformed.is_empty(), "malformed: {:?}", f.malformed);
    assert!(
        f.experts.iter().all(|(_, s, _)| s != SEVERITY_ERROR),
        "{:?}",
        f.experts
    );
}

#[test]
fn scan_capture_shows_every_beacon() {
    let Some(tshark) = tshark() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("scan.pcapng");
    let sim = format!("sim:{BUILDING}");
    meshprov(&[
        "scan",
        "--radio",
        &sim,
        "--duration",
        "3",
        "--capture",
        file.to_str().expect("utf-8"),
    ]);
    let rows = fields(
        &tshark,
        &file,
        &[],
        &[
            "beacon.type",
            "beacon.uuid",
            "beacon.oob",
            "beacon.uri_hash",
            "btle.advertising_header.pdu_type",
        ],
    );
    let mut beacons: Vec<(String, String, String)> = rows
        .iter()
        .filter(|r| r[0] == "0")
        .map(|r| (r[1].clone(), r[2].clone(), r[3].clone()))
        .collect();
    beacons.sort();
    beacons.dedup();
    let expected = [
        ("7b2c1a90-0000-4000-8000-000000000001", "0x8004", ""),
        ("7b2c1a90-0000-4000-8000-000000000002", "0x0002", "HASH"),
        ("7b2c1a90-0000-4000-8000-000000000003", "0x0000", ""),
        ("7b2c1a90-0000-4000-8000-000000000004", "0x0804", ""),
        ("7b2c1a90-0000-4000-8000-000000000005", "0x0000", ""),
    ];
    assert_eq!(beacons.len(), expected.len(), "{beacons:?}");
    for ((uuid, oob, hash), (eu, eo, eh)) in beacons.iter().zip(expected) {
        assert_eq!((uuid.as_str(), oob.as_str()), (eu, eo));
        assert_eq!(hash.is_empty(), eh.is_empty(), "{uuid} {hash}");
    }
    // PB-GATT adverts are connectable (ADV_IND), beacons are not (ADV_NONCONN_IND).
    let types: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[4].as_str()).collect();
    assert_eq!(types.into_iter().collect::<Vec<_>>(), ["0x00", "0x02"]);
    let f = findings(&tshark, &file, &[]);
    assert!(f.malformed.is_empty(), "malformed: {:?}", f.malformed);
    assert!(f.experts.is_empty(), "{:?}", f.experts);
}

fn vector(case: &serde_json::Value, key: &str) -> Vec<u8> {
    hex::decode(case[key].as_str().expect(key)).expect("hex")
}

/// The specification's message #6 (Config AppKey Add under a device key, two segments) and
/// message #1 (a control message), as network PDUs on air, with the keys in the sidecar:
/// Wireshark decrypts them with the sidecar's `-o` options and not without them.
#[test]
fn network_pdus_decrypt_with_the_sidecar_keys() {
    let Some(tshark) = tshark() else { return };
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("{VECTORS} must be present (not skipping): {e}"));
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    let cases = json["cases"].as_array().expect("cases");
    let m1 = &cases[0];
    let m6 = &cases[1];
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("net.pcapng");
    let tap = Arc::new(Mutex::new(
        CaptureTap::create(&file, "network PDUs", Duration::from_secs(1_700_000_000))
            .expect("create"),
    ));
    let mut pdus = vec![vector(m1, "network_pdu")];
    for p in m6["network_pdus"].as_array().expect("pdus") {
        pdus.push(hex::decode(p.as_str().expect("hex")).expect("hex"));
    }
    for (i, pdu) in pdus.iter().enumerate() {
        tap.lock().expect("lock").record(&TapRecord {
            at: meshprov::time::Instant::from_millis(20 * i as u64),
            direction: TapDirection::Sent,
            from: [0xc0, 0x4d, 0x50, 0, 0, 0],
            to: None,
            channel: 37 + (i % 3) as u8,
            rssi: None,
            packet: TapPacket::Adv {
                ad_type: 0x2a,
                data: pdu,
            },
        });
    }
    tap.lock().expect("lock").finish().expect("finish");
    let mut sidecar = KeySidecar::new(&file, "test", None);
    sidecar.iv_index = u32::from_str_radix(m6["iv_index"].as_str().expect("iv"), 16).expect("hex");
    let net_key: [u8; 16] = vector(m6, "net_key").try_into().expect("16");
    sidecar.add_net_key(0, &meshprov::crypto::NetKey::from_bytes(net_key));
    let dev_key: [u8; 16] = vector(m6, "dev_key").try_into().expect("16");
    // The device key of node 0x1201 (the destination of message #6).
    sidecar.add_device_key(
        0x1201,
        1,
        &meshprov::uuid::DeviceUuid([0; 16]),
        &meshprov::crypto::DevKey::from_bytes(dev_key),
    );
    sidecar.fill_wireshark_options();
    sidecar.write(&sidecar_path(&file)).expect("sidecar");

    let names = [
        "frame.protocols",
        "btmesh.src",
        "btmesh.dst",
        "btmesh.model.config_appkey_add.appkey",
    ];
    let rows = fields(&tshark, &file, &sidecar.wireshark, &names);
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r[0].ends_with("btmesh")), "{rows:?}");
    // SRC and DST (printed in decimal) are only readable once deobfuscated and decrypted.
    let addr = |r: &Vec<String>| (r[1].parse::<u16>().ok(), r[2].parse::<u16>().ok());
    assert_eq!(addr(&rows[0]), (Some(0x1201), Some(0xfffd)));
    assert_eq!(addr(&rows[1]), (Some(0x0003), Some(0x1201)));
    let appkey = column(&rows, 3);
    assert_eq!(
        appkey.len(),
        1,
        "the AppKey Add, reassembled and decrypted: {rows:?}"
    );
    assert_eq!(
        appkey[0].replace(':', ""),
        "63964771734fbd76e3b40519d1d94a48"
    );
    let f = findings(&tshark, &file, &sidecar.wireshark);
    assert!(f.malformed.is_empty(), "malformed: {:?}", f.malformed);
    assert!(
        f.experts.iter().all(|(_, s, _)| s != SEVERITY_ERROR),
        "{:?}",
        f.experts
    );

    // Without the keys nothing is deobfuscated.
    let rows = fields(&tshark, &file, &[], &names);
    assert!(
        column(&rows, 1).is_empty() && column(&rows, 3).is_empty(),
        "{rows:?}"
    );
}
