//! Redis: the connection pool, key names, the Lua scripts (one typed module each) and the
//! operations built on them.

pub mod challenges;
pub mod config_provider;
mod connection;
pub mod edge;
mod engine;
pub mod keys;
pub mod layout;
pub mod operator;
pub mod partitions;
pub mod pool;
pub mod scripts;
pub mod sessions;

use std::time::Duration;

pub use keys::Keys;
pub use pool::{Dedicated, Redis};

/// A Redis failure. Every variant answers `503 service_unavailable`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis command timed out after {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("script {script} v{version} is not cached in Redis and script loading is `preloaded`")]
    NotPreloaded { script: &'static str, version: u32 },
    /// The write happened on the primary but fewer replicas than required acknowledged it in
    /// time: it may not survive a failover, so it is not reported as done (a retry is safe).
    #[error("{acked} of {wanted} required replicas acknowledged the write within {timeout:?}")]
    ReplicaAcks {
        wanted: u32,
        acked: u32,
        timeout: Duration,
    },
    /// A confirm's verdict is older than the blocked marker lives (the request stalled between
    /// verify and the session step): nothing was written; the client's retry verifies again.
    #[error("the confirm's verdict is older than the blocked marker lives")]
    StaleVerdict,
    /// The ACL user may not access a key of a namespace the service writes.
    #[error("no permission for the ACL user to access {key}: grant its namespace's key pattern")]
    KeyPermission { key: String },
    /// A script that works in bounded steps still had work left after this many calls.
    #[error("script {script} still had work left after {calls} calls")]
    Unfinished { script: &'static str, calls: u32 },
    #[error("unexpected reply from script {script}: {detail}")]
    Reply {
        script: &'static str,
        detail: String,
    },
}

use crate::config::{EventFormat, GatewayConfig, Policy, RedisConfig};

/// The source of truth and the gateway projection, behind typed script wrappers.
#[derive(Clone)]
pub struct Store {
    pub redis: Redis,
    pub keys: Keys,
    stream_maxlen: u64,
    event_format: EventFormat,
    policy: Policy,
}

impl Store {
    pub fn new(
        redis: Redis,
        redis_config: &RedisConfig,
        gateway: &GatewayConfig,
        policy: &Policy,
    ) -> Self {
        Self {
            redis,
            keys: Keys::new(redis_config, gateway),
            stream_maxlen: stream_maxlen(gateway.events_maxlen, redis_config.partitions),
            event_format: gateway.event_format,
            policy: policy.clone(),
        }
    }

    /// The `MAXLEN` each event stream is trimmed to: `AUTHSESSION_GATEWAY_SESSION_EVENTS_MAXLEN`
    /// bounds all the streams together, so each partition's gets its share.
    pub fn stream_maxlen(&self) -> u64 {
        self.stream_maxlen
    }

    /// The policy the scripts' limits come from.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// What each gateway event carries (`AUTHSESSION_GATEWAY_EVENT_FORMAT`).
    pub fn event_format(&self) -> EventFormat {
        self.event_format
    }
}

/// Each of `partitions` streams' share of `total` entries, rounded up (one stream: all of it).
fn stream_maxlen(total: u64, partitions: u32) -> u64 {
    total.div_ceil(u64::from(partitions.max(1)))
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::scripts::access_probe::AccessProbe;
    use super::scripts::challenge_claim::ChallengeClaim;
    use super::scripts::challenge_confirm::{ChallengeConfirm, ConfirmRequest};
    use super::scripts::challenge_create::ChallengeCreate;
    use super::scripts::challenge_mark_confirmed::ChallengeMarkConfirmed;
    use super::scripts::challenge_mark_delivery::{ChallengeMarkDelivery, DeliveryStatus};
    use super::scripts::challenge_verify::ChallengeVerify;
    use super::scripts::confirm_admit::ConfirmAdmit;
    use super::scripts::send_admit::SendAdmit;
    use super::scripts::session_create::SessionCreate;
    use super::scripts::session_projection_republish::SessionProjectionRepublish;
    use super::scripts::session_revoke::SessionRevoke;
    use super::scripts::user_sessions_revoke::UserSessionsRevoke;
    use super::*;
    use crate::config::Config;
    use crate::domain::Revocation;
    use crate::domain::{
        ChallengeId, ClientPublicKey, Code, CodeHasher, DeviceSessionId, Email, LoginCode,
        RequestId, UserId,
    };

    /// Finding 7 of the second scripts audit: every partition stream got the whole MAXLEN, so
    /// 64 partitions kept 64 times the documented bound.
    #[test]
    fn the_events_maxlen_bounds_all_partition_streams_together() {
        assert_eq!(stream_maxlen(1_000_000, 1), 1_000_000);
        assert_eq!(stream_maxlen(1_000_000, 64), 15_625);
        assert_eq!(stream_maxlen(1_000, 3), 334);
        assert_eq!(stream_maxlen(1, 64), 1);
    }

    /// Each script's input fills exactly the KEYS and ARGV slots its header names, in the
    /// header's order, and every script's input is here: a slot added to one side only fails.
    #[tokio::test]
    async fn every_scripts_input_fills_its_header_slot_by_slot() {
        // Nothing listens there: the inputs encode without connecting.
        let env = HashMap::from([(
            crate::config::REDIS_ADDR.to_owned(),
            "127.0.0.1:1".to_owned(),
        )]);
        let config = Config::from_source(&env).unwrap();
        let redis = Redis::new(&config.redis).unwrap();
        let store = Store::new(redis, &config.redis, &config.gateway, &config.policy);
        let challenge_id = ChallengeId::generate();
        let email = Email::parse("a@example.com").unwrap();
        let hasher = CodeHasher::development();
        let code_hashes = hasher.hashes(&challenge_id, &LoginCode::generate());
        let client = hasher.client_key([127, 0, 0, 1].into());
        let client_public_key = {
            use base64::Engine;
            ClientPublicKey::parse(&base64::engine::general_purpose::STANDARD.encode([1u8; 32]))
                .unwrap()
        };
        let (user_id, device_session_id) =
            (UserId::parse("u1").unwrap(), DeviceSessionId::generate());
        let revocation = Revocation {
            reason_code: Code::known("admin_revoke"),
            actor_type: Code::known("admin"),
            actor_id: None,
        };
        let request_id = RequestId::generate();
        let request = ConfirmRequest {
            challenge_id: &challenge_id,
            code_hashes: &code_hashes,
            client_public_key: &client_public_key,
            user_id: &user_id,
            device_session_id: &device_session_id,
            max_attempts: 5,
            max_active_sessions: 50,
            verified_at_ms: 1_795_867_200_000,
            via: None,
        };
        let (challenge_id, device_session_id) = (&challenge_id, &device_session_id);
        // The create and verify calls in both shapes: admitting the client with the work, and
        // admitted apart (the partitioned layout's), their optional slots left out.
        let mut calls = Vec::new();
        let address = email.hash();
        for (admit, address) in [(Some(&client), Some(address.clone())), (None, None)] {
            calls.push(store.call(&ChallengeCreate {
                challenge_id,
                email: &email,
                code_hash: &code_hashes.current,
                locale: None,
                admit,
            }));
            calls.push(store.call(&ChallengeVerify {
                challenge_id,
                code_hashes: &code_hashes,
                client_public_key: &client_public_key,
                max_attempts: 5,
                attempt_id: &request_id,
                admit,
                address,
                via: None,
            }));
        }
        // The planned tails: none, and some.
        let planned = [DeviceSessionId::generate(), DeviceSessionId::generate()];
        for planned in [&[][..], &planned[..]] {
            calls.extend([
                store.call(&ChallengeConfirm {
                    request: &request,
                    planned: planned.to_vec(),
                }),
                store.call(&SessionCreate {
                    request: &request,
                    planned: planned.to_vec(),
                }),
                store.call(&UserSessionsRevoke {
                    user_id: &user_id,
                    revocation: &revocation,
                    request_id: &request_id,
                    batch_number: 1,
                    block_marker: Some(Duration::from_secs(600)),
                    planned: planned.to_vec(),
                }),
            ]);
        }
        for user in [None, Some(user_id.clone())] {
            calls.push(store.call(&SessionRevoke {
                device_session_id,
                revocation: &revocation,
                request_id: &request_id,
                user,
            }));
        }
        calls.extend([
            store.call(&ChallengeMarkDelivery {
                challenge_id,
                email: &email,
                outcome: DeliveryStatus::Sent,
            }),
            store.call(&SendAdmit {
                challenge_id,
                client: &client,
            }),
            store.call(&ConfirmAdmit {
                attempt_id: &request_id,
                client: &client,
            }),
            store.call(&ChallengeClaim {
                challenge_id,
                device_session_id,
                user_id: &user_id,
            }),
            store.call(&ChallengeMarkConfirmed {
                challenge_id,
                device_session_id,
                client_public_key: &client_public_key,
                user_id: &user_id,
                confirmed_at_ms: 1,
                via: None,
            }),
            store.call(&SessionProjectionRepublish {
                device_session_id,
                request_id: &request_id,
            }),
            store.call(&AccessProbe {
                partition: store.keys.layout().all()[0],
            }),
        ]);
        // `Store::call` checks each slot's name against the header (in debug builds, as here);
        // this checks the counts and that no script is left out.
        let mut covered: Vec<&str> = Vec::new();
        for call in &calls {
            let header = &call.script().header;
            assert!(
                header.accepts(call.keys().len(), call.args().len()),
                "{}",
                call.script().name
            );
            covered.push(call.script().name);
        }
        covered.sort();
        covered.dedup();
        let all: Vec<&str> = scripts::scripts().all().iter().map(|s| s.name).collect();
        assert_eq!(covered, all, "every script's input is encoded in this test");
    }
}
