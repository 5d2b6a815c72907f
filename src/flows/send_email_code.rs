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
    // In the partitioned layout the id carries the address's partition.
    let challenge_id = ctx.store.keys.layout().new_challenge_id(email.hash());
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
            ctx.store.challenge_create(&create).await?
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
            // Release the resend window so the user can retry at once; if Redis fails too, the
            // window simply runs out.
            if let Err(store_error) = ctx
                .store
                .challenge_mark_delivery(&challenge_id, email, DeliveryStatus::Failed)
                .await
            {
                tracing::warn!(%challenge_id, error = %store_error, "could not mark the challenge delivery_failed");
            }
            metrics().send("failed");
            tracing::warn!(%challenge_id, outcome = "failed", %error, "send-email-code");
            Err(error.into())
        }
    }
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
