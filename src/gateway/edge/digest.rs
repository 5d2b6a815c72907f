//! `Content-Digest` (RFC 9530): what a signature covers of a body. The gateway checks it
//! against the body it relays; a client computes it with [`sha256_field`].

use sfv::{BareItem, Dictionary, FieldType, Item, ListEntry, Parser};
use sha2::{Digest, Sha256, Sha512};

use super::Reason;

/// `sha-256=:<base64>:` for `body`.
pub fn sha256_field(body: &[u8]) -> String {
    let mut field = Dictionary::new();
    field.insert(
        sfv::key_ref("sha-256").to_owned(),
        ListEntry::Item(Item::new(BareItem::ByteSequence(
            Sha256::digest(body).to_vec(),
        ))),
    );
    field.serialize().unwrap_or_default()
}

/// Checks `field` against `body`: it must hold `sha-256`, and every digest it holds of an
/// algorithm known here (`sha-256`, `sha-512`) must match; unknown algorithms are ignored, as
/// RFC 9530 allows, since `sha-256` alone already binds the body.
pub fn check(field: &str, body: &[u8]) -> Result<(), Reason> {
    let digests: Dictionary = Parser::new(field).parse().map_err(|_| Reason::Malformed)?;
    let bytes = |name: &str| match digests.get(name) {
        Some(ListEntry::Item(Item {
            bare_item: BareItem::ByteSequence(bytes),
            ..
        })) => Ok(Some(bytes.as_slice())),
        Some(_) => Err(Reason::Malformed),
        None => Ok(None),
    };
    let sha256 = bytes("sha-256")?.ok_or(Reason::Malformed)?;
    if sha256 != Sha256::digest(body).as_slice() {
        return Err(Reason::Digest);
    }
    match bytes("sha-512")? {
        Some(sha512) if sha512 != Sha512::digest(body).as_slice() => Err(Reason::Digest),
        _ => Ok(()),
    }
}
