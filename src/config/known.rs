//! Every variable the service reads: a misspelled `AUTHSESSION_*` variable (say
//! `AUTHSESSION_INTERNAL_HTTP_TOKN`) would otherwise be ignored without a word, leaving a default
//! (an open internal surface) in place.

use super::*;

/// Every `AUTHSESSION_*` variable; a unit test checks this against the constants above.
pub const KNOWN: &[&str] = &[
    REDIS_ADDR,
    REDIS_MODE,
    REDIS_USERNAME,
    REDIS_PASSWORD,
    REDIS_DB,
    REDIS_TLS_ENABLED,
    REDIS_TLS_CA_FILE,
    REDIS_KEY_PREFIX,
    REDIS_POOL_SIZE,
    REDIS_CONNECT_TIMEOUT,
    REDIS_COMMAND_TIMEOUT,
    REDIS_SCRIPT_LOADING,
    GATEWAY_SESSION_KEY_PREFIX,
    GATEWAY_SESSION_EVENTS_STREAM,
    GATEWAY_SESSION_EVENTS_MAXLEN,
    USER_SERVICE_MODE,
    USER_SERVICE_BASE_URL,
    USER_SERVICE_REQUEST_TIMEOUT,
    MAIL_SERVICE_MODE,
    MAIL_SERVICE_BASE_URL,
    MAIL_SERVICE_REQUEST_TIMEOUT,
    STUB_BLOCKED_EMAILS,
    PUBLIC_HTTP_ADDR,
    INTERNAL_HTTP_ADDR,
    INTERNAL_HTTP_TOKEN,
    INTERNAL_HTTP_ALLOW_UNAUTHENTICATED,
    ALLOW_UNKNOWN_VARIABLES,
    CODE_HASH_KEY,
    CODE_HASH_KEY_PREVIOUS,
    BLOCK_MARKER_TTL,
    HTTP_IDLE_TIMEOUT,
    HTTP_MAX_CONNECTIONS,
    SEND_RATE_LIMIT_PER_IP,
    CONFIRM_RATE_LIMIT_PER_IP,
    SEND_RATE_LIMIT_GLOBAL,
    TRUSTED_PROXIES,
    HTTP_HEADER_READ_TIMEOUT,
    SHUTDOWN_TIMEOUT,
    CHALLENGE_TTL,
    CHALLENGE_MAX_ATTEMPTS,
    CONFIRM_FAILURE_BUDGET,
    CONFIRM_FAILURE_WINDOW,
    EXPIRED_CHALLENGE_RETENTION,
    CONFIRM_IDEMPOTENCY_WINDOW,
    RESEND_COOLDOWN,
    REVOKED_SESSION_RETENTION,
    MAX_ACTIVE_SESSIONS_PER_USER,
    CONFIG_REFRESH_INTERVAL,
    LOG_FORMAT,
    LOG_LEVEL,
];

/// `AUTHSESSION_*` variables present but unknown, each with the nearest known name when one is
/// close (a likely typo), sorted.
pub fn unknown_variables(env: &dyn EnvSource) -> Vec<(String, Option<&'static str>)> {
    let mut unknown: Vec<_> = env
        .names()
        .into_iter()
        .filter(|name| name.starts_with("AUTHSESSION_") && !KNOWN.contains(&name.as_str()))
        .map(|name| {
            let nearest = KNOWN
                .iter()
                .map(|known| (strsim::levenshtein(&name, known), *known))
                .min()
                .filter(|(distance, _)| *distance <= 4)
                .map(|(_, known)| known);
            (name, nearest)
        })
        .collect();
    unknown.sort();
    unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_variable_is_known() {
        let source = include_str!("../config.rs");
        for line in source.lines() {
            if let Some(value) = line.trim().strip_prefix("\"AUTHSESSION_") {
                let name = format!("AUTHSESSION_{}", value.trim_end_matches("\";"));
                assert!(
                    KNOWN.contains(&name.as_str()),
                    "{name} is missing from KNOWN"
                );
            }
            if let Some((_, value)) = line.split_once("= \"AUTHSESSION_") {
                let name = format!("AUTHSESSION_{}", value.trim_end_matches("\";"));
                assert!(
                    KNOWN.contains(&name.as_str()),
                    "{name} is missing from KNOWN"
                );
            }
        }
    }

    #[test]
    fn a_misspelled_variable_is_refused_naming_the_nearest_known_one() {
        let env: HashMap<String, String> = [
            ("AUTHSESSION_INTERNAL_HTTP_TOKN", "0123456789abcdef"),
            ("AUTHSESSION_SOMETHING_ELSE_ENTIRELY", "1"),
            ("UNRELATED", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let err = Config::from_source(&env).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("AUTHSESSION_INTERNAL_HTTP_TOKN")
                && text.contains("did you mean AUTHSESSION_INTERNAL_HTTP_TOKEN?"),
            "{text}"
        );
        assert!(text.contains("AUTHSESSION_SOMETHING_ELSE_ENTIRELY"));
        assert!(
            !text.contains("0123456789abcdef"),
            "values are not echoed: {text}"
        );
        assert!(!text.contains("UNRELATED"));

        let mut allowed = env.clone();
        allowed.insert(ALLOW_UNKNOWN_VARIABLES.into(), "true".into());
        assert!(Config::from_source(&allowed).is_ok());
    }
}
