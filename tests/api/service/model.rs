//! Model-based test: a pure reference model of challenges, guess budgets, sessions, versions and
//! the gateway projection, and random sequences of sends, confirms (right, wrong, replayed, with
//! another key), revokes, blocks and limit changes run against the real service and Redis,
//! comparing every reply and the final state with the model.

use std::collections::HashMap;

use authsession::config;
use authsession_testbench::{invariants, RedisCluster};
use proptest::prelude::*;
use redis::AsyncCommands;
use serde_json::Value;

use crate::helpers::{challenge_id, harness, Harness};

const EMAILS: usize = 3;
const KEYS: usize = 2;
const MAX_ATTEMPTS: u32 = 3;
const BUDGET: u32 = 5;

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Send(usize),
    ConfirmRight {
        challenge: usize,
        key: usize,
    },
    ConfirmWrong(usize),
    Revoke(usize),
    Block(usize),
    SetLimit(u32),
    /// A clock jump past the challenge's expiry (its `expires_at_ms` moved into the past).
    Expire(usize),
    /// Two identical confirms at the same time.
    ConfirmTwice {
        challenge: usize,
        key: usize,
    },
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..EMAILS).prop_map(Op::Send),
        4 => (0..8usize, 0..KEYS).prop_map(|(challenge, key)| Op::ConfirmRight { challenge, key }),
        2 => (0..8usize).prop_map(Op::ConfirmWrong),
        2 => (0..8usize).prop_map(Op::Revoke),
        1 => (0..EMAILS).prop_map(Op::Block),
        1 => (1..4u32).prop_map(Op::SetLimit),
        1 => (0..8usize).prop_map(Op::Expire),
        2 => (0..8usize, 0..KEYS).prop_map(|(challenge, key)| Op::ConfirmTwice { challenge, key }),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum Status {
    Sent(String),
    /// Inside the address's resend window: takes the code of, and confirms as, the challenge
    /// that opened it.
    Throttled {
        opener: usize,
    },
    Suppressed,
    /// Confirmed through challenge `via` (itself, or a throttled follower of its window).
    Confirmed {
        session: usize,
        key: usize,
        via: usize,
    },
}

#[derive(Debug)]
struct Challenge {
    id: String,
    /// The code that was mailed, if any (kept after the status moves on).
    code: Option<String>,
    email: usize,
    status: Status,
    attempts: u32,
    expired: bool,
}

#[derive(Debug)]
struct Session {
    id: String,
    email: usize,
    active: bool,
    version: u64,
}

#[derive(Default, Debug)]
struct Model {
    challenges: Vec<Challenge>,
    sessions: Vec<Session>,
    /// The challenge that opened each address's resend window (the model's window never ends).
    opener: [Option<usize>; EMAILS],
    blocked: [bool; EMAILS],
    failures: [u32; EMAILS],
    user_id: HashMap<usize, String>,
    limit: Option<u32>,
}

impl Model {
    /// Whether confirms of challenge `i` answer 429: its attempts, or its address's budget.
    fn locked(&self, i: usize) -> bool {
        let c = &self.challenges[i];
        c.attempts >= MAX_ATTEMPTS || self.failures[c.email] >= BUDGET
    }

    /// A failed confirm of challenge `i`: one attempt, and one of the address's budget.
    fn charge(&mut self, i: usize) {
        self.challenges[i].attempts += 1;
        self.failures[self.challenges[i].email] += 1;
    }

    /// Whether a confirm presented through `via` finds `target` expired: the presented
    /// challenge's own expiry (a follower answers as an opener of its age, issue 36 finding 4).
    fn expired(&self, via: usize, target: usize) -> bool {
        via == target && self.challenges[target].expired
    }

    /// Whether `target` was confirmed through another challenge than `via`: then it is judged as
    /// if still open (issue 36 finding 3).
    fn elsewhere(&self, via: usize, target: usize) -> bool {
        matches!(self.challenges[target].status, Status::Confirmed { via: v, .. } if v != via)
    }

    /// The challenge a confirm of `i` acts on: a throttled one's opener, unless the throttled
    /// challenge itself has expired (`None`: the confirm answers 410).
    fn target(&self, i: usize) -> Option<usize> {
        match self.challenges[i].status {
            Status::Throttled { .. } if self.challenges[i].expired => None,
            Status::Throttled { opener } => Some(opener),
            _ => Some(i),
        }
    }

    fn active_of(&self, email: usize) -> Vec<usize> {
        (0..self.sessions.len())
            .filter(|&i| self.sessions[i].email == email && self.sessions[i].active)
            .collect()
    }
}

fn email(i: usize) -> String {
    format!("model{i}@example.com")
}

fn keys() -> [String; KEYS] {
    use base64::Engine;
    [[1u8; 32], [2u8; 32]].map(|k| base64::engine::general_purpose::STANDARD.encode(k))
}

async fn step(h: &Harness, m: &mut Model, op: &Op) -> Result<(), String> {
    let keys = keys();
    let check = |what: &str, got: u16, want: u16, body: &Value| {
        if got == want {
            Ok(())
        } else {
            Err(format!("{what}: got {got} {body}, model says {want}"))
        }
    };
    match *op {
        Op::Send(e) => {
            let reply = h.app.send_email_code(&email(e)).await;
            check("send", reply.status, 200, &reply.body)?;
            let id = reply.body["challenge_id"].as_str().unwrap().to_owned();
            let status = if let Some(opener) = m.opener[e] {
                Status::Throttled { opener }
            } else if m.blocked[e] {
                m.opener[e] = Some(m.challenges.len());
                Status::Suppressed
            } else {
                m.opener[e] = Some(m.challenges.len());
                Status::Sent(h.mail.code_for(&id).ok_or("model expected a delivery")?)
            };
            let stored = h.challenge_field(&id, "status").await.unwrap_or_default();
            let want = match status {
                Status::Sent(_) => "sent",
                Status::Throttled { .. } => "delivery_throttled",
                _ => "delivery_suppressed",
            };
            if stored != want {
                return Err(format!("send: challenge is {stored}, model says {want}"));
            }
            let code = match &status {
                Status::Sent(code) => Some(code.clone()),
                _ => None,
            };
            m.challenges.push(Challenge {
                id,
                code,
                email: e,
                status,
                attempts: 0,
                expired: false,
            });
        }
        Op::ConfirmRight { challenge, .. } | Op::ConfirmWrong(challenge)
            if challenge >= m.challenges.len() => {}
        Op::ConfirmRight {
            challenge: via,
            key,
        } => {
            let via_id = m.challenges[via].id.clone();
            let Some(challenge) = m.target(via) else {
                let reply = h.app.confirm(&via_id, "123456", &keys[key]).await;
                return check("expired throttled", reply.status, 410, &reply.body);
            };
            let c = &m.challenges[challenge];
            let code = c.code.clone().unwrap_or_else(|| "123456".to_owned());
            let reply = h.app.confirm(&via_id, &code, &keys[key]).await;
            let e = c.email;
            let locked = m.locked(challenge);
            let expired = m.expired(via, challenge);
            let elsewhere = m.elsewhere(via, challenge);
            match c.status.clone() {
                // Confirmed through another challenge: open to this one, the right code the
                // owner's (409).
                Status::Confirmed { .. } if elsewhere && expired => check(
                    "expired, confirmed elsewhere",
                    reply.status,
                    410,
                    &reply.body,
                )?,
                Status::Confirmed { .. } if elsewhere && locked => check(
                    "locked, confirmed elsewhere",
                    reply.status,
                    429,
                    &reply.body,
                )?,
                Status::Confirmed { .. } if elsewhere => {
                    check("right, confirmed elsewhere", reply.status, 409, &reply.body)?
                }
                // A confirmed challenge locks like any other: the identical retry included.
                Status::Confirmed { .. } if locked => {
                    check("locked confirmed", reply.status, 429, &reply.body)?
                }
                Status::Confirmed {
                    session, key: k, ..
                } if k == key => {
                    check("identical retry", reply.status, 200, &reply.body)?;
                    if reply.body["device_session_id"] != m.sessions[session].id.as_str() {
                        return Err("identical retry returned another session".into());
                    }
                }
                Status::Confirmed { .. } => check("other key", reply.status, 409, &reply.body)?,
                _ if expired => check("expired", reply.status, 410, &reply.body)?,
                _ if locked => check("locked", reply.status, 429, &reply.body)?,
                Status::Throttled { .. } => unreachable!("a target is never throttled"),
                Status::Suppressed => {
                    check("no code", reply.status, 422, &reply.body)?;
                    m.charge(challenge);
                }
                Status::Sent(_) if m.blocked[e] => {
                    check("blocked", reply.status, 403, &reply.body)?
                }
                Status::Sent(_) => {
                    check("confirm", reply.status, 200, &reply.body)?;
                    let id = reply.body["device_session_id"].as_str().unwrap().to_owned();
                    let session = h
                        .app
                        .get_internal(&format!("/api/v1/internal/sessions/{id}"))
                        .await;
                    let user = session.body["user_id"].as_str().unwrap().to_owned();
                    if m.user_id.entry(e).or_insert_with(|| user.clone()) != &user {
                        return Err(format!("address {e} confirmed into a second user {user}"));
                    }
                    let limit = m.limit.unwrap_or(50) as usize;
                    let active = m.active_of(e);
                    let excess = (active.len() + 1).saturating_sub(limit).min(50);
                    for &old in active.iter().take(excess) {
                        m.sessions[old].active = false;
                        m.sessions[old].version += 1;
                    }
                    m.sessions.push(Session {
                        id,
                        email: e,
                        active: true,
                        version: 1,
                    });
                    m.challenges[challenge].status = Status::Confirmed {
                        session: m.sessions.len() - 1,
                        key,
                        via,
                    };
                }
            }
        }
        Op::ConfirmWrong(via) => {
            let via_id = m.challenges[via].id.clone();
            let Some(challenge) = m.target(via) else {
                let reply = h.app.confirm(&via_id, "123456", &keys[0]).await;
                return check("expired throttled", reply.status, 410, &reply.body);
            };
            let c = &m.challenges[challenge];
            let wrong = if c.code.as_deref() == Some("000000") {
                "111111"
            } else {
                "000000"
            };
            let reply = h.app.confirm(&via_id, wrong, &keys[0]).await;
            let elsewhere = m.elsewhere(via, challenge);
            let open = elsewhere || !matches!(c.status, Status::Confirmed { .. });
            if open && m.expired(via, challenge) {
                return check("expired", reply.status, 410, &reply.body);
            }
            match c.status {
                _ if m.locked(challenge) => check("locked", reply.status, 429, &reply.body)?,
                // Confirmed through another challenge: a wrong guess as on an open one.
                Status::Confirmed { .. } if elsewhere => {
                    check("wrong, confirmed elsewhere", reply.status, 422, &reply.body)?;
                    m.charge(challenge);
                }
                // No oracle: the same answer as another key with the right code, and it counts.
                Status::Confirmed { .. } => {
                    check("wrong on confirmed", reply.status, 409, &reply.body)?;
                    m.charge(challenge);
                }
                _ => {
                    check("wrong", reply.status, 422, &reply.body)?;
                    m.charge(challenge);
                }
            }
        }
        Op::Expire(c) if c >= m.challenges.len() => {}
        Op::Expire(c) => {
            let mut conn = h.app.redis.clone();
            let key = h.app.keys().challenge(&challenge_id(&m.challenges[c].id));
            let () = conn.hset(key, "expires_at_ms", 1).await.unwrap();
            m.challenges[c].expired = true;
        }
        Op::ConfirmTwice { challenge, key } => {
            // Only where one confirm would create (or return) a session: then two at once must
            // agree on one session.
            let Some(target) = m
                .challenges
                .get(challenge)
                .and_then(|_| m.target(challenge))
            else {
                return Ok(());
            };
            let c = &m.challenges[target];
            let fresh = matches!(c.status, Status::Sent(_))
                && !m.expired(challenge, target)
                && c.attempts < MAX_ATTEMPTS
                && m.failures[c.email] < BUDGET
                && !m.blocked[c.email];
            let replay = matches!(c.status, Status::Confirmed { key: k, via, .. } if k == key && via == challenge)
                && c.attempts < MAX_ATTEMPTS
                && m.failures[c.email] < BUDGET;
            if !(fresh || replay) {
                return Ok(());
            }
            // Sent to the challenge the op names (a throttled one goes on to its opener).
            let (id, code) = (m.challenges[challenge].id.clone(), c.code.clone().unwrap());
            let (a, b) = tokio::join!(
                h.app.confirm(&id, &code, &keys[key]),
                h.app.confirm(&id, &code, &keys[key])
            );
            if a.status != 200 || b.status != 200 || a.body != b.body {
                return Err(format!(
                    "concurrent identical confirms disagree: {a:?} / {b:?}"
                ));
            }
            // The model then takes it as one confirm (a replay changes nothing).
            if fresh {
                Box::pin(step(h, m, &Op::ConfirmRight { challenge, key })).await?;
            }
        }
        Op::Revoke(s) if s >= m.sessions.len() => {}
        Op::Revoke(s) => {
            let reply = h
                .app
                .post_internal(
                    &format!("/api/v1/internal/sessions/{}/revoke", m.sessions[s].id),
                    None,
                )
                .await;
            check("revoke", reply.status, 200, &reply.body)?;
            let want = if m.sessions[s].active {
                "revoked"
            } else {
                "already_revoked"
            };
            if reply.body["outcome"] != want {
                return Err(format!("revoke: {} vs model {want}", reply.body["outcome"]));
            }
            if m.sessions[s].active {
                m.sessions[s].active = false;
                m.sessions[s].version += 1;
            }
        }
        Op::Block(e) => {
            let Some(user) = m.user_id.get(&e).cloned() else {
                return Ok(());
            };
            let reply = h
                .app
                .post_internal(&format!("/api/v1/internal/users/{user}/block"), None)
                .await;
            check("block", reply.status, 200, &reply.body)?;
            let active = m.active_of(e);
            if reply.body["revoked_count"] != active.len() {
                return Err(format!(
                    "block revoked {} vs model {}",
                    reply.body["revoked_count"],
                    active.len()
                ));
            }
            for s in active {
                m.sessions[s].active = false;
                m.sessions[s].version += 1;
            }
            m.blocked[e] = true;
        }
        Op::SetLimit(n) => {
            let mut conn = h.app.redis.clone();
            let () = conn
                .hset(h.app.keys().config(), "max_active_sessions_per_user", n)
                .await
                .unwrap();
            m.limit = Some(n);
            tokio::time::sleep(std::time::Duration::from_millis(3)).await; // past the refresh interval
        }
    }
    Ok(())
}

/// The model's settings: a short guess budget, a long resend window, limits read at once.
const SETTINGS: [(&str, &str); 4] = [
    (config::RESEND_COOLDOWN, "1h"),
    (config::CHALLENGE_MAX_ATTEMPTS, "3"),
    (config::CONFIRM_FAILURE_BUDGET, "5"),
    (config::CONFIG_REFRESH_INTERVAL, "1ms"),
];

async fn run_case(ops: Vec<Op>) -> Result<(), String> {
    let h = harness(&SETTINGS).await;
    run_ops(&h, &ops).await?;
    let mut conn = h.redis.connection().await;
    let violations = invariants::check(&mut conn, &h.app.config).await;
    if violations.is_empty() {
        Ok(())
    } else {
        Err(format!("invariants: {violations:?}"))
    }
}

/// The same sequence in the partitioned layout (8 partitions on a 3-primary cluster, a fresh
/// namespace per case): confirms run in steps across two partitions and must match the model.
pub(crate) async fn run_partitioned_case(
    cluster: &RedisCluster,
    ops: Vec<Op>,
) -> Result<(), String> {
    let h = crate::topologies::deployments::partitioned_harness(cluster, 8, &SETTINGS).await;
    run_ops(&h, &ops).await?;
    let violations = invariants::check_cluster(cluster, &h.app.config).await;
    if violations.is_empty() {
        Ok(())
    } else {
        Err(format!("invariants: {violations:?}"))
    }
}

/// Runs `ops`, then compares every session with the model.
async fn run_ops(h: &Harness, ops: &[Op]) -> Result<(), String> {
    let mut m = Model::default();
    for (i, op) in ops.iter().enumerate() {
        step(h, &mut m, op)
            .await
            .map_err(|e| format!("step {i} {op:?}: {e}"))?;
        // Creation times are milliseconds: keep them distinct so "oldest" is well defined.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    for s in &m.sessions {
        let status = h.session_field(&s.id, "status").await.unwrap_or_default();
        let version = h.session_field(&s.id, "version").await.unwrap_or_default();
        let want = if s.active { "active" } else { "revoked" };
        if status != want || version != s.version.to_string() {
            return Err(format!(
                "session {} is {status} v{version}, model {want} v{}",
                s.id, s.version
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_operation_sequences_match_the_reference_model(ops in proptest::collection::vec(op(), 1..30)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let outcome = runtime.block_on(run_case(ops));
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}
