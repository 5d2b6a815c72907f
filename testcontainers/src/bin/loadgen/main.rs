//! The load generator: full logins against the service and, in the same run, the same Lua
//! scripts driven straight at Redis (the ceiling), then cost-growth and memory measurements, one
//! module per scenario. Everything runs on this machine (loopback only) and stops by itself.
//!
//!     cargo run --release -p authsession-testbench --bin loadgen -- --help

mod ceiling;
mod edge;
mod memory;
mod partitioned;
mod profile;
mod propagation;
mod recorder;
mod redis_stats;
mod replica_acks;
mod revoke;
mod script_costs;
mod stream;
mod targets;
mod throughput;

use std::sync::Arc;
use std::time::Duration;

use authsession::app::App;
use authsession::config::{self, Config, EventFormat, MAX_ACTIVE_SESSIONS_CEILING};
use authsession::domain::CodeHasher;
use authsession::store::{Redis, Store};
use authsession_testbench::{FakeMailService, RedisServer};
use clap::Parser;
use tokio_util::sync::CancellationToken;

use recorder::{Recorder, Target};
use redis_stats::slow_commands;

#[derive(Parser, Debug)]
#[command(about = "authsession load generator: service vs Redis ceiling, cost growth, memory")]
struct Args {
    /// Concurrent virtual users in the closed-loop runs.
    #[arg(long, default_value_t = 32)]
    users: usize,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Sessions created for the bytes-per-session measurement.
    #[arg(long, default_value_t = 20_000)]
    population: usize,
    /// Revoke-all sizes (active sessions of one user; at most the per-user ceiling, 1000).
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000", value_parser = session_count)]
    revoke_sizes: Vec<usize>,
    /// Stream entries for the trimming measurement (0 skips it).
    #[arg(long, default_value_t = 0)]
    stream_entries: usize,
    /// Revokes timed from their `200` to the reference gateway consumer seeing them (scenario 8).
    #[arg(long, default_value_t = 2000)]
    propagation_revokes: usize,
    /// Also compare `WAIT 0` and `WAIT 1` with a replica attached (scenario 7).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    replica_acks: bool,
    /// Logins of the partitioned layout's distribution run on a 3-primary cluster (scenario 9;
    /// 0 skips the scenario).
    #[arg(long, default_value_t = 100_000)]
    partition_logins: usize,
    /// Distinct users (addresses) those logins are spread over.
    #[arg(long, default_value_t = 10_000)]
    partition_users: usize,
    /// Calls per script in the per-script cost table (scenario 10; 0 skips it).
    #[arg(long, default_value_t = 5000)]
    script_costs: usize,
    /// The yardstick script of scenarios 0 and 10 (`testcontainers/bench`, kept as it was given).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/reference-confirm.lua"))]
    reference_script: std::path::PathBuf,
    /// Run scenario 0 (the per-request targets against the reference script; the service binary
    /// beside the loadgen, `cargo build --release --bins`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    targets: bool,
    /// Run scenario 0 only (with `--perf-dir`, the profiling run).
    #[arg(long)]
    only_targets: bool,
    /// Profile the service during scenario 0's `wrk` runs: `perf record` (DWARF call graphs)
    /// and `perf stat` of its system calls, one file pair per route in this directory
    /// (docs/performance.md says how the flamegraphs are drawn from them).
    #[arg(long)]
    perf_dir: Option<std::path::PathBuf>,
    /// Run scenario 11 (requests authenticated at the edge: nginx, the gateway binary beside
    /// this one, an upstream).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    edge: bool,
    /// Run scenario 11 only.
    #[arg(long)]
    only_edge: bool,
    /// Revokes timed at the edge, from their `200` to the first refused request (scenario 11).
    #[arg(long, default_value_t = 1000)]
    edge_revokes: usize,
    /// The service binary scenario 0 runs (default: `authsession` beside the loadgen), so two
    /// builds are measured with the same command.
    #[arg(long)]
    service_binary: Option<std::path::PathBuf>,
    /// Worker threads of the service's runtime.
    #[arg(long, default_value_t = 2)]
    service_threads: usize,
}

/// A number of active sessions one user can hold.
fn session_count(raw: &str) -> Result<usize, String> {
    let n: usize = raw.parse().map_err(|e| format!("{e}"))?;
    (1..=MAX_ACTIVE_SESSIONS_CEILING as usize)
        .contains(&n)
        .then_some(n)
        .ok_or_else(|| format!("1 to {MAX_ACTIVE_SESSIONS_CEILING}: no user holds more"))
}

fn main() {
    let args = Args::parse();
    // The service gets a runtime of its own, as it would in its own process.
    let service_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.service_threads)
        .enable_all()
        .build()
        .unwrap();
    let driver = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let redis = driver.block_on(RedisServer::start_with(&[
        "--maxmemory-policy",
        "noeviction",
    ]));
    let mail = Arc::new(driver.block_on(FakeMailService::start()));
    mail.stop_recording();
    let mut env = authsession_testbench::app::test_env(&redis);
    // The run owns its Redis: the contract's default names, so bytes per key are production's.
    for name in [
        config::REDIS_KEY_PREFIX,
        config::GATEWAY_SESSION_KEY_PREFIX,
        config::GATEWAY_SESSION_EVENTS_STREAM,
    ] {
        env.remove(name);
    }
    env.insert(config::MAIL_SERVICE_MODE.into(), "rest".into());
    env.insert(config::MAIL_SERVICE_BASE_URL.into(), mail.base_url());
    env.insert(config::MAIL_SERVICE_REQUEST_TIMEOUT.into(), "2s".into());
    env.insert(config::LOG_LEVEL.into(), "error".into());
    // Scenario 0's service: the release binary in a process of its own, configured as a user
    // runs it (JSON logs at `info` on its stdout, read by this process as a log shipper would;
    // per-IP limits at their defaults, every request through a trusted proxy naming a client
    // address of its own); a namespace of its own on the same Redis.
    let mut limited = authsession_testbench::app::test_env(&redis);
    limited.remove(config::SHUTDOWN_TIMEOUT);
    limited.remove(config::SEND_RATE_LIMIT_PER_IP);
    limited.remove(config::CONFIRM_RATE_LIMIT_PER_IP);
    limited.insert(config::TRUSTED_PROXIES.into(), "127.0.0.1/32".into());
    // Any `AUTHSESSION_*` variable of the generator's own environment configures both services
    // (a pool size, an event format, ...), so a lever is measured without a rebuild.
    for (name, value) in std::env::vars()
        .filter(|(n, _)| n.starts_with("AUTHSESSION_") && !n.starts_with("AUTHSESSION_TEST_"))
    {
        println!("service override: {name}={value}");
        env.insert(name.clone(), value.clone());
        limited.insert(name, value);
    }
    let config = Config::from_source(&env).unwrap();
    let limited_config = Config::from_source(&limited).unwrap();
    let limited_env: Vec<(String, String)> = limited.into_iter().collect();
    let stop = CancellationToken::new();
    let (public, internal) = service_rt.block_on(async {
        let app = App::build(config.clone()).await.expect("service starts");
        let public = format!("http://{}", app.public_addr());
        let internal = format!("http://{}", app.internal_addr());
        tokio::spawn(app.run_until_stopped(stop.clone()));
        (public, internal)
    });
    println!("# authsession load run\n");
    println!(
        "machine: {} cores; redis-server {}; service runtime {} threads; {} virtual users; {} s per run\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        driver.block_on(redis_version(&redis)),
        args.service_threads,
        args.users,
        args.duration
    );
    if let Some(dir) = &args.perf_dir {
        std::fs::create_dir_all(dir).expect("the --perf-dir directory");
        profile::PERF_DIR.set(dir.clone()).expect("set once");
    }
    if args.only_edge {
        driver.block_on(edge_scenario(&args, &env, &config, &internal));
        stop.cancel();
        drop(service_rt);
        return;
    }
    if args.targets || args.only_targets {
        driver.block_on(async {
            let binary = args
                .service_binary
                .clone()
                .or_else(|| binary_beside("authsession"));
            let Some(process) = binary.map(|b| targets::spawn_service(&b, &limited_env)) else {
                println!("\n## 0. skipped: no authsession binary beside the loadgen (run `cargo build --release --bins` first)");
                return;
            };
            let mut conn = redis.connection().await;
            let service = targets::Service {
                http: reqwest::Client::new(),
                public: format!("http://{}", process.listener_addr("public").await),
                process,
                store: Store::new(
                    Redis::new(&limited_config.redis).unwrap(),
                    &limited_config.redis,
                    &limited_config.gateway,
                    &limited_config.policy,
                ),
                hasher: CodeHasher::new(limited_config.code_hash_key.clone().unwrap(), None),
            };
            let duration = Duration::from_secs(args.duration);
            targets::measure(
                &redis,
                &mut conn,
                &service,
                &args.reference_script,
                duration,
            )
            .await;
        });
    }
    if !args.only_targets {
        if args.edge {
            driver.block_on(edge_scenario(&args, &env, &config, &internal));
        }
        driver.block_on(run(args, redis, mail, public, internal, config));
    }
    stop.cancel();
    drop(service_rt);
}

/// A binary of this workspace's release build, beside the loadgen (`cargo build --release --bins`).
fn binary_beside(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::current_exe().ok()?.parent()?.join(name);
    path.exists().then_some(path)
}

/// Scenario 11 against the first service's Redis and names.
async fn edge_scenario(
    args: &Args,
    env: &std::collections::HashMap<String, String>,
    config: &Config,
    internal: &str,
) {
    let store = Store::new(
        Redis::new(&config.redis).unwrap(),
        &config.redis,
        &config.gateway,
        &config.policy,
    );
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let duration = Duration::from_secs(args.duration);
    edge::measure(&store, &env, internal, duration, args.edge_revokes).await;
}

/// The Redis version the bench's image runs (`INFO server`).
async fn redis_version(redis: &RedisServer) -> String {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut redis.connection().await)
        .await
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_owned()
}

async fn run(
    args: Args,
    redis: RedisServer,
    mail: Arc<FakeMailService>,
    public: String,
    internal: String,
    config: Config,
) {
    let mut conn = redis.connection().await;
    let target = Arc::new(Target {
        http: reqwest::Client::new(),
        public,
        mail,
    });
    let duration = Duration::from_secs(args.duration);
    let store = Store::new(
        Redis::new(&config.redis).unwrap(),
        &config.redis,
        &config.gateway,
        &config.policy,
    );

    // Warm-up: connections, script cache.
    for _ in 0..50 {
        target.login(&Recorder::default()).await;
    }
    redis_stats::config_set(&mut conn, "slowlog-log-slower-than", 5000).await;
    redis_stats::slowlog_reset(&mut conn).await;

    println!(
        "## 1. Full logins through the service (closed loop, stub user service, REST fake mail)\n"
    );
    let service_rate = throughput::closed_loop(&target, args.users, duration, &mut conn).await;
    let ceiling_rate = ceiling::run(&store, args.users * 2, duration, &mut conn).await;
    println!(
        "\n  service / ceiling = {:.0} %",
        100.0 * service_rate / ceiling_rate
    );
    throughput::open_loop(&target, (service_rate * 0.5).max(1.0), duration).await;

    let slow = slow_commands(&mut conn).await;
    println!(
        "\n  commands slower than 5 ms during runs 1-3: {} {:?}",
        slow.len(),
        &slow[..slow.len().min(10)]
    );

    println!("\n## 4. Redis memory per active session\n");
    let mut figures = Vec::new();
    for format in [EventFormat::Snapshot, EventFormat::Compact] {
        let mut gateway = config.gateway.clone();
        gateway.event_format = format;
        let store = Store::new(
            Redis::new(&config.redis).unwrap(),
            &config.redis,
            &gateway,
            &config.policy,
        );
        for per_user in [1, 5] {
            let bytes =
                memory::memory_per_session(&store, &mut conn, args.population, per_user).await;
            figures.push((format.as_str(), per_user, bytes));
        }
    }
    println!("\n  | event format | sessions per user | bytes per active session (steady) |");
    println!("  |---|---|---|");
    for (format, per_user, bytes) in figures {
        println!("  | {format} | {per_user} | {bytes:.0} |");
    }
    memory::memory_per_send(&store, &mut conn, 10_000).await;
    revoke::revoke_costs(&store, &mut conn, &args.revoke_sizes).await;
    if args.stream_entries > 0 {
        stream::stream_trimming(&mut conn, &config, args.stream_entries).await;
    }
    propagation::measure(&store, &internal, args.propagation_revokes).await;
    if args.script_costs > 0 {
        script_costs::script_costs(&store, &mut conn, args.script_costs, &args.reference_script)
            .await;
    }
    if args.replica_acks {
        replica_acks::compare(&redis, &target.mail, &config, args.users, duration).await;
    }
    if args.partition_logins > 0 {
        partitioned::compare(
            &target.mail,
            args.users,
            duration,
            args.partition_logins,
            args.partition_users,
            args.propagation_revokes,
            args.service_threads,
        )
        .await;
    }
}
