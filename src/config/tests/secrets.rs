//! Secrets: the code-hash key required and never echoed, credentials never printed.

use super::*;

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

/// Issue 36, finding 7: a problem still echoed credentials: a URL whose password holds `#` or `/`
/// (the mask stopped at the first), a URL without a scheme (`svc:pw@mail.internal`: no `://` to
/// find), and any value of a duration variable (a secret pasted into the wrong one). Userinfo is
/// masked up to the last `@` whatever the value's shape, and counts, durations and rate limits
/// are never echoed.
#[test]
fn a_problem_never_echoes_what_could_be_a_credential() {
    let Err(error) = Config::from_source(&env(&[
        (USER_SERVICE_MODE, "rest"),
        (
            USER_SERVICE_BASE_URL,
            "http://admin:pa#ss/wd@users.internal:99999/",
        ),
        (MAIL_SERVICE_MODE, "rest"),
        (MAIL_SERVICE_BASE_URL, "svc:hunter2@mail.internal"),
        (HTTP_IDLE_TIMEOUT, "correct-horse-battery"),
        (HTTP_MAX_CONNECTIONS, "s3cr3t-token"),
    ])) else {
        panic!("every value is refused")
    };
    let error = error.to_string();
    for secret in ["pa#ss", "ss/wd", "hunter2", "correct-horse", "s3cr3t"] {
        assert!(!error.contains(secret), "{secret} echoed: {error}");
    }
    assert!(
        error.contains("http://***@users.internal:99999/"),
        "{error}"
    );
    assert!(
        error.contains(HTTP_IDLE_TIMEOUT),
        "the variable is named: {error}"
    );
}
