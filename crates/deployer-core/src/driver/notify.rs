//! Fan-out of reports and statuses to notifiers and the coordinator, off the deploy path.
//!
//! Each destination has its own bounded queue and task: a slow Slack never delays a deploy,
//! and never delays the webhook notifier or the history either. A full queue drops its oldest
//! entry (the newest report is the one people need).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::ports::{Coordinator, Notifier};
use crate::report::{DeployReport, ServiceStatus};
use crate::service::ServiceName;

/// Bound on one delivery attempt by a notifier (which does its own retries inside).
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on one coordinator write of a report or status.
const RECORD_TIMEOUT: Duration = Duration::from_secs(30);

/// A bounded queue that drops its oldest entry when full.
#[derive(Debug)]
struct Queue<T> {
    items: Mutex<VecDeque<T>>,
    ready: Notify,
    capacity: usize,
    dropped: AtomicU64,
    closed: std::sync::atomic::AtomicBool,
}

impl<T> Queue<T> {
    fn new(capacity: usize) -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn push(&self, item: T) {
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        if items.len() >= self.capacity {
            items.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        items.push_back(item);
        drop(items);
        self.ready.notify_one();
    }

    /// The next item; `None` once closed and empty.
    async fn pop(&self) -> Option<T> {
        loop {
            let notified = self.ready.notified();
            if let Some(item) = self
                .items
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front()
            {
                return Some(item);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            notified.await;
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_waiters();
        self.ready.notify_one();
    }
}

/// Sends every report to every notifier and to the coordinator's history.
#[derive(Debug, Clone)]
pub(crate) struct ReportHub {
    queues: Arc<Vec<Arc<Queue<Arc<DeployReport>>>>>,
}

impl ReportHub {
    /// Starts one task per notifier plus one for history, in `tasks`.
    pub(crate) fn start(
        notifiers: &[Arc<dyn Notifier>],
        coordinator: Arc<dyn Coordinator>,
        capacity: usize,
        tasks: &mut JoinSet<()>,
    ) -> Self {
        let mut queues = Vec::new();
        for notifier in notifiers {
            let queue: Arc<Queue<Arc<DeployReport>>> = Arc::new(Queue::new(capacity));
            let (q, notifier) = (queue.clone(), notifier.clone());
            tasks.spawn(async move {
                while let Some(report) = q.pop().await {
                    let sent = tokio::time::timeout(NOTIFY_TIMEOUT, notifier.notify(&report)).await;
                    match sent {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::warn!(
                            notifier = notifier.name(),
                            service = %report.service,
                            "notification failed: {}",
                            super::error_chain(&e)
                        ),
                        Err(_) => {
                            tracing::warn!(notifier = notifier.name(), "notification timed out")
                        }
                    }
                }
            });
            queues.push(queue);
        }
        let history: Arc<Queue<Arc<DeployReport>>> = Arc::new(Queue::new(capacity));
        let q = history.clone();
        tasks.spawn(async move {
            while let Some(report) = q.pop().await {
                if report.outcome.is_final() {
                    record(coordinator.as_ref(), &report, &q).await;
                }
            }
        });
        queues.push(history);
        Self {
            queues: Arc::new(queues),
        }
    }

    pub(crate) fn publish(&self, report: DeployReport) {
        let report = Arc::new(report);
        for queue in self.queues.iter() {
            queue.push(report.clone());
        }
    }

    /// Lets the tasks finish what is queued, then end.
    pub(crate) fn close(&self) {
        for queue in self.queues.iter() {
            queue.close();
        }
    }

    /// Reports dropped because a queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.queues
            .iter()
            .map(|q| q.dropped.load(Ordering::Relaxed))
            .sum()
    }
}

/// Publishes the latest status of each service to the coordinator, coalescing bursts.
#[derive(Debug, Clone)]
pub(crate) struct StatusPublisher {
    dirty: Arc<Mutex<BTreeMap<ServiceName, Pending>>>,
    ready: Arc<Notify>,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

/// The write queued for one service: its newest status, or forgetting it. Queued in the same
/// map so that a forget can neither be overtaken by an older status nor overtake a newer one.
#[derive(Debug, Clone)]
enum Pending {
    Status(ServiceStatus),
    Forget { node: String },
}

impl StatusPublisher {
    pub(crate) fn start(coordinator: Arc<dyn Coordinator>, tasks: &mut JoinSet<()>) -> Self {
        let this = Self {
            dirty: Arc::default(),
            ready: Arc::new(Notify::new()),
            closed: Arc::default(),
        };
        let me = this.clone();
        tasks.spawn(async move {
            let mut failures = 0;
            loop {
                let notified = me.ready.notified();
                let batch = std::mem::take(&mut *me.dirty());
                let mut failed = Vec::new();
                for (service, pending) in batch {
                    let write = async {
                        match &pending {
                            Pending::Status(status) => coordinator.report_status(status).await,
                            Pending::Forget { node } => {
                                coordinator.forget_status(node, &service).await
                            }
                        }
                    };
                    let sent = tokio::time::timeout(RECORD_TIMEOUT, write).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        failed.push((service, pending));
                    }
                }
                let closed = me.closed.load(Ordering::Acquire);
                if failed.is_empty() {
                    failures = 0;
                } else {
                    failures += 1;
                    tracing::debug!(failed = failed.len(), "could not report statuses; retrying");
                    // Put them back unless a newer write of the same service arrived meanwhile.
                    let mut dirty = me.dirty();
                    for (service, pending) in failed {
                        dirty.entry(service).or_insert(pending);
                    }
                }
                if closed && (failures == 0 || me.dirty().is_empty()) {
                    return;
                }
                if failures == 0 {
                    notified.await;
                } else if closed {
                    // One last try after a pause; the driver bounds how long it waits for us.
                    tokio::time::sleep(retry_delay(failures)).await;
                } else {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep(retry_delay(failures)) => {}
                    }
                }
            }
        });
        this
    }

    pub(crate) fn publish(&self, status: ServiceStatus) {
        self.dirty()
            .insert(status.service.clone(), Pending::Status(status));
        self.ready.notify_one();
    }

    /// Deletes `service`'s status on `node` once what is queued before it is written.
    pub(crate) fn forget(&self, node: &str, service: &ServiceName) {
        let node = node.to_owned();
        self.dirty()
            .insert(service.clone(), Pending::Forget { node });
        self.ready.notify_one();
    }

    fn dirty(&self) -> std::sync::MutexGuard<'_, BTreeMap<ServiceName, Pending>> {
        self.dirty.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_one();
    }
}

/// Pause before retry `n` of a coordinator write: 500 ms doubling to 2 s. The writes are small
/// and the newest status replaces older queued ones, so retrying often costs little, and the
/// fleet view is current within seconds of a coordinator coming back (a 30 s cap left it stale
/// for up to that long).
fn retry_delay(n: u32) -> Duration {
    (Duration::from_millis(500) * (1 << n.saturating_sub(1).min(2))).min(Duration::from_secs(2))
}

/// Records a report in the history, retrying until it lands or the hub closes (then one
/// last attempt): a report finished while etcd was away still reaches the history.
async fn record(
    coordinator: &dyn Coordinator,
    report: &DeployReport,
    queue: &Queue<Arc<DeployReport>>,
) {
    let mut attempt = 0;
    loop {
        let recorded = tokio::time::timeout(RECORD_TIMEOUT, coordinator.record(report)).await;
        if matches!(recorded, Ok(Ok(()))) {
            return;
        }
        attempt += 1;
        if queue.closed.load(Ordering::Acquire) && attempt > 1 {
            tracing::warn!(service = %report.service, "could not record the report in history before stopping");
            return;
        }
        tracing::debug!(service = %report.service, attempt, "could not record the report in history; retrying");
        tokio::time::sleep(retry_delay(attempt)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_drops_the_oldest() {
        let q = Queue::new(2);
        q.push(1);
        q.push(2);
        q.push(3);
        q.close();
        assert_eq!(q.pop().await, Some(2));
        assert_eq!(q.pop().await, Some(3));
        assert_eq!(q.pop().await, None);
        assert_eq!(q.dropped.load(Ordering::Relaxed), 1);
    }
}
