//! The invariant checker: walks everything an authsession namespace holds in Redis and lists
//! every partial or inconsistent state it finds. Empty means consistent.

use std::collections::{HashMap, HashSet};

use authsession::config::Config;
use redis::aio::{ConnectionLike, MultiplexedConnection};

/// Every key matching `pattern` (SCAN, never KEYS) on one server.
pub async fn scan(conn: &mut MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// Every key matching `pattern` on every primary among `nodes` (a replica lists its primary's
/// keys again, possibly older ones).
async fn scan_all(nodes: &mut [MultiplexedConnection], pattern: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for node in nodes {
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(node).await.unwrap();
        let primary = matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master");
        if primary {
            keys.extend(scan(node, pattern).await);
        }
    }
    keys
}

async fn hash(conn: &mut impl ConnectionLike, key: &str) -> HashMap<String, String> {
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

/// Every violation of:
/// - a confirmed challenge points at an existing session created from it;
/// - no challenge produced two sessions;
/// - every session has a snapshot with its version and status;
/// - every active session is in both user indexes, no revoked one in the active index, every
///   revoked one in the revoked index; a user with an active session has indexes without TTL;
/// - no active session of a user was created after the user's block (the blocked marker);
/// - every session's current version has its stream event (revokes included), in the stream of
///   the session's partition;
/// - (partitioned) a session lives in its user's partition, a challenge in its address's.
///
/// One server (standalone, or the primary holding a single-tag namespace).
pub async fn check(conn: &mut MultiplexedConnection, config: &Config) -> Vec<String> {
    check_nodes(&mut conn.clone(), &mut [conn.clone()], config).await
}

/// A namespace on a cluster (the partitioned layout spreads it over every primary): keys are
/// listed on every primary and read through a fresh cluster connection (a held one may still
/// name a node that died).
pub async fn check_cluster(cluster: &crate::RedisCluster, config: &Config) -> Vec<String> {
    let mut nodes = Vec::new();
    for node in &cluster.nodes {
        nodes.push(node.connection().await);
    }
    let mut redis = config.redis.clone();
    redis.command_timeout = std::time::Duration::from_secs(10);
    let mut reader = authsession::store::Redis::new(&redis)
        .expect("a valid Redis config")
        .dedicated()
        .await
        .expect("a cluster connection");
    check_nodes(&mut reader, &mut nodes, config).await
}

/// Keys are listed on every primary in `nodes` and read through `reader`, which routes each key
/// to its node.
async fn check_nodes(
    reader: &mut (impl ConnectionLike + Clone),
    nodes: &mut [MultiplexedConnection],
    config: &Config,
) -> Vec<String> {
    let conn = reader;
    let prefix = &config.redis.key_prefix;
    let gateway = &config.gateway.session_key_prefix;
    let keys = authsession::store::Keys::new(&config.redis, &config.gateway);
    let mut violations = Vec::new();

    let mut published: HashSet<(String, String, String, String)> = HashSet::new();
    for stream in keys.streams() {
        let events: Vec<(String, HashMap<String, String>)> = match redis::cmd("XRANGE")
            .arg(&stream)
            .arg("-")
            .arg("+")
            .query_async(conn)
            .await
        {
            Ok(events) => events,
            // A key of another type is a violation of its own; a read failure says so too.
            Err(e) => {
                violations.push(format!("XRANGE {stream}: {e}"));
                Vec::new()
            }
        };
        published.extend(events.iter().map(|(_, f)| {
            let get = |k: &str| f.get(k).cloned().unwrap_or_default();
            (
                stream.clone(),
                get("device_session_id"),
                get("version"),
                get("status"),
            )
        }));
    }

    let mut by_challenge: HashMap<String, Vec<String>> = HashMap::new();
    for key in scan_all(nodes, &format!("{prefix}session:*")).await {
        let id = key
            .trim_start_matches(&format!("{prefix}session:"))
            .to_owned();
        let s = hash(conn, &key).await;
        let (status, version, user) = (
            s["status"].clone(),
            s["version"].clone(),
            s["user_id"].clone(),
        );
        if let Some(challenge) = s.get("challenge_id") {
            by_challenge
                .entry(challenge.clone())
                .or_default()
                .push(id.clone());
        }
        let snapshot: Option<String> = redis::cmd("GET")
            .arg(format!("{gateway}{id}"))
            .query_async(conn)
            .await
            .unwrap();
        match snapshot.and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok()) {
            None => violations.push(format!("session {id} has no snapshot")),
            Some(view) => {
                let same_version = view["version"]
                    .as_u64()
                    .is_some_and(|v| v.to_string() == version);
                if !same_version || view["status"] != status.as_str() {
                    violations.push(format!(
                        "session {id} is {status} v{version}, snapshot {} v{}",
                        view["status"], view["version"]
                    ));
                }
            }
        }
        let home = keys.layout().of_id(&id);
        if home.is_none() || home != Some(keys.layout().of_user(&user)) {
            violations.push(format!(
                "session {id} is not in its user {user}'s partition"
            ));
        }
        let stream = keys.stream(home.unwrap_or(keys.layout().all()[0]));
        let in_index = |conn: &mut _, index: String| {
            let id = id.clone();
            let mut conn = Clone::clone(conn);
            async move {
                redis::cmd("ZSCORE")
                    .arg(index)
                    .arg(id)
                    .query_async::<Option<f64>>(&mut conn)
                    .await
                    .unwrap()
                    .is_some()
            }
        };
        let Ok(user_id) = authsession::domain::UserId::parse(&user) else {
            violations.push(format!("session {id} has a malformed user id"));
            continue;
        };
        let in_all = in_index(conn, keys.user_sessions(&user_id)).await;
        let in_active = in_index(conn, keys.user_active_sessions(&user_id)).await;
        let in_revoked = in_index(conn, keys.user_revoked_sessions(&user_id)).await;
        match status.as_str() {
            "active" if !(in_all && in_active) => {
                violations.push(format!("active session {id} missing from an index"))
            }
            "active" => {
                let blocked_at: Option<i64> = redis::cmd("GET")
                    .arg(keys.user_blocked(&user_id))
                    .query_async(conn)
                    .await
                    .unwrap();
                let created: i64 = s["created_at_ms"].parse().unwrap_or(0);
                if blocked_at.is_some_and(|at| created >= at) {
                    violations.push(format!(
                        "active session {id} was created after its user {user} was blocked"
                    ));
                }
                let ttl: i64 = redis::cmd("PTTL")
                    .arg(keys.user_sessions(&user_id))
                    .query_async(conn)
                    .await
                    .unwrap();
                if ttl != -1 {
                    violations.push(format!(
                        "user {user} has active session {id} but an expiring index"
                    ));
                }
            }
            "revoked" if in_active => {
                violations.push(format!("revoked session {id} still in the active index"))
            }
            "revoked" if !in_revoked => violations.push(format!(
                "revoked session {id} missing from the revoked index"
            )),
            "revoked" => {}
            other => violations.push(format!("session {id} has status {other:?}")),
        }
        if !published.contains(&(stream.clone(), id.clone(), version.clone(), status.clone())) {
            violations.push(format!(
                "session {id} v{version} {status} has no event in {stream}"
            ));
        }
    }
    for (challenge, sessions) in &by_challenge {
        if sessions.len() > 1 {
            violations.push(format!(
                "challenge {challenge} produced {} sessions",
                sessions.len()
            ));
        }
    }

    for key in scan_all(nodes, &format!("{prefix}challenge:*")).await {
        let c = hash(conn, &key).await;
        let challenge = key.trim_start_matches(&format!("{prefix}challenge:"));
        if let Some(address) = c.get("email_hash") {
            if keys.layout().of_id(challenge) != Some(keys.layout().of_address(address)) {
                violations.push(format!(
                    "challenge {challenge} is not in its address's partition"
                ));
            }
        }
        if c.get("status").map(String::as_str) != Some("confirmed_pending_expire") {
            continue;
        }
        let session = c.get("device_session_id").cloned().unwrap_or_default();
        let record = hash(conn, &format!("{prefix}session:{session}")).await;
        if record.is_empty() {
            violations.push(format!(
                "confirmed challenge {challenge} points at missing session {session}"
            ));
        } else if record.get("challenge_id").map(String::as_str) != Some(challenge) {
            violations.push(format!(
                "session {session} does not name challenge {challenge}"
            ));
        }
    }
    violations
}
