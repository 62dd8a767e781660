//! Message fields to NATS headers and back.
//!
//! | Message field  | NATS header      | why this name |
//! |----------------|------------------|---------------|
//! | id             | `Nats-Msg-Id`    | JetStream de-duplicates publishes by it |
//! | key            | `tw-key`         | NATS has no key of its own |
//! | content type   | `Content-Type`   | what any client would look for |
//! | timestamp      | `tw-time`        | milliseconds since the Unix epoch |
//! | headers        | as they are      | |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::{HeaderMap, HeaderName};
use bytes::Bytes;
use tidewater_core::{wire, Error, ErrorKind, Headers, Message, Result};

use crate::DRIVER;

pub(crate) const MSG_ID: &str = "Nats-Msg-Id";
pub(crate) const CONTENT_TYPE: &str = "Content-Type";

const RESERVED: [&str; 4] = [MSG_ID, wire::KEY, CONTENT_TYPE, wire::TIMESTAMP];

// As header names made once: a name made from a `&str` is checked and copied each time.
const MSG_ID_NAME: HeaderName = HeaderName::from_static(MSG_ID);
const KEY_NAME: HeaderName = HeaderName::from_static(wire::KEY);
const CONTENT_TYPE_NAME: HeaderName = HeaderName::from_static(CONTENT_TYPE);
const TIMESTAMP_NAME: HeaderName = HeaderName::from_static(wire::TIMESTAMP);

fn invalid(message: &Message, what: String) -> Error {
    Error::new(ErrorKind::InvalidInput, what).with_driver(DRIVER).with_topic(message.stream.clone())
}

fn check_value(message: &Message, name: &str, value: &str) -> Result<()> {
    if value.contains(['\r', '\n']) {
        return Err(invalid(message, format!("header {name:?} of message {} contains a line break", message.id)));
    }
    Ok(())
}

/// The NATS headers for `message`.
pub(crate) fn to_nats(message: &Message) -> Result<HeaderMap> {
    let mut h = all_but_id(message)?;
    if !message.id.is_empty() {
        h.insert(MSG_ID_NAME, message.id.as_str());
    }
    Ok(h)
}

/// The subject, NATS headers and payload of `message`, taking its id rather than
/// copying it.
pub(crate) fn into_nats(mut message: Message) -> Result<(String, HeaderMap, Bytes)> {
    let mut h = all_but_id(&message)?;
    if !message.id.is_empty() {
        h.insert(MSG_ID_NAME, std::mem::take(&mut message.id));
    }
    Ok((message.stream, h, message.payload))
}

/// The headers of `message` but its id, which is checked.
fn all_but_id(message: &Message) -> Result<HeaderMap> {
    let mut h = HeaderMap::new();
    for (name, value) in message.headers.iter() {
        let valid_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !valid_name || RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err(invalid(message, format!("{name:?} cannot be a NATS header name of message {}", message.id)));
        }
        check_value(message, name, value)?;
        h.insert(name, value);
    }
    check_value(message, MSG_ID, &message.id)?;
    if let Some(key) = &message.key {
        let key = std::str::from_utf8(key).map_err(|_| {
            invalid(message, format!("the key of message {} is not UTF-8; NATS headers carry text", message.id))
        })?;
        check_value(message, wire::KEY, key)?;
        h.insert(KEY_NAME, key);
    }
    if let Some(ct) = &message.content_type {
        check_value(message, CONTENT_TYPE, ct)?;
        h.insert(CONTENT_TYPE_NAME, ct.as_str());
    }
    // As u64: formatting the u128 that as_millis gives takes several times longer.
    let millis = message.timestamp.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    h.insert(TIMESTAMP_NAME, millis.to_string());
    Ok(h)
}

/// A message from a NATS message. Fields a plain client did not send come from the
/// fallbacks: the broker's id and time where it has them; with no time, now.
pub(crate) fn from_nats(
    subject: &str,
    headers: Option<&HeaderMap>,
    payload: Bytes,
    fallback_id: impl FnOnce() -> String,
    fallback_time: Option<SystemTime>,
) -> Message {
    // Looked up by the names made once: a name given as `&str` is checked, and copied
    // if not one of NATS's own, on every lookup.
    let get = |name: HeaderName| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    let mut message = Message::new(subject, payload);
    message.id = get(MSG_ID_NAME).map_or_else(fallback_id, str::to_owned);
    message.key = get(KEY_NAME).map(|k| Bytes::copy_from_slice(k.as_bytes()));
    message.content_type = get(CONTENT_TYPE_NAME).map(str::to_owned);
    message.timestamp = get(TIMESTAMP_NAME)
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
        .or(fallback_time)
        .unwrap_or(message.timestamp);
    let mut user = Headers::new();
    if let Some(h) = headers {
        for (name, values) in h.iter() {
            let name: &str = name.as_ref();
            if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                continue;
            }
            if let Some(last) = values.last() {
                user.insert(name, last.as_str());
            }
        }
    }
    message.headers = user;
    message
}

/// Checks a subject to publish to: dot-separated tokens, no wildcards, no white space.
pub(crate) fn check_subject(subject: &str) -> Result<()> {
    let valid = !subject.is_empty()
        && subject.split('.').all(|t| !t.is_empty() && t != "*" && t != ">")
        && !subject.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
    if valid {
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

    #[test]
    fn fields_survive_the_round_trip() {
        let sent = Message::new("orders.eu", "p")
            .with_id("id-1")
            .with_key("k")
            .with_content_type("application/json")
            .with_header("tenant", "acme");
        let h = to_nats(&sent).unwrap();
        assert_eq!(h.get(MSG_ID).unwrap().as_str(), "id-1");
        let got = from_nats("orders.eu", Some(&h), sent.payload.clone(), || unreachable!(), None);
        assert_eq!(got.id, "id-1");
        assert_eq!(got.key_str(), Some("k"));
        assert_eq!(got.content_type.as_deref(), Some("application/json"));
        assert_eq!(got.headers, sent.headers);
        let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis();
        assert_eq!(ms(got.timestamp), ms(sent.timestamp));
    }

    #[test]
    fn bad_input_is_rejected() {
        let m = Message::new("t", "p").with_header("evil", "a\r\nb");
        assert_eq!(to_nats(&m).unwrap_err().kind(), ErrorKind::InvalidInput);
        let m = Message::new("t", "p").with_key(vec![0xff, 0xfe]);
        assert_eq!(to_nats(&m).unwrap_err().kind(), ErrorKind::InvalidInput);
        let m = Message::new("t", "p").with_header("Nats-Msg-Id", "x");
        assert_eq!(to_nats(&m).unwrap_err().kind(), ErrorKind::InvalidInput);
        for bad in ["", "a..b", "a.*", "a.>", "has space"] {
            assert_eq!(check_subject(bad).unwrap_err().kind(), ErrorKind::InvalidName, "{bad:?}");
        }
        check_subject("orders.eu.created").unwrap();
    }
}
