//! `lua/session_create.lua` (partitioned layout): the confirm's session opened in the user's
//! partition, once the challenge is claimed for it (the per-user limit enforced by evicting the
//! oldest sessions).

use redis::{FromRedisValue, ParsingError, Value};

use super::challenge_confirm::{session_id, ConfirmRequest, MAX_EVICTIONS_PER_LOGIN};
use super::{
    event_format, opening_session_keys, planned_session_args, planned_session_keys,
    replan_sessions, revoking, scripts, verdict_args, Call, Plan, Planning, Reply, Resumable,
    Script, Slot,
};
use crate::domain::DeviceSessionId;
use crate::store::Store;

pub struct SessionCreate<'a> {
    pub request: &'a ConfirmRequest<'a>,
    /// The sessions the login is expected to evict or find ghosts (a `need` reply's ids).
    pub planned: Vec<DeviceSessionId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCreateReply {
    /// Created now, or found made by this challenge with this key (a retry).
    Created {
        device_session_id: DeviceSessionId,
        created_at_ms: u64,
    },
    /// The challenge's session exists with another client key: a twin confirmed first.
    OtherKey,
    /// A block of the user is in flight: nothing was written.
    UserBlocked,
    /// The verdict is older than the blocked marker lives: nothing was written.
    VerdictExpired,
    /// Part of the ghosts or evictions standing before the limit holds were removed: call again.
    Continue,
}

impl Call for SessionCreate<'_> {
    type Reply = Plan<SessionCreateReply>;

    fn script() -> &'static Script {
        &scripts().session_create
    }

    fn keys(&self, store: &Store) -> Vec<Slot> {
        let mut keys: Vec<Slot> = opening_session_keys(store, self.request).into();
        keys.extend(planned_session_keys(store, &self.planned));
        keys
    }

    fn args(&self, store: &Store) -> Vec<Slot> {
        let req = self.request;
        let mut args = vec![
            ("client_public_key", req.client_public_key.to_string()),
            ("user_id", req.user_id.to_string()),
            ("device_session_id", req.device_session_id.to_string()),
            ("challenge_id", req.challenge_id.to_string()),
            ("max_active_sessions", req.max_active_sessions.to_string()),
            ("max_evictions", MAX_EVICTIONS_PER_LOGIN.to_string()),
        ];
        args.extend(revoking(store));
        args.extend(verdict_args(store, req));
        args.push(event_format(store));
        args.extend(planned_session_args(&self.planned));
        args
    }
}

impl Planning for SessionCreate<'_> {
    type Settled = SessionCreateReply;

    fn plan(&mut self, ids: &[String]) -> bool {
        replan_sessions(&mut self.planned, ids)
    }
}

impl FromRedisValue for SessionCreateReply {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        use SessionCreateReply::*;
        let mut reply = Reply::read(value)?;
        let created = match reply.word() {
            "created" => Created {
                device_session_id: session_id(&mut reply)?,
                created_at_ms: reply.next()?,
            },
            "other_key" => OtherKey,
            "user_blocked" => UserBlocked,
            "verdict_expired" => VerdictExpired,
            "continue" => Continue,
            _ => return reply.unknown(),
        };
        reply.end(created)
    }
}

impl Resumable for SessionCreateReply {
    fn resume(&self) -> bool {
        *self == SessionCreateReply::Continue
    }
}
