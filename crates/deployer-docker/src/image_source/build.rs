//! `build`: a directory with a Dockerfile becomes a local image (hanoverd's mode).

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use bollard::query_parameters::{BuildImageOptions, TagImageOptions};
use deployer_core::ports::{FetchProgress, ImageError, PullProgress};
use deployer_core::service::BuildSpec;
use deployer_core::{Digest, ImageRef};
use futures_util::StreamExt;

use super::{DockerIgnore, DockerImageSource};
use crate::error::{engine_message, image_error};

/// Lines of build output kept for the error of a failed build.
const LAST_LINES: usize = 20;

/// The immutable tag of a built image: `build-` and the first 12 hex digits of its ID.
pub(crate) fn build_tag(id: &Digest) -> String {
    format!("build-{}", &id.hex()[..12.min(id.hex().len())])
}

pub(super) async fn build(
    source: &DockerImageSource,
    image: &ImageRef,
    spec: &BuildSpec,
    progress: &dyn FetchProgress,
) -> Result<Digest, ImageError> {
    let image = image.without_digest();
    let name = image.to_string();
    let dockerfile = spec
        .dockerfile
        .clone()
        .unwrap_or_else(|| "Dockerfile".to_owned());
    let context_dir = spec.context.clone();
    let dockerfile_for_tar = dockerfile.clone();
    let context =
        tokio::task::spawn_blocking(move || context_tar(&context_dir, &dockerfile_for_tar))
            .await
            .map_err(|e| ImageError::Other {
                operation: "packing the build context",
                image: name.clone(),
                source: Box::new(e),
            })?
            .map_err(|e| ImageError::BuildFailed {
                image: name.clone(),
                last_lines: vec![format!(
                    "cannot pack the build context {}: {e}",
                    spec.context.display()
                )],
            })?;
    let tag = image.tag().unwrap_or("latest").to_owned();
    let options = BuildImageOptions {
        dockerfile,
        t: Some(format!("{}:{tag}", image.name())),
        rm: true,
        forcerm: true,
        buildargs: Some(spec.args.clone().into_iter().collect::<HashMap<_, _>>()),
        ..Default::default()
    };
    let registry_auth = source.credentials.all().map_err(|e| ImageError::Other {
        operation: "reading registry credentials",
        image: name.clone(),
        source: Box::new(e),
    })?;
    tracing::info!(image = %name, context = %spec.context.display(), bytes = context.len(), "building");
    let mut stream = source.docker.build_image(
        options,
        (!registry_auth.is_empty()).then_some(registry_auth),
        Some(bollard::body_full(context.into())),
    );
    let mut last: VecDeque<String> = VecDeque::with_capacity(LAST_LINES);
    let mut keep = |text: &str| {
        for line in text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty())
        {
            if last.len() == LAST_LINES {
                last.pop_front();
            }
            last.push_back(line.to_owned());
        }
    };
    let mut id = None;
    let mut report = PullProgress::default();
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(e) => {
                let message = engine_message(&e);
                // A failing RUN arrives as a stream error; anything else is the engine's.
                if matches!(e, bollard::errors::Error::DockerStreamError { .. }) {
                    keep(&message);
                    return Err(build_failed(&name, &last));
                }
                return Err(image_error("building", &name, e));
            }
        };
        if let Some(text) = &info.stream {
            keep(text);
            if let Some(step) = text.trim().strip_prefix("Step ") {
                report.status = format!("Step {step}");
                progress.update(&report);
            }
        }
        if let Some(error) = info
            .error
            .as_ref()
            .or(info.error_detail.as_ref().and_then(|d| d.message.as_ref()))
        {
            keep(error);
            return Err(build_failed(&name, &last));
        }
        if let Some(found) = info.aux.as_ref().and_then(|a| a.id.clone()) {
            id = Some(found);
        }
    }
    let id = match id {
        Some(id) => id,
        None => source
            .local(&format!("{}:{tag}", image.name()), &image)
            .await?
            .and_then(|i| i.id)
            .ok_or_else(|| build_failed(&name, &last))?,
    };
    let digest = Digest::parse(&id).map_err(|e| ImageError::Other {
        operation: "building",
        image: name.clone(),
        source: format!("the engine reported an invalid image ID {id:?}: {e}").into(),
    })?;
    // An immutable tag that names this very build, so it can be found (and rolled back to)
    // after the moving tag has moved on.
    let immutable = build_tag(&digest);
    source
        .docker
        .tag_image(
            &id,
            Some(TagImageOptions {
                repo: Some(image.name()),
                tag: Some(immutable.clone()),
            }),
        )
        .await
        .map_err(|e| image_error("tagging the build", &name, e))?;
    tracing::info!(image = %name, id = %digest, tag = %immutable, "built");
    Ok(digest)
}

fn build_failed(image: &str, last: &VecDeque<String>) -> ImageError {
    ImageError::BuildFailed {
        image: image.to_owned(),
        last_lines: last.iter().cloned().collect(),
    }
}

/// Tars `dir` without what `.dockerignore` excludes; the Dockerfile and `.dockerignore`
/// always go in (the engine needs the one, and the CLI sends both).
fn context_tar(dir: &Path, dockerfile: &str) -> std::io::Result<Vec<u8>> {
    let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => DockerIgnore::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DockerIgnore::default(),
        Err(e) => return Err(e),
    };
    if !dir.join(dockerfile).is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no {dockerfile} in {}", dir.display()),
        ));
    }
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let always = [dockerfile.trim_start_matches("./"), ".dockerignore"];
    add_dir(&mut tar, dir, "", &ignore, &always)?;
    tar.into_inner()
}

fn add_dir(
    tar: &mut tar::Builder<Vec<u8>>,
    root: &Path,
    relative: &str,
    ignore: &DockerIgnore,
    always: &[&str],
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(relative))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if relative.is_empty() {
            name
        } else {
            format!("{relative}/{name}")
        };
        let excluded = ignore.excludes(&path) && !always.contains(&path.as_str());
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            if excluded && !ignore.has_exceptions() {
                continue;
            }
            if !excluded {
                tar.append_dir(&path, entry.path())?;
            }
            add_dir(tar, root, &path, ignore, always)?;
        } else if !excluded {
            tar.append_path_with_name(entry.path(), &path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_leaves_out_ignored_files_but_keeps_the_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(root.join(".dockerignore"), "Dockerfile\n*.log\nbig/\n").unwrap();
        std::fs::write(root.join("app.log"), "x").unwrap();
        std::fs::write(root.join("keep.txt"), "x").unwrap();
        std::fs::create_dir(root.join("big")).unwrap();
        std::fs::write(root.join("big/blob"), "x").unwrap();
        let bytes = context_tar(root, "Dockerfile").unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, [".dockerignore", "Dockerfile", "keep.txt"]);
        assert!(context_tar(root, "Missing.Dockerfile").is_err());
    }
}
