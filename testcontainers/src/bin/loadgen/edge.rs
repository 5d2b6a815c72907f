//! Scenario 11: requests authenticated at the edge (issue 38). nginx with the documented
//! configuration in front of `authsession-gateway --edge-listen` and an upstream, against the
//! same requests through a second `server` of the same nginx straight to the upstream (no
//! authentication), side by side in one run: throughput (`wrk`, pre-signed requests, each nonce
//! once), latency at half load (the same rate both ways), the gateway's CPU per verified request,
//! and the revocation delay at the edge (from a revoke's `200` to the first `401`).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authsession::domain::UserId;
use authsession::gateway::edge::{signature, Request, Target};
use authsession::store::Store;
use authsession_testbench::edge::{documented_config, Nginx, Upstream};
use authsession_testbench::{free_port, ServiceProcess};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::SigningKey;

use crate::targets::{open_loop, Outcome};

/// Sessions the signed requests are spread over.
const SESSIONS: usize = 200;

/// The fields of a signed `GET path` for session `id`, as (Signature-Input, Signature).
fn sign(key: &SigningKey, id: &str, authority: &str, path: &str) -> (String, String) {
    let target = Target::from_original("http", authority, path).expect("a target");
    let fields = http::HeaderMap::new();
    let request = Request {
        method: "GET",
        target: &target,
        fields: &fields,
        has_body: false,
    };
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let nonce = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
    let signed = signature::sign(&request, key, id, (created, &nonce), &[]).expect("signs");
    (signed.signature_input, signed.signature)
}

pub async fn measure(
    store: &Store,
    env: &[(String, String)],
    internal: &str,
    duration: Duration,
    revokes: usize,
) {
    println!("\n## 11. Requests authenticated at the edge: nginx -> gateway -> upstream vs nginx -> upstream\n");
    let Some(binary) = crate::binary_beside("authsession-gateway") else {
        println!("  skipped: no authsession-gateway beside the loadgen (run `cargo build --release --bins` first)");
        return;
    };
    let key = SigningKey::from_bytes(&rand::random());
    let public = STANDARD.encode(key.verifying_key().as_bytes());
    let user = UserId::parse("edgeload").unwrap();
    let _ = &public;
    let sessions: Vec<String> = authsession_testbench::seed::active_sessions_with_key(
        store,
        &user,
        SESSIONS,
        Some(&public),
    )
    .await
    .iter()
    .map(|id| id.to_string())
    .collect();

    let upstream = Upstream::start_quiet().await;
    let (edge_port, lookup_port, port, plain_port) =
        (free_port(), free_port(), free_port(), free_port());
    let edge_addr = format!("127.0.0.1:{edge_port}");
    let gateway = ServiceProcess::spawn(
        &binary,
        &[
            "--listen",
            &format!("127.0.0.1:{lookup_port}"),
            "--edge-listen",
            &edge_addr,
            "--upstream",
            &format!("http://127.0.0.1:{}", upstream.port),
        ],
        env,
    );
    while tokio::net::TcpStream::connect(&edge_addr).await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let plain = format!(
        "server {{ listen 127.0.0.1:{plain_port}; location / {{ proxy_pass_request_body off; \
         proxy_set_header Content-Length \"\"; proxy_set_header Host $http_host; proxy_http_version 1.1; \
         proxy_set_header Connection \"\"; proxy_pass http://api; }} }}"
    );
    let config = format!(
        "{}\n{plain}",
        documented_config(&edge_addr, &format!("127.0.0.1:{}", upstream.port), port)
    );
    let nginx = Nginx::start(&config, port).await;
    let authority = format!("127.0.0.1:{port}");

    // Each wrk run reads a file of its own: requests signed once in advance, each nonce once.
    let signed_file = |lines: usize| {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut out = std::io::BufWriter::new(file.as_file());
        for i in 0..lines {
            let id = &sessions[i % sessions.len()];
            let path = format!("/v1/items/{i}?page=2");
            let (input, sig) = sign(&key, id, &authority, &path);
            writeln!(out, "{path}\t{input}\t{sig}").unwrap();
        }
        drop(out);
        file
    };
    let lines = (duration.as_secs() as usize * 20_000).max(20_000);
    println!("  | run | requests | per second | p50 ms | p99 ms | | notes |");
    println!("  |---|---|---|---|---|---|---|");
    // One request at a time first: the latency the path adds with nothing queued.
    let serial = Duration::from_secs(3);
    wrk_signed_with(
        "signed, one at a time",
        &nginx.url(""),
        signed_file(20_000).path(),
        serial,
        1,
    );
    wrk_signed_with(
        "no auth, one at a time",
        &format!("http://127.0.0.1:{plain_port}"),
        signed_file(40_000).path(),
        serial,
        1,
    );
    let (file, bare_file) = (signed_file(lines), signed_file(lines * 2));
    let cpu_before = gateway.cpu_seconds();
    let profiled = crate::profile::Profiled::start_process("edge-gateway", gateway.pid());
    let authed = wrk_signed(
        "signed, nginx -> gateway -> upstream",
        &nginx.url(""),
        file.path(),
        duration,
    );
    drop(profiled);
    let gateway_cpu = gateway.cpu_seconds() - cpu_before;
    let bare = wrk_signed(
        "the same, nginx -> upstream (no auth)",
        &format!("http://127.0.0.1:{plain_port}"),
        bare_file.path(),
        duration,
    );
    let (Some((authed_rate, authed_requests)), Some((bare_rate, _))) = (authed, bare) else {
        println!("  skipped the rest: wrk is not installed");
        return;
    };
    println!(
        "\n  throughput with authentication / without: {:.2}; gateway CPU per verified request: {:.0} us (target <= 80)",
        authed_rate / bare_rate,
        gateway_cpu * 1e6 / authed_requests.max(1.0)
    );

    // Latency at half the authenticated throughput, the same rate both ways.
    let rate = authed_rate / 2.0;
    let http = reqwest::Client::new();
    let key = Arc::new(key);
    let sessions = Arc::new(sessions);
    let mut p = Vec::new();
    for (what, base) in [
        ("signed, at half load", nginx.url("")),
        (
            "no auth, at half load",
            format!("http://127.0.0.1:{plain_port}"),
        ),
    ] {
        let (http, key, sessions, authority) = (
            http.clone(),
            key.clone(),
            sessions.clone(),
            authority.clone(),
        );
        let figures = open_loop(what, rate, duration, move |n| {
            let path = format!("/v1/items/{n}");
            let (input, sig) = sign(
                &key,
                &sessions[n as usize % sessions.len()],
                &authority,
                &path,
            );
            let request = http
                .get(format!("{base}{path}"))
                .header("signature-input", input)
                .header("signature", sig);
            async move {
                let started = Instant::now();
                Some(match request.send().await {
                    Ok(r) if r.status() == 200 => Ok(started.elapsed()) as Outcome,
                    Ok(r) => Err(r.status().to_string()),
                    Err(e) => Err(e.without_url().to_string()),
                })
            }
        })
        .await;
        p.push(figures);
    }
    println!(
        "\n  overhead at half load ({rate:.0}/s): p50 {:+.2} ms, p99 {:+.2} ms (target p99 <= 1 ms)",
        p[0].1 - p[1].1,
        p[0].2 - p[1].2
    );
    revocation_delay(
        store,
        &http,
        internal,
        &nginx.url(""),
        &key,
        &authority,
        revokes,
    )
    .await;
    drop(gateway);
}

/// `wrk -t2 -c64` with `signed.lua`: (requests per second, requests), printing the run's line.
fn wrk_signed(what: &str, url: &str, file: &Path, duration: Duration) -> Option<(f64, f64)> {
    wrk_signed_with(what, url, file, duration, 64)
}

/// [`wrk_signed`] with `connections` (one thread for one connection).
fn wrk_signed_with(
    what: &str,
    url: &str,
    file: &Path,
    duration: Duration,
    connections: usize,
) -> Option<(f64, f64)> {
    let script = format!("{}/wrk/signed.lua", env!("CARGO_MANIFEST_DIR"));
    let threads = connections.min(2);
    let out = std::process::Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg("--latency")
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .args(["-s", &script, url, "--"])
        .arg(file)
        .arg(threads.to_string())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (rate, p50, p99, failures) = crate::targets::wrk_figures(&text)?;
    let requests = rate * duration.as_secs_f64();
    println!("  | {what} (wrk) | {requests:.0} | {rate:.0} | {p50:.2} | {p99:.2} | | non-2xx: {failures} |");
    // Every request must have passed: a refused one did less work than a verified one.
    (failures == "none").then_some((rate, requests))
}

/// A signed `GET url` through nginx as session `id`: its status (0 when there is no answer).
async fn signed_get(
    http: &reqwest::Client,
    base: &str,
    key: &SigningKey,
    id: &str,
    authority: &str,
) -> u16 {
    let (input, sig) = sign(key, id, authority, "/v1/me");
    let request = http
        .get(format!("{base}/v1/me"))
        .header("signature-input", input)
        .header("signature", sig);
    request.send().await.map_or(0, |r| r.status().as_u16())
}

/// Revokes `revokes` sessions one at a time through the internal API, each used once first (so
/// the gateway holds it cached, the case the delay is about): the time from the revoke's `200` to
/// the first signed request refused through nginx.
async fn revocation_delay(
    store: &Store,
    http: &reqwest::Client,
    internal: &str,
    base: &str,
    key: &SigningKey,
    authority: &str,
    revokes: usize,
) {
    let public = STANDARD.encode(key.verifying_key().as_bytes());
    let mut sessions = Vec::new();
    for u in 0..revokes.div_ceil(100) {
        let user = UserId::parse(&format!("edgerevoke{u}")).unwrap();
        let count = (revokes - sessions.len()).min(100);
        sessions.extend(
            authsession_testbench::seed::active_sessions_with_key(
                store,
                &user,
                count,
                Some(&public),
            )
            .await,
        );
    }
    let (mut delays, mut unused, mut never) = (Vec::new(), 0, 0);
    for id in &sessions {
        let id = id.to_string();
        if signed_get(http, base, key, &id, authority).await != 200 {
            unused += 1;
            continue;
        }
        let url = format!("{internal}/api/v1/internal/sessions/{id}/revoke");
        if !http.post(url).send().await.is_ok_and(|r| r.status() == 200) {
            unused += 1;
            continue;
        }
        let acked = Instant::now();
        loop {
            if signed_get(http, base, key, &id, authority).await == 401 {
                delays.push(acked.elapsed());
                break;
            }
            if acked.elapsed() > Duration::from_secs(5) {
                never += 1;
                break;
            }
        }
    }
    delays.sort_unstable();
    let pct = |p: f64| crate::propagation::percentile_ms(&delays, p);
    println!(
        "\n  revocation at the edge ({} revokes, one at a time): first 401 after the revoke's 200: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
         not used or not revoked: {unused}; never refused within 5 s: {never}",
        delays.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}
