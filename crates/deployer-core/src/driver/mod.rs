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
mod roster;
mod services;
mod sink;

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use handle::Control;
pub use handle::{ControlError, DriverHandle, ReloadSummary, ServiceView};
use services::Services;
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
    specs: Services,
    triggers: Vec<Arc<dyn Trigger>>,
    handle: DriverHandle,
    events: tokio::sync::mpsc::Receiver<crate::ports::ImageEvent>,
    control: tokio::sync::mpsc::UnboundedReceiver<Control>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("config", &self.config)
            .field("services", &self.specs.names())
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
        let specs = Services::default();
        for spec in services {
            let name = spec.name().to_string();
            if !specs.insert(Arc::new(spec), false) {
                return Err(DriverError::DuplicateService(name));
            }
        }
        let tracked: HashSet<_> = specs.all().iter().map(|s| s.image().clone()).collect();
        let (sink, events) = EventSink::new(tracked, config.event_queue);
        let (control_tx, control) = tokio::sync::mpsc::unbounded_channel();
        let handle = DriverHandle {
            node: config.node.as_str().into(),
            specs: specs.clone(),
            board: Arc::default(),
            control: control_tx,
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
            control,
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

        let mut roster = roster::Roster::new(shared, self.config.resync);
        for spec in self.specs.all() {
            roster.spawn(spec);
        }

        let mut front = JoinSet::new();
        let ingest = sink::Ingest {
            images: self.ports.images.clone(),
            coordinator: self.ports.coordinator.clone(),
            stats: self.handle.sink.stats_handle(),
            board: self.handle.board.clone(),
            reports: reports.clone(),
            specs: self.handle.specs.clone(),
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
            front.spawn(route_engine_events(
                events,
                roster.kicks.clone(),
                stop.clone(),
            ));
        }
        front.spawn(route_targets(
            self.ports.coordinator.clone(),
            roster.routes.clone(),
            self.config.coordinator_retry,
            stop.clone(),
        ));

        let mut control = self.control;
        let mut forgetting = BTreeSet::new();
        let mut replacing = std::collections::BTreeMap::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(change) = control.recv() => match change {
                    Control::Adopt(spec) if !roster.runs(spec.name()) => {
                        tracing::info!(service = %spec.name(), image = %spec.image(), "new service: deploying its newest build from now on");
                        start(&mut roster, &mut front, &self.ports.coordinator, spec);
                    }
                    Control::Adopt(_) => {}
                    Control::Forget(name) => {
                        forgetting.insert(name.clone());
                        roster.stop(&name);
                    }
                    Control::Replace(spec) if roster.runs(spec.name()) => {
                        tracing::info!(service = %spec.name(), "changed: restarting its actor with the new spec");
                        roster.stop(spec.name());
                        replacing.insert(spec.name().clone(), spec);
                    }
                    Control::Replace(spec) => start(&mut roster, &mut front, &self.ports.coordinator, spec),
                },
                Some(name) = roster.next_ended(), if !roster.is_empty() => {
                    if forgetting.remove(&name) {
                        forget(&self.handle, &name, &statuses);
                    } else if let Some(spec) = replacing.remove(&name) {
                        start(&mut roster, &mut front, &self.ports.coordinator, spec);
                    }
                }
            }
        }
        tracing::info!("shutting down: finishing or undoing deploys under way");
        fire.fire();
        roster.stop_all();
        let grace = self.config.shutdown_grace;
        let finished = tokio::time::timeout(grace, async {
            while !roster.is_empty() {
                roster.next_ended().await;
            }
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                "deploys still running after {grace:?}; stopping them, recovery finishes them at the next start"
            );
            roster.abort_all().await;
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

/// Starts `spec`'s actor and hands it the current target of its repo:tag, which its new
/// route missed.
fn start(
    roster: &mut roster::Roster,
    tasks: &mut JoinSet<()>,
    coordinator: &Arc<dyn Coordinator>,
    spec: Arc<ServiceSpec>,
) {
    let image = spec.image().clone();
    roster.spawn(spec);
    let (coordinator, routes) = (coordinator.clone(), roster.routes.clone());
    tasks.spawn(async move {
        match coordinator.target(&image).await {
            Ok(Some(target)) => routes.offer(&target),
            Ok(None) => {}
            Err(e) => tracing::warn!(image = %image, "cannot read the target of a new service: {}", error_chain(&e)),
        }
    });
}

/// Drops a forgotten or undeclared service (its actor has ended): from the handle's views,
/// from the coordinator's statuses, and from the tracked images unless another service
/// tracks it.
fn forget(handle: &DriverHandle, name: &ServiceName, statuses: &notify::StatusPublisher) {
    let Some(spec) = handle.specs.remove(name) else {
        return;
    };
    handle.board.forget(name);
    statuses.forget(&handle.node, name);
    if handle.specs.tracking(spec.image()).is_empty() {
        handle.sink.set_tracked(spec.image(), false);
    }
    tracing::info!(service = %name, "no longer run by this daemon");
}

/// Turns the engine's container events into an immediate look at the service concerned.
async fn route_engine_events(
    mut events: tokio::sync::mpsc::Receiver<crate::ports::EngineEvent>,
    kicks: roster::Kicks,
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
        if kicks.kick(&event.service) {
            tracing::debug!(service = %event.service, action = %event.action, "engine event");
        }
    }
}

/// Feeds each service the newest target for its repo:tag: a snapshot, then the watch,
/// re-established with backoff whenever it ends.
async fn route_targets(
    coordinator: Arc<dyn Coordinator>,
    routes: roster::Routes,
    retry: Backoff,
    mut stop: Shutdown,
) {
    let route = |target: &Target| routes.offer(target);
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
