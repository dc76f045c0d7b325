//! `POST /api/v1/services/{name}/pause`, `/maintenance` and `/resume`: what the service's proxy
//! does with new requests. The proxies belong to the binary's switcher; this crate only asks.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

use super::Admin;
use super::codes;
use super::routes::{empty_body, read_object, unknown_service};
use crate::api_error::ApiError;

/// The longest a paused request may be held.
pub const MAX_HOLD: Duration = Duration::from_secs(300);
/// How long a paused request is held unless the pause says otherwise.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(30);
/// The longest maintenance message.
pub const MAX_MESSAGE: usize = 1000;

/// What a service's proxy does with new requests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Gate {
    /// Forward them.
    Open,
    /// Hold each up to `hold`, then 503.
    Paused {
        /// How long one request may wait.
        hold: Duration,
    },
    /// Answer 503 with the message.
    Maintenance {
        /// The body of the answer.
        message: String,
    },
}

/// Sets the gate of a service's proxy.
#[async_trait::async_trait]
pub trait TrafficControl: Send + Sync {
    /// Fails when the service has no proxy of deployer's (not a handover service), or the
    /// proxy could not be reached.
    async fn set_gate(&self, service: &str, gate: Gate) -> Result<(), GateError>;
}

/// Why a gate was not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// The service is not behind one of deployer's proxies.
    #[error("the service has no proxy of deployer's: only handover services can be paused")]
    NoProxy,
    /// The proxy process could not be reached.
    #[error("the proxy could not be reached: {0}")]
    Unavailable(String),
}

pub(super) async fn pause(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let body = read_object(&admin, request, &["hold_seconds"]).await?;
    let hold = match body.get("hold_seconds") {
        None => DEFAULT_HOLD,
        Some(value) => match value.as_u64() {
            Some(n) if (1..=MAX_HOLD.as_secs()).contains(&n) => Duration::from_secs(n),
            _ => {
                return Err(ApiError::bad_request(
                    "hold_seconds",
                    format!("must be a whole number from 1 to {}", MAX_HOLD.as_secs()),
                ));
            }
        },
    };
    set(&admin, &name, Gate::Paused { hold }).await
}

pub(super) async fn maintenance(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let body = read_object(&admin, request, &["message"]).await?;
    let message = match body.get("message").map(Value::as_str) {
        Some(Some(m)) if !m.trim().is_empty() && m.chars().count() <= MAX_MESSAGE => m.to_owned(),
        _ => {
            return Err(ApiError::bad_request(
                "message",
                format!("a text of 1 to {MAX_MESSAGE} characters is required"),
            ));
        }
    };
    set(&admin, &name, Gate::Maintenance { message }).await
}

pub(super) async fn resume(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    empty_body(&admin, request, "a resume takes none").await?;
    set(&admin, &name, Gate::Open).await
}

async fn set(admin: &Admin, name: &str, gate: Gate) -> Result<Response, ApiError> {
    if admin.handle.service(name).is_none() {
        return Err(unknown_service(name));
    }
    let Some(traffic) = &admin.traffic else {
        return Err(
            ApiError::unavailable("this daemon has no proxies to control", None)
                .with_code(codes::TRAFFIC_UNAVAILABLE),
        );
    };
    let label = match &gate {
        Gate::Open => "open",
        Gate::Paused { .. } => "paused",
        Gate::Maintenance { .. } => "maintenance",
    };
    traffic.set_gate(name, gate).await.map_err(|e| match e {
        GateError::NoProxy => {
            ApiError::new(StatusCode::CONFLICT, e.to_string()).with_code(codes::NO_PROXY)
        }
        _ => ApiError::unavailable(e.to_string(), None).with_code(codes::TRAFFIC_UNAVAILABLE),
    })?;
    tracing::info!(service = name, gate = label, "proxy gate set");
    Ok((
        StatusCode::OK,
        Json(json!({"service": name, "gate": label})),
    )
        .into_response())
}
