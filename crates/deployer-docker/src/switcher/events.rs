//! The engine's event stream, followed: when one of deployer's containers dies, is paused or
//! removed (or turns unhealthy, for a service whose health is the image's `HEALTHCHECK`),
//! its backend leaves the proxy at once (before any repair), and the driver is told, so that
//! it looks at the service now instead of at its next periodic scan; the same look puts it
//! back once it serves again.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bollard::Docker;
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptionsBuilder;
use deployer_core::ServiceName;
use deployer_core::ports::EngineEvent;
use deployer_core::reconcile::InstanceId;
use deployer_plane::DataPlane;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::labels;

/// Events the engine sends about containers that change whether they can serve.
const ACTIONS: [&str; 8] = [
    "die",
    "oom",
    "pause",
    "unpause",
    "start",
    "restart",
    "destroy",
    // The engine sends `health_status: healthy` / `: unhealthy`; the filter takes the prefix.
    "health_status",
];

/// The action of a container whose `HEALTHCHECK` failed.
const UNHEALTHY: &str = "health_status: unhealthy";

/// Of those, the ones after which a container answers nothing.
const GONE: [&str; 4] = ["die", "oom", "pause", "destroy"];

/// Events queued for the driver; a burst beyond this is dropped (the periodic scan repairs
/// what it missed).
const QUEUE: usize = 256;

/// Pause before subscribing again after the stream broke.
const RESUBSCRIBE: Duration = Duration::from_secs(1);

/// Follows the engine's events for one switcher.
pub(crate) struct EventWatcher {
    pub(crate) docker: Docker,
    pub(crate) scope: Option<String>,
    pub(crate) plane: Arc<dyn DataPlane>,
    pub(crate) routed: Arc<RwLock<BTreeSet<ServiceName>>>,
    pub(crate) backends: Arc<Mutex<HashMap<(ServiceName, InstanceId), SocketAddr>>>,
    pub(crate) docker_probed: Arc<RwLock<HashSet<ServiceName>>>,
}

impl EventWatcher {
    /// Starts following; the task ends when the receiver is dropped.
    pub(crate) fn spawn(self) -> mpsc::Receiver<EngineEvent> {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(self.run(tx));
        rx
    }

    async fn run(self, tx: mpsc::Sender<EngineEvent>) {
        let mut resubscribed = false;
        loop {
            if resubscribed {
                // What happened while the stream was down is unknown: look at everything.
                for service in self.services() {
                    let event = EngineEvent {
                        service,
                        instance: None,
                        action: "resubscribed".to_owned(),
                    };
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
            }
            let filters = HashMap::from([
                ("type", vec!["container"]),
                ("label", vec![labels::SERVICE]),
                ("event", ACTIONS.to_vec()),
            ]);
            let options = EventsOptionsBuilder::new().filters(&filters).build();
            let mut stream = self.docker.events(Some(options));
            while let Some(item) = stream.next().await {
                match item {
                    Ok(message) => {
                        let Some(event) = self.event_of(&message) else {
                            continue;
                        };
                        self.act(&event).await;
                        if tx.is_closed() {
                            return;
                        }
                        if tx.try_send(event).is_err() {
                            tracing::debug!(
                                "engine event queue full; the periodic scan catches up"
                            );
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the engine's event stream broke; subscribing again");
                        break;
                    }
                }
            }
            if tx.is_closed() {
                return;
            }
            resubscribed = true;
            tokio::time::sleep(RESUBSCRIBE).await;
        }
    }

    /// The event as the driver takes it, if it is about one of this switcher's containers.
    fn event_of(&self, message: &EventMessage) -> Option<EngineEvent> {
        let action = message.action.clone()?;
        let attributes = message.actor.as_ref()?.attributes.as_ref()?;
        if !labels::in_scope(attributes, self.scope.as_deref()) {
            return None;
        }
        let service = ServiceName::new(attributes.get(labels::SERVICE)?).ok()?;
        let instance = match labels::instance_of(attributes) {
            (Some(generation), Some(slot)) => Some(InstanceId { generation, slot }),
            _ => None,
        };
        Some(EngineEvent {
            service,
            instance,
            action,
        })
    }

    /// A container that stopped answering leaves its proxy now; the repair (restart, probe,
    /// promote) follows from the driver. Its recorded address stays, so the repair knows what
    /// to replace.
    async fn act(&self, event: &EngineEvent) {
        let unhealthy = event.action == UNHEALTHY
            && self
                .docker_probed
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&event.service);
        if !GONE.contains(&event.action.as_str()) && !unhealthy {
            return;
        }
        let Some(id) = event.instance else {
            return;
        };
        let addr = self
            .backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(event.service.clone(), id))
            .copied();
        let routed = self
            .routed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&event.service);
        let Some(addr) = addr.filter(|_| routed) else {
            return;
        };
        match self
            .plane
            .remove_backend(event.service.as_str(), addr)
            .await
        {
            Ok(draining) if draining.is_empty() => {}
            Ok(_) => {
                tracing::warn!(service = %event.service, instance = %id, backend = %addr, action = %event.action, "container stopped answering: its backend left the proxy")
            }
            Err(error) => {
                tracing::warn!(service = %event.service, backend = %addr, %error, "taking a dead container out of the proxy failed")
            }
        }
    }

    fn services(&self) -> Vec<ServiceName> {
        self.routed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}
