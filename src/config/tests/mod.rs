//! Parsing every variable: defaults, all problems at once, caps, secrets never echoed.

mod redis;
mod secrets;

use super::parse::parse_listen_addr;
use super::*;

pub(super) fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
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
        text.contains(
            "AUTHSESSION_REDIS_COMMAND_TIMEOUT (a value of 4 characters, not shown): \
             expected a positive duration"
        ),
        "{text}"
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

pub(super) const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

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
    let common = include_str!("../../../lua/include/common.lua");
    assert!(common.contains(&format!(
        "local MAX_MS = {}\n",
        MAX_REDIS_DURATION.as_millis()
    )));
    assert!(common.contains(&format!("local MAX_STREAM_LEN = {MAX_EVENTS_MAXLEN}\n")));
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

/// NAT64 prefixes take RFC 6052's lengths only (no other has a defined IPv4 embedding).
#[test]
fn nat64_prefixes_have_an_rfc_6052_length() {
    let config = Config::from_source(&env(&[(
        RATE_LIMIT_NAT64_PREFIXES,
        "64:ff9b::/96, 64:ff9b:1:fffe::/96,2001:db8::/32",
    )]))
    .unwrap();
    assert_eq!(config.rate_limit_nat64_prefixes.len(), 3);
    let err =
        Config::from_source(&env(&[(RATE_LIMIT_NAT64_PREFIXES, "64:ff9b:1::/50")])).unwrap_err();
    assert_eq!(err.0[0].variable, RATE_LIMIT_NAT64_PREFIXES);
}
