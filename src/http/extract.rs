//! Extractors that turn raw input into domain types or a `400`/`413` with the JSON envelope.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use crate::domain::Invalid;
use crate::telemetry::metrics::metrics;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// A strict JSON body: `application/json`, at most 16 KiB, no unknown fields (the target types
/// deny them), and a message that never echoes the input.
pub struct StrictJson<T>(pub T);

/// Like [`StrictJson`], but an empty body is `None` (optional bodies of internal routes).
pub struct OptionalJson<T>(pub Option<T>);

/// What request bodies may hold while they arrive, shared by every connection of the process:
/// at most `bytes` buffered in all (a body that would pass it answers `503` at once and lets go
/// of what it held), and each body complete within `read_timeout` of its head. With HTTP/2's
/// small windows this bounds the memory unfinished bodies pin, whatever the number of streams.
#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    read_timeout: Duration,
    /// The listener the request came in on, for the refusal metric.
    surface: &'static str,
}

impl BodyBudget {
    pub fn new(max_bytes: usize, read_timeout: Duration) -> Self {
        Self {
            bytes: Arc::new(Semaphore::new(max_bytes.min(Semaphore::MAX_PERMITS))),
            read_timeout,
            surface: "",
        }
    }

    /// The same budget, for requests of `surface`.
    pub fn on(&self, surface: &'static str) -> Self {
        Self {
            surface,
            ..self.clone()
        }
    }
}

/// The body, at most [`MAX_BODY_BYTES`], within the budget the server put in the request's
/// extensions (none: unbounded, for routers served outside the accept loop).
async fn read_body(req: Request) -> Result<axum::body::Bytes, ApiError> {
    let budget = req.extensions().get::<BodyBudget>().cloned();
    let read_timeout = budget.as_ref().map(|b| b.read_timeout);
    let mut body = req.into_body();
    let read = async {
        let mut bytes = Vec::new();
        let mut held: Option<OwnedSemaphorePermit> = None;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|_| ApiError::invalid_request("could not read the request body"))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if bytes.len() + data.len() > MAX_BODY_BYTES {
                return Err(ApiError::payload_too_large());
            }
            if let Some(budget) = &budget {
                let wanted = u32::try_from(data.len()).unwrap_or(u32::MAX);
                let permit = budget
                    .bytes
                    .clone()
                    .try_acquire_many_owned(wanted)
                    .map_err(|_| {
                        metrics().refused(budget.surface, "body_budget");
                        ApiError::unavailable()
                    })?;
                match &mut held {
                    Some(held) => held.merge(permit),
                    None => held = Some(permit),
                }
            }
            bytes.extend_from_slice(&data);
        }
        Ok(axum::body::Bytes::from(bytes))
    };
    match read_timeout {
        Some(limit) => tokio::time::timeout(limit, read)
            .await
            .map_err(|_| ApiError::invalid_request("the request body did not arrive in time"))?,
        None => read.await,
    }
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
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => deserialize_error(
            &e.to_string(),
            "request body has missing, unknown or mistyped fields",
        ),
        _ => ApiError::invalid_request("request body is not valid JSON"),
    })
}

/// A `400` for a deserializer error: a domain parser's message (it names the field and never
/// echoes the value), or `generic` for serde's own errors, which may echo input.
fn deserialize_error(error: &str, generic: &'static str) -> ApiError {
    match Invalid::message_of(error) {
        Some(message) => ApiError::invalid_request(message.to_owned()),
        None => ApiError::invalid_request(generic),
    }
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

/// The single path parameter of a route, parsed into its domain type; malformed
/// percent-encoding or a value the type refuses is a `400`.
pub struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParam(p.0))
            .map_err(|rejection| match rejection {
                PathRejection::FailedToDeserializePathParams(e) => match e.into_kind() {
                    ErrorKind::Message(message) => {
                        deserialize_error(&message, "malformed path parameter")
                    }
                    _ => ApiError::invalid_request("malformed path parameter"),
                },
                _ => ApiError::invalid_request("malformed path parameter"),
            })
    }
}

/// Query parameters parsed into their domain types; an unknown, repeated or malformed
/// parameter is a `400`.
pub struct StrictQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for StrictQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or_default())
            .map(StrictQuery)
            .map_err(|e| deserialize_error(&e.to_string(), "malformed or unknown query parameters"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Cursor, LoginCode};
    use axum::response::IntoResponse;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        code: LoginCode,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Query {
        cursor: Option<Cursor>,
    }

    async fn message(error: ApiError) -> String {
        let body = axum::body::to_bytes(error.into_response().into_body(), 4096)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        json["error"]["message"].as_str().unwrap().to_owned()
    }

    /// A domain parser's message reaches the client; serde's own (which quote input, like an
    /// unknown field's name) never do.
    #[tokio::test]
    async fn field_errors_name_the_field_and_never_echo_input() {
        let bad_code = parse::<Body>(br#"{"code": "12a456"}"#).unwrap_err();
        assert_eq!(message(bad_code).await, "code must be exactly 6 digits");
        let unknown = parse::<Body>(br#"{"code": "123456", "secret<script>": 1}"#).unwrap_err();
        assert_eq!(
            message(unknown).await,
            "request body has missing, unknown or mistyped fields"
        );
        let query = serde_urlencoded::from_str::<Query>("cursor=nope").unwrap_err();
        let error = deserialize_error(&query.to_string(), "generic");
        assert_eq!(message(error).await, "cursor is malformed");
        let query = serde_urlencoded::from_str::<Query>("leak=secret").unwrap_err();
        let error = deserialize_error(&query.to_string(), "generic");
        assert_eq!(message(error).await, "generic");
    }
}
