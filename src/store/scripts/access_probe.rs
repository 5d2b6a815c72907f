//! `lua/access_probe.lua`: the startup probe of one partition. It writes nothing, but proves
//! `EVALSHA` and that the ACL user may run every command the scripts run on a key of each
//! namespace the service writes (key prefix, gateway prefix, the partition's stream).

use redis::{FromRedisValue, ParsingError, Value};

use super::{one_word, scripts, Call, Script, Slot};
use crate::store::layout::Partition;
use crate::store::Store;

pub struct AccessProbe {
    pub partition: Partition,
}

/// The probe's only success: every check passed (a failed one is an error naming the command
/// and the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probed;

impl Call for AccessProbe {
    type Reply = Probed;

    fn script() -> &'static Script {
        &scripts().access_probe
    }

    fn keys(&self, store: &Store) -> Vec<Slot> {
        let (challenge, session) = store.keys.layout().probe_ids(self.partition);
        vec![
            ("challenge", store.keys.challenge(&challenge)),
            ("gateway_session", store.keys.gateway_session(&session)),
            ("stream", store.keys.stream(self.partition)),
        ]
    }

    fn args(&self, _: &Store) -> Vec<Slot> {
        Vec::new()
    }
}

impl FromRedisValue for Probed {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        one_word(value, &[("ok", Probed)])
    }
}
