//! The async driver with fakes for every port, under paused tokio time: nothing sleeps for
//! real, and a deadlock shows up as a timeout with a message instead of a hung test.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deployer_core::Outcome;
use deployer_core::driver::{Driver, DriverConfig, Submission};
use deployer_core::image::ImageRef;
use deployer_core::memory::MemoryJournal;
use deployer_core::ports::{Coordinator, ImageEvent, Journal, JournalError};
use deployer_core::reconcile::{Generation, JournalEntry};
use deployer_core::service::ServiceName;
use deployer_core::shutdown::Shutdown;
use deployer_core::target::{PublishRequest, Source};
use deployer_core::testing::{FakeCoordinator, digest};
use tokio::time::Instant;

mod support;

use support::*;

#[tokio::test(start_paused = true)]
async fn a_burst_of_a_thousand_identical_triggers_deploys_once() {
    let env = Env::new();
    let app: ImageRef = "demo/app:latest".parse().unwrap();
    env.images.set_tag(&app, digest(1));
    let running = env.start(vec![handover("web", "demo/app:latest")], 4);
    let sink = running.handle.sink();
    for n in 0..1000 {
        let mut event = ImageEvent::new(app.clone(), Source::new("registry"));
        event.delivery_id = Some(format!("push-{n}"));
        assert_eq!(sink.submit(event), Ok(Submission::Queued));
    }
    env.report("the deploy", is("web", Outcome::Succeeded))
        .await;
    until("all events ingested", || {
        let s = sink.stats();
        s.published + s.unchanged == 1000
    })
    .await;
    tokio::time::sleep(Duration::from_secs(60)).await;

    assert_eq!(sink.stats().published, 1, "{:?}", sink.stats());
    assert_eq!(env.count(Outcome::Started), 1);
    assert_eq!(env.count(Outcome::Succeeded), 1);
    {
        let world = env.switcher.world();
        let starts = world.calls.iter().filter(|c| c.op == "start").count();
        assert_eq!(starts, 1, "one container started");
        assert_eq!(world.serving(&name("web")), vec![id(1, 0)]);
    }
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_newer_target_during_probing_removes_the_first_candidate_and_promotes_the_second() {
    let env = Env::new();
    // Build 1 boots slowly: 20 probes, 1 s apart, before it is healthy.
    env.switcher.world().slow.insert(digest(1), 20);
    let running = env.start(vec![handover("web", "demo/app:latest")], 4);
    env.publish("demo/app:latest", 1).await;
    until("the first candidate to be probed", || {
        env.switcher.world().calls.iter().any(|c| c.op == "probe")
    })
    .await;
    env.publish("demo/app:latest", 2).await;

    let superseded = env
        .report("the supersede", is("web", Outcome::Superseded))
        .await;
    assert_eq!(superseded.to, Some(digest(1)));
    let done = env
        .report("the second deploy", is("web", Outcome::Succeeded))
        .await;
    assert_eq!(done.to, Some(digest(2)));
    {
        let world = env.switcher.world();
        let promoted_first = world
            .calls
            .iter()
            .any(|c| c.op == "promote" && c.instance == Some(id(1, 0)));
        assert!(
            !promoted_first,
            "the superseded candidate never took traffic"
        );
        let removed_first = world
            .calls
            .iter()
            .any(|c| c.op == "remove" && c.instance == Some(id(1, 0)));
        assert!(removed_first);
        assert_eq!(world.all(&name("web")), vec![id(2, 0)]);
        assert_eq!(world.serving(&name("web")), vec![id(2, 0)]);
    }
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_probe_rolls_back_reports_it_and_halts_the_build() {
    let env = Env::new();
    env.switcher.world().unhealthy.insert(digest(9));
    let running = env.start(vec![handover("web", "demo/app:latest")], 4);
    env.publish("demo/app:latest", 1).await;
    env.report("v1", is("web", Outcome::Succeeded)).await;
    let started = Instant::now();
    env.publish("demo/app:latest", 9).await;

    let report = env
        .report("the rollback", is("web", Outcome::RolledBack))
        .await;
    assert_eq!(report.to, Some(digest(9)));
    assert_eq!(report.from, Some(digest(1)));
    let reason = report.reason.unwrap_or_default();
    assert!(reason.contains("not healthy within 30s"), "{reason}");
    assert!(
        started.elapsed() >= Duration::from_secs(30),
        "probed until the deadline"
    );
    {
        let world = env.switcher.world();
        assert_eq!(
            world.serving(&name("web")),
            vec![id(1, 0)],
            "the old version still serves"
        );
        assert_eq!(
            world.all(&name("web")),
            vec![id(1, 0)],
            "the candidate was removed"
        );
    }
    let image = "demo/app:latest".parse().unwrap();
    let target = env.coordinator.target(&image).await.unwrap().unwrap();
    let halt = target
        .halts
        .first()
        .cloned()
        .expect("the build is halted for the fleet");
    assert_eq!(halt.node, "node-a");
    let status = running.handle.service("web").unwrap().status;
    assert_eq!(status.live, Some(digest(1)));
    assert_eq!(status.state.as_str(), "halted");
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_deploy_of_one_service_does_not_delay_another() {
    let env = Env::new();
    // Slower than everything else, within the default 10 min fetch timeout.
    let slow = "slow/app:latest".parse().unwrap();
    env.images
        .set_fetch_delay_for(&slow, Duration::from_secs(500));
    let services = vec![
        handover("slow", "slow/app:latest"),
        handover("fast", "fast/app:latest"),
    ];
    let running = env.start(services, 4);
    let started = Instant::now();
    env.publish("slow/app:latest", 1).await;
    env.publish("fast/app:latest", 2).await;

    env.report("the fast deploy", is("fast", Outcome::Succeeded))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        env.count(Outcome::Succeeded),
        1,
        "the slow one is still fetching"
    );
    env.report("the slow deploy", is("slow", Outcome::Succeeded))
        .await;
    assert!(started.elapsed() >= Duration::from_secs(500));
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn deploys_run_concurrently_up_to_the_limit() {
    let env = Env::new();
    env.images.set_fetch_delay(Duration::from_secs(10));
    let services: Vec<_> = (0..5)
        .map(|n| handover(&format!("s{n}"), &format!("app{n}:latest")))
        .collect();
    let running = env.start(services, 2);
    for n in 0..5 {
        env.publish(&format!("app{n}:latest"), n).await;
    }
    until("five deploys", || env.count(Outcome::Succeeded) == 5).await;
    assert_eq!(env.images.max_concurrent_fetches(), 2);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn transient_fetch_failures_are_retried_with_backoff() {
    let env = Env::new();
    env.images.fail_next("fetch", 2);
    let running = env.start(vec![handover("web", "demo/app:latest")], 4);
    let started = Instant::now();
    env.publish("demo/app:latest", 1).await;
    env.report("the deploy", is("web", Outcome::Succeeded))
        .await;
    assert_eq!(env.images.fetches().len(), 3);
    // Default backoff: 10 s, then 20 s.
    assert!(
        started.elapsed() >= Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    running.stop().await;
}

/// Deploys build 1, then publishes build 2, which boots too slowly to ever be healthy here,
/// and returns once its candidate is being probed.
async fn v1_live_and_a_slow_v2_probing(env: &Env) -> Running {
    env.switcher.world().slow.insert(digest(2), 1000);
    let running = env.start(vec![handover("web", "demo/app:latest")], 4);
    env.publish("demo/app:latest", 1).await;
    env.report("v1", is("web", Outcome::Succeeded)).await;
    env.publish("demo/app:latest", 2).await;
    until("the candidate to be probed", || {
        let world = env.switcher.world();
        world
            .calls
            .iter()
            .any(|c| c.op == "probe" && c.instance == Some(id(2, 0)))
    })
    .await;
    running
}

#[tokio::test(start_paused = true)]
async fn shutdown_removes_a_candidate_that_never_took_traffic() {
    let env = Env::new();
    let running = v1_live_and_a_slow_v2_probing(&env).await;
    running.stop().await;

    {
        let world = env.switcher.world();
        assert_eq!(
            world.all(&name("web")),
            vec![id(1, 0)],
            "no candidate left running"
        );
        assert_eq!(world.serving(&name("web")), vec![id(1, 0)]);
    }
    let report = env
        .report("the abort", is("web", Outcome::Superseded))
        .await;
    assert!(report.reason.unwrap_or_default().contains("shutting down"));
}

#[tokio::test(start_paused = true)]
async fn a_slow_notifier_never_delays_a_deploy() {
    let env = Env::new();
    env.notifier.set_delay(Duration::from_secs(3600));
    let running = env.start(vec![handover("web", "demo/app:latest")], 4);
    let live = |n| {
        let handle = running.handle.clone();
        move || {
            handle
                .service("web")
                .is_some_and(|v| v.status.live == Some(digest(n)))
        }
    };
    let started = Instant::now();
    env.publish("demo/app:latest", 1).await;
    until("v1 live", live(1)).await;
    env.publish("demo/app:latest", 2).await;
    until("v2 live", live(2)).await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn restart_after_a_crash_recovers_to_the_journaled_generation() {
    let journal = Arc::new(MemoryJournal::new());
    let env = Env::with_journal(journal.clone());
    let running = v1_live_and_a_slow_v2_probing(&env).await;
    // Crash: the process dies without shutting down; its proxy's state is gone with it.
    running.task.abort();
    env.switcher.world().crash();
    assert_eq!(
        env.switcher.world().all(&name("web")),
        vec![id(1, 0), id(2, 0)]
    );

    let calls_before = env.switcher.world().calls.len();
    let restarted = env.start(vec![handover("web", "demo/app:latest")], 4);
    until("recovery to remove the orphaned candidate", || {
        let world = env.switcher.world();
        world.calls[calls_before..]
            .iter()
            .any(|c| c.op == "remove" && c.instance == Some(id(2, 0)))
    })
    .await;
    // The build still wanted is tried again as a new generation; it never gets healthy here.
    let retried = is("web", Outcome::RolledBack);
    env.report("the retried build to roll back", retried).await;
    {
        let world = env.switcher.world();
        assert_eq!(
            world.all(&name("web")),
            vec![id(1, 0)],
            "exactly one generation is left"
        );
        assert_eq!(world.serving(&name("web")), vec![id(1, 0)]);
        let third = world
            .calls
            .iter()
            .any(|c| c.op == "start" && c.instance == Some(id(3, 0)));
        assert!(third, "generation 2 is never reused");
    }
    restarted.stop().await;
}

mockall::mock! {
    Journal {}
    #[async_trait]
    impl Journal for Journal {
        async fn load(&self, service: &ServiceName) -> Result<Option<JournalEntry>, JournalError>;
        async fn save(&self, service: &ServiceName, entry: &JournalEntry) -> Result<(), JournalError>;
    }
}

#[tokio::test(start_paused = true)]
async fn the_journal_is_written_before_the_candidate_starts_and_flipped_after_it_serves() {
    let mut journal = MockJournal::new();
    let mut order = mockall::Sequence::new();
    journal
        .expect_load()
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(None));
    journal
        .expect_save()
        .withf(|_, e| {
            e.live.is_none()
                && e.rollout.as_ref().map(|g| g.id) == Some(Generation(1))
                && e.next_generation == Generation(2)
        })
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _| Ok(()));
    journal
        .expect_save()
        .withf(|_, e| {
            e.live.as_ref().map(|g| g.id) == Some(Generation(1))
                && e.rollout.is_none()
                && e.target.is_some()
        })
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _| Ok(()));
    // Once the old generation is gone the deploy is forgotten, then reported.
    journal
        .expect_save()
        .withf(|_, e| e.live.as_ref().map(|g| g.id) == Some(Generation(1)) && e.target.is_none())
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _| Ok(()));
    let env = Env::with_journal(Arc::new(journal));
    let running = env.start(vec![handover("web", "demo/app:latest")], 4);
    env.publish("demo/app:latest", 1).await;
    env.report("the deploy", is("web", Outcome::Succeeded))
        .await;
    let calls = env.switcher.world().calls.clone();
    let start = calls.iter().position(|c| c.op == "start").expect("a start");
    let promote = calls
        .iter()
        .position(|c| c.op == "promote")
        .expect("a promote");
    assert!(start < promote);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_dead_live_container_is_restarted_by_the_periodic_resync() {
    let env = Env::new();
    let running = env.start(vec![handover("web", "demo/app:latest")], 4);
    env.publish("demo/app:latest", 1).await;
    env.report("v1", is("web", Outcome::Succeeded)).await;
    {
        let mut world = env.switcher.world();
        let key = (name("web"), id(1, 0));
        let instance = world.instances.get_mut(&key).expect("the live container");
        instance.running = false;
        instance.serving = false;
    }
    let died = Instant::now();
    until("the resync to bring it back", || {
        env.switcher.world().serving(&name("web")) == vec![id(1, 0)]
    })
    .await;
    assert!(
        died.elapsed() <= Duration::from_secs(16),
        "within one resync period: {:?}",
        died.elapsed()
    );
    assert_eq!(
        running.handle.service("web").unwrap().status.state.as_str(),
        "idle"
    );
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reports_and_statuses_written_while_the_coordinator_is_down_arrive_once_it_is_back() {
    let env = Env::new();
    let flaky = Arc::new(FakeCoordinator::new("node-a"));
    let mut ports = env.ports();
    ports.coordinator = flaky.clone();
    let driver = Driver::new(
        DriverConfig::new("node-a"),
        ports,
        vec![handover("web", "demo/app:latest")],
    )
    .unwrap();
    let (fire, stop) = Shutdown::new();
    let task = tokio::spawn(driver.run(wait(stop)));
    let request = PublishRequest::new(
        "demo/app:latest".parse().unwrap(),
        digest(1),
        Source::new("test"),
    );
    // The writes of history and statuses fail for a while, as when etcd is restarting.
    flaky.fail_next("record", 4);
    flaky.fail_next("report_status", 40);
    flaky.publish(request).await.unwrap();
    env.report("the deploy", is("web", Outcome::Succeeded))
        .await;
    assert!(
        flaky.inner().history(None, 10).await.unwrap().is_empty(),
        "the first write failed"
    );

    until("the report to reach the history", || {
        futures_now(flaky.inner().history(None, 10)).is_some_and(|h| h.len() == 1)
    })
    .await;
    until("the status to be current", || {
        futures_now(flaky.inner().statuses()).is_some_and(|s| {
            s.len() == 1 && s[0].state.as_str() == "idle" && s[0].live == Some(digest(1))
        })
    })
    .await;
    let records = flaky.calls().iter().filter(|c| **c == "record").count();
    assert!(
        records >= 5,
        "four failed writes, then the one that landed: {records}"
    );
    fire.fire();
    within("the driver to shut down", task)
        .await
        .expect("driver task");
}

#[tokio::test(start_paused = true)]
async fn after_a_long_outage_the_newest_status_is_written_within_seconds() {
    let env = Env::new();
    let flaky = Arc::new(FakeCoordinator::new("node-a"));
    let mut ports = env.ports();
    ports.coordinator = flaky.clone();
    // No periodic resync: only the publisher's own retries may write the status.
    let mut config = DriverConfig::new("node-a");
    config.resync = None;
    let driver = Driver::new(config, ports, vec![handover("web", "demo/app:latest")]).unwrap();
    let (fire, stop) = Shutdown::new();
    let task = tokio::spawn(driver.run(wait(stop)));
    let request = PublishRequest::new(
        "demo/app:latest".parse().unwrap(),
        digest(1),
        Source::new("test"),
    );
    // Status writes fail while the host deploys, and for a minute after (etcd away).
    flaky.fail_next("report_status", u32::MAX);
    flaky.publish(request).await.unwrap();
    env.report("the deploy", is("web", Outcome::Succeeded))
        .await;
    tokio::time::sleep(Duration::from_secs(40)).await;
    flaky.fail_next("report_status", 0);
    let back = Instant::now();
    until("the status to be current", || {
        futures_now(flaky.inner().statuses()).is_some_and(|s| {
            s.len() == 1 && s[0].state.as_str() == "idle" && s[0].live == Some(digest(1))
        })
    })
    .await;
    assert!(
        back.elapsed() <= Duration::from_secs(3),
        "the status landed {:?} after the store came back",
        back.elapsed()
    );
    fire.fire();
    within("the driver to shut down", task)
        .await
        .expect("driver task");
}

/// Polls a future once: the memory coordinator answers without waiting.
fn futures_now<T>(
    future: impl Future<Output = Result<T, deployer_core::ports::CoordinatorError>>,
) -> Option<T> {
    let waker = std::task::Waker::noop();
    let mut context = std::task::Context::from_waker(waker);
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(Ok(value)) => Some(value),
        _ => None,
    }
}
