//! The startup checks, before any listener binds: a bounded PING per runbook component, the
//! server version and eviction policy, and in preloaded mode every script the layout runs.

use std::net::SocketAddr;

use crate::config::{Config, ScriptLoading};
use crate::store::{self, scripts::scripts, Redis};

/// The component the connection itself and the script-call check are reported under.
pub const CHALLENGE_STORE: &str = "challenge_store";

/// The startup components of the runbook, each checked with a bounded PING.
pub const COMPONENTS: [&str; 5] = [
    CHALLENGE_STORE,
    "session_store",
    "config_provider",
    "gateway_projection_publisher",
    "resend_throttle_protector",
];

/// Oldest Redis with script shebangs and `flags=no-writes`.
const MIN_REDIS_MAJOR: u32 = 7;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{component}: redis at {address}: {source}")]
    Redis {
        component: &'static str,
        address: String,
        #[source]
        source: store::Error,
    },
    #[error("redis at {address} runs version {version}; authsession needs Redis {MIN_REDIS_MAJOR}.0 or newer")]
    RedisVersion { address: String, version: String },
    #[error(
        "redis at {address} lacks script(s) {missing} and AUTHSESSION_REDIS_SCRIPT_LOADING=preloaded; \
         load them with `authsession scripts export <dir>` + SCRIPT LOAD"
    )]
    ScriptsMissing { address: String, missing: String },
    #[error("{listener} HTTP listener: cannot bind {addr}: {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Bounded PING per component, the server version, the eviction policy, and in preloaded mode
/// the script cache.
pub(super) async fn check_redis(redis: &Redis, config: &Config) -> Result<(), StartupError> {
    let address = redis.address().to_owned();
    let limit = config.redis.connect_timeout;
    for component in COMPONENTS {
        redis
            .ping(limit)
            .await
            .map_err(|source| StartupError::Redis {
                component,
                address: address.clone(),
                source,
            })?;
        tracing::info!(component, address = %address, "startup check passed: PING");
    }

    match redis.server_info(limit).await {
        Ok(info) => {
            if info.major() < MIN_REDIS_MAJOR {
                return Err(StartupError::RedisVersion {
                    address,
                    version: info.version,
                });
            }
            match info.maxmemory_policy.as_deref() {
                Some("noeviction") => {}
                policy => tracing::warn!(
                    maxmemory_policy = policy.unwrap_or("unknown"),
                    "Redis may evict authsession keys (sessions, throttle windows) under memory pressure: \
                     set maxmemory-policy noeviction"
                ),
            }
        }
        // An ACL may deny INFO; the shebang scripts still refuse to run on a pre-7 server.
        Err(error) => {
            tracing::warn!(%error, "cannot read INFO; skipping the version and eviction-policy checks")
        }
    }

    if config.redis.script_loading == ScriptLoading::Preloaded {
        // Every partition's primary runs every script the layout uses.
        let keys = crate::store::Keys::new(&config.redis, &config.gateway);
        let all: Vec<_> = scripts()
            .all()
            .into_iter()
            .filter(|s| keys.layout().runs(s.name))
            .collect();
        let routes = keys.streams();
        let exists =
            redis
                .scripts_exist(&all, &routes)
                .await
                .map_err(|source| StartupError::Redis {
                    component: "challenge_store",
                    address: address.clone(),
                    source,
                })?;
        let missing: Vec<_> = all
            .iter()
            .zip(exists)
            .filter(|(_, ok)| !ok)
            .map(|(s, _)| format!("{} v{} ({})", s.name, s.version, s.sha1))
            .collect();
        if !missing.is_empty() {
            return Err(StartupError::ScriptsMissing {
                address,
                missing: missing.join(", "),
            });
        }
        tracing::info!(
            scripts = all.len(),
            "startup check passed: every script is preloaded"
        );
    }
    Ok(())
}
