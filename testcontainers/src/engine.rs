//! The container engine every Redis of the bench runs on, through the `testcontainers` crate.
//!
//! Every container uses the host's network (no bridge, no port mapping: each process binds a free
//! port on 127.0.0.1 exactly as a child process did), carries the label [`LABEL`] (so a run that
//! was killed before its destructors ran can be swept: `docker rm -f $(docker ps -aq --filter
//! label=authsession.testbench)`), and is removed when its handle drops, on a panic too.
//!
//! The image is `AUTHSESSION_TEST_REDIS_IMAGE` (default [`DEFAULT_REDIS_IMAGE`], built locally
//! from Debian's packages by `testcontainers/with-engine.sh`); an official `redis:7` works too,
//! its entry point runs `redis-server` and `redis-cli` as given.
//!
//! `testcontainers` 0.28 talks to the engine through bollard 0.21, which names API version 1.53
//! in every path and does not negotiate; Debian 12's engine (20.10) answers only up to 1.41 and
//! refuses anything newer. When the engine is older than the client, [`ensure`] puts a forwarder
//! in between (a Unix socket in a temp dir, served on a thread of its own) that rewrites the
//! version in each path to the engine's own, and points `DOCKER_HOST` at it. Every call the bench
//! makes (create, start, inspect, pause, unpause, logs, remove) has the same shape in both
//! versions.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

pub use testcontainers::core::AccessMode;
use testcontainers::core::{Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt};

/// The local image the README's test command builds (Debian 12's `redis-server`,
/// `redis-sentinel`, `redis-cli`).
pub const DEFAULT_REDIS_IMAGE: &str = "authsession-test/redis:bookworm";

/// Names the image every Redis container runs.
pub const REDIS_IMAGE_VAR: &str = "AUTHSESSION_TEST_REDIS_IMAGE";

/// The stand-in for the service image's distroless runtime base that the README's test command
/// builds (glibc, libgcc, CA certificates, user 65532).
pub const DEFAULT_RUNTIME_IMAGE: &str = "authsession-local/cc-debian12:nonroot";

/// Names the runtime base the image test builds the service image on (the `Dockerfile`'s
/// `RUNTIME_IMAGE`); `gcr.io/distroless/cc-debian12:nonroot` where a registry answers.
pub const RUNTIME_IMAGE_VAR: &str = "AUTHSESSION_TEST_RUNTIME_IMAGE";

/// The label on every container the bench starts.
pub const LABEL: &str = "authsession.testbench";

/// The label naming the test process that started a container: `with-engine.sh` sweeps only
/// containers whose process is gone, so two runs on one engine leave each other's alone.
pub const PID_LABEL: &str = "authsession.testbench.pid";

/// What the engine answers when it is not there, or the image is missing.
const SETUP_HINT: &str = "the test bench runs Redis in containers: run the tests through \
    `bash testcontainers/with-engine.sh cargo test` (the README's test command does), which \
    installs docker.io, starts dockerd and builds the local Redis image";

/// A running container, removed when dropped.
pub type Container = ContainerAsync<GenericImage>;

/// The image `var` names, or `default`.
pub fn image_name(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// `repository[:tag]` as (repository, tag).
fn split_name(name: &str) -> (String, String) {
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), tag.to_owned()),
        _ => (name.to_owned(), "latest".to_owned()),
    }
}

/// Starts `command` (e.g. `["redis-server", "--port", "7001"]`) in a Redis container on the host
/// network as [`container_user`], with each of `dirs` mounted at its own path (so file paths mean
/// the same inside and out): its working directory read-write, configuration it only reads (TLS
/// keys) read-only. Returns once the engine started
/// it; whether the process serves is the caller's check.
pub async fn run(command: &[String], dirs: &[(&Path, AccessMode)]) -> Container {
    run_in(
        &image_name(REDIS_IMAGE_VAR, DEFAULT_REDIS_IMAGE),
        command,
        dirs,
    )
    .await
}

/// [`run`] in another image of the bench (nginx's).
pub async fn run_in(image: &str, command: &[String], dirs: &[(&Path, AccessMode)]) -> Container {
    let (repo, tag) = split_name(image);
    let (uid, gid) = container_user();
    let mut request = host_container(repo, tag, "redis")
        .with_cmd(command.iter().cloned())
        .with_user(format!("{uid}:{gid}"));
    for (dir, mode) in dirs {
        let path = dir.display().to_string();
        request = request.with_mount(Mount::bind_mount(path.clone(), path).with_access_mode(*mode));
    }
    request
        .start()
        .await
        .unwrap_or_else(|e| panic!("cannot start a container of {image} ({e}); {SETUP_HINT}"))
}

/// Starts `image` (`repository:tag`) with its own entry point and `env`, on the host network.
pub async fn run_image(image: &str, env: &[(&str, String)]) -> Container {
    let (repo, tag) = split_name(image);
    let mut request = host_container(repo, tag, "service");
    for (name, value) in env {
        request = request.with_env_var(*name, value.clone());
    }
    request
        .start()
        .await
        .unwrap_or_else(|e| panic!("cannot start {image} ({e}); {SETUP_HINT}"))
}

/// A container of `repo:tag` on the host network, labelled, not waited for.
fn host_container(repo: String, tag: String, role: &str) -> ContainerRequest<GenericImage> {
    ensure();
    GenericImage::new(repo, tag)
        .with_wait_for(WaitFor::Nothing)
        .with_network("host")
        .with_label(LABEL, role)
        .with_label(PID_LABEL, std::process::id().to_string())
        .with_startup_timeout(Duration::from_secs(30))
}

/// Runs `command` to completion in a Redis container on the host network: (exit code, stdout
/// and stderr).
pub async fn run_to_end(command: &[String]) -> (i64, String) {
    let container = run(command, &[]).await;
    let started = std::time::Instant::now();
    let code = loop {
        if let Some(code) = container.exit_code().await.expect("inspect the container") {
            break code;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{command:?} still running after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut output = container.stdout_to_vec().await.unwrap_or_default();
    output.extend(container.stderr_to_vec().await.unwrap_or_default());
    (code, String::from_utf8_lossy(&output).into_owned())
}

/// Whether the Redis (or Sentinel) in `container` answers `PING` on `port` within 10 s; `false`
/// as soon as its process has exited (most likely the port was taken since it was picked).
pub async fn serves(container: &Container, port: u16) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if pings(port).await {
            return true;
        }
        if started.elapsed() > Duration::from_millis(300)
            && !container.is_running().await.unwrap_or(false)
        {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// One `PING` on a fresh connection, answered `+PONG` within a second.
async fn pings(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut buf)).await,
        Ok(Ok(_))
    ) && &buf == b"+PONG\r\n"
}

/// The uid and gid every Redis container runs as when the bench runs as root: no account on the
/// host has it, so no other local user's process owns, or may enter, a bench directory (issue 36,
/// finding 1: a world-writable directory let `nobody` replace a Sentinel's configuration, which a
/// root container then ran). A bench run as another user runs its containers as that user.
pub const BENCH_UID: u32 = 64_999;

/// `uid:gid` the bench's Redis containers run as.
pub fn container_user() -> (u32, u32) {
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    if uid.is_root() {
        (BENCH_UID, BENCH_UID)
    } else {
        (uid.as_raw(), gid.as_raw())
    }
}

/// Gives `path` (a file, or a directory and what it holds) to the containers' user: the bench
/// writes configuration as itself, the container must read or rewrite it.
pub fn hand_over(path: &Path) {
    let (uid, gid) = container_user();
    let mut pending = vec![path.to_owned()];
    while let Some(path) = pending.pop() {
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read the bench directory") {
                pending.push(entry.expect("a directory entry").path());
            }
        }
    }
}

/// A directory for a container's files: mode 0700 and owned by the user the containers run as,
/// so no other local user can list, replace or add a file in it.
pub fn shared_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    // (`tempdir` leaves the mode to the umask: 0755 under the usual 022.)
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod the container's directory");
    hand_over(dir.path());
    dir
}

/// Makes sure `testcontainers` can talk to the engine: once per process, a forwarder when the
/// engine's API is older than the client's.
pub fn ensure() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let engine = engine_socket();
        let Some(version) = version_shim::engine_api_version(&engine) else {
            panic!(
                "no container engine answers on {}; {SETUP_HINT}",
                engine.display()
            );
        };
        if version_shim::older_than_client(&version) {
            let socket = version_shim::start(engine, version);
            // Set once, before the first container exists; `testcontainers` reads it when it
            // first connects.
            std::env::set_var("DOCKER_HOST", format!("unix://{}", socket.display()));
        }
    });
}

/// The engine's Unix socket: `DOCKER_HOST` when it names one, else Docker's default.
fn engine_socket() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(host) => match host.strip_prefix("unix://") {
            Some(path) => PathBuf::from(path),
            None => panic!("DOCKER_HOST={host}: the bench talks to a local engine's Unix socket"),
        },
        Err(_) => PathBuf::from("/var/run/docker.sock"),
    }
}

mod version_shim {
    use std::convert::Infallible;
    use std::path::{Path, PathBuf};

    use http_body_util::{BodyExt, Empty};
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use tokio::net::{UnixListener, UnixStream};

    /// The API version bollard 0.21 (under `testcontainers` 0.28) puts in every path.
    const CLIENT_API: (u32, u32) = (1, 53);

    fn parse(version: &str) -> Option<(u32, u32)> {
        let (major, minor) = version.split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    }

    pub fn older_than_client(version: &str) -> bool {
        parse(version).is_some_and(|v| v < CLIENT_API)
    }

    /// The engine's `ApiVersion` from `GET /version` (unversioned: every engine answers it).
    pub fn engine_api_version(socket: &Path) -> Option<String> {
        let socket = socket.to_owned();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let stream = UnixStream::connect(&socket).await.ok()?;
                let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .ok()?;
                tokio::spawn(conn);
                let request = Request::get("/version")
                    .header("host", "docker")
                    .body(Empty::<Bytes>::new())
                    .ok()?;
                let body = send.send_request(request).await.ok()?.into_body();
                let body = body.collect().await.ok()?.to_bytes();
                let version: serde_json::Value = serde_json::from_slice(&body).ok()?;
                version["ApiVersion"].as_str().map(str::to_owned)
            })
        })
        .join()
        .ok()?
    }

    /// Each test process's forwarder listens on `<temp>/authsession-engine-<pid>/engine.sock`:
    /// the socket is the whole engine API, so it sits in a directory of mode 0700 and is itself
    /// 0600, whatever the umask (issue 36, finding 1).
    const DIR_PREFIX: &str = "authsession-engine-";

    /// Removes the forwarder directories of processes that have exited (they outlive their
    /// process), and sockets of the earlier layout (`authsession-engine-<pid>.sock`).
    fn sweep_stale_sockets() {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(DIR_PREFIX) else {
                continue;
            };
            let pid = rest.strip_suffix(".sock").unwrap_or(rest);
            if !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Serves a forwarder on a new socket, on a thread of its own (test runtimes come and go);
    /// returns the socket's path.
    pub fn start(engine: PathBuf, version: String) -> PathBuf {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        sweep_stale_sockets();
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .expect("the forwarder's private directory");
        let socket = dir.join("engine.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind the shim");
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the forwarder's socket");
        listener.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the shim's runtime");
            rt.block_on(async {
                let listener = UnixListener::from_std(listener).expect("tokio listener");
                serve(listener, engine, version).await
            });
        });
        socket
    }

    async fn serve(listener: UnixListener, engine: PathBuf, version: String) {
        let from = format!("/v{}.{}/", CLIENT_API.0, CLIENT_API.1);
        let to = format!("/v{version}/");
        while let Ok((client, _)) = listener.accept().await {
            let (engine, from, to) = (engine.clone(), from.clone(), to.clone());
            tokio::spawn(async move {
                let Ok(upstream) = UnixStream::connect(&engine).await else {
                    return;
                };
                let Ok((send, conn)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await
                else {
                    return;
                };
                tokio::spawn(conn);
                // hyper serves a connection's requests one at a time, so one upstream
                // connection per client connection keeps their order.
                let send = std::sync::Arc::new(tokio::sync::Mutex::new(send));
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (send, from, to) = (send.clone(), from.clone(), to.clone());
                    async move { Ok::<_, Infallible>(forward(&send, request, &from, &to).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(client), service)
                    .await;
            });
        }
    }

    type Upstream =
        std::sync::Arc<tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Incoming>>>;

    async fn forward(
        send: &Upstream,
        mut request: Request<Incoming>,
        from: &str,
        to: &str,
    ) -> Response<http_body_util::Either<Incoming, String>> {
        let path = request.uri().to_string();
        if let Some(rest) = path.strip_prefix(from) {
            *request.uri_mut() = format!("{to}{rest}").parse().expect("the same path");
        }
        let mut send = send.lock().await;
        // The previous response's body must be read through before the next request goes out.
        let sent = match send.ready().await {
            Ok(()) => send.send_request(request).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(response) => response.map(http_body_util::Either::Left),
            Err(e) => Response::builder()
                .status(502)
                .body(http_body_util::Either::Right(format!(
                    "{{\"message\":\"engine forwarder: {e}\"}}"
                )))
                .expect("a response"),
        }
    }
}
