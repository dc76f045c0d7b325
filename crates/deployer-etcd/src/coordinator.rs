//! [`EtcdCoordinator`]: construction, shutdown, and the [`Coordinator`] implementation,
//! which delegates to the modules that hold each concern.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex as StdMutex, PoisonError};

use async_trait::async_trait;
use deployer_core::ports::{
    Coordinator, CoordinatorError, SlotGrant, SlotLease, TargetSnapshot, TargetWatch,
};
use deployer_core::service::ServiceName;
use deployer_core::target::{Halt, PublishOutcome, PublishRequest};
use deployer_core::{DeployReport, Digest, ImageRef, Revision, ServiceStatus, Target, Timestamp};
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinHandle;

use crate::codec::{HostRecord, LiveEndpoint, encode, etcd_revision};
use crate::config::EtcdConfig;
use crate::error::ConnectError;
use crate::keys::Keys;
use crate::lease::{self, Keeper, LeaseId, Registry};
use crate::slots::SlotRules;
use crate::store::Store;
use crate::{records, slots, targets, watch as target_watch};

/// The fleet coordinator over etcd v3. See the [crate docs](crate) for the key layout.
///
/// Cheap to clone; clones share one connection, one lease and one set of background tasks.
/// Call [`close`](Self::close) at shutdown to revoke the lease (freeing this host's rollout
/// slots and endpoints at once); if every clone is dropped without it, the background task
/// still revokes the lease when the runtime lets it, and otherwise etcd expires it after the
/// TTL.
#[derive(Clone)]
pub struct EtcdCoordinator {
    shared: Arc<Shared>,
}

/// State shared by every clone and borrowed by each operation.
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) keys: Keys,
    pub(crate) rules: SlotRules,
    pub(crate) config: EtcdConfig,
    /// The lease lease-bound writes use; `None` while a lost one is being replaced.
    pub(crate) lease: watch::Receiver<Option<LeaseId>>,
    /// Lease-bound keys of this host, to restore under a new lease.
    pub(crate) registry: Arc<Mutex<Registry>>,
    /// Wakes the restorer after a failed lease-bound write.
    pub(crate) restore: Arc<Notify>,
    /// `true` once `close` was called; dropped with the last clone, which also stops tasks.
    pub(crate) shutdown: watch::Sender<bool>,
    /// The keeper task, awaited by `close` so the lease is revoked before it returns.
    keeper: StdMutex<Option<JoinHandle<()>>>,
    /// Makes history keys unique within this process.
    pub(crate) history_seq: AtomicU64,
    /// Where each target watch stands (first revision not yet delivered); dropped watches
    /// leave dead references, pruned on read.
    watches: StdMutex<Vec<std::sync::Weak<std::sync::atomic::AtomicI64>>>,
}

impl Shared {
    /// Fails with [`CoordinatorError::Closed`] after `close`.
    pub(crate) fn check_open(&self) -> Result<(), CoordinatorError> {
        if *self.shutdown.borrow() {
            Err(CoordinatorError::Closed)
        } else {
            Ok(())
        }
    }

    /// This host's node name.
    pub(crate) fn node(&self) -> &str {
        &self.config.node
    }
}

impl std::fmt::Debug for EtcdCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCoordinator")
            .field("config", &self.shared.config)
            .field("lease", &*self.shared.lease.borrow())
            .finish_non_exhaustive()
    }
}

impl EtcdCoordinator {
    /// Validates `config`, connects, takes a lease, registers this host under
    /// `hosts/<node>`, and starts the lease keeper. Must run inside a Tokio runtime (the
    /// keeper and every watch are tasks on it).
    ///
    /// Fails when the configuration is invalid or etcd does not answer within the dial and
    /// request timeouts: a deployer that cannot reach its fleet's etcd at start should say so
    /// rather than run alone. Once connected, outages are ridden out in the background.
    pub async fn connect(config: EtcdConfig) -> Result<Self, ConnectError> {
        config.validate()?;
        let store = Store::connect(&config).await?;
        let keys = Keys::new(config.root());
        let rules = SlotRules {
            keys: keys.clone(),
            node: config.node.clone(),
            slots_per_service: config.slots_per_service,
        };
        let ttl = config.lease_ttl_secs();
        let lease = lease::grant(&store, ttl)
            .await
            .map_err(ConnectError::Register)?;

        let host_key = keys.host(&config.node);
        warn_if_node_taken(&store, &host_key, &config.node).await;
        let host = HostRecord {
            node: config.node.clone(),
            started_at: Timestamp::now(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let registry = Arc::new(Mutex::new(Registry {
            host: Some((
                host_key.clone(),
                encode(&host_key, &host).map_err(ConnectError::Register)?,
            )),
            ..Registry::default()
        }));
        lease::register(&store, &rules, &registry, lease)
            .await
            .map_err(ConnectError::Register)?;

        let (lease_tx, lease_rx) = watch::channel(Some(lease));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let restore = Arc::new(Notify::new());
        let keeper = Keeper {
            store: store.clone(),
            rules: rules.clone(),
            ttl,
            backoff: config.lease_backoff(),
            registry: registry.clone(),
            current: lease_tx,
            restore: restore.clone(),
            shutdown: shutdown_rx,
        };
        let keeper = tokio::spawn(keeper.run(lease));
        tracing::info!(
            node = %config.node,
            prefix = %keys.root(),
            lease = format_args!("{lease:x}"),
            "registered with etcd"
        );
        Ok(Self {
            shared: Arc::new(Shared {
                store,
                keys,
                rules,
                config,
                lease: lease_rx,
                registry,
                restore,
                shutdown,
                keeper: StdMutex::new(Some(keeper)),
                history_seq: AtomicU64::new(0),
                watches: StdMutex::default(),
            }),
        })
    }

    /// Stops the background tasks and revokes the lease, so that this host's rollout slots,
    /// endpoints and `hosts/` key disappear at once (statuses stay: they are not lease-bound).
    /// Every later call fails with [`CoordinatorError::Closed`]; open watches end. Bounded by
    /// twice the request timeout. Calling it again does nothing.
    pub async fn close(&self) {
        self.shared.shutdown.send_replace(true);
        let keeper = self
            .shared
            .keeper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(keeper) = keeper {
            let bound = self.shared.store.request_timeout() * 2;
            if tokio::time::timeout(bound, keeper).await.is_err() {
                tracing::warn!(
                    "lease revoke did not finish within {bound:?}; it expires by itself"
                );
            }
        }
    }

    /// The settings this coordinator runs with.
    pub fn config(&self) -> &EtcdConfig {
        &self.shared.config
    }

    /// The key layout, for tools that read etcd directly.
    pub fn keys(&self) -> &Keys {
        &self.shared.keys
    }

    /// For each open target watch, the revision up to which it has delivered everything: where
    /// it resumes after a reconnect. Progress notifications move it even while no target
    /// changes, so a watch idle through a compaction resumes without a full re-read.
    pub fn watch_positions(&self) -> Vec<Revision> {
        let mut watches = self
            .shared
            .watches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        watches.retain(|w| w.strong_count() > 0);
        watches
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .map(|next| {
                let next = next.load(std::sync::atomic::Ordering::Relaxed);
                Revision(u64::try_from(next.saturating_sub(1)).unwrap_or(0))
            })
            .collect()
    }

    /// The id of the lease this host's lease-bound keys live under, `None` while a lost
    /// lease is being replaced or after `close`.
    pub fn lease_id(&self) -> Option<i64> {
        *self.shared.lease.borrow()
    }

    /// Hosts whose lease is alive, by node name.
    pub async fn hosts(&self) -> Result<Vec<HostRecord>, CoordinatorError> {
        self.shared.check_open()?;
        records::hosts(&self.shared).await
    }

    /// Live endpoints of one service (or of all): what an external proxy would route to.
    pub async fn endpoints(
        &self,
        service: Option<&ServiceName>,
    ) -> Result<Vec<LiveEndpoint>, CoordinatorError> {
        self.shared.check_open()?;
        records::endpoints(&self.shared, service).await
    }
}

/// Warns when another live process already registered this node name: two hosts sharing a
/// name would share slots and overwrite each other's statuses.
async fn warn_if_node_taken(store: &Store, host_key: &str, node: &str) {
    if let Ok(existing) = store.get("read host key", host_key, None).await
        && existing.kvs().first().is_some_and(|kv| kv.lease() != 0)
    {
        tracing::warn!(
            node,
            "node name already registered by a live lease: another host uses the same name, or a previous run crashed less than a lease TTL ago"
        );
    }
}

#[async_trait]
impl Coordinator for EtcdCoordinator {
    async fn publish(&self, request: PublishRequest) -> Result<PublishOutcome, CoordinatorError> {
        self.shared.check_open()?;
        targets::publish(&self.shared, &request).await
    }

    async fn target(&self, image: &ImageRef) -> Result<Option<Target>, CoordinatorError> {
        self.shared.check_open()?;
        targets::read(&self.shared, image).await
    }

    async fn snapshot(&self) -> Result<TargetSnapshot, CoordinatorError> {
        self.shared.check_open()?;
        target_watch::read_targets(&self.shared.store, &self.shared.keys.targets()).await
    }

    async fn watch(&self, after: Revision) -> Result<TargetWatch, CoordinatorError> {
        self.shared.check_open()?;
        let (watch, position) = target_watch::spawn(
            self.shared.store.clone(),
            self.shared.keys.targets(),
            etcd_revision(after),
            self.shared.config.backoff(),
            self.shared.shutdown.subscribe(),
        );
        self.shared
            .watches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::downgrade(&position));
        Ok(watch)
    }

    async fn halt(
        &self,
        image: &ImageRef,
        digest: &Digest,
        halt: Halt,
    ) -> Result<(), CoordinatorError> {
        self.shared.check_open()?;
        targets::halt(&self.shared, image, digest, halt).await
    }

    async fn acquire_slot(
        &self,
        service: &ServiceName,
        target: &Target,
    ) -> Result<SlotGrant, CoordinatorError> {
        self.shared.check_open()?;
        slots::acquire(&self.shared, service, target).await
    }

    async fn release_slot(&self, slot: SlotLease) -> Result<(), CoordinatorError> {
        // Releasing after close is fine: the revoke already freed it.
        if self.shared.check_open().is_err() {
            return Ok(());
        }
        slots::release(&self.shared, &slot).await
    }

    async fn report_status(&self, status: &ServiceStatus) -> Result<(), CoordinatorError> {
        self.shared.check_open()?;
        records::report_status(&self.shared, status).await
    }

    async fn forget_status(
        &self,
        node: &str,
        service: &ServiceName,
    ) -> Result<(), CoordinatorError> {
        self.shared.check_open()?;
        records::forget_status(&self.shared, node, service).await
    }

    async fn statuses(&self) -> Result<Vec<ServiceStatus>, CoordinatorError> {
        self.shared.check_open()?;
        records::statuses(&self.shared).await
    }

    async fn record(&self, report: &DeployReport) -> Result<(), CoordinatorError> {
        self.shared.check_open()?;
        records::record(&self.shared, report).await
    }

    async fn history(
        &self,
        service: Option<&ServiceName>,
        limit: usize,
    ) -> Result<Vec<DeployReport>, CoordinatorError> {
        self.shared.check_open()?;
        records::history(&self.shared, service, limit).await
    }
}
