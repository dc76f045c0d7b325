//! What the driver does with failures and refusals: halts belong to one (service, build) pair,
//! only the build's own fault halts it, engine hiccups are retried, permanent failures fail at
//! once, and a refused publish is visible. Every port faked, time paused.

mod support;

use deployer_core::driver::Submission;
use deployer_core::ports::{Coordinator, FailureKind, ImageEvent};
use deployer_core::target::Source;
use deployer_core::testing::digest;
use deployer_core::{Outcome, ServiceState};
use support::*;

const IMAGE: &str = "demo/app:latest";

/// The coordinator's current target of [`IMAGE`].
async fn target(env: &Env) -> deployer_core::Target {
    env.coordinator
        .target(&IMAGE.parse().unwrap())
        .await
        .unwrap()
        .expect("a target")
}

#[tokio::test(start_paused = true)]
async fn one_broken_service_does_not_halt_another_on_the_same_build() {
    let env = Env::new();
    env.switcher
        .world()
        .broken
        .insert(name("worker"), FailureKind::Build);
    let running = env.start(vec![handover("web", IMAGE), handover("worker", IMAGE)], 4);
    env.publish(IMAGE, 1).await;
    env.report("web's deploy", is("web", Outcome::Succeeded))
        .await;
    let failed = env
        .report("worker's deploy", is("worker", Outcome::Failed))
        .await;
    assert!(failed.reason.unwrap().contains("cannot be started"));
    let target = target(&env).await;
    assert!(
        target.halt_for(&name("worker")).is_some(),
        "worker is halted for the build"
    );
    assert!(target.halt_for(&name("web")).is_none(), "web is not");
    assert_eq!(env.count(Outcome::Skipped), 0, "nothing was skipped");

    // The operator mends the worker and deploys it again: only its own halt is lifted.
    env.switcher.world().broken.clear();
    env.images.set_tag(&IMAGE.parse().unwrap(), digest(1));
    running
        .handle
        .deploy("worker", None)
        .await
        .expect("deploy worker");
    let ok = env
        .report("worker again", is("worker", Outcome::Succeeded))
        .await;
    assert_eq!(ok.to, Some(digest(1)));
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_engine_hiccup_during_start_is_retried_and_halts_nothing() {
    let env = Env::new();
    env.switcher
        .world()
        .fail_next_with("start", 2, FailureKind::Transient);
    let running = env.start(vec![handover("web", IMAGE)], 4);
    env.publish(IMAGE, 1).await;
    env.report("the deploy", is("web", Outcome::Succeeded))
        .await;
    let target = target(&env).await;
    assert!(
        target.halts.is_empty(),
        "the build was never blamed: {:?}",
        target.halts
    );
    assert_eq!(env.count(Outcome::Failed), 0);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_configuration_the_engine_refuses_fails_at_once_without_a_halt() {
    let env = Env::new();
    env.switcher
        .world()
        .broken
        .insert(name("web"), FailureKind::Permanent);
    let running = env.start(vec![handover("web", IMAGE)], 4);
    env.publish(IMAGE, 1).await;
    let failed = env.report("the deploy", is("web", Outcome::Failed)).await;
    assert!(failed.reason.unwrap().contains("cannot be started"));
    let starts = env
        .switcher
        .world()
        .calls
        .iter()
        .filter(|c| c.op == "start")
        .count();
    assert_eq!(starts, 1, "no retries: asking again cannot help");
    let target = target(&env).await;
    assert!(target.halts.is_empty(), "not the build's fault");
    let view = running.handle.service("web").unwrap();
    assert_eq!(view.status.state, ServiceState::Failed);
    assert!(view.status.message.unwrap().contains("cannot be started"));
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_build_missing_from_the_registry_fails_at_once_and_names_the_cause() {
    let env = Env::new();
    env.images.set_missing(digest(1));
    let running = env.start(vec![handover("web", IMAGE)], 4);
    env.publish(IMAGE, 1).await;
    let failed = env.report("the deploy", is("web", Outcome::Failed)).await;
    let reason = failed.reason.unwrap();
    assert!(reason.contains("not found"), "{reason}");
    assert_eq!(
        env.images.fetches().len(),
        1,
        "no backoff rounds for a missing image"
    );
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_publish_shows_in_status_and_reaches_the_notifiers() {
    let env = Env::new();
    let running = env.start(vec![handover("web", IMAGE)], 4);
    let sink = running.handle.sink();
    let event = |n: u8, id: &str| {
        let mut e =
            ImageEvent::new(IMAGE.parse().unwrap(), Source::new("registry")).with_digest(digest(n));
        e.delivery_id = Some(id.to_owned());
        e
    };
    assert_eq!(sink.submit(event(1, "e1")), Ok(Submission::Queued));
    env.report("v1", is("web", Outcome::Succeeded)).await;
    // An older event, redated to look new, arriving after the sink forgot its id (a restart).
    let mut old = event(2, "e0");
    old.event_time = Some(deployer_core::Timestamp::from_millis(1));
    assert_eq!(sink.submit(old), Ok(Submission::Queued));
    let skipped = env.report("the refusal", is("web", Outcome::Skipped)).await;
    assert_eq!(skipped.to, Some(digest(2)));
    assert!(skipped.reason.as_deref().unwrap().contains("refused"));
    let message = running
        .handle
        .service("web")
        .unwrap()
        .status
        .message
        .unwrap();
    assert!(message.contains("refused"), "{message}");
    assert_eq!(running.handle.sink().stats().stale, 1, "counted");
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_first_deploy_is_failed_not_rolled_back() {
    let env = Env::new();
    env.switcher.world().unhealthy.insert(digest(1));
    let running = env.start(vec![handover("web", IMAGE)], 4);
    env.publish(IMAGE, 1).await;
    let failed = env.report("the deploy", |r| r.outcome.is_final()).await;
    assert_eq!(
        failed.outcome,
        Outcome::Failed,
        "nothing was live to roll back to"
    );
    assert_eq!(env.count(Outcome::RolledBack), 0);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_build_that_crashes_after_taking_traffic_is_rolled_back_within_the_watch() {
    let env = Env::new();
    // Healthy for its first three probes (the rollout's, then two of the watch), then dead.
    env.switcher.world().crashes_after.insert(digest(2), 3);
    let running = env.start(vec![handover("web", IMAGE)], 4);
    env.publish(IMAGE, 1).await;
    env.report("v1", is("web", Outcome::Succeeded)).await;
    let promoted = tokio::time::Instant::now();
    env.publish(IMAGE, 2).await;
    let report = env
        .report("v2", |r| r.outcome.is_final() && r.to == Some(digest(2)))
        .await;
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:?}");
    let reason = report.reason.unwrap();
    assert!(
        reason.contains("exited") && reason.contains("after taking traffic"),
        "{reason}"
    );
    assert!(
        promoted.elapsed()
            < deployer_core::service::DEFAULT_WATCH + std::time::Duration::from_secs(5),
        "caught within the watch: {:?}",
        promoted.elapsed()
    );
    // Traffic went straight back to v1, which never stopped, and the build is halted.
    {
        let world = env.switcher.world();
        assert_eq!(world.serving(&name("web")).len(), 1);
        let serving = world.serving(&name("web"))[0];
        assert_eq!(serving.generation.0, 1, "v1 serves again");
        assert!(
            !world
                .calls
                .iter()
                .any(|c| c.op == "retire" && c.instance == Some(serving)),
            "v1 was never stopped"
        );
    }
    let target = target(&env).await;
    assert!(target.halt_for(&name("web")).is_some());
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_watched_build_that_stays_healthy_retires_the_old_one_after_the_watch() {
    let env = Env::new();
    let running = env.start(vec![handover("web", IMAGE)], 4);
    env.publish(IMAGE, 1).await;
    env.report("v1", is("web", Outcome::Succeeded)).await;
    env.publish(IMAGE, 2).await;
    until("v2 watched", || {
        running.handle.service("web").unwrap().status.state == ServiceState::Watching
    })
    .await;
    {
        let world = env.switcher.world();
        assert_eq!(
            world.all(&name("web")).len(),
            2,
            "v1 stands by during the watch"
        );
        assert_eq!(world.serving(&name("web"))[0].generation.0, 2);
    }
    env.report("v2", |r| {
        r.outcome == Outcome::Succeeded && r.to == Some(digest(2))
    })
    .await;
    assert_eq!(env.switcher.world().all(&name("web")).len(), 1);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_tag_the_registry_does_not_have_shows_in_status_and_is_reported_once() {
    let env = Env::new();
    let running = env.start(vec![handover("web", IMAGE)], 4);
    let sink = running.handle.sink();
    // No digest: the tag is resolved, and the registry has no such tag.
    for _ in 0..3 {
        let event = ImageEvent::new(IMAGE.parse().unwrap(), Source::new("dockerhub"));
        assert_eq!(sink.submit(event), Ok(Submission::Queued));
    }
    let failed = env
        .report("the resolve failure", is("web", Outcome::Failed))
        .await;
    assert!(
        failed.reason.as_deref().unwrap().contains("not found"),
        "{failed:?}"
    );
    until("all three events ingested", || {
        running.handle.sink().stats().failed == 3
    })
    .await;
    assert_eq!(
        env.count(Outcome::Failed),
        1,
        "the same problem is reported once"
    );
    let message = running
        .handle
        .service("web")
        .unwrap()
        .status
        .message
        .unwrap();
    assert!(message.contains("resolving the digest failed"), "{message}");
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_repair_of_a_dead_live_container_is_reported_with_its_cause() {
    let env = Env::new();
    let running = env.start(vec![handover("web", IMAGE)], 4);
    env.publish(IMAGE, 1).await;
    env.report("v1", is("web", Outcome::Succeeded)).await;
    {
        let mut world = env.switcher.world();
        let live = world
            .instances
            .iter_mut()
            .find(|((s, _), _)| s == &name("web"))
            .map(|(_, i)| i)
            .expect("the live container");
        live.running = false;
        live.serving = false;
    }
    let repaired = env.report("the repair", is("web", Outcome::Repaired)).await;
    let cause = repaired.reason.unwrap();
    assert!(cause.contains("had stopped: started again"), "{cause}");
    assert_eq!(repaired.to, Some(digest(1)), "the same build serves again");
    assert_eq!(env.switcher.world().serving(&name("web")).len(), 1);
    // A start that finds everything as it should be reports nothing.
    assert_eq!(env.count(Outcome::Repaired), 1);
    running.stop().await;
}

/// `web` as a canary: 20 % of clients for a 2-minute hold.
fn canary(name: &str, image: &str) -> deployer_core::ServiceSpec {
    use deployer_core::service::{Canary, Strategy};
    let spec = handover(name, image);
    let handover = spec.strategy().handover().unwrap().clone();
    let canary = Canary::new(handover, 20, CANARY_HOLD, Some("x-canary".into())).unwrap();
    deployer_core::ServiceSpec::builder(name, image.parse().unwrap())
        .strategy(Strategy::Canary(canary))
        .health(spec.health().clone())
        .build()
        .unwrap()
}

const CANARY_HOLD: std::time::Duration = std::time::Duration::from_secs(120);

#[tokio::test(start_paused = true)]
async fn a_canary_shares_traffic_for_its_hold_then_takes_it_all() {
    let env = Env::new();
    let running = env.start(vec![canary("web", IMAGE)], 4);
    env.publish(IMAGE, 1).await;
    env.report("v1", is("web", Outcome::Succeeded)).await;
    env.publish(IMAGE, 2).await;
    until("v2 on hold", || {
        running.handle.service("web").unwrap().status.state == ServiceState::Watching
    })
    .await;
    let holding = tokio::time::Instant::now();
    {
        let world = env.switcher.world();
        assert_eq!(
            world.all(&name("web")).len(),
            2,
            "v1 runs beside the canary"
        );
        assert!(
            !world.calls.iter().any(|c| c.op == "retire"),
            "nothing retired during the hold"
        );
    }
    env.report("v2", |r| {
        r.outcome == Outcome::Succeeded && r.to == Some(digest(2))
    })
    .await;
    assert!(
        holding.elapsed() >= CANARY_HOLD - std::time::Duration::from_secs(2),
        "the canary held for {:?}",
        holding.elapsed()
    );
    assert_eq!(env.switcher.world().all(&name("web")).len(), 1);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_canary_that_fails_during_its_hold_is_rolled_back_and_the_old_build_never_stopped() {
    let env = Env::new();
    // Healthy for the rollout's probe and one of the hold's, then dead.
    env.switcher.world().crashes_after.insert(digest(2), 2);
    let running = env.start(vec![canary("web", IMAGE)], 4);
    env.publish(IMAGE, 1).await;
    env.report("v1", is("web", Outcome::Succeeded)).await;
    let started = tokio::time::Instant::now();
    env.publish(IMAGE, 2).await;
    let report = env
        .report("v2", |r| r.outcome.is_final() && r.to == Some(digest(2)))
        .await;
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:?}");
    assert!(started.elapsed() < CANARY_HOLD, "caught within the hold");
    {
        let world = env.switcher.world();
        let v1 = world
            .all(&name("web"))
            .into_iter()
            .find(|id| id.generation.0 == 1)
            .expect("v1 still there");
        assert!(
            !world
                .calls
                .iter()
                .any(|c| c.op == "retire" && c.instance == Some(v1)),
            "v1 was never stopped"
        );
    }
    running.stop().await;
}
