//! The generic webhook notifier: the [`DeployReport`] as JSON, optionally signed.
//!
//! Receivers verify `X-Deployer-Signature-256: sha256=<hex>` by computing HMAC-SHA256 over the
//! raw request body with the shared secret and comparing in constant time, exactly as for
//! GitHub's `X-Hub-Signature-256` ([`crate::hooks::signature`] computes it).

use std::sync::Arc;

use async_trait::async_trait;
use deployer_core::ports::{Notifier, NotifyError};
use deployer_core::{DeployReport, Outcome};
use http::{HeaderName, HeaderValue};
use reqwest::Url;

use super::delivery::{Delivery, HttpTransport, Outgoing, Transport};
use crate::config::{ConfigError, WebhookNotifierConfig};
use crate::hooks::signature;
use crate::secret::Secret;

/// Header carrying the body's HMAC-SHA256 signature.
pub const SIGNATURE_HEADER: &str = "x-deployer-signature-256";
/// Header carrying the report's outcome, so receivers can route without parsing.
pub const EVENT_HEADER: &str = "x-deployer-event";

/// Posts each report as JSON to a URL.
#[derive(Debug)]
pub struct WebhookNotifier {
    delivery: Delivery,
    url: Url,
    secret: Option<Secret>,
    notify_started: bool,
}

impl WebhookNotifier {
    /// A notifier for `config` (validated here).
    pub fn new(config: &WebhookNotifierConfig) -> Result<Self, ConfigError> {
        let transport = HttpTransport::new("notify.webhook", &config.retry)?;
        Self::with_transport(config, Arc::new(transport))
    }

    pub(crate) fn with_transport(
        config: &WebhookNotifierConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let url = Url::parse(config.url.expose())
            .map_err(|_| ConfigError::new("notify.webhook.url", "is not a URL"))?;
        Ok(Self {
            delivery: Delivery::new("webhook", transport, config.retry, None),
            url,
            secret: config.secret.clone(),
            notify_started: config.notify_started,
        })
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn notify(&self, report: &DeployReport) -> Result<(), NotifyError> {
        if report.outcome == Outcome::Started && !self.notify_started {
            return Ok(());
        }
        let body = serde_json::to_vec(report).map_err(|e| NotifyError::Undelivered {
            notifier: "webhook".to_owned(),
            source: e.into(),
        })?;
        let mut request = Outgoing::json(self.url.clone(), Vec::new());
        request.headers.push((
            HeaderName::from_static(EVENT_HEADER),
            HeaderValue::from_static(report.outcome.as_str()),
        ));
        if let Some(secret) = &self.secret {
            let signed = signature(secret.expose().as_bytes(), &body);
            if let Ok(value) = HeaderValue::from_str(&signed) {
                request
                    .headers
                    .push((HeaderName::from_static(SIGNATURE_HEADER), value));
            }
        }
        request.body = body.into();
        self.delivery.send(&request).await
    }
}
