//! The real side of the conformance replay: each model action run on real Redis through the
//! store's typed script inputs, and its reply in the model's terms.

use authsession::store::challenges::ChallengeVerify;
use std::collections::BTreeMap;

use authsession::domain::RevokeOutcome;
use authsession::domain::{
    ChallengeId, ClientKey, ClientPublicKey, CodeHasher, CodeHashes, DeviceSessionId, Email,
    LoginCode, RequestId, UserId,
};
use authsession::store::challenges::{
    ChallengeCreate, Created, DeliveryStatus, Rejection, Verified,
};
use authsession::store::scripts::challenge_claim::{ChallengeClaim, Claimed};
use authsession::store::scripts::challenge_confirm::{
    ChallengeConfirm, ChallengeConfirmReply, ConfirmRequest,
};
use authsession::store::scripts::challenge_mark_confirmed::{
    ChallengeMarkConfirmed, MarkedConfirmed,
};
use authsession::store::scripts::session_create::{SessionCreate, SessionCreateReply};
use authsession::store::scripts::session_projection_republish::{
    Republished, SessionProjectionRepublish,
};
use authsession::store::scripts::session_revoke::{SessionRevoke, SessionRevokeReply};
use authsession::store::scripts::user_sessions_revoke::{Batch, UserSessionsRevoke};
use authsession::store::scripts::Plan;
use authsession::store::Store;

use crate::helpers::{public_key, unique_email};
use crate::service::scripts_audit::{hashes, new_user, revocation, Bench};
use crate::unit::protocol::model::{
    Action, Admin, Layout, Protocol, Reply, Sid, State, Step, BLOCKED_USER,
};

/// One replay's real ids, and what the clients and the admin carry between calls.
pub(super) struct Real {
    pub(super) challenges: Vec<(ChallengeId, CodeHashes)>,
    wrong: CodeHashes,
    pub(super) users: Vec<UserId>,
    keys: Vec<ClientPublicKey>,
    client: ClientKey,
    /// Per client: the verdict's time and, after `session_create`, the session's creation time.
    verified_at_ms: Vec<u64>,
    created_at_ms: Vec<u64>,
    revoke_all: RequestId,
    /// Every session id a request carried, with the model's id (single-tag ids are drawn per
    /// request, partitioned ones derived), and the one each model session was created with.
    ids: Vec<(DeviceSessionId, Sid)>,
    created: BTreeMap<Sid, DeviceSessionId>,
}

impl Real {
    pub(super) async fn new(b: &Bench, clients: usize) -> Self {
        // A client address of its own per replay, under the bench's admission limits.
        let ip = std::net::Ipv4Addr::from(rand::random::<u32>() | 0x0a00_0000);
        let client = CodeHasher::development().client_key(ip.into());
        let mut challenges = Vec::new();
        for _ in 0..2 {
            let email = Email::parse(&unique_email()).unwrap();
            let id = b.store.keys.layout().new_challenge_id(email.hash());
            let code = LoginCode::generate();
            let code_hashes = hashes(&id, &code);
            let create = ChallengeCreate {
                challenge_id: &id,
                email: &email,
                code_hash: &code_hashes.current,
                locale: None,
                admit: crate::service::scripts_audit::admit(&b.store, &client),
            };
            assert_eq!(
                b.store.challenge_create(&create).await.unwrap(),
                Created::Pending
            );
            b.store
                .challenge_mark_delivery(&id, &email, DeliveryStatus::Sent)
                .await
                .unwrap();
            challenges.push((id, code_hashes));
        }
        Real {
            wrong: hashes(&ChallengeId::generate(), &LoginCode::generate()),
            challenges,
            users: vec![new_user(), new_user()],
            keys: (0..clients)
                .map(|_| ClientPublicKey::parse(&public_key()).unwrap())
                .collect(),
            client,
            verified_at_ms: vec![0; clients],
            created_at_ms: vec![0; clients],
            revoke_all: RequestId::generate(),
            ids: Vec::new(),
            created: BTreeMap::new(),
        }
    }

    /// The session id a confirm request of `sid` carries, as the flow mints it.
    pub(super) fn request_id(&mut self, b: &Bench, sid: Sid) -> DeviceSessionId {
        let (id, _) = &self.challenges[usize::from(sid.0)];
        let session = b
            .store
            .keys
            .layout()
            .device_session_id(id, &self.users[usize::from(sid.1)]);
        self.ids.push((session.clone(), sid));
        session
    }

    /// The session created for `sid` (one of no session when the replay made none: the call
    /// then answers `not_found`, and the comparison says where the replay left the model).
    pub(super) fn session(&self, sid: Sid) -> DeviceSessionId {
        self.created
            .get(&sid)
            .cloned()
            .unwrap_or_else(DeviceSessionId::generate)
    }

    pub(super) fn sid_of(&self, id: &str) -> Sid {
        self.ids
            .iter()
            .find(|(session, _)| session.as_str() == id)
            .map(|(_, sid)| *sid)
            .unwrap_or_else(|| panic!("a session id of this replay: {id}"))
    }

    pub(super) fn created(&mut self, id: &DeviceSessionId) -> Reply {
        let sid = self.sid_of(id.as_str());
        self.created.insert(sid, id.clone());
        Reply::Created(sid)
    }

    pub(super) fn key_of(&self, key: &str) -> u8 {
        self.keys
            .iter()
            .position(|k| k.to_string() == key)
            .expect("a key of this replay") as u8
    }
}

pub(super) fn rejection(r: Rejection) -> Reply {
    Reply::Rejected(match r {
        Rejection::NotFound => "not_found",
        Rejection::Expired => "expired",
        Rejection::InvalidCode => "invalid_code",
        Rejection::TooManyAttempts => "too_many_attempts",
        Rejection::AlreadyConfirmed => "already_confirmed",
    })
}

/// Runs the script call `action` stands for on the real Redis; its reply (`None`: no call).
pub(super) async fn run(
    protocol: &Protocol,
    b: &Bench,
    real: &mut Real,
    state: &State,
    action: Action,
) -> Option<Reply> {
    let store = &b.store;
    match action {
        Action::Advance(i) => {
            let client = state.clients[i];
            let plan = client.plan.unwrap();
            let (challenge_id, right) = real.challenges[usize::from(plan.challenge)].clone();
            let code_hashes = if plan.right_code {
                right
            } else {
                real.wrong.clone()
            };
            let key = real.keys[i].clone();
            let (challenge_id, code_hashes, key) = (&challenge_id, &code_hashes, &key);
            fn confirm<'a>(
                protocol: &Protocol,
                real: &'a Real,
                (challenge_id, code_hashes, key): (
                    &'a ChallengeId,
                    &'a CodeHashes,
                    &'a ClientPublicKey,
                ),
                (i, user): (usize, u8),
                session: &'a DeviceSessionId,
            ) -> ConfirmRequest<'a> {
                ConfirmRequest {
                    challenge_id,
                    code_hashes,
                    client_public_key: key,
                    user_id: &real.users[usize::from(user)],
                    device_session_id: session,
                    max_attempts: u32::from(protocol.max_attempts),
                    max_active_sessions: u32::from(protocol.max_active),
                    verified_at_ms: real.verified_at_ms[i],
                    via: None,
                }
            }
            Some(match client.step {
                Step::Verify => {
                    let verified = store
                        .challenge_verify(ChallengeVerify {
                            challenge_id,
                            code_hashes,
                            client_public_key: key,
                            max_attempts: u32::from(protocol.max_attempts),
                            admit: crate::service::scripts_audit::admit(store, &real.client),
                            attempt_id: &RequestId::generate(),
                            address: None,
                            via: None,
                        })
                        .await
                        .unwrap();
                    match verified {
                        Verified::Ok { verified_at_ms, .. } => {
                            real.verified_at_ms[i] = verified_at_ms;
                            Reply::Ok
                        }
                        Verified::Confirmed(id) => Reply::Confirmed(real.sid_of(id.as_str())),
                        Verified::Rejected(r) => rejection(r),
                        Verified::RateLimited(_) => panic!("rate limited"),
                        Verified::Window { .. } => panic!("the model sends no throttled challenge"),
                    }
                }
                Step::Open(_, user) if protocol.layout == Layout::SingleTag => {
                    let session = real.request_id(b, (plan.challenge, user));
                    let request = confirm(
                        protocol,
                        real,
                        (challenge_id, code_hashes, key),
                        (i, user),
                        &session,
                    );
                    // Planned with the user's whole active index: the step is one commit.
                    let confirm = ChallengeConfirm {
                        request: &request,
                        planned: active(store, &real.users[usize::from(user)]).await,
                    };
                    match store.run(&confirm).await {
                        Ok(Plan::Done(ChallengeConfirmReply::Created {
                            device_session_id,
                            ..
                        })) => real.created(&device_session_id),
                        Ok(Plan::Done(ChallengeConfirmReply::Confirmed(id))) => {
                            Reply::Confirmed(real.sid_of(id.as_str()))
                        }
                        Ok(Plan::Done(ChallengeConfirmReply::Rejected(r))) => rejection(r),
                        Ok(Plan::Done(ChallengeConfirmReply::UserBlocked)) => Reply::UserBlocked,
                        Ok(Plan::Done(ChallengeConfirmReply::VerdictExpired)) => {
                            Reply::VerdictExpired
                        }
                        Ok(Plan::Done(ChallengeConfirmReply::Continue)) => panic!("continue"),
                        Ok(Plan::Need(ids)) => panic!("the whole index was planned: {ids:?}"),
                        Err(_) => Reply::Fails,
                    }
                }
                Step::Open(_, user) => {
                    let session = real.request_id(b, (plan.challenge, user));
                    let claim = ChallengeClaim {
                        challenge_id,
                        device_session_id: &session,
                        user_id: &real.users[usize::from(user)],
                    };
                    match store.run(&claim).await.unwrap() {
                        Claimed::Claimed => Reply::Claimed,
                        Claimed::OtherSession => Reply::OtherSession,
                        Claimed::NotFound => Reply::NotFound,
                    }
                }
                Step::Create(_, user) => {
                    let session = real.request_id(b, (plan.challenge, user));
                    let request = confirm(
                        protocol,
                        real,
                        (challenge_id, code_hashes, key),
                        (i, user),
                        &session,
                    );
                    let create = SessionCreate {
                        request: &request,
                        planned: active(store, &real.users[usize::from(user)]).await,
                    };
                    let Plan::Done(reply) = store.run(&create).await.unwrap() else {
                        panic!("the whole index was planned")
                    };
                    match reply {
                        SessionCreateReply::Created {
                            device_session_id,
                            created_at_ms,
                        } => {
                            real.created_at_ms[i] = created_at_ms;
                            real.created(&device_session_id)
                        }
                        SessionCreateReply::OtherKey => Reply::OtherKey,
                        SessionCreateReply::UserBlocked => Reply::UserBlocked,
                        SessionCreateReply::VerdictExpired => Reply::VerdictExpired,
                        SessionCreateReply::Continue => panic!("continue"),
                    }
                }
                Step::Mark(user) => {
                    let session = real.request_id(b, (plan.challenge, user));
                    let mark = ChallengeMarkConfirmed {
                        challenge_id,
                        device_session_id: &session,
                        client_public_key: key,
                        user_id: &real.users[usize::from(user)],
                        confirmed_at_ms: real.created_at_ms[i],
                        via: None,
                    };
                    match store.run(&mark).await.unwrap() {
                        MarkedConfirmed::Marked => Reply::Marked,
                        MarkedConfirmed::OtherSession => Reply::OtherSession,
                        MarkedConfirmed::NotFound => Reply::NotFound,
                    }
                }
                Step::Repair(sid) => republish(b, real, sid).await,
                Step::Start | Step::Ensure(_) | Step::Done(_) => unreachable!(),
            })
        }
        Action::Revoke(sid) => {
            // Plan, then commit: a `need` names the record's user, and writes nothing.
            let (session, request_id) = (real.session(sid), RequestId::generate());
            let mut user = None;
            let reply = loop {
                let revoke = SessionRevoke {
                    device_session_id: &session,
                    revocation: &revocation(),
                    request_id: &request_id,
                    user: user.clone(),
                };
                match store.run(&revoke).await.unwrap() {
                    Plan::Need(named) if user.is_none() => {
                        user = Some(UserId::parse(&named[0]).unwrap());
                    }
                    Plan::Need(named) => panic!("a second need: {named:?}"),
                    Plan::Done(reply) => break reply,
                }
            };
            Some(match reply {
                SessionRevokeReply::Done(RevokeOutcome::Revoked, _) => Reply::Revoked,
                SessionRevokeReply::Done(RevokeOutcome::AlreadyRevoked, _) => Reply::AlreadyRevoked,
                SessionRevokeReply::NotFound => Reply::NotFound,
            })
        }
        Action::Batch => {
            let Admin::Batches { block, batch, .. } = state.admin else {
                unreachable!()
            };
            let user = &real.users[usize::from(BLOCKED_USER)];
            let planned = active(store, user).await;
            let input = UserSessionsRevoke {
                user_id: user,
                revocation: &revocation(),
                request_id: &real.revoke_all,
                batch_number: u32::from(batch),
                block_marker: block.then(|| std::time::Duration::from_secs(600)),
                planned,
            };
            let mut call = store.call(&input);
            // The model revokes one session per batch.
            *call.arg_mut("batch_size") = "1".into();
            let value = store.redis.invoke(&call).await.unwrap();
            let Plan::Done(Batch {
                revoked, remaining, ..
            }) = redis::FromRedisValue::from_redis_value(value).unwrap()
            else {
                panic!("the whole index was planned")
            };
            Some(Reply::Batch {
                revoked: revoked as u8,
                remaining: remaining as u8,
            })
        }
        Action::Republish(sid) => Some(republish(b, real, sid).await),
        Action::StartRevokeAll { .. } => {
            real.revoke_all = RequestId::generate();
            None
        }
        Action::MarkerExpires => {
            // Time passes beyond the marker's life: the marker goes, and so does every verdict
            // taken before it was set.
            for user in &real.users {
                let key = store.keys.user_blocked(user);
                let _: () = store.redis.query(redis::cmd("DEL").arg(key)).await.unwrap();
            }
            for (i, client) in state.clients.iter().enumerate() {
                let before = matches!(
                    client.step,
                    Step::Ensure(v) | Step::Open(v, _) | Step::Create(v, _) if v.before_marker
                );
                if before {
                    real.verified_at_ms[i] = 1;
                }
            }
            None
        }
        Action::Choose(..) | Action::Ensure(..) | Action::Abort(_) => None,
        Action::AckFails(_) | Action::Restart => unreachable!("not in the conformance bound"),
    }
}

pub(super) async fn republish(b: &Bench, real: &Real, sid: Sid) -> Reply {
    let input = SessionProjectionRepublish {
        device_session_id: &real.session(sid),
        request_id: &RequestId::generate(),
    };
    match b.store.run(&input).await.unwrap() {
        Republished::Repaired { .. } => Reply::Repaired,
        Republished::Current { .. } => Reply::Current,
        Republished::NotFound => Reply::NotFound,
    }
}

/// The user's active index, oldest first: a plan that covers whatever a step meets there.
pub(super) async fn active(store: &Store, user: &UserId) -> Vec<DeviceSessionId> {
    let ids: Vec<String> = store
        .redis
        .query(
            redis::cmd("ZRANGE")
                .arg(store.keys.user_active_sessions(user))
                .arg(0)
                .arg(-1),
        )
        .await
        .unwrap();
    ids.iter()
        .map(|id| DeviceSessionId::from_stored(id))
        .collect()
}
