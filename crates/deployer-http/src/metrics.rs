//! Prometheus metrics (`GET /metrics`, OpenMetrics text format).
//!
//! | name | type | labels |
//! |---|---|---|
//! | `deployer_webhooks_total` | counter | `source`, `result` ([`WebhookResult`]) |
//! | `deployer_ingest_events_total` | counter | `result`: queued, ignored, duplicate, rejected, published, unchanged, stale, failed |
//! | `deployer_targets_published_total` | counter | |
//! | `deployer_deploys_total` | counter | `service`, `outcome` (started, succeeded, rolled_back, failed, superseded, skipped, repaired) |
//! | `deployer_deploy_duration_seconds` | histogram | `outcome` (final outcomes only) |
//! | `deployer_deploys_in_flight` | gauge | |
//! | `deployer_ready` | gauge | 1 once every service has recovered |
//! | `deployer_proxy_requests_total` | counter | `service`, `generation`, `class` (below) |
//! | `deployer_proxy_errors_total` | counter | `service`, `generation` |
//! | `deployer_proxy_cut_total` | counter | `service`, `generation` |
//! | `deployer_proxy_active` | gauge | `service`, `generation` |
//! | `deployer_proxy_backends` | gauge | `service`, `generation` |
//! | `deployer_proxy_no_backend_total` | counter | `service` |
//! | `deployer_proxy_header_latency_seconds` | histogram | `service`; buckets 5 ms ... 10 s |
//!
//! The proxy series are by service and generation (`g3`: the generation of the containers
//! behind the backends), not by backend address, which changes at every deploy. Each is the
//! sum over every backend the generation ever had, so it never goes backwards while the
//! daemon runs, and a generation that stopped serving keeps its last values (a restart
//! starts them from zero). `class` says how each request (TCP: connection) was answered
//! (it appears once counted): `1xx` to `5xx` for the backend's own status, `gateway_error`
//! when the proxy answered 502/504 on its behalf (connect refused or timed out, no response
//! headers in time, a failure before them, a cut at a drain deadline before them; TCP: the
//! connect failed), `connected` for a forwarded TCP connection. `errors` counts backend
//! failures, including requests another backend then answered and response bodies that
//! broke off; `cut` counts work forcibly closed at a drain deadline or at shutdown; `active`
//! is what is in flight; `backends` is how many of the generation's backends are in
//! rotation. The latency histogram (HTTP only) is the time from a request's arrival to its
//! response headers, the backend's or the proxy's 502/504.
//!
//! Counters this crate owns (webhooks, deploys) live in [`Metrics`]; everything owned by
//! someone else (the sink's counters, the driver's state, the proxies) is read at scrape time,
//! so there is no second copy to keep in sync.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use deployer_core::DeployReport;
use deployer_core::driver::{DriverHandle, EventSink};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

mod proxy;

pub use self::proxy::{ProxyGenerationStats, ProxyLatency, ProxyServiceStats, ProxyStats};
use crate::body::BodyError;
use crate::hooks::Sender;

/// Buckets of the deploy duration histogram, in seconds: a quick recreate takes seconds, a
/// large pull plus a slow boot several minutes.
const DURATION_BUCKETS: [f64; 11] = [
    1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0,
];

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How a webhook request ended, as the `result` label of `deployer_webhooks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WebhookResult {
    /// At least one build was queued (202).
    Accepted,
    /// Nothing to do: untracked repository, or no build announced (202).
    Ignored,
    /// A redelivery (202).
    Duplicate,
    /// Authentication failed (401).
    Unauthorized,
    /// Malformed JSON or an invalid field (400).
    BadRequest,
    /// Wrong content type (415).
    UnsupportedMediaType,
    /// Body over the limit (413).
    TooLarge,
    /// Body not received in time (408).
    Timeout,
    /// The event queue is full (503).
    Busy,
    /// The deployer is stopping (503).
    Unavailable,
    /// The endpoint is off (404).
    NotFound,
    /// An image of a registry the endpoint does not speak for (403).
    ForeignRegistry,
}

impl WebhookResult {
    /// Every result.
    pub const ALL: [WebhookResult; 12] = [
        Self::Accepted,
        Self::Ignored,
        Self::Duplicate,
        Self::Unauthorized,
        Self::BadRequest,
        Self::UnsupportedMediaType,
        Self::TooLarge,
        Self::Timeout,
        Self::Busy,
        Self::Unavailable,
        Self::NotFound,
        Self::ForeignRegistry,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Ignored => "ignored",
            Self::Duplicate => "duplicate",
            Self::Unauthorized => "unauthorized",
            Self::BadRequest => "bad_request",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::TooLarge => "too_large",
            Self::Timeout => "timeout",
            Self::Busy => "busy",
            Self::Unavailable => "unavailable",
            Self::NotFound => "not_found",
            Self::ForeignRegistry => "foreign_registry",
        }
    }
}

impl From<BodyError> for WebhookResult {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge(_) => Self::TooLarge,
            BodyError::Timeout => Self::Timeout,
            BodyError::Broken => Self::BadRequest,
            BodyError::Busy => Self::Busy,
        }
    }
}

type DeployLabels = [(&'static str, String); 2];
type OutcomeLabels = [(&'static str, &'static str); 1];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The counters this crate owns. Share one `Arc<Metrics>` between the webhook router, the
/// admin router and the [`MetricsNotifier`](crate::notify::MetricsNotifier).
#[derive(Debug)]
pub struct Metrics {
    /// Webhook requests by sender and result, indexed like [`Sender::ALL`] and
    /// [`WebhookResult::ALL`]: plain atomics, so counting a request takes no lock (webhooks are
    /// the hot path).
    webhooks: [[AtomicU64; WebhookResult::ALL.len()]; Sender::ALL.len()],
    deploys: Family<DeployLabels, Counter>,
    durations: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            webhooks: Default::default(),
            deploys: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
        }
    }
}

impl Metrics {
    /// Empty counters.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn webhook_counter(&self, sender: Sender, result: WebhookResult) -> &AtomicU64 {
        let s = Sender::ALL.iter().position(|x| *x == sender).unwrap_or(0);
        let r = WebhookResult::ALL
            .iter()
            .position(|x| *x == result)
            .unwrap_or(0);
        &self.webhooks[s][r]
    }

    /// Counts one webhook request.
    pub fn webhook(&self, sender: Sender, result: WebhookResult) {
        self.webhook_counter(sender, result)
            .fetch_add(1, Ordering::Relaxed);
    }

    /// How many webhook requests of `sender` ended with `result`.
    pub fn webhook_count(&self, sender: Sender, result: WebhookResult) -> u64 {
        self.webhook_counter(sender, result).load(Ordering::Relaxed)
    }

    /// Counts one deploy report (and its duration, when final).
    pub fn deploy(&self, report: &DeployReport) {
        let outcome = report.outcome.as_str();
        self.deploys
            .get_or_create(&[
                ("service", report.service.to_string()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
        if report.outcome.is_final() {
            // Milliseconds to seconds; precision far beyond any bucket boundary.
            #[allow(clippy::cast_precision_loss)] // reason: durations are far below 2^52 ms
            let secs = report.duration_ms as f64 / 1000.0;
            self.durations
                .get_or_create(&[("outcome", outcome)])
                .observe(secs);
        }
    }

    /// The metrics in OpenMetrics text format, with the values `sources` hold right now.
    pub fn render(&self, sources: ScrapeSources) -> String {
        let mut registry = Registry::with_prefix("deployer");
        let mut webhooks = Vec::new();
        for (sender, row) in Sender::ALL.iter().zip(&self.webhooks) {
            for (result, count) in WebhookResult::ALL.iter().zip(row) {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    webhooks.push((sender.as_str(), result.as_str(), count));
                }
            }
        }
        registry.register_collector(Box::new(WebhookCounts(webhooks)));
        registry.register(
            "deploys",
            "Deploy reports by service and outcome",
            self.deploys.clone(),
        );
        registry.register_with_unit(
            "deploy_duration",
            "Duration of finished deploys",
            Unit::Seconds,
            self.durations.clone(),
        );
        registry.register_collector(Box::new(sources));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            // Only a bug in a collector can get here; a partial scrape beats none.
            tracing::error!("encoding metrics failed: {e}");
        }
        out
    }
}

/// Webhook counters copied at scrape time: (source, result, count), zeros left out.
#[derive(Debug)]
struct WebhookCounts(Vec<(&'static str, &'static str, u64)>);

impl Collector for WebhookCounts {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let mut metric = encoder.encode_descriptor(
            "webhooks",
            "Webhook requests by sender and result",
            None,
            MetricType::Counter,
        )?;
        for (source, result, count) in &self.0 {
            let labels = [("source", *source), ("result", *result)];
            ConstCounter::new(*count).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// What is read at scrape time: the sink's counters, the driver's state, the proxies.
#[derive(Clone, Default)]
pub struct ScrapeSources {
    /// The event sink (ingest counters). Taken from `driver` when absent.
    pub sink: Option<EventSink>,
    /// The driver (deploys in flight, readiness).
    pub driver: Option<DriverHandle>,
    /// The proxies' counters, read just before rendering (see [`ProxyStats`]).
    pub proxy: Option<Vec<ProxyServiceStats>>,
}

impl fmt::Debug for ScrapeSources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScrapeSources")
            .field("sink", &self.sink.is_some())
            .field("driver", &self.driver.is_some())
            .field("proxy", &self.proxy.is_some())
            .finish()
    }
}

fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(metric)
}

impl Collector for ScrapeSources {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let sink = self
            .sink
            .clone()
            .or_else(|| self.driver.as_ref().map(DriverHandle::sink));
        if let Some(sink) = sink {
            let c = sink.stats();
            let mut metric = encoder.encode_descriptor(
                "ingest_events",
                "Events from triggers by what became of them",
                None,
                MetricType::Counter,
            )?;
            for (result, value) in [
                ("queued", c.queued),
                ("ignored", c.ignored),
                ("duplicate", c.duplicates),
                ("rejected", c.rejected),
                ("published", c.published),
                ("unchanged", c.unchanged),
                ("stale", c.stale),
                ("failed", c.failed),
            ] {
                let labels = [("result", result)];
                ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
            }
            counter(
                &mut encoder,
                "targets_published",
                "Targets published to the coordinator",
                c.published,
            )?;
        }
        if let Some(driver) = &self.driver {
            let in_flight = u64::try_from(driver.deploys_in_flight()).unwrap_or(u64::MAX);
            gauge(
                &mut encoder,
                "deploys_in_flight",
                "Services deploying now",
                in_flight,
            )?;
            gauge(
                &mut encoder,
                "ready",
                "1 once every service has recovered",
                u64::from(driver.is_ready()),
            )?;
        }
        if let Some(proxy) = &self.proxy {
            proxy::encode(&mut encoder, proxy)?;
        }
        Ok(())
    }
}
