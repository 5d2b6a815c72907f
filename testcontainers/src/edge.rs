//! The edge of the request-authentication tests: a real nginx (Debian's, in a container from the
//! bench's local image, host network) running a configuration it is given, and the upstream it
//! protects as an HTTP fake that records every request reaching it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::Router;

use crate::engine::{self, AccessMode, Container};

/// The local image `with-engine.sh` builds (Debian 12's nginx, with `auth_request`).
pub const DEFAULT_NGINX_IMAGE: &str = "authsession-test/nginx:bookworm";
pub const NGINX_IMAGE_VAR: &str = "AUTHSESSION_TEST_NGINX_IMAGE";

/// An nginx running `http { <snippet> }` (the snippet verbatim, around it only what a process
/// of the bench's user needs: its pid file, temp directories and logs in its own directory).
pub struct Nginx {
    _container: Container,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Nginx {
    /// Starts nginx with `snippet` inside its `http` block; returns once `port` accepts.
    pub async fn start(snippet: &str, port: u16) -> Self {
        let dir = engine::shared_dir();
        let d = dir.path().display();
        let conf = format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             \x20 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             {snippet}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).expect("write nginx.conf");
        engine::hand_over(dir.path());
        let image = engine::image_name(NGINX_IMAGE_VAR, DEFAULT_NGINX_IMAGE);
        let command = ["nginx", "-e", "stderr", "-g", "daemon off;", "-c"]
            .iter()
            .map(|s| s.to_string())
            .chain([path.display().to_string()])
            .collect::<Vec<_>>();
        let container =
            engine::run_in(&image, &command, &[(dir.path(), AccessMode::ReadWrite)]).await;
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if started.elapsed() > Duration::from_secs(15) {
                let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
                panic!("nginx does not listen on {port}; its log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            _container: container,
            dir,
            port,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// nginx's error log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

/// The nginx configuration docs/gateway.md gives ("The nginx configuration", verbatim), its
/// example addresses replaced: the gateway's edge listener, the upstream, nginx's port.
pub fn documented_config(edge: &str, upstream: &str, port: u16) -> String {
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/gateway.md"),
    )
    .expect("docs/gateway.md");
    let section = docs
        .split("### The nginx configuration")
        .nth(1)
        .expect("the docs' nginx section");
    let block = section
        .split("```nginx\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("an nginx block");
    for example in ["127.0.0.1:8091", "127.0.0.1:9000", "listen 8080;"] {
        assert!(
            block.contains(example),
            "the documented configuration no longer names {example}"
        );
    }
    block
        .replace("127.0.0.1:8091", edge)
        .replace("127.0.0.1:9000", upstream)
        .replace("listen 8080;", &format!("listen 127.0.0.1:{port};"))
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Reached {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reached {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The upstream: answers every request `200` with `{"user_id": <X-Authsession-User-Id>}` and
/// records it.
#[derive(Clone)]
pub struct Upstream {
    pub port: u16,
    reached: Arc<Mutex<Vec<Reached>>>,
}

impl Upstream {
    pub async fn start() -> Self {
        Self::serve(true).await
    }

    /// An upstream that keeps nothing (load runs): it answers as [`Upstream::start`]'s does.
    pub async fn start_quiet() -> Self {
        Self::serve(false).await
    }

    async fn serve(recording: bool) -> Self {
        let reached: Arc<Mutex<Vec<Reached>>> = Arc::default();
        let router = if recording {
            Router::new().fallback(record).with_state(reached.clone())
        } else {
            Router::new().fallback(answer)
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { port, reached }
    }

    pub fn reached(&self) -> Vec<Reached> {
        self.reached.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.reached.lock().unwrap().clear();
    }
}

async fn answer(headers: HeaderMap) -> axum::Json<serde_json::Value> {
    let user = headers
        .get("x-authsession-user-id")
        .and_then(|v| v.to_str().ok());
    axum::Json(serde_json::json!({"user_id": user}))
}

async fn record(
    State(reached): State<Arc<Mutex<Vec<Reached>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::Json<serde_json::Value> {
    let user = headers
        .get("x-authsession-user-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    reached.lock().unwrap().push(Reached {
        method: method.to_string(),
        uri: uri.to_string(),
        headers,
        body: body.to_vec(),
    });
    axum::Json(serde_json::json!({"user_id": user}))
}
