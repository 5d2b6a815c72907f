//! Faults under a steady load of logins and revokes: every answer is 200 or a clean 503 (no 500,
//! no hang past the timeouts), the service recovers by itself, and the invariant checker then
//! finds no partial state in Redis.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use authsession::config;
use authsession_testbench::chaos;
use authsession_testbench::load::{self, Observed};
use authsession_testbench::{
    invariants, FakeMailService, FakeUserService, Fault, FaultProxy, RedisServer,
};

use crate::helpers::{harness, harness_on, harness_with, unique_email, Harness};

/// Runs the load, applies `fault` after a second of steady state, keeps the load going until a
/// login succeeded after the fault ended (or 10 s passed), and checks everything.
async fn under_load<F: std::future::Future<Output = ()>>(
    h: &Harness,
    fault: F,
    also_allowed: &[(u16, &str)],
) {
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Observed::default());
    let ended = Mutex::new(None::<Instant>);
    let drive = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        fault.await;
        let end = Instant::now();
        *ended.lock().unwrap() = Some(end);
        while end.elapsed() < Duration::from_secs(10) {
            if seen.lock().unwrap().logins.iter().any(|at| *at > end) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, Ordering::Relaxed);
    };
    let load = load::logins_and_revokes(&h.app, &h.mail, 4, Duration::ZERO, &stop, &seen);
    tokio::join!(load, drive);

    let seen = seen.into_inner().unwrap();
    let end = ended.into_inner().unwrap().unwrap();
    for (route, status, code) in seen.answers.keys() {
        let allowed = *status == 200
            || (*status == 503 && code == "service_unavailable")
            || also_allowed.iter().any(|(s, c)| s == status && c == code);
        assert!(
            allowed,
            "{route} answered {status} {code}: {:?}",
            seen.answers
        );
    }
    let bound = h.app.longest_answer();
    assert!(
        seen.slowest < bound,
        "slowest answer {:?} (bound {bound:?})",
        seen.slowest
    );
    let recovered = seen
        .logins
        .iter()
        .filter(|at| **at > end)
        .min()
        .map(|at| at.duration_since(end));
    let recovered = recovered.unwrap_or_else(|| {
        panic!(
            "no login succeeded within 10 s after the fault: {:?}",
            seen.answers
        )
    });
    assert!(
        seen.answers.keys().any(|(_, s, _)| *s == 200),
        "no request succeeded at all"
    );
    eprintln!(
        "recovered {recovered:?} after the fault; answers {:?}",
        seen.answers
    );

    let mut conn = h.redis.connection().await;
    let violations = invariants::check(&mut conn, &h.app.config).await;
    assert!(
        violations.is_empty(),
        "partial state after the fault: {violations:#?}"
    );
}

#[tokio::test]
async fn redis_killed_and_restarted() {
    let h = harness(&[]).await;
    let fault = chaos::restart(&h.redis, Duration::from_secs(1));
    // Sessions created before the crash are gone with it (no persistence in tests).
    under_load(
        &h,
        fault,
        &[(404, "challenge_not_found"), (404, "session_not_found")],
    )
    .await;
}

#[tokio::test]
async fn redis_paused() {
    let h = harness(&[]).await;
    let fault = chaos::freeze(&h.redis, Duration::from_secs(2));
    under_load(&h, fault, &[]).await;
}

#[tokio::test]
async fn connections_reset_after_the_request_was_sent() {
    let redis = RedisServer::start().await;
    let proxy = FaultProxy::start(redis.addr()).await;
    let h = harness_on(redis, &[(config::REDIS_ADDR, &proxy.addr())]).await;
    let fault = chaos::through_proxy(
        &proxy,
        Fault::DropReplyTo(b"EVALSHA".to_vec()),
        Duration::from_millis(1500),
    );
    under_load(&h, fault, &[]).await;
}

#[tokio::test]
async fn script_cache_flushed_repeatedly() {
    let h = harness(&[]).await;
    let mut admin = h.redis.connection().await;
    let fault = async {
        for _ in 0..10 {
            chaos::flush_scripts(&mut admin).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    under_load(&h, fault, &[]).await;
}

#[tokio::test]
async fn redis_out_of_memory() {
    let h = harness(&[]).await;
    let mut admin = h.redis.connection().await;
    let fault = chaos::out_of_memory(&mut admin, Duration::from_millis(1500));
    under_load(&h, fault, &[]).await;
}

#[tokio::test]
async fn user_service_hanging() {
    let h = harness(&[]).await;
    let fault = chaos::hang(&h.users, Duration::from_millis(2500));
    under_load(&h, fault, &[]).await;
}

#[tokio::test]
async fn mail_service_resetting_connections() {
    let mail = FakeMailService::start().await;
    let proxy = FaultProxy::start(mail.base_url().trim_start_matches("http://").to_owned()).await;
    let through_proxy = format!("http://{}", proxy.addr());
    let h = harness_with(
        RedisServer::start().await,
        FakeUserService::start().await,
        mail,
        &[(config::MAIL_SERVICE_BASE_URL, &through_proxy)],
    )
    .await;
    let fault = chaos::through_proxy(&proxy, Fault::Refuse, Duration::from_millis(1500));
    under_load(&h, fault, &[]).await;
}

#[tokio::test]
async fn a_tiny_pool_and_a_stalled_redis_fail_fast_instead_of_queueing() {
    let h = harness(&[
        (config::REDIS_POOL_SIZE, "1"),
        (config::REDIS_COMMAND_TIMEOUT, "500ms"),
    ])
    .await;
    let mut admin = h.redis.connection().await;
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(8000)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .unwrap();
    let started = Instant::now();

    let emails: Vec<String> = (0..40).map(|_| unique_email()).collect();
    let replies = futures::future::join_all(emails.iter().map(|e| h.app.send_email_code(e))).await;

    assert!(
        replies.iter().all(|r| r.status == 503),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    // Each request fails within its command timeout (pool wait included); queued behind one
    // another, 40 would take 40 of them.
    let bound = 4 * h.app.config.redis.command_timeout;
    assert!(
        started.elapsed() < bound,
        "took {:?} (bound {bound:?}): requests queued",
        started.elapsed()
    );
}

/// Audit round 3, item 4: a send whose create committed but whose answer was lost (past the
/// pool's one resend) answered 503 and left the resend window naming a challenge whose code was
/// never mailed; the client's retry got a throttled challenge following it, and no code reached
/// the address for the whole cooldown. The failed send now releases the window it opened, so the
/// retry opens its own and the code it mails confirms the challenge the client holds.
#[tokio::test]
async fn a_send_that_failed_after_its_challenge_committed_converges_on_the_retry() {
    let redis = RedisServer::start().await;
    let proxy = FaultProxy::start(redis.addr()).await;
    let h = harness_on(redis, &[(config::REDIS_ADDR, &proxy.addr())]).await;
    // One send first, so Redis has the create script (a `NOSCRIPT` would run nothing).
    h.send_code(&unique_email()).await;
    let email = unique_email();
    let create = authsession::store::scripts::scripts()
        .challenge_create
        .sha1
        .clone();
    proxy.set(Fault::DropReplyTo(create.into_bytes()));
    let first = h.app.send_email_code(&email).await;
    assert_eq!(first.status, 503, "{first:?}");
    proxy.set(Fault::PassThrough);
    let mut conn = h.redis.connection().await;
    let address = authsession::domain::Email::parse(&email).unwrap();
    let window: Option<String> =
        redis::AsyncCommands::get(&mut conn, h.app.keys().resend_throttle(address.hash()))
            .await
            .unwrap();
    assert_eq!(
        window, None,
        "the failed send released the window it opened"
    );

    let (challenge, code) = h.send_code(&email).await;
    let confirmed = h
        .app
        .confirm(&challenge, &code, &crate::helpers::public_key())
        .await;
    assert_eq!(confirmed.status, 200, "{confirmed:?}");
}
