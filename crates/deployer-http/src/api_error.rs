//! The JSON error answer every handler of this crate gives: `{"error": "<field>: <problem>"}`,
//! plus `"code": "<machine-readable cause>"` where a client must tell causes apart that share
//! a status (an unknown service and an unknown image are both 404).
//!
//! 4xx answers say precisely what was wrong with the request. 5xx answers name what failed
//! behind us (which image, which dependency), never with the underlying error's text: that can
//! carry URLs with credentials, so it goes to the log only.

use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// Longest message echoed back: inputs are quoted in messages, and they come from anyone.
const MESSAGE_MAX: usize = 512;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    /// Sent as `Retry-After` (whole seconds) when set.
    pub(crate) retry_after: Option<Duration>,
    /// Sent as `code` when set.
    pub(crate) code: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MESSAGE_MAX {
            let mut cut = MESSAGE_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        Self {
            status,
            message,
            retry_after: None,
            code: None,
        }
    }

    /// The same answer with a machine-readable `code`.
    pub(crate) fn with_code(self, code: &'static str) -> Self {
        Self {
            code: Some(code),
            ..self
        }
    }

    /// 400 naming the field at fault.
    pub(crate) fn bad_request(field: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, format!("{field}: {problem}"))
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication required")
    }

    pub(crate) fn unavailable(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self {
            retry_after,
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some(code) = self.code {
            body["code"] = code.into();
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let e = ApiError::bad_request("tag", "é".repeat(600));
        assert!(e.message.len() <= MESSAGE_MAX + '…'.len_utf8());
        assert!(e.message.starts_with("tag: é"));
    }

    async fn body(error: ApiError) -> serde_json::Value {
        let bytes = axum::body::to_bytes(error.into_response().into_body(), 1 << 16)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[tokio::test]
    async fn the_code_is_sent_only_when_set() {
        assert_eq!(
            body(ApiError::not_found("no service named \"x\"")).await,
            serde_json::json!({ "error": "no service named \"x\"" })
        );
        assert_eq!(
            body(ApiError::not_found("no service named \"x\"").with_code("unknown_service")).await,
            serde_json::json!({ "error": "no service named \"x\"", "code": "unknown_service" })
        );
    }
}
