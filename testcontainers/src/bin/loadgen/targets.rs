//! Scenario 0: the per-request targets, measured as `testcontainers/bench/README.md` does, in one
//! run: the reference script's ceiling (`redis-benchmark` over `EVALSHA`), each public route on
//! its own through the service at full speed (64 concurrent requests; the release binary in a
//! process of its own, configured as a user runs it: JSON logs at `info`, per-IP limits **on** at
//! their defaults, every request through a trusted proxy with an address of its own in
//! `X-Forwarded-For`; stub user and mail services; confirms of challenges written straight into
//! Redis in the contract's format), the service's and Redis's CPU per answer, each route's p99 at
//! half its maximum, and the HTTP stack alone (a `400` that reaches no script).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authsession::domain::{CodeHasher, Email, LoginCode};
use authsession::store::Store;
use authsession_testbench::{public_key, unique_email, RedisServer, ServiceProcess};

/// Requests in flight in the closed-loop runs (the bench's `wrk -c64`).
const CONCURRENCY: usize = 64;

/// The figures of one run.
#[derive(Debug, Default)]
pub struct Figures {
    pub reference: f64,
    pub send: f64,
    pub confirm: f64,
    pub http_only: f64,
    pub send_p99_ms: f64,
    pub confirm_p99_ms: f64,
}

/// The service under test: its process, its public URL, and its store and code hasher (for
/// challenges written straight into Redis).
pub struct Service {
    pub http: reqwest::Client,
    pub process: ServiceProcess,
    pub public: String,
    pub store: Store,
    pub hasher: CodeHasher,
}

/// The service `binary`, run with `env` as a user runs it (its stdout read and dropped, as a log
/// shipper would).
pub fn spawn_service(binary: &std::path::Path, env: &[(String, String)]) -> ServiceProcess {
    // Its first lines (startup) are kept: `listener_addr` reads the public address from them.
    ServiceProcess::spawn_keeping(binary, &[], env, 200)
}

/// A distinct client address per request (`10.x.y.z`), so per-IP admission counts each once.
fn forwarded(n: u64) -> String {
    let n = n % (1 << 24);
    format!("10.{}.{}.{}", n >> 16, (n >> 8) & 0xff, n & 0xff)
}

/// What one request took, or why it failed.
pub type Outcome = Result<Duration, String>;

/// Latencies and failures of one run.
#[derive(Default)]
struct Tally {
    micros: Mutex<Vec<u32>>,
    failures: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Tally {
    fn add(&self, outcome: Outcome) {
        match outcome {
            Ok(took) => self
                .micros
                .lock()
                .unwrap()
                .push(took.as_micros().min(u32::MAX as u128) as u32),
            Err(why) => *self.failures.lock().unwrap().entry(why).or_default() += 1,
        }
    }

    /// Prints the run's line; returns (answers per second, p99 ms).
    fn report(&self, what: &str, elapsed: Duration) -> (f64, f64) {
        let (rate, _, p99) = self.report_all(what, elapsed);
        (rate, p99)
    }

    /// Prints the run's line; returns (answers per second, p50 ms, p99 ms).
    fn report_all(&self, what: &str, elapsed: Duration) -> (f64, f64, f64) {
        let mut micros = self.micros.lock().unwrap();
        micros.sort_unstable();
        let pct = |p: f64| {
            micros
                .get(((micros.len().max(1) - 1) as f64 * p) as usize)
                .map_or(0.0, |&us| us as f64 / 1000.0)
        };
        let rate = micros.len() as f64 / elapsed.as_secs_f64();
        let failures = self.failures.lock().unwrap();
        println!(
            "  | {what} | {} | {rate:.0} | {:.2} | {:.2} | {:.2} | {} |",
            micros.len(),
            pct(0.5),
            pct(0.99),
            pct(1.0),
            if failures.is_empty() {
                "none".to_owned()
            } else {
                format!("{failures:?}")
            }
        );
        (rate, pct(0.5), pct(0.99))
    }
}

/// `CONCURRENCY` loops of `request(n)` for `duration` (or until it answers `None`: nothing left).
async fn closed<F, Fut>(what: &str, duration: Duration, request: F) -> (f64, f64)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<Outcome>> + Send,
{
    let (tally, next, request) = (
        Arc::new(Tally::default()),
        Arc::new(AtomicU64::new(0)),
        Arc::new(request),
    );
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (tally, next, request) = (tally.clone(), next.clone(), request.clone());
            tokio::spawn(async move {
                while started.elapsed() < duration {
                    match request(next.fetch_add(1, Ordering::Relaxed)).await {
                        Some(outcome) => tally.add(outcome),
                        None => return,
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    tally.report(what, started.elapsed())
}

/// Requests started at `rate` per second for `duration`, whatever their latency: (answers per
/// second, p99 ms).
async fn open<F, Fut>(what: &str, rate: f64, duration: Duration, request: F) -> (f64, f64)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<Outcome>> + Send + 'static,
{
    let (rate, _, p99) = open_loop(what, rate, duration, request).await;
    (rate, p99)
}

/// [`open`], with the median too: (answers per second, p50 ms, p99 ms).
pub async fn open_loop<F, Fut>(
    what: &str,
    rate: f64,
    duration: Duration,
    request: F,
) -> (f64, f64, f64)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<Outcome>> + Send + 'static,
{
    let (tally, request) = (Arc::new(Tally::default()), Arc::new(request));
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1.0)));
    let mut tasks = Vec::new();
    let mut n = 0;
    while started.elapsed() < duration {
        ticker.tick().await;
        let (tally, future) = (tally.clone(), request(n));
        n += 1;
        tasks.push(tokio::spawn(async move {
            if let Some(outcome) = future.await {
                tally.add(outcome);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    tally.report_all(what, started.elapsed())
}

/// One POST with a JSON body from client `n`; the answer's status must be `want`.
async fn post(
    http: &reqwest::Client,
    url: &str,
    n: u64,
    body: serde_json::Value,
    want: u16,
) -> Result<(Duration, reqwest::Response), String> {
    let started = Instant::now();
    let answer = http
        .post(url)
        .header("x-forwarded-for", forwarded(n))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let took = started.elapsed();
    if answer.status().as_u16() != want {
        return Err(format!("status {}", answer.status().as_u16()));
    }
    Ok((took, answer))
}

/// One request of a run, boxed so every route's runs share one shape.
type Request = std::pin::Pin<Box<dyn std::future::Future<Output = Option<Outcome>> + Send>>;

/// Requests POSTing to `path` of the public surface: `body()` gives the next one's JSON (`None`:
/// nothing left to send), whose answer must be `want`.
fn poster(
    service: &Service,
    path: &str,
    want: u16,
    body: impl Fn() -> Option<serde_json::Value> + Send + Sync + 'static,
) -> impl Fn(u64) -> Request + Send + Sync + 'static {
    let (http, url) = (service.http.clone(), format!("{}{path}", service.public));
    move |n| {
        let (http, url, body) = (http.clone(), url.clone(), body());
        Box::pin(async move {
            Some(
                post(&http, &url, n, body?, want)
                    .await
                    .map(|(took, _)| took),
            )
        })
    }
}

/// A send to a fresh address (the service's stub mail delivers it).
fn send(service: &Service) -> impl Fn(u64) -> Request + Send + Sync + 'static {
    poster(
        service,
        authsession::http::public::SEND_EMAIL_CODE,
        200,
        || Some(serde_json::json!({ "email": unique_email() })),
    )
}

/// `n` challenges written straight into Redis in the contract's format (`sent`, a known code
/// hashed under the service's key, an id minted as the service mints it), as the bench README's
/// confirm run has them.
async fn challenges(
    service: &Service,
    conn: &mut redis::aio::MultiplexedConnection,
    n: usize,
) -> Arc<Mutex<Vec<(String, String)>>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut made = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(1000) {
        let mut pipe = redis::pipe();
        for _ in (chunk * 1000)..((chunk + 1) * 1000).min(n) {
            let code = LoginCode::generate();
            let email = Email::parse(&unique_email()).unwrap();
            // The id as the service mints it (its address's hash sealed in it): a confirm then
            // declares the address's failure counter from the id, as for a real send.
            let id = service
                .store
                .keys
                .layout()
                .challenge_id_with(email.hash(), &service.hasher.seal_address(email.hash()));
            let key = service.store.keys.challenge(&id);
            pipe.hset_multiple(
                &key,
                &[
                    ("status", "sent".to_owned()),
                    ("email", email.as_str().to_owned()),
                    ("email_hash", email.hash().to_string()),
                    ("code_hash", service.hasher.hash(&id, &code)),
                    ("attempts", "0".to_owned()),
                    ("created_at_ms", now.to_string()),
                    ("expires_at_ms", (now + 600_000).to_string()),
                    ("locale", String::new()),
                ],
            )
            .ignore()
            .pexpire(&key, 1_500_000)
            .ignore();
            made.push((id.to_string(), code.as_str().to_owned()));
        }
        let () = pipe.query_async(conn).await.unwrap();
    }
    Arc::new(Mutex::new(made))
}

/// A confirm of the next unused challenge (right code, a fresh key); `None` once none is left.
fn confirm(
    service: &Service,
    codes: Arc<Mutex<Vec<(String, String)>>>,
) -> impl Fn(u64) -> Request + Send + Sync + 'static {
    poster(
        service,
        authsession::http::public::CONFIRM_EMAIL_CODE,
        200,
        move || {
            let (challenge, code) = codes.lock().unwrap().pop()?;
            Some(serde_json::json!({
                "challenge_id": challenge,
                "code": code,
                "client_public_key": public_key(),
            }))
        },
    )
}

/// A closed-loop run by `wrk -t2 -c64` (the bench README's driver, far lighter than an
/// in-process client) when it is installed: (answers per second, p99 ms); answers other than
/// 2xx are printed as failures.
fn wrk(
    pid: u32,
    what: &str,
    url: &str,
    script: &str,
    duration: Duration,
    args: &[String],
) -> Option<(f64, f64)> {
    let script = format!("{}/wrk/{script}", env!("CARGO_MANIFEST_DIR"));
    let profiled = crate::profile::Profiled::start_process(what, pid);
    let out = std::process::Command::new("wrk")
        .args(["-t2", "-c64", "--latency"])
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .args(["-s", &script, url, "--"])
        .args(args)
        .output()
        .ok()?;
    drop(profiled);
    let text = String::from_utf8_lossy(&out.stdout);
    let (rate, p50, p99, failures) = wrk_figures(&text)?;
    let requests = rate * duration.as_secs_f64();
    println!(
        "  | {what} (wrk) | {requests:.0} | {rate:.0} | {p50:.2} | {p99:.2} | | non-2xx: {failures} |"
    );
    Some((rate, p99))
}

/// What `wrk --latency` printed: (requests per second, p50 ms, p99 ms, non-2xx answers).
pub fn wrk_figures(text: &str) -> Option<(f64, f64, f64, String)> {
    let after = |label: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(label).map(str::trim))
            .map(str::to_owned)
    };
    let rate: f64 = after("Requests/sec:")?.parse().ok()?;
    let millis = |raw: String| -> Option<f64> {
        let (n, unit) = raw.split_at(raw.find(|c: char| c.is_ascii_alphabetic())?);
        let n: f64 = n.parse().ok()?;
        Some(match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            _ => return None,
        })
    };
    let p50 = after("50%").and_then(millis).unwrap_or(f64::NAN);
    let p99 = after("99%").and_then(millis).unwrap_or(f64::NAN);
    let failures = after("Non-2xx or 3xx responses:").unwrap_or_else(|| "none".to_owned());
    Some((rate, p50, p99, failures))
}

/// The reference script's calls per second by `redis-benchmark`, as the bench README runs it.
fn reference_ceiling(redis: &RedisServer, sha: &str) -> Option<f64> {
    let out = std::process::Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &redis.port().to_string()])
        .args([
            "-n",
            "200000",
            "-c",
            "50",
            "-r",
            "100000000",
            "-q",
            "EVALSHA",
            sha,
            "5",
        ])
        .args([
            "ch:__rand_int__",
            "s:__rand_int__",
            "u:__rand_int__",
            "g:__rand_int__",
        ])
        .args([
            "ref_events",
            "sid__rand_int__",
            "user1",
            "1700000000000",
            "pk",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // `EVALSHA ...: 57703.85 requests per second, p50=...` (the last progress line wins).
    text.rsplit("requests per second")
        .nth(1)?
        .rsplit(':')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Runs the scenario against `service` (which must use `redis`).
pub async fn measure(
    redis: &RedisServer,
    conn: &mut redis::aio::MultiplexedConnection,
    service: &Service,
    reference_script: &std::path::Path,
    duration: Duration,
) -> Figures {
    println!(
        "\n## 0. The per-request targets (one run; the service binary as a user runs it: JSON logs \
         at info, per-IP limits at their defaults)\n"
    );
    let mut figures = Figures::default();
    let mut reference_us = f64::NAN;
    let reference = match std::fs::read_to_string(reference_script) {
        Ok(body) => {
            let sha = crate::redis_stats::script_load(conn, &body).await;
            let cpu = crate::redis_stats::counters(conn).await.cpu;
            let before = reference_ceiling(redis, &sha);
            reference_us = 1e6 * (crate::redis_stats::counters(conn).await.cpu - cpu) / 200_000.0;
            for pattern in ["ch:*", "s:*", "u:*", "g:*", "ref_events"] {
                crate::redis_stats::delete_matching(conn, pattern).await;
            }
            before
        }
        Err(e) => {
            println!(
                "  (no reference script at {}: {e})",
                reference_script.display()
            );
            None
        }
    };
    figures.reference = reference.unwrap_or(f64::NAN);
    println!(
        "  reference script (`redis-benchmark -n 200000 -c 50 EVALSHA`): {:.0} calls/s, \
         {reference_us:.1} us of Redis CPU per call\n",
        figures.reference
    );
    println!("  | run | answers | per s | p50 ms | p99 ms | max ms | failures |");
    println!("  |---|---|---|---|---|---|---|");
    let secs = duration.as_secs_f64();
    let wrk_installed = std::process::Command::new("wrk").arg("-v").output().is_ok();
    let cpu = crate::redis_stats::counters(conn).await.cpu;
    let own = service.process.cpu_seconds_split();
    let send_wrk = wrk_installed
        .then(|| {
            wrk(
                service.process.pid(),
                "send-email-code, 64 concurrent",
                &service.public,
                "send.lua",
                duration,
                &[],
            )
        })
        .flatten();
    (figures.send, _) = match send_wrk {
        Some(figures) => figures,
        None => closed("send-email-code, 64 concurrent", duration, send(service)).await,
    };
    // Around whichever client ran (wrk, or the in-process one without it).
    let send_cpu = crate::redis_stats::counters(conn).await.cpu - cpu;
    let send_own = minus(service.process.cpu_seconds_split(), own);
    let codes = challenges(service, conn, (secs * 20_000.0) as usize).await;
    let cpu = crate::redis_stats::counters(conn).await.cpu;
    let own = service.process.cpu_seconds_split();
    let confirm_wrk = if wrk_installed {
        let file = std::env::temp_dir().join(format!("loadgen-codes-{}", std::process::id()));
        let lines: String = codes
            .lock()
            .unwrap()
            .iter()
            .map(|(id, code)| format!("{id} {code}\n"))
            .collect();
        std::fs::write(&file, lines).unwrap();
        let figures = wrk(
            service.process.pid(),
            "confirm-email-code, 64 concurrent",
            &service.public,
            "confirm.lua",
            duration,
            &[file.display().to_string(), "2".to_owned()],
        );
        let _ = std::fs::remove_file(&file);
        figures
    } else {
        None
    };
    (figures.confirm, _) = match confirm_wrk {
        Some(figures) => figures,
        None => {
            closed(
                "confirm-email-code, 64 concurrent",
                duration,
                confirm(service, codes.clone()),
            )
            .await
        }
    };
    let confirm_cpu = crate::redis_stats::counters(conn).await.cpu - cpu;
    let confirm_own = minus(service.process.cpu_seconds_split(), own);
    let malformed = poster(
        service,
        authsession::http::public::SEND_EMAIL_CODE,
        400,
        || Some(serde_json::json!({ "email": "not an address" })),
    );
    let http_only = "400 before any script (HTTP stack alone)";
    (figures.http_only, _) = closed(http_only, duration, malformed).await;
    (_, figures.send_p99_ms) = open(
        "send-email-code at half its maximum",
        figures.send / 2.0,
        duration,
        send(service),
    )
    .await;
    let codes = challenges(service, conn, (secs * figures.confirm * 0.6) as usize).await;
    (_, figures.confirm_p99_ms) = open(
        "confirm-email-code at half its maximum",
        figures.confirm / 2.0,
        duration,
        confirm(service, codes),
    )
    .await;

    // Whether a route is bound by Redis (its one thread near a whole core) or by the service.
    println!(
        "\n  Redis CPU during the runs above: send {:.0} %, confirm {:.0} % of one core",
        100.0 * send_cpu / secs,
        100.0 * confirm_cpu / secs,
    );
    // The service is a process of its own and the load comes from outside it (wrk, or this
    // process), so its CPU is all the service's: the first-class figure beside Redis's.
    let per_answer = |cpu: f64, rate: f64| 1e6 * cpu / (rate * secs);
    let service_us = (
        per_answer(send_own.0 + send_own.1, figures.send),
        per_answer(confirm_own.0 + confirm_own.1, figures.confirm),
    );
    println!(
        "  CPU per answer, us (send / confirm): the service {:.0} / {:.0} (user {:.0} / {:.0}, \
         system {:.0} / {:.0}), Redis {:.0} / {:.0}",
        service_us.0,
        service_us.1,
        per_answer(send_own.0, figures.send),
        per_answer(confirm_own.0, figures.confirm),
        per_answer(send_own.1, figures.send),
        per_answer(confirm_own.1, figures.confirm),
        per_answer(send_cpu, figures.send),
        per_answer(confirm_cpu, figures.confirm),
    );
    let ratio = |rate: f64| rate / figures.reference;
    println!("\n  | target | wanted | measured |");
    println!("  |---|---|---|");
    println!(
        "  | the service's CPU per answer, send / confirm | <= 45 / 65 us | {:.0} / {:.0} us |",
        service_us.0, service_us.1
    );
    println!(
        "  | send-email-code / reference ceiling | >= 0.50 | {:.2} ({:.0} / {:.0}) |",
        ratio(figures.send),
        figures.send,
        figures.reference
    );
    println!(
        "  | confirm-email-code / reference ceiling | >= 0.33 | {:.2} ({:.0} / {:.0}) |",
        ratio(figures.confirm),
        figures.confirm,
        figures.reference
    );
    println!(
        "  | p99 at half the maximum, send / confirm | <= 5 ms | {:.2} / {:.2} ms |",
        figures.send_p99_ms, figures.confirm_p99_ms
    );
    println!(
        "  | (HTTP stack alone: a 400 before any script) / reference ceiling | | {:.2} ({:.0}/s) |",
        ratio(figures.http_only),
        figures.http_only
    );
    figures
}

/// `after - before`, user and system apart.
fn minus(after: (f64, f64), before: (f64, f64)) -> (f64, f64) {
    (after.0 - before.0, after.1 - before.1)
}
