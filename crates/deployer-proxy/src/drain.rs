//! Waiting for removed backends to finish what they serve, bounded by a deadline.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::backends::Tracker;

/// How long cut work gets to actually close after being told to. Everything the proxy
/// runs reacts to a cut at its next poll, so this only bounds pathological cases (e.g. a
/// response body hyper stopped polling because the client reads nothing).
pub(crate) const CUT_SETTLE: Duration = Duration::from_secs(1);

/// "Never", as far ahead as an `Instant` reliably goes (what tokio's own sleeps use).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The backends taken out of rotation by one
/// [`remove_backend`](crate::Proxy::remove_backend) or
/// [`replace_backends`](crate::Proxy::replace_backends) call.
///
/// They get no new requests or connections from the moment the call returned; what they
/// already serve keeps running until [`wait`](Self::wait) reaches its deadline. Dropping a
/// `Drain` without waiting sets no deadline: that work then runs until it ends by itself.
#[must_use = "a Drain only cuts lingering work when waited on"]
pub struct Drain {
    trackers: Vec<Arc<Tracker>>,
}

/// The outcome of [`Drain::wait`] (and of [`Proxy::shutdown`](crate::Proxy::shutdown)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct DrainReport {
    /// Everything finished by itself before the deadline.
    pub drained_cleanly: bool,
    /// Requests, connections and upgraded connections still open at the deadline and
    /// forcibly closed.
    pub cut: u64,
    /// Time from the call to its return.
    pub waited: Duration,
}

impl Drain {
    pub(crate) fn new(trackers: Vec<Arc<Tracker>>) -> Self {
        Self { trackers }
    }

    /// The addresses this drain covers (none if nothing was removed).
    pub fn backends(&self) -> Vec<SocketAddr> {
        self.trackers.iter().map(|t| t.addr()).collect()
    }

    /// One drain per covered backend, so each can be waited on by whoever retires it.
    pub fn split(self) -> Vec<Drain> {
        self.trackers
            .into_iter()
            .map(|tracker| Drain::new(vec![tracker]))
            .collect()
    }

    /// One drain covering everything `drains` cover, waited on under one deadline.
    pub fn merge(drains: impl IntoIterator<Item = Drain>) -> Drain {
        Drain::new(drains.into_iter().flat_map(|d| d.trackers).collect())
    }

    /// True when nothing was removed; [`wait`](Self::wait) then returns at once.
    pub fn is_empty(&self) -> bool {
        self.trackers.is_empty()
    }

    /// Resolves as soon as nothing is open on the covered backends any more, or at
    /// `deadline` (measured from this call), when it cuts what is left. When it returns,
    /// the proxy holds no connection to those backends that it could still use, so the
    /// old process can be stopped.
    pub async fn wait(self, deadline: Duration) -> DrainReport {
        let started = Instant::now();
        // A deadline past what an Instant can hold means "wait as long as it takes".
        let until = started
            .checked_add(deadline)
            .unwrap_or_else(|| started + FAR_FUTURE);
        let mut drained_cleanly = true;
        for tracker in &self.trackers {
            // A shared deadline: waiting for one backend eats into the others' time.
            drained_cleanly &= tracker.wait_idle_until(until).await;
        }
        if drained_cleanly {
            tracing::debug!(backends = ?self.backends(), waited = ?started.elapsed(), "drained");
            return DrainReport {
                drained_cleanly,
                cut: 0,
                waited: started.elapsed(),
            };
        }
        let cut = cut_all(&self.trackers).await;
        let waited = started.elapsed();
        tracing::warn!(backends = ?self.backends(), cut, ?waited, "drain deadline reached, cut what was left");
        DrainReport {
            drained_cleanly,
            cut,
            waited,
        }
    }
}

/// Cuts everything open on `trackers`, gives it [`CUT_SETTLE`] to close, and returns how
/// many units of work were cut.
pub(crate) async fn cut_all(trackers: &[Arc<Tracker>]) -> u64 {
    let before: u64 = trackers.iter().map(|t| t.cut_count()).sum();
    for tracker in trackers {
        tracker.cut();
    }
    let settle_until = Instant::now() + CUT_SETTLE;
    let mut lingering = 0;
    for tracker in trackers {
        if !tracker.wait_idle_until(settle_until).await {
            // Told to stop but not yet noticed (see CUT_SETTLE); it will be closed at
            // its next poll, so it counts as cut.
            lingering += tracker.active();
        }
    }
    let after: u64 = trackers.iter().map(|t| t.cut_count()).sum();
    after - before + lingering
}

impl fmt::Debug for Drain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("backends", &self.backends())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::Pool;
    use crate::stats::Totals;

    fn pool_with(addr: SocketAddr) -> Pool {
        let pool = Pool::new(Arc::new(Totals::default()), None);
        pool.add(addr);
        pool
    }

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9000))
    }

    #[tokio::test(start_paused = true)]
    async fn empty_drain_resolves_at_once() {
        let pool = pool_with(addr());
        let drain = pool.remove(SocketAddr::from(([127, 0, 0, 1], 1)));
        assert!(drain.is_empty());
        let report = drain.wait(Duration::from_secs(30)).await;
        assert!(report.drained_cleanly);
        assert_eq!((report.cut, report.waited), (0, Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn resolves_when_the_last_request_ends() {
        let pool = pool_with(addr());
        let (_, guard) = pool.pick().expect("a backend");
        let drain = pool.remove(addr());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(guard);
        });
        let report = drain.wait(Duration::from_secs(30)).await;
        assert!(report.drained_cleanly);
        assert_eq!((report.cut, report.waited), (0, Duration::from_secs(5)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_of_duration_max_waits_without_overflowing() {
        let pool = pool_with(addr());
        let (_, guard) = pool.pick().expect("a backend");
        let drain = pool.remove(addr());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(guard);
        });
        let report = drain.wait(Duration::MAX).await;
        assert!(report.drained_cleanly);
        assert_eq!(report.waited, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn split_and_merged_drains_cover_the_same_backends() {
        let (a, b) = (addr(), SocketAddr::from(([127, 0, 0, 1], 9001)));
        let pool = pool_with(a);
        pool.add(b);
        let drain = pool.replace(Vec::<SocketAddr>::new());
        let parts = drain.split();
        assert_eq!(parts.len(), 2);
        let merged = Drain::merge(parts);
        let mut covered = merged.backends();
        covered.sort();
        assert_eq!(covered, vec![a, b]);
        assert!(merged.wait(Duration::from_secs(1)).await.drained_cleanly);
    }

    #[tokio::test(start_paused = true)]
    async fn cuts_what_is_left_at_the_deadline() {
        let pool = pool_with(addr());
        let mut watchers = Vec::new();
        for _ in 0..2 {
            let (_, guard) = pool.pick().expect("a backend");
            // Like a forwarded connection: runs until cut.
            watchers.push(tokio::spawn(async move {
                guard.tracker().cut_requested().await;
                guard.record_cut();
            }));
        }
        let drain = pool.remove(addr());
        let report = drain.wait(Duration::from_secs(10)).await;
        assert!(!report.drained_cleanly);
        assert_eq!((report.cut, report.waited), (2, Duration::from_secs(10)));
        for watcher in watchers {
            watcher.await.expect("watcher task");
        }
        // Fully drained and its Drain consumed: the backend is gone from the stats.
        assert!(pool.stats().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn work_that_ignores_the_cut_still_counts_and_is_bounded() {
        let pool = pool_with(addr());
        let (_, deaf) = pool.pick().expect("a backend");
        let report = pool.remove(addr()).wait(Duration::from_secs(10)).await;
        assert_eq!(report.cut, 1);
        assert_eq!(report.waited, Duration::from_secs(10) + CUT_SETTLE);
        drop(deaf);
    }
}
