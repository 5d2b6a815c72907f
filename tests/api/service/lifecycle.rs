//! The runbook's startup and shutdown, against the real binary.

use std::time::{Duration, Instant};

use authsession::config;
use authsession_testbench::{free_port, RedisServer, ServiceProcess};
use nix::sys::signal::Signal;

fn binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_authsession"))
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn invalid_configuration_lists_every_bad_variable_and_exits_1_without_connecting() {
    // Arrange: a listener posing as Redis, to notice any connection attempt.
    let fake_redis = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    fake_redis.set_nonblocking(true).unwrap();
    let addr = fake_redis.local_addr().unwrap().to_string();

    // Act
    let (code, output) = ServiceProcess::run(
        binary(),
        &[],
        &env(&[
            (config::REDIS_ADDR, &addr),
            (config::REDIS_COMMAND_TIMEOUT, "fast"),
            (config::PUBLIC_HTTP_ADDR, "nowhere"),
            (config::USER_SERVICE_MODE, "rest"),
        ]),
        Duration::from_secs(10),
    )
    .await;

    // Assert
    assert_eq!(code, Some(1));
    for variable in [
        config::REDIS_COMMAND_TIMEOUT,
        config::PUBLIC_HTTP_ADDR,
        config::USER_SERVICE_BASE_URL,
        config::USER_SERVICE_REQUEST_TIMEOUT,
        config::CODE_HASH_KEY,
    ] {
        assert!(
            output.contains(variable),
            "{variable} missing from:\n{output}"
        );
    }
    assert!(
        fake_redis.accept().is_err(),
        "the process connected to Redis despite a bad configuration"
    );
}

#[tokio::test]
async fn unreachable_redis_exits_1_within_the_connect_timeout_naming_a_component() {
    let dead = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let (code, output) = ServiceProcess::run(
        binary(),
        &["serve"],
        &env(&[
            (config::REDIS_ADDR, &dead),
            (config::REDIS_CONNECT_TIMEOUT, "1s"),
            (config::PUBLIC_HTTP_ADDR, "127.0.0.1:0"),
            (config::INTERNAL_HTTP_ADDR, "127.0.0.1:0"),
        ]),
        Duration::from_secs(10),
    )
    .await;

    assert_eq!(code, Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        output.contains("challenge_store") && output.contains(&dead),
        "{output}"
    );
}

#[tokio::test]
async fn healthy_start_logs_both_listeners_and_each_signal_stops_cleanly() {
    let redis = RedisServer::start().await;
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut process = ServiceProcess::spawn(
            binary(),
            &[],
            &env(&[
                (config::REDIS_ADDR, &redis.addr()),
                (config::PUBLIC_HTTP_ADDR, "127.0.0.1:0"),
                (config::INTERNAL_HTTP_ADDR, "127.0.0.1:0"),
            ]),
        );

        for listener in ["public", "internal"] {
            let line = process
                .wait_for_line(
                    &format!("{listener} HTTP listener started"),
                    Duration::from_secs(10),
                )
                .await
                .unwrap_or_else(|| panic!("no start line for {listener}: {:?}", process.lines()));
            let log: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
            let address = log["address"].as_str().expect("address field");
            tokio::net::TcpStream::connect(address)
                .await
                .expect("listener accepts connections");
        }
        for component in authsession::app::COMPONENTS {
            assert!(
                process.lines().iter().any(|l| l.contains(component)),
                "no startup check logged for {component}"
            );
        }

        process.signal(signal);
        let status = process
            .wait_exit(Duration::from_secs(10))
            .await
            .expect("exits after the signal");

        assert_eq!(status.code(), Some(0), "{signal}: {:?}", process.lines());
        let output = process.lines().join("\n");
        for line in [
            "public HTTP listener stopped",
            "internal HTTP listener stopped",
            "shutdown complete",
        ] {
            assert!(
                output.contains(line),
                "{signal}: missing `{line}` in:\n{output}"
            );
        }
    }
}

/// A misspelled variable used to be ignored without a word (`..._TOKN` left the internal surface
/// open); it now stops the start, naming the variable it was probably meant to be.
#[tokio::test]
async fn a_misspelled_variable_exits_1_naming_the_nearest_known_one() {
    let (code, output) = ServiceProcess::run(
        binary(),
        &[],
        &env(&[
            ("AUTHSESSION_INTERNAL_HTTP_TOKN", "secret-secret-secret"),
            (config::REDIS_ADDR, &format!("127.0.0.1:{}", free_port())),
        ]),
        Duration::from_secs(10),
    )
    .await;

    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("AUTHSESSION_INTERNAL_HTTP_TOKN")
            && output.contains("did you mean AUTHSESSION_INTERNAL_HTTP_TOKEN?"),
        "{output}"
    );
    assert!(!output.contains("secret-secret-secret"), "{output}");
}

/// With defaults the internal surface listened on every interface, with no token and no word
/// about it. In `stub` mode it still starts, but says so at warn; in `rest` mode it refuses.
#[tokio::test]
async fn an_unauthenticated_internal_surface_on_all_interfaces_is_announced_or_refused() {
    let redis = RedisServer::start().await;
    let stub = env(&[
        (config::REDIS_ADDR, &redis.addr()),
        (config::PUBLIC_HTTP_ADDR, "127.0.0.1:0"),
        (config::INTERNAL_HTTP_ADDR, "0.0.0.0:0"),
    ]);
    let process = ServiceProcess::spawn(binary(), &[], &stub);
    let warning = process
        .wait_for_line(
            "internal HTTP surface is unauthenticated",
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|| panic!("no warning: {:?}", process.lines()));
    assert!(warning.contains("WARN"), "{warning}");
    drop(process);

    let mut rest = stub.clone();
    rest.extend(env(&[
        (config::MAIL_SERVICE_MODE, "rest"),
        (config::MAIL_SERVICE_BASE_URL, "http://127.0.0.1:9"),
        (config::MAIL_SERVICE_REQUEST_TIMEOUT, "1s"),
        (
            config::CODE_HASH_KEY,
            authsession_testbench::app::TEST_CODE_HASH_KEY,
        ),
    ]));
    let (code, output) = ServiceProcess::run(binary(), &[], &rest, Duration::from_secs(10)).await;
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains(config::INTERNAL_HTTP_TOKEN)
            && output.contains(config::INTERNAL_HTTP_ALLOW_UNAUTHENTICATED),
        "{output}"
    );
}

/// Text logs written to a pipe or a file carry no terminal colour codes.
#[tokio::test]
async fn text_logs_in_a_pipe_have_no_colour_codes() {
    let redis = RedisServer::start().await;
    let process = ServiceProcess::spawn(
        binary(),
        &[],
        &env(&[
            (config::REDIS_ADDR, &redis.addr()),
            (config::PUBLIC_HTTP_ADDR, "127.0.0.1:0"),
            (config::INTERNAL_HTTP_ADDR, "127.0.0.1:0"),
            (config::LOG_FORMAT, "text"),
        ]),
    );
    process
        .wait_for_line("internal HTTP listener started", Duration::from_secs(15))
        .await
        .expect("started");
    let lines = process.lines();
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.matches("noscript_reload").count() <= 1),
        "a span field printed twice: {lines:?}"
    );
}

/// Issue 37, item 8: every first use of a script on a fresh Redis (the normal path after a
/// restart or failover) logged `NOSCRIPT: loading script` at INFO, which a newcomer reads as
/// trouble. The reload is logged at DEBUG, without the error word: at the default level a first
/// send logs nothing about it, at `debug` it says "loading it".
#[tokio::test]
async fn loading_a_script_on_first_use_is_no_news_at_the_default_level() {
    for level in ["info", "debug"] {
        let redis = RedisServer::start().await;
        let process = ServiceProcess::spawn(
            binary(),
            &[],
            &env(&[
                (config::REDIS_ADDR, &redis.addr()),
                (config::PUBLIC_HTTP_ADDR, "127.0.0.1:0"),
                (config::INTERNAL_HTTP_ADDR, "127.0.0.1:0"),
                (config::LOG_LEVEL, level),
            ]),
        );
        let public = process.listener_addr("public").await;
        let answer = reqwest::Client::new()
            .post(format!(
                "http://{public}{}",
                authsession::http::public::SEND_EMAIL_CODE
            ))
            .json(&serde_json::json!({ "email": crate::helpers::unique_email() }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        // Log lines reach stdout in batches: the request's access line comes after its others.
        process
            .wait_for_line("\"message\":\"request\"", Duration::from_secs(5))
            .await
            .expect("the send's access line");
        let lines = process.lines();
        let reload: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("script not cached") || l.contains("NOSCRIPT"))
            .collect();
        if level == "info" {
            assert!(reload.is_empty(), "at info: {reload:?}");
        } else {
            assert!(
                !reload.is_empty(),
                "the first send loads its scripts: {lines:?}"
            );
            assert!(
                reload
                    .iter()
                    .all(|l| l.contains("DEBUG") && !l.contains("NOSCRIPT")),
                "{reload:?}"
            );
        }
    }
}
