//! DPoP (RFC 9449) with the session's Ed25519 key: `Authorization: DPoP <device_session_id>`
//! and a `DPoP` proof JWT (`typ` `dpop+jwt`, `alg` `EdDSA`, `jwk` an Ed25519 OKP key), claims
//! `htm`, `htu`, `iat`, `jti` and `ath`. The JWS is read here rather than by a JWT library: one
//! algorithm, the key taken from the proof's own header and then required to be the session's,
//! and none of a JWT library's claims rules (`exp`, `aud`, ...) apply to a DPoP proof.
//! A proof covers the method and the URL without its query: not the query, no field, no body.
//! Server nonces (`DPoP-Nonce`) are not issued; freshness is `iat` within the window.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::Signature;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{fresh, nonce_ok, Policy, Proof, Reason, Request, Scheme};

#[derive(Deserialize)]
struct Header {
    typ: String,
    alg: String,
    jwk: Jwk,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    crv: String,
    x: String,
    /// A private key in a proof is a client's mistake that must not pass unnoticed.
    d: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Claims {
    htm: String,
    htu: String,
    iat: i64,
    jti: String,
    ath: String,
}

/// The access token of `Authorization: DPoP <token>` (the scheme is case-insensitive).
pub fn token<'a>(request: &'a Request) -> Option<&'a str> {
    let value = request
        .fields
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("dpop").then(|| token.trim())
}

/// `ath`: base64url of the SHA-256 of the access token.
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

pub fn read(request: &Request, now: u64, policy: &Policy) -> Result<Proof, Reason> {
    let token = token(request).ok_or(Reason::Missing)?;
    let mut proofs = request.fields.get_all("dpop").iter();
    let (Some(proof), None) = (proofs.next(), proofs.next()) else {
        return Err(Reason::Malformed);
    };
    let proof = proof.to_str().map_err(|_| Reason::Malformed)?;
    let mut parts = proof.split('.');
    let (Some(header64), Some(claims64), Some(signature64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reason::Malformed);
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| Reason::Malformed);
    let header: Header =
        serde_json::from_slice(&decode(header64)?).map_err(|_| Reason::Malformed)?;
    let claims: Claims =
        serde_json::from_slice(&decode(claims64)?).map_err(|_| Reason::Malformed)?;
    if header.typ != "dpop+jwt" {
        return Err(Reason::Malformed);
    }
    if header.alg != "EdDSA"
        || header.jwk.kty != "OKP"
        || header.jwk.crv != "Ed25519"
        || header.jwk.d.is_some()
    {
        return Err(Reason::Algorithm);
    }
    let named_key: [u8; 32] = decode(&header.jwk.x)?
        .try_into()
        .map_err(|_| Reason::Algorithm)?;
    let signature = Signature::from_slice(&decode(signature64)?).map_err(|_| Reason::Malformed)?;
    if !nonce_ok(&claims.jti) {
        return Err(Reason::Malformed);
    }
    if claims.htm != request.method
        || !same_resource(&claims.htu, request)
        || claims.ath != access_token_hash(token)
    {
        return Err(Reason::Mismatch);
    }
    let remember = fresh(claims.iat, None, now, policy)?;
    Ok(Proof {
        scheme: Scheme::Dpop,
        device_session_id: token.to_owned(),
        once: format!("dpop:{}", claims.jti),
        remember,
        message: format!("{header64}.{claims64}").into_bytes(),
        signature,
        named_key: Some(named_key),
    })
}

/// RFC 9449 §4.3: `htu` names the request's URI without query and fragment, compared after
/// syntax- and scheme-based normalisation (case, default port, dot segments, percent-encoding),
/// which parsing both as URLs gives.
fn same_resource(htu: &str, request: &Request) -> bool {
    let target = request.target;
    let ours = format!("{}://{}{}", target.scheme, target.authority, target.path);
    match (url::Url::parse(htu), url::Url::parse(&ours)) {
        (Ok(theirs), Ok(ours)) => {
            theirs.scheme() == ours.scheme()
                && theirs.host() == ours.host()
                && theirs.port_or_known_default() == ours.port_or_known_default()
                && theirs.path() == ours.path()
                && theirs.username().is_empty()
        }
        _ => false,
    }
}

/// A DPoP proof for `request`, signed with `key` (the reference client and the tests).
pub fn prove(
    request: &Request,
    key: &ed25519_dalek::SigningKey,
    token: &str,
    iat: i64,
    jti: &str,
) -> String {
    use ed25519_dalek::Signer;
    let target = request.target;
    let header = serde_json::json!({
        "typ": "dpop+jwt", "alg": "EdDSA",
        "jwk": {"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes())},
    });
    let claims = serde_json::json!({
        "htm": request.method,
        "htu": format!("{}://{}{}", target.scheme, target.authority, target.path),
        "iat": iat, "jti": jti, "ath": access_token_hash(token),
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}
