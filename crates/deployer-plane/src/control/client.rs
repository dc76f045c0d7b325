//! [`ControlClient`]: the data plane of a standalone proxy process, over its control socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use deployer_proxy::{AddOutcome, DrainReport};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::{self, Hello, Request, Response};
use crate::plane::{DataPlane, PlaneError, RouteSet, ServiceStats, Swapped};
use crate::route::{Gate, Route, RouteBackend, RouteInfo, RouteSplit};

/// How long a request that does not wait for a drain may take, connect included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of one control socket; every call is a connection of its own, so calls never
/// wait behind another's drain.
#[derive(Debug, Clone)]
pub struct ControlClient {
    socket: PathBuf,
}

impl ControlClient {
    /// A client of the proxy serving `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Who serves the socket; fails when nothing does.
    pub async fn hello(&self) -> Result<Hello, PlaneError> {
        self.call(&Request::Hello {}, Duration::ZERO).await
    }

    /// Asks the proxy to hand over to a new process of `binary` (default: its own); returns
    /// the new pid.
    pub async fn upgrade(&self, binary: Option<PathBuf>) -> Result<u32, PlaneError> {
        #[derive(serde::Deserialize)]
        struct Upgraded {
            pid: u32,
        }
        let request = Request::Upgrade { binary };
        let upgraded: Upgraded = self.call(&request, Duration::from_secs(60)).await?;
        Ok(upgraded.pid)
    }

    fn control_error(&self, reason: impl Into<String>) -> PlaneError {
        PlaneError::Control {
            socket: self.socket.display().to_string(),
            reason: reason.into(),
        }
    }

    /// Sends `request` and reads its answer, within [`REQUEST_TIMEOUT`] plus `waits` (the
    /// drain or grace the request itself may take).
    pub async fn call<T: DeserializeOwned>(
        &self,
        request: &Request,
        waits: Duration,
    ) -> Result<T, PlaneError> {
        let bound = REQUEST_TIMEOUT.saturating_add(waits);
        let response = tokio::time::timeout(bound, self.exchange(request))
            .await
            .map_err(|_| self.control_error(format!("no answer within {bound:?}")))??;
        if !response.ok {
            let error = response
                .error
                .ok_or_else(|| self.control_error("a refusal without an error"))?;
            return Err(match (error.kind.as_str(), request) {
                ("upgrading", _) => PlaneError::Upgrading,
                ("unknown_service", _) => PlaneError::UnknownService(service_of(request)),
                _ => PlaneError::Refused(format!("{}: {}", error.kind, error.message)),
            });
        }
        serde_json::from_value(response.result.unwrap_or_default())
            .map_err(|e| self.control_error(format!("an unreadable answer: {e}")))
    }

    async fn exchange(&self, request: &Request) -> Result<Response, PlaneError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| self.control_error(format!("cannot connect: {e}")))?;
        let (read, mut write) = stream.into_split();
        let mut line = protocol::encode_request(request)
            .map_err(|e| self.control_error(format!("cannot encode the request: {e}")))?;
        line.push(b'\n');
        write
            .write_all(&line)
            .await
            .map_err(|e| self.control_error(format!("sending failed: {e}")))?;
        let mut answer = Vec::new();
        BufReader::new(read)
            .read_until(b'\n', &mut answer)
            .await
            .map_err(|e| self.control_error(format!("reading the answer failed: {e}")))?;
        if answer.is_empty() {
            return Err(self.control_error("the proxy closed the connection without answering"));
        }
        serde_json::from_slice(&answer)
            .map_err(|e| self.control_error(format!("an unreadable answer: {e}")))
    }
}

fn service_of(request: &Request) -> String {
    match request {
        Request::SetRoute { service, .. }
        | Request::RemoveRoute { service, .. }
        | Request::AddBackend { service, .. }
        | Request::RemoveBackend { service, .. }
        | Request::Swap { service, .. }
        | Request::Drain { service, .. }
        | Request::Switch { service, .. }
        | Request::SetGate { service, .. }
        | Request::SetSplit { service, .. } => service.clone(),
        _ => String::new(),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl DataPlane for ControlClient {
    async fn set_route(&self, service: &str, route: &Route) -> Result<RouteSet, PlaneError> {
        let request = Request::SetRoute {
            service: service.to_owned(),
            route: route.clone(),
        };
        self.call(&request, Duration::ZERO).await
    }

    async fn remove_route(
        &self,
        service: &str,
        grace: Duration,
    ) -> Result<Option<DrainReport>, PlaneError> {
        let request = Request::RemoveRoute {
            service: service.to_owned(),
            grace_ms: millis(grace),
        };
        self.call(&request, grace).await
    }

    async fn routes(&self) -> Result<Vec<RouteInfo>, PlaneError> {
        self.call(&Request::List {}, Duration::ZERO).await
    }

    async fn add_backend(
        &self,
        service: &str,
        backend: &RouteBackend,
    ) -> Result<AddOutcome, PlaneError> {
        let request = Request::AddBackend {
            service: service.to_owned(),
            backend: backend.clone(),
        };
        self.call(&request, Duration::ZERO).await
    }

    async fn remove_backend(
        &self,
        service: &str,
        addr: SocketAddr,
    ) -> Result<Vec<SocketAddr>, PlaneError> {
        let request = Request::RemoveBackend {
            service: service.to_owned(),
            addr,
        };
        self.call(&request, Duration::ZERO).await
    }

    async fn swap(
        &self,
        service: &str,
        out: &[SocketAddr],
        add: &RouteBackend,
    ) -> Result<Swapped, PlaneError> {
        let request = Request::Swap {
            service: service.to_owned(),
            out: out.to_vec(),
            add: add.clone(),
        };
        self.call(&request, Duration::ZERO).await
    }

    async fn drain(
        &self,
        service: &str,
        backends: &[SocketAddr],
        deadline: Duration,
    ) -> Result<DrainReport, PlaneError> {
        let request = Request::Drain {
            service: service.to_owned(),
            backends: backends.to_vec(),
            deadline_ms: millis(deadline),
        };
        // The proxy may add its cut settle time to the deadline.
        self.call(&request, deadline.saturating_add(Duration::from_secs(2)))
            .await
    }

    async fn set_gate(&self, service: &str, gate: &Gate) -> Result<(), PlaneError> {
        let request = Request::SetGate {
            service: service.to_owned(),
            gate: gate.clone(),
        };
        self.call(&request, Duration::ZERO).await
    }

    async fn set_split(&self, service: &str, split: Option<&RouteSplit>) -> Result<(), PlaneError> {
        let request = Request::SetSplit {
            service: service.to_owned(),
            split: split.cloned(),
        };
        self.call(&request, Duration::ZERO).await
    }

    async fn stats(&self) -> Result<Vec<ServiceStats>, PlaneError> {
        self.call(&Request::Stats {}, Duration::ZERO).await
    }
}
