//! Config parsing and validation: every rejection names file, line, column and key.

use std::time::Duration;

use deployer_core::service::{Probe, Strategy};

use super::secret::Secret;
use super::*;

fn env(vars: &[(&str, &str)]) -> MapEnv {
    MapEnv::of(vars)
}

fn check(text: &str) -> Result<Settings, ConfigErrors> {
    parse(
        "deployer.toml",
        text,
        &Overrides::default(),
        &env(&[("TOKEN", "s3cret-s3cret-s3cret")]),
    )
}

fn errors(text: &str) -> Vec<String> {
    check(text)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

const FULL: &str = r#"
node = "host-a"
max_parallel = 2
shutdown_grace = "30s"
log_format = "json"
coordinator = "memory"

[webhooks]
listen = "127.0.0.1:4500"
path = "/hooks"

[webhooks.registry]
token = { env = "TOKEN" }

[webhooks.github]
secret = { env = "TOKEN" }

[admin]
listen = "127.0.0.1:4501"
token = { env = "TOKEN" }

[docker]
journal = "/tmp/journal.redb"
keep_images = 5

[poll]
interval = "12h"

[defaults]
stop = "5s"

[[service]]
name = "web"
image = "127.0.0.1:5000/demo/app:latest"
replicas = 2
env = { GREETING = "hello" }

[service.proxy]
listen = "127.0.0.1:8080"
container_port = 8080

[service.health]
kind = "http"
path = "/health"
interval = "500ms"
deadline = "30s"

[[service]]
name = "worker"
image = "demo/worker"
strategy = "recreate"
ports = ["127.0.0.1:9000:9000"]
"#;

#[test]
fn a_full_config_validates() {
    let s = check(FULL).unwrap();
    assert_eq!(s.node, "host-a");
    assert_eq!(s.max_parallel, 2);
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.webhooks.hooks.len(), 2);
    assert_eq!(
        s.admin.token.as_ref().map(Secret::expose),
        Some("s3cret-s3cret-s3cret")
    );
    assert_eq!(s.services.len(), 2);
    let web = &s.services[0];
    assert_eq!(web.replicas(), 2);
    assert!(matches!(web.strategy(), Strategy::Handover(_)));
    assert_eq!(
        web.health().probe(),
        &Probe::Http {
            path: "/health".into(),
            status: 200
        }
    );
    assert_eq!(
        web.timeouts().stop,
        Duration::from_secs(5),
        "[defaults] applies"
    );
    assert_eq!(
        s.services[1].image().to_string(),
        "docker.io/demo/worker:latest"
    );
    assert!(
        format!("{:?}", s.admin).contains("***"),
        "secrets never print"
    );
    assert!(!format!("{s:?}").contains("s3cret"));
}

#[test]
fn an_empty_file_is_the_embedded_default() {
    let s = check("").unwrap();
    assert!(matches!(s.coordinator, CoordinatorSettings::Memory));
    assert_eq!(s.webhooks.listen.to_string(), DEFAULT_WEBHOOK_LISTEN);
    assert_eq!(s.admin.listen.to_string(), DEFAULT_ADMIN_LISTEN);
    assert!(
        s.webhooks.hooks.is_empty(),
        "no endpoint is open without a secret"
    );
}

#[test]
fn unknown_keys_name_file_line_column_and_key() {
    let e = errors("node = \"a\"\n[[service]]\nname = \"web\"\nimage = \"app\"\nreplica = 2\n");
    assert_eq!(
        e,
        [
            "deployer.toml:5:1: service[0].replica: unknown field `replica`, expected one of `name`, `image`, `strategy`, `replicas`, `proxy`, `canary`, `health`, `timeouts`, `retry`, `build`, `env`, `command`, `entrypoint`, `volumes`, `labels`, `ports`, `network`, `restart`, `user`, `workdir`, `memory_bytes`, `cpus`"
        ]
    );
    let e = errors("[webhook]\nlisten = \"127.0.0.1:1\"\n");
    assert!(
        e[0].starts_with("deployer.toml:1:2: webhook: unknown field `webhook`"),
        "{e:?}"
    );
}

#[test]
fn bad_values_name_the_key() {
    let e = errors(
        "[[service]]\nname = \"web\"\nimage = \"app\"\n[service.health]\ninterval = \"5 parsecs\"\n",
    );
    assert!(
        e[0].starts_with("deployer.toml:5:12: service[0].health.interval:"),
        "{e:?}"
    );
    let e = errors("[[service]]\nname = \"web\"\nimage = \"App\"\n");
    assert_eq!(
        e,
        [
            "deployer.toml:3:9: service[0].image: invalid image reference \"App\": repository name \"App\" must be lowercase"
        ]
    );
    let e = errors("[[service]]\nname = \"web\"\nimage = \"app\"\nreplicas = 0\n");
    assert_eq!(
        e,
        ["deployer.toml:4:12: service[0].replicas: must be from 1 to 64, not 0"]
    );
    let e = errors(
        "[[service]]\nname = \"web\"\nimage = \"app\"\n[service.proxy]\nlisten = \"127.0.0.1:80\"\ncontainer_port = 80\n[service.health]\ninterval = \"10s\"\ndeadline = \"2s\"\n",
    );
    assert!(
        e[0].starts_with("deployer.toml:9:12: service[0].health.deadline: 2s is shorter"),
        "{e:?}"
    );
}

#[test]
fn duplicate_services_and_port_clashes_are_rejected() {
    let text = "[[service]]\nname = \"web\"\nimage = \"a\"\n[service.proxy]\nlisten = \"0.0.0.0:8080\"\ncontainer_port = 80\n\n[[service]]\nname = \"web\"\nimage = \"b\"\n\n[[service]]\nname = \"api\"\nimage = \"c\"\n[service.proxy]\nlisten = \"127.0.0.1:8080\"\ncontainer_port = 80\n";
    let e = errors(text);
    assert!(
        e.contains(
            &"deployer.toml:9:8: service[1].name: \"web\" is defined twice (first as service[0])"
                .to_owned()
        ),
        "{e:?}"
    );
    assert!(e.contains(&"deployer.toml:16:10: service[2].proxy.listen: 127.0.0.1:8080 clashes with service[0].proxy.listen".to_owned()), "{e:?}");
    let e = errors("[admin]\nlisten = \"127.0.0.1:4500\"\n");
    assert_eq!(
        e,
        ["deployer.toml:2:10: admin.listen: 127.0.0.1:4500 clashes with webhooks.listen"]
    );
}

#[test]
fn secrets_are_read_by_reference_and_never_echoed() {
    let e = errors("[admin]\ntoken = { env = \"MISSING\" }\n");
    assert_eq!(
        e,
        ["deployer.toml:2:9: admin.token: environment variable MISSING is not set"]
    );
    let e = errors("[admin]\nlisten = \"0.0.0.0:4501\"\n");
    assert!(
        e[0].contains(
            "admin.token: required when admin.listen (0.0.0.0:4501) is not a loopback address"
        ),
        "{e:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "from-a-file\n").unwrap();
    let s = check(&format!("[admin]\ntoken = {{ file = {:?} }}\n", file)).unwrap();
    assert_eq!(s.admin.token.unwrap().expose(), "from-a-file");
    let e = errors("[webhooks.registry]\ntoken = { env = \"TOKEN\", file = \"/x\" }\n");
    assert!(e[0].contains("give either env or file"), "{e:?}");
}

#[test]
fn an_endpoint_needs_a_secret_or_an_explicit_opening() {
    let e = errors("[webhooks.dockerhub]\n");
    assert!(
        e[0].contains("webhooks.dockerhub.token: set a token, or insecure = true"),
        "{e:?}"
    );
    assert!(check("[webhooks.generic]\ninsecure = true\n").is_ok());
    let e = errors("[webhooks.github]\ntoken = \"x\"\n");
    assert!(
        e.iter()
            .any(|e| e.contains("webhooks.github.token: github signs with a secret")),
        "{e:?}"
    );
}

#[test]
fn etcd_needs_nodes_and_the_flag_selects_it() {
    let e = errors("coordinator = \"etcd\"\n");
    assert!(e[0].contains("etcd.nodes"), "{e:?}");
    let e = errors("coordinator = \"etcd\"\n[etcd]\nnodes = [\"127.0.0.1:2379\"]\n");
    assert!(
        e[0].starts_with("deployer.toml:3:10: etcd.nodes[0]: \"127.0.0.1:2379\" must be an http"),
        "{e:?}"
    );
    let overrides = Overrides {
        etcd_nodes: Some(vec!["http://127.0.0.1:2379".into()]),
        etcd_prefix: Some("/prod/deployer".into()),
        kill_timeout: Some(Duration::from_secs(3)),
        ..Overrides::default()
    };
    let s = parse(
        "f.toml",
        "[[service]]\nname = \"w\"\nimage = \"a\"\n",
        &overrides,
        &env(&[]),
    )
    .unwrap();
    let CoordinatorSettings::Etcd(etcd) = s.coordinator else {
        panic!("etcd selected by --etcd-nodes")
    };
    assert_eq!(etcd.prefix, "/prod/deployer");
    assert!(etcd.strong_consistency);
    assert_eq!(s.services[0].timeouts().stop, Duration::from_secs(3));
}

#[test]
fn errors_caused_by_a_flag_name_the_flag() {
    let overrides = Overrides {
        max_threads: Some(0),
        ..Overrides::default()
    };
    let e = parse("f.toml", "", &overrides, &env(&[]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "f.toml: max_parallel: must be from 1 to 64, not 0 (set by --max-threads)"
    );
}

#[test]
fn the_registry_flag_completes_short_names() {
    let overrides = Overrides {
        registry: Some("registry.local:5000".into()),
        ..Overrides::default()
    };
    let s = parse("f.toml", "[[service]]\nname = \"w\"\nimage = \"team/app:v1\"\n[[service]]\nname = \"x\"\nimage = \"ghcr.io/o/app\"\n", &overrides, &env(&[])).unwrap();
    assert_eq!(
        s.services[0].image().to_string(),
        "registry.local:5000/team/app:v1"
    );
    assert_eq!(s.services[1].image().to_string(), "ghcr.io/o/app:latest");
}

#[test]
fn inline_secrets_work_with_a_located_warning() {
    let s = check("node = \"a\"\n[admin]\ntoken = \"an-inline-admin-token\"\n").unwrap();
    let warnings: Vec<String> = s.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .starts_with("deployer.toml:3:9: admin.token: secret written in the config file"),
        "{warnings:?}"
    );
    assert!(
        !warnings[0].contains("an-inline-admin-token"),
        "the warning never quotes the secret"
    );
}

#[test]
fn webhook_secrets_follow_the_endpoints_rules_with_the_configs_own_keys() {
    let e = errors("[webhooks.registry]\ntoken = \"short\"\n");
    assert_eq!(
        e,
        ["deployer.toml:2:9: webhooks.registry.token: must be at least 16 characters"]
    );
    let e = errors("[webhooks.dockerhub]\ntoken = \"has/a/slash/in/it/here\"\n");
    assert_eq!(
        e,
        [
            "deployer.toml:2:9: webhooks.dockerhub.token: travels in a URL: use only A-Z a-z 0-9 . _ ~ -"
        ]
    );
    assert!(check("[webhooks.github]\nsecret = \"any/characters+are=fine\"\n").is_ok());
}

#[test]
fn a_proxy_can_have_threads_of_its_own() {
    let text = |workers: u32| {
        format!(
            "[[service]]\nname = \"web\"\nimage = \"app\"\n[service.proxy]\nlisten = \"127.0.0.1:8080\"\ncontainer_port = 80\nworkers = {workers}\n"
        )
    };
    let s = check(&text(2)).unwrap();
    assert_eq!(
        s.services[0].strategy().handover().map(|h| h.workers()),
        Some(2)
    );
    let e = errors(&text(100));
    assert_eq!(
        e,
        ["deployer.toml:7:11: service[0].proxy.workers: must be from 0 to 64, not 100"]
    );
}

#[test]
fn values_run_cannot_hold_are_refused_with_file_line_and_key() {
    // Each of these passed `config check` once, then panicked or aborted `run`.
    const FOREVER: &str = "18446744073709551615s";
    let text = format!(
        "[poll]\ninterval = \"{FOREVER}\"\n\n[defaults]\nstop = \"{FOREVER}\"\ndrain = \"{FOREVER}\"\n\n\
         [[service]]\nname = \"a\"\nimage = \"app\"\nreplicas = 1000000000\n\n\
         [[service]]\nname = \"b\"\nimage = \"app\"\n[service.proxy]\nlisten = \"127.0.0.1:8080\"\ncontainer_port = 80\n\
         [service.health]\ndeadline = \"{FOREVER}\"\n\n\
         [[service]]\nname = \"c\"\nimage = \"app\"\n[service.proxy]\nlisten = \"127.0.0.1:8081\"\ncontainer_port = 80\n\
         [service.health]\ntimeout = \"{FOREVER}\"\n"
    );
    let not = format!("not {FOREVER}");
    assert_eq!(
        errors(&text),
        [
            format!("deployer.toml:2:12: poll.interval: must be from 1m to 7d, {not}"),
            format!("deployer.toml:5:8: defaults.stop: must be from 0s to 1h, {not}"),
            format!("deployer.toml:6:9: defaults.drain: must be from 0s to 1h, {not}"),
            "deployer.toml:11:12: service[0].replicas: must be from 1 to 64, not 1000000000"
                .to_owned(),
            format!(
                "deployer.toml:20:12: service[1].health.deadline: must be from 10ms to 24h, {not}"
            ),
            format!(
                "deployer.toml:29:11: service[2].health.timeout: must be from 10ms to 1h, {not}"
            ),
        ]
    );
    let e =
        errors("[[service]]\nname = \"web\"\nimage = \"app\"\n[service.timeouts]\nstop = \"2h\"\n");
    assert_eq!(
        e,
        ["deployer.toml:5:8: service[0].timeouts.stop: must be from 0s to 1h, not 2h"]
    );
    let e = errors("[poll]\nmin_interval = \"1ms\"\n");
    assert_eq!(
        e,
        ["deployer.toml:2:16: poll.min_interval: must be from 10ms to 1h, not 1ms"]
    );
}

#[test]
fn secrets_from_the_environment_lose_their_trailing_newline() {
    let s = parse(
        "deployer.toml",
        "[admin]\ntoken = { env = \"ADMIN\" }\n[webhooks.registry]\ntoken = { env = \"HOOK\" }\n",
        &Overrides::default(),
        &env(&[
            ("ADMIN", "an-admin-token-0123\n"),
            ("HOOK", "a-registry-token-0123 \r\n"),
        ]),
    )
    .unwrap();
    assert_eq!(
        s.admin.token.as_ref().map(Secret::expose),
        Some("an-admin-token-0123")
    );
    assert_eq!(
        s.webhooks.hooks[0].secret.as_ref().map(Secret::expose),
        Some("a-registry-token-0123")
    );
    let e = errors_with("[admin]\ntoken = { env = \"BLANK\" }\n", &[("BLANK", "\n")]);
    assert_eq!(e, ["deployer.toml:2:9: admin.token: the secret is empty"]);
}

fn errors_with(text: &str, vars: &[(&str, &str)]) -> Vec<String> {
    parse("deployer.toml", text, &Overrides::default(), &env(vars))
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn services_share_a_listener_only_when_routed_by_host_or_path() {
    let service = |name: &str, routing: &str| {
        format!(
            "[[service]]\nname = \"{name}\"\nimage = \"{name}\"\n[service.proxy]\nlisten = \"127.0.0.1:8080\"\ncontainer_port = 80\n{routing}\n"
        )
    };
    let shared = [
        service("shop", "hosts = [\"shop.example.com\"]"),
        service("blog", "hosts = [\"*.blog.example.com\"]"),
        service(
            "api",
            "hosts = [\"shop.example.com\"]\npath_prefix = \"/api\"",
        ),
        service("rest", ""),
    ]
    .concat();
    let settings = check(&shared).expect("three routed services and one catch-all share :8080");
    let api = settings.services[2]
        .strategy()
        .handover()
        .expect("handover");
    assert_eq!(api.path_prefix(), Some("/api"));

    let two_owners = [service("a", ""), service("b", "")].concat();
    let e = errors(&two_owners);
    assert!(
        e.iter()
            .any(|e| e.contains("service[1].proxy.listen") && e.contains("only with proxy.hosts")),
        "{e:?}"
    );

    let same_hosts = [
        service("a", "hosts = [\"x.example.com\"]"),
        service("b", "hosts = [\"X.example.com\"]"),
    ]
    .concat();
    let e = errors(&same_hosts);
    assert!(
        e.iter()
            .any(|e| e.contains("service[1].proxy.hosts") && e.contains("same hosts")),
        "{e:?}"
    );

    let e = errors(&service("a", "hosts = [\"bad host\"]"));
    assert!(
        e.iter()
            .any(|e| e.contains("service[0].proxy.hosts") && e.contains("not a DNS name")),
        "{e:?}"
    );
    let e = errors(&service("a", "path_prefix = \"api\"\nprotocol = \"http\""));
    assert!(e.iter().any(|e| e.contains("proxy.path_prefix")), "{e:?}");
}

#[test]
fn a_canary_needs_its_section_and_an_http_proxy() {
    let service = |strategy: &str, extra: &str| {
        format!(
            "[[service]]\nname = \"web\"\nimage = \"web\"\nstrategy = \"{strategy}\"\n[service.proxy]\nlisten = \"127.0.0.1:8080\"\ncontainer_port = 80\n{extra}\n"
        )
    };
    let ok = check(&service(
        "canary",
        "[service.canary]\npercent = 10\nhold = \"5m\"\nheader = \"x-canary\"",
    ))
    .expect("a canary");
    let canary = ok.services[0]
        .strategy()
        .canary()
        .expect("the canary strategy");
    assert_eq!((canary.percent(), canary.hold().as_secs()), (10, 300));
    let e = errors(&service("canary", ""));
    assert!(
        e.iter()
            .any(|e| e.contains("service[0].canary") && e.contains("needs a [service.canary]")),
        "{e:?}"
    );
    let e = errors(&service(
        "canary",
        "[service.canary]\npercent = 0\nhold = \"5m\"",
    ));
    assert!(e.iter().any(|e| e.contains("canary.percent")), "{e:?}");
    let e = errors(&service(
        "handover",
        "[service.canary]\npercent = 10\nhold = \"5m\"",
    ));
    assert!(
        e.iter().any(|e| e.contains("only the canary strategy")),
        "{e:?}"
    );
    let e = errors(&service(
        "canary",
        "protocol = \"tcp\"\n[service.canary]\npercent = 10\nhold = \"5m\"",
    ));
    assert!(e.iter().any(|e| e.contains("splits HTTP")), "{e:?}");
}

#[test]
fn a_redirect_to_https_needs_tls_and_another_address() {
    let service = |proxy: &str| {
        format!(
            "[[service]]\nname = \"web\"\nimage = \"web\"\n[service.proxy]\nlisten = \"127.0.0.1:8443\"\ncontainer_port = 80\n{proxy}\n"
        )
    };
    let e = errors(&service("redirect_from = \"127.0.0.1:8080\""));
    assert!(
        e.iter()
            .any(|e| e.contains("proxy.redirect_from") && e.contains("needs proxy.tls")),
        "{e:?}"
    );
}
