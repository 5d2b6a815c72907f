//! `lua/user_sessions_revoke.lua`: one batch of a revoke-all (or a block, whose first batch
//! first sets the user's blocked marker).

use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};

use super::{
    event_format, planned_session_args, planned_session_keys, replan_sessions, revocation_args,
    revoking, scripts, Call, Plan, Planning, Reply, Script, Slot,
};
use crate::domain::{DeviceSessionId, RequestId, Revocation, UserId};
use crate::store::{millis, Store};

/// Sessions revoked per call, so one call never blocks Redis for long: each costs about 7
/// commands; 100 measured 4-5 ms on the 2-core bench and 200 about 7 ms, so 50 keeps a call well
/// inside the 5 ms budget (docs/performance.md).
pub const REVOKE_BATCH: u32 = 50;
/// How long a revoke-all remembers each batch's reply, so a replayed batch (a resend after a lost
/// reply, within the command timeout) answers the same count.
const REVOKE_BATCH_MEMO: Duration = Duration::from_secs(60);

pub struct UserSessionsRevoke<'a> {
    pub user_id: &'a UserId,
    pub revocation: &'a Revocation,
    /// Unique per revoke-all: stored in each record it revokes, and keys its batches' replies.
    pub request_id: &'a RequestId,
    /// 1, 2, ... within one revoke-all.
    pub batch_number: u32,
    /// For a block: how long the blocked marker the first batch sets lives.
    pub block_marker: Option<Duration>,
    /// The batch the caller expects (the previous batch's `next`, or a `need` reply's ids).
    pub planned: Vec<DeviceSessionId>,
}

/// One batch's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Sessions this batch revoked.
    pub revoked: u64,
    /// Active sessions left in the user's index.
    pub remaining: u64,
    /// The next batch, to plan (empty on a replayed batch, or when none remain).
    pub next: Vec<DeviceSessionId>,
}

impl Call for UserSessionsRevoke<'_> {
    type Reply = Plan<Batch>;

    fn script() -> &'static Script {
        &scripts().user_sessions_revoke
    }

    fn keys(&self, store: &Store) -> Vec<Slot> {
        let (keys, user) = (&store.keys, self.user_id);
        let mut slots = vec![
            ("user_active_sessions", keys.user_active_sessions(user)),
            ("stream", keys.stream(keys.layout().of_user(user.as_str()))),
            ("user_sessions", keys.user_sessions(user)),
            ("user_revoked_sessions", keys.user_revoked_sessions(user)),
            ("revoke_batches", keys.revoke_batches(user, self.request_id)),
            ("user_blocked", keys.user_blocked(user)),
        ];
        slots.extend(planned_session_keys(store, &self.planned));
        slots
    }

    fn args(&self, store: &Store) -> Vec<Slot> {
        let mut args = revocation_args(self.revocation).to_vec();
        args.push(("batch_size", REVOKE_BATCH.to_string()));
        args.extend(revoking(store));
        args.extend([
            ("request_id", self.request_id.to_string()),
            ("batch_number", self.batch_number.to_string()),
            ("replay_memo_ms", millis(REVOKE_BATCH_MEMO).to_string()),
            (
                "block_marker_ttl_ms",
                self.block_marker.map_or(0, millis).to_string(),
            ),
        ]);
        args.push(event_format(store));
        args.extend(planned_session_args(&self.planned));
        args
    }
}

impl Planning for UserSessionsRevoke<'_> {
    type Settled = Batch;

    fn plan(&mut self, ids: &[String]) -> bool {
        replan_sessions(&mut self.planned, ids)
    }
}

impl FromRedisValue for Batch {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let mut reply = Reply::read(value)?;
        if reply.word() != "revoked" {
            return reply.unknown();
        }
        let (revoked, remaining) = (reply.next()?, reply.next()?);
        let next = reply
            .rest::<String>()?
            .iter()
            .map(|id| DeviceSessionId::from_stored(id))
            .collect();
        reply.end(Batch {
            revoked,
            remaining,
            next,
        })
    }
}
