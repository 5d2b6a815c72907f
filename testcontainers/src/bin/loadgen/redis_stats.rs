//! Redis-side figures from the server itself: `INFO` counters (commands, round trips, CPU),
//! the slow log, memory.

use authsession::store::scripts::scripts;

pub async fn info_field(
    redis: &mut redis::aio::MultiplexedConnection,
    section: &str,
    field: &str,
) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(redis)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Redis-side counters around a run: commands executed (scripts' inner ones included), round
/// trips and CPU, all from the server's own `INFO`.
pub struct RedisCounters {
    pub commands: f64,
    pub cpu: f64,
    pub trips: u64,
}

/// Commands some script runs (`redis.call('TYPE'`, `read('HGET'`, `write('HSET'` ...),
/// lowercase: calls of these may come from inside scripts, so they are not round trips. Read from
/// the scripts once.
static SCRIPT_INTERNAL_COMMANDS: std::sync::LazyLock<std::collections::BTreeSet<String>> =
    std::sync::LazyLock::new(|| {
        let mut names = std::collections::BTreeSet::new();
        for script in scripts().all() {
            for call in ["redis.call(", "redis.pcall(", "read(", "write("] {
                for literal in script.body.split(call).skip(1) {
                    if let Some(name) = literal
                        .strip_prefix(['\'', '"'])
                        .and_then(|r| r.split(['\'', '"']).next())
                    {
                        names.insert(name.to_lowercase());
                    }
                }
            }
        }
        names
    });

/// `CONFIG SET name value` (the slow log's settings).
pub async fn config_set(
    conn: &mut redis::aio::MultiplexedConnection,
    name: &str,
    value: impl redis::ToRedisArgs,
) {
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(conn)
        .await
        .unwrap();
}

/// `SLOWLOG RESET`.
pub async fn slowlog_reset(conn: &mut redis::aio::MultiplexedConnection) {
    let () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(conn)
        .await
        .unwrap();
}

/// Round trips from `INFO commandstats`: calls of every command no script runs (EVALSHA, SCRIPT
/// LOAD, the service's own reads), minus this generator's own `INFO`s.
pub async fn round_trips(redis: &mut redis::aio::MultiplexedConnection) -> u64 {
    let internal = &*SCRIPT_INTERNAL_COMMANDS;
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .unwrap();
    stats
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_")?.split_once(':'))
        .filter(|(name, _)| {
            let base = name.split('|').next().unwrap_or(name);
            // WAIT travels in the script's pipeline (the same round trip); REPLCONF is a
            // replica's acknowledgement, not the service's.
            !matches!(base, "info" | "wait" | "replconf") && !internal.contains(base)
        })
        .filter_map(|(_, fields)| {
            fields
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

pub async fn counters(redis: &mut redis::aio::MultiplexedConnection) -> RedisCounters {
    RedisCounters {
        commands: info_field(redis, "stats", "total_commands_processed").await,
        cpu: info_field(redis, "cpu", "used_cpu_user").await
            + info_field(redis, "cpu", "used_cpu_sys").await,
        trips: round_trips(redis).await,
    }
}

/// `INFO` commands `counters` sends after reading `total_commands_processed`, plus the next
/// reading itself.
const COUNTER_INFOS: f64 = 4.0;

pub fn print_costs(before: &RedisCounters, after: &RedisCounters, logins: u64) {
    let per = |v: f64| v / logins.max(1) as f64;
    println!(
        "  per login: {:.2} Redis round trips, {:.1} Redis commands (script-internal included), {:.0} us Redis CPU",
        per((after.trips - before.trips) as f64),
        // Between the two `stats` readings this generator sends four `INFO`s of its own.
        per(after.commands - before.commands - COUNTER_INFOS),
        per((after.cpu - before.cpu) * 1e6)
    );
}

/// (command, us) of every slow-log entry, slowest first.
pub async fn slow_commands(conn: &mut redis::aio::MultiplexedConnection) -> Vec<(String, u64)> {
    use redis::Value;
    // Redis 7.0 logs the commands scripts run too: read everything, keep the top-level ones.
    let entries: Vec<Vec<Value>> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query_async(conn)
        .await
        .unwrap();
    let mut slow: Vec<(String, u64)> = entries
        .iter()
        .filter_map(|entry| match entry.as_slice() {
            [_, _, Value::Int(micros), Value::Array(args), ..] => match args.first() {
                Some(Value::BulkString(cmd)) => {
                    Some((String::from_utf8_lossy(cmd).to_lowercase(), *micros as u64))
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    slow.sort_by_key(|e| std::cmp::Reverse(e.1));
    slow
}

/// Durations (us) of the EVALSHA calls in the slow log.
pub async fn slow_scripts(conn: &mut redis::aio::MultiplexedConnection) -> Vec<u64> {
    slow_commands(conn)
        .await
        .into_iter()
        .filter(|(cmd, _)| cmd == "evalsha")
        .map(|(_, us)| us)
        .collect()
}

pub async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
    info_field(conn, "memory", "used_memory").await
}

pub async fn delete_matching(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) -> u64 {
    let keys = authsession_testbench::invariants::scan(conn, pattern).await;
    for chunk in keys.chunks(1000) {
        let _: u64 = redis::cmd("UNLINK")
            .arg(chunk)
            .query_async(conn)
            .await
            .unwrap();
    }
    keys.len() as u64
}

/// Loads a script body into the script cache; its SHA1.
pub async fn script_load(conn: &mut redis::aio::MultiplexedConnection, body: &str) -> String {
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(body)
        .query_async(conn)
        .await
        .unwrap()
}
