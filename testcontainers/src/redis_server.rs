//! A throwaway Redis on a free port, in a container on the host network: no persistence, removed
//! on drop, restartable on the same port for fault tests, freezable (the engine's pause).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::{self, AccessMode, Container};

pub struct RedisServer {
    port: u16,
    /// Behind a lock so a restart can change them (e.g. come back as a replica).
    args: Mutex<Vec<String>>,
    /// Behind a lock so fault tests can stop and restart a server other tasks are using; shared
    /// so a freeze can hold it across its pause.
    container: Mutex<Option<Arc<Container>>>,
    /// The server's working directory and log, mounted into the container at the same path.
    dir: tempfile::TempDir,
    /// The TLS settings and the directory holding the certificates (kept for restarts).
    tls: Option<(Tls, tempfile::TempDir)>,
}

/// An argument that stands for a port free when the server starts (each start attempt picks one;
/// a restart keeps it), e.g. `["--cluster-port", FREE_PORT]`.
pub const FREE_PORT: &str = "<free port>";

/// The value after `flag` in `args`, as a port.
fn flag_value(args: &[String], flag: &str) -> Option<u16> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1)?.parse().ok()
}

/// The TLS side of a server started with [`RedisServer::start_tls`].
#[derive(Debug, Clone)]
pub struct Tls {
    pub port: u16,
    /// PEM of the CA that signed the server certificate, for `AUTHSESSION_REDIS_TLS_CA_FILE`.
    pub ca_file: PathBuf,
}

impl RedisServer {
    /// Starts a plain server.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra `redis-server` arguments (e.g. `["--maxmemory", "1mb"]`).
    pub async fn start_with(args: &[&str]) -> Self {
        Self::start_full(args, None).await
    }

    async fn start_full(args: &[&str], tls: Option<(Tls, tempfile::TempDir)>) -> Self {
        let mut tls = tls;
        for _ in 0..5 {
            // A port argument is picked per attempt: one taken since it was picked fails the
            // attempt, and the next must not ask for it again.
            let args: Vec<String> = args
                .iter()
                .map(|a| match *a {
                    FREE_PORT => crate::free_port().to_string(),
                    a => a.to_owned(),
                })
                .collect();
            if let Some((tls, _)) = tls.as_mut() {
                tls.port = flag_value(&args, "--tls-port").unwrap_or(tls.port);
            }
            let server = Self {
                port: crate::free_port(),
                args: Mutex::new(args),
                container: Default::default(),
                dir: engine::shared_dir(),
                tls: tls.take(),
            };
            if server.launch().await {
                return server;
            }
            tls = server.take_tls();
        }
        panic!("redis-server did not start after 5 attempts");
    }

    fn take_tls(mut self) -> Option<(Tls, tempfile::TempDir)> {
        self.tls.take()
    }

    async fn launch(&self) -> bool {
        let mut command: Vec<String> = [
            "redis-server",
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &self.dir.path().display().to_string(),
            "--logfile",
            &self.log_path().display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        command.extend(self.args.lock().unwrap().iter().cloned());
        let mut dirs = vec![(self.dir.path(), AccessMode::ReadWrite)];
        // The TLS keys are configuration: the container reads them, never writes them.
        dirs.extend(
            self.tls
                .as_ref()
                .map(|(_, certs)| (certs.path(), AccessMode::ReadOnly)),
        );
        let container = Arc::new(engine::run(&command, &dirs).await);
        *self.container.lock().unwrap() = Some(container.clone());
        if engine::serves(&container, self.port).await && self.answers_as_itself().await {
            return true;
        }
        drop(container);
        self.stop();
        false
    }

    /// Whether the server answering on this port is this one (`CONFIG GET dir` names its
    /// directory): between picking a free port and the container binding it, another test's
    /// server (a cluster node) can take it, and would answer `PING` as well. Only a reply naming
    /// another directory says so; a refused `CONFIG` (a password, an ACL) is taken as ours.
    async fn answers_as_itself(&self) -> bool {
        let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)) else {
            return true;
        };
        let connect = client.get_multiplexed_async_connection();
        let Ok(Ok(mut conn)) = tokio::time::timeout(Duration::from_secs(5), connect).await else {
            return true;
        };
        let dir: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("dir")
            .query_async(&mut conn)
            .await;
        match dir {
            Ok(dir) => dir.get(1).map(String::as_str) == Some(&*self.dir.path().to_string_lossy()),
            Err(_) => true,
        }
    }

    /// A server that also listens with TLS (certificate for 127.0.0.1 and localhost, signed by
    /// a CA generated here); the plain port stays open for arranging and asserting.
    pub async fn start_tls() -> Self {
        let certs = engine::shared_dir();
        let ca_file = certs.path().join("ca.pem");
        let (cert_file, key_file) = (
            certs.path().join("server.pem"),
            certs.path().join("server.key"),
        );
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).expect("ca params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "authsession test CA");
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        let server_key = rcgen::KeyPair::generate().expect("server key");
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let cert = params.signed_by(&server_key, &issuer).expect("server cert");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, server_key.serialize_pem()).unwrap();
        engine::hand_over(certs.path());
        let args = [
            "--tls-port".to_owned(),
            FREE_PORT.to_owned(),
            "--tls-cert-file".to_owned(),
            cert_file.display().to_string(),
            "--tls-key-file".to_owned(),
            key_file.display().to_string(),
            "--tls-ca-cert-file".to_owned(),
            ca_file.display().to_string(),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let tls = Tls {
            port: 0, // the attempt that starts picks it
            ca_file,
        };
        Self::start_full(&args, Some((tls, certs))).await
    }

    /// The TLS listener, when started with [`RedisServer::start_tls`].
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref().map(|(tls, _)| tls)
    }

    /// Adds an ACL user that may only touch keys matching `key_patterns` (e.g. `prefix*`) and
    /// run `commands` (e.g. `+evalsha`).
    pub async fn create_acl_user(
        &self,
        name: &str,
        password: &str,
        key_patterns: &[&str],
        commands: &[&str],
    ) {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER")
            .arg(name)
            .arg("reset")
            .arg("on")
            .arg(format!(">{password}"));
        for pattern in key_patterns {
            cmd.arg(format!("~{pattern}"));
        }
        cmd.arg("-@all");
        for command in commands {
            cmd.arg(command);
        }
        let mut conn = self.connection().await;
        let () = cmd.query_async(&mut conn).await.expect("ACL SETUSER");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, the form `AUTHSESSION_REDIS_ADDR` takes.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// A direct connection for arranging and asserting on Redis state. Its response timeout is
    /// 10 s, not the client's default 500 ms: a loaded test machine (a cluster failing over, a
    /// keyspace dump) must not fail the arrangement.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(std::time::Duration::from_secs(10)));
        redis::Client::open(self.url())
            .expect("valid url")
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("connect to test redis")
    }

    /// `SCRIPT LOAD`s every authsession script, as a platform team pre-loading them would.
    pub async fn load_scripts(&self) {
        let mut conn = self.connection().await;
        for script in authsession::store::scripts::scripts().all() {
            let sha: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(&script.body)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(sha, script.sha1, "{}", script.name);
        }
    }

    /// Kills the server (the container is removed by force: SIGKILL, no shutdown save, like a
    /// crash).
    pub fn stop(&self) {
        let container = self.container.lock().unwrap().take();
        drop(container);
    }

    /// Freezes the server for `hold` (the engine's pause: every thread of the process stops, the
    /// sockets stay open and the kernel keeps accepting, as with a hung process), then thaws it.
    pub async fn freeze(&self, hold: Duration) {
        let container = self.container.lock().unwrap().clone();
        let container = container.expect("a running server");
        container.pause().await.expect("pause the container");
        tokio::time::sleep(hold).await;
        container.unpause().await.expect("unpause the container");
    }

    /// Starts the server again on the same port, empty, with `args` in place of the arguments it
    /// was started with.
    pub async fn restart_with(&self, args: &[&str]) {
        *self.args.lock().unwrap() = args.iter().map(|a| a.to_string()).collect();
        self.restart().await;
    }

    /// Starts the server again on the same port, empty (no persistence, empty script cache).
    pub async fn restart(&self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.launch().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("redis-server did not restart on port {}", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // `testcontainers` removes a container in its destructor through the current Tokio
        // runtime; a server dropped outside one gets a runtime for that moment.
        if tokio::runtime::Handle::try_current().is_ok() {
            self.stop();
        } else if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            let _guard = rt.enter();
            self.stop();
        }
    }
}
