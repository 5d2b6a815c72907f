//! `UserDirectory`: who owns an e-mail address, whether they are blocked, and blocking them.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{call_json, endpoint, Error, Retry};
use crate::config::RestTarget;
use crate::domain::{BlockOutcome, Code, Email, UserId};

const SERVICE: &str = "user_service";
/// `api/v1/internal/users`, as path segments.
const USERS_PATH: [&str; 4] = ["api", "v1", "internal", "users"];

/// `resolve_by_email`: may this address receive a login code?
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resolution {
    Existing { user_id: String },
    Creatable,
    Blocked,
}

/// `ensure_by_email`: the account a confirmed login belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    User(UserId),
    Blocked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    Blocked,
}

#[async_trait]
pub trait UserDirectory: Send + Sync {
    /// Read: retried once on transient failures.
    async fn resolve_by_email(&self, email: &Email) -> Result<Resolution, Error>;
    /// Write: never retried.
    async fn ensure_by_email(&self, email: &Email) -> Result<Ensured, Error>;
    /// Read: `None` when the user does not exist.
    async fn get_user(&self, user_id: &UserId) -> Result<Option<UserStatus>, Error>;
    /// Write: `None` when the user does not exist.
    async fn block_user(
        &self,
        user_id: &UserId,
        reason: &Code,
    ) -> Result<Option<BlockOutcome>, Error>;
}

/// In-memory directory for development and tests: unknown addresses are creatable, `ensure`
/// creates `user-<first 16 hex of sha256(email)>`.
#[derive(Default)]
pub struct StubUserDirectory {
    state: Mutex<StubState>,
}

#[derive(Default)]
struct StubState {
    users: HashMap<String, String>,
    blocked_emails: HashSet<String>,
    blocked_users: HashSet<String>,
}

impl StubUserDirectory {
    pub fn new(blocked_emails: &[String]) -> Self {
        let stub = Self::default();
        stub.state.lock().unwrap().blocked_emails = blocked_emails.iter().cloned().collect();
        stub
    }

    fn user_id_for(email: &Email) -> String {
        format!(
            "user-{}",
            &hex::encode(Sha256::digest(email.as_str().as_bytes()))[..16]
        )
    }
}

#[async_trait]
impl UserDirectory for StubUserDirectory {
    async fn resolve_by_email(&self, email: &Email) -> Result<Resolution, Error> {
        let state = self.state.lock().unwrap();
        let user_id = state.users.get(email.as_str());
        let blocked = state.blocked_emails.contains(email.as_str())
            || user_id.is_some_and(|u| state.blocked_users.contains(u));
        Ok(match (blocked, user_id) {
            (true, _) => Resolution::Blocked,
            (false, Some(user_id)) => Resolution::Existing {
                user_id: user_id.clone(),
            },
            (false, None) => Resolution::Creatable,
        })
    }

    async fn ensure_by_email(&self, email: &Email) -> Result<Ensured, Error> {
        let mut state = self.state.lock().unwrap();
        if state.blocked_emails.contains(email.as_str()) {
            return Ok(Ensured::Blocked);
        }
        let user_id = state
            .users
            .entry(email.as_str().to_owned())
            .or_insert_with(|| Self::user_id_for(email))
            .clone();
        if state.blocked_users.contains(&user_id) {
            return Ok(Ensured::Blocked);
        }
        Ok(Ensured::User(
            UserId::parse(&user_id).expect("stub ids are valid"),
        ))
    }

    async fn get_user(&self, user_id: &UserId) -> Result<Option<UserStatus>, Error> {
        let state = self.state.lock().unwrap();
        let exists = state.users.values().any(|u| u == user_id.as_str());
        Ok(exists.then(|| {
            if state.blocked_users.contains(user_id.as_str()) {
                UserStatus::Blocked
            } else {
                UserStatus::Active
            }
        }))
    }

    async fn block_user(
        &self,
        user_id: &UserId,
        _reason: &Code,
    ) -> Result<Option<BlockOutcome>, Error> {
        let mut state = self.state.lock().unwrap();
        if !state.users.values().any(|u| u == user_id.as_str()) {
            return Ok(None);
        }
        Ok(Some(
            if state.blocked_users.insert(user_id.as_str().to_owned()) {
                BlockOutcome::Blocked
            } else {
                BlockOutcome::AlreadyBlocked
            },
        ))
    }
}

/// The user service over HTTP (SPEC section 7).
pub struct RestUserDirectory {
    http: reqwest::Client,
    target: RestTarget,
    /// The two fixed endpoints, resolved once (the per-user ones depend on the id).
    resolve_url: reqwest::Url,
    ensure_url: reqwest::Url,
}

#[derive(Serialize)]
struct EmailBody<'a> {
    email: &'a str,
}

#[derive(Serialize)]
struct BlockBody<'a> {
    reason_code: &'a str,
}

#[derive(Deserialize)]
struct EnsureReply {
    outcome: String,
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct UserReply {
    status: UserStatus,
}

#[derive(Deserialize)]
struct BlockReply {
    outcome: BlockOutcome,
}

impl RestUserDirectory {
    pub fn new(http: reqwest::Client, target: RestTarget) -> Self {
        let users = |last| endpoint(&target.base_url, &[&USERS_PATH[..], &[last]].concat());
        let resolve_url = users("resolve-by-email");
        let ensure_url = users("ensure-by-email");
        Self {
            http,
            target,
            resolve_url,
            ensure_url,
        }
    }

    /// `.../users/<user_id>[/<suffix>]`, the id pushed as one encoded segment.
    fn user_url(&self, user_id: &UserId, suffix: Option<&str>) -> reqwest::Url {
        let mut segments = USERS_PATH.to_vec();
        segments.push(user_id.as_str());
        segments.extend(suffix);
        endpoint(&self.target.base_url, &segments)
    }

    fn body_error(detail: &str) -> Error {
        Error::Body {
            service: SERVICE,
            detail: detail.to_owned(),
        }
    }
}

#[async_trait]
impl UserDirectory for RestUserDirectory {
    async fn resolve_by_email(&self, email: &Email) -> Result<Resolution, Error> {
        let url = &self.resolve_url;
        let body = EmailBody {
            email: email.as_str(),
        };
        let reply: Option<Resolution> = call_json(
            SERVICE,
            || self.http.post(url.clone()).json(&body),
            self.target.request_timeout,
            Retry::OnceOnTransient,
        )
        .await?;
        match reply {
            Some(Resolution::Existing { user_id }) if UserId::parse(&user_id).is_err() => Err(
                Self::body_error("resolve-by-email returned a malformed user_id"),
            ),
            Some(resolution) => Ok(resolution),
            None => Err(Error::Status {
                service: SERVICE,
                status: 404,
            }),
        }
    }

    async fn ensure_by_email(&self, email: &Email) -> Result<Ensured, Error> {
        let url = &self.ensure_url;
        let body = EmailBody {
            email: email.as_str(),
        };
        let reply: Option<EnsureReply> = call_json(
            SERVICE,
            || self.http.post(url.clone()).json(&body),
            self.target.request_timeout,
            Retry::Never,
        )
        .await?;
        let reply = reply.ok_or(Error::Status {
            service: SERVICE,
            status: 404,
        })?;
        match (reply.outcome.as_str(), reply.user_id) {
            ("blocked", _) => Ok(Ensured::Blocked),
            ("existing" | "created", Some(user_id)) => UserId::parse(&user_id)
                .map(Ensured::User)
                .map_err(|_| Self::body_error("ensure-by-email returned a malformed user_id")),
            _ => Err(Self::body_error(
                "ensure-by-email returned an unknown outcome",
            )),
        }
    }

    async fn get_user(&self, user_id: &UserId) -> Result<Option<UserStatus>, Error> {
        let url = self.user_url(user_id, None);
        let reply: Option<UserReply> = call_json(
            SERVICE,
            || self.http.get(url.clone()),
            self.target.request_timeout,
            Retry::OnceOnTransient,
        )
        .await?;
        Ok(reply.map(|r| r.status))
    }

    async fn block_user(
        &self,
        user_id: &UserId,
        reason: &Code,
    ) -> Result<Option<BlockOutcome>, Error> {
        let url = self.user_url(user_id, Some("block"));
        let body = BlockBody {
            reason_code: reason.as_str(),
        };
        let reply: Option<BlockReply> = call_json(
            SERVICE,
            || self.http.post(url.clone()).json(&body),
            self.target.request_timeout,
            Retry::Never,
        )
        .await?;
        Ok(reply.map(|r| r.outcome))
    }
}
