//! Deduplication storage in this process: the most recent ids, oldest dropped first.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tidewater_core::Error;

use super::{DedupKey, DeduplicationStorage, Fingerprints};

/// Shards, so concurrent workers rarely wait for one another's lock.
const SHARDS: usize = 16;

/// The default storage of [`Deduplicate`](super::Deduplicate): the ids committed in the
/// last `ttl`, at most `capacity` of them, in this process.
///
/// Ids are dropped oldest first, whether because they are older than `ttl` or to make
/// room. That is the order that suits deduplication: a broker redelivers recent
/// messages, so the ids most worth remembering are the newest. With one `ttl` for all
/// ids, commit order is also expiry order, so each commit does a constant amount of work
/// and never scans.
///
/// Ids are spread over 16 shards by hash, each with its share of `capacity`, so under a
/// full store an id leaves when it is the oldest of its shard rather than of the whole
/// store. Each remembered id costs about 80 bytes.
pub struct InMemoryDedupStorage {
    shards: Box<[Mutex<Shard>]>,
    ttl: Duration,
    fingerprints: Fingerprints,
}

/// The ids of one shard: `when` answers lookups, `order` says which to drop next.
#[derive(Default)]
struct Shard {
    when: HashMap<u128, Instant, BuildHasherDefault<FingerprintHasher>>,
    order: VecDeque<(u128, Instant)>,
    capacity: usize,
}

impl Shard {
    /// Drops ids older than `ttl`, and then, while `keep` more would not fit, the oldest.
    fn drop_old(&mut self, now: Instant, ttl: Duration, keep: usize) {
        while let Some(&(id, at)) = self.order.front() {
            if self.order.len() + keep <= self.capacity && now.saturating_duration_since(at) < ttl {
                break;
            }
            self.order.pop_front();
            self.when.remove(&id);
        }
    }
}

impl InMemoryDedupStorage {
    /// Remembers at most `capacity` ids (at least one), each for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let capacity = capacity.max(1);
        let count = SHARDS.min(capacity);
        let shards = (0..count)
            .map(|i| {
                // The first `capacity % count` shards take one more, so the shares add up.
                let share = capacity / count + usize::from(i < capacity % count);
                Mutex::new(Shard { capacity: share, ..Shard::default() })
            })
            .collect();
        Self { shards, ttl, fingerprints: Fingerprints::default() }
    }

    /// How many ids are remembered, counting expired ones not yet dropped (they are
    /// dropped as later commits come in, and already count as not seen).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).order.len()).sum()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, fingerprint: u128) -> &Mutex<Shard> {
        // The high half picks the shard; the map hashes by the low half, independent of it.
        &self.shards[(fingerprint >> 64) as usize % self.shards.len()]
    }

    fn seen_at(&self, fingerprint: u128, now: Instant) -> bool {
        let shard = lock(self.shard(fingerprint));
        shard.when.get(&fingerprint).is_some_and(|&at| now.saturating_duration_since(at) < self.ttl)
    }

    fn commit_at(&self, fingerprint: u128, now: Instant) {
        let mut shard = lock(self.shard(fingerprint));
        shard.drop_old(now, self.ttl, 0);
        // Still there after that means committed within the ttl: keep its first time, so
        // `order` stays sorted by time.
        if !shard.when.contains_key(&fingerprint) {
            shard.drop_old(now, self.ttl, 1);
            shard.when.insert(fingerprint, now);
            shard.order.push_back((fingerprint, now));
        }
    }
}

/// A poisoned shard still holds valid ids: every update leaves it consistent between
/// statements that can panic (none of which are ours).
fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for InMemoryDedupStorage {
    /// 100,000 ids for an hour.
    fn default() -> Self {
        Self::new(100_000, Duration::from_secs(3600))
    }
}

#[async_trait]
impl DeduplicationStorage for InMemoryDedupStorage {
    async fn is_duplicate(&self, key: &DedupKey) -> Result<bool, Error> {
        Ok(self.seen_at(self.fingerprints.of(key), Instant::now()))
    }

    async fn commit(&self, key: &DedupKey) -> Result<(), Error> {
        self.commit_at(self.fingerprints.of(key), Instant::now());
        Ok(())
    }
}

/// Fingerprints are already random bits, so hashing them again would be wasted work:
/// the map uses their low 64 bits as they are.
#[derive(Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u128 fingerprints are hashed, through write_u128; this is for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, fingerprint: u128) {
        self.0 = fingerprint as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(i: u64) -> u128 {
        // Spread over shards and map buckets as real fingerprints are.
        let x = u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
        x ^ (x >> 61)
    }

    #[test]
    fn an_id_is_forgotten_after_the_ttl() {
        let store = InMemoryDedupStorage::new(100, Duration::from_secs(60));
        let t0 = Instant::now();
        store.commit_at(fingerprint(1), t0);
        assert!(store.seen_at(fingerprint(1), t0 + Duration::from_secs(59)));
        assert!(!store.seen_at(fingerprint(1), t0 + Duration::from_secs(60)));
        assert!(!store.seen_at(fingerprint(2), t0));
        // An expired id is dropped by the next commit to its shard and can be committed anew.
        store.commit_at(fingerprint(1), t0 + Duration::from_secs(61));
        assert!(store.seen_at(fingerprint(1), t0 + Duration::from_secs(62)));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn expired_ids_leave_before_the_store_is_full() {
        // Room for twice what goes in at first, so no shard drops an id to make room.
        let store = InMemoryDedupStorage::new(2000, Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..1000 {
            store.commit_at(fingerprint(i), t0);
        }
        for i in 1000..2000 {
            store.commit_at(fingerprint(i), t0 + Duration::from_secs(11));
        }
        assert_eq!(store.len(), 1000, "the first thousand expired and were dropped, not the store's capacity");
        assert!((1000..2000).all(|i| store.seen_at(fingerprint(i), t0 + Duration::from_secs(12))));
    }

    #[test]
    fn capacity_is_shared_exactly_among_shards() {
        for capacity in [1, 5, 16, 17, 100_000] {
            let store = InMemoryDedupStorage::new(capacity, Duration::from_secs(60));
            let total: usize = store.shards.iter().map(|s| lock(s).capacity).sum();
            assert_eq!(total, capacity);
            assert!(store.shards.iter().all(|s| lock(s).capacity >= 1));
        }
    }

    #[test]
    fn a_second_commit_keeps_the_first_time() {
        let store = InMemoryDedupStorage::new(10, Duration::from_secs(60));
        let t0 = Instant::now();
        store.commit_at(fingerprint(1), t0);
        store.commit_at(fingerprint(1), t0 + Duration::from_secs(30));
        assert_eq!(store.len(), 1);
        assert!(!store.seen_at(fingerprint(1), t0 + Duration::from_secs(60)));
    }
}
