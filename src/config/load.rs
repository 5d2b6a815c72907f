//! `Config::from_source`: every variable read (or defaulted) and converted, then the rules that
//! tie variables together; every problem is collected before any is reported.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use super::parse::{parse_listen_addr, valid_host_port, Parser};
use super::*;
use crate::domain::Email;
use crate::store::keys::share_one_hash_tag;

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
            "`standalone`, `sentinel` or `cluster`",
            |v| match v {
                "standalone" => Some(RedisMode::Standalone),
                "sentinel" => Some(RedisMode::Sentinel),
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
                "`host:port` (comma-separated: the Sentinels, or cluster seed nodes)",
                |v| {
                    let addrs: Vec<String> = v.split(',').map(|a| a.trim().to_owned()).collect();
                    addrs.iter().all(|a| valid_host_port(a)).then_some(addrs)
                },
            )
        };
        let sentinel = p.sentinel(mode);
        let partitions = p.parse(REDIS_PARTITIONS, "an integer from 1 to 1024", |v| {
            v.parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_PARTITIONS).contains(n))
        });
        let min_replica_acks = p.parse(REDIS_MIN_REPLICA_ACKS, "an integer from 0 to 16", |v| {
            v.parse::<u32>().ok().filter(|n| *n <= 16)
        });
        let replica_ack_timeout = p.duration(REDIS_REPLICA_ACK_TIMEOUT);
        let username = p.optional(REDIS_USERNAME);
        let password = p.optional(REDIS_PASSWORD).map(SecretString::from);
        let db = p.parse(REDIS_DB, "an integer from 0 to 15", |v| {
            v.parse::<i64>().ok().filter(|d| (0..=15).contains(d))
        });
        let tls_enabled = p.bool(REDIS_TLS_ENABLED);
        let tls_ca_file = p.optional(REDIS_TLS_CA_FILE).map(PathBuf::from);
        let key_prefix = p.prefix(REDIS_KEY_PREFIX);
        let pool_size = p.parse(REDIS_POOL_SIZE, "an integer from 1 to 1024", |v| {
            v.parse::<u32>().ok().filter(|n| (1..=1024).contains(n))
        });
        let connect_timeout = p.duration(REDIS_CONNECT_TIMEOUT);
        let command_timeout = p.duration(REDIS_COMMAND_TIMEOUT);
        let script_loading = p.parse(REDIS_SCRIPT_LOADING, "`auto` or `preloaded`", |v| match v {
            "auto" => Some(ScriptLoading::Auto),
            "preloaded" => Some(ScriptLoading::Preloaded),
            _ => None,
        });

        let session_key_prefix = p.prefix(GATEWAY_SESSION_KEY_PREFIX);
        let events_stream = p.prefix(GATEWAY_SESSION_EVENTS_STREAM);
        let events_maxlen = p.parse(
            GATEWAY_SESSION_EVENTS_MAXLEN,
            "an integer from 1000 to 1000000000",
            |v| {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| (1000..=MAX_EVENTS_MAXLEN).contains(n))
            },
        );
        let event_format = p.parse(
            GATEWAY_EVENT_FORMAT,
            "`snapshot` or `compact`",
            |v| match v {
                "snapshot" => Some(EventFormat::Snapshot),
                "compact" => Some(EventFormat::Compact),
                _ => None,
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
            "`:port`, `host:port` or `[v6]:port`",
            parse_listen_addr,
        );
        let internal_addr = p.parse(
            INTERNAL_HTTP_ADDR,
            "`:port`, `host:port` or `[v6]:port`",
            parse_listen_addr,
        );
        let internal_token = p.optional(INTERNAL_HTTP_TOKEN).map(SecretString::from);
        let allow_unauthenticated = p.bool(INTERNAL_HTTP_ALLOW_UNAUTHENTICATED);
        let allow_unknown = p.bool(ALLOW_UNKNOWN_VARIABLES);
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
        let http_header_read_timeout = p.duration(HTTP_HEADER_READ_TIMEOUT);
        let http_idle_timeout = p.duration(HTTP_IDLE_TIMEOUT);
        let http_max_connections =
            p.parse(HTTP_MAX_CONNECTIONS, "an integer from 1 to 1000000", |v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1_000_000).contains(n))
            });
        let http_max_connections_per_client =
            p.integer(HTTP_MAX_CONNECTIONS_PER_CLIENT, 1usize, 1_000_000);
        let http_max_requests_per_client =
            p.integer(HTTP_MAX_REQUESTS_PER_CLIENT, 1usize, 1_000_000);
        let http_body_read_timeout = p.duration(HTTP_BODY_READ_TIMEOUT);
        let http_body_buffer_bytes = p.integer(HTTP_BODY_BUFFER_BYTES, 65_536usize, 4_294_967_295);
        let shutdown_timeout = p.duration(SHUTDOWN_TIMEOUT);

        let policy = PartialPolicy {
            challenge_ttl: p.redis_duration(CHALLENGE_TTL),
            challenge_max_attempts: p.bounded(CHALLENGE_MAX_ATTEMPTS, MAX_ATTEMPTS_CEILING),
            confirm_failure_budget: p.bounded(CONFIRM_FAILURE_BUDGET, FAILURE_BUDGET_CEILING),
            confirm_failure_window: p.redis_duration(CONFIRM_FAILURE_WINDOW),
            expired_challenge_retention: p.redis_duration(EXPIRED_CHALLENGE_RETENTION),
            confirm_idempotency_window: p.redis_duration(CONFIRM_IDEMPOTENCY_WINDOW),
            resend_cooldown: p.redis_duration(RESEND_COOLDOWN),
            revoked_session_retention: p.redis_duration(REVOKED_SESSION_RETENTION),
            max_active_sessions_per_user: p
                .bounded(MAX_ACTIVE_SESSIONS_PER_USER, MAX_ACTIVE_SESSIONS_CEILING),
            config_refresh_interval: p.duration(CONFIG_REFRESH_INTERVAL),
            block_marker_ttl: p.redis_duration(BLOCK_MARKER_TTL),
            send_rate_per_ip: p.rate_limit(SEND_RATE_LIMIT_PER_IP),
            confirm_rate_per_ip: p.rate_limit(CONFIRM_RATE_LIMIT_PER_IP),
            send_rate_global: p.rate_limit(SEND_RATE_LIMIT_GLOBAL),
        };
        let trusted_proxies = p.parse(
            TRUSTED_PROXIES,
            "a comma list of CIDRs such as `10.0.0.0/8,192.168.1.7/32`",
            |v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| c.parse::<ipnet::IpNet>().ok())
                    .collect::<Option<Vec<_>>>()
            },
        );
        let ipv6_prefix = p.integer(RATE_LIMIT_IPV6_PREFIX, 16u8, 128);
        let code_hash_key = p.secret_key(CODE_HASH_KEY);
        let code_hash_key_previous = p.secret_key(CODE_HASH_KEY_PREVIOUS);

        let log_format = p.parse(LOG_FORMAT, "`json` or `text`", |v| match v {
            "json" => Some(LogFormat::Json),
            "text" => Some(LogFormat::Text),
            _ => None,
        });
        let log_level = p.parse(
            LOG_LEVEL,
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
        if let (Some(ack), Some(command)) = (replica_ack_timeout, command_timeout) {
            // The command timeout bounds the script and its WAIT together.
            if ack >= command {
                p.problem(
                    REDIS_REPLICA_ACK_TIMEOUT,
                    p.env.get(REDIS_REPLICA_ACK_TIMEOUT),
                    "a duration shorter than AUTHSESSION_REDIS_COMMAND_TIMEOUT",
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
        let partitioned = partitions.is_some_and(|n| n > 1);
        if partitioned && mode.is_some_and(|m| m != RedisMode::Cluster) {
            p.problem(
                REDIS_PARTITIONS,
                p.env.get(REDIS_PARTITIONS),
                "1 unless AUTHSESSION_REDIS_MODE=cluster (partitions spread keys over cluster slots)",
            );
        }
        if let (Some(RedisMode::Cluster), Some(k), Some(g), Some(s)) =
            (mode, &key_prefix, &session_key_prefix, &events_stream)
        {
            if partitioned {
                // The service adds a partition tag to every key; a tag of the operator's would
                // win (Redis hashes the first one) and put every partition in one slot.
                for (name, value) in [
                    (REDIS_KEY_PREFIX, k),
                    (GATEWAY_SESSION_KEY_PREFIX, g),
                    (GATEWAY_SESSION_EVENTS_STREAM, s),
                ] {
                    if value.contains(['{', '}']) {
                        p.problem(
                            name,
                            Some(value.clone()),
                            "no `{` or `}` when AUTHSESSION_REDIS_PARTITIONS > 1: the service adds \
                             a partition tag to every key, and a tag in the prefix would put every \
                             partition in one slot",
                        );
                    }
                }
            } else if !share_one_hash_tag(&[k, g, s]) {
                p.problem(
                    REDIS_KEY_PREFIX,
                    Some(k.clone()),
                    &hash_tag_expectation(k, g, s),
                );
            }
        }

        let rest = [USER_SERVICE_MODE, MAIL_SERVICE_MODE]
            .iter()
            .any(|mode| p.env.get(mode).is_some_and(|v| v.trim() == "rest"));
        // With both dependencies stubbed (a trial run, a laptop), the internal surface may run
        // without a token: then it listens on loopback unless told where, rather than on every
        // interface by the default `:8081`.
        let internal_addr = match internal_addr {
            Some(addr)
                if !rest && internal_token.is_none() && p.env.get(INTERNAL_HTTP_ADDR).is_none() =>
            {
                Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()))
            }
            other => other,
        };
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
                sentinel,
                min_replica_acks: min_replica_acks.unwrap(),
                replica_ack_timeout: replica_ack_timeout.unwrap(),
                username,
                password,
                db: db.unwrap(),
                tls_enabled: tls_enabled.unwrap(),
                tls_ca_file,
                key_prefix: key_prefix.unwrap(),
                partitions: partitions.unwrap(),
                pool_size: pool_size.unwrap(),
                connect_timeout: connect_timeout.unwrap(),
                command_timeout: command_timeout.unwrap(),
                script_loading: script_loading.unwrap(),
            },
            gateway: GatewayConfig {
                session_key_prefix: session_key_prefix.unwrap(),
                events_stream: events_stream.unwrap(),
                events_maxlen: events_maxlen.unwrap(),
                event_format: event_format.unwrap(),
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
            http_max_connections_per_client: http_max_connections_per_client.unwrap(),
            http_max_requests_per_client: http_max_requests_per_client.unwrap(),
            http_body_read_timeout: http_body_read_timeout.unwrap(),
            http_body_buffer_bytes: http_body_buffer_bytes.unwrap(),
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
            rate_limit_ipv6_prefix: ipv6_prefix.unwrap(),
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
