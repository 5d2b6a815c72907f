//! The session protocol as a state machine at the level of script calls: every script call is
//! one atomic step whose effect is the script's decision table (abstracted: ids are small
//! numbers, time is the blocked marker's life), and between them the Rust flows' own steps (the
//! user service's answer, the confirm's steps, the revoke-all loop). `stateright` explores every
//! interleaving of the actors within the bounds of a [`Protocol`]; `conformance` replays a path
//! to every reachable state against the real scripts on a real Redis, so the tables cannot drift
//! from the Lua.
//!
//! One file per actor: `scripts` (each script's decision table), `clients` (a confirm request's
//! steps), `admin` (revoke, revoke-all, block, republish), `faults` (restarts, the marker's
//! expiry), and `checker` (the actions each state allows, the step bookkeeping, the properties).

mod admin;
mod checker;
mod clients;
mod faults;
mod scripts;

use std::collections::{BTreeMap, BTreeSet};

/// Challenges are 0 and 1 (address `a<c>`, both mapped to user 0 by a consistent user service).
pub type Challenge = u8;
/// User 0 is the address's user; user 1 is the other id an inconsistent user service answers.
pub type User = u8;
/// A session id is derived from its challenge and user, as `Keys::device_session_id` does.
pub type Sid = (Challenge, User);

/// The user every block is about.
pub const BLOCKED_USER: User = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// One script per confirm (`challenge_confirm`).
    SingleTag,
    /// `challenge_claim`, `session_create`, `challenge_mark_confirmed`.
    Partitioned,
}

/// The implementation, or a known-bad variant the checker must catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    Correct,
    /// The old confirm: no blocked-marker check, no verdict age.
    ConfirmIgnoresMarker,
    /// The session step without the challenge's check: single-tag, the confirm opens a session
    /// whatever the challenge's state; partitioned, no claim before `session_create`.
    SessionWithoutChallengeCheck,
}

/// What one client does: confirm `challenge` with its code or a wrong one, with its own key
/// (the client's index), retrying identically after a lost reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Plan {
    pub challenge: Challenge,
    pub right_code: bool,
}

/// An operator action the admin may take (at most [`Protocol::admin_ops`] of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdminOp {
    /// `session_revoke` of one session (any that has a record when the admin starts).
    Revoke,
    /// Revoke-all of the user, in batches of one.
    RevokeAll,
    /// Block: the user service first, then revoke-all with the blocked marker.
    Block,
}

/// The bounds of one exhaustive check.
#[derive(Clone, Debug)]
pub struct Protocol {
    pub layout: Layout,
    pub variant: Variant,
    /// Per client, the plans it may choose from.
    pub clients: Vec<Vec<Plan>>,
    pub admin: Vec<AdminOp>,
    pub admin_ops: u8,
    /// `session_projection_republish` calls the repairer may make.
    pub republishes: u8,
    /// Faults: a reply lost or a crash between steps (the request is retried identically), a
    /// Redis restart that loses the last write, the blocked marker outliving its life.
    pub faults: u8,
    /// `AUTHSESSION_REDIS_MIN_REPLICA_ACKS` ≥ 1: a write lost in a restart was never
    /// acknowledged, so its caller retries; 0: the caller may have acted on it.
    pub replica_acks: bool,
    /// The user service may answer user 1 for an address of user 0.
    pub inconsistent_users: bool,
    /// Whether a restart may lose the last write.
    pub restarts: bool,
    /// Whether the blocked marker may expire (with the verdicts taken before it was set).
    pub marker_expiry: bool,
    pub max_active: u8,
    pub max_attempts: u8,
    /// With replica acks, whether a call's `WAIT` covers every write before it, not only the
    /// connection's own: then an answer reporting state the call did not write (a replay,
    /// `already_revoked`, `current`) is acknowledged only once that state is replicated. Redis 7
    /// does this (a script call sets the connection's replication offset to the primary's;
    /// `regressions` checks it on a real replica); `false` shows what the model finds without.
    pub fence: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChallengeStatus {
    Sent,
    Confirmed { sid: Sid, key: u8 },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChallengeRec {
    pub status: ChallengeStatus,
    pub attempts: u8,
    /// (Partitioned) `claimed_by`/`claimed_for`.
    pub claim: Option<Sid>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionRec {
    pub key: u8,
    pub active: bool,
    pub version: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Snapshot {
    pub active: bool,
    pub version: u8,
}

/// Redis, abstracted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Db {
    pub challenges: [ChallengeRec; 2],
    pub sessions: BTreeMap<Sid, SessionRec>,
    pub snapshots: BTreeMap<Sid, Snapshot>,
    /// Every user's active index, oldest first.
    pub active: Vec<Sid>,
    pub marker: [bool; 2],
}

/// A client's progress through one confirm request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// No plan chosen yet.
    Start,
    /// About to call `challenge_verify` (first try, or an identical retry).
    Verify,
    /// The code is right: ask the user service.
    Ensure(Verdict),
    /// Single-tag: `challenge_confirm`; partitioned: `challenge_claim` (or, in the variant
    /// without the challenge check, `session_create` straight away).
    Open(Verdict, User),
    /// (Partitioned) claimed: `session_create`.
    Create(Verdict, User),
    /// (Partitioned) created: `challenge_mark_confirmed`.
    Mark(User),
    /// An identical earlier confirm succeeded: republish its projection.
    Repair(Sid),
    Done(Outcome),
}

/// A verdict of `challenge_verify` held by a client: whether it was taken before the blocked
/// marker was set, and whether it has outlived the marker's life since.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Verdict {
    pub before_marker: bool,
    pub stale: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Session(Sid),
    Refused,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Client {
    pub plan: Option<Plan>,
    pub step: Step,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Admin {
    Idle {
        ops_left: u8,
    },
    /// Revoke-all (or block) of [`BLOCKED_USER`] running: the next batch's number.
    Batches {
        block: bool,
        batch: u8,
        ops_left: u8,
    },
}

/// What a restart that loses a write goes back to: Redis and the history before it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LastWrite {
    pub db: Db,
    pub ever_revoked: BTreeSet<Sid>,
    pub highest_version: BTreeMap<Sid, u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub db: Db,
    pub clients: Vec<Client>,
    pub admin: Admin,
    pub users_blocked: bool,
    pub block_started: bool,
    pub block_done: bool,
    pub republishes_left: u8,
    pub faults_left: u8,
    /// Without replica acks: Redis before the last write, which a restart may lose. With: before
    /// a write whose acknowledgement failed and that no acknowledged call has covered since.
    pub losable: Option<Box<LastWrite>>,
    /// History: sessions whose record or snapshot has been revoked.
    pub ever_revoked: BTreeSet<Sid>,
    /// History: the highest snapshot version each session's projection showed.
    pub highest_version: BTreeMap<Sid, u8>,
    /// History: sessions whose revoke the admin saw acknowledged.
    pub acked_revokes: BTreeSet<Sid>,
    /// History: the user service answered user 1.
    pub answered_other_user: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Choose(usize, Plan),
    /// The client's next script call (or the user service's answer, for `Ensure`).
    Advance(usize),
    Ensure(usize, Option<User>),
    Revoke(Sid),
    StartRevokeAll {
        block: bool,
    },
    Batch,
    Republish(Sid),
    /// A reply lost or a crash: the client's request is retried identically from the start.
    Abort(usize),
    /// (Replica acks on.) The client's next script call runs on the primary, but too few
    /// replicas acknowledge it in time: the call answers 503 and the client retries; what it
    /// wrote may be lost in a failover until an acknowledged call covers it.
    AckFails(usize),
    /// A Redis restart that loses the last write.
    Restart,
    /// The blocked marker outlives its life; verdicts taken before it was set are stale.
    MarkerExpires,
}

/// A script reply, abstracted: what the conformance check compares with the real reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reply {
    Ok,
    Confirmed(Sid),
    Rejected(&'static str),
    Created(Sid),
    Claimed,
    OtherSession,
    OtherKey,
    UserBlocked,
    VerdictExpired,
    /// The script fails (an error reply): the service answers 503.
    Fails,
    Marked,
    Revoked,
    AlreadyRevoked,
    NotFound,
    Batch {
        revoked: u8,
        remaining: u8,
    },
    Repaired,
    Current,
}
