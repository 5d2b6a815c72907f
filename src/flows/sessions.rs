//! Reading sessions for the internal surface. Never calls the user service: an unknown user
//! simply has no sessions.

use super::Unavailable;
use crate::domain::{DeviceSessionId, UserId};
use crate::store::sessions::{Cursor, Page, Session, StatusFilter};
use crate::store::Store;

pub async fn list_sessions(
    store: &Store,
    user_id: &UserId,
    filter: Option<StatusFilter>,
    limit: usize,
    cursor: Option<&Cursor>,
) -> Result<Page, Unavailable> {
    Ok(store.sessions_list(user_id, filter, limit, cursor).await?)
}

pub async fn get_session(
    store: &Store,
    id: &DeviceSessionId,
) -> Result<Option<Session>, Unavailable> {
    Ok(store.session_get(id).await?)
}
