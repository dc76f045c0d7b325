//! The webhook router, endpoint by endpoint and error path by error path.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use deployer_core::driver::EventSink;
use deployer_core::ports::ImageEvent;
use deployer_core::{Digest, Timestamp};
use deployer_http::config::{EndpointConfig, WebhookConfig};
use deployer_http::hooks::{Sender, signature};
use deployer_http::metrics::{ScrapeSources, WebhookResult};
use deployer_http::{Metrics, webhook_router};
use serde_json::json;
use tokio::sync::mpsc;

use crate::common::*;

const REGISTRY_V1: &str = "application/vnd.docker.distribution.events.v1+json";
const TRACKED: &[&str] = &[
    "127.0.0.1:45998/demo/app:latest",
    "127.0.0.1:5000/demo/app:latest",
    "svendowideit/testhook:latest",
    "svendowideit/testhook:v1.2",
    "ghcr.io/octo-org/hello_docker:latest",
    "ghcr.io/octo-org/hello_docker:v1.4.0",
    "quay.io/mynamespace/repository:latest",
    "quay.io/mynamespace/repository:v1.0",
    "hub.example.com/ns/debian:latest",
];

struct Hooks {
    router: Router,
    sink: EventSink,
    events: mpsc::Receiver<ImageEvent>,
    metrics: Arc<Metrics>,
}

impl Hooks {
    fn drain(&mut self) -> Vec<ImageEvent> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }

    fn count(&self, sender: Sender, result: WebhookResult) -> u64 {
        self.metrics.webhook_count(sender, result)
    }
}

/// Every endpoint on, each with its secret; the self-hosted ones speak for the registries
/// the fixtures name.
fn config() -> WebhookConfig {
    let mut config = WebhookConfig::default();
    for sender in Sender::ALL {
        let secret = match sender {
            Sender::DockerHub | Sender::Quay => PATH_TOKEN,
            Sender::GitHub => HMAC_SECRET,
            _ => TOKEN,
        };
        *config.endpoint_mut(sender) = EndpointConfig::with_secret(secret);
    }
    config.registry = config.registry.registries([
        "127.0.0.1:45998",
        "127.0.0.1:5000",
        "r.example.com",
        "reg.example.com",
    ]);
    config.harbor = config.harbor.registries(["hub.example.com"]);
    config
}

fn hooks_with(config: &WebhookConfig, capacity: usize) -> Hooks {
    let (sink, events) = EventSink::new(TRACKED.iter().map(|t| image(t)), capacity);
    let metrics = Metrics::new();
    let router = webhook_router(config, sink.clone(), metrics.clone()).unwrap();
    Hooks {
        router,
        sink,
        events,
        metrics,
    }
}

fn hooks() -> Hooks {
    hooks_with(&config(), 64)
}

fn registry_post(body: impl Into<Body>) -> axum::http::Request<Body> {
    post(
        "/hooks/registry",
        &[
            ("content-type", REGISTRY_V1),
            ("authorization", &format!("Bearer {TOKEN}")),
        ],
        body,
    )
}

fn github_post(event: &str, delivery: &str, body: Vec<u8>) -> axum::http::Request<Body> {
    let sig = signature(HMAC_SECRET.as_bytes(), &body);
    post(
        "/hooks/github",
        &[
            ("content-type", "application/json"),
            ("x-github-event", event),
            ("x-github-delivery", delivery),
            ("x-hub-signature-256", &sig),
        ],
        body,
    )
}

fn json_post(uri: &str, auth: Option<&str>, body: impl Into<Body>) -> axum::http::Request<Body> {
    let mut headers = vec![("content-type", "application/json")];
    let bearer = auth.map(|t| format!("Bearer {t}"));
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    post(uri, &headers, body)
}

#[tokio::test]
async fn the_envelopes_of_one_real_push_yield_exactly_one_build() {
    let mut hooks = hooks();
    for n in 1..=9 {
        let body = fixture(&format!("registry/envelope_{n:02}.json"));
        let (status, _, answer) = send(&hooks.router, registry_post(body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "envelope {n}: {answer}");
    }
    let events = hooks.drain();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event.image, image("127.0.0.1:45998/demo/app:latest"));
    assert_eq!(
        event.digest.as_ref().map(Digest::as_str),
        Some("sha256:eb3ddaa9a0fba0d46a7c0fa98f08ce4911a84c7f16b174fba9eb1c1ec0242de2")
    );
    assert_eq!(event.source.as_str(), "registry");
    assert!(event.event_time.is_some());
    assert!(
        event.delivery_id.is_some(),
        "the registry's event id tells a redelivery from a new push"
    );
    assert_eq!(hooks.count(Sender::Registry, WebhookResult::Accepted), 1);
    assert_eq!(hooks.count(Sender::Registry, WebhookResult::Ignored), 8);
    assert_eq!(hooks.sink.stats().queued, 1);
}

#[tokio::test]
async fn the_registry_sends_v1_v2_or_plain_json_and_nothing_else() {
    let mut hooks = hooks();
    let body = fixture("registry_push_reference.json");
    for (n, content_type) in [
        REGISTRY_V1,
        "application/vnd.docker.distribution.events.v2+json",
        "application/json; charset=utf-8",
        "Application/JSON",
    ]
    .into_iter()
    .enumerate()
    {
        let request = post(
            "/hooks/registry",
            &[
                ("content-type", content_type),
                ("authorization", &format!("Bearer {TOKEN}")),
            ],
            another_event(&body, n),
        );
        assert_eq!(
            send(&hooks.router, request).await.0,
            StatusCode::ACCEPTED,
            "{content_type}"
        );
    }
    assert_eq!(hooks.drain().len(), 4);
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut headers = vec![("authorization", format!("Bearer {TOKEN}"))];
        if let Some(t) = content_type {
            headers.push(("content-type", t.to_owned()));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, answer) = send(
            &hooks.router,
            post("/hooks/registry", &headers, body.clone()),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .starts_with("content-type: expected"),
            "{answer}"
        );
    }
    assert!(hooks.drain().is_empty());
    assert_eq!(
        hooks.count(Sender::Registry, WebhookResult::UnsupportedMediaType),
        3
    );
}

/// Path, headers, body.
type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>);

#[tokio::test]
async fn failed_authentication_is_401_changes_nothing_and_leaks_nothing() {
    let mut hooks = hooks();
    let good = fixture("registry_push_reference.json");
    let cases: Vec<Case<'_>> = vec![
        (
            "/hooks/registry",
            vec![("content-type", REGISTRY_V1.into())],
            good.clone(),
        ),
        (
            "/hooks/registry",
            vec![
                ("content-type", REGISTRY_V1.into()),
                ("authorization", "Bearer wrong-token-0123456789".into()),
            ],
            good.clone(),
        ),
        // Authentication comes before parsing: garbage with a bad token is 401, not 400.
        (
            "/hooks/registry",
            vec![
                ("content-type", REGISTRY_V1.into()),
                ("authorization", "Bearer nope".into()),
            ],
            b"{not json".to_vec(),
        ),
        (
            "/hooks/generic",
            vec![("content-type", "application/json".into())],
            fixture("generic.json"),
        ),
        (
            "/hooks/harbor",
            vec![
                ("content-type", "application/json".into()),
                ("authorization", format!("Bearer {PATH_TOKEN}")),
            ],
            fixture("harbor_push_artifact.json"),
        ),
        (
            "/hooks/dockerhub",
            vec![("content-type", "application/json".into())],
            fixture("dockerhub_push.json"),
        ),
        (
            "/hooks/dockerhub/wrong-token-0123456789abc",
            vec![("content-type", "application/json".into())],
            fixture("dockerhub_push.json"),
        ),
        (
            "/hooks/quay?token=nope",
            vec![("content-type", "application/json".into())],
            fixture("quay_repo_push.json"),
        ),
        (
            "/hooks/github",
            vec![
                ("content-type", "application/json".into()),
                ("x-github-event", "package".into()),
            ],
            fixture("github_package_published.json"),
        ),
        (
            "/hooks/github",
            vec![
                ("content-type", "application/json".into()),
                ("x-github-event", "package".into()),
                (
                    "x-hub-signature-256",
                    signature(b"another secret", &fixture("github_package_published.json")),
                ),
            ],
            fixture("github_package_published.json"),
        ),
    ];
    for (uri, headers, body) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, response_headers, answer) =
            send(&hooks.router, post(uri, &headers, body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(answer, json!({"error": "authentication required"}), "{uri}");
        assert_eq!(response_headers["www-authenticate"], "Bearer");
    }
    assert!(hooks.drain().is_empty());
    let stats = hooks.sink.stats();
    assert_eq!((stats.queued, stats.ignored, stats.duplicates), (0, 0, 0));
    assert_eq!(
        hooks.count(Sender::Registry, WebhookResult::Unauthorized),
        3
    );
    assert_eq!(hooks.count(Sender::GitHub, WebhookResult::Unauthorized), 2);
}

#[tokio::test]
async fn docker_hub_takes_its_token_in_the_path_or_the_query() {
    let mut hooks = hooks();
    let body = fixture("dockerhub_push.json");
    for uri in [
        format!("/hooks/dockerhub/{PATH_TOKEN}"),
        format!("/hooks/dockerhub?token={PATH_TOKEN}"),
    ] {
        let (status, _, answer) = send(&hooks.router, json_post(&uri, None, body.clone())).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(answer["events"][0]["result"], "queued", "{answer}");
        assert_eq!(
            answer["events"][0]["image"],
            "docker.io/svendowideit/testhook:latest"
        );
    }
    let events = hooks.drain();
    assert_eq!(events.len(), 2);
    let event = &events[0];
    assert_eq!(
        event.digest, None,
        "Docker Hub sends no digest: the ingest worker resolves it"
    );
    assert_eq!(
        event.event_time,
        Some(Timestamp::from_millis(1_417_566_161_000))
    );
    assert_eq!(
        event.callback_url.as_deref(),
        Some(
            "https://registry.hub.docker.com/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/"
        )
    );
    let uri = format!("/hooks/dockerhub/{PATH_TOKEN}");
    send(
        &hooks.router,
        json_post(&uri, None, fixture("dockerhub_push_float_time.json")),
    )
    .await;
    let event = hooks.drain().pop().unwrap();
    assert_eq!(event.image, image("svendowideit/testhook:v1.2"));
    assert_eq!(
        event.event_time,
        Some(Timestamp::from_millis(1_417_566_161_500))
    );
}

#[tokio::test]
async fn github_is_verified_deduplicated_and_skips_what_is_not_a_tagged_container_push() {
    let mut hooks = hooks();
    let body = fixture("github_package_published.json");
    let (status, _, answer) =
        send(&hooks.router, github_post("package", "d-1", body.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["events"][0]["result"], "queued");
    let (status, _, answer) =
        send(&hooks.router, github_post("package", "d-1", body.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer["events"][0]["result"], "duplicate");
    let events = hooks.drain();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].image,
        image("ghcr.io/octo-org/hello_docker:latest")
    );
    assert_eq!(events[0].digest.as_ref().map(Digest::as_str), Some(DIGEST));
    assert_eq!(events[0].delivery_id.as_deref(), Some("d-1"));
    assert!(events[0].event_time.is_some());
    assert_eq!(hooks.sink.stats().duplicates, 1);
    assert_eq!(hooks.count(Sender::GitHub, WebhookResult::Duplicate), 1);

    let body = fixture("github_registry_package_updated.json");
    let (status, _, _) = send(&hooks.router, github_post("registry_package", "d-2", body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        hooks.drain()[0].image,
        image("ghcr.io/octo-org/hello_docker:v1.4.0")
    );

    for (event, name) in [
        ("ping", "github_ping.json"),
        ("package", "github_package_digest_only.json"),
        ("package", "github_package_npm.json"),
        ("push", "github_package_published.json"),
    ] {
        let (status, _, answer) =
            send(&hooks.router, github_post(event, "d-x", fixture(name))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}");
        assert_eq!(answer["events"], json!([]), "{name}");
    }
    assert!(hooks.drain().is_empty());
}

#[tokio::test]
async fn quay_harbor_and_generic_yield_their_builds() {
    let mut hooks = hooks();
    let quay = format!("/hooks/quay/{PATH_TOKEN}");
    assert_eq!(
        send(
            &hooks.router,
            json_post(&quay, None, fixture("quay_repo_push.json"))
        )
        .await
        .0,
        StatusCode::ACCEPTED
    );
    let tags: Vec<String> = hooks.drain().iter().map(|e| e.image.to_string()).collect();
    assert_eq!(
        tags,
        [
            "quay.io/mynamespace/repository:latest",
            "quay.io/mynamespace/repository:v1.0"
        ]
    );
    send(
        &hooks.router,
        json_post(&quay, None, fixture("quay_repo_push_legacy.json")),
    )
    .await;
    assert_eq!(
        hooks.drain()[0].image,
        image("quay.io/mynamespace/repository:latest")
    );

    // Harbor sends its "auth header" setting verbatim: a bare token works as well as Bearer.
    let bare = post(
        "/hooks/harbor",
        &[
            ("content-type", "application/json"),
            ("authorization", TOKEN),
        ],
        fixture("harbor_push_artifact.json"),
    );
    assert_eq!(send(&hooks.router, bare).await.0, StatusCode::ACCEPTED);
    let event = hooks.drain().pop().unwrap();
    assert_eq!(event.image, image("hub.example.com/ns/debian:latest"));
    assert_eq!(event.digest.as_ref().map(Digest::as_str), Some(DIGEST));
    assert_eq!(
        event.event_time,
        Some(Timestamp::from_millis(1_586_922_308_000))
    );
    let pull = json_post(
        "/hooks/harbor",
        Some(TOKEN),
        fixture("harbor_pull_artifact.json"),
    );
    assert_eq!(send(&hooks.router, pull).await.0, StatusCode::ACCEPTED);
    assert!(hooks.drain().is_empty());

    for (name, digest) in [
        ("generic.json", None),
        ("generic_digest.json", Some(DIGEST)),
    ] {
        let request = json_post("/hooks/generic", Some(TOKEN), fixture(name));
        assert_eq!(send(&hooks.router, request).await.0, StatusCode::ACCEPTED);
        let event = hooks.drain().pop().unwrap();
        assert_eq!(event.image, image("127.0.0.1:5000/demo/app:latest"));
        assert_eq!(event.digest.as_ref().map(Digest::as_str), digest);
        assert_eq!(event.source.as_str(), "generic");
    }
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field() {
    let mut hooks = hooks();
    let dockerhub = format!("/hooks/dockerhub/{PATH_TOKEN}");
    let cases: Vec<(String, Option<&str>, Vec<u8>, &str)> = vec![
        ("/hooks/generic".into(), Some(TOKEN), b"{\"image\": \"demo/app\", \"digest\": \"sha256:nope\"}".to_vec(), "digest: invalid digest \"sha256:nope\""),
        ("/hooks/generic".into(), Some(TOKEN), b"{\"image\": \"Demo/App\"}".to_vec(), "image: invalid image reference"),
        ("/hooks/generic".into(), Some(TOKEN), b"{\"image\": 5}".to_vec(), "image: expected a string"),
        ("/hooks/generic".into(), Some(TOKEN), b"{}".to_vec(), "image: missing"),
        ("/hooks/generic".into(), Some(TOKEN), b"[1, 2]".to_vec(), "body: expected a JSON object"),
        ("/hooks/generic".into(), Some(TOKEN), b"{\"image\": ".to_vec(), "body: invalid JSON"),
        ("/hooks/generic".into(), Some(TOKEN), b"".to_vec(), "body: invalid JSON"),
        (dockerhub.clone(), None, br#"{"push_data":{"tag":"bad tag"},"repository":{"repo_name":"a/b"}}"#.to_vec(), "push_data.tag: invalid image reference"),
        (dockerhub.clone(), None, br#"{"push_data":{},"repository":{"repo_name":"a/b"}}"#.to_vec(), "push_data.tag: missing"),
        (dockerhub, None, br#"{"push_data":{"tag":"v1"},"repository":{"repo_name":"evil.example.com/a"}}"#.to_vec(), "repository.repo_name: \"evil.example.com/a\" is not a Docker Hub repository"),
        ("/hooks/registry".into(), Some(TOKEN),
            br#"{"events":[{"action":"pull"},{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","tag":"v1","repository":"demo/app","digest":"md5:0"},"request":{"host":"r.example.com"}}]}"#.to_vec(),
            "events[1].target.digest: invalid digest"),
        ("/hooks/registry".into(), Some(TOKEN),
            br#"{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","tag":"v1","repository":"demo/app","digest":"sha256:74f9ca9aa780491d0401ce76b5c1c41b3109741abdbf06ccc096ebd5fbd5fa0f"},"request":{"host":"bad host"}}]}"#.to_vec(),
            "events[0].request.host: \"bad host\" is not a registry host"),
        ("/hooks/registry".into(), Some(TOKEN), br#"{"events": {}}"#.to_vec(), "events: expected an array"),
    ];
    for (uri, token, body, expected) in cases {
        let content_type = if uri.ends_with("registry") {
            REGISTRY_V1
        } else {
            "application/json"
        };
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", content_type)];
        if let Some(b) = &bearer {
            headers.push(("authorization", b.as_str()));
        }
        let (status, _, answer) = send(&hooks.router, post(&uri, &headers, body)).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{uri} {expected}: {answer}"
        );
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(expected),
            "{uri}: {message:?} should start with {expected:?}"
        );
    }
    assert!(hooks.drain().is_empty());
    assert_eq!(hooks.count(Sender::Generic, WebhookResult::BadRequest), 7);
}

#[tokio::test]
async fn untracked_repositories_are_202_and_counted_as_ignored() {
    let mut hooks = hooks();
    let body = json!({"image": "demo/untracked:latest"}).to_string();
    let (status, _, answer) = send(
        &hooks.router,
        json_post("/hooks/generic", Some(TOKEN), body),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer["events"][0]["result"], "ignored");
    assert!(hooks.drain().is_empty());
    assert_eq!(hooks.sink.stats().ignored, 1);
    assert_eq!(hooks.count(Sender::Generic, WebhookResult::Ignored), 1);
    let text = hooks.metrics.render(ScrapeSources {
        sink: Some(hooks.sink.clone()),
        ..ScrapeSources::default()
    });
    assert!(
        text.contains(r#"deployer_webhooks_total{source="generic",result="ignored"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"deployer_ingest_events_total{result="ignored"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_whether_announced_or_not() {
    let config = WebhookConfig {
        body_limit: 1024,
        ..config()
    };
    let mut hooks = hooks_with(&config, 8);
    let big = format!(
        "{{\"image\": \"demo/app\", \"pad\": \"{}\"}}",
        "x".repeat(4096)
    );
    let (status, _, answer) = send(
        &hooks.router,
        json_post("/hooks/generic", Some(TOKEN), big.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("body: larger than the limit of 1024 bytes")
    );
    // Without Content-Length (chunked): counted while reading.
    let chunks = futures_stream(big.as_bytes());
    let request = post(
        "/hooks/generic",
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {TOKEN}")),
        ],
        Body::from_stream(chunks),
    );
    assert!(request.headers().get("content-length").is_none());
    assert_eq!(
        send(&hooks.router, request).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert!(hooks.drain().is_empty());
    assert_eq!(hooks.count(Sender::Generic, WebhookResult::TooLarge), 2);
}

/// The reference registry envelope as another event (the registry gives every event its own
/// id; the same id again is a redelivery).
fn another_event(body: &[u8], n: usize) -> Vec<u8> {
    let text = std::str::from_utf8(body).expect("fixture is UTF-8");
    text.replace(
        "89df7a2b-5ba4-4a5b-9d4c-0e7a0c6f1c1e",
        &format!("89df7a2b-5ba4-4a5b-9d4c-{n:012}"),
    )
    .into_bytes()
}

/// A body stream of 256-byte chunks.
fn futures_stream(
    bytes: &[u8],
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + use<> {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(256).map(|c| Ok(c.to_vec())).collect();
    futures_util::stream::iter(chunks)
}

#[tokio::test]
async fn a_full_queue_is_503_with_retry_after_and_a_stopped_driver_503_without() {
    let mut hooks = hooks_with(&config(), 1);
    let body = fixture("registry_push_reference.json");
    assert_eq!(
        send(&hooks.router, registry_post(body.clone())).await.0,
        StatusCode::ACCEPTED
    );
    let (status, headers, answer) =
        send(&hooks.router, registry_post(another_event(&body, 1))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "5");
    assert_eq!(answer["error"], "event queue is full; retry later");
    assert_eq!(hooks.count(Sender::Registry, WebhookResult::Busy), 1);

    // A GitHub delivery refused as busy is queued when GitHub redelivers it.
    let gh = fixture("github_package_published.json");
    assert_eq!(
        send(&hooks.router, github_post("package", "d-9", gh.clone()))
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    hooks.drain();
    let (status, _, answer) = send(&hooks.router, github_post("package", "d-9", gh.clone())).await;
    assert_eq!(
        (status, answer["events"][0]["result"].as_str()),
        (StatusCode::ACCEPTED, Some("queued"))
    );
    hooks.drain();
    let (_, _, answer) = send(&hooks.router, github_post("package", "d-9", gh)).await;
    assert_eq!(answer["events"][0]["result"], "duplicate");

    drop(hooks.events);
    let (status, headers, answer) =
        send(&hooks.router, registry_post(another_event(&body, 2))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.get("retry-after").is_none());
    assert_eq!(answer["error"], "deployer is shutting down");
    assert_eq!(
        hooks
            .metrics
            .webhook_count(Sender::Registry, WebhookResult::Unavailable),
        1
    );
}

#[tokio::test]
async fn endpoints_without_a_secret_are_off_unless_explicitly_insecure() {
    let mut config = WebhookConfig::default();
    *config.endpoint_mut(Sender::Generic) = EndpointConfig::insecure();
    let mut hooks = hooks_with(&config, 8);
    let registry = send(
        &hooks.router,
        registry_post(fixture("registry_push_reference.json")),
    )
    .await;
    let unknown = send(&hooks.router, json_post("/hooks/nonsense", None, "{}")).await;
    assert_eq!(
        (registry.0, &registry.2),
        (StatusCode::NOT_FOUND, &json!({"error": "not found"}))
    );
    assert_eq!(
        (unknown.0, &unknown.2),
        (registry.0, &registry.2),
        "an off endpoint looks like no endpoint"
    );
    assert_eq!(hooks.count(Sender::Registry, WebhookResult::NotFound), 1);
    let open = send(
        &hooks.router,
        json_post("/hooks/generic", None, fixture("generic.json")),
    )
    .await;
    assert_eq!(open.0, StatusCode::ACCEPTED);
    assert_eq!(hooks.drain().len(), 1);
}

#[tokio::test]
async fn the_prefix_and_registry_name_are_configurable_and_only_post_is_served() {
    let mut config = config();
    config.path_prefix = "/deployer/webhook".into();
    *config.endpoint_mut(Sender::Registry) =
        EndpointConfig::with_secret(TOKEN).registry("127.0.0.1:5000");
    let mut hooks = hooks_with(&config, 8);
    let body = fixture("registry/envelope_05.json");
    let request = post(
        "/deployer/webhook/registry",
        &[
            ("content-type", REGISTRY_V1),
            ("authorization", &format!("Bearer {TOKEN}")),
        ],
        body.clone(),
    );
    assert_eq!(send(&hooks.router, request).await.0, StatusCode::ACCEPTED);
    assert_eq!(
        hooks.drain()[0].image,
        image("127.0.0.1:5000/demo/app:latest"),
        "pushed via 127.0.0.1:45998, tracked as 127.0.0.1:5000"
    );
    assert_eq!(
        send(&hooks.router, registry_post(body)).await.0,
        StatusCode::NOT_FOUND
    );
    let get = axum::http::Request::get("/deployer/webhook/registry")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&hooks.router, get).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test(start_paused = true)]
async fn a_sender_that_never_finishes_its_body_gets_408() {
    let mut hooks = hooks();
    let stalled = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
    let request = post(
        "/hooks/generic",
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {TOKEN}")),
        ],
        Body::from_stream(stalled),
    );
    let (status, _, answer) = send(&hooks.router, request).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(answer["error"], "body: not received in time");
    assert_eq!(hooks.count(Sender::Generic, WebhookResult::Timeout), 1);
    assert!(hooks.drain().is_empty());
}

#[tokio::test]
async fn a_path_token_that_does_not_decode_is_401() {
    let hooks = hooks();
    let request = json_post(
        "/hooks/dockerhub/%FF%FE",
        None,
        fixture("dockerhub_push.json"),
    );
    assert_eq!(
        send(&hooks.router, request).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_request_with_more_entries_than_the_limit_is_refused_whole_before_queuing() {
    // With the default queue of 1,024, 1,025 Harbor resources once queued about 1,024 events
    // and then answered 503, so the sender retried the whole request forever.
    let mut hooks = hooks_with(&config(), 1024);
    let harbor = |n: usize| {
        let resource = json!({"digest": DIGEST, "tag": "latest",
                              "resource_url": "hub.example.com/ns/debian:latest"});
        let body = json!({"type": "PUSH_ARTIFACT", "occur_at": 1586922308,
                          "event_data": {"resources": vec![resource; n],
                                         "repository": {"repo_full_name": "ns/debian"}}});
        json_post("/hooks/harbor", Some(TOKEN), body.to_string())
    };
    let (status, _, answer) = send(&hooks.router, harbor(1025)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(
        answer["error"],
        "event_data.resources: 1025 entries; at most 100 are taken in one request"
    );
    assert!(hooks.drain().is_empty(), "nothing was queued");
    let (status, _, answer) = send(&hooks.router, harbor(100)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert!(!hooks.drain().is_empty(), "100 entries are taken");

    let quay = format!("/hooks/quay/{PATH_TOKEN}");
    let tags: Vec<String> = (0..101).map(|n| format!("v{n}")).collect();
    let list = json!({"repository": "mynamespace/repository", "updated_tags": tags});
    let (status, _, answer) = send(&hooks.router, json_post(&quay, None, list.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(
        answer["error"],
        "updated_tags: 101 entries; at most 100 are taken in one request"
    );
    let map: serde_json::Map<String, serde_json::Value> = tags
        .iter()
        .map(|t| (t.clone(), json!("0123abcd")))
        .collect();
    let legacy = json!({"repository": "mynamespace/repository", "updated_tags": map});
    let (status, _, answer) = send(&hooks.router, json_post(&quay, None, legacy.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(hooks.drain().is_empty(), "nothing was queued");
}
