//! One client's share of what everyone shares (issue "client budgets"), each attack performed.

use authsession::config;

/// A send through the trusted proxy at 127.0.0.6, naming `forwarded` as the client.
async fn send_as(h: &crate::helpers::Harness, forwarded: &str) -> u16 {
    reqwest::Client::builder()
        .local_address("127.0.0.6".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
        .post(h.app.public_url(authsession::http::public::SEND_EMAIL_CODE))
        .header("x-forwarded-for", forwarded)
        .json(&serde_json::json!({ "email": crate::helpers::unique_email() }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn proxied(limit: &str, extra: &[(&str, &str)]) -> crate::helpers::Harness {
    let mut overrides = vec![
        (config::SEND_RATE_LIMIT_PER_IP, limit),
        (config::TRUSTED_PROXIES, "127.0.0.6/32"),
    ];
    overrides.extend_from_slice(extra);
    crate::helpers::harness(&overrides).await
}

/// Finding 2: each full IPv6 address had its own window, so one /64 (2^64 addresses, one
/// customer's LAN) sent without limit. Clients are counted by their /64 (by default).
#[tokio::test]
async fn the_addresses_of_one_ipv6_prefix_share_one_window() {
    let h = proxied("3/1m", &[]).await;
    let mut answers = Vec::new();
    for host in 1..=8 {
        answers.push(send_as(&h, &format!("2001:db8:1:2::{host:x}")).await);
    }
    let next_prefix = send_as(&h, "2001:db8:1:3::1").await;

    assert_eq!(
        answers.iter().filter(|s| **s == 200).count(),
        3,
        "one /64, one window: {answers:?}"
    );
    assert!(
        answers.iter().all(|s| [200, 429].contains(s)),
        "{answers:?}"
    );
    assert_eq!(next_prefix, 200, "the next /64 has a window of its own");
}

/// The prefix is configurable: with /48, the /64s of one site share a window.
#[tokio::test]
async fn the_ipv6_prefix_length_is_configurable() {
    let h = proxied("2/1m", &[(config::RATE_LIMIT_IPV6_PREFIX, "48")]).await;
    let mut answers = Vec::new();
    for net in 1..=4 {
        answers.push(send_as(&h, &format!("2001:db8:1:{net:x}::1")).await);
    }
    assert_eq!(answers, [200, 200, 429, 429]);
}

/// Finding 2: an IPv4 client written as IPv4-mapped, IPv4-compatible or NAT64 IPv6, or with a
/// port (`ip:port`, `[v6]:port`, as some proxies append), had a window per spelling (or fell
/// back to the proxy's own window). Every form is the one IPv4 client.
#[tokio::test]
async fn every_spelling_of_one_ipv4_client_shares_its_window() {
    let h = proxied("3/1m", &[]).await;
    let forms = [
        "198.51.100.7",
        "::ffff:198.51.100.7",
        "::198.51.100.7",
        "64:ff9b::198.51.100.7",
        "198.51.100.7:4711",
        "[::ffff:198.51.100.7]:443",
    ];
    let mut answers = Vec::new();
    for form in forms {
        answers.push(send_as(&h, form).await);
    }
    let proxy_itself = send_as(&h, "unknown").await;

    assert_eq!(answers, [200, 200, 200, 429, 429, 429], "{forms:?}");
    assert_eq!(
        proxy_itself, 200,
        "an unreadable hop counts against the proxy, apart"
    );
}

/// Finding 3: the connection cap was per listener, so one client holding every slot (keep-alive,
/// silent or slow connections) locked everyone out. A client gets its share
/// (`AUTHSESSION_HTTP_MAX_CONNECTIONS_PER_CLIENT`); beyond it a new connection is closed at once.
#[tokio::test]
async fn one_client_cannot_hold_every_connection_slot() {
    use tokio::io::AsyncReadExt;

    let h = crate::helpers::harness(&[
        (config::HTTP_MAX_CONNECTIONS, "20"),
        (config::HTTP_MAX_CONNECTIONS_PER_CLIENT, "5"),
    ])
    .await;
    let addr: std::net::SocketAddr = h
        .app
        .public_url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..20 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        held.push(socket.connect(addr).await.unwrap());
    }
    // The ones beyond the client's share are closed at once; its first five stay open.
    let mut closed = 0;
    for stream in &mut held {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            stream.read(&mut byte),
        )
        .await;
        if matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
            closed += 1;
        }
    }

    let others = reqwest::Client::builder()
        .local_address("127.0.0.4".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let mut served = 0;
    for _ in 0..10 {
        let answer = others
            .post(h.app.public_url(authsession::http::public::SEND_EMAIL_CODE))
            .json(&serde_json::json!({ "email": crate::helpers::unique_email() }))
            .send()
            .await;
        if answer.is_ok_and(|a| a.status() == 200) {
            served += 1;
        }
    }

    assert_eq!(closed, 15, "the client's share is 5 of the 20 slots");
    assert_eq!(
        served, 10,
        "another client is served while one holds its share"
    );
    drop(held);
}
