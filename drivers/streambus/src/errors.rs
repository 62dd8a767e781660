//! Broker error codes and transport failures as tidewater errors.

use tidewater_core::{Error, ErrorKind};

use crate::protocol::ErrorCode;
use crate::DRIVER;

/// An error response from the broker: the numeric code and the broker's text. Carried
/// as the source of the tidewater [`Error`], so callers can get the code back with
/// [`broker_code`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("broker answered {code}: {message}")]
pub struct BrokerError {
    /// The code.
    pub code: ErrorCode,
    /// The broker's message (empty inside coordination payloads, which carry no text).
    pub message: String,
}

/// The broker's error code behind `err`, if the broker sent one.
pub fn broker_code(err: &Error) -> Option<ErrorCode> {
    // Down the recorded causes: `source()` passes over those an error's text says, and
    // the broker's answer is one of them.
    let mut next: Option<&(dyn std::error::Error + 'static)> = err.get_ref().map(|e| e as _);
    while let Some(cause) = next {
        if let Some(b) = cause.downcast_ref::<BrokerError>() {
            return Some(b.code);
        }
        next = match cause.downcast_ref::<Error>() {
            Some(inner) => inner.get_ref().map(|e| e as _),
            None => cause.source(),
        };
    }
    None
}

pub(crate) fn kind_of(code: ErrorCode) -> ErrorKind {
    match code {
        ErrorCode::TOPIC_NOT_FOUND | ErrorCode::PARTITION_NOT_FOUND => ErrorKind::UnknownTopic,
        ErrorCode::MESSAGE_TOO_LARGE => ErrorKind::TooLarge,
        ErrorCode::INVALID_REQUEST | ErrorCode::OFFSET_OUT_OF_RANGE | ErrorCode::INVALID_PARTITION_LIST => {
            ErrorKind::InvalidInput
        }
        ErrorCode::REQUEST_TIMEOUT => ErrorKind::Timeout,
        c if c.is_retryable() => ErrorKind::BrokerTransient,
        _ => ErrorKind::BrokerPermanent,
    }
}

pub(crate) fn broker_error(what: &str, code: ErrorCode, message: String) -> Error {
    Error::new(kind_of(code), format!("{what}: {code}")).with_driver(DRIVER).with_source(BrokerError { code, message })
}

pub(crate) fn connection(
    what: impl Into<String>,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::new(ErrorKind::Connection, what).with_driver(DRIVER).with_source(source)
}
