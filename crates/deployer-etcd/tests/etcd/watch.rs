//! Watches: gap-free from a revision, across etcd restarts, through compaction, when idle.

use std::time::Duration;

use deployer_core::ports::{Coordinator, WatchEvent};
use deployer_core::{ImageRef, PublishRequest, Revision, Source};
use deployer_testkit::etcd::{Etcd, EtcdOptions};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_revision_is_gap_free_and_ordered() {
    let etcd = Etcd::start().await;
    let publisher = coordinator(&etcd, "a").await;
    let watcher = coordinator(&etcd, "b").await;

    let first = publish(&publisher, 1).await;
    let second = publish(&publisher, 2).await;
    let mut watch = watcher.watch(first.revision).await.unwrap();
    assert_eq!(next_update(&mut watch, "the second target").await, second);

    // Targets of other images interleave; everything arrives once, in revision order.
    let other: ImageRef = "127.0.0.1:5000/demo/other:v1".parse().unwrap();
    let mut published = Vec::new();
    for n in 3..13 {
        published.push(publish(&publisher, n).await);
        let request = PublishRequest::new(other.clone(), digest(100 + n), Source::new("test"));
        published.push(publisher.publish(request).await.unwrap().target().clone());
    }
    for expected in &published {
        assert_eq!(&next_update(&mut watch, "the next target").await, expected);
    }

    // Snapshot, then watch from its revision: the pattern the driver uses.
    let snapshot = watcher.snapshot().await.unwrap();
    assert_eq!(snapshot.targets.len(), 2);
    assert_eq!(snapshot.revision, published.last().unwrap().revision);
    let mut from_snapshot = watcher.watch(snapshot.revision).await.unwrap();
    let after = publish(&publisher, 50).await;
    assert_eq!(
        next_update(&mut from_snapshot, "a target after the snapshot").await,
        after
    );
    assert_eq!(
        next_update(&mut watch, "the same target on the old watch").await,
        after
    );
    publisher.close().await;
    watcher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_etcd_restart() {
    let mut etcd = Etcd::start().await;
    let coordinator = coordinator(&etcd, "a").await;
    let start = publish(&coordinator, 1).await;
    let mut watch = coordinator.watch(start.revision).await.unwrap();

    let before = publish(&coordinator, 2).await;
    assert_eq!(
        next_update(&mut watch, "a target before the crash").await,
        before
    );

    etcd.kill();
    assert!(
        coordinator.publish(request(3)).await.is_err(),
        "publishing fails while etcd is down"
    );
    etcd.restart().await;

    // Publish a burst right away, likely before the watch has reconnected: it must replay
    // everything from its last position.
    let mut after = Vec::new();
    for n in 3..8 {
        let published = eventually("etcd accepting publishes again", 30, || async {
            coordinator.publish(request(n)).await.ok()
        })
        .await;
        after.push(published.target().clone());
    }
    for expected in &after {
        assert_eq!(
            &next_update(&mut watch, "a target after the restart").await,
            expected
        );
    }
    coordinator.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_compacted_revision_resyncs() {
    let etcd = Etcd::start().await;
    let coordinator = coordinator(&etcd, "a").await;
    let first = publish(&coordinator, 1).await;
    for n in 2..6 {
        publish(&coordinator, n).await;
    }
    let current = coordinator.target(&image()).await.unwrap().unwrap();
    let mut raw = raw(&etcd).await;
    raw.compact(i64::try_from(current.revision.0).unwrap(), None)
        .await
        .unwrap();

    let mut watch = coordinator.watch(first.revision).await.unwrap();
    match next_event(&mut watch, "the resync", 15).await {
        WatchEvent::Resync(snapshot) => {
            assert_eq!(snapshot.targets, vec![current.clone()]);
            assert!(snapshot.revision >= current.revision);
        }
        other => panic!("expected a resync after compaction, got {other:?}"),
    }
    let after = publish(&coordinator, 6).await;
    assert_eq!(
        next_update(&mut watch, "a target after the resync").await,
        after
    );
    coordinator.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_watch_advances_with_progress_notifications() {
    // A watch that saw no target change for a long time, while other keys churned and etcd
    // compacted, must resume without a resync: progress notifications moved its position.
    let mut etcd = Etcd::start_with(EtcdOptions {
        progress_notify_interval: Some(Duration::from_millis(100)),
        ..EtcdOptions::default()
    })
    .await;
    let coordinator = coordinator(&etcd, "a").await;
    let start = publish(&coordinator, 1).await;
    let mut watch = coordinator.watch(start.revision).await.unwrap();

    let mut raw = raw(&etcd).await;
    let mut churned = 0;
    for n in 0..20 {
        churned = raw
            .put(format!("/unrelated/{n}"), "x", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
    }
    raw.compact(churned, None).await.unwrap();
    // Wait until progress notifications have moved the idle watch past the churn (etcd sends
    // one per interval; a loaded machine may take a while to deliver them).
    let churned_revision = Revision(u64::try_from(churned).unwrap());
    eventually(
        "progress notifications to move the idle watch",
        20,
        || async {
            coordinator
                .watch_positions()
                .first()
                .is_some_and(|&position| position >= churned_revision)
                .then_some(())
        },
    )
    .await;
    // Under load etcd may have cancelled the watch while it was still catching up when the
    // history was compacted; the watch then re-read everything (a Resync, queued before its
    // position moved). That is correct and not what this test is about: set it aside.
    while let Ok(Some(event)) = tokio::time::timeout(Duration::ZERO, watch.next()).await {
        assert!(
            matches!(event, WatchEvent::Resync(_)),
            "only a resync can precede: {event:?}"
        );
    }

    etcd.kill();
    etcd.restart().await;
    let after = eventually("etcd accepting publishes again", 30, || async {
        coordinator.publish(request(2)).await.ok()
    })
    .await;
    match next_event(&mut watch, "the first change after the restart", 15).await {
        WatchEvent::Updated(target) => assert_eq!(&target, after.target()),
        other => panic!("expected the idle watch to resume without a resync, got {other:?}"),
    }
    assert!(after.target().revision > churned_revision);
    coordinator.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_watch_ends_its_task_and_close_ends_open_watches() {
    let etcd = Etcd::start().await;
    let coordinator = coordinator(&etcd, "a").await;
    let start = publish(&coordinator, 1).await;
    drop(coordinator.watch(start.revision).await.unwrap());
    let mut open = coordinator.watch(start.revision).await.unwrap();
    coordinator.close().await;
    assert_eq!(
        within("the watch to end after close", 10, open.next()).await,
        None
    );
    assert!(coordinator.watch(start.revision).await.is_err());
}
