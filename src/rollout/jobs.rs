//! What both drivers do with a device's Config requests: start a configuration or verification
//! job on the [`ConfigHost`], and judge it when it ends (the template's statuses, then the
//! Composition Data against the plan's element count and the template, recorded in the store).

use crate::config_host::ConfigHost;
use crate::net::config::ConfigMessage;
use crate::net::network::SeqSource;
use crate::rollout::engine::{Engine, Phase};
use crate::rollout::sim_driver::judge;
use crate::rollout::{Plan, Prepared, SharedStore, Target, template};
use crate::sim::configure::ConfigResult;
use crate::time::Instant;
use crate::uuid::DeviceUuid;

/// A device's requests in flight on the Config host: `count` results from `first`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Job {
    /// Configuring or verifying.
    pub(crate) phase: Phase,
    /// Index of its first request in [`ConfigHost::results`].
    pub(crate) first: usize,
    /// How many.
    pub(crate) count: usize,
}

impl Job {
    /// Its results' range in [`ConfigHost::results`].
    pub(crate) fn range(&self) -> std::ops::Range<usize> {
        self.first..self.first + self.count
    }

    /// Whether every request has its answer or time-out.
    pub(crate) fn done<S: SeqSource>(&self, conf: &ConfigHost<S>) -> bool {
        self.range().all(|k| !conf.is_pending(k))
    }
}

/// `requests` less those `node` already confirmed in this run: answered with the status the
/// template asks for ([`template::check`]) in an earlier attempt (`results`, the host's).
fn unconfirmed(
    results: &[ConfigResult],
    node: u16,
    requests: Vec<ConfigMessage>,
) -> Vec<ConfigMessage> {
    requests
        .into_iter()
        .filter(|m| {
            !results.iter().any(|r| {
                r.node == node
                    && r.request == *m
                    && r.status().is_some_and(|s| template::check(m, s).is_ok())
            })
        })
        .collect()
}

/// Queues `requests` to `address` on `conf`; tells the engine (configuring) or fails the phase
/// when a request cannot be queued.
///
/// A configuration retried in the same run sends only the requests the node has not yet
/// confirmed: what it answered with Success in an earlier attempt it holds (a node keeps its
/// configuration; every request is idempotent, so sending it again would be harmless, but each
/// request is one more chance to lose an attempt on a crowded air: in the 2,000-device soak,
/// seed 1, a healthy node on a floor full of unprovisioned beacons lost a different request
/// in each of its six attempts when every attempt sent all of them). Verification always
/// reads the Composition Data afresh.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start<S: SeqSource>(
    conf: &mut ConfigHost<S>,
    engine: &mut Engine,
    now: Instant,
    uuid: DeviceUuid,
    address: u16,
    phase: Phase,
    requests: Vec<ConfigMessage>,
) -> Option<Job> {
    let requests = match phase {
        Phase::Configuring => unconfirmed(conf.results(), address, requests),
        _ => requests,
    };
    let first = conf.results().len();
    let count = requests.len();
    for m in requests {
        if let Err(e) = conf.request(now, address, m) {
            engine.phase_failed(now, &uuid, phase, format!("cannot send: {e}"), false);
            return None;
        }
    }
    if phase == Phase::Configuring {
        engine.configuring(now, &uuid, count);
    }
    Some(Job {
        phase,
        first,
        count,
    })
}

/// An Unprovisioned Device beacon from `uuid` (a planned device): when its node is
/// unconfirmed — committed, Provisioning Complete never seen — and the engine has it waiting
/// between configuration attempts or failed (`busy`: nothing under way for it in the driver),
/// the device seems to hold no key: the engine provisions it afresh
/// ([`Engine::unprovisioned_again`]). Nothing is voided yet: a beacon is not authenticated, and
/// anyone in range could send one with this UUID. The earlier node is voided only when a new
/// session has authenticated the device, in the transaction of its new commit
/// ([`PlanSink::superseding`](crate::rollout::PlanSink::superseding)); until then it stays
/// `unconfirmed` with its key, so a spoofed beacon costs attempts, never a key. Returns
/// whether it started.
pub(crate) fn unprovisioned_again(
    engine: &mut Engine,
    sink: &mut crate::rollout::PlanSink,
    now: Instant,
    uuid: &DeviceUuid,
    busy: bool,
) -> Result<bool, crate::store::StoreError> {
    use crate::rollout::Stage;
    if busy
        || !engine.status(uuid).is_some_and(|s| {
            s.address.is_some() && matches!(s.stage, Stage::Committed | Stage::Failed)
        })
    {
        return Ok(false);
    }
    let node = match sink.store.borrow().node_by_uuid(uuid) {
        Ok(n) if n.state == crate::store::NodeState::Unconfirmed => n,
        _ => return Ok(false),
    };
    sink.superseding.insert(*uuid);
    // Its earlier commit no longer decides what a failed session means: a new session that
    // fails before committing leaves the earlier node as it is, for a later run to configure.
    sink.committed.remove(uuid);
    Ok(engine.unprovisioned_again(
        now,
        uuid,
        format!(
            "the device sends Unprovisioned Device beacons again, so it seems never to have received its Provisioning Data: it is provisioned afresh, and its earlier commit at 0x{:04x} is voided once the new session has authenticated it",
            node.address
        ),
    ))
}

/// A job that did not end within `policy.configure_timeout_s` (`how` says more, or is empty):
/// the phase failed, to be retried.
pub(crate) fn timed_out(
    engine: &mut Engine,
    now: Instant,
    uuid: &DeviceUuid,
    phase: Phase,
    how: &str,
) {
    engine.phase_failed(
        now,
        uuid,
        phase,
        format!(
            "{} took longer than policy.configure_timeout_s{how}",
            phase.as_str()
        ),
        true,
    );
}

/// A finished job's results to the engine: configured, or verified (its Composition Data
/// checked against `target`'s element count and template, and recorded in the store), or the
/// phase failed with the reason.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish(
    engine: &mut Engine,
    store: &SharedStore,
    plan: &Plan,
    prepared: &Prepared,
    target: &Target,
    now: Instant,
    phase: Phase,
    results: &[ConfigResult],
) {
    let uuid = target.uuid;
    match (phase, judge(results, phase)) {
        (_, Err((reason, again))) => engine.phase_failed(now, &uuid, phase, reason, again),
        (Phase::Configuring, Ok(_)) => engine.configured(now, &uuid),
        (_, Ok(data)) => {
            let Some(t) = plan.templates.get(&target.template) else {
                engine.phase_failed(
                    now,
                    &uuid,
                    phase,
                    format!("the plan has no template '{}'", target.template),
                    false,
                );
                return;
            };
            match template::verify(&data, target.elements, t) {
                Ok(page) => {
                    engine.set_composition(&uuid, template::composition_line(&page));
                    match template::record(
                        &mut store.borrow_mut(),
                        &uuid,
                        &page,
                        t,
                        &prepared.resolved,
                    ) {
                        Ok(()) => engine.verified(now, &uuid),
                        Err(e) => {
                            engine.phase_failed(now, &uuid, phase, format!("store: {e}"), false)
                        }
                    }
                }
                Err(reason) => engine.phase_failed(now, &uuid, phase, reason, false),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::config::ConfigStatus;
    use crate::sim::configure::ConfigOutcome;
    use std::time::Duration;

    fn result(node: u16, request: ConfigMessage, outcome: ConfigOutcome) -> ConfigResult {
        ConfigResult {
            node,
            request,
            outcome,
            attempts: 1,
            started: None,
            elapsed: Duration::ZERO,
        }
    }

    fn bind() -> ConfigMessage {
        ConfigMessage::ModelAppBind {
            element: 0x0100,
            app_key_index: 0,
            model: crate::net::config::ModelId::Sig(0x1000),
        }
    }

    fn bind_status(status: ConfigStatus) -> ConfigOutcome {
        ConfigOutcome::Status(ConfigMessage::ModelAppStatus {
            status,
            element: 0x0100,
            app_key_index: 0,
            model: crate::net::config::ModelId::Sig(0x1000),
        })
    }

    fn ttl(ttl: u8) -> ConfigMessage {
        ConfigMessage::DefaultTtlSet { ttl }
    }

    #[test]
    fn a_retry_sends_only_what_the_node_has_not_confirmed() {
        let results = [
            // Confirmed by this node: not sent again.
            result(0x0100, bind(), bind_status(ConfigStatus::SUCCESS)),
            result(
                0x0100,
                ttl(5),
                ConfigOutcome::Status(ConfigMessage::DefaultTtlStatus { ttl: 5 }),
            ),
        ];
        assert_eq!(
            unconfirmed(&results, 0x0100, vec![bind(), ttl(5), ttl(7)]),
            vec![ttl(7)]
        );
    }

    #[test]
    fn time_outs_refusals_wrong_values_and_other_nodes_do_not_confirm() {
        let results = [
            result(0x0100, bind(), ConfigOutcome::TimedOut),
            result(0x0100, bind(), bind_status(ConfigStatus(0x02))),
            result(
                0x0100,
                ttl(5),
                ConfigOutcome::Status(ConfigMessage::DefaultTtlStatus { ttl: 4 }),
            ),
            result(
                0x0200,
                ttl(6),
                ConfigOutcome::Status(ConfigMessage::DefaultTtlStatus { ttl: 6 }),
            ),
        ];
        assert_eq!(
            unconfirmed(&results, 0x0100, vec![bind(), ttl(5), ttl(6)]),
            vec![bind(), ttl(5), ttl(6)]
        );
    }
}
