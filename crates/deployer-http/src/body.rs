//! Reading request bodies with a size and time bound, and checking their media type.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::api_error::ApiError;

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Over the limit (by `Content-Length` or by counting).
    TooLarge(usize),
    /// The sender took too long.
    Timeout,
    /// The connection broke or the framing was invalid.
    Broken,
}

impl BodyError {
    pub(crate) fn into_api_error(self) -> ApiError {
        match self {
            Self::TooLarge(limit) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body: larger than the limit of {limit} bytes"),
            ),
            Self::Timeout => {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "body: not received in time")
            }
            Self::Broken => ApiError::bad_request("body", "could not be read"),
        }
    }
}

/// Reads the whole body, refusing more than `limit` bytes or more than `timeout`.
///
/// A `Content-Length` over the limit is refused before a byte is read.
pub(crate) async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await;
    match collected {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge(limit))
        }
        Ok(Err(_)) => Err(BodyError::Broken),
    }
}

/// The media type of the body (`application/json`) without parameters, as sent: compare it
/// with `eq_ignore_ascii_case`.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or("").trim();
    (!essence.is_empty()).then_some(essence)
}

/// 415 listing what is accepted.
pub(crate) fn unsupported_media_type(accepted: &[&str]) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("content-type: expected {}", accepted.join(" or ")),
    )
}
