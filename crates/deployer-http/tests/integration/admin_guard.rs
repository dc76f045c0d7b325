//! The admin API refuses what a web page in a browser on the host could send it: cross-site
//! posts (text, forms, foreign origins) and requests under a rebound name.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use deployer_core::testing::digest;
use deployer_http::config::AdminConfig;
use deployer_http::{Metrics, admin_router, serve};
use serde_json::{Value, json};

use crate::common::*;

const WEB: &str = "127.0.0.1:5000/demo/app:latest";
const LISTEN: &str = "127.0.0.1:4501";
const ADMIN_TOKEN: &str = "admin-token-0123456789";

async fn rig() -> Rig {
    let rig = Rig::start(&[("web", WEB)], Vec::new(), Vec::new()).await;
    rig.images.set_tag(&image(WEB), digest(1));
    rig
}

fn router(rig: &Rig, token: Option<&str>) -> Router {
    let config = AdminConfig {
        token: token.map(Into::into),
        listen: Some(LISTEN.parse().unwrap()),
        hosts: vec!["deploy.internal".to_owned()],
        ..AdminConfig::default()
    };
    admin_router(&config, rig.handle.clone(), Metrics::new(), None).unwrap()
}

fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

async fn refused(router: &Router, request: Request<Body>, status: StatusCode, code: &str) -> Value {
    let (got, _, answer) = send(router, request).await;
    assert_eq!(
        (got, answer["code"].as_str()),
        (status, Some(code)),
        "{answer}"
    );
    answer
}

async fn nothing_published(rig: &Rig) {
    use deployer_core::ports::Coordinator;
    let targets = rig.coordinator.snapshot().await.unwrap().targets;
    assert!(
        targets.is_empty(),
        "a refused request changes nothing: {targets:?}"
    );
}

#[tokio::test]
async fn cross_site_posts_are_refused_without_a_token() {
    let rig = rig().await;
    let router = router(&rig, None);
    let rollback = "/api/v1/services/web/rollback";
    let deploy = "/api/v1/services/web/deploy";
    let host = ("host", LISTEN);

    // What `fetch(url, {method: "POST", mode: "no-cors", body: "x"})` sends: no preflight.
    let page = ("origin", "http://attacker.example");
    let text = ("content-type", "text/plain;charset=UTF-8");
    let answer = refused(
        &router,
        request("POST", rollback, &[host, page, text], "x"),
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
    )
    .await;
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("attacker.example"),
        "{answer}"
    );
    // Without the Origin (an older browser, a privacy extension) the body type still refuses.
    let answer = refused(
        &router,
        request("POST", rollback, &[host, text], "x"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    assert_eq!(answer["error"], "content-type: expected application/json");
    for form in [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=----x",
    ] {
        refused(
            &router,
            request("POST", deploy, &[host, ("content-type", form)], "image=x"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
    }
    // No body and no type is refused too: a page can send exactly that.
    refused(
        &router,
        request("POST", deploy, &[host], ""),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    // A foreign origin is refused even when it manages to send JSON.
    let json = ("content-type", "application/json");
    refused(
        &router,
        request("POST", deploy, &[host, json, page], "{}"),
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
    )
    .await;
    refused(
        &router,
        request("POST", deploy, &[host, json, ("origin", "null")], "{}"),
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
    )
    .await;
    // HTTP/1.0 without Host.
    refused(
        &router,
        request("POST", deploy, &[json], "{}"),
        StatusCode::FORBIDDEN,
        "host_not_allowed",
    )
    .await;
    nothing_published(&rig).await;

    // The admin API's own origin, and JSON: accepted.
    let own = ("origin", "http://127.0.0.1:4501");
    let (status, _, answer) = send(&router, request("POST", deploy, &[host, json, own], "")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    rig.stop().await;
}

#[tokio::test]
async fn a_rebound_name_cannot_read_the_api_but_the_configured_one_can() {
    let rig = rig().await;
    let router = router(&rig, None);
    for uri in ["/api/v1/services", "/metrics", "/api/v1/openapi.json"] {
        let answer = refused(
            &router,
            request("GET", uri, &[("host", "attacker.example")], ""),
            StatusCode::FORBIDDEN,
            "host_not_allowed",
        )
        .await;
        assert!(
            answer["error"].as_str().unwrap().contains("admin.hosts"),
            "{answer}"
        );
        // The right name on the wrong port is another origin too.
        refused(
            &router,
            request("GET", uri, &[("host", "127.0.0.1:8080")], ""),
            StatusCode::FORBIDDEN,
            "host_not_allowed",
        )
        .await;
    }
    for host in [
        LISTEN,
        "localhost:4501",
        "deploy.internal",
        "deploy.internal:4501",
    ] {
        let (status, _, answer) = send(
            &router,
            request("GET", "/api/v1/services", &[("host", host)], ""),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{host}: {answer}");
        assert_eq!(answer["services"][0]["name"], "web");
    }
    // Probes come under any name and learn nothing.
    for uri in ["/healthz", "/readyz"] {
        let (status, _, _) =
            send(&router, request("GET", uri, &[("host", "lb.example")], "")).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
    // Under the configured name, from a page served under it: a deploy goes through.
    let headers = [
        ("host", "deploy.internal"),
        ("origin", "https://deploy.internal"),
        ("content-type", "application/json"),
    ];
    let (status, _, answer) = send(
        &router,
        request("POST", "/api/v1/services/web/deploy", &headers, "{}"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    rig.stop().await;
}

#[tokio::test]
async fn with_a_token_the_origin_is_still_checked() {
    let rig = rig().await;
    let router = router(&rig, Some(ADMIN_TOKEN));
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let headers = [
        ("host", LISTEN),
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
        ("origin", "http://attacker.example"),
    ];
    refused(
        &router,
        request("POST", "/api/v1/services/web/deploy", &headers, "{}"),
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
    )
    .await;
    nothing_published(&rig).await;
    let (status, _, answer) = send(
        &router,
        request("POST", "/api/v1/services/web/deploy", &headers[..3], "{}"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    rig.stop().await;
}

#[tokio::test]
async fn a_rollback_takes_no_fields() {
    let rig = rig().await;
    let router = router(&rig, None);
    let headers = [("host", LISTEN), ("content-type", "application/json")];
    let rollback = "/api/v1/services/web/rollback";
    for (body, error) in [
        (
            r#"{"to": "v1"}"#,
            "to: unknown field; a rollback takes none",
        ),
        ("[]", "body: expected a JSON object"),
    ] {
        let (status, _, answer) = send(&router, request("POST", rollback, &headers, body)).await;
        assert_eq!(
            (status, &answer["error"]),
            (StatusCode::BAD_REQUEST, &json!(error))
        );
    }
    rig.stop().await;
}

/// What the CLI does, over TCP: reqwest names the listen address in `Host` and sends JSON.
#[tokio::test]
async fn a_client_over_tcp_reaches_the_listen_address_and_nothing_else() {
    let rig = rig().await;
    let listener = deployer_http::serve::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let config = AdminConfig {
        listen: Some(addr),
        ..AdminConfig::default()
    };
    let router = admin_router(&config, rig.handle.clone(), Metrics::new(), None).unwrap();
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
    let deploy = client
        .post(format!("http://{addr}/api/v1/services/web/deploy"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(deploy.status(), 202);
    let local = client
        .get(format!("http://localhost:{}/api/v1/services", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(local.status(), 200);
    let rebound = client
        .get(format!("http://{addr}/api/v1/services"))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    stop.send(()).unwrap();
    within(Duration::from_secs(10), "serve after shutdown", server)
        .await
        .unwrap()
        .unwrap();
    rig.stop().await;
}
