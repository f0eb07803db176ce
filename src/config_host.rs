//! The configuring side, sans-IO: a [`Transport`] and a [`ConfigClient`] with the provisioner's
//! element, the nodes' device keys and the bookkeeping of each request's outcome.
//!
//! A driver feeds it network PDUs heard on the air ([`ConfigHost::handle_network_pdu`]) and
//! time, calls [`ConfigHost::drive`], and advertises what [`ConfigHost::poll_transmit`] gives
//! (AD type 0x2A, each PDU `transmissions` times `interval` apart). The real-time driver
//! ([`crate::live::configure`]) is one; requests are matched to their status replies and retried
//! on the client's time-outs (MshPRT v1.1 §4.3 Configuration Client; §3.5 transport).

use std::collections::BTreeMap;
use std::time::Duration;

use mesh_crypto::{DevKey, NetKey};

use crate::net::NetError;
use crate::net::config::{ConfigClient, ConfigClientConfig, ConfigEvent, ConfigMessage, RequestId};
use crate::net::network::{IvIndex, NetworkConfig, NetworkLayer, SeqSource, Transmit};
use crate::net::transport::{
    AccessSend, Destination, KeySelect, KeyUsed, Transport, TransportConfig, TransportEvent,
};
use crate::sim::configure::{ConfigOutcome, ConfigResult};
use crate::time::Instant;

/// A node as the configuring side needs it.
#[derive(Clone, Debug)]
pub struct ConfigNode {
    /// Primary element address.
    pub address: u16,
    /// Its device key.
    pub device_key: DevKey,
    /// The subnet to reach it on.
    pub net_key_index: u16,
}

/// See the module documentation.
pub struct ConfigHost<S> {
    transport: Transport<S>,
    client: ConfigClient,
    own_address: u16,
    subnet_of: BTreeMap<u16, u16>,
    results: Vec<ConfigResult>,
    tracks: BTreeMap<RequestId, usize>,
}

impl<S> std::fmt::Debug for ConfigHost<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigHost")
            .field("own_address", &self.own_address)
            .field("requests", &self.results.len())
            .finish_non_exhaustive()
    }
}

impl<S: SeqSource> ConfigHost<S> {
    /// The provisioner's element `own_address` on the subnets `subnets` (index, key) at IV
    /// Index `iv_index`, configuring `nodes`; SEQ numbers come from `seq`.
    pub fn new(
        own_address: u16,
        iv_index: u32,
        subnets: &[(u16, NetKey)],
        nodes: &[ConfigNode],
        client: ConfigClientConfig,
        seq: S,
    ) -> Self {
        let mut net = NetworkLayer::new(
            NetworkConfig::default(),
            IvIndex {
                index: iv_index,
                update: false,
            },
            seq,
        );
        for (index, key) in subnets {
            net.add_subnet(*index, key);
        }
        net.add_element(own_address);
        let mut transport = Transport::new(TransportConfig::default(), net);
        let mut subnet_of = BTreeMap::new();
        for n in nodes {
            transport.add_dev_key(n.address, n.device_key.clone());
            subnet_of.insert(n.address, n.net_key_index);
        }
        Self {
            transport,
            client: ConfigClient::new(client),
            own_address,
            subnet_of,
            results: Vec::new(),
            tracks: BTreeMap::new(),
        }
    }

    /// Adds a node to configure (a node provisioned after this host was made): its device
    /// key and subnet. A node already known is replaced.
    pub fn add_node(&mut self, node: &ConfigNode) {
        self.transport
            .add_dev_key(node.address, node.device_key.clone());
        self.subnet_of.insert(node.address, node.net_key_index);
    }

    /// Queues `message` for `node` (one request per node in flight; the next waits for the
    /// status or time-out of the previous); returns its index in [`ConfigHost::results`].
    pub fn request(
        &mut self,
        now: Instant,
        node: u16,
        message: ConfigMessage,
    ) -> Result<usize, NetError> {
        if !self.subnet_of.contains_key(&node) {
            return Err(NetError::UnknownKey {
                what: "device key",
                index: node,
            });
        }
        let id = self.client.request(now, node, message.clone())?;
        self.tracks.insert(id, self.results.len());
        self.results.push(ConfigResult {
            node,
            request: message,
            outcome: ConfigOutcome::TimedOut,
            attempts: 0,
            started: None,
            elapsed: Duration::ZERO,
        });
        Ok(self.results.len() - 1)
    }

    /// A network PDU (AD type 0x2A data) heard on the air. Other traffic, replays and PDUs
    /// for others are dropped, as the network layer decides.
    pub fn handle_network_pdu(&mut self, now: Instant, pdu: &[u8]) {
        let _ = self.transport.handle_network_pdu(now, pdu);
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.transport.handle_timeout(now);
        self.client.handle_timeout(now);
    }

    /// Settles what can happen at `now`; returns whether anything did.
    pub fn drive(&mut self, now: Instant) -> bool {
        let mut progress = false;
        loop {
            let mut step = false;
            while let Some(t) = self.client.poll_transmit() {
                step = true;
                if let Some(i) = self.tracks.get(&t.id) {
                    let r = &mut self.results[*i];
                    r.attempts = t.attempt;
                    r.started.get_or_insert(now);
                }
                let subnet = self.subnet_of.get(&t.dst).copied().unwrap_or(0);
                let send = AccessSend::new(
                    subnet,
                    self.own_address,
                    Destination::Address(t.dst),
                    KeySelect::Dev,
                    t.access_pdu,
                );
                // A request that cannot be sent (SEQ exhausted) is retried by the client and
                // ends as a time-out.
                let _ = self.transport.send_access(now, send);
            }
            while let Some(ev) = self.transport.poll_event() {
                step = true;
                if let TransportEvent::Access(m) = ev
                    && m.key == KeyUsed::Dev(m.src)
                {
                    self.client.handle_message(now, m.src, &m.access_pdu);
                }
            }
            while let Some(ev) = self.client.poll_event() {
                step = true;
                let (id, outcome) = match ev {
                    ConfigEvent::Response { id, message, .. } => {
                        (id, ConfigOutcome::Status(message))
                    }
                    ConfigEvent::TimedOut { id, .. } => (id, ConfigOutcome::TimedOut),
                };
                if let Some(i) = self.tracks.remove(&id) {
                    let r = &mut self.results[i];
                    r.outcome = outcome;
                    r.elapsed = now.saturating_duration_since(r.started.unwrap_or(now));
                }
            }
            if !step {
                return progress;
            }
            progress = true;
        }
    }

    /// The next network PDU to advertise (all of them at once: see
    /// [`ConfigHost::poll_transmit_at`] for a driver that pulls when its radio is free).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transport.poll_transmit()
    }

    /// The next network PDU, taken at `now` by a radio that sends it now
    /// ([`Transport::poll_transmit_at`]). A driver that calls it only when its radio can take
    /// a PDU leaves the backlog here: segmented requests are then retransmitted only after
    /// their round went on air (MshPRT v1.1 §3.5.3.3.1), acknowledged segments and superseded
    /// Segment Acknowledgments are withdrawn before they are sent.
    pub fn poll_transmit_at(&mut self, now: Instant) -> Option<Transmit> {
        self.transport.poll_transmit_at(now)
    }

    /// Network PDUs waiting for [`ConfigHost::poll_transmit_at`].
    pub fn transmits_waiting(&self) -> usize {
        self.transport.transmits_waiting()
    }

    /// When [`ConfigHost::handle_timeout`] is next needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.transport.poll_timeout(), self.client.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Requests not yet answered or given up.
    pub fn pending(&self) -> usize {
        self.client.pending()
    }

    /// Whether request `i` (an index into [`ConfigHost::results`]) still waits for its
    /// status or its last time-out.
    pub fn is_pending(&self, i: usize) -> bool {
        self.tracks.values().any(|j| *j == i)
    }

    /// Every request so far with its outcome (`TimedOut` while pending).
    pub fn results(&self) -> &[ConfigResult] {
        &self.results
    }

    /// The transport (keys, statistics).
    pub fn transport_mut(&mut self) -> &mut Transport<S> {
        &mut self.transport
    }
}
