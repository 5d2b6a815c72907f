//! Each script's decision table, as one atomic step on the abstracted Redis.

use std::collections::BTreeMap;

use super::*;

impl Db {
    pub(super) fn new() -> Self {
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
}
