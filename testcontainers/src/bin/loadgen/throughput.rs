//! Scenarios 1 and 3: full logins through the service, closed loop at full speed, then open
//! loop at a fixed rate for latency.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::recorder::{Recorder, Target};
use crate::redis_stats::{counters, print_costs};

/// `users` virtual users logging in back to back for `duration`; returns logins per second.
pub async fn closed_loop(
    target: &Arc<Target>,
    users: usize,
    duration: Duration,
    conn: &mut redis::aio::MultiplexedConnection,
) -> f64 {
    let recorder = Arc::new(Recorder::default());
    let before = counters(conn).await;
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..users)
        .map(|_| {
            let (target, recorder) = (target.clone(), recorder.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    target.login(&recorder).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let after = counters(conn).await;
    let rate = recorder.report(elapsed);
    print_costs(&before, &after, recorder.logins.load(Ordering::Relaxed));
    rate
}

/// Logins started at `rate` per second for `duration`, whatever the answers' latency.
pub async fn open_loop(target: &Arc<Target>, rate: f64, duration: Duration) {
    println!("\n## 3. Latency at 50 % of the measured maximum ({rate:.0} logins/s, open loop)\n");
    let recorder = Arc::new(Recorder::default());
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut tasks = Vec::new();
    while started.elapsed() < duration {
        ticker.tick().await;
        let (target, recorder) = (target.clone(), recorder.clone());
        tasks.push(tokio::spawn(async move { target.login(&recorder).await }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    recorder.report(started.elapsed());
}
