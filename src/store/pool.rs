//! The Redis connection pool and the two ways the service talks to Redis: plain commands and
//! `EVALSHA` with one transparent reload on `NOSCRIPT`.
//!
//! bb8 pools multiplexed connections. The manager is our own rather than `bb8-redis`'s because
//! that one PINGs on every checkout (one extra round trip per request) and can neither take a
//! custom CA nor notice a dead connection; here a connection whose command failed at the
//! transport level is marked broken and bb8 replaces it.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ErrorKind, FromRedisValue, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, ServerErrorKind, Value,
};

use super::scripts::{Script, ScriptCall};
use super::Error;
use crate::config::{RedisConfig, RedisMode, ScriptLoading};

/// A pooled multiplexed connection that remembers a transport failure.
pub struct Conn {
    inner: MultiplexedConnection,
    broken: bool,
}

impl Conn {
    /// A transport-level failure leaves the connection unusable: bb8 drops it on return.
    /// Returns true when the connection was lost (as opposed to a timeout or a server error).
    fn note<T>(&mut self, result: &Result<T, RedisError>) -> bool {
        let Err(e) = result else { return false };
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_unrecoverable_error()
        {
            self.broken = true;
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
            broken: false,
        })
    }

    async fn is_valid(&self, conn: &mut Conn) -> Result<(), RedisError> {
        redis::cmd("PING").query_async::<()>(&mut conn.inner).await
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken
    }
}

/// A cheap, clonable handle on the pool.
#[derive(Clone)]
pub struct Redis {
    pool: bb8::Pool<Manager>,
    command_timeout: Duration,
    script_loading: ScriptLoading,
    /// `host:port` for log lines; never contains credentials.
    address: String,
}

impl Redis {
    /// Builds the pool without connecting: the first command (the startup PING) connects.
    pub fn new(config: &RedisConfig) -> Result<Self, Error> {
        if config.mode == RedisMode::Cluster {
            return Err(Error::Redis(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "AUTHSESSION_REDIS_MODE=cluster is not supported by this build yet; use standalone",
            ))));
        }
        let address = config.addrs[0].clone();
        let scheme = if config.tls_enabled {
            "rediss"
        } else {
            "redis"
        };
        let mut settings = RedisConnectionInfo::default().set_db(config.db);
        if let Some(username) = &config.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &config.password {
            settings = settings.set_password(password);
        }
        let info = format!("{scheme}://{address}")
            .into_connection_info()?
            .set_redis_settings(settings);
        let client = match &config.tls_ca_file {
            Some(path) => {
                let root_cert = std::fs::read(path).map_err(|e| {
                    RedisError::from((
                        ErrorKind::InvalidClientConfig,
                        "cannot read the TLS CA file",
                        e.to_string(),
                    ))
                })?;
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                Client::build_with_tls(info, certs)?
            }
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
            .build_unchecked(manager);
        Ok(Self {
            pool,
            command_timeout: config.command_timeout,
            script_loading: config.script_loading,
            address,
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Runs one command within the command timeout (pool wait included).
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Error> {
        let value = self.query_value(cmd, self.command_timeout).await?;
        T::from_redis_value(value).map_err(|e| Error::Redis(e.into()))
    }

    /// Runs a pipeline as one round trip within the command timeout.
    pub async fn query_pipe<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, Error> {
        let limit = self.command_timeout;
        let attempt = async {
            let mut conn = self.checkout(limit).await?;
            let result = pipe.query_async::<Value>(&mut conn.inner).await;
            conn.note(&result);
            result.map_err(Error::Redis)
        };
        let value = tokio::time::timeout(limit, attempt)
            .await
            .map_err(|_| Error::Timeout(limit))??;
        T::from_redis_value(value).map_err(|e| Error::Redis(e.into()))
    }

    /// Like [`Redis::query`] with an explicit bound, for startup checks.
    pub async fn query_within<T: FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        limit: Duration,
    ) -> Result<T, Error> {
        let value = self.query_value(cmd, limit).await?;
        T::from_redis_value(value).map_err(|e| Error::Redis(e.into()))
    }

    async fn query_value(&self, cmd: &redis::Cmd, limit: Duration) -> Result<Value, Error> {
        let attempt = async {
            let mut conn = self.checkout(limit).await?;
            let result = cmd.query_async::<Value>(&mut conn.inner).await;
            if !conn.note(&result) {
                return result.map_err(Error::Redis);
            }
            // The pooled connection died (Redis restarted, failover, idle reset). Every command
            // sent here is a read or a replay-safe script, so one retry on a fresh connection
            // is safe; the other dead pooled connections are replaced as they surface.
            drop(conn);
            let mut fresh = self.pool.dedicated_connection().await?;
            cmd.query_async::<Value>(&mut fresh.inner)
                .await
                .map_err(Error::Redis)
        };
        tokio::time::timeout(limit, attempt)
            .await
            .map_err(|_| Error::Timeout(limit))?
    }

    async fn checkout(&self, limit: Duration) -> Result<bb8::PooledConnection<'_, Manager>, Error> {
        self.pool.get().await.map_err(|e| match e {
            bb8::RunError::User(e) => Error::Redis(e),
            bb8::RunError::TimedOut => Error::Timeout(limit),
        })
    }

    /// `EVALSHA`; on `NOSCRIPT` (restart, failover, `SCRIPT FLUSH`) loads the script with
    /// `SCRIPT LOAD` and retries once, unless scripts are `preloaded`.
    pub async fn invoke(&self, call: &ScriptCall<'_>) -> Result<Value, Error> {
        let script = call.script();
        let started = std::time::Instant::now();
        let result = match self
            .query_value(&call.evalsha(), self.command_timeout)
            .await
        {
            Err(Error::Redis(e)) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                if self.script_loading == ScriptLoading::Preloaded {
                    return Err(Error::NotPreloaded {
                        script: script.name,
                        version: script.version,
                    });
                }
                tracing::info!(
                    script = script.name,
                    version = script.version,
                    "NOSCRIPT: loading script"
                );
                self.load(script).await?;
                self.query_value(&call.evalsha(), self.command_timeout)
                    .await
            }
            other => other,
        };
        tracing::debug!(
            script = script.name,
            version = script.version,
            elapsed_us = started.elapsed().as_micros() as u64,
            ok = result.is_ok(),
            "script call"
        );
        result
    }

    /// `SCRIPT LOAD`, checking that Redis computed the SHA1 we address the script by.
    pub async fn load(&self, script: &Script) -> Result<(), Error> {
        let sha: String = self
            .query(redis::cmd("SCRIPT").arg("LOAD").arg(&script.body))
            .await?;
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
        self.query(&cmd).await
    }
}
