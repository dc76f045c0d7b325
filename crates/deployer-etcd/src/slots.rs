//! Cluster rollout slots: at most K hosts switch one service at a time.
//!
//! A slot is the key `rollout/<service>/<node>`, bound to the holder's lease so that a dead
//! host's slot frees itself. Taking one is a transaction that re-checks the count: it reads
//! the holders at revision R, and creates its key only if no key under the service's rollout
//! prefix was created after R (a range compare on `create_revision`). Releases between the
//! read and the write only make room, so they need no check.

use std::time::Duration;

use deployer_core::ports::{CoordinatorError, SlotGrant, SlotLease};
use deployer_core::service::ServiceName;
use deployer_core::{Target, Timestamp};
use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::watch;

use crate::codec::{SlotRecord, decode_target, encode};
use crate::coordinator::Shared;
use crate::keys::Keys;
use crate::lease::{LeaseId, stopped};
use crate::store::{Store, header_revision};

/// What decides who may take a slot: the key layout, this host, and K.
#[derive(Debug, Clone)]
pub(crate) struct SlotRules {
    pub(crate) keys: Keys,
    pub(crate) node: String,
    pub(crate) slots_per_service: usize,
}

/// The outcome of one attempt to take a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// Our key was created now.
    Taken,
    /// Our key already existed (and is now bound to our lease).
    Held,
    /// K other hosts hold slots.
    Full,
    /// What the decision was based on changed since it was read: decide again.
    Conflict,
}

/// The target key and the `mod_revision` (0: absent) a slot decision was based on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TargetGuard<'a> {
    pub(crate) key: &'a str,
    pub(crate) mod_revision: i64,
}

/// One consistent read of a service's slot holders (and optionally its target).
#[derive(Debug)]
pub(crate) struct SlotView {
    /// Slot keys present.
    pub(crate) holders: Vec<KeyValue>,
    /// The target key's value, when it was asked for and exists.
    pub(crate) target: Option<KeyValue>,
    /// The revision of the read.
    pub(crate) revision: i64,
}

impl SlotRules {
    /// Reads the holders of `service`'s slots and, if given, the target key, at one revision
    /// (both reads in one transaction).
    pub(crate) async fn read(
        &self,
        store: &Store,
        service: &ServiceName,
        target_key: Option<&str>,
    ) -> Result<SlotView, CoordinatorError> {
        let mut reads = vec![TxnOp::get(
            self.keys.rollout(service),
            Some(GetOptions::new().with_prefix()),
        )];
        if let Some(key) = target_key {
            reads.push(TxnOp::get(key, None));
        }
        let response = store
            .txn("read rollout slots", Txn::new().and_then(reads))
            .await?;
        let mut ranges = response.op_responses().into_iter().map(|op| match op {
            TxnOpResponse::Get(mut get) => get.take_kvs(),
            _ => Vec::new(),
        });
        let holders = ranges.next().unwrap_or_default();
        let target = ranges.next().and_then(|mut kvs| kvs.pop());
        Ok(SlotView {
            holders,
            target,
            revision: header_revision(response.header()),
        })
    }

    /// Decides from `view` and, when there is room or our key needs our lease, writes the
    /// slot key in a transaction that re-checks what was read.
    pub(crate) async fn take_from(
        &self,
        store: &Store,
        service: &ServiceName,
        view: &SlotView,
        value: &[u8],
        lease: LeaseId,
        guard: Option<TargetGuard<'_>>,
    ) -> Result<Take, CoordinatorError> {
        let ours = self.keys.slot(service, &self.node);
        let mine = view.holders.iter().find(|kv| kv.key() == ours.as_bytes());
        let mut compares = Vec::with_capacity(2);
        let taken = match mine {
            Some(kv) if kv.lease() == lease => return Ok(Take::Held),
            // Ours, but under another lease: a previous run of this node that crashed less
            // than a TTL ago. Its lease will expire and take the key with it, so rebind it.
            Some(kv) => {
                compares.push(Compare::mod_revision(
                    ours.as_str(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                ));
                Take::Held
            }
            None if view.holders.len() >= self.slots_per_service => return Ok(Take::Full),
            None => {
                compares.push(
                    Compare::create_revision(
                        self.keys.rollout(service),
                        CompareOp::Less,
                        view.revision + 1,
                    )
                    .with_prefix(),
                );
                Take::Taken
            }
        };
        if let Some(guard) = guard {
            compares.push(Compare::mod_revision(
                guard.key,
                CompareOp::Equal,
                guard.mod_revision,
            ));
        }
        let txn = Txn::new().when(compares).and_then([TxnOp::put(
            ours.as_str(),
            value.to_vec(),
            Some(PutOptions::new().with_lease(lease)),
        )]);
        let response = store.txn("take rollout slot", txn).await?;
        Ok(if response.succeeded() {
            taken
        } else {
            Take::Conflict
        })
    }

    /// Reads and takes until the answer is settled (used to re-take slots after a lease loss,
    /// with no target to guard).
    pub(crate) async fn try_take(
        &self,
        store: &Store,
        service: &ServiceName,
        value: &[u8],
        lease: LeaseId,
        guard: Option<TargetGuard<'_>>,
    ) -> Result<Take, CoordinatorError> {
        loop {
            let view = self.read(store, service, None).await?;
            match self
                .take_from(store, service, &view, value, lease, guard)
                .await?
            {
                // Without a guard a failed compare means "a holder came or went": look again.
                Take::Conflict if guard.is_none() => {}
                settled => return Ok(settled),
            }
        }
    }

    /// Waits until a slot key of `service` or the target key changes after `revision`, or
    /// `fallback` passes (a safety net should a watch miss its chance), or shutdown.
    pub(crate) async fn wait_for_change(
        &self,
        store: &Store,
        service: &ServiceName,
        target_key: &str,
        revision: i64,
        fallback: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let from = WatchOptions::new().with_start_revision(revision + 1);
        let watch = async {
            let mut client = store.client();
            let (mut watcher, mut stream) = client
                .watch(self.keys.rollout(service), Some(from.clone().with_prefix()))
                .await?;
            watcher.watch(target_key, Some(from.clone())).await?;
            loop {
                match stream.message().await? {
                    // Creation and progress messages say nothing changed.
                    Some(msg) if !msg.canceled() && msg.events().is_empty() => {}
                    _ => return Ok::<(), etcd_client::Error>(()),
                }
            }
        };
        tokio::select! {
            () = stopped(shutdown) => {}
            () = tokio::time::sleep(fallback) => {}
            result = watch => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "slot watch failed; polling instead");
                    store.recover(&e).await;
                    tokio::select! {
                        () = stopped(shutdown) => {}
                        () = tokio::time::sleep(store.request_timeout().min(fallback)) => {}
                    }
                }
            }
        }
    }
}

/// What one look at the slots concluded.
enum Step {
    /// Answer the caller.
    Done(SlotGrant),
    /// All slots are taken as of this revision: wait for a change after it.
    Wait(i64),
    /// Something changed under the decision: look again at once.
    Again,
}

/// Waits for a slot for `service` to switch to `target`; see [`Coordinator::acquire_slot`].
///
/// Rides out etcd outages shorter than the lease TTL (an etcd restart during a rollout) by
/// retrying with backoff; longer ones are returned as `Unavailable`, and the caller retries.
///
/// [`Coordinator::acquire_slot`]: deployer_core::ports::Coordinator::acquire_slot
pub(crate) async fn acquire(
    shared: &Shared,
    service: &ServiceName,
    target: &Target,
) -> Result<SlotGrant, CoordinatorError> {
    let slot_key = shared.keys.slot(service, shared.node());
    let record = SlotRecord {
        node: shared.node().to_owned(),
        image: target.image.clone(),
        digest: target.digest.clone(),
        acquired_at: Timestamp::now(),
    };
    let value = encode(&slot_key, &record)?;
    let backoff = shared.config.backoff();
    let mut shutdown = shared.shutdown.subscribe();
    let mut lease_changes = shared.lease.clone();
    let mut outage: Option<(tokio::time::Instant, u32)> = None;
    loop {
        shared.check_open()?;
        let Some(lease) = *lease_changes.borrow_and_update() else {
            // No lease while a lost one is replaced: a slot taken now would not outlive us.
            tokio::select! {
                () = stopped(&mut shutdown) => return Err(CoordinatorError::Closed),
                changed = lease_changes.changed() => match changed {
                    Ok(()) => continue,
                    // The keeper is gone, which only happens at shutdown.
                    Err(_) => return Err(CoordinatorError::Closed),
                },
            }
        };
        match look(shared, service, target, &value, lease).await {
            Ok(Step::Done(grant)) => return Ok(grant),
            Ok(Step::Again) => outage = None,
            Ok(Step::Wait(revision)) => {
                outage = None;
                tracing::debug!(%service, "waiting for a rollout slot");
                let target_key = shared.keys.target(&target.image);
                shared
                    .rules
                    .wait_for_change(
                        &shared.store,
                        service,
                        &target_key,
                        revision,
                        shared.config.lease_ttl,
                        &mut shutdown,
                    )
                    .await;
            }
            Err(e @ CoordinatorError::Unavailable { .. }) => {
                let (since, attempt) = outage.get_or_insert((tokio::time::Instant::now(), 0));
                if since.elapsed() >= shared.config.lease_ttl {
                    return Err(e);
                }
                *attempt += 1;
                tracing::debug!(error = %e, "etcd unavailable while waiting for a slot; retrying");
                tokio::select! {
                    () = stopped(&mut shutdown) => return Err(CoordinatorError::Closed),
                    () = tokio::time::sleep(backoff.delay(*attempt)) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads the slots and the target at one revision and takes a slot if the rules allow.
async fn look(
    shared: &Shared,
    service: &ServiceName,
    target: &Target,
    value: &[u8],
    lease: LeaseId,
) -> Result<Step, CoordinatorError> {
    let target_key = shared.keys.target(&target.image);
    let view = shared
        .rules
        .read(&shared.store, service, Some(&target_key))
        .await?;
    let current = view.target.as_ref().map(decode_target).transpose()?;
    if let Some(halt) = current
        .as_ref()
        .filter(|t| t.digest == target.digest)
        .and_then(|t| t.halt_for(service).cloned())
    {
        tracing::info!(%service, node = %halt.node, "not taking a slot: the build was halted");
        return Ok(Step::Done(SlotGrant::Halted(halt)));
    }
    let guard = TargetGuard {
        key: &target_key,
        mod_revision: view.target.as_ref().map_or(0, KeyValue::mod_revision),
    };
    let mut registry = shared.registry.lock().await;
    match shared
        .rules
        .take_from(&shared.store, service, &view, value, lease, Some(guard))
        .await?
    {
        Take::Taken | Take::Held => {
            let slot_key = shared.keys.slot(service, shared.node());
            registry.stale.remove(&slot_key);
            registry
                .slots
                .insert(slot_key, (service.clone(), value.to_vec()));
            tracing::info!(%service, node = shared.node(), "rollout slot taken");
            Ok(Step::Done(SlotGrant::Granted(SlotLease {
                service: service.clone(),
                token: shared.node().to_owned(),
            })))
        }
        Take::Conflict => Ok(Step::Again),
        Take::Full => Ok(Step::Wait(view.revision)),
    }
}

/// Gives a slot back: deletes its key now, or as soon as etcd answers again.
pub(crate) async fn release(shared: &Shared, slot: &SlotLease) -> Result<(), CoordinatorError> {
    let key = shared.keys.slot(&slot.service, &slot.token);
    let mut registry = shared.registry.lock().await;
    registry.slots.remove(&key);
    let deleted = shared
        .store
        .call("release rollout slot", |mut client| {
            let key = key.clone();
            async move { client.delete(key, None).await }
        })
        .await;
    match deleted {
        Ok(_) => {
            registry.stale.remove(&key);
            tracing::info!(service = %slot.service, "rollout slot released");
            Ok(())
        }
        Err(e) => {
            registry.stale.insert(key);
            shared.restore.notify_one();
            Err(e)
        }
    }
}
