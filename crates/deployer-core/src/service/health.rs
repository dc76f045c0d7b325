use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SpecError;

/// How a candidate proves it can take traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Probe {
    /// An HTTP GET of `path` on the container port answers `status`.
    Http {
        /// Request path, starting with `/`.
        path: String,
        /// Status code that means healthy.
        status: u16,
    },
    /// A TCP connection to the container port is accepted.
    Tcp,
    /// The image's own Docker `HEALTHCHECK` reports `healthy`.
    Docker,
    /// The container is still running: for services with no port and no healthcheck.
    Running,
}

/// When and how long to probe a candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    probe: Probe,
    interval: Duration,
    timeout: Duration,
    deadline: Duration,
    healthy_threshold: u32,
    /// After traffic moved to a new build, how long it must stay up and healthy while the old
    /// generation stands by (running, out of traffic) before the old one is stopped. Zero
    /// retires the old generation at once.
    #[serde(default = "default_watch")]
    watch: Duration,
    /// During the watch, the share of requests through the proxy that may fail (gateway
    /// errors, 5xx answers) before the new build is rolled back, in percent; 100 turns the
    /// bound off.
    #[serde(default = "default_error_percent")]
    max_error_percent: u8,
}

/// The error-rate bound during the watch by default, in percent.
pub const DEFAULT_MAX_ERROR_PERCENT: u8 = 10;

fn default_error_percent() -> u8 {
    DEFAULT_MAX_ERROR_PERCENT
}

/// How long a promoted build is watched by default.
pub const DEFAULT_WATCH: Duration = Duration::from_secs(5);

fn default_watch() -> Duration {
    DEFAULT_WATCH
}

impl HealthCheck {
    /// Probes every `interval`, each bounded by `timeout`, until `healthy_threshold` consecutive
    /// successes or until `deadline` after the candidate started, when it is declared unhealthy.
    pub fn new(
        probe: Probe,
        interval: Duration,
        timeout: Duration,
        deadline: Duration,
        healthy_threshold: u32,
    ) -> Result<Self, SpecError> {
        if let Probe::Http { path, status } = &probe {
            if !path.starts_with('/') {
                return Err(SpecError::invalid(
                    "health.path",
                    format!("{path:?} must start with '/'"),
                ));
            }
            if !(100..=599).contains(status) {
                return Err(SpecError::invalid(
                    "health.status",
                    format!("{status} is not an HTTP status code (100-599)"),
                ));
            }
        }
        if interval.is_zero() {
            return Err(SpecError::invalid(
                "health.interval",
                "must be greater than zero",
            ));
        }
        if timeout.is_zero() {
            return Err(SpecError::invalid(
                "health.timeout",
                "must be greater than zero",
            ));
        }
        if deadline < interval {
            return Err(SpecError::invalid(
                "health.deadline",
                format!("{deadline:?} is shorter than health.interval ({interval:?})"),
            ));
        }
        if timeout > deadline {
            return Err(SpecError::invalid(
                "health.timeout",
                format!("{timeout:?} is longer than health.deadline ({deadline:?})"),
            ));
        }
        if healthy_threshold == 0 {
            return Err(SpecError::invalid(
                "health.healthy_threshold",
                "must be at least 1",
            ));
        }
        Ok(Self {
            probe,
            interval,
            timeout,
            deadline,
            healthy_threshold,
            watch: DEFAULT_WATCH,
            max_error_percent: DEFAULT_MAX_ERROR_PERCENT,
        })
    }

    /// A check with the default timings (1 s interval, 2 s timeout, 60 s deadline, 1 success).
    pub fn with_probe(probe: Probe) -> Self {
        Self {
            probe,
            ..Self::default()
        }
    }

    /// What is probed.
    pub fn probe(&self) -> &Probe {
        &self.probe
    }

    /// Pause between probes.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Bound on one probe.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Bound on the whole probing phase, from the candidate's start.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Consecutive successes needed.
    pub fn healthy_threshold(&self) -> u32 {
        self.healthy_threshold
    }

    /// The same check with a watch period of `watch` after promotion (zero: none).
    pub fn with_watch(mut self, watch: Duration) -> Self {
        self.watch = watch;
        self
    }

    /// How long a promoted build is watched before the old generation is stopped.
    pub fn watch(&self) -> Duration {
        self.watch
    }

    /// The same check with another error-rate bound during the watch, in percent (values
    /// above 100 are taken as 100: no bound).
    pub fn with_max_error_percent(mut self, percent: u8) -> Self {
        self.max_error_percent = percent.min(100);
        self
    }

    /// The share of proxied requests, in percent, that may fail during the watch.
    pub fn max_error_percent(&self) -> u8 {
        self.max_error_percent
    }
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            probe: Probe::Tcp,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(60),
            healthy_threshold: 1,
            watch: DEFAULT_WATCH,
            max_error_percent: DEFAULT_MAX_ERROR_PERCENT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn rejects_nonsense_naming_the_field() {
        let http = |path: &str, status| Probe::Http {
            path: path.to_owned(),
            status,
        };
        let cases = [
            (
                HealthCheck::new(Probe::Tcp, secs(0), secs(1), secs(5), 1),
                "health.interval",
            ),
            (
                HealthCheck::new(Probe::Tcp, secs(1), secs(0), secs(5), 1),
                "health.timeout",
            ),
            (
                HealthCheck::new(Probe::Tcp, secs(5), secs(1), secs(2), 1),
                "health.deadline",
            ),
            (
                HealthCheck::new(Probe::Tcp, secs(1), secs(9), secs(5), 1),
                "health.timeout",
            ),
            (
                HealthCheck::new(Probe::Tcp, secs(1), secs(1), secs(5), 0),
                "health.healthy_threshold",
            ),
            (
                HealthCheck::new(http("up", 200), secs(1), secs(1), secs(5), 1),
                "health.path",
            ),
            (
                HealthCheck::new(http("/up", 42), secs(1), secs(1), secs(5), 1),
                "health.status",
            ),
        ];
        for (result, field) in cases {
            let err = result.unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
        assert!(HealthCheck::new(http("/up", 200), secs(1), secs(1), secs(5), 2).is_ok());
    }
}
