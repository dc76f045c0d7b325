//! The switcher's proxies, as the admin API's pause, maintenance and resume reach them.

use std::sync::Arc;

use deployer_core::ServiceName;
use deployer_http::{Gate, NoProxy, TrafficControl};

pub struct SwitcherGates(pub Arc<deployer_docker::DockerSwitcher>);

impl TrafficControl for SwitcherGates {
    fn set_gate(&self, service: &str, gate: Gate) -> Result<(), NoProxy> {
        let name = ServiceName::new(service).map_err(|_| NoProxy)?;
        let proxy = self.0.proxy(&name).ok_or(NoProxy)?;
        match gate {
            Gate::Paused { hold } => proxy.pause(hold),
            Gate::Maintenance { message } => proxy.maintenance(&message),
            _ => proxy.resume(),
        }
        Ok(())
    }
}
