use async_trait::async_trait;

use super::BoxError;
use crate::report::DeployReport;

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The receiver refused it (and will refuse it again: bad URL, archived channel, ...).
    #[error("{notifier} rejected the notification: {reason}")]
    Rejected {
        /// The notifier's name.
        notifier: String,
        /// What the receiver said.
        reason: String,
    },
    /// The receiver could not be reached or kept failing after the notifier's retries.
    #[error("{notifier} could not deliver the notification")]
    Undelivered {
        /// The notifier's name.
        notifier: String,
        /// What went wrong underneath.
        #[source]
        source: BoxError,
    },
}

/// Tells people or systems how deploys went (Slack, a webhook, metrics).
///
/// Contract: the engine calls `notify` from a queue of its own, so a slow or failing notifier
/// never delays a deploy; but it must still bound its own retries and time, because the queue
/// is bounded and drops the oldest reports when full. Secrets (webhook URLs, tokens) never go
/// into errors or logs.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// A short name for logs and metrics (`slack`, `webhook`).
    fn name(&self) -> &str;

    /// Delivers one report.
    async fn notify(&self, report: &DeployReport) -> Result<(), NotifyError>;
}
