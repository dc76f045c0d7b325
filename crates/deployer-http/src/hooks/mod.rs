//! Webhook endpoints: one per sender, each authenticated its own way, all feeding the
//! [`EventSink`].
//!
//! Every request goes through the same steps, in this order, and stops at the first failure:
//!
//! 1. endpoint served? (no secret and not `insecure` -> 404, as for an unknown path)
//! 2. token / bearer / signature header present and right -> else 401 (nothing read further)
//! 3. content type -> else 415
//! 4. body within the size and time limits -> else 413 / 408
//! 5. HMAC signature over the raw body (GitHub) -> else 401
//! 6. JSON and the fields that matter -> else 400 `{"error": "<field>: <problem>"}`, and
//!    every image from a registry the endpoint speaks for (`bound.rs`) -> else 403
//! 7. submit each announced build to the sink (never blocks) -> 202, or 503 when the queue is
//!    full (with `Retry-After`) or the deployer is stopping
//!
//! Untracked repositories and payloads that announce no build (pulls, blob pushes, pings) get
//! 202 too: the sender did nothing wrong, and retrying would not help.

mod auth;
mod bound;
mod decode;
mod dockerhub;
mod generic;
mod github;
mod harbor;
mod json;
mod quay;
mod registry;
mod time;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use deployer_core::driver::{EventSink, Submission, SubmitError};
use deployer_core::ports::ImageEvent;
use deployer_core::{Source, Timestamp};
use http::{HeaderMap, StatusCode};
use serde::Serialize;

pub(crate) use auth::bearer_matches;
pub use auth::{AuthKind, signature};
pub use decode::{Build, DecodeContext, DecodeError, decode};

use crate::api_error::ApiError;
use crate::body::{InFlight, media_type, read_body_within, unsupported_media_type};
use crate::config::{ConfigError, WebhookConfig};
use crate::metrics::{Metrics, WebhookResult};
use crate::refusals::{self, Refusals};
use crate::secret::Secret;

/// GitHub's event name header.
const GITHUB_EVENT: &str = "x-github-event";
/// GitHub's delivery id header, shared by redeliveries.
const GITHUB_DELIVERY: &str = "x-github-delivery";
/// Longest delivery id kept (GitHub's are 36-character GUIDs).
const DELIVERY_ID_MAX: usize = 128;

/// Who sends a webhook; each has its own endpoint, payload and authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sender {
    /// Docker Hub repository webhooks.
    DockerHub,
    /// Docker Registry (distribution) notifications.
    Registry,
    /// GitHub `package` / `registry_package` events.
    GitHub,
    /// Quay `repo_push` notifications.
    Quay,
    /// Harbor `PUSH_ARTIFACT` webhooks.
    Harbor,
    /// `{"image": ..., "digest": ...}` from anything else.
    Generic,
}

impl Sender {
    /// Every sender.
    pub const ALL: [Sender; 6] = [
        Self::DockerHub,
        Self::Registry,
        Self::GitHub,
        Self::Quay,
        Self::Harbor,
        Self::Generic,
    ];

    /// The endpoint's last path segment, the event source name and the metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DockerHub => "dockerhub",
            Self::Registry => "registry",
            Self::GitHub => "github",
            Self::Quay => "quay",
            Self::Harbor => "harbor",
            Self::Generic => "generic",
        }
    }

    /// How the sender authenticates.
    pub fn auth(self) -> AuthKind {
        match self {
            Self::DockerHub | Self::Quay => AuthKind::Token,
            Self::Registry | Self::Harbor | Self::Generic => AuthKind::Bearer,
            Self::GitHub => AuthKind::Signature,
        }
    }

    /// Content types the endpoint accepts.
    pub fn media_types(self) -> &'static [&'static str] {
        match self {
            Self::Registry => registry::MEDIA_TYPES,
            _ => &["application/json"],
        }
    }
}

/// One served endpoint.
#[derive(Debug)]
struct Endpoint {
    /// `None` only for endpoints configured `insecure`.
    secret: Option<Secret>,
    /// Registry name override.
    registry: Option<String>,
    /// The registries it may announce images of.
    bound: bound::Binding,
    /// The sender's name as an event source, built once.
    source: Source,
}

/// Shared state of the webhook handlers.
#[derive(Debug)]
struct Hooks {
    /// Served endpoints, indexed like [`Sender::ALL`]; `None` = off.
    endpoints: [Option<Endpoint>; 6],
    sink: EventSink,
    metrics: Arc<Metrics>,
    body_limit: usize,
    body_timeout: Duration,
    retry_after: Duration,
    in_flight: InFlight,
    refusals: Refusals,
}

/// The request-body bytes the webhook server holds at once, unless one body may be larger.
pub const IN_FLIGHT_BYTES: usize = 16 << 20;

/// The router serving every webhook endpoint under `config.path_prefix`.
///
/// Token senders (Docker Hub, Quay) get both `<prefix>/<sender>` (token in `?token=`) and
/// `<prefix>/<sender>/{token}`. Every answer is counted in `metrics`.
pub fn webhook_router(
    config: &WebhookConfig,
    sink: EventSink,
    metrics: Arc<Metrics>,
) -> Result<Router, ConfigError> {
    config.validate()?;
    let endpoints = Sender::ALL.map(|sender| {
        let endpoint = config.endpoint(sender);
        endpoint.is_enabled().then(|| Endpoint {
            secret: endpoint.secret.clone(),
            registry: endpoint.registry.clone(),
            bound: bound::Binding::new(sender, endpoint),
            source: Source::new(sender.as_str()),
        })
    });
    let hooks = Arc::new(Hooks {
        endpoints,
        sink,
        metrics,
        body_limit: config.body_limit,
        body_timeout: config.body_timeout,
        retry_after: config.retry_after,
        in_flight: InFlight::new(IN_FLIGHT_BYTES.max(config.body_limit)),
        refusals: Refusals::new("webhook"),
    });
    let mut router = Router::new();
    for sender in Sender::ALL {
        let path = format!("{}/{}", config.prefix(), sender.as_str());
        router = router.route(
            &path,
            post(
                move |State(hooks): State<Arc<Hooks>>, request: Request| async move {
                    hooks.handle(sender, None, request).await
                },
            ),
        );
        if sender.auth() == AuthKind::Token {
            router = router.route(
                &format!("{path}/{{token}}"),
                post(
                    move |State(hooks): State<Arc<Hooks>>,
                          token: Result<Path<String>, PathRejection>,
                          request: Request| async move {
                        // A token that does not even decode is a wrong token: 401, not 400.
                        let token = token.map_or_else(|_| String::new(), |Path(t)| t);
                        hooks.handle(sender, Some(token), request).await
                    },
                ),
            );
        }
    }
    Ok(router
        .fallback(|| async { ApiError::not_found("not found") })
        .with_state(hooks))
}

/// A refused request: the metrics label and the answer.
type Refusal = (WebhookResult, ApiError);

/// The 202 answer: what became of each announced build.
#[derive(Debug, Serialize)]
struct Accepted {
    events: Vec<EventResult>,
}

/// What became of one announced build, as the response reports it.
#[derive(Debug, Serialize)]
struct EventResult {
    image: String,
    digest: Option<String>,
    result: Submission,
}

impl Hooks {
    fn endpoint(&self, sender: Sender) -> Option<&Endpoint> {
        let index = Sender::ALL.iter().position(|s| *s == sender)?;
        self.endpoints[index].as_ref()
    }

    async fn handle(
        &self,
        sender: Sender,
        path_token: Option<String>,
        request: Request,
    ) -> Response {
        let (result, response) = match self.process(sender, path_token, request).await {
            Ok((result, events)) => {
                let body = Accepted { events };
                (
                    result,
                    (StatusCode::ACCEPTED, axum::Json(body)).into_response(),
                )
            }
            Err((result, error)) => (result, error.into_response()),
        };
        self.metrics.webhook(sender, result);
        response
    }

    async fn process(
        &self,
        sender: Sender,
        path_token: Option<String>,
        request: Request,
    ) -> Result<(WebhookResult, Vec<EventResult>), Refusal> {
        let Some(endpoint) = self.endpoint(sender) else {
            return Err((WebhookResult::NotFound, ApiError::not_found("not found")));
        };
        let (parts, body) = request.into_parts();
        let refuse_auth = || {
            // The request's path and headers may hold a (wrong) secret: log neither.
            self.refusals.note(sender.as_str(), "unauthorized");
            (WebhookResult::Unauthorized, ApiError::unauthorized())
        };
        if let Some(secret) = &endpoint.secret
            && !auth::check_headers(sender.auth(), secret, &parts, path_token.as_deref())
        {
            return Err(refuse_auth());
        }
        let accepted = sender.media_types();
        if !media_type(&parts.headers)
            .is_some_and(|t| accepted.iter().any(|a| a.eq_ignore_ascii_case(t)))
        {
            return Err((
                WebhookResult::UnsupportedMediaType,
                unsupported_media_type(accepted),
            ));
        }
        // A signed body is hashed as it arrives and held within the server's budget: an
        // unauthenticated flood holds at most that many bytes, however many connections.
        let mut signature = match (&endpoint.secret, sender.auth()) {
            (Some(secret), AuthKind::Signature) => {
                Some(auth::SignatureCheck::new(secret, &parts.headers).ok_or_else(refuse_auth)?)
            }
            _ => None,
        };
        let held = read_body_within(
            body,
            &parts.headers,
            self.body_limit,
            self.body_timeout,
            &self.in_flight,
            |chunk| {
                if let Some(check) = signature.as_mut() {
                    check.update(chunk);
                }
            },
        )
        .await
        .map_err(|e| (WebhookResult::from(e), e.into_api_error()))?;
        if let Some(check) = signature
            && !check.verify()
        {
            return Err(refuse_auth());
        }
        let body = &held.bytes;
        let event = header(&parts.headers, GITHUB_EVENT);
        let ctx = DecodeContext::new(event, endpoint.registry.as_deref());
        let builds = decode(sender, body, &ctx).map_err(|e| {
            self.refusals.note(sender.as_str(), "bad_request");
            tracing::debug!(
                source = sender.as_str(),
                "webhook refused: {}",
                refusals::quoted(&e.to_string())
            );
            (
                WebhookResult::BadRequest,
                ApiError::bad_request(&e.field, &e.problem),
            )
        })?;
        endpoint
            .bound
            .check(sender, &builds)
            .map_err(|e| (WebhookResult::ForeignRegistry, e))?;
        let delivery_id = match sender {
            Sender::GitHub => {
                header(&parts.headers, GITHUB_DELIVERY).filter(|id| id.len() <= DELIVERY_ID_MAX)
            }
            _ => None,
        };
        self.submit(endpoint, builds, delivery_id)
    }

    fn submit(
        &self,
        endpoint: &Endpoint,
        builds: Vec<Build>,
        delivery_id: Option<&str>,
    ) -> Result<(WebhookResult, Vec<EventResult>), Refusal> {
        let received_at = Timestamp::now();
        let mut results = Vec::with_capacity(builds.len());
        for build in builds {
            let event = ImageEvent {
                image: build.image,
                digest: build.digest,
                source: endpoint.source.clone(),
                received_at,
                // GitHub names its delivery in a header; a registry names each event in the body.
                delivery_id: delivery_id.map(str::to_owned).or(build.event_id),
                event_time: build.event_time,
                callback_url: build.callback_url,
            };
            let (image, digest) = (
                event.image.to_string(),
                event.digest.as_ref().map(ToString::to_string),
            );
            match self.sink.submit(event) {
                Ok(result) => {
                    if result == Submission::Queued {
                        tracing::info!(source = %endpoint.source, %image, digest = digest.as_deref().unwrap_or("-"), "webhook queued a build");
                    }
                    results.push(EventResult {
                        image,
                        digest,
                        result,
                    });
                }
                Err(SubmitError::Busy) => {
                    tracing::warn!(source = %endpoint.source, %image, "event queue full; asked the sender to retry");
                    return Err((
                        WebhookResult::Busy,
                        ApiError::unavailable(
                            "event queue is full; retry later",
                            Some(self.retry_after),
                        ),
                    ));
                }
                Err(_) => {
                    return Err((
                        WebhookResult::Unavailable,
                        ApiError::unavailable("deployer is shutting down", None),
                    ));
                }
            }
        }
        let result = if results.iter().any(|r| r.result == Submission::Queued) {
            WebhookResult::Accepted
        } else if results.iter().any(|r| r.result == Submission::Duplicate) {
            WebhookResult::Duplicate
        } else {
            WebhookResult::Ignored
        };
        Ok((result, results))
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}
