//! The reference gateway consumer (`authsession::gateway`, binary `authsession-gateway`): the
//! gateway contract executed against the real service, in the standalone and cluster layouts.

use std::time::{Duration, Instant};

use authsession::gateway::{
    GatewayConsumer, GatewayNames, Verdict, DEFAULT_CAPACITY, DEFAULT_MAX_AGE,
};
use authsession::store::Dedicated;
use authsession_testbench::unique_email;
use redis::aio::ConnectionLike;

use crate::helpers::{harness, Harness};

fn consumer(h: &Harness) -> GatewayConsumer {
    let keys = &h.app.store().keys;
    GatewayConsumer::new(GatewayNames {
        snapshot_prefix: keys.gateway_session_prefix().to_owned(),
        streams: keys.streams(),
    })
}

/// Where the consumer is in each stream.
type Positions = Vec<(String, String)>;

/// Every stream's newest id: following from now.
async fn newest(consumer: &GatewayConsumer, conn: &mut impl ConnectionLike) -> Positions {
    let mut positions = Vec::new();
    for stream in &consumer.names().streams {
        let id = consumer.newest_id(conn, stream).await.unwrap();
        positions.push((stream.clone(), id));
    }
    positions
}

/// Follows every stream until `done` holds for the consumer, or panics after 5 s.
async fn follow_until(
    consumer: &GatewayConsumer,
    conn: &mut impl ConnectionLike,
    positions: &mut Positions,
    done: impl Fn(&GatewayConsumer) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let block = if positions.len() == 1 { 100 } else { 0 };
    while !done(consumer) {
        assert!(Instant::now() < deadline, "the consumer did not catch up");
        for (stream, last_id) in positions.iter_mut() {
            *last_id = consumer
                .step(conn, stream, last_id, block)
                .await
                .unwrap()
                .last_id;
        }
        if block == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Login, revoke, unknown session and a session from before the consumer started, through the
/// library on a connection of its own.
pub(crate) async fn contract_story(h: &Harness, conn: &mut impl ConnectionLike, partitions: usize) {
    let before = h.login(&unique_email()).await.0;
    let consumer = consumer(h);
    assert_eq!(consumer.names().streams.len(), partitions);
    // A gateway starting now follows new events only: the older session is found at its
    // snapshot key.
    let mut last_id = newest(&consumer, conn).await;
    assert!(matches!(
        consumer.verdict(conn, &before).await.unwrap(),
        Verdict::Active { .. }
    ));

    let (id, _) = h.login(&unique_email()).await;
    follow_until(&consumer, conn, &mut last_id, |c| c.cached(&id).is_some()).await;
    let Verdict::Active { client_public_key } = consumer.verdict(conn, &id).await.unwrap() else {
        panic!("a fresh session is active");
    };
    assert_eq!(client_public_key.len(), 44);

    let reply = h
        .app
        .post_internal(&format!("/api/v1/internal/sessions/{id}/revoke"), None)
        .await;
    assert_eq!(reply.status, 200);
    follow_until(&consumer, conn, &mut last_id, |c| {
        c.cached(&id).is_some_and(|s| !s.is_active())
    })
    .await;
    assert_eq!(consumer.verdict(conn, &id).await.unwrap(), Verdict::Refused);
    assert_eq!(
        consumer.verdict(conn, "never-existed").await.unwrap(),
        Verdict::Refused
    );
}

/// `AUTHSESSION_GATEWAY_EVENT_FORMAT=compact`: every entry carries `device_session_id`, `version`
/// and `status` only (logins, revokes, evictions, blocks), the snapshot keys stay exactly as the
/// contract has them, and the reference consumer follows: a cached session takes the status of
/// its events, one not cached is answered from its snapshot key.
#[tokio::test]
async fn in_the_compact_format_events_carry_id_version_and_status_and_the_consumer_follows() {
    let h = harness(&[
        (authsession::config::GATEWAY_EVENT_FORMAT, "compact"),
        (authsession::config::MAX_ACTIVE_SESSIONS_PER_USER, "1"),
        (authsession::config::RESEND_COOLDOWN, "1ms"),
    ])
    .await;
    let mut conn = h.app.store().redis.dedicated().await.unwrap();
    let consumer = consumer(&h);
    let mut last_id = newest(&consumer, &mut conn).await;

    let email = unique_email();
    let (first, user) = h.login(&email).await;
    let snapshot = h.snapshot(&first).await.unwrap();
    assert_eq!(snapshot["status"], "active");
    assert_eq!(snapshot["user_id"], user.as_str());
    assert!(snapshot["client_public_key"].is_string() && snapshot["created_at_ms"].is_u64());
    assert!(matches!(
        consumer.verdict(&mut conn, &first).await.unwrap(),
        Verdict::Active { .. }
    ));
    // A second login evicts the first (limit 1); a session nobody asked for stays uncached.
    let (second, _) = h.login(&email).await;
    follow_until(&consumer, &mut conn, &mut last_id, |c| {
        c.cached(&first)
            .is_some_and(|s| !s.is_active() && s.version == 2)
    })
    .await;
    assert_eq!(
        consumer.verdict(&mut conn, &first).await.unwrap(),
        Verdict::Refused
    );
    assert!(consumer.cached(&second).is_none());
    assert!(matches!(
        consumer.verdict(&mut conn, &second).await.unwrap(),
        Verdict::Active { .. }
    ));
    let reply = h
        .app
        .post_internal(&format!("/api/v1/internal/users/{user}/block"), None)
        .await;
    assert_eq!(reply.status, 200);
    follow_until(&consumer, &mut conn, &mut last_id, |c| {
        c.cached(&second).is_some_and(|s| !s.is_active())
    })
    .await;
    assert_eq!(
        consumer.verdict(&mut conn, &second).await.unwrap(),
        Verdict::Refused
    );

    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&consumer.names().streams[0])
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(entries.len(), 4, "two logins, an eviction, a block");
    for (_, fields) in entries {
        let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["device_session_id", "version", "status"]);
    }
}

#[tokio::test]
async fn the_reference_consumer_follows_the_contract_on_a_single_server() {
    let h = harness(&[]).await;
    let mut conn = h.app.store().redis.dedicated().await.unwrap();
    assert!(matches!(conn, Dedicated::Single(_)), "standalone");
    contract_story(&h, &mut conn, 1).await;
}

/// A consumer of stream `s` and snapshot keys `g:<id>`, on a bare Redis.
fn bare_consumer(capacity: usize, max_age: Duration) -> GatewayConsumer {
    GatewayConsumer::with_limits(
        GatewayNames {
            snapshot_prefix: "g:".into(),
            streams: vec!["s".into()],
        },
        capacity,
        max_age,
    )
}

/// Reads stream `s` from `from` to its end; whether the consumer resynchronised on the way.
async fn drain(consumer: &GatewayConsumer, conn: &mut impl ConnectionLike, from: &str) -> bool {
    let (mut last_id, mut resynced) = (from.to_owned(), false);
    loop {
        let applied = consumer.step(conn, "s", &last_id, 0).await.unwrap();
        resynced |= applied.resynced;
        if applied.entries == 0 {
            return resynced;
        }
        last_id = applied.last_id;
    }
}

/// A snapshot JSON of session `id` at `version`.
fn snapshot_json(id: &str, status: &str, version: u64) -> String {
    serde_json::json!({
        "device_session_id": id, "user_id": "u1", "status": status,
        "client_public_key": "k", "version": version,
    })
    .to_string()
}

/// Issue 23, finding 6: a consumer paused while a revoke and 3,000 other events went by, the
/// stream trimmed to 1,000 entries, served the revoked session as active for ever (its cache
/// never saw the revoke). It now sees the gap (entries after its position were trimmed) and
/// answers from the snapshot keys.
#[tokio::test]
async fn a_consumer_behind_a_trimmed_stream_resynchronises_instead_of_serving_a_revoked_session() {
    use redis::AsyncCommands;
    let redis = authsession_testbench::RedisServer::start().await;
    let mut conn = redis.connection().await;
    let consumer = bare_consumer(DEFAULT_CAPACITY, DEFAULT_MAX_AGE);
    let active = snapshot_json("d1", "active", 1);
    let () = conn.set("g:d1", &active).await.unwrap();
    let _: String = conn.xadd("s", "*", &[("snapshot", &active)]).await.unwrap();
    let read = consumer.step(&mut conn, "s", "0-0", 0).await.unwrap();
    assert_eq!(
        consumer.verdict(&mut conn, "d1").await.unwrap(),
        Verdict::Active {
            client_public_key: "k".into()
        }
    );

    // Paused: the revoke and 3,000 other events go by; the stream keeps its last 1,000.
    let revoked = snapshot_json("d1", "revoked", 2);
    let () = conn.set("g:d1", &revoked).await.unwrap();
    let _: String = conn
        .xadd("s", "*", &[("snapshot", &revoked)])
        .await
        .unwrap();
    for i in 0..3000 {
        let other = snapshot_json(&format!("o{i}"), "active", 1);
        let _: String = redis::cmd("XADD")
            .arg("s")
            .arg("MAXLEN")
            .arg(1000)
            .arg("*")
            .arg("snapshot")
            .arg(other)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let resynced = drain(&consumer, &mut conn, &read.last_id).await;

    assert!(resynced, "the gap was seen");
    assert_eq!(
        consumer.verdict(&mut conn, "d1").await.unwrap(),
        Verdict::Refused
    );
}

/// Issue 23, finding 9: the cache grew by every session ever seen. It holds at most its
/// capacity, oldest out first; a lookup of an evicted session reads its snapshot key.
#[tokio::test]
async fn the_consumers_cache_is_bounded() {
    use redis::AsyncCommands;
    let redis = authsession_testbench::RedisServer::start().await;
    let mut conn = redis.connection().await;
    let consumer = bare_consumer(100, Duration::from_secs(60));
    for i in 0..1000 {
        let json = snapshot_json(&format!("d{i}"), "active", 1);
        let _: String = conn.xadd("s", "*", &[("snapshot", &json)]).await.unwrap();
    }
    drain(&consumer, &mut conn, "0-0").await;
    assert_eq!(consumer.cached_count(), 100);
    assert!(consumer.cached("d999").is_some(), "the newest stay");
    assert!(consumer.cached("d0").is_none(), "the oldest went first");
    let () = conn
        .set("g:d0", snapshot_json("d0", "revoked", 2))
        .await
        .unwrap();
    assert_eq!(
        consumer.verdict(&mut conn, "d0").await.unwrap(),
        Verdict::Refused,
        "an evicted session is read from its snapshot key"
    );
}

/// Issue 23, finding 6: a cached answer has a bounded age; past it the snapshot key is read
/// again, so an event the consumer never saw (lost in a failover, say) is not trusted for ever.
#[tokio::test]
async fn a_cached_answer_is_read_again_past_its_age() {
    use redis::AsyncCommands;
    let redis = authsession_testbench::RedisServer::start().await;
    let mut conn = redis.connection().await;
    let consumer = bare_consumer(100, Duration::from_millis(200));
    let () = conn
        .set("g:d1", snapshot_json("d1", "active", 1))
        .await
        .unwrap();
    assert!(matches!(
        consumer.verdict(&mut conn, "d1").await.unwrap(),
        Verdict::Active { .. }
    ));
    // Revoked with no event the consumer reads.
    let () = conn
        .set("g:d1", snapshot_json("d1", "revoked", 2))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        consumer.verdict(&mut conn, "d1").await.unwrap(),
        Verdict::Refused
    );
}

/// Issue 23, finding 6: a failover that lost entries the consumer had read leaves the stream
/// behind its position; it resynchronises and follows the stream from its newest entry (else
/// it would wait for ids past its old position and miss everything until then).
#[tokio::test]
async fn a_consumer_ahead_of_a_rewound_stream_resynchronises_and_follows_it() {
    use redis::AsyncCommands;
    let redis = authsession_testbench::RedisServer::start().await;
    let mut conn = redis.connection().await;
    let consumer = bare_consumer(DEFAULT_CAPACITY, DEFAULT_MAX_AGE);
    let active = snapshot_json("d1", "active", 1);
    let _: String = conn
        .xadd("s", "9000000000000-0", &[("snapshot", &active)])
        .await
        .unwrap();
    let read = consumer.step(&mut conn, "s", "0-0", 0).await.unwrap();
    // The failover's new primary never had that entry; a revoke comes after it.
    let () = conn.del("s").await.unwrap();
    let revoked = snapshot_json("d1", "revoked", 2);
    let _: String = conn
        .xadd("s", "1-1", &[("snapshot", &active)])
        .await
        .unwrap();
    let first = consumer
        .step(&mut conn, "s", &read.last_id, 0)
        .await
        .unwrap();
    let _: String = conn
        .xadd("s", "*", &[("snapshot", &revoked)])
        .await
        .unwrap();
    let second = consumer
        .step(&mut conn, "s", &first.last_id, 0)
        .await
        .unwrap();

    assert!(first.resynced);
    assert_eq!(
        first.last_id, "1-1",
        "follows from the stream's newest entry"
    );
    assert_eq!(second.entries, 1, "the revoke is read");
    assert_eq!(consumer.cached("d1").unwrap().status, "revoked");
}
