//! The one place errors become HTTP responses: `{"error": {"code", "message"}}` on every error of
//! both surfaces. 5xx bodies stay generic; the cause goes to the log inside the request span.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::flows;

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

/// The contract's error table: what each flow error answers, with the code the flow error names
/// itself by (`flows::Error::as_str`, also its metric and log label: one spelling). Edge errors
/// (`invalid_request`, `payload_too_large`, `unauthorized`, route fallbacks) are built by the
/// constructors above.
#[rustfmt::skip]
fn contract(error: &flows::Error) -> ApiError {
    use flows::Error as E;
    use StatusCode as S;
    let (status, message) = match error {
        E::ChallengeNotFound => (S::NOT_FOUND, "no such challenge"),
        E::ChallengeExpired => (S::GONE, "the login code has expired"),
        E::InvalidCode => (S::UNPROCESSABLE_ENTITY, "the login code is not valid"),
        E::TooManyAttempts => (S::TOO_MANY_REQUESTS, "too many attempts; request a new code later"),
        E::ChallengeAlreadyConfirmed => (S::CONFLICT, "the challenge is already confirmed"),
        E::UserBlocked => (S::FORBIDDEN, "the user is blocked"),
        E::UserNotFound => (S::NOT_FOUND, "no such user"),
        E::SessionNotFound => (S::NOT_FOUND, "no such session"),
        E::RateLimited(after) => return ApiError {
            retry_after: Some(*after),
            ..ApiError::new(S::TOO_MANY_REQUESTS, error.as_str(), "too many requests from this client; retry later")
        },
        E::Unavailable(_) => return ApiError::unavailable(),
    };
    ApiError::new(status, error.as_str(), message)
}

impl From<flows::Error> for ApiError {
    fn from(error: flows::Error) -> Self {
        if let flows::Error::Unavailable(cause) = &error {
            tracing::error!(error = %cause, source = ?std::error::Error::source(cause), "dependency failure");
        }
        contract(&error)
    }
}
