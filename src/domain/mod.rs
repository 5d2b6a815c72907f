//! Newtypes that can only hold valid values. Handlers never see a raw string for an e-mail, an id
//! or a code: input is parsed into these types or rejected as `400 invalid_request`.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

mod code_hash;
mod email;
mod session;
pub use code_hash::{ClientKey, CodeHashKey, CodeHasher, CodeHashes};
pub use email::{mask_email, Email};
pub use session::{BlockOutcome, Cursor, Page, Revocation, RevokeOutcome, Session, SessionStatus};

/// Why a value was rejected; the message names the field and never echoes the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub &'static str);

/// Marks a deserialization error raised by a domain parser, so the edge can show its message
/// (which never echoes input) and hide serde's own (which may: `unknown field `<input>``).
const INVALID_TAG: &str = "invalid value: ";

impl Invalid {
    /// `message` as a deserializer error that [`Invalid::message_of`] recognizes.
    pub fn tag(message: &str) -> String {
        format!("{INVALID_TAG}{message}")
    }

    /// The message of a deserializer error (serde_json, urlencoded, path) when a domain parser
    /// raised it; `None` for serde's own errors.
    pub fn message_of(deserializer_error: &str) -> Option<&str> {
        let message = deserializer_error.strip_prefix(INVALID_TAG)?;
        // serde_json appends the position.
        Some(message.split(" at line ").next().unwrap_or(message))
    }
}

/// Request fields, query and path parameters deserialize straight into these types through their
/// `parse`: a handler receives a valid value or the request was a `400` naming the field.
macro_rules! deserialize_via_parse {
    ($($name:ident),* $(,)?) => {$(
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                $name::parse(&raw)
                    .map_err(|Invalid(message)| serde::de::Error::custom(Invalid::tag(message)))
            }
        }
    )*};
}

deserialize_via_parse!(
    Email,
    ChallengeId,
    DeviceSessionId,
    UserId,
    Code,
    ActorId,
    Locale,
    ClientPublicKey,
    LoginCode,
    Cursor,
    SessionStatus,
);

fn sha256_hex(input: &str) -> String {
    hex::encode(Sha256::digest(input.as_bytes()))
}

/// 128 random bits as 22 URL-safe characters: opaque, unguessable ids.
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_newtype!(
    /// `[A-Za-z0-9_-]{1,128}`, after a partition tag `{[a-z0-9]{1,4}}` in the partitioned layout.
    ChallengeId
);
string_newtype!(
    /// `[A-Za-z0-9_-]{1,128}`, after a partition tag `{[a-z0-9]{1,4}}` in the partitioned layout.
    DeviceSessionId
);
string_newtype!(
    /// `[A-Za-z0-9._:@-]{1,128}`.
    UserId
);
string_newtype!(
    /// One request's id in a write script's ARGV (22 URL-safe characters): a replay of the same
    /// call (a resend after a lost reply) carries the same id, so the script answers it as the
    /// first run did instead of acting twice.
    RequestId
);

impl RequestId {
    pub fn generate() -> Self {
        Self(random_id())
    }
}
string_newtype!(
    /// Lowercase hex SHA-256 of a canonical address ([`Email::hash`]): how an address appears in
    /// key names and challenge records, never the address itself.
    EmailHash
);
string_newtype!(
    /// `[a-z0-9_]{1,64}`: revoke reasons and actor types.
    Code
);
string_newtype!(
    /// At most 128 printable ASCII characters.
    ActorId
);
string_newtype!(
    /// A BCP 47 language tag, at most 35 characters.
    Locale
);
string_newtype!(
    /// Standard base64 (padded) of a 32-byte Ed25519 public key.
    ClientPublicKey
);

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// An id: an optional partition tag (`{` 1-4 lowercase letters or digits `}`) and 1-128 id
/// characters. Whether the tag is one of the deployment's is the store's question.
fn parse_id(raw: &str) -> Option<String> {
    let body = match raw.strip_prefix('{') {
        Some(tagged) => {
            let (tag, body) = tagged.split_once('}')?;
            let tag_ok = (1..=4).contains(&tag.len())
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            tag_ok.then_some(body)?
        }
        None => raw,
    };
    parse_token(body, 128, is_id_char).map(|_| raw.to_owned())
}

impl EmailHash {
    /// 64 lowercase hex digits, as [`Email::hash`] writes them (a script's `need` reply, an
    /// opened challenge id).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let ok = raw.len() == 64 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Self(raw.to_owned()))
            .ok_or(Invalid("email_hash must be 64 lowercase hex digits"))
    }
}

impl ChallengeId {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        parse_id(raw)
            .map(Self)
            .ok_or(Invalid("challenge_id is malformed"))
    }

    pub fn generate() -> Self {
        Self(random_id())
    }
}

impl DeviceSessionId {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        parse_id(raw)
            .map(Self)
            .ok_or(Invalid("device_session_id is malformed"))
    }

    pub fn generate() -> Self {
        Self(random_id())
    }

    /// An id read back from Redis (an index member, a challenge's field), taken as stored: only
    /// parsed ids are written there, and an operator inspecting a damaged record must still reach
    /// the key it names.
    pub fn from_stored(raw: &str) -> Self {
        Self(raw.to_owned())
    }
}

impl UserId {
    /// `[A-Za-z0-9._:@-]{1,128}`, and not dots only: `.` and `..` are path segments that URL
    /// libraries collapse, which would let an id reach another endpoint of the user service.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        parse_token(raw, 128, |c| {
            c.is_ascii_alphanumeric() || "._:@-".contains(c)
        })
        .filter(|id| !id.bytes().all(|b| b == b'.'))
        .map(Self)
        .ok_or(Invalid("user_id is malformed"))
    }
}

impl Code {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        parse_token(raw, 64, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
        })
        .map(Self)
        .ok_or(Invalid(
            "reason_code and actor_type must match [a-z0-9_]{1,64}",
        ))
    }

    /// A code the service itself uses (`admin_revoke`, `user_blocked`, ...).
    pub fn known(code: &'static str) -> Self {
        Self(code.to_owned())
    }
}

impl ActorId {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        (raw.len() <= 128 && raw.chars().all(|c| c.is_ascii_graphic() || c == ' '))
            .then(|| Self(raw.to_owned()))
            .ok_or(Invalid("actor_id must be at most 128 printable characters"))
    }
}

impl Locale {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        const BAD: Invalid =
            Invalid("locale must be a BCP 47 language tag of at most 35 characters");
        let ok = !raw.is_empty()
            && raw.len() <= 35
            && raw.split('-').all(|p| {
                !p.is_empty() && p.len() <= 8 && p.chars().all(|c| c.is_ascii_alphanumeric())
            });
        ok.then(|| Self(raw.to_owned())).ok_or(BAD)
    }
}

impl ClientPublicKey {
    /// Standard base64 (padded) of 32 bytes, refusing the weak Ed25519 keys: a point of small
    /// order (the all-zero and identity encodings among them) verifies signatures anyone can
    /// forge, so a session bound to one would be bound to nobody.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        const BAD: Invalid = Invalid("client_public_key must be standard base64 of 32 bytes");
        const WEAK: Invalid = Invalid("client_public_key is a weak Ed25519 key (small order)");
        match STANDARD.decode(raw) {
            Ok(bytes) if bytes.len() == 32 && raw.len() == 44 => {
                if SMALL_ORDER.iter().any(|weak| weak[..] == bytes[..]) {
                    return Err(WEAK);
                }
                Ok(Self(raw.to_owned()))
            }
            _ => Err(BAD),
        }
    }
}

/// Every 32-byte encoding that decompresses to a point of small order: the y-coordinate of each
/// of the eight torsion points as it is and, when below 19, plus p (the other spelling of the
/// same field element), each with either sign bit (a torsion point's negation is one too).
/// Decompression reads nothing else, so the list is complete (checked against decompression in
/// `domain::tests`); comparing with it costs nanoseconds where decompressing, a square root, cost
/// about 3 us of every confirm (5.6 % of the service's confirm CPU in the issue 39 profile).
pub(crate) static SMALL_ORDER: std::sync::LazyLock<Vec<[u8; 32]>> =
    std::sync::LazyLock::new(|| {
        let mut encodings = Vec::new();
        for point in curve25519_dalek::constants::EIGHT_TORSION {
            let mut y = point.compress().to_bytes();
            y[31] &= 0x7f;
            let mut spellings = vec![y];
            // y + (2^255 - 19) stays below 2^255 only for y < 19: its low byte grows by 0xed.
            if y[0] < 19 && y[1..].iter().all(|&b| b == 0) {
                let mut plus_p = [0xff; 32];
                plus_p[0] = 0xed + y[0];
                plus_p[31] = 0x7f;
                spellings.push(plus_p);
            }
            for spelling in spellings {
                for sign in [0, 0x80] {
                    let mut encoding = spelling;
                    encoding[31] |= sign;
                    if !encodings.contains(&encoding) {
                        encodings.push(encoding);
                    }
                }
            }
        }
        encodings
    });

fn parse_token(raw: &str, max: usize, allowed: impl Fn(char) -> bool) -> Option<String> {
    (!raw.is_empty() && raw.len() <= max && raw.chars().all(allowed)).then(|| raw.to_owned())
}

/// A six-digit login code. `Debug` is redacted: codes never reach logs.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginCode(String);

impl std::fmt::Debug for LoginCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginCode(******)")
    }
}

impl LoginCode {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        (raw.len() == 6 && raw.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Self(raw.to_owned()))
            .ok_or(Invalid("code must be exactly 6 digits"))
    }

    /// Uniform over 000000..=999999, from the thread-local CSPRNG.
    pub fn generate() -> Self {
        Self(format!("{:06}", rand::rng().random_range(0..1_000_000u32)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests;
