//! The message envelope every driver carries.

use std::borrow::Cow;
use std::fmt;
use std::time::SystemTime;

use bytes::Bytes;

use crate::{MessageId, TopicName};

/// Header names tidewater writes for message fields that a broker has no native slot for.
///
/// Drivers map [`Message`] fields to these headers when the broker only carries
/// headers (NATS) or properties (Pulsar), and map them back when reading. The names are
/// plain ASCII so other clients can read them.
pub mod wire {
    /// The message id.
    pub const ID: &str = "tw-id";
    /// The message key.
    pub const KEY: &str = "tw-key";
    /// The payload's content type.
    pub const CONTENT_TYPE: &str = "tw-content-type";
    /// The publish time, as milliseconds since the Unix epoch.
    pub const TIMESTAMP: &str = "tw-time";
    /// The event type name of a typed event (see [`Event::TYPE`](crate::Event::TYPE)).
    pub const EVENT_TYPE: &str = "tw-event-type";
    /// The correlation id carried from a consumed message to the messages its handler publishes.
    pub const CORRELATION_ID: &str = "tw-correlation-id";

    /// The headers drivers that carry the id and content type in headers (Kafka,
    /// StreamBus) or properties (Pulsar) keep for themselves.
    pub const RESERVED: [&str; 2] = [ID, CONTENT_TYPE];

    /// Checks that `message` has no user header named as one of [`RESERVED`], which the
    /// driver `driver` would overwrite with the message's own fields; `InvalidInput` if
    /// it has.
    ///
    /// ```
    /// use tidewater_core::{wire, ErrorKind, Message};
    ///
    /// assert!(wire::check_headers(&Message::new("t", "x").with_header("trace", "1"), "kafka").is_ok());
    /// let taken = Message::new("t", "x").with_header(wire::ID, "mine");
    /// assert_eq!(wire::check_headers(&taken, "kafka").unwrap_err().kind(), ErrorKind::InvalidInput);
    /// ```
    pub fn check_headers(message: &super::Message, driver: &'static str) -> crate::Result<()> {
        match message.headers.iter().map(|(name, _)| name).find(|name| RESERVED.contains(name)) {
            None => Ok(()),
            Some(name) => Err(crate::Error::new(
                crate::ErrorKind::InvalidInput,
                format!("{} has a header {name:?}, a name the {driver} driver keeps for its own use", which(message)),
            )
            .with_driver(driver)
            .with_topic(message.stream.clone())),
        }
    }

    /// How an error names a message: by its id, or as one without (a message written
    /// without a publisher may have none), rather than a blank where the id would go.
    ///
    /// ```
    /// use tidewater_core::{wire, Message};
    ///
    /// assert_eq!(wire::which(&Message::new("t", "x").with_id("o-17")), "message o-17");
    /// assert_eq!(wire::which(&Message::new("t", "x")), "a message with no id");
    /// ```
    pub fn which(message: &super::Message) -> String {
        match message.id.as_str() {
            "" => "a message with no id".to_owned(),
            id => format!("message {id}"),
        }
    }

    /// How a writer's error names the `i`-th message of a refused batch: by its place,
    /// and by its id where it has one (a message written without a publisher may not).
    ///
    /// ```
    /// use tidewater_core::{wire, Message};
    ///
    /// assert_eq!(wire::in_batch(2, &Message::new("t", "x").with_id("o-17")), "message 2 of the batch (o-17)");
    /// assert_eq!(wire::in_batch(0, &Message::new("t", "x")), "message 0 of the batch");
    /// ```
    pub fn in_batch(i: usize, message: &super::Message) -> String {
        match message.id.as_str() {
            "" => format!("message {i} of the batch"),
            id => format!("message {i} of the batch ({id})"),
        }
    }

    /// A header value as text: borrowed when it is UTF-8, as every value tidewater
    /// writes is, and read lossily (each bad sequence a U+FFFD) when it is not, for what
    /// other clients send.
    ///
    /// Drivers read each record's id with it. `String::from_utf8_lossy` alone checks a
    /// byte at a time, where `str::from_utf8` checks ASCII a word at a time: a
    /// 36-character id took 20 ns one way and 6 the other.
    ///
    /// ```
    /// use tidewater_core::wire;
    ///
    /// assert_eq!(wire::text(b"0192f3a4-5b6c"), "0192f3a4-5b6c");
    /// assert_eq!(wire::text(b"caf\xe9"), "caf\u{fffd}");
    /// ```
    pub fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
        match std::str::from_utf8(bytes) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(bytes),
        }
    }
}

/// Message headers: string names mapped to text values.
///
/// Values are text, not bytes, because text is what every supported broker can carry
/// without an encoding of our own: NATS headers and Pulsar properties are strings, and
/// Kafka and StreamBus headers (bytes) hold UTF-8 without loss. A driver that reads a
/// header value that is not UTF-8 reports it rather than dropping it (see each driver).
///
/// A name holds one value; inserting a name again replaces its value. Iteration is in
/// name order, so encodings are deterministic.
#[derive(Clone, Default)]
pub struct Headers(Entries);

/// A header name or value: borrowed for the names and values a program spells out (the
/// event type, the well-known header names), so that setting them allocates nothing.
type Text = Cow<'static, str>;

/// The headers, sorted by name. A message has a few: a sorted vector finds one as fast as
/// a map and holds each in 48 bytes, where a map's first node takes over 500 for every
/// message held. Most messages have none or one (the event type), which is kept in the
/// value itself rather than in a vector of its own.
#[derive(Clone, Default)]
enum Entries {
    #[default]
    None,
    One([(Text, Text); 1]),
    Many(Vec<(Text, Text)>),
}

impl Headers {
    /// An empty set of headers.
    pub fn new() -> Self {
        Self(Entries::None)
    }

    #[inline]
    fn entries(&self) -> &[(Text, Text)] {
        match &self.0 {
            Entries::None => &[],
            Entries::One(one) => one,
            Entries::Many(many) => many,
        }
    }

    /// Where `name` is, or where it would go to keep the names in order.
    #[inline]
    fn position(&self, name: &str) -> Result<usize, usize> {
        self.entries().binary_search_by(|(k, _)| (**k).cmp(name))
    }

    fn set(&mut self, name: Text, value: Text) -> Option<String> {
        match (self.position(&name), &mut self.0) {
            (Ok(0), Entries::One([(_, old)])) => Some(std::mem::replace(old, value).into_owned()),
            (Ok(i), Entries::Many(many)) => Some(std::mem::replace(&mut many[i].1, value).into_owned()),
            (Err(_), entries @ Entries::None) => {
                *entries = Entries::One([(name, value)]);
                None
            }
            (Err(i), entries @ Entries::One(_)) => {
                let Entries::One([first]) = std::mem::take(entries) else { unreachable!("matched One") };
                let mut many = Vec::with_capacity(2);
                many.push(first);
                many.insert(i, (name, value));
                *entries = Entries::Many(many);
                None
            }
            (Err(i), Entries::Many(many)) => {
                many.insert(i, (name, value));
                None
            }
            (Ok(_), _) => unreachable!("a found name has an entry"),
        }
    }

    /// Sets `name` to `value`, returning the value it replaced.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.set(Cow::Owned(name.into()), Cow::Owned(value.into()))
    }

    /// Sets `name` to `value` where both are constants, without copying either (the
    /// publisher sets the event type this way on every message).
    ///
    /// ```
    /// use tidewater_core::Headers;
    ///
    /// let mut h = Headers::new();
    /// h.insert_static("tw-event-type", "order.placed");
    /// assert_eq!(h.insert("tw-event-type", "order.paid"), Some("order.placed".to_owned()));
    /// assert_eq!(h.get("tw-event-type"), Some("order.paid"));
    /// ```
    pub fn insert_static(&mut self, name: &'static str, value: &'static str) -> Option<String> {
        self.set(Cow::Borrowed(name), Cow::Borrowed(value))
    }

    /// Sets a header read from a broker, as [`insert`](Self::insert) does, but keeps a
    /// name among tidewater's own ([`wire::EVENT_TYPE`], [`wire::CORRELATION_ID`]) as the
    /// constant rather than a copy: every typed message carries the event type, and a
    /// driver reading it would otherwise allocate its name for each message.
    ///
    /// ```
    /// use tidewater_core::{wire, Headers};
    ///
    /// let mut h = Headers::new();
    /// let read = String::from("tw-event-type");
    /// h.insert_read(&read, "order.placed");
    /// h.insert_read("x-tenant", "eu");
    /// assert_eq!(h.get(wire::EVENT_TYPE), Some("order.placed"));
    /// assert_eq!(h.insert_read("x-tenant", "us"), Some("eu".to_owned()));
    /// ```
    pub fn insert_read(&mut self, name: &str, value: impl Into<String>) -> Option<String> {
        let name = match name {
            wire::EVENT_TYPE => Cow::Borrowed(wire::EVENT_TYPE),
            wire::CORRELATION_ID => Cow::Borrowed(wire::CORRELATION_ID),
            other => Cow::Owned(other.to_owned()),
        };
        self.set(name, Cow::Owned(value.into()))
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.position(name).ok().map(|i| &*self.entries()[i].1)
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.position(name).ok()?;
        let removed = match &mut self.0 {
            Entries::Many(many) => many.remove(i),
            entries => {
                let Entries::One([only]) = std::mem::take(entries) else { unreachable!("a found name has an entry") };
                only
            }
        };
        Some(removed.1.into_owned())
    }

    /// Whether `name` is set.
    #[inline]
    pub fn contains(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// The number of headers.
    #[inline]
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    /// The headers in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries().iter().map(|(k, v)| (&**k, &**v))
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.entries() == other.entries()
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut headers = Headers::new();
        headers.extend(iter);
        headers
    }
}

impl<K: Into<String>, V: Into<String>> Extend<(K, V)> for Headers {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

/// The content types most messages carry, kept as constants by
/// [`Message::set_content_type`].
const COMMON_CONTENT_TYPES: [&str; 6] = [
    "application/json",
    "application/octet-stream",
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-protobuf",
    "avro/binary",
];

/// One message: what a writer publishes and what a handler receives.
///
/// `stream` is the topic (Kafka, Pulsar, StreamBus) or subject (NATS) the message goes to.
/// The key decides the partition on partitioned brokers and so the order: messages with
/// the same key keep their order. It is bytes because Kafka and StreamBus keys are bytes;
/// drivers whose brokers carry text keys (NATS, Pulsar) reject a key that is not UTF-8
/// with an [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) error.
///
/// ```
/// use tidewater_core::Message;
///
/// let msg = Message::new("orders", r#"{"id":7}"#)
///     .with_key("customer-42")
///     .with_header("tenant", "acme")
///     .with_content_type("application/json");
/// assert_eq!(msg.stream, "orders");
/// assert_eq!(msg.key_str(), Some("customer-42"));
/// assert_eq!(msg.headers.get("tenant"), Some("acme"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// A unique id, set by the publisher's id factory. Empty until a writer or publisher fills it.
    pub id: MessageId,
    /// The topic or subject, shared with the other messages of the topic where the
    /// publisher or reader has the name at hand.
    pub stream: TopicName,
    /// The partition key, if any.
    pub key: Option<Bytes>,
    /// User headers.
    pub headers: Headers,
    /// The payload's media type, such as `application/json`. Set it with
    /// [`Message::with_content_type`] or [`Message::set_content_type`], which keep the
    /// common types as constants instead of a copy per message.
    pub content_type: Option<Cow<'static, str>>,
    /// The payload.
    pub payload: Bytes,
    /// When the message was created.
    pub timestamp: SystemTime,
}

impl Message {
    /// A message for `stream` with `payload`, no key, no headers and the current time.
    /// The id is left empty for the publisher to fill; set one with [`Message::with_id`].
    pub fn new(stream: impl Into<TopicName>, payload: impl Into<Bytes>) -> Self {
        Self {
            id: MessageId::empty(),
            stream: stream.into(),
            key: None,
            headers: Headers::new(),
            content_type: None,
            payload: payload.into(),
            timestamp: SystemTime::now(),
        }
    }

    /// Sets the id.
    pub fn with_id(mut self, id: impl Into<MessageId>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sets the content type.
    pub fn with_content_type(mut self, content_type: impl AsRef<str> + Into<String>) -> Self {
        self.set_content_type(content_type);
        self
    }

    /// Sets the content type. One of the common types (JSON, bytes, text, protobuf,
    /// Avro) is kept as a constant: a message naming it carries no copy.
    ///
    /// ```
    /// use std::borrow::Cow;
    /// use tidewater_core::Message;
    ///
    /// let mut m = Message::new("orders", "{}");
    /// m.set_content_type(String::from("application/json"));
    /// assert!(matches!(m.content_type, Some(Cow::Borrowed("application/json"))));
    /// m.set_content_type("application/vnd.acme+json");
    /// assert_eq!(m.content_type.as_deref(), Some("application/vnd.acme+json"));
    /// ```
    pub fn set_content_type(&mut self, content_type: impl AsRef<str> + Into<String>) {
        let known = COMMON_CONTENT_TYPES.iter().find(|c| **c == content_type.as_ref());
        self.content_type = Some(match known {
            Some(c) => Cow::Borrowed(c),
            None => Cow::Owned(content_type.into()),
        });
    }

    /// Sets the timestamp.
    pub fn with_timestamp(mut self, timestamp: SystemTime) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// The key as text, if it is set and is UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        self.key.as_deref().and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The payload size plus the sizes of key, id, headers and content type: what the
    /// message costs a broker, for size limits.
    pub fn encoded_len(&self) -> usize {
        self.payload.len()
            + self.key.as_ref().map_or(0, Bytes::len)
            + self.id.len()
            + self.content_type.as_ref().map_or(0, |c| c.len())
            + self.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names stay in order whatever the order of insertion, a name holds one value (the
    /// last set), and lookups find what sorting put anywhere.
    #[test]
    fn headers_keep_one_value_a_name_in_name_order() {
        let mut h: Headers = [("b", "1"), ("d", "2"), ("a", "3"), ("b", "4")].into_iter().collect();
        h.insert_static("c", "5");
        assert_eq!(h.iter().collect::<Vec<_>>(), [("a", "3"), ("b", "4"), ("c", "5"), ("d", "2")]);
        assert_eq!(h.len(), 4);
        assert_eq!(h.remove("b"), Some("4".to_owned()));
        assert_eq!(h.remove("b"), None);
        assert!(h.contains("a") && h.contains("c") && h.contains("d") && !h.contains("b"));
        assert_eq!(h.get("zz"), None);
        assert_eq!(h.insert("a", "6"), Some("3".to_owned()));
        assert_eq!(format!("{h:?}"), r#"{"a": "6", "c": "5", "d": "2"}"#);
        let same: Headers = [("d", "2"), ("c", "5"), ("a", "6")].into_iter().collect();
        assert_eq!(h, same, "equal whatever order they were set in");
    }

    /// One header is kept inline; a second moves both to a vector; equality and lookups
    /// do not depend on which.
    #[test]
    fn one_header_and_several_read_the_same() {
        let mut h = Headers::new();
        assert!(h.is_empty() && h.get("a").is_none() && h.remove("a").is_none());
        h.insert_static("b", "1");
        assert_eq!((h.len(), h.get("b")), (1, Some("1")));
        assert_eq!(h.insert("b", "2"), Some("1".to_owned()), "replaced in place");
        h.insert("a", "3");
        assert_eq!(h.iter().collect::<Vec<_>>(), [("a", "3"), ("b", "2")]);
        assert_eq!(h.remove("a"), Some("3".to_owned()));
        let mut single = Headers::new();
        single.insert("b", "2");
        assert_eq!(h, single, "a vector of one equals one kept inline");
        assert_eq!(single.remove("b"), Some("2".to_owned()));
        assert_eq!(single, Headers::new());
        assert!(single.is_empty());
    }
}
