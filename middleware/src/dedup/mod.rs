//! Processing each message once per consumer group.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use async_trait::async_trait;
use tidewater_core::{BoxHandler, Delivery, Error, Handler, HandlerError, Middleware};

mod in_memory;
mod moka_store;

pub use in_memory::InMemoryDedupStorage;
pub use moka_store::MokaDedupStorage;

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
/// table to share it across processes; [`InMemoryDedupStorage`] (the default) and
/// [`MokaDedupStorage`] keep them in this process.
#[async_trait]
pub trait DeduplicationStorage: Send + Sync + 'static {
    /// Whether `key` was committed.
    async fn is_duplicate(&self, key: &DedupKey) -> Result<bool, Error>;
    /// Remembers `key` as processed.
    async fn commit(&self, key: &DedupKey) -> Result<(), Error>;
}

/// A 128-bit fingerprint of a [`DedupKey`], which the in-process stores keep instead of
/// the two strings: a fixed-size key is cheaper to hash, compare and store.
///
/// It is two independently keyed SipHash values, so two different keys colliding, which
/// would skip a message, is about as likely as a cosmic-ray bit flip. The hash keys are
/// random per store, so a fingerprint means nothing outside the store that made it.
#[derive(Clone, Debug, Default)]
struct Fingerprints(RandomState, RandomState);

impl Fingerprints {
    fn of(&self, key: &DedupKey) -> u128 {
        (u128::from(self.0.hash_one(key)) << 64) | u128::from(self.1.hash_one(key))
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

    /// Deduplication in this process with the default bounds of
    /// [`InMemoryDedupStorage`]: the last 100,000 ids per process, each for an hour.
    pub fn in_memory() -> Self {
        Self::new(InMemoryDedupStorage::default())
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
