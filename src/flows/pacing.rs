//! Send answers take the same time whatever the address. A delivered send waits for the user and
//! mail services; a throttled or suppressed one (a blocked address) does not, so without pacing
//! its answer would tell an observer which addresses are blocked. Those answers are held until
//! a delivered send's duration has passed, drawn at random from the durations of recent real
//! deliveries (a reservoir), so held answers follow the delivered ones' distribution, not only
//! their median: a mean with jitter has the right centre but the wrong spread, which a few
//! dozen samples tell apart. Only deliveries of the last minute are drawn from (the newest
//! [`MIN_SAMPLES`] when fewer are that recent), so holds follow a change of the dependencies'
//! latency within a minute (issue 36, finding 6: drawn from the last 512 however old, after mail
//! latency stepped from 70 ± 50 ms to 300 ms, 18 of 20 held answers were faster than every
//! delivered one). The hold is a timer in the request's task, after all Redis work:
//! it holds no Redis connection and no worker thread.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

/// Recent deliveries kept: enough for the distribution's shape, recent enough to follow a
/// dependency's latency as it changes (at 10 deliveries a second, the last minute).
const RESERVOIR: usize = 512;
/// Deliveries needed before holds are drawn from them; until then (after a start) a hold is
/// the initial estimate with jitter, as before. Also the fewest drawn from when few deliveries
/// are recent: the newest this many.
const MIN_SAMPLES: usize = 16;
/// How recent a delivery must be to be drawn from.
const WINDOW: Duration = Duration::from_secs(60);
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
    /// When each delivery ended, and what it took.
    samples: Vec<(Instant, Duration)>,
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
        self.record_at(Instant::now(), took);
    }

    fn record_at(&self, now: Instant, took: Duration) {
        let took = (now, took.min(self.cap));
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
        self.draw_at(Instant::now())
    }

    fn draw_at(&self, now: Instant) -> Duration {
        let mut rng = rand::rng();
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.samples.len() < MIN_SAMPLES {
            let factor = 1.0 + rng.random_range(-JITTER..=JITTER);
            return INITIAL_ESTIMATE.mul_f64(factor).min(self.cap);
        }
        let since = now.checked_sub(WINDOW);
        let mut fresh: Vec<&(Instant, Duration)> = recent
            .samples
            .iter()
            .filter(|(at, _)| since.is_none_or(|since| *at >= since))
            .collect();
        if fresh.len() < MIN_SAMPLES {
            fresh = recent.samples.iter().collect();
            fresh.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
            fresh.truncate(MIN_SAMPLES);
        }
        fresh[rng.random_range(0..fresh.len())].1
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

    /// Finding 6: a step in the mail service's latency, from 70 ± 50 ms to 300 ms. A minute
    /// after the step, with only 20 deliveries since, every hold is drawn from the new latency.
    #[test]
    fn holds_follow_a_step_in_delivery_latency_within_a_minute() {
        let pacing = SendPacing::new(Duration::from_secs(2));
        let start = Instant::now();
        for i in 0..RESERVOIR as u64 {
            let at = start + Duration::from_millis(i * 100);
            pacing.record_at(at, Duration::from_millis(20 + i % 100));
        }
        let step = start + Duration::from_millis(RESERVOIR as u64 * 100);
        for i in 0..20 {
            pacing.record_at(
                step + Duration::from_secs(3 * i),
                Duration::from_millis(300),
            );
        }
        let now = step + Duration::from_secs(61);
        let holds: Vec<Duration> = (0..200).map(|_| pacing.draw_at(now)).collect();
        assert!(
            holds.iter().all(|h| *h == Duration::from_millis(300)),
            "every hold from the new latency"
        );
        // Long after the last delivery, the newest few are drawn from, not the initial guess.
        let later = now + Duration::from_secs(3600);
        assert_eq!(pacing.draw_at(later), Duration::from_millis(300));
    }

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
