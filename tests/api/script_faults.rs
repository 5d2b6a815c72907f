//! Faults a script meets part way, each from the second scripts audit, tried on real Redis: the
//! call is refused before its first write (`lua/include/commit.lua` preflights every write), or
//! the script's bounded steps reach the state the contract promises.

use std::time::Duration;

use authsession::domain::{ClientPublicKey, RequestId, SessionStatus};
use authsession::store::challenges::{Confirmed, Rejection};
use authsession::store::scripts::challenge_claim::{ChallengeClaim, Claimed};
use authsession::store::scripts::confirm_admit::ConfirmAdmit;
use authsession::store::scripts::user_sessions_revoke::UserSessionsRevoke;
use authsession::store::{Dedicated, Error};
use authsession_testbench::keyspace::Keyspace;
use authsession_testbench::{RedisCluster, RedisServer};
use redis::AsyncCommands;

use crate::helpers::{public_key, session_id, unique_email};
use crate::scripts_audit::{
    active_ids, client, confirm_request, hashes, login, new_user, partitioned_bench, refused_whole,
    revocation, sent_challenge, single_tag_cluster_env, standalone, store_for, Bench, MAX_ACTIVE,
};

const BLOCK_MARKER: Duration = Duration::from_secs(600);

/// Finding 1 (a block during a slot migration left a revoked record with an active snapshot).
/// With the tag's slot migrating and one session's snapshot key already moved to the target, a
/// block batch fails having written nothing on the source; once the key is back, the retried
/// block revokes every session and its snapshot. (Finding 3, a gateway prefix of another slot,
/// has no place left: no prefix travels in ARGV, every key is declared.)
#[tokio::test]
async fn on_a_cluster_a_block_meeting_a_moved_snapshot_key_writes_nothing() {
    let cluster = RedisCluster::start(3, 0).await;
    let (tag, env) = single_tag_cluster_env(&cluster);
    let mut migration = cluster.slot_migration(&format!("{{{tag}}}")).await;
    let mut b = Bench {
        store: store_for(&env),
        conn: Dedicated::Single(migration.source_connection()),
    };
    let keys = b.store.keys.clone();
    let user = new_user();
    // Three logins at a limit of two: one session evicted (so the revoked index exists), two
    // active. Every KEYS slot of the block's first batch exists on the source.
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(login(&b, &user).await);
    }
    let request = RequestId::generate();
    let mut src = migration.source_connection();
    let () = src
        .hset(keys.revoke_batches(&user, &request), "99", "0:0")
        .await
        .unwrap();
    let () = src.set(keys.user_blocked(&user), "1").await.unwrap();

    // The slot migrating, the newest session's snapshot already on the target.
    migration.begin().await;
    migration
        .move_key(&keys.gateway_session(&sessions[2]))
        .await;
    // The batch planned (its records and snapshots declared): Redis itself refuses a call whose
    // declared keys are split between the nodes (`TRYAGAIN`), before the script runs.
    let planned = active_ids(&b, &user).await;
    let call = b.store.call(&UserSessionsRevoke {
        user_id: &user,
        revocation: &revocation(),
        request_id: &request,
        batch_number: 1,
        block_marker: Some(BLOCK_MARKER),
        planned,
    });
    let before = Keyspace::capture(&mut b.conn).await;
    refused_whole(
        &mut b,
        &call,
        &before,
        "block",
        "a snapshot key moved mid-migration",
    )
    .await;

    // The migration called off; the block's retry then revokes everything.
    migration.call_off().await;
    b.store
        .user_sessions_revoke(&user, &revocation(), Some(BLOCK_MARKER))
        .await
        .unwrap();
    for id in &sessions {
        let record = b.store.session_get(id).await.unwrap().unwrap();
        assert_eq!(record.status, SessionStatus::Revoked, "{id}");
        let snapshot: String = b.conn.get(keys.gateway_session(id)).await.unwrap();
        assert!(snapshot.contains("\"status\":\"revoked\""), "{snapshot}");
    }
}

/// Finding 5: a record whose `device_session_id` field disagrees with its key made revoke-all
/// write to another key and loop forever. The key the index names is revoked (its id field
/// rewritten), and the loop ends.
#[tokio::test]
async fn revoke_all_revokes_by_the_key_it_loaded_and_ends() {
    let redis = RedisServer::start().await;
    let mut b = standalone(&redis).await;
    let user = new_user();
    let (one, two) = (login(&b, &user).await, login(&b, &user).await);
    let key = b.store.keys.session(&one);
    let () = b
        .conn
        .hset(&key, "device_session_id", "someone-else")
        .await
        .unwrap();
    let revoked = tokio::time::timeout(
        Duration::from_secs(10),
        b.store.user_sessions_revoke(&user, &revocation(), None),
    )
    .await
    .expect("revoke-all ends")
    .unwrap();
    assert_eq!(revoked, 2);
    for id in [&one, &two] {
        let record = b.store.session_get(id).await.unwrap().unwrap();
        assert_eq!(record.status, SessionStatus::Revoked);
        assert_eq!(record.device_session_id.as_str(), id.as_str());
    }
    let strays: Vec<String> = b
        .conn
        .keys(b.store.keys.session(&session_id("someone-else")))
        .await
        .unwrap();
    assert!(strays.is_empty(), "wrote to {strays:?}");
}

/// Finding 8: with many ghosts (index entries whose record is gone) ahead of the live sessions,
/// a login scanned a bounded window and left the user over the limit. The limit holds exactly
/// after every login, whatever the index holds.
#[tokio::test]
async fn the_session_limit_holds_exactly_behind_a_thousand_ghosts() {
    let redis = RedisServer::start().await;
    let mut b = standalone(&redis).await;
    let user = new_user();
    let keys = b.store.keys.clone();
    let live = [login(&b, &user).await, login(&b, &user).await];
    for i in 0..1000 {
        let ghost = format!("ghost{i:04}");
        let () = b
            .conn
            .zadd(keys.user_active_sessions(&user), &ghost, 0)
            .await
            .unwrap();
    }
    let newest = login(&b, &user).await;
    let active: Vec<String> = b
        .conn
        .zrange(keys.user_active_sessions(&user), 0, -1)
        .await
        .unwrap();
    assert_eq!(
        active.len(),
        MAX_ACTIVE as usize,
        "{} entries",
        active.len()
    );
    assert!(active.contains(&newest.as_str().to_owned()));
    let oldest = b.store.session_get(&live[0]).await.unwrap().unwrap();
    assert_eq!(
        oldest.status,
        SessionStatus::Revoked,
        "the oldest is evicted"
    );
}

/// Finding 9: a revoke of an already revoked session healed the projection but never gave the
/// user's indexes a lifetime, so indexes left without one (a lost write, an older version) stayed
/// forever.
#[tokio::test]
async fn healing_a_revoked_session_gives_the_users_indexes_their_lifetime() {
    let redis = RedisServer::start().await;
    let mut b = standalone(&redis).await;
    let user = new_user();
    let id = login(&b, &user).await;
    b.store.session_revoke(&id, &revocation()).await.unwrap();
    let keys = b.store.keys.clone();
    let indexes = [keys.user_sessions(&user), keys.user_revoked_sessions(&user)];
    for index in &indexes {
        let _: bool = b.conn.persist(index).await.unwrap();
    }
    b.store.session_revoke(&id, &revocation()).await.unwrap();
    for index in &indexes {
        let ttl: i64 = b.conn.pttl(index).await.unwrap();
        assert!(ttl > 0, "{index} has no lifetime ({ttl})");
    }
}

/// Finding 10: an admission counter remembered only the last request it counted, so a resend
/// after another request of the same client counted twice (or was refused where the first call
/// was admitted).
#[tokio::test]
async fn a_resent_admission_counts_once_whatever_came_between() {
    let redis = RedisServer::start().await;
    let mut b = standalone(&redis).await;
    let (first, second) = (RequestId::generate(), RequestId::generate());
    let mut calls = Vec::new();
    for request in [&first, &second, &first] {
        let mut call = b.store.call(&ConfirmAdmit {
            attempt_id: request,
            client: &client(),
        });
        *call.arg_mut("client_limit") = "2".into(); // two per window
        calls.push(call);
    }
    for (i, call) in calls.iter().enumerate() {
        let reply = crate::scripts_audit::run(&b, call).await.unwrap();
        assert!(reply.contains("admitted"), "call {i}: {reply}");
    }
    let count: String = b.conn.hget(calls[0].keys()[0].clone(), "n").await.unwrap();
    assert_eq!(count, "2");
}

/// Finding 13: a confirm stalled between verify and the session step for longer than the
/// blocked marker lives could create a session for a user blocked meanwhile (the marker gone).
/// A verdict older than the marker's life is refused, writing nothing; and the scripts' own
/// bounds are those the service passes (50), not 1,000.
#[tokio::test]
async fn a_verdict_older_than_the_blocked_marker_is_refused_and_bounds_fit_the_budget() {
    let redis = RedisServer::start().await;
    let mut b = standalone(&redis).await;
    let email = authsession::domain::Email::parse(&unique_email()).unwrap();
    let (id, code) = sent_challenge(&b, &email).await;
    let hash = hashes(&id, &code);
    let key = ClientPublicKey::parse(&public_key()).unwrap();
    let user = new_user();
    let session = b.store.keys.layout().device_session_id(&id, &user);
    let mut request = confirm_request(&id, &hash, &key, &user, &session);
    request.verified_at_ms = authsession_testbench::now_ms() - 601_000;
    let before = Keyspace::capture(&mut b.conn).await;
    let result = authsession::flows::confirm_email_code::open_session(&b.store, &request).await;
    assert!(matches!(result, Err(Error::StaleVerdict)), "{result:?}");
    let after = Keyspace::capture(&mut b.conn).await;
    assert_eq!(before.differences(&after), Vec::<String>::new());

    let mut batch = b.store.call(&UserSessionsRevoke {
        user_id: &user,
        revocation: &revocation(),
        request_id: &RequestId::generate(),
        batch_number: 1,
        block_marker: None,
        planned: Vec::new(),
    });
    *batch.arg_mut("batch_size") = "51".into();
    refused_whole(
        &mut b,
        &batch,
        &before,
        "user_sessions_revoke",
        "a batch of 51",
    )
    .await;
}

/// Finding 11: in the partitioned layout two confirms of one code that got different user ids
/// from the user service (so different session ids, in different partitions) each created a
/// session; the second answered 409 but its session stayed active. The challenge is now claimed
/// for one session before any is created: the other confirm creates nothing, and the claimant's
/// retry goes on.
#[tokio::test]
async fn in_the_partitioned_layout_one_challenge_yields_one_session_whatever_the_user_ids() {
    let cluster = RedisCluster::start(3, 0).await;
    let b = partitioned_bench(&cluster).await;
    let keys = b.store.keys.clone();
    let email = authsession::domain::Email::parse(&unique_email()).unwrap();
    let (id, code) = sent_challenge(&b, &email).await;
    let hash = hashes(&id, &code);
    let key = ClientPublicKey::parse(&public_key()).unwrap();
    let first = new_user();
    let second = loop {
        let other = new_user();
        if keys.layout().of_user(other.as_str()) != keys.layout().of_user(first.as_str()) {
            break other;
        }
    };
    let (one, two) = (
        keys.layout().device_session_id(&id, &first),
        keys.layout().device_session_id(&id, &second),
    );
    let claimant = confirm_request(&id, &hash, &key, &first, &one);
    let rival = confirm_request(&id, &hash, &key, &second, &two);

    // The first confirm stops after its claim (a crash); the rival comes; the first retries.
    let claim = ChallengeClaim {
        challenge_id: &id,
        device_session_id: &one,
        user_id: &first,
    };
    assert_eq!(b.store.run(&claim).await.unwrap(), Claimed::Claimed);
    assert_eq!(
        authsession::flows::confirm_email_code::open_session(&b.store, &rival)
            .await
            .unwrap(),
        Confirmed::Rejected(Rejection::AlreadyConfirmed)
    );
    assert_eq!(
        authsession::flows::confirm_email_code::open_session(&b.store, &claimant)
            .await
            .unwrap(),
        Confirmed::Created(one.clone())
    );
    // And once more after the first completed.
    assert_eq!(
        authsession::flows::confirm_email_code::open_session(&b.store, &rival)
            .await
            .unwrap(),
        Confirmed::Rejected(Rejection::AlreadyConfirmed)
    );
    assert!(
        b.store.session_get(&two).await.unwrap().is_none(),
        "a second session"
    );
    let session = b.store.session_get(&one).await.unwrap().unwrap();
    assert_eq!(session.status, SessionStatus::Active);
}

/// Audit round 3, low: a first login skips the revoked index's prune, so a key of another type
/// there let a session be created that no script could revoke afterwards (each revoke's `ZADD`
/// to it fails). The login reads the index's type (one `ZCARD`) and is refused, writing nothing.
#[tokio::test]
async fn a_first_login_over_a_foreign_revoked_index_is_refused_whole() {
    let redis = RedisServer::start().await;
    let mut b = standalone(&redis).await;
    let user = new_user();
    let () = b
        .conn
        .set(b.store.keys.user_revoked_sessions(&user), "not-a-zset")
        .await
        .unwrap();
    let (id, code) = sent_challenge(
        &b,
        &authsession::domain::Email::parse(&unique_email()).unwrap(),
    )
    .await;
    let hash = hashes(&id, &code);
    let key = ClientPublicKey::parse(&public_key()).unwrap();
    let session = b.store.keys.layout().device_session_id(&id, &user);
    let request = confirm_request(&id, &hash, &key, &user, &session);
    let before = Keyspace::capture(&mut b.conn).await;
    let result = authsession::flows::confirm_email_code::open_session(&b.store, &request).await;
    assert!(result.is_err(), "{result:?}");
    let after = Keyspace::capture(&mut b.conn).await;
    assert_eq!(before.differences(&after), Vec::<String>::new());
}

/// Audit round 3, low: an `inf` score in the revoked index was read with `tonumber` and written
/// back as `PEXPIREAT -9223372036854775808`, which deleted the user's indexes. Scores are read
/// strictly: the revoke fails whole, and the indexes stay.
#[tokio::test]
async fn an_inf_score_in_the_revoked_index_fails_the_revoke_whole() {
    let redis = RedisServer::start().await;
    let mut b = standalone(&redis).await;
    let user = new_user();
    let session = login(&b, &user).await;
    let () = b
        .conn
        .zadd(b.store.keys.user_revoked_sessions(&user), "ghost", "inf")
        .await
        .unwrap();
    let before = Keyspace::capture(&mut b.conn).await;
    let result = b.store.session_revoke(&session, &revocation()).await;
    assert!(result.is_err(), "{result:?}");
    let after = Keyspace::capture(&mut b.conn).await;
    assert_eq!(before.differences(&after), Vec::<String>::new());
}

/// Audit round 3, high (the importing node) and item 6 (`NOSCRIPT` after a redirect). Every key
/// of the tag's slot moved to the importing node, which has never loaded a script, the cluster
/// client follows `ASK` there. Before, a block's batch ran there, read the records it derived
/// (still on the source) as missing, answered `[0, 0]` and left active sessions behind; a revoke
/// met `NOSCRIPT` there and answered 503. Now every key a call touches is declared: a revoke
/// whose keys all moved runs on the importing node (the script loaded there); a block whose
/// declared keys are not all there (its memo and marker do not exist yet) is refused by Redis
/// itself (`TRYAGAIN`) having written nothing on either node, and once the migration finishes
/// the retried block revokes every session and snapshot.
#[tokio::test]
async fn during_a_migration_a_revoke_runs_on_the_importing_node_and_a_block_never_half_succeeds() {
    let cluster = RedisCluster::start(3, 0).await;
    let (tag, env) = single_tag_cluster_env(&cluster);
    let mut migration = cluster.slot_migration(&format!("{{{tag}}}")).await;
    let b = Bench {
        store: store_for(&env),
        conn: Dedicated::Single(migration.source_connection()),
    };
    let keys = b.store.keys.clone();
    let user = new_user();
    // One more login than the limit: one session evicted (so the revoked index exists).
    let mut sessions = Vec::new();
    for _ in 0..=MAX_ACTIVE {
        sessions.push(login(&b, &user).await);
    }
    migration.begin().await;
    migration.move_all().await;
    let (mut src, mut dst) = (migration.source_connection(), migration.target_connection());
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut dst)
        .await
        .unwrap();

    let newest = sessions.last().unwrap();
    let (outcome, record) = b
        .store
        .session_revoke(newest, &revocation())
        .await
        .expect("the revoke runs where its keys are, the script loaded there")
        .expect("the session exists");
    assert_eq!(outcome, authsession::domain::RevokeOutcome::Revoked);
    assert_eq!(record.status, SessionStatus::Revoked);

    let (before_src, before_dst) = (
        Keyspace::capture(&mut src).await,
        Keyspace::capture_importing(&mut dst).await,
    );
    let block = b
        .store
        .user_sessions_revoke(&user, &revocation(), Some(BLOCK_MARKER))
        .await;
    if let Err(error) = &block {
        let (after_src, after_dst) = (
            Keyspace::capture(&mut src).await,
            Keyspace::capture_importing(&mut dst).await,
        );
        assert_eq!(
            before_src.differences(&after_src),
            Vec::<String>::new(),
            "{error}"
        );
        assert_eq!(
            before_dst.differences(&after_dst),
            Vec::<String>::new(),
            "{error}"
        );
    }
    migration.finish().await;
    if block.is_err() {
        b.store
            .user_sessions_revoke(&user, &revocation(), Some(BLOCK_MARKER))
            .await
            .expect("after the migration the block goes through");
    }
    for id in &sessions {
        let record = b.store.session_get(id).await.unwrap().unwrap();
        assert_eq!(record.status, SessionStatus::Revoked, "{id}");
        let snapshot: String = dst.get(keys.gateway_session(id)).await.unwrap();
        assert!(snapshot.contains("\"status\":\"revoked\""), "{snapshot}");
    }
    let active: u64 = dst.zcard(keys.user_active_sessions(&user)).await.unwrap();
    assert_eq!(active, 0);
}

/// Audit round 3, medium (split slots): the verify script derived the address's failure counter,
/// so during a migration a call resent to the importing node counted on a second copy there (3
/// while the source held 19: 22 failures passed a budget of 20), and the migration then halted on
/// `BUSYKEY`. The counter is declared now: while the keys are split Redis refuses the call
/// (`TRYAGAIN`, 503, nothing counted), and wrong guesses made at every step of a migration, key by
/// key to the end, never pass the budget; the counter lives on one node only.
#[tokio::test]
async fn the_failure_budget_holds_across_a_slot_migration() {
    const BUDGET: u64 = 4;
    let cluster = RedisCluster::start(3, 0).await;
    let (tag, mut env) = single_tag_cluster_env(&cluster);
    env.insert(
        authsession::config::CONFIRM_FAILURE_BUDGET,
        BUDGET.to_string(),
    );
    let mut migration = cluster.slot_migration(&format!("{{{tag}}}")).await;
    let b = Bench {
        store: store_for(&env),
        conn: Dedicated::Single(migration.source_connection()),
    };
    let email = authsession::domain::Email::parse(&unique_email()).unwrap();
    let (id, code) = sent_challenge(&b, &email).await;
    let wrong_code = if code.as_str() == "000000" {
        "111111"
    } else {
        "000000"
    };
    let wrong = hashes(
        &id,
        &authsession::domain::LoginCode::parse(wrong_code).unwrap(),
    );
    let key = ClientPublicKey::parse(&public_key()).unwrap();
    let guess = || async {
        b.store
            .challenge_verify(
                &id,
                &wrong,
                &key,
                1000,
                None,
                &RequestId::generate(),
                Some(email.hash()),
            )
            .await
    };
    let mut counted = 0u64;
    let mut tally = |result: Result<authsession::store::challenges::Verified, Error>| {
        if let Ok(authsession::store::challenges::Verified::Rejected(Rejection::InvalidCode)) =
            result
        {
            counted += 1;
        }
    };
    tally(guess().await);
    migration.begin().await;
    let mut src = migration.source_connection();
    let slot_keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{{{tag}}}*"))
        .query_async(&mut src)
        .await
        .unwrap();
    for moved in &slot_keys {
        migration.move_key(moved).await;
        for _ in 0..2 {
            tally(guess().await);
        }
    }
    migration.finish().await;
    for _ in 0..BUDGET {
        tally(guess().await);
    }
    assert_eq!(
        counted, BUDGET,
        "wrong guesses counted across the migration"
    );
    let last = guess().await.unwrap();
    assert_eq!(
        last,
        authsession::store::challenges::Verified::Rejected(Rejection::TooManyAttempts)
    );
    let counter = b.store.keys.confirm_failures(email.hash());
    // (`KEYS` reads the node's own keyspace, whoever owns the slot now.)
    let on_source: Vec<String> = redis::cmd("KEYS")
        .arg(&counter)
        .query_async(&mut src)
        .await
        .unwrap();
    assert!(
        on_source.is_empty(),
        "the counter lives on the importing node only"
    );
    let mut dst = migration.target_connection();
    let count: String = dst.get(&counter).await.unwrap();
    assert_eq!(count, BUDGET.to_string());
}
