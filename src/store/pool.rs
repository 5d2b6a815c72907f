//! `Redis`: a cheap handle on the data store, standalone (a bb8 pool of multiplexed
//! connections, see `connection`) or cluster (one multiplexed `ClusterConnection`, which already
//! multiplexes, follows MOVED/ASK and reconnects per node; created on first use). Plain commands
//! and pipelines run here within the command timeout; scripts run through `engine`.
//!
//! Script loads and server checks in cluster mode are routed to one primary (the one serving the
//! key they concern, or the slot of the configured hash tag in the single-tag layout; each
//! partition's primary in the partitioned one), never to every node, so one unreachable replica
//! cannot fail requests.

use std::sync::Arc;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{
    AsyncConnectionConfig, Client, FromRedisValue, IntoConnectionInfo, RedisConnectionInfo,
    RedisError, Value,
};

use tokio::sync::OnceCell;

use secrecy::ExposeSecret;

use super::connection::{checkout, tls_certs, Manager, SentinelTarget, Target};
use super::Error;
use crate::config::{RedisConfig, RedisMode, ScriptLoading};

/// What one round trip sends.
pub(super) enum Request<'a> {
    Cmd(&'a redis::Cmd),
    Pipe(&'a redis::Pipeline),
}

impl Request<'_> {
    pub(super) async fn send(
        &self,
        conn: &mut (impl redis::aio::ConnectionLike + Send),
    ) -> Result<Value, RedisError> {
        match self {
            Request::Cmd(cmd) => cmd.query_async(conn).await,
            Request::Pipe(pipe) => pipe.query_async(conn).await,
        }
    }
}

/// Where a standalone request gets its connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    /// A clone of a pooled connection (requests).
    Pool,
    /// A new connection, whose failure is reported as it is (startup checks).
    Fresh,
}

pub(super) fn convert<T: FromRedisValue>(value: Value) -> Result<T, Error> {
    T::from_redis_value(value).map_err(|e| Error::Redis(e.into()))
}

#[derive(Clone)]
pub(super) enum Backend {
    /// One server, or whichever primary the Sentinels name.
    Standalone {
        pool: bb8::Pool<Manager>,
        target: Arc<Target>,
    },
    Cluster {
        client: Box<ClusterClient>,
        conn: std::sync::Arc<OnceCell<ClusterConnection>>,
        /// A key whose slot server-wide checks are routed to: the configured hash tag's (every
        /// key's, in the single-tag layout; in the partitioned one, just a primary to ask).
        slot_key: String,
    },
}

/// A connection outside the pool ([`Redis::dedicated`]); clones share it. It is a connection
/// like any other, whichever the deployment: callers never match on it.
#[derive(Clone)]
pub enum Dedicated {
    Single(redis::aio::MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Dedicated {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Dedicated::Single(conn) => conn.req_packed_command(cmd),
            Dedicated::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Dedicated::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Dedicated::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Dedicated::Single(conn) => conn.get_db(),
            Dedicated::Cluster(conn) => conn.get_db(),
        }
    }
}

/// A cheap, clonable handle on Redis.
#[derive(Clone)]
pub struct Redis {
    pub(super) backend: Backend,
    pub(super) command_timeout: Duration,
    pub(super) script_loading: ScriptLoading,
    /// `WAIT` after every write script when above 0.
    pub(super) min_replica_acks: u32,
    pub(super) replica_ack_timeout: Duration,
    /// `host:port` (comma-separated seeds in cluster mode) for log lines; never credentials.
    address: String,
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
            RedisMode::Standalone | RedisMode::Sentinel => Self::standalone(config, scheme)?,
            RedisMode::Cluster => Self::cluster(config, scheme)?,
        };
        Ok(Self {
            backend,
            command_timeout: config.command_timeout,
            script_loading: config.script_loading,
            min_replica_acks: config.min_replica_acks,
            replica_ack_timeout: config.replica_ack_timeout,
            address: match &config.sentinel {
                Some(sentinel) => format!(
                    "{} via Sentinels {}",
                    sentinel.master,
                    config.addrs.join(",")
                ),
                None => config.addrs.join(","),
            },
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
        let target = match &config.sentinel {
            Some(sentinel) => Target::Sentinel(Box::new(SentinelTarget::new(config, sentinel)?)),
            None => {
                let info = format!("{scheme}://{}", config.addrs[0])
                    .into_connection_info()?
                    .set_redis_settings(settings);
                Target::Fixed(Box::new(match tls_certs(config)? {
                    Some(certs) => Client::build_with_tls(info, certs)?,
                    None => Client::open(info)?,
                }))
            }
        };
        let target = Arc::new(target);
        let manager = Manager {
            target: target.clone(),
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.command_timeout)),
        };
        let pool = bb8::Pool::builder()
            .max_size(config.pool_size)
            .connection_timeout(config.command_timeout.max(config.connect_timeout))
            .test_on_check_out(false)
            .retry_connection(false)
            // Few connections carry the load, so commands are pipelined (see `checkout`).
            .queue_strategy(bb8::QueueStrategy::Lifo)
            .min_idle(Some(config.pool_size))
            .build_unchecked(manager);
        Ok(Backend::Standalone { pool, target })
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

    /// A connection of its own, outside the pool: for a blocking command (a gateway's `XREAD
    /// BLOCK`) that must not hold up the pool's multiplexed connections. In Sentinel mode it goes
    /// to the primary the Sentinels name now.
    pub async fn dedicated(&self) -> Result<Dedicated, Error> {
        match &self.backend {
            Backend::Standalone { pool, .. } => {
                let conn = pool.dedicated_connection().await?;
                Ok(Dedicated::Single(conn.inner))
            }
            Backend::Cluster { client, .. } => {
                Ok(Dedicated::Cluster(client.get_async_connection().await?))
            }
        }
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
            Backend::Standalone { .. } => self.run(Request::Cmd(cmd), limit, Via::Pool).await?,
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
    pub(super) async fn run(
        &self,
        request: Request<'_>,
        limit: Duration,
        via: Via,
    ) -> Result<Value, Error> {
        let attempt = async {
            let pool = match &self.backend {
                Backend::Standalone { pool, .. } => pool,
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
    pub(super) async fn route(
        &self,
        cmd: &redis::Cmd,
        key: &str,
        limit: Duration,
    ) -> Result<Value, Error> {
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
            Route::with_key(key, SlotAddr::Master),
        ));
        self.route_to(cmd, routing, limit).await
    }

    /// Cluster only: `cmd` on every primary of the cluster, each of which must answer.
    pub(super) async fn on_every_primary(
        &self,
        cmd: &redis::Cmd,
        limit: Duration,
    ) -> Result<Value, Error> {
        let routing = RoutingInfo::MultiNode((
            MultipleNodeRoutingInfo::AllMasters,
            Some(ResponsePolicy::AllSucceeded),
        ));
        self.route_to(cmd, routing, limit).await
    }

    async fn route_to(
        &self,
        cmd: &redis::Cmd,
        routing: RoutingInfo,
        limit: Duration,
    ) -> Result<Value, Error> {
        let attempt = async {
            let mut conn = self.cluster_conn().await?;
            conn.route_command(cmd.clone(), routing)
                .await
                .map_err(Error::Redis)
        };
        tokio::time::timeout(limit, attempt)
            .await
            .map_err(|_| Error::Timeout(limit))?
    }
}
