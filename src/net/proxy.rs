//! The Mesh Proxy protocol, MshPRT v1.1 §6, sans-IO: network PDUs, mesh beacons and proxy
//! configuration messages carried in Proxy PDUs over a GATT connection to the Mesh Proxy
//! service (0x1828). The client writes Mesh Proxy Data In (0x2ADD, write without response);
//! the server notifies Mesh Proxy Data Out (0x2ADE).
//!
//! - [`ProxyClient`]: the provisioner's side. It reassembles notifications with
//!   [`ProxySar`], hands network PDUs to the [`Transport`], follows Secure Network and Mesh
//!   Private beacons (IV Index, Key Refresh flag), and sets up the proxy filter when the
//!   connection opens: Set Filter Type (accept list), then Add Addresses to Filter with the
//!   provisioner's unicast address (and any others configured), each acknowledged by a Filter
//!   Status, with a timeout and retries. Network PDUs given to it before the filter is in
//!   place wait; afterwards they are segmented to the ATT MTU and written. It tells the driver
//!   whether it is ready ([`ProxyClient::state`], [`ProxyEvent::Ready`]).
//! - [`ProxyServer`]: a node's side (the simulated nodes use it). It keeps the proxy filter
//!   (§6.4; an empty accept list when the connection opens), answers proxy configuration
//!   messages with Filter Status (§6.5), adds the source of every network PDU from the client
//!   to an accept list (removes it from a reject list), hands network PDUs from the client to
//!   the node's own stack, and relays between the GATT bearer and the advertising bearer with
//!   the TTL decremented (§3.4.6.3) and a [`NetworkCache`] so that nothing is forwarded twice.
//!
//! Section numbers of the proxy chapter (§6.4 filtering, §6.5 configuration messages, §6.6
//! server and §6.7 client behaviour) are those of Mesh Profile 1.0.1, which 1.1 kept; the
//! reference (`mesh-protocol.md` §3) carries the opcodes and layouts but not the numbers.
//!
//! Choices where the specification leaves room:
//! - Proxy configuration messages fit one network PDU of 29 octets (Zephyr refuses longer
//!   ones): Add Addresses carries at most [`MAX_FILTER_ADDRESSES`] addresses, longer lists go
//!   in several messages, each acknowledged before the next.
//! - A network PDU goes over GATT once: the Network Transmit count is an advertising-bearer
//!   matter (GATT is acknowledged by the link layer).
//! - Proxy configuration messages are not put through the transport's replay protection list
//!   (as in Zephyr): each connection checks that their SEQ grows
//!   (see [`NetworkLayer::decrypt_proxy_config`]).
//! - The client follows beacons as a passive node: a newer IV Index (or the end of an IV
//!   Update) is taken at once, up to 42 ahead (IV Index Recovery), without the 96-hour minimum
//!   durations a node that *initiates* an update must respect; a beacon secured with the new
//!   key of a subnet in Key Refresh moves it to phase 2 (Key Refresh flag 1) or back to normal
//!   operation with the new key (flag 0).
//! - The server's filter holds at most [`ProxyServerConfig::filter_capacity`] addresses (16);
//!   more are ignored, as Zephyr does, and the Filter Status list size shows it.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::time::Duration;

use mesh_crypto::beacon::{self as beacon_crypto, BeaconState};
use mesh_crypto::toolbox;
use mesh_crypto::{BeaconKey, NetKey, PrivateBeaconKey};

use super::NetError;
use super::address;
use super::network::{IvIndex, NetworkLayer, NetworkPdu, SeqSource, Transmit};
use super::transport::Transport;
use crate::bearer::{BearerError, ProxySar};
use crate::time::Instant;
use crate::wire::{
    BeaconType, FilterType, MAX_FILTER_ADDRESSES, ProxyConfigMessage, ProxyConfigOpcode,
    ProxyMessageType,
};

/// 16-bit UUID of the Mesh Proxy Data In characteristic (written by the client), reference §3.
pub const MESH_PROXY_DATA_IN: u16 = 0x2add;
/// 16-bit UUID of the Mesh Proxy Data Out characteristic (notified by the server), reference §3.
pub const MESH_PROXY_DATA_OUT: u16 = 0x2ade;

/// How far ahead of the current IV Index a beacon may be and still be followed (IV Index
/// Recovery: at most 42).
pub const MAX_IV_RECOVERY: u32 = 42;

/// Every way the proxy protocol can fail. The variants marked "disconnect" mean the GATT
/// connection must be dropped (§6.3.1, §6.6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// Peer, disconnect: the Proxy PDUs broke the SAR rules, or a reassembly timed out.
    #[error("proxy SAR: {0}")]
    Sar(#[from] BearerError),
    /// Peer, disconnect: a Provisioning PDU (0x03) on the Mesh Proxy service.
    #[error("{0} is not allowed on the Mesh Proxy service")]
    WrongMessageType(ProxyMessageType),
    /// Peer: the proxy server did not answer a filter set-up message with a Filter Status,
    /// however often it was sent.
    #[error("the proxy server did not answer {step} after {attempts} attempts")]
    FilterTimeout {
        /// The message that went unanswered.
        step: ProxyConfigOpcode,
        /// How many times it was sent.
        attempts: usize,
    },
    /// Peer: the proxy server answered, but its Filter Status shows it did not take the
    /// filter (another filter type, or fewer addresses than were added: its list is full).
    #[error(
        "the proxy server did not take the filter: Filter Status {filter_type} with {list_size} addresses, expected {expected_type} with at least {expected_size}"
    )]
    FilterRefused {
        /// Filter type in the server's last Filter Status.
        filter_type: FilterType,
        /// List size in the server's last Filter Status.
        list_size: u16,
        /// The filter type asked for.
        expected_type: FilterType,
        /// The fewest addresses the list should hold.
        expected_size: u16,
    },
    /// Local: no proxy connection (never connected, disconnected, or failed).
    #[error("not connected to a proxy server")]
    NotConnected,
    /// Peer: the proxy server closed the connection (its GATT Proxy state was disabled, it
    /// was reset, or it went away) while requests still needed it.
    #[error("the proxy server closed the connection")]
    ConnectionLost,
    /// Local: too many network PDUs already wait for the filter set-up.
    #[error("{0} network PDUs already wait for the proxy filter")]
    Backlog(usize),
    /// Local: a proxy configuration message could not be built (unknown subnet, no SEQ).
    #[error("proxy configuration message: {0}")]
    Net(#[from] NetError),
}

impl ProxyError {
    /// Whether the GATT connection must be dropped because of this error.
    pub fn requires_disconnect(&self) -> bool {
        match self {
            Self::Sar(e) => e.requires_disconnect(),
            Self::WrongMessageType(_) => true,
            _ => false,
        }
    }
}

/// Settings of a [`ProxyClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyClientConfig {
    /// The provisioner's unicast address: the source of proxy configuration messages and the
    /// first address put in the accept list.
    pub address: u16,
    /// The subnet proxy configuration messages are secured with.
    pub net_key_index: u16,
    /// Further addresses for the accept list (group addresses the provisioner listens to).
    pub extra_addresses: Vec<u16>,
    /// How long to wait for each Filter Status: one entry per attempt, the message is sent
    /// once per entry and the set-up fails when the last wait ends. Default 1 s, 2 s, 4 s.
    pub filter_timeouts: Vec<Duration>,
    /// Most network PDUs held while the filter is being set up.
    pub max_backlog: usize,
}

impl Default for ProxyClientConfig {
    fn default() -> Self {
        Self {
            address: 0x7fff,
            net_key_index: 0,
            extra_addresses: Vec::new(),
            filter_timeouts: vec![
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(4),
            ],
            max_backlog: 256,
        }
    }
}

/// Where a [`ProxyClient`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyState {
    /// No connection.
    Disconnected,
    /// Connected; the filter is being set up (network PDUs wait).
    SettingUpFilter,
    /// The filter is in place: network PDUs go out as they come.
    Ready,
    /// The connection failed; the driver disconnects (and may connect again).
    Failed(ProxyError),
}

/// What a [`ProxyClient`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyEvent {
    /// The filter is set up: network PDUs flow.
    Ready {
        /// The server's filter type.
        filter_type: FilterType,
        /// Addresses in the server's list.
        list_size: u16,
    },
    /// A Filter Status arrived (during the set-up or later).
    FilterStatus {
        /// The server's filter type.
        filter_type: FilterType,
        /// Addresses in the server's list.
        list_size: u16,
    },
    /// A beacon through the proxy moved the IV Index state.
    IvIndexUpdated {
        /// Before.
        from: IvIndex,
        /// After.
        to: IvIndex,
    },
    /// A beacon through the proxy moved a subnet's Key Refresh phase: 2 (the new keys are
    /// used to send) or 0 (the old keys are revoked).
    KeyRefresh {
        /// The subnet.
        net_key_index: u16,
        /// The new phase.
        phase: u8,
    },
    /// The connection failed (the same error [`ProxyState::Failed`] holds).
    Failed(ProxyError),
}

/// Counters of a [`ProxyClient`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyClientStats {
    /// Network PDUs received and handed to the transport.
    pub network_pdus_in: u64,
    /// Network PDUs written (after the filter set-up).
    pub network_pdus_out: u64,
    /// Proxy configuration messages written (retries included).
    pub config_messages_out: u64,
    /// Beacons that authenticated.
    pub beacons: u64,
    /// Proxy PDUs dropped: beacons or configuration messages that did not authenticate, were
    /// replayed or malformed, RFU message types.
    pub dropped: u64,
}

/// The beacon credentials of one NetKey (§3.9.6.3.4, §3.9.6.3.5).
#[derive(Debug, Clone)]
struct BeaconCredentials {
    beacon_key: BeaconKey,
    network_id: [u8; 8],
    private_beacon_key: PrivateBeaconKey,
}

impl BeaconCredentials {
    fn new(key: &NetKey) -> Self {
        Self {
            beacon_key: toolbox::beacon_key(key),
            network_id: toolbox::k3(key),
            private_beacon_key: toolbox::private_beacon_key(key),
        }
    }

    fn open(&self, beacon: &[u8]) -> Option<BeaconState> {
        match beacon.first().map(|&t| BeaconType(t)) {
            Some(BeaconType::SECURE_NETWORK) => {
                beacon_crypto::secure_network_decode(&self.beacon_key, &self.network_id, beacon)
                    .ok()
            }
            Some(BeaconType::MESH_PRIVATE) => {
                beacon_crypto::private_decode(&self.private_beacon_key, beacon).ok()
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct ClientSubnet {
    old: BeaconCredentials,
    new: Option<BeaconCredentials>,
    /// 0 normal, 1 new key known, 2 sending with the new key.
    phase: u8,
}

#[derive(Debug)]
struct Setup {
    /// The messages still to be acknowledged, the current one first.
    steps: VecDeque<ProxyConfigMessage>,
    /// Addresses the list must hold once the current step is acknowledged.
    expected_size: u16,
    attempts: usize,
    deadline: Instant,
    /// The last Filter Status that did not acknowledge the current step.
    last_refusal: Option<(FilterType, u16)>,
}

#[derive(Debug)]
enum State {
    Disconnected,
    SettingUp(Setup),
    Ready,
    Failed(ProxyError),
}

/// Bit 0 of the beacon Flags: Key Refresh.
const FLAG_KEY_REFRESH: u8 = 0x01;
/// Bit 1 of the beacon Flags: IV Update in progress.
const FLAG_IV_UPDATE: u8 = 0x02;

/// The proxy client of one GATT connection (MshPRT v1.1 §6.7), sans-IO.
///
/// The driver connects ([`connect`](Self::connect)), writes every value of
/// [`poll_transmit`](Self::poll_transmit) to Mesh Proxy Data In, gives every Mesh Proxy Data
/// Out notification to [`handle_notification`](Self::handle_notification), every network PDU
/// the [`Transport`] wants to send to [`send_network_pdu`](Self::send_network_pdu), and calls
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout). An error
/// that [`requires_disconnect`](ProxyError::requires_disconnect) means: drop the connection.
#[derive(Debug)]
pub struct ProxyClient {
    config: ProxyClientConfig,
    sar: ProxySar,
    state: State,
    tx: VecDeque<Vec<u8>>,
    held: Vec<Vec<u8>>,
    events: VecDeque<ProxyEvent>,
    subnets: BTreeMap<u16, ClientSubnet>,
    last_config: Option<(u16, u32, u32)>,
    filter: Option<(FilterType, u16)>,
    stats: ProxyClientStats,
}

impl ProxyClient {
    /// A disconnected client.
    pub fn new(config: ProxyClientConfig) -> Self {
        Self {
            config,
            sar: ProxySar::new(0),
            state: State::Disconnected,
            tx: VecDeque::new(),
            held: Vec::new(),
            events: VecDeque::new(),
            subnets: BTreeMap::new(),
            last_config: None,
            filter: None,
            stats: ProxyClientStats::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ProxyClientConfig {
        &self.config
    }

    /// Lets beacons of subnet `index` through (the same NetKey the network layer has).
    pub fn add_subnet(&mut self, index: u16, key: &NetKey) {
        self.subnets.insert(
            index,
            ClientSubnet {
                old: BeaconCredentials::new(key),
                new: None,
                phase: 0,
            },
        );
    }

    /// Key Refresh phase 1 of subnet `index`: beacons secured with `new_key` are accepted too,
    /// and move the subnet on (see the module documentation).
    pub fn update_subnet(&mut self, index: u16, new_key: &NetKey) -> Result<(), ProxyError> {
        let s = self.subnets.get_mut(&index).ok_or(NetError::UnknownKey {
            what: "NetKey index",
            index,
        })?;
        s.new = Some(BeaconCredentials::new(new_key));
        s.phase = 1;
        Ok(())
    }

    /// Forgets subnet `index`.
    pub fn remove_subnet(&mut self, index: u16) -> bool {
        self.subnets.remove(&index).is_some()
    }

    /// Where the client is.
    pub fn state(&self) -> ProxyState {
        match &self.state {
            State::Disconnected => ProxyState::Disconnected,
            State::SettingUp(_) => ProxyState::SettingUpFilter,
            State::Ready => ProxyState::Ready,
            State::Failed(e) => ProxyState::Failed(e.clone()),
        }
    }

    /// Whether network PDUs flow (the filter is set up).
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready)
    }

    /// The server's filter as its last Filter Status told.
    pub fn filter(&self) -> Option<(FilterType, u16)> {
        self.filter
    }

    /// Counters.
    pub fn stats(&self) -> ProxyClientStats {
        self.stats
    }

    /// The GATT connection is open (notifications of Data Out enabled) with this ATT MTU:
    /// starts the filter set-up (§6.7) — Set Filter Type (accept list), then Add Addresses
    /// to Filter with [`ProxyClientConfig::address`] and the extra addresses, at most
    /// [`MAX_FILTER_ADDRESSES`] per message.
    ///
    /// Errors: [`ProxyError::Net`] when the first message cannot be secured (unknown subnet,
    /// no SEQ), the client stays disconnected; [`ProxyError::FilterTimeout`] at once when no
    /// timeouts are configured.
    pub fn connect<S: SeqSource>(
        &mut self,
        now: Instant,
        att_mtu: u16,
        transport: &mut Transport<S>,
    ) -> Result<(), ProxyError> {
        self.disconnected();
        self.sar = ProxySar::new(att_mtu);
        let mut addresses: Vec<u16> = Vec::new();
        for a in std::iter::once(self.config.address).chain(self.config.extra_addresses.clone()) {
            if a != address::UNASSIGNED && !addresses.contains(&a) {
                addresses.push(a);
            }
        }
        let mut steps = VecDeque::from([ProxyConfigMessage::SetFilterType {
            filter_type: FilterType::ACCEPT_LIST,
        }]);
        steps.extend(addresses.chunks(MAX_FILTER_ADDRESSES).map(|c| {
            ProxyConfigMessage::AddAddresses {
                addresses: c.to_vec(),
            }
        }));
        let Some(&first_wait) = self.config.filter_timeouts.first() else {
            let e = ProxyError::FilterTimeout {
                step: ProxyConfigOpcode::SET_FILTER_TYPE,
                attempts: 0,
            };
            self.fail(e.clone());
            return Err(e);
        };
        let mut setup = Setup {
            steps,
            expected_size: 0,
            attempts: 0,
            deadline: now + first_wait,
            last_refusal: None,
        };
        if let Err(e) = self.send_step(now, &mut setup, transport) {
            self.disconnected();
            return Err(e);
        }
        self.state = State::SettingUp(setup);
        Ok(())
    }

    /// The GATT connection is gone: everything queued or held is dropped.
    pub fn disconnected(&mut self) {
        self.state = State::Disconnected;
        self.tx.clear();
        self.held.clear();
        self.sar = ProxySar::new(self.sar.att_mtu());
        self.last_config = None;
        self.filter = None;
    }

    fn fail(&mut self, e: ProxyError) {
        self.tx.clear();
        self.held.clear();
        self.state = State::Failed(e.clone());
        self.events.push_back(ProxyEvent::Failed(e));
    }

    /// Sends the current step of `setup` (again) and arms its timer.
    fn send_step<S: SeqSource>(
        &mut self,
        now: Instant,
        setup: &mut Setup,
        transport: &mut Transport<S>,
    ) -> Result<(), ProxyError> {
        let Some(step) = setup.steps.front() else {
            return Ok(());
        };
        let wait = self.config.filter_timeouts[setup
            .attempts
            .min(self.config.filter_timeouts.len().saturating_sub(1))];
        let pdu = transport.network_mut().encrypt_proxy_config(
            self.config.net_key_index,
            self.config.address,
            &step.to_vec(),
        )?;
        setup.attempts += 1;
        setup.deadline = now + wait;
        self.stats.config_messages_out += 1;
        self.tx.extend(
            self.sar
                .segment(ProxyMessageType::PROXY_CONFIGURATION, &pdu),
        );
        Ok(())
    }

    /// Queues a network PDU (from [`Transport::poll_transmit`]) for the proxy server:
    /// segmented to the MTU and written at once when the client is ready, held (up to
    /// [`ProxyClientConfig::max_backlog`]) while the filter is being set up.
    ///
    /// Errors: [`ProxyError::NotConnected`] when disconnected or failed,
    /// [`ProxyError::Backlog`] when too many PDUs wait.
    pub fn send_network_pdu(&mut self, pdu: &[u8]) -> Result<(), ProxyError> {
        match self.state {
            State::Ready => {
                self.stats.network_pdus_out += 1;
                self.tx
                    .extend(self.sar.segment(ProxyMessageType::NETWORK_PDU, pdu));
                Ok(())
            }
            State::SettingUp(_) if self.held.len() < self.config.max_backlog => {
                self.held.push(pdu.to_vec());
                Ok(())
            }
            State::SettingUp(_) => Err(ProxyError::Backlog(self.held.len())),
            State::Disconnected | State::Failed(_) => Err(ProxyError::NotConnected),
        }
    }

    /// Handles one notification of Mesh Proxy Data Out at `now`.
    ///
    /// Network PDUs go to `transport` (which drops what is not for us, as on the air); beacons
    /// update the IV Index and Key Refresh phase of `transport`'s network layer; Filter Status
    /// messages drive the set-up. Errors that
    /// [`require a disconnect`](ProxyError::requires_disconnect) leave the client in
    /// [`ProxyState::Failed`]. Values that arrive while disconnected are ignored.
    pub fn handle_notification<S: SeqSource>(
        &mut self,
        now: Instant,
        value: &[u8],
        transport: &mut Transport<S>,
    ) -> Result<(), ProxyError> {
        if matches!(self.state, State::Disconnected | State::Failed(_)) {
            return Ok(());
        }
        let message = match self.sar.handle_segment(now, value) {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(e) => {
                let e = ProxyError::Sar(e);
                self.fail(e.clone());
                return Err(e);
            }
        };
        match message {
            (ProxyMessageType::NETWORK_PDU, pdu) => {
                self.stats.network_pdus_in += 1;
                // Not for us, a replay, another subnet: dropped as on the air.
                let _ = transport.handle_network_pdu(now, &pdu);
            }
            (ProxyMessageType::MESH_BEACON, beacon) => self.handle_beacon(&beacon, transport),
            (ProxyMessageType::PROXY_CONFIGURATION, pdu) => {
                self.handle_config(now, &pdu, transport)
            }
            (ProxyMessageType::PROVISIONING_PDU, _) => {
                let e = ProxyError::WrongMessageType(ProxyMessageType::PROVISIONING_PDU);
                self.fail(e.clone());
                return Err(e);
            }
            // RFU message types are ignored.
            _ => self.stats.dropped += 1,
        }
        Ok(())
    }

    fn handle_config<S: SeqSource>(
        &mut self,
        now: Instant,
        pdu: &[u8],
        transport: &mut Transport<S>,
    ) {
        let Ok(n) = transport.network().decrypt_proxy_config(pdu) else {
            self.stats.dropped += 1;
            return;
        };
        let key = (n.header.src, n.iv_index, n.header.seq);
        if self
            .last_config
            .is_some_and(|(src, iv, seq)| src == key.0 && (iv, seq) >= (key.1, key.2))
        {
            self.stats.dropped += 1;
            return;
        }
        self.last_config = Some(key);
        let Ok(ProxyConfigMessage::FilterStatus {
            filter_type,
            list_size,
        }) = ProxyConfigMessage::parse(&n.transport_pdu)
        else {
            // A server sends nothing else; anything else is ignored.
            self.stats.dropped += 1;
            return;
        };
        self.filter = Some((filter_type, list_size));
        self.events.push_back(ProxyEvent::FilterStatus {
            filter_type,
            list_size,
        });
        if !matches!(self.state, State::SettingUp(_)) {
            return;
        }
        let State::SettingUp(mut setup) = std::mem::replace(&mut self.state, State::Ready) else {
            return;
        };
        let acknowledged = match setup.steps.front() {
            Some(ProxyConfigMessage::SetFilterType { filter_type: want }) => *want == filter_type,
            Some(ProxyConfigMessage::AddAddresses { addresses }) => {
                filter_type == FilterType::ACCEPT_LIST
                    && list_size >= setup.expected_size.saturating_add(addresses.len() as u16)
            }
            _ => false,
        };
        if !acknowledged {
            setup.last_refusal = Some((filter_type, list_size));
            self.state = State::SettingUp(setup);
            return;
        }
        if let Some(ProxyConfigMessage::AddAddresses { addresses }) = setup.steps.pop_front() {
            setup.expected_size = setup.expected_size.saturating_add(addresses.len() as u16);
        }
        setup.attempts = 0;
        setup.last_refusal = None;
        if setup.steps.is_empty() {
            self.become_ready(filter_type, list_size);
            return;
        }
        match self.send_step(now, &mut setup, transport) {
            Ok(()) => self.state = State::SettingUp(setup),
            Err(e) => self.fail(e),
        }
    }

    fn become_ready(&mut self, filter_type: FilterType, list_size: u16) {
        self.state = State::Ready;
        self.events.push_back(ProxyEvent::Ready {
            filter_type,
            list_size,
        });
        for pdu in std::mem::take(&mut self.held) {
            self.stats.network_pdus_out += 1;
            self.tx
                .extend(self.sar.segment(ProxyMessageType::NETWORK_PDU, &pdu));
        }
    }

    fn handle_beacon<S: SeqSource>(&mut self, beacon: &[u8], transport: &mut Transport<S>) {
        let opened = self.subnets.iter().find_map(|(&index, s)| {
            if let Some(state) = s.old.open(beacon) {
                return Some((index, false, state));
            }
            s.new
                .as_ref()
                .and_then(|n| n.open(beacon))
                .map(|state| (index, true, state))
        });
        let Some((index, new_key, state)) = opened else {
            // Unprovisioned device beacons, other networks, forgeries.
            self.stats.dropped += 1;
            return;
        };
        self.stats.beacons += 1;

        // IV Index: Normal(n) < In Progress(n + 1) < Normal(n + 1).
        let current = transport.network().iv_index();
        let offered = IvIndex {
            index: state.iv_index,
            update: state.flags & FLAG_IV_UPDATE != 0,
        };
        let order = |iv: IvIndex| (iv.index, !iv.update);
        if order(offered) > order(current)
            && u64::from(offered.index) <= u64::from(current.index) + u64::from(MAX_IV_RECOVERY)
        {
            transport.network_mut().set_iv_index(offered);
            self.events.push_back(ProxyEvent::IvIndexUpdated {
                from: current,
                to: offered,
            });
        }

        // Key Refresh: only a beacon secured with the new key moves the phase.
        if !new_key {
            return;
        }
        let Some(s) = self.subnets.get_mut(&index) else {
            return;
        };
        let key_refresh = state.flags & FLAG_KEY_REFRESH != 0;
        let app_keys = transport.app_keys_of(index);
        if key_refresh && s.phase == 1 {
            s.phase = 2;
            // The subnet and its keys are there: the calls cannot fail.
            let _ = transport.network_mut().use_new_key(index);
            for a in app_keys {
                let _ = transport.use_new_app_key(a);
            }
            self.events.push_back(ProxyEvent::KeyRefresh {
                net_key_index: index,
                phase: 2,
            });
        } else if !key_refresh && s.phase != 0 {
            if let Some(n) = s.new.take() {
                s.old = n;
            }
            s.phase = 0;
            let _ = transport.network_mut().revoke_old_key(index);
            for a in app_keys {
                let _ = transport.revoke_old_app_key(a);
            }
            self.events.push_back(ProxyEvent::KeyRefresh {
                net_key_index: index,
                phase: 0,
            });
        }
    }

    /// Runs the timers due at `now`: the SAR reassembly timer (§6.6: the connection fails)
    /// and the filter set-up timer (the message is sent again, or after the last attempt the
    /// set-up fails with [`ProxyError::FilterTimeout`] or, if the server answered with the
    /// wrong filter, [`ProxyError::FilterRefused`]). A spurious call is a no-op.
    pub fn handle_timeout<S: SeqSource>(&mut self, now: Instant, transport: &mut Transport<S>) {
        if let Some(e) = self.sar.handle_timeout(now)
            && !matches!(self.state, State::Disconnected | State::Failed(_))
        {
            self.fail(ProxyError::Sar(e));
            return;
        }
        if !matches!(&self.state, State::SettingUp(s) if s.deadline <= now) {
            return;
        }
        let State::SettingUp(mut setup) = std::mem::replace(&mut self.state, State::Disconnected)
        else {
            return;
        };
        if setup.attempts >= self.config.filter_timeouts.len() {
            let step = setup.steps.front().map_or(
                ProxyConfigOpcode::SET_FILTER_TYPE,
                ProxyConfigMessage::opcode,
            );
            let e = match (setup.last_refusal, setup.steps.front()) {
                (Some((filter_type, list_size)), Some(m)) => ProxyError::FilterRefused {
                    filter_type,
                    list_size,
                    expected_type: match m {
                        ProxyConfigMessage::SetFilterType { filter_type } => *filter_type,
                        _ => FilterType::ACCEPT_LIST,
                    },
                    expected_size: match m {
                        ProxyConfigMessage::AddAddresses { addresses } => {
                            setup.expected_size.saturating_add(addresses.len() as u16)
                        }
                        _ => 0,
                    },
                },
                _ => ProxyError::FilterTimeout {
                    step,
                    attempts: setup.attempts,
                },
            };
            self.fail(e);
            return;
        }
        match self.send_step(now, &mut setup, transport) {
            Ok(()) => self.state = State::SettingUp(setup),
            Err(e) => self.fail(e),
        }
    }

    /// The next value to write to Mesh Proxy Data In.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ProxyEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let setup = match &self.state {
            State::SettingUp(s) => Some(s.deadline),
            _ => None,
        };
        [setup, self.sar.poll_timeout()].into_iter().flatten().min()
    }
}

/// A network message cache (§3.4.6.5): the (IV Index, SRC, SEQ) of the last network PDUs
/// seen, so that a relay forwards each PDU once however many copies arrive (a Network
/// Transmit count above one, other relays, PDUs coming back). Keyed after decryption, because
/// a relayed copy is encrypted anew with another TTL and so differs in every octet after the
/// first. The oldest entry is forgotten when the cache is full.
#[derive(Debug, Clone)]
pub struct NetworkCache {
    capacity: usize,
    seen: HashSet<(u32, u16, u32)>,
    order: VecDeque<(u32, u16, u32)>,
}

impl NetworkCache {
    /// A cache of `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Records the PDU; returns whether it was new.
    pub fn insert(&mut self, pdu: &NetworkPdu) -> bool {
        let key = (pdu.iv_index, pdu.header.src, pdu.header.seq);
        if !self.seen.insert(key) {
            return false;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Settings of a [`ProxyServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyServerConfig {
    /// Most addresses in the filter list.
    pub filter_capacity: usize,
    /// Entries of the network message cache.
    pub cache_capacity: usize,
}

impl Default for ProxyServerConfig {
    fn default() -> Self {
        Self {
            filter_capacity: 16,
            cache_capacity: 256,
        }
    }
}

/// Counters of a [`ProxyServer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyServerStats {
    /// Network PDUs from the client handed to the node's stack.
    pub from_client: u64,
    /// Of those, relayed to the advertising bearer.
    pub relayed_to_adv: u64,
    /// Network PDUs from the advertising bearer relayed to the client.
    pub relayed_to_client: u64,
    /// PDUs of the node's own stack sent to the client.
    pub own_to_client: u64,
    /// PDUs not forwarded because the network message cache had seen them.
    pub cached: u64,
    /// Proxy configuration messages answered.
    pub config_messages: u64,
    /// Proxy PDUs dropped: not authenticated, replayed, malformed, RFU types, beacons (this
    /// server does not process beacons from the client).
    pub dropped: u64,
}

/// A node's proxy server for one GATT connection (MshPRT v1.1 §6.6), sans-IO. See the module
/// documentation for what it does; the node drives it:
///
/// - every Data In write → [`handle_data`](Self::handle_data);
/// - every network PDU received on the advertising bearer →
///   [`relay_from_adv`](Self::relay_from_adv) (after handing it to its own stack);
/// - every network PDU its own stack sends → [`route_own`](Self::route_own), which says
///   whether it must still go on the advertising bearer;
/// - [`poll_transmit`](Self::poll_transmit) → Data Out notifications,
///   [`poll_relay`](Self::poll_relay) → advertising bearer.
#[derive(Debug)]
pub struct ProxyServer {
    config: ProxyServerConfig,
    primary: u16,
    sar: ProxySar,
    filter_type: FilterType,
    filter: BTreeSet<u16>,
    cache: NetworkCache,
    gatt_out: VecDeque<Vec<u8>>,
    adv_out: VecDeque<Transmit>,
    last_config: Option<(u16, u32, u32)>,
    stats: ProxyServerStats,
}

impl ProxyServer {
    /// A connection with this ATT MTU to the node whose primary element is `primary`, with
    /// an empty accept list (§6.6).
    pub fn new(att_mtu: u16, primary: u16, config: ProxyServerConfig) -> Self {
        Self {
            cache: NetworkCache::new(config.cache_capacity),
            config,
            primary,
            sar: ProxySar::new(att_mtu),
            filter_type: FilterType::ACCEPT_LIST,
            filter: BTreeSet::new(),
            gatt_out: VecDeque::new(),
            adv_out: VecDeque::new(),
            last_config: None,
            stats: ProxyServerStats::default(),
        }
    }

    /// The filter type.
    pub fn filter_type(&self) -> FilterType {
        self.filter_type
    }

    /// The addresses in the filter list.
    pub fn filter_addresses(&self) -> impl Iterator<Item = u16> + '_ {
        self.filter.iter().copied()
    }

    /// Whether a PDU to `dst` passes the filter towards the client (§6.4).
    pub fn accepts(&self, dst: u16) -> bool {
        let listed = self.filter.contains(&dst);
        if self.filter_type == FilterType::REJECT_LIST {
            !listed
        } else {
            listed
        }
    }

    /// Counters.
    pub fn stats(&self) -> ProxyServerStats {
        self.stats
    }

    /// Queues a Secure Network beacon for `key`'s subnet (§6.6: one per subnet when the
    /// connection opens, and whenever the node's beacon state changes).
    pub fn send_secure_network_beacon(&mut self, key: &NetKey, key_refresh: bool, iv: IvIndex) {
        let flags =
            (u8::from(key_refresh) * FLAG_KEY_REFRESH) | (u8::from(iv.update) * FLAG_IV_UPDATE);
        let beacon = beacon_crypto::secure_network_encode(
            &toolbox::beacon_key(key),
            BeaconState {
                flags,
                iv_index: iv.index,
            },
            &toolbox::k3(key),
        );
        self.send_beacon(&beacon);
    }

    /// Queues a mesh beacon (type octet first) for the client.
    pub fn send_beacon(&mut self, beacon: &[u8]) {
        self.gatt_out
            .extend(self.sar.segment(ProxyMessageType::MESH_BEACON, beacon));
    }

    fn filter_add(&mut self, a: u16) {
        if a != address::UNASSIGNED && self.filter.len() < self.config.filter_capacity {
            self.filter.insert(a);
        }
    }

    /// Handles one write of Mesh Proxy Data In at `now`. Network PDUs from the client go to
    /// `transport` (the node's own stack) and, unless addressed to one of its elements and if
    /// their TTL is 2 or more, to [`poll_relay`](Self::poll_relay) with TTL − 1; proxy
    /// configuration messages are answered with Filter Status.
    ///
    /// Errors (disconnect): SAR violations, a Provisioning PDU.
    pub fn handle_data<S: SeqSource>(
        &mut self,
        now: Instant,
        value: &[u8],
        transport: &mut Transport<S>,
    ) -> Result<(), ProxyError> {
        let (message_type, pdu) = match self.sar.handle_segment(now, value)? {
            Some(m) => m,
            None => return Ok(()),
        };
        match message_type {
            ProxyMessageType::NETWORK_PDU => self.network_pdu_from_client(now, &pdu, transport),
            ProxyMessageType::PROXY_CONFIGURATION => self.handle_config(&pdu, transport),
            ProxyMessageType::PROVISIONING_PDU => {
                return Err(ProxyError::WrongMessageType(message_type));
            }
            // Beacons from a client and RFU types: ignored.
            _ => self.stats.dropped += 1,
        }
        Ok(())
    }

    fn network_pdu_from_client<S: SeqSource>(
        &mut self,
        now: Instant,
        pdu: &[u8],
        transport: &mut Transport<S>,
    ) {
        let Ok(n) = transport.network().authenticate(pdu) else {
            self.stats.dropped += 1;
            return;
        };
        if !self.cache.insert(&n) {
            self.stats.cached += 1;
            return;
        }
        // §6.6: the client's own address joins an accept list, leaves a reject list.
        if self.filter_type == FilterType::ACCEPT_LIST {
            self.filter_add(n.header.src);
        } else {
            self.filter.remove(&n.header.src);
        }
        self.stats.from_client += 1;
        // Not for us, a replay: the stack drops it.
        let _ = transport.handle_network_pdu(now, pdu);
        let for_us_only =
            address::is_unicast(n.header.dst) && transport.network().is_element(n.header.dst);
        if !for_us_only
            && n.header.ttl >= 2
            && let Ok(t) = transport.network().reencrypt(&n, n.header.ttl - 1)
        {
            self.stats.relayed_to_adv += 1;
            self.adv_out.push_back(t);
        }
    }

    fn handle_config<S: SeqSource>(&mut self, pdu: &[u8], transport: &mut Transport<S>) {
        let Ok(n) = transport.network().decrypt_proxy_config(pdu) else {
            self.stats.dropped += 1;
            return;
        };
        let key = (n.header.src, n.iv_index, n.header.seq);
        if self
            .last_config
            .is_some_and(|(src, iv, seq)| src == key.0 && (iv, seq) >= (key.1, key.2))
        {
            self.stats.dropped += 1;
            return;
        }
        self.last_config = Some(key);
        let Ok(message) = ProxyConfigMessage::parse(&n.transport_pdu) else {
            self.stats.dropped += 1;
            return;
        };
        match message {
            ProxyConfigMessage::SetFilterType { filter_type } => {
                self.filter_type = filter_type;
                self.filter.clear();
            }
            ProxyConfigMessage::AddAddresses { addresses } => {
                for a in addresses {
                    self.filter_add(a);
                }
            }
            ProxyConfigMessage::RemoveAddresses { addresses } => {
                for a in addresses {
                    self.filter.remove(&a);
                }
            }
            ProxyConfigMessage::FilterStatus { .. } => {
                self.stats.dropped += 1;
                return;
            }
        }
        self.stats.config_messages += 1;
        let status = ProxyConfigMessage::FilterStatus {
            filter_type: self.filter_type,
            list_size: self.filter.len() as u16,
        };
        if let Ok(reply) = transport.network_mut().encrypt_proxy_config(
            n.net_key_index,
            self.primary,
            &status.to_vec(),
        ) {
            self.gatt_out.extend(
                self.sar
                    .segment(ProxyMessageType::PROXY_CONFIGURATION, &reply),
            );
        }
    }

    /// A network PDU the node received on the advertising bearer (already given to its own
    /// stack): forwarded to the client with TTL − 1 when it authenticates, is not the node's
    /// own, is new to the network message cache, has a TTL of 2 or more and passes the filter.
    /// Returns whether it was forwarded.
    pub fn relay_from_adv<S: SeqSource>(&mut self, pdu: &[u8], net: &NetworkLayer<S>) -> bool {
        let Ok(n) = net.authenticate(pdu) else {
            return false;
        };
        if net.is_element(n.header.src) {
            return false;
        }
        if !self.cache.insert(&n) {
            self.stats.cached += 1;
            return false;
        }
        if n.header.ttl < 2 || !self.accepts(n.header.dst) {
            return false;
        }
        let Ok(t) = net.reencrypt(&n, n.header.ttl - 1) else {
            return false;
        };
        self.stats.relayed_to_client += 1;
        self.gatt_out
            .extend(self.sar.segment(ProxyMessageType::NETWORK_PDU, &t.pdu));
        true
    }

    /// A network PDU the node's own stack sends: goes to the client unchanged when its
    /// destination passes the filter. Returns whether it must (also) go on the advertising
    /// bearer: not when it went to the client and its destination is a unicast address (the
    /// client is the only way to it, as Zephyr decides).
    pub fn route_own<S: SeqSource>(&mut self, t: &Transmit, net: &NetworkLayer<S>) -> bool {
        let Ok(n) = net.authenticate(&t.pdu) else {
            return true;
        };
        self.cache.insert(&n);
        if !self.accepts(n.header.dst) {
            return true;
        }
        self.stats.own_to_client += 1;
        self.gatt_out
            .extend(self.sar.segment(ProxyMessageType::NETWORK_PDU, &t.pdu));
        !address::is_unicast(n.header.dst)
    }

    /// The next value to notify on Mesh Proxy Data Out.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.gatt_out.pop_front()
    }

    /// The next network PDU to relay on the advertising bearer.
    pub fn poll_relay(&mut self) -> Option<Transmit> {
        self.adv_out.pop_front()
    }

    /// The SAR reassembly timer (§6.6): an error means disconnect.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<ProxyError> {
        self.sar.handle_timeout(now).map(ProxyError::Sar)
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sar.poll_timeout()
    }
}
