//! `deployer run` refusing a bad config before touching anything, and the client commands
//! with no daemon to talk to or with a stand-in for its admin API. No Docker needed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::support::{Output, command, deployer, output};

/// A loopback listener the test holds, so that anything else binding its port fails.
fn hold_port() -> anyhow::Result<(TcpListener, u16)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

#[tokio::test]
async fn run_with_a_bad_config_exits_64_before_binding_or_connecting_anything() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    // The test holds every port the config names: had `run` bound any of them before
    // validating, it would have failed with 69 ("address in use"), not 64. The Docker
    // endpoint does not exist: had it connected first, 69 as well. And the journal's
    // directory would have been created.
    let (_webhooks, webhooks) = hold_port()?;
    let (_admin, admin) = hold_port()?;
    let (_proxy, proxy) = hold_port()?;
    let state = dir.path().join("state");
    let config = |interval: &str| {
        format!(
            r#"[webhooks]
listen = "127.0.0.1:{webhooks}"

[admin]
listen = "127.0.0.1:{admin}"

[docker]
endpoint = "unix:///nonexistent/deployer-test/docker.sock"
journal = "{journal}"

[[service]]
name = "web"
image = "127.0.0.1:5000/demo/app:latest"

[service.proxy]
listen = "127.0.0.1:{proxy}"
container_port = 8080

[service.health]
interval = "{interval}"
"#,
            journal = state.join("journal.redb").display(),
        )
    };
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, config("soon"))?;
    let file_arg = file.to_str().expect("UTF-8 temp path");

    let out = deployer(&["run", "--config", file_arg]).await?;
    assert_eq!(out.code, Some(64), "{out}");
    let expected = format!("{}:20:12: service[0].health.interval: ", file.display());
    assert!(
        out.stderr.contains(&expected),
        "{expected:?} missing\n{out}"
    );
    assert!(!out.stderr.contains("Docker"), "{out}");
    assert!(!state.exists(), "the journal directory was created");

    // The same file made valid gets as far as Docker, which fails first, still before any
    // port is bound: the order is config, Docker, then listeners.
    std::fs::write(&file, config("200ms"))?;
    let out = deployer(&["run", "--config", file_arg]).await?;
    assert_eq!(out.code, Some(69), "{out}");
    assert!(out.stderr.contains("Docker engine"), "{out}");
    assert!(
        out.stderr
            .contains("/nonexistent/deployer-test/docker.sock"),
        "{out}"
    );
    assert!(!state.exists(), "the journal directory was created");
    Ok(())
}

#[tokio::test]
async fn client_commands_without_a_daemon_exit_69_naming_the_admin_address() -> anyhow::Result<()> {
    // A port nobody listens on: bound for a moment to find it, then released.
    let port = hold_port()?.1;
    let admin = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("deployer.toml");
    std::fs::write(&config, format!("[admin]\nlisten = \"{admin}\"\n"))?;
    let config = config.to_str().expect("UTF-8 temp path");

    for args in [
        &["status", "--admin", &admin][..],
        &["history", "--admin", &admin],
        &["status", "--json", "--config", config],
        &["history", "--config", config],
        &["deploy", "web", "--admin", &admin],
        &["rollback", "web", "--config", config],
    ] {
        let out = deployer(args).await?;
        assert_eq!(out.code, Some(69), "{args:?}: {out}");
        let expected = format!("cannot reach the deployer's admin API at http://{admin}");
        assert!(out.stderr.contains(&expected), "{args:?}: {out}");
        assert!(out.stderr.contains("Connection refused"), "{args:?}: {out}");
        assert_eq!(out.stdout, "", "{args:?}: {out}");
    }
    Ok(())
}

#[tokio::test]
async fn text_logs_written_to_a_pipe_carry_no_colour_codes() -> anyhow::Result<()> {
    // The daemon logs its start before it connects to Docker, which does not exist here: the
    // run ends at once with 69, after one text line on stderr (a pipe, not a terminal).
    let dir = tempfile::tempdir()?;
    let (_webhooks, webhooks) = hold_port()?;
    let (_admin, admin) = hold_port()?;
    let file = dir.path().join("deployer.toml");
    std::fs::write(
        &file,
        format!(
            r#"[webhooks]
listen = "127.0.0.1:{webhooks}"

[admin]
listen = "127.0.0.1:{admin}"

[docker]
endpoint = "unix:///nonexistent/deployer-test/docker.sock"
journal = "{journal}"
"#,
            journal = dir.path().join("journal.redb").display(),
        ),
    )?;
    let mut command = command(&["--log-format", "text", "run", "--config"]);
    command.arg(&file).env_remove("NO_COLOR");
    let out = output(command).await?;
    assert_eq!(out.code, Some(69), "{out}");
    assert!(out.stderr.contains("starting deployer"), "{out}");
    assert!(
        !out.stderr.contains('\x1b'),
        "colour codes in a pipe:\n{out:?}"
    );
    Ok(())
}

/// A stand-in for a daemon's admin API on a loopback port: `answer(method, path)` gives each
/// request's status and JSON body. Records every request with its `Authorization` header.
struct FakeAdmin {
    addr: String,
    requests: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: String,
}

type Answer = dyn Fn(&str, &str) -> (u16, serde_json::Value) + Send + Sync;

impl FakeAdmin {
    fn start(
        answer: impl Fn(&str, &str) -> (u16, serde_json::Value) + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let answer: Arc<Answer> = Arc::new(answer);
        let thread = std::thread::spawn({
            let (requests, stop) = (requests.clone(), stop.clone());
            move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        // A broken exchange shows up as the CLI's failure, with its output.
                        let _ = Self::serve(stream, &*answer, &requests);
                    }
                }
            }
        });
        Ok(Self {
            addr,
            requests,
            stop,
            thread: Some(thread),
        })
    }

    /// One request per connection (`Connection: close`): no keep-alive to get right.
    fn serve(
        mut stream: std::net::TcpStream,
        answer: &Answer,
        requests: &Mutex<Vec<Seen>>,
    ) -> anyhow::Result<()> {
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut words = line.split_whitespace();
        let (method, path) = (
            words.next().unwrap_or_default().to_owned(),
            words.next().unwrap_or_default().to_owned(),
        );
        let (mut length, mut authorization, mut content_type) = (0, None, None);
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse()?,
                    "authorization" => authorization = Some(value.trim().to_owned()),
                    "content-type" => content_type = Some(value.trim().to_owned()),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let (status, reply) = answer(&method, &path);
        requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Seen {
                method,
                path,
                authorization,
                content_type,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        let reply = reply.to_string();
        write!(
            stream,
            "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
            reply.len()
        )?;
        stream.flush()?;
        Ok(())
    }

    fn requests(&self) -> Vec<Seen> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for FakeAdmin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = std::net::TcpStream::connect(&self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn digest(byte: &str) -> String {
    format!("sha256:{}", byte.repeat(32))
}

/// A daemon config whose webhook secret and Slack URL cannot be resolved in the CLI's
/// environment; the admin token can.
fn daemon_config(dir: &std::path::Path, admin: &str) -> anyhow::Result<std::path::PathBuf> {
    let file = dir.join("deployer.toml");
    std::fs::write(
        &file,
        format!(
            r#"[webhooks.registry]
token = {{ env = "{UNSET_SECRET}" }}

[admin]
listen = "{admin}"
token = {{ env = "CLI_TEST_ADMIN_TOKEN" }}

[notify.slack]
url = {{ env = "{UNSET_SECRET}_SLACK" }}

[[service]]
name = "web"
image = "127.0.0.1:5000/demo/app:latest"
"#
        ),
    )?;
    Ok(file)
}

const UNSET_SECRET: &str = "DEPLOYER_CLI_TEST_UNSET_WEBHOOK_SECRET";
const ADMIN_TOKEN: &str = "cli-test-admin-token-0123456789";

/// `deployer ARGS` with the admin token in the environment the config file names.
async fn client(args: &[&str]) -> anyhow::Result<Output> {
    let mut command = command(args);
    command
        .env("CLI_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
        .env_remove(UNSET_SECRET)
        .env_remove(format!("{UNSET_SECRET}_SLACK"));
    output(command).await
}

#[tokio::test]
async fn client_commands_read_only_the_admin_section_of_a_daemon_config() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let admin = FakeAdmin::start(|_, path| match path {
        "/api/v1/services" => (
            200,
            json!({"services": [{
                "name": "web", "state": "halted", "live": digest("ab"), "target": digest("cd"),
                "generation": 2, "strategy": "handover", "replicas": 2,
                "image": "127.0.0.1:5000/demo/app:latest",
                "message": "halted: candidate never became healthy",
                "last_report": {"outcome": "rolled_back", "to": digest("cd")}}]}),
        ),
        "/api/v1/fleet" => (200, json!({"statuses": []})),
        _ => (404, json!({"error": "not found"})),
    })?;
    let file = daemon_config(dir.path(), &admin.addr)?;
    let file = file.to_str().expect("UTF-8 temp path");

    let out = client(&["status", "--config", file]).await?;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(!out.stderr.contains(UNSET_SECRET), "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("SERVICE  STATE   LIVE"), "{out}");
    assert!(lines[0].contains("  STRATEGY  REPLICAS  IMAGE  "), "{out}");
    assert!(lines[0].ends_with("  MESSAGE"), "{out}");
    assert!(
        lines[1].contains("  handover  2         127.0.0.1"),
        "{out}"
    );
    assert!(
        lines[1].ends_with("  halted: candidate never became healthy"),
        "{out}"
    );
    // The token the file points at was read and sent; nothing was printed of it.
    let seen = admin.requests();
    assert!(!seen.is_empty());
    for request in &seen {
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {ADMIN_TOKEN}").as_str()),
            "{request:?}"
        );
    }
    assert!(!out.all().contains(ADMIN_TOKEN), "{out}");

    // `--json` keeps every field of the API's answer.
    let out = client(&["status", "--json", "--config", file]).await?;
    assert_eq!(out.code, Some(0), "{out}");
    let status: serde_json::Value = serde_json::from_str(&out.stdout)?;
    assert_eq!(status["services"][0]["replicas"], 2, "{out}");
    assert_eq!(status["services"][0]["strategy"], "handover", "{out}");

    // The daemon's own checks still want every secret.
    let out = client(&["config", "check", file]).await?;
    assert_eq!(out.code, Some(64), "{out}");
    assert!(
        out.stderr.contains(&format!("{UNSET_SECRET} is not set")),
        "{out}"
    );
    Ok(())
}

#[tokio::test]
async fn unresolved_daemon_secrets_do_not_stop_a_client_from_trying_the_admin_api()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let admin = format!("127.0.0.1:{}", hold_port()?.1);
    let file = daemon_config(dir.path(), &admin)?;
    let file = file.to_str().expect("UTF-8 temp path");
    for args in [
        &["status", "--config", file][..],
        &["history", "--config", file],
        &["deploy", "web", "--config", file],
        &["rollback", "web", "--config", file],
    ] {
        let out = client(args).await?;
        assert_eq!(out.code, Some(69), "{args:?}: {out}");
        assert!(
            out.stderr.contains(&format!(
                "cannot reach the deployer's admin API at http://{admin}"
            )),
            "{args:?}: {out}"
        );
        assert!(!out.stderr.contains("is not set"), "{args:?}: {out}");
    }
    Ok(())
}

#[tokio::test]
async fn deploy_failures_name_their_cause_and_exit_by_it() -> anyhow::Result<()> {
    let image = "127.0.0.1:5000/demo/app:v9";
    let cases = [
        (
            404,
            "unknown_service",
            "no service named \"web\"".to_owned(),
            64,
        ),
        (
            404,
            "image_not_found",
            format!("image {image} not found: the registry has no such repository, tag or digest"),
            1,
        ),
        (
            403,
            "image_unauthorized",
            format!("the registry refused to let deployer pull {image}"),
            1,
        ),
        (
            503,
            "registry_unreachable",
            format!("the registry for {image} cannot be reached"),
            69,
        ),
        (
            409,
            "nothing_to_roll_back",
            "service web has no earlier build to roll back to".to_owned(),
            1,
        ),
    ];
    for (status, code, message, exit) in cases {
        let answer = json!({"error": message, "code": code});
        let admin = FakeAdmin::start(move |_, _| (status, answer.clone()))?;
        let out = deployer(&["deploy", "web", "--image", image, "--admin", &admin.addr]).await?;
        assert_eq!(out.code, Some(exit), "{code}: {out}");
        assert_eq!(
            out.stderr,
            format!("deployer: {message}\n"),
            "{code}: {out}"
        );
        assert_eq!(out.stdout, "", "{code}: {out}");
    }
    Ok(())
}

#[tokio::test]
async fn a_failed_rollback_is_shown_by_deploy_and_history() -> anyhow::Result<()> {
    let report = json!({
        "service": "web", "node": "host-a", "image": "127.0.0.1:5000/demo/app:latest",
        "outcome": "failed", "from": digest("ab"), "to": digest("cd"), "revision": 7,
        "reason": "candidate never became healthy",
        "rollback_error": "starting the previous container failed",
        "started_at": 0, "finished_at": 1500, "duration_ms": 1500
    });
    let admin = FakeAdmin::start({
        let report = report.clone();
        move |method, path| match (method, path) {
            ("POST", "/api/v1/services/web/deploy") => (
                202,
                json!({"outcome": "published", "target": {"digest": digest("cd"), "revision": 7}}),
            ),
            ("GET", "/api/v1/services/web") => (
                200,
                json!({"name": "web", "state": "halted", "live": null,
                       "message": "halted: candidate never became healthy",
                       "last_report": report.clone()}),
            ),
            ("GET", p) if p.starts_with("/api/v1/history") => {
                (200, json!({"reports": [report.clone()]}))
            }
            _ => (404, json!({"error": "not found"})),
        }
    })?;

    let out = deployer(&["deploy", "web", "--admin", &admin.addr]).await?;
    assert_eq!(out.code, Some(2), "{out}");
    assert_eq!(
        admin.requests()[0],
        Seen {
            method: "POST".into(),
            path: "/api/v1/services/web/deploy".into(),
            authorization: None,
            // The admin API refuses a state change that is not JSON, even without a body.
            content_type: Some("application/json".into()),
            body: "{}".into(),
        }
    );
    let why =
        "candidate never became healthy; rollback failed: starting the previous container failed";
    assert_eq!(
        out.stdout.lines().last(),
        Some(format!("web: failed, live none: {why}").as_str()),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("halted: halted: candidate never became healthy"),
        "the state line says why\n{out}"
    );
    assert!(
        out.stderr
            .contains(&format!("the deploy ended failed: {why}")),
        "{out}"
    );

    let out = deployer(&["history", "--admin", &admin.addr]).await?;
    assert_eq!(out.code, Some(0), "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].ends_with("REASON"), "{out}");
    assert!(lines[1].ends_with(&format!("1.5s  {why}")), "{out}");
    Ok(())
}

/// Sends `signal` (`HUP`, `TERM`, ...) to process `pid`.
fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

#[tokio::test]
async fn a_sighup_while_starting_does_not_end_the_daemon_and_sigterm_still_stops_it()
-> anyhow::Result<()> {
    // A stand-in Docker engine that accepts and never answers: the daemon stays in its start,
    // where no signal handler used to exist, so a SIGHUP ended it.
    let engine = TcpListener::bind("127.0.0.1:0")?;
    let engine_addr = engine.local_addr()?;
    let (connected_tx, connected) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in engine.incoming().flatten() {
            held.push(stream);
            let _ = connected_tx.send(());
        }
    });
    let dir = tempfile::tempdir()?;
    let (_webhooks, webhooks) = hold_port()?;
    let (_admin, admin) = hold_port()?;
    let file = dir.path().join("deployer.toml");
    std::fs::write(
        &file,
        format!(
            "[webhooks]\nlisten = \"127.0.0.1:{webhooks}\"\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n\
             [docker]\nendpoint = \"tcp://{engine_addr}\"\njournal = \"{}\"\n",
            dir.path().join("journal.redb").display()
        ),
    )?;
    let mut child = command(&["run", "--config"])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let started = connected.recv_timeout(std::time::Duration::from_secs(30));
    if started.is_err() {
        let _ = child.kill();
    }
    started.map_err(|_| anyhow::anyhow!("the daemon never reached the Docker engine"))?;
    send_signal(pid, "HUP")?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    let alive = child.try_wait()?;
    if alive.is_some() {
        let out = child.wait_with_output()?;
        anyhow::bail!(
            "SIGHUP ended the daemon: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    send_signal(pid, "TERM")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            anyhow::bail!("SIGTERM did not stop the starting daemon within 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .map(|mut e| e.read_to_string(&mut stderr));
    assert_eq!(status.code(), Some(0), "{status:?}\n{stderr}");
    assert!(
        stderr.contains("SIGTERM received while starting"),
        "{stderr}"
    );
    Ok(())
}

/// A stand-in Docker engine that says it runs API 1.41 and has no containers: enough for
/// `run` to get past the engine to its listeners and journal.
fn empty_engine() -> anyhow::Result<std::net::SocketAddr> {
    let engine = TcpListener::bind("127.0.0.1:0")?;
    let addr = engine.local_addr()?;
    std::thread::spawn(move || {
        for mut stream in engine.incoming().flatten() {
            let mut reader = BufReader::new(match stream.try_clone() {
                Ok(s) => s,
                Err(_) => continue,
            });
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let body = if request_line.contains("/version") {
                r#"{"ApiVersion":"1.41","MinAPIVersion":"1.12","Version":"20.10.24"}"#
            } else {
                "[]"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(addr)
}

#[tokio::test]
async fn a_port_in_use_or_an_unusable_journal_exits_69_naming_the_key_and_value()
-> anyhow::Result<()> {
    let engine = empty_engine()?;
    let dir = tempfile::tempdir()?;
    let journal = dir.path().join("journal.redb");
    let (_taken, taken) = hold_port()?;
    let free = || hold_port().map(|(_, port)| port);
    let config = |webhooks: u16, admin: u16, proxy: u16, journal: &std::path::Path| {
        format!(
            "[webhooks]\nlisten = \"127.0.0.1:{webhooks}\"\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n\
             [docker]\nendpoint = \"tcp://{engine}\"\njournal = \"{}\"\n\n\
             [[service]]\nname = \"web\"\nimage = \"127.0.0.1:5000/demo/app:latest\"\n\
             [service.proxy]\nlisten = \"127.0.0.1:{proxy}\"\ncontainer_port = 8080\n",
            journal.display()
        )
    };
    let cases = [
        (
            config(free()?, free()?, taken, &journal),
            format!("service[0].proxy.listen = 127.0.0.1:{taken}: "),
        ),
        (
            config(free()?, free()?, free()?, dir.path()),
            format!("docker.journal = {}: ", dir.path().display()),
        ),
        (
            config(taken, free()?, free()?, &journal),
            format!("webhooks.listen = 127.0.0.1:{taken}: "),
        ),
        (
            config(free()?, taken, free()?, &journal),
            format!("admin.listen = 127.0.0.1:{taken}: "),
        ),
    ];
    for (n, (text, expected)) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("deployer-{n}.toml"));
        std::fs::write(&file, text)?;
        let out = deployer(&["run", "--config", file.to_str().expect("UTF-8")]).await?;
        assert_eq!(out.code, Some(69), "{expected}\n{out}");
        assert!(
            out.stderr.contains(&expected),
            "{expected:?} missing\n{out}"
        );
    }
    Ok(())
}
