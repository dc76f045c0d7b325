//! The admin router on a driver running on fakes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use deployer_core::driver::{Driver, DriverConfig, Ports};
use deployer_core::memory::{MemoryCoordinator, MemoryJournal};
use deployer_core::ports::{
    Coordinator, CoordinatorError, SlotGrant, SlotLease, TargetSnapshot, TargetWatch,
};
use deployer_core::target::Halt;
use deployer_core::testing::{FakeImageSource, FakeSwitcher, digest};
use deployer_core::{
    DeployReport, Digest, ImageRef, Outcome, PublishOutcome, PublishRequest, Revision, ServiceName,
    ServiceSpec, ServiceStatus, Target,
};
use deployer_http::config::AdminConfig;
use deployer_http::notify::MetricsNotifier;
use deployer_http::{
    Metrics, ProxyGenerationStats, ProxyLatency, ProxyServiceStats, ProxyStats, admin_router,
};
use serde_json::{Value, json};

use crate::common::*;

const ADMIN_TOKEN: &str = "admin-token-0123456789";
const WEB: &str = "127.0.0.1:5000/demo/app:latest";
/// What `Host` says when a client reaches a router built without a listen address.
const LOOPBACK: &str = "127.0.0.1:4501";

struct Admin {
    rig: Rig,
    router: Router,
}

/// A service after one deploy: `g1` is drained and gone, `g2` serves.
#[derive(Debug)]
struct TwoGenerations;

#[async_trait::async_trait]
impl ProxyStats for TwoGenerations {
    async fn proxy_stats(&self) -> Vec<ProxyServiceStats> {
        let g1 = ProxyGenerationStats {
            generation: "g1".into(),
            requests: vec![("2xx", 20), ("5xx", 1), ("gateway_error", 1)],
            errors: 2,
            cut: 1,
            ..ProxyGenerationStats::default()
        };
        let g2 = ProxyGenerationStats {
            generation: "g2".into(),
            requests: vec![("2xx", 5), ("4xx", 0)],
            active: 1,
            live_backends: 1,
            ..ProxyGenerationStats::default()
        };
        vec![ProxyServiceStats {
            service: "web".into(),
            no_backend: 2,
            latency: ProxyLatency {
                buckets: vec![(0.005, 20), (0.01, 6), (f64::INFINITY, 1)],
                sum_seconds: 12.5,
            },
            generations: vec![g1, g2],
        }]
    }
}

async fn admin(token: Option<&str>) -> Admin {
    let metrics = Metrics::new();
    let rig = Rig::start(
        &[("web", WEB), ("worker", "demo/worker:latest")],
        vec![Arc::new(MetricsNotifier::new(metrics.clone()))],
        Vec::new(),
    )
    .await;
    rig.images.set_tag(&image(WEB), digest(1));
    let config = AdminConfig {
        token: token.map(Into::into),
        ..AdminConfig::default()
    };
    let router = admin_router(
        &config,
        rig.handle.clone(),
        metrics,
        Some(Arc::new(TwoGenerations)),
    )
    .unwrap();
    Admin { rig, router }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .unwrap()
}

/// As the CLI sends it: JSON (even without a body), to the admin API's loopback address.
fn deploy(name: &str, body: Option<Value>) -> Request<Body> {
    let builder = Request::post(format!("/api/v1/services/{name}/deploy"))
        .header("host", LOOPBACK)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"));
    match body {
        Some(body) => builder.body(Body::from(body.to_string())).unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

/// Waits for a report of `service` with `outcome` for build `n`.
async fn deployed(a: &Admin, n: u8, outcome: Outcome) {
    let wanted = digest(n);
    within(
        Duration::from_secs(10),
        "the deploy report",
        a.rig.reports.wait_for(|r| {
            r.service.as_str() == "web" && r.outcome == outcome && r.to.as_ref() == Some(&wanted)
        }),
    )
    .await;
}

#[tokio::test]
async fn health_is_open_everything_else_needs_the_token() {
    let a = admin(Some(ADMIN_TOKEN)).await;
    for uri in ["/healthz", "/readyz"] {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        assert_eq!(send(&a.router, request).await.0, StatusCode::OK, "{uri}");
    }
    for uri in [
        "/api/v1/services",
        "/api/v1/services/web",
        "/api/v1/history",
        "/api/v1/fleet",
        "/metrics",
        "/api/v1/openapi.json",
    ] {
        for auth in [
            None,
            Some("Bearer wrong-token-0123456789"),
            Some(ADMIN_TOKEN),
        ] {
            let mut builder = Request::get(uri);
            if let Some(auth) = auth {
                builder = builder.header("authorization", auth);
            }
            let (status, headers, body) =
                send(&a.router, builder.body(Body::empty()).unwrap()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} {auth:?}");
            assert_eq!(headers["www-authenticate"], "Bearer");
            assert!(!body.to_string().contains(ADMIN_TOKEN));
        }
        assert_eq!(send(&a.router, get(uri)).await.0, StatusCode::OK, "{uri}");
    }
    let unauthenticated = Request::post("/api/v1/services/web/deploy")
        .header("host", LOOPBACK)
        .header("content-type", "application/json")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&a.router, unauthenticated).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        a.rig.coordinator_targets().await.is_empty(),
        "a refused deploy changes nothing"
    );
    let (status, _, body) = send(&a.router, get("/nothing/here")).await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"error": "not found"}))
    );
    a.rig.stop().await;
}

impl Rig {
    async fn coordinator_targets(&self) -> Vec<deployer_core::Target> {
        use deployer_core::ports::Coordinator;
        self.coordinator.snapshot().await.unwrap().targets
    }
}

#[tokio::test]
async fn without_a_token_the_api_is_open_for_loopback_binding() {
    let a = admin(None).await;
    let request = Request::get("/api/v1/services")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&a.router, request).await.0, StatusCode::OK);
    a.rig.stop().await;
}

#[tokio::test]
async fn services_deploy_rollback_history_fleet_and_metrics() {
    let a = admin(Some(ADMIN_TOKEN)).await;
    let (_, _, body) = send(&a.router, get("/api/v1/services")).await;
    let services = body["services"].as_array().unwrap();
    assert_eq!(services.len(), 2);
    let web = services.iter().find(|s| s["name"] == "web").unwrap();
    assert_eq!(web["image"], WEB);
    assert_eq!(web["strategy"], "recreate");
    assert_eq!(web["replicas"], 1);
    assert_eq!(web["state"], "idle");
    assert_eq!(
        send(&a.router, get("/api/v1/services/nope")).await.0,
        StatusCode::NOT_FOUND
    );

    let (status, _, body) = send(&a.router, rollback("web")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Re-resolve the tracked tag.
    let (status, _, body) = send(&a.router, deploy("web", None)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["outcome"], "published");
    assert_eq!(body["target"]["digest"], digest(1).to_string());
    deployed(&a, 1, Outcome::Succeeded).await;

    // A digest of the tracked repository, then a rollback to the first.
    let (status, _, body) = send(
        &a.router,
        deploy("web", Some(json!({"digest": digest(2).to_string()}))),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    deployed(&a, 2, Outcome::Succeeded).await;
    let (status, _, body) = send(&a.router, rollback("web")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["target"]["digest"], digest(1).to_string());
    let handle = a.rig.handle.clone();
    eventually("the rollback to land", Duration::from_secs(10), || {
        handle.service("web").and_then(|v| v.status.live) == Some(digest(1))
    })
    .await;

    let (_, _, body) = send(&a.router, get("/api/v1/services/web")).await;
    assert_eq!(body["live"], digest(1).to_string());
    assert_eq!(body["last_report"]["outcome"], "succeeded");

    let reports = a.rig.reports.clone();
    eventually(
        "history to hold three finished deploys",
        Duration::from_secs(10),
        || {
            reports
                .reports()
                .iter()
                .filter(|r| r.outcome == Outcome::Succeeded)
                .count()
                >= 3
        },
    )
    .await;
    let history = |uri: &'static str| {
        let router = a.router.clone();
        async move { send(&router, get(uri)).await }
    };
    let coordinator_history = async {
        loop {
            let (_, _, body) = history("/api/v1/history?service=web&limit=2").await;
            if body["reports"].as_array().is_some_and(|r| r.len() == 2) {
                break body;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let body = within(
        Duration::from_secs(10),
        "history in the coordinator",
        coordinator_history,
    )
    .await;
    assert_eq!(
        body["reports"][0]["to"],
        digest(1).to_string(),
        "newest first"
    );
    for (uri, status, field) in [
        ("/api/v1/history?limit=0", StatusCode::BAD_REQUEST, "limit:"),
        (
            "/api/v1/history?limit=lots",
            StatusCode::BAD_REQUEST,
            "limit:",
        ),
        (
            "/api/v1/history?limit=1001",
            StatusCode::BAD_REQUEST,
            "limit:",
        ),
        (
            "/api/v1/history?service=no%20such!",
            StatusCode::BAD_REQUEST,
            "service:",
        ),
        (
            "/api/v1/history?service=ghost",
            StatusCode::NOT_FOUND,
            "no service named",
        ),
    ] {
        let (got, _, body) = history(uri).await;
        assert_eq!(got, status, "{uri}: {body}");
        assert!(
            body["error"].as_str().unwrap().starts_with(field),
            "{uri}: {body}"
        );
    }

    let (status, _, body) = send(&a.router, get("/api/v1/fleet")).await;
    assert_eq!(status, StatusCode::OK);
    let statuses = body["statuses"].as_array().unwrap();
    assert!(
        statuses
            .iter()
            .any(|s| s["service"] == "web" && s["node"] == "host-a"),
        "{body}"
    );

    let request = get("/metrics");
    let response = tower::ServiceExt::oneshot(a.router.clone(), request)
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(
        axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    for line in [
        r#"deployer_deploys_total{service="web",outcome="succeeded"} 3"#,
        r#"deployer_deploy_duration_seconds_count{outcome="succeeded"} 3"#,
        r#"deployer_deploy_duration_seconds_bucket{le="600.0",outcome="succeeded"} 3"#,
        "deployer_deploys_in_flight 0",
        "deployer_ready 1",
        "deployer_targets_published_total 0",
        "# TYPE deployer_proxy_requests counter",
        r#"deployer_proxy_requests_total{service="web",generation="g1",class="2xx"} 20"#,
        r#"deployer_proxy_requests_total{service="web",generation="g1",class="5xx"} 1"#,
        r#"deployer_proxy_requests_total{service="web",generation="g1",class="gateway_error"} 1"#,
        r#"deployer_proxy_requests_total{service="web",generation="g2",class="2xx"} 5"#,
        r#"deployer_proxy_errors_total{service="web",generation="g1"} 2"#,
        r#"deployer_proxy_cut_total{service="web",generation="g1"} 1"#,
        r#"deployer_proxy_cut_total{service="web",generation="g2"} 0"#,
        r#"deployer_proxy_active{service="web",generation="g1"} 0"#,
        r#"deployer_proxy_active{service="web",generation="g2"} 1"#,
        r#"deployer_proxy_backends{service="web",generation="g2"} 1"#,
        r#"deployer_proxy_no_backend_total{service="web"} 2"#,
        "# TYPE deployer_proxy_header_latency_seconds histogram",
        r#"deployer_proxy_header_latency_seconds_count{service="web"} 27"#,
        r#"deployer_proxy_header_latency_seconds_sum{service="web"} 12.5"#,
        r#"deployer_proxy_header_latency_seconds_bucket{le="0.005",service="web"} 20"#,
        r#"deployer_proxy_header_latency_seconds_bucket{le="0.01",service="web"} 26"#,
        r#"deployer_proxy_header_latency_seconds_bucket{le="+Inf",service="web"} 27"#,
        "# EOF",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // Zero classes are left out; no series names an ephemeral backend address.
    assert!(!text.contains(r#"class="4xx""#), "{text}");
    assert!(!text.contains("backend="), "{text}");
    a.rig.stop().await;
}

fn rollback(name: &str) -> Request<Body> {
    Request::post(format!("/api/v1/services/{name}/rollback"))
        .header("host", LOOPBACK)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .unwrap()
}

/// A memory coordinator whose reads can be made to fail.
#[derive(Debug)]
struct Flaky {
    inner: MemoryCoordinator,
}

fn down(operation: &'static str) -> CoordinatorError {
    CoordinatorError::Unavailable {
        operation,
        source: "etcd at 127.0.0.1:2379: connection refused".into(),
    }
}

#[async_trait::async_trait]
impl Coordinator for Flaky {
    async fn publish(&self, r: PublishRequest) -> Result<PublishOutcome, CoordinatorError> {
        self.inner.publish(r).await
    }
    async fn target(&self, i: &ImageRef) -> Result<Option<Target>, CoordinatorError> {
        self.inner.target(i).await
    }
    async fn snapshot(&self) -> Result<TargetSnapshot, CoordinatorError> {
        self.inner.snapshot().await
    }
    async fn watch(&self, after: Revision) -> Result<TargetWatch, CoordinatorError> {
        self.inner.watch(after).await
    }
    async fn halt(&self, i: &ImageRef, d: &Digest, h: Halt) -> Result<(), CoordinatorError> {
        self.inner.halt(i, d, h).await
    }
    async fn acquire_slot(
        &self,
        s: &ServiceName,
        t: &Target,
    ) -> Result<SlotGrant, CoordinatorError> {
        self.inner.acquire_slot(s, t).await
    }
    async fn release_slot(&self, slot: SlotLease) -> Result<(), CoordinatorError> {
        self.inner.release_slot(slot).await
    }
    async fn report_status(&self, s: &ServiceStatus) -> Result<(), CoordinatorError> {
        self.inner.report_status(s).await
    }
    async fn forget_status(&self, node: &str, s: &ServiceName) -> Result<(), CoordinatorError> {
        self.inner.forget_status(node, s).await
    }
    async fn statuses(&self) -> Result<Vec<ServiceStatus>, CoordinatorError> {
        Err(down("statuses"))
    }
    async fn record(&self, r: &DeployReport) -> Result<(), CoordinatorError> {
        self.inner.record(r).await
    }
    async fn history(
        &self,
        _: Option<&ServiceName>,
        _: usize,
    ) -> Result<Vec<DeployReport>, CoordinatorError> {
        Err(down("history"))
    }
}

#[tokio::test]
async fn coordinator_failures_are_503_naming_the_coordinator_not_the_cause() {
    let ports = Ports {
        images: Arc::new(FakeImageSource::new()),
        switcher: Arc::new(FakeSwitcher::new()),
        coordinator: Arc::new(Flaky {
            inner: MemoryCoordinator::new("host-a"),
        }),
        journal: Arc::new(MemoryJournal::new()),
        notifiers: Vec::new(),
    };
    let spec = ServiceSpec::builder("web", image(WEB)).build().unwrap();
    let driver = Driver::new(DriverConfig::new("host-a"), ports, vec![spec]).unwrap();
    let router = admin_router(
        &AdminConfig::default(),
        driver.handle(),
        Metrics::new(),
        None,
    )
    .unwrap();
    for uri in [
        "/api/v1/fleet",
        "/api/v1/history",
        "/api/v1/history?service=web",
    ] {
        let (status, _, body) = send(&router, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert_eq!(body["code"], "coordinator_unavailable", "{uri}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with("coordinator unavailable during "),
            "{uri}: {body}"
        );
        assert!(!body.to_string().contains("2379"), "no detail leaks");
    }
    // The driver is not running, so it is not ready.
    let (status, _, _) = send(
        &router,
        Request::get("/readyz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn deploy_input_errors_name_the_field() {
    let a = admin(Some(ADMIN_TOKEN)).await;
    let cases = [
        (
            json!({"image": "other/repo:latest"}),
            StatusCode::BAD_REQUEST,
            "image: service web tracks",
        ),
        (
            json!({"image": "Bad/Ref"}),
            StatusCode::BAD_REQUEST,
            "image: invalid image reference",
        ),
        (
            json!({"digest": "sha256:short"}),
            StatusCode::BAD_REQUEST,
            "digest: invalid digest",
        ),
        (
            json!({"digest": 5}),
            StatusCode::BAD_REQUEST,
            "digest: expected a string",
        ),
        (
            json!({"image": WEB, "digest": digest(3).to_string()}),
            StatusCode::BAD_REQUEST,
            "body: give image or digest",
        ),
        (
            json!([1]),
            StatusCode::BAD_REQUEST,
            "body: expected a JSON object",
        ),
    ];
    for (body, status, message) in cases {
        let (got, _, answer) = send(&a.router, deploy("web", Some(body.clone()))).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().starts_with(message),
            "{body}: {answer}"
        );
    }
    let text = Request::post("/api/v1/services/web/deploy")
        .header("host", LOOPBACK)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "text/plain")
        .body(Body::from("image=x"))
        .unwrap();
    assert_eq!(
        send(&a.router, text).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let big = json!({"image": "x".repeat(100_000)});
    assert_eq!(
        send(&a.router, deploy("web", Some(big))).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        send(&a.router, deploy("ghost", None)).await.0,
        StatusCode::NOT_FOUND
    );

    // A registry that cannot be reached: 503 naming the image, the underlying error in the
    // log only.
    a.rig.images.fail_next("resolve", 1);
    let (status, _, answer) = send(&a.router, deploy("web", None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["code"], "registry_unreachable");
    assert_eq!(
        answer["error"],
        format!("the registry for {WEB} cannot be reached; the deployer's log has the cause")
    );
    assert!(!answer.to_string().contains("injected"), "{answer}");
    // An untracked tag of the right repository resolves to nothing: 404 naming the image.
    let (status, _, answer) = send(
        &a.router,
        deploy(
            "web",
            Some(json!({"image": "127.0.0.1:5000/demo/app:nope"})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["code"], "image_not_found");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("image 127.0.0.1:5000/demo/app:nope not found"),
        "{answer}"
    );
    assert!(
        a.rig.coordinator_targets().await.is_empty(),
        "failed deploys publish nothing"
    );
    a.rig.stop().await;
}

#[tokio::test]
async fn readiness_follows_the_driver() {
    let a = admin(None).await;
    let request = Request::get("/readyz").body(Body::empty()).unwrap();
    assert_eq!(send(&a.router, request).await.2, json!({"status": "ready"}));
    let openapi = Request::get("/api/v1/openapi.json")
        .body(Body::empty())
        .unwrap();
    let (_, _, doc) = send(&a.router, openapi).await;
    assert_eq!(doc["openapi"], "3.0.3");
    a.rig.stop().await;
}
