//! Scenario 10: what each script of a login costs Redis, next to the yardstick of
//! `testcontainers/bench/reference-confirm.lua` (the essential writes of one confirm, no checks), both
//! measured the same way in the same run: `usec` per `EVALSHA` from `INFO commandstats`, the
//! whole script with the commands it runs, one phase per script over distinct keys.

use authsession::store::challenges::ChallengeVerify;
use std::path::Path;

use authsession::domain::{
    ChallengeId, ClientPublicKey, Code, CodeHasher, DeviceSessionId, Email, LoginCode, RequestId,
    Revocation, UserId,
};
use authsession::store::challenges::{ChallengeCreate, ConfirmRequest, DeliveryStatus, Verified};
use authsession::store::Store;
use base64::Engine;

/// `(calls, usec)` of `EVALSHA` so far.
async fn evalsha_stats(conn: &mut redis::aio::MultiplexedConnection) -> (f64, f64) {
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    let line = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        .unwrap_or_default();
    let field = |name: &str| {
        line.split(',')
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (field("calls"), field("usec"))
}

/// Microseconds per `EVALSHA` of `phase`, which runs scripts only.
async fn per_call<F: std::future::Future<Output = ()>>(
    conn: &mut redis::aio::MultiplexedConnection,
    phase: F,
) -> f64 {
    let (calls, usec) = evalsha_stats(conn).await;
    phase.await;
    let (calls_after, usec_after) = evalsha_stats(conn).await;
    (usec_after - usec) / (calls_after - calls).max(1.0)
}

/// The reference script over `n` distinct confirms, as `testcontainers/bench/README.md` calls it.
async fn reference(conn: &mut redis::aio::MultiplexedConnection, body: &str, n: usize) -> f64 {
    let sha = crate::redis_stats::script_load(conn, body).await;
    let mut c = conn.clone();
    per_call(conn, async move {
        for batch in (0..n).collect::<Vec<_>>().chunks(100) {
            let mut pipe = redis::pipe();
            for i in batch {
                pipe.cmd("EVALSHA")
                    .arg(&sha)
                    .arg(5)
                    .arg(format!("ref:ch:{i}"))
                    .arg(format!("ref:s:{i}"))
                    .arg(format!("ref:u:{i}"))
                    .arg(format!("ref:g:{i}"))
                    .arg("ref_events")
                    .arg(format!("sid{i}"))
                    .arg("user1")
                    .arg(1_700_000_000_000u64)
                    .arg("pk")
                    .ignore();
            }
            let () = pipe.query_async(&mut c).await.unwrap();
        }
    })
    .await
}

/// Prints each login script's cost per call and its ratio to the reference script's.
pub async fn script_costs(
    store: &Store,
    conn: &mut redis::aio::MultiplexedConnection,
    n: usize,
    reference_script: &Path,
) {
    println!(
        "\n## 10. Redis cost per script call, next to the reference confirm ({n} calls each)\n"
    );
    let reference_us = match std::fs::read_to_string(reference_script) {
        Ok(body) => Some(reference(conn, &body, n).await),
        Err(e) => {
            println!(
                "  (no reference script at {}: {e})",
                reference_script.display()
            );
            None
        }
    };
    let hasher = CodeHasher::development();
    let client = hasher.client_key([127, 0, 0, 1].into());
    let key = ClientPublicKey::parse(&base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
        .unwrap();
    let logins: Vec<(ChallengeId, Email, LoginCode)> = (0..n)
        .map(|i| {
            let email =
                Email::parse(&format!("cost{i}x{:x}@example.com", rand::random::<u32>())).unwrap();
            let sealed = hasher.seal_address(email.hash());
            (
                store.keys.layout().challenge_id_with(email.hash(), &sealed),
                email,
                LoginCode::generate(),
            )
        })
        .collect();
    let mut rows = Vec::new();
    let mut c = conn.clone();

    let create = per_call(&mut c, async {
        for (id, email, code) in &logins {
            let hash = hasher.hashes(id, code).current;
            store
                .challenge_create(&ChallengeCreate {
                    challenge_id: id,
                    email,
                    code_hash: &hash,
                    locale: None,
                    admit: Some(&client),
                })
                .await
                .unwrap();
        }
    });
    rows.push(("challenge_create", create.await));
    let mark = per_call(&mut c, async {
        for (id, email, _) in &logins {
            store
                .challenge_mark_delivery(id, email, DeliveryStatus::Sent)
                .await
                .unwrap();
        }
    });
    rows.push(("challenge_mark_delivery", mark.await));
    let mut verdicts = Vec::with_capacity(n);
    let verify = per_call(&mut c, async {
        for (id, email, code) in &logins {
            let hashes = hasher.hashes(id, code);
            // The address declared, as the service declares it from the sealed id.
            match store
                .challenge_verify(ChallengeVerify {
                    challenge_id: id,
                    code_hashes: &hashes,
                    client_public_key: &key,
                    max_attempts: 5,
                    admit: Some(&client),
                    attempt_id: &RequestId::generate(),
                    address: Some(email.hash()).cloned(),
                    via: None,
                })
                .await
                .unwrap()
            {
                Verified::Ok { verified_at_ms, .. } => verdicts.push(verified_at_ms),
                other => panic!("verify: {other:?}"),
            }
        }
    });
    rows.push(("challenge_verify", verify.await));
    let sessions: Vec<DeviceSessionId> = (0..n).map(|_| DeviceSessionId::generate()).collect();
    let confirm = per_call(&mut c, async {
        for (i, (id, _, code)) in logins.iter().enumerate() {
            let hashes = hasher.hashes(id, code);
            let user = UserId::parse(&format!("cost{i}")).unwrap();
            let request = ConfirmRequest {
                challenge_id: id,
                code_hashes: &hashes,
                client_public_key: &key,
                user_id: &user,
                device_session_id: &sessions[i],
                max_attempts: 5,
                max_active_sessions: 50,
                verified_at_ms: verdicts[i],
                via: None,
            };
            authsession::flows::confirm_email_code::open_session(store, &request)
                .await
                .unwrap();
        }
    });
    rows.push(("challenge_confirm", confirm.await));
    let revocation = Revocation {
        reason_code: Code::known("admin_revoke"),
        actor_type: Code::known("admin"),
        actor_id: None,
    };
    let revoke = per_call(&mut c, async {
        for id in &sessions {
            store.session_revoke(id, &revocation).await.unwrap();
        }
    });
    rows.push(("session_revoke", revoke.await));

    println!("  | script | us per call | / reference confirm |");
    println!("  |---|---|---|");
    if let Some(r) = reference_us {
        println!("  | reference-confirm.lua | {r:.1} | 1.00 |");
    }
    for (name, us) in rows {
        let ratio = reference_us.map_or("n/a".to_owned(), |r| format!("{:.2}", us / r));
        println!("  | {name} | {us:.1} | {ratio} |");
    }
}
