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
mod table;

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
/// calling the handler. A message whose handler fails (or whose call is cancelled) is
/// not remembered, so it is processed again when it comes back; nor is one that a
/// [`DeadLetter`](tidewater_core::DeadLetter) inside this middleware dead-lettered, so its
/// redrive is processed, not skipped.
///
/// The default store claims an id when it checks it, in the same step, and forgets the
/// claim if the handler fails: so a second delivery of an id that arrives while the
/// first is being handled is skipped too, and if the first then fails, its own
/// redelivery (or dead-letter entry) carries the message on. A store behind
/// [`DeduplicationStorage`] is asked twice, before the handler and after it succeeded,
/// so two deliveries of one id running at the same moment can both pass its check;
/// brokers redeliver one message at a time, so this needs a redelivery racing a slow
/// first delivery. If a store cannot answer, the message is processed (at least once
/// beats at most once) and a warning is logged. Messages without an id are not
/// deduplicated.
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

/// Through the trait, for a storage other than the default. `held` is a handle on
/// `delivery`, which the key borrows from while the handler has the delivery.
async fn through_trait<N: Inner>(
    storage: &dyn DeduplicationStorage,
    held: &Delivery,
    delivery: Delivery,
    next: N,
) -> Result<(), HandlerError> {
    let key = DedupKey::of(held);
    match storage.is_duplicate(&key).await {
        Ok(true) => {
            skipped(&delivery, key);
            return Ok(());
        }
        Ok(false) => {}
        Err(err) => tracing::warn!(id = %key.id, error = %err, "dedup check failed; processing anyway"),
    }
    next.run(delivery).await?;
    // Dead-lettered inside this middleware, it was not processed (see `around`).
    if held.is_dead_lettered() {
        return Ok(());
    }
    if let Err(err) = storage.commit(&key).await {
        tracing::warn!(id = %key.id, error = %err, "dedup commit failed; a redelivery would be processed again");
    }
    Ok(())
}

/// A claim on an id in the default store, held while its handler runs: released if
/// the handler fails or its call is dropped, so that the message is processed when it
/// comes again; kept (`at` taken) once the handler succeeded.
struct Claim<'s> {
    store: &'s InMemoryDedupStorage,
    fingerprint: u128,
    at: Option<u64>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Some(at) = self.at {
            self.store.release(self.fingerprint, at);
        }
    }
}

fn skipped(delivery: &Delivery, key: DedupKey<'_>) {
    tracing::debug!(topic = %delivery.message().stream, id = %key.id, group = %key.group, "duplicate skipped");
}

impl Around for Deduplicate {
    async fn around<N: Inner>(&self, delivery: Delivery, next: N) -> Result<(), HandlerError> {
        if delivery.message().id.is_empty() {
            return next.run(delivery).await;
        }
        match &self.storage {
            Storage::InMemory(store) => {
                // The fingerprint is all the claim needs, so the handler can have the
                // delivery itself.
                let fingerprint = store.fingerprint(&DedupKey::of(&delivery));
                let Some(at) = store.claim_now(fingerprint) else {
                    skipped(&delivery, DedupKey::of(&delivery));
                    return Ok(());
                };
                let mut claim = Claim { store, fingerprint, at: Some(at) };
                // A dead letter middleware inside this one answers `Ok` for a message it
                // dead-lettered, which was not processed: remembered, its redrive would
                // be skipped as a duplicate.
                let watch = delivery.clone();
                let result = next.run(delivery).await;
                if result.is_ok() && !watch.is_dead_lettered() {
                    claim.at = None;
                }
                result
            }
            Storage::Other(store) => {
                // The key borrows from this handle while the handler has the delivery.
                let held = delivery.clone();
                through_trait(&**store, &held, delivery, next).await
            }
        }
    }
}

/// Random-looking bits from a counter, as a fingerprint's half would be: for the
/// store's tests, which need many distinct keys spread over shards and buckets.
#[cfg(test)]
pub(super) fn random_bits(i: u64) -> u64 {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use futures::FutureExt;
    use tidewater_core::{handler_fn, Handler, Message, Position};
    use tokio::sync::Semaphore;

    use super::*;

    fn delivery(id: &str) -> Delivery {
        let position = Position::Queue { partition: None, sequence: None };
        Delivery::new(Message::new("orders", "x").with_id(id), 1, position, Some(Arc::from("billing")))
    }

    /// A handler that counts its calls, waits for a permit, and fails while `failing`.
    fn gated(calls: &Arc<AtomicU32>, gate: &Arc<Semaphore>, failing: bool) -> impl Handler {
        let (calls, gate) = (Arc::clone(calls), Arc::clone(gate));
        handler_fn(move |_: Delivery| {
            let (calls, gate) = (Arc::clone(&calls), Arc::clone(&gate));
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                gate.acquire().await.unwrap().forget();
                if failing {
                    Err(HandlerError::transient("db down"))
                } else {
                    Ok(())
                }
            }
        })
    }

    #[tokio::test]
    async fn a_duplicate_arriving_while_the_first_runs_is_skipped_unless_the_first_fails() {
        let (calls, gate) = (Arc::new(AtomicU32::new(0)), Arc::new(Semaphore::new(0)));
        let dedup = Deduplicate::in_memory();
        let failing = dedup.clone().wrapping(gated(&calls, &gate, true));
        let first = tokio::spawn(async move { failing.handle(delivery("a")).await });
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let handler = dedup.wrapping(gated(&calls, &gate, false));
        handler.handle(delivery("a")).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "skipped while the first was running");
        gate.add_permits(1);
        assert!(first.await.unwrap().is_err());
        gate.add_permits(1);
        handler.handle(delivery("a")).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2, "the first failed: its id was forgotten");
        handler.handle(delivery("a")).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2, "the second succeeded: remembered");
    }

    #[tokio::test]
    async fn a_call_dropped_midway_forgets_its_id() {
        let (calls, gate) = (Arc::new(AtomicU32::new(0)), Arc::new(Semaphore::new(0)));
        let handler = Deduplicate::in_memory().wrapping(gated(&calls, &gate, false));
        let mut call = Box::pin(handler.handle(delivery("a")));
        assert!((&mut call).now_or_never().is_none(), "waits at the gate");
        drop(call);
        gate.add_permits(1);
        handler.handle(delivery("a")).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2, "processed again after the cancelled call");
    }
}
