//! Messages to StreamBus records and back, with the value envelope for brokers that
//! drop headers and timestamps.
//!
//! | Message field | later broker (no envelope)   | with the envelope                  |
//! |---------------|------------------------------|------------------------------------|
//! | id            | header `tw-id`               | header `tw-id` in the envelope     |
//! | key           | the record key               | the record key                     |
//! | content type  | header `tw-content-type`     | in the envelope                    |
//! | timestamp     | record timestamp (ns)        | in the envelope (and the record)   |
//! | headers       | headers, as they are         | in the envelope                    |
//!
//! **The envelope** is the value: the 4 magic bytes `F5 54 57 01` (`0xF5` never starts
//! valid UTF-8, so a text or JSON payload cannot be mistaken for it; `01` is the
//! version), the timestamp as big-endian `i64` Unix nanoseconds, a `u32` header count,
//! each header as `u32` length + name and `u32` length + value, then the payload, to
//! the end of the value. Readers unwrap any value that starts with the magic and
//! parses; anything else is a raw value.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use tidewater_core::{names, wire, Headers, Message, MessageId, Result, TopicName};

use crate::protocol::primitives::{put_bytes, Cursor};
use crate::protocol::Record;
use crate::DRIVER;

/// The first bytes of an enveloped value.
pub const ENVELOPE_MAGIC: [u8; 4] = [0xF5, 0x54, 0x57, 0x01];

/// Checks a topic name: the broker uses it as a directory name, so it must not hold a
/// `/` or be `..` (tidewater's shared rules allow only `[A-Za-z0-9._-]`).
pub(crate) fn check_topic(topic: &str) -> Result<()> {
    names::check_topic(topic).map_err(|e| e.with_driver(DRIVER))
}

fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn time(nanos: i64) -> Option<SystemTime> {
    (nanos > 0).then(|| UNIX_EPOCH + Duration::from_nanos(nanos as u64))
}

/// Name and value of every header the record carries for `message`.
fn all_headers(message: &Message) -> Result<Vec<(String, Bytes)>> {
    wire::check_headers(message, DRIVER)?;
    let mut headers = Vec::with_capacity(message.headers.len() + 2);
    for (name, value) in message.headers.iter() {
        headers.push((name.to_owned(), Bytes::copy_from_slice(value.as_bytes())));
    }
    if !message.id.is_empty() {
        headers.push((wire::ID.to_owned(), Bytes::copy_from_slice(message.id.as_bytes())));
    }
    if let Some(ct) = &message.content_type {
        headers.push((wire::CONTENT_TYPE.to_owned(), Bytes::copy_from_slice(ct.as_bytes())));
    }
    Ok(headers)
}

/// The record for `message`, its metadata in headers or, with `envelope`, in the value.
pub(crate) fn to_record(message: &Message, envelope: bool) -> Result<Record> {
    let headers = all_headers(message)?;
    let timestamp = nanos(message.timestamp);
    let key = message.key.clone().unwrap_or_default();
    if !envelope {
        return Ok(Record { offset: 0, timestamp, key, value: message.payload.clone(), headers });
    }
    let size = 16 + headers.iter().map(|(k, v)| 8 + k.len() + v.len()).sum::<usize>() + message.payload.len();
    let mut value = BytesMut::with_capacity(size);
    value.put_slice(&ENVELOPE_MAGIC);
    value.put_i64(timestamp);
    value.put_u32(headers.len() as u32);
    for (k, v) in &headers {
        put_bytes(&mut value, k.as_bytes());
        put_bytes(&mut value, v);
    }
    value.put_slice(&message.payload);
    Ok(Record { offset: 0, timestamp, key, value: value.freeze(), headers: Vec::new() })
}

/// What an envelope holds: timestamp (Unix ns), headers and payload.
type Opened = (i64, Vec<(String, Bytes)>, Bytes);

/// Opens an envelope, or gives `None` if `value` is not one.
fn open_envelope(value: &Bytes) -> Option<Opened> {
    if !value.starts_with(&ENVELOPE_MAGIC) {
        return None;
    }
    let mut c = Cursor::new(value.slice(4..));
    let timestamp = c.i64("envelope time").ok()?;
    let count = c.count("envelope headers", 8).ok()?;
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        headers.push((c.string("envelope header").ok()?, c.bytes("envelope value").ok()?));
    }
    let start = value.len() - c.remaining();
    Some((timestamp, headers, value.slice(start..)))
}

/// A message from a fetched record. What the record does not carry comes from its
/// place: the id is `<topic>-<partition>-<offset>` (stable across redeliveries, so
/// deduplication works) and the time is the fetch time.
pub(crate) fn from_record(topic: &TopicName, partition: u32, record: Record) -> Message {
    let (timestamp, headers, payload) = match open_envelope(&record.value) {
        Some(opened) => opened,
        None => (record.timestamp, record.headers, record.value),
    };
    let mut message = Message::new(topic, payload);
    message.key = (!record.key.is_empty()).then_some(record.key);
    message.timestamp = time(timestamp).unwrap_or_else(SystemTime::now);
    let mut id = None;
    let mut user = Headers::new();
    for (name, value) in headers {
        // Borrowed where it can be: an id is kept inline and a content type may be a
        // shared one, so only a user header needs a string of its own.
        let value = wire::text(&value);
        match name.as_str() {
            wire::ID => id = Some(MessageId::from(&*value)),
            wire::CONTENT_TYPE => message.set_content_type(value),
            _ => {
                user.insert(name, value.into_owned());
            }
        }
    }
    message.id = id.unwrap_or_else(|| MessageId::from_args(format_args!("{topic}-{partition}-{}", record.offset)));
    message.headers = user;
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::ErrorKind;

    fn message() -> Message {
        Message::new("orders", "payload")
            .with_id("id-1")
            .with_key("k")
            .with_header("h", "v")
            .with_content_type("application/json")
            .with_timestamp(UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789))
    }

    #[test]
    fn both_forms_round_trip() {
        for envelope in [false, true] {
            let mut record = to_record(&message(), envelope).unwrap();
            record.offset = 7;
            let back = from_record(&"orders".into(), 0, record);
            let m = message();
            assert_eq!((back.id, back.key, back.payload), (m.id, m.key, m.payload));
            assert_eq!((back.headers, back.content_type, back.timestamp), (m.headers, m.content_type, m.timestamp));
        }
    }

    #[test]
    fn the_envelope_survives_a_broker_that_drops_headers_and_time() {
        let mut record = to_record(&message(), true).unwrap();
        record.headers.clear();
        record.timestamp = -6_795_364_578_871_345_152;
        let back = from_record(&"orders".into(), 0, record);
        assert_eq!(back.id, "id-1");
        assert_eq!(back.headers.get("h"), Some("v"));
        assert_eq!(back.timestamp, message().timestamp);
    }

    #[test]
    fn a_raw_value_stays_raw() {
        for value in [&b"{\"json\":1}"[..], &[0xF5, 0x54, 0x57, 0x01, 0x00][..], b""] {
            let record = Record { offset: 3, value: Bytes::copy_from_slice(value), ..Default::default() };
            let back = from_record(&"t".into(), 2, record);
            assert_eq!(&back.payload[..], value, "a value that is no envelope is the payload");
            assert_eq!(back.id, "t-2-3");
            assert_eq!(back.key, None);
        }
    }

    #[test]
    fn reserved_headers_are_refused() {
        let m = Message::new("t", "x").with_header(wire::ID, "forged");
        assert_eq!(to_record(&m, false).unwrap_err().kind(), ErrorKind::InvalidInput);
    }
}
