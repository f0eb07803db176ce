//! No key leaks (issue 11 item 3): real work on the simulated radio — `provision --all` and a
//! GATT `provision` with static, Output and Input OOB and an OOB public key, two key
//! refreshes, `node` and `net` commands, `decode`, a `rollout` with certificates, static and
//! Output OOB (JSON lines and report), the same rollout in-process into the terminal UI's view
//! model — all on ENCRYPTED stores, and every byte meshprov emits is searched for every secret
//! of the run, in hex (both cases) and as raw octets: NetKeys (old and new), AppKeys (old and
//! new), every DevKey, every session's ECDH private key and secret, AuthValue, ConfirmationKey,
//! SessionKey and SessionNonce, and the store's passphrase.
//!
//! The session secrets are known from a first run of the same seeded sessions with
//! `--capture-secrets` (which writes them to the key sidecar on purpose); the second run, the
//! one searched, is identical (same device keys) but asks for no secrets. The ConfirmationKey is
//! not in the sidecar: it is derived here from the sidecar's ECDH secret and AuthValue and the
//! first run's capture, and checked against the Confirmation the provisioner sent.
//!
//! Searched: stdout and stderr of every command, the rollout's JSON lines and report, the
//! capture `.pcapng` written without `--capture-secrets` (its `.keys.json` is the key sidecar,
//! so only session secrets are searched there), `decode` of it, the stores' journal text, the
//! terminal UI rendered from the rollout's events, `Debug` of every structure that holds keys,
//! and panic messages of deliberately failing unwraps on values that hold keys. Then the
//! encrypted stores' `.db`, `-wal` and `-shm` files, while a connection has written to them,
//! must hold no key in plaintext. Finally the detector must see a key printed on purpose.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meshprov::crypto::AuthValue;
use meshprov::crypto::EcdhSecret;
use meshprov::crypto::ecdh::KeyPair;
use meshprov::crypto::provisioning::{
    Algorithm, ProvRandom, confirmation, confirmation_inputs, confirmation_key, confirmation_salt,
};
use meshprov::rollout::{self, Observer, RolloutEvent, SharedStore};
use meshprov::sim::building::Building;
use meshprov::store::{KdfParams, Passphrase, Store};
use meshprov::uuid::DeviceUuid;
use serde_json::Value;

const PASS: &str = "leak-test passphrase: never printed";
const BUILDING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/building.toml");
const GATT_DEVICE: &str = "7b2c1a90-0000-4000-8000-000000000006";
const CHEAP: [&str; 4] = ["--kdf-memory-kib", "64", "--kdf-time", "1"];

/// Runs meshprov in `dir` with the passphrase in the environment; killed (by its pid) after 120 s.
fn meshprov(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshprov"))
        .args(args)
        .current_dir(dir)
        .env("MESHPROV_PASSPHRASE", PASS)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("meshprov {args:?} did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Everything meshprov emitted, by where it came from.
#[derive(Default)]
struct Corpus(Vec<(String, Vec<u8>)>);

impl Corpus {
    fn add(&mut self, name: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.0.push((name.into(), bytes.into()));
    }

    fn run(&mut self, dir: &Path, args: &[&str]) -> Output {
        let o = meshprov(dir, args);
        let name = args.join(" ");
        self.add(format!("stdout of `meshprov {name}`"), o.stdout.clone());
        self.add(format!("stderr of `meshprov {name}`"), o.stderr.clone());
        o
    }

    fn file(&mut self, path: &Path) {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.add(path.display().to_string(), bytes);
    }

    fn total(&self) -> usize {
        self.0.iter().map(|(_, b)| b.len()).sum()
    }
}

/// The secrets of the run, by what they are.
#[derive(Default)]
struct Secrets(BTreeMap<Vec<u8>, String>);

impl Secrets {
    fn add(&mut self, what: impl Into<String>, bytes: &[u8]) {
        assert!(bytes.len() >= 13, "a secret of {} octets", bytes.len());
        self.0.entry(bytes.to_vec()).or_insert_with(|| what.into());
    }

    fn add_hex(&mut self, what: impl Into<String>, h: &str) {
        self.add(what, &hex::decode(h).unwrap());
    }
}

/// The forms a secret is searched in: hex in both cases and, when it has at least 8 non-zero
/// octets (an Output OOB AuthValue is mostly zeros, which raw binary data could hold by chance),
/// the raw octets.
fn forms(secret: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let lower = hex::encode(secret);
    let mut v = vec![
        ("hex", lower.clone().into_bytes()),
        ("HEX", lower.to_uppercase().into_bytes()),
    ];
    if secret.iter().filter(|b| **b != 0).count() >= 8 {
        v.push(("raw", secret.to_vec()));
    }
    v
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Every place a secret appears.
fn leaks(corpus: &Corpus, secrets: &Secrets) -> Vec<String> {
    let mut out = Vec::new();
    for (secret, what) in &secrets.0 {
        for (form, needle) in forms(secret) {
            for (name, hay) in &corpus.0 {
                if let Some(at) = find(hay, &needle) {
                    out.push(format!("{what} ({form}) in {name} at octet {at}"));
                }
            }
        }
    }
    out
}

/// The detector itself: it must find a key in every form it claims to search, and nothing else.
#[test]
fn the_detector_sees_a_key_in_every_form() {
    let key = hex::decode("7dd7364cd842ad18c17c2b820c84c3d6").unwrap();
    let mut secrets = Secrets::default();
    secrets.add("NetKey 0", &key);
    let mut c = Corpus::default();
    c.add(
        "clean",
        b"nothing to see 7dd7364cd842ad18c17c2b820c84c3d".to_vec(),
    );
    assert!(leaks(&c, &secrets).is_empty());
    for (name, bytes) in [
        ("lower", b"key=7dd7364cd842ad18c17c2b820c84c3d6\n".to_vec()),
        ("upper", b"\"7DD7364CD842AD18C17C2B820C84C3D6\"".to_vec()),
        ("raw", [&b"\x00\x01"[..], &key, &b"\xff"[..]].concat()),
    ] {
        let mut c = Corpus::default();
        c.add(name, bytes);
        let found = leaks(&c, &secrets);
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        assert!(
            found[0].contains("NetKey 0") && found[0].contains(name),
            "{found:?}"
        );
    }
    // A low-entropy AuthValue (Output OOB 87475) is searched in hex only.
    let auth = hex::decode("000000000000000000000000000155b3").unwrap();
    assert_eq!(forms(&auth).len(), 2);
}

/// The file check can fail: a plain store's files, read while it is open, do show its keys.
#[test]
fn a_plain_store_s_files_show_its_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("plain.db");
    let mut s = Store::open(&path).unwrap();
    let mut rng = meshprov::store::os_rng().unwrap();
    s.create_network("plain", None, &mut rng).unwrap();
    s.add_app_key("a", 0, None, &mut rng).unwrap();
    let mut secrets = Secrets::default();
    secrets.add("NetKey 0", s.net_key(0).unwrap().expose_secret());
    secrets.add("AppKey 0", s.app_key(0).unwrap().expose_secret());
    let mut files = Corpus::default();
    for suffix in ["", "-wal", "-shm"] {
        files.file(Path::new(&format!("{}{suffix}", path.display())));
    }
    let found = leaks(&files, &secrets);
    assert!(
        found.iter().any(|f| f.contains("NetKey 0 (raw)"))
            && found.iter().any(|f| f.contains("AppKey 0 (raw)")),
        "{found:?}"
    );
}

fn json_lines(b: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(b)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn unlocked(path: &Path) -> Store {
    let mut s = Store::open(path).unwrap();
    assert!(s.is_locked(), "{} should be encrypted", path.display());
    s.unlock(&Passphrase::new(PASS.into())).unwrap();
    s
}

/// Every key a store holds now: NetKeys and AppKeys (old ones of a key refresh too) and device
/// keys.
fn store_keys(path: &Path, label: &str, secrets: &mut Secrets) {
    let doc = unlocked(path).document().unwrap();
    for k in &doc.net_keys {
        let i = k.index;
        if let Some(x) = &k.key {
            secrets.add(format!("{label} NetKey {i}"), x.expose_secret());
        }
        if let Some(x) = &k.old_key {
            secrets.add(format!("{label} old NetKey {i}"), x.expose_secret());
        }
    }
    for k in &doc.app_keys {
        let i = k.index;
        if let Some(x) = &k.key {
            secrets.add(format!("{label} AppKey {i}"), x.expose_secret());
        }
        if let Some(x) = &k.old_key {
            secrets.add(format!("{label} old AppKey {i}"), x.expose_secret());
        }
    }
    for n in &doc.nodes {
        if let Some(x) = &n.device_key {
            secrets.add(
                format!("{label} DevKey of node {:04X}", n.address),
                x.expose_secret(),
            );
        }
    }
}

/// The session secrets of a capture made with `--capture-secrets`, and each session's
/// ConfirmationKey, derived from them and the capture and checked against the Confirmation the
/// provisioner sent. Returns the device keys of the sessions.
fn session_secrets(dir: &Path, capture: &str, secrets: &mut Secrets) -> Vec<String> {
    let sidecar = dir.join(capture.replace(".pcapng", ".keys.json"));
    let side: Value = serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    let sessions = side["secrets"]["sessions"].as_array().unwrap().clone();
    assert!(
        !sessions.is_empty(),
        "{}: no session secrets",
        sidecar.display()
    );
    let decoded = meshprov(
        dir,
        &[
            "decode",
            capture,
            "--keys",
            sidecar.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(decoded.status.success(), "{decoded:?}");
    // Provisioning PDUs by link (PB-ADV) or connection (PB-GATT), direction and type: first copy.
    let mut pdus: BTreeMap<(String, String, String), Vec<u8>> = BTreeMap::new();
    for r in json_lines(&decoded.stdout) {
        if r["kind"] != "provisioning_pdu" {
            continue;
        }
        let link = r["link_id"]
            .as_str()
            .or(r["session"].as_str())
            .unwrap()
            .to_string();
        let key = (
            link,
            r["direction"].as_str().unwrap().to_string(),
            r["pdu_type"].as_str().unwrap().to_string(),
        );
        pdus.entry(key)
            .or_insert_with(|| hex::decode(r["hex"].as_str().unwrap()).unwrap());
    }
    let building = Building::load(Path::new(BUILDING)).unwrap();
    let mut device_keys = Vec::new();
    for s in &sessions {
        let h = |k: &str| s[k].as_str().unwrap_or_else(|| panic!("{k} in {s}"));
        let uuid = h("device_uuid");
        for (what, field) in [
            ("ECDH private key", "provisioner_private_key"),
            ("ECDH secret", "ecdh_secret"),
            ("AuthValue", "auth_value"),
            ("SessionKey", "session_key"),
            ("SessionNonce", "session_nonce"),
            ("DevKey", "device_key"),
        ] {
            secrets.add_hex(format!("{what} of {uuid}"), h(field));
        }
        device_keys.push(h("device_key").to_lowercase());
        // The session's link: the one whose provisioner Public Key PDU carries its key.
        let public = hex::decode(h("provisioner_public_key")).unwrap();
        let link = pdus
            .iter()
            .find(|((_, d, t), b)| {
                d == "provisioner" && t == "Provisioning Public Key" && b[1..] == public[..]
            })
            .map(|((l, _, _), _)| l.clone())
            .unwrap_or_else(|| panic!("no Public Key PDU of {uuid}'s session in {capture}"));
        let pdu = |dir: &str, t: &str| -> Option<Vec<u8>> {
            pdus.get(&(link.clone(), dir.into(), t.into()))
                .map(|b| b[1..].to_vec())
        };
        let start = pdu("provisioner", "Provisioning Start").unwrap();
        let alg = if start[0] == 0 {
            Algorithm::CmacAes128
        } else {
            Algorithm::HmacSha256
        };
        let device_public = pdu("device", "Provisioning Public Key").unwrap_or_else(|| {
            // An OOB public key: never on air; the building has the device's private key.
            let u: DeviceUuid = uuid.parse().unwrap();
            let private = building.device(&u).unwrap().private_key.unwrap();
            KeyPair::from_private_bytes(&private)
                .unwrap()
                .public_key()
                .as_bytes()
                .to_vec()
        });
        let inputs = confirmation_inputs(
            &pdu("provisioner", "Provisioning Invite").unwrap()[..]
                .try_into()
                .unwrap(),
            &pdu("device", "Provisioning Capabilities").unwrap()[..]
                .try_into()
                .unwrap(),
            &start[..].try_into().unwrap(),
            &public[..].try_into().unwrap(),
            &device_public[..].try_into().unwrap(),
        );
        let salt = confirmation_salt(alg, &inputs);
        let ecdh = EcdhSecret::from_hex(h("ecdh_secret")).unwrap();
        let auth = AuthValue::from_slice(&hex::decode(h("auth_value")).unwrap()).unwrap();
        let ck = confirmation_key(alg, &ecdh, &salt, &auth).unwrap();
        let random =
            ProvRandom::from_slice(&hex::decode(h("provisioner_random")).unwrap()).unwrap();
        let sent = pdu("provisioner", "Provisioning Confirmation").unwrap();
        assert_eq!(
            confirmation(alg, &ck, &random, &auth).unwrap().as_bytes(),
            &sent[..],
            "the ConfirmationKey derived for {uuid} does not give the Confirmation on air"
        );
        secrets.add(format!("ConfirmationKey of {uuid}"), ck.expose_secret());
    }
    device_keys.sort();
    device_keys
}

fn device_keys_of(dir: &Path, capture: &str) -> Vec<String> {
    let side: Value = serde_json::from_slice(
        &std::fs::read(dir.join(capture.replace(".pcapng", ".keys.json"))).unwrap(),
    )
    .unwrap();
    assert!(
        side["secrets"].is_null(),
        "{capture}: secrets without --capture-secrets"
    );
    let mut v: Vec<String> = side["device_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap().to_lowercase())
        .collect();
    v.sort();
    v
}

/// An observer that keeps the events and feeds the terminal UI's view model, as the glue does.
struct ViewObserver {
    events: Vec<RolloutEvent>,
    model: meshprov_tui::ViewModel,
}

impl Observer for ViewObserver {
    fn event(&mut self, ev: &RolloutEvent) {
        self.events.push(ev.clone());
        let opts = meshprov::tools::tui_glue::MapOptions { prompts: true };
        for u in meshprov::tools::tui_glue::updates(ev, &self.model, opts) {
            let _ = self.model.apply(u);
        }
    }
}

/// The demo's rollout in-process on an encrypted store: its events, `Debug` of what holds keys,
/// and the terminal UI rendered on every screen.
fn rollout_in_process(dir: &Path, corpus: &mut Corpus) {
    let plan = rollout::Plan::load(&dir.join("plan.toml")).unwrap();
    let building = Building::load(&dir.join("building.toml")).unwrap();
    {
        let mut s = Store::open(&plan.store).unwrap();
        s.encrypt(&Passphrase::new(PASS.into()), &KdfParams::TEST_ONLY_CHEAP)
            .unwrap();
    }
    let mut rng = meshprov::store::os_rng().unwrap();
    let store = rollout::open_store_with(&plan, &mut rng, &mut |s| {
        assert!(s.is_locked());
        s.unlock(&Passphrase::new(PASS.into()))?;
        Ok(())
    })
    .unwrap();
    let store: SharedStore = std::rc::Rc::new(std::cell::RefCell::new(store));
    let prepared = rollout::prepare(&plan, &mut store.borrow_mut(), &mut rng).unwrap();
    let mut model = meshprov_tui::ViewModel::new(&plan.network_name, "sim");
    for d in &prepared.devices {
        model
            .devices
            .upsert(meshprov::tools::tui_glue::planned_row(d));
    }
    let mut obs = ViewObserver {
        events: Vec::new(),
        model,
    };
    let opts = rollout::sim_driver::SimOptions {
        seed: 5,
        ..Default::default()
    };
    let out = rollout::sim_driver::run(&plan, &building, store.clone(), &prepared, &opts, &mut obs)
        .unwrap();
    assert!(out.report.summary.done > 0, "{:?}", out.report.summary);
    corpus.add("Debug of the plan", format!("{plan:?}"));
    corpus.add("Debug of the prepared run", format!("{prepared:?}"));
    corpus.add("Debug of the events", format!("{:?}", obs.events));
    corpus.add(
        "JSON of the events",
        obs.events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect::<Vec<_>>()
            .join("\n"),
    );
    corpus.add("Debug of the report", format!("{:?}", out.report));
    let mut app = meshprov_tui::App::new(
        obs.model,
        meshprov_tui::theme::Theme::new(meshprov_tui::theme::ColorSupport::Monochrome),
    );
    use meshprov_tui::Screen;
    for screen in [
        Screen::Dashboard,
        Screen::Devices,
        Screen::Detail,
        Screen::Log,
        Screen::KeyRefresh,
        Screen::Discovery,
    ] {
        app.set_screen(screen);
        corpus.add(
            format!("terminal UI, {screen:?} screen"),
            meshprov_tui::ui::render_to_text(&mut app, 200, 60),
        );
    }
    corpus.add("Debug of the view model", format!("{:?}", app.model));
}

/// Panic messages of unwraps that fail on values holding keys (as a bug would), caught.
fn panics(stores: &[PathBuf], corpus: &mut Corpus) {
    let messages = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = messages.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        sink.lock().unwrap().push(info.to_string());
    }));
    for path in stores {
        let s = unlocked(path);
        let nodes = s.nodes().unwrap();
        let doc = s.document().unwrap();
        use std::panic::{AssertUnwindSafe, catch_unwind};
        // Unwraps that fail with a key in the message (its Debug), as a bug would.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            s.net_key(0).unwrap_err();
        }));
        let _ = catch_unwind(AssertUnwindSafe(|| {
            s.app_key(0).unwrap_err();
        }));
        let _ = catch_unwind(AssertUnwindSafe(|| {
            assert!(nodes.is_empty(), "nodes: {nodes:?}");
        }));
        let _ = catch_unwind(AssertUnwindSafe(|| {
            panic!("document: {doc:?}");
        }));
        // A locked store and a wrong passphrase: their errors.
        let mut locked = Store::open(path).unwrap();
        let _ = catch_unwind(AssertUnwindSafe(|| {
            locked.net_key(0).unwrap();
        }));
        let _ = catch_unwind(AssertUnwindSafe(|| {
            locked
                .unlock(&Passphrase::new("wrong passphrase".into()))
                .unwrap();
        }));
        corpus.add(
            format!("Debug of the store {}", path.display()),
            format!("{s:?}"),
        );
        corpus.add(
            format!("Debug of {}'s nodes", path.display()),
            format!("{nodes:?}"),
        );
        corpus.add(
            format!("Debug of {}'s network", path.display()),
            format!("{:?}", s.network().unwrap()),
        );
        corpus.add(
            format!("Debug of {}'s key refresh", path.display()),
            format!("{:?}", s.key_refresh(0).unwrap()),
        );
        let journal = s
            .journal()
            .unwrap()
            .iter()
            .map(|j| format!("{} {} {}", j.event, j.detail, j.at))
            .collect::<Vec<_>>()
            .join("\n");
        corpus.add(format!("journal of {}", path.display()), journal);
    }
    std::panic::set_hook(previous);
    let m = messages.lock().unwrap().join("\n");
    assert!(
        m.matches("panicked").count() >= 6 * stores.len(),
        "the panics did not happen: {m}"
    );
    assert!(m.contains("NetKey(…)"), "{m}");
    corpus.add("panic messages", m);
}

/// The store's files while a connection has written to it (its WAL is there): no key in any.
fn files_of_open_store(path: &Path, secrets: &Secrets) {
    let mut s = unlocked(path);
    let mut rng = meshprov::store::os_rng().unwrap();
    s.add_app_key("after the run", 0, None, &mut rng).unwrap();
    let u = DeviceUuid([0x42; 16]);
    let a = s.allocate_unicast(&u, 1).unwrap();
    s.commit_node(&meshprov::store::NewNode {
        uuid: u,
        name: "written while open".into(),
        address: a,
        elements: 1,
        device_key: meshprov::crypto::DevKey::from_bytes([0x77; 16]),
        net_key_index: 0,
        location: None,
    })
    .unwrap();
    let mut with_new = Secrets::default();
    for (k, v) in &secrets.0 {
        with_new.add(v.clone(), k);
    }
    with_new.add("the DevKey written while open", &[0x77; 16]);
    with_new.add(
        "the AppKey added while open",
        s.app_key(1).unwrap().expose_secret(),
    );
    let mut files = Corpus::default();
    for suffix in ["", "-wal", "-shm"] {
        let f = PathBuf::from(format!("{}{suffix}", path.display()));
        assert!(
            f.exists(),
            "{} is missing while the store is open",
            f.display()
        );
        files.file(&f);
    }
    let wal = std::fs::metadata(format!("{}-wal", path.display()))
        .unwrap()
        .len();
    assert!(wal > 0, "nothing in the WAL: the check would prove nothing");
    let found = leaks(&files, &with_new);
    assert!(
        found.is_empty(),
        "keys in an encrypted store's files:\n{}",
        found.join("\n")
    );
    drop(s);
}

#[test]
fn no_key_leaks_from_a_run_on_encrypted_stores() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut secrets = Secrets::default();
    secrets.add("the passphrase", PASS.as_bytes());
    let sim = format!("sim:{BUILDING}");

    // Run 1: the sessions' secrets, written on purpose (never searched).
    for (store, cap, gatt) in [("s1.db", "c1.pcapng", false), ("s1.db", "c1g.pcapng", true)] {
        if !gatt {
            let mut a = vec!["net", "create", "leak", "--store", store, "--encrypt"];
            a.extend(CHEAP);
            assert!(meshprov(dir, &a).status.success());
        }
        let mut a = vec!["provision"];
        if gatt {
            a.extend([GATT_DEVICE, "--bearer", "gatt"]);
        } else {
            a.push("--all");
        }
        a.extend([
            "--radio",
            &sim,
            "--store",
            store,
            "--seed",
            "7",
            "--capture",
            cap,
            "--capture-secrets",
        ]);
        let o = meshprov(dir, &a);
        assert!(o.stdout.len() > 10, "{o:?}");
    }
    let adv_keys = session_secrets(dir, "c1.pcapng", &mut secrets);
    let gatt_keys = session_secrets(dir, "c1g.pcapng", &mut secrets);
    assert!(adv_keys.len() >= 4, "{adv_keys:?}");

    // Run 2: the same sessions, searched.
    let mut corpus = Corpus::default();
    let mut a = vec!["net", "create", "leak", "--store", "s2.db", "--encrypt"];
    a.extend(CHEAP);
    assert!(corpus.run(dir, &a).status.success());
    assert!(
        corpus
            .run(dir, &["net", "add-app-key", "Lights", "--store", "s2.db"])
            .status
            .success()
    );
    let common = ["--radio", &sim, "--store", "s2.db", "--seed", "7"];
    let mut a = vec!["provision", "--all", "--json", "--capture", "c2.pcapng"];
    a.extend(common);
    corpus.run(dir, &a);
    let mut a = vec![
        "provision",
        GATT_DEVICE,
        "--bearer",
        "gatt",
        "--capture",
        "c2g.pcapng",
    ];
    a.extend(common);
    corpus.run(dir, &a);
    assert_eq!(
        device_keys_of(dir, "c2.pcapng"),
        adv_keys,
        "run 2 is not run 1"
    );
    assert_eq!(
        device_keys_of(dir, "c2g.pcapng"),
        gatt_keys,
        "run 2 is not run 1"
    );
    for cap in ["c2.pcapng", "c2g.pcapng"] {
        corpus.file(&dir.join(cap));
        for extra in [&["--json"][..], &[][..]] {
            let mut a = vec!["decode", cap, "--keys"];
            let side = cap.replace(".pcapng", ".keys.json");
            a.push(&side);
            a.extend(extra);
            assert!(corpus.run(dir, &a).status.success());
        }
    }
    store_keys(
        &dir.join("s2.db"),
        "s2 before the key refreshes",
        &mut secrets,
    );
    // Two key refreshes (the rollout's conventions, then `net key-refresh`), each key kept.
    let o = corpus.run(
        dir,
        &["key-refresh", "--radio", &sim, "--store", "s2.db", "--json"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    store_keys(&dir.join("s2.db"), "s2 after one key refresh", &mut secrets);
    let o = corpus.run(
        dir,
        &["net", "key-refresh", "--radio", &sim, "--store", "s2.db"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    store_keys(
        &dir.join("s2.db"),
        "s2 after two key refreshes",
        &mut secrets,
    );
    for a in [
        &["net", "show", "--store", "s2.db"][..],
        &["net", "show", "--json", "--store", "s2.db"],
        &["node", "list", "--store", "s2.db"],
        &["node", "list", "--json", "--store", "s2.db"],
        &["node", "show", "0001", "--store", "s2.db"],
        &["node", "show", "0001", "--json", "--store", "s2.db"],
        &["cdb", "export", "-", "--no-keys", "--store", "s2.db"],
        &[
            "node",
            "add-app-key",
            "0001",
            "Lights",
            "--radio",
            &sim,
            "--store",
            "s2.db",
        ],
        &[
            "node", "bind", "0001", "0001", "1000", "Lights", "--radio", &sim, "--store", "s2.db",
            "--json",
        ],
    ] {
        corpus.run(dir, a);
    }
    // A wrong passphrase: the error, not the passphrase.
    let o = {
        let mut c = Command::new(env!("CARGO_BIN_EXE_meshprov"));
        c.args(["node", "list", "--store", "s2.db"])
            .current_dir(dir)
            .env("MESHPROV_PASSPHRASE", "a wrong passphrase of the installer")
            .stdin(Stdio::null());
        c.output().unwrap()
    };
    assert_eq!(o.status.code(), Some(2));
    secrets.add(
        "the wrong passphrase",
        b"a wrong passphrase of the installer",
    );
    corpus.add("stderr of a wrong passphrase", o.stderr);
    corpus.add("stdout of a wrong passphrase", o.stdout);

    // A rollout on an encrypted store: certificate, static and Output OOB devices.
    let demo = dir.join("demo");
    std::fs::create_dir(&demo).unwrap();
    meshprov::tools::rollout::write_demo(&demo, 10, 3).unwrap();
    let mut a = vec![
        "net",
        "create",
        "demo",
        "--store",
        "network.db",
        "--encrypt",
        "--unicast-range",
        "0001-0FFF",
    ];
    a.extend(CHEAP);
    assert!(corpus.run(&demo, &a).status.success());
    let o = corpus.run(
        &demo,
        &["rollout", "plan.toml", "--json", "--report", "report.json"],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    corpus.run(&demo, &["rollout", "plan.toml", "--headless"]);
    corpus.file(&demo.join("report.json"));
    store_keys(
        &demo.join("network.db"),
        "the rollout's store",
        &mut secrets,
    );
    // The static OOB values of the demo's plan are AuthValues.
    let plan = std::fs::read_to_string(demo.join("plan.toml")).unwrap();
    for line in plan.lines() {
        if let Some(v) = line
            .strip_prefix("auth = \"static:")
            .and_then(|r| r.strip_suffix('"'))
        {
            secrets.add_hex("a static OOB value of the rollout's plan", v);
        }
    }

    // The same rollout in-process: events, Debug, the terminal UI.
    let demo2 = dir.join("demo2");
    std::fs::create_dir(&demo2).unwrap();
    meshprov::tools::rollout::write_demo(&demo2, 10, 3).unwrap();
    rollout_in_process(&demo2, &mut corpus);
    store_keys(
        &demo2.join("network.db"),
        "the in-process rollout's store",
        &mut secrets,
    );

    let stores = [
        dir.join("s2.db"),
        demo.join("network.db"),
        demo2.join("network.db"),
    ];
    panics(&stores, &mut corpus);

    // The search.
    assert!(secrets.0.len() > 60, "only {} secrets", secrets.0.len());
    let found = leaks(&corpus, &secrets);
    assert!(
        found.is_empty(),
        "{} leaks in {} octets of output:\n{}",
        found.len(),
        corpus.total(),
        found.join("\n")
    );
    // The key sidecar of a capture without --capture-secrets holds the network's keys by
    // design, never a session's secrets.
    let mut sessions_only = Secrets::default();
    for (k, what) in &secrets.0 {
        if [
            "ECDH",
            "AuthValue",
            "SessionKey",
            "SessionNonce",
            "ConfirmationKey",
            "passphrase",
        ]
        .iter()
        .any(|w| what.contains(w))
        {
            sessions_only.add(what.clone(), k);
        }
    }
    let mut sidecars = Corpus::default();
    sidecars.file(&dir.join("c2.keys.json"));
    sidecars.file(&dir.join("c2g.keys.json"));
    let found = leaks(&sidecars, &sessions_only);
    assert!(found.is_empty(), "{}", found.join("\n"));

    // The encrypted stores' files.
    for s in &stores {
        files_of_open_store(s, &secrets);
    }

    // And the detector sees a device key printed on purpose.
    let mut asked = Corpus::default();
    asked.run(
        dir,
        &["node", "show", "0001", "--show-keys", "--store", "s2.db"],
    );
    let found = leaks(&asked, &secrets);
    assert!(
        found.iter().any(|f| f.contains("DevKey")),
        "the device key printed with --show-keys was not found: {found:?}"
    );
    eprintln!(
        "searched {} octets in {} outputs for {} secrets in {:.1} s",
        corpus.total(),
        corpus.0.len(),
        secrets.0.len(),
        t0.elapsed().as_secs_f64()
    );
}
