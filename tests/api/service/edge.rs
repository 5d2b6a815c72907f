//! The edge under attack (issue 15): connections that never finish a request, whatever protocol
//! they pretend to speak, and more of them than the process has descriptors for; request floods
//! from one address.

use std::path::Path;
use std::time::{Duration, Instant};

use authsession::config;
use authsession_testbench::{RedisServer, ServiceProcess};

use crate::helpers::challenge_id;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What each kind of attacker sends before going quiet.
const ATTACKS: [(&str, &[u8]); 5] = [
    ("silent", b""),
    ("partial h2 preface", b"PRI"),
    ("full h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    (
        "half a header",
        b"GET /api/v1/internal/users/x/sessions HTTP/1.1\r\nHost: x\r\nX-Slow: ",
    ),
    (
        "idle keep-alive",
        b"GET /api/v1/internal/users/x/sessions HTTP/1.1\r\nHost: x\r\n\r\n",
    ),
];

/// Under `ulimit -n 256`, 400 attacker connections (80 of each kind) against a cap of 80 per
/// listener: a client admitted before keeps answering in milliseconds, the process never runs
/// out of descriptors, and every attacker connection is closed by its deadline. Before, a silent
/// or HTTP/2-preface connection stayed open forever and accept failed with EMFILE.
#[tokio::test]
async fn four_hundred_stalling_connections_neither_starve_a_client_nor_outlive_their_deadline() {
    let redis = RedisServer::start().await;
    let (header, idle) = (Duration::from_secs(1), Duration::from_secs(2));
    let env: Vec<(String, String)> = [
        (config::REDIS_ADDR, redis.addr()),
        (config::PUBLIC_HTTP_ADDR, "127.0.0.1:0".into()),
        (config::INTERNAL_HTTP_ADDR, "127.0.0.1:0".into()),
        (config::HTTP_HEADER_READ_TIMEOUT, "1s".into()),
        (config::HTTP_IDLE_TIMEOUT, "2s".into()),
        (config::HTTP_MAX_CONNECTIONS, "80".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let binary = env!("CARGO_BIN_EXE_authsession");
    // The hard limit too, so the service cannot raise its way out of the test.
    let process = ServiceProcess::spawn(
        Path::new("/bin/sh"),
        &["-c", "ulimit -n 256 && exec \"$0\"", binary],
        &env,
    );
    let internal = process.listener_addr("internal").await;
    // One connection, admitted before the attack and reused for every request: a pooled client
    // could open a second one mid-test (its first not yet back in the pool), which the full cap
    // rightly closes at once.
    let mut admitted = AdmittedClient::connect(internal).await;
    assert_eq!(admitted.get().await, 200);

    let attack_started = Instant::now();
    let mut attackers = Vec::new();
    for (kind, bytes) in ATTACKS {
        for _ in 0..80 {
            let mut stream = TcpStream::connect(internal).await.unwrap();
            let _ = stream.write_all(bytes).await;
            attackers.push((kind, stream));
        }
        // The admitted client keeps using its connection while the attack opens (on a loaded
        // machine opening 400 connections can take longer than the 2 s idle timeout, which
        // would rightly close an admitted connection left idle that long).
        assert_eq!(admitted.get().await, 200);
    }

    let mut slowest = Duration::ZERO;
    for _ in 0..30 {
        let started = Instant::now();
        assert_eq!(admitted.get().await, 200);
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        slowest < Duration::from_millis(500),
        "the admitted client waited {slowest:?}"
    );

    // Every attacker is closed by its deadline: the header deadline for those that never sent a
    // request, the idle timeout for the keep-alive ones; those over the cap at once.
    tokio::time::sleep_until((attack_started + idle + header).into()).await;
    let mut open = Vec::new();
    for (kind, stream) in &mut attackers {
        let mut buf = [0u8; 1024];
        let closed = loop {
            match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(_)) => continue, // a response (the keep-alive one) before the close
                Err(_) => break false,
            }
        };
        if !closed {
            open.push(*kind);
        }
    }
    assert!(open.is_empty(), "still open: {open:?}");
    assert!(
        !process
            .lines()
            .iter()
            .any(|l| l.contains("Too many open files")),
        "the process ran out of descriptors"
    );
    let warned = process
        .lines()
        .iter()
        .any(|l| l.contains("RLIMIT_NOFILE cannot hold"));
    assert!(!warned, "80 per listener fits in 256 descriptors");
}

/// An HTTP/1.1 client on exactly one keep-alive connection.
struct AdmittedClient {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Empty<hyper::body::Bytes>>,
}

impl AdmittedClient {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        Self { sender }
    }

    async fn get(&mut self) -> u16 {
        self.sender
            .ready()
            .await
            .expect("the admitted connection was closed");
        let request = hyper::Request::get("/api/v1/internal/users/nobody/sessions")
            .header("host", "authsession")
            .body(http_body_util::Empty::new())
            .unwrap();
        let response = self.sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        // Read the body to the end so that the connection is ready for the next request.
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap();
        status
    }
}

/// A client bound to `source` (any 127.0.0.0/8 address works on loopback).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn send_from(
    app: &authsession_testbench::TestApp,
    client: &reqwest::Client,
    email: &str,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut request = client
        .post(app.public_url(authsession::http::public::SEND_EMAIL_CODE))
        .json(&serde_json::json!({ "email": email }));
    if let Some(xff) = forwarded_for {
        request = request.header("x-forwarded-for", xff);
    }
    request.send().await.unwrap()
}

/// Nothing limited how fast one client could create challenges (each a Redis record) or mail
/// codes to any number of addresses. 100 parallel sends from one address with a limit of 10:
/// exactly 10 admitted, the rest `429` with `Retry-After` and nothing written; other addresses
/// unaffected; no key holds an address.
#[tokio::test]
async fn a_client_over_its_send_limit_gets_429_and_writes_nothing_while_others_are_served() {
    let h = crate::helpers::harness(&[(config::SEND_RATE_LIMIT_PER_IP, "10/1m")]).await;
    let flooder = client_from("127.0.0.3");

    let emails: Vec<String> = (0..100).map(|_| crate::helpers::unique_email()).collect();
    let replies =
        futures::future::join_all(emails.iter().map(|e| send_from(&h.app, &flooder, e, None)))
            .await;

    let admitted = replies.iter().filter(|r| r.status() == 200).count();
    assert_eq!(admitted, 10);
    let refused = replies.iter().find(|r| r.status() == 429).unwrap();
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let challenges = h
        .all_keys()
        .await
        .into_iter()
        .filter(|k| k.contains(":challenge:"))
        .count();
    assert_eq!(challenges, 10, "refused sends write nothing");
    let body: serde_json::Value = replies
        .into_iter()
        .find(|r| r.status() == 429)
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests");

    let other = send_from(
        &h.app,
        &client_from("127.0.0.4"),
        &crate::helpers::unique_email(),
        None,
    )
    .await;
    assert_eq!(other.status(), 200);
    for key in h.all_keys().await {
        assert!(!key.contains("127.0.0"), "a key holds an address: {key}");
    }
}

/// Confirms count per client too, before any other check.
#[tokio::test]
async fn a_client_over_its_confirm_limit_gets_429() {
    let h = crate::helpers::harness(&[(config::CONFIRM_RATE_LIMIT_PER_IP, "3/1m")]).await;
    let (challenge, _) = h.send_code(&crate::helpers::unique_email()).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            h.app
                .confirm(&challenge, "000000", &crate::helpers::public_key())
                .await
                .status,
        );
    }
    assert_eq!(statuses[3], 429, "{statuses:?}");
    assert!(statuses[..3].iter().all(|s| *s != 429), "{statuses:?}");
    let attempts = h.challenge_field(&challenge, "attempts").await.unwrap();
    assert!(
        attempts.parse::<u32>().unwrap() <= 3,
        "the refused confirm counted nothing"
    );
}

/// `X-Forwarded-For` names the client only when the peer is a trusted proxy; a spoofed header
/// from anyone else is ignored.
#[tokio::test]
async fn only_a_trusted_proxy_may_name_the_client() {
    let h = crate::helpers::harness(&[
        (config::SEND_RATE_LIMIT_PER_IP, "1/1m"),
        (config::TRUSTED_PROXIES, "127.0.0.5/32"),
    ])
    .await;
    let email = crate::helpers::unique_email;
    let (proxy, stranger) = (client_from("127.0.0.5"), client_from("127.0.0.6"));

    // Through the proxy: two clients, one send each, then the first is over its limit.
    assert_eq!(
        send_from(&h.app, &proxy, &email(), Some("198.51.100.1"))
            .await
            .status(),
        200
    );
    assert_eq!(
        send_from(&h.app, &proxy, &email(), Some("198.51.100.2"))
            .await
            .status(),
        200
    );
    assert_eq!(
        send_from(&h.app, &proxy, &email(), Some("203.0.113.9, 198.51.100.1"))
            .await
            .status(),
        429,
        "the rightmost untrusted hop is the client"
    );
    // A stranger cannot buy new windows by spoofing the header.
    assert_eq!(
        send_from(&h.app, &stranger, &email(), Some("192.0.2.1"))
            .await
            .status(),
        200
    );
    assert_eq!(
        send_from(&h.app, &stranger, &email(), Some("192.0.2.2"))
            .await
            .status(),
        429
    );
}

/// An optional ceiling on challenge creation holds across clients.
#[tokio::test]
async fn the_global_send_ceiling_holds_across_clients() {
    let h = crate::helpers::harness(&[(config::SEND_RATE_LIMIT_GLOBAL, "3/1m")]).await;
    let mut statuses = Vec::new();
    for source in ["127.0.0.7", "127.0.0.8", "127.0.0.9", "127.0.0.10"] {
        let reply = send_from(
            &h.app,
            &client_from(source),
            &crate::helpers::unique_email(),
            None,
        )
        .await;
        statuses.push(reply.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
}

/// A throttled send wrote a full challenge record (about 530 B for 25 minutes); it now keeps
/// only what triage and a confirm need: status, expiry and the id of the challenge that opened
/// the window (296 B by `MEMORY USAGE` since ids carry their address's sealed hash, 59
/// characters in the key and in `window_of`; 200 B with the 22-character ids before, 168 B
/// before it kept that id).
#[tokio::test]
async fn a_throttled_send_costs_at_most_320_bytes_of_redis() {
    let h = crate::helpers::harness(&[]).await;
    let email = crate::helpers::unique_email();
    h.send_code(&email).await;
    let throttled = h.app.send_email_code(&email).await.body["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        h.challenge_field(&throttled, "status").await.unwrap(),
        "delivery_throttled"
    );
    let mut redis = h.app.redis.clone();
    let bytes: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(h.app.keys().challenge(&challenge_id(&throttled)))
        .query_async(&mut redis)
        .await
        .unwrap();
    println!("a throttled challenge record: {bytes} B");
    assert!(bytes <= 320, "{bytes} B");
    assert_eq!(h.challenge_field(&throttled, "email").await, None);
    let confirm = h
        .app
        .confirm(&throttled, "123456", &crate::helpers::public_key())
        .await;
    crate::helpers::assert_error(&confirm, 422, "invalid_code");
}

/// Keep-alive connections live the idle timeout (hyper's own timer cut them at the header
/// timeout), while bytes of a next request that never completes are cut at the header timeout.
#[tokio::test]
async fn keep_alive_lives_the_idle_timeout_but_a_stalled_next_head_does_not() {
    let redis = RedisServer::start().await;
    let app = authsession_testbench::spawn_app(
        &redis,
        &[
            (config::HTTP_HEADER_READ_TIMEOUT, "1s"),
            (config::HTTP_IDLE_TIMEOUT, "4s"),
        ],
    )
    .await;
    let request = b"GET /api/v1/internal/users/x/sessions HTTP/1.1\r\nHost: x\r\n\r\n";
    let (mut idle, mut stalled) = (
        TcpStream::connect(app.internal_addr).await.unwrap(),
        TcpStream::connect(app.internal_addr).await.unwrap(),
    );
    assert!(answered(&mut idle, request).await && answered(&mut stalled, request).await);
    stalled
        .write_all(b"GET /api/v1/internal/users/x/sess")
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        closed(&mut stalled).await,
        "a stalled head outlived the header timeout"
    );
    assert!(
        answered(&mut idle, request).await,
        "an idle keep-alive connection was cut early"
    );

    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert!(
        closed(&mut idle).await,
        "an idle connection outlived the idle timeout"
    );
}

/// Issue 23 finding 11: a head that started while a request was in flight (here: sent in the same
/// packet as the request, so hyper buffered it before the first answer) got the idle timeout, not
/// the header timeout: the watchdog only saw bytes arriving while idle. It now follows the HTTP/1
/// framing (heads and bodies, as hyper's parser reads them), so a head that started and did not
/// complete is cut at the header timeout however it arrived; whole pipelined requests are served.
#[tokio::test]
async fn a_head_pipelined_behind_a_request_gets_the_header_timeout_not_the_idle_timeout() {
    let redis = RedisServer::start().await;
    let app = authsession_testbench::spawn_app(
        &redis,
        &[
            (config::HTTP_HEADER_READ_TIMEOUT, "1s"),
            (config::HTTP_IDLE_TIMEOUT, "6s"),
        ],
    )
    .await;
    let request = "GET /api/v1/internal/users/x/sessions HTTP/1.1\r\nHost: x\r\n\r\n";
    let body = r#"{"reason_code":"x"}"#;
    let post = format!(
        "POST /api/v1/internal/users/x/sessions/revoke-all HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let chunked = format!(
        "POST /api/v1/internal/users/x/sessions/revoke-all HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let partial = "GET /api/v1/internal/users/x/sess";

    let mut stalled = Vec::new();
    for first in [request.to_owned(), post, chunked] {
        let mut stream = TcpStream::connect(app.internal_addr).await.unwrap();
        stream
            .write_all(format!("{first}{partial}").as_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        // Answered (a revoke-all of an unknown user is a 404), not refused as malformed.
        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 404"),
            "{answer}"
        );
        stalled.push(stream);
    }
    // Whole requests pipelined in one packet are all answered.
    let mut whole = TcpStream::connect(app.internal_addr).await.unwrap();
    whole
        .write_all(format!("{request}{request}").as_bytes())
        .await
        .unwrap();
    let mut answers = String::new();
    while answers.matches("HTTP/1.1 200").count() < 2 {
        let mut buf = [0u8; 4096];
        let n = whole.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {answers}");
        answers.push_str(&String::from_utf8_lossy(&buf[..n]));
    }

    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (i, stream) in stalled.iter_mut().enumerate() {
        assert!(
            closed(stream).await,
            "a pipelined head (case {i}) outlived the header timeout"
        );
    }
    assert!(
        answered(&mut whole, request.as_bytes()).await,
        "a keep-alive connection that pipelined whole requests was cut early"
    );
}

/// Issue 36, finding 5: an `Upgrade:` header on an ordinary request, or a chunk size of more than
/// 15 hex digits (hyper reads it, `httparse` does not), turned the framing off while hyper served
/// the request, and a head pipelined behind it got the idle timeout (here 6 s) instead of the
/// header timeout (1 s). Now a connection whose framing stopped on a request hyper accepted
/// keeps the header deadline: it is closed within the header timeout of its last answer.
#[tokio::test]
async fn no_request_turns_the_header_deadline_off() {
    let redis = RedisServer::start().await;
    let app = authsession_testbench::spawn_app(
        &redis,
        &[
            (config::HTTP_HEADER_READ_TIMEOUT, "1s"),
            (config::HTTP_IDLE_TIMEOUT, "6s"),
        ],
    )
    .await;
    let body = r#"{"reason_code":"x"}"#;
    let upgrade = "GET /api/v1/internal/users/x/sessions HTTP/1.1\r\nHost: x\r\nUpgrade: x\r\n\r\n";
    let long_chunk = format!(
        "POST /api/v1/internal/users/x/sessions/revoke-all HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:0>19x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let partial = "GET /api/v1/internal/users/x/sess";
    let mut stalled = Vec::new();
    for first in [upgrade.to_owned(), long_chunk] {
        let mut stream = TcpStream::connect(app.internal_addr).await.unwrap();
        stream
            .write_all(format!("{first}{partial}").as_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 404"),
            "hyper serves the request: {answer}"
        );
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (i, stream) in stalled.iter_mut().enumerate() {
        assert!(
            closed(stream).await,
            "a head behind request {i} outlived the header timeout"
        );
    }
}

async fn answered(stream: &mut TcpStream, request: &[u8]) -> bool {
    let mut buf = [0u8; 4096];
    stream.write_all(request).await.is_ok()
        && matches!(stream.read(&mut buf).await, Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200"))
}

async fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    matches!(
        tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}
