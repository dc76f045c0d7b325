//! [`RedbJournal`]: the core's `Journal` in a redb file, for what Docker cannot hold (which
//! generation is live, the next generation number, the rollout under way).
//!
//! One table, `journal`, maps the service name to its [`JournalEntry`] as JSON (readable with
//! any redb tool, and tolerant of added fields). Every `save` is its own write transaction
//! committed with `Durability::Immediate`: it has reached the disk (fsync) when `save`
//! returns, so the engine can rely on it before an irreversible step. redb's copy-on-write
//! commit means a crash mid-write leaves the previous entry intact.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use deployer_core::ServiceName;
use deployer_core::ports::{Journal, JournalError};
use deployer_core::reconcile::JournalEntry;
use redb::{Database, Durability, ReadableDatabase, TableDefinition};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("journal");

/// The default journal path of the daemon.
pub const DEFAULT_JOURNAL_PATH: &str = "/var/lib/deployer/journal.redb";

/// A durable journal in one redb file. Cheap to clone. The file is locked while open: one
/// process per journal.
#[derive(Clone)]
pub struct RedbJournal {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for RedbJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbJournal")
            .field("path", &self.path)
            .finish()
    }
}

/// Why the journal file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the journal at {path}")]
pub struct OpenJournalError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong underneath.
    #[source]
    pub source: redb::Error,
}

impl RedbJournal {
    /// Opens the journal at `path`, creating it (and its directory) if needed. A file left
    /// by a crashed process is repaired on open.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenJournalError> {
        let path = path.as_ref().to_path_buf();
        let error = |source: redb::Error| OpenJournalError {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| error(e.into()))?;
        }
        let db = Database::create(&path).map_err(|e| error(e.into()))?;
        Ok(Self {
            db: Arc::new(db),
            path,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The single-host coordinator's durable store, in the same file.
    pub fn store(&self) -> crate::RedbStore {
        crate::RedbStore::new(self.db.clone())
    }

    /// Every journaled service and its entry (for status output and tests).
    pub fn entries(&self) -> Result<Vec<(String, JournalEntry)>, redb::Error> {
        let read = self.db.begin_read()?;
        let table = match read.open_table(TABLE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for row in redb::ReadableTable::iter(&table)? {
            let (key, value) = row?;
            if let Ok(entry) = serde_json::from_slice(value.value()) {
                out.push((key.value().to_owned(), entry));
            }
        }
        Ok(out)
    }

    fn load_blocking(&self, service: &str) -> Result<Option<JournalEntry>, BoxError> {
        let read = self.db.begin_read()?;
        let table = match read.open_table(TABLE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match table.get(service)? {
            Some(value) => Ok(Some(serde_json::from_slice(value.value())?)),
            None => Ok(None),
        }
    }

    fn save_blocking(&self, service: &str, entry: &JournalEntry) -> Result<(), BoxError> {
        let bytes = serde_json::to_vec(entry)?;
        let mut write = self.db.begin_write()?;
        // The default, but the contract depends on it: fsync before commit returns.
        write.set_durability(Durability::Immediate)?;
        {
            let mut table = write.open_table(TABLE)?;
            table.insert(service, bytes.as_slice())?;
        }
        write.commit()?;
        Ok(())
    }
}

type BoxError = deployer_core::ports::BoxError;

fn journal_error(operation: &'static str, service: &ServiceName, source: BoxError) -> JournalError {
    JournalError {
        operation,
        service: service.to_string(),
        source,
    }
}

#[async_trait]
impl Journal for RedbJournal {
    async fn load(&self, service: &ServiceName) -> Result<Option<JournalEntry>, JournalError> {
        let this = self.clone();
        let name = service.to_string();
        // redb does blocking file I/O (and an fsync on save): keep it off the async workers.
        tokio::task::spawn_blocking(move || this.load_blocking(&name))
            .await
            .map_err(|e| journal_error("load", service, Box::new(e)))?
            .map_err(|e| journal_error("load", service, e))
    }

    async fn save(&self, service: &ServiceName, entry: &JournalEntry) -> Result<(), JournalError> {
        let this = self.clone();
        let name = service.to_string();
        let entry = entry.clone();
        tokio::task::spawn_blocking(move || this.save_blocking(&name, &entry))
            .await
            .map_err(|e| journal_error("save", service, Box::new(e)))?
            .map_err(|e| journal_error("save", service, e))?;
        tracing::debug!(service = %service, "journal saved");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use deployer_core::reconcile::{Generation, GenerationRef};

    use super::*;

    #[tokio::test]
    async fn entries_survive_reopening_and_services_are_separate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/journal.redb");
        let web = ServiceName::new("web").unwrap();
        let api = ServiceName::new("api").unwrap();
        let entry = JournalEntry {
            live: Some(GenerationRef {
                id: Generation(3),
                image: "demo/app:v1".parse().unwrap(),
                digest: Some(deployer_core::testing::digest(7)),
            }),
            next_generation: Generation(4),
            rollout: None,
            target: None,
        };
        {
            let journal = RedbJournal::open(&path).unwrap();
            assert_eq!(journal.load(&web).await.unwrap(), None);
            journal.save(&web, &entry).await.unwrap();
            let newer = JournalEntry {
                next_generation: Generation(5),
                ..entry.clone()
            };
            journal.save(&web, &newer).await.unwrap();
        }
        let journal = RedbJournal::open(&path).unwrap();
        let loaded = journal.load(&web).await.unwrap().unwrap();
        assert_eq!(loaded.next_generation, Generation(5));
        assert_eq!(loaded.live, entry.live);
        assert_eq!(journal.load(&api).await.unwrap(), None);
        assert_eq!(journal.entries().unwrap().len(), 1);
    }
}
