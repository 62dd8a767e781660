//! The Pulsar driver of tidewater, on the [`pulsar`] crate (tokio, no async-std).
//!
//! [`Pulsar`] connects once and hands out writers and readers:
//!
//! - [`PulsarWriter`]: a producer per topic shared by all writers; every write waits for
//!   the broker's send receipts; batching on by default; bursts wait for room rather
//!   than fail; payloads over [`PulsarConfig::max_message_bytes`] are a `TooLarge` error.
//! - [`PulsarReader`]: consumer groups are subscriptions (Shared by default; Key_Shared,
//!   Exclusive and Failover by [`PulsarConfig::subscription`]), acks per message, nacks
//!   with a redelivery delay, an optional ack timeout and the broker-side dead-letter
//!   policy ([`DeadLetter`]), start at the earliest or the latest message.
//!
//! Short topic names live in [`PulsarConfig::namespace`] (`persistent://public/default/`
//! unless set). Message fields travel as Pulsar's own where it has them:
//!
//! | Message field | Pulsar message                                                    |
//! |---------------|-------------------------------------------------------------------|
//! | id            | property `tw-id`                                                  |
//! | key           | partition key (Base64 and flagged if not UTF-8) and ordering key; on a partitioned topic it picks the partition (murmur3 of the partition key), so a key's messages stay in order |
//! | content type  | property `tw-content-type`                                        |
//! | timestamp     | event time                                                        |
//! | headers       | properties, as they are                                           |
//!
//! A message from another client without `tw-id` gets the id
//! `<topic>-<ledger>:<entry>:<partition>:<batch index>`, the same on every redelivery, so
//! deduplication works on it.
//!
//! # What it was tested on
//!
//! Apache Pulsar 4.0.7 standalone (the broker, its bookie and a RocksDB metadata store
//! in one JVM): the whole conformance suite with every capability on, stress included,
//! on partitioned topics of 3 partitions; Key_Shared, Failover, delayed and batch nacks,
//! the ack timeout, the dead-letter policy, TLS with token authentication on a broker
//! that requires both, a broker killed (SIGKILL) and restarted in a 10,000-message run,
//! a topic unloaded under a reader and a writer (as the load balancer moves a bundle),
//! and interop with the official Python client both ways. This driver uses no seek,
//! delayed delivery, chunking or transactions.
//!
//! Known limits of the pulsar crate that show through: it does not pass the broker's
//! redelivery count on (attempts are counted by the reader, see [`PulsarReader`]); its
//! dead-letter policy moves a whole redelivered batch, so with batching on a message of
//! the batch that was acked can reach the dead-letter topic too (turn batching off on
//! topics that use the policy, or use the dead-letter middleware).
//!
//! A known limit of the broker (4.0.7): a nack followed within milliseconds by the close
//! of a Shared subscription's last consumer can leave that consumer's other messages in
//! the backlog, held by no consumer, until the next message is published to their
//! partition. A stopping reader therefore gives back what it holds by closing, without
//! nacking it first; a handler's own nack just before the only consumer stops can still
//! meet it.
//!
//! Deleting a topic that a service writes to: through this driver's admin
//! ([`Driver::admin`] of the same [`Pulsar`]), the connection's producer for the topic
//! goes with it, and the next write looks the topic up again (conformance case 29). A
//! producer that outlives a deletion made elsewhere (another process, `pulsar-admin`)
//! reconnects to the partitions it knew by their own names; a write to a partition
//! that is gone fails and drops the producer, but where topics are made on first use
//! the broker makes `<topic>-partition-0` a topic of its own, and writes there are
//! stored and read by no one. Stop writers before deleting a topic elsewhere, or delete
//! it through the driver.
//!
//! ```no_run
//! use tidewater_core::{Bus, EventRegistry};
//! use tidewater_pulsar::{Pulsar, PulsarConfig};
//!
//! # async fn example() -> tidewater_core::Result<()> {
//! let pulsar = Pulsar::connect(PulsarConfig::new("pulsar://127.0.0.1:6650")).await?;
//! let bus = Bus::new(&pulsar, EventRegistry::new());
//! # let _ = bus;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod admin;
mod config;
mod errors;
mod link;
mod reader;
mod record;
mod writer;

use std::sync::Arc;

use pulsar::{Authentication, TokioExecutor};
use tidewater_core::reach::{self, Reach};
use tidewater_core::{Admin, Closable, Driver, Error, ErrorKind, Reader, Result, Writer};

pub use config::{Auth, Batching, Compression, DeadLetter, PulsarConfig, SubscriptionType, Tls};
pub use reader::PulsarReader;
pub use record::dead_letter_headers;
pub use writer::PulsarWriter;

/// Re-exported so services can reach the pulsar crate where tidewater does not go.
pub use pulsar;

use crate::errors::pulsar_error;
use crate::writer::Producers;

pub(crate) const DRIVER: &str = "pulsar";

/// Connections to a Pulsar cluster, shared by every writer and reader made from it.
///
/// Writers and readers use separate connections. The pulsar crate leaves Nagle's
/// algorithm on in its sockets, and on one connection shared by producers and consumers
/// a write's send receipt waited about 40 ms behind consumer traffic (measured: 44 ms
/// per acknowledged write on one connection, 7 ms on two).
#[derive(Clone)]
pub struct Pulsar {
    client: pulsar::Pulsar<TokioExecutor>,
    consumer_client: Arc<reader::ConsumerClient>,
    config: Arc<PulsarConfig>,
    producers: Arc<Producers>,
}

impl std::fmt::Debug for Pulsar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pulsar").field("config", &self.config).finish_non_exhaustive()
    }
}

/// How long the pulsar crate waits before it asks again when the broker answers a
/// lookup, a producer's creation or a subscription with "not ready", as it does while a
/// topic is unloaded and loaded again (its bundle moved by the load balancer, or
/// `pulsar-admin topics unload`). The crate's default is a fixed 5 s: writes and reads of
/// an unloaded topic waited that long, and a write failed at the request timeout once in
/// about a hundred runs of driver test
/// `a_topic_unloaded_under_a_reader_and_a_writer_loses_nothing` (none in 177 since),
/// whose three unloads took 8.0-11.5 s with the default and 4.1-6.5 s with this. The Java
/// client starts its backoff at 100 ms.
const RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(250);

impl Pulsar {
    /// Connects as `config` says; fails if the broker does not answer within the
    /// request timeout.
    pub async fn connect(config: PulsarConfig) -> Result<Self> {
        check_url(&config.url)?;
        let config = Arc::new(config);
        let client = Self::client_for(&config).await?;
        let consumer_client =
            Arc::new(reader::ConsumerClient::new(Self::client_for(&config).await?, Arc::clone(&config)));
        let producers = Arc::new(Producers::new(client.clone(), Arc::clone(&config)));
        Ok(Self { client, consumer_client, config, producers })
    }

    async fn client_for(config: &PulsarConfig) -> Result<pulsar::Pulsar<TokioExecutor>> {
        let mut builder = pulsar::Pulsar::builder(config.url.as_str(), TokioExecutor)
            .with_connection_retry_options(pulsar::ConnectionRetryOptions {
                connection_timeout: config.request_timeout,
                ..Default::default()
            })
            .with_operation_retry_options(pulsar::OperationRetryOptions {
                operation_timeout: config.request_timeout,
                retry_delay: RETRY_DELAY,
                ..Default::default()
            });
        if let Some(Auth::Token(token)) = &config.auth {
            builder = builder.with_auth(Authentication { name: "token".to_owned(), data: token.as_bytes().to_vec() });
        }
        if let Some(tls) = &config.tls {
            if let Some(path) = &tls.ca_file {
                builder = builder.with_certificate_chain_file(path).map_err(|e| {
                    Error::new(ErrorKind::Config, format!("cannot read the CA certificates in {}", path.display()))
                        .with_source(e)
                        .with_driver(DRIVER)
                })?;
            }
            builder = builder
                .with_allow_insecure_connection(tls.allow_insecure)
                .with_tls_hostname_verification_enabled(tls.verify_hostname);
        }
        match tokio::time::timeout(config.request_timeout, builder.build()).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(err)) if errors::is_refused_for_good(&err) => Err(Error::new(
                ErrorKind::Config,
                format!(
                    "cannot connect to Pulsar at {}: the broker ended the connection for a reason retrying will not \
                     fix, such as a refused token or a TLS certificate not trusted (the pulsar crate does not pass \
                     the reason on)",
                    config.url
                ),
            )
            .with_driver(DRIVER)),
            Ok(Err(err)) => Err(pulsar_error(format!("cannot connect to Pulsar at {}", config.url), err)),
            Err(_) => Err(timed_out(config).await),
        }
    }

    /// A writer. Writers share the producers; closing one flushes them and closes only
    /// that writer.
    pub fn pulsar_writer(&self) -> Closable<PulsarWriter> {
        Closable::new(DRIVER, PulsarWriter::new(Arc::clone(&self.producers), self.config.max_message_bytes))
    }

    /// A reader.
    pub fn pulsar_reader(&self) -> PulsarReader {
        PulsarReader::new(Arc::clone(&self.consumer_client), Arc::clone(&self.config))
    }

    /// The pulsar crate's client that writers use, for what tidewater does not cover.
    pub fn client(&self) -> &pulsar::Pulsar<TokioExecutor> {
        &self.client
    }

    /// The configuration.
    pub fn config(&self) -> &PulsarConfig {
        &self.config
    }
}

impl Driver for Pulsar {
    /// Needs [`PulsarConfig::admin_url`]: Pulsar administers topics only through its
    /// admin API.
    fn admin(&self) -> Arc<dyn Admin> {
        Arc::new(admin::PulsarAdmin::new(Arc::clone(&self.config), Arc::clone(&self.producers)))
    }

    fn writer(&self) -> Arc<dyn Writer> {
        Arc::new(self.pulsar_writer())
    }

    fn reader(&self) -> Arc<dyn Reader> {
        Arc::new(self.pulsar_reader())
    }
}

/// The error of a connect that took the whole request timeout. The pulsar crate retries
/// a refused connection until then and does not pass on why, so one TCP connection to
/// each of the URL's hosts tells a broker that is not there (with the system's reason,
/// such as "connection refused") from one that answers too slowly.
async fn timed_out(config: &PulsarConfig) -> Error {
    let waited = format!("no Pulsar broker at {} answered within {:?}", config.url, config.request_timeout);
    match reach::probe(hosts(&config.url)).await {
        Reach::Fails(host, err) => Error::new(ErrorKind::Connection, format!("{waited}; connecting to {host}"))
            .with_source(err)
            .with_driver(DRIVER),
        Reach::Answers(host) => {
            let text = format!("{waited}; {host} takes connections but did not complete Pulsar's handshake");
            Error::new(ErrorKind::Timeout, text).with_driver(DRIVER)
        }
        Reach::Silent => Error::new(ErrorKind::Timeout, waited).with_driver(DRIVER),
    }
}

/// The `host:port` of each broker a service URL names (the port Pulsar's default for its
/// scheme where the URL gives none).
fn hosts(url: &str) -> Vec<String> {
    let (rest, port) = match url.strip_prefix("pulsar+ssl://") {
        Some(rest) => (rest, 6651),
        None => (url.strip_prefix("pulsar://").unwrap_or(url), 6650),
    };
    let list = rest.split('/').next().unwrap_or_default();
    list.split(',').filter(|h| !h.is_empty()).map(|h| reach::with_port(h, port)).collect()
}

/// A configuration error for a service URL that can never reach a broker (a mistyped
/// scheme, no host), so that it does not look like a broker that is down.
fn check_url(url: &str) -> Result<()> {
    let rest = url.strip_prefix("pulsar://").or_else(|| url.strip_prefix("pulsar+ssl://"));
    let why = match rest {
        None => "it must start with pulsar:// or pulsar+ssl://",
        Some(rest) if rest.split([',', '/']).next().is_none_or(str::is_empty) => "it names no host",
        Some(_) => return Ok(()),
    };
    Err(Error::new(ErrorKind::Config, format!("{url:?} is not a Pulsar service URL: {why}")).with_driver(DRIVER))
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn a_url_that_cannot_name_a_broker_is_a_configuration_error() {
        for url in ["htp:/nope", "http://localhost:8080", "pulsar://", "localhost:6650"] {
            let err = check_url(url).expect_err(url);
            assert_eq!(err.kind(), ErrorKind::Config, "{url}: {err}");
        }
        for url in ["pulsar://127.0.0.1:6650", "pulsar+ssl://broker.example:6651", "pulsar://a:6650,b:6650"] {
            check_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn a_url_names_its_hosts_with_their_ports() {
        assert_eq!(hosts("pulsar://a:6650,b:7000/"), ["a:6650", "b:7000"]);
        assert_eq!(hosts("pulsar://broker"), ["broker:6650"]);
        assert_eq!(hosts("pulsar+ssl://broker"), ["broker:6651"]);
        assert_eq!(hosts("pulsar://[::1]:6650"), ["[::1]:6650"]);
        assert_eq!(hosts("pulsar://[::1]"), ["[::1]:6650"]);
    }
}
