//! Failed requests are logged as a rate, not a line each: a dead backend under load would
//! otherwise write thousands of identical lines a second. The counters (and metrics) still
//! count every failure.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long after a logged failure further ones of the same backend are only counted.
pub(crate) const WINDOW: Duration = Duration::from_secs(5);

/// One backend's failure log: the first failure of a window is logged, with how many the
/// window before it held back.
#[derive(Debug, Default)]
pub(crate) struct FailureLog {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the failure last logged happened.
    logged_at: Option<Instant>,
    /// Failures held back since.
    held_back: u64,
}

impl FailureLog {
    /// Notes a failure at `now`: `Some(n)` when it is to be logged (`n` failures were held
    /// back since the last logged one), `None` when it is only counted.
    pub(crate) fn note(&self, now: Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match state.logged_at {
            Some(at) if now.saturating_duration_since(at) < WINDOW => {
                state.held_back += 1;
                None
            }
            _ => {
                state.logged_at = Some(now);
                Some(std::mem::take(&mut state.held_back))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_window_with_the_count_held_back() {
        let log = FailureLog::default();
        let start = Instant::now();
        assert_eq!(log.note(start), Some(0), "the first failure is logged");
        for n in 1..=1000u64 {
            let at = start + Duration::from_millis(n * 4);
            assert_eq!(log.note(at), None, "failure {n} within the window");
        }
        assert_eq!(
            log.note(start + WINDOW + Duration::from_millis(1)),
            Some(1000)
        );
        assert_eq!(log.note(start + WINDOW * 3), Some(0));
    }
}
