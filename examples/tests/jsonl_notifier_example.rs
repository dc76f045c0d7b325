//! Runs the `jsonl_notifier` example's own code (not a copy of it): a driver on the fakes,
//! two deploys, two JSON lines each (started, then how it ended).

use std::time::Duration;

use deployer_core::testing::digest;
use deployer_core::{DeployReport, Outcome};

#[path = "../examples/jsonl_notifier.rs"]
#[allow(dead_code)]
// reason: the example's `main` is its entry point, unused when a test includes the file
mod example;

#[tokio::test]
async fn the_example_writes_one_report_line_per_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deploys.jsonl");
    tokio::time::timeout(Duration::from_secs(30), example::deploy_twice(&path))
        .await
        .expect("deadlock: the example's two deploys did not finish within 30 s")
        .expect("the example runs");

    let text = std::fs::read_to_string(&path).unwrap();
    let reports: Vec<DeployReport> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let outcomes: Vec<Outcome> = reports.iter().map(|r| r.outcome).collect();
    use Outcome::{Started, Succeeded};
    assert_eq!(outcomes, [Started, Succeeded, Started, Succeeded], "{text}");
    assert!(reports.iter().all(|r| r.node == "example-host"), "{text}");
    let first = &reports[1];
    assert_eq!(
        (first.from.clone(), first.to.clone()),
        (None, Some(digest(1)))
    );
    let second = &reports[3];
    assert_eq!(
        (second.from.clone(), second.to.clone()),
        (Some(digest(1)), Some(digest(2)))
    );
}
