//! The consumer side: the handler runs in a span whose parent came with the message.

use async_trait::async_trait;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use tidewater_core::{Around, Delivery, HandlerError, Inner};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::carrier::HeaderExtractor;

/// A middleware that runs the rest of the chain in a consumer span (`process
/// <topic>`) continuing the trace the message carries, or starting one when it carries
/// none. Put it first, so retries and the dead-letter write are inside the span.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceContext {
    _private: (),
}

impl TraceContext {
    /// The middleware.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Around for TraceContext {
    async fn around<N: Inner>(&self, delivery: Delivery, next: N) -> Result<(), HandlerError> {
        let message = delivery.message();
        // No parent from the process: the message's context is the parent, or the span
        // is a root of its own.
        let span = tracing::info_span!(
            parent: None,
            "tidewater.process",
            otel.name = format!("process {}", message.stream),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.operation.type = "process",
            messaging.destination.name = message.stream.as_str(),
            messaging.message.id = message.id.as_str(),
            messaging.consumer.group.name = delivery.group().unwrap_or_default(),
            messaging.message.conversation_id = message.headers.get(tidewater_core::wire::CORRELATION_ID).unwrap_or_default(),
            tidewater.attempt = delivery.attempt(),
        );
        let parent = crate::propagator().extract(&HeaderExtractor(&message.headers));
        if parent.span().span_context().is_valid() {
            // Only a span that has not started can take a parent; this one has not.
            let _ = span.set_parent(parent);
        }
        let result = next.run(delivery.clone()).instrument(span.clone()).await;
        // A delivery let go at a stop was not processed, but nothing failed either.
        if let Some(err) = result.as_ref().err().filter(|err| !err.is_stopping()) {
            span.record("otel.status_code", "ERROR");
            span.in_scope(|| tracing::warn!(error = %err, transient = err.is_transient(), "handler failed"));
        }
        result
    }
}

/// A batch handler run in one consumer span (`process <topic>`, a root of its own)
/// linked to the trace of every message in the batch that carries one, as
/// OpenTelemetry's messaging conventions say for batches: a batch has many parents, so
/// it links them instead. Middleware does not wrap batch handlers; wrap the batch
/// handler itself:
///
/// ```no_run
/// # fn demo(bus: &mut tidewater_core::Bus) {
/// use std::time::Duration;
/// use tidewater_core::{batch_handler_fn, BatchError, Delivery};
/// use tidewater_otel::TracedBatch;
///
/// let store = batch_handler_fn(|batch: Vec<Delivery>| async move { Ok::<_, BatchError>(()) });
/// bus.subscribe_batch("clicks", 500, Duration::from_millis(50), TracedBatch::new(store));
/// # }
/// ```
pub struct TracedBatch<H> {
    inner: H,
}

impl<H> TracedBatch<H> {
    /// Traces `inner`'s batches.
    pub fn new(inner: H) -> Self {
        Self { inner }
    }
}

impl<H> std::fmt::Debug for TracedBatch<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedBatch").finish_non_exhaustive()
    }
}

#[async_trait]
impl<H: tidewater_core::BatchHandler> tidewater_core::BatchHandler for TracedBatch<H> {
    async fn handle(&self, batch: &[Delivery]) -> tidewater_core::BatchResult {
        let topic = batch.first().map_or("", |d| d.message().stream.as_str());
        let span = tracing::info_span!(
            parent: None,
            "tidewater.process_batch",
            otel.name = format!("process {topic}"),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.operation.type = "process",
            messaging.destination.name = topic,
            messaging.batch.message_count = batch.len(),
            messaging.consumer.group.name = batch.first().and_then(|d| d.group()).unwrap_or_default(),
        );
        let propagator = crate::propagator();
        for delivery in batch {
            let context = propagator.extract(&HeaderExtractor(&delivery.message().headers));
            let linked = context.span().span_context().clone();
            if linked.is_valid() {
                span.add_link(linked);
            }
        }
        let result = self.inner.handle(batch).instrument(span.clone()).await;
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        result
    }
}
