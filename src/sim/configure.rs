//! Configuration on the simulated air, in virtual time: the provisioner runs a [`Transport`]
//! and a [`ConfigClient`] on the advertising bearer (AD type 0x2A) against the building's
//! virtual devices, already provisioned, each running its node stack and Configuration Server
//! ([`crate::sim::node`]).
//!
//! [`configure`] takes the provisioned nodes (address, device key, NetKey: from a
//! [`RunReport`] with [`ProvisionedNode::from_result`], or from the store with
//! [`ProvisionedNode::from_store`]) and the Config
//! requests per node, sends them (one request per node in flight, retried on the client's
//! timeouts), and returns each request's status or its time-out, with the virtual devices so
//! that their resulting state can be read. [`provision_and_configure`] provisions with
//! [`run`](crate::sim::run::run) first and then configures, the configuration phase's clock
//! continuing where provisioning ended.
//!
//! The air is a fresh [`SimAir`] with the building's settings (loss, latency, jitter, radio
//! interval), seeded from [`ConfigOptions::seed`]; the provisioning run's air is not reused, so
//! that `sim::run` keeps its API and its devices.
//!
//! [`ConfigOptions::bearer`] picks the provisioner's bearer: the advertising bearer
//! ([`ConfigBearer::Adv`], every node heard and reached directly), or a GATT connection to one
//! proxy node ([`ConfigBearer::Proxy`]): the provisioner then neither sends nor hears
//! advertisements; a [`ProxyClient`] sets up the proxy filter and carries every network PDU
//! over GATT, and the proxy node relays to and from the others on the advertising bearer.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use mesh_crypto::{DevKey, NetKey};

use crate::net::NetError;
use crate::net::config::{ConfigClient, ConfigClientConfig, ConfigEvent, ConfigMessage, RequestId};
use crate::net::network::{IvIndex, MemorySeqSource, NetworkConfig, NetworkLayer, SeqSource};
use crate::net::proxy::{ProxyClient, ProxyClientConfig, ProxyError, ProxyEvent};
use crate::net::transport::{
    AccessSend, Destination, KeySelect, KeyUsed, Transport, TransportConfig, TransportEvent,
};
use crate::radio::sim::{AirStats, Delivery, SimAir};
use crate::sim::building::{Building, DeviceSpec};
use crate::sim::node::{
    AD_TYPE_MESH_MESSAGE, DeviceState, NetAdvQueue, ProxyRefused, VirtualDevice,
};
use crate::sim::run::{DeviceResult, NodeSink, RunError, RunOptions, RunReport, run};
use crate::store::{NodeRef, Store, StoreError};
use crate::time::Instant;
use crate::uuid::DeviceUuid;

/// A node that was provisioned: what the provisioner knows of it.
#[derive(Clone, Debug)]
pub struct ProvisionedNode {
    /// Device UUID (finds its spec in the building file).
    pub uuid: DeviceUuid,
    /// Primary element address.
    pub address: u16,
    /// Device key.
    pub device_key: DevKey,
    /// The NetKey it was given.
    pub net_key: NetKey,
    /// Its index.
    pub net_key_index: u16,
    /// The IV Index.
    pub iv_index: u32,
}

impl ProvisionedNode {
    /// The node a successful provisioning session left, from the device's own view of its
    /// keys; `None` if the device is not provisioned.
    pub fn from_result(r: &DeviceResult) -> Option<Self> {
        match &r.device_state {
            DeviceState::Provisioned {
                address,
                device_key,
                net_key,
                net_key_index,
                iv_index,
            } if r.outcome.is_ok() => Some(Self {
                uuid: r.uuid,
                address: *address,
                device_key: device_key.clone(),
                net_key: net_key.clone(),
                net_key_index: *net_key_index,
                iv_index: *iv_index,
            }),
            _ => None,
        }
    }
}

impl ProvisionedNode {
    /// A node of the store (by address or UUID) with its first NetKey and the network's IV
    /// Index.
    pub fn from_store(store: &Store, node: &NodeRef) -> Result<Self, StoreError> {
        let n = store.node(node)?;
        let net_key_index = n.net_keys.first().copied().unwrap_or(0);
        Ok(Self {
            uuid: n.uuid,
            address: n.address,
            device_key: n.device_key,
            net_key: store.net_key(net_key_index)?,
            net_key_index,
            iv_index: store.network()?.iv_index,
        })
    }
}

/// The store as the provisioner's [`SeqSource`]: every block is committed before it is used
/// (`Store::reserve_seq`), so SEQ numbers survive a crash.
#[derive(Debug)]
pub struct StoreSeq<'a>(pub &'a mut Store);

impl SeqSource for StoreSeq<'_> {
    fn reserve_seq(&mut self, element: u16, block: u32) -> Result<Range<u32>, NetError> {
        self.0
            .reserve_seq(element, block)
            .map_err(|e| NetError::SeqUnavailable(e.to_string()))
    }
}

/// The bearer the provisioner configures through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConfigBearer {
    /// The advertising bearer (AD type 0x2A): every node is heard and reached directly.
    #[default]
    Adv,
    /// A GATT connection to the Mesh Proxy service of the node at primary address `via`
    /// (MshPRT v1.1 §6): the provisioner talks only to that node and reaches the others
    /// through it, as phone apps do.
    Proxy {
        /// The proxy node's primary address.
        via: u16,
    },
}

/// Options of a simulated configuration run.
#[derive(Clone, Debug)]
pub struct ConfigOptions {
    /// Seed of the air.
    pub seed: u64,
    /// Overrides the building's advertising loss.
    pub loss: Option<f64>,
    /// The provisioner's own unicast address (the Config client's element).
    pub address: u16,
    /// Request timeouts and retries.
    pub client: ConfigClientConfig,
    /// Give up on the whole run after this much virtual time (from `start`).
    pub deadline: Duration,
    /// Virtual time the run starts at.
    pub start: Instant,
    /// Nodes (primary addresses) whose device is off the air: they never answer. A silent
    /// proxy node (see [`ConfigOptions::bearer`]) accepts the GATT connection but never
    /// answers on it.
    pub silent: Vec<u16>,
    /// The provisioner's bearer.
    pub bearer: ConfigBearer,
}

impl Default for ConfigOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            loss: None,
            address: 0x7fff,
            client: ConfigClientConfig::default(),
            deadline: Duration::from_secs(600),
            start: Instant::ZERO,
            silent: Vec::new(),
            bearer: ConfigBearer::Adv,
        }
    }
}

/// How one request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigOutcome {
    /// The node's status message.
    Status(ConfigMessage),
    /// No answer after every attempt (or before the run's deadline).
    TimedOut,
}

/// One request and its outcome.
#[derive(Clone, Debug)]
pub struct ConfigResult {
    /// The node's primary address.
    pub node: u16,
    /// The request.
    pub request: ConfigMessage,
    /// Its status or time-out.
    pub outcome: ConfigOutcome,
    /// Transmissions of the request (1 without retries).
    pub attempts: usize,
    /// Virtual time of the first transmission.
    pub started: Option<Instant>,
    /// From the first transmission to the status (or the time-out).
    pub elapsed: Duration,
}

impl ConfigResult {
    /// The status message, if the node answered.
    pub fn status(&self) -> Option<&ConfigMessage> {
        match &self.outcome {
            ConfigOutcome::Status(m) => Some(m),
            ConfigOutcome::TimedOut => None,
        }
    }
}

/// The whole configuration run.
#[derive(Debug)]
pub struct ConfigReport {
    /// One result per request, in the order given (node by node).
    pub results: Vec<ConfigResult>,
    /// Virtual time at the end of the run.
    pub virtual_time: Duration,
    /// What the air did.
    pub air: AirStats,
    /// The virtual devices after the run, with the primary address each was configured at
    /// ([`VirtualDevice::config_server`] shows their state).
    pub devices: Vec<(u16, VirtualDevice)>,
}

impl ConfigReport {
    /// The virtual device configured at `address`.
    pub fn device(&self, address: u16) -> Option<&VirtualDevice> {
        self.devices
            .iter()
            .find(|(a, _)| *a == address)
            .map(|(_, d)| d)
    }
}

/// Why a configuration run could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    /// A node's UUID is not in the building file.
    #[error("device {0} is not in the building file")]
    UnknownDevice(DeviceUuid),
    /// A request names an address that is none of the given nodes.
    #[error("no provisioned node at address {0:#06x}")]
    UnknownNode(u16),
    /// No nodes: nothing to take the network keys from.
    #[error("no provisioned nodes to configure")]
    NoNodes,
    /// A request was refused by the client (a status message, a bad address).
    #[error("request to {node:#06x}: {error}")]
    BadRequest {
        /// The node.
        node: u16,
        /// Why.
        error: NetError,
    },
    /// The proxy node refused the GATT connection to its Mesh Proxy service.
    #[error("node {via:#06x} refused the proxy connection: {reason}")]
    ProxyRefused {
        /// The proxy node.
        via: u16,
        /// Why.
        reason: ProxyRefused,
    },
    /// The proxy connection failed: the filter set-up was not answered or refused, or the
    /// proxy node broke the proxy protocol.
    #[error("proxy connection to {via:#06x}: {error}")]
    Proxy {
        /// The proxy node.
        via: u16,
        /// Why.
        error: ProxyError,
    },
}

/// Why [`provision_and_configure`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionConfigureError {
    /// Provisioning could not start.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Configuration could not start.
    #[error(transparent)]
    Configure(#[from] ConfigureError),
}

struct Track {
    result: usize,
}

/// The provisioner's end of a proxy connection.
struct ProxyLink {
    via: u16,
    peer: crate::radio::sim::EndpointId,
    client: ProxyClient,
    failure: Option<ProxyError>,
    /// When the proxy node's closing of the connection reaches the provisioner.
    closed_at: Option<Instant>,
}

/// Configures `nodes` with `requests` (primary address, requests in order) on a fresh
/// simulated air; SEQ numbers of the provisioner come from memory.
pub fn configure(
    building: &Building,
    nodes: &[ProvisionedNode],
    requests: &[(u16, Vec<ConfigMessage>)],
    opts: &ConfigOptions,
) -> Result<ConfigReport, ConfigureError> {
    configure_with(building, nodes, requests, opts, MemorySeqSource::new())
}

/// [`configure`] with the provisioner's SEQ numbers from `seq` (the store through
/// [`StoreSeq`], for example).
pub fn configure_with<S: SeqSource>(
    building: &Building,
    nodes: &[ProvisionedNode],
    requests: &[(u16, Vec<ConfigMessage>)],
    opts: &ConfigOptions,
    seq: S,
) -> Result<ConfigReport, ConfigureError> {
    let first = nodes.first().ok_or(ConfigureError::NoNodes)?;
    let mut air_config = building.air.clone();
    if let Some(loss) = opts.loss {
        air_config.loss = loss;
    }
    let mut air = SimAir::new(air_config, opts.seed);
    air.advance_to(opts.start);
    let me = air.add_endpoint();

    let mut devices: Vec<(u16, VirtualDevice)> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let spec: DeviceSpec = building
            .device(&n.uuid)
            .ok_or(ConfigureError::UnknownDevice(n.uuid))?
            .clone();
        if opts.silent.contains(&n.address) {
            continue;
        }
        let ep = air.add_endpoint();
        let state = DeviceState::Provisioned {
            address: n.address,
            device_key: n.device_key.clone(),
            net_key: n.net_key.clone(),
            net_key_index: n.net_key_index,
            iv_index: n.iv_index,
        };
        let seed = opts.seed.wrapping_add(3000 + i as u64);
        devices.push((n.address, VirtualDevice::provisioned(spec, ep, seed, state)));
    }

    let mut net = NetworkLayer::new(
        NetworkConfig::default(),
        IvIndex {
            index: first.iv_index,
            update: false,
        },
        seq,
    );
    let mut subnet_of: BTreeMap<u16, u16> = BTreeMap::new();
    for n in nodes {
        net.add_subnet(n.net_key_index, &n.net_key);
        subnet_of.insert(n.address, n.net_key_index);
    }
    net.add_element(opts.address);
    let mut prov = Transport::new(TransportConfig::default(), net);
    for n in nodes {
        prov.add_dev_key(n.address, n.device_key.clone());
    }

    let mut now = air.now();
    let mut proxy = match opts.bearer {
        ConfigBearer::Adv => None,
        ConfigBearer::Proxy { via } => {
            let node = nodes
                .iter()
                .find(|n| n.address == via)
                .ok_or(ConfigureError::UnknownNode(via))?;
            let mtu = building.device(&node.uuid).map_or(23, |s| s.mtu);
            let peer = match devices.iter_mut().find(|(a, _)| *a == via) {
                Some((_, dev)) => {
                    dev.proxy_connected(me, mtu)
                        .map_err(|reason| ConfigureError::ProxyRefused { via, reason })?;
                    dev.endpoint
                }
                // A silent proxy node: connected, but nothing answers on the connection.
                None => air.add_endpoint(),
            };
            let mut client = ProxyClient::new(ProxyClientConfig {
                address: opts.address,
                net_key_index: node.net_key_index,
                ..ProxyClientConfig::default()
            });
            for n in nodes {
                client.add_subnet(n.net_key_index, &n.net_key);
            }
            client
                .connect(now, mtu, &mut prov)
                .map_err(|error| ConfigureError::Proxy { via, error })?;
            Some(ProxyLink {
                via,
                peer,
                client,
                failure: None,
                closed_at: None,
            })
        }
    };
    let mut client = ConfigClient::new(opts.client.clone());
    let mut results = Vec::new();
    let mut tracks: BTreeMap<RequestId, Track> = BTreeMap::new();
    for (node, list) in requests {
        if !subnet_of.contains_key(node) {
            return Err(ConfigureError::UnknownNode(*node));
        }
        for r in list {
            let id = client
                .request(now, *node, r.clone())
                .map_err(|error| ConfigureError::BadRequest { node: *node, error })?;
            tracks.insert(
                id,
                Track {
                    result: results.len(),
                },
            );
            results.push(ConfigResult {
                node: *node,
                request: r.clone(),
                outcome: ConfigOutcome::TimedOut,
                attempts: 0,
                started: None,
                elapsed: Duration::ZERO,
            });
        }
    }

    let deadline = opts.start + opts.deadline;
    let mut out = NetAdvQueue::default();
    loop {
        // Let everything settle at this instant.
        loop {
            let mut progress = false;
            while let Some(d) = air.pop_due() {
                progress = true;
                if d.to() == me {
                    match (&d, &mut proxy) {
                        (Delivery::Adv { ad_type, data, .. }, None)
                            if *ad_type == AD_TYPE_MESH_MESSAGE =>
                        {
                            // Other traffic, replays, PDUs for others: dropped, as on a real
                            // air.
                            let _ = prov.handle_network_pdu(now, data);
                        }
                        (Delivery::Gatt { from, data, .. }, Some(link)) if *from == link.peer => {
                            // Failures also come out as events.
                            let _ = link.client.handle_notification(now, data, &mut prov);
                        }
                        _ => {}
                    }
                } else if let Some((_, dev)) =
                    devices.iter_mut().find(|(_, v)| v.endpoint == d.to())
                {
                    dev.handle_delivery(now, &d);
                }
            }
            while let Some(t) = client.poll_transmit() {
                progress = true;
                if let Some(track) = tracks.get(&t.id) {
                    let r = &mut results[track.result];
                    r.attempts = t.attempt;
                    r.started.get_or_insert(now);
                }
                let send = AccessSend::new(
                    subnet_of
                        .get(&t.dst)
                        .copied()
                        .unwrap_or(first.net_key_index),
                    opts.address,
                    Destination::Address(t.dst),
                    KeySelect::Dev,
                    t.access_pdu,
                );
                // A request that cannot be sent (SEQ exhausted) is retried by the client and
                // ends as a time-out.
                let _ = prov.send_access(now, send);
            }
            while let Some(t) = prov.poll_transmit() {
                progress = true;
                match &mut proxy {
                    // Refused only once the connection failed: the run ends then.
                    Some(link) => {
                        let _ = link.client.send_network_pdu(&t.pdu);
                    }
                    None => out.push(now, &t),
                }
            }
            if let Some(link) = &mut proxy {
                while let Some(value) = link.client.poll_transmit() {
                    progress = true;
                    air.gatt_send(me, link.peer, &value);
                }
                while let Some(ev) = link.client.poll_event() {
                    progress = true;
                    if let ProxyEvent::Failed(e) = ev {
                        link.failure.get_or_insert(e);
                    }
                }
            }
            while let Some(ev) = prov.poll_event() {
                progress = true;
                if let TransportEvent::Access(m) = ev
                    && m.key == KeyUsed::Dev(m.src)
                {
                    client.handle_message(now, m.src, &m.access_pdu);
                }
            }
            while let Some(ev) = client.poll_event() {
                progress = true;
                let (id, outcome) = match ev {
                    ConfigEvent::Response { id, message, .. } => {
                        (id, ConfigOutcome::Status(message))
                    }
                    ConfigEvent::TimedOut { id, .. } => (id, ConfigOutcome::TimedOut),
                };
                if let Some(track) = tracks.remove(&id) {
                    let r = &mut results[track.result];
                    r.outcome = outcome;
                    r.elapsed = now.saturating_duration_since(r.started.unwrap_or(now));
                }
            }
            for (_, d) in &mut devices {
                d.pump(now, &mut air);
            }
            progress |= out.pump(now, &mut air, me);
            if air.next_delivery().is_some_and(|t| t <= now) {
                progress = true;
            }
            if !progress {
                break;
            }
        }

        // The proxy node closed the connection: what it sent before still arrives (GATT
        // delivers in order, within its latency); requests still waiting after that fail.
        if let Some(link) = &mut proxy
            && link.failure.is_none()
            && devices
                .iter()
                .any(|(a, d)| *a == link.via && d.proxy_server().is_none())
        {
            let closed = *link
                .closed_at
                .get_or_insert(now + air.config().gatt_latency);
            if now >= closed && client.pending() > 0 {
                link.client.disconnected();
                link.failure = Some(ProxyError::ConnectionLost);
            }
        }
        if let Some(ProxyLink {
            via,
            failure: Some(error),
            ..
        }) = &proxy
        {
            return Err(ConfigureError::Proxy {
                via: *via,
                error: error.clone(),
            });
        }
        if client.pending() == 0 && out.is_empty() {
            break;
        }
        let mut next: Option<Instant> = air.next_delivery();
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(prov.poll_timeout());
        consider(client.poll_timeout());
        consider(out.poll_timeout(&air, me));
        if let Some(link) = &proxy {
            consider(link.client.poll_timeout());
            consider(link.closed_at.filter(|t| *t > now));
        }
        for (_, d) in &devices {
            consider(d.poll_timeout_with(&air));
        }
        let Some(t) = next else { break };
        if t > deadline {
            break;
        }
        air.advance_to(t.max(now));
        now = air.now();
        prov.handle_timeout(now);
        client.handle_timeout(now);
        if let Some(link) = &mut proxy {
            link.client.handle_timeout(now, &mut prov);
        }
        for (_, d) in &mut devices {
            d.handle_timeout(now);
        }
    }
    // Requests still pending at the deadline stay TimedOut.
    for track in tracks.values() {
        let r = &mut results[track.result];
        r.elapsed = now.saturating_duration_since(r.started.unwrap_or(now));
    }

    Ok(ConfigReport {
        results,
        virtual_time: now.since_epoch(),
        air: air.stats(),
        devices,
    })
}

/// Provisions `targets` with [`run_with`] and then configures each node that was provisioned
/// with the requests `requests_for` gives it; the configuration phase starts at the virtual
/// time provisioning ended.
pub fn provision_and_configure(
    building: &Building,
    targets: &[DeviceUuid],
    run_opts: &RunOptions,
    sink: &mut dyn NodeSink,
    mut requests_for: impl FnMut(&ProvisionedNode) -> Vec<ConfigMessage>,
    config_opts: &ConfigOptions,
) -> Result<(RunReport, ConfigReport), ProvisionConfigureError> {
    let report = run(building, targets, run_opts, sink)?;
    let nodes: Vec<ProvisionedNode> = report
        .results
        .iter()
        .filter_map(ProvisionedNode::from_result)
        .collect();
    let requests: Vec<(u16, Vec<ConfigMessage>)> =
        nodes.iter().map(|n| (n.address, requests_for(n))).collect();
    let opts = ConfigOptions {
        start: Instant::ZERO + report.virtual_time,
        ..config_opts.clone()
    };
    let config = configure(building, &nodes, &requests, &opts)?;
    Ok((report, config))
}
