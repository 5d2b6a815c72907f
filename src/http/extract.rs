//! Extractors that turn raw input into domain types or a `400`/`413` with the JSON envelope.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// A strict JSON body: `application/json`, at most 16 KiB, no unknown fields (the target types
/// deny them), and a message that never echoes the input.
pub struct StrictJson<T>(pub T);

/// Like [`StrictJson`], but an empty body is `None` (optional bodies of internal routes).
pub struct OptionalJson<T>(pub Option<T>);

async fn read_body(req: Request) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            let mut too_large = false;
            while let Some(c) = cause {
                too_large |= c.is::<http_body_util::LengthLimitError>();
                cause = c.source();
            }
            if too_large {
                ApiError::payload_too_large()
            } else {
                ApiError::invalid_request("could not read the request body")
            }
        })
}

fn is_json(req: &Request) -> bool {
    let Some(value) = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would also accept a struct written as a JSON array; bodies must be objects.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::invalid_request(
            "request body must be a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let message = match e.classify() {
            serde_json::error::Category::Data => {
                "request body has missing, unknown or mistyped fields"
            }
            _ => "request body is not valid JSON",
        };
        ApiError::invalid_request(message)
    })
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        if !is_json(&req) {
            return Err(ApiError::invalid_request(
                "Content-Type must be application/json",
            ));
        }
        let bytes = read_body(req).await?;
        parse(&bytes).map(StrictJson)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let json = is_json(&req);
        let bytes = read_body(req).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        if !json {
            return Err(ApiError::invalid_request(
                "Content-Type must be application/json",
            ));
        }
        parse(&bytes).map(|v| OptionalJson(Some(v)))
    }
}

/// The single path parameter of a route, as a string; malformed percent-encoding is a 400.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| PathParam(p.0))
            .map_err(|_| ApiError::invalid_request("malformed path parameter"))
    }
}

/// Query parameters; an unknown or malformed parameter is a 400.
pub struct StrictQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for StrictQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| StrictQuery(q.0))
            .map_err(|_| ApiError::invalid_request("malformed or unknown query parameters"))
    }
}
