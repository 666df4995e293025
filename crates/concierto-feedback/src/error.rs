//! [`FeedbackError`]: every way intake can fail, with its HTTP status and the code
//! the admin API maps to a gRPC status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use concierto_bus::BusError;
use concierto_core::store::StoreError;

/// What can go wrong while taking feedback in.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// The request or the feedback is not acceptable as sent (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// Missing or wrong credentials: signature, bearer token (HTTP 401).
    #[error("{0}")]
    Unauthorized(String),
    /// A form post without a valid CSRF token (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// A channel that is not configured on this server (HTTP 404).
    #[error("{0}")]
    NotConfigured(String),
    /// A body in a format the route does not take (HTTP 415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The store refused the write: nothing was accepted, the sender should retry
    /// (HTTP 503).
    #[error("could not store the feedback, retry later ({0})")]
    Store(#[from] StoreError),
    /// A stored record does not decode.
    #[error(
        "stored feedback {id:?} is unreadable ({detail}); remove key {id:?} from store \
         trees \"feedback\" and \"feedback_outbox\""
    )]
    Corrupt {
        /// The feedback id.
        id: String,
        /// The decoder's complaint.
        detail: String,
    },
    /// The bus refused something at start-up (declaring the FEEDBACK stream).
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// The HTTP listener could not be opened.
    #[error("cannot listen on {addr}: {source}; is the port free?")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The options do not make sense.
    #[error("feedback options: {0}")]
    Config(String),
    /// Something that should not happen (a store call on a blocking thread
    /// that did not finish, a key HMAC refused).
    #[error("internal error: {0}")]
    Internal(String),
}

impl FeedbackError {
    /// The HTTP status answering this error.
    pub fn status(&self) -> StatusCode {
        match self {
            FeedbackError::Invalid(_) => StatusCode::BAD_REQUEST,
            FeedbackError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            FeedbackError::Forbidden(_) => StatusCode::FORBIDDEN,
            FeedbackError::NotConfigured(_) => StatusCode::NOT_FOUND,
            FeedbackError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            FeedbackError::Store(_) | FeedbackError::Bus(_) => StatusCode::SERVICE_UNAVAILABLE,
            FeedbackError::Corrupt { .. }
            | FeedbackError::Bind { .. }
            | FeedbackError::Config(_)
            | FeedbackError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error code of the admin API (`invalid_argument`, `unauthenticated`,
    /// `permission_denied`, `not_found`, `unavailable`, `internal`), which maps to
    /// a gRPC code.
    pub fn code(&self) -> &'static str {
        match self {
            FeedbackError::Invalid(_) | FeedbackError::UnsupportedMediaType(_) => {
                "invalid_argument"
            }
            FeedbackError::Unauthorized(_) => "unauthenticated",
            FeedbackError::Forbidden(_) => "permission_denied",
            FeedbackError::NotConfigured(_) => "not_found",
            FeedbackError::Store(_) | FeedbackError::Bus(_) => "unavailable",
            FeedbackError::Corrupt { .. }
            | FeedbackError::Bind { .. }
            | FeedbackError::Config(_)
            | FeedbackError::Internal(_) => "internal",
        }
    }

    /// `<code>: <message>`, as in a bus reply's `Concierto-Error` header.
    pub fn reply_header(&self) -> String {
        format!("{}: {self}", self.code())
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        FeedbackError::Internal(e.to_string())
    }
}

impl IntoResponse for FeedbackError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "feedback request failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "feedback request refused");
        }
        (status, format!("{self}\n")).into_response()
    }
}
