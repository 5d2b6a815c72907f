//! The trusted internal surface: list, get, revoke, revoke-all, block, bearer auth.

use authsession::config;
use authsession::domain::UserId;
use authsession_testbench::{spawn_app, Behaviour, RedisServer};
use serde_json::json;

use crate::helpers::{assert_error, harness, public_key, session_id, unique_email, Harness};

#[tokio::test]
async fn the_runbook_smoke_request_lists_no_sessions_for_an_unknown_user() {
    let h = harness(&[]).await;

    let reply = h
        .app
        .get_internal("/api/v1/internal/users/nobody-here/sessions")
        .await;

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, json!({"sessions": [], "next_cursor": null}));
    assert!(
        h.users.calls().is_empty(),
        "listing must not call the user service"
    );
}

#[tokio::test]
async fn get_and_list_show_sessions_newest_first_with_filters_and_cursors() {
    let h = harness(&[(config::RESEND_COOLDOWN, "1ms")]).await;
    let email = unique_email();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(h.login(&email).await);
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let user_id = ids[0].1.clone();
    h.app
        .post_internal(
            &format!("/api/v1/internal/sessions/{}/revoke", ids[0].0),
            None,
        )
        .await;

    let one = h
        .app
        .get_internal(&format!("/api/v1/internal/sessions/{}", ids[1].0))
        .await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["status"], "active");
    assert_eq!(one.body["user_id"], user_id.as_str());
    assert!(one.body["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(one.body["revoked_at"], serde_json::Value::Null);
    assert_error(
        &h.app
            .get_internal("/api/v1/internal/sessions/missing")
            .await,
        404,
        "session_not_found",
    );

    let base = format!("/api/v1/internal/users/{user_id}/sessions");
    let all = h.app.get_internal(&base).await;
    let listed: Vec<_> = all.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["device_session_id"].clone())
        .collect();
    assert_eq!(listed, [json!(ids[2].0), json!(ids[1].0), json!(ids[0].0)]);

    let page1 = h.app.get_internal(&format!("{base}?limit=2")).await;
    assert_eq!(page1.body["sessions"].as_array().unwrap().len(), 2);
    let cursor = page1.body["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let page2 = h
        .app
        .get_internal(&format!("{base}?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(
        page2.body["sessions"][0]["device_session_id"],
        ids[0].0.as_str()
    );
    assert_eq!(page2.body["next_cursor"], serde_json::Value::Null);

    let active = h.app.get_internal(&format!("{base}?status=active")).await;
    assert_eq!(active.body["sessions"].as_array().unwrap().len(), 2);
    let revoked = h.app.get_internal(&format!("{base}?status=revoked")).await;
    assert_eq!(
        revoked.body["sessions"][0]["revoke_reason_code"],
        "admin_revoke"
    );
    assert!(revoked.body["sessions"][0]["revoked_at"].is_string());
}

#[tokio::test]
async fn revoke_writes_the_revoked_snapshot_and_one_event_and_is_terminal() {
    let h = harness(&[]).await;
    let (challenge_id, code) = h.send_code(&unique_email()).await;
    let key = public_key();
    let id = h.app.confirm(&challenge_id, &code, &key).await.body["device_session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/internal/sessions/{id}/revoke");

    let reply = h
        .app
        .post_internal(&path, Some(json!({"reason_code": "suspicious_login", "actor_type": "admin", "actor_id": "ops-42"})))
        .await;

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["outcome"], "revoked");
    assert_eq!(reply.body["session"]["status"], "revoked");
    assert_eq!(reply.body["session"]["version"], 2);
    assert_eq!(
        h.session_field(&id, "revoke_actor_id").await.as_deref(),
        Some("ops-42")
    );
    let snapshot = h.snapshot(&id).await.unwrap();
    assert_eq!(
        (snapshot["status"].as_str(), snapshot["version"].as_u64()),
        (Some("revoked"), Some(2))
    );
    assert_eq!(snapshot["revoke_reason_code"], "suspicious_login");
    let events = h.events_for(&id).await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        (events[1]["status"].as_str(), events[1]["version"].as_str()),
        ("revoked", "2")
    );

    let again = h.app.post_internal(&path, None).await;
    assert_eq!(again.body["outcome"], "already_revoked");
    assert_eq!(
        h.events_for(&id).await.len(),
        2,
        "a repeated revoke appends nothing"
    );

    let retry = h.app.confirm(&challenge_id, &code, &key).await;
    assert_eq!(retry.body["device_session_id"], id.as_str());
    assert_eq!(
        h.snapshot(&id).await.unwrap()["status"],
        "revoked",
        "a confirm retry never resurrects"
    );
    assert_error(
        &h.app
            .post_internal("/api/v1/internal/sessions/nope/revoke", None)
            .await,
        404,
        "session_not_found",
    );
}

async fn evalsha_calls(h: &Harness) -> u64 {
    let mut redis = h.app.redis.clone();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut redis)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn revoke_all_over_a_thousand_sessions_revokes_every_one_in_bounded_batches() {
    use authsession::store::scripts::user_sessions_revoke::REVOKE_BATCH;
    let h = harness(&[(config::MAX_ACTIVE_SESSIONS_PER_USER, "1000")]).await;
    let user_id = h.users.add_user(&unique_email());
    let user = UserId::parse(&user_id).unwrap();
    authsession_testbench::seed::active_sessions(&h.app.store(), &user, 1000).await;
    let calls_before = evalsha_calls(&h).await;

    let reply = h
        .app
        .post_internal(
            &format!("/api/v1/internal/users/{user_id}/sessions/revoke-all"),
            None,
        )
        .await;

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.body,
        json!({"outcome": "revoked", "revoked_count": 1000})
    );
    // One script call per batch of at most REVOKE_BATCH sessions: a larger batch needs fewer.
    let calls = evalsha_calls(&h).await - calls_before;
    assert!(
        calls >= u64::from(1000 / REVOKE_BATCH),
        "1000 sessions revoked in {calls} script calls: batches above {REVOKE_BATCH}"
    );
    let listed = h
        .app
        .get_internal(&format!(
            "/api/v1/internal/users/{user_id}/sessions?status=revoked&limit=1000"
        ))
        .await;
    let sessions = listed.body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1000);
    for session in sessions {
        let id = session["device_session_id"].as_str().unwrap();
        assert_eq!(h.snapshot(id).await.unwrap()["status"], "revoked", "{id}");
    }
    let again = h
        .app
        .post_internal(
            &format!("/api/v1/internal/users/{user_id}/sessions/revoke-all"),
            None,
        )
        .await;
    assert_eq!(
        again.body,
        json!({"outcome": "no_active_sessions", "revoked_count": 0})
    );
    assert_error(
        &h.app
            .post_internal("/api/v1/internal/users/ghost/sessions/revoke-all", None)
            .await,
        404,
        "user_not_found",
    );
}

#[tokio::test]
async fn block_calls_the_user_service_once_revokes_every_session_and_suppresses_later_sends() {
    let h = harness(&[(config::RESEND_COOLDOWN, "1ms")]).await;
    let email = unique_email();
    let (first, user_id) = h.login(&email).await;
    let (second, _) = h.login(&email).await;
    h.users.clear_calls();

    let reply = h
        .app
        .post_internal(
            &format!("/api/v1/internal/users/{user_id}/block"),
            Some(json!({"reason_code": "fraud"})),
        )
        .await;

    assert_eq!(
        reply.body,
        json!({"outcome": "blocked", "revoked_count": 2}),
        "{reply:?}"
    );
    let calls = h.users.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].path,
        format!("/api/v1/internal/users/{user_id}/block")
    );
    assert_eq!(calls[0].body["reason_code"], "fraud");
    for id in [&first, &second] {
        assert_eq!(
            h.session_field(id, "revoke_reason_code").await.as_deref(),
            Some("user_blocked")
        );
        assert_eq!(h.snapshot(id).await.unwrap()["status"], "revoked");
    }
    h.mail.clear_calls();
    let later = h.app.send_email_code(&email).await;
    let challenge = later.body["challenge_id"].as_str().unwrap();
    assert_eq!(
        h.challenge_field(challenge, "status").await.as_deref(),
        Some("delivery_suppressed")
    );
    assert!(h.mail.calls().is_empty());

    let again = h
        .app
        .post_internal(&format!("/api/v1/internal/users/{user_id}/block"), None)
        .await;
    assert_eq!(
        again.body,
        json!({"outcome": "already_blocked", "revoked_count": 0})
    );
}

#[tokio::test]
async fn a_user_service_failure_during_block_revokes_nothing() {
    let h = harness(&[]).await;
    let (id, user_id) = h.login(&unique_email()).await;
    h.users.set_behaviour(Behaviour::Status(503));

    let reply = h
        .app
        .post_internal(&format!("/api/v1/internal/users/{user_id}/block"), None)
        .await;

    assert_error(&reply, 503, "service_unavailable");
    assert_eq!(
        h.users
            .calls()
            .iter()
            .filter(|c| c.path.ends_with("/block"))
            .count(),
        1,
        "writes are never retried"
    );
    assert_eq!(
        h.session_field(&id, "status").await.as_deref(),
        Some("active")
    );

    h.users.set_behaviour(Behaviour::Normal);
    let retry = h
        .app
        .post_internal(&format!("/api/v1/internal/users/{user_id}/block"), None)
        .await;
    assert_eq!(retry.body["revoked_count"], 1, "{retry:?}");
}

#[tokio::test]
async fn bad_ids_and_reason_codes_answer_400() {
    let h = harness(&[]).await;
    let cases = [
        ("GET", "/api/v1/internal/users/bad%20id/sessions", None),
        (
            "GET",
            "/api/v1/internal/users/u1/sessions?status=gone",
            None,
        ),
        ("GET", "/api/v1/internal/users/u1/sessions?limit=0", None),
        ("GET", "/api/v1/internal/users/u1/sessions?limit=1001", None),
        (
            "GET",
            "/api/v1/internal/users/u1/sessions?cursor=garbage",
            None,
        ),
        ("GET", "/api/v1/internal/users/u1/sessions?unknown=1", None),
        ("GET", "/api/v1/internal/sessions/has.dot", None),
        (
            "POST",
            "/api/v1/internal/sessions/s1/revoke",
            Some(json!({"reason_code": "Not-Valid"})),
        ),
        (
            "POST",
            "/api/v1/internal/sessions/s1/revoke",
            Some(json!({"actor_type": ""})),
        ),
        (
            "POST",
            "/api/v1/internal/sessions/s1/revoke",
            Some(json!({"extra": true})),
        ),
        (
            "POST",
            "/api/v1/internal/sessions/s1/revoke",
            Some(json!({"actor_id": "x".repeat(129)})),
        ),
        (
            "POST",
            "/api/v1/internal/users/u1/block",
            Some(json!({"reason_code": 7})),
        ),
        (
            "POST",
            "/api/v1/internal/users/u%2F1/sessions/revoke-all",
            None,
        ),
    ];
    for (method, path, body) in cases {
        let request = h
            .app
            .http
            .request(method.parse().unwrap(), h.app.internal_url(path));
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let reply = h.app.send(request).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (400, Some("invalid_request")),
            "{method} {path}: {reply:?}"
        );
    }
    assert!(h.users.calls().is_empty());
}

#[tokio::test]
async fn a_missing_or_wrong_bearer_token_answers_401_on_every_internal_route() {
    let redis = RedisServer::start().await;
    let token = "s3cret-token-for-tests-0123456789";
    let app = spawn_app(&redis, &[(config::INTERNAL_HTTP_TOKEN, token)]).await;
    let path = "/api/v1/internal/users/u1/sessions";

    for header in [
        None,
        Some("Bearer wrong-token"),
        Some("Basic abc"),
        Some(&format!("Basic {token}")[..]),
        Some(&format!("Bearer {token}x")[..]),
        Some(token),
    ] {
        let mut request = app.http.get(app.internal_url(path));
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        assert_error(&app.send(request).await, 401, "unauthorized");
    }
    let unknown = app.send(app.http.get(app.internal_url("/nope"))).await;
    assert_error(&unknown, 401, "unauthorized");

    for scheme in ["Bearer", "bearer", "BEARER"] {
        let ok = app
            .send(
                app.http
                    .get(app.internal_url(path))
                    .header("authorization", format!("{scheme} {token}")),
            )
            .await;
        assert_eq!(ok.status, 200, "{scheme}: {ok:?}");
    }
}

#[tokio::test]
async fn expired_revoked_sessions_are_skipped_by_listings_and_pruned_from_the_index() {
    let h = harness(&[
        (config::RESEND_COOLDOWN, "1ms"),
        (config::REVOKED_SESSION_RETENTION, "1s"),
    ])
    .await;
    let email = unique_email();
    let (old, user_id) = h.login(&email).await;
    h.app
        .post_internal(&format!("/api/v1/internal/sessions/{old}/revoke"), None)
        .await;
    // The revoked-session retention runs out: Redis removes the record.
    let mut redis = h.app.redis.clone();
    let record = h.app.keys().session(&session_id(&old));
    for _ in 0..40 {
        let exists: bool = redis::AsyncCommands::exists(&mut redis, &record)
            .await
            .unwrap();
        if !exists {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let index = h
        .app
        .keys()
        .user_sessions(&crate::helpers::user_id(&user_id));

    let listed = h
        .app
        .get_internal(&format!("/api/v1/internal/users/{user_id}/sessions"))
        .await;
    assert_eq!(
        listed.body["sessions"],
        json!([]),
        "a listing shows only existing records"
    );

    let (new, _) = h.login(&email).await;
    let members: Vec<String> = redis::AsyncCommands::zrange(&mut redis, &index, 0, -1)
        .await
        .unwrap();
    assert_eq!(members, [new], "the next login pruned the stale entry");
}
