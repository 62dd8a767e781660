//! OpenTelemetry trace context across the broker.
//!
//! A trace that starts in one service goes on in the services that consume what it
//! publishes, whatever broker is between them:
//!
//! - [`TracedWriter`] (around the bus's writer) opens a producer span per write, a
//!   child of the span current at the publish, and writes its context into each
//!   message's headers as W3C `traceparent` and `tracestate`;
//! - [`TraceContext`] (a middleware) reads them back and runs the handler in a
//!   consumer span whose parent is that producer span. A message without them (from a
//!   plain client) starts a trace of its own.
//!
//! The spans are `tracing` spans; the `tracing-opentelemetry` layer of the service's
//! subscriber turns them into OpenTelemetry spans and exports them where the service
//! says (OTLP, Jaeger, ...). Their attributes follow OpenTelemetry's messaging
//! conventions: `messaging.system` (the driver), `messaging.destination.name`,
//! `messaging.message.id`, `messaging.consumer.group.name` and
//! `messaging.message.conversation_id` (the correlation id).
//!
//! ```no_run
//! # async fn demo(driver: tidewater_memory::MemoryBroker) -> tidewater_core::Result<()> {
//! use tidewater_core::{Bus, EventRegistry};
//!
//! let mut bus = Bus::new(&driver, EventRegistry::new());
//! tidewater_otel::instrument(&mut bus);
//! // ... subscribe handlers, install a tracing subscriber with an OpenTelemetry layer ...
//! bus.start().await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod carrier;
mod consume;
mod publish;

use opentelemetry_sdk::propagation::TraceContextPropagator;
use tidewater_core::{Bus, Codec};

pub use consume::{TraceContext, TracedBatch};
pub use publish::TracedWriter;

/// The headers the trace context travels in.
pub mod headers {
    /// W3C trace context: version, trace id, parent span id, flags.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C vendor trace state.
    pub const TRACESTATE: &str = "tracestate";
}

/// Propagates trace context through `bus`: a [`TracedWriter`] around its writer and a
/// [`TraceContext`] outermost in its handlers' chain. Call it before the bus starts.
pub fn instrument<C: Codec + Clone>(bus: &mut Bus<C>) {
    bus.wrap_writer(|inner| std::sync::Arc::new(TracedWriter::new(inner)));
    bus.with_middleware(TraceContext::new());
}

/// The propagator used: W3C trace context, as OpenTelemetry's default.
fn propagator() -> TraceContextPropagator {
    TraceContextPropagator::new()
}
