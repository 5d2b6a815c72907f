//! The configuration's sections as read: `read` parses each variable of a section (recording a
//! problem for every bad one, in the order the variables are read), `finish` builds the section's
//! typed value from them. `Config::from_source` runs the rules that tie variables together in
//! between, and finishes only when no problem was recorded.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use super::parse::{parse_listen_addr, valid_host_port, Parser};
use super::*;
use crate::domain::Email;

pub(super) struct RedisSection {
    pub mode: Option<RedisMode>,
    addrs: Option<Vec<String>>,
    sentinel: Option<SentinelConfig>,
    pub partitions: Option<u32>,
    min_replica_acks: Option<u32>,
    replica_ack_timeout: Option<Duration>,
    username: Option<String>,
    password: Option<SecretString>,
    db: Option<i64>,
    tls_enabled: Option<bool>,
    tls_ca_file: Option<PathBuf>,
    pub key_prefix: Option<String>,
    pool_size: Option<u32>,
    connect_timeout: Option<Duration>,
    command_timeout: Option<Duration>,
    script_loading: Option<ScriptLoading>,
}

impl RedisSection {
    pub fn read(p: &mut Parser) -> Self {
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
        Self {
            mode,
            addrs,
            sentinel: p.sentinel(mode),
            partitions: p.parse(REDIS_PARTITIONS, "an integer from 1 to 1024", |v| {
                v.parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_PARTITIONS).contains(n))
            }),
            min_replica_acks: p.parse(REDIS_MIN_REPLICA_ACKS, "an integer from 0 to 16", |v| {
                v.parse::<u32>().ok().filter(|n| *n <= 16)
            }),
            replica_ack_timeout: p.duration(REDIS_REPLICA_ACK_TIMEOUT),
            username: p.optional(REDIS_USERNAME),
            password: p.optional(REDIS_PASSWORD).map(SecretString::from),
            db: p.parse(REDIS_DB, "an integer from 0 to 15", |v| {
                v.parse::<i64>().ok().filter(|d| (0..=15).contains(d))
            }),
            tls_enabled: p.bool(REDIS_TLS_ENABLED),
            tls_ca_file: p.optional(REDIS_TLS_CA_FILE).map(PathBuf::from),
            key_prefix: p.prefix(REDIS_KEY_PREFIX),
            pool_size: p.parse(REDIS_POOL_SIZE, "an integer from 1 to 1024", |v| {
                v.parse::<u32>().ok().filter(|n| (1..=1024).contains(n))
            }),
            connect_timeout: p.duration(REDIS_CONNECT_TIMEOUT),
            command_timeout: p.duration(REDIS_COMMAND_TIMEOUT),
            script_loading: p.parse(REDIS_SCRIPT_LOADING, "`auto` or `preloaded`", |v| match v {
                "auto" => Some(ScriptLoading::Auto),
                "preloaded" => Some(ScriptLoading::Preloaded),
                _ => None,
            }),
        }
    }

    /// The rules among Redis variables: one database in cluster mode, one address standalone,
    /// the ack timeout inside the command timeout, a password with a user, TLS with its CA file.
    pub fn check(&self, p: &mut Parser) {
        if self.mode == Some(RedisMode::Cluster) && self.db.is_some_and(|db| db != 0) {
            p.problem(
                REDIS_DB,
                self.db.map(|db| db.to_string()),
                "0 in cluster mode (Redis Cluster has one database)",
            );
        }
        if self.mode == Some(RedisMode::Standalone)
            && self.addrs.as_ref().is_some_and(|a| a.len() != 1)
        {
            p.problem(
                REDIS_ADDR,
                p.env.get(REDIS_ADDR),
                "exactly one `host:port` in standalone mode",
            );
        }
        if let (Some(ack), Some(command)) = (self.replica_ack_timeout, self.command_timeout) {
            // The command timeout bounds the script and its WAIT together.
            if ack >= command {
                p.problem(
                    REDIS_REPLICA_ACK_TIMEOUT,
                    p.env.get(REDIS_REPLICA_ACK_TIMEOUT),
                    "a duration shorter than AUTHSESSION_REDIS_COMMAND_TIMEOUT",
                );
            }
        }
        if self.password.is_none() && self.username.is_some() {
            p.problem(
                REDIS_PASSWORD,
                None,
                "a password when AUTHSESSION_REDIS_USERNAME is set",
            );
        }
        if self.tls_ca_file.is_some() && self.tls_enabled == Some(false) {
            p.problem(
                REDIS_TLS_ENABLED,
                Some("false".into()),
                "`true` when AUTHSESSION_REDIS_TLS_CA_FILE is set",
            );
        }
        if let Some(path) = &self.tls_ca_file {
            if !path.is_file() {
                p.problem(
                    REDIS_TLS_CA_FILE,
                    Some(path.display().to_string()),
                    "a readable PEM file",
                );
            }
        }
    }

    pub fn finish(self) -> Option<RedisConfig> {
        Some(RedisConfig {
            addrs: self.addrs?,
            mode: self.mode?,
            sentinel: self.sentinel,
            min_replica_acks: self.min_replica_acks?,
            replica_ack_timeout: self.replica_ack_timeout?,
            username: self.username,
            password: self.password,
            db: self.db?,
            tls_enabled: self.tls_enabled?,
            tls_ca_file: self.tls_ca_file,
            key_prefix: self.key_prefix?,
            partitions: self.partitions?,
            pool_size: self.pool_size?,
            connect_timeout: self.connect_timeout?,
            command_timeout: self.command_timeout?,
            script_loading: self.script_loading?,
        })
    }
}

pub(super) struct GatewaySection {
    pub session_key_prefix: Option<String>,
    pub events_stream: Option<String>,
    events_maxlen: Option<u64>,
    event_format: Option<EventFormat>,
}

impl GatewaySection {
    pub fn read(p: &mut Parser) -> Self {
        Self {
            session_key_prefix: p.prefix(GATEWAY_SESSION_KEY_PREFIX),
            events_stream: p.prefix(GATEWAY_SESSION_EVENTS_STREAM),
            events_maxlen: p.parse(
                GATEWAY_SESSION_EVENTS_MAXLEN,
                "an integer from 1000 to 1000000000",
                |v| {
                    v.parse::<u64>()
                        .ok()
                        .filter(|n| (1000..=MAX_EVENTS_MAXLEN).contains(n))
                },
            ),
            event_format: p.parse(
                GATEWAY_EVENT_FORMAT,
                "`snapshot` or `compact`",
                |v| match v {
                    "snapshot" => Some(EventFormat::Snapshot),
                    "compact" => Some(EventFormat::Compact),
                    _ => None,
                },
            ),
        }
    }

    pub fn finish(self) -> Option<GatewayConfig> {
        Some(GatewayConfig {
            session_key_prefix: self.session_key_prefix?,
            events_stream: self.events_stream?,
            events_maxlen: self.events_maxlen?,
            event_format: self.event_format?,
        })
    }
}

pub(super) struct ServicesSection {
    user_service: Option<ServiceMode>,
    mail_service: Option<ServiceMode>,
    stub_blocked_emails: Vec<String>,
}

impl ServicesSection {
    pub fn read(p: &mut Parser) -> Self {
        Self {
            user_service: p.service(
                USER_SERVICE_MODE,
                USER_SERVICE_BASE_URL,
                USER_SERVICE_REQUEST_TIMEOUT,
            ),
            mail_service: p.service(
                MAIL_SERVICE_MODE,
                MAIL_SERVICE_BASE_URL,
                MAIL_SERVICE_REQUEST_TIMEOUT,
            ),
            stub_blocked_emails: p
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
                .unwrap_or_default(),
        }
    }

    /// Whether a dependency is asked to run in `rest` mode (a real environment), read from the
    /// variables themselves so that it holds even when their other settings are wrong.
    pub fn rest(p: &Parser) -> bool {
        [USER_SERVICE_MODE, MAIL_SERVICE_MODE]
            .iter()
            .any(|mode| p.env.get(mode).is_some_and(|v| v.trim() == "rest"))
    }

    /// (user service, mail service, stub-blocked addresses).
    pub fn finish(self) -> Option<(ServiceMode, ServiceMode, Vec<String>)> {
        Some((
            self.user_service?,
            self.mail_service?,
            self.stub_blocked_emails,
        ))
    }
}

pub(super) struct HttpSection {
    pub public_addr: Option<SocketAddr>,
    pub internal_addr: Option<SocketAddr>,
    pub internal_token: Option<SecretString>,
    allow_unauthenticated: Option<bool>,
    pub allow_unknown: Option<bool>,
    header_read_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    max_connections: Option<usize>,
    max_connections_per_client: Option<usize>,
    max_requests_per_client: Option<usize>,
    body_read_timeout: Option<Duration>,
    body_buffer_bytes: Option<usize>,
    shutdown_timeout: Option<Duration>,
}

/// The HTTP section's typed values (the `Config` fields of the listeners).
pub(super) struct Http {
    pub public_addr: SocketAddr,
    pub internal_addr: SocketAddr,
    pub internal_token: Option<SecretString>,
    pub allow_unauthenticated: bool,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub max_requests_per_client: usize,
    pub body_read_timeout: Duration,
    pub body_buffer_bytes: usize,
    pub shutdown_timeout: Duration,
}

impl HttpSection {
    pub fn read(p: &mut Parser) -> Self {
        let listen = "`:port`, `host:port` or `[v6]:port`";
        let public_addr = p.parse(PUBLIC_HTTP_ADDR, listen, parse_listen_addr);
        let internal_addr = p.parse(INTERNAL_HTTP_ADDR, listen, parse_listen_addr);
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
        Self {
            public_addr,
            internal_addr,
            internal_token,
            allow_unauthenticated,
            allow_unknown,
            header_read_timeout: p.duration(HTTP_HEADER_READ_TIMEOUT),
            idle_timeout: p.duration(HTTP_IDLE_TIMEOUT),
            max_connections: p.integer(HTTP_MAX_CONNECTIONS, 1usize, 1_000_000),
            max_connections_per_client: p.integer(
                HTTP_MAX_CONNECTIONS_PER_CLIENT,
                1usize,
                1_000_000,
            ),
            max_requests_per_client: p.integer(HTTP_MAX_REQUESTS_PER_CLIENT, 1usize, 1_000_000),
            body_read_timeout: p.duration(HTTP_BODY_READ_TIMEOUT),
            body_buffer_bytes: p.integer(HTTP_BODY_BUFFER_BYTES, 65_536usize, 4_294_967_295),
            shutdown_timeout: p.duration(SHUTDOWN_TIMEOUT),
        }
    }

    /// The two listeners need two addresses.
    pub fn check_addresses(&self, p: &mut Parser) {
        if let (Some(public), Some(internal)) = (self.public_addr, self.internal_addr) {
            if public == internal && public.port() != 0 {
                p.problem(
                    INTERNAL_HTTP_ADDR,
                    Some(internal.to_string()),
                    "an address other than the public listener's",
                );
            }
        }
    }

    /// Where the internal surface listens, and whether it may run open. With both dependencies
    /// stubbed (a trial run, a laptop) it may run without a token: then it listens on loopback
    /// unless told where, rather than on every interface by the default `:8081`. An internal
    /// surface anyone on the network can reach, with no token, in a real environment (`rest`),
    /// is a mistake unless the operator says otherwise.
    pub fn settle_internal(&mut self, p: &mut Parser, rest: bool) {
        if let Some(addr) = self.internal_addr {
            if !rest && self.internal_token.is_none() && p.env.get(INTERNAL_HTTP_ADDR).is_none() {
                self.internal_addr = Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()));
            }
        }
        let exposed = self.internal_addr.is_some_and(|a| !a.ip().is_loopback());
        if rest
            && exposed
            && self.internal_token.is_none()
            && self.allow_unauthenticated == Some(false)
        {
            p.problem(
                INTERNAL_HTTP_TOKEN,
                None,
                "a bearer token (>= 16 characters) when the internal listener is not loopback and \
                 a dependency runs in `rest` mode; or AUTHSESSION_INTERNAL_HTTP_ALLOW_UNAUTHENTICATED=true \
                 if a network boundary protects it",
            );
        }
    }

    pub fn finish(self) -> Option<Http> {
        Some(Http {
            public_addr: self.public_addr?,
            internal_addr: self.internal_addr?,
            internal_token: self.internal_token,
            allow_unauthenticated: self.allow_unauthenticated?,
            header_read_timeout: self.header_read_timeout?,
            idle_timeout: self.idle_timeout?,
            max_connections: self.max_connections?,
            max_connections_per_client: self.max_connections_per_client?,
            max_requests_per_client: self.max_requests_per_client?,
            body_read_timeout: self.body_read_timeout?,
            body_buffer_bytes: self.body_buffer_bytes?,
            shutdown_timeout: self.shutdown_timeout?,
        })
    }
}
