//! Parsing every variable: defaults, all problems at once, caps, secrets never echoed.

use super::parse::parse_listen_addr;
use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_match_the_contract() {
    let config = Config::from_source(&env(&[])).unwrap();
    assert_eq!(config.redis.addrs, vec!["127.0.0.1:6379"]);
    assert_eq!(config.redis.key_prefix, "authsession:");
    assert_eq!(config.redis.command_timeout, Duration::from_secs(1));
    assert_eq!(config.public_addr.port(), 8080);
    assert_eq!(config.internal_addr.port(), 8081);
    assert_eq!(config.gateway.session_key_prefix, "gateway:session:");
    assert_eq!(config.gateway.events_stream, "gateway:session_events");
    assert_eq!(config.gateway.event_format, EventFormat::Snapshot);
    assert_eq!(
        config.policy.revoked_session_retention,
        Duration::from_secs(720 * 3600)
    );
    assert_eq!(config.policy.max_active_sessions_per_user, 50);
    assert!(matches!(config.user_service, ServiceMode::Stub));
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = Config::from_source(&env(&[
        (REDIS_COMMAND_TIMEOUT, "soon"),
        (REDIS_POOL_SIZE, "0"),
        (PUBLIC_HTTP_ADDR, "nowhere"),
        (USER_SERVICE_MODE, "rest"),
        (MAIL_SERVICE_MODE, "carrier-pigeon"),
    ]))
    .unwrap_err();
    let vars: Vec<_> = err.0.iter().map(|p| p.variable).collect();
    assert_eq!(
        vars,
        [
            REDIS_POOL_SIZE,
            REDIS_COMMAND_TIMEOUT,
            USER_SERVICE_BASE_URL,
            USER_SERVICE_REQUEST_TIMEOUT,
            MAIL_SERVICE_MODE,
            PUBLIC_HTTP_ADDR,
            INTERNAL_HTTP_TOKEN,
            CODE_HASH_KEY
        ]
    );
    let text = err.to_string();
    assert!(
        text.contains("AUTHSESSION_REDIS_COMMAND_TIMEOUT=\"soon\": expected a positive duration")
    );
}

#[test]
fn rest_mode_parses_url_and_timeout() {
    let config = Config::from_source(&env(&[
        (USER_SERVICE_MODE, "rest"),
        (USER_SERVICE_BASE_URL, "http://users.internal:9000"),
        (USER_SERVICE_REQUEST_TIMEOUT, "750ms"),
        (CODE_HASH_KEY, KEY),
        (INTERNAL_HTTP_ADDR, "127.0.0.1:8081"),
    ]))
    .unwrap();
    let ServiceMode::Rest(target) = config.user_service else {
        panic!("expected rest")
    };
    assert_eq!(target.base_url.as_str(), "http://users.internal:9000/");
    assert_eq!(target.request_timeout, Duration::from_millis(750));
    let prefixed = Config::from_source(&env(&[
        (MAIL_SERVICE_MODE, "rest"),
        (MAIL_SERVICE_BASE_URL, "https://gw.internal/mail"),
        (MAIL_SERVICE_REQUEST_TIMEOUT, "1s"),
        (CODE_HASH_KEY, KEY),
        (INTERNAL_HTTP_ADDR, "127.0.0.1:8081"),
    ]))
    .unwrap();
    let ServiceMode::Rest(target) = prefixed.mail_service else {
        panic!("expected rest")
    };
    assert_eq!(
        target.base_url.join("api/v1/x").unwrap().as_str(),
        "https://gw.internal/mail/api/v1/x"
    );
}

#[test]
fn listen_addresses_accept_the_documented_forms() {
    assert_eq!(parse_listen_addr(":8080").unwrap().port(), 8080);
    assert_eq!(
        parse_listen_addr("127.0.0.1:1").unwrap().to_string(),
        "127.0.0.1:1"
    );
    assert_eq!(
        parse_listen_addr("[::1]:80").unwrap().to_string(),
        "[::1]:80"
    );
    assert_eq!(
        parse_listen_addr("localhost:9").unwrap().to_string(),
        "127.0.0.1:9"
    );
    assert!(parse_listen_addr("8080").is_none());
    assert!(parse_listen_addr("example.com:80").is_none());
}

#[test]
fn cluster_mode_needs_db_zero_and_one_hash_tag() {
    let err = Config::from_source(&env(&[(REDIS_MODE, "cluster"), (REDIS_DB, "3")])).unwrap_err();
    let vars: Vec<_> = err.0.iter().map(|p| p.variable).collect();
    assert_eq!(vars, [REDIS_DB, REDIS_KEY_PREFIX]);
    assert!(err.to_string().contains("{auth}authsession:"));

    let ok = Config::from_source(&env(&[
        (REDIS_MODE, "cluster"),
        (REDIS_ADDR, "127.0.0.1:7000,127.0.0.1:7001"),
        (REDIS_KEY_PREFIX, "{auth}authsession:"),
        (GATEWAY_SESSION_KEY_PREFIX, "{auth}gateway:session:"),
        (
            GATEWAY_SESSION_EVENTS_STREAM,
            "{auth}gateway:session_events",
        ),
    ]));
    assert!(ok.is_ok(), "{:?}", ok.err());
}

#[test]
fn partitions_need_cluster_mode_and_untagged_names() {
    let err = Config::from_source(&env(&[(REDIS_PARTITIONS, "8")])).unwrap_err();
    assert_eq!(err.0[0].variable, REDIS_PARTITIONS);
    for bad in ["0", "1025", "x"] {
        let err = Config::from_source(&env(&[(REDIS_PARTITIONS, bad)])).unwrap_err();
        assert!(err.to_string().contains("from 1 to 1024"), "{bad}");
    }
    let tagged = Config::from_source(&env(&[
        (REDIS_MODE, "cluster"),
        (REDIS_PARTITIONS, "8"),
        (REDIS_KEY_PREFIX, "{auth}authsession:"),
        (GATEWAY_SESSION_KEY_PREFIX, "{auth}gateway:session:"),
        (
            GATEWAY_SESSION_EVENTS_STREAM,
            "{auth}gateway:session_events",
        ),
    ]))
    .unwrap_err();
    let vars: Vec<_> = tagged.0.iter().map(|p| p.variable).collect();
    assert_eq!(
        vars,
        [
            REDIS_KEY_PREFIX,
            GATEWAY_SESSION_KEY_PREFIX,
            GATEWAY_SESSION_EVENTS_STREAM
        ]
    );
    assert!(tagged.to_string().contains("partition tag"));
    // The defaults carry no tag: partitioned mode needs nothing else.
    let ok =
        Config::from_source(&env(&[(REDIS_MODE, "cluster"), (REDIS_PARTITIONS, "64")])).unwrap();
    assert_eq!(ok.redis.partitions, 64);
}

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// Security review: unkeyed code hashes let anyone who reads Redis recover live codes.
#[test]
fn rest_mode_requires_a_code_hash_key_and_bad_keys_are_never_echoed() {
    let rest = [
        (MAIL_SERVICE_MODE, "rest"),
        (MAIL_SERVICE_BASE_URL, "http://mail.internal"),
        (MAIL_SERVICE_REQUEST_TIMEOUT, "1s"),
        (INTERNAL_HTTP_ADDR, "[::1]:8081"),
    ];
    let err = Config::from_source(&env(&rest)).unwrap_err();
    assert_eq!(err.0[0].variable, CODE_HASH_KEY);
    assert!(err.to_string().contains("rest"));

    let short = "c2hvcnQta2V5LXNlY3JldA==";
    let err = Config::from_source(&env(&[(CODE_HASH_KEY, short)])).unwrap_err();
    assert!(!err.to_string().contains(short), "{err}");
    assert!(err.to_string().contains("at least 32 bytes"));

    let err = Config::from_source(&env(&[(CODE_HASH_KEY_PREVIOUS, KEY)])).unwrap_err();
    assert_eq!(err.0[0].variable, CODE_HASH_KEY);

    let mut with_key = rest.to_vec();
    with_key.extend([(CODE_HASH_KEY, KEY), (CODE_HASH_KEY_PREVIOUS, KEY)]);
    let config = Config::from_source(&env(&with_key)).unwrap();
    assert!(config.code_hash_key.is_some() && config.code_hash_key_previous.is_some());
    assert!(!format!("{config:?}").contains(KEY));
    let stub = Config::from_source(&env(&[])).unwrap();
    assert!(
        stub.code_hash_key.is_none(),
        "stub mode falls back to the dev key"
    );
}

/// Security review: with defaults, the internal surface listened on every interface with no
/// token and no warning.
#[test]
fn an_exposed_internal_surface_needs_a_token_in_rest_mode_unless_opted_out() {
    let rest = vec![
        (MAIL_SERVICE_MODE, "rest"),
        (MAIL_SERVICE_BASE_URL, "http://mail.internal"),
        (MAIL_SERVICE_REQUEST_TIMEOUT, "1s"),
        (CODE_HASH_KEY, KEY),
    ];
    let err = Config::from_source(&env(&rest)).unwrap_err();
    assert_eq!(err.0[0].variable, INTERNAL_HTTP_TOKEN);
    assert!(err
        .to_string()
        .contains(INTERNAL_HTTP_ALLOW_UNAUTHENTICATED));

    for extra in [
        (INTERNAL_HTTP_TOKEN, "0123456789abcdef0123"),
        (INTERNAL_HTTP_ALLOW_UNAUTHENTICATED, "true"),
        (INTERNAL_HTTP_ADDR, "127.0.0.1:8081"),
    ] {
        let mut ok = rest.clone();
        ok.push(extra);
        assert!(Config::from_source(&env(&ok)).is_ok(), "{extra:?}");
    }
    assert!(
        Config::from_source(&env(&[])).is_ok(),
        "stub mode only warns"
    );
}

#[test]
fn credentials_in_the_redis_address_are_refused_without_echoing_them() {
    let err = Config::from_source(&env(&[(REDIS_ADDR, "admin:hunter2@redis:6379")])).unwrap_err();
    assert_eq!(err.0[0].variable, REDIS_ADDR);
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let config = Config::from_source(&env(&[
        (REDIS_USERNAME, "app"),
        (REDIS_PASSWORD, "hunter2"),
        (INTERNAL_HTTP_TOKEN, "token-token-token-token"),
    ]))
    .unwrap();
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("token-token"),
        "{debug}"
    );
}

/// Audit finding: an absurd retention made `PEXPIRE` fail after `HSET`, and a `MAXLEN` above
/// i64 failed `XADD` after the other writes. Both are refused here, naming the variable.
#[test]
fn values_that_reach_redis_are_capped() {
    let err = Config::from_source(&env(&[
        (REVOKED_SESSION_RETENTION, "100000000h"),
        (CHALLENGE_TTL, "87601h"),
        (GATEWAY_SESSION_EVENTS_MAXLEN, "18446744073709551615"),
        (CONFIRM_FAILURE_BUDGET, "4294967295"),
    ]))
    .unwrap_err();
    let vars: Vec<_> = err.0.iter().map(|p| p.variable).collect();
    assert_eq!(
        vars,
        [
            GATEWAY_SESSION_EVENTS_MAXLEN,
            CHALLENGE_TTL,
            CONFIRM_FAILURE_BUDGET,
            REVOKED_SESSION_RETENTION
        ]
    );
    let ok = Config::from_source(&env(&[
        (REVOKED_SESSION_RETENTION, "87600h"),
        (GATEWAY_SESSION_EVENTS_MAXLEN, "1000000000"),
    ]));
    assert!(ok.is_ok(), "{:?}", ok.err());
}

#[test]
fn the_scripts_enforce_the_same_caps() {
    let common = include_str!("../../lua/include/common.lua");
    assert!(common.contains(&format!(
        "local MAX_MS = {}\n",
        MAX_REDIS_DURATION.as_millis()
    )));
    assert!(common.contains(&format!("local MAX_STREAM_LEN = {MAX_EVENTS_MAXLEN}\n")));
}

#[test]
fn sentinel_mode_names_its_primary_and_the_sentinels() {
    let config = Config::from_source(&env(&[
        (REDIS_MODE, "sentinel"),
        (REDIS_ADDR, "10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379"),
        (REDIS_SENTINEL_MASTER, "auth-primary"),
        (REDIS_SENTINEL_USERNAME, "watcher"),
        (REDIS_SENTINEL_PASSWORD, "sentinel-secret"),
    ]))
    .unwrap();
    assert_eq!(config.redis.mode, RedisMode::Sentinel);
    assert_eq!(config.redis.addrs.len(), 3);
    let sentinel = config.redis.sentinel.expect("sentinel settings");
    assert_eq!(sentinel.master, "auth-primary");
    assert_eq!(sentinel.username.as_deref(), Some("watcher"));

    let missing = Config::from_source(&env(&[(REDIS_MODE, "sentinel")])).unwrap_err();
    assert!(
        missing.to_string().contains(REDIS_SENTINEL_MASTER),
        "{missing}"
    );
    let stray = Config::from_source(&env(&[(REDIS_SENTINEL_MASTER, "x")])).unwrap_err();
    assert!(
        stray
            .to_string()
            .contains("unless AUTHSESSION_REDIS_MODE=sentinel"),
        "{stray}"
    );
    let secret = Config::from_source(&env(&[
        (REDIS_MODE, "sentinel"),
        (REDIS_SENTINEL_MASTER, "m"),
        (REDIS_SENTINEL_USERNAME, "watcher"),
    ]))
    .unwrap_err();
    assert!(
        secret.to_string().contains(REDIS_SENTINEL_PASSWORD),
        "{secret}"
    );
}

#[test]
fn replica_acks_are_off_by_default_and_bounded_by_the_command_timeout() {
    let config = Config::from_source(&env(&[])).unwrap();
    assert_eq!(config.redis.min_replica_acks, 0);
    assert_eq!(config.redis.replica_ack_timeout, Duration::from_millis(100));

    let on = Config::from_source(&env(&[(REDIS_MIN_REPLICA_ACKS, "2")])).unwrap();
    assert_eq!(on.redis.min_replica_acks, 2);
    let err = Config::from_source(&env(&[
        (REDIS_MIN_REPLICA_ACKS, "many"),
        (REDIS_REPLICA_ACK_TIMEOUT, "2s"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(err.contains(REDIS_MIN_REPLICA_ACKS), "{err}");
    assert!(
        err.contains("shorter than AUTHSESSION_REDIS_COMMAND_TIMEOUT"),
        "{err}"
    );
}

/// Issue 23, finding 11: in stub mode the internal surface (no token needed there) listened on
/// every interface by default. It now listens on loopback unless an address is given; a `rest`
/// deployment, a token or an explicit address keep the old behaviour.
#[test]
fn in_stub_mode_the_internal_surface_defaults_to_loopback() {
    let stub = Config::from_source(&env(&[])).unwrap();
    assert_eq!(stub.internal_addr.to_string(), "127.0.0.1:8081");
    let explicit = Config::from_source(&env(&[(INTERNAL_HTTP_ADDR, ":8081")])).unwrap();
    assert!(explicit.internal_addr.ip().is_unspecified());
    let with_token =
        Config::from_source(&env(&[(INTERNAL_HTTP_TOKEN, "a-token-of-sixteen-chars")])).unwrap();
    assert!(with_token.internal_addr.ip().is_unspecified());
}

/// Issue 23, finding 11: a configuration problem printed its value, a URL's credentials
/// included. The user information of every URL in a printed value is masked.
#[test]
fn a_problem_never_prints_a_urls_credentials() {
    let Err(error) = Config::from_source(&env(&[
        (USER_SERVICE_MODE, "rest"),
        (USER_SERVICE_BASE_URL, "ftp://admin:hunter2@users.internal/"),
        (MAIL_SERVICE_MODE, "rest"),
        (
            MAIL_SERVICE_BASE_URL,
            "http://mail:s3cr3t@mail.internal:99999/",
        ),
    ])) else {
        panic!("both URLs are refused")
    };
    let error = error.to_string();
    assert!(
        !error.contains("hunter2") && !error.contains("s3cr3t"),
        "{error}"
    );
    assert!(error.contains("ftp://***@users.internal/"), "{error}");
}

#[test]
fn the_event_format_is_snapshot_or_compact() {
    let config = Config::from_source(&env(&[(GATEWAY_EVENT_FORMAT, "compact")])).unwrap();
    assert_eq!(config.gateway.event_format, EventFormat::Compact);
    let err = Config::from_source(&env(&[(GATEWAY_EVENT_FORMAT, "json")])).unwrap_err();
    assert!(
        err.to_string().contains(
            "AUTHSESSION_GATEWAY_EVENT_FORMAT=\"json\": expected `snapshot` or `compact`"
        ),
        "{err}"
    );
}
