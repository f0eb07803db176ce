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
//! The air is a fresh [`SimMesh`] with the building's channel model (floors, loss,
//! collisions, scanning, advertising interval), seeded from [`ConfigOptions::seed`]; the provisioning run's air is not reused, so
//! that `sim::run` keeps its API and its devices. The returned devices can be carried into a
//! later run ([`SimMesh::add_device`]).
//!
//! [`ConfigOptions::bearer`] picks the provisioner's bearer: the advertising bearer
//! ([`ConfigBearer::Adv`], every node heard and reached directly), or a GATT connection to one
//! proxy node ([`ConfigBearer::Proxy`]): the provisioner then neither sends nor hears
//! advertisements; a [`ProxyClient`](crate::net::proxy::ProxyClient) sets up the proxy filter and
//! carries every network PDU over GATT, and the proxy node relays to and from the others on the
//! advertising bearer.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use mesh_crypto::{DevKey, NetKey};

use crate::net::NetError;
use crate::net::config::{ConfigClientConfig, ConfigEvent, ConfigMessage, RequestId};
use crate::net::network::{MemorySeqSource, SeqSource};
use crate::net::proxy::ProxyError;
use crate::radio::sim::AirStats;
use crate::sim::building::{Building, DeviceSpec};
use crate::sim::mesh::SimMesh;
use crate::sim::node::{DeviceState, ProxyRefused, VirtualDevice};
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
    /// [`configure`]: nodes being configured at once (default 4); the others wait for a free
    /// slot. One radio sends one advertisement per 20 ms and the transport's SAR timers start
    /// when segments are queued, not when they go on air: beyond about 5 segmented requests in
    /// flight the queue outgrows the SAR interval and the client's first time-out,
    /// retransmissions feed the queue and the run collapses (AppKey Add to 30 nodes at 0 %
    /// loss: 7.2 s with 2–4 nodes at once, 34 s with 6, 45 s with 8). 0: no limit.
    pub max_nodes_in_flight: usize,
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
            max_nodes_in_flight: 4,
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
    let mut mesh = SimMesh::new(building, opts, first.iv_index, seq);
    let mut subnet_of: BTreeMap<u16, u16> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let spec: DeviceSpec = building
            .device(&n.uuid)
            .ok_or(ConfigureError::UnknownDevice(n.uuid))?
            .clone();
        subnet_of.insert(n.address, n.net_key_index);
        let t = mesh.transport_mut();
        t.network_mut().add_subnet(n.net_key_index, &n.net_key);
        t.add_dev_key(n.address, n.device_key.clone());
        if opts.silent.contains(&n.address) {
            // Off the air: the device does not exist for this run.
            continue;
        }
        let state = DeviceState::Provisioned {
            address: n.address,
            device_key: n.device_key.clone(),
            net_key: n.net_key.clone(),
            net_key_index: n.net_key_index,
            iv_index: n.iv_index,
        };
        mesh.add_provisioned(spec, state, opts.seed.wrapping_add(3000 + i as u64));
    }
    if let ConfigBearer::Proxy { via } = opts.bearer {
        let node = nodes
            .iter()
            .find(|n| n.address == via)
            .ok_or(ConfigureError::UnknownNode(via))?;
        let mtu = building.device(&node.uuid).map_or(23, |s| s.mtu);
        let subnets: Vec<(u16, NetKey)> = nodes
            .iter()
            .map(|n| (n.net_key_index, n.net_key.clone()))
            .collect();
        mesh.connect_proxy(via, mtu, node.net_key_index, &subnets)?;
    }

    let mut results = Vec::new();
    // Per node: its results' indexes, started in order once the node has a slot.
    let mut waiting: std::collections::VecDeque<(u16, u16, Vec<usize>)> = Default::default();
    for (node, list) in requests {
        let Some(subnet) = subnet_of.get(node).copied() else {
            return Err(ConfigureError::UnknownNode(*node));
        };
        let mut mine = Vec::new();
        for r in list {
            mine.push(results.len());
            results.push(ConfigResult {
                node: *node,
                request: r.clone(),
                outcome: ConfigOutcome::TimedOut,
                attempts: 0,
                started: None,
                elapsed: Duration::ZERO,
            });
        }
        waiting.push_back((*node, subnet, mine));
    }
    let limit = match opts.max_nodes_in_flight {
        0 => usize::MAX,
        n => n,
    };
    let mut tracks: BTreeMap<RequestId, usize> = BTreeMap::new();
    // Requests still to be answered per node being configured.
    let mut busy: BTreeMap<u16, usize> = BTreeMap::new();

    let deadline = opts.start + opts.deadline;
    loop {
        while busy.len() < limit {
            let Some((node, subnet, mine)) = waiting.pop_front() else {
                break;
            };
            if mine.is_empty() {
                continue;
            }
            for i in &mine {
                let id = mesh
                    .request(node, subnet, results[*i].request.clone())
                    .map_err(|error| ConfigureError::BadRequest { node, error })?;
                tracks.insert(id, *i);
            }
            busy.insert(node, mine.len());
        }
        let events = mesh.run_until_events(deadline);
        if let Some((via, error)) = mesh.proxy_failure() {
            return Err(ConfigureError::Proxy { via, error });
        }
        if events.is_empty() {
            break;
        }
        let now = mesh.now();
        for ev in events {
            let (id, outcome) = match ev {
                ConfigEvent::Response { id, message, .. } => (id, ConfigOutcome::Status(message)),
                ConfigEvent::TimedOut { id, .. } => (id, ConfigOutcome::TimedOut),
            };
            if let Some(i) = tracks.remove(&id) {
                let node = results[i].node;
                if let Some(left) = busy.get_mut(&node) {
                    *left -= 1;
                    if *left == 0 {
                        busy.remove(&node);
                    }
                }
                let r = &mut results[i];
                r.outcome = outcome;
                if let Some(log) = mesh.request_log(id) {
                    r.attempts = log.attempts;
                    r.started = log.first_sent;
                }
                r.elapsed = now.saturating_duration_since(r.started.unwrap_or(now));
            }
        }
    }
    // Requests still pending at the deadline stay TimedOut.
    let now = mesh.now();
    for (id, i) in tracks {
        let r = &mut results[i];
        if let Some(log) = mesh.request_log(id) {
            r.attempts = log.attempts;
            r.started = log.first_sent;
        }
        r.elapsed = now.saturating_duration_since(r.started.unwrap_or(now));
    }

    Ok(ConfigReport {
        results,
        virtual_time: now.since_epoch(),
        air: mesh.air_stats(),
        devices: mesh.into_devices(),
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
