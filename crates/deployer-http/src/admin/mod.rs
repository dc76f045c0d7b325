//! The admin API: services, history, fleet, deploy and rollback, config reload, health,
//! metrics, and its OpenAPI document.
//!
//! `/api/v1/*` and `/metrics` require `Authorization: Bearer <admin token>` when a token is
//! configured. Without a token anyone who can connect may deploy, so the binary must then bind
//! the admin listener to loopback only; [`validate_admin_exposure`](crate::config::validate_admin_exposure)
//! checks that. `/healthz` and `/readyz` never need a token (probes of supervisors).
//!
//! Because "anyone who can connect" includes the browsers on the host, those routes are also
//! guarded against web pages (see `guard.rs`): a `Host` that is not the admin API's address
//! is 403 `host_not_allowed`, a state-changing request from another `Origin` is 403
//! `origin_not_allowed`, and one that is not `Content-Type: application/json` (even without a
//! body) is 415 `unsupported_media_type`.
//!
//! Status codes: 200 reads and applied reloads; 202 deploy/rollback published (the deploy
//! itself runs after the answer); 400 bad input naming the field, an image from another
//! repository, or a reloaded config that fails its checks; 401 missing
//! or wrong token; 403 the registry refused deployer's credentials for the image, or a request
//! the guard refused (`Host`, `Origin`); 404 unknown
//! service, image, tag or digest, or path; 409 nothing to roll back to, or a reload that
//! cannot be applied while running; 413/415 body; 500 a
//! corrupt coordinator record; 502 the image build (or another image step) failed; 503 the
//! registry, the container engine or the coordinator cannot be reached, or not ready, or no
//! config file to reload.
//!
//! Error bodies are `{"error": "<message>"}`; where one status has several causes they also
//! carry `"code"`, one of [`codes`].

mod guard;
mod openapi;
mod reload;
mod routes;
mod traffic;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use deployer_core::driver::DriverHandle;

pub(crate) use guard::parse_authority;
pub use openapi::openapi_document;
pub use reload::{ReloadError, Reloader};
pub use traffic::{DEFAULT_HOLD, Gate, GateError, MAX_HOLD, MAX_MESSAGE, TrafficControl};

use crate::api_error::ApiError;
use crate::config::{AdminConfig, ConfigError};
use crate::hooks::bearer_matches;
use crate::metrics::{Metrics, ProxyStats};
use crate::secret::Secret;

/// The `code` of error bodies, for clients that act on the cause (the CLI's exit codes).
pub mod codes {
    /// 404: no service has that name.
    pub const UNKNOWN_SERVICE: &str = "unknown_service";
    /// 400: the image asked for is from another repository than the service tracks.
    pub const WRONG_REPOSITORY: &str = "wrong_repository";
    /// 409: no earlier build to roll back to.
    pub const NOTHING_TO_ROLL_BACK: &str = "nothing_to_roll_back";
    /// 404: the registry has no such repository, tag or digest.
    pub const IMAGE_NOT_FOUND: &str = "image_not_found";
    /// 403: the registry refused deployer's credentials (or their absence).
    pub const IMAGE_UNAUTHORIZED: &str = "image_unauthorized";
    /// 503: the registry cannot be reached.
    pub const REGISTRY_UNREACHABLE: &str = "registry_unreachable";
    /// 503: the container engine cannot be reached.
    pub const ENGINE_UNREACHABLE: &str = "engine_unreachable";
    /// 502: building the image failed.
    pub const BUILD_FAILED: &str = "build_failed";
    /// 502: another image step failed.
    pub const IMAGE_FAILED: &str = "image_failed";
    /// 503: the coordinator cannot be reached or is shutting down.
    pub const COORDINATOR_UNAVAILABLE: &str = "coordinator_unavailable";
    /// 500: a coordinator record cannot be decoded.
    pub const COORDINATOR_CORRUPT: &str = "coordinator_corrupt";
    /// 403: `Host` is not the admin API's address nor one of `admin.hosts` (or is missing
    /// from a request that changes state).
    pub const HOST_NOT_ALLOWED: &str = "host_not_allowed";
    /// 403: a request that changes state came from a web page of another origin.
    pub const ORIGIN_NOT_ALLOWED: &str = "origin_not_allowed";
    /// 415: a request that changes state is not `Content-Type: application/json`.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// 400: the config file read again by a reload does not pass `config check`.
    pub const INVALID_CONFIG: &str = "invalid_config";
    /// 409: the reloaded config is valid but cannot be applied while running.
    pub const RELOAD_REFUSED: &str = "reload_refused";
    /// 503: the daemon has no config file to read again.
    pub const RELOAD_UNAVAILABLE: &str = "reload_unavailable";
    /// 409: pause, maintenance or resume of a service without deployer's proxy.
    pub const NO_PROXY: &str = "no_proxy";
    /// 503: the daemon has no proxies to control.
    pub const TRAFFIC_UNAVAILABLE: &str = "traffic_unavailable";
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone (health probes).
    Open,
    /// The admin token, when one is configured.
    Token,
}

/// Shared state of the admin handlers.
pub(crate) struct Admin {
    handle: DriverHandle,
    metrics: Arc<Metrics>,
    proxy: Option<Arc<dyn ProxyStats>>,
    token: Option<Secret>,
    body_limit: usize,
    max_history: usize,
    refusals: crate::refusals::Refusals,
    reloader: Option<Arc<dyn Reloader>>,
    traffic: Option<Arc<dyn TrafficControl>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("handle", &self.handle)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// What the admin API reaches besides the driver; each missing one makes its routes answer
/// 503 (or leaves its series out of `/metrics`).
#[derive(Default, Clone)]
#[non_exhaustive]
pub struct AdminPorts {
    /// The proxies' counters, for `/metrics`.
    pub proxy: Option<Arc<dyn ProxyStats>>,
    /// Behind `POST /api/v1/reload`.
    pub reloader: Option<Arc<dyn Reloader>>,
    /// Behind the pause, maintenance and resume routes.
    pub traffic: Option<Arc<dyn TrafficControl>>,
}

impl AdminPorts {
    /// With the proxies' counters.
    #[must_use]
    pub fn with_proxy(mut self, proxy: Arc<dyn ProxyStats>) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// With a reloader.
    #[must_use]
    pub fn with_reloader(mut self, reloader: Arc<dyn Reloader>) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// With traffic controls.
    #[must_use]
    pub fn with_traffic(mut self, traffic: Arc<dyn TrafficControl>) -> Self {
        self.traffic = Some(traffic);
        self
    }
}

impl std::fmt::Debug for AdminPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminPorts")
            .field("proxy", &self.proxy.is_some())
            .field("reloader", &self.reloader.is_some())
            .field("traffic", &self.traffic.is_some())
            .finish()
    }
}

/// The admin router (see the module docs for the routes and their status codes), without
/// reloads or traffic controls (their routes answer 503).
pub fn admin_router(
    config: &AdminConfig,
    handle: DriverHandle,
    metrics: Arc<Metrics>,
    proxy: Option<Arc<dyn ProxyStats>>,
) -> Result<Router, ConfigError> {
    let ports = AdminPorts {
        proxy,
        ..AdminPorts::default()
    };
    admin_router_with(config, handle, metrics, ports)
}

/// [`admin_router`] with every port the daemon has.
pub fn admin_router_with(
    config: &AdminConfig,
    handle: DriverHandle,
    metrics: Arc<Metrics>,
    ports: AdminPorts,
) -> Result<Router, ConfigError> {
    let AdminPorts {
        proxy,
        reloader,
        traffic,
    } = ports;
    config.validate()?;
    let admin = Arc::new(Admin {
        handle,
        metrics,
        proxy,
        token: config.token.clone(),
        body_limit: config.body_limit,
        max_history: config.max_history,
        refusals: crate::refusals::Refusals::new("admin API"),
        reloader,
        traffic,
    });
    let browser_guard = Arc::new(guard::Guard::new(config));
    let (mut open, mut guarded) = (Router::new(), Router::new());
    for route in routes::routes() {
        match route.access {
            Access::Open => open = open.route(route.path, route.handler),
            Access::Token => {
                // On the method's handler only, so a method the path does not serve is still
                // 405 whatever its headers.
                let handler = route.handler.route_layer(middleware::from_fn_with_state(
                    browser_guard.clone(),
                    guard::guard,
                ));
                guarded = guarded.route(route.path, handler);
            }
        }
    }
    // `route_layer`: only matched routes need the token, so unknown paths still get 404.
    let guarded = guarded.route_layer(middleware::from_fn_with_state(admin.clone(), require_token));
    Ok(open
        .merge(guarded)
        .fallback(|| async { ApiError::not_found("not found") })
        .with_state(admin))
}

async fn require_token(State(admin): State<Arc<Admin>>, request: Request, next: Next) -> Response {
    if let Some(token) = &admin.token
        && !bearer_matches(token, request.headers(), false)
    {
        admin.refusals.note("token", "unauthorized");
        return ApiError::unauthorized().into_response();
    }
    next.run(request).await
}
