//! The one JSON error shape every route answers with: `{"error": "reason"}`.
//!
//! Domain modules have their own `thiserror` enums; each converts into an
//! [`ApiError`] here, so the status a failure maps to is decided in one place.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for `Retry-After` on a 429/503, where the default (60 and 1) would mislead.
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), retry_after: None }
    }

    pub fn with_retry_after(self, seconds: u32) -> Self {
        Self { retry_after: Some(seconds), ..self }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, message)
    }

    /// The request was fine; we could not commit it. Senders retry on 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// A fault of ours. The cause goes to the log, not to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(serde_json::json!({ "error": self.message }))).into_response();
        if matches!(self.status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS) {
            let wait = self.retry_after.unwrap_or(if self.status == StatusCode::TOO_MANY_REQUESTS { 60 } else { 1 });
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(wait));
        }
        response
    }
}

impl From<crate::auth::rate_limit::RateLimitError> for ApiError {
    fn from(e: crate::auth::rate_limit::RateLimitError) -> Self {
        tracing::error!(error = %e, "sign-in rate limiter");
        Self::unavailable("sign-in is unavailable for a moment; try again")
    }
}

/// A plan limit (sites, members) reached: 402, as a payment would lift it.
impl From<crate::billing::limits::LimitError> for ApiError {
    fn from(e: crate::billing::limits::LimitError) -> Self {
        match e {
            crate::billing::limits::LimitError::Db(e) => e.into(),
            limit => ApiError::new(StatusCode::PAYMENT_REQUIRED, limit.to_string()),
        }
    }
}

impl From<crate::blobs::BlobError> for ApiError {
    fn from(e: crate::blobs::BlobError) -> Self {
        tracing::error!(error = %e, "blob store");
        Self::unavailable("the export store is unavailable for a moment; try again")
    }
}

impl From<crate::notices::NoticeError> for ApiError {
    fn from(e: crate::notices::NoticeError) -> Self {
        use crate::notices::NoticeError;
        match e {
            NoticeError::NotFound(_) => Self::not_found(e.to_string()),
            NoticeError::Input(_) | NoticeError::Differs(_) => Self::bad_request(e.to_string()),
            NoticeError::Pool(p) => p.into(),
            NoticeError::Db(d) => d.into(),
            NoticeError::Mail(m) => Self::internal(m),
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        tracing::warn!(error = %e, "database unavailable");
        Self::unavailable("database unavailable, retry shortly")
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        // PostgreSQL stores no NUL character in text or jsonb; whatever field
        // carried one, the request is at fault, not the server.
        if let Some(code) = e.as_db_error().map(|d| d.code())
            && (*code == SqlState::CHARACTER_NOT_IN_REPERTOIRE || *code == SqlState::UNTRANSLATABLE_CHARACTER)
        {
            return Self::bad_request("text in the request must not contain NUL characters (\\u0000)");
        }
        // Two transactions that locked each other out (a site changed while its
        // organisation is deleted, say): PostgreSQL undid one; it is safe to retry.
        if let Some(code) = e.as_db_error().map(|d| d.code())
            && (*code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE)
        {
            tracing::warn!(error = %e, "transaction undone by a concurrent one");
            return Self::unavailable("a concurrent change got in the way; retry");
        }
        if e.is_closed() {
            tracing::warn!(error = %e, "database connection lost");
            return Self::unavailable("database unavailable, retry shortly");
        }
        Self::internal(e)
    }
}

impl From<crate::adapters::postgres::DbError> for ApiError {
    fn from(e: crate::adapters::postgres::DbError) -> Self {
        match e {
            crate::adapters::postgres::DbError::Unavailable(p) => p.into(),
            crate::adapters::postgres::DbError::Postgres(p) => p.into(),
            other => Self::internal(other),
        }
    }
}

/// Errors a handler body returns; `?` converts each into the JSON answer.
pub type ApiResult<T> = Result<T, ApiError>;
