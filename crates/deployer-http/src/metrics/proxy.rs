//! The proxies' series: read at scrape time through [`ProxyStats`], labelled by service and
//! generation rather than by the ephemeral address of each backend, so they carry on across
//! deploys.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Counters of one service's proxy, as the binary reads them from `deployer-proxy`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProxyServiceStats {
    /// The service the proxy fronts.
    pub service: String,
    /// Requests answered 503 (HTTP) or connections closed (TCP) because no backend was live.
    pub no_backend: u64,
    /// Time from a request's arrival to its response headers (HTTP mode).
    pub latency: ProxyLatency,
    /// Counters by generation, each the sum over every backend that generation ever had.
    pub generations: Vec<ProxyGenerationStats>,
}

/// A latency histogram.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProxyLatency {
    /// Per bucket, not cumulative: its upper bound in seconds (`f64::INFINITY` for the
    /// last) and the observations that fell in it and in no lower bucket.
    pub buckets: Vec<(f64, u64)>,
    /// The observations added up, in seconds.
    pub sum_seconds: f64,
}

impl ProxyLatency {
    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, n)| n).sum()
    }
}

/// Counters of one generation of a service behind its proxy. They never go backwards while
/// the daemon runs: a backend's counts stay in its generation after it is removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxyGenerationStats {
    /// The generation, e.g. `g3`.
    pub generation: String,
    /// Requests (HTTP) or connections (TCP) by how they were answered, as the `class` label:
    /// `1xx` to `5xx` (the backend's status), `gateway_error` (the proxy's 502/504 on its
    /// behalf; TCP: connecting failed), `connected` (TCP: forwarded).
    pub requests: Vec<(&'static str, u64)>,
    /// Backend failures: refused or timed-out connects, no response headers, bodies that
    /// broke off, including requests another backend then took.
    pub errors: u64,
    /// In flight now: requests and upgraded connections (HTTP), connections (TCP).
    pub active: u64,
    /// Requests and connections forcibly closed at a drain deadline or at shutdown.
    pub cut: u64,
    /// Its backends in the proxy's rotation now.
    pub live_backends: u64,
}

/// Where proxy counters come from. The binary implements it over its proxies, so this crate
/// does not depend on `deployer-proxy`.
#[async_trait::async_trait]
pub trait ProxyStats: Send + Sync {
    /// Every proxy, now.
    async fn proxy_stats(&self) -> Vec<ProxyServiceStats>;
}

type GenerationLabels<'a> = [(&'static str, &'a str); 2];
/// Name, help, type and value of one per-generation family.
type GenerationFamily = (
    &'static str,
    &'static str,
    MetricType,
    fn(&ProxyGenerationStats) -> u64,
);

/// Writes the proxy families of `stats`.
pub(super) fn encode(
    encoder: &mut DescriptorEncoder<'_>,
    stats: &[ProxyServiceStats],
) -> fmt::Result {
    let generations = || {
        stats.iter().flat_map(|s| {
            s.generations.iter().map(move |g| {
                (
                    [
                        ("service", s.service.as_str()),
                        ("generation", g.generation.as_str()),
                    ],
                    g,
                )
            })
        })
    };
    let mut metric = encoder.encode_descriptor(
        "proxy_requests",
        "Requests or connections by service, generation and how they were answered",
        None,
        MetricType::Counter,
    )?;
    for ([service, generation], g) in generations() {
        for (class, count) in g.requests.iter().filter(|(_, n)| *n > 0) {
            let labels = [service, generation, ("class", *class)];
            ConstCounter::new(*count).encode(metric.encode_family(&labels)?)?;
        }
    }
    let families: [GenerationFamily; 4] = [
        (
            "proxy_errors",
            "Backend failures by service and generation",
            MetricType::Counter,
            |g| g.errors,
        ),
        (
            "proxy_cut",
            "Requests or connections cut at a drain deadline, by service and generation",
            MetricType::Counter,
            |g| g.cut,
        ),
        (
            "proxy_active",
            "Requests or connections in flight, by service and generation",
            MetricType::Gauge,
            |g| g.active,
        ),
        (
            "proxy_backends",
            "Backends in rotation, by service and generation",
            MetricType::Gauge,
            |g| g.live_backends,
        ),
    ];
    for (name, help, kind, value) in families {
        let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
        for (labels, g) in generations() {
            encode_value(
                metric.encode_family::<GenerationLabels<'_>>(&labels)?,
                kind,
                value(g),
            )?;
        }
    }
    let mut metric = encoder.encode_descriptor(
        "proxy_no_backend",
        "Requests or connections refused because no backend was live",
        None,
        MetricType::Counter,
    )?;
    for s in stats {
        let labels = [("service", s.service.as_str())];
        ConstCounter::new(s.no_backend).encode(metric.encode_family(&labels)?)?;
    }
    let mut metric = encoder.encode_descriptor(
        "proxy_header_latency",
        "Time from a request's arrival to its response headers, by service",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    // A TCP proxy, or one that served nothing yet, has nothing to show.
    for s in stats.iter().filter(|s| s.latency.count() > 0) {
        let labels = [("service", s.service.as_str())];
        // The encoder's name for the unbounded bucket.
        let buckets: Vec<(f64, u64)> = s
            .latency
            .buckets
            .iter()
            .map(|&(le, n)| (if le.is_finite() { le } else { f64::MAX }, n))
            .collect();
        metric
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(
                s.latency.sum_seconds,
                s.latency.count(),
                &buckets,
                None,
            )?;
    }
    Ok(())
}

fn encode_value(encoder: MetricEncoder<'_>, kind: MetricType, value: u64) -> fmt::Result {
    match kind {
        MetricType::Gauge => {
            ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(encoder)
        }
        _ => ConstCounter::new(value).encode(encoder),
    }
}
