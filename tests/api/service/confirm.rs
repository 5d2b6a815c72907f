//! `confirm-email-code`: sessions, the atomic gateway projection, idempotent retries, guessing.

use authsession::config;
use authsession::store::scripts::scripts;
use authsession_testbench::{Fault, FaultProxy, RedisServer};
use redis::AsyncCommands;

use crate::helpers::{assert_error, challenge_id, harness, harness_on, public_key, unique_email};

#[tokio::test]
async fn a_full_login_creates_a_session_whose_record_indexes_snapshot_and_event_agree() {
    let h = harness(&[]).await;
    let (challenge_id, code) = h.send_code(&unique_email()).await;
    let key = public_key();

    let reply = h.app.confirm(&challenge_id, &code, &key).await;

    assert_eq!(reply.status, 200, "{reply:?}");
    let id = reply.body["device_session_id"].as_str().unwrap();
    let user_id = h.session_field(id, "user_id").await.expect("session hash");
    assert_eq!(
        h.session_field(id, "status").await.as_deref(),
        Some("active")
    );
    assert_eq!(h.session_field(id, "version").await.as_deref(), Some("1"));
    assert_eq!(
        h.session_field(id, "client_public_key").await.as_deref(),
        Some(key.as_str())
    );
    let mut redis = h.app.redis.clone();
    let keys = h.app.keys();
    for (index, key) in [
        (
            "sessions",
            keys.user_sessions(&crate::helpers::user_id(&user_id)),
        ),
        (
            "active_sessions",
            keys.user_active_sessions(&crate::helpers::user_id(&user_id)),
        ),
    ] {
        let score: Option<i64> = redis.zscore(key, id).await.unwrap();
        assert!(score.is_some(), "{index} lacks the session");
    }
    let snapshot = h.snapshot(id).await.expect("snapshot");
    assert_eq!(snapshot["device_session_id"], id);
    assert_eq!(snapshot["user_id"], user_id.as_str());
    assert_eq!(snapshot["status"], "active");
    assert_eq!(snapshot["version"], 1);
    assert_eq!(snapshot["client_public_key"], key.as_str());
    let events = h.events_for(id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event_type"], "session_snapshot");
    assert_eq!(events[0]["status"], "active");
    assert_eq!(events[0]["version"], "1");
    assert_eq!(events[0]["user_id"], user_id);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&events[0]["snapshot"]).unwrap(),
        snapshot
    );
    assert_eq!(
        h.challenge_field(&challenge_id, "status").await.as_deref(),
        Some("confirmed_pending_expire")
    );
    assert_eq!(
        h.challenge_field(&challenge_id, "device_session_id")
            .await
            .as_deref(),
        Some(id)
    );
}

#[tokio::test]
async fn an_identical_retry_returns_the_same_session_and_repairs_only_a_missing_projection() {
    let h = harness(&[]).await;
    let (challenge_id, code) = h.send_code(&unique_email()).await;
    let key = public_key();
    let first = h.app.confirm(&challenge_id, &code, &key).await;
    let id = first.body["device_session_id"].as_str().unwrap().to_owned();

    let retry = h.app.confirm(&challenge_id, &code, &key).await;
    assert_eq!(retry.body["device_session_id"], id.as_str(), "{retry:?}");
    assert_eq!(
        h.events_for(&id).await.len(),
        1,
        "a retry of a healthy projection appends nothing"
    );
    let mut redis = h.app.redis.clone();
    let sessions: Vec<String> = redis
        .keys(format!("{}*", h.app.keys().session_prefix()))
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1);

    let () = redis.del(h.app.snapshot_key(&id)).await.unwrap();
    let repair = h.app.confirm(&challenge_id, &code, &key).await;
    assert_eq!(repair.body["device_session_id"], id.as_str());
    assert_eq!(h.snapshot(&id).await.expect("repaired")["status"], "active");
    assert_eq!(
        h.events_for(&id).await.len(),
        2,
        "the repair appends one event"
    );
}

#[tokio::test]
async fn fifty_concurrent_identical_confirms_create_exactly_one_session() {
    let h = harness(&[]).await;
    let (challenge_id, code) = h.send_code(&unique_email()).await;
    let key = public_key();

    let replies =
        futures::future::join_all((0..50).map(|_| h.app.confirm(&challenge_id, &code, &key))).await;

    let ids: std::collections::HashSet<_> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{r:?}");
            r.body["device_session_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    let mut redis = h.app.redis.clone();
    let sessions: Vec<String> = redis
        .keys(format!("{}*", h.app.keys().session_prefix()))
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(h.events_for(ids.iter().next().unwrap()).await.len(), 1);
}

#[tokio::test]
async fn a_lost_confirm_reply_answers_503_and_the_retry_returns_the_committed_session() {
    let redis = RedisServer::start().await;
    let proxy = FaultProxy::start(redis.addr()).await;
    // The service talks to Redis through the proxy; the harness's own connection does not.
    let h = harness_on(redis, &[(config::REDIS_ADDR, &proxy.addr())]).await;
    let (challenge_id, code) = h.send_code(&unique_email()).await;
    let key = public_key();
    // Cached beforehand, so the lost reply is the script's own and not a NOSCRIPT.
    h.redis.load_scripts().await;

    proxy.set(Fault::DropReplyTo(
        scripts().challenge_confirm.sha1.clone().into_bytes(),
    ));
    let lost = h.app.confirm(&challenge_id, &code, &key).await;
    assert_error(&lost, 503, "service_unavailable");
    let committed = h
        .challenge_field(&challenge_id, "device_session_id")
        .await
        .expect("Redis committed the confirm");

    proxy.set(Fault::PassThrough);
    let retry = h.app.confirm(&challenge_id, &code, &key).await;

    assert_eq!(retry.status, 200, "{retry:?}");
    assert_eq!(retry.body["device_session_id"], committed.as_str());
    assert_eq!(
        h.snapshot(&committed).await.expect("projection")["status"],
        "active"
    );
}

#[tokio::test]
async fn a_stream_key_of_the_wrong_type_fails_the_confirm_without_writing_anything() {
    let h = harness(&[]).await;
    let (challenge_id, code) = h.send_code(&unique_email()).await;
    let key = public_key();
    let mut redis = h.app.redis.clone();
    let stream = h.app.keys().streams()[0].clone();
    let () = redis.set(&stream, "not a stream").await.unwrap();
    let before = h.all_keys().await;

    let failed = h.app.confirm(&challenge_id, &code, &key).await;

    assert_error(&failed, 503, "service_unavailable");
    let mut after = h.all_keys().await;
    after.sort();
    let mut expected = before.clone();
    expected.sort();
    assert_eq!(after, expected, "no key was created");
    assert_eq!(
        h.challenge_field(&challenge_id, "status").await.as_deref(),
        Some("sent")
    );

    let () = redis.del(&stream).await.unwrap();
    let retry = h.app.confirm(&challenge_id, &code, &key).await;
    assert_eq!(retry.status, 200, "{retry:?}");
}

#[tokio::test]
async fn refusals_follow_the_status_table() {
    let h = harness(&[]).await;

    // Wrong code: 422 and one attempt counted.
    let (id, code) = h.send_code(&unique_email()).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_error(
        &h.app.confirm(&id, wrong, &public_key()).await,
        422,
        "invalid_code",
    );
    assert_eq!(
        h.challenge_field(&id, "attempts").await.as_deref(),
        Some("1")
    );

    // At the limit: 429 even with the right code.
    for _ in 0..4 {
        h.app.confirm(&id, wrong, &public_key()).await;
    }
    assert_error(
        &h.app.confirm(&id, &code, &public_key()).await,
        429,
        "too_many_attempts",
    );

    // A throttled challenge is checked against the code of the challenge that opened its window.
    let email = unique_email();
    let (_, code) = h.send_code(&email).await;
    let throttled = h.app.send_email_code(&email).await.body["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = if code == "000000" { "111111" } else { "000000" };
    assert_error(
        &h.app.confirm(&throttled, other, &public_key()).await,
        422,
        "invalid_code",
    );

    // Suppressed likewise.
    let blocked = unique_email();
    h.users.block_email(&blocked);
    let suppressed = h.app.send_email_code(&blocked).await.body["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_error(
        &h.app.confirm(&suppressed, "123456", &public_key()).await,
        422,
        "invalid_code",
    );

    // Expired: the record exists past expires_at_ms.
    let (id, code) = h.send_code(&unique_email()).await;
    let mut redis = h.app.redis.clone();
    let () = redis
        .hset(
            h.app.keys().challenge(&challenge_id(&id)),
            "expires_at_ms",
            1000,
        )
        .await
        .unwrap();
    assert_error(
        &h.app.confirm(&id, &code, &public_key()).await,
        410,
        "challenge_expired",
    );

    // Removed by TTL cleanup (or never existed).
    let () = redis
        .del(h.app.keys().challenge(&challenge_id(&id)))
        .await
        .unwrap();
    assert_error(
        &h.app.confirm(&id, &code, &public_key()).await,
        404,
        "challenge_not_found",
    );

    // Confirmed with another key.
    let (id, code) = h.send_code(&unique_email()).await;
    assert_eq!(h.app.confirm(&id, &code, &public_key()).await.status, 200);
    assert_error(
        &h.app.confirm(&id, &code, &public_key()).await,
        409,
        "challenge_already_confirmed",
    );
}

#[tokio::test]
async fn a_user_blocked_at_confirm_time_gets_403_and_no_session() {
    let h = harness(&[]).await;
    let email = unique_email();
    let (id, code) = h.send_code(&email).await;
    h.users.block_email(&email);

    assert_error(
        &h.app.confirm(&id, &code, &public_key()).await,
        403,
        "user_blocked",
    );

    let mut redis = h.app.redis.clone();
    let sessions: Vec<String> = redis
        .keys(format!("{}*", h.app.keys().session_prefix()))
        .await
        .unwrap();
    assert!(sessions.is_empty());
}

#[tokio::test]
async fn a_runtime_limit_of_two_sessions_revokes_the_oldest_on_the_third_login() {
    let h = harness(&[
        (config::CONFIG_REFRESH_INTERVAL, "1ms"),
        (config::RESEND_COOLDOWN, "1ms"),
    ])
    .await;
    let mut redis = h.app.redis.clone();
    let () = redis
        .hset(h.app.keys().config(), "max_active_sessions_per_user", 2)
        .await
        .unwrap();
    let email = unique_email();
    let (oldest, user_id) = h.login(&email).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (second, _) = h.login(&email).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let (third, _) = h.login(&email).await;

    assert_eq!(
        h.session_field(&oldest, "status").await.as_deref(),
        Some("revoked")
    );
    assert_eq!(
        h.session_field(&oldest, "revoke_reason_code")
            .await
            .as_deref(),
        Some("session_limit_exceeded")
    );
    let snapshot = h.snapshot(&oldest).await.unwrap();
    assert_eq!(
        (snapshot["status"].as_str(), snapshot["version"].as_u64()),
        (Some("revoked"), Some(2))
    );
    assert_eq!(snapshot["revoke_reason_code"], "session_limit_exceeded");
    assert_eq!(h.events_for(&oldest).await.len(), 2);
    let active: Vec<String> = redis
        .zrange(
            h.app
                .keys()
                .user_active_sessions(&crate::helpers::user_id(&user_id)),
            0,
            -1,
        )
        .await
        .unwrap();
    assert_eq!(active, [second, third]);
}
