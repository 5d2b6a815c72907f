//! A connection's watchdog: closes it when a request head did not complete within the header
//! timeout (the first one counted from `accept`, later ones from their first byte, however they
//! arrived) or when it stayed idle past the idle timeout. It sees the connection's bytes through
//! [`Watched`], following HTTP/1 [`Framing`] while it can, and its requests through [`InFlight`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::framing::{Framing, Heads};
use super::server::ConnectionLimits;

/// What a connection's watchdog knows, in milliseconds since `opened` (0 = never).
pub(super) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// When the connection last became idle: accepted, or its last response produced.
    idle_since_ms: AtomicU64,
    /// When the request head in progress started. HTTP/1 (framed): the first byte of a head that
    /// is not complete yet, however it arrived (behind a request in the same packet, or while one
    /// is served). Otherwise: the first byte received while idle (a head on its way, or a
    /// stalling peer).
    pending_since_ms: AtomicU64,
    /// Whether the connection's bytes are followed as HTTP/1 [`Framing`].
    framed: AtomicBool,
    /// An HTTP/1 connection whose framing stopped on a request hyper accepted (an `Upgrade:`
    /// header, a chunk size `httparse` refuses): any byte received since may be a head in a
    /// buffer no later read reveals, so a pending head is never cleared, and the connection lives
    /// the header timeout from its last answer (issue 36, finding 5: before, such a request turned
    /// the framing off and a head pipelined behind it got the idle timeout).
    strict: AtomicBool,
}

pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since_ms.store(a.now_ms(), Ordering::Relaxed);
        if a.loose() {
            a.pending_since_ms.store(0, Ordering::Relaxed);
        }
        a.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            // A new connection owes its first request head from `accept`.
            pending_since_ms: AtomicU64::new(0),
            framed: AtomicBool::new(true),
            strict: AtomicBool::new(false),
        }
    }

    /// Unframed and not strict (HTTP/2): a request's start or end clears a pending head.
    fn loose(&self) -> bool {
        !self.framed.load(Ordering::Relaxed) && !self.strict.load(Ordering::Relaxed)
    }

    /// Never 0, so that 0 can mean "never".
    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64 + 1
    }

    pub(super) fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        // Framed, the head's completion cleared it, and a head pipelined behind stays pending.
        if self.loose() {
            self.pending_since_ms.store(0, Ordering::Relaxed);
        }
        InFlight(self.clone())
    }

    /// (Framed) what received bytes did to heads.
    fn heads(&self, heads: Heads) {
        if heads.completed {
            self.pending_since_ms.store(0, Ordering::Relaxed);
        }
        if heads.started {
            self.pending_since_ms
                .store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// The framing stopped (HTTP/2, or `strict`: an HTTP/1 request it cannot follow): from now on
    /// only reads are seen.
    fn unframed(&self, strict: bool) {
        self.strict.store(strict, Ordering::Relaxed);
        self.framed.store(false, Ordering::Relaxed);
        self.received();
    }

    fn received(&self) {
        if self.strict.load(Ordering::Relaxed) || self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ = self.pending_since_ms.compare_exchange(
                0,
                self.now_ms(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Since when the connection idles, if it does: no request in flight and no request head on
    /// its way (a new connection idles from `accept` until its first byte).
    pub(super) fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0
            || self.pending_since_ms.load(Ordering::Relaxed) > 0
        {
            return None;
        }
        let idle_ms = self.idle_since_ms.load(Ordering::Relaxed);
        Some(self.opened + Duration::from_millis(idle_ms.saturating_sub(1)))
    }

    /// Resolves when the connection has outlived its deadline: `"deadline"` when a request head
    /// (the first, or bytes received while idle) did not complete within the header timeout,
    /// `"idle"` when nothing arrived for the idle timeout.
    pub(super) async fn expired(self: Arc<Self>, limits: ConnectionLimits) -> &'static str {
        let ms = |d: Duration| d.as_millis() as u64;
        loop {
            let now = self.now_ms();
            let busy = self.in_flight.load(Ordering::Relaxed) > 0;
            let idle_since = self.idle_since_ms.load(Ordering::Relaxed);
            let pending = self.pending_since_ms.load(Ordering::Relaxed);
            let (reason, due) = if idle_since == 0 {
                ("deadline", ms(limits.header_read_timeout))
            } else if pending > 0 {
                // A head that started while a request was served gets the header timeout from
                // when that request's answer was produced.
                (
                    "deadline",
                    pending.max(idle_since) + ms(limits.header_read_timeout),
                )
            } else {
                ("idle", idle_since + ms(limits.idle_timeout))
            };
            if !busy && now >= due {
                return reason;
            }
            let wait = if busy {
                limits.header_read_timeout.min(limits.idle_timeout)
            } else {
                Duration::from_millis(due - now)
            };
            tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
        }
    }
}

/// The socket, noting every byte received for the watchdog.
pub(super) struct Watched {
    inner: tokio::net::TcpStream,
    activity: Arc<Activity>,
    /// The HTTP/1 framing of the received bytes, until it cannot be followed.
    framing: Option<Framing>,
}

impl Watched {
    /// `stream`, watched for `activity`; heads of HTTP/1 are at most `max_head` bytes.
    pub(super) fn new(
        stream: tokio::net::TcpStream,
        activity: Arc<Activity>,
        max_head: usize,
    ) -> Self {
        Self {
            inner: stream,
            activity,
            framing: Some(Framing::new(max_head)),
        }
    }
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        let received = &buf.filled()[before..];
        if !received.is_empty() {
            match &mut this.framing {
                Some(framing) => {
                    let heads = framing.feed(received);
                    if framing.followed() {
                        this.activity.heads(heads);
                    } else {
                        this.activity.unframed(framing.spoke_http1());
                        this.framing = None;
                    }
                }
                None => this.activity.received(),
            }
        }
        poll
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
