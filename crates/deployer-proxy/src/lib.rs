//! A switchable reverse proxy for zero-downtime handovers between backend processes.
//!
//! The deployer's handover strategy starts a new container on a loopback port, probes it,
//! then moves traffic to it here and drains the old one before stopping it. The proxy:
//!
//! - forwards HTTP/1.1 ([`Mode::Http`], each request routed on its own, so keep-alive
//!   clients follow a switch at their next request) or raw TCP ([`Mode::Tcp`], each
//!   connection routed when accepted);
//! - round-robins over any number of backends, changed atomically at run time with
//!   [`Proxy::add_backend`], [`Proxy::remove_backend`] and [`Proxy::replace_backends`];
//! - lets work already running on a removed backend finish, bounded by a deadline given to
//!   [`Drain::wait`], then cuts what is left and reports it;
//! - keeps per-backend counters ([`Proxy::stats`]), sums by a group the caller names each
//!   backend in, e.g. the release it runs ([`Proxy::group_stats`]), and proxy-wide ones
//!   with a latency histogram ([`Proxy::totals`]);
//! - serves on the caller's Tokio runtime, or on dedicated single-threaded workers
//!   ([`ProxyConfig::workers`]) for the best throughput and tail latency.
//!
//! The entry point is [`Proxy::bind`]. It depends on no other deployer crate.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::time::Duration;
//! use deployer_proxy::{Proxy, ProxyConfig};
//!
//! # async fn handover() -> Result<(), deployer_proxy::ProxyError> {
//! let old: SocketAddr = "127.0.0.1:8001".parse().unwrap();
//! let new: SocketAddr = "127.0.0.1:8002".parse().unwrap();
//! let config = ProxyConfig::http("127.0.0.1:8080".parse().unwrap()).with_backends([old]);
//! let proxy = Proxy::bind(config).await?;
//!
//! // The new container answers its probe: move traffic to it, then drain the old one.
//! let drain = proxy.replace_backends(vec![new]);
//! let report = drain.wait(Duration::from_secs(30)).await;
//! if !report.drained_cleanly {
//!     tracing::warn!(cut = report.cut, "old backend still busy at the deadline");
//! }
//! // Nothing of ours is open on the old backend any more: stop it.
//! # Ok(())
//! # }
//! ```
//!
//! # Upgrading the proxy itself
//!
//! A new proxy process can take over the listening sockets of the running one, like
//! nginx's binary upgrade, so the port never closes and no connection is refused: the old
//! process passes the descriptors from [`Proxy::listener_fds`] to the new one, which
//! serves them with [`Proxy::bind_inherited`]; once it accepts, the old one calls
//! [`Proxy::stop_accepting`], so connections the kernel queues from then on go to the new
//! process, and later [`Proxy::shutdown`] to finish the requests it still serves. Leave a
//! moment between the two: shutdown closes a connection that has not sent its first
//! request yet, which a client connecting just before `stop_accepting` may still be doing.
//! Passing the descriptors between processes (inheritance across exec, or a Unix socket)
//! is the caller's part.
#![warn(missing_docs)]

mod backends;
mod body;
mod config;
mod drain;
mod error;
mod failure_log;
mod gate;
mod groups;
mod headers;
mod http;
mod inherit;
mod lane;
mod latency;
mod routes;
mod server;
mod split;
mod stats;
mod tcp;
mod tls;
mod upstream;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::backends::AddOutcome;
pub use crate::config::{Mode, ProxyConfig};
pub use crate::drain::{Drain, DrainReport};
pub use crate::error::ProxyError;
pub use crate::gate::GateState;
pub use crate::groups::Backend;
pub use crate::lane::Lane;
pub use crate::latency::{LATENCY_BOUNDS, LatencyHistogram};
pub use crate::routes::RouteMatch;
use crate::server::Shared;
pub use crate::split::{CANARY_COOKIE, Split};
pub use crate::stats::{
    BackendState, BackendStats, ClassCounts, GroupStats, ProxyTotals, ResponseClass,
};
pub use crate::tls::{CertFiles, CertStore};

/// A handle to a running proxy; cheap to clone, every clone controls the same proxy.
///
/// Dropping the last handle stops accepting connections and closes idle HTTP keep-alive
/// connections; work in flight finishes on its own. Use [`shutdown`](Self::shutdown) for a
/// bounded stop.
#[derive(Debug, Clone)]
pub struct Proxy {
    inner: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    /// Stops the accept loops (a child of the graceful-shutdown token).
    stop_accepting: CancellationToken,
    /// One per listening socket; taken by `shutdown` to wait until they are closed.
    accept_loops: Mutex<Vec<JoinHandle<()>>>,
    /// A duplicate of each listening socket, in worker order, for `listener_fds`. It also
    /// keeps the socket open when its accept loop stops, so that connections queued on it
    /// wait for a successor instead of being reset; `shutdown` closes these.
    listeners: Mutex<Vec<std::net::TcpListener>>,
    certs: Option<CertStore>,
}

/// A proxy steers its own lane directly: `proxy.add_backend(..)`, `proxy.stats()`, ...
impl std::ops::Deref for Proxy {
    type Target = Lane;

    fn deref(&self) -> &Lane {
        &self.inner.shared.main
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Nobody can steer the proxy any more: stop taking new work, and let worker
        // threads end once their connections are done.
        self.shared.graceful.cancel();
        self.shared.tasks.close();
    }
}

impl Proxy {
    /// Validates `config`, binds its listen address (port 0 picks a free port) and starts
    /// accepting connections on the current Tokio runtime.
    pub async fn bind(config: ProxyConfig) -> Result<Proxy, ProxyError> {
        config.validate()?;
        let (local_addr, listeners) = server::bind_listeners(&config)?;
        Self::serve(config, local_addr, listeners).await
    }

    /// Like [`bind`](Self::bind), but serves on sockets that are already bound and
    /// listening, typically handed over by the previous proxy process from its
    /// [`listener_fds`](Self::listener_fds): the port never closes, so an upgrade of the
    /// proxy itself refuses no connection. `config.listen` is not bound; the address
    /// served ([`local_addr`](Self::local_addr)) is the first listener's.
    ///
    /// With `config.workers == 0` exactly one listener is served, on the current runtime.
    /// With workers, each listener gets its own worker: the count is raised to the number
    /// of listeners if that is larger, and listeners missing up to `config.workers` are
    /// bound on the same address with `SO_REUSEPORT` (which only works if the inherited
    /// ones were bound with it too, as a proxy with workers does). An empty `listeners`, or
    /// several without workers, is a [`ProxyError::Bind`].
    pub async fn bind_inherited(
        config: ProxyConfig,
        listeners: Vec<std::net::TcpListener>,
    ) -> Result<Proxy, ProxyError> {
        let inherited = listeners.len();
        let (config, local_addr, listeners) = inherit::prepare(config, listeners)?;
        tracing::info!(%local_addr, inherited, "serving on inherited listeners");
        Self::serve(config, local_addr, listeners).await
    }

    /// Starts serving `listeners` (one per worker, or the one served on this runtime).
    async fn serve(
        config: ProxyConfig,
        local_addr: SocketAddr,
        listeners: Vec<std::net::TcpListener>,
    ) -> Result<Proxy, ProxyError> {
        let bind_error = |source| ProxyError::Bind {
            addr: local_addr,
            source,
        };
        // Taken before the listeners move to their accept loops, so they can be handed over
        // at any time, even once those loops are stopped.
        let held = listeners
            .iter()
            .map(std::net::TcpListener::try_clone)
            .collect::<io::Result<Vec<_>>>()
            .map_err(bind_error)?;
        let shared = Arc::new(Shared::new(&config)?);
        let stop_accepting = shared.graceful.child_token();
        let started = if config.workers == 0 {
            server::spawn_accept_loops(listeners, &shared, &stop_accepting).map_err(bind_error)
        } else {
            worker::start_all(listeners, &shared, &stop_accepting).await
        };
        let accept_loops = match started {
            Ok(accept_loops) => accept_loops,
            Err(error) => {
                // Let whatever did start (worker threads) wind down.
                shared.hard.cancel();
                shared.tasks.close();
                return Err(error);
            }
        };
        tracing::info!(%local_addr, mode = ?config.mode, workers = config.workers, backends = ?config.backends, "proxy listening");
        Ok(Proxy {
            inner: Arc::new(Handle {
                shared,
                local_addr,
                stop_accepting,
                accept_loops: Mutex::new(accept_loops),
                listeners: Mutex::new(held),
                certs: config.tls.clone(),
            }),
        })
    }

    /// Duplicates of every listening socket this proxy serves on (one per worker, in worker
    /// order), to pass to the process taking over, which serves them with
    /// [`bind_inherited`](Self::bind_inherited). The duplicates have `FD_CLOEXEC` set like
    /// every descriptor Rust opens: pass them over a Unix socket, or clear the flag in the
    /// child before it execs.
    ///
    /// Works at any time until [`shutdown`](Self::shutdown), which closes the proxy's own
    /// descriptors and makes this an error. While any duplicate stays open the port stays
    /// bound, whatever this proxy does.
    pub fn listener_fds(&self) -> io::Result<Vec<OwnedFd>> {
        let held = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if held.is_empty() {
            return Err(io::Error::other(
                "the proxy has shut down: its listening sockets are closed",
            ));
        }
        held.iter()
            .map(|listener| listener.try_clone().map(OwnedFd::from))
            .collect()
    }

    /// Stops accepting new connections, for when another process serves the same sockets
    /// (see [`bind_inherited`](Self::bind_inherited)): connections the kernel queues from
    /// now on wait for that process to accept them. Unlike [`shutdown`](Self::shutdown) this
    /// closes nothing: requests in flight and keep-alive connections, idle ones included, go
    /// on being served here, and the listening sockets stay open (the proxy keeps a
    /// duplicate of each) so that no queued connection is reset. A connection this proxy was
    /// accepting at that very instant is still served here.
    ///
    /// Idempotent; [`shutdown`](Self::shutdown) still works afterwards and is how this proxy
    /// finishes what it serves and releases the sockets.
    pub fn stop_accepting(&self) {
        if !self.inner.stop_accepting.is_cancelled() {
            tracing::info!(local_addr = %self.inner.local_addr, "no longer accepting connections");
        }
        self.inner.stop_accepting.cancel();
    }

    /// Stops accepting, and from now on closes each HTTP/1 client connection after its next
    /// answer: keep-alive clients move to the process now accepting on the listener, each
    /// after a complete response. Call before [`shutdown`](Self::shutdown), with a moment
    /// between the two, when handing over to a successor.
    pub fn retire_connections(&self) {
        self.stop_accepting();
        self.inner
            .shared
            .retiring
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The address actually bound (useful when the configured port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The certificates it serves, when it terminates TLS.
    pub fn certs(&self) -> Option<&CertStore> {
        self.inner.certs.as_ref()
    }

    /// The proxy's own lane (what the proxy dereferences to).
    pub fn lane(&self) -> &Lane {
        &self.inner.shared.main
    }

    /// Adds a virtual route: requests matching `matcher` (by Host and path) go to a lane of
    /// their own, named `name`, with its own backends, gate and counters. Many services can so
    /// share one listener (`:80`); a request no route matches goes to the proxy's own lane if
    /// it has live backends, and is answered 404 otherwise. HTTP only.
    pub fn add_route(&self, name: &str, matcher: RouteMatch) -> Result<Lane, ProxyError> {
        let shared = &self.inner.shared;
        if shared.mode != Mode::Http {
            return Err(ProxyError::Route {
                reason: "a TCP proxy cannot route by host or path".to_owned(),
            });
        }
        let lane = Lane::new(shared.upstream.clone());
        shared.routes.add(name, matcher, lane.clone())?;
        Ok(lane)
    }

    /// The lane and match of the virtual route `name`.
    pub fn route(&self, name: &str) -> Option<(RouteMatch, Lane)> {
        self.inner.shared.routes.get(name)
    }

    /// The virtual routes' names, in the order they were added.
    pub fn route_names(&self) -> Vec<String> {
        self.inner.shared.routes.names()
    }

    /// Takes the virtual route `name` away: its requests get 404 (or the proxy's own lane)
    /// from now on; the [`Drain`] covers its backends.
    pub fn remove_route(&self, name: &str) -> Option<Drain> {
        let lane = self.inner.shared.routes.remove(name)?;
        Some(lane.replace_backends(Vec::<Backend>::new()))
    }

    /// Stops accepting (the listen port is released when this returns or earlier, unless
    /// descriptors from [`listener_fds`](Self::listener_fds) are still open), lets
    /// HTTP connections finish their current request and close, waits up to `grace` for
    /// everything (TCP connections and upgraded connections included), then cuts what is
    /// left. Affects every clone of the handle.
    pub async fn shutdown(self, grace: Duration) -> DrainReport {
        self.inner.stop_accepting.cancel();
        let accept_loops = std::mem::take(
            &mut *self
                .inner
                .accept_loops
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for accept_loop in accept_loops {
            if let Err(error) = accept_loop.await {
                tracing::error!(%error, "an accept loop failed");
            }
        }
        // The last descriptors of ours: the port is released unless a successor holds it.
        drop(std::mem::take(
            &mut *self
                .inner
                .listeners
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        ));
        server::shutdown(&self.inner.shared, grace).await
    }
}
