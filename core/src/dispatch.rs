//! One subscription for several typed handlers: a group's handlers of the event types
//! that share a topic, each message handed to the handler of its type.

use crate::{wire, BoxHandler, Delivery, Error, ErrorKind, Handler, HandlerError};

/// The typed handlers of one topic and group, by the event type each takes.
///
/// Members of a group split a topic's messages, so handlers of one group subscribed
/// each on its own would each get some messages of the others' types, and none of
/// their own that went to the others; as one subscription, every message reaches the
/// handler of its type, and a key's events keep their order across types.
pub(crate) struct Dispatch {
    /// For errors: the topic and group.
    pub(crate) topic: String,
    pub(crate) group: String,
    /// Each event type with its handler, in the chain of its own task middleware.
    pub(crate) by_type: Vec<(&'static str, BoxHandler)>,
    /// Whether every handler's chain dead-letters by itself.
    pub(crate) dead_letters: bool,
}

impl Dispatch {
    fn types(&self) -> String {
        self.by_type.iter().map(|(t, _)| format!("{t:?}")).collect::<Vec<_>>().join(", ")
    }
}

impl Handler for Dispatch {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let message = delivery.message();
        let Some(kind) = message.headers.get(wire::EVENT_TYPE) else {
            return Err(HandlerError::permanent(Error::new(
                ErrorKind::Decode,
                format!(
                    "message {} has no {} header, and group {} reads {} from {}: it cannot tell which it is",
                    message.id,
                    wire::EVENT_TYPE,
                    self.group,
                    self.types(),
                    self.topic
                ),
            )));
        };
        let Some((_, handler)) = self.by_type.iter().find(|(t, _)| *t == kind) else {
            tracing::debug!(id = %message.id, event_type = kind, "skipped: an event type no handler of the group takes");
            delivery.mark_skipped();
            return Ok(());
        };
        let handler = BoxHandler::clone(handler);
        handler.handle(delivery).await
    }

    fn dead_letters(&self) -> bool {
        self.dead_letters
    }
}
