//! Adoption of labelled containers, and the stop strategy; unlabelled containers running the
//! same image are never touched.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use deployer_core::Outcome;
use deployer_core::ports::Switcher;
use deployer_core::reconcile::Generation;
use deployer_core::service::{HealthCheck, Probe, Strategy};
use deployer_docker::{DockerSwitcher, SwitcherConfig, discover_adopted};
use deployer_testkit::images::{self, App, HTTP_PORT};
use deployer_testkit::{Sweep, net};

use crate::support::{
    Harness, bounded, build_image, eventually, fetch_body, inspect, run_container, tag_as,
};

fn published(port: u16) -> HostConfig {
    HostConfig {
        port_bindings: Some(HashMap::from([(
            format!("{HTTP_PORT}/tcp"),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(port.to_string()),
            }]),
        )])),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_labelled_container_is_adopted_and_recreated_an_unlabelled_one_is_untouched()
-> anyhow::Result<()> {
    bounded(Duration::from_secs(120), "adoption", async {
        let sweep = Sweep::new("adopt");
        let docker = images::docker().await;
        let (v1, id1) = build_image(&docker, &sweep, "ad", "v1", App::http("v1"), false).await?;
        let (_, id2) = build_image(&docker, &sweep, "ad", "v2", App::http("v2"), false).await?;
        let tracked = v1.with_tag("live")?;
        tag_as(&docker, &id1, &tracked).await?;
        let adopted_name = sweep.name("adopted");
        let plain_name = sweep.name("plain");
        let (adopted_port, plain_port) = (net::free_port(), net::free_port());
        let mut labels: HashMap<String, String> = sweep.labels().into_iter().collect();
        labels.insert("deployer.enable".into(), "true".into());
        labels.insert("deployer.health.kind".into(), "http".into());
        labels.insert("deployer.health.path".into(), "/health".into());
        labels.insert("deployer.health.interval".into(), "100ms".into());
        labels.insert("deployer.health.deadline".into(), "10s".into());
        let familiar = tracked.familiar();
        run_container(
            &docker,
            &adopted_name,
            ContainerCreateBody {
                image: Some(familiar.clone()),
                labels: Some(labels),
                host_config: Some(published(adopted_port)),
                ..Default::default()
            },
        )
        .await?;
        let plain_id = run_container(
            &docker,
            &plain_name,
            ContainerCreateBody {
                image: Some(familiar.clone()),
                labels: Some(sweep.labels().into_iter().collect()),
                host_config: Some(published(plain_port)),
                ..Default::default()
            },
        )
        .await?;

        let adopted: Vec<_> = discover_adopted(&docker, &[], None)
            .await?
            .into_iter()
            .filter(|s| s.name().as_str() == adopted_name)
            .collect();
        assert_eq!(adopted.len(), 1, "the labelled container is adopted");
        let spec = adopted[0].clone();
        assert_eq!(spec.image(), &tracked);
        assert_eq!(spec.strategy(), &Strategy::Recreate);
        assert_eq!(
            spec.health().probe(),
            &Probe::Http {
                path: "/health".into(),
                status: 200
            }
        );
        assert!(
            discover_adopted(&docker, &[], None)
                .await?
                .iter()
                .all(|s| s.name().as_str() != plain_name)
        );
        // Declared services win over labels.
        assert!(
            discover_adopted(&docker, std::slice::from_ref(&spec), None)
                .await?
                .iter()
                .all(|s| s.name() != spec.name())
        );

        let observed = DockerSwitcher::new(docker.clone(), SwitcherConfig::default())
            .observe(&spec)
            .await?;
        assert_eq!(observed.instances.len(), 1);
        assert_eq!(observed.instances[0].id.generation, Generation(0));

        let harness = Harness::start(&docker, vec![spec]).await?;
        let rev = harness.publish(&tracked, &id2).await?;
        let report = harness.report(rev, Duration::from_secs(40)).await?;
        assert_eq!(report.outcome, Outcome::Succeeded, "{report:?}");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], adopted_port));
        assert_eq!(fetch_body(addr).await?, "v2\n");
        let recreated = inspect(&docker, &adopted_name).await?;
        assert_eq!(recreated.image.as_deref(), Some(id2.as_str()));

        // The unlabelled twin: same container, still running, still on the old image.
        let plain = inspect(&docker, &plain_name).await?;
        assert_eq!(plain.id.as_deref(), Some(plain_id.as_str()));
        assert_eq!(plain.state.and_then(|s| s.running), Some(true));
        assert_eq!(plain.image.as_deref(), Some(id1.as_str()));
        let plain_addr = std::net::SocketAddr::from(([127, 0, 0, 1], plain_port));
        assert_eq!(fetch_body(plain_addr).await?, "v1\n");
        harness.stop().await
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_strategy_stops_outdated_containers_and_leaves_the_rest() -> anyhow::Result<()> {
    bounded(Duration::from_secs(90), "stop strategy", async {
        let sweep = Sweep::new("stop");
        let docker = images::docker().await;
        let (v1, id1) = build_image(&docker, &sweep, "st", "v1", App::http("v1"), false).await?;
        let (_, id2) = build_image(&docker, &sweep, "st", "v2", App::http("v2"), false).await?;
        let tracked = v1.with_tag("live")?;
        let service = sweep.name("worker");
        // As a supervisor's `docker run --label deployer.service=...` would.
        let mut labels: HashMap<String, String> = sweep.labels().into_iter().collect();
        labels.insert("deployer.service".into(), service.clone());
        let supervised = run_container(
            &docker,
            &service,
            ContainerCreateBody {
                image: Some(id1.clone()),
                labels: Some(labels),
                ..Default::default()
            },
        )
        .await?;
        let bystander_name = sweep.name("bystander");
        run_container(
            &docker,
            &bystander_name,
            ContainerCreateBody {
                image: Some(id1.clone()),
                labels: Some(sweep.labels().into_iter().collect()),
                ..Default::default()
            },
        )
        .await?;
        let spec = deployer_core::ServiceSpec::builder(&service, tracked.clone())
            .strategy(Strategy::Stop)
            .health(HealthCheck::with_probe(Probe::Running))
            .timeouts(deployer_core::service::Timeouts {
                stop: Duration::from_secs(1),
                ..Default::default()
            })
            .build()?;
        let harness = Harness::start(&docker, vec![spec]).await?;
        let rev = harness.publish(&tracked, &id2).await?;
        let report = harness.report(rev, Duration::from_secs(40)).await?;
        assert_eq!(report.outcome, Outcome::Succeeded, "{report:?}");
        eventually(
            Duration::from_secs(10),
            "the outdated container to stop",
            || async {
                let c = inspect(&docker, &supervised).await.ok()?;
                (c.state?.running == Some(false)).then_some(())
            },
        )
        .await?;
        // Kept for the supervisor, under its name; the tag now points at the new build.
        assert_eq!(
            inspect(&docker, &service).await?.id.as_deref(),
            Some(supervised.as_str())
        );
        assert_eq!(
            docker
                .inspect_image(&tracked.to_string())
                .await?
                .id
                .as_deref(),
            Some(id2.as_str())
        );
        let bystander = inspect(&docker, &bystander_name).await?;
        assert_eq!(
            bystander.state.and_then(|s| s.running),
            Some(true),
            "unlabelled containers are not touched"
        );
        harness.stop().await
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_opted_in_while_running_is_adopted_and_forgotten_when_removed()
-> anyhow::Result<()> {
    bounded(Duration::from_secs(90), "adoption while running", async {
        let sweep = Sweep::new("follow");
        let docker = images::docker().await;
        let (v1, id1) = build_image(&docker, &sweep, "fo", "v1", App::http("v1"), false).await?;
        let tracked = v1.with_tag("live")?;
        tag_as(&docker, &id1, &tracked).await?;
        // A scope of its own: other tests' opted-in containers are not this driver's.
        let scope = sweep.name("scope");
        let harness = Harness::start_in(
            &docker,
            SwitcherConfig::default().with_scope(scope.clone()),
            Vec::new(),
            |_| {},
        )
        .await?;
        let (stop, stopped) = deployer_core::shutdown::Shutdown::new();
        let follower = tokio::spawn(deployer_docker::follow_adoptions(
            docker.clone(),
            harness.handle.clone(),
            Some(scope.clone()),
            stopped,
        ));
        // Let the follower subscribe before the container starts.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let name = sweep.name("late");
        let mut labels: HashMap<String, String> = sweep.labels().into_iter().collect();
        labels.insert("deployer.enable".into(), "true".into());
        labels.insert("deployer.node".into(), scope.clone());
        run_container(
            &docker,
            &name,
            ContainerCreateBody {
                image: Some(tracked.familiar()),
                labels: Some(labels),
                ..Default::default()
            },
        )
        .await?;
        eventually(
            Duration::from_secs(10),
            "the late container to be adopted",
            || async {
                let view = harness.handle.service(&name)?;
                (view.status.state == deployer_core::ServiceState::Idle).then_some(())
            },
        )
        .await?;
        assert!(harness.handle.is_adopted(&name));

        docker
            .remove_container(
                &name,
                Some(bollard::query_parameters::RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await?;
        eventually(
            Duration::from_secs(10),
            "the removed service to be forgotten",
            || async { harness.handle.service(&name).is_none().then_some(()) },
        )
        .await?;
        assert!(harness.handle.specs().is_empty());
        stop.fire();
        follower.await?;
        harness.stop().await
    })
    .await?
}
