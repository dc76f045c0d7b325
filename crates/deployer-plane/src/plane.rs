//! The port the switcher drives traffic through, whichever process serves it.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use deployer_proxy::{AddOutcome, BackendStats, DrainReport, GroupStats, ProxyTotals};
use serde::{Deserialize, Serialize};

use crate::route::{Gate, Route, RouteBackend, RouteInfo, RouteSplit};

/// Why a data-plane call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlaneError {
    /// No route of that service exists.
    #[error("no route for service {0:?}")]
    UnknownService(String),
    /// The route's proxy could not be bound or started.
    #[error("binding the proxy of {service} on {listen} failed: {reason}")]
    Bind {
        /// The service.
        service: String,
        /// Where it was to listen.
        listen: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The request was refused as it stands (the control API's `bad_request`).
    #[error("refused: {0}")]
    Refused(String),
    /// The standalone proxy could not be reached or answered something unreadable.
    #[error("the proxy's control socket {socket}: {reason}")]
    Control {
        /// The socket's path.
        socket: String,
        /// What went wrong.
        reason: String,
    },
    /// The proxy is handing over to a new process and takes no changes meanwhile.
    #[error("the proxy is upgrading; retry in a moment")]
    Upgrading,
}

impl PlaneError {
    /// The machine-readable kind the control API reports this error under.
    pub fn kind(&self) -> &'static str {
        match self {
            PlaneError::UnknownService(_) => "unknown_service",
            PlaneError::Bind { .. } => "bind_failed",
            PlaneError::Refused(_) => "bad_request",
            PlaneError::Control { .. } => "control",
            PlaneError::Upgrading => "upgrading",
        }
    }
}

/// What [`DataPlane::set_route`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteChange {
    /// A new route: its proxy now listens.
    Created,
    /// The route already had these settings; nothing was touched.
    Unchanged,
    /// The settings changed: a new proxy took over the listener and the backends, the old one
    /// finishes what it serves.
    Replaced,
}

/// The outcome of [`DataPlane::set_route`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSet {
    /// What changed.
    pub change: RouteChange,
    /// The address bound.
    pub bound: SocketAddr,
}

/// The outcome of [`DataPlane::swap`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swapped {
    /// Whether the added backend is new.
    pub added: AddOutcome,
    /// The backends taken out that still drain: pass them to [`DataPlane::drain`].
    pub draining: Vec<SocketAddr>,
}

/// One route's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStats {
    /// The service.
    pub service: String,
    /// Totals since the route's proxy was bound (a restart of the proxy process restarts them).
    pub totals: ProxyTotals,
    /// Sums by group (generation).
    pub groups: Vec<GroupStats>,
    /// Every backend, live then draining.
    pub backends: Vec<BackendStats>,
}

/// Every service's proxy: routes, backends, drains, gates and counters.
///
/// Two implementations: [`Fleet`](crate::Fleet) serves in this process;
/// [`ControlClient`](crate::ControlClient) drives a standalone proxy process over its control
/// socket, so traffic keeps flowing while the daemon restarts.
#[async_trait]
pub trait DataPlane: Send + Sync + std::fmt::Debug {
    /// Creates `service`'s route, or changes its settings; its backends and gate are kept.
    async fn set_route(&self, service: &str, route: &Route) -> Result<RouteSet, PlaneError>;

    /// Closes `service`'s route, letting what it serves finish within `grace`; `None` when
    /// there was none.
    async fn remove_route(
        &self,
        service: &str,
        grace: Duration,
    ) -> Result<Option<DrainReport>, PlaneError>;

    /// Every route.
    async fn routes(&self) -> Result<Vec<RouteInfo>, PlaneError>;

    /// Routes new traffic of `service` to `backend` too.
    async fn add_backend(
        &self,
        service: &str,
        backend: &RouteBackend,
    ) -> Result<AddOutcome, PlaneError>;

    /// Routes nothing new to `addr`; returns what now drains (empty when it was not live).
    async fn remove_backend(
        &self,
        service: &str,
        addr: SocketAddr,
    ) -> Result<Vec<SocketAddr>, PlaneError>;

    /// In one atomic step: `add` joins, `out` leave (they drain).
    async fn swap(
        &self,
        service: &str,
        out: &[SocketAddr],
        add: &RouteBackend,
    ) -> Result<Swapped, PlaneError>;

    /// Waits until nothing is open on the removed `backends` any more, or `deadline`, when it
    /// cuts what is left. Backends not draining count as drained.
    async fn drain(
        &self,
        service: &str,
        backends: &[SocketAddr],
        deadline: Duration,
    ) -> Result<DrainReport, PlaneError>;

    /// Sets what new requests of `service` meet.
    async fn set_gate(&self, service: &str, gate: &Gate) -> Result<(), PlaneError>;

    /// Sends a share of `service`'s clients to one group of its backends (a canary), or ends
    /// the split (`None`).
    async fn set_split(&self, service: &str, split: Option<&RouteSplit>) -> Result<(), PlaneError>;

    /// Every route's counters.
    async fn stats(&self) -> Result<Vec<ServiceStats>, PlaneError>;

    /// The live backends of `service` (none when it has no route).
    async fn backends(&self, service: &str) -> Result<Vec<SocketAddr>, PlaneError> {
        Ok(self
            .routes()
            .await?
            .into_iter()
            .find(|r| r.service == service)
            .map(|r| r.backends.into_iter().map(|b| b.addr).collect())
            .unwrap_or_default())
    }
}
