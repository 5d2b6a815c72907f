//! What most tests share: a Redis server, both fakes, and the app in REST mode against them.

use authsession::config;
use authsession_testbench::app::Reply;
use authsession_testbench::{spawn_app, FakeMailService, FakeUserService, RedisServer, TestApp};
use redis::AsyncCommands;
use serde_json::Value;

pub struct Harness {
    pub redis: RedisServer,
    pub users: FakeUserService,
    pub mail: FakeMailService,
    pub app: TestApp,
}

/// A fresh Redis, both fakes, and the app in REST mode (1 s dependency timeouts).
pub async fn harness(overrides: &[(&str, &str)]) -> Harness {
    harness_on(RedisServer::start().await, overrides).await
}

/// Both fakes and the app in REST mode against `redis` (overrides may point elsewhere).
pub async fn harness_on(redis: RedisServer, overrides: &[(&str, &str)]) -> Harness {
    let users = FakeUserService::start().await;
    let mail = FakeMailService::start().await;
    harness_with(redis, users, mail, overrides).await
}

/// The app in REST mode against `redis` and the given fakes.
pub async fn harness_with(
    redis: RedisServer,
    users: FakeUserService,
    mail: FakeMailService,
    overrides: &[(&str, &str)],
) -> Harness {
    let rest = rest_env(&users, &mail);
    let mut env: Vec<(&str, &str)> = rest.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend_from_slice(overrides);
    let app = spawn_app(&redis, &env).await;
    Harness {
        redis,
        users,
        mail,
        app,
    }
}

/// REST mode against the two fakes, 1 s per attempt, with the bench's code-hash key.
pub fn rest_env(users: &FakeUserService, mail: &FakeMailService) -> Vec<(&'static str, String)> {
    vec![
        (config::USER_SERVICE_MODE, "rest".into()),
        (config::USER_SERVICE_BASE_URL, users.base_url()),
        (config::USER_SERVICE_REQUEST_TIMEOUT, "1s".into()),
        (config::MAIL_SERVICE_MODE, "rest".into()),
        (config::MAIL_SERVICE_BASE_URL, mail.base_url()),
        (config::MAIL_SERVICE_REQUEST_TIMEOUT, "1s".into()),
        (
            config::CODE_HASH_KEY,
            authsession_testbench::app::TEST_CODE_HASH_KEY.into(),
        ),
    ]
}

pub use authsession_testbench::{public_key, unique_email};

impl Harness {
    /// Sends a code to `email` and returns (challenge_id, code as the mail fake received it).
    pub async fn send_code(&self, email: &str) -> (String, String) {
        let reply = self.app.send_email_code(email).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let challenge_id = reply.body["challenge_id"]
            .as_str()
            .expect("challenge_id")
            .to_owned();
        let code = self
            .mail
            .code_for(&challenge_id)
            .expect("a delivery for this challenge");
        (challenge_id, code)
    }

    /// A full login; returns (device_session_id, user_id).
    pub async fn login(&self, email: &str) -> (String, String) {
        let login = self.app.login_client(&self.mail).login(email).await;
        let id = login.expect("login succeeds").device_session_id;
        // Through the internal API, so this works in every deployment mode.
        let session = self
            .app
            .get_internal(&format!("/api/v1/internal/sessions/{id}"))
            .await;
        let user_id = session.body["user_id"]
            .as_str()
            .expect("user_id")
            .to_owned();
        (id, user_id)
    }

    pub async fn challenge_field(&self, challenge_id: &str, field: &str) -> Option<String> {
        let mut redis = self.app.redis.clone();
        redis
            .hget(
                self.app.keys().challenge(&self::challenge_id(challenge_id)),
                field,
            )
            .await
            .unwrap()
    }

    pub async fn session_field(&self, id: &str, field: &str) -> Option<String> {
        let mut redis = self.app.redis.clone();
        redis
            .hget(self.app.keys().session(&session_id(id)), field)
            .await
            .unwrap()
    }

    pub async fn snapshot(&self, id: &str) -> Option<Value> {
        let mut redis = self.app.redis.clone();
        let raw: Option<String> = redis.get(self.app.snapshot_key(id)).await.unwrap();
        raw.map(|r| serde_json::from_str(&r).expect("snapshot is JSON"))
    }

    /// Stream events (field maps) for one session, oldest first.
    pub async fn events_for(&self, id: &str) -> Vec<std::collections::HashMap<String, String>> {
        let mut redis = self.app.redis.clone();
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(self.app.stream_key(id))
            .arg("-")
            .arg("+")
            .query_async(&mut redis)
            .await
            .unwrap();
        entries
            .into_iter()
            .map(|(_, fields)| {
                fields
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>()
            })
            .filter(|f| f.get("device_session_id").map(String::as_str) == Some(id))
            .collect()
    }

    pub async fn all_keys(&self) -> Vec<String> {
        let mut redis = self.app.redis.clone();
        redis.keys("*").await.unwrap()
    }
}

pub fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(
        (reply.status, reply.error_code()),
        (status, Some(code)),
        "{reply:?}"
    );
    assert!(reply.body["error"]["message"].is_string(), "{reply:?}");
}

/// An external tool a test needs (`found`: where it is, if installed). Missing, the test is
/// skipped with a line saying how to install it, so a bare `cargo test` runs on a machine
/// without it; with `REQUIRE_TEST_TOOLS=1` (`.ci/run` sets it) a missing tool fails the test.
pub fn tool(
    name: &str,
    found: Option<std::path::PathBuf>,
    install: &str,
) -> Option<std::path::PathBuf> {
    if found.is_none() {
        let message = format!("{name} is not installed ({install})");
        assert!(
            std::env::var_os("REQUIRE_TEST_TOOLS").is_none(),
            "{message}; REQUIRE_TEST_TOOLS is set"
        );
        eprintln!("skipped: {message}");
    }
    found
}

/// A device session id the API answered with, typed for `store::Keys`.
pub fn session_id(id: &str) -> authsession::domain::DeviceSessionId {
    authsession::domain::DeviceSessionId::parse(id).expect("a device session id")
}

/// A user id the fake user service gave, typed for `store::Keys`.
pub fn user_id(id: &str) -> authsession::domain::UserId {
    authsession::domain::UserId::parse(id).expect("a user id")
}

/// A challenge id the API answered with, typed for `store::Keys`.
pub fn challenge_id(id: &str) -> authsession::domain::ChallengeId {
    authsession::domain::ChallengeId::parse(id).expect("a challenge id")
}

/// The documented ACL grant of `user` (docs/operations.md, "Shared Redis deployments"),
/// verbatim: `ACL SETUSER` and its arguments, the placeholders `<P>`, `<G>`, `<S>` and
/// `PASSWORD` still in.
pub(crate) fn documented_acl(user: &str) -> Vec<&'static str> {
    let readme = include_str!("../../docs/operations.md");
    let start = readme
        .find(&format!("ACL SETUSER {user} "))
        .unwrap_or_else(|| panic!("docs/operations.md documents the ACL user {user}"));
    let block = &readme[start..];
    block[..block.find("```").expect("the ACL block ends")]
        .split_whitespace()
        .collect()
}

/// The grant's arguments after `ACL`, the placeholders filled with a deployment's key prefix,
/// gateway prefix, stream and the password.
pub(crate) fn filled(words: &[&str], (p, g, s): (&str, &str, &str), password: &str) -> Vec<String> {
    words[1..]
        .iter()
        .map(|word| {
            word.replace("<P>", p)
                .replace("<G>", g)
                .replace("<S>", s)
                .replace("PASSWORD", password)
        })
        .collect()
}
