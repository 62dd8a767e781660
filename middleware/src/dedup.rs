//! Processing each message once per consumer group.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tidewater_core::{BoxHandler, Delivery, Error, Handler, HandlerError, Middleware};

/// What identifies a message for deduplication: the consumer group and the message id.
/// The check and the commit use the same key, so a message is recognised exactly when
/// this group has already processed it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DedupKey {
    /// The consumer group ("" for a task without one).
    pub group: String,
    /// The message id.
    pub id: String,
}

/// Where processed message keys are remembered. Implement it over Redis or a database
/// table to share it across processes; [`MokaDedupStorage`] keeps it in memory.
#[async_trait]
pub trait DeduplicationStorage: Send + Sync + 'static {
    /// Whether `key` was committed.
    async fn is_duplicate(&self, key: &DedupKey) -> Result<bool, Error>;
    /// Remembers `key` as processed.
    async fn commit(&self, key: &DedupKey) -> Result<(), Error>;
}

/// In-memory storage bounded by entry count and age, on moka.
///
/// Keys are stored as a 128-bit fingerprint of (group, id) rather than as the two
/// strings: moka's insert is the dominant cost of deduplication, and a fixed-size key
/// makes it about a third cheaper (see the `chain_cost` benchmark). The fingerprint is
/// two independently keyed SipHash values, so two different keys colliding, which would
/// skip a message, is about as likely as a cosmic-ray bit flip.
#[derive(Clone)]
pub struct MokaDedupStorage {
    cache: moka::sync::Cache<u128, ()>,
    hashers: (RandomState, RandomState),
}

impl MokaDedupStorage {
    /// Remembers at most `capacity` keys, each for `ttl`.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            cache: moka::sync::Cache::builder().max_capacity(capacity).time_to_live(ttl).build(),
            hashers: (RandomState::new(), RandomState::new()),
        }
    }

    fn fingerprint(&self, key: &DedupKey) -> u128 {
        let (a, b) = (self.hashers.0.hash_one(key), self.hashers.1.hash_one(key));
        (u128::from(a) << 64) | u128::from(b)
    }
}

impl Default for MokaDedupStorage {
    /// 100,000 keys for an hour.
    fn default() -> Self {
        Self::new(100_000, Duration::from_secs(3600))
    }
}

#[async_trait]
impl DeduplicationStorage for MokaDedupStorage {
    async fn is_duplicate(&self, key: &DedupKey) -> Result<bool, Error> {
        Ok(self.cache.contains_key(&self.fingerprint(key)))
    }

    async fn commit(&self, key: &DedupKey) -> Result<(), Error> {
        self.cache.insert(self.fingerprint(key), ());
        Ok(())
    }
}

/// Skips messages this consumer group already processed: a duplicate is acked without
/// calling the handler. The key is committed only after the handler succeeded, so a
/// failed message is processed again when it comes back.
///
/// If the storage cannot answer, the message is processed (at least once beats at most
/// once) and a warning is logged. Two deliveries of one id running at the same moment
/// can both pass the check; brokers redeliver one message at a time, so this needs a
/// redelivery racing a slow first delivery. Messages without an id are not deduplicated.
#[derive(Clone)]
pub struct Deduplicate {
    storage: Arc<dyn DeduplicationStorage>,
}

impl Deduplicate {
    /// Deduplication over `storage`.
    pub fn new(storage: impl DeduplicationStorage) -> Self {
        Self { storage: Arc::new(storage) }
    }

    /// Deduplication in memory with the default bounds.
    pub fn in_memory() -> Self {
        Self::new(MokaDedupStorage::default())
    }
}

impl Middleware for Deduplicate {
    fn wrap(&self, inner: BoxHandler) -> BoxHandler {
        Arc::new(DedupHandler { inner, storage: Arc::clone(&self.storage) })
    }
}

struct DedupHandler {
    inner: BoxHandler,
    storage: Arc<dyn DeduplicationStorage>,
}

#[async_trait]
impl Handler for DedupHandler {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let message = delivery.message();
        if message.id.is_empty() {
            return self.inner.handle(delivery).await;
        }
        let key = DedupKey { group: delivery.group().unwrap_or_default().to_owned(), id: message.id.clone() };
        match self.storage.is_duplicate(&key).await {
            Ok(true) => {
                tracing::debug!(topic = %message.stream, id = %key.id, group = %key.group, "duplicate skipped");
                return Ok(());
            }
            Ok(false) => {}
            Err(err) => tracing::warn!(id = %key.id, error = %err, "dedup check failed; processing anyway"),
        }
        self.inner.handle(delivery).await?;
        if let Err(err) = self.storage.commit(&key).await {
            tracing::warn!(id = %key.id, error = %err, "dedup commit failed; a redelivery would be processed again");
        }
        Ok(())
    }
}
