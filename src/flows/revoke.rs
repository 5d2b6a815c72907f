//! Revoking one session, or every active session of a user. Each revoke writes the revoked
//! snapshot and its stream event in the same script call as the source of truth.

use super::{Context, Error};
use crate::domain::{DeviceSessionId, Revocation, RevokeOutcome, Session, UserId};
use crate::telemetry::metrics::metrics;

pub async fn revoke_session(
    ctx: &Context,
    id: &DeviceSessionId,
    revocation: &Revocation,
) -> Result<(RevokeOutcome, Session), Error> {
    let (outcome, session) = ctx
        .store
        .session_revoke(id, revocation)
        .await?
        .ok_or(Error::SessionNotFound)?;
    metrics().revoke("session", outcome.as_str());
    tracing::info!(device_session_id = %id, reason = %revocation.reason_code, ?outcome, "session revoke");
    Ok((outcome, session))
}

/// What a revoke-all did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeAllOutcome {
    Revoked(u64),
    NoActiveSessions,
}

impl RevokeAllOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeAllOutcome::Revoked(_) => "revoked",
            RevokeAllOutcome::NoActiveSessions => "no_active_sessions",
        }
    }

    pub fn revoked_count(self) -> u64 {
        match self {
            RevokeAllOutcome::Revoked(n) => n,
            RevokeAllOutcome::NoActiveSessions => 0,
        }
    }
}

/// Checks the user exists, then revokes every active session.
pub async fn revoke_all(
    ctx: &Context,
    user_id: &UserId,
    revocation: &Revocation,
) -> Result<RevokeAllOutcome, Error> {
    if ctx.users.get_user(user_id).await?.is_none() {
        metrics().revoke("all", Error::UserNotFound.as_str());
        return Err(Error::UserNotFound);
    }
    let revoked = ctx
        .store
        .user_sessions_revoke(user_id, revocation, None)
        .await?;
    let outcome = match revoked {
        0 => RevokeAllOutcome::NoActiveSessions,
        n => RevokeAllOutcome::Revoked(n),
    };
    metrics().revoke("all", outcome.as_str());
    tracing::info!(%user_id, reason = %revocation.reason_code, revoked, "revoke-all");
    Ok(outcome)
}
