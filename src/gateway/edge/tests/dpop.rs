//! DPoP proofs: one made as the reference client makes it verifies; any claim off is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::SigningKey;
use http::{HeaderMap, HeaderValue};

use super::{fields, key, ID, NOW};
use crate::gateway::edge::*;

/// A change to a proof's header and claims (and the request's fields) before it is signed.
type Edit = Box<dyn FnOnce(&mut serde_json::Value, &mut serde_json::Value, &mut HeaderMap)>;

fn dpop_request(
    method: &str,
    uri: &str,
    change: impl FnOnce(&mut serde_json::Value, &mut serde_json::Value, &mut HeaderMap),
) -> Result<Proof, Reason> {
    let target = Target::from_original("https", "api.example.com", uri).unwrap();
    let mut f = fields(&[("authorization", &format!("DPoP {ID}"))]);
    let request = Request {
        method,
        target: &target,
        fields: &f,
        has_body: false,
    };
    let jwt = dpop::prove(
        &request,
        &key(),
        ID,
        NOW as i64,
        "4f6c3c7e-1a0b-4c43-9d4e-2f1a7e3b9c10",
    );
    // Re-sign after `change` so only the rules can refuse.
    let mut parts = jwt.split('.');
    let decode = |p: &str| {
        serde_json::from_slice::<serde_json::Value>(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
    };
    let (mut header, mut claims) = (decode(parts.next().unwrap()), decode(parts.next().unwrap()));
    change(&mut header, &mut claims, &mut f);
    let enc = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!("{}.{}", enc(&header), enc(&claims));
    use ed25519_dalek::Signer;
    let sig = key().sign(input.as_bytes());
    f.insert(
        "dpop",
        HeaderValue::from_str(&format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(sig.to_bytes())
        ))
        .unwrap(),
    );
    let request = Request {
        method,
        target: &target,
        fields: &f,
        has_body: false,
    };
    let proof = read(&request, NOW, &Policy::default())?;
    proof.verify(&key().verifying_key())?;
    Ok(proof)
}

#[test]
fn a_dpop_proof_verifies_and_any_claim_off_is_refused() {
    let proof = dpop_request("GET", "/v1/items?page=2", |_, _, _| {}).unwrap();
    assert_eq!(
        (proof.scheme, proof.once.as_str()),
        (Scheme::Dpop, "dpop:4f6c3c7e-1a0b-4c43-9d4e-2f1a7e3b9c10")
    );
    let other = URL_SAFE_NO_PAD_KEY.clone();
    let cases: Vec<(&str, Edit, Reason)> = vec![
        (
            "htm",
            Box::new(|_, c, _| c["htm"] = "POST".into()),
            Reason::Mismatch,
        ),
        (
            "htu",
            Box::new(|_, c, _| c["htu"] = "https://api.example.com/v1/other".into()),
            Reason::Mismatch,
        ),
        (
            "htu host",
            Box::new(|_, c, _| c["htu"] = "https://evil.example.com/v1/items".into()),
            Reason::Mismatch,
        ),
        (
            "ath",
            Box::new(|_, c, _| c["ath"] = dpop::access_token_hash("dsess_other").into()),
            Reason::Mismatch,
        ),
        (
            "stale iat",
            Box::new(|_, c, _| c["iat"] = (NOW as i64 - 61).into()),
            Reason::Stale,
        ),
        (
            "alg",
            Box::new(|h, _, _| h["alg"] = "ES256".into()),
            Reason::Algorithm,
        ),
        (
            "typ",
            Box::new(|h, _, _| h["typ"] = "JWT".into()),
            Reason::Malformed,
        ),
        (
            "private key in jwk",
            Box::new(|h, _, _| h["jwk"]["d"] = "AAAA".into()),
            Reason::Algorithm,
        ),
        (
            "another key",
            Box::new(move |h, _, _| h["jwk"]["x"] = other.into()),
            Reason::BadSignature,
        ),
        (
            "no jti",
            Box::new(|_, c, _| {
                c.as_object_mut().unwrap().remove("jti");
            }),
            Reason::Malformed,
        ),
    ];
    for (what, change, reason) in cases {
        assert_eq!(
            dpop_request("GET", "/v1/items?page=2", change).unwrap_err(),
            reason,
            "{what}"
        );
    }
    // Normalisation: default port, case of the host.
    dpop_request("GET", "/v1/items", |_, c, _| {
        c["htu"] = "https://API.example.com:443/v1/items".into()
    })
    .unwrap();
}

/// Another Ed25519 public key, base64url (the one of seed [9; 32]).
static URL_SAFE_NO_PAD_KEY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    URL_SAFE_NO_PAD.encode(SigningKey::from_bytes(&[9; 32]).verifying_key().as_bytes())
});
