//! Read-only views for operators (`authsession inspect`, `verify`, startup checks): raw records
//! as Redis holds them, with their TTLs, so a malformed or half-written state can be shown rather
//! than hidden behind a parse error. Nothing here writes.

use std::collections::HashMap;
use std::time::Duration;

use super::connection::Target;
use super::pool::Backend;
use super::sessions::session_from_fields;
use super::{Error, Redis, Store};
use crate::config::RedisMode;
use crate::domain::{ChallengeId, DeviceSessionId, Session, UserId};

/// A hash record as stored, and its key's `PTTL` (`-1` none, `-2` gone).
#[derive(Debug, Clone)]
pub struct Record {
    pub key: String,
    pub fields: HashMap<String, String>,
    pub ttl_ms: i64,
}

impl Record {
    /// The session this record holds; `None` when it is empty or malformed.
    pub fn session(&self) -> Option<Session> {
        session_from_fields(self.fields.clone())
    }
}

/// A session's gateway snapshot as stored (any bytes), and its `PTTL`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub key: String,
    pub raw: Option<String>,
    pub ttl_ms: i64,
}

/// One gateway stream entry.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub fields: HashMap<String, String>,
}

/// A user's session indexes.
#[derive(Debug, Clone)]
pub struct UserIndexes {
    /// Entries of the all-sessions index.
    pub indexed: u64,
    /// The active index, newest first.
    pub active: Vec<String>,
}

/// What startup needs to know about the server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub version: String,
    pub maxmemory_policy: Option<String>,
}

impl ServerInfo {
    /// From `INFO server memory`'s `name:value` lines.
    fn parse(info: &str) -> Self {
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        };
        Self {
            version: field("redis_version").unwrap_or_else(|| "unknown".to_owned()),
            maxmemory_policy: field("maxmemory_policy"),
        }
    }

    /// The major version; `0` when unreadable.
    pub fn major(&self) -> u32 {
        self.version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }
}

/// Where writes go, and who replicates them.
#[derive(Debug, Clone)]
pub struct Topology {
    pub mode: RedisMode,
    /// `host:port` of the primary that takes authsession's writes.
    pub primary: String,
    /// Replicas connected to that primary (`INFO replication`), when readable.
    pub connected_replicas: Option<u32>,
}

impl Redis {
    /// The current primary (asking the Sentinels in Sentinel mode; the owner of the namespace's
    /// slot in cluster mode) and its connected replicas.
    pub async fn topology(&self, limit: Duration) -> Result<Topology, Error> {
        let (mode, primary) = match &self.backend {
            Backend::Standalone { target, .. } => match &**target {
                Target::Fixed(_) => (RedisMode::Standalone, self.address().to_owned()),
                Target::Sentinel(sentinel) => (RedisMode::Sentinel, sentinel.primary().await?.1),
            },
            Backend::Cluster { .. } => {
                let nodes: String = self
                    .query_server(redis::cmd("CLUSTER").arg("NODES"), limit)
                    .await?;
                let primary = nodes
                    .lines()
                    .find(|l| {
                        l.split_whitespace()
                            .nth(2)
                            .is_some_and(|f| f.contains("myself"))
                    })
                    .and_then(|l| l.split_whitespace().nth(1))
                    .map(|addr| addr.split('@').next().unwrap_or(addr).to_owned())
                    .unwrap_or_default();
                (RedisMode::Cluster, primary)
            }
        };
        let info: Result<String, _> = self
            .query_server(redis::cmd("INFO").arg("replication"), limit)
            .await;
        let connected_replicas = info.ok().and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("connected_slaves:"))
                .and_then(|n| n.trim().parse().ok())
        });
        Ok(Topology {
            mode,
            primary,
            connected_replicas,
        })
    }

    /// `PING` within `limit` (connection setup included).
    pub async fn ping(&self, limit: Duration) -> Result<(), Error> {
        self.check::<()>(&redis::cmd("PING"), limit).await
    }

    /// `INFO server memory` of the server that owns the namespace.
    pub async fn server_info(&self, limit: Duration) -> Result<ServerInfo, Error> {
        let info: String = self
            .query_server(redis::cmd("INFO").arg("server").arg("memory"), limit)
            .await?;
        Ok(ServerInfo::parse(&info))
    }
}

impl Store {
    /// The Redis clock, in ms.
    pub async fn server_time_ms(&self) -> Result<i64, Error> {
        let (secs, micros): (i64, i64) = self.redis.query(&redis::cmd("TIME")).await?;
        Ok(secs * 1000 + micros / 1000)
    }

    async fn record(&self, key: String) -> Result<Record, Error> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL").arg(&key).cmd("PTTL").arg(&key);
        let (fields, ttl_ms) = self.redis.query_pipe(&pipe).await?;
        Ok(Record {
            key,
            fields,
            ttl_ms,
        })
    }

    pub async fn challenge_record(&self, id: &ChallengeId) -> Result<Record, Error> {
        self.record(self.keys.challenge(id)).await
    }

    /// `id` may be as stored (a challenge's or an index's member), not necessarily a valid id.
    pub async fn session_record(&self, id: &DeviceSessionId) -> Result<Record, Error> {
        self.record(self.keys.session(id)).await
    }

    pub async fn snapshot(&self, id: &DeviceSessionId) -> Result<Snapshot, Error> {
        let key = self.keys.gateway_session(id);
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&key).cmd("PTTL").arg(&key);
        let (raw, ttl_ms) = self.redis.query_pipe(&pipe).await?;
        Ok(Snapshot { key, raw, ttl_ms })
    }

    /// The newest `count` entries of the stream a session's events go to (its partition's),
    /// newest first, and that stream's name.
    pub async fn recent_events(
        &self,
        device_session_id: &str,
        count: usize,
    ) -> Result<(String, Vec<Event>), Error> {
        let stream = self.keys.stream(self.home_or_first(device_session_id));
        let entries: Vec<(String, HashMap<String, String>)> = self
            .redis
            .query(
                redis::cmd("XREVRANGE")
                    .arg(&stream)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(count),
            )
            .await?;
        let events = entries
            .into_iter()
            .map(|(id, fields)| Event { id, fields })
            .collect();
        Ok((stream, events))
    }

    pub async fn user_indexes(&self, user_id: &UserId) -> Result<UserIndexes, Error> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZCARD")
            .arg(self.keys.user_sessions(user_id))
            .cmd("ZRANGE")
            .arg(self.keys.user_active_sessions(user_id))
            .arg(0)
            .arg(-1)
            .arg("REV");
        let (indexed, active) = self.redis.query_pipe(&pipe).await?;
        Ok(UserIndexes { indexed, active })
    }

    /// Each gateway stream (one per partition) with its Redis type (`stream`, or `none` before
    /// the first event).
    pub async fn stream_types(&self) -> Result<Vec<(String, String)>, Error> {
        let mut types = Vec::new();
        for stream in self.keys.streams() {
            let kind = self.redis.query(redis::cmd("TYPE").arg(&stream)).await?;
            types.push((stream, kind));
        }
        Ok(types)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_info_reads_version_and_policy() {
        let info = ServerInfo::parse(
            "# Server\r\nredis_version:7.2.4\r\nredis_mode:standalone\r\n# Memory\r\nmaxmemory_policy:noeviction\r\n",
        );
        assert_eq!((info.version.as_str(), info.major()), ("7.2.4", 7));
        assert_eq!(info.maxmemory_policy.as_deref(), Some("noeviction"));
        assert_eq!(ServerInfo::parse("").major(), 0);
    }
}
