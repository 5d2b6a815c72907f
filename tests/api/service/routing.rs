//! Router fallbacks: the JSON envelope on 404, 405 and 413, on both listeners; no health routes.

use crate::helpers::{assert_error, harness};

#[tokio::test]
async fn unknown_paths_and_wrong_methods_answer_the_envelope_on_both_listeners() {
    let h = harness(&[]).await;
    let app = &h.app;

    for url in [
        app.public_url("/nope"),
        app.internal_url("/nope"),
        app.public_url("/healthz"),
        app.internal_url("/readyz"),
        app.public_url("/metrics"),
    ] {
        assert_error(&app.send(app.http.get(&url)).await, 404, "not_found");
    }
    let send = app.public_url("/api/v1/public/auth/send-email-code");
    assert_error(
        &app.send(app.http.get(&send)).await,
        405,
        "method_not_allowed",
    );
    let session = app.internal_url("/api/v1/internal/sessions/abc");
    assert_error(
        &app.send(app.http.delete(&session)).await,
        405,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn bodies_over_16_kib_answer_413_with_the_envelope() {
    let h = harness(&[]).await;
    let app = &h.app;
    let big = format!(r#"{{"email":"{}@example.com"}}"#, "a".repeat(17 * 1024));
    let url = app.public_url("/api/v1/public/auth/send-email-code");

    let declared = app
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(big.clone());
    assert_error(&app.send(declared).await, 413, "payload_too_large");

    // Chunked, with no Content-Length: the limit holds while reading.
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(big) });
    let chunked = app
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream));
    assert_error(&app.send(chunked).await, 413, "payload_too_large");
    assert!(h.users.calls().is_empty());
}

/// A client's `x-request-id` was echoed and logged as-is: anyone could write text into the logs.
#[tokio::test]
async fn only_a_well_formed_request_id_is_kept() {
    let h = crate::helpers::harness(&[]).await;
    let url = h.app.internal_url("/api/v1/internal/users/nobody/sessions");
    for (sent, kept) in [
        ("abc-123_X.y", true),
        ("has spaces", false),
        ("quote\"and}", false),
        (&"a".repeat(65)[..], false),
    ] {
        let reply = h
            .app
            .http
            .get(&url)
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        let echoed = reply.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(echoed == sent, kept, "{sent:?} -> {echoed:?}");
        assert!(!echoed.is_empty());
    }
}
