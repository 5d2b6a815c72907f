//! Every Redis key name, spelled once. Scripts that must derive keys (evicted sessions, batches)
//! receive prefixes built here, so all keys share the configured hash tag in cluster mode.
//!
//! In the partitioned layout every key carries a partition tag where its id goes: a user's keys
//! `P user:{t}<user_id>:...`, an address's `P resend_throttle:{t}<hash>`, a client's
//! `P rate:send:{t}<client>`; challenge and device session ids start with their partition's
//! `{t}`, so `P session:<id>`, `G<id>` and `P challenge:<id>` keep their contract names and
//! still land in their partition. Each partition has its own stream `S{t}`.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::partitions::Partitions;
use crate::config::{GatewayConfig, RedisConfig};
use crate::domain::{ChallengeId, DeviceSessionId, UserId};

// Redis Cluster's hash-tag rule, which the configuration checks names against too.
pub use crate::config::{hash_tag, share_one_hash_tag};

/// Where a record lives: a partition's index, or `None` in the single-tag layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition(Option<usize>);

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    gateway_prefix: String,
    stream: String,
    partitions: Arc<Partitions>,
}

impl Keys {
    pub fn new(redis: &RedisConfig, gateway: &GatewayConfig) -> Self {
        Self {
            prefix: redis.key_prefix.clone(),
            gateway_prefix: gateway.session_key_prefix.clone(),
            stream: gateway.events_stream.clone(),
            partitions: Arc::new(Partitions::new(redis.partitions)),
        }
    }

    pub fn partitions(&self) -> &Partitions {
        &self.partitions
    }

    /// Every partition (one, `Partition(None)`, in the single-tag layout).
    pub fn all_partitions(&self) -> Vec<Partition> {
        if self.partitions.is_partitioned() {
            (0..self.partitions.tags().len())
                .map(|i| Partition(Some(i)))
                .collect()
        } else {
            vec![Partition(None)]
        }
    }

    /// `{t}` of a partition, `""` in the single-tag layout.
    fn tag(&self, partition: Partition) -> String {
        partition
            .0
            .map(|i| format!("{{{}}}", self.partitions.tags()[i]))
            .unwrap_or_default()
    }

    /// The user's partition: every session of the user, its indexes and projection live there.
    pub fn user_partition(&self, user_id: &str) -> Partition {
        Partition(self.partitions.index_for(user_id))
    }

    /// The address's partition (by its SHA-256 hex): challenges, resend window, failure budget.
    pub fn address_partition(&self, email_hash: &str) -> Partition {
        Partition(self.partitions.index_for(email_hash))
    }

    /// The client's partition (by its keyed address hash): its admission counters.
    pub fn client_partition(&self, client: &str) -> Partition {
        Partition(self.partitions.index_for(client))
    }

    /// The partition a challenge or device session id names, `None` when the id cannot be one
    /// of this deployment's (a tag in the single-tag layout, or no known tag in the
    /// partitioned one): such an id is not found without asking Redis.
    pub fn partition_of_id(&self, id: &str) -> Option<Partition> {
        if !self.partitions.is_partitioned() {
            return (!id.contains(['{', '}'])).then_some(Partition(None));
        }
        let tag = id.strip_prefix('{')?.split_once('}')?.0;
        self.partitions.index_of(tag).map(|i| Partition(Some(i)))
    }

    /// A fresh challenge id, in the address's partition.
    pub fn new_challenge_id(&self, email_hash: &str) -> ChallengeId {
        let id = ChallengeId::generate();
        match self.address_partition(email_hash) {
            Partition(None) => id,
            p => ChallengeId::parse(&format!("{}{id}", self.tag(p))).expect("a tagged id"),
        }
    }

    /// The device session id a confirm of `challenge_id` creates for `user_id`. Partitioned:
    /// derived from the challenge (so a retry or a concurrent twin of a confirm that crashed
    /// half-way finds the same session) in the user's partition. Single-tag: random (the one
    /// confirm script makes retries safe there).
    pub fn device_session_id(
        &self,
        challenge_id: &ChallengeId,
        user_id: &UserId,
    ) -> DeviceSessionId {
        match self.user_partition(user_id.as_str()) {
            Partition(None) => DeviceSessionId::generate(),
            p => {
                use base64::Engine;
                let digest = Sha256::digest(format!("device_session:{challenge_id}"));
                let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]);
                DeviceSessionId::parse(&format!("{}{body}", self.tag(p))).expect("a tagged id")
            }
        }
    }

    /// The startup probe's id in `partition`, for the challenge and snapshot keys it checks (no
    /// real challenge or session has it: real ids are random).
    pub fn probe_id(&self, partition: Partition) -> String {
        format!("{}startup-probe", self.tag(partition))
    }

    /// A random id in a partition, for tests and tools that seed records.
    pub fn random_device_session_id(&self, partition: Partition) -> DeviceSessionId {
        let body = DeviceSessionId::generate();
        DeviceSessionId::parse(&format!("{}{body}", self.tag(partition))).expect("a valid id")
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
        let tag = self.tag(self.address_partition(email_hash));
        format!("{}resend_throttle:{tag}{email_hash}", self.prefix)
    }

    /// `P confirm_failures:<sha256hex(email)>` (counter).
    pub fn confirm_failures(&self, email_hash: &str) -> String {
        format!(
            "{}{email_hash}",
            self.confirm_failures_prefix(self.address_partition(email_hash))
        )
    }

    /// `P confirm_failures:` (and the partition's tag): the prefix the verify script derives the
    /// failure counter from (prefix .. sha256hex of the address it reads from the challenge,
    /// which lives in the address's partition).
    pub fn confirm_failures_prefix(&self, partition: Partition) -> String {
        format!("{}confirm_failures:{}", self.prefix, self.tag(partition))
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
        format!("{}{user_id}{USER_SESSIONS}", self.user_head(user_id))
    }

    /// `P user:` and the user's partition tag.
    fn user_head(&self, user_id: &str) -> String {
        self.user_index_parts(self.user_partition(user_id)).head
    }

    /// `P user:<user_id>:active_sessions` (zset of active session ids, score `created_at_ms`).
    pub fn user_active_sessions(&self, user_id: &str) -> String {
        format!("{}{user_id}{USER_ACTIVE_SESSIONS}", self.user_head(user_id))
    }

    /// `P user:<user_id>:revoked_sessions` (zset of revoked session ids, score = when the
    /// revoked record expires): lets scripts prune every expired index entry in bounded steps.
    pub fn user_revoked_sessions(&self, user_id: &str) -> String {
        format!(
            "{}{user_id}{USER_REVOKED_SESSIONS}",
            self.user_head(user_id)
        )
    }

    /// `P user:<user_id>:blocked` (string holding when the block happened): written by a block
    /// before it revokes, so a confirm in flight cannot create a session after it.
    pub fn user_blocked(&self, user_id: &str) -> String {
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
    pub fn revoke_batches(&self, user_id: &str, request_id: &str) -> String {
        let tag = self.tag(self.user_partition(user_id));
        format!("{}revoke_batches:{tag}{request_id}", self.prefix)
    }

    /// `P rate:send:<client>` (hash `n`, `last`): one client's send window; `client` is a keyed
    /// hash of its IP address, never the address itself.
    pub fn rate_send_client(&self, client: &str) -> String {
        self.rate_send_client_in(self.client_partition(client), client)
    }

    /// The key `rate_send_client` would have in `partition`: the partitioned layout admits in
    /// the client's partition first and hands the create script, which runs in the address's
    /// partition, this never-touched key of its own slot (its limit is off there).
    pub fn rate_send_client_in(&self, partition: Partition, client: &str) -> String {
        format!("{}rate:send:{}{client}", self.prefix, self.tag(partition))
    }

    /// `P rate:send_global` (hash `n`, `last`): everyone's challenge-creation window. Partitioned:
    /// `P rate:send_global:{t}`, one share of the window per partition (the client's).
    pub fn rate_send_global(&self, partition: Partition) -> String {
        match partition {
            Partition(None) => format!("{}rate:send_global", self.prefix),
            p => format!("{}rate:send_global:{}", self.prefix, self.tag(p)),
        }
    }

    /// `P rate:confirm:<client>` (hash `n`, `last`): one client's confirm window.
    pub fn rate_confirm_client(&self, client: &str) -> String {
        self.rate_confirm_client_in(self.client_partition(client), client)
    }

    /// See [`Self::rate_send_client_in`].
    pub fn rate_confirm_client_in(&self, partition: Partition, client: &str) -> String {
        format!(
            "{}rate:confirm:{}{client}",
            self.prefix,
            self.tag(partition)
        )
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

    /// `S`: the gateway event stream; `S{t}`, one per partition, in the partitioned layout.
    pub fn stream(&self, partition: Partition) -> String {
        format!("{}{}", self.stream, self.tag(partition))
    }

    /// Every partition's stream (the one `S` in the single-tag layout).
    pub fn streams(&self) -> Vec<String> {
        self.all_partitions()
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
                    .is_some_and(|tag| self.partitions.index_of(tag).is_some())
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
        assert_eq!(
            keys.revoke_batches("u1", "r1"),
            "authsession:revoke_batches:r1"
        );
        assert_eq!(keys.config(), "authsession:config");
        assert_eq!(keys.gateway_session("s1"), "gateway:session:s1");
        let single = keys.all_partitions()[0];
        assert_eq!(keys.stream(single), "gateway:session_events");
        assert_eq!(keys.streams(), ["gateway:session_events"]);
        assert_eq!(
            keys.rate_send_global(single),
            "authsession:rate:send_global"
        );
        assert_eq!(keys.rate_send_client("c"), "authsession:rate:send:c");
        assert_eq!(keys.rate_confirm_client("c"), "authsession:rate:confirm:c");
        assert_eq!(keys.user_blocked("u1"), "authsession:user:u1:blocked");
        assert_eq!(keys.user_index_parts(single).head, "authsession:user:");
        // Ids of the single-tag layout carry no tag; a tagged one is not ours.
        let challenge = keys.new_challenge_id("ab");
        assert!(!challenge.as_str().contains('{'));
        assert_eq!(keys.partition_of_id(challenge.as_str()), Some(single));
        assert_eq!(keys.partition_of_id("{a}x"), None);
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
            (keys.revoke_batches("u", "r"), "revoke_batches"),
            (keys.user_blocked("u"), "user_blocked"),
            (keys.rate_send_client("c"), "rate_send_client"),
            (
                keys.rate_send_global(keys.all_partitions()[0]),
                "rate_send_global",
            ),
            (keys.rate_confirm_client("c"), "rate_confirm_client"),
            (keys.config(), "config"),
            (keys.gateway_session("s"), "gateway_session"),
            (keys.streams()[0].clone(), "stream"),
        ];
        for (key, kind) in kinds {
            assert_eq!(keys.kind_of(&key), Some(kind), "{key}");
        }
        assert_eq!(keys.kind_of("other:thing"), None);
    }

    fn partitioned(n: &str) -> Keys {
        let env = HashMap::from([
            (crate::config::REDIS_MODE.to_owned(), "cluster".to_owned()),
            (crate::config::REDIS_PARTITIONS.to_owned(), n.to_owned()),
        ]);
        let config = Config::from_source(&env).unwrap();
        Keys::new(&config.redis, &config.gateway)
    }

    /// Partitioned: everything one script touches shares a slot. A user's keys, its sessions'
    /// records and snapshots and its partition's stream; an address's challenge, resend window
    /// and failure counter; a client's counters.
    #[test]
    fn partitioned_keys_group_by_user_address_and_client() {
        use crate::domain::UserId;
        use crate::store::partitions::slot;
        let keys = partitioned("64");
        let user = UserId::parse("user-7").unwrap();
        let home = keys.user_partition(user.as_str());
        let challenge = keys.new_challenge_id("ab12");
        let session = keys.device_session_id(&challenge, &user);
        let user_slot = slot(&keys.user_sessions(user.as_str()));
        for key in [
            keys.user_active_sessions(user.as_str()),
            keys.user_revoked_sessions(user.as_str()),
            keys.user_blocked(user.as_str()),
            keys.revoke_batches(user.as_str(), "r1"),
            keys.session(session.as_str()),
            keys.gateway_session(session.as_str()),
            keys.stream(home),
            format!("{}{}", keys.session_prefix(), session),
            format!("{}user-7:sessions", keys.user_index_parts(home).head),
        ] {
            assert_eq!(slot(&key), user_slot, "{key}");
        }
        let address_slot = slot(&keys.challenge(challenge.as_str()));
        let address = keys.address_partition("ab12");
        for key in [
            keys.resend_throttle("ab12"),
            keys.confirm_failures("ab12"),
            format!("{}ab12", keys.confirm_failures_prefix(address)),
            keys.rate_send_client_in(address, "c"),
            keys.rate_send_global(address),
            keys.rate_confirm_client_in(address, "c"),
        ] {
            assert_eq!(slot(&key), address_slot, "{key}");
        }
        assert_eq!(
            slot(&keys.rate_send_client("c")),
            slot(&keys.rate_send_global(keys.client_partition("c")))
        );
        // The contract names keep their shape, the tag sits where the id goes.
        let tag = keys.partitions().of_user("user-7").unwrap();
        assert_eq!(
            keys.user_sessions("user-7"),
            format!("authsession:user:{{{tag}}}user-7:sessions")
        );
        assert_eq!(
            keys.stream(home),
            format!("gateway:session_events{{{tag}}}")
        );
        assert!(session.as_str().starts_with(&format!("{{{tag}}}")));
        assert_eq!(keys.streams().len(), 64);
        for (key, kind) in [
            (keys.user_sessions("u"), "user_sessions"),
            (keys.stream(home), "stream"),
            (keys.rate_send_global(home), "rate_send_global"),
            (keys.revoke_batches("u", "r"), "revoke_batches"),
            (keys.session(session.as_str()), "session"),
        ] {
            assert_eq!(keys.kind_of(&key), Some(kind), "{key}");
        }
    }

    /// The device session id of a confirm is a function of the challenge (a retry finds it), a
    /// partition's ids are recognised and a foreign or untagged one is not.
    #[test]
    fn partitioned_ids_carry_their_partition() {
        use crate::domain::UserId;
        let keys = partitioned("8");
        let user = UserId::parse("u1").unwrap();
        let challenge = keys.new_challenge_id("ffee");
        assert_eq!(
            keys.device_session_id(&challenge, &user),
            keys.device_session_id(&challenge, &user)
        );
        let other = keys.new_challenge_id("ffee");
        assert_ne!(
            keys.device_session_id(&challenge, &user),
            keys.device_session_id(&other, &user)
        );
        assert_eq!(
            keys.partition_of_id(challenge.as_str()),
            Some(keys.address_partition("ffee"))
        );
        assert_eq!(keys.partition_of_id("plain"), None);
        assert_eq!(keys.partition_of_id("{zzzz}x"), None);
        assert_eq!(keys.partition_of_id("{"), None);
        let p = keys.all_partitions()[3];
        let id = keys.random_device_session_id(p);
        assert_eq!(keys.partition_of_id(id.as_str()), Some(p));
        assert!(crate::domain::DeviceSessionId::parse(id.as_str()).is_ok());
    }
}
