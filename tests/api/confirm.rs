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
async fn a_hundred_concurrent_wrong_guesses_count_exactly_up_to_the_limit() {
    // One client's hundred requests at once: above its default share of requests in flight.
    let h = harness(&[(authsession::config::HTTP_MAX_REQUESTS_PER_CLIENT, "200")]).await;
    let (id, code) = h.send_code(&unique_email()).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let key = public_key();

    let replies =
        futures::future::join_all((0..100).map(|_| h.app.confirm(&id, wrong, &key))).await;

    let invalid = replies
        .iter()
        .filter(|r| r.error_code() == Some("invalid_code"))
        .count();
    let locked = replies
        .iter()
        .filter(|r| r.error_code() == Some("too_many_attempts"))
        .count();
    assert_eq!((invalid, locked), (5, 95));
    assert_eq!(
        h.challenge_field(&id, "attempts").await.as_deref(),
        Some("5")
    );
    assert_error(
        &h.app.confirm(&id, &code, &key).await,
        429,
        "too_many_attempts",
    );
}

#[tokio::test]
async fn once_the_address_budget_is_spent_a_fresh_challenge_answers_429_even_with_the_right_code() {
    let h = harness(&[
        (config::CONFIRM_FAILURE_BUDGET, "3"),
        (config::RESEND_COOLDOWN, "1ms"),
    ])
    .await;
    let email = unique_email();
    for _ in 0..3 {
        let (id, code) = h.send_code(&email).await;
        let wrong = if code == "000000" { "111111" } else { "000000" };
        assert_error(
            &h.app.confirm(&id, wrong, &public_key()).await,
            422,
            "invalid_code",
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    let (id, code) = h.send_code(&email).await;

    assert_error(
        &h.app.confirm(&id, &code, &public_key()).await,
        429,
        "too_many_attempts",
    );
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

/// The codes mailed to `email`, oldest first: what the address's owner finds in the inbox.
fn inbox(h: &crate::helpers::Harness, email: &str) -> Vec<String> {
    h.mail
        .calls()
        .iter()
        .filter(|call| call.body["email"] == email)
        .map(|call| call.body["code"].as_str().unwrap().to_owned())
        .collect()
}

/// Issue 23 finding 5 (targeted lock-out through the resend window): an attacker's send for the
/// victim's address opened the window, the victim's own send became a throttled challenge
/// without a code, and the only mail the victim got carried the attacker's challenge's code,
/// which the victim's challenge refused: 0 of 4 logins succeeded. Now (SPEC §2) a throttled
/// challenge accepts the code of the challenge that opened its window, and one code confirms at
/// most one challenge.
#[tokio::test]
async fn the_mail_an_owner_receives_works_for_the_throttled_challenge_the_owner_holds() {
    let h = harness(&[]).await;
    for round in 0..4 {
        let victim = unique_email();
        let attackers = h.app.send_email_code(&victim).await.body["challenge_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let victims = h.app.send_email_code(&victim).await.body["challenge_id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            h.challenge_field(&victims, "status").await.as_deref(),
            Some("delivery_throttled")
        );
        let mail = inbox(&h, &victim);
        assert_eq!(mail.len(), 1, "one mail inside the window");
        let key = public_key();

        let login = h.app.confirm(&victims, &mail[0], &key).await;
        assert_eq!(login.status, 200, "round {round}: {login:?}");
        let session = login.body["device_session_id"].as_str().unwrap().to_owned();
        // The identical retry returns the same session.
        let retry = h.app.confirm(&victims, &mail[0], &key).await;
        assert_eq!(retry.body["device_session_id"], session.as_str());
        // The code is spent: neither the opening challenge nor another throttled one takes it
        // for another device.
        assert_error(
            &h.app.confirm(&attackers, &mail[0], &public_key()).await,
            409,
            "challenge_already_confirmed",
        );
        let follower = h.app.send_email_code(&victim).await.body["challenge_id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_error(
            &h.app.confirm(&follower, &mail[0], &public_key()).await,
            409,
            "challenge_already_confirmed",
        );
        let user = h.session_field(&session, "user_id").await.unwrap();
        assert_eq!(
            h.users.calls().last().unwrap().body["email"],
            victim.as_str()
        );
        assert!(!user.is_empty());
    }
}

/// Issue 23 finding 10: a throttled challenge kept no address, so its wrong guesses skipped the
/// address's failure budget, and once the budget was spent a wrong confirm there still answered
/// 422, telling whether someone had asked for a code within the cooldown. Its attempts now count
/// on the challenge that opened the window and on the address's budget, as if made there.
#[tokio::test]
async fn a_throttled_challenges_guesses_count_on_the_opening_challenge_and_the_address_budget() {
    let h = harness(&[
        (config::CHALLENGE_MAX_ATTEMPTS, "3"),
        (config::CONFIRM_FAILURE_BUDGET, "4"),
    ])
    .await;
    let email = unique_email();
    let (opening, code) = h.send_code(&email).await;
    let throttled = h.app.send_email_code(&email).await.body["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..3 {
        assert_error(
            &h.app.confirm(&throttled, wrong, &public_key()).await,
            422,
            "invalid_code",
        );
    }
    assert_eq!(
        h.challenge_field(&opening, "attempts").await.as_deref(),
        Some("3")
    );
    // The opening challenge is dead for everyone, the code's owner included.
    assert_error(
        &h.app.confirm(&opening, &code, &public_key()).await,
        429,
        "too_many_attempts",
    );

    // The address's budget (4): two wrong guesses on a first challenge, then the resend window
    // passes (its key removed); two on the next one's throttled follower spend the rest, after
    // which the follower answers 429 as every challenge of the address does.
    let email = unique_email();
    let window = h
        .app
        .store()
        .keys
        .resend_throttle(authsession::domain::Email::parse(&email).unwrap().hash());
    let (first, code) = h.send_code(&email).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..2 {
        h.app.confirm(&first, wrong, &public_key()).await;
    }
    let mut redis = h.app.redis.clone();
    let () = redis.del(&window).await.unwrap();
    let (_, code) = h.send_code(&email).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let throttled = h.app.send_email_code(&email).await.body["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..2 {
        assert_error(
            &h.app.confirm(&throttled, wrong, &public_key()).await,
            422,
            "invalid_code",
        );
    }
    assert_error(
        &h.app.confirm(&throttled, &code, &public_key()).await,
        429,
        "too_many_attempts",
    );
}

/// A confirm that reaches `challenge_confirm` after its challenge changed (a twin confirmed it,
/// then wrong guesses spent its attempts) gets the answer `challenge_verify` gives that challenge:
/// both scripts judge a code by the one table in `lua/include/challenge.lua`. Before
/// `challenge_confirm` v12 the two copies differed: verify answered `too_many_attempts` and confirm
/// handed the committed session to the right code with the same key.
#[tokio::test]
async fn verify_and_confirm_judge_a_changed_challenge_by_one_table() {
    use authsession::domain::{ClientPublicKey, Email};
    use authsession::store::challenges::{Rejection, Verified};
    use authsession::store::scripts::challenge_confirm::ChallengeConfirmReply;
    use authsession::store::scripts::Plan;

    use crate::scripts_audit::{
        confirm_call, confirm_request, hashes, new_user, sent_challenge, standalone,
    };

    let redis = RedisServer::start().await;
    let b = standalone(&redis).await;
    let (id, code) = sent_challenge(&b, &Email::parse(&unique_email()).unwrap()).await;
    let (right, wrong) = (hashes(&id, &code), hashes(&id, &other_code(&code)));
    let key = ClientPublicKey::parse(&public_key()).unwrap();
    let user = new_user();
    let layout = b.store.keys.layout();
    let session = layout.device_session_id(&id, &user);
    let first = confirm_request(&id, &right, &key, &user, &session);
    let created = b.store.run(&confirm_call(&first)).await;
    assert!(matches!(
        created,
        Ok(Plan::Done(ChallengeConfirmReply::Created { .. }))
    ));

    let verify = |hashes| verify_once(&b, &id, hashes, &key);
    assert!(matches!(verify(&right).await, Verified::Confirmed(s) if s == session));
    for _ in 0..5 {
        let guess = verify(&wrong).await;
        assert!(
            matches!(guess, Verified::Rejected(Rejection::AlreadyConfirmed)),
            "{guess:?}"
        );
    }

    // The twin's confirm: the right code and key, its own (another) session id.
    let other = layout.random_device_session_id(layout.of_user(user.as_str()));
    let twin = confirm_request(&id, &right, &key, &user, &other);
    let verified = verify(&right).await;
    let confirmed = b.store.run(&confirm_call(&twin)).await;
    assert!(
        matches!(verified, Verified::Rejected(Rejection::TooManyAttempts)),
        "{verified:?}"
    );
    assert!(
        matches!(
            confirmed,
            Ok(Plan::Done(ChallengeConfirmReply::Rejected(
                Rejection::TooManyAttempts
            )))
        ),
        "{confirmed:?}"
    );
    // The replay of the very call that created the session still answers `created`.
    let replay = b.store.run(&confirm_call(&first)).await;
    assert!(
        matches!(
            replay,
            Ok(Plan::Done(ChallengeConfirmReply::Created { .. }))
        ),
        "{replay:?}"
    );
}

/// One `challenge_verify` call with 5 attempts and a fresh attempt id.
async fn verify_once(
    b: &crate::scripts_audit::Bench,
    id: &authsession::domain::ChallengeId,
    hashes: &authsession::domain::CodeHashes,
    key: &authsession::domain::ClientPublicKey,
) -> authsession::store::challenges::Verified {
    let client = crate::scripts_audit::client();
    let admit = crate::scripts_audit::admit(&b.store, &client);
    let attempt = authsession::domain::RequestId::generate();
    b.store
        .challenge_verify(id, hashes, key, 5, admit, &attempt, None)
        .await
        .unwrap()
}

/// A code that is not `code`.
fn other_code(code: &authsession::domain::LoginCode) -> authsession::domain::LoginCode {
    let other = if code.as_str() == "000000" {
        "111111"
    } else {
        "000000"
    };
    authsession::domain::LoginCode::parse(other).unwrap()
}
