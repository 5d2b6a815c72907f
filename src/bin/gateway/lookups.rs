//! The gateway's Redis connection for lookups (snapshot keys, replay markers), shared by every
//! request and reopened after a failure at most once a second.

use std::sync::Arc;
use std::time::Duration;

use authsession::gateway::GatewayConsumer;
use authsession::store::{Dedicated, Keys, Redis};

#[derive(Clone)]
pub struct Shared {
    pub consumer: Arc<GatewayConsumer>,
    pub keys: Keys,
    pub redis: Redis,
    /// The connection snapshot lookups share (multiplexed), replaced after an error.
    pub lookups: Arc<Lookups>,
}

/// The lookup connection, and when it was last opened: after an error it is opened again at
/// most once per [`REOPEN_EVERY`], so a failing Redis is not met with a new connection per
/// request. Every request reads the connection (a lock held for a clone, never across an
/// await); only opening it waits on the async lock.
#[derive(Default)]
pub struct Lookups {
    conn: std::sync::RwLock<Option<Dedicated>>,
    opened: tokio::sync::Mutex<Option<std::time::Instant>>,
}

const REOPEN_EVERY: Duration = Duration::from_secs(1);

impl Lookups {
    fn current(&self) -> Option<Dedicated> {
        self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Shared {
    /// The lookup connection, opened on first use and after a failure (at most once a second).
    pub async fn lookups(&self) -> Result<Dedicated, String> {
        if let Some(conn) = self.lookups.current() {
            return Ok(conn);
        }
        let mut opened = self.lookups.opened.lock().await;
        // Another request may have opened it while this one waited.
        if let Some(conn) = self.lookups.current() {
            return Ok(conn);
        }
        if opened.is_some_and(|at| at.elapsed() < REOPEN_EVERY) {
            return Err(
                "redis unavailable; the lookup connection reopens at most once a second".into(),
            );
        }
        *opened = Some(std::time::Instant::now());
        let conn = self.redis.dedicated().await.map_err(|e| e.to_string())?;
        *self.lookups.conn.write().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    pub fn forget_lookups(&self) {
        *self.lookups.conn.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
