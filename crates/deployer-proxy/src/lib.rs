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
mod latency;
mod server;
mod stats;
mod tcp;
mod upstream;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::backends::AddOutcome;
pub use crate::config::{Mode, ProxyConfig};
pub use crate::drain::{Drain, DrainReport};
pub use crate::error::ProxyError;
pub use crate::gate::GateState;
pub use crate::groups::Backend;
pub use crate::latency::{LATENCY_BOUNDS, LatencyHistogram};
use crate::server::Shared;
pub use crate::stats::{
    BackendState, BackendStats, ClassCounts, GroupStats, ProxyTotals, ResponseClass,
};

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
        let shared = Arc::new(Shared::new(&config));
        let stop_accepting = shared.graceful.child_token();
        let started = match bind_listeners(&config) {
            Err(error) => Err(error),
            // Serve on this runtime: one listener, one accept loop.
            Ok((local_addr, listeners)) if config.workers == 0 => {
                let accept_loops = listeners
                    .into_iter()
                    .map(|listener| {
                        let shared = Arc::clone(&shared);
                        tokio::spawn(server::accept_loop(
                            shared,
                            listener,
                            stop_accepting.clone(),
                        ))
                    })
                    .collect();
                Ok((local_addr, accept_loops))
            }
            Ok((local_addr, listeners)) => start_workers(listeners, &shared, &stop_accepting)
                .await
                .map(|accept_loops| (local_addr, accept_loops)),
        };
        let (local_addr, accept_loops) = match started {
            Ok(started) => started,
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
            }),
        })
    }

    /// The address actually bound (useful when the configured port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The live backends, in round-robin order.
    pub fn backends(&self) -> Vec<SocketAddr> {
        self.inner.shared.pool.addrs()
    }

    /// Holds new HTTP requests until [`Self::resume`], each for at most `hold`, after which it
    /// gets a 503 (a backend's restart, a migration: clients wait instead of failing).
    /// Requests already sent are not touched.
    pub fn pause(&self, hold: Duration) {
        self.inner.shared.gate.set(GateState::Paused { hold });
    }

    /// Answers new HTTP requests 503 with `message` until [`Self::resume`].
    pub fn maintenance(&self, message: &str) {
        self.inner.shared.gate.set(GateState::Maintenance {
            message: message.into(),
        });
    }

    /// Forwards new requests again after [`Self::pause`] or [`Self::maintenance`]; held
    /// requests go on at once.
    pub fn resume(&self) {
        self.inner.shared.gate.set(GateState::Open);
    }

    /// Whether new requests are forwarded, held or refused.
    pub fn gate(&self) -> GateState {
        self.inner.shared.gate.state()
    }

    /// Starts routing new requests (or connections) to `backend` too (a [`SocketAddr`], or
    /// a [`Backend`] with a group). Idempotent: an address already live keeps its group.
    pub fn add_backend(&self, backend: impl Into<Backend>) -> AddOutcome {
        self.inner.shared.pool.add(backend)
    }

    /// Stops routing anything new to `addr` at once. Work already on it continues until
    /// the returned [`Drain`] is waited on and reaches its deadline. Removing an address
    /// that is not live returns an empty drain.
    pub fn remove_backend(&self, addr: SocketAddr) -> Drain {
        self.inner.shared.pool.remove(addr)
    }

    /// Routes new requests (or connections) to `add` instead of `out`, in one atomic step:
    /// no request goes to `out` after one went to `add`, which is how a handover moves a
    /// replica's traffic from its old container to its new one at one instant. The
    /// [`Drain`] covers the backends taken out (an address in both is kept).
    pub fn swap_backends(
        &self,
        out: &[SocketAddr],
        add: impl Into<Backend>,
    ) -> (AddOutcome, Drain) {
        self.inner.shared.pool.swap(out, add.into())
    }

    /// Makes `addrs` the live set in one atomic step (duplicates are ignored; backends in
    /// both the old and new set keep their connection pool, counters and group). The
    /// [`Drain`] covers every backend removed.
    pub fn replace_backends<B: Into<Backend>>(&self, backends: Vec<B>) -> Drain {
        self.inner.shared.pool.replace(backends)
    }

    /// Counters of every backend: the live ones in round-robin order, then the removed
    /// ones that are still draining.
    pub fn stats(&self) -> Vec<BackendStats> {
        self.inner.shared.pool.stats()
    }

    /// Counters summed by the group backends were added in ([`Backend::in_group`]),
    /// including backends removed long ago, in order of the group's first use. A group is
    /// kept as long as the proxy runs, so these never go backwards.
    pub fn group_stats(&self) -> Vec<GroupStats> {
        self.inner.shared.pool.group_stats()
    }

    /// Proxy-wide counters, including backends removed long ago.
    pub fn totals(&self) -> ProxyTotals {
        self.inner.shared.totals.snapshot()
    }

    /// Stops accepting (the listen port is released when this returns or earlier), lets
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
        server::shutdown(&self.inner.shared, grace).await
    }
}

/// Binds the listening socket, or with workers one socket per worker on the same port.
fn bind_listeners(config: &ProxyConfig) -> Result<(SocketAddr, Vec<TcpListener>), ProxyError> {
    let bind_error = |source| ProxyError::Bind {
        addr: config.listen,
        source,
    };
    let shared_port = config.workers > 0;
    // The first socket settles the port (the configured one may be 0); the others join it.
    let first = server::bind_listener(config.listen, shared_port).map_err(bind_error)?;
    let local_addr = first.local_addr().map_err(bind_error)?;
    let mut listeners = vec![first];
    for _ in 1..config.workers {
        listeners.push(server::bind_listener(local_addr, true).map_err(bind_error)?);
    }
    Ok((local_addr, listeners))
}

/// Starts one dedicated worker thread per listener; returns their accept loops.
async fn start_workers(
    listeners: Vec<TcpListener>,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
) -> Result<Vec<JoinHandle<()>>, ProxyError> {
    let mut starting = Vec::with_capacity(listeners.len());
    for (index, listener) in listeners.into_iter().enumerate() {
        let start_error = |source| ProxyError::StartWorker { index, source };
        // Moves the socket off this runtime's reactor so the worker's can own it.
        let listener = listener.into_std().map_err(start_error)?;
        let started = worker::start(index, Arc::clone(shared), listener, stop.clone())
            .map_err(start_error)?;
        starting.push(started);
    }
    let mut accept_loops = Vec::with_capacity(starting.len());
    for (index, started) in starting.into_iter().enumerate() {
        let accept_loop = started.await.map_err(|_| ProxyError::StartWorker {
            index,
            source: io::Error::other("the worker stopped before accepting"),
        })?;
        accept_loops.push(accept_loop);
    }
    Ok(accept_loops)
}
