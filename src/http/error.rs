//! The one place errors become HTTP responses: `{"error": {"code", "message"}}` on every error of
//! both surfaces. 5xx bodies stay generic; the cause goes to the log inside the request span.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::flows::confirm_email_code::ConfirmError;
use crate::flows::revoke::RevokeAllError;
use crate::flows::{SendError, Unavailable};
use crate::store::challenges::Rejection;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// `429 too_many_requests` with `Retry-After`: an admission limit refused the request before
    /// anything was written.
    pub fn rate_limited(retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "too many requests from this client; retry later",
            )
        }
    }

    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        )
    }

    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body exceeds 16 KiB",
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token",
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "service temporarily unavailable; retry later",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(after) = self.retry_after {
            let seconds = after.as_millis().div_ceil(1000).max(1);
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds as u64));
        }
        response
    }
}

impl From<Unavailable> for ApiError {
    fn from(error: Unavailable) -> Self {
        tracing::error!(error = %error, source = ?std::error::Error::source(&error), "dependency failure");
        ApiError::unavailable()
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        let (status, message) = match rejection {
            Rejection::NotFound => (StatusCode::NOT_FOUND, "no such challenge"),
            Rejection::Expired => (StatusCode::GONE, "the login code has expired"),
            Rejection::InvalidCode => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "the login code is not valid",
            ),
            Rejection::TooManyAttempts => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many attempts; request a new code later",
            ),
            Rejection::AlreadyConfirmed => {
                (StatusCode::CONFLICT, "the challenge is already confirmed")
            }
        };
        ApiError::new(status, rejection.code(), message)
    }
}

impl From<ConfirmError> for ApiError {
    fn from(error: ConfirmError) -> Self {
        match error {
            ConfirmError::Rejected(rejection) => rejection.into(),
            ConfirmError::UserBlocked => {
                ApiError::new(StatusCode::FORBIDDEN, "user_blocked", "the user is blocked")
            }
            ConfirmError::RateLimited(after) => ApiError::rate_limited(after),
            ConfirmError::Unavailable(e) => e.into(),
        }
    }
}

impl From<SendError> for ApiError {
    fn from(error: SendError) -> Self {
        match error {
            SendError::RateLimited(after) => ApiError::rate_limited(after),
            SendError::Unavailable(e) => e.into(),
        }
    }
}

impl From<RevokeAllError> for ApiError {
    fn from(error: RevokeAllError) -> Self {
        match error {
            RevokeAllError::UserNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "user_not_found", "no such user")
            }
            RevokeAllError::Unavailable(e) => e.into(),
        }
    }
}
