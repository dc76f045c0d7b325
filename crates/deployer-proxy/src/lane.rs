//! [`Lane`]: one stream of traffic with its own backends, gate and counters. Every proxy has
//! its own lane; an HTTP proxy on a shared listener also has a lane per virtual route, picked
//! for each request by its Host and path (see [`crate::RouteMatch`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::backends::{AddOutcome, Pool, Tracker};
use crate::drain::Drain;
use crate::gate::{Gate, GateState};
use crate::groups::Backend;
use crate::split::{ActiveSplit, Split};
use crate::stats::{BackendStats, GroupStats, ProxyTotals, Totals};
use crate::upstream::UpstreamSettings;

/// The backends, gate and counters of one route; cheap to clone, every clone steers the same
/// lane. A [`Proxy`](crate::Proxy) dereferences to its own lane.
#[derive(Debug, Clone)]
pub struct Lane {
    pub(crate) inner: Arc<LaneInner>,
}

#[derive(Debug)]
pub(crate) struct LaneInner {
    pub(crate) pool: Pool,
    pub(crate) gate: Gate,
    pub(crate) totals: Arc<Totals>,
    /// A canary split in force; read per request, set twice per canary.
    split: RwLock<Option<Arc<ActiveSplit>>>,
    /// Non-zero: every request is answered with a redirect to HTTPS on this port.
    redirect_https: AtomicU32,
}

impl Lane {
    pub(crate) fn new(upstream: Option<UpstreamSettings>) -> Self {
        let totals = Arc::new(Totals::default());
        Self {
            inner: Arc::new(LaneInner {
                pool: Pool::new(Arc::clone(&totals), upstream),
                gate: Gate::new(),
                totals,
                split: RwLock::new(None),
                redirect_https: AtomicU32::new(0),
            }),
        }
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    pub(crate) fn gate_ref(&self) -> &Gate {
        &self.inner.gate
    }

    pub(crate) fn totals_ref(&self) -> &Arc<Totals> {
        &self.inner.totals
    }

    pub(crate) fn trackers(&self) -> Vec<Arc<Tracker>> {
        self.inner.pool.trackers()
    }

    /// Sends a share of clients to the backends of one group (a canary), sticky per client;
    /// `None` ends the split, and requests go round robin over every backend again.
    pub fn split_traffic(&self, split: Option<Split>) {
        *self
            .inner
            .split
            .write()
            .unwrap_or_else(PoisonError::into_inner) = split.map(|s| Arc::new(ActiveSplit::new(s)));
    }

    /// Answers every request with `308 Permanent Redirect` to the same host and path over
    /// HTTPS on `port` (`None`: forwards again). For a plain-HTTP address in front of a TLS one.
    pub fn redirect_to_https(&self, port: Option<u16>) {
        self.inner
            .redirect_https
            .store(port.map_or(0, u32::from), Ordering::Relaxed);
    }

    /// The HTTPS port requests are redirected to, if they are.
    pub fn redirects_to_https(&self) -> Option<u16> {
        u16::try_from(self.inner.redirect_https.load(Ordering::Relaxed))
            .ok()
            .filter(|p| *p != 0)
    }

    /// The split in force.
    pub fn split(&self) -> Option<Split> {
        self.active_split().map(|s| s.split().clone())
    }

    pub(crate) fn active_split(&self) -> Option<Arc<ActiveSplit>> {
        self.inner
            .split
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The live backends, in round-robin order.
    pub fn backends(&self) -> Vec<SocketAddr> {
        self.inner.pool.addrs()
    }

    /// Holds new HTTP requests until [`Self::resume`], each for at most `hold`, after which it
    /// gets a 503 (a backend's restart, a migration: clients wait instead of failing).
    /// Requests already sent are not touched.
    pub fn pause(&self, hold: Duration) {
        self.inner.gate.set(GateState::Paused { hold });
    }

    /// Answers new HTTP requests 503 with `message` until [`Self::resume`].
    pub fn maintenance(&self, message: &str) {
        self.inner.gate.set(GateState::Maintenance {
            message: message.into(),
        });
    }

    /// Forwards new requests again after [`Self::pause`] or [`Self::maintenance`]; held
    /// requests go on at once.
    pub fn resume(&self) {
        self.inner.gate.set(GateState::Open);
    }

    /// Whether new requests are forwarded, held or refused.
    pub fn gate(&self) -> GateState {
        self.inner.gate.state()
    }

    /// Starts routing new requests (or connections) to `backend` too (a [`SocketAddr`], or
    /// a [`Backend`] with a group). Idempotent: an address already live keeps its group.
    pub fn add_backend(&self, backend: impl Into<Backend>) -> AddOutcome {
        self.inner.pool.add(backend)
    }

    /// Stops routing anything new to `addr` at once. Work already on it continues until
    /// the returned [`Drain`] is waited on and reaches its deadline. Removing an address
    /// that is not live returns an empty drain.
    pub fn remove_backend(&self, addr: SocketAddr) -> Drain {
        self.inner.pool.remove(addr)
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
        self.inner.pool.swap(out, add.into())
    }

    /// Makes `addrs` the live set in one atomic step (duplicates are ignored; backends in
    /// both the old and new set keep their connection pool, counters and group). The
    /// [`Drain`] covers every backend removed.
    pub fn replace_backends<B: Into<Backend>>(&self, backends: Vec<B>) -> Drain {
        self.inner.pool.replace(backends)
    }

    /// Counters of every backend: the live ones in round-robin order, then the removed
    /// ones that are still draining.
    pub fn stats(&self) -> Vec<BackendStats> {
        self.inner.pool.stats()
    }

    /// Counters summed by the group backends were added in ([`Backend::in_group`]),
    /// including backends removed long ago, in order of the group's first use. A group is
    /// kept as long as the proxy runs, so these never go backwards.
    pub fn group_stats(&self) -> Vec<GroupStats> {
        self.inner.pool.group_stats()
    }

    /// This lane's counters, including backends removed long ago. (A proxy's own lane also
    /// counts the listener's connections.)
    pub fn totals(&self) -> ProxyTotals {
        self.inner.totals.snapshot()
    }
}
