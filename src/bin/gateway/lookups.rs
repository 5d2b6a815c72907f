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
    pub lookups: Arc<tokio::sync::Mutex<Lookups>>,
}

/// The lookup connection and when it was last opened: after an error it is opened again at most
/// once per [`REOPEN_EVERY`], so a failing Redis is not met with a new connection per request.
#[derive(Default)]
pub struct Lookups {
    conn: Option<Dedicated>,
    opened: Option<std::time::Instant>,
}

const REOPEN_EVERY: Duration = Duration::from_secs(1);

impl Shared {
    /// The lookup connection, opened on first use and after a failure (at most once a second).
    pub async fn lookups(&self) -> Result<Dedicated, String> {
        let mut held = self.lookups.lock().await;
        if let Some(conn) = &held.conn {
            return Ok(conn.clone());
        }
        if held.opened.is_some_and(|at| at.elapsed() < REOPEN_EVERY) {
            return Err(
                "redis unavailable; the lookup connection reopens at most once a second".into(),
            );
        }
        held.opened = Some(std::time::Instant::now());
        let conn = self.redis.dedicated().await.map_err(|e| e.to_string())?;
        held.conn = Some(conn.clone());
        Ok(conn)
    }

    pub async fn forget_lookups(&self) {
        self.lookups.lock().await.conn = None;
    }
}
