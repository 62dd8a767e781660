//! librdkafka's errors as tidewater errors.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tidewater_core::{Error, ErrorKind};

use crate::DRIVER;

/// The kind of a librdkafka error code.
pub(crate) fn kind_of_code(code: RDKafkaErrorCode) -> ErrorKind {
    use RDKafkaErrorCode as C;
    match code {
        C::MessageSizeTooLarge | C::InvalidMessageSize => ErrorKind::TooLarge,
        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition => ErrorKind::UnknownTopic,
        C::InvalidTopic | C::InvalidGroupId => ErrorKind::InvalidName,
        C::QueueFull | C::ThrottlingQuotaExceeded => ErrorKind::Busy,
        C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut | C::TimedOutQueue => ErrorKind::Timeout,
        C::BrokerTransportFailure | C::AllBrokersDown | C::Resolve | C::NetworkException | C::BrokerNotAvailable => {
            ErrorKind::Connection
        }
        C::NotLeaderForPartition
        | C::LeaderNotAvailable
        | C::NotEnoughReplicas
        | C::NotEnoughReplicasAfterAppend
        | C::NotCoordinator
        | C::CoordinatorNotAvailable
        | C::CoordinatorLoadInProgress
        | C::RebalanceInProgress
        | C::UnknownMemberId
        | C::IllegalGeneration
        | C::KafkaStorageError
        | C::FencedLeaderEpoch
        | C::UnknownLeaderEpoch
        | C::OutOfOrderSequenceNumber
        | C::Retry
        | C::WaitingForCoordinator
        | C::State => ErrorKind::BrokerTransient,
        C::InvalidArgument | C::InvalidRecord | C::InvalidMessage | C::InvalidTimestamp | C::BadMessage => {
            ErrorKind::InvalidInput
        }
        C::InvalidConfig | C::UnsupportedFeature | C::UnsupportedVersion | C::UnsupportedCompressionType => {
            ErrorKind::Unsupported
        }
        C::BrokerDestroy | C::DestroyBroker | C::Fenced => ErrorKind::Closed,
        _ => ErrorKind::BrokerPermanent,
    }
}

/// The kind of a librdkafka error.
pub(crate) fn kind_of(err: &KafkaError) -> ErrorKind {
    match err {
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => ErrorKind::Config,
        KafkaError::Canceled => ErrorKind::Closed,
        KafkaError::NoMessageReceived => ErrorKind::Timeout,
        other => other.rdkafka_error_code().map_or(ErrorKind::BrokerPermanent, kind_of_code),
    }
}

/// A tidewater error for `err`, explained by `what`.
pub(crate) fn kafka_error(what: impl Into<String>, err: KafkaError) -> Error {
    let what = what.into();
    Error::new(kind_of(&err), format!("{what}: {err}")).with_driver(DRIVER).with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_say_whether_a_retry_helps() {
        assert_eq!(kind_of_code(RDKafkaErrorCode::MessageSizeTooLarge), ErrorKind::TooLarge);
        assert_eq!(kind_of_code(RDKafkaErrorCode::UnknownTopicOrPartition), ErrorKind::UnknownTopic);
        assert!(kind_of_code(RDKafkaErrorCode::AllBrokersDown).is_retryable());
        assert!(kind_of_code(RDKafkaErrorCode::MessageTimedOut).is_retryable());
        assert!(kind_of_code(RDKafkaErrorCode::NotLeaderForPartition).is_retryable());
        assert!(!kind_of_code(RDKafkaErrorCode::TopicAuthorizationFailed).is_retryable());
    }
}
