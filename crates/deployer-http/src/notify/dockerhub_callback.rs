//! Docker Hub's `callback_url`: after a deploy triggered by a Docker Hub webhook, POST
//! `{"state", "description", "context", "target_url"}` to the URL the webhook named.
//!
//! The URL comes from a request body that only a path token protects, so it is checked
//! against an allow-list of origins before anything is sent (no SSRF to internal addresses),
//! and redirects are never followed.

use std::sync::Arc;

use async_trait::async_trait;
use deployer_core::ports::{Notifier, NotifyError};
use deployer_core::{DeployReport, Outcome};
use reqwest::Url;
use serde_json::json;

use super::delivery::{Delivery, HttpTransport, Outgoing, Transport, redact_url};
use crate::config::{ConfigError, DockerHubCallbackConfig};

/// Docker Hub's limits on the fields.
const DESCRIPTION_MAX: usize = 255;
const CONTEXT_MAX: usize = 100;

/// An allowed origin, compared field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn of(url: &Url) -> Option<Self> {
        Some(Self {
            scheme: url.scheme().to_owned(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default(),
        })
    }
}

/// Reports final deploy outcomes to Docker Hub's `callback_url`.
#[derive(Debug)]
pub struct DockerHubCallback {
    delivery: Delivery,
    allowed: Vec<Origin>,
    context: String,
    target_url: Option<String>,
}

impl DockerHubCallback {
    /// A notifier for `config` (validated here).
    pub fn new(config: &DockerHubCallbackConfig) -> Result<Self, ConfigError> {
        let transport = HttpTransport::new("notify.dockerhub_callback", &config.retry)?;
        Self::with_transport(config, Arc::new(transport))
    }

    pub(crate) fn with_transport(
        config: &DockerHubCallbackConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let allowed = config
            .allowed_origins
            .iter()
            .filter_map(|o| Url::parse(o).ok().as_ref().and_then(Origin::of))
            .collect();
        Ok(Self {
            delivery: Delivery::new("dockerhub_callback", transport, config.retry, None),
            allowed,
            context: truncate(&config.context, CONTEXT_MAX),
            target_url: config.target_url.clone(),
        })
    }

    /// The URL to call for `report`, if it should be called at all.
    fn callback(&self, report: &DeployReport) -> Result<Option<Url>, NotifyError> {
        let from_docker_hub = report
            .source
            .as_ref()
            .is_some_and(|s| s.as_str() == "dockerhub");
        let (true, true, Some(url)) = (
            report.outcome.is_final(),
            from_docker_hub,
            &report.callback_url,
        ) else {
            return Ok(None);
        };
        let refuse = |reason: &str| NotifyError::Rejected {
            notifier: "dockerhub_callback".to_owned(),
            reason: reason.to_owned(),
        };
        let parsed = Url::parse(url).map_err(|_| refuse("callback_url is not a URL"))?;
        let allowed = parsed.username().is_empty()
            && parsed.password().is_none()
            && Origin::of(&parsed).is_some_and(|o| self.allowed.contains(&o));
        if !allowed {
            tracing::warn!(target_origin = %redact_url(url), "refused a callback_url outside the allowed origins");
            return Err(refuse("callback_url is not on an allowed origin"));
        }
        Ok(Some(parsed))
    }
}

#[async_trait]
impl Notifier for DockerHubCallback {
    fn name(&self) -> &str {
        "dockerhub_callback"
    }

    async fn notify(&self, report: &DeployReport) -> Result<(), NotifyError> {
        let Some(url) = self.callback(report)? else {
            return Ok(());
        };
        let state = match report.outcome {
            Outcome::Succeeded | Outcome::Started => "success",
            Outcome::Failed | Outcome::RolledBack | Outcome::Skipped => "failure",
            Outcome::Superseded => "error",
            // A repair is not the result the pusher asked about; its deploy was answered.
            Outcome::Repaired => return Ok(()),
        };
        let short = report.to.as_ref().map_or("", |d| d.short());
        let mut description = format!(
            "{} {} {short} on {}",
            report.service,
            report.outcome.as_str().replace('_', " "),
            report.node
        );
        if let Some(reason) = &report.reason {
            description.push_str(": ");
            description.push_str(reason);
        }
        let mut body = json!({
            "state": state,
            "description": truncate(&description, DESCRIPTION_MAX),
            "context": self.context,
        });
        if let Some(target) = &self.target_url {
            body["target_url"] = json!(target);
        }
        let body = serde_json::to_vec(&body).unwrap_or_default();
        self.delivery.send(&Outgoing::json(url, body)).await
    }
}

/// At most `max` characters.
fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::delivery::tests::ScriptedTransport;
    use crate::notify::tests::report;
    use deployer_core::Source;

    fn callback(origins: &[&str]) -> (DockerHubCallback, Arc<ScriptedTransport>) {
        let transport = ScriptedTransport::new(vec![]);
        let config = DockerHubCallbackConfig {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            ..DockerHubCallbackConfig::default()
        };
        (
            DockerHubCallback::with_transport(&config, transport.clone()).unwrap(),
            transport,
        )
    }

    fn from_hub(outcome: Outcome, url: &str) -> DeployReport {
        let mut r = report(outcome);
        r.source = Some(Source::new("dockerhub"));
        r.callback_url = Some(url.to_owned());
        r
    }

    #[tokio::test]
    async fn only_final_dockerhub_reports_with_an_allowed_url_are_sent() {
        let (notifier, transport) = callback(&["https://registry.hub.docker.com"]);
        let good =
            "https://registry.hub.docker.com/u/a/b/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/";
        notifier
            .notify(&from_hub(Outcome::Started, good))
            .await
            .unwrap();
        let mut other = from_hub(Outcome::Succeeded, good);
        other.source = Some(Source::new("registry"));
        notifier.notify(&other).await.unwrap();
        assert!(transport.calls.lock().unwrap().is_empty());

        for bad in [
            "http://registry.hub.docker.com/u/a/b/hook/x/",
            "https://registry.hub.docker.com:8443/x",
            "https://127.0.0.1/x",
            "https://user@registry.hub.docker.com/x",
            "not a url",
        ] {
            let err = notifier
                .notify(&from_hub(Outcome::Succeeded, bad))
                .await
                .unwrap_err();
            assert!(matches!(err, NotifyError::Rejected { .. }), "{bad}");
        }
        assert!(transport.calls.lock().unwrap().is_empty());

        notifier
            .notify(&from_hub(Outcome::Superseded, good))
            .await
            .unwrap();
        let calls = transport.calls.lock().unwrap();
        assert_eq!(calls.len(), 1);
        let body: serde_json::Value = serde_json::from_slice(&calls[0].1.body).unwrap();
        assert_eq!(body["state"], "error");
        assert_eq!(body["context"], "deployer");
        assert!(body.get("target_url").is_none());
    }

    #[tokio::test]
    async fn descriptions_are_cut_to_docker_hubs_limit() {
        let (notifier, transport) = callback(&["https://registry.hub.docker.com"]);
        let mut r = from_hub(Outcome::Failed, "https://registry.hub.docker.com/hook/");
        r.reason = Some("é".repeat(400));
        notifier.notify(&r).await.unwrap();
        let calls = transport.calls.lock().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&calls[0].1.body).unwrap();
        assert_eq!(body["state"], "failure");
        assert_eq!(
            body["description"].as_str().unwrap().chars().count(),
            DESCRIPTION_MAX
        );
    }
}
