//! The StreamBus driver of tidewater: a native client for the StreamBus binary protocol
//! (`shared/streambus-protocol.md`), for both broker generations.
//!
//! ```no_run
//! # async fn run() -> tidewater_core::Result<()> {
//! use tidewater_core::{Driver, Message};
//! use tidewater_streambus::{StreamBus, StreamBusConfig};
//!
//! let bus = StreamBus::connect(StreamBusConfig::new("127.0.0.1:9092")).await?;
//! bus.writer().write(vec![Message::new("orders", "{}").with_key("order-1")]).await?;
//! # Ok(()) }
//! ```
//!
//! **Generations.** On connect the driver probes the broker (FindCoordinator on a
//! connection of its own): a later broker answers, a v1.0.x broker closes the
//! connection. Against v1.0.x the driver degrades, as documented on each part:
//! - no consumer groups: a reader takes fixed partitions ([`StaticPartitions`], all by
//!   default) and keeps its group's positions in an [`OffsetStore`] (in memory by
//!   default, [`FileOffsets`] on disk);
//! - headers and timestamps are not stored by the broker, so message metadata (id,
//!   headers, content type, time) travels in a value envelope ([`Envelope`], on by
//!   default against v1.0.x; turn it off to share topics with plain StreamBus clients);
//! - transactions fail with `Unsupported` (later brokers have them: [`TransactionalWriter`],
//!   or [`StreamBusTransactions`] through tidewater's `Driver::transactions`).
//!
//! **Connections.** One bounded pool per broker address: a request borrows a
//! connection for its request and response (the protocol does not multiplex), waits
//! for a free one up to `acquire_timeout`, times out after `request_timeout`, and any
//! connection that failed (I/O, timeout, mismatched response id, bad frame) is closed,
//! never reused. Pooled connections idle for `idle_close` (20 s) are closed before the
//! broker's 30-second idle fault can make them silent. Dials back off after failures.
//!
//! **Errors** keep the broker's numeric code: [`broker_code`] gets it back from a
//! tidewater [`Error`](tidewater_core::Error).

#![forbid(unsafe_code)]

mod client;
mod config;
mod connection;
mod counters;
mod errors;
mod group;
mod offsets;
mod pool;
pub mod protocol;
mod reader;
mod record;
#[cfg(feature = "tls")]
mod tls;
mod transaction;
mod writer;

use std::sync::Arc;

use tidewater_core::{Admin, Closable, Driver, Reader, Result, Writer};

pub use client::BrokerGeneration;
pub use config::{CoordinatorAddress, Envelope, Generation, GroupScope, RetryPolicy, StreamBusConfig};
pub use counters::{CounterSnapshot, Counters, ProduceInfo, ProduceInterceptor};
pub use errors::{broker_code, BrokerError};
pub use offsets::{FileOffsets, MemoryOffsets, OffsetStore};
pub use reader::{StaticPartitions, StreamBusReader};
pub use record::ENVELOPE_MAGIC;
#[cfg(feature = "tls")]
pub use tls::TlsOptions;
pub use transaction::{StreamBusTransactions, Transaction, TransactionalWriter};
pub use writer::{partition_for_key, StreamBusWriter};

/// The driver's name in errors and logs.
pub const DRIVER: &str = "streambus";

/// A connection to one StreamBus broker: writers, readers and transactional writers.
/// Cheap to clone; clones share the connection pool, caches and counters.
#[derive(Clone)]
pub struct StreamBus {
    client: Arc<client::Client>,
}

impl std::fmt::Debug for StreamBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamBus")
            .field("broker", &self.client.config.broker)
            .field("generation", &self.client.generation)
            .finish()
    }
}

impl StreamBus {
    /// Connects: probes the broker's generation (unless configured) and checks that it
    /// answers a HealthCheck. Fails with a `Connection` error naming the address if it
    /// does not, and at once with a `Config` error if a TLS handshake failed on a
    /// certificate (the broker's not trusted, the client's refused).
    pub async fn connect(config: StreamBusConfig) -> Result<Self> {
        Ok(Self { client: client::Client::connect(config).await? })
    }

    /// The generation the broker speaks.
    pub fn generation(&self) -> BrokerGeneration {
        self.client.generation
    }

    /// Whether writers wrap values in the envelope.
    pub fn envelope(&self) -> bool {
        match self.client.config.envelope {
            Envelope::Always => true,
            Envelope::Never => false,
            Envelope::Auto => self.client.generation == BrokerGeneration::V1,
        }
    }

    /// The settings.
    pub fn config(&self) -> &StreamBusConfig {
        &self.client.config
    }

    /// Counters of everything sent and fetched through this connection.
    pub fn counters(&self) -> CounterSnapshot {
        self.client.counters.snapshot()
    }

    /// Creates `topic` with `partitions` partitions. The same count again is fine; a
    /// different count is an error (partitions are fixed at creation).
    pub async fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        self.client.create_topic(topic, partitions).await
    }

    /// A writer.
    pub fn streambus_writer(&self) -> Closable<StreamBusWriter> {
        Closable::new(DRIVER, StreamBusWriter::new(Arc::clone(&self.client), self.envelope()))
    }

    /// A reader.
    pub fn streambus_reader(&self) -> StreamBusReader {
        StreamBusReader::new(Arc::clone(&self.client))
    }

    /// A transactional writer with the id `transactional_id` (later brokers only).
    pub async fn transactional_writer(&self, transactional_id: impl Into<String>) -> Result<TransactionalWriter> {
        TransactionalWriter::init(Arc::clone(&self.client), transactional_id.into(), self.envelope()).await
    }

    /// Idle pooled connections to the configured broker, for diagnostics.
    pub fn idle_connections(&self) -> usize {
        self.client.idle_connections()
    }
}

impl Driver for StreamBus {
    fn admin(&self) -> Arc<dyn Admin> {
        Arc::new(self.clone())
    }

    fn writer(&self) -> Arc<dyn Writer> {
        Arc::new(self.streambus_writer())
    }

    fn reader(&self) -> Arc<dyn Reader> {
        Arc::new(self.streambus_reader())
    }

    /// Transactions on a later broker; `Unsupported` on v1.0.x, which has none.
    fn transactions(&self, id: &str) -> Result<Arc<dyn tidewater_core::Transactions>> {
        self.client.require_later("transactions")?;
        Ok(Arc::new(StreamBusTransactions::new(Arc::clone(&self.client), id, self.envelope())))
    }
}

#[async_trait::async_trait]
impl Admin for StreamBus {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    /// Creates the topic; one that exists with the same partition count is fine, with
    /// another count an error (partitions are fixed at creation).
    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        self.client.create_topic(topic, partitions).await
    }

    async fn delete_topic(&self, topic: &str) -> Result<()> {
        self.client.delete_topic(topic).await
    }

    async fn topics(&self) -> Result<Vec<String>> {
        Ok(self.client.list_topics().await?.into_iter().map(|(name, _)| name).collect())
    }

    /// The log end less the group's committed position, per partition: positions from
    /// the broker on later generations, from the [`OffsetStore`] on v1.0.x. StreamBus
    /// cannot list groups, so a group that committed nothing counts from the log start
    /// instead of being `UnknownGroup`.
    async fn lag(&self, topic: &str, group: &str) -> Result<Vec<tidewater_core::PartitionLag>> {
        let client = &self.client;
        let count = client.partitions(topic, false).await?;
        let partitions: Vec<u32> = (0..count).collect();
        let group_id = client.config.group_id(group, topic);
        let committed = match client.generation {
            BrokerGeneration::V1 => {
                let mut committed = std::collections::HashMap::new();
                for &p in &partitions {
                    if let Some(o) = client.config.offset_store.load(&group_id, topic, p).await? {
                        committed.insert(p, o);
                    }
                }
                committed
            }
            BrokerGeneration::Later => {
                group::Membership::new(Arc::clone(client), group_id, topic.to_owned()).committed(&partitions).await?
            }
        };
        let mut lags = Vec::with_capacity(partitions.len());
        for p in partitions {
            let (start, end) = client.offsets(topic, p).await?;
            let from = committed.get(&p).map_or(start, |&c| (c as i64).max(start));
            lags.push(tidewater_core::PartitionLag { partition: p, lag: (end - from).max(0) as u64 });
        }
        Ok(lags)
    }
}
