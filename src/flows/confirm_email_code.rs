//! `POST /api/v1/public/auth/confirm-email-code`: verify the code, ask the user service for the
//! account, then create the device session and its gateway projection (one script call in the
//! single-tag layout; a session step and a challenge step in the partitioned one).
//! An identical retry returns the committed session and repairs its projection.

use std::net::IpAddr;

use super::{Context, Error};
use crate::clients::user_directory::Ensured;
use crate::domain::{ChallengeId, ClientPublicKey, DeviceSessionId, LoginCode};
use crate::store::challenges::{ConfirmRequest, Confirmed, Verified};
use crate::store::sessions::Republished;
use crate::telemetry::metrics::metrics;

/// How a confirm that succeeded got its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirmation {
    /// This call created the session.
    Created,
    /// An earlier identical confirm did (a retry, or a concurrent twin).
    Retried,
}

impl Confirmation {
    fn as_str(self) -> &'static str {
        match self {
            Confirmation::Created => "created",
            Confirmation::Retried => "retried",
        }
    }
}

pub async fn confirm_email_code(
    ctx: &Context,
    challenge_id: &ChallengeId,
    code: &LoginCode,
    client_public_key: &ClientPublicKey,
    client: IpAddr,
) -> Result<DeviceSessionId, Error> {
    let result = confirm(ctx, challenge_id, code, client_public_key, client).await;
    metrics().confirm(match &result {
        Ok((_, how)) => how.as_str(),
        Err(error) => error.as_str(),
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
) -> Result<(DeviceSessionId, Confirmation), Error> {
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
    let (email, verified_at_ms) = match verified {
        Verified::Rejected(rejection) => return Err(rejection.into()),
        Verified::RateLimited(after) => {
            metrics().refused("public", "rate_limited");
            return Err(Error::RateLimited(after));
        }
        Verified::Confirmed(device_session_id) => {
            return repair(ctx, device_session_id)
                .await
                .map(|id| (id, Confirmation::Retried))
        }
        Verified::Ok {
            email,
            verified_at_ms,
        } => (email, verified_at_ms),
    };

    let user_id = match ctx.users.ensure_by_email(&email).await? {
        Ensured::Blocked => return Err(Error::UserBlocked),
        Ensured::User(user_id) => user_id,
    };
    // Partitioned: derived from the challenge, so a retry after a crash between the two steps of
    // the store's confirm finds the session the first attempt made.
    let device_session_id = ctx.store.keys.device_session_id(challenge_id, &user_id);
    let request = ConfirmRequest {
        challenge_id,
        code_hashes: &code_hashes,
        client_public_key,
        user_id: &user_id,
        device_session_id: &device_session_id,
        max_attempts: limits.challenge_max_attempts,
        max_active_sessions: limits.max_active_sessions_per_user,
        verified_at_ms,
    };
    match ctx.store.challenge_confirm(&request).await? {
        Confirmed::Created(id) => {
            tracing::info!(%challenge_id, device_session_id = %id, %user_id, "session created");
            Ok((id, Confirmation::Created))
        }
        // A concurrent identical confirm won the race; its script wrote the projection.
        Confirmed::Existing(id) => Ok((id, Confirmation::Retried)),
        Confirmed::Rejected(rejection) => Err(rejection.into()),
        Confirmed::UserBlocked => Err(Error::UserBlocked),
    }
}

/// An identical retry: the session exists; make sure the gateway sees it.
async fn repair(
    ctx: &Context,
    device_session_id: DeviceSessionId,
) -> Result<DeviceSessionId, Error> {
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
