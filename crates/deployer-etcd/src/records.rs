//! Statuses, endpoints (service registration), live hosts, and the bounded history.

use std::sync::atomic::Ordering;

use deployer_core::ports::CoordinatorError;
use deployer_core::service::ServiceName;
use deployer_core::{DeployReport, ServiceState, ServiceStatus};
use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp};

use crate::codec::{
    EndpointRecord, HostRecord, LiveEndpoint, decode, decode_all, encode, key_text,
};
use crate::coordinator::Shared;
use crate::lease::write_failed;

/// Tries at a unique history key before giving up (only two reports of one service from
/// one process in the same millisecond, with the same sequence number, could collide).
const HISTORY_KEY_TRIES: u64 = 4;

/// The endpoint a status advertises: only a live build with an address, and never from a
/// host that is stopping.
fn advertised(status: &ServiceStatus) -> Option<EndpointRecord> {
    match (&status.endpoint, &status.live) {
        (Some(address), Some(digest)) if status.state != ServiceState::Stopped => {
            Some(EndpointRecord {
                address: address.clone(),
                digest: digest.clone(),
                generation: status.generation,
                updated_at: status.updated_at,
            })
        }
        _ => None,
    }
}

/// Writes `status/<service>/<node>` and, in the same transaction, puts or deletes
/// `endpoints/<service>/<node>`.
pub(crate) async fn report_status(
    shared: &Shared,
    status: &ServiceStatus,
) -> Result<(), CoordinatorError> {
    let node = shared.node();
    if status.node != node {
        tracing::debug!(reported = %status.node, node, "status names another node; keyed by ours");
    }
    let status_key = shared.keys.status(&status.service, node);
    let endpoint_key = shared.keys.endpoint(&status.service, node);
    let mut ops = vec![TxnOp::put(
        status_key.as_str(),
        encode(&status_key, status)?,
        None,
    )];
    let mut registry = shared.registry.lock().await;
    let endpoint = match advertised(status) {
        Some(record) => {
            let value = encode(&endpoint_key, &record)?;
            registry.stale.remove(&endpoint_key);
            registry
                .endpoints
                .insert(endpoint_key.clone(), value.clone());
            match *shared.lease.borrow() {
                Some(lease) => ops.push(TxnOp::put(
                    endpoint_key.as_str(),
                    value,
                    Some(PutOptions::new().with_lease(lease)),
                )),
                // The restorer puts it once a new lease is granted.
                None => registry.dirty = true,
            }
            true
        }
        None => {
            registry.endpoints.remove(&endpoint_key);
            ops.push(TxnOp::delete(endpoint_key.as_str(), None));
            false
        }
    };
    match shared
        .store
        .txn("report status", Txn::new().and_then(ops))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            if !endpoint {
                registry.stale.insert(endpoint_key);
            }
            write_failed(&mut registry, &shared.restore);
            Err(e)
        }
    }
}

/// Deletes `status/<service>/<node>` and `endpoints/<service>/<node>` in one transaction, so
/// the service stops being advertised by this host the moment it stops being shown.
pub(crate) async fn forget_status(
    shared: &Shared,
    node: &str,
    service: &ServiceName,
) -> Result<(), CoordinatorError> {
    let status_key = shared.keys.status(service, node);
    let endpoint_key = shared.keys.endpoint(service, node);
    let mut registry = shared.registry.lock().await;
    registry.endpoints.remove(&endpoint_key);
    let ops = vec![
        TxnOp::delete(status_key.as_str(), None),
        TxnOp::delete(endpoint_key.as_str(), None),
    ];
    match shared
        .store
        .txn("forget status", Txn::new().and_then(ops))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            registry.stale.insert(endpoint_key);
            write_failed(&mut registry, &shared.restore);
            Err(e)
        }
    }
}

/// Every service's status on every host that ever reported one.
pub(crate) async fn statuses(shared: &Shared) -> Result<Vec<ServiceStatus>, CoordinatorError> {
    let response = shared
        .store
        .list("read statuses", &shared.keys.statuses())
        .await?;
    Ok(decode_all(response.kvs(), decode))
}

/// Hosts whose lease is alive.
pub(crate) async fn hosts(shared: &Shared) -> Result<Vec<HostRecord>, CoordinatorError> {
    let response = shared
        .store
        .list("read hosts", &shared.keys.hosts())
        .await?;
    Ok(decode_all(response.kvs(), decode))
}

/// Live endpoints of one service, or of all.
pub(crate) async fn endpoints(
    shared: &Shared,
    service: Option<&ServiceName>,
) -> Result<Vec<LiveEndpoint>, CoordinatorError> {
    let all = shared.keys.endpoints();
    let prefix = service.map_or_else(|| all.clone(), |s| shared.keys.service_endpoints(s));
    let response = shared.store.list("read endpoints", &prefix).await?;
    Ok(decode_all(response.kvs(), |kv| {
        let key = key_text(kv);
        let corrupt = |problem: &str| CoordinatorError::Corrupt {
            key: key.clone(),
            problem: problem.to_owned(),
        };
        let rest = key
            .strip_prefix(&all)
            .ok_or_else(|| corrupt("outside the endpoints prefix"))?;
        let (service, node) = rest
            .split_once('/')
            .ok_or_else(|| corrupt("not <service>/<node>"))?;
        let service = ServiceName::new(service).map_err(|e| corrupt(&e.to_string()))?;
        Ok(LiveEndpoint {
            service,
            node: node.to_owned(),
            record: decode(kv)?,
        })
    }))
}

/// Appends a report under a unique key, then trims the service's history to `history_kept`.
pub(crate) async fn record(shared: &Shared, report: &DeployReport) -> Result<(), CoordinatorError> {
    let mut written = false;
    for _ in 0..HISTORY_KEY_TRIES {
        let seq = shared.history_seq.fetch_add(1, Ordering::Relaxed);
        let key =
            shared
                .keys
                .history_entry(&report.service, report.finished_at, shared.node(), seq);
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), encode(&key, report)?, None)]);
        if shared.store.txn("record report", txn).await?.succeeded() {
            written = true;
            break;
        }
    }
    if !written {
        return Err(CoordinatorError::Corrupt {
            key: shared.keys.service_history(&report.service),
            problem: "no free history key after several tries".to_owned(),
        });
    }
    trim(shared, &report.service).await
}

/// Deletes the oldest reports of `service` beyond `history_kept`. Two hosts trimming at
/// once may pick the same keys; deleting a key twice is harmless.
async fn trim(shared: &Shared, service: &ServiceName) -> Result<(), CoordinatorError> {
    let prefix = shared.keys.service_history(service);
    let kept = shared.config.history_kept;
    let counted = shared
        .store
        .get(
            "count history",
            &prefix,
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await?;
    let excess = usize::try_from(counted.count())
        .unwrap_or(0)
        .saturating_sub(kept);
    if excess == 0 {
        return Ok(());
    }
    let oldest = shared
        .store
        .get(
            "find oldest history",
            &prefix,
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_keys_only()
                    .with_sort(SortTarget::Create, SortOrder::Ascend)
                    .with_limit(i64::try_from(excess).unwrap_or(i64::MAX)),
            ),
        )
        .await?;
    let deletes: Vec<TxnOp> = oldest
        .kvs()
        .iter()
        .map(|kv| TxnOp::delete(kv.key(), None))
        .collect();
    shared
        .store
        .txn("trim history", Txn::new().and_then(deletes))
        .await?;
    Ok(())
}

/// The newest `limit` reports, of one service or of all, newest first (by the etcd revision
/// that created them, which no clock skew between hosts disturbs).
pub(crate) async fn history(
    shared: &Shared,
    service: Option<&ServiceName>,
    limit: usize,
) -> Result<Vec<DeployReport>, CoordinatorError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let prefix = service.map_or_else(|| shared.keys.history(), |s| shared.keys.service_history(s));
    let options = shared
        .store
        .read_prefix()
        .with_sort(SortTarget::Create, SortOrder::Descend)
        .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
    let response = shared
        .store
        .get("read history", &prefix, Some(options))
        .await?;
    Ok(decode_all(response.kvs(), decode::<DeployReport>))
}
