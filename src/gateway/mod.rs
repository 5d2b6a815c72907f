//! The reference gateway consumer: the executable form of the gateway contract. It follows the
//! session event streams (`S`; in the partitioned layout `S{t}` for every partition tag `t`, one
//! blocking `XREAD` loop per stream resuming from its last entry id: Redis Cluster refuses an
//! `XREAD` over several slots, even on one shard), keeps a cache of session snapshots, and
//! answers "is this session active, and with which key?",
//! falling back to the snapshot key (`G<device_session_id>`) for a session it has not seen an
//! event of. It reads both event formats: a snapshot event carries the snapshot; a compact one
//! (id, version, status) updates a cached session and is skipped for any other, whose snapshot
//! key answers when asked. Nothing here writes to Redis, and nothing depends on the service's internals: a
//! gateway team can read this module as the contract in code.
//!
//! What it guarantees after a gap: before each read it compares its position with the stream's
//! (`XINFO STREAM`). When the entry it read last was trimmed away (the stream's first entry is
//! beyond it: it was paused, or slow, past `MAXLEN`), an entry after it was deleted, or the
//! stream is behind its position (a failover lost entries it had read), events may be missing: it empties its cache, so every
//! answer comes from the snapshot keys until events fill it again (and resumes from the
//! stream's newest entry when the stream went backwards). Independently, no cached answer is
//! older than `max_age` (then the snapshot key is read again), and the cache holds at most
//! `capacity` sessions (the oldest cached first out).

mod bounded;
pub mod edge;

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use bounded::Bounded;
use redis::aio::ConnectionLike;
use serde::Deserialize;

/// Entries read per `XREAD` call.
const BATCH: usize = 500;
/// Default cache bounds: sessions held, and the age past which a cached answer is read again.
pub const DEFAULT_CAPACITY: usize = 100_000;
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);

/// The contract's names: the snapshot key prefix `G` and the streams (`S`, or one per partition).
#[derive(Debug, Clone)]
pub struct GatewayNames {
    pub snapshot_prefix: String,
    pub streams: Vec<String>,
}

/// The snapshot JSON a gateway authenticates with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Snapshot {
    pub device_session_id: String,
    pub user_id: String,
    pub status: String,
    pub client_public_key: String,
    pub version: u64,
}

impl Snapshot {
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

/// The gateway's answer for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Active: requests signed with this key are the session's.
    Active { client_public_key: String },
    /// Revoked, or unknown (never existed, or its retention ended): refuse.
    Refused,
}

/// What `follow` applied in one step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Entries read.
    pub entries: usize,
    /// Entries that changed the cache (a newer version of a session).
    pub updated: Vec<Snapshot>,
    /// The stream id to resume from.
    pub last_id: String,
    /// Events may have been missed (a trimmed or rewound stream): the cache was emptied.
    pub resynced: bool,
}

/// The consumer's state: a snapshot cache keyed by device session id. Versions only move
/// forward, so replays, duplicates and out-of-order reads cannot undo a revoke.
#[derive(Debug)]
pub struct GatewayConsumer {
    names: GatewayNames,
    cache: RwLock<Cache>,
    max_age: Duration,
}

/// Snapshots with when each was cached, the first cached first out.
type Cache = Bounded<(Snapshot, Instant)>;

/// A stream id, for ordering (`ms-seq`).
fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// One stream entry's fields as `XREAD` returns them.
type Entry = (String, Vec<(String, String)>);

impl GatewayConsumer {
    pub fn new(names: GatewayNames) -> Self {
        Self::with_limits(names, DEFAULT_CAPACITY, DEFAULT_MAX_AGE)
    }

    /// A consumer caching at most `capacity` sessions, none for longer than `max_age`.
    pub fn with_limits(names: GatewayNames, capacity: usize, max_age: Duration) -> Self {
        Self {
            names,
            cache: RwLock::new(Bounded::new(capacity)),
            max_age,
        }
    }

    /// Sessions cached now.
    pub fn cached_count(&self) -> usize {
        self.cache.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Empties the cache: answers come from the snapshot keys until events fill it again.
    pub fn resync(&self) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.clear();
    }

    /// Whether events of `stream` after `last_id` may have been missed, and where to read from:
    /// entries after it were trimmed (resume where we are: what is left is newer), or the stream
    /// is behind it (a failover lost entries: resume from its newest entry).
    async fn gap(
        &self,
        conn: &mut impl ConnectionLike,
        stream: &str,
        last_id: &str,
    ) -> redis::RedisResult<Option<String>> {
        let Some(position) = stream_id(last_id).filter(|p| *p != (0, 0)) else {
            return Ok(None);
        };
        let info: redis::Value = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(stream)
            .query_async(conn)
            .await
            .or_else(|e| {
                // No stream (yet, or any more): nothing to compare with.
                if e.to_string().contains("no such key") {
                    Ok(redis::Value::Nil)
                } else {
                    Err(e)
                }
            })?;
        let fields: HashMap<String, redis::Value> =
            redis::FromRedisValue::from_redis_value(info).unwrap_or_default();
        let text = |name: &str| match fields.get(name) {
            Some(redis::Value::BulkString(bytes)) => String::from_utf8(bytes.clone()).ok(),
            Some(redis::Value::SimpleString(text)) => Some(text.clone()),
            _ => None,
        };
        let newest = text("last-generated-id");
        if let Some(newest) = newest.filter(|n| stream_id(n).is_some_and(|n| n < position)) {
            return Ok(Some(newest));
        }
        // Trimming removes the oldest entries: once the entry we read last is gone, entries
        // after it may have gone too (resynchronising when none did costs only cache misses).
        // An entry deleted after our position (`XDEL`) is a gap as well.
        let first = text("recorded-first-entry-id").and_then(|id| stream_id(&id));
        let deleted = text("max-deleted-entry-id").and_then(|id| stream_id(&id));
        if first.is_some_and(|first| first > position && first != (0, 0))
            || deleted.is_some_and(|deleted| deleted > position)
        {
            return Ok(Some(last_id.to_owned()));
        }
        Ok(None)
    }

    pub fn names(&self) -> &GatewayNames {
        &self.names
    }

    /// Applies one snapshot if it is newer than what the cache holds; returns whether it was.
    pub fn apply(&self, snapshot: Snapshot) -> bool {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        let id = snapshot.device_session_id.clone();
        match cache.get_mut(&id) {
            Some((held, at)) if held.version >= snapshot.version => {
                // The same version read again (an aged-out answer checked at its key) is fresh
                // again; an older one changes nothing.
                if held.version == snapshot.version {
                    *at = Instant::now();
                }
                false
            }
            _ => {
                cache.insert(id, (snapshot, Instant::now()));
                true
            }
        }
    }

    /// The cached snapshot of a session, if any and younger than the cache's `max_age`.
    pub fn cached(&self, device_session_id: &str) -> Option<Snapshot> {
        self.cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(device_session_id)
            .filter(|(_, at)| at.elapsed() < self.max_age)
            .map(|(snapshot, _)| snapshot.clone())
    }

    /// The id to follow `stream` from for "new events only": its newest entry now (`0-0` when
    /// it is empty). Unlike `$`, it can be resumed from without a gap between two reads.
    pub async fn newest_id(
        &self,
        conn: &mut impl ConnectionLike,
        stream: &str,
    ) -> redis::RedisResult<String> {
        let newest: Vec<Entry> = redis::cmd("XREVRANGE")
            .arg(stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await?;
        Ok(newest
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_owned(), |(id, _)| id))
    }

    /// One `XREAD` of `stream` from `last_id` (blocking up to `block_ms`, 0: do not block):
    /// applies what it read and says where to resume. Entries whose snapshot does not parse are
    /// skipped (a gateway must not stop on one bad entry) and counted in `entries` nonetheless.
    pub async fn step(
        &self,
        conn: &mut impl ConnectionLike,
        stream: &str,
        last_id: &str,
        block_ms: u64,
    ) -> redis::RedisResult<Applied> {
        let mut applied = Applied {
            last_id: last_id.to_owned(),
            ..Applied::default()
        };
        if let Some(resume) = self.gap(conn, stream, last_id).await? {
            tracing::warn!(%stream, %last_id, %resume, "events may have been missed: answering from the snapshot keys");
            self.resync();
            applied.resynced = true;
            applied.last_id = resume;
        }
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(BATCH);
        if block_ms > 0 {
            cmd.arg("BLOCK").arg(block_ms);
        }
        cmd.arg("STREAMS").arg(stream).arg(&applied.last_id);
        let reply: Option<Vec<(String, Vec<Entry>)>> = cmd.query_async(conn).await?;
        for (_, entries) in reply.unwrap_or_default() {
            for (id, fields) in entries {
                applied.entries += 1;
                applied.last_id = id;
                if let Some(snapshot) = self.snapshot_of(&fields) {
                    if self.apply(snapshot.clone()) {
                        applied.updated.push(snapshot);
                    }
                }
            }
        }
        Ok(applied)
    }

    /// The snapshot an entry tells of. A snapshot event carries it whole. A compact event
    /// (`AUTHSESSION_GATEWAY_EVENT_FORMAT=compact`: id, version and status only) tells the new
    /// status of a session: a cached one takes it (its user and key never change); one not
    /// cached needs nothing now, its snapshot key answers when a request asks for it.
    fn snapshot_of(&self, fields: &[(String, String)]) -> Option<Snapshot> {
        let field = |wanted: &str| {
            fields
                .iter()
                .find(|(name, _)| name == wanted)
                .map(|(_, value)| value.as_str())
        };
        if let Some(json) = field("snapshot") {
            return serde_json::from_str(json).ok();
        }
        let (id, status) = (field("device_session_id")?, field("status")?);
        let version = field("version")?.parse().ok()?;
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let (held, _) = cache.get(id)?;
        Some(Snapshot {
            status: status.to_owned(),
            version,
            ..held.clone()
        })
    }

    /// A session's snapshot: from the cache, else from its snapshot key (then cached); `None`
    /// when there is no such session.
    pub async fn session(
        &self,
        conn: &mut impl ConnectionLike,
        device_session_id: &str,
    ) -> redis::RedisResult<Option<Snapshot>> {
        if let Some(snapshot) = self.cached(device_session_id) {
            return Ok(Some(snapshot));
        }
        let key = format!("{}{device_session_id}", self.names.snapshot_prefix);
        let raw: Option<String> = redis::cmd("GET").arg(key).query_async(conn).await?;
        let parsed = raw.and_then(|json| serde_json::from_str::<Snapshot>(&json).ok());
        if let Some(snapshot) = &parsed {
            self.apply(snapshot.clone());
        }
        Ok(parsed)
    }

    /// The verdict for a session: from the cache, else from its snapshot key (then cached).
    pub async fn verdict(
        &self,
        conn: &mut impl ConnectionLike,
        device_session_id: &str,
    ) -> redis::RedisResult<Verdict> {
        Ok(match self.session(conn, device_session_id).await? {
            Some(s) if s.is_active() => Verdict::Active {
                client_public_key: s.client_public_key,
            },
            _ => Verdict::Refused,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(version: u64, status: &str) -> Snapshot {
        Snapshot {
            device_session_id: "d1".into(),
            user_id: "u1".into(),
            status: status.into(),
            client_public_key: "k".into(),
            version,
        }
    }

    #[test]
    fn versions_only_move_forward() {
        let consumer = GatewayConsumer::new(GatewayNames {
            snapshot_prefix: "g:".into(),
            streams: vec!["s".into()],
        });
        assert!(consumer.apply(snapshot(1, "active")));
        assert!(consumer.apply(snapshot(2, "revoked")));
        assert!(
            !consumer.apply(snapshot(1, "active")),
            "a replayed older event"
        );
        assert!(!consumer.apply(snapshot(2, "revoked")), "a duplicate");
        assert_eq!(consumer.cached("d1").unwrap().status, "revoked");
    }

    #[test]
    fn stream_ids_order_by_time_then_sequence() {
        assert!(stream_id("5-1") > stream_id("5-0"));
        assert!(stream_id("6-0") > stream_id("5-9"));
        assert_eq!(stream_id("7"), Some((7, 0)));
        assert_eq!(stream_id("x-1"), None);
    }
}
