//! The service image (`Dockerfile`) end to end: built from the binary these tests run against on
//! the runtime base `AUTHSESSION_TEST_RUNTIME_IMAGE` names, started next to a Redis container,
//! a login through it, then `docker stop` and the runbook's shutdown.

use std::path::Path;
use std::time::{Duration, Instant};

use authsession::config;
use authsession::http::internal;
use authsession::http::public::{CONFIRM_EMAIL_CODE, SEND_EMAIL_CODE};
use authsession_testbench::engine::{self, Container};
use authsession_testbench::{free_port, public_key, unique_email, RedisServer};
use serde_json::{json, Value};

/// The image under test, removed when the test ends.
struct BuiltImage(String);

impl Drop for BuiltImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "--force", &self.0])
            .output();
    }
}

/// A directory holding this build's binary, stripped of its debug information as a release
/// build ships: the whole context of an image build.
fn build_context() -> tempfile::TempDir {
    let context = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_authsession");
    let target = context.path().join("authsession");
    let stripped = std::process::Command::new("strip")
        .arg("-o")
        .arg(&target)
        .arg(binary)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(binary, &target).unwrap();
    }
    context
}

/// `docker build` of the repository's `Dockerfile` with this build's binary (stripped of its
/// debug information, as a release build ships) as the whole context.
async fn build_image() -> BuiltImage {
    engine::ensure();
    let context = build_context();
    let tag = format!("authsession-test/service:{:08x}", rand::random::<u32>());
    let runtime = engine::image_name(engine::RUNTIME_IMAGE_VAR, engine::DEFAULT_RUNTIME_IMAGE);
    let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile");
    let output = tokio::process::Command::new("docker")
        .arg("build")
        .arg("--quiet")
        // Layers of its own: two tests build the same layers at once, and the legacy builder
        // failed one with "unknown parent image ID" when the other removed its image (and the
        // cached layer both shared) first.
        .arg("--no-cache")
        .arg("-f")
        .arg(&dockerfile)
        .args(["--build-arg", &format!("RUNTIME_IMAGE={runtime}")])
        .args(["-t", &tag])
        .arg(context.path())
        .output()
        .await
        .expect("the docker client (the README's test command installs docker.io)");
    assert!(
        output.status.success(),
        "docker build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    BuiltImage(tag)
}

/// The JSON body `request` is answered with.
async fn body(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// Every line the container printed so far, stdout and stderr.
async fn logs(container: &Container) -> String {
    let mut out = container.stdout_to_vec().await.unwrap_or_default();
    out.extend(container.stderr_to_vec().await.unwrap_or_default());
    String::from_utf8_lossy(&out).into_owned()
}

/// The first JSON log line whose message is `message`, waiting up to `timeout`.
async fn log_line(container: &Container, message: &str, timeout: Duration) -> Value {
    let started = Instant::now();
    loop {
        let text = logs(container).await;
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["message"] == message);
        if let Some(line) = found {
            return line;
        }
        assert!(
            started.elapsed() < timeout,
            "no `{message}` line within {timeout:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_image_serves_a_login_and_shuts_down_as_the_runbook_says() {
    let image = build_image().await;
    let redis = RedisServer::start().await;
    let (public, internal_addr) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let service = engine::run_image(
        &image.0,
        &[
            (config::REDIS_ADDR, redis.addr()),
            (config::PUBLIC_HTTP_ADDR, public.clone()),
            (config::INTERNAL_HTTP_ADDR, internal_addr.clone()),
        ],
    )
    .await;
    for listener in ["public", "internal"] {
        let started = format!("{listener} HTTP listener started");
        log_line(&service, &started, Duration::from_secs(20)).await;
    }

    // A login: send, the code from the stub mail sender's log line, confirm.
    let http = reqwest::Client::new();
    let sent = body(
        http.post(format!("http://{public}{SEND_EMAIL_CODE}"))
            .json(&json!({ "email": unique_email() })),
    )
    .await;
    let challenge_id = sent["challenge_id"].as_str().expect("a challenge id");
    let delivered = log_line(
        &service,
        "stub mail sender: login code delivered",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(delivered["challenge_id"], challenge_id);
    let confirmed = http
        .post(format!("http://{public}{CONFIRM_EMAIL_CODE}"))
        .json(&json!({
            "challenge_id": challenge_id,
            "code": delivered["code"],
            "client_public_key": public_key(),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    let confirmed: Value = confirmed.json().await.unwrap();
    let session_id = confirmed["device_session_id"].as_str().expect("a session");

    // The session on the internal surface: looked up, then listed under its user.
    let path = internal::SESSION.replace("{device_session_id}", session_id);
    let session = body(http.get(format!("http://{internal_addr}{path}"))).await;
    let user_id = session["user_id"].as_str().expect("a user id");
    let path = internal::USER_SESSIONS.replace("{user_id}", user_id);
    let listed = body(http.get(format!("http://{internal_addr}{path}"))).await;
    assert!(
        listed.to_string().contains(session_id),
        "the new session is not listed: {listed}"
    );

    // `docker stop`: the image's STOPSIGNAL (SIGTERM), then the runbook's shutdown and exit 0.
    service.stop_with_timeout(Some(20)).await.unwrap();
    let code = service.exit_code().await.unwrap();
    let text = logs(&service).await;
    assert_eq!(code, Some(0), "{text}");
    for line in [
        "signal received",
        "public HTTP listener stopped",
        "internal HTTP listener stopped",
        "shutdown complete",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    // `shutdown complete` at info means the telemetry flush finished within its budget.
    let complete = log_line(&service, "shutdown complete", Duration::ZERO).await;
    assert_eq!(complete["level"], "INFO", "{complete}");
}

/// Removes the named containers and image when the test ends, however it ends.
struct Cleanup(Vec<String>, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = std::process::Command::new("docker")
                .args(["rm", "--force", name])
                .output();
        }
        let _ = std::process::Command::new("docker")
            .args(["rmi", "--force", &self.1])
            .output();
    }
}

/// Issue 37, item 6: the container section failed in the order written (a first block needing a
/// registry, a build and a `docker run` left out, a Redis never started). docs/operations.md now
/// has one self-contained block; this test runs it as written, with only what a test must change:
/// the binary (this build's, not a release build), the ports, and the container and image names.
/// It logs in through the container, stops it, and checks the runbook's shutdown and that the
/// block removed its Redis.
#[tokio::test]
async fn the_documented_container_block_runs_as_written() {
    engine::ensure();
    let docs = include_str!("../../../docs/operations.md");
    let start = docs
        .find("```sh\ncargo build --release --bin authsession")
        .expect("docs/operations.md has the container block");
    let block = &docs[start + "```sh\n".len()..];
    let block = block[..block.find("\n```").unwrap()].trim().to_owned();
    let build = "cargo build --release --bin authsession && mkdir -p target/image && \
                 cp target/release/authsession target/image/ && ";
    assert!(
        block.starts_with(build),
        "the block builds the release binary first: {block}"
    );

    let context = build_context();
    let suffix = format!("{:08x}", rand::random::<u32>());
    let (redis_name, service_name) = (
        format!("authsession-redis-{suffix}"),
        format!("authsession-{suffix}"),
    );
    let tag = format!("authsession-test/block:{suffix}");
    let _cleanup = Cleanup(vec![redis_name.clone(), service_name.clone()], tag.clone());
    let (redis_port, public, internal) = (free_port(), free_port(), free_port());
    let script = block[build.len()..]
        .replace("target/image", &context.path().display().to_string())
        .replace("authsession-redis", &redis_name)
        .replace("--name authsession ", &format!("--name {service_name} "))
        .replace("authsession:0.1.0", &tag)
        .replace("6391", &redis_port.to_string())
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{public}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{internal}"));
    let mut block_run = tokio::process::Command::new("bash");
    block_run
        .args(["-c", &script])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    // As a user runs it: the docker client straight to the engine (the bench's API-version
    // forwarder passes no attached streams, which the block's foreground `docker run` uses).
    if std::env::var("DOCKER_HOST").is_ok_and(|h| h.contains("authsession-engine-")) {
        block_run.env_remove("DOCKER_HOST");
    }
    let block_run = block_run
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let http = reqwest::Client::new();
    let email = unique_email();
    let deadline = Instant::now() + Duration::from_secs(120);
    let sent = loop {
        let answer = http
            .post(format!("http://127.0.0.1:{public}{SEND_EMAIL_CODE}"))
            .json(&json!({ "email": email }))
            .send()
            .await;
        if let Ok(answer) = answer {
            break body_of(answer).await;
        }
        assert!(
            Instant::now() < deadline,
            "the block's service never answered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let logs = String::from_utf8(
        std::process::Command::new("docker")
            .args(["logs", &service_name])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let line = logs
        .lines()
        .rfind(|l| l.contains("login code delivered"))
        .expect("the stub mail sender's line");
    let code: String = line
        .split("code=")
        .nth(1)
        .expect("the line names the code")
        .trim_start_matches('"')
        .chars()
        .take(6)
        .collect();
    let confirmed = body(
        http.post(format!("http://127.0.0.1:{public}{CONFIRM_EMAIL_CODE}"))
            .json(&json!({
                "challenge_id": sent["challenge_id"],
                "code": code,
                "client_public_key": public_key(),
            })),
    )
    .await;
    assert!(confirmed["device_session_id"].is_string(), "{confirmed}");

    let stopped = std::process::Command::new("docker")
        .args(["stop", &service_name])
        .status()
        .unwrap();
    assert!(stopped.success());
    let output = tokio::time::timeout(Duration::from_secs(60), block_run.wait_with_output())
        .await
        .expect("the block ends once its service stops")
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the block failed: {printed}");
    assert!(printed.contains("shutdown complete"), "{printed}");
    let left = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("name={redis_name}")])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "the block leaves its Redis running");
}

/// A reply's JSON body.
async fn body_of(reply: reqwest::Response) -> Value {
    reply.json().await.unwrap()
}
