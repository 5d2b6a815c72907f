//! Scenario 7: what acknowledged-means-replicated costs. A replica is attached to the bench's
//! Redis; the same closed loop of full logins runs against a service with
//! `AUTHSESSION_REDIS_MIN_REPLICA_ACKS=0` and then one with `1`, side by side.

use std::sync::Arc;
use std::time::Duration;

use authsession::app::App;
use authsession::config::Config;
use authsession_testbench::{FakeMailService, RedisServer};
use tokio_util::sync::CancellationToken;

use crate::recorder::Target;

pub async fn compare(
    redis: &RedisServer,
    mail: &Arc<FakeMailService>,
    config: &Config,
    users: usize,
    duration: Duration,
) {
    println!("\n## 7. Replica acks: one replica attached, WAIT 0 vs WAIT 1 (closed loop, {users} users)\n");
    let port = redis.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]).await;
    let mut conn = redis.connection().await;
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await
            .unwrap();
        if info.contains("state=online") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for acks in [0, 1] {
        let mut config = config.clone();
        config.redis.min_replica_acks = acks;
        let stop = CancellationToken::new();
        let app = App::build(config).await.expect("service starts");
        let target = Arc::new(Target {
            http: reqwest::Client::new(),
            public: format!("http://{}", app.public_addr()),
            mail: mail.clone(),
        });
        tokio::spawn(app.run_until_stopped(stop.clone()));
        println!("### AUTHSESSION_REDIS_MIN_REPLICA_ACKS={acks}\n");
        crate::throughput::closed_loop(&target, users, duration, &mut conn).await;
        println!();
        stop.cancel();
    }
    drop(replica);
}
