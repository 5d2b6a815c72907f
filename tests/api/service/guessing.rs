//! Guessing codes: attempts per challenge, the address budget, throttled windows sharing the
//! opening challenge, one decision table for verify and confirm.

use authsession::config;
use authsession::store::challenges::ChallengeVerify;
use authsession_testbench::RedisServer;
use redis::AsyncCommands;

use crate::helpers::{assert_error, harness, public_key, unique_email};

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

    use crate::service::scripts_audit::{
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
    b: &crate::service::scripts_audit::Bench,
    id: &authsession::domain::ChallengeId,
    hashes: &authsession::domain::CodeHashes,
    key: &authsession::domain::ClientPublicKey,
) -> authsession::store::challenges::Verified {
    let client = crate::service::scripts_audit::client();
    let admit = crate::service::scripts_audit::admit(&b.store, &client);
    let attempt = authsession::domain::RequestId::generate();
    b.store
        .challenge_verify(ChallengeVerify {
            challenge_id: id,
            code_hashes: hashes,
            client_public_key: key,
            max_attempts: 5,
            admit,
            attempt_id: &attempt,
            address: None,
            via: None,
        })
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

/// The challenge id of a send for `email`.
async fn sent(h: &crate::helpers::Harness, email: &str) -> String {
    h.app.send_email_code(email).await.body["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Issue 36, finding 3: whoever holds a challenge of an address's window (the one that opened it,
/// or a follower) saw a wrong code answer `422` before the owner logged in with the mailed code and
/// `409 challenge_already_confirmed` after: a login oracle. A confirm reaching the opening
/// challenge through a challenge other than the one it was confirmed through now answers as if it
/// were still open (`422`, the attempt counted), the owner's identical retry aside.
#[tokio::test]
async fn a_challenge_of_the_window_tells_its_holder_nothing_of_the_owners_login() {
    let h = harness(&[(config::CHALLENGE_MAX_ATTEMPTS, "5")]).await;
    let wrong = "000001";
    // The attacker opened the window; the owner confirms through their own (throttled) one.
    let victim = unique_email();
    let opening = sent(&h, &victim).await;
    let owners = sent(&h, &victim).await;
    let code = inbox(&h, &victim).pop().unwrap();
    let wrong = if code == wrong { "000002" } else { wrong };
    assert_error(
        &h.app.confirm(&opening, wrong, &public_key()).await,
        422,
        "invalid_code",
    );
    let key = public_key();
    let login = h.app.confirm(&owners, &code, &key).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_error(
        &h.app.confirm(&opening, wrong, &public_key()).await,
        422,
        "invalid_code",
    );
    assert_eq!(
        h.challenge_field(&opening, "attempts").await.as_deref(),
        Some("2"),
        "counted as on an open challenge"
    );
    // The owner's identical retry still gets the session.
    let retry = h.app.confirm(&owners, &code, &key).await;
    assert_eq!(retry.body, login.body);

    // The owner opened the window and confirmed it; the attacker holds a follower.
    let victim = unique_email();
    let owners = sent(&h, &victim).await;
    let attackers = sent(&h, &victim).await;
    let code = inbox(&h, &victim).pop().unwrap();
    let wrong = if code == "000001" { "000002" } else { "000001" };
    assert_error(
        &h.app.confirm(&attackers, wrong, &public_key()).await,
        422,
        "invalid_code",
    );
    assert_eq!(
        h.app.confirm(&owners, &code, &public_key()).await.status,
        200
    );
    assert_error(
        &h.app.confirm(&attackers, wrong, &public_key()).await,
        422,
        "invalid_code",
    );
}

/// Issue 36, finding 4: between the opening challenge's expiry and its own, a follower answered
/// `410` and spent nothing, where an opener of the same age answered `422` and spent an attempt:
/// one send told whether someone had asked for a code in the minute before. Until its own expiry
/// a follower answers what an opener of its age would: a wrong code `422`, the mailed code a
/// session; after it, `410`.
#[tokio::test]
async fn a_follower_answers_as_an_opener_of_its_age() {
    let h = harness(&[
        (config::CHALLENGE_TTL, "4s"),
        (config::RESEND_COOLDOWN, "10s"),
    ])
    .await;
    let email = unique_email();
    let opening = sent(&h, &email).await;
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let follower = sent(&h, &email).await;
    let code = inbox(&h, &email).pop().unwrap();
    let wrong = if code == "000001" { "000002" } else { "000001" };
    // The opening challenge has expired (at 4 s); the follower has not (at 6 s).
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_error(
        &h.app.confirm(&opening, wrong, &public_key()).await,
        410,
        "challenge_expired",
    );
    assert_error(
        &h.app.confirm(&follower, wrong, &public_key()).await,
        422,
        "invalid_code",
    );
    let login = h.app.confirm(&follower, &code, &public_key()).await;
    assert_eq!(
        login.status, 200,
        "the mailed code, within the follower's life: {login:?}"
    );

    // Past the follower's own expiry: 410.
    let email = unique_email();
    sent(&h, &email).await;
    let follower = sent(&h, &email).await;
    tokio::time::sleep(std::time::Duration::from_millis(4200)).await;
    assert_error(
        &h.app.confirm(&follower, "000001", &public_key()).await,
        410,
        "challenge_expired",
    );
}
