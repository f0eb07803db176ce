//! The Configuration Server's state and request handling (Mesh Protocol 1.1 §4.4.1), sans-IO.
//!
//! [`ConfigServer`] holds a node's configuration states — Composition Data page 0, the NetKey
//! List with a Key Refresh Phase per NetKey, the AppKey List (each AppKey bound to one NetKey),
//! model to AppKey bindings, publications, subscriptions, Default TTL, Relay, GATT Proxy,
//! Secure Network Beacon and Network Transmit — and answers each Configuration request with
//! the status message and status code §4.4.1.2 prescribes ([`ConfigServer::handle`]). What a
//! change means for the node's network and transport layers is returned as
//! [`ServerEffect`]s for the caller to apply (the simulated node applies them to its
//! [`Transport`](super::transport::Transport)); the server itself never sends anything.
//!
//! It serves the simulated nodes of `sim/` and tests; meshprov itself is a client. Choices
//! where the specification leaves room, or where this server is simpler than a real node:
//!
//! - Capacities: [`MAX_NET_KEYS`] NetKeys, [`MAX_APP_KEYS`] AppKeys, [`MAX_SUBSCRIPTIONS`]
//!   addresses per model; beyond them: Insufficient Resources.
//! - The Configuration Server and Client models (0x0000, 0x0001) use the device key only:
//!   binding an AppKey to them is Cannot Bind, a publication is Invalid Publish Parameters, a
//!   subscription Not a Subscribe Model.
//! - A Publication Set needs the AppKey to be on the node (Invalid AppKey Index otherwise), not
//!   bound to the model; publishing to the unassigned address disables the publication and the
//!   status reports all publication parameters as zero.
//! - Deleting a key, a binding or a subscription that is not there is Success (idempotent, so a
//!   retried request whose first status was lost gets the same answer).
//! - NetKey Delete of the last NetKey, or of the one the request came in on, is Cannot
//!   Remove.
//! - Key Refresh Phase Set: transition 2 from phase 1 or 2 goes to phase 2; transition 3 from
//!   phase 1 or 2 revokes the old keys (phase 0); transition 3 in phase 0 stays in phase 0;
//!   transition 2 in phase 0 is Cannot Update. A Secure Network beacon secured with a subnet's
//!   new key moves it on as well ([`ConfigServer::handle_key_refresh_beacon`]).
//! - A model the element lacks is Invalid Model, whatever the request (never a panic).
//! - Relay and GATT Proxy report 0x02 (not supported) when Composition Data lacks the feature,
//!   and ignore Sets then.
//! - Composition Data Get of any page answers page 0 (the only page this server has).

use std::collections::BTreeMap;

use mesh_crypto::toolbox;
use mesh_crypto::{AppKey, NetKey};

use super::address;
use super::config::{
    CompositionPage0, ConfigMessage, ConfigStatus, Features, ModelId, PublishParams,
};
use super::network::NetworkTransmit;

/// Most NetKeys a node holds.
pub const MAX_NET_KEYS: usize = 4;
/// Most AppKeys a node holds.
pub const MAX_APP_KEYS: usize = 16;
/// Most subscription addresses per model.
pub const MAX_SUBSCRIPTIONS: usize = 8;

/// A NetKey on the node with its Key Refresh Phase.
#[derive(Debug, Clone)]
pub struct NetKeyState {
    /// The key in use (phase 0), or the old key (phases 1 and 2).
    pub key: NetKey,
    /// The new key during a key refresh.
    pub new_key: Option<NetKey>,
    /// Key Refresh Phase: 0 normal, 1 distributing, 2 using the new key.
    pub phase: u8,
}

/// An AppKey on the node.
#[derive(Debug, Clone)]
pub struct AppKeyState {
    /// The NetKey it is bound to.
    pub net_key_index: u16,
    /// The key in use (or the old key during a key refresh).
    pub key: AppKey,
    /// The new key during a key refresh.
    pub new_key: Option<AppKey>,
}

/// A model's publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publication {
    /// Publish address (group, unicast or virtual).
    pub address: u16,
    /// The Label UUID when `address` is virtual.
    pub label: Option<[u8; 16]>,
    /// The other publication parameters.
    pub params: PublishParams,
}

/// The configuration of one model instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelState {
    /// AppKey indexes bound to the model, in the order bound.
    pub bindings: Vec<u16>,
    /// The publication, if one is set.
    pub publication: Option<Publication>,
    /// Subscription addresses (group or virtual), in the order added.
    pub subscriptions: Vec<u16>,
    /// Label UUIDs of the virtual addresses in `subscriptions`.
    pub labels: Vec<[u8; 16]>,
}

/// What a request changed below the access layer: the caller applies these to its network
/// and transport layers, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEffect {
    /// A new subnet.
    NetKeyAdded {
        /// NetKey index.
        index: u16,
        /// The key.
        key: NetKey,
    },
    /// Key refresh phase 1: receive with `key` too.
    NetKeyUpdated {
        /// NetKey index.
        index: u16,
        /// The new key.
        key: NetKey,
    },
    /// A subnet is gone.
    NetKeyDeleted {
        /// NetKey index.
        index: u16,
    },
    /// Key refresh of a subnet and of the AppKeys bound to it moved on: phase 2 sends with
    /// the new keys; phase 0 revoked the old ones.
    KeyRefreshPhase {
        /// NetKey index.
        index: u16,
        /// The new phase (2 or 0).
        phase: u8,
        /// The AppKeys bound to this NetKey that have a new key.
        app_keys: Vec<u16>,
    },
    /// A new AppKey.
    AppKeyAdded {
        /// AppKey index.
        index: u16,
        /// The NetKey it is bound to.
        net_key_index: u16,
        /// The key.
        key: AppKey,
    },
    /// Key refresh phase 1 of an AppKey.
    AppKeyUpdated {
        /// AppKey index.
        index: u16,
        /// The new key.
        key: AppKey,
    },
    /// An AppKey is gone.
    AppKeyDeleted {
        /// AppKey index.
        index: u16,
    },
    /// Some model now subscribes to this group or virtual address (for a virtual address,
    /// [`ConfigServer::labels`] has its Label UUID).
    Subscribe(u16),
    /// No model subscribes to this address any more.
    Unsubscribe(u16),
    /// The Network Transmit state changed.
    NetworkTransmit(NetworkTransmit),
    /// Node Reset: after the status is sent the node forgets everything and goes back to the
    /// unprovisioned state.
    Reset,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    /// The status message to send back (with the device key), `None` for a message that is
    /// not a request.
    pub reply: Option<ConfigMessage>,
    /// What changed below the access layer.
    pub effects: Vec<ServerEffect>,
}

/// A node's Configuration Server (see the module documentation).
#[derive(Debug, Clone)]
pub struct ConfigServer {
    composition: CompositionPage0,
    primary: u16,
    net_keys: BTreeMap<u16, NetKeyState>,
    app_keys: BTreeMap<u16, AppKeyState>,
    models: BTreeMap<(u16, ModelId), ModelState>,
    default_ttl: u8,
    relay: u8,
    relay_retransmit: NetworkTransmit,
    gatt_proxy: u8,
    beacon: u8,
    network_transmit: NetworkTransmit,
}

fn is_config_model(m: ModelId) -> bool {
    m == ModelId::CONFIG_SERVER || m == ModelId::CONFIG_CLIENT
}

impl ConfigServer {
    /// A freshly provisioned node at `primary` holding one NetKey: every model of
    /// `composition` unbound, unpublished and unsubscribed, Default TTL 7, relay and proxy
    /// enabled if supported, beacons on, Network Transmit 3 × 20 ms.
    pub fn new(
        composition: CompositionPage0,
        primary: u16,
        net_key_index: u16,
        net_key: NetKey,
    ) -> Self {
        let mut models = BTreeMap::new();
        for (i, e) in composition.elements.iter().enumerate() {
            let addr = primary.wrapping_add(i as u16);
            for m in &e.sig_models {
                models.insert((addr, ModelId::Sig(*m)), ModelState::default());
            }
            for m in &e.vendor_models {
                models.insert((addr, *m), ModelState::default());
            }
        }
        let f = composition.features;
        let mut net_keys = BTreeMap::new();
        net_keys.insert(
            net_key_index,
            NetKeyState {
                key: net_key,
                new_key: None,
                phase: 0,
            },
        );
        Self {
            relay: if f.has(Features::RELAY) { 1 } else { 2 },
            gatt_proxy: if f.has(Features::PROXY) { 1 } else { 2 },
            composition,
            primary,
            net_keys,
            app_keys: BTreeMap::new(),
            models,
            default_ttl: 7,
            relay_retransmit: NetworkTransmit::default(),
            beacon: 1,
            network_transmit: NetworkTransmit::default(),
        }
    }

    /// Composition Data page 0.
    pub fn composition(&self) -> &CompositionPage0 {
        &self.composition
    }

    /// The primary element address.
    pub fn primary(&self) -> u16 {
        self.primary
    }

    /// The element addresses.
    pub fn elements(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.composition.elements.len()).map(|i| self.primary.wrapping_add(i as u16))
    }

    /// Whether `addr` is one of this node's elements.
    pub fn is_element(&self, addr: u16) -> bool {
        let n = self.composition.elements.len() as u32;
        addr >= self.primary && u32::from(addr - self.primary) < n
    }

    /// The NetKeys by index.
    pub fn net_keys(&self) -> &BTreeMap<u16, NetKeyState> {
        &self.net_keys
    }

    /// The AppKeys by index.
    pub fn app_keys(&self) -> &BTreeMap<u16, AppKeyState> {
        &self.app_keys
    }

    /// The Key Refresh Phase of a NetKey.
    pub fn key_refresh_phase(&self, net_key_index: u16) -> Option<u8> {
        self.net_keys.get(&net_key_index).map(|k| k.phase)
    }

    /// The state of one model instance.
    pub fn model(&self, element: u16, model: ModelId) -> Option<&ModelState> {
        self.models.get(&(element, model))
    }

    /// Every model instance: (element address, model) and its state.
    pub fn models(&self) -> &BTreeMap<(u16, ModelId), ModelState> {
        &self.models
    }

    /// Default TTL.
    pub fn default_ttl(&self) -> u8 {
        self.default_ttl
    }

    /// Relay state (0 off, 1 on, 2 not supported) and Relay Retransmit.
    pub fn relay(&self) -> (u8, NetworkTransmit) {
        (self.relay, self.relay_retransmit)
    }

    /// GATT Proxy state (0 off, 1 on, 2 not supported).
    pub fn gatt_proxy(&self) -> u8 {
        self.gatt_proxy
    }

    /// Secure Network Beacon state.
    pub fn beacon(&self) -> u8 {
        self.beacon
    }

    /// Network Transmit state.
    pub fn network_transmit(&self) -> NetworkTransmit {
        self.network_transmit
    }

    /// Every group and virtual address some model subscribes to.
    fn subscribed(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .models
            .values()
            .flat_map(|m| m.subscriptions.iter().copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Answers one Configuration message received with this node's device key on subnet
    /// `rx_net_key_index`.
    pub fn handle(&mut self, rx_net_key_index: u16, request: &ConfigMessage) -> ServerReply {
        let before = self.subscribed();
        let mut effects = Vec::new();
        let reply = self.answer(rx_net_key_index, request, &mut effects);
        let after = self.subscribed();
        for a in &after {
            if !before.contains(a) {
                effects.push(ServerEffect::Subscribe(*a));
            }
        }
        for a in &before {
            if !after.contains(a) {
                effects.push(ServerEffect::Unsubscribe(*a));
            }
        }
        ServerReply { reply, effects }
    }

    fn answer(
        &mut self,
        rx_net: u16,
        request: &ConfigMessage,
        effects: &mut Vec<ServerEffect>,
    ) -> Option<ConfigMessage> {
        use ConfigMessage as M;
        Some(match request {
            M::CompositionDataGet { .. } => {
                let mut data = Vec::new();
                self.composition.emit(&mut data);
                M::CompositionDataStatus { page: 0, data }
            }
            M::AppKeyAdd {
                net_key_index,
                app_key_index,
                key,
            } => M::AppKeyStatus {
                status: self.app_key_add(*net_key_index, *app_key_index, key, effects),
                net_key_index: *net_key_index,
                app_key_index: *app_key_index,
            },
            M::AppKeyUpdate {
                net_key_index,
                app_key_index,
                key,
            } => M::AppKeyStatus {
                status: self.app_key_update(*net_key_index, *app_key_index, key, effects),
                net_key_index: *net_key_index,
                app_key_index: *app_key_index,
            },
            M::AppKeyDelete {
                net_key_index,
                app_key_index,
            } => M::AppKeyStatus {
                status: self.app_key_delete(*net_key_index, *app_key_index, effects),
                net_key_index: *net_key_index,
                app_key_index: *app_key_index,
            },
            M::AppKeyGet { net_key_index } => {
                if self.net_keys.contains_key(net_key_index) {
                    M::AppKeyList {
                        status: ConfigStatus::SUCCESS,
                        net_key_index: *net_key_index,
                        app_key_indexes: self
                            .app_keys
                            .iter()
                            .filter(|(_, a)| a.net_key_index == *net_key_index)
                            .map(|(i, _)| *i)
                            .collect(),
                    }
                } else {
                    M::AppKeyList {
                        status: ConfigStatus::INVALID_NETKEY_INDEX,
                        net_key_index: *net_key_index,
                        app_key_indexes: Vec::new(),
                    }
                }
            }
            M::NetKeyAdd { net_key_index, key } => M::NetKeyStatus {
                status: self.net_key_add(*net_key_index, key, effects),
                net_key_index: *net_key_index,
            },
            M::NetKeyUpdate { net_key_index, key } => M::NetKeyStatus {
                status: self.net_key_update(*net_key_index, key, effects),
                net_key_index: *net_key_index,
            },
            M::NetKeyDelete { net_key_index } => M::NetKeyStatus {
                status: self.net_key_delete(rx_net, *net_key_index, effects),
                net_key_index: *net_key_index,
            },
            M::NetKeyGet => M::NetKeyList {
                net_key_indexes: self.net_keys.keys().copied().collect(),
            },
            M::ModelAppBind {
                element,
                app_key_index,
                model,
            } => M::ModelAppStatus {
                status: self.bind(*element, *app_key_index, *model),
                element: *element,
                app_key_index: *app_key_index,
                model: *model,
            },
            M::ModelAppUnbind {
                element,
                app_key_index,
                model,
            } => M::ModelAppStatus {
                status: self.unbind(*element, *app_key_index, *model),
                element: *element,
                app_key_index: *app_key_index,
                model: *model,
            },
            M::ModelPublicationGet { element, model } => {
                let (status, publication) = match self.model_check(*element, *model) {
                    Err(s) => (s, None),
                    Ok(m) => (ConfigStatus::SUCCESS, m.publication),
                };
                publication_status(status, *element, *model, publication)
            }
            M::ModelPublicationSet {
                element,
                address,
                publish,
                model,
            } => self.publication_set(*element, *address, None, *publish, *model),
            M::ModelPublicationVirtualSet {
                element,
                label,
                publish,
                model,
            } => self.publication_set(
                *element,
                toolbox::virtual_address(label),
                Some(*label),
                *publish,
                *model,
            ),
            M::ModelSubscriptionAdd {
                element,
                address,
                model,
            } => self.subscription(*element, *model, *address, None, Sub::Add),
            M::ModelSubscriptionDelete {
                element,
                address,
                model,
            } => self.subscription(*element, *model, *address, None, Sub::Delete),
            M::ModelSubscriptionOverwrite {
                element,
                address,
                model,
            } => self.subscription(*element, *model, *address, None, Sub::Overwrite),
            M::ModelSubscriptionDeleteAll { element, model } => {
                self.subscription(*element, *model, address::UNASSIGNED, None, Sub::DeleteAll)
            }
            M::ModelSubscriptionVirtualAdd {
                element,
                label,
                model,
            } => {
                let a = toolbox::virtual_address(label);
                self.subscription(*element, *model, a, Some(*label), Sub::Add)
            }
            M::ModelSubscriptionVirtualDelete {
                element,
                label,
                model,
            } => {
                let a = toolbox::virtual_address(label);
                self.subscription(*element, *model, a, Some(*label), Sub::Delete)
            }
            M::ModelSubscriptionVirtualOverwrite {
                element,
                label,
                model,
            } => {
                let a = toolbox::virtual_address(label);
                self.subscription(*element, *model, a, Some(*label), Sub::Overwrite)
            }
            M::DefaultTtlGet => M::DefaultTtlStatus {
                ttl: self.default_ttl,
            },
            M::DefaultTtlSet { ttl } => {
                self.default_ttl = *ttl;
                M::DefaultTtlStatus { ttl: *ttl }
            }
            M::RelayGet => M::RelayStatus {
                relay: self.relay,
                retransmit: self.relay_retransmit,
            },
            M::RelaySet { relay, retransmit } => {
                if self.relay != 2 {
                    self.relay = *relay;
                    self.relay_retransmit = *retransmit;
                }
                M::RelayStatus {
                    relay: self.relay,
                    retransmit: self.relay_retransmit,
                }
            }
            M::GattProxyGet => M::GattProxyStatus {
                state: self.gatt_proxy,
            },
            M::GattProxySet { state } => {
                if self.gatt_proxy != 2 {
                    self.gatt_proxy = *state;
                }
                M::GattProxyStatus {
                    state: self.gatt_proxy,
                }
            }
            M::BeaconGet => M::BeaconStatus { state: self.beacon },
            M::BeaconSet { state } => {
                self.beacon = *state;
                M::BeaconStatus { state: *state }
            }
            M::NetworkTransmitGet => M::NetworkTransmitStatus {
                transmit: self.network_transmit,
            },
            M::NetworkTransmitSet { transmit } => {
                self.network_transmit = *transmit;
                effects.push(ServerEffect::NetworkTransmit(*transmit));
                M::NetworkTransmitStatus {
                    transmit: *transmit,
                }
            }
            M::NodeReset => {
                self.net_keys.clear();
                self.app_keys.clear();
                for m in self.models.values_mut() {
                    *m = ModelState::default();
                }
                effects.push(ServerEffect::Reset);
                M::NodeResetStatus
            }
            M::KeyRefreshPhaseGet { net_key_index } => match self.net_keys.get(net_key_index) {
                Some(k) => M::KeyRefreshPhaseStatus {
                    status: ConfigStatus::SUCCESS,
                    net_key_index: *net_key_index,
                    phase: k.phase,
                },
                None => M::KeyRefreshPhaseStatus {
                    status: ConfigStatus::INVALID_NETKEY_INDEX,
                    net_key_index: *net_key_index,
                    phase: 0,
                },
            },
            M::KeyRefreshPhaseSet {
                net_key_index,
                transition,
            } => self.key_refresh_set(*net_key_index, *transition, effects),
            // Status messages are not requests: no answer.
            _ => return None,
        })
    }

    fn app_key_add(
        &mut self,
        net: u16,
        app: u16,
        key: &AppKey,
        effects: &mut Vec<ServerEffect>,
    ) -> ConfigStatus {
        if !self.net_keys.contains_key(&net) {
            return ConfigStatus::INVALID_NETKEY_INDEX;
        }
        if let Some(a) = self.app_keys.get(&app) {
            return if a.net_key_index != net {
                ConfigStatus::INVALID_NETKEY_INDEX
            } else if a.key == *key {
                ConfigStatus::SUCCESS
            } else {
                ConfigStatus::KEY_INDEX_ALREADY_STORED
            };
        }
        if self.app_keys.len() >= MAX_APP_KEYS {
            return ConfigStatus::INSUFFICIENT_RESOURCES;
        }
        self.app_keys.insert(
            app,
            AppKeyState {
                net_key_index: net,
                key: key.clone(),
                new_key: None,
            },
        );
        effects.push(ServerEffect::AppKeyAdded {
            index: app,
            net_key_index: net,
            key: key.clone(),
        });
        ConfigStatus::SUCCESS
    }

    fn app_key_update(
        &mut self,
        net: u16,
        app: u16,
        key: &AppKey,
        effects: &mut Vec<ServerEffect>,
    ) -> ConfigStatus {
        let Some(n) = self.net_keys.get(&net) else {
            return ConfigStatus::INVALID_NETKEY_INDEX;
        };
        let phase = n.phase;
        let Some(a) = self.app_keys.get_mut(&app) else {
            return ConfigStatus::INVALID_APPKEY_INDEX;
        };
        if a.net_key_index != net {
            return ConfigStatus::INVALID_BINDING;
        }
        if phase != 1 {
            return ConfigStatus::CANNOT_UPDATE;
        }
        match &a.new_key {
            Some(k) if k == key => ConfigStatus::SUCCESS,
            Some(_) => ConfigStatus::CANNOT_UPDATE,
            None => {
                a.new_key = Some(key.clone());
                effects.push(ServerEffect::AppKeyUpdated {
                    index: app,
                    key: key.clone(),
                });
                ConfigStatus::SUCCESS
            }
        }
    }

    fn app_key_delete(
        &mut self,
        net: u16,
        app: u16,
        effects: &mut Vec<ServerEffect>,
    ) -> ConfigStatus {
        if !self.net_keys.contains_key(&net) {
            return ConfigStatus::INVALID_NETKEY_INDEX;
        }
        match self.app_keys.get(&app) {
            None => ConfigStatus::SUCCESS,
            Some(a) if a.net_key_index != net => ConfigStatus::INVALID_BINDING,
            Some(_) => {
                self.remove_app_key(app, effects);
                ConfigStatus::SUCCESS
            }
        }
    }

    /// Removes an AppKey with its bindings and the publications that use it.
    fn remove_app_key(&mut self, app: u16, effects: &mut Vec<ServerEffect>) {
        self.app_keys.remove(&app);
        for m in self.models.values_mut() {
            m.bindings.retain(|b| *b != app);
            if m.publication.is_some_and(|p| p.params.app_key_index == app) {
                m.publication = None;
            }
        }
        effects.push(ServerEffect::AppKeyDeleted { index: app });
    }

    fn net_key_add(
        &mut self,
        net: u16,
        key: &NetKey,
        effects: &mut Vec<ServerEffect>,
    ) -> ConfigStatus {
        if let Some(n) = self.net_keys.get(&net) {
            return if n.key == *key {
                ConfigStatus::SUCCESS
            } else {
                ConfigStatus::KEY_INDEX_ALREADY_STORED
            };
        }
        if self.net_keys.len() >= MAX_NET_KEYS {
            return ConfigStatus::INSUFFICIENT_RESOURCES;
        }
        self.net_keys.insert(
            net,
            NetKeyState {
                key: key.clone(),
                new_key: None,
                phase: 0,
            },
        );
        effects.push(ServerEffect::NetKeyAdded {
            index: net,
            key: key.clone(),
        });
        ConfigStatus::SUCCESS
    }

    fn net_key_update(
        &mut self,
        net: u16,
        key: &NetKey,
        effects: &mut Vec<ServerEffect>,
    ) -> ConfigStatus {
        let Some(n) = self.net_keys.get_mut(&net) else {
            return ConfigStatus::INVALID_NETKEY_INDEX;
        };
        match (n.phase, &n.new_key) {
            (0, _) => {
                n.new_key = Some(key.clone());
                n.phase = 1;
                effects.push(ServerEffect::NetKeyUpdated {
                    index: net,
                    key: key.clone(),
                });
                ConfigStatus::SUCCESS
            }
            (1, Some(k)) if k == key => ConfigStatus::SUCCESS,
            _ => ConfigStatus::CANNOT_UPDATE,
        }
    }

    fn net_key_delete(
        &mut self,
        rx_net: u16,
        net: u16,
        effects: &mut Vec<ServerEffect>,
    ) -> ConfigStatus {
        if !self.net_keys.contains_key(&net) {
            return ConfigStatus::SUCCESS;
        }
        if self.net_keys.len() == 1 || net == rx_net {
            return ConfigStatus::CANNOT_REMOVE;
        }
        let bound: Vec<u16> = self
            .app_keys
            .iter()
            .filter(|(_, a)| a.net_key_index == net)
            .map(|(i, _)| *i)
            .collect();
        for app in bound {
            self.remove_app_key(app, effects);
        }
        self.net_keys.remove(&net);
        effects.push(ServerEffect::NetKeyDeleted { index: net });
        ConfigStatus::SUCCESS
    }

    fn key_refresh_set(
        &mut self,
        net: u16,
        transition: u8,
        effects: &mut Vec<ServerEffect>,
    ) -> ConfigMessage {
        let status = |status, phase| ConfigMessage::KeyRefreshPhaseStatus {
            status,
            net_key_index: net,
            phase,
        };
        let Some(phase) = self.key_refresh_phase(net) else {
            return status(ConfigStatus::INVALID_NETKEY_INDEX, 0);
        };
        match (phase, transition) {
            (0, 2) => status(ConfigStatus::CANNOT_UPDATE, 0),
            (0, _) => status(ConfigStatus::SUCCESS, 0),
            (1, 2) => {
                effects.extend(self.enter_phase(net, 2));
                status(ConfigStatus::SUCCESS, 2)
            }
            (2, 2) => status(ConfigStatus::SUCCESS, 2),
            _ => {
                // Transition 3 from phase 1 or 2: revoke the old keys.
                effects.extend(self.enter_phase(net, 0));
                status(ConfigStatus::SUCCESS, 0)
            }
        }
    }

    /// A Secure Network beacon of subnet `net_key_index` authenticated with its *new* NetKey
    /// (MshPRT v1.1 §3.6.4.1; the caller checks the beacon): with the Key Refresh flag set it
    /// moves phase 1 to phase 2; with the flag cleared it moves phase 1 or 2 to normal
    /// operation, revoking the old keys. In any other case nothing changes (in phase 0 a
    /// changed flag is ignored; beacons secured with the old key are never passed here).
    /// Returns what changed below the access layer.
    pub fn handle_key_refresh_beacon(
        &mut self,
        net_key_index: u16,
        key_refresh: bool,
    ) -> Vec<ServerEffect> {
        match (self.key_refresh_phase(net_key_index), key_refresh) {
            (Some(1), true) => self.enter_phase(net_key_index, 2).into_iter().collect(),
            (Some(1 | 2), false) => self.enter_phase(net_key_index, 0).into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// Moves subnet `net` (in phase 1 or 2) to phase 2, or revokes its old keys and those of
    /// its AppKeys (phase 0).
    fn enter_phase(&mut self, net: u16, phase: u8) -> Option<ServerEffect> {
        let app_keys: Vec<u16> = self
            .app_keys
            .iter()
            .filter(|(_, a)| a.net_key_index == net && a.new_key.is_some())
            .map(|(i, _)| *i)
            .collect();
        let n = self.net_keys.get_mut(&net)?;
        if phase == 2 {
            n.phase = 2;
        } else {
            if let Some(k) = n.new_key.take() {
                n.key = k;
            }
            n.phase = 0;
            for i in &app_keys {
                if let Some(a) = self.app_keys.get_mut(i)
                    && let Some(k) = a.new_key.take()
                {
                    a.key = k;
                }
            }
        }
        Some(ServerEffect::KeyRefreshPhase {
            index: net,
            phase,
            app_keys,
        })
    }

    /// Invalid Address for an element that is not ours, Invalid Model for a model the element
    /// lacks.
    fn model_check(&self, element: u16, model: ModelId) -> Result<&ModelState, ConfigStatus> {
        if !self.is_element(element) {
            return Err(ConfigStatus::INVALID_ADDRESS);
        }
        self.models
            .get(&(element, model))
            .ok_or(ConfigStatus::INVALID_MODEL)
    }

    /// [`model_check`](Self::model_check) for a change: the model's state, or the status code
    /// that refuses the request.
    fn model_mut(&mut self, element: u16, model: ModelId) -> Result<&mut ModelState, ConfigStatus> {
        if !self.is_element(element) {
            return Err(ConfigStatus::INVALID_ADDRESS);
        }
        self.models
            .get_mut(&(element, model))
            .ok_or(ConfigStatus::INVALID_MODEL)
    }

    fn bind(&mut self, element: u16, app: u16, model: ModelId) -> ConfigStatus {
        if let Err(s) = self.model_check(element, model) {
            return s;
        }
        if !self.app_keys.contains_key(&app) {
            return ConfigStatus::INVALID_APPKEY_INDEX;
        }
        if is_config_model(model) {
            return ConfigStatus::CANNOT_BIND;
        }
        let m = match self.model_mut(element, model) {
            Ok(m) => m,
            Err(s) => return s,
        };
        if !m.bindings.contains(&app) {
            m.bindings.push(app);
        }
        ConfigStatus::SUCCESS
    }

    fn unbind(&mut self, element: u16, app: u16, model: ModelId) -> ConfigStatus {
        if let Err(s) = self.model_check(element, model) {
            return s;
        }
        if !self.app_keys.contains_key(&app) {
            return ConfigStatus::INVALID_APPKEY_INDEX;
        }
        let m = match self.model_mut(element, model) {
            Ok(m) => m,
            Err(s) => return s,
        };
        m.bindings.retain(|b| *b != app);
        if m.publication.is_some_and(|p| p.params.app_key_index == app) {
            m.publication = None;
        }
        ConfigStatus::SUCCESS
    }

    fn publication_set(
        &mut self,
        element: u16,
        address: u16,
        label: Option<[u8; 16]>,
        params: PublishParams,
        model: ModelId,
    ) -> ConfigMessage {
        let requested = Publication {
            address,
            label,
            params,
        };
        let status = match self.model_check(element, model) {
            Err(s) => s,
            Ok(_) if is_config_model(model) => ConfigStatus::INVALID_PUBLISH_PARAMETERS,
            Ok(_)
                if address != address::UNASSIGNED
                    && !self.app_keys.contains_key(&params.app_key_index) =>
            {
                ConfigStatus::INVALID_APPKEY_INDEX
            }
            Ok(_) => {
                let m = match self.model_mut(element, model) {
                    Ok(m) => m,
                    Err(s) => return publication_status(s, element, model, Some(requested)),
                };
                if address == address::UNASSIGNED {
                    m.publication = None;
                    return publication_status(ConfigStatus::SUCCESS, element, model, None);
                }
                m.publication = Some(requested);
                ConfigStatus::SUCCESS
            }
        };
        publication_status(status, element, model, Some(requested))
    }

    fn subscription(
        &mut self,
        element: u16,
        model: ModelId,
        address: u16,
        label: Option<[u8; 16]>,
        op: Sub,
    ) -> ConfigMessage {
        let status = |status| ConfigMessage::ModelSubscriptionStatus {
            status,
            element,
            address,
            model,
        };
        if let Err(s) = self.model_check(element, model) {
            return status(s);
        }
        if is_config_model(model) {
            return status(ConfigStatus::NOT_A_SUBSCRIBE_MODEL);
        }
        let ok_address = address::is_group(address) && address != address::ALL_NODES
            || address::is_virtual(address);
        if op != Sub::DeleteAll && !ok_address {
            return status(ConfigStatus::INVALID_ADDRESS);
        }
        let m = match self.model_mut(element, model) {
            Ok(m) => m,
            Err(s) => return status(s),
        };
        match op {
            Sub::Add => {
                if !m.subscriptions.contains(&address) {
                    if m.subscriptions.len() >= MAX_SUBSCRIPTIONS {
                        return status(ConfigStatus::INSUFFICIENT_RESOURCES);
                    }
                    m.subscriptions.push(address);
                }
            }
            Sub::Delete => m.subscriptions.retain(|a| *a != address),
            Sub::Overwrite => {
                m.subscriptions.clear();
                m.labels.clear();
                m.subscriptions.push(address);
            }
            Sub::DeleteAll => {
                m.subscriptions.clear();
                m.labels.clear();
            }
        }
        if let Some(l) = label {
            if op == Sub::Delete {
                m.labels.retain(|x| *x != l);
            } else if !m.labels.contains(&l) {
                m.labels.push(l);
            }
        }
        status(ConfigStatus::SUCCESS)
    }

    /// The Label UUIDs some model subscribes to.
    pub fn labels(&self) -> Vec<[u8; 16]> {
        let mut v: Vec<[u8; 16]> = self
            .models
            .values()
            .flat_map(|m| m.labels.iter().copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    Add,
    Delete,
    Overwrite,
    DeleteAll,
}

fn publication_status(
    status: ConfigStatus,
    element: u16,
    model: ModelId,
    publication: Option<Publication>,
) -> ConfigMessage {
    let zero = PublishParams {
        app_key_index: 0,
        credential: false,
        ttl: 0,
        period: 0,
        retransmit: 0,
    };
    ConfigMessage::ModelPublicationStatus {
        status,
        element,
        address: publication.map_or(address::UNASSIGNED, |p| p.address),
        publish: publication.map_or(zero, |p| p.params),
        model,
    }
}
