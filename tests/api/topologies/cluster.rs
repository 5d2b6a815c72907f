//! The scripts on a real cluster, in both layouts: every key a call touches is declared, the
//! partitioned layout's flows, the gateway consumer across partition streams, the model and the
//! conformance replay on a cluster.

use crate::helpers::{public_key, unique_email};
use authsession::domain::{ClientPublicKey, Email, LoginCode, SessionStatus};
use authsession::store::challenges::{Confirmed, Rejection};
use authsession::store::scripts::challenge_claim::Claimed;
use authsession::store::scripts::ScriptId;
use authsession::store::Dedicated;
use authsession_testbench::monitor::Monitor;

use authsession_testbench::RedisCluster;

use authsession::store::challenges::ChallengeCreate;
use authsession::store::scripts::challenge_claim::ChallengeClaim;

use crate::service::scripts_audit::Scenario;

use crate::service::gateway::contract_story;
use crate::service::model::op;
use crate::service::model::run_partitioned_case;
use crate::service::protocol::conformance::conforms;
use crate::service::scripts_audit::admit;
use crate::service::scripts_audit::arrange;
use crate::service::scripts_audit::assert_declared;
use crate::service::scripts_audit::client;
use crate::service::scripts_audit::confirm_request;
use crate::service::scripts_audit::hashes;
use crate::service::scripts_audit::keys_of;
use crate::service::scripts_audit::new_user;
use crate::service::scripts_audit::partitioned_bench;
use crate::service::scripts_audit::run;
use crate::service::scripts_audit::seen_until_mark;
use crate::service::scripts_audit::sent_challenge;
use crate::service::scripts_audit::single_tag_cluster_env;
use crate::service::scripts_audit::store_for;
use crate::service::scripts_audit::Bench;
use crate::unit::protocol::model::Layout;
use std::collections::BTreeSet;

#[tokio::test]
async fn the_reference_consumer_follows_the_contract_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0).await;
    let h = crate::topologies::deployments::cluster_harness(&cluster, &[]).await;
    let mut conn = h.app.store().redis.dedicated().await.unwrap();
    assert!(matches!(conn, Dedicated::Cluster(_)), "cluster");
    contract_story(&h, &mut conn, 1).await;
}

/// The partitioned layout: 16 streams, a session's events in its user's partition's stream.
#[tokio::test]
async fn the_reference_consumer_follows_every_partition_stream() {
    let cluster = RedisCluster::start(3, 0).await;
    let h = crate::topologies::deployments::partitioned_harness(&cluster, 16, &[]).await;
    let mut conn = h.app.store().redis.dedicated().await.unwrap();
    contract_story(&h, &mut conn, 16).await;
}

/// The model in the partitioned layout, on one cluster for every case.
#[test]
fn random_operation_sequences_match_the_reference_model_in_the_partitioned_layout() {
    use proptest::test_runner::{Config as Cases, TestCaseError, TestRunner};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cluster = runtime.block_on(RedisCluster::start(3, 0));
    let mut runner = TestRunner::new(Cases {
        cases: 16,
        max_shrink_iters: 32,
        ..Cases::default()
    });
    let outcome = runner.run(&proptest::collection::vec(op(), 1..30), |ops| {
        runtime
            .block_on(run_partitioned_case(&cluster, ops))
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

#[tokio::test]
async fn the_models_tables_are_the_scripts_in_every_reachable_state_partitioned() {
    let cluster = RedisCluster::start(3, 0).await;
    conforms(Layout::Partitioned, &partitioned_bench(&cluster).await).await;
}

/// Finding 11: in the partitioned layout two confirms of one code that got different user ids
/// from the user service (so different session ids, in different partitions) each created a
/// session; the second answered 409 but its session stayed active. The challenge is now claimed
/// for one session before any is created: the other confirm creates nothing, and the claimant's
/// retry goes on.
#[tokio::test]
async fn in_the_partitioned_layout_one_challenge_yields_one_session_whatever_the_user_ids() {
    let cluster = RedisCluster::start(3, 0).await;
    let b = partitioned_bench(&cluster).await;
    let keys = b.store.keys.clone();
    let email = authsession::domain::Email::parse(&unique_email()).unwrap();
    let (id, code) = sent_challenge(&b, &email).await;
    let hash = hashes(&id, &code);
    let key = ClientPublicKey::parse(&public_key()).unwrap();
    let first = new_user();
    let second = loop {
        let other = new_user();
        if keys.layout().of_user(other.as_str()) != keys.layout().of_user(first.as_str()) {
            break other;
        }
    };
    let (one, two) = (
        keys.layout().device_session_id(&id, &first),
        keys.layout().device_session_id(&id, &second),
    );
    let claimant = confirm_request(&id, &hash, &key, &first, &one);
    let rival = confirm_request(&id, &hash, &key, &second, &two);

    // The first confirm stops after its claim (a crash); the rival comes; the first retries.
    let claim = ChallengeClaim {
        challenge_id: &id,
        device_session_id: &one,
        user_id: &first,
    };
    assert_eq!(b.store.run(&claim).await.unwrap(), Claimed::Claimed);
    assert_eq!(
        authsession::flows::confirm_email_code::open_session(&b.store, &rival)
            .await
            .unwrap(),
        Confirmed::Rejected(Rejection::AlreadyConfirmed)
    );
    assert_eq!(
        authsession::flows::confirm_email_code::open_session(&b.store, &claimant)
            .await
            .unwrap(),
        Confirmed::Created(one.clone())
    );
    // And once more after the first completed.
    assert_eq!(
        authsession::flows::confirm_email_code::open_session(&b.store, &rival)
            .await
            .unwrap(),
        Confirmed::Rejected(Rejection::AlreadyConfirmed)
    );
    assert!(
        b.store.session_get(&two).await.unwrap().is_none(),
        "a second session"
    );
    let session = b.store.session_get(&one).await.unwrap().unwrap();
    assert_eq!(session.status, SessionStatus::Active);
}

/// The `MONITOR` proof on a real 3-primary cluster, in either layout: every scenario's call (on
/// the cluster connection, routed by its first key) touches only keys of its KEYS, whichever
/// node runs it.
#[tokio::test]
async fn on_a_cluster_every_key_a_call_touches_is_declared_in_either_layout() {
    let cluster = RedisCluster::start(3, 0).await;
    let primaries = cluster.primary_ports().await;
    let mut monitors = Vec::new();
    for port in &primaries {
        let node = cluster.nodes.iter().find(|n| n.port() == *port).unwrap();
        monitors.push((Monitor::start(&node.addr()).await, node.connection().await));
    }
    let (_, single_tag) = single_tag_cluster_env(&cluster);
    let single_tag = store_for(&single_tag);
    let mut layouts = vec![Bench {
        conn: single_tag.redis.dedicated().await.unwrap(),
        store: single_tag,
    }];
    layouts.push(partitioned_bench(&cluster).await);
    for mut b in layouts {
        let partitioned = b.store.keys.layout().is_partitioned();
        for scenario in Scenario::all() {
            if partitioned && Scenario::of(ScriptId::ChallengeConfirm).contains(&scenario) {
                continue; // the single-tag layout's confirm
            }
            let call = arrange(&mut b, scenario).await;
            for (monitor, conn) in &mut monitors {
                seen_until_mark(monitor, conn).await;
            }
            run(&b, &call)
                .await
                .unwrap_or_else(|e| panic!("{scenario}: the call must succeed: {e}"));
            let mut touched = BTreeSet::new();
            for (monitor, conn) in &mut monitors {
                for command in seen_until_mark(monitor, conn).await {
                    touched.extend(keys_of(&mut b.conn, &command).await);
                }
            }
            assert!(!touched.is_empty(), "{scenario}: MONITOR saw the call");
            assert_declared(&b.store, &scenario.to_string(), &call, &touched);
        }
    }
}

/// The partitioned layout admits the client apart, in the client's partition (`send_admit`,
/// `confirm_admit`). Its create and verify calls used to carry the admission anyway: a key of the
/// address's slot that was never touched and a limit of 0. They now carry none of the optional
/// admission slots, and the scripts run without them.
#[tokio::test]
async fn in_the_partitioned_layout_create_and_verify_carry_no_admission() {
    let cluster = RedisCluster::start(3, 0).await;
    let mut b = partitioned_bench(&cluster).await;
    let (email, client) = (Email::parse(&unique_email()).unwrap(), client());
    let id = b.store.keys.layout().new_challenge_id(email.hash());
    let create = b.store.call(&ChallengeCreate {
        challenge_id: &id,
        email: &email,
        code_hash: &hashes(&id, &LoginCode::generate()).current,
        locale: None,
        admit: admit(&b.store, &client),
    });
    let verify = arrange(&mut b, Scenario::VerifyWrongCode).await;
    // (The verify declares the address's failure counter, and its hash.)
    for (call, keys, args) in [(create, 2, 8), (verify, 2, 10)] {
        let script = call.script().name;
        assert_eq!(
            (call.keys().len(), call.args().len()),
            (keys, args),
            "{script}: {:?}",
            call.keys()
        );
        assert!(
            call.keys().iter().all(|k| !k.contains("rate:")),
            "{script}: {:?}",
            call.keys()
        );
        let reply = run(&b, &call).await.unwrap();
        assert!(!reply.contains("rate_limited"), "{script}: {reply}");
    }
}
