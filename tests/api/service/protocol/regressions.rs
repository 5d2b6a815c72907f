//! Counterexamples the protocol model found, and what the model assumes of Redis, each on a
//! real Redis.

use authsession::domain::{ClientPublicKey, Email, RequestId};
use authsession::store::challenges::ChallengeVerify;
use authsession::store::challenges::{Confirmed, Rejection, Verified};
use authsession_testbench::RedisServer;

use crate::helpers::{public_key, unique_email};
use crate::service::scripts_audit::{
    client, confirm_request, hashes, new_user, sent_challenge, standalone,
};

/// Model counterexample (single-tag): two clients verify one challenge with the right code and
/// different keys; the first confirm commits; the second, for the same user, derives the same
/// session id, and the old script answered it `created` with the first client's session (bound
/// to the other key) instead of refusing it.
#[tokio::test]
async fn a_twin_confirm_with_another_key_is_refused_after_the_first_committed() {
    let redis = RedisServer::start().await;
    let b = standalone(&redis).await;
    let email = Email::parse(&unique_email()).unwrap();
    let (id, code) = sent_challenge(&b, &email).await;
    let code_hashes = hashes(&id, &code);
    let user = new_user();
    let session = b.store.keys.layout().device_session_id(&id, &user);
    let (first, twin) = (
        ClientPublicKey::parse(&public_key()).unwrap(),
        ClientPublicKey::parse(&public_key()).unwrap(),
    );
    let mut requests = Vec::new();
    for key in [&first, &twin] {
        let verified = b
            .store
            .challenge_verify(ChallengeVerify {
                challenge_id: &id,
                code_hashes: &code_hashes,
                client_public_key: key,
                max_attempts: 5,
                admit: Some(&client()),
                attempt_id: &RequestId::generate(),
                address: Some(email.hash()).cloned(),
                via: None,
            })
            .await
            .unwrap();
        let Verified::Ok { verified_at_ms, .. } = verified else {
            panic!("{verified:?}")
        };
        let mut request = confirm_request(&id, &code_hashes, key, &user, &session);
        request.verified_at_ms = verified_at_ms;
        requests.push(request);
    }

    let created = authsession::flows::confirm_email_code::open_session(&b.store, &requests[0])
        .await
        .unwrap();
    let twin_answer = authsession::flows::confirm_email_code::open_session(&b.store, &requests[1])
        .await
        .unwrap();
    let replay = authsession::flows::confirm_email_code::open_session(&b.store, &requests[0])
        .await
        .unwrap();

    assert_eq!(created, Confirmed::Created(session.clone()));
    assert_eq!(
        twin_answer,
        Confirmed::Rejected(Rejection::AlreadyConfirmed),
        "the twin holds another key: the session is not its"
    );
    assert_eq!(
        replay,
        Confirmed::Created(session),
        "the first confirm's replay"
    );
}

/// The model's `fence` assumption, on a real Redis: a confirm's write reaches the primary but no
/// replica in time (503); the client's identical retry, served by another instance, finds the
/// session with a read-only call (`confirmed`). Were `WAIT` to cover only the connection's own
/// writes, that retry would answer 200 at once and a failover could lose the session it reports
/// (the model finds that path with `fence: false`). Redis 7 sets a connection's replication
/// offset to the primary's on every script call, written or not, so the retry's `WAIT` covers
/// the unreplicated session and the retry answers 503 until a replica has it.
#[tokio::test]
async fn a_retry_is_not_acknowledged_while_the_write_it_reports_is_unreplicated() {
    use authsession::config;
    use std::collections::BTreeMap;
    use std::time::Duration;

    let primary = RedisServer::start().await;
    let replica = RedisServer::start_with(&[
        "--replicaof",
        "127.0.0.1",
        &primary.port().to_string(),
        "--enable-debug-command",
        "yes",
    ])
    .await;
    let mut replica_conn = replica.connection().await;
    for _ in 0..100 {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut replica_conn)
            .await
            .unwrap();
        if info.contains("master_link_status:up") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The replica acknowledges writes before the test relies on it (on a loaded machine its
    // first acknowledgement can take longer than the 300 ms the calls below allow).
    let mut primary_conn = primary.connection().await;
    let () = redis::cmd("SET")
        .arg("replica-warmup")
        .arg(1)
        .query_async(&mut primary_conn)
        .await
        .unwrap();
    let acked: u32 = redis::cmd("WAIT")
        .arg(1)
        .arg(10_000)
        .query_async(&mut primary_conn)
        .await
        .unwrap();
    assert_eq!(acked, 1, "the replica acknowledges");
    let env = BTreeMap::from([
        (config::REDIS_ADDR, primary.addr()),
        (config::REDIS_MIN_REPLICA_ACKS, "1".to_owned()),
        (config::REDIS_REPLICA_ACK_TIMEOUT, "300ms".to_owned()),
        (config::SEND_RATE_LIMIT_PER_IP, "off".to_owned()),
        (config::CONFIRM_RATE_LIMIT_PER_IP, "off".to_owned()),
    ]);
    // Two instances of the service behind one load balancer.
    let (one, other) = (
        crate::service::scripts_audit::store_for(&env),
        crate::service::scripts_audit::store_for(&env),
    );
    let b = crate::service::scripts_audit::Bench {
        store: one,
        conn: authsession::store::Dedicated::Single(primary.connection().await),
    };
    let email = Email::parse(&unique_email()).unwrap();
    let (id, code) = sent_challenge(&b, &email).await;
    let code_hashes = hashes(&id, &code);
    let key = ClientPublicKey::parse(&public_key()).unwrap();
    let user = new_user();
    let session = b.store.keys.layout().device_session_id(&id, &user);
    let verified = b
        .store
        .challenge_verify(ChallengeVerify {
            challenge_id: &id,
            code_hashes: &code_hashes,
            client_public_key: &key,
            max_attempts: 5,
            admit: Some(&client()),
            attempt_id: &RequestId::generate(),
            address: Some(email.hash()).cloned(),
            via: None,
        })
        .await
        .unwrap();
    let Verified::Ok { verified_at_ms, .. } = verified else {
        panic!("{verified:?}")
    };
    let mut request = confirm_request(&id, &code_hashes, &key, &user, &session);
    request.verified_at_ms = verified_at_ms;

    // The replica stalls: it acknowledges nothing for 3 s.
    tokio::spawn(async move {
        let _: redis::RedisResult<()> = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(3)
            .query_async(&mut replica_conn)
            .await;
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first = authsession::flows::confirm_email_code::open_session(&b.store, &request).await;
    assert!(
        matches!(first, Err(authsession::store::Error::ReplicaAcks { .. })),
        "{first:?}"
    );
    let retry = other
        .challenge_verify(ChallengeVerify {
            challenge_id: &id,
            code_hashes: &code_hashes,
            client_public_key: &key,
            max_attempts: 5,
            admit: Some(&client()),
            attempt_id: &RequestId::generate(),
            address: Some(email.hash()).cloned(),
            via: None,
        })
        .await;

    assert!(
        matches!(retry, Err(authsession::store::Error::ReplicaAcks { .. })),
        "the retry reports the unreplicated session as committed: {retry:?}"
    );
}
