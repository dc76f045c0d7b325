//! A notifier that appends each deploy report to a file as one JSON line (JSON Lines), for
//! log shippers, `jq`, or an audit trail kept next to the host.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deployer_core::DeployReport;
use deployer_core::ports::{Notifier, NotifyError};

/// Appends every [`DeployReport`] to a file, one JSON object per line: a `started` line
/// when a rollout begins, then one with how it ended (filter with `jq 'select(.outcome !=
/// "started")'` for outcomes only).
///
/// Bounded, as the [`Notifier`] contract asks: the engine already keeps a slow notifier off
/// the deploy path, but its queue is bounded, so a notifier stuck on a hung disk or a dead
/// network mount would make the engine drop reports. Each write therefore gets a timeout,
/// and while a timed-out write is still blocked (a blocking system call cannot be
/// cancelled), the next reports fail at once instead of piling up blocked threads.
#[derive(Debug, Clone)]
pub struct JsonlNotifier {
    path: PathBuf,
    timeout: Duration,
    /// Set while a write runs on the blocking pool, until that write returns, even after
    /// its timeout: at most one thread is ever stuck on the file.
    writing: Arc<AtomicBool>,
}

impl JsonlNotifier {
    /// Appends to `path` (created if missing), each write bounded by 2 s.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            timeout: Duration::from_secs(2),
            writing: Arc::default(),
        }
    }

    /// Bounds each write by `timeout` instead.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The line written for `report`, newline included.
    ///
    /// The report's `callback_url` is left out: Docker Hub's callback URL is a capability
    /// (whoever holds it can post a build result), and the notifier contract keeps such
    /// URLs out of files and logs.
    pub fn render(report: &DeployReport) -> String {
        let mut value = serde_json::to_value(report).unwrap_or_else(
            |e| serde_json::json!({ "service": report.service.as_str(), "error": e.to_string() }),
        );
        if let Some(object) = value.as_object_mut() {
            object.remove("callback_url");
        }
        let mut line = value.to_string();
        line.push('\n');
        line
    }

    fn undelivered(&self, why: impl Into<deployer_core::ports::BoxError>) -> NotifyError {
        NotifyError::Undelivered {
            notifier: self.name().to_owned(),
            source: format!("{}: {}", self.path.display(), why.into()).into(),
        }
    }
}

/// Clears the "writing" flag when the blocking write ends, however it ends.
struct Writing(Arc<AtomicBool>);

impl Drop for Writing {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[async_trait]
impl Notifier for JsonlNotifier {
    fn name(&self) -> &str {
        "jsonl"
    }

    async fn notify(&self, report: &DeployReport) -> Result<(), NotifyError> {
        if self.writing.swap(true, Ordering::AcqRel) {
            return Err(self.undelivered("an earlier write is still blocked"));
        }
        let writing = Writing(self.writing.clone());
        let (path, line) = (self.path.clone(), Self::render(report));
        let write = tokio::task::spawn_blocking(move || {
            let _writing = writing;
            // Opened for each report, so a rotated file (renamed away by logrotate) is
            // followed by a new one without a restart. One buffer per line, appended with
            // O_APPEND: lines of concurrent writers never interleave.
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?
                .write_all(line.as_bytes())
        });
        match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(self.undelivered(e)),
            Ok(Err(panicked)) => Err(self.undelivered(panicked)),
            Err(_) => Err(self.undelivered(format!(
                "the write did not finish within {:?}",
                self.timeout
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use deployer_core::testing::digest;
    use deployer_core::{Outcome, Timestamp};

    use super::*;

    fn report(n: u8, outcome: Outcome) -> DeployReport {
        DeployReport {
            service: deployer_core::ServiceName::new("web").unwrap(),
            node: "host-a".into(),
            image: "registry.example/shop/web:latest".parse().unwrap(),
            outcome,
            from: Some(digest(n - 1)),
            to: Some(digest(n)),
            generation: None,
            revision: None,
            source: None,
            delivery_id: None,
            callback_url: Some("https://registry.hub.docker.com/u/shop/web/hook/secret/".into()),
            reason: None,
            rollback_error: None,
            cut: 0,
            warnings: Vec::new(),
            started_at: Timestamp::from_millis(1_000),
            finished_at: Timestamp::from_millis(2_000),
            duration_ms: 1_000,
        }
    }

    #[tokio::test]
    async fn appends_one_parseable_line_per_report_without_the_callback_url() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports.jsonl");
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let notifier = JsonlNotifier::new(&path);
        notifier
            .notify(&report(2, Outcome::Succeeded))
            .await
            .unwrap();
        notifier
            .notify(&report(3, Outcome::RolledBack))
            .await
            .unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "{\"earlier\":true}", "appends, never truncates");
        assert!(!text.contains("hook/secret"), "{text}");
        let second: DeployReport = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(second.outcome, Outcome::RolledBack);
        assert_eq!(second.to, Some(digest(3)));
        assert_eq!(second.callback_url, None);
    }

    #[tokio::test]
    async fn a_stuck_file_costs_one_timeout_then_fails_fast() {
        let dir = tempfile::tempdir().unwrap();
        // A FIFO without a reader: opening it for writing blocks, like a hung mount.
        let fifo = dir.path().join("stuck");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "mkfifo (coreutils) is needed"
        );
        let notifier = JsonlNotifier::new(&fifo).with_timeout(Duration::from_millis(200));

        let started = std::time::Instant::now();
        let err = notifier.notify(&report(2, Outcome::Succeeded)).await;
        let err = deployer_core::driver::error_chain(&err.unwrap_err());
        assert!(err.contains("did not finish within 200ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let err = notifier.notify(&report(3, Outcome::Succeeded)).await;
        let err = deployer_core::driver::error_chain(&err.unwrap_err());
        assert!(err.contains("still blocked"), "{err}");

        // A reader unblocks the first write, which then finishes and frees the notifier
        // (the test runtime would otherwise wait for the blocked thread forever).
        let read = tokio::task::spawn_blocking(move || {
            let mut text = String::new();
            std::fs::File::open(&fifo)?.read_to_string(&mut text)?;
            std::io::Result::Ok(text)
        });
        let text = tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("the blocked write reaches the reader")
            .unwrap()
            .unwrap();
        let first: DeployReport = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(first.to, Some(digest(2)));
        tokio::time::timeout(Duration::from_secs(5), async {
            while notifier.writing.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the finished write clears the flag");
    }
}
