//! The switcher's data plane, as the admin API's pause, maintenance and resume reach it.

use std::sync::Arc;

use deployer_http::{Gate, GateError, TrafficControl};
use deployer_plane::PlaneError;

pub struct SwitcherGates(pub Arc<deployer_docker::DockerSwitcher>);

#[async_trait::async_trait]
impl TrafficControl for SwitcherGates {
    async fn set_gate(&self, service: &str, gate: Gate) -> Result<(), GateError> {
        let gate = match gate {
            Gate::Paused { hold } => deployer_plane::Gate::Paused {
                hold_ms: u64::try_from(hold.as_millis()).unwrap_or(u64::MAX),
            },
            Gate::Maintenance { message } => deployer_plane::Gate::Maintenance { message },
            _ => deployer_plane::Gate::Open,
        };
        match self.0.plane().set_gate(service, &gate).await {
            Ok(()) => Ok(()),
            Err(PlaneError::UnknownService(_)) => Err(GateError::NoProxy),
            Err(error) => Err(GateError::Unavailable(error.to_string())),
        }
    }
}
