//! `send-email-code`: delivery, throttling, suppression, dependency failures, malformed input.

use std::time::Instant;

use authsession_testbench::Behaviour;
use serde_json::json;

use crate::helpers::{assert_error, harness, unique_email};

#[tokio::test]
async fn a_send_creates_a_sent_challenge_and_one_delivery_with_the_idempotency_key() {
    let h = harness(&[]).await;
    let email = unique_email();

    let reply = h
        .app
        .send_email_code(&format!("  {}  ", email.to_uppercase()))
        .await;

    assert_eq!(reply.status, 200, "{reply:?}");
    let challenge_id = reply.body["challenge_id"].as_str().unwrap();
    assert_eq!(
        reply.body.as_object().unwrap().len(),
        1,
        "only challenge_id in the answer"
    );
    assert_eq!(
        h.challenge_field(challenge_id, "status").await.as_deref(),
        Some("sent")
    );
    let deliveries = h.mail.calls();
    assert_eq!(deliveries.len(), 1);
    let delivery = &deliveries[0];
    assert_eq!(delivery.path, "/api/v1/internal/login-code-deliveries");
    assert_eq!(
        delivery.headers.get("idempotency-key").map(String::as_str),
        Some(challenge_id)
    );
    assert_eq!(delivery.body["email"], email.as_str());
    let code = delivery.body["code"].as_str().unwrap();
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
    let keys = h.all_keys().await;
    assert!(
        keys.iter()
            .all(|k| !k.contains(&email) && !k.contains("example.com")),
        "{keys:?}"
    );
}

#[tokio::test]
async fn a_second_send_inside_the_cooldown_is_throttled_and_calls_neither_directory_nor_mailer() {
    let h = harness(&[]).await;
    let email = unique_email();
    let first = h.app.send_email_code(&email).await;
    h.users.clear_calls();
    h.mail.clear_calls();

    let second = h
        .app
        .send_email_code(&format!(" {} ", email.to_uppercase()))
        .await;

    assert_eq!(second.status, 200, "{second:?}");
    assert_ne!(first.body["challenge_id"], second.body["challenge_id"]);
    let id = second.body["challenge_id"].as_str().unwrap();
    assert_eq!(
        h.challenge_field(id, "status").await.as_deref(),
        Some("delivery_throttled")
    );
    assert!(h.users.calls().is_empty(), "{:?}", h.users.calls());
    assert!(h.mail.calls().is_empty(), "{:?}", h.mail.calls());
}

#[tokio::test]
async fn a_blocked_address_gets_a_challenge_id_a_suppressed_challenge_and_no_mail() {
    let h = harness(&[]).await;
    let email = unique_email();
    h.users.block_email(&email);

    let reply = h.app.send_email_code(&email).await;

    assert_eq!(reply.status, 200, "{reply:?}");
    let id = reply.body["challenge_id"].as_str().unwrap();
    assert_eq!(
        h.challenge_field(id, "status").await.as_deref(),
        Some("delivery_suppressed")
    );
    assert!(h.mail.calls().is_empty());
}

#[tokio::test]
async fn a_user_service_503_is_retried_once_then_fails_and_releases_the_resend_window() {
    let h = harness(&[]).await;
    let email = unique_email();
    h.users.set_behaviour(Behaviour::Status(503));

    let reply = h.app.send_email_code(&email).await;

    assert_error(&reply, 503, "service_unavailable");
    assert_eq!(h.users.calls().len(), 2, "one retry on 503");
    assert!(h.mail.calls().is_empty());
    let mut redis = h.app.redis.clone();
    let challenge_keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", h.app.keys().challenge_prefix()))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(challenge_keys.len(), 1);
    let status: String = redis::cmd("HGET")
        .arg(&challenge_keys[0])
        .arg("status")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(status, "delivery_failed");

    h.users.set_behaviour(Behaviour::Normal);
    let retry = h.app.send_email_code(&email).await;
    let id = retry.body["challenge_id"].as_str().unwrap();
    assert_eq!(
        h.challenge_field(id, "status").await.as_deref(),
        Some("sent"),
        "the retry was throttled"
    );
}

#[tokio::test]
async fn a_user_service_500_or_malformed_body_is_not_retried() {
    let h = harness(&[]).await;
    for behaviour in [Behaviour::Status(500), Behaviour::Malformed] {
        h.users.clear_calls();
        h.users.set_behaviour(behaviour.clone());

        let reply = h.app.send_email_code(&unique_email()).await;

        assert_error(&reply, 503, "service_unavailable");
        assert_eq!(h.users.calls().len(), 1, "{behaviour:?}");
    }
}

#[tokio::test]
async fn a_hanging_user_service_answers_503_after_the_timeouts() {
    let h = harness(&[]).await;
    h.users.set_behaviour(Behaviour::Hang);
    let started = Instant::now();

    let reply = h.app.send_email_code(&unique_email()).await;

    assert_error(&reply, 503, "service_unavailable");
    // Two attempts of 1 s each (a timeout is transient, so the read is retried once).
    let bound = h.app.longest_answer();
    assert!(
        started.elapsed() < bound,
        "{:?} (bound {bound:?})",
        started.elapsed()
    );
    assert_eq!(h.users.calls().len(), 2);
}

#[tokio::test]
async fn a_failing_mail_service_is_called_once_and_answers_503() {
    let h = harness(&[]).await;
    for behaviour in [Behaviour::Status(503), Behaviour::Hang] {
        h.mail.clear_calls();
        h.mail.set_behaviour(behaviour.clone());

        let reply = h.app.send_email_code(&unique_email()).await;

        assert_error(&reply, 503, "service_unavailable");
        assert_eq!(h.mail.calls().len(), 1, "{behaviour:?}");
    }
}

#[tokio::test]
async fn redis_down_answers_503_with_the_envelope() {
    let h = harness(&[]).await;
    h.redis.stop();

    let reply = h.app.send_email_code(&unique_email()).await;

    assert_error(&reply, 503, "service_unavailable");
    assert!(h.users.calls().is_empty());
}

#[tokio::test]
async fn malformed_bodies_answer_400_invalid_request() {
    let h = harness(&[]).await;
    let url = h.app.public_url("/api/v1/public/auth/send-email-code");
    let long_local = format!("{}@example.com", "a".repeat(250));
    let long_locale = "a".repeat(36);
    let json_bodies = [
        json!({}),
        json!({"email": null}),
        json!({"email": 42}),
        json!({"email": ["a@example.com"]}),
        json!({"email": ""}),
        json!({"email": "   "}),
        json!({"email": "no-at-sign"}),
        json!({"email": "@example.com"}),
        json!({"email": "user@"}),
        json!({"email": "user@localhost"}),
        json!({"email": "a@b@example.com"}),
        json!({"email": "user@exa mple.com"}),
        json!({"email": "user@-example.com"}),
        json!({"email": "user@example..com"}),
        json!({"email": long_local}),
        json!({"email": "a@example.com", "extra": 1}),
        json!({"email": "a@example.com", "locale": 5}),
        json!({"email": "a@example.com", "locale": long_locale}),
        json!({"email": "a@example.com", "locale": "en_GB"}),
        json!(["a@example.com"]),
        json!("a@example.com"),
        json!(null),
    ];
    for body in json_bodies {
        let reply = h.app.send(h.app.http.post(&url).json(&body)).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (400, Some("invalid_request")),
            "{body}: {reply:?}"
        );
    }
    let raw_bodies = [
        ("application/json", "{"),
        ("application/json", "{\"email\": \"a@example.com\",}"),
        ("application/json", ""),
        ("application/json", "\u{feff}{}"),
        ("text/plain", r#"{"email":"a@example.com"}"#),
        ("application/x-www-form-urlencoded", "email=a%40example.com"),
    ];
    for (content_type, body) in raw_bodies {
        let request = h
            .app
            .http
            .post(&url)
            .header("content-type", content_type)
            .body(body);
        let reply = h.app.send(request).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (400, Some("invalid_request")),
            "{body}: {reply:?}"
        );
    }
    let no_type = h.app.http.post(&url).body(r#"{"email":"a@example.com"}"#);
    assert_error(&h.app.send(no_type).await, 400, "invalid_request");
    assert!(h.users.calls().is_empty() && h.mail.calls().is_empty());
}
