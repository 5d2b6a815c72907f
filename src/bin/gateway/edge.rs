//! The edge surface (`--edge-listen`): `/auth` for nginx `auth_request`, and the relay that
//! carries requests with a body to the upstream once their `Content-Digest` matches (nginx's
//! auth subrequest carries no body, so the body is checked where it passes). docs/gateway.md
//! "Authenticating requests" is the contract.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use authsession::domain::DeviceSessionId;
use authsession::gateway::edge::{
    self, digest, Policy, Reason, Request, Scheme, SessionKeys, Target,
};
use authsession::store;

use crate::lookups::Shared;

/// The headers a `200` hands upstream (nginx `auth_request_set`; the relay sets them itself).
pub const USER_ID: &str = "x-authsession-user-id";
pub const DEVICE_SESSION_ID: &str = "x-authsession-device-session-id";

#[derive(Clone)]
pub struct Edge {
    pub shared: Shared,
    pub policy: Policy,
    /// Where the relay sends requests with a body (`--upstream`).
    pub upstream: Option<url::Url>,
    pub client: reqwest::Client,
    /// Session keys decoded once (as many as the consumer caches sessions).
    pub keys: Arc<SessionKeys>,
}

/// Who a request is from, once authenticated.
struct Identity {
    user_id: String,
    device_session_id: String,
}

/// Why a request is not let through.
enum Refusal {
    /// `401`: the request is not authenticated (the reason, and which scheme it tried).
    Unauthenticated(Reason, Option<Scheme>),
    /// `503`: the gateway cannot tell (Redis unreachable): never a `2xx`.
    Unavailable,
    /// `500`: the proxy in front did not pass the original request (its configuration).
    Misconfigured(&'static str),
}

impl From<Reason> for Refusal {
    fn from(reason: Reason) -> Self {
        Refusal::Unauthenticated(reason, None)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthenticated(reason, scheme) => {
                let code = reason.code();
                let challenge = match scheme {
                    Some(Scheme::Dpop) => {
                        let error = match reason {
                            Reason::UnknownSession | Reason::Revoked => "invalid_token",
                            _ => "invalid_dpop_proof",
                        };
                        format!("DPoP algs=\"EdDSA\", error=\"{error}\", reason=\"{code}\"")
                    }
                    _ => format!("Signature realm=\"authsession\", reason=\"{code}\""),
                };
                let body = json!({"error": {"code": "unauthenticated", "reason": code}});
                let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, value);
                }
                response
            }
            Refusal::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": {"code": "unavailable", "message": "the gateway cannot tell; try again"}})),
            )
                .into_response(),
            Refusal::Misconfigured(what) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"error": {"code": "misconfigured", "message": what}})),
            )
                .into_response(),
        }
    }
}

/// The original request as nginx passes it.
struct Original {
    method: String,
    target: Target,
    /// `X-Original-URI` as sent (the relay forwards it so).
    uri: String,
    has_body: bool,
}

impl Original {
    /// The request to authenticate: this target, with the client's `fields`.
    fn request<'a>(&'a self, fields: &'a HeaderMap, has_body: bool) -> Request<'a> {
        Request {
            method: &self.method,
            target: &self.target,
            fields,
            has_body,
        }
    }
}

fn original(headers: &HeaderMap) -> Result<Original, Refusal> {
    let get = |name: &'static str| -> Result<&str, Refusal> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or(Refusal::Misconfigured(name))
    };
    let (method, uri) = (get("x-original-method")?, get("x-original-uri")?);
    let (host, proto) = (get("x-original-host")?, get("x-original-proto")?);
    let target = Target::from_original(proto, host, uri)?;
    let given = |name: &str| headers.get(name).is_some_and(|v| !v.is_empty() && v != "0");
    Ok(Original {
        method: method.to_owned(),
        target,
        uri: uri.to_owned(),
        has_body: given("x-original-content-length") || given("x-original-transfer-encoding"),
    })
}

impl Edge {
    /// A Redis error mid-request: logged, the lookup connection dropped (it reopens at most once
    /// a second), and the request answered `503`.
    fn unavailable(&self, what: &'static str, error: &redis::RedisError) -> Refusal {
        tracing::warn!(%error, "{what}");
        self.shared.forget_lookups();
        Refusal::Unavailable
    }

    /// The proof read, its session found active, its signature verified, the body (when the
    /// relay has it) matched to its digest, and its nonce accepted once across gateways.
    async fn authenticate(
        &self,
        request: &Request<'_>,
        body: Option<&[u8]>,
    ) -> Result<Identity, Refusal> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let proof = edge::read(request, now, &self.policy)?;
        let scheme = Some(proof.scheme);
        let refuse = |reason| Refusal::Unauthenticated(reason, scheme);
        let id = DeviceSessionId::parse(&proof.device_session_id)
            .map_err(|_| refuse(Reason::UnknownSession))?;
        let mut conn = self
            .shared
            .lookups()
            .await
            .map_err(|_| Refusal::Unavailable)?;
        let snapshot = match self.shared.consumer.session(&mut conn, id.as_str()).await {
            Ok(snapshot) => snapshot.ok_or(refuse(Reason::UnknownSession))?,
            Err(error) => return Err(self.unavailable("session lookup failed", &error)),
        };
        if !snapshot.is_active() {
            return Err(refuse(Reason::Revoked));
        }
        let key = self.keys.get(&snapshot.client_public_key).map_err(refuse)?;
        proof.verify(&key).map_err(refuse)?;
        if let Some(body) = body.filter(|_| request.has_body) {
            let field = request
                .field("content-digest")
                .ok_or(refuse(Reason::Uncovered))?;
            digest::check(&field, body).map_err(refuse)?;
        }
        let marker = self.shared.keys.edge_proof(&id, &proof.once);
        match store::edge::claim_once(&mut conn, &marker, proof.remember).await {
            Ok(true) => Ok(Identity {
                user_id: snapshot.user_id,
                device_session_id: snapshot.device_session_id,
            }),
            Ok(false) => Err(refuse(Reason::Replayed)),
            Err(error) => Err(self.unavailable("replay marker failed", &error)),
        }
    }
}

/// `/auth`: `200` with the identity headers, `401`, `503` (or `500` when nginx passed no
/// original request).
pub async fn auth(State(edge): State<Edge>, headers: HeaderMap) -> Response {
    let outcome = async {
        let original = original(&headers)?;
        let request = original.request(&headers, original.has_body);
        edge.authenticate(&request, None).await
    }
    .await;
    match outcome {
        Ok(identity) => {
            let mut response = StatusCode::OK.into_response();
            identify(response.headers_mut(), &identity);
            response
        }
        Err(refusal) => refusal.into_response(),
    }
}

fn identify(headers: &mut HeaderMap, identity: &Identity) {
    for (name, value) in [
        (USER_ID, &identity.user_id),
        (DEVICE_SESSION_ID, &identity.device_session_id),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// Fields never passed on by the relay: hop-by-hop ones, what it sets itself, and the proxy's
/// `X-Original-*`.
fn relayed(name: &HeaderName) -> bool {
    let name = name.as_str();
    !matches!(
        name,
        "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-connection"
            | "proxy-authorization"
            | "host"
            | "content-length"
    ) && !name.starts_with("x-original-")
        && !name.starts_with("x-authsession-")
}

/// `/relay` (nginx rewrites every request with a body to it): the request authenticated with its
/// body's digest checked, then sent to `--upstream` at its original method and URI with the
/// identity headers; the upstream's answer is passed back.
pub async fn relay(State(edge): State<Edge>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(upstream) = edge.upstream.clone() else {
        return Refusal::Misconfigured("the relay has no --upstream").into_response();
    };
    let outcome = async {
        let original = original(&headers)?;
        let request = original.request(&headers, original.has_body || !body.is_empty());
        let identity = edge.authenticate(&request, Some(&body)).await?;
        Ok::<_, Refusal>((original, identity))
    }
    .await;
    let (original, identity) = match outcome {
        Ok(ok) => ok,
        Err(refusal) => return refusal.into_response(),
    };
    let Ok(method) = reqwest::Method::from_bytes(original.method.as_bytes()) else {
        return Refusal::from(Reason::Malformed).into_response();
    };
    let url = format!(
        "{}{}",
        upstream.as_str().trim_end_matches('/'),
        original.uri
    );
    let mut forwarded = HeaderMap::new();
    for (name, value) in headers.iter().filter(|(name, _)| relayed(name)) {
        forwarded.append(name.clone(), value.clone());
    }
    identify(&mut forwarded, &identity);
    let answer = edge
        .client
        .request(method, url)
        .headers(forwarded)
        .body(body)
        .send()
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(error = %error.without_url(), "upstream unreachable");
            return (
                StatusCode::BAD_GATEWAY,
                axum::Json(json!({"error": {"code": "bad_gateway"}})),
            )
                .into_response();
        }
    };
    let status = answer.status();
    let mut back = HeaderMap::new();
    for (name, value) in answer.headers().iter().filter(|(name, _)| relayed(name)) {
        back.append(name.clone(), value.clone());
    }
    match answer.bytes().await {
        Ok(bytes) => (status, back, bytes).into_response(),
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// How long the relay waits for the upstream.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
