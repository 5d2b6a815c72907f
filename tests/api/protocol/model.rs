//! The session protocol as a state machine at the level of script calls: every script call is
//! one atomic step whose effect is the script's decision table (abstracted: ids are small
//! numbers, time is the blocked marker's life), and between them the Rust flows' own steps (the
//! user service's answer, the confirm's steps, the revoke-all loop). `stateright` explores every
//! interleaving of the actors within the bounds of a [`Protocol`]; `conformance` replays a path
//! to every reachable state against the real scripts on a real Redis, so the tables cannot drift
//! from the Lua.

use std::collections::{BTreeMap, BTreeSet};

use stateright::{Model, Property};

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

impl Db {
    fn new() -> Self {
        let challenge = ChallengeRec {
            status: ChallengeStatus::Sent,
            attempts: 0,
            claim: None,
        };
        Db {
            challenges: [challenge.clone(), challenge],
            sessions: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            active: Vec::new(),
            marker: [false; 2],
        }
    }

    fn revoke(&mut self, sid: Sid) {
        let rec = self.sessions.get_mut(&sid).expect("a record");
        rec.active = false;
        rec.version += 1;
        self.snapshots.insert(
            sid,
            Snapshot {
                active: false,
                version: rec.version,
            },
        );
        self.active.retain(|s| *s != sid);
    }

    /// `include/session_open.lua`: the user's oldest sessions over the limit evicted, the
    /// session, its snapshot and its index entry written.
    fn open(&mut self, sid: Sid, key: u8, max_active: u8) {
        let mine: Vec<Sid> = self
            .active
            .iter()
            .copied()
            .filter(|s| s.1 == sid.1)
            .collect();
        let excess = (mine.len() + 1).saturating_sub(usize::from(max_active));
        for evicted in mine.into_iter().take(excess) {
            self.revoke(evicted);
        }
        self.sessions.insert(
            sid,
            SessionRec {
                key,
                active: true,
                version: 1,
            },
        );
        self.snapshots.insert(
            sid,
            Snapshot {
                active: true,
                version: 1,
            },
        );
        self.active.push(sid);
    }
}

/// `include/challenge.lua`'s table (no expiry: the model's time is the blocked marker's life).
enum Decision {
    Ok,
    Confirmed(Sid),
    /// The word, and whether the code was a wrong guess that spends an attempt.
    Rejected(&'static str, bool),
}

fn decide(c: &ChallengeRec, right_code: bool, key: u8, max_attempts: u8) -> Decision {
    if c.attempts >= max_attempts {
        return Decision::Rejected("too_many_attempts", false);
    }
    match (&c.status, right_code) {
        (ChallengeStatus::Confirmed { sid, key: stored }, true) if *stored == key => {
            Decision::Confirmed(*sid)
        }
        (ChallengeStatus::Confirmed { .. }, right) => {
            Decision::Rejected("already_confirmed", !right)
        }
        (ChallengeStatus::Sent, true) => Decision::Ok,
        (ChallengeStatus::Sent, false) => Decision::Rejected("invalid_code", true),
    }
}

impl Protocol {
    /// `challenge_verify` for `client`'s plan.
    pub fn verify(&self, db: &mut Db, client: usize, plan: Plan) -> Reply {
        let c = &mut db.challenges[usize::from(plan.challenge)];
        match decide(c, plan.right_code, client as u8, self.max_attempts) {
            Decision::Ok => Reply::Ok,
            Decision::Confirmed(sid) => Reply::Confirmed(sid),
            Decision::Rejected(word, spends) => {
                c.attempts += u8::from(spends);
                Reply::Rejected(word)
            }
        }
    }

    /// `challenge_confirm` (single-tag).
    pub fn confirm(&self, db: &mut Db, client: usize, plan: Plan, v: Verdict, user: User) -> Reply {
        let sid = (plan.challenge, user);
        let key = client as u8;
        let c = &db.challenges[usize::from(plan.challenge)];
        // Single-tag session ids are drawn per request, so a confirm never carries the id of
        // one that committed (the script's `created` replay is the pool's resend of one call,
        // below the model's level): a retry with the same key gets the committed session. The
        // known-bad variant judges the code as if the challenge were still open.
        let decision = if self.variant == Variant::SessionWithoutChallengeCheck {
            let open = ChallengeRec {
                status: ChallengeStatus::Sent,
                ..c.clone()
            };
            decide(&open, plan.right_code, key, self.max_attempts)
        } else {
            decide(c, plan.right_code, key, self.max_attempts)
        };
        match decision {
            Decision::Ok => {}
            Decision::Confirmed(stored) => return Reply::Confirmed(stored),
            Decision::Rejected(word, _) => return Reply::Rejected(word),
        }
        if let Some(refused) = self.marker_and_age(db, user, v) {
            return refused;
        }
        if db.sessions.contains_key(&sid) {
            return Reply::Fails; // "device session id already in use"
        }
        db.open(sid, key, self.max_active);
        db.challenges[usize::from(plan.challenge)].status = ChallengeStatus::Confirmed { sid, key };
        Reply::Created(sid)
    }

    fn marker_and_age(&self, db: &Db, user: User, v: Verdict) -> Option<Reply> {
        if self.variant == Variant::ConfirmIgnoresMarker {
            return None;
        }
        if db.marker[usize::from(user)] {
            return Some(Reply::UserBlocked);
        }
        v.stale.then_some(Reply::VerdictExpired)
    }

    /// `challenge_claim` (partitioned).
    pub fn claim(db: &mut Db, sid: Sid) -> Reply {
        let c = &mut db.challenges[usize::from(sid.0)];
        let holder = match c.status {
            ChallengeStatus::Confirmed { sid, .. } => Some(sid),
            ChallengeStatus::Sent => c.claim,
        };
        match holder {
            Some(holder) if holder == sid => Reply::Claimed,
            Some(_) => Reply::OtherSession,
            None => {
                c.claim = Some(sid);
                Reply::Claimed
            }
        }
    }

    /// `session_create` (partitioned).
    pub fn create(&self, db: &mut Db, client: usize, sid: Sid, v: Verdict) -> Reply {
        let key = client as u8;
        if let Some(existing) = db.sessions.get(&sid) {
            return if existing.key == key {
                Reply::Created(sid)
            } else {
                Reply::OtherKey
            };
        }
        if let Some(refused) = self.marker_and_age(db, sid.1, v) {
            return refused;
        }
        db.open(sid, key, self.max_active);
        Reply::Created(sid)
    }

    /// `challenge_mark_confirmed` (partitioned).
    pub fn mark(db: &mut Db, client: usize, sid: Sid) -> Reply {
        let c = &mut db.challenges[usize::from(sid.0)];
        match c.status {
            ChallengeStatus::Confirmed { sid: stored, .. } if stored == sid => {
                return Reply::Marked
            }
            ChallengeStatus::Confirmed { .. } => return Reply::OtherSession,
            ChallengeStatus::Sent => {}
        }
        if c.claim.is_some_and(|claim| claim != sid) {
            return Reply::OtherSession;
        }
        c.status = ChallengeStatus::Confirmed {
            sid,
            key: client as u8,
        };
        Reply::Marked
    }

    /// `session_revoke`.
    pub fn revoke(db: &mut Db, sid: Sid) -> Reply {
        let Some(rec) = db.sessions.get(&sid).copied() else {
            return Reply::NotFound;
        };
        if rec.active {
            db.revoke(sid);
            return Reply::Revoked;
        }
        // Already revoked: heal the projection and the index.
        let healed = Snapshot {
            active: false,
            version: rec.version,
        };
        if db.snapshots.get(&sid) != Some(&healed) {
            db.snapshots.insert(sid, healed);
        }
        db.active.retain(|s| *s != sid);
        Reply::AlreadyRevoked
    }

    /// One `user_sessions_revoke` batch of one session; batch 1 of a block sets the marker.
    pub fn batch(db: &mut Db, user: User, block: bool, batch: u8) -> Reply {
        if block && batch == 1 {
            db.marker[usize::from(user)] = true;
        }
        let next = db.active.iter().copied().find(|s| s.1 == user);
        let revoked = match next {
            Some(sid) => {
                if db.sessions.get(&sid).is_some_and(|r| r.active) {
                    db.revoke(sid);
                    1
                } else {
                    db.active.retain(|s| *s != sid);
                    0
                }
            }
            None => 0,
        };
        let remaining = db.active.iter().filter(|s| s.1 == user).count() as u8;
        Reply::Batch { revoked, remaining }
    }

    /// `session_projection_republish`.
    pub fn republish(db: &mut Db, sid: Sid) -> Reply {
        let Some(rec) = db.sessions.get(&sid).copied() else {
            return Reply::NotFound;
        };
        let current = db.snapshots.get(&sid);
        if current.is_some_and(|s| s.version >= rec.version) {
            return Reply::Current;
        }
        db.snapshots.insert(
            sid,
            Snapshot {
                active: rec.active,
                version: rec.version,
            },
        );
        Reply::Repaired
    }

    /// Applies one client step; its script's reply (`None`: no script ran).
    pub fn client_step(&self, s: &mut State, i: usize) -> Option<Reply> {
        let client = s.clients[i];
        let plan = client.plan?;
        let (step, reply) = match client.step {
            Step::Start | Step::Done(_) | Step::Ensure(_) => return None,
            Step::Verify => {
                let reply = self.verify(&mut s.db, i, plan);
                let step = match reply {
                    Reply::Ok => Step::Ensure(Verdict::default()),
                    Reply::Confirmed(sid) => Step::Repair(sid),
                    _ => Step::Done(Outcome::Refused),
                };
                (step, reply)
            }
            Step::Open(v, user) => {
                let sid = (plan.challenge, user);
                match (self.layout, self.variant) {
                    (Layout::SingleTag, _) => {
                        let reply = self.confirm(&mut s.db, i, plan, v, user);
                        let step = match reply {
                            Reply::Created(sid) | Reply::Confirmed(sid) => {
                                Step::Done(Outcome::Session(sid))
                            }
                            // 503: the client retries identically.
                            Reply::VerdictExpired | Reply::Fails => Step::Verify,
                            _ => Step::Done(Outcome::Refused),
                        };
                        (step, reply)
                    }
                    (Layout::Partitioned, Variant::SessionWithoutChallengeCheck) => {
                        let reply = self.create(&mut s.db, i, sid, v);
                        (self.after_create(reply, user), reply)
                    }
                    (Layout::Partitioned, _) => {
                        let reply = Self::claim(&mut s.db, sid);
                        let step = match reply {
                            Reply::Claimed => Step::Create(v, user),
                            _ => Step::Done(Outcome::Refused),
                        };
                        (step, reply)
                    }
                }
            }
            Step::Create(v, user) => {
                let reply = self.create(&mut s.db, i, (plan.challenge, user), v);
                (self.after_create(reply, user), reply)
            }
            Step::Mark(user) => {
                let sid = (plan.challenge, user);
                let reply = Self::mark(&mut s.db, i, sid);
                let step = match reply {
                    Reply::Marked => Step::Done(Outcome::Session(sid)),
                    _ => Step::Done(Outcome::Refused),
                };
                (step, reply)
            }
            Step::Repair(sid) => {
                let reply = Self::republish(&mut s.db, sid);
                (Step::Done(Outcome::Session(sid)), reply)
            }
        };
        s.clients[i].step = step;
        Some(reply)
    }

    fn after_create(&self, reply: Reply, user: User) -> Step {
        match reply {
            Reply::Created(_) => Step::Mark(user),
            Reply::VerdictExpired => Step::Verify,
            _ => Step::Done(Outcome::Refused),
        }
    }

    /// Sessions the admin's single revoke may target.
    fn sids() -> [Sid; 4] {
        [(0, 0), (0, 1), (1, 0), (1, 1)]
    }
}

fn set_verdict(step: &mut Step, f: impl Fn(&mut Verdict)) {
    match step {
        Step::Ensure(v) | Step::Open(v, _) | Step::Create(v, _) => f(v),
        _ => {}
    }
}

fn in_flight(step: Step) -> bool {
    !matches!(step, Step::Start | Step::Done(_))
}

impl Model for Protocol {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            db: Db::new(),
            clients: vec![
                Client {
                    plan: None,
                    step: Step::Start,
                };
                self.clients.len()
            ],
            admin: Admin::Idle {
                ops_left: self.admin_ops,
            },
            users_blocked: false,
            block_started: false,
            block_done: false,
            republishes_left: self.republishes,
            faults_left: self.faults,
            losable: None,
            ever_revoked: BTreeSet::new(),
            highest_version: BTreeMap::new(),
            acked_revokes: BTreeSet::new(),
            answered_other_user: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        for (i, client) in s.clients.iter().enumerate() {
            match client.step {
                Step::Start => {
                    for plan in &self.clients[i] {
                        actions.push(Action::Choose(i, *plan));
                    }
                }
                Step::Ensure(_) => {
                    if !s.users_blocked {
                        actions.push(Action::Ensure(i, Some(0)));
                    }
                    if s.users_blocked {
                        actions.push(Action::Ensure(i, None));
                    }
                    if self.inconsistent_users {
                        actions.push(Action::Ensure(i, Some(1)));
                    }
                }
                Step::Done(_) => {}
                _ => actions.push(Action::Advance(i)),
            }
            if s.faults_left > 0 && in_flight(client.step) && client.step != Step::Verify {
                actions.push(Action::Abort(i));
            }
            if s.faults_left > 0
                && self.replica_acks
                && !matches!(client.step, Step::Start | Step::Done(_) | Step::Ensure(_))
            {
                actions.push(Action::AckFails(i));
            }
        }
        match s.admin {
            Admin::Idle { ops_left } if ops_left > 0 => {
                for op in &self.admin {
                    match op {
                        AdminOp::Revoke => {
                            for sid in Protocol::sids() {
                                if s.db.sessions.contains_key(&sid) {
                                    actions.push(Action::Revoke(sid));
                                }
                            }
                        }
                        AdminOp::RevokeAll => actions.push(Action::StartRevokeAll { block: false }),
                        AdminOp::Block => actions.push(Action::StartRevokeAll { block: true }),
                    }
                }
            }
            Admin::Batches { .. } => actions.push(Action::Batch),
            Admin::Idle { .. } => {}
        }
        if s.republishes_left > 0 {
            for sid in Protocol::sids() {
                if s.db.sessions.contains_key(&sid) {
                    actions.push(Action::Republish(sid));
                }
            }
        }
        if s.faults_left > 0 {
            if self.restarts && s.losable.is_some() {
                actions.push(Action::Restart);
            }
            if self.marker_expiry && s.db.marker.iter().any(|m| *m) {
                actions.push(Action::MarkerExpires);
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        let before = LastWrite {
            db: s.db.clone(),
            ever_revoked: s.ever_revoked.clone(),
            highest_version: s.highest_version.clone(),
        };
        // Whether this action is a script call whose success was acknowledged, and whether its
        // acknowledgement failed.
        let (mut acknowledged, mut ack_failed) = (false, false);
        match action {
            Action::Choose(i, plan) => {
                s.clients[i] = Client {
                    plan: Some(plan),
                    step: Step::Verify,
                };
            }
            Action::Advance(i) => {
                self.client_step(&mut s, i)?;
                acknowledged = true;
            }
            Action::AckFails(i) => {
                self.client_step(&mut s, i)?;
                s.faults_left -= 1;
                s.clients[i].step = Step::Verify;
                ack_failed = true;
            }
            Action::Ensure(i, user) => {
                let Step::Ensure(v) = s.clients[i].step else {
                    return None;
                };
                s.clients[i].step = match user {
                    Some(user) => {
                        s.answered_other_user |= user != 0;
                        Step::Open(v, user)
                    }
                    None => Step::Done(Outcome::Refused),
                };
            }
            Action::Revoke(sid) => {
                let reply = Protocol::revoke(&mut s.db, sid);
                acknowledged = true;
                if matches!(reply, Reply::Revoked | Reply::AlreadyRevoked) {
                    s.acked_revokes.insert(sid);
                }
                let Admin::Idle { ops_left } = s.admin else {
                    return None;
                };
                s.admin = Admin::Idle {
                    ops_left: ops_left - 1,
                };
            }
            Action::StartRevokeAll { block } => {
                let Admin::Idle { ops_left } = s.admin else {
                    return None;
                };
                if block {
                    // The user service first, as `flows::block` does.
                    s.users_blocked = true;
                    s.block_started = true;
                }
                s.admin = Admin::Batches {
                    block,
                    batch: 1,
                    ops_left: ops_left - 1,
                };
            }
            Action::Batch => {
                let Admin::Batches {
                    block,
                    batch,
                    ops_left,
                } = s.admin
                else {
                    return None;
                };
                let had_marker = s.db.marker[usize::from(BLOCKED_USER)];
                acknowledged = true;
                let Reply::Batch { remaining, .. } =
                    Protocol::batch(&mut s.db, BLOCKED_USER, block, batch)
                else {
                    unreachable!()
                };
                if !had_marker && s.db.marker[usize::from(BLOCKED_USER)] {
                    for c in &mut s.clients {
                        set_verdict(&mut c.step, |v| v.before_marker = true);
                    }
                }
                s.admin = if remaining == 0 {
                    s.block_done |= block;
                    Admin::Idle { ops_left }
                } else {
                    Admin::Batches {
                        block,
                        batch: batch + 1,
                        ops_left,
                    }
                };
            }
            Action::Republish(sid) => {
                Protocol::republish(&mut s.db, sid);
                s.republishes_left -= 1;
                acknowledged = true;
            }
            Action::Abort(i) => {
                s.faults_left -= 1;
                s.clients[i].step = Step::Verify;
            }
            Action::Restart => {
                let lost = s.losable.take()?;
                s.faults_left -= 1;
                s.db = lost.db;
                // With replica acks the lost write's caller got a 503 and retried: what it wrote
                // never happened. Without, its caller acted on it: the history keeps it.
                if self.replica_acks {
                    s.ever_revoked = lost.ever_revoked;
                    s.highest_version = lost.highest_version;
                }
                return Some(s);
            }
            Action::MarkerExpires => {
                s.faults_left -= 1;
                s.db.marker = [false; 2];
                for c in &mut s.clients {
                    set_verdict(&mut c.step, |v| {
                        if v.before_marker {
                            v.stale = true;
                        }
                    });
                }
                return Some(s);
            }
        }
        let wrote = s.db != before.db;
        if !self.replica_acks {
            if wrote {
                s.losable = Some(Box::new(before));
            }
        } else if ack_failed {
            if wrote && s.losable.is_none() {
                s.losable = Some(Box::new(before));
            }
        } else if acknowledged && (wrote || self.fence) {
            // Replication is in order: an acknowledged write covers every write before it. With
            // the fence every acknowledged call writes (README "Replica acks").
            s.losable = None;
        }
        for (sid, rec) in &s.db.sessions {
            if !rec.active {
                s.ever_revoked.insert(*sid);
            }
        }
        for (sid, snap) in &s.db.snapshots {
            if !snap.active {
                s.ever_revoked.insert(*sid);
            }
            let high = s.highest_version.entry(*sid).or_insert(0);
            *high = (*high).max(snap.version);
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(
                "one challenge yields at most one session",
                |_, s: &State| {
                    (0..2).all(|c| s.db.sessions.keys().filter(|sid| sid.0 == c).count() <= 1)
                },
            ),
            Property::always(
                "a revoked session never becomes active again",
                |_, s: &State| {
                    s.ever_revoked.iter().all(|sid| {
                        !s.db.sessions.get(sid).is_some_and(|r| r.active)
                            && !s.db.snapshots.get(sid).is_some_and(|p| p.active)
                    })
                },
            ),
            Property::always(
                "after a block completes no session of the user is active",
                |_, s: &State| {
                    !s.block_done
                        || s.db
                            .sessions
                            .iter()
                            .all(|(sid, r)| sid.1 != BLOCKED_USER || !r.active)
                            && s.db
                                .snapshots
                                .iter()
                                .all(|(sid, p)| sid.1 != BLOCKED_USER || !p.active)
                },
            ),
            Property::always(
                "the projection's version never goes down",
                |_, s: &State| {
                    s.db.snapshots
                        .iter()
                        .all(|(sid, p)| p.version >= s.highest_version[sid])
                },
            ),
            Property::always(
                "the projection equals the record once no call is in flight",
                |_, s: &State| {
                    let quiet = s.clients.iter().all(|c| !in_flight(c.step))
                        && matches!(s.admin, Admin::Idle { .. });
                    !quiet
                        || s.db.sessions.iter().all(|(sid, r)| {
                            s.db.snapshots.get(sid)
                                == Some(&Snapshot {
                                    active: r.active,
                                    version: r.version,
                                })
                        })
                },
            ),
            Property::always(
                "every acknowledged revoke is visible to the gateway",
                |_, s: &State| {
                    s.acked_revokes
                        .iter()
                        .all(|sid| s.db.snapshots.get(sid).is_some_and(|p| !p.active))
                },
            ),
            Property::always(
                "a confirm answered with a session answers the committed one",
                |_, s: &State| {
                    s.clients
                        .iter()
                        .enumerate()
                        .all(|(i, c)| match (c.step, c.plan) {
                            (Step::Done(Outcome::Session(sid)), Some(plan)) => {
                                sid.0 == plan.challenge
                                    && s.db
                                        .sessions
                                        .get(&sid)
                                        .is_some_and(|r| usize::from(r.key) == i)
                            }
                            _ => true,
                        })
                },
            ),
            Property::always(
                "the per-user cap holds after every login",
                |m: &Protocol, s: &State| {
                    (0..2).all(|u| {
                        s.db.sessions
                            .iter()
                            .filter(|(sid, r)| sid.1 == u && r.active)
                            .count()
                            <= usize::from(m.max_active)
                    })
                },
            ),
            Property::eventually(
                "an honest client with the right code and no block holds a session",
                |_, s: &State| {
                    s.block_started
                        || s.answered_other_user
                        || s.clients.iter().enumerate().all(|(i, c)| {
                            let Some(plan) = c.plan else { return true };
                            let contested = s.clients.iter().enumerate().any(|(j, o)| {
                                j != i && o.plan.is_some_and(|p| p.challenge == plan.challenge)
                            });
                            !plan.right_code
                                || contested
                                || matches!(c.step, Step::Done(Outcome::Session(_)))
                        })
                },
            ),
            Property::sometimes("a session is created", |_, s: &State| {
                !s.db.sessions.is_empty()
            }),
            Property::sometimes(
                "a block completes with a session revoked",
                |_, s: &State| s.block_done && s.db.sessions.values().any(|r| !r.active),
            ),
        ]
    }
}
