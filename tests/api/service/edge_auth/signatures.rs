//! Signed requests through nginx: what passes, and every change to a signed request refused
//! before anything reaches the upstream.

use reqwest::header::{HeaderMap, HeaderValue};

use super::{client_request, nonce, now, send, Edge};

#[tokio::test]
async fn signed_requests_reach_the_upstream_as_the_sessions_user() {
    let edge = Edge::start(1, &[]).await;
    let session = edge.login().await;

    let url = edge.url("/v1/items?page=2&sort=new");
    let mut fields = session.sign("GET", &url, None);
    // A copy a client sends itself is replaced, never trusted.
    fields.insert(
        "x-authsession-user-id",
        HeaderValue::from_static("someone-else"),
    );
    let answer = send("GET", &url, fields, None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        answer.body.contains(&session.user_id),
        "the upstream's answer: {answer:?}"
    );
    let body = br#"{"name":"first"}"#;
    let url_post = edge.url("/v1/items");
    let mut fields = session.sign("POST", &url_post, Some(body));
    fields.insert(
        "x-authsession-user-id",
        HeaderValue::from_static("someone-else"),
    );
    let answer = send("POST", &url_post, fields, Some(body)).await;
    assert_eq!(answer.status, 200, "{answer:?}");

    // A chunked body (no Content-Length) goes through the relay too.
    let chunks: Vec<Result<&'static [u8], std::io::Error>> = vec![Ok(&body[..5]), Ok(&body[5..])];
    let answer = reqwest::Client::new()
        .post(&url_post)
        .headers(session.sign("POST", &url_post, Some(body)))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let reached = edge.upstream.reached();
    assert_eq!(reached.len(), 3, "{reached:?}");
    assert_eq!(reached[2].body, body, "the chunked body");
    let (get, post) = (&reached[0], &reached[1]);
    assert_eq!(
        (get.method.as_str(), get.uri.as_str()),
        ("GET", "/v1/items?page=2&sort=new")
    );
    assert_eq!(
        (
            post.method.as_str(),
            post.uri.as_str(),
            post.body.as_slice()
        ),
        ("POST", "/v1/items", &body[..])
    );
    for seen in [get, post] {
        assert_eq!(
            seen.header("x-authsession-user-id"),
            Some(session.user_id.as_str()),
            "{seen:?}"
        );
        assert_eq!(
            seen.header("x-authsession-device-session-id"),
            Some(session.id.as_str())
        );
        assert_eq!(
            seen.headers.get_all("x-authsession-user-id").iter().count(),
            1
        );
    }
    assert!(get.body.is_empty());

    // The reference client, both ways, and with DPoP.
    edge.upstream.clear();
    let (ok, out, err) = client_request(&session.file, &["GET", &edge.url("/v1/me?x=1")]).await;
    assert!(ok, "{out} {err}");
    assert!(out.contains(&session.user_id), "{out}");
    let (ok, out, err) = client_request(
        &session.file,
        &["POST", &edge.url("/v1/items"), "--data", "{\"n\":2}"],
    )
    .await;
    assert!(ok, "{out} {err}");
    let (ok, out, err) = client_request(
        &session.file,
        &["DELETE", &edge.url("/v1/items/7"), "--dpop"],
    )
    .await;
    assert!(ok, "{out} {err}");
    let seen: Vec<_> = edge
        .upstream
        .reached()
        .iter()
        .map(|r| (r.method.clone(), r.uri.clone(), r.body.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("GET".into(), "/v1/me?x=1".into(), vec![]),
            ("POST".into(), "/v1/items".into(), b"{\"n\":2}".to_vec()),
            ("DELETE".into(), "/v1/items/7".into(), vec![]),
        ]
    );
    let saved = std::fs::read_to_string(&session.file).unwrap();
    let key = serde_json::from_str::<serde_json::Value>(&saved).unwrap()["private_key"]
        .as_str()
        .unwrap()
        .to_owned();
    for line in edge.fronts[0].gateway.lines() {
        assert!(
            !line.contains(&key) && !line.contains("signature"),
            "a log line holds a proof: {line}"
        );
    }
}

/// What is sent (method, URL, fields, body) and the status and reason expected.
type Case<'a> = (
    &'a str,
    &'a str,
    String,
    HeaderMap,
    Option<&'a [u8]>,
    u16,
    &'a str,
);

#[tokio::test]
async fn every_change_to_a_signed_request_is_refused_and_nothing_reaches_the_upstream() {
    let edge = Edge::start(1, &[]).await;
    let (session, other) = (edge.login().await, edge.login().await);
    let url = edge.url("/v1/items?page=2");
    let body = br#"{"amount":10}"#;
    let post_url = edge.url("/v1/transfers");
    let with = |name: &'static str, value: &'static str| {
        let mut fields = HeaderMap::new();
        fields.insert(name, HeaderValue::from_static(value));
        fields
    };

    // (what, method sent, url sent, fields, body sent, expected status, expected reason)
    let flipped = {
        let mut fields = session.sign("GET", &url, None);
        let sig = fields["signature"].to_str().unwrap().to_owned();
        let i = sig.find(":").unwrap() + 5;
        let c = if &sig[i..i + 1] == "A" { "B" } else { "A" };
        fields.insert(
            "signature",
            HeaderValue::from_str(&format!("{}{c}{}", &sig[..i], &sig[i + 1..])).unwrap(),
        );
        fields
    };
    let edited = |from: &str, to: &str| {
        let mut fields = session.sign("GET", &url, None);
        let input = fields["signature-input"]
            .to_str()
            .unwrap()
            .replace(from, to);
        fields.insert("signature-input", HeaderValue::from_str(&input).unwrap());
        fields
    };
    let created = now();
    let cases: Vec<Case> = vec![
        (
            "method",
            "DELETE",
            url.clone(),
            session.sign("GET", &url, None),
            None,
            401,
            "bad_signature",
        ),
        (
            "path",
            "GET",
            edge.url("/v1/admin?page=2"),
            session.sign("GET", &url, None),
            None,
            401,
            "bad_signature",
        ),
        (
            "query",
            "GET",
            edge.url("/v1/items?page=3"),
            session.sign("GET", &url, None),
            None,
            401,
            "bad_signature",
        ),
        (
            "query dropped",
            "GET",
            edge.url("/v1/items"),
            session.sign("GET", &url, None),
            None,
            401,
            "bad_signature",
        ),
        (
            "authority",
            "GET",
            url.clone(),
            session.sign("GET", "http://api.example.com/v1/items?page=2", None),
            None,
            401,
            "bad_signature",
        ),
        (
            "covered field",
            "GET",
            url.clone(),
            {
                let mut f = session.sign_as(
                    &session.id,
                    ("GET", &url, None),
                    (now(), &nonce()),
                    with("x-request-purpose", "read"),
                    &["x-request-purpose"],
                );
                f.insert("x-request-purpose", HeaderValue::from_static("write"));
                f
            },
            None,
            401,
            "bad_signature",
        ),
        (
            "flipped signature byte",
            "GET",
            url.clone(),
            flipped,
            None,
            401,
            "bad_signature",
        ),
        (
            "another user's keyid",
            "GET",
            url.clone(),
            session.sign_as(
                &other.id,
                ("GET", &url, None),
                (now(), &nonce()),
                HeaderMap::new(),
                &[],
            ),
            None,
            401,
            "bad_signature",
        ),
        (
            "alg",
            "GET",
            url.clone(),
            edited("alg=\"ed25519\"", "alg=\"hmac-sha256\""),
            None,
            401,
            "unsupported_algorithm",
        ),
        (
            "no created",
            "GET",
            url.clone(),
            edited(&format!(";created={created}"), ""),
            None,
            401,
            "malformed",
        ),
        (
            "no nonce",
            "GET",
            url.clone(),
            {
                let f = session.sign_as(
                    &session.id,
                    ("GET", &url, None),
                    (created, "AAAAAAAAAAAAAAAAAAAAAAAA"),
                    HeaderMap::new(),
                    &[],
                );
                let i = f["signature-input"]
                    .to_str()
                    .unwrap()
                    .replace(";nonce=\"AAAAAAAAAAAAAAAAAAAAAAAA\"", "");
                let mut f = f;
                f.insert("signature-input", HeaderValue::from_str(&i).unwrap());
                f
            },
            None,
            401,
            "malformed",
        ),
        (
            "past the maximum age",
            "GET",
            url.clone(),
            session.sign_as(
                &session.id,
                ("GET", &url, None),
                (now() - 61, &nonce()),
                HeaderMap::new(),
                &[],
            ),
            None,
            401,
            "stale",
        ),
        (
            "beyond the skew",
            "GET",
            url.clone(),
            session.sign_as(
                &session.id,
                ("GET", &url, None),
                (now() + 30, &nonce()),
                HeaderMap::new(),
                &[],
            ),
            None,
            401,
            "not_yet_valid",
        ),
        (
            "no proof",
            "GET",
            url.clone(),
            HeaderMap::new(),
            None,
            401,
            "missing",
        ),
        (
            "session id alone",
            "GET",
            url.clone(),
            {
                let mut f = HeaderMap::new();
                f.insert(
                    "authorization",
                    HeaderValue::from_str(&format!("DPoP {}", session.id)).unwrap(),
                );
                f
            },
            None,
            401,
            "malformed",
        ),
        (
            "body unlike its digest",
            "POST",
            post_url.clone(),
            session.sign("POST", &post_url, Some(body)),
            Some(br#"{"amount":9999}"#),
            401,
            "digest_mismatch",
        ),
        (
            "body without digest covered",
            "POST",
            post_url.clone(),
            session.sign("POST", &post_url, None),
            Some(body),
            401,
            "uncovered_component",
        ),
        (
            "digest of the new body, signature of the old",
            "POST",
            post_url.clone(),
            {
                let mut f = session.sign("POST", &post_url, Some(body));
                let d = authsession::gateway::edge::digest::sha256_field(br#"{"amount":9999}"#);
                f.insert("content-digest", HeaderValue::from_str(&d).unwrap());
                f
            },
            Some(br#"{"amount":9999}"#),
            401,
            "bad_signature",
        ),
    ];
    for (what, method, url, fields, body, status, reason) in cases {
        let answer = send(method, &url, fields, body).await;
        assert_eq!(
            (answer.status, answer.reason.as_deref()),
            (status, Some(reason)),
            "{what}: {answer:?}"
        );
    }
    assert!(
        edge.upstream.reached().is_empty(),
        "a refused request reached the upstream: {:?}",
        edge.upstream.reached()
    );

    // A replay: the same signed request twice, then its POST with a body likewise.
    let fields = session.sign("GET", &url, None);
    assert_eq!(send("GET", &url, fields.clone(), None).await.status, 200);
    let again = send("GET", &url, fields, None).await;
    assert_eq!(
        (again.status, again.reason.as_deref()),
        (401, Some("replayed"))
    );
    let fields = session.sign("POST", &post_url, Some(body));
    assert_eq!(
        send("POST", &post_url, fields.clone(), Some(body))
            .await
            .status,
        200
    );
    let again = send("POST", &post_url, fields, Some(body)).await;
    assert_eq!(
        (again.status, again.reason.as_deref()),
        (401, Some("replayed"))
    );
    assert_eq!(edge.upstream.reached().len(), 2);
}

#[tokio::test]
async fn a_nonce_is_accepted_once_across_gateway_instances() {
    let edge = Edge::start(2, &[]).await;
    let session = edge.login().await;
    let (first, second) = (&edge.fronts[0].nginx, &edge.fronts[1].nginx);
    // Signed for the authority both fronts are reached by.
    let path = "/v1/items?page=1";
    let fields = session.sign("GET", &first.url(path), None);
    let mut replay = fields.clone();
    replay.insert(
        "host",
        HeaderValue::from_str(&format!("127.0.0.1:{}", first.port)).unwrap(),
    );
    assert_eq!(
        send("GET", &first.url(path), fields, None).await.status,
        200
    );
    let answer = send("GET", &second.url(path), replay, None).await;
    assert_eq!(
        (answer.status, answer.reason.as_deref()),
        (401, Some("replayed")),
        "{answer:?}"
    );
    // And the other way round, a DPoP proof.
    let proof = session.dpop("GET", &second.url(path));
    let mut replay = proof.clone();
    replay.insert(
        "host",
        HeaderValue::from_str(&format!("127.0.0.1:{}", second.port)).unwrap(),
    );
    assert_eq!(
        send("GET", &second.url(path), proof, None).await.status,
        200
    );
    let answer = send("GET", &first.url(path), replay, None).await;
    assert_eq!(
        (answer.status, answer.reason.as_deref()),
        (401, Some("replayed")),
        "{answer:?}"
    );
    assert_eq!(edge.upstream.reached().len(), 2);
}
