//! The gateway under the least ACL docs/operations.md grants it, verbatim: it authenticates,
//! records nonces, follows revokes.

use super::{front, refused, send, Edge};
use crate::helpers::{documented_acl, filled};

#[tokio::test]
async fn the_gateway_runs_under_the_documented_acl_verbatim() {
    let edge = Edge::start(0, &[]).await;
    let mut env = edge.h.app.cli_env();
    let get = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let (p, g, s) = (
        get("AUTHSESSION_REDIS_KEY_PREFIX"),
        get("AUTHSESSION_GATEWAY_SESSION_KEY_PREFIX"),
        get("AUTHSESSION_GATEWAY_SESSION_EVENTS_STREAM"),
    );
    let mut cmd = redis::cmd("ACL");
    let grant = documented_acl("authsession-gateway");
    for word in filled(&grant, (&p, &g, &s), "gateway-secret-123") {
        cmd.arg(word);
    }
    let () = cmd
        .query_async(&mut edge.h.redis.connection().await)
        .await
        .expect("the documented ACL SETUSER");
    env.retain(|(k, _)| {
        !k.starts_with("AUTHSESSION_REDIS_USERNAME") && !k.starts_with("AUTHSESSION_REDIS_PASSWORD")
    });
    env.push((
        "AUTHSESSION_REDIS_USERNAME".into(),
        "authsession-gateway".into(),
    ));
    env.push((
        "AUTHSESSION_REDIS_PASSWORD".into(),
        "gateway-secret-123".into(),
    ));
    let front = front(&edge.upstream, &env).await;

    let session = edge.login().await;
    let url = front.nginx.url("/v1/me?x=1");
    let fields = session.sign("GET", &url, None);
    assert_eq!(
        send("GET", &url, fields.clone(), None).await.status,
        200,
        "{:?}",
        front.gateway.lines()
    );
    assert_eq!(
        send("GET", &url, fields, None).await.reason.as_deref(),
        Some("replayed")
    );
    let body = b"{}";
    let post = front.nginx.url("/v1/items");
    assert_eq!(
        send(
            "POST",
            &post,
            session.sign("POST", &post, Some(body)),
            Some(body)
        )
        .await
        .status,
        200
    );

    let reply = edge
        .h
        .app
        .post_internal(
            &format!("/api/v1/internal/sessions/{}/revoke", session.id),
            None,
        )
        .await;
    assert_eq!(reply.status, 200);
    let answer = refused(&url, &session).await;
    assert_eq!(
        answer.reason.as_deref(),
        Some("revoked"),
        "the revoke never reached the gateway: {answer:?}"
    );
    let lines = front.gateway.lines();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("NOPERM") || l.contains("interrupted")),
        "{lines:?}"
    );
}
