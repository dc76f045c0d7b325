//! Time from a request's arrival to its response headers, as a histogram of fixed buckets:
//! one atomic per bucket, so observing takes no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets (plus one for everything slower): from a cached
/// answer on loopback to a backend near a typical response timeout.
pub const LATENCY_BOUNDS: [Duration; 11] = [
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2500),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

const BUCKETS: usize = LATENCY_BOUNDS.len() + 1;

/// A snapshot of the latency histogram, in [`ProxyTotals::latency`](crate::ProxyTotals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct LatencyHistogram {
    /// Per bucket, not cumulative; the last one counts what exceeded every bound.
    counts: [u64; BUCKETS],
    sum: Duration,
}

impl LatencyHistogram {
    /// Each bucket's upper bound (`None` for the last, unbounded one) and how many
    /// observations fell in it and in no lower bucket.
    pub fn buckets(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        LATENCY_BOUNDS
            .iter()
            .copied()
            .map(Some)
            .chain([None])
            .zip(self.counts.iter().copied())
    }

    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The observed latencies added up.
    pub fn sum(&self) -> Duration {
        self.sum
    }
}

/// The live histogram behind [`LatencyHistogram`].
#[derive(Debug, Default)]
pub(crate) struct Latency {
    counts: [AtomicU64; BUCKETS],
    /// Microseconds: u64 holds half a million years of them.
    sum_micros: AtomicU64,
}

impl Latency {
    pub(crate) fn observe(&self, latency: Duration) {
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|bound| latency <= *bound)
            .unwrap_or(BUCKETS - 1);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LatencyHistogram {
        LatencyHistogram {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            sum: Duration::from_micros(self.sum_micros.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_latency_lands_in_the_first_bucket_that_holds_it() {
        let latency = Latency::default();
        for ms in [0, 5, 6, 999, 1000, 10_000, 10_001, 60_000] {
            latency.observe(Duration::from_millis(ms));
        }
        let snapshot = latency.snapshot();
        let filled: Vec<_> = snapshot.buckets().filter(|(_, n)| *n > 0).collect();
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(
            filled,
            [
                (ms(5), 2),
                (ms(10), 1),
                (ms(1000), 2),
                (ms(10_000), 1),
                (None, 2)
            ]
        );
        assert_eq!(snapshot.count(), 8);
        assert_eq!(snapshot.sum(), Duration::from_millis(82_011));
    }
}
