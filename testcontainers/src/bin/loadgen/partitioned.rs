//! Scenario 9: the single-tag layout against the partitioned one (`AUTHSESSION_REDIS_PARTITIONS`)
//! on one real 3-primary cluster: full-login throughput side by side, Redis memory per login,
//! how evenly the partitioned layout spreads keys and memory over the primaries, and revocation
//! propagation to the reference gateway consumer in both layouts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authsession::app::App;
use authsession::config::{self, Config};
use authsession::store::{Redis, Store};
use authsession_testbench::{unique_email, FakeMailService, RedisCluster};
use tokio_util::sync::CancellationToken;

use crate::propagation;
use crate::recorder::{Recorder, Target};
use crate::redis_stats;

/// One service on the cluster, in its own runtime (as in its own process).
struct Service {
    name: String,
    runtime: Option<tokio::runtime::Runtime>,
    stop: CancellationToken,
    target: Arc<Target>,
    internal: String,
    store: Store,
    /// Every key of the service's namespaces starts with this.
    label: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn start(
    cluster: &RedisCluster,
    mail: &Arc<FakeMailService>,
    partitions: u32,
    threads: usize,
) -> Service {
    let (prefix, gateway, stream) = authsession_testbench::cluster_names(partitions > 1);
    // Every key of the namespace starts with what the key prefix has before `authsession:`.
    let label = prefix.trim_end_matches("authsession:").to_owned();
    let mut env = authsession_testbench::app::test_env(&cluster.nodes[0]);
    for (k, v) in [
        (config::REDIS_MODE, "cluster".to_owned()),
        (config::REDIS_ADDR, cluster.seeds()),
        (config::REDIS_PARTITIONS, partitions.to_string()),
        (config::REDIS_KEY_PREFIX, prefix),
        (config::GATEWAY_SESSION_KEY_PREFIX, gateway),
        (config::GATEWAY_SESSION_EVENTS_STREAM, stream),
        // Addresses log in again and again in the distribution run.
        (config::RESEND_COOLDOWN, "1ms".to_owned()),
        (config::MAIL_SERVICE_MODE, "rest".to_owned()),
        (config::MAIL_SERVICE_BASE_URL, mail.base_url()),
        (config::MAIL_SERVICE_REQUEST_TIMEOUT, "2s".to_owned()),
        (config::LOG_LEVEL, "error".to_owned()),
    ] {
        env.insert(k.to_owned(), v);
    }
    let config = Config::from_source(&env).expect("a valid configuration");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    let stop = CancellationToken::new();
    let app = {
        let config = config.clone();
        runtime
            .spawn(async move { App::build(config).await.expect("service starts") })
            .await
            .unwrap()
    };
    let (public, internal) = (
        format!("http://{}", app.public_addr()),
        format!("http://{}", app.internal_addr()),
    );
    runtime.spawn(app.run_until_stopped(stop.clone()));
    let store = Store::new(
        Redis::new(&config.redis).unwrap(),
        &config.redis,
        &config.gateway,
        &config.policy,
    );
    Service {
        name: if partitions > 1 {
            format!("partitioned, N = {partitions}")
        } else {
            "single tag".to_owned()
        },
        runtime: Some(runtime),
        stop,
        target: Arc::new(Target {
            http: reqwest::Client::new(),
            public,
            mail: mail.clone(),
        }),
        internal,
        store,
        label,
    }
}

/// Round trips every primary has served so far (`redis_stats::round_trips`, summed).
async fn round_trips(cluster: &RedisCluster) -> u64 {
    let mut trips = 0;
    for node in &cluster.nodes {
        trips += redis_stats::round_trips(&mut node.connection().await).await;
    }
    trips
}

/// `users` virtual users logging in for `duration` (new addresses each time).
async fn closed_loop(
    cluster: &RedisCluster,
    service: &Service,
    users: usize,
    duration: Duration,
) -> f64 {
    let trips = round_trips(cluster).await;
    let recorder = Arc::new(Recorder::default());
    let started = Instant::now();
    let tasks: Vec<_> = (0..users)
        .map(|_| {
            let (target, recorder) = (service.target.clone(), recorder.clone());
            tokio::spawn(async move {
                while started.elapsed() < duration {
                    target.login(&recorder).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let rate = recorder.report(started.elapsed());
    let logins = recorder.logins.load(Ordering::Relaxed).max(1);
    println!(
        "  Redis round trips per login (every primary): {:.2}",
        (round_trips(cluster).await - trips) as f64 / logins as f64
    );
    rate
}

/// `logins` full logins by `users` virtual users; the i-th uses `email(i)`. Returns failures.
async fn logins(
    service: &Service,
    users: usize,
    logins: usize,
    email: impl Fn(usize) -> String + Send + Sync + 'static,
) -> usize {
    let (next, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let email = Arc::new(email);
    let tasks: Vec<_> = (0..users)
        .map(|_| {
            let (target, next, failed, email) = (
                service.target.clone(),
                next.clone(),
                failed.clone(),
                email.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= logins {
                        break;
                    }
                    if target.client().login(&email(i)).await.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    failed.load(Ordering::Relaxed)
}

/// `used_memory` of each primary.
async fn used_memory(cluster: &RedisCluster) -> Vec<f64> {
    let mut all = Vec::new();
    for node in &cluster.nodes {
        all.push(redis_stats::used_memory(&mut node.connection().await).await);
    }
    all
}

/// How many keys of the service's namespaces each primary holds, and their bytes by
/// `MEMORY USAGE` (the data itself, without the step changes of Redis's own tables).
async fn keys_per_primary(cluster: &RedisCluster, label: &str) -> Vec<(usize, u64)> {
    let mut counts = Vec::new();
    for node in &cluster.nodes {
        let mut conn = node.connection().await;
        let pattern = format!("{}*", label.replace('{', "\\{").replace('}', "\\}"));
        let keys = authsession_testbench::invariants::scan(&mut conn, &pattern).await;
        let mut bytes = 0u64;
        for chunk in keys.chunks(1000) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("MEMORY")
                    .arg("USAGE")
                    .arg(key)
                    .arg("SAMPLES")
                    .arg(0);
            }
            let sizes: Vec<Option<u64>> = pipe.query_async(&mut conn).await.unwrap();
            bytes += sizes.into_iter().flatten().sum::<u64>();
        }
        counts.push((keys.len(), bytes));
    }
    counts
}

/// Largest distance from the mean, in % of the mean.
fn spread(values: &[f64]) -> f64 {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    values
        .iter()
        .map(|v| (v - mean).abs() / mean.max(1.0) * 100.0)
        .fold(0.0, f64::max)
}

pub async fn compare(
    mail: &Arc<FakeMailService>,
    users: usize,
    duration: Duration,
    total_logins: usize,
    distinct_users: usize,
    revokes: usize,
    threads: usize,
) {
    println!(
        "\n## 9. Partitioned layout on a 3-primary cluster (no replicas; all primaries share this machine's cores)\n"
    );
    let cluster = RedisCluster::start(3, 0).await;
    let single = start(&cluster, mail, 1, threads).await;
    let partitioned = start(&cluster, mail, 64, threads).await;
    for service in [&single, &partitioned] {
        logins(service, 8, 100, |_| unique_email()).await; // warm-up: connections, scripts
    }

    println!("### Full logins, closed loop, {users} virtual users, alternating layouts\n");
    let mut rates = [Vec::new(), Vec::new()];
    for round in 0..2 {
        for (i, service) in [&single, &partitioned].into_iter().enumerate() {
            println!("\n  {} (round {}):", service.name, round + 1);
            rates[i].push(closed_loop(&cluster, service, users, duration).await);
        }
    }
    let mean = |r: &Vec<f64>| r.iter().sum::<f64>() / r.len() as f64;
    println!(
        "\n  partitioned / single tag = {:.0} % of the logins per second (same box: the three primaries share two cores, so this shows the cost of the extra steps, not the gain of more machines)",
        100.0 * mean(&rates[1]) / mean(&rates[0])
    );

    println!("\n### Redis memory per login (all keys a login leaves, every primary summed)\n");
    let per_layout = (total_logins / 5).clamp(1000, 20_000);
    for service in [&single, &partitioned] {
        let bytes = |all: Vec<(usize, u64)>| all.iter().map(|(_, b)| *b).sum::<u64>();
        let before = bytes(keys_per_primary(&cluster, &service.label).await);
        let used_before = used_memory(&cluster).await;
        let failed = logins(service, users, per_layout, |_| unique_email()).await;
        let after = bytes(keys_per_primary(&cluster, &service.label).await);
        let used_after = used_memory(&cluster).await;
        let grown: f64 = used_after
            .iter()
            .zip(&used_before)
            .map(|(a, b)| a - b)
            .sum();
        println!(
            "  {}: {per_layout} logins ({failed} failed): {:.0} B per login by MEMORY USAGE of the keys, {:.0} B by used_memory",
            service.name,
            (after - before) as f64 / per_layout as f64,
            grown / per_layout as f64
        );
    }

    println!(
        "\n### Distribution: {total_logins} logins over {distinct_users} users, partitioned layout\n"
    );
    let before = used_memory(&cluster).await;
    let started = Instant::now();
    let failed = logins(&partitioned, users, total_logins, move |i| {
        format!("spread{}@example.com", i % distinct_users)
    })
    .await;
    println!(
        "  {total_logins} logins ({failed} failed) in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let after = used_memory(&cluster).await;
    let keys = keys_per_primary(&cluster, &partitioned.label).await;
    let single_keys = keys_per_primary(&cluster, &single.label).await;
    println!("  | primary | partitioned keys | their bytes (MEMORY USAGE, MiB) | used_memory grown (MiB) | single-tag keys |");
    println!("  |---|---|---|---|---|");
    for (i, node) in cluster.nodes.iter().enumerate() {
        println!(
            "  | :{} | {} | {:.1} | {:.1} | {} |",
            node.port(),
            keys[i].0,
            keys[i].1 as f64 / 1048576.0,
            (after[i] - before[i]) / 1048576.0,
            single_keys[i].0
        );
    }
    let grown: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let counts: Vec<f64> = keys.iter().map(|k| k.0 as f64).collect();
    let bytes: Vec<f64> = keys.iter().map(|k| k.1 as f64).collect();
    println!(
        "  largest distance from the mean: keys {:.1} %, key bytes {:.1} %, used_memory growth {:.1} % (target: within 15 %)",
        spread(&counts),
        spread(&bytes),
        spread(&grown)
    );

    for service in [&single, &partitioned] {
        println!(
            "\n### Revocation propagation, {} ({revokes} revokes, {} stream(s))\n",
            service.name,
            service.store.keys.streams().len()
        );
        propagation::propagation(&service.store, &service.internal, revokes).await;
    }
}
