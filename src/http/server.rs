//! The accept loop: hyper (HTTP/1.1 and HTTP/2) with deadlines that hold whatever a client
//! speaks, a cap on open connections, and graceful draining on shutdown.
//!
//! hyper's own header-read timer starts only once it recognises an HTTP/1 request (so a client
//! that sends nothing, half an HTTP/2 preface, or a preface and then nothing would hold its
//! connection forever), and for keep-alive it also cuts idle connections at the header timeout.
//! Here every connection has one watchdog instead (`watchdog.rs`), for both protocols: a request
//! head must complete within the header-read deadline (from `accept` for the first request; for
//! later ones from their first byte, or from the last answer when that byte came while a request
//! was served: HTTP/1 bytes are followed through their framing, so a head buffered behind a
//! request is seen), and a connection that receives nothing lives the idle timeout. Beyond the cap a new connection is closed at once, so admitted clients
//! keep being served and the process never runs out of descriptors; and so is one beyond its
//! client's share of the cap, so no one client can hold every slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::client_ip::Addressing;
use super::error::ApiError;
use super::extract::BodyBudget;
use super::slots::Slots;
use super::watchdog::{Activity, Watched};
use crate::telemetry::metrics::metrics;

/// Most bytes of an HTTP/1 request head, or of an HTTP/2 header list (hyper answers `431`
/// beyond it, or resets the stream).
const HEAD_BUFFER_BYTES: usize = 16 * 1024;
/// HTTP/2 flow-control windows: one whole body per stream (bodies are at most 16 KiB), 64 KiB
/// per connection, so a connection's unread data is at most 64 KiB whatever its streams (the
/// service reads bodies as they arrive, within the [`BodyBudget`]).
const STREAM_WINDOW_BYTES: u32 = super::extract::MAX_BODY_BYTES as u32;
const CONNECTION_WINDOW_BYTES: u32 = 64 * 1024;

/// Per-connection limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From `accept` (or the end of the last response) to a complete request head.
    pub header_read_timeout: Duration,
    /// Longest a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Most open connections of one client address (IPv6: its network, as [`Addressing`] says).
    pub max_connections_per_client: usize,
    /// Most requests of one client address in flight at once, over all its connections (an
    /// HTTP/2 connection carries several): each pins its stream's state and handler until it is
    /// answered, so a client with unfinished bodies holds at most this many.
    pub max_requests_per_client: usize,
}

/// What each client holds open of something shared (connections, requests in flight), for its
/// share of a listener's. An entry lives while its client holds something, so the map holds at
/// most the listener's cap of entries.
pub struct ClientShares {
    open: Mutex<HashMap<IpAddr, usize>>,
    limit: usize,
}

/// One connection's or request's place in its client's share; gives it back when dropped.
struct Share {
    shares: Arc<ClientShares>,
    client: Option<IpAddr>,
}

/// A listener's per-client shares, and who a peer counts as.
#[derive(Clone)]
pub struct Shares {
    connections: Arc<ClientShares>,
    requests: Arc<ClientShares>,
    addressing: Addressing,
}

impl Shares {
    pub fn new(limits: ConnectionLimits, addressing: Addressing) -> Self {
        let share = |limit| {
            Arc::new(ClientShares {
                open: Mutex::new(HashMap::new()),
                limit,
            })
        };
        Self {
            connections: share(limits.max_connections_per_client),
            requests: share(limits.max_requests_per_client),
            addressing,
        }
    }

    /// The client a connection from `peer` counts against, once per connection: its admission
    /// subject; `None` for a trusted proxy, which carries many clients and is exempt (the
    /// listener's own caps still hold).
    fn client_of(&self, peer: IpAddr) -> Option<IpAddr> {
        let peer = peer.to_canonical();
        let a = &self.addressing;
        (!super::client_ip::is_trusted(&peer, &a.trusted_proxies)).then(|| a.subject(peer))
    }
}

impl ClientShares {
    /// A place for one more of `client`'s (`None`: exempt), or `None` when it holds its share.
    fn take(self: &Arc<Self>, client: Option<IpAddr>) -> Option<Share> {
        if let Some(client) = client {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let count = open.entry(client).or_insert(0);
            if *count >= self.limit {
                return None;
            }
            *count += 1;
        }
        Some(Share {
            shares: self.clone(),
            client,
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let Some(client) = self.client else { return };
        let mut open = self.shares.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&client);
            }
        }
    }
}

/// hyper, both protocols. The watchdog bounds request heads for both; hyper's own timer would
/// also close idle keep-alive connections at the header timeout. Memory per connection is bounded
/// by what hyper may buffer before the service reads: an HTTP/1 head (`max_buf_size`), and for
/// HTTP/2 the flow-control windows (hyper's defaults of 1 MiB let 64 unfinished streams pin about
/// 2 MiB per connection) and the header list. What the service then buffers of bodies is bounded
/// for all connections together by the [`BodyBudget`].
fn hyper_builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(HEAD_BUFFER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(32)
        .adaptive_window(false)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_header_list_size(HEAD_BUFFER_BYTES as u32)
        .max_send_buf_size(STREAM_WINDOW_BYTES as usize);
    builder
}

/// One connection's request handler: each request carries the peer, the body budget and the
/// listener's addressing, counts as activity for the watchdog, and takes a place of its client's
/// share of requests in flight (refused at once beyond it, so it pins nothing).
fn connection_service(
    surface: &'static str,
    router: Router,
    peer: std::net::SocketAddr,
    client: Option<IpAddr>,
    shares: &Shares,
    bodies: BodyBudget,
    activity: Arc<Activity>,
) -> impl tower::Service<
    Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    let requests = shares.requests.clone();
    let addressing = shares.addressing.clone();
    tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(bodies.clone());
        req.extensions_mut().insert(addressing.clone());
        let guard = activity.start();
        let router = router.clone();
        let admitted = requests.take(client);
        async move {
            let Some(admitted) = admitted else {
                metrics().refused(surface, "client_request_limit");
                drop(guard);
                return Ok(ApiError::unavailable().into_response());
            };
            let response = router.oneshot(req.map(axum::body::Body::new)).await;
            drop((guard, admitted));
            response
        }
    })
}

/// Serves `router` until `shutdown`, then stops accepting and waits for open connections to
/// finish their in-flight requests (the caller bounds that wait).
pub async fn serve(
    surface: &'static str,
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shares: Shares,
    bodies: BodyBudget,
    shutdown: CancellationToken,
) {
    let builder = hyper_builder();
    let bodies = bodies.on(surface);
    let graceful = GracefulShutdown::new();
    let slots = Slots::new(limits.max_connections, limits.header_read_timeout);
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
        let client = shares.client_of(peer.ip());
        let Some(share) = shares.connections.take(client) else {
            metrics().refused(surface, "client_connection_limit");
            tracing::debug!(%peer, "the client holds its share of connections: closing a new one");
            drop(stream);
            continue;
        };
        let activity = Arc::new(Activity::new());
        let Some((slot, evicted)) = slots.take(&activity) else {
            metrics().refused(surface, "connection_limit");
            tracing::debug!(%peer, "connection limit reached, every connection busy: closing a new one");
            drop(stream);
            continue;
        };
        if evicted {
            metrics().refused(surface, "evicted_idle");
            tracing::debug!(%peer, "connection limit reached: closed an idle connection");
        }
        let _ = stream.set_nodelay(true);
        let service = connection_service(
            surface,
            router.clone(),
            peer,
            client,
            &shares,
            bodies.clone(),
            activity.clone(),
        );
        let io = Watched::new(stream, activity.clone(), HEAD_BUFFER_BYTES);
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service))
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
                () = slot.evicted.cancelled() => {
                    tracing::debug!(%peer, "idle connection closed to make room");
                }
            }
            drop(slot);
            drop(share);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
