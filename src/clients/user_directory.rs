//! `UserDirectory`: who owns an e-mail address, whether they are blocked, and blocking them.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{call_json, call_json_optional, endpoint, Error, Retry};
use crate::config::RestTarget;
use crate::domain::{BlockOutcome, Code, Email, UserId};

const SERVICE: &str = "user_service";
/// `api/v1/internal/users`, as path segments.
const USERS_PATH: [&str; 4] = ["api", "v1", "internal", "users"];

/// `resolve_by_email`: may this address receive a login code?
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resolution {
    Existing { user_id: UserId },
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
                user_id: UserId::parse(user_id).expect("the stub makes valid ids"),
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

/// What `ensure-by-email` answers; serde refuses any other shape (a malformed `user_id` too).
#[derive(Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum EnsureReply {
    Existing { user_id: UserId },
    Created { user_id: UserId },
    Blocked,
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
}

#[async_trait]
impl UserDirectory for RestUserDirectory {
    async fn resolve_by_email(&self, email: &Email) -> Result<Resolution, Error> {
        let url = &self.resolve_url;
        let body = EmailBody {
            email: email.as_str(),
        };
        call_json(
            SERVICE,
            || self.http.post(url.clone()).json(&body),
            self.target.request_timeout,
            Retry::OnceOnTransient,
        )
        .await
    }

    async fn ensure_by_email(&self, email: &Email) -> Result<Ensured, Error> {
        let url = &self.ensure_url;
        let body = EmailBody {
            email: email.as_str(),
        };
        let reply: EnsureReply = call_json(
            SERVICE,
            || self.http.post(url.clone()).json(&body),
            self.target.request_timeout,
            Retry::Never,
        )
        .await?;
        Ok(match reply {
            EnsureReply::Existing { user_id } | EnsureReply::Created { user_id } => {
                Ensured::User(user_id)
            }
            EnsureReply::Blocked => Ensured::Blocked,
        })
    }

    async fn get_user(&self, user_id: &UserId) -> Result<Option<UserStatus>, Error> {
        let url = self.user_url(user_id, None);
        let reply: Option<UserReply> = call_json_optional(
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
        let reply: Option<BlockReply> = call_json_optional(
            SERVICE,
            || self.http.post(url.clone()).json(&body),
            self.target.request_timeout,
            Retry::Never,
        )
        .await?;
        Ok(reply.map(|r| r.outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The user service's replies are read by serde into typed values: a missing or malformed
    /// `user_id` and an unknown outcome are refused (a `bad_body` failure), never passed on.
    #[test]
    fn replies_are_typed_and_malformed_ones_refused() {
        let ensure = |json: &str| serde_json::from_str::<EnsureReply>(json);
        assert!(matches!(
            ensure(r#"{"outcome":"created","user_id":"user-1"}"#),
            Ok(EnsureReply::Created { .. })
        ));
        assert!(matches!(
            ensure(r#"{"outcome":"blocked"}"#),
            Ok(EnsureReply::Blocked)
        ));
        for bad in [
            r#"{"outcome":"existing"}"#,
            r#"{"outcome":"created","user_id":"../admin"}"#,
            r#"{"outcome":"maybe","user_id":"user-1"}"#,
        ] {
            assert!(ensure(bad).is_err(), "{bad}");
        }
        let resolve = |json: &str| serde_json::from_str::<Resolution>(json);
        assert!(resolve(r#"{"kind":"existing","user_id":"user-1"}"#).is_ok());
        assert!(resolve(r#"{"kind":"existing","user_id":"a/b"}"#).is_err());
    }
}
