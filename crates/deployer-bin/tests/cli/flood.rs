//! Hostile clients against a real daemon limited to 1,024 open files, as a host with the
//! usual limits starts it: 1,100 idle connections on the webhook port leave the proxy
//! serving, and 1,500 unauthenticated GitHub deliveries that send (part of) a 1 MiB body and
//! stall leave its memory bounded. Prints what it measured.

use std::net::SocketAddr;
use std::time::Duration;

use deployer_testkit::images;
use deployer_testkit::net::free_port;
use deployer_testkit::{Registry, RegistryOptions, Sweep};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::service_section;
use crate::support::{Daemon, bounded, eventually, get, push_v1};

const SECRET_VAR: &str = "FLOOD_GITHUB_SECRET";
const BODY: usize = 1 << 20;

/// Kilobytes of a `/proc/<pid>/status` field (`VmRSS`, `VmHWM`).
fn status_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_default())
}

/// The test process holds thousands of sockets itself.
fn raise_own_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
}

/// Opens up to `n` connections, each given `first` to send (as far as the socket takes it
/// within a moment); returns the connections that opened.
async fn open(addr: SocketAddr, n: usize, first: impl Fn(usize) -> Vec<u8>) -> Vec<TcpStream> {
    let mut open = Vec::with_capacity(n);
    for i in 0..n {
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
        else {
            continue;
        };
        let bytes = first(i);
        if !bytes.is_empty() {
            let _ = tokio::time::timeout(Duration::from_millis(5), stream.write_all(&bytes)).await;
        }
        open.push(stream);
    }
    open
}

fn github_head(length: usize) -> Vec<u8> {
    format!(
        "POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-GitHub-Event: package\r\nX-Hub-Signature-256: sha256={}\r\nContent-Length: {length}\r\n\r\n",
        "0".repeat(64)
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_on_the_webhook_port_leave_the_proxy_serving_and_memory_bounded()
-> anyhow::Result<()> {
    bounded(Duration::from_secs(240), "the flood scenario", scenario()).await?
}

async fn scenario() -> anyhow::Result<()> {
    raise_own_files_limit();
    let sweep = Sweep::new("cli-flood");
    let docker = images::docker().await;
    let dir = tempfile::tempdir()?;
    let registry = Registry::start(RegistryOptions::default()).await?;
    let image = push_v1(&docker, &sweep, &registry, "demo/flood").await?;

    let proxy = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let webhooks = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let service = service_section(
        &sweep.name("web"),
        &image,
        &sweep.labels(),
        proxy,
        Duration::from_secs(10),
    );
    let config = format!(
        r#"node = "flood"

[webhooks]
listen = "{webhooks}"

[webhooks.github]
secret = {{ env = "{SECRET_VAR}" }}

[admin]
listen = "127.0.0.1:{admin}"

[docker]
journal = "{journal}"
scope = "{scope}"

[poll]
on_start = true

{service}"#,
        admin = free_port(),
        journal = dir.path().join("journal.redb").display(),
        scope = sweep.name("scope"),
    );
    let config_path = dir.path().join("deployer.toml");
    std::fs::write(&config_path, config)?;
    let mut daemon = Daemon::start_with_files(
        &config_path,
        &[(SECRET_VAR, "flood-secret-0b5e55ed")],
        dir.path().join("deployer.log"),
        1024,
    )?;
    let proxy_addr = proxy.to_string();
    eventually(
        Duration::from_secs(60),
        "v1 answering through the proxy",
        || async {
            daemon.ensure_running()?;
            Ok((get(&proxy_addr).await.ok().as_deref() == Some("v1\n")).then_some(()))
        },
    )
    .await?;
    let pid = daemon.pid()?;
    let rss_before = status_kb(pid, "VmRSS")?;

    // 1,100 idle connections: more than the descriptors left, were each one accepted.
    let idle = open(webhooks, 1100, |_| Vec::new()).await;
    let mut served = 0;
    for _ in 0..50 {
        if get(&proxy_addr).await.ok().as_deref() == Some("v1\n") {
            served += 1;
        }
    }
    daemon.ensure_running()?;
    assert_eq!(
        served, 50,
        "the proxy failed requests during the idle flood"
    );
    let idle_opened = idle.len();
    let rss_idle = status_kb(pid, "VmRSS")?;
    drop(idle);

    // 1,500 unsigned-but-well-formed GitHub deliveries: 64 send their whole 1 MiB body, the
    // rest 64 KiB of it, then every one stalls.
    let whole = {
        let mut bytes = github_head(BODY);
        bytes.resize(bytes.len() + BODY, b' ');
        bytes
    };
    let part = {
        let mut bytes = github_head(BODY);
        bytes.resize(bytes.len() + (64 << 10), b' ');
        bytes
    };
    let stalled = open(webhooks, 1500, |i| {
        if i < 64 { whole.clone() } else { part.clone() }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    daemon.ensure_running()?;
    let rss_during = status_kb(pid, "VmRSS")?;
    let peak = status_kb(pid, "VmHWM")?;
    let served_during = get(&proxy_addr).await.ok().as_deref() == Some("v1\n");
    let stalled_opened = stalled.len();
    drop(stalled);
    eprintln!(
        "flood: {idle_opened} idle connections, proxy served {served}/50; {stalled_opened} stalled GitHub deliveries: RSS {} MB before, {} MB with the idle flood, {} MB during, peak {} MB",
        rss_before / 1024,
        rss_idle / 1024,
        rss_during / 1024,
        peak / 1024
    );
    assert!(
        served_during,
        "the proxy failed a request during the GitHub flood"
    );
    assert!(
        peak < 64 * 1024,
        "peak RSS {} MB: not bounded under 64 MB",
        peak / 1024
    );
    daemon.terminate(Duration::from_secs(30)).await?;
    daemon.passed();
    Ok(())
}
