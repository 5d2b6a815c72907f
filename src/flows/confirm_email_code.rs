//! `POST /api/v1/public/auth/confirm-email-code`: verify the code, ask the user service for the
//! account, then create the device session and its gateway projection (one script call in the
//! single-tag layout; a session step and a challenge step in the partitioned one).
//! An identical retry returns the committed session and repairs its projection.

use std::net::IpAddr;

use super::admission::{self, Admit};
use super::{Context, Error};
use crate::clients::user_directory::Ensured;
use crate::domain::{
    ChallengeId, ClientPublicKey, CodeHashes, DeviceSessionId, LoginCode, RequestId,
};
use crate::store::challenges::{
    ChallengeVerify, Claimed, ConfirmRequest, Confirmed, MarkedConfirmed, Rejection,
    SessionCreated, Verified, Via,
};
use crate::store::layout::Layout;
use crate::store::sessions::Republished;
use crate::store::{self, Store};
use crate::telemetry::metrics::metrics;

/// How a confirm that succeeded got its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirmation {
    /// This call created the session.
    Created,
    /// An earlier identical confirm did (a retry, or a concurrent twin).
    Retried,
}

impl Confirmation {
    fn as_str(self) -> &'static str {
        match self {
            Confirmation::Created => "created",
            Confirmation::Retried => "retried",
        }
    }
}

pub async fn confirm_email_code(
    ctx: &Context,
    challenge_id: &ChallengeId,
    code: &LoginCode,
    client_public_key: &ClientPublicKey,
    client: IpAddr,
) -> Result<DeviceSessionId, Error> {
    let result = confirm(ctx, challenge_id, code, client_public_key, client).await;
    metrics().confirm(match &result {
        Ok((_, how)) => how.as_str(),
        Err(error) => error.as_str(),
    });
    result.map(|(id, _)| id)
}

/// The session and whether this call `created` it or `retried` an earlier confirm.
async fn confirm(
    ctx: &Context,
    challenge_id: &ChallengeId,
    code: &LoginCode,
    client_public_key: &ClientPublicKey,
    client: IpAddr,
) -> Result<(DeviceSessionId, Confirmation), Error> {
    let limits = ctx.runtime_config.limits().await;
    let (challenge_id, code_hashes, verified, via) = verify(
        ctx,
        challenge_id,
        code,
        client_public_key,
        limits.challenge_max_attempts,
        client,
    )
    .await?;
    let challenge_id = &challenge_id;
    let (email, verified_at_ms) = match verified {
        Verified::Rejected(rejection) => return Err(rejection.into()),
        Verified::RateLimited(after) => return Err(admission::rate_limited(after)),
        Verified::Confirmed(device_session_id) => {
            return repair(ctx, device_session_id)
                .await
                .map(|id| (id, Confirmation::Retried))
        }
        Verified::Ok {
            email,
            verified_at_ms,
        } => (email, verified_at_ms),
        Verified::Window { .. } => unreachable!("verify follows a window once"),
    };

    let user_id = match ctx.users.ensure_by_email(&email).await? {
        Ensured::Blocked => return Err(Error::UserBlocked),
        Ensured::User(user_id) => user_id,
    };
    // Partitioned: derived from the challenge, so a retry after a crash between the two steps of
    // the store's confirm finds the session the first attempt made.
    let device_session_id = ctx
        .store
        .keys
        .layout()
        .device_session_id(challenge_id, &user_id);
    let request = ConfirmRequest {
        challenge_id,
        code_hashes: &code_hashes,
        client_public_key,
        user_id: &user_id,
        device_session_id: &device_session_id,
        max_attempts: limits.challenge_max_attempts,
        max_active_sessions: limits.max_active_sessions_per_user,
        verified_at_ms,
        via,
    };
    match open_session(&ctx.store, &request).await? {
        Confirmed::Created(id) => {
            tracing::info!(%challenge_id, device_session_id = %id, %user_id, "session created");
            Ok((id, Confirmation::Created))
        }
        // A concurrent identical confirm won the race; its script wrote the projection.
        Confirmed::Existing(id) => Ok((id, Confirmation::Retried)),
        Confirmed::Rejected(rejection) => Err(rejection.into()),
        Confirmed::UserBlocked => Err(Error::UserBlocked),
    }
}

/// Creates the session of a verified challenge, as the layout has it. Single-tag: one script
/// (`challenge_confirm`). Partitioned: the claim on the challenge (address's partition), the
/// session in the user's partition (its id derived from the challenge and the user), then the
/// mark on the challenge; a crash between two steps leaves a claim or a session that the retry
/// finds, so every interleaving ends as an uninterrupted confirm does (the protocol model in
/// `tests/api/protocol` searches them).
pub async fn open_session(
    store: &Store,
    req: &ConfirmRequest<'_>,
) -> Result<Confirmed, store::Error> {
    if let Layout::SingleTag = store.keys.layout() {
        return store.challenge_confirm(req).await;
    }
    // The claim first: a confirm whose user id (so session id and partition) differs from the
    // claimant's creates nothing, so one challenge yields at most one session.
    match store.challenge_claim(req).await? {
        Claimed::Claimed => {}
        Claimed::OtherSession => return Ok(Confirmed::Rejected(Rejection::AlreadyConfirmed)),
        Claimed::NotFound => return Ok(Confirmed::Rejected(Rejection::NotFound)),
    }
    let confirmed_at_ms = match store.session_create(req).await? {
        SessionCreated::Created { created_at_ms } => created_at_ms,
        SessionCreated::OtherKey => return Ok(Confirmed::Rejected(Rejection::AlreadyConfirmed)),
        SessionCreated::UserBlocked => return Ok(Confirmed::UserBlocked),
    };
    let id = req.device_session_id.clone();
    match store.challenge_mark_confirmed(req, confirmed_at_ms).await? {
        MarkedConfirmed::Marked => Ok(Confirmed::Created(id)),
        // The session was made by a verified confirm; the challenge expiring since, or a twin's
        // mark, does not undo it.
        MarkedConfirmed::NotFound => {
            tracing::warn!(device_session_id = %id, "confirm: the challenge expired before it was marked confirmed");
            Ok(Confirmed::Created(id))
        }
        MarkedConfirmed::OtherSession => Ok(Confirmed::Rejected(Rejection::AlreadyConfirmed)),
    }
}

/// `challenge_verify`, following a throttled challenge to the challenge that opened the
/// address's resend window (SPEC §2: the code the owner received works for the challenge the
/// owner holds; attempts, budget and the one confirmation are that challenge's). Returns the
/// challenge the confirm goes on with, the code's hashes under its id, the verdict, and, when
/// the code was presented through a throttled challenge, that challenge and its expiry (the
/// opening challenge is judged as an open challenge of that age would be, and as if still open
/// when it was confirmed through another challenge of the window).
async fn verify<'a>(
    ctx: &Context,
    challenge_id: &'a ChallengeId,
    code: &LoginCode,
    client_public_key: &ClientPublicKey,
    max_attempts: u32,
    client: IpAddr,
) -> Result<(ChallengeId, CodeHashes, Verified, Option<Via<'a>>), Error> {
    // One attempt id for both calls: the client's admission counts the confirm once.
    let attempt_id = RequestId::generate();
    let client = ctx.codes.client_key(client);
    let admit = match admission::confirm(ctx, &attempt_id, &client).await? {
        Admit::RateLimited(after) => {
            let code_hashes = ctx.codes.hashes(challenge_id, code);
            return Ok((
                challenge_id.clone(),
                code_hashes,
                Verified::RateLimited(after),
                None,
            ));
        }
        admit => admit.with_the_work(),
    };
    let attempt = Attempt {
        ctx,
        code,
        client_public_key,
        max_attempts,
        attempt_id: &attempt_id,
        admit,
    };
    let first = attempt.at(challenge_id.clone(), None).await?;
    let Verified::Window {
        opening,
        expires_at_ms,
    } = &first.2
    else {
        let (challenge, code_hashes, verified) = first;
        return Ok((challenge, code_hashes, verified, None));
    };
    let via = Via {
        challenge_id,
        expires_at_ms: *expires_at_ms,
    };
    let (opening, code_hashes, verified) = attempt.at(opening.clone(), Some(via)).await?;
    let verified = match verified {
        // The opening challenge is gone (confirmed past its idempotency window, or removed): the
        // code the throttled challenge accepts no longer works.
        Verified::Rejected(Rejection::NotFound) => Verified::Rejected(Rejection::Expired),
        // Only a challenge that opened a window is named by one, and such a challenge is never
        // throttled; a hand-edited record could chain them.
        Verified::Window { .. } => {
            tracing::warn!(%challenge_id, "a throttled challenge's window names a throttled challenge");
            Verified::Rejected(Rejection::InvalidCode)
        }
        verified => verified,
    };
    Ok((opening, code_hashes, verified, Some(via)))
}

/// What the verify calls of one confirm share: the presented code, key and attempt id, and the
/// client's admission.
struct Attempt<'a> {
    ctx: &'a Context,
    code: &'a LoginCode,
    client_public_key: &'a ClientPublicKey,
    max_attempts: u32,
    attempt_id: &'a RequestId,
    admit: Option<&'a crate::domain::ClientKey>,
}

impl Attempt<'_> {
    /// `challenge_verify` of `challenge` (via a throttled challenge, when `via` says so).
    async fn at(
        &self,
        challenge: ChallengeId,
        via: Option<Via<'_>>,
    ) -> Result<(ChallengeId, CodeHashes, Verified), Error> {
        let code_hashes = self.ctx.codes.hashes(&challenge, self.code);
        // The address's failure counter is declared from the id itself (sealed in it at send).
        let address = self.ctx.codes.open_address(&challenge);
        let verified = self
            .ctx
            .store
            .challenge_verify(ChallengeVerify {
                challenge_id: &challenge,
                code_hashes: &code_hashes,
                client_public_key: self.client_public_key,
                max_attempts: self.max_attempts,
                attempt_id: self.attempt_id,
                admit: self.admit,
                address,
                via,
            })
            .await?;
        Ok((challenge, code_hashes, verified))
    }
}

/// An identical retry: the session exists; make sure the gateway sees it.
async fn repair(
    ctx: &Context,
    device_session_id: DeviceSessionId,
) -> Result<DeviceSessionId, Error> {
    match ctx
        .store
        .session_projection_republish(&device_session_id)
        .await?
    {
        Republished::Repaired { version } => {
            tracing::warn!(%device_session_id, version, "confirm retry repaired a missing or stale projection");
        }
        Republished::Current { .. } => {}
        Republished::NotFound => {
            tracing::warn!(%device_session_id, "confirm retry: session record is gone")
        }
    }
    Ok(device_session_id)
}
