//! The pulsar crate's errors as tidewater errors, with a kind that says whether a retry
//! can help.

use pulsar::error::{ConnectionError, ConsumerError, ProducerError, ServiceDiscoveryError};
use pulsar::message::proto::ServerError;
use tidewater_core::{Error, ErrorKind};

use crate::DRIVER;

/// A tidewater error for `err`, saying what was being done.
pub(crate) fn pulsar_error(what: impl Into<String>, err: pulsar::Error) -> Error {
    Error::new(kind_of(&err), what).with_source(err).with_driver(DRIVER)
}

/// Whether a first connection failed for a reason the pulsar crate itself will not retry:
/// it sorts the failures of its attempts, and when none is worth a retry (a refused token,
/// a TLS failure, the broker closing the connection on its first command), it drops them
/// and answers with this one I/O error. A broker that is down fails with a refused
/// connection instead, which it does retry.
pub(crate) fn is_refused_for_good(err: &pulsar::Error) -> bool {
    matches!(
        err,
        pulsar::Error::Connection(ConnectionError::Io(e))
            if e.kind() == std::io::ErrorKind::Other && e.to_string() == "fatal error when connecting to the Pulsar server"
    )
}

/// The kind of a pulsar crate error.
pub(crate) fn kind_of(err: &pulsar::Error) -> ErrorKind {
    match err {
        pulsar::Error::Connection(e) => connection_kind(e),
        pulsar::Error::Consumer(e) => consumer_kind(e),
        pulsar::Error::Producer(e) => producer_kind(e),
        pulsar::Error::ServiceDiscovery(e) => match e {
            ServiceDiscoveryError::Connection(e) => connection_kind(e),
            ServiceDiscoveryError::Query(code, _) => server_kind(*code),
            ServiceDiscoveryError::NotFound => ErrorKind::UnknownTopic,
            ServiceDiscoveryError::DnsLookupError => ErrorKind::Connection,
            ServiceDiscoveryError::Canceled | ServiceDiscoveryError::Shutdown => ErrorKind::Closed,
            _ => ErrorKind::BrokerTransient,
        },
        pulsar::Error::Authentication(_) => ErrorKind::Config,
        pulsar::Error::Executor => ErrorKind::Closed,
        _ => ErrorKind::BrokerTransient,
    }
}

pub(crate) fn producer_kind(e: &ProducerError) -> ErrorKind {
    match e {
        ProducerError::Connection(e) => connection_kind(e),
        ProducerError::Io(_) => ErrorKind::Connection,
        ProducerError::Batch(e) => kind_of(e),
        ProducerError::Fenced => ErrorKind::BrokerPermanent,
        ProducerError::Closed => ErrorKind::Closed,
        _ => ErrorKind::BrokerTransient,
    }
}

pub(crate) fn consumer_kind(e: &ConsumerError) -> ErrorKind {
    match e {
        ConsumerError::Connection(e) => connection_kind(e),
        ConsumerError::Io(_) => ErrorKind::Connection,
        ConsumerError::ChannelFull => ErrorKind::Busy,
        ConsumerError::Closed => ErrorKind::Closed,
        ConsumerError::MissingPayload(_) => ErrorKind::Decode,
        _ => ErrorKind::BrokerTransient,
    }
}

fn connection_kind(e: &ConnectionError) -> ErrorKind {
    match e {
        ConnectionError::Io(_) | ConnectionError::Disconnected | ConnectionError::SocketAddr(_) => {
            ErrorKind::Connection
        }
        ConnectionError::SlowDown => ErrorKind::Busy,
        ConnectionError::PulsarError(code, _) => server_kind(*code),
        ConnectionError::Authentication(_) => ErrorKind::Config,
        ConnectionError::Tls(_) => ErrorKind::Config,
        ConnectionError::NotFound => ErrorKind::UnknownTopic,
        ConnectionError::Canceled | ConnectionError::Shutdown => ErrorKind::Closed,
        ConnectionError::Decoding(_) | ConnectionError::Encoding(_) => ErrorKind::BrokerPermanent,
        _ => ErrorKind::BrokerTransient,
    }
}

/// The kind of an error code a broker answered with.
fn server_kind(code: Option<ServerError>) -> ErrorKind {
    match code {
        Some(ServerError::TopicNotFound) => ErrorKind::UnknownTopic,
        Some(ServerError::InvalidTopicName) => ErrorKind::InvalidName,
        Some(ServerError::AuthenticationError | ServerError::AuthorizationError) => ErrorKind::Config,
        Some(ServerError::TooManyRequests | ServerError::ProducerBlockedQuotaExceededError) => ErrorKind::Busy,
        Some(ServerError::ProducerBlockedQuotaExceededException) => ErrorKind::Busy,
        Some(
            ServerError::TopicTerminatedError
            | ServerError::IncompatibleSchema
            | ServerError::NotAllowedError
            | ServerError::UnsupportedVersionError
            | ServerError::ProducerFenced,
        ) => ErrorKind::BrokerPermanent,
        _ => ErrorKind::BrokerTransient,
    }
}
