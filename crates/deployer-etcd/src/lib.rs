//! # deployer-etcd
//!
//! Fleet coordination for deployer over etcd v3: every host watches the same targets, takes
//! turns switching a service (at most K at a time), halts a build everywhere when it fails
//! somewhere, publishes where it serves each service, and shares a bounded history.
//!
//! The entry point is [`EtcdCoordinator::connect`], which takes an [`EtcdConfig`] and returns
//! a [`deployer_core::ports::Coordinator`] to hand to the driver. Call
//! [`EtcdCoordinator::close`] at shutdown to revoke the lease and free this host's rollout
//! slots and endpoints at once.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use deployer_core::ports::Coordinator;
//! use deployer_etcd::{EtcdConfig, EtcdCoordinator};
//!
//! let config = EtcdConfig::new(["http://127.0.0.1:2379"])
//!     .with_prefix("/prod/deployer")
//!     .with_node("web-1");
//! let etcd = Arc::new(EtcdCoordinator::connect(config).await?);
//! let coordinator: Arc<dyn Coordinator> = etcd.clone();
//! // ... run the driver with `coordinator` ...
//! # let _ = coordinator;
//! etcd.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! Key layout under the prefix (see the README for values and examples):
//!
//! | key | value | lifetime |
//! |---|---|---|
//! | `targets/<registry/repo:tag>` | [`deployer_core::Target`] | permanent |
//! | `hosts/<node>` | [`HostRecord`] | this host's lease |
//! | `status/<service>/<node>` | [`deployer_core::ServiceStatus`] | permanent (last word of a dead host) |
//! | `rollout/<service>/<node>` | [`SlotRecord`] | this host's lease |
//! | `endpoints/<service>/<node>` | [`EndpointRecord`] | this host's lease |
//! | `history/<service>/<ms>-<node>-<seq>` | [`deployer_core::DeployReport`] | newest `history_kept` per service |
//!
//! All values are JSON. Target revisions are etcd revisions (the key's `mod_revision`).
#![warn(missing_docs)]

mod codec;
mod config;
mod coordinator;
mod error;
mod keys;
mod lease;
mod records;
mod slots;
mod store;
mod targets;
mod watch;

pub use codec::{EndpointRecord, HostRecord, LiveEndpoint, SlotRecord};
pub use config::{ConfigError, Consistency, EtcdConfig, TlsFiles};
pub use coordinator::EtcdCoordinator;
pub use error::ConnectError;
pub use keys::Keys;
