//! Provisioning in real time over a [`Radio`]: the driver that feeds a [`Host`] from a real
//! radio (bluetooth-meshd's socket, BlueZ) and the monotonic clock, under tokio.
//!
//! It is the real-time twin of [`crate::sim::run`]: the same host, sessions, bearer and sink;
//! only the clock (the monotonic clock mapped onto [`Instant`] from the start of the run) and
//! the I/O differ. Sessions on PB-ADV open their link at once (the device listens while it
//! beacons); sessions on PB-GATT wait for the device's connectable advert with Mesh
//! Provisioning Service data (0x1827, §7.1.2.2.1) to learn its address, then connect.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

mod mux;
pub use mux::{Mux, MuxEvent};

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use tokio::sync::mpsc;

use crate::bearer::pb_adv::PbAdvConfig;
use crate::config_host::ConfigHost;
use crate::host::{CertVerifier, Host, HostEvent, NodeSink, SessionId};
use crate::net::config::ConfigMessage;
use crate::net::network::{MemorySeqSource, SeqSource};
use crate::net::proxy::ProxyClientConfig;
use crate::provisioning::{
    OobValue, Outcome, ProvisionerConfig, ProvisioningError, ProvisioningParams, TranscriptEntry,
};
use crate::radio::{BdAddr, Radio, RadioError, RadioEvent};
use crate::sim::configure::ConfigResult;
use crate::sim::run::BearerChoice;
use crate::time::Instant;
use crate::uuid::DeviceUuid;
use crate::wire::beacon::ProxyServiceData;

/// AD type of 16-bit UUID service data (Core Supplement §1.11).
const AD_TYPE_SERVICE_DATA_16: u8 = 0x16;

/// One device to provision.
#[derive(Clone, Debug)]
pub struct LiveTarget {
    /// Its UUID.
    pub uuid: DeviceUuid,
    /// Its name, stored with the node.
    pub name: String,
    /// Its session's policies (algorithm, authentication, records).
    pub config: ProvisionerConfig,
}

/// Options of a real-time run.
#[derive(Clone)]
pub struct LiveOptions {
    /// NetKey, index, flags and IV Index handed out.
    pub params: ProvisioningParams,
    /// PB-ADV timings (slower for bluetooth-meshd, which sends about one packet a second).
    pub pb_adv: PbAdvConfig,
    /// PB-ADV or PB-GATT.
    pub bearer: BearerChoice,
    /// Sessions in flight at once.
    pub max_concurrent: usize,
    /// Give up on the whole run after this long.
    pub deadline: Duration,
    /// How long a PB-GATT session waits for the device's connectable advert.
    pub discovery_timeout: Duration,
    /// Judges certificate chains.
    pub cert_verifier: Option<CertVerifier>,
    /// Seed for Link IDs and session randomness; `None` draws from the operating system
    /// (always, outside tests: ephemeral keys must be unpredictable).
    pub seed: Option<u64>,
}

impl std::fmt::Debug for LiveOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveOptions")
            .field("bearer", &self.bearer)
            .field("max_concurrent", &self.max_concurrent)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// What the driver reports while it runs (progress for a terminal or JSON lines).
#[derive(Debug)]
pub enum LiveEvent {
    /// A session started.
    Started {
        /// The device.
        uuid: DeviceUuid,
    },
    /// The installer must read the device's output and send it on the OOB channel.
    OutputOobRequested {
        /// The session to answer.
        session: SessionId,
        /// The device.
        uuid: DeviceUuid,
        /// What the device does.
        action: crate::wire::OutputOobAction,
        /// Digits or characters.
        size: u8,
    },
    /// The installer enters this value on the device.
    InputOobDisplay {
        /// The device.
        uuid: DeviceUuid,
        /// The value.
        value: OobValue,
        /// How.
        action: crate::wire::InputOobAction,
    },
    /// A session ended.
    Finished {
        /// The device.
        uuid: DeviceUuid,
        /// How.
        ok: bool,
    },
}

/// How one device's session ended.
#[derive(Debug)]
pub struct LiveResult {
    /// The device.
    pub uuid: DeviceUuid,
    /// Success with its outcome, or the error.
    pub outcome: Result<Outcome, ProvisioningError>,
    /// From the session's start to its end.
    pub elapsed: Duration,
    /// The provisioning PDUs this side sent and received.
    pub transcript: Vec<TranscriptEntry>,
    /// The node committed and then voided because the device refused its Provisioning Data
    /// ([`crate::host::Session::voided`]): first address and element count, retired.
    pub voided: Option<(u16, u8)>,
}

/// The whole run.
#[derive(Debug)]
pub struct LiveReport {
    /// One result per target, in order.
    pub results: Vec<LiveResult>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// PB-ADV retransmissions.
    pub retransmissions: u64,
}

/// Why a run stopped before its sessions ended.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The radio failed.
    #[error(transparent)]
    Radio(#[from] RadioError),
    /// A Config request could not be queued.
    #[error("{0}")]
    Config(String),
    /// The GATT proxy connection failed: the filter set-up was not answered or refused, or
    /// the proxy node went away.
    #[error("the proxy connection failed: {0}")]
    Proxy(String),
}

/// No Config host, for loops that only provision.
const NO_CONF: Option<&mut ConfigHost<MemorySeqSource>> = None;

enum Pending {
    /// Waiting for its connectable advert (PB-GATT).
    Discovering,
    /// Connected or on PB-ADV: a host session.
    Session(SessionId),
    /// Never started (the deadline came first) or discovery failed.
    Failed(ProvisioningError),
}

/// Provisions `targets` over `radio`, committing each node to `sink` before its keys go on
/// air. `oob` carries the installer's Output OOB answers (session and value). A loop over a
/// [`Mux`] with the provisioning host alone.
pub async fn provision<R: Radio>(
    radio: &mut R,
    targets: &[LiveTarget],
    opts: &LiveOptions,
    sink: &mut dyn NodeSink,
    oob: Option<mpsc::UnboundedReceiver<(SessionId, OobValue)>>,
    on_event: &mut dyn FnMut(&LiveEvent),
) -> Result<LiveReport, LiveError> {
    let mut mux = Mux::new(opts.discovery_timeout);
    if let Some(rx) = oob {
        mux.set_oob_answers(rx);
    }
    let seeded = |k: u64| -> ChaCha20Rng { session_rng(opts.seed, k) };
    let mut host = Host::new(
        opts.params.clone(),
        opts.pb_adv.clone(),
        Box::new(seeded(0x4c49_4e4b)),
        opts.cert_verifier.clone(),
    );
    let deadline = mux.now() + opts.deadline;
    let mut waiting: VecDeque<usize> = (0..targets.len()).collect();
    let mut pending: Vec<Option<Pending>> = (0..targets.len()).map(|_| None).collect();
    let mut target_of: BTreeMap<SessionId, usize> = BTreeMap::new();
    let index_of = |uuid: &DeviceUuid| targets.iter().position(|t| t.uuid == *uuid);

    loop {
        let now = mux.now();
        // Start sessions up to the limit.
        let running = pending
            .iter()
            .filter(|p| match p {
                Some(Pending::Discovering) => true,
                Some(Pending::Session(id)) => host.session(*id).is_some_and(|s| !s.is_finished()),
                _ => false,
            })
            .count();
        for _ in running..opts.max_concurrent {
            let Some(i) = waiting.pop_front() else { break };
            let t = &targets[i];
            on_event(&LiveEvent::Started { uuid: t.uuid });
            let rng = Box::new(seeded(2000 + i as u64));
            pending[i] = Some(match opts.bearer {
                BearerChoice::Adv => {
                    let id = mux.open_adv(&mut host, t.uuid, t.name.clone(), t.config.clone(), rng);
                    target_of.insert(id, i);
                    Pending::Session(id)
                }
                BearerChoice::Gatt => {
                    mux.await_gatt(t.uuid, t.name.clone(), t.config.clone(), rng);
                    Pending::Discovering
                }
            });
        }

        mux.settle(radio, Some((&mut host, &mut *sink)), NO_CONF)
            .await?;
        while let Some(ev) = mux.poll_event() {
            match ev {
                MuxEvent::Host(HostEvent::OutputOobRequested {
                    session,
                    action,
                    size,
                }) => on_event(&LiveEvent::OutputOobRequested {
                    session,
                    uuid: targets[target_of[&session]].uuid,
                    action,
                    size,
                }),
                MuxEvent::Host(HostEvent::InputOobDisplay {
                    session,
                    value,
                    action,
                }) => on_event(&LiveEvent::InputOobDisplay {
                    uuid: targets[target_of[&session]].uuid,
                    value,
                    action,
                }),
                MuxEvent::Host(HostEvent::Finished { session }) => {
                    let ok = host
                        .session(session)
                        .is_some_and(|s| matches!(s.result, Some(Ok(_))));
                    on_event(&LiveEvent::Finished {
                        uuid: targets[target_of[&session]].uuid,
                        ok,
                    });
                }
                MuxEvent::GattOpened { uuid, session } => {
                    if let Some(i) = index_of(&uuid) {
                        target_of.insert(session, i);
                        pending[i] = Some(Pending::Session(session));
                    }
                }
                MuxEvent::GattFailed { uuid, error } => {
                    if let Some(i) = index_of(&uuid) {
                        pending[i] = Some(Pending::Failed(error));
                    }
                }
                _ => {}
            }
        }

        let all_started = waiting.is_empty() && mux.gatt_waiting() == 0;
        if (all_started && host.is_idle() && mux.adverts_queued() == 0) || now >= deadline {
            break;
        }
        mux.wait(radio, Some(&mut host), NO_CONF, Some(deadline))
            .await?;
    }

    let now = mux.now();
    let retransmissions = host.retransmissions();
    let mut sessions: Vec<Option<crate::host::Session>> =
        host.into_sessions().into_iter().map(Some).collect();
    let mut results = Vec::with_capacity(targets.len());
    for (i, t) in targets.iter().enumerate() {
        let r = match pending[i].take() {
            Some(Pending::Session(id)) => match sessions[id.0].take() {
                Some(s) => LiveResult {
                    uuid: t.uuid,
                    elapsed: s.elapsed(now),
                    transcript: s.transcript().to_vec(),
                    voided: s.voided(),
                    outcome: s.result.unwrap_or(Err(ProvisioningError::Timeout)),
                },
                None => failed(t.uuid, ProvisioningError::Timeout),
            },
            Some(Pending::Failed(e)) => failed(t.uuid, e),
            Some(Pending::Discovering) | None => failed(t.uuid, ProvisioningError::Timeout),
        };
        results.push(r);
    }
    Ok(LiveReport {
        results,
        elapsed: now.since_epoch(),
        retransmissions,
    })
}

/// A session's randomness: from `seed` and `k` in tests, from the operating system otherwise
/// (ephemeral keys must be unpredictable).
pub fn session_rng(seed: Option<u64>, k: u64) -> ChaCha20Rng {
    match seed {
        Some(s) => ChaCha20Rng::seed_from_u64(s.wrapping_add(k)),
        None => ChaCha20Rng::from_rng(&mut rand_chacha::rand_core::UnwrapErr(getrandom::SysRng)),
    }
}

fn failed(uuid: DeviceUuid, e: ProvisioningError) -> LiveResult {
    LiveResult {
        uuid,
        outcome: Err(e),
        elapsed: Duration::ZERO,
        transcript: Vec::new(),
        voided: None,
    }
}

/// Sends Config requests in real time over `radio` and waits for their status messages:
/// `requests` are (node address, message) in order, one per node in flight. Returns each
/// request's outcome, in order, when every request has an answer or a time-out, or at
/// `deadline`. Network PDUs go on the advertising bearer (AD type 0x2A, MshPRT v1.1 §3.3.1).
pub async fn configure<R: Radio, S: SeqSource>(
    radio: &mut R,
    host: &mut ConfigHost<S>,
    requests: &[(u16, ConfigMessage)],
    deadline: Duration,
    on_result: &mut dyn FnMut(&ConfigResult),
) -> Result<Vec<ConfigResult>, LiveError> {
    run_config(radio, host, requests, deadline, on_result, None).await
}

/// A node's Mesh Proxy service to send Config requests through (GATT bearer, MshPRT v1.1
/// §6): its address and how the proxy client sets up its filter.
#[derive(Clone, Debug)]
pub struct ProxyVia {
    /// The proxy node's Bluetooth address (from its connectable advert, [`find_proxy`]).
    pub address: BdAddr,
    /// The client's settings: the provisioner's address and subnet, filter set-up time-outs.
    pub client: ProxyClientConfig,
}

/// [`configure`] over a GATT connection to the Mesh Proxy service (0x1828) of `via`: connects,
/// sets up the proxy filter (accept list with the provisioner's address, §6.7), writes each
/// network PDU to Mesh Proxy Data In and reads what the proxy relays from Data Out, then
/// disconnects. The connection failing (filter not set up, the proxy node gone) ends the run
/// with [`LiveError::Proxy`].
pub async fn configure_via_proxy<R: Radio, S: SeqSource>(
    radio: &mut R,
    host: &mut ConfigHost<S>,
    via: &ProxyVia,
    requests: &[(u16, ConfigMessage)],
    deadline: Duration,
    on_result: &mut dyn FnMut(&ConfigResult),
) -> Result<Vec<ConfigResult>, LiveError> {
    run_config(radio, host, requests, deadline, on_result, Some(via)).await
}

async fn run_config<R: Radio, S: SeqSource>(
    radio: &mut R,
    host: &mut ConfigHost<S>,
    requests: &[(u16, ConfigMessage)],
    deadline: Duration,
    on_result: &mut dyn FnMut(&ConfigResult),
    via: Option<&ProxyVia>,
) -> Result<Vec<ConfigResult>, LiveError> {
    let mut mux = Mux::new(Duration::ZERO);
    let end = mux.now() + deadline;
    if let Some(v) = via {
        mux.connect_proxy(radio, host, v.address, v.client.clone())
            .await?;
    }
    let result = config_loop(radio, host, requests, end, on_result, &mut mux).await;
    mux.disconnect_proxy(radio).await;
    result
}

/// [`run_config`]'s loop over a [`Mux`] with the Config host alone.
async fn config_loop<R: Radio, S: SeqSource>(
    radio: &mut R,
    host: &mut ConfigHost<S>,
    requests: &[(u16, ConfigMessage)],
    end: Instant,
    on_result: &mut dyn FnMut(&ConfigResult),
    mux: &mut Mux,
) -> Result<Vec<ConfigResult>, LiveError> {
    let first = host.results().len();
    let mut ids = Vec::with_capacity(requests.len());
    for (node, m) in requests {
        ids.push(host.request(mux.now(), *node, m.clone()).map_err(|e| {
            LiveError::Config(format!("request to 0x{node:04x} cannot be sent: {e}"))
        })?);
    }
    let mut reported = first;
    loop {
        let now = mux.now();
        mux.settle(radio, None, Some(&mut *host)).await?;
        while let Some(ev) = mux.poll_event() {
            if let MuxEvent::ProxyLost(reason) = ev {
                return Err(LiveError::Proxy(reason));
            }
        }
        while reported < host.results().len() && !host.is_pending(reported) {
            on_result(&host.results()[reported]);
            reported += 1;
        }
        if (host.pending() == 0 && mux.adverts_queued() == 0) || now >= end {
            break;
        }
        mux.wait(radio, None, Some(&mut *host), Some(end)).await?;
    }
    while reported < host.results().len() {
        on_result(&host.results()[reported]);
        reported += 1;
    }
    Ok(ids.iter().map(|i| host.results()[*i].clone()).collect())
}

/// How long [`find_proxy`] keeps listening for the target's own Node Identity once a proxy of
/// the network was heard.
pub const PROXY_IDENTITY_GRACE: Duration = Duration::from_secs(1);

/// Listens for a node of the network advertising the Mesh Proxy service (0x1828) with the
/// Network ID of `net_key` (§7.2.2.2.2), or with a Node Identity that `node` (unicast
/// address) and `net_key` explain (§7.2.2.2.3), for at most `within`. Returns its address and
/// RSSI: the target node itself when it advertises its identity, otherwise the first node heard
/// with the Network ID (after waiting [`PROXY_IDENTITY_GRACE`] more for the target).
pub async fn find_proxy<R: Radio>(
    radio: &mut R,
    net_key: &mesh_crypto::NetKey,
    node: Option<u16>,
    within: Duration,
) -> Result<Option<(BdAddr, Option<i16>)>, LiveError> {
    let network_id = mesh_crypto::toolbox::k3(net_key);
    let identity_key = mesh_crypto::toolbox::identity_key(net_key);
    let mut deadline = tokio::time::Instant::now() + within;
    let mut first: Option<(BdAddr, Option<i16>)> = None;
    loop {
        let ev = tokio::select! {
            ev = radio.next_event() => ev?,
            () = tokio::time::sleep_until(deadline) => return Ok(first),
        };
        let RadioEvent::Adv(r) = ev else { continue };
        let Some(address) = r.address else { continue };
        if r.ad_type != AD_TYPE_SERVICE_DATA_16 {
            continue;
        }
        match ProxyServiceData::parse(&r.data) {
            Ok(ProxyServiceData::NetworkId(id)) if id == network_id => {
                if node.is_none() {
                    return Ok(Some((address, r.rssi)));
                }
                if first.is_none() {
                    first = Some((address, r.rssi));
                    deadline = deadline.min(tokio::time::Instant::now() + PROXY_IDENTITY_GRACE);
                }
            }
            Ok(ProxyServiceData::NodeIdentity { hash, random })
                if node.is_some_and(|a| {
                    mesh_crypto::beacon::node_identity_hash(&identity_key, &random, a) == hash
                }) =>
            {
                return Ok(Some((address, r.rssi)));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radio::{AdReport, AdvParams, UUID_MESH_PROXY};
    use std::collections::VecDeque;

    /// Adverts heard one after another, then silence.
    struct Heard(VecDeque<RadioEvent>);

    impl Radio for Heard {
        fn name(&self) -> String {
            "heard".into()
        }
        fn adv_interval(&self) -> Duration {
            Duration::from_millis(20)
        }
        async fn advertise(&mut self, _: u8, _: &[u8], _: AdvParams) -> Result<(), RadioError> {
            Ok(())
        }
        async fn next_event(&mut self) -> Result<RadioEvent, RadioError> {
            match self.0.pop_front() {
                Some(e) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Ok(e)
                }
                None => std::future::pending().await,
            }
        }
    }

    fn proxy_advert(addr: u8, data: Vec<u8>) -> RadioEvent {
        let mut ad = UUID_MESH_PROXY.to_le_bytes().to_vec();
        ad.extend(data);
        RadioEvent::Adv(AdReport {
            ad_type: AD_TYPE_SERVICE_DATA_16,
            data: ad,
            rssi: Some(-50),
            address: Some(BdAddr([0xD0, 0, 0, 0, 0, addr])),
        })
    }

    fn find(
        events: Vec<RadioEvent>,
        key: &mesh_crypto::NetKey,
        node: Option<u16>,
        within: Duration,
    ) -> Option<BdAddr> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(find_proxy(&mut Heard(events.into()), key, node, within))
            .expect("no radio error")
            .map(|(a, _)| a)
    }

    #[test]
    fn find_proxy_prefers_the_targets_identity_and_ignores_other_networks() {
        let key = mesh_crypto::NetKey::from_bytes([0x7d; 16]);
        let other = mesh_crypto::NetKey::from_bytes([0x11; 16]);
        let mut network_id = vec![0x00];
        network_id.extend(mesh_crypto::toolbox::k3(&key));
        let mut foreign = vec![0x00];
        foreign.extend(mesh_crypto::toolbox::k3(&other));
        let random = [7u8; 8];
        let identity = |addr: u16| {
            let mut v = vec![0x01];
            v.extend(mesh_crypto::beacon::node_identity_hash(
                &mesh_crypto::toolbox::identity_key(&key),
                &random,
                addr,
            ));
            v.extend(random);
            v
        };
        // Another network's proxy, then ours by Network ID, then node 0x0005 itself.
        let heard = vec![
            proxy_advert(1, foreign.clone()),
            proxy_advert(2, network_id.clone()),
            proxy_advert(3, identity(0x0005)),
        ];
        let ten = Duration::from_secs(10);
        assert_eq!(
            find(heard.clone(), &key, Some(5), ten),
            Some(BdAddr([0xD0, 0, 0, 0, 0, 3]))
        );
        // Another node's identity does not count as the target's: the Network ID one is used.
        assert_eq!(
            find(heard.clone(), &key, Some(6), ten),
            Some(BdAddr([0xD0, 0, 0, 0, 0, 2]))
        );
        // Without a target, the first node of the network.
        assert_eq!(
            find(heard, &key, None, ten),
            Some(BdAddr([0xD0, 0, 0, 0, 0, 2]))
        );
        // Only other networks: nothing, after the whole wait.
        let short = Duration::from_millis(300);
        assert_eq!(
            find(vec![proxy_advert(1, foreign)], &key, Some(5), short),
            None
        );
    }
}
