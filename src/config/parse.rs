//! The parser behind `Config::from_source`: each helper reads one variable (or its declared
//! default), converts it, and records a problem instead of stopping, so every bad variable is
//! reported at once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use url::Url;

use secrecy::SecretString;

use super::vars::{
    default_of, REDIS_SENTINEL_MASTER, REDIS_SENTINEL_PASSWORD, REDIS_SENTINEL_USERNAME,
};
use super::{
    EnvSource, Problem, RateLimit, RedisMode, RestTarget, SentinelConfig, ServiceMode,
    MAX_REDIS_DURATION,
};
use crate::domain::CodeHashKey;

/// Collects the configuration's values and its problems.
pub struct Parser<'a> {
    pub env: &'a dyn EnvSource,
    pub problems: Vec<Problem>,
}

impl Parser<'_> {
    pub fn problem(&mut self, variable: &'static str, value: Option<String>, expected: &str) {
        self.problems.push(Problem {
            variable,
            value,
            expected: expected.to_owned(),
        });
    }

    /// An unset or empty variable is absent.
    pub fn optional(&self, name: &'static str) -> Option<String> {
        self.env.get(name).filter(|v| !v.trim().is_empty())
    }

    /// `name`'s value, or its declared default, through `f`; `expected` says what `f` accepts.
    pub fn parse<T>(
        &mut self,
        name: &'static str,
        expected: &str,
        f: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let raw = self.optional(name);
        let value = raw.as_deref().unwrap_or(default_of(name)).trim();
        let parsed = f(value);
        if parsed.is_none() {
            self.problem(name, Some(value.to_owned()), expected);
        }
        parsed
    }

    pub fn duration(&mut self, name: &'static str) -> Option<Duration> {
        self.parse(
            name,
            "a positive duration such as `500ms`, `2s`, `1m` or `720h`",
            |v| {
                humantime::parse_duration(v)
                    .ok()
                    .filter(|d| *d >= Duration::from_millis(1))
            },
        )
    }

    pub fn rate_limit(&mut self, name: &'static str) -> Option<Option<RateLimit>> {
        self.parse(
            name,
            "`N/DURATION` (e.g. `60/1m`) or `off`",
            RateLimit::parse,
        )
    }

    /// A code-hash key (base64, >= 32 bytes); the value is never echoed in a problem.
    pub fn secret_key(&mut self, name: &'static str) -> Option<CodeHashKey> {
        let raw = self.optional(name)?;
        let key = CodeHashKey::parse(&raw).ok();
        if key.is_none() {
            self.problem(
                name,
                Some("<redacted>".into()),
                "standard base64 of at least 32 bytes",
            );
        }
        key
    }

    /// A duration that becomes a Redis TTL: at most [`MAX_REDIS_DURATION`].
    pub fn redis_duration(&mut self, name: &'static str) -> Option<Duration> {
        self.parse(
            name,
            "a positive duration of at most 10 years (87600h), such as `1m` or `720h`",
            |v| {
                humantime::parse_duration(v)
                    .ok()
                    .filter(|d| *d >= Duration::from_millis(1) && *d <= MAX_REDIS_DURATION)
            },
        )
    }

    pub fn bool(&mut self, name: &'static str) -> Option<bool> {
        self.parse(name, "`true` or `false`", |v| {
            match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Some(true),
                "false" | "0" | "no" => Some(false),
                _ => None,
            }
        })
    }

    pub fn bounded(&mut self, name: &'static str, max: u32) -> Option<u32> {
        self.integer(name, 1, max)
    }

    /// An integer from `min` to `max`.
    pub fn integer<T>(&mut self, name: &'static str, min: T, max: T) -> Option<T>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let expected = format!("an integer from {min} to {max}");
        self.parse(name, &expected, |v| {
            v.parse::<T>().ok().filter(|n| (min..=max).contains(n))
        })
    }

    /// Key prefixes and names: printable ASCII without spaces, at most 128 bytes.
    pub fn prefix(&mut self, name: &'static str) -> Option<String> {
        self.parse(
            name,
            "1 to 128 printable ASCII characters without spaces",
            |v| {
                (!v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
                    .then(|| v.to_owned())
            },
        )
    }

    /// Sentinel settings: the monitored name is required in sentinel mode and refused in the
    /// others; a Sentinel username needs a password.
    pub fn sentinel(&mut self, mode: Option<RedisMode>) -> Option<SentinelConfig> {
        let master = self.optional(REDIS_SENTINEL_MASTER);
        let username = self.optional(REDIS_SENTINEL_USERNAME);
        let password = self
            .optional(REDIS_SENTINEL_PASSWORD)
            .map(SecretString::from);
        match (mode, &master) {
            (Some(RedisMode::Sentinel), None) => self.problem(
                REDIS_SENTINEL_MASTER,
                None,
                "the monitored primary's name when AUTHSESSION_REDIS_MODE=sentinel",
            ),
            (Some(RedisMode::Standalone | RedisMode::Cluster), Some(name)) => self.problem(
                REDIS_SENTINEL_MASTER,
                Some(name.clone()),
                "unset unless AUTHSESSION_REDIS_MODE=sentinel",
            ),
            _ => {}
        }
        if password.is_none() && username.is_some() {
            self.problem(
                REDIS_SENTINEL_PASSWORD,
                None,
                "a password when AUTHSESSION_REDIS_SENTINEL_USERNAME is set",
            );
        }
        Some(SentinelConfig {
            master: master?,
            username,
            password,
        })
    }

    pub fn service(
        &mut self,
        mode: &'static str,
        url: &'static str,
        timeout: &'static str,
    ) -> Option<ServiceMode> {
        let rest = self.parse(mode, "`stub` or `rest`", |v| match v {
            "stub" => Some(false),
            "rest" => Some(true),
            _ => None,
        })?;
        if !rest {
            return Some(ServiceMode::Stub);
        }
        let base_url = match self.optional(url) {
            None => {
                self.problem(url, None, &format!("an http(s) URL when {mode}=rest"));
                None
            }
            Some(raw) => {
                let parsed = Url::parse(raw.trim())
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .map(|mut u| {
                        // A base with a path prefix (`http://host/users`) must keep it when the
                        // API paths are joined on: make it a directory.
                        if !u.path().ends_with('/') {
                            let path = format!("{}/", u.path());
                            u.set_path(&path);
                        }
                        u
                    });
                if parsed.is_none() {
                    self.problem(url, Some(raw), "an absolute http(s) URL");
                }
                parsed
            }
        };
        let request_timeout = match self.optional(timeout) {
            None => {
                self.problem(
                    timeout,
                    None,
                    &format!("a duration such as `2s` when {mode}=rest"),
                );
                None
            }
            Some(_) => self.duration(timeout),
        };
        Some(ServiceMode::Rest(RestTarget {
            base_url: base_url?,
            request_timeout: request_timeout?,
        }))
    }
}

pub fn valid_host_port(addr: &str) -> bool {
    match addr.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

/// `:8080` (all interfaces), `127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`.
pub fn parse_listen_addr(value: &str) -> Option<SocketAddr> {
    if let Some(port) = value.strip_prefix(':') {
        return port
            .parse::<u16>()
            .ok()
            .map(|p| SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), p));
    }
    if let Ok(addr) = SocketAddr::from_str(value) {
        return Some(addr);
    }
    let (host, port) = value.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    (host == "localhost").then(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}
