//! JSON values stored in etcd, and decoding that turns bad data into
//! [`CoordinatorError::Corrupt`] instead of a panic.

use deployer_core::ports::CoordinatorError;
use deployer_core::reconcile::Generation;
use deployer_core::{Digest, ImageRef, Revision, ServiceName, Target, Timestamp};
use etcd_client::KeyValue;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Value of `hosts/<node>`: a live host. The key exists while the host's lease does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host's node name.
    pub node: String,
    /// When this coordinator connected.
    pub started_at: Timestamp,
    /// The deployer-etcd version the host runs.
    pub version: String,
}

/// Value of `endpoints/<service>/<node>`: where a host serves a service right now.
///
/// Written when the host reports a live build with an address, deleted when it reports none,
/// and deleted by etcd when the host's lease expires: a proxy that routes to every key under
/// `endpoints/<service>/` only ever sees live instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// `host:port` clients connect to (the deployer proxy's listen address).
    pub address: String,
    /// The build that serves there.
    pub digest: Digest,
    /// The generation that serves there.
    pub generation: Option<Generation>,
    /// When the host last reported it.
    pub updated_at: Timestamp,
}

/// One entry of `endpoints/`: which host serves which service where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEndpoint {
    /// The service (from the key).
    pub service: ServiceName,
    /// The host (from the key).
    pub node: String,
    /// The value.
    pub record: EndpointRecord,
}

/// Value of `rollout/<service>/<node>`: a host switching a service now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRecord {
    /// The host holding the slot.
    pub node: String,
    /// The repo:tag being rolled out.
    pub image: ImageRef,
    /// The build being rolled out.
    pub digest: Digest,
    /// When the slot was taken.
    pub acquired_at: Timestamp,
}

/// JSON bytes of `value`.
pub(crate) fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, CoordinatorError> {
    serde_json::to_vec(value).map_err(|e| CoordinatorError::Corrupt {
        key: key.to_owned(),
        problem: format!("cannot encode: {e}"),
    })
}

/// Decodes a JSON value, naming the key when it is not what it should be.
pub(crate) fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, CoordinatorError> {
    serde_json::from_slice(kv.value()).map_err(|e| CoordinatorError::Corrupt {
        key: key_text(kv),
        problem: e.to_string(),
    })
}

/// Decodes a target; its revision is the etcd revision that last wrote it, whatever the
/// stored JSON says (the value is written before its revision is known).
pub(crate) fn decode_target(kv: &KeyValue) -> Result<Target, CoordinatorError> {
    let mut target: Target = decode(kv)?;
    target.revision = revision(kv.mod_revision());
    Ok(target)
}

/// An etcd revision (never negative in practice) as a coordinator revision.
pub(crate) fn revision(rev: i64) -> Revision {
    Revision(u64::try_from(rev).unwrap_or(0))
}

/// A coordinator revision as an etcd revision.
pub(crate) fn etcd_revision(rev: Revision) -> i64 {
    i64::try_from(rev.0).unwrap_or(i64::MAX)
}

/// The key as text for messages, whatever bytes it holds.
pub(crate) fn key_text(kv: &KeyValue) -> String {
    String::from_utf8_lossy(kv.key()).into_owned()
}

/// Decodes every value of a list read, skipping (and logging) the ones that do not decode:
/// one bad record must not hide the rest of the fleet.
pub(crate) fn decode_all<T, F>(kvs: &[KeyValue], decode_one: F) -> Vec<T>
where
    F: Fn(&KeyValue) -> Result<T, CoordinatorError>,
{
    kvs.iter()
        .filter_map(|kv| match decode_one(kv) {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::error!(error = %e, "skipping a record that does not decode");
                None
            }
        })
        .collect()
}
