//! The scripts' promises, proved for every script and every key it touches, the way the platform
//! team audits them on a real redis-server:
//! - every key a script touches (seen with `MONITOR`) is one of the call's KEYS, every command it
//!   runs is in the README's ACL grant list;
//! - no partial write: with any touched key of the wrong type, any field of a hash it reads
//!   removed or garbled, or any string it reads garbled, a call that errors leaves the keyspace
//!   byte-identical (`DUMP` of every key);
//! - replay: the same call twice gives the same reply and the same keyspace as once;
//! - on a real cluster (both layouts) too, every key touched is declared, and a call during a
//!   slot migration, on the source or resent by `ASK` to the importing node, writes everything on
//!   one node or nothing anywhere;
//! - `luacheck` passes over the assembled scripts.
//!
//! A script without a scenario here fails `every_script_has_an_audit_scenario`.

use std::collections::{BTreeMap, BTreeSet};

use authsession::config::{self, Config};
use authsession::domain::Revocation;
use authsession::domain::{
    ChallengeId, ClientKey, ClientPublicKey, Code, CodeHashKey, CodeHasher, CodeHashes,
    DeviceSessionId, Email, LoginCode, RequestId, UserId,
};
use authsession::store::challenges::{ChallengeCreate, ConfirmRequest, Created, DeliveryStatus};
use authsession::store::layout::Layout;
use authsession::store::scripts::access_probe::AccessProbe;
use authsession::store::scripts::challenge_claim::ChallengeClaim;
use authsession::store::scripts::challenge_confirm::ChallengeConfirm;
use authsession::store::scripts::challenge_mark_confirmed::ChallengeMarkConfirmed;
use authsession::store::scripts::challenge_mark_delivery::ChallengeMarkDelivery;
use authsession::store::scripts::challenge_verify::ChallengeVerify;
use authsession::store::scripts::confirm_admit::ConfirmAdmit;
use authsession::store::scripts::send_admit::SendAdmit;
use authsession::store::scripts::session_create::SessionCreate;
use authsession::store::scripts::session_projection_republish::SessionProjectionRepublish;
use authsession::store::scripts::session_revoke::SessionRevoke;
use authsession::store::scripts::user_sessions_revoke::UserSessionsRevoke;
use authsession::store::scripts::{scripts, ScriptCall};
use authsession::store::{Dedicated, Redis, Store};
use authsession_testbench::keyspace::Keyspace;
use authsession_testbench::monitor::Monitor;
use authsession_testbench::{RedisCluster, RedisServer};
use base64::Engine;
use redis::AsyncCommands;

use crate::deployments::ACL_COMMANDS;
use crate::helpers::{public_key, unique_email};

/// Every scenario, by script: the state a script acts on and the call under audit.
const SCENARIOS: &[&str] = &[
    "challenge_create/new",
    "challenge_create/throttled",
    "challenge_mark_delivery/sent",
    "challenge_mark_delivery/failed",
    "challenge_verify/wrong_code",
    "challenge_verify/right_code",
    "challenge_verify/throttled_window",
    "challenge_confirm/first_login",
    "challenge_confirm/evicting_past_ghosts_and_pruning",
    "send_admit/first",
    "confirm_admit/first",
    "session_create/first_login",
    "session_create/evicting_past_ghosts_and_pruning",
    "challenge_claim/verified",
    "challenge_mark_confirmed/verified",
    "session_revoke/active",
    "session_revoke/healing_a_lost_projection",
    "user_sessions_revoke/batch",
    "session_projection_republish/missing_snapshot",
    "access_probe/every_namespace",
];

/// Scenarios whose call is the commit of a plan (the ids or user it met declared).
const PLANNED: &[&str] = &[
    "challenge_verify/wrong_code",
    "challenge_confirm/evicting_past_ghosts_and_pruning",
    "session_create/evicting_past_ghosts_and_pruning",
    "session_revoke/active",
    "user_sessions_revoke/batch",
];

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

/// Arranges the state of `scenario` and returns the call under audit.
pub(crate) async fn arrange(b: &mut Bench, scenario: &str) -> ScriptCall<'static> {
    let store = &b.store;
    let keys = &store.keys;
    let email = Email::parse(&unique_email()).unwrap();
    let wrong = hashes(&ChallengeId::generate(), &LoginCode::generate());
    let code_hash = wrong.current.clone();
    let client = client();
    match scenario {
        "challenge_create/new" => {
            let locale = authsession::domain::Locale::parse("en-GB").unwrap();
            store.call(&ChallengeCreate {
                challenge_id: &keys.layout().new_challenge_id(email.hash()),
                email: &email,
                code_hash: &code_hash,
                locale: Some(&locale),
                admit: admit(store, &client),
            })
        }
        "challenge_create/throttled" => {
            sent_challenge(b, &email).await;
            b.store.call(&ChallengeCreate {
                challenge_id: &b.store.keys.layout().new_challenge_id(email.hash()),
                email: &email,
                code_hash: &code_hash,
                locale: None,
                admit: admit(&b.store, &client),
            })
        }
        "challenge_mark_delivery/sent" | "challenge_mark_delivery/failed" => {
            let (id, _, _) = created_challenge(b, &email).await;
            let outcome = if scenario.ends_with("sent") {
                DeliveryStatus::Sent
            } else {
                DeliveryStatus::Failed
            };
            store.call(&ChallengeMarkDelivery {
                challenge_id: &id,
                email: &email,
                outcome,
            })
        }
        "challenge_verify/wrong_code" | "challenge_verify/right_code" => {
            let (id, code) = sent_challenge(b, &email).await;
            // One failure already counted, so the budget counter exists and is read.
            let key = ClientPublicKey::parse(&public_key()).unwrap();
            b.store
                .challenge_verify(
                    &id,
                    &wrong,
                    &key,
                    5,
                    admit(&b.store, &client),
                    &RequestId::generate(),
                    None,
                )
                .await
                .unwrap();
            let hash = if scenario.ends_with("right_code") {
                hashes(&id, &code)
            } else {
                wrong
            };
            b.store.call(&ChallengeVerify {
                challenge_id: &id,
                code_hashes: &hash,
                client_public_key: &key,
                max_attempts: 5,
                attempt_id: &RequestId::generate(),
                admit: admit(&b.store, &client),
                address: Some(email.hash().clone()),
            })
        }
        "challenge_verify/throttled_window" => {
            let (_, code) = sent_challenge(b, &email).await;
            let (id, _, created) = created_challenge(b, &email).await;
            assert_eq!(created, Created::Throttled);
            b.store.call(&ChallengeVerify {
                challenge_id: &id,
                code_hashes: &hashes(&id, &code),
                client_public_key: &ClientPublicKey::parse(&public_key()).unwrap(),
                max_attempts: 5,
                attempt_id: &RequestId::generate(),
                admit: admit(&b.store, &client),
                address: None,
            })
        }
        "challenge_confirm/first_login" => {
            let (id, code) = sent_challenge(b, &email).await;
            let hash = hashes(&id, &code);
            let key = ClientPublicKey::parse(&public_key()).unwrap();
            let user = new_user();
            let session = keys.layout().device_session_id(&id, &user);
            b.store.call(&confirm_call(&confirm_request(
                &id, &hash, &key, &user, &session,
            )))
        }
        "send_admit/first" => store.call(&SendAdmit {
            challenge_id: &ChallengeId::generate(),
            client: &client,
        }),
        "confirm_admit/first" => store.call(&ConfirmAdmit {
            attempt_id: &RequestId::generate(),
            client: &client,
        }),
        "session_create/first_login"
        | "challenge_claim/verified"
        | "challenge_mark_confirmed/verified" => {
            let (id, code) = sent_challenge(b, &email).await;
            let hash = hashes(&id, &code);
            let key = ClientPublicKey::parse(&public_key()).unwrap();
            let user = new_user();
            let session = keys.layout().device_session_id(&id, &user);
            let request = confirm_request(&id, &hash, &key, &user, &session);
            if scenario.starts_with("session_create") {
                b.store.call(&SessionCreate {
                    request: &request,
                    planned: Vec::new(),
                })
            } else if scenario.starts_with("challenge_claim") {
                b.store.call(&ChallengeClaim {
                    challenge_id: &id,
                    device_session_id: &session,
                    user_id: &user,
                })
            } else {
                b.store.call(&ChallengeMarkConfirmed {
                    challenge_id: &id,
                    device_session_id: &session,
                    client_public_key: &key,
                    user_id: &user,
                    confirmed_at_ms: 1_795_867_200_000,
                })
            }
        }
        "challenge_confirm/evicting_past_ghosts_and_pruning"
        | "session_create/evicting_past_ghosts_and_pruning" => {
            let user = new_user();
            let u = user.as_str();
            // A revoked session whose record has expired: its revoked-index entry is due.
            let gone = login(b, &user).await;
            b.store.session_revoke(&gone, &revocation()).await.unwrap();
            let () = b.conn.del(keys.session(&gone)).await.unwrap();
            let () = b
                .conn
                .zadd(keys.user_revoked_sessions(&user), gone.as_str(), 1)
                .await
                .unwrap();
            // Two live sessions at the limit, behind a ghost whose record is gone.
            login(b, &user).await;
            login(b, &user).await;
            // (In the user's partition, as every id the user's indexes hold.)
            let ghost = keys
                .layout()
                .random_device_session_id(keys.layout().of_user(u));
            for index in [keys.user_sessions(&user), keys.user_active_sessions(&user)] {
                let () = b.conn.zadd(index, ghost.as_str(), 0).await.unwrap();
            }
            let (id, code) = sent_challenge(b, &email).await;
            let hash = hashes(&id, &code);
            let key = ClientPublicKey::parse(&public_key()).unwrap();
            let session = keys.layout().device_session_id(&id, &user);
            let request = confirm_request(&id, &hash, &key, &user, &session);
            // The plan: every session the user's active index holds (those over the limit among
            // them).
            let planned = active_ids(b, &user).await;
            if scenario.starts_with("session_create") {
                b.store.call(&SessionCreate {
                    request: &request,
                    planned,
                })
            } else {
                b.store.call(&ChallengeConfirm {
                    request: &request,
                    planned,
                })
            }
        }
        "session_revoke/active" => {
            let user = new_user();
            let session = login(b, &user).await;
            b.store.call(&SessionRevoke {
                device_session_id: &session,
                revocation: &revocation(),
                request_id: &RequestId::generate(),
                user: Some(user.clone()),
            })
        }
        "session_revoke/healing_a_lost_projection" => {
            let user = new_user();
            let session = login(b, &user).await;
            b.store
                .session_revoke(&session, &revocation())
                .await
                .unwrap();
            let () = b.conn.del(keys.gateway_session(&session)).await.unwrap();
            let () = b
                .conn
                .zadd(keys.user_active_sessions(&user), session.as_str(), 1)
                .await
                .unwrap();
            b.store.call(&SessionRevoke {
                device_session_id: &session,
                revocation: &revocation(),
                request_id: &RequestId::generate(),
                user: Some(user.clone()),
            })
        }
        "user_sessions_revoke/batch" => {
            let user = new_user();
            login(b, &user).await;
            login(b, &user).await;
            b.store.call(&UserSessionsRevoke {
                user_id: &user,
                revocation: &revocation(),
                request_id: &RequestId::generate(),
                batch_number: 1,
                block_marker: Some(std::time::Duration::from_secs(600)),
                planned: active_ids(b, &user).await,
            })
        }
        "session_projection_republish/missing_snapshot" => {
            let session = login(b, &new_user()).await;
            let () = b.conn.del(keys.gateway_session(&session)).await.unwrap();
            b.store.call(&SessionProjectionRepublish {
                device_session_id: &session,
                request_id: &RequestId::generate(),
            })
        }
        "access_probe/every_namespace" => store.call(&AccessProbe {
            partition: keys.layout().all()[0],
        }),
        other => panic!("no arrangement for {other}"),
    }
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

/// Every way a touched key is spoiled: another type, and for values the script reads, a
/// missing or garbled field or a garbled string.
async fn spoilers(conn: &mut Dedicated, key: &str) -> Vec<Vec<redis::Cmd>> {
    let mut all = vec![vec![
        redis::cmd("DEL").arg(key).clone(),
        redis::cmd("RPUSH")
            .arg(key)
            .arg("not-an-authsession-type")
            .clone(),
    ]];
    let kind: String = redis::cmd("TYPE").arg(key).query_async(conn).await.unwrap();
    match kind.as_str() {
        "hash" => {
            let fields: Vec<String> = conn.hkeys(key).await.unwrap();
            for field in fields {
                all.push(vec![redis::cmd("HDEL").arg(key).arg(&field).clone()]);
                for garbled in GARBLED {
                    all.push(vec![redis::cmd("HSET")
                        .arg(key)
                        .arg(&field)
                        .arg(garbled)
                        .clone()]);
                }
            }
        }
        "string" => {
            for garbled in GARBLED.iter().chain(&["x{"]) {
                all.push(vec![redis::cmd("SET").arg(key).arg(garbled).clone()]);
            }
        }
        _ => {}
    }
    // A stream at its last id: `XADD *` cannot add to it (whether the stream existed or not).
    if kind == "stream" || kind == "none" {
        all.push(vec![
            redis::cmd("DEL").arg(key).clone(),
            redis::cmd("XADD")
                .arg(key)
                .arg("18446744073709551615-18446744073709551615")
                .arg("f")
                .arg("v")
                .clone(),
        ]);
    }
    all
}

/// ARGV slots whose empty value means none (the headers say "'' when none" or "'' otherwise").
const OPTIONAL_ARGS: &[&str] = &["locale", "actor_id", "code_hash_previous"];

/// The commands that write (the scripts queue them, `commit` runs them).
const WRITES: &[&str] = &[
    "hset",
    "hdel",
    "zadd",
    "zrem",
    "xadd",
    "set",
    "del",
    "pexpire",
    "pexpireat",
    "persist",
];

/// Garbled values of a field or string: not a value at all, and every number form `tonumber`
/// accepts but `INCR` and the scripts' canonical integers do not.
const GARBLED: &[&str] = &[
    "x",
    "1.5",
    "07",
    " 3",
    "1e1",
    "-0",
    "-1",
    "9007199254740993",
];

/// A glob pattern matching exactly `key` (Redis glob specials escaped).
fn literal_pattern(key: &str) -> String {
    key.chars()
        .flat_map(|c| {
            let special = matches!(c, '*' | '?' | '[' | ']' | '\\');
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// Runs `call` as an ACL user that may read and write every key in `touched` but `denied`,
/// which it may only read (`read_only`) or not access at all.
async fn run_as_restricted_user(
    b: &mut Bench,
    redis: &RedisServer,
    call: &ScriptCall<'_>,
    touched: &BTreeSet<String>,
    denied: &str,
    read_only: bool,
) -> Result<String, String> {
    let mut setuser = redis::cmd("ACL");
    setuser
        .arg("SETUSER")
        .arg("audited")
        .arg("reset")
        .arg("on")
        .arg(">audit-pw")
        .arg("+@all");
    for key in touched.iter().filter(|k| *k != denied) {
        setuser.arg(format!("~{}", literal_pattern(key)));
    }
    if read_only {
        setuser.arg(format!("%R~{}", literal_pattern(denied)));
    }
    let () = setuser.query_async(&mut b.conn).await.unwrap();
    let client = redis::Client::open(format!("redis://audited:audit-pw@{}", redis.addr())).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    call.evalsha()
        .query_async::<redis::Value>(&mut conn)
        .await
        .map(|v| format!("{v:?}"))
        .map_err(|e| e.to_string())
}

/// The commands `monitor` saw since the last mark, up to a fresh marker (`ECHO`) sent on `conn`,
/// a connection to the node it watches.
async fn seen_until_mark(
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
async fn keys_of(conn: &mut Dedicated, command: &[Vec<u8>]) -> Vec<String> {
    let mut cmd = redis::cmd("COMMAND");
    cmd.arg("GETKEYS");
    for arg in command {
        cmd.arg(arg.as_slice());
    }
    cmd.query_async(conn).await.unwrap_or_default()
}

#[test]
fn every_script_has_an_audit_scenario() {
    for script in scripts().all() {
        assert!(
            SCENARIOS
                .iter()
                .any(|s| s.split('/').next() == Some(script.name)),
            "lua/{}.lua has no scenario in tests/api/scripts_audit.rs",
            script.name
        );
        if !script.header.planned.0.is_empty() || script.name == "session_revoke" {
            assert!(
                PLANNED
                    .iter()
                    .any(|s| s.split('/').next() == Some(script.name)),
                "lua/{}.lua plans keys but no scenario commits a plan",
                script.name
            );
        }
    }
}

#[tokio::test]
async fn every_script_touches_only_its_declared_keys_and_never_writes_partially_or_twice() {
    let redis = RedisServer::start().await;
    let mut b = standalone(&redis).await;
    let mut monitor = Monitor::start(&redis.addr()).await;
    let mut commands_seen = BTreeSet::new();
    let mut report = Vec::new();

    for scenario in SCENARIOS {
        let () = redis::cmd("FLUSHALL")
            .query_async(&mut b.conn)
            .await
            .unwrap();
        let call = arrange(&mut b, scenario).await;
        let script = call.script();
        let before = Keyspace::capture(&mut b.conn).await;

        // Once, watched: which keys and commands the script used.
        seen_until_mark(&mut monitor, &mut b.conn).await; // the arrangement's commands
        let first = run(&b, &call).await;
        let commands = seen_until_mark(&mut monitor, &mut b.conn).await;
        let first = first.unwrap_or_else(|e| panic!("{scenario}: the call must succeed: {e}"));
        let once = Keyspace::capture(&mut b.conn).await;

        // Every key the script touches, and the order: once it has written, it touches no key
        // it had not touched before (the preflight reached each one first).
        let mut touched = BTreeSet::new();
        let mut wrote = false;
        for command in &commands {
            let name = String::from_utf8_lossy(&command[0]).to_lowercase();
            commands_seen.insert(name.clone());
            for key in keys_of(&mut b.conn, command).await {
                assert!(
                    !wrote || touched.contains(&key),
                    "{scenario}: `{name}` touched {key} first after the script's first write"
                );
                touched.insert(key);
            }
            wrote |= WRITES.contains(&name.as_str());
        }
        assert_declared(&b.store, scenario, &call, &touched);
        // Replay: the same call again answers the same and changes nothing. (A right code's
        // verdict carries the moment it was given: a replay gives it anew, with its own time.)
        let again = run(&b, &call).await.expect("replay succeeds");
        let timeless = |reply: &str| match reply.find("), int(") {
            Some(at) if reply.contains("bulk-string('\"ok\"')") => reply[..at].to_owned(),
            _ => reply.to_owned(),
        };
        assert_eq!(
            timeless(&again),
            timeless(&first),
            "{scenario}: a replay answers like the first call"
        );
        let twice = Keyspace::capture(&mut b.conn).await;
        assert_eq!(
            once.differences(&twice),
            Vec::<String>::new(),
            "{scenario}: a replay changed keys"
        );

        // No partial write, whatever is spoiled.
        let (mut runs, mut refused) = (0, 0);
        for key in &touched {
            before.restore(&mut b.conn).await;
            for spoil in spoilers(&mut b.conn, key).await {
                before.restore(&mut b.conn).await;
                for cmd in &spoil {
                    let () = cmd.query_async(&mut b.conn).await.unwrap();
                }
                let spoiled = Keyspace::capture(&mut b.conn).await;
                runs += 1;
                if let Err(error) = run(&b, &call).await {
                    refused += 1;
                    let after = Keyspace::capture(&mut b.conn).await;
                    assert_eq!(
                        spoiled.differences(&after),
                        Vec::<String>::new(),
                        "{scenario}: failed ({error}) after writing, with {key} spoiled by {:?}",
                        spoil
                            .iter()
                            .map(|c| String::from_utf8_lossy(&c.get_packed_command()).into_owned())
                            .collect::<Vec<_>>()
                    );
                }
            }
        }
        // No partial write, whatever permission is missing: each touched key in turn readable
        // only, then not accessible at all, to a user with every other key.
        for key in &touched {
            for read_only in [true, false] {
                before.restore(&mut b.conn).await;
                runs += 1;
                let result =
                    run_as_restricted_user(&mut b, &redis, &call, &touched, key, read_only).await;
                if let Err(error) = result {
                    refused += 1;
                    let after = Keyspace::capture(&mut b.conn).await;
                    assert_eq!(
                        before.differences(&after),
                        Vec::<String>::new(),
                        "{scenario}: failed ({error}) after writing, with {key} denied \
                         (read_only: {read_only})"
                    );
                }
            }
        }
        // Every ARGV slot is checked by its declared type before anything is written: each one
        // emptied (but those whose '' means none) is refused, and so is a call one ARGV short.
        for (i, name) in script.header.args.iter().enumerate() {
            if OPTIONAL_ARGS.contains(&name.as_str()) {
                continue;
            }
            let mut emptied = call.clone();
            emptied.args_mut()[i] = String::new();
            before.restore(&mut b.conn).await;
            runs += 1;
            refused_whole(
                &mut b,
                &emptied,
                &before,
                scenario,
                &format!("ARGV {name} empty"),
            )
            .await;
            refused += 1;
        }
        if let Some((_, head)) = call.args().split_last() {
            // Sent by hand: the wrappers cannot build a call that drifts from its header.
            let mut short = redis::cmd("EVALSHA");
            short
                .arg(&script.sha1)
                .arg(call.keys().len())
                .arg(call.keys())
                .arg(head);
            before.restore(&mut b.conn).await;
            runs += 1;
            let result: Result<redis::Value, _> = short.query_async(&mut b.conn).await;
            let after = Keyspace::capture(&mut b.conn).await;
            assert!(result.is_err(), "{scenario}: one ARGV short: {result:?}");
            assert_eq!(
                before.differences(&after),
                Vec::<String>::new(),
                "{scenario}"
            );
            refused += 1;
        }
        report.push(format!(
            "{scenario}: {} keys touched, {runs} spoiled runs, {refused} refused whole",
            touched.len()
        ));
    }
    for command in &commands_seen {
        assert!(
            ACL_COMMANDS.iter().any(|grant| {
                let grant = grant.trim_start_matches('+');
                grant == command || grant.split('|').next() == Some(command.as_str())
            }),
            "scripts run `{command}`, which the README's ACL grant list lacks"
        );
    }
    println!("{}", report.join("\n"));
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

/// The `MONITOR` proof on a real 3-primary cluster, in either layout: every scenario's call (on
/// the cluster connection, routed by its first key) touches only keys of its KEYS, whichever
/// node runs it.
#[tokio::test]
async fn on_a_cluster_every_key_a_call_touches_is_declared_in_either_layout() {
    let cluster = RedisCluster::start(3, 0).await;
    let primaries = cluster.primary_ports().await;
    let mut monitors = Vec::new();
    for port in &primaries {
        let node = cluster.nodes.iter().find(|n| n.port() == *port).unwrap();
        monitors.push((Monitor::start(&node.addr()).await, node.connection().await));
    }
    let (_, single_tag) = single_tag_cluster_env(&cluster);
    let single_tag = store_for(&single_tag);
    let mut layouts = vec![Bench {
        conn: single_tag.redis.dedicated().await.unwrap(),
        store: single_tag,
    }];
    layouts.push(partitioned_bench(&cluster).await);
    for mut b in layouts {
        let partitioned = b.store.keys.layout().is_partitioned();
        for scenario in SCENARIOS {
            if partitioned && scenario.starts_with("challenge_confirm/") {
                continue; // the single-tag layout's confirm
            }
            let call = arrange(&mut b, scenario).await;
            for (monitor, conn) in &mut monitors {
                seen_until_mark(monitor, conn).await;
            }
            run(&b, &call)
                .await
                .unwrap_or_else(|e| panic!("{scenario}: the call must succeed: {e}"));
            let mut touched = BTreeSet::new();
            for (monitor, conn) in &mut monitors {
                for command in seen_until_mark(monitor, conn).await {
                    touched.extend(keys_of(&mut b.conn, &command).await);
                }
            }
            assert!(!touched.is_empty(), "{scenario}: MONITOR saw the call");
            assert_declared(&b.store, scenario, &call, &touched);
        }
    }
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

/// The partitioned layout admits the client apart, in the client's partition (`send_admit`,
/// `confirm_admit`). Its create and verify calls used to carry the admission anyway: a key of the
/// address's slot that was never touched and a limit of 0. They now carry none of the optional
/// admission slots, and the scripts run without them.
#[tokio::test]
async fn in_the_partitioned_layout_create_and_verify_carry_no_admission() {
    let cluster = RedisCluster::start(3, 0).await;
    let mut b = partitioned_bench(&cluster).await;
    let (email, client) = (Email::parse(&unique_email()).unwrap(), client());
    let id = b.store.keys.layout().new_challenge_id(email.hash());
    let create = b.store.call(&ChallengeCreate {
        challenge_id: &id,
        email: &email,
        code_hash: &hashes(&id, &LoginCode::generate()).current,
        locale: None,
        admit: admit(&b.store, &client),
    });
    let verify = arrange(&mut b, "challenge_verify/wrong_code").await;
    // (The verify declares the address's failure counter, and its hash.)
    for (call, keys, args) in [(create, 2, 8), (verify, 2, 8)] {
        let script = call.script().name;
        assert_eq!(
            (call.keys().len(), call.args().len()),
            (keys, args),
            "{script}: {:?}",
            call.keys()
        );
        assert!(
            call.keys().iter().all(|k| !k.contains("rate:")),
            "{script}: {:?}",
            call.keys()
        );
        let reply = run(&b, &call).await.unwrap();
        assert!(!reply.contains("rate_limited"), "{script}: {reply}");
    }
}

/// Issue 34 item 2, enforced and not just followed: a script built on `lua/include/commit.lua`
/// cannot touch a key its call did not declare. A probe that reads, and one that writes, an
/// undeclared key fail the call before the declared key is written.
#[tokio::test]
async fn the_commit_include_refuses_any_key_not_in_keys() {
    let redis = RedisServer::start().await;
    let mut conn = redis.connection().await;
    for (name, body) in [
        (
            "reads",
            "write('SET', KEYS[1], 'x')\nread('GET', 'undeclared')\ncommit()\nreturn 'ok'\n",
        ),
        (
            "writes",
            "write('SET', KEYS[1], 'x')\nwrite('SET', 'undeclared', 'x')\ncommit()\nreturn 'ok'\n",
        ),
        (
            "checks absence",
            "write('SET', KEYS[1], 'x')\nread_none(KEYS[1], 'undeclared')\ncommit()\nreturn 'ok'\n",
        ),
    ] {
        let source = format!(
            "#!lua\n-- probe, version: 1\n-- KEYS[1] challenge\n\
             --!include common.lua: fail\n\
             --!include commit.lua: DECLARED, declared, WRITE_TYPES, READ_TYPES, SEEN, WRITES, \
             STREAM_LAST_MS, read, read_none, write, commit_stream_check, commit\n{body}"
        );
        let script = authsession::store::scripts::assemble_source("probe", &source);
        let result: redis::RedisResult<String> = redis::cmd("EVAL")
            .arg(&script)
            .arg(1)
            .arg("declared")
            .query_async(&mut conn)
            .await;
        let error = result.expect_err(name).to_string();
        assert!(
            error.contains("undeclared key undeclared"),
            "{name}: {error}"
        );
        let written: Option<String> = conn.get("declared").await.unwrap();
        assert_eq!(written, None, "{name}: wrote before refusing");
        let touched: Option<String> = conn.get("undeclared").await.unwrap();
        assert_eq!(touched, None, "{name}");
    }
}

#[test]
fn luacheck_passes_over_the_assembled_scripts() {
    let installed = std::process::Command::new("luacheck")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let found = installed.then(|| "luacheck".into());
    let install = "Debian package lua-check; the README's test command installs it";
    let Some(luacheck) = crate::helpers::tool("luacheck", found, install) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for script in scripts().all() {
        std::fs::write(
            dir.path().join(format!("{}.lua", script.name)),
            &script.body,
        )
        .unwrap();
    }
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/lua/.luacheckrc");
    let output = std::process::Command::new(luacheck)
        .arg("--no-color")
        .arg("--config")
        .arg(config)
        .arg(dir.path())
        .output()
        .expect("luacheck runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// Creates, with a harmless value, each declared key of `call` that is missing and whose presence
/// changes nothing the script decides: a declared key missing in a `MIGRATING` slot makes Redis
/// answer `ASK` before the script runs, so only with its declared keys present does a call reach
/// its derived keys on the source (the case of a block during a migration).
async fn fill_declared_keys(
    b: &Bench,
    call: &ScriptCall<'_>,
    conn: &mut redis::aio::MultiplexedConnection,
) {
    for key in call.keys() {
        let exists: bool = conn.exists(key).await.unwrap();
        let fill = match b.store.keys.kind_of(key) {
            _ if exists => continue,
            Some("revoke_batches") => redis::cmd("HSET").arg(key).arg("0").arg("0:0").clone(),
            Some("user_sessions" | "user_active_sessions" | "user_revoked_sessions") => {
                redis::cmd("ZADD")
                    .arg(key)
                    .arg(1)
                    .arg("placeholder")
                    .clone()
            }
            Some("stream") => redis::cmd("XADD")
                .arg(key)
                .arg("*")
                .arg("f")
                .arg("v")
                .clone(),
            Some("gateway_session") => redis::cmd("SET").arg(key).arg("{}").clone(),
            // A block's marker decides a confirm; a confirm's new session key is missing anyway.
            Some("user_blocked") if call.script().header.keys.iter().all(|k| k != "session") => {
                redis::cmd("SET").arg(key).arg("1").clone()
            }
            _ => continue,
        };
        let _: redis::Value = fill.query_async(conn).await.unwrap();
    }
}

/// The slot-migration error class, for every scenario on a real cluster (single-tag layout): the
/// slot `MIGRATING` on the source and `IMPORTING` on the target, and each key the call finds in
/// turn already moved to the target (and once none), its declared keys present where that changes
/// no decision. Sent to the source, the call fails (Redis refuses access to a key it no longer
/// holds, or a declared key with `ASK`) having written nothing there, or does all of its work.
#[tokio::test]
async fn during_a_slot_migration_every_script_writes_all_or_nothing() {
    let cluster = RedisCluster::start(3, 0).await;
    let (tag, env) = single_tag_cluster_env(&cluster);
    let mut migration = cluster.slot_migration(&format!("{{{tag}}}")).await;
    let mut src = migration.source_connection();
    let mut b = Bench {
        store: store_for(&env),
        conn: Dedicated::Single(src.clone()),
    };
    let without = |ks: &Keyspace, key: &str| {
        let mut ks = Keyspace(ks.0.clone());
        ks.0.remove(key);
        ks
    };
    let (mut runs, mut refused) = (0, 0);
    for scenario in SCENARIOS {
        let () = redis::cmd("FLUSHALL").query_async(&mut src).await.unwrap();
        let call = arrange(&mut b, scenario).await;
        fill_declared_keys(&b, &call, &mut src).await;
        let before = Keyspace::capture(&mut src).await;
        run(&b, &call).await.expect("the call succeeds"); // (and loads the script)
        let once = Keyspace::capture(&mut src).await;
        let done = before.differences(&once);
        let moved: Vec<Option<String>> = std::iter::once(None)
            .chain(before.0.keys().cloned().map(Some))
            .collect();
        for key in moved {
            before.restore(&mut src).await;
            migration.begin().await;
            if let Some(key) = &key {
                migration.move_key(key).await;
            }
            runs += 1;
            let result: Result<redis::Value, _> = call.evalsha().query_async(&mut src).await;
            let after = Keyspace::capture(&mut src).await;
            migration.call_off().await;
            let moved = key.as_deref().unwrap_or_default();
            let (before, after) = (without(&before, moved), without(&after, moved));
            match result {
                Err(error) => {
                    refused += 1;
                    assert_eq!(
                        before.differences(&after),
                        Vec::<String>::new(),
                        "{scenario}: failed ({error}) after writing, with {moved:?} moved"
                    );
                }
                Ok(_) => {
                    let wrote = before.differences(&after);
                    let expected: Vec<String> =
                        done.iter().filter(|k| *k != moved).cloned().collect();
                    assert_eq!(
                        wrote, expected,
                        "{scenario}: part of its work, {moved:?} moved"
                    );
                }
            }
        }
    }
    println!("slot migration: {runs} calls, {refused} refused whole");
}

/// The importing side of a migration, for every scenario: every key of the slot moved to the
/// target, the call resent there with `ASKING` (as the cluster client follows `ASK`). It does all
/// of its work there or fails having written nothing on either node, and no key ends on both
/// nodes (which would halt the migration on `BUSYKEY`).
#[tokio::test]
async fn resent_by_ask_to_the_importing_node_every_script_writes_all_or_nothing_there() {
    let cluster = RedisCluster::start(3, 0).await;
    let (tag, env) = single_tag_cluster_env(&cluster);
    let mut migration = cluster.slot_migration(&format!("{{{tag}}}")).await;
    let (mut src, mut dst) = (migration.source_connection(), migration.target_connection());
    let mut b = Bench {
        store: store_for(&env),
        conn: Dedicated::Single(src.clone()),
    };
    let (mut ran, mut refused) = (0, 0);
    for scenario in SCENARIOS {
        for conn in [&mut src, &mut dst] {
            let () = redis::cmd("FLUSHALL").query_async(conn).await.unwrap();
        }
        let call = arrange(&mut b, scenario).await;
        fill_declared_keys(&b, &call, &mut src).await;
        let before = Keyspace::capture(&mut src).await;
        run(&b, &call).await.expect("the call succeeds");
        let done = before.differences(&Keyspace::capture(&mut src).await);
        before.restore(&mut src).await;

        migration.begin().await;
        migration.move_all().await;
        let moved = Keyspace::capture_importing(&mut dst).await;
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(&call.script().body)
            .query_async(&mut dst)
            .await
            .unwrap();
        let mut pipe = redis::pipe();
        pipe.cmd("ASKING").ignore().add_command(call.evalsha());
        let result: Result<(redis::Value,), _> = pipe.query_async(&mut dst).await;
        let (on_src, on_dst) = (
            Keyspace::capture(&mut src).await,
            Keyspace::capture_importing(&mut dst).await,
        );
        assert!(
            on_src.0.keys().all(|k| !on_dst.0.contains_key(k)),
            "{scenario}: a key on both nodes"
        );
        assert!(on_src.0.is_empty(), "{scenario}: wrote on the source");
        match result {
            Ok(_) => {
                ran += 1;
                assert_eq!(
                    moved.differences(&on_dst),
                    done,
                    "{scenario}: part of its work"
                );
            }
            Err(error) => {
                refused += 1;
                assert_eq!(
                    moved.differences(&on_dst),
                    Vec::<String>::new(),
                    "{scenario}: failed ({error}) after writing on the importing node"
                );
            }
        }
        // (Keys the call created on the target stay there until the next scenario's FLUSHALL.)
        migration.call_off().await;
    }
    println!("importing node: {ran} calls ran there, {refused} refused whole");
    assert!(ran > 0, "some scenario ran on the importing node");
}
