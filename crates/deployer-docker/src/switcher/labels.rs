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

/// The labels deployer owns on a container it creates; copied configs drop the old values.
pub const OWNED: [&str; 8] = [
    SERVICE, GENERATION, SLOT, STRATEGY, MANAGED, IMAGE, DIGEST, NAME,
];

/// The suffix of a recreate container renamed out of the way.
pub const OLD_SUFFIX: &str = ".deployer-old-g";

/// Deployer's labels for `instance` of `service`.
pub fn for_instance(
    service: &ServiceSpec,
    instance: &InstanceSpec,
    base_name: &str,
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
    labels
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

/// The handover strategy's container name: `<service>-g<gen>-s<slot>`.
pub fn handover_name(service: &ServiceName, id: InstanceId) -> String {
    format!("{service}-g{}-s{}", id.generation.0, id.slot)
}

/// The stable name of a recreate container created from the template.
pub fn template_name(service: &ServiceName, slot: u32) -> String {
    if slot == 0 {
        service.to_string()
    } else {
        format!("{service}-s{slot}")
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
        assert_eq!(
            handover_name(
                &svc,
                InstanceId {
                    generation: Generation(4),
                    slot: 1
                }
            ),
            "api-g4-s1"
        );
        assert_eq!(template_name(&svc, 0), "api");
        assert_eq!(template_name(&svc, 2), "api-s2");
    }
}
