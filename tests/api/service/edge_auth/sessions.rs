//! The session behind a proof: revoked, blocked, unknown and evicted sessions are refused at the
//! edge, and a gateway that cannot reach Redis never lets a request through.

use authsession_testbench::unique_email;

use super::{refused, send, Edge, Session};

async fn accepted(edge: &Edge, session: &Session) {
    let url = edge.url("/v1/me");
    let answer = send("GET", &url, session.sign("GET", &url, None), None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[tokio::test]
async fn revoked_blocked_unknown_and_evicted_sessions_are_refused() {
    // One active session per user (a second login evicts the first); no resend window, so the
    // same address logs in twice in a row.
    let overrides = [
        ("AUTHSESSION_MAX_ACTIVE_SESSIONS_PER_USER", "1"),
        ("AUTHSESSION_RESEND_COOLDOWN", "1ms"),
    ];
    let edge = Edge::start(1, &overrides).await;
    let (revoked, blocked) = (edge.login().await, edge.login().await);
    accepted(&edge, &revoked).await;
    accepted(&edge, &blocked).await;

    let reply = edge
        .h
        .app
        .post_internal(
            &format!("/api/v1/internal/sessions/{}/revoke", revoked.id),
            None,
        )
        .await;
    assert_eq!(reply.status, 200);
    let answer = refused(&edge.url("/v1/me"), &revoked).await;
    assert_eq!(
        (answer.status, answer.reason.as_deref()),
        (401, Some("revoked")),
        "{answer:?}"
    );

    let reply = edge
        .h
        .app
        .post_internal(
            &format!("/api/v1/internal/users/{}/block", blocked.user_id),
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let answer = refused(&edge.url("/v1/me"), &blocked).await;
    assert_eq!(
        (answer.status, answer.reason.as_deref()),
        (401, Some("revoked")),
        "{answer:?}"
    );

    // An id of the right form that no session has.
    let unknown = Session {
        id: format!("{}x", &revoked.id[..revoked.id.len() - 1]),
        ..revoked.clone()
    };
    let url = edge.url("/v1/me");
    let answer = send("GET", &url, unknown.sign("GET", &url, None), None).await;
    assert_eq!(
        (answer.status, answer.reason.as_deref()),
        (401, Some("unknown_session")),
        "{answer:?}"
    );

    // Evicted: the same user logs in again with one active session allowed.
    let email = unique_email();
    let first = edge.login_as(&email).await;
    accepted(&edge, &first).await;
    let _second = edge.login_as(&email).await;
    let answer = refused(&edge.url("/v1/me"), &first).await;
    assert_eq!(
        (answer.status, answer.reason.as_deref()),
        (401, Some("revoked")),
        "{answer:?}"
    );
    assert_eq!(
        edge.upstream.reached().len(),
        3,
        "only the three accepted requests"
    );
}

#[tokio::test]
async fn without_redis_the_edge_fails_closed() {
    let edge = Edge::start(1, &[]).await;
    let session = edge.login().await;
    accepted(&edge, &session).await;
    edge.h.redis.stop();
    let body = b"{}";
    for (method, body) in [("GET", None), ("POST", Some(&body[..]))] {
        let url = edge.url("/v1/me");
        let answer = send(method, &url, session.sign(method, &url, body), body).await;
        assert!(
            answer.status >= 500,
            "{method} with Redis stopped: {answer:?}"
        );
    }
    assert_eq!(edge.upstream.reached().len(), 1);
    // The gateway gone too: nginx answers 5xx, never lets a request through.
    edge.fronts[0]
        .gateway
        .signal(nix::sys::signal::Signal::SIGKILL);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for (method, body) in [("GET", None), ("POST", Some(&body[..]))] {
        let url = edge.url("/v1/me");
        let answer = send(method, &url, session.sign(method, &url, body), body).await;
        assert!(
            answer.status >= 500,
            "{method} with the gateway down: {answer:?}"
        );
    }
    assert_eq!(edge.upstream.reached().len(), 1);
}
