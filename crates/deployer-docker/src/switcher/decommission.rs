//! A service taken out of the config: its proxy stops listening (requests under way
//! finish) and its containers are removed, so nothing keeps running that nothing manages.

use std::sync::PoisonError;
use std::time::Duration;

use deployer_core::ServiceSpec;

use super::DockerSwitcher;
use crate::error::DockerError;

impl DockerSwitcher {
    /// Closes `service`'s proxy (letting what it serves finish within `grace`) and removes
    /// its containers; returns how many were removed. Call once the driver no longer runs
    /// the service.
    pub async fn decommission(
        &self,
        service: &ServiceSpec,
        grace: Duration,
    ) -> Result<usize, DockerError> {
        let routed = self
            .routed
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(service.name());
        if routed {
            let report = self
                .plane
                .remove_route(service.name().as_str(), grace)
                .await
                .map_err(|source| DockerError::Plane {
                    service: service.name().to_string(),
                    source,
                })?;
            if let Some(report) = report {
                tracing::info!(service = %service.name(), cut = report.cut, "proxy of a removed service stopped");
            }
            let redirect = super::routes::redirect_name(service.name());
            if let Err(error) = self.plane.remove_route(&redirect, grace).await {
                tracing::warn!(service = %service.name(), %error, "removing its HTTPS redirect failed");
            }
        }
        self.backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(name, _), _| name != service.name());
        self.docker_probed
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(service.name());
        let engine = |source| DockerError::Engine {
            operation: "removing the containers of a removed service",
            subject: service.name().to_string(),
            source,
        };
        let found = self.list(service).await.map_err(engine)?;
        for container in &found {
            self.remove_container(&container.id, true)
                .await
                .map_err(engine)?;
        }
        tracing::info!(service = %service.name(), removed = found.len(), "containers of a removed service removed");
        Ok(found.len())
    }
}
