//! Every Redis key name, spelled once. Every key a script touches is passed to it in KEYS, named
//! here (keys found at run time are planned: the caller names them from the ids a script's
//! `need` reply gives), so all keys share the configured hash tag in cluster mode.
//!
//! In the partitioned layout every key carries a partition tag where its id goes: a user's keys
//! `P user:{t}<user_id>:...`, an address's `P resend_throttle:{t}<hash>`, a client's
//! `P rate:send:{t}<client>`; challenge and device session ids start with their partition's
//! `{t}`, so `P session:<id>`, `G<id>` and `P challenge:<id>` keep their contract names and
//! still land in their partition. Each partition has its own stream `S{t}`.

use std::sync::Arc;

use super::layout::{Layout, Partition};
use crate::config::{GatewayConfig, RedisConfig};
use crate::domain::{ChallengeId, ClientKey, DeviceSessionId, EmailHash, RequestId, UserId};

// Redis Cluster's hash-tag rule, which the configuration checks names against too.
pub use crate::config::{hash_tag, share_one_hash_tag};

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    gateway_prefix: String,
    stream: String,
    layout: Arc<Layout>,
}

impl Keys {
    pub fn new(redis: &RedisConfig, gateway: &GatewayConfig) -> Self {
        Self {
            prefix: redis.key_prefix.clone(),
            gateway_prefix: gateway.session_key_prefix.clone(),
            stream: gateway.events_stream.clone(),
            layout: Arc::new(Layout::new(redis.partitions)),
        }
    }

    /// Where records live: partitions, placement and id minting.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn tag(&self, partition: Partition) -> String {
        self.layout.tag(partition)
    }

    /// The source-of-truth namespace (`AUTHSESSION_REDIS_KEY_PREFIX`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P challenge:<challenge_id>` (hash).
    pub fn challenge(&self, challenge_id: &ChallengeId) -> String {
        format!("{}{challenge_id}", self.challenge_prefix())
    }

    /// `P challenge:`: what every challenge key starts with (a scan's pattern is this and `*`).
    pub fn challenge_prefix(&self) -> String {
        format!("{}challenge:", self.prefix)
    }

    /// `P resend_throttle:<sha256hex(email)>` (string holding the challenge id).
    pub fn resend_throttle(&self, email_hash: &EmailHash) -> String {
        let tag = self.tag(self.layout.of_address(email_hash.as_str()));
        format!("{}resend_throttle:{tag}{email_hash}", self.prefix)
    }

    /// `P confirm_failures:<sha256hex(email)>` (counter).
    pub fn confirm_failures(&self, email_hash: &EmailHash) -> String {
        format!(
            "{}{email_hash}",
            self.confirm_failures_prefix(self.layout.of_address(email_hash.as_str()))
        )
    }

    /// `P confirm_failures:` and the partition's tag: what the failure counters of the
    /// partition's addresses start with.
    pub fn confirm_failures_prefix(&self, partition: Partition) -> String {
        format!("{}confirm_failures:{}", self.prefix, self.tag(partition))
    }

    /// `P session:<device_session_id>` (hash).
    pub fn session(&self, device_session_id: &DeviceSessionId) -> String {
        format!("{}{device_session_id}", self.session_prefix())
    }

    /// `P session:`: what every session record key starts with (a scan's pattern is this and `*`).
    pub fn session_prefix(&self) -> String {
        format!("{}session:", self.prefix)
    }

    /// `P user:<user_id>:sessions` (zset of every session id, score `created_at_ms`).
    pub fn user_sessions(&self, user_id: &UserId) -> String {
        format!("{}{user_id}{USER_SESSIONS}", self.user_head(user_id))
    }

    /// `P user:` and the user's partition tag.
    fn user_head(&self, user_id: &UserId) -> String {
        self.user_index_parts(self.layout.of_user(user_id.as_str()))
            .head
    }

    /// `P user:<user_id>:active_sessions` (zset of active session ids, score `created_at_ms`).
    pub fn user_active_sessions(&self, user_id: &UserId) -> String {
        format!("{}{user_id}{USER_ACTIVE_SESSIONS}", self.user_head(user_id))
    }

    /// `P user:<user_id>:revoked_sessions` (zset of revoked session ids, score = when the
    /// revoked record expires): lets scripts prune every expired index entry in bounded steps.
    pub fn user_revoked_sessions(&self, user_id: &UserId) -> String {
        format!(
            "{}{user_id}{USER_REVOKED_SESSIONS}",
            self.user_head(user_id)
        )
    }

    /// `P user:<user_id>:blocked` (string holding when the block happened): written by a block
    /// before it revokes, so a confirm in flight cannot create a session after it.
    pub fn user_blocked(&self, user_id: &UserId) -> String {
        format!("{}{user_id}{USER_BLOCKED}", self.user_head(user_id))
    }

    /// `P user:` (with the partition's tag) and the three index suffixes, for scripts that learn
    /// the user id from a session record (the user's index keys are head .. user_id .. suffix;
    /// a session lives in its user's partition).
    pub fn user_index_parts(&self, partition: Partition) -> UserIndexParts {
        UserIndexParts {
            head: format!("{}{USER}{}", self.prefix, self.tag(partition)),
            sessions: USER_SESSIONS,
            active: USER_ACTIVE_SESSIONS,
            revoked: USER_REVOKED_SESSIONS,
        }
    }

    /// `P revoke_batches:<request_id>` (hash of batch number -> reply): lets a replayed batch of
    /// a revoke-all answer what it answered first; expires a minute later.
    pub fn revoke_batches(&self, user_id: &UserId, request_id: &RequestId) -> String {
        let tag = self.tag(self.layout.of_user(user_id.as_str()));
        format!("{}revoke_batches:{tag}{request_id}", self.prefix)
    }

    /// `P rate:send:<client>` (hash `n`, `last`): one client's send window; `client` is a keyed
    /// hash of its IP address, never the address itself.
    pub fn rate_send_client(&self, client: &ClientKey) -> String {
        let tag = self.tag(self.layout.of_client(client.as_str()));
        format!("{}rate:send:{tag}{}", self.prefix, client.as_str())
    }

    /// `P rate:send_global` (hash `n`, `last`): everyone's challenge-creation window. Partitioned:
    /// `P rate:send_global:{t}`, one share of the window per partition (the client's).
    pub fn rate_send_global(&self, partition: Partition) -> String {
        match self.layout.tag_name(partition) {
            None => format!("{}rate:send_global", self.prefix),
            Some(_) => format!("{}rate:send_global:{}", self.prefix, self.tag(partition)),
        }
    }

    /// `P rate:confirm:<client>` (hash `n`, `last`): one client's confirm window.
    pub fn rate_confirm_client(&self, client: &ClientKey) -> String {
        let tag = self.tag(self.layout.of_client(client.as_str()));
        format!("{}rate:confirm:{tag}{}", self.prefix, client.as_str())
    }

    /// `P config` (hash of runtime overrides).
    pub fn config(&self) -> String {
        format!("{}config", self.prefix)
    }

    /// `P edge_proof:<device_session_id>:<digest of the nonce>` (a gateway's replay marker, in
    /// the session's slot: `store::edge`). The nonce is hashed so a key's length is bounded
    /// whatever the client sent.
    pub fn edge_proof(&self, device_session_id: &DeviceSessionId, once: &str) -> String {
        use base64::Engine;
        use sha2::Digest;
        let digest = sha2::Sha256::digest(once.as_bytes());
        let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]);
        format!("{}edge_proof:{device_session_id}:{digest}", self.prefix)
    }

    /// `G<device_session_id>` (gateway snapshot JSON).
    pub fn gateway_session(&self, device_session_id: &DeviceSessionId) -> String {
        format!("{}{device_session_id}", self.gateway_prefix)
    }

    /// `G`: what every snapshot key starts with (the gateway consumer's lookups, scans).
    pub fn gateway_session_prefix(&self) -> &str {
        &self.gateway_prefix
    }

    /// `S`: the gateway event stream; `S{t}`, one per partition, in the partitioned layout.
    pub fn stream(&self, partition: Partition) -> String {
        format!("{}{}", self.stream, self.tag(partition))
    }

    /// Every partition's stream (the one `S` in the single-tag layout).
    pub fn streams(&self) -> Vec<String> {
        self.layout
            .all()
            .into_iter()
            .map(|p| self.stream(p))
            .collect()
    }

    /// The kind of an authsession key, by the name the scripts' headers use for it (`challenge`,
    /// `session`, `user_active_sessions`, ...); `None` for a key outside the namespaces.
    pub fn kind_of(&self, key: &str) -> Option<&'static str> {
        // `S`, or `S{t}` for one of the partition tags.
        let partition_stream = key.strip_prefix(self.stream.as_str()).is_some_and(|rest| {
            rest.is_empty()
                || rest
                    .strip_prefix('{')
                    .and_then(|r| r.strip_suffix('}'))
                    .is_some_and(|tag| self.layout.is_tag(tag))
        });
        if partition_stream {
            return Some("stream");
        }
        if key.starts_with(&self.gateway_prefix) {
            return Some("gateway_session");
        }
        let rest = key.strip_prefix(&self.prefix)?;
        if rest == "config" {
            return Some("config");
        }
        if rest == "rate:send_global" || rest.starts_with("rate:send_global:") {
            return Some("rate_send_global");
        }
        if rest.starts_with("rate:send:") {
            return Some("rate_send_client");
        }
        if rest.starts_with("rate:confirm:") {
            return Some("rate_confirm_client");
        }
        if rest.starts_with("edge_proof:") {
            return Some("edge_proof");
        }
        if let Some(user) = rest.strip_prefix(USER) {
            // (Partitioned) `{t}<user_id>:suffix`: the suffix alone tells the kind.
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
mod tests;
