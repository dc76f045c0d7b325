//! A build that never becomes healthy: the first host rolls back and halts it fleet-wide, the
//! others never start it.

use std::time::Duration;

use anyhow::ensure;
use deployer_testkit::App;

use crate::fleet::{AGENTS, Fleet};
use deployer_testkit::wait::{eventually, scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_image_stops_after_the_first_host() -> anyhow::Result<()> {
    // A short probe deadline: the bad build fails fast; the good one is healthy at once.
    let (fleet, v1) = Fleet::start("fleet-bad", App::http("v1"), Duration::from_secs(3)).await?;
    let outcome = scenario(Duration::from_secs(120), "a bad rollout", async {
        let creations = fleet.record_creations();
        let bad = fleet.release("bad", App::NeverHealthy, 2).await?;

        // Every host ends halted on the bad target, still serving v1.
        for agent in &fleet.agents {
            let service = agent.wait_state("halted", Duration::from_secs(60)).await?;
            ensure!(
                service["live"] == v1 && service["target"] == bad,
                "{}: {service}",
                agent.node
            );
        }

        // Exactly one host tried it and rolled back; the others skipped it or never got to it.
        let outcomes = eventually(
            Duration::from_secs(10),
            "the rolled-back report in the history",
            || async {
                let o = fleet.outcomes(&bad).await.ok()?;
                o.values()
                    .flatten()
                    .any(|x| x == "rolled_back")
                    .then_some(o)
            },
        )
        .await?;
        let failed: Vec<&String> = outcomes
            .iter()
            .filter(|(_, o)| o.contains(&"rolled_back".to_owned()))
            .map(|(node, _)| node)
            .collect();
        ensure!(
            failed.len() == 1,
            "exactly one host rolls back: {outcomes:?}"
        );
        let first = failed[0].clone();
        for (node, list) in &outcomes {
            let expected: &[&str] = if *node == first {
                &["rolled_back"]
            } else {
                &["skipped"]
            };
            ensure!(
                list == expected,
                "{node}'s reports of the bad build: {list:?}"
            );
        }

        // The target is halted in etcd for this service, by that host.
        let (target, _) = fleet.target().await?;
        ensure!(
            target["digest"] == bad
                && target["halts"][0]["node"] == first.as_str()
                && target["halts"].as_array().map(Vec::len) == Some(1),
            "target: {target}"
        );

        // Only that host ever created a container of the bad build (the others' engines saw
        // none); now none is left anywhere.
        let created = eventually(
            Duration::from_secs(10),
            "the engine's create event of the first host's candidate",
            || async { Some(creations.of(&bad)).filter(|c| !c.is_empty()) },
        )
        .await?;
        ensure!(
            created.iter().all(|(node, _)| *node == first),
            "containers of the bad build were created by {created:?}; only {first} should have"
        );
        for n in 0..AGENTS {
            fleet.one_generation(n, &v1, "v1").await?;
        }

        // `deployer status --json` shows the whole fleet halted on it, serving v1.
        let cli = &fleet.agents[0];
        let shown = eventually(
            Duration::from_secs(10),
            "deployer status to show the fleet halted",
            || async {
                let fleet_view = cli.status_cli().await.ok()?["fleet"].as_array()?.clone();
                (fleet_view.len() == AGENTS
                    && fleet_view
                        .iter()
                        .all(|s| s["state"] == "halted" && s["live"] == v1 && s["target"] == bad))
                .then_some(())
            },
        )
        .await;
        ensure!(
            shown.is_ok(),
            "deployer status --json: {}",
            cli.status_cli().await?
        );
        Ok(())
    })
    .await;
    fleet.verdict(outcome)
}
