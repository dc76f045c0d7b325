//! Fixtures: a real etcd per test, coordinators with test-sized timings, builders for
//! requests, statuses and reports, and bounded waits whose failures say what hung.

use std::future::Future;
use std::time::Duration;

use deployer_core::ports::{Coordinator, TargetWatch, WatchEvent};
use deployer_core::reconcile::Generation;
use deployer_core::report::{DeployReport, Outcome, ServiceState, ServiceStatus};
use deployer_core::{Digest, ImageRef, PublishRequest, ServiceName, Source, Target, Timestamp};
use deployer_etcd::{EtcdConfig, EtcdCoordinator};
use deployer_testkit::etcd::Etcd;

/// Prefix used by the tests, to exercise a non-default one.
pub const PREFIX: &str = "/test/deployer";

/// Settings for node `node` on `etcd`: short timeouts and retries so outages heal quickly.
pub fn config(etcd: &Etcd, node: &str) -> EtcdConfig {
    EtcdConfig::new([etcd.endpoint()])
        .with_prefix(PREFIX)
        .with_node(node)
        .with_dial_timeout(Duration::from_secs(1))
        .with_request_timeout(Duration::from_secs(1))
        .with_retry_delay(Duration::from_millis(50), Duration::from_millis(500))
        .with_lease_ttl(Duration::from_secs(3))
}

/// A coordinator for `node` with [`config`].
pub async fn coordinator(etcd: &Etcd, node: &str) -> EtcdCoordinator {
    connect(config(etcd, node)).await
}

/// A coordinator with `config`, failing the test with the reason if it cannot connect.
pub async fn connect(config: EtcdConfig) -> EtcdCoordinator {
    within("connecting to etcd", 20, EtcdCoordinator::connect(config))
        .await
        .unwrap_or_else(|e| panic!("cannot connect: {}", deployer_core::driver::error_chain(&e)))
}

/// A raw client, to look at or tamper with keys behind the coordinator's back.
pub async fn raw(etcd: &Etcd) -> etcd_client::Client {
    etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .expect("raw etcd client")
}

/// Runs `future`, failing the test with `what` if it takes longer than `secs` seconds.
pub async fn within<T>(what: &str, secs: u64, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), future)
        .await
        .unwrap_or_else(|_| panic!("deadlock or hang: {what} did not finish within {secs} s"))
}

/// Polls `check` until it returns `Some`, failing with `what` after `secs` seconds.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(what, secs, async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// The next event of a watch, failing if none comes within `secs` or the watch ends.
pub async fn next_event(watch: &mut TargetWatch, what: &str, secs: u64) -> WatchEvent {
    within(what, secs, watch.next())
        .await
        .unwrap_or_else(|| panic!("the watch closed while waiting for {what}"))
}

/// The next event, which must be an update.
pub async fn next_update(watch: &mut TargetWatch, what: &str) -> Target {
    match next_event(watch, what, 15).await {
        WatchEvent::Updated(target) => target,
        other => panic!("expected an update for {what}, got {other:?}"),
    }
}

/// The image every test publishes unless it needs several.
pub fn image() -> ImageRef {
    "127.0.0.1:5000/demo/app:latest".parse().unwrap()
}

/// A distinct, valid digest per number.
pub fn digest(n: u32) -> Digest {
    Digest::sha256(&format!("{n:064x}")).unwrap()
}

/// A plain publish of `digest(n)` for [`image`].
pub fn request(n: u32) -> PublishRequest {
    PublishRequest::new(image(), digest(n), Source::new("test"))
}

/// Publishes and returns the target, which must have been accepted.
pub async fn publish(coordinator: &EtcdCoordinator, n: u32) -> Target {
    match coordinator.publish(request(n)).await.expect("publish") {
        deployer_core::PublishOutcome::Published { target } => target,
        other => panic!("expected digest {n} to be published, got {other:?}"),
    }
}

/// A service name.
pub fn service(name: &str) -> ServiceName {
    ServiceName::new(name).unwrap()
}

/// A status of `service` on `node` serving `digest(live)` at `endpoint`.
pub fn status(
    service_name: &str,
    node: &str,
    live: Option<u32>,
    endpoint: Option<&str>,
) -> ServiceStatus {
    ServiceStatus {
        service: service(service_name),
        node: node.to_owned(),
        image: image(),
        state: ServiceState::Idle,
        live: live.map(digest),
        generation: live.map(|n| Generation(u64::from(n))),
        target: live.map(digest),
        endpoint: endpoint.map(str::to_owned),
        message: None,
        updated_at: Timestamp::now(),
    }
}

/// A succeeded deploy report numbered `n` (its digest) for `service` on `node`.
pub fn report(service_name: &str, node: &str, n: u32) -> DeployReport {
    let now = Timestamp::now();
    DeployReport {
        service: service(service_name),
        node: node.to_owned(),
        image: image(),
        outcome: Outcome::Succeeded,
        from: None,
        to: Some(digest(n)),
        generation: Some(Generation(u64::from(n))),
        revision: None,
        source: Some(Source::new("test")),
        delivery_id: None,
        callback_url: None,
        reason: None,
        rollback_error: None,
        cut: 0,
        warnings: Vec::new(),
        started_at: now,
        finished_at: now,
        duration_ms: 0,
    }
}

/// Keys under `prefix` (relative to [`PREFIX`]) as they are in etcd right now.
pub async fn keys_under(client: &mut etcd_client::Client, prefix: &str) -> Vec<String> {
    let response = client
        .get(
            format!("{PREFIX}/{prefix}"),
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_keys_only(),
            ),
        )
        .await
        .expect("raw get");
    response
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}
