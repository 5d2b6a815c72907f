//! Configuration: every `AUTHSESSION_*` variable parsed into typed values before anything starts.
//!
//! The environment is read through [`EnvSource`] so tests pass a map instead of mutating the
//! process environment. Parsing never stops at the first problem: every bad variable is collected
//! and reported at once, each naming the variable, its value and what is expected.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use url::Url;

use secrecy::{ExposeSecret, SecretString};

use crate::domain::{CodeHashKey, Email};

mod known;

/// `host:port` of Redis; comma-separated seed nodes in cluster mode.
pub const REDIS_ADDR: &str = "AUTHSESSION_REDIS_ADDR";
/// `standalone` or `cluster`.
pub const REDIS_MODE: &str = "AUTHSESSION_REDIS_MODE";
/// Redis ACL user name (unset: the default user).
pub const REDIS_USERNAME: &str = "AUTHSESSION_REDIS_USERNAME";
/// Redis ACL password (unset: no AUTH).
pub const REDIS_PASSWORD: &str = "AUTHSESSION_REDIS_PASSWORD";
/// Logical database; must be 0 in cluster mode.
pub const REDIS_DB: &str = "AUTHSESSION_REDIS_DB";
/// `true` connects with TLS (`rediss`).
pub const REDIS_TLS_ENABLED: &str = "AUTHSESSION_REDIS_TLS_ENABLED";
/// PEM file with the CA that signed the Redis server certificate (unset: system roots).
pub const REDIS_TLS_CA_FILE: &str = "AUTHSESSION_REDIS_TLS_CA_FILE";
/// Prefix of every source-of-truth key: the namespace on a shared Redis.
pub const REDIS_KEY_PREFIX: &str = "AUTHSESSION_REDIS_KEY_PREFIX";
/// Maximum pooled Redis connections.
pub const REDIS_POOL_SIZE: &str = "AUTHSESSION_REDIS_POOL_SIZE";
/// Bound on establishing a connection, and on each startup PING.
pub const REDIS_CONNECT_TIMEOUT: &str = "AUTHSESSION_REDIS_CONNECT_TIMEOUT";
/// Bound on one Redis command (pool wait included); exceeded answers 503.
pub const REDIS_COMMAND_TIMEOUT: &str = "AUTHSESSION_REDIS_COMMAND_TIMEOUT";
/// `auto` (load scripts on NOSCRIPT) or `preloaded` (never send script bodies).
pub const REDIS_SCRIPT_LOADING: &str = "AUTHSESSION_REDIS_SCRIPT_LOADING";
/// Prefix of the gateway snapshot keys; must match the gateway.
pub const GATEWAY_SESSION_KEY_PREFIX: &str = "AUTHSESSION_GATEWAY_SESSION_KEY_PREFIX";
/// Stream the gateway consumes; must match the gateway.
pub const GATEWAY_SESSION_EVENTS_STREAM: &str = "AUTHSESSION_GATEWAY_SESSION_EVENTS_STREAM";
/// Approximate `MAXLEN ~` of the event stream.
pub const GATEWAY_SESSION_EVENTS_MAXLEN: &str = "AUTHSESSION_GATEWAY_SESSION_EVENTS_MAXLEN";
/// `stub` or `rest`.
pub const USER_SERVICE_MODE: &str = "AUTHSESSION_USER_SERVICE_MODE";
/// Base URL of the user service (rest mode).
pub const USER_SERVICE_BASE_URL: &str = "AUTHSESSION_USER_SERVICE_BASE_URL";
/// Per-attempt timeout of user-service calls (rest mode).
pub const USER_SERVICE_REQUEST_TIMEOUT: &str = "AUTHSESSION_USER_SERVICE_REQUEST_TIMEOUT";
/// `stub` or `rest`.
pub const MAIL_SERVICE_MODE: &str = "AUTHSESSION_MAIL_SERVICE_MODE";
/// Base URL of the mail service (rest mode).
pub const MAIL_SERVICE_BASE_URL: &str = "AUTHSESSION_MAIL_SERVICE_BASE_URL";
/// Timeout of one mail-service call (rest mode).
pub const MAIL_SERVICE_REQUEST_TIMEOUT: &str = "AUTHSESSION_MAIL_SERVICE_REQUEST_TIMEOUT";
/// Comma list of addresses the stub user service treats as blocked.
pub const STUB_BLOCKED_EMAILS: &str = "AUTHSESSION_STUB_BLOCKED_EMAILS";
/// Public listener: `:port`, `host:port` or `[v6]:port`.
pub const PUBLIC_HTTP_ADDR: &str = "AUTHSESSION_PUBLIC_HTTP_ADDR";
/// Internal (trusted) listener.
pub const INTERNAL_HTTP_ADDR: &str = "AUTHSESSION_INTERNAL_HTTP_ADDR";
/// Bearer token required on the internal surface when set.
pub const INTERNAL_HTTP_TOKEN: &str = "AUTHSESSION_INTERNAL_HTTP_TOKEN";
/// Base64 of at least 32 bytes: the HMAC-SHA256 key of login-code hashes. Required when either
/// dependency runs in `rest` mode; `stub` mode falls back to a fixed development key.
pub const CODE_HASH_KEY: &str = "AUTHSESSION_CODE_HASH_KEY";
/// The key before a rotation, still accepted when verifying codes (optional).
pub const CODE_HASH_KEY_PREVIOUS: &str = "AUTHSESSION_CODE_HASH_KEY_PREVIOUS";
/// `true` starts without an internal token even where one is required (a network boundary
/// protects the internal listener).
pub const INTERNAL_HTTP_ALLOW_UNAUTHENTICATED: &str =
    "AUTHSESSION_INTERNAL_HTTP_ALLOW_UNAUTHENTICATED";
/// `true` accepts `AUTHSESSION_*` variables the service does not know (else a startup error).
pub const ALLOW_UNKNOWN_VARIABLES: &str = "AUTHSESSION_ALLOW_UNKNOWN_VARIABLES";
/// How long a block's marker in Redis refuses confirms that were in flight when it happened.
pub const BLOCK_MARKER_TTL: &str = "AUTHSESSION_BLOCK_MARKER_TTL";
/// Idle keep-alive connections close after this.
pub const HTTP_IDLE_TIMEOUT: &str = "AUTHSESSION_HTTP_IDLE_TIMEOUT";
/// Most open connections per listener; one more is closed at once.
pub const HTTP_MAX_CONNECTIONS: &str = "AUTHSESSION_HTTP_MAX_CONNECTIONS";
/// `N/DURATION` or `off`: send-email-code requests per client IP per window.
pub const SEND_RATE_LIMIT_PER_IP: &str = "AUTHSESSION_SEND_RATE_LIMIT_PER_IP";
/// `N/DURATION` or `off`: confirm-email-code requests per client IP per window.
pub const CONFIRM_RATE_LIMIT_PER_IP: &str = "AUTHSESSION_CONFIRM_RATE_LIMIT_PER_IP";
/// `N/DURATION` or `off`: challenges created per window, all clients together.
pub const SEND_RATE_LIMIT_GLOBAL: &str = "AUTHSESSION_SEND_RATE_LIMIT_GLOBAL";
/// Comma list of CIDRs whose `X-Forwarded-For` is believed.
pub const TRUSTED_PROXIES: &str = "AUTHSESSION_TRUSTED_PROXIES";
/// Longest a client may take to send a request's headers (slow-client protection).
pub const HTTP_HEADER_READ_TIMEOUT: &str = "AUTHSESSION_HTTP_HEADER_READ_TIMEOUT";
/// Per-component shutdown budget.
pub const SHUTDOWN_TIMEOUT: &str = "AUTHSESSION_SHUTDOWN_TIMEOUT";
/// How long a login code can be confirmed.
pub const CHALLENGE_TTL: &str = "AUTHSESSION_CHALLENGE_TTL";
/// Wrong guesses allowed per challenge (runtime-overridable).
pub const CHALLENGE_MAX_ATTEMPTS: &str = "AUTHSESSION_CHALLENGE_MAX_ATTEMPTS";
/// Failed confirms allowed per address per window.
pub const CONFIRM_FAILURE_BUDGET: &str = "AUTHSESSION_CONFIRM_FAILURE_BUDGET";
/// Fixed window of the per-address failure budget.
pub const CONFIRM_FAILURE_WINDOW: &str = "AUTHSESSION_CONFIRM_FAILURE_WINDOW";
/// How long an expired challenge stays observable as `challenge_expired`.
pub const EXPIRED_CHALLENGE_RETENTION: &str = "AUTHSESSION_EXPIRED_CHALLENGE_RETENTION";
/// How long an identical confirm returns the same session.
pub const CONFIRM_IDEMPOTENCY_WINDOW: &str = "AUTHSESSION_CONFIRM_IDEMPOTENCY_WINDOW";
/// Fixed resend window per address.
pub const RESEND_COOLDOWN: &str = "AUTHSESSION_RESEND_COOLDOWN";
/// How long revoked sessions (and their snapshots) are kept.
pub const REVOKED_SESSION_RETENTION: &str = "AUTHSESSION_REVOKED_SESSION_RETENTION";
/// Active sessions per user before the oldest are evicted (runtime-overridable).
pub const MAX_ACTIVE_SESSIONS_PER_USER: &str = "AUTHSESSION_MAX_ACTIVE_SESSIONS_PER_USER";
/// How long runtime config from `P config` is cached.
pub const CONFIG_REFRESH_INTERVAL: &str = "AUTHSESSION_CONFIG_REFRESH_INTERVAL";
/// `json` or `text`.
pub const LOG_FORMAT: &str = "AUTHSESSION_LOG_FORMAT";
/// A `tracing` filter (`info`, `authsession=debug`); `RUST_LOG` wins when set.
pub const LOG_LEVEL: &str = "AUTHSESSION_LOG_LEVEL";

/// Upper bound for the runtime-overridable per-user session limit; one confirm evicts at most
/// this many sessions, which keeps the confirm script bounded.
pub const MAX_ACTIVE_SESSIONS_CEILING: u32 = 1000;
/// Upper bound for the per-challenge attempt limit.
pub const MAX_ATTEMPTS_CEILING: u32 = 1000;
/// Upper bound for the per-address failure budget.
pub const FAILURE_BUDGET_CEILING: u32 = 1_000_000;
/// Longest duration that reaches Redis as a TTL (10 years): the scripts refuse longer ones in
/// their read phase (`MAX_MS` in `lua/include/common.lua`), so `now + ttl` never overflows.
pub const MAX_REDIS_DURATION: Duration = Duration::from_millis(315_360_000_000);
/// Largest stream `MAXLEN` (`MAX_STREAM_LEN` in `lua/include/common.lua`).
pub const MAX_EVENTS_MAXLEN: u64 = 1_000_000_000;

/// Where configuration values come from.
pub trait EnvSource {
    fn get(&self, name: &str) -> Option<String>;
    /// Every variable name present (to refuse misspelled `AUTHSESSION_*` ones).
    fn names(&self) -> Vec<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn names(&self) -> Vec<String> {
        std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .collect()
    }
}

impl EnvSource for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }

    fn names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    Standalone,
    Cluster,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptLoading {
    /// Load a script with `SCRIPT LOAD` when Redis answers `NOSCRIPT`, then retry once.
    Auto,
    /// Never send script bodies; startup requires every script to be cached already.
    Preloaded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Seed nodes, `host:port`; exactly one in standalone mode.
    pub addrs: Vec<String>,
    pub mode: RedisMode,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub db: i64,
    pub tls_enabled: bool,
    pub tls_ca_file: Option<PathBuf>,
    pub key_prefix: String,
    pub pool_size: u32,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub script_loading: ScriptLoading,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub session_key_prefix: String,
    pub events_stream: String,
    pub events_maxlen: u64,
}

/// A REST dependency's location and per-attempt timeout.
#[derive(Debug, Clone)]
pub struct RestTarget {
    pub base_url: Url,
    pub request_timeout: Duration,
}

/// `stub` (in-process, dev/testing only) or `rest`.
#[derive(Debug, Clone)]
pub enum ServiceMode {
    Stub,
    Rest(RestTarget),
}

/// Login and session policy; limits marked runtime-overridable are defaults for `P config`.
#[derive(Debug, Clone)]
pub struct Policy {
    pub challenge_ttl: Duration,
    pub challenge_max_attempts: u32,
    pub confirm_failure_budget: u32,
    pub confirm_failure_window: Duration,
    pub expired_challenge_retention: Duration,
    pub confirm_idempotency_window: Duration,
    pub resend_cooldown: Duration,
    pub revoked_session_retention: Duration,
    pub max_active_sessions_per_user: u32,
    pub config_refresh_interval: Duration,
    pub block_marker_ttl: Duration,
    /// Admission limits; `None` is `off`.
    pub send_rate_per_ip: Option<RateLimit>,
    pub confirm_rate_per_ip: Option<RateLimit>,
    pub send_rate_global: Option<RateLimit>,
}

/// `N/DURATION`: at most `count` requests per fixed window of `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub window: Duration,
}

impl RateLimit {
    /// `60/1m`, or `off` (`None`).
    fn parse(value: &str) -> Option<Option<Self>> {
        if value.trim().eq_ignore_ascii_case("off") {
            return Some(None);
        }
        let (count, window) = value.split_once('/')?;
        let count = count.trim().parse::<u32>().ok().filter(|n| *n >= 1)?;
        let window = humantime::parse_duration(window.trim())
            .ok()
            .filter(|d| *d >= Duration::from_millis(1) && *d <= MAX_REDIS_DURATION)?;
        Some(Some(Self { count, window }))
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub redis: RedisConfig,
    pub gateway: GatewayConfig,
    pub user_service: ServiceMode,
    pub mail_service: ServiceMode,
    pub stub_blocked_emails: Vec<String>,
    pub public_addr: SocketAddr,
    pub internal_addr: SocketAddr,
    pub internal_token: Option<SecretString>,
    /// `AUTHSESSION_INTERNAL_HTTP_ALLOW_UNAUTHENTICATED`: the operator's explicit opt-out.
    pub internal_allow_unauthenticated: bool,
    /// `None` only in stub mode, which then uses the development key.
    pub code_hash_key: Option<CodeHashKey>,
    pub code_hash_key_previous: Option<CodeHashKey>,
    pub http_header_read_timeout: Duration,
    pub http_idle_timeout: Duration,
    /// Most open connections per listener.
    pub http_max_connections: usize,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub shutdown_timeout: Duration,
    pub policy: Policy,
    pub log_format: LogFormat,
    pub log_level: String,
}

/// One bad variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub variable: &'static str,
    pub value: Option<String>,
    pub expected: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(value) => write!(
                f,
                "{}={:?}: expected {}",
                self.variable, value, self.expected
            ),
            None => write!(
                f,
                "{} is not set: expected {}",
                self.variable, self.expected
            ),
        }
    }
}

/// Every problem found in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration ({} problem(s)):\n{}", .0.len(), render(.0))]
pub struct ConfigError(pub Vec<Problem>);

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&ProcessEnv)
    }

    pub fn from_source(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let mut p = Parser {
            env,
            problems: Vec::new(),
        };

        let mode = p.parse(
            REDIS_MODE,
            "standalone",
            "`standalone` or `cluster`",
            |v| match v {
                "standalone" => Some(RedisMode::Standalone),
                "cluster" => Some(RedisMode::Cluster),
                _ => None,
            },
        );
        let addrs = if p.optional(REDIS_ADDR).is_some_and(|v| v.contains('@')) {
            // `user:password@host:port` would carry a secret into logs: refuse it unechoed.
            p.problem(
                REDIS_ADDR,
                Some("<redacted: contains credentials>".into()),
                "`host:port` without credentials; set AUTHSESSION_REDIS_USERNAME and \
                 AUTHSESSION_REDIS_PASSWORD instead",
            );
            None
        } else {
            p.parse(
                REDIS_ADDR,
                "127.0.0.1:6379",
                "`host:port` (comma-separated in cluster mode)",
                |v| {
                    let addrs: Vec<String> = v.split(',').map(|a| a.trim().to_owned()).collect();
                    addrs.iter().all(|a| valid_host_port(a)).then_some(addrs)
                },
            )
        };
        let username = p.optional(REDIS_USERNAME);
        let password = p.optional(REDIS_PASSWORD).map(SecretString::from);
        let db = p.parse(REDIS_DB, "0", "an integer from 0 to 15", |v| {
            v.parse::<i64>().ok().filter(|d| (0..=15).contains(d))
        });
        let tls_enabled = p.bool(REDIS_TLS_ENABLED, false);
        let tls_ca_file = p.optional(REDIS_TLS_CA_FILE).map(PathBuf::from);
        let key_prefix = p.prefix(REDIS_KEY_PREFIX, "authsession:");
        let pool_size = p.parse(REDIS_POOL_SIZE, "16", "an integer from 1 to 1024", |v| {
            v.parse::<u32>().ok().filter(|n| (1..=1024).contains(n))
        });
        let connect_timeout = p.duration(REDIS_CONNECT_TIMEOUT, "2s");
        let command_timeout = p.duration(REDIS_COMMAND_TIMEOUT, "1s");
        let script_loading =
            p.parse(
                REDIS_SCRIPT_LOADING,
                "auto",
                "`auto` or `preloaded`",
                |v| match v {
                    "auto" => Some(ScriptLoading::Auto),
                    "preloaded" => Some(ScriptLoading::Preloaded),
                    _ => None,
                },
            );

        let session_key_prefix = p.prefix(GATEWAY_SESSION_KEY_PREFIX, "gateway:session:");
        let events_stream = p.prefix(GATEWAY_SESSION_EVENTS_STREAM, "gateway:session_events");
        let events_maxlen = p.parse(
            GATEWAY_SESSION_EVENTS_MAXLEN,
            "1000000",
            "an integer from 1000 to 1000000000",
            |v| {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| (1000..=MAX_EVENTS_MAXLEN).contains(n))
            },
        );

        let user_service = p.service(
            USER_SERVICE_MODE,
            USER_SERVICE_BASE_URL,
            USER_SERVICE_REQUEST_TIMEOUT,
        );
        let mail_service = p.service(
            MAIL_SERVICE_MODE,
            MAIL_SERVICE_BASE_URL,
            MAIL_SERVICE_REQUEST_TIMEOUT,
        );
        let stub_blocked_emails = p
            .optional(STUB_BLOCKED_EMAILS)
            .map(|v| {
                // The canonical form, as the stub directory is asked with it.
                v.split(',')
                    .filter(|e| !e.trim().is_empty())
                    .map(|e| {
                        Email::parse(e)
                            .map_or_else(|_| e.trim().to_owned(), |e| e.as_str().to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();

        let public_addr = p.parse(
            PUBLIC_HTTP_ADDR,
            ":8080",
            "`:port`, `host:port` or `[v6]:port`",
            parse_listen_addr,
        );
        let internal_addr = p.parse(
            INTERNAL_HTTP_ADDR,
            ":8081",
            "`:port`, `host:port` or `[v6]:port`",
            parse_listen_addr,
        );
        let internal_token = p.optional(INTERNAL_HTTP_TOKEN).map(SecretString::from);
        let allow_unauthenticated = p.bool(INTERNAL_HTTP_ALLOW_UNAUTHENTICATED, false);
        let allow_unknown = p.bool(ALLOW_UNKNOWN_VARIABLES, false);
        if internal_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().len() < 16)
        {
            p.problem(
                INTERNAL_HTTP_TOKEN,
                Some("<redacted>".into()),
                "a token of at least 16 characters",
            );
        }
        let http_header_read_timeout = p.duration(HTTP_HEADER_READ_TIMEOUT, "10s");
        let http_idle_timeout = p.duration(HTTP_IDLE_TIMEOUT, "60s");
        let http_max_connections = p.parse(
            HTTP_MAX_CONNECTIONS,
            "4096",
            "an integer from 1 to 1000000",
            |v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1_000_000).contains(n))
            },
        );
        let shutdown_timeout = p.duration(SHUTDOWN_TIMEOUT, "10s");

        let policy = PartialPolicy {
            challenge_ttl: p.redis_duration(CHALLENGE_TTL, "10m"),
            challenge_max_attempts: p.bounded(CHALLENGE_MAX_ATTEMPTS, "5", MAX_ATTEMPTS_CEILING),
            confirm_failure_budget: p.bounded(CONFIRM_FAILURE_BUDGET, "20", FAILURE_BUDGET_CEILING),
            confirm_failure_window: p.redis_duration(CONFIRM_FAILURE_WINDOW, "1h"),
            expired_challenge_retention: p.redis_duration(EXPIRED_CHALLENGE_RETENTION, "15m"),
            confirm_idempotency_window: p.redis_duration(CONFIRM_IDEMPOTENCY_WINDOW, "10m"),
            resend_cooldown: p.redis_duration(RESEND_COOLDOWN, "1m"),
            revoked_session_retention: p.redis_duration(REVOKED_SESSION_RETENTION, "720h"),
            max_active_sessions_per_user: p.bounded(
                MAX_ACTIVE_SESSIONS_PER_USER,
                "50",
                MAX_ACTIVE_SESSIONS_CEILING,
            ),
            config_refresh_interval: p.duration(CONFIG_REFRESH_INTERVAL, "5s"),
            block_marker_ttl: p.redis_duration(BLOCK_MARKER_TTL, "10m"),
            send_rate_per_ip: p.rate_limit(SEND_RATE_LIMIT_PER_IP, "60/1m"),
            confirm_rate_per_ip: p.rate_limit(CONFIRM_RATE_LIMIT_PER_IP, "60/1m"),
            send_rate_global: p.rate_limit(SEND_RATE_LIMIT_GLOBAL, "off"),
        };
        let trusted_proxies = p.parse(
            TRUSTED_PROXIES,
            "",
            "a comma list of CIDRs such as `10.0.0.0/8,192.168.1.7/32`",
            |v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| c.parse::<ipnet::IpNet>().ok())
                    .collect::<Option<Vec<_>>>()
            },
        );
        let code_hash_key = p.secret_key(CODE_HASH_KEY);
        let code_hash_key_previous = p.secret_key(CODE_HASH_KEY_PREVIOUS);

        let log_format = p.parse(LOG_FORMAT, "json", "`json` or `text`", |v| match v {
            "json" => Some(LogFormat::Json),
            "text" => Some(LogFormat::Text),
            _ => None,
        });
        let log_level = p.parse(
            LOG_LEVEL,
            "info",
            "a tracing filter such as `info` or `authsession=debug`",
            |v| {
                tracing_subscriber::EnvFilter::try_new(v)
                    .ok()
                    .map(|_| v.to_owned())
            },
        );

        // Cross-field rules.
        if let (Some(RedisMode::Cluster), Some(db)) = (mode, db) {
            if db != 0 {
                p.problem(
                    REDIS_DB,
                    Some(db.to_string()),
                    "0 in cluster mode (Redis Cluster has one database)",
                );
            }
        }
        if let (Some(RedisMode::Standalone), Some(addrs)) = (mode, &addrs) {
            if addrs.len() != 1 {
                p.problem(
                    REDIS_ADDR,
                    p.env.get(REDIS_ADDR),
                    "exactly one `host:port` in standalone mode",
                );
            }
        }
        if password.is_none() && username.is_some() {
            p.problem(
                REDIS_PASSWORD,
                None,
                "a password when AUTHSESSION_REDIS_USERNAME is set",
            );
        }
        if tls_ca_file.is_some() && tls_enabled == Some(false) {
            p.problem(
                REDIS_TLS_ENABLED,
                Some("false".into()),
                "`true` when AUTHSESSION_REDIS_TLS_CA_FILE is set",
            );
        }
        if let Some(path) = &tls_ca_file {
            if !path.is_file() {
                p.problem(
                    REDIS_TLS_CA_FILE,
                    Some(path.display().to_string()),
                    "a readable PEM file",
                );
            }
        }
        if let (Some(public), Some(internal)) = (public_addr, internal_addr) {
            if public == internal && public.port() != 0 {
                p.problem(
                    INTERNAL_HTTP_ADDR,
                    Some(internal.to_string()),
                    "an address other than the public listener's",
                );
            }
        }
        if let (Some(RedisMode::Cluster), Some(k), Some(g), Some(s)) =
            (mode, &key_prefix, &session_key_prefix, &events_stream)
        {
            if let Err(expected) = check_hash_tags(k, g, s) {
                p.problem(REDIS_KEY_PREFIX, Some(k.clone()), &expected);
            }
        }

        let rest = [USER_SERVICE_MODE, MAIL_SERVICE_MODE]
            .iter()
            .any(|mode| p.env.get(mode).is_some_and(|v| v.trim() == "rest"));
        // An internal surface anyone on the network can reach, with no token, in a real
        // environment, is a mistake unless the operator says otherwise.
        let exposed = internal_addr.is_some_and(|a| !a.ip().is_loopback());
        if rest && exposed && internal_token.is_none() && allow_unauthenticated == Some(false) {
            p.problem(
                INTERNAL_HTTP_TOKEN,
                None,
                "a bearer token (>= 16 characters) when the internal listener is not loopback and \
                 a dependency runs in `rest` mode; or AUTHSESSION_INTERNAL_HTTP_ALLOW_UNAUTHENTICATED=true \
                 if a network boundary protects it",
            );
        }
        if allow_unknown == Some(false) {
            for (name, nearest) in known::unknown_variables(p.env) {
                let expected = match nearest {
                    Some(near) => format!(
                        "a variable authsession knows (did you mean {near}?), or \
                         AUTHSESSION_ALLOW_UNKNOWN_VARIABLES=true"
                    ),
                    None => {
                        "a variable authsession knows, or AUTHSESSION_ALLOW_UNKNOWN_VARIABLES=true"
                            .into()
                    }
                };
                p.problems.push(Problem {
                    variable: "AUTHSESSION_*",
                    value: Some(name),
                    expected,
                });
            }
        }
        if rest && code_hash_key.is_none() && p.optional(CODE_HASH_KEY).is_none() {
            p.problem(
                CODE_HASH_KEY,
                None,
                "base64 of at least 32 random bytes when a dependency runs in `rest` mode \
                 (e.g. `openssl rand -base64 32`)",
            );
        }
        if code_hash_key_previous.is_some() && p.optional(CODE_HASH_KEY).is_none() {
            p.problem(
                CODE_HASH_KEY,
                None,
                "a current key when AUTHSESSION_CODE_HASH_KEY_PREVIOUS is set",
            );
        }

        if !p.problems.is_empty() {
            return Err(ConfigError(p.problems));
        }
        // Every `None` below recorded a problem, so these unwraps cannot fail.
        Ok(Config {
            redis: RedisConfig {
                addrs: addrs.unwrap(),
                mode: mode.unwrap(),
                username,
                password,
                db: db.unwrap(),
                tls_enabled: tls_enabled.unwrap(),
                tls_ca_file,
                key_prefix: key_prefix.unwrap(),
                pool_size: pool_size.unwrap(),
                connect_timeout: connect_timeout.unwrap(),
                command_timeout: command_timeout.unwrap(),
                script_loading: script_loading.unwrap(),
            },
            gateway: GatewayConfig {
                session_key_prefix: session_key_prefix.unwrap(),
                events_stream: events_stream.unwrap(),
                events_maxlen: events_maxlen.unwrap(),
            },
            user_service: user_service.unwrap(),
            mail_service: mail_service.unwrap(),
            stub_blocked_emails,
            public_addr: public_addr.unwrap(),
            internal_addr: internal_addr.unwrap(),
            internal_token,
            internal_allow_unauthenticated: allow_unauthenticated.unwrap(),
            code_hash_key,
            code_hash_key_previous,
            http_header_read_timeout: http_header_read_timeout.unwrap(),
            http_idle_timeout: http_idle_timeout.unwrap(),
            http_max_connections: http_max_connections.unwrap(),
            shutdown_timeout: shutdown_timeout.unwrap(),
            policy: Policy {
                challenge_ttl: policy.challenge_ttl.unwrap(),
                challenge_max_attempts: policy.challenge_max_attempts.unwrap(),
                confirm_failure_budget: policy.confirm_failure_budget.unwrap(),
                confirm_failure_window: policy.confirm_failure_window.unwrap(),
                expired_challenge_retention: policy.expired_challenge_retention.unwrap(),
                confirm_idempotency_window: policy.confirm_idempotency_window.unwrap(),
                resend_cooldown: policy.resend_cooldown.unwrap(),
                revoked_session_retention: policy.revoked_session_retention.unwrap(),
                max_active_sessions_per_user: policy.max_active_sessions_per_user.unwrap(),
                config_refresh_interval: policy.config_refresh_interval.unwrap(),
                block_marker_ttl: policy.block_marker_ttl.unwrap(),
                send_rate_per_ip: policy.send_rate_per_ip.unwrap(),
                confirm_rate_per_ip: policy.confirm_rate_per_ip.unwrap(),
                send_rate_global: policy.send_rate_global.unwrap(),
            },
            trusted_proxies: trusted_proxies.unwrap(),
            log_format: log_format.unwrap(),
            log_level: log_level.unwrap(),
        })
    }
}

/// Policy as parsed, before the cross-field check unwraps it.
struct PartialPolicy {
    challenge_ttl: Option<Duration>,
    challenge_max_attempts: Option<u32>,
    confirm_failure_budget: Option<u32>,
    confirm_failure_window: Option<Duration>,
    expired_challenge_retention: Option<Duration>,
    confirm_idempotency_window: Option<Duration>,
    resend_cooldown: Option<Duration>,
    revoked_session_retention: Option<Duration>,
    max_active_sessions_per_user: Option<u32>,
    config_refresh_interval: Option<Duration>,
    block_marker_ttl: Option<Duration>,
    send_rate_per_ip: Option<Option<RateLimit>>,
    confirm_rate_per_ip: Option<Option<RateLimit>>,
    send_rate_global: Option<Option<RateLimit>>,
}

struct Parser<'a> {
    env: &'a dyn EnvSource,
    problems: Vec<Problem>,
}

impl Parser<'_> {
    fn problem(&mut self, variable: &'static str, value: Option<String>, expected: &str) {
        self.problems.push(Problem {
            variable,
            value,
            expected: expected.to_owned(),
        });
    }

    /// An unset or empty variable is absent.
    fn optional(&self, name: &'static str) -> Option<String> {
        self.env.get(name).filter(|v| !v.trim().is_empty())
    }

    fn parse<T>(
        &mut self,
        name: &'static str,
        default: &str,
        expected: &str,
        f: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let raw = self.optional(name);
        let value = raw.as_deref().unwrap_or(default).trim();
        let parsed = f(value);
        if parsed.is_none() {
            self.problem(name, Some(value.to_owned()), expected);
        }
        parsed
    }

    fn duration(&mut self, name: &'static str, default: &str) -> Option<Duration> {
        self.parse(
            name,
            default,
            "a positive duration such as `500ms`, `2s`, `1m` or `720h`",
            |v| {
                humantime::parse_duration(v)
                    .ok()
                    .filter(|d| *d >= Duration::from_millis(1))
            },
        )
    }

    fn rate_limit(&mut self, name: &'static str, default: &str) -> Option<Option<RateLimit>> {
        self.parse(
            name,
            default,
            "`N/DURATION` (e.g. `60/1m`) or `off`",
            RateLimit::parse,
        )
    }

    /// A code-hash key (base64, >= 32 bytes); the value is never echoed in a problem.
    fn secret_key(&mut self, name: &'static str) -> Option<CodeHashKey> {
        let raw = self.optional(name)?;
        let key = CodeHashKey::parse(&raw).ok();
        if key.is_none() {
            self.problem(
                name,
                Some("<redacted>".into()),
                "standard base64 of at least 32 bytes",
            );
        }
        key
    }

    /// A duration that becomes a Redis TTL: at most [`MAX_REDIS_DURATION`].
    fn redis_duration(&mut self, name: &'static str, default: &str) -> Option<Duration> {
        self.parse(
            name,
            default,
            "a positive duration of at most 10 years (87600h), such as `1m` or `720h`",
            |v| {
                humantime::parse_duration(v)
                    .ok()
                    .filter(|d| *d >= Duration::from_millis(1) && *d <= MAX_REDIS_DURATION)
            },
        )
    }

    fn bool(&mut self, name: &'static str, default: bool) -> Option<bool> {
        let default = if default { "true" } else { "false" };
        self.parse(name, default, "`true` or `false`", |v| {
            match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Some(true),
                "false" | "0" | "no" => Some(false),
                _ => None,
            }
        })
    }

    fn bounded(&mut self, name: &'static str, default: &str, max: u32) -> Option<u32> {
        let expected = format!("an integer from 1 to {max}");
        self.parse(name, default, &expected, |v| {
            v.parse::<u32>().ok().filter(|n| (1..=max).contains(n))
        })
    }

    /// Key prefixes and names: printable ASCII without spaces, at most 128 bytes.
    fn prefix(&mut self, name: &'static str, default: &str) -> Option<String> {
        self.parse(
            name,
            default,
            "1 to 128 printable ASCII characters without spaces",
            |v| {
                (!v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
                    .then(|| v.to_owned())
            },
        )
    }

    fn service(
        &mut self,
        mode: &'static str,
        url: &'static str,
        timeout: &'static str,
    ) -> Option<ServiceMode> {
        let rest = self.parse(mode, "stub", "`stub` or `rest`", |v| match v {
            "stub" => Some(false),
            "rest" => Some(true),
            _ => None,
        })?;
        if !rest {
            return Some(ServiceMode::Stub);
        }
        let base_url = match self.optional(url) {
            None => {
                self.problem(url, None, &format!("an http(s) URL when {mode}=rest"));
                None
            }
            Some(raw) => {
                let parsed = Url::parse(raw.trim())
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .map(|mut u| {
                        // A base with a path prefix (`http://host/users`) must keep it when the
                        // API paths are joined on: make it a directory.
                        if !u.path().ends_with('/') {
                            let path = format!("{}/", u.path());
                            u.set_path(&path);
                        }
                        u
                    });
                if parsed.is_none() {
                    self.problem(url, Some(raw), "an absolute http(s) URL");
                }
                parsed
            }
        };
        let request_timeout = match self.optional(timeout) {
            None => {
                self.problem(
                    timeout,
                    None,
                    &format!("a duration such as `2s` when {mode}=rest"),
                );
                None
            }
            Some(_) => self.duration(timeout, ""),
        };
        Some(ServiceMode::Rest(RestTarget {
            base_url: base_url?,
            request_timeout: request_timeout?,
        }))
    }
}

fn valid_host_port(addr: &str) -> bool {
    match addr.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

/// `:8080` (all interfaces), `127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`.
fn parse_listen_addr(value: &str) -> Option<SocketAddr> {
    if let Some(port) = value.strip_prefix(':') {
        return port
            .parse::<u16>()
            .ok()
            .map(|p| SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), p));
    }
    if let Ok(addr) = SocketAddr::from_str(value) {
        return Some(addr);
    }
    let (host, port) = value.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    (host == "localhost").then(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

/// The Redis Cluster hash tag of a key: the text between the first `{` and the next `}`, when
/// non-empty.
pub fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')? + open + 1;
    (close > open + 1).then(|| &key[open + 1..close])
}

/// In cluster mode every key a script touches must live in one slot, so the three names must
/// carry the same hash tag.
fn check_hash_tags(key_prefix: &str, gateway_prefix: &str, stream: &str) -> Result<(), String> {
    let tags = [
        hash_tag(key_prefix),
        hash_tag(gateway_prefix),
        hash_tag(stream),
    ];
    if tags[0].is_some() && tags.iter().all(|t| *t == tags[0]) {
        return Ok(());
    }
    Err(format!(
        "in cluster mode {REDIS_KEY_PREFIX} ({key_prefix:?}), {GATEWAY_SESSION_KEY_PREFIX} ({gateway_prefix:?}) and \
         {GATEWAY_SESSION_EVENTS_STREAM} ({stream:?}) to share one hash tag, e.g. \
         {REDIS_KEY_PREFIX}={{auth}}authsession: {GATEWAY_SESSION_KEY_PREFIX}={{auth}}gateway:session: \
         {GATEWAY_SESSION_EVENTS_STREAM}={{auth}}gateway:session_events (the gateway must use the same names)"
    ))
}

#[cfg(test)]
mod tests;
