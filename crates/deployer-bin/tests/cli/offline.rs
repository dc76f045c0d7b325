//! `deployer run` refusing a bad config before touching anything, and the client commands
//! with no daemon to talk to. No Docker needed.

use std::net::TcpListener;

use crate::support::{command, deployer, output};

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
