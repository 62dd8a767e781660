//! One subscription for several typed handlers: a group's handlers of the event types
//! that share a topic, each message handed to the handler of its type.

use crate::{wire, BoxHandler, Delivery, Error, ErrorKind, EventRegistry, Handler, HandlerError};

/// What becomes of a delivery of event type `kind`, which the typed handlers reading it
/// (`takes`, for the error) do not take: passed over when the registry routes `kind` to
/// the delivery's topic (the topic carries that type on purpose: it is for another
/// group, or only published), else a permanent failure, so that it reaches the
/// dead-letter queue. A type the registry does not know may be one that a newer version
/// of the service, deployed alongside, handles: passed over, it would be lost to it.
pub(crate) fn another_type(
    delivery: &Delivery,
    kind: &str,
    registry: &EventRegistry,
    takes: impl FnOnce() -> String,
) -> Result<(), HandlerError> {
    let message = delivery.message();
    if registry.routes_to(kind, &message.stream) {
        tracing::debug!(id = %message.id, event_type = kind, "skipped: an event type no handler here takes");
        delivery.mark_skipped();
        return Ok(());
    }
    Err(HandlerError::permanent(Error::new(
        ErrorKind::Decode,
        format!(
            "message {} is a {kind:?} event, which this service's registry does not route to {}; the handlers \
             here take {}",
            message.id,
            message.stream,
            takes()
        ),
    )))
}

/// An event type's name and its former names ([`Event::ALIASES`](crate::Event::ALIASES)).
pub(crate) type EventNames = (&'static str, &'static [&'static str]);

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
    /// Each event type and its former names, with its handler in the chain of its own
    /// task middleware.
    pub(crate) by_type: Vec<(EventNames, BoxHandler)>,
    /// Whether every handler's chain dead-letters by itself.
    pub(crate) dead_letters: bool,
    /// To tell event types routed to the topic from unknown ones.
    pub(crate) registry: std::sync::Arc<EventRegistry>,
}

impl Dispatch {
    fn types(&self) -> String {
        self.by_type.iter().map(|((t, _), _)| format!("{t:?}")).collect::<Vec<_>>().join(", ")
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
        // A type's own name first: were one type's former name another's name now, the
        // message is the latter's (`start` refuses such a pair in one group anyway).
        let found = self.by_type.iter().find(|((t, _), _)| *t == kind);
        let found = found.or_else(|| self.by_type.iter().find(|((_, aliases), _)| aliases.contains(&kind)));
        let Some((_, handler)) = found else {
            return another_type(&delivery, kind, &self.registry, || self.types());
        };
        let handler = BoxHandler::clone(handler);
        handler.handle(delivery).await
    }

    fn dead_letters(&self) -> bool {
        self.dead_letters
    }
}
