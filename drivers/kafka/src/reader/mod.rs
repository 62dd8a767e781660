//! The read side: consumer groups whose commits never pass an unprocessed record.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tidewater_core::{IdFactory, ReadTask, Reader, ReadySignal, Result, Source, StartFrom, TopicName, UuidV7Ids};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::errors::kafka_error;
use crate::topics::Topics;
use crate::{KafkaConfig, DRIVER};

mod copies;
mod keepalive;
mod link;
mod rebalance;
mod settle;
mod source;
mod state;

pub(crate) use copies::Copies;
use link::Links;
use rebalance::ReaderContext;
use source::KafkaSource;
use state::Shared;

pub(super) const SEEK_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads a topic as a member of a consumer group.
///
/// - **Commits** are manual. A record counts as processed when its handler succeeded;
///   the offset committed for a partition is the lowest one not yet processed, so a
///   record whose handler still runs (for another key of the partition, with
///   concurrency above 1) is never passed. Processed offsets are committed every
///   `commit_interval`, when partitions are revoked, and when the reader stops.
/// - **Rebalances**: on revoke, what finished is committed first; records of a revoked
///   partition that were fetched but not yet handled are given back unhandled, and a
///   handler that finishes after the revoke commits nothing (its settlement fails, the
///   new owner reads the record again).
/// - **Nack** rewinds the partition: it seeks back to the record, after the nack delay
///   (the partition is paused meanwhile), so it and every later record of that
///   partition come again, in order. Records after it that were already handled come
///   again too. Prefer the retry middleware (which retries in place) or a retry topic
///   (with the dead-letter middleware) when one bad record should not hold back its
///   partition. Kafka keeps no delivery count, so this reader counts: a rewound record's
///   attempt goes up on each nack, also when a rebalance hands its partition back to
///   this reader; on another consumer it starts again at 1.
/// - **Group ids** are `<group>.<topic>` by default, so each topic's consumers
///   rebalance on their own; see [`GroupScope`](crate::GroupScope).
/// - **A task without a group** reads in a private group of its own, named
///   `tidewater-private-<uuid>`, that commits nothing.
/// - **Handlers busy for long**: while the reader does not fetch (its handlers have no
///   room), the consumer is polled with its partitions paused, so it stays in its group
///   however long they take, past `max.poll.interval.ms` too.
/// - **Latest**: a new group (no committed offset) starts at each partition's end as it
///   was when the partition was assigned, looked up before the reader says it is ready,
///   so nothing published after `start` returns is missed.
#[derive(Clone)]
pub struct KafkaReader {
    config: Arc<KafkaConfig>,
    topics: Arc<Topics>,
    links: Arc<Links>,
}

impl std::fmt::Debug for KafkaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReader").field("brokers", &self.config.brokers).finish_non_exhaustive()
    }
}

impl KafkaReader {
    pub(crate) fn new(config: Arc<KafkaConfig>, topics: Arc<Topics>) -> Self {
        Self { config, topics, links: Arc::default() }
    }
}

#[async_trait]
impl Reader for KafkaReader {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    /// Whether its consumers reach a broker, from the statistics librdkafka gives each
    /// second: false while any has none, `None` before the first statistics.
    fn connected(&self) -> Option<bool> {
        self.links.connected()
    }

    /// Subscribes; the reader is ready once the group assigned it partitions, which the
    /// rebalance callback says (see [`Source::announces_ready`]).
    async fn open(&self, task: &ReadTask, ready: &ReadySignal) -> Result<Box<dyn Source>> {
        self.topics.ensure(&task.topic).await?;
        let (group_id, commits) = match &task.group {
            Some(group) => (self.config.group_id(group, &task.topic), true),
            None => (format!("tidewater-private-{}", UuidV7Ids.next_id()), false),
        };
        let shared = Arc::new(Shared {
            topic: TopicName::from(&task.topic),
            commits,
            start: task.start,
            request_timeout: self.config.request_timeout,
            ready: ready.clone(),
            state: Mutex::default(),
            wake: Notify::new(),
            changes: AtomicU64::new(0),
            fetching: AtomicBool::new(false),
            idle: Mutex::default(),
        });
        let context = ReaderContext { shared: Arc::clone(&shared), link: self.links.add() };
        let consumer: StreamConsumer<ReaderContext> = self
            .config
            .consumer(&group_id, task.start == StartFrom::Earliest, task.prefetch)
            .create_with_context(context)
            .map_err(|e| kafka_error("cannot create the Kafka consumer", e))?;
        consumer
            .subscribe(&[&task.topic])
            .map_err(|e| kafka_error(format!("cannot subscribe to {:?}", task.topic), e).with_topic(&task.topic))?;
        let consumer = Arc::new(consumer);
        let group: Option<Arc<str>> = task.group.as_deref().map(Arc::from);
        let keepalive =
            tokio::spawn(keepalive::run(Arc::downgrade(&consumer), Arc::clone(&shared), group.clone())).abort_handle();
        Ok(Box::new(KafkaSource {
            consumer: Some(consumer),
            shared,
            keepalive: Some(keepalive),
            group,
            commit_interval: self.config.commit_interval,
            next_commit: Instant::now() + self.config.commit_interval,
            copies: Copies::default(),
            records: Vec::new(),
        }))
    }
}
