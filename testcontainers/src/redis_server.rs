//! A throwaway `redis-server` on a free port: no persistence, killed on drop, restartable on the
//! same port for fault tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INSTALL_HINT: &str =
    "redis-server (7.0 or newer) is not installed: run `apt-get install -y redis-server` \
                            (the README's test command does this for you)";

pub struct RedisServer {
    port: u16,
    /// Behind a lock so a restart can change them (e.g. come back as a replica).
    args: std::sync::Mutex<Vec<String>>,
    /// Behind a lock so fault tests can stop and restart a server other tasks are using.
    child: std::sync::Mutex<Option<Child>>,
    dir: tempfile::TempDir,
    /// The TLS settings and the directory holding the certificates (kept for restarts).
    tls: Option<(Tls, tempfile::TempDir)>,
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
        let mut dir = tempfile::tempdir().expect("temp dir");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        for _ in 0..5 {
            let mut server = Self {
                port: crate::free_port(),
                args: std::sync::Mutex::new(args.clone()),
                child: Default::default(),
                dir,
                tls: None,
            };
            if server.launch().await {
                return server;
            }
            dir = std::mem::replace(&mut server.dir, tempfile::tempdir().expect("temp dir"));
        }
        panic!("redis-server did not start after 5 attempts (see its log in the temp dir)");
    }

    async fn launch(&self) -> bool {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args(self.args.lock().unwrap().iter())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(e) => panic!("cannot run redis-server: {e}"),
        };
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.pings().await {
                return true;
            }
            let exited = matches!(
                self.child.lock().unwrap().as_mut().map(|c| c.try_wait()),
                Some(Ok(Some(_)))
            );
            if exited {
                *self.child.lock().unwrap() = None;
                return false; // exited: most likely the port was taken meanwhile
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop();
        false
    }

    async fn pings(&self) -> bool {
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
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

    /// A server that also listens with TLS (certificate for 127.0.0.1 and localhost, signed by
    /// a CA generated here); the plain port stays open for arranging and asserting.
    pub async fn start_tls() -> Self {
        let certs = tempfile::tempdir().expect("temp dir");
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
        let tls_port = crate::free_port();
        let args = [
            "--tls-port".to_owned(),
            tls_port.to_string(),
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
        let mut server = Self::start_with(&args).await;
        server.tls = Some((
            Tls {
                port: tls_port,
                ca_file,
            },
            certs,
        ));
        server
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

    /// Kills the server (SIGKILL: no shutdown save, like a crash).
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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
        self.stop();
    }
}
