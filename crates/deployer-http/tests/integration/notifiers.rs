//! Notifiers against a local fake receiver (real HTTP on 127.0.0.1), in real time with short
//! backoffs; the pacing and backoff arithmetic itself is unit-tested under paused time.

use std::time::Duration;

use deployer_core::ports::{Notifier, NotifyError};
use deployer_core::{DeployReport, Outcome, Source};
use deployer_http::config::{
    DockerHubCallbackConfig, RetryPolicy, SlackConfig, WebhookNotifierConfig,
};
use deployer_http::hooks::signature;
use deployer_http::notify::{
    DockerHubCallback, SIGNATURE_HEADER, SlackNotifier, WebhookNotifier, slack_message,
};
use serde_json::Value;

use crate::common::*;

/// Quick retries, so the tests take well under a second each (but for Retry-After: 1).
fn quick() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(20),
        request_timeout: Duration::from_secs(2),
        total: Duration::from_secs(10),
        ..RetryPolicy::default()
    }
}

/// `tests/fixtures/deploy_report.json` with another outcome.
fn report(outcome: Outcome) -> DeployReport {
    let mut report: DeployReport = serde_json::from_slice(&fixture("deploy_report.json")).unwrap();
    report.outcome = outcome;
    report
}

fn slack(receiver: &FakeReceiver, notify_started: bool) -> SlackNotifier {
    let config = SlackConfig {
        username: Some("deploy-bot".into()),
        notify_started,
        pace: Duration::from_millis(50),
        retry: quick(),
        ..SlackConfig::new(receiver.url("/services/T000/B000/XXXXSECRETXXXX"))
    };
    SlackNotifier::new(&config).unwrap()
}

#[tokio::test]
async fn slack_honours_429_retry_after_and_retries_5xx() {
    let receiver = FakeReceiver::start(vec![
        (429, vec![("retry-after", "1".into())], "rate_limited"),
        (500, vec![], "oops"),
    ])
    .await;
    let notifier = slack(&receiver, false);
    within(
        Duration::from_secs(10),
        "slack delivery",
        notifier.notify(&report(Outcome::Succeeded)),
    )
    .await
    .unwrap();
    let seen = receiver.seen();
    assert_eq!(seen.len(), 3, "429, 500, then 200");
    assert!(
        seen[1].at - seen[0].at >= Duration::from_secs(1),
        "waited Retry-After"
    );
    let body: Value = serde_json::from_slice(&seen[2].body).unwrap();
    assert_eq!(body["username"], "deploy-bot");
    assert!(
        body["text"].as_str().unwrap().contains("*web* deployed"),
        "{body}"
    );
    assert_eq!(seen[2].headers["content-type"], "application/json");

    // `started` is posted only when asked for.
    within(
        Duration::from_secs(5),
        "skipping started",
        notifier.notify(&report(Outcome::Started)),
    )
    .await
    .unwrap();
    assert_eq!(receiver.seen().len(), 3);
    let chatty = slack(&receiver, true);
    chatty.notify(&report(Outcome::Started)).await.unwrap();
    assert_eq!(receiver.seen().len(), 4);
}

#[tokio::test]
async fn slack_errors_are_permanent_and_never_show_the_url() {
    for (status, word) in [
        (400, "invalid_payload"),
        (404, "channel_not_found"),
        (410, "channel_is_archived"),
    ] {
        let receiver = FakeReceiver::start(vec![(status, vec![], word)]).await;
        let err = slack(&receiver, false)
            .notify(&report(Outcome::Failed))
            .await
            .unwrap_err();
        assert!(matches!(err, NotifyError::Rejected { .. }), "{status}");
        let text = format!("{err} {err:?}");
        assert!(text.contains(word), "{text}");
        assert!(
            !text.contains("SECRET") && !text.contains("/services/"),
            "{text}"
        );
        assert_eq!(receiver.seen().len(), 1, "no retry after {status}");
    }
}

#[tokio::test]
async fn unreachable_receivers_fail_bounded_without_the_url() {
    // A port that was free a moment ago: connection refused.
    let url = format!(
        "http://127.0.0.1:{}/services/T/B/SECRET",
        deployer_testkit::net::free_port()
    );
    let config = SlackConfig {
        retry: quick(),
        ..SlackConfig::new(url)
    };
    let notifier = SlackNotifier::new(&config).unwrap();
    let err = within(
        Duration::from_secs(10),
        "giving up",
        notifier.notify(&report(Outcome::Failed)),
    )
    .await
    .unwrap_err();
    let text = format!("{err} {err:?} {}", deployer_core::driver::error_chain(&err));
    assert!(matches!(err, NotifyError::Undelivered { .. }));
    assert!(text.contains("could not connect"), "{text}");
    assert!(
        !text.contains("SECRET") && !text.contains("127.0.0.1"),
        "{text}"
    );
}

#[tokio::test]
async fn the_webhook_notifier_signs_the_report_so_receivers_can_verify_it() {
    let receiver = FakeReceiver::start(vec![(503, vec![], "")]).await;
    let config = WebhookNotifierConfig {
        secret: Some("webhook-secret-0123456789".into()),
        retry: quick(),
        ..WebhookNotifierConfig::new(receiver.url("/deploys?key=SECRET"))
    };
    let notifier = WebhookNotifier::new(&config).unwrap();
    notifier.notify(&report(Outcome::RolledBack)).await.unwrap();
    let seen = receiver.seen();
    assert_eq!(seen.len(), 2, "503, then delivered");
    let delivered = &seen[1];
    let expected = signature(b"webhook-secret-0123456789", &delivered.body);
    assert_eq!(delivered.headers[SIGNATURE_HEADER], expected.as_str());
    assert_eq!(delivered.headers["x-deployer-event"], "rolled_back");
    let back: DeployReport = serde_json::from_slice(&delivered.body).unwrap();
    assert_eq!(back, report(Outcome::RolledBack));

    let unsigned = FakeReceiver::start(vec![]).await;
    let config = WebhookNotifierConfig {
        retry: quick(),
        ..WebhookNotifierConfig::new(unsigned.url("/"))
    };
    WebhookNotifier::new(&config)
        .unwrap()
        .notify(&report(Outcome::Succeeded))
        .await
        .unwrap();
    assert!(unsigned.seen()[0].headers.get(SIGNATURE_HEADER).is_none());
}

#[tokio::test]
async fn the_webhook_notifier_gives_up_after_its_attempts() {
    let receiver = FakeReceiver::start(vec![
        (500, vec![], ""),
        (502, vec![], ""),
        (500, vec![], ""),
        (500, vec![], ""),
    ])
    .await;
    let config = WebhookNotifierConfig {
        retry: quick(),
        ..WebhookNotifierConfig::new(receiver.url("/x"))
    };
    let err = WebhookNotifier::new(&config)
        .unwrap()
        .notify(&report(Outcome::Succeeded))
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::Undelivered { .. }));
    assert_eq!(receiver.seen().len(), 3, "three attempts, no more");
}

#[tokio::test]
async fn docker_hub_callbacks_go_only_to_allowed_origins() {
    let receiver = FakeReceiver::start(vec![]).await;
    let config = DockerHubCallbackConfig {
        enabled: true,
        allowed_origins: vec![format!("http://{}", receiver.addr)],
        target_url: Some("https://deployer.example.com/api/v1/history".into()),
        retry: quick(),
        ..DockerHubCallbackConfig::default()
    };
    let notifier = DockerHubCallback::new(&config).unwrap();
    let mut r = report(Outcome::Succeeded);
    r.source = Some(Source::new("dockerhub"));
    r.callback_url =
        Some(receiver.url("/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/"));
    notifier.notify(&r).await.unwrap();
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
    let golden: Value = serde_json::from_slice(&fixture("dockerhub_callback.json")).unwrap();
    assert_eq!(body, golden);

    // The default allow-list (Docker Hub only) refuses the local receiver without calling it.
    let strict = DockerHubCallback::new(&DockerHubCallbackConfig::default()).unwrap();
    assert!(strict.notify(&r).await.is_err());
    assert_eq!(receiver.seen().len(), 1);
}

#[test]
fn the_slack_message_matches_its_fixture() {
    let mut r = report(Outcome::Failed);
    r.reason = Some("probe of 127.0.0.1:8080 failed: <connection refused> & gave up".into());
    let golden: Value = serde_json::from_slice(&fixture("slack_message_failed.json")).unwrap();
    assert_eq!(slack_message(&r, Some("deploy-bot")), golden);
}
