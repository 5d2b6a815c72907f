//! Revoking one session, or every active session of a user. Each revoke writes the revoked
//! snapshot and its stream event in the same script call as the source of truth.

use super::{Context, Unavailable};
use crate::clients;
use crate::domain::{DeviceSessionId, UserId};
use crate::store::sessions::{Revocation, RevokeOutcome, Session};
use crate::telemetry::metrics::metrics;

#[derive(Debug, thiserror::Error)]
pub enum RevokeAllError {
    #[error("user not found")]
    UserNotFound,
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl From<crate::store::Error> for RevokeAllError {
    fn from(e: crate::store::Error) -> Self {
        RevokeAllError::Unavailable(e.into())
    }
}

impl From<clients::Error> for RevokeAllError {
    fn from(e: clients::Error) -> Self {
        RevokeAllError::Unavailable(e.into())
    }
}

/// `None` when the session does not exist.
pub async fn revoke_session(
    ctx: &Context,
    id: &DeviceSessionId,
    revocation: &Revocation,
) -> Result<Option<(RevokeOutcome, Session)>, Unavailable> {
    let result = ctx.store.session_revoke(id, revocation).await?;
    if let Some((outcome, _)) = &result {
        metrics().revoke(
            "session",
            match outcome {
                RevokeOutcome::Revoked => "revoked",
                RevokeOutcome::AlreadyRevoked => "already_revoked",
            },
        );
        tracing::info!(device_session_id = %id, reason = %revocation.reason_code, ?outcome, "session revoke");
    }
    Ok(result)
}

/// Checks the user exists, then revokes every active session; returns how many were revoked.
pub async fn revoke_all(
    ctx: &Context,
    user_id: &UserId,
    revocation: &Revocation,
) -> Result<u64, RevokeAllError> {
    if ctx.users.get_user(user_id).await?.is_none() {
        metrics().revoke("all", "user_not_found");
        return Err(RevokeAllError::UserNotFound);
    }
    let revoked = ctx
        .store
        .user_sessions_revoke(user_id, revocation, None)
        .await?;
    metrics().revoke(
        "all",
        if revoked == 0 {
            "no_active_sessions"
        } else {
            "revoked"
        },
    );
    tracing::info!(%user_id, reason = %revocation.reason_code, revoked, "revoke-all");
    Ok(revoked)
}
