//! The network layer (§3.4): subnets and their keys, the IV Index, SEQ numbering, the replay
//! protection list and the network transmit parameters.
//!
//! [`NetworkLayer`] is not a state machine with timers: it encrypts what the transport layer
//! gives it ([`NetworkLayer::encrypt`]) and decrypts, authenticates and filters what the
//! bearer received ([`NetworkLayer::decrypt`]). Relaying is not done here: meshprov is a
//! provisioner/configuration client, not a relay node; [`NetworkLayer::authenticate`] and
//! [`NetworkLayer::reencrypt`] give the simulated proxy server
//! ([`crate::net::proxy::ProxyServer`]) what it needs to forward PDUs, and
//! [`NetworkLayer::encrypt_proxy_config`] / [`NetworkLayer::decrypt_proxy_config`] secure proxy
//! configuration messages with the proxy nonce.
//!
//! **IV Index** (§3.10.5): in Normal Operation PDUs are sent with the current IV Index; while
//! an IV Update is in progress with `current − 1`. Reception always picks the IV Index from
//! the IVI bit (the current one when it matches the LSB, otherwise `current − 1`), so messages
//! still sent under the previous IV Index are accepted.
//!
//! **SEQ** (§3.4.4.4): every element address has its own 24-bit counter. Numbers come in blocks
//! from a [`SeqSource`] (the SQLite store commits each block before it is used, so a crash
//! never repeats a SEQ); a new IV Index discards the cached blocks.
//!
//! **Replay protection** (§3.9.8): per source address the last (IV Index, SEQ) accepted. A PDU is
//! dropped unless its IV Index is newer, or equal with a greater SEQ. The list holds at most
//! [`NetworkConfig::replay_capacity`] sources (default 32 767, one per unicast address, so it
//! never fills in a real network); when full, PDUs from *new* sources are dropped, never an old
//! entry forgotten (forgetting would re-open a replay window). [`NetworkLayer::decrypt`]
//! applies it to every PDU; the transport layer uses [`NetworkLayer::decrypt_unchecked`] and
//! exempts only segments of the message it is reassembling from that source (same SeqAuth),
//! so segments arriving out of order are not taken for replays.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::time::Duration;

use mesh_crypto::network::{self as netcrypto, NetworkHeader};
use mesh_crypto::toolbox::{self, K2Output};
use mesh_crypto::{CryptoError, NetKey};

use super::{NetError, Result, address};

/// Network Transmit state (§4.2.19): how many times each network PDU is sent and how far
/// apart. Encoded in one octet as `count (3 bits) | interval steps (5 bits) << 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetworkTransmit {
    /// Number of transmissions minus one, 0..=7.
    pub count: u8,
    /// Interval steps, 0..=31; the interval is `(steps + 1) × 10 ms`.
    pub interval_steps: u8,
}

impl NetworkTransmit {
    /// Decodes the one-octet state.
    pub const fn from_byte(b: u8) -> Self {
        Self {
            count: b & 0x07,
            interval_steps: b >> 3,
        }
    }

    /// Encodes the one-octet state (fields wider than theirs are masked).
    pub const fn to_byte(self) -> u8 {
        (self.count & 0x07) | ((self.interval_steps & 0x1f) << 3)
    }

    /// Total transmissions of each PDU.
    pub const fn transmissions(self) -> u8 {
        (self.count & 0x07) + 1
    }

    /// Time between two transmissions of one PDU.
    pub fn interval(self) -> Duration {
        Duration::from_millis(10 * (u64::from(self.interval_steps & 0x1f) + 1))
    }
}

impl Default for NetworkTransmit {
    /// Three transmissions 20 ms apart: `count 2, steps 1`, what BlueZ and nRF Mesh configure.
    fn default() -> Self {
        Self {
            count: 2,
            interval_steps: 1,
        }
    }
}

/// One network PDU ready for the bearer, with the transmit parameters as metadata: the bearer
/// sends it `transmissions` times, `interval` apart (plus its own random delay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The obfuscated and encrypted network PDU (AD type 0x2A payload).
    pub pdu: Vec<u8>,
    /// How many times to send it.
    pub transmissions: u8,
    /// Time between transmissions.
    pub interval: Duration,
}

/// The IV Index state (§3.10.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IvIndex {
    /// The current IV Index.
    pub index: u32,
    /// IV Update in Progress.
    pub update: bool,
}

impl IvIndex {
    /// The IV Index used to send: `index − 1` while an update is in progress.
    pub const fn tx(self) -> u32 {
        if self.update && self.index > 0 {
            self.index - 1
        } else {
            self.index
        }
    }

    /// The IV Index used to receive a PDU with this IVI bit (§3.4.4.1).
    pub fn rx(self, ivi: bool) -> u32 {
        netcrypto::rx_iv_index(self.index, ivi)
    }
}

/// Where SEQ numbers come from. The SQLite store implements it with `reserve_seq`, which
/// commits the block before returning it.
pub trait SeqSource {
    /// Reserves the next `block` SEQ numbers of `element` under the current IV Index. The
    /// returned range is never handed out again for that IV Index, and ends at most at 2^24.
    fn reserve_seq(&mut self, element: u16, block: u32) -> Result<Range<u32>>;

    /// A new IV Index took effect: numbering restarts at 0 (the store does this in
    /// `set_iv_index`; the default does nothing).
    fn iv_index_changed(&mut self, _iv_index: u32) {}
}

/// An in-memory [`SeqSource`] for tests and the simulator (not crash-safe).
#[derive(Debug, Clone, Default)]
pub struct MemorySeqSource {
    next: HashMap<u16, u32>,
}

impl MemorySeqSource {
    /// Every element starts at SEQ 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `element` continue at `seq` (to reproduce a sample message, for example).
    pub fn set_next(&mut self, element: u16, seq: u32) {
        self.next.insert(element, seq);
    }
}

impl SeqSource for MemorySeqSource {
    fn reserve_seq(&mut self, element: u16, block: u32) -> Result<Range<u32>> {
        let next = self.next.entry(element).or_insert(0);
        let end = u64::from(*next) + u64::from(block.max(1));
        if end > 1 << 24 {
            return Err(NetError::SeqUnavailable(format!(
                "SEQ space of element {element:#06x} exhausted"
            )));
        }
        let r = *next..end as u32;
        *next = r.end;
        Ok(r)
    }

    fn iv_index_changed(&mut self, _iv_index: u32) {
        self.next.clear();
    }
}

/// Settings of the network layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Network Transmit state applied to every PDU this layer builds.
    pub transmit: NetworkTransmit,
    /// SEQ numbers reserved from the [`SeqSource`] at a time (a larger block means fewer
    /// store writes and more numbers skipped after a crash).
    pub seq_block: u32,
    /// Maximum number of sources in the replay protection list.
    pub replay_capacity: usize,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            transmit: NetworkTransmit::default(),
            seq_block: 256,
            replay_capacity: 0x7fff,
        }
    }
}

/// The keys of one subnet. During a key refresh (§3.10.4) both the old and the new keys are
/// held: phase 1 sends with the old and receives with both, phase 2 sends with the new.
#[derive(Debug, Clone)]
struct Subnet {
    old: K2Output,
    new: Option<K2Output>,
    tx_new: bool,
}

impl Subnet {
    fn tx_keys(&self) -> &K2Output {
        match (&self.new, self.tx_new) {
            (Some(n), true) => n,
            _ => &self.old,
        }
    }
}

/// A network PDU that was authenticated, is addressed to us and is not a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPdu {
    /// The subnet it came in on.
    pub net_key_index: u16,
    /// Whether it was secured with the new keys of a subnet in key refresh.
    pub new_key: bool,
    /// The IV Index it was received under.
    pub iv_index: u32,
    /// The deobfuscated header.
    pub header: NetworkHeader,
    /// The lower transport PDU.
    pub transport_pdu: Vec<u8>,
}

/// Why [`NetworkLayer::decrypt`] dropped a PDU. Dropping is normal traffic on a shared
/// medium, not an error of anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than 14 or longer than 29 octets.
    Malformed,
    /// No subnet has this NID, or none authenticated it (another network, wrong IV Index,
    /// tampered).
    NotAuthenticated,
    /// Sent by one of our own elements (our own PDU relayed back).
    OwnSource,
    /// The destination is none of ours.
    NotForUs,
    /// Seen before, or older than what this source sent last (replay protection).
    Replay,
    /// The replay protection list is full and this source is new.
    ReplayListFull,
    /// Prohibited header values: an unassigned destination, a non-unicast source.
    InvalidAddress,
}

/// The network layer of one provisioner (or of a simulated node).
#[derive(Debug)]
pub struct NetworkLayer<S> {
    config: NetworkConfig,
    iv: IvIndex,
    subnets: BTreeMap<u16, Subnet>,
    seq_source: S,
    seq_blocks: HashMap<u16, Range<u32>>,
    elements: HashSet<u16>,
    subscriptions: HashSet<u16>,
    replay: HashMap<u16, (u32, u32)>,
}

impl<S: SeqSource> NetworkLayer<S> {
    /// A layer with no subnets, the given IV Index and SEQ source.
    pub fn new(config: NetworkConfig, iv: IvIndex, seq_source: S) -> Self {
        Self {
            config,
            iv,
            subnets: BTreeMap::new(),
            seq_source,
            seq_blocks: HashMap::new(),
            elements: HashSet::new(),
            subscriptions: HashSet::new(),
            replay: HashMap::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Changes the Network Transmit state for PDUs built from now on.
    pub fn set_transmit(&mut self, transmit: NetworkTransmit) {
        self.config.transmit = transmit;
    }

    /// The SEQ source (the store, for example).
    pub fn seq_source_mut(&mut self) -> &mut S {
        &mut self.seq_source
    }

    /// Adds (or replaces) the subnet `index` with `key`, in normal operation.
    pub fn add_subnet(&mut self, index: u16, key: &NetKey) {
        self.subnets.insert(
            index,
            Subnet {
                old: toolbox::k2(key, &[0]),
                new: None,
                tx_new: false,
            },
        );
    }

    /// Removes subnet `index`.
    pub fn remove_subnet(&mut self, index: u16) -> bool {
        self.subnets.remove(&index).is_some()
    }

    /// Key refresh phase 1: receive with `new_key` too, still send with the old one.
    pub fn update_subnet(&mut self, index: u16, new_key: &NetKey) -> Result<()> {
        let s = self.subnet_mut(index)?;
        s.new = Some(toolbox::k2(new_key, &[0]));
        s.tx_new = false;
        Ok(())
    }

    /// Key refresh phase 2: send with the new key, receive with both.
    pub fn use_new_key(&mut self, index: u16) -> Result<()> {
        let s = self.subnet_mut(index)?;
        if s.new.is_none() {
            return Err(NetError::InvalidArgument("subnet has no new key"));
        }
        s.tx_new = true;
        Ok(())
    }

    /// Key refresh phase 3 (and back to 0): the new key replaces the old one.
    pub fn revoke_old_key(&mut self, index: u16) -> Result<()> {
        let s = self.subnet_mut(index)?;
        if let Some(n) = s.new.take() {
            s.old = n;
        }
        s.tx_new = false;
        Ok(())
    }

    fn subnet_mut(&mut self, index: u16) -> Result<&mut Subnet> {
        self.subnets.get_mut(&index).ok_or(NetError::UnknownKey {
            what: "NetKey index",
            index,
        })
    }

    /// The NetKey indexes of all subnets.
    pub fn subnets(&self) -> impl Iterator<Item = u16> + '_ {
        self.subnets.keys().copied()
    }

    /// The IV Index state.
    pub fn iv_index(&self) -> IvIndex {
        self.iv
    }

    /// Sets the IV Index state. A different IV Index discards the cached SEQ blocks and tells
    /// the SEQ source (numbering restarts for the new IV Index).
    pub fn set_iv_index(&mut self, iv: IvIndex) {
        if iv.tx() != self.iv.tx() {
            self.seq_blocks.clear();
            self.seq_source.iv_index_changed(iv.tx());
        }
        self.iv = iv;
    }

    /// Adds a unicast address of ours: PDUs to it are accepted, PDUs from it are dropped.
    pub fn add_element(&mut self, address: u16) {
        self.elements.insert(address);
    }

    /// Whether `address` is one of our elements.
    pub fn is_element(&self, address: u16) -> bool {
        self.elements.contains(&address)
    }

    /// Accepts PDUs to a group or virtual address (or a fixed group such as all-friends).
    pub fn subscribe(&mut self, address: u16) {
        self.subscriptions.insert(address);
    }

    /// Stops accepting PDUs to `address`.
    pub fn unsubscribe(&mut self, address: u16) {
        self.subscriptions.remove(&address);
    }

    /// Whether a PDU to `dst` is for us: one of our elements, a subscription, or all-nodes.
    pub fn accepts(&self, dst: u16) -> bool {
        dst == address::ALL_NODES
            || self.elements.contains(&dst)
            || self.subscriptions.contains(&dst)
    }

    /// The next SEQ of `element`, reserving a new block from the source when needed.
    pub fn next_seq(&mut self, element: u16) -> Result<u32> {
        if let Some(r) = self.seq_blocks.get_mut(&element)
            && let Some(seq) = r.next()
        {
            return Ok(seq);
        }
        let mut r = self
            .seq_source
            .reserve_seq(element, self.config.seq_block)?;
        if r.end > 1 << 24 {
            return Err(NetError::SeqUnavailable("SEQ beyond 24 bits".into()));
        }
        let seq = r
            .next()
            .ok_or_else(|| NetError::SeqUnavailable("empty SEQ block".into()))?;
        self.seq_blocks.insert(element, r);
        Ok(seq)
    }

    /// Encrypts and obfuscates one network PDU on subnet `net_key_index` with the sending IV
    /// Index (the SEQ is in `header`; get it from [`next_seq`](Self::next_seq)).
    pub fn encrypt(
        &self,
        net_key_index: u16,
        header: &NetworkHeader,
        transport_pdu: &[u8],
    ) -> Result<Transmit> {
        if header.ttl > 0x7f || header.seq >= 1 << 24 {
            return Err(NetError::InvalidArgument("TTL or SEQ out of range"));
        }
        if !address::is_unicast(header.src) || header.dst == address::UNASSIGNED {
            return Err(NetError::InvalidArgument(
                "source must be unicast, destination assigned",
            ));
        }
        let subnet = self
            .subnets
            .get(&net_key_index)
            .ok_or(NetError::UnknownKey {
                what: "NetKey index",
                index: net_key_index,
            })?;
        let pdu = netcrypto::encrypt_pdu(subnet.tx_keys(), self.iv.tx(), header, transport_pdu)?;
        Ok(Transmit {
            pdu,
            transmissions: self.config.transmit.transmissions(),
            interval: self.config.transmit.interval(),
        })
    }

    /// Authenticates a received network PDU with every subnet key whose NID matches (old and
    /// new keys of subnets in key refresh), picks the IV Index from IVI, filters by
    /// destination and source, and applies replay protection. Only an accepted PDU updates the
    /// replay protection list.
    pub fn decrypt(&mut self, pdu: &[u8]) -> core::result::Result<NetworkPdu, DropReason> {
        let n = self.decrypt_unchecked(pdu)?;
        self.replay_check(n.header.src, n.iv_index, n.header.seq)?;
        self.replay_update(n.header.src, n.iv_index, n.header.seq);
        Ok(n)
    }

    /// [`decrypt`](Self::decrypt) without replay protection: the transport layer uses it to
    /// accept out-of-order segments of a message it is reassembling (their SEQ may be lower
    /// than one already seen; the message itself is protected by its SeqAuth), and applies
    /// [`replay_check`](Self::replay_check) / [`replay_update`](Self::replay_update) itself.
    pub fn decrypt_unchecked(&self, pdu: &[u8]) -> core::result::Result<NetworkPdu, DropReason> {
        let n = self.authenticate(pdu)?;
        if self.elements.contains(&n.header.src) {
            return Err(DropReason::OwnSource);
        }
        if !self.accepts(n.header.dst) {
            return Err(DropReason::NotForUs);
        }
        Ok(n)
    }

    /// Authenticates a network PDU with every subnet key whose NID matches and picks the IV
    /// Index from IVI, like [`decrypt_unchecked`](Self::decrypt_unchecked), but keeps PDUs
    /// for other destinations and from our own elements: a proxy server or relay forwards
    /// PDUs that are not for it (§3.4.6.3), and a proxy server reads the destination of the
    /// PDUs its own stack sends. Only prohibited addresses are dropped. No replay protection.
    pub fn authenticate(&self, pdu: &[u8]) -> core::result::Result<NetworkPdu, DropReason> {
        self.open(pdu, false)
    }

    fn open(&self, pdu: &[u8], proxy: bool) -> core::result::Result<NetworkPdu, DropReason> {
        if pdu.len() < 14 || pdu.len() > netcrypto::MAX_NETWORK_PDU {
            return Err(DropReason::Malformed);
        }
        let ivi = pdu[0] & 0x80 != 0;
        let nid = pdu[0] & 0x7f;
        let iv_index = self.iv.rx(ivi);
        let mut found = None;
        'subnets: for (&index, subnet) in &self.subnets {
            for (keys, new_key) in [(Some(&subnet.old), false), (subnet.new.as_ref(), true)] {
                let Some(keys) = keys else { continue };
                if keys.nid != nid {
                    continue;
                }
                let opened = if proxy {
                    netcrypto::decrypt_proxy_config_pdu(keys, iv_index, pdu)
                } else {
                    netcrypto::decrypt_pdu(keys, iv_index, pdu)
                };
                match opened {
                    Ok(d) => {
                        found = Some((index, new_key, d));
                        break 'subnets;
                    }
                    Err(CryptoError::MicMismatch | CryptoError::NidMismatch) => continue,
                    Err(_) => return Err(DropReason::Malformed),
                }
            }
        }
        let Some((net_key_index, new_key, d)) = found else {
            return Err(DropReason::NotAuthenticated);
        };
        let h = d.header;
        let valid = if proxy {
            // §6.5: CTL 1 and the unassigned destination; TTL is not checked (Zephyr and
            // BlueZ do not either).
            address::is_unicast(h.src) && h.ctl && h.dst == address::UNASSIGNED
        } else {
            address::is_unicast(h.src) && h.dst != address::UNASSIGNED
        };
        if !valid {
            return Err(DropReason::InvalidAddress);
        }
        Ok(NetworkPdu {
            net_key_index,
            new_key,
            iv_index,
            header: h,
            transport_pdu: d.transport_pdu,
        })
    }

    /// Secures an authenticated PDU again for relaying with TTL `ttl` (§3.4.6.3: a relay or
    /// proxy keeps SEQ, SRC, DST and the transport PDU and decrements TTL; the TTL is part of
    /// the network nonce, so the PDU is encrypted anew), with the subnet keys (old or new) and
    /// the IV Index it was received with, and this layer's Network Transmit parameters.
    pub fn reencrypt(&self, pdu: &NetworkPdu, ttl: u8) -> Result<Transmit> {
        let subnet = self
            .subnets
            .get(&pdu.net_key_index)
            .ok_or(NetError::UnknownKey {
                what: "NetKey index",
                index: pdu.net_key_index,
            })?;
        let keys = match (&subnet.new, pdu.new_key) {
            (Some(n), true) => n,
            (None, true) => {
                return Err(NetError::InvalidArgument("subnet has no new key any more"));
            }
            (_, false) => &subnet.old,
        };
        let header = NetworkHeader { ttl, ..pdu.header };
        if header.ttl > 0x7f {
            return Err(NetError::InvalidArgument("TTL out of range"));
        }
        let bytes = netcrypto::encrypt_pdu(keys, pdu.iv_index, &header, &pdu.transport_pdu)?;
        Ok(Transmit {
            pdu: bytes,
            transmissions: self.config.transmit.transmissions(),
            interval: self.config.transmit.interval(),
        })
    }

    /// Builds the network PDU of a proxy configuration message (§6.5) from our element `src`
    /// on subnet `net_key_index`: CTL 1, TTL 0, DST unassigned, the proxy nonce (§3.9.5.4),
    /// the next SEQ of `src` and the sending IV Index. `message` is opcode ‖ parameters,
    /// 1..=12 octets (one network PDU of at most 29 octets, as Zephyr requires).
    pub fn encrypt_proxy_config(
        &mut self,
        net_key_index: u16,
        src: u16,
        message: &[u8],
    ) -> Result<Vec<u8>> {
        if !address::is_unicast(src) {
            return Err(NetError::InvalidArgument(
                "source must be a unicast address",
            ));
        }
        if message.is_empty() || message.len() > netcrypto::MAX_CONTROL_TRANSPORT_PDU {
            return Err(NetError::InvalidArgument(
                "proxy configuration message of 1..=12 octets",
            ));
        }
        let keys = self
            .subnets
            .get(&net_key_index)
            .ok_or(NetError::UnknownKey {
                what: "NetKey index",
                index: net_key_index,
            })?
            .tx_keys()
            .clone();
        let seq = self.next_seq(src)?;
        Ok(netcrypto::encrypt_proxy_config_pdu(
            &keys,
            self.iv.tx(),
            seq,
            src,
            message,
        )?)
    }

    /// Authenticates the network PDU of a proxy configuration message (proxy nonce; CTL 1 and
    /// DST unassigned, else [`DropReason::InvalidAddress`]). No replay protection here: the
    /// proxy configuration messages of a connection are checked by the proxy client or server
    /// against the connection's own last SEQ, because they share the sender's SEQ space with
    /// network PDUs that may be sent after them but numbered before them (PDUs held while a
    /// filter is set up), and must not move the replay protection list of the transport.
    pub fn decrypt_proxy_config(&self, pdu: &[u8]) -> core::result::Result<NetworkPdu, DropReason> {
        self.open(pdu, true)
    }

    /// Whether (IV Index, SEQ) from `src` is newer than anything accepted from it before.
    pub fn replay_check(&self, src: u16, iv_index: u32, seq: u32) -> Result<(), DropReason> {
        match self.replay.get(&src) {
            Some(&(last_iv, last_seq))
                if iv_index < last_iv || (iv_index == last_iv && seq <= last_seq) =>
            {
                Err(DropReason::Replay)
            }
            Some(_) => Ok(()),
            None if self.replay.len() >= self.config.replay_capacity => {
                Err(DropReason::ReplayListFull)
            }
            None => Ok(()),
        }
    }

    /// Records (IV Index, SEQ) from `src` if it is newer than the entry (never moves back).
    pub fn replay_update(&mut self, src: u16, iv_index: u32, seq: u32) {
        let newer = self
            .replay
            .get(&src)
            .is_none_or(|&last| (iv_index, seq) > last);
        if newer
            && (self.replay.contains_key(&src) || self.replay.len() < self.config.replay_capacity)
        {
            self.replay.insert(src, (iv_index, seq));
        }
    }

    /// Number of sources in the replay protection list.
    pub fn replay_len(&self) -> usize {
        self.replay.len()
    }
}
