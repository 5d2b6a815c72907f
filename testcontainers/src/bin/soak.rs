//! The soak run (not part of CI): moderate load of logins and revokes for a fixed time while a
//! random fault hits every few seconds, then the invariant checker. Prints requests, answers by
//! code, recovery time per fault and the verdict; exits 1 on any 5xx other than a clean 503, on a
//! fault the service did not recover from, on partial state, or when the process's memory grew
//! more than 32 MiB after warm-up.
//!
//!     cargo run --release -p authsession-testbench --bin soak -- --minutes 10

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use authsession::config;
use authsession_testbench::load::{logins_and_revokes, Observed};
use authsession_testbench::{
    chaos, invariants, spawn_app, FakeMailService, FakeUserService, Fault, FaultProxy, RedisServer,
};
use clap::Parser;
use rand::Rng;

/// Most the whole process may grow between warm-up and the end: faults and failing requests must
/// leave nothing behind.
const RSS_GROWTH_LIMIT: u64 = 32 << 20;

/// This process's resident set size, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages
        * nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096) as u64
}

#[derive(Parser)]
#[command(about = "authsession soak run: load with random faults, then the invariant checker")]
struct Args {
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Seconds between faults.
    #[arg(long, default_value_t = 20)]
    fault_every: u64,
    /// Concurrent workers; each pauses 20 ms between logins (moderate load).
    #[arg(long, default_value_t = 8)]
    workers: usize,
}

/// The faults a soak run strikes with, one at random every `fault_every` seconds. An enum, so a
/// fault cannot be misspelled into another one.
#[derive(Debug, Clone, Copy)]
enum SoakFault {
    RedisRestart,
    RedisPause,
    ReplyLost,
    ScriptFlush,
    RedisOom,
    UserServiceHang,
    MailServiceReset,
}

const FAULTS: [SoakFault; 7] = [
    SoakFault::RedisRestart,
    SoakFault::RedisPause,
    SoakFault::ReplyLost,
    SoakFault::ScriptFlush,
    SoakFault::RedisOom,
    SoakFault::UserServiceHang,
    SoakFault::MailServiceReset,
];

impl SoakFault {
    fn name(self) -> &'static str {
        match self {
            SoakFault::RedisRestart => "redis_restart",
            SoakFault::RedisPause => "redis_pause",
            SoakFault::ReplyLost => "reply_lost",
            SoakFault::ScriptFlush => "script_flush",
            SoakFault::RedisOom => "redis_oom",
            SoakFault::UserServiceHang => "user_service_hang",
            SoakFault::MailServiceReset => "mail_service_reset",
        }
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let redis = RedisServer::start().await;
    let redis_proxy = FaultProxy::start(redis.addr()).await;
    let users = FakeUserService::start().await;
    let mail = FakeMailService::start().await;
    mail.stop_recording();
    users.stop_recording();
    let mail_proxy =
        FaultProxy::start(mail.base_url().trim_start_matches("http://").to_owned()).await;
    let users_url = users.base_url();
    let mail_url = format!("http://{}", mail_proxy.addr());
    let app = spawn_app(
        &redis,
        &[
            (config::REDIS_ADDR, &redis_proxy.addr()),
            (config::USER_SERVICE_MODE, "rest"),
            (config::USER_SERVICE_BASE_URL, &users_url),
            (config::USER_SERVICE_REQUEST_TIMEOUT, "1s"),
            (config::MAIL_SERVICE_MODE, "rest"),
            (config::MAIL_SERVICE_BASE_URL, &mail_url),
            (config::MAIL_SERVICE_REQUEST_TIMEOUT, "1s"),
            (config::LOG_LEVEL, "error"),
        ],
    )
    .await;
    let mut admin = redis.connection().await;

    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Observed::default());
    // Whole-process memory (service, load and fakes share this process): sampled once the load
    // is warm and again at the end, every fault in between.
    let warm_rss = Mutex::new(None::<u64>);
    let deadline = Instant::now() + Duration::from_secs_f64(args.minutes * 60.0);
    let mut recoveries: Vec<(&str, Option<Duration>)> = Vec::new();
    let chaos = async {
        while Instant::now() + Duration::from_secs(args.fault_every) < deadline {
            tokio::time::sleep(Duration::from_secs(args.fault_every)).await;
            warm_rss.lock().unwrap().get_or_insert_with(rss);
            let fault = FAULTS[rand::rng().random_range(0..FAULTS.len())];
            let hold = Duration::from_millis(1500);
            match fault {
                SoakFault::RedisRestart => {
                    chaos::restart(&redis, Duration::from_secs(1)).await;
                    admin = redis.connection().await;
                }
                SoakFault::RedisPause => chaos::freeze(&redis, Duration::from_secs(2)).await,
                SoakFault::ReplyLost => {
                    chaos::through_proxy(
                        &redis_proxy,
                        Fault::DropReplyTo(b"EVALSHA".to_vec()),
                        hold,
                    )
                    .await
                }
                SoakFault::ScriptFlush => chaos::flush_scripts(&mut admin).await,
                SoakFault::RedisOom => chaos::out_of_memory(&mut admin, hold).await,
                SoakFault::UserServiceHang => chaos::hang(&users, Duration::from_secs(2)).await,
                SoakFault::MailServiceReset => {
                    chaos::through_proxy(&mail_proxy, Fault::Refuse, hold).await
                }
            }
            let fault = fault.name();
            let ended = Instant::now();
            let mut recovered = None;
            while ended.elapsed() < Duration::from_secs(10) {
                if let Some(after) = seen.lock().unwrap().recovery_after(ended) {
                    recovered = Some(after);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            println!("fault {fault:<20} recovered after {recovered:?}");
            recoveries.push((fault, recovered));
        }
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        stop.store(true, Ordering::Relaxed);
    };
    let load = logins_and_revokes(
        &app,
        &mail,
        args.workers,
        Duration::from_millis(20),
        &stop,
        &seen,
    );
    tokio::join!(load, chaos);

    let seen = seen.into_inner().unwrap();
    let grown = warm_rss
        .into_inner()
        .unwrap()
        .map(|warm| rss().saturating_sub(warm));
    let memory_flat = grown.is_none_or(|g| g < RSS_GROWTH_LIMIT);
    println!(
        "process RSS growth after warm-up: {} KiB (limit {} KiB)",
        grown.unwrap_or(0) >> 10,
        RSS_GROWTH_LIMIT >> 10
    );
    let total: u64 = seen.answers.values().sum();
    println!(
        "\nrequests: {total}, successful logins: {}, slowest answer: {:?}",
        seen.logins.len(),
        seen.slowest
    );
    let mut clean = true;
    for ((route, status, code), count) in &seen.answers {
        let allowed =
            *status == 200 || *status == 503 || (*status == 404 && code.ends_with("not_found"));
        clean &= allowed;
        println!(
            "  {route:<8} {status} {code:<22} {count}{}",
            if allowed { "" } else { "   <- unexpected" }
        );
    }
    let unrecovered = recoveries.iter().filter(|(_, r)| r.is_none()).count();
    let worst = recoveries.iter().filter_map(|(_, r)| *r).max();
    println!(
        "faults: {}, unrecovered: {unrecovered}, slowest recovery: {worst:?}",
        recoveries.len()
    );
    let violations = invariants::check(&mut redis.connection().await, &app.config).await;
    println!(
        "invariant checker: {}",
        if violations.is_empty() {
            "no partial state".to_owned()
        } else {
            format!("{violations:#?}")
        }
    );
    if !(clean && unrecovered == 0 && violations.is_empty() && memory_flat) {
        std::process::exit(1);
    }
}
