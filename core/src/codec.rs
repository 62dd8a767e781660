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
            let essence = ct.split(';').next().unwrap_or("").trim();
            if !essence.eq_ignore_ascii_case(ours) {
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

/// JSON through serde_json; content type `application/json`.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    fn content_type(&self) -> &'static str {
        "application/json"
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes> {
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| Error::new(ErrorKind::Encode, "JSON encoding failed").with_source(e))
    }

    fn decode<T: DeserializeOwned>(&self, payload: &[u8]) -> Result<T> {
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
        let msg = Message::new("t", payload.clone()).with_content_type("application/json; charset=utf-8");
        assert_eq!(codec.decode_message::<Vec<i32>>(&msg).unwrap(), vec![1, 2, 3]);

        let msg = Message::new("t", payload).with_content_type("application/x-protobuf");
        assert_eq!(codec.decode_message::<Vec<i32>>(&msg).unwrap_err().kind(), ErrorKind::Decode);

        let msg = Message::new("t", "not json");
        let err = codec.decode_message::<Vec<i32>>(&msg).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert_eq!(err.topic(), Some("t"));
    }
}
