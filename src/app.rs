//! Startup checks, both listeners, and the shutdown sequence. `main` and the tests build the
//! service the same way: `App::build(config)` binds (port 0 works) and exposes both addresses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clients::{
    self, MailSender, RestMailSender, RestUserDirectory, StubMailSender, StubUserDirectory,
    UserDirectory,
};
use crate::config::{Config, ScriptLoading, ServiceMode};
use crate::domain::CodeHasher;
use crate::flows::pacing::SendPacing;
use crate::flows::Context;
use crate::http::server::ConnectionLimits;
use crate::store::{self, config_provider::ConfigProvider, scripts::scripts, Redis, Store};

/// The component the connection itself and the script-call check are reported under.
pub const CHALLENGE_STORE: &str = "challenge_store";

/// The startup components of the runbook, each checked with a bounded PING.
pub const COMPONENTS: [&str; 5] = [
    CHALLENGE_STORE,
    "session_store",
    "config_provider",
    "gateway_projection_publisher",
    "resend_throttle_protector",
];

/// Oldest Redis with script shebangs and `flags=no-writes`.
const MIN_REDIS_MAJOR: u32 = 7;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{component}: redis at {address}: {source}")]
    Redis {
        component: &'static str,
        address: String,
        #[source]
        source: store::Error,
    },
    #[error("redis at {address} runs version {version}; authsession needs Redis {MIN_REDIS_MAJOR}.0 or newer")]
    RedisVersion { address: String, version: String },
    #[error(
        "redis at {address} lacks script(s) {missing} and AUTHSESSION_REDIS_SCRIPT_LOADING=preloaded; \
         load them with `authsession scripts export <dir>` + SCRIPT LOAD"
    )]
    ScriptsMissing { address: String, missing: String },
    #[error("{listener} HTTP listener: cannot bind {addr}: {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub struct App {
    public: TcpListener,
    internal: TcpListener,
    public_addr: SocketAddr,
    internal_addr: SocketAddr,
    ctx: Context,
    internal_token: Option<secrecy::SecretString>,
    connection_limits: ConnectionLimits,
    /// Peers whose `X-Forwarded-For` names the client (`AUTHSESSION_TRUSTED_PROXIES`).
    trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    body_budget: crate::http::extract::BodyBudget,
    shutdown_timeout: Duration,
}

impl App {
    /// Connects and checks Redis, builds the clients, binds both listeners. Nothing is served
    /// until [`App::run_until_stopped`].
    pub async fn build(config: Config) -> Result<App, StartupError> {
        raise_open_files_limit(&config);
        let connection_limits = connection_limits(&config);
        let redis = Redis::new(&config.redis).map_err(|source| StartupError::Redis {
            component: CHALLENGE_STORE,
            address: config.redis.addrs.join(","),
            source,
        })?;
        check_redis(&redis, &config).await?;

        let store = Store::new(
            redis.clone(),
            &config.redis,
            &config.gateway,
            &config.policy,
        );
        store
            .probe_scripts()
            .await
            .map_err(|source| StartupError::Redis {
                component: CHALLENGE_STORE,
                address: config.redis.addrs.join(","),
                source,
            })?;
        tracing::info!(
            component = CHALLENGE_STORE,
            "startup check passed: script call (EVALSHA and key permissions)"
        );
        let limits = ConfigProvider::new(redis, &store.keys, &config.policy);
        let (users, mail) = dependencies(&config);
        if config.internal_token.is_none() && !config.internal_addr.ip().is_loopback() {
            tracing::warn!(
                addr = %config.internal_addr,
                opt_out = config.internal_allow_unauthenticated,
                "the internal HTTP surface is unauthenticated: anyone who reaches it can list and revoke sessions and block users; set AUTHSESSION_INTERNAL_HTTP_TOKEN"
            );
        }
        let codes = code_hasher(&config);

        let bind = |listener: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartupError::Bind {
                    listener,
                    addr,
                    source,
                })
        };
        let public = bind("public", config.public_addr).await?;
        let internal = bind("internal", config.internal_addr).await?;
        Ok(App {
            public_addr: public.local_addr().expect("bound socket has an address"),
            internal_addr: internal.local_addr().expect("bound socket has an address"),
            public,
            internal,
            ctx: Context {
                store,
                users,
                mail,
                runtime_config: limits,
                codes,
                block_marker_ttl: config.policy.block_marker_ttl,
                pacing: Arc::new(SendPacing::new(longest_delivery(&config))),
            },
            trusted_proxies: Arc::new(config.trusted_proxies.clone()),
            internal_token: config.internal_token,
            connection_limits,
            body_budget: crate::http::extract::BodyBudget::new(
                config.http_body_buffer_bytes,
                config.http_body_read_timeout,
            ),
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public_addr
    }

    pub fn internal_addr(&self) -> SocketAddr {
        self.internal_addr
    }

    /// Serves until `shutdown` is cancelled, then drains each listener within the shutdown
    /// budget and closes the Redis pool and HTTP clients. Returns whether every component
    /// stopped within its budget.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> bool {
        let public_router = crate::http::public::router(self.ctx.clone());
        let internal_router =
            crate::http::internal::router(self.ctx.clone(), self.internal_token.clone());
        let limits = self.connection_limits;
        let trusted = self.trusted_proxies.clone();
        // One body budget for both listeners: it bounds the process's memory.
        let bodies = self.body_budget.clone();
        let serve =
            |name: &'static str, listener: TcpListener, addr: SocketAddr, router: axum::Router| {
                let stop = shutdown.clone();
                tracing::info!(address = %addr, "{name} HTTP listener started");
                let shares = crate::http::server::Shares::new(limits, trusted.clone());
                tokio::spawn(crate::http::server::serve(
                    name,
                    listener,
                    router,
                    limits,
                    shares,
                    bodies.clone(),
                    stop,
                ))
            };
        let public = serve("public", self.public, self.public_addr, public_router);
        let internal = serve(
            "internal",
            self.internal,
            self.internal_addr,
            internal_router,
        );

        shutdown.cancelled().await;
        tracing::info!(budget = ?self.shutdown_timeout, "shutdown requested: draining in-flight requests");
        let budget = self.shutdown_timeout;
        let (public_ok, internal_ok) = tokio::join!(
            drain("public", public, budget),
            drain("internal", internal, budget)
        );

        // Every handler has finished (or was abandoned): release the pool and the HTTP clients.
        // Connections a detached task still holds close when it ends.
        drop(self.ctx);
        tracing::info!("redis pool and HTTP clients released");
        public_ok && internal_ok
    }
}

/// The user directory and the mail sender the configuration names (stubs warn at startup).
fn dependencies(config: &Config) -> (Arc<dyn UserDirectory>, Arc<dyn MailSender>) {
    let http = clients::http_client();
    let users: Arc<dyn UserDirectory> = match &config.user_service {
        ServiceMode::Stub => {
            tracing::warn!("user service in STUB mode: in-memory directory, for development and isolated testing only");
            Arc::new(StubUserDirectory::new(&config.stub_blocked_emails))
        }
        ServiceMode::Rest(target) => Arc::new(RestUserDirectory::new(http.clone(), target.clone())),
    };
    let mail: Arc<dyn MailSender> = match &config.mail_service {
        ServiceMode::Stub => {
            tracing::warn!(
                "mail service in STUB mode: codes are logged, not mailed; for development only"
            );
            Arc::new(StubMailSender)
        }
        ServiceMode::Rest(target) => Arc::new(RestMailSender::new(http, target.clone())),
    };
    (users, mail)
}

/// The code hasher under the configured key (and the previous one during a rotation).
fn code_hasher(config: &Config) -> CodeHasher {
    match &config.code_hash_key {
        Some(key) => CodeHasher::new(key.clone(), config.code_hash_key_previous.clone()),
        None => {
            // Config refuses a missing key with any `rest` dependency, so this is stub mode.
            tracing::warn!("AUTHSESSION_CODE_HASH_KEY is unset: login codes are hashed with the fixed development key; for development only");
            CodeHasher::development()
        }
    }
}

async fn drain(name: &'static str, task: tokio::task::JoinHandle<()>, budget: Duration) -> bool {
    let abort = task.abort_handle();
    match tokio::time::timeout(budget, task).await {
        Ok(Ok(())) => {
            tracing::info!("{name} HTTP listener stopped");
            true
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "{name} HTTP listener task failed");
            false
        }
        Err(_) => {
            abort.abort();
            tracing::error!(budget = ?budget, "{name} HTTP listener did not drain within its budget; connections dropped");
            false
        }
    }
}

/// Bounded PING per component, the server version, the eviction policy, and in preloaded mode
/// the script cache.
async fn check_redis(redis: &Redis, config: &Config) -> Result<(), StartupError> {
    let address = redis.address().to_owned();
    let limit = config.redis.connect_timeout;
    for component in COMPONENTS {
        redis
            .ping(limit)
            .await
            .map_err(|source| StartupError::Redis {
                component,
                address: address.clone(),
                source,
            })?;
        tracing::info!(component, address = %address, "startup check passed: PING");
    }

    match redis.server_info(limit).await {
        Ok(info) => {
            if info.major() < MIN_REDIS_MAJOR {
                return Err(StartupError::RedisVersion {
                    address,
                    version: info.version,
                });
            }
            match info.maxmemory_policy.as_deref() {
                Some("noeviction") => {}
                policy => tracing::warn!(
                    maxmemory_policy = policy.unwrap_or("unknown"),
                    "Redis may evict authsession keys (sessions, throttle windows) under memory pressure: \
                     set maxmemory-policy noeviction"
                ),
            }
        }
        // An ACL may deny INFO; the shebang scripts still refuse to run on a pre-7 server.
        Err(error) => {
            tracing::warn!(%error, "cannot read INFO; skipping the version and eviction-policy checks")
        }
    }

    if config.redis.script_loading == ScriptLoading::Preloaded {
        // Every partition's primary runs every script the layout uses.
        let keys = crate::store::Keys::new(&config.redis, &config.gateway);
        let all: Vec<_> = scripts()
            .all()
            .into_iter()
            .filter(|s| keys.layout().runs(s.name))
            .collect();
        let routes = keys.streams();
        let exists =
            redis
                .scripts_exist(&all, &routes)
                .await
                .map_err(|source| StartupError::Redis {
                    component: "challenge_store",
                    address: address.clone(),
                    source,
                })?;
        let missing: Vec<_> = all
            .iter()
            .zip(exists)
            .filter(|(_, ok)| !ok)
            .map(|(s, _)| format!("{} v{} ({})", s.name, s.version, s.sha1))
            .collect();
        if !missing.is_empty() {
            return Err(StartupError::ScriptsMissing {
                address,
                missing: missing.join(", "),
            });
        }
        tracing::info!(
            scripts = all.len(),
            "startup check passed: every script is preloaded"
        );
    }
    Ok(())
}

/// The longest a delivered send can wait on its dependencies: a user-service read (retried
/// once) plus the mail call. Stubs answer at once; a second bounds their pacing.
fn longest_delivery(config: &Config) -> Duration {
    let timeout = |mode: &ServiceMode| match mode {
        ServiceMode::Stub => Duration::from_millis(500),
        ServiceMode::Rest(target) => target.request_timeout,
    };
    timeout(&config.user_service) * 2 + timeout(&config.mail_service)
}

/// The connection limits `config` sets for every listener (the service's two, and the
/// reference gateway consumer's).
pub fn connection_limits(config: &Config) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: config.http_header_read_timeout,
        idle_timeout: config.http_idle_timeout,
        max_connections: config.http_max_connections,
        max_connections_per_client: config.http_max_connections_per_client,
        max_requests_per_client: config.http_max_requests_per_client,
        ipv6_prefix: config.rate_limit_ipv6_prefix,
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (the default soft limit, often 1024, is far
/// below what two listeners' connection caps need) and warns when even the hard limit cannot
/// hold both caps plus the Redis pool: the caps, not the kernel, should refuse connections.
pub fn raise_open_files_limit(config: &Config) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let limit = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let needed = 2 * config.http_max_connections as u64 + u64::from(config.redis.pool_size) + 64;
    if limit < needed {
        tracing::warn!(
            open_files_limit = limit,
            needed,
            "RLIMIT_NOFILE cannot hold both listeners' AUTHSESSION_HTTP_MAX_CONNECTIONS plus the Redis pool; lower the cap or raise the limit"
        );
    }
}

/// SIGINT or SIGTERM cancels the one shutdown token (the service's, the gateway consumer's).
pub async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "signal received");
    shutdown.cancel();
}
