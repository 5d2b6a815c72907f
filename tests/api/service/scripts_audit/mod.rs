//! The scripts' promises, proved for every script and every key it touches, the way the platform
//! team audits them on a real redis-server:
//! - every key a script touches (seen with `MONITOR`) is one of the call's KEYS, every command it
//!   runs is in the documented ACL grant (docs/operations.md);
//! - no partial write: with any touched key of the wrong type, any field of a hash it reads
//!   removed or garbled, or any string it reads garbled, a call that errors leaves the keyspace
//!   byte-identical (`DUMP` of every key);
//! - replay: the same call twice gives the same reply and the same keyspace as once;
//! - on a real cluster (both layouts) too, every key touched is declared, and a call during a
//!   slot migration, on the source or resent by `ASK` to the importing node, writes everything on
//!   one node or nothing anywhere;
//! - `luacheck` passes over the assembled scripts.
//!
//! Each script's scenarios are typed (`scenarios.rs`): a script without any does not compile.

mod acl;
mod bench;
mod scenarios;
mod spoils;

use std::collections::BTreeSet;

use authsession::store::scripts::{scripts, ScriptId};
use authsession_testbench::keyspace::Keyspace;
use authsession_testbench::monitor::Monitor;
use authsession_testbench::RedisServer;
use redis::AsyncCommands;

pub(crate) use bench::*;
pub(crate) use scenarios::{arrange, Scenario};

/// A script that plans keys has a scenario that commits a plan (the compiler already sees that
/// every script has scenarios: `Scenario::of` is a `match` over every script).
#[test]
fn every_script_that_plans_has_a_scenario_committing_a_plan() {
    for id in ScriptId::ALL {
        let script = scripts().get(*id);
        assert!(
            !Scenario::of(*id).is_empty(),
            "lua/{}.lua: no scenario",
            script.name
        );
        if !script.header.planned.0.is_empty() || *id == ScriptId::SessionRevoke {
            assert!(
                Scenario::of(*id).iter().any(|s| s.commits_a_plan()),
                "lua/{}.lua plans keys but no scenario commits a plan",
                script.name
            );
        }
    }
}

#[tokio::test]
async fn every_script_touches_only_its_declared_keys_and_never_writes_partially_or_twice() {
    let redis = RedisServer::start().await;
    let mut b = standalone(&redis).await;
    let mut monitor = Monitor::start(&redis.addr()).await;
    let mut commands_seen = BTreeSet::new();
    let mut report = Vec::new();

    for scenario in Scenario::all() {
        let name = scenario.to_string();
        let () = redis::cmd("FLUSHALL")
            .query_async(&mut b.conn)
            .await
            .unwrap();
        let call = arrange(&mut b, scenario).await;
        let script = call.script();
        let before = Keyspace::capture(&mut b.conn).await;

        // Once, watched: which keys and commands the script used.
        seen_until_mark(&mut monitor, &mut b.conn).await; // the arrangement's commands
        let first = run(&b, &call).await;
        let commands = seen_until_mark(&mut monitor, &mut b.conn).await;
        let first = first.unwrap_or_else(|e| panic!("{scenario}: the call must succeed: {e}"));
        let once = Keyspace::capture(&mut b.conn).await;

        // Every key the script touches, and the order: once it has written, it touches no key
        // it had not touched before (the preflight reached each one first).
        let mut touched = BTreeSet::new();
        let mut wrote = false;
        for command in &commands {
            let name = String::from_utf8_lossy(&command[0]).to_lowercase();
            commands_seen.insert(name.clone());
            for key in keys_of(&mut b.conn, command).await {
                assert!(
                    !wrote || touched.contains(&key),
                    "{scenario}: `{name}` touched {key} first after the script's first write"
                );
                touched.insert(key);
            }
            wrote |= spoils::WRITES.contains(&name.as_str());
        }
        assert_declared(&b.store, &name, &call, &touched);
        // Replay: the same call again answers the same and changes nothing. (A right code's
        // verdict carries the moment it was given: a replay gives it anew, with its own time.)
        let again = run(&b, &call).await.expect("replay succeeds");
        let timeless = |reply: &str| match reply.find("), int(") {
            Some(at) if reply.contains("bulk-string('\"ok\"')") => reply[..at].to_owned(),
            _ => reply.to_owned(),
        };
        assert_eq!(
            timeless(&again),
            timeless(&first),
            "{scenario}: a replay answers like the first call"
        );
        let twice = Keyspace::capture(&mut b.conn).await;
        assert_eq!(
            once.differences(&twice),
            Vec::<String>::new(),
            "{scenario}: a replay changed keys"
        );

        // No partial write, whatever is spoiled.
        let (mut runs, mut refused) = (0, 0);
        for key in &touched {
            before.restore(&mut b.conn).await;
            for spoil in spoils::spoilers(&mut b.conn, key).await {
                before.restore(&mut b.conn).await;
                for cmd in &spoil {
                    let () = cmd.query_async(&mut b.conn).await.unwrap();
                }
                let spoiled = Keyspace::capture(&mut b.conn).await;
                runs += 1;
                if let Err(error) = run(&b, &call).await {
                    refused += 1;
                    let after = Keyspace::capture(&mut b.conn).await;
                    assert_eq!(
                        spoiled.differences(&after),
                        Vec::<String>::new(),
                        "{scenario}: failed ({error}) after writing, with {key} spoiled by {:?}",
                        spoil
                            .iter()
                            .map(|c| String::from_utf8_lossy(&c.get_packed_command()).into_owned())
                            .collect::<Vec<_>>()
                    );
                }
            }
        }
        // No partial write, whatever permission is missing: each touched key in turn readable
        // only, then not accessible at all, to a user with every other key.
        for key in &touched {
            for read_only in [true, false] {
                before.restore(&mut b.conn).await;
                runs += 1;
                let result =
                    acl::run_as_restricted_user(&mut b, &redis, &call, &touched, key, read_only)
                        .await;
                if let Err(error) = result {
                    refused += 1;
                    let after = Keyspace::capture(&mut b.conn).await;
                    assert_eq!(
                        before.differences(&after),
                        Vec::<String>::new(),
                        "{scenario}: failed ({error}) after writing, with {key} denied \
                         (read_only: {read_only})"
                    );
                }
            }
        }
        // Every ARGV slot is checked by its declared type before anything is written: each one
        // emptied (but those whose '' means none) is refused, and so is a call one ARGV short.
        for (i, name) in script.header.args.iter().enumerate() {
            if spoils::OPTIONAL_ARGS.contains(&name.as_str()) {
                continue;
            }
            let mut emptied = call.clone();
            emptied.args_mut()[i] = String::new();
            before.restore(&mut b.conn).await;
            runs += 1;
            refused_whole(
                &mut b,
                &emptied,
                &before,
                &scenario.to_string(),
                &format!("ARGV {name} empty"),
            )
            .await;
            refused += 1;
        }
        if let Some((_, head)) = call.args().split_last() {
            // Sent by hand: the wrappers cannot build a call that drifts from its header.
            let mut short = redis::cmd("EVALSHA");
            short
                .arg(&script.sha1)
                .arg(call.keys().len())
                .arg(call.keys())
                .arg(head);
            before.restore(&mut b.conn).await;
            runs += 1;
            let result: Result<redis::Value, _> = short.query_async(&mut b.conn).await;
            let after = Keyspace::capture(&mut b.conn).await;
            assert!(result.is_err(), "{scenario}: one ARGV short: {result:?}");
            assert_eq!(
                before.differences(&after),
                Vec::<String>::new(),
                "{scenario}"
            );
            refused += 1;
        }
        report.push(format!(
            "{scenario}: {} keys touched, {runs} spoiled runs, {refused} refused whole",
            touched.len()
        ));
    }
    acl::assert_granted(&commands_seen);
    println!("{}", report.join("\n"));
}

/// Issue 34 item 2, enforced and not just followed: a script built on `lua/include/commit.lua`
/// cannot touch a key its call did not declare. A probe that reads, and one that writes, an
/// undeclared key fail the call before the declared key is written.
#[tokio::test]
async fn the_commit_include_refuses_any_key_not_in_keys() {
    let redis = RedisServer::start().await;
    let mut conn = redis.connection().await;
    for (name, body) in [
        (
            "reads",
            "write('SET', KEYS[1], 'x')\nread('GET', 'undeclared')\ncommit()\nreturn 'ok'\n",
        ),
        (
            "writes",
            "write('SET', KEYS[1], 'x')\nwrite('SET', 'undeclared', 'x')\ncommit()\nreturn 'ok'\n",
        ),
        (
            "checks absence",
            "write('SET', KEYS[1], 'x')\nread_none(KEYS[1], 'undeclared')\ncommit()\nreturn 'ok'\n",
        ),
    ] {
        let source = format!(
            "#!lua\n-- probe, version: 1\n-- KEYS[1] challenge\n\
             --!include common.lua: fail\n\
             --!include commit.lua: DECLARED, declared, WRITE_TYPES, READ_TYPES, SEEN, WRITES, \
             STREAM_LAST_MS, read, read_none, write, commit_stream_check, commit\n{body}"
        );
        let script = authsession::store::scripts::assemble_source("probe", &source);
        let result: redis::RedisResult<String> = redis::cmd("EVAL")
            .arg(&script)
            .arg(1)
            .arg("declared")
            .query_async(&mut conn)
            .await;
        let error = result.expect_err(name).to_string();
        assert!(
            error.contains("undeclared key undeclared"),
            "{name}: {error}"
        );
        let written: Option<String> = conn.get("declared").await.unwrap();
        assert_eq!(written, None, "{name}: wrote before refusing");
        let touched: Option<String> = conn.get("undeclared").await.unwrap();
        assert_eq!(touched, None, "{name}");
    }
}
