//! What the closed- and open-loop runs record: latency per route, errors by kind, logins.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authsession_testbench::{unique_email, FakeMailService, LoginClient};

#[derive(Default)]
pub struct Recorder {
    latencies: Mutex<BTreeMap<&'static str, Vec<u32>>>,
    errors: Mutex<BTreeMap<String, u64>>,
    pub logins: AtomicU64,
}

impl Recorder {
    fn record(&self, route: &'static str, took: Duration) {
        let micros = took.as_micros().min(u32::MAX as u128) as u32;
        self.latencies
            .lock()
            .unwrap()
            .entry(route)
            .or_default()
            .push(micros);
    }

    fn error(&self, what: String) {
        *self.errors.lock().unwrap().entry(what).or_default() += 1;
    }

    pub fn report(&self, elapsed: Duration) -> f64 {
        let logins = self.logins.load(Ordering::Relaxed);
        let rate = logins as f64 / elapsed.as_secs_f64();
        println!(
            "  logins: {logins} in {:.1} s = {rate:.0} logins/s",
            elapsed.as_secs_f64()
        );
        println!("  | route | requests | p50 ms | p95 ms | p99 ms | max ms |");
        println!("  |---|---|---|---|---|---|");
        for (route, values) in self.latencies.lock().unwrap().iter_mut() {
            values.sort_unstable();
            let pct = |p: f64| values[((values.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
            println!(
                "  | {route} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                values.len(),
                pct(0.5),
                pct(0.95),
                pct(0.99),
                pct(1.0)
            );
        }
        let errors = self.errors.lock().unwrap();
        if errors.is_empty() {
            println!("  errors: none");
        } else {
            println!("  errors: {errors:?}");
        }
        rate
    }
}

/// The service's public surface, driven with the bench's one login helper.
pub struct Target {
    pub http: reqwest::Client,
    pub public: String,
    pub mail: Arc<FakeMailService>,
}

impl Target {
    /// The bench's login helper against this surface.
    pub fn client(&self) -> LoginClient<'_> {
        LoginClient {
            http: &self.http,
            public: self.public.clone(),
            mail: &self.mail,
            deadline: Duration::from_secs(30),
        }
    }

    /// One full login over HTTP; returns false on any error (recorded).
    pub async fn login(&self, recorder: &Recorder) -> bool {
        match self.client().login(&unique_email()).await {
            Ok(login) => {
                recorder.record("send-email-code", login.send_latency);
                recorder.record("confirm-email-code", login.confirm_latency);
                recorder.logins.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(failure) => {
                recorder.error(failure.to_string());
                false
            }
        }
    }
}
