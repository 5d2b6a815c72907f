//! Every variable the service reads, declared once: its name (a `pub const`), its default and
//! what it means. The parser takes defaults from here, unknown `AUTHSESSION_*` variables are
//! found against this list, and a test checks the configuration table (docs/configuration.md) against it.

/// One configuration variable.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    pub name: &'static str,
    /// `None`: unset unless configured.
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

macro_rules! variables {
    ($( $(#[doc = $doc:literal])+ $ident:ident = $name:literal, $default:expr; )*) => {
        $( $(#[doc = $doc])+ pub const $ident: &str = $name; )*

        /// Every variable, in the order of docs/configuration.md.
        pub const VARIABLES: &[Variable] = &[
            $( Variable { name: $name, default: $default, doc: concat!($($doc),+) }, )*
        ];
    };
}

variables! {
    /// `host:port` of Redis; comma-separated seed nodes in cluster mode.
    REDIS_ADDR = "AUTHSESSION_REDIS_ADDR", Some("127.0.0.1:6379");
    /// `standalone`, `sentinel` or `cluster`.
    REDIS_MODE = "AUTHSESSION_REDIS_MODE", Some("standalone");
    /// Cluster mode: partitions the keys are spread over (1 keeps every key in one hash tag).
    REDIS_PARTITIONS = "AUTHSESSION_REDIS_PARTITIONS", Some("1");
    /// Sentinel mode: the name the Sentinels monitor the primary under.
    REDIS_SENTINEL_MASTER = "AUTHSESSION_REDIS_SENTINEL_MASTER", None;
    /// Sentinel mode: ACL user of the Sentinels themselves (unset: the default user).
    REDIS_SENTINEL_USERNAME = "AUTHSESSION_REDIS_SENTINEL_USERNAME", None;
    /// Sentinel mode: password of the Sentinels themselves (unset: no AUTH).
    REDIS_SENTINEL_PASSWORD = "AUTHSESSION_REDIS_SENTINEL_PASSWORD", None;
    /// A file (mode 0600 or 0400) holding the Sentinels' password, instead of the variable.
    REDIS_SENTINEL_PASSWORD_FILE = "AUTHSESSION_REDIS_SENTINEL_PASSWORD_FILE", None;
    /// Redis ACL user name (unset: the default user).
    REDIS_USERNAME = "AUTHSESSION_REDIS_USERNAME", None;
    /// Redis ACL password (unset: no AUTH).
    REDIS_PASSWORD = "AUTHSESSION_REDIS_PASSWORD", None;
    /// A file (mode 0600 or 0400) holding the Redis password, instead of the variable.
    REDIS_PASSWORD_FILE = "AUTHSESSION_REDIS_PASSWORD_FILE", None;
    /// Logical database; must be 0 in cluster mode.
    REDIS_DB = "AUTHSESSION_REDIS_DB", Some("0");
    /// `true` connects with TLS (`rediss`).
    REDIS_TLS_ENABLED = "AUTHSESSION_REDIS_TLS_ENABLED", Some("false");
    /// PEM file with the CA that signed the Redis server certificate (unset: system roots).
    REDIS_TLS_CA_FILE = "AUTHSESSION_REDIS_TLS_CA_FILE", None;
    /// Prefix of every source-of-truth key: the namespace on a shared Redis.
    REDIS_KEY_PREFIX = "AUTHSESSION_REDIS_KEY_PREFIX", Some("authsession:");
    /// Maximum pooled Redis connections.
    REDIS_POOL_SIZE = "AUTHSESSION_REDIS_POOL_SIZE", Some("16");
    /// Bound on establishing a connection, and on each startup PING.
    REDIS_CONNECT_TIMEOUT = "AUTHSESSION_REDIS_CONNECT_TIMEOUT", Some("2s");
    /// Bound on one Redis command (pool wait included); exceeded answers 503.
    REDIS_COMMAND_TIMEOUT = "AUTHSESSION_REDIS_COMMAND_TIMEOUT", Some("1s");
    /// `auto` (load scripts on NOSCRIPT) or `preloaded` (never send script bodies).
    REDIS_SCRIPT_LOADING = "AUTHSESSION_REDIS_SCRIPT_LOADING", Some("auto");
    /// Replicas that must acknowledge every write script before it answers success (`WAIT`);
    /// 0 is off.
    REDIS_MIN_REPLICA_ACKS = "AUTHSESSION_REDIS_MIN_REPLICA_ACKS", Some("0");
    /// How long a write waits for those acknowledgements before it answers 503.
    REDIS_REPLICA_ACK_TIMEOUT = "AUTHSESSION_REDIS_REPLICA_ACK_TIMEOUT", Some("100ms");
    /// Prefix of the gateway snapshot keys; must match the gateway.
    GATEWAY_SESSION_KEY_PREFIX = "AUTHSESSION_GATEWAY_SESSION_KEY_PREFIX", Some("gateway:session:");
    /// Stream the gateway consumes; must match the gateway.
    GATEWAY_SESSION_EVENTS_STREAM = "AUTHSESSION_GATEWAY_SESSION_EVENTS_STREAM", Some("gateway:session_events");
    /// Approximate `MAXLEN ~` of the event stream.
    GATEWAY_SESSION_EVENTS_MAXLEN = "AUTHSESSION_GATEWAY_SESSION_EVENTS_MAXLEN", Some("1000000");
    /// `snapshot` (each event carries the snapshot JSON) or `compact` (id, version, status).
    GATEWAY_EVENT_FORMAT = "AUTHSESSION_GATEWAY_EVENT_FORMAT", Some("snapshot");
    /// `stub` or `rest`.
    USER_SERVICE_MODE = "AUTHSESSION_USER_SERVICE_MODE", Some("stub");
    /// Base URL of the user service (rest mode).
    USER_SERVICE_BASE_URL = "AUTHSESSION_USER_SERVICE_BASE_URL", None;
    /// Per-attempt timeout of user-service calls (rest mode).
    USER_SERVICE_REQUEST_TIMEOUT = "AUTHSESSION_USER_SERVICE_REQUEST_TIMEOUT", None;
    /// `stub` or `rest`.
    MAIL_SERVICE_MODE = "AUTHSESSION_MAIL_SERVICE_MODE", Some("stub");
    /// Base URL of the mail service (rest mode).
    MAIL_SERVICE_BASE_URL = "AUTHSESSION_MAIL_SERVICE_BASE_URL", None;
    /// Timeout of one mail-service call (rest mode).
    MAIL_SERVICE_REQUEST_TIMEOUT = "AUTHSESSION_MAIL_SERVICE_REQUEST_TIMEOUT", None;
    /// Comma list of addresses the stub user service treats as blocked.
    STUB_BLOCKED_EMAILS = "AUTHSESSION_STUB_BLOCKED_EMAILS", None;
    /// Public listener: `:port`, `host:port` or `[v6]:port`.
    PUBLIC_HTTP_ADDR = "AUTHSESSION_PUBLIC_HTTP_ADDR", Some(":8080");
    /// Internal (trusted) listener.
    INTERNAL_HTTP_ADDR = "AUTHSESSION_INTERNAL_HTTP_ADDR", Some(":8081");
    /// Bearer token required on the internal surface when set.
    INTERNAL_HTTP_TOKEN = "AUTHSESSION_INTERNAL_HTTP_TOKEN", None;
    /// A file (mode 0600 or 0400) holding the internal token, instead of the variable.
    INTERNAL_HTTP_TOKEN_FILE = "AUTHSESSION_INTERNAL_HTTP_TOKEN_FILE", None;
    /// `true` starts without an internal token even where one is required (a network boundary
    /// protects the internal listener).
    INTERNAL_HTTP_ALLOW_UNAUTHENTICATED = "AUTHSESSION_INTERNAL_HTTP_ALLOW_UNAUTHENTICATED", Some("false");
    /// `N/DURATION` or `off`: send-email-code requests per client IP per window.
    SEND_RATE_LIMIT_PER_IP = "AUTHSESSION_SEND_RATE_LIMIT_PER_IP", Some("60/1m");
    /// `N/DURATION` or `off`: confirm-email-code requests per client IP per window.
    CONFIRM_RATE_LIMIT_PER_IP = "AUTHSESSION_CONFIRM_RATE_LIMIT_PER_IP", Some("60/1m");
    /// `N/DURATION` or `off`: challenges created per window, all clients together.
    SEND_RATE_LIMIT_GLOBAL = "AUTHSESSION_SEND_RATE_LIMIT_GLOBAL", Some("off");
    /// Comma list of CIDRs whose `X-Forwarded-For` is believed.
    TRUSTED_PROXIES = "AUTHSESSION_TRUSTED_PROXIES", None;
    /// IPv6 clients are counted by this prefix (one window per /64 by default).
    RATE_LIMIT_IPV6_PREFIX = "AUTHSESSION_RATE_LIMIT_IPV6_PREFIX", Some("64");
    /// NAT64 prefixes (comma list; lengths 32, 40, 48, 56, 64 or 96) whose addresses are counted
    /// as the IPv4 client they embed (RFC 6052), e.g. a local-use one from `64:ff9b:1::/48`.
    RATE_LIMIT_NAT64_PREFIXES = "AUTHSESSION_RATE_LIMIT_NAT64_PREFIXES", Some("64:ff9b::/96");
    /// Idle keep-alive connections close after this.
    HTTP_IDLE_TIMEOUT = "AUTHSESSION_HTTP_IDLE_TIMEOUT", Some("60s");
    /// Most open connections per listener; one more is closed at once.
    HTTP_MAX_CONNECTIONS = "AUTHSESSION_HTTP_MAX_CONNECTIONS", Some("4096");
    /// Most open connections per client address (IPv6: per prefix); trusted proxies exempt.
    HTTP_MAX_CONNECTIONS_PER_CLIENT = "AUTHSESSION_HTTP_MAX_CONNECTIONS_PER_CLIENT", Some("128");
    /// Most requests per client address in flight at once; trusted proxies exempt.
    HTTP_MAX_REQUESTS_PER_CLIENT = "AUTHSESSION_HTTP_MAX_REQUESTS_PER_CLIENT", Some("64");
    /// A request body must be complete this long after its head.
    HTTP_BODY_READ_TIMEOUT = "AUTHSESSION_HTTP_BODY_READ_TIMEOUT", Some("5s");
    /// Request body bytes all connections together may hold while bodies arrive.
    HTTP_BODY_BUFFER_BYTES = "AUTHSESSION_HTTP_BODY_BUFFER_BYTES", Some("33554432");
    /// `true` accepts `AUTHSESSION_*` variables the service does not know (else a startup error).
    ALLOW_UNKNOWN_VARIABLES = "AUTHSESSION_ALLOW_UNKNOWN_VARIABLES", Some("false");
    /// Base64 of at least 32 bytes: the HMAC-SHA256 key of login-code hashes. Required when
    /// either dependency runs in `rest` mode; `stub` mode falls back to a fixed development key.
    CODE_HASH_KEY = "AUTHSESSION_CODE_HASH_KEY", None;
    /// A file (mode 0600 or 0400) holding the code-hash key, instead of the variable.
    CODE_HASH_KEY_FILE = "AUTHSESSION_CODE_HASH_KEY_FILE", None;
    /// The key before a rotation, still accepted when verifying codes (optional).
    CODE_HASH_KEY_PREVIOUS = "AUTHSESSION_CODE_HASH_KEY_PREVIOUS", None;
    /// A file (mode 0600 or 0400) holding the previous code-hash key, instead of the variable.
    CODE_HASH_KEY_PREVIOUS_FILE = "AUTHSESSION_CODE_HASH_KEY_PREVIOUS_FILE", None;
    /// How long a block's marker in Redis refuses confirms that were in flight when it happened.
    BLOCK_MARKER_TTL = "AUTHSESSION_BLOCK_MARKER_TTL", Some("10m");
    /// Longest a client may take to send a request's headers (slow-client protection).
    HTTP_HEADER_READ_TIMEOUT = "AUTHSESSION_HTTP_HEADER_READ_TIMEOUT", Some("10s");
    /// Per-component shutdown budget.
    SHUTDOWN_TIMEOUT = "AUTHSESSION_SHUTDOWN_TIMEOUT", Some("10s");
    /// How long a login code can be confirmed.
    CHALLENGE_TTL = "AUTHSESSION_CHALLENGE_TTL", Some("10m");
    /// Wrong guesses allowed per challenge (runtime-overridable).
    CHALLENGE_MAX_ATTEMPTS = "AUTHSESSION_CHALLENGE_MAX_ATTEMPTS", Some("5");
    /// Failed confirms allowed per address per window.
    CONFIRM_FAILURE_BUDGET = "AUTHSESSION_CONFIRM_FAILURE_BUDGET", Some("20");
    /// Fixed window of the per-address failure budget.
    CONFIRM_FAILURE_WINDOW = "AUTHSESSION_CONFIRM_FAILURE_WINDOW", Some("1h");
    /// How long an expired challenge stays observable as `challenge_expired`.
    EXPIRED_CHALLENGE_RETENTION = "AUTHSESSION_EXPIRED_CHALLENGE_RETENTION", Some("15m");
    /// How long an identical confirm returns the same session.
    CONFIRM_IDEMPOTENCY_WINDOW = "AUTHSESSION_CONFIRM_IDEMPOTENCY_WINDOW", Some("10m");
    /// Fixed resend window per address.
    RESEND_COOLDOWN = "AUTHSESSION_RESEND_COOLDOWN", Some("1m");
    /// How long revoked sessions (and their snapshots) are kept.
    REVOKED_SESSION_RETENTION = "AUTHSESSION_REVOKED_SESSION_RETENTION", Some("720h");
    /// Active sessions per user before the oldest are evicted (runtime-overridable).
    MAX_ACTIVE_SESSIONS_PER_USER = "AUTHSESSION_MAX_ACTIVE_SESSIONS_PER_USER", Some("50");
    /// How long runtime config from `P config` is cached.
    CONFIG_REFRESH_INTERVAL = "AUTHSESSION_CONFIG_REFRESH_INTERVAL", Some("5s");
    /// `json` or `text`.
    LOG_FORMAT = "AUTHSESSION_LOG_FORMAT", Some("json");
    /// A `tracing` filter (`info`, `authsession=debug`); `RUST_LOG` wins when set.
    LOG_LEVEL = "AUTHSESSION_LOG_LEVEL", Some("info");
}

/// The declared default of `name` (`""` when it has none).
pub fn default_of(name: &str) -> &'static str {
    VARIABLES
        .iter()
        .find(|v| v.name == name)
        .and_then(|v| v.default)
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of the configuration table (docs/configuration.md): `| `NAME` | default | meaning |`.
    fn readme_rows() -> Vec<(String, String)> {
        let readme = include_str!("../../docs/configuration.md");
        let table = readme
            .split("# Configuration")
            .nth(1)
            .expect("a Configuration section")
            .split("\n## ")
            .next()
            .unwrap();
        table
            .lines()
            .filter_map(|line| {
                let mut cells = line.split('|').map(str::trim).skip(1);
                let name = cells.next()?.strip_prefix("`AUTHSESSION_")?;
                let name = format!("AUTHSESSION_{}", name.strip_suffix('`')?);
                Some((name, cells.next()?.to_owned()))
            })
            .collect()
    }

    /// docs/configuration.md documents every variable, once each, with the default the parser uses.
    #[test]
    fn the_readme_configuration_table_matches_the_declarations() {
        let rows = readme_rows();
        let documented: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
        let declared: Vec<&str> = VARIABLES.iter().map(|v| v.name).collect();
        assert_eq!(
            documented, declared,
            "documented rows, in declaration order"
        );
        for ((name, cell), variable) in rows.iter().zip(VARIABLES) {
            match variable.default {
                None => assert!(
                    cell.starts_with("unset"),
                    "{name}: docs/configuration.md says {cell}"
                ),
                Some(default) => assert!(
                    cell.starts_with(&format!("`{default}`")),
                    "{name}: docs/configuration.md says {cell}, the parser uses `{default}`"
                ),
            }
        }
    }

    #[test]
    fn names_are_unique_and_prefixed() {
        let mut names: Vec<_> = VARIABLES.iter().map(|v| v.name).collect();
        assert!(names.iter().all(|n| n.starts_with("AUTHSESSION_")));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), VARIABLES.len());
    }
}
