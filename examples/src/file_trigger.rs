//! A trigger that follows a file where CI appends one line per pushed build:
//!
//! ```text
//! registry.example/shop/web:latest@sha256:4c1e...   # a build, with its digest
//! registry.example/shop/web:latest                  # "latest moved": resolved at the registry
//! ```
//!
//! Why a file: it is the smallest contract a CI job can meet (`echo ... >> builds.txt` over
//! ssh, a shared volume, a config-management run), it needs no open port, and it survives a
//! deployer restart. Blank lines and `#` comments are skipped; a malformed line is logged
//! and skipped, never fatal.

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use deployer_core::driver::{EventSink, Submission, SubmitError};
use deployer_core::ports::{ImageEvent, Trigger, TriggerError};
use deployer_core::shutdown::Shutdown;
use deployer_core::{Digest, ImageRef, Source};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Parses one line: `Ok(None)` for blanks and comments, else the repo:tag and the digest, if
/// the line pins one (without, the driver resolves the tag at the registry).
///
/// ```
/// use deployer_examples::parse_line;
/// let (image, digest) = parse_line("example.org/web:v2").unwrap().unwrap();
/// assert_eq!(image.to_string(), "example.org/web:v2");
/// assert!(digest.is_none());
/// assert!(parse_line("  # a comment").unwrap().is_none());
/// assert!(parse_line("not a reference!").is_err());
/// ```
pub fn parse_line(line: &str) -> Result<Option<(ImageRef, Option<Digest>)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let image = ImageRef::parse(line).map_err(|e| e.to_string())?;
    // `repo@sha256:...` alone would silently mean `repo:latest`; a service tracks a tag, so
    // the line must say which one moved.
    if image.tag().is_none() {
        return Err(format!(
            "{line:?} names no tag: write repo:tag@sha256:... so the tag that moved is known"
        ));
    }
    Ok(Some((image.without_digest(), image.digest().cloned())))
}

/// A [`Trigger`] that turns lines appended to a file into [`ImageEvent`]s.
///
/// At start, only the newest line per repo:tag already in the file is sent: the engine is
/// level-triggered, so the last build is the desired state and replaying the older ones
/// would only start deploys that are superseded at once. After that every appended line is
/// sent. A truncated or replaced file (log rotation) is read again from its start; a line
/// still being written (no newline yet) waits for its end.
#[derive(Debug, Clone)]
pub struct FileTrigger {
    path: PathBuf,
    every: Duration,
    source: Source,
}

impl FileTrigger {
    /// Follows `path` (which need not exist yet), looking for new lines every 500 ms.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            every: Duration::from_millis(500),
            source: Source::new("file"),
        }
    }

    /// Looks for new lines every `every` instead.
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    fn events(&self, lines: &[String]) -> Vec<ImageEvent> {
        lines
            .iter()
            .filter_map(|line| match parse_line(line) {
                Ok(parsed) => parsed,
                Err(problem) => {
                    tracing::warn!(file = %self.path.display(), "skipping a line: {problem}");
                    None
                }
            })
            .map(|(image, digest)| {
                let event = ImageEvent::new(image, self.source.clone());
                match digest {
                    Some(digest) => event.with_digest(digest),
                    None => event,
                }
            })
            .collect()
    }
}

/// Keeps the last event of each repo:tag, in the order of those last lines.
fn newest_per_image(events: Vec<ImageEvent>) -> Vec<ImageEvent> {
    let mut newest: Vec<ImageEvent> = Vec::new();
    for event in events {
        newest.retain(|e| e.image != event.image);
        newest.push(event);
    }
    newest
}

#[async_trait]
impl Trigger for FileTrigger {
    fn name(&self) -> &str {
        "file"
    }

    async fn run(&self, sink: EventSink, mut shutdown: Shutdown) -> Result<(), TriggerError> {
        let mut follower = Follower::new(self.path.clone());
        let mut first_read = true;
        // Events the sink refused as busy, sent again at the next look: a line in the file
        // is a promise to deploy, and the file will not repeat it.
        let mut pending: Vec<ImageEvent> = Vec::new();
        loop {
            match follower.read_new().await {
                Ok(lines) => {
                    let events = self.events(&lines);
                    pending.extend(if first_read {
                        newest_per_image(events)
                    } else {
                        events
                    });
                    first_read = false;
                }
                // Unreadable for now (permissions, a flaky network mount): try again later
                // rather than stopping the trigger for good.
                Err(e) => tracing::warn!(file = %self.path.display(), "cannot read: {e}"),
            }
            while let Some(event) = pending.first().cloned() {
                match sink.submit(event) {
                    Ok(submission) => {
                        let event = pending.remove(0);
                        if submission == Submission::Ignored {
                            tracing::warn!(image = %event.image, "no service tracks this image");
                        }
                    }
                    // Full: the rest waits for the next look.
                    Err(SubmitError::Busy) => break,
                    // Closed: the driver is stopping.
                    Err(_) => return Ok(()),
                }
            }
            tokio::select! {
                () = shutdown.wait() => return Ok(()),
                () = tokio::time::sleep(self.every) => {}
            }
        }
    }
}

/// Where the trigger is in the file.
#[derive(Debug)]
struct Follower {
    path: PathBuf,
    /// Bytes of the current file already read.
    offset: u64,
    /// The current file's inode: another one means the file was replaced (rotated).
    inode: Option<u64>,
    /// The end of the file after its last newline: a line CI is still writing.
    partial: Vec<u8>,
}

impl Follower {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            offset: 0,
            inode: None,
            partial: Vec::new(),
        }
    }

    /// The complete lines appended since the last call.
    async fn read_new(&mut self) -> std::io::Result<Vec<String>> {
        let mut file = match tokio::fs::File::open(&self.path).await {
            Ok(file) => file,
            // Not created yet, or between a rotation's rename and the new file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let meta = file.metadata().await?;
        if self.inode != Some(meta.ino()) || meta.len() < self.offset {
            if self.inode.is_some() {
                tracing::info!(file = %self.path.display(), "file replaced or truncated; reading it from the start");
            }
            self.inode = Some(meta.ino());
            self.offset = 0;
            self.partial.clear();
        }
        if meta.len() == self.offset {
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(self.offset)).await?;
        let mut appended = Vec::new();
        // Up to the length seen above: what is appended meanwhile is read next time.
        file.take(meta.len() - self.offset)
            .read_to_end(&mut appended)
            .await?;
        self.offset += appended.len() as u64;
        self.partial.extend_from_slice(&appended);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Ok(Vec::new());
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        Ok(String::from_utf8_lossy(&complete)
            .lines()
            .map(str::to_owned)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use deployer_core::testing::digest;
    use tokio::sync::mpsc::Receiver;

    use super::*;

    const APP: &str = "registry.example/shop/web:latest";
    const API: &str = "registry.example/shop/api:stable";

    #[test]
    fn parses_builds_and_rejects_lines_without_a_tag() {
        let d = digest(7);
        let (image, pinned) = parse_line(&format!(" {APP}@{d} \n")).unwrap().unwrap();
        assert_eq!(image.to_string(), APP);
        assert_eq!(pinned, Some(d.clone()));
        assert!(parse_line("").unwrap().is_none());
        assert!(parse_line("# deployed by hand").unwrap().is_none());
        let err = parse_line(&format!("registry.example/shop/web@{d}")).unwrap_err();
        assert!(err.contains("names no tag"), "{err}");
        assert!(parse_line(&format!("{APP}@sha256:abc")).is_err());
    }

    fn append(path: &std::path::Path, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    async fn next(events: &mut Receiver<ImageEvent>, what: &str) -> ImageEvent {
        tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap_or_else(|_| panic!("the trigger never sent {what}"))
            .expect("the sink is open")
    }

    #[tokio::test]
    async fn sends_the_newest_backlog_line_then_each_appended_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("builds.txt");
        let (d1, d2, d3, d4, d5) = (digest(1), digest(2), digest(3), digest(4), digest(5));
        append(
            &path,
            &format!("{APP}@{d1}\nnot a reference!\n{API}\n# note\n{APP}@{d2}\n"),
        );
        let (sink, mut events) = EventSink::new([APP.parse().unwrap(), API.parse().unwrap()], 16);
        let (stop, shutdown) = Shutdown::new();
        let trigger = FileTrigger::new(&path).poll_every(Duration::from_millis(10));
        let running = tokio::spawn(async move { trigger.run(sink, shutdown).await });

        // The backlog: only the newest line per image, in the order of those lines.
        let api = next(&mut events, "the backlog's api line").await;
        assert_eq!((api.image.to_string(), api.digest), (API.to_owned(), None));
        let app = next(&mut events, "the backlog's newest app line").await;
        assert_eq!(app.digest, Some(d2));
        assert_eq!(app.source.as_str(), "file");

        // A line written in two pieces is sent once, whole: had the first piece been read as
        // a line, it would have been skipped as malformed and d3 never sent.
        let line = format!("{APP}@{d3}\n");
        let (head, tail) = line.split_at(40);
        append(&path, head);
        tokio::time::sleep(Duration::from_millis(50)).await;
        append(&path, tail);
        assert_eq!(next(&mut events, "the split line").await.digest, Some(d3));

        append(&path, &format!("{APP}@{d4}\n"));
        assert_eq!(next(&mut events, "an appended line").await.digest, Some(d4));

        // Rotated: a new, shorter file is read from its start.
        std::fs::remove_file(&path).unwrap();
        append(&path, &format!("{APP}@{d5}\n"));
        assert_eq!(
            next(&mut events, "the rotated file's line").await.digest,
            Some(d5)
        );

        stop.fire();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("the trigger stops at shutdown")
            .unwrap()
            .unwrap();
        assert!(events.try_recv().is_err(), "nothing else was sent");
    }
}
