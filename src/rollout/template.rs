//! From a plan's template to the Configuration messages a node gets, and from the node's
//! answers to a verdict: every request must be answered with Success (or the state asked for),
//! and the Composition Data must show the planned elements and the template's models.
//!
//! Every request is idempotent on a node (AppKey Add of the same key, Model App Bind,
//! Subscription Add and the Set messages answer Success again), so a configuration that was
//! interrupted is simply sent again in full (MshPRT v1.1 §4.4.1.2).

use std::collections::BTreeMap;

use mesh_crypto::AppKey;

use crate::net::config::{CompositionPage0, ConfigMessage, ConfigStatus, ModelId, PublishParams};
use crate::net::network::NetworkTransmit;
use crate::rollout::plan::Template;
use crate::store::{Store, StoreError};
use crate::uuid::DeviceUuid;

/// What a template's names resolve to in the store.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    /// AppKeys by name: index and key.
    pub app_keys: BTreeMap<String, (u16, AppKey)>,
    /// Groups by name: address.
    pub groups: BTreeMap<String, u16>,
    /// The NetKey the AppKeys are bound to.
    pub net_key_index: u16,
}

impl Resolved {
    /// Resolves (and creates where missing) every AppKey and group `templates` name, in
    /// `store`: AppKeys are generated from `rng` and bound to `net_key_index`; groups get the
    /// lowest free group address.
    pub fn from_store<'a>(
        store: &mut Store,
        templates: impl Iterator<Item = &'a Template>,
        net_key_index: u16,
        rng: &mut dyn rand_core::CryptoRng,
    ) -> Result<Self, StoreError> {
        let mut r = Resolved {
            net_key_index,
            ..Resolved::default()
        };
        for t in templates {
            for k in &t.app_keys {
                if r.app_keys.contains_key(k) {
                    continue;
                }
                let index = match store.app_key_by_name(k)? {
                    Some(i) => i,
                    None => store.add_app_key(k, net_key_index, None, rng)?,
                };
                r.app_keys.insert(k.clone(), (index, store.app_key(index)?));
            }
            for g in t
                .publications
                .iter()
                .map(|p| &p.group)
                .chain(t.subscriptions.iter().map(|s| &s.group))
            {
                if !r.groups.contains_key(g) {
                    r.groups.insert(g.clone(), store.group_address(g)?);
                }
            }
        }
        Ok(r)
    }

    fn key(&self, name: &str) -> Option<&(u16, AppKey)> {
        self.app_keys.get(name)
    }
}

fn element(address: u16, index: u8) -> u16 {
    address.wrapping_add(u16::from(index))
}

/// The Config requests that apply template `t` to the node at `address`, in order: AppKeys,
/// bindings, publications, subscriptions, Default TTL, Relay, GATT Proxy, Beacon, Network
/// Transmit. Names the resolution lacks are skipped (the plan checks them).
pub fn requests(t: &Template, address: u16, r: &Resolved) -> Vec<ConfigMessage> {
    let mut out = Vec::new();
    for k in &t.app_keys {
        if let Some((index, key)) = r.key(k) {
            // Config AppKey Add, §4.3.2.37.
            out.push(ConfigMessage::AppKeyAdd {
                net_key_index: r.net_key_index,
                app_key_index: *index,
                key: key.clone(),
            });
        }
    }
    for b in &t.bindings {
        if let Some((index, _)) = r.key(&b.app_key) {
            // Config Model App Bind, §4.3.2.46.
            out.push(ConfigMessage::ModelAppBind {
                element: element(address, b.element),
                app_key_index: *index,
                model: b.model,
            });
        }
    }
    for p in &t.publications {
        if let (Some((index, _)), Some(group)) = (r.key(&p.app_key), r.groups.get(&p.group)) {
            // Config Model Publication Set, §4.3.2.16.
            out.push(ConfigMessage::ModelPublicationSet {
                element: element(address, p.element),
                address: *group,
                publish: PublishParams {
                    app_key_index: *index,
                    credential: false,
                    ttl: p.ttl,
                    period: p.period,
                    retransmit: p.retransmit,
                },
                model: p.model,
            });
        }
    }
    for s in &t.subscriptions {
        if let Some(group) = r.groups.get(&s.group) {
            // Config Model Subscription Add, §4.3.2.19.
            out.push(ConfigMessage::ModelSubscriptionAdd {
                element: element(address, s.element),
                address: *group,
                model: s.model,
            });
        }
    }
    if let Some(ttl) = t.default_ttl {
        // Config Default TTL Set, §4.3.2.5.
        out.push(ConfigMessage::DefaultTtlSet { ttl });
    }
    if let Some(on) = t.relay {
        // Config Relay Set, §4.3.2.12: 2 retransmissions 20 ms apart, as most stacks default.
        out.push(ConfigMessage::RelaySet {
            relay: u8::from(on),
            retransmit: NetworkTransmit {
                count: 2,
                interval_steps: 1,
            },
        });
    }
    if let Some(on) = t.proxy {
        // Config GATT Proxy Set, §4.3.2.9.
        out.push(ConfigMessage::GattProxySet {
            state: u8::from(on),
        });
    }
    if let Some(on) = t.beacon {
        // Config Beacon Set, §4.3.2.2.
        out.push(ConfigMessage::BeaconSet {
            state: u8::from(on),
        });
    }
    if let Some((count, interval_ms)) = t.network_transmit {
        // Config Network Transmit Set, §4.3.2.69: count − 1 and (steps + 1) × 10 ms.
        out.push(ConfigMessage::NetworkTransmitSet {
            transmit: NetworkTransmit {
                count: count.saturating_sub(1),
                interval_steps: (interval_ms / 10).saturating_sub(1) as u8,
            },
        });
    }
    out
}

/// Whether `status` is a good answer to `request`: Success for the messages with a status
/// code, the state asked for on the Set messages (a node without the Relay or Proxy feature
/// answers 2, "not supported"). The error is a line for the installer.
pub fn check(request: &ConfigMessage, status: &ConfigMessage) -> Result<(), String> {
    use ConfigMessage as M;
    let name = request_name(request);
    if let Some(s) = status.status() {
        return if s == ConfigStatus::SUCCESS {
            Ok(())
        } else {
            Err(format!("{name}: {s}"))
        };
    }
    let (want, got) = match (request, status) {
        (M::DefaultTtlSet { ttl }, M::DefaultTtlStatus { ttl: t }) => (*ttl, *t),
        (M::RelaySet { relay, .. }, M::RelayStatus { relay: r, .. }) => (*relay, *r),
        (M::GattProxySet { state }, M::GattProxyStatus { state: s }) => (*state, *s),
        (M::BeaconSet { state }, M::BeaconStatus { state: s }) => (*state, *s),
        (M::NetworkTransmitSet { transmit }, M::NetworkTransmitStatus { transmit: t }) => {
            (transmit.to_byte(), t.to_byte())
        }
        _ => return Ok(()),
    };
    if want == got {
        Ok(())
    } else if got == 2 && matches!(request, M::RelaySet { .. } | M::GattProxySet { .. }) {
        Err(format!("{name}: the node does not support this feature"))
    } else {
        Err(format!("{name}: the node answered {got}, not {want}"))
    }
}

/// A request's name for messages.
pub fn request_name(m: &ConfigMessage) -> String {
    use ConfigMessage as M;
    match m {
        M::AppKeyAdd { app_key_index, .. } => format!("AppKey Add (AppKey {app_key_index})"),
        M::ModelAppBind { element, model, .. } => {
            format!("Model App Bind ({} on {element:04x})", model_name(*model))
        }
        M::ModelPublicationSet { element, model, .. } => {
            format!(
                "Model Publication Set ({} on {element:04x})",
                model_name(*model)
            )
        }
        M::ModelSubscriptionAdd { element, model, .. } => {
            format!(
                "Model Subscription Add ({} on {element:04x})",
                model_name(*model)
            )
        }
        M::DefaultTtlSet { .. } => "Default TTL Set".into(),
        M::RelaySet { .. } => "Relay Set".into(),
        M::GattProxySet { .. } => "GATT Proxy Set".into(),
        M::BeaconSet { .. } => "Beacon Set".into(),
        M::NetworkTransmitSet { .. } => "Network Transmit Set".into(),
        M::CompositionDataGet { .. } => "Composition Data Get".into(),
        other => format!("{:?}", other.opcode()),
    }
}

fn model_name(m: ModelId) -> String {
    match m {
        ModelId::Sig(id) => format!("model {id:04x}"),
        ModelId::Vendor {
            company_id,
            model_id,
        } => format!("model {company_id:04x}:{model_id:04x}"),
    }
}

/// Checks Composition Data page 0 (`data`, after the page octet) against the plan: the
/// element count (when the plan gives one) and every model the template configures on the
/// element it names. Returns the parsed page.
pub fn verify(
    data: &[u8],
    expected_elements: Option<u8>,
    t: &Template,
) -> Result<CompositionPage0, String> {
    let page = CompositionPage0::parse(data)
        .map_err(|e| format!("Composition Data page 0 is malformed: {e}"))?;
    if let Some(n) = expected_elements
        && page.elements.len() != usize::from(n)
    {
        return Err(format!(
            "the node has {} elements, the plan expects {n}",
            page.elements.len()
        ));
    }
    let has = |element: u8, model: ModelId| {
        page.elements
            .get(usize::from(element))
            .is_some_and(|e| match model {
                ModelId::Sig(id) => e.sig_models.contains(&id),
                v @ ModelId::Vendor { .. } => e.vendor_models.contains(&v),
            })
    };
    let wanted = t
        .bindings
        .iter()
        .map(|b| (b.element, b.model))
        .chain(t.publications.iter().map(|p| (p.element, p.model)))
        .chain(t.subscriptions.iter().map(|s| (s.element, s.model)));
    for (e, m) in wanted {
        if !has(e, m) {
            return Err(format!(
                "element {e} has no {} although the template configures it",
                model_name(m)
            ));
        }
    }
    Ok(page)
}

/// Composition Data page 0 as one line (for status displays).
pub fn composition_line(p: &CompositionPage0) -> String {
    let elements: Vec<String> = p
        .elements
        .iter()
        .map(|e| {
            let mut m: Vec<String> = e.sig_models.iter().map(|id| format!("{id:04x}")).collect();
            m.extend(e.vendor_models.iter().map(|v| model_name(*v)));
            format!("[{}]", m.join(" "))
        })
        .collect();
    format!(
        "cid {:04x} pid {:04x} vid {:04x} crpl {} elements {}",
        p.cid,
        p.pid,
        p.vid,
        p.crpl,
        elements.join(" ")
    )
}

fn store_model(m: ModelId) -> crate::store::ModelId {
    match m {
        ModelId::Sig(id) => crate::store::ModelId {
            vendor: false,
            id: u32::from(id),
        },
        ModelId::Vendor {
            company_id,
            model_id,
        } => crate::store::ModelId {
            vendor: true,
            id: (u32::from(company_id) << 16) | u32::from(model_id),
        },
    }
}

/// Records in the store what a verified node holds: its composition, the template's AppKeys,
/// bindings, subscriptions and publications; then marks it configured (CDB `configComplete`).
pub fn record(
    store: &mut Store,
    uuid: &DeviceUuid,
    page: &CompositionPage0,
    t: &Template,
    r: &Resolved,
) -> Result<(), StoreError> {
    // What the node holds is recorded without an fsync per row (a power cut costs a
    // reconfiguration, never a key); `configComplete` is written durably after it.
    store.with_relaxed_sync(|store| record_rows(store, uuid, page, t, r))?;
    // A node committed as `unconfirmed` (its Provisioning Complete was never seen) that
    // answered under its device key holds its Provisioning Data: it is provisioned.
    if store.node_by_uuid(uuid)?.state == crate::store::NodeState::Unconfirmed {
        store.confirm_node(uuid)?;
    }
    store.set_config_complete(uuid, true)
}

fn record_rows(
    store: &mut Store,
    uuid: &DeviceUuid,
    page: &CompositionPage0,
    t: &Template,
    r: &Resolved,
) -> Result<(), StoreError> {
    store.record_composition(
        uuid,
        &crate::store::CompositionRecord {
            cid: page.cid,
            pid: page.pid,
            vid: page.vid,
            crpl: page.crpl,
            features_supported: [
                page.features.has(crate::net::config::Features::RELAY),
                page.features.has(crate::net::config::Features::PROXY),
                page.features.has(crate::net::config::Features::FRIEND),
                page.features.has(crate::net::config::Features::LOW_POWER),
            ],
            elements: page
                .elements
                .iter()
                .map(|e| {
                    let mut m: Vec<crate::store::ModelId> = e
                        .sig_models
                        .iter()
                        .map(|id| store_model(ModelId::Sig(*id)))
                        .collect();
                    m.extend(e.vendor_models.iter().map(|v| store_model(*v)));
                    (e.location, m)
                })
                .collect(),
        },
    )?;
    for k in &t.app_keys {
        if let Some((i, _)) = r.key(k) {
            store.record_node_app_key(uuid, *i)?;
        }
    }
    for b in &t.bindings {
        if let Some((i, _)) = r.key(&b.app_key) {
            store.record_binding(uuid, b.element, store_model(b.model), *i)?;
        }
    }
    for s in &t.subscriptions {
        if let Some(g) = r.groups.get(&s.group) {
            store.record_subscription(uuid, s.element, store_model(s.model), *g)?;
        }
    }
    for p in &t.publications {
        if let (Some((i, _)), Some(g)) = (r.key(&p.app_key), r.groups.get(&p.group)) {
            store.record_publication(
                uuid,
                p.element,
                store_model(p.model),
                *g,
                *i,
                p.ttl,
                p.period,
                p.retransmit,
            )?;
        }
    }
    Ok(())
}
