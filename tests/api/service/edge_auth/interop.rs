//! Implementations nobody here wrote: requests signed by the PyPI `http-message-signatures`
//! library and DPoP proofs made with PyJWT pass the gateway (and any claim off is refused), and
//! that library's verifier accepts the reference client's signatures. `interop.py` drives them,
//! from the venv `testcontainers/test.sh` installs (`target/interop-venv`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use authsession_testbench::free_port;

use super::{client_request, Edge};

fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python3");
    assert!(
        venv.exists(),
        "no {}: run the tests through `bash testcontainers/test.sh` (it installs \
         http-message-signatures and PyJWT there)",
        venv.display()
    );
    venv
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/service/edge_auth/interop.py")
}

/// Runs `interop.py args...` to its end: what it printed.
fn interop(args: &[&str]) -> String {
    let output = Command::new(python())
        .arg(script())
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "interop.py {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test]
async fn independent_signers_pass_and_an_independent_verifier_accepts_the_reference_client() {
    let edge = Edge::start(1, &[]).await;
    let session = edge.login().await;
    let file = session.file.to_str().unwrap();
    let outcome = tokio::task::spawn_blocking({
        let (file, get, post) = (
            file.to_owned(),
            edge.url("/v1/items?page=2&q=a%20b"),
            edge.url("/v1/items"),
        );
        move || {
            (
                interop(&["sign", &file, "GET", &get]),
                interop(&["sign", &file, "POST", &post, "{\"from\":\"python\"}"]),
                ["ok", "htm", "htu", "ath", "jwk", "stale", "reuse"]
                    .map(|v| (v, interop(&["dpop", &file, "GET", &get, v]))),
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(outcome.0, "200", "http-message-signatures GET");
    assert_eq!(
        outcome.1, "200",
        "http-message-signatures POST with Content-Digest"
    );
    let expected = [
        ("ok", "200"),
        ("htm", "401"),
        ("htu", "401"),
        ("ath", "401"),
        ("jwk", "401"),
        ("stale", "401"),
        ("reuse", "200 401"),
    ];
    assert_eq!(
        outcome
            .2
            .iter()
            .map(|(v, s)| (*v, s.as_str()))
            .collect::<Vec<_>>(),
        expected
    );
    let reached = edge.upstream.reached();
    assert_eq!(
        reached.len(),
        4,
        "python's GET, POST, DPoP ok and the first of reuse: {reached:?}"
    );
    assert_eq!(reached[1].body, b"{\"from\":\"python\"}");
    assert!(reached
        .iter()
        .all(|r| r.header("x-authsession-user-id") == Some(session.user_id.as_str())));

    // The other way: the library's verifier, serving HTTP, accepts the reference client.
    let port = free_port();
    let mut server = Command::new(python())
        .arg(script())
        .args(["verify-server", file, &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the verifier never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let base = format!("http://127.0.0.1:{port}");
    let get = client_request(&session.file, &["GET", &format!("{base}/v1/items?page=2")]).await;
    let post = client_request(
        &session.file,
        &["POST", &format!("{base}/v1/items"), "--data", "{\"a\":1}"],
    )
    .await;
    let _ = server.kill();
    let _ = server.wait();
    assert!(get.0 && get.1 == "verified", "GET: {get:?}");
    assert!(post.0 && post.1 == "verified", "POST: {post:?}");
}
