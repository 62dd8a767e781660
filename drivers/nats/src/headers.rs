//! Message fields to NATS headers and back.
//!
//! | Message field  | NATS header      | why this name |
//! |----------------|------------------|---------------|
//! | id             | `Nats-Msg-Id`    | JetStream de-duplicates publishes by it |
//! | key            | `tw-key`         | NATS has no key of its own |
//! | content type   | `Content-Type`   | what any client would look for |
//! | timestamp      | `tw-time`        | milliseconds since the Unix epoch; left out when the id is a UUIDv7 made in the same millisecond, which carries it |
//! | headers        | as they are      | |
//!
//! A dead letter and a message written back by `Redrive` carry the id of the message
//! they stand for, which JetStream would drop as a repeat while its duplicate window
//! (2 minutes by default) still holds the original, acknowledging it all the same. They
//! go out with a `Nats-Msg-Id` of their own, and the id in `tw-id`, which a reader takes
//! before `Nats-Msg-Id`: `<id>:dead-letter:<ms>`, with the message's first failure, the
//! same on every try to write that dead letter, so the server still drops a retried
//! write of it; or `<id>:redrive:<ms>`, with the dead letter's last failure, the same on
//! every redrive of that dead letter.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::{HeaderMap, HeaderName};
use bytes::Bytes;
use tidewater_core::dead_letter::headers::{FIRST_FAILURE, REDRIVEN};
use tidewater_core::id::uuid_v7_millis;
use tidewater_core::{wire, Error, ErrorKind, Headers, Message, MessageId, Result, TopicName};

use crate::DRIVER;

pub(crate) const MSG_ID: &str = "Nats-Msg-Id";
pub(crate) const CONTENT_TYPE: &str = "Content-Type";

const RESERVED: [&str; 5] = [MSG_ID, wire::ID, wire::KEY, CONTENT_TYPE, wire::TIMESTAMP];

// As header names made once: a name made from a `&str` is checked and copied each time.
const MSG_ID_NAME: HeaderName = HeaderName::from_static(MSG_ID);
const ID_NAME: HeaderName = HeaderName::from_static(wire::ID);
const KEY_NAME: HeaderName = HeaderName::from_static(wire::KEY);
const CONTENT_TYPE_NAME: HeaderName = HeaderName::from_static(CONTENT_TYPE);
const TIMESTAMP_NAME: HeaderName = HeaderName::from_static(wire::TIMESTAMP);
const EVENT_TYPE_NAME: HeaderName = HeaderName::from_static(wire::EVENT_TYPE);
const CORRELATION_ID_NAME: HeaderName = HeaderName::from_static(wire::CORRELATION_ID);

fn invalid(message: &Message, what: String) -> Error {
    Error::new(ErrorKind::InvalidInput, what).with_driver(DRIVER).with_topic(message.stream.clone())
}

fn check_value(message: &Message, name: &str, value: &str) -> Result<()> {
    if has_line_break(value.as_bytes()) {
        return Err(invalid(message, format!("header {name:?} of {} contains a line break", wire::which(message))));
    }
    Ok(())
}

/// Whether `bytes` holds a carriage return or a line feed, which would end a header line
/// early. Eight bytes at a time: this runs on each header value of each publish, and a
/// byte loop took about 200 instructions a message for a 24-byte content type alone
/// (callgrind; `contains` with a pattern of chars, a few hundred for a 36-byte id).
fn has_line_break(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // The usual test for a zero byte in a word: its answer for a byte above the first
    // zero one may be wrong, but for the word as a whole it is exact.
    let has_zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS != 0;
    let has_either =
        |word: u64| has_zero(word ^ u64::from_ne_bytes([b'\r'; 8])) || has_zero(word ^ u64::from_ne_bytes([b'\n'; 8]));
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        if has_either(u64::from_ne_bytes(word.try_into().expect("eight bytes"))) {
            return true;
        }
    }
    words.remainder().iter().any(|&b| b == b'\r' || b == b'\n')
}

/// What a connection leaves out of the headers it sends, and takes for granted in the
/// messages it reads: by default nothing (see `NatsCore::without_message_ids` and
/// `NatsCore::with_implied_content_type`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Implied {
    /// Send no id, nor the time, which tidewater's ids carry; a reader makes both when a
    /// message arrives, as for a plain client's message.
    pub(crate) no_ids: bool,
    /// The content type of a message that has no `Content-Type` header: one that has
    /// this type is sent without the header.
    pub(crate) content_type: Option<Cow<'static, str>>,
}

impl Implied {
    /// The content type of `message` that goes as a header: none when it has none or
    /// has the implied one.
    fn sent_type<'a>(&self, message: &'a Message) -> Option<&'a str> {
        message.content_type.as_deref().filter(|ct| Some(*ct) != self.content_type.as_deref())
    }
}

/// The NATS headers for `message`, without what `implied` leaves out.
pub(crate) fn to_nats(message: &Message, implied: &Implied) -> Result<HeaderMap> {
    let (mut h, again) = all_but_id(message, implied)?;
    if !message.id.is_empty() && !implied.no_ids {
        match again {
            None => h.insert(MSG_ID_NAME, message.id.as_str()),
            Some(Again { what, at }) => {
                h.insert(MSG_ID_NAME, format!("{}:{what}:{at}", message.id));
                h.insert(ID_NAME, message.id.as_str());
            }
        }
    }
    Ok(h)
}

/// A message that is written again under its id: a dead letter, with its first failure,
/// or one redriven from the dead-letter topic, with the dead letter's last failure.
struct Again<'a> {
    what: &'static str,
    at: &'a str,
}

/// The NATS headers for `message`, or `None` when `implied` leaves none to send: then
/// nothing needs checking either, and no header map is made and dropped (about a tenth
/// of what tidewater adds to a core publish with no headers, by callgrind).
pub(crate) fn to_send(message: &Message, implied: &Implied) -> Result<Option<HeaderMap>> {
    if implied.no_ids && implied.sent_type(message).is_none() && message.headers.is_empty() && message.key.is_none() {
        return Ok(None);
    }
    to_nats(message, implied).map(Some)
}

/// The subject, NATS headers and payload of `message`, without what `implied` leaves out.
pub(crate) fn into_nats(message: Message, implied: &Implied) -> Result<(TopicName, HeaderMap, Bytes)> {
    let h = to_nats(&message, implied)?;
    Ok((message.stream, h, message.payload))
}

/// The headers of `message` but its id, which is checked when it is sent, and but what
/// `implied` leaves out; and whether it is written again under its id.
fn all_but_id<'a>(message: &'a Message, implied: &Implied) -> Result<(HeaderMap, Option<Again<'a>>)> {
    let mut h = HeaderMap::new();
    let (mut dead_letter, mut redriven) = (None, None);
    for (name, value) in message.headers.iter() {
        let valid_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !valid_name || RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err(invalid(message, format!("{name:?} cannot be a NATS header name of {}", wire::which(message))));
        }
        check_value(message, name, value)?;
        // Tidewater's own names, which typed messages carry, as the names made once.
        match name {
            wire::EVENT_TYPE => h.insert(EVENT_TYPE_NAME, value),
            wire::CORRELATION_ID => h.insert(CORRELATION_ID_NAME, value),
            _ => {
                if name == FIRST_FAILURE {
                    dead_letter = Some(value);
                } else if name == REDRIVEN {
                    redriven = Some(value);
                }
                h.insert(name, value)
            }
        }
    }
    // A redriven message that failed again keeps its redrive header in its dead letter:
    // the dead-lettering is the later write.
    let again = match (dead_letter, redriven) {
        (Some(at), _) => Some(Again { what: "dead-letter", at }),
        (None, Some(at)) => Some(Again { what: "redrive", at }),
        (None, None) => None,
    };
    if let Some(key) = &message.key {
        let key = std::str::from_utf8(key).map_err(|_| {
            invalid(message, format!("the key of {} is not UTF-8; NATS headers carry text", wire::which(message)))
        })?;
        check_value(message, wire::KEY, key)?;
        h.insert(KEY_NAME, key);
    }
    if let Some(ct) = implied.sent_type(message) {
        check_value(message, CONTENT_TYPE, ct)?;
        h.insert(CONTENT_TYPE_NAME, ct);
    }
    if implied.no_ids {
        return Ok((h, again));
    }
    // A UUIDv7 id (tidewater's default) parses as 36 hex digits and hyphens, so it needs
    // no search for line breaks.
    let id_millis = message.id.uuid_v7_millis();
    if id_millis.is_none() {
        check_value(message, MSG_ID, &message.id)?;
    }
    let millis = tidewater_core::unix_time::millis(message.timestamp);
    // A UUIDv7 id (tidewater's default) made in the same millisecond holds the time
    // already. Leaving the header out then saves a fifth of a core publish's work (a
    // header costs an allocation, a hash and a parse on each side).
    if id_millis != Some(millis) {
        h.insert(TIMESTAMP_NAME, millis.to_string());
    }
    Ok((h, again))
}

/// The bytes the server counts against its `max_payload` for a message: the header block
/// as the client writes it (`NATS/1.0`, a line per value, a blank line) and the payload.
pub(crate) fn wire_size(headers: &HeaderMap, payload: usize) -> usize {
    if headers.is_empty() {
        return payload;
    }
    let lines: usize = headers
        .iter()
        .map(|(name, values)| {
            let name: &str = name.as_ref();
            values.iter().map(|v| name.len() + ": ".len() + v.as_str().len() + "\r\n".len()).sum::<usize>()
        })
        .sum();
    "NATS/1.0\r\n".len() + lines + "\r\n".len() + payload
}

/// Checks the messages of a batch against the server's `max_payload` before any is sent,
/// so that a batch with an oversize message writes none; `sizes` gives each message's
/// [`wire_size`] and message.
pub(crate) fn check_sizes<'a>(max: usize, sizes: impl IntoIterator<Item = (usize, &'a Message)>) -> Result<()> {
    for (i, (size, message)) in sizes.into_iter().enumerate() {
        if size > max {
            let which = wire::in_batch(i, message);
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "{which} is {size} bytes with its headers; the server takes at most {max} (its max_payload), so nothing of the batch was sent"
                ),
            )
            .with_driver(DRIVER)
            .with_topic(&*message.stream));
        }
    }
    Ok(())
}

/// The name of a message read on `subject` by a subscription to `subscribed`: the
/// subscription's shared name where they are the same (no wildcard), else a copy.
pub(crate) fn topic_of(subscribed: &TopicName, subject: &str) -> TopicName {
    if **subscribed == *subject {
        subscribed.clone()
    } else {
        TopicName::from(subject)
    }
}

/// A message from a NATS message. The time is `tw-time`, else the millisecond of a
/// UUIDv7 id; fields a plain client did not send come from the fallbacks: the broker's id
/// and time where it has them; with no time, now; with no content type, the implied one.
pub(crate) fn from_nats(
    subject: impl Into<TopicName>,
    headers: Option<&HeaderMap>,
    payload: Bytes,
    fallback_id: impl FnOnce() -> MessageId,
    fallback_time: Option<SystemTime>,
    implied_content_type: Option<&Cow<'static, str>>,
) -> Message {
    // One pass over the headers, rather than a lookup for each field: a lookup hashes
    // the name with SipHash, and four of them cost more than the rest of this function.
    // Names match without regard to case, as HTTP-style header names do.
    let (mut id, mut tw_id, mut key, mut content_type, mut time) = (None, None, None, None, None);
    let mut user = Headers::new();
    for (name, values) in headers.into_iter().flat_map(HeaderMap::iter) {
        let name: &str = name.as_ref();
        let (Some(first), Some(last)) = (values.first(), values.last()) else { continue };
        if is(name, MSG_ID) {
            id = Some(first.as_str());
        } else if is(name, wire::ID) {
            tw_id = Some(first.as_str());
        } else if is(name, wire::KEY) {
            key = Some(first.as_str());
        } else if is(name, CONTENT_TYPE) {
            content_type = Some(first.as_str());
        } else if is(name, wire::TIMESTAMP) {
            time = Some(first.as_str());
        } else {
            user.insert_read(name, last.as_str());
        }
    }
    let id = tw_id.or(id);
    let timestamp = time
        .and_then(|ms| ms.parse::<u64>().ok())
        .or_else(|| id.and_then(uuid_v7_millis))
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
        .or(fallback_time)
        .unwrap_or_else(SystemTime::now);
    let mut message = Message {
        id: id.map_or_else(fallback_id, MessageId::from),
        stream: subject.into(),
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        headers: user,
        content_type: None,
        payload,
        timestamp,
    };
    match content_type {
        Some(content_type) => message.set_content_type(content_type),
        None => message.content_type = implied_content_type.cloned(),
    }
    message
}

/// Whether header `name` is `wanted`, in any case. Names nearly always arrive spelt as
/// sent, which a comparison of bytes finds at once: folding case byte by byte first cost
/// 174 instructions a message for the two names a tidewater message carries (callgrind).
fn is(name: &str, wanted: &str) -> bool {
    name == wanted || name.eq_ignore_ascii_case(wanted)
}

/// Whether `subject` is dot-separated tokens, none empty, `*` or `>`, with no white space
/// or control characters. One pass over the bytes: this runs on every publish, and
/// splitting into tokens first cost about 800 instructions for a 20-byte subject.
fn valid_subject(subject: &[u8]) -> bool {
    let mut token_start = 0;
    for (i, &b) in subject.iter().enumerate() {
        if b.is_ascii_whitespace() || b.is_ascii_control() {
            return false;
        }
        if b == b'.' {
            if !valid_token(&subject[token_start..i]) {
                return false;
            }
            token_start = i + 1;
        }
    }
    valid_token(&subject[token_start..])
}

fn valid_token(token: &[u8]) -> bool {
    !token.is_empty() && token != b"*" && token != b">"
}

/// Checks a subject to publish to: dot-separated tokens, no wildcards, no white space.
pub(crate) fn check_subject(subject: &str) -> Result<()> {
    if valid_subject(subject.as_bytes()) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidName,
            format!(
                "{subject:?} is not a NATS subject to publish to: use dot-separated tokens without spaces or wildcards"
            ),
        )
        .with_driver(DRIVER))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dead letter and a redriven message go out under a `Nats-Msg-Id` of their own,
    /// so that JetStream does not drop them as repeats of the original, and are read back
    /// with the original's id.
    #[test]
    fn messages_written_again_have_a_publish_id_of_their_own() {
        let original = Message::new("orders", "p").with_id("id-1").with_header("tenant", "acme");
        let plain = to_nats(&original, &Implied::default()).unwrap();
        assert!(plain.get(wire::ID).is_none(), "a message written once needs no second id");
        let dead = original.clone().with_header(FIRST_FAILURE, "1700000000123").with_header(REDRIVEN, "1600000000000");
        let redriven = original.clone().with_header(REDRIVEN, "1700000000123");
        for (message, publish_id) in
            [(dead, "id-1:dead-letter:1700000000123"), (redriven, "id-1:redrive:1700000000123")]
        {
            let h = to_nats(&message, &Implied::default()).unwrap();
            assert_eq!(h.get(MSG_ID).unwrap().as_str(), publish_id);
            assert_eq!(h.get(wire::ID).unwrap().as_str(), "id-1");
            let got = from_nats("orders", Some(&h), message.payload.clone(), || unreachable!(), None, None);
            assert_eq!(got.id, "id-1");
            assert_eq!(got.headers, message.headers, "tw-id is not a header of the message");
        }
        let taken = original.with_header(wire::ID, "x");
        assert_eq!(to_nats(&taken, &Implied::default()).unwrap_err().kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn fields_survive_the_round_trip() {
        let sent = Message::new("orders.eu", "p")
            .with_id("id-1")
            .with_key("k")
            .with_content_type("application/json")
            .with_header("tenant", "acme");
        let h = to_nats(&sent, &Implied::default()).unwrap();
        assert_eq!(h.get(MSG_ID).unwrap().as_str(), "id-1");
        let got = from_nats("orders.eu", Some(&h), sent.payload.clone(), || unreachable!(), None, None);
        assert_eq!(got.id, "id-1");
        assert_eq!(got.key_str(), Some("k"));
        assert_eq!(got.content_type.as_deref(), Some("application/json"));
        assert_eq!(got.headers, sent.headers);
        let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis();
        assert_eq!(ms(got.timestamp), ms(sent.timestamp));
    }

    #[test]
    fn a_uuid_v7_id_carries_the_time() {
        use tidewater_core::{IdFactory, UuidV7Ids};
        let id = UuidV7Ids.next_id();
        let ms = uuid_v7_millis(&id).unwrap();
        let at = UNIX_EPOCH + Duration::from_millis(ms) + Duration::from_micros(250);
        let mut sent = Message::new("orders", "p").with_id(id.clone());
        sent.timestamp = at;
        let h = to_nats(&sent, &Implied::default()).unwrap();
        assert!(h.get(wire::TIMESTAMP).is_none(), "the id holds the time");
        let got = from_nats("orders", Some(&h), Bytes::new(), || unreachable!(), Some(UNIX_EPOCH), None);
        assert_eq!(got.timestamp, UNIX_EPOCH + Duration::from_millis(ms));

        // A time the id does not hold is sent.
        sent.timestamp = at + Duration::from_secs(3600);
        let h = to_nats(&sent, &Implied::default()).unwrap();
        assert_eq!(h.get(wire::TIMESTAMP).unwrap().as_str(), (ms + 3_600_000).to_string());
        let got = from_nats("orders", Some(&h), Bytes::new(), || unreachable!(), Some(UNIX_EPOCH), None);
        assert_eq!(got.timestamp, UNIX_EPOCH + Duration::from_millis(ms + 3_600_000));
    }

    #[test]
    fn headers_of_a_plain_client_are_read() {
        let mut h = HeaderMap::new();
        h.insert("nats-msg-id", "abc");
        h.insert("TW-TIME", "1000");
        h.insert("content-TYPE", "text/plain");
        h.append("trace", "1");
        h.append("trace", "2");
        let got = from_nats("s", Some(&h), Bytes::new(), || unreachable!(), None, None);
        assert_eq!(got.id, "abc");
        assert_eq!(got.timestamp, UNIX_EPOCH + Duration::from_secs(1));
        assert_eq!(got.content_type.as_deref(), Some("text/plain"));
        assert_eq!(got.headers.get("trace"), Some("2"));
        assert_eq!(got.headers.iter().count(), 1);

        let before = SystemTime::now();
        let bare = from_nats("s", None, Bytes::new(), || "fallback".into(), None, None);
        assert_eq!(bare.id, "fallback");
        assert!(bare.timestamp >= before);
        assert!(bare.key.is_none() && bare.content_type.is_none());
    }

    #[test]
    fn no_header_map_is_made_exactly_when_none_would_be_sent() {
        use tidewater_core::{IdFactory, UuidV7Ids};
        let json = Implied { no_ids: true, content_type: Some(Cow::Borrowed("application/json")) };
        let plain = Message::new("orders", "p").with_id(UuidV7Ids.next_id()).with_content_type("application/json");
        let untyped = Message::new("orders", "p").with_id(UuidV7Ids.next_id());
        let ids_only = Implied { no_ids: true, content_type: None };
        let defaults = Implied::default();
        let cases = [
            (&plain, &json),
            (&untyped, &json),
            (&untyped, &ids_only),
            (&plain, &ids_only),
            (&plain, &defaults),
            (&plain.clone().with_content_type("text/plain"), &json),
            (&plain.clone().with_key("k"), &json),
            (&plain.clone().with_header("tenant", "acme"), &json),
        ];
        for (i, (message, implied)) in cases.into_iter().enumerate() {
            let full = to_nats(message, implied).unwrap();
            match to_send(message, implied).unwrap() {
                None => assert!(full.is_empty(), "case {i}: skipped {full:?}"),
                Some(sent) => {
                    assert!(!full.is_empty(), "case {i}: an empty map made");
                    assert_eq!(sent, full, "case {i}");
                }
            }
        }
        // What would fail to send still fails.
        let broken = plain.clone().with_header("tenant", "a\r\nb");
        assert_eq!(to_send(&broken, &json).unwrap_err().kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn left_out_fields_are_not_sent_and_the_implied_type_is_read() {
        use tidewater_core::{IdFactory, UuidV7Ids};
        let json = Implied { no_ids: true, content_type: Some(Cow::Borrowed("application/json")) };
        let plain = Message::new("orders", "p").with_id(UuidV7Ids.next_id()).with_content_type("application/json");
        let (_, h, _) = into_nats(plain.clone(), &json).unwrap();
        assert!(h.is_empty(), "nothing left to send as a header: {h:?}");
        // An hour off the id's time would take a header of its own, but the time goes with the id.
        let mut late = plain.clone();
        late.timestamp += Duration::from_secs(3600);
        assert!(into_nats(late, &json).unwrap().1.is_empty());

        let text = plain.clone().with_content_type("text/plain").with_key("k").with_header("tenant", "acme");
        let (_, h, _) = into_nats(text, &json).unwrap();
        let names: Vec<&str> = h.iter().map(|(n, _)| n.as_ref()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(h.get(CONTENT_TYPE).unwrap().as_str(), "text/plain");
        assert!(h.get(MSG_ID).is_none() && h.get(wire::TIMESTAMP).is_none());

        // Ids alone left out: the content type still goes; the type alone: the id still goes.
        let ids_only = Implied { no_ids: true, content_type: None };
        let (_, h, _) = into_nats(plain.clone(), &ids_only).unwrap();
        assert_eq!(h.get(CONTENT_TYPE).unwrap().as_str(), "application/json");
        let type_only = Implied { no_ids: false, content_type: json.content_type.clone() };
        let (_, h, _) = into_nats(plain.clone(), &type_only).unwrap();
        assert_eq!(h.get(MSG_ID).unwrap().as_str(), plain.id.as_str());
        assert!(h.get(CONTENT_TYPE).is_none());

        // A message read without the header gets the implied type; one with it keeps its own.
        let got = from_nats("orders", None, Bytes::new(), || "f".into(), None, json.content_type.as_ref());
        assert_eq!(got.content_type.as_deref(), Some("application/json"));
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, "text/plain");
        let got = from_nats("orders", Some(&h), Bytes::new(), || "f".into(), None, json.content_type.as_ref());
        assert_eq!(got.content_type.as_deref(), Some("text/plain"));
    }

    #[test]
    fn line_breaks_are_found_wherever_they_fall() {
        let naive = |bytes: &[u8]| bytes.iter().any(|&b| b == b'\r' || b == b'\n');
        // Bytes that differ from a line break by one bit or by the high bit, and the
        // zero and all-ones bytes, which sit at the edges of the word arithmetic.
        let near = [0x00, 0x0B, 0x0C, 0x0E, 0x8A, 0x8D, 0xFF, 0x2A, b'a'];
        for len in 0..=40 {
            for filler in near {
                let clean = vec![filler; len];
                assert!(!has_line_break(&clean), "{len} bytes of {filler:#x}");
                for at in 0..len {
                    for bad in [b'\r', b'\n'] {
                        let mut text = clean.clone();
                        text[at] = bad;
                        assert!(has_line_break(&text), "{bad:#x} at {at} of {len}");
                        assert_eq!(has_line_break(&text[..at]), naive(&text[..at]));
                    }
                }
            }
        }
    }

    #[test]
    fn bad_input_is_rejected() {
        let m = Message::new("t", "p").with_header("evil", "a\r\nb");
        assert_eq!(to_nats(&m, &Implied::default()).unwrap_err().kind(), ErrorKind::InvalidInput);
        let m = Message::new("t", "p").with_key(vec![0xff, 0xfe]);
        assert_eq!(to_nats(&m, &Implied::default()).unwrap_err().kind(), ErrorKind::InvalidInput);
        let m = Message::new("t", "p").with_header("Nats-Msg-Id", "x");
        assert_eq!(to_nats(&m, &Implied::default()).unwrap_err().kind(), ErrorKind::InvalidInput);
        for bad in ["", ".", "a.", ".a", "a..b", "a.*", "a.>", "*", ">", "has space", "tab\there", "nl\n"] {
            assert_eq!(check_subject(bad).unwrap_err().kind(), ErrorKind::InvalidName, "{bad:?}");
        }
        for good in ["orders.eu.created", "a", "a.b*c", "x>.y", "ünïcode.ok"] {
            check_subject(good).unwrap();
        }
    }
}
