//! Login codes are hashed with a server key, so that anyone who can read the shared Redis (an
//! over-broad ACL, `SLOWLOG`, `MONITOR`, a backup) cannot recover a live code by trying all 10^6.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{ChallengeId, EmailHash, Invalid, LoginCode};

/// A key for `code_hash`: at least 32 bytes, given as standard base64. Neither `Debug` nor any
/// other path prints it; it never reaches Redis, a log or a span.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeHashKey(Vec<u8>);

impl std::fmt::Debug for CodeHashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeHashKey(<redacted>)")
    }
}

impl CodeHashKey {
    /// Shortest key accepted, in bytes (HMAC-SHA256's block-strength key).
    pub const MIN_BYTES: usize = 32;

    pub fn parse(base64: &str) -> Result<Self, Invalid> {
        STANDARD
            .decode(base64.trim())
            .ok()
            .filter(|k| k.len() >= Self::MIN_BYTES)
            .map(Self)
            .ok_or(Invalid("standard base64 of at least 32 bytes"))
    }
}

/// The fixed key of `stub` mode: public, so codes hashed with it are as good as unkeyed.
const DEVELOPMENT_KEY: &[u8; 32] = b"authsession-dev-only-not-secret!";

/// Hashes login codes under the current key and, during a rotation, the previous one.
#[derive(Clone, Debug)]
pub struct CodeHasher {
    current: CodeHashKey,
    previous: Option<CodeHashKey>,
}

impl CodeHasher {
    pub fn new(current: CodeHashKey, previous: Option<CodeHashKey>) -> Self {
        Self { current, previous }
    }

    /// `stub` mode without a configured key (the service warns at start).
    pub fn development() -> Self {
        Self::new(CodeHashKey(DEVELOPMENT_KEY.to_vec()), None)
    }

    /// `code_hash`: lowercase hex HMAC-SHA256 under the current key of `"<challenge_id>:<code>"`.
    pub fn hash(&self, challenge_id: &ChallengeId, code: &LoginCode) -> String {
        hmac_hex(&self.current, challenge_id, code)
    }

    /// The same under the previous key, while one is configured: codes sent before a rotation
    /// still confirm.
    pub fn previous_hash(&self, challenge_id: &ChallengeId, code: &LoginCode) -> Option<String> {
        self.previous
            .as_ref()
            .map(|key| hmac_hex(key, challenge_id, code))
    }
}

impl CodeHasher {
    /// A client's IP address as it appears in rate-limit keys: 32 hex characters of an HMAC under
    /// the server key, so that keys never hold an address and the small IPv4 space cannot be
    /// enumerated back from them.
    pub fn client_key(&self, ip: std::net::IpAddr) -> ClientKey {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.current.0).expect("HMAC takes any key length");
        mac.update(b"client-ip:");
        mac.update(ip.to_string().as_bytes());
        ClientKey(hex::encode(&mac.finalize().into_bytes()[..16]))
    }
}

/// Length of a sealed address in a challenge id: 12 bytes of nonce and 32 of sealed hash, as
/// unpadded base64url (59 characters: with a partition tag, an id still fits Redis's compact
/// hash encoding, 64 bytes a value, where a throttled challenge stores its opener's id).
const SEALED_LEN: usize = 16 + 43;

impl CodeHasher {
    /// A challenge id's body that carries its address's hash, sealed: a random 12-byte nonce,
    /// then the SHA-256 of the address XOR an HMAC keystream of the nonce under the current key.
    /// A confirm names the address's failure counter from it (every key a script touches is
    /// declared), without a round trip to ask the challenge; the id, which clients hold and logs
    /// name, reveals nothing of the address. The record's key is the whole id, so a forged body
    /// names no challenge.
    pub fn seal_address(&self, email_hash: &EmailHash) -> String {
        let mut nonce = [0u8; 12];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        let mut sealed = hex::decode(email_hash.as_str()).expect("a hex SHA-256");
        for (b, k) in sealed.iter_mut().zip(self.address_keystream(&nonce)) {
            *b ^= k;
        }
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}{}", b64.encode(nonce), b64.encode(sealed))
    }

    /// The address hash a challenge id minted by [`CodeHasher::seal_address`] carries, under the
    /// current key; `None` for any other id. (Sealed under a previous key, it opens to another
    /// hash: the verify script then answers with the record's, one round trip more.)
    pub fn open_address(&self, challenge_id: &ChallengeId) -> Option<EmailHash> {
        let raw = challenge_id.as_str();
        let body = raw.split_once('}').map_or(raw, |(_, body)| body);
        if body.len() != SEALED_LEN {
            return None;
        }
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let nonce: [u8; 12] = b64.decode(&body[..16]).ok()?.try_into().ok()?;
        let mut hash = b64.decode(&body[16..]).ok()?;
        if hash.len() != 32 {
            return None;
        }
        for (b, k) in hash.iter_mut().zip(self.address_keystream(&nonce)) {
            *b ^= k;
        }
        EmailHash::parse(&hex::encode(hash)).ok()
    }

    fn address_keystream(&self, nonce: &[u8; 12]) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.current.0).expect("HMAC takes any key length");
        mac.update(b"challenge-address:");
        mac.update(nonce);
        mac.finalize().into_bytes().into()
    }
}

/// See [`CodeHasher::client_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey(String);

impl ClientKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A presented code's hashes under every accepted key, for the verify and confirm scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeHashes {
    pub current: String,
    /// Under the previous key, while a rotation is configured.
    pub previous: Option<String>,
}

impl CodeHasher {
    pub fn hashes(&self, challenge_id: &ChallengeId, code: &LoginCode) -> CodeHashes {
        CodeHashes {
            current: self.hash(challenge_id, code),
            previous: self.previous_hash(challenge_id, code),
        }
    }
}

fn hmac_hex(key: &CodeHashKey, challenge_id: &ChallengeId, code: &LoginCode) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes a key of any length");
    mac.update(challenge_id.as_str().as_bytes());
    mac.update(b":");
    mac.update(code.as_str().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expected value comes from an independent implementation:
    /// `printf 'c1:123456' | openssl dgst -sha256 -hmac kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk`.
    #[test]
    fn code_hash_is_hmac_sha256_of_challenge_and_code() {
        let key = CodeHashKey::parse(&STANDARD.encode([b'k'; 32])).unwrap();
        let hasher = CodeHasher::new(key, None);
        let id = ChallengeId::parse("c1").unwrap();
        let code = LoginCode::parse("123456").unwrap();
        assert_eq!(
            hasher.hash(&id, &code),
            "b38651a56c22c9dcc7898bef0c3fcadb01e36a49a830ed1659070f2ce6208888"
        );
        assert_eq!(hasher.previous_hash(&id, &code), None);
    }

    #[test]
    fn a_sealed_id_opens_to_its_address_under_its_key_only() {
        let hasher = CodeHasher::development();
        let hash = EmailHash::parse(&"ab".repeat(32)).unwrap();
        let body = hasher.seal_address(&hash);
        assert!(!body.contains("abab"), "{body}");
        for raw in [body.clone(), format!("{{p1}}{body}")] {
            let id = ChallengeId::parse(&raw).unwrap();
            assert_eq!(hasher.open_address(&id), Some(hash.clone()));
        }
        let other = CodeHasher::new(
            CodeHashKey::parse(&STANDARD.encode([9u8; 32])).unwrap(),
            None,
        );
        let id = ChallengeId::parse(&body).unwrap();
        assert_ne!(other.open_address(&id), Some(hash));
        assert_eq!(hasher.open_address(&ChallengeId::generate()), None);
        assert_ne!(
            hasher.seal_address(&EmailHash::parse(&"ab".repeat(32)).unwrap()),
            body
        );
    }

    #[test]
    fn keys_are_at_least_32_bytes_of_base64_and_never_printed() {
        assert!(CodeHashKey::parse(&STANDARD.encode([1u8; 31])).is_err());
        assert!(CodeHashKey::parse("not base64!").is_err());
        let key = CodeHashKey::parse(&STANDARD.encode([7u8; 32])).unwrap();
        assert_eq!(format!("{key:?}"), "CodeHashKey(<redacted>)");
        let hasher = CodeHasher::new(key.clone(), Some(key));
        assert!(!format!("{hasher:?}").contains("7"));
    }
}
