//! The `meshprov` command-line tool. Thin: it parses arguments and calls the library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use meshprov::cert::{CertError, ca};
use meshprov::crypto::{AppKey, NetKey};
use meshprov::provisioning::AlgorithmPolicy;
use meshprov::sim::run::BearerChoice;
use meshprov::store::{self, NodeRef, Range16, Store, StoreError};
use meshprov::tools::provision::{AuthArg, ProvisionAllArgs, ProvisionArgs};
use meshprov::uuid::DeviceUuid;
use meshprov::{exit, tools};

/// `println!` without its panic: when standard output is a closed pipe (`meshprov … | head -2`)
/// the line is dropped and the command carries on to its end and its exit code, as the rollout's
/// own output does (`tools::rollout`); `println!` would abort it with a panic instead.
macro_rules! outln {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` without its panic (see [`outln!`]).
macro_rules! out {
    ($($arg:tt)*) => {{
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// Bluetooth mesh provisioner for Linux.
#[derive(Debug, Parser)]
#[command(name = "meshprov", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// An encrypted store's passphrase: one line read from this inherited file descriptor
    /// (e.g. `--passphrase-fd 3 3< FILE`). Else MESHPROV_PASSPHRASE, else a prompt on a terminal.
    #[arg(long, global = true, value_name = "N")]
    passphrase_fd: Option<i32>,
    /// `net change-passphrase`: the new passphrase, one line from this file descriptor. Else
    /// MESHPROV_NEW_PASSPHRASE, else asked twice on a terminal.
    #[arg(long, global = true, value_name = "N")]
    new_passphrase_fd: Option<i32>,
}

#[derive(Debug, Subcommand)]
enum Command {
    // --- rollout (issue 8) ---
    /// Provision and configure every device of a plan, many at once, resuming from the store:
    /// JSON lines with --json, exit 0 all done, 3 some not, 2 plan or usage error, 1 internal.
    Rollout(tools::rollout::RolloutArgs),
    /// Write a sample three-floor building and its plan (into a temporary directory or --dir)
    /// and roll it out on the simulated radio; the same --dir again resumes.
    Demo(tools::rollout::DemoArgs),
    /// A soak and fault run on the simulated radio: a generated building of N devices (every
    /// fault kind on a fraction, a radio blackout), rolled out headless, then checked; exit 0
    /// every check passed, 3 one failed (the line says which), 2 usage, 1 internal.
    Soak(tools::soak::SoakArgs),
    /// The network's key refresh with the rollout's conventions: JSON lines with --json, exit
    /// 0 every node finished, 3 some did not (re-run to resume), 2 usage, 1 internal. Same as
    /// `net key-refresh` otherwise.
    KeyRefresh {
        /// Which radio: `sim:FILE.toml` runs on the simulated building described by FILE.
        #[arg(long, value_name = "RADIO")]
        radio: String,
        /// The NetKey to refresh (its index).
        #[arg(long = "net-key", value_name = "IDX", default_value_t = 0)]
        net_key_index: u16,
        /// Exclude these nodes (hex addresses) first: they never receive the new keys.
        #[arg(long, value_delimiter = ',', value_name = "ADDR,...")]
        exclude: Vec<String>,
        /// No terminal UI: one line per event on stdout (also when stdout is not a terminal,
        /// and with --json).
        #[arg(long)]
        headless: bool,
        /// Print one JSON object per line (implies --headless).
        #[arg(long)]
        json: bool,
        /// Simulated radio in the terminal UI: virtual seconds per wall second (headless runs
        /// are not paced).
        #[arg(long, value_name = "X", default_value_t = tools::rollout::DEFAULT_SPEED)]
        speed: f64,
        /// Seed of the simulation (same seed, same run).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Packet loss on the simulated advertising bearer, 0.0 to 0.9 (overrides the file).
        #[arg(long)]
        loss: Option<f64>,
        /// Simulated radio only: these nodes (hex addresses) are off the air for this run.
        #[arg(long, value_delimiter = ',', value_name = "ADDR,...")]
        silent: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    // --- end rollout ---
    /// Provision one device (or, with --all, every device of a simulated building): Link Open,
    /// the ECDH handshake, authentication, Provisioning Data.
    Provision {
        /// The device UUID (32 hex digits, dashes allowed).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        uuid: Option<String>,
        /// Provision every device of the building (simulated radio), many at once.
        #[arg(long)]
        all: bool,
        /// With --all: sessions at once (default 64; PB-ADV: 1 to 64, one link table).
        #[arg(long, value_name = "N")]
        concurrency: Option<usize>,
        /// Which radio: `bluez` or `bluez:hciN` (BlueZ's bluetoothd, the default; PB-GATT with
        /// a stock bluetoothd), `btleplug` (PB-GATT through btleplug, feature `btleplug`),
        /// `sim:FILE.toml` (the simulated building described by FILE) or `meshd-unit:DIR`
        /// (bluetooth-meshd's unit socket in DIR, a real node).
        #[arg(long, value_name = "RADIO", default_value = tools::provision::DEFAULT_RADIO)]
        radio: String,
        /// With --radio bluez: power the adapter on if it is off.
        #[arg(long)]
        power_on: bool,
        /// Authentication: auto, none, static:HEX, output, input, oob-public-key:HEX128, cert.
        #[arg(long, default_value = "auto", value_name = "METHOD")]
        auth: String,
        /// Provisioning algorithm: auto (HMAC-SHA256 when offered), cmac or hmac.
        #[arg(long, value_enum, default_value_t = AlgorithmArg::Auto)]
        algorithm: AlgorithmArg,
        /// Provisioning bearer: PB-GATT by default on the bluez and btleplug radios (a stock
        /// bluetoothd cannot send mesh advertisements), PB-ADV on the others.
        #[arg(long, value_enum)]
        bearer: Option<BearerArg>,
        /// The network store: the NetKey and IV Index come from it, the address is allocated
        /// in it, and the device key is written to it before the device receives any key.
        #[arg(long, value_name = "FILE")]
        store: Option<std::path::PathBuf>,
        /// Use the default store of this network ($XDG_DATA_HOME/meshprov/NAME.db).
        #[arg(long, value_name = "NAME", conflicts_with = "store")]
        network: Option<String>,
        /// Print the device key.
        #[arg(long)]
        show_keys: bool,
        /// With --auth cert: the directory of trusted manufacturer root certificates.
        #[arg(long, value_name = "DIR")]
        trust: Option<PathBuf>,
        /// With --auth cert: a deny list (lines `serial:HEX` or `sha256:HEX`).
        #[arg(long, value_name = "FILE")]
        deny: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Seed of the simulation (same seed, same run).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Packet loss on the simulated advertising bearer, 0.0 to 0.9 (overrides the file).
        #[arg(long)]
        loss: Option<f64>,
        /// Record the session (with --all, every session) to FILE.pcapng (Wireshark,
        /// `tshark -2`), with the network keys and the device keys in FILE.keys.json beside it
        /// (mode 0600).
        #[arg(long, value_name = "FILE.pcapng")]
        capture: Option<PathBuf>,
        /// Also write the session secrets (seed, ECDH private key, AuthValue, randoms) and
        /// what `meshprov replay` needs to the key sidecar: for test and development runs only.
        #[arg(long, requires = "capture")]
        capture_secrets: bool,
    },
    /// List the unprovisioned devices in range: UUID, RSSI, bearers, OOB information.
    Scan {
        /// Which radio: `bluez` or `bluez:hciN` (the default), `btleplug` (feature `btleplug`),
        /// `sim:FILE.toml` (the simulated building described by FILE, in virtual time) or
        /// `meshd-unit:DIR` (bluetooth-meshd's unit socket in DIR).
        #[arg(long, value_name = "RADIO", default_value = tools::provision::DEFAULT_RADIO)]
        radio: String,
        /// With --radio bluez: power the adapter on if it is off.
        #[arg(long)]
        power_on: bool,
        /// How long to listen, in seconds.
        #[arg(long, default_value_t = 10.0, value_name = "S")]
        duration: f64,
        /// Print one JSON object per device, then a summary line.
        #[arg(long)]
        json: bool,
        /// Seed of the simulation (same seed, same run).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Packet loss on the simulated advertising bearer, 0.0 to 0.9 (overrides the file).
        #[arg(long)]
        loss: Option<f64>,
        /// Record what is heard to FILE.pcapng (and FILE.keys.json).
        #[arg(long, value_name = "FILE.pcapng")]
        capture: Option<PathBuf>,
    },
    /// Work with mesh keys offline.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Create and inspect the network in the store.
    Net {
        #[command(subcommand)]
        command: NetCommand,
    },
    /// List, inspect and exclude nodes in the store.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Move the network to and from Mesh Configuration Database (CDB) JSON files.
    Cdb {
        #[command(subcommand)]
        command: CdbCommand,
    },
    /// Decode a capture (pcap, pcapng, btsnoop): beacons, PB-ADV links, provisioning PDUs,
    /// PB-GATT and proxy sessions, network PDUs and access messages, as a timeline.
    Decode(DecodeCli),
    /// Replay a recorded session (a capture made with --capture --capture-secrets): the
    /// provisioner must send byte for byte what the capture shows; exit 0 identical, 3 diverged,
    /// 1 unreadable or not replayable.
    Replay(ReplayCli),
    /// A manufacturer CA for certificate-based provisioning: roots, device certificates, checks.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
}

/// `meshprov decode` (issue 10).
#[derive(Debug, Args)]
struct DecodeCli {
    /// The capture: pcap, pcapng or btsnoop.
    file: PathBuf,
    /// A key file: a capture's FILE.keys.json sidecar, or {"net_key", "app_key", "iv_index"}.
    #[arg(long, value_name = "FILE.keys.json")]
    keys: Option<PathBuf>,
    /// A NetKey (index 0), 32 hex digits.
    #[arg(long, value_name = "HEX")]
    net_key: Option<String>,
    /// An AppKey (index 0), 32 hex digits.
    #[arg(long, value_name = "HEX")]
    app_key: Option<String>,
    /// A device key: primary element address and key, ADDR=HEX (repeatable).
    #[arg(long, value_name = "ADDR=HEX")]
    dev_key: Vec<String>,
    /// The IV Index (decimal or 0x hex).
    #[arg(long, value_name = "N")]
    iv_index: Option<String>,
    /// An ATT handle of a mesh characteristic, HANDLE=prov-in|prov-out|proxy-in|proxy-out
    /// (repeatable), when the capture has no GATT discovery.
    #[arg(long, value_name = "HANDLE=ROLE")]
    att_handle: Vec<String>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Print derived device keys.
    #[arg(long)]
    show_keys: bool,
}

/// `meshprov replay` (issue 10).
#[derive(Debug, Args)]
struct ReplayCli {
    /// The capture (pcapng recorded by meshprov with --capture-secrets).
    file: PathBuf,
    /// Its key sidecar (default: FILE.keys.json beside it).
    #[arg(long, value_name = "FILE.keys.json")]
    keys: Option<PathBuf>,
    /// One JSON object instead of the text summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Create a self-signed root (and an intermediate) with P-256 keys in DIR (keys 0600).
    Init {
        /// The CA directory (root.pem, root.key, intermediate.pem, intermediate.key).
        dir: PathBuf,
        /// The manufacturer's name, used in the certificates' subjects.
        #[arg(long, default_value = "meshprov")]
        name: String,
        /// Also create an intermediate signed by the root; devices are then issued by it.
        #[arg(long)]
        intermediate: bool,
        /// Validity in days.
        #[arg(long, default_value_t = 7300)]
        days: u32,
    },
    /// Issue a device certificate (CN = UUID as 32 lower-case hex digits, keyAgreement).
    Issue {
        /// The CA directory made by `ca init`.
        #[arg(long = "ca", value_name = "DIR")]
        ca_dir: PathBuf,
        /// The device UUID.
        #[arg(long)]
        uuid: String,
        /// The device's public key: PEM SubjectPublicKeyInfo, or 64/65 octets in hex.
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "generate",
            conflicts_with = "generate"
        )]
        public_key: Option<PathBuf>,
        /// Generate the device key pair: writes OUT.key, OUT.key.hex (0600), OUT.pem and
        /// OUT.chain.pem.
        #[arg(long, value_name = "OUT")]
        generate: Option<PathBuf>,
        /// With --public-key: write OUT.pem and OUT.chain.pem instead of printing the chain.
        #[arg(long, value_name = "OUT", requires = "public_key")]
        out: Option<PathBuf>,
        /// Validity in days (at most the issuer's).
        #[arg(long, default_value_t = 7300)]
        days: u32,
    },
    /// Verify a device's certificate chain: exit 0 and one OK line, or 1 and the defect.
    Verify {
        /// A directory of trusted root certificates (.pem, .crt, .der).
        #[arg(long, value_name = "DIR")]
        trust: PathBuf,
        /// The device UUID the certificate must name.
        #[arg(long)]
        uuid: String,
        /// The chain: the device certificate first, then intermediates (PEM).
        chain: PathBuf,
        /// A deny list: serial:HEX or sha256:HEX per line.
        #[arg(long, value_name = "FILE")]
        deny: Option<PathBuf>,
    },
}

/// Which store a command works on.
#[derive(Debug, Args)]
struct StoreArgs {
    /// The store file [default: $XDG_DATA_HOME/meshprov/<network>.db].
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
    /// The network whose default store to use, when there are several.
    #[arg(long, value_name = "NAME", conflicts_with = "store")]
    network: Option<String>,
}

/// The cost of the key derivation of an encrypted store.
#[derive(Debug, Args)]
struct KdfArgs {
    /// Argon2id memory in KiB [default: 65536, 64 MiB]. Lower only for tests or very small
    /// machines: it is what makes guessing the passphrase of a stolen store slow.
    #[arg(long, value_name = "KIB")]
    kdf_memory_kib: Option<u32>,
    /// Argon2id passes [default: 3].
    #[arg(long, value_name = "N")]
    kdf_time: Option<u32>,
}

impl KdfArgs {
    fn params(&self) -> store::KdfParams {
        let d = store::KdfParams::DEFAULT;
        store::KdfParams {
            memory_kib: self.kdf_memory_kib.unwrap_or(d.memory_kib),
            time_cost: self.kdf_time.unwrap_or(d.time_cost),
            lanes: d.lanes,
        }
    }
}

#[derive(Debug, Subcommand)]
enum NetCommand {
    /// Create a network: a primary NetKey (index 0), a mesh UUID, and this provisioner.
    Create {
        /// The network's name (also the default store's file name).
        name: String,
        /// The primary NetKey, 32 hex digits [default: a fresh random key].
        #[arg(long, value_name = "HEX")]
        net_key: Option<String>,
        /// This provisioner's unicast range, hex LOW-HIGH.
        #[arg(long, value_name = "LOW-HIGH", default_value = "0001-7FFF")]
        unicast_range: String,
        /// The store file [default: $XDG_DATA_HOME/meshprov/NAME.db].
        #[arg(long, value_name = "PATH")]
        store: Option<PathBuf>,
        /// Encrypt the store's keys with a passphrase from the start (see `net encrypt`).
        #[arg(long)]
        encrypt: bool,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Encrypt the store's key material with a passphrase (Argon2id + XChaCha20-Poly1305):
    /// every key is sealed again in one transaction. The passphrase comes from
    /// --passphrase-fd, MESHPROV_PASSPHRASE, or is asked twice on a terminal.
    Encrypt {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Change an encrypted store's passphrase (the new one from --new-passphrase-fd,
    /// MESHPROV_NEW_PASSPHRASE, or asked twice on a terminal).
    ChangePassphrase {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Remove an encrypted store's passphrase: its keys are stored in plaintext again (file
    /// mode 0600 is then their only protection).
    Decrypt {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show the network: name, mesh UUID, IV Index, key indexes, ranges (no key material).
    Show {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Refresh a NetKey and the AppKeys bound to it on every node that is not excluded
    /// (network-wide Key Refresh procedure); re-running the same command resumes it.
    KeyRefresh {
        /// Which radio: `sim:FILE.toml` runs on the simulated building described by FILE.
        #[arg(long, value_name = "RADIO")]
        radio: String,
        /// The NetKey to refresh.
        #[arg(long, value_name = "N", default_value_t = 0)]
        net_key_index: u16,
        /// Exclude these nodes (hex addresses) first: they never receive the new keys.
        #[arg(long, value_delimiter = ',', value_name = "ADDR,...")]
        exclude: Vec<String>,
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
        /// Seed of the simulation (same seed, same run).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Packet loss on the simulated advertising bearer, 0.0 to 0.9 (overrides the file).
        #[arg(long)]
        loss: Option<f64>,
        /// Simulated radio only: these nodes (hex addresses) are off the air for this run.
        #[arg(long, value_delimiter = ',', value_name = "ADDR,...")]
        silent: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Add an application key bound to a NetKey, with the lowest free index.
    AddAppKey {
        /// The key's name.
        name: String,
        /// The NetKey index to bind it to.
        #[arg(long, value_name = "IDX", default_value_t = 0)]
        net_key: u16,
        /// The key, 32 hex digits [default: a fresh random key].
        #[arg(long, value_name = "HEX")]
        key: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// List the nodes with their state (unconfirmed, provisioned, configured, excluded).
    List {
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show one node, by any of its addresses or by UUID.
    Show {
        /// A unicast address (hex) or a device UUID.
        node: String,
        /// Also print the device key.
        #[arg(long)]
        show_keys: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Exclude a node: it stays in the store and its addresses are never reused.
    Exclude {
        /// A unicast address of the node (hex).
        address: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Ask the node for its Composition Data page 0 and record it (CID, PID, VID, CRPL,
    /// features, elements and models).
    Composition {
        #[command(flatten)]
        radio: NodeRadioArgs,
    },
    /// Give the node an AppKey of the store (AppKey Add) and record that it holds it.
    AddAppKey {
        #[command(flatten)]
        radio: NodeRadioArgs,
        /// The AppKey's name in the store (`meshprov net add-app-key NAME` creates one).
        app_key: String,
    },
    /// Bind an AppKey the node holds to one of its models (Model App Bind) and record it.
    Bind {
        #[command(flatten)]
        radio: NodeRadioArgs,
        /// The element's unicast address (hex), the node's address or one after it.
        element_addr: String,
        /// The model: 4 hex digits for a SIG model (1000), 8 for a vendor model, Company ID
        /// first (00590001).
        model_id: String,
        /// The AppKey's name in the store.
        app_key: String,
    },
    /// Reset the node (Node Reset): it forgets the network; the store marks it excluded.
    Reset {
        #[command(flatten)]
        radio: NodeRadioArgs,
    },
}

/// The node and the radio of a `node` command that talks to the node.
#[derive(Debug, Args)]
struct NodeRadioArgs {
    /// The node: its unicast address (hex) or device UUID.
    node: String,
    /// Which radio: `bluez` or `bluez:hciN` (the default: through a GATT proxy node),
    /// `btleplug` (feature `btleplug`), `sim:FILE.toml` (the simulated building: the store's
    /// nodes are put on the air) or `meshd-unit:DIR` (bluetooth-meshd's unit socket in DIR).
    #[arg(long, value_name = "RADIO", default_value = tools::provision::DEFAULT_RADIO)]
    radio: String,
    /// With bluez or btleplug: the Bluetooth address of the proxy node to go through
    /// (default: the first node of the network heard advertising the Mesh Proxy service).
    #[arg(long, value_name = "ADDRESS")]
    via: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Seed of the simulation (same seed, same run).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Packet loss on the simulated advertising bearer, 0.0 to 0.9 (overrides the file).
    #[arg(long)]
    loss: Option<f64>,
}

#[derive(Debug, Subcommand)]
enum CdbCommand {
    /// Export the network as CDB 1.0.1 JSON (deterministic; mode 0600 when it holds keys).
    Export {
        /// The file to write, or - for standard output.
        file: PathBuf,
        /// Export only the nodes given with --nodes, and the keys they know.
        #[arg(long, requires = "nodes")]
        partial: bool,
        /// Nodes of a partial export: addresses (hex) or UUIDs, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            requires = "partial",
            value_name = "NODE,..."
        )]
        nodes: Vec<String>,
        /// Leave out every key (NetKeys, AppKeys, device keys).
        #[arg(long)]
        no_keys: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Import a whole network from CDB JSON (nRF Mesh, BlueZ mesh-cfgclient, meshprov).
    Import {
        /// The file to read.
        file: PathBuf,
        /// Replace a different network, or drop nodes the file lacks.
        #[arg(long)]
        force: bool,
        /// Act as this provisioner of the file (its UUID).
        #[arg(long, value_name = "UUID")]
        as_provisioner: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// A failed command: the exit code and the one line for stderr.
struct Failure(i32, String);

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure(exit::FAILURE, e.to_string())
    }
}

impl From<tools::passphrase::UnlockFailure> for Failure {
    fn from(f: tools::passphrase::UnlockFailure) -> Self {
        Failure(f.exit_code, f.message)
    }
}

fn usage(msg: impl Into<String>) -> Failure {
    Failure(exit::USAGE, msg.into())
}

/// The store of `args`, unlocked when it is encrypted.
fn open(args: &StoreArgs) -> Result<Store, Failure> {
    let mut s = open_locked(args)?;
    tools::passphrase::unlock(&mut s, tools::passphrase::Prompt::Terminal)?;
    Ok(s)
}

/// The store of `args`, without asking for the passphrase of an encrypted one (no key can be
/// read from it).
fn open_locked(args: &StoreArgs) -> Result<Store, Failure> {
    let path = store::resolve_path(args.store.as_deref(), args.network.as_deref())?;
    if !path.exists() {
        return Err(Failure(
            exit::FAILURE,
            format!(
                "{}: no such store: create a network with `meshprov net create NAME`",
                path.display()
            ),
        ));
    }
    Ok(Store::open(&path)?)
}

fn run_net(cmd: NetCommand) -> Result<(), Failure> {
    match cmd {
        NetCommand::Create {
            name,
            net_key,
            unicast_range,
            store: path,
            encrypt,
            kdf,
        } => {
            let key = net_key
                .map(|k| NetKey::from_hex(&k))
                .transpose()
                .map_err(|e| usage(format!("invalid --net-key: {e}")))?;
            let unicast: Range16 = unicast_range
                .parse()
                .map_err(|e| usage(format!("invalid --unicast-range: {e}")))?;
            let options = store::NetworkOptions {
                unicast,
                ..Default::default()
            };
            let path = match path {
                Some(p) => p,
                None => store::default_path(&name)?,
            };
            let params = kdf.params();
            params.validate().map_err(|e| usage(e.to_string()))?;
            let passphrase = encrypt
                .then(|| tools::passphrase::new_passphrase(false))
                .transpose()?;
            let mut s = Store::open(&path)?;
            // Encrypted before the first key is written: no key ever reaches the file in
            // plaintext. (A store that already holds a network is refused first, untouched.)
            if let Some(p) = &passphrase {
                if let Ok(existing) = s.network() {
                    return Err(StoreError::NetworkExists {
                        name: existing.name,
                    }
                    .into());
                }
                if s.keys_at_rest().is_none() {
                    s.encrypt(p, &params)?;
                } else {
                    tools::passphrase::unlock(&mut s, tools::passphrase::Prompt::Terminal)?;
                }
            }
            let info = s.create_network_with(&name, key, &options, &mut store::os_rng()?)?;
            out!("{}", store::network_text(&info));
            outln!("{:<13} {}", "Store", path.display());
        }
        NetCommand::Encrypt { store: args, kdf } => {
            let params = kdf.params();
            params.validate().map_err(|e| usage(e.to_string()))?;
            let mut s = open_locked(&args)?;
            if s.keys_at_rest().is_some() {
                return Err(usage(format!(
                    "{} is already encrypted: change its passphrase with `meshprov net change-passphrase`",
                    s.path().display()
                )));
            }
            let p = tools::passphrase::new_passphrase(false)?;
            let started = std::time::Instant::now();
            let o = s.encrypt(&p, &params)?;
            drop(p);
            outln!(
                "encrypted {}: {} keys sealed ({params}, XChaCha20-Poly1305) in {:.1} s",
                s.path().display(),
                o.keys,
                started.elapsed().as_secs_f64()
            );
            scrub_note(&o);
        }
        NetCommand::ChangePassphrase { store: args, kdf } => {
            let params = kdf.params();
            params.validate().map_err(|e| usage(e.to_string()))?;
            let mut s = open(&args)?;
            if s.keys_at_rest().is_none() {
                return Err(usage(format!(
                    "{} is not encrypted: encrypt it with `meshprov net encrypt`",
                    s.path().display()
                )));
            }
            let p = tools::passphrase::new_passphrase(true)?;
            let o = s.change_passphrase(&p, &params)?;
            drop(p);
            outln!(
                "new passphrase for {}: {} keys sealed again ({params})",
                s.path().display(),
                o.keys
            );
            scrub_note(&o);
        }
        NetCommand::Decrypt { store: args } => {
            let mut s = open(&args)?;
            if s.keys_at_rest().is_none() {
                return Err(usage(format!(
                    "{} is not encrypted: nothing to do",
                    s.path().display()
                )));
            }
            let o = s.decrypt()?;
            outln!(
                "{}: {} keys stored in plaintext again (protected by file mode 0600 only)",
                s.path().display(),
                o.keys
            );
        }
        NetCommand::Show { json, store: args } => {
            let s = open_locked(&args)?;
            let info = s.network()?;
            if json {
                outln!("{}", store::network_json(&info));
            } else {
                out!("{}", store::network_text(&info));
                outln!("{:<13} {}", "Store", s.path().display());
            }
        }
        NetCommand::KeyRefresh {
            radio,
            net_key_index,
            exclude,
            json,
            seed,
            loss,
            silent,
            store: args,
        } => key_refresh(
            radio,
            net_key_index,
            exclude,
            json,
            seed,
            loss,
            silent,
            args,
            exit::FAILURE,
            None,
        )?,
        NetCommand::AddAppKey {
            name,
            net_key,
            key,
            store: args,
        } => {
            let key = key
                .map(|k| AppKey::from_hex(&k))
                .transpose()
                .map_err(|e| usage(format!("invalid --key: {e}")))?;
            let mut s = open(&args)?;
            let index = s.add_app_key(&name, net_key, key, &mut store::os_rng()?)?;
            outln!("AppKey {index} '{name}' bound to NetKey {net_key}");
        }
    }
    Ok(())
}

/// A re-seal whose scrub of the old bytes could not finish (another process had the store open).
fn scrub_note(o: &store::EncryptOutcome) {
    if !o.scrubbed {
        eprintln!(
            "meshprov: another process has the store open, so the old key bytes could not be scrubbed from its files yet; the next command that unlocks it will"
        );
    }
}

/// `net key-refresh` and `key-refresh`: the run, its JSON lines or text; an unfinished
/// refresh ends with `incomplete_code` (1 for `net key-refresh`, 3 with the rollout's
/// conventions).
#[allow(clippy::too_many_arguments)]
fn key_refresh(
    radio: String,
    net_key_index: u16,
    exclude: Vec<String>,
    json: bool,
    seed: u64,
    loss: Option<f64>,
    silent: Vec<String>,
    args: StoreArgs,
    incomplete_code: i32,
    tui_speed: Option<f64>,
) -> Result<(), Failure> {
    if let Some(x) = tui_speed.filter(|x| !(x.is_finite() && *x > 0.0 && *x <= 10_000.0)) {
        return Err(usage(format!(
            "invalid --speed {x}: give simulated seconds per wall second, more than 0 and at most 10000"
        )));
    }
    if let Some(l) = loss.filter(|l| !(0.0..=0.9).contains(l)) {
        return Err(usage(format!(
            "invalid --loss {l}: give a probability from 0.0 to 0.9"
        )));
    }
    let addresses = |list: &[String], what: &str| -> Result<Vec<u16>, Failure> {
        list.iter()
            .map(|a| match node_ref(a)? {
                NodeRef::Address(x) => Ok(x),
                NodeRef::Uuid(_) => Err(usage(format!(
                    "--{what} {a}: give the node's unicast address (hex)"
                ))),
            })
            .collect()
    };
    let kr_args = tools::key_refresh::KeyRefreshArgs {
        store: store::resolve_path(args.store.as_deref(), args.network.as_deref())?,
        radio,
        net_key_index,
        exclude: addresses(&exclude, "exclude")?,
        seed,
        loss,
        silent: addresses(&silent, "silent")?,
    };
    // Node names for the text output (opening never creates a missing store here).
    let names: std::collections::BTreeMap<u16, String> = if kr_args.store.exists() {
        let mut s = Store::open(&kr_args.store)?;
        tools::passphrase::unlock(&mut s, tools::passphrase::Prompt::Terminal)?;
        s.nodes()
            .unwrap_or_default()
            .into_iter()
            .map(|n| (n.address, n.name))
            .collect()
    } else {
        Default::default()
    };
    // --- the terminal UI (issue 9): the simulated radio, a store to refresh ---
    if let (Some(speed), Some(file)) = (tui_speed, kr_args.radio.strip_prefix("sim:"))
        && kr_args.store.exists()
    {
        let network = Store::open(&kr_args.store)
            .and_then(|s| s.network())
            .map(|n| n.name)
            .unwrap_or_default();
        let building = Path::new(file)
            .file_name()
            .map_or(file.into(), |n| n.to_string_lossy());
        let label = format!("sim {building} (seed {seed}, {speed}× speed)");
        let view = tools::tui_glue::KeyRefreshTui::start(&network, &label, speed, names)
            .map_err(|e| Failure(exit::FAILURE, format!("cannot open the terminal UI: {e}")))?;
        let view = std::cell::RefCell::new(view);
        let run = tools::key_refresh::key_refresh_paced(
            &kr_args,
            &mut |r| view.borrow_mut().report(r),
            &mut |simulated, deadline| view.borrow_mut().pace(simulated, deadline),
        );
        let mut view = view.into_inner();
        if run.is_ok() && !view.quit_requested() {
            // The procedure ended: the screen stays until the installer quits.
            view.wait_for_quit();
        }
        // The terminal may be gone (it hung up): what cannot be printed is dropped, not a panic.
        let mut out = std::io::stdout();
        for line in view.finish() {
            let _ = writeln!(out, "{line}");
        }
        let outcome = run.map_err(|f| Failure(f.exit_code, f.message))?;
        let _ = writeln!(
            out,
            "  virtual time {:.1} s",
            outcome.virtual_time.as_secs_f64()
        );
        return match outcome.problem() {
            Some(problem) if outcome.exit_code() != exit::SUCCESS => {
                Err(Failure(incomplete_code, problem))
            }
            _ => Ok(()),
        };
    }
    // --- end terminal UI ---
    let mut print = |r: &tools::key_refresh::Report| {
        if json {
            outln!("{}", tools::key_refresh::report_json(r));
        } else if let Some(line) = tools::key_refresh::report_text(r, &names) {
            outln!("{line}");
        }
    };
    let outcome = tools::key_refresh::key_refresh(&kr_args, &mut print)
        .map_err(|f| Failure(f.exit_code, f.message))?;
    if json {
        outln!("{}", tools::key_refresh::outcome_json(&outcome));
    } else {
        outln!("  virtual time {:.1} s", outcome.virtual_time.as_secs_f64());
    }
    if let Some(problem) = outcome.problem() {
        return Err(Failure(
            if outcome.exit_code() == exit::SUCCESS {
                exit::SUCCESS
            } else {
                incomplete_code
            },
            problem,
        ));
    }
    Ok(())
}

fn node_ref(s: &str) -> Result<NodeRef, Failure> {
    s.parse::<NodeRef>().map_err(usage)
}

/// A node command that talks to the node: prints its reply (text or JSON); a refusal, a
/// silence or an error is the `Failure` whose line goes to stderr.
fn node_radio(radio: NodeRadioArgs, command: tools::node::NodeCommand) -> Result<(), Failure> {
    let json = radio.json;
    let args = tools::node::NodeArgs {
        node: radio.node,
        command,
        radio: radio.radio,
        via: radio.via,
        store: radio.store.store,
        network: radio.store.network,
        seed: radio.seed,
        loss: radio.loss,
    };
    match tools::node::run(&args) {
        Ok(r) => {
            if json {
                outln!("{}", r.to_json());
            } else {
                out!("{}", r.to_text());
            }
            match r.error {
                Some(e) => Err(Failure(r.result.exit_code(), e)),
                None => Ok(()),
            }
        }
        Err(f) => {
            if json {
                let v = serde_json::json!({
                    "result": "error", "command": args.command.name(), "node": args.node,
                    "error": f.message,
                });
                outln!("{v}");
            }
            Err(Failure(f.exit_code, f.message))
        }
    }
}

fn run_node(cmd: NodeCommand) -> Result<(), Failure> {
    use tools::node::NodeCommand as Radio;
    match cmd {
        NodeCommand::Composition { radio } => return node_radio(radio, Radio::Composition),
        NodeCommand::AddAppKey { radio, app_key } => {
            return node_radio(radio, Radio::AddAppKey { app_key });
        }
        NodeCommand::Bind {
            radio,
            element_addr,
            model_id,
            app_key,
        } => {
            return node_radio(
                radio,
                Radio::Bind {
                    element: element_addr,
                    model: model_id,
                    app_key,
                },
            );
        }
        NodeCommand::Reset { radio } => return node_radio(radio, Radio::Reset),
        NodeCommand::List { json, store: args } => {
            let nodes = open(&args)?.nodes()?;
            if json {
                outln!("{}", store::node_list_json(&nodes));
            } else {
                out!("{}", store::node_list_text(&nodes));
            }
        }
        NodeCommand::Show {
            node,
            show_keys,
            json,
            store: args,
        } => {
            let r = node_ref(&node)?;
            let n = open(&args)?.node(&r)?;
            if json {
                outln!("{}", store::node_json(&n, show_keys));
            } else {
                out!("{}", store::node_show_text(&n, show_keys));
            }
        }
        NodeCommand::Exclude {
            address,
            store: args,
        } => {
            let NodeRef::Address(a) = node_ref(&address)? else {
                return Err(usage(format!("'{address}' is not a unicast address")));
            };
            let n = open(&args)?.exclude_node(a)?;
            outln!(
                "node {:04X} ({}) excluded; its addresses will not be reused",
                n.address,
                n.uuid
            );
        }
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure(exit::FAILURE, format!("{}: {e}", path.display())))
}

fn run_cdb(cmd: CdbCommand) -> Result<(), Failure> {
    match cmd {
        CdbCommand::Export {
            file,
            partial,
            nodes,
            no_keys,
            store: args,
        } => {
            let partial_nodes = if partial {
                Some(
                    nodes
                        .iter()
                        .map(|n| node_ref(n))
                        .collect::<Result<_, _>>()?,
                )
            } else {
                None
            };
            let s = open(&args)?;
            // The text holds every key in hex: wiped once written.
            let json = zeroize::Zeroizing::new(s.export_cdb(&store::ExportOptions {
                no_keys,
                partial_nodes,
            })?);
            if file.as_os_str() == "-" {
                out!("{}", json.as_str());
            } else {
                store::write_atomically(&file, json.as_bytes(), !no_keys)?;
            }
        }
        CdbCommand::Import {
            file,
            force,
            as_provisioner,
            store: args,
        } => {
            let as_provisioner = as_provisioner.map(|u| u.parse()).transpose().map_err(
                |e: meshprov::uuid::UuidError| usage(format!("invalid --as-provisioner: {e}")),
            )?;
            let json = zeroize::Zeroizing::new(read_file(&file)?);
            let in_file =
                |e: StoreError| Failure(exit::FAILURE, format!("{}: {e}", file.display()));
            let path = match (&args.store, &args.network) {
                (Some(p), _) => p.clone(),
                (None, Some(n)) => store::default_path(n)?,
                (None, None) => {
                    let doc = store::cdb::parse(&json).map_err(|e| in_file(e.into()))?;
                    store::default_path(&doc.mesh_name)?
                }
            };
            let mut s = Store::open(&path)?;
            tools::passphrase::unlock(&mut s, tools::passphrase::Prompt::Terminal)?;
            let summary = s
                .import_cdb(
                    &json,
                    &store::ImportOptions {
                        force,
                        as_provisioner,
                    },
                    &mut store::os_rng()?,
                )
                .map_err(|e| match e {
                    StoreError::Cdb(_) => in_file(e),
                    e => e.into(),
                })?;
            let ranges = summary
                .unicast_ranges
                .iter()
                .map(|r| format!("{:04X}-{:04X}", r.low, r.high))
                .collect::<Vec<_>>()
                .join(", ");
            outln!(
                "imported '{}' ({}): {} NetKeys, {} AppKeys, {} nodes into {}",
                summary.name,
                summary.mesh_uuid,
                summary.net_keys,
                summary.app_keys,
                summary.nodes,
                path.display()
            );
            if summary.provisioner_added {
                outln!("added provisioner 'meshprov' with unicast range {ranges}");
            } else {
                outln!("acting as the file's provisioner with unicast range {ranges}");
            }
        }
    }
    Ok(())
}

impl From<CertError> for Failure {
    fn from(e: CertError) -> Self {
        let c = if e.is_usage() {
            exit::USAGE
        } else {
            exit::FAILURE
        };
        Failure(c, e.to_string())
    }
}

fn parse_uuid(s: &str) -> Result<DeviceUuid, Failure> {
    s.parse()
        .map_err(|e: meshprov::uuid::UuidError| usage(e.to_string()))
}

fn run_ca(cmd: CaCommand) -> Result<(), Failure> {
    let now = std::time::SystemTime::now();
    match cmd {
        CaCommand::Init {
            dir,
            name,
            intermediate,
            days,
        } => {
            let opts = ca::InitOptions {
                name,
                intermediate,
                days,
                now,
            };
            let r = ca::init(&dir, &opts, &mut store::os_rng()?)?;
            outln!("root '{}'", r.root_subject);
            if let Some(i) = &r.intermediate_subject {
                outln!("intermediate '{i}'");
            }
            for f in &r.files {
                outln!("wrote {}", f.display());
            }
        }
        CaCommand::Issue {
            ca_dir,
            uuid,
            public_key,
            generate,
            out,
            days,
        } => {
            let uuid = parse_uuid(&uuid)?;
            let source = match (public_key, generate) {
                (Some(file), None) => ca::DeviceKeySource::PublicKey { file, out },
                (None, Some(out)) => ca::DeviceKeySource::Generate { out },
                _ => return Err(usage("give one of --public-key FILE or --generate OUT")),
            };
            let r = ca::issue(&ca_dir, &uuid, &source, days, now, &mut store::os_rng()?)?;
            if r.files.is_empty() {
                out!("{}", r.chain_pem);
            } else {
                outln!(
                    "issued '{}' (serial {}) by '{}'",
                    r.subject,
                    r.serial,
                    r.issuer
                );
                for f in &r.files {
                    outln!("wrote {}", f.display());
                }
            }
        }
        CaCommand::Verify {
            trust,
            uuid,
            chain,
            deny,
        } => {
            let uuid = parse_uuid(&uuid)?;
            let v = ca::verify_files(&trust, &uuid, &chain, deny.as_deref(), now)?;
            outln!("{}", v.verdict_line());
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AlgorithmArg {
    Auto,
    Cmac,
    Hmac,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BearerArg {
    Adv,
    Gatt,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print the values derived from a NetKey (and an AppKey): NID, encryption and privacy
    /// keys, Network ID, identity, beacon and private beacon keys, AID.
    Derive {
        /// The network key, 32 hex digits.
        #[arg(long, value_name = "HEX")]
        net_key: String,
        /// An application key, 32 hex digits, to derive its AID.
        #[arg(long, value_name = "HEX")]
        app_key: Option<String>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    for (fd, new) in [(cli.passphrase_fd, false), (cli.new_passphrase_fd, true)] {
        let Some(fd) = fd else { continue };
        match tools::passphrase::read_fd(fd) {
            Ok(p) if new => tools::passphrase::set_new_fd_passphrase(fd, p),
            Ok(p) => tools::passphrase::set_fd_passphrase(fd, p),
            Err(f) => {
                eprintln!("meshprov: {}", f.message);
                return code(f.exit_code);
            }
        }
    }
    let c = run(cli.command);
    // The passphrases and the keys derived from them are wiped before the process ends.
    tools::passphrase::forget();
    c
}

fn run(command: Command) -> ExitCode {
    match command {
        Command::Provision {
            uuid,
            all,
            concurrency,
            radio,
            power_on,
            auth,
            algorithm,
            bearer,
            store,
            network,
            show_keys,
            trust,
            deny,
            json,
            seed,
            loss,
            capture,
            capture_secrets,
        } => {
            let auth: AuthArg = match auth.parse() {
                Ok(a) => a,
                Err(e) => return usage_exit(&e),
            };
            if let Some(l) = loss.filter(|l| !(0.0..=0.9).contains(l)) {
                return usage_exit(&format!(
                    "invalid --loss {l}: give a probability from 0.0 to 0.9"
                ));
            }
            let algorithm = match algorithm {
                AlgorithmArg::Auto => AlgorithmPolicy::Auto,
                AlgorithmArg::Cmac => AlgorithmPolicy::Cmac,
                AlgorithmArg::Hmac => AlgorithmPolicy::Hmac,
            };
            let bearer = match bearer {
                Some(BearerArg::Adv) => BearerChoice::Adv,
                Some(BearerArg::Gatt) => BearerChoice::Gatt,
                None => tools::provision::default_bearer(&radio),
            };
            if concurrency.is_some() && !all {
                return usage_exit(&"--concurrency goes with --all (one device is one session)");
            }
            let Some(uuid) = uuid.filter(|_| !all) else {
                if show_keys {
                    return usage_exit(
                        &"--show-keys prints one device's key; with --all the keys go to --store",
                    );
                }
                let args = ProvisionAllArgs {
                    radio,
                    auth,
                    algorithm,
                    bearer,
                    store,
                    network,
                    trust,
                    deny,
                    seed,
                    loss,
                    concurrency: concurrency.unwrap_or(64),
                    capture,
                    capture_secrets,
                };
                return match tools::provision::provision_all(&args) {
                    Ok(r) => {
                        if json {
                            outln!("{}", serde_json::to_string(&r).unwrap_or_default());
                        } else {
                            out!("{}", r.to_text());
                        }
                        if r.failed.is_empty() {
                            ExitCode::SUCCESS
                        } else {
                            code(exit::FAILURE)
                        }
                    }
                    Err(f) => {
                        if json {
                            let v = serde_json::json!({"result": "failed", "error": f.message});
                            outln!("{v}");
                        }
                        eprintln!("meshprov: {}", f.message);
                        code(f.exit_code)
                    }
                };
            };
            let uuid: DeviceUuid = match uuid.parse() {
                Ok(u) => u,
                Err(e) => return usage_exit(&e),
            };
            let args = ProvisionArgs {
                uuid,
                radio,
                power_on,
                auth,
                algorithm,
                bearer,
                store,
                network,
                show_keys,
                trust,
                deny,
                seed,
                loss,
                capture,
                capture_secrets,
            };
            match tools::provision::provision(&args) {
                Ok(r) if json => outln!("{}", serde_json::to_string(&r).unwrap_or_default()),
                Ok(r) => out!("{}", r.to_text()),
                Err(f) => {
                    if json {
                        let v = serde_json::json!({"result": "failed", "uuid": f.uuid, "error": f.message});
                        outln!("{v}");
                    }
                    eprintln!("meshprov: {}", f.message);
                    return code(f.exit_code);
                }
            }
        }
        Command::Scan {
            radio,
            power_on,
            duration,
            json,
            seed,
            loss,
            capture,
        } => {
            if let Some(l) = loss.filter(|l| !(0.0..=0.9).contains(l)) {
                return usage_exit(&format!(
                    "invalid --loss {l}: give a probability from 0.0 to 0.9"
                ));
            }
            if !(duration.is_finite() && duration > 0.0 && duration <= 86_400.0) {
                return usage_exit(&format!(
                    "invalid --duration {duration}: give seconds, more than 0 and at most 86400"
                ));
            }
            let args = tools::scan::ScanArgs {
                radio,
                power_on,
                live_table: !json && std::io::IsTerminal::is_terminal(&std::io::stdout()),
                duration: std::time::Duration::from_secs_f64(duration),
                seed,
                loss,
                capture,
            };
            match tools::scan::scan(&args) {
                Ok(r) if json => out!("{}", r.to_json_lines()),
                Ok(r) => out!("{}", r.to_text()),
                Err(f) => {
                    eprintln!("meshprov: {}", f.message);
                    return code(f.exit_code);
                }
            }
        }
        Command::Keys {
            command:
                KeysCommand::Derive {
                    net_key,
                    app_key,
                    json,
                },
        } => match tools::keys::derive_from_args(&net_key, app_key.as_deref()) {
            Ok(d) if json => outln!("{}", d.to_json()),
            Ok(d) => out!("{}", d.to_text()),
            Err(e) => {
                eprintln!("meshprov: {e}");
                return code(exit::USAGE);
            }
        },
        Command::Rollout(args) => return code(tools::rollout::rollout(&args)),
        Command::Demo(args) => return code(tools::rollout::demo(&args)),
        Command::Soak(args) => return code(tools::soak::soak(&args)),
        Command::KeyRefresh {
            radio,
            net_key_index,
            exclude,
            headless,
            json,
            speed,
            seed,
            loss,
            silent,
            store,
        } => {
            // The terminal UI on a terminal, as `rollout` and `demo` (issue 9).
            let tui = !headless && !json && std::io::IsTerminal::is_terminal(&std::io::stdout());
            return finish(key_refresh(
                radio,
                net_key_index,
                exclude,
                json,
                seed,
                loss,
                silent,
                store,
                tools::rollout::EXIT_INCOMPLETE,
                tui.then_some(speed),
            ));
        }
        Command::Net { command } => return finish(run_net(command)),
        Command::Node { command } => return finish(run_node(command)),
        Command::Cdb { command } => return finish(run_cdb(command)),
        Command::Ca { command } => return finish(run_ca(command)),
        Command::Decode(d) => {
            let args = tools::decode::DecodeArgs {
                file: d.file,
                keys: d.keys,
                net_key: d.net_key,
                app_key: d.app_key,
                dev_keys: d.dev_key,
                iv_index: d.iv_index,
                att_handles: d.att_handle,
                json: d.json,
                show_keys: d.show_keys,
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let r = tools::decode::run(&args, &mut out);
            drop(out);
            if let Err(f) = r {
                eprintln!("meshprov: {}", f.message);
                return code(f.exit_code);
            }
        }
        Command::Replay(r) => {
            let args = tools::replay::ReplayArgs {
                file: r.file,
                keys: r.keys,
                json: r.json,
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            return match tools::replay::run(&args, &mut out) {
                Ok(c) => code(c),
                Err(f) => {
                    eprintln!("meshprov: {}", f.message);
                    code(f.exit_code)
                }
            };
        }
    }
    code(exit::SUCCESS)
}

fn usage_exit(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("meshprov: {e}");
    code(exit::USAGE)
}

fn finish(r: Result<(), Failure>) -> ExitCode {
    match r {
        Ok(()) => code(exit::SUCCESS),
        Err(Failure(c, msg)) => {
            // Not eprintln!: a terminal that hung up must not turn the exit code into a panic's.
            let _ = writeln!(std::io::stderr(), "meshprov: {msg}");
            code(c)
        }
    }
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}
