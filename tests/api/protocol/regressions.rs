//! Counterexamples the protocol model found, each replayed on a real Redis.

use authsession::domain::{ClientPublicKey, Email};
use authsession::store::challenges::{Confirmed, Rejection, Verified};
use testcontainers::RedisServer;

use crate::helpers::{public_key, unique_email};
use crate::scripts_audit::{client, confirm_request, hashes, new_user, sent_challenge, standalone};

/// Model counterexample (single-tag): two clients verify one challenge with the right code and
/// different keys; the first confirm commits; the second, for the same user, derives the same
/// session id, and the old script answered it `created` with the first client's session (bound
/// to the other key) instead of refusing it.
#[tokio::test]
async fn a_twin_confirm_with_another_key_is_refused_after_the_first_committed() {
    let redis = RedisServer::start().await;
    let b = standalone(&redis).await;
    let email = Email::parse(&unique_email()).unwrap();
    let (id, code) = sent_challenge(&b, &email).await;
    let code_hashes = hashes(&id, &code);
    let user = new_user();
    let session = b.store.keys.device_session_id(&id, &user);
    let (first, twin) = (
        ClientPublicKey::parse(&public_key()).unwrap(),
        ClientPublicKey::parse(&public_key()).unwrap(),
    );
    let mut requests = Vec::new();
    for key in [&first, &twin] {
        let verified = b
            .store
            .challenge_verify(&id, &code_hashes, key, 5, &client())
            .await
            .unwrap();
        let Verified::Ok { verified_at_ms, .. } = verified else {
            panic!("{verified:?}")
        };
        let mut request = confirm_request(&id, &code_hashes, key, &user, &session);
        request.verified_at_ms = verified_at_ms;
        requests.push(request);
    }

    let created = b.store.challenge_confirm(&requests[0]).await.unwrap();
    let twin_answer = b.store.challenge_confirm(&requests[1]).await.unwrap();
    let replay = b.store.challenge_confirm(&requests[0]).await.unwrap();

    assert_eq!(created, Confirmed::Created(session.clone()));
    assert_eq!(
        twin_answer,
        Confirmed::Rejected(Rejection::AlreadyConfirmed),
        "the twin holds another key: the session is not its"
    );
    assert_eq!(
        replay,
        Confirmed::Created(session),
        "the first confirm's replay"
    );
}
