//! Deduplication storage on moka.

use std::time::Duration;

use async_trait::async_trait;
use tidewater_core::Error;

use super::{DedupKey, DeduplicationStorage, Fingerprints};

/// In-memory storage on a moka cache, bounded by entry count and age.
///
/// The cache evicts the least recently used key when full. Moka's default policy,
/// TinyLFU, is wrong for deduplication: it admits a new key only if it is estimated to
/// be used more often than the key it would evict, and every id is committed once, so a
/// full cache would refuse every new id and deduplicate nothing recent (the
/// `full_store_remembers_the_newest_ids` test fails with it).
///
/// [`InMemoryDedupStorage`](super::InMemoryDedupStorage) does the same job several times
/// faster (see the `chain_cost` benchmark) and is the default; this one is for services
/// that already tune moka caches and want this one alike.
#[derive(Clone)]
pub struct MokaDedupStorage {
    cache: moka::sync::Cache<u128, ()>,
    fingerprints: Fingerprints,
}

impl MokaDedupStorage {
    /// Remembers at most `capacity` keys, each for `ttl`.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .build();
        Self { cache, fingerprints: Fingerprints::default() }
    }

    /// Makes moka apply the evictions it has pending (it otherwise does so as writes
    /// come in), so that its entry count is exact.
    pub fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }
}

impl Default for MokaDedupStorage {
    /// 100,000 keys for an hour.
    fn default() -> Self {
        Self::new(super::DEFAULT_CAPACITY as u64, super::DEFAULT_TTL)
    }
}

#[async_trait]
impl DeduplicationStorage for MokaDedupStorage {
    async fn is_duplicate(&self, key: &DedupKey<'_>) -> Result<bool, Error> {
        Ok(self.cache.contains_key(&self.fingerprints.of(key)))
    }

    async fn commit(&self, key: &DedupKey<'_>) -> Result<(), Error> {
        self.cache.insert(self.fingerprints.of(key), ());
        Ok(())
    }
}
