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
