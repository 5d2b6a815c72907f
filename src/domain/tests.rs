use super::*;

#[test]
fn email_hash_is_sha256_of_the_normalized_address() {
    let email = Email::parse("A@Example.com").unwrap();
    assert_eq!(email.hash().as_str(), sha256_hex("a@example.com"));
    assert_eq!(email.masked(), "a***@example.com");
}

#[test]
fn codes_are_six_digits_and_never_printed() {
    let code = LoginCode::generate();
    assert!(LoginCode::parse(code.as_str()).is_ok());
    for bad in ["12345", "1234567", "12345a", "١٢٣٤٥٦"] {
        assert!(LoginCode::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(format!("{code:?}"), "LoginCode(******)");
}

#[test]
fn ids_accept_only_their_alphabet() {
    assert!(ChallengeId::parse(ChallengeId::generate().as_str()).is_ok());
    assert!(ChallengeId::parse("a/b").is_err());
    assert!(ChallengeId::parse(&"a".repeat(129)).is_err());
    assert!(UserId::parse("user-1@tenant:x.y").is_ok());
    assert!(UserId::parse("user 1").is_err());
    for dots in [".", "..", "..."] {
        assert!(UserId::parse(dots).is_err(), "{dots}");
    }
    assert!(UserId::parse("a.b").is_ok() && UserId::parse(".a").is_ok());
    assert!(Code::parse("admin_revoke").is_ok());
    assert!(Code::parse("Admin").is_err());
}

#[test]
fn public_keys_are_32_bytes_of_padded_standard_base64() {
    let key = STANDARD.encode([7u8; 32]);
    assert!(ClientPublicKey::parse(&key).is_ok());
    assert!(ClientPublicKey::parse(&STANDARD.encode([7u8; 31])).is_err());
    assert!(ClientPublicKey::parse(&URL_SAFE_NO_PAD.encode([0xffu8; 32])).is_err());
    assert!(ClientPublicKey::parse(key.trim_end_matches('=')).is_err());
}

/// Issue 23, finding 11: the all-zero key, the identity and the other small-order points
/// were accepted, binding a session to a key whose signatures anyone can forge.
#[test]
fn weak_ed25519_keys_are_refused() {
    let mut identity = [0u8; 32];
    identity[0] = 1;
    // The canonical encodings of the eight small-order points (RFC 8032's torsion group).
    let torsion: Vec<[u8; 32]> = curve25519_dalek::constants::EIGHT_TORSION
        .iter()
        .map(|p| p.compress().to_bytes())
        .collect();
    for weak in [[0u8; 32], identity].into_iter().chain(torsion) {
        let raw = STANDARD.encode(weak);
        assert_eq!(
            ClientPublicKey::parse(&raw).err().map(|e| e.0),
            Some("client_public_key is a weak Ed25519 key (small order)"),
            "{raw}"
        );
    }
    // A real public key (the basepoint's encoding) is fine.
    let basepoint = curve25519_dalek::constants::ED25519_BASEPOINT_COMPRESSED.to_bytes();
    assert!(ClientPublicKey::parse(&STANDARD.encode(basepoint)).is_ok());
}

/// The small-order list is exactly the encodings whose decompression is of small order: each
/// entry is one, and random encodings (and every spelling near the torsion points') agree.
#[test]
fn the_small_order_list_agrees_with_decompression() {
    use curve25519_dalek::edwards::CompressedEdwardsY;
    let small = |bytes: &[u8; 32]| {
        CompressedEdwardsY(*bytes)
            .decompress()
            .is_some_and(|p| p.is_small_order())
    };
    for weak in super::SMALL_ORDER.iter() {
        assert!(small(weak), "{weak:?}");
    }
    // Five y values (the identity's 1, the order-2 point's p - 1, the order-4 points' 0, two for
    // the order-8 points), 0 and 1 with a second spelling: seven, each with both sign bits.
    assert_eq!(super::SMALL_ORDER.len(), 14);
    let mut candidates: Vec<[u8; 32]> = (0..20_000).map(|_| rand::random()).collect();
    for low in 0..=255u8 {
        let mut near = [0u8; 32];
        near[0] = low;
        candidates.push(near);
        let mut high = [0xff; 32];
        high[0] = low;
        high[31] = 0x7f;
        candidates.push(high);
        high[31] = 0xff;
        candidates.push(high);
    }
    for candidate in candidates {
        assert_eq!(
            super::SMALL_ORDER.contains(&candidate),
            small(&candidate),
            "{candidate:?}"
        );
    }
}

#[test]
fn locales_are_bcp47_shaped() {
    assert!(Locale::parse("en-GB").is_ok());
    assert!(Locale::parse("zh-Hant-TW").is_ok());
    assert!(Locale::parse("en_GB").is_err());
    assert!(Locale::parse(&"a".repeat(36)).is_err());
}

mod properties {
    use super::super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsers_never_panic_on_any_input(raw in any::<String>()) {
            let _ = Email::parse(&raw);
            let _ = ChallengeId::parse(&raw);
            let _ = DeviceSessionId::parse(&raw);
            let _ = UserId::parse(&raw);
            let _ = Code::parse(&raw);
            let _ = ActorId::parse(&raw);
            let _ = Locale::parse(&raw);
            let _ = ClientPublicKey::parse(&raw);
            let _ = LoginCode::parse(&raw);
        }

        #[test]
        fn a_parsed_email_is_normalized_and_parses_to_itself(
            local in "[A-Za-z0-9%+_-]{1,20}(\\.[A-Za-z0-9%+_-]{1,20}){0,2}",
            domain in "[A-Za-z0-9]{1,20}(\\.[A-Za-z]{2,10}){1,3}",
            pad in " {0,3}",
        ) {
            let raw = format!("{pad}{local}@{domain}{pad}");
            let email = Email::parse(&raw).unwrap();
            prop_assert_eq!(email.as_str(), raw.trim().to_lowercase());
            prop_assert_eq!(Email::parse(email.as_str()).unwrap(), email.clone());
            let debug = format!("{:?}", email);
            prop_assert!(!debug.contains(email.as_str()), "Debug shows the address: {}", debug);
        }

        #[test]
        fn only_32_byte_keys_in_padded_standard_base64_are_accepted(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let encoded = STANDARD.encode(&bytes);
            prop_assert_eq!(ClientPublicKey::parse(&encoded).is_ok(), bytes.len() == 32);
        }

        #[test]
        fn generated_ids_and_codes_always_parse(_n in 0..1000u32) {
            prop_assert!(ChallengeId::parse(ChallengeId::generate().as_str()).is_ok());
            prop_assert!(DeviceSessionId::parse(DeviceSessionId::generate().as_str()).is_ok());
            prop_assert!(LoginCode::parse(LoginCode::generate().as_str()).is_ok());
        }
    }
}
