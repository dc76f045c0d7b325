//! Reading request bodies with a size and time bound, and checking their media type.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    /// The server holds as many request bytes as it may (see [`InFlight`]).
    Busy,
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
            Self::Busy => ApiError::unavailable(
                "too many request bodies in flight; retry shortly",
                Some(Duration::from_secs(1)),
            ),
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
    declared_length(headers, limit)?;
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

/// A cap on the request-body bytes one server holds at once, across all its requests: what
/// unauthenticated senders can make it buffer (bodies are read before a signature over them
/// can be checked) is bounded by this, not by the number of connections.
#[derive(Debug, Clone)]
pub struct InFlight {
    bytes: Arc<Semaphore>,
}

impl InFlight {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            bytes: Arc::new(Semaphore::new(limit.clamp(1, Semaphore::MAX_PERMITS))),
        }
    }
}

/// A body read whole, holding its share of the [`InFlight`] budget until dropped.
#[derive(Debug)]
pub(crate) struct HeldBody {
    pub(crate) bytes: Bytes,
    _share: Option<OwnedSemaphorePermit>,
}

/// Reads the whole body like [`read_body`], each chunk first taken from `budget` (a full
/// budget refuses the request with [`BodyError::Busy`] instead of waiting) and shown to
/// `inspect` as it arrives, so a signature can be computed while the body streams in.
pub(crate) async fn read_body_within(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
    budget: &InFlight,
    mut inspect: impl FnMut(&[u8]),
) -> Result<HeldBody, BodyError> {
    let declared = declared_length(headers, limit)?;
    // A declared length is taken from the budget whole, before a byte is read: a request
    // that cannot be held is refused at once, and its buffer is allocated once, exactly.
    let declared = declared.and_then(|n| u32::try_from(n).ok());
    let mut share = match declared {
        Some(n) if n > 0 => Some(take(budget, n)?),
        _ => None,
    };
    let read = async move {
        let mut body = body;
        let mut buffer = BytesMut::with_capacity(declared.map_or(0, |n| n as usize));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Broken)?;
            let Ok(chunk) = frame.into_data() else {
                continue; // trailers
            };
            if buffer.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge(limit));
            }
            if declared.is_none() {
                let size = u32::try_from(chunk.len()).map_err(|_| BodyError::TooLarge(limit))?;
                let more = take(budget, size)?;
                match &mut share {
                    Some(held) => held.merge(more),
                    None => share = Some(more),
                }
            }
            inspect(&chunk);
            buffer.extend_from_slice(&chunk);
        }
        Ok(HeldBody {
            bytes: buffer.freeze(),
            _share: share,
        })
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| BodyError::Timeout)?
}

/// The `Content-Length`, refused when over `limit` (before a byte is read).
fn declared_length(headers: &HeaderMap, limit: usize) -> Result<Option<u64>, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(BodyError::TooLarge(limit)),
        _ => Ok(declared),
    }
}

fn take(budget: &InFlight, bytes: u32) -> Result<OwnedSemaphorePermit, BodyError> {
    budget
        .bytes
        .clone()
        .try_acquire_many_owned(bytes)
        .map_err(|_| BodyError::Busy)
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(
        text: &'static str,
        limit: usize,
        budget: &InFlight,
    ) -> Result<HeldBody, BodyError> {
        read_body_within(
            Body::from(text),
            &HeaderMap::new(),
            limit,
            Duration::from_secs(5),
            budget,
            |_| {},
        )
        .await
    }

    #[tokio::test]
    async fn bodies_share_one_budget_and_give_their_bytes_back_when_dropped() {
        let budget = InFlight::new(10);
        let mut seen = Vec::new();
        let first = read_body_within(
            Body::from("12345678"),
            &HeaderMap::new(),
            100,
            Duration::from_secs(5),
            &budget,
            |c| seen.extend_from_slice(c),
        )
        .await
        .expect("within the budget");
        assert_eq!(seen, b"12345678", "every chunk is shown as it arrives");
        let refused = read("abcd", 100, &budget).await;
        assert_eq!(
            refused.unwrap_err(),
            BodyError::Busy,
            "8 of 10 bytes are held"
        );
        drop(first);
        let again = read("abcd", 100, &budget).await;
        assert_eq!(&again.expect("the budget is back").bytes[..], b"abcd");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_as_it_grows() {
        let refused = read("0123456789", 4, &InFlight::new(1 << 20)).await;
        assert_eq!(refused.unwrap_err(), BodyError::TooLarge(4));
    }
}
