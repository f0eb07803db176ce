//! A virtual device on the simulated air: the device side of PB-ADV and PB-GATT and the
//! provisionee state machine ([`crate::provisioning::Device`]), built from a building file's
//! [`DeviceSpec`].
//!
//! Once provisioned, the device runs a node stack: a [`Transport`] with the NetKey and device
//! key it was given, on the advertising bearer (AD type 0x2A, Mesh Message), and a
//! [`ConfigServer`] with the Composition Data of its spec that answers Configuration messages
//! secured with its device key. Each network PDU goes on air as often as the node's Network
//! Transmit state says, one advertisement per radio interval ([`NetAdvQueue`]). Node Reset
//! sends its status and then forgets everything: the device is unprovisioned again and can be
//! provisioned anew.
//!
//! On the air ([`VirtualDevice::attach`]) the device sits on its floor, sends its Unprovisioned
//! Device beacon every [`DeviceSpec::beacon_interval`] while it is unprovisioned and has no
//! link (as Zephyr and ESP-IDF, which stop beaconing during provisioning), and computes ECDH
//! for [`DeviceSpec::ecdh`] when the provisioner's Public Key arrives, answering nothing
//! meanwhile (Zephyr's order: the shared secret first, then its own Public Key). Its scanner
//! only passes up what it would not drop anyway ([`RxFilter`]): Link Open for its UUID, PB-ADV
//! on its link, network PDUs and Secure Network beacons once provisioned.
//!
//! A node whose Composition Data has the Proxy feature (and whose GATT Proxy state is enabled)
//! accepts a GATT connection to its Mesh Proxy service ([`VirtualDevice::proxy_connected`])
//! and runs a [`ProxyServer`] on it: it sends a Secure Network beacon per subnet, keeps the
//! client's filter, hands the client's network PDUs to its own stack and relays them to the
//! advertising bearer, and forwards to the client what its stack sends and what it hears on
//! the advertising bearer for destinations that pass the filter (TTL − 1, each PDU once).
//!
//! Faults ([`crate::sim::fault`]): a device whose building file gives it a `[device.fault]`
//! table misbehaves here, in the device — it vanishes (powered off: it hears, sends and
//! beacons nothing until it comes back), answers late, answers with Provisioning Failed or
//! garbage, or sends the provisioner's own values back — while the provisioner runs as it
//! always does.
//!
//! Key refresh: NetKey Update, AppKey Update and Key Refresh Phase Set change the node's
//! network and transport keys as the Configuration Server says (phase 1 receives with both
//! keys and sends with the old, phase 2 sends with the new, phase 0 again drops the old), and a
//! Secure Network beacon (AD type 0x2B) authenticated with a subnet's new NetKey moves it on as
//! MshPRT v1.1 §3.6.4.1 says: Key Refresh flag set, phase 1 to 2; flag cleared, phase 1 or 2 to
//! normal operation with the new keys. Beacons secured with the old key, or heard in phase 0,
//! change nothing. A provisioned node does not send beacons itself.

use std::collections::VecDeque;
use std::time::Duration;

use mesh_crypto::beacon::{SECURE_NETWORK_BEACON, secure_network_decode};
use mesh_crypto::ecdh::KeyPair;
use mesh_crypto::{DevKey, NetKey, toolbox};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::bearer::pb_adv::{CloseCause, LinkEvent, LinkId, Links, PbAdvConfig, Role};
use crate::bearer::pb_gatt::PbGattLink;
use crate::net::address;
use crate::net::config::ConfigMessage;
use crate::net::config_server::{ConfigServer, ServerEffect};
use crate::net::network::{IvIndex, MemorySeqSource, NetworkConfig, NetworkLayer, Transmit};
use crate::net::proxy::{ProxyError, ProxyServer, ProxyServerConfig};
use crate::net::transport::{
    AccessSend, Destination, KeySelect, KeyUsed, Transport, TransportConfig, TransportEvent,
};
use crate::provisioning::{Device, DeviceConfig, DeviceEvent, OobValue, TranscriptEntry};
use crate::radio::sim::{AdvPattern, Delivery, EndpointId, RxFilter, SimAir};
use crate::sim::building::{DeviceSpec, InputAction, OutputAction};
use crate::sim::fault::{FaultState, Intercept};
use crate::time::Instant;
use crate::wire::{
    Algorithms, Capabilities, InputOobActions, OobType, OutputOobActions, PduType, PublicKeyType,
    RecordId,
};

/// AD type of PB-ADV (Core Specification Supplement; MshPRT v1.1 §5.2.1).
pub const AD_TYPE_PB_ADV: u8 = 0x29;

/// AD type of a mesh network PDU, «Mesh Message» (MshPRT v1.1 §3.3.1).
pub const AD_TYPE_MESH_MESSAGE: u8 = 0x2a;

/// AD type of a mesh beacon, «Mesh Beacon» (MshPRT v1.1 §3.3.1; Secure Network beacon §3.10.3).
pub const AD_TYPE_MESH_BEACON: u8 = 0x2b;

/// Advertising events per Unprovisioned Device beacon: Zephyr and NimBLE send each beacon three
/// times, 20 ms apart (`UNPROV_XMIT`).
pub const BEACON_TRANSMISSIONS: u8 = 3;

/// Network PDUs waiting for the radio: each [`Transmit`] becomes `transmissions` copies,
/// `interval` apart; the radio takes the first copy that is due whenever it is free.
#[derive(Debug, Default)]
pub struct NetAdvQueue {
    queue: VecDeque<(Instant, Vec<u8>)>,
}

impl NetAdvQueue {
    /// Queues every transmission of `t`, the first at `now`.
    pub fn push(&mut self, now: Instant, t: &Transmit) {
        for k in 0..u32::from(t.transmissions.max(1)) {
            self.queue.push_back((now + t.interval * k, t.pdu.clone()));
        }
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// When the earliest copy is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.iter().map(|(t, _)| *t).min()
    }

    /// Takes the first copy (in queue order) that is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        let i = self.queue.iter().position(|(t, _)| *t <= now)?;
        self.queue.remove(i).map(|(_, p)| p)
    }

    /// Puts one due copy on air from `ep` if its radio is free; returns whether it did.
    pub fn pump(&mut self, now: Instant, air: &mut SimAir, ep: EndpointId) -> bool {
        if air.adv_ready_at(ep) > now {
            return false;
        }
        match self.pop_due(now) {
            Some(pdu) => {
                // One advertising event per copy: Network Transmit makes the repeats.
                air.advertise_count(ep, AD_TYPE_MESH_MESSAGE, &pdu, 1);
                true
            }
            None => false,
        }
    }

    /// When [`pump`](Self::pump) can next send something.
    pub fn poll_timeout(&self, air: &SimAir, ep: EndpointId) -> Option<Instant> {
        self.next_due().map(|t| t.max(air.adv_ready_at(ep)))
    }
}

/// A provisioned device's network stack and Configuration Server.
#[derive(Debug)]
struct NodeStack {
    transport: Transport<MemorySeqSource>,
    server: ConfigServer,
    served: u64,
}

impl NodeStack {
    fn new(
        spec: &DeviceSpec,
        address: u16,
        device_key: &DevKey,
        net_key: &NetKey,
        net_key_index: u16,
        iv_index: u32,
    ) -> Self {
        let mut net = NetworkLayer::new(
            NetworkConfig::default(),
            IvIndex {
                index: iv_index,
                update: false,
            },
            MemorySeqSource::new(),
        );
        net.add_subnet(net_key_index, net_key);
        let elements = spec.composition.elements.len().max(1);
        for i in 0..elements {
            net.add_element(address.wrapping_add(i as u16));
        }
        let mut transport = Transport::new(TransportConfig::default(), net);
        transport.add_dev_key(address, device_key.clone());
        let server = ConfigServer::new(
            spec.composition.clone(),
            address,
            net_key_index,
            net_key.clone(),
        );
        Self {
            transport,
            server,
            served: 0,
        }
    }

    /// A Secure Network beacon (with its type octet): checked against the new NetKey of every
    /// subnet in key refresh phase 1 or 2, and handed to the Configuration Server when one
    /// authenticates it.
    fn handle_beacon(&mut self, beacon: &[u8]) {
        if beacon.first() != Some(&SECURE_NETWORK_BEACON) {
            return;
        }
        let refreshing: Vec<(u16, NetKey)> = self
            .server
            .net_keys()
            .iter()
            .filter(|(_, k)| k.phase == 1 || k.phase == 2)
            .filter_map(|(i, k)| k.new_key.clone().map(|n| (*i, n)))
            .collect();
        for (index, key) in refreshing {
            let Ok(state) =
                secure_network_decode(&toolbox::beacon_key(&key), &toolbox::k3(&key), beacon)
            else {
                continue;
            };
            for effect in self
                .server
                .handle_key_refresh_beacon(index, state.flags & 0x01 != 0)
            {
                self.apply(effect);
            }
        }
    }

    /// Answers the Configuration requests received; returns whether the node was reset.
    fn serve(&mut self, now: Instant) -> bool {
        let mut reset = false;
        while let Some(ev) = self.transport.poll_event() {
            let TransportEvent::Access(m) = ev else {
                continue;
            };
            let primary = self.server.primary();
            // Configuration messages are secured with our device key and sent to the
            // primary element.
            if m.key != KeyUsed::Dev(primary) || m.dst != primary {
                continue;
            }
            let Ok(request) = ConfigMessage::parse_pdu(&m.access_pdu) else {
                continue;
            };
            let answer = self.server.handle(m.net_key_index, &request);
            self.served += 1;
            if let Some(reply) = answer.reply {
                let mut send = AccessSend::new(
                    m.net_key_index,
                    primary,
                    Destination::Address(m.src),
                    KeySelect::Dev,
                    reply.to_pdu(),
                );
                send.ttl = Some(self.server.default_ttl());
                // A reply that cannot be sent (SEQ exhausted) is a lost reply: the client
                // retries.
                let _ = self.transport.send_access(now, send);
            }
            for effect in answer.effects {
                reset |= self.apply(effect);
            }
            if reset {
                break;
            }
        }
        reset
    }

    /// Applies one change of the Configuration Server below the access layer; returns whether
    /// it was Node Reset.
    fn apply(&mut self, effect: ServerEffect) -> bool {
        let t = &mut self.transport;
        // The server only asks for changes to keys it holds: the errors cannot happen.
        match effect {
            ServerEffect::NetKeyAdded { index, key } => t.network_mut().add_subnet(index, &key),
            ServerEffect::NetKeyUpdated { index, key } => {
                let _ = t.network_mut().update_subnet(index, &key);
            }
            ServerEffect::NetKeyDeleted { index } => {
                t.network_mut().remove_subnet(index);
            }
            ServerEffect::KeyRefreshPhase {
                index,
                phase,
                app_keys,
            } => {
                if phase == 2 {
                    let _ = t.network_mut().use_new_key(index);
                    for a in app_keys {
                        let _ = t.use_new_app_key(a);
                    }
                } else {
                    let _ = t.network_mut().revoke_old_key(index);
                    for a in app_keys {
                        let _ = t.revoke_old_app_key(a);
                    }
                }
            }
            ServerEffect::AppKeyAdded {
                index,
                net_key_index,
                key,
            } => t.add_app_key(index, net_key_index, key),
            ServerEffect::AppKeyUpdated { index, key } => {
                let _ = t.update_app_key(index, key);
            }
            ServerEffect::AppKeyDeleted { index } => {
                t.remove_app_key(index);
            }
            ServerEffect::Subscribe(a) if address::is_virtual(a) => {
                for label in self.server.labels() {
                    if mesh_crypto::toolbox::virtual_address(&label) == a {
                        t.subscribe_label(label);
                    }
                }
            }
            ServerEffect::Subscribe(a) => t.network_mut().subscribe(a),
            ServerEffect::Unsubscribe(a) => t.network_mut().unsubscribe(a),
            ServerEffect::NetworkTransmit(x) => t.network_mut().set_transmit(x),
            ServerEffect::Reset => return true,
        }
        false
    }
}

/// Why a virtual device refused a connection to its Mesh Proxy service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyRefused {
    /// The device is not provisioned: it has no Mesh Proxy service yet.
    #[error("the device is not provisioned")]
    NotProvisioned,
    /// Its Composition Data lacks the Proxy feature.
    #[error("the node does not support the GATT Proxy feature")]
    NotSupported,
    /// Its GATT Proxy state is disabled (GATT Proxy Set 0).
    #[error("the node's GATT Proxy state is disabled")]
    Disabled,
}

/// What a virtual device ended with.
#[derive(Debug, Clone)]
pub enum DeviceState {
    /// Not provisioned (yet).
    Unprovisioned,
    /// Provisioned: what it was given.
    Provisioned {
        /// Primary element address.
        address: u16,
        /// Its device key, as the device derived it.
        device_key: DevKey,
        /// The NetKey it received.
        net_key: NetKey,
        /// The NetKey index.
        net_key_index: u16,
        /// The IV Index.
        iv_index: u32,
    },
}

/// The Provisioning Capabilities a device spec advertises (MshPRT v1.1 §5.4.1.2).
pub fn capabilities(spec: &DeviceSpec) -> Capabilities {
    let mut algorithms = Algorithms(0);
    if spec.cmac {
        algorithms = algorithms | Algorithms::CMAC_AES128;
    }
    if spec.hmac {
        algorithms = algorithms | Algorithms::HMAC_SHA256;
    }
    let mut oob_type = OobType(0);
    if spec.static_oob.is_some() {
        oob_type = oob_type | OobType::STATIC_OOB_AVAILABLE;
    }
    if spec.oob_only {
        oob_type = oob_type | OobType::ONLY_OOB_AUTHENTICATED;
    }
    let (output_oob_size, output_oob_action) = match &spec.output_oob {
        None => (0, OutputOobActions(0)),
        Some((size, actions)) => {
            let mut m = OutputOobActions(0);
            for a in actions {
                m = m | match a {
                    OutputAction::Blink => OutputOobActions::BLINK,
                    OutputAction::Beep => OutputOobActions::BEEP,
                    OutputAction::Vibrate => OutputOobActions::VIBRATE,
                    OutputAction::Numeric => OutputOobActions::OUTPUT_NUMERIC,
                    OutputAction::Alphanumeric => OutputOobActions::OUTPUT_ALPHANUMERIC,
                };
            }
            (*size, m)
        }
    };
    let (input_oob_size, input_oob_action) = match &spec.input_oob {
        None => (0, InputOobActions(0)),
        Some((size, actions)) => {
            let mut m = InputOobActions(0);
            for a in actions {
                m = m | match a {
                    InputAction::Push => InputOobActions::PUSH,
                    InputAction::Twist => InputOobActions::TWIST,
                    InputAction::Numeric => InputOobActions::INPUT_NUMERIC,
                    InputAction::Alphanumeric => InputOobActions::INPUT_ALPHANUMERIC,
                };
            }
            (*size, m)
        }
    };
    Capabilities {
        num_elements: spec.elements,
        algorithms,
        public_key_type: if spec.public_key_oob {
            PublicKeyType::OOB_AVAILABLE
        } else {
            PublicKeyType(0)
        },
        oob_type,
        output_oob_size,
        output_oob_action,
        input_oob_size,
        input_oob_action,
    }
}

/// The device's fixed key pair, if the spec gives a private key.
pub fn key_pair(spec: &DeviceSpec) -> Option<KeyPair> {
    spec.private_key
        .and_then(|k| KeyPair::from_private_bytes(&k).ok())
}

/// The provisioning records a device spec serves (MshPRT v1.1 §5.4.1.11; reference §7):
/// 0x0001 the device certificate, 0x0002.. the intermediates, all DER.
pub fn records(spec: &DeviceSpec) -> Vec<(RecordId, Vec<u8>)> {
    let Some(cert) = &spec.certificate else {
        return Vec::new();
    };
    let mut records = vec![(RecordId::DEVICE_CERTIFICATE, cert.clone())];
    // At most 15 intermediates (checked by the building file): IDs 0x0002..=0x0010.
    for (n, der) in (0u16..).zip(&spec.intermediates) {
        records.push((
            RecordId(RecordId::INTERMEDIATE_CERTIFICATE_1.0 + n),
            der.clone(),
        ));
    }
    records
}

/// The device's Unprovisioned Device beacon (MshPRT v1.1 §3.10.2), as the simulated scan
/// hears it ([`crate::sim::scan::unprovisioned_beacon`]): OOB Information from the building
/// file (bits 7 and 8 with a certificate, bit 1 and the URI Hash with a URI).
pub fn unprovisioned_beacon(spec: &DeviceSpec) -> Vec<u8> {
    crate::sim::scan::unprovisioned_beacon(spec)
}

/// What a device has told the air: its scanner filter and whether it beacons.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AirPresence {
    filter: RxFilter,
    beaconing: bool,
}

/// One virtual device on the air.
#[derive(Debug)]
pub struct VirtualDevice {
    /// Its spec.
    pub spec: DeviceSpec,
    /// Its place on the air.
    pub endpoint: EndpointId,
    links: Links,
    link: Option<LinkId>,
    gatt: Option<(EndpointId, PbGattLink)>,
    device: Device,
    displayed: Option<OobValue>,
    input_requested: bool,
    state: DeviceState,
    failure: Option<String>,
    staged: Option<Vec<u8>>,
    link_closed: Option<CloseCause>,
    seed: u64,
    node: Option<NodeStack>,
    net_out: NetAdvQueue,
    /// Computing ECDH until then: transmits wait.
    busy_until: Option<Instant>,
    /// What the air was last told ([`VirtualDevice::attach`]); `None` when never attached.
    presence: Option<AirPresence>,
    /// The state [`VirtualDevice::presence`] was computed from.
    presence_of: Option<PresenceKey>,
    proxy: Option<(EndpointId, ProxyServer)>,
    proxy_error: Option<ProxyError>,
    /// Whether its scanner passes network PDUs on once it is a node (default true); see
    /// [`VirtualDevice::set_network_listening`].
    net_listen: bool,
    /// Switched on ([`DeviceSpec::power_on`] passed): before, it hears and sends nothing.
    powered: bool,
    /// Its faults and what they have done ([`DeviceSpec::faults`]).
    fault: FaultState,
    /// Provisioning PDUs its faults send in place of its own answers.
    fault_out: VecDeque<Vec<u8>>,
}

/// What a device's [`AirPresence`] depends on: provisioned, its link, a link in its table,
/// a GATT connection, listening to network PDUs, switched on, vanished.
type PresenceKey = (bool, Option<LinkId>, bool, bool, bool, bool, bool);

/// A fresh provisionee and PB-ADV link table for `spec`.
fn provisionee(spec: &DeviceSpec, seed: u64) -> (Device, Links) {
    let config = DeviceConfig {
        uuid: spec.uuid.0,
        capabilities: capabilities(spec),
        static_oob: spec.static_oob.clone(),
        key_pair: key_pair(spec),
        output_value: None,
        records: records(spec),
        records_fault: None,
    };
    let device = Device::new(config, Box::new(ChaCha20Rng::seed_from_u64(seed)));
    let links = Links::new(
        Role::Device { uuid: spec.uuid.0 },
        PbAdvConfig::default(),
        Box::new(ChaCha20Rng::seed_from_u64(seed ^ 0x5a5a_5a5a)),
    );
    (device, links)
}

impl VirtualDevice {
    /// A virtual device whose randomness comes from `seed`.
    pub fn new(spec: DeviceSpec, endpoint: EndpointId, seed: u64) -> Self {
        let (device, links) = provisionee(&spec, seed);
        let powered = spec.power_on.is_zero();
        let fault = FaultState::new(spec.faults.clone(), seed);
        Self {
            spec,
            endpoint,
            links,
            link: None,
            gatt: None,
            device,
            displayed: None,
            input_requested: false,
            state: DeviceState::Unprovisioned,
            failure: None,
            staged: None,
            link_closed: None,
            seed,
            node: None,
            net_out: NetAdvQueue::default(),
            busy_until: None,
            presence: None,
            presence_of: None,
            proxy: None,
            proxy_error: None,
            net_listen: true,
            powered,
            fault,
            fault_out: VecDeque::new(),
        }
    }

    /// The same device with a fresh provisioning session from `seed`, as after a reset (the
    /// rollout driver's restart after a failed session). Its faults and what they did so far
    /// stay: a device that vanished is still off, and does not vanish a second time.
    pub fn restarted(self, seed: u64) -> Self {
        let mut v = Self::new(self.spec, self.endpoint, seed);
        v.powered = self.powered;
        v.fault = self.fault;
        v.fault.new_session();
        v
    }

    /// Its faults and what they did ([`crate::sim::fault`]).
    pub fn fault_state(&self) -> &FaultState {
        &self.fault
    }

    /// The device loses power at `now` (its vanish fault): what it held in RAM is gone — its
    /// session, its links, what it was about to send — while a node keeps the keys it stored.
    fn vanish(&mut self, now: Instant) {
        self.fault.vanish(now);
        self.power_cycle();
    }

    /// A fresh provisionee, nothing queued: after a power loss.
    fn power_cycle(&mut self) {
        let (device, links) = provisionee(&self.spec, self.seed.wrapping_add(0x0fff));
        self.device = device;
        self.links = links;
        self.link = None;
        self.gatt = None;
        self.staged = None;
        self.fault_out.clear();
        self.busy_until = None;
        self.displayed = None;
        self.input_requested = false;
        self.net_out = NetAdvQueue::default();
        self.proxy = None;
    }

    /// Whether the node's scanner passes network PDUs (AD type 0x2A) to its host. A rollout
    /// turns it off for nodes it is not configuring: without relaying (not modelled) such a
    /// node only decrypts and drops other nodes' traffic, so this saves the simulation that
    /// work and changes no outcome — the PDUs still occupy the air and collide.
    pub fn set_network_listening(&mut self, air: &mut SimAir, on: bool) {
        if self.net_listen != on {
            self.net_listen = on;
            if self.presence.is_some() {
                self.sync_air(air);
            }
        }
    }

    /// Puts the device on the air: on its floor, with its scanner filter, beaconing while it is
    /// unprovisioned and has no link. Without it the device hears everything and never
    /// beacons.
    pub fn attach(&mut self, air: &mut SimAir) {
        air.set_floor(self.endpoint, self.spec.floor);
        self.presence = None;
        self.presence_of = None;
        self.sync_air(air);
    }

    /// What the air should know now.
    fn wanted_presence(&self) -> AirPresence {
        let pb_adv = |offset: usize, bytes: Vec<u8>| AdvPattern {
            ad_type: AD_TYPE_PB_ADV,
            offset,
            bytes,
        };
        if self.fault.powered_off() {
            // Vanished: it hears and sends nothing.
            return AirPresence {
                filter: RxFilter::Patterns(Vec::new()),
                beaconing: false,
            };
        }
        let mut patterns = Vec::new();
        if self.node.is_some() && self.net_listen {
            patterns.push(AdvPattern {
                ad_type: AD_TYPE_MESH_MESSAGE,
                offset: 0,
                bytes: Vec::new(),
            });
            // Secure Network beacons drive key refresh (§3.6.4.1); other beacons are dropped.
            patterns.push(AdvPattern {
                ad_type: AD_TYPE_MESH_BEACON,
                offset: 0,
                bytes: vec![SECURE_NETWORK_BEACON],
            });
        }
        // A node takes no new link: it is no longer an unprovisioned device (MshPRT v1.1
        // §5.3.1.4.1); the link it was provisioned on may still be closing.
        if self.spec.pb_adv
            && (self.node.is_none() || self.link.is_some() || !self.links.is_empty())
        {
            // Its link's PDUs, or a Link Open for its UUID (Link ID ‖ Transaction Number ‖
            // 0x03 ‖ UUID): the device's PB-ADV table drops everything else.
            patterns.push(match (self.link, self.links.is_empty()) {
                (Some(l), _) => pb_adv(0, l.0.to_be_bytes().to_vec()),
                (None, true) => {
                    let mut b = vec![0x03];
                    b.extend_from_slice(&self.spec.uuid.0);
                    pb_adv(5, b)
                }
                // A link just opened, its event not handled yet: all of PB-ADV.
                (None, false) => pb_adv(0, Vec::new()),
            });
        }
        AirPresence {
            filter: RxFilter::Patterns(patterns),
            beaconing: self.powered
                && self.node.is_none()
                && self.spec.pb_adv
                && !self.spec.beacon_interval.is_zero()
                && self.link.is_none()
                && self.links.is_empty()
                && self.gatt.is_none(),
        }
    }

    /// Tells the air what changed since the last call, if the device is attached.
    fn sync_air(&mut self, air: &mut SimAir) {
        let key = (
            self.node.is_some(),
            self.link,
            self.links.is_empty(),
            self.gatt.is_some(),
            self.net_listen,
            self.powered,
            self.fault.powered_off(),
        );
        if self.presence.is_some() && self.presence_of == Some(key) {
            return;
        }
        self.presence_of = Some(key);
        let wanted = self.wanted_presence();
        let old = self.presence.take();
        if old.as_ref().map(|p| &p.filter) != Some(&wanted.filter) {
            air.set_rx_filter(self.endpoint, wanted.filter.clone());
        }
        if old.as_ref().map(|p| p.beaconing) != Some(wanted.beaconing) {
            if wanted.beaconing {
                air.set_periodic(
                    self.endpoint,
                    AD_TYPE_MESH_BEACON,
                    &unprovisioned_beacon(&self.spec),
                    self.spec.beacon_interval,
                    BEACON_TRANSMISSIONS,
                );
            } else {
                air.stop_periodic(self.endpoint);
            }
        }
        self.presence = Some(wanted);
    }

    /// Hands a provisioning PDU to the provisionee; the provisioner's Public Key starts the
    /// ECDH computation.
    fn take_pdu(&mut self, now: Instant, pdu: &[u8]) {
        let late = self.fault.late();
        match self.fault.received(pdu) {
            Intercept::Pass => {}
            Intercept::Drop => return,
            Intercept::Vanish => {
                self.vanish(now);
                return;
            }
            Intercept::Answer(answer) => {
                self.fault_out.push_back(answer);
                self.hold(now + late);
                return;
            }
        }
        // The type is bits 5..0 of the first octet (MshPRT v1.1 §5.4.1).
        if pdu.first().map(|t| t & 0x3f) == Some(PduType::PUBLIC_KEY.0) {
            self.hold(now + self.spec.ecdh + late);
        } else if !late.is_zero() {
            self.hold(now + late);
        }
        self.device.handle_pdu(now, pdu);
    }

    /// Sends nothing before `until` (ECDH, a late answer).
    fn hold(&mut self, until: Instant) {
        self.busy_until = Some(self.busy_until.map_or(until, |t| t.max(until)));
    }

    /// A device that was already provisioned with `state` (from an earlier run or the store):
    /// its node stack runs from the start. An `Unprovisioned` state gives [`new`](Self::new)'s
    /// device.
    pub fn provisioned(
        spec: DeviceSpec,
        endpoint: EndpointId,
        seed: u64,
        state: DeviceState,
    ) -> Self {
        let mut d = Self::new(spec, endpoint, seed);
        // A node from an earlier run was switched on long ago.
        d.powered = true;
        d.set_provisioned(state);
        d
    }

    fn set_provisioned(&mut self, state: DeviceState) {
        if let DeviceState::Provisioned {
            address,
            device_key,
            net_key,
            net_key_index,
            iv_index,
        } = &state
        {
            self.node = Some(NodeStack::new(
                &self.spec,
                *address,
                device_key,
                net_key,
                *net_key_index,
                *iv_index,
            ));
        }
        self.state = state;
    }

    /// The Configuration Server's state (read-only), while the device is provisioned.
    pub fn config_server(&self) -> Option<&ConfigServer> {
        self.node.as_ref().map(|n| &n.server)
    }

    /// A proxy client connects over GATT from `peer` with this ATT MTU and enables Data Out
    /// notifications: the node sends a Secure Network beacon for each of its subnets (with its
    /// Key Refresh flag and IV Index) and starts with an empty accept list (MshPRT v1.1 §6.6).
    pub fn proxy_connected(&mut self, peer: EndpointId, att_mtu: u16) -> Result<(), ProxyRefused> {
        let Some(node) = &self.node else {
            return Err(ProxyRefused::NotProvisioned);
        };
        match node.server.gatt_proxy() {
            1 => {}
            0 => return Err(ProxyRefused::Disabled),
            _ => return Err(ProxyRefused::NotSupported),
        }
        let mut server =
            ProxyServer::new(att_mtu, node.server.primary(), ProxyServerConfig::default());
        let iv = node.transport.network().iv_index();
        for k in node.server.net_keys().values() {
            let (key, refresh) = match (&k.new_key, k.phase) {
                (Some(new), 2) => (new, true),
                _ => (&k.key, false),
            };
            server.send_secure_network_beacon(key, refresh, iv);
        }
        self.proxy = Some((peer, server));
        self.proxy_error = None;
        Ok(())
    }

    /// The proxy client disconnected.
    pub fn proxy_disconnected(&mut self) {
        self.proxy = None;
    }

    /// The proxy server of the open proxy connection, if there is one.
    pub fn proxy_server(&self) -> Option<&ProxyServer> {
        self.proxy.as_ref().map(|(_, p)| p)
    }

    /// Why the node dropped its last proxy connection, if it did.
    pub fn proxy_error(&self) -> Option<&ProxyError> {
        self.proxy_error.as_ref()
    }

    /// Configuration requests the node received (secured with its device key) and answered
    /// since it was provisioned.
    pub fn requests_served(&self) -> u64 {
        self.node.as_ref().map_or(0, |n| n.served)
    }

    /// Applies a Configuration request to the provisioned node as if it had come over the air
    /// on its first subnet, and returns the status it would send: how a simulation puts a node
    /// in the state an earlier run left it in (the AppKeys a store says it holds, a key refresh
    /// phase it acknowledged). Its network and transport layers follow, as for a request
    /// received. `None` when the device is not provisioned or the message is not a request.
    pub fn configure_locally(&mut self, request: &ConfigMessage) -> Option<ConfigMessage> {
        let node = self.node.as_mut()?;
        let subnet = node.server.net_keys().keys().next().copied()?;
        let answer = node.server.handle(subnet, request);
        let mut reset = false;
        for effect in answer.effects {
            reset |= node.apply(effect);
        }
        if reset {
            self.reset();
        }
        answer.reply
    }

    /// Puts the device on another air (a later simulated run) at `endpoint`. What it had queued
    /// for the old air is dropped; its state, keys and replay protection stay.
    pub fn rejoin(&mut self, endpoint: EndpointId) {
        self.endpoint = endpoint;
        self.gatt = None;
        self.staged = None;
        self.net_out = NetAdvQueue::default();
        self.proxy = None;
    }

    /// Node Reset: forget the network and become an unprovisioned device again.
    fn reset(&mut self) {
        self.node = None;
        self.proxy = None;
        self.state = DeviceState::Unprovisioned;
        let (device, links) = provisionee(&self.spec, self.seed.wrapping_add(1));
        self.device = device;
        self.links = links;
        self.link = None;
        self.displayed = None;
        self.input_requested = false;
        self.failure = None;
        self.staged = None;
        self.busy_until = None;
    }

    /// What the device ended with.
    pub fn state(&self) -> &DeviceState {
        &self.state
    }

    /// Every provisioning PDU the device sent and received.
    pub fn transcript(&self) -> &[TranscriptEntry] {
        self.device.transcript()
    }

    /// How its last PB-ADV link closed, if one did (the provisioner's Link Close reason).
    pub fn link_closed(&self) -> Option<CloseCause> {
        self.link_closed
    }

    /// Why the device failed the session, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// The value the device shows for Output OOB (what an installer would read off it).
    pub fn displayed(&self) -> Option<&OobValue> {
        self.displayed.as_ref()
    }

    /// Whether the device waits for the installer to enter an Input OOB value.
    pub fn input_requested(&self) -> bool {
        self.input_requested
    }

    /// The installer enters `value` on the device (Input OOB).
    pub fn enter_input(&mut self, now: Instant, value: OobValue) {
        self.input_requested = false;
        if let Err(e) = self.device.provide_input(now, value) {
            self.failure = Some(e.to_string());
        }
    }

    /// A provisioner connects over GATT from `peer` with this ATT MTU.
    pub fn gatt_connected(&mut self, peer: EndpointId, att_mtu: u16) {
        self.gatt = Some((peer, PbGattLink::new(att_mtu)));
    }

    /// The GATT connection is gone.
    pub fn gatt_disconnected(&mut self) {
        self.gatt = None;
    }

    /// Takes one delivery addressed to this device.
    pub fn handle_delivery(&mut self, now: Instant, delivery: &Delivery) {
        // Switched off (a circuit powered late): nothing reaches it.
        if !self.powered {
            if now < Instant::ZERO + self.spec.power_on {
                return;
            }
            self.powered = true;
        }
        // Vanished (its fault), unless it is back by now.
        self.fault.wake(now);
        if self.fault.powered_off() {
            return;
        }
        match delivery {
            Delivery::Adv { ad_type, data, .. }
                if *ad_type == AD_TYPE_PB_ADV && self.spec.pb_adv =>
            {
                self.links.handle_adv(now, data);
            }
            Delivery::Adv { ad_type, data, .. } if *ad_type == AD_TYPE_MESH_MESSAGE => {
                if let Some(node) = &mut self.node {
                    // Not for us, a replay, another network: dropping is normal on the air.
                    let _ = node.transport.handle_network_pdu(now, data);
                    if let Some((_, proxy)) = &mut self.proxy {
                        proxy.relay_from_adv(data, node.transport.network());
                    }
                }
            }
            Delivery::Adv { ad_type, data, .. } if *ad_type == AD_TYPE_MESH_BEACON => {
                if let Some(node) = &mut self.node {
                    node.handle_beacon(data);
                }
            }
            Delivery::Adv { .. } => {}
            Delivery::Gatt { from, data, .. }
                if self.proxy.as_ref().is_some_and(|(peer, _)| peer == from) =>
            {
                if let (Some(node), Some((_, proxy))) = (&mut self.node, &mut self.proxy)
                    && let Err(e) = proxy.handle_data(now, data, &mut node.transport)
                {
                    self.proxy_error = Some(e);
                    self.proxy = None;
                }
            }
            Delivery::Gatt { from, data, .. } => {
                if let Some((peer, gatt)) = &mut self.gatt
                    && peer == from
                {
                    match gatt.handle_data(now, data) {
                        Ok(Some(pdu)) => self.take_pdu(now, &pdu),
                        Ok(None) => {}
                        Err(e) => self.failure = Some(e.to_string()),
                    }
                }
            }
        }
    }

    /// Moves everything the device has to say onto the air.
    pub fn pump(&mut self, now: Instant, air: &mut SimAir) {
        if self.fault.powered_off() {
            if self.presence.is_some() {
                self.sync_air(air);
            }
            return;
        }
        loop {
            let mut progress = false;
            while let Some(ev) = self.links.poll_event() {
                progress = true;
                match ev {
                    LinkEvent::Opened(l) => self.link = Some(l),
                    LinkEvent::Received(_, pdu) => self.take_pdu(now, &pdu),
                    LinkEvent::Delivered(_) => {}
                    LinkEvent::Closed(_, cause) => {
                        self.link = None;
                        self.link_closed = Some(cause);
                    }
                }
            }
            if self.busy_until.is_some_and(|t| now >= t) {
                self.busy_until = None;
            }
            while self.busy_until.is_none()
                && let Some(pdu) = self
                    .fault_out
                    .pop_front()
                    .or_else(|| self.device.poll_transmit())
            {
                progress = true;
                // A reflecting device sends the provisioner's value as its own.
                let pdu = self.fault.outgoing(pdu);
                if let Some((_, gatt)) = &mut self.gatt {
                    gatt.send(&pdu);
                } else if let Some(link) = self.link {
                    // A send on a link that closed meanwhile has nobody to reach: drop it.
                    let _ = self.links.send(now, link, &pdu);
                }
            }
            while let Some(ev) = self.device.poll_event() {
                progress = true;
                match ev {
                    DeviceEvent::Display(v) => self.displayed = Some(v),
                    DeviceEvent::InputRequested { .. } => self.input_requested = true,
                    DeviceEvent::Provisioned {
                        device_key,
                        net_key,
                        net_key_index,
                        iv_index,
                        address,
                        ..
                    } => {
                        self.set_provisioned(DeviceState::Provisioned {
                            address,
                            device_key,
                            net_key,
                            net_key_index,
                            iv_index,
                        });
                    }
                    DeviceEvent::Failed(e) => self.failure = Some(format!("{e:?}")),
                }
            }
            if let Some((peer, gatt)) = &mut self.gatt {
                let mut vanish = false;
                while let Some(seg) = gatt.poll_transmit() {
                    progress = true;
                    air.gatt_send(self.endpoint, *peer, &seg);
                    if self.fault.sent_one() {
                        vanish = true;
                        break;
                    }
                }
                if vanish {
                    self.vanish(now);
                    break;
                }
            }
            // One advertisement per radio interval; the backlog stays in the bearer.
            if self.staged.is_none() {
                let payload = self.links.poll_transmit(now);
                // A garbage transaction with a bad FCS gets it here.
                self.staged = payload.map(|p| self.fault.on_air(p));
            }
            if let Some(node) = &mut self.node {
                let reset = node.serve(now);
                while let Some(t) = node.transport.poll_transmit() {
                    progress = true;
                    let on_adv = match &mut self.proxy {
                        Some((_, proxy)) => proxy.route_own(&t, node.transport.network()),
                        None => true,
                    };
                    if on_adv {
                        self.net_out.push(now, &t);
                    }
                }
                if let Some((peer, proxy)) = &mut self.proxy {
                    while let Some(t) = proxy.poll_relay() {
                        progress = true;
                        self.net_out.push(now, &t);
                    }
                    // The status of a GATT Proxy Set 0 or a Node Reset goes out before the
                    // connection closes.
                    while let Some(value) = proxy.poll_transmit() {
                        progress = true;
                        air.gatt_send(self.endpoint, *peer, &value);
                    }
                }
                // GATT Proxy Set 0 closes the proxy connection (as Zephyr does).
                if self.proxy.is_some() && node.server.gatt_proxy() != 1 {
                    self.proxy = None;
                }
                if reset {
                    progress = true;
                    self.reset();
                }
            }
            if let Some((peer, proxy)) = &mut self.proxy {
                while let Some(value) = proxy.poll_transmit() {
                    progress = true;
                    air.gatt_send(self.endpoint, *peer, &value);
                }
            }
            if air.adv_ready_at(self.endpoint) <= now
                && let Some(payload) = self.staged.take()
            {
                progress = true;
                air.advertise(self.endpoint, AD_TYPE_PB_ADV, &payload);
                if self.fault.sent_one() {
                    self.vanish(now);
                    break;
                }
            }
            progress |= self.net_out.pump(now, air, self.endpoint);
            if !progress {
                break;
            }
        }
        if self.presence.is_some() {
            self.sync_air(air);
        }
    }

    /// The device's next deadline.
    pub fn poll_timeout_with(&self, air: &SimAir) -> Option<Instant> {
        let radio = self
            .staged
            .as_ref()
            .map(|_| air.adv_ready_at(self.endpoint));
        let net = self.net_out.poll_timeout(air, self.endpoint);
        [radio, net, self.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The device's next deadline, radio aside.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.fault.back_at(),
            self.busy_until,
            self.links.poll_timeout(),
            self.device.poll_timeout(),
            self.gatt.as_ref().and_then(|(_, g)| g.poll_timeout()),
            self.node.as_ref().and_then(|n| n.transport.poll_timeout()),
            self.proxy.as_ref().and_then(|(_, p)| p.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        // A vanished device comes back (its presence on the air follows at the next pump).
        self.fault.wake(now);
        if self.fault.powered_off() {
            return;
        }
        self.links.handle_timeout(now);
        self.device.handle_timeout(now);
        if let Some(n) = &mut self.node {
            n.transport.handle_timeout(now);
        }
        if let Some((_, p)) = &mut self.proxy
            && let Some(e) = p.handle_timeout(now)
        {
            self.proxy_error = Some(e);
            self.proxy = None;
        }
        if let Some((_, g)) = &mut self.gatt
            && let Some(e) = g.handle_timeout(now)
        {
            self.failure = Some(e.to_string());
            self.gatt = None;
        }
    }
}

/// How long a simulated installer takes to read a value off a device or type one in.
pub const INSTALLER_DELAY: Duration = Duration::from_secs(3);
