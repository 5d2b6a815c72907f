//! The reference client (`authsession client`): logs in with an e-mail code under a fresh
//! Ed25519 key, keeps the key and its `device_session_id` in a file only its owner may read, and
//! signs requests (RFC 9421, or DPoP with `--dpop`) the way the gateway verifies them, with the
//! gateway's own code (`gateway::edge`). Neither the key nor the code appears in any output.

use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Error;
use crate::gateway::edge::{dpop, signature, Request, Target};
use crate::http::public::{CONFIRM_EMAIL_CODE, SEND_EMAIL_CODE};

/// What the session file holds.
#[derive(Serialize, Deserialize)]
struct Saved {
    base_url: String,
    device_session_id: String,
    /// The Ed25519 private key's 32-byte seed, base64url.
    private_key: String,
}

fn usage(what: impl Into<String>) -> Error {
    Error::Usage(what.into())
}

/// `client login`: send, read the code from `input`, confirm with a new key, save the session.
pub async fn login(
    base_url: &str,
    email: &str,
    file: &Path,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> Result<bool, Error> {
    let client = reqwest::Client::new();
    let base = base_url.trim_end_matches('/');
    let sent = post(
        &client,
        &format!("{base}{SEND_EMAIL_CODE}"),
        json!({"email": email}),
    )
    .await?;
    let challenge_id = sent["challenge_id"]
        .as_str()
        .ok_or_else(|| usage("send-email-code answered no challenge_id"))?
        .to_owned();
    writeln!(
        out,
        "A code was sent (challenge {challenge_id}); type it and press Enter:"
    )?;
    out.flush()?;
    let mut code = String::new();
    input.read_line(&mut code)?;
    let key = SigningKey::from_bytes(&rand::random());
    let confirmed = post(
        &client,
        &format!("{base}{CONFIRM_EMAIL_CODE}"),
        json!({"challenge_id": challenge_id, "code": code.trim(), "client_public_key": STANDARD.encode(key.verifying_key().as_bytes())}),
    )
    .await?;
    let device_session_id = confirmed["device_session_id"]
        .as_str()
        .ok_or_else(|| usage("confirm-email-code answered no device_session_id"))?;
    let saved = Saved {
        base_url: base.to_owned(),
        device_session_id: device_session_id.to_owned(),
        private_key: URL_SAFE_NO_PAD.encode(key.to_bytes()),
    };
    // Created 0600 before anything is written; a file already there is replaced by a new one.
    let _ = std::fs::remove_file(file);
    let mut saved_file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)?;
    saved_file.write_all(
        serde_json::to_string_pretty(&saved)
            .map_err(|e| usage(e.to_string()))?
            .as_bytes(),
    )?;
    writeln!(
        out,
        "logged in: device session {device_session_id}, saved to {}",
        file.display()
    )?;
    Ok(true)
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, Error> {
    let answer = client
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| usage(format!("{url}: {}", e.without_url())))?;
    let status = answer.status();
    let body: serde_json::Value = answer.json().await.unwrap_or_default();
    if !status.is_success() {
        return Err(usage(format!(
            "{url}: {status} {}",
            body["error"]["code"].as_str().unwrap_or("")
        )));
    }
    Ok(body)
}

/// `client request`: one signed request with the saved session; prints the status to `err`
/// and the body to `out`; healthy when the answer is a 2xx.
pub async fn request(
    file: &Path,
    method: &str,
    url: &str,
    data: Option<&str>,
    use_dpop: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<bool, Error> {
    let saved: Saved = serde_json::from_slice(&std::fs::read(file)?).map_err(|_| {
        usage(format!(
            "{}: not a session file (run `authsession client login`)",
            file.display()
        ))
    })?;
    let seed: [u8; 32] = URL_SAFE_NO_PAD
        .decode(&saved.private_key)
        .ok()
        .and_then(|seed| seed.try_into().ok())
        .ok_or_else(|| usage(format!("{}: the key is damaged", file.display())))?;
    let key = SigningKey::from_bytes(&seed);
    let method = method.to_ascii_uppercase();
    let url = url::Url::parse(url).map_err(|e| usage(format!("the URL: {e}")))?;
    let target = Target::from_url(&url).map_err(|_| usage("the URL cannot be signed"))?;
    let mut fields = http::HeaderMap::new();
    let body = data.map(|d| d.as_bytes().to_vec());
    if body.is_some() {
        fields.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let nonce = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
    if use_dpop {
        let request = Request {
            method: &method,
            target: &target,
            fields: &fields,
            has_body: body.is_some(),
        };
        let proof = dpop::prove(&request, &key, &saved.device_session_id, now, &nonce);
        fields.insert(
            http::header::AUTHORIZATION,
            header(&format!("DPoP {}", saved.device_session_id))?,
        );
        fields.insert("dpop", header(&proof)?);
    } else {
        let signer = signature::Signer {
            key: &key,
            keyid: &saved.device_session_id,
        };
        signer
            .sign_fields(
                (&method, &target),
                &mut fields,
                body.as_deref(),
                (now, &nonce),
                &[],
            )
            .map_err(|_| usage("the request cannot be signed"))?;
    }
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| usage("the method"))?;
    let mut outgoing = reqwest::Client::new().request(method, url).headers(fields);
    if let Some(body) = body {
        outgoing = outgoing.body(body);
    }
    let answer = outgoing
        .send()
        .await
        .map_err(|e| usage(e.without_url().to_string()))?;
    let status = answer.status();
    writeln!(err, "{status}")?;
    let bytes = answer.bytes().await.map_err(|e| usage(e.to_string()))?;
    out.write_all(&bytes)?;
    Ok(status.is_success())
}

fn header(value: &str) -> Result<http::HeaderValue, Error> {
    http::HeaderValue::from_str(value).map_err(|_| usage("a field value that is not visible ASCII"))
}
