//! Reading sessions for the internal surface. Never calls the user service: an unknown user
//! simply has no sessions.

use super::{Context, Error};
use crate::domain::{Cursor, DeviceSessionId, Page, Session, SessionStatus, UserId};

/// Largest page a listing returns.
pub const MAX_PAGE: usize = 1000;
/// Page size when the caller names none.
pub const DEFAULT_PAGE: usize = 100;

pub async fn list_sessions(
    ctx: &Context,
    user_id: &UserId,
    filter: Option<SessionStatus>,
    limit: usize,
    cursor: Option<&Cursor>,
) -> Result<Page, Error> {
    Ok(ctx
        .store
        .sessions_list(user_id, filter, limit.clamp(1, MAX_PAGE), cursor)
        .await?)
}

pub async fn get_session(ctx: &Context, id: &DeviceSessionId) -> Result<Session, Error> {
    ctx.store
        .session_get(id)
        .await?
        .ok_or(Error::SessionNotFound)
}
