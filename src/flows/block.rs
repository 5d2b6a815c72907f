//! Blocking a user: the user service first (so no new session can be created), then a blocked
//! marker in Redis (so no confirm already in flight can commit one either) and every active
//! session revoked with reason `user_blocked`. Safe to retry after a partial failure: the block is
//! idempotent and the revoke picks up whatever is still active.

use super::revoke::RevokeAllError;
use super::Context;
use crate::clients::user_directory::BlockOutcome;
use crate::domain::{ActorId, Code, UserId};
use crate::store::sessions::Revocation;
use crate::telemetry::metrics::metrics;

pub async fn block_user(
    ctx: &Context,
    user_id: &UserId,
    reason: &Code,
    actor_type: Code,
    actor_id: Option<ActorId>,
) -> Result<(BlockOutcome, u64), RevokeAllError> {
    let outcome = ctx
        .users
        .block_user(user_id, reason)
        .await?
        .ok_or(RevokeAllError::UserNotFound)?;
    let revocation = Revocation {
        reason_code: Code::known("user_blocked"),
        actor_type,
        actor_id,
    };
    // The marker first (same script call as the first batch): a confirm that passed the user
    // service before the block cannot commit a session after this revoke.
    let revoked = ctx
        .store
        .user_sessions_revoke(user_id, &revocation, Some(ctx.block_marker_ttl))
        .await?;
    metrics().revoke(
        "block",
        match outcome {
            BlockOutcome::Blocked => "blocked",
            BlockOutcome::AlreadyBlocked => "already_blocked",
        },
    );
    tracing::info!(%user_id, ?outcome, revoked, "user blocked");
    Ok((outcome, revoked))
}
