//! The one real-time loop that owns a radio: it multiplexes a provisioning [`Host`] (PB-ADV
//! links, PB-GATT connections) and a [`ConfigHost`] (the network layer, on the advertising
//! bearer or through a GATT proxy connection) on the same radio at the same time, and reports
//! what it hears that neither core consumes (unprovisioned devices, Mesh Proxy adverts).
//!
//! [`super::provision`], [`super::configure`] and [`super::configure_via_proxy`] are loops over
//! a [`Mux`] with one core each; the rollout's real-time driver
//! ([`crate::rollout::live_driver`]) runs both cores through one, so that provisioning and
//! configuration overlap as they do on the simulated air.
//!
//! A caller's loop is: start what it wants ([`Mux::open_adv`], [`Mux::await_gatt`],
//! [`Mux::connect_proxy`], Config requests on its host), [`Mux::settle`] (drive the cores at
//! this instant, hand their output to the radio's queues), read [`Mux::poll_event`], decide
//! whether it is done, then [`Mux::wait`] (one advertising event if one is due, else sleep until
//! the next deadline or the radio's next event, and handle it).

use std::collections::VecDeque;
use std::time::Duration;

use rand_core::CryptoRng;
use tokio::sync::mpsc;

use crate::config_host::ConfigHost;
use crate::host::{Host, HostEvent, NodeSink, SessionId};
use crate::net::network::SeqSource;
use crate::net::proxy::{ProxyClient, ProxyClientConfig, ProxyEvent};
use crate::provisioning::{OobValue, ProvisionerConfig, ProvisioningError};
use crate::radio::{
    AD_TYPE_MESH_MESSAGE, AD_TYPE_PB_ADV, AdvParams, BdAddr, ConnId, Radio, RadioEvent,
    UUID_MESH_PROVISIONING, UUID_MESH_PROXY,
};
use crate::time::Instant;
use crate::uuid::DeviceUuid;
use crate::wire::beacon::{MeshBeacon, PbGattServiceData, ProxyServiceData};

use super::{AD_TYPE_SERVICE_DATA_16, LiveError};

/// AD type of a mesh beacon (MshPRT v1.1 §3.3.1).
const AD_TYPE_MESH_BEACON: u8 = 0x2b;

/// How often [`Mux::wait`] wakes while PB-GATT sessions wait for their device's advert.
const DISCOVERY_POLL: Duration = Duration::from_millis(250);

/// What the radio brought that the caller acts on.
#[derive(Debug)]
pub enum MuxEvent {
    /// An unprovisioned device advertised: an Unprovisioned Device beacon (MshPRT v1.1
    /// §3.10.2) or a PB-GATT advert with Mesh Provisioning Service data (§7.1.2.2.1).
    Unprovisioned {
        /// Its Device UUID.
        uuid: DeviceUuid,
        /// Signal strength, dBm.
        rssi: Option<i8>,
        /// OOB Information.
        oob_info: u16,
        /// URI hash, when the advert has a meaningful one.
        uri_hash: Option<[u8; 4]>,
    },
    /// A Mesh Proxy service advert (§7.2.2.2): the node's address and what it advertises.
    ProxyAdvert {
        /// The node's Bluetooth address.
        address: BdAddr,
        /// Network ID or Node Identity.
        data: ProxyServiceData,
        /// Signal strength, dBm.
        rssi: Option<i16>,
    },
    /// The provisioning host's event (OOB prompts, a session's end).
    Host(HostEvent),
    /// A PB-GATT session waiting in [`Mux::await_gatt`] found its device and is connected.
    GattOpened {
        /// The device.
        uuid: DeviceUuid,
        /// Its session in the host.
        session: SessionId,
    },
    /// A PB-GATT session waiting in [`Mux::await_gatt`] did not start: its device was not heard
    /// in time, or the connection failed.
    GattFailed {
        /// The device.
        uuid: DeviceUuid,
        /// Why.
        error: ProvisioningError,
    },
    /// The proxy connection ended (the node closed it, or the filter set-up failed); the Config
    /// requests in flight go on waiting (and time out) until a new one is connected.
    ProxyLost(String),
}

struct GattWait {
    uuid: DeviceUuid,
    name: String,
    config: ProvisionerConfig,
    rng: Box<dyn CryptoRng + Send>,
    since: Instant,
}

struct ProxyLink {
    conn: ConnId,
    address: BdAddr,
    client: ProxyClient,
}

/// The radio-side state of one real-time loop (module docs).
pub struct Mux {
    epoch: std::time::Instant,
    /// GATT connection of each provisioning session (by [`SessionId`]).
    conns: Vec<Option<ConnId>>,
    waiting: Vec<GattWait>,
    /// The address of each device heard with a PB-GATT advert (a session that starts later
    /// connects at once: a radio may report an advert only once).
    heard_gatt: std::collections::BTreeMap<DeviceUuid, BdAddr>,
    discovery_timeout: Duration,
    /// The host's next PB-ADV advert.
    staged: Option<Vec<u8>>,
    /// Copies of network PDUs for the advertising bearer: (due, PDU).
    net_out: VecDeque<(Instant, Vec<u8>)>,
    next_adv: Instant,
    prefer_net: bool,
    proxy: Option<ProxyLink>,
    events: VecDeque<MuxEvent>,
    oob: Option<mpsc::UnboundedReceiver<(SessionId, OobValue)>>,
    adverts: u64,
    /// When the radio last brought an advertisement or GATT data.
    last_heard: Option<Instant>,
}

impl std::fmt::Debug for Mux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mux")
            .field("waiting", &self.waiting.len())
            .field("net_out", &self.net_out.len())
            .field("proxy", &self.proxy.as_ref().map(|p| p.address))
            .finish_non_exhaustive()
    }
}

enum Woke {
    Radio(RadioEvent),
    Oob(SessionId, OobValue),
    Timeout,
}

impl Mux {
    /// A loop whose clock starts now; PB-GATT sessions wait `discovery_timeout` at most for
    /// their device's advert.
    pub fn new(discovery_timeout: Duration) -> Self {
        Self {
            epoch: std::time::Instant::now(),
            conns: Vec::new(),
            waiting: Vec::new(),
            heard_gatt: std::collections::BTreeMap::new(),
            discovery_timeout,
            staged: None,
            net_out: VecDeque::new(),
            next_adv: Instant::ZERO,
            prefer_net: false,
            proxy: None,
            events: VecDeque::new(),
            oob: None,
            adverts: 0,
            last_heard: None,
        }
    }

    /// The loop's clock: the monotonic clock from [`Mux::new`].
    pub fn now(&self) -> Instant {
        Instant::from_epoch(self.epoch.elapsed())
    }

    /// Output OOB answers for the host's sessions arrive on `rx` (and wake [`Mux::wait`]).
    pub fn set_oob_answers(&mut self, rx: mpsc::UnboundedReceiver<(SessionId, OobValue)>) {
        self.oob = Some(rx);
    }

    /// Opens a PB-ADV session on `host` (the link opens at once: the device listens while it
    /// beacons).
    pub fn open_adv(
        &mut self,
        host: &mut Host,
        uuid: DeviceUuid,
        name: String,
        config: ProvisionerConfig,
        rng: Box<dyn CryptoRng + Send>,
    ) -> SessionId {
        let id = host.open_adv(self.now(), uuid, name, config, rng);
        self.bind(id, None);
        id
    }

    /// A PB-GATT session that starts when `uuid`'s connectable advert is heard (its address is
    /// learnt from it): [`MuxEvent::GattOpened`] or [`MuxEvent::GattFailed`] follows.
    pub fn await_gatt(
        &mut self,
        uuid: DeviceUuid,
        name: String,
        config: ProvisionerConfig,
        rng: Box<dyn CryptoRng + Send>,
    ) {
        let since = self.now();
        self.waiting.push(GattWait {
            uuid,
            name,
            config,
            rng,
            since,
        });
    }

    /// Stops waiting for `uuid`'s advert (a cancelled session); whether it was waiting.
    pub fn cancel_gatt(&mut self, uuid: &DeviceUuid) -> bool {
        let before = self.waiting.len();
        self.waiting.retain(|w| w.uuid != *uuid);
        before != self.waiting.len()
    }

    /// PB-GATT sessions still waiting for their device's advert.
    pub fn gatt_waiting(&self) -> usize {
        self.waiting.len()
    }

    fn bind(&mut self, id: SessionId, conn: Option<ConnId>) {
        if self.conns.len() <= id.0 {
            self.conns.resize(id.0 + 1, None);
        }
        self.conns[id.0] = conn;
    }

    /// Connects to the Mesh Proxy service (0x1828) of `address` and starts the proxy filter
    /// set-up (accept list with the provisioner's address, MshPRT v1.1 §6.7); network PDUs of
    /// `conf` go through it from now on. A connection already open is closed first.
    pub async fn connect_proxy<R: Radio, S: SeqSource>(
        &mut self,
        radio: &mut R,
        conf: &mut ConfigHost<S>,
        address: BdAddr,
        client: ProxyClientConfig,
    ) -> Result<(), LiveError> {
        self.disconnect_proxy(radio).await;
        let (conn, mtu) = radio.connect(address, UUID_MESH_PROXY).await?;
        let mut client = ProxyClient::new(client);
        if let Err(e) = client.connect(self.now(), mtu, conf.transport_mut()) {
            let _ = radio.disconnect(conn).await;
            return Err(LiveError::Proxy(e.to_string()));
        }
        self.proxy = Some(ProxyLink {
            conn,
            address,
            client,
        });
        Ok(())
    }

    /// Closes the proxy connection, if one is open.
    pub async fn disconnect_proxy<R: Radio>(&mut self, radio: &mut R) {
        if let Some(p) = self.proxy.take() {
            // Ours to end; a radio that is gone already is not news.
            let _ = radio.disconnect(p.conn).await;
        }
    }

    /// The proxy node connected to, if any.
    pub fn proxy(&self) -> Option<BdAddr> {
        self.proxy.as_ref().map(|p| p.address)
    }

    /// Whether the proxy connection's filter is set up (network PDUs flow).
    pub fn proxy_ready(&self) -> bool {
        self.proxy.as_ref().is_some_and(|p| p.client.is_ready())
    }

    /// Network PDUs waiting for an advertising event, and the host's PB-ADV advert if staged.
    pub fn adverts_queued(&self) -> usize {
        self.net_out.len() + usize::from(self.staged.is_some())
    }

    /// Advertising events sent so far.
    pub fn adverts_sent(&self) -> u64 {
        self.adverts
    }

    /// When the radio last brought an advertisement or GATT data (`None`: nothing yet).
    pub fn last_heard(&self) -> Option<Instant> {
        self.last_heard
    }

    /// The next event, in order.
    pub fn poll_event(&mut self) -> Option<MuxEvent> {
        self.events.pop_front()
    }

    /// Drives the cores at this instant: PB-GATT discovery time-outs, the host's sessions (GATT
    /// writes go out now, the PB-ADV advert is staged), the Config host's network PDUs (to the
    /// proxy connection, or queued for advertising events), the proxy client's writes.
    pub async fn settle<R: Radio, S: SeqSource>(
        &mut self,
        radio: &mut R,
        mut prov: Option<(&mut Host, &mut dyn NodeSink)>,
        conf: Option<&mut ConfigHost<S>>,
    ) -> Result<(), LiveError> {
        let now = self.now();
        let limit = self.discovery_timeout;
        let (late, keep): (Vec<GattWait>, Vec<GattWait>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| now.saturating_duration_since(w.since) > limit);
        self.waiting = keep;
        for w in late {
            self.events.push_back(MuxEvent::GattFailed {
                uuid: w.uuid,
                error: ProvisioningError::Timeout,
            });
        }
        if let Some((host, _)) = prov.as_mut() {
            // Sessions whose device was heard already connect now.
            let (known, keep): (Vec<GattWait>, Vec<GattWait>) = std::mem::take(&mut self.waiting)
                .into_iter()
                .partition(|w| self.heard_gatt.contains_key(&w.uuid));
            self.waiting = keep;
            for w in known {
                if let Some(address) = self.heard_gatt.get(&w.uuid).copied() {
                    self.start_gatt(radio, host, w, address).await;
                }
            }
        }
        if let Some((host, sink)) = prov.as_mut() {
            while host.drive(now, *sink) {}
            while let Some((id, seg)) = host.poll_gatt_transmit() {
                if let Some(Some(conn)) = self.conns.get(id.0) {
                    radio.gatt_write(*conn, &seg).await?;
                }
            }
            while let Some(ev) = host.poll_event() {
                if let HostEvent::Finished { session } = &ev
                    && let Some(conn) = self.conns.get_mut(session.0).and_then(Option::take)
                {
                    // The device drops the connection itself after Complete.
                    let _ = radio.disconnect(conn).await;
                }
                self.events.push_back(MuxEvent::Host(ev));
            }
            if self.staged.is_none() {
                self.staged = host.poll_adv_transmit(now);
            }
        }
        let mut lost: Option<String> = None;
        if let Some(c) = conf {
            c.drive(now);
            while let Some(t) = c.poll_transmit() {
                match self.proxy.as_mut() {
                    // Over GATT a PDU is written once: the link is reliable (§6.1).
                    Some(p) => {
                        if let Err(e) = p.client.send_network_pdu(&t.pdu) {
                            lost = Some(e.to_string());
                        }
                    }
                    None => {
                        for k in 0..u32::from(t.transmissions.max(1)) {
                            self.net_out
                                .push_back((now + t.interval * k, t.pdu.clone()));
                        }
                    }
                }
            }
        }
        if let Some(p) = self.proxy.as_mut() {
            while let Some(ev) = p.client.poll_event() {
                if let ProxyEvent::Failed(e) = ev {
                    lost = Some(e.to_string());
                }
            }
            while let Some(value) = p.client.poll_transmit() {
                radio.gatt_write(p.conn, &value).await?;
            }
        }
        if let Some(reason) = lost {
            self.disconnect_proxy(radio).await;
            self.events.push_back(MuxEvent::ProxyLost(reason));
        }
        Ok(())
    }

    /// Sends one advertising event if one is due (network PDUs and PB-ADV take turns when both
    /// wait), else sleeps until the earliest of `wake_by`, the cores' deadlines and the radio's
    /// next event, and handles what woke it. Call [`Mux::settle`] again afterwards.
    pub async fn wait<R: Radio, S: SeqSource>(
        &mut self,
        radio: &mut R,
        mut prov: Option<&mut Host>,
        mut conf: Option<&mut ConfigHost<S>>,
        wake_by: Option<Instant>,
    ) -> Result<(), LiveError> {
        let now = self.now();
        if now >= self.next_adv {
            let net = self.net_out.iter().position(|(t, _)| *t <= now);
            let pdu = match net {
                Some(i) if self.prefer_net || self.staged.is_none() => {
                    self.prefer_net = false;
                    self.net_out
                        .remove(i)
                        .map(|(_, p)| (AD_TYPE_MESH_MESSAGE, p))
                }
                _ => self.staged.take().map(|p| {
                    self.prefer_net = true;
                    (AD_TYPE_PB_ADV, p)
                }),
            };
            if let Some((ad_type, pdu)) = pdu {
                radio.advertise(ad_type, &pdu, AdvParams::default()).await?;
                self.adverts += 1;
                self.next_adv = now + radio.adv_interval();
                return Ok(());
            }
        }
        if !self.events.is_empty() {
            return Ok(());
        }
        let mut wake = wake_by.unwrap_or(now + Duration::from_secs(3600));
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                wake = wake.min(t);
            }
        };
        consider(prov.as_deref().and_then(Host::poll_timeout));
        consider(conf.as_deref().and_then(ConfigHost::poll_timeout));
        consider(self.proxy.as_ref().and_then(|p| p.client.poll_timeout()));
        consider(self.staged.as_ref().map(|_| self.next_adv));
        consider(
            self.net_out
                .iter()
                .map(|(t, _)| *t)
                .min()
                .map(|t| t.max(self.next_adv)),
        );
        if !self.waiting.is_empty() {
            consider(Some(now + DISCOVERY_POLL));
        }
        let sleep = wake.saturating_duration_since(now);
        let oob = &mut self.oob;
        let woke = tokio::select! {
            ev = radio.next_event() => Woke::Radio(ev?),
            Some((session, value)) = async {
                match oob {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => Woke::Oob(session, value),
            () = tokio::time::sleep(sleep) => Woke::Timeout,
        };
        let now = self.now();
        match woke {
            Woke::Timeout => {
                if let Some(h) = prov.as_deref_mut() {
                    h.handle_timeout(now);
                }
                if let Some(c) = conf.as_deref_mut() {
                    c.handle_timeout(now);
                    if let Some(p) = self.proxy.as_mut() {
                        p.client.handle_timeout(now, c.transport_mut());
                    }
                }
            }
            Woke::Oob(session, value) => {
                if let Some(h) = prov.as_deref_mut() {
                    // A late or wrong answer fails that session with a typed error.
                    let _ = h.provide_output_oob(now, session, value);
                }
            }
            Woke::Radio(ev) => self.handle_radio(radio, prov, conf, now, ev).await,
        }
        Ok(())
    }

    /// Connects to a waiting PB-GATT session's device and opens its session.
    async fn start_gatt<R: Radio>(
        &mut self,
        radio: &mut R,
        host: &mut Host,
        w: GattWait,
        address: BdAddr,
    ) {
        let uuid = w.uuid;
        match radio.connect(address, UUID_MESH_PROVISIONING).await {
            Ok((conn, mtu)) => {
                let now = self.now();
                let id = host.open_gatt(now, w.uuid, w.name, w.config, w.rng, mtu);
                host.gatt_ready(now, id);
                self.bind(id, Some(conn));
                self.events
                    .push_back(MuxEvent::GattOpened { uuid, session: id });
            }
            Err(e) => {
                // The address may be stale: the next advert tells.
                self.heard_gatt.remove(&uuid);
                self.events.push_back(MuxEvent::GattFailed {
                    uuid,
                    error: ProvisioningError::Unreachable(e.to_string()),
                });
            }
        }
    }

    async fn handle_radio<R: Radio, S: SeqSource>(
        &mut self,
        radio: &mut R,
        prov: Option<&mut Host>,
        conf: Option<&mut ConfigHost<S>>,
        now: Instant,
        ev: RadioEvent,
    ) {
        if matches!(ev, RadioEvent::Adv(_) | RadioEvent::Gatt { .. }) {
            self.last_heard = Some(now);
        }
        match ev {
            RadioEvent::Adv(r) if r.ad_type == AD_TYPE_PB_ADV => {
                if let Some(h) = prov {
                    h.handle_adv(now, &r.data);
                }
            }
            RadioEvent::Adv(r) if r.ad_type == AD_TYPE_MESH_MESSAGE => {
                if let (Some(c), None) = (conf, &self.proxy) {
                    c.handle_network_pdu(now, &r.data);
                }
            }
            RadioEvent::Adv(r) if r.ad_type == AD_TYPE_MESH_BEACON => {
                if let Ok(MeshBeacon::UnprovisionedDevice(b)) = MeshBeacon::parse(&r.data) {
                    self.events.push_back(MuxEvent::Unprovisioned {
                        uuid: DeviceUuid(b.uuid),
                        rssi: r.rssi.map(crate::radio::tapped::rssi_i8),
                        oob_info: b.oob_info.0,
                        uri_hash: b.meaningful_uri_hash(),
                    });
                }
            }
            RadioEvent::Adv(r) if r.ad_type == AD_TYPE_SERVICE_DATA_16 => {
                let Some(service) = r.data.get(..2).map(|b| u16::from_le_bytes([b[0], b[1]]))
                else {
                    return;
                };
                if service == UUID_MESH_PROXY {
                    if let (Some(address), Ok(data)) = (r.address, ProxyServiceData::parse(&r.data))
                    {
                        self.events.push_back(MuxEvent::ProxyAdvert {
                            address,
                            data,
                            rssi: r.rssi,
                        });
                    }
                    return;
                }
                if service != UUID_MESH_PROVISIONING {
                    return;
                }
                let Ok(sd) = PbGattServiceData::parse(&r.data) else {
                    return;
                };
                let uuid = DeviceUuid(sd.uuid);
                self.events.push_back(MuxEvent::Unprovisioned {
                    uuid,
                    rssi: r.rssi.map(crate::radio::tapped::rssi_i8),
                    oob_info: sd.oob_info().0,
                    uri_hash: sd.uri_hash,
                });
                let Some(address) = r.address else {
                    return;
                };
                self.heard_gatt.insert(uuid, address);
                let Some(host) = prov else {
                    return;
                };
                let Some(k) = self.waiting.iter().position(|w| w.uuid == uuid) else {
                    return;
                };
                let w = self.waiting.remove(k);
                self.start_gatt(radio, host, w, address).await;
            }
            RadioEvent::Adv(_) => {}
            RadioEvent::Gatt { conn, data } => {
                if let Some(p) = self.proxy.as_mut().filter(|p| p.conn == conn) {
                    if let Some(c) = conf {
                        // A failure is also queued as an event, handled in settle.
                        let _ = p.client.handle_notification(now, &data, c.transport_mut());
                    }
                } else if let (Some(k), Some(h)) =
                    (self.conns.iter().position(|c| *c == Some(conn)), prov)
                {
                    h.handle_gatt(now, SessionId(k), &data);
                }
            }
            RadioEvent::Disconnected(conn) => {
                if self.proxy.as_ref().is_some_and(|p| p.conn == conn) {
                    if let Some(mut p) = self.proxy.take() {
                        p.client.disconnected();
                    }
                    self.events.push_back(MuxEvent::ProxyLost(
                        "the proxy node closed the connection".into(),
                    ));
                } else if let Some(k) = self.conns.iter().position(|c| *c == Some(conn)) {
                    self.conns[k] = None;
                    if let Some(h) = prov {
                        h.handle_gatt_disconnected(now, SessionId(k));
                    }
                }
            }
        }
    }
}
