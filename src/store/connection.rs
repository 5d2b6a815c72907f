//! Standalone connections: a bb8 pool of multiplexed connections with a manager of our own.
//!
//! Not `bb8-redis`: its manager is built from connection info alone (`Client::open`), so it can
//! take neither a custom CA (`Client::build_with_tls`) nor connect and response timeouts
//! (`AsyncConnectionConfig`), and its `has_broken` is always false, so a connection whose
//! transport failed goes back into the pool. (Its per-checkout `PING` alone would not be a
//! reason: `test_on_check_out(false)` turns that off, and this pool does so too.) Here a
//! connection whose command failed at the transport level is marked broken and bb8 replaces it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError};

use super::Error;
use crate::config::RedisConfig;
use crate::telemetry::metrics::metrics;

/// A pooled multiplexed connection that remembers a transport failure. Requests run on clones
/// (a multiplexed connection pipelines any number of them), so a checkout lasts only as long as
/// taking the clone, and a failure seen on any clone marks the pooled original broken.
#[derive(Clone)]
pub struct Conn {
    pub(super) inner: MultiplexedConnection,
    broken: Arc<AtomicBool>,
}

impl Conn {
    /// A transport-level failure leaves the connection unusable: bb8 drops it on return.
    /// Returns true when the connection was lost (as opposed to a timeout or a server error).
    pub(super) fn note<T>(&self, result: &Result<T, RedisError>) -> bool {
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
    pub(super) client: Client,
    pub(super) config: AsyncConnectionConfig,
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

pub(super) fn tls_certs(
    config: &RedisConfig,
) -> Result<Option<redis::TlsCertificates>, RedisError> {
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

/// A clone of a pooled connection; the pooled one goes back at once (FIFO, so load spreads over
/// every connection).
pub(super) async fn checkout(pool: &bb8::Pool<Manager>, limit: Duration) -> Result<Conn, Error> {
    let started = std::time::Instant::now();
    let pooled = pool.get().await.map_err(|e| match e {
        bb8::RunError::User(e) => Error::Redis(e),
        bb8::RunError::TimedOut => Error::Timeout(limit),
    })?;
    metrics().pool_wait(started.elapsed());
    Ok(Conn::clone(&pooled))
}
