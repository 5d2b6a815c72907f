//! The faults the reliability tests and the soak run inject, each held for a while and then
//! lifted, so both use exactly the same fault.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use crate::{Behaviour, FakeUserService, Fault, FaultProxy, RedisServer};

/// Kills Redis (SIGKILL), keeps it down for `down`, starts it again empty.
pub async fn restart(redis: &RedisServer, down: Duration) {
    redis.stop();
    tokio::time::sleep(down).await;
    redis.restart().await;
}

/// Redis hangs for `hold`: the engine freezes the process (every thread stopped, connections
/// open, the kernel still accepting), a truer model of a hung server than `CLIENT PAUSE`, under
/// which Redis itself still answers `PING`, `INFO` and replicas.
pub async fn freeze(redis: &RedisServer, hold: Duration) {
    redis.freeze(hold).await;
}

/// `maxmemory 1` for `hold`: every write command (and every shebang write script) is refused.
pub async fn out_of_memory(admin: &mut MultiplexedConnection, hold: Duration) {
    let set = |limit: u64| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(limit)
            .to_owned()
    };
    let () = set(1).query_async(admin).await.unwrap();
    tokio::time::sleep(hold).await;
    let () = set(0).query_async(admin).await.unwrap();
}

/// `SCRIPT FLUSH`: the next call of every script meets `NOSCRIPT`.
pub async fn flush_scripts(admin: &mut MultiplexedConnection) {
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(admin)
        .await
        .unwrap();
}

/// `fault` on the proxy for `hold`, then back to passing through.
pub async fn through_proxy(proxy: &FaultProxy, fault: Fault, hold: Duration) {
    proxy.set(fault);
    tokio::time::sleep(hold).await;
    proxy.set(Fault::PassThrough);
}

/// The user service stops answering for `hold`.
pub async fn hang(users: &FakeUserService, hold: Duration) {
    users.set_behaviour(Behaviour::Hang);
    tokio::time::sleep(hold).await;
    users.set_behaviour(Behaviour::Normal);
}
