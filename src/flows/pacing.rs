//! Send answers take the same time whatever the address. A delivered send waits for the user and
//! mail services; a throttled or suppressed one (a blocked address) does not, so without pacing
//! its answer would tell an observer which addresses are blocked. Those answers are held until
//! a delivered send's duration has passed, drawn at random from the durations of recent real
//! deliveries (a reservoir), so held answers follow the delivered ones' distribution, not only
//! their median: a mean with jitter has the right centre but the wrong spread, which a few
//! dozen samples tell apart. The hold is a timer in the request's task, after all Redis work:
//! it holds no Redis connection and no worker thread.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

/// Recent deliveries kept: enough for the distribution's shape, recent enough to follow a
/// dependency's latency as it changes (at 10 deliveries a second, the last minute).
const RESERVOIR: usize = 512;
/// Deliveries needed before holds are drawn from them; until then (after a start) a hold is
/// the initial estimate with jitter, as before.
const MIN_SAMPLES: usize = 16;
/// The estimate before this instance has delivered enough: a typical mail API round trip.
const INITIAL_ESTIMATE: Duration = Duration::from_millis(200);
/// Relative jitter of a hold while the reservoir fills.
const JITTER: f64 = 0.1;

#[derive(Debug)]
pub struct SendPacing {
    /// The last [`RESERVOIR`] delivered sends' durations, overwritten in turn.
    recent: Mutex<Recent>,
    /// Longest hold: what a delivered send can take at most (the dependencies' timeouts).
    cap: Duration,
}

#[derive(Debug, Default)]
struct Recent {
    samples: Vec<Duration>,
    next: usize,
}

impl SendPacing {
    pub fn new(cap: Duration) -> Self {
        Self {
            recent: Mutex::new(Recent::default()),
            cap,
        }
    }

    /// A delivered send took `took`.
    pub fn record(&self, took: Duration) {
        let took = took.min(self.cap);
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.samples.len() < RESERVOIR {
            recent.samples.push(took);
        } else {
            let at = recent.next;
            recent.samples[at] = took;
        }
        recent.next = (recent.next + 1) % RESERVOIR;
    }

    /// How long a held answer waits from its start: a recent delivery's duration, at random.
    pub fn draw(&self) -> Duration {
        let mut rng = rand::rng();
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.samples.len() < MIN_SAMPLES {
            let factor = 1.0 + rng.random_range(-JITTER..=JITTER);
            return INITIAL_ESTIMATE.mul_f64(factor).min(self.cap);
        }
        recent.samples[rng.random_range(0..recent.samples.len())]
    }

    /// Waits until a delivered send's duration (see [`SendPacing::draw`]) has passed since
    /// `started`.
    pub async fn hold(&self, started: Instant) {
        let target = self.draw();
        tokio::time::sleep_until((started + target).into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_are_drawn_from_recent_deliveries_under_the_cap() {
        let pacing = SendPacing::new(Duration::from_secs(2));
        let initial = pacing.draw();
        assert!(
            initial >= INITIAL_ESTIMATE.mul_f64(0.9) && initial <= INITIAL_ESTIMATE.mul_f64(1.1)
        );
        for ms in [100, 300] {
            for _ in 0..RESERVOIR / 2 {
                pacing.record(Duration::from_millis(ms));
            }
        }
        let draws: Vec<u128> = (0..1000).map(|_| pacing.draw().as_millis()).collect();
        assert!(draws.iter().all(|d| *d == 100 || *d == 300));
        let short = draws.iter().filter(|d| **d == 100).count();
        assert!((350..=650).contains(&short), "both halves drawn: {short}");
        for _ in 0..RESERVOIR {
            pacing.record(Duration::from_secs(60));
        }
        assert_eq!(
            pacing.draw(),
            Duration::from_secs(2),
            "capped, and old samples gone"
        );
    }
}
