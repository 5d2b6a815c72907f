//! Redis: the connection pool, key names, the Lua script engine and typed script wrappers.

pub mod challenges;
pub mod config_provider;
pub mod keys;
pub mod pool;
pub mod scripts;
pub mod sessions;

use std::time::Duration;

pub use keys::Keys;
pub use pool::Redis;

/// A Redis failure. Every variant answers `503 service_unavailable`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis command timed out after {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("script {script} v{version} is not cached in Redis and script loading is `preloaded`")]
    NotPreloaded { script: &'static str, version: u32 },
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
            stream_maxlen: gateway.events_maxlen,
            policy: policy.clone(),
        }
    }
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
