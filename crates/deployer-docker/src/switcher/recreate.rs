//! The recreate strategy, for containers not behind deployer's proxy: stop the old container
//! (kept, renamed out of the way), start the new one under the old name with the old one's
//! config and the new image. Rolling back starts the kept container again.
//!
//! Where the new config comes from: a copy of the old container's, field by field (see
//! [`container_config::copy_from`]), unless the old container was created by deployer from
//! a different version of the service's template, in which case the current template wins
//! (an edited config must take effect). A service with no container yet starts from its
//! template.

use deployer_core::ServiceSpec;
use deployer_core::ports::{FailureKind, Promoted, Removed, Retired, Started, SwitchError};
use deployer_core::reconcile::{Health, InstanceId, InstanceSpec};

use super::container_config::{self, Publish};
use super::probe::check;
use super::{DockerSwitcher, Found, engine, failed, labels};

pub(super) async fn start(
    switcher: &DockerSwitcher,
    service: &ServiceSpec,
    instance: &InstanceSpec,
) -> Result<Started, SwitchError> {
    let id = instance.id;
    let err = engine("start", service, id);
    let found = switcher.list(service).await.map_err(&err)?;
    if let Some(existing) = found.iter().find(|f| f.instance == id) {
        // The kept container of a rollback (or a crash's leftover): take the name back.
        let base = existing.base_name();
        if existing.name != base {
            free_name(switcher, service, id, &found, &base, Some(&existing.id)).await?;
            switcher.rename(&existing.id, &base).await.map_err(&err)?;
        }
        if existing.running {
            return Ok(Started::AlreadyRunning);
        }
        switcher.start_container(&existing.id).await.map_err(&err)?;
        tracing::info!(service = %service.name(), instance = %id, container = %base, "started again");
        return Ok(Started::Restarted);
    }
    // The container this one replaces: the same slot's newest older generation, else the
    // newest container of the service.
    let source = found
        .iter()
        .filter(|f| f.instance.generation < id.generation)
        .max_by_key(|f| (f.instance.slot == id.slot, f.instance.generation));
    let image = switcher.image_for(instance).await;
    let template_name = labels::template_name(service.name(), switcher.scope(), id.slot);
    let (base, spec) = match source.filter(|s| !template_changed(s, service)) {
        Some(source) => {
            let base = if source.instance.slot == id.slot {
                source.base_name()
            } else {
                template_name
            };
            let old = switcher
                .inspect(&source.id)
                .await
                .map_err(&err)?
                .ok_or_else(|| {
                    failed(
                        "start",
                        service,
                        id,
                        FailureKind::Transient,
                        format!("container {} vanished", source.name),
                    )
                })?;
            let old_image = match &old.image {
                Some(image_id) => switcher
                    .docker
                    .inspect_image(image_id)
                    .await
                    .ok()
                    .and_then(|i| i.config),
                None => None,
            };
            let spec = container_config::copy_from(
                &old,
                old_image.as_ref(),
                &image,
                switcher.instance_labels(service, instance, &base),
                labels::env_for_instance(service, instance),
            );
            (base, spec)
        }
        None => {
            let base = source.map_or(template_name, Found::base_name);
            let spec = container_config::from_template(
                service.template(),
                &image,
                switcher.instance_labels(service, instance, &base),
                labels::env_for_instance(service, instance),
                Publish::Template,
            )
            .map_err(|reason| failed("start", service, id, FailureKind::Permanent, reason))?;
            (base, spec)
        }
    };
    free_name(switcher, service, id, &found, &base, None).await?;
    switcher.create_and_start(&base, spec).await.map_err(&err)?;
    tracing::info!(service = %service.name(), instance = %id, container = %base, %image, "recreated");
    Ok(Started::Created)
}

/// Whether `source` was created by deployer from another version of the template.
fn template_changed(source: &Found, service: &ServiceSpec) -> bool {
    source.labels.get(labels::MANAGED).map(String::as_str) == Some("true")
        && source.labels.get(labels::TEMPLATE) != Some(&labels::template_hash(service))
}

/// Makes `name` free: a container of the service holding it is renamed out of the way; a
/// container of anyone else holding it is an error (never touched).
async fn free_name(
    switcher: &DockerSwitcher,
    service: &ServiceSpec,
    id: InstanceId,
    found: &[Found],
    name: &str,
    except: Option<&str>,
) -> Result<(), SwitchError> {
    let err = engine("start", service, id);
    let Some(holder) = switcher.inspect(name).await.map_err(&err)? else {
        return Ok(());
    };
    let holder_id = holder.id.unwrap_or_default();
    if Some(holder_id.as_str()) == except {
        return Ok(());
    }
    match found.iter().find(|f| f.id == holder_id) {
        Some(ours) => {
            let to = labels::old_name(name, ours.instance.generation);
            switcher.rename(&holder_id, &to).await.map_err(&err)
        }
        None => Err(failed(
            "start",
            service,
            id,
            FailureKind::Permanent,
            format!("the name {name} is taken by a container that is not the service's"),
        )),
    }
}

pub(super) async fn retire(
    switcher: &DockerSwitcher,
    service: &ServiceSpec,
    id: InstanceId,
) -> Result<Retired, SwitchError> {
    let err = engine("retire", service, id);
    let Some(found) = switcher.find(service, id).await? else {
        return Ok(Retired::AlreadyStopped);
    };
    if found.running {
        switcher
            .stop_container(&found.id, service.timeouts().stop)
            .await
            .map_err(&err)?;
    }
    // Kept for a rollback, under a name that frees the stable one for its successor.
    let base = found.base_name();
    if found.name == base {
        switcher
            .rename(&found.id, &labels::old_name(&base, id.generation))
            .await
            .map_err(&err)?;
    }
    tracing::info!(service = %service.name(), instance = %id, container = %base, "stopped and kept");
    Ok(if found.running {
        Retired::Stopped { cut: 0 }
    } else {
        Retired::AlreadyStopped
    })
}

pub(super) async fn probe(
    switcher: &DockerSwitcher,
    service: &ServiceSpec,
    id: InstanceId,
) -> Result<Health, SwitchError> {
    let Some(found) = switcher.find(service, id).await? else {
        return Ok(Health::Exited("the container does not exist".to_owned()));
    };
    match switcher
        .inspect(&found.id)
        .await
        .map_err(engine("probe", service, id))?
    {
        Some(container) => Ok(check(switcher, service, &container, None).await),
        None => Ok(Health::Exited("the container does not exist".to_owned())),
    }
}

/// No traffic to move: confirms the instance runs.
pub(super) async fn promote(
    switcher: &DockerSwitcher,
    service: &ServiceSpec,
    id: InstanceId,
) -> Result<Promoted, SwitchError> {
    match switcher.find(service, id).await? {
        Some(found) if found.running => Ok(Promoted::AlreadyServing),
        Some(found) => Err(failed(
            "promote",
            service,
            id,
            FailureKind::Build,
            format!("container {} is not running", found.name),
        )),
        None => Err(failed(
            "promote",
            service,
            id,
            FailureKind::Transient,
            "the container does not exist",
        )),
    }
}

pub(super) async fn remove(
    switcher: &DockerSwitcher,
    service: &ServiceSpec,
    id: InstanceId,
) -> Result<Removed, SwitchError> {
    let Some(found) = switcher.find(service, id).await? else {
        return Ok(Removed::AlreadyGone);
    };
    // Anonymous volumes stay: the successor mounts them.
    let removed = switcher
        .remove_container(&found.id, false)
        .await
        .map_err(engine("remove", service, id))?;
    tracing::debug!(service = %service.name(), instance = %id, container = %found.name, "removed");
    Ok(removed)
}
