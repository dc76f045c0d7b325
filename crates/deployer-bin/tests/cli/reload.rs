//! `deployer reload` against a real daemon, engine and registry: a service added to the file
//! starts serving, a file that fails `config check` changes nothing (exit 64), and a service
//! taken out of the file loses its proxy and its containers, while the others keep serving;
//! then `deployer maintenance` and `deployer resume` on the same daemon.

use std::net::SocketAddr;
use std::time::Duration;

use deployer_testkit::images;
use deployer_testkit::net::free_port;
use deployer_testkit::{Registry, RegistryOptions, Sweep};

use crate::common::service_section;
use crate::support::{Cli, Daemon, bounded, containers_of, eventually, get, host_config, push_v1};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_refuses_an_invalid_file_and_removes() -> anyhow::Result<()> {
    bounded(Duration::from_secs(240), "the reload scenario", scenario()).await?
}

async fn scenario() -> anyhow::Result<()> {
    let sweep = Sweep::new("cli-reload");
    let docker = images::docker().await;
    let dir = tempfile::tempdir()?;
    let registry = Registry::start(RegistryOptions::default()).await?;
    let image = push_v1(&docker, &sweep, &registry, "demo/reload").await?;

    let (web, api) = (sweep.name("web"), sweep.name("api"));
    let web_proxy = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let api_proxy = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let section = |name: &str, proxy| {
        service_section(
            name,
            &image,
            &sweep.labels(),
            proxy,
            Duration::from_secs(10),
        )
    };
    let (admin, scope) = (free_port(), sweep.name("scope"));
    let path = dir.path().join("deployer.toml");
    let write = |services: &[String]| {
        std::fs::write(
            &path,
            host_config("reload", dir.path(), admin, &scope, services),
        )
    };
    write(&[section(&web, web_proxy)])?;
    let cli = Cli {
        config: path.clone(),
        token: ("CLI_RELOAD_UNUSED", ""),
    };
    let mut daemon = Daemon::start(&path, &[], dir.path().join("deployer.log"))?;
    let serves = |addr: SocketAddr| async move {
        get(&addr.to_string()).await.ok().as_deref() == Some("v1\n")
    };
    eventually(Duration::from_secs(60), "web serving", || async {
        daemon.ensure_running()?;
        Ok(serves(web_proxy).await.then_some(()))
    })
    .await?;

    // Added: api starts, on its own proxy, without a restart.
    write(&[section(&web, web_proxy), section(&api, api_proxy)])?;
    let out = cli.run(&["reload"]).await?;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains(&format!("added {api}")), "{out}");
    eventually(
        Duration::from_secs(60),
        "api serving after the reload",
        || async {
            daemon.ensure_running()?;
            Ok(serves(api_proxy).await.then_some(()))
        },
    )
    .await?;

    // Invalid: refused whole, with config check's message; both keep serving.
    let mut broken = section(&web, web_proxy);
    broken.push_str("healthy_threshold = 0\n");
    write(&[broken])?;
    let out = cli.run(&["reload"]).await?;
    assert_eq!(out.code, Some(64), "{out}");
    assert!(out.stderr.contains("running one stays"), "{out}");
    assert!(serves(web_proxy).await && serves(api_proxy).await);

    // Changed: web's actor restarts with its new spec while clients keep calling it.
    let calls = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, 0u32);
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        while tokio::time::Instant::now() < until {
            if get(&web_proxy.to_string()).await.ok().as_deref() == Some("v1\n") {
                ok += 1;
            } else {
                failed += 1;
            }
        }
        (ok, failed)
    });
    let changed = section(&web, web_proxy).replace("watch = \"500ms\"", "watch = \"1s\"");
    write(&[changed.clone(), section(&api, api_proxy)])?;
    let out = cli.run(&["reload"]).await?;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains(&format!("changed {web}")), "{out}");
    let (ok, failed) = calls.await?;
    eprintln!(
        "reload with a changed service under a client loop: {ok} requests ok, {failed} failed"
    );
    assert_eq!(failed, 0, "requests failed while web's actor restarted");

    // Removed: api's proxy closes and its containers go; web is untouched.
    write(&[changed])?;
    let out = cli.run(&["reload"]).await?;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains(&format!("removed {api}")), "{out}");
    eventually(
        Duration::from_secs(60),
        "api's containers removed",
        || async {
            daemon.ensure_running()?;
            Ok(containers_of(&api).await?.is_empty().then_some(()))
        },
    )
    .await?;
    assert!(
        tokio::net::TcpStream::connect(api_proxy).await.is_err(),
        "api's proxy still listens"
    );
    assert!(serves(web_proxy).await, "web stopped serving");

    // Traffic controls on the same daemon: maintenance answers 503 with the message, resume
    // forwards again.
    let out = cli
        .run(&["maintenance", &web, "--message", "back at 14:00 UTC"])
        .await?;
    assert_eq!(out.code, Some(0), "{out}");
    let answer = reqwest::get(format!("http://{web_proxy}/")).await?;
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.text().await?, "back at 14:00 UTC\n");
    let out = cli.run(&["resume", &web]).await?;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(serves(web_proxy).await, "web did not resume");

    daemon.terminate(Duration::from_secs(30)).await?;
    daemon.passed();
    Ok(())
}
