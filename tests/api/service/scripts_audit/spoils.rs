//! How the audit spoils a touched key: another type, a missing or garbled field, a garbled
//! string, a stream at its last id; and which commands write.

use authsession::store::Dedicated;
use redis::AsyncCommands;

/// Every way a touched key is spoiled: another type, and for values the script reads, a
/// missing or garbled field or a garbled string.
pub(super) async fn spoilers(conn: &mut Dedicated, key: &str) -> Vec<Vec<redis::Cmd>> {
    let mut all = vec![vec![
        redis::cmd("DEL").arg(key).clone(),
        redis::cmd("RPUSH")
            .arg(key)
            .arg("not-an-authsession-type")
            .clone(),
    ]];
    let kind: String = redis::cmd("TYPE").arg(key).query_async(conn).await.unwrap();
    match kind.as_str() {
        "hash" => {
            let fields: Vec<String> = conn.hkeys(key).await.unwrap();
            for field in fields {
                all.push(vec![redis::cmd("HDEL").arg(key).arg(&field).clone()]);
                for garbled in GARBLED {
                    all.push(vec![redis::cmd("HSET")
                        .arg(key)
                        .arg(&field)
                        .arg(garbled)
                        .clone()]);
                }
            }
        }
        "string" => {
            for garbled in GARBLED.iter().chain(&["x{"]) {
                all.push(vec![redis::cmd("SET").arg(key).arg(garbled).clone()]);
            }
        }
        _ => {}
    }
    // A stream at its last id: `XADD *` cannot add to it (whether the stream existed or not).
    if kind == "stream" || kind == "none" {
        all.push(vec![
            redis::cmd("DEL").arg(key).clone(),
            redis::cmd("XADD")
                .arg(key)
                .arg("18446744073709551615-18446744073709551615")
                .arg("f")
                .arg("v")
                .clone(),
        ]);
    }
    all
}

/// ARGV slots whose empty value means none (the headers say "'' when none" or "'' otherwise").
pub(super) const OPTIONAL_ARGS: &[&str] = &[
    "locale",
    "actor_id",
    "code_hash_previous",
    "via",
    "via_expires_at_ms",
];

/// The commands that write (the scripts queue them, `commit` runs them).
pub(super) const WRITES: &[&str] = &[
    "hset",
    "hdel",
    "zadd",
    "zrem",
    "xadd",
    "set",
    "del",
    "pexpire",
    "pexpireat",
    "persist",
];

/// Garbled values of a field or string: not a value at all, and every number form `tonumber`
/// accepts but `INCR` and the scripts' canonical integers do not.
const GARBLED: &[&str] = &[
    "x",
    "1.5",
    "07",
    " 3",
    "1e1",
    "-0",
    "-1",
    "9007199254740993",
];
