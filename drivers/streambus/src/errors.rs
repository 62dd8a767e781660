//! Broker error codes and transport failures as tidewater errors.

use tidewater_core::{Error, ErrorKind};

use crate::protocol::ErrorCode;
use crate::DRIVER;

/// An error response from the broker: the numeric code and the broker's text. Carried
/// as the source of the tidewater [`Error`], so callers can get the code back with
/// [`broker_code`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct BrokerError {
    /// The code.
    pub code: ErrorCode,
    /// The broker's message (empty inside coordination payloads, which carry no text).
    pub message: String,
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "broker answered {}", self.code)?;
        match self.message.is_empty() {
            true => Ok(()),
            false => write!(f, ": {}", self.message),
        }
    }
}

/// The broker's error code behind `err`, if the broker sent one.
pub fn broker_code(err: &Error) -> Option<ErrorCode> {
    broker_answer(err).map(|b| b.code)
}

/// The broker's answer behind `err`, if the broker sent one.
pub(crate) fn broker_answer(err: &Error) -> Option<&BrokerError> {
    // Down the recorded causes: `source()` passes over those an error's text says, and
    // the broker's answer is one of them.
    let mut next: Option<&(dyn std::error::Error + 'static)> = err.get_ref().map(|e| e as _);
    while let Some(cause) = next {
        if let Some(b) = cause.downcast_ref::<BrokerError>() {
            return Some(b);
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
    // The code is said once, by the broker's answer that the text goes on with.
    Error::new(kind_of(code), what).with_driver(DRIVER).with_source(BrokerError { code, message })
}

pub(crate) fn connection(
    what: impl Into<String>,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::new(ErrorKind::Connection, what).with_driver(DRIVER).with_source(source)
}
