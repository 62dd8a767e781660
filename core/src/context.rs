//! The correlation id in scope while a handler runs.

use std::future::Future;

use crate::{wire, Delivery};

/// Where the correlation id in scope comes from. A delivery is kept as it is (a
/// reference count) and its message read only when something is published, so the
/// handlers that publish nothing pay nothing.
enum Correlation {
    Id(String),
    Of(Delivery),
}

tokio::task_local! {
    static CORRELATION: Correlation;
}

/// Runs `fut` with `id` as the current correlation id. A [`Publisher`](crate::Publisher)
/// used inside it stamps `id` on the messages it publishes. Tasks a handler spawns do
/// not inherit it; wrap their futures in this.
pub async fn with_correlation_id<F: Future>(id: String, fut: F) -> F::Output {
    CORRELATION.scope(Correlation::Id(id), fut).await
}

/// Runs `fut` with the correlation id of `delivery`'s message in scope: its
/// `tw-correlation-id` header, or its id when it has none. The correlation-id
/// middleware calls this around each handler.
pub async fn with_correlation_of<F: Future>(delivery: Delivery, fut: F) -> F::Output {
    CORRELATION.scope(Correlation::Of(delivery), fut).await
}

/// The correlation id in scope, if any.
pub fn correlation_id() -> Option<String> {
    CORRELATION
        .try_with(|c| match c {
            Correlation::Id(id) => id.clone(),
            Correlation::Of(d) => {
                let m = d.message();
                m.headers.get(wire::CORRELATION_ID).unwrap_or(&m.id).to_owned()
            }
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, Position};

    fn delivery(message: Message) -> Delivery {
        Delivery::new(message, 1, Position::Queue { partition: None, sequence: None }, None)
    }

    #[tokio::test]
    async fn a_message_gives_its_header_or_else_its_id() {
        assert_eq!(correlation_id(), None);
        let plain = delivery(Message::new("t", "p").with_id("m-1"));
        assert_eq!(with_correlation_of(plain, async { correlation_id() }).await.as_deref(), Some("m-1"));
        let linked = delivery(Message::new("t", "p").with_id("m-2").with_header(wire::CORRELATION_ID, "c-9"));
        assert_eq!(with_correlation_of(linked, async { correlation_id() }).await.as_deref(), Some("c-9"));
        assert_eq!(with_correlation_id("c-1".into(), async { correlation_id() }).await.as_deref(), Some("c-1"));
    }
}
