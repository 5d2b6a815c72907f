//! The public surface: send a login code, confirm it.

use axum::extract::State;
use axum::http::Method;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::client_ip::ClientIp;
use super::error::ApiError;
use super::extract::StrictJson;
use super::{route, router_of, Route};
use crate::domain::{ChallengeId, ClientPublicKey, DeviceSessionId, Email, Locale, LoginCode};
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
    email: Email,
    #[serde(default)]
    locale: Option<Locale>,
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
    let challenge_id =
        send_email_code::send_email_code(&ctx, &body.email, body.locale.as_ref(), client).await?;
    Ok(Json(ChallengeCreated { challenge_id }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmEmailCode {
    challenge_id: ChallengeId,
    code: LoginCode,
    client_public_key: ClientPublicKey,
}

#[derive(Serialize)]
struct SessionCreated {
    device_session_id: DeviceSessionId,
}

async fn confirm_email_code(
    State(ctx): State<Context>,
    ClientIp(client): ClientIp,
    StrictJson(body): StrictJson<ConfirmEmailCode>,
) -> Result<Json<SessionCreated>, ApiError> {
    let device_session_id = confirm_email_code::confirm_email_code(
        &ctx,
        &body.challenge_id,
        &body.code,
        &body.client_public_key,
        client,
    )
    .await?;
    Ok(Json(SessionCreated { device_session_id }))
}
