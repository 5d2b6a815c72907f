//! A real Redis Cluster: `redis-server --cluster-enabled yes` nodes (each a container) joined by
//! `redis-cli --cluster create` (run once in a container of the same image), each primary with
//! replicas so failover can be exercised.

use std::time::{Duration, Instant};

use crate::RedisServer;

pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// `primaries` primaries with `replicas` replicas each, all slots covered, state `ok`.
    pub async fn start(primaries: usize, replicas: usize) -> Self {
        Self::start_with(primaries, replicas, &[]).await
    }

    /// Like [`RedisCluster::start`], every node with extra `redis-server` arguments.
    pub async fn start_with(primaries: usize, replicas: usize, extra: &[&str]) -> Self {
        let mut nodes = Vec::new();
        for _ in 0..primaries * (1 + replicas) {
            let mut args = vec![
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "2000",
                "--cluster-port",
                crate::redis_server::FREE_PORT,
            ];
            args.extend_from_slice(extra);
            nodes.push(RedisServer::start_with(&args).await);
        }
        let mut create: Vec<String> = vec!["redis-cli".into(), "--cluster".into(), "create".into()];
        create.extend(nodes.iter().map(RedisServer::addr));
        create.extend([
            "--cluster-replicas".into(),
            replicas.to_string(),
            "--cluster-yes".into(),
        ]);
        let (code, output) = crate::engine::run_to_end(&create).await;
        assert_eq!(code, 0, "redis-cli --cluster create failed: {output}");
        let cluster = Self { nodes };
        cluster.wait_until_ok().await;
        cluster
    }

    /// Comma-separated seed nodes, for `AUTHSESSION_REDIS_ADDR`.
    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    async fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        'poll: while Instant::now() < deadline {
            for node in &self.nodes {
                let mut conn = node.connection().await;
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                if !info.contains("cluster_state:ok") || !info.contains("cluster_slots_ok:16384") {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue 'poll;
                }
            }
            return;
        }
        panic!("the cluster did not reach cluster_state:ok");
    }

    /// A connection to the first node that answers (fault tests kill nodes).
    async fn any_live(&self) -> redis::aio::MultiplexedConnection {
        for node in &self.nodes {
            let Ok(client) = redis::Client::open(node.url()) else {
                continue;
            };
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                let pong: redis::RedisResult<String> =
                    redis::cmd("PING").query_async(&mut conn).await;
                if pong.is_ok() {
                    return conn;
                }
            }
        }
        panic!("no cluster node answers");
    }

    /// `CLUSTER NODES` as seen by a live node: (id, port, flags, primary id, slot ranges).
    async fn topology(&self) -> Vec<(String, u16, String, String, Vec<(u16, u16)>)> {
        let mut conn = self.any_live().await;
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut conn)
            .await
            .unwrap();
        text.lines()
            .map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let port = f[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
                let ranges = f[8..]
                    .iter()
                    .filter(|r| !r.starts_with('['))
                    .map(|r| match r.split_once('-') {
                        Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                        None => (r.parse().unwrap(), r.parse().unwrap()),
                    })
                    .collect();
                (
                    f[0].to_owned(),
                    port,
                    f[2].to_owned(),
                    f[3].to_owned(),
                    ranges,
                )
            })
            .collect()
    }

    /// Ports of every primary.
    pub async fn primary_ports(&self) -> Vec<u16> {
        self.topology()
            .await
            .into_iter()
            .filter(|(_, _, flags, ..)| flags.contains("master"))
            .map(|(_, port, ..)| port)
            .collect()
    }

    /// Port of the primary serving `key`'s slot.
    pub async fn primary_port_for(&self, key: &str) -> u16 {
        self.serving(key)
            .await
            .expect("a primary serves every slot")
    }

    /// Port of the live primary serving `key`'s slot, if one does right now.
    async fn serving(&self, key: &str) -> Option<u16> {
        let mut conn = self.any_live().await;
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        self.topology()
            .await
            .into_iter()
            .find(|(_, _, flags, _, ranges)| {
                flags.contains("master")
                    && !flags.contains("fail")
                    && ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot))
            })
            .map(|(_, port, ..)| port)
    }

    /// A node replicating the primary on `primary_port`, as the nodes themselves report it.
    async fn replica_of(&self, primary_port: u16) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            for node in &self.nodes {
                let mut conn = node.connection().await;
                let role: Vec<redis::Value> =
                    redis::cmd("ROLE").query_async(&mut conn).await.unwrap();
                let port = match role.as_slice() {
                    [redis::Value::BulkString(kind), _, redis::Value::Int(port), ..]
                        if kind == b"slave" =>
                    {
                        *port
                    }
                    _ => continue,
                };
                if port == i64::from(primary_port) {
                    return node.port();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no replica of the primary on port {primary_port}");
    }

    /// Promotes a replica of the primary serving `key` with `CLUSTER FAILOVER` (no data loss:
    /// the replica catches up first) and waits until it serves the slot. Returns the new
    /// primary's port.
    pub async fn failover_primary_of(&self, key: &str) -> u16 {
        let old = self.primary_port_for(key).await;
        let replica = self.replica_of(old).await;
        let node = self.nodes.iter().find(|n| n.port() == replica).unwrap();
        let mut conn = node.connection().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        // A manual failover needs a replica in sync; a fresh cluster's replicas may still be
        // loading their first copy, so wait for the link and ask again until it happens.
        while Instant::now() < deadline {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .unwrap();
            if info.contains("master_link_status:up") {
                let () = redis::cmd("CLUSTER")
                    .arg("FAILOVER")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                let asked = Instant::now();
                while asked.elapsed() < Duration::from_secs(5) {
                    let role: Vec<redis::Value> =
                        redis::cmd("ROLE").query_async(&mut conn).await.unwrap();
                    if matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
                        return replica;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the failover did not complete");
    }

    /// Cuts the replication links of the primary serving `key` (`CLIENT KILL TYPE replica`):
    /// until its replicas reconnect (about a second), its writes exist only there.
    pub async fn cut_replication_of(&self, key: &str) {
        let port = self.primary_port_for(key).await;
        let node = self.nodes.iter().find(|n| n.port() == port).unwrap();
        let _: redis::RedisResult<u64> = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("replica")
            .query_async(&mut node.connection().await)
            .await;
    }

    /// `kill -9` of the primary serving `key`: waits until the cluster promoted its replica and
    /// serves every slot again, then brings the dead node back on its port (empty; its
    /// `nodes.conf` makes it rejoin, and the cluster turns it into a replica of the new primary)
    /// and waits until it replicates. Returns the new primary's port.
    pub async fn kill_primary_of(&self, key: &str) -> u16 {
        let old = self.primary_port_for(key).await;
        let dead = self.nodes.iter().find(|n| n.port() == old).unwrap();
        dead.stop();
        let deadline = Instant::now() + Duration::from_secs(30);
        let new = loop {
            if Instant::now() > deadline {
                let replica_log = self
                    .nodes
                    .iter()
                    .filter(|n| n.port() != old)
                    .map(|n| std::fs::read_to_string(n.log_path()).unwrap_or_default())
                    .map(|log| {
                        log.lines()
                            .filter(|l| {
                                l.contains("lection") || l.contains("ailover") || l.contains("FAIL")
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .collect::<Vec<_>>()
                    .join("\n---\n");
                panic!(
                    "no replica took over from port {old}: {:?}\n{replica_log}",
                    self.topology().await
                );
            }
            match self.serving(key).await {
                Some(now) if now != old => break now,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        dead.restart().await;
        let mut conn = dead.connection().await;
        while Instant::now() < deadline + Duration::from_secs(30) {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if info.contains("role:slave") && info.contains("master_link_status:up") {
                self.wait_until_ok().await;
                return new;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the restarted node on port {old} did not become a replica");
    }
}

/// A slot being migrated between two primaries, as a resharding tool leaves it half way:
/// `IMPORTING` on the target, `MIGRATING` on the source, some of its keys already moved.
pub struct SlotMigration {
    pub slot: u16,
    /// Port of the primary the slot leaves (it still owns it).
    pub source: u16,
    /// Port of the primary the slot goes to.
    pub target: u16,
    source_id: String,
    target_id: String,
    src: redis::aio::MultiplexedConnection,
    dst: redis::aio::MultiplexedConnection,
    moved: Vec<String>,
}

impl RedisCluster {
    /// The slot of `key`, ready to migrate from its primary to another primary (not started).
    pub async fn slot_migration(&self, key: &str) -> SlotMigration {
        let source = self.primary_port_for(key).await;
        let topology = self.topology().await;
        let id_of = |port: u16| {
            topology
                .iter()
                .find(|(_, p, ..)| *p == port)
                .map(|(id, ..)| id.clone())
                .unwrap()
        };
        let (_, target, ..) = topology
            .iter()
            .find(|(_, p, flags, ..)| *p != source && flags.contains("master"))
            .expect("another primary");
        let connect = |port: u16| {
            let node = self.nodes.iter().find(|n| n.port() == port).unwrap();
            node.connection()
        };
        let mut src = connect(source).await;
        let slot = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut src)
            .await
            .unwrap();
        SlotMigration {
            slot,
            source,
            target: *target,
            source_id: id_of(source),
            target_id: id_of(*target),
            src,
            dst: connect(*target).await,
            moved: Vec::new(),
        }
    }
}

impl SlotMigration {
    fn setslot(&self, state: &str, node_id: Option<&str>) -> redis::Cmd {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SETSLOT").arg(self.slot).arg(state);
        if let Some(node_id) = node_id {
            cmd.arg(node_id);
        }
        cmd
    }

    fn migrate(to: u16, key: &str) -> redis::Cmd {
        redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(to)
            .arg(key)
            .arg(0)
            .arg(5000)
            .clone()
    }

    /// `IMPORTING` on the target, then `MIGRATING` on the source.
    pub async fn begin(&mut self) {
        let () = self
            .setslot("IMPORTING", Some(&self.source_id))
            .query_async(&mut self.dst)
            .await
            .unwrap();
        let () = self
            .setslot("MIGRATING", Some(&self.target_id))
            .query_async(&mut self.src)
            .await
            .unwrap();
    }

    /// Moves one key of the slot to the target, as the resharding tool does key by key.
    pub async fn move_key(&mut self, key: &str) {
        let () = Self::migrate(self.target, key)
            .query_async(&mut self.src)
            .await
            .unwrap();
        self.moved.push(key.to_owned());
    }

    /// Moves every key the source still holds in the slot to the target.
    pub async fn move_all(&mut self) {
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(self.slot)
            .arg(100_000)
            .query_async(&mut self.src)
            .await
            .unwrap();
        for key in keys {
            self.move_key(&key).await;
        }
    }

    /// Finishes the migration as `redis-cli --cluster reshard` does: every key moved, then the
    /// slot assigned to the target on both nodes (the others learn it by gossip).
    pub async fn finish(&mut self) {
        self.move_all().await;
        for conn in [&mut self.dst, &mut self.src] {
            let () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(self.slot)
                .arg("NODE")
                .arg(&self.target_id)
                .query_async(conn)
                .await
                .unwrap();
        }
        self.moved.clear();
    }

    /// A connection to the target primary.
    pub fn target_connection(&self) -> redis::aio::MultiplexedConnection {
        self.dst.clone()
    }

    /// Calls the migration off: the source stable again, every moved key back, the target
    /// stable again.
    pub async fn call_off(&mut self) {
        let () = self
            .setslot("STABLE", None)
            .query_async(&mut self.src)
            .await
            .unwrap();
        for key in std::mem::take(&mut self.moved) {
            let () = redis::cmd("ASKING")
                .query_async(&mut self.dst)
                .await
                .unwrap();
            let () = Self::migrate(self.source, &key)
                .query_async(&mut self.dst)
                .await
                .unwrap();
        }
        let () = self
            .setslot("STABLE", None)
            .query_async(&mut self.dst)
            .await
            .unwrap();
    }

    /// A connection to the source primary.
    pub fn source_connection(&self) -> redis::aio::MultiplexedConnection {
        self.src.clone()
    }
}
