//! The admin: one revoke, a revoke-all or a block (the user service first, then batches until
//! none remain), republishing a session's projection.

use super::checker::Ack;
use super::clients::set_verdict;
use super::*;

impl Protocol {
    /// Sessions the admin's single revoke may target.
    fn sids() -> [Sid; 4] {
        [(0, 0), (0, 1), (1, 0), (1, 1)]
    }

    /// The admin actions state `s` allows.
    pub(super) fn admin_actions(&self, s: &State, actions: &mut Vec<Action>) {
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
    }

    /// Applies an admin action to `s` (`None`: it does not apply).
    pub(super) fn admin_acts(&self, s: &mut State, action: Action) -> Option<Ack> {
        match action {
            Action::Revoke(sid) => {
                let reply = Protocol::revoke(&mut s.db, sid);
                if matches!(reply, Reply::Revoked | Reply::AlreadyRevoked) {
                    s.acked_revokes.insert(sid);
                }
                let Admin::Idle { ops_left } = s.admin else {
                    return None;
                };
                s.admin = Admin::Idle {
                    ops_left: ops_left - 1,
                };
                Some(Ack::Acknowledged)
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
                Some(Ack::None)
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
                Some(Ack::Acknowledged)
            }
            Action::Republish(sid) => {
                Protocol::republish(&mut s.db, sid);
                s.republishes_left -= 1;
                Some(Ack::Acknowledged)
            }
            _ => unreachable!("not an admin action: {action:?}"),
        }
    }
}
