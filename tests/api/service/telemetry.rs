//! Telemetry: OTLP export of spans and metrics (flushed at SIGTERM), and logs that never carry
//! a login code, an e-mail address or a bearer token.

use std::net::SocketAddr;
use std::time::Duration;

use authsession::config;
use authsession_testbench::{
    FakeMailService, FakeUserService, LoginClient, OtlpReceiver, RedisServer, ServiceProcess,
};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::helpers::{public_key, rest_env, unique_email};

struct Running {
    process: ServiceProcess,
    public: SocketAddr,
    internal: SocketAddr,
    http: reqwest::Client,
}

async fn run_service(
    redis: &RedisServer,
    users: &FakeUserService,
    mail: &FakeMailService,
    extra: &[(&str, &str)],
) -> Running {
    let mut env: Vec<(String, String)> = rest_env(users, mail)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.push((config::REDIS_ADDR.into(), redis.addr()));
    env.push((config::PUBLIC_HTTP_ADDR.into(), "127.0.0.1:0".into()));
    env.push((config::INTERNAL_HTTP_ADDR.into(), "127.0.0.1:0".into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let process = ServiceProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_authsession")),
        &[],
        &env,
    );
    let public = process.listener_addr("public").await;
    let internal = process.listener_addr("internal").await;
    Running {
        process,
        public,
        internal,
        http: reqwest::Client::new(),
    }
}

impl Running {
    async fn post(&self, url: String, body: Value, token: Option<&str>) -> (u16, Value) {
        let mut request = self.http.post(url).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn send(&self, email: &str) -> (u16, Value) {
        self.post(
            format!("http://{}/api/v1/public/auth/send-email-code", self.public),
            json!({"email": email}),
            None,
        )
        .await
    }

    async fn confirm(&self, challenge_id: &str, code: &str, key: &str) -> (u16, Value) {
        let body = json!({"challenge_id": challenge_id, "code": code, "client_public_key": key});
        self.post(
            format!(
                "http://{}/api/v1/public/auth/confirm-email-code",
                self.public
            ),
            body,
            None,
        )
        .await
    }

    async fn stop(mut self) -> Vec<String> {
        self.process.signal(Signal::SIGTERM);
        let status = self
            .process
            .wait_exit(Duration::from_secs(20))
            .await
            .expect("exits");
        assert_eq!(status.code(), Some(0), "{:?}", self.process.lines());
        self.process.lines()
    }
}

#[tokio::test]
async fn otlp_export_carries_request_and_script_spans_and_metrics_flushed_at_sigterm() {
    let (redis, users, mail, receiver) = (
        RedisServer::start().await,
        FakeUserService::start().await,
        FakeMailService::start().await,
        OtlpReceiver::start().await,
    );
    let endpoint = receiver.endpoint();
    let service = run_service(
        &redis,
        &users,
        &mail,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            // Nothing leaves before shutdown: what arrives is the final flush.
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "600000"),
        ],
    )
    .await;
    let login = LoginClient {
        http: &service.http,
        public: format!("http://{}", service.public),
        mail: &mail,
        deadline: Duration::from_secs(10),
    };
    let email = unique_email();
    let login = login.login(&email).await.unwrap();
    let (challenge_id, code) = (login.challenge_id, login.code);
    service
        .confirm(&challenge_id, "000000", &public_key())
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests(), 0, "exported before shutdown");

    let lines = service.stop().await;

    let spans = receiver.spans();
    assert!(!spans.is_empty(), "no spans arrived before exit: {lines:?}");
    assert!(spans.iter().all(|s| s.service_name == "authsession"));
    let confirm_request = spans.iter().find(|s| {
        s.name == "request"
            && s.attributes.get("route").map(String::as_str)
                == Some("/api/v1/public/auth/confirm-email-code")
            && s.attributes.get("status").map(String::as_str) == Some("200")
    });
    assert!(confirm_request.is_some(), "{spans:#?}");
    let script = spans
        .iter()
        .find(|s| {
            s.name == "script"
                && s.attributes.get("script").map(String::as_str) == Some("challenge_confirm")
        })
        .expect("a challenge_confirm script span");
    assert_eq!(
        script.attributes.get("outcome").map(String::as_str),
        Some("ok")
    );
    assert_eq!(
        script.attributes.get("noscript_reload").map(String::as_str),
        Some("true"),
        "a fresh Redis reloads"
    );
    for span in &spans {
        for value in span.attributes.values() {
            assert!(
                !value.contains(&email) && !value.contains(&code),
                "{span:?}"
            );
        }
    }

    let points = receiver.points();
    let has = |metric: &str, key: &str, value: &str| {
        points.iter().any(|p| {
            p.metric == metric
                && p.attributes.get(key).map(String::as_str) == Some(value)
                && p.value > 0.0
        })
    };
    assert!(
        has("authsession.send.outcomes", "outcome", "sent"),
        "{points:#?}"
    );
    assert!(has("authsession.confirm.outcomes", "outcome", "created"));
    assert!(
        has("authsession.confirm.outcomes", "outcome", "invalid_code")
            || has(
                "authsession.confirm.outcomes",
                "outcome",
                "challenge_already_confirmed"
            )
    );
    assert!(has(
        "authsession.script.duration",
        "script",
        "challenge_confirm"
    ));
    assert!(has(
        "authsession.script.noscript_reloads",
        "script",
        "challenge_create"
    ));
    assert!(has(
        "authsession.dependency.calls",
        "service",
        "user_service"
    ));
    assert!(has(
        "http.server.request.duration",
        "http.route",
        "/api/v1/public/auth/send-email-code"
    ));
    assert!(points
        .iter()
        .any(|p| p.metric == "authsession.redis.pool.wait"));
}

/// True when `code` appears in `line` other than as (part of) a JSON number or timestamp.
fn mentions_code(line: &str, code: &str) -> bool {
    line.match_indices(code).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + code.len()..].chars().next();
        let digit_or = |c: Option<char>, extra: &str| {
            c.is_some_and(|c| c.is_ascii_digit() || extra.contains(c))
        };
        !digit_or(before, ":.") && !digit_or(after, "")
    })
}

#[tokio::test]
async fn a_full_scenario_logs_no_code_no_address_and_no_token() {
    let (redis, users, mail) = (
        RedisServer::start().await,
        FakeUserService::start().await,
        FakeMailService::start().await,
    );
    let token = format!("tok-{:032x}", rand::random::<u128>());
    let service = run_service(
        &redis,
        &users,
        &mail,
        &[
            (config::INTERNAL_HTTP_TOKEN, &token),
            (config::LOG_LEVEL, "debug"),
            (config::RESEND_COOLDOWN, "1ms"),
        ],
    )
    .await;
    let email = unique_email();
    let shouted = format!("  {}  ", email.to_uppercase());

    let (_, sent) = service.send(&shouted).await;
    let challenge_id = sent["challenge_id"].as_str().unwrap().to_owned();
    let code = mail.code_for(&challenge_id).unwrap();
    let key = public_key();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(service.confirm(&challenge_id, wrong, &key).await.0, 422);
    let (status, confirmed) = service.confirm(&challenge_id, &code, &key).await;
    assert_eq!(status, 200);
    assert_eq!(service.confirm(&challenge_id, &code, &key).await.0, 200);
    let id = confirmed["device_session_id"].as_str().unwrap();
    let revoke = format!(
        "http://{}/api/v1/internal/sessions/{id}/revoke",
        service.internal
    );
    assert_eq!(
        service
            .post(revoke.clone(), json!({}), Some(&token))
            .await
            .0,
        200
    );
    assert_eq!(
        service.post(revoke, json!({}), Some("wrong-token")).await.0,
        401
    );
    users.set_behaviour(authsession_testbench::Behaviour::Status(503));
    assert_eq!(service.send(&email).await.0, 503);
    users.set_behaviour(authsession_testbench::Behaviour::Normal);
    mail.set_behaviour(authsession_testbench::Behaviour::Status(500));
    assert_eq!(service.send(&email).await.0, 503);
    assert_eq!(
        service
            .post(
                format!(
                    "http://{}/api/v1/public/auth/send-email-code",
                    service.public
                ),
                json!({"email": email, "x": 1}),
                None
            )
            .await
            .0,
        400
    );
    let codes: Vec<String> = mail
        .calls()
        .iter()
        .filter_map(|c| c.body["code"].as_str().map(str::to_owned))
        .collect();

    let lines = service.stop().await;

    assert!(lines.len() > 20, "expected a verbose log: {lines:?}");
    let refused: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("internal request refused"))
        .collect();
    assert_eq!(refused.len(), 1, "every 401 is logged once: {lines:?}");
    assert!(
        refused[0].contains("WARN")
            && refused[0].contains("/revoke")
            && refused[0].contains("127.0.0.1"),
        "route and peer at warn: {}",
        refused[0]
    );
    assert!(!refused[0].contains("wrong-token"));
    for line in &lines {
        assert!(
            !line.to_lowercase().contains(&email),
            "address leaked: {line}"
        );
        assert!(!line.contains(&token), "token leaked: {line}");
        for code in &codes {
            assert!(!mentions_code(line, code), "code {code} leaked: {line}");
        }
    }
}

#[test]
fn the_code_detector_finds_codes_but_not_numbers_or_timestamps() {
    assert!(mentions_code(r#"{"message":"sent 123456"}"#, "123456"));
    assert!(mentions_code(r#"{"code":"123456"}"#, "123456"));
    assert!(!mentions_code(r#"{"latency_ms":123456}"#, "123456"));
    assert!(!mentions_code(
        r#"{"timestamp":"2026-11-28T13:39:46.123456Z"}"#,
        "123456"
    ));
    assert!(!mentions_code(r#"{"at":1795867123456}"#, "123456"));
}
