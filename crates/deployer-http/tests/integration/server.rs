//! The real servers on 127.0.0.1:0: the webhook trigger inside a running driver, and the
//! admin router through `serve`, both stopped gracefully.

use std::sync::Arc;
use std::time::Duration;

use deployer_core::Outcome;
use deployer_core::testing::digest;
use deployer_http::config::{AdminConfig, EndpointConfig, WebhookConfig};
use deployer_http::hooks::Sender;
use deployer_http::metrics::WebhookResult;
use deployer_http::{Metrics, WebhookTrigger, admin_router, serve};
use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_over_tcp_deploys_and_shutdown_is_graceful() {
    let mut config = WebhookConfig::default();
    *config.endpoint_mut(Sender::Generic) = EndpointConfig::with_secret(TOKEN);
    let metrics = Metrics::new();
    let trigger =
        WebhookTrigger::bind("127.0.0.1:0".parse().unwrap(), config, metrics.clone()).unwrap();
    let addr = trigger.local_addr();
    let rig = Rig::start(
        &[("web", "127.0.0.1:5000/demo/app:latest")],
        Vec::new(),
        vec![Arc::new(trigger)],
    )
    .await;

    let client = reqwest::Client::new();
    let body = json!({"image": "127.0.0.1:5000/demo/app:latest", "digest": digest(7).to_string()});
    let response = within(
        Duration::from_secs(10),
        "the webhook answer",
        client
            .post(format!("http://{addr}/hooks/generic"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 202);
    let report = within(
        Duration::from_secs(10),
        "the deploy the webhook asked for",
        rig.reports.wait_for(|r| r.outcome == Outcome::Succeeded),
    )
    .await;
    assert_eq!(report.to, Some(digest(7)));
    assert_eq!(report.source.as_ref().map(|s| s.as_str()), Some("generic"));
    assert_eq!(
        metrics.webhook_count(Sender::Generic, WebhookResult::Accepted),
        1
    );

    rig.stop().await;
    let after = tokio::net::TcpStream::connect(addr).await;
    assert!(after.is_err(), "the listener is closed after shutdown");
}

#[tokio::test]
async fn serve_answers_until_shutdown_then_returns() {
    let rig = Rig::start(&[("web", "demo/app:latest")], Vec::new(), Vec::new()).await;
    let router = admin_router(
        &AdminConfig::default(),
        rig.handle.clone(),
        Metrics::new(),
        None,
    )
    .unwrap();
    let listener = deployer_http::serve::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        router,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    // A keep-alive connection stays open in the client's pool: shutdown must not wait for it.
    stop.send(()).unwrap();
    within(Duration::from_secs(10), "serve after shutdown", server)
        .await
        .unwrap()
        .unwrap();
    assert!(
        client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .is_err()
    );
    rig.stop().await;
}
