//! The control socket's server: a unix socket (mode 0600) taking one request per line.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use super::protocol::{self, Hello, MAX_LINE, Request, Response, WireError};
use crate::fleet::Fleet;
use crate::plane::{DataPlane, PlaneError};

/// How long a switch's new backend gets to accept a connection before the switch is refused.
const SWITCH_GATE: Duration = Duration::from_secs(2);

/// What an `upgrade` request asks of the process (it owns the binary and the listeners).
#[async_trait::async_trait]
pub trait Upgrader: Send + Sync {
    /// Starts the new process and hands it the listeners; returns its pid once it serves.
    async fn upgrade(&self, binary: Option<PathBuf>) -> Result<u32, String>;

    /// Called once the answer to a successful upgrade was written: the old process may now
    /// wind down.
    fn answered(&self) {}
}

/// Serves `fleet` on a unix socket.
pub struct ControlServer {
    fleet: Arc<Fleet>,
    socket: PathBuf,
    upgrader: Option<Arc<dyn Upgrader>>,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl ControlServer {
    /// A server of `fleet` on `socket` (bound by [`Self::listen`]).
    pub fn new(fleet: Arc<Fleet>, socket: impl Into<PathBuf>) -> Self {
        Self {
            fleet,
            socket: socket.into(),
            upgrader: None,
        }
    }

    /// Lets `upgrade` requests run `upgrader`; without one they are refused.
    #[must_use]
    pub fn with_upgrader(mut self, upgrader: Arc<dyn Upgrader>) -> Self {
        self.upgrader = Some(upgrader);
        self
    }

    /// Binds the socket, replacing a stale file (the caller holds the socket's lock, so no
    /// live proxy serves it), readable and writable by this user only.
    pub fn listen(&self) -> std::io::Result<UnixListener> {
        match std::fs::remove_file(&self.socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(&self.socket)?;
        std::fs::set_permissions(&self.socket, std::fs::Permissions::from_mode(0o600))?;
        Ok(listener)
    }

    /// Answers requests until `stop` is cancelled; each connection on its own task.
    pub async fn serve(self, listener: UnixListener, stop: CancellationToken) {
        let this = Arc::new(self);
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    let this = Arc::clone(&this);
                    tokio::spawn(async move { this.connection(stream).await });
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a control connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn connection(&self, stream: UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut line = Vec::new();
        loop {
            line.clear();
            let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX) + 1;
            match (&mut reader).take(limit).read_until(b'\n', &mut line).await {
                Ok(0) => return,
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "reading a control request failed");
                    return;
                }
            }
            let too_large = line.len() > MAX_LINE;
            let mut upgraded = false;
            let response = if too_large {
                Response::err(WireError::new(
                    "too_large",
                    format!("a request line is at most {MAX_LINE} bytes"),
                ))
            } else {
                match protocol::parse_request(&line) {
                    Ok(request) => {
                        upgraded = matches!(request, Request::Upgrade { .. });
                        self.dispatch(request).await
                    }
                    Err(error) => {
                        tracing::warn!(kind = %error.kind, message = %error.message, "control request refused");
                        Response::err(error)
                    }
                }
            };
            let mut bytes = serde_json::to_vec(&response).unwrap_or_default();
            bytes.push(b'\n');
            let written = write.write_all(&bytes).await.is_ok();
            if upgraded
                && response.ok
                && let Some(upgrader) = &self.upgrader
            {
                upgrader.answered();
            }
            if !written || too_large {
                return;
            }
        }
    }

    async fn dispatch(&self, request: Request) -> Response {
        match self.carry_out(request).await {
            Ok(value) => Response::ok(value),
            Err(error) => Response::err(error),
        }
    }

    async fn carry_out(&self, request: Request) -> Result<Value, WireError> {
        let fleet = &*self.fleet;
        let value = match request {
            Request::Hello {} => to_value(&Hello {
                version: protocol::VERSION,
                pid: std::process::id(),
                routes: fleet.route_count(),
            }),
            Request::SetRoute { service, route } => {
                to_value(&fleet.set_route(&service, &route).await.map_err(wire)?)
            }
            Request::RemoveRoute { service, grace_ms } => to_value(
                &fleet
                    .remove_route(&service, Duration::from_millis(grace_ms))
                    .await
                    .map_err(wire)?,
            ),
            Request::List {} => to_value(&fleet.routes().await.map_err(wire)?),
            Request::AddBackend { service, backend } => {
                to_value(&fleet.add_backend(&service, &backend).await.map_err(wire)?)
            }
            Request::RemoveBackend { service, addr } => {
                to_value(&fleet.remove_backend(&service, addr).await.map_err(wire)?)
            }
            Request::Swap { service, out, add } => {
                to_value(&fleet.swap(&service, &out, &add).await.map_err(wire)?)
            }
            Request::Drain {
                service,
                backends,
                deadline_ms,
            } => to_value(
                &fleet
                    .drain(&service, &backends, Duration::from_millis(deadline_ms))
                    .await
                    .map_err(wire)?,
            ),
            Request::Switch {
                service,
                out,
                add,
                deadline_ms,
            } => {
                answers(add.addr).await?;
                let swapped = fleet.swap(&service, &out, &add).await.map_err(wire)?;
                let report = fleet
                    .drain(
                        &service,
                        &swapped.draining,
                        Duration::from_millis(deadline_ms),
                    )
                    .await
                    .map_err(wire)?;
                serde_json::json!({ "added": swapped.added, "drained": report })
            }
            Request::SetGate { service, gate } => {
                to_value(&fleet.set_gate(&service, &gate).await.map_err(wire)?)
            }
            Request::SetSplit { service, split } => to_value(
                &fleet
                    .set_split(&service, split.as_ref())
                    .await
                    .map_err(wire)?,
            ),
            Request::Stats {} => to_value(&fleet.stats().await.map_err(wire)?),
            Request::Upgrade { binary } => {
                let Some(upgrader) = &self.upgrader else {
                    return Err(WireError::new(
                        "bad_request",
                        "this proxy cannot upgrade itself (it runs embedded)",
                    ));
                };
                let pid = upgrader
                    .upgrade(binary)
                    .await
                    .map_err(|e| WireError::new("upgrade_failed", e))?;
                serde_json::json!({ "pid": pid })
            }
        };
        Ok(value)
    }
}

/// The health gate of a switch: the new backend must accept a connection.
async fn answers(addr: std::net::SocketAddr) -> Result<(), WireError> {
    let refused = |reason: String| {
        WireError::new(
            "backend_unreachable",
            format!("{addr} does not accept connections ({reason}); nothing was switched"),
        )
    };
    match tokio::time::timeout(SWITCH_GATE, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(refused(error.to_string())),
        Err(_) => Err(refused(format!("no answer within {SWITCH_GATE:?}"))),
    }
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(wire)`
fn wire(error: PlaneError) -> WireError {
    WireError::new(error.kind(), error.to_string())
}
