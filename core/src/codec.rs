//! Turning typed values into payloads and back.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, ErrorKind, Message, Result};

/// Encodes events into payloads and decodes them back, recording a content type.
///
/// Raw payloads need no codec: publish a [`Message`] with
/// [`Publisher::publish_message`](crate::Publisher::publish_message) and it passes through
/// untouched, with whatever content type it names.
pub trait Codec: Send + Sync + 'static {
    /// The content type this codec writes, such as `application/json`.
    fn content_type(&self) -> &'static str;

    /// Encodes `value`.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes>;

    /// Decodes `payload`.
    fn decode<T: DeserializeOwned>(&self, payload: &[u8]) -> Result<T>;

    /// Decodes the payload of `message`, first checking that its content type (if it
    /// names one) is this codec's. Errors are `Decode` errors, which handlers treat as
    /// permanent: the message goes to the dead-letter queue rather than round again.
    fn decode_message<T: DeserializeOwned>(&self, message: &Message) -> Result<T> {
        if let Some(ct) = &message.content_type {
            let ours = self.content_type();
            // A message from a publisher of this codec names its type exactly so, which a
            // comparison of bytes finds at once, before the search for parameters and
            // the case folding that other spellings need.
            let essence = || ct.split(';').next().unwrap_or("").trim();
            if ct != ours && !essence().eq_ignore_ascii_case(ours) {
                return Err(Error::new(
                    ErrorKind::Decode,
                    format!("message {} has content type {ct:?}, this codec reads {ours:?}", message.id),
                )
                .with_topic(message.stream.clone()));
            }
        }
        self.decode(&message.payload).map_err(|e| e.with_topic(message.stream.clone()))
    }
}

/// The largest encode buffer a thread keeps between events; a larger event's buffer is
/// freed after it, so that one big event does not pin its size to the thread.
const MAX_KEPT_BUFFER: usize = 64 * 1024;

thread_local! {
    /// Taken for an encode and put back after it. A `Cell` rather than a `RefCell`: the
    /// borrow flag's bookkeeping was a tenth of a small event's encode. An event whose
    /// `Serialize` encodes another (say, to embed it) finds the buffer empty and grows
    /// one of its own, which the outer encode then replaces.
    static ENCODE_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The thread's encode buffer, empty, for an encode to write into.
///
/// Not generic, so that the thread-local is reached from this crate's own code: from
/// an encode compiled in the crate that calls it, every access went through the key's
/// accessor, called through a pointer (encoding a number took 33-35 ns that way and
/// 28-31 ns this way, in the json_codec bench beside serde_json's 19-21).
fn take_encode_buffer() -> Vec<u8> {
    let mut buf = ENCODE_BUFFER.take();
    buf.clear();
    buf
}

/// Gives an encode's buffer back to the thread, unless it grew too large to keep.
fn put_back_encode_buffer(buf: Vec<u8>) {
    if buf.capacity() <= MAX_KEPT_BUFFER {
        ENCODE_BUFFER.set(buf);
    }
}

/// JSON as serde_json writes and reads it; content type `application/json`.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    fn content_type(&self) -> &'static str {
        "application/json"
    }

    /// Writes into a buffer the thread keeps, then copies the result out: one allocation
    /// of the exact size, where `serde_json::to_vec` grows its vector from 128 bytes,
    /// reallocating (and copying) several times for a 1 KiB event. The JSON is
    /// serde_json's, byte for byte, from a writer that escapes strings eight bytes at a
    /// time where serde_json looks at each byte; values it does not take on (unusual map
    /// keys, serde_json's private types, errors) go through serde_json itself.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes> {
        let mut buf = take_encode_buffer();
        let encoded = match crate::json::write(&mut buf, value) {
            Ok(()) => Ok(Bytes::copy_from_slice(&buf)),
            Err(crate::json::Unsupported) => {
                buf.clear();
                serde_json::to_writer(&mut buf, value).map(|()| Bytes::copy_from_slice(&buf))
            }
        };
        put_back_encode_buffer(buf);
        encoded.map_err(|e| Error::new(ErrorKind::Encode, "JSON encoding failed").with_source(e))
    }

    /// Reads with a reader that searches strings sixteen bytes at a time and checks
    /// their UTF-8 in the same pass, where serde_json takes two passes at eight bytes;
    /// what it does not take on (invalid JSON, a value the type refuses, half a
    /// surrogate pair, bytes, numeric map keys), serde_json reads from the start, so the
    /// value, or the error, is serde_json's.
    fn decode<T: DeserializeOwned>(&self, payload: &[u8]) -> Result<T> {
        if let Ok(value) = crate::json::read(payload) {
            return Ok(value);
        }
        serde_json::from_slice(payload).map_err(|e| {
            Error::new(ErrorKind::Decode, format!("payload is not valid JSON for {}", std::any::type_name::<T>()))
                .with_source(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_content_type_check() {
        let codec = JsonCodec;
        let payload = codec.encode(&vec![1, 2, 3]).unwrap();
        for ct in ["application/json", "application/json; charset=utf-8", "Application/JSON"] {
            let msg = Message::new("t", payload.clone()).with_content_type(ct);
            assert_eq!(codec.decode_message::<Vec<i32>>(&msg).unwrap(), vec![1, 2, 3], "{ct}");
        }

        let msg = Message::new("t", payload).with_content_type("application/x-protobuf");
        assert_eq!(codec.decode_message::<Vec<i32>>(&msg).unwrap_err().kind(), ErrorKind::Decode);

        let msg = Message::new("t", "not json");
        let err = codec.decode_message::<Vec<i32>>(&msg).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert_eq!(err.topic(), Some("t"));
    }

    /// The fast reader leaves what it does not take on to serde_json, so a payload it
    /// refuses decodes, or fails, exactly as with serde_json alone.
    #[test]
    fn decoding_gives_serde_jsons_values_and_errors() {
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Order {
            id: u64,
            note: String,
        }
        let codec = JsonCodec;
        for payload in
            [&br#"{"id":1,"note":"caf\u00e9 \ud83c"}"#[..], br#"{"id":1,}"#, br#"{"id":-1,"note":""}"#, b"[1]"]
        {
            let ours = codec.decode::<Order>(payload);
            match serde_json::from_slice::<Order>(payload) {
                Ok(theirs) => assert_eq!(ours.unwrap(), theirs),
                Err(theirs) => {
                    let err = ours.unwrap_err();
                    assert_eq!(err.kind(), ErrorKind::Decode);
                    let source = err.get_ref().expect("serde_json's error").to_string();
                    assert_eq!(source, theirs.to_string());
                }
            }
        }
        let order = codec.decode::<Order>(br#"{"note":"caf\u00e9","id":7}"#).unwrap();
        assert_eq!(order, Order { id: 7, note: "café".into() });
    }

    /// The thread's buffer is reused, so each payload must be exactly its own value's
    /// encoding, whatever the thread encoded before (a larger one, or one whose buffer
    /// was dropped for being too large), and a value that fails leaves nothing behind.
    #[test]
    fn the_reused_buffer_never_leaks_into_the_next_payload() {
        let codec = JsonCodec;
        let big = "x".repeat(MAX_KEPT_BUFFER + 10);
        assert_eq!(codec.encode(&big).unwrap().len(), big.len() + 2);
        assert_eq!(&codec.encode(&"long text here").unwrap()[..], br#""long text here""#);
        assert_eq!(&codec.encode(&7).unwrap()[..], b"7");
        let not_a_map_key = std::collections::HashMap::from([(vec![1u8], 1)]);
        assert_eq!(codec.encode(&not_a_map_key).unwrap_err().kind(), ErrorKind::Encode);
        assert_eq!(&codec.encode(&[1, 2]).unwrap()[..], b"[1,2]");
    }

    /// An event whose `Serialize` encodes another while the thread's buffer is out: each
    /// payload is still its own value's, the inner one included.
    #[test]
    fn an_encode_inside_an_encode_keeps_both_payloads_whole() {
        struct Embeds(&'static str);
        impl serde::Serialize for Embeds {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let inner = JsonCodec.encode(&[self.0, self.0]).map_err(serde::ser::Error::custom)?;
                s.serialize_str(std::str::from_utf8(&inner).unwrap())
            }
        }
        let codec = JsonCodec;
        let outer = codec.encode(&(1, Embeds("ab"), 2)).unwrap();
        assert_eq!(&outer[..], br#"[1,"[\"ab\",\"ab\"]",2]"#);
        assert_eq!(&codec.encode(&"after").unwrap()[..], br#""after""#);
    }

    /// Values the fast writer leaves to serde_json come out exactly as serde_json makes
    /// them, payload or error.
    #[test]
    fn what_the_fast_writer_refuses_is_serde_jsons_own() {
        let codec = JsonCodec;
        let bool_keys = std::collections::BTreeMap::from([(false, 1), (true, 2)]);
        match serde_json::to_vec(&bool_keys) {
            Ok(json) => assert_eq!(codec.encode(&bool_keys).unwrap(), json),
            Err(_) => assert_eq!(codec.encode(&bool_keys).unwrap_err().kind(), ErrorKind::Encode),
        }
        let nested = vec![std::collections::HashMap::from([(vec![1u8], 1)])];
        let err = codec.encode(&nested).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Encode);
        let source = err.get_ref().expect("serde_json's error").to_string();
        assert_eq!(source, serde_json::to_vec(&nested).unwrap_err().to_string());
    }
}
