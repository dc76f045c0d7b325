//! Notifiers: where deploy reports go.
//!
//! - [`SlackNotifier`]: a message per outcome to a Slack incoming webhook.
//! - [`WebhookNotifier`]: the report as JSON, optionally HMAC-signed.
//! - [`DockerHubCallback`]: Docker Hub's `callback_url`, for deploys a Docker Hub webhook asked
//!   for, on allowed origins only.
//! - [`MetricsNotifier`]: counts reports for `/metrics`.
//!
//! Each bounds its own time ([`RetryPolicy`](crate::config::RetryPolicy)): at most `attempts`
//! tries with exponential backoff, honouring `Retry-After`, within `total`. 4xx answers other
//! than 408/429 are permanent and not retried; 5xx, 408, 429, timeouts and connection errors
//! are retried. URLs and secrets never appear in errors or logs (only `scheme://host/…`).

mod delivery;
mod dockerhub_callback;
mod metrics;
mod slack;
mod webhook;

pub use delivery::redact_url;
pub use dockerhub_callback::DockerHubCallback;
pub use metrics::MetricsNotifier;
pub use slack::{SlackNotifier, slack_message};
pub use webhook::{EVENT_HEADER, SIGNATURE_HEADER, WebhookNotifier};

#[cfg(test)]
pub(crate) mod tests {
    use deployer_core::testing::digest;
    use deployer_core::{DeployReport, Outcome, ServiceName, Source, Timestamp};

    /// A report of service `web` on `host-a`, 1 -> 2, 12.3 s.
    pub(crate) fn report(outcome: Outcome) -> DeployReport {
        DeployReport {
            service: ServiceName::new("web").unwrap(),
            node: "host-a".into(),
            image: "demo/app:latest".parse().unwrap(),
            outcome,
            from: Some(digest(1)),
            to: Some(digest(2)),
            generation: None,
            revision: None,
            source: Some(Source::new("registry")),
            delivery_id: None,
            callback_url: None,
            reason: None,
            rollback_error: None,
            cut: 0,
            warnings: Vec::new(),
            started_at: Timestamp::from_millis(1_000),
            finished_at: Timestamp::from_millis(13_300),
            duration_ms: 12_300,
        }
    }
}
