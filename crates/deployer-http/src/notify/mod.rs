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
    use deployer_core::{DeployReport, Outcome};

    /// The report of `tests/fixtures/deploy_report.json` (service `web` on `host-a`, build 1 -> 2,
    /// 12.3 s, from the registry) with another outcome.
    pub(crate) fn report(outcome: Outcome) -> DeployReport {
        let fixture = include_str!("../../tests/fixtures/deploy_report.json");
        let mut report: DeployReport = serde_json::from_str(fixture).expect("the report fixture");
        report.outcome = outcome;
        report
    }
}
