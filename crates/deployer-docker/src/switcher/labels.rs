//! The labels deployer puts on containers, and reading them back.
//!
//! Containers carry their service, generation and slot from the moment they are created,
//! so the engine is the source of truth after a crash; the journal only says which
//! generation is live.

use std::collections::HashMap;

use deployer_core::reconcile::{Generation, InstanceId, InstanceSpec};
use deployer_core::{Digest, ImageRef, ServiceName, ServiceSpec};

/// The service a container belongs to. Also an opt-in label for adopted containers.
pub const SERVICE: &str = "deployer.service";
/// The generation number (absent: generation 0, a container deployer did not create).
pub const GENERATION: &str = "deployer.generation";
/// The replica slot.
pub const SLOT: &str = "deployer.slot";
/// The strategy the container is switched with (`handover`, `recreate`, `stop`). Also an
/// opt-in label for adopted containers.
pub const STRATEGY: &str = "deployer.strategy";
/// `true` on every container deployer created.
pub const MANAGED: &str = "deployer.managed";
/// The repo:tag the container was deployed from.
pub const IMAGE: &str = "deployer.image";
/// The build it runs (registry digest, or image ID for built images).
pub const DIGEST: &str = "deployer.digest";
/// The recreate strategy's stable container name (kept while the container is renamed
/// out of the way).
pub const NAME: &str = "deployer.name";
/// A hash of the service's container template, to tell whether the config changed.
pub const TEMPLATE: &str = "deployer.template";
/// The opt-in label: containers carrying `deployer.enable=true` are adopted.
pub const ENABLE: &str = "deployer.enable";
/// Prefix of the adopted containers' health settings (`deployer.health.kind`, ...).
pub const HEALTH_PREFIX: &str = "deployer.health.";
/// The node scope a container belongs to (see [`super::SwitcherConfig::scope`]): a scoped
/// switcher sees only containers carrying its scope, an unscoped one only containers
/// without this label.
pub const NODE: &str = "deployer.node";

/// The labels deployer owns on a container it creates; copied configs drop the old values.
pub const OWNED: [&str; 9] = [
    SERVICE, GENERATION, SLOT, STRATEGY, MANAGED, IMAGE, DIGEST, NAME, NODE,
];

/// Longest node scope: it is part of container names, which should stay readable.
pub const SCOPE_MAX: usize = 64;

/// The suffix of a recreate container renamed out of the way.
pub const OLD_SUFFIX: &str = ".deployer-old-g";

/// Deployer's labels for `instance` of `service`, created by a switcher with node `scope`.
pub fn for_instance(
    service: &ServiceSpec,
    instance: &InstanceSpec,
    base_name: &str,
    scope: Option<&str>,
) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        (SERVICE.to_owned(), service.name().to_string()),
        (GENERATION.to_owned(), instance.id.generation.0.to_string()),
        (SLOT.to_owned(), instance.id.slot.to_string()),
        (STRATEGY.to_owned(), service.strategy().name().to_owned()),
        (MANAGED.to_owned(), "true".to_owned()),
        (IMAGE.to_owned(), instance.image.to_string()),
        (NAME.to_owned(), base_name.to_owned()),
        (TEMPLATE.to_owned(), template_hash(service)),
    ]);
    if let Some(digest) = &instance.digest {
        labels.insert(DIGEST.to_owned(), digest.to_string());
    }
    if let Some(scope) = scope {
        labels.insert(NODE.to_owned(), scope.to_owned());
    }
    labels
}

/// Whether a container's labels put it in node `scope` (`None`: it carries no node label).
pub fn in_scope(labels: &HashMap<String, String>, scope: Option<&str>) -> bool {
    labels.get(NODE).map(String::as_str) == scope
}

/// Checks a node scope: 1 to [`SCOPE_MAX`] letters, digits, `_`, `.` or `-` (it becomes part
/// of container names).
pub fn validate_scope(scope: &str) -> Result<(), String> {
    if scope.is_empty() || scope.len() > SCOPE_MAX {
        return Err(format!(
            "{scope:?} must be 1 to {SCOPE_MAX} characters long"
        ));
    }
    if !scope
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!(
            "{scope:?} must be letters, digits, '_', '.' or '-': it becomes part of container names"
        ));
    }
    Ok(())
}

/// The `DEPLOYER_*` variables injected into every container deployer creates (as hanoverd
/// injects `HANOVERD_IMAGE`), replacing earlier values.
pub fn env_for_instance(service: &ServiceSpec, instance: &InstanceSpec) -> Vec<String> {
    let mut env = vec![
        format!("DEPLOYER_SERVICE={}", service.name()),
        format!("DEPLOYER_IMAGE={}", instance.image),
        format!("DEPLOYER_GENERATION={}", instance.id.generation.0),
        format!("DEPLOYER_SLOT={}", instance.id.slot),
    ];
    if let Some(digest) = &instance.digest {
        env.push(format!("DEPLOYER_DIGEST={digest}"));
    }
    env
}

/// Whether an environment entry is one of ours (replaced, never copied).
pub fn is_injected_env(entry: &str) -> bool {
    entry.starts_with("DEPLOYER_")
}

/// A stable hash of the service's container template (FNV-1a over its JSON form).
pub fn template_hash(service: &ServiceSpec) -> String {
    let json = serde_json::to_vec(service.template()).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in json {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The generation and slot written on a container, if it has them.
pub fn instance_of(labels: &HashMap<String, String>) -> (Option<Generation>, Option<u32>) {
    let generation = labels
        .get(GENERATION)
        .and_then(|g| g.parse().ok())
        .map(Generation);
    let slot = labels.get(SLOT).and_then(|s| s.parse().ok());
    (generation, slot)
}

/// The digest written on a container, if any.
pub fn digest_of(labels: &HashMap<String, String>) -> Option<Digest> {
    labels.get(DIGEST).and_then(|d| Digest::parse(d).ok())
}

/// The repo:tag written on a container, if any.
pub fn image_of(labels: &HashMap<String, String>) -> Option<ImageRef> {
    labels.get(IMAGE).and_then(|i| ImageRef::parse(i).ok())
}

/// Strips Docker's leading `/` and our "renamed out of the way" suffix.
pub fn base_name(container_name: &str) -> &str {
    let name = container_name.trim_start_matches('/');
    match name.rfind(OLD_SUFFIX) {
        Some(i)
            if name[i + OLD_SUFFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_digit()) =>
        {
            &name[..i]
        }
        _ => name,
    }
}

/// The name a kept old container is renamed to.
pub fn old_name(base: &str, generation: Generation) -> String {
    format!("{base}{OLD_SUFFIX}{}", generation.0)
}

/// `<service>` or, with a node scope, `<service>-<scope>`: the start of every container name.
fn scoped(service: &ServiceName, scope: Option<&str>) -> String {
    match scope {
        Some(scope) => format!("{service}-{scope}"),
        None => service.to_string(),
    }
}

/// The handover strategy's container name: `<service>-g<gen>-s<slot>`, or
/// `<service>-<scope>-g<gen>-s<slot>` with a node scope.
pub fn handover_name(service: &ServiceName, scope: Option<&str>, id: InstanceId) -> String {
    format!(
        "{}-g{}-s{}",
        scoped(service, scope),
        id.generation.0,
        id.slot
    )
}

/// The stable name of a recreate container created from the template: `<service>` (slot 0)
/// or `<service>-s<slot>`, with `-<scope>` after the service name when scoped.
pub fn template_name(service: &ServiceName, scope: Option<&str>, slot: u32) -> String {
    let base = scoped(service, scope);
    if slot == 0 {
        base
    } else {
        format!("{base}-s{slot}")
    }
}

/// The service an adopted container belongs to: its `deployer.service` label, else its
/// name (which must then be a valid service name).
pub fn adopted_service(
    labels: &HashMap<String, String>,
    container_name: &str,
) -> Option<ServiceName> {
    match labels.get(SERVICE) {
        Some(service) => ServiceName::new(service).ok(),
        None => ServiceName::new(base_name(container_name)).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(base_name("/web"), "web");
        assert_eq!(base_name("/web.deployer-old-g12"), "web");
        assert_eq!(base_name("web.deployer-old-gx"), "web.deployer-old-gx");
        assert_eq!(old_name("web", Generation(3)), "web.deployer-old-g3");
        let svc = ServiceName::new("api").unwrap();
        let id = InstanceId {
            generation: Generation(4),
            slot: 1,
        };
        assert_eq!(handover_name(&svc, None, id), "api-g4-s1");
        assert_eq!(handover_name(&svc, Some("web-2"), id), "api-web-2-g4-s1");
        assert_eq!(template_name(&svc, None, 0), "api");
        assert_eq!(template_name(&svc, None, 2), "api-s2");
        assert_eq!(template_name(&svc, Some("web-2"), 0), "api-web-2");
        assert_eq!(template_name(&svc, Some("web-2"), 2), "api-web-2-s2");
    }

    #[test]
    fn scopes_are_checked_and_matched() {
        assert!(validate_scope("web-2.prod_a").is_ok());
        assert!(validate_scope("").is_err());
        assert!(validate_scope("a/b").is_err());
        assert!(validate_scope(&"x".repeat(SCOPE_MAX + 1)).is_err());
        let scoped = HashMap::from([(NODE.to_owned(), "web-2".to_owned())]);
        assert!(in_scope(&scoped, Some("web-2")));
        assert!(!in_scope(&scoped, Some("web-3")));
        assert!(
            !in_scope(&scoped, None),
            "unscoped switchers leave scoped containers alone"
        );
        assert!(in_scope(&HashMap::new(), None));
        assert!(!in_scope(&HashMap::new(), Some("web-2")));
    }
}
