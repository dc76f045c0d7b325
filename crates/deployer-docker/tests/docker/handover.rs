//! The handover strategy through the real driver: zero failed requests across deploys,
//! rollback of bad images, supersede during probing.

use std::time::Duration;

use deployer_core::Outcome;
use deployer_core::service::Strategy;
use deployer_proxy::ResponseClass;
use deployer_testkit::Sweep;
use deployer_testkit::images::{self, App};

use crate::support::{
    ClientLoop, Harness, bounded, build_image, containers_of, eventually, fetch_body,
    handover_service, rebuilt,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_deploys_without_a_failed_request() -> anyhow::Result<()> {
    bounded(Duration::from_secs(150), "twenty handover deploys", async {
        let sweep = Sweep::new("handover-twenty");
        let docker = images::docker().await;
        let (v1, id1) = build_image(&docker, &sweep, "web", "v1", App::http("v1"), false).await?;
        let (_, id2) = build_image(&docker, &sweep, "web", "v2", App::http("v2"), false).await?;
        let tracked = v1.with_tag("live")?;
        let spec = handover_service(&sweep, "web", &tracked, Duration::from_secs(10))?;
        let listen = spec.strategy().handover().unwrap().listen();
        let service = spec.name().to_string();
        let harness = Harness::start(&docker, vec![spec]).await?;

        let rev = harness.publish(&tracked, &id1).await?;
        let report = harness.report(rev, Duration::from_secs(30)).await?;
        assert_eq!(report.outcome, Outcome::Succeeded, "{report:?}");
        assert_eq!(fetch_body(listen).await?, "v1\n");

        let clients = ClientLoop::start(listen, 2, 2);
        for n in 0..20 {
            let (id, version) = if n % 2 == 0 {
                (&id2, "v2\n")
            } else {
                (&id1, "v1\n")
            };
            let rev = harness.publish(&tracked, id).await?;
            let report = harness.report(rev, Duration::from_secs(30)).await?;
            assert_eq!(report.outcome, Outcome::Succeeded, "deploy {n}: {report:?}");
            assert_eq!(fetch_body(listen).await?, version, "deploy {n}");
        }
        let (ok, failed, errors) = clients.finish().await;
        assert_eq!(failed, 0, "failed requests: {errors:?}");
        assert!(ok > 100, "only {ok} requests went through");

        // Exactly one container is left, it runs, and it is the proxy's only backend.
        let left = containers_of(&docker, &service).await?;
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].1, "{left:?}");
        let name: deployer_core::ServiceName = service.parse()?;
        let switcher = harness.switcher.clone();
        let live_backends =
            || async { switcher.backends(&name).await.map(|b| b.len()).unwrap_or(0) };
        assert_eq!(live_backends().await, 1);
        // Metrics by generation: every generation that served keeps its counts after its
        // backend is gone, and only the last one is live.
        let stats = harness.switcher.proxy_stats().await;
        let web = stats
            .iter()
            .find(|s| s.service.to_string() == service)
            .expect("the service's proxy stats");
        let generations = &web.generations;
        assert!(generations.len() > 2, "{generations:?}");
        assert!(generations.iter().all(|g| g.group.starts_with('g')));
        let live: Vec<_> = generations.iter().filter(|g| g.live_backends > 0).collect();
        assert_eq!(live.len(), 1, "{generations:?}");
        let served: u64 = generations
            .iter()
            .map(|g| g.answers.get(ResponseClass::Success))
            .sum();
        assert!(served >= ok, "{served} answers counted for {ok} requests");
        assert!(web.totals.latency.count() >= ok, "{:?}", web.totals.latency);
        harness.stop().await
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_images_roll_back_and_a_newer_target_supersedes_a_probing_candidate()
-> anyhow::Result<()> {
    bounded(Duration::from_secs(120), "handover failures", async {
        let sweep = Sweep::new("handover-failures");
        let docker = images::docker().await;
        let (v1, id1) = build_image(&docker, &sweep, "api", "v1", App::http("v1"), false).await?;
        let (_, never) =
            build_image(&docker, &sweep, "api", "never", App::NeverHealthy, false).await?;
        let (_, exits) =
            build_image(&docker, &sweep, "api", "exits", App::ExitsAtStart, false).await?;
        let slow_app = App::SlowHttp {
            version: "slow".into(),
            boot: Duration::from_secs(4),
        };
        let (_, slow) = build_image(&docker, &sweep, "api", "slow", slow_app, false).await?;
        let (_, id2) = build_image(&docker, &sweep, "api", "v2", App::http("v2"), false).await?;
        let tracked = v1.with_tag("live")?;
        let spec = handover_service(&sweep, "api", &tracked, Duration::from_secs(2))?;
        let Strategy::Handover(handover) = spec.strategy().clone() else {
            unreachable!()
        };
        let listen = handover.listen();
        let service = spec.name().to_string();
        let harness = Harness::start(&docker, vec![spec]).await?;
        let rev = harness.publish(&tracked, &id1).await?;
        assert_eq!(
            harness.report(rev, Duration::from_secs(30)).await?.outcome,
            Outcome::Succeeded
        );
        let clients = ClientLoop::start(listen, 1, 1);

        // Never healthy (rolled back at the deadline) and exits at start (rolled back with
        // its exit code): the old one keeps serving, the candidate is removed.
        for (bad, why) in [(&never, "not healthy"), (&exits, "exit code 1")] {
            let rev = harness.publish(&tracked, bad).await?;
            let report = harness.report(rev, Duration::from_secs(30)).await?;
            assert_eq!(report.outcome, Outcome::RolledBack, "{report:?}");
            let reason = report.reason.clone().unwrap_or_default();
            assert!(reason.contains(why), "{report:?}");
            assert_eq!(fetch_body(listen).await?, "v1\n");
            assert_eq!(containers_of(&docker, &service).await?.len(), 1);
        }

        // A slow candidate is superseded by v2 while it is probed, then v2 takes over. The
        // health deadline is 2 s, shorter than the boot: only a supersede can save it from a
        // rollback, so the order of reports proves the supersede happened.
        let rev_slow = harness.publish(&tracked, &slow).await?;
        eventually(
            Duration::from_secs(10),
            "the slow candidate to start",
            || async {
                let all = containers_of(&docker, &service).await.ok()?;
                (all.len() == 2).then_some(())
            },
        )
        .await?;
        let rev2 = harness.publish(&tracked, &id2).await?;
        let superseded = harness.report(rev_slow, Duration::from_secs(30)).await?;
        assert_eq!(superseded.outcome, Outcome::Superseded, "{superseded:?}");
        let report = harness.report(rev2, Duration::from_secs(30)).await?;
        assert_eq!(report.outcome, Outcome::Succeeded, "{report:?}");
        assert_eq!(fetch_body(listen).await?, "v2\n");
        let left = containers_of(&docker, &service).await?;
        assert_eq!(left.len(), 1, "{left:?}");

        let (_, failed, errors) = clients.finish().await;
        assert_eq!(failed, 0, "failed requests: {errors:?}");
        harness.stop().await
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_moves_every_new_request_at_one_instant() -> anyhow::Result<()> {
    bounded(Duration::from_secs(150), "monotonic switches", async {
        let sweep = Sweep::new("handover-atomic");
        let docker = images::docker().await;
        let mut builds = Vec::new();
        for n in 1..=6 {
            let version = format!("v{n}");
            let (image, id) = build_image(
                &docker,
                &sweep,
                "mono",
                &version,
                App::http(&version),
                false,
            )
            .await?;
            builds.push((image, id));
        }
        let tracked = builds[0].0.with_tag("live")?;
        let spec = handover_service(&sweep, "mono", &tracked, Duration::from_secs(10))?;
        let listen = spec.strategy().handover().unwrap().listen();
        let harness = Harness::start(&docker, vec![spec]).await?;
        let rev = harness.publish(&tracked, &builds[0].1).await?;
        assert_eq!(
            harness.report(rev, Duration::from_secs(30)).await?.outcome,
            Outcome::Succeeded
        );

        // Clients on new connections as fast as they can: each must see versions only go up.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients: Vec<_> = (0..3)
            .map(|_| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let (mut last, mut seen, mut backwards) = (0u32, 0u32, Vec::new());
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let Ok(body) = fetch_body(listen).await else {
                            continue;
                        };
                        let n: u32 = body.trim().trim_start_matches('v').parse().unwrap_or(0);
                        if n < last {
                            backwards.push(format!("v{n} after v{last}"));
                        }
                        last = last.max(n);
                        seen += 1;
                    }
                    (seen, backwards)
                })
            })
            .collect();
        for (n, (_, id)) in builds.iter().enumerate().skip(1) {
            let rev = harness.publish(&tracked, id).await?;
            let report = harness.report(rev, Duration::from_secs(30)).await?;
            assert_eq!(report.outcome, Outcome::Succeeded, "deploy {n}: {report:?}");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for client in clients {
            let (seen, backwards) = client.await?;
            assert!(seen > 20, "only {seen} answers");
            assert!(
                backwards.is_empty(),
                "an older version after a newer one: {backwards:?}"
            );
        }
        harness.stop().await
    })
    .await?
}

/// What a watched rollout of a bad build cost: its report, and the client loop's requests
/// that succeeded and failed.
struct WatchedRollback {
    report: deployer_core::DeployReport,
    ok: u64,
    failed: u64,
    errors: Vec<String>,
}

/// Deploys v1, then `bad` with an 8 s watch under a client loop; checks it was rolled back
/// and v1 serves again.
async fn roll_out_a_bad_build(
    label: &str,
    base: &str,
    bad: App,
) -> anyhow::Result<WatchedRollback> {
    let sweep = Sweep::new(label);
    let docker = images::docker().await;
    let (v1, id1) = build_image(&docker, &sweep, base, "v1", App::http("v1"), false).await?;
    let (_, id2) = build_image(&docker, &sweep, base, "v2", bad, false).await?;
    let tracked = v1.with_tag("live")?;
    let spec = handover_service(&sweep, base, &tracked, Duration::from_secs(10))?;
    let watch = spec.health().clone().with_watch(Duration::from_secs(8));
    let spec = rebuilt(&spec, |b| b.health(watch))?;
    let listen = spec.strategy().handover().unwrap().listen();
    let harness = Harness::start(&docker, vec![spec]).await?;
    let rev = harness.publish(&tracked, &id1).await?;
    assert_eq!(
        harness.report(rev, Duration::from_secs(30)).await?.outcome,
        Outcome::Succeeded
    );
    let clients = ClientLoop::start(listen, 1, 1);
    let rev = harness.publish(&tracked, &id2).await?;
    let report = harness.report(rev, Duration::from_secs(60)).await?;
    let (ok, failed, errors) = clients.finish().await;
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:?}");
    assert_eq!(fetch_body(listen).await?, "v1\n", "v1 serves again");
    harness.stop().await?;
    Ok(WatchedRollback {
        report,
        ok,
        failed,
        errors,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_whose_clients_get_server_errors_is_rolled_back_within_the_watch()
-> anyhow::Result<()> {
    bounded(
        Duration::from_secs(120),
        "5xx answers after promotion",
        async {
            // Its health check (/health) passes throughout: only the proxy's counters fail it.
            let bad = App::ServerErrors {
                version: "v2".into(),
            };
            let cost = roll_out_a_bad_build("handover-errors", "errs", bad).await?;
            let reason = cost.report.reason.clone().unwrap_or_default();
            assert!(reason.contains("the proxy saw"), "{reason}");
            eprintln!(
                "5xx after promotion: rolled back after {} ms; requests ok {}, failed {}",
                cost.report.duration_ms, cost.ok, cost.failed
            );
            Ok(())
        },
    )
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_crashes_after_promotion_is_rolled_back_within_the_watch() -> anyhow::Result<()>
{
    bounded(Duration::from_secs(120), "a crash after promotion", async {
        let crashing = App::CrashingHttp {
            version: "v2".into(),
            after: Duration::from_secs(3),
        };
        let cost = roll_out_a_bad_build("handover-watch", "watch", crashing).await?;
        let reason = cost.report.reason.clone().unwrap_or_default();
        assert!(reason.contains("after taking traffic"), "{reason}");
        eprintln!(
            "crash 3 s after promotion: rolled back after {} ms; requests ok {}, failed {} ({:?})",
            cost.report.duration_ms, cost.ok, cost.failed, cost.errors
        );
        Ok(())
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_lost_journal_serves_what_runs() -> anyhow::Result<()> {
    bounded(
        Duration::from_secs(120),
        "a restart without a journal",
        async {
            let sweep = Sweep::new("handover-nojournal");
            let docker = images::docker().await;
            let (v1, id1) =
                build_image(&docker, &sweep, "nj", "v1", App::http("v1"), false).await?;
            let tracked = v1.with_tag("live")?;
            let spec = handover_service(&sweep, "nj", &tracked, Duration::from_secs(10))?;
            let listen = spec.strategy().handover().unwrap().listen();
            let first = Harness::start(&docker, vec![spec.clone()]).await?;
            let rev = first.publish(&tracked, &id1).await?;
            assert_eq!(
                first.report(rev, Duration::from_secs(30)).await?.outcome,
                Outcome::Succeeded
            );
            first.stop().await?;
            // Every harness has a journal of its own: this one starts with none, the container
            // still running. What runs is adopted, and must be served, not left out of the proxy.
            let second = Harness::start(&docker, vec![spec]).await?;
            eventually(
                Duration::from_secs(20),
                "v1 through the new proxy",
                || async {
                    (fetch_body(listen).await.ok().as_deref() == Some("v1\n")).then_some(())
                },
            )
            .await?;
            second.stop().await
        },
    )
    .await?
}
