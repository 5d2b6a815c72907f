//! `lua/challenge_confirm.lua` (single-tag layout): a verified challenge confirmed and its
//! session opened in one call (the per-user limit enforced by evicting the oldest sessions).

use redis::{FromRedisValue, ParsingError, Value};

use super::challenge_verify::Rejection;
use super::{
    event_format, opening_session_keys, planned_session_args, planned_session_keys,
    replan_sessions, revoking, scripts, verdict_args, Call, Plan, Planning, Reply, Resumable,
    Script, Slot,
};
use crate::domain::{ChallengeId, ClientPublicKey, CodeHashes, DeviceSessionId, UserId};
use crate::store::{millis, Store};

/// Most sessions one confirm call revokes for being over the per-user limit, so the script stays
/// short even right after the limit was lowered a lot (the script refuses more than 50).
pub const MAX_EVICTIONS_PER_LOGIN: u32 = 50;

/// A verified confirm: what every session-opening step takes (this script, and the
/// partitioned layout's `challenge_claim`, `session_create` and `challenge_mark_confirmed`).
pub struct ConfirmRequest<'a> {
    pub challenge_id: &'a ChallengeId,
    pub code_hashes: &'a CodeHashes,
    pub client_public_key: &'a ClientPublicKey,
    pub user_id: &'a UserId,
    pub device_session_id: &'a DeviceSessionId,
    pub max_attempts: u32,
    pub max_active_sessions: u32,
    /// From [`super::challenge_verify::Verified::Ok`].
    pub verified_at_ms: u64,
    /// The throttled challenge the code was presented through, as verified.
    pub via: Option<super::challenge_verify::Via<'a>>,
}

pub struct ChallengeConfirm<'a> {
    pub request: &'a ConfirmRequest<'a>,
    /// The sessions the login is expected to evict or find ghosts (a `need` reply's ids).
    pub planned: Vec<DeviceSessionId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChallengeConfirmReply {
    Created {
        device_session_id: DeviceSessionId,
        created_at_ms: u64,
    },
    /// Already confirmed with the same key (a concurrent twin or a replay): that session.
    Confirmed(DeviceSessionId),
    Rejected(Rejection),
    /// A block of the user is in flight (its marker exists): nothing was written.
    UserBlocked,
    /// The verdict is older than the blocked marker lives: nothing was written.
    VerdictExpired,
    /// Part of the ghosts or evictions standing before the limit holds were removed: call again.
    Continue,
}

impl Call for ChallengeConfirm<'_> {
    type Reply = Plan<ChallengeConfirmReply>;

    fn script() -> &'static Script {
        &scripts().challenge_confirm
    }

    fn keys(&self, store: &Store) -> Vec<Slot> {
        let challenge = store.keys.challenge(self.request.challenge_id);
        let mut keys = vec![("challenge", challenge)];
        keys.extend(opening_session_keys(store, self.request));
        keys.extend(planned_session_keys(store, &self.planned));
        keys
    }

    fn args(&self, store: &Store) -> Vec<Slot> {
        let req = self.request;
        let mut args = vec![
            ("code_hash", req.code_hashes.current.clone()),
            ("client_public_key", req.client_public_key.to_string()),
            ("user_id", req.user_id.to_string()),
            ("device_session_id", req.device_session_id.to_string()),
            ("max_attempts", req.max_attempts.to_string()),
            ("max_active_sessions", req.max_active_sessions.to_string()),
            (
                "idempotency_window_ms",
                millis(store.policy.confirm_idempotency_window).to_string(),
            ),
        ];
        args.extend(revoking(store));
        args.extend([
            ("challenge_id", req.challenge_id.to_string()),
            ("max_evictions", MAX_EVICTIONS_PER_LOGIN.to_string()),
            (
                "code_hash_previous",
                req.code_hashes.previous.clone().unwrap_or_default(),
            ),
        ]);
        args.extend(verdict_args(store, req));
        args.push(event_format(store));
        args.extend(super::challenge_verify::via_args(self.request.via));
        args.extend(planned_session_args(&self.planned));
        args
    }
}

impl Planning for ChallengeConfirm<'_> {
    type Settled = ChallengeConfirmReply;

    fn plan(&mut self, ids: &[String]) -> bool {
        replan_sessions(&mut self.planned, ids)
    }
}

/// A session id a reply names.
pub(super) fn session_id(reply: &mut Reply) -> Result<DeviceSessionId, ParsingError> {
    DeviceSessionId::parse(&reply.next::<String>()?)
        .map_err(|_| format!("`{}` names a malformed session id", reply.word()).into())
}

impl FromRedisValue for ChallengeConfirmReply {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        use ChallengeConfirmReply::*;
        let mut reply = Reply::read(value)?;
        let confirmed = match reply.word() {
            "created" => Created {
                device_session_id: session_id(&mut reply)?,
                created_at_ms: reply.next()?,
            },
            "confirmed" => Confirmed(session_id(&mut reply)?),
            "user_blocked" => UserBlocked,
            "verdict_expired" => VerdictExpired,
            "continue" => Continue,
            word => match Rejection::from_word(word) {
                Some(rejection) => Rejected(rejection),
                None => return reply.unknown(),
            },
        };
        reply.end(confirmed)
    }
}

impl Resumable for ChallengeConfirmReply {
    fn resume(&self) -> bool {
        *self == ChallengeConfirmReply::Continue
    }
}
