//! A listener's connection slots. At most the cap of connections hold one; when all are held, a
//! new connection takes the slot of the connection idle longest, provided it has idled (no
//! request in flight, no request head on its way) for at least the header timeout; that one is
//! closed. So a new client gets in while anyone merely idles, and holding slots costs an attacker
//! a request in flight or a head in progress on each, or a request per header timeout (issue 36,
//! finding 2: 32 addresses × 128 idle connections held every slot of the default cap, for one
//! request per connection per idle timeout). A client between two requests is not evicted: a
//! flood of stalling connections must not cost a served client its connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::watchdog::Activity;

/// One open connection's place: its slot (taken away when it is evicted) and how to close it.
struct Held {
    activity: Arc<Activity>,
    evicted: CancellationToken,
    permit: Option<OwnedSemaphorePermit>,
}

pub(super) struct Slots {
    free: Arc<Semaphore>,
    /// How long a connection must have idled to give its slot up.
    min_idle: Duration,
    held: Mutex<HashMap<u64, Held>>,
    next: AtomicU64,
}

/// A connection's slot; gives it back (unless it was evicted) when dropped.
pub(super) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    /// Cancelled when the connection is evicted to make room.
    pub(super) evicted: CancellationToken,
}

impl Slots {
    pub(super) fn new(cap: usize, min_idle: Duration) -> Arc<Self> {
        Arc::new(Self {
            free: Arc::new(Semaphore::new(cap)),
            min_idle,
            held: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        })
    }

    /// A slot for a new connection: a free one, else the one of the connection idle longest
    /// (which is closed: `evicted` is true); `None` when every slot's connection is busy.
    pub(super) fn take(self: &Arc<Self>, activity: &Arc<Activity>) -> Option<(Slot, bool)> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let (permit, evicted) = match self.free.clone().try_acquire_owned() {
            Ok(permit) => (permit, false),
            Err(_) => {
                let cutoff = Instant::now().checked_sub(self.min_idle)?;
                let idlest = held
                    .iter()
                    .filter_map(|(id, h)| h.activity.idle_since().map(|since| (since, *id)))
                    .filter(|(since, _)| *since <= cutoff)
                    .min()?
                    .1;
                let victim = held.remove(&idlest).expect("the idlest is held");
                victim.evicted.cancel();
                (victim.permit.expect("a held slot has its permit"), true)
            }
        };
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        held.insert(
            id,
            Held {
                activity: activity.clone(),
                evicted: token.clone(),
                permit: Some(permit),
            },
        );
        let slot = Slot {
            slots: self.clone(),
            id,
            evicted: token,
        };
        Some((slot, evicted))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|e| e.into_inner());
        // Evicted, its entry (and permit) already went to the connection that took its place.
        held.remove(&self.id);
    }
}
