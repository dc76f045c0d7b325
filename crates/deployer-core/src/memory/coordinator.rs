use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc};

use super::LocalStore;
use crate::image::{Digest, ImageRef};
use crate::ports::{
    Coordinator, CoordinatorError, SlotGrant, SlotLease, TargetSnapshot, TargetWatch, WatchEvent,
};
use crate::report::{DeployReport, ServiceStatus};
use crate::service::ServiceName;
use crate::target::{
    Decision, Halt, PublishOutcome, PublishRequest, Revision, Target, apply_halt, decide,
};
use crate::time::Timestamp;

/// Changes kept for watchers that resume; older resumes get a full resync.
const LOG_KEPT: usize = 1024;
/// Events buffered per watcher; a watcher that falls this far behind is closed and resumes.
const WATCH_BUFFER: usize = 1024;

/// The single-host coordinator: targets, slots, statuses and history in process memory,
/// optionally backed by a [`LocalStore`].
///
/// Same semantics as the etcd coordinator (the publish rule of [`crate::target`], gap-free
/// watches from a revision, K slots per service, bounded history). Without a store a restart
/// starts empty; with one ([`MemoryCoordinator::with_store`]) every accepted change is written
/// through before it is visible, and a restart resumes where the last one stopped. Slots are
/// never stored: they belong to running processes.
#[derive(Debug)]
pub struct MemoryCoordinator {
    node: String,
    slots_per_service: usize,
    history_kept: usize,
    store: Option<Arc<dyn LocalStore>>,
    state: Mutex<State>,
    /// Woken when a slot frees or a target changes, for `acquire_slot` waiters.
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    revision: u64,
    targets: BTreeMap<ImageRef, Target>,
    log: VecDeque<Target>,
    watchers: Vec<mpsc::Sender<WatchEvent>>,
    slots: BTreeMap<ServiceName, BTreeSet<String>>,
    statuses: BTreeMap<(ServiceName, String), ServiceStatus>,
    history: VecDeque<DeployReport>,
}

impl State {
    /// Writes `target` at the next revision: to the store first (a write that fails changes
    /// nothing), then for readers and watchers.
    fn commit(
        &mut self,
        store: Option<&dyn LocalStore>,
        mut target: Target,
    ) -> Result<Target, CoordinatorError> {
        target.revision = Revision(self.revision + 1);
        if let Some(store) = store {
            store
                .save_target(&target)
                .map_err(|source| CoordinatorError::Unavailable {
                    operation: "save target",
                    source,
                })?;
        }
        self.revision += 1;
        self.targets.insert(target.image.clone(), target.clone());
        self.log.push_back(target.clone());
        if self.log.len() > LOG_KEPT {
            self.log.pop_front();
        }
        // A watcher whose buffer is full is closed: it resumes from its last revision.
        self.watchers
            .retain(|w| w.try_send(WatchEvent::Updated(target.clone())).is_ok());
        Ok(target)
    }

    fn snapshot(&self) -> TargetSnapshot {
        TargetSnapshot {
            targets: self.targets.values().cloned().collect(),
            revision: Revision(self.revision),
        }
    }
}

impl MemoryCoordinator {
    /// A coordinator for host `node`, one rollout slot per service, 1,000 reports of history.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            slots_per_service: 1,
            history_kept: 1000,
            store: None,
            state: Mutex::default(),
            changed: Notify::new(),
        }
    }

    /// Backs the coordinator with `store`: what it holds is loaded now, and every accepted
    /// change is written to it from now on.
    pub fn with_store(mut self, store: Arc<dyn LocalStore>) -> Result<Self, CoordinatorError> {
        let stored = store
            .load()
            .map_err(|source| CoordinatorError::Unavailable {
                operation: "load the local store",
                source,
            })?;
        {
            let mut state = self.state();
            state.revision = stored
                .targets
                .iter()
                .map(|t| t.revision.0)
                .max()
                .unwrap_or(0);
            state.targets = stored
                .targets
                .into_iter()
                .map(|t| (t.image.clone(), t))
                .collect();
            state.statuses = stored
                .statuses
                .into_iter()
                .map(|s| ((s.service.clone(), s.node.clone()), s))
                .collect();
            state.history = stored.history.into_iter().take(self.history_kept).collect();
        }
        self.store = Some(store);
        Ok(self)
    }

    /// Keeps at most `kept` reports.
    pub fn with_history(mut self, kept: usize) -> Self {
        self.history_kept = kept.max(1);
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn same_deploy(a: &DeployReport, b: &DeployReport) -> bool {
    (&a.service, &a.node, a.generation, a.outcome, &a.to)
        == (&b.service, &b.node, b.generation, b.outcome, &b.to)
}

#[async_trait]
impl Coordinator for MemoryCoordinator {
    async fn publish(&self, request: PublishRequest) -> Result<PublishOutcome, CoordinatorError> {
        let mut state = self.state();
        let key = request.image.without_digest();
        let outcome = match decide(state.targets.get(&key), &request, Timestamp::now()) {
            Decision::Keep(outcome) => outcome,
            Decision::Write(target) => PublishOutcome::Published {
                target: state.commit(self.store.as_deref(), target)?,
            },
        };
        drop(state);
        self.changed.notify_waiters();
        Ok(outcome)
    }

    async fn target(&self, image: &ImageRef) -> Result<Option<Target>, CoordinatorError> {
        Ok(self.state().targets.get(&image.without_digest()).cloned())
    }

    async fn snapshot(&self) -> Result<TargetSnapshot, CoordinatorError> {
        Ok(self.state().snapshot())
    }

    async fn watch(&self, after: Revision) -> Result<TargetWatch, CoordinatorError> {
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let mut state = self.state();
        let oldest_logged = state
            .log
            .front()
            .map_or(state.revision + 1, |t| t.revision.0);
        if after.0 + 1 < oldest_logged && after.0 < state.revision {
            let _ = tx.try_send(WatchEvent::Resync(state.snapshot()));
        } else {
            for target in state.log.iter().filter(|t| t.revision > after) {
                if tx.try_send(WatchEvent::Updated(target.clone())).is_err() {
                    break;
                }
            }
        }
        state.watchers.push(tx);
        Ok(TargetWatch::new(rx))
    }

    async fn halt(
        &self,
        image: &ImageRef,
        digest: &Digest,
        halt: Halt,
    ) -> Result<(), CoordinatorError> {
        let mut state = self.state();
        let key = image.without_digest();
        if let Some(halted) = state
            .targets
            .get(&key)
            .and_then(|current| apply_halt(current, digest, halt))
        {
            state.commit(self.store.as_deref(), halted)?;
        }
        drop(state);
        self.changed.notify_waiters();
        Ok(())
    }

    async fn acquire_slot(
        &self,
        service: &ServiceName,
        target: &Target,
    ) -> Result<SlotGrant, CoordinatorError> {
        loop {
            let notified = self.changed.notified();
            {
                let mut state = self.state();
                let current = state.targets.get(&target.image);
                if let Some(halt) = current
                    .filter(|t| t.digest == target.digest)
                    .and_then(|t| t.halt_for(service).cloned())
                {
                    return Ok(SlotGrant::Halted(halt));
                }
                let holders = state.slots.entry(service.clone()).or_default();
                if holders.contains(&self.node) || holders.len() < self.slots_per_service {
                    holders.insert(self.node.clone());
                    return Ok(SlotGrant::Granted(SlotLease {
                        service: service.clone(),
                        token: self.node.clone(),
                    }));
                }
            }
            notified.await;
        }
    }

    async fn release_slot(&self, slot: SlotLease) -> Result<(), CoordinatorError> {
        if let Some(holders) = self.state().slots.get_mut(&slot.service) {
            holders.remove(&slot.token);
        }
        self.changed.notify_waiters();
        Ok(())
    }

    async fn report_status(&self, status: &ServiceStatus) -> Result<(), CoordinatorError> {
        let key = (status.service.clone(), status.node.clone());
        let mut state = self.state();
        if let Some(store) = &self.store {
            store
                .save_status(status)
                .map_err(|source| CoordinatorError::Unavailable {
                    operation: "save status",
                    source,
                })?;
        }
        state.statuses.insert(key, status.clone());
        Ok(())
    }

    async fn forget_status(
        &self,
        node: &str,
        service: &ServiceName,
    ) -> Result<(), CoordinatorError> {
        let mut state = self.state();
        if let Some(store) = &self.store {
            store
                .forget_status(node, service)
                .map_err(|source| CoordinatorError::Unavailable {
                    operation: "forget status",
                    source,
                })?;
        }
        state.statuses.remove(&(service.clone(), node.to_owned()));
        Ok(())
    }

    async fn statuses(&self) -> Result<Vec<ServiceStatus>, CoordinatorError> {
        Ok(self.state().statuses.values().cloned().collect())
    }

    async fn record(&self, report: &DeployReport) -> Result<(), CoordinatorError> {
        let mut state = self.state();
        // A report sent again after a crash (between its sending and the journal forgetting
        // the deploy) is the same deploy: history keeps it once.
        if report.generation.is_some() && state.history.iter().any(|r| same_deploy(r, report)) {
            return Ok(());
        }
        if let Some(store) = &self.store {
            store
                .save_report(report, self.history_kept)
                .map_err(|source| CoordinatorError::Unavailable {
                    operation: "save report",
                    source,
                })?;
        }
        state.history.push_front(report.clone());
        state.history.truncate(self.history_kept);
        Ok(())
    }

    async fn history(
        &self,
        service: Option<&ServiceName>,
        limit: usize,
    ) -> Result<Vec<DeployReport>, CoordinatorError> {
        Ok(self
            .state()
            .history
            .iter()
            .filter(|r| service.is_none_or(|s| &r.service == s))
            .take(limit)
            .cloned()
            .collect())
    }
}
