//! Message fields to Kafka records and back.
//!
//! | Message field | Kafka record                         |
//! |---------------|--------------------------------------|
//! | id            | header `tw-id`                       |
//! | key           | the record key                       |
//! | content type  | header `tw-content-type`             |
//! | timestamp     | the record timestamp (create time)   |
//! | headers       | headers, as they are                 |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::message::{BorrowedMessage, Header, Headers as _, OwnedHeaders};
use rdkafka::Message as _;
use tidewater_core::{wire, Headers, Message, MessageId, Result, TopicName};

use crate::reader::Copies;
use crate::DRIVER;

/// The headers of the record for `message`.
pub(crate) fn headers(message: &Message) -> Result<OwnedHeaders> {
    wire::check_headers(message, DRIVER)?;
    let mut h = OwnedHeaders::new_with_capacity(message.headers.len() + 2);
    for (name, value) in message.headers.iter() {
        h = h.insert(Header { key: name, value: Some(value) });
    }
    if !message.id.is_empty() {
        h = h.insert(Header { key: wire::ID, value: Some(message.id.as_str()) });
    }
    if let Some(ct) = &message.content_type {
        h = h.insert(Header { key: wire::CONTENT_TYPE, value: Some(&**ct) });
    }
    Ok(h)
}

/// The record timestamp for `message`: milliseconds since the Unix epoch.
pub(crate) fn timestamp(message: &Message) -> i64 {
    tidewater_core::unix_time::millis(message.timestamp) as i64
}

/// A message from a fetched record of `topic`. What a plain client did not send comes
/// from the record: the id is `<topic>-<partition>-<offset>`, stable across redeliveries
/// so deduplication works; header values that are not UTF-8 are read lossily, and a null
/// header value reads as empty.
///
/// `topic` is the record's: a reader subscribes to its one topic by name (a valid name
/// has no `^`, which would make it a pattern), so the record's own name is not read. That
/// read measures the C string and checks it as UTF-8, about 200 instructions a record.
pub(crate) fn from_record(topic: &TopicName, record: &BorrowedMessage<'_>, copies: &mut Copies) -> Message {
    let (key, payload) = copies.copy_record(record.key(), record.payload().unwrap_or_default());
    // Built whole rather than with `Message::new`, which reads the clock for a timestamp
    // the record's then replaces.
    let mut message = Message {
        id: MessageId::empty(),
        // The reader's one topic, shared, rather than a copy of the record's name apiece.
        stream: topic.clone(),
        key,
        headers: Headers::new(),
        content_type: None,
        payload,
        timestamp: record
            .timestamp()
            .to_millis()
            .filter(|ms| *ms >= 0)
            .map_or_else(SystemTime::now, |ms| UNIX_EPOCH + Duration::from_millis(ms as u64)),
    };
    let mut id = None;
    let mut user = Headers::new();
    if let Some(headers) = record.headers() {
        for header in headers.iter() {
            let value = header.value.map(wire::text).unwrap_or_default();
            match header.key {
                wire::ID => id = Some(MessageId::from(&*value)),
                wire::CONTENT_TYPE => message.set_content_type(value),
                name => {
                    user.insert(name, value.into_owned());
                }
            }
        }
    }
    message.id = id.unwrap_or_else(|| format!("{topic}-{}-{}", record.partition(), record.offset()).into());
    message.headers = user;
    message
}
