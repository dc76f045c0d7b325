//! Waiting in integration tests: poll with a deadline, and bound anything that could hang,
//! with messages that say what never happened.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, bail};

/// Polls `check` every 50 ms until it returns `Some`, failing after `limit` with `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    try_eventually(limit, what, || {
        let check = check();
        async move { Ok(check.await) }
    })
    .await
}

/// Like [`eventually`], but a failing `check` ends the wait at once (a dead process is not
/// worth waiting for; checks turn transient errors into `None` themselves).
pub async fn try_eventually<T, F, Fut>(
    limit: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check()
            .await
            .with_context(|| format!("waiting for {what}"))?
        {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Bounds a future that could hang, naming what deadlocked.
pub async fn bounded<T>(
    limit: Duration,
    what: &str,
    future: impl Future<Output = T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, future)
        .await
        .with_context(|| format!("deadlock: {what} did not finish within {limit:?}"))
}

/// Bounds a whole test scenario: its own failure, or a deadlock naming it.
pub async fn scenario(
    limit: Duration,
    what: &str,
    scenario: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    bounded(limit, what, scenario).await?
}
