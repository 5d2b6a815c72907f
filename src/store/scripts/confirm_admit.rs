//! `lua/confirm_admit.lua` (partitioned layout): a confirm counted against the client's window,
//! in the client's partition, before the challenge is verified in the address's.

use super::{limit_args, scripts, Admission, Call, Script, Slot};
use crate::domain::{ClientKey, RequestId};
use crate::store::Store;

pub struct ConfirmAdmit<'a> {
    /// Unique per confirm request: a resend counts once.
    pub attempt_id: &'a RequestId,
    pub client: &'a ClientKey,
}

impl Call for ConfirmAdmit<'_> {
    type Reply = Admission;

    fn script() -> &'static Script {
        &scripts().confirm_admit
    }

    fn keys(&self, store: &Store) -> Vec<Slot> {
        vec![(
            "rate_confirm_client",
            store.keys.rate_confirm_client(self.client),
        )]
    }

    fn args(&self, store: &Store) -> Vec<Slot> {
        let (client_limit, client_window) = limit_args(store.policy.confirm_rate_per_ip);
        vec![
            ("attempt_id", self.attempt_id.to_string()),
            ("client_limit", client_limit.to_string()),
            ("client_window_ms", client_window.to_string()),
        ]
    }
}
