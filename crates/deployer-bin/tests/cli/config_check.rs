//! `deployer config check FILE` and `--help`: nothing is bound or connected, so these run
//! without Docker.

use std::path::{Path, PathBuf};

use crate::support::{Output, command, deployer, output};

/// A valid config; the line numbers below refer to it.
const BASE: &str = r#"node = "cli-test"

[webhooks]
listen = "127.0.0.1:24500"

[admin]
listen = "127.0.0.1:24501"

[[service]]
name = "web"
image = "127.0.0.1:5000/demo/app:latest"

[service.proxy]
listen = "127.0.0.1:28080"
container_port = 8080
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a config");
    path
}

/// Fails if any of `secrets` shows up in what the command printed.
fn assert_no_secret(out: &Output, secrets: &[&str]) {
    for secret in secrets {
        assert!(!out.all().contains(secret), "a secret was printed\n{out}");
    }
}

/// `deployer config check PATH`.
async fn check(path: &Path) -> anyhow::Result<Output> {
    deployer(&["config", "check", path_str(path)]).await
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

#[tokio::test]
async fn a_valid_config_passes_with_a_one_line_summary() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = write(dir.path(), "ok.toml", BASE);
    let out = check(&file).await?;
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        out.stdout,
        format!("{}: ok (1 service, coordinator memory)\n", file.display()),
        "{out}"
    );
    assert_eq!(out.stderr, "", "{out}");
    Ok(())
}

#[tokio::test]
async fn bad_configs_exit_64_naming_file_line_column_and_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // (case, config, line, column, key, problem)
    let cases = [
        (
            "unknown key",
            BASE.replace(
                "container_port = 8080",
                "container_port = 8080\nprotocl = \"tcp\"",
            ),
            16,
            1,
            "service[0].proxy.protocl",
            "unknown field `protocl`",
        ),
        (
            "bad value",
            format!("{BASE}\n[service.health]\ninterval = \"fast\"\n"),
            18,
            12,
            "service[0].health.interval",
            "invalid value: string \"fast\", expected a duration",
        ),
        (
            "duplicate service",
            format!(
                "{BASE}\n[[service]]\nname = \"web\"\nimage = \"127.0.0.1:5000/demo/other:latest\"\n"
            ),
            18,
            8,
            "service[1].name",
            "\"web\" is defined twice (first as service[0])",
        ),
        (
            "port clash",
            BASE.replace("127.0.0.1:28080", "127.0.0.1:24501"),
            14,
            10,
            "service[0].proxy.listen",
            "127.0.0.1:24501 clashes with admin.listen",
        ),
    ];
    for (n, (case, text, line, column, key, problem)) in cases.into_iter().enumerate() {
        let file = write(dir.path(), &format!("bad-{n}.toml"), &text);
        let out = check(&file).await?;
        assert_eq!(out.code, Some(64), "{case}: {out}");
        let expected = format!("{}:{line}:{column}: {key}: {problem}", file.display());
        assert!(
            out.stderr.contains(&expected),
            "{case}: expected {expected:?} in stderr\n{out}"
        );
        assert_eq!(out.stdout, "", "{case}: {out}");
    }
    Ok(())
}

#[tokio::test]
async fn every_problem_is_listed_not_only_the_first() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let text = format!("{BASE}\n[[service]]\nname = \"web\"\nimage = \"x/y:latest\"\n")
        .replace("127.0.0.1:28080", "127.0.0.1:24501");
    let file = write(dir.path(), "two.toml", &text);
    let out = check(&file).await?;
    assert_eq!(out.code, Some(64), "{out}");
    let f = file.display();
    for expected in [
        format!("{f}:18:8: service[1].name: "),
        format!("{f}:14:10: service[0].proxy.listen: "),
    ] {
        assert!(
            out.stderr.contains(&expected),
            "{expected:?} missing\n{out}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_missing_or_weak_secret_exits_64_naming_the_key_never_a_value() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let admin_secret = "sentinel-admin-token-4f9a2c7d";
    let text = BASE.replace(
        "listen = \"127.0.0.1:24501\"",
        "listen = \"127.0.0.1:24501\"\ntoken = { env = \"CLI_TEST_ADMIN_TOKEN\" }",
    ) + "\n[webhooks.registry]\ntoken = { env = \"CLI_TEST_REGISTRY_TOKEN\" }\n";
    let file = write(dir.path(), "secrets.toml", &text);
    let check_with = |registry_token: Option<&str>| {
        let mut check = command(&["config", "check", path_str(&file)]);
        check
            .env("CLI_TEST_ADMIN_TOKEN", admin_secret)
            .env_remove("CLI_TEST_REGISTRY_TOKEN");
        if let Some(token) = registry_token {
            check.env("CLI_TEST_REGISTRY_TOKEN", token);
        }
        output(check)
    };

    // Missing: the key and the variable are named, with the file position.
    let out = check_with(None).await?;
    assert_eq!(out.code, Some(64), "{out}");
    let expected = format!(
        "{}:19:9: webhooks.registry.token: environment variable CLI_TEST_REGISTRY_TOKEN is not set",
        file.display()
    );
    assert!(out.stderr.contains(&expected), "{out}");
    assert_no_secret(&out, &[admin_secret]);

    // Too short for the webhook endpoint (checked by the adapter's own validation, as `run`
    // does): rejected without echoing it.
    let weak = "weak-sekrit-1";
    let out = check_with(Some(weak)).await?;
    assert_eq!(out.code, Some(64), "{out}");
    assert!(out.stderr.contains("webhooks.registry"), "{out}");
    assert!(out.stderr.contains("at least 16 characters"), "{out}");
    assert_no_secret(&out, &[weak, admin_secret]);

    let strong = "strong-registry-token-9b8e1f";
    let out = check_with(Some(strong)).await?;
    assert_eq!(out.code, Some(0), "{out}");
    assert_no_secret(&out, &[strong, admin_secret]);
    Ok(())
}

#[tokio::test]
async fn help_works_for_every_subcommand_and_bad_flags_exit_64() -> anyhow::Result<()> {
    let commands: [&[&str]; 8] = [
        &[],
        &["run"],
        &["status"],
        &["deploy"],
        &["rollback"],
        &["history"],
        &["config"],
        &["config", "check"],
    ];
    for words in commands {
        let args: Vec<&str> = words.iter().copied().chain(["--help"]).collect();
        let out = deployer(&args).await?;
        assert_eq!(out.code, Some(0), "{args:?}: {out}");
        let usage = ["Usage: deployer"]
            .into_iter()
            .chain(words.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(out.stdout.contains(&usage), "{args:?}: no {usage:?}\n{out}");
    }
    // Bad usage is bad input (64), never 2, which means "the deploy failed".
    for args in [
        &["deploy"][..],
        &["--no-such-flag"],
        &["history", "--limit", "many"],
    ] {
        let out = deployer(args).await?;
        assert_eq!(out.code, Some(64), "{args:?}: {out}");
        assert!(out.stderr.starts_with("error: "), "{args:?}: {out}");
    }
    Ok(())
}

#[tokio::test]
async fn devices_and_huge_files_are_refused_without_being_read() -> anyhow::Result<()> {
    // `config check /dev/urandom` once read forever.
    let out = check(Path::new("/dev/urandom")).await?;
    assert_eq!(out.code, Some(64), "{out}");
    assert_eq!(
        out.stderr, "deployer: /dev/urandom: cannot read the config file: not a regular file\n",
        "{out}"
    );
    let dir = tempfile::tempdir()?;
    let big = dir.path().join("big.toml");
    std::fs::write(&big, format!("{BASE}{}", "#\n".repeat(1 << 20)))?;
    let out = check(&big).await?;
    assert_eq!(out.code, Some(64), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "{}: cannot read the config file: 2097378 bytes: larger than the limit of 1024 KiB",
            big.display()
        )),
        "{out}"
    );
    Ok(())
}

#[tokio::test]
async fn durations_and_counts_run_cannot_hold_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let text = BASE.replace(
        "container_port = 8080\n",
        "container_port = 8080\n\n[service.health]\ninterval = \"18446744073709551615s\"\n",
    );
    let file = write(dir.path(), "forever.toml", &text);
    let out = check(&file).await?;
    assert_eq!(out.code, Some(64), "{out}");
    assert_eq!(
        out.stderr,
        format!(
            "deployer: {}:18:12: service[0].health.interval: must be from 10ms to 1h, not 18446744073709551615s\n",
            file.display()
        ),
        "{out}"
    );
    Ok(())
}

#[tokio::test]
async fn admin_hosts_are_names_or_name_and_port() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let good = BASE.replace(
        "listen = \"127.0.0.1:24501\"",
        "listen = \"127.0.0.1:24501\"\nhosts = [\"deploy.internal\", \"deploy.example.com:8443\"]",
    );
    let out = check(&write(dir.path(), "good.toml", &good)).await?;
    assert_eq!(out.code, Some(0), "{out}");
    let bad = BASE.replace(
        "listen = \"127.0.0.1:24501\"",
        "listen = \"127.0.0.1:24501\"\nhosts = [\"deploy.internal\", \"http://deploy.internal/\"]",
    );
    let out = check(&write(dir.path(), "bad.toml", &bad)).await?;
    assert_eq!(out.code, Some(64), "{out}");
    assert!(
        out.stderr.contains(
            "admin.hosts[1]: \"http://deploy.internal/\" is not a host name or host:port"
        ),
        "{out}"
    );
    Ok(())
}
