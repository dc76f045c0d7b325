//! Node scopes: several deployers on one engine, managing the same service name, each seeing
//! (and so recovering, removing, adopting) only its own containers.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::ContainerCreateBody;
use deployer_core::ports::{Promoted, Started, Switcher};
use deployer_core::reconcile::{Generation, Health, InstanceId, InstanceSpec, RunState};
use deployer_docker::switcher::labels;
use deployer_docker::{DockerSwitcher, SwitcherConfig, discover_adopted};
use deployer_testkit::Sweep;
use deployer_testkit::images::{self, App};

use crate::support::{
    bounded, build_image, eventually, fetch_body, handover_service, inspect, run_container, tag_as,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchers_with_different_scopes_share_an_engine_without_seeing_each_other()
-> anyhow::Result<()> {
    bounded(Duration::from_secs(90), "scoped switchers", async {
        let sweep = Sweep::new("scope");
        let docker = images::docker().await;
        let (v1, id1) = build_image(&docker, &sweep, "sc", "v1", App::http("v1"), false).await?;
        let tracked = v1.with_tag("live")?;
        tag_as(&docker, &id1, &tracked).await?;
        // One service name on both nodes, as a fleet rolls out "web" everywhere; each node
        // has its own proxy address.
        let spec_a = handover_service(&sweep, "web", &tracked, Duration::from_secs(10))?;
        let spec_b = handover_service(&sweep, "web", &tracked, Duration::from_secs(10))?;
        let (scope_a, scope_b) = (sweep.name("a"), sweep.name("b"));
        let a = DockerSwitcher::new(
            docker.clone(),
            SwitcherConfig::default().with_scope(&scope_a),
        );
        let b = DockerSwitcher::new(
            docker.clone(),
            SwitcherConfig::default().with_scope(&scope_b),
        );
        let unscoped = DockerSwitcher::new(docker.clone(), SwitcherConfig::default());
        a.bind_proxies(std::slice::from_ref(&spec_a)).await?;

        let g1 = InstanceSpec {
            id: InstanceId {
                generation: Generation(1),
                slot: 0,
            },
            image: tracked.clone(),
            digest: Some(id1.parse()?),
        };
        assert_eq!(a.start(&spec_a, &g1).await?, Started::Created);
        // Same service, generation and slot: b creates its own container, it does not find
        // (and reuse) a's.
        assert_eq!(b.start(&spec_b, &g1).await?, Started::Created);
        let service = spec_a.name().to_string();
        for scope in [&scope_a, &scope_b] {
            let name = format!("{service}-{scope}-g1-s0");
            let container = inspect(&docker, &name).await?;
            let container_labels = container.config.and_then(|c| c.labels).unwrap_or_default();
            assert_eq!(
                container_labels.get(labels::NODE),
                Some(scope),
                "{name} carries its scope"
            );
        }
        for (switcher, spec, scope) in [(&a, &spec_a, &scope_a), (&b, &spec_b, &scope_b)] {
            let observed = switcher.observe(spec).await?;
            assert_eq!(
                observed.instances.len(),
                1,
                "scope {scope} sees only its own container: {observed:?}"
            );
            assert_eq!(observed.instances[0].id, g1.id);
        }
        assert!(
            unscoped.observe(&spec_a).await?.instances.is_empty(),
            "an unscoped switcher leaves scoped containers alone"
        );

        // a serves through its proxy; b removing "its" g1 leaves a's untouched.
        eventually(Duration::from_secs(20), "a's candidate to be healthy", || {
            let (a, spec_a) = (&a, &spec_a);
            async move { matches!(a.probe(spec_a, g1.id).await, Ok(Health::Healthy)).then_some(()) }
        })
        .await?;
        assert_eq!(a.promote(&spec_a, g1.id).await?, Promoted::Switched);
        b.remove(&spec_b, g1.id).await?;
        assert!(b.observe(&spec_b).await?.instances.is_empty());
        let observed = a.observe(&spec_a).await?;
        assert_eq!(observed.instances.len(), 1, "{observed:?}");
        assert_eq!(observed.instances[0].state, RunState::Running);
        assert!(observed.instances[0].serving);
        let listen = spec_a.strategy().handover().unwrap().listen();
        assert_eq!(fetch_body(listen).await?, "v1\n");

        // Adoption is scoped too: an opted-in container of scope a is a's alone.
        let adoptee = sweep.name("adoptee");
        let mut adoptee_labels: HashMap<String, String> = sweep.labels().into_iter().collect();
        adoptee_labels.insert(labels::ENABLE.into(), "true".into());
        adoptee_labels.insert(labels::NODE.into(), scope_a.clone());
        run_container(
            &docker,
            &adoptee,
            ContainerCreateBody {
                image: Some(tracked.familiar()),
                labels: Some(adoptee_labels),
                ..Default::default()
            },
        )
        .await?;
        let adopted_by = |scope: Option<String>| {
            let docker = docker.clone();
            let adoptee = adoptee.clone();
            async move {
                let found = discover_adopted(&docker, &[], scope.as_deref()).await?;
                anyhow::Ok(found.iter().any(|s| s.name().as_str() == adoptee))
            }
        };
        assert!(adopted_by(Some(scope_a.clone())).await?);
        assert!(!adopted_by(Some(scope_b.clone())).await?);
        assert!(!adopted_by(None).await?);

        a.remove(&spec_a, g1.id).await?;
        a.shutdown(Duration::from_secs(1)).await;
        Ok(())
    })
    .await?
}
