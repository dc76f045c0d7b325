//! Pause, maintenance and resume through the admin API: checked bodies, the gate handed to
//! the traffic control, each failure with its own code.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use deployer_http::config::AdminConfig;
use deployer_http::{
    AdminPorts, Gate, GateError, Metrics, TrafficControl, admin_router, admin_router_with,
};

use crate::common::*;

const LISTEN: &str = "127.0.0.1:4501";

/// Records the gates it is given; `worker` has no proxy.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, Gate)>>);

#[async_trait::async_trait]
impl TrafficControl for Recorder {
    async fn set_gate(&self, service: &str, gate: Gate) -> Result<(), GateError> {
        if service == "worker" {
            return Err(GateError::NoProxy);
        }
        self.0.lock().unwrap().push((service.to_owned(), gate));
        Ok(())
    }
}

fn config() -> AdminConfig {
    AdminConfig {
        listen: Some(LISTEN.parse().unwrap()),
        ..AdminConfig::default()
    }
}

async fn rig() -> Rig {
    Rig::start(
        &[
            ("web", "127.0.0.1:5000/demo/web:latest"),
            ("worker", "127.0.0.1:5000/demo/worker:latest"),
        ],
        Vec::new(),
        Vec::new(),
    )
    .await
}

fn post(path: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header("host", LISTEN)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn pause_maintenance_and_resume_set_the_proxys_gate() {
    let rig = rig().await;
    let recorder = Arc::new(Recorder::default());
    let router: Router = admin_router_with(
        &config(),
        rig.handle.clone(),
        Metrics::new(),
        AdminPorts::default().with_traffic(recorder.clone()),
    )
    .unwrap();

    let (status, _, answer) = send(
        &router,
        post("/api/v1/services/web/pause", r#"{"hold_seconds": 5}"#),
    )
    .await;
    assert_eq!(
        (status, answer["gate"].as_str()),
        (StatusCode::OK, Some("paused")),
        "{answer}"
    );
    let (status, _, answer) = send(&router, post("/api/v1/services/web/pause", "{}")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _, answer) = send(
        &router,
        post(
            "/api/v1/services/web/maintenance",
            r#"{"message": "back soon"}"#,
        ),
    )
    .await;
    assert_eq!(
        (status, answer["gate"].as_str()),
        (StatusCode::OK, Some("maintenance")),
        "{answer}"
    );
    let (status, _, _) = send(&router, post("/api/v1/services/web/resume", "{}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        *recorder.0.lock().unwrap(),
        [
            (
                "web".to_owned(),
                Gate::Paused {
                    hold: Duration::from_secs(5)
                }
            ),
            (
                "web".to_owned(),
                Gate::Paused {
                    hold: Duration::from_secs(30)
                }
            ),
            (
                "web".to_owned(),
                Gate::Maintenance {
                    message: "back soon".to_owned()
                }
            ),
            ("web".to_owned(), Gate::Open),
        ]
    );

    for (path, body, field) in [
        (
            "/api/v1/services/web/pause",
            r#"{"hold_seconds": 0}"#,
            "hold_seconds",
        ),
        (
            "/api/v1/services/web/pause",
            r#"{"hold_seconds": 301}"#,
            "hold_seconds",
        ),
        ("/api/v1/services/web/pause", r#"{"hold": 5}"#, "hold"),
        ("/api/v1/services/web/maintenance", "{}", "message"),
        (
            "/api/v1/services/web/maintenance",
            r#"{"message": "  "}"#,
            "message",
        ),
        ("/api/v1/services/web/resume", r#"{"now": true}"#, "now"),
    ] {
        let (status, _, answer) = send(&router, post(path, body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().starts_with(field),
            "{answer}"
        );
    }
    let (status, _, answer) = send(&router, post("/api/v1/services/worker/pause", "{}")).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::CONFLICT, Some("no_proxy"))
    );
    let (status, _, answer) = send(&router, post("/api/v1/services/nope/pause", "{}")).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_service"))
    );
    assert_eq!(recorder.0.lock().unwrap().len(), 4, "refusals set nothing");

    let without = admin_router(&config(), rig.handle.clone(), Metrics::new(), None).unwrap();
    let (status, _, answer) = send(&without, post("/api/v1/services/web/resume", "{}")).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("traffic_unavailable"))
    );
}
