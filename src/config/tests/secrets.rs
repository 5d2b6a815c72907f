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

/// Issue 36, finding 8: secrets had to sit in the environment, which `docker inspect` and
/// `/proc/<pid>/environ` show. `<NAME>_FILE` names a file holding the secret; the file must be
/// its owner's alone (0600 or 0400), and setting both the secret and its file is refused. A
/// problem names the path, never the content.
#[test]
fn secrets_come_from_files_only_their_owner_may_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, content: &str, mode: u32| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path.display().to_string()
    };
    let key = file("key", &format!("{KEY}\n"), 0o600);
    let token = file("token", "an-internal-token-from-a-file\n", 0o400);
    let config = Config::from_source(&env(&[
        (USER_SERVICE_MODE, "rest"),
        (USER_SERVICE_BASE_URL, "http://users.internal/"),
        (USER_SERVICE_REQUEST_TIMEOUT, "1s"),
        (CODE_HASH_KEY_FILE, &key),
        (INTERNAL_HTTP_TOKEN_FILE, &token),
    ]))
    .unwrap();
    let expected = Config::from_source(&env(&[
        (USER_SERVICE_MODE, "rest"),
        (USER_SERVICE_BASE_URL, "http://users.internal/"),
        (USER_SERVICE_REQUEST_TIMEOUT, "1s"),
        (CODE_HASH_KEY, KEY),
        (INTERNAL_HTTP_TOKEN, "an-internal-token-from-a-file"),
    ]))
    .unwrap();
    assert_eq!(
        format!("{:?}", config.policy),
        format!("{:?}", expected.policy)
    );
    use secrecy::ExposeSecret;
    assert_eq!(
        config
            .internal_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned()),
        Some("an-internal-token-from-a-file".to_owned())
    );

    let readable = file("readable", "hunter2-in-a-file", 0o644);
    let empty = file("empty", "\n", 0o600);
    for (pairs, says) in [
        (
            vec![(REDIS_PASSWORD_FILE, readable.as_str())],
            "must be 0600 or 0400",
        ),
        (vec![(REDIS_PASSWORD_FILE, empty.as_str())], "it is empty"),
        (
            vec![(REDIS_PASSWORD_FILE, "/nonexistent/secret")],
            "cannot read it",
        ),
        (
            vec![(REDIS_PASSWORD, "x"), (REDIS_PASSWORD_FILE, key.as_str())],
            "not both",
        ),
    ] {
        let error = Config::from_source(&env(&pairs)).unwrap_err().to_string();
        assert!(error.contains(says), "{pairs:?}: {error}");
        assert!(
            !error.contains("hunter2") && !error.contains(KEY),
            "{error}"
        );
    }
}
