//! Blocking a user: the user service first (so no new session can be created), then a blocked
//! marker in Redis (so no confirm already in flight can commit one either) and every active
//! session revoked with reason `user_blocked`. Safe to retry after a partial failure: the block is
//! idempotent and the revoke picks up whatever is still active.

use super::{Context, Error};
use crate::domain::{BlockOutcome, Code, Revocation, UserId};
use crate::telemetry::metrics::metrics;

/// The reason every session revoked by a block carries.
pub const BLOCK_REASON: &str = "user_blocked";

/// Blocks the user for `revocation.reason_code`; the sessions are revoked with
/// [`BLOCK_REASON`] by the same actor. Returns the user service's outcome and how many sessions
/// were revoked.
pub async fn block_user(
    ctx: &Context,
    user_id: &UserId,
    revocation: &Revocation,
) -> Result<(BlockOutcome, u64), Error> {
    let outcome = ctx
        .users
        .block_user(user_id, &revocation.reason_code)
        .await?
        .ok_or(Error::UserNotFound)?;
    let revocation = Revocation {
        reason_code: Code::known(BLOCK_REASON),
        ..revocation.clone()
    };
    // The marker first (same script call as the first batch): a confirm that passed the user
    // service before the block cannot commit a session after this revoke.
    let revoked = ctx
        .store
        .user_sessions_revoke(user_id, &revocation, Some(ctx.block_marker_ttl))
        .await?;
    metrics().revoke("block", outcome.as_str());
    tracing::info!(%user_id, ?outcome, revoked, "user blocked");
    Ok((outcome, revoked))
}
