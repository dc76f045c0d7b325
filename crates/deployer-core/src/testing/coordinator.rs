use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::Failures;
use crate::image::{Digest, ImageRef};
use crate::memory::MemoryCoordinator;
use crate::ports::{
    Coordinator, CoordinatorError, SlotGrant, SlotLease, TargetSnapshot, TargetWatch,
};
use crate::report::{DeployReport, ServiceStatus};
use crate::service::ServiceName;
use crate::target::{Halt, PublishOutcome, PublishRequest, Revision, Target};

/// The in-memory coordinator, recording every call; calls can be made to fail, one operation
/// at a time (`fail_next`) or all of them while it is "down" (`set_down`).
#[derive(Debug)]
pub struct FakeCoordinator {
    inner: MemoryCoordinator,
    calls: Mutex<Vec<&'static str>>,
    failures: Mutex<Failures>,
    down: AtomicBool,
}

impl FakeCoordinator {
    /// A coordinator for host `node`.
    pub fn new(node: &str) -> Self {
        Self {
            inner: MemoryCoordinator::new(node),
            calls: Mutex::default(),
            failures: Mutex::default(),
            down: AtomicBool::new(false),
        }
    }

    /// The coordinator underneath, to read its state without recording or failing.
    pub fn inner(&self) -> &MemoryCoordinator {
        &self.inner
    }

    /// Every call so far, by operation name (`publish`, `record`, `report_status`, ...).
    pub fn calls(&self) -> Vec<&'static str> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fails the next `times` calls of `operation`.
    pub fn fail_next(&self, operation: &'static str, times: u32) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set(operation, times);
    }

    /// While down, every call fails as `Unavailable`, like etcd being away.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn call(&self, operation: &'static str) -> Result<(), CoordinatorError> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(operation);
        let injected = self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(operation);
        if injected || self.down.load(Ordering::SeqCst) {
            return Err(CoordinatorError::Unavailable {
                operation,
                source: "injected failure".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Coordinator for FakeCoordinator {
    async fn publish(&self, request: PublishRequest) -> Result<PublishOutcome, CoordinatorError> {
        self.call("publish")?;
        self.inner.publish(request).await
    }

    async fn target(&self, image: &ImageRef) -> Result<Option<Target>, CoordinatorError> {
        self.call("target")?;
        self.inner.target(image).await
    }

    async fn snapshot(&self) -> Result<TargetSnapshot, CoordinatorError> {
        self.call("snapshot")?;
        self.inner.snapshot().await
    }

    async fn watch(&self, after: Revision) -> Result<TargetWatch, CoordinatorError> {
        self.call("watch")?;
        self.inner.watch(after).await
    }

    async fn halt(
        &self,
        image: &ImageRef,
        digest: &Digest,
        halt: Halt,
    ) -> Result<(), CoordinatorError> {
        self.call("halt")?;
        self.inner.halt(image, digest, halt).await
    }

    async fn acquire_slot(
        &self,
        service: &ServiceName,
        target: &Target,
    ) -> Result<SlotGrant, CoordinatorError> {
        self.call("acquire_slot")?;
        self.inner.acquire_slot(service, target).await
    }

    async fn release_slot(&self, slot: SlotLease) -> Result<(), CoordinatorError> {
        self.call("release_slot")?;
        self.inner.release_slot(slot).await
    }

    async fn report_status(&self, status: &ServiceStatus) -> Result<(), CoordinatorError> {
        self.call("report_status")?;
        self.inner.report_status(status).await
    }

    async fn forget_status(
        &self,
        node: &str,
        service: &ServiceName,
    ) -> Result<(), CoordinatorError> {
        self.call("forget_status")?;
        self.inner.forget_status(node, service).await
    }

    async fn statuses(&self) -> Result<Vec<ServiceStatus>, CoordinatorError> {
        self.call("statuses")?;
        self.inner.statuses().await
    }

    async fn record(&self, report: &DeployReport) -> Result<(), CoordinatorError> {
        self.call("record")?;
        self.inner.record(report).await
    }

    async fn history(
        &self,
        service: Option<&ServiceName>,
        limit: usize,
    ) -> Result<Vec<DeployReport>, CoordinatorError> {
        self.call("history")?;
        self.inner.history(service, limit).await
    }
}
