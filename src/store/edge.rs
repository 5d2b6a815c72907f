//! The gateways' replay store: a proof's nonce (or DPoP `jti`) is accepted once by every gateway
//! sharing the Redis, for as long as any of them could find the proof fresh. One `SET NX PX` per
//! verified request, on `P edge_proof:<device_session_id>:<digest>` (in the session's slot and
//! partition). The key expires on its own; nothing else reads it. A single command, not a
//! script: it is atomic as it stands and touches one key its caller names.

use std::time::Duration;

use redis::aio::ConnectionLike;

/// Marks `key` (from [`super::Keys::edge_proof`]) seen for `remember`; `false` when it was seen
/// already (a replay).
pub async fn claim_once(
    conn: &mut impl ConnectionLike,
    key: &str,
    remember: Duration,
) -> redis::RedisResult<bool> {
    let set: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg(1)
        .arg("NX")
        .arg("PX")
        .arg(remember.as_millis().max(1) as u64)
        .query_async(conn)
        .await?;
    Ok(set.is_some())
}
