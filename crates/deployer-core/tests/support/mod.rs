//! The driver harness shared by the driver test files: every port faked, time paused.
#![allow(dead_code)] // reason: each test file uses its own part of the harness

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deployer_core::driver::{Driver, DriverConfig, DriverHandle, Ports};
use deployer_core::memory::{MemoryCoordinator, MemoryJournal};
use deployer_core::ports::{Coordinator, Journal};
use deployer_core::reconcile::{Generation, InstanceId};
use deployer_core::service::{
    Handover, HealthCheck, Probe, ProxyProtocol, ServiceName, ServiceSpec, Strategy,
};
use deployer_core::shutdown::{Shutdown, ShutdownHandle};
use deployer_core::target::{PublishRequest, Source};
use deployer_core::testing::{FakeImageSource, FakeSwitcher, RecordingNotifier, digest};
use deployer_core::{DeployReport, Outcome};
use tokio::task::JoinHandle;
use tokio::time::timeout;

pub const LONG: Duration = Duration::from_secs(24 * 3600);

pub struct Env {
    pub images: Arc<FakeImageSource>,
    pub switcher: Arc<FakeSwitcher>,
    pub coordinator: Arc<MemoryCoordinator>,
    pub journal: Arc<dyn Journal>,
    pub notifier: Arc<RecordingNotifier>,
}

impl Env {
    pub fn new() -> Self {
        Self::with_journal(Arc::new(MemoryJournal::new()))
    }

    pub fn with_journal(journal: Arc<dyn Journal>) -> Self {
        Self {
            images: Arc::new(FakeImageSource::new()),
            switcher: Arc::new(FakeSwitcher::new()),
            coordinator: Arc::new(MemoryCoordinator::new("node-a")),
            journal,
            notifier: Arc::new(RecordingNotifier::new()),
        }
    }

    pub fn ports(&self) -> Ports {
        Ports {
            images: self.images.clone(),
            switcher: self.switcher.clone(),
            coordinator: self.coordinator.clone(),
            journal: self.journal.clone(),
            notifiers: vec![self.notifier.clone()],
        }
    }

    pub fn start(&self, services: Vec<ServiceSpec>, max_parallel: usize) -> Running {
        let mut config = DriverConfig::new("node-a");
        config.max_parallel = max_parallel;
        let driver = Driver::new(config, self.ports(), services).expect("valid driver");
        let handle = driver.handle();
        let (fire, stop) = Shutdown::new();
        let task = tokio::spawn(driver.run(wait(stop)));
        Running { handle, fire, task }
    }

    pub async fn publish(&self, image: &str, n: u8) {
        let request = PublishRequest::new(image.parse().unwrap(), digest(n), Source::new("test"));
        self.coordinator.publish(request).await.expect("publish");
    }

    pub async fn report(
        &self,
        what: &str,
        predicate: impl Fn(&DeployReport) -> bool,
    ) -> DeployReport {
        within(what, self.notifier.wait_for(predicate)).await
    }

    pub fn count(&self, outcome: Outcome) -> usize {
        self.notifier
            .reports()
            .iter()
            .filter(|r| r.outcome == outcome)
            .count()
    }
}

pub struct Running {
    pub handle: DriverHandle,
    pub fire: ShutdownHandle,
    pub task: JoinHandle<()>,
}

impl Running {
    pub async fn stop(self) {
        self.fire.fire();
        within("the driver to shut down", self.task)
            .await
            .expect("driver task");
    }
}

pub async fn wait(mut stop: Shutdown) {
    stop.wait().await;
}

pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    timeout(LONG, future)
        .await
        .unwrap_or_else(|_| panic!("deadlock: still waiting for {what} after a (virtual) day"))
}

/// Polls `condition` every virtual 100 ms.
pub async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

pub fn handover(name: &str, image: &str) -> ServiceSpec {
    let health = HealthCheck::new(
        Probe::Running,
        Duration::from_secs(1),
        Duration::from_secs(1),
        Duration::from_secs(30),
        1,
    )
    .unwrap();
    let handover = Handover::new(
        "127.0.0.1:8080".parse().unwrap(),
        80,
        ProxyProtocol::Http,
        1,
    )
    .unwrap();
    ServiceSpec::builder(name, image.parse().unwrap())
        .strategy(Strategy::Handover(handover))
        .health(health)
        .build()
        .unwrap()
}

pub fn is(service: &str, outcome: Outcome) -> impl Fn(&DeployReport) -> bool {
    let service = service.to_owned();
    move |r| r.service.as_str() == service && r.outcome == outcome
}

pub fn name(s: &str) -> ServiceName {
    ServiceName::new(s).unwrap()
}

pub fn id(generation: u64, slot: u32) -> InstanceId {
    InstanceId {
        generation: Generation(generation),
        slot,
    }
}
