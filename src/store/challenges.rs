//! Challenges: sending a code (create, delivery marking) and confirming it (verify, then the
//! session scripts of the layout), one typed script call each over [`super::scripts`]. Which
//! calls a flow makes in which layout (admission first, the partitioned confirm's steps) is the
//! flows' business.

use super::scripts::access_probe::AccessProbe;
use super::scripts::challenge_claim::ChallengeClaim;
pub use super::scripts::challenge_claim::Claimed;
use super::scripts::challenge_confirm::{ChallengeConfirm, ChallengeConfirmReply};
pub use super::scripts::challenge_confirm::{ConfirmRequest, MAX_EVICTIONS_PER_LOGIN};
pub use super::scripts::challenge_create::{ChallengeCreate, Created};
use super::scripts::challenge_mark_confirmed::ChallengeMarkConfirmed;
pub use super::scripts::challenge_mark_confirmed::MarkedConfirmed;
pub use super::scripts::challenge_mark_delivery::{ChallengeMarkDelivery, DeliveryStatus, Marked};
pub use super::scripts::challenge_verify::{ChallengeVerify, Rejection, Verified, Via};
use super::scripts::confirm_admit::ConfirmAdmit;
use super::scripts::send_admit::SendAdmit;
use super::scripts::session_create::{SessionCreate, SessionCreateReply};
use super::scripts::{decode, Admission, Call, Planning, Resumable};
use super::{Error, Store};
use crate::domain::{ChallengeId, ClientKey, DeviceSessionId, Email, RequestId};

/// Most calls one confirm makes while the script answers `continue` (each removes up to 58
/// ghost or evicted entries of the user's active index before the session opens), so an index
/// full of ghosts is cleared in bounded steps and a runaway one answers 503.
pub const MAX_OPEN_CALLS: u32 = 64;

/// The session step's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    Created(DeviceSessionId),
    /// Already confirmed with the same key (a concurrent twin or a replay): that session.
    Existing(DeviceSessionId),
    Rejected(Rejection),
    /// A block of the user is in flight (its marker exists): nothing was written.
    UserBlocked,
}

/// The partitioned layout's `session_create`, settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCreated {
    /// Created now, or found made by this challenge with this key (a retry): its creation time.
    Created { created_at_ms: u64 },
    /// The challenge's session exists with another client key: a twin confirmed first.
    OtherKey,
    /// A block of the user is in flight: nothing was written.
    UserBlocked,
}

impl Store {
    pub async fn challenge_create(&self, input: &ChallengeCreate<'_>) -> Result<Created, Error> {
        self.run(input).await
    }

    /// (Partitioned) the client's send admission, in the client's partition.
    pub async fn send_admit(
        &self,
        challenge_id: &ChallengeId,
        client: &ClientKey,
    ) -> Result<Admission, Error> {
        self.run(&SendAdmit {
            challenge_id,
            client,
        })
        .await
    }

    /// (Partitioned) the client's confirm admission, in the client's partition.
    pub async fn confirm_admit(
        &self,
        attempt_id: &RequestId,
        client: &ClientKey,
    ) -> Result<Admission, Error> {
        self.run(&ConfirmAdmit { attempt_id, client }).await
    }

    pub async fn challenge_mark_delivery(
        &self,
        challenge_id: &ChallengeId,
        email: &Email,
        outcome: DeliveryStatus,
    ) -> Result<Marked, Error> {
        self.run(&ChallengeMarkDelivery {
            challenge_id,
            email,
            outcome,
        })
        .await
    }

    /// Startup probe, once per partition: `access_probe` on a key of each namespace the service
    /// writes (key prefix, gateway prefix, the partition's stream). It writes nothing, but proves
    /// EVALSHA (and SCRIPT LOAD in `auto` mode) and that the user may run each write the scripts
    /// run there: a user missing the gateway pattern or a stream fails startup, naming the key.
    pub async fn probe_scripts(&self) -> Result<(), Error> {
        for partition in self.keys.layout().all() {
            let call = self.call(&AccessProbe { partition });
            let reply = match self.redis.invoke_unacknowledged(&call).await {
                Ok(reply) => reply,
                // Redis refuses a call whose declared keys the user may not access without
                // saying which: ask key by key, so the operator learns the pattern to grant.
                Err(Error::Redis(e))
                    if e.code() == Some("NOPERM") && e.to_string().contains("keys") =>
                {
                    for key in call.keys() {
                        let access: Result<String, _> =
                            self.redis.query(redis::cmd("TYPE").arg(key)).await;
                        if access.is_err() {
                            return Err(Error::KeyPermission { key: key.clone() });
                        }
                    }
                    return Err(Error::Redis(e));
                }
                Err(e) => return Err(e),
            };
            decode::<AccessProbe>(reply)?;
        }
        Ok(())
    }

    /// `challenge_verify`. `call.address`: the challenge's address when the caller knows it (an
    /// id minted by the send flow carries it, sealed): its failure counter is declared and the
    /// call is one round trip. Otherwise, or when it is not the record's, the script answers
    /// `need` with the record's, and a second call declares that one.
    pub async fn challenge_verify(&self, mut call: ChallengeVerify<'_>) -> Result<Verified, Error> {
        let Some(home) = self.home(call.challenge_id.as_str()) else {
            return Ok(Verified::Rejected(Rejection::NotFound));
        };
        // An address of another partition cannot be this challenge's (its counter would be
        // another slot's key): let the script name the record's.
        let layout = self.keys.layout();
        call.address = call
            .address
            .filter(|a| layout.of_address(a.as_str()) == home);
        self.run_planned(&mut call).await
    }

    /// (Single-tag layout) creates the session of a verified challenge in one script.
    pub async fn challenge_confirm(&self, req: &ConfirmRequest<'_>) -> Result<Confirmed, Error> {
        match self
            .run_until_settled(ChallengeConfirm {
                request: req,
                planned: Vec::new(),
            })
            .await?
        {
            ChallengeConfirmReply::Created {
                device_session_id, ..
            } => Ok(Confirmed::Created(device_session_id)),
            ChallengeConfirmReply::Confirmed(id) => Ok(Confirmed::Existing(id)),
            ChallengeConfirmReply::Rejected(rejection) => Ok(Confirmed::Rejected(rejection)),
            ChallengeConfirmReply::UserBlocked => Ok(Confirmed::UserBlocked),
            ChallengeConfirmReply::VerdictExpired => Err(Error::StaleVerdict),
            ChallengeConfirmReply::Continue => unreachable!("settled"),
        }
    }

    /// Runs a session-opening call again while it answers `continue` (it removed a bounded part
    /// of the ghosts and evictions standing before the limit holds), at most [`MAX_OPEN_CALLS`]
    /// steps, each with its plan ([`Store::run_planned`]: the sessions over the limit it meets
    /// declared); its final reply.
    async fn run_until_settled<C>(&self, mut input: C) -> Result<C::Settled, Error>
    where
        C: Planning,
        C::Settled: Resumable,
    {
        for _ in 0..MAX_OPEN_CALLS {
            let reply = self.run_planned(&mut input).await?;
            if !reply.resume() {
                return Ok(reply);
            }
        }
        Err(Error::Unfinished {
            script: C::script().name,
            calls: MAX_OPEN_CALLS,
        })
    }

    /// (Partitioned, step 2) the session, in the user's partition.
    pub async fn session_create(&self, req: &ConfirmRequest<'_>) -> Result<SessionCreated, Error> {
        match self
            .run_until_settled(SessionCreate {
                request: req,
                planned: Vec::new(),
            })
            .await?
        {
            SessionCreateReply::Created {
                device_session_id,
                created_at_ms,
            } if device_session_id == *req.device_session_id => {
                Ok(SessionCreated::Created { created_at_ms })
            }
            SessionCreateReply::Created { .. } => Err(Error::Reply {
                script: SessionCreate::script().name,
                detail: "`created` names another session than the call's".into(),
            }),
            SessionCreateReply::OtherKey => Ok(SessionCreated::OtherKey),
            SessionCreateReply::UserBlocked => Ok(SessionCreated::UserBlocked),
            SessionCreateReply::VerdictExpired => Err(Error::StaleVerdict),
            SessionCreateReply::Continue => unreachable!("settled"),
        }
    }

    /// (Partitioned, step 1) claims the challenge for the session the confirm will create.
    pub async fn challenge_claim(&self, req: &ConfirmRequest<'_>) -> Result<Claimed, Error> {
        self.run(&ChallengeClaim {
            challenge_id: req.challenge_id,
            device_session_id: req.device_session_id,
            user_id: req.user_id,
        })
        .await
    }

    /// (Partitioned, step 3) records the session made on the challenge.
    pub async fn challenge_mark_confirmed(
        &self,
        req: &ConfirmRequest<'_>,
        confirmed_at_ms: u64,
    ) -> Result<MarkedConfirmed, Error> {
        self.run(&ChallengeMarkConfirmed {
            challenge_id: req.challenge_id,
            device_session_id: req.device_session_id,
            client_public_key: req.client_public_key,
            user_id: req.user_id,
            confirmed_at_ms,
            via: req.via.map(|via| via.challenge_id),
        })
        .await
    }
}
