//! The correlation id in scope while a handler runs.

use std::future::Future;

tokio::task_local! {
    static CORRELATION_ID: String;
}

/// Runs `fut` with `id` as the current correlation id. A [`Publisher`](crate::Publisher)
/// used inside it stamps `id` on the messages it publishes. The correlation-id middleware
/// calls this around each handler; tasks the handler spawns do not inherit it.
pub async fn with_correlation_id<F: Future>(id: String, fut: F) -> F::Output {
    CORRELATION_ID.scope(id, fut).await
}

/// The correlation id in scope, if any.
pub fn correlation_id() -> Option<String> {
    CORRELATION_ID.try_with(Clone::clone).ok()
}
