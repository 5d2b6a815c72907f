//! High availability: Sentinel deployments and acknowledged writes that survive a failover.
//! Real Redis: a primary, a replica and three Sentinels, each in its own container, on free ports.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use authsession::config;
use authsession::domain::SessionStatus;
use authsession_testbench::load::{self, Observed};
use authsession_testbench::{
    invariants, spawn_app, unique_email, FakeMailService, FakeUserService, RedisCluster,
    RedisSentinel, TestApp,
};

use crate::helpers::{rest_env, session_id};
use crate::service::operator::run_cli;

/// The service in Sentinel mode against `group`, REST fakes, with `acks` replica acks.
async fn sentinel_app(
    group: &RedisSentinel,
    users: &FakeUserService,
    mail: &FakeMailService,
    acks: &str,
) -> TestApp {
    let rest = rest_env(users, mail);
    let sentinels = group.sentinel_addrs();
    let mut env: Vec<(&str, &str)> = rest.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend_from_slice(&[
        (config::REDIS_MODE, "sentinel"),
        (config::REDIS_ADDR, &sentinels),
        (
            config::REDIS_SENTINEL_MASTER,
            authsession_testbench::redis_sentinel::MASTER_NAME,
        ),
        (config::REDIS_MIN_REPLICA_ACKS, acks),
        (config::REDIS_REPLICA_ACK_TIMEOUT, "100ms"),
        (config::REDIS_CONNECT_TIMEOUT, "500ms"),
    ]);
    spawn_app(group.node(group.primary_port().await), &env).await
}

/// Every answer the load saw was a 200 or a clean 503, and logins succeeded again after `since`.
fn assert_clean(seen: &Observed, since: Instant, what: &str) -> Duration {
    for ((route, status, code), count) in &seen.answers {
        assert!(
            *status == 200 || (*status == 503 && code == "service_unavailable"),
            "{what}: {route} answered {status} {code} ({count} times): {:?}",
            seen.answers
        );
    }
    seen.recovery_after(since).unwrap_or_else(|| {
        panic!(
            "{what}: no login succeeded after the switch: {:?}",
            seen.answers
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_names_the_mode_the_primary_and_the_replicas_before_and_after_a_failover() {
    let group = RedisSentinel::start(1).await;
    let (users, mail) = (
        FakeUserService::start().await,
        FakeMailService::start().await,
    );
    let app = sentinel_app(&group, &users, &mail, "1").await;

    let before = group.primary_port().await;
    let (code, output) = run_cli(&app, &["verify"], &[]).await;
    assert_eq!(code, 0, "{output}");
    let expected = format!("mode sentinel, primary 127.0.0.1:{before}, connected replicas 1");
    assert!(
        output.contains(&expected) && output.contains("every write waits for 1 replica ack(s)"),
        "{output}"
    );

    let after = group.failover().await;
    let (code, output) = run_cli(&app, &["verify"], &[]).await;
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains(&format!("primary 127.0.0.1:{after}")),
        "verify names the new primary {after}: {output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sentinel_mode_follows_a_graceful_failover_and_a_killed_primary_under_load() {
    let group = RedisSentinel::start(1).await;
    let (users, mail) = (
        FakeUserService::start().await,
        FakeMailService::start().await,
    );
    // With acks: even `SENTINEL FAILOVER` does not wait for the replica to catch up, so without
    // them a write the old primary took just before the switch can vanish (a later confirm or
    // revoke then answers 404): seen in this very test before acks were on.
    let app = sentinel_app(&group, &users, &mail, "1").await;

    for kill in [false, true] {
        let stop = AtomicBool::new(false);
        let seen = Mutex::new(Observed::default());
        let drive = async {
            // The load is running (logins acknowledged) before the switch.
            let base = seen.lock().unwrap().logins.len();
            until(|| seen.lock().unwrap().logins.len() >= base + 5).await;
            let switched = if kill {
                group.kill_primary().await;
                Instant::now()
            } else {
                group.failover().await;
                Instant::now()
            };
            let deadline = switched + Duration::from_secs(10);
            while Instant::now() < deadline
                && seen.lock().unwrap().recovery_after(switched).is_none()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stop.store(true, Ordering::Relaxed);
            switched
        };
        let load = load::logins_and_revokes(&app, &mail, 4, Duration::ZERO, &stop, &seen);
        let (switched, ()) = tokio::join!(drive, load);
        let what = if kill { "kill -9" } else { "SENTINEL FAILOVER" };
        let recovered = assert_clean(&seen.lock().unwrap(), switched, what);
        assert!(
            recovered < Duration::from_secs(5),
            "{what}: recovery took {recovered:?} after the new primary was announced"
        );
        eprintln!("{what}: recovered {recovered:?} after the switch");
    }

    let violations = invariants::check(&mut group.primary().await, &app.config).await;
    assert!(violations.is_empty(), "{violations:#?}");
}

/// What the load had acknowledged: sessions created (confirm 200) and sessions revoked (revoke
/// 200).
#[derive(Default)]
struct Acknowledged {
    confirmed: Vec<String>,
    revoked: Vec<String>,
}

impl Acknowledged {
    /// How many acknowledged confirms (session missing) and revokes (session missing or not
    /// revoked) the primary `app` writes to now lacks.
    async fn lost(&self, app: &TestApp) -> (usize, usize) {
        let store = app.store();
        let (mut confirms, mut revokes) = (0, 0);
        for id in &self.confirmed {
            let record = store
                .session_record(&session_id(id))
                .await
                .expect("reads the primary");
            confirms += usize::from(record.session().is_none());
        }
        for id in &self.revoked {
            let record = store
                .session_record(&session_id(id))
                .await
                .expect("reads the primary");
            let revoked = record
                .session()
                .is_some_and(|s| s.status == SessionStatus::Revoked);
            revokes += usize::from(!revoked);
        }
        (confirms, revokes)
    }
}

/// Logins, each followed by a revoke, until `stop`; records what was acknowledged.
async fn acknowledging_load(
    app: &TestApp,
    mail: &FakeMailService,
    stop: &AtomicBool,
    acked: &Mutex<Acknowledged>,
) {
    let client = app.login_client(mail);
    let worker = || async {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let Ok(login) = client.login(&unique_email()).await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let id = login.device_session_id;
            acked.lock().unwrap().confirmed.push(id.clone());
            if n.is_multiple_of(2) {
                let path = format!("/api/v1/internal/sessions/{id}/revoke");
                if app.post_internal(&path, None).await.status == 200 {
                    acked.lock().unwrap().revoked.push(id);
                }
            }
        }
    };
    futures::future::join_all((0..4).map(|_| worker())).await;
}

/// A deployment with replicas whose primary the torture kills.
enum Deployment {
    Sentinel(RedisSentinel),
    Cluster(RedisCluster),
    /// The partitioned layout (`N` = [`TORTURE_PARTITIONS`]): each round kills the primary of
    /// another shard.
    Partitioned(RedisCluster),
}

const TORTURE_PARTITIONS: usize = 64;

impl Deployment {
    /// The service against this deployment with `acks` replica acks, REST fakes.
    async fn app(&self, users: &FakeUserService, mail: &FakeMailService, acks: &str) -> TestApp {
        match self {
            Deployment::Sentinel(group) => sentinel_app(group, users, mail, acks).await,
            Deployment::Cluster(cluster) | Deployment::Partitioned(cluster) => {
                let partitioned = matches!(self, Deployment::Partitioned(_));
                let (prefix, gateway, stream) = authsession_testbench::cluster_names(partitioned);
                let partitions = if partitioned { TORTURE_PARTITIONS } else { 1 }.to_string();
                let seeds = cluster.seeds();
                let rest = rest_env(users, mail);
                let mut env: Vec<(&str, &str)> =
                    rest.iter().map(|(k, v)| (*k, v.as_str())).collect();
                env.extend_from_slice(&[
                    (config::REDIS_MODE, "cluster"),
                    (config::REDIS_PARTITIONS, &partitions),
                    (config::REDIS_ADDR, &seeds),
                    (config::REDIS_KEY_PREFIX, &prefix),
                    (config::GATEWAY_SESSION_KEY_PREFIX, &gateway),
                    (config::GATEWAY_SESSION_EVENTS_STREAM, &stream),
                    (config::REDIS_MIN_REPLICA_ACKS, acks),
                    (config::REDIS_REPLICA_ACK_TIMEOUT, "100ms"),
                ]);
                spawn_app(&cluster.nodes[0], &env).await
            }
        }
    }

    /// Cuts replication, lets the load write to the primary alone for a moment, kills it and
    /// waits until a replica took over and the dead node replicates again.
    async fn kill_primary_mid_write(&self, app: &TestApp, round: usize) {
        let slot_key = match self {
            // A partition on each shard in turn (partition i sits in the i-th slot range).
            Deployment::Partitioned(_) => {
                let shard = round % 3;
                app.store().keys.streams()[shard * TORTURE_PARTITIONS / 3 + round / 3 % 8].clone()
            }
            _ => app.config.redis.key_prefix.clone(),
        };
        match self {
            Deployment::Sentinel(group) => group.cut_replication().await,
            Deployment::Cluster(cluster) | Deployment::Partitioned(cluster) => {
                cluster.cut_replication_of(&slot_key).await
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        match self {
            Deployment::Sentinel(group) => {
                group.kill_primary().await;
            }
            Deployment::Cluster(cluster) | Deployment::Partitioned(cluster) => {
                cluster.kill_primary_of(&slot_key).await;
            }
        }
    }

    /// The invariant checker over the deployment's data.
    async fn violations(&self, app: &TestApp) -> Vec<String> {
        match self {
            Deployment::Partitioned(cluster) => {
                invariants::check_cluster(cluster, &app.config).await
            }
            _ => invariants::check(&mut self.primary(app).await, &app.config).await,
        }
    }

    /// A connection to the primary holding the app's keys.
    async fn primary(&self, app: &TestApp) -> redis::aio::MultiplexedConnection {
        match self {
            Deployment::Sentinel(group) => group.primary().await,
            Deployment::Cluster(cluster) | Deployment::Partitioned(cluster) => {
                let port = cluster.primary_port_for(&app.config.redis.key_prefix).await;
                let node = cluster.nodes.iter().find(|n| n.port() == port).unwrap();
                node.connection().await
            }
        }
    }
}

/// What the torture found: acknowledged confirms and revokes, and how many of each were lost.
#[derive(Debug)]
struct Survival {
    confirms: usize,
    lost_confirms: usize,
    revokes: usize,
    lost_revokes: usize,
}

/// `failovers` times: under the load, cut replication, `kill -9` the primary while writes are
/// only on it, let a replica take over. Then every acknowledged confirm and revoke is checked on
/// the final primary, and the invariant checker runs there.
async fn torture(deployment: Deployment, acks: &str, failovers: usize) -> Survival {
    let (users, mail) = (
        FakeUserService::start().await,
        FakeMailService::start().await,
    );
    mail.stop_recording();
    users.stop_recording();
    let app = deployment.app(&users, &mail, acks).await;
    let stop = AtomicBool::new(false);
    let acked = Mutex::new(Acknowledged::default());
    let chaos = async {
        for round in 0..failovers {
            // Every round kills a primary under load: confirms acknowledged since the last one.
            let base = acked.lock().unwrap().confirmed.len();
            until(|| acked.lock().unwrap().confirmed.len() >= base + 5).await;
            deployment.kill_primary_mid_write(&app, round).await;
            eprintln!("failover {} of {failovers} done", round + 1);
        }
        // And the load goes on after the last one.
        let base = acked.lock().unwrap().confirmed.len();
        until(|| acked.lock().unwrap().confirmed.len() >= base + 5).await;
        stop.store(true, Ordering::Relaxed);
    };
    tokio::join!(chaos, acknowledging_load(&app, &mail, &stop, &acked));

    let acked = acked.into_inner().unwrap();
    let (lost_confirms, lost_revokes) = acked.lost(&app).await;
    let violations = deployment.violations(&app).await;
    assert!(violations.is_empty(), "{violations:#?}");
    let survival = Survival {
        confirms: acked.confirmed.len(),
        lost_confirms,
        revokes: acked.revoked.len(),
        lost_revokes,
    };
    println!("acks {acks}, {failovers} failovers: {survival:?}");
    survival
}

/// Failovers per torture run, at most `full` (the documented count): `TORTURE_FAILOVERS`, 2 by
/// default (the default run's smoke of each deployment); `.ci/run` sets 20.
fn failovers(full: usize) -> usize {
    std::env::var("TORTURE_FAILOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
        .clamp(1, full)
}

/// Waits until `done` holds (polled every 10 ms), or panics after 30 s: a condition, not a fixed
/// sleep, so a fast machine does not wait and a loaded one is given the time it needs.
async fn until(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "the load made no progress in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Three primaries with a replica each. `cluster-replica-validity-factor 0`: a replica whose link
/// was down when its primary died still takes over (Redis 7.0 otherwise refuses when the link
/// was mid-reconnect, reading its age as "forever"); with replica acks on, every acknowledged
/// write is on it anyway (docs/operations.md, "High availability").
async fn failover_ready_cluster() -> RedisCluster {
    RedisCluster::start_with(
        3,
        1,
        &[
            "--cluster-replica-validity-factor",
            "0",
            "--cluster-node-timeout",
            "1000",
        ],
    )
    .await
}

fn assert_nothing_lost(survival: &Survival) {
    assert!(
        survival.confirms > 0 && survival.revokes > 0,
        "the load made progress: {survival:?}"
    );
    assert_eq!(
        (survival.lost_confirms, survival.lost_revokes),
        (0, 0),
        "{survival:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_one_replica_ack_no_acknowledged_write_is_lost_across_sentinel_failovers() {
    let group = RedisSentinel::start(1).await;
    assert_nothing_lost(&torture(Deployment::Sentinel(group), "1", failovers(20)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_one_replica_ack_no_acknowledged_write_is_lost_across_cluster_failovers() {
    let cluster = failover_ready_cluster().await;
    assert_nothing_lost(&torture(Deployment::Cluster(cluster), "1", failovers(20)).await);
}

/// The partitioned layout: a confirm writes in two partitions, often on two shards; each step
/// waits for its replica, so no acknowledged login or revoke is lost either.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_one_replica_ack_no_acknowledged_write_is_lost_across_failovers_of_a_partitioned_cluster(
) {
    let cluster = failover_ready_cluster().await;
    assert_nothing_lost(&torture(Deployment::Partitioned(cluster), "1", failovers(9)).await);
}

/// The measurement behind the advice of docs/operations.md (run with `--ignored`): the same torture without
/// replica acks loses acknowledged writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement for docs/operations.md, about three minutes"]
async fn without_replica_acks_acknowledged_writes_are_lost_in_failovers() {
    let group = RedisSentinel::start(1).await;
    let sentinel = torture(Deployment::Sentinel(group), "0", 20).await;
    let cluster = failover_ready_cluster().await;
    let cluster = torture(Deployment::Cluster(cluster), "0", 20).await;
    for survival in [&sentinel, &cluster] {
        assert!(
            survival.lost_confirms + survival.lost_revokes > 0,
            "expected losses without acks (replication was cut before each kill): {survival:?}"
        );
    }
}

#[tokio::test]
async fn with_acks_and_no_replica_writes_answer_503_and_reads_still_work() {
    let h = crate::helpers::harness(&[(config::REDIS_MIN_REPLICA_ACKS, "1")]).await;

    let reply = h.app.send_email_code(&unique_email()).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (503, Some("service_unavailable")),
        "an unreplicated write is not acknowledged: {reply:?}"
    );
    // Reads never wait for replicas.
    let list = h
        .app
        .get_internal("/api/v1/internal/users/nobody/sessions")
        .await;
    assert_eq!(list.status, 200, "{list:?}");

    let (code, output) = run_cli(&h.app, &["verify"], &[]).await;
    assert_ne!(code, 0, "{output}");
    assert!(
        output.contains("[FAIL] redis topology") && output.contains("connected replicas 0"),
        "{output}"
    );
}

/// With two replicas and acks 1, losing the primary for good leaves one replica to acknowledge
/// writes: logins go on right after the switch (with one replica they would all answer 503), and
/// every acknowledged write survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_two_replicas_and_one_ack_writes_go_on_after_losing_the_primary() {
    let group = RedisSentinel::start(2).await;
    let (users, mail) = (
        FakeUserService::start().await,
        FakeMailService::start().await,
    );
    let app = sentinel_app(&group, &users, &mail, "1").await;
    let stop = AtomicBool::new(false);
    let acked = Mutex::new(Acknowledged::default());
    let chaos = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        group.kill_primary_for_good().await;
        let at_switch = acked.lock().unwrap().confirmed.len();
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, Ordering::Relaxed);
        at_switch
    };
    let (at_switch, ()) = tokio::join!(chaos, acknowledging_load(&app, &mail, &stop, &acked));
    let acked = acked.into_inner().unwrap();
    assert!(
        acked.confirmed.len() > at_switch,
        "no login was acknowledged in the second after the switch ({at_switch} before it)"
    );
    let (lost_confirms, _) = acked.lost(&app).await;
    assert_eq!(lost_confirms, 0, "acknowledged sessions were lost");
}
