//! Counts deploy reports into [`Metrics`].

use std::sync::Arc;

use async_trait::async_trait;
use deployer_core::DeployReport;
use deployer_core::ports::{Notifier, NotifyError};

use crate::metrics::Metrics;

/// A notifier that counts reports (`deployer_deploys_total`) and their durations
/// (`deployer_deploy_duration_seconds`). The binary adds it to the driver's notifiers.
#[derive(Debug, Clone)]
pub struct MetricsNotifier {
    metrics: Arc<Metrics>,
}

impl MetricsNotifier {
    /// Counts into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

#[async_trait]
impl Notifier for MetricsNotifier {
    fn name(&self) -> &str {
        "metrics"
    }

    async fn notify(&self, report: &DeployReport) -> Result<(), NotifyError> {
        self.metrics.deploy(report);
        Ok(())
    }
}
