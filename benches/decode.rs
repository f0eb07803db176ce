//! Decode throughput on a large capture, against `tshark -2` on the same file in the same run
//! (issue 10, "Benchmarks"). Run with `cargo bench --bench decode` (release profile); set
//! `DECODE_BENCH_MB` for another size (default 110 MB). The capture is generated in a
//! temporary directory and deleted afterwards:
//!
//! - copies of the ESP32 PB-ADV run of `../shared/captures-ext/esp32-pb-adv-hmac.pcap` (link
//!   type 256), each with its own Link ID (and the link-layer CRC recomputed) and shifted in
//!   time, so that every copy is a new provisioning session with all its retransmissions;
//! - between them, fresh network PDUs: Generic OnOff Set messages under the same NetKey and
//!   AppKey with a new SEQ each, so every one is decrypted and decoded, none is a duplicate.
//!
//! Both tools get the keys: meshprov through the key file, tshark through
//! `uat:btmesh_nw_keys`. meshprov's text output and tshark's one-line summaries go to a sink.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use mesh_crypto::access::{AccessKey, AccessParams};
use mesh_crypto::ccm::MicLen;
use mesh_crypto::network::NetworkHeader;
use mesh_crypto::{AppKey, NetKey};
use meshprov::decode::{self, CaptureReader, DecodeKeys, DecodeOptions};
use meshprov::radio::capture::{
    ADV_CRC_INIT, ADV_NONCONN_IND, ad_structure, ble_crc24, le_ll_packet,
};

const NET_KEY: &str = "99d89627bc96d8e49c62cf0ad76624ca";
const APP_KEY: &str = "12121212121212121212121212121212";

fn record(out: &mut Vec<u8>, t_us: u64, p: &[u8]) {
    out.extend_from_slice(&((t_us / 1_000_000) as u32).to_le_bytes());
    out.extend_from_slice(&((t_us % 1_000_000) as u32).to_le_bytes());
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    out.extend_from_slice(p);
}

fn generate(path: &Path, target: u64) -> (u64, u64) {
    let esp =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures-ext/esp32-pb-adv-hmac.pcap");
    let mut reader = CaptureReader::open(&esp).expect("esp32 capture");
    let mut run: Vec<(i128, Vec<u8>)> = Vec::new();
    while let Some(p) = reader.next_packet().expect("read") {
        run.push((p.time_ns, p.data.to_vec()));
    }
    let t0 = run[0].0;
    let net = NetKey::from_bytes(hex::decode(NET_KEY).unwrap().try_into().unwrap());
    let app = AppKey::from_bytes(hex::decode(APP_KEY).unwrap().try_into().unwrap());
    let k2 = mesh_crypto::toolbox::k2(&net, &[0]);
    let aid = mesh_crypto::toolbox::k4(&app);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut header = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    header.extend_from_slice(&[0; 8]);
    header.extend_from_slice(&0xffffu32.to_le_bytes());
    header.extend_from_slice(&256u32.to_le_bytes());
    file.write_all(&header).unwrap();
    let (mut written, mut packets, mut seq, mut copy) = (header.len() as u64, 0u64, 0x100u32, 0u32);
    let mut buf = Vec::new();
    while written < target {
        buf.clear();
        let base_us = u64::from(copy) * 20_000_000;
        let link_id = 0x1000_0000u32 + copy;
        for (t, p) in &run {
            let mut p = p.clone();
            // PB-ADV: AD type 0x29 at offset 10 (phdr) + 4 (AA) + 2 (header) + 6 (AdvA) + 1.
            if p.get(23) == Some(&0x29) && p.len() > 28 {
                p[24..28].copy_from_slice(&link_id.to_be_bytes());
                let end = p.len() - 3;
                let crc = ble_crc24(ADV_CRC_INIT, &p[14..end]);
                p[end..].copy_from_slice(&crc);
            }
            record(&mut buf, base_us + ((t - t0) / 1000) as u64, &p);
            packets += 1;
        }
        for i in 0..300u32 {
            seq += 1;
            let params = AccessParams {
                seq,
                src: 0x0001,
                dst: 0x0005,
                iv_index: 0,
            };
            let upper = mesh_crypto::access::encrypt(
                AccessKey::App(&app),
                &params,
                None,
                &[0x82, 0x02, (i & 1) as u8, i as u8],
                MicLen::Mic4,
            )
            .unwrap();
            let mut lower = vec![0x40 | aid];
            lower.extend_from_slice(&upper);
            let h = NetworkHeader {
                ctl: false,
                ttl: 5,
                seq,
                src: 0x0001,
                dst: 0x0005,
            };
            let pdu = mesh_crypto::network::encrypt_pdu(&k2, 0, &h, &lower).unwrap();
            let p = le_ll_packet(
                37 + (i % 3) as u8,
                Some(-50),
                ADV_NONCONN_IND,
                &[0xc0, 0, 0, 0, 0, 1],
                &ad_structure(0x2a, &pdu),
            );
            record(&mut buf, base_us + 13_000_000 + u64::from(i) * 20_000, &p);
            packets += 1;
        }
        file.write_all(&buf).unwrap();
        written += buf.len() as u64;
        copy += 1;
    }
    file.flush().unwrap();
    (written, packets)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it too: only bench then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mb: u64 = std::env::var("DECODE_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(110);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.pcap");
    let t = Instant::now();
    let (bytes, packets) = generate(&path, mb * 1_000_000);
    println!(
        "generated {} ({:.1} MB, {packets} packets) in {:.1} s",
        path.display(),
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let keys = DecodeKeys::from_json(&format!(
        r#"{{"net_key":"{NET_KEY}","app_key":"{APP_KEY}","iv_index":0}}"#
    ))
    .unwrap();
    let mut sink = std::io::sink();
    let t = Instant::now();
    let (summary, err) = decode::decode_file(&path, keys, DecodeOptions::default(), |r| {
        let _ = writeln!(sink, "{}", r.to_text());
    })
    .unwrap();
    let ours = t.elapsed().as_secs_f64();
    assert!(err.is_none());
    let records: u64 = summary.stats.records.values().sum();
    println!(
        "meshprov decode: {ours:.2} s, {:.1} MB/s, {:.0} packets/s, {records} records ({} access messages, {} undecodable)",
        bytes as f64 / 1e6 / ours,
        packets as f64 / ours,
        summary.stats.count(decode::Kind::AccessMessage),
        summary.stats.count(decode::Kind::Undecodable),
    );

    let t = Instant::now();
    let status = std::process::Command::new("tshark")
        .args(["-2", "-n", "-r"])
        .arg(&path)
        .args([
            "-o",
            &format!(r#"uat:btmesh_nw_keys:"0x{NET_KEY}","0x{APP_KEY}","0x00000000""#),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    let theirs = t.elapsed().as_secs_f64();
    match status {
        Ok(s) if s.success() => println!(
            "tshark -2:       {theirs:.2} s, {:.1} MB/s; meshprov is {:.1}x faster",
            bytes as f64 / 1e6 / theirs,
            theirs / ours
        ),
        Ok(s) => println!("tshark -2 failed ({s}) after {theirs:.2} s"),
        Err(e) => println!("tshark not run: {e}"),
    }
}
