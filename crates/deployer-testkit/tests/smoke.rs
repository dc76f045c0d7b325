//! The testkit against the real engine and registry: images build, run and push.

use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{CreateContainerOptionsBuilder, StartContainerOptions};
use deployer_testkit::images::{self, App, HTTP_PORT, ImageSpec};
use deployer_testkit::{Registry, RegistryOptions, Sweep, net};

#[tokio::test]
async fn builds_runs_and_pushes_a_test_image() -> anyhow::Result<()> {
    let sweep = Sweep::new("testkit-smoke");
    let docker = images::docker().await;
    let tag = format!("deployer-test/smoke:{}", sweep.run());
    let spec = ImageSpec {
        app: App::http("v1"),
        healthcheck: true,
        labels: sweep.labels(),
    };
    let id = images::build(&docker, &tag, &spec).await?;
    assert!(id.starts_with("sha256:"), "{id}");

    let port = net::free_port();
    let host_config = HostConfig {
        port_bindings: Some(
            [(
                format!("{HTTP_PORT}/tcp"),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(port.to_string()),
                }]),
            )]
            .into(),
        ),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(tag.clone()),
        labels: Some(sweep.labels().into_iter().collect()),
        host_config: Some(host_config),
        ..Default::default()
    };
    let name = sweep.name("smoke");
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            body,
        )
        .await?;
    docker
        .start_container(&name, None::<StartContainerOptions>)
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let attempt = async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
            let mut out = String::new();
            s.read_to_string(&mut out).await?;
            anyhow::Ok(out)
        };
        match attempt.await {
            Ok(body) if body.contains("200") => break body,
            _ if tokio::time::Instant::now() > deadline => {
                anyhow::bail!("container never answered")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert!(body.ends_with("v1\n"), "{body}");

    let registry = Registry::start(RegistryOptions {
        credentials: Some(("tester".into(), "secret".into())),
        ..Default::default()
    })
    .await?;
    let digest = registry.push(&docker, &tag, "demo/app", "v1").await?;
    assert!(digest.starts_with("sha256:"), "{digest}");
    let pushed = format!("{}/demo/app:v1", registry.host());
    docker
        .remove_image(
            &pushed,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await?;
    Ok(())
}
