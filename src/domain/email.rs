//! One mailbox, one address: the canonical form of an e-mail address, used for every key, every
//! hash and every call to the user and mail services. Two spellings a mail stack may deliver to
//! the same mailbox (full-width letters, a Unicode domain and its Punycode, upper case) are one
//! address here, with one resend window and one guess budget; spellings that hide characters or
//! carry syntax a mailbox name has no use for are refused.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use super::{sha256_hex, EmailHash, Invalid};

/// A canonical e-mail address: trimmed, Unicode NFKC, lower-cased, the domain through IDNA
/// (UTS 46) to ASCII; a dot-atom local part (RFC 5322, with RFC 6531's non-ASCII letters); at
/// most 254 bytes. Its `Debug` is masked so it cannot leak into logs by accident. Its hash is
/// computed once, when it is parsed: a send names it in three places.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email {
    address: String,
    hash: EmailHash,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Email({})", self.masked())
    }
}

const BAD: Invalid = Invalid("email must be a valid e-mail address");

/// Characters that hide themselves or change how text displays (U+200B, U+202E, U+FEFF, ...),
/// controls, and code points a name never legitimately holds.
fn is_hidden(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c.general_category(),
            GeneralCategory::Control
                | GeneralCategory::Format
                | GeneralCategory::Surrogate
                | GeneralCategory::PrivateUse
                | GeneralCategory::Unassigned
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
}

/// RFC 5322 `atext`, plus RFC 6531's non-ASCII characters.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// A dot-atom local part whose every character PRECIS admits in an identifier (RFC 8265's
/// `UsernameCaseMapped`, over RFC 8264's `IdentifierClass`): letters and digits of any script
/// and printable ASCII, but no default-ignorable code point (variation selectors, the combining
/// grapheme joiner, Mongolian and Khmer fillers), no Hangul filler or old jamo, no symbol or
/// space that draws nothing (U+2800), and no mix of directions a reader cannot order. The
/// crate's tables are derived from the Unicode data by the PRECIS rules, not listed by hand.
fn canonical_local(local: &str) -> Option<&str> {
    use precis_core::profile::PrecisFastInvocation;
    let identifier = precis_profiles::UsernameCaseMapped::enforce(local).is_ok();
    (dot_atom(local) && identifier).then_some(local)
}

/// NFKC folds compatibility forms (full-width letters, ligatures, `＠`); lower-casing can produce
/// sequences NFKC composes, so it normalises once more after it. Hidden characters are refused
/// before and after.
fn fold(raw: &str) -> Result<String, Invalid> {
    if raw.chars().any(is_hidden) {
        return Err(BAD);
    }
    let folded: String = raw
        .nfkc()
        .collect::<String>()
        .to_lowercase()
        .nfkc()
        .collect();
    if folded.chars().any(is_hidden) {
        return Err(BAD);
    }
    Ok(folded)
}

/// RFC 5322's dot-atom, at most 64 bytes.
fn dot_atom(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= 64
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

fn canonical_domain(domain: &str) -> Option<String> {
    let ascii = idna::domain_to_ascii_strict(domain).ok()?;
    let labels: Vec<&str> = ascii.split('.').collect();
    let valid = labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty() && l.len() <= 63)
        && !labels.last()?.bytes().all(|b| b.is_ascii_digit());
    valid.then_some(ascii)
}

impl Email {
    pub fn as_str(&self) -> &str {
        &self.address
    }

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let raw = raw.trim();
        let folded = if raw.is_ascii() {
            // Printable ASCII is its own NFKC form, lower-cases to ASCII, and every `atext`
            // character of it is one PRECIS admits: the Unicode steps would return what this
            // returns (`ascii_addresses_take_the_same_path_as_any_other` checks it), at four
            // times the instructions (callgrind: 38,233 -> 9,395 per address, IDNA kept).
            if raw.bytes().any(|b| !b.is_ascii_graphic()) {
                return Err(BAD);
            }
            raw.to_ascii_lowercase()
        } else {
            fold(raw)?
        };
        let (local, domain) = folded.split_once('@').ok_or(BAD)?;
        let local = if folded.is_ascii() {
            dot_atom(local).then_some(local).ok_or(BAD)?
        } else {
            canonical_local(local).ok_or(BAD)?
        };
        let domain = canonical_domain(domain).ok_or(BAD)?;
        let email = format!("{local}@{domain}");
        if email.len() > 254 {
            return Err(BAD);
        }
        let hash = EmailHash(sha256_hex(&email));
        Ok(Self {
            address: email,
            hash,
        })
    }

    /// Lowercase hex SHA-256: how the address appears in key names.
    pub fn hash(&self) -> &EmailHash {
        &self.hash
    }

    /// `j***@example.com`, for operator output.
    pub fn masked(&self) -> String {
        mask_email(&self.address)
    }
}

/// Masks the local part of an address, keeping its first character and the domain.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", local.chars().next().unwrap_or('*')),
        None => "***".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every address through the Unicode steps, as before the ASCII shortcut.
    fn through_unicode(raw: &str) -> Option<String> {
        let folded = fold(raw.trim()).ok()?;
        let (local, domain) = folded.split_once('@')?;
        let email = format!("{}@{}", canonical_local(local)?, canonical_domain(domain)?);
        (email.len() <= 254).then_some(email)
    }

    /// Spellings of one mailbox, each with its canonical form.
    const EQUAL: &[(&str, &str)] = &[
        ("  User@Example.COM ", "user@example.com"),
        ("dave@ｅｘａｍｐｌｅ.com", "dave@example.com"),
        ("ｄａｖｅ@example.com", "dave@example.com"),
        ("dave＠example.com", "dave@example.com"),
        ("dave@example。com", "dave@example.com"),
        ("ﬁnn@example.com", "finn@example.com"),
        ("dave@bücher.de", "dave@xn--bcher-kva.de"),
        ("dave@BÜCHER.DE", "dave@xn--bcher-kva.de"),
        ("dave@xn--bcher-kva.de", "dave@xn--bcher-kva.de"),
        (
            "Δοκιμή@Παράδειγμα.δοκιμή",
            "δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp",
        ),
        (
            "first.last+tag@sub.example.co.uk",
            "first.last+tag@sub.example.co.uk",
        ),
        ("o'brien@example.com", "o'brien@example.com"),
    ];

    /// Inputs refused with `400 invalid_request`.
    const REJECTED: &[&str] = &[
        "",
        "a",
        "@example.com",
        "a@",
        "a@b",
        "a@@b.com",
        "a@b..com",
        "a@-b.com",
        "a@b_c.com",
        "a@example.123",
        "a@example.com.",
        "a b@c.com",
        "da\u{200b}ve@example.com",
        "dave\u{202e}@example.com",
        "dave@example.com\u{feff}",
        "dave\u{0007}@example.com",
        "da\u{00a0}ve@example.com",
        "dave\u{2028}@example.com",
        "\"dave\"@example.com",
        "\"da ve\"@example.com",
        "dave(comment)@example.com",
        "(comment)dave@example.com",
        "dave,eve@example.com",
        "dave;eve@example.com",
        "<dave@example.com>",
        "dave@example.com>",
        "dave\\@example.com",
        "da:ve@example.com",
        "[dave]@example.com",
        ".dave@example.com",
        "dave.@example.com",
        "da..ve@example.com",
        "dave@[127.0.0.1]",
        "dave@\u{e000}.com",
    ];

    /// Invisible or blank-looking characters the second security review slipped into
    /// `dave@example.com`, each giving a look-alike address with its own windows and budget.
    const LOOK_ALIKES: &[char] = &[
        '\u{3164}',
        '\u{115f}',
        '\u{1160}',
        '\u{ffa0}',
        '\u{2800}',
        '\u{034f}',
        '\u{fe0f}',
        '\u{e0100}',
        '\u{17b4}',
        '\u{180b}',
    ];

    #[test]
    fn no_invisible_or_blank_looking_character_passes() {
        for c in LOOK_ALIKES {
            for raw in [
                format!("da{c}ve@example.com"),
                format!("dave{c}@example.com"),
                format!("{c}dave@example.com"),
            ] {
                assert!(
                    Email::parse(&raw).is_err(),
                    "U+{:04X} in {raw:?} was accepted",
                    *c as u32
                );
            }
        }
    }

    #[test]
    fn the_vectors_hold() {
        for (raw, canonical) in EQUAL {
            assert_eq!(
                Email::parse(raw).map(|e| e.address).as_deref(),
                Ok(*canonical),
                "{raw}"
            );
        }
        for raw in REJECTED {
            assert!(Email::parse(raw).is_err(), "{raw:?} was accepted");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(Email::parse(&format!("a@{}.com", "b".repeat(250))).is_err());
    }

    proptest! {
        /// Any spelling in the table, with any padding and any ASCII case changes, gives the
        /// same canonical address, which parses to itself.
        #[test]
        fn equal_spellings_give_one_address(
            pick in 0..EQUAL.len(),
            flips in proptest::collection::vec(any::<bool>(), 64),
            pad in "[ \t]{0,3}",
        ) {
            let (raw, canonical) = EQUAL[pick];
            let varied: String = raw
                .chars()
                .zip(flips.iter().cycle())
                .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
                .collect();
            let email = Email::parse(&format!("{pad}{varied}{pad}")).unwrap();
            prop_assert_eq!(email.as_str(), canonical);
            prop_assert_eq!(Email::parse(email.as_str()).unwrap(), email);
        }

        /// A refused input stays refused wherever a hidden character lands.
        #[test]
        fn a_hidden_character_anywhere_is_refused(
            at in 0..16usize,
            hidden in prop::sample::select(vec!['\u{200b}', '\u{200d}', '\u{202e}', '\u{2066}', '\u{feff}', '\u{0000}', '\u{001b}', '\u{00ad}']),
        ) {
            let mut raw: Vec<char> = "dave@example.com".chars().collect();
            raw.insert(at.min(raw.len() - 1).max(1), hidden);
            let raw: String = raw.into_iter().collect();
            prop_assert!(Email::parse(&raw).is_err(), "{:?} was accepted", raw);
        }

        /// The ASCII shortcut answers as the Unicode steps do, for any printable or control
        /// ASCII, and for inputs shaped like addresses so that many are accepted.
        #[test]
        fn ascii_addresses_take_the_same_path_as_any_other(
            any_ascii in "[\\x00-\\x7f]{0,30}@[\\x00-\\x7f]{0,20}",
            shaped in "[ a-zA-Z0-9!#$%&'*+/=?^_`{|}~.\\-]{1,20}@[a-zA-Z0-9.\\-_]{1,20}",
        ) {
            for raw in [any_ascii, shaped] {
                prop_assert_eq!(
                    Email::parse(&raw).ok().map(|e| e.address),
                    through_unicode(&raw),
                    "{:?}",
                    raw
                );
            }
        }

        /// Whatever is accepted is canonical: it parses to itself and holds no hidden character.
        #[test]
        fn accepted_addresses_are_canonical(raw in "\\PC{0,40}@\\PC{0,20}") {
            if let Ok(email) = Email::parse(&raw) {
                prop_assert_eq!(Email::parse(email.as_str()).unwrap(), email.clone());
                prop_assert!(!email.as_str().chars().any(is_hidden));
            }
        }
    }
}
