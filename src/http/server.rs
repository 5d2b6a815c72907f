//! The accept loop: hyper (HTTP/1.1 and HTTP/2) with deadlines that hold whatever a client
//! speaks, a cap on open connections, and graceful draining on shutdown.
//!
//! hyper's own header-read timer starts only once it recognises an HTTP/1 request, so a client
//! that sends nothing, half an HTTP/2 preface, or a preface and then nothing would hold its
//! connection forever. Here every connection has a watchdog from `accept`: until its first
//! request head arrives it lives at most the header-read timeout, and whenever it has no request
//! in flight it lives at most the idle timeout. Beyond the cap a new connection is closed at once,
//! so admitted clients keep being served and the process never runs out of descriptors.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::extract::Request;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::telemetry::metrics::metrics;

/// Per-connection limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From `accept` (or the end of the last response) to a complete request head.
    pub header_read_timeout: Duration,
    /// Longest a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `router` until `shutdown`, then stops accepting and waits for open connections to
/// finish their in-flight requests (the caller bounds that wait).
pub async fn serve(
    surface: &'static str,
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics().refused(surface, "connection_limit");
            tracing::debug!(%peer, "connection limit reached: closing a new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let service = {
            let activity = activity.clone();
            let router = router.clone();
            tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let guard = activity.start();
                let router = router.clone();
                async move {
                    let response = router.oneshot(req.map(axum::body::Body::new)).await;
                    drop(guard);
                    response
                }
            })
        };
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(error = %error, "connection ended with an error");
                    }
                }
                reason = activity.expired(limits) => {
                    metrics().refused(surface, reason);
                    tracing::debug!(%peer, reason, "connection closed by its deadline");
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// What a connection's watchdog knows: requests in flight, whether any request arrived, and when
/// the connection last became idle.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    requests: AtomicUsize,
    /// Milliseconds after `opened` when the last request finished.
    idle_since_ms: AtomicU64,
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since_ms
            .store(a.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    fn start(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Resolves when the connection has outlived its deadline: `"deadline"` before its first
    /// request head, `"idle"` with nothing in flight for the idle timeout.
    async fn expired(self: Arc<Self>, limits: ConnectionLimits) -> &'static str {
        loop {
            let (reason, limit) = if self.requests.load(Ordering::Relaxed) == 0 {
                ("deadline", limits.header_read_timeout)
            } else {
                ("idle", limits.idle_timeout)
            };
            let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed));
            let due = self.opened + since + limit;
            if self.in_flight.load(Ordering::Relaxed) == 0 && Instant::now() >= due {
                return reason;
            }
            let next = if self.in_flight.load(Ordering::Relaxed) > 0 {
                Instant::now() + limits.header_read_timeout.min(limits.idle_timeout)
            } else {
                due
            };
            tokio::time::sleep_until(next.max(Instant::now() + Duration::from_millis(10)).into())
                .await;
        }
    }
}
