//! The target watch: a background task per [`TargetWatch`] that survives disconnects and
//! compaction without losing a change.
//!
//! The task remembers `next`, the first revision it has not delivered. Events advance it past
//! their `mod_revision`; progress notifications (requested by the server's timer and by ours)
//! advance it past their header revision, so an idle watch that reconnects after a long time
//! resumes from a recent revision instead of one etcd may have compacted. After any
//! disconnect it re-watches from `next`, which etcd replays in order. If etcd compacted past
//! `next`, the watch is cancelled with `compact_revision`; the task then reads every target
//! afresh, sends [`WatchEvent::Resync`], and watches from that read's revision + 1.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use deployer_core::Backoff;
use deployer_core::ports::{CoordinatorError, TargetSnapshot, TargetWatch, WatchEvent};
use etcd_client::{EventType, WatchOptions, WatchResponse};
use tokio::sync::{mpsc, watch};

use crate::codec::{decode_all, decode_target, key_text, revision};
use crate::lease::stopped;
use crate::store::{Store, header_revision, unavailable};

/// Events buffered per watch before the task waits for the reader.
const WATCH_BUFFER: usize = 1024;
/// How often an idle watch asks etcd where it stands (etcd's own timer defaults to 10 min).
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// Reads every target under `prefix` and the revision of the read.
pub(crate) async fn read_targets(
    store: &Store,
    prefix: &str,
) -> Result<TargetSnapshot, CoordinatorError> {
    let response = store.list("read targets", prefix).await?;
    Ok(TargetSnapshot {
        targets: decode_all(response.kvs(), decode_target),
        revision: revision(header_revision(response.header())),
    })
}

/// Starts a watch of the targets under `prefix`, delivering changes after revision `after`.
/// Also returns the watch's position (the first revision not yet delivered), for
/// [`crate::EtcdCoordinator::watch_positions`].
pub(crate) fn spawn(
    store: Store,
    prefix: String,
    after: i64,
    backoff: Backoff,
    shutdown: watch::Receiver<bool>,
) -> (TargetWatch, Arc<AtomicI64>) {
    let (events, receiver) = mpsc::channel(WATCH_BUFFER);
    let next = after.saturating_add(1);
    let position = Arc::new(AtomicI64::new(next));
    let task = WatchTask {
        store,
        prefix,
        backoff,
        events,
        next,
        position: position.clone(),
    };
    tokio::spawn(task.run(shutdown));
    (TargetWatch::new(receiver), position)
}

/// Why one watch stream ended.
enum Ended {
    /// The reader dropped its [`TargetWatch`].
    ReaderGone,
    /// etcd compacted past `next`: resynchronise.
    Compacted,
    /// A fresh snapshot was delivered and `next` moved past it: follow again.
    Resynced,
    /// The stream failed; reconnect from `next`.
    Broken(String),
}

struct WatchTask {
    store: Store,
    prefix: String,
    backoff: Backoff,
    events: mpsc::Sender<WatchEvent>,
    /// First revision not yet delivered.
    next: i64,
    /// `next`, published for diagnostics (and for tests that wait on a watch's progress).
    position: Arc<AtomicI64>,
}

impl WatchTask {
    /// Moves the position forward (never back).
    fn advance(&mut self, next: i64) {
        self.next = self.next.max(next);
        self.position.store(self.next, Ordering::Relaxed);
    }

    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut attempt = 0;
        let mut resync = false;
        loop {
            let events = self.events.clone();
            let step = async {
                if resync {
                    self.resync().await
                } else {
                    self.follow(&mut attempt).await
                }
            };
            let ended = tokio::select! {
                () = stopped(&mut shutdown) => return,
                () = events.closed() => return,
                ended = step => ended,
            };
            match ended {
                Ended::ReaderGone => return,
                Ended::Compacted => resync = true,
                Ended::Resynced => resync = false,
                Ended::Broken(problem) => {
                    attempt += 1;
                    let delay = self.backoff.delay(attempt);
                    tracing::warn!(%problem, next = self.next, retry_in = ?delay, "target watch interrupted");
                    tokio::select! {
                        () = stopped(&mut shutdown) => return,
                        () = events.closed() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Reads every target, hands the snapshot to the reader, and moves `next` past it.
    async fn resync(&mut self) -> Ended {
        match read_targets(&self.store, &self.prefix).await {
            Ok(snapshot) => {
                let read_at = snapshot.revision.0;
                tracing::info!(
                    revision = read_at,
                    targets = snapshot.targets.len(),
                    "target history was compacted; resynchronised from a fresh read"
                );
                if self
                    .events
                    .send(WatchEvent::Resync(snapshot))
                    .await
                    .is_err()
                {
                    return Ended::ReaderGone;
                }
                self.advance(i64::try_from(read_at).unwrap_or(i64::MAX).saturating_add(1));
                Ended::Resynced
            }
            Err(e) => Ended::Broken(e.to_string()),
        }
    }

    /// Watches from `next` until the stream ends.
    async fn follow(&mut self, attempt: &mut u32) -> Ended {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(self.next)
            .with_progress_notify();
        let mut client = self.store.client();
        let opened = tokio::time::timeout(
            self.store.request_timeout(),
            client.watch(self.prefix.as_str(), Some(options)),
        )
        .await;
        let (mut watcher, mut stream) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) => {
                self.store.recover(&e).await;
                return Ended::Broken(e.to_string());
            }
            Err(_) => {
                return Ended::Broken(
                    unavailable(
                        "watch targets",
                        crate::store::TimedOut(self.store.request_timeout()),
                    )
                    .to_string(),
                );
            }
        };
        if *attempt > 0 {
            tracing::info!(from = self.next, "target watch re-established");
        }
        *attempt = 0;
        let mut progress =
            tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
        loop {
            let message = tokio::select! {
                _ = progress.tick() => {
                    if let Err(e) = watcher.request_progress().await {
                        return Ended::Broken(e.to_string());
                    }
                    continue;
                }
                message = stream.message() => message,
            };
            match message {
                Ok(Some(response)) => {
                    if let Some(ended) = self.deliver(&response).await {
                        return ended;
                    }
                }
                Ok(None) => return Ended::Broken("etcd closed the watch stream".to_owned()),
                Err(e) => return Ended::Broken(e.to_string()),
            }
        }
    }

    /// Hands one response's changes to the reader; `Some` when the stream is done.
    async fn deliver(&mut self, response: &WatchResponse) -> Option<Ended> {
        if response.canceled() {
            if response.compact_revision() > 0 {
                tracing::info!(
                    compacted_to = response.compact_revision(),
                    next = self.next,
                    "etcd compacted past the watch position"
                );
                return Some(Ended::Compacted);
            }
            return Some(Ended::Broken(format!(
                "etcd cancelled the watch: {}",
                response.cancel_reason()
            )));
        }
        if response.events().is_empty() {
            // A progress notification promises that every later event has a higher revision
            // than its header. The creation message promises nothing of the kind: events
            // from before it may still follow when the watch started in the past.
            if !response.created() {
                self.advance(header_revision(response.header()).saturating_add(1));
            }
            return None;
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Put => match decode_target(kv) {
                    Ok(target) => {
                        if self.events.send(WatchEvent::Updated(target)).await.is_err() {
                            return Some(Ended::ReaderGone);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "skipping a target that does not decode"),
                },
                // Targets are never deleted by deployer; an operator who deletes one stops
                // tracking it, which changes nothing for hosts that already run it.
                EventType::Delete => {
                    tracing::warn!(key = %key_text(kv), "a target was deleted from etcd; ignored");
                }
            }
            self.advance(kv.mod_revision().saturating_add(1));
        }
        None
    }
}
