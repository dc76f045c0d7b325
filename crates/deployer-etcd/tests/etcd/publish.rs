//! Publish only if newer, atomically; halts; bad data in etcd.

use std::collections::BTreeSet;

use deployer_core::PublishOutcome;
use deployer_core::ports::{Coordinator, CoordinatorError};
use deployer_core::target::{Halt, PREVIOUS_KEPT};
use deployer_core::{Revision, Timestamp};
use deployer_testkit::etcd::Etcd;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_only_moves_forward() {
    let etcd = Etcd::start().await;
    let coordinator = coordinator(&etcd, "a").await;

    let first = publish(&coordinator, 1).await;
    let read = coordinator.target(&image()).await.unwrap().unwrap();
    assert_eq!(read, first, "the returned revision is the one etcd stored");
    assert!(first.revision > Revision(0));

    let again = coordinator.publish(request(1)).await.unwrap();
    assert!(
        matches!(&again, PublishOutcome::Unchanged { target } if target == &first),
        "replayed delivery: {again:?}"
    );

    let second = publish(&coordinator, 2).await;
    assert!(second.revision > first.revision);
    assert_eq!(second.previous, vec![digest(1)]);

    // A late webhook for the older build, dated before the current one, must not roll the
    // fleet back.
    let mut late = request(1);
    late.event_time = Some(Timestamp::from_millis(1_000));
    let late = coordinator.publish(late).await.unwrap();
    assert!(matches!(late, PublishOutcome::Stale { .. }), "{late:?}");
    assert_eq!(coordinator.target(&image()).await.unwrap().unwrap(), second);

    // A genuine later push wins, and its redelivery is a replay even with a newer date.
    let now = Timestamp::now().as_millis();
    let mut dated = request(3);
    dated.delivery_id = Some("event-3".into());
    dated.event_time = Some(Timestamp::from_millis(now));
    let dated = publish_request(&coordinator, dated).await;
    let mut older = request(4);
    older.event_time = Some(Timestamp::from_millis(now - 1_000));
    let older = coordinator.publish(older).await.unwrap();
    assert!(matches!(older, PublishOutcome::Stale { .. }), "{older:?}");
    let mut replay = request(4);
    replay.delivery_id = Some("event-3".into());
    replay.event_time = Some(Timestamp::from_millis(now + 1_000));
    let replay = coordinator.publish(replay).await.unwrap();
    assert!(matches!(replay, PublishOutcome::Stale { .. }), "{replay:?}");

    // An operator's rollback goes through.
    let mut rollback = request(1);
    rollback.force = true;
    let rolled = publish_request(&coordinator, rollback).await;
    assert_eq!(rolled.digest, digest(1));
    assert_eq!(rolled.previous[0], digest(3));
    assert!(rolled.revision > dated.revision);
    coordinator.close().await;
}

async fn publish_request(
    coordinator: &deployer_etcd::EtcdCoordinator,
    request: deployer_core::PublishRequest,
) -> deployer_core::Target {
    match coordinator.publish(request).await.unwrap() {
        PublishOutcome::Published { target } => target,
        other => panic!("expected a publish, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_lose_no_update() {
    const CLIENTS: u32 = 4;
    const EACH: u32 = 8;
    let etcd = Etcd::start().await;
    let mut coordinators = Vec::new();
    for n in 0..CLIENTS {
        coordinators.push(coordinator(&etcd, &format!("host-{n}")).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (n, coordinator) in coordinators.iter().cloned().enumerate() {
        let n = u32::try_from(n).unwrap();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            for i in 0..EACH {
                // Every digest is new, so every publish must be accepted.
                mine.push(publish(&coordinator, 1000 + n * EACH + i).await);
            }
            mine
        });
    }
    let mut all = Vec::new();
    within("concurrent publishes", 60, async {
        while let Some(mine) = tasks.join_next().await {
            let mine = mine.unwrap();
            assert!(
                mine.windows(2).all(|w| w[0].revision < w[1].revision),
                "one client's revisions increase"
            );
            all.extend(mine);
        }
    })
    .await;
    assert_eq!(all.len(), (CLIENTS * EACH) as usize);
    all.sort_by_key(|t| t.revision);
    let revisions: BTreeSet<_> = all.iter().map(|t| t.revision).collect();
    assert_eq!(
        revisions.len(),
        all.len(),
        "every accepted publish has its own revision"
    );
    // Each write must have seen the one before it: no lost update.
    for pair in all.windows(2) {
        assert_eq!(
            pair[1].previous.first(),
            Some(&pair[0].digest),
            "write at {} did not build on {}",
            pair[1].revision,
            pair[0].revision
        );
    }
    let last = coordinators[0].target(&image()).await.unwrap().unwrap();
    assert_eq!(&last, all.last().unwrap());
    let expected: Vec<_> = all
        .iter()
        .rev()
        .skip(1)
        .take(PREVIOUS_KEPT)
        .map(|t| t.digest.clone())
        .collect();
    assert_eq!(last.previous, expected);
    for coordinator in coordinators {
        coordinator.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_applies_only_to_the_current_digest() {
    let etcd = Etcd::start().await;
    let coordinator = coordinator(&etcd, "a").await;
    publish(&coordinator, 1).await;
    let current = publish(&coordinator, 2).await;
    let halt = Halt {
        service: deployer_core::ServiceName::new("web").unwrap(),
        node: "b".into(),
        reason: "unhealthy".into(),
        at: Timestamp::now(),
    };

    coordinator
        .halt(&image(), &digest(1), halt.clone())
        .await
        .unwrap();
    assert_eq!(
        coordinator.target(&image()).await.unwrap().unwrap(),
        current,
        "a halt of a superseded build changes nothing"
    );

    coordinator
        .halt(&image(), &digest(2), halt.clone())
        .await
        .unwrap();
    let halted = coordinator.target(&image()).await.unwrap().unwrap();
    assert_eq!(halted.halts, vec![halt.clone()]);
    assert!(halted.revision > current.revision, "watchers see the halt");

    let mut later = halt.clone();
    later.node = "c".into();
    coordinator.halt(&image(), &digest(2), later).await.unwrap();
    assert_eq!(
        coordinator.target(&image()).await.unwrap().unwrap(),
        halted,
        "the first halt stands"
    );

    // Retrying the halted build is an operator's forced publish, which clears the halt.
    let mut retry = request(2);
    retry.force = true;
    let retried = publish_request(&coordinator, retry).await;
    assert!(retried.halts.is_empty());
    coordinator.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_values_are_errors_not_panics() {
    let etcd = Etcd::start().await;
    let coordinator = coordinator(&etcd, "a").await;
    let mut raw = raw(&etcd).await;
    let key = coordinator.keys().target(&image());
    raw.put(key.as_str(), "{not json", None).await.unwrap();
    let other: deployer_core::ImageRef = "127.0.0.1:5000/demo/other:latest".parse().unwrap();
    let healthy = publish_request(
        &coordinator,
        deployer_core::PublishRequest::new(other, digest(9), deployer_core::Source::new("test")),
    )
    .await;

    match coordinator.target(&image()).await {
        Err(CoordinatorError::Corrupt { key: at, .. }) => assert_eq!(at, key),
        other => panic!("expected a corrupt-record error, got {other:?}"),
    }
    assert!(matches!(
        coordinator.publish(request(1)).await,
        Err(CoordinatorError::Corrupt { .. })
    ));
    let snapshot = coordinator.snapshot().await.unwrap();
    assert_eq!(
        snapshot.targets,
        vec![healthy],
        "a bad record does not hide the others"
    );

    let mut repair = request(1);
    repair.force = true;
    let repaired = publish_request(&coordinator, repair).await;
    assert_eq!(coordinator.target(&image()).await.unwrap(), Some(repaired));

    raw.put(
        coordinator.keys().status(&service("web"), "zz"),
        vec![0xff, 0x00],
        None,
    )
    .await
    .unwrap();
    coordinator
        .report_status(&status("web", "a", Some(1), None))
        .await
        .unwrap();
    let statuses = coordinator.statuses().await.unwrap();
    assert_eq!(
        statuses.len(),
        1,
        "the undecodable status is skipped: {statuses:?}"
    );
    coordinator.close().await;
}
