//! The OpenAPI document cannot drift: every route of the routers is documented (and nothing
//! else), and real responses of every route validate against the documented schemas.

use std::collections::BTreeSet;

use authsession::cli::openapi::DOCUMENT;
use authsession::config;
use authsession::http::{internal, public};
use authsession_testbench::app::Reply;
use authsession_testbench::{spawn_app, RedisServer};
use serde_json::{json, Value};

use crate::helpers::{harness, public_key, unique_email};

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("the OpenAPI document is JSON")
}

/// Fails unless `reply` is documented for `method path` with its status and matches the schema.
fn assert_documented(doc: &Value, method: &str, path: &str, reply: &Reply) {
    let errors = violations(doc, method, path, reply);
    assert!(
        errors.is_empty(),
        "{method} {path} -> {}: {errors:?}\n{}",
        reply.status,
        reply.body
    );
}

fn violations(doc: &Value, method: &str, path: &str, reply: &Reply) -> Vec<String> {
    let response = &doc["paths"][path][method]["responses"][reply.status.to_string()];
    if !response.is_object() {
        return vec![format!("status {} is not documented", reply.status)];
    }
    let schema_ref = &response["content"]["application/json"]["schema"]["$ref"];
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": schema_ref,
        "components": doc["components"],
    });
    let validator = jsonschema::validator_for(&root).expect("the documented schema compiles");
    validator
        .iter_errors(&reply.body)
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn the_validation_catches_a_response_that_breaks_the_document() {
    let doc = document();
    let path = public::SEND_EMAIL_CODE;
    let reply = |status, body| Reply { status, body };
    assert!(violations(
        &doc,
        "post",
        path,
        &reply(200, json!({"challenge_id": "abc"}))
    )
    .is_empty());
    for wrong in [
        reply(200, json!({"challenge_id": 5})),
        reply(200, json!({"challenge_id": "abc", "extra": true})),
        reply(400, json!({"error": {"code": "made_up", "message": "x"}})),
        reply(418, json!({})),
    ] {
        assert!(
            !violations(&doc, "post", path, &wrong).is_empty(),
            "{wrong:?}"
        );
    }
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_routers_serve() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    // The surfaces' route tables, which build the routers.
    let routes: BTreeSet<(String, String)> = public::routes()
        .into_iter()
        .chain(internal::routes())
        .map(|(method, path, _)| (method.as_str().to_lowercase(), path.to_owned()))
        .collect();
    assert_eq!(documented, routes);

    // And the routers really answer each documented method and path (not 404/405 fallbacks).
    let h = harness(&[]).await;
    for (method, path) in &documented {
        let concrete = path
            .replace("{user_id}", "u-1")
            .replace("{device_session_id}", "s1");
        let url = if path.contains("/public/") {
            h.app.public_url(&concrete)
        } else {
            h.app.internal_url(&concrete)
        };
        let reply = h
            .app
            .send(
                h.app
                    .http
                    .request(method.to_uppercase().parse().unwrap(), url),
            )
            .await;
        assert!(
            !matches!(reply.error_code(), Some("not_found" | "method_not_allowed")),
            "{method} {path} is documented but not routed: {reply:?}"
        );
    }
}

#[tokio::test]
async fn real_responses_of_every_route_match_the_document() {
    let doc = document();
    let h = harness(&[(config::RESEND_COOLDOWN, "1ms")]).await;
    let app = &h.app;
    let check =
        |method: &str, path: &str, reply: &Reply| assert_documented(&doc, method, path, reply);
    let send_path = public::SEND_EMAIL_CODE;
    let confirm_path = public::CONFIRM_EMAIL_CODE;

    let email = unique_email();
    let sent = app.send_email_code(&email).await;
    check("post", send_path, &sent);
    check(
        "post",
        send_path,
        &app.post_public(send_path, json!({"email": "nope"})).await,
    );
    let huge = app
        .http
        .post(app.public_url(send_path))
        .header("content-type", "application/json")
        .body("x".repeat(20_000));
    check("post", send_path, &app.send(huge).await);

    let challenge_id = sent.body["challenge_id"].as_str().unwrap();
    let code = h.mail.code_for(challenge_id).unwrap();
    let key = public_key();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    check(
        "post",
        confirm_path,
        &app.confirm(challenge_id, wrong, &key).await,
    );
    let confirmed = app.confirm(challenge_id, &code, &key).await;
    check("post", confirm_path, &confirmed);
    check(
        "post",
        confirm_path,
        &app.confirm(challenge_id, &code, &public_key()).await,
    );
    check(
        "post",
        confirm_path,
        &app.confirm("missing", &code, &key).await,
    );
    check(
        "post",
        confirm_path,
        &app.post_public(confirm_path, json!({"challenge_id": 1}))
            .await,
    );
    let id = confirmed.body["device_session_id"].as_str().unwrap();
    let user_id = h.session_field(id, "user_id").await.unwrap();

    let sessions_path = internal::USER_SESSIONS;
    check(
        "get",
        sessions_path,
        &app.get_internal(&format!("/api/v1/internal/users/{user_id}/sessions"))
            .await,
    );
    check(
        "get",
        sessions_path,
        &app.get_internal("/api/v1/internal/users/u1/sessions?limit=0")
            .await,
    );
    check(
        "get",
        internal::SESSION,
        &app.get_internal(&format!("/api/v1/internal/sessions/{id}"))
            .await,
    );
    check(
        "get",
        internal::SESSION,
        &app.get_internal("/api/v1/internal/sessions/missing").await,
    );
    let revoke = |id: &str| format!("/api/v1/internal/sessions/{id}/revoke");
    check(
        "post",
        internal::SESSION_REVOKE,
        &app.post_internal(&revoke(id), Some(json!({"reason_code": "test"})))
            .await,
    );
    check(
        "post",
        internal::SESSION_REVOKE,
        &app.post_internal(&revoke(id), None).await,
    );
    check(
        "post",
        internal::SESSION_REVOKE,
        &app.post_internal(&revoke("missing"), None).await,
    );
    let revoked_list = app
        .get_internal(&format!(
            "/api/v1/internal/users/{user_id}/sessions?status=revoked"
        ))
        .await;
    check("get", sessions_path, &revoked_list);

    h.login(&email).await;
    let (pending_id, pending_code) = h.send_code(&email).await;
    let revoke_all = |u: &str| format!("/api/v1/internal/users/{u}/sessions/revoke-all");
    check(
        "post",
        internal::USER_REVOKE_ALL,
        &app.post_internal(&revoke_all(&user_id), None).await,
    );
    check(
        "post",
        internal::USER_REVOKE_ALL,
        &app.post_internal(&revoke_all("ghost"), None).await,
    );
    let block = |u: &str| format!("/api/v1/internal/users/{u}/block");
    check(
        "post",
        internal::USER_BLOCK,
        &app.post_internal(&block(&user_id), None).await,
    );
    check(
        "post",
        internal::USER_BLOCK,
        &app.post_internal(&block(&user_id), None).await,
    );
    check(
        "post",
        internal::USER_BLOCK,
        &app.post_internal(&block("ghost"), None).await,
    );
    // A code sent before the block, confirmed after it: 403.
    check(
        "post",
        confirm_path,
        &app.confirm(&pending_id, &pending_code, &key).await,
    );

    let mut redis = h.app.redis.clone();
    let _: () = redis::cmd("SHUTDOWN")
        .arg("NOSAVE")
        .query_async(&mut redis)
        .await
        .unwrap_or(());
    check(
        "post",
        send_path,
        &app.send_email_code(&unique_email()).await,
    );

    // 401 from a token-protected internal surface.
    let other = RedisServer::start().await;
    let protected = spawn_app(
        &other,
        &[(config::INTERNAL_HTTP_TOKEN, "a-token-of-sixteen-chars")],
    )
    .await;
    check(
        "get",
        sessions_path,
        &protected
            .get_internal("/api/v1/internal/users/u1/sessions")
            .await,
    );
}

/// The admission limits' `429` is documented, `Retry-After` included.
#[tokio::test]
async fn a_rate_limited_answer_matches_the_document() {
    let doc = document();
    let h = harness(&[
        (config::SEND_RATE_LIMIT_PER_IP, "1/1m"),
        (config::CONFIRM_RATE_LIMIT_PER_IP, "1/1m"),
    ])
    .await;
    let app = &h.app;
    app.send_email_code(&unique_email()).await;
    let limited = app.send_email_code(&unique_email()).await;
    assert_eq!(limited.status, 429, "{limited:?}");
    assert_documented(&doc, "post", public::SEND_EMAIL_CODE, &limited);
    app.confirm("missing", "123456", &public_key()).await;
    let limited = app.confirm("missing", "123456", &public_key()).await;
    assert_eq!(limited.status, 429, "{limited:?}");
    assert_documented(&doc, "post", public::CONFIRM_EMAIL_CODE, &limited);
}
