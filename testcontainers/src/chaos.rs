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

/// `CLIENT PAUSE ALL` for `pause`: every client's commands wait.
pub async fn pause(admin: &mut MultiplexedConnection, pause: Duration) {
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(pause.as_millis() as u64)
        .arg("ALL")
        .query_async(admin)
        .await
        .unwrap();
    tokio::time::sleep(pause).await;
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
