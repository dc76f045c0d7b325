//! The crate's error type, and the mapping of engine errors onto the core's port errors.
//!
//! The engine answers every failure with a status code and a message; which of the core's
//! variants a failure is depends on both, because the engine passes registry failures on as
//! 500s with the registry's words in the message.

use deployer_core::ports::{BoxError, FailureKind, ImageError, SwitchError};
use deployer_core::reconcile::InstanceId;

/// What went wrong in this crate, outside of the port traits (which have their own errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DockerError {
    /// The endpoint string could not be understood.
    #[error("invalid Docker endpoint {endpoint:?}: {problem}")]
    InvalidEndpoint {
        /// What was given.
        endpoint: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The engine could not be reached or refused the version negotiation.
    #[error("Docker engine at {endpoint} unreachable")]
    Connect {
        /// Where we tried.
        endpoint: String,
        /// What went wrong underneath.
        #[source]
        source: bollard::errors::Error,
    },
    /// A Docker `config.json` could not be read or parsed.
    #[error("Docker config {path}: {problem}")]
    Credentials {
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A handover service's route could not be set or removed in the data plane.
    #[error("the proxy of service {service}: {source}")]
    Plane {
        /// The service.
        service: String,
        /// What went wrong underneath.
        #[source]
        source: deployer_plane::PlaneError,
    },
    /// An engine call failed.
    #[error("{operation} of {subject} failed")]
    Engine {
        /// The call.
        operation: &'static str,
        /// What it was about (a container, an image, a label).
        subject: String,
        /// What went wrong underneath.
        #[source]
        source: bollard::errors::Error,
    },
    /// A container label or the container itself is not what deployer can work with.
    #[error("container {container}: {problem}")]
    Unusable {
        /// The container.
        container: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// How an engine failure is to be understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No such image, tag, container (404, "manifest unknown").
    NotFound,
    /// Credentials refused (401/403, "unauthorized", "denied").
    Unauthorized,
    /// The registry behind the engine could not be reached.
    RegistryUnreachable,
    /// The engine itself could not be reached (socket, timeout, broken connection).
    EngineUnreachable,
    /// A conflict (name taken, container in use).
    Conflict,
    /// Anything else.
    Other,
}

/// Classifies an engine error; `message` is the engine's (or stream's) text.
pub(crate) fn classify(error: &bollard::errors::Error) -> Failure {
    use bollard::errors::Error as E;
    match error {
        E::DockerResponseServerError {
            status_code,
            message,
        } => classify_message(Some(*status_code), message),
        E::DockerStreamError { error } => classify_message(None, error),
        E::IOError { .. }
        | E::HyperResponseError { .. }
        | E::HttpClientError { .. }
        | E::HyperLegacyError { .. }
        | E::RequestTimeoutError
        | E::SocketNotFoundError(_)
        | E::UnsupportedURISchemeError { .. } => Failure::EngineUnreachable,
        _ => Failure::Other,
    }
}

/// Classifies by the engine's status code and words. The words win over the code: the
/// engine reports a registry's 401 as its own 500 on some versions.
pub(crate) fn classify_message(status: Option<u16>, message: &str) -> Failure {
    let m = message.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| m.contains(w));
    if any(&[
        "unauthorized",
        "authentication required",
        "denied",
        "no basic auth credentials",
        "incorrect username or password",
    ]) {
        Failure::Unauthorized
    } else if any(&[
        "connection refused",
        "no such host",
        "i/o timeout",
        "dial tcp",
        "tls:",
        "server gave http response",
        "connection reset",
        "network is unreachable",
        "eof",
    ]) {
        Failure::RegistryUnreachable
    } else if any(&[
        "manifest unknown",
        "not found",
        "no such",
        "name unknown",
        "does not exist",
    ]) || status == Some(404)
    {
        Failure::NotFound
    } else if matches!(status, Some(401 | 403)) {
        Failure::Unauthorized
    } else if status == Some(409) || any(&["conflict", "is already in use"]) {
        Failure::Conflict
    } else {
        Failure::Other
    }
}

/// Maps an engine error met while handling `image` onto the core's [`ImageError`].
pub(crate) fn image_error(
    operation: &'static str,
    image: &str,
    error: bollard::errors::Error,
) -> ImageError {
    let image = image.to_owned();
    match classify(&error) {
        Failure::NotFound => ImageError::NotFound { image },
        Failure::Unauthorized => ImageError::Unauthorized { image },
        Failure::RegistryUnreachable => ImageError::RegistryUnreachable {
            image,
            source: Box::new(error),
        },
        Failure::EngineUnreachable => ImageError::EngineUnreachable {
            image,
            source: Box::new(error),
        },
        Failure::Conflict | Failure::Other => ImageError::Other {
            operation,
            image,
            source: Box::new(error),
        },
    }
}

/// Maps an engine error met during a switcher step onto the core's [`SwitchError`], with what
/// the failure means for the build: this is where an engine hiccup is told apart from a build
/// that cannot run, so that only the latter halts a rollout.
pub(crate) fn switch_error(
    operation: &'static str,
    service: &str,
    instance: InstanceId,
    error: bollard::errors::Error,
) -> SwitchError {
    let failure = classify(&error);
    if failure == Failure::EngineUnreachable {
        return SwitchError::EngineUnreachable {
            operation,
            service: service.to_owned(),
            source: Box::new(error),
        };
    }
    let reason = engine_message(&error);
    let status = match &error {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    };
    SwitchError::Failed {
        operation,
        service: service.to_owned(),
        instance,
        kind: step_kind(operation, status, failure, &reason),
        reason,
        source: Some(Box::new(error)),
    }
}

/// What an engine failure of a switcher step means. The image's own fault shows only when the
/// runtime starts its process (the entrypoint is missing or not executable for this machine);
/// the words are checked first because "no such file" there would otherwise read as not found.
pub(crate) fn step_kind(
    operation: &str,
    status: Option<u16>,
    failure: Failure,
    message: &str,
) -> FailureKind {
    let m = message.to_ascii_lowercase();
    let runtime = [
        "oci runtime",
        "starting container process",
        "exec format error",
        "executable file not found",
    ];
    if operation == "start" && runtime.iter().any(|w| m.contains(w)) {
        return FailureKind::Build;
    }
    match failure {
        Failure::NotFound | Failure::Unauthorized => FailureKind::Permanent,
        Failure::RegistryUnreachable | Failure::EngineUnreachable | Failure::Conflict => {
            FailureKind::Transient
        }
        // A 400 is the engine refusing what we asked for (an invalid port, mount or option in
        // the service's template): asking again will not help.
        Failure::Other if status == Some(400) => FailureKind::Permanent,
        Failure::Other => FailureKind::Transient,
    }
}

/// A switcher step failed for a reason of our own (not an engine error).
pub(crate) fn step_failed(
    operation: &'static str,
    service: &str,
    instance: InstanceId,
    kind: FailureKind,
    reason: impl Into<String>,
    source: Option<BoxError>,
) -> SwitchError {
    SwitchError::Failed {
        operation,
        service: service.to_owned(),
        instance,
        kind,
        reason: reason.into(),
        source,
    }
}

/// The engine's own words for an error, without bollard's wrapping.
pub(crate) fn engine_message(error: &bollard::errors::Error) -> String {
    use bollard::errors::Error as E;
    match error {
        E::DockerResponseServerError { message, .. } => message.clone(),
        E::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

/// Whether an engine error says the object does not exist.
pub(crate) fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_words_win_over_status_codes() {
        for (status, message, expected) in [
            (
                Some(500),
                "Get \"http://127.0.0.1:5/v2/\": dial tcp 127.0.0.1:5: connect: connection refused",
                Failure::RegistryUnreachable,
            ),
            (
                Some(500),
                "unauthorized: authentication required",
                Failure::Unauthorized,
            ),
            (Some(401), "", Failure::Unauthorized),
            (
                Some(404),
                "manifest unknown: manifest unknown",
                Failure::NotFound,
            ),
            (
                Some(500),
                "manifest for 127.0.0.1:5000/a:b not found: manifest unknown",
                Failure::NotFound,
            ),
            (
                Some(409),
                "Conflict. The container name \"/x\" is already in use",
                Failure::Conflict,
            ),
            (Some(500), "something odd", Failure::Other),
        ] {
            assert_eq!(classify_message(status, message), expected, "{message}");
        }
    }

    #[test]
    fn only_an_image_that_cannot_run_is_the_build_s_fault() {
        let runtime = "failed to create task for container: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"/app\": stat /app: no such file or directory: unknown";
        for (operation, status, message, expected) in [
            ("start", Some(400), runtime, FailureKind::Build),
            (
                "start",
                Some(500),
                "dial unix /var/run/docker.sock: connect: connection refused",
                FailureKind::Transient,
            ),
            (
                "start",
                Some(404),
                "No such image: demo/app@sha256:ab",
                FailureKind::Permanent,
            ),
            (
                "start",
                Some(404),
                "network backend not found",
                FailureKind::Permanent,
            ),
            (
                "start",
                Some(400),
                "invalid port specification: \"http\"",
                FailureKind::Permanent,
            ),
            (
                "start",
                Some(409),
                "Conflict. The container name \"/x\" is already in use",
                FailureKind::Transient,
            ),
            (
                "remove",
                Some(409),
                "removal of container x is already in progress",
                FailureKind::Transient,
            ),
            ("start", Some(500), "something odd", FailureKind::Transient),
        ] {
            let failure = classify_message(status, message);
            assert_eq!(
                step_kind(operation, status, failure, message),
                expected,
                "{message}"
            );
        }
    }
}
