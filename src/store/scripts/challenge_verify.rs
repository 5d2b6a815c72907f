//! `lua/challenge_verify.lua`: a presented code checked against the challenge, counting the
//! attempt, the address's failure budget and, when the call carries it (single-tag layout), the
//! client's confirm window.

use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};

use super::{limit_args, replan_one, scripts, Call, Plan, Planning, Reply, Script, Slot};
use crate::domain::{
    ChallengeId, ClientKey, ClientPublicKey, CodeHashes, DeviceSessionId, Email, EmailHash,
    RequestId,
};
use crate::store::{millis, Store};

pub struct ChallengeVerify<'a> {
    pub challenge_id: &'a ChallengeId,
    pub code_hashes: &'a CodeHashes,
    pub client_public_key: &'a ClientPublicKey,
    pub max_attempts: u32,
    /// Identifies this confirm request: a resend of the same call (lost reply) is answered from
    /// the stored verdict instead of counting a second attempt.
    pub attempt_id: &'a RequestId,
    /// The client this call admits, with the work (`flows::admission` says whether it does).
    pub admit: Option<&'a ClientKey>,
    /// The challenge's address, when the caller knows it (from the id, or a `need` reply): its
    /// failure counter is declared. Without it, a challenge with an address answers `need`.
    pub address: Option<EmailHash>,
    /// The throttled challenge the code was presented through, when this is the window's opening
    /// challenge verified on its behalf.
    pub via: Option<Via<'a>>,
}

/// A throttled challenge a code was presented through (a follower of the window that opened
/// with the challenge verified), and its expiry: until then the opening challenge is judged as
/// an open challenge of the follower's age, and, once confirmed through another challenge of the
/// window, as if it were still open (no holder of one learns that the owner logged in).
#[derive(Debug, Clone, Copy)]
pub struct Via<'a> {
    pub challenge_id: &'a ChallengeId,
    pub expires_at_ms: u64,
}

/// The `via` and `via_expires_at_ms` ARGV of the scripts that judge a code: '' and '' when the
/// code was presented to the challenge itself.
pub(super) fn via_args(via: Option<Via<'_>>) -> [Slot; 2] {
    match via {
        Some(via) => [
            ("via", via.challenge_id.to_string()),
            ("via_expires_at_ms", via.expires_at_ms.to_string()),
        ],
        None => [("via", String::new()), ("via_expires_at_ms", String::new())],
    }
}

/// Why a confirm attempt is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    NotFound,
    Expired,
    InvalidCode,
    TooManyAttempts,
    AlreadyConfirmed,
}

impl Rejection {
    /// The rejection a script answers with `word`.
    pub(super) fn from_word(word: &str) -> Option<Self> {
        Some(match word {
            "not_found" => Rejection::NotFound,
            "expired" => Rejection::Expired,
            "invalid_code" => Rejection::InvalidCode,
            "too_many_attempts" => Rejection::TooManyAttempts,
            "already_confirmed" => Rejection::AlreadyConfirmed,
            _ => return None,
        })
    }
}

/// `challenge_verify`'s verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// The code is right; the challenge's e-mail address.
    Ok {
        email: Email,
        /// Redis time of the verdict: the session step refuses it once it is older than the
        /// blocked marker lives (a confirm stalled that long could outlive a block).
        verified_at_ms: u64,
    },
    /// An identical confirm already succeeded: its session.
    Confirmed(DeviceSessionId),
    /// The challenge is throttled: it accepts the code of the challenge that opened the address's
    /// resend window (`opening`), and its attempts count there. Nothing but the client's
    /// admission was counted; verify again against `opening` with the same attempt id, via this
    /// challenge, which expires at `expires_at_ms`.
    Window {
        opening: ChallengeId,
        expires_at_ms: u64,
    },
    Rejected(Rejection),
    /// Over the client's admission limit: nothing was written; retry after this long.
    RateLimited(Duration),
}

impl Call for ChallengeVerify<'_> {
    type Reply = Plan<Verified>;

    fn script() -> &'static Script {
        &scripts().challenge_verify
    }

    fn keys(&self, store: &Store) -> Vec<Slot> {
        let keys = &store.keys;
        let mut slots = vec![("challenge", keys.challenge(self.challenge_id))];
        if let Some(client) = self.admit {
            slots.push(("rate_confirm_client", keys.rate_confirm_client(client)));
        }
        if let Some(address) = &self.address {
            slots.push(("confirm_failures", keys.confirm_failures(address)));
        }
        slots
    }

    fn args(&self, store: &Store) -> Vec<Slot> {
        let policy = &store.policy;
        let mut slots = vec![
            ("code_hash", self.code_hashes.current.clone()),
            (
                "code_hash_previous",
                self.code_hashes.previous.clone().unwrap_or_default(),
            ),
            ("client_public_key", self.client_public_key.to_string()),
            ("max_attempts", self.max_attempts.to_string()),
            ("failure_budget", policy.confirm_failure_budget.to_string()),
            (
                "failure_window_ms",
                millis(policy.confirm_failure_window).to_string(),
            ),
            ("attempt_id", self.attempt_id.to_string()),
        ];
        slots.extend(via_args(self.via));
        if self.admit.is_some() {
            let (client_limit, client_window) = limit_args(policy.confirm_rate_per_ip);
            slots.extend([
                ("client_limit", client_limit.to_string()),
                ("client_window_ms", client_window.to_string()),
            ]);
        }
        if let Some(address) = &self.address {
            slots.push(("email_hash", address.to_string()));
        }
        slots
    }
}

impl Planning for ChallengeVerify<'_> {
    type Settled = Verified;

    fn plan(&mut self, ids: &[String]) -> bool {
        replan_one(&mut self.address, ids, |h| EmailHash::parse(h).ok())
    }
}

impl FromRedisValue for Verified {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let mut reply = Reply::read(value)?;
        let verified = match reply.word() {
            "ok" => {
                // Never in the error: the address is personal data.
                let email = Email::parse(&reply.next::<String>()?)
                    .map_err(|_| "the stored e-mail address does not parse")?;
                Verified::Ok {
                    email,
                    verified_at_ms: reply.next()?,
                }
            }
            "confirmed" => Verified::Confirmed(
                DeviceSessionId::parse(&reply.next::<String>()?)
                    .map_err(|_| "`confirmed` names a malformed session id")?,
            ),
            "window" => Verified::Window {
                opening: ChallengeId::parse(&reply.next::<String>()?)
                    .map_err(|_| "`window` names a malformed challenge id")?,
                expires_at_ms: reply.next()?,
            },
            "rate_limited" => Verified::RateLimited(reply.millis()?),
            word => match Rejection::from_word(word) {
                Some(rejection) => Verified::Rejected(rejection),
                None => return reply.unknown(),
            },
        };
        reply.end(verified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(items: &[&str]) -> Value {
        Value::Array(
            items
                .iter()
                .map(|w| Value::BulkString(w.as_bytes().to_vec()))
                .collect(),
        )
    }

    #[test]
    fn a_reply_decodes_only_in_the_shape_the_header_states() {
        let ok = Verified::from_redis_value(words(&["ok", "a@example.com", "17"])).unwrap();
        assert!(matches!(
            ok,
            Verified::Ok {
                verified_at_ms: 17,
                ..
            }
        ));
        assert_eq!(
            Verified::from_redis_value(Value::BulkString(b"expired".to_vec())).unwrap(),
            Verified::Rejected(Rejection::Expired)
        );
        assert_eq!(
            Verified::from_redis_value(words(&["rate_limited", "250"])).unwrap(),
            Verified::RateLimited(Duration::from_millis(250))
        );
        for wrong in [
            words(&["window"]),
            words(&["window", "../x", "1"]),
            words(&["window", "AAAAAAAAAAAAAAAAAAAAAA"]),
            words(&["rate_limited"]),
            words(&["rate_limited", "soon"]),
            words(&["not_found", "extra"]),
            words(&["maybe"]),
            words(&[]),
        ] {
            assert!(
                Verified::from_redis_value(wrong.clone()).is_err(),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn a_malformed_reply_never_echoes_the_address() {
        let error = Verified::from_redis_value(words(&["ok", "not an address x@y", "1"]))
            .unwrap_err()
            .to_string();
        assert!(!error.contains("x@y"), "{error}");
    }
}
