//! The provisioner host: many provisioning sessions at once over one PB-ADV [`Links`] table
//! and any number of PB-GATT connections, with the durable bookkeeping every session needs
//! (address allocation, write-ahead commit of the device key, confirmation) — sans-IO.
//!
//! A driver owns the radio and the clock and feeds the host: PB-ADV payloads heard on the air
//! ([`Host::handle_adv`]), GATT packets of a connection ([`Host::handle_gatt`]), time
//! ([`Host::handle_timeout`]); after each input it calls [`Host::drive`] with the node sink, then
//! sends what [`Host::poll_adv_transmit`] and [`Host::poll_gatt_transmit`] give, and answers the
//! installer-facing [`HostEvent`]s (Output OOB to read, Input OOB to type on the device). Both
//! the virtual-time simulator ([`crate::sim::run`]) and the real-time driver over a
//! [`Radio`](crate::radio::Radio) ([`crate::live`]) are such drivers, so a session behaves the
//! same on the simulated air, on bluetooth-meshd's socket and on BlueZ.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use mesh_crypto::DevKey;
use rand_core::{CryptoRng, Rng};

use crate::bearer::pb_adv::{CloseCause, LinkEvent, LinkId, Links, PbAdvConfig, Role};
use crate::bearer::pb_gatt::PbGattLink;
use crate::provisioning::{
    CloseReason, Event, OobValue, Outcome, Provisioner, ProvisionerConfig, ProvisioningError,
    ProvisioningParams, TranscriptEntry,
};
use crate::time::Instant;
use crate::uuid::DeviceUuid;
use crate::wire::LinkCloseReason;

/// The verdict on a device's certificate chain (certificate-based provisioning): given the
/// device's UUID, its Device Certificate record and its Intermediate Certificate records (as
/// received, DER for a conforming device), the device certificate's P-256 public key
/// (`X ‖ Y`), or why the chain is refused (words for the installer).
pub type CertVerifier =
    Arc<dyn Fn(&DeviceUuid, &[u8], &[Vec<u8>]) -> Result<[u8; 64], String> + Send + Sync>;

/// What is stored about a node before its Provisioning Data goes on air.
#[derive(Clone, Debug)]
pub struct NodeRecord {
    /// Device UUID.
    pub uuid: DeviceUuid,
    /// Its name (from the building file or the plan; may be empty).
    pub name: String,
    /// Primary element address.
    pub address: u16,
    /// Element count.
    pub elements: u8,
    /// Device key.
    pub device_key: DevKey,
    /// NetKey index given.
    pub net_key_index: u16,
}

/// The provisioner's durable state, as a session needs it: address ranges are reserved when
/// the device's element count is known, and the device key is committed before the
/// Provisioning Data goes on air (write-ahead), so a crash never loses a key or hands an
/// address out twice. An error fails that session before the device gets any key.
pub trait NodeSink {
    /// Reserves a free unicast range of `elements` addresses for `uuid`; returns its first.
    fn allocate(&mut self, uuid: &DeviceUuid, elements: u8) -> Result<u16, String>;
    /// Stores one node durably, before its Provisioning Data is sent.
    fn commit(&mut self, record: &NodeRecord) -> Result<(), String>;
    /// The device answered Provisioning Complete.
    fn confirm(&mut self, uuid: &DeviceUuid) -> Result<(), String>;
    /// The session failed before [`NodeSink::commit`]: the reservation may be reused.
    fn release(&mut self, uuid: &DeviceUuid);
    /// The device answered the Provisioning Data with Provisioning Failed (MshPRT v1.1
    /// §5.4.4): it did not take the data, so the node of [`NodeSink::commit`] is voided — it
    /// must not stay `unconfirmed` (a rerun would configure it) — and its addresses are
    /// retired, never handed out again (the Failed PDU is unauthenticated: nothing proves the
    /// device never used them). `why` is the journal's words. An error leaves the commit
    /// standing, the safe side: the node stays `unconfirmed`.
    fn void(&mut self, uuid: &DeviceUuid, why: &str) -> Result<(), String>;
}

/// A sink that keeps records in memory and allocates addresses upwards from a first one
/// (tests, and runs without a store).
#[derive(Debug)]
pub struct MemorySink {
    /// What was committed (a voided commit is removed).
    pub records: Vec<NodeRecord>,
    /// Devices that confirmed.
    pub confirmed: Vec<DeviceUuid>,
    /// Commits voided ([`NodeSink::void`]): device, first address, element count.
    pub voided: Vec<(DeviceUuid, u16, u8)>,
    next: u32,
    reserved: BTreeMap<DeviceUuid, u16>,
}

impl MemorySink {
    /// Allocates from `first_address` upwards.
    pub fn starting_at(first_address: u16) -> Self {
        Self {
            records: Vec::new(),
            confirmed: Vec::new(),
            voided: Vec::new(),
            next: u32::from(first_address.max(1)),
            reserved: BTreeMap::new(),
        }
    }
}

impl Default for MemorySink {
    fn default() -> Self {
        Self::starting_at(1)
    }
}

impl NodeSink for MemorySink {
    fn allocate(&mut self, uuid: &DeviceUuid, elements: u8) -> Result<u16, String> {
        if let Some(a) = self.reserved.get(uuid) {
            return Ok(*a);
        }
        let end = self.next + u32::from(elements);
        if elements == 0 || end > 0x8000 {
            return Err(format!(
                "no room for {elements} elements in the unicast range (next free 0x{:04x})",
                self.next
            ));
        }
        // Checked just above: below 0x8000.
        let a = self.next as u16;
        self.next = end;
        self.reserved.insert(*uuid, a);
        Ok(a)
    }

    fn commit(&mut self, record: &NodeRecord) -> Result<(), String> {
        self.records.push(record.clone());
        Ok(())
    }

    fn confirm(&mut self, uuid: &DeviceUuid) -> Result<(), String> {
        self.confirmed.push(*uuid);
        Ok(())
    }

    fn release(&mut self, _uuid: &DeviceUuid) {
        // Addresses are only handed out upwards here; nothing to give back.
    }

    fn void(&mut self, uuid: &DeviceUuid, _why: &str) -> Result<(), String> {
        let Some(i) = self.records.iter().position(|r| r.uuid == *uuid) else {
            return Err(format!("device {uuid} has no committed node to void"));
        };
        let r = self.records.remove(i);
        // Addresses only go upwards here: the voided range is never handed out again.
        self.voided.push((r.uuid, r.address, r.elements));
        Ok(())
    }
}

/// The network store as a [`NodeSink`].
impl NodeSink for crate::store::Store {
    fn allocate(&mut self, uuid: &DeviceUuid, elements: u8) -> Result<u16, String> {
        self.allocate_unicast(uuid, elements)
            .map_err(|e| e.to_string())
    }

    fn commit(&mut self, record: &NodeRecord) -> Result<(), String> {
        self.commit_node(&crate::store::NewNode {
            uuid: record.uuid,
            name: record.name.clone(),
            address: record.address,
            elements: record.elements,
            device_key: record.device_key.clone(),
            net_key_index: record.net_key_index,
            location: None,
        })
        .map_err(|e| e.to_string())
    }

    fn confirm(&mut self, uuid: &DeviceUuid) -> Result<(), String> {
        self.confirm_node(uuid).map_err(|e| e.to_string())
    }

    fn release(&mut self, uuid: &DeviceUuid) {
        // Best effort: a reservation left behind is returned to the same UUID next time.
        let _ = self.release_reservation(uuid);
    }

    fn void(&mut self, uuid: &DeviceUuid, why: &str) -> Result<(), String> {
        self.void_unconfirmed(uuid, why)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// What the installer is told of a failed session: the error's own words
/// ([`ProvisioningError::user_message`]) and, for a device that refused its Provisioning Data
/// ([`Session::voided`]), that its committed node was voided and which addresses were retired.
pub fn failure_message(error: &ProvisioningError, voided: Option<(u16, u8)>) -> String {
    let message = error.user_message();
    let Some((address, elements)) = voided else {
        return message;
    };
    let last = u32::from(address) + u32::from(elements.max(1)) - 1;
    let addresses = if elements > 1 {
        format!("addresses 0x{address:04x}-0x{last:04x} are")
    } else {
        format!("address 0x{address:04x} is")
    };
    format!("{message} (its node was voided: nothing is stored for it, and {addresses} retired)")
}

/// A session of the host: its index, stable for the host's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub usize);

/// What a driver must do or show; everything else the host settles itself.
#[derive(Debug)]
pub enum HostEvent {
    /// The device outputs a value (blinks, beeps, shows a number or word): the installer
    /// reads it and the driver calls [`Host::provide_output_oob`] (Output OOB, §5.4.2.4).
    OutputOobRequested {
        /// The session.
        session: SessionId,
        /// What the device does.
        action: crate::wire::OutputOobAction,
        /// Digits or characters.
        size: u8,
    },
    /// The installer enters this value on the device (Input OOB, §5.4.2.4).
    InputOobDisplay {
        /// The session.
        session: SessionId,
        /// The value to enter.
        value: OobValue,
        /// How it is entered (push, twist, number, text).
        action: crate::wire::InputOobAction,
    },
    /// The session ended (its PB-ADV link is closing; a GATT connection may be dropped).
    Finished {
        /// The session.
        session: SessionId,
    },
}

/// How a session reaches its device.
#[derive(Debug)]
enum Path {
    Adv(Option<LinkId>),
    Gatt(PbGattLink),
    /// The session's GATT connection is no longer used.
    Closed,
}

/// One provisioning session and what the host knows of it.
#[derive(Debug)]
pub struct Session {
    /// The device.
    pub uuid: DeviceUuid,
    /// Its name, as stored with the node.
    pub name: String,
    /// When the session was opened.
    pub started: Instant,
    /// When it ended.
    pub ended: Option<Instant>,
    /// How it ended: `None` while running.
    pub result: Option<Result<Outcome, ProvisioningError>>,
    prov: Provisioner,
    path: Path,
    /// The node committed before the Provisioning Data: first address, element count.
    committed: Option<(u16, u8)>,
    /// The committed node, voided because the device refused the data.
    voided: Option<(u16, u8)>,
    closing: bool,
}

impl Session {
    /// The provisioning PDUs this side sent and received.
    pub fn transcript(&self) -> &[TranscriptEntry] {
        self.prov.transcript()
    }

    /// Whether the session is over.
    pub fn is_finished(&self) -> bool {
        self.result.is_some()
    }

    /// The provisioner's state name (for progress displays).
    pub fn state_name(&self) -> &'static str {
        self.prov.state_name()
    }

    /// The node this session committed and then voided, because the device answered the
    /// Provisioning Data with Provisioning Failed ([`ProvisioningError::DataRefused`],
    /// [`NodeSink::void`]): its first address and element count, now retired. `None` when
    /// nothing was voided (no commit, a confirmed node, a commit that stands).
    pub fn voided(&self) -> Option<(u16, u8)> {
        self.voided
    }

    /// Time from the start to the end (or to `now` while running).
    pub fn elapsed(&self, now: Instant) -> Duration {
        self.ended
            .unwrap_or(now)
            .saturating_duration_since(self.started)
    }
}

/// Many provisioning sessions at once; see the module documentation.
pub struct Host {
    params: ProvisioningParams,
    links: Links,
    sessions: Vec<Session>,
    /// Sessions that have not closed yet, in order: only these have anything to drive or
    /// time, so an instant costs what they cost, however many sessions have finished.
    unclosed: BTreeSet<usize>,
    by_link: BTreeMap<LinkId, SessionId>,
    gatt_out: VecDeque<(SessionId, Vec<u8>)>,
    events: VecDeque<HostEvent>,
    verifier: Option<CertVerifier>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("sessions", &self.sessions.len())
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}

impl Host {
    /// A host handing out `params` (NetKey, its index, flags, IV Index), with PB-ADV links
    /// configured by `pb_adv` whose Link IDs come from `link_rng`. Certificate chains are
    /// judged by `verifier`; without one every certificate is rejected.
    pub fn new(
        params: ProvisioningParams,
        pb_adv: PbAdvConfig,
        link_rng: Box<dyn Rng + Send>,
        verifier: Option<CertVerifier>,
    ) -> Self {
        Self {
            params,
            links: Links::new(Role::Provisioner, pb_adv, link_rng),
            sessions: Vec::new(),
            unclosed: BTreeSet::new(),
            by_link: BTreeMap::new(),
            gatt_out: VecDeque::new(),
            events: VecDeque::new(),
            verifier,
        }
    }

    /// What the host hands out.
    pub fn params(&self) -> &ProvisioningParams {
        &self.params
    }

    fn push(
        &mut self,
        now: Instant,
        uuid: DeviceUuid,
        name: String,
        prov: Provisioner,
        path: Path,
    ) -> SessionId {
        let id = SessionId(self.sessions.len());
        self.sessions.push(Session {
            uuid,
            name,
            started: now,
            ended: None,
            result: None,
            prov,
            path,
            committed: None,
            voided: None,
            closing: false,
        });
        self.unclosed.insert(id.0);
        id
    }

    /// Opens a PB-ADV link to `uuid` and runs a session on it once the device acknowledges.
    /// A refused open (the table is full, or a link to that UUID is already open) ends the
    /// session at once with [`ProvisioningError::LinkClosed`].
    pub fn open_adv(
        &mut self,
        now: Instant,
        uuid: DeviceUuid,
        name: String,
        config: ProvisionerConfig,
        rng: Box<dyn CryptoRng + Send>,
    ) -> SessionId {
        let prov = Provisioner::new(config, self.params.clone(), rng);
        let link = self.links.open(now, uuid.0).ok();
        let id = self.push(now, uuid, name, prov, Path::Adv(link));
        match link {
            Some(l) => {
                self.by_link.insert(l, id);
            }
            None => self.finish(now, id, Err(ProvisioningError::LinkClosed)),
        }
        id
    }

    /// Starts a session over a GATT connection to `uuid` whose ATT MTU is `mtu`; the driver
    /// calls [`Host::gatt_ready`] once notifications are enabled.
    pub fn open_gatt(
        &mut self,
        now: Instant,
        uuid: DeviceUuid,
        name: String,
        config: ProvisionerConfig,
        rng: Box<dyn CryptoRng + Send>,
        mtu: u16,
    ) -> SessionId {
        let prov = Provisioner::new(config, self.params.clone(), rng);
        self.push(now, uuid, name, prov, Path::Gatt(PbGattLink::new(mtu)))
    }

    /// The GATT connection of `id` is ready: the session sends its Invite.
    pub fn gatt_ready(&mut self, now: Instant, id: SessionId) {
        if let Some(s) = self.sessions.get_mut(id.0)
            && s.result.is_none()
        {
            s.prov.start(now);
        }
    }

    /// A PB-ADV payload (AD type 0x29 data) heard on the air.
    pub fn handle_adv(&mut self, now: Instant, pb_adv_payload: &[u8]) {
        self.links.handle_adv(now, pb_adv_payload);
    }

    /// A packet from the GATT connection of `id` (a Data Out notification).
    pub fn handle_gatt(&mut self, now: Instant, id: SessionId, data: &[u8]) {
        let Some(s) = self.sessions.get_mut(id.0) else {
            return;
        };
        if let Path::Gatt(g) = &mut s.path {
            match g.handle_data(now, data) {
                Ok(Some(pdu)) => s.prov.handle_pdu(now, &pdu),
                Ok(None) => {}
                Err(_) => s.prov.handle_link_closed(now),
            }
        }
    }

    /// The GATT connection of `id` dropped.
    pub fn handle_gatt_disconnected(&mut self, now: Instant, id: SessionId) {
        if let Some(s) = self.sessions.get_mut(id.0)
            && s.result.is_none()
        {
            s.prov.handle_link_closed(now);
        }
    }

    /// The value the installer read from the device (Output OOB).
    pub fn provide_output_oob(
        &mut self,
        now: Instant,
        id: SessionId,
        value: OobValue,
    ) -> Result<(), ProvisioningError> {
        match self.sessions.get_mut(id.0) {
            Some(s) => s.prov.provide_output_oob(now, value),
            None => Err(ProvisioningError::LinkClosed),
        }
    }

    /// Gives up on session `id` (the installer skipped it, or a driver timed it out).
    pub fn abort(&mut self, now: Instant, id: SessionId, error: ProvisioningError) {
        if self.sessions.get(id.0).is_some_and(|s| s.result.is_none()) {
            self.finish(now, id, Err(error));
        }
    }

    /// Time passed: bearer and session timers fire.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.links.handle_timeout(now);
        // A closed session has no result to wait for and no GATT link left.
        for &i in &self.unclosed {
            let s = &mut self.sessions[i];
            if s.result.is_none() {
                s.prov.handle_timeout(now);
            }
            if let Path::Gatt(g) = &mut s.path
                && g.handle_timeout(now).is_some()
            {
                s.prov.handle_link_closed(now);
            }
        }
    }

    /// Settles everything that can happen at `now`: bearer events to sessions, session
    /// events to `sink` (allocate, commit, confirm, release) and to the certificate
    /// verifier, session transmits to the bearers. Returns whether anything happened, so a
    /// driver can loop until the instant is quiet.
    pub fn drive(&mut self, now: Instant, sink: &mut dyn NodeSink) -> bool {
        let mut progress = false;
        while let Some(ev) = self.links.poll_event() {
            progress = true;
            match ev {
                LinkEvent::Opened(l) => {
                    if let Some(id) = self.by_link.get(&l) {
                        self.sessions[id.0].prov.start(now);
                    }
                }
                LinkEvent::Received(l, pdu) => {
                    if let Some(id) = self.by_link.get(&l) {
                        self.sessions[id.0].prov.handle_pdu(now, &pdu);
                    }
                }
                LinkEvent::Delivered(_) => {}
                LinkEvent::Closed(l, cause) => {
                    if let Some(id) = self.by_link.remove(&l) {
                        let s = &mut self.sessions[id.0];
                        if s.result.is_none() {
                            s.prov.handle_link_closed(now);
                            if matches!(cause, CloseCause::OpenTimeout) {
                                self.finish(now, id, Err(ProvisioningError::LinkClosed));
                            }
                        }
                    }
                }
            }
        }
        let open: Vec<usize> = self.unclosed.iter().copied().collect();
        for i in open {
            progress |= self.drive_session(now, SessionId(i), sink);
        }
        progress
    }

    fn drive_session(&mut self, now: Instant, id: SessionId, sink: &mut dyn NodeSink) -> bool {
        let mut progress = false;
        let s = &mut self.sessions[id.0];
        while let Some(pdu) = s.prov.poll_transmit() {
            progress = true;
            match &mut s.path {
                Path::Gatt(g) => g.send(&pdu),
                Path::Adv(Some(l)) => {
                    // A link that closed meanwhile reports it through its events.
                    let _ = self.links.send(now, *l, &pdu);
                }
                Path::Adv(None) | Path::Closed => {}
            }
        }
        if let Path::Gatt(g) = &mut s.path {
            while let Some(seg) = g.poll_transmit() {
                progress = true;
                self.gatt_out.push_back((id, seg));
            }
        }
        let mut ended: Option<Result<Outcome, ProvisioningError>> = None;
        while let Some(ev) = s.prov.poll_event() {
            progress = true;
            match ev {
                Event::CapabilitiesReceived(_) => {}
                Event::RecordsReceived {
                    device_certificate,
                    intermediates,
                    ..
                } => {
                    let verdict = match &self.verifier {
                        Some(verify) => verify(&s.uuid, &device_certificate, &intermediates),
                        None => Err("no certificate verifier is configured".to_string()),
                    };
                    // Either call is made in the state that takes it; a failure comes back
                    // as Event::Failed.
                    let _ = match verdict {
                        Ok(key) => s.prov.provide_device_public_key(now, key),
                        Err(reason) => s.prov.reject_certificate(now, reason),
                    };
                }
                Event::NeedUnicastAddress { elements } => match sink.allocate(&s.uuid, elements) {
                    Ok(a) => s.prov.set_unicast_address(now, a),
                    Err(e) => ended = Some(Err(ProvisioningError::Store(e))),
                },
                Event::OutputOobRequested { action, size } => {
                    self.events.push_back(HostEvent::OutputOobRequested {
                        session: id,
                        action,
                        size,
                    });
                }
                Event::InputOobDisplay { value, action } => {
                    self.events.push_back(HostEvent::InputOobDisplay {
                        session: id,
                        value,
                        action,
                    });
                }
                Event::CommitRequired {
                    address,
                    elements,
                    device_key,
                } => {
                    let rec = NodeRecord {
                        uuid: s.uuid,
                        name: s.name.clone(),
                        address,
                        elements,
                        device_key,
                        net_key_index: self.params.net_key_index,
                    };
                    match sink.commit(&rec) {
                        Ok(()) => {
                            s.committed = Some((address, elements));
                            s.prov.commit_done(now);
                        }
                        Err(e) => ended = Some(Err(ProvisioningError::Store(e))),
                    }
                }
                Event::Complete(outcome) => {
                    // The node is committed; a failed confirmation only leaves it marked
                    // unconfirmed, which is safe.
                    let _ = sink.confirm(&s.uuid);
                    ended = Some(Ok(outcome));
                }
                Event::Failed(e) => {
                    if let (ProvisioningError::DataRefused(code), Some(node)) = (&e, s.committed) {
                        // The device did not take the data (§5.4.4): void the commit at once,
                        // so the node neither stays `unconfirmed` nor is configured later.
                        let why = format!(
                            "the device answered its Provisioning Data with Provisioning Failed: {code}, so it holds no key"
                        );
                        if sink.void(&s.uuid, &why).is_ok() {
                            s.voided = Some(node);
                        }
                    }
                    ended = Some(Err(e));
                }
            }
            if ended.is_some() {
                break;
            }
        }
        if let Some(r) = ended {
            self.finish(now, id, r);
        }
        // A session that ended (here, or by abort / a refused open) closes its link once.
        let s = &mut self.sessions[id.0];
        if s.result.is_some() && !s.closing {
            progress = true;
            s.closing = true;
            self.unclosed.remove(&id.0);
            if s.committed.is_none() {
                sink.release(&s.uuid);
            }
            let reason: CloseReason = match &s.result {
                Some(Ok(_)) => LinkCloseReason::SUCCESS,
                Some(Err(e)) => s.prov.close_reason().unwrap_or(e.close_reason()),
                None => LinkCloseReason::FAIL,
            };
            match s.path {
                Path::Adv(Some(l)) => {
                    self.by_link.remove(&l);
                    self.links.close(now, l, reason);
                }
                Path::Gatt(_) => s.path = Path::Closed,
                Path::Adv(None) | Path::Closed => {}
            }
            self.events.push_back(HostEvent::Finished { session: id });
        }
        progress
    }

    fn finish(&mut self, now: Instant, id: SessionId, result: Result<Outcome, ProvisioningError>) {
        let s = &mut self.sessions[id.0];
        if s.result.is_none() {
            s.result = Some(result);
            s.ended = Some(now);
        }
    }

    /// The next PB-ADV payload to advertise (AD type 0x29), acks first; call when the radio
    /// can take one more advertisement.
    pub fn poll_adv_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.links.poll_transmit(now)
    }

    /// The next GATT packet to write to a session's Data In characteristic.
    pub fn poll_gatt_transmit(&mut self) -> Option<(SessionId, Vec<u8>)> {
        self.gatt_out.pop_front()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<HostEvent> {
        self.events.pop_front()
    }

    /// When the host next needs [`Host::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.links.poll_timeout();
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        for s in self.unclosed.iter().map(|&i| &self.sessions[i]) {
            if s.result.is_none() {
                consider(s.prov.poll_timeout());
            }
            if let Path::Gatt(g) = &s.path {
                consider(g.poll_timeout());
            }
        }
        next
    }

    /// A session.
    pub fn session(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(id.0)
    }

    /// Sessions not yet finished.
    pub fn active(&self) -> usize {
        self.unclosed
            .iter()
            .filter(|&&i| self.sessions[i].result.is_none())
            .count()
    }

    /// Every session has ended and every PB-ADV link has finished closing.
    pub fn is_idle(&self) -> bool {
        self.links.is_empty()
            && self
                .unclosed
                .iter()
                .all(|&i| self.sessions[i].result.is_some())
    }

    /// PB-ADV retransmissions so far.
    pub fn retransmissions(&self) -> u64 {
        self.links.stats().retransmitted
    }

    /// The sessions, in the order they were opened (index = [`SessionId`]).
    pub fn into_sessions(self) -> Vec<Session> {
        self.sessions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(uuid: DeviceUuid, address: u16, elements: u8) -> NodeRecord {
        NodeRecord {
            uuid,
            name: String::new(),
            address,
            elements,
            device_key: DevKey::from_bytes([3; 16]),
            net_key_index: 0,
        }
    }

    /// The sinks' side of a refused Provisioning Data: the commit is voided, and the
    /// addresses are never handed out again.
    #[test]
    fn sinks_void_a_commit_and_never_reuse_its_addresses() {
        let (a, b) = (DeviceUuid([1; 16]), DeviceUuid([2; 16]));
        // In memory.
        let mut m = MemorySink::default();
        let address = m.allocate(&a, 2).unwrap();
        m.commit(&record(a, address, 2)).unwrap();
        m.void(&a, "refused").unwrap();
        assert!(m.records.is_empty());
        assert_eq!(m.voided, vec![(a, 0x0001, 2)]);
        assert!(m.void(&b, "refused").is_err(), "nothing committed");
        assert_eq!(m.allocate(&b, 1).unwrap(), 0x0003);
        // The store.
        let dir = tempfile::tempdir().unwrap();
        let mut s = crate::store::Store::open(&dir.path().join("n.db")).unwrap();
        let mut rng: rand_chacha::ChaCha20Rng =
            rand_chacha::rand_core::SeedableRng::seed_from_u64(3);
        s.create_network("n", None, &mut rng).unwrap();
        let sink: &mut dyn NodeSink = &mut s;
        let address = sink.allocate(&a, 2).unwrap();
        sink.commit(&record(a, address, 2)).unwrap();
        sink.void(&a, "the device refused its data").unwrap();
        assert!(sink.void(&a, "again").is_err(), "voided once");
        assert_eq!(sink.allocate(&b, 2).unwrap(), 0x0003);
        assert_eq!(sink.allocate(&a, 1).unwrap(), 0x0005);
        assert!(s.node_by_uuid(&a).is_err());
        let j = s.journal().unwrap();
        assert_eq!(j.len(), 1);
        assert_eq!(
            j[0].detail,
            "addresses 0001-0002 retired: the device refused its data"
        );
        // A confirmed node is not voided.
        let sink: &mut dyn NodeSink = &mut s;
        sink.release(&a);
        let address = sink.allocate(&a, 1).unwrap();
        sink.commit(&record(a, address, 1)).unwrap();
        sink.confirm(&a).unwrap();
        assert!(sink.void(&a, "late").is_err());
        assert!(s.node_by_uuid(&a).is_ok());
    }

    /// The installer's line for a refused Provisioning Data names the code and the retired
    /// addresses; other failures are the error's own words.
    #[test]
    fn failure_message_names_the_retired_addresses() {
        let e = ProvisioningError::DataRefused(crate::wire::FailedCode::CANNOT_ASSIGN_ADDRESSES);
        let m = failure_message(&e, Some((0x0010, 2)));
        assert!(m.starts_with(&e.user_message()), "{m}");
        assert!(m.contains("(0x08)") && m.contains("0x0010-0x0011"), "{m}");
        assert!(m.contains("nothing is stored for it"), "{m}");
        assert!(failure_message(&e, Some((0x0010, 1))).contains("address 0x0010 is retired"));
        assert_eq!(failure_message(&e, None), e.user_message());
    }
}
