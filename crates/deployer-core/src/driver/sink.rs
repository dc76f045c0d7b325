//! Where triggers send events: filtered (untracked images, redeliveries), queued, then turned
//! into targets by the ingest worker.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use super::handle::Board;
use super::notify::ReportHub;
use super::services::Services;
use crate::image::{Digest, ImageRef};
use crate::ports::{Coordinator, ImageEvent, ImageSource};
use crate::report::{DeployReport, Outcome};
use crate::shutdown::Shutdown;
use crate::target::{PublishOutcome, PublishRequest, Target};
use crate::time::Timestamp;

/// How many delivery ids are remembered for deduplication.
const RECENT_DELIVERIES: usize = 4096;
/// Bound on resolving a tag's digest at a registry.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one publish.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// What became of a submitted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Submission {
    /// Queued; it becomes a target shortly.
    Queued,
    /// No service tracks this repo:tag.
    Ignored,
    /// The delivery id was seen before (a redelivery).
    Duplicate,
}

/// Why an event could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The queue is full; the sender should retry later (HTTP 503).
    #[error("event queue is full")]
    Busy,
    /// The driver has stopped.
    #[error("deployer is shutting down")]
    Closed,
}

/// Counters of what the sink and the ingest worker did, for metrics.
#[derive(Debug, Default)]
pub struct IngestStats {
    queued: AtomicU64,
    ignored: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    published: AtomicU64,
    unchanged: AtomicU64,
    stale: AtomicU64,
    failed: AtomicU64,
}

/// A copy of [`IngestStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngestCounts {
    /// Events queued.
    pub queued: u64,
    /// Events for untracked images.
    pub ignored: u64,
    /// Redeliveries dropped.
    pub duplicates: u64,
    /// Events refused because the queue was full or closed.
    pub rejected: u64,
    /// Targets published.
    pub published: u64,
    /// Events whose digest was already the target.
    pub unchanged: u64,
    /// Events older than the target.
    pub stale: u64,
    /// Events that could not be resolved or published.
    pub failed: u64,
}

impl IngestStats {
    /// The counters now.
    pub fn snapshot(&self) -> IngestCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IngestCounts {
            queued: get(&self.queued),
            ignored: get(&self.ignored),
            duplicates: get(&self.duplicates),
            rejected: get(&self.rejected),
            published: get(&self.published),
            unchanged: get(&self.unchanged),
            stale: get(&self.stale),
            failed: get(&self.failed),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Remembers recent delivery ids, forgetting the oldest first.
#[derive(Debug, Default)]
struct RecentDeliveries {
    order: VecDeque<(String, String)>,
    seen: HashSet<(String, String)>,
}

impl RecentDeliveries {
    /// Forgets `key` (an event that was refused after all).
    fn remove(&mut self, key: &(String, String)) {
        if self.seen.remove(key) {
            self.order.retain(|k| k != key);
        }
    }

    /// Records `key`; false if it was already there.
    fn insert(&mut self, key: (String, String)) -> bool {
        if !self.seen.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > RECENT_DELIVERIES
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}

/// The entry point for triggers. Cheap to clone; never blocks.
///
/// `submit` answers at once: webhook handlers reply before anything is resolved or deployed.
#[derive(Debug, Clone)]
pub struct EventSink {
    inner: Arc<SinkInner>,
}

#[derive(Debug)]
struct SinkInner {
    /// Grows and shrinks as services are adopted and forgotten.
    tracked: RwLock<HashSet<ImageRef>>,
    queue: mpsc::Sender<ImageEvent>,
    recent: Mutex<RecentDeliveries>,
    stats: Arc<IngestStats>,
}

impl EventSink {
    /// A sink for events about `tracked` repo:tags, with a queue of `capacity` events; the
    /// receiver goes to [`ingest`].
    pub fn new(
        tracked: impl IntoIterator<Item = ImageRef>,
        capacity: usize,
    ) -> (Self, mpsc::Receiver<ImageEvent>) {
        let (queue, events) = mpsc::channel(capacity.max(1));
        let inner = SinkInner {
            tracked: RwLock::new(tracked.into_iter().map(|i| i.without_digest()).collect()),
            queue,
            recent: Mutex::new(RecentDeliveries::default()),
            stats: Arc::default(),
        };
        (
            Self {
                inner: Arc::new(inner),
            },
            events,
        )
    }

    /// Whether a service tracks `image`'s repo:tag.
    pub fn tracks(&self, image: &ImageRef) -> bool {
        self.inner
            .tracked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&image.without_digest())
    }

    /// Starts or stops taking events for `image` (a service tracking it was adopted, or the
    /// last one was forgotten).
    pub(crate) fn set_tracked(&self, image: &ImageRef, tracked: bool) {
        let mut set = self
            .inner
            .tracked
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if tracked {
            set.insert(image.without_digest());
        } else {
            set.remove(&image.without_digest());
        }
    }

    /// Filters and queues an event.
    pub fn submit(&self, event: ImageEvent) -> Result<Submission, SubmitError> {
        let stats = &self.inner.stats;
        if !self.tracks(&event.image) {
            IngestStats::bump(&stats.ignored);
            tracing::debug!(image = %event.image, source = %event.source, "ignored event for untracked image");
            return Ok(Submission::Ignored);
        }
        // The delivery id is remembered before the event is queued (so two concurrent copies
        // cannot both get through) and forgotten again if the queue refuses the event: the
        // sender's redelivery after a 503 must not be taken for a duplicate.
        let key = event
            .delivery_id
            .as_ref()
            .map(|id| (event.source.as_str().to_owned(), id.clone()));
        if let Some(key) = &key
            && !self.recent().insert(key.clone())
        {
            IngestStats::bump(&stats.duplicates);
            tracing::debug!(delivery = %key.1, "dropped redelivery");
            return Ok(Submission::Duplicate);
        }
        let refused = match self.inner.queue.try_send(event) {
            Ok(()) => {
                IngestStats::bump(&stats.queued);
                return Ok(Submission::Queued);
            }
            Err(mpsc::error::TrySendError::Full(_)) => SubmitError::Busy,
            Err(mpsc::error::TrySendError::Closed(_)) => SubmitError::Closed,
        };
        IngestStats::bump(&stats.rejected);
        if let Some(key) = &key {
            self.recent().remove(key);
        }
        Err(refused)
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, RecentDeliveries> {
        self.inner
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counters of what happened to events.
    pub fn stats(&self) -> IngestCounts {
        self.inner.stats.snapshot()
    }

    pub(crate) fn stats_handle(&self) -> Arc<IngestStats> {
        self.inner.stats.clone()
    }
}

/// What the ingest worker needs: the ports it resolves and publishes through, and where it
/// makes refusals and failures visible (status notes, reports, counters).
pub(crate) struct Ingest {
    pub(crate) images: Arc<dyn ImageSource>,
    pub(crate) coordinator: Arc<dyn Coordinator>,
    pub(crate) stats: Arc<IngestStats>,
    pub(crate) board: Arc<Board>,
    pub(crate) reports: ReportHub,
    pub(crate) specs: Services,
    pub(crate) node: Arc<str>,
}

/// Turns queued events into published targets, one at a time so that events for the same
/// repo:tag are published in arrival order. Runs until shutdown or until every sink is gone.
pub(crate) async fn ingest(
    mut events: mpsc::Receiver<ImageEvent>,
    ctx: Ingest,
    mut shutdown: Shutdown,
) {
    loop {
        let event = tokio::select! {
            _ = shutdown.wait() => return,
            event = events.recv() => match event {
                Some(event) => event,
                None => return,
            },
        };
        let outcome = publish_event(&event, ctx.images.as_ref(), ctx.coordinator.as_ref()).await;
        let stats = &ctx.stats;
        match outcome {
            Ok((outcome, digest)) => {
                let counter = match &outcome {
                    PublishOutcome::Published { .. } => &stats.published,
                    PublishOutcome::Unchanged { .. } => &stats.unchanged,
                    PublishOutcome::Stale { .. } => &stats.stale,
                };
                IngestStats::bump(counter);
                let target = outcome.target();
                match &outcome {
                    PublishOutcome::Stale { reason, .. } => {
                        tracing::warn!(
                            image = %target.image,
                            refused = %digest,
                            kept = %target.digest,
                            source = %event.source,
                            "publish refused: {reason}"
                        );
                        let note =
                            format!("{} -> {} refused: {reason}", target.image, digest.short());
                        ctx.refused(&event, target, &digest, &note);
                    }
                    _ => {
                        tracing::info!(
                            image = %target.image,
                            digest = %target.digest,
                            revision = %target.revision,
                            source = %event.source,
                            outcome = outcome.label(),
                            "target"
                        );
                        ctx.board.set_note(&target.image, None);
                    }
                }
            }
            Err(problem) => {
                IngestStats::bump(&stats.failed);
                tracing::warn!(image = %event.image, source = %event.source, "event dropped: {problem}");
                let note = format!("{}: {problem}", event.image);
                if ctx.board.set_note(&event.image, Some(note.clone())) {
                    ctx.report_each(&event, None, None, Outcome::Failed, &note);
                }
            }
        }
    }
}

impl Ingest {
    /// A refused publish: noted in status, reported as skipped by every service tracking it.
    fn refused(&self, event: &ImageEvent, current: &Target, refused: &Digest, note: &str) {
        if self.board.set_note(&current.image, Some(note.to_owned())) {
            let from = Some(current.digest.clone());
            self.report_each(event, from.as_ref(), Some(refused), Outcome::Skipped, note);
        }
    }

    fn report_each(
        &self,
        event: &ImageEvent,
        from: Option<&Digest>,
        to: Option<&Digest>,
        outcome: Outcome,
        reason: &str,
    ) {
        let now = Timestamp::now();
        let image = event.image.without_digest();
        for spec in self.specs.tracking(&image) {
            self.reports.publish(DeployReport {
                service: spec.name().clone(),
                node: self.node.to_string(),
                image: image.clone(),
                outcome,
                from: from.cloned(),
                to: to.or(event.digest.as_ref()).cloned(),
                generation: None,
                revision: None,
                source: Some(event.source.clone()),
                delivery_id: event.delivery_id.clone(),
                callback_url: None,
                reason: Some(reason.to_owned()),
                rollback_error: None,
                cut: 0,
                warnings: Vec::new(),
                started_at: event.received_at,
                finished_at: now,
                duration_ms: now
                    .since(event.received_at)
                    .as_millis()
                    .try_into()
                    .unwrap_or(u64::MAX),
            });
        }
    }
}

/// Resolves (when the sender gave no digest) and publishes one event; returns the outcome and
/// the digest it asked for.
async fn publish_event(
    event: &ImageEvent,
    images: &dyn ImageSource,
    coordinator: &dyn Coordinator,
) -> Result<(PublishOutcome, Digest), String> {
    // A push is ordered by the time of the answer that named its digest: the sender's, when it
    // named one; ours, the moment the registry answered, when we had to ask.
    let (digest, event_time) = match &event.digest {
        Some(digest) => (digest.clone(), event.event_time.or(Some(event.received_at))),
        None => {
            let digest = tokio::time::timeout(RESOLVE_TIMEOUT, images.resolve(&event.image))
                .await
                .map_err(|_| format!("resolving the digest timed out after {RESOLVE_TIMEOUT:?}"))?
                .map_err(|e| format!("resolving the digest failed: {}", super::error_chain(&e)))?;
            (digest, Some(Timestamp::now()))
        }
    };
    let mut request = PublishRequest::new(
        event.image.without_digest(),
        digest.clone(),
        event.source.clone(),
    );
    request.delivery_id = event.delivery_id.clone();
    request.event_time = event_time;
    request.callback_url = event.callback_url.clone();
    if request.is_from_the_future(Timestamp::now()) {
        tracing::warn!(
            image = %request.image,
            source = %event.source,
            dated = %event_time.unwrap_or(event.received_at),
            "event dated in the future: ordered by its arrival instead"
        );
        request.event_time = Some(event.received_at);
    }
    let outcome = tokio::time::timeout(PUBLISH_TIMEOUT, coordinator.publish(request))
        .await
        .map_err(|_| format!("publishing timed out after {PUBLISH_TIMEOUT:?}"))?
        .map_err(|e| format!("publishing failed: {}", super::error_chain(&e)))?;
    Ok((outcome, digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Source;

    fn event(image: &str, delivery: Option<&str>) -> ImageEvent {
        let mut e = ImageEvent::new(image.parse().unwrap(), Source::new("github"));
        e.delivery_id = delivery.map(str::to_owned);
        e
    }

    #[test]
    fn filters_untracked_and_redeliveries_and_reports_a_full_queue() {
        let (sink, _rx) = EventSink::new(["demo/app:latest".parse().unwrap()], 2);
        assert_eq!(
            sink.submit(event("other:latest", None)),
            Ok(Submission::Ignored)
        );
        assert_eq!(
            sink.submit(event("demo/app", Some("d1"))),
            Ok(Submission::Queued)
        );
        assert_eq!(
            sink.submit(event("demo/app", Some("d1"))),
            Ok(Submission::Duplicate)
        );
        assert_eq!(
            sink.submit(event("demo/app", Some("d2"))),
            Ok(Submission::Queued)
        );
        assert_eq!(
            sink.submit(event("demo/app", Some("d3"))),
            Err(SubmitError::Busy)
        );
        let counts = sink.stats();
        assert_eq!(
            (
                counts.queued,
                counts.ignored,
                counts.duplicates,
                counts.rejected
            ),
            (2, 1, 1, 1)
        );
    }

    #[test]
    fn a_refused_delivery_is_not_a_duplicate_when_redelivered() {
        let (sink, mut rx) = EventSink::new(["demo/app:latest".parse().unwrap()], 1);
        let submit = |id| sink.submit(event("demo/app", Some(id)));
        assert_eq!(submit("d1"), Ok(Submission::Queued));
        assert_eq!(submit("d2"), Err(SubmitError::Busy));
        rx.try_recv().expect("the first event");
        assert_eq!(
            submit("d2"),
            Ok(Submission::Queued),
            "the redelivery after a 503"
        );
        assert_eq!(submit("d2"), Ok(Submission::Duplicate));
    }

    #[test]
    fn delivery_memory_is_bounded() {
        let mut recent = RecentDeliveries::default();
        for n in 0..RECENT_DELIVERIES + 10 {
            assert!(recent.insert(("s".into(), n.to_string())));
        }
        assert_eq!(recent.seen.len(), RECENT_DELIVERIES);
        assert!(
            recent.insert(("s".into(), "0".into())),
            "the oldest is forgotten"
        );
    }
}
