use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{BuildSpec, ContainerTemplate, HealthCheck, ServiceName, SpecError, Strategy};
use crate::backoff::Backoff;
use crate::image::ImageRef;

/// Most replicas of one service: each slot is planned and tracked, so an absurd count would
/// exhaust memory before anything started.
pub const MAX_REPLICAS: u32 = 64;

/// Bounds on the slow steps of a deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// Pulling or building the image.
    pub fetch: Duration,
    /// Creating and starting one container.
    pub start: Duration,
    /// Grace between the stop signal and the kill.
    pub stop: Duration,
    /// How long in-flight requests of a retired container may take to finish.
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            fetch: Duration::from_secs(600),
            start: Duration::from_secs(60),
            stop: Duration::from_secs(10),
            drain: Duration::from_secs(30),
        }
    }
}

impl Timeouts {
    fn validate(&self) -> Result<(), SpecError> {
        for (field, value) in [
            ("timeouts.fetch", self.fetch),
            ("timeouts.start", self.start),
        ] {
            if value.is_zero() {
                return Err(SpecError::invalid(field, "must be greater than zero"));
            }
        }
        Ok(())
    }
}

/// Everything deployer knows about one service: what it tracks and how to switch it.
///
/// Built through [`ServiceSpec::builder`], which validates every field, so a spec in hand is
/// always coherent.
///
/// ```
/// use deployer_core::{ImageRef, ServiceSpec};
/// let spec = ServiceSpec::builder("web", "demo/app:latest".parse().unwrap())
///     .replicas(2)
///     .build()
///     .unwrap();
/// assert_eq!(spec.name().as_str(), "web");
/// assert!(ServiceSpec::builder("web", "demo/app".parse().unwrap()).replicas(0).build().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    name: ServiceName,
    image: ImageRef,
    build: Option<BuildSpec>,
    template: ContainerTemplate,
    replicas: u32,
    strategy: Strategy,
    health: HealthCheck,
    timeouts: Timeouts,
    retry: Backoff,
}

impl ServiceSpec {
    /// Starts a spec for service `name` tracking `image` (a repo:tag; a digest is dropped).
    pub fn builder(name: &str, image: ImageRef) -> ServiceSpecBuilder {
        ServiceSpecBuilder {
            name: name.to_owned(),
            image,
            build: None,
            template: ContainerTemplate::default(),
            replicas: 1,
            strategy: Strategy::Recreate,
            health: None,
            timeouts: Timeouts::default(),
            retry: Backoff::default(),
        }
    }

    /// The service's name.
    pub fn name(&self) -> &ServiceName {
        &self.name
    }

    /// The repo:tag whose new builds this service follows.
    pub fn image(&self) -> &ImageRef {
        &self.image
    }

    /// Build context, when the image is built locally instead of pulled.
    pub fn build(&self) -> Option<&BuildSpec> {
        self.build.as_ref()
    }

    /// Container settings.
    pub fn template(&self) -> &ContainerTemplate {
        &self.template
    }

    /// Containers that serve at once.
    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    /// How generations are switched.
    pub fn strategy(&self) -> &Strategy {
        &self.strategy
    }

    /// How candidates are probed.
    pub fn health(&self) -> &HealthCheck {
        &self.health
    }

    /// Bounds on slow steps.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Retry policy for transient failures.
    pub fn retry(&self) -> &Backoff {
        &self.retry
    }

    /// Containers started at once during a rolling deploy.
    pub fn surge(&self) -> u32 {
        self.strategy
            .handover()
            .map_or(1, |h| h.max_surge().min(self.replicas))
    }
}

/// Collects a [`ServiceSpec`]'s settings; [`build`](Self::build) validates them together.
#[derive(Debug, Clone)]
#[must_use]
pub struct ServiceSpecBuilder {
    name: String,
    image: ImageRef,
    build: Option<BuildSpec>,
    template: ContainerTemplate,
    replicas: u32,
    strategy: Strategy,
    health: Option<HealthCheck>,
    timeouts: Timeouts,
    retry: Backoff,
}

impl ServiceSpecBuilder {
    /// Builds the image from a directory instead of pulling it.
    pub fn build_from(mut self, build: BuildSpec) -> Self {
        self.build = Some(build);
        self
    }

    /// Container settings.
    pub fn template(mut self, template: ContainerTemplate) -> Self {
        self.template = template;
        self
    }

    /// Containers that serve at once (1 to [`MAX_REPLICAS`]).
    pub fn replicas(mut self, replicas: u32) -> Self {
        self.replicas = replicas;
        self
    }

    /// Switch strategy (default: recreate).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Health check (default: TCP connect for handover, container running otherwise).
    pub fn health(mut self, health: HealthCheck) -> Self {
        self.health = Some(health);
        self
    }

    /// Step timeouts.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Retry policy for transient failures.
    pub fn retry(mut self, retry: Backoff) -> Self {
        self.retry = retry;
        self
    }

    /// Validates everything and builds the spec.
    pub fn build(self) -> Result<ServiceSpec, SpecError> {
        let name = ServiceName::new(&self.name)?;
        if !(1..=MAX_REPLICAS).contains(&self.replicas) {
            return Err(SpecError::invalid(
                "replicas",
                format!("must be from 1 to {MAX_REPLICAS}"),
            ));
        }
        if matches!(self.strategy, Strategy::Stop) && self.build.is_some() {
            return Err(SpecError::invalid(
                "strategy",
                "\"stop\" leaves restarts to a supervisor, which cannot use a locally built image; use \"recreate\" or \"handover\"",
            ));
        }
        self.timeouts.validate()?;
        let health = match self.health {
            Some(health) => health,
            None if self.strategy.handover().is_some() => HealthCheck::default(),
            None => HealthCheck::with_probe(super::Probe::Running),
        };
        if self.strategy.handover().is_none()
            && matches!(
                health.probe(),
                super::Probe::Http { .. } | super::Probe::Tcp
            )
            && self.template.ports.is_empty()
        {
            return Err(SpecError::invalid(
                "health.kind",
                "an HTTP or TCP probe needs a port: use the handover strategy or publish a port in ports",
            ));
        }
        Ok(ServiceSpec {
            name,
            image: self.image.without_digest(),
            build: self.build,
            template: self.template,
            replicas: self.replicas,
            strategy: self.strategy,
            health,
            timeouts: self.timeouts,
            retry: self.retry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{Handover, ProxyProtocol};

    fn image() -> ImageRef {
        "demo/app:latest".parse().unwrap()
    }

    #[test]
    fn rejects_nonsense_naming_the_field() {
        let err = ServiceSpec::builder("", image()).build().unwrap_err();
        assert_eq!(err.field, "name");
        let err = ServiceSpec::builder("web", image())
            .replicas(0)
            .build()
            .unwrap_err();
        assert_eq!(err.field, "replicas");
        let err = ServiceSpec::builder("web", image())
            .replicas(1_000_000_000)
            .build()
            .unwrap_err();
        assert_eq!(
            (err.field.as_ref(), err.problem.as_str()),
            ("replicas", "must be from 1 to 64")
        );
        let timeouts = Timeouts {
            start: Duration::ZERO,
            ..Timeouts::default()
        };
        let err = ServiceSpec::builder("web", image())
            .timeouts(timeouts)
            .build()
            .unwrap_err();
        assert_eq!(err.field, "timeouts.start");
        let err = ServiceSpec::builder("web", image())
            .health(HealthCheck::default())
            .build()
            .unwrap_err();
        assert_eq!(err.field, "health.kind");
    }

    #[test]
    fn defaults_follow_the_strategy() {
        let handover = Handover::new(
            "127.0.0.1:8080".parse().unwrap(),
            80,
            ProxyProtocol::Http,
            1,
        )
        .unwrap();
        let spec = ServiceSpec::builder(
            "web",
            "demo/app@sha256:74f9ca9aa780491d0401ce76b5c1c41b3109741abdbf06ccc096ebd5fbd5fa0f"
                .parse()
                .unwrap(),
        )
        .strategy(Strategy::Handover(handover))
        .replicas(3)
        .build()
        .unwrap();
        assert_eq!(spec.health().probe(), &crate::service::Probe::Tcp);
        assert_eq!(spec.image().to_string(), "docker.io/demo/app:latest");
        assert_eq!(spec.surge(), 1);
        let plain = ServiceSpec::builder("worker", image()).build().unwrap();
        assert_eq!(plain.health().probe(), &crate::service::Probe::Running);
    }
}
