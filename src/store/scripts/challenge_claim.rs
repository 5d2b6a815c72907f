//! `lua/challenge_claim.lua`: the partitioned confirm's first step, in the address's partition:
//! the verified challenge claimed for the session this confirm will create.

use redis::{FromRedisValue, ParsingError, Value};

use super::{one_word, scripts, Call, Script, Slot};
use crate::domain::{ChallengeId, DeviceSessionId, UserId};
use crate::store::Store;

pub struct ChallengeClaim<'a> {
    pub challenge_id: &'a ChallengeId,
    pub device_session_id: &'a DeviceSessionId,
    pub user_id: &'a UserId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// Claimed for this session now, or by this session before (a retry).
    Claimed,
    /// Claimed for, or confirmed with, another session: this confirm must create nothing.
    OtherSession,
    /// Gone (expired and removed since it verified).
    NotFound,
}

impl Call for ChallengeClaim<'_> {
    type Reply = Claimed;

    fn script() -> &'static Script {
        &scripts().challenge_claim
    }

    fn keys(&self, store: &Store) -> Vec<Slot> {
        vec![("challenge", store.keys.challenge(self.challenge_id))]
    }

    fn args(&self, _: &Store) -> Vec<Slot> {
        vec![
            ("device_session_id", self.device_session_id.to_string()),
            ("user_id", self.user_id.to_string()),
        ]
    }
}

impl FromRedisValue for Claimed {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        one_word(
            value,
            &[
                ("claimed", Claimed::Claimed),
                ("other_session", Claimed::OtherSession),
                ("not_found", Claimed::NotFound),
            ],
        )
    }
}
