//! A steady load of full logins, each followed by a revoke half of the time, for fault tests and
//! the soak run: it records every answer by route, status and error code, the slowest answer,
//! and when logins succeeded (to measure recovery).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::app::Reply;
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
    fn note(&mut self, route: &str, started: Instant, reply: &Reply) {
        self.slowest = self.slowest.max(started.elapsed());
        let code = reply.error_code().unwrap_or("").to_owned();
        *self
            .answers
            .entry((route.to_owned(), reply.status, code))
            .or_default() += 1;
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
/// between iterations. A request taking longer than `hang` panics: nothing may hang.
pub async fn logins_and_revokes(
    app: &TestApp,
    mail: &FakeMailService,
    workers: usize,
    pace: Duration,
    hang: Duration,
    stop: &AtomicBool,
    seen: &Mutex<Observed>,
) {
    let worker = || async {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            tokio::time::sleep(pace).await;
            let email = format!("load{:x}@example.com", rand::random::<u64>());
            let started = Instant::now();
            let sent = tokio::time::timeout(hang, app.send_email_code(&email))
                .await
                .expect("send hung");
            seen.lock().unwrap().note("send", started, &sent);
            let Some(challenge_id) = sent.body["challenge_id"]
                .as_str()
                .filter(|_| sent.status == 200)
            else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let Some(code) = mail.take_code(challenge_id) else {
                continue;
            };
            let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
            let started = Instant::now();
            let confirmed = tokio::time::timeout(hang, app.confirm(challenge_id, &code, &key))
                .await
                .expect("confirm hung");
            seen.lock().unwrap().note("confirm", started, &confirmed);
            let Some(id) = confirmed.body["device_session_id"].as_str() else {
                continue;
            };
            seen.lock().unwrap().logins.push(Instant::now());
            if n.is_multiple_of(2) {
                let started = Instant::now();
                let path = format!("/api/v1/internal/sessions/{id}/revoke");
                let revoked = tokio::time::timeout(hang, app.post_internal(&path, None))
                    .await
                    .expect("revoke hung");
                seen.lock().unwrap().note("revoke", started, &revoked);
            }
        }
    };
    futures::future::join_all((0..workers).map(|_| worker())).await;
}
