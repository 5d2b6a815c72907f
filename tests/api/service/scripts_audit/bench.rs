//! The audit's bench: a store and a connection on real Redis, and the helpers that arrange states
//! (challenges, logins) through the store's own calls.

use std::collections::{BTreeMap, BTreeSet};

use authsession::config::{self, Config};
use authsession::domain::Revocation;
use authsession::domain::{
    ChallengeId, ClientKey, ClientPublicKey, Code, CodeHashKey, CodeHasher, CodeHashes,
    DeviceSessionId, Email, LoginCode, UserId,
};
use authsession::store::challenges::{ChallengeCreate, ConfirmRequest, Created, DeliveryStatus};
use authsession::store::layout::Layout;
use authsession::store::scripts::challenge_confirm::ChallengeConfirm;
use authsession::store::scripts::ScriptCall;
use authsession::store::{Dedicated, Redis, Store};
use authsession_testbench::keyspace::Keyspace;
use authsession_testbench::monitor::Monitor;
use authsession_testbench::{RedisCluster, RedisServer};
use base64::Engine;
use redis::AsyncCommands;

use crate::helpers::{public_key, unique_email};

pub(crate) const MAX_ACTIVE: u32 = 2;

pub(crate) struct Bench {
    pub(crate) store: Store,
    /// Straight to the server, or (partitioned layout) a cluster connection routing each key.
    pub(crate) conn: Dedicated,
}

pub(crate) fn store_for(env: &BTreeMap<&str, String>) -> Store {
    let env: std::collections::HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let config = Config::from_source(&env).expect("valid configuration");
    Store::new(
        Redis::new(&config.redis).expect("redis client"),
        &config.redis,
        &config.gateway,
        &config.policy,
    )
}

/// Every admission limit on, so the scripts' counters are among the audited keys.
pub(crate) const LIMITS: [(&str, &str); 3] = [
    (config::SEND_RATE_LIMIT_PER_IP, "1000/1m"),
    (config::CONFIRM_RATE_LIMIT_PER_IP, "1000/1m"),
    (config::SEND_RATE_LIMIT_GLOBAL, "100000/1m"),
];

pub(crate) async fn standalone(redis: &RedisServer) -> Bench {
    let mut env = BTreeMap::from([(config::REDIS_ADDR, redis.addr())]);
    env.extend(LIMITS.map(|(k, v)| (k, v.to_owned())));
    Bench {
        store: store_for(&env),
        conn: Dedicated::Single(redis.connection().await),
    }
}

/// A challenge marked `sent`, and its code.
pub(crate) async fn sent_challenge(b: &Bench, email: &Email) -> (ChallengeId, LoginCode) {
    let (id, code, _) = created_challenge(b, email).await;
    b.store
        .challenge_mark_delivery(&id, email, DeliveryStatus::Sent)
        .await
        .unwrap();
    (id, code)
}

/// A challenge created for `email` (inside the address's resend window: throttled), not marked.
pub(crate) async fn created_challenge(
    b: &Bench,
    email: &Email,
) -> (ChallengeId, LoginCode, Created) {
    let id = b.store.keys.layout().new_challenge_id(email.hash());
    let code = LoginCode::generate();
    let client = client();
    let created = b
        .store
        .challenge_create(&ChallengeCreate {
            challenge_id: &id,
            email,
            code_hash: &hashes(&id, &code).current,
            locale: None,
            admit: admit(&b.store, &client),
        })
        .await
        .unwrap();
    (id, code, created)
}

/// The code's hashes under a rotation (current and previous key), so both ARGV are exercised.
pub(crate) fn hashes(id: &ChallengeId, code: &LoginCode) -> CodeHashes {
    let key =
        |b: u8| CodeHashKey::parse(&base64::engine::general_purpose::STANDARD.encode([b; 32]));
    CodeHasher::new(key(1).unwrap(), Some(key(2).unwrap())).hashes(id, code)
}

pub(crate) fn confirm_request<'a>(
    id: &'a ChallengeId,
    code_hashes: &'a CodeHashes,
    key: &'a ClientPublicKey,
    user: &'a UserId,
    session: &'a DeviceSessionId,
) -> ConfirmRequest<'a> {
    ConfirmRequest {
        challenge_id: id,
        code_hashes,
        client_public_key: key,
        user_id: user,
        device_session_id: session,
        max_attempts: 5,
        max_active_sessions: MAX_ACTIVE,
        verified_at_ms: authsession_testbench::now_ms(),
        via: None,
    }
}

/// A first-login confirm call (nothing to evict, so nothing planned).
pub(crate) fn confirm_call<'a>(request: &'a ConfirmRequest<'a>) -> ChallengeConfirm<'a> {
    ChallengeConfirm {
        request,
        planned: Vec::new(),
    }
}

/// A full login of `user`; returns the new session.
pub(crate) async fn login(b: &Bench, user: &UserId) -> DeviceSessionId {
    let email = Email::parse(&unique_email()).unwrap();
    let (id, code) = sent_challenge(b, &email).await;
    let session = b.store.keys.layout().device_session_id(&id, user);
    let key = ClientPublicKey::parse(&public_key()).unwrap();
    let hash = hashes(&id, &code);
    let request = confirm_request(&id, &hash, &key, user, &session);
    authsession::flows::confirm_email_code::open_session(&b.store, &request)
        .await
        .unwrap();
    session
}

/// The requester, with every admission limit on (so the harness covers the counters).
pub(crate) fn client() -> ClientKey {
    CodeHasher::development().client_key("192.0.2.7".parse().unwrap())
}

/// The admission a create or verify call carries, as `flows::admission` decides it: the client,
/// with the work, in the single-tag layout; none in the partitioned one (admitted apart).
pub(crate) fn admit<'a>(store: &Store, client: &'a ClientKey) -> Option<&'a ClientKey> {
    matches!(store.keys.layout(), Layout::SingleTag).then_some(client)
}

pub(crate) fn revocation() -> Revocation {
    Revocation {
        reason_code: Code::known("admin_revoke"),
        actor_type: Code::known("admin"),
        actor_id: None,
    }
}

pub(crate) fn new_user() -> UserId {
    UserId::parse(&format!("u{:x}", rand::random::<u64>())).unwrap()
}

/// The ids of the user's active index, oldest first: what a caller that plans them declares.
pub(crate) async fn active_ids(b: &Bench, user: &UserId) -> Vec<DeviceSessionId> {
    let mut conn = b.conn.clone();
    let ids: Vec<String> = conn
        .zrange(b.store.keys.user_active_sessions(user), 0, -1)
        .await
        .unwrap();
    ids.iter()
        .map(|id| DeviceSessionId::from_stored(id))
        .collect()
}

pub(crate) async fn run(b: &Bench, call: &ScriptCall<'_>) -> Result<String, String> {
    b.store
        .redis
        .invoke(call)
        .await
        .map(|v| format!("{v:?}"))
        .map_err(|e| e.to_string())
}

/// The commands `monitor` saw since the last mark, up to a fresh marker (`ECHO`) sent on `conn`,
/// a connection to the node it watches.
pub(crate) async fn seen_until_mark(
    monitor: &mut Monitor,
    conn: &mut (impl redis::aio::ConnectionLike + Send),
) -> Vec<authsession_testbench::monitor::Command> {
    let marker = format!("audit-mark-{}", rand::random::<u64>());
    let _: String = redis::cmd("ECHO")
        .arg(&marker)
        .query_async(conn)
        .await
        .unwrap();
    monitor.script_commands_until(&marker).await
}

/// The keys each command touched, as Redis itself parses them (`COMMAND GETKEYS`).
pub(crate) async fn keys_of(conn: &mut Dedicated, command: &[Vec<u8>]) -> Vec<String> {
    let mut cmd = redis::cmd("COMMAND");
    cmd.arg("GETKEYS");
    for arg in command {
        cmd.arg(arg.as_slice());
    }
    cmd.query_async(conn).await.unwrap_or_default()
}

/// Every key a call touched is one of its KEYS, and each KEYS slot holds a key of the kind the
/// header names there (the planned tail's kinds repeat).
pub(crate) fn assert_declared(
    store: &Store,
    scenario: &str,
    call: &ScriptCall<'_>,
    touched: &BTreeSet<String>,
) {
    let (kinds, _) = call
        .script()
        .header
        .slot_names(call.keys().len(), call.args().len())
        .unwrap_or_else(|| panic!("{scenario}: a call of no shape the header allows"));
    for (i, (key, kind)) in call.keys().iter().zip(kinds).enumerate() {
        assert_eq!(
            store.keys.kind_of(key),
            Some(kind),
            "{scenario}: KEYS[{}] {key}",
            i + 1
        );
    }
    for key in touched {
        assert!(
            call.keys().contains(key),
            "{scenario}: touched {key} ({}), which is not in the call's KEYS",
            store.keys.kind_of(key).unwrap_or("outside the namespaces")
        );
    }
}

/// A configuration of the single-tag layout on `cluster` with every admission limit on: its tag
/// and the variables.
pub(crate) fn single_tag_cluster_env(
    cluster: &RedisCluster,
) -> (String, BTreeMap<&'static str, String>) {
    let tag = format!("t{:x}", rand::random::<u32>());
    let mut env = BTreeMap::from([
        (config::REDIS_MODE, "cluster".to_owned()),
        (config::REDIS_ADDR, cluster.seeds()),
        (config::REDIS_KEY_PREFIX, format!("{{{tag}}}authsession:")),
        (
            config::GATEWAY_SESSION_KEY_PREFIX,
            format!("{{{tag}}}gateway:session:"),
        ),
        (
            config::GATEWAY_SESSION_EVENTS_STREAM,
            format!("{{{tag}}}gateway:session_events"),
        ),
    ]);
    env.extend(LIMITS.map(|(k, v)| (k, v.to_owned())));
    (tag, env)
}

/// The partitioned layout over 8 partitions on `cluster`, every admission limit on; its
/// connection routes each key to its primary.
pub(crate) async fn partitioned_bench(cluster: &RedisCluster) -> Bench {
    let (prefix, gateway, stream) = authsession_testbench::cluster_names(true);
    let mut env = BTreeMap::from([
        (config::REDIS_MODE, "cluster".to_owned()),
        (config::REDIS_PARTITIONS, "8".to_owned()),
        (config::REDIS_ADDR, cluster.seeds()),
        (config::REDIS_KEY_PREFIX, prefix),
        (config::GATEWAY_SESSION_KEY_PREFIX, gateway),
        (config::GATEWAY_SESSION_EVENTS_STREAM, stream),
    ]);
    env.extend(LIMITS.map(|(k, v)| (k, v.to_owned())));
    let store = store_for(&env);
    let conn = store.redis.dedicated().await.unwrap();
    Bench { store, conn }
}

/// Runs `call`, which must fail (`refusal` says why it should have), leaving the keyspace as
/// `before`.
pub(crate) async fn refused_whole(
    b: &mut Bench,
    call: &ScriptCall<'_>,
    before: &Keyspace,
    scenario: &str,
    refusal: &str,
) {
    let result = run(b, call).await;
    let after = Keyspace::capture(&mut b.conn).await;
    assert!(result.is_err(), "{scenario}: {refusal}: {result:?}");
    assert_eq!(
        before.differences(&after),
        Vec::<String>::new(),
        "{scenario}: failed after writing"
    );
}
