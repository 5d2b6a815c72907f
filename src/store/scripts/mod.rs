//! The scripts, one module per script (`lua/<name>.lua` ↔ `<name>.rs`): a struct of typed
//! inputs, the KEYS and ARGV built only from it (each slot named as the script's header names
//! it, checked slot by slot), and the script's reply as an enum decoded by one
//! [`FromRedisValue`] implementation. The store runs them with [`Store::run`]; tests build the
//! same structs and may alter the encoded [`ScriptCall`] to inject faults.
//!
//! `lua` assembles the Lua text itself (includes, arity check, version, SHA1, lock).

mod lua;
mod planning;
mod reply;

use std::sync::LazyLock;
use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};

pub use lua::{assemble_source, Header, Script};
use planning::{planned_session_args, planned_session_keys, replan_one, replan_sessions};
pub use planning::{Plan, Planning, MAX_PLAN_CALLS};
pub(crate) use reply::{one_word, Reply};

use super::{millis, Error, Store};
use crate::config::RateLimit;
use crate::domain::{ActorId, DeviceSessionId, Revocation};
use challenge_confirm::ConfirmRequest;

/// The one list of scripts: each name is a module here, `lua/<name>.lua`, a field of [`Scripts`]
/// and a variant of [`ScriptId`] (so a `match` over scripts, as the audit's scenarios are, is
/// checked for coverage by the compiler).
macro_rules! declare_scripts {
    ($($name:ident => $id:ident,)*) => {
        $(pub mod $name;)*

        /// Every script, by operation.
        #[derive(Debug)]
        pub struct Scripts {
            $(pub $name: Script,)*
        }

        /// A script's name, as a type.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ScriptId {
            $($id,)*
        }

        impl ScriptId {
            /// Every script, in the declaration's order.
            pub const ALL: &'static [ScriptId] = &[$(ScriptId::$id,)*];

            /// The script's file name without `.lua`.
            pub fn name(self) -> &'static str {
                match self {
                    $(ScriptId::$id => stringify!($name),)*
                }
            }
        }

        static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
            $($name: lua::assemble(stringify!($name)),)*
        });

        impl Scripts {
            /// The script `id` names.
            pub fn get(&self, id: ScriptId) -> &Script {
                match id {
                    $(ScriptId::$id => &self.$name,)*
                }
            }
        }
    };
}

declare_scripts! {
    access_probe => AccessProbe,
    challenge_claim => ChallengeClaim,
    challenge_confirm => ChallengeConfirm,
    challenge_create => ChallengeCreate,
    challenge_mark_confirmed => ChallengeMarkConfirmed,
    challenge_mark_delivery => ChallengeMarkDelivery,
    challenge_verify => ChallengeVerify,
    confirm_admit => ConfirmAdmit,
    send_admit => SendAdmit,
    session_create => SessionCreate,
    session_projection_republish => SessionProjectionRepublish,
    session_revoke => SessionRevoke,
    user_sessions_revoke => UserSessionsRevoke,
}

/// The embedded scripts, assembled once.
pub fn scripts() -> &'static Scripts {
    &SCRIPTS
}

impl Scripts {
    /// All scripts, sorted by name.
    pub fn all(&self) -> Vec<&Script> {
        let mut all: Vec<&Script> = ScriptId::ALL.iter().map(|id| self.get(*id)).collect();
        all.sort_by_key(|s| s.name);
        all
    }

    /// `lua/scripts.lock` as it should read for the embedded scripts.
    pub fn lock(&self) -> String {
        self.all()
            .iter()
            .map(|s| format!("{} {} {}\n", s.name, s.version, s.sha1))
            .collect()
    }
}

/// One KEYS or ARGV slot: the name the script's header gives it, and its value.
pub type Slot = (&'static str, String);

/// A script's typed call: implemented by each script module's input struct.
pub trait Call {
    /// The script's reply, decoded once.
    type Reply: FromRedisValue;
    /// The script this input is for.
    fn script() -> &'static Script;
    /// The KEYS, in the header's order, built from the inputs and the deployment's key names.
    fn keys(&self, store: &Store) -> Vec<Slot>;
    /// The ARGV, in the header's order, built from the inputs and the store's policy.
    fn args(&self, store: &Store) -> Vec<Slot>;
}

impl Store {
    /// `input` encoded as the `EVALSHA` the store sends.
    pub fn call<C: Call>(&self, input: &C) -> ScriptCall<'static> {
        ScriptCall::new(C::script(), input.keys(self), input.args(self))
    }

    /// Runs `input`'s script; its decoded reply.
    pub async fn run<C: Call>(&self, input: &C) -> Result<C::Reply, Error> {
        decode::<C>(self.redis.invoke(&self.call(input)).await?)
    }
}

/// `C`'s reply from the value its script answered.
pub(super) fn decode<C: Call>(value: Value) -> Result<C::Reply, Error> {
    C::Reply::from_redis_value(value).map_err(|e| Error::Reply {
        script: C::script().name,
        detail: e.to_string(),
    })
}

/// One script invocation, encoded: `EVALSHA sha numkeys KEYS... ARGV...`. Built by
/// [`Store::call`] from a typed input, whose slots must carry the header's names in the
/// header's order; tests alter its slots to inject faults.
#[derive(Debug, Clone)]
pub struct ScriptCall<'a> {
    script: &'a Script,
    keys: Vec<String>,
    args: Vec<String>,
}

impl<'a> ScriptCall<'a> {
    fn new(script: &'a Script, keys: Vec<Slot>, args: Vec<Slot>) -> Self {
        // Names only in the message: the values hold addresses and hashes.
        let header = &script.header;
        let names = |slots: &[Slot]| slots.iter().map(|(n, _)| *n).collect::<Vec<_>>();
        debug_assert!(
            header.fits(&names(&keys), &names(&args)),
            "{}: the input's KEYS {:?} and ARGV {:?} against the header {header:?}",
            script.name,
            names(&keys),
            names(&args)
        );
        Self {
            script,
            keys: keys.into_iter().map(|(_, v)| v).collect(),
            args: args.into_iter().map(|(_, v)| v).collect(),
        }
    }

    /// The key that routes the call in cluster mode.
    pub fn first_key(&self) -> Option<&str> {
        self.keys.first().map(String::as_str)
    }

    pub fn script(&self) -> &'a Script {
        self.script
    }

    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The ARGV, for tests that call a script with altered arguments.
    pub fn args_mut(&mut self) -> &mut Vec<String> {
        &mut self.args
    }

    /// The ARGV slot the header names `name`, for tests that alter one argument.
    pub fn arg_mut(&mut self, name: &str) -> &mut String {
        let at = self
            .script
            .header
            .args
            .iter()
            .position(|a| a == name)
            .unwrap_or_else(|| panic!("{} has no ARGV {name}", self.script.name));
        &mut self.args[at]
    }

    pub fn evalsha(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.script.sha1)
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        cmd
    }
}

/// `reason_code actor_type actor_id` ('' when none): the ARGV both revoke scripts start with.
fn revocation_args(r: &Revocation) -> [Slot; 3] {
    [
        ("reason_code", r.reason_code.to_string()),
        ("actor_type", r.actor_type.to_string()),
        (
            "actor_id",
            r.actor_id
                .as_ref()
                .map(ActorId::to_string)
                .unwrap_or_default(),
        ),
    ]
}

/// `revoked_retention_ms stream_maxlen`: the ARGV pair of the scripts that revoke sessions by
/// eviction or in batches.
fn revoking(store: &Store) -> [Slot; 2] {
    [
        (
            "revoked_retention_ms",
            millis(store.policy.revoked_session_retention).to_string(),
        ),
        ("stream_maxlen", store.stream_maxlen.to_string()),
    ]
}

/// `event_format`: the last ARGV of every script that writes a gateway projection.
fn event_format(store: &Store) -> Slot {
    ("event_format", store.event_format.as_str().to_owned())
}

/// `session gateway_session stream`: the KEYS of the scripts that act on one session by its id
/// (revoke, republish), the stream of the session's partition.
fn one_session_keys(store: &Store, id: &DeviceSessionId) -> Vec<Slot> {
    vec![
        ("session", store.keys.session(id)),
        ("gateway_session", store.keys.gateway_session(id)),
        (
            "stream",
            store.keys.stream(store.home_or_first(id.as_str())),
        ),
    ]
}

/// `(limit, window_ms)` of an admission limit: `(0, 1)` when it is off.
fn limit_args(limit: Option<RateLimit>) -> (u32, u128) {
    limit.map_or((0, 1), |l| (l.count, millis(l.window)))
}

/// An admission script's reply (`send_admit`, `confirm_admit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Over the client's (or the partition's global) limit: nothing was written; retry after
    /// this long.
    RateLimited(Duration),
}

impl FromRedisValue for Admission {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let mut reply = Reply::read(value)?;
        let admission = match reply.word() {
            "admitted" => Admission::Admitted,
            "rate_limited" => Admission::RateLimited(reply.millis()?),
            _ => return reply.unknown(),
        };
        reply.end(admission)
    }
}

/// A reply that may ask for another call: the script did a bounded part of the work standing
/// before its own (ghosts and evictions removed) and answered `continue`.
pub trait Resumable {
    fn resume(&self) -> bool;
}

/// The seven KEYS of opening `req`'s session (`include/session_open.lua`), in the order both
/// confirm paths' scripts take them: the record, the user's two indexes, the snapshot, the
/// user's partition's stream, the revoked index and the blocked marker.
fn opening_session_keys(store: &Store, req: &ConfirmRequest<'_>) -> [Slot; 7] {
    let (keys, user, session) = (&store.keys, req.user_id, req.device_session_id);
    [
        ("session", keys.session(session)),
        ("user_sessions", keys.user_sessions(user)),
        ("user_active_sessions", keys.user_active_sessions(user)),
        ("gateway_session", keys.gateway_session(session)),
        ("stream", keys.stream(keys.layout().of_user(user.as_str()))),
        ("user_revoked_sessions", keys.user_revoked_sessions(user)),
        ("user_blocked", keys.user_blocked(user)),
    ]
}

/// `verified_at_ms max_verdict_age_ms`: the verdict's time and the longest a session step may
/// act on it (the blocked marker's life, so a block in flight is never outlived).
fn verdict_args(store: &Store, req: &ConfirmRequest<'_>) -> [Slot; 2] {
    [
        ("verified_at_ms", req.verified_at_ms.to_string()),
        (
            "max_verdict_age_ms",
            millis(store.policy.block_marker_ttl).to_string(),
        ),
    ]
}
