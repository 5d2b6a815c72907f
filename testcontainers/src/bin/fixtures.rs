//! What the bench's Redis fixtures cost: the time from asking to a server that answers, per
//! fixture, on this machine's engine. Prints a Markdown table (README, "Test bench").
//!
//!   bash testcontainers/with-engine.sh cargo run --release -p authsession-testbench --bin fixtures

use std::time::{Duration, Instant};

use authsession_testbench::{RedisCluster, RedisSentinel, RedisServer};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Standalone servers started (and removed) one after another.
    #[arg(long, default_value_t = 20)]
    servers: usize,
    /// Sentinel deployments and clusters started one after another.
    #[arg(long, default_value_t = 3)]
    deployments: usize,
}

/// Median and maximum of `samples`, in milliseconds.
fn summary(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1]),
    )
}

async fn timed<T, F: std::future::Future<Output = T>>(f: F) -> (T, Duration) {
    let started = Instant::now();
    let value = f.await;
    (value, started.elapsed())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut rows: Vec<(String, Vec<Duration>)> = Vec::new();

    let (mut start, mut remove, mut restart, mut freeze) = (vec![], vec![], vec![], vec![]);
    for _ in 0..args.servers {
        let (server, took) = timed(RedisServer::start()).await;
        start.push(took);
        restart.push(timed(server.restart()).await.1);
        // The pause itself is held for 0 s: what remains is the engine's pause and unpause.
        freeze.push(timed(server.freeze(Duration::ZERO)).await.1);
        remove.push(timed(async { drop(server) }).await.1);
    }
    rows.push(("standalone: start until `PING` answers".into(), start));
    rows.push((
        "standalone: kill and start again on its port".into(),
        restart,
    ));
    rows.push(("standalone: freeze and thaw (engine pause)".into(), freeze));
    rows.push(("standalone: remove (on drop)".into(), remove));

    let mut sentinel = vec![];
    let mut cluster = vec![];
    for _ in 0..args.deployments {
        let (group, took) = timed(RedisSentinel::start(1)).await;
        sentinel.push(took);
        drop(group);
        let (nodes, took) = timed(RedisCluster::start(3, 1)).await;
        cluster.push(took);
        drop(nodes);
    }
    rows.push((
        "Sentinel: primary, 1 replica, 3 Sentinels watching".into(),
        sentinel,
    ));
    rows.push(("cluster: 3 primaries, 3 replicas, state ok".into(), cluster));

    println!("| fixture | runs | median ms | max ms |\n|---|---|---|---|");
    for (name, samples) in rows {
        let runs = samples.len();
        let (median, max) = summary(samples);
        println!("| {name} | {runs} | {median:.0} | {max:.0} |");
    }
}
