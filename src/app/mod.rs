//! Startup checks, both listeners, and the shutdown sequence. `main` and the tests build the
//! service the same way: `App::build(config)` binds (port 0 works) and exposes both addresses.
//! The Redis checks before any listener binds are `startup`; the process and connection limits
//! every listener shares are `limits`.

mod limits;
mod startup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clients::{
    self, MailSender, RestMailSender, RestUserDirectory, StubMailSender, StubUserDirectory,
    UserDirectory,
};
use crate::config::{Config, ServiceMode};
use crate::domain::CodeHasher;
use crate::flows::pacing::SendPacing;
use crate::flows::{Context, Services};
use crate::http::server::ConnectionLimits;
use crate::store::{config_provider::ConfigProvider, Redis, Store};

pub use limits::{addressing, connection_limits, raise_open_files_limit};
use startup::check_redis;
pub use startup::{StartupError, CHALLENGE_STORE, COMPONENTS};

pub struct App {
    public: TcpListener,
    internal: TcpListener,
    public_addr: SocketAddr,
    internal_addr: SocketAddr,
    ctx: Context,
    internal_token: Option<secrecy::SecretString>,
    connection_limits: ConnectionLimits,
    /// Who a peer counts as: trusted proxies, the IPv6 prefix, NAT64 prefixes.
    addressing: crate::http::client_ip::Addressing,
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
            ctx: Context::new(Services {
                store,
                users,
                mail,
                runtime_config: limits,
                codes,
                block_marker_ttl: config.policy.block_marker_ttl,
                pacing: Arc::new(SendPacing::new(longest_delivery(&config))),
            }),
            addressing: addressing(&config),
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
        let addressing = self.addressing.clone();
        // One body budget for both listeners: it bounds the process's memory.
        let bodies = self.body_budget.clone();
        let serve =
            |name: &'static str, listener: TcpListener, addr: SocketAddr, router: axum::Router| {
                let stop = shutdown.clone();
                tracing::info!(address = %addr, "{name} HTTP listener started");
                let shares = crate::http::server::Shares::new(limits, addressing.clone());
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

/// The longest a delivered send can wait on its dependencies: a user-service read (retried
/// once) plus the mail call. Stubs answer at once; a second bounds their pacing.
fn longest_delivery(config: &Config) -> Duration {
    let timeout = |mode: &ServiceMode| match mode {
        ServiceMode::Stub => Duration::from_millis(500),
        ServiceMode::Rest(target) => target.request_timeout,
    };
    timeout(&config.user_service) * 2 + timeout(&config.mail_service)
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
