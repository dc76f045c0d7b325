//! Things dying mid-rollout: etcd (killed and restarted in place), and an agent (SIGKILL while
//! it switches).

use std::time::Duration;

use anyhow::ensure;
use deployer_testkit::App;

use crate::fleet::{AGENTS, Fleet};
use crate::timeline;
use deployer_testkit::wait::{eventually, scenario};

/// How long the new build sleeps before serving: keeps a host switching long enough to be
/// caught in the act.
const SLOW_BOOT: Duration = Duration::from_millis(1500);

/// A v2 that boots slowly.
fn slow_v2() -> App {
    App::SlowHttp {
        version: "v2".into(),
        boot: SLOW_BOOT,
    }
}

/// The agents' lease TTL (see `agent.rs`).
const LEASE_TTL: Duration = Duration::from_secs(3);

/// What [`roll_out_across_an_etcd_outage`] did.
struct Outage {
    /// The new build.
    v2: String,
    /// The host that finished switching while etcd was down.
    during: usize,
    /// etcd's revision before the rollout was announced.
    before: i64,
    /// etcd's revision once it was back.
    restarted: i64,
}

/// Announces a slow-booting v2, kills etcd (SIGKILL) while the second host probes its
/// candidate, lets that host finish its switch with Docker alone, keeps etcd down past the
/// lease TTL (etcd restores leases on restart), restarts it in place, and waits until the
/// whole fleet serves v2, each host on exactly one generation.
async fn roll_out_across_an_etcd_outage(fleet: &mut Fleet) -> anyhow::Result<Outage> {
    let before = fleet.revision().await?;
    let v2 = fleet.release("v2", slow_v2(), 0).await?;

    // Mid-way: one host done, the next one switching (probing its slow candidate).
    let first = eventually(
        Duration::from_secs(30),
        "a first host to serve v2",
        || async {
            for (n, agent) in fleet.agents.iter().enumerate() {
                let service = agent.service().await.ok()?;
                if service["live"] == v2 && service["state"] == "idle" {
                    return Some(n);
                }
            }
            None
        },
    )
    .await?;
    let during = eventually(
        Duration::from_secs(30),
        "a second host to probe its candidate",
        || async {
            for (n, agent) in fleet.agents.iter().enumerate() {
                let service = agent.service().await.ok()?;
                if n != first && service["state"] == "probing" {
                    return Some(n);
                }
            }
            None
        },
    )
    .await?;
    fleet.etcd.kill();

    // Without etcd the switching host finishes with Docker alone; the third waits.
    fleet.agents[during]
        .wait_live(&v2, Duration::from_secs(30))
        .await?;
    tokio::time::sleep(LEASE_TTL + Duration::from_millis(500)).await;
    fleet.etcd.restart().await;
    let restarted = fleet.revision().await?;

    fleet.all_live(&v2, Duration::from_secs(60)).await?;
    for n in 0..AGENTS {
        fleet.one_generation(n, &v2, "v2").await?;
    }
    Ok(Outage {
        v2,
        during,
        before,
        restarted,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_killed_during_a_rollout_and_restarted_the_fleet_converges() -> anyhow::Result<()> {
    let (mut fleet, _v1) =
        Fleet::start("fleet-etcd-down", App::http("v1"), Duration::from_secs(10)).await?;
    let outcome = scenario(
        Duration::from_secs(150),
        "a rollout across an etcd outage",
        async {
            let Outage {
                v2, during, before, ..
            } = roll_out_across_an_etcd_outage(&mut fleet).await?;

            // The target survived (etcd's data dir) and was not halted; every host is registered
            // again and no slot is left taken; never two slot holders at once.
            let (target, _) = fleet.target().await?;
            ensure!(
                target["digest"] == v2 && target["halted"].is_null(),
                "target after the outage: {target}"
            );
            eventually(
                Duration::from_secs(20),
                "every host registered in etcd and no slot taken",
                || async {
                    let hosts = fleet.read("hosts/").await.ok()?;
                    let slots = fleet.slot_holders().await.ok()?;
                    (hosts.len() == AGENTS && slots.is_empty()).then_some(())
                },
            )
            .await?;
            timeline::slot_order(&fleet.changes_since(before).await?, 1)?;

            // The reports written while etcd was up are in the history. The one of the host that
            // finished during the outage is lost: a known bug, pinned down by
            // `etcd_outage_loses_no_report_status_or_lease` (ignored until fixed).
            let outcomes = eventually(
                Duration::from_secs(20),
                "the reports of the hosts that finished while etcd was up",
                || async {
                    let o = fleet.outcomes(&v2).await.ok()?;
                    let others_done = fleet
                        .agents
                        .iter()
                        .enumerate()
                        .filter(|(n, _)| *n != during)
                        .all(|(_, a)| o.get(&a.node).is_some_and(|r| r == &["succeeded"]));
                    others_done.then_some(o)
                },
            )
            .await?;
            let lost = &fleet.agents[during].node;
            ensure!(
                outcomes.get(lost).is_none_or(|r| r == &["succeeded"]),
                "{lost}'s reports of v2: {outcomes:?}"
            );
            Ok(())
        },
    )
    .await;
    fleet.verdict(outcome)
}

/// After an etcd outage during a rollout nothing is lost:
/// 1. the report of a host that finished while etcd was down reaches the history (the history
///    writer retries with backoff);
/// 2. that host's status in etcd catches up (the status publisher retries the newest status);
/// 3. no host loses its lease once etcd is back (the keep-alive retries within a third of the
///    TTL, so the lease etcd restored is renewed in time): hosts, endpoints and the slot of a
///    host mid-switch stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_loses_no_report_status_or_lease() -> anyhow::Result<()> {
    let (mut fleet, _v1) =
        Fleet::start("fleet-etcd-loss", App::http("v1"), Duration::from_secs(10)).await?;
    let outcome = scenario(
        Duration::from_secs(150),
        "a rollout across an etcd outage",
        async {
            let Outage { v2, restarted, .. } = roll_out_across_an_etcd_outage(&mut fleet).await?;
            let mut problems = Vec::new();
            if let Err(e) = fleet.expect_outcomes(&v2, &fleet.all_succeeded()).await {
                problems.push(e.to_string());
            }
            let statuses = eventually(
                Duration::from_secs(20),
                "every host's status in etcd to show v2 live",
                || async {
                    let statuses = fleet.agents[0].fleet().await.ok()?;
                    (statuses.len() == AGENTS
                        && statuses
                            .iter()
                            .all(|s| s["live"] == v2 && s["state"] == "idle"))
                    .then_some(())
                },
            )
            .await;
            if statuses.is_err() {
                let statuses = fleet.agents[0].fleet().await?;
                let states: Vec<String> = statuses
                    .iter()
                    .map(|s| format!("{} {} live {}", s["node"], s["state"], s["live"]))
                    .collect();
                problems.push(format!("fleet statuses: {states:?}"));
            }
            // Long enough for every keep-alive to have reconnected (at most the 10 s backoff cap).
            tokio::time::sleep(LEASE_TTL + Duration::from_secs(10)).await;
            let expired: Vec<String> = fleet
                .changes_since(restarted)
                .await?
                .into_iter()
                .filter(|c| c.key.starts_with("hosts/") && c.value.is_none())
                .map(|c| c.key)
                .collect();
            if !expired.is_empty() {
                problems.push(format!(
                    "leases expired after etcd was back: {expired:?} were deleted"
                ));
            }
            ensure!(problems.is_empty(), "{}", problems.join("\n"));
            Ok(())
        },
    )
    .await;
    fleet.verdict(outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_switch_frees_its_slot_and_recovers_to_one_generation()
-> anyhow::Result<()> {
    let (mut fleet, _v1) =
        Fleet::start("fleet-agent-down", App::http("v1"), Duration::from_secs(10)).await?;
    let outcome = scenario(
        Duration::from_secs(150),
        "a rollout across an agent crash",
        async {
            let v2 = fleet.release("v2", slow_v2(), 0).await?;

            // The first host to take the slot is killed while it probes its candidate.
            let holder = eventually(
                Duration::from_secs(30),
                "a host to take the rollout slot",
                || async { fleet.slot_holders().await.ok()?.pop() },
            )
            .await?;
            let victim = fleet
                .agents
                .iter()
                .position(|a| a.node == holder)
                .ok_or_else(|| anyhow::anyhow!("unknown slot holder {holder}"))?;
            fleet.agents[victim]
                .wait_state("probing", Duration::from_secs(10))
                .await?;
            fleet.agents[victim].kill9().await?;
            let killed = tokio::time::Instant::now();

            // Its slot is bound to its lease: SIGKILL revokes nothing, the TTL frees it.
            ensure!(
                fleet.slot_holders().await? == [holder.clone()],
                "the dead host's slot vanished at once"
            );
            eventually(
                LEASE_TTL + Duration::from_secs(5),
                "the dead host's slot to free itself",
                || async { (!fleet.slot_holders().await.ok()?.contains(&holder)).then_some(()) },
            )
            .await?;
            let freed = killed.elapsed();
            ensure!(
                freed >= LEASE_TTL / 2,
                "the slot freed {freed:?} after the kill, before the lease could have expired"
            );

            // The others carry on meanwhile.
            for (n, agent) in fleet.agents.iter().enumerate() {
                if n != victim {
                    agent.wait_live(&v2, Duration::from_secs(60)).await?;
                }
            }
            // What the crash left: the old generation and the candidate, both still there.
            let left = fleet.containers(&holder).await?;
            ensure!(left.len() == 2, "the crash left {left:?}");

            // Restarted, it recovers (the old generation serves again, the candidate goes) and
            // deploys v2 afresh: one generation, serving v2.
            fleet.agents[victim].start().await?;
            fleet.agents[victim]
                .wait_live(&v2, Duration::from_secs(60))
                .await?;
            for n in 0..AGENTS {
                fleet.one_generation(n, &v2, "v2").await?;
            }
            // One report per host: the victim's first attempt died with it, unreported.
            fleet.expect_outcomes(&v2, &fleet.all_succeeded()).await?;
            Ok(())
        },
    )
    .await;
    fleet.verdict(outcome)
}
