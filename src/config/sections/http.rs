//! The HTTP section: both listeners, the internal surface's token, the connection and request
//! limits.

use super::*;

pub(in crate::config) struct HttpSection {
    pub public_addr: Option<SocketAddr>,
    pub internal_addr: Option<SocketAddr>,
    pub internal_token: Option<SecretString>,
    allow_unauthenticated: Option<bool>,
    pub allow_unknown: Option<bool>,
    header_read_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    max_connections: Option<usize>,
    max_connections_per_client: Option<usize>,
    max_requests_per_client: Option<usize>,
    body_read_timeout: Option<Duration>,
    body_buffer_bytes: Option<usize>,
    shutdown_timeout: Option<Duration>,
}

/// The HTTP section's typed values (the `Config` fields of the listeners).
pub(in crate::config) struct Http {
    pub public_addr: SocketAddr,
    pub internal_addr: SocketAddr,
    pub internal_token: Option<SecretString>,
    pub allow_unauthenticated: bool,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub max_requests_per_client: usize,
    pub body_read_timeout: Duration,
    pub body_buffer_bytes: usize,
    pub shutdown_timeout: Duration,
}

impl HttpSection {
    pub fn read(p: &mut Parser) -> Self {
        let listen = "`:port`, `host:port` or `[v6]:port`";
        let public_addr = p.parse(PUBLIC_HTTP_ADDR, listen, parse_listen_addr);
        let internal_addr = p.parse(INTERNAL_HTTP_ADDR, listen, parse_listen_addr);
        let internal_token = p.optional(INTERNAL_HTTP_TOKEN).map(SecretString::from);
        let allow_unauthenticated = p.bool(INTERNAL_HTTP_ALLOW_UNAUTHENTICATED);
        let allow_unknown = p.bool(ALLOW_UNKNOWN_VARIABLES);
        if internal_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().len() < 16)
        {
            p.problem(
                INTERNAL_HTTP_TOKEN,
                Some("<redacted>".into()),
                "a token of at least 16 characters",
            );
        }
        Self {
            public_addr,
            internal_addr,
            internal_token,
            allow_unauthenticated,
            allow_unknown,
            header_read_timeout: p.duration(HTTP_HEADER_READ_TIMEOUT),
            idle_timeout: p.duration(HTTP_IDLE_TIMEOUT),
            max_connections: p.integer(HTTP_MAX_CONNECTIONS, 1usize, 1_000_000),
            max_connections_per_client: p.integer(
                HTTP_MAX_CONNECTIONS_PER_CLIENT,
                1usize,
                1_000_000,
            ),
            max_requests_per_client: p.integer(HTTP_MAX_REQUESTS_PER_CLIENT, 1usize, 1_000_000),
            body_read_timeout: p.duration(HTTP_BODY_READ_TIMEOUT),
            body_buffer_bytes: p.integer(HTTP_BODY_BUFFER_BYTES, 65_536usize, 4_294_967_295),
            shutdown_timeout: p.duration(SHUTDOWN_TIMEOUT),
        }
    }

    /// The two listeners need two addresses.
    pub fn check_addresses(&self, p: &mut Parser) {
        if let (Some(public), Some(internal)) = (self.public_addr, self.internal_addr) {
            if public == internal && public.port() != 0 {
                p.problem(
                    INTERNAL_HTTP_ADDR,
                    Some(internal.to_string()),
                    "an address other than the public listener's",
                );
            }
        }
    }

    /// Where the internal surface listens, and whether it may run open. With both dependencies
    /// stubbed (a trial run, a laptop) it may run without a token: then it listens on loopback
    /// unless told where, rather than on every interface by the default `:8081`. An internal
    /// surface anyone on the network can reach, with no token, in a real environment (`rest`),
    /// is a mistake unless the operator says otherwise.
    pub fn settle_internal(&mut self, p: &mut Parser, rest: bool) {
        if let Some(addr) = self.internal_addr {
            if !rest && self.internal_token.is_none() && p.env.get(INTERNAL_HTTP_ADDR).is_none() {
                self.internal_addr = Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()));
            }
        }
        let exposed = self.internal_addr.is_some_and(|a| !a.ip().is_loopback());
        if rest
            && exposed
            && self.internal_token.is_none()
            && self.allow_unauthenticated == Some(false)
        {
            p.problem(
                INTERNAL_HTTP_TOKEN,
                None,
                "a bearer token (>= 16 characters) when the internal listener is not loopback and \
                 a dependency runs in `rest` mode; or AUTHSESSION_INTERNAL_HTTP_ALLOW_UNAUTHENTICATED=true \
                 if a network boundary protects it",
            );
        }
    }

    pub fn finish(self) -> Option<Http> {
        Some(Http {
            public_addr: self.public_addr?,
            internal_addr: self.internal_addr?,
            internal_token: self.internal_token,
            allow_unauthenticated: self.allow_unauthenticated?,
            header_read_timeout: self.header_read_timeout?,
            idle_timeout: self.idle_timeout?,
            max_connections: self.max_connections?,
            max_connections_per_client: self.max_connections_per_client?,
            max_requests_per_client: self.max_requests_per_client?,
            body_read_timeout: self.body_read_timeout?,
            body_buffer_bytes: self.body_buffer_bytes?,
            shutdown_timeout: self.shutdown_timeout?,
        })
    }
}
