//! Where records live, as one value. `SingleTag`: every key in the slot of the configured hash
//! tag (or on the one server). `Partitioned`: `AUTHSESSION_REDIS_PARTITIONS` partitions, each a
//! hash tag of its own slot ([`Partitions`]); a user's sessions and indexes live in the user's
//! partition, an address's challenges, resend window and failure budget in the address's, a
//! client's admission counters in the client's. The layout places them and mints the ids that
//! carry their partition; key names (`keys`) ask it for the tag.

use sha2::{Digest, Sha256};

use super::partitions::Partitions;
use crate::domain::{ChallengeId, DeviceSessionId, EmailHash, UserId};

/// A partition: its index, or `None` in the single-tag layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition(Option<usize>);

#[derive(Debug, Clone)]
pub enum Layout {
    SingleTag,
    Partitioned(Partitions),
}

impl Layout {
    /// `n` partitions; `n <= 1` is the single-tag layout.
    pub fn new(n: u32) -> Self {
        let partitions = Partitions::new(n);
        if partitions.is_partitioned() {
            Layout::Partitioned(partitions)
        } else {
            Layout::SingleTag
        }
    }

    pub fn is_partitioned(&self) -> bool {
        matches!(self, Layout::Partitioned(_))
    }

    /// The partition tags in partition order (none in the single-tag layout).
    pub fn tags(&self) -> &[String] {
        match self {
            Layout::SingleTag => &[],
            Layout::Partitioned(p) => p.tags(),
        }
    }

    /// Every partition (one, `Partition(None)`, in the single-tag layout).
    pub fn all(&self) -> Vec<Partition> {
        match self {
            Layout::SingleTag => vec![Partition(None)],
            Layout::Partitioned(p) => (0..p.tags().len()).map(|i| Partition(Some(i))).collect(),
        }
    }

    /// A partition's tag as it goes into a key, `{t}`; `""` in the single-tag layout.
    pub fn tag(&self, partition: Partition) -> String {
        self.tag_name(partition)
            .map(|t| format!("{{{t}}}"))
            .unwrap_or_default()
    }

    /// A partition's tag text `t`; `None` in the single-tag layout.
    pub fn tag_name(&self, partition: Partition) -> Option<&str> {
        Some(self.tags().get(partition.0?)?.as_str())
    }

    /// The partition `input` falls in (by its SHA-256; see [`Partitions::index_for`]).
    fn place(&self, input: &str) -> Partition {
        match self {
            Layout::SingleTag => Partition(None),
            Layout::Partitioned(p) => Partition(p.index_for(input)),
        }
    }

    /// The user's partition: every session of the user, its indexes and projection live there.
    pub fn of_user(&self, user_id: &str) -> Partition {
        self.place(user_id)
    }

    /// The address's partition (by its SHA-256 hex): challenges, resend window, failure budget.
    pub fn of_address(&self, email_hash: &str) -> Partition {
        self.place(email_hash)
    }

    /// The client's partition (by its keyed address hash): its admission counters.
    pub fn of_client(&self, client: &str) -> Partition {
        self.place(client)
    }

    /// The partition a challenge or device session id names, `None` when the id cannot be one
    /// of this deployment's (a tag in the single-tag layout, or no known tag in the
    /// partitioned one): such an id is not found without asking Redis.
    pub fn of_id(&self, id: &str) -> Option<Partition> {
        match self {
            Layout::SingleTag => (!id.contains(['{', '}'])).then_some(Partition(None)),
            Layout::Partitioned(p) => {
                let tag = id.strip_prefix('{')?.split_once('}')?.0;
                p.index_of(tag).map(|i| Partition(Some(i)))
            }
        }
    }

    /// Whether a deployment of this layout runs the script `name`: the single-tag layout admits
    /// with the work and confirms in one script (`challenge_confirm`); the partitioned one admits
    /// apart and confirms in three steps. (Names as `lua/<name>.lua`.)
    pub fn runs(&self, name: &str) -> bool {
        const PARTITIONED_ONLY: [&str; 5] = [
            "send_admit",
            "confirm_admit",
            "challenge_claim",
            "session_create",
            "challenge_mark_confirmed",
        ];
        match self {
            Layout::SingleTag => !PARTITIONED_ONLY.contains(&name),
            Layout::Partitioned(_) => name != "challenge_confirm",
        }
    }

    /// The layout's name, for operator output.
    pub fn name(&self) -> &'static str {
        match self {
            Layout::SingleTag => "single-tag",
            Layout::Partitioned(_) => "partitioned",
        }
    }

    /// Whether `tag` is one of this deployment's partition tags.
    pub fn is_tag(&self, tag: &str) -> bool {
        matches!(self, Layout::Partitioned(p) if p.index_of(tag).is_some())
    }

    /// A fresh challenge id, in the address's partition.
    pub fn new_challenge_id(&self, email_hash: &EmailHash) -> ChallengeId {
        self.challenge_id_with(email_hash, ChallengeId::generate().as_str())
    }

    /// The challenge id of `body` (an id's characters, such as `CodeHasher::seal_address`'s) in
    /// the address's partition.
    pub fn challenge_id_with(&self, email_hash: &EmailHash, body: &str) -> ChallengeId {
        let tag = self.tag(self.of_address(email_hash.as_str()));
        ChallengeId::parse(&format!("{tag}{body}")).expect("an id's characters")
    }

    /// The device session id a confirm of `challenge_id` creates for `user_id`. Partitioned:
    /// derived from the challenge (so a retry or a concurrent twin of a confirm that crashed
    /// half-way finds the same session) in the user's partition. Single-tag: random (the one
    /// confirm script makes retries safe there).
    pub fn device_session_id(
        &self,
        challenge_id: &ChallengeId,
        user_id: &UserId,
    ) -> DeviceSessionId {
        match self.of_user(user_id.as_str()) {
            Partition(None) => DeviceSessionId::generate(),
            p => {
                use base64::Engine;
                let digest = Sha256::digest(format!("device_session:{challenge_id}"));
                let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]);
                DeviceSessionId::parse(&format!("{}{body}", self.tag(p))).expect("a tagged id")
            }
        }
    }

    /// The startup probe's id in `partition`, for the challenge and snapshot keys it checks (no
    /// real challenge or session has it: real ids are random).
    pub fn probe_ids(&self, partition: Partition) -> (ChallengeId, DeviceSessionId) {
        let id = format!("{}startup-probe", self.tag(partition));
        let challenge = ChallengeId::parse(&id).expect("a valid id");
        (challenge, DeviceSessionId::parse(&id).expect("a valid id"))
    }

    /// A random id in a partition, for tests and tools that seed records.
    pub fn random_device_session_id(&self, partition: Partition) -> DeviceSessionId {
        let body = DeviceSessionId::generate();
        DeviceSessionId::parse(&format!("{}{body}", self.tag(partition))).expect("a valid id")
    }
}
