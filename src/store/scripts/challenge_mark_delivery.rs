//! `lua/challenge_mark_delivery.lua`: a pending challenge moved to its delivery outcome.

use redis::{FromRedisValue, ParsingError, Value};

use super::{one_word, scripts, Call, Script, Slot};
use crate::domain::{ChallengeId, Email};
use crate::store::Store;

pub struct ChallengeMarkDelivery<'a> {
    pub challenge_id: &'a ChallengeId,
    pub email: &'a Email,
    pub outcome: DeliveryStatus,
}

/// Terminal delivery statuses a pending challenge can move to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Sent,
    Suppressed,
    Failed,
}

impl DeliveryStatus {
    fn status(self) -> &'static str {
        match self {
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Suppressed => "delivery_suppressed",
            DeliveryStatus::Failed => "delivery_failed",
        }
    }
}

/// What `challenge_mark_delivery` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marked {
    /// The challenge now shows the outcome (or already did: a replay).
    Marked,
    /// It had moved on (confirmed, or marked otherwise): left as it was.
    Unchanged,
    /// No such challenge (expired and removed).
    NotFound,
}

impl Call for ChallengeMarkDelivery<'_> {
    type Reply = Marked;

    fn script() -> &'static Script {
        &scripts().challenge_mark_delivery
    }

    fn keys(&self, store: &Store) -> Vec<Slot> {
        vec![
            ("challenge", store.keys.challenge(self.challenge_id)),
            (
                "resend_throttle",
                store.keys.resend_throttle(self.email.hash()),
            ),
        ]
    }

    fn args(&self, _: &Store) -> Vec<Slot> {
        vec![
            ("challenge_id", self.challenge_id.to_string()),
            ("outcome", self.outcome.status().to_owned()),
        ]
    }
}

impl FromRedisValue for Marked {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        one_word(
            value,
            &[
                ("marked", Marked::Marked),
                ("unchanged", Marked::Unchanged),
                ("not_found", Marked::NotFound),
            ],
        )
    }
}
