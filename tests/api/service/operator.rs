//! Operator commands against a real Redis and a running service: verify, inspect, republish,
//! scripts check.

use std::time::Duration;

use authsession::config;
use authsession::store::scripts::scripts;
use authsession_testbench::{free_port, ServiceProcess, TestApp};
use redis::AsyncCommands;

use crate::helpers::{harness, unique_email};

/// Runs `authsession <args>` with the app's configuration plus `overrides`; (exit code, output).
pub(crate) async fn run_cli(
    app: &TestApp,
    args: &[&str],
    overrides: &[(&str, String)],
) -> (i32, String) {
    let mut env = app.cli_env();
    for (k, v) in overrides {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.clone()));
    }
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_authsession"));
    let (code, output) = ServiceProcess::run(binary, args, &env, Duration::from_secs(20)).await;
    (code.unwrap_or(-1), output)
}

#[tokio::test]
async fn verify_passes_on_a_healthy_service() {
    let h = harness(&[]).await;

    let (code, output) = run_cli(&h.app, &["verify"], &[]).await;

    assert_eq!(code, 0, "{output}");
    for item in [
        "public listener",
        "internal listener",
        "public smoke request",
        "internal smoke request",
        "internal surface authentication",
        "redis",
        "redis topology",
        "namespace",
        "script cache",
    ] {
        assert!(
            output.contains(&format!("[PASS] {item}")),
            "{item} missing:\n{output}"
        );
    }
    // Issue 37 item 7: the documented sample output names the checks the command runs, in order.
    let names = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("[PASS] "))
            .map(|l| l.split(':').next().unwrap().to_owned())
            .collect()
    };
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
            .unwrap();
    let sample = readme
        .split("authsession steady-state verification (runbook)\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/operations.md shows a verify run");
    assert_eq!(
        names(sample),
        names(&output),
        "the documented sample vs this run:\n{output}"
    );
    let (code, json) = run_cli(&h.app, &["verify", "--json"], &[]).await;
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&json).expect("JSON report");
    assert_eq!(report["ok"], true);
    assert_eq!(report["checks"].as_array().unwrap().len(), 9);
    assert!(
        output.contains("no token; listens on loopback only"),
        "{output}"
    );
    assert!(
        output.contains("mode standalone, primary ") && output.contains("replica acks off"),
        "{output}"
    );
}

#[tokio::test]
async fn verify_reports_whether_the_internal_surface_requires_a_token() {
    let token = "verify-token-0123456789";
    let h = harness(&[(config::INTERNAL_HTTP_TOKEN, token)]).await;

    let (code, output) = run_cli(&h.app, &["verify"], &[]).await;

    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("[PASS] internal surface authentication")
            && output.contains("requires a bearer token"),
        "{output}"
    );
    assert!(!output.contains(token));
}

#[tokio::test]
async fn verify_fails_naming_the_internal_listener_when_it_is_down() {
    let h = harness(&[]).await;
    let nothing_there = format!("127.0.0.1:{}", free_port());

    let (code, output) = run_cli(
        &h.app,
        &["verify"],
        &[(config::INTERNAL_HTTP_ADDR, nothing_there)],
    )
    .await;

    assert_eq!(code, 1, "{output}");
    assert!(output.contains("[FAIL] internal listener"), "{output}");
    assert!(output.contains("[FAIL] internal smoke request"), "{output}");
    assert!(output.contains("[PASS] public listener"), "{output}");
}

#[tokio::test]
async fn verify_fails_naming_redis_when_it_is_unreachable() {
    let h = harness(&[]).await;
    h.redis.stop();

    let (code, output) = run_cli(
        &h.app,
        &["verify"],
        &[(config::REDIS_CONNECT_TIMEOUT, "500ms".into())],
    )
    .await;

    assert_eq!(code, 1, "{output}");
    assert!(output.contains("[FAIL] redis"), "{output}");
}

#[tokio::test]
async fn inspect_reports_a_stale_projection_and_republish_repairs_it() {
    let h = harness(&[]).await;
    let (id, _) = h.login(&unique_email()).await;
    let active_view = serde_json::to_string(&h.snapshot(&id).await.unwrap()).unwrap();
    h.app
        .post_internal(&format!("/api/v1/internal/sessions/{id}/revoke"), None)
        .await;
    // Made stale on purpose: the gateway key goes back to the version 1 active view.
    let mut redis = h.app.redis.clone();
    let () = redis
        .set(h.app.snapshot_key(&id), &active_view)
        .await
        .unwrap();

    let (code, output) = run_cli(&h.app, &["inspect", "session", &id], &[]).await;
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("snapshot version 1 < source of truth version 2"),
        "{output}"
    );
    assert!(
        output.contains(&format!("authsession republish {id}")),
        "{output}"
    );

    let (code, output) = run_cli(&h.app, &["republish", &id], &[]).await;
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("repaired"), "{output}");
    let repaired = h.snapshot(&id).await.unwrap();
    assert_eq!(
        (repaired["status"].as_str(), repaired["version"].as_u64()),
        (Some("revoked"), Some(2))
    );

    let (code, output) = run_cli(&h.app, &["inspect", "session", &id], &[]).await;
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("projection consistent (version 2, revoked)"),
        "{output}"
    );
    let (_, output) = run_cli(&h.app, &["republish", &id], &[]).await;
    assert!(
        output.contains("current"),
        "a second republish writes nothing: {output}"
    );
}

#[tokio::test]
async fn inspect_explains_challenges_and_users_without_revealing_addresses_or_codes() {
    let h = harness(&[]).await;
    let email = unique_email();
    let (challenge_id, code) = h.send_code(&email).await;
    let throttled = h.app.send_email_code(&email).await.body["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (exit, output) = run_cli(&h.app, &["inspect", "challenge", &throttled], &[]).await;
    assert_eq!(exit, 0, "{output}");
    assert!(output.contains("verdict: throttled"), "{output}");
    assert!(
        output.contains(&format!("accepts the code of challenge {challenge_id}")),
        "{output}"
    );
    assert!(
        !output.contains(&email) && output.contains("email: not kept (throttled)"),
        "{output}"
    );

    let reply = h
        .app
        .confirm(&challenge_id, &code, &crate::helpers::public_key())
        .await;
    let id = reply.body["device_session_id"].as_str().unwrap();
    let (exit, output) = run_cli(&h.app, &["inspect", "challenge", &challenge_id], &[]).await;
    assert_eq!(exit, 0, "{output}");
    assert!(
        output.contains("verdict: confirmed") && output.contains(id),
        "{output}"
    );
    assert!(!output.contains(&code), "the code leaked: {output}");

    let user_id = h.session_field(id, "user_id").await.unwrap();
    let (exit, output) = run_cli(&h.app, &["inspect", "user", &user_id], &[]).await;
    assert_eq!(exit, 0, "{output}");
    assert!(
        output.contains("1 active")
            && output.contains("every active session's projection is consistent"),
        "{output}"
    );

    let (exit, output) = run_cli(&h.app, &["inspect", "challenge", "never-existed"], &[]).await;
    assert_eq!(exit, 0);
    assert!(output.contains("challenge_not_found"), "{output}");
}

#[tokio::test]
async fn ids_starting_with_a_dash_are_ids_not_flags() {
    // Generated ids are URL-safe base64: about one in 64 starts with `-`.
    let h = harness(&[]).await;

    let (code, output) = run_cli(
        &h.app,
        &["inspect", "session", "-Fq3-starts-with-dash"],
        &[],
    )
    .await;

    assert_eq!(code, 0, "{output}");
    assert!(output.contains("not found"), "{output}");
}

/// Issue 37 item 1: `scripts check` reported the five partitioned-only scripts MISSING on a
/// healthy single-tag service, exit 1 forever. It checks the scripts the layout runs; in `auto`
/// loading one not cached yet loads on first use (exit 0), in `preloaded` mode it is MISSING
/// (exit 1); the others are listed as unused. It names the Redis it asked.
#[tokio::test]
async fn scripts_check_tells_not_loaded_from_missing_and_skips_the_other_layouts_scripts() {
    let h = harness(&[]).await;
    h.redis.load_scripts().await;
    let mut redis = h.app.redis.clone();
    let used = scripts()
        .all()
        .iter()
        .filter(|s| h.app.keys().layout().runs(s.name))
        .count();
    let preloaded = [(
        authsession::config::REDIS_SCRIPT_LOADING,
        "preloaded".to_owned(),
    )];
    for overrides in [&[][..], &preloaded[..]] {
        let (code, output) = run_cli(&h.app, &["scripts", "check"], overrides).await;
        assert_eq!(code, 0, "{output}");
        assert_eq!(output.matches(": cached").count(), used, "{output}");
    }

    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut redis)
        .await
        .unwrap();
    let (code, output) = run_cli(&h.app, &["scripts", "check"], &[]).await;
    assert_eq!(code, 0, "auto loading loads on first use: {output}");
    assert!(
        output.contains(&format!("redis: standalone {}", h.redis.addr())),
        "{output}"
    );
    assert_eq!(output.matches("not loaded yet").count(), used, "{output}");
    assert_eq!(
        output.matches("not used by the single-tag layout").count(),
        scripts().all().len() - used,
        "{output}"
    );
    assert!(!output.contains("MISSING"), "{output}");
    let (code, output) = run_cli(&h.app, &["scripts", "check"], &preloaded).await;
    assert_eq!(code, 1, "{output}");
    assert_eq!(output.matches("MISSING").count(), used, "{output}");
}

/// Issue 37 item 2: `inspect` asked the default Redis when the variable was not set, and its
/// "not found" did not say where it looked. Every operator command names the Redis it asked.
#[tokio::test]
async fn operator_commands_name_the_redis_they_asked() {
    let h = harness(&[]).await;
    let (_, output) = run_cli(&h.app, &["inspect", "challenge", "no-such-challenge"], &[]).await;
    let asked = format!("redis: standalone {}, db 0, key prefix", h.redis.addr());
    assert!(output.contains(&asked), "{output}");
    assert!(output.contains("not found in the Redis above"), "{output}");
    for args in [
        &["inspect", "session", "no-such-session"][..],
        &["inspect", "user", "no-such-user"][..],
        &["republish", "no-such-session"][..],
    ] {
        let (_, output) = run_cli(&h.app, args, &[]).await;
        assert!(output.contains(&asked), "{args:?}: {output}");
    }
}

#[tokio::test]
async fn scripts_export_writes_the_exact_bodies_the_lock_records() {
    let h = harness(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    let (code, output) = run_cli(&h.app, &["scripts", "export", dir.to_str().unwrap()], &[]).await;

    assert_eq!(code, 0, "{output}");
    for script in scripts().all() {
        let body = std::fs::read_to_string(dir.join(format!("{}.lua", script.name))).unwrap();
        assert_eq!(sha1_hex(&body), script.sha1, "{}", script.name);
    }
    let (_, lock) = run_cli(&h.app, &["scripts", "list"], &[]).await;
    assert_eq!(
        lock.trim(),
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/lua/scripts.lock"))
            .unwrap()
            .trim()
    );
}

fn sha1_hex(body: &str) -> String {
    let mut redis_style = String::new();
    for byte in sha1_smol::Sha1::from(body).digest().bytes() {
        redis_style.push_str(&format!("{byte:02x}"));
    }
    redis_style
}
