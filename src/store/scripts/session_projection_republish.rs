//! `lua/session_projection_republish.lua`: a session's gateway snapshot (and event) rewritten
//! from its record when it is missing or stale.

use redis::{FromRedisValue, ParsingError, Value};

use super::{event_format, one_session_keys, scripts, Call, Reply, Script, Slot};
use crate::domain::{DeviceSessionId, RequestId};
use crate::store::{millis, Store};

pub struct SessionProjectionRepublish<'a> {
    pub device_session_id: &'a DeviceSessionId,
    /// Unique per republish request.
    pub request_id: &'a RequestId,
}

/// Outcome of republishing a session's projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Republished {
    Repaired { version: u64 },
    Current { version: u64 },
    NotFound,
}

impl Call for SessionProjectionRepublish<'_> {
    type Reply = Republished;

    fn script() -> &'static Script {
        &scripts().session_projection_republish
    }

    fn keys(&self, store: &Store) -> Vec<Slot> {
        one_session_keys(store, self.device_session_id)
    }

    fn args(&self, store: &Store) -> Vec<Slot> {
        vec![
            ("stream_maxlen", store.stream_maxlen.to_string()),
            (
                "revoked_retention_ms",
                millis(store.policy.revoked_session_retention).to_string(),
            ),
            ("request_id", self.request_id.to_string()),
            event_format(store),
        ]
    }
}

impl FromRedisValue for Republished {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let mut reply = Reply::read(value)?;
        let republished = match reply.word() {
            "not_found" => Republished::NotFound,
            "repaired" => Republished::Repaired {
                version: reply.next()?,
            },
            "current" => Republished::Current {
                version: reply.next()?,
            },
            _ => return reply.unknown(),
        };
        reply.end(republished)
    }
}
