//! Which registries each webhook endpoint may speak for.
//!
//! Most payloads name the registry host themselves (GitHub's `package_url`, a registry
//! event's `request.host`, Quay's `docker_url`, Harbor's `resource_url`). Without a binding,
//! whoever holds one sender's secret could announce a digest of any tracked image, for
//! instance one of a private registry that sender has nothing to do with, and deploy it. So
//! every endpoint speaks for a set of registry hosts, and a request naming any other is
//! refused whole (403 `foreign_registry`) before anything is queued:
//!
//! - `EndpointConfig::registries` when given;
//! - else the endpoint's `registry` override (every image it announces gets that host);
//! - else the sender's own registry: GitHub `ghcr.io`, Quay `quay.io`, Docker Hub `docker.io`;
//! - else, for the registry and Harbor endpoints, none: they belong to whoever runs them,
//!   so the host must be configured (the binary configures the registry host of the first
//!   service that tracks an image, one host, never "every host some service tracks": that
//!   would bind the endpoint to the registries it must not speak for);
//! - the generic endpoint names whole image references and answers to its own token, which
//!   is the operator's own tool: it may name any registry unless `registries` is given.

use deployer_core::ImageRef;
use http::StatusCode;

use super::Sender;
use super::decode::Build;
use crate::api_error::ApiError;
use crate::config::EndpointConfig;

/// The `code` of a refusal: the request named a registry the endpoint does not speak for.
pub(crate) const FOREIGN_REGISTRY: &str = "foreign_registry";

/// The registry a sender's payloads always name when it is a hosted service.
pub(crate) fn home_registry(sender: Sender) -> Option<&'static str> {
    match sender {
        Sender::GitHub => Some("ghcr.io"),
        Sender::Quay => Some("quay.io"),
        Sender::DockerHub => Some(deployer_core::image::DOCKER_HUB),
        Sender::Registry | Sender::Harbor | Sender::Generic => None,
    }
}

/// The registry hosts one endpoint may speak for; `None`: any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding(Option<Vec<String>>);

impl Binding {
    /// The binding of `sender`'s endpoint as configured (see the module docs).
    pub(crate) fn new(sender: Sender, endpoint: &EndpointConfig) -> Self {
        let hosts: Vec<String> = if !endpoint.registries.is_empty() {
            endpoint.registries.clone()
        } else if let Some(registry) = &endpoint.registry {
            vec![registry.clone()]
        } else if let Some(home) = home_registry(sender) {
            vec![home.to_owned()]
        } else if sender == Sender::Generic {
            return Self(None);
        } else {
            Vec::new()
        };
        Self(Some(hosts.iter().map(|h| h.to_ascii_lowercase()).collect()))
    }

    fn allows(&self, image: &ImageRef) -> bool {
        self.0.as_ref().is_none_or(|hosts| {
            hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(image.registry()))
        })
    }

    /// Refuses the whole request when one of its builds names a registry outside the binding.
    pub(crate) fn check(&self, sender: Sender, builds: &[Build]) -> Result<(), ApiError> {
        let Some(foreign) = builds.iter().find(|b| !self.allows(&b.image)) else {
            return Ok(());
        };
        let endpoint = sender.as_str();
        let registry = foreign.image.registry();
        tracing::warn!(source = endpoint, image = %foreign.image, "webhook refused: it names a registry its endpoint does not speak for");
        let speaks_for = match self.0.as_deref() {
            Some([]) => "no registry yet".to_owned(),
            Some(hosts) => hosts.join(", "),
            None => "any registry".to_owned(),
        };
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "image: {} is from registry {registry}, and the {endpoint} endpoint speaks for {speaks_for}; \
                 list {registry} in webhooks.{endpoint}.registries if this sender may deploy its images",
                foreign.image
            ),
        )
        .with_code(FOREIGN_REGISTRY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(image: &str) -> Build {
        Build::new(image.parse().expect("image"))
    }

    fn allowed(sender: Sender, endpoint: &EndpointConfig, image: &str) -> bool {
        Binding::new(sender, endpoint)
            .check(sender, &[build(image)])
            .is_ok()
    }

    #[test]
    fn hosted_senders_speak_for_their_own_registry_only() {
        let none = EndpointConfig::default();
        assert!(allowed(Sender::GitHub, &none, "ghcr.io/o/app:v1"));
        assert!(!allowed(
            Sender::GitHub,
            &none,
            "registry.example.com/o/app:v1"
        ));
        assert!(allowed(Sender::Quay, &none, "quay.io/ns/app:v1"));
        assert!(!allowed(Sender::Quay, &none, "ghcr.io/ns/app:v1"));
        assert!(allowed(Sender::DockerHub, &none, "nginx:latest"));
        assert!(!allowed(Sender::DockerHub, &none, "quay.io/ns/app:v1"));
        assert!(allowed(
            Sender::Generic,
            &none,
            "registry.example.com/o/app:v1"
        ));
    }

    #[test]
    fn self_hosted_senders_speak_for_what_is_configured_and_nothing_else() {
        let none = EndpointConfig::default();
        assert!(!allowed(
            Sender::Registry,
            &none,
            "127.0.0.1:5000/demo/app:v1"
        ));
        assert!(!allowed(
            Sender::Harbor,
            &none,
            "harbor.example.com/p/app:v1"
        ));
        let renamed = EndpointConfig::default().registry("harbor.internal:443");
        assert!(allowed(
            Sender::Harbor,
            &renamed,
            "harbor.internal:443/p/app:v1"
        ));
        assert!(!allowed(
            Sender::Harbor,
            &renamed,
            "harbor.example.com/p/app:v1"
        ));
        let listed = EndpointConfig::default().registries(["Reg.Example.com:5000", "ghcr.io"]);
        assert!(allowed(
            Sender::Registry,
            &listed,
            "reg.example.com:5000/demo/app:v1"
        ));
        assert!(!allowed(
            Sender::Registry,
            &listed,
            "reg.example.com/demo/app:v1"
        ));
        assert!(allowed(Sender::Generic, &listed, "ghcr.io/o/app:v1"));
        assert!(!allowed(Sender::Generic, &listed, "docker.io/o/app:v1"));
    }

    #[test]
    fn the_refusal_names_the_registry_and_the_endpoint() {
        let error = Binding::new(Sender::GitHub, &EndpointConfig::default())
            .check(
                Sender::GitHub,
                &[build("ghcr.io/o/a:1"), build("registry.example.com/o/b:1")],
            )
            .unwrap_err();
        assert_eq!(error.status, StatusCode::FORBIDDEN);
        assert_eq!(error.code, Some(FOREIGN_REGISTRY));
        assert_eq!(
            error.message,
            "image: registry.example.com/o/b:1 is from registry registry.example.com, and the github endpoint \
             speaks for ghcr.io; list registry.example.com in webhooks.github.registries if this sender may \
             deploy its images"
        );
        let error = Binding::new(Sender::Registry, &EndpointConfig::default())
            .check(Sender::Registry, &[build("127.0.0.1:5000/demo/app:v1")])
            .unwrap_err();
        assert!(
            error.message.contains("speaks for no registry yet"),
            "{}",
            error.message
        );
    }
}
