//! Sessions as every layer sees them: the record, its status, who revoked it and why, and the
//! position of a listing page. The store builds these from Redis; HTTP renders them.

use std::fmt;

use super::{ActorId, ChallengeId, Code, DeviceSessionId, Invalid, UserId};

/// A session's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    Active,
    Revoked,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Active => "active",
            SessionStatus::Revoked => "revoked",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw {
            "active" => Ok(SessionStatus::Active),
            "revoked" => Ok(SessionStatus::Revoked),
            _ => Err(Invalid("status must be `active` or `revoked`")),
        }
    }
}

/// A session's source-of-truth record (`P session:<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub device_session_id: DeviceSessionId,
    pub user_id: UserId,
    pub status: SessionStatus,
    /// As stored: a key accepted before a stricter check (weak keys are refused since issue 23)
    /// stays readable, so the session can still be listed and revoked.
    pub client_public_key: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    pub revoke_reason_code: Option<Code>,
    pub revoke_actor_type: Option<Code>,
    pub revoke_actor_id: Option<ActorId>,
    pub version: u64,
    pub challenge_id: Option<ChallengeId>,
}

/// Who revokes and why.
#[derive(Debug, Clone)]
pub struct Revocation {
    pub reason_code: Code,
    pub actor_type: Code,
    pub actor_id: Option<ActorId>,
}

/// What a revoke of one session did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    Revoked,
    AlreadyRevoked,
}

impl RevokeOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeOutcome::Revoked => "revoked",
            RevokeOutcome::AlreadyRevoked => "already_revoked",
        }
    }
}

/// What the user service answered to a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockOutcome {
    Blocked,
    AlreadyBlocked,
}

impl BlockOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockOutcome::Blocked => "blocked",
            BlockOutcome::AlreadyBlocked => "already_blocked",
        }
    }
}

/// A page of sessions, newest first.
#[derive(Debug, Clone)]
pub struct Page {
    pub sessions: Vec<Session>,
    pub next_cursor: Option<Cursor>,
}

/// Position after the last listed entry of a user's index, rendered
/// `<created_at_ms>.<device_session_id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    score: i64,
    member: String,
}

impl Cursor {
    pub fn new(score: i64, member: String) -> Self {
        Self { score, member }
    }

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        const BAD: Invalid = Invalid("cursor is malformed");
        let (score, member) = raw.split_once('.').ok_or(BAD)?;
        let member = DeviceSessionId::parse(member).map_err(|_| BAD)?;
        let score = score.parse().ok().filter(|s| *s >= 0).ok_or(BAD)?;
        Ok(Self {
            score,
            member: member.as_str().to_owned(),
        })
    }

    /// The index score (creation time in ms) of the last listed entry.
    pub fn score(&self) -> i64 {
        self.score
    }

    /// The device session id of the last listed entry.
    pub fn member(&self) -> &str {
        &self.member
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.score, self.member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let cursor = Cursor::parse("1700000000000.abc_DEF-1").unwrap();
        assert_eq!(cursor.to_string(), "1700000000000.abc_DEF-1");
        assert_eq!(
            (cursor.score(), cursor.member()),
            (1700000000000, "abc_DEF-1")
        );
        for bad in ["", "1", "-1.a", "x.a", "1.a/b", "1."] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses_parse_their_own_names_only() {
        for status in [SessionStatus::Active, SessionStatus::Revoked] {
            assert_eq!(SessionStatus::parse(status.as_str()), Ok(status));
        }
        assert!(SessionStatus::parse("Active").is_err());
    }
}
