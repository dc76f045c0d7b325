//! Publishing and halting targets: compare-and-swap loops around the shared rule
//! [`deployer_core::target::decide`], so etcd and the in-memory coordinator agree exactly.

use deployer_core::ports::CoordinatorError;
use deployer_core::target::{Decision, Halt, PublishOutcome, PublishRequest, apply_halt, decide};
use deployer_core::{Digest, ImageRef, Revision, Target, Timestamp};
use etcd_client::{Compare, CompareOp, KeyValue, Txn, TxnOp};

use crate::codec::{decode_target, encode, revision};
use crate::coordinator::Shared;
use crate::store::{Store, header_revision, unavailable};

/// Compare-and-swap rounds before giving up. Each lost round means another writer won, so
/// this only runs out under a flood of publishes to one repo:tag.
const MAX_ROUNDS: usize = 64;

/// A compare-and-swap that kept losing.
#[derive(Debug, thiserror::Error)]
#[error("{0} concurrent writers kept changing the target; gave up")]
struct Contention(usize);

/// The current value of one target key, read linearizably (a compare-and-swap must start
/// from the truth, whatever the configured read consistency).
async fn current(
    store: &Store,
    operation: &'static str,
    key: &str,
) -> Result<Option<KeyValue>, CoordinatorError> {
    let mut response = store.get(operation, key, None).await?;
    Ok(response.take_kvs().pop())
}

/// Writes `target` at `key` if the key still is as `read` found it; the etcd revision of the
/// write on success.
async fn swap(
    store: &Store,
    operation: &'static str,
    key: &str,
    read: Option<&KeyValue>,
    target: &Target,
) -> Result<Option<Revision>, CoordinatorError> {
    let unchanged = match read {
        Some(kv) => Compare::mod_revision(key, CompareOp::Equal, kv.mod_revision()),
        None => Compare::create_revision(key, CompareOp::Equal, 0),
    };
    // The stored revision is meaningless (it is not known before the write); readers take
    // the key's mod_revision instead.
    let stored = Target {
        revision: Revision::default(),
        ..target.clone()
    };
    let txn = Txn::new()
        .when([unchanged])
        .and_then([TxnOp::put(key, encode(key, &stored)?, None)]);
    let response = store.txn(operation, txn).await?;
    // A transaction with one put commits at exactly one revision: the header's.
    Ok(response
        .succeeded()
        .then(|| revision(header_revision(response.header()))))
}

/// Publishes `request` if [`decide`] says so.
pub(crate) async fn publish(
    shared: &Shared,
    request: &PublishRequest,
) -> Result<PublishOutcome, CoordinatorError> {
    let key = shared.keys.target(&request.image);
    for _ in 0..MAX_ROUNDS {
        let read = current(&shared.store, "publish target", &key).await?;
        let current = match read.as_ref().map(decode_target).transpose() {
            Ok(current) => current,
            // A value nobody can read cannot be protected from regression; only an
            // operator's explicit deploy may replace it.
            Err(e) if request.force => {
                tracing::warn!(error = %e, "replacing an undecodable target by a forced publish");
                None
            }
            Err(e) => return Err(e),
        };
        match decide(current.as_ref(), request, Timestamp::now()) {
            Decision::Keep(outcome) => {
                tracing::debug!(image = %request.image, outcome = outcome.label(), "publish kept the target");
                return Ok(outcome);
            }
            Decision::Write(mut target) => {
                if let Some(at) = swap(
                    &shared.store,
                    "publish target",
                    &key,
                    read.as_ref(),
                    &target,
                )
                .await?
                {
                    target.revision = at;
                    tracing::info!(
                        image = %target.image,
                        digest = %target.digest,
                        revision = at.0,
                        source = %target.source,
                        "target published"
                    );
                    return Ok(PublishOutcome::Published { target });
                }
                tracing::debug!(image = %request.image, "target changed under the publish; deciding again");
            }
        }
    }
    Err(unavailable("publish target", Contention(MAX_ROUNDS)))
}

/// The current target of `image`.
pub(crate) async fn read(
    shared: &Shared,
    image: &ImageRef,
) -> Result<Option<Target>, CoordinatorError> {
    let key = shared.keys.target(image);
    let mut response = shared
        .store
        .get("read target", &key, shared.store.read_key())
        .await?;
    response
        .take_kvs()
        .pop()
        .as_ref()
        .map(decode_target)
        .transpose()
}

/// Marks `digest` of `image` failed, if the target still has that digest and is not halted.
pub(crate) async fn halt(
    shared: &Shared,
    image: &ImageRef,
    digest: &Digest,
    halt: Halt,
) -> Result<(), CoordinatorError> {
    let key = shared.keys.target(image);
    for _ in 0..MAX_ROUNDS {
        let read = current(&shared.store, "halt target", &key).await?;
        let Some(current) = read.as_ref().map(decode_target).transpose()? else {
            return Ok(());
        };
        // Superseded, or this service already halted: a halt only applies to the build it names.
        let Some(halted) = apply_halt(&current, digest, halt.clone()) else {
            return Ok(());
        };
        if let Some(at) = swap(&shared.store, "halt target", &key, read.as_ref(), &halted).await? {
            tracing::warn!(
                image = %image,
                digest = %digest,
                service = %halt.service,
                node = %halt.node,
                reason = %halt.reason,
                revision = at.0,
                "rollout halted fleet-wide"
            );
            return Ok(());
        }
    }
    Err(unavailable("halt target", Contention(MAX_ROUNDS)))
}
