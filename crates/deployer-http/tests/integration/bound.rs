//! One sender's secret deploys only images of the registries its endpoint speaks for.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use deployer_core::driver::EventSink;
use deployer_core::ports::ImageEvent;
use deployer_http::config::{EndpointConfig, WebhookConfig};
use deployer_http::hooks::{Sender, signature};
use deployer_http::metrics::{ScrapeSources, WebhookResult};
use deployer_http::{Metrics, webhook_router};
use tokio::sync::mpsc;

use crate::common::*;

const REGISTRY_V1: &str = "application/vnd.docker.distribution.events.v1+json";
const PRIVATE: &str = "registry.example.com/octo-org/hello_docker:latest";
const GHCR: &str = "ghcr.io/octo-org/hello_docker:latest";
const LOCAL: &str = "127.0.0.1:5000/demo/app:latest";
const RENAMED: &str = "registry.example.com:5000/demo/app:latest";

struct Hooks {
    router: Router,
    sink: EventSink,
    events: mpsc::Receiver<ImageEvent>,
    metrics: Arc<Metrics>,
}

impl Hooks {
    fn new(config: &WebhookConfig) -> Self {
        let tracked = [PRIVATE, GHCR, LOCAL, RENAMED].map(image);
        let (sink, events) = EventSink::new(tracked, 64);
        let metrics = Metrics::new();
        let router = webhook_router(config, sink.clone(), metrics.clone()).unwrap();
        Self {
            router,
            sink,
            events,
            metrics,
        }
    }

    fn queued(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.events.try_recv().ok())
            .map(|e| e.image.to_string())
            .collect()
    }
}

fn github(config: EndpointConfig) -> WebhookConfig {
    WebhookConfig {
        github: config,
        ..WebhookConfig::default()
    }
}

/// GitHub's published-package fixture, naming `image` instead of GHCR's.
fn github_post(image: &str, delivery: &str) -> axum::http::Request<axum::body::Body> {
    let body = String::from_utf8(fixture("github_package_published.json"))
        .unwrap()
        .replace(
            "\"package_url\":\"ghcr.io/octo-org/hello_docker:latest\"",
            &format!("\"package_url\":\"{image}\""),
        );
    assert!(body.contains(image), "the fixture names its package_url");
    let sig = signature(HMAC_SECRET.as_bytes(), body.as_bytes());
    post(
        "/hooks/github",
        &[
            ("content-type", "application/json"),
            ("x-github-event", "package"),
            ("x-github-delivery", delivery),
            ("x-hub-signature-256", &sig),
        ],
        body,
    )
}

#[tokio::test]
async fn a_github_secret_cannot_deploy_an_image_of_a_private_registry() {
    let mut hooks = Hooks::new(&github(EndpointConfig::with_secret(HMAC_SECRET)));
    let (status, _, answer) = send(&hooks.router, github_post(PRIVATE, "d-1")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["code"], "foreign_registry");
    let message = answer["error"].as_str().unwrap();
    assert!(
        message.contains("registry registry.example.com") && message.contains("github endpoint"),
        "{message}"
    );
    assert!(
        hooks.queued().is_empty(),
        "nothing is queued, so nothing deploys"
    );
    assert_eq!(hooks.sink.stats().queued, 0);
    assert_eq!(
        hooks
            .metrics
            .webhook_count(Sender::GitHub, WebhookResult::ForeignRegistry),
        1
    );
    let text = hooks.metrics.render(ScrapeSources::default());
    assert!(
        text.contains(r#"deployer_webhooks_total{source="github",result="foreign_registry"} 1"#),
        "{text}"
    );

    let (status, _, answer) = send(&hooks.router, github_post(GHCR, "d-2")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(hooks.queued(), [GHCR]);
}

#[tokio::test]
async fn a_github_endpoint_listed_for_a_registry_speaks_for_it() {
    let endpoint =
        EndpointConfig::with_secret(HMAC_SECRET).registries(["ghcr.io", "registry.example.com"]);
    let mut hooks = Hooks::new(&github(endpoint));
    for (image, delivery) in [(PRIVATE, "d-1"), (GHCR, "d-2")] {
        let (status, _, answer) = send(&hooks.router, github_post(image, delivery)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{image}: {answer}");
    }
    assert_eq!(hooks.queued(), [PRIVATE, GHCR]);
}

fn registry_post(host: &str) -> axum::http::Request<axum::body::Body> {
    let body = String::from_utf8(fixture("registry_push_reference.json"))
        .unwrap()
        .replace(
            "\"host\":\"127.0.0.1:5000\"",
            &format!("\"host\":\"{host}\""),
        );
    post(
        "/hooks/registry",
        &[
            ("content-type", REGISTRY_V1),
            ("authorization", &format!("Bearer {TOKEN}")),
        ],
        body,
    )
}

fn registry(config: EndpointConfig) -> WebhookConfig {
    WebhookConfig {
        registry: config,
        ..WebhookConfig::default()
    }
}

#[tokio::test]
async fn registry_notifications_speak_for_the_configured_host_only() {
    let listed = EndpointConfig::with_secret(TOKEN).registries(["registry.example.com:5000"]);
    let mut hooks = Hooks::new(&registry(listed));
    let (status, _, answer) = send(&hooks.router, registry_post("registry.example.com:5000")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(hooks.queued(), [RENAMED]);
    // The same token naming another tracked registry's host.
    let (status, _, answer) = send(&hooks.router, registry_post("127.0.0.1:5000")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["code"], "foreign_registry");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("registry 127.0.0.1:5000, and the registry endpoint speaks for registry.example.com:5000"),
        "{answer}"
    );
    assert!(hooks.queued().is_empty());
    assert_eq!(
        hooks
            .metrics
            .webhook_count(Sender::Registry, WebhookResult::ForeignRegistry),
        1
    );

    // With the name override, every image gets the configured host, whatever the pusher used.
    let renamed = EndpointConfig::with_secret(TOKEN).registry("registry.example.com:5000");
    let mut hooks = Hooks::new(&registry(renamed));
    let (status, _, answer) = send(&hooks.router, registry_post("localhost:5000")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(hooks.queued(), [RENAMED]);

    // Configured with neither, it speaks for no registry at all.
    let mut hooks = Hooks::new(&registry(EndpointConfig::with_secret(TOKEN)));
    let (status, _, answer) = send(&hooks.router, registry_post("127.0.0.1:5000")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(hooks.queued().is_empty());
}

#[tokio::test]
async fn the_generic_endpoint_names_any_image_unless_bound() {
    let generic = |endpoint| WebhookConfig {
        generic: endpoint,
        ..WebhookConfig::default()
    };
    let request = || {
        post(
            "/hooks/generic",
            &[
                ("content-type", "application/json"),
                ("authorization", &format!("Bearer {TOKEN}")),
            ],
            format!("{{\"image\": \"{PRIVATE}\"}}"),
        )
    };
    let mut hooks = Hooks::new(&generic(EndpointConfig::with_secret(TOKEN)));
    assert_eq!(send(&hooks.router, request()).await.0, StatusCode::ACCEPTED);
    assert_eq!(hooks.queued(), [PRIVATE]);
    let bound = EndpointConfig::with_secret(TOKEN).registries(["ghcr.io"]);
    let mut hooks = Hooks::new(&generic(bound));
    assert_eq!(
        send(&hooks.router, request()).await.0,
        StatusCode::FORBIDDEN
    );
    assert!(hooks.queued().is_empty());
}
