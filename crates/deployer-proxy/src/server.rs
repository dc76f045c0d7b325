//! The running proxy: state shared by all connections, the accept loop, and shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::drain::{self, DrainReport};
use crate::groups::Backend;
use crate::http::{self, HttpSettings};
use crate::lane::Lane;
use crate::routes::RouteTable;
use crate::stats::ConnectionGuard;
use crate::tcp;
use crate::upstream::UpstreamSettings;
use crate::{Mode, ProxyConfig, ProxyError};

/// Connections the kernel may queue before we accept them: bursts of new connections
/// (e.g. a load balancer reconnecting) should not be refused. Clamped by somaxconn.
const LISTEN_BACKLOG: u32 = 4096;

/// Pause after an accept error that is not about one connection (typically out of file
/// descriptors), so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Everything connection tasks need, shared through one `Arc`.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) mode: Mode,
    /// The proxy's own lane: every request when it has no virtual routes, and those no route
    /// matches while it has live backends.
    pub(crate) main: Lane,
    /// Virtual routes by Host and path (HTTP only).
    pub(crate) routes: RouteTable,
    /// How new lanes' backends are reached.
    pub(crate) upstream: Option<UpstreamSettings>,
    /// Every connection and upgraded-connection task, so shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
    /// Forced shutdown: connection tasks stop at once.
    pub(crate) hard: CancellationToken,
    /// Graceful shutdown (child of `hard`): HTTP connections close after the request in
    /// flight; the accept loop's token is its child.
    pub(crate) graceful: CancellationToken,
    /// TCP mode's connect timeout (HTTP mode's lives in each backend's connector).
    pub(crate) connect_timeout: Duration,
    pub(crate) http: HttpSettings,
    /// TLS termination, when the listener serves HTTPS.
    pub(crate) tls: Option<crate::tls::Acceptor>,
    /// Set once a successor serves the listener: every answer closes its connection.
    pub(crate) retiring: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub(crate) fn new(config: &ProxyConfig) -> Result<Self, ProxyError> {
        let tls = match &config.tls {
            Some(store) => Some(crate::tls::Acceptor(tokio_rustls::TlsAcceptor::from(
                store.server_config()?,
            ))),
            None => None,
        };
        let upstream = (config.mode == Mode::Http).then(|| UpstreamSettings::from_config(config));
        let main = Lane::new(upstream.clone());
        for addr in &config.backends {
            main.add_backend(*addr);
        }
        let hard = CancellationToken::new();
        Ok(Self {
            mode: config.mode,
            main,
            routes: RouteTable::default(),
            upstream,
            tasks: TaskTracker::new(),
            graceful: hard.child_token(),
            hard,
            connect_timeout: config.connect_timeout,
            http: HttpSettings::from_config(config),
            tls,
            retiring: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Every lane: the proxy's own, then the virtual routes'.
    pub(crate) fn lanes(&self) -> Vec<Lane> {
        let mut lanes = vec![self.main.clone()];
        lanes.extend(self.routes.lanes());
        lanes
    }
}

/// Binds the listening socket, or with workers one socket per worker on the same port.
pub(crate) fn bind_listeners(
    config: &ProxyConfig,
) -> Result<(SocketAddr, Vec<std::net::TcpListener>), ProxyError> {
    let bind_error = |source| ProxyError::Bind {
        addr: config.listen,
        source,
    };
    // Every socket allows sharing its port, so that a later change of settings (more workers)
    // can add sockets beside the ones handed over. Sharing would also let a second process
    // bind the port unnoticed: an exclusive probe first makes "address in use" an error.
    if config.listen.port() != 0 {
        drop(bind_listener(config.listen, false).map_err(bind_error)?);
    }
    // The first socket settles the port (the configured one may be 0); the others join it.
    let first = bind_listener(config.listen, true).map_err(bind_error)?;
    let local_addr = first.local_addr().map_err(bind_error)?;
    let mut listeners = vec![first];
    for _ in 1..config.workers {
        listeners.push(bind_listener(local_addr, true).map_err(bind_error)?);
    }
    Ok((local_addr, listeners))
}

/// Binds one listening socket; `shared_port` lets several sockets (one per worker) bind the
/// same address, the kernel spreading connections among them.
///
/// Returned as a std socket (non-blocking) because whoever serves it registers it with its
/// own runtime: the caller's, or a worker's.
pub(crate) fn bind_listener(
    addr: SocketAddr,
    shared_port: bool,
) -> io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted proxy must be able to bind while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    if shared_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)?.into_std()
}

/// Serves `listeners` on the current runtime, one accept loop each.
pub(crate) fn spawn_accept_loops(
    listeners: Vec<std::net::TcpListener>,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
) -> io::Result<Vec<JoinHandle<()>>> {
    // Registers every socket before spawning, so a failure leaves nothing running.
    let listeners = listeners
        .into_iter()
        .map(TcpListener::from_std)
        .collect::<io::Result<Vec<_>>>()?;
    Ok(listeners
        .into_iter()
        .map(|listener| tokio::spawn(accept_loop(Arc::clone(shared), listener, stop.clone())))
        .collect())
}

/// Accepts connections until `stop` is cancelled, each served on its own task.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) if is_per_connection(&error) => {
                tracing::debug!(%error, "accepting a connection failed");
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "accepting connections failed; pausing");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "setting TCP_NODELAY failed");
        }
        let open = ConnectionGuard::new(Arc::clone(shared.main.totals_ref()));
        let connection_shared = Arc::clone(&shared);
        shared.tasks.spawn(async move {
            let _open = open;
            match (connection_shared.mode, connection_shared.tls.clone()) {
                (Mode::Http, Some(acceptor)) => {
                    http::serve_tls(connection_shared, acceptor.0, stream, peer).await;
                }
                (Mode::Http, None) => {
                    http::serve_connection(connection_shared, stream, peer, false).await;
                }
                (Mode::Tcp, _) => tcp::serve_connection(connection_shared, stream, peer).await,
            }
        });
    }
    // Dropping `listener` closes only this descriptor: the proxy's handle keeps a duplicate,
    // so the socket, and the connections queued on it, stay for a successor process.
    tracing::debug!("stopped accepting");
}

/// Errors that concern only the connection being accepted (the client gave up early).
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Closes HTTP connections gracefully, waits up to `grace` for all connection tasks, then
/// cuts everything left. The accept loop must already be stopped.
pub(crate) async fn shutdown(shared: &Shared, grace: Duration) -> DrainReport {
    let started = Instant::now();
    shared.graceful.cancel();
    shared.tasks.close();
    let drained_cleanly = tokio::time::timeout(grace, shared.tasks.wait())
        .await
        .is_ok();
    let mut cut = 0;
    if !drained_cleanly {
        let trackers: Vec<_> = shared.lanes().iter().flat_map(Lane::trackers).collect();
        for tracker in &trackers {
            // Nothing will be routed any more; this lets the cut below see them go idle.
            tracker.mark_removed();
        }
        // Cut through the trackers first so every request, upgrade and TCP connection is
        // counted, then drop whatever connection is left (idle or half-read).
        cut = drain::cut_all(&trackers).await;
        shared.hard.cancel();
        if tokio::time::timeout(drain::CUT_SETTLE, shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connection tasks did not stop after the forced shutdown");
        }
    }
    // Drop every backend's pool so idle keep-alive connections to backends close now.
    for lane in shared.lanes() {
        drop(lane.replace_backends(Vec::<Backend>::new()));
    }
    let waited = started.elapsed();
    tracing::info!(drained_cleanly, cut, ?waited, "proxy shut down");
    DrainReport {
        drained_cleanly,
        cut,
        waited,
    }
}
