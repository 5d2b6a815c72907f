//! `POST /api/v1/public/auth/send-email-code`: create a challenge, then deliver its code unless the
//! address is inside its resend window or blocked. The answer is the same in every case, and
//! takes about as long (see `pacing`), so it tells nothing about whether an account exists.

use std::net::IpAddr;

use super::admission::{self, Admit};
use super::{Context, Error};
use crate::clients::user_directory::Resolution;
use crate::clients::LoginCodeMail;
use crate::domain::{ChallengeId, Email, Locale, LoginCode};
use crate::store::challenges::{ChallengeCreate, Created, DeliveryStatus};
use crate::telemetry::metrics::metrics;

/// `client` is the requester's address (see `http::client_ip`): it counts against the per-client
/// admission limit, under a keyed hash.
pub async fn send_email_code(
    ctx: &Context,
    email: &Email,
    locale: Option<&Locale>,
    client: IpAddr,
) -> Result<ChallengeId, Error> {
    let started = std::time::Instant::now();
    // The id carries the address's partition (partitioned layout) and its sealed hash, so a
    // confirm declares the address's failure counter without asking Redis first.
    let challenge_id = ctx
        .store
        .keys
        .layout()
        .challenge_id_with(email.hash(), &ctx.codes.seal_address(email.hash()));
    let code = LoginCode::generate();
    let client = ctx.codes.client_key(client);
    // Admitted before the work in the partitioned layout, by the create script itself otherwise.
    let created = match admission::send(ctx, &challenge_id, &client).await? {
        Admit::RateLimited(after) => Created::RateLimited(after),
        admit => {
            let create = ChallengeCreate {
                challenge_id: &challenge_id,
                email,
                code_hash: &ctx.codes.hash(&challenge_id, &code),
                locale,
                admit: admit.with_the_work(),
            };
            match ctx.store.challenge_create(&create).await {
                Ok(created) => created,
                // The create may have committed although its answer is an error (replica acks
                // missing, a reply lost past the pool's resend): its window would then name a
                // challenge whose code nobody mails, and a retry would follow it. Release it.
                Err(error) => return Err(release(ctx, &challenge_id, email, error.into()).await),
            }
        }
    };
    if let Created::RateLimited(after) = created {
        metrics().send("rate_limited");
        return Err(admission::rate_limited(after));
    }
    if created == Created::Throttled {
        metrics().send("throttled");
        tracing::info!(%challenge_id, outcome = "throttled", "send-email-code");
        ctx.pacing.hold(started).await;
        return Ok(challenge_id);
    }

    let mail = LoginCodeMail {
        email,
        code: &code,
        challenge_id: &challenge_id,
        locale,
    };
    match deliver(ctx, &mail).await {
        Ok(outcome) => {
            // A failed mark leaves the challenge `pending_delivery`, which accepts its code (it may
            // have been mailed), and the window naming it: a retry follows it and the code mailed
            // confirms the retry's challenge. So the window is kept.
            ctx.store
                .challenge_mark_delivery(&challenge_id, email, outcome)
                .await?;
            let label = match outcome {
                DeliveryStatus::Sent => "sent",
                _ => "suppressed",
            };
            metrics().send(label);
            tracing::info!(%challenge_id, outcome = label, "send-email-code");
            if outcome == DeliveryStatus::Sent {
                ctx.pacing.record(started.elapsed());
            } else {
                ctx.pacing.hold(started).await;
            }
            Ok(challenge_id)
        }
        Err(error) => {
            metrics().send("failed");
            tracing::warn!(%challenge_id, outcome = "failed", %error, "send-email-code");
            Err(release(ctx, &challenge_id, email, error.into()).await)
        }
    }
}

/// After a send failed with `error` once its challenge may exist: marks the challenge
/// `delivery_failed`, which releases the resend window if it still names this challenge, so the
/// user's retry opens a window of its own and is mailed a code. If Redis fails this too, the
/// window runs out by itself (the cooldown). Returns `error`.
async fn release(ctx: &Context, challenge_id: &ChallengeId, email: &Email, error: Error) -> Error {
    if let Err(store_error) = ctx
        .store
        .challenge_mark_delivery(challenge_id, email, DeliveryStatus::Failed)
        .await
    {
        tracing::warn!(%challenge_id, error = %store_error, "could not mark the challenge delivery_failed");
    }
    error
}

/// Asks the user service about the address, then mails the code unless the user is blocked.
async fn deliver(
    ctx: &Context,
    mail: &LoginCodeMail<'_>,
) -> Result<DeliveryStatus, crate::clients::Error> {
    match ctx.users.resolve_by_email(mail.email).await? {
        Resolution::Blocked => Ok(DeliveryStatus::Suppressed),
        Resolution::Existing { .. } | Resolution::Creatable => {
            ctx.mail.send(mail).await.map(|()| DeliveryStatus::Sent)
        }
    }
}
