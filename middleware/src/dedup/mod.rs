//! Processing each message once per consumer group.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tidewater_core::{Around, Delivery, Error, HandlerError, Inner};

mod clock;
mod filter;
mod fingerprint;
mod in_memory;
mod moka_store;

use fingerprint::Fingerprints;
pub use in_memory::InMemoryDedupStorage;
pub use moka_store::MokaDedupStorage;

/// How many ids the in-process stores remember by default.
const DEFAULT_CAPACITY: usize = 100_000;
/// How long the in-process stores remember an id by default.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// What identifies a message for deduplication: the consumer group and the message id.
/// The check and the commit use the same key, so a message is recognised exactly when
/// this group has already processed it.
///
/// It borrows both from the delivery, so checking costs no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DedupKey<'a> {
    /// The consumer group ("" for a task without one).
    pub group: &'a str,
    /// The message id.
    pub id: &'a str,
}

impl<'a> DedupKey<'a> {
    /// The key of `delivery`.
    pub fn of(delivery: &'a Delivery) -> Self {
        Self { group: delivery.group().unwrap_or_default(), id: &delivery.message().id }
    }
}

/// Where processed message keys are remembered. Implement it over Redis or a database
/// table to share it across processes; [`InMemoryDedupStorage`] (the default) and
/// [`MokaDedupStorage`] keep them in this process.
#[async_trait]
pub trait DeduplicationStorage: Send + Sync + 'static {
    /// Whether `key` was committed.
    async fn is_duplicate(&self, key: &DedupKey<'_>) -> Result<bool, Error>;
    /// Remembers `key` as processed.
    async fn commit(&self, key: &DedupKey<'_>) -> Result<(), Error>;
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
    storage: Storage,
}

/// The default store is called directly, and the rest through the trait: the direct
/// calls need no boxed futures and fingerprint each id once rather than twice.
#[derive(Clone)]
enum Storage {
    InMemory(Arc<InMemoryDedupStorage>),
    Other(Arc<dyn DeduplicationStorage>),
}

impl Deduplicate {
    /// Deduplication over `storage`.
    pub fn new<S: DeduplicationStorage>(storage: S) -> Self {
        let mut slot = Some(storage);
        let storage = match (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<InMemoryDedupStorage>>() {
            Some(in_memory) => Storage::InMemory(Arc::new(in_memory.take().expect("just put there"))),
            None => Storage::Other(Arc::new(slot.take().expect("just put there"))),
        };
        Self { storage }
    }

    /// Deduplication in this process with the default bounds of
    /// [`InMemoryDedupStorage`]: the last 100,000 ids per process, each for an hour.
    pub fn in_memory() -> Self {
        Self::new(InMemoryDedupStorage::default())
    }
}

/// Through the trait, for a storage other than the default.
async fn through_trait<N: Inner + ?Sized>(
    storage: &dyn DeduplicationStorage,
    key: DedupKey<'_>,
    delivery: Delivery,
    next: &N,
) -> Result<(), HandlerError> {
    match storage.is_duplicate(&key).await {
        Ok(true) => {
            skipped(&delivery, key);
            return Ok(());
        }
        Ok(false) => {}
        Err(err) => tracing::warn!(id = %key.id, error = %err, "dedup check failed; processing anyway"),
    }
    next.run(delivery).await?;
    if let Err(err) = storage.commit(&key).await {
        tracing::warn!(id = %key.id, error = %err, "dedup commit failed; a redelivery would be processed again");
    }
    Ok(())
}

fn skipped(delivery: &Delivery, key: DedupKey<'_>) {
    tracing::debug!(topic = %delivery.message().stream, id = %key.id, group = %key.group, "duplicate skipped");
}

impl Around for Deduplicate {
    async fn around<N: Inner + ?Sized>(&self, delivery: Delivery, next: &N) -> Result<(), HandlerError> {
        if delivery.message().id.is_empty() {
            return next.run(delivery).await;
        }
        match &self.storage {
            Storage::InMemory(store) => {
                // The fingerprint is all the commit needs, so the handler can have the
                // delivery itself.
                let fingerprint = store.fingerprint(&DedupKey::of(&delivery));
                if store.seen_now(fingerprint) {
                    skipped(&delivery, DedupKey::of(&delivery));
                    return Ok(());
                }
                next.run(delivery).await?;
                store.commit_now(fingerprint);
                Ok(())
            }
            Storage::Other(store) => {
                // The key borrows from this handle while the handler has the delivery.
                let held = delivery.clone();
                through_trait(&**store, DedupKey::of(&held), delivery, next).await
            }
        }
    }
}
