//! Send answers take the same time whatever the address. A delivered send waits for the user and
//! mail services; a throttled or suppressed one (a blocked address) does not, so without pacing
//! its answer would tell an observer which addresses are blocked. Those answers are held until
//! about the time a delivered send takes: a moving average of recent deliveries, with jitter,
//! capped. The hold is a timer in the request's task, after all Redis work: it holds no Redis
//! connection and no worker thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;

/// Weight of the newest delivery in the moving average.
const ALPHA: f64 = 0.1;
/// Relative jitter of each hold (uniform), so holds do not form a recognisable constant.
const JITTER: f64 = 0.1;
/// The estimate before this instance has delivered anything: a typical mail API round trip.
const INITIAL_ESTIMATE: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub struct SendPacing {
    /// Moving average of delivered sends, in microseconds (an `f64`'s bits).
    estimate_us: AtomicU64,
    /// Longest hold: what a delivered send can take at most (the dependencies' timeouts).
    cap: Duration,
}

impl SendPacing {
    pub fn new(cap: Duration) -> Self {
        let initial = INITIAL_ESTIMATE.min(cap).as_micros() as f64;
        Self {
            estimate_us: AtomicU64::new(initial.to_bits()),
            cap,
        }
    }

    /// A delivered send took `took`; concurrent updates may overwrite one another, which only
    /// drops a sample.
    pub fn record(&self, took: Duration) {
        let sample = took.min(self.cap).as_micros() as f64;
        let old = f64::from_bits(self.estimate_us.load(Ordering::Relaxed));
        let new = old + ALPHA * (sample - old);
        self.estimate_us.store(new.to_bits(), Ordering::Relaxed);
    }

    /// The current estimate of a delivered send's duration.
    pub fn estimate(&self) -> Duration {
        Duration::from_micros(f64::from_bits(self.estimate_us.load(Ordering::Relaxed)) as u64)
    }

    /// Waits until about a delivered send's duration has passed since `started`.
    pub async fn hold(&self, started: Instant) {
        let factor = 1.0 + rand::rng().random_range(-JITTER..=JITTER);
        let target = self.estimate().mul_f64(factor).min(self.cap);
        tokio::time::sleep_until((started + target).into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_follows_deliveries_and_stays_under_the_cap() {
        let pacing = SendPacing::new(Duration::from_secs(2));
        assert_eq!(pacing.estimate(), INITIAL_ESTIMATE);
        for _ in 0..100 {
            pacing.record(Duration::from_millis(300));
        }
        let ms = pacing.estimate().as_millis();
        assert!((295..=300).contains(&ms), "{ms}");
        for _ in 0..100 {
            pacing.record(Duration::from_secs(60));
        }
        assert!(pacing.estimate() <= Duration::from_secs(2));
    }
}
