//! Keeps a redelivery of a refused event from being dropped as a duplicate.
//!
//! Workaround for deployer-core: `EventSink::submit` records a delivery id *before* it finds
//! the queue full, so when a GitHub delivery gets 503 (busy) and is redelivered with the same
//! `X-GitHub-Delivery`, the sink would call the redelivery a duplicate and the build would be
//! lost. Here each refused id is remembered, and its next attempt is submitted under a derived
//! id (`<id>#retry-<n>`) that the sink has not seen. Once an attempt is queued the id is
//! forgotten, and any later redelivery of the original id is a duplicate, as it should be.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use deployer_core::driver::{EventSink, Submission, SubmitError};
use deployer_core::ports::ImageEvent;

/// Refused ids remembered at most; the map is cleared when full (a flood of refusals means
/// the queue is overwhelmed anyway, and losing a retry counter only risks one duplicate drop).
const REMEMBERED: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct Redeliveries {
    /// `source \n delivery id` -> attempts refused so far.
    refused: Mutex<HashMap<String, u32>>,
}

impl Redeliveries {
    /// Submits `event`, rewriting its delivery id if an earlier attempt was refused.
    pub(crate) fn submit(
        &self,
        sink: &EventSink,
        mut event: ImageEvent,
    ) -> Result<Submission, SubmitError> {
        let Some(id) = event.delivery_id.clone() else {
            return sink.submit(event);
        };
        let key = format!("{}\n{id}", event.source);
        let refused_before = self.lock().get(&key).copied();
        if let Some(n) = refused_before {
            event.delivery_id = Some(format!("{id}#retry-{n}"));
        }
        let result = sink.submit(event);
        let mut refused = self.lock();
        match &result {
            Err(_) => {
                if refused.len() >= REMEMBERED && !refused.contains_key(&key) {
                    refused.clear();
                }
                refused.insert(key, refused_before.unwrap_or(0) + 1);
            }
            Ok(_) => {
                refused.remove(&key);
            }
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.refused.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deployer_core::Source;

    fn event(id: &str) -> ImageEvent {
        let mut e = ImageEvent::new("demo/app".parse().unwrap(), Source::new("github"));
        e.delivery_id = Some(id.to_owned());
        e
    }

    #[test]
    fn a_redelivery_after_busy_is_queued_and_later_ones_are_duplicates() {
        let (sink, mut rx) = EventSink::new(["demo/app".parse().unwrap()], 1);
        let redeliveries = Redeliveries::default();
        assert_eq!(
            redeliveries.submit(&sink, event("a")),
            Ok(Submission::Queued)
        );
        assert_eq!(
            redeliveries.submit(&sink, event("b")),
            Err(SubmitError::Busy)
        );
        assert_eq!(
            redeliveries.submit(&sink, event("b")),
            Err(SubmitError::Busy)
        );
        rx.try_recv().unwrap();
        assert_eq!(
            redeliveries.submit(&sink, event("b")),
            Ok(Submission::Queued)
        );
        assert_eq!(
            rx.try_recv().unwrap().delivery_id.as_deref(),
            Some("b#retry-2")
        );
        assert_eq!(
            redeliveries.submit(&sink, event("b")),
            Ok(Submission::Duplicate)
        );
        assert_eq!(
            redeliveries.submit(&sink, event("a")),
            Ok(Submission::Duplicate)
        );
    }
}
