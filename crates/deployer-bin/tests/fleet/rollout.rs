//! A webhook to one agent switches the whole fleet, one host at a time; an older push
//! announced after a newer one changes nothing.

use std::time::Duration;

use anyhow::ensure;
use deployer_testkit::App;
use serde_json::Value;

use crate::fleet::{AGENTS, Fleet};
use crate::timeline;
use deployer_testkit::wait::{eventually, scenario};

/// Bound on one scenario, after the fleet is up.
const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_to_one_agent_switches_all_three_one_at_a_time() -> anyhow::Result<()> {
    let (fleet, _v1) =
        Fleet::start("fleet-webhook", App::http("v1"), Duration::from_secs(10)).await?;
    let outcome = scenario(LIMIT, "a fleet rollout", async {
        let before = fleet.revision().await?;
        let v2 = fleet.release("v2", App::http("v2"), 1).await?;

        fleet.all_live(&v2, Duration::from_secs(60)).await?;
        for n in 0..AGENTS {
            fleet.one_generation(n, &v2, "v2").await?;
        }
        fleet.expect_outcomes(&v2, &fleet.all_succeeded()).await?;

        // K = 1: never two slot holders at any etcd revision, every host took its turn, and
        // the hosts' own status timestamps show no two switching at once.
        let changes = fleet.changes_since(before).await?;
        let order = timeline::slot_order(&changes, 1)?;
        let mut took: Vec<String> = order.clone();
        took.sort();
        ensure!(
            took == fleet.nodes(),
            "every host takes the slot once: {order:?}"
        );
        let intervals = timeline::switching(&changes);
        ensure!(
            intervals.keys().cloned().collect::<Vec<_>>() == fleet.nodes(),
            "every host reported switching: {intervals:?}"
        );
        timeline::disjoint(&intervals, 50)
    })
    .await;
    fleet.verdict(outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_digest_after_a_newer_one_changes_nothing() -> anyhow::Result<()> {
    let (fleet, v1) = Fleet::start("fleet-stale", App::http("v1"), Duration::from_secs(10)).await?;
    let outcome = scenario(LIMIT, "a stale announcement", async {
        let v2 = fleet.release("v2", App::http("v2"), 0).await?;
        fleet.all_live(&v2, Duration::from_secs(60)).await?;
        fleet.expect_outcomes(&v2, &fleet.all_succeeded()).await?;
        let (target, revision) = fleet.target().await?;
        ensure!(target["digest"] == v2, "target: {target}");
        let history = fleet.agents[0].history().await?;
        let mut containers = Vec::new();
        for agent in &fleet.agents {
            containers.push(fleet.containers(&agent.node).await?);
        }

        // The older build announced late (a delayed or replayed webhook, dated at its push,
        // before v2's), to every host.
        for agent in &fleet.agents {
            let status = agent
                .announce_dated(&fleet.image, &v1, "2000-01-01T00:00:00Z")
                .await?;
            ensure!(status == 202, "{}'s webhook answered {status}", agent.node);
        }
        for agent in &fleet.agents {
            let what = format!("{} to find the older digest stale", agent.node);
            eventually(Duration::from_secs(10), &what, || async {
                (agent.ingested("stale").await.ok()? == 1).then_some(())
            })
            .await?;
        }

        // Nothing was written, so no host could have seen anything: the target, the history
        // and every host's containers are as they were, and all serve v2.
        let (after, after_revision) = fleet.target().await?;
        ensure!(
            after == target && after_revision == revision,
            "the target moved: {after}"
        );
        // The history only gains the refusals, one per host, each saying why.
        let refusals = eventually(
            Duration::from_secs(10),
            "the refusals in history",
            || async {
                let now = fleet.agents[0].history().await.ok()?;
                let (refused, rest): (Vec<Value>, Vec<Value>) = now.into_iter().partition(|r| {
                    r["outcome"] == "skipped"
                        && r["reason"].as_str().is_some_and(|w| w.contains("refused"))
                });
                (rest == history && refused.len() == AGENTS).then_some(refused)
            },
        )
        .await?;
        ensure!(
            refusals.iter().all(|r| r["to"] == v1 && r["from"] == v2),
            "refusals: {refusals:?}"
        );
        for (agent, before) in fleet.agents.iter().zip(&containers) {
            let now = fleet.containers(&agent.node).await?;
            let ids = |list: &[bollard::models::ContainerSummary]| -> Vec<Option<String>> {
                list.iter().map(|c| c.id.clone()).collect()
            };
            ensure!(
                ids(&now) == ids(before),
                "{}'s containers changed",
                agent.node
            );
            let service = agent.service().await?;
            ensure!(
                service["live"] == v2 && service["target"] == v2 && service["state"] == "idle",
                "{}: {service}",
                agent.node
            );
        }
        ensure!(fleet.answers().await? == ["v2"; AGENTS], "all serve v2");
        Ok(())
    })
    .await;
    fleet.verdict(outcome)
}
