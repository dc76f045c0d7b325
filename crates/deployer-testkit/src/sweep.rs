//! Label-based cleanup: everything a test creates carries its run label, and a [`Sweep`]
//! removes all of it when dropped, also when the test panics.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Label every test container and image carries, so leftovers can be swept wholesale.
pub const TEST_LABEL: &str = "deployer.test";
/// Label naming one test run.
pub const RUN_LABEL: &str = "deployer.test.run";

/// Removes the containers and images of one test run on drop.
#[derive(Debug)]
pub struct Sweep {
    run: String,
}

impl Sweep {
    /// A run named after the test, unique within this machine.
    pub fn new(test: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let safe: String = test
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let run = format!("{safe}-{}-{n}", std::process::id());
        let sweep = Self { run };
        sweep.clean();
        sweep
    }

    /// The run's id (the value of [`RUN_LABEL`]).
    pub fn run(&self) -> &str {
        &self.run
    }

    /// The labels to put on everything this run creates.
    pub fn labels(&self) -> Vec<(String, String)> {
        vec![
            (TEST_LABEL.to_owned(), "1".to_owned()),
            (RUN_LABEL.to_owned(), self.run.clone()),
        ]
    }

    /// A name unique to this run, for containers, tags and services.
    pub fn name(&self, base: &str) -> String {
        format!("{base}-{}", self.run)
    }

    fn clean(&self) {
        remove_labelled(&format!("{RUN_LABEL}={}", self.run));
    }
}

impl Drop for Sweep {
    fn drop(&mut self) {
        self.clean();
    }
}

/// Removes every container and image that any test created (for the test script).
pub fn sweep_all() {
    remove_labelled(TEST_LABEL);
}

/// Force-removes containers, then images, networks and volumes carrying `label` (`key` or
/// `key=value`), through the docker CLI: it works from `Drop`, inside or outside a runtime.
/// Networks and volumes go last: the engine refuses to remove them while a container uses them.
fn remove_labelled(label: &str) {
    let list = |args: &[&str]| -> Vec<String> {
        Command::new("docker")
            .args(args)
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_owned)
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let filter = format!("label={label}");
    let containers = list(&["ps", "-aq", "--filter", &filter]);
    if !containers.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v"])
            .args(&containers)
            .output();
    }
    let images = list(&["images", "-q", "--filter", &filter]);
    if !images.is_empty() {
        let mut unique = images;
        unique.sort();
        unique.dedup();
        let _ = Command::new("docker")
            .args(["rmi", "-f"])
            .args(&unique)
            .output();
    }
    for kind in ["network", "volume"] {
        let names = list(&[kind, "ls", "-q", "--filter", &filter]);
        if !names.is_empty() {
            let _ = Command::new("docker")
                .args([kind, "rm"])
                .args(&names)
                .output();
        }
    }
}
