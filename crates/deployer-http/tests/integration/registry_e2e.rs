//! End to end with a real Debian `docker-registry` whose notifications point at our webhook
//! endpoint (with `Authorization: Bearer`): an image pushed through the Engine API yields
//! exactly one target.

use std::sync::Arc;
use std::time::Duration;

use deployer_core::ports::Coordinator;
use deployer_http::config::{EndpointConfig, WebhookConfig};
use deployer_http::hooks::Sender;
use deployer_http::metrics::WebhookResult;
use deployer_http::{Metrics, WebhookTrigger};
use deployer_testkit::images::{self, App, ImageSpec};
use deployer_testkit::registry::{Registry, RegistryOptions};
use deployer_testkit::sweep::Sweep;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_push_through_a_real_registry_yields_one_target() {
    let sweep = Sweep::new("http-registry-e2e");
    let metrics = Metrics::new();
    // The endpoint must speak for the registry's host, known once it runs, and the registry
    // must know the endpoint's URL before: the port is reserved, then bound again.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let hook = format!("http://{addr}/hooks/registry");
    let registry = Registry::start(RegistryOptions {
        notify_url: Some(hook),
        notify_token: Some(TOKEN.to_owned()),
        ..RegistryOptions::default()
    })
    .await
    .expect("a real registry (Debian's docker-registry)");
    let host = registry.host();
    let mut config = WebhookConfig::default();
    *config.endpoint_mut(Sender::Registry) =
        EndpointConfig::with_secret(TOKEN).registries([host.clone()]);
    let trigger = WebhookTrigger::bind(addr, config, metrics.clone()).unwrap();
    let (latest, other) = (
        format!("{host}/demo/app:latest"),
        format!("{host}/demo/app:other"),
    );
    let rig = Rig::start(
        &[("web", &latest), ("canary", &other)],
        Vec::new(),
        vec![Arc::new(trigger)],
    )
    .await;

    let docker = images::docker().await;
    let spec = ImageSpec {
        app: App::http("v1"),
        healthcheck: false,
        labels: sweep.labels(),
    };
    let local = sweep.name("deployer-http-e2e");
    within(
        Duration::from_secs(120),
        "building the test image",
        images::build(&docker, &local, &spec),
    )
    .await
    .expect("test image build");
    let pushed = within(
        Duration::from_secs(60),
        "pushing :latest",
        registry.push(&docker, &local, "demo/app", "latest"),
    )
    .await
    .expect("push of :latest");

    let sink = rig.handle.sink();
    let stats = sink.clone();
    eventually("the push's target", Duration::from_secs(30), move || {
        stats.stats().published == 1
    })
    .await;
    // The registry delivers one endpoint's envelopes in order: once the manifest push of a
    // second tag has arrived, every envelope of the first push has too.
    within(
        Duration::from_secs(60),
        "pushing :other",
        registry.push(&docker, &local, "demo/app", "other"),
    )
    .await
    .expect("push of :other");
    let stats = sink.clone();
    eventually(
        "the second push's target",
        Duration::from_secs(30),
        move || stats.stats().published == 2,
    )
    .await;

    let counts = sink.stats();
    assert_eq!(
        counts.queued, 2,
        "one event per push, whatever the number of envelopes: {counts:?}"
    );
    assert_eq!(counts.failed, 0, "{counts:?}");
    let targets = rig.coordinator.snapshot().await.unwrap().targets;
    let latest_target = targets
        .iter()
        .find(|t| t.image == image(&latest))
        .expect("target for :latest");
    assert_eq!(latest_target.digest.as_str(), pushed);
    assert_eq!(latest_target.source.as_str(), "registry");
    assert_eq!(targets.len(), 2);
    assert_eq!(
        metrics.webhook_count(Sender::Registry, WebhookResult::Accepted),
        2
    );
    assert!(
        metrics.webhook_count(Sender::Registry, WebhookResult::Ignored) >= 2,
        "blob pushes are acknowledged and ignored"
    );
    assert_eq!(
        metrics.webhook_count(Sender::Registry, WebhookResult::Unauthorized),
        0
    );

    rig.stop().await;
    registry.stop().await;
}
