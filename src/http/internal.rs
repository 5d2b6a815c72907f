//! The trusted internal surface: list, inspect and revoke sessions, block users. Optional bearer
//! auth on every route, including fallbacks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::extract::{OptionalJson, PathParam, StrictQuery};
use super::{route, router_of, Route};
use crate::domain::{
    ActorId, Code, Cursor, DeviceSessionId, Invalid, Revocation, Session, SessionStatus, UserId,
};
use crate::flows::{block, revoke, sessions, Context};
use crate::telemetry::metrics::metrics;

pub const USER_SESSIONS: &str = "/api/v1/internal/users/{user_id}/sessions";
pub const SESSION: &str = "/api/v1/internal/sessions/{device_session_id}";
pub const SESSION_REVOKE: &str = "/api/v1/internal/sessions/{device_session_id}/revoke";
pub const USER_REVOKE_ALL: &str = "/api/v1/internal/users/{user_id}/sessions/revoke-all";
pub const USER_BLOCK: &str = "/api/v1/internal/users/{user_id}/block";

/// Every route of the internal surface.
pub fn routes() -> Vec<Route> {
    vec![
        route(Method::GET, USER_SESSIONS, list_sessions),
        route(Method::GET, SESSION, get_session),
        route(Method::POST, SESSION_REVOKE, revoke_session),
        route(Method::POST, USER_REVOKE_ALL, revoke_all),
        route(Method::POST, USER_BLOCK, block_user),
    ]
}

pub fn router(ctx: Context, token: Option<SecretString>) -> Router {
    let router = super::finish(router_of(routes(), ctx), "internal");
    match token {
        Some(token) => with_bearer(router, &token, "internal"),
        None => router,
    }
}

/// `router` answering only requests that carry `Authorization: Bearer <token>` (else `401`),
/// for the internal surface and the reference gateway consumer's.
pub fn with_bearer(router: Router, token: &SecretString, surface: &'static str) -> Router {
    let expected = Arc::new(token_digest(token.expose_secret()));
    router.layer(axum::middleware::from_fn(move |req, next| {
        bearer(expected.clone(), surface, req, next)
    }))
}

/// Tokens are compared as SHA-256 digests, in constant time: neither their content nor their
/// length shows in the timing.
fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

async fn bearer(
    expected: Arc<[u8; 32]>,
    surface: &'static str,
    req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .unwrap_or_default();
    if bool::from(token_digest(presented).ct_eq(expected.as_slice())) {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.to_string())
        .unwrap_or_default();
    tracing::warn!(path = %req.uri().path(), %peer, "{surface} request refused: missing or invalid bearer token");
    metrics().refused(surface, "unauthorized");
    ApiError::unauthorized().into_response()
}

/// The session JSON of both list and get.
#[derive(Serialize)]
pub struct SessionView {
    device_session_id: DeviceSessionId,
    user_id: UserId,
    status: &'static str,
    client_public_key: String,
    created_at: String,
    revoked_at: Option<String>,
    revoke_reason_code: Option<Code>,
    version: u64,
}

fn rfc3339(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

impl From<Session> for SessionView {
    fn from(s: Session) -> Self {
        Self {
            created_at: rfc3339(s.created_at_ms),
            revoked_at: s.revoked_at_ms.map(rfc3339),
            device_session_id: s.device_session_id,
            user_id: s.user_id,
            status: s.status.as_str(),
            client_public_key: s.client_public_key,
            revoke_reason_code: s.revoke_reason_code,
            version: s.version,
        }
    }
}

/// `limit`: 1 to [`sessions::MAX_PAGE`].
struct PageSize(usize);

impl<'de> Deserialize<'de> for PageSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Query values arrive as strings; an integer in range or the field's own message.
        let raw = String::deserialize(deserializer)?;
        raw.parse::<usize>()
            .ok()
            .filter(|n| (1..=sessions::MAX_PAGE).contains(n))
            .map(PageSize)
            .ok_or_else(|| {
                serde::de::Error::custom(Invalid::tag("limit must be an integer from 1 to 1000"))
            })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<SessionStatus>,
    limit: Option<PageSize>,
    cursor: Option<Cursor>,
}

#[derive(Serialize)]
struct SessionList {
    sessions: Vec<SessionView>,
    next_cursor: Option<String>,
}

async fn list_sessions(
    State(ctx): State<Context>,
    PathParam(user_id): PathParam<UserId>,
    StrictQuery(query): StrictQuery<ListQuery>,
) -> Result<Json<SessionList>, ApiError> {
    let limit = query.limit.map_or(sessions::DEFAULT_PAGE, |PageSize(n)| n);
    let page =
        sessions::list_sessions(&ctx, &user_id, query.status, limit, query.cursor.as_ref()).await?;
    Ok(Json(SessionList {
        sessions: page.sessions.into_iter().map(SessionView::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

async fn get_session(
    State(ctx): State<Context>,
    PathParam(id): PathParam<DeviceSessionId>,
) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(sessions::get_session(&ctx, &id).await?.into()))
}

/// The optional body of revoke, revoke-all and block.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    reason_code: Option<Code>,
    actor_type: Option<Code>,
    actor_id: Option<ActorId>,
}

impl RevokeBody {
    fn revocation(self, default_reason: &'static str) -> Revocation {
        Revocation {
            reason_code: self
                .reason_code
                .unwrap_or_else(|| Code::known(default_reason)),
            actor_type: self.actor_type.unwrap_or_else(|| Code::known("admin")),
            actor_id: self.actor_id,
        }
    }
}

#[derive(Serialize)]
struct RevokeReply {
    outcome: &'static str,
    session: SessionView,
}

async fn revoke_session(
    State(ctx): State<Context>,
    PathParam(id): PathParam<DeviceSessionId>,
    OptionalJson(body): OptionalJson<RevokeBody>,
) -> Result<Json<RevokeReply>, ApiError> {
    let revocation = body.unwrap_or_default().revocation("admin_revoke");
    let (outcome, session) = revoke::revoke_session(&ctx, &id, &revocation).await?;
    Ok(Json(RevokeReply {
        outcome: outcome.as_str(),
        session: session.into(),
    }))
}

#[derive(Serialize)]
struct RevokeAllReply {
    outcome: &'static str,
    revoked_count: u64,
}

async fn revoke_all(
    State(ctx): State<Context>,
    PathParam(user_id): PathParam<UserId>,
    OptionalJson(body): OptionalJson<RevokeBody>,
) -> Result<Json<RevokeAllReply>, ApiError> {
    let revocation = body.unwrap_or_default().revocation("admin_revoke");
    let outcome = revoke::revoke_all(&ctx, &user_id, &revocation).await?;
    Ok(Json(RevokeAllReply {
        outcome: outcome.as_str(),
        revoked_count: outcome.revoked_count(),
    }))
}

async fn block_user(
    State(ctx): State<Context>,
    PathParam(user_id): PathParam<UserId>,
    OptionalJson(body): OptionalJson<RevokeBody>,
) -> Result<Json<RevokeAllReply>, ApiError> {
    let revocation = body.unwrap_or_default().revocation(block::BLOCK_REASON);
    let (outcome, revoked_count) = block::block_user(&ctx, &user_id, &revocation).await?;
    Ok(Json(RevokeAllReply {
        outcome: outcome.as_str(),
        revoked_count,
    }))
}
