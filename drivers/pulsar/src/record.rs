//! Message fields to Pulsar messages and back.
//!
//! | Message field | Pulsar message                                              |
//! |---------------|-------------------------------------------------------------|
//! | id            | property `tw-id`                                            |
//! | key           | partition key (Base64 and flagged if not UTF-8) and ordering key |
//! | content type  | property `tw-content-type`                                  |
//! | timestamp     | event time                                                  |
//! | headers       | properties, as they are                                     |

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use pulsar::consumer::Message as Received;
use pulsar::message::proto::MessageIdData;
use pulsar::producer::Message as Outgoing;
use tidewater_core::{wire, Error, ErrorKind, Headers, Message, MessageId, Result, TopicName};

use crate::DRIVER;

/// The property the pulsar crate's dead-letter policy sets to the topic a message failed on.
pub(crate) const DLQ_REAL_TOPIC: &str = "REAL_TOPIC";

/// Checks `message` against `max_bytes` and the reserved header names: what
/// [`to_pulsar`] needs to hold, so that a writer can check a whole batch before it sends
/// any of it.
pub(crate) fn check(message: &Message, max_bytes: usize) -> Result<()> {
    if message.payload.len() > max_bytes {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "{} has a payload of {} bytes; the limit is {max_bytes} (PulsarConfig::max_message_bytes, \
                 which should match the broker's maxMessageSize)",
                wire::which(message),
                message.payload.len()
            ),
        )
        .with_driver(DRIVER)
        .with_topic(message.stream.clone()));
    }
    wire::check_headers(message, DRIVER)
}

/// The Pulsar message for `message`, which [`check`] passed.
pub(crate) fn to_pulsar(message: &Message) -> Outgoing {
    let mut properties = HashMap::with_capacity(message.headers.len() + 2);
    for (name, value) in message.headers.iter() {
        properties.insert(name.to_owned(), value.to_owned());
    }
    if !message.id.is_empty() {
        properties.insert(wire::ID.to_owned(), message.id.to_string());
    }
    if let Some(ct) = &message.content_type {
        properties.insert(wire::CONTENT_TYPE.to_owned(), ct.to_string());
    }
    // Keys that are text travel as text, so other clients read them as they were
    // written; other keys travel in Base64 with the flag Pulsar has for that.
    let (partition_key, b64) = match message.key.as_deref().map(std::str::from_utf8) {
        None => (None, None),
        Some(Ok(text)) => (Some(text.to_owned()), None),
        Some(Err(_)) => {
            let key = message.key.as_deref().unwrap_or_default();
            (Some(base64::engine::general_purpose::STANDARD.encode(key)), Some(true))
        }
    };
    Outgoing {
        payload: message.payload.to_vec(),
        properties,
        partition_key,
        partition_key_b64_encoded: b64,
        ordering_key: message.key.as_ref().map(|k| k.to_vec()),
        event_time: Some(tidewater_core::unix_time::millis(message.timestamp)),
        ..Default::default()
    }
}

/// The id of a message from a client that set no `tw-id`: its Pulsar message id, the
/// same on every redelivery, so deduplication works on it.
pub(crate) fn fallback_id(topic: &str, id: &MessageIdData) -> MessageId {
    let (partition, batch_index) = (id.partition.unwrap_or(-1), id.batch_index.unwrap_or(-1));
    MessageId::from_args(format_args!("{topic}-{}:{}:{partition}:{batch_index}", id.ledger_id, id.entry_id))
}

/// A message from a received one, on tidewater topic `topic`. The time is the event
/// time, or the publish time when the sender set none. A key flagged as Base64 that does
/// not decode is kept as the text it is, with a warning, rather than dropped.
///
/// A message the pulsar crate's dead-letter policy moved here gets the dead-letter
/// middleware's headers too (original topic, recovery, error), so one DLQ consumer and
/// [`Redrive`](https://docs.rs/tidewater-middleware) handle both alike.
pub(crate) fn from_pulsar(topic: &TopicName, received: &mut Received<Vec<u8>>) -> Message {
    // The payload is taken, not copied: the received message is dropped right after, and a
    // copy held both for a moment, per message in the receiver queue's flow.
    let payload = Bytes::from(std::mem::take(&mut received.payload.data));
    let mut message = Message::new(topic, payload);
    // Like the payload, a text key is taken rather than copied: prost decodes a string of
    // 8 bytes or more without spare room, and such a string becomes `Bytes` without an
    // allocation.
    message.key = if !received.has_base64_encoded_key() {
        received.payload.metadata.partition_key.take().map(Bytes::from)
    } else {
        match received.key_bytes() {
            Ok(key) => key.map(Bytes::from),
            Err(err) => {
                tracing::warn!(topic = %topic, error = %err, "a message's key is flagged Base64 but does not decode; kept as text");
                received.payload.metadata.partition_key.take().map(Bytes::from)
            }
        }
    };
    let meta = received.metadata();
    let ms = meta.event_time.filter(|t| *t > 0).unwrap_or(meta.publish_time);
    message.timestamp = UNIX_EPOCH + Duration::from_millis(ms);
    let mut id = None;
    let mut headers = Headers::new();
    for kv in &meta.properties {
        match kv.key.as_str() {
            wire::ID => id = Some(MessageId::from(kv.value.as_str())),
            wire::CONTENT_TYPE => message.set_content_type(kv.value.as_str()),
            name => {
                headers.insert_read(name, kv.value.as_str());
            }
        }
    }
    if let Some(real) = headers.get(DLQ_REAL_TOPIC).map(short_topic) {
        use dead_letter_headers as dlq;
        if headers.get(dlq::ORIGINAL_TOPIC).is_none() {
            headers.insert(dlq::ORIGINAL_TOPIC, real);
            headers.insert(dlq::RECOVERY, "transient");
            headers.insert(dlq::ERROR, "redelivered up to the Pulsar dead-letter policy's limit");
            if let Some(key) = message.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) {
                headers.insert(dlq::ORIGINAL_KEY, key);
            }
        }
    }
    message.id = id.unwrap_or_else(|| fallback_id(topic, received.message_id()));
    message.headers = headers;
    message
}

/// The header names of tidewater's dead-letter middleware, kept here so this crate does
/// not depend on the middleware crate. A test checks they match.
pub mod dead_letter_headers {
    /// The topic the message failed on.
    pub const ORIGINAL_TOPIC: &str = "tw-dlq-original-topic";
    /// The key of the failed message, when it is text.
    pub const ORIGINAL_KEY: &str = "tw-dlq-original-key";
    /// Why the message failed.
    pub const ERROR: &str = "tw-dlq-error";
    /// `transient` or `permanent`.
    pub const RECOVERY: &str = "tw-dlq-recovery";
}

/// `orders` from `persistent://public/default/orders` (and from `orders-partition-2`).
pub(crate) fn short_topic(full: &str) -> String {
    let name = full.rsplit('/').next().unwrap_or(full);
    match name.rfind("-partition-") {
        Some(at) if name[at + "-partition-".len()..].bytes().all(|b| b.is_ascii_digit()) => name[..at].to_owned(),
        _ => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_topic_drops_the_namespace_and_partition_suffix() {
        assert_eq!(short_topic("persistent://public/default/orders"), "orders");
        assert_eq!(short_topic("persistent://public/default/orders-partition-2"), "orders");
        assert_eq!(short_topic("orders-partition-x"), "orders-partition-x");
        assert_eq!(short_topic("orders"), "orders");
    }

    #[test]
    fn keys_that_are_not_text_travel_in_base64() {
        let mut m = Message::new("t", Bytes::from_static(b"x"));
        m.key = Some(Bytes::from_static(&[0xff, 0x00]));
        let out = to_pulsar(&m);
        assert_eq!(out.partition_key.as_deref(), Some("/wA="));
        assert_eq!(out.partition_key_b64_encoded, Some(true));
        assert_eq!(out.ordering_key.as_deref(), Some(&[0xff, 0x00][..]));
        m.key = Some(Bytes::from_static(b"k"));
        let out = to_pulsar(&m);
        assert_eq!((out.partition_key.as_deref(), out.partition_key_b64_encoded), (Some("k"), None));
    }

    fn received(key: &str, b64: Option<bool>) -> Received<Vec<u8>> {
        use pulsar::consumer::data::MessageData;
        use pulsar::message::proto::MessageMetadata;
        let metadata = MessageMetadata {
            partition_key: Some(key.to_owned()),
            partition_key_b64_encoded: b64,
            publish_time: 1,
            ..Default::default()
        };
        let id =
            MessageData { id: MessageIdData { ledger_id: 1, entry_id: 2, ..Default::default() }, batch_size: None };
        Received::new("persistent://public/default/t", id, pulsar::Payload { metadata, data: b"x".to_vec() })
    }

    #[test]
    fn a_received_text_key_is_taken_not_copied() {
        let topic = TopicName::from("t");
        let mut text = received("order-0001", None);
        let at = text.payload.metadata.partition_key.as_deref().map(str::as_ptr);
        let message = from_pulsar(&topic, &mut text);
        assert_eq!(message.key.as_deref(), Some(&b"order-0001"[..]));
        assert_eq!(message.key.as_deref().map(<[u8]>::as_ptr), at, "the key's own bytes, not a copy");

        let mut flagged = received("/wA=", Some(true));
        assert_eq!(from_pulsar(&topic, &mut flagged).key.as_deref(), Some(&[0xff, 0x00][..]));
        let mut broken = received("not!!base64", Some(true));
        assert_eq!(from_pulsar(&topic, &mut broken).key.as_deref(), Some(&b"not!!base64"[..]), "kept as text");
    }

    #[test]
    fn oversize_and_reserved_headers_are_refused() {
        let m = Message::new("t", Bytes::from(vec![0u8; 11]));
        let err = check(&m, 10).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        assert!(err.to_string().contains("a message with no id has a payload of 11 bytes"), "{err}");
        let err = check(&m.clone().with_id("o-17"), 10).unwrap_err();
        assert!(err.to_string().contains("message o-17 has a payload of 11 bytes"), "{err}");
        assert!(check(&m, 11).is_ok());
        let mut m = Message::new("t", Bytes::from_static(b"x"));
        m.headers.insert(wire::ID, "x");
        assert_eq!(check(&m, 10).unwrap_err().kind(), ErrorKind::InvalidInput);
    }
}
