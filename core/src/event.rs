//! Typed events and the registry that routes them to topics.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, ErrorKind, Headers, Result, TopicName};

/// A typed event that a [`Publisher`](crate::Publisher) can publish and a typed handler
/// can receive.
///
/// The `tidewater` crate derives it: `#[derive(Event)]` with
/// `#[event(type = "order.placed", key = order_id)]` on the struct writes the impl below.
/// Implement it by hand for headers, or for a key computed from several fields.
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
    /// To rename a type, give the new name here and the old one in
    /// [`ALIASES`](Event::ALIASES).
    const TYPE: &'static str;

    /// Names this type was published under before: a message whose `tw-event-type` is
    /// one of them is read as this type, by typed handlers (single, batch, or several of
    /// one topic in a group) and by the registry, which counts it as routed where this
    /// type is. Publishing writes [`TYPE`](Event::TYPE) only. With them, a type can be
    /// renamed while messages under its old name are still in the topic, or while
    /// services not yet upgraded still publish them; the payload must still decode as
    /// this type, which serde's own attributes see to for most changes (`#[serde(default)]`
    /// on a new field, `#[serde(alias = "...")]` on a renamed one).
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use tidewater_core::Event;
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct OrderPlaced { order_id: String, #[serde(default)] currency: String }
    ///
    /// impl Event for OrderPlaced {
    ///     const TYPE: &'static str = "order.placed";
    ///     const ALIASES: &'static [&'static str] = &["OrderPlaced"]; // its name before
    /// }
    /// ```
    const ALIASES: &'static [&'static str] = &[];

    /// The partition key: events with the same key keep their order.
    fn key(&self) -> Option<String> {
        None
    }

    /// Headers to publish with the event.
    fn headers(&self) -> Headers {
        Headers::new()
    }
}

/// Whether a message whose `tw-event-type` is `name` is an `E`: its type name, or one
/// of its [aliases](Event::ALIASES).
pub(crate) fn takes<E: Event>(name: &str) -> bool {
    name == E::TYPE || E::ALIASES.contains(&name)
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
    /// Looked up on every typed publish, by names the service's own code gives: hashed
    /// with FNV-1a rather than SipHash, which took about 160 instructions a publish of
    /// the peer bench's typed row (callgrind), more than the lookup's other work.
    topics: HashMap<&'static str, TopicName, Names>,
    /// Routes to topics that break the naming rule, by event type: the text of the error
    /// that publishing or subscribing to them returns.
    invalid: HashMap<&'static str, String, Names>,
    /// The routed types' former names ([`Event::ALIASES`]), each with the type it names
    /// now: a message under one is routed where that type is.
    aliases: HashMap<&'static str, &'static str, Names>,
}

/// How the registry hashes event type names.
type Names = std::hash::BuildHasherDefault<crate::hash::Fnv1a>;

impl EventRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes events of type `E` to `topic`. A topic that breaks the naming rule
    /// ([`names::check_topic`](crate::names::check_topic)) makes publishing and
    /// subscribing `E` fail with an `InvalidName` error that says so, on every driver.
    pub fn route<E: Event>(mut self, topic: impl Into<String>) -> Self {
        self.insert::<E>(topic);
        self
    }

    /// Routes events of type `E` to `topic`, replacing an earlier route.
    pub fn insert<E: Event>(&mut self, topic: impl Into<String>) {
        let topic = topic.into();
        for alias in E::ALIASES {
            self.aliases.insert(alias, E::TYPE);
        }
        match crate::names::check_topic(&topic) {
            Ok(()) => {
                self.invalid.remove(E::TYPE);
                self.topics.insert(E::TYPE, TopicName::from(topic));
            }
            Err(err) => {
                self.topics.remove(E::TYPE);
                self.invalid.insert(E::TYPE, err.message().to_owned());
            }
        }
    }

    /// The topic for `E`, or an `UnknownEventType` error naming the type.
    pub fn topic_of<E: Event>(&self) -> Result<&str> {
        self.topic_of_type(E::TYPE)
    }

    /// The topic for the event type named `event_type`.
    pub fn topic_of_type(&self, event_type: &str) -> Result<&str> {
        self.route_of_type(event_type).map(TopicName::as_str)
    }

    /// The topic for `E`, shared: what the publisher gives each message of `E`.
    pub(crate) fn route_of<E: Event>(&self) -> Result<&TopicName> {
        self.route_of_type(E::TYPE)
    }

    fn route_of_type(&self, event_type: &str) -> Result<&TopicName> {
        if let Some(why) = self.invalid.get(event_type) {
            return Err(Error::new(ErrorKind::InvalidName, format!("event type {event_type:?} is routed to {why}")));
        }
        self.topics.get(event_type).ok_or_else(|| {
            Error::new(
                ErrorKind::UnknownEventType,
                format!("no topic is registered for event type {event_type:?}; add it with EventRegistry::route"),
            )
        })
    }

    /// Whether events of the type named `event_type` are routed to `topic`: by that
    /// name, or as the former name of a type that is.
    pub(crate) fn routes_to(&self, event_type: &str, topic: &str) -> bool {
        let routed = |name: &str| self.topics.get(name).is_some_and(|t| t.as_str() == topic);
        routed(event_type) || self.aliases.get(event_type).is_some_and(|now| routed(now))
    }

    /// The registered (event type, topic) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.topics.iter().map(|(t, topic)| (*t, topic.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Placed;

    impl Event for Placed {
        const TYPE: &'static str = "placed";
    }

    #[test]
    fn a_route_to_a_name_no_broker_takes_fails_where_it_is_used() {
        for bad in ["orders..eu", "orders.", "orders/eu", "a*b"] {
            let registry = EventRegistry::new().route::<Placed>(bad);
            let err = registry.topic_of::<Placed>().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad}: {err}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        let registry = EventRegistry::new().route::<Placed>("orders..eu").route::<Placed>("orders.eu");
        assert_eq!(registry.topic_of::<Placed>().unwrap(), "orders.eu", "a later valid route replaces it");
    }
}
