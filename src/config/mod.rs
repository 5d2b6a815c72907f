//! Configuration: every `AUTHSESSION_*` variable parsed into typed values before anything starts.
//!
//! The environment is read through [`EnvSource`] so tests pass a map instead of mutating the
//! process environment. Parsing never stops at the first problem: every bad variable is collected
//! and reported at once, each naming the variable, its value and what is expected.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use secrecy::SecretString;

use crate::domain::CodeHashKey;

mod known;
mod load;
mod parse;
mod secret_files;
mod sections;
mod vars;
pub use secret_files::read_secret;
pub use vars::*;

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
    /// A primary and its replicas watched by Sentinel: `addrs` are the Sentinels.
    Sentinel,
    Cluster,
}

impl RedisMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RedisMode::Standalone => "standalone",
            RedisMode::Sentinel => "sentinel",
            RedisMode::Cluster => "cluster",
        }
    }
}

/// Where Sentinel mode finds the primary.
#[derive(Debug, Clone)]
pub struct SentinelConfig {
    /// The name the Sentinels monitor the primary under.
    pub master: String,
    /// Credentials for the Sentinels themselves (the data nodes use `RedisConfig`'s).
    pub username: Option<String>,
    pub password: Option<SecretString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptLoading {
    /// Load a script with `SCRIPT LOAD` when Redis answers `NOSCRIPT`, then retry once.
    Auto,
    /// Never send script bodies; startup requires every script to be cached already.
    Preloaded,
}

impl ScriptLoading {
    pub fn as_str(self) -> &'static str {
        match self {
            ScriptLoading::Auto => "auto",
            ScriptLoading::Preloaded => "preloaded",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Seed nodes, `host:port`: one in standalone mode, the Sentinels in sentinel mode, seed
    /// nodes in cluster mode.
    pub addrs: Vec<String>,
    pub mode: RedisMode,
    /// Set in sentinel mode only.
    pub sentinel: Option<SentinelConfig>,
    /// Replicas that must acknowledge each write script (`WAIT`); 0 is off.
    pub min_replica_acks: u32,
    pub replica_ack_timeout: Duration,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub db: i64,
    pub tls_enabled: bool,
    pub tls_ca_file: Option<PathBuf>,
    pub key_prefix: String,
    /// Cluster mode: how many partitions (hash tags) the keys are spread over; 1 is the
    /// single-tag layout.
    pub partitions: u32,
    pub pool_size: u32,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub script_loading: ScriptLoading,
}

impl RedisConfig {
    /// Which Redis an operator command asks, in one line: mode, addresses, database and key
    /// prefix (never a credential).
    pub fn describe(&self) -> String {
        let service = self
            .sentinel
            .as_ref()
            .map(|s| format!(" (master {})", s.master))
            .unwrap_or_default();
        format!(
            "{} {}{service}, db {}, key prefix `{}`",
            self.mode.as_str(),
            self.addrs.join(","),
            self.db,
            self.key_prefix
        )
    }
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub session_key_prefix: String,
    pub events_stream: String,
    pub events_maxlen: u64,
    pub event_format: EventFormat,
}

/// What a gateway stream entry carries (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFormat {
    /// `event_type`, `device_session_id`, `user_id`, `status`, `version`, `snapshot` (the
    /// snapshot JSON) and `occurred_at_ms`: the runbook's "snapshot event".
    Snapshot,
    /// `device_session_id`, `version` and `status` only; a gateway reads the snapshot key when it
    /// needs more (opt-in: smaller streams).
    Compact,
}

impl EventFormat {
    /// The name the variable and the scripts' `event_format` argument use.
    pub fn as_str(self) -> &'static str {
        match self {
            EventFormat::Snapshot => "snapshot",
            EventFormat::Compact => "compact",
        }
    }
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
    /// Most open connections per client address (IPv6: its network); trusted proxies exempt.
    pub http_max_connections_per_client: usize,
    /// Most requests per client address in flight at once; trusted proxies exempt.
    pub http_max_requests_per_client: usize,
    /// A request body must be complete this long after its head.
    pub http_body_read_timeout: Duration,
    /// Body bytes all requests together may hold while their bodies arrive.
    pub http_body_buffer_bytes: usize,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// IPv6 clients are counted by their network of this prefix length.
    pub rate_limit_ipv6_prefix: u8,
    pub rate_limit_nat64_prefixes: Vec<ipnet::Ipv6Net>,
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

/// `value` with every user information masked: everything before its last `@` (a scheme's
/// `scheme://` kept), whatever the value's shape. A problem's value is printed, and a URL, with
/// or without its scheme, may carry credentials in which `#`, `/` or `@` can occur.
fn redact_userinfo(value: &str) -> String {
    let Some(last_at) = value.rfind('@') else {
        return value.to_owned();
    };
    let scheme = value[..last_at]
        .find("://")
        .map_or("", |end| &value[..end + 3]);
    format!("{scheme}***{}", &value[last_at..])
}

/// Whether `variable` takes a count, a duration or a rate limit (its default is made of digits,
/// lower-case letters, `.` and `/` only): such a value is never echoed, since nothing but a
/// mistake puts other text there, a secret pasted into the wrong variable included.
fn numeric(variable: &str) -> bool {
    let default = vars::default_of(variable);
    default.bytes().any(|b| b.is_ascii_digit())
        && default
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'.' || b == b'/')
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(value) if numeric(self.variable) => write!(
                f,
                "{} (a value of {} characters, not shown): expected {}",
                self.variable,
                value.chars().count(),
                self.expected
            ),
            Some(value) => write!(
                f,
                "{}={:?}: expected {}",
                self.variable,
                redact_userinfo(value),
                self.expected
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

/// Most partitions `AUTHSESSION_REDIS_PARTITIONS` accepts: 16 slots each at the most.
pub const MAX_PARTITIONS: u32 = 1024;

/// The Redis Cluster hash tag of a key: the text between the first `{` and the next `}`, when
/// non-empty.
pub fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')? + open + 1;
    (close > open + 1).then(|| &key[open + 1..close])
}

/// Whether every name carries one and the same hash tag. In cluster mode every key a script
/// touches must live in one slot, and keys are built from these names.
pub fn share_one_hash_tag(names: &[&str]) -> bool {
    let first = names.first().and_then(|n| hash_tag(n));
    first.is_some() && names.iter().all(|n| hash_tag(n) == first)
}

/// What cluster mode needs of the three names, with a working example.
pub(crate) fn hash_tag_expectation(key_prefix: &str, gateway_prefix: &str, stream: &str) -> String {
    format!(
        "in cluster mode {REDIS_KEY_PREFIX} ({key_prefix:?}), {GATEWAY_SESSION_KEY_PREFIX} ({gateway_prefix:?}) and \
         {GATEWAY_SESSION_EVENTS_STREAM} ({stream:?}) to share one hash tag, e.g. \
         {REDIS_KEY_PREFIX}={{auth}}authsession: {GATEWAY_SESSION_KEY_PREFIX}={{auth}}gateway:session: \
         {GATEWAY_SESSION_EVENTS_STREAM}={{auth}}gateway:session_events (the gateway must use the same names)"
    )
}

#[cfg(test)]
mod tests;
