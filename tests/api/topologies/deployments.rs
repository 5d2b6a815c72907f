//! Shared Redis deployments: one login -> revoke -> block story on standalone, a 3-primary
//! cluster, an ACL-restricted user and TLS; failover; bad credentials; namespace isolation.

use std::time::{Duration, Instant};

use authsession::app::App;
use authsession::config::{self, Config};
use authsession::store::Redis;
use authsession_testbench::app::test_env;
use authsession_testbench::{free_port, RedisCluster, RedisServer, ServiceProcess};
use serde_json::{json, Value};

use crate::helpers::{
    documented_acl, filled, harness, harness_on, public_key, unique_email, Harness,
};

/// The service's grant.
fn readme_acl() -> Vec<&'static str> {
    documented_acl("authsession")
}

/// The commands the documented grant gives (`+cmd`), which every command the scripts run must be among.
pub static ACL_COMMANDS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    readme_acl()
        .into_iter()
        .filter(|a| a.starts_with('+'))
        .collect()
});

/// Creates the documented ACL user exactly as documented, on every node given, with the
/// deployment's key prefix, gateway prefix and stream for `<P>`, `<G>` and `<S>`.
pub(crate) async fn create_readme_acl_user(
    nodes: &mut [redis::aio::MultiplexedConnection],
    (p, g, s): (&str, &str, &str),
    password: &str,
) {
    let words = readme_acl();
    assert_eq!(&words[..3], ["ACL", "SETUSER", "authsession"]);
    let mut cmd = redis::cmd("ACL");
    for word in filled(&words, (p, g, s), password) {
        cmd.arg(word);
    }
    for node in nodes {
        let () = cmd
            .query_async(node)
            .await
            .expect("the documented ACL SETUSER");
    }
}

/// The snapshot the gateway would read, through the service's own Redis handle (works in every
/// deployment mode).
async fn gateway_view(h: &Harness, id: &str) -> Option<Value> {
    // A fresh pool (TLS handshakes included) on a busy machine may need more than the 1 s
    // command timeout for its first command; this is a reader, not the service under test.
    let mut config = h.app.config.redis.clone();
    config.command_timeout = Duration::from_secs(10);
    let redis = Redis::new(&config).unwrap();
    let raw: Option<String> = redis
        .query(redis::cmd("GET").arg(h.app.snapshot_key(id)))
        .await
        .unwrap();
    raw.map(|r| serde_json::from_str(&r).unwrap())
}

/// The operator story of the runbook, through both HTTP surfaces only.
async fn login_revoke_block_story(h: &Harness) {
    let email = unique_email();
    let (first, user_id) = h.login(&email).await;
    let (second, _) = h.login(&email).await;

    let session = h
        .app
        .get_internal(&format!("/api/v1/internal/sessions/{first}"))
        .await;
    assert_eq!(
        (
            session.body["status"].as_str(),
            session.body["version"].as_u64()
        ),
        (Some("active"), Some(1))
    );
    assert_eq!(
        gateway_view(h, &first).await.expect("snapshot")["status"],
        "active"
    );

    let revoked = h
        .app
        .post_internal(&format!("/api/v1/internal/sessions/{first}/revoke"), None)
        .await;
    assert_eq!(revoked.body["outcome"], "revoked", "{revoked:?}");
    let view = gateway_view(h, &first).await.unwrap();
    assert_eq!(
        (view["status"].as_str(), view["version"].as_u64()),
        (Some("revoked"), Some(2))
    );

    let blocked = h
        .app
        .post_internal(&format!("/api/v1/internal/users/{user_id}/block"), None)
        .await;
    assert_eq!(
        blocked.body,
        json!({"outcome": "blocked", "revoked_count": 1}),
        "{blocked:?}"
    );
    assert_eq!(gateway_view(h, &second).await.unwrap()["status"], "revoked");

    let listed = h
        .app
        .get_internal(&format!(
            "/api/v1/internal/users/{user_id}/sessions?status=revoked"
        ))
        .await;
    assert_eq!(
        listed.body["sessions"].as_array().unwrap().len(),
        2,
        "{listed:?}"
    );
    h.mail.clear_calls();
    assert_eq!(h.app.send_email_code(&email).await.status, 200);
    assert!(
        h.mail.calls().is_empty(),
        "a blocked user's send is suppressed"
    );
}

const COOLDOWN: (&str, &str) = (config::RESEND_COOLDOWN, "1ms");

#[tokio::test]
async fn the_story_passes_on_standalone() {
    let h = harness(&[COOLDOWN]).await;
    login_revoke_block_story(&h).await;
}

pub(crate) async fn cluster_harness(cluster: &RedisCluster, extra: &[(&str, &str)]) -> Harness {
    layout_harness(
        cluster,
        1,
        authsession_testbench::cluster_names(false),
        extra,
    )
    .await
}

/// The partitioned layout over `partitions` tags: untagged names unique to the test.
pub(crate) async fn partitioned_harness(
    cluster: &RedisCluster,
    partitions: u32,
    extra: &[(&str, &str)],
) -> Harness {
    layout_harness(
        cluster,
        partitions,
        authsession_testbench::cluster_names(true),
        extra,
    )
    .await
}

/// The service on `cluster` in the single-tag layout (`partitions` 1: names sharing one hash
/// tag, as it requires) or the partitioned one (names without a tag).
async fn layout_harness(
    cluster: &RedisCluster,
    partitions: u32,
    (prefix, gateway, stream): (String, String, String),
    extra: &[(&str, &str)],
) -> Harness {
    let (seeds, partitions) = (cluster.seeds(), partitions.to_string());
    let mut env = vec![
        (config::REDIS_MODE, "cluster"),
        (config::REDIS_PARTITIONS, partitions.as_str()),
        (config::REDIS_ADDR, seeds.as_str()),
        (config::REDIS_KEY_PREFIX, prefix.as_str()),
        (config::GATEWAY_SESSION_KEY_PREFIX, gateway.as_str()),
        (config::GATEWAY_SESSION_EVENTS_STREAM, stream.as_str()),
        COOLDOWN,
    ];
    env.extend_from_slice(extra);
    // The harness's own server is unused here; the cluster is the store.
    harness_on(RedisServer::start().await, &env).await
}

#[tokio::test]
async fn the_story_passes_on_a_three_primary_cluster() {
    let cluster = RedisCluster::start(3, 1).await;
    let h = cluster_harness(&cluster, &[]).await;
    login_revoke_block_story(&h).await;
}

/// The same story in the partitioned layout: ids carry their partition, a user's sessions and
/// their projections sit in the user's partition, the address's challenge in the address's.
#[tokio::test]
async fn the_story_passes_on_a_partitioned_cluster() {
    let cluster = RedisCluster::start(3, 0).await;
    let h = partitioned_harness(&cluster, 64, &[]).await;
    login_revoke_block_story(&h).await;
    let (id, user) = h.login(&unique_email()).await;
    let keys = &h.app.store().keys;
    let tag = keys
        .layout()
        .tag_name(keys.layout().of_user(&user))
        .unwrap();
    assert!(id.starts_with(&format!("{{{tag}}}")), "{id} in {tag}");
}

fn acl_env(redis: &RedisServer, password: &str) -> (String, Vec<(&'static str, String)>) {
    let prefix = authsession_testbench::unique_prefix("acl");
    let env = vec![
        (config::REDIS_ADDR, redis.addr()),
        (config::REDIS_USERNAME, "authsession".to_owned()),
        (config::REDIS_PASSWORD, password.to_owned()),
        (config::REDIS_KEY_PREFIX, format!("{prefix}authsession:")),
        (
            config::GATEWAY_SESSION_KEY_PREFIX,
            format!("{prefix}gateway:session:"),
        ),
        (
            config::GATEWAY_SESSION_EVENTS_STREAM,
            format!("{prefix}gateway:session_events"),
        ),
    ];
    (prefix, env)
}

#[tokio::test]
async fn the_story_passes_with_an_acl_user_restricted_to_its_keys_and_commands() {
    let redis = RedisServer::start().await;
    let (prefix, env) = acl_env(&redis, "acl-secret");
    let names = (
        format!("{prefix}authsession:"),
        format!("{prefix}gateway:session:"),
        format!("{prefix}gateway:session_events"),
    );
    create_readme_acl_user(
        &mut [redis.connection().await],
        (&names.0, &names.1, &names.2),
        "acl-secret",
    )
    .await;
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain([COOLDOWN])
        .collect();

    let h = harness_on(redis, &env).await;

    login_revoke_block_story(&h).await;
}

/// Finding 12 of the second scripts audit: the documented ACL line read `~<S>`, which matches no
/// partition stream `S{t}`, so every session script was refused in the partitioned layout. The
/// documented ACL, verbatim (plus the cluster-mode grants docs/operations.md names), runs the story.
#[tokio::test]
async fn the_readme_acl_verbatim_runs_the_story_on_a_partitioned_cluster() {
    let cluster = RedisCluster::start(3, 0).await;
    let (prefix, gateway, stream) = authsession_testbench::cluster_names(true);
    let mut nodes = Vec::new();
    for node in &cluster.nodes {
        nodes.push(node.connection().await);
    }
    create_readme_acl_user(&mut nodes, (&prefix, &gateway, &stream), "acl-secret").await;
    for node in &mut nodes {
        let () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("authsession")
            .arg("+cluster|slots")
            .arg("+cluster|nodes")
            .query_async(node)
            .await
            .unwrap();
    }
    let h = layout_harness(
        &cluster,
        8,
        (prefix, gateway, stream),
        &[
            (config::REDIS_USERNAME, "authsession"),
            (config::REDIS_PASSWORD, "acl-secret"),
        ],
    )
    .await;
    login_revoke_block_story(&h).await;
}

#[tokio::test]
async fn the_story_passes_over_tls() {
    let redis = RedisServer::start_tls().await;
    let tls = redis.tls().unwrap().clone();
    let addr = format!("127.0.0.1:{}", tls.port);
    let ca = tls.ca_file.display().to_string();

    let h = harness_on(
        redis,
        &[
            (config::REDIS_ADDR, &addr),
            (config::REDIS_TLS_ENABLED, "true"),
            (config::REDIS_TLS_CA_FILE, &ca),
            // The story is about TLS working, not its speed: startup's handshakes once took over
            // the default 2 s while parallel tests started clusters' containers.
            (config::REDIS_CONNECT_TIMEOUT, "10s"),
            COOLDOWN,
        ],
    )
    .await;

    login_revoke_block_story(&h).await;
}

/// Startup against `env`: the error text, or a panic if it started.
async fn startup_error(env: std::collections::HashMap<String, String>) -> String {
    match App::build(Config::from_source(&env).expect("valid configuration")).await {
        Ok(_) => panic!("started despite a broken Redis setup"),
        Err(error) => error.to_string(),
    }
}

/// Finding 2 of the second scripts audit: the startup probe touched two keys of the key prefix
/// only, so a user without the gateway pattern (or a stream) started, then revoke-all and block
/// failed part way. Startup now proves every command the scripts run on every namespace, and
/// names the key or the command.
#[tokio::test]
async fn a_user_without_a_pattern_or_a_command_fails_startup_naming_it() {
    let redis = RedisServer::start().await;
    let (prefix, env) = acl_env(&redis, "pw");
    let names = [
        format!("{prefix}authsession:*"),
        format!("{prefix}gateway:session:*"),
        format!("{prefix}gateway:session_events*"),
    ];
    for (missing, what) in [(1, "gateway:session:"), (2, "gateway:session_events")] {
        let patterns: Vec<&str> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != missing)
            .map(|(_, p)| p.as_str())
            .collect();
        redis
            .create_acl_user("authsession", "pw", &patterns, &ACL_COMMANDS)
            .await;
        let mut map = test_env(&redis);
        map.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let error = startup_error(map).await;
        assert!(
            error.contains("challenge_store")
                && error.contains("no permission")
                && error.contains(&format!("{prefix}{what}")),
            "without {what}: {error}"
        );
    }
    // Every pattern, but a command the scripts run only on some calls (`XINFO STREAM` checks a
    // stream a call adds several events to: an eviction, a revoke-all batch).
    let patterns: Vec<&str> = names.iter().map(String::as_str).collect();
    let commands: Vec<&str> = ACL_COMMANDS
        .iter()
        .copied()
        .filter(|c| *c != "+xinfo|stream")
        .collect();
    redis
        .create_acl_user("authsession", "pw", &patterns, &commands)
        .await;
    let mut map = test_env(&redis);
    map.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let error = startup_error(map).await;
    assert!(
        error.contains("no permission to run XINFO STREAM"),
        "without +xinfo|stream: {error}"
    );
}

#[tokio::test]
async fn a_wrong_password_a_wrong_ca_or_a_user_without_evalsha_fails_startup_naming_the_cause() {
    // Wrong password.
    let redis = RedisServer::start().await;
    let (prefix, env) = acl_env(&redis, "not-the-password");
    let pattern = format!("{prefix}*");
    redis
        .create_acl_user("authsession", "right-password", &[&pattern], &ACL_COMMANDS)
        .await;
    let mut map = test_env(&redis);
    map.extend(env.into_iter().map(|(k, v)| (k.to_owned(), v)));
    let error = startup_error(map).await;
    assert!(
        error.contains("challenge_store") && error.to_lowercase().contains("authentication failed"),
        "{error}"
    );

    // No EVALSHA permission.
    let without: Vec<&str> = ACL_COMMANDS
        .iter()
        .copied()
        .filter(|c| *c != "+evalsha")
        .collect();
    redis
        .create_acl_user("noeval", "pw", &[&pattern], &without)
        .await;
    let mut map = test_env(&redis);
    map.insert(config::REDIS_USERNAME.into(), "noeval".into());
    map.insert(config::REDIS_PASSWORD.into(), "pw".into());
    map.insert(
        config::REDIS_KEY_PREFIX.into(),
        format!("{prefix}authsession:"),
    );
    let error = startup_error(map).await;
    assert!(
        error.contains("challenge_store")
            && error.to_lowercase().contains("no permissions")
            && error.contains("evalsha"),
        "{error}"
    );

    // A CA that did not sign the server's certificate.
    let tls_server = RedisServer::start_tls().await;
    let other = RedisServer::start_tls().await;
    let mut map = test_env(&tls_server);
    map.insert(
        config::REDIS_ADDR.into(),
        format!("127.0.0.1:{}", tls_server.tls().unwrap().port),
    );
    map.insert(config::REDIS_TLS_ENABLED.into(), "true".into());
    map.insert(
        config::REDIS_TLS_CA_FILE.into(),
        other.tls().unwrap().ca_file.display().to_string(),
    );
    // Long enough for a TLS handshake on a busy machine: the CA is refused long before.
    map.insert(config::REDIS_CONNECT_TIMEOUT.into(), "5s".into());
    let error = startup_error(map).await;
    assert!(
        error.contains("challenge_store") && error.to_lowercase().contains("certificate"),
        "{error}"
    );
}

#[tokio::test]
async fn cluster_mode_without_a_shared_hash_tag_exits_1_showing_the_fix() {
    let (code, output) = ServiceProcess::run(
        std::path::Path::new(env!("CARGO_BIN_EXE_authsession")),
        &[],
        &[
            (config::REDIS_MODE.to_owned(), "cluster".to_owned()),
            (
                config::REDIS_ADDR.to_owned(),
                format!("127.0.0.1:{}", free_port()),
            ),
        ],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(
        output.contains("hash tag") && output.contains("{auth}authsession:"),
        "{output}"
    );
}

#[tokio::test]
async fn a_cluster_failover_mid_run_costs_at_most_some_503s_and_loses_no_session() {
    let cluster = RedisCluster::start(3, 1).await;
    let h = cluster_harness(&cluster, &[]).await;
    let slot_key = h.app.config.redis.key_prefix.clone();
    failover_mid_run(&h, &cluster, &slot_key).await;
}

/// The same in the partitioned layout: the primary of one partition (and of the others on its
/// shard) fails over mid-run.
#[tokio::test]
async fn a_cluster_failover_mid_run_in_the_partitioned_layout_loses_no_session() {
    let cluster = RedisCluster::start(3, 1).await;
    let h = partitioned_harness(&cluster, 64, &[]).await;
    let slot_key = h.app.store().keys.streams()[0].clone();
    failover_mid_run(&h, &cluster, &slot_key).await;
}

/// Logins while the primary serving `slot_key` fails over: 200 or 503 only, a login succeeds
/// after the switch, and every session a 200 announced is still there.
async fn failover_mid_run(h: &Harness, cluster: &RedisCluster, slot_key: &str) {
    h.login(&unique_email()).await; // scripts cached on the current primary

    let done: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let failover = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let port = cluster.failover_primary_of(slot_key).await;
        *done.lock().unwrap() = Some(Instant::now());
        port
    };
    let load = async {
        let mut created = Vec::new();
        let started = Instant::now();
        // Until two seconds after the switch (bounded, whatever happens).
        while started.elapsed() < Duration::from_secs(40)
            && done
                .lock()
                .unwrap()
                .is_none_or(|at| at.elapsed() < Duration::from_secs(2))
        {
            let send = h.app.send_email_code(&unique_email()).await;
            assert!(matches!(send.status, 200 | 503), "{send:?}");
            let Some(challenge_id) = send.body["challenge_id"].as_str() else {
                continue;
            };
            let Some(code) = h.mail.code_for(challenge_id) else {
                continue;
            };
            let confirm = h.app.confirm(challenge_id, &code, &public_key()).await;
            assert!(matches!(confirm.status, 200 | 503), "{confirm:?}");
            if confirm.status == 200 {
                let id = confirm.body["device_session_id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                created.push((Instant::now(), id));
            }
        }
        created
    };
    let (new_primary, created) = tokio::join!(failover, load);

    assert_eq!(cluster.primary_port_for(slot_key).await, new_primary);
    let switched = done.lock().unwrap().expect("failover completed");
    assert!(
        created.iter().any(|(at, _)| *at > switched),
        "no login succeeded after the failover"
    );
    for (_, id) in &created {
        let session = h
            .app
            .get_internal(&format!("/api/v1/internal/sessions/{id}"))
            .await;
        assert_eq!(session.status, 200, "session {id} was lost");
    }
    let after = h.login(&unique_email()).await;
    assert!(!after.0.is_empty());
}

#[tokio::test]
async fn two_prefixes_on_one_server_never_see_each_other() {
    let a = harness(&[]).await;
    let b = harness_on(
        RedisServer::start().await,
        &[(config::REDIS_ADDR, &a.redis.addr())],
    )
    .await;
    let email = unique_email();

    let (id, user_id) = a.login(&email).await;

    assert_eq!(
        b.app
            .get_internal(&format!("/api/v1/internal/sessions/{id}"))
            .await
            .status,
        404
    );
    let listed = b
        .app
        .get_internal(&format!("/api/v1/internal/users/{user_id}/sessions"))
        .await;
    assert_eq!(listed.body["sessions"], json!([]));
    assert!(
        b.snapshot(&id).await.is_none(),
        "b's gateway prefix holds a's snapshot"
    );
    assert!(
        b.events_for(&id).await.is_empty(),
        "b's stream holds a's event"
    );
    // b's own login is not throttled by a's window: the namespaces do not share throttle keys.
    let (b_challenge, _) = b.send_code(&email).await;
    assert!(!b_challenge.is_empty());
    let keys = a.all_keys().await;
    let a_prefix = a.app.prefix().split(':').next().unwrap().to_owned();
    let b_prefix = b.app.prefix().split(':').next().unwrap().to_owned();
    assert!(
        keys.iter()
            .all(|k| k.starts_with(&a_prefix) || k.starts_with(&b_prefix)),
        "{keys:?}"
    );
    assert_eq!(
        a.app
            .get_internal(&format!("/api/v1/internal/sessions/{id}"))
            .await
            .status,
        200
    );
}
