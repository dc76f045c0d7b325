//! This host's lease: keep-alive, replacement after loss, and the keys that live under it.
//!
//! etcd-client's keep-alive is a bare stream that the caller must feed, so a background task
//! (the [`Keeper`]) sends a keep-alive every third of the TTL. When the stream breaks (etcd
//! restarting, a network blip) it reopens it with backoff on the same lease: etcd restores
//! leases with a fresh TTL after a restart, so nothing is lost. Only when etcd says the lease
//! is gone (we were cut off longer than the TTL) does the keeper grant a new one; the
//! [`Registry`] then puts the host, endpoint and slot keys back under it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use deployer_core::Backoff;
use deployer_core::ports::CoordinatorError;
use deployer_core::service::ServiceName;
use etcd_client::{LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp};
use tokio::sync::{Mutex, Notify, watch};

use crate::slots::{SlotRules, Take};
use crate::store::Store;

/// An etcd lease id.
pub(crate) type LeaseId = i64;

/// Keys that exist only while this host lives, kept here so they can be put back under a new
/// lease. Writers update it and write etcd while holding its lock, so a restore never puts
/// back a value older than the one a writer just wrote.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// `hosts/<node>` and its value.
    pub(crate) host: Option<(String, Vec<u8>)>,
    /// `endpoints/<service>/<node>` keys and values.
    pub(crate) endpoints: BTreeMap<String, Vec<u8>>,
    /// Held rollout slots: key -> (service, value).
    pub(crate) slots: BTreeMap<String, (ServiceName, Vec<u8>)>,
    /// Keys whose delete failed (etcd unreachable); deleted once etcd answers again, so a
    /// released slot or a withdrawn endpoint does not linger until the lease dies.
    pub(crate) stale: BTreeSet<String>,
    /// A write under the lease may be missing from etcd: put everything again.
    pub(crate) dirty: bool,
    /// The lease was replaced: slot keys died with the old one and must be taken again,
    /// through the same count check as a fresh acquisition.
    pub(crate) slots_lost: bool,
}

impl Registry {
    /// Brings etcd in line with the registry under `lease`.
    async fn restore(
        &mut self,
        store: &Store,
        rules: &SlotRules,
        lease: LeaseId,
    ) -> Result<(), CoordinatorError> {
        if !self.stale.is_empty() {
            let deletes: Vec<TxnOp> = self
                .stale
                .iter()
                .map(|key| TxnOp::delete(key.as_str(), None))
                .collect();
            store
                .txn("delete withdrawn keys", Txn::new().and_then(deletes))
                .await?;
            self.stale.clear();
        }
        let under_lease = Some(PutOptions::new().with_lease(lease));
        let puts: Vec<TxnOp> = self
            .host
            .iter()
            .map(|(k, v)| (k, v))
            .chain(self.endpoints.iter())
            .map(|(key, value)| TxnOp::put(key.as_str(), value.clone(), under_lease.clone()))
            .collect();
        store
            .txn("register host and endpoints", Txn::new().and_then(puts))
            .await?;
        if self.slots_lost {
            let mut lost = Vec::new();
            for (key, (service, value)) in &self.slots {
                match rules.try_take(store, service, value, lease, None).await? {
                    Take::Taken | Take::Held => {}
                    Take::Full | Take::Conflict => lost.push(key.clone()),
                }
            }
            for key in lost {
                tracing::warn!(
                    slot = %key,
                    "a rollout slot expired while etcd was unreachable and other hosts took all slots since; the switch under way continues without it"
                );
                self.slots.remove(&key);
            }
            self.slots_lost = false;
        }
        self.dirty = false;
        Ok(())
    }
}

/// Resolves once shutdown is signalled or every sender is gone.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Grants a lease of `ttl` seconds.
pub(crate) async fn grant(store: &Store, ttl: i64) -> Result<LeaseId, CoordinatorError> {
    let granted = store
        .call("grant lease", |mut client| async move {
            client.lease_grant(ttl, None).await
        })
        .await?;
    Ok(granted.id())
}

/// Puts the registry into etcd now (used once at connect, before the keeper runs).
pub(crate) async fn register(
    store: &Store,
    rules: &SlotRules,
    registry: &Mutex<Registry>,
    lease: LeaseId,
) -> Result<(), CoordinatorError> {
    registry.lock().await.restore(store, rules, lease).await
}

/// How keeping one lease alive ended.
enum Ended {
    /// etcd says the lease no longer exists.
    Lost,
    /// The coordinator is shutting down.
    Shutdown,
}

/// The background task that keeps the lease alive, replaces it when lost, restores the
/// registry, and revokes the lease at shutdown.
#[derive(Debug)]
pub(crate) struct Keeper {
    pub(crate) store: Store,
    pub(crate) rules: SlotRules,
    pub(crate) ttl: i64,
    pub(crate) backoff: Backoff,
    pub(crate) registry: Arc<Mutex<Registry>>,
    /// The lease every lease-bound write uses; `None` while a new one is being granted.
    pub(crate) current: watch::Sender<Option<LeaseId>>,
    /// Wakes the restorer after a failed write or a new lease.
    pub(crate) restore: Arc<Notify>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Keeper {
    /// Keeps `lease` (and its successors) alive until shutdown, then revokes it.
    pub(crate) async fn run(mut self, mut lease: LeaseId) {
        let restorer = tokio::spawn(restorer(
            self.store.clone(),
            self.rules.clone(),
            self.registry.clone(),
            self.current.subscribe(),
            self.restore.clone(),
            self.backoff,
            self.shutdown.clone(),
        ));
        loop {
            match self.keep_alive(lease).await {
                Ended::Shutdown => break,
                Ended::Lost => tracing::warn!(
                    lease = format_args!("{lease:x}"),
                    "our etcd lease expired (cut off longer than its TTL); registering again"
                ),
            }
            self.current.send_replace(None);
            let Some(granted) = self.grant_again().await else {
                break;
            };
            lease = granted;
            {
                let mut registry = self.registry.lock().await;
                registry.dirty = true;
                registry.slots_lost = true;
            }
            self.current.send_replace(Some(lease));
            self.restore.notify_one();
        }
        restorer.abort();
        self.current.send_replace(None);
        let revoked = tokio::time::timeout(self.store.request_timeout(), async {
            self.store.client().lease_revoke(lease).await
        })
        .await;
        match revoked {
            Ok(Ok(_)) => tracing::debug!("lease revoked: slots and endpoints released"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not revoke our lease; it expires by itself")
            }
            Err(_) => tracing::warn!("etcd did not answer the lease revoke; it expires by itself"),
        }
    }

    /// Keeps one lease alive, reopening the stream as often as needed, until it is lost or
    /// shutdown is signalled.
    async fn keep_alive(&mut self, lease: LeaseId) -> Ended {
        let mut attempt = 0;
        loop {
            let opened = tokio::select! {
                () = stopped(&mut self.shutdown) => return Ended::Shutdown,
                opened = tokio::time::timeout(
                    self.store.request_timeout(),
                    async { self.store.client().lease_keep_alive(lease).await },
                ) => opened,
            };
            let problem = match opened {
                Ok(Ok((keeper, stream))) => {
                    if attempt > 0 {
                        tracing::info!("lease keep-alive re-established");
                    }
                    attempt = 0;
                    if self.registry.lock().await.dirty {
                        self.restore.notify_one();
                    }
                    match self.pump(keeper, stream).await {
                        Ok(ended) => return ended,
                        Err(broken) => broken,
                    }
                }
                // etcd answers a keep-alive for an unknown lease with TTL 0, which
                // etcd-client reports as this error.
                Ok(Err(etcd_client::Error::LeaseKeepAliveError(_))) => return Ended::Lost,
                Ok(Err(e)) => {
                    self.store.recover(&e).await;
                    e.to_string()
                }
                Err(_) => format!("no answer within {:?}", self.store.request_timeout()),
            };
            attempt += 1;
            let delay = self.backoff.delay(attempt);
            tracing::warn!(%problem, retry_in = ?delay, "lease keep-alive interrupted");
            tokio::select! {
                () = stopped(&mut self.shutdown) => return Ended::Shutdown,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Sends keep-alives every third of the TTL and reads the answers; `Err` when the stream
    /// broke and should be reopened on the same lease.
    async fn pump(
        &mut self,
        mut keeper: LeaseKeeper,
        mut stream: LeaseKeepAliveStream,
    ) -> Result<Ended, String> {
        let period = Duration::from_millis(u64::try_from(self.ttl * 1000 / 3).unwrap_or(1000))
            .max(Duration::from_millis(500));
        let ttl = Duration::from_secs(u64::try_from(self.ttl).unwrap_or(1));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut answered = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = stopped(&mut self.shutdown) => return Ok(Ended::Shutdown),
                _ = ticks.tick() => {
                    // A member that accepts keep-alives but never answers is as good as gone.
                    if answered.elapsed() > ttl {
                        return Err(format!("no keep-alive answer for {ttl:?}"));
                    }
                    keeper.keep_alive().await.map_err(|e| e.to_string())?;
                }
                answer = stream.message() => match answer {
                    Ok(Some(answer)) if answer.ttl() > 0 => answered = tokio::time::Instant::now(),
                    Ok(Some(_)) => return Ok(Ended::Lost),
                    Ok(None) => return Err("etcd closed the keep-alive stream".into()),
                    Err(e) => return Err(e.to_string()),
                },
            }
        }
    }

    /// Grants a new lease, retrying with backoff; `None` on shutdown.
    async fn grant_again(&mut self) -> Option<LeaseId> {
        let mut attempt = 0;
        loop {
            let granted = tokio::select! {
                () = stopped(&mut self.shutdown) => return None,
                granted = grant(&self.store, self.ttl) => granted,
            };
            match granted {
                Ok(lease) => return Some(lease),
                Err(e) => {
                    attempt += 1;
                    let delay = self.backoff.delay(attempt);
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot grant a new lease");
                    tokio::select! {
                        () = stopped(&mut self.shutdown) => return None,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

/// Puts the registry back whenever it is dirty: woken by the keeper (new lease) and by
/// writers whose lease-bound write failed, and retrying with backoff while etcd is away.
async fn restorer(
    store: Store,
    rules: SlotRules,
    registry: Arc<Mutex<Registry>>,
    mut current: watch::Receiver<Option<LeaseId>>,
    wake: Arc<Notify>,
    backoff: Backoff,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut attempt = 0;
    loop {
        let delay = backoff.delay(attempt.max(1));
        tokio::select! {
            () = stopped(&mut shutdown) => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(delay), if attempt > 0 => {}
        }
        let Some(lease) = *current.borrow_and_update() else {
            continue;
        };
        let mut registry = registry.lock().await;
        if !registry.dirty && registry.stale.is_empty() {
            attempt = 0;
            continue;
        }
        match registry.restore(&store, &rules, lease).await {
            Ok(()) => {
                if attempt > 0 {
                    tracing::info!("host, endpoint and slot keys restored in etcd");
                }
                attempt = 0;
            }
            Err(e) => {
                attempt += 1;
                tracing::warn!(error = %e, "cannot restore this host's keys in etcd yet");
            }
        }
    }
}

/// Marks the registry dirty after a failed lease-bound write and wakes the restorer.
pub(crate) fn write_failed(registry: &mut Registry, restore: &Notify) {
    registry.dirty = true;
    restore.notify_one();
}
