//! The async driver: runs one state machine per service through the ports.
//!
//! - Targets come from the coordinator (a snapshot, then a watch); each service's actor sees
//!   only the newest one for its repo:tag (a `watch` channel coalesces bursts).
//! - Different services deploy concurrently up to `max_parallel`; one service never deploys
//!   twice at once (one actor per service).
//! - Triggers send events to an [`EventSink`]; the ingest worker resolves and publishes them.
//! - Reports go to notifiers and history through queues of their own, off the deploy path.
//! - On shutdown, triggers stop, candidates that never took traffic are removed, switches under
//!   way finish, all within `shutdown_grace`; what is cut short is finished by recovery at the
//!   next start, from the journal.
//!
//! ```no_run
//! # async fn demo(ports: deployer_core::driver::Ports, spec: deployer_core::ServiceSpec) {
//! use deployer_core::driver::{Driver, DriverConfig};
//! let driver = Driver::new(DriverConfig::new("host-a"), ports, vec![spec]).unwrap();
//! let handle = driver.handle(); // for an admin API
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! tokio::spawn(driver.run(async move { let _ = stopped.await; }));
//! // ... later: stop gracefully.
//! let _ = stop.send(());
//! # let _ = handle;
//! # }
//! ```

mod actor;
mod handle;
mod notify;
mod sink;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

pub use handle::{ControlError, DriverHandle, ServiceView};
pub use sink::{EventSink, IngestCounts, IngestStats, Submission, SubmitError};

use crate::backoff::Backoff;
use crate::ports::{Coordinator, ImageSource, Journal, Notifier, Switcher, Trigger, WatchEvent};
use crate::service::{ServiceName, ServiceSpec, SpecError};
use crate::shutdown::Shutdown;
use crate::target::{Revision, Target};

/// Renders an error and its sources as `outer: inner: innermost`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The adapters a driver runs on.
#[derive(Clone)]
pub struct Ports {
    /// Resolves, pulls and builds images.
    pub images: Arc<dyn ImageSource>,
    /// Runs containers and moves traffic.
    pub switcher: Arc<dyn Switcher>,
    /// Shares targets, statuses and history.
    pub coordinator: Arc<dyn Coordinator>,
    /// Durable local facts for crash recovery.
    pub journal: Arc<dyn Journal>,
    /// Where reports go.
    pub notifiers: Vec<Arc<dyn Notifier>>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.notifiers.iter().map(|n| n.name()).collect();
        f.debug_struct("Ports")
            .field("notifiers", &names)
            .finish_non_exhaustive()
    }
}

/// Driver settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DriverConfig {
    /// This host's name in reports, statuses and the fleet.
    pub node: String,
    /// Services deploying at once (die-net/deployer's `max_threads`).
    pub max_parallel: usize,
    /// How long shutdown waits for switches under way.
    pub shutdown_grace: Duration,
    /// Events queued before webhooks get "busy".
    pub event_queue: usize,
    /// Reports queued per notifier before the oldest is dropped.
    pub notify_queue: usize,
    /// Retry policy when the coordinator cannot be read.
    pub coordinator_retry: Backoff,
    /// How often services behind deployer's proxy are looked at again at rest, to repair
    /// drift (a live container restarted on another port, or dead); `None` turns it off.
    /// Services without a proxy leave that to Docker's restart policies.
    pub resync: Option<Duration>,
}

impl DriverConfig {
    /// Defaults for node `node`: 4 parallel deploys, 60 s shutdown grace.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            max_parallel: 4,
            shutdown_grace: Duration::from_secs(60),
            event_queue: 1024,
            notify_queue: 256,
            coordinator_retry: Backoff::new(
                Duration::from_millis(500),
                Duration::from_secs(30),
                u32::MAX,
            )
            .unwrap_or_default(),
            resync: Some(Duration::from_secs(15)),
        }
    }
}

/// Why a driver could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// Two services share a name.
    #[error("service {0:?} is defined twice")]
    DuplicateService(String),
    /// A setting makes no sense.
    #[error(transparent)]
    Invalid(#[from] SpecError),
}

/// Runs every service's deployments. See the module docs.
pub struct Driver {
    config: DriverConfig,
    ports: Ports,
    specs: Arc<BTreeMap<ServiceName, Arc<ServiceSpec>>>,
    triggers: Vec<Arc<dyn Trigger>>,
    handle: DriverHandle,
    events: tokio::sync::mpsc::Receiver<crate::ports::ImageEvent>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("config", &self.config)
            .field("services", &self.specs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver for `services` on `ports`.
    pub fn new(
        config: DriverConfig,
        ports: Ports,
        services: Vec<ServiceSpec>,
    ) -> Result<Self, DriverError> {
        if config.max_parallel == 0 {
            return Err(SpecError::invalid("max_parallel", "must be at least 1").into());
        }
        let mut specs = BTreeMap::new();
        for spec in services {
            let name = spec.name().clone();
            if specs.insert(name.clone(), Arc::new(spec)).is_some() {
                return Err(DriverError::DuplicateService(name.to_string()));
            }
        }
        let tracked: HashSet<_> = specs.values().map(|s| s.image().clone()).collect();
        let (sink, events) = EventSink::new(tracked, config.event_queue);
        let specs = Arc::new(specs);
        let handle = DriverHandle {
            node: config.node.as_str().into(),
            specs: specs.clone(),
            board: Arc::default(),
            sink,
            images: ports.images.clone(),
            coordinator: ports.coordinator.clone(),
        };
        Ok(Self {
            config,
            ports,
            specs,
            triggers: Vec::new(),
            handle,
            events,
        })
    }

    /// Adds a trigger, run with the driver and stopped with it.
    pub fn with_trigger(mut self, trigger: Arc<dyn Trigger>) -> Self {
        self.triggers.push(trigger);
        self
    }

    /// A handle for admin APIs and embedders; usable before and during `run`.
    pub fn handle(&self) -> DriverHandle {
        self.handle.clone()
    }

    /// The sink for triggers run outside the driver.
    pub fn sink(&self) -> EventSink {
        self.handle.sink()
    }

    /// Runs until `shutdown` completes, then stops gracefully (bounded by `shutdown_grace`).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (fire, stop) = Shutdown::new();
        let mut background = JoinSet::new();
        let reports = notify::ReportHub::start(
            &self.ports.notifiers,
            self.ports.coordinator.clone(),
            self.config.notify_queue,
            &mut background,
        );
        let statuses =
            notify::StatusPublisher::start(self.ports.coordinator.clone(), &mut background);
        let shared = Arc::new(actor::Shared {
            node: self.handle.node.clone(),
            images: self.ports.images.clone(),
            switcher: self.ports.switcher.clone(),
            coordinator: self.ports.coordinator.clone(),
            journal: self.ports.journal.clone(),
            permits: Arc::new(Semaphore::new(self.config.max_parallel)),
            board: self.handle.board.clone(),
            reports: reports.clone(),
            statuses: statuses.clone(),
        });

        let mut actors = JoinSet::new();
        let mut routes: Vec<(Arc<ServiceSpec>, watch::Sender<Option<Target>>)> = Vec::new();
        let mut kicks = BTreeMap::new();
        for spec in self.specs.values() {
            let (tx, rx) = watch::channel(None);
            // Only handover services are looked at again (periodically, and when the engine
            // says a container changed): their proxy must follow what runs.
            let handover = spec.strategy().handover().is_some();
            let resync = self.config.resync.filter(|_| handover);
            let kick = Arc::new(Notify::new());
            if handover {
                kicks.insert(spec.name().clone(), kick.clone());
            }
            actors.spawn(actor::run(
                shared.clone(),
                spec.clone(),
                rx,
                stop.clone(),
                actor::Rescans {
                    every: resync,
                    kick,
                },
            ));
            routes.push((spec.clone(), tx));
        }

        let mut front = JoinSet::new();
        let ingest = sink::Ingest {
            images: self.ports.images.clone(),
            coordinator: self.ports.coordinator.clone(),
            stats: self.handle.sink.stats_handle(),
            board: self.handle.board.clone(),
            reports: reports.clone(),
            specs: self.specs.clone(),
            node: self.handle.node.clone(),
        };
        front.spawn(sink::ingest(self.events, ingest, stop.clone()));
        for trigger in self.triggers {
            let (sink, stop) = (self.handle.sink.clone(), stop.clone());
            front.spawn(async move {
                if let Err(e) = trigger.run(sink, stop).await {
                    tracing::error!(
                        trigger = trigger.name(),
                        "trigger stopped: {}",
                        error_chain(&e)
                    );
                }
            });
        }
        if let Some(events) = self.ports.switcher.subscribe() {
            front.spawn(route_engine_events(events, kicks, stop.clone()));
        }
        front.spawn(route_targets(
            self.ports.coordinator.clone(),
            routes,
            self.config.coordinator_retry,
            stop.clone(),
        ));

        shutdown.await;
        tracing::info!("shutting down: finishing or undoing deploys under way");
        fire.fire();
        let grace = self.config.shutdown_grace;
        let finished =
            tokio::time::timeout(grace, async { while actors.join_next().await.is_some() {} })
                .await;
        if finished.is_err() {
            tracing::warn!(
                "deploys still running after {grace:?}; stopping them, recovery finishes them at the next start"
            );
            actors.shutdown().await;
        }
        front.shutdown().await;
        reports.close();
        statuses.close();
        if tokio::time::timeout(Duration::from_secs(10), async {
            while background.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!("some notifications were not delivered before exit");
        }
        if reports.dropped() > 0 {
            tracing::warn!(
                dropped = reports.dropped(),
                "notification queues overflowed"
            );
        }
    }
}

/// Turns the engine's container events into an immediate look at the service concerned.
async fn route_engine_events(
    mut events: tokio::sync::mpsc::Receiver<crate::ports::EngineEvent>,
    kicks: BTreeMap<ServiceName, Arc<Notify>>,
    mut stop: Shutdown,
) {
    loop {
        let event = tokio::select! {
            () = stop.wait() => return,
            event = events.recv() => match event {
                Some(event) => event,
                None => return,
            },
        };
        if let Some(kick) = kicks.get(&event.service) {
            tracing::debug!(service = %event.service, action = %event.action, "engine event");
            kick.notify_one();
        }
    }
}

/// Feeds each service the newest target for its repo:tag: a snapshot, then the watch,
/// re-established with backoff whenever it ends.
async fn route_targets(
    coordinator: Arc<dyn Coordinator>,
    routes: Vec<(Arc<ServiceSpec>, watch::Sender<Option<Target>>)>,
    retry: Backoff,
    mut stop: Shutdown,
) {
    let route = |target: &Target| {
        for (spec, tx) in &routes {
            if spec.image() == &target.image {
                tx.send_if_modified(|current| match current {
                    Some(c) if c.revision >= target.revision => false,
                    _ => {
                        *current = Some(target.clone());
                        true
                    }
                });
            }
        }
    };
    let mut attempt = 0;
    let mut seen = Revision::default();
    let mut need_snapshot = true;
    loop {
        if need_snapshot {
            let snapshot = tokio::select! {
                () = stop.wait() => return,
                s = coordinator.snapshot() => s,
            };
            match snapshot {
                Ok(snapshot) => {
                    snapshot.targets.iter().for_each(route);
                    seen = snapshot.revision;
                    need_snapshot = false;
                }
                Err(e) => {
                    attempt += 1;
                    tracing::warn!("cannot read targets: {}", error_chain(&e));
                    tokio::select! {
                        () = stop.wait() => return,
                        () = tokio::time::sleep(retry.delay(attempt)) => continue,
                    }
                }
            }
        }
        let watch = tokio::select! {
            () = stop.wait() => return,
            w = coordinator.watch(seen) => w,
        };
        let mut watch = match watch {
            Ok(watch) => {
                attempt = 0;
                watch
            }
            Err(e) => {
                attempt += 1;
                tracing::warn!("cannot watch targets: {}", error_chain(&e));
                tokio::select! {
                    () = stop.wait() => return,
                    () = tokio::time::sleep(retry.delay(attempt)) => continue,
                }
            }
        };
        loop {
            let event = tokio::select! {
                () = stop.wait() => return,
                e = watch.next() => e,
            };
            match event {
                Some(WatchEvent::Updated(target)) => {
                    seen = seen.max(target.revision);
                    route(&target);
                }
                Some(WatchEvent::Resync(snapshot)) => {
                    snapshot.targets.iter().for_each(route);
                    seen = snapshot.revision;
                }
                None => break,
            }
        }
    }
}
