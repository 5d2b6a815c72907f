//! Use cases, one file each. A flow validates nothing (its inputs are domain types), talks to the
//! store and the external services, and returns its own outcome; HTTP mapping happens once, in
//! `http::error`.

pub mod admission;
pub mod block;
pub mod confirm_email_code;
pub mod pacing;
pub mod revoke;
pub mod send_email_code;
pub mod sessions;

use std::sync::Arc;

use crate::clients::{self, MailSender, UserDirectory};
use crate::domain::CodeHasher;
use crate::store::challenges::Rejection;
use crate::store::{self, config_provider::ConfigProvider, Store};

/// What every flow needs, behind one reference count: the router clones the state for every
/// request (more than once), so a clone is one atomic increment rather than one per service.
#[derive(Clone)]
pub struct Context(Arc<Services>);

impl Context {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for Context {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services and settings a [`Context`] shares.
pub struct Services {
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
}

/// Everything a use case can answer instead of its result. Each variant says what happened;
/// `http::error` maps each to a status and contract code, in one table.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such challenge")]
    ChallengeNotFound,
    #[error("the challenge has expired")]
    ChallengeExpired,
    #[error("the login code is not valid")]
    InvalidCode,
    #[error("the challenge's attempts are exhausted")]
    TooManyAttempts,
    #[error("the challenge is already confirmed")]
    ChallengeAlreadyConfirmed,
    #[error("the user is blocked")]
    UserBlocked,
    #[error("no such user")]
    UserNotFound,
    #[error("no such session")]
    SessionNotFound,
    /// Over an admission limit: nothing was written; retry after this long.
    #[error("rate limited for {0:?}")]
    RateLimited(std::time::Duration),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl Error {
    /// The outcome label of metrics and logs (the contract's error code, see `http::error`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Error::ChallengeNotFound => "challenge_not_found",
            Error::ChallengeExpired => "challenge_expired",
            Error::InvalidCode => "invalid_code",
            Error::TooManyAttempts => "too_many_attempts",
            Error::ChallengeAlreadyConfirmed => "challenge_already_confirmed",
            Error::UserBlocked => "user_blocked",
            Error::UserNotFound => "user_not_found",
            Error::SessionNotFound => "session_not_found",
            Error::RateLimited(_) => "too_many_requests",
            Error::Unavailable(_) => "service_unavailable",
        }
    }
}

impl From<Rejection> for Error {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::NotFound => Error::ChallengeNotFound,
            Rejection::Expired => Error::ChallengeExpired,
            Rejection::InvalidCode => Error::InvalidCode,
            Rejection::TooManyAttempts => Error::TooManyAttempts,
            Rejection::AlreadyConfirmed => Error::ChallengeAlreadyConfirmed,
        }
    }
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        Error::Unavailable(e.into())
    }
}

impl From<clients::Error> for Error {
    fn from(e: clients::Error) -> Self {
        Error::Unavailable(e.into())
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
