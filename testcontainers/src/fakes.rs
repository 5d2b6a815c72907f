//! Real HTTP fakes of the user and mail services: they record every call and can be told to
//! answer a status, a malformed body, or hang.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

/// How a fake answers the next calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// The real service's contract.
    Normal,
    /// This status with an empty JSON object.
    Status(u16),
    /// 200 with a body that is not JSON.
    Malformed,
    /// Never answers (until the client gives up).
    Hang,
    /// The contract's answer, decided when the request arrives, but sent `by` later for paths
    /// starting with `path` (a slow dependency whose answer was already settled).
    Delayed { path: String, by: Duration },
    /// Like `Delayed`, by a uniformly random time in `from..to` per request (a dependency whose
    /// latency varies, as real ones do).
    Jittered {
        path: String,
        from: Duration,
        to: Duration,
    },
}

/// One request a fake received.
#[derive(Debug, Clone)]
pub struct RecordedCall {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

#[derive(Default)]
struct Users {
    by_email: HashMap<String, String>,
    blocked_emails: HashSet<String>,
    blocked_users: HashSet<String>,
}

struct Shared {
    calls: Mutex<Vec<RecordedCall>>,
    /// Codes by challenge id, so a load generator can look one up in O(1).
    codes: Mutex<HashMap<String, String>>,
    /// Off under load, where keeping every call would only grow memory.
    record_calls: std::sync::atomic::AtomicBool,
    behaviour: Mutex<Behaviour>,
    users: Mutex<Users>,
}

type Answer = fn(&Shared, &Method, &str, &Value) -> (StatusCode, Value);

async fn start(answer: Answer) -> (SocketAddr, Arc<Shared>) {
    let shared = Arc::new(Shared {
        calls: Mutex::new(Vec::new()),
        codes: Mutex::new(HashMap::new()),
        record_calls: std::sync::atomic::AtomicBool::new(true),
        behaviour: Mutex::new(Behaviour::Normal),
        users: Mutex::new(Users::default()),
    });
    let handler = move |State(shared): State<Arc<Shared>>,
                        method: Method,
                        uri: Uri,
                        headers: HeaderMap,
                        body: Bytes| async move {
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let call = RecordedCall {
            method: method.to_string(),
            path: uri.path().to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        v.to_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            body: body.clone(),
        };
        if let (Some(id), Some(code)) = (body["challenge_id"].as_str(), body["code"].as_str()) {
            shared
                .codes
                .lock()
                .unwrap()
                .insert(id.to_owned(), code.to_owned());
        }
        if shared
            .record_calls
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            shared.calls.lock().unwrap().push(call);
        }
        let behaviour = shared.behaviour.lock().unwrap().clone();
        let response: Response = match behaviour {
            Behaviour::Normal => {
                let (status, reply) = answer(&shared, &method, uri.path(), &body);
                (status, axum::Json(reply)).into_response()
            }
            Behaviour::Status(code) => (
                StatusCode::from_u16(code).expect("valid status"),
                axum::Json(json!({})),
            )
                .into_response(),
            Behaviour::Malformed => (StatusCode::OK, "{not json").into_response(),
            Behaviour::Delayed { path, by } => {
                let (status, reply) = answer(&shared, &method, uri.path(), &body);
                if uri.path().starts_with(&path) {
                    tokio::time::sleep(by).await;
                }
                (status, axum::Json(reply)).into_response()
            }
            Behaviour::Jittered { path, from, to } => {
                let (status, reply) = answer(&shared, &method, uri.path(), &body);
                if uri.path().starts_with(&path) {
                    let span = to.saturating_sub(from).as_secs_f64();
                    tokio::time::sleep(
                        from + Duration::from_secs_f64(rand::random::<f64>() * span),
                    )
                    .await;
                }
                (status, axum::Json(reply)).into_response()
            }
            Behaviour::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                StatusCode::GATEWAY_TIMEOUT.into_response()
            }
        };
        response
    };
    let router = Router::new().fallback(handler).with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, shared)
}

macro_rules! common_methods {
    () => {
        /// `http://127.0.0.1:<port>`, for `AUTHSESSION_*_BASE_URL`.
        pub fn base_url(&self) -> String {
            format!("http://{}", self.addr)
        }

        pub fn calls(&self) -> Vec<RecordedCall> {
            self.shared.calls.lock().unwrap().clone()
        }

        pub fn set_behaviour(&self, behaviour: Behaviour) {
            *self.shared.behaviour.lock().unwrap() = behaviour;
        }

        pub fn clear_calls(&self) {
            self.shared.calls.lock().unwrap().clear();
        }

        /// Stops keeping calls (long runs); mail codes stay available to `take_code`.
        pub fn stop_recording(&self) {
            self.shared
                .record_calls
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
    };
}

/// The user service of SPEC section 7, in memory.
pub struct FakeUserService {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeUserService {
    pub async fn start() -> Self {
        let (addr, shared) = start(answer_user).await;
        Self { addr, shared }
    }

    common_methods!();

    pub fn block_email(&self, email: &str) {
        self.shared
            .users
            .lock()
            .unwrap()
            .blocked_emails
            .insert(email.to_owned());
    }

    /// Adds a user and returns its id.
    pub fn add_user(&self, email: &str) -> String {
        let mut users = self.shared.users.lock().unwrap();
        let next = users.by_email.len() + 1;
        users
            .by_email
            .entry(email.to_owned())
            .or_insert_with(|| format!("u-{next}"))
            .clone()
    }

    pub fn is_blocked(&self, user_id: &str) -> bool {
        self.shared
            .users
            .lock()
            .unwrap()
            .blocked_users
            .contains(user_id)
    }
}

fn answer_user(shared: &Shared, method: &Method, path: &str, body: &Value) -> (StatusCode, Value) {
    let mut users = shared.users.lock().unwrap();
    let email = body["email"].as_str().unwrap_or_default().to_owned();
    let blocked = |users: &Users, email: &str| {
        users.blocked_emails.contains(email)
            || users
                .by_email
                .get(email)
                .is_some_and(|u| users.blocked_users.contains(u))
    };
    let rest = path
        .strip_prefix("/api/v1/internal/users/")
        .unwrap_or_default();
    match (method.as_str(), rest) {
        ("POST", "resolve-by-email") => {
            if blocked(&users, &email) {
                (StatusCode::OK, json!({"kind": "blocked"}))
            } else if let Some(user_id) = users.by_email.get(&email) {
                (
                    StatusCode::OK,
                    json!({"kind": "existing", "user_id": user_id}),
                )
            } else {
                (StatusCode::OK, json!({"kind": "creatable"}))
            }
        }
        ("POST", "ensure-by-email") => {
            if blocked(&users, &email) {
                return (StatusCode::OK, json!({"outcome": "blocked"}));
            }
            let next = users.by_email.len() + 1;
            let created = !users.by_email.contains_key(&email);
            let user_id = users
                .by_email
                .entry(email)
                .or_insert_with(|| format!("u-{next}"))
                .clone();
            let outcome = if created { "created" } else { "existing" };
            (
                StatusCode::OK,
                json!({"outcome": outcome, "user_id": user_id}),
            )
        }
        ("GET", user_id) if !user_id.contains('/') => {
            if !users.by_email.values().any(|u| u == user_id) {
                return (StatusCode::NOT_FOUND, json!({}));
            }
            let status = if users.blocked_users.contains(user_id) {
                "blocked"
            } else {
                "active"
            };
            (
                StatusCode::OK,
                json!({"user_id": user_id, "status": status}),
            )
        }
        ("POST", rest) if rest.ends_with("/block") => {
            let user_id = rest.trim_end_matches("/block").to_owned();
            if !users.by_email.values().any(|u| *u == user_id) {
                return (StatusCode::NOT_FOUND, json!({}));
            }
            let outcome = if users.blocked_users.insert(user_id) {
                "blocked"
            } else {
                "already_blocked"
            };
            (StatusCode::OK, json!({"outcome": outcome}))
        }
        _ => (StatusCode::NOT_FOUND, json!({})),
    }
}

/// The mail service: accepts deliveries with 202 and keeps them, codes included.
pub struct FakeMailService {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeMailService {
    pub async fn start() -> Self {
        let (addr, shared) =
            start(|_, _, _, _| (StatusCode::ACCEPTED, json!({"status": "queued"}))).await;
        Self { addr, shared }
    }

    common_methods!();

    /// The code of the most recent delivery for `challenge_id`.
    pub fn code_for(&self, challenge_id: &str) -> Option<String> {
        self.shared.codes.lock().unwrap().get(challenge_id).cloned()
    }

    /// Takes (and forgets) the code for `challenge_id`: constant memory under load.
    pub fn take_code(&self, challenge_id: &str) -> Option<String> {
        self.shared.codes.lock().unwrap().remove(challenge_id)
    }
}
