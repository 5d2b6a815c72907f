//! Who is asking: the address admission limits count against.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use ipnet::IpNet;

use std::sync::Arc;

/// The client admission limits count: the socket peer, unless the peer is a trusted proxy
/// (`AUTHSESSION_TRUSTED_PROXIES`); then the rightmost `X-Forwarded-For` address that is not a
/// trusted proxy. An untrusted peer's `X-Forwarded-For` is ignored: anyone can write one. Then
/// [`admission_subject`]: one IPv4 client whatever its spelling, an IPv6 client by its network.
pub struct ClientIp(pub IpAddr);

/// How a listener tells clients apart (`AUTHSESSION_TRUSTED_PROXIES`,
/// `AUTHSESSION_RATE_LIMIT_IPV6_PREFIX`): the accept loop puts it in every request's extensions.
#[derive(Clone, Debug)]
pub struct Addressing {
    pub trusted_proxies: Arc<Vec<IpNet>>,
    pub ipv6_prefix: u8,
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |ConnectInfo(a)| a.ip());
        // Served outside the accept loop (a router driven directly): nobody is trusted.
        let (trusted, prefix) = match parts.extensions.get::<Addressing>() {
            Some(a) => (a.trusted_proxies.as_slice(), a.ipv6_prefix),
            None => (&[][..], 64),
        };
        let client = client_ip(peer, &parts.headers, trusted);
        Ok(Self(admission_subject(client, prefix)))
    }
}

/// The address a client's admission windows are keyed by. IPv4 written as IPv6 (mapped
/// `::ffff:a.b.c.d`, the deprecated compatible `::a.b.c.d`, NAT64's well-known `64:ff9b::/96`)
/// is that IPv4 address; any other IPv6 address is its network of `ipv6_prefix` bits, since one
/// subscriber holds a whole /64 (or /56, /48) and picks a new address per request at will.
pub fn admission_subject(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    let v6 = match ip.to_canonical() {
        IpAddr::V4(v4) => return IpAddr::V4(v4),
        IpAddr::V6(v6) => v6,
    };
    let s = v6.segments();
    let [.., a, b, c, d] = v6.octets();
    let embedded = IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    let compatible = s[..6] == [0; 6] && !v6.is_unspecified() && !v6.is_loopback();
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if compatible || nat64 {
        return embedded;
    }
    let network = ipnet::Ipv6Net::new(v6, ipv6_prefix.min(128)).map_or(v6, |n| n.network());
    IpAddr::V6(network)
}

/// One `X-Forwarded-For` hop: an address, or one with a port as some proxies write it
/// (`a.b.c.d:port`, `[v6]:port`, `[v6]`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse::<Ipv6Addr>().ok())
                .map(IpAddr::V6)
        })
        .map(|ip| ip.to_canonical())
}

/// Whether `ip` is one of the trusted proxies (`AUTHSESSION_TRUSTED_PROXIES`).
pub fn is_trusted(ip: &IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(ip))
}

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| is_trusted(ip, trusted);
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
        let Some(ip) = parse_hop(hop) else {
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
    fn one_client_is_one_subject_whatever_its_spelling() {
        let v4 = |s: &str| admission_subject(s.parse().unwrap(), 64);
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        for form in [
            "198.51.100.7",
            "::ffff:198.51.100.7",
            "::198.51.100.7",
            "64:ff9b::198.51.100.7",
        ] {
            assert_eq!(v4(form), client, "{form}");
        }
        // `::1` is IPv6 loopback, not the IPv4-compatible 0.0.0.1: its /64.
        assert_eq!(v4("::1"), "::".parse::<IpAddr>().unwrap());
        assert_eq!(
            v4("2001:db8:1:2:aaaa:bbbb:cccc:dddd"),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            admission_subject("2001:db8:1:2::9".parse().unwrap(), 48),
            "2001:db8:1::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            admission_subject("2001:db8::9".parse().unwrap(), 128),
            "2001:db8::9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_hop_with_a_port_names_its_address() {
        for (hop, ip) in [
            ("198.51.100.7:4711", "198.51.100.7"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[::ffff:198.51.100.7]:80", "198.51.100.7"),
        ] {
            assert_eq!(parse_hop(hop), Some(ip.parse().unwrap()), "{hop}");
        }
        assert_eq!(parse_hop("unknown"), None);
        assert_eq!(parse_hop("_hidden"), None);
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
