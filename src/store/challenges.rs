//! Typed wrappers of the challenge scripts: create, mark delivery, verify, confirm.

use super::{millis, reply_strings, reply_word, unexpected, Error, Store};
use std::time::Duration;

use crate::config::RateLimit;
use crate::domain::{
    ChallengeId, ClientKey, ClientPublicKey, CodeHashes, DeviceSessionId, Email, Locale, RequestId,
    UserId,
};
use crate::store::scripts::ScriptCall;

/// Most sessions one confirm call revokes for being over the per-user limit, so the script stays
/// short even right after the limit was lowered a lot (the script refuses more than 50).
pub const MAX_EVICTIONS_PER_LOGIN: u32 = 50;

/// Most calls one confirm makes while the script answers `continue` (each removes up to 58
/// ghost or evicted entries of the user's active index before the session opens), so an index
/// full of ghosts is cleared in bounded steps and a runaway one answers 503.
pub const MAX_OPEN_CALLS: u32 = 64;

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

/// Why a confirm attempt is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    NotFound,
    Expired,
    InvalidCode,
    TooManyAttempts,
    AlreadyConfirmed,
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
    Rejected(Rejection),
    /// Over the client's admission limit: nothing was written; retry after this long.
    RateLimited(Duration),
}

/// `challenge_confirm`'s result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    Created(DeviceSessionId),
    /// Already confirmed with the same key (a concurrent twin or a replay): that session.
    Existing(DeviceSessionId),
    Rejected(Rejection),
    /// A block of the user is in flight (its marker exists): nothing was written.
    UserBlocked,
}

pub struct ConfirmRequest<'a> {
    pub challenge_id: &'a ChallengeId,
    pub code_hashes: &'a CodeHashes,
    pub client_public_key: &'a ClientPublicKey,
    pub user_id: &'a UserId,
    pub device_session_id: &'a DeviceSessionId,
    pub max_attempts: u32,
    pub max_active_sessions: u32,
    /// From [`Verified::Ok`].
    pub verified_at_ms: u64,
}

impl ScriptCall<'_> {
    /// The seven KEYS of opening `req`'s session (`include/session_open.lua`), in the order both
    /// confirm paths' scripts take them: the record, the user's two indexes, the snapshot, the
    /// user's partition's stream, the revoked index and the blocked marker.
    fn opening_session(self, store: &Store, req: &ConfirmRequest<'_>) -> Self {
        let (keys, user) = (&store.keys, req.user_id.as_str());
        let session = req.device_session_id.as_str();
        self.key("session", keys.session(session))
            .key("user_sessions", keys.user_sessions(user))
            .key("user_active_sessions", keys.user_active_sessions(user))
            .key("gateway_session", keys.gateway_session(session))
            .key("stream", keys.stream(keys.user_partition(user)))
            .key("user_revoked_sessions", keys.user_revoked_sessions(user))
            .key("user_blocked", keys.user_blocked(user))
    }

    /// `verified_at_ms max_verdict_age_ms`: the verdict's time and the longest a session step may
    /// act on it (the blocked marker's life, so a block in flight is never outlived).
    fn verdict(self, store: &Store, req: &ConfirmRequest<'_>) -> Self {
        self.arg("verified_at_ms", req.verified_at_ms)
            .arg("max_verdict_age_ms", millis(store.policy.block_marker_ttl))
    }
}

/// `(limit, window_ms)` for a script: `(0, 1)` when the limit is off.
fn limit_args(limit: Option<RateLimit>) -> (u32, u128) {
    limit.map_or((0, 1), |l| (l.count, millis(l.window)))
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
    pub fn challenge_create_call(
        &self,
        id: &ChallengeId,
        email: &Email,
        code_hash: &str,
        locale: Option<&Locale>,
        client: &ClientKey,
    ) -> ScriptCall<'static> {
        let email_hash = email.hash();
        let (mut client_limit, client_window) = limit_args(self.policy.send_rate_per_ip);
        let (mut global_limit, global_window) = limit_args(self.policy.send_rate_global);
        let (rate_client, rate_global) = if self.keys.partitions().is_partitioned() {
            // send_admit counted the client already; these keys of the address's slot stay
            // untouched (limits off).
            (client_limit, global_limit) = (0, 0);
            let home = self.keys.address_partition(&email_hash);
            (
                self.keys.rate_send_client_in(home, client.as_str()),
                self.keys.rate_send_global(home),
            )
        } else {
            (
                self.keys.rate_send_client(client.as_str()),
                self.keys
                    .rate_send_global(self.keys.client_partition(client.as_str())),
            )
        };
        ScriptCall::new(&self.scripts.challenge_create)
            .key("challenge", self.keys.challenge(id.as_str()))
            .key("resend_throttle", self.keys.resend_throttle(&email_hash))
            .key("rate_send_client", rate_client)
            .key("rate_send_global", rate_global)
            .arg("challenge_id", id)
            .arg("email", email.as_str())
            .arg("email_hash", &email_hash)
            .arg("code_hash", code_hash)
            .arg("locale", locale.map(Locale::as_str).unwrap_or(""))
            .arg("challenge_ttl_ms", millis(self.policy.challenge_ttl))
            .arg(
                "expired_retention_ms",
                millis(self.policy.expired_challenge_retention),
            )
            .arg("resend_cooldown_ms", millis(self.policy.resend_cooldown))
            .arg("client_limit", client_limit)
            .arg("client_window_ms", client_window)
            .arg("global_limit", global_limit)
            .arg("global_window_ms", global_window)
    }

    pub async fn challenge_create(
        &self,
        id: &ChallengeId,
        email: &Email,
        code_hash: &str,
        locale: Option<&Locale>,
        client: &ClientKey,
    ) -> Result<Created, Error> {
        // (Partitioned) no round trip when both limits are off.
        let limited =
            self.policy.send_rate_per_ip.is_some() || self.policy.send_rate_global.is_some();
        if self.keys.partitions().is_partitioned() && limited {
            if let Some(after) = self.admit(self.send_admit_call(id, client)).await? {
                return Ok(Created::RateLimited(after));
            }
        }
        let call = self.challenge_create_call(id, email, code_hash, locale, client);
        let name = call.script().name;
        let reply = reply_strings(name, self.redis.invoke(&call).await?)?;
        match reply.as_slice() {
            [status] if status == "pending_delivery" => Ok(Created::Pending),
            [status] if status == "delivery_throttled" => Ok(Created::Throttled),
            [limited, ms] if limited == "rate_limited" => ms
                .parse()
                .map(|ms| Created::RateLimited(Duration::from_millis(ms)))
                .map_err(|_| unexpected(name, &reply)),
            _ => Err(unexpected(name, &reply)),
        }
    }

    /// (Partitioned.) The send admission of `id` in the client's partition; the global window is
    /// shared out evenly, each partition admitting its share (rounded up).
    pub fn send_admit_call(&self, id: &ChallengeId, client: &ClientKey) -> ScriptCall<'static> {
        let (client_limit, client_window) = limit_args(self.policy.send_rate_per_ip);
        let (global_limit, global_window) = limit_args(self.policy.send_rate_global);
        let shares = self.keys.all_partitions().len() as u32;
        let home = self.keys.client_partition(client.as_str());
        ScriptCall::new(&self.scripts.send_admit)
            .key(
                "rate_send_client",
                self.keys.rate_send_client(client.as_str()),
            )
            .key("rate_send_global", self.keys.rate_send_global(home))
            .arg("challenge_id", id)
            .arg("client_limit", client_limit)
            .arg("client_window_ms", client_window)
            .arg("global_limit", global_limit.div_ceil(shares))
            .arg("global_window_ms", global_window)
    }

    /// (Partitioned.) The confirm admission of `attempt` in the client's partition.
    pub fn confirm_admit_call(
        &self,
        attempt: &RequestId,
        client: &ClientKey,
    ) -> ScriptCall<'static> {
        let (client_limit, client_window) = limit_args(self.policy.confirm_rate_per_ip);
        ScriptCall::new(&self.scripts.confirm_admit)
            .key(
                "rate_confirm_client",
                self.keys.rate_confirm_client(client.as_str()),
            )
            .arg("attempt_id", attempt)
            .arg("client_limit", client_limit)
            .arg("client_window_ms", client_window)
    }

    /// Runs an admission script: `Some(retry after)` when refused.
    async fn admit(&self, call: ScriptCall<'static>) -> Result<Option<Duration>, Error> {
        let name = call.script().name;
        let reply = reply_strings(name, self.redis.invoke(&call).await?)?;
        match reply.as_slice() {
            [admitted] if admitted == "admitted" => Ok(None),
            [limited, ms] if limited == "rate_limited" => ms
                .parse()
                .map(|ms| Some(Duration::from_millis(ms)))
                .map_err(|_| unexpected(name, &reply)),
            _ => Err(unexpected(name, &reply)),
        }
    }

    pub fn challenge_mark_delivery_call(
        &self,
        id: &ChallengeId,
        email_hash: &str,
        outcome: DeliveryStatus,
    ) -> ScriptCall<'static> {
        ScriptCall::new(&self.scripts.challenge_mark_delivery)
            .key("challenge", self.keys.challenge(id.as_str()))
            .key("resend_throttle", self.keys.resend_throttle(email_hash))
            .arg("challenge_id", id)
            .arg("outcome", outcome.status())
    }

    pub async fn challenge_mark_delivery(
        &self,
        id: &ChallengeId,
        email: &Email,
        outcome: DeliveryStatus,
    ) -> Result<Marked, Error> {
        let call = self.challenge_mark_delivery_call(id, &email.hash(), outcome);
        let words = [
            ("marked", Marked::Marked),
            ("unchanged", Marked::Unchanged),
            ("not_found", Marked::NotFound),
        ];
        reply_word(call.script().name, self.redis.invoke(&call).await?, &words)
    }

    /// Startup probe, once per partition: `access_probe` on a key of each namespace the service
    /// writes (key prefix, gateway prefix, the partition's stream). It writes nothing, but proves
    /// EVALSHA (and SCRIPT LOAD in `auto` mode) and that the user may run each write the scripts
    /// run there: a user missing the gateway pattern or a stream fails startup, naming the key.
    pub async fn probe_scripts(&self) -> Result<(), Error> {
        for call in self.access_probe_calls() {
            let name = call.script().name;
            let reply = match self.redis.invoke_unacknowledged(&call).await {
                Ok(reply) => reply,
                // Redis refuses a call whose declared keys the user may not access without
                // saying which: ask key by key, so the operator learns the pattern to grant.
                Err(Error::Redis(e))
                    if e.code() == Some("NOPERM") && e.to_string().contains("keys") =>
                {
                    for key in call.keys() {
                        let access: Result<String, _> =
                            self.redis.query(redis::cmd("TYPE").arg(key)).await;
                        if access.is_err() {
                            return Err(Error::KeyPermission { key: key.clone() });
                        }
                    }
                    return Err(Error::Redis(e));
                }
                Err(e) => return Err(e),
            };
            reply_word(name, reply, &[("ok", ())])?;
        }
        Ok(())
    }

    /// One `access_probe` call per partition (one in the single-tag layout).
    pub fn access_probe_calls(&self) -> Vec<ScriptCall<'static>> {
        self.keys
            .all_partitions()
            .into_iter()
            .map(|partition| {
                let id = self.keys.probe_id(partition);
                ScriptCall::new(&self.scripts.access_probe)
                    .key("challenge", self.keys.challenge(&id))
                    .key("gateway_session", self.keys.gateway_session(&id))
                    .key("stream", self.keys.stream(partition))
            })
            .collect()
    }

    /// `attempt` identifies this confirm request: a resend of the same call (lost reply) is
    /// answered from the stored verdict instead of counting a second attempt.
    pub fn challenge_verify_call(
        &self,
        id: &ChallengeId,
        code_hashes: &CodeHashes,
        client_public_key: &ClientPublicKey,
        max_attempts: u32,
        attempt: &RequestId,
        client: &ClientKey,
    ) -> ScriptCall<'static> {
        let (mut client_limit, client_window) = limit_args(self.policy.confirm_rate_per_ip);
        let home = self.home_or_first(id.as_str());
        let rate_client = if self.keys.partitions().is_partitioned() {
            // confirm_admit counted the client already; this key of the challenge's slot stays
            // untouched (limit off).
            client_limit = 0;
            self.keys.rate_confirm_client_in(home, client.as_str())
        } else {
            self.keys.rate_confirm_client(client.as_str())
        };
        ScriptCall::new(&self.scripts.challenge_verify)
            .key("challenge", self.keys.challenge(id.as_str()))
            .key("rate_confirm_client", rate_client)
            .arg("code_hash", &code_hashes.current)
            .arg(
                "code_hash_previous",
                code_hashes.previous.as_deref().unwrap_or(""),
            )
            .arg("client_public_key", client_public_key)
            .arg("max_attempts", max_attempts)
            .arg("failure_budget", self.policy.confirm_failure_budget)
            .arg(
                "failure_window_ms",
                millis(self.policy.confirm_failure_window),
            )
            .arg(
                "confirm_failures_prefix",
                self.keys.confirm_failures_prefix(home),
            )
            .arg("attempt_id", attempt)
            .arg("client_limit", client_limit)
            .arg("client_window_ms", client_window)
    }

    pub async fn challenge_verify(
        &self,
        id: &ChallengeId,
        code_hashes: &CodeHashes,
        client_public_key: &ClientPublicKey,
        max_attempts: u32,
        client: &ClientKey,
    ) -> Result<Verified, Error> {
        let attempt = RequestId::generate();
        // (Partitioned) no round trip when the limit is off.
        if self.keys.partitions().is_partitioned() && self.policy.confirm_rate_per_ip.is_some() {
            if let Some(after) = self
                .admit(self.confirm_admit_call(&attempt, client))
                .await?
            {
                return Ok(Verified::RateLimited(after));
            }
        }
        if self.home(id.as_str()).is_none() {
            return Ok(Verified::Rejected(Rejection::NotFound));
        }
        let call = self.challenge_verify_call(
            id,
            code_hashes,
            client_public_key,
            max_attempts,
            &attempt,
            client,
        );
        let script = call.script();
        let reply = reply_strings(script.name, self.redis.invoke(&call).await?)?;
        match reply.as_slice() {
            [ok, email, at] if ok == "ok" => Ok(Verified::Ok {
                // Never in the error: the address is personal data.
                email: Email::parse(email).map_err(|_| Error::Reply {
                    script: script.name,
                    detail: "the stored e-mail address does not parse".into(),
                })?,
                verified_at_ms: at.parse().map_err(|_| Error::Reply {
                    script: script.name,
                    detail: "the verdict's time does not parse".into(),
                })?,
            }),
            [confirmed, id] if confirmed == "confirmed" => Ok(Verified::Confirmed(
                DeviceSessionId::parse(id).map_err(|_| unexpected(script.name, &reply))?,
            )),
            [limited, ms] if limited == "rate_limited" => ms
                .parse()
                .map(|ms| Verified::RateLimited(Duration::from_millis(ms)))
                .map_err(|_| unexpected(script.name, &reply)),
            [word] => rejection(word)
                .map(Verified::Rejected)
                .ok_or_else(|| unexpected(script.name, &reply)),
            _ => Err(unexpected(script.name, &reply)),
        }
    }

    pub fn challenge_confirm_call(&self, req: &ConfirmRequest<'_>) -> ScriptCall<'static> {
        let user = req.user_id.as_str();
        let session = req.device_session_id.as_str();
        ScriptCall::new(&self.scripts.challenge_confirm)
            .key("challenge", self.keys.challenge(req.challenge_id.as_str()))
            .opening_session(self, req)
            .arg("code_hash", &req.code_hashes.current)
            .arg("client_public_key", req.client_public_key)
            .arg("user_id", user)
            .arg("device_session_id", session)
            .arg("max_attempts", req.max_attempts)
            .arg("max_active_sessions", req.max_active_sessions)
            .arg(
                "idempotency_window_ms",
                millis(self.policy.confirm_idempotency_window),
            )
            .revoking_by_prefix(self)
            .arg("challenge_id", req.challenge_id)
            .arg("max_evictions", MAX_EVICTIONS_PER_LOGIN)
            .arg(
                "code_hash_previous",
                req.code_hashes.previous.as_deref().unwrap_or(""),
            )
            .verdict(self, req)
    }

    /// Creates the session of a verified challenge. Single-tag layout: one script. Partitioned:
    /// the claim on the challenge (address's partition), the session in the user's partition
    /// (its id derived from the challenge and the user), then the mark on the challenge; a crash
    /// between two steps leaves a claim or a session that the retry finds, so every interleaving
    /// ends as an uninterrupted confirm does.
    pub async fn challenge_confirm(&self, req: &ConfirmRequest<'_>) -> Result<Confirmed, Error> {
        if self.keys.partitions().is_partitioned() {
            return self.challenge_confirm_in_steps(req).await;
        }
        let call = self.challenge_confirm_call(req);
        let script = call.script();
        let reply = self.invoke_until_settled(&call).await?;
        let parse_id =
            |id: &str| DeviceSessionId::parse(id).map_err(|_| unexpected(script.name, &reply));
        match reply.as_slice() {
            [created, id, _created_at] if created == "created" => {
                Ok(Confirmed::Created(parse_id(id)?))
            }
            [confirmed, id] if confirmed == "confirmed" => Ok(Confirmed::Existing(parse_id(id)?)),
            [blocked] if blocked == "user_blocked" => Ok(Confirmed::UserBlocked),
            [stale] if stale == "verdict_expired" => Err(Error::StaleVerdict),
            [word] => rejection(word)
                .map(Confirmed::Rejected)
                .ok_or_else(|| unexpected(script.name, &reply)),
            _ => Err(unexpected(script.name, &reply)),
        }
    }
}

/// `session_create`'s result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCreated {
    /// Created now, or found made by this challenge with this key (a retry): its creation time.
    Created { created_at_ms: u64 },
    /// The challenge's session exists with another client key: a twin confirmed first.
    OtherKey,
    /// A block of the user is in flight: nothing was written.
    UserBlocked,
}

/// `challenge_claim`'s result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// Claimed for this session now, or by this session before (a retry).
    Claimed,
    /// Claimed for, or confirmed with, another session: this confirm must create nothing.
    OtherSession,
    /// Gone (expired and removed since it verified).
    NotFound,
}

/// `challenge_mark_confirmed`'s result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkedConfirmed {
    Marked,
    /// Confirmed with another session already: left as it was.
    OtherSession,
    /// Gone (expired and removed since it verified).
    NotFound,
}

impl Store {
    /// The partitioned confirm's step 2, in the user's partition.
    pub fn session_create_call(&self, req: &ConfirmRequest<'_>) -> ScriptCall<'static> {
        let user = req.user_id.as_str();
        let session = req.device_session_id.as_str();
        ScriptCall::new(&self.scripts.session_create)
            .opening_session(self, req)
            .arg("client_public_key", req.client_public_key)
            .arg("user_id", user)
            .arg("device_session_id", session)
            .arg("challenge_id", req.challenge_id)
            .arg("max_active_sessions", req.max_active_sessions)
            .arg("max_evictions", MAX_EVICTIONS_PER_LOGIN)
            .revoking_by_prefix(self)
            .verdict(self, req)
    }

    /// Runs a session-opening call again while it answers `continue` (it removed a bounded part
    /// of the ghosts and evictions standing before the limit holds), at most [`MAX_OPEN_CALLS`]
    /// times; its final reply.
    async fn invoke_until_settled(&self, call: &ScriptCall<'_>) -> Result<Vec<String>, Error> {
        let name = call.script().name;
        for _ in 0..MAX_OPEN_CALLS {
            let reply = reply_strings(name, self.redis.invoke(call).await?)?;
            if reply.first().map(String::as_str) != Some("continue") {
                return Ok(reply);
            }
        }
        Err(Error::Unfinished {
            script: name,
            calls: MAX_OPEN_CALLS,
        })
    }

    pub async fn session_create(&self, req: &ConfirmRequest<'_>) -> Result<SessionCreated, Error> {
        let call = self.session_create_call(req);
        let name = call.script().name;
        let reply = self.invoke_until_settled(&call).await?;
        match reply.as_slice() {
            [created, id, at] if created == "created" && id == req.device_session_id.as_str() => at
                .parse()
                .map(|created_at_ms| SessionCreated::Created { created_at_ms })
                .map_err(|_| unexpected(name, &reply)),
            [other] if other == "other_key" => Ok(SessionCreated::OtherKey),
            [blocked] if blocked == "user_blocked" => Ok(SessionCreated::UserBlocked),
            [stale] if stale == "verdict_expired" => Err(Error::StaleVerdict),
            _ => Err(unexpected(name, &reply)),
        }
    }

    /// The partitioned confirm's step 1, in the address's partition: the challenge claimed for
    /// the session this confirm will create.
    pub fn challenge_claim_call(&self, req: &ConfirmRequest<'_>) -> ScriptCall<'static> {
        ScriptCall::new(&self.scripts.challenge_claim)
            .key("challenge", self.keys.challenge(req.challenge_id.as_str()))
            .arg("device_session_id", req.device_session_id)
            .arg("user_id", req.user_id)
    }

    pub async fn challenge_claim(&self, req: &ConfirmRequest<'_>) -> Result<Claimed, Error> {
        let call = self.challenge_claim_call(req);
        let words = [
            ("claimed", Claimed::Claimed),
            ("other_session", Claimed::OtherSession),
            ("not_found", Claimed::NotFound),
        ];
        reply_word(call.script().name, self.redis.invoke(&call).await?, &words)
    }

    /// The partitioned confirm's step 3, in the address's partition.
    pub fn challenge_mark_confirmed_call(
        &self,
        req: &ConfirmRequest<'_>,
        created_at_ms: u64,
    ) -> ScriptCall<'static> {
        ScriptCall::new(&self.scripts.challenge_mark_confirmed)
            .key("challenge", self.keys.challenge(req.challenge_id.as_str()))
            .arg("device_session_id", req.device_session_id)
            .arg("client_public_key", req.client_public_key)
            .arg("user_id", req.user_id)
            .arg("confirmed_at_ms", created_at_ms)
            .arg(
                "idempotency_window_ms",
                millis(self.policy.confirm_idempotency_window),
            )
    }

    pub async fn challenge_mark_confirmed(
        &self,
        req: &ConfirmRequest<'_>,
        created_at_ms: u64,
    ) -> Result<MarkedConfirmed, Error> {
        let call = self.challenge_mark_confirmed_call(req, created_at_ms);
        let words = [
            ("marked", MarkedConfirmed::Marked),
            ("other_session", MarkedConfirmed::OtherSession),
            ("not_found", MarkedConfirmed::NotFound),
        ];
        reply_word(call.script().name, self.redis.invoke(&call).await?, &words)
    }

    async fn challenge_confirm_in_steps(
        &self,
        req: &ConfirmRequest<'_>,
    ) -> Result<Confirmed, Error> {
        // The claim first: a confirm whose user id (so session id and partition) differs from
        // the claimant's creates nothing, so one challenge yields at most one session.
        match self.challenge_claim(req).await? {
            Claimed::Claimed => {}
            Claimed::OtherSession => return Ok(Confirmed::Rejected(Rejection::AlreadyConfirmed)),
            Claimed::NotFound => return Ok(Confirmed::Rejected(Rejection::NotFound)),
        }
        let created_at_ms = match self.session_create(req).await? {
            SessionCreated::Created { created_at_ms } => created_at_ms,
            SessionCreated::OtherKey => {
                return Ok(Confirmed::Rejected(Rejection::AlreadyConfirmed))
            }
            SessionCreated::UserBlocked => return Ok(Confirmed::UserBlocked),
        };
        let id = req.device_session_id.clone();
        match self.challenge_mark_confirmed(req, created_at_ms).await? {
            MarkedConfirmed::Marked => Ok(Confirmed::Created(id)),
            // The session was made by a verified confirm; the challenge expiring since, or a
            // twin's mark, does not undo it.
            MarkedConfirmed::NotFound => {
                tracing::warn!(device_session_id = %id, "confirm: the challenge expired before it was marked confirmed");
                Ok(Confirmed::Created(id))
            }
            MarkedConfirmed::OtherSession => Ok(Confirmed::Rejected(Rejection::AlreadyConfirmed)),
        }
    }
}
