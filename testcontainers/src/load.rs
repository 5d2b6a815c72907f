//! A steady load of full logins, each followed by a revoke half of the time, for fault tests and
//! the soak run: it records every answer by route, status and error code, the slowest answer,
//! and when logins succeeded (to measure recovery).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::login::{unique_email, LoginFailure, Step};
use crate::{FakeMailService, TestApp};

/// What the load saw.
#[derive(Default, Debug)]
pub struct Observed {
    /// (route, status, error code) -> count
    pub answers: BTreeMap<(String, u16, String), u64>,
    pub slowest: Duration,
    /// When each full login (send + confirm) succeeded.
    pub logins: Vec<Instant>,
}

impl Observed {
    fn note(&mut self, route: &str, status: u16, code: &str, took: Duration) {
        self.slowest = self.slowest.max(took);
        *self
            .answers
            .entry((route.to_owned(), status, code.to_owned()))
            .or_default() += 1;
    }

    fn note_ok(&mut self, route: &str, took: Duration) {
        self.note(route, 200, "", took);
    }

    /// How long after `since` the first login succeeded.
    pub fn recovery_after(&self, since: Instant) -> Option<Duration> {
        self.logins
            .iter()
            .filter(|at| **at > since)
            .min()
            .map(|at| at.duration_since(since))
    }
}

/// Runs `workers` loops of login (+ revoke every other time) until `stop`, pausing `pace`
/// between iterations. A request taking longer than the app's `longest_answer` panics: nothing
/// may hang; nor may a request go unanswered.
pub async fn logins_and_revokes(
    app: &TestApp,
    mail: &FakeMailService,
    workers: usize,
    pace: Duration,
    stop: &AtomicBool,
    seen: &Mutex<Observed>,
) {
    let hang = app.longest_answer();
    let client = app.login_client(mail);
    let worker = || async {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            tokio::time::sleep(pace).await;
            let id = match client.login(&unique_email()).await {
                Ok(login) => {
                    let mut seen = seen.lock().unwrap();
                    seen.note_ok("send", login.send_latency);
                    seen.note_ok("confirm", login.confirm_latency);
                    seen.logins.push(Instant::now());
                    login.device_session_id
                }
                Err(LoginFailure::Refused {
                    step,
                    status,
                    code,
                    latency,
                }) => {
                    seen.lock()
                        .unwrap()
                        .note(step.as_str(), status, &code, latency);
                    if step == Step::Send {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    continue;
                }
                Err(LoginFailure::NoDelivery { .. }) => continue,
                Err(failure @ (LoginFailure::Hung { .. } | LoginFailure::Transport { .. })) => {
                    panic!("{failure} (bound {hang:?})")
                }
            };
            if n.is_multiple_of(2) {
                let started = Instant::now();
                let path = format!("/api/v1/internal/sessions/{id}/revoke");
                let revoked = tokio::time::timeout(hang, app.post_internal(&path, None))
                    .await
                    .expect("revoke hung");
                let code = revoked.error_code().unwrap_or("").to_owned();
                seen.lock()
                    .unwrap()
                    .note("revoke", revoked.status, &code, started.elapsed());
            }
        }
    };
    futures::future::join_all((0..workers).map(|_| worker())).await;
}
