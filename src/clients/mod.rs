//! The two external services: the user directory and the mail sender. Each is a trait with an
//! in-memory stub (dev/testing only) and a REST client whose retry policy is explicit data.

pub mod mail_sender;
pub mod user_directory;

use std::time::Duration;

use crate::telemetry::metrics::metrics;

pub use mail_sender::{LoginCodeMail, MailSender, RestMailSender, StubMailSender};
pub use user_directory::{RestUserDirectory, StubUserDirectory, UserDirectory};

/// `base` with `segments` appended, each percent-encoded as one path segment (never formatted
/// into a string, so no input can add a segment, a query or a `..`).
pub fn endpoint(base: &reqwest::Url, segments: &[&str]) -> reqwest::Url {
    let mut url = base.clone();
    url.path_segments_mut()
        .expect("an http(s) base URL has a path")
        .pop_if_empty()
        .extend(segments);
    url
}

/// A dependency failure: answers `503 service_unavailable`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{service}: request timed out after {timeout:?}")]
    Timeout {
        service: &'static str,
        timeout: Duration,
    },
    #[error("{service}: transport error: {source}")]
    Transport {
        service: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{service}: unexpected status {status}")]
    Status { service: &'static str, status: u16 },
    #[error("{service}: unparseable response body: {detail}")]
    Body {
        service: &'static str,
        detail: String,
    },
}

/// How a REST call reacts to a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Writes and mail sends: one attempt only.
    Never,
    /// Reads: one more attempt after a transport error, a timeout, or 502/503/504.
    OnceOnTransient,
}

impl Error {
    fn is_transient(&self) -> bool {
        match self {
            Error::Timeout { .. } | Error::Transport { .. } => true,
            Error::Status { status, .. } => matches!(status, 502..=504),
            Error::Body { .. } => false,
        }
    }
}

/// One JSON request with the per-attempt timeout and the given retry policy; a 404 is an error
/// (the endpoint does not exist: a misrouted call).
async fn call_json<T: serde::de::DeserializeOwned>(
    service: &'static str,
    request: impl Fn() -> reqwest::RequestBuilder,
    timeout: Duration,
    retry: Retry,
) -> Result<T, Error> {
    call(service, request, timeout, retry, json, || None).await
}

/// [`call_json`] on a resource that may not exist: a 404 is `None`.
async fn call_json_optional<T: serde::de::DeserializeOwned>(
    service: &'static str,
    request: impl Fn() -> reqwest::RequestBuilder,
    timeout: Duration,
    retry: Retry,
) -> Result<Option<T>, Error> {
    let parse = |body: &[u8]| json(body).map(Some);
    call(service, request, timeout, retry, parse, || Some(None)).await
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

/// One request whose 2xx body `parse` reads (a body it refuses is `Error::Body`), with the
/// per-attempt timeout and the given retry policy; a 404 answers what `absent` gives, or is
/// `Error::Status` when it gives nothing.
async fn call<T>(
    service: &'static str,
    request: impl Fn() -> reqwest::RequestBuilder,
    timeout: Duration,
    retry: Retry,
    parse: impl Fn(&[u8]) -> Result<T, String>,
    absent: impl Fn() -> Option<T>,
) -> Result<T, Error> {
    let attempts = if retry == Retry::OnceOnTransient {
        2
    } else {
        1
    };
    let mut last = None;
    for attempt in 1..=attempts {
        let result = attempt_once(
            service,
            request().timeout(timeout),
            timeout,
            &parse,
            &absent,
        )
        .await;
        match &result {
            Err(e) if e.is_transient() && attempt < attempts => {
                metrics().dependency(service, "retried");
                tracing::warn!(service, error = %e, "retrying read once");
                last = Some(result);
                continue;
            }
            Ok(_) => metrics().dependency(service, "ok"),
            Err(Error::Body { .. }) => metrics().dependency(service, "bad_body"),
            Err(_) => metrics().dependency(service, "failed"),
        }
        return result;
    }
    last.expect("at least one attempt")
}

async fn attempt_once<T>(
    service: &'static str,
    request: reqwest::RequestBuilder,
    timeout: Duration,
    parse: &impl Fn(&[u8]) -> Result<T, String>,
    absent: &impl Fn() -> Option<T>,
) -> Result<T, Error> {
    let transport = |source: reqwest::Error| {
        if source.is_timeout() {
            Error::Timeout { service, timeout }
        } else {
            Error::Transport { service, source }
        }
    };
    let response = request.send().await.map_err(transport)?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        if let Some(answer) = absent() {
            return Ok(answer);
        }
    }
    if !status.is_success() {
        return Err(Error::Status {
            service,
            status: status.as_u16(),
        });
    }
    let body = response.bytes().await.map_err(transport)?;
    parse(&body).map_err(|detail| Error::Body { service, detail })
}

/// The shared HTTP client: connection pooling across calls, no redirects (a redirect from an
/// internal service is a misconfiguration, not something to follow with an e-mail in the body).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .expect("the TLS backend initialises")
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn endpoints_push_each_segment_encoded_onto_the_base_path() {
        let base = reqwest::Url::parse("https://gw.internal/users/").unwrap();
        assert_eq!(
            endpoint(&base, &["api", "v1", "a/b", "%2e", "x?y"]).as_str(),
            "https://gw.internal/users/api/v1/a%2Fb/%252e/x%3Fy"
        );
        let bare = reqwest::Url::parse("http://users:9000").unwrap();
        assert_eq!(endpoint(&bare, &["api"]).as_str(), "http://users:9000/api");
    }
}
