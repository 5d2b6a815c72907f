//! A client's confirm request: choose a plan, verify, ask the user service, open the session (or
//! claim, create and mark in the partitioned layout), retry after a lost reply.

use super::checker::Ack;
use super::*;

impl Protocol {
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

    /// The client actions state `s` allows.
    pub(super) fn client_actions(&self, s: &State, actions: &mut Vec<Action>) {
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
    }

    /// Applies a client action to `s`; whether a script call was acknowledged or its
    /// acknowledgement failed (`None`: the action does not apply).
    pub(super) fn client_acts(&self, s: &mut State, action: Action) -> Option<Ack> {
        match action {
            Action::Choose(i, plan) => {
                s.clients[i] = Client {
                    plan: Some(plan),
                    step: Step::Verify,
                };
                Some(Ack::None)
            }
            Action::Advance(i) => {
                self.client_step(s, i)?;
                Some(Ack::Acknowledged)
            }
            Action::AckFails(i) => {
                self.client_step(s, i)?;
                s.faults_left -= 1;
                s.clients[i].step = Step::Verify;
                Some(Ack::Failed)
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
                Some(Ack::None)
            }
            // A lost reply or a crash of the service mid-request: the client retries from verify.
            Action::Abort(i) => {
                s.faults_left -= 1;
                s.clients[i].step = Step::Verify;
                Some(Ack::None)
            }
            _ => unreachable!("not a client action: {action:?}"),
        }
    }
}

pub(super) fn set_verdict(step: &mut Step, f: impl Fn(&mut Verdict)) {
    match step {
        Step::Ensure(v) | Step::Open(v, _) | Step::Create(v, _) => f(v),
        _ => {}
    }
}

pub(super) fn in_flight(step: Step) -> bool {
    !matches!(step, Step::Start | Step::Done(_))
}
