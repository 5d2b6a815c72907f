//! Use cases, one file each. A flow validates nothing (its inputs are domain types), talks to the
//! store and the external services, and returns its own outcome; HTTP mapping happens once, in
//! `http::error`.

pub mod block;
pub mod confirm_email_code;
pub mod pacing;
pub mod revoke;
pub mod send_email_code;
pub mod sessions;

use std::sync::Arc;

use crate::clients::{self, MailSender, UserDirectory};
use crate::domain::CodeHasher;
use crate::store::{self, config_provider::ConfigProvider, Store};

/// What every flow needs.
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    pub users: Arc<dyn UserDirectory>,
    pub mail: Arc<dyn MailSender>,
    /// Runtime overrides of the per-user session limit and the attempt limit (`P config`).
    pub runtime_config: ConfigProvider,
    /// Hashes login codes with the server key (never sent to Redis).
    pub codes: CodeHasher,
    /// How long a block refuses confirms that were in flight when it happened.
    pub block_marker_ttl: std::time::Duration,
    /// Holds answers of sends that deliver nothing, so timing tells nothing.
    pub pacing: Arc<pacing::SendPacing>,
    /// Peers whose `X-Forwarded-For` names the client (`AUTHSESSION_TRUSTED_PROXIES`).
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
}

/// Why a send answers something other than its challenge id.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Over an admission limit: nothing was written; retry after this long.
    #[error("rate limited for {0:?}")]
    RateLimited(std::time::Duration),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl From<store::Error> for SendError {
    fn from(e: store::Error) -> Self {
        SendError::Unavailable(e.into())
    }
}

/// A fault in Redis or a dependency: answers `503 service_unavailable`, details only in the log.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Dependency(#[from] clients::Error),
}
