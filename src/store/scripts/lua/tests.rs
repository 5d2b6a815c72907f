use super::*;
use crate::store::scripts::scripts;
use std::collections::HashMap;

const LOCK_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/lua/scripts.lock");

fn parse_lock(text: &str) -> HashMap<String, (u32, String)> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let parts: Vec<_> = l.split_whitespace().collect();
            assert_eq!(
                parts.len(),
                3,
                "lock line `{l}` must be `name version sha1`"
            );
            (
                parts[0].to_owned(),
                (parts[1].parse().expect("version"), parts[2].to_owned()),
            )
        })
        .collect()
}

/// The audit gate: a script whose text changed must carry a new version, and the lock must
/// record exactly what is embedded. `AUTHSESSION_UPDATE_SCRIPTS_LOCK=1` rewrites a stale lock,
/// but never excuses a missing version bump.
#[test]
fn scripts_lock_matches_the_embedded_scripts() {
    let on_disk = std::fs::read_to_string(LOCK_PATH).unwrap_or_default();
    let locked = parse_lock(&on_disk);
    for script in scripts().all() {
        if let Some((version, sha1)) = locked.get(script.name) {
            assert!(
                !(*version == script.version && *sha1 != script.sha1),
                "lua/{}.lua changed (sha1 {} -> {}) without a version bump: raise `version: {}`",
                script.name,
                sha1,
                script.sha1,
                version
            );
        }
    }
    let expected = scripts().lock();
    if on_disk != expected && std::env::var_os("AUTHSESSION_UPDATE_SCRIPTS_LOCK").is_some() {
        std::fs::write(LOCK_PATH, &expected).unwrap();
        return;
    }
    assert_eq!(
        on_disk, expected,
        "lua/scripts.lock is stale: rerun with AUTHSESSION_UPDATE_SCRIPTS_LOCK=1 and commit the diff"
    );
}

#[test]
fn every_script_has_a_shebang_version_and_no_unresolved_include() {
    for script in scripts().all() {
        assert!(script.body.starts_with("#!lua"), "{}", script.name);
        assert!(!script.body.contains("--!include"), "{}", script.name);
        assert_eq!(script.sha1.len(), 40);
    }
}

/// Every script file in `lua/` is declared (`declare_scripts!`), so it is embedded, locked,
/// typed and audited: a file nobody declared would be none of these.
#[test]
fn every_script_file_is_declared() {
    let declared: Vec<&str> = scripts().all().iter().map(|s| s.name).collect();
    for file in LUA.files() {
        let path = file.path().to_string_lossy();
        if let Some(name) = path.strip_suffix(".lua") {
            assert!(
                declared.contains(&name),
                "lua/{path} is not in declare_scripts!"
            );
        }
    }
}

/// Every Lua source: the scripts and the include fragments, by path under `lua/`.
fn sources() -> Vec<(String, &'static str)> {
    let mut all = Vec::new();
    for dir in [&LUA, LUA.get_dir("include").expect("lua/include")] {
        for file in dir.files() {
            let path = file.path().to_string_lossy().into_owned();
            if path.ends_with(".lua") {
                all.push((path, file.contents_utf8().expect("UTF-8")));
            }
        }
    }
    assert!(all.len() > 11, "the scripts and their fragments");
    all
}

/// Commands a script may read with (through `read(...)`, which records what each read proved
/// of its key). Every write is queued with `write(...)` and run by `commit()`
/// (`lua/include/commit.lua`) after its preflight, so no script can write before every key
/// it writes was reached, its ACL checked and its type known.
const READS: &[&str] = &[
    "HGET", "HMGET", "HGETALL", "GET", "EXISTS", "ZRANGE", "ZCARD", "ZSCORE", "PTTL", "TYPE",
];

/// The command named by a string literal right after `call` at `at` in `code`, if any.
fn literal_command<'a>(code: &'a str, at: usize, call: &str) -> Option<&'a str> {
    code[at + call.len()..]
        .strip_prefix('\'')
        .and_then(|r| r.split('\'').next())
}

#[test]
fn scripts_reach_keys_only_through_read_and_commit() {
    for (path, text) in sources() {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("--").next().unwrap_or_default();
            if path != "include/commit.lua" {
                for call in ["redis.call(", "redis.pcall("] {
                    for (at, _) in code.match_indices(call) {
                        assert_eq!(
                            literal_command(code, at, call),
                            Some("TIME"),
                            "lua/{path}:{}: reach keys with read(...) or write(...)",
                            n + 1
                        );
                    }
                }
            }
            for (at, _) in code.match_indices("read(") {
                if at > 0 && code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                    continue; // another function whose name ends in `read`
                }
                if let Some(command) = literal_command(code, at, "read(") {
                    assert!(
                        READS.contains(&command),
                        "lua/{path}:{}: `{command}` is not a read: queue it with write(...)",
                        n + 1
                    );
                }
            }
        }
    }
}

#[test]
fn argv_is_read_only_through_the_typed_helpers() {
    for (path, text) in sources() {
        if path == "include/common.lua" {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let code = line.split("--").next().unwrap_or_default();
            assert!(
                !code.contains("ARGV["),
                "lua/{path}:{}: read ARGV with arg_str, arg_opt or arg_int",
                n + 1
            );
        }
    }
}

/// A queued write is lost unless `commit()` runs before the script returns, and nothing
/// after `commit()` may read or decide: each script's own text is checked line by line.
#[test]
fn every_queued_write_is_committed_and_nothing_runs_after_commit() {
    const QUEUEING: &[&str] = &[
        "write(",
        "rate_count(",
        "session_revoke_apply(",
        "projection_write(",
        "user_index_settle(",
        "session_open_apply(",
    ];
    for script in scripts().all() {
        let path = format!("{}.lua", script.name);
        let text = LUA.get_file(&path).unwrap().contents_utf8().unwrap();
        let (mut pending, mut committed) = (false, false);
        for (n, line) in text.lines().enumerate() {
            let code = line.split("--").next().unwrap_or_default().trim();
            if QUEUEING.iter().any(|q| code.contains(q)) {
                pending = true;
            }
            if code == "commit()" {
                (pending, committed) = (false, true);
                continue;
            }
            if committed && !code.starts_with("return") && !code.starts_with("end") {
                assert!(
                    !code.contains("redis.") && !code.contains("write(") && !code.contains("read("),
                    "lua/{path}:{}: runs Redis after commit()",
                    n + 1
                );
            }
            if code.starts_with("return") {
                assert!(
                    !pending,
                    "lua/{path}:{}: returns with writes queued and not committed",
                    n + 1
                );
            }
            if code == "end" || code.starts_with("if ") {
                committed = false;
            }
        }
        let queues = text.lines().any(|l| {
            let code = l.split("--").next().unwrap_or_default();
            QUEUEING.iter().any(|q| code.contains(q))
        });
        assert!(
            !queues || text.contains("\ncommit()\n"),
            "lua/{path} never commits"
        );
    }
}

/// The startup probe checks exactly the commands the scripts run (`read('X'`, `write('X'`,
/// and `commit()`'s own `TYPE` and `XINFO`, and `TIME`), so a user lacking any of them fails
/// at start, not on the first call that needs it.
#[test]
fn the_startup_probe_checks_every_command_the_scripts_run() {
    let mut used = std::collections::BTreeSet::from(["TYPE", "XINFO", "TIME"]);
    for (path, text) in sources() {
        if path == "access_probe.lua" {
            continue;
        }
        for call in ["read('", "write('"] {
            for literal in text.split(call).skip(1) {
                used.insert(literal.split('\'').next().unwrap());
            }
        }
    }
    let probe = LUA
        .get_file("access_probe.lua")
        .unwrap()
        .contents_utf8()
        .unwrap();
    let probed: std::collections::BTreeSet<&str> = probe
        .split("{'")
        .skip(1)
        .map(|c| c.split('\'').next().unwrap())
        .collect();
    assert_eq!(
        probed, used,
        "lua/access_probe.lua checks other commands than the scripts run"
    );
}

/// The per-script table of docs/scripts.md names every script at its current version.
#[test]
fn the_readme_script_table_names_every_script_at_its_version() {
    let readme = include_str!("../../../../docs/scripts.md");
    for script in scripts().all() {
        let row = format!("| `{}` v{} ", script.name, script.version);
        assert!(
            readme.contains(&row),
            "docs/scripts.md lacks the row `{row}`"
        );
    }
}

#[test]
fn every_script_checks_its_arity_first() {
    for script in scripts().all() {
        let code: Vec<&str> = script
            .body
            .lines()
            .filter(|l| !l.starts_with("--") && !l.starts_with("#!"))
            .collect();
        let (keys, args) = (script.header.keys.len(), script.header.args.len());
        let fixed = script.header.required == (keys, args) && script.header.planned.0.is_empty();
        if fixed {
            assert_eq!(
                code[0],
                format!("if #KEYS ~= {keys} or #ARGV ~= {args} then"),
                "{}",
                script.name
            );
        } else {
            // The shape is learnt first, and a call of no allowed shape refused before any read.
            assert!(
                code[0].starts_with("local SHAPE_OPTIONAL"),
                "{}",
                script.name
            );
            let refusal = code
                .iter()
                .position(|l| l.contains("redis.error_reply('ERR"))
                .unwrap();
            assert!(
                code[..refusal]
                    .iter()
                    .all(|l| !l.contains("read(") && !l.contains("redis.call")),
                "{}",
                script.name
            );
        }
    }
}

#[test]
fn include_lines_are_replaced_by_the_fragment() {
    let body = inline_includes(
        "t",
        "#!lua\n-- t, version: 3\n--!include common.lua: int\nreturn int(1)\n",
        "-- prologue\n",
    );
    assert!(body.starts_with("#!lua\n-- t, version: 3\n-- prologue\n"));
    assert!(body.contains("local function int("));
    assert!(
        !body.contains("now_ms"),
        "only the named helpers are inlined"
    );
    assert_eq!(parse_version("t", &body), 3);
}
