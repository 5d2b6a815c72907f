//! `lua/session_revoke.lua`: one session revoked with its snapshot and event, or an already
//! revoked one's projection and indexes healed.

use redis::{FromRedisValue, ParsingError, Value};

use super::{event_format, one_session_keys, revocation_args, scripts, Call, Reply, Script, Slot};
use crate::domain::{DeviceSessionId, RequestId, Revocation, RevokeOutcome, Session};
use crate::store::sessions::session_from_fields;
use crate::store::{millis, Store};

pub struct SessionRevoke<'a> {
    pub device_session_id: &'a DeviceSessionId,
    pub revocation: &'a Revocation,
    /// Unique per revoke request: the revoking call's replay answers `revoked` again.
    pub request_id: &'a RequestId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRevokeReply {
    /// Revoked by this request (or its replay), or before: the record as it now is.
    Done(RevokeOutcome, Box<Session>),
    NotFound,
}

impl Call for SessionRevoke<'_> {
    type Reply = SessionRevokeReply;

    fn script() -> &'static Script {
        &scripts().session_revoke
    }

    fn keys(&self, store: &Store) -> Vec<Slot> {
        one_session_keys(store, self.device_session_id)
    }

    fn args(&self, store: &Store) -> Vec<Slot> {
        let home = store.home_or_first(self.device_session_id.as_str());
        let user = store.keys.user_index_parts(home);
        let mut args = revocation_args(self.revocation).to_vec();
        args.extend([
            (
                "revoked_retention_ms",
                millis(store.policy.revoked_session_retention).to_string(),
            ),
            ("stream_maxlen", store.stream_maxlen.to_string()),
            ("user_prefix", user.head),
            ("user_sessions_suffix", user.sessions.to_owned()),
            ("user_active_sessions_suffix", user.active.to_owned()),
            ("user_revoked_sessions_suffix", user.revoked.to_owned()),
            ("request_id", self.request_id.to_string()),
            event_format(store),
        ]);
        args
    }
}

impl FromRedisValue for SessionRevokeReply {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let mut reply = Reply::read(value)?;
        let outcome = match reply.word() {
            "not_found" => return reply.end(SessionRevokeReply::NotFound),
            "revoked" => RevokeOutcome::Revoked,
            "already_revoked" => RevokeOutcome::AlreadyRevoked,
            _ => return reply.unknown(),
        };
        let session = session_from_fields(reply.pairs()?.into_iter().collect())
            .ok_or("the session record lacks a field or holds a malformed one")?;
        reply.end(SessionRevokeReply::Done(outcome, Box::new(session)))
    }
}
