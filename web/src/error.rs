//! Errors of starting the dashboard, and the error page of a request.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use millrace_core::QueueError;

/// Why the dashboard could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// The configuration is refused (e.g. a public address without auth).
    #[error("{0}")]
    Config(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS's reason.
        reason: String,
    },
    /// The OS gave no randomness for the CSRF token.
    #[error("cannot make a CSRF token: {0}")]
    Random(String),
    /// The server failed while serving.
    #[error("the dashboard's server failed: {0}")]
    Serve(String),
}

/// What went wrong with one request: shown as a short page.
#[derive(Debug)]
pub(crate) enum PageError {
    /// 404: no such queue, job or page.
    NotFound(String),
    /// 400: a malformed parameter.
    BadRequest(String),
    /// 403: refused (read-only, cross-site, CSRF).
    Forbidden(String),
    /// 502: Redis failed.
    Redis(QueueError),
}

impl From<QueueError> for PageError {
    fn from(e: QueueError) -> Self {
        Self::Redis(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            Self::NotFound(t) => (StatusCode::NOT_FOUND, t),
            Self::BadRequest(t) => (StatusCode::BAD_REQUEST, t),
            Self::Forbidden(t) => (StatusCode::FORBIDDEN, t),
            Self::Redis(e) => {
                tracing::warn!(error = %e, "dashboard request failed");
                (StatusCode::BAD_GATEWAY, e.to_string())
            }
        };
        let body = crate::layout::bare(
            status.canonical_reason().unwrap_or("error"),
            maud::html! { p.error { (text) } p { a href="/" { "back to the queues" } } },
        );
        (status, body).into_response()
    }
}

/// A page's result.
pub(crate) type PageResult<T> = Result<T, PageError>;
