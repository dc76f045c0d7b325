//! The switcher's proxies, as the metrics endpoint reads them: by service and generation.

use std::sync::Arc;

use deployer_docker::ServiceProxyStats;
use deployer_http::{ProxyGenerationStats, ProxyLatency, ProxyServiceStats};
use deployer_proxy::{GroupStats, LatencyHistogram, ResponseClass};

/// The switcher's proxies, as the metrics endpoint reads them.
pub struct SwitcherStats(pub Arc<deployer_docker::DockerSwitcher>);

#[async_trait::async_trait]
impl deployer_http::ProxyStats for SwitcherStats {
    async fn proxy_stats(&self) -> Vec<ProxyServiceStats> {
        self.0.proxy_stats().await.iter().map(service).collect()
    }
}

fn service(stats: &ServiceProxyStats) -> ProxyServiceStats {
    ProxyServiceStats {
        service: stats.service.to_string(),
        no_backend: stats.totals.no_backend,
        latency: latency(&stats.totals.latency),
        generations: stats.generations.iter().map(generation).collect(),
    }
}

fn generation(group: &GroupStats) -> ProxyGenerationStats {
    ProxyGenerationStats {
        generation: group.group.to_string(),
        requests: group
            .answers
            .iter()
            .map(|(class, count)| (ResponseClass::as_str(class), count))
            .collect(),
        errors: group.errors,
        active: group.active,
        cut: group.cut,
        live_backends: u64::try_from(group.live_backends).unwrap_or(u64::MAX),
    }
}

fn latency(histogram: &LatencyHistogram) -> ProxyLatency {
    ProxyLatency {
        buckets: histogram
            .buckets()
            .map(|(le, n)| (le.map_or(f64::INFINITY, |d| d.as_secs_f64()), n))
            .collect(),
        sum_seconds: histogram.sum().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_in_seconds_and_end_unbounded() {
        let buckets = latency(&LatencyHistogram::default()).buckets;
        assert_eq!(buckets.len(), deployer_proxy::LATENCY_BOUNDS.len() + 1);
        assert_eq!(buckets.first(), Some(&(0.005, 0)));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 0)));
    }
}
