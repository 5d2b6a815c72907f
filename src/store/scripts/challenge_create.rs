//! `lua/challenge_create.lua`: a new challenge and the address's resend window, with the send's
//! admission when the call carries it (single-tag layout; the partitioned layout admits with
//! `send_admit` first and passes none of the optional admission slots).

use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};

use super::{limit_args, scripts, Call, Reply, Script, Slot};
use crate::domain::{ChallengeId, ClientKey, Email, Locale};
use crate::store::{millis, Store};

pub struct ChallengeCreate<'a> {
    pub challenge_id: &'a ChallengeId,
    pub email: &'a Email,
    /// The code's hash under the current key.
    pub code_hash: &'a str,
    pub locale: Option<&'a Locale>,
    /// The client this call admits, with the work (`flows::admission` says whether it does).
    pub admit: Option<&'a ClientKey>,
}

/// What `challenge_create` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// A new window opened: deliver the code.
    Pending,
    /// Inside the resend window: deliver nothing.
    Throttled,
    /// Over an admission limit: nothing was written; retry after this long.
    RateLimited(Duration),
}

impl Call for ChallengeCreate<'_> {
    type Reply = Created;

    fn script() -> &'static Script {
        &scripts().challenge_create
    }

    fn keys(&self, store: &Store) -> Vec<Slot> {
        let keys = &store.keys;
        let mut slots = vec![
            ("challenge", keys.challenge(self.challenge_id)),
            ("resend_throttle", keys.resend_throttle(self.email.hash())),
        ];
        if let Some(client) = self.admit {
            slots.push(("rate_send_client", keys.rate_send_client(client)));
            let home = keys.layout().of_client(client.as_str());
            slots.push(("rate_send_global", keys.rate_send_global(home)));
        }
        slots
    }

    fn args(&self, store: &Store) -> Vec<Slot> {
        let policy = &store.policy;
        let mut slots = vec![
            ("challenge_id", self.challenge_id.to_string()),
            ("email", self.email.as_str().to_owned()),
            ("email_hash", self.email.hash().to_string()),
            ("code_hash", self.code_hash.to_owned()),
            (
                "locale",
                self.locale.map(Locale::to_string).unwrap_or_default(),
            ),
            ("challenge_ttl_ms", millis(policy.challenge_ttl).to_string()),
            (
                "expired_retention_ms",
                millis(policy.expired_challenge_retention).to_string(),
            ),
            (
                "resend_cooldown_ms",
                millis(policy.resend_cooldown).to_string(),
            ),
        ];
        if self.admit.is_some() {
            let (client_limit, client_window) = limit_args(policy.send_rate_per_ip);
            let (global_limit, global_window) = limit_args(policy.send_rate_global);
            slots.extend([
                ("client_limit", client_limit.to_string()),
                ("client_window_ms", client_window.to_string()),
                ("global_limit", global_limit.to_string()),
                ("global_window_ms", global_window.to_string()),
            ]);
        }
        slots
    }
}

impl FromRedisValue for Created {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let mut reply = Reply::read(value)?;
        let created = match reply.word() {
            "pending_delivery" => Created::Pending,
            "delivery_throttled" => Created::Throttled,
            "rate_limited" => Created::RateLimited(reply.millis()?),
            _ => return reply.unknown(),
        };
        reply.end(created)
    }
}
