//! Trace: a span around each handler call.

use tidewater_core::{Around, Delivery, HandlerError, Inner};
use tracing::Instrument;

/// Runs each handler call in a `tidewater.handle` span with the topic, message id,
/// attempt and group, and records the outcome (`ok`, `transient`, `permanent`) on it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Trace;

impl Around for Trace {
    async fn around<N: Inner + ?Sized>(&self, delivery: Delivery, next: &N) -> Result<(), HandlerError> {
        let message = delivery.message();
        let span = tracing::info_span!(
            "tidewater.handle",
            topic = %message.stream,
            id = %message.id,
            attempt = delivery.attempt(),
            group = delivery.group().unwrap_or_default(),
            outcome = tracing::field::Empty,
        );
        // The span is the instrumented call's own, not a clone: a clone of an enabled
        // span is a call into the subscriber, and so is its drop.
        let mut call = std::pin::pin!(next.run(delivery).instrument(span));
        let result = call.as_mut().await;
        let span = call.span();
        let outcome = match &result {
            Ok(()) => "ok",
            Err(e) if e.is_transient() => "transient",
            Err(_) => "permanent",
        };
        span.record("outcome", outcome);
        if let Err(err) = &result {
            span.in_scope(|| tracing::debug!(error = %err, "handler failed"));
        }
        result
    }
}
