//! Counters (plain atomics on the hot path) and the snapshot types read from them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether a backend still receives new traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendState {
    /// In the routing table: new requests (HTTP) or connections (TCP) go to it.
    Live,
    /// Removed: gets nothing new, but what it already serves runs until its drain ends.
    Draining,
}

/// A snapshot of one backend's counters, from [`Proxy::stats`](crate::Proxy::stats).
///
/// Counters start at zero when the backend is added; removing and re-adding an address
/// starts a new backend with fresh counters (the old one shows as [`BackendState::Draining`]
/// until its drain ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendStats {
    /// The backend's address.
    pub addr: SocketAddr,
    /// Live or draining.
    pub state: BackendState,
    /// Requests (HTTP) or connections (TCP) routed to it.
    pub requests: u64,
    /// Failures: 502/504 answered on its behalf, connect failures, and responses that
    /// broke off mid-body.
    pub errors: u64,
    /// 5xx answers the backend itself sent (passed on to the client unchanged).
    pub server_errors: u64,
    /// Open right now: in-flight requests and upgraded connections (HTTP), or forwarded
    /// connections (TCP).
    pub active: u64,
    /// Requests and connections forcibly closed at a drain deadline or at shutdown.
    pub cut: u64,
}

/// Proxy-wide counters, from [`Proxy::totals`](crate::Proxy::totals).
///
/// Unlike [`BackendStats`] these never go backwards when a backend is removed, so they suit
/// monotonic metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ProxyTotals {
    /// Requests (HTTP) or connections (TCP) routed to any backend.
    pub requests: u64,
    /// Sum of every backend's [`BackendStats::errors`].
    pub errors: u64,
    /// Sum of every backend's [`BackendStats::server_errors`].
    pub server_errors: u64,
    /// Sum of every backend's [`BackendStats::active`], draining ones included.
    pub active: u64,
    /// Sum of every backend's [`BackendStats::cut`].
    pub cut: u64,
    /// Requests answered 503 (HTTP) or connections closed (TCP) because no backend was live.
    pub no_backend: u64,
    /// Client connections accepted.
    pub connections_accepted: u64,
    /// Client connections open right now (an upgraded HTTP connection counts in `active`
    /// instead, once hyper has handed it over).
    pub connections_open: u64,
}

/// The counters kept per backend and, summed, for the whole proxy.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) server_errors: AtomicU64,
    pub(crate) active: AtomicU64,
    pub(crate) cut: AtomicU64,
}

/// Proxy-wide counters, shared by every backend's tracker and the accept loop.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) sums: Counters,
    pub(crate) no_backend: AtomicU64,
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) connections_open: AtomicU64,
}

impl Totals {
    pub(crate) fn snapshot(&self) -> ProxyTotals {
        ProxyTotals {
            requests: load(&self.sums.requests),
            errors: load(&self.sums.errors),
            server_errors: load(&self.sums.server_errors),
            active: load(&self.sums.active),
            cut: load(&self.sums.cut),
            no_backend: load(&self.no_backend),
            connections_accepted: load(&self.connections_accepted),
            connections_open: load(&self.connections_open),
        }
    }
}

/// Counts one open client connection for as long as it lives.
#[derive(Debug)]
pub(crate) struct ConnectionGuard(Arc<Totals>);

impl ConnectionGuard {
    pub(crate) fn new(totals: Arc<Totals>) -> Self {
        totals.connections_accepted.fetch_add(1, Ordering::Relaxed);
        totals.connections_open.fetch_add(1, Ordering::Relaxed);
        Self(totals)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
