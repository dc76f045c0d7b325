//! `POST /api/v1/reload`: the config file read again, its services applied without a restart.
//! The reading belongs to the binary (it knows the file and the flags); this crate only asks.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use deployer_core::driver::ReloadSummary;
use http::StatusCode;

use super::Admin;
use super::codes;
use super::routes::empty_body;
use crate::api_error::ApiError;

/// Re-reads the configuration and applies it to the running daemon.
#[async_trait]
pub trait Reloader: Send + Sync {
    /// Applies the config as it is now; on any error nothing changes.
    async fn reload(&self) -> Result<ReloadSummary, ReloadError>;
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The file does not pass `config check`: every problem, as it would print them.
    #[error("the config is invalid, so the running one stays: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The file is valid but cannot be applied while running (a listener that would move, a
    /// port in use).
    #[error("{0}")]
    Refused(String),
}

pub(super) async fn reload(
    State(admin): State<Arc<Admin>>,
    request: Request,
) -> Result<Response, ApiError> {
    empty_body(&admin, request, "a reload takes none").await?;
    let Some(reloader) = &admin.reloader else {
        return Err(ApiError::unavailable(
            "this daemon cannot reload: it was started without a config file to read again",
            None,
        )
        .with_code(codes::RELOAD_UNAVAILABLE));
    };
    match reloader.reload().await {
        Ok(summary) => {
            tracing::info!(
                added = summary.added.len(),
                changed = summary.changed.len(),
                removed = summary.removed.len(),
                unchanged = summary.unchanged,
                "config reloaded"
            );
            Ok((StatusCode::OK, Json(summary)).into_response())
        }
        Err(e @ ReloadError::Invalid(_)) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
                .with_code(codes::INVALID_CONFIG))
        }
        Err(e @ ReloadError::Refused(_)) => {
            Err(ApiError::new(StatusCode::CONFLICT, e.to_string()).with_code(codes::RELOAD_REFUSED))
        }
    }
}
