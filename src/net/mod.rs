//! The mesh network stack above the bearers, sans-IO (DESIGN.md rule 1): the network layer
//! (§3.4), the lower and upper transport layers (§3.5, §3.6), the access layer opcodes (§3.7)
//! and the Configuration client messages (§4.3).
//!
//! Modules:
//! - [`network`]: network PDU encryption and obfuscation per subnet, IV Index and IVI, SEQ
//!   numbering through a [`SeqSource`](network::SeqSource), the replay protection list, network
//!   transmit parameters.
//! - [`transport`]: lower transport PDUs (unsegmented/segmented access and control, Segment
//!   Acknowledgment), the SAR transmitter and receiver with their timers, and upper transport
//!   encryption with application and device keys (TransMIC 32/64, virtual addresses). Its
//!   [`Transport`](transport::Transport) owns a [`NetworkLayer`](network::NetworkLayer) and is
//!   the state machine a driver talks to: `handle_network_pdu`, `handle_timeout`,
//!   `poll_transmit`, `poll_event`, `poll_timeout`.
//! - [`access`]: access layer opcodes (1, 2 and 3 octets).
//! - [`config`]: the Configuration messages (typed, parse/emit, named status codes) and the
//!   [`ConfigClient`](config::ConfigClient) request/response matcher with retries.
//! - [`config_server`]: a node's Configuration Server state and request handling (used by the
//!   simulated nodes).
//! - [`proxy`]: the Mesh Proxy protocol over GATT: the [`ProxyClient`](proxy::ProxyClient)
//!   (filter set-up, network PDUs and beacons through one connected node) and the
//!   [`ProxyServer`](proxy::ProxyServer) of the simulated nodes (filter, relaying).
//! - [`key_refresh`]: the network-wide Key Refresh procedure of one NetKey and its AppKeys
//!   (§3.6.4), with progress that can be saved and resumed.
//!
//! All errors of this layer are [`NetError`].
//!
//! DESIGN.md places the byte layouts of lower transport PDUs, access opcodes and Config
//! messages under `wire/`; they live here instead, next to the state machines that use them,
//! so that the network stack is one self-contained module (the parsers follow the same
//! contract as `wire/`: never panic, typed errors, RFU values survive where the spec allows).

pub mod access;
pub mod config;
pub mod config_server;
pub mod key_refresh;
pub mod network;
pub mod proxy;
pub mod transport;

use mesh_crypto::CryptoError;

/// Every way an operation of the network stack can fail. Parsers report malformed input of the
/// peer; the state machines report local misuse and resource limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// Peer: a PDU or message is too short or too long for its type.
    #[error("{what}: bad length {actual}")]
    BadLength {
        /// What was being parsed.
        what: &'static str,
        /// The length received.
        actual: usize,
    },
    /// Peer: a field holds a value the specification prohibits or reserves (RFU).
    #[error("{what}: prohibited value {value:#x}")]
    Prohibited {
        /// Which field.
        what: &'static str,
        /// The value received.
        value: u32,
    },
    /// Peer: an access message with an opcode that is not one of the messages parsed here.
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u32),
    /// Local: a key index or address is not known to this stack.
    #[error("unknown {what} {index:#x}")]
    UnknownKey {
        /// Which table was searched ("NetKey index", "AppKey index", "device key").
        what: &'static str,
        /// The index or address.
        index: u16,
    },
    /// Local: an argument is out of range (an address of the wrong kind, a TTL over 127, a
    /// message too long to segment, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// Local: the SEQ source could not give more sequence numbers (the store failed or the
    /// 24-bit space of this IV Index is exhausted; an IV Update is needed).
    #[error("no sequence numbers: {0}")]
    SeqUnavailable(String),
    /// Local or peer: a cryptographic operation failed.
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    /// Local: a key refresh cannot be set up from what it was given.
    #[error("key refresh: {0}")]
    KeyRefresh(#[from] key_refresh::KeyRefreshError),
}

/// Result alias of the network stack.
pub type Result<T, E = NetError> = core::result::Result<T, E>;

/// Wire enumerations of this layer use the same macro as `wire/`.
pub(crate) use crate::wire::wire_enum as net_enum;

/// Mesh addresses (§3.4.2).
pub mod address {
    /// The unassigned address.
    pub const UNASSIGNED: u16 = 0x0000;
    /// All-proxies fixed group address.
    pub const ALL_PROXIES: u16 = 0xfffc;
    /// All-friends fixed group address.
    pub const ALL_FRIENDS: u16 = 0xfffd;
    /// All-relays fixed group address.
    pub const ALL_RELAYS: u16 = 0xfffe;
    /// All-nodes fixed group address.
    pub const ALL_NODES: u16 = 0xffff;

    /// A unicast address: 0x0001..=0x7FFF.
    pub const fn is_unicast(a: u16) -> bool {
        a != 0 && a & 0x8000 == 0
    }

    /// A virtual address: 0b10 prefix.
    pub const fn is_virtual(a: u16) -> bool {
        a & 0xc000 == 0x8000
    }

    /// A group address (including the fixed ones): 0b11 prefix.
    pub const fn is_group(a: u16) -> bool {
        a & 0xc000 == 0xc000
    }
}

/// Reads a little-endian u16 at `at`; callers check the length first.
pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
