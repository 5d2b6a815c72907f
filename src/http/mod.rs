//! The two HTTP surfaces and what they share: the error envelope on fallbacks, the body limit,
//! a per-request deadline and a tracing span per request.

pub mod client_ip;
pub mod error;
pub mod extract;
mod framing;
pub mod internal;
pub mod public;
pub mod server;
mod slots;
mod watchdog;

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::flows::Context;
use crate::telemetry::metrics::metrics;
use error::ApiError;
use extract::MAX_BODY_BYTES;

/// Longest a request may take end to end; every Redis and dependency call has a shorter bound of
/// its own, so this only catches what those miss.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One route of a surface's table: method, path template, handler. The table builds the router
/// and is what the OpenAPI contract test compares with the document, so a route cannot be added
/// to one without the other.
pub type Route = (
    axum::http::Method,
    &'static str,
    axum::routing::MethodRouter<Context>,
);

/// A table entry for `handler` answering `method` on `path`.
fn route<H, T>(method: axum::http::Method, path: &'static str, handler: H) -> Route
where
    H: axum::handler::Handler<T, Context>,
    T: 'static,
{
    let filter = axum::routing::MethodFilter::try_from(method.clone()).expect("a standard method");
    (method, path, axum::routing::on(filter, handler))
}

/// The router of a route table.
fn router_of(table: Vec<Route>, ctx: Context) -> Router {
    table
        .into_iter()
        .fold(Router::new(), |router, (_, path, handler)| {
            router.route(path, handler)
        })
        .with_state(ctx)
}

/// Adds what both surfaces share to a router of routes.
fn finish(router: Router, surface: &'static str) -> Router {
    router
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(axum::middleware::from_fn(move |req, next| {
            guard(surface, req, next)
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(move |req: &Request| {
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map(MatchedPath::as_str)
                        .unwrap_or("unmatched");
                    let request_id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!(
                        "request",
                        surface,
                        method = %req.method(),
                        route,
                        request_id,
                        status = tracing::field::Empty,
                    )
                })
                .on_request(())
                .on_response(|res: &Response, latency: Duration, span: &tracing::Span| {
                    if crate::telemetry::traces_exported() {
                        span.record("status", res.status().as_u16());
                    }
                    tracing::info!(
                        status = res.status().as_u16(),
                        latency_ms = latency.as_millis() as u64,
                        "request"
                    );
                }),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_foreign_request_id))
}

/// A client's `x-request-id` is kept (echoed and logged) only when it is `[A-Za-z0-9._-]{1,64}`;
/// anything else could write arbitrary text into the logs, so it is replaced by a generated one.
async fn drop_foreign_request_id(mut req: Request) -> Request {
    let acceptable = |v: &[u8]| {
        (1..=64).contains(&v.len())
            && v.iter()
                .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(b))
    };
    let headers = req.headers_mut();
    if headers
        .get_all("x-request-id")
        .iter()
        .any(|v| !acceptable(v.as_bytes()))
        || headers.get_all("x-request-id").iter().count() > 1
    {
        headers.remove("x-request-id");
    }
    req
}

/// Refuses oversized bodies up front (413 with the envelope), bounds each request's duration,
/// and records it per route template and status.
async fn guard(surface: &'static str, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let response = bounded(req, next).await;
    let route = route.as_deref().unwrap_or("unmatched");
    metrics().http(
        surface,
        method.as_str(),
        route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn bounded(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return ApiError::payload_too_large().into_response();
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::error!("request exceeded {REQUEST_TIMEOUT:?}");
            ApiError::unavailable().into_response()
        }
    }
}
