//! Container configs: from a service's [`ContainerTemplate`], or copied field by field from
//! an inspected container (the recreate strategy's "identical config").
//!
//! Copying subtracts what came from the old image (its `ENV`, `CMD`, `ENTRYPOINT`, labels,
//! exposed ports, volumes, user, working directory, healthcheck): those are the new image's
//! to decide, or a new build could never change them. Everything set on the container
//! itself is kept.

use std::collections::{BTreeSet, HashMap};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HostConfig, ImageConfig,
    MountPointTypeEnum, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use deployer_core::service::ContainerTemplate;

use super::labels;

/// Everything needed to create a container: the body, and the networks to connect it to
/// before it starts (API 1.41 takes only one network at creation).
#[derive(Debug, Clone, Default)]
pub(crate) struct CreateSpec {
    pub(crate) body: ContainerCreateBody,
    pub(crate) extra_networks: Vec<(String, EndpointSettings)>,
}

/// How a template container's ports are published.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Publish {
    /// The handover strategy: only `container_port`, on an ephemeral port of `host_ip`.
    Loopback {
        container_port: u16,
        host_ip: std::net::IpAddr,
    },
    /// The template's own `ports` (`docker run -p` syntax).
    Template,
}

fn empty_set() -> HashMap<(), ()> {
    HashMap::new()
}

/// A container config from the template, with `labels` and `env` (deployer's) added.
pub(crate) fn from_template(
    template: &ContainerTemplate,
    image: &str,
    labels: HashMap<String, String>,
    injected_env: Vec<String>,
    publish: Publish,
) -> Result<CreateSpec, String> {
    let mut env: Vec<String> = template
        .env
        .iter()
        .filter(|(k, _)| !labels::is_injected_env(k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.extend(injected_env);
    let mut all_labels: HashMap<String, String> = template.labels.clone().into_iter().collect();
    all_labels.extend(labels);

    let mut exposed = HashMap::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    match publish {
        Publish::Loopback {
            container_port,
            host_ip,
        } => {
            let key = format!("{container_port}/tcp");
            exposed.insert(key.clone(), empty_set());
            // An empty host port makes the engine pick a free one at start; it is read back
            // from inspect.
            bindings.insert(
                key,
                Some(vec![PortBinding {
                    host_ip: Some(host_ip.to_string()),
                    host_port: Some(String::new()),
                }]),
            );
        }
        Publish::Template => {
            for spec in &template.ports {
                let (key, binding) = parse_port(spec)?;
                exposed.insert(key.clone(), empty_set());
                bindings
                    .entry(key)
                    .or_insert_with(|| Some(Vec::new()))
                    .get_or_insert_with(Vec::new)
                    .push(binding);
            }
        }
    }

    let mut binds = Vec::new();
    let mut volumes = HashMap::new();
    for volume in &template.volumes {
        if volume.contains(':') {
            binds.push(volume.clone());
        } else {
            volumes.insert(volume.clone(), empty_set());
        }
    }
    let restart_policy = template.restart.as_deref().map(parse_restart).transpose()?;
    let mut host_config = HostConfig {
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        binds: (!binds.is_empty()).then_some(binds),
        restart_policy,
        memory: template
            .memory_bytes
            .map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
        nano_cpus: template
            .nano_cpus
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        ..Default::default()
    };
    let mut networking_config = None;
    if let Some(network) = &template.network {
        host_config.network_mode = Some(network.clone());
        if is_user_network(network) {
            networking_config = Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.clone(),
                    EndpointSettings::default(),
                )])),
            });
        }
    }
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        env: Some(env),
        cmd: template.command.clone(),
        entrypoint: template.entrypoint.clone(),
        labels: Some(all_labels),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        volumes: (!volumes.is_empty()).then_some(volumes),
        user: template.user.clone(),
        working_dir: template.workdir.clone(),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    };
    Ok(CreateSpec {
        body,
        extra_networks: Vec::new(),
    })
}

/// Whether `mode` names a user-defined network (one that takes endpoint settings).
fn is_user_network(mode: &str) -> bool {
    !matches!(mode, "" | "default" | "bridge" | "host" | "none") && !mode.starts_with("container:")
}

/// Parses `docker run -p` syntax: `[ip:][host_port:]container_port[/proto]`.
pub(crate) fn parse_port(spec: &str) -> Result<(String, PortBinding), String> {
    let bad = |why: &str| format!("port {spec:?}: {why}");
    let (addr, proto) = match spec.rsplit_once('/') {
        Some((addr, proto @ ("tcp" | "udp" | "sctp"))) => (addr, proto),
        Some(_) => return Err(bad("protocol must be tcp, udp or sctp")),
        None => (spec, "tcp"),
    };
    // An IPv6 host address comes in brackets: [::1]:8080:80.
    let (ip, rest) = match addr.strip_prefix('[') {
        Some(v6) => {
            let (ip, rest) = v6.split_once("]:").ok_or_else(|| bad("unclosed '['"))?;
            (Some(ip.to_owned()), rest)
        }
        None => (None, addr),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, container) = match (ip, parts.as_slice()) {
        (None, [container]) => (None, "", *container),
        (None, [host, container]) => (None, *host, *container),
        (None, [ip, host, container]) => (Some((*ip).to_owned()), *host, *container),
        (Some(ip), [host, container]) => (Some(ip), *host, *container),
        _ => return Err(bad("expected [ip:][host_port:]container_port[/proto]")),
    };
    let port_ok = |p: &str| p.parse::<u16>().is_ok_and(|p| p > 0);
    if !port_ok(container) {
        return Err(bad(
            "the container port must be a number from 1 to 65535 (ranges are not supported)",
        ));
    }
    if !host.is_empty() && !port_ok(host) {
        return Err(bad(
            "the host port must be a number from 1 to 65535 (ranges are not supported)",
        ));
    }
    if let Some(ip) = &ip
        && !ip.is_empty()
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(bad("the host address is not an IP address"));
    }
    Ok((
        format!("{container}/{proto}"),
        PortBinding {
            host_ip: ip.filter(|ip| !ip.is_empty()),
            host_port: Some(host.to_owned()),
        },
    ))
}

/// Parses a restart policy: `no`, `always`, `unless-stopped`, `on-failure[:N]`.
pub(crate) fn parse_restart(policy: &str) -> Result<RestartPolicy, String> {
    let (name, count) = match policy.split_once(':') {
        Some(("on-failure", n)) => (
            RestartPolicyNameEnum::ON_FAILURE,
            Some(n.parse::<i64>().map_err(|_| {
                format!("restart policy {policy:?}: the retry count must be a number")
            })?),
        ),
        Some(_) => {
            return Err(format!(
                "restart policy {policy:?}: only on-failure takes a count"
            ));
        }
        None => (
            match policy {
                "no" | "" => RestartPolicyNameEnum::NO,
                "always" => RestartPolicyNameEnum::ALWAYS,
                "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
                "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                other => {
                    return Err(format!(
                        "restart policy {other:?}: expected no, always, unless-stopped or on-failure[:N]"
                    ));
                }
            },
            None,
        ),
    };
    Ok(RestartPolicy {
        name: Some(name),
        maximum_retry_count: count,
    })
}

/// Keeps what differs from the image's value; `None` when it is the image's own.
fn own<T: PartialEq + Clone>(container: &Option<T>, image: &Option<T>) -> Option<T> {
    if container == image {
        None
    } else {
        container.clone()
    }
}

fn minus_image<K: Eq + std::hash::Hash + Clone, V: PartialEq + Clone>(
    container: &Option<HashMap<K, V>>,
    image: &Option<HashMap<K, V>>,
) -> HashMap<K, V> {
    let image = image.clone().unwrap_or_default();
    container
        .iter()
        .flatten()
        .filter(|(k, v)| image.get(k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A config identical to `old`'s, running `image`, with deployer's `labels` and `env`
/// replacing the old values. `old_image` is the old container's image config (what to
/// subtract); without it everything is copied.
pub(crate) fn copy_from(
    old: &ContainerInspectResponse,
    old_image: Option<&ImageConfig>,
    image: &str,
    new_labels: HashMap<String, String>,
    injected_env: Vec<String>,
) -> CreateSpec {
    let config = old.config.clone().unwrap_or_default();
    let img = old_image.cloned().unwrap_or_default();
    let old_id = old.id.clone().unwrap_or_default();

    let image_env: BTreeSet<&String> = img.env.iter().flatten().collect();
    let mut env: Vec<String> = config
        .env
        .iter()
        .flatten()
        .filter(|e| !image_env.contains(e) && !labels::is_injected_env(e))
        .cloned()
        .collect();
    env.extend(injected_env);

    let mut all_labels = minus_image(&config.labels, &img.labels);
    all_labels.retain(|k, _| !labels::OWNED.contains(&k.as_str()) && k != labels::TEMPLATE);
    all_labels.extend(new_labels);

    // The engine fills CMD from the image only when no entrypoint is given, so an own
    // entrypoint travels with the container's CMD as it is.
    let entrypoint = own(&config.entrypoint, &img.entrypoint);
    let cmd = if entrypoint.is_some() {
        config.cmd.clone()
    } else {
        own(&config.cmd, &img.cmd)
    };
    let exposed = minus_image(&config.exposed_ports, &img.exposed_ports);
    let volumes = minus_image(&config.volumes, &img.volumes);
    // The engine defaults the hostname to the container's short ID: a new container gets its own.
    let hostname = config
        .hostname
        .clone()
        .filter(|h| !h.is_empty() && !old_id.starts_with(h.as_str()));

    let mut host_config = old.host_config.clone().unwrap_or_default();
    // Inspect shows links as "/target:/this/alias"; create wants "target:alias".
    if let Some(links) = &mut host_config.links {
        for link in links.iter_mut() {
            if let Some((target, alias)) = link.split_once(':') {
                let alias = alias.rsplit('/').next().unwrap_or(alias);
                *link = format!("{}:{alias}", target.trim_start_matches('/'));
            }
        }
    }
    // Anonymous volumes (an image VOLUME, `-v /path`) hold the container's data: mount the
    // same volumes into the new container, as docker compose does.
    let covered: BTreeSet<String> = host_config
        .binds
        .iter()
        .flatten()
        .filter_map(|b| b.split(':').nth(1).map(str::to_owned))
        .chain(
            host_config
                .mounts
                .iter()
                .flatten()
                .filter_map(|m| m.target.clone()),
        )
        .collect();
    for mount in old.mounts.iter().flatten() {
        if mount.typ == Some(MountPointTypeEnum::VOLUME)
            && let (Some(name), Some(dest)) = (&mount.name, &mount.destination)
            && !covered.contains(dest)
        {
            let ro = if mount.rw == Some(false) { ":ro" } else { "" };
            host_config
                .binds
                .get_or_insert_with(Vec::new)
                .push(format!("{name}:{dest}{ro}"));
        }
    }

    let (networking_config, extra_networks) = networks(old, &host_config, &old_id);
    let body = ContainerCreateBody {
        hostname,
        domainname: config.domainname.clone().filter(|d| !d.is_empty()),
        user: own(&config.user, &img.user).filter(|u| !u.is_empty()),
        attach_stdin: config.attach_stdin,
        attach_stdout: config.attach_stdout,
        attach_stderr: config.attach_stderr,
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        tty: config.tty,
        open_stdin: config.open_stdin,
        stdin_once: config.stdin_once,
        env: Some(env),
        cmd,
        healthcheck: own(&config.healthcheck, &img.healthcheck),
        image: Some(image.to_owned()),
        volumes: (!volumes.is_empty()).then_some(volumes),
        working_dir: own(&config.working_dir, &img.working_dir).filter(|w| !w.is_empty()),
        entrypoint,
        network_disabled: config.network_disabled,
        mac_address: config.mac_address.clone().filter(|m| !m.is_empty()),
        labels: Some(all_labels),
        stop_signal: own(&config.stop_signal, &img.stop_signal),
        stop_timeout: config.stop_timeout,
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    };
    CreateSpec {
        body,
        extra_networks,
    }
}

/// The network the container is created on (its network mode, when user-defined) and the
/// others it is connected to afterwards, with aliases, links and static addresses kept.
fn networks(
    old: &ContainerInspectResponse,
    host_config: &HostConfig,
    old_id: &str,
) -> (Option<NetworkingConfig>, Vec<(String, EndpointSettings)>) {
    let mode = host_config.network_mode.clone().unwrap_or_default();
    let attached = old
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.clone())
        .unwrap_or_default();
    let clean = |s: &EndpointSettings| EndpointSettings {
        ipam_config: s.ipam_config.clone(),
        links: s.links.clone().filter(|l| !l.is_empty()),
        // The engine adds the short container ID as an alias by itself.
        aliases: s
            .aliases
            .clone()
            .map(|a| {
                a.into_iter()
                    .filter(|a| !old_id.starts_with(a.as_str()))
                    .collect::<Vec<_>>()
            })
            .filter(|a| !a.is_empty()),
        driver_opts: s.driver_opts.clone(),
        ..Default::default()
    };
    let mut names: Vec<&String> = attached.keys().collect();
    names.sort();
    let primary = is_user_network(&mode).then(|| {
        let settings = attached.get(&mode).map(clean).unwrap_or_default();
        NetworkingConfig {
            endpoints_config: Some(HashMap::from([(mode.clone(), settings)])),
        }
    });
    let default_bridge = matches!(mode.as_str(), "" | "default" | "bridge");
    let extra = names
        .into_iter()
        .filter(|n| **n != mode && !(default_bridge && n.as_str() == "bridge"))
        .filter(|_| is_user_network(&mode) || default_bridge)
        .map(|n| (n.clone(), clean(&attached[n])))
        .collect();
    (primary, extra)
}

#[cfg(test)]
mod tests {
    use bollard::models::ContainerConfig;

    use super::*;

    #[test]
    fn ports_parse_like_docker_run() {
        let p = |s: &str| parse_port(s).map(|(k, b)| (k, b.host_ip, b.host_port));
        assert_eq!(
            p("80").unwrap(),
            ("80/tcp".into(), None, Some(String::new()))
        );
        assert_eq!(
            p("8080:80").unwrap(),
            ("80/tcp".into(), None, Some("8080".into()))
        );
        assert_eq!(
            p("127.0.0.1::53/udp").unwrap(),
            (
                "53/udp".into(),
                Some("127.0.0.1".into()),
                Some(String::new())
            )
        );
        assert_eq!(
            p("[::1]:8080:80").unwrap(),
            ("80/tcp".into(), Some("::1".into()), Some("8080".into()))
        );
        for bad in ["x", "80/icmp", "1-5:1-5", "a.b:80:80", "0"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn restart_policies_parse() {
        assert_eq!(
            parse_restart("on-failure:3").unwrap().maximum_retry_count,
            Some(3)
        );
        assert_eq!(
            parse_restart("always").unwrap().name,
            Some(RestartPolicyNameEnum::ALWAYS)
        );
        assert!(parse_restart("sometimes").is_err());
    }

    #[test]
    fn copying_keeps_own_settings_and_leaves_image_defaults_to_the_new_image() {
        let image = ImageConfig {
            env: Some(vec!["PATH=/bin".into(), "VERSION=1".into()]),
            cmd: Some(vec!["serve".into()]),
            labels: Some(HashMap::from([("org.image".into(), "x".into())])),
            working_dir: Some("/app".into()),
            ..Default::default()
        };
        let old = ContainerInspectResponse {
            id: Some("0123456789abcdef".into()),
            config: Some(ContainerConfig {
                hostname: Some("0123456789ab".into()),
                env: Some(vec![
                    "PATH=/bin".into(),
                    "VERSION=1".into(),
                    "MODE=prod".into(),
                    "DEPLOYER_GENERATION=3".into(),
                ]),
                cmd: Some(vec!["serve".into()]),
                labels: Some(HashMap::from([
                    ("org.image".into(), "x".into()),
                    ("team".into(), "core".into()),
                    ("deployer.generation".into(), "3".into()),
                ])),
                working_dir: Some("/app".into()),
                user: Some("nobody".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let spec = copy_from(
            &old,
            Some(&image),
            "new:image",
            HashMap::from([("deployer.generation".into(), "4".into())]),
            vec!["DEPLOYER_GENERATION=4".into()],
        );
        let body = spec.body;
        assert_eq!(body.env.unwrap(), ["MODE=prod", "DEPLOYER_GENERATION=4"]);
        assert_eq!(body.cmd, None);
        assert_eq!(body.working_dir, None);
        assert_eq!(body.hostname, None);
        assert_eq!(body.user.as_deref(), Some("nobody"));
        let labels = body.labels.unwrap();
        assert_eq!(labels.get("team").map(String::as_str), Some("core"));
        assert_eq!(
            labels.get("deployer.generation").map(String::as_str),
            Some("4")
        );
        assert!(!labels.contains_key("org.image"));
    }
}
