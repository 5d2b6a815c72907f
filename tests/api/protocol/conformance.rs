//! The model's decision tables against the real scripts: every reachable state of a
//! conformance bound is reached on a real Redis by replaying a path to it (the leaves of a
//! breadth-first tree cover every state), each script call through the store's typed inputs;
//! after every step the real reply must be the model's and the real keyspace, read back and
//! abstracted, the model's Redis.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

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
use authsession_testbench::{RedisCluster, RedisServer};
use stateright::Model;

use super::model::{
    Action, Admin, ChallengeStatus, Layout, Protocol, Reply, SessionRec, Sid, Snapshot, State,
    Step, BLOCKED_USER,
};
use crate::helpers::{public_key, unique_email};
use crate::scripts_audit::{hashes, new_user, partitioned_bench, revocation, standalone, Bench};

/// The conformance bound: the checked bounds without the faults a real Redis cannot replay in
/// place (restarts, failed acknowledgements), with one lost reply or crash and the marker's
/// expiry.
fn conformance(layout: Layout) -> Protocol {
    let mut bound = Protocol {
        faults: 1,
        replica_acks: false,
        restarts: false,
        ..super::bounds(layout)
    };
    if layout == Layout::Partitioned {
        // Three steps per confirm: what the single-tag bound already replays with the same
        // scripts (wrong codes: `challenge_verify`; single revokes and republishes:
        // `session_revoke`, `session_projection_republish`) is left out to keep the replay
        // within the default run's time; the block stays, as `session_create` checks its marker.
        for plans in &mut bound.clients {
            plans.retain(|p| p.right_code);
        }
        bound.admin = vec![super::model::AdminOp::Block];
        bound.republishes = 0;
    }
    bound
}

/// Paths from the initial state covering every reachable state: the leaves of a breadth-first
/// tree, each as its actions.
pub(crate) fn covering_paths(protocol: &Protocol) -> (usize, Vec<Vec<Action>>) {
    let init = protocol.init_states().remove(0);
    let mut parent: HashMap<State, Option<(State, Action)>> = HashMap::new();
    parent.insert(init.clone(), None);
    let mut has_child: HashMap<State, bool> = HashMap::new();
    let mut queue = VecDeque::from([init]);
    let mut actions = Vec::new();
    while let Some(state) = queue.pop_front() {
        actions.clear();
        protocol.actions(&state, &mut actions);
        for action in actions.drain(..) {
            let Some(next) = protocol.next_state(&state, action) else {
                continue;
            };
            if parent.contains_key(&next) {
                continue;
            }
            has_child.insert(state.clone(), true);
            parent.insert(next.clone(), Some((state.clone(), action)));
            queue.push_back(next);
        }
    }
    let mut paths = Vec::new();
    for leaf in parent.keys().filter(|s| !has_child.contains_key(*s)) {
        let mut path = Vec::new();
        let mut at = leaf;
        while let Some(Some((prev, action))) = parent.get(at) {
            path.push(*action);
            at = prev;
        }
        path.reverse();
        paths.push(path);
    }
    (parent.len(), paths)
}

/// One replay's real ids, and what the clients and the admin carry between calls.
struct Real {
    challenges: Vec<(ChallengeId, CodeHashes)>,
    wrong: CodeHashes,
    users: Vec<UserId>,
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
    async fn new(b: &Bench, clients: usize) -> Self {
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
                admit: crate::scripts_audit::admit(&b.store, &client),
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
    fn request_id(&mut self, b: &Bench, sid: Sid) -> DeviceSessionId {
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
    fn session(&self, sid: Sid) -> DeviceSessionId {
        self.created
            .get(&sid)
            .cloned()
            .unwrap_or_else(DeviceSessionId::generate)
    }

    fn sid_of(&self, id: &str) -> Sid {
        self.ids
            .iter()
            .find(|(session, _)| session.as_str() == id)
            .map(|(_, sid)| *sid)
            .unwrap_or_else(|| panic!("a session id of this replay: {id}"))
    }

    fn created(&mut self, id: &DeviceSessionId) -> Reply {
        let sid = self.sid_of(id.as_str());
        self.created.insert(sid, id.clone());
        Reply::Created(sid)
    }

    fn key_of(&self, key: &str) -> u8 {
        self.keys
            .iter()
            .position(|k| k.to_string() == key)
            .expect("a key of this replay") as u8
    }
}

fn rejection(r: Rejection) -> Reply {
    Reply::Rejected(match r {
        Rejection::NotFound => "not_found",
        Rejection::Expired => "expired",
        Rejection::InvalidCode => "invalid_code",
        Rejection::TooManyAttempts => "too_many_attempts",
        Rejection::AlreadyConfirmed => "already_confirmed",
    })
}

/// Runs the script call `action` stands for on the real Redis; its reply (`None`: no call).
async fn run(
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
                }
            }
            Some(match client.step {
                Step::Verify => {
                    let verified = store
                        .challenge_verify(
                            challenge_id,
                            code_hashes,
                            key,
                            u32::from(protocol.max_attempts),
                            crate::scripts_audit::admit(store, &real.client),
                            &RequestId::generate(),
                            None,
                        )
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
                        Verified::Window(_) => panic!("the model sends no throttled challenge"),
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

async fn republish(b: &Bench, real: &Real, sid: Sid) -> Reply {
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

/// What the model's reply for `action` is, from `state`.
fn model_reply(protocol: &Protocol, state: &State, action: Action) -> Option<Reply> {
    let mut s = state.clone();
    match action {
        Action::Advance(i) => protocol.client_step(&mut s, i),
        Action::Revoke(sid) => Some(Protocol::revoke(&mut s.db, sid)),
        Action::Batch => {
            let Admin::Batches { block, batch, .. } = s.admin else {
                unreachable!()
            };
            Some(Protocol::batch(&mut s.db, BLOCKED_USER, block, batch))
        }
        Action::Republish(sid) => Some(Protocol::republish(&mut s.db, sid)),
        _ => None,
    }
}

/// Redis as the model sees it, per user where the model keeps one list.
#[derive(Debug, PartialEq, Eq)]
struct View {
    challenges: Vec<(ChallengeStatus, u8, Option<Sid>)>,
    sessions: BTreeMap<Sid, SessionRec>,
    snapshots: BTreeMap<Sid, Snapshot>,
    active: Vec<Vec<Sid>>,
    marker: Vec<bool>,
}

fn model_view(state: &State) -> View {
    let db = &state.db;
    View {
        challenges: db
            .challenges
            .iter()
            .map(|c| (c.status.clone(), c.attempts, c.claim))
            .collect(),
        sessions: db.sessions.clone(),
        snapshots: db.snapshots.clone(),
        active: (0..2)
            .map(|u| db.active.iter().copied().filter(|s| s.1 == u).collect())
            .collect(),
        marker: db.marker.to_vec(),
    }
}

async fn real_view(b: &Bench, real: &Real) -> View {
    let (store, keys) = (&b.store, &b.store.keys);
    let mut challenges = Vec::new();
    for (id, _) in &real.challenges {
        let f: Vec<Option<String>> = store
            .redis
            .query(
                redis::cmd("HMGET")
                    .arg(keys.challenge(id))
                    .arg("status")
                    .arg("device_session_id")
                    .arg("client_public_key")
                    .arg("attempts")
                    .arg("claimed_by"),
            )
            .await
            .unwrap();
        let status = match f[0].as_deref() {
            Some("confirmed_pending_expire") => ChallengeStatus::Confirmed {
                sid: real.sid_of(f[1].as_deref().unwrap()),
                key: real.key_of(f[2].as_deref().unwrap()),
            },
            _ => ChallengeStatus::Sent,
        };
        let attempts = f[3].as_deref().map_or(0, |a| a.parse().unwrap());
        let claim = f[4].as_deref().map(|id| real.sid_of(id));
        challenges.push((status, attempts, claim));
    }
    let (mut sessions, mut snapshots) = (BTreeMap::new(), BTreeMap::new());
    for sid in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        let id = real.session(sid);
        let f: HashMap<String, String> = store
            .redis
            .query(redis::cmd("HGETALL").arg(keys.session(&id)))
            .await
            .unwrap();
        if !f.is_empty() {
            sessions.insert(
                sid,
                SessionRec {
                    key: real.key_of(&f["client_public_key"]),
                    active: f["status"] == "active",
                    version: f["version"].parse().unwrap(),
                },
            );
        }
        let raw: Option<String> = store
            .redis
            .query(redis::cmd("GET").arg(keys.gateway_session(&id)))
            .await
            .unwrap();
        if let Some(raw) = raw {
            let json: serde_json::Value = serde_json::from_str(&raw).unwrap();
            snapshots.insert(
                sid,
                Snapshot {
                    active: json["status"] == "active",
                    version: json["version"].as_u64().unwrap() as u8,
                },
            );
        }
    }
    let mut active = Vec::new();
    let mut marker = Vec::new();
    for user in &real.users {
        let ids: Vec<String> = store
            .redis
            .query(
                redis::cmd("ZRANGE")
                    .arg(keys.user_active_sessions(user))
                    .arg(0)
                    .arg(-1),
            )
            .await
            .unwrap();
        active.push(ids.iter().map(|id| real.sid_of(id)).collect());
        let exists: bool = store
            .redis
            .query(redis::cmd("EXISTS").arg(keys.user_blocked(user)))
            .await
            .unwrap();
        marker.push(exists);
    }
    View {
        challenges,
        sessions,
        snapshots,
        active,
        marker,
    }
}

/// Replays `path` on the real Redis, checking every reply and every state on the way.
async fn replay(protocol: &Protocol, b: &Bench, path: &[Action]) -> usize {
    let mut real = Real::new(b, protocol.clients.len()).await;
    let mut state = protocol.init_states().remove(0);
    let mut calls = 0;
    for (n, action) in path.iter().enumerate() {
        let expected = model_reply(protocol, &state, *action);
        let got = run(protocol, b, &mut real, &state, *action).await;
        let next = protocol
            .next_state(&state, *action)
            .expect("a path of the model");
        assert_eq!(
            got, expected,
            "step {n} ({action:?}) of {path:?}: the script answered otherwise than the model"
        );
        if got.is_some() {
            calls += 1;
            assert_eq!(
                real_view(b, &real).await,
                model_view(&next),
                "after step {n} ({action:?}) of {path:?}: Redis differs from the model"
            );
        }
        state = next;
    }
    calls
}

async fn conforms(layout: Layout, b: &Bench) {
    let protocol = conformance(layout);
    let (states, paths) = covering_paths(&protocol);
    let started = Instant::now();
    let mut calls = 0;
    for path in &paths {
        calls += replay(&protocol, b, path).await;
    }
    println!(
        "{layout:?}: {states} reachable states, {} paths, {calls} script calls replayed and \
         checked in {:.1} s",
        paths.len(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn the_models_tables_are_the_scripts_in_every_reachable_state_single_tag() {
    let redis = RedisServer::start().await;
    conforms(Layout::SingleTag, &standalone(&redis).await).await;
}

#[tokio::test]
async fn the_models_tables_are_the_scripts_in_every_reachable_state_partitioned() {
    let cluster = RedisCluster::start(3, 0).await;
    conforms(Layout::Partitioned, &partitioned_bench(&cluster).await).await;
}

#[test]
fn the_conformance_bound_is_covered_by_its_paths() {
    for layout in [Layout::SingleTag, Layout::Partitioned] {
        let protocol = conformance(layout);
        let (states, paths) = covering_paths(&protocol);
        let steps: usize = paths.iter().map(Vec::len).sum();
        println!(
            "{layout:?}: {states} states, {} paths, {steps} steps",
            paths.len()
        );
        assert!(states > 100);
    }
}

/// The user's active index, oldest first: a plan that covers whatever a step meets there.
async fn active(store: &Store, user: &UserId) -> Vec<DeviceSessionId> {
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
