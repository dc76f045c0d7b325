//! What the proxy saw of an instance that takes traffic: during the watch after a promote, a
//! build that answers its health check but fails the requests of real clients is unhealthy.

use deployer_core::ServiceSpec;
use deployer_core::reconcile::InstanceId;
use std::time::Duration;

use deployer_proxy::{BackendState, LatencyHistogram};

use super::DockerSwitcher;

/// Requests an instance must have been sent before its error rate is judged: a couple of
/// failures among a handful of requests says nothing about a build.
pub(crate) const MIN_REQUESTS: u64 = 20;

/// Why the proxy's counters fail `id`, if they do: more than the service's share of its
/// requests since it was added to the proxy failed (gateway errors and 5xx answers alike).
pub(crate) async fn problem(
    switcher: &DockerSwitcher,
    service: &ServiceSpec,
    id: InstanceId,
) -> Option<String> {
    let addr = switcher.recorded_backend(service.name(), id)?;
    let all = switcher.plane().stats().await.ok()?;
    let route = all
        .into_iter()
        .find(|s| s.service == service.name().as_str())?;
    let stats = route
        .backends
        .iter()
        .find(|s| s.addr == addr && s.state == BackendState::Live)?;
    let failed = stats.errors.saturating_add(stats.server_errors);
    if let Some(problem) = judge(stats.requests, failed, service.health().max_error_percent()) {
        return Some(problem);
    }
    // A canary also answers no slower than the build it shares traffic with.
    service.strategy().canary()?;
    let group = id.generation.to_string();
    let canary = route.groups.iter().find(|g| *g.group == *group)?;
    let stable = route
        .groups
        .iter()
        .filter(|g| *g.group != *group && g.live_backends > 0)
        .max_by_key(|g| g.latency.count())?;
    let seen = |h: &LatencyHistogram| (h.count(), h.sum());
    judge_latency(seen(&canary.latency), seen(&stable.latency))
}

/// How much slower than the old build a canary may answer on average: twice as slow, and by
/// more than this, fails it.
const SLOWER_BY: Duration = Duration::from_millis(100);

/// Why a canary's latency fails it beside the old build's, if it does: each is (requests,
/// their latencies added up), judged once both have [`MIN_REQUESTS`].
fn judge_latency(canary: (u64, Duration), stable: (u64, Duration)) -> Option<String> {
    if canary.0 < MIN_REQUESTS || stable.0 < MIN_REQUESTS {
        return None;
    }
    let mean = |(count, sum): (u64, Duration)| sum / u32::try_from(count).unwrap_or(u32::MAX);
    let (new, old) = (mean(canary), mean(stable));
    (new > old * 2 && new > old + SLOWER_BY).then(|| {
        format!(
            "the proxy saw it answer in {} ms on average, the old build in {} ms",
            new.as_millis(),
            old.as_millis()
        )
    })
}

fn judge(requests: u64, failed: u64, max_percent: u8) -> Option<String> {
    if max_percent >= 100 || requests < MIN_REQUESTS {
        return None;
    }
    (failed.saturating_mul(100) > requests.saturating_mul(u64::from(max_percent))).then(|| {
        format!(
            "the proxy saw {failed} of {requests} requests fail since it took traffic (more than {max_percent}%)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canary_much_slower_than_the_old_build_fails_once_both_have_enough_requests() {
        let seen = |n: u64, each_ms: u64| (n, Duration::from_millis(n * each_ms));
        assert_eq!(judge_latency(seen(19, 900), seen(100, 10)), None);
        assert_eq!(
            judge_latency(seen(50, 90), seen(100, 10)),
            None,
            "not 100 ms slower"
        );
        assert_eq!(
            judge_latency(seen(50, 150), seen(100, 100)),
            None,
            "not twice as slow"
        );
        let problem = judge_latency(seen(50, 400), seen(100, 20)).expect("too slow");
        assert!(
            problem.contains("400 ms") && problem.contains("20 ms"),
            "{problem}"
        );
    }

    #[test]
    fn a_build_fails_its_watch_above_the_bound_only_with_enough_requests() {
        assert_eq!(judge(19, 19, 10), None, "too few requests to judge");
        assert_eq!(judge(100, 10, 10), None, "at the bound");
        let problem = judge(100, 11, 10).expect("above the bound");
        assert!(problem.contains("11 of 100"), "{problem}");
        assert_eq!(judge(100, 100, 100), None, "100% is no bound");
        assert!(judge(20, 1, 0).is_some(), "0% tolerates nothing");
    }
}
