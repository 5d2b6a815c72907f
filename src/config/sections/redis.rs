//! The Redis section: mode, addresses, credentials, TLS, the pool, the layout's names.

use super::*;

pub(in crate::config) struct RedisSection {
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
