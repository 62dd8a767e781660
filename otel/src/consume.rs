//! The consumer side: the handler runs in a span whose parent came with the message.

use std::sync::Arc;

use async_trait::async_trait;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use tidewater_core::{BoxHandler, Delivery, Handler, HandlerError, Middleware};
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

impl Middleware for TraceContext {
    fn wrap(&self, inner: BoxHandler) -> BoxHandler {
        Arc::new(Traced { inner })
    }
}

struct Traced {
    inner: BoxHandler,
}

#[async_trait]
impl Handler for Traced {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
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
        let result = self.inner.handle(delivery.clone()).instrument(span.clone()).await;
        if let Err(err) = &result {
            span.record("otel.status_code", "ERROR");
            span.in_scope(|| tracing::warn!(error = %err, transient = err.is_transient(), "handler failed"));
        }
        result
    }
}
