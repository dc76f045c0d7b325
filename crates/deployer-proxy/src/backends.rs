//! The backend pool: the routing table with round robin, and per-backend accounting that
//! lets a removed backend be drained and, at its deadline, cut.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::drain::Drain;
use crate::failure_log::FailureLog;
use crate::groups::{Backend, Group, Groups};
use crate::stats::{BackendState, BackendStats, Counters, GroupStats, ResponseClass, Totals, load};
use crate::upstream::{HttpUpstream, UpstreamSettings};

/// One side of a traffic split: the backends of `group` (the canary) or the others.
#[derive(Debug, Clone)]
pub(crate) struct Side {
    pub(crate) group: Arc<str>,
    pub(crate) canary: bool,
}

/// What [`Proxy::add_backend`](crate::Proxy::add_backend) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddOutcome {
    /// The backend is new and now receives traffic.
    Added,
    /// The backend was already live; nothing changed.
    AlreadyPresent,
}

/// Accounting and drain state of one backend, from when it is added until the last request
/// or connection routed to it has ended.
///
/// Shared by the routing entry, every [`ActiveGuard`] and the [`Drain`] that covers it.
#[derive(Debug)]
pub(crate) struct Tracker {
    addr: SocketAddr,
    counters: Counters,
    /// Every change is mirrored in the group's sums and the proxy-wide totals, so both
    /// survive the backend's removal.
    group: Arc<Group>,
    totals: Arc<Totals>,
    /// Set once the backend left the routing table; from then on the last guard to end
    /// wakes drains. (While live nobody waits, so the hot path skips the Notify's lock.)
    removed: AtomicBool,
    /// Woken when `active` reaches zero after removal.
    idle: Notify,
    /// Set at the drain deadline (or a forced shutdown): everything still open on this
    /// backend must stop. A flag plus a Notify rather than a CancellationToken so that
    /// checking it on the hot path is one atomic load.
    cut_requested: AtomicBool,
    cut_signal: Notify,
    /// Failed requests to this backend, logged as a rate.
    failures: FailureLog,
}

impl Tracker {
    /// Notes a failed request: `Some(held_back)` when it is to be logged (see
    /// [`FailureLog::note`]).
    pub(crate) fn log_failure(&self) -> Option<u64> {
        self.failures.note(tokio::time::Instant::now())
    }

    fn new(addr: SocketAddr, group: Arc<Group>, totals: Arc<Totals>) -> Self {
        Self {
            addr,
            counters: Counters::default(),
            group,
            totals,
            removed: AtomicBool::new(false),
            idle: Notify::new(),
            cut_requested: AtomicBool::new(false),
            failures: FailureLog::default(),
            cut_signal: Notify::new(),
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn active(&self) -> u64 {
        self.counters.active.load(Ordering::SeqCst)
    }

    pub(crate) fn cut_count(&self) -> u64 {
        load(&self.counters.cut)
    }

    pub(crate) fn is_cut(&self) -> bool {
        self.cut_requested.load(Ordering::SeqCst)
    }

    /// Resolves once [`cut`](Self::cut) has been called (at once if it already was).
    pub(crate) async fn cut_requested(&self) {
        let mut notified = pin!(self.cut_signal.notified());
        // Register before checking the flag so a cut between the two cannot be missed.
        notified.as_mut().enable();
        if self.is_cut() {
            return;
        }
        notified.await;
    }

    /// Tells everything still open on this backend to stop.
    pub(crate) fn cut(&self) {
        self.cut_requested.store(true, Ordering::SeqCst);
        self.cut_signal.notify_waiters();
    }

    /// Waits until nothing is open on this (removed) backend, or until `until`.
    /// Returns whether it became idle.
    pub(crate) async fn wait_idle_until(&self, until: Instant) -> bool {
        loop {
            let mut notified = pin!(self.idle.notified());
            notified.as_mut().enable();
            if self.active() == 0 {
                return true;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return self.active() == 0;
            }
        }
    }

    pub(crate) fn mark_removed(&self) {
        self.removed.store(true, Ordering::SeqCst);
    }

    fn snapshot(&self, state: BackendState) -> BackendStats {
        BackendStats {
            addr: self.addr,
            state,
            requests: load(&self.counters.requests),
            errors: load(&self.counters.errors),
            server_errors: load(&self.counters.server_errors),
            active: self.active(),
            cut: self.cut_count(),
            answers: self.counters.answers(),
        }
    }

    /// The counters every change goes to: the backend's, its group's, the proxy's.
    fn layers(&self) -> [&Counters; 3] {
        [&self.counters, &self.group.counters, &self.totals.sums]
    }
}

/// One request (HTTP), upgraded connection or forwarded connection (TCP) in flight on a
/// backend. Counts as active from creation until drop.
#[derive(Debug)]
pub(crate) struct ActiveGuard {
    tracker: Arc<Tracker>,
}

impl ActiveGuard {
    fn start(tracker: &Arc<Tracker>) -> Self {
        for counters in tracker.layers() {
            counters.requests.fetch_add(1, Ordering::Relaxed);
            counters.active.fetch_add(1, Ordering::SeqCst);
        }
        Self {
            tracker: Arc::clone(tracker),
        }
    }

    pub(crate) fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// The tracker, for a task that must watch for a cut independently of this guard.
    pub(crate) fn shared_tracker(&self) -> Arc<Tracker> {
        Arc::clone(&self.tracker)
    }

    /// Counts a failure attributable to the backend.
    pub(crate) fn record_error(&self) {
        for counters in self.tracker.layers() {
            counters.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a 5xx answer of the backend's own.
    pub(crate) fn record_server_error(&self) {
        for counters in self.tracker.layers() {
            counters.server_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts how the client was answered; once per request (connection).
    pub(crate) fn record_answer(&self, class: ResponseClass) {
        for counters in self.tracker.layers() {
            counters.count_answer(class);
        }
    }

    /// Counts the time the client waited for response headers.
    pub(crate) fn record_latency(&self, latency: std::time::Duration) {
        self.tracker.totals.latency.observe(latency);
        self.tracker.group.latency.observe(latency);
    }

    /// Counts this unit of work as forcibly closed.
    pub(crate) fn record_cut(&self) {
        for counters in self.tracker.layers() {
            counters.cut.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let tracker = &self.tracker;
        tracker.totals.sums.active.fetch_sub(1, Ordering::SeqCst);
        tracker.group.counters.active.fetch_sub(1, Ordering::SeqCst);
        let before = tracker.counters.active.fetch_sub(1, Ordering::SeqCst);
        if before == 1 && tracker.removed.load(Ordering::SeqCst) {
            tracker.idle.notify_waiters();
        }
    }
}

/// A routing entry: the backend's accounting plus, in HTTP mode, its own connection pool.
///
/// Each backend gets its own pool so that once it is removed and the last request on it
/// has finished, the pool is dropped with it and its idle keep-alive connections are
/// closed, never reused for a later backend that happens to get the same address.
#[derive(Debug)]
pub(crate) struct Route {
    tracker: Arc<Tracker>,
    http: Option<HttpUpstream>,
}

impl Route {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.tracker.addr
    }

    /// The backend's HTTP client; `None` in TCP mode.
    pub(crate) fn http(&self) -> Option<&HttpUpstream> {
        self.http.as_ref()
    }
}

/// The set of live backends, round robin over them, and the backends still draining.
#[derive(Debug)]
pub(crate) struct Pool {
    /// Live backends in insertion order. Readers hold the lock only to pick one and start
    /// its guard, so a removal that returned has no picks of the removed backend left
    /// that are not already counted as active.
    routes: RwLock<Vec<Arc<Route>>>,
    /// Round-robin cursor; wraps harmlessly.
    next: AtomicUsize,
    /// Removed backends, for stats and forced shutdown; entries die with their last
    /// guard and their `Drain`.
    draining: Mutex<Vec<Weak<Tracker>>>,
    groups: Groups,
    totals: Arc<Totals>,
    /// How to build each backend's HTTP client; `None` in TCP mode.
    upstream: Option<UpstreamSettings>,
    /// Woken whenever a backend joins the routes, for requests held while there was none.
    joined: tokio::sync::Notify,
}

impl Pool {
    pub(crate) fn new(totals: Arc<Totals>, upstream: Option<UpstreamSettings>) -> Self {
        Self {
            routes: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
            draining: Mutex::new(Vec::new()),
            joined: tokio::sync::Notify::new(),
            groups: Groups::default(),
            totals,
            upstream,
        }
    }

    /// Picks the next live backend and counts the work as started on it.
    pub(crate) fn pick(&self) -> Option<(Arc<Route>, ActiveGuard)> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        if routes.is_empty() {
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % routes.len();
        let backend = Arc::clone(&routes[index]);
        // Started under the read lock: see the field doc of `routes`.
        let guard = ActiveGuard::start(&backend.tracker);
        Some((backend, guard))
    }

    /// Round robin among the backends on `side` of a traffic split (in its group or not);
    /// among all of them when that side has none live.
    pub(crate) fn pick_side(&self, side: &Side) -> Option<(Arc<Route>, ActiveGuard)> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        if routes.is_empty() {
            return None;
        }
        let on_side = |b: &&Arc<Route>| (b.tracker.group.name() == &*side.group) == side.canary;
        let count = routes.iter().filter(on_side).count();
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let backend = if count == 0 {
            &routes[turn % routes.len()]
        } else {
            routes.iter().filter(on_side).nth(turn % count)?
        };
        let backend = Arc::clone(backend);
        let guard = ActiveGuard::start(&backend.tracker);
        Some((backend, guard))
    }

    /// Like [`Self::pick`] ([`Self::pick_side`] with a `side`, [`Self::pick_other`] when
    /// `failed` is given), but while there is no such backend, waits up to `hold` for one to
    /// join.
    pub(crate) async fn pick_within(
        &self,
        failed: Option<SocketAddr>,
        hold: std::time::Duration,
        side: Option<&Side>,
    ) -> Option<(Arc<Route>, ActiveGuard)> {
        let pick = || match (failed, side) {
            (Some(failed), _) => self.pick_other(failed),
            (None, Some(side)) => self.pick_side(side),
            (None, None) => self.pick(),
        };
        if let Some(picked) = pick() {
            return Some(picked);
        }
        if hold.is_zero() {
            return None;
        }
        let until = tokio::time::Instant::now() + hold;
        loop {
            // Created before the look, so a backend joining in between still wakes it.
            let joined = self.joined.notified();
            if let Some(picked) = pick() {
                return Some(picked);
            }
            if tokio::time::timeout_at(until, joined).await.is_err() {
                return pick();
            }
        }
    }

    /// The live backend after `failed` in the routes, `None` when there is no other. The
    /// round-robin position is left alone, so the next request is not skewed by the retry.
    pub(crate) fn pick_other(&self, failed: SocketAddr) -> Option<(Arc<Route>, ActiveGuard)> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let after = routes
            .iter()
            .position(|b| b.addr() == failed)
            .map_or(0, |i| i + 1);
        let backend = (0..routes.len())
            .map(|k| &routes[(after + k) % routes.len()])
            .find(|b| b.addr() != failed)?;
        let backend = Arc::clone(backend);
        let guard = ActiveGuard::start(&backend.tracker);
        Some((backend, guard))
    }

    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        routes.iter().map(|b| b.addr()).collect()
    }

    pub(crate) fn add(&self, backend: impl Into<Backend>) -> AddOutcome {
        let backend = backend.into();
        let addr = backend.addr;
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        if routes.iter().any(|b| b.addr() == addr) {
            return AddOutcome::AlreadyPresent;
        }
        routes.push(self.new_route(backend));
        drop(routes);
        self.joined.notify_waiters();
        tracing::info!(backend = %addr, "backend added");
        AddOutcome::Added
    }

    pub(crate) fn remove(&self, addr: SocketAddr) -> Drain {
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let removed: Vec<_> = routes.extract_if(.., |b| b.addr() == addr).collect();
        drop(routes);
        self.retire(removed)
    }

    /// Takes `out` out of rotation and puts `add` in, under one lock: no request is routed
    /// between the two.
    pub(crate) fn swap(&self, out: &[SocketAddr], backend: Backend) -> (AddOutcome, Drain) {
        let add = backend.addr;
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let removed: Vec<_> = routes
            .extract_if(.., |b| out.contains(&b.addr()) && b.addr() != add)
            .collect();
        let added = if routes.iter().any(|b| b.addr() == add) {
            AddOutcome::AlreadyPresent
        } else {
            routes.push(self.new_route(backend));
            AddOutcome::Added
        };
        drop(routes);
        if added == AddOutcome::Added {
            self.joined.notify_waiters();
            tracing::info!(backend = %add, replaced = removed.len(), "backend swapped in");
        }
        (added, self.retire(removed))
    }

    pub(crate) fn replace<B: Into<Backend>>(&self, backends: Vec<B>) -> Drain {
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let mut old = std::mem::take(&mut *routes);
        for backend in backends {
            let backend = backend.into();
            let addr = backend.addr;
            if routes.iter().any(|b| b.addr() == addr) {
                continue; // listed twice
            }
            // Keep a backend that stays: its pool and counters carry on.
            match old.iter().position(|b| b.addr() == addr) {
                Some(i) => routes.push(old.swap_remove(i)),
                None => {
                    tracing::info!(backend = %addr, "backend added");
                    routes.push(self.new_route(backend));
                }
            }
        }
        let any = !routes.is_empty();
        drop(routes);
        if any {
            self.joined.notify_waiters();
        }
        self.retire(old)
    }

    /// Every backend's counters: live ones in routing order, then the draining ones.
    pub(crate) fn stats(&self) -> Vec<BackendStats> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let mut stats: Vec<_> = routes
            .iter()
            .map(|b| b.tracker.snapshot(BackendState::Live))
            .collect();
        drop(routes);
        stats.extend(
            self.draining_trackers()
                .iter()
                .map(|t| t.snapshot(BackendState::Draining)),
        );
        stats
    }

    /// Every tracker, live and draining, e.g. to cut them all at a forced shutdown.
    pub(crate) fn trackers(&self) -> Vec<Arc<Tracker>> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = routes.iter().map(|b| Arc::clone(&b.tracker)).collect();
        drop(routes);
        all.extend(self.draining_trackers());
        all
    }

    /// Every group's sums, in order of first use.
    pub(crate) fn group_stats(&self) -> Vec<GroupStats> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let live: Vec<_> = routes
            .iter()
            .map(|r| Arc::clone(&r.tracker.group))
            .collect();
        drop(routes);
        self.groups
            .stats(|group| live.iter().filter(|g| std::ptr::eq(&***g, group)).count())
    }

    fn new_route(&self, backend: Backend) -> Arc<Route> {
        let Backend { addr, group } = backend;
        let group = self.groups.get(&group);
        Arc::new(Route {
            tracker: Arc::new(Tracker::new(addr, group, Arc::clone(&self.totals))),
            http: self
                .upstream
                .as_ref()
                .map(|settings| HttpUpstream::new(addr, settings)),
        })
    }

    /// Marks backends that just left the routing table as draining.
    fn retire(&self, removed: Vec<Arc<Route>>) -> Drain {
        // Only the accounting lives on; the routing entries, and with them (once the
        // requests in flight let go) the connection pools, are dropped here.
        let trackers: Vec<_> = removed
            .into_iter()
            .map(|backend| Arc::clone(&backend.tracker))
            .collect();
        let mut draining = self.lock_draining();
        for tracker in &trackers {
            tracker.mark_removed();
            tracing::info!(backend = %tracker.addr(), active = tracker.active(), "backend removed, draining");
            draining.push(Arc::downgrade(tracker));
        }
        drop(draining);
        Drain::new(trackers)
    }

    fn draining_trackers(&self) -> Vec<Arc<Tracker>> {
        let mut draining = self.lock_draining();
        draining.retain(|weak| weak.strong_count() > 0);
        draining.iter().filter_map(Weak::upgrade).collect()
    }

    fn lock_draining(&self) -> MutexGuard<'_, Vec<Weak<Tracker>>> {
        self.draining.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn tcp_pool() -> Pool {
        Pool::new(Arc::new(Totals::default()), None)
    }

    #[test]
    fn add_is_idempotent_and_round_robin_cycles() {
        let pool = tcp_pool();
        assert_eq!(pool.add(addr(1)), AddOutcome::Added);
        assert_eq!(pool.add(addr(2)), AddOutcome::Added);
        assert_eq!(pool.add(addr(1)), AddOutcome::AlreadyPresent);
        let picks: Vec<_> = (0..4).map(|_| pool.pick().map(|(b, _)| b.addr())).collect();
        assert_eq!(
            picks,
            [Some(addr(1)), Some(addr(2)), Some(addr(1)), Some(addr(2))]
        );
    }

    #[test]
    fn empty_pool_picks_nothing() {
        let pool = tcp_pool();
        assert!(pool.pick().is_none());
        assert!(pool.remove(addr(9)).is_empty());
    }

    #[test]
    fn replace_keeps_survivors_and_drains_the_rest() {
        let pool = tcp_pool();
        pool.add(addr(1));
        pool.add(addr(2));
        let (_, guard) = pool.pick().expect("a backend");
        let drain = pool.replace(vec![addr(2), addr(3), addr(3)]);
        assert_eq!(drain.backends(), [addr(1)]);
        assert_eq!(pool.addrs(), [addr(2), addr(3)]);
        let stats = pool.stats();
        assert_eq!(stats.len(), 3);
        let old = stats.iter().find(|s| s.addr == addr(1)).expect("draining");
        assert_eq!(old.state, BackendState::Draining);
        assert_eq!(old.active, 1);
        drop(guard);
        drop(drain);
        // The drained backend disappears once nothing refers to it any more.
        assert_eq!(pool.stats().len(), 2);
    }

    #[test]
    fn readding_a_draining_address_starts_a_fresh_backend() {
        let pool = tcp_pool();
        pool.add(addr(1));
        let (_, guard) = pool.pick().expect("a backend");
        let drain = pool.remove(addr(1));
        assert_eq!(pool.add(addr(1)), AddOutcome::Added);
        let stats = pool.stats();
        assert_eq!(stats.len(), 2);
        assert_eq!((stats[0].state, stats[0].requests), (BackendState::Live, 0));
        assert_eq!(
            (stats[1].state, stats[1].active),
            (BackendState::Draining, 1)
        );
        drop((guard, drain));
    }

    #[test]
    fn totals_outlive_removed_backends() {
        let totals = Arc::new(Totals::default());
        let pool = Pool::new(Arc::clone(&totals), None);
        pool.add(addr(1));
        let (_, guard) = pool.pick().expect("a backend");
        guard.record_error();
        drop(guard);
        drop(pool.remove(addr(1)));
        assert!(pool.stats().is_empty());
        let snap = totals.snapshot();
        assert_eq!((snap.requests, snap.errors, snap.active), (1, 1, 0));
    }
}
