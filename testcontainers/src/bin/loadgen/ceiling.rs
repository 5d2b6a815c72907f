//! Scenario 2, the Redis-only ceiling: the same scripts in the same order as a login, no HTTP.

use authsession::store::challenges::ChallengeVerify;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authsession::domain::{
    ClientPublicKey, CodeHasher, DeviceSessionId, Email, LoginCode, RequestId, UserId,
};
use authsession::store::challenges::{ChallengeCreate, ConfirmRequest, DeliveryStatus, Verified};
use authsession::store::Store;
use base64::Engine;

use crate::redis_stats::{counters, print_costs};

/// One login through the store's scripts only: the Redis-side work of a login, no HTTP.
pub async fn direct_login(store: &Store, n: u64) -> bool {
    direct_login_as(store, n, &UserId::parse(&format!("u{n}")).unwrap()).await
}

/// A direct login (see [`direct_login`]) into `user`'s sessions.
pub async fn direct_login_as(store: &Store, n: u64, user: &UserId) -> bool {
    let email = Email::parse(&format!(
        "ceiling{n}x{:x}@example.com",
        rand::random::<u32>()
    ))
    .unwrap();
    let hasher = CodeHasher::development();
    // The id as the service mints it (the address's hash sealed in it).
    let id = store
        .keys
        .layout()
        .challenge_id_with(email.hash(), &hasher.seal_address(email.hash()));
    let code = LoginCode::generate();
    let hashes = hasher.hashes(&id, &code);
    let client = hasher.client_key([127, 0, 0, 1].into());
    let key = ClientPublicKey::parse(&base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
        .unwrap();
    let ok = async {
        store
            .challenge_create(&ChallengeCreate {
                challenge_id: &id,
                email: &email,
                code_hash: &hashes.current,
                locale: None,
                admit: Some(&client),
            })
            .await?;
        store
            .challenge_mark_delivery(&id, &email, DeliveryStatus::Sent)
            .await?;
        let Verified::Ok { verified_at_ms, .. } = store
            .challenge_verify(ChallengeVerify {
                challenge_id: &id,
                code_hashes: &hashes,
                client_public_key: &key,
                max_attempts: 5,
                admit: Some(&client),
                attempt_id: &RequestId::generate(),
                address: Some(email.hash()).cloned(),
                via: None,
            })
            .await?
        else {
            return Ok(false);
        };
        let request = ConfirmRequest {
            challenge_id: &id,
            code_hashes: &hashes,
            client_public_key: &key,
            user_id: user,
            device_session_id: &DeviceSessionId::generate(),
            max_attempts: 5,
            max_active_sessions: 50,
            verified_at_ms,
            via: None,
        };
        authsession::flows::confirm_email_code::open_session(store, &request)
            .await
            .map(|_| true)
    };
    ok.await.unwrap_or_else(|e: authsession::store::Error| {
        eprintln!("direct login failed: {e}");
        false
    })
}

/// `concurrency` loops of direct logins for `duration`; returns logins per second.
pub async fn run(
    store: &Store,
    concurrency: usize,
    duration: Duration,
    conn: &mut redis::aio::MultiplexedConnection,
) -> f64 {
    println!(
        "\n## 2. Redis ceiling: the same scripts in the same order, no HTTP ({concurrency} concurrent)\n"
    );
    let done = Arc::new(AtomicU64::new(0));
    let before = counters(conn).await;
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                let mut n = (t as u64) << 32;
                while Instant::now() < deadline {
                    n += 1;
                    if direct_login(&store, n).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let after = counters(conn).await;
    let logins = done.load(Ordering::Relaxed);
    let rate = logins as f64 / elapsed.as_secs_f64();
    println!("  logins: {logins} = {rate:.0} logins/s");
    print_costs(&before, &after, logins);
    rate
}
