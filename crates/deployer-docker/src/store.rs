//! [`RedbStore`]: the single-host coordinator's durable state, in the same redb file as the
//! journal (one file to back up, one lock, one process).
//!
//! Tables, each of JSON values (tolerant of added fields, readable with any redb tool):
//! - `targets`: repo:tag -> the target, with its halts, rollback points and the sender event
//!   ids it has taken;
//! - `statuses`: `service\0node` -> the service's last status;
//! - `history`: a sequence number -> a report; only the newest are kept.
//!
//! Targets and reports are committed with `Durability::Immediate` (fsync before the write
//! returns); statuses with `Durability::None`, made durable by the next immediate commit, since
//! a lost status is rewritten at the service's next change. redb's copy-on-write commits mean a
//! crash (SIGKILL included) at any moment leaves the file readable with every committed write.

use std::sync::Arc;

use deployer_core::memory::{LocalStore, Stored};
use deployer_core::ports::BoxError;
use deployer_core::{DeployReport, ServiceName, ServiceStatus, Target};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

const TARGETS: TableDefinition<&str, &[u8]> = TableDefinition::new("targets");
const STATUSES: TableDefinition<&str, &[u8]> = TableDefinition::new("statuses");
const HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("history");

/// The coordinator's store, sharing the journal's database. Made by
/// [`crate::RedbJournal::store`].
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

impl RedbStore {
    pub(crate) fn new(db: Arc<Database>) -> Self {
        Self { db }
    }

    fn write(
        &self,
        durability: Durability,
        body: impl FnOnce(&redb::WriteTransaction) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        let mut write = self.db.begin_write()?;
        write.set_durability(durability)?;
        body(&write)?;
        write.commit()?;
        Ok(())
    }
}

/// Every value of a table, decoded; a table that was never written is empty.
fn read_all<K: redb::Key + 'static, T: serde::de::DeserializeOwned>(
    read: &redb::ReadTransaction,
    table: TableDefinition<K, &[u8]>,
) -> Result<Vec<T>, BoxError> {
    let table = match read.open_table(table) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for row in table.iter()? {
        let (_, value) = row?;
        out.push(serde_json::from_slice(value.value())?);
    }
    Ok(out)
}

impl LocalStore for RedbStore {
    fn load(&self) -> Result<Stored, BoxError> {
        let read = self.db.begin_read()?;
        let mut history: Vec<DeployReport> = read_all(&read, HISTORY)?;
        history.reverse();
        Ok(Stored {
            targets: read_all(&read, TARGETS)?,
            statuses: read_all(&read, STATUSES)?,
            history,
        })
    }

    fn save_target(&self, target: &Target) -> Result<(), BoxError> {
        let bytes = serde_json::to_vec(target)?;
        let key = target.image.to_string();
        self.write(Durability::Immediate, |write| {
            write
                .open_table(TARGETS)?
                .insert(key.as_str(), bytes.as_slice())?;
            Ok(())
        })
    }

    fn save_status(&self, status: &ServiceStatus) -> Result<(), BoxError> {
        let bytes = serde_json::to_vec(status)?;
        let key = format!("{}\0{}", status.service, status.node);
        self.write(Durability::None, |write| {
            write
                .open_table(STATUSES)?
                .insert(key.as_str(), bytes.as_slice())?;
            Ok(())
        })
    }

    fn forget_status(&self, node: &str, service: &ServiceName) -> Result<(), BoxError> {
        let key = format!("{service}\0{node}");
        self.write(Durability::None, |write| {
            write.open_table(STATUSES)?.remove(key.as_str())?;
            Ok(())
        })
    }

    fn save_report(&self, report: &DeployReport, kept: usize) -> Result<(), BoxError> {
        let bytes = serde_json::to_vec(report)?;
        self.write(Durability::Immediate, |write| {
            let mut table = write.open_table(HISTORY)?;
            let next = table.last()?.map_or(0, |(k, _)| k.value() + 1);
            table.insert(next, bytes.as_slice())?;
            let excess = table.len()?.saturating_sub(kept as u64);
            if excess > 0 {
                let oldest: Vec<u64> = table
                    .iter()?
                    .take(usize::try_from(excess).unwrap_or(usize::MAX))
                    .map(|row| row.map(|(k, _)| k.value()))
                    .collect::<Result<_, _>>()?;
                for key in oldest {
                    table.remove(key)?;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use deployer_core::memory::MemoryCoordinator;
    use deployer_core::ports::Coordinator;
    use deployer_core::target::{Halt, PublishRequest, Source};
    use deployer_core::testing::digest;
    use deployer_core::{ImageRef, Outcome, ServiceName, Timestamp};

    use super::*;
    use crate::RedbJournal;

    fn image() -> ImageRef {
        "demo/app:latest".parse().unwrap()
    }

    fn report(n: u64) -> DeployReport {
        DeployReport {
            service: ServiceName::new("web").unwrap(),
            node: "a".into(),
            image: image(),
            outcome: Outcome::Succeeded,
            from: None,
            to: Some(digest(1)),
            generation: Some(deployer_core::reconcile::Generation(n)),
            revision: None,
            source: Some(Source::new("registry")),
            delivery_id: None,
            callback_url: None,
            reason: None,
            rollback_error: None,
            cut: 0,
            warnings: Vec::new(),
            started_at: Timestamp::from_millis(0),
            finished_at: Timestamp::from_millis(1),
            duration_ms: 1,
        }
    }

    fn open(path: &std::path::Path) -> MemoryCoordinator {
        let journal = RedbJournal::open(path).unwrap();
        MemoryCoordinator::new("a")
            .with_history(3)
            .with_store(Arc::new(journal.store()))
            .unwrap()
    }

    #[tokio::test]
    async fn targets_halts_and_bounded_history_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.redb");
        let web = ServiceName::new("web").unwrap();
        {
            let c = open(&path);
            let mut first = PublishRequest::new(image(), digest(1), Source::new("registry"));
            first.delivery_id = Some("e1".into());
            c.publish(first).await.unwrap();
            c.publish(PublishRequest::new(
                image(),
                digest(2),
                Source::new("registry"),
            ))
            .await
            .unwrap();
            let halt = Halt {
                service: web.clone(),
                node: "a".into(),
                reason: "unhealthy".into(),
                at: Timestamp::from_millis(0),
            };
            c.halt(&image(), &digest(2), halt).await.unwrap();
            for n in 1..=5 {
                c.record(&report(n)).await.unwrap();
            }
        }
        let c = open(&path);
        let target = c
            .target(&image())
            .await
            .unwrap()
            .expect("the target survives");
        assert_eq!(target.digest, digest(2));
        assert_eq!(
            target.previous,
            vec![digest(1)],
            "the rollback point survives"
        );
        assert!(target.halt_for(&web).is_some(), "the halt survives");
        let mut replay = PublishRequest::new(image(), digest(1), Source::new("registry"));
        replay.delivery_id = Some("e1".into());
        assert_eq!(
            c.publish(replay).await.unwrap().label(),
            "stale",
            "the event memory survives"
        );
        let history = c.history(None, 10).await.unwrap();
        let generations: Vec<u64> = history
            .iter()
            .filter_map(|r| r.generation)
            .map(|g| g.0)
            .collect();
        assert_eq!(generations, vec![5, 4, 3], "newest first, bounded");
        let next = c
            .publish(PublishRequest::new(image(), digest(3), Source::new("poll")))
            .await
            .unwrap();
        assert!(
            next.target().revision > target.revision,
            "revisions keep increasing"
        );
    }

    #[tokio::test]
    async fn a_forgotten_status_stays_forgotten_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.redb");
        let status = |service: &str| ServiceStatus {
            service: ServiceName::new(service).unwrap(),
            node: "a".into(),
            image: image(),
            state: deployer_core::ServiceState::Idle,
            live: Some(digest(1)),
            generation: None,
            target: None,
            endpoint: None,
            message: None,
            updated_at: Timestamp::from_millis(0),
        };
        {
            let c = open(&path);
            c.report_status(&status("web")).await.unwrap();
            c.report_status(&status("adopted")).await.unwrap();
            c.forget_status("a", &ServiceName::new("adopted").unwrap())
                .await
                .unwrap();
        }
        let names: Vec<String> = open(&path)
            .statuses()
            .await
            .unwrap()
            .iter()
            .map(|s| s.service.to_string())
            .collect();
        assert_eq!(names, ["web"]);
    }
}
