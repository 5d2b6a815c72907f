//! The reference gateway consumer: the executable form of the gateway contract. It follows the
//! session event streams (`S`; in the partitioned layout `S{t}` for every partition tag `t`, one
//! blocking `XREAD` loop per stream resuming from its last entry id: Redis Cluster refuses an
//! `XREAD` over several slots, even on one shard), keeps a cache of session snapshots, and
//! answers "is this session active, and with which key?",
//! falling back to the snapshot key (`G<device_session_id>`) for a session it has not seen an
//! event of. Nothing here writes to Redis, and nothing depends on the service's internals: a
//! gateway team can read this module as the contract in code.

use std::collections::HashMap;
use std::sync::RwLock;

use redis::aio::ConnectionLike;
use serde::Deserialize;

/// Entries read per `XREAD` call.
const BATCH: usize = 500;

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
}

/// The consumer's state: a snapshot cache keyed by device session id. Versions only move
/// forward, so replays, duplicates and out-of-order reads cannot undo a revoke.
#[derive(Debug)]
pub struct GatewayConsumer {
    names: GatewayNames,
    cache: RwLock<HashMap<String, Snapshot>>,
}

/// One stream entry's fields as `XREAD` returns them.
type Entry = (String, Vec<(String, String)>);

impl GatewayConsumer {
    pub fn new(names: GatewayNames) -> Self {
        Self {
            names,
            cache: RwLock::default(),
        }
    }

    pub fn names(&self) -> &GatewayNames {
        &self.names
    }

    /// Applies one snapshot if it is newer than what the cache holds; returns whether it was.
    pub fn apply(&self, snapshot: Snapshot) -> bool {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        match cache.get(&snapshot.device_session_id) {
            Some(held) if held.version >= snapshot.version => false,
            _ => {
                cache.insert(snapshot.device_session_id.clone(), snapshot);
                true
            }
        }
    }

    /// The cached snapshot of a session, if any.
    pub fn cached(&self, device_session_id: &str) -> Option<Snapshot> {
        self.cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(device_session_id)
            .cloned()
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
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(BATCH);
        if block_ms > 0 {
            cmd.arg("BLOCK").arg(block_ms);
        }
        cmd.arg("STREAMS").arg(stream).arg(last_id);
        let reply: Option<Vec<(String, Vec<Entry>)>> = cmd.query_async(conn).await?;
        let mut applied = Applied {
            last_id: last_id.to_owned(),
            ..Applied::default()
        };
        for (_, entries) in reply.unwrap_or_default() {
            for (id, fields) in entries {
                applied.entries += 1;
                applied.last_id = id;
                let snapshot = fields
                    .iter()
                    .find(|(name, _)| name == "snapshot")
                    .and_then(|(_, json)| serde_json::from_str::<Snapshot>(json).ok());
                if let Some(snapshot) = snapshot {
                    if self.apply(snapshot.clone()) {
                        applied.updated.push(snapshot);
                    }
                }
            }
        }
        Ok(applied)
    }

    /// The verdict for a session: from the cache, else from its snapshot key (then cached).
    pub async fn verdict(
        &self,
        conn: &mut impl ConnectionLike,
        device_session_id: &str,
    ) -> redis::RedisResult<Verdict> {
        let snapshot = match self.cached(device_session_id) {
            Some(snapshot) => Some(snapshot),
            None => {
                let key = format!("{}{device_session_id}", self.names.snapshot_prefix);
                let raw: Option<String> = redis::cmd("GET").arg(key).query_async(conn).await?;
                let parsed = raw.and_then(|json| serde_json::from_str::<Snapshot>(&json).ok());
                if let Some(snapshot) = &parsed {
                    self.apply(snapshot.clone());
                }
                parsed
            }
        };
        Ok(match snapshot {
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
}
