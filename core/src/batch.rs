//! Batch handlers: a handler that takes up to `max` deliveries at once, or what came
//! within `linger` of the first, and says which of them failed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{Delivery, HandlerError};

/// What a batch handler returns: `Ok` when every delivery was processed.
pub type BatchResult = Result<(), BatchError>;

/// Which deliveries of a batch failed. Those are redelivered or dead-lettered as a
/// single handler's failures would be; the others are settled as processed.
#[derive(Debug, Default)]
pub struct BatchError {
    /// The whole batch failed with this.
    all: Option<HandlerError>,
    /// These deliveries failed, by index in the batch.
    some: Vec<(usize, HandlerError)>,
}

impl BatchError {
    /// Every delivery of the batch failed with `err` (the database was down, say).
    pub fn all(err: impl Into<HandlerError>) -> Self {
        Self { all: Some(err.into()), some: Vec::new() }
    }

    /// No failure yet: add them with [`BatchError::fail`].
    pub fn none() -> Self {
        Self::default()
    }

    /// The delivery at `index` in the batch failed with `err`.
    pub fn fail(mut self, index: usize, err: impl Into<HandlerError>) -> Self {
        self.some.push((index, err.into()));
        self
    }

    /// Whether no delivery was marked failed.
    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.some.is_empty()
    }

    /// The failure of each of `n` deliveries, `None` for those that did not fail.
    pub(crate) fn into_failures(self, n: usize) -> Vec<Option<HandlerError>> {
        let mut failures: Vec<Option<HandlerError>> = match &self.all {
            Some(err) => (0..n).map(|_| Some(err.for_another())).collect(),
            None => (0..n).map(|_| None).collect(),
        };
        for (index, err) in self.some {
            if let Some(slot) = failures.get_mut(index) {
                *slot = Some(err);
            }
        }
        failures
    }
}

impl<E: Into<HandlerError>> From<E> for BatchError {
    /// An error of the whole batch, so that `?` works in a batch handler.
    fn from(err: E) -> Self {
        Self::all(err)
    }
}

/// Handles deliveries a batch at a time. See [`batch_handler_fn`] for a closure.
#[async_trait]
pub trait BatchHandler: Send + Sync + 'static {
    /// Handles `batch`, in the order the broker delivered it.
    async fn handle(&self, batch: &[Delivery]) -> BatchResult;
}

/// A batch handler from an async closure that takes the batch by value.
///
/// ```
/// use tidewater_core::{batch_handler_fn, BatchError, Delivery};
///
/// let insert_all = batch_handler_fn(|batch: Vec<Delivery>| async move {
///     // One round trip for the whole batch, say an INSERT of every row.
///     println!("inserting {} rows", batch.len());
///     Ok::<_, BatchError>(())
/// });
/// # let _ = insert_all;
/// ```
pub fn batch_handler_fn<F, Fut>(f: F) -> FnBatchHandler<F>
where
    F: Fn(Vec<Delivery>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = BatchResult> + Send + 'static,
{
    FnBatchHandler(f)
}

/// See [`batch_handler_fn`].
#[derive(Clone, Debug)]
pub struct FnBatchHandler<F>(F);

#[async_trait]
impl<F, Fut> BatchHandler for FnBatchHandler<F>
where
    F: Fn(Vec<Delivery>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = BatchResult> + Send + 'static,
{
    async fn handle(&self, batch: &[Delivery]) -> BatchResult {
        (self.0)(batch.to_vec()).await
    }
}

/// How a task gathers its batches, and what handles them.
#[derive(Clone)]
pub struct BatchSpec {
    pub(crate) handler: Arc<dyn BatchHandler>,
    pub(crate) max: usize,
    pub(crate) linger: Duration,
}

impl std::fmt::Debug for BatchSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSpec").field("max", &self.max).field("linger", &self.linger).finish_non_exhaustive()
    }
}

impl BatchSpec {
    pub(crate) fn new(handler: Arc<dyn BatchHandler>, max: usize, linger: Duration) -> Self {
        Self { handler, max: max.max(1), linger }
    }
}

/// A typed batch handler: decodes each delivery as `E` with the scheduler's codec;
/// one that does not decode fails permanently and is not handed to `f`.
pub(crate) struct EventBatch<E, F, C> {
    pub(crate) f: F,
    pub(crate) codec: Arc<C>,
    pub(crate) registry: Arc<crate::EventRegistry>,
    pub(crate) _event: std::marker::PhantomData<fn() -> E>,
}

#[async_trait]
impl<E, F, Fut, C> BatchHandler for EventBatch<E, F, C>
where
    E: crate::Event,
    F: Fn(Vec<E>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = BatchResult> + Send + 'static,
    C: crate::Codec,
{
    async fn handle(&self, batch: &[Delivery]) -> BatchResult {
        let mut failed = BatchError::none();
        let (mut events, mut positions) = (Vec::with_capacity(batch.len()), Vec::with_capacity(batch.len()));
        for (i, delivery) in batch.iter().enumerate() {
            // Another event type is passed over or dead-lettered, as a single typed
            // handler does; before, one whose payload happened to decode as `E` was
            // handed to `f` as an `E`.
            if let Some(kind) = delivery.message().headers.get(crate::wire::EVENT_TYPE) {
                if !crate::event::takes::<E>(kind) {
                    let takes = || format!("{:?}", E::TYPE);
                    if let Err(err) = crate::dispatch::another_type(delivery, kind, &self.registry, takes) {
                        failed = failed.fail(i, err);
                    }
                    continue;
                }
            }
            match self.codec.decode_message::<E>(delivery.message()) {
                Ok(event) => {
                    events.push(event);
                    positions.push(i);
                }
                Err(err) => failed = failed.fail(i, HandlerError::permanent(err)),
            }
        }
        if !events.is_empty() {
            if let Err(err) = (self.f)(events).await {
                // Indices the handler gave are into the events it got: map them back.
                if let Some(all) = &err.all {
                    for &i in &positions {
                        failed = failed.fail(i, all.for_another());
                    }
                }
                for (j, e) in err.some {
                    if let Some(&i) = positions.get(j) {
                        failed = failed.fail(i, e);
                    }
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed)
        }
    }
}
