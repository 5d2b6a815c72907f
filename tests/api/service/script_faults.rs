//! Faults a script meets part way, each from the second scripts audit, tried on real Redis: the
//! call is refused before its first write (`lua/include/commit.lua` preflights every write), or
//! the script's bounded steps reach the state the contract promises.

use std::time::Duration;

use authsession::domain::{ClientPublicKey, RequestId, SessionStatus};
use authsession::store::scripts::confirm_admit::ConfirmAdmit;
use authsession::store::scripts::user_sessions_revoke::UserSessionsRevoke;
use authsession::store::Error;
use authsession_testbench::keyspace::Keyspace;
use authsession_testbench::RedisServer;
use redis::AsyncCommands;

use crate::helpers::{public_key, session_id, unique_email};
use crate::service::scripts_audit::{
    client, confirm_request, hashes, login, new_user, refused_whole, revocation, sent_challenge,
    standalone, MAX_ACTIVE,
};

pub(crate) const BLOCK_MARKER: Duration = Duration::from_secs(600);

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
        let reply = crate::service::scripts_audit::run(&b, call).await.unwrap();
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
