//! The network store: the only code that touches disk state (SQLite, and Mesh CDB JSON files).
//!
//! One SQLite file holds one network: its keys, this provisioner's address ranges, every node
//! with its device key, address reservations of running sessions, SEQ reservations and the
//! rollout journal. The default location is `$XDG_DATA_HOME/meshprov/<network>.db` (see
//! [`default_path`]).
//!
//! # Crash safety
//!
//! - The file (and its `-wal`/`-shm` companions) is created with mode 0600 before SQLite opens
//!   it; WAL mode with `synchronous=FULL`, so every committed transaction is on disk when the
//!   call returns.
//! - Provisioning is write-ahead: [`Store::allocate_unicast`] reserves the whole element range
//!   (state `reserved`), [`Store::commit_node`] stores the device key, address and session state
//!   as `unconfirmed` *before* Provisioning Data is sent, and [`Store::confirm_node`] marks the
//!   node `provisioned` when Provisioning Complete arrives. A device whose Data was sent but whose
//!   Complete was never seen stays `unconfirmed`: its key is kept and its addresses are never
//!   handed out again. A device that proves it never took its Data — it answered it with
//!   Provisioning Failed, or took a new link — has its commit voided
//!   ([`Store::void_unconfirmed`]): the node is removed, its addresses retired (never handed
//!   out again either) and the journal says why.
//! - SEQ numbers are reserved in blocks ([`Store::reserve_seq`]); a restart continues after the
//!   last reserved block, never inside it.
//! - Overlapping unicast ranges are refused by triggers in the database itself.
//! - A key refresh stores its new keys and its first journal entry in one transaction
//!   ([`Store::begin_key_refresh`]) before any node is told, and the old keys stay until every
//!   node finished ([`Store::finish_key_refresh`]).

pub mod cdb;
mod db;
mod files;
mod key_refresh;
mod node_config;
mod report;
mod rollout;
mod schema;
mod seal;
mod secrets;

use std::ops::Range;
use std::path::{Path, PathBuf};

use mesh_crypto::{AppKey, DevKey, NetKey};
use rand_core::CryptoRng;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::uuid::DeviceUuid;

pub use cdb::{
    Cdb, CdbAppKey, CdbElement, CdbError, CdbExclusion, CdbGroup, CdbModel, CdbNetKey, CdbNode,
    CdbProvisioner, CdbScene, Features, ModelId, Publication, Range16, decode_name, encode_name,
};
pub use db::{ExportOptions, ImportOptions, ImportSummary};
pub use files::{
    PRIVATE_MODE, data_dir, default_path, file_stem, iso8601, now_iso8601, resolve_path,
    write_atomically,
};
pub use key_refresh::{KeyRefreshRecord, NodeKeysUpdated};
pub use node_config::{CompositionRecord, JOURNAL_NODE_RESET};
pub use report::{
    network_json, network_text, node_json, node_list_json, node_list_text, node_show_text,
};
pub use rollout::{FIRST_GROUP, LAST_GROUP};
pub use schema::SCHEMA_VERSION;
pub use seal::{KdfParams, KeysAtRest, Passphrase, SALT_LEN, SEALED_LEN, StoreKey};
pub use secrets::{EncryptOutcome, MIN_PASSPHRASE_CHARS};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error (I/O, a locked or corrupt database, a refused constraint).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file could not be created, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system error.
        source: std::io::Error,
    },
    /// Neither `XDG_DATA_HOME` nor `HOME` is set to an absolute path.
    #[error("cannot find the data directory: set XDG_DATA_HOME or HOME, or give --store PATH")]
    NoDataDir,
    /// No store exists yet in the data directory.
    #[error("no network in {}: create one with `meshprov net create NAME` or give --store PATH", dir.display())]
    NoStore {
        /// The data directory searched.
        dir: PathBuf,
    },
    /// Several stores exist and none was chosen.
    #[error("several networks in {} ({}): choose one with --network NAME or --store PATH", dir.display(), names.join(", "))]
    SeveralStores {
        /// The data directory searched.
        dir: PathBuf,
        /// The networks found.
        names: Vec<String>,
    },
    /// The file was written by a newer meshprov.
    #[error(
        "the store has schema version {found}, newer than this meshprov's {supported}: upgrade meshprov"
    )]
    SchemaTooNew {
        /// Version in the file.
        found: u32,
        /// Newest version this program knows.
        supported: u32,
    },
    /// The store holds no network yet.
    #[error("the store holds no network yet: create one with `meshprov net create NAME`")]
    NoNetwork,
    /// `create_network` on a store that already has one.
    #[error("the store already holds the network '{name}' (one network per store)")]
    NetworkExists {
        /// Its name.
        name: String,
    },
    /// Stored data do not have the shape the schema promises.
    #[error("the store is inconsistent: {0}")]
    Corrupt(String),
    /// A caller passed a value outside its domain.
    #[error("{0}")]
    InvalidArgument(String),
    /// No NetKey with this index.
    #[error("no NetKey with index {0}")]
    UnknownNetKey(u16),
    /// No node matches.
    #[error("no node {0}")]
    NoSuchNode(String),
    /// All 4096 key indexes are in use.
    #[error("all 4096 {0} indexes are in use")]
    KeyIndexesExhausted(&'static str),
    /// No free block of addresses is left in this provisioner's unicast ranges.
    #[error(
        "no {elements} consecutive free unicast addresses left in this provisioner's ranges ({ranges})"
    )]
    AddressesExhausted {
        /// Element count asked for.
        elements: u8,
        /// The ranges searched, e.g. `0001-7FFF`.
        ranges: String,
    },
    /// The UUID already belongs to a node.
    #[error(
        "device {uuid} is already node {address:04X} ({state}); remove or exclude it before provisioning it again"
    )]
    UuidInUse {
        /// The device.
        uuid: DeviceUuid,
        /// Its primary address.
        address: u16,
        /// Its state.
        state: NodeState,
    },
    /// `commit_node` with an address range that is not free for this device.
    #[error(
        "addresses {address:04X}+{elements} are not free for device {uuid}: reserve them with allocate_unicast first"
    )]
    AddressNotReserved {
        /// The device.
        uuid: DeviceUuid,
        /// First address.
        address: u16,
        /// Element count.
        elements: u8,
    },
    /// The 24-bit SEQ space of an element is used up; an IV Update is due.
    #[error("sequence numbers of element {element:04X} are exhausted: an IV Update is needed")]
    SeqExhausted {
        /// The element address.
        element: u16,
    },
    /// A CDB file cannot be imported.
    #[error(transparent)]
    Cdb(#[from] CdbError),
    /// Import of a different network without `--force`.
    #[error(
        "the store holds network {stored} ('{stored_name}') but the file is network {file}: give --force to replace it"
    )]
    DifferentNetwork {
        /// Stored mesh UUID.
        stored: DeviceUuid,
        /// Stored name.
        stored_name: String,
        /// The file's mesh UUID.
        file: DeviceUuid,
    },
    /// Import would lose a device key or an address the store has.
    #[error("{0}; give --force to import anyway")]
    ImportWouldLose(String),
    /// Import cannot find room for this provisioner.
    #[error("{0}")]
    NoProvisionerRange(String),
    /// The store is encrypted and was opened without its passphrase.
    #[error(
        "{} is encrypted: give its passphrase in MESHPROV_PASSPHRASE, with --passphrase-fd N, or at the prompt on a terminal",
        path.display()
    )]
    Locked {
        /// The store.
        path: PathBuf,
    },
    /// The passphrase does not open the store (its verifier does not open).
    #[error("wrong passphrase for {}", path.display())]
    WrongPassphrase {
        /// The store.
        path: PathBuf,
    },
}

/// `secure` or `insecure` (CDB `security`, `minSecurity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// Provisioned over a secure procedure (the default).
    #[default]
    Secure,
    /// Provisioned insecurely (e.g. without OOB).
    Insecure,
}

impl Security {
    /// The CDB spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Security::Secure => "secure",
            Security::Insecure => "insecure",
        }
    }

    fn parse(s: &str) -> Security {
        if s == "insecure" {
            Security::Insecure
        } else {
            Security::Secure
        }
    }
}

/// Where a node is installed (from the rollout plan).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// Building.
    pub building: String,
    /// Floor.
    pub floor: String,
    /// Room.
    pub room: String,
}

/// Where a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Provisioning Data was (about to be) sent, Provisioning Complete was never seen. The
    /// device key and addresses are kept and never reused.
    Unconfirmed,
    /// Provisioning Complete was seen.
    Provisioned,
    /// Configured from its template (CDB `configComplete`).
    Configured,
    /// Excluded from the network (CDB `excluded`); its addresses are never reused.
    Excluded,
}

impl NodeState {
    /// Lower-case name, as shown by `node list`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Unconfirmed => "unconfirmed",
            NodeState::Provisioned => "provisioned",
            NodeState::Configured => "configured",
            NodeState::Excluded => "excluded",
        }
    }
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A NetKey as [`Store::network`] lists it (no key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetKeyInfo {
    /// Global index.
    pub index: u16,
    /// Name.
    pub name: String,
    /// Key Refresh phase 0, 1 or 2.
    pub phase: u8,
    /// Minimum security of the nodes that may know it.
    pub min_security: Security,
}

/// An AppKey as [`Store::network`] lists it (no key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppKeyInfo {
    /// Global index.
    pub index: u16,
    /// Name.
    pub name: String,
    /// The NetKey it is bound to.
    pub bound_net_key: u16,
}

/// The network of a store, without key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    /// Name (CDB `meshName`).
    pub name: String,
    /// Mesh UUID (CDB `meshUUID`).
    pub mesh_uuid: DeviceUuid,
    /// Current IV Index.
    pub iv_index: u32,
    /// IV Update in progress.
    pub iv_update: bool,
    /// Time of the last change, ISO-8601.
    pub timestamp: String,
    /// NetKeys by index.
    pub net_keys: Vec<NetKeyInfo>,
    /// AppKeys by index.
    pub app_keys: Vec<AppKeyInfo>,
    /// This provisioner's UUID.
    pub provisioner_uuid: DeviceUuid,
    /// This provisioner's name.
    pub provisioner_name: String,
    /// This provisioner's unicast ranges.
    pub unicast_ranges: Vec<Range16>,
    /// Number of nodes.
    pub node_count: usize,
    /// How the keys are kept at rest, when the store is encrypted (`None`: plaintext).
    pub keys_at_rest: Option<KeysAtRest>,
}

/// The unicast range this provisioner allocates from when a network is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkOptions {
    /// Unicast range of this provisioner (default 0001–7FFF).
    pub unicast: Range16,
    /// Group range (default C000–FEFF).
    pub group: Range16,
    /// Scene range (default 0001–FFFF).
    pub scene: Range16,
    /// Name of this provisioner.
    pub provisioner_name: String,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        Self {
            unicast: Range16 {
                low: 0x0001,
                high: 0x7fff,
            },
            group: Range16 {
                low: 0xc000,
                high: 0xfeff,
            },
            scene: Range16 {
                low: 0x0001,
                high: 0xffff,
            },
            provisioner_name: "meshprov".into(),
        }
    }
}

/// What the provisioning engine writes ahead, before Provisioning Data is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNode {
    /// The device.
    pub uuid: DeviceUuid,
    /// Name for people.
    pub name: String,
    /// Primary element address, from [`Store::allocate_unicast`].
    pub address: u16,
    /// Element count from the device's capabilities.
    pub elements: u8,
    /// The device key of this session.
    pub device_key: DevKey,
    /// The NetKey sent in Provisioning Data.
    pub net_key_index: u16,
    /// Where it is installed.
    pub location: Option<Location>,
}

/// A node as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The device UUID.
    pub uuid: DeviceUuid,
    /// Primary element address.
    pub address: u16,
    /// Element count; the node owns `address .. address + elements`.
    pub elements: u8,
    /// The device key.
    pub device_key: DevKey,
    /// Where it stands.
    pub state: NodeState,
    /// Name for people.
    pub name: String,
    /// Serial number from the rollout plan.
    pub serial: Option<String>,
    /// Where it is installed.
    pub location: Option<Location>,
    /// Provisioned securely or not.
    pub security: Security,
    /// NetKey indexes it knows.
    pub net_keys: Vec<u16>,
    /// AppKey indexes it knows.
    pub app_keys: Vec<u16>,
    /// Company ID from its composition data.
    pub cid: Option<u16>,
    /// Product ID.
    pub pid: Option<u16>,
    /// Version ID.
    pub vid: Option<u16>,
    /// Replay protection list size.
    pub crpl: Option<u16>,
    /// When it was committed, ISO-8601.
    pub created: String,
}

/// One line of the rollout journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// Sequence number, increasing.
    pub id: i64,
    /// When, ISO-8601.
    pub at: String,
    /// The device concerned, if any.
    pub uuid: Option<DeviceUuid>,
    /// What happened, a short token such as `session-start`.
    pub event: String,
    /// Free text.
    pub detail: String,
}

/// A node named on the command line: a unicast address (1 to 4 hex digits, optional `0x`) or a
/// device UUID (32 hex digits, dashes allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRef {
    /// Any address of the node (primary or one of its elements).
    Address(u16),
    /// The device UUID.
    Uuid(DeviceUuid),
}

impl std::str::FromStr for NodeRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let hex = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        if !hex.is_empty() && hex.len() <= 4 {
            return match u16::from_str_radix(hex, 16) {
                Ok(a) if (1..=0x7fff).contains(&a) => Ok(NodeRef::Address(a)),
                Ok(a) => Err(format!("{a:04X} is not a unicast address (0001-7FFF)")),
                Err(_) => Err(format!("'{s}' is not an address (1 to 4 hex digits)")),
            };
        }
        t.parse::<DeviceUuid>().map(NodeRef::Uuid).map_err(|e| {
            format!(
                "'{s}' is neither a unicast address nor a UUID: {}",
                e.reason
            )
        })
    }
}

impl Store {
    /// The node a [`NodeRef`] names.
    pub fn node(&self, r: &NodeRef) -> Result<Node, StoreError> {
        match r {
            NodeRef::Address(a) => self.node_by_address(*a),
            NodeRef::Uuid(u) => self.node_by_uuid(u),
        }
    }
}

/// An open store: one SQLite connection.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// How key columns are read and written: plaintext, or sealed (locked or unlocked).
    keys: seal::KeyCipher,
}

pub(crate) fn uuid_from(blob: Vec<u8>) -> Result<DeviceUuid, StoreError> {
    let arr: [u8; 16] = blob
        .try_into()
        .map_err(|_| StoreError::Corrupt("a UUID is not 16 bytes".into()))?;
    Ok(DeviceUuid(arr))
}

fn format_ranges(rs: &[Range16]) -> String {
    rs.iter()
        .map(|r| format!("{:04X}-{:04X}", r.low, r.high))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A random number generator seeded from the operating system, for the CLI (the library
/// itself always takes an injected RNG).
pub fn os_rng() -> Result<rand_chacha::ChaCha20Rng, StoreError> {
    use rand_core::SeedableRng;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| {
        StoreError::InvalidArgument(format!("the operating system gave no randomness: {e}"))
    })?;
    let rng = rand_chacha::ChaCha20Rng::from_seed(seed);
    seed.fill(0);
    Ok(rng)
}

/// A fresh random (version 4) UUID from the injected RNG.
pub fn random_uuid(rng: &mut dyn CryptoRng) -> DeviceUuid {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    DeviceUuid(b)
}

/// The first address `a` such that `a .. a + elements` lies inside one of `ranges` and overlaps
/// none of `taken` (inclusive `(first, last)` spans), trying the ranges in the order given and
/// the lowest address first inside each. This is the allocation rule: first fit, so a floor's
/// devices get compact, predictable addresses, and a provisioner with several ranges fills
/// them in its own order (a rollout plan's `unicast_ranges`).
pub fn first_fit(ranges: &[Range16], taken: &[(u16, u16)], elements: u8) -> Option<u16> {
    if elements == 0 {
        return None;
    }
    let mut taken = taken.to_vec();
    taken.sort();
    let need = u32::from(elements);
    for r in ranges {
        let mut a = u32::from(r.low.max(1));
        let high = u32::from(r.high.min(0x7fff));
        while a + need - 1 <= high {
            let last = a + need - 1;
            match taken
                .iter()
                .find(|(f, l)| u32::from(*f) <= last && a <= u32::from(*l))
            {
                Some((_, l)) => a = u32::from(*l) + 1,
                // Cannot truncate: a <= 0x7fff.
                None => return Some(a as u16),
            }
        }
    }
    None
}

impl Store {
    /// Opens the store at `path`, creating it (mode 0600, parent directories 0700) if it is
    /// missing, and migrates its schema to [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        files::ensure_private_file(path)?;
        let mut conn = Connection::open(path)?;
        schema::prepare(&mut conn)?;
        for c in files::companions(path) {
            files::tighten(&c)?;
        }
        let keys = secrets::cipher_at_open(&conn, path)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            keys,
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Begins a write transaction that takes the write lock at once.
    fn write(&mut self) -> Result<Transaction<'_>, StoreError> {
        begin(&mut self.conn)
    }

    /// Creates the network with default ranges ([`NetworkOptions::default`]): the primary
    /// NetKey (index 0; `net_key` or a fresh one from `rng`), a random mesh UUID, IV Index 0,
    /// and this provisioner with unicast range 0001–7FFF.
    pub fn create_network(
        &mut self,
        name: &str,
        net_key: Option<NetKey>,
        rng: &mut dyn CryptoRng,
    ) -> Result<NetworkInfo, StoreError> {
        self.create_network_with(name, net_key, &NetworkOptions::default(), rng)
    }

    /// [`Store::create_network`] with chosen ranges.
    pub fn create_network_with(
        &mut self,
        name: &str,
        net_key: Option<NetKey>,
        options: &NetworkOptions,
        rng: &mut dyn CryptoRng,
    ) -> Result<NetworkInfo, StoreError> {
        let u = options.unicast;
        if u.low == 0 || u.high > 0x7fff || u.low > u.high {
            return Err(StoreError::InvalidArgument(format!(
                "unicast range {:04X}-{:04X} is not inside 0001-7FFF",
                u.low, u.high
            )));
        }
        let g = options.group;
        if g.low < 0xc000 || g.high > 0xfeff || g.low > g.high {
            return Err(StoreError::InvalidArgument(format!(
                "group range {:04X}-{:04X} is not inside C000-FEFF",
                g.low, g.high
            )));
        }
        let key = net_key.unwrap_or_else(|| NetKey::generate(rng));
        let mesh_uuid = random_uuid(rng);
        let prov_uuid = random_uuid(rng);
        let now = now_iso8601();
        let tx = begin(&mut self.conn)?;
        if let Some(existing) = tx
            .query_row("SELECT name FROM network", [], |r| r.get::<_, String>(0))
            .optional()?
        {
            return Err(StoreError::NetworkExists { name: existing });
        }
        tx.execute(
            "INSERT INTO network (id, name, mesh_uuid, iv_index, iv_update, timestamp) VALUES (1, ?1, ?2, 0, 0, ?3)",
            params![name, &mesh_uuid.0[..], now],
        )?;
        let sealed = self.keys.seal(
            seal::Slot::NetKey {
                index: 0,
                old: false,
            },
            key.expose_secret(),
        )?;
        tx.execute(
            "INSERT INTO net_keys (idx, name, key, phase, min_security, timestamp) VALUES (0, 'Primary Network Key', ?1, 0, 'secure', ?2)",
            params![&sealed[..], now],
        )?;
        tx.execute(
            "INSERT INTO provisioners (uuid, name, is_self) VALUES (?1, ?2, 1)",
            params![&prov_uuid.0[..], options.provisioner_name],
        )?;
        let pid = tx.last_insert_rowid();
        for (kind, r) in [
            ("unicast", options.unicast),
            ("group", options.group),
            ("scene", options.scene),
        ] {
            tx.execute(
                "INSERT INTO provisioner_ranges (provisioner, kind, low, high) VALUES (?1, ?2, ?3, ?4)",
                params![pid, kind, r.low, r.high],
            )?;
        }
        tx.commit()?;
        self.network()
    }

    /// The network: name, mesh UUID, IV Index and IV Update flag, key indexes and phases, this
    /// provisioner and its unicast ranges.
    pub fn network(&self) -> Result<NetworkInfo, StoreError> {
        let (name, uuid, iv_index, iv_update, timestamp) = self
            .conn
            .query_row(
                "SELECT name, mesh_uuid, iv_index, iv_update, timestamp FROM network",
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, u32>(2)?,
                        r.get::<_, bool>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )
            .optional()?
            .ok_or(StoreError::NoNetwork)?;
        let mut st = self
            .conn
            .prepare("SELECT idx, name, phase, min_security FROM net_keys ORDER BY idx")?;
        let net_keys = st
            .query_map([], |r| {
                Ok(NetKeyInfo {
                    index: r.get(0)?,
                    name: r.get(1)?,
                    phase: r.get(2)?,
                    min_security: Security::parse(&r.get::<_, String>(3)?),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut st = self
            .conn
            .prepare("SELECT idx, name, bound_net_key FROM app_keys ORDER BY idx")?;
        let app_keys = st
            .query_map([], |r| {
                Ok(AppKeyInfo {
                    index: r.get(0)?,
                    name: r.get(1)?,
                    bound_net_key: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let (provisioner_uuid, provisioner_name) = self.self_provisioner()?;
        let node_count: i64 = self
            .conn
            .query_row("SELECT count(*) FROM nodes", [], |r| r.get(0))?;
        let node_count = usize::try_from(node_count).unwrap_or(0);
        Ok(NetworkInfo {
            name,
            mesh_uuid: uuid_from(uuid)?,
            iv_index,
            iv_update,
            timestamp,
            net_keys,
            app_keys,
            provisioner_uuid,
            provisioner_name,
            unicast_ranges: self.unicast_ranges()?,
            node_count,
            keys_at_rest: self.keys.info().cloned(),
        })
    }

    fn self_provisioner(&self) -> Result<(DeviceUuid, String), StoreError> {
        let (u, n) = self
            .conn
            .query_row(
                "SELECT uuid, name FROM provisioners WHERE is_self = 1",
                [],
                |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()?
            .ok_or_else(|| StoreError::Corrupt("the store has no provisioner of its own".into()))?;
        Ok((uuid_from(u)?, n))
    }

    /// Replaces this provisioner's unicast ranges with `ranges`, kept in this order (the order
    /// [`Store::allocate_unicast`] fills them in). Refused when two of them overlap, or one
    /// overlaps a range of another provisioner of the network; nodes already provisioned keep
    /// their addresses.
    pub fn set_unicast_ranges(&mut self, ranges: &[Range16]) -> Result<(), StoreError> {
        for (i, r) in ranges.iter().enumerate() {
            if r.low == 0 || r.high > 0x7fff || r.low > r.high {
                return Err(StoreError::InvalidArgument(format!(
                    "{:04X}-{:04X} is not a unicast range inside 0001-7FFF",
                    r.low, r.high
                )));
            }
            if let Some(o) = ranges[..i]
                .iter()
                .find(|o| o.low <= r.high && r.low <= o.high)
            {
                return Err(StoreError::InvalidArgument(format!(
                    "unicast range {:04X}-{:04X} overlaps {:04X}-{:04X}",
                    r.low, r.high, o.low, o.high
                )));
            }
        }
        let tx = self.write()?;
        let pid: i64 = tx.query_row("SELECT id FROM provisioners WHERE is_self = 1", [], |r| {
            r.get(0)
        })?;
        let others: Vec<(u16, u16)> = tx
            .prepare(
                "SELECT low, high FROM provisioner_ranges WHERE provisioner != ?1 AND kind = 'unicast'",
            )?
            .query_map([pid], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for r in ranges {
            if let Some((lo, hi)) = others.iter().find(|(lo, hi)| *lo <= r.high && r.low <= *hi) {
                return Err(StoreError::InvalidArgument(format!(
                    "unicast range {:04X}-{:04X} overlaps {lo:04X}-{hi:04X} of another provisioner",
                    r.low, r.high
                )));
            }
        }
        tx.execute(
            "DELETE FROM provisioner_ranges WHERE provisioner = ?1 AND kind = 'unicast'",
            [pid],
        )?;
        for r in ranges {
            tx.execute(
                "INSERT INTO provisioner_ranges (provisioner, kind, low, high) VALUES (?1, 'unicast', ?2, ?3)",
                params![pid, r.low, r.high],
            )?;
        }
        touch(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// This provisioner's unicast ranges, ascending.
    pub fn unicast_ranges(&self) -> Result<Vec<Range16>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT r.low, r.high FROM provisioner_ranges r JOIN provisioners p ON p.id = r.provisioner
             WHERE p.is_self = 1 AND r.kind = 'unicast' ORDER BY r.low",
        )?;
        Ok(st
            .query_map([], |r| {
                Ok(Range16 {
                    low: r.get(0)?,
                    high: r.get(1)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// The NetKey with this index.
    pub fn net_key(&self, index: u16) -> Result<NetKey, StoreError> {
        let blob: Vec<u8> = self
            .conn
            .query_row("SELECT key FROM net_keys WHERE idx = ?1", [index], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or(StoreError::UnknownNetKey(index))?;
        let k = self
            .keys
            .open(seal::Slot::NetKey { index, old: false }, blob)?;
        Ok(NetKey::from_bytes(*k))
    }

    /// The AppKey with this index.
    pub fn app_key(&self, index: u16) -> Result<AppKey, StoreError> {
        let blob: Vec<u8> = self
            .conn
            .query_row("SELECT key FROM app_keys WHERE idx = ?1", [index], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or_else(|| StoreError::InvalidArgument(format!("no AppKey with index {index}")))?;
        let k = self
            .keys
            .open(seal::Slot::AppKey { index, old: false }, blob)?;
        Ok(AppKey::from_bytes(*k))
    }

    /// Adds an AppKey bound to `net_key` with the lowest free index (`key`, or a fresh one
    /// from `rng`), and returns its index.
    pub fn add_app_key(
        &mut self,
        name: &str,
        net_key: u16,
        key: Option<AppKey>,
        rng: &mut dyn CryptoRng,
    ) -> Result<u16, StoreError> {
        let key = key.unwrap_or_else(|| AppKey::generate(rng));
        let tx = begin(&mut self.conn)?;
        let known: bool = tx.query_row(
            "SELECT count(*) FROM net_keys WHERE idx = ?1",
            [net_key],
            |r| r.get(0),
        )?;
        if !known {
            return Err(StoreError::UnknownNetKey(net_key));
        }
        let used: Vec<u16> = tx
            .prepare("SELECT idx FROM app_keys ORDER BY idx")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let index = (0u16..4096)
            .find(|i| used.binary_search(i).is_err())
            .ok_or(StoreError::KeyIndexesExhausted("AppKey"))?;
        let sealed = self.keys.seal(
            seal::Slot::AppKey { index, old: false },
            key.expose_secret(),
        )?;
        tx.execute(
            "INSERT INTO app_keys (idx, name, bound_net_key, key) VALUES (?1, ?2, ?3, ?4)",
            params![index, name, net_key, &sealed[..]],
        )?;
        touch(&tx)?;
        tx.commit()?;
        Ok(index)
    }

    /// Reserves `elements` consecutive unicast addresses for a provisioning session of `uuid`
    /// and returns the first. The reservation is committed before this returns. The range lies
    /// inside this provisioner's unicast ranges and overlaps no node (in any state, excluded
    /// ones included), no other reservation and no excluded address ([`first_fit`]).
    /// Idempotent: a reservation of the same UUID and element count is returned again.
    pub fn allocate_unicast(&mut self, uuid: &DeviceUuid, elements: u8) -> Result<u16, StoreError> {
        self.allocate_unicast_for(uuid, elements, false)
    }

    /// [`Store::allocate_unicast`] for a device whose node is `unconfirmed` and that is being
    /// provisioned afresh ([`Store::commit_node_superseding`]): its node does not stand in the
    /// way (any other state still does). The new range avoids the old node's addresses.
    pub fn allocate_unicast_superseding(
        &mut self,
        uuid: &DeviceUuid,
        elements: u8,
    ) -> Result<u16, StoreError> {
        self.allocate_unicast_for(uuid, elements, true)
    }

    fn allocate_unicast_for(
        &mut self,
        uuid: &DeviceUuid,
        elements: u8,
        superseding: bool,
    ) -> Result<u16, StoreError> {
        if elements == 0 {
            return Err(StoreError::InvalidArgument(
                "a device has at least one element".into(),
            ));
        }
        let tx = self.write()?;
        // In the order they were given (rowid): the ranges are filled one after another.
        let ranges: Vec<Range16> = tx
            .prepare(
                "SELECT r.low, r.high FROM provisioner_ranges r JOIN provisioners p ON p.id = r.provisioner
                 WHERE p.is_self = 1 AND r.kind = 'unicast' ORDER BY r.rowid",
            )?
            .query_map([], |r| {
                Ok(Range16 {
                    low: r.get(0)?,
                    high: r.get(1)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        if let Some((address, state)) = node_state_by_uuid(&tx, uuid)?
            && !(superseding && state == NodeState::Unconfirmed)
        {
            return Err(StoreError::UuidInUse {
                uuid: *uuid,
                address,
                state,
            });
        }
        let existing: Option<(u16, u8)> = tx
            .query_row(
                "SELECT address, elements FROM reservations WHERE uuid = ?1",
                [&uuid.0[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match existing {
            Some((address, n)) if n == elements => return Ok(address),
            Some(_) => {
                tx.execute("DELETE FROM reservations WHERE uuid = ?1", [&uuid.0[..]])?;
            }
            None => {}
        }
        let taken = taken_spans(&tx)?;
        let address =
            first_fit(&ranges, &taken, elements).ok_or_else(|| StoreError::AddressesExhausted {
                elements,
                ranges: format_ranges(&ranges),
            })?;
        tx.execute(
            "INSERT INTO reservations (uuid, address, elements, created) VALUES (?1, ?2, ?3, ?4)",
            params![&uuid.0[..], address, elements, now_iso8601()],
        )?;
        tx.commit()?;
        Ok(address)
    }

    /// Open reservations: (device, first address, element count).
    pub fn reservations(&self) -> Result<Vec<(DeviceUuid, u16, u8)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT uuid, address, elements FROM reservations ORDER BY address")?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, u16>(1)?,
                    r.get::<_, u8>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(u, a, e)| Ok((uuid_from(u)?, a, e)))
            .collect()
    }

    /// Write-ahead record of a session, to call BEFORE Provisioning Data is sent: stores the
    /// device key, addresses, UUID, name, location and NetKey as a node in state `unconfirmed`,
    /// and consumes the reservation. Durable (fsynced) when it returns. The addresses must be the
    /// device's reservation, or free.
    pub fn commit_node(&mut self, node: &NewNode) -> Result<(), StoreError> {
        self.commit_node_for(node, None)
    }

    /// [`Store::commit_node`] for a device provisioned afresh while its earlier node is still
    /// `unconfirmed` (its Provisioning Complete was lost, then the device was heard as
    /// unprovisioned): called, like any commit, once the new session has authenticated the
    /// device — which a device holding its keys cannot do — so in the same transaction the
    /// earlier node is voided (its addresses retired, journal `unconfirmed-void` with `why`),
    /// and the new node committed. Without an earlier node it is a plain commit; an earlier node
    /// in any other state is refused ([`StoreError::UuidInUse`]).
    pub fn commit_node_superseding(&mut self, node: &NewNode, why: &str) -> Result<(), StoreError> {
        self.commit_node_for(node, Some(why))
    }

    fn commit_node_for(
        &mut self,
        node: &NewNode,
        supersede: Option<&str>,
    ) -> Result<(), StoreError> {
        if node.elements == 0 {
            return Err(StoreError::InvalidArgument(
                "a device has at least one element".into(),
            ));
        }
        let tx = begin(&mut self.conn)?;
        if let Some((address, state)) = node_state_by_uuid(&tx, &node.uuid)? {
            match supersede {
                Some(why) if state == NodeState::Unconfirmed => {
                    let elements: u8 = tx.query_row(
                        "SELECT elements FROM nodes WHERE uuid = ?1",
                        [&node.uuid.0[..]],
                        |r| r.get(0),
                    )?;
                    rollout::void_in(&tx, &node.uuid, address, elements, why)?;
                }
                _ => {
                    return Err(StoreError::UuidInUse {
                        uuid: node.uuid,
                        address,
                        state,
                    });
                }
            }
        }
        let known: bool = tx.query_row(
            "SELECT count(*) FROM net_keys WHERE idx = ?1",
            [node.net_key_index],
            |r| r.get(0),
        )?;
        if !known {
            return Err(StoreError::UnknownNetKey(node.net_key_index));
        }
        let reserved: Option<(u16, u8)> = tx
            .query_row(
                "SELECT address, elements FROM reservations WHERE uuid = ?1",
                [&node.uuid.0[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let not_reserved = || StoreError::AddressNotReserved {
            uuid: node.uuid,
            address: node.address,
            elements: node.elements,
        };
        match reserved {
            Some((a, n)) if a == node.address && n == node.elements => {}
            Some(_) => return Err(not_reserved()),
            None => {
                let last = u32::from(node.address) + u32::from(node.elements) - 1;
                let free = node.address != 0
                    && last <= 0x7fff
                    && !taken_spans(&tx)?
                        .iter()
                        .any(|(f, l)| u32::from(*f) <= last && node.address <= *l);
                if !free {
                    return Err(not_reserved());
                }
            }
        }
        let loc = node.location.as_ref();
        let sealed = self.keys.seal(
            seal::Slot::DevKey(&node.uuid),
            node.device_key.expose_secret(),
        )?;
        tx.execute(
            "INSERT INTO nodes (uuid, address, elements, device_key, state, name, building, floor, room, created)
             VALUES (?1, ?2, ?3, ?4, 'unconfirmed', ?5, ?6, ?7, ?8, ?9)",
            params![
                &node.uuid.0[..],
                node.address,
                node.elements,
                &sealed[..],
                node.name,
                loc.map(|l| l.building.as_str()),
                loc.map(|l| l.floor.as_str()),
                loc.map(|l| l.room.as_str()),
                now_iso8601(),
            ],
        )?;
        tx.execute(
            "INSERT INTO node_net_keys (node, idx, updated) VALUES (?1, ?2, 0)",
            params![&node.uuid.0[..], node.net_key_index],
        )?;
        for i in 0..node.elements {
            tx.execute(
                "INSERT INTO elements (node, idx, location) VALUES (?1, ?2, 0)",
                params![&node.uuid.0[..], i],
            )?;
        }
        tx.execute(
            "DELETE FROM reservations WHERE uuid = ?1",
            [&node.uuid.0[..]],
        )?;
        touch(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Provisioning Complete was seen: the node becomes `provisioned`.
    pub fn confirm_node(&mut self, uuid: &DeviceUuid) -> Result<(), StoreError> {
        let tx = self.write()?;
        let n = tx.execute(
            "UPDATE nodes SET state = 'provisioned' WHERE uuid = ?1",
            [&uuid.0[..]],
        )?;
        if n == 0 {
            return Err(StoreError::NoSuchNode(uuid.to_string()));
        }
        touch(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Sets the CDB `configComplete` flag (state `configured`).
    pub fn set_config_complete(&mut self, uuid: &DeviceUuid, done: bool) -> Result<(), StoreError> {
        let tx = self.write()?;
        let n = tx.execute(
            "UPDATE nodes SET config_complete = ?2 WHERE uuid = ?1",
            params![&uuid.0[..], done],
        )?;
        if n == 0 {
            return Err(StoreError::NoSuchNode(uuid.to_string()));
        }
        touch(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Records the serial number of a node (from the rollout plan).
    pub fn set_serial(
        &mut self,
        uuid: &DeviceUuid,
        serial: Option<&str>,
    ) -> Result<(), StoreError> {
        let tx = self.write()?;
        let n = tx.execute(
            "UPDATE nodes SET serial = ?2 WHERE uuid = ?1",
            params![&uuid.0[..], serial],
        )?;
        if n == 0 {
            return Err(StoreError::NoSuchNode(uuid.to_string()));
        }
        touch(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// A session failed BEFORE [`Store::commit_node`]: its reserved addresses may be reused.
    /// Releasing a device without a reservation does nothing. After `commit_node` nothing is
    /// released automatically: the node stays, `unconfirmed` at worst.
    pub fn release_reservation(&mut self, uuid: &DeviceUuid) -> Result<(), StoreError> {
        let tx = self.write()?;
        tx.execute("DELETE FROM reservations WHERE uuid = ?1", [&uuid.0[..]])?;
        tx.commit()?;
        Ok(())
    }

    /// Marks the node at `address` excluded: it stays in the store (its addresses are never
    /// reused) and its element addresses are added to the network exclusions at the current IV
    /// Index. Returns the node as it was.
    pub fn exclude_node(&mut self, address: u16) -> Result<Node, StoreError> {
        let node = self.node_by_address(address)?;
        let tx = self.write()?;
        tx.execute(
            "UPDATE nodes SET excluded = 1 WHERE uuid = ?1",
            [&node.uuid.0[..]],
        )?;
        let iv: u32 = tx.query_row("SELECT iv_index FROM network", [], |r| r.get(0))?;
        for a in node.address..node.address + u16::from(node.elements) {
            tx.execute(
                "INSERT OR IGNORE INTO exclusions (iv_index, address) VALUES (?1, ?2)",
                params![iv, a],
            )?;
        }
        touch(&tx)?;
        tx.commit()?;
        Ok(node)
    }

    /// Every node, by address.
    pub fn nodes(&self) -> Result<Vec<Node>, StoreError> {
        self.query_nodes("1 = 1", &[])
    }

    /// The node of a device.
    pub fn node_by_uuid(&self, uuid: &DeviceUuid) -> Result<Node, StoreError> {
        self.query_nodes("n.uuid = ?1", &[&&uuid.0[..]])?
            .pop()
            .ok_or_else(|| StoreError::NoSuchNode(uuid.to_string()))
    }

    /// The node that owns `address` (its primary address or one of its elements').
    pub fn node_by_address(&self, address: u16) -> Result<Node, StoreError> {
        self.query_nodes(
            "n.address <= ?1 AND ?1 < n.address + n.elements",
            &[&address],
        )?
        .pop()
        .ok_or_else(|| StoreError::NoSuchNode(format!("at address {address:04X}")))
    }

    fn query_nodes(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Node>, StoreError> {
        let sql = format!(
            "SELECT n.uuid, n.address, n.elements, n.device_key, n.state, n.config_complete, n.excluded,
                    n.name, n.serial, n.building, n.floor, n.room, n.security, n.cid, n.pid, n.vid, n.crpl,
                    n.created,
                    (SELECT group_concat(idx) FROM (SELECT idx FROM node_net_keys WHERE node = n.uuid ORDER BY idx)),
                    (SELECT group_concat(idx) FROM (SELECT idx FROM node_app_keys WHERE node = n.uuid ORDER BY idx))
             FROM nodes n WHERE {filter} ORDER BY n.address"
        );
        let mut st = self.conn.prepare(&sql)?;
        let mut rows = st.query(args)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let state: String = r.get(4)?;
            let config_complete: bool = r.get(5)?;
            let excluded: bool = r.get(6)?;
            let state = if excluded {
                NodeState::Excluded
            } else if state == "unconfirmed" {
                NodeState::Unconfirmed
            } else if config_complete {
                NodeState::Configured
            } else {
                NodeState::Provisioned
            };
            let building: Option<String> = r.get(9)?;
            let floor: Option<String> = r.get(10)?;
            let room: Option<String> = r.get(11)?;
            let location = if building.is_none() && floor.is_none() && room.is_none() {
                None
            } else {
                Some(Location {
                    building: building.unwrap_or_default(),
                    floor: floor.unwrap_or_default(),
                    room: room.unwrap_or_default(),
                })
            };
            let list = |s: Option<String>| -> Vec<u16> {
                s.unwrap_or_default()
                    .split(',')
                    .filter_map(|x| x.parse().ok())
                    .collect()
            };
            let uuid = uuid_from(r.get(0)?)?;
            let device_key = self.keys.open(seal::Slot::DevKey(&uuid), r.get(3)?)?;
            out.push(Node {
                uuid,
                address: r.get(1)?,
                elements: r.get(2)?,
                device_key: DevKey::from_bytes(*device_key),
                state,
                name: r.get(7)?,
                serial: r.get(8)?,
                location,
                security: Security::parse(&r.get::<_, String>(12)?),
                cid: r.get(13)?,
                pid: r.get(14)?,
                vid: r.get(15)?,
                crpl: r.get(16)?,
                created: r.get(17)?,
                net_keys: list(r.get(18)?),
                app_keys: list(r.get(19)?),
            });
        }
        Ok(out)
    }

    /// Reserves the next `block` sequence numbers of `element` (a unicast address of this
    /// provisioner) and returns them. The block is committed before this returns, so after a
    /// restart numbering continues after it: a SEQ is never used twice with one IV Index.
    pub fn reserve_seq(&mut self, element: u16, block: u32) -> Result<Range<u32>, StoreError> {
        if block == 0 {
            return Err(StoreError::InvalidArgument(
                "a SEQ block holds at least one number".into(),
            ));
        }
        let tx = self.write()?;
        let next: u32 = tx
            .query_row(
                "SELECT next FROM seq_blocks WHERE element = ?1",
                [element],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let end = u64::from(next) + u64::from(block);
        if end > 1 << 24 {
            return Err(StoreError::SeqExhausted { element });
        }
        // Cannot truncate: end <= 2^24.
        let end = end as u32;
        tx.execute(
            "INSERT INTO seq_blocks (element, next) VALUES (?1, ?2)
             ON CONFLICT (element) DO UPDATE SET next = excluded.next",
            params![element, end],
        )?;
        tx.commit()?;
        Ok(next..end)
    }

    /// Sets the IV Index and IV Update flag. A new IV Index restarts every SEQ at 0.
    pub fn set_iv_index(&mut self, iv_index: u32, iv_update: bool) -> Result<(), StoreError> {
        let tx = self.write()?;
        let old: u32 = tx
            .query_row("SELECT iv_index FROM network", [], |r| r.get(0))
            .optional()?
            .ok_or(StoreError::NoNetwork)?;
        if iv_index < old {
            return Err(StoreError::InvalidArgument(format!(
                "the IV Index never decreases ({old} to {iv_index})"
            )));
        }
        tx.execute(
            "UPDATE network SET iv_index = ?1, iv_update = ?2",
            params![iv_index, iv_update],
        )?;
        if iv_index != old {
            tx.execute("DELETE FROM seq_blocks", [])?;
        }
        touch(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Appends a line to the rollout journal and returns its sequence number.
    pub fn journal_append(
        &mut self,
        uuid: Option<&DeviceUuid>,
        event: &str,
        detail: &str,
    ) -> Result<i64, StoreError> {
        let tx = self.write()?;
        tx.execute(
            "INSERT INTO journal (at, uuid, event, detail) VALUES (?1, ?2, ?3, ?4)",
            params![now_iso8601(), uuid.map(|u| u.0.to_vec()), event, detail],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// The rollout journal, oldest first.
    pub fn journal(&self) -> Result<Vec<JournalEntry>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT id, at, uuid, event, detail FROM journal ORDER BY id")?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<Vec<u8>>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(id, at, uuid, event, detail)| {
                Ok(JournalEntry {
                    id,
                    at,
                    uuid: uuid.map(uuid_from).transpose()?,
                    event,
                    detail,
                })
            })
            .collect()
    }

    /// SQLite's own consistency check (`PRAGMA integrity_check`) plus a foreign key check;
    /// `Ok(())` when both pass.
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        let ok: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if ok != "ok" {
            return Err(StoreError::Corrupt(ok));
        }
        let bad: Option<String> = self
            .conn
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()?;
        if let Some(table) = bad {
            return Err(StoreError::Corrupt(format!(
                "a row of {table} refers to a missing row"
            )));
        }
        Ok(())
    }
}

/// Begins a write transaction that takes the write lock at once (borrowing only the
/// connection, so that the store's key cipher stays usable inside it).
fn begin(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

/// Records the time of the last change (the CDB `timestamp`).
fn touch(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute("UPDATE network SET timestamp = ?1", [now_iso8601()])?;
    Ok(())
}

fn node_state_by_uuid(
    tx: &Transaction<'_>,
    uuid: &DeviceUuid,
) -> Result<Option<(u16, NodeState)>, StoreError> {
    Ok(tx
        .query_row(
            "SELECT address, state, config_complete, excluded FROM nodes WHERE uuid = ?1",
            [&uuid.0[..]],
            |r| {
                let state: String = r.get(1)?;
                let cc: bool = r.get(2)?;
                let ex: bool = r.get(3)?;
                Ok((
                    r.get(0)?,
                    if ex {
                        NodeState::Excluded
                    } else if state == "unconfirmed" {
                        NodeState::Unconfirmed
                    } else if cc {
                        NodeState::Configured
                    } else {
                        NodeState::Provisioned
                    },
                ))
            },
        )
        .optional()?)
}

/// Every unicast span not free for allocation: nodes, reservations, excluded addresses.
fn taken_spans(tx: &Transaction<'_>) -> Result<Vec<(u16, u16)>, StoreError> {
    let mut st = tx.prepare(
        "SELECT address, address + elements - 1 FROM nodes
         UNION ALL SELECT address, address + elements - 1 FROM reservations
         UNION ALL SELECT address, address FROM exclusions",
    )?;
    Ok(st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(low: u16, high: u16) -> Range16 {
        Range16 { low, high }
    }

    #[test]
    fn several_unicast_ranges_fill_in_their_order_and_overlaps_are_refused() {
        use rand_chacha::rand_core::SeedableRng;
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        s.create_network_with("n", None, &NetworkOptions::default(), &mut rng)
            .unwrap();
        // The second range is lower, but the first one given is filled first.
        s.set_unicast_ranges(&[r(0x200, 0x202), r(0x100, 0x1ff)])
            .unwrap();
        let u = |b: u8| DeviceUuid([b; 16]);
        assert_eq!(s.allocate_unicast(&u(1), 2).unwrap(), 0x200);
        // Two elements no longer fit in 0200-0202: the next range.
        assert_eq!(s.allocate_unicast(&u(2), 2).unwrap(), 0x100);
        assert_eq!(s.allocate_unicast(&u(3), 1).unwrap(), 0x202);
        assert_eq!(s.allocate_unicast(&u(4), 1).unwrap(), 0x102);
        assert_eq!(
            s.unicast_ranges().unwrap(),
            vec![r(0x100, 0x1ff), r(0x200, 0x202)]
        );
        let e = s
            .set_unicast_ranges(&[r(0x100, 0x1ff), r(0x180, 0x300)])
            .unwrap_err();
        assert!(e.to_string().contains("overlaps 0100-01FF"), "{e}");
        assert!(s.set_unicast_ranges(&[r(0, 5)]).is_err());
        // Refused changes leave the ranges as they were.
        assert_eq!(s.unicast_ranges().unwrap().len(), 2);
    }

    #[test]
    fn first_fit_rule() {
        assert_eq!(first_fit(&[r(1, 0x7fff)], &[], 3), Some(1));
        assert_eq!(first_fit(&[r(1, 0x7fff)], &[(1, 3)], 2), Some(4));
        // A gap too small is skipped.
        assert_eq!(first_fit(&[r(1, 10)], &[(1, 2), (4, 5)], 2), Some(6));
        assert_eq!(first_fit(&[r(1, 10)], &[(1, 2), (4, 5)], 1), Some(3));
        // The whole element count must fit inside one range.
        assert_eq!(first_fit(&[r(1, 4), r(8, 9)], &[], 3), Some(1));
        assert_eq!(first_fit(&[r(1, 2), r(8, 10)], &[], 3), Some(8));
        assert_eq!(first_fit(&[r(1, 2), r(8, 9)], &[], 3), None);
        // Exhausted at the top of the unicast space.
        assert_eq!(first_fit(&[r(0x7ffe, 0x7fff)], &[], 2), Some(0x7ffe));
        assert_eq!(
            first_fit(&[r(0x7ffe, 0x7fff)], &[(0x7fff, 0x7fff)], 1),
            Some(0x7ffe)
        );
        assert_eq!(
            first_fit(&[r(0x7ffe, 0x7fff)], &[(0x7ffe, 0x7ffe)], 2),
            None
        );
        assert_eq!(first_fit(&[r(1, 10)], &[], 0), None);
    }
}
