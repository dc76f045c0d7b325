use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::Failures;
use crate::ports::{Notifier, NotifyError};
use crate::report::DeployReport;

/// A notifier that keeps every report; it can be slowed down or told to fail.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    reports: Mutex<Vec<DeployReport>>,
    failures: Mutex<Failures>,
    delay: Mutex<Duration>,
    arrived: Notify,
}

impl RecordingNotifier {
    /// A notifier with no reports.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every report delivered so far.
    pub fn reports(&self) -> Vec<DeployReport> {
        self.reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes each delivery take `delay`.
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap_or_else(PoisonError::into_inner) = delay;
    }

    /// Fails the next `times` deliveries.
    pub fn fail_next(&self, times: u32) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set("notify", times);
    }

    /// Waits until some delivered report satisfies `predicate`, and returns it.
    pub async fn wait_for(&self, predicate: impl Fn(&DeployReport) -> bool) -> DeployReport {
        loop {
            let arrived = self.arrived.notified();
            if let Some(r) = self.reports().into_iter().find(|r| predicate(r)) {
                return r;
            }
            arrived.await;
        }
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    fn name(&self) -> &str {
        "recording"
    }

    async fn notify(&self, report: &DeployReport) -> Result<(), NotifyError> {
        let delay = *self.delay.lock().unwrap_or_else(PoisonError::into_inner);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take("notify")
        {
            return Err(NotifyError::Rejected {
                notifier: "recording".into(),
                reason: "injected failure".into(),
            });
        }
        self.reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(report.clone());
        self.arrived.notify_waiters();
        Ok(())
    }
}
