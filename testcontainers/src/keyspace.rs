//! Byte-exact pictures of a Redis keyspace (`DUMP` of every key plus whether it has a TTL), to
//! prove that a failed script wrote nothing and that a replay changed nothing.

use std::collections::BTreeMap;

use redis::aio::ConnectionLike;

/// Every key of one Redis node: its `DUMP` serialization and its `PTTL` (-1: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyspace(pub BTreeMap<String, (Vec<u8>, i64)>);

impl Keyspace {
    pub async fn capture(conn: &mut (impl ConnectionLike + Send)) -> Self {
        Self::capture_with(conn, false).await
    }

    /// The keyspace of a cluster node that is importing a slot: each read sent after `ASKING`,
    /// which the node requires for keys of a slot it does not own yet.
    pub async fn capture_importing(conn: &mut (impl ConnectionLike + Send)) -> Self {
        Self::capture_with(conn, true).await
    }

    async fn capture_with(conn: &mut (impl ConnectionLike + Send), asking: bool) -> Self {
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(conn).await.unwrap();
        let mut all = BTreeMap::new();
        for key in keys {
            let mut pipe = redis::pipe();
            for command in ["DUMP", "PTTL"] {
                if asking {
                    pipe.cmd("ASKING").ignore();
                }
                pipe.cmd(command).arg(&key);
            }
            let (dump, ttl): (Option<Vec<u8>>, i64) = pipe.query_async(conn).await.unwrap();
            if let Some(dump) = dump {
                all.insert(key, (dump, ttl));
            }
        }
        Self(all)
    }

    /// Replaces the node's keyspace with this one (TTLs as captured).
    pub async fn restore(&self, conn: &mut (impl ConnectionLike + Send)) {
        let () = redis::cmd("FLUSHALL").query_async(conn).await.unwrap();
        for (key, (dump, ttl)) in &self.0 {
            let () = redis::cmd("RESTORE")
                .arg(key)
                .arg((*ttl).max(0))
                .arg(dump)
                .arg("REPLACE")
                .query_async(conn)
                .await
                .unwrap();
        }
    }

    /// Keys whose content differs, or that gained or lost a TTL (TTL values tick, so only their
    /// presence is compared).
    pub fn differences(&self, other: &Keyspace) -> Vec<String> {
        let mut keys: Vec<&String> = self.0.keys().chain(other.0.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter(|k| match (self.0.get(*k), other.0.get(*k)) {
                (Some((a, ta)), Some((b, tb))) => a != b || (*ta < 0) != (*tb < 0),
                _ => true,
            })
            .cloned()
            .collect()
    }
}
