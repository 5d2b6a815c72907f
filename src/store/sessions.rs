//! Sessions: revoke, revoke-all in batches and republish (over the typed scripts of
//! [`super::scripts`]), and the read paths (get, list).

use std::collections::HashMap;
use std::time::Duration;

pub use super::scripts::session_projection_republish::Republished;
use super::scripts::session_projection_republish::SessionProjectionRepublish;
use super::scripts::session_revoke::{SessionRevoke, SessionRevokeReply};
pub use super::scripts::user_sessions_revoke::REVOKE_BATCH;
use super::scripts::user_sessions_revoke::{Batch, UserSessionsRevoke};
use super::scripts::Call;
use super::{Error, Store};
use crate::domain::{
    ActorId, ChallengeId, Code, Cursor, DeviceSessionId, Page, RequestId, Revocation,
    RevokeOutcome, Session, SessionStatus, UserId,
};
use crate::store::layout::Partition;

/// Batches a revoke-all may run beyond those its first reply accounts for (sessions created by
/// logins racing it).
const REVOKE_EXTRA_BATCHES: u64 = 4;
/// Most index entries one listing request examines, whatever the filter.
const LIST_SCAN_LIMIT: usize = 5000;

/// A session record from its hash's fields; `None` when a required field is missing or
/// malformed.
pub(in crate::store) fn session_from_fields(mut f: HashMap<String, String>) -> Option<Session> {
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    // An optional field: absent or empty is `None`, present must parse.
    fn optional<T, E>(
        v: Option<String>,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Option<Option<T>> {
        match v.filter(|s| !s.is_empty()) {
            None => Some(None),
            Some(raw) => parse(&raw).ok().map(Some),
        }
    }
    Some(Session {
        device_session_id: DeviceSessionId::parse(&f.remove("device_session_id")?).ok()?,
        user_id: UserId::parse(&f.remove("user_id")?).ok()?,
        status: SessionStatus::parse(&f.remove("status")?).ok()?,
        client_public_key: f.remove("client_public_key")?,
        created_at_ms: f.remove("created_at_ms")?.parse().ok()?,
        revoked_at_ms: non_empty(f.remove("revoked_at_ms")).and_then(|v| v.parse().ok()),
        revoke_reason_code: optional(f.remove("revoke_reason_code"), Code::parse)?,
        revoke_actor_type: optional(f.remove("revoke_actor_type"), Code::parse)?,
        revoke_actor_id: optional(f.remove("revoke_actor_id"), ActorId::parse)?,
        version: f.remove("version")?.parse().ok()?,
        challenge_id: optional(f.remove("challenge_id"), ChallengeId::parse)?,
    })
}

impl Store {
    /// The partition a session id names; `None`: not an id of this deployment, so no such session.
    pub(super) fn home(&self, id: &str) -> Option<Partition> {
        self.keys.layout().of_id(id)
    }

    /// For call builders, which the typed methods only reach with an id of this deployment.
    pub(super) fn home_or_first(&self, id: &str) -> Partition {
        self.home(id).unwrap_or_else(|| self.keys.layout().all()[0])
    }

    pub async fn session_get(&self, id: &DeviceSessionId) -> Result<Option<Session>, Error> {
        if self.home(id.as_str()).is_none() {
            return Ok(None);
        }
        let fields: HashMap<String, String> = self
            .redis
            .query(redis::cmd("HGETALL").arg(self.keys.session(id)))
            .await?;
        Ok(if fields.is_empty() {
            None
        } else {
            session_from_fields(fields)
        })
    }

    pub async fn session_revoke(
        &self,
        device_session_id: &DeviceSessionId,
        revocation: &Revocation,
    ) -> Result<Option<(RevokeOutcome, Session)>, Error> {
        if self.home(device_session_id.as_str()).is_none() {
            return Ok(None);
        }
        // Plan, then commit: the first call learns the record's user, the second declares its
        // indexes.
        let mut revoke = SessionRevoke {
            device_session_id,
            revocation,
            request_id: &RequestId::generate(),
            user: None,
        };
        Ok(match self.run_planned(&mut revoke).await? {
            SessionRevokeReply::Done(outcome, session) => Some((outcome, *session)),
            SessionRevokeReply::NotFound => None,
        })
    }

    /// Revokes every active session of a user in batches of [`REVOKE_BATCH`]; returns how many.
    /// With `block_marker`, the first batch first marks the user blocked for that long.
    pub async fn user_sessions_revoke(
        &self,
        user_id: &UserId,
        revocation: &Revocation,
        block_marker: Option<Duration>,
    ) -> Result<u64, Error> {
        let request_id = RequestId::generate();
        let mut revoked = 0u64;
        // Every batch removes each id it looks at from the active index, so the first reply's
        // count bounds the batches left; logins racing the revoke may add a few more. A loop past
        // that bound (an index that does not shrink) ends in an error, not forever.
        let mut last_batch: Option<u64> = None;
        // Plan, then commit: each batch declares the sessions the previous reply named next (the
        // first, none); a batch that meets others answers `need` with them, writing nothing.
        let mut batch = UserSessionsRevoke {
            user_id,
            revocation,
            request_id: &request_id,
            batch_number: 1,
            block_marker,
            planned: Vec::new(),
        };
        loop {
            if last_batch.is_some_and(|last| u64::from(batch.batch_number) > last) {
                return Err(Error::Unfinished {
                    script: UserSessionsRevoke::script().name,
                    calls: batch.batch_number - 1,
                });
            }
            let Batch {
                revoked: count,
                remaining,
                next,
            } = self.run_planned(&mut batch).await?;
            revoked += count;
            if remaining == 0 {
                break;
            }
            batch.planned = next;
            last_batch.get_or_insert(
                1 + remaining.div_ceil(u64::from(REVOKE_BATCH)) + REVOKE_EXTRA_BATCHES,
            );
            batch.batch_number += 1;
        }
        Ok(revoked)
    }

    pub async fn session_projection_republish(
        &self,
        device_session_id: &DeviceSessionId,
    ) -> Result<Republished, Error> {
        if self.home(device_session_id.as_str()).is_none() {
            return Ok(Republished::NotFound);
        }
        self.run(&SessionProjectionRepublish {
            device_session_id,
            request_id: &RequestId::generate(),
        })
        .await
    }

    /// A page of a user's sessions, newest first. Index entries whose record has expired are
    /// skipped (the confirm script prunes them lazily).
    /// Up to `count` entries of a user index from score `max` down, skipping `offset`.
    async fn index_page(
        &self,
        index: &str,
        max: &str,
        offset: usize,
        count: usize,
    ) -> Result<Vec<(String, i64)>, Error> {
        self.redis
            .query(
                redis::cmd("ZRANGE")
                    .arg(index)
                    .arg(max)
                    .arg("-inf")
                    .arg("BYSCORE")
                    .arg("REV")
                    .arg("LIMIT")
                    .arg(offset)
                    .arg(count)
                    .arg("WITHSCORES"),
            )
            .await
    }

    pub async fn sessions_list(
        &self,
        user_id: &UserId,
        filter: Option<SessionStatus>,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<Page, Error> {
        let index = match filter {
            Some(SessionStatus::Active) => self.keys.user_active_sessions(user_id),
            _ => self.keys.user_sessions(user_id),
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
            let entries = self.index_page(&index, &max, offset, chunk).await?;
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
                    pipe.cmd("HGETALL")
                        .arg(self.keys.session(&DeviceSessionId::from_stored(member)));
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
