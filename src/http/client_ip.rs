//! Who is asking: the address admission limits count against.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use ipnet::{IpNet, Ipv6Net};

use std::sync::Arc;

/// The client admission limits count: the socket peer, unless the peer is a trusted proxy
/// (`AUTHSESSION_TRUSTED_PROXIES`); then the rightmost `X-Forwarded-For` address that is not a
/// trusted proxy. An untrusted peer's `X-Forwarded-For` is ignored: anyone can write one. Then
/// [`admission_subject`]: one IPv4 client whatever its spelling, an IPv6 client by its network.
pub struct ClientIp(pub IpAddr);

/// How a listener tells clients apart (`AUTHSESSION_TRUSTED_PROXIES`,
/// `AUTHSESSION_RATE_LIMIT_IPV6_PREFIX`, `AUTHSESSION_RATE_LIMIT_NAT64_PREFIXES`): the accept
/// loop puts it in every request's extensions.
#[derive(Clone, Debug)]
pub struct Addressing {
    pub trusted_proxies: Arc<Vec<IpNet>>,
    pub ipv6_prefix: u8,
    /// NAT64 prefixes (RFC 6052 lengths) whose addresses are IPv4 clients.
    pub nat64: Arc<Vec<Ipv6Net>>,
}

impl Default for Addressing {
    /// Nobody trusted, IPv6 clients by /64, the well-known NAT64 prefix.
    fn default() -> Self {
        Self {
            trusted_proxies: Arc::default(),
            ipv6_prefix: 64,
            nat64: Arc::new(vec![WELL_KNOWN_NAT64]),
        }
    }
}

impl Addressing {
    /// The subject `ip`'s admission windows are keyed by ([`admission_subject`]).
    pub fn subject(&self, ip: IpAddr) -> IpAddr {
        admission_subject(ip, self.ipv6_prefix, &self.nat64)
    }
}

/// NAT64's well-known prefix, `64:ff9b::/96` (RFC 6052).
pub const WELL_KNOWN_NAT64: Ipv6Net =
    match Ipv6Net::new(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        Ok(net) => net,
        Err(_) => panic!("a valid prefix"),
    };

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |ConnectInfo(a)| a.ip());
        // Served outside the accept loop (a router driven directly): nobody is trusted.
        let fallback = Addressing::default();
        let addressing = parts.extensions.get::<Addressing>().unwrap_or(&fallback);
        let client = client_ip(peer, &parts.headers, &addressing.trusted_proxies);
        Ok(Self(addressing.subject(client)))
    }
}

/// The address a client's admission windows are keyed by. IPv4 written as IPv6 (mapped
/// `::ffff:a.b.c.d`, the deprecated compatible `::a.b.c.d`, or inside one of the `nat64`
/// prefixes, embedded as RFC 6052 says for the prefix's length) is that IPv4 address; any other
/// IPv6 address is its network of `ipv6_prefix` bits, since one subscriber holds a whole /64 (or
/// /56, /48) and picks a new address per request at will.
pub fn admission_subject(ip: IpAddr, ipv6_prefix: u8, nat64: &[Ipv6Net]) -> IpAddr {
    let v6 = match ip.to_canonical() {
        IpAddr::V4(v4) => return IpAddr::V4(v4),
        IpAddr::V6(v6) => v6,
    };
    let s = v6.segments();
    let o = v6.octets();
    let compatible = s[..6] == [0; 6] && !v6.is_unspecified() && !v6.is_loopback();
    if compatible {
        return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if let Some(net) = nat64.iter().find(|net| net.contains(&v6)) {
        // RFC 6052 §2.2: the IPv4 address follows the prefix, skipping bits 64-71 (octet 8).
        let at: [usize; 4] = match net.prefix_len() {
            32 => [4, 5, 6, 7],
            40 => [5, 6, 7, 9],
            48 => [6, 7, 9, 10],
            56 => [7, 9, 10, 11],
            64 => [9, 10, 11, 12],
            _ => [12, 13, 14, 15],
        };
        return IpAddr::V4(Ipv4Addr::from(at.map(|i| o[i])));
    }
    let network = Ipv6Net::new(v6, ipv6_prefix.min(128)).map_or(v6, |n| n.network());
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
        let v4 = |s: &str| admission_subject(s.parse().unwrap(), 64, &[WELL_KNOWN_NAT64]);
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
            admission_subject("2001:db8:1:2::9".parse().unwrap(), 48, &[]),
            "2001:db8:1::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            admission_subject("2001:db8::9".parse().unwrap(), 128, &[]),
            "2001:db8::9".parse::<IpAddr>().unwrap()
        );
    }

    /// Issue 36, finding 10: IPv4 clients behind SIIT/NAT64 with the local-use prefix
    /// `64:ff9b:1::/48` (RFC 8215) were not unfolded: they shared one /64 window. Every prefix
    /// configured is unfolded as RFC 6052 embeds IPv4 for its length.
    #[test]
    fn nat64_prefixes_of_every_rfc_6052_length_unfold_to_the_ipv4_client() {
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        for (prefix, address) in [
            ("64:ff9b::/96", "64:ff9b::c633:6407"),
            ("64:ff9b:1:fffe::/96", "64:ff9b:1:fffe::c633:6407"),
            ("64:ff9b:1::/48", "64:ff9b:1:c633:0064:0700::"),
            ("2001:db8::/32", "2001:db8:c633:6407::"),
            ("2001:db8:100::/40", "2001:db8:1c6:3364:0007::"),
            ("2001:db8:122::/56", "2001:db8:122:c6:0033:6407::"),
            ("2001:db8:122:344::/64", "2001:db8:122:344:00c6:3364:0700::"),
        ] {
            let net: Ipv6Net = prefix.parse().unwrap();
            assert_eq!(
                admission_subject(address.parse().unwrap(), 64, &[net]),
                client,
                "{prefix}"
            );
        }
        // Not configured: the local-use prefix's clients are an IPv6 network, as before.
        assert_eq!(
            admission_subject(
                "64:ff9b:1:c633:64:700::".parse().unwrap(),
                64,
                &[WELL_KNOWN_NAT64]
            ),
            "64:ff9b:1:c633::".parse::<IpAddr>().unwrap()
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
