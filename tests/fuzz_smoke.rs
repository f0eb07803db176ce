//! The fuzz smoke (issue 11), on the stable toolchain: every fuzz target of
//! `meshprov::fuzzing` runs over its seed corpus (`tests/fuzz/corpus/NAME/`) and over a few
//! thousand inputs made from the seeds by seeded mutations (bit flips, octet changes,
//! insertions, deletions, splices, truncations) and plain random inputs. Deterministic: the
//! same inputs every run. A failing input is printed in hex and written to
//! `target/fuzz-smoke/NAME.bin` for `cargo +nightly fuzz run NAME target/fuzz-smoke/NAME.bin`.
//!
//! The long campaigns are the cargo-fuzz crate in `tests/fuzz` (nightly; see README
//! "Fuzzing"). `regenerate_seeds` (ignored; `tests/fuzz/seed.sh`) writes the seed corpora from
//! the shared sample data, tests/data and the shared captures.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

use meshprov::fuzzing::{self, TARGETS};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

/// Mutated and random inputs per target (on top of the seeds).
const MUTATIONS: usize = 2_000;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz")
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = fuzz_dir().join("corpus").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run tests/fuzz/seed.sh)", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

fn below(rng: &mut ChaCha20Rng, n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (rng.next_u64() % n as u64) as usize
    }
}

/// One mutated input: a seed (or nothing) with 1–8 edits.
fn mutate(rng: &mut ChaCha20Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    const INTERESTING: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x40, 0x20];
    if seeds.is_empty() || below(rng, 10) == 0 {
        let len = below(rng, 300);
        let mut v = vec![0; len];
        rng.fill_bytes(&mut v);
        return v;
    }
    let mut v = seeds[below(rng, seeds.len())].clone();
    for _ in 0..1 + below(rng, 8) {
        let len = v.len();
        match below(rng, 8) {
            0 if len > 0 => {
                let i = below(rng, len);
                v[i] ^= 1 << below(rng, 8);
            }
            1 if len > 0 => {
                let i = below(rng, len);
                v[i] = rng.next_u32() as u8;
            }
            2 if len > 0 => {
                let i = below(rng, len);
                v[i] = INTERESTING[below(rng, INTERESTING.len())];
            }
            3 => {
                let at = below(rng, len + 1);
                let n = 1 + below(rng, 16);
                let mut ins = vec![0; n];
                rng.fill_bytes(&mut ins);
                v.splice(at..at, ins);
            }
            4 if len > 0 => {
                let at = below(rng, len);
                let n = 1 + below(rng, (len - at).min(32));
                v.drain(at..at + n);
            }
            5 if len > 0 => {
                v.truncate(below(rng, len));
            }
            6 => {
                let other = &seeds[below(rng, seeds.len())];
                let from = below(rng, other.len() + 1);
                let at = below(rng, len + 1);
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
            _ if len > 1 => {
                // Duplicate a range.
                let at = below(rng, len);
                let n = 1 + below(rng, (len - at).min(32));
                let piece = v[at..at + n].to_vec();
                let to = below(rng, v.len() + 1);
                v.splice(to..to, piece);
            }
            _ => v.push(rng.next_u32() as u8),
        }
    }
    v
}

fn run_one(name: &str, f: fn(&[u8]), input: &[u8], what: &str) {
    if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-smoke");
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!("{name}.bin"));
        let _ = std::fs::write(&file, input);
        let shown = &input[..input.len().min(256)];
        panic!(
            "fuzz target {name} failed on {what}: {}{} (written to {})",
            hex::encode(shown),
            if shown.len() < input.len() { "…" } else { "" },
            file.display()
        );
    }
}

fn smoke(name: &str) {
    let (_, f) = *TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no target {name}"));
    let seeds = corpus(name);
    assert!(!seeds.is_empty(), "{name}: empty seed corpus");
    let start = Instant::now();
    for (i, s) in seeds.iter().enumerate() {
        run_one(name, f, s, &format!("seed {i}"));
    }
    let seed = name.bytes().fold(0x1111_u64, |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    for i in 0..MUTATIONS {
        let input = mutate(&mut rng, &seeds);
        run_one(name, f, &input, &format!("mutation {i}"));
    }
    eprintln!(
        "fuzz smoke {name}: {} seeds + {MUTATIONS} mutations in {:.2?}",
        seeds.len(),
        start.elapsed()
    );
}

macro_rules! smoke_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                smoke(stringify!($name));
            }
        )*

        /// Every target has a smoke test here, a cargo-fuzz wrapper and a seed corpus.
        #[test]
        fn every_target_is_wired() {
            let here: Vec<&str> = vec![$(stringify!($name)),*];
            let listed: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
            assert_eq!(here, listed, "smoke tests and fuzzing::TARGETS");
            let mut wrappers: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
                .expect("tests/fuzz/fuzz_targets")
                .map(|e| {
                    e.expect("entry")
                        .path()
                        .file_stem()
                        .expect("name")
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            wrappers.sort();
            let mut listed_sorted: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
            listed_sorted.sort();
            assert_eq!(wrappers, listed_sorted, "tests/fuzz/fuzz_targets/*.rs");
            let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml"))
                .expect("tests/fuzz/Cargo.toml");
            for n in &listed {
                let wrapper = std::fs::read_to_string(
                    fuzz_dir().join("fuzz_targets").join(format!("{n}.rs")),
                )
                .expect("wrapper");
                assert!(
                    wrapper.contains(&format!("meshprov::fuzzing::{n}(data)")),
                    "{n}.rs calls meshprov::fuzzing::{n}"
                );
                assert!(manifest.contains(&format!("name = \"{n}\"")), "{n} in Cargo.toml");
            }
        }
    };
}

smoke_tests!(
    prov_pdu,
    pb_adv,
    proxy_sar,
    network,
    access_config,
    beacon,
    cert,
    decode,
    plan,
    cdb,
    building,
);

/// The mutator makes distinct inputs (a smoke over one input a few thousand times would
/// test nothing).
#[test]
fn mutations_differ() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let seeds = vec![b"0123456789abcdef".to_vec()];
    let inputs: std::collections::BTreeSet<Vec<u8>> =
        (0..200).map(|_| mutate(&mut rng, &seeds)).collect();
    assert!(inputs.len() > 150, "only {} distinct inputs", inputs.len());
}

/// A failing target is caught and reported with its input (the smoke can fail).
#[test]
#[should_panic(expected = "fuzz target always_fails failed on seed 0: 0102")]
fn failures_are_reported() {
    fn always_fails(data: &[u8]) {
        assert!(data.is_empty(), "boom");
    }
    run_one("always_fails", always_fails, &[1, 2], "seed 0");
}

// ---------------------------------------------------------------------------------------------
// Seed corpora

fn shared() -> PathBuf {
    std::env::var_os("MESHPROV_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn hx(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("not hex: {v}"))).expect("hex")
}

/// A script chunk: length octet and octets.
fn chunk(out: &mut Vec<u8>, bytes: &[u8]) {
    assert!(bytes.len() <= 255, "chunk of {} octets", bytes.len());
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

struct Seeds {
    dir: PathBuf,
    n: usize,
    total: usize,
}

impl Seeds {
    fn new(name: &str) -> Self {
        let dir = fuzz_dir().join("corpus").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        Self {
            dir,
            n: 0,
            total: 0,
        }
    }

    fn add(&mut self, what: &str, bytes: &[u8]) {
        self.n += 1;
        self.total += bytes.len();
        std::fs::write(self.dir.join(format!("{:03}-{what}", self.n)), bytes).expect("write seed");
    }
}

/// Writes every seed corpus (`tests/fuzz/seed.sh`). Ignored in normal runs: the corpora are
/// committed, and this needs `../shared/captures-ext`.
#[test]
#[ignore = "writes tests/fuzz/corpus; run by tests/fuzz/seed.sh"]
fn regenerate_seeds() {
    let vectors = shared().join("vectors");
    let prov: Vec<serde_json::Value> = ["provisioning-cmac.json", "provisioning-hmac.json"]
        .iter()
        .map(|f| json(&vectors.join(f)))
        .collect();
    let mut total = 0;

    // Provisioning PDUs: every PDU of both sample runs, and the types they lack.
    let mut s = Seeds::new("prov_pdu");
    for (alg, v) in ["cmac", "hmac"].iter().zip(&prov) {
        for (k, val) in v.as_object().expect("object") {
            if k.ends_with("_pdu") || k.contains("_pdu_") {
                s.add(&format!("{alg}-{k}"), &hx(val));
            }
        }
        for (k, ty) in [
            ("confirmation_provisioner", 0x05u8),
            ("confirmation_device", 0x05),
            ("random_provisioner", 0x06),
            ("random_device", 0x06),
        ] {
            let mut p = vec![ty];
            p.extend(hx(&v[k]));
            s.add(&format!("{alg}-{k}"), &p);
        }
    }
    for (what, h) in [
        ("input-complete", "04"),
        ("failed", "0902"),
        ("record-request", "0a000100000038"),
        ("record-response", "0b00000100000004deadbeef"),
        ("records-get", "0c"),
        ("records-list", "0d000000010002"),
    ] {
        s.add(what, &hex::decode(h).expect("hex"));
    }
    total += s.total;

    // PB-ADV scripts: flags, then the device's side of a run (Link ACK is implicit).
    let mut s = Seeds::new("pb_adv");
    for (alg, v) in ["cmac", "hmac"].iter().zip(&prov) {
        for flags in [0u8, 1, 2] {
            let mut script = vec![flags];
            for k in [
                "capabilities_pdu",
                "public_key_pdu_device",
                "confirmation_device",
                "random_device",
                "complete_pdu",
            ] {
                let mut pdu = hx(&v[k]);
                if k.starts_with("confirmation") {
                    pdu.insert(0, 0x05);
                } else if k.starts_with("random") {
                    pdu.insert(0, 0x06);
                }
                script.push(3); // ack what the provisioner sent
                script.push(4); // a time step
                script.push(5);
                script.push(2); // the device's PDU, segmented
                chunk(&mut script, &pdu);
            }
            s.add(&format!("{alg}-run-{flags}"), &script);
        }
    }
    // Records: Capabilities with certificate-based OOB, then a Records List and fragments.
    {
        let mut script = vec![2u8];
        let mut caps = hx(&prov[1]["capabilities_pdu"]);
        caps[4] |= 0x00;
        caps[5] = 0x00;
        caps[6] = 0x80; // OOB Type: certificate-based provisioning
        script.extend([3, 2]);
        chunk(&mut script, &caps);
        script.extend([3, 2]);
        chunk(&mut script, &hex::decode("0d000000010002").expect("hex"));
        script.extend([3, 2]);
        chunk(
            &mut script,
            &hex::decode("0b0000010000000830820104deadbeef").expect("hex"),
        );
        script.extend([4, 250, 4, 250]);
        s.add("records", &script);
    }
    // Raw payloads: the §8 FCS samples as Transaction Starts on our link.
    for c in json(&vectors.join("pb-adv-fcs.json"))["cases"]
        .as_array()
        .expect("cases")
    {
        let pdu = hx(&c["pdu"]);
        let fcs = hx(&c["fcs"]);
        if pdu.len() > 20 {
            continue;
        }
        let mut payload = vec![0x80];
        payload.push(((pdu.len() as u8).min(63)) << 2);
        payload.extend_from_slice(&(pdu.len() as u16).to_be_bytes());
        payload.extend_from_slice(&fcs);
        payload.extend_from_slice(&pdu);
        let mut script = vec![0u8, 1];
        chunk(&mut script, &payload);
        s.add("raw-start", &script);
    }
    total += s.total;

    // Proxy SAR scripts.
    let net = json(&vectors.join("network.json"));
    let cases = net["cases"].as_array().expect("cases");
    let message_1 = hx(&cases[0]["network_pdu"]);
    let mut s = Seeds::new("proxy_sar");
    {
        let mut script = vec![0u8];
        let mut whole = vec![0x00];
        whole.extend_from_slice(&message_1);
        script.push(0);
        chunk(&mut script, &whole);
        // Segmented: first, continuation, last.
        for (sar, part) in [
            (0x40u8, &message_1[..8]),
            (0x80, &message_1[8..16]),
            (0xc0, &message_1[16..]),
        ] {
            let mut seg = vec![sar];
            seg.extend_from_slice(part);
            script.push(0);
            chunk(&mut script, &seg);
        }
        s.add("network-pdu-segments", &script);
    }
    for (what, msg) in [
        ("set-filter-type", "0000"),
        ("add-addresses", "01000100027fff"),
        ("remove-addresses", "020001"),
        ("filter-status", "030000000001"),
    ] {
        let mut script = vec![40u8, 1];
        chunk(&mut script, &hex::decode(msg).expect("hex"));
        script.extend([3, 10]);
        s.add(&format!("config-{what}"), &script);
    }
    {
        let mut script = vec![0u8, 2];
        chunk(&mut script, &hx(&cases[0]["transport_pdu"]));
        script.extend([0, 0]);
        script.extend([2]);
        chunk(&mut script, &hx(&cases[0]["transport_pdu"]));
        script.extend([1, 0, 3, 250]);
        s.add("secured-network-pdus", &script);
    }
    total += s.total;

    // Network scripts: the §8.3 PDUs raw, transport PDUs secured by the peer, access messages.
    let mut s = Seeds::new("network");
    for c in cases {
        if let Some(p) = c.get("network_pdu") {
            let mut script = vec![0u8];
            chunk(&mut script, &hx(p));
            s.add("sample-network-pdu", &script);
            s.add("sample-lower-pdu", &hx(&c["transport_pdu"]));
        }
        if let Some(ps) = c.get("network_pdus").and_then(|p| p.as_array()) {
            let mut script = Vec::new();
            for p in ps {
                script.push(0);
                chunk(&mut script, &hx(p));
            }
            s.add("sample-segmented", &script);
        }
        if let Some(ls) = c.get("lower_transport_pdus").and_then(|p| p.as_array()) {
            let mut script = Vec::new();
            for l in ls {
                script.push(1);
                chunk(&mut script, &hx(l));
                script.push(0); // access, TTL 0, to us
            }
            script.extend([3, 200, 3, 200]);
            s.add("lower-segments-secured", &script);
            for l in ls {
                s.add("sample-lower-segment", &hx(l));
            }
        }
        if let Some(a) = c.get("access_pdu") {
            for bits in [0u8, 1, 2, 4, 5, 12, 20] {
                let mut script = vec![2u8];
                chunk(&mut script, &hx(a));
                script.push(bits);
                script.extend([3, 20]);
                s.add(&format!("access-{bits}"), &script);
            }
        }
    }
    {
        // A long access message (segmented, some segments lost), then time for acks.
        let mut script = vec![2u8];
        chunk(&mut script, &[0x80u8, 0x08].repeat(40));
        script.push(8);
        script.extend([3, 5, 3, 5, 3, 200]);
        s.add("access-lossy", &script);
    }
    total += s.total;

    // Access / Config: messages, and request → response scripts for the client.
    let mut s = Seeds::new("access_config");
    let page0 = "0200590000000a000300000000000102000000";
    let comp_status = format!("02{page0}");
    let pairs = [
        ("composition", "800800", comp_status.as_str()),
        (
            "appkey-add",
            "00000000636363636363636363636363636363636363",
            "80030000000000",
        ),
        ("default-ttl", "800c", "800e05"),
        ("default-ttl-set", "800d05", "800e05"),
        ("relay", "8026", "80280121"),
        ("gatt-proxy", "8012", "801401"),
        ("beacon", "8009", "800b01"),
        ("network-transmit", "8023", "802521"),
        ("node-reset", "8049", "804a"),
        ("key-refresh", "801500 00", "8017000000 00"),
        ("model-app-bind", "803d020000000010", "803e00020000000010"),
        ("sub-add", "801b020001c00010", "801f00020001c00010"),
        ("appkey-get", "80010000", "8002000000"),
        ("netkey-get", "8042", "80430000"),
    ];
    for (what, req, rsp) in pairs {
        let req = hex::decode(req.replace(' ', "")).expect("hex");
        let rsp = hex::decode(rsp.replace(' ', "")).expect("hex");
        s.add(&format!("{what}-request"), &req);
        s.add(&format!("{what}-response"), &rsp);
        let mut script = vec![0u8];
        chunk(&mut script, &req);
        script.extend([2, 5, 1, 0]);
        chunk(&mut script, &rsp);
        script.extend([2, 250]);
        s.add(&format!("{what}-script"), &script);
    }
    s.add("page0", &hex::decode(page0).expect("hex"));
    total += s.total;

    // Beacons and service data.
    let mut s = Seeds::new("beacon");
    for c in json(&vectors.join("beacons.json"))["cases"]
        .as_array()
        .expect("cases")
    {
        s.add(c["kind"].as_str().unwrap_or("beacon"), &hx(&c["beacon"]));
    }
    for (what, h) in [
        ("unprovisioned", "007b2c1a900000400080000000000000010000"),
        (
            "unprovisioned-uri",
            "007b2c1a90000040008000000000000001000212345678",
        ),
        (
            "pb-gatt-service-data",
            "7b2c1a900000400080000000000000010000",
        ),
        ("proxy-network-id", "003ecaff672f673370"),
        (
            "proxy-node-identity",
            "018ea261582f364f6f00112233445566 77"
                .replace(' ', "")
                .as_str(),
        ),
    ] {
        s.add(what, &hex::decode(h).expect("hex"));
    }
    total += s.total;

    // Certificates: the test PKI's, as DER, PEM, and patch scripts.
    let mut s = Seeds::new("cert");
    let [root, inter, device] = fuzzing::test_certificates();
    s.add("device.der", &device);
    s.add("intermediate.der", &inter);
    s.add("root.der", &root);
    let pem = |der: &[u8]| meshprov::cert::ca::to_pem(der).expect("pem");
    s.add(
        "chain.pem",
        format!("{}{}", pem(&device), pem(&inter)).as_bytes(),
    );
    for mode in [1u8, 2] {
        s.add(&format!("patch-{mode}"), &[mode, 0x00, 0x20, 0x05]);
    }
    let mut split = vec![0u8];
    split.extend_from_slice(&(device.len() as u16 - 1).to_be_bytes());
    split.extend_from_slice(&device);
    split.extend_from_slice(&(inter.len() as u16).to_be_bytes());
    split.extend_from_slice(&inter);
    s.add("split", &split);
    total += s.total;

    // Captures: the first 2 KiB of each shared capture, and wrapped packets of the ESP32
    // PB-ADV capture (the decoder knows its keys).
    let mut s = Seeds::new("decode");
    let ext = shared().join("captures-ext");
    for f in [
        "esp32-pb-adv-hmac.pcap",
        "nrf-sniffer-pb-gatt.pcapng",
        "android-hci-pb-gatt.btsnoop",
        "nrf-sniffer-proxy.pcapng",
    ] {
        let bytes = std::fs::read(ext.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        s.add(&format!("{f}-head"), &bytes[..bytes.len().min(2048)]);
    }
    for (f, link_index) in [
        ("esp32-pb-adv-hmac.pcap", 3u8),
        ("nrf-sniffer-pb-gatt.pcapng", 4),
        ("android-hci-pb-gatt.btsnoop", 0),
    ] {
        let mut reader =
            meshprov::decode::CaptureReader::open(&ext.join(f)).expect("capture opens");
        let mut packets: Vec<Vec<u8>> = Vec::new();
        while let Ok(Some(p)) = reader.next_packet() {
            if p.data.len() <= 255 {
                packets.push(p.data.to_vec());
            }
        }
        for (i, window) in packets.chunks(40).enumerate().take(4) {
            let mut script = vec![1u8, link_index];
            for p in window {
                chunk(&mut script, p);
            }
            s.add(&format!("{f}-packets-{i}"), &script);
        }
    }
    total += s.total;

    // Plans: the demo plan.
    let mut s = Seeds::new("plan");
    let devices: Vec<(String, String, i32, String, usize, String)> = (0..3)
        .map(|i| {
            (
                format!("7b2c1a90-0000-4000-8000-00000000000{i}"),
                format!("dev {i}"),
                i as i32,
                "lobby".to_string(),
                i,
                ["cert", "static:00112233445566778899aabbccddeeff", "output"][i].to_string(),
            )
        })
        .collect();
    s.add(
        "demo.toml",
        meshprov::tools::rollout::demo_plan(&devices).as_bytes(),
    );
    total += s.total;

    // CDB files and the building file from tests/data.
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut s = Seeds::new("cdb");
    for f in ["bluez.json", "nrf-mesh.json", "nrf-mesh-partial.json"] {
        s.add(f, &std::fs::read(data.join("cdb").join(f)).expect("cdb"));
    }
    total += s.total;
    let mut s = Seeds::new("building");
    s.add(
        "building.toml",
        &std::fs::read(data.join("building.toml")).expect("building"),
    );
    total += s.total;

    assert!(
        total < 1 << 20,
        "seed corpora of {total} octets: keep them under 1 MB"
    );
    eprintln!("seed corpora: {total} octets");
}
