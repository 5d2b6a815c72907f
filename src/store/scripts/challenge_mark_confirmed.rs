//! `lua/challenge_mark_confirmed.lua`: the partitioned confirm's last step, in the address's
//! partition: the claimed challenge marked confirmed with the session the user's partition made.

use redis::{FromRedisValue, ParsingError, Value};

use super::{one_word, scripts, Call, Script, Slot};
use crate::domain::{ChallengeId, ClientPublicKey, DeviceSessionId, UserId};
use crate::store::{millis, Store};

pub struct ChallengeMarkConfirmed<'a> {
    pub challenge_id: &'a ChallengeId,
    pub device_session_id: &'a DeviceSessionId,
    pub client_public_key: &'a ClientPublicKey,
    pub user_id: &'a UserId,
    /// The session's `created_at_ms`.
    pub confirmed_at_ms: u64,
    /// The throttled challenge the code was presented through, recorded as `confirmed_via`.
    pub via: Option<&'a ChallengeId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkedConfirmed {
    Marked,
    /// Confirmed with another session already: left as it was.
    OtherSession,
    /// Gone (expired and removed since it verified).
    NotFound,
}

impl Call for ChallengeMarkConfirmed<'_> {
    type Reply = MarkedConfirmed;

    fn script() -> &'static Script {
        &scripts().challenge_mark_confirmed
    }

    fn keys(&self, store: &Store) -> Vec<Slot> {
        vec![("challenge", store.keys.challenge(self.challenge_id))]
    }

    fn args(&self, store: &Store) -> Vec<Slot> {
        vec![
            ("device_session_id", self.device_session_id.to_string()),
            ("client_public_key", self.client_public_key.to_string()),
            ("user_id", self.user_id.to_string()),
            ("confirmed_at_ms", self.confirmed_at_ms.to_string()),
            (
                "idempotency_window_ms",
                millis(store.policy.confirm_idempotency_window).to_string(),
            ),
            (
                "via",
                self.via.map(ToString::to_string).unwrap_or_default(),
            ),
        ]
    }
}

impl FromRedisValue for MarkedConfirmed {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        one_word(
            value,
            &[
                ("marked", MarkedConfirmed::Marked),
                ("other_session", MarkedConfirmed::OtherSession),
                ("not_found", MarkedConfirmed::NotFound),
            ],
        )
    }
}
