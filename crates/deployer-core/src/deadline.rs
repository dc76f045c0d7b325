//! `Instant + Duration` that cannot panic.
//!
//! Durations come from configuration and from deserialized specs, which a library user may
//! fill with anything up to `Duration::MAX`; std's `Instant + Duration` panics on overflow,
//! and one absurd health deadline must not take the daemon down.

use std::time::Duration;

use tokio::time::Instant;

/// Far enough ahead to mean "never" while staying representable on every platform (tokio's
/// own sleeps cap at about the same horizon).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + wait`, or a far-future instant when that does not fit.
pub fn after(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_waits_saturate_instead_of_panicking() {
        let now = Instant::now();
        assert_eq!(
            after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        let never = after(now, Duration::MAX);
        assert!(never >= now + FAR_FUTURE, "{never:?}");
        assert_eq!(after(now, Duration::from_secs(u64::MAX)), never);
    }
}
