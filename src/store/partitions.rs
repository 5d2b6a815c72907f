//! The partitioned layout (`AUTHSESSION_REDIS_PARTITIONS` > 1): which partition a user, an
//! address or a client belongs to, and the hash tag that places each partition in its slot.
//!
//! Partition `i` of `N` lives in the slot at the centre of the `i`-th of `N` equal slot ranges,
//! so any assignment of contiguous, equal slot ranges to shards (what `redis-cli --cluster
//! create` and rebalancing produce) gives every shard the same number of partitions, give or
//! take one. The tag of a slot is the first short lowercase alphanumeric string that hashes to
//! it: a pure function of `N`, the same in every process and every release.

use sha2::{Digest, Sha256};

/// Slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The Redis Cluster slot of a key (CRC16/XMODEM of its hash tag, or of the whole key).
pub fn slot(key: &str) -> u16 {
    let hashed = crate::config::hash_tag(key).unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed.as_bytes()) % SLOTS
}

/// The partitions of a deployment: none (the single-tag layout) or `N` tags.
#[derive(Debug, Clone, Default)]
pub struct Partitions {
    /// Empty in the single-tag layout.
    tags: Vec<String>,
}

impl Partitions {
    /// `n` partitions; `n <= 1` is the single-tag layout.
    pub fn new(n: u32) -> Self {
        if n <= 1 {
            return Self::default();
        }
        Self {
            tags: tags_for(n as usize),
        }
    }

    /// Whether keys are spread over partition tags.
    pub fn is_partitioned(&self) -> bool {
        !self.tags.is_empty()
    }

    /// The partition tags in partition order (empty in the single-tag layout).
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// A user's partition tag: every session write of the user lives there.
    pub fn of_user(&self, user_id: &str) -> Option<&str> {
        self.tag_for(user_id)
    }

    /// An address's partition tag (by the SHA-256 hex of the address): its challenges, resend
    /// window and failure budget live there.
    pub fn of_address(&self, email_hash: &str) -> Option<&str> {
        self.tag_for(email_hash)
    }

    /// A client's partition tag (by its keyed address hash): its admission counters live there.
    pub fn of_client(&self, client: &str) -> Option<&str> {
        self.tag_for(client)
    }

    /// The partition (index into [`Self::tags`]) `input` falls in: the first 8 bytes of its
    /// SHA-256, modulo N. `None` in the single-tag layout, without hashing.
    pub fn index_for(&self, input: &str) -> Option<usize> {
        if self.tags.is_empty() {
            return None;
        }
        let digest = Sha256::digest(input.as_bytes());
        let bucket = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        Some((bucket % self.tags.len() as u64) as usize)
    }

    /// The partition whose tag is `tag`, if it is one of this deployment's.
    pub fn index_of(&self, tag: &str) -> Option<usize> {
        self.tags.iter().position(|t| t == tag)
    }

    fn tag_for(&self, input: &str) -> Option<&str> {
        self.index_for(input).map(|i| self.tags[i].as_str())
    }
}

/// The slot partition `i` of `n` lives in: the centre of the `i`-th of `n` equal ranges.
pub fn target_slot(i: usize, n: usize) -> u16 {
    ((2 * i + 1) * usize::from(SLOTS) / (2 * n)) as u16
}

/// For each partition, the first candidate tag (in the order `0`..`z`, `00`..`zz`, ...) whose
/// slot is the partition's target slot. Four characters give 1.7 million candidates, enough to
/// hit every one of the 16384 slots.
fn tags_for(n: usize) -> Vec<String> {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut wanted: std::collections::HashMap<u16, usize> =
        (0..n).map(|i| (target_slot(i, n), i)).collect();
    let mut tags = vec![String::new(); n];
    'search: for len in 1..=4u32 {
        for mut k in 0..ALPHABET.len().pow(len) {
            let mut tag = String::with_capacity(len as usize);
            for _ in 0..len {
                tag.insert(0, ALPHABET[k % ALPHABET.len()] as char);
                k /= ALPHABET.len();
            }
            if let Some(i) = wanted.remove(&slot(&tag)) {
                tags[i] = tag;
                if wanted.is_empty() {
                    break 'search;
                }
            }
        }
    }
    assert!(wanted.is_empty(), "no tag of four characters for a slot");
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_redis() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("123456789"), 0x31C3 % SLOTS);
    }

    #[test]
    fn one_partition_is_the_single_tag_layout() {
        let p = Partitions::new(1);
        assert!(!p.is_partitioned());
        assert_eq!(p.of_user("u1"), None);
        assert_eq!(p.of_address("ab"), None);
    }

    /// Each tag sits in its partition's target slot, the tags are distinct, and for every
    /// partition count and shard count each shard of an even contiguous assignment holds the
    /// same number of partitions give or take one.
    #[test]
    fn tags_fall_evenly_over_the_slots_and_over_any_even_shard_assignment() {
        for n in [2usize, 3, 7, 16, 64, 100, 1024] {
            let tags = tags_for(n);
            for (i, tag) in tags.iter().enumerate() {
                assert_eq!(slot(tag), target_slot(i, n), "n={n} i={i}");
                assert!(tag.len() <= 4 && tag.bytes().all(|b| b.is_ascii_alphanumeric()));
            }
            let distinct: std::collections::HashSet<_> = tags.iter().collect();
            assert_eq!(distinct.len(), n);
            for shards in [1usize, 2, 3, 5, 6, 10, 16] {
                let mut per_shard = vec![0usize; shards];
                for tag in &tags {
                    per_shard[usize::from(slot(tag)) * shards / usize::from(SLOTS)] += 1;
                }
                let (min, max) = (per_shard.iter().min(), per_shard.iter().max());
                assert!(
                    max.unwrap() - min.unwrap() <= 1,
                    "n={n} shards={shards}: {per_shard:?}"
                );
            }
        }
    }

    /// Users, addresses and clients spread evenly over the partitions (64 partitions, 64,000
    /// users: every partition within 15 % of the mean), and a user's partition never changes.
    #[test]
    fn users_spread_evenly_and_stay_put() {
        let p = Partitions::new(64);
        let mut counts = std::collections::HashMap::new();
        for u in 0..64_000 {
            *counts
                .entry(p.of_user(&format!("user-{u}")).unwrap())
                .or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 64);
        for (tag, count) in counts {
            assert!((850..=1150).contains(&count), "{tag}: {count}");
        }
        assert_eq!(p.of_user("u1"), Partitions::new(64).of_user("u1"));
        assert_eq!(Partitions::new(64).tags(), p.tags());
    }
}
