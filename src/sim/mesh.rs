//! A provisioner's Configuration Client and provisioned virtual nodes on one simulated air, in
//! virtual time: the loop that [`configure`](crate::sim::configure) and
//! [`key_refresh`](crate::sim::key_refresh) share.
//!
//! [`SimMesh`] owns the air ([`SimAir`]), the provisioner's [`Transport`] and [`ConfigClient`]
//! on the advertising bearer (network PDUs as AD type 0x2A, one advertisement per radio
//! interval, each PDU as often as the Network Transmit state says), and the nodes. A driver
//! queues requests ([`SimMesh::request`]) and calls [`SimMesh::run_until_events`], which moves
//! the clock until the client reports answers or time-outs; between two calls the driver may
//! change the provisioner's keys ([`SimMesh::transport_mut`]), queue more requests, send Secure
//! Network beacons ([`SimMesh::set_beacon`]) or take nodes off the air
//! ([`SimMesh::set_silent`]). Everything is deterministic for a given seed.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::net::NetError;
use crate::net::config::{ConfigClient, ConfigEvent, ConfigMessage, RequestId};
use crate::net::network::{IvIndex, NetworkConfig, NetworkLayer, SeqSource};
use crate::net::proxy::{ProxyClient, ProxyClientConfig, ProxyError, ProxyEvent};
use crate::net::transport::{
    AccessSend, Destination, KeySelect, KeyUsed, Transport, TransportConfig, TransportEvent,
};
use crate::radio::sim::{AdvPattern, AirStats, Delivery, EndpointId, RxFilter, SimAir};
use crate::sim::building::{Building, DeviceSpec};
use crate::sim::configure::{ConfigOptions, ConfigureError};
use crate::sim::node::{
    AD_TYPE_MESH_BEACON, AD_TYPE_MESH_MESSAGE, DeviceState, NetAdvQueue, VirtualDevice,
};
use crate::time::Instant;

/// One node on the air.
#[derive(Debug)]
struct MeshNode {
    address: u16,
    device: VirtualDevice,
    silent: bool,
}

/// The provisioner's end of a proxy connection.
#[derive(Debug)]
struct ProxyLink {
    via: u16,
    peer: EndpointId,
    client: ProxyClient,
    failure: Option<ProxyError>,
    /// When the proxy node's closing of the connection reaches the provisioner.
    closed_at: Option<Instant>,
}

/// What the mesh knows of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLog {
    /// The node it went to.
    pub dst: u16,
    /// Virtual time of its first transmission.
    pub first_sent: Option<Instant>,
    /// Transmissions so far.
    pub attempts: usize,
}

/// The provisioner and its nodes on one simulated air (see the module documentation).
#[derive(Debug)]
pub struct SimMesh<S> {
    air: SimAir,
    me: EndpointId,
    now: Instant,
    address: u16,
    nodes: Vec<MeshNode>,
    prov: Transport<S>,
    client: ConfigClient,
    out: NetAdvQueue,
    subnet_of: BTreeMap<RequestId, u16>,
    log: BTreeMap<RequestId, RequestLog>,
    sent_to: BTreeMap<u16, usize>,
    beacon: Option<(Vec<u8>, Duration)>,
    next_beacon: Option<Instant>,
    beacon_waiting: VecDeque<Vec<u8>>,
    proxy: Option<ProxyLink>,
}

impl<S: SeqSource> SimMesh<S> {
    /// An air with the building's settings (loss overridden by `opts.loss`), seeded from
    /// `opts.seed`, its clock at `opts.start`, and a provisioner at `opts.address` with the
    /// Config client settings of `opts`, the IV Index `iv_index`, its SEQ numbers from `seq`
    /// and no keys yet (add them through [`transport_mut`](Self::transport_mut)). No nodes.
    pub fn new(building: &Building, opts: &ConfigOptions, iv_index: u32, seq: S) -> Self {
        let mut air_config = building.air.clone();
        if let Some(loss) = opts.loss {
            air_config.loss = loss;
        }
        let mut air = SimAir::new(air_config, opts.seed);
        air.advance_to(opts.start);
        let me = air.add_endpoint();
        air.set_floor(me, building.provisioner.floor);
        // The provisioner's scanner takes network PDUs only (it drops everything else).
        air.set_rx_filter(
            me,
            RxFilter::Patterns(vec![AdvPattern {
                ad_type: AD_TYPE_MESH_MESSAGE,
                offset: 0,
                bytes: Vec::new(),
            }]),
        );
        let mut net = NetworkLayer::new(
            NetworkConfig::default(),
            IvIndex {
                index: iv_index,
                update: false,
            },
            seq,
        );
        net.add_element(opts.address);
        Self {
            now: air.now(),
            air,
            me,
            address: opts.address,
            nodes: Vec::new(),
            prov: Transport::new(TransportConfig::default(), net),
            client: ConfigClient::new(opts.client.clone()),
            out: NetAdvQueue::default(),
            subnet_of: BTreeMap::new(),
            log: BTreeMap::new(),
            sent_to: BTreeMap::new(),
            beacon: None,
            next_beacon: None,
            beacon_waiting: VecDeque::new(),
            proxy: None,
        }
    }

    /// Puts a node that was provisioned with `state` on the air (its device built from `spec`,
    /// its randomness from `seed`), and returns it.
    pub fn add_provisioned(
        &mut self,
        spec: DeviceSpec,
        state: DeviceState,
        seed: u64,
    ) -> &mut VirtualDevice {
        let address = match &state {
            DeviceState::Provisioned { address, .. } => *address,
            DeviceState::Unprovisioned => 0,
        };
        let ep = self.air.add_endpoint();
        let mut device = VirtualDevice::provisioned(spec, ep, seed, state);
        device.attach(&mut self.air);
        self.push(address, device)
    }

    /// Puts a device of an earlier run (it keeps its state) on this air as the node at
    /// `address`, and returns it.
    pub fn add_device(&mut self, address: u16, mut device: VirtualDevice) -> &mut VirtualDevice {
        device.rejoin(self.air.add_endpoint());
        device.attach(&mut self.air);
        self.push(address, device)
    }

    fn push(&mut self, address: u16, device: VirtualDevice) -> &mut VirtualDevice {
        self.nodes.push(MeshNode {
            address,
            device,
            silent: false,
        });
        let i = self.nodes.len() - 1;
        &mut self.nodes[i].device
    }

    /// From now on the provisioner talks only over GATT to the Mesh Proxy service of the node
    /// at `via` (ATT MTU `mtu`): the proxy client sets up its filter on subnet
    /// `net_key_index` and carries every network PDU; `subnets` are the keys it checks
    /// beacons with. A node that is not on this air (silent) accepts the connection but never
    /// answers on it.
    pub fn connect_proxy(
        &mut self,
        via: u16,
        mtu: u16,
        net_key_index: u16,
        subnets: &[(u16, mesh_crypto::NetKey)],
    ) -> Result<(), ConfigureError> {
        let me = self.me;
        let peer = match self.nodes.iter_mut().find(|n| n.address == via) {
            Some(n) => {
                n.device
                    .proxy_connected(me, mtu)
                    .map_err(|reason| ConfigureError::ProxyRefused { via, reason })?;
                n.device.endpoint
            }
            None => {
                // Off the air: it hears nothing.
                let ep = self.air.add_endpoint();
                self.air.set_rx_filter(ep, RxFilter::Patterns(Vec::new()));
                ep
            }
        };
        // Over GATT only: the provisioner no longer scans.
        self.air.set_rx_filter(me, RxFilter::Patterns(Vec::new()));
        let mut client = ProxyClient::new(ProxyClientConfig {
            address: self.address,
            net_key_index,
            ..ProxyClientConfig::default()
        });
        for (index, key) in subnets {
            client.add_subnet(*index, key);
        }
        client
            .connect(self.now, mtu, &mut self.prov)
            .map_err(|error| ConfigureError::Proxy { via, error })?;
        self.proxy = Some(ProxyLink {
            via,
            peer,
            client,
            failure: None,
            closed_at: None,
        });
        Ok(())
    }

    /// Why the proxy connection failed (filter set-up not answered or refused, the proxy node
    /// closed it while requests still needed it), with the proxy node's address.
    pub fn proxy_failure(&self) -> Option<(u16, ProxyError)> {
        let link = self.proxy.as_ref()?;
        link.failure.clone().map(|e| (link.via, e))
    }

    /// Takes the node at `address` off the air (`true`: it hears and sends nothing, its
    /// timers stand still) or puts it back. Returns whether there is such a node.
    pub fn set_silent(&mut self, address: u16, silent: bool) -> bool {
        let mut found = false;
        for n in self.nodes.iter_mut().filter(|n| n.address == address) {
            n.silent = silent;
            found = true;
        }
        found
    }

    /// Whether the node at `address` is off the air.
    pub fn is_silent(&self, address: u16) -> bool {
        self.nodes.iter().any(|n| n.address == address && n.silent)
    }

    /// The provisioner's transport (and network layer): its keys, device keys, IV Index.
    pub fn transport(&self) -> &Transport<S> {
        &self.prov
    }

    /// The provisioner's transport, to change its keys between two runs of the loop.
    pub fn transport_mut(&mut self) -> &mut Transport<S> {
        &mut self.prov
    }

    /// The provisioner's unicast address.
    pub fn address(&self) -> u16 {
        self.address
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// What the air has done so far.
    pub fn air_stats(&self) -> AirStats {
        self.air.stats()
    }

    /// The node at `address`.
    pub fn device(&self, address: u16) -> Option<&VirtualDevice> {
        self.nodes
            .iter()
            .find(|n| n.address == address)
            .map(|n| &n.device)
    }

    /// The node at `address`, mutable.
    pub fn device_mut(&mut self, address: u16) -> Option<&mut VirtualDevice> {
        self.nodes
            .iter_mut()
            .find(|n| n.address == address)
            .map(|n| &mut n.device)
    }

    /// The nodes: primary address and device, in the order added.
    pub fn devices(&self) -> impl Iterator<Item = (u16, &VirtualDevice)> + '_ {
        self.nodes.iter().map(|n| (n.address, &n.device))
    }

    /// The nodes, to carry into a later run ([`add_device`](Self::add_device)) or inspect.
    pub fn into_devices(self) -> Vec<(u16, VirtualDevice)> {
        self.nodes
            .into_iter()
            .map(|n| (n.address, n.device))
            .collect()
    }

    /// Queues `message` for the node at `dst`, to go out on subnet `net_key_index` secured
    /// with the node's device key (which the provisioner's transport must hold). The client
    /// sends one request per node at a time and retries it on its time-outs.
    pub fn request(
        &mut self,
        dst: u16,
        net_key_index: u16,
        message: ConfigMessage,
    ) -> Result<RequestId, NetError> {
        let id = self.client.request(self.now, dst, message)?;
        self.subnet_of.insert(id, net_key_index);
        self.log.insert(
            id,
            RequestLog {
                dst,
                first_sent: None,
                attempts: 0,
            },
        );
        Ok(id)
    }

    /// What happened to a request so far.
    pub fn request_log(&self, id: RequestId) -> Option<RequestLog> {
        self.log.get(&id).copied()
    }

    /// How many request transmissions went to each node (retries included).
    pub fn sent_to(&self) -> &BTreeMap<u16, usize> {
        &self.sent_to
    }

    /// Requests not yet answered or given up.
    pub fn pending(&self) -> usize {
        self.client.pending()
    }

    /// Sends `beacon` (a mesh beacon with its type octet, AD type 0x2B) from the provisioner
    /// now and then every `interval`, until replaced or cleared with `None`.
    pub fn set_beacon(&mut self, beacon: Option<(Vec<u8>, Duration)>) {
        self.next_beacon = beacon.as_ref().map(|_| self.now);
        self.beacon = beacon;
    }

    /// Runs the air until the Config client reports something (answers, time-outs), or it has
    /// nothing left to wait for, or the next thing to happen is after `deadline`. Returns the
    /// client's events (empty: idle or deadline).
    pub fn run_until_events(&mut self, deadline: Instant) -> Vec<ConfigEvent> {
        let mut events = Vec::new();
        loop {
            self.settle(&mut events);
            self.check_proxy_closed();
            if self.proxy_failure().is_some()
                || !events.is_empty()
                || (self.client.pending() == 0 && self.out.is_empty())
            {
                return events;
            }
            let mut next: Option<Instant> = self.air.next_delivery();
            let mut consider = |t: Option<Instant>| {
                if let Some(t) = t {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
            };
            consider(self.prov.poll_timeout());
            consider(self.client.poll_timeout());
            consider(self.out.poll_timeout(&self.air, self.me));
            consider(self.next_beacon);
            if let Some(link) = &self.proxy {
                consider(link.client.poll_timeout());
                consider(link.closed_at.filter(|t| *t > self.now));
            }
            if !self.beacon_waiting.is_empty() {
                consider(Some(self.air.adv_ready_at(self.me)));
            }
            for n in self.nodes.iter().filter(|n| !n.silent) {
                consider(n.device.poll_timeout_with(&self.air));
            }
            let Some(t) = next else {
                return events;
            };
            if t > deadline {
                return events;
            }
            self.air.advance_to(t.max(self.now));
            self.now = self.air.now();
            self.prov.handle_timeout(self.now);
            self.client.handle_timeout(self.now);
            if let Some(link) = &mut self.proxy {
                link.client.handle_timeout(self.now, &mut self.prov);
            }
            for n in self.nodes.iter_mut().filter(|n| !n.silent) {
                n.device.handle_timeout(self.now);
            }
        }
    }

    /// The proxy node closed the connection: what it sent before still arrives (GATT delivers
    /// in order, within its latency); requests still waiting after that fail.
    fn check_proxy_closed(&mut self) {
        let now = self.now;
        let latency = self.air.config().gatt_latency;
        let pending = self.client.pending();
        let Some(link) = &mut self.proxy else { return };
        if link.failure.is_some() {
            return;
        }
        let closed = self
            .nodes
            .iter()
            .any(|n| n.address == link.via && n.device.proxy_server().is_none());
        if closed {
            let at = *link.closed_at.get_or_insert(now + latency);
            if now >= at && pending > 0 {
                link.client.disconnected();
                link.failure = Some(ProxyError::ConnectionLost);
            }
        }
    }

    /// Lets everything settle at this instant, collecting the client's events.
    fn settle(&mut self, events: &mut Vec<ConfigEvent>) {
        let now = self.now;
        loop {
            let mut progress = false;
            while let Some(d) = self.air.pop_due() {
                progress = true;
                if d.to() == self.me {
                    match (&d, &mut self.proxy) {
                        (Delivery::Adv { ad_type, data, .. }, None)
                            if *ad_type == AD_TYPE_MESH_MESSAGE =>
                        {
                            // Other traffic, replays, PDUs for others: dropped, as on a real
                            // air.
                            let _ = self.prov.handle_network_pdu(now, data);
                        }
                        (Delivery::Gatt { from, data, .. }, Some(link)) if *from == link.peer => {
                            // Failures also come out as events.
                            let _ = link.client.handle_notification(now, data, &mut self.prov);
                        }
                        _ => {}
                    }
                } else if let Some(n) = self.nodes.iter_mut().find(|n| n.device.endpoint == d.to())
                    && !n.silent
                {
                    n.device.handle_delivery(now, &d);
                }
            }
            while let Some(t) = self.client.poll_transmit() {
                progress = true;
                if let Some(l) = self.log.get_mut(&t.id) {
                    l.attempts = t.attempt;
                    l.first_sent.get_or_insert(now);
                }
                *self.sent_to.entry(t.dst).or_default() += 1;
                let subnet = self.subnet_of.get(&t.id).copied().unwrap_or(0);
                let send = AccessSend::new(
                    subnet,
                    self.address,
                    Destination::Address(t.dst),
                    KeySelect::Dev,
                    t.access_pdu,
                );
                // A request that cannot be sent (SEQ exhausted, no key) is retried by the
                // client and ends as a time-out.
                let _ = self.prov.send_access(now, send);
            }
            while let Some(t) = self.prov.poll_transmit() {
                progress = true;
                match &mut self.proxy {
                    // Refused only once the connection failed: the run ends then.
                    Some(link) => {
                        let _ = link.client.send_network_pdu(&t.pdu);
                    }
                    None => self.out.push(now, &t),
                }
            }
            if let Some(link) = &mut self.proxy {
                while let Some(value) = link.client.poll_transmit() {
                    progress = true;
                    self.air.gatt_send(self.me, link.peer, &value);
                }
                while let Some(ev) = link.client.poll_event() {
                    progress = true;
                    if let ProxyEvent::Failed(e) = ev {
                        link.failure.get_or_insert(e);
                    }
                }
            }
            while let Some(ev) = self.prov.poll_event() {
                progress = true;
                if let TransportEvent::Access(m) = ev
                    && m.key == KeyUsed::Dev(m.src)
                {
                    self.client.handle_message(now, m.src, &m.access_pdu);
                }
            }
            while let Some(ev) = self.client.poll_event() {
                progress = true;
                let id = match &ev {
                    ConfigEvent::Response { id, .. } | ConfigEvent::TimedOut { id, .. } => *id,
                };
                self.subnet_of.remove(&id);
                events.push(ev);
            }
            for n in self.nodes.iter_mut().filter(|n| !n.silent) {
                n.device.pump(now, &mut self.air);
            }
            if let Some(t) = self.next_beacon
                && t <= now
                && let Some((b, interval)) = &self.beacon
            {
                self.beacon_waiting.push_back(b.clone());
                self.next_beacon = Some(now + *interval);
                progress = true;
            }
            // The radio sends one advertisement per interval: beacons first, then PDUs.
            if self.air.adv_ready_at(self.me) <= now
                && let Some(b) = self.beacon_waiting.pop_front()
            {
                self.air.advertise(self.me, AD_TYPE_MESH_BEACON, &b);
                progress = true;
            }
            progress |= self.out.pump(now, &mut self.air, self.me);
            if self.air.next_delivery().is_some_and(|t| t <= now) {
                progress = true;
            }
            if !progress {
                break;
            }
        }
    }
}
