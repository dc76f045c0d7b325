//! What runs is what the registry says, on the embedded default (one host, the durable local
//! store), with a real daemon, engine and registry:
//! - a tag moved back to an earlier build (v1, v2, then v1 pushed again) converges on v1 by the
//!   registry's notification, by SIGHUP and by the poll (at start, after a restart);
//! - an envelope dated before the current build changes nothing, and says so in `status`;
//! - after SIGKILL and a restart, the history, the rollback points and a halted build are
//!   still there (the halted build is not started again).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use deployer_core::Timestamp;

use deployer_testkit::images::{self, App, ImageSpec};
use deployer_testkit::net::free_port;
use deployer_testkit::{Registry, RegistryOptions, Sweep};
use serde_json::Value;

use crate::common::service_section;
use crate::support::{Cli, Daemon, bounded, eventually, get};

const TOKEN_VAR: &str = "TRUTH_E2E_ADMIN_TOKEN";
const TOKEN: &str = "truth-e2e-admin-token-0d15ea5e";
const HOOK_VAR: &str = "TRUTH_E2E_REGISTRY_TOKEN";
const HOOK_TOKEN: &str = "truth-e2e-registry-token-feedface";
/// How long a candidate may take to become healthy.
const HEALTH_DEADLINE: Duration = Duration::from_secs(5);

/// A daemon config: service `name` tracking `image`, webhooks on `webhooks`, state in `dir`.
/// Each part of the scenario has a service of its own: a daemon with a new journal must not
/// meet the containers of another part's service.
fn config(
    dir: &Path,
    sweep: &Sweep,
    name: &str,
    image: &str,
    webhooks: u16,
    proxy: SocketAddr,
) -> String {
    let service = service_section(name, image, &sweep.labels(), proxy, HEALTH_DEADLINE);
    format!(
        r#"node = "truth-e2e"
shutdown_grace = "10s"

[webhooks]
listen = "127.0.0.1:{webhooks}"

[webhooks.registry]
token = {{ env = "{HOOK_VAR}" }}

[admin]
listen = "127.0.0.1:{admin}"
token = {{ env = "{TOKEN_VAR}" }}

[docker]
journal = "{journal}"

[poll]
on_start = true

{service}
[service.timeouts]
fetch = "30s"
start = "20s"
stop = "500ms"
drain = "1s"
"#,
        admin = free_port(),
        journal = dir.join("journal.redb").display(),
    )
}

struct Rig {
    sweep: Sweep,
    docker: bollard::Docker,
    /// Local images by version.
    local: Vec<(String, String)>,
}

impl Rig {
    fn local(&self, version: &str) -> &str {
        &self
            .local
            .iter()
            .find(|(v, _)| v == version)
            .expect("a built version")
            .1
    }

    /// Pushes local `version` as `repo:latest`; returns its digest.
    async fn push(&self, registry: &Registry, version: &str) -> anyhow::Result<String> {
        registry
            .push(&self.docker, self.local(version), "demo/app", "latest")
            .await
    }
}

fn start(dir: &Path, config: &Path, log: &str) -> anyhow::Result<Daemon> {
    Daemon::start(
        config,
        &[(TOKEN_VAR, TOKEN), (HOOK_VAR, HOOK_TOKEN)],
        dir.join(log),
    )
}

/// Waits until the proxy answers `version`.
async fn serving(daemon: &Daemon, proxy: &str, version: &str, why: &str) -> anyhow::Result<()> {
    let want = format!("{version}\n");
    eventually(Duration::from_secs(60), why, || async {
        daemon.ensure_running()?;
        Ok((get(proxy).await.ok().as_deref() == Some(want.as_str())).then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_moved_back_converges_by_notification_sighup_and_poll() -> anyhow::Result<()> {
    bounded(
        Duration::from_secs(420),
        "the registry-truth scenario",
        scenario(),
    )
    .await?
}

async fn scenario() -> anyhow::Result<()> {
    let sweep = Sweep::new("registry-truth");
    let docker = images::docker().await;
    let mut local = Vec::new();
    for (version, app) in [
        ("v1", App::http("v1")),
        ("v2", App::http("v2")),
        ("bad", App::NeverHealthy),
    ] {
        let tag = format!("deployer-test/truth-{}:{version}", sweep.run());
        let spec = ImageSpec {
            app,
            healthcheck: false,
            labels: sweep.labels(),
        };
        images::build(&docker, &tag, &spec).await?;
        local.push((version.to_owned(), tag));
    }
    let rig = Rig {
        sweep,
        docker,
        local,
    };
    by_notification_with_a_replay_and_a_crash(&rig).await?;
    by_sighup_and_by_the_poll(&rig).await
}

async fn by_notification_with_a_replay_and_a_crash(rig: &Rig) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let webhooks = free_port();
    let hook = format!("http://127.0.0.1:{webhooks}/hooks/registry");
    let registry = Registry::start(RegistryOptions {
        notify_url: Some(hook.clone()),
        notify_token: Some(HOOK_TOKEN.to_owned()),
        ..RegistryOptions::default()
    })
    .await?;
    let image = format!("{}/demo/app:latest", registry.host());
    let proxy = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config_path = dir.path().join("deployer.toml");
    std::fs::write(
        &config_path,
        config(dir.path(), &rig.sweep, "web", &image, webhooks, proxy),
    )?;
    let cli = Cli {
        config: config_path.clone(),
        token: (TOKEN_VAR, TOKEN),
    };
    let proxy = proxy.to_string();
    let mut daemon = start(dir.path(), &config_path, "first.log")?;
    eventually(Duration::from_secs(30), "the admin API", || async {
        daemon.ensure_running()?;
        Ok(cli.service().await.ok().map(|_| ()))
    })
    .await?;

    rig.push(&registry, "v1").await?;
    serving(&daemon, &proxy, "v1", "v1 deployed by its notification").await?;
    let v2 = rig.push(&registry, "v2").await?;
    let v2_pushed = SystemTime::now();
    serving(&daemon, &proxy, "v2", "v2 deployed by its notification").await?;
    let v1 = rig.push(&registry, "v1").await?;
    serving(
        &daemon,
        &proxy,
        "v1",
        "v1 again: the registry moved the tag back",
    )
    .await?;
    // Serving first, live once its watch is over.
    eventually(Duration::from_secs(30), "v1 live and idle", || async {
        let status = cli.service().await?;
        Ok((status["live"] == v1.as_str() && status["state"] == "idle").then_some(()))
    })
    .await?;

    // A captured envelope of the v2 push, replayed later (its own id, dated at that push):
    // refused, visibly.
    let replay = envelope(&registry.host(), &v2, "replayed-v2-push", v2_pushed);
    let answer = reqwest::Client::new()
        .post(&hook)
        .header(
            "content-type",
            "application/vnd.docker.distribution.events.v1+json",
        )
        .header("authorization", format!("Bearer {HOOK_TOKEN}"))
        .body(replay)
        .send()
        .await?;
    anyhow::ensure!(
        answer.status().is_success(),
        "replay answered {}",
        answer.status()
    );
    let status = eventually(Duration::from_secs(10), "the refusal in status", || async {
        let status = cli.service().await?;
        let refused = status["message"]
            .as_str()
            .is_some_and(|m| m.contains("refused"));
        Ok(refused.then_some(status))
    })
    .await?;
    assert_eq!(status["live"], v1.as_str(), "{status}");
    assert_eq!(get(&proxy).await?, "v1\n", "the replay changed nothing");

    // A build that never becomes healthy: rolled back and halted for this service.
    let bad = rig.push(&registry, "bad").await?;
    eventually(Duration::from_secs(60), "the bad build halted", || async {
        let status = cli.service().await?;
        Ok((status["state"] == "halted").then_some(()))
    })
    .await?;
    let before = cli.history().await?;
    assert!(before.len() >= 4, "{before:#?}");

    // A crash, and a restart on the same store.
    daemon.kill().await?;
    let mut daemon = start(dir.path(), &config_path, "second.log")?;
    let status = eventually(
        Duration::from_secs(30),
        "recovery after SIGKILL",
        || async {
            daemon.ensure_running()?;
            let status = cli.service().await.ok();
            Ok(status.filter(|s| s["state"] != "recovering"))
        },
    )
    .await?;
    assert_eq!(status["state"], "halted", "the halt survived: {status}");
    assert_eq!(status["target"], bad.as_str(), "{status}");
    assert_eq!(status["live"], v1.as_str(), "{status}");
    let after = cli.history().await?;
    assert!(
        after.len() >= before.len(),
        "history survived: {} reports before, {} after",
        before.len(),
        after.len()
    );
    assert_eq!(
        get(&proxy).await?,
        "v1\n",
        "the halted build was not started again"
    );
    let out = cli.run(&["rollback", "web"]).await?;
    assert_eq!(out.code, Some(0), "a rollback point survived: {out}");
    let status = cli.service().await?;
    assert_eq!(status["target"], v1.as_str(), "{status}");
    daemon.terminate(Duration::from_secs(20)).await?;
    daemon.passed();
    Ok(())
}

async fn by_sighup_and_by_the_poll(rig: &Rig) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // No notifications: only SIGHUP and the poll hear of pushes.
    let registry = Registry::start(RegistryOptions::default()).await?;
    let image = format!("{}/demo/app:latest", registry.host());
    let proxy = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config_path = dir.path().join("deployer.toml");
    std::fs::write(
        &config_path,
        config(dir.path(), &rig.sweep, "hup", &image, free_port(), proxy),
    )?;
    let proxy = proxy.to_string();

    rig.push(&registry, "v1").await?;
    let mut daemon = start(dir.path(), &config_path, "sighup.log")?;
    serving(&daemon, &proxy, "v1", "v1 deployed by the poll at start").await?;
    rig.push(&registry, "v2").await?;
    daemon.hangup().await?;
    serving(&daemon, &proxy, "v2", "v2 deployed on SIGHUP").await?;
    daemon.terminate(Duration::from_secs(20)).await?;
    daemon.passed();

    // Moved back while the daemon was down: the poll at start follows the registry.
    rig.push(&registry, "v1").await?;
    let mut daemon = start(dir.path(), &config_path, "poll.log")?;
    serving(&daemon, &proxy, "v1", "v1 again, by the poll at start").await?;
    // And moved forward to a build that ran before: SIGHUP follows too.
    rig.push(&registry, "v2").await?;
    daemon.hangup().await?;
    serving(&daemon, &proxy, "v2", "v2 again, on SIGHUP").await?;
    daemon.terminate(Duration::from_secs(20)).await?;
    daemon.passed();
    Ok(())
}

/// A registry notification of a manifest push of `digest` as `demo/app:latest`.
fn envelope(host: &str, digest: &str, id: &str, at: SystemTime) -> String {
    let timestamp = Timestamp::from(at).to_string();
    let value: Value = serde_json::json!({"events": [{
        "id": id,
        "timestamp": timestamp,
        "action": "push",
        "target": {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": digest,
            "repository": "demo/app",
            "url": format!("http://{host}/v2/demo/app/manifests/{digest}"),
            "tag": "latest",
        },
        "request": {"host": host, "method": "PUT"},
    }]});
    value.to_string()
}
