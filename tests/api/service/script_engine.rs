//! The Lua script engine: transparent reload on NOSCRIPT, and `preloaded` mode.

use authsession::app::{App, StartupError};
use authsession::config::{self, Config};
use authsession::store::scripts::scripts;
use authsession_testbench::app::test_env;
use authsession_testbench::{spawn_app, RedisServer};

use crate::helpers::{harness, unique_email};

#[tokio::test]
async fn script_calls_keep_working_after_script_flush() {
    let h = harness(&[]).await;
    h.login(&unique_email()).await;

    let mut redis = h.app.redis.clone();
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut redis)
        .await
        .unwrap();

    h.login(&unique_email()).await;
}

#[tokio::test]
async fn script_calls_keep_working_after_the_redis_server_restarts() {
    let mut h = harness(&[]).await;
    h.login(&unique_email()).await;

    h.redis.restart().await; // empty data, empty script cache, every pooled connection dead
    h.app.redis = authsession::store::Dedicated::Single(h.redis.connection().await);

    h.login(&unique_email()).await;
}

#[tokio::test]
async fn preloaded_mode_refuses_to_start_when_a_script_is_missing_and_starts_once_loaded() {
    let redis = RedisServer::start().await;
    let mut env = test_env(&redis);
    env.insert(config::REDIS_SCRIPT_LOADING.into(), "preloaded".into());

    let refused = App::build(Config::from_source(&env).unwrap()).await;
    match refused {
        Err(StartupError::ScriptsMissing { missing, .. }) => {
            assert!(missing.contains("challenge_confirm"), "{missing}")
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("started without its scripts"),
    }

    redis.load_scripts().await;
    let app = spawn_app(&redis, &[(config::REDIS_SCRIPT_LOADING, "preloaded")]).await;
    let reply = app.send_email_code(&unique_email()).await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

#[tokio::test]
async fn preloaded_mode_answers_503_instead_of_sending_a_script_body() {
    let redis = RedisServer::start().await;
    redis.load_scripts().await;
    let mut conn = redis.connection().await;
    let app = spawn_app(&redis, &[(config::REDIS_SCRIPT_LOADING, "preloaded")]).await;
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();

    let reply = app.send_email_code(&unique_email()).await;

    assert_eq!(reply.status, 503, "{reply:?}");
    let cached: Vec<bool> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&scripts().challenge_create.sha1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        cached,
        [false],
        "the service loaded a script body in preloaded mode"
    );
}
