//! Building from a directory with a Dockerfile (hanoverd's mode).

use std::collections::BTreeMap;
use std::time::Duration;

use deployer_core::ImageRef;
use deployer_core::ports::{Fetched, ImageError, ImageSource, NoProgress};
use deployer_core::service::BuildSpec;
use deployer_docker::{Credentials, DockerImageSource};
use deployer_testkit::Sweep;
use deployer_testkit::images::{self, BUSYBOX};

use crate::support::bounded;

fn context(sweep: &Sweep, run: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::copy(BUSYBOX, dir.path().join("busybox"))?;
    let labels: String = sweep
        .labels()
        .iter()
        .map(|(k, v)| format!("{k}={v:?} "))
        .collect();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM scratch\nLABEL {labels}\nCOPY . /ctx/\nARG VERSION=unset\nRUN [\"/ctx/busybox\", \"sh\", \"-c\", \"{run}\"]\n"
        ),
    )?;
    std::fs::write(dir.path().join(".dockerignore"), "*.secret\n")?;
    std::fs::write(dir.path().join("app.secret"), "do not ship")?;
    Ok(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_with_args_and_reports_the_last_lines_of_a_failure() -> anyhow::Result<()> {
    bounded(Duration::from_secs(120), "building", async {
        let sweep = Sweep::new("build");
        let docker = images::docker().await;
        let source = DockerImageSource::new(docker.clone(), Credentials::none());
        let image: ImageRef = format!("deployer-test/built-{}:live", sweep.run()).parse()?;

        // The build arg reaches RUN, and the ignored file is not in the context.
        let ok = context(
            &sweep,
            "/ctx/busybox test ! -e /ctx/app.secret && /ctx/busybox test \\\"$VERSION\\\" = 7 && echo built-$VERSION",
        )?;
        let spec = BuildSpec {
            context: ok.path().to_path_buf(),
            dockerfile: None,
            args: BTreeMap::from([("VERSION".to_owned(), "7".to_owned())]),
        };
        let id = source.build(&image, &spec, &NoProgress).await?;
        let tagged = docker.inspect_image(&image.to_string()).await?;
        assert_eq!(tagged.id.as_deref(), Some(id.as_str()));
        let immutable = format!("{}:build-{}", image.name(), &id.hex()[..12]);
        assert_eq!(docker.inspect_image(&immutable).await?.id.as_deref(), Some(id.as_str()));
        // Its image ID is its digest: fetching it has nothing to do.
        assert_eq!(source.fetch(&image, &id, &NoProgress).await?, Fetched::AlreadyPresent);

        let failing = context(&sweep, "echo about to fail && echo boom-line-$VERSION && exit 3")?;
        let spec = BuildSpec {
            context: failing.path().to_path_buf(),
            dockerfile: None,
            args: BTreeMap::from([("VERSION".to_owned(), "9".to_owned())]),
        };
        match source.build(&image, &spec, &NoProgress).await {
            Err(ImageError::BuildFailed { image: named, last_lines }) => {
                assert!(named.contains("built-"), "{named}");
                assert!(last_lines.iter().any(|l| l.contains("boom-line-9")), "{last_lines:?}");
            }
            other => panic!("expected BuildFailed, got {other:?}"),
        }
        // A directory without a Dockerfile fails naming it.
        let empty = tempfile::tempdir()?;
        let spec = BuildSpec {
            context: empty.path().to_path_buf(),
            dockerfile: None,
            args: BTreeMap::new(),
        };
        match source.build(&image, &spec, &NoProgress).await {
            Err(ImageError::BuildFailed { last_lines, .. }) => {
                assert!(last_lines[0].contains("no Dockerfile"), "{last_lines:?}")
            }
            other => panic!("expected BuildFailed, got {other:?}"),
        }
        anyhow::Ok(())
    })
    .await?
}
