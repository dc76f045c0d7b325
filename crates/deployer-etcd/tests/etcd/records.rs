//! Statuses, endpoints (service registration) and history.

use deployer_core::ServiceState;
use deployer_core::ports::Coordinator;
use deployer_testkit::etcd::Etcd;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_of_every_host_and_service() {
    let etcd = Etcd::start().await;
    let mut hosts = Vec::new();
    for node in ["a", "b", "c"] {
        hosts.push((node, coordinator(&etcd, node).await));
    }
    for (node, host) in &hosts {
        for svc in ["api", "web"] {
            host.report_status(&status(svc, node, Some(1), None))
                .await
                .unwrap();
        }
    }
    // A newer report replaces the older one.
    let mut updated = status("web", "b", Some(2), None);
    updated.state = ServiceState::Probing;
    hosts[1].1.report_status(&updated).await.unwrap();

    let statuses = hosts[0].1.statuses().await.unwrap();
    let seen: Vec<_> = statuses
        .iter()
        .map(|s| (s.service.as_str(), s.node.as_str(), s.state))
        .collect();
    assert_eq!(
        seen,
        [
            ("api", "a", ServiceState::Idle),
            ("api", "b", ServiceState::Idle),
            ("api", "c", ServiceState::Idle),
            ("web", "a", ServiceState::Idle),
            ("web", "b", ServiceState::Probing),
            ("web", "c", ServiceState::Idle),
        ]
    );
    assert_eq!(statuses[4], updated);
    for (_, host) in hosts {
        host.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_the_live_build() {
    let etcd = Etcd::start().await;
    let a = coordinator(&etcd, "a").await;
    let b = coordinator(&etcd, "b").await;
    a.report_status(&status("web", "a", Some(1), Some("127.0.0.1:8080")))
        .await
        .unwrap();
    b.report_status(&status("web", "b", Some(1), Some("127.0.0.1:8081")))
        .await
        .unwrap();
    // Serving, but not behind an address the deployer knows: nothing to register.
    b.report_status(&status("api", "b", Some(1), None))
        .await
        .unwrap();

    let endpoints = a.endpoints(None).await.unwrap();
    let addresses: Vec<_> = endpoints
        .iter()
        .map(|e| {
            (
                e.service.as_str(),
                e.node.as_str(),
                e.record.address.as_str(),
            )
        })
        .collect();
    assert_eq!(
        addresses,
        [
            ("web", "a", "127.0.0.1:8080"),
            ("web", "b", "127.0.0.1:8081")
        ]
    );

    // The documented format, as a template engine would read it.
    let mut raw = raw(&etcd).await;
    let stored = raw
        .get(format!("{PREFIX}/endpoints/web/a"), None)
        .await
        .unwrap();
    let kv = &stored.kvs()[0];
    assert_eq!(
        kv.lease(),
        a.lease_id().unwrap(),
        "endpoints live under the host's lease"
    );
    let json: serde_json::Value = serde_json::from_slice(kv.value()).unwrap();
    assert_eq!(json["address"], "127.0.0.1:8080");
    assert_eq!(json["digest"], digest(1).to_string());
    assert_eq!(json["generation"], 1);

    // A service the host no longer runs (an adopted one, removed) leaves both views.
    let web = deployer_core::ServiceName::new("web").unwrap();
    a.forget_status("a", &web).await.unwrap();
    let left: Vec<_> = a
        .endpoints(None)
        .await
        .unwrap()
        .iter()
        .map(|e| e.node.clone())
        .collect();
    assert_eq!(left, ["b"]);
    assert!(
        a.statuses()
            .await
            .unwrap()
            .iter()
            .all(|s| (s.service.as_str(), s.node.as_str()) != ("web", "a"))
    );
    assert!(json["updated_at"].is_u64(), "{json}");

    // No live build any more (a failed start, a removed service): the entry goes.
    a.report_status(&status("web", "a", None, Some("127.0.0.1:8080")))
        .await
        .unwrap();
    // Shutting down: the entry goes too, before the lease does.
    let mut stopping = status("web", "b", Some(1), Some("127.0.0.1:8081"));
    stopping.state = ServiceState::Stopped;
    b.report_status(&stopping).await.unwrap();
    assert!(keys_under(&mut raw, "endpoints/").await.is_empty());
    assert_eq!(a.statuses().await.unwrap().len(), 3, "statuses stay");
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_bounded_and_newest_first() {
    let etcd = Etcd::start().await;
    let a = connect(config(&etcd, "a").with_history_kept(5)).await;
    let b = connect(config(&etcd, "b").with_history_kept(5)).await;
    for n in 1..=8 {
        let host = if n % 2 == 0 { &a } else { &b };
        host.record(&report("web", host.config().node.as_str(), n))
            .await
            .unwrap();
        if n <= 3 {
            a.record(&report("api", "a", 100 + n)).await.unwrap();
        }
    }
    let web = a.history(Some(&service("web")), 100).await.unwrap();
    let numbers: Vec<_> = web.iter().map(|r| r.generation.unwrap().0).collect();
    assert_eq!(numbers, [8, 7, 6, 5, 4], "the five newest, newest first");

    let all = b.history(None, 4).await.unwrap();
    let numbers: Vec<_> = all.iter().map(|r| r.generation.unwrap().0).collect();
    assert_eq!(numbers, [8, 7, 6, 5]);
    let api = b.history(Some(&service("api")), 10).await.unwrap();
    assert_eq!(api.len(), 3);
    assert!(a.history(None, 0).await.unwrap().is_empty());

    let mut raw = raw(&etcd).await;
    assert_eq!(keys_under(&mut raw, "history/web/").await.len(), 5);
    a.close().await;
    b.close().await;
}
