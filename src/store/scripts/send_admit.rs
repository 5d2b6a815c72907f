//! `lua/send_admit.lua` (partitioned layout): a send counted against the client's window and its
//! partition's share of the global window, in the client's partition, before the challenge is
//! created in the address's.

use super::{limit_args, scripts, Admission, Call, Script, Slot};
use crate::domain::{ChallengeId, ClientKey};
use crate::store::Store;

pub struct SendAdmit<'a> {
    /// The request id both counters remember (a resend counts once).
    pub challenge_id: &'a ChallengeId,
    pub client: &'a ClientKey,
}

impl Call for SendAdmit<'_> {
    type Reply = Admission;

    fn script() -> &'static Script {
        &scripts().send_admit
    }

    fn keys(&self, store: &Store) -> Vec<Slot> {
        let client = self.client;
        vec![
            ("rate_send_client", store.keys.rate_send_client(client)),
            (
                "rate_send_global",
                store
                    .keys
                    .rate_send_global(store.keys.layout().of_client(client.as_str())),
            ),
        ]
    }

    /// The global window is shared out evenly, each partition admitting its share (rounded up).
    fn args(&self, store: &Store) -> Vec<Slot> {
        let (client_limit, client_window) = limit_args(store.policy.send_rate_per_ip);
        let (global_limit, global_window) = limit_args(store.policy.send_rate_global);
        let shares = store.keys.layout().all().len() as u32;
        vec![
            ("challenge_id", self.challenge_id.to_string()),
            ("client_limit", client_limit.to_string()),
            ("client_window_ms", client_window.to_string()),
            ("global_limit", global_limit.div_ceil(shares).to_string()),
            ("global_window_ms", global_window.to_string()),
        ]
    }
}
