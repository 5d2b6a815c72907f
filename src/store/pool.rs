//! Connections to Redis and the two ways the service talks to it: plain commands and `EVALSHA`
//! with one transparent reload on `NOSCRIPT`.
//!
//! Standalone: bb8 pools multiplexed connections. The manager is our own rather than
//! `bb8-redis`'s because that one PINGs on every checkout (one extra round trip per request) and
//! can neither take a custom CA nor notice a dead connection; here a connection whose command
//! failed at the transport level is marked broken and bb8 replaces it.
//!
//! Cluster: one multiplexed `ClusterConnection` (it already multiplexes, follows MOVED/ASK and
//! reconnects per node), created on first use. Script loads and server checks are routed to the
//! primary that owns the slot of the configured hash tag, never to every node, so one unreachable
//! replica cannot fail requests.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    AsyncConnectionConfig, Client, ErrorKind, FromRedisValue, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, ServerErrorKind, Value,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::OnceCell;

use secrecy::ExposeSecret;
use tracing::Instrument;

use super::scripts::{Script, ScriptCall};
use super::Error;
use crate::config::{RedisConfig, RedisMode, ScriptLoading};
use crate::telemetry::metrics::metrics;

/// A pooled multiplexed connection that remembers a transport failure. Requests run on clones
/// (a multiplexed connection pipelines any number of them), so a checkout lasts only as long as
/// taking the clone, and a failure seen on any clone marks the pooled original broken.
#[derive(Clone)]
pub struct Conn {
    inner: MultiplexedConnection,
    broken: Arc<AtomicBool>,
}

impl Conn {
    /// A transport-level failure leaves the connection unusable: bb8 drops it on return.
    /// Returns true when the connection was lost (as opposed to a timeout or a server error).
    fn note<T>(&self, result: &Result<T, RedisError>) -> bool {
        let Err(e) = result else { return false };
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_unrecoverable_error()
        {
            self.broken.store(true, Ordering::Relaxed);
        }
        !e.is_timeout() && (e.is_io_error() || e.is_connection_dropped())
    }
}

pub struct Manager {
    client: Client,
    config: AsyncConnectionConfig,
}

impl bb8::ManageConnection for Manager {
    type Connection = Conn;
    type Error = RedisError;

    async fn connect(&self) -> Result<Conn, RedisError> {
        let inner = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        Ok(Conn {
            inner,
            broken: Arc::default(),
        })
    }

    async fn is_valid(&self, conn: &mut Conn) -> Result<(), RedisError> {
        redis::cmd("PING").query_async::<()>(&mut conn.inner).await
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken.load(Ordering::Relaxed)
    }
}

/// Requests sent to Redis by this process (commands, pipelines, script loads): what the
/// benchmarks report as round trips per flow.
static ROUND_TRIPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Round trips to Redis since the process started.
pub fn round_trips() -> u64 {
    ROUND_TRIPS.load(std::sync::atomic::Ordering::Relaxed)
}

fn count_round_trip() {
    ROUND_TRIPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// What one round trip sends.
enum Request<'a> {
    Cmd(&'a redis::Cmd),
    Pipe(&'a redis::Pipeline),
}

impl Request<'_> {
    async fn send(
        &self,
        conn: &mut (impl redis::aio::ConnectionLike + Send),
    ) -> Result<Value, RedisError> {
        count_round_trip();
        match self {
            Request::Cmd(cmd) => cmd.query_async(conn).await,
            Request::Pipe(pipe) => pipe.query_async(conn).await,
        }
    }
}

/// Where a standalone request gets its connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    /// A clone of a pooled connection (requests).
    Pool,
    /// A new connection, whose failure is reported as it is (startup checks).
    Fresh,
}

fn convert<T: FromRedisValue>(value: Value) -> Result<T, Error> {
    T::from_redis_value(value).map_err(|e| Error::Redis(e.into()))
}

#[derive(Clone)]
enum Backend {
    Standalone(bb8::Pool<Manager>),
    Cluster {
        client: Box<ClusterClient>,
        conn: std::sync::Arc<OnceCell<ClusterConnection>>,
        /// A key in the slot every authsession key lives in (the configured hash tag).
        slot_key: String,
    },
}

/// A cheap, clonable handle on Redis.
#[derive(Clone)]
pub struct Redis {
    backend: Backend,
    command_timeout: Duration,
    script_loading: ScriptLoading,
    /// `host:port` (comma-separated seeds in cluster mode) for log lines; never credentials.
    address: String,
}

fn tls_certs(config: &RedisConfig) -> Result<Option<redis::TlsCertificates>, RedisError> {
    let Some(path) = &config.tls_ca_file else {
        return Ok(None);
    };
    let root_cert = std::fs::read(path).map_err(|e| {
        RedisError::from((
            ErrorKind::InvalidClientConfig,
            "cannot read the TLS CA file",
            e.to_string(),
        ))
    })?;
    Ok(Some(redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    }))
}

impl Redis {
    /// Prepares the connections without connecting: the first command (the startup PING)
    /// connects.
    pub fn new(config: &RedisConfig) -> Result<Self, Error> {
        let scheme = if config.tls_enabled {
            "rediss"
        } else {
            "redis"
        };
        let backend = match config.mode {
            RedisMode::Standalone => Self::standalone(config, scheme)?,
            RedisMode::Cluster => Self::cluster(config, scheme)?,
        };
        Ok(Self {
            backend,
            command_timeout: config.command_timeout,
            script_loading: config.script_loading,
            address: config.addrs.join(","),
        })
    }

    fn standalone(config: &RedisConfig, scheme: &str) -> Result<Backend, Error> {
        let mut settings = RedisConnectionInfo::default().set_db(config.db);
        if let Some(username) = &config.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &config.password {
            settings = settings.set_password(password.expose_secret());
        }
        let info = format!("{scheme}://{}", config.addrs[0])
            .into_connection_info()?
            .set_redis_settings(settings);
        let client = match tls_certs(config)? {
            Some(certs) => Client::build_with_tls(info, certs)?,
            None => Client::open(info)?,
        };
        let manager = Manager {
            client,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.command_timeout)),
        };
        let pool = bb8::Pool::builder()
            .max_size(config.pool_size)
            .connection_timeout(config.command_timeout.max(config.connect_timeout))
            .test_on_check_out(false)
            .retry_connection(false)
            .queue_strategy(bb8::QueueStrategy::Fifo)
            .min_idle(Some(config.pool_size))
            .build_unchecked(manager);
        Ok(Backend::Standalone(pool))
    }

    fn cluster(config: &RedisConfig, scheme: &str) -> Result<Backend, Error> {
        let seeds: Vec<String> = config
            .addrs
            .iter()
            .map(|a| format!("{scheme}://{a}"))
            .collect();
        let mut builder = ClusterClientBuilder::new(seeds)
            .connection_timeout(config.connect_timeout)
            .response_timeout(config.command_timeout)
            // Few, quick retries: the command timeout bounds the whole call anyway.
            .retries(3);
        if let Some(username) = &config.username {
            builder = builder.username(username);
        }
        if let Some(password) = &config.password {
            builder = builder.password(password.expose_secret());
        }
        if let Some(certs) = tls_certs(config)? {
            builder = builder.certs(certs);
        }
        Ok(Backend::Cluster {
            client: Box::new(builder.build()?),
            conn: Default::default(),
            slot_key: config.key_prefix.clone(),
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Runs one command within the command timeout (pool wait included).
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Error> {
        convert(
            self.run(Request::Cmd(cmd), self.command_timeout, Via::Pool)
                .await?,
        )
    }

    /// A startup check: runs `cmd` on a fresh connection (standalone) within `limit`, so a
    /// connection failure (refused, WRONGPASS, TLS) comes back as itself rather than as a pool
    /// timeout.
    pub async fn check<T: FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        limit: Duration,
    ) -> Result<T, Error> {
        convert(self.run(Request::Cmd(cmd), limit, Via::Fresh).await?)
    }

    /// A server-level command (INFO, SCRIPT ...): in cluster mode it goes to the primary owning
    /// the authsession slot, elsewhere to the one server.
    pub async fn query_server<T: FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        limit: Duration,
    ) -> Result<T, Error> {
        let value = match &self.backend {
            Backend::Standalone(_) => self.run(Request::Cmd(cmd), limit, Via::Pool).await?,
            Backend::Cluster { slot_key, .. } => self.route(cmd, slot_key, limit).await?,
        };
        convert(value)
    }

    /// Runs a pipeline as one round trip within the command timeout (cluster: its keys must
    /// share a slot, as all authsession keys do).
    pub async fn query_pipe<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, Error> {
        convert(
            self.run(Request::Pipe(pipe), self.command_timeout, Via::Pool)
                .await?,
        )
    }

    async fn cluster_conn(&self) -> Result<ClusterConnection, Error> {
        let Backend::Cluster { client, conn, .. } = &self.backend else {
            unreachable!("cluster_conn in standalone mode")
        };
        let conn = conn
            .get_or_try_init(|| client.get_async_connection())
            .await?;
        Ok(conn.clone())
    }

    /// Sends `request` within `limit`. Standalone: when a pooled connection turns out dead
    /// (Redis restarted, idle reset), retries once on a fresh one; every request sent here is a
    /// read or a replay-safe script, so that is safe, and other dead pooled connections are
    /// replaced as they surface.
    async fn run(&self, request: Request<'_>, limit: Duration, via: Via) -> Result<Value, Error> {
        let attempt = async {
            let pool = match &self.backend {
                Backend::Standalone(pool) => pool,
                Backend::Cluster { .. } => {
                    let mut conn = self.cluster_conn().await?;
                    return request.send(&mut conn).await.map_err(Error::Redis);
                }
            };
            let mut conn = match via {
                Via::Fresh => pool.dedicated_connection().await?,
                Via::Pool => checkout(pool, limit).await?,
            };
            let result = request.send(&mut conn.inner).await;
            if via == Via::Fresh || !conn.note(&result) {
                return result.map_err(Error::Redis);
            }
            let mut fresh = pool.dedicated_connection().await?;
            request.send(&mut fresh.inner).await.map_err(Error::Redis)
        };
        tokio::time::timeout(limit, attempt)
            .await
            .map_err(|_| Error::Timeout(limit))?
    }

    /// Cluster only: `cmd` on the primary owning `key`'s slot.
    async fn route(&self, cmd: &redis::Cmd, key: &str, limit: Duration) -> Result<Value, Error> {
        let attempt = async {
            let mut conn = self.cluster_conn().await?;
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                Route::with_key(key, SlotAddr::Master),
            ));
            count_round_trip();
            conn.route_command(cmd.clone(), routing)
                .await
                .map_err(Error::Redis)
        };
        tokio::time::timeout(limit, attempt)
            .await
            .map_err(|_| Error::Timeout(limit))?
    }

    /// `EVALSHA`; on `NOSCRIPT` (restart, failover, `SCRIPT FLUSH`, a new cluster node) loads
    /// the script with `SCRIPT LOAD` on the node that answered and retries once, unless scripts
    /// are `preloaded`.
    pub async fn invoke(&self, call: &ScriptCall<'_>) -> Result<Value, Error> {
        let script = call.script();
        let span = tracing::info_span!(
            "script",
            script = script.name,
            version = script.version,
            outcome = tracing::field::Empty,
            noscript_reload = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        let reloaded = AtomicBool::new(false);
        let result = self
            .invoke_once_reloading(call, &reloaded)
            .instrument(span.clone())
            .await;
        let elapsed = started.elapsed();
        // Recorded once, at the end: text logs would print a field recorded twice twice.
        span.record("outcome", if result.is_ok() { "ok" } else { "error" });
        span.record("noscript_reload", reloaded.load(Ordering::Relaxed));
        metrics().script(
            script.name,
            script.version,
            result.is_ok(),
            elapsed,
            script.writes_projection,
        );
        if let Err(error) = &result {
            let _entered = span.enter();
            tracing::warn!(%error, elapsed_ms = elapsed.as_millis() as u64, "script call failed");
        }
        result
    }

    async fn invoke_once_reloading(
        &self,
        call: &ScriptCall<'_>,
        reloaded: &AtomicBool,
    ) -> Result<Value, Error> {
        let script = call.script();
        let evalsha = call.evalsha();
        match self
            .run(Request::Cmd(&evalsha), self.command_timeout, Via::Pool)
            .await
        {
            Err(Error::Redis(e)) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                if self.script_loading == ScriptLoading::Preloaded {
                    return Err(Error::NotPreloaded {
                        script: script.name,
                        version: script.version,
                    });
                }
                reloaded.store(true, Ordering::Relaxed);
                metrics().noscript_reload(script.name);
                tracing::info!("NOSCRIPT: loading script");
                self.load(script, call.first_key()).await?;
                self.run(Request::Cmd(&evalsha), self.command_timeout, Via::Pool)
                    .await
            }
            other => other,
        }
    }

    /// `SCRIPT LOAD` on the node that runs the call (cluster: the primary owning `key`'s slot).
    async fn load(&self, script: &Script, key: Option<&str>) -> Result<(), Error> {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(&script.body);
        let sha: String = match (&self.backend, key) {
            (Backend::Cluster { .. }, Some(key)) => {
                let value = self.route(&cmd, key, self.command_timeout).await?;
                String::from_redis_value(value).map_err(|e| Error::Redis(e.into()))?
            }
            _ => self.query_server(&cmd, self.command_timeout).await?,
        };
        if sha != script.sha1 {
            return Err(Error::Reply {
                script: script.name,
                detail: format!("SCRIPT LOAD returned {sha}"),
            });
        }
        Ok(())
    }

    /// `SCRIPT EXISTS` for each script, in order.
    pub async fn scripts_exist(&self, scripts: &[&Script]) -> Result<Vec<bool>, Error> {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("EXISTS");
        for script in scripts {
            cmd.arg(&script.sha1);
        }
        self.query_server(&cmd, self.command_timeout).await
    }
}

/// A clone of a pooled connection; the pooled one goes back at once (FIFO, so load spreads over
/// every connection).
async fn checkout(pool: &bb8::Pool<Manager>, limit: Duration) -> Result<Conn, Error> {
    let started = std::time::Instant::now();
    let pooled = pool.get().await.map_err(|e| match e {
        bb8::RunError::User(e) => Error::Redis(e),
        bb8::RunError::TimedOut => Error::Timeout(limit),
    })?;
    metrics().pool_wait(started.elapsed());
    Ok(Conn::clone(&pooled))
}
