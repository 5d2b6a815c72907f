//! The configuration's sections as read: `read` parses each variable of a section (recording a
//! problem for every bad one, in the order the variables are read), `finish` builds the section's
//! typed value from them. `Config::from_source` runs the rules that tie variables together in
//! between, and finishes only when no problem was recorded.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

mod http;
mod redis;

use super::parse::{parse_listen_addr, valid_host_port, Parser};
use super::*;
use crate::domain::Email;
pub(super) use http::HttpSection;
pub(super) use redis::RedisSection;

pub(super) struct GatewaySection {
    pub session_key_prefix: Option<String>,
    pub events_stream: Option<String>,
    events_maxlen: Option<u64>,
    event_format: Option<EventFormat>,
}

impl GatewaySection {
    pub fn read(p: &mut Parser) -> Self {
        Self {
            session_key_prefix: p.prefix(GATEWAY_SESSION_KEY_PREFIX),
            events_stream: p.prefix(GATEWAY_SESSION_EVENTS_STREAM),
            events_maxlen: p.parse(
                GATEWAY_SESSION_EVENTS_MAXLEN,
                "an integer from 1000 to 1000000000",
                |v| {
                    v.parse::<u64>()
                        .ok()
                        .filter(|n| (1000..=MAX_EVENTS_MAXLEN).contains(n))
                },
            ),
            event_format: p.parse(
                GATEWAY_EVENT_FORMAT,
                "`snapshot` or `compact`",
                |v| match v {
                    "snapshot" => Some(EventFormat::Snapshot),
                    "compact" => Some(EventFormat::Compact),
                    _ => None,
                },
            ),
        }
    }

    pub fn finish(self) -> Option<GatewayConfig> {
        Some(GatewayConfig {
            session_key_prefix: self.session_key_prefix?,
            events_stream: self.events_stream?,
            events_maxlen: self.events_maxlen?,
            event_format: self.event_format?,
        })
    }
}

pub(super) struct ServicesSection {
    user_service: Option<ServiceMode>,
    mail_service: Option<ServiceMode>,
    stub_blocked_emails: Vec<String>,
}

impl ServicesSection {
    pub fn read(p: &mut Parser) -> Self {
        Self {
            user_service: p.service(
                USER_SERVICE_MODE,
                USER_SERVICE_BASE_URL,
                USER_SERVICE_REQUEST_TIMEOUT,
            ),
            mail_service: p.service(
                MAIL_SERVICE_MODE,
                MAIL_SERVICE_BASE_URL,
                MAIL_SERVICE_REQUEST_TIMEOUT,
            ),
            stub_blocked_emails: p
                .optional(STUB_BLOCKED_EMAILS)
                .map(|v| {
                    // The canonical form, as the stub directory is asked with it.
                    v.split(',')
                        .filter(|e| !e.trim().is_empty())
                        .map(|e| {
                            Email::parse(e)
                                .map_or_else(|_| e.trim().to_owned(), |e| e.as_str().to_owned())
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Whether a dependency is asked to run in `rest` mode (a real environment), read from the
    /// variables themselves so that it holds even when their other settings are wrong.
    pub fn rest(p: &Parser) -> bool {
        [USER_SERVICE_MODE, MAIL_SERVICE_MODE]
            .iter()
            .any(|mode| p.env.get(mode).is_some_and(|v| v.trim() == "rest"))
    }

    /// (user service, mail service, stub-blocked addresses).
    pub fn finish(self) -> Option<(ServiceMode, ServiceMode, Vec<String>)> {
        Some((
            self.user_service?,
            self.mail_service?,
            self.stub_blocked_emails,
        ))
    }
}
