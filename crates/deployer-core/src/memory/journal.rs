use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use crate::ports::{Journal, JournalError};
use crate::reconcile::JournalEntry;
use crate::service::ServiceName;

/// A journal that lives as long as the process: for tests and for embedders that do not need
/// crash recovery. Production daemons use a durable one (`deployer-docker`'s file journal).
#[derive(Debug, Default)]
pub struct MemoryJournal {
    entries: Mutex<HashMap<ServiceName, JournalEntry>>,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn load(&self, service: &ServiceName) -> Result<Option<JournalEntry>, JournalError> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(entries.get(service).cloned())
    }

    async fn save(&self, service: &ServiceName, entry: &JournalEntry) -> Result<(), JournalError> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.insert(service.clone(), entry.clone());
        Ok(())
    }
}
