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

/// Queues `requests` to `address` on `conf`; tells the engine (configuring) or fails the phase
/// when a request cannot be queued.
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
