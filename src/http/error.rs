//! The one error type of the HTTP surface, mapped once to `application/problem+json` (RFC 9457).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::WriteError;

/// Seconds a sender is asked to wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request took too long")]
    RequestTimeout,
    #[error("body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// A delivery within the body limit that adds more rows than one delivery may.
    #[error("{0}")]
    TooManyRows(String),
    /// Once there, now elsewhere: an archived month (the detail says where).
    #[error("{0}")]
    Gone(String),
    /// Once there, now replaced by a tombstone: a redacted delivery (the detail says by whom and why).
    #[error("{0}")]
    Redacted(String),
    /// An admin action asked with a token that is not an admin's.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The request cannot be carried out on the thing as it is (the detail says what to do).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(&'static str, #[source] Option<Box<dyn std::error::Error + Send + Sync>>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// An error, as RFC 9457 `application/problem+json`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:ticket-audit:problem:<slug>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    pub detail: String,
}

/// The problems every read endpoint may answer, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a description of answers, never built
pub enum ReadProblems {
    #[response(status = 400, description = "a bad query or cursor", content_type = "application/problem+json")]
    BadRequest(Problem),
    #[response(status = 401, description = "no token, or a wrong one", content_type = "application/problem+json")]
    Unauthorized(Problem),
    #[response(
        status = 404,
        description = "no such thing, or not this token's tenant",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    #[response(
        status = 503,
        description = "the database is unavailable, or too many requests",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not-found"),
            ApiError::Gone(_) => (StatusCode::GONE, "archived"),
            ApiError::Redacted(_) => (StatusCode::GONE, "redacted"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed"),
            ApiError::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request-timeout"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large"),
            ApiError::TooManyRows(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too-many-rows"),
            ApiError::Unavailable(..) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// A problem document for any status, for the few answers made outside a handler.
pub fn problem(status: StatusCode, slug: &str, detail: String) -> Response {
    let body = Problem {
        kind: format!("urn:ticket-audit:problem:{slug}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
    };
    let mut res = (status, axum::Json(body)).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    res
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug) = self.parts();
        // Causes are logged, never sent.
        let detail = match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                "the server failed to answer; the error is logged".to_owned()
            }
            ApiError::Unavailable(what, cause) => {
                if let Some(cause) = cause {
                    tracing::warn!(error = %cause, "{what}");
                }
                format!("{what}; retry later")
            }
            other => other.to_string(),
        };
        let mut res = problem(status, slug, detail);
        match &self {
            ApiError::Unavailable(..) => {
                res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            ApiError::Unauthorized(_) => {
                res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        res
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // A hot standby cancels a read that holds back the replay of what the primary removed
            // (a conflict with recovery): the read may simply be tried again.
            sqlx::Error::Database(ref d) if d.code().as_deref() == Some("40001") => {
                ApiError::Unavailable("the read was cancelled by the replica's replay", Some(Box::new(e)))
            }
            sqlx::Error::Database(_)
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_) => ApiError::Internal(Box::new(e)),
            // Everything else is the connection: timeouts, I/O, a pool that cannot connect.
            other => ApiError::Unavailable("the database is unavailable", Some(Box::new(other))),
        }
    }
}

impl From<crate::ingest::Refused> for ApiError {
    fn from(e: crate::ingest::Refused) -> Self {
        match e {
            crate::ingest::Refused::TooManyRows { .. } => ApiError::TooManyRows(e.to_string()),
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::QueueFull => ApiError::Unavailable("the write queue is full", None),
            WriteError::Unavailable(cause) => {
                ApiError::Unavailable("the database is unavailable", Some(Box::new(cause)))
            }
            WriteError::Stopped => ApiError::Unavailable("the service is shutting down", None),
        }
    }
}
