//! Whether the cluster answers, and why not when it does not.
//!
//! librdkafka retries a failed connection until a request's timeout, whatever the
//! failure, and the request then fails as a "broker transport failure". A broker that
//! refused the client's credentials or its TLS handshake says so only in an error event,
//! which the admin client never serves. So the ping asks for metadata through a client
//! of its own, serves that client's events while the request waits, and stops at the
//! first such refusal. (The request, on a blocking thread, then runs out on its own; it
//! ends within the timeout.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::ClientContext;
use tidewater_core::reach::{self, Reach};
use tidewater_core::{Error, ErrorKind, Result};

use crate::errors::kafka_error;
use crate::topics::{blocking, hosts};
use crate::{KafkaConfig, DRIVER};

/// How often the ping looks at the client's events while its request waits.
const LOOK: Duration = Duration::from_millis(200);

/// Asks the cluster for its metadata, for at most the request timeout.
///
/// - A refused login or TLS handshake fails at once with a `Config` error that gives
///   the broker's reason: retrying with the same settings cannot help.
/// - Anything else that lasts the whole timeout fails with a `Connection` error and why
///   the system could not connect, where it can tell (see [`reach::probe`]).
///
/// One request waits the whole timeout, as a cluster of many topics takes a while to
/// describe; the events are looked at beside it.
pub(crate) async fn cluster(config: &KafkaConfig) -> Result<()> {
    let client: Arc<BaseProducer<Refusals>> = Arc::new(
        config
            .finish(config.common())
            .create_with_context(Refusals::default())
            .map_err(|e| kafka_error("cannot create the Kafka client that checks the brokers", e))?,
    );
    let timeout = config.request_timeout;
    let asking = Arc::clone(&client);
    let mut fetch = std::pin::pin!(blocking(move || asking.client().fetch_metadata(None, timeout).map(drop)));
    let mut look = tokio::time::interval(LOOK);
    let err = loop {
        tokio::select! {
            fetched = &mut fetch => match fetched? {
                Ok(()) => return Ok(()),
                Err(err) => break err,
            },
            _ = look.tick() => refused(&client)?,
        }
    };
    // The request may have failed on a refusal not looked at yet.
    refused(&client)?;
    let brokers = &config.brokers;
    let waited = format!("no Kafka broker at {brokers} answered within {timeout:?}");
    let error = match reach::probe(hosts(brokers)).await {
        Reach::Fails(host, why) => {
            Error::new(ErrorKind::Connection, format!("{waited}; connecting to {host}")).with_source(why)
        }
        _ => Error::new(ErrorKind::Connection, waited).with_source(err),
    };
    Err(error.with_driver(DRIVER))
}

/// Serves the client's pending events (without waiting) and fails with the first
/// refusal among them.
fn refused(client: &BaseProducer<Refusals>) -> Result<()> {
    client.poll(Duration::ZERO);
    client.context().take().map_or(Ok(()), Err)
}

/// Collects the first refusal among a client's error events.
#[derive(Default)]
struct Refusals(Mutex<Option<Error>>);

impl Refusals {
    fn take(&self) -> Option<Error> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl ClientContext for Refusals {
    /// At debug level only: what the ping's client logs (a failed connection, a refused
    /// login) is what the ping's own error says, and said once is enough.
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(?level, facility, "librdkafka, checking the brokers: {message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(refused) = refusal(error.rdkafka_error_code(), reason) {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(refused);
        }
    }
}

/// The ping's client produces nothing: a producer only because its events are served by
/// a public call.
impl ProducerContext for Refusals {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// The error for a refusal that `code` and librdkafka's `reason` tell of, if they tell
/// of one. The reason names the broker and what it said.
fn refusal(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<Error> {
    const LOGIN: &str = "a Kafka broker refused the login (check the SASL mechanism, user name and password)";
    const TLS: &str =
        "TLS with a Kafka broker failed (check the CA, and the client certificate if the broker wants one)";
    let what = match code? {
        RDKafkaErrorCode::Authentication => LOGIN,
        // The client's side of the handshake: the broker's certificate, the protocol.
        RDKafkaErrorCode::SSL => TLS,
        // The broker's side: with TLS 1.3 a broker that rejects the client's certificate
        // (or its lack of one) says so in an alert the client reads after its handshake,
        // which librdkafka reports as a failed receive.
        RDKafkaErrorCode::BrokerTransportFailure if refuses_the_certificate(reason) => TLS,
        _ => return None,
    };
    Some(Error::new(ErrorKind::Config, format!("{what}: {reason}")).with_driver(DRIVER))
}

/// Whether OpenSSL's error text has a TLS alert about the client's certificate: bad
/// (42), unsupported (43), revoked (44), expired (45), unknown (46), of an unknown CA
/// (48) or missing (116).
fn refuses_the_certificate(reason: &str) -> bool {
    const MARK: &str = "SSL alert number ";
    let Some(at) = reason.find(MARK) else { return false };
    let digits: String = reason[at + MARK.len()..].chars().take_while(char::is_ascii_digit).collect();
    matches!(digits.parse::<u8>(), Ok(42..=46 | 48 | 116))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reasons as librdkafka 2.x gave them against Apache Kafka 4.4.
    #[test]
    fn refusals_are_told_from_other_failures() {
        fn kind(code: RDKafkaErrorCode, reason: &str) -> Option<ErrorKind> {
            refusal(Some(code), reason).map(|e| e.kind())
        }
        let login = "sasl_ssl://127.0.0.1:1/bootstrap: SASL authentication error: Authentication failed: \
                     Invalid username or password (after 301ms in state AUTH_REQ)";
        assert_eq!(kind(RDKafkaErrorCode::Authentication, login), Some(ErrorKind::Config));
        let untrusted = "sasl_ssl://127.0.0.1:1/bootstrap: SSL handshake failed: error:0A000086:SSL \
                         routines::certificate verify failed: broker certificate could not be verified";
        assert_eq!(kind(RDKafkaErrorCode::SSL, untrusted), Some(ErrorKind::Config));
        for alert in [
            "sslv3 alert bad certificate: SSL alert number 42",
            "alert certificate unknown: SSL alert number 46",
            "tlsv13 alert certificate required: SSL alert number 116",
        ] {
            let reason = format!("ssl://127.0.0.1:1/bootstrap: Receive failed: error:0A000412:SSL routines::{alert} (after 3ms in state APIVERSION_QUERY)");
            assert_eq!(kind(RDKafkaErrorCode::BrokerTransportFailure, &reason), Some(ErrorKind::Config), "{alert}");
        }
        // What a broker that is away, restarting or overloaded gives: retry, not refuse.
        for (code, reason) in [
            (RDKafkaErrorCode::BrokerTransportFailure, "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused"),
            (RDKafkaErrorCode::BrokerTransportFailure, "ssl://127.0.0.1:1/bootstrap: Receive failed: error:0A000438:SSL routines::tlsv1 alert internal error: SSL alert number 80"),
            (RDKafkaErrorCode::AllBrokersDown, "1/1 brokers are down"),
        ] {
            assert_eq!(kind(code, reason), None, "{reason}");
        }
        assert!(refusal(None, login).is_none());
    }
}
