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

/// Runs `script` with `sh` as `nobody`, another local user; whether it succeeded.
fn as_nobody(script: &str) -> bool {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("sh")
        .args(["-c", script])
        .uid(65534)
        .gid(65534)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("sh runs")
        .success()
}

/// Issue 36, finding 1: the bench's directories were mode 0777 without the sticky bit, bind-
/// mounted into containers running as root, so any local user could replace a Sentinel's
/// configuration with one whose notification script then ran as root; the engine forwarder's
/// socket took its mode from the umask. Now another local user can neither enter a bench
/// directory (list it, replace or add a file) nor connect to the engine's socket, and Redis runs
/// as a user of its own (the files it creates are not root's).
#[tokio::test]
async fn another_local_user_can_neither_replace_a_bench_file_nor_reach_the_engine() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: acting as another local user needs root");
        return;
    }
    let redis = RedisServer::start_tls().await;
    let log = redis.log_path();
    let dir = log.parent().unwrap().display().to_string();
    let certs = redis
        .tls()
        .unwrap()
        .ca_file
        .parent()
        .unwrap()
        .display()
        .to_string();
    for target in [&dir, &certs] {
        assert!(!as_nobody(&format!("ls {target}")), "nobody lists {target}");
        assert!(
            !as_nobody(&format!(
                "echo 'sentinel notification-script x' > {target}/sentinel.conf"
            )),
            "nobody writes into {target}"
        );
    }
    assert!(
        !as_nobody(&format!("rm -f {}", log.display())),
        "nobody removes the server's log"
    );
    assert!(log.exists());
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(&log).unwrap().uid();
    assert_ne!(owner, 0, "Redis runs as root in its container");

    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
    let connect = format!(
        "python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); s.connect(\"{socket}\")'"
    );
    assert!(
        !as_nobody(&connect),
        "nobody connects to the engine at {socket}"
    );
    // (The probe itself works: root connects.)
    let root = std::process::Command::new("sh")
        .args(["-c", &connect])
        .status()
        .unwrap();
    assert!(root.success(), "the probe connects as root");
}
