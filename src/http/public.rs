//! The public surface: send a login code, confirm it.

use axum::extract::State;
use axum::http::Method;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::client_ip::ClientIp;
use super::error::ApiError;
use super::extract::StrictJson;
use super::{route, router_of, Route};
use crate::domain::{ChallengeId, ClientPublicKey, Email, Locale, LoginCode};
use crate::flows::{confirm_email_code, send_email_code, Context};

pub const SEND_EMAIL_CODE: &str = "/api/v1/public/auth/send-email-code";
pub const CONFIRM_EMAIL_CODE: &str = "/api/v1/public/auth/confirm-email-code";

/// Every route of the public surface.
pub fn routes() -> Vec<Route> {
    vec![
        route(Method::POST, SEND_EMAIL_CODE, send_email_code),
        route(Method::POST, CONFIRM_EMAIL_CODE, confirm_email_code),
    ]
}

pub fn router(ctx: Context) -> Router {
    super::finish(router_of(routes(), ctx), "public")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendEmailCode {
    email: String,
    #[serde(default)]
    locale: Option<String>,
}

#[derive(Serialize)]
struct ChallengeCreated {
    challenge_id: ChallengeId,
}

async fn send_email_code(
    State(ctx): State<Context>,
    ClientIp(client): ClientIp,
    StrictJson(body): StrictJson<SendEmailCode>,
) -> Result<Json<ChallengeCreated>, ApiError> {
    let email = Email::parse(&body.email).map_err(|e| ApiError::invalid_request(e.0))?;
    let locale = body
        .locale
        .as_deref()
        .map(Locale::parse)
        .transpose()
        .map_err(|e| ApiError::invalid_request(e.0))?;
    let challenge_id =
        send_email_code::send_email_code(&ctx, &email, locale.as_ref(), client).await?;
    Ok(Json(ChallengeCreated { challenge_id }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmEmailCode {
    challenge_id: String,
    code: String,
    client_public_key: String,
}

#[derive(Serialize)]
struct SessionCreated {
    device_session_id: String,
}

async fn confirm_email_code(
    State(ctx): State<Context>,
    ClientIp(client): ClientIp,
    StrictJson(body): StrictJson<ConfirmEmailCode>,
) -> Result<Json<SessionCreated>, ApiError> {
    let invalid = |e: crate::domain::Invalid| ApiError::invalid_request(e.0);
    let challenge_id = ChallengeId::parse(&body.challenge_id).map_err(invalid)?;
    let code = LoginCode::parse(&body.code).map_err(invalid)?;
    let key = ClientPublicKey::parse(&body.client_public_key).map_err(invalid)?;
    let id =
        confirm_email_code::confirm_email_code(&ctx, &challenge_id, &code, &key, client).await?;
    Ok(Json(SessionCreated {
        device_session_id: id.as_str().to_owned(),
    }))
}
