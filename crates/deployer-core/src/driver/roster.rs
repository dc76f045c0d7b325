//! The running actors, one per service, and how each is reached: its target channel (fed by
//! the coordinator's watch) and its kick (fed by the engine's events). Services adopted or
//! forgotten while the driver runs come and go here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::actor;
use crate::ServiceName;
use crate::service::ServiceSpec;
use crate::shutdown::{Shutdown, ShutdownHandle};
use crate::target::Target;

/// Where each service's newest target is sent, shared with the task that follows the
/// coordinator.
#[derive(Clone, Default)]
pub(crate) struct Routes {
    inner: Arc<Mutex<BTreeMap<ServiceName, Route>>>,
}

struct Route {
    spec: Arc<ServiceSpec>,
    desired: watch::Sender<Option<Target>>,
}

impl Routes {
    /// Hands `target` to every service tracking its repo:tag, unless it already has it or a
    /// newer one.
    pub(crate) fn offer(&self, target: &Target) {
        for route in self.lock().values() {
            if route.spec.image() == &target.image {
                route.desired.send_if_modified(|current| match current {
                    Some(c) if c.revision >= target.revision => false,
                    _ => {
                        *current = Some(target.clone());
                        true
                    }
                });
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ServiceName, Route>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The kick of each service looked at again when the engine says one of its containers
/// changed (handover services only: their proxy must follow what runs).
#[derive(Clone, Default)]
pub(crate) struct Kicks {
    inner: Arc<Mutex<BTreeMap<ServiceName, Arc<Notify>>>>,
}

impl Kicks {
    pub(crate) fn kick(&self, service: &ServiceName) -> bool {
        match self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)
        {
            Some(kick) => {
                kick.notify_one();
                true
            }
            None => false,
        }
    }
}

/// The actors of one driver run.
pub(crate) struct Roster {
    shared: Arc<actor::Shared>,
    resync: Option<Duration>,
    pub(crate) routes: Routes,
    pub(crate) kicks: Kicks,
    tasks: JoinSet<ServiceName>,
    stops: BTreeMap<ServiceName, ShutdownHandle>,
}

impl Roster {
    pub(crate) fn new(shared: Arc<actor::Shared>, resync: Option<Duration>) -> Self {
        Self {
            shared,
            resync,
            routes: Routes::default(),
            kicks: Kicks::default(),
            tasks: JoinSet::new(),
            stops: BTreeMap::new(),
        }
    }

    pub(crate) fn runs(&self, name: &ServiceName) -> bool {
        self.stops.contains_key(name)
    }

    /// Starts `spec`'s actor; it waits for its first target on its route.
    pub(crate) fn spawn(&mut self, spec: Arc<ServiceSpec>) {
        let name = spec.name().clone();
        let (desired, rx) = watch::channel(None);
        let handover = spec.strategy().handover().is_some();
        let kick = Arc::new(Notify::new());
        if handover {
            self.kicks
                .inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(name.clone(), kick.clone());
        }
        let (stop, stopped) = Shutdown::new();
        let rescans = actor::Rescans {
            every: self.resync.filter(|_| handover),
            kick,
        };
        let run = actor::run(self.shared.clone(), spec.clone(), rx, stopped, rescans);
        let finished = name.clone();
        self.tasks.spawn(async move {
            run.await;
            finished
        });
        self.routes
            .lock()
            .insert(name.clone(), Route { spec, desired });
        self.stops.insert(name, stop);
    }

    /// Tells one actor to stop (it finishes or undoes what is under way first).
    pub(crate) fn stop(&mut self, name: &ServiceName) {
        if let Some(stop) = self.stops.get(name) {
            stop.fire();
        }
    }

    pub(crate) fn stop_all(&self) {
        self.stops.values().for_each(ShutdownHandle::fire);
    }

    /// The next actor to end, once it has; its route and kick are gone by then.
    pub(crate) async fn next_ended(&mut self) -> Option<ServiceName> {
        let name = match self.tasks.join_next().await? {
            Ok(name) => name,
            Err(e) => {
                tracing::error!("a service's task ended abnormally: {e}");
                return None;
            }
        };
        self.stops.remove(&name);
        self.routes.lock().remove(&name);
        self.kicks
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&name);
        Some(name)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    pub(crate) async fn abort_all(&mut self) {
        self.tasks.shutdown().await;
    }
}
