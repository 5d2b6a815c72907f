//! Who is asking: the address admission limits count against.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::flows::Context;

/// The client's address: the socket peer, unless the peer is a trusted proxy
/// (`AUTHSESSION_TRUSTED_PROXIES`); then the rightmost `X-Forwarded-For` address that is not a
/// trusted proxy. An untrusted peer's `X-Forwarded-For` is ignored: anyone can write one.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<Context> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, ctx: &Context) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |ConnectInfo(a)| a.ip());
        Ok(Self(client_ip(peer, &parts.headers, &ctx.trusted_proxies)))
    }
}

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    // A dual-stack listener sees IPv4 clients as `::ffff:a.b.c.d`.
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        // An unreadable hop ends the chain at the last trusted address before it.
        let Ok(ip) = hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", v.parse().unwrap());
        }
        headers
    }

    #[test]
    fn only_trusted_peers_may_name_the_client() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let spoofed = with_xff(&["6.6.6.6"]);
        assert_eq!(client_ip(ip("1.2.3.4"), &spoofed, &trusted), ip("1.2.3.4"));
        assert_eq!(client_ip(ip("10.0.0.5"), &spoofed, &trusted), ip("6.6.6.6"));
        // The rightmost untrusted hop, past any chain of trusted proxies.
        let chain = with_xff(&["6.6.6.6, 7.7.7.7", "10.1.1.1"]);
        assert_eq!(client_ip(ip("10.0.0.5"), &chain, &trusted), ip("7.7.7.7"));
        assert_eq!(
            client_ip(ip("10.0.0.5"), &with_xff(&["junk, 10.1.1.1"]), &trusted),
            ip("10.1.1.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.5"), &HeaderMap::new(), &trusted),
            ip("10.0.0.5")
        );
        assert_eq!(
            client_ip(ip("::ffff:1.2.3.4"), &spoofed, &[]),
            ip("1.2.3.4")
        );
    }
}
