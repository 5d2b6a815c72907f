//! `Config::from_source`: each section read (every variable parsed or defaulted, in the order of
//! the configuration table), then the rules that tie variables of several sections together;
//! every problem is collected before any is reported, and the typed values are built only when
//! there is none.

use super::parse::Parser;
use super::secret_files::WithSecretFiles;
use super::sections::{GatewaySection, HttpSection, RedisSection, ServicesSection};
use super::*;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&ProcessEnv)
    }

    /// The configuration as the reference gateway consumer reads it: the service's Redis, names
    /// and HTTP limits, without what only the service uses (its user and mail services and the
    /// secrets that come with them: the code-hash key, the internal token), so the gateway starts
    /// without the service's secrets in its environment.
    pub fn for_gateway() -> Result<Self, ConfigError> {
        Self::from_source(&GatewayEnv(&ProcessEnv))
    }

    pub fn from_source(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        // Secrets named by `<NAME>_FILE` are read first; every section then sees them as values.
        let mut first = Parser {
            env,
            problems: Vec::new(),
        };
        let env = WithSecretFiles::read(env, &mut first);
        let mut p = Parser {
            env: &env,
            problems: first.problems,
        };
        let redis = RedisSection::read(&mut p);
        let gateway = GatewaySection::read(&mut p);
        let services = ServicesSection::read(&mut p);
        let mut http = HttpSection::read(&mut p);
        let policy = PolicySection::read(&mut p);
        let telemetry = TelemetrySection::read(&mut p);

        redis.check(&mut p);
        http.check_addresses(&mut p);
        check_names(&mut p, &redis, &gateway);
        let rest = ServicesSection::rest(&p);
        http.settle_internal(&mut p, rest);
        if http.allow_unknown == Some(false) {
            check_unknown_variables(&mut p);
        }
        policy.check_keys(&mut p, rest);

        if !p.problems.is_empty() {
            return Err(ConfigError(p.problems));
        }
        assemble(redis, gateway, services, http, policy, telemetry).ok_or_else(|| {
            // Every parser that yields nothing records why; this is a parser that did not.
            ConfigError(vec![Problem {
                variable: "AUTHSESSION_*",
                value: None,
                expected: "a value for every variable (a parser refused one without saying why)"
                    .into(),
            }])
        })
    }
}

/// The typed configuration from sections that recorded no problem.
fn assemble(
    redis: RedisSection,
    gateway: GatewaySection,
    services: ServicesSection,
    http: HttpSection,
    policy: PolicySection,
    telemetry: TelemetrySection,
) -> Option<Config> {
    let (user_service, mail_service, stub_blocked_emails) = services.finish()?;
    let http = http.finish()?;
    Some(Config {
        redis: redis.finish()?,
        gateway: gateway.finish()?,
        user_service,
        mail_service,
        stub_blocked_emails,
        public_addr: http.public_addr,
        internal_addr: http.internal_addr,
        internal_token: http.internal_token,
        internal_allow_unauthenticated: http.allow_unauthenticated,
        code_hash_key: policy.code_hash_key,
        code_hash_key_previous: policy.code_hash_key_previous,
        http_header_read_timeout: http.header_read_timeout,
        http_idle_timeout: http.idle_timeout,
        http_max_connections: http.max_connections,
        http_max_connections_per_client: http.max_connections_per_client,
        http_max_requests_per_client: http.max_requests_per_client,
        http_body_read_timeout: http.body_read_timeout,
        http_body_buffer_bytes: http.body_buffer_bytes,
        shutdown_timeout: http.shutdown_timeout,
        trusted_proxies: policy.trusted_proxies?,
        rate_limit_ipv6_prefix: policy.ipv6_prefix?,
        rate_limit_nat64_prefixes: policy.nat64_prefixes?,
        policy: policy.policy.finish()?,
        log_format: telemetry.log_format?,
        log_level: telemetry.log_level?,
    })
}

/// The names in cluster mode: partitions only there, and either one hash tag shared by the three
/// names (single-tag layout) or none in any of them (the partitioned layout adds its own).
fn check_names(p: &mut Parser, redis: &RedisSection, gateway: &GatewaySection) {
    let partitioned = redis.partitions.is_some_and(|n| n > 1);
    if partitioned && redis.mode.is_some_and(|m| m != RedisMode::Cluster) {
        p.problem(
            REDIS_PARTITIONS,
            p.env.get(REDIS_PARTITIONS),
            "1 unless AUTHSESSION_REDIS_MODE=cluster (partitions spread keys over cluster slots)",
        );
    }
    let (Some(RedisMode::Cluster), Some(k), Some(g), Some(s)) = (
        redis.mode,
        &redis.key_prefix,
        &gateway.session_key_prefix,
        &gateway.events_stream,
    ) else {
        return;
    };
    if partitioned {
        // The service adds a partition tag to every key; a tag of the operator's would win
        // (Redis hashes the first one) and put every partition in one slot.
        for (name, value) in [
            (REDIS_KEY_PREFIX, k),
            (GATEWAY_SESSION_KEY_PREFIX, g),
            (GATEWAY_SESSION_EVENTS_STREAM, s),
        ] {
            if value.contains(['{', '}']) {
                p.problem(
                    name,
                    Some(value.clone()),
                    "no `{` or `}` when AUTHSESSION_REDIS_PARTITIONS > 1: the service adds a \
                     partition tag to every key, and a tag in the prefix would put every \
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

/// Every `AUTHSESSION_*` variable the service does not know is a problem (a typo would silently
/// leave its default in force), naming the nearest known one.
fn check_unknown_variables(p: &mut Parser) {
    for (name, nearest) in known::unknown_variables(p.env) {
        let expected = match nearest {
            Some(near) => format!(
                "a variable authsession knows (did you mean {near}?), or \
                 AUTHSESSION_ALLOW_UNKNOWN_VARIABLES=true"
            ),
            None => {
                "a variable authsession knows, or AUTHSESSION_ALLOW_UNKNOWN_VARIABLES=true".into()
            }
        };
        p.problems.push(Problem {
            variable: "AUTHSESSION_*",
            value: Some(name),
            expected,
        });
    }
}

/// The login policy, who may speak for clients, and the code-hash keys.
struct PolicySection {
    policy: PartialPolicy,
    trusted_proxies: Option<Vec<ipnet::IpNet>>,
    ipv6_prefix: Option<u8>,
    nat64_prefixes: Option<Vec<ipnet::Ipv6Net>>,
    code_hash_key: Option<CodeHashKey>,
    code_hash_key_previous: Option<CodeHashKey>,
}

impl PolicySection {
    fn read(p: &mut Parser) -> Self {
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
        Self {
            policy,
            trusted_proxies,
            ipv6_prefix: p.integer(RATE_LIMIT_IPV6_PREFIX, 16u8, 128),
            nat64_prefixes: p.parse(
                RATE_LIMIT_NAT64_PREFIXES,
                "a comma list of IPv6 prefixes of length 32, 40, 48, 56, 64 or 96 (RFC 6052)",
                |v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(|c| {
                            let net = c.parse::<ipnet::Ipv6Net>().ok()?;
                            // RFC 6052's lengths, the ones with a defined IPv4 embedding.
                            matches!(net.prefix_len(), 32 | 40 | 48 | 56 | 64 | 96)
                                .then(|| net.trunc())
                        })
                        .collect::<Option<Vec<_>>>()
                },
            ),
            code_hash_key: p.secret_key(CODE_HASH_KEY),
            code_hash_key_previous: p.secret_key(CODE_HASH_KEY_PREVIOUS),
        }
    }

    /// A real environment (`rest`) needs its own code-hash key; a previous key needs a current one.
    fn check_keys(&self, p: &mut Parser, rest: bool) {
        if rest && self.code_hash_key.is_none() && p.optional(CODE_HASH_KEY).is_none() {
            p.problem(
                CODE_HASH_KEY,
                None,
                "base64 of at least 32 random bytes when a dependency runs in `rest` mode \
                 (e.g. `openssl rand -base64 32`)",
            );
        }
        if self.code_hash_key_previous.is_some() && p.optional(CODE_HASH_KEY).is_none() {
            p.problem(
                CODE_HASH_KEY,
                None,
                "a current key when AUTHSESSION_CODE_HASH_KEY_PREVIOUS is set",
            );
        }
    }
}

/// Policy as parsed.
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

impl PartialPolicy {
    fn finish(self) -> Option<Policy> {
        Some(Policy {
            challenge_ttl: self.challenge_ttl?,
            challenge_max_attempts: self.challenge_max_attempts?,
            confirm_failure_budget: self.confirm_failure_budget?,
            confirm_failure_window: self.confirm_failure_window?,
            expired_challenge_retention: self.expired_challenge_retention?,
            confirm_idempotency_window: self.confirm_idempotency_window?,
            resend_cooldown: self.resend_cooldown?,
            revoked_session_retention: self.revoked_session_retention?,
            max_active_sessions_per_user: self.max_active_sessions_per_user?,
            config_refresh_interval: self.config_refresh_interval?,
            block_marker_ttl: self.block_marker_ttl?,
            send_rate_per_ip: self.send_rate_per_ip?,
            confirm_rate_per_ip: self.confirm_rate_per_ip?,
            send_rate_global: self.send_rate_global?,
        })
    }
}

/// Logging.
struct TelemetrySection {
    log_format: Option<LogFormat>,
    log_level: Option<String>,
}

impl TelemetrySection {
    fn read(p: &mut Parser) -> Self {
        Self {
            log_format: p.parse(LOG_FORMAT, "`json` or `text`", |v| match v {
                "json" => Some(LogFormat::Json),
                "text" => Some(LogFormat::Text),
                _ => None,
            }),
            log_level: p.parse(
                LOG_LEVEL,
                "a tracing filter such as `info` or `authsession=debug`",
                |v| {
                    tracing_subscriber::EnvFilter::try_new(v)
                        .ok()
                        .map(|_| v.to_owned())
                },
            ),
        }
    }
}

/// An environment seen by the gateway consumer: the service's dependencies and secrets unset.
struct GatewayEnv<'a>(&'a dyn EnvSource);

impl GatewayEnv<'_> {
    fn service_only(name: &str) -> bool {
        [
            CODE_HASH_KEY,
            CODE_HASH_KEY_FILE,
            CODE_HASH_KEY_PREVIOUS,
            CODE_HASH_KEY_PREVIOUS_FILE,
            INTERNAL_HTTP_TOKEN,
            INTERNAL_HTTP_TOKEN_FILE,
        ]
        .contains(&name)
            || name.starts_with("AUTHSESSION_USER_SERVICE_")
            || name.starts_with("AUTHSESSION_MAIL_SERVICE_")
    }
}

impl EnvSource for GatewayEnv<'_> {
    fn get(&self, name: &str) -> Option<String> {
        if Self::service_only(name) {
            return None;
        }
        self.0.get(name)
    }

    fn names(&self) -> Vec<String> {
        self.0.names()
    }
}
