//! `authsession-gateway`, the reference consumer as a process: its answers, its edge, what it
//! refuses to start with, and how it treats a failing Redis.

use std::time::{Duration, Instant};

use authsession_testbench::{free_port, unique_email, ServiceProcess};

use crate::helpers::harness;

#[tokio::test]
async fn the_gateway_binary_answers_whether_a_session_is_active_and_with_which_key() {
    let h = harness(&[]).await;
    let port = free_port();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_authsession-gateway"));
    let listen = format!("127.0.0.1:{port}");
    let gateway = ServiceProcess::spawn(binary, &["--listen", &listen], &h.app.cli_env());
    let http = reqwest::Client::new();
    let ask = |id: String| {
        let http = http.clone();
        let url = format!("http://{listen}/sessions/{id}");
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match http.get(&url).send().await {
                    Ok(r) => return r.json::<serde_json::Value>().await.unwrap(),
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(e) => panic!("the gateway does not answer: {e}"),
                }
            }
        }
    };

    let (id, _) = h.login(&unique_email()).await;
    let answer = ask(id.clone()).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["client_public_key"].as_str().unwrap().len(), 44);
    // Longer than the command timeout (1 s): the blocking read must not count as a timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let reply = h
        .app
        .post_internal(&format!("/api/v1/internal/sessions/{id}/revoke"), None)
        .await;
    assert_eq!(reply.status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = ask(id.clone()).await;
        if answer["active"] == false {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revoke never reached the gateway: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ask("never-existed".into()).await["active"], false);
    let lines = gateway.lines();
    assert!(
        !lines.iter().any(|l| l.contains("interrupted")),
        "the stream follow broke off with Redis up: {lines:?}"
    );
    // Issue 37 item 8: SIGTERM stops it with a line saying so, as the service logs its shutdown.
    let mut gateway = gateway;
    gateway.signal(nix::sys::signal::Signal::SIGTERM);
    let status = gateway.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(
        gateway
            .lines()
            .iter()
            .any(|l| l.contains("gateway consumer stopped")),
        "{:?}",
        gateway.lines()
    );
}

/// Issue 23, finding 7: the gateway binary served with plain `axum::serve` (no deadlines, no
/// caps), so silent connections held descriptors for ever and starved lookups. It now runs the
/// service's accept loop with the same limits (here: a 1 s header deadline, a client share of
/// 16 connections), and `--token-file` makes it require a bearer token.
#[tokio::test]
async fn the_gateway_binary_has_the_services_edge_protections_and_an_optional_token() {
    use tokio::io::AsyncReadExt;

    let h = harness(&[]).await;
    let port = free_port();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_authsession-gateway"));
    let listen = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-gateway-token\n").unwrap();
    owner_only(&token_file);
    let mut env = h.app.cli_env();
    env.push((
        authsession::config::HTTP_HEADER_READ_TIMEOUT.to_owned(),
        "1s".to_owned(),
    ));
    env.push((
        authsession::config::HTTP_MAX_CONNECTIONS_PER_CLIENT.to_owned(),
        "16".to_owned(),
    ));
    let _gateway = ServiceProcess::spawn(
        binary,
        &[
            "--listen",
            &listen,
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        &env,
    );
    let (id, _) = h.login(&unique_email()).await;
    let http = reqwest::Client::builder()
        .local_address("127.0.0.9".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let url = format!("http://{listen}/sessions/{id}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let unauthenticated = loop {
        match http.get(&url).send().await {
            Ok(r) => break r.status().as_u16(),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("the gateway does not answer: {e}"),
        }
    };

    // Silent connections from one address: its share, then closed at once; the rest by the
    // header deadline.
    let started = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..64 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        silent.push(socket.connect(listen.parse().unwrap()).await.unwrap());
    }
    let answer: serde_json::Value = http
        .get(&url)
        .bearer_auth("s3cret-gateway-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut open = 0;
    for stream in &mut silent {
        let mut byte = [0u8; 1];
        let closed = matches!(
            tokio::time::timeout(Duration::from_secs(3), stream.read(&mut byte)).await,
            Ok(Ok(0)) | Ok(Err(_))
        );
        if !closed {
            open += 1;
        }
    }

    assert_eq!(unauthenticated, 401, "a token is required");
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(open, 0, "silent connections outlive their deadline");
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// Mode 0600: a secret file only its owner may read.
fn owner_only(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Runs the gateway binary with `args` until it exits (at most 10 s): its status and lines.
async fn gateway_exit(args: &[&str], env: &[(String, String)]) -> (Option<bool>, Vec<String>) {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_authsession-gateway"));
    let mut gateway = ServiceProcess::spawn(binary, args, env);
    let status = gateway.wait_exit(Duration::from_secs(10)).await;
    (status.map(|s| s.success()), gateway.lines())
}

/// Issue 36, finding 9: the gateway started with a token shorter than the internal surface
/// accepts, with a token file anyone could read, and on any address without a token; and it
/// needed the service's secrets (the code-hash key, the internal token) to start. It now refuses
/// the first three (a non-loopback address without a token only without `--unauthenticated`)
/// and starts with none of the service's secrets where the service would require them.
#[tokio::test]
async fn the_gateway_refuses_what_would_leave_it_open_and_needs_no_service_secret() {
    let h = harness(&[]).await;
    let env = h.app.cli_env();
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let short = dir.path().join("short");
    std::fs::write(&short, "too-short").unwrap();
    owner_only(&short);
    let readable = dir.path().join("readable");
    std::fs::write(&readable, "a-long-enough-gateway-token").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (args, says) in [
        (
            vec!["--listen", &listen, "--token-file", short.to_str().unwrap()],
            "shorter than 16",
        ),
        (
            vec![
                "--listen",
                &listen,
                "--token-file",
                readable.to_str().unwrap(),
            ],
            "lets others read it",
        ),
        (vec!["--listen", "0.0.0.0:0"], "not loopback"),
    ] {
        let (success, lines) = gateway_exit(&args, &env).await;
        assert_eq!(success, Some(false), "{args:?} starts: {lines:?}");
        assert!(
            lines.iter().any(|l| l.contains(says)),
            "{args:?}: {lines:?}"
        );
        assert!(
            !lines.iter().any(|l| l.contains("a-long-enough")),
            "{lines:?}"
        );
    }

    // The service's environment in rest mode, without the secrets the service would need.
    let mut env = env.clone();
    env.extend(
        [
            (authsession::config::USER_SERVICE_MODE, "rest"),
            (
                authsession::config::USER_SERVICE_BASE_URL,
                "http://users.internal/",
            ),
            (authsession::config::MAIL_SERVICE_MODE, "rest"),
            (
                authsession::config::MAIL_SERVICE_BASE_URL,
                "http://mail.internal/",
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_authsession-gateway"));
    let gateway = ServiceProcess::spawn(binary, &["--listen", &listen], &env);
    let (id, _) = h.login(&unique_email()).await;
    let url = format!("http://{listen}/sessions/{id}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer: serde_json::Value = loop {
        match reqwest::get(&url).await {
            Ok(r) => break r.json().await.unwrap(),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("the gateway does not start: {e}: {:?}", gateway.lines()),
        }
    };
    assert_eq!(answer["active"], true, "{answer}");
}

/// Issue 36, finding 9: after a lookup error the gateway opened a new Redis connection for
/// every request, so a failing Redis met a connection per lookup. It reopens at most once a
/// second: 50 lookups while Redis refuses open a handful of connections, not 50.
#[tokio::test]
async fn a_failing_redis_gets_no_connection_per_lookup() {
    let h = harness(&[]).await;
    let proxy = authsession_testbench::FaultProxy::start(h.redis.addr()).await;
    let mut env = h.app.cli_env();
    for (name, value) in env.iter_mut() {
        if name == authsession::config::REDIS_ADDR {
            *value = proxy.addr();
        }
    }
    let listen = format!("127.0.0.1:{}", free_port());
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_authsession-gateway"));
    let gateway = ServiceProcess::spawn(binary, &["--listen", &listen], &env);
    let url = format!("http://{listen}/sessions/never-existed");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while http.get(&url).send().await.is_err() {
        assert!(Instant::now() < deadline, "{:?}", gateway.lines());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.set(authsession_testbench::Fault::Refuse);
    // One lookup finds the connection cut, then 50 more within about half a second.
    let _ = http.get(&url).send().await;
    let before = proxy.connections();
    let started = Instant::now();
    for _ in 0..50 {
        let answer: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(answer["active"], false, "fails closed: {answer}");
    }
    let opened = proxy.connections() - before;
    let seconds = started.elapsed().as_secs_f64();
    // The followers (one per stream) retry every 200 ms as well; the lookups add at most one a
    // second.
    assert!(
        (opened as f64) <= 2.0 + seconds * 7.0,
        "{opened} connections in {seconds:.2} s for 50 lookups"
    );
}
