//! The load generator: full logins against the service and, in the same run, the same Lua
//! scripts driven straight at Redis (the ceiling), then cost-growth and memory measurements.
//! Everything runs on this machine (loopback only) and stops by itself.
//!
//!     cargo run --release -p testcontainers --bin loadgen -- --help

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authsession::app::App;
use authsession::config::{self, Config};
use authsession::domain::{
    ChallengeId, ClientPublicKey, CodeHasher, DeviceSessionId, Email, LoginCode, UserId,
};
use authsession::domain::{Revocation, SessionStatus};
use authsession::store::challenges::{ConfirmRequest, Created, DeliveryStatus, Verified};
use authsession::store::scripts::scripts;
use authsession::store::{Redis, Store};
use base64::Engine;
use clap::Parser;
use serde_json::json;
use testcontainers::{FakeMailService, RedisServer};
use tokio_util::sync::CancellationToken;

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
    /// Revoke-all sizes (sessions of one user).
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000")]
    revoke_sizes: Vec<usize>,
    /// Stream entries for the trimming measurement (0 skips it).
    #[arg(long, default_value_t = 0)]
    stream_entries: usize,
    /// Worker threads of the service's runtime.
    #[arg(long, default_value_t = 2)]
    service_threads: usize,
}

#[derive(Default)]
struct Recorder {
    latencies: Mutex<BTreeMap<&'static str, Vec<u32>>>,
    errors: Mutex<BTreeMap<String, u64>>,
    logins: AtomicU64,
}

impl Recorder {
    fn record(&self, route: &'static str, started: Instant) {
        let micros = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
        self.latencies
            .lock()
            .unwrap()
            .entry(route)
            .or_default()
            .push(micros);
    }

    fn error(&self, what: String) {
        *self.errors.lock().unwrap().entry(what).or_default() += 1;
    }

    fn report(&self, elapsed: Duration) -> f64 {
        let logins = self.logins.load(Ordering::Relaxed);
        let rate = logins as f64 / elapsed.as_secs_f64();
        println!(
            "  logins: {logins} in {:.1} s = {rate:.0} logins/s",
            elapsed.as_secs_f64()
        );
        println!("  | route | requests | p50 ms | p95 ms | p99 ms | max ms |");
        println!("  |---|---|---|---|---|---|");
        for (route, values) in self.latencies.lock().unwrap().iter_mut() {
            values.sort_unstable();
            let pct = |p: f64| values[((values.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
            println!(
                "  | {route} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                values.len(),
                pct(0.5),
                pct(0.95),
                pct(0.99),
                pct(1.0)
            );
        }
        let errors = self.errors.lock().unwrap();
        if errors.is_empty() {
            println!("  errors: none");
        } else {
            println!("  errors: {errors:?}");
        }
        rate
    }
}

struct Target {
    http: reqwest::Client,
    public: String,
    mail: Arc<FakeMailService>,
}

impl Target {
    /// One full login over HTTP; returns false on any error (recorded).
    async fn login(&self, recorder: &Recorder) -> bool {
        let email = format!("load{:x}@example.com", rand::random::<u64>());
        let started = Instant::now();
        let send = self
            .http
            .post(format!(
                "{}/api/v1/public/auth/send-email-code",
                self.public
            ))
            .json(&json!({ "email": email }))
            .send()
            .await;
        let challenge_id = match send {
            Ok(r) if r.status() == 200 => {
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                body["challenge_id"].as_str().unwrap_or_default().to_owned()
            }
            Ok(r) => return fail(recorder, format!("send {}", r.status())),
            Err(e) => return fail(recorder, format!("send transport {e}")),
        };
        recorder.record("send-email-code", started);
        let Some(code) = self.mail.take_code(&challenge_id) else {
            return fail(recorder, "no delivery".into());
        };
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        let started = Instant::now();
        let confirm = self
            .http
            .post(format!(
                "{}/api/v1/public/auth/confirm-email-code",
                self.public
            ))
            .json(&json!({ "challenge_id": challenge_id, "code": code, "client_public_key": key }))
            .send()
            .await;
        match confirm {
            Ok(r) if r.status() == 200 => {
                recorder.record("confirm-email-code", started);
                recorder.logins.fetch_add(1, Ordering::Relaxed);
                true
            }
            Ok(r) => fail(recorder, format!("confirm {}", r.status())),
            Err(e) => fail(recorder, format!("confirm transport {e}")),
        }
    }
}

fn fail(recorder: &Recorder, what: String) -> bool {
    recorder.error(what);
    false
}

/// One login through the store's scripts only: the Redis-side work of a login, no HTTP.
async fn direct_login(store: &Store, n: u64) -> bool {
    let email = Email::parse(&format!(
        "ceiling{n}x{:x}@example.com",
        rand::random::<u32>()
    ))
    .unwrap();
    let id = ChallengeId::generate();
    let code = LoginCode::generate();
    let hasher = CodeHasher::development();
    let hashes = hasher.hashes(&id, &code);
    let client = hasher.client_key([127, 0, 0, 1].into());
    let key = ClientPublicKey::parse(&base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
        .unwrap();
    let ok = async {
        store
            .challenge_create(&id, &email, &hashes.current, None, &client)
            .await?;
        store
            .challenge_mark_delivery(&id, &email, DeliveryStatus::Sent)
            .await?;
        let Verified::Ok { .. } = store
            .challenge_verify(&id, &hashes, &key, 5, &client)
            .await?
        else {
            return Ok(false);
        };
        let user = UserId::parse(&format!("u{n}")).unwrap();
        let request = ConfirmRequest {
            challenge_id: &id,
            code_hashes: &hashes,
            client_public_key: &key,
            user_id: &user,
            device_session_id: &DeviceSessionId::generate(),
            max_attempts: 5,
            max_active_sessions: 50,
        };
        store.challenge_confirm(&request).await.map(|_| true)
    };
    ok.await.unwrap_or_else(|e: authsession::store::Error| {
        eprintln!("direct login failed: {e}");
        false
    })
}

async fn info_field(
    redis: &mut redis::aio::MultiplexedConnection,
    section: &str,
    field: &str,
) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(redis)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Redis-side counters around a run: commands executed (scripts' inner ones included), round
/// trips and CPU, all from the server's own `INFO`.
struct RedisCounters {
    commands: f64,
    cpu: f64,
    trips: u64,
}

/// Commands some script runs (`redis.call('HSET'` ...), lowercase: calls of these may come from
/// inside scripts, so they are not round trips.
fn script_internal_commands() -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for script in scripts().all() {
        for call in script.body.split("redis.").skip(1) {
            let rest = call
                .strip_prefix("call(")
                .or_else(|| call.strip_prefix("pcall("));
            if let Some(name) = rest
                .and_then(|r| r.get(1..))
                .and_then(|r| r.split(['\'', '"']).next())
            {
                names.insert(name.to_lowercase());
            }
        }
    }
    names
}

/// Round trips from `INFO commandstats`: calls of every command no script runs (EVALSHA, SCRIPT
/// LOAD, the service's own reads), minus this generator's own `INFO`s.
async fn round_trips(redis: &mut redis::aio::MultiplexedConnection) -> u64 {
    let internal = script_internal_commands();
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .unwrap();
    stats
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_")?.split_once(':'))
        .filter(|(name, _)| {
            let base = name.split('|').next().unwrap_or(name);
            base != "info" && !internal.contains(base)
        })
        .filter_map(|(_, fields)| {
            fields
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

async fn counters(redis: &mut redis::aio::MultiplexedConnection) -> RedisCounters {
    RedisCounters {
        commands: info_field(redis, "stats", "total_commands_processed").await,
        cpu: info_field(redis, "cpu", "used_cpu_user").await
            + info_field(redis, "cpu", "used_cpu_sys").await,
        trips: round_trips(redis).await,
    }
}

/// `INFO` commands `counters` sends after reading `total_commands_processed`, plus the next
/// reading itself.
const COUNTER_INFOS: f64 = 4.0;

fn print_costs(before: &RedisCounters, after: &RedisCounters, logins: u64) {
    let per = |v: f64| v / logins.max(1) as f64;
    println!(
        "  per login: {:.2} Redis round trips, {:.1} Redis commands (script-internal included), {:.0} us Redis CPU",
        per((after.trips - before.trips) as f64),
        // Between the two `stats` readings this generator sends four `INFO`s of its own.
        per(after.commands - before.commands - COUNTER_INFOS),
        per((after.cpu - before.cpu) * 1e6)
    );
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
    let mut env = testcontainers::app::test_env(&redis);
    env.insert(config::MAIL_SERVICE_MODE.into(), "rest".into());
    env.insert(config::MAIL_SERVICE_BASE_URL.into(), mail.base_url());
    env.insert(config::MAIL_SERVICE_REQUEST_TIMEOUT.into(), "2s".into());
    env.insert(config::LOG_LEVEL.into(), "error".into());
    let config = Config::from_source(&env).unwrap();
    let stop = CancellationToken::new();
    let public = service_rt.block_on(async {
        let app = App::build(config.clone()).await.expect("service starts");
        let public = format!("http://{}", app.public_addr());
        tokio::spawn(app.run_until_stopped(stop.clone()));
        public
    });
    println!("# authsession load run\n");
    println!(
        "machine: {} cores; redis-server {}; service runtime {} threads; {} virtual users; {} s per run\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        redis_version(),
        args.service_threads,
        args.users,
        args.duration
    );
    driver.block_on(run(args, redis, mail, public, config));
    stop.cancel();
    drop(service_rt);
}

fn redis_version() -> String {
    let out = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .unwrap_or("?")
        .to_owned()
}

async fn run(
    args: Args,
    redis: RedisServer,
    mail: Arc<FakeMailService>,
    public: String,
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
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(5000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(&mut conn)
        .await
        .unwrap();

    println!(
        "## 1. Full logins through the service (closed loop, stub user service, REST fake mail)\n"
    );
    let recorder = Arc::new(Recorder::default());
    let before = counters(&mut conn).await;
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..args.users)
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
    let after = counters(&mut conn).await;
    let service_rate = recorder.report(elapsed);
    print_costs(&before, &after, recorder.logins.load(Ordering::Relaxed));

    println!(
        "\n## 2. Redis ceiling: the same scripts in the same order, no HTTP ({} concurrent)\n",
        args.users * 2
    );
    let done = Arc::new(AtomicU64::new(0));
    let before = counters(&mut conn).await;
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..args.users * 2)
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
    let after = counters(&mut conn).await;
    let ceiling = done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64();
    println!(
        "  logins: {} = {ceiling:.0} logins/s",
        done.load(Ordering::Relaxed)
    );
    print_costs(&before, &after, done.load(Ordering::Relaxed));
    println!(
        "\n  service / ceiling = {:.0} %",
        100.0 * service_rate / ceiling
    );

    let rate = (service_rate * 0.5).max(1.0);
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

    let slow = slow_commands(&mut conn).await;
    println!(
        "\n  commands slower than 5 ms during runs 1-3: {} {:?}",
        slow.len(),
        &slow[..slow.len().min(10)]
    );

    memory_per_session(&store, &mut conn, args.population).await;
    memory_per_send(&store, &mut conn, 10_000).await;
    revoke_costs(&store, &mut conn, &args.revoke_sizes).await;
    if args.stream_entries > 0 {
        stream_trimming(&mut conn, &config, args.stream_entries).await;
    }
}

/// (command, us) of every slow-log entry, slowest first.
async fn slow_commands(conn: &mut redis::aio::MultiplexedConnection) -> Vec<(String, u64)> {
    use redis::Value;
    // Redis 7.0 logs the commands scripts run too: read everything, keep the top-level ones.
    let entries: Vec<Vec<Value>> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query_async(conn)
        .await
        .unwrap();
    let mut slow: Vec<(String, u64)> = entries
        .iter()
        .filter_map(|entry| match entry.as_slice() {
            [_, _, Value::Int(micros), Value::Array(args), ..] => match args.first() {
                Some(Value::BulkString(cmd)) => {
                    Some((String::from_utf8_lossy(cmd).to_lowercase(), *micros as u64))
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    slow.sort_by_key(|e| std::cmp::Reverse(e.1));
    slow
}

/// Durations (us) of the EVALSHA calls in the slow log.
async fn slow_scripts(conn: &mut redis::aio::MultiplexedConnection) -> Vec<u64> {
    slow_commands(conn)
        .await
        .into_iter()
        .filter(|(cmd, _)| cmd == "evalsha")
        .map(|(_, us)| us)
        .collect()
}

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
    info_field(conn, "memory", "used_memory").await
}

async fn delete_matching(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) -> u64 {
    let keys = testcontainers::invariants::scan(conn, pattern).await;
    for chunk in keys.chunks(1000) {
        let _: u64 = redis::cmd("UNLINK")
            .arg(chunk)
            .query_async(conn)
            .await
            .unwrap();
    }
    keys.len() as u64
}

async fn memory_per_session(
    store: &Store,
    conn: &mut redis::aio::MultiplexedConnection,
    population: usize,
) {
    println!("\n## 4. Redis memory per active session ({population} sessions)\n");
    let prefix = store.keys.prefix().to_owned();
    delete_matching(conn, &format!("{prefix}*")).await;
    let _: () = redis::cmd("DEL")
        .arg(store.keys.stream())
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
                    direct_login(&store, n).await;
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
    let sample: Vec<String> = redis::cmd("ZRANGE")
        .arg(store.keys.user_sessions("u0"))
        .arg(0)
        .arg(0)
        .query_async(conn)
        .await
        .unwrap();
    if let Some(id) = sample.first() {
        let stream_len: f64 = redis::cmd("XLEN")
            .arg(store.keys.stream())
            .query_async(conn)
            .await
            .unwrap();
        println!(
            "  where it goes (MEMORY USAGE of one session's keys; the stream averaged per entry):"
        );
        println!("    session hash {:.0} B, snapshot {:.0} B, user index zsets {:.0} + {:.0} B, stream entry {:.0} B",
            usage(store.keys.session(id)).await,
            usage(store.keys.gateway_session(id)).await,
            usage(store.keys.user_sessions("u0")).await,
            usage(store.keys.user_active_sessions("u0")).await,
            usage(store.keys.stream().to_owned()).await / stream_len.max(1.0));
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
}

/// What a send leaves in Redis for its challenge TTL: a delivered one (challenge record and
/// resend window) and a throttled one (the reduced record), `count` of each.
async fn memory_per_send(store: &Store, conn: &mut redis::aio::MultiplexedConnection, count: u64) {
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
            let id = ChallengeId::generate();
            let hash = hasher.hash(&id, &LoginCode::generate());
            let created = store
                .challenge_create(&id, &email, &hash, None, &client)
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
        .arg(store.keys.challenge(last.unwrap().as_str()))
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

async fn revoke_costs(
    store: &Store,
    conn: &mut redis::aio::MultiplexedConnection,
    sizes: &[usize],
) {
    println!("\n## 5. Revoke-all and listing cost by sessions per user\n");
    println!("  | sessions | revoke-all ms | script calls | longest script call us | list first 100 ms | list revoked (all) ms |");
    println!("  |---|---|---|---|---|---|");
    for &size in sizes {
        let user = format!("bulk{size}");
        seed_user(store, conn, &user, size).await;
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-log-slower-than")
            .arg(0)
            .query_async(conn)
            .await
            .unwrap();
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-max-len")
            .arg(1_000_000)
            .query_async(conn)
            .await
            .unwrap();
        let _: () = redis::cmd("SLOWLOG")
            .arg("RESET")
            .query_async(conn)
            .await
            .unwrap();
        let user_id = UserId::parse(&user).unwrap();
        let revocation = Revocation {
            reason_code: authsession::domain::Code::known("admin_revoke"),
            actor_type: authsession::domain::Code::known("admin"),
            actor_id: None,
        };
        let started = Instant::now();
        let revoked = store
            .user_sessions_revoke(&user_id, &revocation, None)
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(revoked as usize, size);
        let scripts = slow_scripts(conn).await;
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-log-slower-than")
            .arg(5000)
            .query_async(conn)
            .await
            .unwrap();
        let list = |filter| {
            let store = store.clone();
            let user_id = user_id.clone();
            async move {
                let started = Instant::now();
                store
                    .sessions_list(&user_id, filter, 100, None)
                    .await
                    .unwrap();
                started.elapsed()
            }
        };
        let first = list(None).await;
        let revoked_filter = list(Some(SessionStatus::Revoked)).await;
        println!(
            "  | {size} | {:.1} | {} | {} | {:.2} | {:.2} |",
            took.as_secs_f64() * 1000.0,
            scripts.len(),
            scripts.iter().max().unwrap_or(&0),
            first.as_secs_f64() * 1000.0,
            revoked_filter.as_secs_f64() * 1000.0
        );
    }
}

/// `size` active sessions for one user, written directly (faster than `size` logins; revoke-all
/// reads only the session hashes and the active index).
async fn seed_user(
    store: &Store,
    conn: &mut redis::aio::MultiplexedConnection,
    user: &str,
    size: usize,
) {
    let now = 1_790_000_000_000u64;
    for chunk in (0..size).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            let id = format!("{user}s{i}");
            pipe.cmd("HSET")
                .arg(store.keys.session(&id))
                .arg(&[
                    ("device_session_id", id.as_str()),
                    ("user_id", user),
                    ("status", "active"),
                    (
                        "client_public_key",
                        "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
                    ),
                    ("created_at_ms", &(now + i as u64).to_string()),
                    ("version", "1"),
                ])
                .ignore();
            pipe.cmd("ZADD")
                .arg(store.keys.user_sessions(user))
                .arg(now + i as u64)
                .arg(&id)
                .ignore();
            pipe.cmd("ZADD")
                .arg(store.keys.user_active_sessions(user))
                .arg(now + i as u64)
                .arg(&id)
                .ignore();
        }
        let () = pipe.query_async(conn).await.unwrap();
    }
}

async fn stream_trimming(
    conn: &mut redis::aio::MultiplexedConnection,
    config: &Config,
    entries: usize,
) {
    println!(
        "\n## 6. Event stream at {entries} entries (MAXLEN ~ {})\n",
        config.gateway.events_maxlen
    );
    let stream = format!("{}memtest", config.gateway.events_stream);
    let before = used_memory(conn).await;
    let snapshot = r#"{"device_session_id":"AAAAAAAAAAAAAAAAAAAAAA","user_id":"user-0123456789abcdef","status":"active","client_public_key":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","version":1,"created_at_ms":1795867200000}"#;
    let write = |n: usize| {
        let mut pipe = redis::pipe();
        for _ in 0..n {
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(config.gateway.events_maxlen)
                .arg("*")
                .arg(&[
                    ("event_type", "session_snapshot"),
                    ("device_session_id", "AAAAAAAAAAAAAAAAAAAAAA"),
                    ("user_id", "user-0123456789abcdef"),
                    ("status", "active"),
                    ("version", "1"),
                    ("snapshot", snapshot),
                    ("occurred_at_ms", "1795867200000"),
                ])
                .ignore();
        }
        pipe
    };
    let started = Instant::now();
    for _ in 0..entries / 1000 {
        let () = write(1000).query_async(conn).await.unwrap();
    }
    let len: u64 = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(conn)
        .await
        .unwrap();
    let at_full = used_memory(conn).await;
    for _ in 0..(entries / 10) / 1000 {
        let () = write(1000).query_async(conn).await.unwrap();
    }
    let len_after: u64 = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(conn)
        .await
        .unwrap();
    let after = used_memory(conn).await;
    println!(
        "  wrote {entries} entries in {:.1} s: XLEN {len}, {:.0} MiB, {:.0} bytes/entry",
        started.elapsed().as_secs_f64(),
        (at_full - before) / 1048576.0,
        (at_full - before) / len as f64
    );
    println!(
        "  10 % more entries: XLEN {len_after}, {:.0} MiB (trimming holds the stream near MAXLEN)",
        (after - before) / 1048576.0
    );
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(conn)
        .await
        .unwrap();
}
