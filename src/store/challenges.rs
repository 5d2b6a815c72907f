//! Typed wrappers of the challenge scripts: create, mark delivery, verify, confirm.

use super::{millis, reply_string, reply_strings, unexpected, Error, Store};
use crate::domain::{ChallengeId, ClientPublicKey, DeviceSessionId, Email, Locale, UserId};
use crate::store::scripts::ScriptCall;

/// Most sessions one confirm revokes for being over the per-user limit, so the script stays
/// short even right after the limit was lowered a lot; later logins evict the rest.
pub const MAX_EVICTIONS_PER_LOGIN: u32 = 50;

/// What `challenge_create` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// A new window opened: deliver the code.
    Pending,
    /// Inside the resend window (or a replay of an already handled challenge): deliver nothing.
    Throttled,
}

/// Terminal delivery statuses a pending challenge can move to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    Suppressed,
    Failed,
}

impl Delivery {
    fn status(self) -> &'static str {
        match self {
            Delivery::Sent => "sent",
            Delivery::Suppressed => "delivery_suppressed",
            Delivery::Failed => "delivery_failed",
        }
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
    /// The error code of the HTTP contract.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::NotFound => "challenge_not_found",
            Rejection::Expired => "challenge_expired",
            Rejection::InvalidCode => "invalid_code",
            Rejection::TooManyAttempts => "too_many_attempts",
            Rejection::AlreadyConfirmed => "challenge_already_confirmed",
        }
    }
}

/// `challenge_verify`'s verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// The code is right; the challenge's normalized e-mail address.
    Ok {
        email: String,
    },
    /// An identical confirm already succeeded: its session.
    Confirmed(DeviceSessionId),
    Rejected(Rejection),
}

/// `challenge_confirm`'s result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    Created(DeviceSessionId),
    /// Already confirmed with the same key (a concurrent twin or a replay): that session.
    Existing(DeviceSessionId),
    Rejected(Rejection),
}

pub struct ConfirmRequest<'a> {
    pub challenge_id: &'a ChallengeId,
    pub code_hash: &'a str,
    pub client_public_key: &'a ClientPublicKey,
    pub user_id: &'a UserId,
    pub device_session_id: &'a DeviceSessionId,
    pub max_attempts: u32,
    pub max_active_sessions: u32,
}

fn rejection(word: &str) -> Option<Rejection> {
    Some(match word {
        "not_found" => Rejection::NotFound,
        "expired" => Rejection::Expired,
        "invalid_code" => Rejection::InvalidCode,
        "too_many_attempts" => Rejection::TooManyAttempts,
        "already_confirmed" => Rejection::AlreadyConfirmed,
        _ => return None,
    })
}

impl Store {
    pub async fn challenge_create(
        &self,
        id: &ChallengeId,
        email: &Email,
        code_hash: &str,
        locale: Option<&Locale>,
    ) -> Result<Created, Error> {
        let script = &self.scripts.challenge_create;
        let email_hash = email.hash();
        let call = ScriptCall::new(script)
            .key(self.keys.challenge(id.as_str()))
            .key(self.keys.resend_throttle(&email_hash))
            .arg(id)
            .arg(email.as_str())
            .arg(&email_hash)
            .arg(code_hash)
            .arg(locale.map(Locale::as_str).unwrap_or(""))
            .arg(millis(self.policy.challenge_ttl))
            .arg(millis(self.policy.expired_challenge_retention))
            .arg(millis(self.policy.resend_cooldown));
        let status = reply_string(script.name, self.redis.invoke(&call).await?)?;
        Ok(if status == "pending_delivery" {
            Created::Pending
        } else {
            Created::Throttled
        })
    }

    /// Returns false when the challenge was no longer pending (already marked, or gone).
    pub async fn challenge_mark_delivery(
        &self,
        id: &ChallengeId,
        email: &Email,
        outcome: Delivery,
    ) -> Result<bool, Error> {
        let script = &self.scripts.challenge_mark_delivery;
        let call = ScriptCall::new(script)
            .key(self.keys.challenge(id.as_str()))
            .key(self.keys.resend_throttle(&email.hash()))
            .arg(id)
            .arg(outcome.status());
        let reply = reply_string(script.name, self.redis.invoke(&call).await?)?;
        Ok(reply == "marked")
    }

    /// Startup probe: runs `challenge_mark_delivery` on a challenge that cannot exist, which
    /// writes nothing but proves EVALSHA (and SCRIPT LOAD in `auto` mode) and the key-pattern
    /// ACLs work for the configured user and namespace.
    pub async fn probe_scripts(&self) -> Result<(), Error> {
        let script = &self.scripts.challenge_mark_delivery;
        let call = ScriptCall::new(script)
            .key(self.keys.challenge("startup-probe"))
            .key(self.keys.resend_throttle("startup-probe"))
            .arg("startup-probe")
            .arg(Delivery::Failed.status());
        match reply_string(script.name, self.redis.invoke(&call).await?)?.as_str() {
            "not_found" => Ok(()),
            other => Err(unexpected(script.name, &[other.to_owned()])),
        }
    }

    pub async fn challenge_verify(
        &self,
        id: &ChallengeId,
        code_hash: &str,
        client_public_key: &ClientPublicKey,
        max_attempts: u32,
    ) -> Result<Verified, Error> {
        let script = &self.scripts.challenge_verify;
        let call = ScriptCall::new(script)
            .key(self.keys.challenge(id.as_str()))
            .arg(code_hash)
            .arg(client_public_key)
            .arg(max_attempts)
            .arg(self.policy.confirm_failure_budget)
            .arg(millis(self.policy.confirm_failure_window))
            .arg(self.keys.confirm_failures(""));
        let reply = reply_strings(script.name, self.redis.invoke(&call).await?)?;
        match reply.as_slice() {
            [ok, email] if ok == "ok" => Ok(Verified::Ok {
                email: email.clone(),
            }),
            [confirmed, id] if confirmed == "confirmed" => Ok(Verified::Confirmed(
                DeviceSessionId::parse(id).map_err(|_| unexpected(script.name, &reply))?,
            )),
            [word] => rejection(word)
                .map(Verified::Rejected)
                .ok_or_else(|| unexpected(script.name, &reply)),
            _ => Err(unexpected(script.name, &reply)),
        }
    }

    pub async fn challenge_confirm(&self, req: &ConfirmRequest<'_>) -> Result<Confirmed, Error> {
        let script = &self.scripts.challenge_confirm;
        let user = req.user_id.as_str();
        let session = req.device_session_id.as_str();
        let call = ScriptCall::new(script)
            .key(self.keys.challenge(req.challenge_id.as_str()))
            .key(self.keys.session(session))
            .key(self.keys.user_sessions(user))
            .key(self.keys.user_active_sessions(user))
            .key(self.keys.gateway_session(session))
            .key(self.keys.stream())
            .arg(req.code_hash)
            .arg(req.client_public_key)
            .arg(user)
            .arg(session)
            .arg(req.max_attempts)
            .arg(req.max_active_sessions)
            .arg(millis(self.policy.confirm_idempotency_window))
            .arg(millis(self.policy.revoked_session_retention))
            .arg(self.stream_maxlen)
            .arg(self.keys.session(""))
            .arg(self.keys.gateway_session_prefix())
            .arg(req.challenge_id)
            .arg(MAX_EVICTIONS_PER_LOGIN);
        let reply = reply_strings(script.name, self.redis.invoke(&call).await?)?;
        let parse_id =
            |id: &str| DeviceSessionId::parse(id).map_err(|_| unexpected(script.name, &reply));
        match reply.as_slice() {
            [created, id, _created_at] if created == "created" => {
                Ok(Confirmed::Created(parse_id(id)?))
            }
            [confirmed, id] if confirmed == "confirmed" => Ok(Confirmed::Existing(parse_id(id)?)),
            [word] => rejection(word)
                .map(Confirmed::Rejected)
                .ok_or_else(|| unexpected(script.name, &reply)),
            _ => Err(unexpected(script.name, &reply)),
        }
    }
}
