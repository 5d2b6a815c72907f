//! Runtime overrides from the `P config` hash, cached for the refresh interval. An invalid value
//! is logged and ignored; a Redis failure keeps the last known values.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::{Keys, Redis};
use crate::config::{Policy, MAX_ACTIVE_SESSIONS_CEILING, MAX_ATTEMPTS_CEILING};

/// The overridable limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_active_sessions_per_user: u32,
    pub challenge_max_attempts: u32,
}

#[derive(Clone)]
pub struct ConfigProvider {
    redis: Redis,
    key: String,
    defaults: Limits,
    refresh: Duration,
    cache: Arc<Mutex<Option<(Instant, Limits)>>>,
}

impl ConfigProvider {
    pub fn new(redis: Redis, keys: &Keys, policy: &Policy) -> Self {
        Self {
            redis,
            key: keys.config(),
            defaults: Limits {
                max_active_sessions_per_user: policy.max_active_sessions_per_user,
                challenge_max_attempts: policy.challenge_max_attempts,
            },
            refresh: policy.config_refresh_interval,
            cache: Arc::new(Mutex::new(None)),
        }
    }

    /// The current limits; reads Redis at most once per refresh interval (one caller refreshes,
    /// concurrent callers wait for it rather than stampeding Redis).
    pub async fn limits(&self) -> Limits {
        let mut cache = self.cache.lock().await;
        if let Some((at, limits)) = *cache {
            if at.elapsed() < self.refresh {
                return limits;
            }
        }
        let limits = match self.read().await {
            Ok(limits) => limits,
            Err(error) => {
                let last = cache.map(|(_, l)| l).unwrap_or(self.defaults);
                tracing::warn!(%error, "runtime config unavailable; keeping the last known limits");
                last
            }
        };
        *cache = Some((Instant::now(), limits));
        limits
    }

    async fn read(&self) -> Result<Limits, super::Error> {
        let (sessions, attempts): (Option<String>, Option<String>) = self
            .redis
            .query(
                redis::cmd("HMGET")
                    .arg(&self.key)
                    .arg("max_active_sessions_per_user")
                    .arg("challenge_max_attempts"),
            )
            .await?;
        Ok(Limits {
            max_active_sessions_per_user: override_or(
                "max_active_sessions_per_user",
                sessions,
                MAX_ACTIVE_SESSIONS_CEILING,
                self.defaults.max_active_sessions_per_user,
            ),
            challenge_max_attempts: override_or(
                "challenge_max_attempts",
                attempts,
                MAX_ATTEMPTS_CEILING,
                self.defaults.challenge_max_attempts,
            ),
        })
    }
}

fn override_or(field: &str, raw: Option<String>, max: u32, default: u32) -> u32 {
    let Some(raw) = raw else { return default };
    match raw.trim().parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => n,
        _ => {
            tracing::warn!(field, value = %raw, max, "ignoring invalid runtime config value");
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::override_or;

    #[test]
    fn invalid_overrides_fall_back_to_the_default() {
        assert_eq!(override_or("f", None, 10, 5), 5);
        assert_eq!(override_or("f", Some("7".into()), 10, 5), 7);
        assert_eq!(override_or("f", Some("0".into()), 10, 5), 5);
        assert_eq!(override_or("f", Some("11".into()), 10, 5), 5);
        assert_eq!(override_or("f", Some("many".into()), 10, 5), 5);
    }
}
