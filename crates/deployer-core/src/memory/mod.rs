//! In-memory implementations: the embedded default for a single host, and the reference
//! semantics the etcd coordinator follows.

mod coordinator;
mod journal;

pub use coordinator::MemoryCoordinator;
pub use journal::MemoryJournal;
