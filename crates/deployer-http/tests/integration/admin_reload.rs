//! `POST /api/v1/reload`: answered by the binary's reloader, each failure with its own code,
//! and 503 when the daemon has no config file to read again.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use deployer_core::ServiceName;
use deployer_core::driver::ReloadSummary;
use deployer_http::config::AdminConfig;
use deployer_http::{AdminPorts, Metrics, ReloadError, Reloader, admin_router, admin_router_with};

use crate::common::*;

const LISTEN: &str = "127.0.0.1:4501";

/// Answers every reload the same way.
struct Canned(fn() -> Result<ReloadSummary, ReloadError>);

#[async_trait]
impl Reloader for Canned {
    async fn reload(&self) -> Result<ReloadSummary, ReloadError> {
        (self.0)()
    }
}

fn config() -> AdminConfig {
    AdminConfig {
        listen: Some(LISTEN.parse().unwrap()),
        ..AdminConfig::default()
    }
}

async fn router(answer: Option<fn() -> Result<ReloadSummary, ReloadError>>) -> Router {
    let rig = Rig::start(
        &[("web", "127.0.0.1:5000/demo/app:latest")],
        Vec::new(),
        Vec::new(),
    )
    .await;
    match answer {
        Some(answer) => admin_router_with(
            &config(),
            rig.handle,
            Metrics::new(),
            AdminPorts::default().with_reloader(Arc::new(Canned(answer))),
        )
        .unwrap(),
        None => admin_router(&config(), rig.handle, Metrics::new(), None).unwrap(),
    }
}

fn reload(body: &str) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri("/api/v1/reload")
        .header("host", LISTEN)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn a_reload_reports_what_changed_or_why_nothing_did() {
    let applied = router(Some(|| {
        Ok(ReloadSummary {
            added: vec![ServiceName::new("api").unwrap()],
            changed: Vec::new(),
            removed: vec![ServiceName::new("old").unwrap()],
            unchanged: 1,
        })
    }))
    .await;
    let (status, _, answer) = send(&applied, reload("{}")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["added"][0], "api");
    assert_eq!(answer["removed"][0], "old");
    assert_eq!(answer["unchanged"], 1);
    let (status, _, answer) = send(&applied, reload(r#"{"force":true}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("force"),
        "{answer}"
    );

    let invalid = router(Some(|| {
        Err(ReloadError::Invalid(vec![
            "deployer.toml:3:12: service[0].replicas: must be from 1 to 64, not 0".to_owned(),
        ]))
    }))
    .await;
    let (status, _, answer) = send(&invalid, reload("")).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_config"))
    );
    let message = answer["error"].as_str().unwrap();
    assert!(
        message.contains("running one stays") && message.contains("deployer.toml:3:12"),
        "{message}"
    );

    let refused = router(Some(|| {
        Err(ReloadError::Refused("its proxy would move".to_owned()))
    }))
    .await;
    let (status, _, answer) = send(&refused, reload("{}")).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::CONFLICT, Some("reload_refused"))
    );

    let without = router(None).await;
    let (status, _, answer) = send(&without, reload("{}")).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("reload_unavailable"))
    );
}
