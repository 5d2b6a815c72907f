//! The audit under ACLs: each touched key denied in turn, and every command the scripts run in
//! the grant that docs/operations.md documents.

use std::collections::BTreeSet;

use authsession::store::scripts::ScriptCall;
use authsession_testbench::RedisServer;

use super::bench::Bench;
use crate::topologies::deployments::ACL_COMMANDS;

/// A glob pattern matching exactly `key` (Redis glob specials escaped).
fn literal_pattern(key: &str) -> String {
    key.chars()
        .flat_map(|c| {
            let special = matches!(c, '*' | '?' | '[' | ']' | '\\');
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// Runs `call` as an ACL user that may read and write every key in `touched` but `denied`,
/// which it may only read (`read_only`) or not access at all.
pub(super) async fn run_as_restricted_user(
    b: &mut Bench,
    redis: &RedisServer,
    call: &ScriptCall<'_>,
    touched: &BTreeSet<String>,
    denied: &str,
    read_only: bool,
) -> Result<String, String> {
    let mut setuser = redis::cmd("ACL");
    setuser
        .arg("SETUSER")
        .arg("audited")
        .arg("reset")
        .arg("on")
        .arg(">audit-pw")
        .arg("+@all");
    for key in touched.iter().filter(|k| *k != denied) {
        setuser.arg(format!("~{}", literal_pattern(key)));
    }
    if read_only {
        setuser.arg(format!("%R~{}", literal_pattern(denied)));
    }
    let () = setuser.query_async(&mut b.conn).await.unwrap();
    let client = redis::Client::open(format!("redis://audited:audit-pw@{}", redis.addr())).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    call.evalsha()
        .query_async::<redis::Value>(&mut conn)
        .await
        .map(|v| format!("{v:?}"))
        .map_err(|e| e.to_string())
}

/// Every command in `seen` is granted by the documented ACL (`+cmd` or `+cmd|sub`).
pub(super) fn assert_granted(seen: &BTreeSet<String>) {
    for command in seen {
        assert!(
            ACL_COMMANDS.iter().any(|grant| {
                let grant = grant.trim_start_matches('+');
                grant == command || grant.split('|').next() == Some(command.as_str())
            }),
            "scripts run `{command}`, which the documented ACL grant (docs/operations.md) lacks"
        );
    }
}
