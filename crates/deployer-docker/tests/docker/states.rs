//! The engine's states and events, as the engine gives them: a candidate paused while it is
//! probed fails its probe by the deadline, saying it is paused, and is not taken for one that
//! exited; a live container killed by hand leaves the proxy at once and is repaired on the
//! engine's event, not at the next periodic scan.

use std::time::{Duration, Instant};

use deployer_core::Outcome;
use deployer_testkit::Sweep;
use deployer_testkit::images::{self, App};

use crate::support::{
    ClientLoop, Harness, bounded, build_image, containers_of, eventually, fetch_body,
    handover_service, rebuilt,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_candidate_fails_by_its_deadline_and_says_it_is_paused() -> anyhow::Result<()> {
    bounded(Duration::from_secs(120), "a paused candidate", async {
        let sweep = Sweep::new("states-paused");
        let docker = images::docker().await;
        let (v1, id1) = build_image(&docker, &sweep, "web", "v1", App::http("v1"), false).await?;
        // Boots for longer than it takes to pause it, so it is paused before it ever answers.
        let slow = App::SlowHttp {
            version: "v2".into(),
            boot: Duration::from_secs(2),
        };
        let (_, id2) = build_image(&docker, &sweep, "web", "v2", slow, false).await?;
        let tracked = v1.with_tag("live")?;
        let deadline = Duration::from_secs(4);
        let spec = handover_service(&sweep, "web", &tracked, deadline)?;
        let service = spec.name().to_string();
        let harness = Harness::start(&docker, vec![spec]).await?;
        let rev = harness.publish(&tracked, &id1).await?;
        assert_eq!(
            harness.report(rev, Duration::from_secs(30)).await?.outcome,
            Outcome::Succeeded
        );

        let rev = harness.publish(&tracked, &id2).await?;
        let candidate = eventually(
            Duration::from_secs(20),
            "the candidate to start",
            || async {
                let all = containers_of(&docker, &service).await.ok()?;
                all.into_iter()
                    .find(|(name, running)| *running && name.contains("-g2-"))
                    .map(|(name, _)| name)
            },
        )
        .await?;
        docker.pause_container(&candidate).await?;
        let paused_at = Instant::now();
        let report = harness.report(rev, Duration::from_secs(30)).await?;
        let waited = paused_at.elapsed();
        assert_eq!(report.outcome, Outcome::RolledBack, "{report:?}");
        let reason = report.reason.clone().unwrap_or_default();
        assert!(reason.contains("paused"), "{reason}");
        assert!(!reason.contains("exit code"), "{reason}");
        // Probed until its deadline (measured from the start, a little before the pause),
        // not given up at the first look.
        assert!(
            waited >= deadline / 2,
            "gave up {waited:?} after the pause, the deadline is {deadline:?}"
        );
        harness.stop().await
    })
    .await?
}

/// What one `docker kill` of a live container cost, under a client loop.
struct KillCost {
    /// From the kill until its backend left the proxy.
    left: Duration,
    /// From the kill until the service served all its replicas again.
    repaired: Duration,
    ok: u64,
    failed: u64,
    errors: Vec<String>,
}

/// What is done to a live container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `docker kill`.
    Kill,
    /// `docker rm -f`: nothing is left to restart.
    Remove,
}

/// Deploys `replicas` of v1, kills one live container under a client loop, and waits for the
/// repair (started by the engine's event: the periodic scan is off).
async fn kill_a_live_container(replicas: u32, label: &str) -> anyhow::Result<KillCost> {
    break_a_live_container(replicas, label, Fault::Kill).await
}

async fn break_a_live_container(
    replicas: u32,
    label: &str,
    fault: Fault,
) -> anyhow::Result<KillCost> {
    let sweep = Sweep::new(label);
    let docker = images::docker().await;
    let (v1, id1) = build_image(&docker, &sweep, "web", "v1", App::http("v1"), false).await?;
    let tracked = v1.with_tag("live")?;
    let spec = handover_service(&sweep, "web", &tracked, Duration::from_secs(10))?;
    let spec = rebuilt(&spec, |b| b.replicas(replicas))?;
    let service = spec.name().to_string();
    let listen = spec.strategy().handover().unwrap().listen();
    let harness = Harness::start_with(&docker, vec![spec], |c| c.resync = None).await?;
    let rev = harness.publish(&tracked, &id1).await?;
    assert_eq!(
        harness.report(rev, Duration::from_secs(30)).await?.outcome,
        Outcome::Succeeded
    );
    let name: deployer_core::ServiceName = service.parse()?;
    let switcher = harness.switcher.clone();
    let live_backends = || async { switcher.backends(&name).await.map(|b| b.len()).unwrap_or(0) };
    assert_eq!(live_backends().await, replicas as usize);
    let (live, _) = containers_of(&docker, &service).await?.remove(0);
    let clients = ClientLoop::start(listen, 1, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;

    match fault {
        Fault::Kill => {
            docker
                .kill_container(
                    &live,
                    None::<bollard::query_parameters::KillContainerOptions>,
                )
                .await?
        }
        Fault::Remove => {
            docker
                .remove_container(
                    &live,
                    Some(bollard::query_parameters::RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await?
        }
    }
    let killed = Instant::now();
    eventually(
        Duration::from_secs(5),
        "the backend to leave the proxy",
        || async { (live_backends().await < replicas as usize).then_some(()) },
    )
    .await?;
    let left = killed.elapsed();
    eventually(Duration::from_secs(30), "the repair", || async {
        let serving = live_backends().await == replicas as usize;
        (serving && fetch_body(listen).await.ok().as_deref() == Some("v1\n")).then_some(())
    })
    .await?;
    let repaired = killed.elapsed();
    let (ok, failed, errors) = clients.finish().await;
    let report = bounded(
        Duration::from_secs(10),
        "the repair's report",
        harness
            .notifier
            .wait_for(|r| r.outcome == Outcome::Repaired),
    )
    .await?;
    let cause = report.reason.clone().unwrap_or_default();
    if fault == Fault::Kill {
        assert!(cause.contains("started again"), "{cause}");
    }
    eprintln!(
        "{fault:?} of a live container, {replicas} replica(s), repaired ({cause}): out of the proxy after {} ms, serving again after {} ms; requests ok {ok}, failed {failed}",
        left.as_millis(),
        repaired.as_millis()
    );
    harness.stop().await?;
    Ok(KillCost {
        left,
        repaired,
        ok,
        failed,
        errors,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_live_container_leaves_the_proxy_at_once_and_is_repaired_on_the_event()
-> anyhow::Result<()> {
    bounded(Duration::from_secs(120), "a killed live container", async {
        let cost = kill_a_live_container(1, "states-killed").await?;
        assert!(cost.left < Duration::from_secs(5));
        assert!(
            cost.repaired < Duration::from_secs(5),
            "repaired {:?} after the kill",
            cost.repaired
        );
        assert!(cost.ok > 0);
        // Requests that found no live container waited for the restarted one; at most the
        // few in flight on the killed one may fail (before the proxy held them: about 130).
        assert!(
            cost.failed < 10,
            "{} failed: {:?}",
            cost.failed,
            cost.errors
        );
        Ok(())
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_container_removed_by_hand_is_replaced_and_reported() -> anyhow::Result<()> {
    bounded(
        Duration::from_secs(120),
        "a removed live container",
        async {
            let cost = break_a_live_container(1, "states-removed", Fault::Remove).await?;
            assert!(
                cost.repaired < Duration::from_secs(10),
                "repaired {:?} after the removal",
                cost.repaired
            );
            assert!(cost.ok > 0);
            Ok(())
        },
    )
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_a_killed_one_costs_no_request() -> anyhow::Result<()> {
    bounded(Duration::from_secs(120), "a killed replica", async {
        let cost = kill_a_live_container(2, "states-killed-two").await?;
        assert!(
            cost.repaired < Duration::from_secs(5),
            "repaired {:?} after the kill",
            cost.repaired
        );
        // The requests the dead one refused, or lost before it answered, were sent again to
        // the other (they are idempotent GETs without a body).
        assert_eq!(cost.failed, 0, "{:?}", cost.errors);
        assert!(cost.ok > 0);
        Ok(())
    })
    .await?
}

/// Runs `sh -c script` in `container` and waits for it to end.
async fn exec(docker: &bollard::Docker, container: &str, script: &str) -> anyhow::Result<()> {
    use bollard::exec::{CreateExecOptions, StartExecResults};
    use futures_util::StreamExt;
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(vec!["/bin/sh", "-c", script]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await?;
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&exec.id, None).await?
    {
        while output.next().await.is_some() {}
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_live_container_leaves_the_proxy_and_comes_back_when_healthy()
-> anyhow::Result<()> {
    bounded(
        Duration::from_secs(120),
        "an unhealthy live container",
        async {
            let sweep = Sweep::new("states-unhealthy");
            let docker = images::docker().await;
            // The image's own HEALTHCHECK fetches /health every second.
            let (v1, id1) = build_image(&docker, &sweep, "hc", "v1", App::http("v1"), true).await?;
            let tracked = v1.with_tag("live")?;
            let spec = handover_service(&sweep, "hc", &tracked, Duration::from_secs(30))?;
            let health = deployer_core::service::HealthCheck::new(
                deployer_core::service::Probe::Docker,
                Duration::from_millis(200),
                Duration::from_secs(1),
                Duration::from_secs(30),
                1,
            )?
            .with_watch(Duration::ZERO);
            let spec = rebuilt(&spec, |b| b.health(health))?;
            let service = spec.name().to_string();
            let listen = spec.strategy().handover().unwrap().listen();
            // No periodic scan: only the engine's events can move it.
            let harness = Harness::start_with(&docker, vec![spec], |c| c.resync = None).await?;
            let rev = harness.publish(&tracked, &id1).await?;
            assert_eq!(
                harness.report(rev, Duration::from_secs(40)).await?.outcome,
                Outcome::Succeeded
            );
            let name: deployer_core::ServiceName = service.parse()?;
            let switcher = harness.switcher.clone();
            let live_backends =
                || async { switcher.backends(&name).await.map(|b| b.len()).unwrap_or(0) };
            let (live, _) = containers_of(&docker, &service).await?.remove(0);

            exec(&docker, &live, "rm /www/health").await?;
            eventually(
                Duration::from_secs(15),
                "the unhealthy backend to leave the proxy",
                || async { (live_backends().await == 0).then_some(()) },
            )
            .await?;
            exec(&docker, &live, "echo ok > /www/health").await?;
            eventually(
                Duration::from_secs(30),
                "the healthy backend to come back",
                || async {
                    let back = live_backends().await > 0;
                    (back && fetch_body(listen).await.ok().as_deref() == Some("v1\n")).then_some(())
                },
            )
            .await?;
            let (same, _) = containers_of(&docker, &service).await?.remove(0);
            assert_eq!(
                same, live,
                "the same container serves again, not a replacement"
            );
            harness.stop().await
        },
    )
    .await?
}
