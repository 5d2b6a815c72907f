//! Sessions: typed wrappers of the revoke and republish scripts, and the read paths (get, list).

use std::collections::HashMap;
use std::time::Duration;

use super::{millis, reply_strings, unexpected, Error, Store};
use crate::domain::{
    ActorId, Cursor, DeviceSessionId, Page, RequestId, Revocation, RevokeOutcome, Session,
    SessionStatus, UserId,
};
use crate::store::keys::Partition;
use crate::store::scripts::ScriptCall;

/// Sessions revoked per `user_sessions_revoke` call, so one call never blocks Redis for long:
/// each costs about 7 commands; 100 measured 4-5 ms on the 2-core bench and 200 about 7 ms, so 50
/// keeps a call well inside the 5 ms budget (README "Performance").
pub const REVOKE_BATCH: u32 = 50;
/// How long a revoke-all remembers each batch's reply, so a replayed batch (a resend after a lost
/// reply, within the command timeout) answers the same count.
const REVOKE_BATCH_MEMO: Duration = Duration::from_secs(60);
/// Batches a revoke-all may run beyond those its first reply accounts for (sessions created by
/// logins racing it).
const REVOKE_EXTRA_BATCHES: u64 = 4;
/// Most index entries one listing request examines, whatever the filter.
const LIST_SCAN_LIMIT: usize = 5000;

/// A session record from its hash's fields; `None` when a required field is missing or
/// malformed.
pub(super) fn session_from_fields(mut f: HashMap<String, String>) -> Option<Session> {
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    Some(Session {
        device_session_id: f.remove("device_session_id")?,
        user_id: f.remove("user_id")?,
        status: SessionStatus::parse(&f.remove("status")?).ok()?,
        client_public_key: f.remove("client_public_key")?,
        created_at_ms: f.remove("created_at_ms")?.parse().ok()?,
        revoked_at_ms: non_empty(f.remove("revoked_at_ms")).and_then(|v| v.parse().ok()),
        revoke_reason_code: non_empty(f.remove("revoke_reason_code")),
        revoke_actor_type: non_empty(f.remove("revoke_actor_type")),
        revoke_actor_id: non_empty(f.remove("revoke_actor_id")),
        version: f.remove("version")?.parse().ok()?,
        challenge_id: non_empty(f.remove("challenge_id")),
    })
}

/// A script reply's flat `field value ...` list as a session record.
fn session_from_flat(script: &'static str, flat: &[String]) -> Result<Session, Error> {
    let fields = flat
        .chunks_exact(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect();
    session_from_fields(fields).ok_or_else(|| unexpected(script, flat))
}

impl ScriptCall<'_> {
    /// `reason_code actor_type actor_id` ('' when none): the ARGV both revoke scripts start with.
    fn revocation(self, r: &Revocation) -> Self {
        self.arg("reason_code", &r.reason_code)
            .arg("actor_type", &r.actor_type)
            .arg(
                "actor_id",
                r.actor_id.as_ref().map(ActorId::as_str).unwrap_or(""),
            )
    }
}

impl ScriptCall<'_> {
    /// `revoked_retention_ms stream_maxlen session_prefix gateway_session_prefix`: the ARGV run
    /// of the scripts that revoke sessions whose keys they derive (eviction, revoke-all batches).
    pub(super) fn revoking_by_prefix(self, store: &Store) -> Self {
        self.arg(
            "revoked_retention_ms",
            millis(store.policy.revoked_session_retention),
        )
        .arg("stream_maxlen", store.stream_maxlen)
        .arg("session_prefix", store.keys.session_prefix())
        .arg(
            "gateway_session_prefix",
            store.keys.gateway_session_prefix(),
        )
    }
}

/// Outcome of republishing a session's projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Republished {
    Repaired { version: u64 },
    Current { version: u64 },
    NotFound,
}

impl Store {
    /// The partition a session id names; `None`: not an id of this deployment, so no such session.
    pub(super) fn home(&self, id: &str) -> Option<Partition> {
        self.keys.partition_of_id(id)
    }

    /// For call builders, which the typed methods only reach with an id of this deployment.
    pub(super) fn home_or_first(&self, id: &str) -> Partition {
        self.home(id)
            .unwrap_or_else(|| self.keys.all_partitions()[0])
    }

    pub async fn session_get(&self, id: &DeviceSessionId) -> Result<Option<Session>, Error> {
        if self.home(id.as_str()).is_none() {
            return Ok(None);
        }
        let fields: HashMap<String, String> = self
            .redis
            .query(redis::cmd("HGETALL").arg(self.keys.session(id.as_str())))
            .await?;
        Ok(if fields.is_empty() {
            None
        } else {
            session_from_fields(fields)
        })
    }

    pub fn session_revoke_call(
        &self,
        id: &DeviceSessionId,
        revocation: &Revocation,
        request: &RequestId,
    ) -> ScriptCall<'static> {
        let home = self.home_or_first(id.as_str());
        let user = self.keys.user_index_parts(home);
        ScriptCall::new(&self.scripts.session_revoke)
            .key("session", self.keys.session(id.as_str()))
            .key("gateway_session", self.keys.gateway_session(id.as_str()))
            .key("stream", self.keys.stream(home))
            .revocation(revocation)
            .arg(
                "revoked_retention_ms",
                millis(self.policy.revoked_session_retention),
            )
            .arg("stream_maxlen", self.stream_maxlen)
            .arg("user_prefix", user.head)
            .arg("user_sessions_suffix", user.sessions)
            .arg("user_active_sessions_suffix", user.active)
            .arg("user_revoked_sessions_suffix", user.revoked)
            .arg("request_id", request)
    }

    pub async fn session_revoke(
        &self,
        id: &DeviceSessionId,
        revocation: &Revocation,
    ) -> Result<Option<(RevokeOutcome, Session)>, Error> {
        if self.home(id.as_str()).is_none() {
            return Ok(None);
        }
        let call = self.session_revoke_call(id, revocation, &RequestId::generate());
        let script = call.script();
        let reply = reply_strings(script.name, self.redis.invoke(&call).await?)?;
        let outcome = match reply.first().map(String::as_str) {
            Some("not_found") if reply.len() == 1 => return Ok(None),
            Some("revoked") => RevokeOutcome::Revoked,
            Some("already_revoked") => RevokeOutcome::AlreadyRevoked,
            _ => return Err(unexpected(script.name, &reply)),
        };
        Ok(Some((
            outcome,
            session_from_flat(script.name, &reply[1..])?,
        )))
    }

    /// Batch `batch` (1, 2, ...) of the revoke-all identified by `request`; `block_marker`: for
    /// a block, how long the first batch's blocked marker lives.
    pub fn user_sessions_revoke_call(
        &self,
        user_id: &UserId,
        revocation: &Revocation,
        request: &RequestId,
        batch: u32,
        block_marker: Option<Duration>,
    ) -> ScriptCall<'static> {
        let user = user_id.as_str();
        ScriptCall::new(&self.scripts.user_sessions_revoke)
            .key("user_active_sessions", self.keys.user_active_sessions(user))
            .key("stream", self.keys.stream(self.keys.user_partition(user)))
            .key("user_sessions", self.keys.user_sessions(user))
            .key(
                "user_revoked_sessions",
                self.keys.user_revoked_sessions(user),
            )
            .key(
                "revoke_batches",
                self.keys.revoke_batches(user, request.as_str()),
            )
            .key("user_blocked", self.keys.user_blocked(user))
            .revocation(revocation)
            .arg("batch_size", REVOKE_BATCH)
            .revoking_by_prefix(self)
            .arg("request_id", request)
            .arg("batch_number", batch)
            .arg("replay_memo_ms", millis(REVOKE_BATCH_MEMO))
            .arg("block_marker_ttl_ms", block_marker.map_or(0, millis))
    }

    /// Revokes every active session of a user in batches of [`REVOKE_BATCH`]; returns how many.
    /// With `block_marker`, the first batch first marks the user blocked for that long.
    pub async fn user_sessions_revoke(
        &self,
        user_id: &UserId,
        revocation: &Revocation,
        block_marker: Option<Duration>,
    ) -> Result<u64, Error> {
        let request = RequestId::generate();
        let mut revoked = 0u64;
        // Every batch removes each id it looks at from the active index, so the first reply's
        // count bounds the batches left; logins racing the revoke may add a few more. A loop past
        // that bound (an index that does not shrink) ends in an error, not forever.
        let mut last_batch: Option<u64> = None;
        for batch in 1u32.. {
            if last_batch.is_some_and(|last| u64::from(batch) > last) {
                return Err(Error::Unfinished {
                    script: self.scripts.user_sessions_revoke.name,
                    calls: batch - 1,
                });
            }
            let call =
                self.user_sessions_revoke_call(user_id, revocation, &request, batch, block_marker);
            let name = call.script().name;
            let reply = reply_strings(name, self.redis.invoke(&call).await?)?;
            let [count, remaining] = reply.as_slice() else {
                return Err(unexpected(name, &reply));
            };
            let (count, remaining): (u64, u64) = match (count.parse(), remaining.parse()) {
                (Ok(c), Ok(r)) => (c, r),
                _ => return Err(unexpected(name, &reply)),
            };
            revoked += count;
            if remaining == 0 {
                break;
            }
            last_batch.get_or_insert(
                1 + remaining.div_ceil(u64::from(REVOKE_BATCH)) + REVOKE_EXTRA_BATCHES,
            );
        }
        Ok(revoked)
    }

    pub fn session_projection_republish_call(
        &self,
        id: &DeviceSessionId,
        request: &RequestId,
    ) -> ScriptCall<'static> {
        ScriptCall::new(&self.scripts.session_projection_republish)
            .key("session", self.keys.session(id.as_str()))
            .key("gateway_session", self.keys.gateway_session(id.as_str()))
            .key("stream", self.keys.stream(self.home_or_first(id.as_str())))
            .arg("stream_maxlen", self.stream_maxlen)
            .arg(
                "revoked_retention_ms",
                millis(self.policy.revoked_session_retention),
            )
            .arg("request_id", request)
    }

    pub async fn session_projection_republish(
        &self,
        id: &DeviceSessionId,
    ) -> Result<Republished, Error> {
        if self.home(id.as_str()).is_none() {
            return Ok(Republished::NotFound);
        }
        let call = self.session_projection_republish_call(id, &RequestId::generate());
        let script = call.script();
        let reply = reply_strings(script.name, self.redis.invoke(&call).await?)?;
        let version = || {
            reply
                .get(1)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| unexpected(script.name, &reply))
        };
        match reply.first().map(String::as_str) {
            Some("not_found") => Ok(Republished::NotFound),
            Some("repaired") => Ok(Republished::Repaired {
                version: version()?,
            }),
            Some("current") => Ok(Republished::Current {
                version: version()?,
            }),
            _ => Err(unexpected(script.name, &reply)),
        }
    }

    /// A page of a user's sessions, newest first. Index entries whose record has expired are
    /// skipped (the confirm script prunes them lazily).
    pub async fn sessions_list(
        &self,
        user_id: &UserId,
        filter: Option<SessionStatus>,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<Page, Error> {
        let index = match filter {
            Some(SessionStatus::Active) => self.keys.user_active_sessions(user_id.as_str()),
            _ => self.keys.user_sessions(user_id.as_str()),
        };
        let max = cursor
            .map(|c| c.score().to_string())
            .unwrap_or_else(|| "+inf".to_owned());
        let mut sessions = Vec::with_capacity(limit);
        let mut offset = 0usize;
        let mut last: Option<Cursor> = None;
        let mut scanned: Option<Cursor> = None;
        while offset < LIST_SCAN_LIMIT {
            let chunk = (limit + 1).clamp(16, 1000);
            let entries: Vec<(String, i64)> = self
                .redis
                .query(
                    redis::cmd("ZRANGE")
                        .arg(&index)
                        .arg(&max)
                        .arg("-inf")
                        .arg("BYSCORE")
                        .arg("REV")
                        .arg("LIMIT")
                        .arg(offset)
                        .arg(chunk)
                        .arg("WITHSCORES"),
                )
                .await?;
            let fetched = entries.len();
            offset += fetched;
            if let Some((member, score)) = entries.last() {
                scanned = Some(Cursor::new(*score, member.clone()));
            }
            // Entries at the cursor's score sort by member, descending: skip up to the cursor.
            let entries: Vec<_> = entries
                .into_iter()
                .filter(|(member, score)| {
                    cursor.is_none_or(|c| *score < c.score() || member.as_str() < c.member())
                })
                .collect();
            if !entries.is_empty() {
                let mut pipe = redis::pipe();
                for (member, _) in &entries {
                    pipe.cmd("HGETALL").arg(self.keys.session(member));
                }
                let records: Vec<HashMap<String, String>> = self.redis.query_pipe(&pipe).await?;
                for ((member, score), fields) in entries.into_iter().zip(records) {
                    let Some(session) = session_from_fields(fields) else {
                        continue;
                    };
                    if filter.is_some_and(|wanted| session.status != wanted) {
                        continue;
                    }
                    if sessions.len() == limit {
                        return Ok(Page {
                            sessions,
                            next_cursor: last,
                        });
                    }
                    sessions.push(session);
                    last = Some(Cursor::new(score, member));
                }
            }
            if fetched < chunk {
                return Ok(Page {
                    sessions,
                    next_cursor: None,
                });
            }
        }
        // Scan bound reached: hand out a cursor so the caller continues from here.
        Ok(Page {
            sessions,
            next_cursor: scanned,
        })
    }
}
