//! Sessions written the way the service writes them (the store's challenge scripts: create, mark
//! delivered, confirm), without HTTP: one helper for every test and benchmark that needs many
//! sessions of one user quickly.

use authsession::config::MAX_ACTIVE_SESSIONS_CEILING;
use authsession::domain::{ClientPublicKey, CodeHasher, DeviceSessionId, Email, LoginCode, UserId};
use authsession::store::challenges::{ChallengeCreate, ConfirmRequest, DeliveryStatus};
use authsession::store::Store;
use futures::StreamExt;

use crate::login::public_key;

/// Scripts in flight at once while seeding.
const CONCURRENCY: usize = 16;

/// Creates `count` active sessions for `user_id` (at most the per-user ceiling, 1000: the confirm
/// script evicts beyond it, so no user can hold more) and returns their ids.
pub async fn active_sessions(
    store: &Store,
    user_id: &UserId,
    count: usize,
) -> Vec<DeviceSessionId> {
    active_sessions_with_key(store, user_id, count, None).await
}

/// [`active_sessions`] bound to `client_public_key` (standard base64) when given, else each to a
/// random one: sessions whose private key the caller holds, to sign requests with.
pub async fn active_sessions_with_key(
    store: &Store,
    user_id: &UserId,
    count: usize,
    client_public_key: Option<&str>,
) -> Vec<DeviceSessionId> {
    assert!(
        count <= MAX_ACTIVE_SESSIONS_CEILING as usize,
        "a user holds at most {MAX_ACTIVE_SESSIONS_CEILING} active sessions"
    );
    let codes = CodeHasher::development();
    let one = |i: usize| {
        let (store, user_id, codes) = (store, user_id, &codes);
        async move {
            let email = Email::parse(&format!("seed{i}x{:x}@example.com", rand::random::<u32>()))
                .expect("a valid address");
            let challenge_id = store.keys.layout().new_challenge_id(email.hash());
            let hashes = codes.hashes(&challenge_id, &LoginCode::generate());
            store
                .challenge_create(&ChallengeCreate {
                    challenge_id: &challenge_id,
                    email: &email,
                    code_hash: &hashes.current,
                    locale: None,
                    // Seeding arranges state; it is no client's request to admit.
                    admit: None,
                })
                .await
                .expect("challenge_create");
            store
                .challenge_mark_delivery(&challenge_id, &email, DeliveryStatus::Sent)
                .await
                .expect("challenge_mark_delivery");
            let device_session_id = store
                .keys
                .layout()
                .device_session_id(&challenge_id, user_id);
            let key = client_public_key.map_or_else(public_key, str::to_owned);
            let key = ClientPublicKey::parse(&key).expect("a valid key");
            let request = ConfirmRequest {
                challenge_id: &challenge_id,
                code_hashes: &hashes,
                client_public_key: &key,
                user_id,
                device_session_id: &device_session_id,
                max_attempts: 5,
                max_active_sessions: MAX_ACTIVE_SESSIONS_CEILING,
                verified_at_ms: crate::now_ms(),
                via: None,
            };
            authsession::flows::confirm_email_code::open_session(store, &request)
                .await
                .expect("challenge_confirm");
            device_session_id
        }
    };
    futures::stream::iter(0..count)
        .map(one)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}
