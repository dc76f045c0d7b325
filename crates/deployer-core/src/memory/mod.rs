//! The single-host coordinator and journal: the reference semantics the etcd coordinator
//! follows. In memory for tests and embedders; given a [`LocalStore`] (the daemon uses the
//! redb file beside its journal), the coordinator keeps targets, halts, rollback points,
//! statuses and history across restarts.

mod coordinator;
mod journal;
mod store;

pub use coordinator::MemoryCoordinator;
pub use journal::MemoryJournal;
pub use store::{LocalStore, Stored};
