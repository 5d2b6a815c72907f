//! Per-client admission in the partitioned layout. There the work of a send or a confirm runs in
//! the address's partition, where the client's counters do not live, so the client is admitted
//! first by a script of its own in the client's partition (`send_admit`, `confirm_admit`; a
//! resend of the same request counts once). In the single-tag layout the create and verify
//! scripts admit in the same call as the work, and nothing happens here.

use std::time::Duration;

use super::{Context, Error};
use crate::domain::{ChallengeId, ClientKey, RequestId};
use crate::store;
use crate::store::layout::Layout;
use crate::store::scripts::Admission;
use crate::telemetry::metrics::metrics;

/// Admits a send (the client's send window and everyone's); `RateLimited`: nothing written.
pub async fn send(
    ctx: &Context,
    challenge_id: &ChallengeId,
    client: &ClientKey,
) -> Result<Admission, store::Error> {
    let policy = ctx.store.policy();
    let limited = policy.send_rate_per_ip.is_some() || policy.send_rate_global.is_some();
    // No round trip when both limits are off.
    match (ctx.store.keys.layout(), limited) {
        (Layout::Partitioned(_), true) => ctx.store.send_admit(challenge_id, client).await,
        _ => Ok(Admission::Admitted),
    }
}

/// Admits a confirm (the client's confirm window), counted under `attempt_id`.
pub async fn confirm(
    ctx: &Context,
    attempt_id: &RequestId,
    client: &ClientKey,
) -> Result<Admission, store::Error> {
    let limited = ctx.store.policy().confirm_rate_per_ip.is_some();
    match (ctx.store.keys.layout(), limited) {
        (Layout::Partitioned(_), true) => ctx.store.confirm_admit(attempt_id, client).await,
        _ => Ok(Admission::Admitted),
    }
}

/// Over the limit (whichever script said so): refused, to retry after the window's remaining
/// time.
pub fn rate_limited(after: Duration) -> Error {
    metrics().refused("public", "rate_limited");
    Error::RateLimited(after)
}
