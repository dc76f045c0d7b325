use async_trait::async_trait;

use super::BoxError;
use crate::reconcile::JournalEntry;
use crate::service::ServiceName;

/// Why the journal could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("journal {operation} for service {service} failed")]
pub struct JournalError {
    /// `load` or `save`.
    pub operation: &'static str,
    /// The service concerned.
    pub service: String,
    /// What went wrong underneath.
    #[source]
    pub source: BoxError,
}

impl JournalError {
    /// A journal that cannot be read or written now may be later.
    pub fn kind(&self) -> super::FailureKind {
        super::FailureKind::Transient
    }
}

/// The small durable store for what Docker cannot hold: which generation is live and the next
/// generation number.
///
/// Contract: `save` returns only once the entry is durable (survives a crash of the process
/// and, for file-backed journals, of the machine); the engine writes before each irreversible
/// step and relies on that. `load` returns the last saved entry.
#[async_trait]
pub trait Journal: Send + Sync {
    /// The last entry saved for `service`.
    async fn load(&self, service: &ServiceName) -> Result<Option<JournalEntry>, JournalError>;

    /// Durably replaces the entry for `service`.
    async fn save(&self, service: &ServiceName, entry: &JournalEntry) -> Result<(), JournalError>;
}
