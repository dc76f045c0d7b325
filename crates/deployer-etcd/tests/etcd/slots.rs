//! Cluster rollout slots: K hosts at a time, idempotent, halted builds, dead holders.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deployer_core::ports::{Coordinator, CoordinatorError, SlotGrant, SlotLease};
use deployer_core::target::Halt;
use deployer_core::{Target, Timestamp};
use deployer_etcd::EtcdCoordinator;
use deployer_testkit::etcd::Etcd;

use crate::support::*;

async fn hosts(etcd: &Etcd, slots: usize) -> Vec<EtcdCoordinator> {
    let mut hosts = Vec::new();
    for n in 0..3 {
        hosts.push(connect(config(etcd, &format!("host-{n}")).with_slots_per_service(slots)).await);
    }
    hosts
}

/// Asks for a slot in the background, as a host whose turn has not come would.
fn ask(
    host: &EtcdCoordinator,
    target: &Target,
) -> tokio::task::JoinHandle<Result<SlotGrant, CoordinatorError>> {
    let (host, target) = (host.clone(), target.clone());
    tokio::spawn(async move { host.acquire_slot(&service("web"), &target).await })
}

fn granted(grant: SlotGrant) -> SlotLease {
    match grant {
        SlotGrant::Granted(lease) => lease,
        SlotGrant::Halted(halt) => panic!("expected a slot, the build was halted: {halt:?}"),
    }
}

/// Three hosts each switch to `target` twice; returns the most that ever held a slot at once.
async fn most_at_once(hosts: &[EtcdCoordinator], target: &Target) -> usize {
    let holding = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for host in hosts {
        let host = host.clone();
        let (target, holding, most) = (target.clone(), holding.clone(), most.clone());
        tasks.spawn(async move {
            for _ in 0..2 {
                let slot = granted(host.acquire_slot(&service("web"), &target).await.unwrap());
                let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // The "switch": long enough for the others to be waiting meanwhile.
                tokio::time::sleep(Duration::from_millis(150)).await;
                holding.fetch_sub(1, Ordering::SeqCst);
                host.release_slot(slot).await.unwrap();
            }
        });
    }
    within("three hosts taking turns", 60, async {
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    })
    .await;
    most.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slot_is_exclusive_across_three_hosts() {
    let etcd = Etcd::start().await;
    let hosts = hosts(&etcd, 1).await;
    let target = publish(&hosts[0], 1).await;
    assert_eq!(most_at_once(&hosts, &target).await, 1);
    for host in hosts {
        host.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_slots_let_two_hosts_switch_and_the_third_wait() {
    let etcd = Etcd::start().await;
    let hosts = hosts(&etcd, 2).await;
    let target = publish(&hosts[0], 1).await;
    let web = service("web");
    let first = granted(
        within("first slot", 10, hosts[0].acquire_slot(&web, &target))
            .await
            .unwrap(),
    );
    let second = granted(
        within("second slot", 10, hosts[1].acquire_slot(&web, &target))
            .await
            .unwrap(),
    );

    let third = ask(&hosts[2], &target);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third host got a slot while two were taken"
    );
    hosts[0].release_slot(first).await.unwrap();
    let third = granted(
        within("the third host's slot after a release", 10, third)
            .await
            .unwrap()
            .unwrap(),
    );

    hosts[1].release_slot(second).await.unwrap();
    hosts[2].release_slot(third).await.unwrap();
    assert!(most_at_once(&hosts, &target).await <= 2);
    for host in hosts {
        host.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_again_returns_the_same_slot() {
    let etcd = Etcd::start().await;
    let host = coordinator(&etcd, "a").await;
    let target = publish(&host, 1).await;
    let first = granted(host.acquire_slot(&service("web"), &target).await.unwrap());
    let again = granted(
        within(
            "a second request by the holder",
            10,
            host.acquire_slot(&service("web"), &target),
        )
        .await
        .unwrap(),
    );
    assert_eq!(first, again);
    let mut raw = raw(&etcd).await;
    assert_eq!(
        keys_under(&mut raw, "rollout/web/").await,
        [format!("{PREFIX}/rollout/web/a")]
    );
    host.release_slot(first).await.unwrap();
    host.release_slot(again).await.unwrap();
    assert!(keys_under(&mut raw, "rollout/").await.is_empty());
    host.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_releases_hosts_waiting_for_a_slot() {
    let etcd = Etcd::start().await;
    let hosts = hosts(&etcd, 1).await;
    let target = publish(&hosts[0], 1).await;
    let web = service("web");
    let _slot = granted(hosts[0].acquire_slot(&web, &target).await.unwrap());
    let waiting: Vec<_> = hosts[1..].iter().map(|host| ask(host, &target)).collect();

    // The first host's switch fails: it marks the build failed for everyone.
    let halt = Halt {
        service: web.clone(),
        node: "host-0".into(),
        reason: "candidate unhealthy".into(),
        at: Timestamp::now(),
    };
    hosts[0]
        .halt(&target.image, &target.digest, halt.clone())
        .await
        .unwrap();
    for waiter in waiting {
        let answer = within("a waiting host to hear of the halt", 10, waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer, SlotGrant::Halted(halt.clone()));
    }
    // A newer build is not halted: the slot logic applies again.
    let newer = publish(&hosts[0], 2).await;
    assert!(matches!(
        hosts[0].acquire_slot(&web, &newer).await.unwrap(),
        SlotGrant::Granted(_)
    ));
    for host in hosts {
        host.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_holders_slot_goes_to_a_waiting_host() {
    let etcd = Etcd::start().await;
    let hosts = hosts(&etcd, 1).await;
    let target = publish(&hosts[0], 1).await;
    let web = service("web");
    let _held = granted(hosts[0].acquire_slot(&web, &target).await.unwrap());
    let waiter = ask(&hosts[1], &target);
    // Shutting down without releasing: the revoke frees the slot.
    hosts[0].close().await;
    granted(
        within("the slot of a host that left", 10, waiter)
            .await
            .unwrap()
            .unwrap(),
    );
    for host in &hosts[1..] {
        host.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_host_rides_out_an_etcd_restart() {
    let mut etcd = Etcd::start().await;
    // The waiter tolerates outages up to its lease TTL.
    let holder = coordinator(&etcd, "holder").await;
    let waiter = connect(config(&etcd, "waiter").with_lease_ttl(Duration::from_secs(10))).await;
    let target = publish(&holder, 1).await;
    let held = granted(holder.acquire_slot(&service("web"), &target).await.unwrap());
    let waiting = ask(&waiter, &target);

    etcd.kill();
    // An outage longer than the waiter's one-second poll, so it does meet a dead etcd.
    tokio::time::sleep(Duration::from_secs(2)).await;
    etcd.restart().await;
    // The holder's slot survived the restart (etcd renews leases when it comes back) ...
    assert!(
        !waiting.is_finished(),
        "the waiter gave up during the outage"
    );
    let held_again = granted(
        within(
            "the holder asking again after the restart",
            20,
            holder.acquire_slot(&service("web"), &target),
        )
        .await
        .unwrap(),
    );
    assert_eq!(held, held_again);
    // ... and once it is released, the waiter gets it.
    eventually("the release after the restart", 20, || {
        let (holder, slot) = (holder.clone(), held.clone());
        async move { holder.release_slot(slot).await.ok() }
    })
    .await;
    granted(
        within("the waiter's slot after the restart", 20, waiting)
            .await
            .unwrap()
            .unwrap(),
    );
    holder.close().await;
    waiter.close().await;
}
