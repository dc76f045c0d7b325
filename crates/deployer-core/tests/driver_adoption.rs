//! Services adopted and forgotten while the driver runs: an adopted service deploys the
//! target published before it existed and every later one; a forgotten one leaves the views,
//! the coordinator's statuses and the tracked images. Every port faked, time paused.

mod support;

use deployer_core::driver::ControlError;
use deployer_core::driver::Submission;
use deployer_core::ports::{Coordinator, ImageEvent};
use deployer_core::service::{HealthCheck, Probe, ServiceSpec, Strategy};
use deployer_core::target::Source;
use deployer_core::testing::digest;
use deployer_core::{Outcome, ServiceState};
use support::*;

fn recreate(name: &str, image: &str) -> ServiceSpec {
    ServiceSpec::builder(name, image.parse().unwrap())
        .strategy(Strategy::Recreate)
        .health(HealthCheck::with_probe(Probe::Running))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_service_adopted_while_running_deploys_and_a_forgotten_one_is_gone() {
    let env = Env::new();
    let running = env.start(vec![handover("web", "demo/web:1")], 4);
    env.publish("demo/worker:live", 1).await;
    let sink = running.handle.sink();
    let event = || ImageEvent::new("demo/worker:live".parse().unwrap(), Source::new("test"));
    assert_eq!(sink.submit(event()).unwrap(), Submission::Ignored);

    running
        .handle
        .adopt(recreate("worker", "demo/worker:live"))
        .expect("adopted");
    let first = env
        .report(
            "the adopted service's first deploy",
            is("worker", Outcome::Succeeded),
        )
        .await;
    assert_eq!(
        first.to,
        Some(digest(1)),
        "the target published before adoption"
    );
    assert!(running.handle.is_adopted("worker"));
    assert!(!running.handle.is_adopted("web"));
    assert!(matches!(
        running.handle.adopt(recreate("worker", "demo/worker:live")),
        Err(ControlError::ServiceExists(_))
    ));
    env.publish("demo/worker:live", 2).await;
    let second = env
        .report("a later build", |r| {
            is("worker", Outcome::Succeeded)(r) && r.to == Some(digest(2))
        })
        .await;
    assert_eq!(second.from, Some(digest(1)));
    until("the worker to be at rest and reported", || {
        running
            .handle
            .service("worker")
            .is_some_and(|v| v.status.state == ServiceState::Idle)
    })
    .await;
    assert_ne!(sink.submit(event()).unwrap(), Submission::Ignored);

    assert!(matches!(
        running.handle.forget("web"),
        Err(ControlError::NotAdopted(_))
    ));
    running.handle.forget("worker").expect("forgotten");
    until("the worker to leave the view", || {
        running.handle.service("worker").is_none()
    })
    .await;
    assert!(
        running
            .handle
            .specs()
            .iter()
            .all(|s| s.name().as_str() != "worker")
    );
    assert!(running.handle.service("web").is_some(), "web is untouched");
    within("the worker's status to leave the coordinator", async {
        loop {
            let statuses = env.coordinator.statuses().await.unwrap();
            if statuses.iter().all(|s| s.service.as_str() != "worker") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(
        sink.submit(event()).unwrap(),
        Submission::Ignored,
        "nothing tracks the image any more"
    );
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_reload_adds_changes_and_removes_declared_services() {
    let env = Env::new();
    let running = env.start(
        vec![handover("web", "demo/web:1"), recreate("old", "demo/old:1")],
        4,
    );
    env.publish("demo/api:1", 1).await;
    let web = running
        .handle
        .specs()
        .into_iter()
        .find(|s| s.name().as_str() == "web")
        .unwrap();
    let changed_web = ServiceSpec::builder("web", "demo/web:1".parse().unwrap())
        .strategy(web.strategy().clone())
        .health(
            web.health()
                .clone()
                .with_watch(std::time::Duration::from_secs(1)),
        )
        .build()
        .unwrap();

    let summary = running
        .handle
        .reload(vec![changed_web.clone(), recreate("api", "demo/api:1")])
        .expect("reloaded");
    assert_eq!(summary.added, [name("api")]);
    assert_eq!(summary.changed, [name("web")]);
    assert_eq!(summary.removed, [name("old")]);
    assert_eq!(summary.unchanged, 0);

    let api = env
        .report("the added service's deploy", is("api", Outcome::Succeeded))
        .await;
    assert_eq!(
        api.to,
        Some(digest(1)),
        "the target published before it was declared"
    );
    until("the removed service to leave the view", || {
        running.handle.service("old").is_none()
    })
    .await;
    until("web to run its new spec", || {
        running
            .handle
            .service("web")
            .is_some_and(|v| v.spec.health().watch() == std::time::Duration::from_secs(1))
    })
    .await;
    let again = running
        .handle
        .reload(vec![changed_web, recreate("api", "demo/api:1")])
        .expect("reloaded again");
    assert_eq!(again.unchanged, 2, "{again:?}");
    assert!(again.added.is_empty() && again.changed.is_empty() && again.removed.is_empty());
    running.stop().await;
}
