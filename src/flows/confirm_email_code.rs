//! `POST /api/v1/public/auth/confirm-email-code`: verify the code, ask the user service for the
//! account, then create the device session and its gateway projection in one script call.
//! An identical retry returns the committed session and repairs its projection.

use std::net::IpAddr;

use super::{Context, Unavailable};
use crate::clients::user_directory::Ensured;
use crate::domain::{ChallengeId, ClientPublicKey, DeviceSessionId, Email, LoginCode};
use crate::store::challenges::{ConfirmRequest, Confirmed, Rejection, Verified};
use crate::store::sessions::Republished;
use crate::telemetry::metrics::metrics;

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("confirm rejected: {0:?}")]
    Rejected(Rejection),
    #[error("user is blocked")]
    UserBlocked,
    #[error("rate limited for {0:?}")]
    RateLimited(std::time::Duration),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl From<crate::store::Error> for ConfirmError {
    fn from(e: crate::store::Error) -> Self {
        ConfirmError::Unavailable(e.into())
    }
}

impl From<crate::clients::Error> for ConfirmError {
    fn from(e: crate::clients::Error) -> Self {
        ConfirmError::Unavailable(e.into())
    }
}

pub async fn confirm_email_code(
    ctx: &Context,
    challenge_id: &ChallengeId,
    code: &LoginCode,
    client_public_key: &ClientPublicKey,
    client: IpAddr,
) -> Result<DeviceSessionId, ConfirmError> {
    let result = confirm(ctx, challenge_id, code, client_public_key, client).await;
    metrics().confirm(match &result {
        Ok((_, outcome)) => outcome,
        Err(ConfirmError::Rejected(rejection)) => rejection.code(),
        Err(ConfirmError::UserBlocked) => "user_blocked",
        Err(ConfirmError::RateLimited(_)) => "too_many_requests",
        Err(ConfirmError::Unavailable(_)) => "service_unavailable",
    });
    result.map(|(id, _)| id)
}

/// The session and whether this call `created` it or `retried` an earlier confirm.
async fn confirm(
    ctx: &Context,
    challenge_id: &ChallengeId,
    code: &LoginCode,
    client_public_key: &ClientPublicKey,
    client: IpAddr,
) -> Result<(DeviceSessionId, &'static str), ConfirmError> {
    let limits = ctx.runtime_config.limits().await;
    let code_hashes = ctx.codes.hashes(challenge_id, code);
    let verified = ctx
        .store
        .challenge_verify(
            challenge_id,
            &code_hashes,
            client_public_key,
            limits.challenge_max_attempts,
            &ctx.codes.client_key(client),
        )
        .await?;
    let email = match verified {
        Verified::Rejected(rejection) => return Err(ConfirmError::Rejected(rejection)),
        Verified::RateLimited(after) => {
            metrics().refused("public", "rate_limited");
            return Err(ConfirmError::RateLimited(after));
        }
        Verified::Confirmed(device_session_id) => {
            return repair(ctx, device_session_id)
                .await
                .map(|id| (id, "retried"))
        }
        Verified::Ok { email } => Email::parse(&email).map_err(|_| crate::store::Error::Reply {
            script: "challenge_verify",
            detail: "stored e-mail does not parse".into(),
        })?,
    };

    let user_id = match ctx.users.ensure_by_email(&email).await? {
        Ensured::Blocked => return Err(ConfirmError::UserBlocked),
        Ensured::User(user_id) => user_id,
    };
    let device_session_id = DeviceSessionId::generate();
    let request = ConfirmRequest {
        challenge_id,
        code_hashes: &code_hashes,
        client_public_key,
        user_id: &user_id,
        device_session_id: &device_session_id,
        max_attempts: limits.challenge_max_attempts,
        max_active_sessions: limits.max_active_sessions_per_user,
    };
    match ctx.store.challenge_confirm(&request).await? {
        Confirmed::Created(id) => {
            tracing::info!(%challenge_id, device_session_id = %id, %user_id, "session created");
            Ok((id, "created"))
        }
        // A concurrent identical confirm won the race; its script wrote the projection.
        Confirmed::Existing(id) => Ok((id, "retried")),
        Confirmed::Rejected(rejection) => Err(ConfirmError::Rejected(rejection)),
        Confirmed::UserBlocked => Err(ConfirmError::UserBlocked),
    }
}

/// An identical retry: the session exists; make sure the gateway sees it.
async fn repair(
    ctx: &Context,
    device_session_id: DeviceSessionId,
) -> Result<DeviceSessionId, ConfirmError> {
    match ctx
        .store
        .session_projection_republish(&device_session_id)
        .await?
    {
        Republished::Repaired { version } => {
            tracing::warn!(%device_session_id, version, "confirm retry repaired a missing or stale projection");
        }
        Republished::Current { .. } => {}
        Republished::NotFound => {
            tracing::warn!(%device_session_id, "confirm retry: session record is gone")
        }
    }
    Ok(device_session_id)
}
