//! The deploying process killed with SIGKILL at each phase, then restarted with the same
//! journal: exactly one generation serves and no candidate is left.
//!
//! The agent is this crate's `agent` example, run as a separate process (built by
//! `cargo test`, which builds examples before it runs tests).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use deployer_testkit::Sweep;
use deployer_testkit::images::{self, App};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::support::{
    bounded, build_image, containers_of, eventually, fetch_body, handover_service,
};

/// The example binary, next to this test binary's directory.
fn agent_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let debug_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("test binary outside a target directory")?;
    let agent = debug_dir.join("examples").join("agent");
    if agent.exists() {
        return Ok(agent);
    }
    bail!(
        "the agent example is not built at {}: run `cargo build -p deployer-docker --example agent` (plain `cargo test -p deployer-docker` builds it)",
        agent.display()
    )
}

/// A running agent and the JSON lines it printed.
struct Agent {
    child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl Agent {
    fn start(args: &[String]) -> anyhow::Result<Self> {
        let mut child = Command::new(agent_binary()?)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the agent")?;
        let stdout = child.stdout.take().context("agent stdout")?;
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(value);
                }
            }
        });
        Ok(Self {
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// Waits for a line matching `predicate`.
    async fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        predicate: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .with_context(|| format!("agent: no {what} within {limit:?}; saw {:?}", self.seen))?
                .with_context(|| format!("agent exited before {what}; saw {:?}", self.seen))?;
            self.seen.push(line.clone());
            if predicate(&line) {
                return Ok(line);
            }
        }
    }

    async fn wait_state(&mut self, state: &str, limit: Duration) -> anyhow::Result<()> {
        self.wait_for(&format!("state {state}"), limit, |l| l["state"] == state)
            .await
            .map(|_| ())
    }

    async fn wait_idle_on(&mut self, digest: &str, limit: Duration) -> anyhow::Result<()> {
        self.wait_for(&format!("idle on {digest}"), limit, |l| {
            l["state"] == "idle" && l["live"] == digest
        })
        .await
        .map(|_| ())
    }

    /// SIGKILL, as a crash.
    async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_each_phase_then_restarted_exactly_one_generation_serves() -> anyhow::Result<()> {
    bounded(
        Duration::from_secs(170),
        "the crash-recovery rounds",
        async {
            let sweep = Sweep::new("crash");
            let docker = images::docker().await;
            let boot = Duration::from_secs(2);
            let (v1, id1) = build_image(
                &docker,
                &sweep,
                "crash",
                "v1",
                App::SlowHttp {
                    version: "v1".into(),
                    boot,
                },
                false,
            )
            .await?;
            let (_, id2) = build_image(
                &docker,
                &sweep,
                "crash",
                "v2",
                App::SlowHttp {
                    version: "v2".into(),
                    boot,
                },
                false,
            )
            .await?;
            let tracked = v1.with_tag("live")?;
            let mut spec = handover_service(&sweep, "crash", &tracked, Duration::from_secs(20))?;
            // busybox httpd ignores SIGTERM as PID 1: every stop takes the full grace, which
            // keeps the agent draining long enough to be killed there.
            let mut timeouts = *spec.timeouts();
            timeouts.stop = Duration::from_secs(2);
            spec = rebuild_with_timeouts(&spec, timeouts)?;
            let listen = spec.strategy().handover().context("handover")?.listen();
            let service = spec.name().to_string();
            let dir = tempfile::tempdir()?;
            let spec_path = dir.path().join("service.json");
            std::fs::write(&spec_path, serde_json::to_vec(&spec)?)?;
            let journal = dir.path().join("journal.redb");
            let args = |target: &str, fetch_delay_ms: u64| -> Vec<String> {
                vec![
                    "--spec".into(),
                    spec_path.display().to_string(),
                    "--journal".into(),
                    journal.display().to_string(),
                    "--target".into(),
                    target.to_owned(),
                    "--fetch-delay-ms".into(),
                    fetch_delay_ms.to_string(),
                ]
            };

            let mut agent = Agent::start(&args(&id1, 0))?;
            agent.wait_idle_on(&id1, Duration::from_secs(30)).await?;
            let mut next = (id2.clone(), "v2\n");
            let mut other = (id1.clone(), "v1\n");
            for phase in ["fetching", "starting", "probing", "switched", "draining"] {
                agent.kill().await?;
                let delay = if phase == "fetching" { 3000 } else { 0 };
                let mut doomed = Agent::start(&args(&next.0, delay))?;
                let limit = Duration::from_secs(20);
                match phase {
                    "fetching" => {
                        doomed.wait_state("fetching", limit).await?;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    "starting" => doomed.wait_state("starting", limit).await?,
                    "probing" => {
                        doomed.wait_state("probing", limit).await?;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    // The candidate was just promoted: the old one is being retired.
                    "switched" => {
                        doomed.wait_state("probing", limit).await?;
                        doomed.wait_state("draining", limit).await?;
                    }
                    _ => {
                        doomed.wait_state("probing", limit).await?;
                        doomed.wait_state("draining", limit).await?;
                        tokio::time::sleep(Duration::from_millis(1000)).await;
                    }
                }
                doomed.kill().await?;
                let mut recovered = Agent::start(&args(&next.0, 0))?;
                recovered
                    .wait_idle_on(&next.0, Duration::from_secs(40))
                    .await
                    .with_context(|| format!("recovering after a kill while {phase}"))?;
                let left = containers_of(&docker, &service).await?;
                assert_eq!(left.len(), 1, "after a kill while {phase}: {left:?}");
                assert!(left[0].1, "after a kill while {phase}: {left:?}");
                let body = eventually(Duration::from_secs(5), "the proxy to answer", || async {
                    fetch_body(listen).await.ok()
                })
                .await?;
                assert_eq!(body, next.1, "after a kill while {phase}");
                std::mem::swap(&mut next, &mut other);
                agent = recovered;
            }
            agent.kill().await
        },
    )
    .await?
}

/// The same spec with other timeouts (specs are immutable once built).
fn rebuild_with_timeouts(
    spec: &deployer_core::ServiceSpec,
    timeouts: deployer_core::service::Timeouts,
) -> anyhow::Result<deployer_core::ServiceSpec> {
    Ok(
        deployer_core::ServiceSpec::builder(spec.name().as_str(), spec.image().clone())
            .strategy(spec.strategy().clone())
            .health(spec.health().clone())
            .template(spec.template().clone())
            .timeouts(timeouts)
            .build()?,
    )
}
