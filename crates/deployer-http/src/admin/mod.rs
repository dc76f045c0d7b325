//! The admin API: services, history, fleet, deploy and rollback, health, metrics, and its
//! OpenAPI document.
//!
//! `/api/v1/*` and `/metrics` require `Authorization: Bearer <admin token>` when a token is
//! configured. Without a token anyone who can connect may deploy, so the binary must then bind
//! the admin listener to loopback only; [`validate_admin_exposure`](crate::config::validate_admin_exposure)
//! checks that. `/healthz` and `/readyz` never need a token (probes of supervisors).
//!
//! Status codes: 200 reads; 202 deploy/rollback published (the deploy itself runs after the
//! answer); 400 bad input naming the field, or an image from another repository; 401 missing
//! or wrong token; 404 unknown service or path; 409 nothing to roll back to; 413/415 body; 502
//! the registry or image build failed; 503 the coordinator is unavailable, or not ready.

mod openapi;
mod routes;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use deployer_core::driver::DriverHandle;

pub use openapi::openapi_document;

use crate::api_error::ApiError;
use crate::config::{AdminConfig, ConfigError};
use crate::hooks::bearer_matches;
use crate::metrics::{Metrics, ProxyStats};
use crate::secret::Secret;

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
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("handle", &self.handle)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// The admin router (see the module docs for the routes and their status codes).
pub fn admin_router(
    config: &AdminConfig,
    handle: DriverHandle,
    metrics: Arc<Metrics>,
    proxy: Option<Arc<dyn ProxyStats>>,
) -> Result<Router, ConfigError> {
    config.validate()?;
    let admin = Arc::new(Admin {
        handle,
        metrics,
        proxy,
        token: config.token.clone(),
        body_limit: config.body_limit,
        max_history: config.max_history,
    });
    let (mut open, mut guarded) = (Router::new(), Router::new());
    for route in routes::routes() {
        match route.access {
            Access::Open => open = open.route(route.path, route.handler),
            Access::Token => guarded = guarded.route(route.path, route.handler),
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
        tracing::warn!("admin API: missing or wrong token");
        return ApiError::unauthorized().into_response();
    }
    next.run(request).await
}
