//! authsession's test bench: real Redis in containers (the `testcontainers` crate, host network,
//! free ports; see [`engine`]), real HTTP fakes of the user and mail services, the service
//! in-process (`spawn_app`) or as a child process (`ServiceProcess`). No mock of Redis anywhere.

pub mod app;
pub mod chaos;
pub mod edge;
pub mod engine;
pub mod fakes;
pub mod invariants;
pub mod keyspace;
pub mod load;
pub mod login;
pub mod monitor;
pub mod otlp;
pub mod process;
pub mod proxy;
pub mod redis_cluster;
pub mod redis_sentinel;
pub mod redis_server;
pub mod seed;

pub use app::{spawn_app, TestApp};
pub use fakes::{Behaviour, FakeMailService, FakeUserService, RecordedCall};
pub use login::{public_key, unique_email, LoginClient};
pub use otlp::OtlpReceiver;
pub use process::ServiceProcess;
pub use proxy::{Fault, FaultProxy};
pub use redis_cluster::{RedisCluster, SlotMigration};
pub use redis_sentinel::RedisSentinel;
pub use redis_server::RedisServer;

/// Milliseconds since the epoch by this machine's clock: the verdict time of a confirm request a
/// test builds without calling verify (Redis runs on this machine, so its `TIME` agrees).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as u64
}

/// A key prefix no other test uses, for tests sharing one server.
pub fn unique_prefix(label: &str) -> String {
    format!("t{:08x}{label}:", rand::random::<u32>())
}

/// The three names of a namespace no other test uses, for cluster mode: `(key prefix, gateway
/// prefix, stream)`, sharing one hash tag for the single-tag layout, or with none for the
/// partitioned one (which adds its own).
pub fn cluster_names(partitioned: bool) -> (String, String, String) {
    let head = if partitioned {
        unique_prefix("p")
    } else {
        format!("{{t{:x}}}", rand::random::<u32>())
    };
    (
        format!("{head}authsession:"),
        format!("{head}gateway:session:"),
        format!("{head}gateway:session_events"),
    )
}

/// A port that was free a moment ago (the kernel picks it; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind port 0")
}
