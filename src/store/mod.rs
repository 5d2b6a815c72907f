//! Redis: the connection pool, key names, the Lua script engine and typed script wrappers.

pub mod challenges;
pub mod config_provider;
mod connection;
mod engine;
pub mod keys;
pub mod operator;
pub mod partitions;
pub mod pool;
pub mod scripts;
pub mod sessions;

use std::time::Duration;

pub use keys::Keys;
pub use pool::{Dedicated, Redis};

/// A Redis failure. Every variant answers `503 service_unavailable`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis command timed out after {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("script {script} v{version} is not cached in Redis and script loading is `preloaded`")]
    NotPreloaded { script: &'static str, version: u32 },
    /// The write happened on the primary but fewer replicas than required acknowledged it in
    /// time: it may not survive a failover, so it is not reported as done (a retry is safe).
    #[error("{acked} of {wanted} required replicas acknowledged the write within {timeout:?}")]
    ReplicaAcks {
        wanted: u32,
        acked: u32,
        timeout: Duration,
    },
    /// A confirm's verdict is older than the blocked marker lives (the request stalled between
    /// verify and the session step): nothing was written; the client's retry verifies again.
    #[error("the confirm's verdict is older than the blocked marker lives")]
    StaleVerdict,
    /// The ACL user may not access a key of a namespace the service writes.
    #[error("no permission for the ACL user to access {key}: grant its namespace's key pattern")]
    KeyPermission { key: String },
    /// A script that works in bounded steps still had work left after this many calls.
    #[error("script {script} still had work left after {calls} calls")]
    Unfinished { script: &'static str, calls: u32 },
    #[error("unexpected reply from script {script}: {detail}")]
    Reply {
        script: &'static str,
        detail: String,
    },
}

use crate::config::{GatewayConfig, Policy, RedisConfig};
use scripts::Scripts;

/// The source of truth and the gateway projection, behind typed script wrappers.
#[derive(Clone)]
pub struct Store {
    pub redis: Redis,
    pub keys: Keys,
    scripts: &'static Scripts,
    stream_maxlen: u64,
    policy: Policy,
}

impl Store {
    pub fn new(
        redis: Redis,
        redis_config: &RedisConfig,
        gateway: &GatewayConfig,
        policy: &Policy,
    ) -> Self {
        Self {
            redis,
            keys: Keys::new(redis_config, gateway),
            scripts: scripts::scripts(),
            stream_maxlen: stream_maxlen(gateway.events_maxlen, redis_config.partitions),
            policy: policy.clone(),
        }
    }

    /// The `MAXLEN` each event stream is trimmed to: `AUTHSESSION_GATEWAY_SESSION_EVENTS_MAXLEN`
    /// bounds all the streams together, so each partition's gets its share.
    pub fn stream_maxlen(&self) -> u64 {
        self.stream_maxlen
    }
}

/// Each of `partitions` streams' share of `total` entries, rounded up (one stream: all of it).
fn stream_maxlen(total: u64, partitions: u32) -> u64 {
    total.div_ceil(u64::from(partitions.max(1)))
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

/// A script reply that is one string.
fn reply_string(script: &'static str, value: redis::Value) -> Result<String, Error> {
    redis::FromRedisValue::from_redis_value(value).map_err(|e: redis::ParsingError| Error::Reply {
        script,
        detail: e.to_string(),
    })
}

/// A script reply of one word, as the value `words` pairs it with; any other reply is an error.
fn reply_word<T: Copy>(
    script: &'static str,
    value: redis::Value,
    words: &[(&str, T)],
) -> Result<T, Error> {
    let word = reply_string(script, value)?;
    words
        .iter()
        .find(|(w, _)| *w == word)
        .map(|(_, t)| *t)
        .ok_or_else(|| unexpected(script, &[word]))
}

/// A script reply as a list of strings (Redis integers become their digits).
fn reply_strings(script: &'static str, value: redis::Value) -> Result<Vec<String>, Error> {
    redis::FromRedisValue::from_redis_value(value).map_err(|e: redis::ParsingError| Error::Reply {
        script,
        detail: e.to_string(),
    })
}

fn unexpected(script: &'static str, reply: &[String]) -> Error {
    Error::Reply {
        script,
        detail: format!("{reply:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::challenges::{ConfirmRequest, DeliveryStatus};
    use super::*;
    use crate::config::Config;
    use crate::domain::Revocation;
    use crate::domain::{
        ChallengeId, ClientPublicKey, Code, CodeHasher, DeviceSessionId, Email, LoginCode,
        RequestId, UserId,
    };

    /// Each script's typed wrapper fills exactly the KEYS and ARGV slots its header names, in the
    /// header's order (`ScriptCall::key`/`arg` check each name, `evalsha` the counts), and every
    /// script has a wrapper here: a slot added to one side only fails this test.
    /// Finding 7 of the second scripts audit: every partition stream got the whole MAXLEN, so
    /// 64 partitions kept 64 times the documented bound.
    #[test]
    fn the_events_maxlen_bounds_all_partition_streams_together() {
        assert_eq!(stream_maxlen(1_000_000, 1), 1_000_000);
        assert_eq!(stream_maxlen(1_000_000, 64), 15_625);
        assert_eq!(stream_maxlen(1_000, 3), 334);
        assert_eq!(stream_maxlen(1, 64), 1);
    }

    #[tokio::test]
    async fn every_wrapper_fills_its_scripts_header_slot_by_slot() {
        // Nothing listens there: the wrappers build calls without connecting.
        let env = HashMap::from([(
            crate::config::REDIS_ADDR.to_owned(),
            "127.0.0.1:1".to_owned(),
        )]);
        let config = Config::from_source(&env).unwrap();
        let redis = Redis::new(&config.redis).unwrap();
        let store = Store::new(redis, &config.redis, &config.gateway, &config.policy);
        let id = ChallengeId::generate();
        let email = Email::parse("a@example.com").unwrap();
        let hasher = CodeHasher::development();
        let hashes = hasher.hashes(&id, &LoginCode::generate());
        let client = hasher.client_key([127, 0, 0, 1].into());
        let key = {
            use base64::Engine;
            ClientPublicKey::parse(&base64::engine::general_purpose::STANDARD.encode([1u8; 32]))
                .unwrap()
        };
        let (user, session) = (UserId::parse("u1").unwrap(), DeviceSessionId::generate());
        let revocation = Revocation {
            reason_code: Code::known("admin_revoke"),
            actor_type: Code::known("admin"),
            actor_id: None,
        };
        let request = RequestId::generate();
        let confirm = ConfirmRequest {
            challenge_id: &id,
            code_hashes: &hashes,
            client_public_key: &key,
            user_id: &user,
            device_session_id: &session,
            max_attempts: 5,
            max_active_sessions: 50,
            verified_at_ms: 1_795_867_200_000,
        };
        let calls = [
            store.challenge_create_call(&id, &email, &hashes.current, None, &client),
            store.challenge_mark_delivery_call(&id, &email.hash(), DeliveryStatus::Sent),
            store.challenge_verify_call(&id, &hashes, &key, 5, &request, &client),
            store.challenge_confirm_call(&confirm),
            store.send_admit_call(&id, &client),
            store.confirm_admit_call(&request, &client),
            store.session_create_call(&confirm),
            store.challenge_claim_call(&confirm),
            store.challenge_mark_confirmed_call(&confirm, 1),
            store.session_revoke_call(&session, &revocation, &request),
            store.user_sessions_revoke_call(
                &user,
                &revocation,
                &request,
                1,
                Some(Duration::from_secs(600)),
            ),
            store.session_projection_republish_call(&session, &request),
            store.access_probe_calls().remove(0),
        ];
        let mut covered: Vec<&str> = Vec::new();
        for call in &calls {
            let header = &call.script().header;
            let _ = call.evalsha();
            assert_eq!(
                (call.keys().len(), call.args().len()),
                (header.keys.len(), header.args.len()),
                "{}",
                call.script().name
            );
            covered.push(call.script().name);
        }
        covered.sort();
        let all: Vec<&str> = scripts::scripts().all().iter().map(|s| s.name).collect();
        assert_eq!(covered, all, "every script has its wrapper in this test");
    }
}
