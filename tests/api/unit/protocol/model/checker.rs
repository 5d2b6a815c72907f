//! The model as `stateright` sees it: the initial state, the actions each state allows (every
//! actor's), one step with the replication bookkeeping, and the properties checked in every
//! reachable state.

use std::collections::{BTreeMap, BTreeSet};

use stateright::{Model, Property};

use super::clients::in_flight;
use super::*;

/// What a step's script call left for replication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ack {
    /// No script call, or one whose success nobody waited for.
    None,
    /// A script call whose success was acknowledged.
    Acknowledged,
    /// A script call whose acknowledgement failed (its caller got a 503).
    Failed,
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
        self.client_actions(s, actions);
        self.admin_actions(s, actions);
        self.fault_actions(s, actions);
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        let before = LastWrite {
            db: s.db.clone(),
            ever_revoked: s.ever_revoked.clone(),
            highest_version: s.highest_version.clone(),
        };
        let ack = match action {
            Action::Choose(..)
            | Action::Advance(_)
            | Action::AckFails(_)
            | Action::Ensure(..)
            | Action::Abort(_) => self.client_acts(&mut s, action)?,
            Action::Revoke(_)
            | Action::StartRevokeAll { .. }
            | Action::Batch
            | Action::Republish(_) => self.admin_acts(&mut s, action)?,
            Action::Restart | Action::MarkerExpires => return self.fault(s, action),
        };
        let wrote = s.db != before.db;
        if !self.replica_acks {
            if wrote {
                s.losable = Some(Box::new(before));
            }
        } else if ack == Ack::Failed {
            if wrote && s.losable.is_none() {
                s.losable = Some(Box::new(before));
            }
        } else if ack == Ack::Acknowledged && (wrote || self.fence) {
            // Replication is in order: an acknowledged write covers every write before it. With
            // the fence every acknowledged call writes (docs/operations.md, "High availability").
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
