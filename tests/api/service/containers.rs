//! The bench's own promises about its containers: each is removed when its test ends, a panic
//! included, and a frozen Redis answers nothing until it is thawed.

use std::time::{Duration, Instant};

use authsession_testbench::RedisServer;
use futures::FutureExt;

/// Whether a container with this label and port exists (running or not).
async fn container_on(port: u16) -> bool {
    let output = tokio::process::Command::new("docker")
        .args(["ps", "-a", "--filter", "label=authsession.testbench"])
        .args(["--format", "{{.Command}}"])
        .arg("--no-trunc")
        .output()
        .await
        .expect("the docker client");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .any(|command| command.contains(&format!("--port {port} ")))
}

#[tokio::test]
async fn a_server_is_removed_on_drop_and_when_its_test_panics() {
    let kept = RedisServer::start().await;
    assert!(container_on(kept.port()).await);
    let port = kept.port();
    drop(kept);
    assert!(!container_on(port).await, "still there after drop");

    let (tx, rx) = tokio::sync::oneshot::channel();
    let panicked = std::panic::AssertUnwindSafe(async move {
        let server = RedisServer::start().await;
        tx.send(server.port()).unwrap();
        panic!("a test failing with its server running");
    })
    .catch_unwind()
    .await;
    assert!(panicked.is_err());
    let port = rx.await.unwrap();
    assert!(!container_on(port).await, "still there after the panic");
}

#[tokio::test]
async fn a_frozen_server_answers_nothing_until_thawed() {
    let redis = RedisServer::start().await;
    let mut conn = redis.connection().await;
    let freeze = redis.freeze(Duration::from_millis(1500));
    let ping = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = Instant::now();
        let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
        (pong, sent.elapsed())
    };
    let ((), (pong, waited)) = tokio::join!(freeze, ping);
    assert_eq!(pong, "PONG");
    // Sent 300 ms into a 1,500 ms freeze: answered only after the thaw.
    assert!(
        waited >= Duration::from_millis(1000),
        "answered in {waited:?}"
    );
}
