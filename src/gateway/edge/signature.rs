//! HTTP Message Signatures (RFC 9421) with `ed25519`: reading a request's one signature into a
//! [`Proof`], and the signature base both the gateway (to verify) and the reference client (to
//! sign) build with [`base`].

use ed25519_dalek::{Signature, Signer as _, SigningKey};
use sfv::{BareItem, Dictionary, FieldType, InnerList, Item, ListEntry, Parameters, Parser};

use super::{fresh, nonce_ok, Policy, Proof, Reason, Request, Scheme, Target};

/// Reads the request's signature (`Signature-Input` and `Signature`): exactly one, with
/// `keyid`, `created` and `nonce`, `alg` absent or `ed25519`, covering what the rules require.
pub fn read(request: &Request, now: u64, policy: &Policy) -> Result<Proof, Reason> {
    let inputs = dictionary(request, "signature-input")?;
    let signatures = dictionary(request, "signature")?;
    let (1, 1, Some((label, ListEntry::InnerList(covered)))) =
        (inputs.len(), signatures.len(), inputs.first())
    else {
        return Err(Reason::Malformed);
    };
    let Some(ListEntry::Item(Item {
        bare_item: BareItem::ByteSequence(signature),
        ..
    })) = signatures.get(label)
    else {
        return Err(Reason::Malformed);
    };
    let signature = Signature::from_slice(signature).map_err(|_| Reason::Malformed)?;

    let params = &covered.params;
    let string = |name: &str| {
        params
            .get(name)
            .and_then(|v| v.as_string())
            .map(|s| s.as_str())
    };
    let integer = |name: &str| params.get(name).and_then(|v| v.as_integer()).map(i64::from);
    if params.contains_key("alg") && string("alg") != Some("ed25519") {
        return Err(Reason::Algorithm);
    }
    let (Some(keyid), Some(created), Some(nonce)) =
        (string("keyid"), integer("created"), string("nonce"))
    else {
        return Err(Reason::Malformed);
    };
    if !nonce_ok(nonce) || (params.contains_key("expires") && integer("expires").is_none()) {
        return Err(Reason::Malformed);
    }

    let message = base(request, covered)?;
    let ids: Vec<&str> = covered
        .items
        .iter()
        .filter_map(|i| i.bare_item.as_string())
        .map(|s| s.as_str())
        .collect();
    let mut required = vec!["@method", "@authority", "@path"];
    if request.target.query.is_some() {
        required.push("@query");
    }
    if request.has_body {
        required.push("content-digest");
    }
    if required.iter().any(|r| !ids.contains(r)) {
        return Err(Reason::Uncovered);
    }
    let remember = fresh(created, integer("expires"), now, policy)?;
    Ok(Proof {
        scheme: Scheme::Signature,
        device_session_id: keyid.to_owned(),
        once: format!("sig:{nonce}"),
        remember,
        message: message.into_bytes(),
        signature,
        named_key: None,
    })
}

/// The signature base of RFC 9421 §2.5 for `covered` (component identifiers with the signature
/// parameters): one line per component, then `@signature-params`. Components with parameters
/// (`;sf`, `;key`, `;req`, ...), `@query-param` and `@status` are refused, as are a component
/// named twice and a covered field the request does not have.
pub fn base(request: &Request, covered: &InnerList) -> Result<String, Reason> {
    let mut base = String::new();
    let mut seen: Vec<&str> = Vec::new();
    for item in &covered.items {
        let (BareItem::String(id), true) = (&item.bare_item, item.params.is_empty()) else {
            return Err(Reason::Malformed);
        };
        let id = id.as_str();
        if seen.contains(&id) {
            return Err(Reason::Malformed);
        }
        seen.push(id);
        let target = request.target;
        let value = match id {
            "@method" => request.method.to_owned(),
            "@authority" => target.authority.clone(),
            "@scheme" => target.scheme.clone(),
            "@path" => target.path.clone(),
            "@query" => target.query_component(),
            "@request-target" => target.request_target(),
            "@target-uri" => target.uri(),
            derived if derived.starts_with('@') => return Err(Reason::Malformed),
            field if field.bytes().any(|b| b.is_ascii_uppercase()) => {
                return Err(Reason::Malformed)
            }
            field => request.field(field).ok_or(Reason::Malformed)?,
        };
        base.push_str(&format!("\"{id}\": {value}\n"));
    }
    let params = vec![ListEntry::InnerList(covered.clone())]
        .serialize()
        .ok_or(Reason::Malformed)?;
    base.push_str(&format!("\"@signature-params\": {params}"));
    Ok(base)
}

/// What a client sends: the `Signature-Input` and `Signature` fields for `request`, covering
/// `@method`, `@authority`, `@path`, `@query` when the target has one and `content-digest`
/// when the request has a body (put that field in `request.fields` first: [`super::digest`]).
pub struct Signed {
    pub signature_input: String,
    pub signature: String,
}

/// Signs `request` as the reference client does, label `sig1`, covering `extra` components too.
pub fn sign(
    request: &Request,
    key: &SigningKey,
    keyid: &str,
    (created, nonce): (i64, &str),
    extra: &[&str],
) -> Result<Signed, Reason> {
    let mut ids = vec!["@method", "@authority", "@path"];
    if request.target.query.is_some() {
        ids.push("@query");
    }
    if request.has_body {
        ids.push("content-digest");
    }
    ids.extend_from_slice(extra);
    let text = |s: &str| sfv::String::from_string(s.to_owned()).map_err(|_| Reason::Malformed);
    let mut params = Parameters::new();
    params.insert(
        sfv::key_ref("created").to_owned(),
        BareItem::Integer(sfv::Integer::try_from(created).map_err(|_| Reason::Malformed)?),
    );
    params.insert(
        sfv::key_ref("nonce").to_owned(),
        BareItem::String(text(nonce)?),
    );
    params.insert(
        sfv::key_ref("keyid").to_owned(),
        BareItem::String(text(keyid)?),
    );
    params.insert(
        sfv::key_ref("alg").to_owned(),
        BareItem::String(text("ed25519")?),
    );
    let items = ids
        .iter()
        .map(|id| text(id).map(|s| Item::new(BareItem::String(s))))
        .collect::<Result<_, _>>()?;
    let covered = InnerList::with_params(items, params);
    let signature = key.sign(base(request, &covered)?.as_bytes());
    let label = sfv::key_ref("sig1").to_owned();
    let mut input = Dictionary::new();
    input.insert(label.clone(), ListEntry::InnerList(covered));
    let mut signed = Dictionary::new();
    signed.insert(
        label,
        ListEntry::Item(Item::new(BareItem::ByteSequence(
            signature.to_bytes().to_vec(),
        ))),
    );
    Ok(Signed {
        signature_input: input.serialize().ok_or(Reason::Malformed)?,
        signature: signed.serialize().ok_or(Reason::Malformed)?,
    })
}

/// Who signs: a session's key and its `device_session_id`.
pub struct Signer<'a> {
    pub key: &'a SigningKey,
    pub keyid: &'a str,
}

impl Signer<'_> {
    /// Signs a request in place as the reference client does: `Content-Digest` when it has a
    /// body, then `Signature-Input` and `Signature` ([`sign`], covering `extra` too).
    pub fn sign_fields(
        &self,
        (method, target): (&str, &Target),
        fields: &mut http::HeaderMap,
        body: Option<&[u8]>,
        stamp: (i64, &str),
        extra: &[&str],
    ) -> Result<(), Reason> {
        let value = |v: &str| http::HeaderValue::from_str(v).map_err(|_| Reason::Malformed);
        if let Some(body) = body {
            fields.insert("content-digest", value(&super::digest::sha256_field(body))?);
        }
        let request = Request {
            method,
            target,
            fields,
            has_body: body.is_some(),
        };
        let signed = sign(&request, self.key, self.keyid, stamp, extra)?;
        fields.insert("signature-input", value(&signed.signature_input)?);
        fields.insert("signature", value(&signed.signature)?);
        Ok(())
    }
}

/// A Dictionary field of the request, every line of it.
fn dictionary(request: &Request, name: &str) -> Result<Dictionary, Reason> {
    let value = request.field(name).ok_or(Reason::Malformed)?;
    Parser::new(value.as_str())
        .parse()
        .map_err(|_| Reason::Malformed)
}
