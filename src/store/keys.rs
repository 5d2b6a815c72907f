//! Every Redis key name, spelled once. Scripts that must derive keys (evicted sessions, batches)
//! receive prefixes built here, so all keys share the configured hash tag in cluster mode.

use crate::config::{GatewayConfig, RedisConfig};

/// The Redis Cluster hash tag of a key: the text between the first `{` and the next `}`, when
/// non-empty.
pub fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')? + open + 1;
    (close > open + 1).then(|| &key[open + 1..close])
}

/// Whether every name carries one and the same hash tag. In cluster mode every key a script
/// touches must live in one slot, and keys are built from these names.
pub fn share_one_hash_tag(names: &[&str]) -> bool {
    let first = names.first().and_then(|n| hash_tag(n));
    first.is_some() && names.iter().all(|n| hash_tag(n) == first)
}

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

    /// `P confirm_failures:`: the prefix the verify script derives the failure counter from
    /// (prefix .. sha256hex of the address it reads from the challenge).
    pub fn confirm_failures_prefix(&self) -> String {
        self.confirm_failures("")
    }

    /// `P session:<device_session_id>` (hash).
    pub fn session(&self, device_session_id: &str) -> String {
        format!("{}session:{device_session_id}", self.prefix)
    }

    /// `P session:`: the prefix scripts derive session record keys from (prefix .. id).
    pub fn session_prefix(&self) -> String {
        self.session("")
    }

    /// `P user:<user_id>:sessions` (zset of every session id, score `created_at_ms`).
    pub fn user_sessions(&self, user_id: &str) -> String {
        format!("{}{USER}{user_id}{USER_SESSIONS}", self.prefix)
    }

    /// `P user:<user_id>:active_sessions` (zset of active session ids, score `created_at_ms`).
    pub fn user_active_sessions(&self, user_id: &str) -> String {
        format!("{}{USER}{user_id}{USER_ACTIVE_SESSIONS}", self.prefix)
    }

    /// `P user:<user_id>:revoked_sessions` (zset of revoked session ids, score = when the
    /// revoked record expires): lets scripts prune every expired index entry in bounded steps.
    pub fn user_revoked_sessions(&self, user_id: &str) -> String {
        format!("{}{USER}{user_id}{USER_REVOKED_SESSIONS}", self.prefix)
    }

    /// `P user:<user_id>:blocked` (string holding when the block happened): written by a block
    /// before it revokes, so a confirm in flight cannot create a session after it.
    pub fn user_blocked(&self, user_id: &str) -> String {
        format!("{}{USER}{user_id}{USER_BLOCKED}", self.prefix)
    }

    /// `P user:` and the three index suffixes, for scripts that learn the user id from a session
    /// record (the user's index keys are head .. user_id .. suffix).
    pub fn user_index_parts(&self) -> UserIndexParts {
        UserIndexParts {
            head: format!("{}{USER}", self.prefix),
            sessions: USER_SESSIONS,
            active: USER_ACTIVE_SESSIONS,
            revoked: USER_REVOKED_SESSIONS,
        }
    }

    /// `P revoke_batches:<request_id>` (hash of batch number -> reply): lets a replayed batch of
    /// a revoke-all answer what it answered first; expires a minute later.
    pub fn revoke_batches(&self, request_id: &str) -> String {
        format!("{}revoke_batches:{request_id}", self.prefix)
    }

    /// `P rate:send:<client>` (hash `n`, `last`): one client's send window; `client` is a keyed
    /// hash of its IP address, never the address itself.
    pub fn rate_send_client(&self, client: &str) -> String {
        format!("{}rate:send:{client}", self.prefix)
    }

    /// `P rate:send_global` (hash `n`, `last`): everyone's challenge-creation window.
    pub fn rate_send_global(&self) -> String {
        format!("{}rate:send_global", self.prefix)
    }

    /// `P rate:confirm:<client>` (hash `n`, `last`): one client's confirm window.
    pub fn rate_confirm_client(&self, client: &str) -> String {
        format!("{}rate:confirm:{client}", self.prefix)
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

    /// The kind of an authsession key, by the name the scripts' headers use for it (`challenge`,
    /// `session`, `user_active_sessions`, ...); `None` for a key outside the namespaces.
    pub fn kind_of(&self, key: &str) -> Option<&'static str> {
        if key == self.stream {
            return Some("stream");
        }
        if key.starts_with(&self.gateway_prefix) {
            return Some("gateway_session");
        }
        let rest = key.strip_prefix(&self.prefix)?;
        if rest == "config" {
            return Some("config");
        }
        if rest == "rate:send_global" {
            return Some("rate_send_global");
        }
        if rest.starts_with("rate:send:") {
            return Some("rate_send_client");
        }
        if rest.starts_with("rate:confirm:") {
            return Some("rate_confirm_client");
        }
        if let Some(user) = rest.strip_prefix(USER) {
            return [
                (USER_ACTIVE_SESSIONS, "user_active_sessions"),
                (USER_REVOKED_SESSIONS, "user_revoked_sessions"),
                (USER_BLOCKED, "user_blocked"),
                (USER_SESSIONS, "user_sessions"),
            ]
            .into_iter()
            .find(|(suffix, _)| user.ends_with(suffix))
            .map(|(_, kind)| kind);
        }
        [
            "challenge",
            "resend_throttle",
            "confirm_failures",
            "session",
            "revoke_batches",
        ]
        .into_iter()
        .find(|kind| rest.strip_prefix(kind).is_some_and(|r| r.starts_with(':')))
    }
}

const USER: &str = "user:";
const USER_SESSIONS: &str = ":sessions";
const USER_ACTIVE_SESSIONS: &str = ":active_sessions";
const USER_REVOKED_SESSIONS: &str = ":revoked_sessions";
const USER_BLOCKED: &str = ":blocked";

/// See [`Keys::user_index_parts`].
#[derive(Debug, Clone)]
pub struct UserIndexParts {
    pub head: String,
    pub sessions: &'static str,
    pub active: &'static str,
    pub revoked: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tag_follows_redis_rules() {
        assert_eq!(hash_tag("{auth}x"), Some("auth"));
        assert_eq!(hash_tag("a{b}c{d}"), Some("b"));
        assert_eq!(hash_tag("{}x"), None);
        assert_eq!(hash_tag("plain"), None);
        assert!(share_one_hash_tag(&["{a}x", "{a}y", "z{a}"]));
        assert!(!share_one_hash_tag(&["{a}x", "{b}y"]));
        assert!(!share_one_hash_tag(&["x", "y"]));
    }
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
        assert_eq!(
            keys.user_revoked_sessions("u1"),
            "authsession:user:u1:revoked_sessions"
        );
        assert_eq!(keys.revoke_batches("r1"), "authsession:revoke_batches:r1");
        assert_eq!(keys.config(), "authsession:config");
        assert_eq!(keys.gateway_session("s1"), "gateway:session:s1");
        assert_eq!(keys.stream(), "gateway:session_events");
    }

    #[test]
    fn every_key_has_the_kind_the_script_headers_name() {
        let config = Config::from_source(&HashMap::new()).unwrap();
        let keys = Keys::new(&config.redis, &config.gateway);
        let kinds = [
            (keys.challenge("c"), "challenge"),
            (keys.resend_throttle("h"), "resend_throttle"),
            (keys.confirm_failures("h"), "confirm_failures"),
            (keys.session("s"), "session"),
            (keys.user_sessions("u:sessions"), "user_sessions"),
            (keys.user_active_sessions("u"), "user_active_sessions"),
            (keys.user_revoked_sessions("u"), "user_revoked_sessions"),
            (keys.revoke_batches("r"), "revoke_batches"),
            (keys.user_blocked("u"), "user_blocked"),
            (keys.rate_send_client("c"), "rate_send_client"),
            (keys.rate_send_global(), "rate_send_global"),
            (keys.rate_confirm_client("c"), "rate_confirm_client"),
            (keys.config(), "config"),
            (keys.gateway_session("s"), "gateway_session"),
            (keys.stream().to_owned(), "stream"),
        ];
        for (key, kind) in kinds {
            assert_eq!(keys.kind_of(&key), Some(kind), "{key}");
        }
        assert_eq!(keys.kind_of("other:thing"), None);
    }
}
