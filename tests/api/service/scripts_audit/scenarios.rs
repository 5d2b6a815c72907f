//! The audit's scenarios, typed: each script's cases are a `match` over [`ScriptId`], so a script
//! added to `src/store/scripts/mod.rs` does not compile here until it has its scenarios, and
//! `arrange` is a `match` over [`Scenario`], so a scenario cannot lack its arrangement.

use std::fmt;

use authsession::domain::{ChallengeId, ClientPublicKey, Email, LoginCode, RequestId};
use authsession::store::challenges::{ChallengeCreate, Created, DeliveryStatus};
use authsession::store::scripts::access_probe::AccessProbe;
use authsession::store::scripts::challenge_claim::ChallengeClaim;
use authsession::store::scripts::challenge_confirm::ChallengeConfirm;
use authsession::store::scripts::challenge_mark_confirmed::ChallengeMarkConfirmed;
use authsession::store::scripts::challenge_mark_delivery::ChallengeMarkDelivery;
use authsession::store::scripts::challenge_verify::ChallengeVerify;
use authsession::store::scripts::confirm_admit::ConfirmAdmit;
use authsession::store::scripts::send_admit::SendAdmit;
use authsession::store::scripts::session_create::SessionCreate;
use authsession::store::scripts::session_projection_republish::SessionProjectionRepublish;
use authsession::store::scripts::session_revoke::SessionRevoke;
use authsession::store::scripts::user_sessions_revoke::UserSessionsRevoke;
use authsession::store::scripts::{ScriptCall, ScriptId};
use redis::AsyncCommands;

use super::bench::{
    active_ids, admit, client, confirm_call, confirm_request, created_challenge, hashes, login,
    new_user, revocation, sent_challenge, Bench,
};
use crate::helpers::{public_key, unique_email};

/// One state a script acts on, and the call under audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scenario {
    CreateNew,
    CreateThrottled,
    MarkDeliverySent,
    MarkDeliveryFailed,
    VerifyWrongCode,
    VerifyRightCode,
    VerifyThrottledWindow,
    ConfirmFirstLogin,
    ConfirmEvicting,
    SendAdmitFirst,
    ConfirmAdmitFirst,
    SessionCreateFirstLogin,
    SessionCreateEvicting,
    ClaimVerified,
    MarkConfirmedVerified,
    RevokeActive,
    RevokeHealingALostProjection,
    UserSessionsRevokeBatch,
    RepublishMissingSnapshot,
    AccessProbeEveryNamespace,
}

impl Scenario {
    /// The scenarios of `script`.
    pub(crate) fn of(script: ScriptId) -> &'static [Scenario] {
        use Scenario::*;
        match script {
            ScriptId::ChallengeCreate => &[CreateNew, CreateThrottled],
            ScriptId::ChallengeMarkDelivery => &[MarkDeliverySent, MarkDeliveryFailed],
            ScriptId::ChallengeVerify => &[VerifyWrongCode, VerifyRightCode, VerifyThrottledWindow],
            ScriptId::ChallengeConfirm => &[ConfirmFirstLogin, ConfirmEvicting],
            ScriptId::SendAdmit => &[SendAdmitFirst],
            ScriptId::ConfirmAdmit => &[ConfirmAdmitFirst],
            ScriptId::SessionCreate => &[SessionCreateFirstLogin, SessionCreateEvicting],
            ScriptId::ChallengeClaim => &[ClaimVerified],
            ScriptId::ChallengeMarkConfirmed => &[MarkConfirmedVerified],
            ScriptId::SessionRevoke => &[RevokeActive, RevokeHealingALostProjection],
            ScriptId::UserSessionsRevoke => &[UserSessionsRevokeBatch],
            ScriptId::SessionProjectionRepublish => &[RepublishMissingSnapshot],
            ScriptId::AccessProbe => &[AccessProbeEveryNamespace],
        }
    }

    /// Every scenario, script by script.
    pub(crate) fn all() -> impl Iterator<Item = Scenario> {
        ScriptId::ALL
            .iter()
            .flat_map(|s| Scenario::of(*s).iter().copied())
    }

    /// Whether the call is the commit of a plan (the ids or the user it met, declared).
    pub(crate) fn commits_a_plan(self) -> bool {
        use Scenario::*;
        matches!(
            self,
            VerifyWrongCode
                | ConfirmEvicting
                | SessionCreateEvicting
                | RevokeActive
                | UserSessionsRevokeBatch
        )
    }

    fn case(self) -> &'static str {
        use Scenario::*;
        match self {
            CreateNew => "new",
            CreateThrottled => "throttled",
            MarkDeliverySent => "sent",
            MarkDeliveryFailed => "failed",
            VerifyWrongCode => "wrong_code",
            VerifyRightCode => "right_code",
            VerifyThrottledWindow => "throttled_window",
            ConfirmFirstLogin | SessionCreateFirstLogin => "first_login",
            ConfirmEvicting | SessionCreateEvicting => "evicting_past_ghosts_and_pruning",
            SendAdmitFirst | ConfirmAdmitFirst => "first",
            ClaimVerified | MarkConfirmedVerified => "verified",
            RevokeActive => "active",
            RevokeHealingALostProjection => "healing_a_lost_projection",
            UserSessionsRevokeBatch => "batch",
            RepublishMissingSnapshot => "missing_snapshot",
            AccessProbeEveryNamespace => "every_namespace",
        }
    }

    fn script(self) -> ScriptId {
        *ScriptId::ALL
            .iter()
            .find(|s| Scenario::of(**s).contains(&self))
            .expect("every scenario is listed under its script")
    }
}

/// `challenge_create/new`: the script's name, then the case.
impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.script().name(), self.case())
    }
}

/// Arranges the state of `scenario` and returns the call under audit.
pub(crate) async fn arrange(b: &mut Bench, scenario: Scenario) -> ScriptCall<'static> {
    use Scenario::*;
    let store = &b.store;
    let keys = &store.keys;
    let email = Email::parse(&unique_email()).unwrap();
    let wrong = hashes(&ChallengeId::generate(), &LoginCode::generate());
    let code_hash = wrong.current.clone();
    let client = client();
    match scenario {
        CreateNew => {
            let locale = authsession::domain::Locale::parse("en-GB").unwrap();
            store.call(&ChallengeCreate {
                challenge_id: &keys.layout().new_challenge_id(email.hash()),
                email: &email,
                code_hash: &code_hash,
                locale: Some(&locale),
                admit: admit(store, &client),
            })
        }
        CreateThrottled => {
            sent_challenge(b, &email).await;
            b.store.call(&ChallengeCreate {
                challenge_id: &b.store.keys.layout().new_challenge_id(email.hash()),
                email: &email,
                code_hash: &code_hash,
                locale: None,
                admit: admit(&b.store, &client),
            })
        }
        MarkDeliverySent | MarkDeliveryFailed => {
            let (id, _, _) = created_challenge(b, &email).await;
            let outcome = if scenario == MarkDeliverySent {
                DeliveryStatus::Sent
            } else {
                DeliveryStatus::Failed
            };
            store.call(&ChallengeMarkDelivery {
                challenge_id: &id,
                email: &email,
                outcome,
            })
        }
        VerifyWrongCode | VerifyRightCode => {
            let (id, code) = sent_challenge(b, &email).await;
            // One failure already counted, so the budget counter exists and is read.
            let key = ClientPublicKey::parse(&public_key()).unwrap();
            b.store
                .challenge_verify(ChallengeVerify {
                    challenge_id: &id,
                    code_hashes: &wrong,
                    client_public_key: &key,
                    max_attempts: 5,
                    admit: admit(&b.store, &client),
                    attempt_id: &RequestId::generate(),
                    address: None,
                    via: None,
                })
                .await
                .unwrap();
            let hash = if scenario == VerifyRightCode {
                hashes(&id, &code)
            } else {
                wrong
            };
            b.store.call(&ChallengeVerify {
                challenge_id: &id,
                code_hashes: &hash,
                client_public_key: &key,
                max_attempts: 5,
                attempt_id: &RequestId::generate(),
                admit: admit(&b.store, &client),
                address: Some(email.hash().clone()),
                via: None,
            })
        }
        VerifyThrottledWindow => {
            let (_, code) = sent_challenge(b, &email).await;
            let (id, _, created) = created_challenge(b, &email).await;
            assert_eq!(created, Created::Throttled);
            b.store.call(&ChallengeVerify {
                challenge_id: &id,
                code_hashes: &hashes(&id, &code),
                client_public_key: &ClientPublicKey::parse(&public_key()).unwrap(),
                max_attempts: 5,
                attempt_id: &RequestId::generate(),
                admit: admit(&b.store, &client),
                address: None,
                via: None,
            })
        }
        ConfirmFirstLogin => {
            let (id, code) = sent_challenge(b, &email).await;
            let hash = hashes(&id, &code);
            let key = ClientPublicKey::parse(&public_key()).unwrap();
            let user = new_user();
            let session = keys.layout().device_session_id(&id, &user);
            b.store.call(&confirm_call(&confirm_request(
                &id, &hash, &key, &user, &session,
            )))
        }
        SendAdmitFirst => store.call(&SendAdmit {
            challenge_id: &ChallengeId::generate(),
            client: &client,
        }),
        ConfirmAdmitFirst => store.call(&ConfirmAdmit {
            attempt_id: &RequestId::generate(),
            client: &client,
        }),
        SessionCreateFirstLogin | ClaimVerified | MarkConfirmedVerified => {
            let (id, code) = sent_challenge(b, &email).await;
            let hash = hashes(&id, &code);
            let key = ClientPublicKey::parse(&public_key()).unwrap();
            let user = new_user();
            let session = keys.layout().device_session_id(&id, &user);
            let request = confirm_request(&id, &hash, &key, &user, &session);
            if scenario == SessionCreateFirstLogin {
                b.store.call(&SessionCreate {
                    request: &request,
                    planned: Vec::new(),
                })
            } else if scenario == ClaimVerified {
                b.store.call(&ChallengeClaim {
                    challenge_id: &id,
                    device_session_id: &session,
                    user_id: &user,
                })
            } else {
                b.store.call(&ChallengeMarkConfirmed {
                    challenge_id: &id,
                    device_session_id: &session,
                    client_public_key: &key,
                    user_id: &user,
                    confirmed_at_ms: 1_795_867_200_000,
                    via: None,
                })
            }
        }
        ConfirmEvicting | SessionCreateEvicting => {
            let user = new_user();
            let u = user.as_str();
            // A revoked session whose record has expired: its revoked-index entry is due.
            let gone = login(b, &user).await;
            b.store.session_revoke(&gone, &revocation()).await.unwrap();
            let () = b.conn.del(keys.session(&gone)).await.unwrap();
            let () = b
                .conn
                .zadd(keys.user_revoked_sessions(&user), gone.as_str(), 1)
                .await
                .unwrap();
            // Two live sessions at the limit, behind a ghost whose record is gone.
            login(b, &user).await;
            login(b, &user).await;
            // (In the user's partition, as every id the user's indexes hold.)
            let ghost = keys
                .layout()
                .random_device_session_id(keys.layout().of_user(u));
            for index in [keys.user_sessions(&user), keys.user_active_sessions(&user)] {
                let () = b.conn.zadd(index, ghost.as_str(), 0).await.unwrap();
            }
            let (id, code) = sent_challenge(b, &email).await;
            let hash = hashes(&id, &code);
            let key = ClientPublicKey::parse(&public_key()).unwrap();
            let session = keys.layout().device_session_id(&id, &user);
            let request = confirm_request(&id, &hash, &key, &user, &session);
            // The plan: every session the user's active index holds (those over the limit among
            // them).
            let planned = active_ids(b, &user).await;
            if scenario == SessionCreateEvicting {
                b.store.call(&SessionCreate {
                    request: &request,
                    planned,
                })
            } else {
                b.store.call(&ChallengeConfirm {
                    request: &request,
                    planned,
                })
            }
        }
        RevokeActive => {
            let user = new_user();
            let session = login(b, &user).await;
            b.store.call(&SessionRevoke {
                device_session_id: &session,
                revocation: &revocation(),
                request_id: &RequestId::generate(),
                user: Some(user.clone()),
            })
        }
        RevokeHealingALostProjection => {
            let user = new_user();
            let session = login(b, &user).await;
            b.store
                .session_revoke(&session, &revocation())
                .await
                .unwrap();
            let () = b.conn.del(keys.gateway_session(&session)).await.unwrap();
            let () = b
                .conn
                .zadd(keys.user_active_sessions(&user), session.as_str(), 1)
                .await
                .unwrap();
            b.store.call(&SessionRevoke {
                device_session_id: &session,
                revocation: &revocation(),
                request_id: &RequestId::generate(),
                user: Some(user.clone()),
            })
        }
        UserSessionsRevokeBatch => {
            let user = new_user();
            login(b, &user).await;
            login(b, &user).await;
            b.store.call(&UserSessionsRevoke {
                user_id: &user,
                revocation: &revocation(),
                request_id: &RequestId::generate(),
                batch_number: 1,
                block_marker: Some(std::time::Duration::from_secs(600)),
                planned: active_ids(b, &user).await,
            })
        }
        RepublishMissingSnapshot => {
            let session = login(b, &new_user()).await;
            let () = b.conn.del(keys.gateway_session(&session)).await.unwrap();
            b.store.call(&SessionProjectionRepublish {
                device_session_id: &session,
                request_id: &RequestId::generate(),
            })
        }
        AccessProbeEveryNamespace => store.call(&AccessProbe {
            partition: keys.layout().all()[0],
        }),
    }
}
