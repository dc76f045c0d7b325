//! The test fleet: one etcd, one registry, three agents on the shared Docker engine (each in
//! its own node scope), and reads of etcd and Docker to check what the agents did.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bollard::Docker;
use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use deployer_testkit::etcd::Etcd;
use deployer_testkit::images::{self, App, ImageSpec};
use deployer_testkit::sweep::RUN_LABEL;
use deployer_testkit::{Registry, RegistryOptions, Sweep};
use etcd_client::{EventType, GetOptions, WatchOptions};
use futures_util::StreamExt;
use serde_json::Value;

use crate::agent::{Agent, AgentSettings, SERVICE, short};
use deployer_testkit::wait::eventually;

/// Agents in the fleet.
pub const AGENTS: usize = 3;

/// One change under the test's etcd prefix, in revision order.
#[derive(Debug, Clone)]
pub struct Change {
    pub revision: i64,
    /// The key without the prefix, e.g. `rollout/web/<node>`.
    pub key: String,
    /// The new value; `None` for a deletion.
    pub value: Option<Value>,
}

/// Three agents and what they share. Dropping it kills the agents and etcd and removes
/// every container and image the test made.
pub struct Fleet {
    /// First, so the processes are killed before the sweep removes their containers.
    pub agents: Vec<Agent>,
    pub etcd: Etcd,
    registry: Registry,
    pub docker: Docker,
    kv: etcd_client::Client,
    /// The test's key prefix.
    prefix: String,
    /// The tracked `<registry>/demo/app:latest`.
    pub image: String,
    sweep: Sweep,
    _dir: tempfile::TempDir,
}

impl Fleet {
    /// Starts etcd and a registry, pushes `first` as `latest`, and starts three agents,
    /// which deploy it at start (poll on start), one at a time. Returns once all three serve
    /// it, with its digest.
    pub async fn start(
        test: &str,
        first: App,
        health_deadline: Duration,
    ) -> anyhow::Result<(Self, String)> {
        let sweep = Sweep::new(test);
        let docker = images::docker().await;
        let etcd = Etcd::start().await;
        let registry = Registry::start(RegistryOptions::default()).await?;
        let kv = etcd_client::Client::connect([etcd.endpoint()], None)
            .await
            .context("connecting to the test etcd")?;
        let dir = tempfile::Builder::new()
            .prefix("deployer-fleet-")
            .tempdir()?;
        let settings = AgentSettings {
            etcd: etcd.endpoint(),
            prefix: format!("/fleet/{}", sweep.run()),
            image: format!("{}/demo/app:latest", registry.host()),
            labels: sweep.labels(),
            health_deadline,
        };
        let agents = ["a", "b", "c"]
            .into_iter()
            .map(|n| Agent::new(dir.path(), &sweep.name(n), &settings))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut fleet = Self {
            agents,
            etcd,
            registry,
            docker,
            kv,
            prefix: settings.prefix,
            image: settings.image,
            sweep,
            _dir: dir,
        };
        let setup = async {
            let digest = fleet.push("first", first).await?;
            for agent in &mut fleet.agents {
                agent.start().await?;
            }
            fleet.all_live(&digest, Duration::from_secs(60)).await?;
            anyhow::Ok(digest)
        }
        .await;
        match setup {
            Ok(digest) => Ok((fleet, digest)),
            Err(e) => Err(fleet.with_logs(e)),
        }
    }

    /// A scenario's result, with the end of every agent's log when it failed.
    pub fn verdict(&self, outcome: anyhow::Result<()>) -> anyhow::Result<()> {
        outcome.map_err(|e| self.with_logs(e))
    }

    /// `error` with the end of every agent's log.
    pub fn with_logs(&self, error: anyhow::Error) -> anyhow::Error {
        let mut logs = String::new();
        for agent in &self.agents {
            logs.push_str(&format!(
                "\n----- {} (last 40 lines) -----\n{}\n",
                agent.node,
                agent.log_tail(40)
            ));
        }
        error.context(format!("agents' logs:{logs}"))
    }

    /// Builds a test image running `app`, pushes it as `latest`, returns the digest.
    pub async fn push(&self, tag: &str, app: App) -> anyhow::Result<String> {
        let local = format!("deployer-test/fleet-{}:{tag}", self.sweep.run());
        let spec = ImageSpec {
            app,
            healthcheck: false,
            labels: self.sweep.labels(),
        };
        let id = images::build(&self.docker, &local, &spec).await?;
        self.registry
            .push(&self.docker, &id, "demo/app", "latest")
            .await
    }

    /// Pushes a new build running `app` and announces it through agent `via`'s generic
    /// webhook, as a CI job would; returns its digest.
    pub async fn release(&self, tag: &str, app: App, via: usize) -> anyhow::Result<String> {
        let digest = self.push(tag, app).await?;
        let status = self.agents[via].announce(&self.image, &digest).await?;
        ensure!(
            status == 202,
            "{}'s webhook answered {status}",
            self.agents[via].node
        );
        Ok(digest)
    }

    /// Waits until every agent serves `digest`, at rest.
    pub async fn all_live(&self, digest: &str, limit: Duration) -> anyhow::Result<()> {
        for agent in &self.agents {
            agent.wait_live(digest, limit).await?;
        }
        Ok(())
    }

    /// The outcomes in the fleet's history of deploys of `digest`, by node (read through the
    /// first live agent: history lives in etcd).
    pub async fn outcomes(&self, digest: &str) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
        let mut history = Err(anyhow::anyhow!("no agent answers"));
        for agent in &self.agents {
            history = agent.history().await;
            if history.is_ok() {
                break;
            }
        }
        let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for report in history? {
            if report["to"] == digest {
                by_node
                    .entry(report["node"].as_str().unwrap_or_default().to_owned())
                    .or_default()
                    .push(report["outcome"].as_str().unwrap_or_default().to_owned());
            }
        }
        Ok(by_node)
    }

    /// One `succeeded` report per host: what a clean rollout leaves in the history.
    pub fn all_succeeded(&self) -> BTreeMap<String, Vec<String>> {
        self.nodes()
            .into_iter()
            .map(|n| (n, vec!["succeeded".to_owned()]))
            .collect()
    }

    /// Waits until the history's outcomes for `digest` are `expected` (reports are recorded
    /// a moment after the deploy ends); the error shows what the history holds.
    pub async fn expect_outcomes(
        &self,
        digest: &str,
        expected: &BTreeMap<String, Vec<String>>,
    ) -> anyhow::Result<()> {
        let what = format!("the history of {} to be {expected:?}", short(digest));
        let waited = eventually(Duration::from_secs(15), &what, || async {
            self.outcomes(digest).await.ok().filter(|o| o == expected)
        })
        .await;
        if waited.is_err() {
            bail!(
                "history of {}: {:?}, expected {expected:?}",
                short(digest),
                self.outcomes(digest).await?
            );
        }
        Ok(())
    }

    /// The agents' node names, sorted.
    pub fn nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self.agents.iter().map(|a| a.node.clone()).collect();
        nodes.sort();
        nodes
    }

    /// What each agent's proxy answers on `/`.
    pub async fn answers(&self) -> anyhow::Result<Vec<String>> {
        let mut answers = Vec::new();
        for agent in &self.agents {
            answers.push(agent.answer().await?);
        }
        Ok(answers)
    }

    /// The containers of `node`'s scope (any state), from the engine.
    pub async fn containers(&self, node: &str) -> anyhow::Result<Vec<ContainerSummary>> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![
                    format!("deployer.node={node}"),
                    format!("deployer.service={SERVICE}"),
                ],
            )])),
            ..Default::default()
        };
        Ok(self.docker.list_containers(Some(options)).await?)
    }

    /// Checks that agent `n` runs exactly one container, running `digest`, and that its proxy
    /// answers `version`.
    pub async fn one_generation(
        &self,
        n: usize,
        digest: &str,
        version: &str,
    ) -> anyhow::Result<()> {
        let agent = &self.agents[n];
        let containers = self.containers(&agent.node).await?;
        let described: Vec<String> = containers.iter().map(describe).collect();
        ensure!(
            containers.len() == 1,
            "{} should run exactly one container, has {described:?}",
            agent.node
        );
        let only = &containers[0];
        ensure!(
            only.state == Some(ContainerSummaryStateEnum::RUNNING),
            "{}'s container is not running: {described:?}",
            agent.node
        );
        ensure!(
            label(only, "deployer.digest") == Some(digest),
            "{}'s container runs another build than {}: {described:?}",
            agent.node,
            short(digest)
        );
        let answer = agent.answer().await?;
        ensure!(
            answer == version,
            "{}'s proxy answers {answer:?}, not {version:?}",
            agent.node
        );
        Ok(())
    }

    /// The full etcd key of `rest` (`targets/...`, `rollout/web/...`).
    pub fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    /// The values under `rest` with their keys (without the prefix) and `mod_revision`s.
    pub async fn read(&self, rest: &str) -> anyhow::Result<Vec<(String, Value, i64)>> {
        let response = self
            .kv
            .clone()
            .get(self.key(rest), Some(GetOptions::new().with_prefix()))
            .await?;
        response
            .kvs()
            .iter()
            .map(|kv| {
                let key = kv.key_str()?;
                let key = key.strip_prefix(&self.key("")).unwrap_or(key).to_owned();
                let value = serde_json::from_slice(kv.value())?;
                Ok((key, value, kv.mod_revision()))
            })
            .collect()
    }

    /// The tracked image's target and its `mod_revision`.
    pub async fn target(&self) -> anyhow::Result<(Value, i64)> {
        let mut targets = self.read("targets/").await?;
        ensure!(targets.len() == 1, "expected one target, found {targets:?}");
        let (_, target, revision) = targets.remove(0);
        Ok((target, revision))
    }

    /// The nodes holding a rollout slot of the service now.
    pub async fn slot_holders(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .read(&format!("rollout/{SERVICE}/"))
            .await?
            .into_iter()
            .map(|(key, ..)| key.rsplit('/').next().unwrap_or_default().to_owned())
            .collect())
    }

    /// etcd's current revision.
    pub async fn revision(&self) -> anyhow::Result<i64> {
        let response = self.kv.clone().get(self.key("none"), None).await?;
        Ok(response.header().context("no response header")?.revision())
    }

    /// Every change under the prefix after revision `after` until now, in order: etcd
    /// replays them to a watch that starts at `after + 1`; a marker key written now says
    /// where "now" is.
    pub async fn changes_since(&self, after: i64) -> anyhow::Result<Vec<Change>> {
        let mut kv = self.kv.clone();
        let marker = self.key("test/marker");
        kv.put(marker.as_str(), "now", None).await?;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(after + 1);
        let (_watcher, mut stream) = kv.watch(self.key(""), Some(options)).await?;
        let mut changes = Vec::new();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .context("the etcd watch replaying the test's changes went quiet")??
                .context("the etcd watch ended")?;
            for event in message.events() {
                let Some(kv) = event.kv() else { continue };
                let key = kv.key_str()?;
                if key == marker {
                    return Ok(changes);
                }
                let value = match event.event_type() {
                    EventType::Put => Some(serde_json::from_slice(kv.value())?),
                    EventType::Delete => None,
                };
                changes.push(Change {
                    revision: kv.mod_revision(),
                    key: key.strip_prefix(&self.key("")).unwrap_or(key).to_owned(),
                    value,
                });
            }
        }
    }

    /// Records every container created with this test's labels from now on.
    pub fn record_creations(&self) -> Creations {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            .saturating_sub(1);
        let options = EventsOptions {
            since: Some(since.to_string()),
            filters: Some(HashMap::from([
                ("type".to_owned(), vec!["container".to_owned()]),
                ("event".to_owned(), vec!["create".to_owned()]),
                (
                    "label".to_owned(),
                    vec![format!("{RUN_LABEL}={}", self.sweep.run())],
                ),
            ])),
            ..Default::default()
        };
        let seen: Arc<Mutex<Vec<HashMap<String, String>>>> = Arc::default();
        let docker = self.docker.clone();
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            let mut events = docker.events(Some(options));
            while let Some(Ok(event)) = events.next().await {
                let attributes = event.actor.and_then(|a| a.attributes).unwrap_or_default();
                sink.lock().unwrap().push(attributes);
            }
        });
        Creations { seen, task }
    }
}

/// Containers created since [`Fleet::record_creations`]: each one's labels (and `name`).
pub struct Creations {
    seen: Arc<Mutex<Vec<HashMap<String, String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Creations {
    /// (node, container name) of every container created so far running `digest`.
    pub fn of(&self, digest: &str) -> Vec<(String, String)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.get("deployer.digest").map(String::as_str) == Some(digest))
            .map(|a| {
                let get = |k: &str| a.get(k).cloned().unwrap_or_default();
                (get("deployer.node"), get("name"))
            })
            .collect()
    }
}

impl Drop for Creations {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn label<'a>(container: &'a ContainerSummary, key: &str) -> Option<&'a str> {
    container.labels.as_ref()?.get(key).map(String::as_str)
}

/// `name (state, generation, build)` for messages.
fn describe(container: &ContainerSummary) -> String {
    format!(
        "{} ({:?}, g{}, {})",
        container
            .names
            .iter()
            .flatten()
            .next()
            .map_or("?", |n| n.trim_start_matches('/')),
        container.state,
        label(container, "deployer.generation").unwrap_or("?"),
        label(container, "deployer.digest").map_or("?", short),
    )
}
