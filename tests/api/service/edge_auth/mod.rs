//! Requests authenticated at the edge (issue 38), end to end through real parts: nginx (Debian's,
//! in a container) running the configuration of docs/gateway.md verbatim, `authsession-gateway
//! --edge-listen` in front of Redis, the service, and an upstream that records what reached it.
//! Sessions come from the reference client (`authsession client login`).

mod acl;
mod interop;
mod sessions;
mod signatures;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authsession::gateway::edge::{dpop, signature, Request, Target};
use authsession_testbench::edge::{documented_config, Nginx, Upstream};
use authsession_testbench::{free_port, unique_email, ServiceProcess};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::SigningKey;
use reqwest::header::{HeaderMap, HeaderValue};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::helpers::{harness, Harness};

/// One gateway with its edge listener and the nginx in front of it.
pub struct Front {
    pub gateway: ServiceProcess,
    pub nginx: Nginx,
}

/// The whole deployment: service, Redis, upstream, and one front per gateway instance.
pub struct Edge {
    pub h: Harness,
    pub upstream: Upstream,
    pub fronts: Vec<Front>,
    dir: tempfile::TempDir,
}

impl Edge {
    pub async fn start(gateways: usize, overrides: &[(&str, &str)]) -> Self {
        let h = harness(overrides).await;
        let upstream = Upstream::start().await;
        let mut fronts = Vec::new();
        for _ in 0..gateways {
            fronts.push(front(&upstream, &h.app.cli_env()).await);
        }
        Self {
            h,
            upstream,
            fronts,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// nginx's URL for `path` (the first front).
    pub fn url(&self, path: &str) -> String {
        self.fronts[0].nginx.url(path)
    }

    /// A login through the reference client: its session file, as a [`Session`].
    pub async fn login(&self) -> Session {
        self.login_as(&unique_email()).await
    }

    /// [`Edge::login`] as `email`.
    pub async fn login_as(&self, email: &str) -> Session {
        let file = self
            .dir
            .path()
            .join(format!("session-{:x}.json", rand::random::<u32>()));
        client_login(&self.h, &file, email).await;
        let session = Session::from_file(&file);
        let reply = self
            .h
            .app
            .get_internal(&format!("/api/v1/internal/sessions/{}", session.id))
            .await;
        Session {
            user_id: reply.body["user_id"].as_str().unwrap().to_owned(),
            ..session
        }
    }
}

/// A gateway with `--edge-listen`, its environment `env`, and nginx configured for it.
pub async fn front(upstream: &Upstream, env: &[(String, String)]) -> Front {
    let (edge_port, nginx_port, lookup_port) = (free_port(), free_port(), free_port());
    let binary = Path::new(env!("CARGO_BIN_EXE_authsession-gateway"));
    let (edge, lookup, up) = (
        format!("127.0.0.1:{edge_port}"),
        format!("127.0.0.1:{lookup_port}"),
        format!("http://127.0.0.1:{}", upstream.port),
    );
    let args = [
        "--listen",
        &lookup,
        "--edge-listen",
        &edge,
        "--upstream",
        &up,
    ];
    let gateway = ServiceProcess::spawn(binary, &args, env);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&edge).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the gateway's edge never listened: {:?}",
            gateway.lines()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let config = documented_config(&edge, &format!("127.0.0.1:{}", upstream.port), nginx_port);
    let nginx = Nginx::start(&config, nginx_port).await;
    Front { gateway, nginx }
}

/// `authsession client login`, the code typed from the mail fake.
async fn client_login(h: &Harness, file: &Path, email: &str) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_authsession"))
        .args([
            "client",
            "--session-file",
            file.to_str().unwrap(),
            "login",
            "--base-url",
        ])
        .arg(h.app.public_url(""))
        .args(["--email", email])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let prompt = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let challenge = prompt
        .split("(challenge ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("{prompt}"));
    let code = h.mail.code_for(challenge).expect("the code was mailed");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{code}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let mut rest = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push(line);
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "client login failed: {rest:?}");
    assert!(
        !rest.iter().any(|l| l.contains(&code)),
        "the code was printed: {rest:?}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the session file's mode");
}

/// `authsession client request ...`: (exit success, stdout, stderr). Awaited, not blocking: the
/// upstream fake answers on this test's runtime.
pub async fn client_request(file: &Path, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_authsession"))
        .args([
            "client",
            "--session-file",
            file.to_str().unwrap(),
            "request",
        ])
        .args(args)
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A session the reference client saved: its id, user and key.
#[derive(Clone)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub file: PathBuf,
    key: SigningKey,
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn nonce() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

impl Session {
    fn from_file(file: &Path) -> Self {
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let seed: [u8; 32] = URL_SAFE_NO_PAD
            .decode(saved["private_key"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        Self {
            id: saved["device_session_id"].as_str().unwrap().to_owned(),
            user_id: String::new(),
            file: file.to_owned(),
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The fields signing `method url` (and `body`) as `keyid`, created at `created`, covering
    /// `extra` fields too (which `fields` must hold).
    pub fn sign_as(
        &self,
        keyid: &str,
        (method, url, body): (&str, &str, Option<&[u8]>),
        (created, nonce): (i64, &str),
        mut fields: HeaderMap,
        extra: &[&str],
    ) -> HeaderMap {
        let target = Target::from_url(&url::Url::parse(url).unwrap()).unwrap();
        let signer = signature::Signer {
            key: &self.key,
            keyid,
        };
        signer
            .sign_fields(
                (method, &target),
                &mut fields,
                body,
                (created, nonce),
                extra,
            )
            .unwrap();
        fields
    }

    /// Signed now, with a fresh nonce.
    pub fn sign(&self, method: &str, url: &str, body: Option<&[u8]>) -> HeaderMap {
        self.sign_as(
            &self.id,
            (method, url, body),
            (now(), &nonce()),
            HeaderMap::new(),
            &[],
        )
    }

    /// A DPoP proof for `method url`.
    pub fn dpop(&self, method: &str, url: &str) -> HeaderMap {
        let target = Target::from_url(&url::Url::parse(url).unwrap()).unwrap();
        let empty = HeaderMap::new();
        let request = Request {
            method,
            target: &target,
            fields: &empty,
            has_body: false,
        };
        let mut fields = HeaderMap::new();
        fields.insert(
            "authorization",
            HeaderValue::from_str(&format!("DPoP {}", self.id)).unwrap(),
        );
        fields.insert(
            "dpop",
            HeaderValue::from_str(&dpop::prove(&request, &self.key, &self.id, now(), &nonce()))
                .unwrap(),
        );
        fields
    }
}

/// Signs `GET url` as `session` and sends it until the answer is not `200` (a revoke's event
/// may take a moment to reach the gateway), for at most 5 s: the first refusal.
pub async fn refused(url: &str, session: &Session) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = send("GET", url, session.sign("GET", url, None), None).await;
        if answer.status != 200 || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An answer through nginx: status, the 401's reason, the body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub reason: Option<String>,
    pub body: String,
}

pub async fn send(method: &str, url: &str, fields: HeaderMap, body: Option<&[u8]>) -> Answer {
    let mut request = reqwest::Client::new()
        .request(method.parse().unwrap(), url)
        .headers(fields);
    if let Some(body) = body {
        request = request.body(body.to_vec());
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    let reason = answer
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("reason=\"").nth(1))
        .and_then(|v| v.split('"').next())
        .map(str::to_owned);
    Answer {
        status,
        reason,
        body: answer.text().await.unwrap_or_default(),
    }
}
