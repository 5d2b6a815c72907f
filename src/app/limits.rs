//! What every listener shares: the connection caps `config` sets, how clients are told apart,
//! and the process's open-files limit raised to hold the caps.

use std::sync::Arc;

use crate::config::Config;
use crate::http::client_ip::Addressing;
use crate::http::server::ConnectionLimits;

/// The connection limits `config` sets for every listener (the service's two, and the
/// reference gateway consumer's).
pub fn connection_limits(config: &Config) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: config.http_header_read_timeout,
        idle_timeout: config.http_idle_timeout,
        max_connections: config.http_max_connections,
        max_connections_per_client: config.http_max_connections_per_client,
        max_requests_per_client: config.http_max_requests_per_client,
    }
}

/// How every listener tells clients apart: trusted proxies, the IPv6 prefix, NAT64 prefixes.
pub fn addressing(config: &Config) -> Addressing {
    Addressing {
        trusted_proxies: Arc::new(config.trusted_proxies.clone()),
        ipv6_prefix: config.rate_limit_ipv6_prefix,
        nat64: Arc::new(config.rate_limit_nat64_prefixes.clone()),
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (the default soft limit, often 1024, is far
/// below what two listeners' connection caps need) and warns when even the hard limit cannot
/// hold both caps plus the Redis pool: the caps, not the kernel, should refuse connections.
pub fn raise_open_files_limit(config: &Config) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let limit = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let needed = 2 * config.http_max_connections as u64 + u64::from(config.redis.pool_size) + 64;
    if limit < needed {
        tracing::warn!(
            open_files_limit = limit,
            needed,
            "RLIMIT_NOFILE cannot hold both listeners' AUTHSESSION_HTTP_MAX_CONNECTIONS plus the Redis pool; lower the cap or raise the limit"
        );
    }
}
