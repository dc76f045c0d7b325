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
//! - keeps per-backend counters ([`Proxy::stats`]) and proxy-wide ones ([`Proxy::totals`]).
//!
//! The entry point is [`Proxy::bind`]. It depends on no other deployer crate.
//!
//! ```no_run
//! use std::time::Duration;
//! use deployer_proxy::{Proxy, ProxyConfig};
//!
//! # async fn handover() -> Result<(), deployer_proxy::ProxyError> {
//! let old = "127.0.0.1:8001".parse().unwrap();
//! let new = "127.0.0.1:8002".parse().unwrap();
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
mod headers;
mod http;
mod server;
mod stats;
mod tcp;
mod upstream;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::backends::AddOutcome;
pub use crate::config::{Mode, ProxyConfig};
pub use crate::drain::{Drain, DrainReport};
pub use crate::error::ProxyError;
use crate::server::Shared;
pub use crate::stats::{BackendState, BackendStats, ProxyTotals};

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
    /// Stops the accept loop (a child of the graceful-shutdown token).
    stop_accepting: CancellationToken,
    /// Taken by `shutdown` to wait until the listener is closed.
    accept_loop: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Nobody can steer the proxy any more: stop taking new work.
        self.shared.graceful.cancel();
    }
}

impl Proxy {
    /// Validates `config`, binds its listen address (port 0 picks a free port) and starts
    /// accepting connections on the current Tokio runtime.
    pub async fn bind(config: ProxyConfig) -> Result<Proxy, ProxyError> {
        config.validate()?;
        let bind_error = |source| ProxyError::Bind {
            addr: config.listen,
            source,
        };
        let listener = server::bind_listener(config.listen).map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let shared = Arc::new(Shared::new(&config));
        let stop_accepting = shared.graceful.child_token();
        let accept_loop = tokio::spawn(server::accept_loop(
            Arc::clone(&shared),
            listener,
            stop_accepting.clone(),
        ));
        tracing::info!(%local_addr, mode = ?config.mode, backends = ?config.backends, "proxy listening");
        Ok(Proxy {
            inner: Arc::new(Handle {
                shared,
                local_addr,
                stop_accepting,
                accept_loop: Mutex::new(Some(accept_loop)),
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

    /// Starts routing new requests (or connections) to `addr` too. Idempotent.
    pub fn add_backend(&self, addr: SocketAddr) -> AddOutcome {
        self.inner.shared.pool.add(addr)
    }

    /// Stops routing anything new to `addr` at once. Work already on it continues until
    /// the returned [`Drain`] is waited on and reaches its deadline. Removing an address
    /// that is not live returns an empty drain.
    pub fn remove_backend(&self, addr: SocketAddr) -> Drain {
        self.inner.shared.pool.remove(addr)
    }

    /// Makes `addrs` the live set in one atomic step (duplicates are ignored; backends in
    /// both the old and new set keep their connection pool and counters). The [`Drain`]
    /// covers every backend removed.
    pub fn replace_backends(&self, addrs: Vec<SocketAddr>) -> Drain {
        self.inner.shared.pool.replace(addrs)
    }

    /// Counters of every backend: the live ones in round-robin order, then the removed
    /// ones that are still draining.
    pub fn stats(&self) -> Vec<BackendStats> {
        self.inner.shared.pool.stats()
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
        let accept_loop = self
            .inner
            .accept_loop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(accept_loop) = accept_loop
            && let Err(error) = accept_loop.await
        {
            tracing::error!(%error, "the accept loop failed");
        }
        server::shutdown(&self.inner.shared, grace).await
    }
}
