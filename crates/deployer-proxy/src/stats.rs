//! Counters (plain atomics on the hot path) and the snapshot types read from them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::StatusCode;

use crate::latency::{Latency, LatencyHistogram};

/// Whether a backend still receives new traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BackendState {
    /// In the routing table: new requests (HTTP) or connections (TCP) go to it.
    Live,
    /// Removed: gets nothing new, but what it already serves runs until its drain ends.
    Draining,
}

/// How a request (HTTP) or connection (TCP) routed to a backend was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResponseClass {
    /// The backend answered 1xx: in practice `101 Switching Protocols`, an upgrade.
    Informational,
    /// The backend answered 2xx.
    Success,
    /// The backend answered 3xx.
    Redirection,
    /// The backend answered 4xx.
    ClientError,
    /// The backend answered 5xx (or a status past 599).
    ServerError,
    /// The proxy answered 502 or 504 on the backend's behalf: no connection, no response
    /// headers in time, a failure before them, or a cut at a drain deadline before them.
    /// In TCP mode, connecting to the backend failed.
    GatewayError,
    /// TCP mode: the connection to the backend was made and is forwarded.
    Connected,
}

impl ResponseClass {
    /// Every class, in the order of [`ClassCounts`].
    pub const ALL: [ResponseClass; 7] = [
        Self::Informational,
        Self::Success,
        Self::Redirection,
        Self::ClientError,
        Self::ServerError,
        Self::GatewayError,
        Self::Connected,
    ];

    /// The class of a status the backend sent.
    pub fn of(status: StatusCode) -> Self {
        match status.as_u16() {
            100..=199 => Self::Informational,
            200..=299 => Self::Success,
            300..=399 => Self::Redirection,
            400..=499 => Self::ClientError,
            _ => Self::ServerError,
        }
    }

    /// A short name, fit for a metric label: `1xx` ... `5xx`, `gateway_error`, `connected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Informational => "1xx",
            Self::Success => "2xx",
            Self::Redirection => "3xx",
            Self::ClientError => "4xx",
            Self::ServerError => "5xx",
            Self::GatewayError => "gateway_error",
            Self::Connected => "connected",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// Answers by [`ResponseClass`]: each request (HTTP) or connection (TCP) counts once, in
/// the class of the answer its client got (a request another backend took after this one
/// failed counts there, not here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ClassCounts([u64; ResponseClass::ALL.len()]);

impl ClassCounts {
    /// The count of one class.
    pub fn get(&self, class: ResponseClass) -> u64 {
        self.0[class.index()]
    }

    /// Every class with its count, in the order of [`ResponseClass::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = (ResponseClass, u64)> + '_ {
        ResponseClass::ALL
            .iter()
            .copied()
            .zip(self.0.iter().copied())
    }
}

/// A snapshot of one backend's counters, from [`Proxy::stats`](crate::Proxy::stats).
///
/// Counters start at zero when the backend is added; removing and re-adding an address
/// starts a new backend with fresh counters (the old one shows as [`BackendState::Draining`]
/// until its drain ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// How the requests (connections) it took were answered.
    pub answers: ClassCounts,
}

/// A snapshot of the counters of one group of backends, from
/// [`Proxy::group_stats`](crate::Proxy::group_stats): the sum over every backend ever added
/// with that group (see [`Backend::in_group`](crate::Backend::in_group)), removed ones
/// included, so these never go backwards.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct GroupStats {
    /// The group's name (empty for backends added without one).
    pub group: Arc<str>,
    /// Live backends in the group right now.
    pub live_backends: usize,
    /// Sum of its backends' [`BackendStats::requests`].
    pub requests: u64,
    /// Sum of its backends' [`BackendStats::errors`].
    pub errors: u64,
    /// Sum of its backends' [`BackendStats::server_errors`].
    pub server_errors: u64,
    /// Sum of its backends' [`BackendStats::active`], draining ones included.
    pub active: u64,
    /// Sum of its backends' [`BackendStats::cut`].
    pub cut: u64,
    /// Sum of its backends' [`BackendStats::answers`].
    pub answers: ClassCounts,
    /// Time to response headers of its requests.
    pub latency: LatencyHistogram,
}

/// Proxy-wide counters, from [`Proxy::totals`](crate::Proxy::totals).
///
/// Unlike [`BackendStats`] these never go backwards when a backend is removed, so they suit
/// monotonic metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
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
    /// Sum of every backend's [`BackendStats::answers`].
    pub answers: ClassCounts,
    /// HTTP mode: time from a request's arrival to its response headers (the backend's, or
    /// the proxy's 502/504), for every request routed to a backend.
    pub latency: LatencyHistogram,
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
    /// Indexed like [`ResponseClass::ALL`].
    answers: [AtomicU64; ResponseClass::ALL.len()],
}

impl Counters {
    pub(crate) fn count_answer(&self, class: ResponseClass) {
        self.answers[class.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn answers(&self) -> ClassCounts {
        ClassCounts(std::array::from_fn(|i| load(&self.answers[i])))
    }
}

/// Proxy-wide counters, shared by every backend's tracker and the accept loop.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) sums: Counters,
    pub(crate) no_backend: AtomicU64,
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) connections_open: AtomicU64,
    pub(crate) latency: Latency,
}

impl Totals {
    pub(crate) fn snapshot(&self) -> ProxyTotals {
        ProxyTotals {
            requests: load(&self.sums.requests),
            errors: load(&self.sums.errors),
            server_errors: load(&self.sums.server_errors),
            active: load(&self.sums.active),
            cut: load(&self.sums.cut),
            answers: self.sums.answers(),
            latency: self.latency.snapshot(),
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
