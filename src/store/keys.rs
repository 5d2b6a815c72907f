//! Every Redis key name, spelled once. Scripts that must derive keys (evicted sessions, batches)
//! receive prefixes built here, so all keys share the configured hash tag in cluster mode.

use crate::config::{GatewayConfig, RedisConfig};

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    gateway_prefix: String,
    stream: String,
}

impl Keys {
    pub fn new(redis: &RedisConfig, gateway: &GatewayConfig) -> Self {
        Self {
            prefix: redis.key_prefix.clone(),
            gateway_prefix: gateway.session_key_prefix.clone(),
            stream: gateway.events_stream.clone(),
        }
    }

    /// The source-of-truth namespace (`AUTHSESSION_REDIS_KEY_PREFIX`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P challenge:<challenge_id>` (hash).
    pub fn challenge(&self, challenge_id: &str) -> String {
        format!("{}challenge:{challenge_id}", self.prefix)
    }

    /// `P resend_throttle:<sha256hex(email)>` (string holding the challenge id).
    pub fn resend_throttle(&self, email_hash: &str) -> String {
        format!("{}resend_throttle:{email_hash}", self.prefix)
    }

    /// `P confirm_failures:<sha256hex(email)>` (counter).
    pub fn confirm_failures(&self, email_hash: &str) -> String {
        format!("{}confirm_failures:{email_hash}", self.prefix)
    }

    /// `P session:<device_session_id>` (hash).
    pub fn session(&self, device_session_id: &str) -> String {
        format!("{}session:{device_session_id}", self.prefix)
    }

    /// `P user:<user_id>:sessions` (zset of every session id, score `created_at_ms`).
    pub fn user_sessions(&self, user_id: &str) -> String {
        format!("{}user:{user_id}:sessions", self.prefix)
    }

    /// `P user:<user_id>:active_sessions` (zset of active session ids, score `created_at_ms`).
    pub fn user_active_sessions(&self, user_id: &str) -> String {
        let (head, tail) = self.user_active_sessions_parts();
        format!("{head}{user_id}{tail}")
    }

    /// Head and tail of [`Keys::user_active_sessions`], for scripts that learn the user id from
    /// a session record.
    pub fn user_active_sessions_parts(&self) -> (String, &'static str) {
        (format!("{}user:", self.prefix), ":active_sessions")
    }

    /// `P config` (hash of runtime overrides).
    pub fn config(&self) -> String {
        format!("{}config", self.prefix)
    }

    /// `G<device_session_id>` (gateway snapshot JSON).
    pub fn gateway_session(&self, device_session_id: &str) -> String {
        format!("{}{device_session_id}", self.gateway_prefix)
    }

    /// `G`: snapshot key prefix, for scripts deriving snapshot keys of evicted sessions.
    pub fn gateway_session_prefix(&self) -> &str {
        &self.gateway_prefix
    }

    /// `S`: the gateway event stream.
    pub fn stream(&self) -> &str {
        &self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::collections::HashMap;

    #[test]
    fn keys_follow_the_contract() {
        let config = Config::from_source(&HashMap::new()).unwrap();
        let keys = Keys::new(&config.redis, &config.gateway);
        assert_eq!(keys.challenge("c1"), "authsession:challenge:c1");
        assert_eq!(keys.resend_throttle("ab"), "authsession:resend_throttle:ab");
        assert_eq!(keys.confirm_failures(""), "authsession:confirm_failures:");
        assert_eq!(keys.session("s1"), "authsession:session:s1");
        assert_eq!(keys.session(""), "authsession:session:");
        assert_eq!(keys.user_sessions("u1"), "authsession:user:u1:sessions");
        assert_eq!(
            keys.user_active_sessions("u1"),
            "authsession:user:u1:active_sessions"
        );
        assert_eq!(keys.config(), "authsession:config");
        assert_eq!(keys.gateway_session("s1"), "gateway:session:s1");
        assert_eq!(keys.stream(), "gateway:session_events");
    }
}
