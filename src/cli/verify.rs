//! `authsession verify`: the runbook's steady-state verification. TCP to both listeners, the two
//! recommended smoke requests, Redis reachability, the namespace in use and the script cache.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::json;

use crate::config::{Config, ScriptLoading};
use crate::http::internal::USER_SESSIONS;
use crate::http::public::SEND_EMAIL_CODE;
use crate::store::scripts::scripts;
use crate::store::{Redis, Store};

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Where to reach a listener bound to `addr` from this host.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

pub async fn run(
    config: &Config,
    json_output: bool,
    out: &mut impl Write,
) -> Result<bool, super::Error> {
    let checks = checks(config).await;
    let ok = checks.iter().all(|c| c.ok);
    if json_output {
        serde_json::to_writer_pretty(&mut *out, &json!({"ok": ok, "checks": checks}))
            .map_err(std::io::Error::other)?;
        writeln!(out)?;
    } else {
        writeln!(out, "authsession steady-state verification (runbook)")?;
        for check in &checks {
            writeln!(
                out,
                "  [{}] {}: {}",
                if check.ok { "PASS" } else { "FAIL" },
                check.name,
                check.detail
            )?;
        }
        let passed = checks.iter().filter(|c| c.ok).count();
        writeln!(
            out,
            "result: {} ({passed}/{} checks passed)",
            if ok { "PASS" } else { "FAIL" },
            checks.len()
        )?;
    }
    Ok(ok)
}

async fn checks(config: &Config) -> Vec<Check> {
    let limit = config.redis.connect_timeout;
    let public = reachable(config.public_addr);
    let internal = reachable(config.internal_addr);
    let http = reqwest::Client::builder()
        .timeout(limit.max(Duration::from_secs(2)))
        .build()
        .expect("HTTP client");
    let mut checks = vec![
        tcp("public listener", public, limit).await,
        tcp("internal listener", internal, limit).await,
    ];

    let smoke = http
        .post(format!("http://{public}{SEND_EMAIL_CODE}"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await;
    checks.push(
        expect_reply(
            "public smoke request",
            "malformed send-email-code",
            smoke,
            400,
            |body| body["error"]["code"] == "invalid_request",
        )
        .await,
    );

    let mut request = http.get(unknown_user_sessions(internal));
    if let Some(token) = &config.internal_token {
        request = request.bearer_auth(token.expose_secret());
    }
    checks.push(
        expect_reply(
            "internal smoke request",
            "sessions of an unknown user",
            request.send().await,
            200,
            |body| body["sessions"] == json!([]),
        )
        .await,
    );

    checks.push(internal_auth(config, &http, internal).await);
    checks.extend(redis_checks(config, limit).await);
    checks
}

/// Whether the internal surface requires a token, tried without one: `401` when a token is
/// configured; without a token, fine on a loopback address or with the explicit opt-out.
async fn internal_auth(config: &Config, http: &reqwest::Client, internal: SocketAddr) -> Check {
    let name = "internal surface authentication";
    if config.internal_token.is_some() {
        let reply = http.get(unknown_user_sessions(internal)).send().await;
        let (ok, detail) = match reply.map(|r| r.status().as_u16()) {
            Ok(401) => (true, "requires a bearer token (401 without one)".to_owned()),
            Ok(status) => (
                false,
                format!("answered {status} without a token; expected 401"),
            ),
            Err(e) => (false, format!("request failed: {e}")),
        };
        return Check { name, ok, detail };
    }
    let loopback = config.internal_addr.ip().is_loopback();
    let (ok, detail) = if loopback {
        (true, "no token; listens on loopback only".to_owned())
    } else if config.internal_allow_unauthenticated {
        (
            true,
            "no token: unauthenticated by AUTHSESSION_INTERNAL_HTTP_ALLOW_UNAUTHENTICATED"
                .to_owned(),
        )
    } else {
        (
            false,
            format!(
                "no token and listening on {}: anyone who reaches it can revoke sessions; set AUTHSESSION_INTERNAL_HTTP_TOKEN",
                config.internal_addr
            ),
        )
    };
    Check { name, ok, detail }
}

/// The runbook's internal smoke request: the sessions of a user that does not exist.
fn unknown_user_sessions(internal: SocketAddr) -> String {
    let path = USER_SESSIONS.replace("{user_id}", "authsession-verify-unknown");
    format!("http://{internal}{path}")
}

async fn tcp(name: &'static str, addr: SocketAddr, limit: Duration) -> Check {
    let result = tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await;
    let (ok, detail) = match result {
        Ok(Ok(_)) => (true, format!("TCP connect to {addr}")),
        Ok(Err(e)) => (false, format!("TCP connect to {addr} failed: {e}")),
        Err(_) => (
            false,
            format!("TCP connect to {addr} timed out after {limit:?}"),
        ),
    };
    Check { name, ok, detail }
}

async fn expect_reply(
    name: &'static str,
    what: &str,
    response: reqwest::Result<reqwest::Response>,
    status: u16,
    body_ok: impl Fn(&serde_json::Value) -> bool,
) -> Check {
    let (ok, detail) = match response {
        Err(e) => (false, format!("{what}: request failed: {e}")),
        Ok(response) => {
            let got = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let ok = got == status && body_ok(&body);
            (ok, format!("{what}: expected {status}, got {got} {body}"))
        }
    };
    Check { name, ok, detail }
}

/// The deployment as the service sees it: mode, the primary taking writes, its replicas; with
/// replica acks on, fewer connected replicas than required fails (every write would answer 503).
async fn topology_check(redis: &Redis, config: &Config, limit: Duration) -> Check {
    let wanted = config.redis.min_replica_acks;
    let (ok, detail) = match redis.topology(limit).await {
        Ok(t) => {
            let replicas = t
                .connected_replicas
                .map_or("unknown (INFO denied)".to_owned(), |n| n.to_string());
            let acks = if wanted == 0 {
                "replica acks off: an acknowledged write can be lost in a failover".to_owned()
            } else {
                format!(
                    "every write waits for {wanted} replica ack(s) within {:?}",
                    config.redis.replica_ack_timeout
                )
            };
            let enough = wanted == 0 || t.connected_replicas.is_some_and(|n| n >= wanted);
            (
                enough,
                format!(
                    "mode {}, primary {}, connected replicas {replicas}; {acks}",
                    t.mode.as_str(),
                    t.primary
                ),
            )
        }
        Err(e) => (false, format!("cannot read the topology: {e}")),
    };
    Check {
        name: "redis topology",
        ok,
        detail,
    }
}

async fn redis_checks(config: &Config, limit: Duration) -> Vec<Check> {
    let address = config.redis.addrs.join(",");
    let redis = match Redis::new(&config.redis) {
        Ok(redis) => redis,
        Err(e) => {
            return vec![Check {
                name: "redis",
                ok: false,
                detail: format!("{address}: {e}"),
            }]
        }
    };
    if let Err(e) = redis.ping(limit).await {
        return vec![Check {
            name: "redis",
            ok: false,
            detail: format!("PING {address}: {e}"),
        }];
    }
    let mut checks = vec![Check {
        name: "redis",
        ok: true,
        detail: format!("PING {address}"),
    }];

    checks.push(topology_check(&redis, config, limit).await);

    let store = Store::new(redis, &config.redis, &config.gateway, &config.policy);
    checks.push(namespace_check(&store).await);

    // The scripts this layout runs (`scripts check` lists them one by one).
    let layout = store.keys.layout();
    let all: Vec<_> = scripts()
        .all()
        .into_iter()
        .filter(|s| layout.runs(s.name))
        .collect();
    let (ok, detail) = match store.redis.scripts_exist(&all, &store.keys.streams()).await {
        Ok(exists) => {
            let cached = exists.iter().filter(|e| **e).count();
            let preloaded = config.redis.script_loading == ScriptLoading::Preloaded;
            let ok = cached == all.len() || !preloaded;
            let note = if preloaded {
                "preloaded mode: all must be cached"
            } else {
                "auto mode: the others load on first use"
            };
            (
                ok,
                format!(
                    "{cached}/{} scripts of the {} layout cached ({note})",
                    all.len(),
                    layout.name()
                ),
            )
        }
        Err(e) => (false, format!("SCRIPT EXISTS: {e}")),
    };
    checks.push(Check {
        name: "script cache",
        ok,
        detail,
    });
    checks
}

/// The namespace: the names the gateway must share, and streams that are streams.
async fn namespace_check(store: &Store) -> Check {
    let keys = &store.keys;
    let streams = keys.streams();
    let layout = match streams.as_slice() {
        [one] => format!("stream {one:?} (MAXLEN ~ {})", store.stream_maxlen()),
        many => format!(
            "{} partitions, streams {:?} .. {:?} (each MAXLEN ~ {})",
            many.len(),
            many[0],
            many[many.len() - 1],
            store.stream_maxlen()
        ),
    };
    let (ok, detail) = match store.stream_types().await {
        Ok(types) => match types.iter().find(|(_, t)| t != "stream" && t != "none") {
            None => (
                true,
                format!(
                    "key prefix {:?}, gateway prefix {:?}, {layout} (gateway must use the same names)",
                    keys.prefix(),
                    keys.gateway_session_prefix(),
                ),
            ),
            Some((stream, other)) => (
                false,
                format!("stream {stream:?} holds a {other}, not a stream: every confirm and revoke fails"),
            ),
        },
        Err(e) => (false, format!("TYPE of the streams: {e}")),
    };
    Check {
        name: "namespace",
        ok,
        detail,
    }
}
