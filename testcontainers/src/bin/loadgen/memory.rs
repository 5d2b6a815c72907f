//! Scenarios 4 and 4b: Redis memory per active session and per send.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use authsession::domain::{CodeHasher, Email, LoginCode, UserId};
use authsession::store::challenges::{ChallengeCreate, Created, DeliveryStatus};
use authsession::store::Store;

use crate::ceiling::direct_login_as;
use crate::redis_stats::{delete_matching, used_memory};

pub async fn memory_per_session(
    store: &Store,
    conn: &mut redis::aio::MultiplexedConnection,
    population: usize,
    per_user: u64,
) -> f64 {
    println!(
        "\n### {population} sessions, {per_user} per user, {} events\n",
        store.event_format().as_str()
    );
    let prefix = store.keys.prefix().to_owned();
    delete_matching(conn, &format!("{prefix}*")).await;
    let _: () = redis::cmd("DEL")
        .arg(&store.keys.streams()[0])
        .query_async(conn)
        .await
        .unwrap();
    delete_matching(conn, &format!("{}*", store.keys.gateway_session_prefix())).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = used_memory(conn).await;
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (store, next) = (store.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= population as u64 {
                        return;
                    }
                    // Ids shaped as the stub user service makes them (`user-` and 16 hex).
                    let user = UserId::parse(&format!("user-{:016x}", n / per_user)).unwrap();
                    direct_login_as(&store, n, &user).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let with_challenges = used_memory(conn).await;
    // Challenges, throttle windows and failure counters expire within minutes; what stays per
    // session is its record, two index entries, its snapshot and its stream entry.
    delete_matching(conn, &format!("{prefix}challenge:*")).await;
    delete_matching(conn, &format!("{prefix}resend_throttle:*")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let steady = used_memory(conn).await;
    let per = |v: f64| (v - before) / population as f64;
    let probe = conn.clone();
    let usage = |key: String| {
        let mut conn = probe.clone();
        async move {
            let bytes: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0)
                .query_async(&mut conn)
                .await
                .unwrap();
            bytes.unwrap_or(0) as f64
        }
    };
    let user = authsession::domain::UserId::parse("user-0000000000000000").unwrap();
    let sample: Vec<String> = redis::cmd("ZRANGE")
        .arg(store.keys.user_sessions(&user))
        .arg(0)
        .arg(0)
        .query_async(conn)
        .await
        .unwrap();
    if let Some(id) = sample.first() {
        let id = authsession::domain::DeviceSessionId::from_stored(id);
        let stream_len: f64 = redis::cmd("XLEN")
            .arg(&store.keys.streams()[0])
            .query_async(conn)
            .await
            .unwrap();
        println!(
            "  where it goes (MEMORY USAGE of one session's keys; the stream averaged per entry):"
        );
        println!("    session hash {:.0} B, snapshot {:.0} B, user index zsets {:.0} + {:.0} B, stream entry {:.0} B",
            usage(store.keys.session(&id)).await,
            usage(store.keys.gateway_session(&id)).await,
            usage(store.keys.user_sessions(&user)).await,
            usage(store.keys.user_active_sessions(&user)).await,
            usage(store.keys.streams()[0].clone()).await / stream_len.max(1.0));
    }
    println!("  | state | bytes per session |");
    println!("  |---|---|");
    println!(
        "  | right after login (challenge + throttle window still live) | {:.0} |",
        per(with_challenges)
    );
    println!(
        "  | steady state (session, 2 index entries, snapshot, stream entry) | {:.0} |",
        per(steady)
    );
    per(steady)
}

/// What a send leaves in Redis for its challenge TTL: a delivered one (challenge record and
/// resend window) and a throttled one (the reduced record), `count` of each.
pub async fn memory_per_send(
    store: &Store,
    conn: &mut redis::aio::MultiplexedConnection,
    count: u64,
) {
    println!("\n## 4b. Redis memory per send ({count} delivered, {count} throttled)\n");
    let prefix = store.keys.prefix().to_owned();
    delete_matching(conn, &format!("{prefix}*")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hasher = CodeHasher::development();
    let client = hasher.client_key([127, 0, 0, 1].into());
    let send = |n: u64| {
        let (store, client, hasher) = (store.clone(), client.clone(), hasher.clone());
        async move {
            let email = Email::parse(&format!("mem{n}@example.com")).unwrap();
            let id = store
                .keys
                .layout()
                .challenge_id_with(email.hash(), &hasher.seal_address(email.hash()));
            let hash = hasher.hash(&id, &LoginCode::generate());
            let created = store
                .challenge_create(&ChallengeCreate {
                    challenge_id: &id,
                    email: &email,
                    code_hash: &hash,
                    locale: None,
                    admit: Some(&client),
                })
                .await
                .unwrap();
            if created == Created::Pending {
                store
                    .challenge_mark_delivery(&id, &email, DeliveryStatus::Sent)
                    .await
                    .unwrap();
            }
            id
        }
    };
    let before = used_memory(conn).await;
    for n in 0..count {
        send(n).await;
    }
    let delivered = used_memory(conn).await;
    let mut last = None;
    for n in 0..count {
        last = Some(send(n).await);
    }
    let throttled = used_memory(conn).await;
    let one: Option<u64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(store.keys.challenge(&last.unwrap()))
        .query_async(conn)
        .await
        .unwrap();
    println!("  | send | bytes of Redis each (for the challenge TTL + retention) |");
    println!("  |---|---|");
    println!(
        "  | delivered (challenge record + resend window) | {:.0} |",
        (delivered - before) / count as f64
    );
    println!(
        "  | throttled (status and expiry only) | {:.0} (MEMORY USAGE of one record: {} B) |",
        (throttled - delivered) / count as f64,
        one.unwrap_or(0)
    );
}
