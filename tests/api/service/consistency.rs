//! Records, indexes and projections stay consistent: a revoke that cannot finish writes nothing
//! and its retry converges, replays count once, stale index entries are pruned, a revoked view
//! is never overwritten. From the platform team's audit of `lua/` (issue 13), one test per
//! finding, each performing the fault the auditors reproduced with `EVALSHA` on a real
//! redis-server; each failed on the scripts before the fix.

use std::time::Duration;

use authsession::config;
use authsession::domain::{
    ChallengeId, ClientPublicKey, Code, CodeHasher, CodeHashes, DeviceSessionId, RequestId, UserId,
};
use authsession::domain::{Revocation, RevokeOutcome};
use authsession::store::scripts::challenge_verify::ChallengeVerify;
use authsession::store::scripts::session_revoke::{SessionRevoke, SessionRevokeReply};
use authsession::store::scripts::user_sessions_revoke::{Batch, UserSessionsRevoke};
use authsession::store::scripts::Plan;
use authsession::store::{Redis, Store};
use authsession_testbench::keyspace::Keyspace;
use redis::AsyncCommands;
use serde_json::json;

use crate::helpers::{
    assert_error, challenge_id, harness, public_key, session_id, unique_email, user_id, Harness,
};

const COOLDOWN: (&str, &str) = (config::RESEND_COOLDOWN, "1ms");

/// A store on the harness's Redis and namespaces, to call scripts the way the service does.
fn store(h: &Harness) -> Store {
    let c = &h.app.config;
    Store::new(
        Redis::new(&c.redis).unwrap(),
        &c.redis,
        &c.gateway,
        &c.policy,
    )
}

fn revocation() -> Revocation {
    Revocation {
        reason_code: Code::known("admin_revoke"),
        actor_type: Code::known("admin"),
        actor_id: None,
    }
}

async fn revoke_all(h: &Harness, user: &str) -> authsession_testbench::app::Reply {
    h.app
        .post_internal(
            &format!("/api/v1/internal/users/{user}/sessions/revoke-all"),
            None,
        )
        .await
}

async fn revoke(h: &Harness, id: &str) -> authsession_testbench::app::Reply {
    h.app
        .post_internal(&format!("/api/v1/internal/sessions/{id}/revoke"), None)
        .await
}

/// Finding 1: a failing write to the user's active index (a wrong-typed key) used to leave the
/// session revoked in source of truth with an active snapshot and no event, and the retry
/// answered `already_revoked` without repairing anything.
#[tokio::test]
async fn a_revoke_that_cannot_update_the_index_writes_nothing_and_its_retry_converges() {
    let h = harness(&[]).await;
    let (id, user) = h.login(&unique_email()).await;
    let mut redis = h.app.redis.clone();
    let active = h.app.keys().user_active_sessions(&user_id(&user));
    let () = redis.del(&active).await.unwrap();
    let () = redis.set(&active, "wrong type").await.unwrap();
    let before = Keyspace::capture(&mut redis).await;

    assert_error(&revoke(&h, &id).await, 503, "service_unavailable");

    assert_eq!(
        before.differences(&Keyspace::capture(&mut redis).await),
        Vec::<String>::new(),
        "a failed revoke writes nothing"
    );
    let () = redis.del(&active).await.unwrap();
    let retry = revoke(&h, &id).await;
    assert_eq!(retry.body["outcome"], "revoked", "{retry:?}");
    assert_eq!(h.snapshot(&id).await.unwrap()["status"], "revoked");
    assert_eq!(h.events_for(&id).await.last().unwrap()["status"], "revoked");
}

/// Finding 1, second half: `already_revoked` heals a projection lost after the revoke.
#[tokio::test]
async fn revoking_an_already_revoked_session_restores_a_missing_revoked_snapshot() {
    let h = harness(&[]).await;
    let (id, _) = h.login(&unique_email()).await;
    revoke(&h, &id).await;
    let mut redis = h.app.redis.clone();
    let () = redis.del(h.app.snapshot_key(&id)).await.unwrap();
    let events = h.events_for(&id).await.len();

    let again = revoke(&h, &id).await;

    assert_eq!(again.body["outcome"], "already_revoked");
    let snapshot = h.snapshot(&id).await.expect("the revoked snapshot is back");
    assert_eq!(snapshot["status"], "revoked");
    assert_eq!(snapshot["version"], 2);
    assert_eq!(h.events_for(&id).await.len(), events + 1, "with its event");
    assert!(redis.pttl::<_, i64>(h.app.snapshot_key(&id)).await.unwrap() > 0);
}

/// Finding 2: the pool and the cluster client resend a script whose reply was lost; a resent
/// wrong guess used to count twice against the challenge and the address.
#[tokio::test]
async fn a_resent_wrong_guess_counts_once() {
    let h = harness(&[]).await;
    let (challenge, _) = h.send_code(&unique_email()).await;
    let store = store(&h);
    let id = ChallengeId::parse(&challenge).unwrap();
    let key = ClientPublicKey::parse(&public_key()).unwrap();
    let wrong = CodeHashes {
        current: "wrong".into(),
        previous: None,
    };
    let client = CodeHasher::development().client_key([127, 0, 0, 1].into());
    let address = h.challenge_field(&challenge, "email_hash").await.unwrap();
    let address = authsession::domain::EmailHash::parse(&address).unwrap();
    let call = store.call(&ChallengeVerify {
        challenge_id: &id,
        code_hashes: &wrong,
        client_public_key: &key,
        max_attempts: 5,
        attempt_id: &RequestId::generate(),
        admit: Some(&client),
        address: Some(address),
        via: None,
    });

    let first = store.redis.invoke(&call).await.unwrap();
    let resent = store.redis.invoke(&call).await.unwrap();

    assert_eq!(format!("{first:?}"), format!("{resent:?}"));
    assert_eq!(
        h.challenge_field(&challenge, "attempts").await.unwrap(),
        "1"
    );
    let mut redis = h.app.redis.clone();
    let failures: Vec<String> = redis
        .keys(format!(
            "{}*",
            h.app
                .keys()
                .confirm_failures_prefix(h.app.keys().layout().all()[0])
        ))
        .await
        .unwrap();
    let count: String = redis.get(&failures[0]).await.unwrap();
    assert_eq!(count, "1", "the address's budget is charged once");
}

/// Finding 3: pruning looked only at the 8 oldest index entries, so expired revoked entries
/// behind long-lived devices stayed forever, and the indexes never expired.
#[tokio::test]
async fn expired_entries_behind_long_lived_devices_are_pruned_and_a_departed_users_indexes_expire()
{
    let h = harness(&[COOLDOWN, (config::REVOKED_SESSION_RETENTION, "1s")]).await;
    let email = unique_email();
    let mut devices = Vec::new();
    for _ in 0..9 {
        devices.push(h.login(&email).await.0);
    }
    let user = h.login(&email).await.1;
    let mut short_lived = Vec::new();
    for _ in 0..3 {
        let (id, _) = h.login(&email).await;
        revoke(&h, &id).await;
        short_lived.push(id);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await; // their records expire

    h.login(&email).await;

    let mut redis = h.app.redis.clone();
    let all = h.app.keys().user_sessions(&user_id(&user));
    let members: Vec<String> = redis.zrange(&all, 0, -1).await.unwrap();
    for id in &short_lived {
        assert!(!members.contains(id), "{id} was pruned");
    }
    assert_eq!(
        redis.pttl::<_, i64>(&all).await.unwrap(),
        -1,
        "active users keep their index"
    );

    let reply = revoke_all(&h, &user).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let keys = h.app.keys();
    for (index, key) in [
        ("sessions", keys.user_sessions(&user_id(&user))),
        (
            "revoked_sessions",
            keys.user_revoked_sessions(&user_id(&user)),
        ),
    ] {
        let ttl: i64 = redis.pttl(key).await.unwrap();
        assert!(
            (1..=1000).contains(&ttl),
            "{index}: expires with the last revoked record, PTTL {ttl}"
        );
    }
}

/// Finding 4: active-index entries whose record is gone were counted but never removed, so once
/// enough piled up at the head, logins stopped evicting and the limit no longer held.
#[tokio::test]
async fn ghost_entries_do_not_break_the_session_limit() {
    let h = harness(&[COOLDOWN, (config::MAX_ACTIVE_SESSIONS_PER_USER, "2")]).await;
    let email = unique_email();
    let (_, user) = h.login(&email).await;
    let mut redis = h.app.redis.clone();
    let active = h.app.keys().user_active_sessions(&user_id(&user));
    // More ghosts than one login may evict (50): the old script looked only at them.
    for ghost in 0..60 {
        let () = redis
            .zadd(&active, format!("ghost-{ghost}"), 0)
            .await
            .unwrap();
    }

    for _ in 0..3 {
        h.login(&email).await;
    }

    let listed = h
        .app
        .get_internal(&format!(
            "/api/v1/internal/users/{user}/sessions?status=active"
        ))
        .await;
    assert_eq!(listed.body["sessions"].as_array().unwrap().len(), 2);
    let members: Vec<String> = redis.zrange(&active, 0, -1).await.unwrap();
    assert_eq!(members.len(), 2, "ghosts removed: {members:?}");
}

/// Finding 5: a wrong-typed key in the gateway namespace made a user's sessions impossible to
/// revoke; `SET` replaces any type, so the snapshot is simply rewritten.
#[tokio::test]
async fn a_wrong_typed_snapshot_key_does_not_block_revoke_all() {
    let h = harness(&[COOLDOWN]).await;
    let email = unique_email();
    let (id, user) = h.login(&email).await;
    let mut redis = h.app.redis.clone();
    let () = redis.del(h.app.snapshot_key(&id)).await.unwrap();
    let () = redis.rpush(h.app.snapshot_key(&id), "junk").await.unwrap();

    let reply = revoke_all(&h, &user).await;

    assert_eq!(
        reply.body,
        json!({"outcome": "revoked", "revoked_count": 1})
    );
    assert_eq!(h.snapshot(&id).await.unwrap()["status"], "revoked");
}

/// Finding 6: a retention beyond what `PEXPIRE` accepts used to fail after `HSET` had revoked the
/// record. The config caps it, and the script refuses such an ARGV before writing.
#[tokio::test]
async fn an_out_of_range_argument_fails_the_script_before_any_write() {
    let h = harness(&[]).await;
    let (id, user) = h.login(&unique_email()).await;
    let store = store(&h);
    let user = UserId::parse(&user).unwrap();
    let mut call = store.call(&SessionRevoke {
        device_session_id: &DeviceSessionId::parse(&id).unwrap(),
        revocation: &revocation(),
        request_id: &RequestId::generate(),
        user: Some(user.clone()),
    });
    *call.arg_mut("revoked_retention_ms") = "100000000000000000000".into();
    let mut redis = h.app.redis.clone();
    let before = Keyspace::capture(&mut redis).await;

    let result = store.redis.invoke(&call).await;

    assert!(result.is_err(), "{result:?}");
    assert_eq!(
        before.differences(&Keyspace::capture(&mut redis).await),
        Vec::<String>::new()
    );
    assert_eq!(h.session_field(&id, "status").await.unwrap(), "active");
}

/// Finding 7: a session hash missing a required field raised while building the snapshot, after
/// the record had been revoked.
#[tokio::test]
async fn an_incomplete_session_record_fails_the_revoke_without_writing() {
    let h = harness(&[]).await;
    let (id, _) = h.login(&unique_email()).await;
    let mut redis = h.app.redis.clone();
    let () = redis
        .hdel(h.app.keys().session(&session_id(&id)), "client_public_key")
        .await
        .unwrap();
    let before = Keyspace::capture(&mut redis).await;

    assert_error(&revoke(&h, &id).await, 503, "service_unavailable");

    assert_eq!(
        before.differences(&Keyspace::capture(&mut redis).await),
        Vec::<String>::new()
    );
}

/// Finding 8: a revoked view with a non-numeric version counted as unreadable, so a repair
/// overwrote it with an active one.
#[tokio::test]
async fn a_revoked_view_is_never_overwritten_by_an_active_one_whatever_its_version_holds() {
    let h = harness(&[]).await;
    let email = unique_email();
    let (challenge, code) = h.send_code(&email).await;
    let key = public_key();
    let id = h.app.confirm(&challenge, &code, &key).await.body["device_session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut redis = h.app.redis.clone();
    let view = r#"{"status":"revoked","version":"seven"}"#;
    let () = redis.set(h.app.snapshot_key(&id), view).await.unwrap();

    let retry = h.app.confirm(&challenge, &code, &key).await;
    assert_eq!(retry.status, 200);
    let stored: String = redis.get(h.app.snapshot_key(&id)).await.unwrap();
    assert_eq!(stored, view, "revoked is terminal");
}

/// Finding 9: a replayed revoke answered `already_revoked`, and a replayed batch lost its count.
#[tokio::test]
async fn replayed_revokes_answer_what_the_first_call_answered() {
    let h = harness(&[COOLDOWN]).await;
    let email = unique_email();
    let (id, user) = h.login(&email).await;
    h.login(&email).await;
    let store = store(&h);

    let user = UserId::parse(&user).unwrap();
    let single = SessionRevoke {
        device_session_id: &DeviceSessionId::parse(&id).unwrap(),
        revocation: &revocation(),
        request_id: &RequestId::generate(),
        user: Some(user.clone()),
    };
    let first = store.run(&single).await.unwrap();
    let replay = store.run(&single).await.unwrap();
    assert_eq!(first, replay);
    assert!(
        matches!(
            replay,
            Plan::Done(SessionRevokeReply::Done(RevokeOutcome::Revoked, _))
        ),
        "{replay:?}"
    );

    let mut redis = h.app.redis.clone();
    let planned: Vec<String> = redis
        .zrange(store.keys.user_active_sessions(&user), 0, -1)
        .await
        .unwrap();
    let planned: Vec<DeviceSessionId> = planned
        .iter()
        .map(|id| DeviceSessionId::from_stored(id))
        .collect();
    let batch = UserSessionsRevoke {
        user_id: &user,
        revocation: &revocation(),
        request_id: &RequestId::generate(),
        batch_number: 1,
        block_marker: None,
        planned,
    };
    let first = store.run(&batch).await.unwrap();
    let replay = store.run(&batch).await.unwrap();
    assert_eq!(
        first,
        Plan::Done(Batch {
            revoked: 1,
            remaining: 0,
            next: Vec::new(),
        })
    );
    assert_eq!(replay, first, "the replay reports the batch's count again");
}

/// Finding 10: when marking the challenge `sent` failed after the mail went out, the user's
/// correct code was refused as `invalid_code` and burned attempts.
#[tokio::test]
async fn the_right_code_confirms_a_challenge_whose_sent_mark_was_lost() {
    let h = harness(&[]).await;
    let (challenge, code) = h.send_code(&unique_email()).await;
    let mut redis = h.app.redis.clone();
    let () = redis
        .hset(
            h.app.keys().challenge(&challenge_id(&challenge)),
            "status",
            "pending_delivery",
        )
        .await
        .unwrap();

    let reply = h.app.confirm(&challenge, &code, &public_key()).await;

    assert_eq!(reply.status, 200, "{reply:?}");
}
