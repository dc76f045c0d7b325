//! Adoption while the daemon runs: a container opted in with `deployer.enable=true` that
//! starts after the daemon did is adopted on its start event, and an adopted service whose
//! last container was removed by hand is forgotten on the destroy event, without a restart.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::EventsOptionsBuilder;
use deployer_core::ServiceName;
use deployer_core::driver::{ControlError, DriverHandle, error_chain};
use deployer_core::shutdown::Shutdown;
use futures_util::StreamExt;

use super::discover_adopted;
use crate::switcher::{labels, list_in_scope};

/// Pause before subscribing again after the stream broke.
const RESUBSCRIBE: Duration = Duration::from_secs(1);

/// Follows the engine's events for opted-in containers in node `scope` until `stop`, adopting
/// new services into `handle`'s driver and forgetting adopted ones whose containers are gone.
/// Services declared in the config are never adopted over, nor forgotten.
pub async fn follow_adoptions(
    docker: Docker,
    handle: DriverHandle,
    scope: Option<String>,
    mut stop: Shutdown,
) {
    let follower = Follower {
        docker,
        handle,
        scope,
    };
    let mut resubscribed = false;
    loop {
        if resubscribed {
            // What started or went while the stream was down is unknown: look at everything.
            follower.adopt_new().await;
            follower.forget_gone().await;
        }
        let filters = HashMap::from([
            ("type", vec!["container"]),
            ("label", vec!["deployer.enable=true"]),
            ("event", vec!["start", "destroy"]),
        ]);
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        let mut stream = follower.docker.events(Some(options));
        loop {
            let item = tokio::select! {
                () = stop.wait() => return,
                item = stream.next() => item,
            };
            match item {
                Some(Ok(message)) => match message.action.as_deref() {
                    Some("start") => follower.adopt_new().await,
                    Some("destroy") => follower.forget_gone().await,
                    _ => {}
                },
                Some(Err(error)) => {
                    tracing::warn!(%error, "the engine's event stream broke; following adoptions again");
                    break;
                }
                None => break,
            }
        }
        resubscribed = true;
        tokio::select! {
            () = stop.wait() => return,
            () = tokio::time::sleep(RESUBSCRIBE) => {}
        }
    }
}

struct Follower {
    docker: Docker,
    handle: DriverHandle,
    scope: Option<String>,
}

impl Follower {
    /// Adopts every opted-in service the driver does not run yet.
    async fn adopt_new(&self) {
        let known: Vec<_> = self.handle.specs().iter().map(|s| (**s).clone()).collect();
        let found = match discover_adopted(&self.docker, &known, self.scope.as_deref()).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!("cannot look for containers to adopt: {}", error_chain(&e));
                return;
            }
        };
        for spec in found {
            let name = spec.name().clone();
            match self.handle.adopt(spec) {
                Ok(()) => {}
                // Adopted meanwhile by another event's look.
                Err(ControlError::ServiceExists(_)) => {}
                Err(e) => tracing::warn!(service = %name, "not adopted: {e}"),
            }
        }
    }

    /// Forgets adopted services at rest none of whose opted-in containers remain. One
    /// deploying is left alone: a recreate removes its old container on purpose.
    async fn forget_gone(&self) {
        let adopted: Vec<ServiceName> = self
            .handle
            .specs()
            .iter()
            .map(|s| s.name().clone())
            .filter(|name| self.handle.is_adopted(name.as_str()))
            .collect();
        if adopted.is_empty() {
            return;
        }
        let present = match self.present().await {
            Ok(present) => present,
            Err(e) => {
                tracing::warn!("cannot list adopted containers: {}", error_chain(&e));
                return;
            }
        };
        for name in adopted.into_iter().filter(|n| !present.contains(n)) {
            let at_rest = self
                .handle
                .service(name.as_str())
                .is_none_or(|view| !view.status.state.is_deploying());
            if !at_rest {
                continue;
            }
            if let Err(e) = self.handle.forget(name.as_str()) {
                tracing::warn!(service = %name, "not forgotten: {e}");
            }
        }
    }

    /// The services at least one opted-in container in scope belongs to.
    async fn present(&self) -> Result<BTreeSet<ServiceName>, bollard::errors::Error> {
        let containers = list_in_scope(
            &self.docker,
            format!("{}=true", labels::ENABLE),
            self.scope.as_deref(),
        )
        .await?;
        Ok(containers
            .iter()
            .filter_map(|c| {
                let name = c.names.iter().flatten().next()?;
                labels::adopted_service(c.labels.as_ref()?, name)
            })
            .collect())
    }
}
