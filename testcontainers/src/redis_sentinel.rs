//! A real Sentinel deployment: one primary, replicas (`--replicaof`), and three Sentinels watching
//! it with quorum 2, each in a container on the host network, all on free ports. Failover by `SENTINEL FAILOVER` or by
//! `kill -9` of the primary; after a kill the dead node comes back on its port as a replica of the
//! new primary (a restarted empty node must never come back as a primary).

use std::time::{Duration, Instant};

use crate::engine::{self, Container};
use crate::RedisServer;

/// The name the Sentinels monitor the primary under.
pub const MASTER_NAME: &str = "authsession-primary";

/// How long Sentinels wait before they call a silent primary down.
const DOWN_AFTER_MS: u64 = 1000;

/// A Sentinel: its container (removed on drop) and the directory of the configuration it
/// rewrites.
struct Sentinel {
    port: u16,
    _container: Container,
    _dir: tempfile::TempDir,
}

pub struct RedisSentinel {
    /// Data nodes; the primary is whichever the Sentinels name.
    nodes: Vec<RedisServer>,
    sentinels: Vec<Sentinel>,
}

/// The arguments of a data node: fast diskless sync.
const DATA_ARGS: [&str; 4] = [
    "--repl-diskless-sync",
    "yes",
    "--repl-diskless-sync-delay",
    "0",
];

/// A connection to the Redis process (Sentinel or data node) on `port`; `None` while it does not
/// answer.
async fn connect(port: u16) -> Option<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    client.get_multiplexed_async_connection().await.ok()
}

/// The arguments of a data node replicating the primary on `primary`.
fn replica_args(primary: &str) -> Vec<&str> {
    let mut args = DATA_ARGS.to_vec();
    args.extend(["--replicaof", "127.0.0.1", primary]);
    args
}

impl RedisSentinel {
    /// A primary with `replicas` replicas and three Sentinels, replication established.
    pub async fn start(replicas: usize) -> Self {
        let primary = RedisServer::start_with(&DATA_ARGS).await;
        let port = primary.port().to_string();
        let mut nodes = vec![primary];
        for _ in 0..replicas {
            nodes.push(RedisServer::start_with(&replica_args(&port)).await);
        }
        let mut group = Self {
            nodes,
            sentinels: Vec::new(),
        };
        group
            .wait_for_replicas(group.nodes[0].port(), replicas)
            .await;
        for _ in 0..3 {
            let sentinel = launch_sentinel(group.nodes[0].port()).await;
            group.sentinels.push(sentinel);
        }
        group.wait_until_watched(replicas).await;
        group
    }

    /// Comma-separated Sentinel addresses, for `AUTHSESSION_REDIS_ADDR`.
    pub fn sentinel_addrs(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The primary's port, as the first Sentinel that answers names it.
    pub async fn primary_port(&self) -> u16 {
        for sentinel in &self.sentinels {
            let Some(mut conn) = connect(sentinel.port).await else {
                continue;
            };
            let named: redis::RedisResult<(String, String)> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(MASTER_NAME)
                .query_async(&mut conn)
                .await;
            if let Ok((_, port)) = named {
                return port.parse().expect("a port");
            }
        }
        panic!("no Sentinel names a primary");
    }

    /// The data node on `port`.
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .expect("a node of this group")
    }

    /// A connection to the current primary.
    pub async fn primary(&self) -> redis::aio::MultiplexedConnection {
        self.node(self.primary_port().await).connection().await
    }

    /// Cuts the primary's replication links (`CLIENT KILL TYPE replica`): until the replicas
    /// reconnect (their reconnect timer runs once a second), writes the primary takes exist only
    /// there. Bytes already sent stay sent, which is why stalling a replica instead would not do:
    /// its kernel keeps receiving.
    pub async fn cut_replication(&self) {
        let _: redis::RedisResult<u64> = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("replica")
            .query_async(&mut self.primary().await)
            .await;
    }

    /// `SENTINEL FAILOVER`: a graceful switch to a replica; returns the new primary's port once
    /// the Sentinels name it, it takes writes and the old primary replicates it.
    pub async fn failover(&self) -> u16 {
        let old = self.primary_port().await;
        let mut conn = connect(self.sentinels[0].port)
            .await
            .expect("the first Sentinel answers");
        let () = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER_NAME)
            .query_async(&mut conn)
            .await
            .expect("SENTINEL FAILOVER accepted");
        let new = self.wait_for_switch(old).await;
        self.wait_for_replicas(new, self.nodes.len() - 1).await;
        new
    }

    /// `kill -9` of the primary, for good: returns the new primary's port once the Sentinels
    /// promoted a replica and it takes writes; the dead node stays down.
    pub async fn kill_primary_for_good(&self) -> u16 {
        let old = self.primary_port().await;
        self.node(old).stop();
        self.wait_for_switch(old).await
    }

    /// `kill -9` of the primary; waits until the Sentinels promoted a replica, then brings the
    /// dead node back, empty, on its port as a replica of the new primary (the Sentinels already
    /// list that address as a replica, so they can promote it next time). Returns the new
    /// primary's port.
    pub async fn kill_primary(&self) -> u16 {
        let old = self.primary_port().await;
        self.node(old).stop();
        let new = self.wait_for_switch(old).await;
        self.node(old)
            .restart_with(&replica_args(&new.to_string()))
            .await;
        self.wait_for_replicas(new, self.nodes.len() - 1).await;
        self.wait_until_sentinels_see_replica(old).await;
        new
    }

    /// Until every Sentinel lists the replica on `port` as up (not `s_down`, connected): only
    /// then can it be promoted. Under load the Sentinels (down after 1 s) may already have failed
    /// over again, to this very node: serving as the primary, it is as much back in the group.
    async fn wait_until_sentinels_see_replica(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        'retry: while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self.primary_port().await == port {
                return;
            }
            for sentinel in &self.sentinels {
                let Some(mut conn) = connect(sentinel.port).await else {
                    continue 'retry;
                };
                let replicas: redis::RedisResult<Vec<Vec<String>>> = redis::cmd("SENTINEL")
                    .arg("replicas")
                    .arg(MASTER_NAME)
                    .query_async(&mut conn)
                    .await;
                let Ok(replicas) = replicas else {
                    continue 'retry;
                };
                last = format!("{replicas:?}");
                let up = replicas.iter().any(|fields| {
                    let field = |name: &str| {
                        fields
                            .chunks(2)
                            .find(|kv| kv[0] == name)
                            .map(|kv| kv[1].as_str())
                    };
                    field("port") == Some(&port.to_string())
                        && field("flags")
                            .is_some_and(|f| !f.contains("down") && !f.contains("disconnected"))
                });
                if !up {
                    continue 'retry;
                }
            }
            return;
        }
        panic!("the Sentinels did not see the replica on port {port} up within 30 s: {last}");
    }

    async fn wait_for_switch(&self, old: u16) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let now = self.primary_port().await;
            if now != old && self.takes_writes(now).await {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the Sentinels did not promote a replica of port {old} within 30 s");
    }

    async fn takes_writes(&self, port: u16) -> bool {
        let Some(node) = self.nodes.iter().find(|n| n.port() == port) else {
            return false;
        };
        let mut conn = node.connection().await;
        let role: redis::RedisResult<Vec<redis::Value>> =
            redis::cmd("ROLE").query_async(&mut conn).await;
        matches!(role.as_deref(), Ok([redis::Value::BulkString(r), ..]) if r == b"master")
    }

    /// Until the primary on `port` reports `count` replicas online.
    async fn wait_for_replicas(&self, port: u16, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut conn = self.node(port).connection().await;
        while Instant::now() < deadline {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            let online = info
                .lines()
                .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                .count();
            if online >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{count} replicas did not come online on port {port} within 30 s");
    }

    /// Until every Sentinel sees the primary, its replicas and the other Sentinels.
    async fn wait_until_watched(&self, replicas: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        'retry: while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            for sentinel in &self.sentinels {
                let Some(mut conn) = connect(sentinel.port).await else {
                    continue 'retry;
                };
                let master: redis::RedisResult<Vec<String>> = redis::cmd("SENTINEL")
                    .arg("master")
                    .arg(MASTER_NAME)
                    .query_async(&mut conn)
                    .await;
                let Ok(fields) = master else { continue 'retry };
                let field = |name: &str| {
                    fields
                        .chunks(2)
                        .find(|kv| kv[0] == name)
                        .and_then(|kv| kv[1].parse::<usize>().ok())
                        .unwrap_or(0)
                };
                if field("num-slaves") < replicas || field("num-other-sentinels") < 2 {
                    continue 'retry;
                }
            }
            return;
        }
        panic!("the Sentinels did not discover the deployment within 30 s");
    }
}

async fn launch_sentinel(primary: u16) -> Sentinel {
    for _ in 0..5 {
        let dir = engine::shared_dir();
        let port = crate::free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {dir}/sentinel.log\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
                 sentinel failover-timeout {MASTER_NAME} 10000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir = dir.path().display()
            ),
        )
        .expect("write sentinel.conf");
        // Sentinel rewrites its configuration: the file is the container user's, in a directory
        // no one else may enter.
        engine::hand_over(&conf);
        // `redis-server <conf> --sentinel` is `redis-sentinel <conf>`, and the form an official
        // image's entry point runs as given.
        let command = [
            "redis-server".to_owned(),
            conf.display().to_string(),
            "--sentinel".to_owned(),
        ];
        let container = engine::run(&command, &[(dir.path(), engine::AccessMode::ReadWrite)]).await;
        if engine::serves(&container, port).await {
            return Sentinel {
                port,
                _container: container,
                _dir: dir,
            };
        }
    }
    panic!("redis-sentinel did not start after 5 attempts");
}
