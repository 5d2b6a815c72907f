//! The environment's faults beyond a lost reply: a restart (or failover) that loses the last
//! unreplicated write, and the blocked marker's expiry.

use super::clients::set_verdict;
use super::*;

impl Protocol {
    /// The faults state `s` allows.
    pub(super) fn fault_actions(&self, s: &State, actions: &mut Vec<Action>) {
        if s.faults_left > 0 {
            if self.restarts && s.losable.is_some() {
                actions.push(Action::Restart);
            }
            if self.marker_expiry && s.db.marker.iter().any(|m| *m) {
                actions.push(Action::MarkerExpires);
            }
        }
    }

    /// The state after fault `action` (`None`: it does not apply). A fault is no script call:
    /// the step bookkeeping of `checker` does not follow it.
    pub(super) fn fault(&self, mut s: State, action: Action) -> Option<State> {
        match action {
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
                Some(s)
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
                Some(s)
            }
            _ => unreachable!("not a fault: {action:?}"),
        }
    }
}
