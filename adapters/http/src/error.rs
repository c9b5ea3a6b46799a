//! The one place where failures become HTTP responses.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use vrs_application::{EngagementError, FeedError};

/// The JSON body of every non-2xx response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case machine-readable code.
    #[schema(example = "invalid_cursor")]
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Structured context, e.g. the index and field of an invalid event.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds a client should wait before retrying (429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            message,
        );
        e.retry_after = Some(1);
        e
    }

    /// The generic error for a bare status, used when a framework layer produced a body-less or
    /// plain-text error.
    pub fn from_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::BAD_REQUEST => ("bad_request", "the request is malformed"),
            StatusCode::UNAUTHORIZED => ("unauthorized", "authentication is required"),
            StatusCode::FORBIDDEN => ("forbidden", "this action is not allowed"),
            StatusCode::NOT_FOUND => ("not_found", "no such resource"),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "this method is not allowed on this resource",
            ),
            StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request took too long"),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "the request body must be application/json",
            ),
            StatusCode::UNPROCESSABLE_ENTITY => ("unprocessable_entity", "the request is invalid"),
            StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "too many requests"),
            StatusCode::SERVICE_UNAVAILABLE => (
                "service_unavailable",
                "the service is temporarily unavailable",
            ),
            s if s.is_client_error() => ("bad_request", "the request was rejected"),
            _ => ("internal_error", "an internal error occurred"),
        };
        Self::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, code = self.code, message = %self.message, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                details: self.details,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<FeedError> for ApiError {
    fn from(e: FeedError) -> Self {
        match e {
            FeedError::NotReady => ApiError::unavailable("the feed is warming up; retry shortly"),
            FeedError::SessionExpired => ApiError::bad_request(
                "invalid_cursor",
                "this feed session has expired; request the first page again",
            ),
            FeedError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "feed dependency unavailable");
                ApiError::unavailable("the feed is temporarily unavailable")
            }
        }
    }
}

impl From<EngagementError> for ApiError {
    fn from(e: EngagementError) -> Self {
        match e {
            EngagementError::BatchSize => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_batch",
                e.to_string(),
            )
            .with_details(serde_json::json!({"field": "events"})),
            EngagementError::Invalid { index, ref error } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_event",
                e.to_string(),
            )
            .with_details(serde_json::json!({"index": index, "field": error.field})),
            EngagementError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "event pipeline unavailable");
                ApiError::unavailable("events cannot be recorded right now; nothing was accepted")
            }
        }
    }
}
