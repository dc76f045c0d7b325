//! The proxy as a process of its own, against a real daemon, engine and registry: under a
//! client loop, the daemon is SIGKILLed and started again, then the proxy itself is upgraded
//! to a new process, then the daemon stops: not one request fails, and the proxy keeps
//! serving after the daemon is gone. A second proxy cannot take over the socket. A SIGKILLed
//! proxy started again serves its routes at once; a corrupt state file is kept aside.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deployer_testkit::images;
use deployer_testkit::net::free_port;
use deployer_testkit::{Registry, RegistryOptions, Sweep};

use crate::common::service_section;
use crate::support::{
    Cli, Daemon, bounded, command, eventually, get, host_config, output, push_v1,
};

/// The proxy process a test's daemon started: SIGKILLed when dropped, whichever process
/// serves the socket by then (an upgrade replaces it).
struct ProxyProcess {
    lock: PathBuf,
}

impl ProxyProcess {
    fn pid(&self) -> Option<String> {
        let pid = std::fs::read_to_string(&self.lock).ok()?;
        Some(pid.trim().to_owned()).filter(|p| !p.is_empty())
    }

    fn alive(pid: &str) -> bool {
        Path::new("/proc").join(pid).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_outlives_a_killed_daemon_and_upgrades_without_a_failed_request()
-> anyhow::Result<()> {
    bounded(
        Duration::from_secs(240),
        "the proxy process scenario",
        scenario(),
    )
    .await?
}

async fn scenario() -> anyhow::Result<()> {
    let sweep = Sweep::new("cli-proxy-process");
    let docker = images::docker().await;
    let dir = tempfile::tempdir()?;
    let registry = Registry::start(RegistryOptions::default()).await?;
    let image = push_v1(&docker, &sweep, &registry, "demo/proxy-process").await?;
    let web = sweep.name("web");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let section = service_section(
        &web,
        &image,
        &sweep.labels(),
        listen,
        Duration::from_secs(10),
    );
    let path = dir.path().join("deployer.toml");
    std::fs::write(
        &path,
        host_config(
            "proxy-process",
            dir.path(),
            free_port(),
            &sweep.name("scope"),
            &[section],
        ),
    )?;
    let socket = dir.path().join("proxy.sock");
    let proxy = ProxyProcess {
        lock: dir.path().join("proxy.sock.lock"),
    };
    let process_mode = [("DEPLOYER_PROXY_MODE", "process")];

    let mut daemon = Daemon::start(&path, &process_mode, dir.path().join("deployer.log"))?;
    eventually(Duration::from_secs(60), "web serving", || async {
        daemon.ensure_running()?;
        Ok((get(&listen.to_string()).await.ok().as_deref() == Some("v1\n")).then_some(()))
    })
    .await?;
    // The deploy is over (watched and reported) before the crash: a crash during a first
    // deploy's watch undoes it on restart, which no proxy can make up for.
    let cli = Cli {
        config: path.clone(),
        token: ("CLI_PROXY_PROCESS_UNUSED", ""),
    };
    eventually(Duration::from_secs(60), "the deploy reported", || async {
        let reports = cli.history().await?;
        Ok(reports
            .iter()
            .any(|r| r["outcome"] == "succeeded")
            .then_some(()))
    })
    .await?;
    let first_pid = proxy.pid().expect("the proxy process wrote its pid");

    // A client loop, one new connection per request, for the whole scenario.
    let stop = Arc::new(AtomicBool::new(false));
    let began = tokio::time::Instant::now();
    let calls = tokio::spawn({
        let stop = stop.clone();
        async move {
            let (mut ok, mut failed, mut errors) = (0u32, 0u32, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                match get(&listen.to_string()).await {
                    Ok(body) if body == "v1\n" => ok += 1,
                    Ok(body) => {
                        failed += 1;
                        errors.push(format!("at {:?}: {body}", began.elapsed()));
                    }
                    Err(error) => {
                        failed += 1;
                        errors.push(format!("at {:?}: {error:#}", began.elapsed()));
                    }
                }
            }
            (ok, failed, errors)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The daemon crashes: the proxy keeps serving, and a new daemon takes the proxy as it is.
    eprintln!("SIGKILL at {:?}", began.elapsed());
    daemon.kill().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut daemon = Daemon::start(&path, &process_mode, dir.path().join("deployer-2.log"))?;
    eventually(
        Duration::from_secs(60),
        "the second daemon using the proxy",
        || async {
            daemon.ensure_running()?;
            Ok(daemon
                .log()
                .contains("using the running proxy process")
                .then_some(()))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A second proxy process cannot take the socket over.
    let second = output({
        let mut c = command(&["proxy", "run", "--socket"]);
        c.arg(&socket)
            .arg("--state")
            .arg(dir.path().join("other.json"));
        c
    })
    .await?;
    assert_eq!(second.code, Some(69), "{second}");
    assert!(second.stderr.contains("already serves"), "{second}");

    // The proxy itself is replaced by a new process, which takes the listening socket over.
    eprintln!("upgrade at {:?}", began.elapsed());
    let upgraded = output({
        let mut c = command(&["proxy", "upgrade", "--socket"]);
        c.arg(&socket);
        c
    })
    .await?;
    assert_eq!(upgraded.code, Some(0), "{upgraded}");
    assert!(upgraded.stdout.contains("proxy upgraded"), "{upgraded}");
    // The new process takes the socket's lock (and writes its pid) just after the answer.
    let new_pid = eventually(Duration::from_secs(10), "the new proxy's pid", || async {
        Ok(proxy.pid().filter(|p| *p != first_pid))
    })
    .await?;
    assert!(
        upgraded.stdout.contains(&format!("pid {new_pid} serves")),
        "{upgraded}"
    );
    eventually(
        Duration::from_secs(40),
        "the old proxy process to exit",
        || async { Ok((!ProxyProcess::alive(&first_pid)).then_some(())) },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The daemon stops; its proxy does not.
    eprintln!("daemon SIGTERM at {:?}", began.elapsed());
    daemon.terminate(Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failed, errors) = calls.await?;
    eprintln!(
        "daemon SIGKILL + restart, proxy upgrade, daemon stop under a client loop: {ok} ok, {failed} failed"
    );
    assert_eq!(failed, 0, "failed requests: {errors:?}");
    assert!(ok > 50, "only {ok} requests");
    assert!(
        ProxyProcess::alive(&new_pid),
        "the proxy stopped with the daemon"
    );
    assert_eq!(get(&listen.to_string()).await?, "v1\n");
    daemon.passed();
    drop(proxy);
    Ok(())
}

/// An HTTP backend answering every request with `body`, on a free loopback port.
async fn tiny_backend(body: &'static str) -> anyhow::Result<SocketAddr> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(1..) = stream.read(&mut buf).await {
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_proxy_started_again_serves_its_routes_at_once() -> anyhow::Result<()> {
    bounded(Duration::from_secs(60), "the proxy restart scenario", async {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("proxy.sock");
        let state = dir.path().join("proxy-state.json");
        let proxy = ProxyProcess {
            lock: dir.path().join("proxy.sock.lock"),
        };
        let start = || {
            let mut c = command(&["proxy", "run", "--socket"]);
            c.arg(&socket).arg("--state").arg(&state);
            tokio::process::Command::from(c)
                .kill_on_drop(true)
                .stderr(std::process::Stdio::null())
                .spawn()
        };
        let call = |request: String| {
            let mut c = command(&["proxy", "call", "--socket"]);
            c.arg(&socket).arg(request);
            output(c)
        };
        let backend = tiny_backend("up").await?;
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut first = start()?;
        eventually(Duration::from_secs(10), "the proxy's socket", || async {
            Ok(call(r#"{"v":1,"op":"hello"}"#.to_owned()).await?.code.filter(|c| *c == 0))
        })
        .await?;
        let route = format!(
            r#"{{"v":1,"op":"set_route","service":"web","route":{{"listen":"{listen}"}}}}"#
        );
        assert_eq!(call(route).await?.code, Some(0));
        let add = format!(
            r#"{{"v":1,"op":"add_backend","service":"web","backend":{{"addr":"{backend}","group":"g1"}}}}"#
        );
        assert_eq!(call(add).await?.code, Some(0));
        let bad = call(r#"{"v":1,"op":"add_backend","service":"nope"}"#.to_owned()).await?;
        assert_eq!(bad.code, Some(1), "{bad}");
        assert!(bad.stdout.contains("bad_request"), "{bad}");
        assert_eq!(get(&listen.to_string()).await?, "up");

        // A supervisor's restart after SIGKILL: the routes come back before the socket answers.
        first.kill().await?;
        let _second = start()?;
        eventually(Duration::from_secs(10), "the restarted proxy serving", || async {
            Ok(get(&listen.to_string()).await.ok().filter(|b| b == "up"))
        })
        .await?;
        let routes = call(r#"{"v":1,"op":"list"}"#.to_owned()).await?;
        assert!(routes.stdout.contains(&backend.to_string()), "{routes}");

        // A corrupt state file is kept aside and the proxy starts empty.
        drop(_second);
        let _ = std::process::Command::new("kill").args(["-KILL", &proxy.pid().unwrap_or_default()]).status();
        tokio::time::sleep(Duration::from_millis(200)).await;
        std::fs::write(&state, b"{ not json")?;
        let _third = start()?;
        eventually(Duration::from_secs(10), "the proxy after a corrupt state", || async {
            Ok(call(r#"{"v":1,"op":"list"}"#.to_owned()).await?.code.filter(|c| *c == 0))
        })
        .await?;
        let routes = call(r#"{"v":1,"op":"list"}"#.to_owned()).await?;
        assert!(routes.stdout.contains(r#""result":[]"#), "{routes}");
        let kept = std::fs::read_dir(dir.path())?
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with("proxy-state.json.corrupt-"));
        assert!(kept, "the corrupt file was kept aside");
        drop(proxy);
        Ok(())
    })
    .await?
}
