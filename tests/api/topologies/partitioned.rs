//! The partitioned layout (`AUTHSESSION_REDIS_PARTITIONS` > 1) on a real 3-primary cluster: the
//! confirm runs in two steps in two partitions, and every interruption between them converges
//! on retry to the state of an uninterrupted confirm; ids from another layout are not found.

use std::time::Duration;

use authsession::domain::{ChallengeId, ClientPublicKey, CodeHasher, LoginCode, UserId};
use authsession::store::challenges::{ConfirmRequest, SessionCreated};
use authsession_testbench::{invariants, Behaviour, RedisCluster};
use redis::AsyncCommands;

use crate::helpers::{public_key, unique_email, user_id, Harness};
use crate::topologies::deployments::partitioned_harness;

/// The cluster's invariants, read from every primary.
async fn violations(h: &Harness, cluster: &RedisCluster) -> Vec<String> {
    invariants::check_cluster(cluster, &h.app.config).await
}

/// How many events of `id` its partition's stream holds.
async fn events_of(h: &Harness, id: &str) -> usize {
    let keys = &h.app.store().keys;
    let stream = keys.stream(keys.layout().of_id(id).expect("an id of this deployment"));
    let entries: Vec<(String, std::collections::HashMap<String, String>)> =
        h.app.redis.clone().xrange_all(&stream).await.unwrap();
    entries
        .iter()
        .filter(|(_, f)| f.get("device_session_id").map(String::as_str) == Some(id))
        .count()
}

/// A process that dies after the session step and before the challenge step leaves a session
/// whose challenge still says `sent`. The client's retry finds that session (its id is derived
/// from the challenge) instead of making a second, marks the challenge, and answers what an
/// uninterrupted confirm would have: one session, one event, the challenge confirmed. Another
/// key is refused, as after any confirm.
#[tokio::test]
async fn a_confirm_interrupted_between_its_steps_converges_on_retry() {
    let cluster = RedisCluster::start(3, 0).await;
    let h = partitioned_harness(&cluster, 64, &[]).await;
    let email = unique_email();
    let user = UserId::parse(&h.users.add_user(&email)).unwrap();
    let sent = h.app.send_email_code(&email).await;
    let challenge = sent.body["challenge_id"].as_str().unwrap().to_owned();
    let code = h.mail.code_for(&challenge).expect("a delivery");
    let key = public_key();

    // The first attempt: verified, then the session step only.
    let store = h.app.store();
    let challenge_id = ChallengeId::parse(&challenge).unwrap();
    let device_session_id = store.keys.layout().device_session_id(&challenge_id, &user);
    let client_key = ClientPublicKey::parse(&key).unwrap();
    // The session step takes no code (the verify step checked it).
    let code_hash_unused = LoginCode::parse(&code).unwrap();
    let hashes = CodeHasher::development().hashes(&challenge_id, &code_hash_unused);
    let request = ConfirmRequest {
        challenge_id: &challenge_id,
        code_hashes: &hashes,
        client_public_key: &client_key,
        user_id: &user,
        device_session_id: &device_session_id,
        max_attempts: 5,
        max_active_sessions: 50,
        verified_at_ms: authsession_testbench::now_ms(),
        via: None,
    };
    assert!(matches!(
        store.session_create(&request).await.unwrap(),
        SessionCreated::Created { .. }
    ));
    assert_eq!(
        h.challenge_field(&challenge, "status").await.as_deref(),
        Some("sent"),
        "the crash left the challenge unmarked"
    );

    // The retry, and a twin racing it.
    let (retry, twin) = tokio::join!(
        h.app.confirm(&challenge, &code, &key),
        h.app.confirm(&challenge, &code, &key)
    );
    for reply in [&retry, &twin] {
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.body["device_session_id"], device_session_id.as_str());
    }
    assert_eq!(
        h.challenge_field(&challenge, "status").await.as_deref(),
        Some("confirmed_pending_expire")
    );
    assert_eq!(
        h.challenge_field(&challenge, "device_session_id")
            .await
            .as_deref(),
        Some(device_session_id.as_str())
    );
    assert_eq!(events_of(&h, device_session_id.as_str()).await, 1);
    let listed = h
        .app
        .get_internal(&format!("/api/v1/internal/users/{user}/sessions"))
        .await;
    assert_eq!(listed.body["sessions"].as_array().unwrap().len(), 1);
    let other = h.app.confirm(&challenge, &code, &public_key()).await;
    assert_eq!(other.status, 409, "{other:?}");
    assert_eq!(violations(&h, &cluster).await, Vec::<String>::new());
}

/// A real fault between the steps: the address's primary stops taking writes after the code was
/// verified and while the user service answers, so the claim on the challenge (the step after
/// the user service) times out: 503, and nothing was created. Once the primary is back, the
/// retry answers 200 with one session and the state is that of one confirm. (A crash after the
/// session step is `a_confirm_interrupted_between_its_steps_converges_on_retry`.)
#[tokio::test]
async fn a_fault_on_the_addresss_primary_between_the_steps_answers_503_and_the_retry_converges() {
    let cluster = RedisCluster::start(3, 0).await;
    let h = partitioned_harness(&cluster, 64, &[]).await;
    let keys = h.app.store().keys;
    // An address whose partition is served by another primary than its user's.
    let (email, user) = loop {
        let email = unique_email();
        let user = h.users.add_user(&email);
        let address =
            keys.resend_throttle(authsession::domain::Email::parse(&email).unwrap().hash());
        let address_port = cluster.primary_port_for(&address).await;
        if address_port
            != cluster
                .primary_port_for(&keys.user_sessions(&user_id(&user)))
                .await
        {
            break (email, (user, address_port));
        }
    };
    let (user, address_port) = user;
    let sent = h.app.send_email_code(&email).await;
    let challenge = sent.body["challenge_id"].as_str().unwrap().to_owned();
    let code = h.mail.code_for(&challenge).expect("a delivery");
    let key = public_key();

    h.users.set_behaviour(Behaviour::Delayed {
        path: "/".into(),
        by: Duration::from_millis(600),
    });
    let address_node = cluster
        .nodes
        .iter()
        .find(|n| n.port() == address_port)
        .unwrap();
    let mut pause = address_node.connection().await;
    h.users.clear_calls();
    let confirm = h.app.confirm(&challenge, &code, &key);
    let fault = async {
        // Verify is done once the user service holds the request; then writes on the address's
        // primary stop for longer than the command timeout (the paused mark runs when the pause
        // ends, which changes nothing: the retry converges either way).
        while h.users.calls().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(2500)
            .arg("WRITE")
            .query_async(&mut pause)
            .await
            .unwrap();
    };
    let (first, ()) = tokio::join!(confirm, fault);
    assert_eq!(first.status, 503, "{first:?}");
    let sessions_of = |user: String| {
        let h = &h;
        async move {
            h.app
                .get_internal(&format!("/api/v1/internal/users/{user}/sessions"))
                .await
                .body["sessions"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(
        sessions_of(user.clone()).await,
        0,
        "the claim failed before any session was created"
    );

    h.users.set_behaviour(Behaviour::Normal);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let retry = h.app.confirm(&challenge, &code, &key).await;
    assert_eq!(retry.status, 200, "{retry:?}");
    let id = retry.body["device_session_id"].as_str().unwrap().to_owned();
    assert_eq!(sessions_of(user).await, 1);
    assert_eq!(events_of(&h, &id).await, 1);
    assert_eq!(
        h.challenge_field(&challenge, "device_session_id")
            .await
            .as_deref(),
        Some(id.as_str())
    );
    assert_eq!(violations(&h, &cluster).await, Vec::<String>::new());
}

/// Ids that cannot be this deployment's (untagged, or with a tag that is no partition's) are
/// not found, without reaching Redis with a key of an unknown slot; in the single-tag layout a
/// tagged id is not found either.
#[tokio::test]
async fn ids_of_no_partition_are_not_found() {
    let cluster = RedisCluster::start(3, 0).await;
    let partitioned = partitioned_harness(&cluster, 16, &[]).await;
    let single = crate::helpers::harness(&[]).await;
    for (h, id) in [
        (&partitioned, "plain-id"),
        (&partitioned, "{zzzz}abc"),
        (&single, "{ab}abc"),
    ] {
        let got = h
            .app
            .get_internal(&format!(
                "/api/v1/internal/sessions/{}",
                id.replace('{', "%7B").replace('}', "%7D")
            ))
            .await;
        assert_eq!(got.status, 404, "{id}: {got:?}");
        let revoke = h
            .app
            .post_internal(
                &format!(
                    "/api/v1/internal/sessions/{}/revoke",
                    id.replace('{', "%7B").replace('}', "%7D")
                ),
                None,
            )
            .await;
        assert_eq!(revoke.status, 404, "{id}: {revoke:?}");
        let confirm = h.app.confirm(id, "123456", &public_key()).await;
        assert_eq!(confirm.status, 404, "{id}: {confirm:?}");
    }
}

/// The operator's tools understand partitions: `verify` names the layout, `scripts check` asks
/// every primary (a script missing on one is missing), `inspect` reads the session's own
/// partition stream and `republish` repairs a projection there.
#[tokio::test]
async fn the_cli_understands_partitions() {
    use crate::service::operator::run_cli;
    let cluster = RedisCluster::start(3, 0).await;
    let h = partitioned_harness(&cluster, 64, &[]).await;
    let (id, _) = h.login(&unique_email()).await;

    let (code, output) = run_cli(&h.app, &["verify"], &[]).await;
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("64 partitions, streams"), "{output}");
    // The gateway's list of streams, each in the slot it names.
    let (code, output) = run_cli(&h.app, &["partitions"], &[]).await;
    assert_eq!(code, 0, "{output}");
    let lines: Vec<&str> = output.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 64, "{output}");
    let mut conn = h.app.redis.clone();
    for line in lines {
        let [_, _, slot, stream] = line.split(' ').collect::<Vec<_>>()[..] else {
            panic!("{line}");
        };
        let redis_slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(stream)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(slot, redis_slot.to_string(), "{line}");
    }

    for node in &cluster.nodes {
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut node.connection().await)
            .await
            .unwrap();
    }
    cluster.nodes[0].load_scripts().await;
    // (In `preloaded` mode a script not cached on every primary is missing; `auto` loads it.)
    let preloaded = [(
        authsession::config::REDIS_SCRIPT_LOADING,
        "preloaded".to_owned(),
    )];
    let (code, output) = run_cli(&h.app, &["scripts", "check"], &preloaded).await;
    assert_eq!(code, 1, "loaded on one primary of three: {output}");
    assert!(
        output.contains("not used by the partitioned layout"),
        "{output}"
    );
    for node in &cluster.nodes[1..] {
        node.load_scripts().await;
    }
    let (code, output) = run_cli(&h.app, &["scripts", "check"], &preloaded).await;
    assert_eq!(code, 0, "{output}");

    // A lost projection, found by inspect and repaired by republish.
    let () = h
        .app
        .redis
        .clone()
        .del(h.app.snapshot_key(&id))
        .await
        .unwrap();
    let (code, output) = run_cli(&h.app, &["inspect", "session", &id], &[]).await;
    assert_eq!(code, 1, "{output}");
    let keys = h.app.store().keys;
    let stream = keys.stream(keys.layout().of_id(&id).unwrap());
    assert!(
        output.contains(&format!("stream {stream}: 1 event(s)")),
        "{output}"
    );
    let (code, output) = run_cli(&h.app, &["republish", &id], &[]).await;
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("repaired"), "{output}");
    let (code, output) = run_cli(&h.app, &["inspect", "session", &id], &[]).await;
    assert_eq!(code, 0, "{output}");
    assert_eq!(events_of(&h, &id).await, 2);
}
