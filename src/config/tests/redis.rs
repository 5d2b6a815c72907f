//! The Redis section: cluster, partitions, Sentinel, replica acks.

use super::*;

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
