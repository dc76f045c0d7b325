//! The range of every duration and count in the config file.
//!
//! `config check` and `run` refuse a value outside its range, naming the key, so nothing
//! downstream meets a value it cannot hold: an instant centuries ahead overflows, a billion
//! replica slots exhaust memory. The README's key table shows the same ranges; a test keeps
//! the two in step.

use std::fmt;
use std::time::Duration;

/// The durations a key accepts, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) min: Duration,
    pub(crate) max: Duration,
}

/// The whole numbers a key accepts, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Count {
    pub(crate) min: u64,
    pub(crate) max: u64,
    /// Shown as KiB/MiB/... when the count is a size in bytes.
    pub(crate) bytes: bool,
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

const fn span(min: Duration, max: Duration) -> Span {
    Span { min, max }
}

const fn count(min: u64, max: u64) -> Count {
    Count {
        min,
        max,
        bytes: false,
    }
}

const fn bytes(min: u64, max: u64) -> Count {
    Count {
        min,
        max,
        bytes: true,
    }
}

pub(crate) const SHUTDOWN_GRACE: Span = span(Duration::ZERO, secs(HOUR));
pub(crate) const MAX_PARALLEL: Count = count(1, 64);
pub(crate) const BODY_LIMIT: Count = bytes(1 << 10, 64 << 20);
pub(crate) const KEEP_IMAGES: Count = count(1, 100);
pub(crate) const ETCD_DIAL_TIMEOUT: Span = span(ms(10), secs(5 * MINUTE));
pub(crate) const ETCD_RETRY_DELAY: Span = span(ms(10), secs(5 * MINUTE));
/// etcd's own minimum TTL is 2 s (shorter leases are raised to it).
pub(crate) const ETCD_LEASE_TTL: Span = span(secs(2), secs(HOUR));
pub(crate) const ETCD_ROLLOUT_SLOTS: Count = count(1, 1000);
pub(crate) const ETCD_HISTORY: Count = count(1, 10_000);
/// Registries rate-limit tag lookups: at most one pass a minute.
pub(crate) const POLL_INTERVAL: Span = span(secs(MINUTE), secs(7 * DAY));
pub(crate) const POLL_MIN_INTERVAL: Span = span(ms(10), secs(HOUR));
pub(crate) const FETCH: Span = span(secs(1), secs(DAY));
pub(crate) const START: Span = span(secs(1), secs(HOUR));
pub(crate) const STOP: Span = span(Duration::ZERO, secs(HOUR));
pub(crate) const DRAIN: Span = span(Duration::ZERO, secs(HOUR));
pub(crate) const REPLICAS: Count = count(1, deployer_core::service::MAX_REPLICAS as u64);
pub(crate) const MAX_SURGE: Count = count(1, 64);
pub(crate) const WORKERS: Count = count(0, 64);
pub(crate) const HEALTH_INTERVAL: Span = span(ms(10), secs(HOUR));
pub(crate) const HEALTH_TIMEOUT: Span = span(ms(10), secs(HOUR));
pub(crate) const HEALTH_DEADLINE: Span = span(ms(10), secs(DAY));
pub(crate) const HEALTH_WATCH: Span = span(Duration::ZERO, secs(DAY));
pub(crate) const MAX_ERROR_PERCENT: Count = count(0, 100);
pub(crate) const HEALTHY_THRESHOLD: Count = count(1, 100);
pub(crate) const HEALTH_STATUS: Count = count(100, 599);
pub(crate) const RETRY_INITIAL: Span = span(ms(10), secs(HOUR));
pub(crate) const RETRY_MAX: Span = span(ms(10), secs(DAY));
pub(crate) const RETRIES: Count = count(0, 100);
/// Docker refuses less than 6 MiB.
pub(crate) const MEMORY_BYTES: Count = bytes(6 << 20, 1 << 40);

/// Every duration range, with the README table row it is shown in (the row's first key) and
/// the name it is shown under there (empty: the row's only key).
#[cfg(test)]
pub(crate) const DURATIONS: &[(&str, &str, Span)] = &[
    ("shutdown_grace", "", SHUTDOWN_GRACE),
    ("etcd.nodes", "dial_timeout", ETCD_DIAL_TIMEOUT),
    ("etcd.nodes", "retry_delay", ETCD_RETRY_DELAY),
    ("etcd.nodes", "lease_ttl", ETCD_LEASE_TTL),
    ("poll.enabled", "interval", POLL_INTERVAL),
    ("poll.enabled", "min_interval", POLL_MIN_INTERVAL),
    ("defaults.{fetch,start,stop,drain}", "fetch", FETCH),
    ("defaults.{fetch,start,stop,drain}", "start", START),
    ("defaults.{fetch,start,stop,drain}", "stop", STOP),
    ("defaults.{fetch,start,stop,drain}", "drain", DRAIN),
    ("service[].health.{kind", "interval", HEALTH_INTERVAL),
    ("service[].health.{kind", "timeout", HEALTH_TIMEOUT),
    ("service[].health.{kind", "deadline", HEALTH_DEADLINE),
    ("service[].health.watch", "", HEALTH_WATCH),
    ("service[].timeouts.*", "initial", RETRY_INITIAL),
    ("service[].timeouts.*", "max", RETRY_MAX),
];

/// Every count range, as [`DURATIONS`].
#[cfg(test)]
pub(crate) const COUNTS: &[(&str, &str, Count)] = &[
    ("max_parallel", "", MAX_PARALLEL),
    ("webhooks.listen", "body_limit", BODY_LIMIT),
    ("docker.endpoint", "keep_images", KEEP_IMAGES),
    ("etcd.nodes", "rollout_slots", ETCD_ROLLOUT_SLOTS),
    ("etcd.nodes", "history", ETCD_HISTORY),
    ("service[].replicas", "", REPLICAS),
    ("service[].proxy.{listen", "max_surge", MAX_SURGE),
    ("service[].proxy.{listen", "workers", WORKERS),
    (
        "service[].health.{kind",
        "healthy_threshold",
        HEALTHY_THRESHOLD,
    ),
    ("service[].health.{kind", "status", HEALTH_STATUS),
    ("service[].health.max_error_percent", "", MAX_ERROR_PERCENT),
    ("service[].timeouts.*", "retries", RETRIES),
    ("service[].env", "memory_bytes", MEMORY_BYTES),
];

impl Span {
    /// `Err` says what is wrong with `value`, without the key.
    pub(crate) fn check(&self, value: Duration) -> Result<(), String> {
        if (self.min..=self.max).contains(&value) {
            Ok(())
        } else {
            Err(format!("must be from {self}, not {}", Human(value)))
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to {}", Human(self.min), Human(self.max))
    }
}

impl Count {
    /// `Err` says what is wrong with `value`, without the key.
    pub(crate) fn check(&self, value: u64) -> Result<(), String> {
        if (self.min..=self.max).contains(&value) {
            Ok(())
        } else {
            Err(format!("must be from {self}, not {value}"))
        }
    }

    fn show(&self, n: u64) -> String {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        if self.bytes
            && let Some((size, unit)) = UNITS
                .iter()
                .find(|(size, _)| n >= *size && n.is_multiple_of(*size))
        {
            return format!("{} {unit}", n / size);
        }
        n.to_string()
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to {}", self.show(self.min), self.show(self.max))
    }
}

/// A duration as the config writes it: `90s`, `10ms`, `1h`, `7d`.
struct Human(Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if !d.subsec_nanos().is_multiple_of(1_000_000) {
            return write!(f, "{d:?}");
        }
        if d.is_zero() {
            return f.write_str("0s");
        }
        if d.subsec_nanos() != 0 {
            return write!(f, "{}ms", d.as_millis());
        }
        let s = d.as_secs();
        // A day reads better as 24h, a week as 7d.
        if s > DAY && s.is_multiple_of(DAY) {
            return write!(f, "{}d", s / DAY);
        }
        for (size, unit) in [(HOUR, "h"), (MINUTE, "m")] {
            if s.is_multiple_of(size) {
                return write!(f, "{}{unit}", s / size);
            }
        }
        write!(f, "{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_as_the_config_writes_them() {
        assert_eq!(POLL_INTERVAL.to_string(), "1m to 7d");
        assert_eq!(SHUTDOWN_GRACE.to_string(), "0s to 1h");
        assert_eq!(HEALTH_INTERVAL.to_string(), "10ms to 1h");
        assert_eq!(BODY_LIMIT.to_string(), "1 KiB to 64 MiB");
        assert_eq!(REPLICAS.to_string(), "1 to 64");
        assert_eq!(
            HEALTH_DEADLINE.check(secs(u64::MAX)).unwrap_err(),
            "must be from 10ms to 24h, not 18446744073709551615s"
        );
        assert_eq!(
            REPLICAS.check(1_000_000_000).unwrap_err(),
            "must be from 1 to 64, not 1000000000"
        );
        assert!(STOP.check(Duration::ZERO).is_ok());
    }
}
