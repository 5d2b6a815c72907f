use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{SigningKey, VerifyingKey};
use http::{HeaderMap, HeaderValue};
use sfv::{ListEntry, Parser};

use super::*;

mod dpop;

/// RFC 9421 Appendix B.1.4 `test-key-ed25519` (the SubjectPublicKeyInfo's last 32 bytes).
const B14_PUBLIC: &str = "MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=";

fn fields(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[test]
fn the_rfc_9421_b_2_6_example_verifies_with_the_gateways_signature_base() {
    let target = Target::from_original("https", "example.com", "/foo?param=Value&Pet=dog").unwrap();
    let fields = fields(&[
        ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("content-type", "application/json"),
        ("content-length", "18"),
    ]);
    let request = Request {
        method: "POST",
        target: &target,
        fields: &fields,
        has_body: true,
    };
    let input: sfv::Dictionary = Parser::new(
        r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#,
    )
    .parse()
    .unwrap();
    let ListEntry::InnerList(covered) = &input["sig-b26"] else {
        panic!()
    };
    let base = signature::base(&request, covered).unwrap();
    assert_eq!(
        base,
        "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@method\": POST\n\"@path\": /foo\n\
         \"@authority\": example.com\n\"content-type\": application/json\n\"content-length\": 18\n\
         \"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \
         \"content-length\");created=1618884473;keyid=\"test-key-ed25519\""
    );
    let spki = STANDARD.decode(B14_PUBLIC).unwrap();
    let key = VerifyingKey::from_bytes(spki[spki.len() - 32..].try_into().unwrap()).unwrap();
    let signature = STANDARD
        .decode("wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==")
        .unwrap();
    let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
    key.verify_strict(base.as_bytes(), &signature).unwrap();
}

/// A change made to a signed request before it is read.
type Change = Box<dyn FnOnce(&mut String, &mut Target, &mut HeaderMap)>;
/// What is changed, how, and the reason it is refused for.
type Case = (&'static str, Change, Reason);

const NOW: u64 = 1_800_000_000;
const NONCE: &str = "b3k2pp5k7zAq1eR2sW9xYg";
const ID: &str = "dsess_example";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// A signed request as the reference client makes it, then altered by `change` before reading.
fn signed(
    method: &str,
    uri: &str,
    body: Option<&[u8]>,
    change: impl FnOnce(&mut String, &mut Target, &mut HeaderMap),
) -> Result<Proof, Reason> {
    let target = Target::from_original("https", "api.example.com", uri).unwrap();
    let mut fields = fields(&[("x-extra", "one")]);
    let signer = signature::Signer {
        key: &key(),
        keyid: ID,
    };
    signer
        .sign_fields(
            (method, &target),
            &mut fields,
            body,
            (NOW as i64, NONCE),
            &[],
        )
        .unwrap();
    let (mut method, mut target) = (method.to_owned(), target.clone());
    change(&mut method, &mut target, &mut fields);
    let request = Request {
        method: &method,
        target: &target,
        fields: &fields,
        has_body: body.is_some(),
    };
    let proof = read(&request, NOW, &Policy::default())?;
    proof.verify(&key().verifying_key())?;
    Ok(proof)
}

fn unchanged(_: &mut String, _: &mut Target, _: &mut HeaderMap) {}

#[test]
fn a_signed_request_verifies_and_names_its_session_and_nonce() {
    let proof = signed("GET", "/v1/items?page=2", None, unchanged).unwrap();
    assert_eq!(
        (proof.device_session_id.as_str(), proof.scheme),
        (ID, Scheme::Signature)
    );
    assert_eq!(proof.once, format!("sig:{NONCE}"));
    assert_eq!(proof.remember, Duration::from_secs(66));
    signed("POST", "/v1/items", Some(b"{\"a\":1}"), unchanged).unwrap();
}

#[test]
fn any_change_to_what_a_signature_covers_is_refused() {
    let set = |name: &'static str, value: &'static str| {
        move |_: &mut String, _: &mut Target, f: &mut HeaderMap| {
            f.insert(name, HeaderValue::from_static(value));
        }
    };
    let cases: Vec<Case> = vec![
        (
            "method",
            Box::new(|m: &mut String, _: &mut Target, _: &mut HeaderMap| *m = "DELETE".into()),
            Reason::BadSignature,
        ),
        (
            "path",
            Box::new(|_: &mut String, t: &mut Target, _: &mut HeaderMap| {
                t.path = "/v1/other".into()
            }),
            Reason::BadSignature,
        ),
        (
            "query",
            Box::new(|_: &mut String, t: &mut Target, _: &mut HeaderMap| {
                t.query = Some("page=3".into())
            }),
            Reason::BadSignature,
        ),
        (
            "authority",
            Box::new(|_: &mut String, t: &mut Target, _: &mut HeaderMap| {
                t.authority = "evil.example.com".into()
            }),
            Reason::BadSignature,
        ),
        (
            "body digest",
            Box::new(set(
                "content-digest",
                "sha-256=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:",
            )),
            Reason::BadSignature,
        ),
        (
            "flipped byte",
            Box::new(|_: &mut String, _: &mut Target, f: &mut HeaderMap| {
                let sig = f["signature"].to_str().unwrap().to_owned();
                let flipped = if sig.as_bytes()[10] == b'A' {
                    sig.replacen(&sig[10..11], "B", 1)
                } else {
                    format!("{}A{}", &sig[..10], &sig[11..])
                };
                f.insert("signature", HeaderValue::from_str(&flipped).unwrap());
            }),
            Reason::BadSignature,
        ),
    ];
    for (what, change, reason) in cases {
        assert_eq!(
            signed("POST", "/v1/items?page=2", Some(b"{}"), change).unwrap_err(),
            reason,
            "{what}"
        );
    }
}

/// Rewrites the signature's parameters (so it no longer verifies, but the rules refuse first).
fn params(
    replace: &'static str,
    with: &'static str,
) -> impl FnOnce(&mut String, &mut Target, &mut HeaderMap) {
    move |_, _, f| {
        let input = f["signature-input"]
            .to_str()
            .unwrap()
            .replace(replace, with);
        f.insert("signature-input", HeaderValue::from_str(&input).unwrap());
    }
}

#[test]
fn the_rules_refuse_before_any_key_is_used() {
    let created = format!(";created={NOW}");
    let cases: Vec<Case> = vec![
        (
            "alg",
            Box::new(params("\"ed25519\"", "\"rsa-pss-sha512\"")),
            Reason::Algorithm,
        ),
        (
            "no nonce",
            Box::new(params(";nonce=\"b3k2pp5k7zAq1eR2sW9xYg\"", "")),
            Reason::Malformed,
        ),
        (
            "short nonce",
            Box::new(params("b3k2pp5k7zAq1eR2sW9xYg", "abc")),
            Reason::Malformed,
        ),
        (
            "not covering the path",
            Box::new(params("\"@path\" ", "")),
            Reason::Uncovered,
        ),
        (
            "not covering the query",
            Box::new(params(" \"@query\"", "")),
            Reason::Uncovered,
        ),
        (
            "two signatures",
            Box::new(|_: &mut String, _: &mut Target, f: &mut HeaderMap| {
                let s = f["signature"].to_str().unwrap().to_owned();
                f.insert(
                    "signature",
                    HeaderValue::from_str(&format!("{s}, {}", s.replacen("sig1", "sig2", 1)))
                        .unwrap(),
                );
            }),
            Reason::Malformed,
        ),
        (
            "no signature input",
            Box::new(|_: &mut String, _: &mut Target, f: &mut HeaderMap| {
                f.remove("signature-input");
            }),
            Reason::Malformed,
        ),
    ];
    for (what, change, reason) in cases {
        assert_eq!(
            signed("GET", "/v1/items?page=2", None, change).unwrap_err(),
            reason,
            "{what}"
        );
    }
    let no_created: Change = Box::new(move |_: &mut String, _: &mut Target, f: &mut HeaderMap| {
        let input = f["signature-input"].to_str().unwrap().replace(&created, "");
        f.insert("signature-input", HeaderValue::from_str(&input).unwrap());
    });
    assert_eq!(
        signed("GET", "/v1/items", None, no_created).unwrap_err(),
        Reason::Malformed
    );
    // A body without content-digest covered.
    let target = Target::from_original("https", "api.example.com", "/v1/items").unwrap();
    let mut f = fields(&[]);
    let request = Request {
        method: "POST",
        target: &target,
        fields: &f,
        has_body: false,
    };
    let s = signature::sign(&request, &key(), ID, (NOW as i64, NONCE), &[]).unwrap();
    f.insert(
        "signature-input",
        HeaderValue::from_str(&s.signature_input).unwrap(),
    );
    f.insert("signature", HeaderValue::from_str(&s.signature).unwrap());
    let request = Request {
        method: "POST",
        target: &target,
        fields: &f,
        has_body: true,
    };
    assert_eq!(
        read(&request, NOW, &Policy::default()).unwrap_err(),
        Reason::Uncovered
    );
    let none = fields(&[]);
    let request = Request {
        method: "GET",
        target: &target,
        fields: &none,
        has_body: false,
    };
    assert_eq!(
        read(&request, NOW, &Policy::default()).unwrap_err(),
        Reason::Missing
    );
}

#[test]
fn freshness_is_the_maximum_age_behind_and_the_skew_ahead() {
    let policy = Policy::default();
    assert_eq!(fresh(100, None, 160, &policy), Ok(Duration::from_secs(6)));
    assert_eq!(fresh(100, None, 161, &policy), Err(Reason::Stale));
    assert_eq!(fresh(105, None, 100, &policy), Ok(Duration::from_secs(71)));
    assert_eq!(fresh(106, None, 100, &policy), Err(Reason::Future));
    assert_eq!(fresh(100, Some(100), 100, &policy), Err(Reason::Expired));
    assert_eq!(
        fresh(100, Some(110), 100, &policy),
        Ok(Duration::from_secs(16))
    );
}

#[test]
fn nonces_carry_at_least_128_bits() {
    assert!(nonce_ok(NONCE));
    assert!(nonce_ok("0123456789abcdef0123456789abcdef"));
    assert!(!nonce_ok("0123456789abcdef0123456789abcde"));
    assert!(!nonce_ok("b3k2pp5k7zAq1eR2sW9xY"));
    assert!(!nonce_ok("b3k2pp5k7zAq1eR2sW9xYg\n"));
    assert!(nonce_ok("550e8400-e29b-41d4-a716-446655440000"));
}

#[test]
fn content_digest_binds_the_body() {
    let field = digest::sha256_field(b"{\"a\":1}");
    assert_eq!(digest::check(&field, b"{\"a\":1}"), Ok(()));
    assert_eq!(digest::check(&field, b"{\"a\":2}"), Err(Reason::Digest));
    assert_eq!(digest::check("sha-512=:AAAA:", b""), Err(Reason::Malformed));
}

#[test]
fn session_keys_are_decoded_once_and_small_order_keys_refused() {
    let keys = SessionKeys::new(2);
    let encode = |bytes: &[u8]| STANDARD.encode(bytes);
    let good = encode(key().verifying_key().as_bytes());
    assert_eq!(keys.get(&good).unwrap(), key().verifying_key());
    // The identity point (small order): anyone could sign for it.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(keys.get(&encode(&identity)), Err(Reason::BadSignature));
    assert_eq!(keys.get("not base64"), Err(Reason::BadSignature));
    for seed in 1..=3u8 {
        keys.get(&encode(
            SigningKey::from_bytes(&[seed; 32])
                .verifying_key()
                .as_bytes(),
        ))
        .unwrap();
    }
    assert_eq!(
        keys.held.lock().unwrap().len(),
        2,
        "at most the capacity is held"
    );
}
