//! What the proxy saw of an instance that takes traffic: during the watch after a promote, a
//! build that answers its health check but fails the requests of real clients is unhealthy.

use deployer_core::ServiceSpec;
use deployer_core::reconcile::InstanceId;
use deployer_proxy::BackendState;

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
        .into_iter()
        .find(|s| s.addr == addr && s.state == BackendState::Live)?;
    let failed = stats.errors.saturating_add(stats.server_errors);
    judge(stats.requests, failed, service.health().max_error_percent())
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
    fn a_build_fails_its_watch_above_the_bound_only_with_enough_requests() {
        assert_eq!(judge(19, 19, 10), None, "too few requests to judge");
        assert_eq!(judge(100, 10, 10), None, "at the bound");
        let problem = judge(100, 11, 10).expect("above the bound");
        assert!(problem.contains("11 of 100"), "{problem}");
        assert_eq!(judge(100, 100, 100), None, "100% is no bound");
        assert!(judge(20, 1, 0).is_some(), "0% tolerates nothing");
    }
}
