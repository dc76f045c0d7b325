//! Host liveness: lease expiry after a crash, revoke on close, re-registration after loss.

use std::time::Duration;

use deployer_core::ports::{Coordinator, CoordinatorError, SlotGrant};
use deployer_etcd::EtcdCoordinator;
use deployer_testkit::etcd::Etcd;

use crate::support::*;

/// A coordinator on a runtime of its own, so the test can make it vanish without a goodbye:
/// shutting that runtime down stops its keep-alives exactly as a crash would.
struct Doomed {
    /// Always `Some` until dropped; taken to shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
    coordinator: EtcdCoordinator,
}

impl Doomed {
    async fn start(config: deployer_etcd::EtcdConfig) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let coordinator = runtime.spawn(connect(config)).await.unwrap();
        Self {
            runtime: Some(runtime),
            coordinator,
        }
    }

    /// Runs `future` on the doomed host's runtime.
    async fn run<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        let runtime = self.runtime.as_ref().expect("runtime");
        runtime.spawn(future).await.unwrap()
    }
}

impl Drop for Doomed {
    /// The crash: the runtime stops at once, its tasks never run again, nothing is revoked.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_hosts_lease_bound_keys_expire() {
    let etcd = Etcd::start().await;
    let observer = coordinator(&etcd, "observer").await;
    let host = Doomed::start(config(&etcd, "doomed").with_lease_ttl(Duration::from_secs(2))).await;
    let target = publish(&observer, 1).await;

    let doomed = host.coordinator.clone();
    let grant = host
        .run(async move {
            doomed
                .report_status(&status("web", "doomed", Some(1), Some("127.0.0.1:8080")))
                .await
                .unwrap();
            doomed.acquire_slot(&service("web"), &target).await.unwrap()
        })
        .await;
    assert!(matches!(grant, SlotGrant::Granted(_)), "{grant:?}");
    let mut raw = raw(&etcd).await;
    assert_eq!(keys_under(&mut raw, "rollout/web/").await.len(), 1);
    assert_eq!(observer.endpoints(None).await.unwrap().len(), 1);
    let nodes: Vec<_> = observer
        .hosts()
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.node)
        .collect();
    assert_eq!(nodes, ["doomed", "observer"]);

    drop(host);
    eventually("the crashed host's keys to expire", 20, || {
        let mut raw = raw.clone();
        async move {
            let gone = keys_under(&mut raw, "rollout/").await.is_empty()
                && keys_under(&mut raw, "endpoints/").await.is_empty()
                && keys_under(&mut raw, "hosts/doomed").await.is_empty();
            gone.then_some(())
        }
    })
    .await;
    let statuses = observer.statuses().await.unwrap();
    assert_eq!(statuses.len(), 1, "a dead host's last status stays visible");
    observer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_revokes_the_lease_at_once() {
    let etcd = Etcd::start().await;
    // A long TTL: only the revoke can explain keys vanishing within the deadline.
    let host = connect(config(&etcd, "leaving").with_lease_ttl(Duration::from_secs(60))).await;
    let target = publish(&host, 1).await;
    host.report_status(&status("web", "leaving", Some(1), Some("127.0.0.1:8080")))
        .await
        .unwrap();
    assert!(matches!(
        host.acquire_slot(&service("web"), &target).await.unwrap(),
        SlotGrant::Granted(_)
    ));
    let mut raw = raw(&etcd).await;
    within("close", 10, host.close()).await;
    assert!(keys_under(&mut raw, "rollout/").await.is_empty());
    assert!(keys_under(&mut raw, "endpoints/").await.is_empty());
    assert!(keys_under(&mut raw, "hosts/").await.is_empty());
    assert_eq!(keys_under(&mut raw, "status/").await.len(), 1);
    assert!(matches!(
        host.publish(request(2)).await,
        Err(CoordinatorError::Closed)
    ));
    assert_eq!(host.lease_id(), None);
    within("a second close", 10, host.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_is_replaced_and_keys_restored() {
    let etcd = Etcd::start().await;
    let host = coordinator(&etcd, "h").await;
    let target = publish(&host, 1).await;
    host.report_status(&status("web", "h", Some(1), Some("127.0.0.1:8080")))
        .await
        .unwrap();
    let SlotGrant::Granted(slot) = host.acquire_slot(&service("web"), &target).await.unwrap()
    else {
        panic!("expected a slot");
    };
    let old = host.lease_id().unwrap();

    // What etcd does to a host cut off longer than its TTL: the lease and its keys go.
    let mut raw = raw(&etcd).await;
    raw.lease_revoke(old).await.unwrap();
    assert!(keys_under(&mut raw, "hosts/").await.is_empty());

    eventually("host, endpoint and slot keys to come back", 20, || {
        let mut raw = raw.clone();
        let host = host.clone();
        async move {
            let lease = host.lease_id().filter(|l| *l != old)?;
            let restored = keys_under(&mut raw, "hosts/h").await.len() == 1
                && keys_under(&mut raw, "endpoints/web/h").await.len() == 1
                && keys_under(&mut raw, "rollout/web/h").await.len() == 1;
            restored.then_some(lease)
        }
    })
    .await;
    host.release_slot(slot).await.unwrap();
    assert!(keys_under(&mut raw, "rollout/").await.is_empty());
    host.close().await;
}
