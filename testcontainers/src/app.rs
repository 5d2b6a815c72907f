//! `spawn_app`: the service in-process on port 0, configured through a map (never `set_var`),
//! with a unique key prefix so tests can share a Redis server.

use std::collections::HashMap;
use std::net::SocketAddr;

use authsession::app::App;
use authsession::config::{self, Config};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::RedisServer;

pub struct TestApp {
    /// The environment the app was configured from (listeners as requested, e.g. port 0).
    pub env: HashMap<String, String>,
    pub public_addr: SocketAddr,
    pub internal_addr: SocketAddr,
    pub config: Config,
    pub http: reqwest::Client,
    /// A connection for the test's own reads and writes: straight to the harness's server, or
    /// in cluster mode a cluster connection that routes each key to its node.
    pub redis: authsession::store::Dedicated,
    shutdown: CancellationToken,
    task: Option<JoinHandle<bool>>,
}

/// The code-hash key every test app uses (base64 of 32 bytes; `rest` mode requires one).
pub const TEST_CODE_HASH_KEY: &str = "dGVzdC1iZW5jaC1jb2RlLWhhc2gta2V5LTMyLWJ5dGU=";

/// The environment `spawn_app` starts from: this Redis, ephemeral ports, unique namespaces.
pub fn test_env(redis: &RedisServer) -> HashMap<String, String> {
    let prefix = crate::unique_prefix("");
    [
        (config::REDIS_ADDR, redis.addr()),
        (config::PUBLIC_HTTP_ADDR, "127.0.0.1:0".to_owned()),
        (config::INTERNAL_HTTP_ADDR, "127.0.0.1:0".to_owned()),
        (config::REDIS_KEY_PREFIX, format!("{prefix}authsession:")),
        (
            config::GATEWAY_SESSION_KEY_PREFIX,
            format!("{prefix}gateway:session:"),
        ),
        (
            config::GATEWAY_SESSION_EVENTS_STREAM,
            format!("{prefix}gateway:session_events"),
        ),
        (config::SHUTDOWN_TIMEOUT, "5s".to_owned()),
        (config::CODE_HASH_KEY, TEST_CODE_HASH_KEY.to_owned()),
        // Every test client is 127.0.0.1: tests of the admission limits set them explicitly.
        (config::SEND_RATE_LIMIT_PER_IP, "off".to_owned()),
        (config::CONFIRM_RATE_LIMIT_PER_IP, "off".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Starts the service against `redis` with `overrides` on top of [`test_env`].
pub async fn spawn_app(redis: &RedisServer, overrides: &[(&str, &str)]) -> TestApp {
    let mut env = test_env(redis);
    for (k, v) in overrides {
        env.insert(k.to_string(), v.to_string());
    }
    spawn_app_with_env(redis, env).await
}

pub async fn spawn_app_with_env(redis: &RedisServer, env: HashMap<String, String>) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        // Never dropped: the test process's log lines are written until it exits.
        std::mem::forget(authsession::telemetry::init(
            config::LogFormat::Text,
            "debug",
        ));
    }
    let config = Config::from_source(&env).expect("test configuration is valid");
    let requested = env.clone();
    let app = App::build(config.clone()).await.expect("app starts");
    let (public_addr, internal_addr) = (app.public_addr(), app.internal_addr());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let test_redis = test_connection(redis, &config).await;
    TestApp {
        env: requested,
        public_addr,
        internal_addr,
        config,
        http: reqwest::Client::new(),
        redis: test_redis,
        shutdown,
        task: Some(task),
    }
}

async fn test_connection(redis: &RedisServer, config: &Config) -> authsession::store::Dedicated {
    if config.redis.mode != config::RedisMode::Cluster {
        return authsession::store::Dedicated::Single(redis.connection().await);
    }
    let mut cluster = config.redis.clone();
    cluster.command_timeout = std::time::Duration::from_secs(10);
    authsession::store::Redis::new(&cluster)
        .expect("a valid Redis config")
        .dedicated()
        .await
        .expect("a cluster connection")
}

/// A JSON response: status and body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// `error.code` of the envelope, if any.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

impl TestApp {
    /// The longest a request may take under this app's configuration: a send's Redis calls (each
    /// bounded by the command timeout, pool wait included; a dead connection costs one reconnect),
    /// two user-service attempts and the mail call, plus a second of slack for a loaded machine.
    /// Tests bound waits by this instead of by fixed numbers.
    pub fn longest_answer(&self) -> std::time::Duration {
        let dependency = |mode: &config::ServiceMode| match mode {
            config::ServiceMode::Stub => std::time::Duration::ZERO,
            config::ServiceMode::Rest(target) => target.request_timeout,
        };
        let redis = &self.config.redis;
        3 * redis.command_timeout
            + redis.connect_timeout
            + 2 * dependency(&self.config.user_service)
            + dependency(&self.config.mail_service)
            + std::time::Duration::from_secs(1)
    }

    /// A store on this app's Redis and namespace, for writing state the way the service does.
    pub fn store(&self) -> authsession::store::Store {
        authsession::store::Store::new(
            authsession::store::Redis::new(&self.config.redis).expect("a valid Redis config"),
            &self.config.redis,
            &self.config.gateway,
            &self.config.policy,
        )
    }

    /// A login client of this app's public surface whose codes arrive at `mail`.
    pub fn login_client<'a>(&'a self, mail: &'a crate::FakeMailService) -> crate::LoginClient<'a> {
        crate::LoginClient {
            http: &self.http,
            public: format!("http://{}", self.public_addr),
            mail,
            deadline: self.longest_answer(),
        }
    }

    pub fn public_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public_addr)
    }

    pub fn internal_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.internal_addr)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request reaches the service");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap_or_default();
        Reply {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    pub async fn post_public(&self, path: &str, body: Value) -> Reply {
        self.send(self.http.post(self.public_url(path)).json(&body))
            .await
    }

    pub async fn send_email_code(&self, email: &str) -> Reply {
        self.post_public(
            "/api/v1/public/auth/send-email-code",
            serde_json::json!({ "email": email }),
        )
        .await
    }

    pub async fn confirm(&self, challenge_id: &str, code: &str, client_public_key: &str) -> Reply {
        let body = serde_json::json!({
            "challenge_id": challenge_id, "code": code, "client_public_key": client_public_key,
        });
        self.post_public("/api/v1/public/auth/confirm-email-code", body)
            .await
    }

    pub async fn get_internal(&self, path: &str) -> Reply {
        self.send(self.http.get(self.internal_url(path))).await
    }

    pub async fn post_internal(&self, path: &str, body: Option<Value>) -> Reply {
        let request = self.http.post(self.internal_url(path));
        self.send(match body {
            Some(body) => request.json(&body),
            None => request,
        })
        .await
    }

    /// The environment for running the `authsession` binary's operator commands against this
    /// app: its configuration, with the listeners it actually bound.
    pub fn cli_env(&self) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.insert(
            config::PUBLIC_HTTP_ADDR.into(),
            self.public_addr.to_string(),
        );
        env.insert(
            config::INTERNAL_HTTP_ADDR.into(),
            self.internal_addr.to_string(),
        );
        env.into_iter().collect()
    }

    /// The source-of-truth key prefix of this app.
    pub fn prefix(&self) -> &str {
        &self.config.redis.key_prefix
    }

    /// The service's key names, from its configuration (every layout).
    pub fn keys(&self) -> authsession::store::keys::Keys {
        authsession::store::keys::Keys::new(&self.config.redis, &self.config.gateway)
    }

    pub fn snapshot_key(&self, device_session_id: &str) -> String {
        let id = authsession::domain::DeviceSessionId::parse(device_session_id);
        self.keys()
            .gateway_session(&id.expect("a device session id"))
    }

    /// The event stream of a session's partition (the one stream of the single-tag layout).
    pub fn stream_key(&self, device_session_id: &str) -> String {
        let keys = self.keys();
        let partition = keys
            .layout()
            .of_id(device_session_id)
            .unwrap_or_else(|| keys.layout().all()[0]);
        keys.stream(partition)
    }

    /// Cancels the shutdown token and waits; returns whether shutdown was clean.
    pub async fn stop(mut self) -> bool {
        self.shutdown.cancel();
        self.task.take().expect("running").await.expect("app task")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
