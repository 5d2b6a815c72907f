//! Requests authenticated at the edge with the session's device key (docs/gateway.md
//! "Authenticating requests"): an HTTP Message Signature (RFC 9421, `ed25519`) or a DPoP proof
//! (RFC 9449, `EdDSA`), read here into a [`Proof`]: checked for form, coverage and freshness,
//! then verified against the key of the session it names. What is left to the caller: finding
//! the session (the consumer's cache or its snapshot key) and accepting the proof's nonce once
//! across every gateway (`store::edge::claim_once`).
//!
//! Nothing here reads a clock or Redis: the caller passes the time, so the rules are plain
//! functions of the request, and the reference client signs with the same code
//! ([`signature::base`]) the gateway verifies with.

pub mod digest;
pub mod dpop;
pub mod signature;
mod target;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use super::bounded::Bounded;
pub use target::Target;

/// How old (and how far ahead) a proof may be.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// A proof `created` (or `iat`) longer ago than this is stale.
    pub max_age: Duration,
    /// A proof created up to this far in the future (the client's clock ahead) is accepted.
    pub clock_skew: Duration,
}

/// The defaults of `authsession-gateway --max-age` and `--clock-skew`.
impl Default for Policy {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(60),
            clock_skew: Duration::from_secs(5),
        }
    }
}

/// The request as its client sent it: what nginx passes as `X-Original-*`, the client's own
/// fields, and whether it carries a body.
pub struct Request<'a> {
    pub method: &'a str,
    pub target: &'a Target,
    pub fields: &'a http::HeaderMap,
    pub has_body: bool,
}

impl Request<'_> {
    /// A field's value as RFC 9421 §2.1 covers it: every line's value trimmed, joined by `, `;
    /// `None` when the request has no such field or one that is not visible ASCII.
    pub fn field(&self, name: &str) -> Option<String> {
        let mut lines = self.fields.get_all(name).iter().peekable();
        lines.peek()?;
        let values: Option<Vec<&str>> = lines.map(|v| v.to_str().ok().map(str::trim)).collect();
        Some(values?.join(", "))
    }
}

/// Why a request is refused: the `error` a 401 names, and nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Neither a signature nor a DPoP proof.
    Missing,
    /// A proof that does not parse or lacks a required part (`created`, `nonce`, `jti`, ...).
    Malformed,
    /// An algorithm other than Ed25519, or a key that is not an Ed25519 OKP key.
    Algorithm,
    /// A component the rules require is not covered (`@method`, `@authority`, `@path`, `@query`
    /// when there is a query, `content-digest` when there is a body).
    Uncovered,
    /// The DPoP claims name another method or URL, or another access token.
    Mismatch,
    /// Created longer ago than the maximum age.
    Stale,
    /// Created further ahead than the clock-skew allowance.
    Future,
    /// Past its own `expires`.
    Expired,
    /// The signature does not verify with the session's key (or the proof names another key).
    BadSignature,
    /// The body does not match its `Content-Digest`.
    Digest,
    /// This nonce (or `jti`) was accepted before.
    Replayed,
    /// No such session (never issued, or past its retention).
    UnknownSession,
    /// The session is revoked (signed out, evicted, or its user blocked).
    Revoked,
}

impl Reason {
    /// The machine-readable code in `WWW-Authenticate` and the JSON body.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::Algorithm => "unsupported_algorithm",
            Reason::Uncovered => "uncovered_component",
            Reason::Mismatch => "mismatch",
            Reason::Stale => "stale",
            Reason::Future => "not_yet_valid",
            Reason::Expired => "expired",
            Reason::BadSignature => "bad_signature",
            Reason::Digest => "digest_mismatch",
            Reason::Replayed => "replayed",
            Reason::UnknownSession => "unknown_session",
            Reason::Revoked => "revoked",
        }
    }
}

/// Which standard a proof follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Signature,
    Dpop,
}

/// A proof read from a request and found well formed, covering and fresh; [`Proof::verify`]
/// checks it against the session's key.
#[derive(Debug)]
pub struct Proof {
    pub scheme: Scheme,
    /// The session it claims (`keyid`, or the DPoP access token).
    pub device_session_id: String,
    /// What may be accepted once: the signature's `nonce` or the proof's `jti`, marked by scheme.
    pub once: String,
    /// How long that must be remembered: until no gateway whose clock is within the skew
    /// allowance would find the proof fresh.
    pub remember: Duration,
    message: Vec<u8>,
    signature: Signature,
    /// The key a DPoP proof carries, which must be the session's.
    named_key: Option<[u8; 32]>,
}

impl Proof {
    /// Checks the signature with the session's key, as [`SessionKeys`] decoded it (RFC 8032
    /// verification with a canonical `S`; the key was refused there if of small order).
    pub fn verify(&self, session_key: &VerifyingKey) -> Result<(), Reason> {
        if self
            .named_key
            .is_some_and(|named| &named != session_key.as_bytes())
        {
            return Err(Reason::BadSignature);
        }
        // Not `verify_strict`: its one further check, a small-order `R`, guards against
        // malleable signatures (two valid signatures of one message), which the nonce store
        // makes harmless here, at the price of a point decompression (about 10 us) per request.
        session_key
            .verify(&self.message, &self.signature)
            .map_err(|_| Reason::BadSignature)
    }
}

/// Session keys decoded once: base64, the point decompressed (the most expensive step after
/// the signature check itself), small-order keys refused (anyone can sign for those). At most
/// `capacity` held; past it, the oldest decoded is dropped.
pub struct SessionKeys {
    held: std::sync::Mutex<Bounded<VerifyingKey>>,
}

impl SessionKeys {
    pub fn new(capacity: usize) -> Self {
        Self {
            held: std::sync::Mutex::new(Bounded::new(capacity)),
        }
    }

    /// The key of a snapshot's `client_public_key` (standard base64 of 32 bytes).
    pub fn get(&self, client_public_key: &str) -> Result<VerifyingKey, Reason> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = held.get(client_public_key) {
            return Ok(*key);
        }
        let bytes: [u8; 32] = STANDARD
            .decode(client_public_key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or(Reason::BadSignature)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| Reason::BadSignature)?;
        if key.is_weak() {
            return Err(Reason::BadSignature);
        }
        held.insert(client_public_key.to_owned(), key);
        Ok(key)
    }
}

/// Reads the request's proof: a signature when it has `Signature-Input` or `Signature`, else a
/// DPoP proof when `Authorization` says `DPoP`. `now` is seconds since the Unix epoch.
pub fn read(request: &Request, now: u64, policy: &Policy) -> Result<Proof, Reason> {
    if request.fields.contains_key("signature-input") || request.fields.contains_key("signature") {
        return signature::read(request, now, policy);
    }
    if dpop::token(request).is_some() {
        return dpop::read(request, now, policy);
    }
    Err(Reason::Missing)
}

/// Freshness of a proof created at `created` (and expiring at `expires`, when given), as of
/// `now`; on success, how long its nonce must be remembered.
fn fresh(
    created: i64,
    expires: Option<i64>,
    now: u64,
    policy: &Policy,
) -> Result<Duration, Reason> {
    let (now, max_age, skew) = (
        now as i64,
        policy.max_age.as_secs() as i64,
        policy.clock_skew.as_secs() as i64,
    );
    if created > now + skew {
        return Err(Reason::Future);
    }
    if created < now - max_age {
        return Err(Reason::Stale);
    }
    let mut until = created + max_age;
    if let Some(expires) = expires {
        if expires <= now {
            return Err(Reason::Expired);
        }
        until = until.min(expires);
    }
    // Another gateway's clock may be behind this one's by up to the skew allowance: it would
    // still take the proof as fresh that much longer. One second more for the whole-second
    // timestamps.
    Ok(Duration::from_secs((until - now + skew + 1).max(1) as u64))
}

/// A nonce or `jti` as the rules take it: 22 to 256 characters of base64url (with optional
/// `=` padding) or hex, at least 128 bits whichever it is (32 hex digits, 22 base64url).
pub fn nonce_ok(nonce: &str) -> bool {
    let body = nonce.trim_end_matches('=');
    let alphabet = body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let hex = body.bytes().all(|b| b.is_ascii_hexdigit());
    alphabet && body.len() <= 256 && body.len() >= if hex { 32 } else { 22 }
}

#[cfg(test)]
mod tests;
