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
    handover_service,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_live_container_leaves_the_proxy_at_once_and_is_repaired_on_the_event()
-> anyhow::Result<()> {
    bounded(Duration::from_secs(120), "a killed live container", async {
        let sweep = Sweep::new("states-killed");
        let docker = images::docker().await;
        let (v1, id1) = build_image(&docker, &sweep, "web", "v1", App::http("v1"), false).await?;
        let tracked = v1.with_tag("live")?;
        let spec = handover_service(&sweep, "web", &tracked, Duration::from_secs(10))?;
        let service = spec.name().to_string();
        let listen = spec.strategy().handover().unwrap().listen();
        // No periodic scan: only the engine's event can start the repair.
        let harness = Harness::start_with(&docker, vec![spec], |c| c.resync = None).await?;
        let rev = harness.publish(&tracked, &id1).await?;
        assert_eq!(
            harness.report(rev, Duration::from_secs(30)).await?.outcome,
            Outcome::Succeeded
        );
        let proxy = harness.switcher.proxy(&service.parse()?).unwrap();
        let (live, _) = containers_of(&docker, &service).await?.remove(0);
        let clients = ClientLoop::start(listen, 1, 1);
        tokio::time::sleep(Duration::from_millis(300)).await;

        docker.kill_container(&live, None::<bollard::query_parameters::KillContainerOptions>).await?;
        let killed = Instant::now();
        eventually(Duration::from_secs(5), "the backend to leave the proxy", || async {
            proxy.backends().is_empty().then_some(())
        })
        .await?;
        let left = killed.elapsed();
        eventually(Duration::from_secs(30), "the repair", || async {
            (fetch_body(listen).await.ok().as_deref() == Some("v1\n")).then_some(())
        })
        .await?;
        let repaired = killed.elapsed();
        let (ok, failed, _) = clients.finish().await;
        let report = bounded(
            Duration::from_secs(10),
            "the repair's report",
            harness
                .notifier
                .wait_for(|r| r.outcome == Outcome::Repaired),
        )
        .await?;
        let cause = report.reason.clone().unwrap_or_default();
        assert!(cause.contains("started again"), "{cause}");
        eprintln!(
            "docker kill of the live container: out of the proxy after {} ms, serving again after {} ms; requests ok {ok}, failed {failed}",
            left.as_millis(),
            repaired.as_millis()
        );
        assert!(repaired < Duration::from_secs(5), "repaired {repaired:?} after the kill");
        harness.stop().await
    })
    .await?
}
