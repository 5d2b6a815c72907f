//! Plan, then commit (`lua/include/planned.lua`): a script that meets keys it was not given
//! answers `need` with their ids, writing nothing, and its caller declares them for the next call.
//! The reply type, the inputs that can be planned, and the store's loop over them.

use redis::{FromRedisValue, ParsingError, Value};

use super::{Call, Slot};
use crate::domain::DeviceSessionId;
use crate::store::{Error, Store};

/// A reply of a script that plans (plan, then commit): its own reply, or `need` with the ids it
/// met that the call did not declare (it wrote nothing; call again with them declared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan<T> {
    Done(T),
    Need(Vec<String>),
}

impl<T: FromRedisValue> FromRedisValue for Plan<T> {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        if let Value::Array(items) = &value {
            if matches!(items.first(), Some(Value::BulkString(w)) if w == b"need") {
                let ids: Vec<String> = FromRedisValue::from_redis_value(value)?;
                if ids.len() < 2 {
                    return Err("`need` names no id".into());
                }
                return Ok(Plan::Need(ids[1..].to_vec()));
            }
        }
        T::from_redis_value(value).map(Plan::Done)
    }
}

/// Calls one script may make in a row answering `need` before the caller gives up with
/// [`Error::Unfinished`]: a plan goes stale only when another call changes what it planned
/// (a login or a revoke of the same user) between the two, so a third `need` in a row means
/// a contention the caller should not spin on.
pub const MAX_PLAN_CALLS: u32 = 3;

/// The input of a script that plans (plan, then commit): it declares, for its next call, what
/// the script's `need` reply named.
pub trait Planning: Call<Reply = Plan<Self::Settled>> {
    /// The script's own reply, once its plan held.
    type Settled;
    /// Declares the ids a `need` reply named; `false` when they declare nothing new (the plan
    /// would not move, so calling again is pointless).
    fn plan(&mut self, ids: &[String]) -> bool;
}

/// [`Planning::plan`] for a plan of session ids (evictions, a revoke-all batch).
pub(super) fn replan_sessions(planned: &mut Vec<DeviceSessionId>, ids: &[String]) -> bool {
    let ids: Vec<DeviceSessionId> = ids
        .iter()
        .map(|id| DeviceSessionId::from_stored(id))
        .collect();
    let moved = ids != *planned;
    *planned = ids;
    moved
}

/// [`Planning::plan`] for a plan of one value (a session's user, a challenge's address).
pub(super) fn replan_one<T: PartialEq>(
    slot: &mut Option<T>,
    ids: &[String],
    parse: impl Fn(&str) -> Option<T>,
) -> bool {
    match ids.first().and_then(|id| parse(id)) {
        Some(named) if slot.as_ref() != Some(&named) => {
            *slot = Some(named);
            true
        }
        _ => false,
    }
}

/// The planned tail's KEYS (`lua/include/planned.lua`): each id's record and snapshot keys.
pub(super) fn planned_session_keys(store: &Store, ids: &[DeviceSessionId]) -> Vec<Slot> {
    ids.iter()
        .flat_map(|id| {
            [
                ("session", store.keys.session(id)),
                ("gateway_session", store.keys.gateway_session(id)),
            ]
        })
        .collect()
}

/// The planned tail's ARGV: the ids themselves.
pub(super) fn planned_session_args(ids: &[DeviceSessionId]) -> Vec<Slot> {
    ids.iter()
        .map(|id| ("planned_session_id", id.to_string()))
        .collect()
}

impl Store {
    /// Runs a script that plans until its plan holds: each `need` reply's ids are declared for
    /// the next call, at most [`MAX_PLAN_CALLS`] calls; the script's own reply.
    pub async fn run_planned<C: Planning>(&self, input: &mut C) -> Result<C::Settled, Error> {
        for _ in 0..MAX_PLAN_CALLS {
            match self.run(input).await? {
                Plan::Done(reply) => return Ok(reply),
                Plan::Need(ids) if input.plan(&ids) => {}
                Plan::Need(_) => {
                    return Err(Error::Reply {
                        script: C::script().name,
                        detail: "`need` names nothing new to declare".into(),
                    })
                }
            }
        }
        Err(Error::Unfinished {
            script: C::script().name,
            calls: MAX_PLAN_CALLS,
        })
    }
}
