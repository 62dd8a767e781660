//! The small middleware: timeout, panic recovery, tracing and correlation ids.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use tidewater_core::{context, panic_message, Around, Delivery, Handler, HandlerError};
use tracing::Instrument;

/// Fails a handler call that runs longer than a limit, with a transient error. The call
/// is cancelled at its next await point.
///
/// The limit starts when the call first waits. Work before that cannot be interrupted
/// anyway (a future is only cancelled at an await point), and a call that never waits
/// then costs no timer at all, which is most calls.
#[derive(Clone, Copy, Debug)]
pub struct Timeout(pub Duration);

impl Around for Timeout {
    async fn around(&self, delivery: Delivery, next: &dyn Handler) -> Result<(), HandlerError> {
        let mut call = next.handle(delivery);
        if let std::task::Poll::Ready(result) = futures::poll!(&mut call) {
            return result;
        }
        match tokio::time::timeout(self.0, call).await {
            Ok(result) => result,
            Err(_) => Err(HandlerError::transient(format!("handler timed out after {:?}", self.0))),
        }
    }
}

/// Turns a panicking handler call into an error of the recovery you choose. Without
/// it a panic is already one failed, transient attempt that the whole chain sees (the
/// scheduler catches it right around the handler); use [`Recover::permanent`] to send
/// panicking messages to the dead-letter queue at once instead of retrying them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Recover {
    permanent: bool,
}

impl Recover {
    /// Panics become transient errors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Panics become permanent errors.
    pub fn permanent() -> Self {
        Self { permanent: true }
    }
}

impl Around for Recover {
    async fn around(&self, delivery: Delivery, next: &dyn Handler) -> Result<(), HandlerError> {
        match AssertUnwindSafe(next.handle(delivery)).catch_unwind().await {
            // The scheduler's own catch around the handler got there first.
            Ok(Err(err)) if err.is_panic() && self.permanent => Err(err.into_permanent()),
            Ok(result) => result,
            Err(panic) => {
                let text = format!("handler panicked: {}", panic_message(&*panic));
                Err(if self.permanent { HandlerError::permanent(text) } else { HandlerError::transient(text) })
            }
        }
    }
}

/// Runs each handler call in a `tidewater.handle` span with the topic, message id,
/// attempt and group, and records the outcome (`ok`, `transient`, `permanent`) on it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Trace;

impl Around for Trace {
    async fn around(&self, delivery: Delivery, next: &dyn Handler) -> Result<(), HandlerError> {
        let message = delivery.message();
        let span = tracing::info_span!(
            "tidewater.handle",
            topic = %message.stream,
            id = %message.id,
            attempt = delivery.attempt(),
            group = delivery.group().unwrap_or_default(),
            outcome = tracing::field::Empty,
        );
        let result = next.handle(delivery.clone()).instrument(span.clone()).await;
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

/// Carries a correlation id from the consumed message to everything its handler
/// publishes: the message's `tw-correlation-id` header, or its id when it has none,
/// is in scope while the handler runs, and a [`Publisher`](tidewater_core::Publisher)
/// stamps it on the messages it publishes there. Tasks the handler spawns do not
/// inherit it; wrap their futures in [`context::with_correlation_id`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CorrelationId;

impl Around for CorrelationId {
    async fn around(&self, delivery: Delivery, next: &dyn Handler) -> Result<(), HandlerError> {
        context::with_correlation_of(delivery.shared_message(), next.handle(delivery)).await
    }
}
