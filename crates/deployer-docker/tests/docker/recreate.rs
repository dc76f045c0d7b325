//! The recreate strategy keeps every config field of the container it replaces, and rolls
//! back by starting the kept container again.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};
use deployer_core::Outcome;
use deployer_core::service::{ContainerTemplate, HealthCheck, Probe, Strategy, Timeouts};
use deployer_testkit::images::{self, App, HTTP_PORT};
use deployer_testkit::{Sweep, net};

use crate::support::{
    Harness, Leftover, bounded, build_image, eventually, fetch_body, inspect, run_container, tag_as,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_keeps_every_config_field_and_rolls_back_to_the_kept_container()
-> anyhow::Result<()> {
    bounded(Duration::from_secs(120), "recreate", async {
        let sweep = Sweep::new("recreate");
        let docker = images::docker().await;
        let (v1, _) = build_image(&docker, &sweep, "rc", "v1", App::http("v1"), false).await?;
        let (_, id2) = build_image(&docker, &sweep, "rc", "v2", App::http("v2"), false).await?;
        let tracked = v1.with_tag("live")?;
        tag_as(&docker, &v1.to_string(), &tracked).await?;

        let network = sweep.name("net");
        docker
            .create_network(bollard::models::NetworkCreateRequest {
                name: network.clone(),
                labels: Some(sweep.labels().into_iter().collect()),
                ..Default::default()
            })
            .await?;
        let _network_guard = Leftover::network(&sweep, &network);
        let volume = sweep.name("vol");
        docker
            .create_volume(bollard::models::VolumeCreateOptions {
                name: Some(volume.clone()),
                labels: Some(sweep.labels().into_iter().collect()),
                ..Default::default()
            })
            .await?;
        let _volume_guard = Leftover::volume(&sweep, &volume);
        let host_dir = tempfile::tempdir()?;
        let port = net::free_port();
        let service = sweep.name("rc");
        let mut labels: HashMap<String, String> = sweep.labels().into_iter().collect();
        labels.insert("deployer.service".into(), service.clone());
        labels.insert("team".into(), "core".into());
        let body = ContainerCreateBody {
            image: Some(tracked.to_string()),
            hostname: Some("custom-host".into()),
            user: Some("1000:1000".into()),
            working_dir: Some("/www".into()),
            env: Some(vec!["MODE=prod".into(), "EXTRA=1".into()]),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec![format!("exec httpd -f -p {HTTP_PORT} -h /www")]),
            labels: Some(labels),
            exposed_ports: Some(HashMap::from([(
                format!("{HTTP_PORT}/tcp"),
                HashMap::new(),
            )])),
            volumes: Some(HashMap::from([("/anon".to_owned(), HashMap::new())])),
            host_config: Some(HostConfig {
                binds: Some(vec![
                    format!("{}:/host:ro", host_dir.path().display()),
                    format!("{volume}:/named"),
                ]),
                port_bindings: Some(HashMap::from([(
                    format!("{HTTP_PORT}/tcp"),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(port.to_string()),
                    }]),
                )])),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::ON_FAILURE),
                    maximum_retry_count: Some(3),
                }),
                memory: Some(64 * 1024 * 1024),
                nano_cpus: Some(500_000_000),
                network_mode: Some(network.clone()),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.clone(),
                    EndpointSettings {
                        aliases: Some(vec!["web-alias".into()]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        run_container(&docker, &service, body).await?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        eventually(
            Duration::from_secs(10),
            "the hand-made container to answer",
            || async { fetch_body(addr).await.ok() },
        )
        .await?;
        let before = inspect(&docker, &service).await?;

        let health = HealthCheck::new(
            Probe::Http {
                path: "/health".into(),
                status: 200,
            },
            Duration::from_millis(100),
            Duration::from_secs(1),
            Duration::from_secs(3),
            1,
        )?;
        let spec = deployer_core::ServiceSpec::builder(&service, tracked.clone())
            .strategy(Strategy::Recreate)
            .health(health)
            .timeouts(Timeouts {
                fetch: Duration::from_secs(30),
                start: Duration::from_secs(20),
                stop: Duration::from_secs(1),
                drain: Duration::from_secs(1),
            })
            .template(ContainerTemplate {
                ports: vec![format!("127.0.0.1:{port}:{HTTP_PORT}")],
                labels: sweep.labels().into_iter().collect(),
                ..Default::default()
            })
            .build()?;
        let harness = Harness::start(&docker, vec![spec]).await?;
        let rev = harness.publish(&tracked, &id2).await?;
        let report = harness.report(rev, Duration::from_secs(40)).await?;
        assert_eq!(report.outcome, Outcome::Succeeded, "{report:?}");
        assert_eq!(fetch_body(addr).await?, "v2\n");

        let after = inspect(&docker, &service).await?;
        assert_ne!(after.id, before.id, "a new container");
        assert_eq!(
            after.image.as_deref(),
            Some(id2.as_str()),
            "runs the new image"
        );
        assert_same_config(&before, &after);
        // The anonymous volume now travels by name from generation to generation: remove it
        // at the end of the test (a deployment keeps it, that is the point).
        let _anonymous: Vec<Leftover> = after
            .mounts
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.destination.as_deref() == Some("/anon"))
            .filter_map(|m| m.name)
            .map(|name| Leftover::volume(&sweep, &name))
            .collect();
        let after_labels = after.config.as_ref().unwrap().labels.clone().unwrap();
        assert_eq!(
            after_labels.get("deployer.generation").map(String::as_str),
            Some("1")
        );
        let env = after.config.as_ref().unwrap().env.clone().unwrap();
        assert!(
            env.iter().any(|e| e == &format!("DEPLOYER_DIGEST={id2}")),
            "{env:?}"
        );
        assert!(
            env.iter()
                .any(|e| e == &format!("DEPLOYER_SERVICE={service}")),
            "{env:?}"
        );
        assert!(
            inspect(&docker, &before.id.clone().unwrap()).await.is_err(),
            "the old container is removed"
        );

        // A build whose health endpoint is gone (the copied command still runs httpd, so the
        // image itself must be broken): the kept container comes back under its name.
        let never = broken_build(&docker, &tracked).await?;
        let _broken = Leftover::image(&sweep, never.as_str());
        let rev = harness.publish(&tracked, never.as_str()).await?;
        let report = harness.report(rev, Duration::from_secs(40)).await?;
        assert_eq!(report.outcome, Outcome::RolledBack, "{report:?}");
        assert_eq!(fetch_body(addr).await?, "v2\n");
        let back = inspect(&docker, &service).await?;
        assert_eq!(back.id, after.id, "the kept container runs again");
        assert_same_config(&before, &back);
        let all = crate::support::containers_of(&docker, &service).await?;
        assert_eq!(
            all,
            vec![(service.clone(), true)],
            "the failed candidate is removed"
        );
        harness.stop().await
    })
    .await?
}

/// v2 without `/health`, built from a Dockerfile on top of it (it inherits the sweep labels).
async fn broken_build(
    docker: &bollard::Docker,
    tracked: &deployer_core::ImageRef,
) -> anyhow::Result<deployer_core::Digest> {
    use deployer_core::ports::{ImageSource, NoProgress};
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN rm /www/health\n",
            tracked.with_tag("v2")?.familiar()
        ),
    )?;
    let source = deployer_docker::DockerImageSource::new(
        docker.clone(),
        deployer_docker::Credentials::none(),
    );
    let spec = deployer_core::service::BuildSpec {
        context: dir.path().to_path_buf(),
        dockerfile: None,
        args: Default::default(),
    };
    Ok(source
        .build(&tracked.with_tag("broken")?, &spec, &NoProgress)
        .await?)
}

/// Every field a user sets, compared between the container before and after a recreate.
fn assert_same_config(
    before: &bollard::models::ContainerInspectResponse,
    after: &bollard::models::ContainerInspectResponse,
) {
    let (b, a) = (
        before.config.clone().unwrap(),
        after.config.clone().unwrap(),
    );
    let own_env = |env: &Option<Vec<String>>| -> Vec<String> {
        env.clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| !e.starts_with("DEPLOYER_"))
            .collect()
    };
    assert_eq!(own_env(&a.env), own_env(&b.env), "env");
    assert_eq!(a.cmd, b.cmd, "cmd");
    assert_eq!(a.entrypoint, b.entrypoint, "entrypoint");
    assert_eq!(a.user, b.user, "user");
    assert_eq!(a.working_dir, b.working_dir, "workdir");
    assert_eq!(a.hostname, b.hostname, "hostname");
    assert_eq!(a.exposed_ports, b.exposed_ports, "exposed ports");
    assert_eq!(a.volumes, b.volumes, "volumes");
    let (bl, al) = (b.labels.unwrap(), a.labels.unwrap());
    for (k, v) in bl
        .iter()
        .filter(|(k, _)| !k.starts_with("deployer.") || k.starts_with("deployer.test"))
    {
        assert_eq!(al.get(k), Some(v), "label {k}");
    }
    assert_eq!(
        al.get("deployer.service"),
        bl.get("deployer.service"),
        "service label"
    );
    let (bh, ah) = (
        before.host_config.clone().unwrap(),
        after.host_config.clone().unwrap(),
    );
    let mut binds_b = bh.binds.clone().unwrap_or_default();
    binds_b.sort();
    let binds_a: Vec<String> = ah.binds.clone().unwrap_or_default();
    for bind in &binds_b {
        assert!(binds_a.contains(bind), "bind {bind} kept: {binds_a:?}");
    }
    assert_eq!(ah.port_bindings, bh.port_bindings, "port bindings");
    assert_eq!(ah.restart_policy, bh.restart_policy, "restart policy");
    assert_eq!(ah.memory, bh.memory, "memory");
    assert_eq!(ah.nano_cpus, bh.nano_cpus, "cpus");
    assert_eq!(ah.network_mode, bh.network_mode, "network mode");
    // The same volumes at the same places: the anonymous one is carried over, not renewed.
    let mounts = |c: &bollard::models::ContainerInspectResponse| {
        let mut m: Vec<(Option<String>, Option<String>)> = c
            .mounts
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.destination, m.name.or(m.source)))
            .collect();
        m.sort();
        m
    };
    assert_eq!(mounts(after), mounts(before), "mounts");
    let nets = |c: &bollard::models::ContainerInspectResponse| {
        let mut n: Vec<(String, Vec<String>)> = c
            .network_settings
            .clone()
            .unwrap()
            .networks
            .unwrap()
            .into_iter()
            .map(|(name, s)| {
                let mut aliases: Vec<String> = s
                    .aliases
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|a| !c.id.as_deref().unwrap_or("").starts_with(a.as_str()))
                    .collect();
                aliases.sort();
                (name, aliases)
            })
            .collect();
        n.sort();
        n
    };
    assert_eq!(nets(after), nets(before), "networks and aliases");
}
