//! The producer side: a span per write, its context into each message.

use std::sync::Arc;

use async_trait::async_trait;
use opentelemetry::propagation::TextMapPropagator;
use tidewater_core::{Message, Result, Writer};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::carrier::HeaderInjector;
use crate::headers::TRACEPARENT;

/// A writer that opens a producer span (`publish <topic>`) per write, a child of the
/// span current at the call, and writes its context into every message's headers, so
/// that consumers continue the trace.
///
/// A message that already carries a `traceparent` (forwarded, or redriven from a
/// dead-letter queue) keeps it: it belongs to the trace that made it.
pub struct TracedWriter {
    inner: Arc<dyn Writer>,
}

impl std::fmt::Debug for TracedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedWriter").field("driver", &self.inner.driver()).finish()
    }
}

impl TracedWriter {
    /// Traces writes through `inner`.
    pub fn new(inner: Arc<dyn Writer>) -> Self {
        Self { inner }
    }

    fn span(&self, batch: &[Message]) -> tracing::Span {
        let topic = batch.first().map_or("", |m| m.stream.as_str());
        let span = tracing::info_span!(
            "tidewater.publish",
            otel.name = format!("publish {topic}"),
            otel.kind = "producer",
            messaging.system = self.inner.driver(),
            messaging.operation.type = "send",
            messaging.destination.name = topic,
            messaging.batch.message_count = batch.len(),
            messaging.message.id = tracing::field::Empty,
            messaging.message.conversation_id = tracing::field::Empty,
        );
        if let [message] = batch {
            span.record("messaging.message.id", message.id.as_str());
            if let Some(correlation) = message.headers.get(tidewater_core::wire::CORRELATION_ID) {
                span.record("messaging.message.conversation_id", correlation);
            }
        }
        span
    }
}

fn inject(span: &tracing::Span, batch: &mut [Message]) {
    let context = span.context();
    let propagator = crate::propagator();
    for message in batch.iter_mut().filter(|m| m.headers.get(TRACEPARENT).is_none()) {
        propagator.inject_context(&context, &mut HeaderInjector(&mut message.headers));
    }
}

#[async_trait]
impl Writer for TracedWriter {
    fn driver(&self) -> &'static str {
        self.inner.driver()
    }

    async fn write(&self, mut batch: Vec<Message>) -> Result<()> {
        let span = self.span(&batch);
        inject(&span, &mut batch);
        self.inner.write(batch).instrument(span).await
    }

    async fn write_one(&self, mut message: Message) -> Result<()> {
        let span = self.span(std::slice::from_ref(&message));
        inject(&span, std::slice::from_mut(&mut message));
        self.inner.write_one(message).instrument(span).await
    }

    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}
