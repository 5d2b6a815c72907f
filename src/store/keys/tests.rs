use super::*;

#[test]
fn hash_tag_follows_redis_rules() {
    assert_eq!(hash_tag("{auth}x"), Some("auth"));
    assert_eq!(hash_tag("a{b}c{d}"), Some("b"));
    assert_eq!(hash_tag("{}x"), None);
    assert_eq!(hash_tag("plain"), None);
    assert!(share_one_hash_tag(&["{a}x", "{a}y", "z{a}"]));
    assert!(!share_one_hash_tag(&["{a}x", "{b}y"]));
    assert!(!share_one_hash_tag(&["x", "y"]));
}
use crate::config::Config;
use crate::domain::{CodeHasher, Email, EmailHash};
use std::collections::HashMap;

fn challenge(id: &str) -> ChallengeId {
    ChallengeId::parse(id).unwrap()
}

fn session(id: &str) -> DeviceSessionId {
    DeviceSessionId::parse(id).unwrap()
}

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

/// The hash of the address `<local>@example.com`.
fn address(local: &str) -> EmailHash {
    Email::parse(&format!("{local}@example.com"))
        .unwrap()
        .hash()
        .clone()
}

fn client() -> ClientKey {
    CodeHasher::development().client_key("192.0.2.1".parse().unwrap())
}

#[test]
fn keys_follow_the_contract() {
    let config = Config::from_source(&HashMap::new()).unwrap();
    let keys = Keys::new(&config.redis, &config.gateway);
    let (ab, c, r) = (address("ab"), client(), RequestId::generate());
    assert_eq!(keys.challenge(&challenge("c1")), "authsession:challenge:c1");
    assert_eq!(
        keys.resend_throttle(&ab),
        format!("authsession:resend_throttle:{ab}")
    );
    assert_eq!(
        keys.confirm_failures(&ab),
        format!("authsession:confirm_failures:{ab}")
    );
    assert_eq!(keys.session(&session("s1")), "authsession:session:s1");
    assert_eq!(keys.session_prefix(), "authsession:session:");
    assert_eq!(
        keys.user_sessions(&user("u1")),
        "authsession:user:u1:sessions"
    );
    assert_eq!(
        keys.user_active_sessions(&user("u1")),
        "authsession:user:u1:active_sessions"
    );
    assert_eq!(
        keys.user_revoked_sessions(&user("u1")),
        "authsession:user:u1:revoked_sessions"
    );
    assert_eq!(
        keys.revoke_batches(&user("u1"), &r),
        format!("authsession:revoke_batches:{r}")
    );
    assert_eq!(keys.config(), "authsession:config");
    assert_eq!(keys.gateway_session(&session("s1")), "gateway:session:s1");
    let single = keys.layout().all()[0];
    assert_eq!(keys.stream(single), "gateway:session_events");
    assert_eq!(keys.streams(), ["gateway:session_events"]);
    assert_eq!(
        keys.rate_send_global(single),
        "authsession:rate:send_global"
    );
    let c = c.as_str();
    assert_eq!(
        keys.rate_send_client(&client()),
        format!("authsession:rate:send:{c}")
    );
    assert_eq!(
        keys.rate_confirm_client(&client()),
        format!("authsession:rate:confirm:{c}")
    );
    assert_eq!(
        keys.user_blocked(&user("u1")),
        "authsession:user:u1:blocked"
    );
    assert_eq!(keys.user_index_parts(single).head, "authsession:user:");
    // Ids of the single-tag layout carry no tag; a tagged one is not ours.
    let minted = keys.layout().new_challenge_id(&ab);
    assert!(!minted.as_str().contains('{'));
    assert_eq!(keys.layout().of_id(minted.as_str()), Some(single));
    assert_eq!(keys.layout().of_id("{a}x"), None);
}

#[test]
fn every_key_has_the_kind_the_script_headers_name() {
    let config = Config::from_source(&HashMap::new()).unwrap();
    let keys = Keys::new(&config.redis, &config.gateway);
    let kinds = [
        (keys.challenge(&challenge("c")), "challenge"),
        (keys.resend_throttle(&address("0f")), "resend_throttle"),
        (keys.confirm_failures(&address("0f")), "confirm_failures"),
        (keys.session(&session("s")), "session"),
        (keys.user_sessions(&user("u:sessions")), "user_sessions"),
        (
            keys.user_active_sessions(&user("u")),
            "user_active_sessions",
        ),
        (
            keys.user_revoked_sessions(&user("u")),
            "user_revoked_sessions",
        ),
        (
            keys.revoke_batches(&user("u"), &RequestId::generate()),
            "revoke_batches",
        ),
        (keys.user_blocked(&user("u")), "user_blocked"),
        (keys.rate_send_client(&client()), "rate_send_client"),
        (
            keys.rate_send_global(keys.layout().all()[0]),
            "rate_send_global",
        ),
        (keys.rate_confirm_client(&client()), "rate_confirm_client"),
        (keys.config(), "config"),
        (keys.gateway_session(&session("s")), "gateway_session"),
        (keys.streams()[0].clone(), "stream"),
    ];
    for (key, kind) in kinds {
        assert_eq!(keys.kind_of(&key), Some(kind), "{key}");
    }
    assert_eq!(keys.kind_of("other:thing"), None);
}

fn partitioned(n: &str) -> Keys {
    let env = HashMap::from([
        (crate::config::REDIS_MODE.to_owned(), "cluster".to_owned()),
        (crate::config::REDIS_PARTITIONS.to_owned(), n.to_owned()),
    ]);
    let config = Config::from_source(&env).unwrap();
    Keys::new(&config.redis, &config.gateway)
}

/// Partitioned: everything one script touches shares a slot. A user's keys, its sessions'
/// records and snapshots and its partition's stream; an address's challenge, resend window
/// and failure counter; a client's counters.
#[test]
fn partitioned_keys_group_by_user_address_and_client() {
    use crate::store::partitions::slot;
    let keys = partitioned("64");
    let user = user("user-7");
    let home = keys.layout().of_user(user.as_str());
    let ab = address("ab");
    let challenge = keys.layout().new_challenge_id(&ab);
    let session = keys.layout().device_session_id(&challenge, &user);
    let request = RequestId::generate();
    let user_slot = slot(&keys.user_sessions(&user));
    for key in [
        keys.user_active_sessions(&user),
        keys.user_revoked_sessions(&user),
        keys.user_blocked(&user),
        keys.revoke_batches(&user, &request),
        keys.session(&session),
        keys.gateway_session(&session),
        keys.stream(home),
        format!("{}{}", keys.session_prefix(), session),
        format!("{}user-7:sessions", keys.user_index_parts(home).head),
    ] {
        assert_eq!(slot(&key), user_slot, "{key}");
    }
    let address_slot = slot(&keys.challenge(&challenge));
    let address = keys.layout().of_address(ab.as_str());
    for key in [
        keys.resend_throttle(&ab),
        keys.confirm_failures(&ab),
        format!("{}{ab}", keys.confirm_failures_prefix(address)),
    ] {
        assert_eq!(slot(&key), address_slot, "{key}");
    }
    // A client's admission counters share its partition's slot (the admit scripts').
    let client_slot = slot(&keys.rate_send_client(&client()));
    assert_eq!(
        slot(&keys.rate_send_global(keys.layout().of_client(client().as_str()))),
        client_slot
    );
    assert_eq!(slot(&keys.rate_confirm_client(&client())), client_slot);
    // The contract names keep their shape, the tag sits where the id goes.
    let tag = keys
        .layout()
        .tag_name(keys.layout().of_user("user-7"))
        .unwrap();
    assert_eq!(
        keys.user_sessions(&user),
        format!("authsession:user:{{{tag}}}user-7:sessions")
    );
    assert_eq!(
        keys.stream(home),
        format!("gateway:session_events{{{tag}}}")
    );
    assert!(session.as_str().starts_with(&format!("{{{tag}}}")));
    assert_eq!(keys.streams().len(), 64);
    for (key, kind) in [
        (keys.user_sessions(&user), "user_sessions"),
        (keys.stream(home), "stream"),
        (keys.rate_send_global(home), "rate_send_global"),
        (keys.revoke_batches(&user, &request), "revoke_batches"),
        (keys.session(&session), "session"),
    ] {
        assert_eq!(keys.kind_of(&key), Some(kind), "{key}");
    }
}

/// The device session id of a confirm is a function of the challenge (a retry finds it), a
/// partition's ids are recognised and a foreign or untagged one is not.
#[test]
fn partitioned_ids_carry_their_partition() {
    let keys = partitioned("8");
    let user = user("u1");
    let ff = address("ff");
    let challenge = keys.layout().new_challenge_id(&ff);
    assert_eq!(
        keys.layout().device_session_id(&challenge, &user),
        keys.layout().device_session_id(&challenge, &user)
    );
    let other = keys.layout().new_challenge_id(&ff);
    assert_ne!(
        keys.layout().device_session_id(&challenge, &user),
        keys.layout().device_session_id(&other, &user)
    );
    assert_eq!(
        keys.layout().of_id(challenge.as_str()),
        Some(keys.layout().of_address(ff.as_str()))
    );
    assert_eq!(keys.layout().of_id("plain"), None);
    assert_eq!(keys.layout().of_id("{zzzz}x"), None);
    assert_eq!(keys.layout().of_id("{"), None);
    let p = keys.layout().all()[3];
    let id = keys.layout().random_device_session_id(p);
    assert_eq!(keys.layout().of_id(id.as_str()), Some(p));
    assert!(crate::domain::DeviceSessionId::parse(id.as_str()).is_ok());
}
