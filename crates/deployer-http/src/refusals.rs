//! Refused requests (webhooks, the admin API), logged as a rate: a flood of bad tokens,
//! bodies or hosts writes one summary line per interval, not one line per request.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// At most one summary line per this long.
const EVERY: Duration = Duration::from_secs(10);

/// The longest piece of a refused request's content a log line quotes.
pub(crate) const QUOTED_MAX: usize = 200;

#[derive(Debug)]
pub(crate) struct Refusals {
    /// Who refuses, for the log line: "webhook", "admin API".
    what: &'static str,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    logged: Option<Instant>,
    counts: BTreeMap<(&'static str, &'static str), u64>,
}

impl Refusals {
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            what,
            state: Mutex::default(),
        }
    }

    /// Counts one refusal of `sender`'s request for `reason`; logs the counts gathered since
    /// the last line when the interval has passed (the first refusal at once).
    pub(crate) fn note(&self, sender: &'static str, reason: &'static str) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *state.counts.entry((sender, reason)).or_default() += 1;
        if state.logged.is_some_and(|at| at.elapsed() < EVERY) {
            return;
        }
        state.logged = Some(Instant::now());
        let summary = std::mem::take(&mut state.counts)
            .into_iter()
            .map(|((sender, reason), n)| format!("{sender} {reason}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        drop(state);
        tracing::warn!(refused = %summary, "{} requests refused (counts since the last such line, at most one every {EVERY:?})", self.what);
    }
}

/// `text` cut to [`QUOTED_MAX`] characters, marked when cut.
pub(crate) fn quoted(text: &str) -> String {
    match text.char_indices().nth(QUOTED_MAX) {
        Some((at, _)) => format!("{}… ({} bytes in all)", &text[..at], text.len()),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_flood_is_one_line_per_interval_with_its_counts() {
        let refusals = Refusals::new("webhook");
        refusals.note("github", "unauthorized");
        for _ in 0..999 {
            refusals.note("github", "unauthorized");
        }
        assert_eq!(
            refusals.state.lock().unwrap().counts[&("github", "unauthorized")],
            999,
            "gathered, not logged"
        );
        tokio::time::advance(EVERY).await;
        refusals.note("quay", "bad_request");
        assert!(
            refusals.state.lock().unwrap().counts.is_empty(),
            "logged and reset"
        );
    }

    #[test]
    fn long_values_are_cut() {
        let long = "x".repeat(5000);
        let cut = quoted(&long);
        assert!(cut.len() < 300, "{}", cut.len());
        assert!(cut.ends_with("(5000 bytes in all)"));
        assert_eq!(quoted("short"), "short");
    }
}
