//! Typed events and the registry that routes them to topics.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, ErrorKind, Headers, Result};

/// A typed event that a [`Publisher`](crate::Publisher) can publish and a typed handler
/// can receive.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use tidewater_core::Event;
///
/// #[derive(Serialize, Deserialize)]
/// struct OrderPlaced { order_id: String, cents: u64 }
///
/// impl Event for OrderPlaced {
///     const TYPE: &'static str = "order.placed";
///     fn key(&self) -> Option<String> { Some(self.order_id.clone()) }
/// }
/// ```
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// A stable name for the event type, written to the `tw-event-type` header and used
    /// by the [`EventRegistry`]. Keep it stable across releases: other services read it.
    const TYPE: &'static str;

    /// The partition key: events with the same key keep their order.
    fn key(&self) -> Option<String> {
        None
    }

    /// Headers to publish with the event.
    fn headers(&self) -> Headers {
        Headers::new()
    }
}

/// Maps event types to the topics they are published to and read from.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use tidewater_core::Event;
/// # #[derive(Serialize, Deserialize)] struct OrderPlaced;
/// # impl Event for OrderPlaced { const TYPE: &'static str = "order.placed"; }
/// use tidewater_core::EventRegistry;
///
/// let registry = EventRegistry::new().route::<OrderPlaced>("orders");
/// assert_eq!(registry.topic_of::<OrderPlaced>().unwrap(), "orders");
/// ```
#[derive(Clone, Debug, Default)]
pub struct EventRegistry {
    topics: HashMap<&'static str, String>,
}

impl EventRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes events of type `E` to `topic`.
    pub fn route<E: Event>(mut self, topic: impl Into<String>) -> Self {
        self.insert::<E>(topic);
        self
    }

    /// Routes events of type `E` to `topic`, replacing an earlier route.
    pub fn insert<E: Event>(&mut self, topic: impl Into<String>) {
        self.topics.insert(E::TYPE, topic.into());
    }

    /// The topic for `E`, or an `UnknownEventType` error naming the type.
    pub fn topic_of<E: Event>(&self) -> Result<&str> {
        self.topic_of_type(E::TYPE)
    }

    /// The topic for the event type named `event_type`.
    pub fn topic_of_type(&self, event_type: &str) -> Result<&str> {
        self.topics.get(event_type).map(String::as_str).ok_or_else(|| {
            Error::new(
                ErrorKind::UnknownEventType,
                format!("no topic is registered for event type {event_type:?}; add it with EventRegistry::route"),
            )
        })
    }

    /// The registered (event type, topic) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.topics.iter().map(|(t, topic)| (*t, topic.as_str()))
    }
}
