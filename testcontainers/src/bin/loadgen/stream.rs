//! Scenario 6: the event stream at its `MAXLEN`.

use std::time::Instant;

use authsession::config::Config;

use crate::redis_stats::used_memory;

pub async fn stream_trimming(
    conn: &mut redis::aio::MultiplexedConnection,
    config: &Config,
    entries: usize,
) {
    println!(
        "\n## 6. Event stream at {entries} entries (MAXLEN ~ {})\n",
        config.gateway.events_maxlen
    );
    let stream = format!("{}memtest", config.gateway.events_stream);
    let before = used_memory(conn).await;
    let snapshot = r#"{"device_session_id":"AAAAAAAAAAAAAAAAAAAAAA","user_id":"user-0123456789abcdef","status":"active","client_public_key":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","version":1,"created_at_ms":1795867200000}"#;
    let write = |n: usize| {
        let mut pipe = redis::pipe();
        for _ in 0..n {
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(config.gateway.events_maxlen)
                .arg("*")
                .arg(&[
                    ("event_type", "session_snapshot"),
                    ("device_session_id", "AAAAAAAAAAAAAAAAAAAAAA"),
                    ("user_id", "user-0123456789abcdef"),
                    ("status", "active"),
                    ("version", "1"),
                    ("snapshot", snapshot),
                    ("occurred_at_ms", "1795867200000"),
                ])
                .ignore();
        }
        pipe
    };
    let started = Instant::now();
    for _ in 0..entries / 1000 {
        let () = write(1000).query_async(conn).await.unwrap();
    }
    let len: u64 = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(conn)
        .await
        .unwrap();
    let at_full = used_memory(conn).await;
    for _ in 0..(entries / 10) / 1000 {
        let () = write(1000).query_async(conn).await.unwrap();
    }
    let len_after: u64 = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(conn)
        .await
        .unwrap();
    let after = used_memory(conn).await;
    println!(
        "  wrote {entries} entries in {:.1} s: XLEN {len}, {:.0} MiB, {:.0} bytes/entry",
        started.elapsed().as_secs_f64(),
        (at_full - before) / 1048576.0,
        (at_full - before) / len as f64
    );
    println!(
        "  10 % more entries: XLEN {len_after}, {:.0} MiB (trimming holds the stream near MAXLEN)",
        (after - before) / 1048576.0
    );
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(conn)
        .await
        .unwrap();
}
