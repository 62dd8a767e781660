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
use tidewater_core::{wire, Headers, Message, MessageId, TopicName};

use crate::reader::Copies;

/// The headers a record of `message` carries, as name and value: the message's own, then
/// its id (unless empty) and content type (if set). Both [`headers`] and [`wire_size`]
/// go by this one list, so the size checked is that of the headers sent.
fn record_headers(message: &Message) -> impl Iterator<Item = (&str, &str)> {
    let id = Some(message.id.as_str()).filter(|id| !id.is_empty()).map(|id| (wire::ID, id));
    let content_type = message.content_type.as_deref().map(|ct| (wire::CONTENT_TYPE, ct));
    message.headers.iter().chain(id).chain(content_type)
}

/// The headers of the record for `message`, whose own headers passed
/// [`wire::check_headers`].
pub(crate) fn headers(message: &Message) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(message.headers.len() + 2);
    for (name, value) in record_headers(message) {
        h = h.insert(Header { key: name, value: Some(value) });
    }
    h
}

/// The size librdkafka gives `message`'s record when it checks it against
/// `message.max.bytes`: the most a record's framing can take (36 bytes: its length,
/// attributes, timestamp and offset deltas, and the key, value and header counts as
/// varints of their widest), its key and payload, and each header as it is framed (name
/// and value, each after its zig-zag varint length). The same rule as librdkafka's
/// `rd_kafka_msg_max_wire_size`, so that the writer refuses a batch before queueing any
/// of it exactly when librdkafka would refuse one of its messages.
pub(crate) fn wire_size(message: &Message) -> usize {
    const FRAMING: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;
    let headers: usize = record_headers(message)
        .map(|(name, value)| name.len() + value.len() + varint_len(name.len()) + varint_len(value.len()))
        .sum();
    FRAMING + message.key.as_ref().map_or(0, |k| k.len()) + message.payload.len() + headers
}

/// The bytes of a length as a zig-zag varint: seven bits a byte, of twice the length.
fn varint_len(len: usize) -> usize {
    let bits = usize::BITS - (len << 1).leading_zeros();
    (bits as usize).div_ceil(7).max(1)
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
                    user.insert_read(name, value.into_owned());
                }
            }
        }
    }
    message.id =
        id.unwrap_or_else(|| MessageId::from_args(format_args!("{topic}-{}-{}", record.partition(), record.offset())));
    message.headers = user;
    message
}

#[cfg(test)]
mod tests {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _, PurgeConfig};
    use rdkafka::ClientConfig;

    use super::*;

    /// `wire_size` says of every message what librdkafka's own check says, at its limit
    /// and a byte either side: librdkafka checks a record's size as it queues it, with no
    /// broker, so a producer pointed at a closed port answers at once.
    #[test]
    fn wire_size_refuses_exactly_what_librdkafka_refuses() {
        const LIMIT: usize = 3000;
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("message.max.bytes", LIMIT.to_string())
            .create()
            .unwrap();
        let shapes: [fn(Message) -> Message; 5] = [
            |m| m,
            |m| m.with_key("k"),
            |m| m.with_id("an-id").with_content_type("application/json"),
            |m| m.with_key(vec![b'k'; 200]).with_header("tenant", "acme").with_header("h", "x".repeat(130)),
            |m| m.with_header("", ""),
        ];
        let (mut accepted, mut refused) = (0, 0);
        for shape in shapes {
            let overhead = wire_size(&shape(Message::new("t", Vec::new())));
            for payload in [LIMIT - overhead - 1, LIMIT - overhead, LIMIT - overhead + 1] {
                let message = shape(Message::new("t", vec![0u8; payload]));
                let mut record =
                    BaseRecord::<[u8], [u8]>::to("t").payload(&message.payload[..]).headers(headers(&message));
                if let Some(key) = &message.key {
                    record = record.key(&key[..]);
                }
                let taken = match producer.send(record) {
                    Ok(()) => true,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => false,
                    Err((err, _)) => panic!("queueing failed otherwise: {err}"),
                };
                assert_eq!(
                    wire_size(&message) <= LIMIT,
                    taken,
                    "{} bytes of payload, size {}",
                    payload,
                    wire_size(&message)
                );
                if taken {
                    accepted += 1
                } else {
                    refused += 1
                }
            }
        }
        assert_eq!((accepted, refused), (10, 5));
        producer.purge(PurgeConfig::default().queue());
    }

    #[test]
    fn varint_lengths_are_those_of_twice_the_length() {
        for (len, bytes) in [(0, 1), (63, 1), (64, 2), (8191, 2), (8192, 3)] {
            assert_eq!(varint_len(len), bytes, "{len}");
        }
    }
}
