//! A real `deployer run` on the real Docker engine and a real registry, driven through the
//! CLI as an operator would: start (v1 deployed by the poll at start), `deploy --image v2`,
//! `status`, `rollback`, `history`, a never-healthy build (exit 2, rolled back), then
//! SIGTERM while a slow build is probed (exit 0, candidate removed, old one kept).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use deployer_testkit::images::{self, App, ImageSpec};
use deployer_testkit::net::free_port;
use deployer_testkit::{Registry, RegistryOptions, Sweep};
use serde_json::Value;

use crate::common::service_section;
use crate::support::{Cli, Daemon, Output, bounded, containers_of, eventually, get};

/// The daemon's stop grace: deploys under way get this long after SIGTERM.
const GRACE: Duration = Duration::from_secs(10);
/// How long a candidate may take to become healthy.
const HEALTH_DEADLINE: Duration = Duration::from_secs(5);
/// Read from the daemon's config by the CLI too (`--config`), through the environment.
const TOKEN_VAR: &str = "CLI_E2E_ADMIN_TOKEN";
const TOKEN: &str = "cli-e2e-admin-token-5c0ffee";

/// The first 12 hex digits, as the CLI prints digests.
fn short(digest: &str) -> &str {
    let hex = digest.trim_start_matches("sha256:");
    &hex[..12]
}

/// The outcome line `deploy`/`rollback` print last.
fn last_line(out: &Output) -> &str {
    out.stdout.lines().last().unwrap_or_default()
}

/// The states `deploy`/`rollback` printed while following (`   0.3s  probing`).
fn progress(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with(' '))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let elapsed = words.next()?;
            elapsed.ends_with('s').then_some(())?;
            words.next()
        })
        .collect()
}

fn config(dir: &Path, sweep: &Sweep, service: &str, image: &str) -> String {
    let proxy = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let service = service_section(service, image, &sweep.labels(), proxy, HEALTH_DEADLINE);
    format!(
        r#"node = "cli-e2e"
shutdown_grace = "{grace}s"

[webhooks]
listen = "127.0.0.1:{webhooks}"

[admin]
listen = "127.0.0.1:{admin}"
token = {{ env = "{TOKEN_VAR}" }}

[docker]
journal = "{journal}"

[poll]
# Resolve the tracked tag at start: v1 deploys without a push.
on_start = true

{service}
[service.timeouts]
fetch = "30s"
start = "20s"
stop = "500ms"
drain = "2s"
"#,
        grace = GRACE.as_secs(),
        webhooks = free_port(),
        admin = free_port(),
        journal = dir.join("journal.redb").display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rollback_history_failure_and_sigterm_through_the_cli() -> anyhow::Result<()> {
    bounded(
        Duration::from_secs(240),
        "the CLI end-to-end scenario",
        scenario(),
    )
    .await?
}

async fn scenario() -> anyhow::Result<()> {
    // Declared first, dropped last: removes every container and image labelled with this
    // run, after the daemon (dropped before it) is killed.
    let sweep = Sweep::new("cli-end-to-end");
    let docker = images::docker().await;
    let dir = tempfile::tempdir()?;

    // Four builds of demo/app, pushed to a real registry under their own tags.
    let registry = Registry::start(RegistryOptions::default()).await?;
    let mut digests = Vec::new();
    for (tag, app) in [
        ("latest", App::http("v1")),
        ("v2", App::http("v2")),
        ("bad", App::NeverHealthy),
        (
            "slow",
            App::SlowHttp {
                version: "slow".into(),
                boot: Duration::from_secs(60),
            },
        ),
    ] {
        let local = format!("deployer-test/cli-{}:{tag}", sweep.run());
        let spec = ImageSpec {
            app,
            healthcheck: false,
            labels: sweep.labels(),
        };
        images::build(&docker, &local, &spec).await?;
        digests.push(registry.push(&docker, &local, "demo/app", tag).await?);
    }
    let [v1, v2, bad, slow] = <[String; 4]>::try_from(digests).expect("four builds");
    let repo = format!("{}/demo/app", registry.host());

    let service = sweep.name("web");
    let config_path = dir.path().join("deployer.toml");
    std::fs::write(
        &config_path,
        config(dir.path(), &sweep, &service, &format!("{repo}:latest")),
    )?;
    let cli = Cli {
        config: config_path.clone(),
        token: (TOKEN_VAR, TOKEN),
    };
    let mut daemon = Daemon::start(
        &config_path,
        &[(TOKEN_VAR, TOKEN)],
        dir.path().join("deployer.log"),
    )?;
    let proxy = eventually(
        Duration::from_secs(30),
        "the admin API answering",
        || async {
            daemon.ensure_running()?;
            Ok(cli
                .service()
                .await
                .ok()
                .and_then(|s| s["proxy"].as_str().map(str::to_owned)))
        },
    )
    .await?;

    // Start: the poll at start resolves `latest` and v1 comes up behind the proxy.
    eventually(
        Duration::from_secs(60),
        "v1 answering through the proxy",
        || async {
            daemon.ensure_running()?;
            Ok((get(&proxy).await.ok().as_deref() == Some("v1\n")).then_some(()))
        },
    )
    .await?;

    // deploy --image: another tag of the tracked repository, followed to the end.
    let out = cli.deploy(&service, &format!("{repo}:v2"), &[]).await?;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout
            .starts_with(&format!("{service}: target {}", short(&v2))),
        "{out}"
    );
    assert!(
        !progress(&out.stdout).is_empty(),
        "no progress shown\n{out}"
    );
    assert_eq!(
        last_line(&out),
        format!("{service}: succeeded, live {}", short(&v2)),
        "{out}"
    );
    let status = cli.service().await?;
    assert_eq!(status["live"], v2.as_str(), "{status}");
    assert_eq!(status["state"], "idle", "{status}");
    assert_eq!(get(&proxy).await?, "v2\n");

    // rollback: the tracked tag's previous target is v1 (the deploy above replaced it).
    let out = cli.run(&["rollback", &service]).await?;
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        last_line(&out),
        format!("{service}: succeeded, live {}", short(&v1)),
        "{out}"
    );
    assert_eq!(cli.service().await?["live"], v1.as_str());
    assert_eq!(get(&proxy).await?, "v1\n");

    // history: newest first, each with who asked for it. Reports reach the history through
    // a queue of their own, so the last one may lag the CLI's return a little.
    let reports = eventually(
        Duration::from_secs(10),
        "three reports in history",
        || async {
            let reports = cli.history().await?;
            Ok((reports.len() >= 3).then_some(reports))
        },
    )
    .await?;
    let summary: Vec<(&str, &str, &str)> = reports
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap_or("?"),
                r["to"].as_str().unwrap_or("?"),
                r["source"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("succeeded", v1.as_str(), "rollback"),
            ("succeeded", v2.as_str(), "api"),
            ("succeeded", v1.as_str(), "poll"),
        ],
        "{reports:#?}"
    );
    let finished: Vec<u64> = reports
        .iter()
        .filter_map(|r| r["finished_at"].as_u64())
        .collect();
    assert!(finished.windows(2).all(|w| w[0] >= w[1]), "{finished:?}");
    let table = cli.run(&["history"]).await?;
    assert!(table.stdout.starts_with("FINISHED"), "{table}");
    assert_eq!(table.stdout.lines().count(), 4, "{table}");

    // A build that never becomes healthy: exit 2, rolled back, v1 never stopped serving.
    let out = cli.deploy(&service, &format!("{repo}:bad"), &[]).await?;
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        last_line(&out).starts_with(&format!("{service}: rolled_back, live {}: ", short(&v1))),
        "{out}"
    );
    assert!(out.stderr.contains("the deploy ended rolled_back"), "{out}");
    assert_eq!(get(&proxy).await?, "v1\n");
    let left = containers_of(&service).await?;
    assert!(
        left.iter().all(|c| c.digest != bad),
        "bad candidate left: {left:?}"
    );

    // SIGTERM while a slow build is probed (it boots for a minute; the probe deadline is
    // 5 s): the daemon removes the candidate, keeps v1, and exits 0 within the grace.
    let out = cli
        .deploy(&service, &format!("{repo}:slow"), &["--no-wait"])
        .await?;
    assert_eq!(out.code, Some(0), "{out}");
    eventually(
        Duration::from_secs(20),
        "the slow candidate being probed",
        || async {
            let probing = cli.service().await?["state"] == "probing";
            let started = containers_of(&service)
                .await?
                .iter()
                .any(|c| c.digest == slow && c.running);
            Ok((probing && started).then_some(()))
        },
    )
    .await?;
    let asked = Instant::now();
    let status = daemon.terminate(GRACE + Duration::from_secs(10)).await?;
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0), "deployer run ended {status}");
    assert!(
        took < GRACE,
        "stopping took {took:?}, longer than the grace"
    );
    let left = containers_of(&service).await?;
    assert!(
        left.iter().all(|c| c.digest != slow),
        "the candidate was left behind: {left:?}"
    );
    assert!(
        left.iter().any(|c| c.digest == v1 && c.running),
        "v1's container is gone: {left:?}"
    );

    // The JSON log: one object per line, and the candidate was removed because of the stop.
    let log = daemon.log();
    let events: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(Value::is_object)
                .with_context(|| format!("not a JSON object: {l}"))
        })
        .collect::<anyhow::Result<_>>()?;
    assert!(events.len() > 5, "{log}");
    let aborted = events.iter().any(|e| {
        e["fields"]["outcome"] == "superseded"
            && e["fields"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("shutting down before the candidate took traffic"))
    });
    assert!(
        aborted,
        "no report of the candidate removed at shutdown\n{log}"
    );
    daemon.passed();
    Ok(())
}
