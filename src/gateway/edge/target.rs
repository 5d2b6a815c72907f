//! The request's target as RFC 9421 derives components from it: scheme, authority, path and
//! query, each as the client sent it (no percent-decoding), the authority normalised as HTTP
//! does (lowercase, the scheme's default port left out).

use super::Reason;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: String,
    pub authority: String,
    /// The absolute path, `/` when the client sent none.
    pub path: String,
    /// What follows the first `?` (possibly empty), `None` when there is no `?`.
    pub query: Option<String>,
}

impl Target {
    /// From what nginx passes: `$scheme`, `$http_host` (the `Host` field, port included) and
    /// `$request_uri` (origin form; an absolute-form target is refused, so the authority signed
    /// is the one nginx routed by `Host`).
    pub fn from_original(scheme: &str, host: &str, request_uri: &str) -> Result<Self, Reason> {
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https") || !request_uri.starts_with('/') {
            return Err(Reason::Malformed);
        }
        let authority = normalise_authority(&scheme, host)?;
        let (path, query) = match request_uri.split_once('?') {
            Some((path, query)) => (path, Some(query.to_owned())),
            None => (request_uri, None),
        };
        if path.contains('#') || query.as_deref().is_some_and(|q| q.contains('#')) {
            return Err(Reason::Malformed);
        }
        Ok(Self {
            scheme,
            authority,
            path: path.to_owned(),
            query,
        })
    }

    /// From the URL a client is about to request (`url` already leaves the default port out).
    pub fn from_url(url: &url::Url) -> Result<Self, Reason> {
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().ok_or(Reason::Malformed)?),
            None => url.host_str().ok_or(Reason::Malformed)?.to_owned(),
        };
        let uri = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        Self::from_original(url.scheme(), &host, &uri)
    }

    /// `@query`: `?` and the query, or `?` alone when there is none (RFC 9421 §2.2.7).
    pub fn query_component(&self) -> String {
        format!("?{}", self.query.as_deref().unwrap_or(""))
    }

    /// `@request-target`: the path and query as sent.
    pub fn request_target(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }

    /// `@target-uri`: the whole URI.
    pub fn uri(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme,
            self.authority,
            self.request_target()
        )
    }
}

fn normalise_authority(scheme: &str, host: &str) -> Result<String, Reason> {
    let host = host.trim().to_ascii_lowercase();
    let bad = |b: u8| b.is_ascii_whitespace() || b.is_ascii_control() || b"/?#@\\".contains(&b);
    if host.is_empty() || host.bytes().any(bad) {
        return Err(Reason::Malformed);
    }
    let default = if scheme == "https" { ":443" } else { ":80" };
    Ok(host.strip_suffix(default).unwrap_or(&host).to_owned())
}
