//! One full login over HTTP (send a code, read it from the mail fake, confirm it), the way every
//! test, load and benchmark drives the public surface: one copy, with each step's latency and, on
//! failure, which step failed and how.

use std::time::{Duration, Instant};

use authsession::http::public::{CONFIRM_EMAIL_CODE, SEND_EMAIL_CODE};
use base64::Engine;
use serde_json::{json, Value};

use crate::FakeMailService;

/// A random Ed25519-sized public key, standard base64.
pub fn public_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// An address no other login uses.
pub fn unique_email() -> String {
    format!("user{:x}@example.com", rand::random::<u64>())
}

/// A login that succeeded.
#[derive(Debug, Clone)]
pub struct Login {
    pub challenge_id: String,
    /// The code the mail fake received (tests check it never leaks).
    pub code: String,
    pub device_session_id: String,
    pub send_latency: Duration,
    pub confirm_latency: Duration,
}

/// The step a login stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Send,
    Confirm,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Send => "send",
            Step::Confirm => "confirm",
        }
    }
}

/// Why a login did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginFailure {
    /// The service answered something other than 200 (`code`: the envelope's error code).
    Refused {
        step: Step,
        status: u16,
        code: String,
        latency: Duration,
    },
    /// No answer: connection refused or reset.
    Transport { step: Step, error: String },
    /// No answer within the client's `deadline`.
    Hung { step: Step },
    /// The send answered 200 but the mail fake received no code for its challenge.
    NoDelivery { challenge_id: String },
}

impl std::fmt::Display for LoginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginFailure::Refused {
                step, status, code, ..
            } => write!(f, "{} {status} {code}", step.as_str()),
            LoginFailure::Transport { step, error } => {
                write!(f, "{} transport {error}", step.as_str())
            }
            LoginFailure::Hung { step } => write!(f, "{} hung", step.as_str()),
            LoginFailure::NoDelivery { .. } => f.write_str("no delivery"),
        }
    }
}

/// A client of one service's public surface whose mail goes to `mail`.
#[derive(Clone)]
pub struct LoginClient<'a> {
    pub http: &'a reqwest::Client,
    /// `http://host:port` of the public listener.
    pub public: String,
    pub mail: &'a FakeMailService,
    /// Longest one step may take before it counts as a transport failure.
    pub deadline: Duration,
}

impl LoginClient<'_> {
    async fn post(
        &self,
        step: Step,
        path: &str,
        body: Value,
    ) -> Result<(u16, Value, Duration), LoginFailure> {
        let started = Instant::now();
        let request = self
            .http
            .post(format!("{}{path}", self.public))
            .json(&body)
            .send();
        let response = tokio::time::timeout(self.deadline, request)
            .await
            .map_err(|_| LoginFailure::Hung { step })?
            .map_err(|e| LoginFailure::Transport {
                step,
                error: e.to_string(),
            })?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body, started.elapsed()))
    }

    fn refused(step: Step, status: u16, body: &Value, latency: Duration) -> LoginFailure {
        LoginFailure::Refused {
            step,
            status,
            code: body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            latency,
        }
    }

    /// Sends a code to `email`; the challenge id and the code the mail fake received.
    pub async fn send_code(&self, email: &str) -> Result<(String, String, Duration), LoginFailure> {
        let (status, body, latency) = self
            .post(Step::Send, SEND_EMAIL_CODE, json!({ "email": email }))
            .await?;
        let Some(challenge_id) = body["challenge_id"].as_str().filter(|_| status == 200) else {
            return Err(Self::refused(Step::Send, status, &body, latency));
        };
        let challenge_id = challenge_id.to_owned();
        match self.mail.take_code(&challenge_id) {
            Some(code) => Ok((challenge_id, code, latency)),
            None => Err(LoginFailure::NoDelivery { challenge_id }),
        }
    }

    /// A full login of `email` with a fresh device key.
    pub async fn login(&self, email: &str) -> Result<Login, LoginFailure> {
        let (challenge_id, code, send_latency) = self.send_code(email).await?;
        let body = json!({
            "challenge_id": challenge_id, "code": &code, "client_public_key": public_key(),
        });
        let (status, reply, confirm_latency) =
            self.post(Step::Confirm, CONFIRM_EMAIL_CODE, body).await?;
        match reply["device_session_id"]
            .as_str()
            .filter(|_| status == 200)
        {
            Some(id) => Ok(Login {
                challenge_id,
                code,
                device_session_id: id.to_owned(),
                send_latency,
                confirm_latency,
            }),
            None => Err(Self::refused(
                Step::Confirm,
                status,
                &reply,
                confirm_latency,
            )),
        }
    }
}
