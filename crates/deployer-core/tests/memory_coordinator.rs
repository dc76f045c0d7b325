//! The in-memory coordinator honours the `Coordinator` contract the etcd one shares.

use std::time::Duration;

use deployer_core::memory::MemoryCoordinator;
use deployer_core::ports::{Coordinator, SlotGrant, WatchEvent};
use deployer_core::service::ServiceName;
use deployer_core::target::{Halt, PublishOutcome, PublishRequest, Revision, Source};
use deployer_core::testing::digest;
use deployer_core::{DeployReport, ImageRef, Outcome, Timestamp};
use tokio::time::timeout;

fn image() -> ImageRef {
    "demo/app:latest".parse().unwrap()
}

fn request(n: u8) -> PublishRequest {
    PublishRequest::new(image(), digest(n), Source::new("test"))
}

async fn publish(c: &MemoryCoordinator, n: u8) -> PublishOutcome {
    c.publish(request(n)).await.unwrap()
}

fn event(n: u8, id: &str) -> PublishRequest {
    let mut r = request(n);
    r.delivery_id = Some(id.to_owned());
    r
}

#[tokio::test]
async fn the_last_push_wins_and_replays_are_refused() {
    let c = MemoryCoordinator::new("a");
    assert!(matches!(
        c.publish(event(1, "e1")).await.unwrap(),
        PublishOutcome::Published { .. }
    ));
    assert!(matches!(
        publish(&c, 1).await,
        PublishOutcome::Unchanged { .. }
    ));
    let second = c.publish(event(2, "e2")).await.unwrap();
    assert_eq!(second.target().revision, Revision(2));
    assert!(
        matches!(
            c.publish(event(1, "e1")).await.unwrap(),
            PublishOutcome::Stale { .. }
        ),
        "a replayed event"
    );
    let current = c.target(&image()).await.unwrap().unwrap();
    assert_eq!(current.digest, digest(2));
    assert_eq!(current.previous, vec![digest(1)]);
    let again = c.publish(event(1, "e3")).await.unwrap();
    assert_eq!(
        again.target().digest,
        digest(1),
        "a new push of the earlier build wins"
    );
}

#[tokio::test]
async fn watches_resume_from_a_revision_in_order() {
    let c = MemoryCoordinator::new("a");
    for n in 1..=3 {
        publish(&c, n).await;
    }
    let mut watch = c.watch(Revision(1)).await.unwrap();
    publish(&c, 4).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        match timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("watch stalled")
        {
            Some(WatchEvent::Updated(t)) => seen.push(t.revision.0),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, [2, 3, 4]);
}

#[tokio::test]
async fn a_watch_older_than_the_kept_log_gets_a_resync() {
    let c = MemoryCoordinator::new("a");
    for n in 0..=255u8 {
        for m in 0..5u8 {
            let mut r = PublishRequest::new(
                format!("app{m}:latest").parse().unwrap(),
                digest(n),
                Source::new("t"),
            );
            r.force = true;
            c.publish(r).await.unwrap();
        }
    }
    let mut watch = c.watch(Revision(0)).await.unwrap();
    match timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("watch stalled")
    {
        Some(WatchEvent::Resync(snapshot)) => {
            assert_eq!(snapshot.targets.len(), 5);
            assert_eq!(snapshot.revision, Revision(256 * 5));
        }
        other => panic!("expected a resync, got {other:?}"),
    }
}

#[tokio::test]
async fn a_halt_stops_slot_requests_for_that_build_only() {
    let c = MemoryCoordinator::new("a");
    let web = ServiceName::new("web").unwrap();
    let target = publish(&c, 1).await.target().clone();
    let halt = Halt {
        service: web.clone(),
        node: "b".into(),
        reason: "unhealthy".into(),
        at: Timestamp::from_millis(0),
    };
    c.halt(&image(), &digest(9), halt.clone()).await.unwrap();
    assert!(
        c.target(&image()).await.unwrap().unwrap().halts.is_empty(),
        "another digest is not halted"
    );
    c.halt(&image(), &digest(1), halt.clone()).await.unwrap();
    let halted = c.target(&image()).await.unwrap().unwrap();
    assert_eq!(halted.halts, vec![halt]);
    assert!(halted.revision > target.revision, "watchers see the halt");
    assert!(matches!(
        c.acquire_slot(&web, &target).await.unwrap(),
        SlotGrant::Halted(_)
    ));
    let worker = ServiceName::new("worker").unwrap();
    let SlotGrant::Granted(other) = c.acquire_slot(&worker, &target).await.unwrap() else {
        panic!("another service on the same build is not halted");
    };
    c.release_slot(other).await.unwrap();
    let next = publish(&c, 2).await.target().clone();
    let SlotGrant::Granted(slot) = c.acquire_slot(&web, &next).await.unwrap() else {
        panic!("a new build gets a slot");
    };
    let SlotGrant::Granted(again) = c.acquire_slot(&web, &next).await.unwrap() else {
        panic!("asking again while holding the slot returns it");
    };
    assert_eq!(slot, again);
    c.release_slot(slot).await.unwrap();
    c.release_slot(again).await.unwrap();
}

#[tokio::test]
async fn history_is_bounded_newest_first_and_filterable() {
    let c = MemoryCoordinator::new("a").with_history(3);
    for (n, service) in ["web", "api", "web", "web", "api"].iter().enumerate() {
        let report = DeployReport {
            service: ServiceName::new(service).unwrap(),
            node: "a".into(),
            image: image(),
            outcome: Outcome::Succeeded,
            from: None,
            to: Some(digest(n as u8)),
            generation: None,
            revision: None,
            source: None,
            delivery_id: None,
            callback_url: None,
            reason: None,
            rollback_error: None,
            cut: 0,
            warnings: Vec::new(),
            started_at: Timestamp::from_millis(0),
            finished_at: Timestamp::from_millis(n as u64),
            duration_ms: 0,
        };
        c.record(&report).await.unwrap();
    }
    let all = c.history(None, 10).await.unwrap();
    let digests: Vec<_> = all.iter().map(|r| r.to.clone().unwrap()).collect();
    assert_eq!(digests, [digest(4), digest(3), digest(2)]);
    let web = c
        .history(Some(&ServiceName::new("web").unwrap()), 10)
        .await
        .unwrap();
    assert_eq!(web.len(), 2);
    assert_eq!(c.history(None, 1).await.unwrap().len(), 1);
}
