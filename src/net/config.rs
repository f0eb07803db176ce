//! Configuration messages (§4.3.2) and the Configuration client's request matcher.
//!
//! Parameters are little-endian; two key indexes are packed into 3 octets
//! (`NetKeyIndex | AppKeyIndex << 12`, reference §6.4); a single key index is a 16-bit value
//! whose 4 upper bits are RFU (ignored when parsed, zero when emitted, as BlueZ does). Model
//! IDs are 2 octets (SIG) or 4 (Company ID ‖ model, both LE); which one is told by the
//! message length. RFU bits elsewhere are ignored on parse and emitted as zero; prohibited
//! values (TTL 0x01 and 0x80–0xFF in Default TTL, publish TTL 0x80–0xFE, a Set of a state
//! to a value other than 0/1, Key Refresh transitions other than 2/3, a non-unicast element
//! address, a subscription address that is not a group address) are parse errors.
//!
//! # Opcodes (Mesh Protocol 1.1 assigned numbers)
//!
//! Cross-checked against BlueZ `mesh/cfgmod.h` (read at bluez/bluez 3937a002) and the
//! reference §6.4 table (BlueZ and the Nordic iOS library).
//!
//! | Message | Opcode | | Message | Opcode |
//! |---|---|---|---|---|
//! | AppKey Add | 0x00 | | Model Publication Get | 0x8018 |
//! | AppKey Update | 0x01 | | Model Publication Status | 0x8019 |
//! | Composition Data Status | 0x02 | | Model Publication Virtual Address Set | 0x801A |
//! | Model Publication Set | 0x03 | | Model Subscription Add | 0x801B |
//! | AppKey Delete | 0x8000 | | Model Subscription Delete | 0x801C |
//! | AppKey Get | 0x8001 | | Model Subscription Delete All | 0x801D |
//! | AppKey List | 0x8002 | | Model Subscription Overwrite | 0x801E |
//! | AppKey Status | 0x8003 | | Model Subscription Status | 0x801F |
//! | Composition Data Get | 0x8008 | | Model Subscription Virtual Address Add | 0x8020 |
//! | Beacon Get | 0x8009 | | Model Subscription Virtual Address Delete | 0x8021 |
//! | Beacon Set | 0x800A | | Model Subscription Virtual Address Overwrite | 0x8022 |
//! | Beacon Status | 0x800B | | Network Transmit Get | 0x8023 |
//! | Default TTL Get | 0x800C | | Network Transmit Set | 0x8024 |
//! | Default TTL Set | 0x800D | | Network Transmit Status | 0x8025 |
//! | Default TTL Status | 0x800E | | Relay Get | 0x8026 |
//! | GATT Proxy Get | 0x8012 | | Relay Set | 0x8027 |
//! | GATT Proxy Set | 0x8013 | | Relay Status | 0x8028 |
//! | GATT Proxy Status | 0x8014 | | Model App Bind | 0x803D |
//! | Key Refresh Phase Get | 0x8015 | | Model App Status | 0x803E |
//! | Key Refresh Phase Set | 0x8016 | | Model App Unbind | 0x803F |
//! | Key Refresh Phase Status | 0x8017 | | NetKey Add | 0x8040 |
//! | Node Reset | 0x8049 | | NetKey Delete | 0x8041 |
//! | Node Reset Status | 0x804A | | NetKey Get | 0x8042 |
//! | | | | NetKey List | 0x8043 |
//! | | | | NetKey Status | 0x8044 |
//! | | | | NetKey Update | 0x8045 |

use std::collections::VecDeque;
use std::time::Duration;

use mesh_crypto::{AppKey, NetKey, toolbox};

use super::access::Opcode;
use super::network::NetworkTransmit;
use super::{NetError, Result, address, le16, net_enum};
use crate::time::Instant;

/// The opcodes of the Configuration messages parsed here.
pub mod opcode {
    use super::Opcode;

    /// AppKey Add.
    pub const APPKEY_ADD: Opcode = Opcode(0x00);
    /// AppKey Update.
    pub const APPKEY_UPDATE: Opcode = Opcode(0x01);
    /// Composition Data Status.
    pub const COMPOSITION_DATA_STATUS: Opcode = Opcode(0x02);
    /// Model Publication Set.
    pub const MODEL_PUBLICATION_SET: Opcode = Opcode(0x03);
    /// AppKey Delete.
    pub const APPKEY_DELETE: Opcode = Opcode(0x8000);
    /// AppKey Get.
    pub const APPKEY_GET: Opcode = Opcode(0x8001);
    /// AppKey List.
    pub const APPKEY_LIST: Opcode = Opcode(0x8002);
    /// AppKey Status.
    pub const APPKEY_STATUS: Opcode = Opcode(0x8003);
    /// Composition Data Get.
    pub const COMPOSITION_DATA_GET: Opcode = Opcode(0x8008);
    /// Beacon Get.
    pub const BEACON_GET: Opcode = Opcode(0x8009);
    /// Beacon Set.
    pub const BEACON_SET: Opcode = Opcode(0x800a);
    /// Beacon Status.
    pub const BEACON_STATUS: Opcode = Opcode(0x800b);
    /// Default TTL Get.
    pub const DEFAULT_TTL_GET: Opcode = Opcode(0x800c);
    /// Default TTL Set.
    pub const DEFAULT_TTL_SET: Opcode = Opcode(0x800d);
    /// Default TTL Status.
    pub const DEFAULT_TTL_STATUS: Opcode = Opcode(0x800e);
    /// GATT Proxy Get.
    pub const GATT_PROXY_GET: Opcode = Opcode(0x8012);
    /// GATT Proxy Set.
    pub const GATT_PROXY_SET: Opcode = Opcode(0x8013);
    /// GATT Proxy Status.
    pub const GATT_PROXY_STATUS: Opcode = Opcode(0x8014);
    /// Key Refresh Phase Get.
    pub const KEY_REFRESH_PHASE_GET: Opcode = Opcode(0x8015);
    /// Key Refresh Phase Set.
    pub const KEY_REFRESH_PHASE_SET: Opcode = Opcode(0x8016);
    /// Key Refresh Phase Status.
    pub const KEY_REFRESH_PHASE_STATUS: Opcode = Opcode(0x8017);
    /// Model Publication Get.
    pub const MODEL_PUBLICATION_GET: Opcode = Opcode(0x8018);
    /// Model Publication Status.
    pub const MODEL_PUBLICATION_STATUS: Opcode = Opcode(0x8019);
    /// Model Publication Virtual Address Set.
    pub const MODEL_PUBLICATION_VIRTUAL_SET: Opcode = Opcode(0x801a);
    /// Model Subscription Add.
    pub const MODEL_SUBSCRIPTION_ADD: Opcode = Opcode(0x801b);
    /// Model Subscription Delete.
    pub const MODEL_SUBSCRIPTION_DELETE: Opcode = Opcode(0x801c);
    /// Model Subscription Delete All.
    pub const MODEL_SUBSCRIPTION_DELETE_ALL: Opcode = Opcode(0x801d);
    /// Model Subscription Overwrite.
    pub const MODEL_SUBSCRIPTION_OVERWRITE: Opcode = Opcode(0x801e);
    /// Model Subscription Status.
    pub const MODEL_SUBSCRIPTION_STATUS: Opcode = Opcode(0x801f);
    /// Model Subscription Virtual Address Add.
    pub const MODEL_SUBSCRIPTION_VIRTUAL_ADD: Opcode = Opcode(0x8020);
    /// Model Subscription Virtual Address Delete.
    pub const MODEL_SUBSCRIPTION_VIRTUAL_DELETE: Opcode = Opcode(0x8021);
    /// Model Subscription Virtual Address Overwrite.
    pub const MODEL_SUBSCRIPTION_VIRTUAL_OVERWRITE: Opcode = Opcode(0x8022);
    /// Network Transmit Get.
    pub const NETWORK_TRANSMIT_GET: Opcode = Opcode(0x8023);
    /// Network Transmit Set.
    pub const NETWORK_TRANSMIT_SET: Opcode = Opcode(0x8024);
    /// Network Transmit Status.
    pub const NETWORK_TRANSMIT_STATUS: Opcode = Opcode(0x8025);
    /// Relay Get.
    pub const RELAY_GET: Opcode = Opcode(0x8026);
    /// Relay Set.
    pub const RELAY_SET: Opcode = Opcode(0x8027);
    /// Relay Status.
    pub const RELAY_STATUS: Opcode = Opcode(0x8028);
    /// Model App Bind.
    pub const MODEL_APP_BIND: Opcode = Opcode(0x803d);
    /// Model App Status.
    pub const MODEL_APP_STATUS: Opcode = Opcode(0x803e);
    /// Model App Unbind.
    pub const MODEL_APP_UNBIND: Opcode = Opcode(0x803f);
    /// NetKey Add.
    pub const NETKEY_ADD: Opcode = Opcode(0x8040);
    /// NetKey Delete.
    pub const NETKEY_DELETE: Opcode = Opcode(0x8041);
    /// NetKey Get.
    pub const NETKEY_GET: Opcode = Opcode(0x8042);
    /// NetKey List.
    pub const NETKEY_LIST: Opcode = Opcode(0x8043);
    /// NetKey Status.
    pub const NETKEY_STATUS: Opcode = Opcode(0x8044);
    /// NetKey Update.
    pub const NETKEY_UPDATE: Opcode = Opcode(0x8045);
    /// Node Reset.
    pub const NODE_RESET: Opcode = Opcode(0x8049);
    /// Node Reset Status.
    pub const NODE_RESET_STATUS: Opcode = Opcode(0x804a);

    /// Every opcode above.
    pub const ALL: [Opcode; 49] = [
        APPKEY_ADD,
        APPKEY_UPDATE,
        COMPOSITION_DATA_STATUS,
        MODEL_PUBLICATION_SET,
        APPKEY_DELETE,
        APPKEY_GET,
        APPKEY_LIST,
        APPKEY_STATUS,
        COMPOSITION_DATA_GET,
        BEACON_GET,
        BEACON_SET,
        BEACON_STATUS,
        DEFAULT_TTL_GET,
        DEFAULT_TTL_SET,
        DEFAULT_TTL_STATUS,
        GATT_PROXY_GET,
        GATT_PROXY_SET,
        GATT_PROXY_STATUS,
        KEY_REFRESH_PHASE_GET,
        KEY_REFRESH_PHASE_SET,
        KEY_REFRESH_PHASE_STATUS,
        MODEL_PUBLICATION_GET,
        MODEL_PUBLICATION_STATUS,
        MODEL_PUBLICATION_VIRTUAL_SET,
        MODEL_SUBSCRIPTION_ADD,
        MODEL_SUBSCRIPTION_DELETE,
        MODEL_SUBSCRIPTION_DELETE_ALL,
        MODEL_SUBSCRIPTION_OVERWRITE,
        MODEL_SUBSCRIPTION_STATUS,
        MODEL_SUBSCRIPTION_VIRTUAL_ADD,
        MODEL_SUBSCRIPTION_VIRTUAL_DELETE,
        MODEL_SUBSCRIPTION_VIRTUAL_OVERWRITE,
        NETWORK_TRANSMIT_GET,
        NETWORK_TRANSMIT_SET,
        NETWORK_TRANSMIT_STATUS,
        RELAY_GET,
        RELAY_SET,
        RELAY_STATUS,
        MODEL_APP_BIND,
        MODEL_APP_STATUS,
        MODEL_APP_UNBIND,
        NETKEY_ADD,
        NETKEY_DELETE,
        NETKEY_GET,
        NETKEY_LIST,
        NETKEY_STATUS,
        NETKEY_UPDATE,
        NODE_RESET,
        NODE_RESET_STATUS,
    ];
}

net_enum! {
    /// Status code of a Configuration status message (Mesh Protocol 1.1 Table 4.108; reference
    /// §6.4 lists 0x00–0x11 from the Nordic iOS library; 0x12–0x15 are the 1.1 additions, in
    /// the order of the table: the 22 names run from 0x00 to 0x15, Invalid Bearer last).
    /// Unknown values survive as `ConfigStatus(n)`.
    ConfigStatus(u8) {
        /// Success.
        SUCCESS = 0x00, "Success";
        /// Invalid Address.
        INVALID_ADDRESS = 0x01, "Invalid Address";
        /// Invalid Model.
        INVALID_MODEL = 0x02, "Invalid Model";
        /// Invalid AppKey Index.
        INVALID_APPKEY_INDEX = 0x03, "Invalid AppKey Index";
        /// Invalid NetKey Index.
        INVALID_NETKEY_INDEX = 0x04, "Invalid NetKey Index";
        /// Insufficient Resources.
        INSUFFICIENT_RESOURCES = 0x05, "Insufficient Resources";
        /// Key Index Already Stored.
        KEY_INDEX_ALREADY_STORED = 0x06, "Key Index Already Stored";
        /// Invalid Publish Parameters.
        INVALID_PUBLISH_PARAMETERS = 0x07, "Invalid Publish Parameters";
        /// Not a Subscribe Model.
        NOT_A_SUBSCRIBE_MODEL = 0x08, "Not a Subscribe Model";
        /// Storage Failure.
        STORAGE_FAILURE = 0x09, "Storage Failure";
        /// Feature Not Supported.
        FEATURE_NOT_SUPPORTED = 0x0a, "Feature Not Supported";
        /// Cannot Update.
        CANNOT_UPDATE = 0x0b, "Cannot Update";
        /// Cannot Remove.
        CANNOT_REMOVE = 0x0c, "Cannot Remove";
        /// Cannot Bind.
        CANNOT_BIND = 0x0d, "Cannot Bind";
        /// Temporarily Unable to Change State.
        TEMPORARILY_UNABLE_TO_CHANGE_STATE = 0x0e, "Temporarily Unable to Change State";
        /// Cannot Set.
        CANNOT_SET = 0x0f, "Cannot Set";
        /// Unspecified Error.
        UNSPECIFIED_ERROR = 0x10, "Unspecified Error";
        /// Invalid Binding.
        INVALID_BINDING = 0x11, "Invalid Binding";
        /// Invalid Path Entry.
        INVALID_PATH_ENTRY = 0x12, "Invalid Path Entry";
        /// Cannot Get.
        CANNOT_GET = 0x13, "Cannot Get";
        /// Obsolete Information.
        OBSOLETE_INFORMATION = 0x14, "Obsolete Information";
        /// Invalid Bearer.
        INVALID_BEARER = 0x15, "Invalid Bearer";
    }
}

/// A model identifier: a SIG model (2 octets) or a vendor model (Company ID ‖ model ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModelId {
    /// A Bluetooth SIG model.
    Sig(u16),
    /// A vendor model.
    Vendor {
        /// Company identifier.
        company_id: u16,
        /// Model identifier within the company.
        model_id: u16,
    },
}

impl ModelId {
    /// Configuration Server model.
    pub const CONFIG_SERVER: Self = Self::Sig(0x0000);
    /// Configuration Client model.
    pub const CONFIG_CLIENT: Self = Self::Sig(0x0001);

    /// Parses a model ID that fills `b` exactly (2 or 4 octets).
    pub fn parse(b: &[u8]) -> Result<Self> {
        match b.len() {
            2 => Ok(Self::Sig(le16(b, 0))),
            4 => Ok(Self::Vendor {
                company_id: le16(b, 0),
                model_id: le16(b, 2),
            }),
            n => Err(NetError::BadLength {
                what: "model ID",
                actual: n,
            }),
        }
    }

    /// Appends the 2 or 4 octets.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Self::Sig(m) => out.extend_from_slice(&m.to_le_bytes()),
            Self::Vendor {
                company_id,
                model_id,
            } => {
                out.extend_from_slice(&company_id.to_le_bytes());
                out.extend_from_slice(&model_id.to_le_bytes());
            }
        }
    }
}

/// Packs two key indexes into 3 octets: `first | second << 12`, little-endian.
pub fn pack_key_indexes(first: u16, second: u16) -> [u8; 3] {
    let v = u32::from(first & 0xfff) | (u32::from(second & 0xfff) << 12);
    let b = v.to_le_bytes();
    [b[0], b[1], b[2]]
}

/// Unpacks 3 octets into two key indexes (`first`, `second`).
pub fn unpack_key_indexes(b: [u8; 3]) -> (u16, u16) {
    let v = u32::from_le_bytes([b[0], b[1], b[2], 0]);
    ((v & 0xfff) as u16, (v >> 12) as u16)
}

/// Encodes a list of key indexes: pairs packed in 3 octets, an odd last one in 2 (§4.3.1.1).
pub fn emit_key_index_list(list: &[u16], out: &mut Vec<u8>) {
    for pair in list.chunks(2) {
        match pair {
            [a, b] => out.extend_from_slice(&pack_key_indexes(*a, *b)),
            [a] => out.extend_from_slice(&(a & 0xfff).to_le_bytes()),
            _ => {}
        }
    }
}

/// Decodes a key index list (3 octets per pair, 2 for an odd last one).
pub fn parse_key_index_list(b: &[u8]) -> Result<Vec<u16>> {
    if b.len() % 3 == 1 {
        return Err(NetError::BadLength {
            what: "key index list",
            actual: b.len(),
        });
    }
    let mut out = Vec::new();
    let mut chunks = b.chunks_exact(3);
    for c in &mut chunks {
        let (x, y) = unpack_key_indexes([c[0], c[1], c[2]]);
        out.push(x);
        out.push(y);
    }
    let rest = chunks.remainder();
    if rest.len() == 2 {
        out.push(le16(rest, 0) & 0xfff);
    }
    Ok(out)
}

/// Publication parameters shared by the Publication Set, Virtual Address Set and Status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublishParams {
    /// AppKey index (12 bits).
    pub app_key_index: u16,
    /// Friendship credentials flag.
    pub credential: bool,
    /// Publish TTL: 0x00–0x7F, or 0xFF for the node's default TTL.
    pub ttl: u8,
    /// Publish period: steps (6 bits) and resolution (2 bits, high).
    pub period: u8,
    /// Publish retransmit: count (3 bits, low) and interval steps (5 bits, high).
    pub retransmit: u8,
}

impl PublishParams {
    const LEN: usize = 5;

    fn parse(b: &[u8]) -> Result<Self> {
        let v = le16(b, 0);
        let ttl = b[2];
        if (0x80..=0xfe).contains(&ttl) {
            return Err(NetError::Prohibited {
                what: "publish TTL",
                value: u32::from(ttl),
            });
        }
        Ok(Self {
            app_key_index: v & 0xfff,
            credential: v & 0x1000 != 0,
            ttl,
            period: b[3],
            retransmit: b[4],
        })
    }

    fn emit(&self, out: &mut Vec<u8>) {
        let v = (self.app_key_index & 0xfff) | (u16::from(self.credential) << 12);
        out.extend_from_slice(&v.to_le_bytes());
        out.extend_from_slice(&[self.ttl, self.period, self.retransmit]);
    }
}

/// Feature bits of Composition Data page 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Features(pub u16);

impl Features {
    /// Relay feature supported.
    pub const RELAY: u16 = 1 << 0;
    /// Proxy feature supported.
    pub const PROXY: u16 = 1 << 1;
    /// Friend feature supported.
    pub const FRIEND: u16 = 1 << 2;
    /// Low Power feature supported.
    pub const LOW_POWER: u16 = 1 << 3;

    /// Whether `bit` (one of the constants) is set.
    pub const fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
}

/// One element of Composition Data page 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Element {
    /// GATT Namespace Descriptor location.
    pub location: u16,
    /// SIG model IDs.
    pub sig_models: Vec<u16>,
    /// Vendor models (as [`ModelId::Vendor`]).
    pub vendor_models: Vec<ModelId>,
}

/// Composition Data page 0 (§4.2.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CompositionPage0 {
    /// Company identifier.
    pub cid: u16,
    /// Product identifier.
    pub pid: u16,
    /// Product version identifier.
    pub vid: u16,
    /// Minimum number of replay protection list entries.
    pub crpl: u16,
    /// Supported features.
    pub features: Features,
    /// The elements, primary first.
    pub elements: Vec<Element>,
}

impl CompositionPage0 {
    /// Parses page 0 (the data after the page octet). At least one element is required.
    pub fn parse(b: &[u8]) -> Result<Self> {
        let bad = |actual| NetError::BadLength {
            what: "composition data page 0",
            actual,
        };
        if b.len() < 10 {
            return Err(bad(b.len()));
        }
        let mut p = Self {
            cid: le16(b, 0),
            pid: le16(b, 2),
            vid: le16(b, 4),
            crpl: le16(b, 6),
            features: Features(le16(b, 8)),
            elements: Vec::new(),
        };
        let mut rest = &b[10..];
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(bad(b.len()));
            }
            let location = le16(rest, 0);
            let (ns, nv) = (usize::from(rest[2]), usize::from(rest[3]));
            let need = 4 + 2 * ns + 4 * nv;
            if rest.len() < need {
                return Err(bad(b.len()));
            }
            let sig_models = (0..ns).map(|i| le16(rest, 4 + 2 * i)).collect();
            let vendor_models = (0..nv)
                .map(|i| {
                    let at = 4 + 2 * ns + 4 * i;
                    ModelId::Vendor {
                        company_id: le16(rest, at),
                        model_id: le16(rest, at + 2),
                    }
                })
                .collect();
            p.elements.push(Element {
                location,
                sig_models,
                vendor_models,
            });
            rest = &rest[need..];
        }
        if p.elements.is_empty() {
            return Err(bad(b.len()));
        }
        Ok(p)
    }

    /// Appends page 0 (without the page octet). Lists longer than 255 are truncated.
    pub fn emit(&self, out: &mut Vec<u8>) {
        for v in [self.cid, self.pid, self.vid, self.crpl, self.features.0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for e in &self.elements {
            let sig = &e.sig_models[..e.sig_models.len().min(255)];
            let ven = &e.vendor_models[..e.vendor_models.len().min(255)];
            out.extend_from_slice(&e.location.to_le_bytes());
            out.push(sig.len() as u8);
            out.push(ven.len() as u8);
            for m in sig {
                out.extend_from_slice(&m.to_le_bytes());
            }
            for m in ven {
                match m {
                    ModelId::Vendor { .. } => m.emit(out),
                    ModelId::Sig(id) => ModelId::Vendor {
                        company_id: 0,
                        model_id: *id,
                    }
                    .emit(out),
                }
            }
        }
    }
}

/// A Configuration message (§4.3.2). Requests are sent by the client, status messages by
/// the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // the fields are named after the specification's parameters
pub enum ConfigMessage {
    CompositionDataGet {
        page: u8,
    },
    /// `data` is the raw page; [`CompositionPage0::parse`] decodes page 0.
    CompositionDataStatus {
        page: u8,
        data: Vec<u8>,
    },
    AppKeyAdd {
        net_key_index: u16,
        app_key_index: u16,
        key: AppKey,
    },
    AppKeyUpdate {
        net_key_index: u16,
        app_key_index: u16,
        key: AppKey,
    },
    AppKeyDelete {
        net_key_index: u16,
        app_key_index: u16,
    },
    AppKeyGet {
        net_key_index: u16,
    },
    AppKeyStatus {
        status: ConfigStatus,
        net_key_index: u16,
        app_key_index: u16,
    },
    AppKeyList {
        status: ConfigStatus,
        net_key_index: u16,
        app_key_indexes: Vec<u16>,
    },
    NetKeyAdd {
        net_key_index: u16,
        key: NetKey,
    },
    NetKeyUpdate {
        net_key_index: u16,
        key: NetKey,
    },
    NetKeyDelete {
        net_key_index: u16,
    },
    NetKeyGet,
    NetKeyStatus {
        status: ConfigStatus,
        net_key_index: u16,
    },
    NetKeyList {
        net_key_indexes: Vec<u16>,
    },
    ModelAppBind {
        element: u16,
        app_key_index: u16,
        model: ModelId,
    },
    ModelAppUnbind {
        element: u16,
        app_key_index: u16,
        model: ModelId,
    },
    ModelAppStatus {
        status: ConfigStatus,
        element: u16,
        app_key_index: u16,
        model: ModelId,
    },
    ModelPublicationGet {
        element: u16,
        model: ModelId,
    },
    ModelPublicationSet {
        element: u16,
        address: u16,
        publish: PublishParams,
        model: ModelId,
    },
    ModelPublicationVirtualSet {
        element: u16,
        label: [u8; 16],
        publish: PublishParams,
        model: ModelId,
    },
    ModelPublicationStatus {
        status: ConfigStatus,
        element: u16,
        address: u16,
        publish: PublishParams,
        model: ModelId,
    },
    ModelSubscriptionAdd {
        element: u16,
        address: u16,
        model: ModelId,
    },
    ModelSubscriptionDelete {
        element: u16,
        address: u16,
        model: ModelId,
    },
    ModelSubscriptionOverwrite {
        element: u16,
        address: u16,
        model: ModelId,
    },
    ModelSubscriptionDeleteAll {
        element: u16,
        model: ModelId,
    },
    ModelSubscriptionVirtualAdd {
        element: u16,
        label: [u8; 16],
        model: ModelId,
    },
    ModelSubscriptionVirtualDelete {
        element: u16,
        label: [u8; 16],
        model: ModelId,
    },
    ModelSubscriptionVirtualOverwrite {
        element: u16,
        label: [u8; 16],
        model: ModelId,
    },
    ModelSubscriptionStatus {
        status: ConfigStatus,
        element: u16,
        address: u16,
        model: ModelId,
    },
    DefaultTtlGet,
    DefaultTtlSet {
        ttl: u8,
    },
    DefaultTtlStatus {
        ttl: u8,
    },
    /// `relay`: 0 disabled, 1 enabled (2 = not supported only in the status).
    RelayGet,
    RelaySet {
        relay: u8,
        retransmit: NetworkTransmit,
    },
    RelayStatus {
        relay: u8,
        retransmit: NetworkTransmit,
    },
    GattProxyGet,
    GattProxySet {
        state: u8,
    },
    GattProxyStatus {
        state: u8,
    },
    BeaconGet,
    BeaconSet {
        state: u8,
    },
    BeaconStatus {
        state: u8,
    },
    NetworkTransmitGet,
    NetworkTransmitSet {
        transmit: NetworkTransmit,
    },
    NetworkTransmitStatus {
        transmit: NetworkTransmit,
    },
    NodeReset,
    NodeResetStatus,
    KeyRefreshPhaseGet {
        net_key_index: u16,
    },
    /// `transition`: 0x02 use the new keys, 0x03 revoke the old ones.
    KeyRefreshPhaseSet {
        net_key_index: u16,
        transition: u8,
    },
    /// `phase`: 0 normal, 1 distributing keys, 2 using new keys.
    KeyRefreshPhaseStatus {
        status: ConfigStatus,
        net_key_index: u16,
        phase: u8,
    },
}

/// A cursor over message parameters that checks every length.
struct Reader<'a> {
    b: &'a [u8],
    what: &'static str,
    len: usize,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8], what: &'static str) -> Self {
        Self {
            b,
            what,
            len: b.len(),
        }
    }
    fn bad(&self) -> NetError {
        NetError::BadLength {
            what: self.what,
            actual: self.len,
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(self.bad());
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(le16(self.take(2)?, 0))
    }
    fn key_index(&mut self) -> Result<u16> {
        Ok(self.u16()? & 0xfff)
    }
    fn pair(&mut self) -> Result<(u16, u16)> {
        let t = self.take(3)?;
        Ok(unpack_key_indexes([t[0], t[1], t[2]]))
    }
    fn arr16(&mut self) -> Result<[u8; 16]> {
        let t = self.take(16)?;
        let mut a = [0; 16];
        a.copy_from_slice(t);
        Ok(a)
    }
    fn element(&mut self) -> Result<u16> {
        let a = self.u16()?;
        if !address::is_unicast(a) {
            return Err(NetError::Prohibited {
                what: "element address",
                value: u32::from(a),
            });
        }
        Ok(a)
    }
    /// The model ID that takes the rest.
    fn model(&mut self) -> Result<ModelId> {
        let m = ModelId::parse(self.b).map_err(|_| self.bad())?;
        self.b = &[];
        Ok(m)
    }
    fn status(&mut self) -> Result<ConfigStatus> {
        Ok(ConfigStatus(self.u8()?))
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.b)
    }
    fn end<T>(&self, v: T) -> Result<T> {
        if self.b.is_empty() {
            Ok(v)
        } else {
            Err(self.bad())
        }
    }
}

fn sub_address(a: u16) -> Result<u16> {
    if address::is_group(a) && a != address::ALL_NODES {
        Ok(a)
    } else {
        Err(NetError::Prohibited {
            what: "subscription address",
            value: u32::from(a),
        })
    }
}

fn on_off(what: &'static str, v: u8, max: u8) -> Result<u8> {
    if v <= max {
        Ok(v)
    } else {
        Err(NetError::Prohibited {
            what,
            value: u32::from(v),
        })
    }
}

fn default_ttl(v: u8) -> Result<u8> {
    if v == 1 || v > 0x7f {
        Err(NetError::Prohibited {
            what: "default TTL",
            value: u32::from(v),
        })
    } else {
        Ok(v)
    }
}

impl ConfigMessage {
    /// Parses the parameters of a message with `opcode`.
    pub fn parse(opcode: Opcode, params: &[u8]) -> Result<Self> {
        use crate::net::config::opcode as op;
        use ConfigMessage as M;
        let mut r = Reader::new(params, "config message");
        let m = match opcode {
            op::COMPOSITION_DATA_GET => M::CompositionDataGet { page: r.u8()? },
            op::COMPOSITION_DATA_STATUS => M::CompositionDataStatus {
                page: r.u8()?,
                data: r.rest().to_vec(),
            },
            op::APPKEY_ADD | op::APPKEY_UPDATE => {
                let (net_key_index, app_key_index) = r.pair()?;
                let key = AppKey::from_bytes(r.arr16()?);
                if opcode == op::APPKEY_ADD {
                    M::AppKeyAdd {
                        net_key_index,
                        app_key_index,
                        key,
                    }
                } else {
                    M::AppKeyUpdate {
                        net_key_index,
                        app_key_index,
                        key,
                    }
                }
            }
            op::APPKEY_DELETE => {
                let (net_key_index, app_key_index) = r.pair()?;
                M::AppKeyDelete {
                    net_key_index,
                    app_key_index,
                }
            }
            op::APPKEY_GET => M::AppKeyGet {
                net_key_index: r.key_index()?,
            },
            op::APPKEY_STATUS => {
                let status = r.status()?;
                let (net_key_index, app_key_index) = r.pair()?;
                M::AppKeyStatus {
                    status,
                    net_key_index,
                    app_key_index,
                }
            }
            op::APPKEY_LIST => M::AppKeyList {
                status: r.status()?,
                net_key_index: r.key_index()?,
                app_key_indexes: parse_key_index_list(r.rest())?,
            },
            op::NETKEY_ADD | op::NETKEY_UPDATE => {
                let net_key_index = r.key_index()?;
                let key = NetKey::from_bytes(r.arr16()?);
                if opcode == op::NETKEY_ADD {
                    M::NetKeyAdd { net_key_index, key }
                } else {
                    M::NetKeyUpdate { net_key_index, key }
                }
            }
            op::NETKEY_DELETE => M::NetKeyDelete {
                net_key_index: r.key_index()?,
            },
            op::NETKEY_GET => M::NetKeyGet,
            op::NETKEY_STATUS => M::NetKeyStatus {
                status: r.status()?,
                net_key_index: r.key_index()?,
            },
            op::NETKEY_LIST => M::NetKeyList {
                net_key_indexes: parse_key_index_list(r.rest())?,
            },
            op::MODEL_APP_BIND | op::MODEL_APP_UNBIND => {
                let element = r.element()?;
                let app_key_index = r.key_index()?;
                let model = r.model()?;
                if opcode == op::MODEL_APP_BIND {
                    M::ModelAppBind {
                        element,
                        app_key_index,
                        model,
                    }
                } else {
                    M::ModelAppUnbind {
                        element,
                        app_key_index,
                        model,
                    }
                }
            }
            op::MODEL_APP_STATUS => M::ModelAppStatus {
                status: r.status()?,
                element: r.element()?,
                app_key_index: r.key_index()?,
                model: r.model()?,
            },
            op::MODEL_PUBLICATION_GET => M::ModelPublicationGet {
                element: r.element()?,
                model: r.model()?,
            },
            op::MODEL_PUBLICATION_SET => M::ModelPublicationSet {
                element: r.element()?,
                address: r.u16()?,
                publish: PublishParams::parse(r.take(PublishParams::LEN)?)?,
                model: r.model()?,
            },
            op::MODEL_PUBLICATION_VIRTUAL_SET => M::ModelPublicationVirtualSet {
                element: r.element()?,
                label: r.arr16()?,
                publish: PublishParams::parse(r.take(PublishParams::LEN)?)?,
                model: r.model()?,
            },
            op::MODEL_PUBLICATION_STATUS => M::ModelPublicationStatus {
                status: r.status()?,
                element: r.element()?,
                address: r.u16()?,
                publish: PublishParams::parse(r.take(PublishParams::LEN)?)?,
                model: r.model()?,
            },
            op::MODEL_SUBSCRIPTION_ADD
            | op::MODEL_SUBSCRIPTION_DELETE
            | op::MODEL_SUBSCRIPTION_OVERWRITE => {
                let element = r.element()?;
                let address = sub_address(r.u16()?)?;
                let model = r.model()?;
                match opcode {
                    op::MODEL_SUBSCRIPTION_ADD => M::ModelSubscriptionAdd {
                        element,
                        address,
                        model,
                    },
                    op::MODEL_SUBSCRIPTION_DELETE => M::ModelSubscriptionDelete {
                        element,
                        address,
                        model,
                    },
                    _ => M::ModelSubscriptionOverwrite {
                        element,
                        address,
                        model,
                    },
                }
            }
            op::MODEL_SUBSCRIPTION_DELETE_ALL => M::ModelSubscriptionDeleteAll {
                element: r.element()?,
                model: r.model()?,
            },
            op::MODEL_SUBSCRIPTION_VIRTUAL_ADD
            | op::MODEL_SUBSCRIPTION_VIRTUAL_DELETE
            | op::MODEL_SUBSCRIPTION_VIRTUAL_OVERWRITE => {
                let element = r.element()?;
                let label = r.arr16()?;
                let model = r.model()?;
                match opcode {
                    op::MODEL_SUBSCRIPTION_VIRTUAL_ADD => M::ModelSubscriptionVirtualAdd {
                        element,
                        label,
                        model,
                    },
                    op::MODEL_SUBSCRIPTION_VIRTUAL_DELETE => M::ModelSubscriptionVirtualDelete {
                        element,
                        label,
                        model,
                    },
                    _ => M::ModelSubscriptionVirtualOverwrite {
                        element,
                        label,
                        model,
                    },
                }
            }
            op::MODEL_SUBSCRIPTION_STATUS => M::ModelSubscriptionStatus {
                status: r.status()?,
                element: r.element()?,
                address: r.u16()?,
                model: r.model()?,
            },
            op::DEFAULT_TTL_GET => M::DefaultTtlGet,
            op::DEFAULT_TTL_SET => M::DefaultTtlSet {
                ttl: default_ttl(r.u8()?)?,
            },
            op::DEFAULT_TTL_STATUS => M::DefaultTtlStatus {
                ttl: default_ttl(r.u8()?)?,
            },
            op::RELAY_GET => M::RelayGet,
            op::RELAY_SET => M::RelaySet {
                relay: on_off("relay", r.u8()?, 1)?,
                retransmit: NetworkTransmit::from_byte(r.u8()?),
            },
            op::RELAY_STATUS => M::RelayStatus {
                relay: on_off("relay", r.u8()?, 2)?,
                retransmit: NetworkTransmit::from_byte(r.u8()?),
            },
            op::GATT_PROXY_GET => M::GattProxyGet,
            op::GATT_PROXY_SET => M::GattProxySet {
                state: on_off("GATT proxy", r.u8()?, 1)?,
            },
            op::GATT_PROXY_STATUS => M::GattProxyStatus {
                state: on_off("GATT proxy", r.u8()?, 2)?,
            },
            op::BEACON_GET => M::BeaconGet,
            op::BEACON_SET => M::BeaconSet {
                state: on_off("beacon", r.u8()?, 1)?,
            },
            op::BEACON_STATUS => M::BeaconStatus {
                state: on_off("beacon", r.u8()?, 1)?,
            },
            op::NETWORK_TRANSMIT_GET => M::NetworkTransmitGet,
            op::NETWORK_TRANSMIT_SET => M::NetworkTransmitSet {
                transmit: NetworkTransmit::from_byte(r.u8()?),
            },
            op::NETWORK_TRANSMIT_STATUS => M::NetworkTransmitStatus {
                transmit: NetworkTransmit::from_byte(r.u8()?),
            },
            op::NODE_RESET => M::NodeReset,
            op::NODE_RESET_STATUS => M::NodeResetStatus,
            op::KEY_REFRESH_PHASE_GET => M::KeyRefreshPhaseGet {
                net_key_index: r.key_index()?,
            },
            op::KEY_REFRESH_PHASE_SET => {
                let net_key_index = r.key_index()?;
                let transition = r.u8()?;
                if !(2..=3).contains(&transition) {
                    return Err(NetError::Prohibited {
                        what: "key refresh transition",
                        value: u32::from(transition),
                    });
                }
                M::KeyRefreshPhaseSet {
                    net_key_index,
                    transition,
                }
            }
            op::KEY_REFRESH_PHASE_STATUS => M::KeyRefreshPhaseStatus {
                status: r.status()?,
                net_key_index: r.key_index()?,
                phase: on_off("key refresh phase", r.u8()?, 2)?,
            },
            other => return Err(NetError::UnknownOpcode(other.0)),
        };
        r.end(m)
    }

    /// Parses an access PDU (opcode ‖ parameters).
    pub fn parse_pdu(pdu: &[u8]) -> Result<Self> {
        let (opcode, params) = Opcode::parse(pdu)?;
        Self::parse(opcode, params)
    }

    /// The message's opcode.
    pub fn opcode(&self) -> Opcode {
        use crate::net::config::opcode as op;
        use ConfigMessage as M;
        match self {
            M::CompositionDataGet { .. } => op::COMPOSITION_DATA_GET,
            M::CompositionDataStatus { .. } => op::COMPOSITION_DATA_STATUS,
            M::AppKeyAdd { .. } => op::APPKEY_ADD,
            M::AppKeyUpdate { .. } => op::APPKEY_UPDATE,
            M::AppKeyDelete { .. } => op::APPKEY_DELETE,
            M::AppKeyGet { .. } => op::APPKEY_GET,
            M::AppKeyStatus { .. } => op::APPKEY_STATUS,
            M::AppKeyList { .. } => op::APPKEY_LIST,
            M::NetKeyAdd { .. } => op::NETKEY_ADD,
            M::NetKeyUpdate { .. } => op::NETKEY_UPDATE,
            M::NetKeyDelete { .. } => op::NETKEY_DELETE,
            M::NetKeyGet => op::NETKEY_GET,
            M::NetKeyStatus { .. } => op::NETKEY_STATUS,
            M::NetKeyList { .. } => op::NETKEY_LIST,
            M::ModelAppBind { .. } => op::MODEL_APP_BIND,
            M::ModelAppUnbind { .. } => op::MODEL_APP_UNBIND,
            M::ModelAppStatus { .. } => op::MODEL_APP_STATUS,
            M::ModelPublicationGet { .. } => op::MODEL_PUBLICATION_GET,
            M::ModelPublicationSet { .. } => op::MODEL_PUBLICATION_SET,
            M::ModelPublicationVirtualSet { .. } => op::MODEL_PUBLICATION_VIRTUAL_SET,
            M::ModelPublicationStatus { .. } => op::MODEL_PUBLICATION_STATUS,
            M::ModelSubscriptionAdd { .. } => op::MODEL_SUBSCRIPTION_ADD,
            M::ModelSubscriptionDelete { .. } => op::MODEL_SUBSCRIPTION_DELETE,
            M::ModelSubscriptionOverwrite { .. } => op::MODEL_SUBSCRIPTION_OVERWRITE,
            M::ModelSubscriptionDeleteAll { .. } => op::MODEL_SUBSCRIPTION_DELETE_ALL,
            M::ModelSubscriptionVirtualAdd { .. } => op::MODEL_SUBSCRIPTION_VIRTUAL_ADD,
            M::ModelSubscriptionVirtualDelete { .. } => op::MODEL_SUBSCRIPTION_VIRTUAL_DELETE,
            M::ModelSubscriptionVirtualOverwrite { .. } => op::MODEL_SUBSCRIPTION_VIRTUAL_OVERWRITE,
            M::ModelSubscriptionStatus { .. } => op::MODEL_SUBSCRIPTION_STATUS,
            M::DefaultTtlGet => op::DEFAULT_TTL_GET,
            M::DefaultTtlSet { .. } => op::DEFAULT_TTL_SET,
            M::DefaultTtlStatus { .. } => op::DEFAULT_TTL_STATUS,
            M::RelayGet => op::RELAY_GET,
            M::RelaySet { .. } => op::RELAY_SET,
            M::RelayStatus { .. } => op::RELAY_STATUS,
            M::GattProxyGet => op::GATT_PROXY_GET,
            M::GattProxySet { .. } => op::GATT_PROXY_SET,
            M::GattProxyStatus { .. } => op::GATT_PROXY_STATUS,
            M::BeaconGet => op::BEACON_GET,
            M::BeaconSet { .. } => op::BEACON_SET,
            M::BeaconStatus { .. } => op::BEACON_STATUS,
            M::NetworkTransmitGet => op::NETWORK_TRANSMIT_GET,
            M::NetworkTransmitSet { .. } => op::NETWORK_TRANSMIT_SET,
            M::NetworkTransmitStatus { .. } => op::NETWORK_TRANSMIT_STATUS,
            M::NodeReset => op::NODE_RESET,
            M::NodeResetStatus => op::NODE_RESET_STATUS,
            M::KeyRefreshPhaseGet { .. } => op::KEY_REFRESH_PHASE_GET,
            M::KeyRefreshPhaseSet { .. } => op::KEY_REFRESH_PHASE_SET,
            M::KeyRefreshPhaseStatus { .. } => op::KEY_REFRESH_PHASE_STATUS,
        }
    }

    /// Appends the parameters (without the opcode).
    pub fn emit_params(&self, out: &mut Vec<u8>) {
        use ConfigMessage as M;
        let u16le = |out: &mut Vec<u8>, v: u16| out.extend_from_slice(&v.to_le_bytes());
        let idx = |out: &mut Vec<u8>, v: u16| out.extend_from_slice(&(v & 0xfff).to_le_bytes());
        match self {
            M::CompositionDataGet { page } => out.push(*page),
            M::CompositionDataStatus { page, data } => {
                out.push(*page);
                out.extend_from_slice(data);
            }
            M::AppKeyAdd {
                net_key_index,
                app_key_index,
                key,
            }
            | M::AppKeyUpdate {
                net_key_index,
                app_key_index,
                key,
            } => {
                out.extend_from_slice(&pack_key_indexes(*net_key_index, *app_key_index));
                out.extend_from_slice(key.expose_secret());
            }
            M::AppKeyDelete {
                net_key_index,
                app_key_index,
            } => out.extend_from_slice(&pack_key_indexes(*net_key_index, *app_key_index)),
            M::AppKeyGet { net_key_index }
            | M::NetKeyDelete { net_key_index }
            | M::KeyRefreshPhaseGet { net_key_index } => idx(out, *net_key_index),
            M::AppKeyStatus {
                status,
                net_key_index,
                app_key_index,
            } => {
                out.push(status.0);
                out.extend_from_slice(&pack_key_indexes(*net_key_index, *app_key_index));
            }
            M::AppKeyList {
                status,
                net_key_index,
                app_key_indexes,
            } => {
                out.push(status.0);
                idx(out, *net_key_index);
                emit_key_index_list(app_key_indexes, out);
            }
            M::NetKeyAdd { net_key_index, key } | M::NetKeyUpdate { net_key_index, key } => {
                idx(out, *net_key_index);
                out.extend_from_slice(key.expose_secret());
            }
            M::NetKeyGet
            | M::DefaultTtlGet
            | M::RelayGet
            | M::GattProxyGet
            | M::BeaconGet
            | M::NetworkTransmitGet
            | M::NodeReset
            | M::NodeResetStatus => {}
            M::NetKeyStatus {
                status,
                net_key_index,
            } => {
                out.push(status.0);
                idx(out, *net_key_index);
            }
            M::NetKeyList { net_key_indexes } => emit_key_index_list(net_key_indexes, out),
            M::ModelAppBind {
                element,
                app_key_index,
                model,
            }
            | M::ModelAppUnbind {
                element,
                app_key_index,
                model,
            } => {
                u16le(out, *element);
                idx(out, *app_key_index);
                model.emit(out);
            }
            M::ModelAppStatus {
                status,
                element,
                app_key_index,
                model,
            } => {
                out.push(status.0);
                u16le(out, *element);
                idx(out, *app_key_index);
                model.emit(out);
            }
            M::ModelPublicationGet { element, model }
            | M::ModelSubscriptionDeleteAll { element, model } => {
                u16le(out, *element);
                model.emit(out);
            }
            M::ModelPublicationSet {
                element,
                address,
                publish,
                model,
            } => {
                u16le(out, *element);
                u16le(out, *address);
                publish.emit(out);
                model.emit(out);
            }
            M::ModelPublicationVirtualSet {
                element,
                label,
                publish,
                model,
            } => {
                u16le(out, *element);
                out.extend_from_slice(label);
                publish.emit(out);
                model.emit(out);
            }
            M::ModelPublicationStatus {
                status,
                element,
                address,
                publish,
                model,
            } => {
                out.push(status.0);
                u16le(out, *element);
                u16le(out, *address);
                publish.emit(out);
                model.emit(out);
            }
            M::ModelSubscriptionAdd {
                element,
                address,
                model,
            }
            | M::ModelSubscriptionDelete {
                element,
                address,
                model,
            }
            | M::ModelSubscriptionOverwrite {
                element,
                address,
                model,
            } => {
                u16le(out, *element);
                u16le(out, *address);
                model.emit(out);
            }
            M::ModelSubscriptionVirtualAdd {
                element,
                label,
                model,
            }
            | M::ModelSubscriptionVirtualDelete {
                element,
                label,
                model,
            }
            | M::ModelSubscriptionVirtualOverwrite {
                element,
                label,
                model,
            } => {
                u16le(out, *element);
                out.extend_from_slice(label);
                model.emit(out);
            }
            M::ModelSubscriptionStatus {
                status,
                element,
                address,
                model,
            } => {
                out.push(status.0);
                u16le(out, *element);
                u16le(out, *address);
                model.emit(out);
            }
            M::DefaultTtlSet { ttl } | M::DefaultTtlStatus { ttl } => out.push(*ttl),
            M::RelaySet { relay, retransmit } | M::RelayStatus { relay, retransmit } => {
                out.push(*relay);
                out.push(retransmit.to_byte());
            }
            M::GattProxySet { state }
            | M::GattProxyStatus { state }
            | M::BeaconSet { state }
            | M::BeaconStatus { state } => out.push(*state),
            M::NetworkTransmitSet { transmit } | M::NetworkTransmitStatus { transmit } => {
                out.push(transmit.to_byte());
            }
            M::KeyRefreshPhaseSet {
                net_key_index,
                transition,
            } => {
                idx(out, *net_key_index);
                out.push(*transition);
            }
            M::KeyRefreshPhaseStatus {
                status,
                net_key_index,
                phase,
            } => {
                out.push(status.0);
                idx(out, *net_key_index);
                out.push(*phase);
            }
        }
    }

    /// The access PDU: opcode ‖ parameters.
    pub fn to_pdu(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.opcode().emit(&mut v);
        self.emit_params(&mut v);
        v
    }

    /// The status code of a status message that carries one.
    pub fn status(&self) -> Option<ConfigStatus> {
        use ConfigMessage as M;
        match self {
            M::AppKeyStatus { status, .. }
            | M::AppKeyList { status, .. }
            | M::NetKeyStatus { status, .. }
            | M::ModelAppStatus { status, .. }
            | M::ModelPublicationStatus { status, .. }
            | M::ModelSubscriptionStatus { status, .. }
            | M::KeyRefreshPhaseStatus { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The opcode of the status that answers this request, or `None` for a status message.
    pub fn response_opcode(&self) -> Option<Opcode> {
        use crate::net::config::opcode as op;
        use ConfigMessage as M;
        Some(match self {
            M::CompositionDataGet { .. } => op::COMPOSITION_DATA_STATUS,
            M::AppKeyAdd { .. } | M::AppKeyUpdate { .. } | M::AppKeyDelete { .. } => {
                op::APPKEY_STATUS
            }
            M::AppKeyGet { .. } => op::APPKEY_LIST,
            M::NetKeyAdd { .. } | M::NetKeyUpdate { .. } | M::NetKeyDelete { .. } => {
                op::NETKEY_STATUS
            }
            M::NetKeyGet => op::NETKEY_LIST,
            M::ModelAppBind { .. } | M::ModelAppUnbind { .. } => op::MODEL_APP_STATUS,
            M::ModelPublicationGet { .. }
            | M::ModelPublicationSet { .. }
            | M::ModelPublicationVirtualSet { .. } => op::MODEL_PUBLICATION_STATUS,
            M::ModelSubscriptionAdd { .. }
            | M::ModelSubscriptionDelete { .. }
            | M::ModelSubscriptionOverwrite { .. }
            | M::ModelSubscriptionDeleteAll { .. }
            | M::ModelSubscriptionVirtualAdd { .. }
            | M::ModelSubscriptionVirtualDelete { .. }
            | M::ModelSubscriptionVirtualOverwrite { .. } => op::MODEL_SUBSCRIPTION_STATUS,
            M::DefaultTtlGet | M::DefaultTtlSet { .. } => op::DEFAULT_TTL_STATUS,
            M::RelayGet | M::RelaySet { .. } => op::RELAY_STATUS,
            M::GattProxyGet | M::GattProxySet { .. } => op::GATT_PROXY_STATUS,
            M::BeaconGet | M::BeaconSet { .. } => op::BEACON_STATUS,
            M::NetworkTransmitGet | M::NetworkTransmitSet { .. } => op::NETWORK_TRANSMIT_STATUS,
            M::NodeReset => op::NODE_RESET_STATUS,
            M::KeyRefreshPhaseGet { .. } | M::KeyRefreshPhaseSet { .. } => {
                op::KEY_REFRESH_PHASE_STATUS
            }
            _ => return None,
        })
    }

    /// Whether `response` answers this request: the right status opcode and the same
    /// identifying fields (key indexes; element address and model; subscription address).
    pub fn is_answered_by(&self, response: &ConfigMessage) -> bool {
        use ConfigMessage as M;
        if self.response_opcode() != Some(response.opcode()) {
            return false;
        }
        match (self, response) {
            (
                M::AppKeyAdd {
                    net_key_index: n,
                    app_key_index: a,
                    ..
                }
                | M::AppKeyUpdate {
                    net_key_index: n,
                    app_key_index: a,
                    ..
                }
                | M::AppKeyDelete {
                    net_key_index: n,
                    app_key_index: a,
                },
                M::AppKeyStatus {
                    net_key_index,
                    app_key_index,
                    ..
                },
            ) => n == net_key_index && a == app_key_index,
            (M::AppKeyGet { net_key_index: n }, M::AppKeyList { net_key_index, .. }) => {
                n == net_key_index
            }
            (
                M::NetKeyAdd {
                    net_key_index: n, ..
                }
                | M::NetKeyUpdate {
                    net_key_index: n, ..
                }
                | M::NetKeyDelete { net_key_index: n },
                M::NetKeyStatus { net_key_index, .. },
            ) => n == net_key_index,
            (
                M::ModelAppBind {
                    element: e,
                    app_key_index: a,
                    model: m,
                }
                | M::ModelAppUnbind {
                    element: e,
                    app_key_index: a,
                    model: m,
                },
                M::ModelAppStatus {
                    element,
                    app_key_index,
                    model,
                    ..
                },
            ) => e == element && a == app_key_index && m == model,
            (
                M::ModelPublicationGet {
                    element: e,
                    model: m,
                }
                | M::ModelPublicationSet {
                    element: e,
                    model: m,
                    ..
                }
                | M::ModelPublicationVirtualSet {
                    element: e,
                    model: m,
                    ..
                },
                M::ModelPublicationStatus { element, model, .. },
            ) => e == element && m == model,
            (
                M::ModelSubscriptionAdd {
                    element: e,
                    address: a,
                    model: m,
                }
                | M::ModelSubscriptionDelete {
                    element: e,
                    address: a,
                    model: m,
                }
                | M::ModelSubscriptionOverwrite {
                    element: e,
                    address: a,
                    model: m,
                },
                M::ModelSubscriptionStatus {
                    element,
                    address,
                    model,
                    ..
                },
            ) => e == element && a == address && m == model,
            (
                M::ModelSubscriptionVirtualAdd {
                    element: e,
                    label,
                    model: m,
                }
                | M::ModelSubscriptionVirtualDelete {
                    element: e,
                    label,
                    model: m,
                }
                | M::ModelSubscriptionVirtualOverwrite {
                    element: e,
                    label,
                    model: m,
                },
                M::ModelSubscriptionStatus {
                    element,
                    address,
                    model,
                    ..
                },
            ) => e == element && toolbox::virtual_address(label) == *address && m == model,
            (
                M::ModelSubscriptionDeleteAll {
                    element: e,
                    model: m,
                },
                M::ModelSubscriptionStatus { element, model, .. },
            ) => e == element && m == model,
            (
                M::KeyRefreshPhaseGet { net_key_index: n }
                | M::KeyRefreshPhaseSet {
                    net_key_index: n, ..
                },
                M::KeyRefreshPhaseStatus { net_key_index, .. },
            ) => n == net_key_index,
            // The remaining statuses carry nothing that identifies the request.
            _ => true,
        }
    }
}

/// Settings of the [`ConfigClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigClientConfig {
    /// How long to wait after each attempt: the request is sent once per entry and given up
    /// when the last wait ends. Default 2 s, 4 s, 8 s (3 attempts, 14 s in all).
    pub timeouts: Vec<Duration>,
}

impl Default for ConfigClientConfig {
    fn default() -> Self {
        Self {
            timeouts: vec![
                Duration::from_secs(2),
                Duration::from_secs(4),
                Duration::from_secs(8),
            ],
        }
    }
}

/// Identifies one request of a [`ConfigClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// A request to send now: the caller sends `access_pdu` to `dst` with the device key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigTransmit {
    /// Which request.
    pub id: RequestId,
    /// The node's primary element address.
    pub dst: u16,
    /// The access PDU.
    pub access_pdu: Vec<u8>,
    /// 1 for the first transmission, then 2, 3, ...
    pub attempt: usize,
}

/// What the [`ConfigClient`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigEvent {
    /// The status that answers a request.
    Response {
        /// Which request.
        id: RequestId,
        /// Who answered.
        src: u16,
        /// The status message.
        message: ConfigMessage,
    },
    /// No answer after every attempt.
    TimedOut {
        /// Which request.
        id: RequestId,
        /// The node that did not answer.
        dst: u16,
    },
}

#[derive(Debug)]
struct Pending {
    id: RequestId,
    dst: u16,
    message: ConfigMessage,
    attempts: usize,
    deadline: Option<Instant>,
}

/// The Configuration client's request/response matcher (sans-IO). One request per node is
/// in flight at a time (a Configuration Server answers in order, and two identical requests
/// would be indistinguishable); later ones wait in a queue.
#[derive(Debug, Default)]
pub struct ConfigClient {
    config: ConfigClientConfig,
    next_id: u64,
    pending: Vec<Pending>,
    transmits: VecDeque<ConfigTransmit>,
    events: VecDeque<ConfigEvent>,
}

impl ConfigClient {
    /// A client with these timeouts.
    pub fn new(config: ConfigClientConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Queues `message` for the node at `dst`. Errors: `message` is a status, not a request;
    /// `dst` is not unicast; no timeouts configured.
    pub fn request(&mut self, now: Instant, dst: u16, message: ConfigMessage) -> Result<RequestId> {
        if message.response_opcode().is_none() {
            return Err(NetError::InvalidArgument(
                "a status message is not a request",
            ));
        }
        if !address::is_unicast(dst) {
            return Err(NetError::InvalidArgument(
                "a request goes to a unicast address",
            ));
        }
        if self.config.timeouts.is_empty() {
            return Err(NetError::InvalidArgument("no request timeouts configured"));
        }
        self.next_id += 1;
        let id = RequestId(self.next_id);
        self.pending.push(Pending {
            id,
            dst,
            message,
            attempts: 0,
            deadline: None,
        });
        self.start(now);
        Ok(id)
    }

    /// Forgets a request (no event). Returns whether it was pending.
    pub fn cancel(&mut self, now: Instant, id: RequestId) -> bool {
        let before = self.pending.len();
        self.pending.retain(|p| p.id != id);
        let found = self.pending.len() != before;
        self.start(now);
        found
    }

    /// Sends the first attempt of every request that is first in line for its node.
    fn start(&mut self, now: Instant) {
        let mut busy: Vec<u16> = self
            .pending
            .iter()
            .filter(|p| p.attempts > 0)
            .map(|p| p.dst)
            .collect();
        for i in 0..self.pending.len() {
            let dst = self.pending[i].dst;
            if self.pending[i].attempts > 0 || busy.contains(&dst) {
                continue;
            }
            busy.push(dst);
            self.send(now, i);
        }
    }

    fn send(&mut self, now: Instant, i: usize) {
        let p = &mut self.pending[i];
        let wait = self.config.timeouts[p.attempts.min(self.config.timeouts.len() - 1)];
        p.attempts += 1;
        p.deadline = Some(now + wait);
        self.transmits.push_back(ConfigTransmit {
            id: p.id,
            dst: p.dst,
            access_pdu: p.message.to_pdu(),
            attempt: p.attempts,
        });
    }

    /// Handles an access message received from `src` with a device key. Returns whether it
    /// answered a request; anything else (other opcodes, unparsable messages, statuses that
    /// match no request) is ignored.
    pub fn handle_message(&mut self, now: Instant, src: u16, access_pdu: &[u8]) -> bool {
        let Ok(message) = ConfigMessage::parse_pdu(access_pdu) else {
            return false;
        };
        let Some(i) = self
            .pending
            .iter()
            .position(|p| p.attempts > 0 && p.dst == src && p.message.is_answered_by(&message))
        else {
            return false;
        };
        let p = self.pending.remove(i);
        self.events.push_back(ConfigEvent::Response {
            id: p.id,
            src,
            message,
        });
        self.start(now);
        true
    }

    /// Retransmits or gives up the requests whose wait ended; a spurious call is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.pending.len() {
            let due = self.pending[i].deadline.is_some_and(|d| d <= now);
            if !due {
                i += 1;
                continue;
            }
            if self.pending[i].attempts >= self.config.timeouts.len() {
                let p = self.pending.remove(i);
                self.events.push_back(ConfigEvent::TimedOut {
                    id: p.id,
                    dst: p.dst,
                });
                continue;
            }
            self.send(now, i);
            i += 1;
        }
        self.start(now);
    }

    /// The next request to send.
    pub fn poll_transmit(&mut self) -> Option<ConfigTransmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ConfigEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.iter().filter_map(|p| p.deadline).min()
    }

    /// Requests not yet answered (in flight or queued).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}
