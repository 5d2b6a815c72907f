//! `authsession-gateway`: the reference gateway consumer as a process. It reads the same
//! `AUTHSESSION_*` configuration as the service (so it uses the same Redis, names and
//! credentials), follows the session event stream from now on (or from `--from <id>`), and
//! answers `GET /sessions/{device_session_id}` with `{"active": true, "client_public_key": ...}`
//! or `{"active": false}`. A session it has no event for is looked up at its snapshot key, so a
//! restart (cache empty, following from now) never answers from stale state. It serves through
//! the service's accept loop and limits, and with `--token-file` requires a bearer token.
//! With `--edge-listen` it also authenticates requests for nginx (`edge.rs`).

mod edge;
mod lookups;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{any, get};
use axum::{Json, Router};
use clap::Parser;
use serde_json::json;

use authsession::config::Config;
use authsession::gateway::{GatewayConsumer, GatewayNames, Verdict};
use authsession::http::extract::BodyBudget;
use authsession::http::server::{serve, Shares};
use authsession::store::{Keys, Redis};
use authsession::telemetry;
use lookups::Shared;
use secrecy::SecretString;

#[derive(Parser)]
#[command(
    name = "authsession-gateway",
    version,
    about = "Reference gateway consumer: follows authsession's session events and answers whether a session is active"
)]
struct Args {
    /// Where to answer `GET /sessions/{device_session_id}`.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Stream id to follow every stream from: `now` (new events only), or an id to resume after
    /// (`0` replays what the streams hold).
    #[arg(long, default_value = "now")]
    from: String,
    /// Most sessions cached (the oldest cached first out; a session not cached is read from its
    /// snapshot key).
    #[arg(long, default_value_t = authsession::gateway::DEFAULT_CAPACITY)]
    cache_entries: usize,
    /// Longest a cached answer is used before the snapshot key is read again (bounds how long
    /// an event the consumer missed can be ignored).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    cache_max_age: Duration,
    /// A file holding a token every request must carry as `Authorization: Bearer <token>` (a
    /// file, not an argument: arguments show in `ps`); mode 0600 or 0400, at least 16 characters.
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// Serve without a token on an address other than loopback (a network boundary protects
    /// it); without this, such a `--listen` needs `--token-file`.
    #[arg(long)]
    unauthenticated: bool,
    /// Where to serve nginx: `/auth` (for `auth_request`) and the relay for requests with a
    /// body (docs/gateway.md "Authenticating requests"); off when not given.
    #[arg(long)]
    edge_listen: Option<SocketAddr>,
    /// Where the relay sends authenticated requests with a body (the upstream's base URL).
    #[arg(long)]
    upstream: Option<url::Url>,
    /// A signature `created` (or DPoP `iat`) longer ago than this is stale.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    max_age: Duration,
    /// How far ahead of this gateway's clock a proof may be created.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    clock_skew: Duration,
}

/// Shortest token accepted, as for the service's internal surface.
const MIN_TOKEN_CHARS: usize = 16;

/// The bearer token in `path`: a file only its owner may read (as every secret file,
/// `config::read_secret`), of at least [`MIN_TOKEN_CHARS`]; a problem to print otherwise.
fn read_token(path: &std::path::Path) -> Result<SecretString, String> {
    let token = authsession::config::read_secret(path)
        .map_err(|why| format!("--token-file {}: {why}", path.display()))?;
    if token.chars().count() < MIN_TOKEN_CHARS {
        return Err(format!(
            "--token-file {}: the token is shorter than {MIN_TOKEN_CHARS} characters",
            path.display()
        ));
    }
    Ok(SecretString::from(token))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::for_gateway() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    // Kept to the end: dropped, it writes the last log lines.
    let _telemetry = telemetry::init(config.log_format, &config.log_level);
    authsession::app::raise_open_files_limit(&config);
    let token = match args.token_file.as_deref().map(read_token).transpose() {
        Ok(token) => token,
        Err(problem) => {
            eprintln!("{problem}");
            return ExitCode::from(1);
        }
    };
    if token.is_none() && !args.listen.ip().is_loopback() && !args.unauthenticated {
        eprintln!(
            "--listen {}: not loopback, so anyone who reaches it learns which sessions are active \
             and their keys; give --token-file, or --unauthenticated where a network boundary \
             protects it",
            args.listen
        );
        return ExitCode::from(1);
    }
    let redis = match Redis::new(&config.redis) {
        Ok(redis) => redis,
        Err(e) => {
            eprintln!("redis: {e}");
            return ExitCode::from(1);
        }
    };
    let keys = Keys::new(&config.redis, &config.gateway);
    let edge_listener = match args.edge_listen {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                eprintln!("cannot listen on {addr}: {e}");
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    let consumer = Arc::new(GatewayConsumer::with_limits(
        GatewayNames {
            snapshot_prefix: keys.gateway_session_prefix().to_owned(),
            streams: keys.streams(),
        },
        args.cache_entries,
        args.cache_max_age,
    ));
    // Each blocking read must end well inside the connection's response timeout (the
    // configured command timeout), or the client would call it a timeout and reconnect.
    let block_ms = (config.redis.command_timeout.as_millis() as u64 / 2).max(1);
    for stream in consumer.names().streams.clone() {
        let (consumer, redis, from) = (consumer.clone(), redis.clone(), args.from.clone());
        tokio::spawn(follow(consumer, redis, stream, from, block_ms));
    }
    let shared = Shared {
        consumer,
        keys,
        redis,
        lookups: Arc::default(),
    };
    let mut app = Router::new()
        .route("/sessions/{device_session_id}", get(session))
        .with_state(shared.clone());
    if let Some(token) = &token {
        app = authsession::http::internal::with_bearer(app, token, "gateway");
    }
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    tracing::info!(addr = %args.listen, token = token.is_some(), "gateway consumer listening");
    // The service's accept loop and limits: header and idle deadlines, connection caps and
    // per-client shares, bounded bodies.
    let limits = authsession::app::connection_limits(&config);
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(authsession::app::stop_on_signal(shutdown.clone()));
    let bodies = BodyBudget::new(config.http_body_buffer_bytes, config.http_body_read_timeout);
    let shares = || Shares::new(limits, authsession::app::addressing(&config));
    let edge = edge_listener.map(|listener| {
        let edge = edge::Edge {
            shared,
            policy: authsession::gateway::edge::Policy {
                max_age: args.max_age,
                clock_skew: args.clock_skew,
            },
            upstream: args.upstream.clone(),
            keys: Arc::new(authsession::gateway::edge::SessionKeys::new(
                args.cache_entries,
            )),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(edge::UPSTREAM_TIMEOUT)
                .build()
                .expect("an HTTP client with no TLS settings builds"),
        };
        let router = Router::new()
            .route("/auth", get(edge::auth))
            .route("/relay", any(edge::relay))
            .with_state(edge);
        tracing::info!(addr = ?listener.local_addr().ok(), "edge authentication listening");
        serve(
            "edge",
            listener,
            router,
            limits,
            shares(),
            bodies.clone(),
            shutdown.clone(),
        )
    });
    let lookups = serve("gateway", listener, app, limits, shares(), bodies, shutdown);
    match edge {
        Some(edge) => {
            tokio::join!(lookups, edge);
        }
        None => lookups.await,
    }
    tracing::info!("gateway consumer stopped");
    ExitCode::SUCCESS
}

/// Follows one stream for ever on a connection of its own, resuming from the last id read after
/// any error.
async fn follow(
    consumer: Arc<GatewayConsumer>,
    redis: Redis,
    stream: String,
    from: String,
    block_ms: u64,
) {
    let mut last_id = from;
    loop {
        if let Err(error) = follow_on(&consumer, &redis, &stream, &mut last_id, block_ms).await {
            tracing::warn!(%error, %stream, %last_id, "stream follow interrupted; resuming");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One connection's worth of following; `now` is resolved to the stream's newest entry first.
async fn follow_on(
    consumer: &GatewayConsumer,
    redis: &Redis,
    stream: &str,
    last_id: &mut String,
    block_ms: u64,
) -> Result<(), String> {
    let mut conn = redis.dedicated().await.map_err(|e| e.to_string())?;
    if last_id == "now" {
        *last_id = consumer
            .newest_id(&mut conn, stream)
            .await
            .map_err(|e| e.to_string())?;
    }
    loop {
        let applied = consumer
            .step(&mut conn, stream, last_id, block_ms)
            .await
            .map_err(|e| e.to_string())?;
        *last_id = applied.last_id;
    }
}

async fn session(
    State(shared): State<Shared>,
    Path(device_session_id): Path<String>,
) -> Json<serde_json::Value> {
    let verdict = match shared.lookups().await {
        Ok(mut conn) => shared
            .consumer
            .verdict(&mut conn, &device_session_id)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    if verdict.is_err() {
        shared.forget_lookups();
    }
    Json(match verdict {
        Ok(Verdict::Active { client_public_key }) => {
            json!({"active": true, "client_public_key": client_public_key})
        }
        Ok(Verdict::Refused) => json!({"active": false}),
        // Fail closed: a gateway that cannot tell refuses.
        Err(error) => {
            tracing::warn!(%error, "session lookup failed");
            json!({"active": false, "error": "lookup failed"})
        }
    })
}
