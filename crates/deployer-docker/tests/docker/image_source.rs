//! DockerImageSource against a real registry with htpasswd auth.

use std::time::Duration;

use base64::Engine;
use deployer_core::ImageRef;
use deployer_core::ports::{FetchProgress, Fetched, ImageError, ImageSource, PullProgress};
use deployer_docker::{Credentials, DockerImageSource};
use deployer_testkit::images::{self, App};
use deployer_testkit::{Registry, RegistryOptions, Sweep};

use crate::support::{bounded, build_image};

#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<PullProgress>>);

impl FetchProgress for Recorder {
    fn update(&self, progress: &PullProgress) {
        self.0.lock().unwrap().push(progress.clone());
    }
}

fn docker_config(dir: &std::path::Path, registry: &str, user: &str, password: &str) -> Credentials {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let path = dir.join(format!("{password}.json"));
    std::fs::write(
        &path,
        format!(r#"{{"auths": {{"{registry}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
    Credentials::from_file(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolves_pulls_and_maps_registry_failures() -> anyhow::Result<()> {
    bounded(Duration::from_secs(120), "registry round trip", async {
        let sweep = Sweep::new("image-source");
        let docker = images::docker().await;
        let (local, local_id) =
            build_image(&docker, &sweep, "pull", "v1", App::http("v1"), false).await?;
        let registry = Registry::start(RegistryOptions {
            credentials: Some(("tester".into(), "right".into())),
            ..Default::default()
        })
        .await?;
        let repository = format!("demo/{}", sweep.run());
        let digest = registry
            .push(&docker, &local.to_string(), &repository, "v1")
            .await?;
        let image: ImageRef = format!("{}/{repository}:v1", registry.host()).parse()?;
        let config_dir = tempfile::tempdir()?;
        let good = DockerImageSource::new(
            docker.clone(),
            docker_config(config_dir.path(), &registry.host(), "tester", "right"),
        );
        let bad = DockerImageSource::new(
            docker.clone(),
            docker_config(
                config_dir.path(),
                &format!("http://{}/v2/", registry.host()),
                "tester",
                "wrong",
            ),
        );

        let resolved = good.resolve(&image).await?;
        assert_eq!(resolved.as_str(), digest);

        // The push left the image local under the registry's name: nothing to pull.
        let fetched = good.fetch(&image, &resolved, &Recorder::default()).await?;
        assert_eq!(fetched, Fetched::AlreadyPresent);

        // Remove the image altogether and fetch again: a real pull, with layer progress, that
        // points the tag back at the image.
        let options = bollard::query_parameters::RemoveImageOptions {
            force: true,
            ..Default::default()
        };
        docker.remove_image(&local_id, Some(options), None).await?;
        let progress = Recorder::default();
        let fetched = good.fetch(&image, &resolved, &progress).await?;
        assert_eq!(fetched, Fetched::Pulled);
        let seen = progress.0.lock().unwrap().clone();
        let last = seen.last().expect("progress was reported");
        assert!(
            last.layers_total >= 1 && last.layers_done == last.layers_total,
            "{seen:?}"
        );
        let inspect = docker.inspect_image(&image.to_string()).await?;
        assert!(
            inspect
                .repo_digests
                .unwrap_or_default()
                .iter()
                .any(|d| d.ends_with(&digest)),
            "the tag points at the pulled digest"
        );
        assert_eq!(
            good.fetch(&image, &resolved, &progress).await?,
            Fetched::AlreadyPresent
        );

        // Wrong password: unauthorised, for resolve and for pull.
        match bad.resolve(&image).await {
            Err(ImageError::Unauthorized { image: named }) => assert!(named.contains(&repository)),
            other => panic!("expected Unauthorized, got {other:?}"),
        }
        let other_digest = deployer_core::testing::digest(9);
        match bad.fetch(&image, &other_digest, &Recorder::default()).await {
            Err(ImageError::Unauthorized { .. }) => {}
            other => panic!("expected Unauthorized from a pull, got {other:?}"),
        }
        // No such tag.
        let missing = image.with_tag("nope")?;
        match good.resolve(&missing).await {
            Err(ImageError::NotFound { image: named }) => assert!(named.contains("nope")),
            other => panic!("expected NotFound, got {other:?}"),
        }
        // No such digest.
        match good
            .fetch(&image, &other_digest, &Recorder::default())
            .await
        {
            Err(ImageError::NotFound { .. }) => {}
            other => panic!("expected NotFound from a pull of a missing digest, got {other:?}"),
        }
        // The registry is gone.
        registry.stop().await;
        match good.resolve(&image).await {
            Err(ImageError::RegistryUnreachable { image: named, .. }) => {
                assert!(named.contains(&repository))
            }
            other => panic!("expected RegistryUnreachable, got {other:?}"),
        }
        anyhow::Ok(())
    })
    .await?
}
