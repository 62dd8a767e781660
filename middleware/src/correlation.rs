//! CorrelationId: the consumed message's correlation id carried to what its handler
//! publishes.

use tidewater_core::{context, Around, Delivery, HandlerError, Inner};

/// Carries a correlation id from the consumed message to everything its handler
/// publishes: the message's `tw-correlation-id` header, or its id when it has none,
/// is in scope while the handler runs, and a [`Publisher`](tidewater_core::Publisher)
/// stamps it on the messages it publishes there. Tasks the handler spawns do not
/// inherit it; wrap their futures in [`context::with_correlation_id`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CorrelationId;

impl Around for CorrelationId {
    async fn around<N: Inner>(&self, delivery: Delivery, next: N) -> Result<(), HandlerError> {
        context::with_correlation_of(delivery.clone(), next.run(delivery)).await
    }
}
