//! `lua/session_revoke.lua`: one session revoked with its snapshot and event, or an already
//! revoked one's projection and indexes healed.

use redis::{FromRedisValue, ParsingError, Value};

use super::{
    event_format, one_session_keys, replan_one, revocation_args, scripts, Call, Plan, Planning,
    Reply, Script, Slot,
};
use crate::domain::{DeviceSessionId, RequestId, Revocation, RevokeOutcome, Session, UserId};
use crate::store::sessions::session_from_fields;
use crate::store::{millis, Store};

pub struct SessionRevoke<'a> {
    pub device_session_id: &'a DeviceSessionId,
    pub revocation: &'a Revocation,
    /// Unique per revoke request: the revoking call's replay answers `revoked` again.
    pub request_id: &'a RequestId,
    /// The user the session is expected to belong to (a `need` reply's): its indexes are
    /// declared. Without it the script answers `need` with the record's user.
    pub user: Option<UserId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRevokeReply {
    /// Revoked by this request (or its replay), or before: the record as it now is.
    Done(RevokeOutcome, Box<Session>),
    NotFound,
}

impl Call for SessionRevoke<'_> {
    type Reply = Plan<SessionRevokeReply>;

    fn script() -> &'static Script {
        &scripts().session_revoke
    }

    fn keys(&self, store: &Store) -> Vec<Slot> {
        let mut keys = one_session_keys(store, self.device_session_id);
        if let Some(user) = &self.user {
            keys.extend([
                ("user_sessions", store.keys.user_sessions(user)),
                (
                    "user_active_sessions",
                    store.keys.user_active_sessions(user),
                ),
                (
                    "user_revoked_sessions",
                    store.keys.user_revoked_sessions(user),
                ),
            ]);
        }
        keys
    }

    fn args(&self, store: &Store) -> Vec<Slot> {
        let mut args = revocation_args(self.revocation).to_vec();
        args.extend([
            (
                "revoked_retention_ms",
                millis(store.policy.revoked_session_retention).to_string(),
            ),
            ("stream_maxlen", store.stream_maxlen.to_string()),
            ("request_id", self.request_id.to_string()),
            event_format(store),
        ]);
        if let Some(user) = &self.user {
            args.push(("user_id", user.to_string()));
        }
        args
    }
}

impl Planning for SessionRevoke<'_> {
    type Settled = SessionRevokeReply;

    fn plan(&mut self, ids: &[String]) -> bool {
        replan_one(&mut self.user, ids, |u| UserId::parse(u).ok())
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
