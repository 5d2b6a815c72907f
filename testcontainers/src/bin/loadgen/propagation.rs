//! Scenario 8: revocation propagation. The reference gateway consumer follows the event stream
//! (every partition's, in the partitioned layout: one connection and blocking `XREAD` loop per
//! stream) while sessions are revoked through the internal API, a few at a time; for each
//! revoke: the time from its `200` to the consumer holding the revoked snapshot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authsession::domain::UserId;
use authsession::gateway::{GatewayConsumer, GatewayNames};
use authsession::store::{Dedicated, Store};

/// Revokes in flight at once.
const CONCURRENCY: usize = 8;

/// Sessions seeded per user: enough users that a partitioned layout spreads them.
const PER_USER: usize = 50;

pub async fn measure(store: &Store, internal: &str, revokes: usize) {
    println!("\n## 8. Revocation propagation to the reference gateway consumer ({revokes} revokes, {CONCURRENCY} at a time)\n");
    propagation(store, internal, revokes).await;
}

/// Seeds `revokes` sessions, revokes them and prints the propagation percentiles.
pub async fn propagation(store: &Store, internal: &str, revokes: usize) {
    let mut sessions = Vec::new();
    let users = revokes.div_ceil(PER_USER);
    for u in 0..users {
        let user = UserId::parse(&format!("propagation{u}")).unwrap();
        let count = (revokes - sessions.len()).min(PER_USER);
        sessions.extend(authsession_testbench::seed::active_sessions(store, &user, count).await);
    }
    let consumer = Arc::new(GatewayConsumer::new(GatewayNames {
        snapshot_prefix: store.keys.gateway_session_prefix().to_owned(),
        streams: store.keys.streams(),
    }));
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut followers = Vec::new();
    for stream in store.keys.streams() {
        let (consumer, seen, stop) = (consumer.clone(), seen.clone(), stop.clone());
        let conn = store.redis.dedicated().await.expect("a connection");
        followers.push(tokio::spawn(async move {
            follow(&consumer, conn, &stream, &seen, &stop).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let http = reqwest::Client::new();
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let queue = Arc::new(Mutex::new(sessions));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (http, acked, queue) = (http.clone(), acked.clone(), queue.clone());
            let internal = internal.to_owned();
            tokio::spawn(async move {
                loop {
                    // Popped in its own statement: the guard must not live across an await.
                    let next = queue.lock().unwrap().pop();
                    let Some(id) = next else { break };
                    let url = format!("{internal}/api/v1/internal/sessions/{id}/revoke");
                    let ok = http.post(url).send().await.is_ok_and(|r| r.status() == 200);
                    if ok {
                        acked.lock().unwrap().insert(id.to_string(), Instant::now());
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < acked.lock().unwrap().len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for follower in followers {
        let _ = follower.await;
    }

    let (acked, seen) = (acked.lock().unwrap(), seen.lock().unwrap());
    let mut delays: Vec<Duration> = Vec::new();
    let mut before_ack = 0;
    let mut missing = 0;
    for (id, at) in acked.iter() {
        match seen.get(id) {
            Some(saw) if saw <= at => {
                before_ack += 1;
                delays.push(Duration::ZERO);
            }
            Some(saw) => delays.push(*saw - *at),
            None => missing += 1,
        }
    }
    delays.sort_unstable();
    let pct = |p: f64| percentile_ms(&delays, p);
    println!(
        "  revokes acknowledged: {}; seen by the consumer: {}; before their 200 arrived: {before_ack}; never seen: {missing}",
        acked.len(),
        acked.len() - missing
    );
    println!(
        "  propagation after the 200: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}

/// The `p` quantile of `sorted` delays, in milliseconds (0 for none).
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p) as usize)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

async fn follow(
    consumer: &GatewayConsumer,
    mut conn: Dedicated,
    stream: &str,
    seen: &Mutex<HashMap<String, Instant>>,
    stop: &AtomicBool,
) {
    let mut last_id = consumer
        .newest_id(&mut conn, stream)
        .await
        .expect("stream id");
    while !stop.load(Ordering::Relaxed) {
        let applied = consumer
            .step(&mut conn, stream, &last_id, 100)
            .await
            .expect("XREAD");
        let now = Instant::now();
        let mut seen = seen.lock().unwrap();
        for snapshot in applied.updated.iter().filter(|s| !s.is_active()) {
            seen.entry(snapshot.device_session_id.clone())
                .or_insert(now);
        }
        last_id = applied.last_id;
    }
}
