//! The Kafka driver of tidewater, on rdkafka (librdkafka, built from source).
//!
//! [`Kafka`] connects once and hands out writers and readers:
//!
//! - [`KafkaWriter`]: every write waits for the brokers' acknowledgement; the idempotent
//!   producer is on by default; keys pick partitions as the Java client does (see
//!   [`Partitioner`] for librdkafka-based clients, which hash differently by default).
//! - [`KafkaReader`]: consumer groups with manual commits that never pass an unprocessed
//!   record, also with concurrency above 1; commits on revoke and at stop; a nack rewinds
//!   the partition ([`DeliveryModel::Log`](tidewater_core::DeliveryModel::Log)).
//! - [`KafkaTransactions`]: writes that land together or not at all, and offsets of
//!   consumed records committed in the same transaction (exactly once from topic to
//!   topic for `read_committed` readers, librdkafka's default).
//! - Topics a writer or reader uses are created when missing, if
//!   [`KafkaConfig::auto_create_topics`] allows it, and are an `UnknownTopic` error
//!   otherwise.
//! - A write checks its whole batch before queueing any of it: a message with a bad
//!   topic name (`InvalidName`), a header name the driver keeps (`InvalidInput`) or a
//!   size over the producer's `message.max.bytes` as librdkafka counts it (`TooLarge`)
//!   fails the write with nothing written and no topic created.
//!
//! Message fields travel as the record's own fields where Kafka has them:
//!
//! | Message field | Kafka record                         |
//! |---------------|--------------------------------------|
//! | id            | header `tw-id`                       |
//! | key           | the record key                       |
//! | content type  | header `tw-content-type`             |
//! | timestamp     | the record timestamp (create time)   |
//! | headers       | headers, as they are                 |
//!
//! A record from another client without `tw-id` gets the id `<topic>-<partition>-<offset>`,
//! the same on every redelivery, so deduplication works on it.
//!
//! On a topic with create-time timestamps (Kafka's default), time retention counts from
//! the record's timestamp: a message stamped further back than the topic's `retention.ms`
//! is deleted at the broker's next retention check, which may come before anyone reads
//! it. Messages are stamped when made; dead letters and redrives when written.
//!
//! ```no_run
//! use tidewater_core::{Bus, EventRegistry};
//! use tidewater_kafka::{Kafka, KafkaConfig};
//!
//! # async fn example() -> tidewater_core::Result<()> {
//! let kafka = Kafka::connect(KafkaConfig::new("127.0.0.1:9092")).await?;
//! kafka.create_topic("orders", 6).await?;
//! let bus = Bus::new(&kafka, EventRegistry::new());
//! # let _ = bus;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod config;
mod errors;
mod ping;
mod reader;
mod record;
mod topics;
mod transaction;
mod writer;

use std::sync::Arc;

use rdkafka::producer::FutureProducer;
use tidewater_core::{Admin, Closable, Driver, Reader, Result, Transactions, Writer};

pub use config::{Compression, GroupScope, KafkaConfig, Partitioner, Sasl, SaslMechanism, Tls, TopicSpec};
pub use reader::KafkaReader;
pub use transaction::KafkaTransactions;
pub use writer::KafkaWriter;

/// Re-exported so services can reach librdkafka where tidewater does not go.
pub use rdkafka;

use crate::errors::kafka_error;
use crate::topics::Topics;

pub(crate) const DRIVER: &str = "kafka";

/// A connection to a Kafka cluster: one producer shared by every writer, and a
/// consumer per read task.
#[derive(Clone)]
pub struct Kafka {
    config: Arc<KafkaConfig>,
    topics: Arc<Topics>,
    producer: FutureProducer,
}

impl std::fmt::Debug for Kafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kafka").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Kafka {
    /// Connects as `config` says and checks that a broker answers.
    ///
    /// A broker that refuses the login (SASL) or the TLS handshake (an untrusted CA, a
    /// client certificate missing or refused) fails this at once with an
    /// [`ErrorKind::Config`](tidewater_core::ErrorKind::Config) error that gives the
    /// broker's reason. No answer within
    /// [`request_timeout`](KafkaConfig::request_timeout) is a
    /// [`ErrorKind::Connection`](tidewater_core::ErrorKind::Connection) error, with why the
    /// system could not connect where it can tell.
    pub async fn connect(config: KafkaConfig) -> Result<Self> {
        let config = Arc::new(config);
        let topics = Arc::new(Topics::new(Arc::clone(&config))?);
        ping::cluster(&config).await?;
        let producer: FutureProducer =
            config.producer().create().map_err(|e| kafka_error("cannot create the Kafka producer", e))?;
        Ok(Self { config, topics, producer })
    }

    /// Creates `topic` with `partitions` partitions (and the replication factor of
    /// [`KafkaConfig::auto_create_topics`], else the broker's default). A topic that
    /// exists already is fine.
    pub async fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        let replication = self.config.auto_create_topics.and_then(|spec| spec.replication_factor);
        self.topics.create(topic, partitions, replication).await
    }

    /// A writer. Writers share the producer; closing one closes only that writer.
    pub fn kafka_writer(&self) -> Closable<KafkaWriter> {
        Closable::new(
            DRIVER,
            KafkaWriter::new(self.producer.clone(), Arc::clone(&self.topics), self.config.max_message_bytes()),
        )
    }

    /// A reader.
    pub fn kafka_reader(&self) -> KafkaReader {
        KafkaReader::new(Arc::clone(&self.config), Arc::clone(&self.topics))
    }

    /// Transactions under the transactional id `id`: a transactional producer of their
    /// own, made at the first transaction. See [`KafkaTransactions`].
    pub fn kafka_transactions(&self, id: &str) -> KafkaTransactions {
        KafkaTransactions::new(Arc::clone(&self.config), Arc::clone(&self.topics), id)
    }

    /// The shared producer, for what tidewater does not cover.
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// The configuration.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }
}

impl Driver for Kafka {
    fn writer(&self) -> Arc<dyn Writer> {
        Arc::new(self.kafka_writer())
    }

    fn admin(&self) -> Arc<dyn Admin> {
        Arc::new(self.clone())
    }

    fn reader(&self) -> Arc<dyn Reader> {
        Arc::new(self.kafka_reader())
    }

    fn transactions(&self, id: &str) -> Result<Arc<dyn Transactions>> {
        Ok(Arc::new(self.kafka_transactions(id)))
    }
}

#[async_trait::async_trait]
impl Admin for Kafka {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        Kafka::create_topic(self, topic, partitions).await
    }

    /// Deletes the topic; the groups' committed offsets for it go with it on the broker.
    async fn delete_topic(&self, topic: &str) -> Result<()> {
        self.topics.delete(topic).await
    }

    async fn topics(&self) -> Result<Vec<String>> {
        self.topics.list().await
    }

    /// The high watermark less the group's committed offset, per partition; a group
    /// that committed nothing yet counts from the earliest message kept.
    async fn lag(&self, topic: &str, group: &str) -> Result<Vec<tidewater_core::PartitionLag>> {
        self.topics.lag(topic, group).await
    }
}
