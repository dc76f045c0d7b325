//! Exponential backoff for transient failures (registry down, engine busy, etcd unreachable).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::service::SpecError;

/// How long to wait before retry `n`, and how many retries to allow.
///
/// The constructor rejects nonsense, so a `Backoff` in hand always makes progress and is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    retries: u32,
}

impl Backoff {
    /// Delay doubles from `initial` up to `max`; after `retries` failed retries the work is given up.
    pub fn new(initial: Duration, max: Duration, retries: u32) -> Result<Self, SpecError> {
        if initial.is_zero() {
            return Err(SpecError::invalid(
                "retry.initial",
                "must be greater than zero",
            ));
        }
        if max < initial {
            return Err(SpecError::invalid(
                "retry.max",
                format!("must be at least retry.initial ({initial:?})"),
            ));
        }
        Ok(Self {
            initial,
            max,
            retries,
        })
    }

    /// Delay before retry number `attempt` (1 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1 << shift)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// Whether retry number `attempt` is still allowed.
    pub fn allows(&self, attempt: u32) -> bool {
        attempt <= self.retries
    }

    /// First delay.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// Longest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Retries allowed after the first attempt.
    pub fn retries(&self) -> u32 {
        self.retries
    }
}

impl Default for Backoff {
    /// 10 s doubling to 5 min, 5 retries: rides out a registry restart, gives up within ~10 min.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            retries: 5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5), 10).unwrap();
        let delays: Vec<u64> = (1..=5).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        assert_eq!(b.delay(1_000), Duration::from_secs(5));
        assert!(b.allows(10));
        assert!(!b.allows(11));
    }

    #[test]
    fn rejects_nonsense() {
        let zero = Backoff::new(Duration::ZERO, Duration::from_secs(1), 1).unwrap_err();
        assert!(zero.to_string().contains("retry.initial"), "{zero}");
        let inverted = Backoff::new(Duration::from_secs(2), Duration::from_secs(1), 1).unwrap_err();
        assert!(inverted.to_string().contains("retry.max"), "{inverted}");
    }
}
