//! Per-client admission: where it happens is the layout's business, decided here once. In the
//! single-tag layout the create and verify scripts admit in the same call as the work (the call
//! carries the admission's optional slots). In the partitioned layout the work runs in the
//! address's partition, where the client's counters do not live, so the client is admitted first
//! by a script of its own in the client's partition (`send_admit`, `confirm_admit`; a resend of
//! the same request counts once), and the work's call carries no admission.

use std::time::Duration;

use super::{Context, Error};
use crate::domain::{ChallengeId, ClientKey, RequestId};
use crate::store;
use crate::store::layout::Layout;
use crate::store::scripts::Admission;
use crate::telemetry::metrics::metrics;

/// What admission decided before the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit<'a> {
    /// The work's script admits this client, in the same call.
    WithTheWork(&'a ClientKey),
    /// Nothing to count with the work: admitted apart, or every limit off.
    Done,
    /// Over a limit: nothing written; retry after this long.
    RateLimited(Duration),
}

impl<'a> Admit<'a> {
    /// The client the work's call admits, if it does.
    pub fn with_the_work(self) -> Option<&'a ClientKey> {
        match self {
            Admit::WithTheWork(client) => Some(client),
            Admit::Done | Admit::RateLimited(_) => None,
        }
    }

    fn apart(admission: Admission) -> Self {
        match admission {
            Admission::Admitted => Admit::Done,
            Admission::RateLimited(after) => Admit::RateLimited(after),
        }
    }
}

/// Admits a send (the client's send window and everyone's).
pub async fn send<'a>(
    ctx: &Context,
    challenge_id: &ChallengeId,
    client: &'a ClientKey,
) -> Result<Admit<'a>, store::Error> {
    let policy = ctx.store.policy();
    let limited = policy.send_rate_per_ip.is_some() || policy.send_rate_global.is_some();
    // No round trip and no admission slots when both limits are off.
    Ok(match (ctx.store.keys.layout(), limited) {
        (_, false) => Admit::Done,
        (Layout::SingleTag, true) => Admit::WithTheWork(client),
        (Layout::Partitioned(_), true) => {
            Admit::apart(ctx.store.send_admit(challenge_id, client).await?)
        }
    })
}

/// Admits a confirm (the client's confirm window), counted under `attempt_id`.
pub async fn confirm<'a>(
    ctx: &Context,
    attempt_id: &RequestId,
    client: &'a ClientKey,
) -> Result<Admit<'a>, store::Error> {
    let limited = ctx.store.policy().confirm_rate_per_ip.is_some();
    Ok(match (ctx.store.keys.layout(), limited) {
        (_, false) => Admit::Done,
        (Layout::SingleTag, true) => Admit::WithTheWork(client),
        (Layout::Partitioned(_), true) => {
            Admit::apart(ctx.store.confirm_admit(attempt_id, client).await?)
        }
    })
}

/// Over the limit (whichever script said so): refused, to retry after the window's remaining
/// time.
pub fn rate_limited(after: Duration) -> Error {
    metrics().refused("public", "rate_limited");
    Error::RateLimited(after)
}
