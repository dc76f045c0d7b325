//! Polling with deadlines: every wait says what never happened.

use std::future::Future;
use std::time::Duration;

use anyhow::bail;

/// Polls `check` every 50 ms until it returns `Some`, failing after `limit` with `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Bounds a scenario that could hang, naming it when it does.
pub async fn bounded(
    limit: Duration,
    what: &str,
    scenario: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    match tokio::time::timeout(limit, scenario).await {
        Ok(outcome) => outcome,
        Err(_) => bail!("deadlock: {what} did not finish within {limit:?}"),
    }
}
