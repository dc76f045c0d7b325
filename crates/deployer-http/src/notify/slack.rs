//! Slack incoming webhooks: one message per deploy outcome, `text` plus `blocks`, paced to
//! Slack's one message a second.

use std::sync::Arc;

use async_trait::async_trait;
use deployer_core::ports::{Notifier, NotifyError};
use deployer_core::{DeployReport, Outcome};
use reqwest::Url;
use serde_json::{Value, json};

use super::delivery::{Delivery, HttpTransport, Outgoing, Transport};
use crate::config::{ConfigError, SlackConfig};

/// Posts deploy reports to a Slack incoming webhook.
#[derive(Debug)]
pub struct SlackNotifier {
    delivery: Delivery,
    /// The webhook URL; it embeds a token, so it is never logged or put in an error.
    url: Url,
    username: Option<String>,
    notify_started: bool,
}

impl SlackNotifier {
    /// A notifier for `config` (validated here).
    pub fn new(config: &SlackConfig) -> Result<Self, ConfigError> {
        let transport = HttpTransport::new("notify.slack", &config.retry)?;
        Self::with_transport(config, Arc::new(transport))
    }

    pub(crate) fn with_transport(
        config: &SlackConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let url = Url::parse(config.url.expose())
            .map_err(|_| ConfigError::new("notify.slack.url", "is not a URL"))?;
        Ok(Self {
            delivery: Delivery::new("slack", transport, config.retry, Some(config.pace)),
            url,
            username: config.username.clone(),
            notify_started: config.notify_started,
        })
    }
}

#[async_trait]
impl Notifier for SlackNotifier {
    fn name(&self) -> &str {
        "slack"
    }

    async fn notify(&self, report: &DeployReport) -> Result<(), NotifyError> {
        if report.outcome == Outcome::Started && !self.notify_started {
            return Ok(());
        }
        let message = slack_message(report, self.username.as_deref());
        let body = serde_json::to_vec(&message).unwrap_or_default();
        self.delivery
            .send(&Outgoing::json(self.url.clone(), body))
            .await
    }
}

/// The Slack message for a report: a `text` fallback (notifications, old clients) and
/// `blocks` with the same facts laid out.
pub fn slack_message(report: &DeployReport, username: Option<&str>) -> Value {
    let (icon, verb) = match report.outcome {
        Outcome::Started => (":rocket:", "is deploying"),
        Outcome::Succeeded => (":white_check_mark:", "deployed"),
        Outcome::RolledBack => (":leftwards_arrow_with_hook:", "rolled back from"),
        Outcome::Failed => (":x:", "failed to deploy"),
        Outcome::Superseded => (":fast_forward:", "skipped superseded"),
        Outcome::Skipped => (":no_entry_sign:", "did not start"),
        Outcome::Repaired => (":wrench:", "repaired"),
    };
    let service = escape(report.service.as_str());
    let image = escape(&report.image.familiar());
    let digest = report.to.as_ref().map_or_else(
        || "unknown build".to_owned(),
        |d| format!("`{}`", d.short()),
    );
    let node = escape(&report.node);
    let took = duration(report.duration_ms);
    let mut text = format!("{icon} *{service}* {verb} `{image}` {digest} on {node} ({took})");
    if let Some(reason) = &report.reason {
        text.push_str(&format!("\n> {}", escape(reason)));
    }
    if let Some(error) = &report.rollback_error {
        text.push_str(&format!("\n> rollback also failed: {}", escape(error)));
    }
    let mut facts = vec![
        format!("*service* {service}"),
        format!("*image* `{image}`"),
        format!("*digest* {digest}"),
        format!("*host* {node}"),
        format!("*took* {took}"),
    ];
    if let Some(source) = &report.source {
        facts.push(format!("*by* {}", escape(source.as_str())));
    }
    let context: Vec<Value> = facts
        .into_iter()
        .map(|f| json!({"type": "mrkdwn", "text": f}))
        .collect();
    let mut message = json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": context},
        ],
    });
    if let Some(username) = username {
        message["username"] = Value::from(username);
    }
    message
}

/// Slack's three control characters in mrkdwn.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `850 ms`, `12.3 s`, `4 min 05 s`.
fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{}.{} s", ms / 1000, ms % 1000 / 100),
        _ => format!("{} min {:02} s", ms / 60_000, ms / 1000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::report;

    #[test]
    fn messages_carry_service_image_digest_host_and_duration() {
        let mut r = report(Outcome::RolledBack);
        r.reason = Some("probe failed: <connection refused>".into());
        let m = slack_message(&r, Some("deploy-bot"));
        let text = m["text"].as_str().unwrap();
        assert!(
            text.starts_with(
                ":leftwards_arrow_with_hook: *web* rolled back from `demo/app:latest` `0202020202"
            ),
            "{text}"
        );
        assert!(text.contains("on host-a (12.3 s)"), "{text}");
        assert!(text.contains("&lt;connection refused&gt;"), "{text}");
        assert_eq!(m["username"], "deploy-bot");
        assert_eq!(m["blocks"][0]["text"]["text"], m["text"]);
        assert_eq!(m["blocks"][1]["elements"].as_array().unwrap().len(), 6);
        assert!(slack_message(&r, None).get("username").is_none());
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_345), "12.3 s");
        assert_eq!(duration(245_000), "4 min 05 s");
    }
}
