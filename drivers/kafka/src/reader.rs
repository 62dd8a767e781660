//! The read side: consumer groups whose commits never pass an unprocessed record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};
use tidewater_core::{
    run_source, BoxHandler, Delivery, DeliveryModel, Error, ErrorKind, IdFactory, Incoming, Message, PartitionCommits,
    Position, ReadContext, ReadTask, Reader, ReadySignal, Result, Settle, Settlement, Source, StartFrom, Ticket,
    UuidV7Ids,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::errors::{kafka_error, kind_of};
use crate::record::from_record;
use crate::topics::{blocking, Topics};
use crate::transaction::KafkaOrigin;
use crate::{KafkaConfig, DRIVER};

const SEEK_TIMEOUT: Duration = Duration::from_secs(5);

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
/// - **Latest**: a new group (no committed offset) starts at each partition's end as it
///   was when the partition was assigned, looked up before the reader says it is ready,
///   so nothing published after `start` returns is missed.
#[derive(Clone)]
pub struct KafkaReader {
    config: Arc<KafkaConfig>,
    topics: Arc<Topics>,
}

impl std::fmt::Debug for KafkaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReader").field("brokers", &self.config.brokers).finish_non_exhaustive()
    }
}

impl KafkaReader {
    pub(crate) fn new(config: Arc<KafkaConfig>, topics: Arc<Topics>) -> Self {
        Self { config, topics }
    }
}

#[async_trait]
impl Reader for KafkaReader {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    fn model(&self) -> DeliveryModel {
        DeliveryModel::Log
    }

    async fn read(&self, task: ReadTask, handler: BoxHandler, ctx: ReadContext) -> Result<()> {
        self.topics.ensure(&task.topic).await?;
        let (group_id, commits) = match &task.group {
            Some(group) => (self.config.group_id(group, &task.topic), true),
            None => (format!("tidewater-private-{}", UuidV7Ids.next_id()), false),
        };
        let shared = Arc::new(Shared {
            topic: task.topic.clone(),
            commits,
            start: task.start,
            request_timeout: self.config.request_timeout,
            ready: ctx.ready.clone(),
            state: Mutex::default(),
            wake: Notify::new(),
        });
        let context = ReaderContext { shared: Arc::clone(&shared) };
        let consumer: StreamConsumer<ReaderContext> = self
            .config
            .consumer(&group_id, task.start == StartFrom::Earliest, task.prefetch)
            .create_with_context(context)
            .map_err(|e| kafka_error("cannot create the Kafka consumer", e))?;
        consumer
            .subscribe(&[&task.topic])
            .map_err(|e| kafka_error(format!("cannot subscribe to {:?}", task.topic), e).with_topic(&task.topic))?;
        let mut source = KafkaSource {
            consumer: Some(Arc::new(consumer)),
            shared,
            group: task.group.as_deref().map(Arc::from),
            commit_interval: self.config.commit_interval,
            next_commit: Instant::now() + self.config.commit_interval,
        };
        run_source(&mut source, handler, &task, &ctx).await
    }
}

/// What the consumer's callbacks, the source and the settle handles share.
struct Shared {
    topic: String,
    /// False for a private group, which commits nothing.
    commits: bool,
    start: StartFrom,
    request_timeout: Duration,
    ready: ReadySignal,
    state: Mutex<State>,
    /// Wakes the source when a nack asks for a seek.
    wake: Notify,
}

#[derive(Default)]
struct State {
    /// Counts assignments, so a settle handle can tell its partition was revoked even
    /// if the same partition was assigned again since.
    generation: u64,
    partitions: HashMap<i32, Part>,
    /// Delivery attempts of nacked records that are to come again, by partition and
    /// offset. Kept apart from the assignment, so that a rebalance that gives this
    /// consumer the partition back does not reset the count.
    attempts: HashMap<i32, HashMap<u64, u32>>,
    /// The group's membership as of the last assignment, which deliveries carry so a
    /// transaction can commit their offsets (and the broker can refuse a stale one).
    origin: Option<Arc<KafkaOrigin>>,
}

/// One assigned partition.
struct Part {
    generation: u64,
    /// Created at the first record fetched, whose offset is where reading started.
    commits: Option<PartitionCommits>,
    /// The last offset sent to the broker as committed.
    committed: Option<u64>,
    /// A seek a nack asked for, not yet done.
    rewind: Option<Rewind>,
    /// After a seek to this offset, records above it are leftovers of the old position.
    awaiting: Option<u64>,
    paused: bool,
}

#[derive(Clone, Copy)]
struct Rewind {
    offset: u64,
    due: Instant,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The offsets to commit for the partitions `which` selects, marked as sent.
    fn to_commit(&self, which: impl Fn(i32) -> bool) -> Option<TopicPartitionList> {
        if !self.commits {
            return None;
        }
        let mut tpl = TopicPartitionList::new();
        let mut state = self.state();
        for (&partition, part) in state.partitions.iter_mut() {
            let Some(commits) = &part.commits else { continue };
            let point = commits.committable();
            if which(partition) && part.committed.is_none_or(|sent| point > sent) {
                // Adding an offset to a fresh list cannot fail.
                let _ = tpl.add_partition_offset(&self.topic, partition, Offset::Offset(point as i64));
                part.committed = Some(point);
            }
        }
        (tpl.count() > 0).then_some(tpl)
    }

    /// Forgets what was sent for `tpl`, so the next commit sends it again.
    fn commit_failed(&self, tpl: &TopicPartitionList) {
        let mut state = self.state();
        for elem in tpl.elements() {
            if let (Some(part), Offset::Offset(offset)) = (state.partitions.get_mut(&elem.partition()), elem.offset()) {
                if part.committed == Some(offset as u64) {
                    part.committed = None;
                }
            }
        }
    }

    /// Commits synchronously on `consumer`; for revokes and for the stop.
    fn commit_now(&self, consumer: &impl Consumer<ReaderContext>, which: impl Fn(i32) -> bool) {
        if let Some(tpl) = self.to_commit(which) {
            if let Err(err) = consumer.commit(&tpl, CommitMode::Sync) {
                tracing::warn!(topic = %self.topic, error = %err, "committing processed offsets failed");
                self.commit_failed(&tpl);
            }
        }
    }
}

/// The consumer's callbacks: rebalances and commit results.
struct ReaderContext {
    shared: Arc<Shared>,
}

impl ClientContext for ReaderContext {}

impl ConsumerContext for ReaderContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, tpl),
            other => {
                tracing::warn!(topic = %self.shared.topic, error = ?other, "rebalance failed; giving up the assignment");
                self.revoke(consumer, tpl);
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(err) = result {
            tracing::warn!(topic = %self.shared.topic, error = %err, "committing processed offsets failed; will retry");
            self.shared.commit_failed(offsets);
        }
    }
}

impl ReaderContext {
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let shared = &self.shared;
        let mut assignment = tpl.clone();
        if shared.start == StartFrom::Latest {
            self.resolve_latest(consumer, &mut assignment);
        }
        {
            let mut state = shared.state();
            state.generation += 1;
            let generation = state.generation;
            if shared.commits {
                state.origin = consumer.group_metadata().map(|group| Arc::new(KafkaOrigin { group }));
            }
            for elem in tpl.elements() {
                state.partitions.insert(
                    elem.partition(),
                    Part { generation, commits: None, committed: None, rewind: None, awaiting: None, paused: false },
                );
            }
        }
        if let Err(err) = consumer.assign(&assignment) {
            tracing::warn!(topic = %shared.topic, error = %err, "taking the assigned partitions failed");
        }
        tracing::debug!(topic = %shared.topic, partitions = tpl.count(), "partitions assigned");
        shared.ready.ready();
    }

    /// Gives partitions without a committed offset an explicit start at their current
    /// end, so that readiness means what it says: everything published from now on
    /// arrives. (Left to `auto.offset.reset=latest`, the end would be looked up after
    /// the reader said it was ready, and a message published in between would be lost.)
    fn resolve_latest(&self, consumer: &BaseConsumer<Self>, assignment: &mut TopicPartitionList) {
        let shared = &self.shared;
        let committed = match consumer.committed_offsets(assignment.clone(), shared.request_timeout) {
            Ok(committed) => committed,
            Err(err) => {
                tracing::warn!(topic = %shared.topic, error = %err, "cannot read committed offsets; starting at the end");
                return;
            }
        };
        for elem in committed.elements() {
            if matches!(elem.offset(), Offset::Offset(_)) {
                continue;
            }
            match consumer.fetch_watermarks(&shared.topic, elem.partition(), shared.request_timeout) {
                Ok((_, high)) => {
                    let _ = assignment.set_partition_offset(&shared.topic, elem.partition(), Offset::Offset(high));
                }
                Err(err) => tracing::warn!(topic = %shared.topic, error = %err, "cannot look the partition end up"),
            }
        }
    }

    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let shared = &self.shared;
        let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        shared.commit_now(consumer, |p| revoked.contains(&p));
        {
            let mut state = shared.state();
            for p in &revoked {
                if let Some(point) = state.partitions.remove(p).and_then(|part| part.commits).map(|c| c.committable()) {
                    // Below the commit point everything was processed: nothing to count.
                    if let Some(attempts) = state.attempts.get_mut(p) {
                        attempts.retain(|offset, _| *offset >= point);
                    }
                }
            }
        }
        if let Err(err) = consumer.unassign() {
            tracing::warn!(topic = %shared.topic, error = %err, "giving the revoked partitions up failed");
        }
        tracing::debug!(topic = %shared.topic, partitions = revoked.len(), "partitions revoked");
    }
}

/// The fetch side of one read task.
struct KafkaSource {
    consumer: Option<Arc<StreamConsumer<ReaderContext>>>,
    shared: Arc<Shared>,
    group: Option<Arc<str>>,
    commit_interval: Duration,
    next_commit: Instant,
}

impl KafkaSource {
    /// Seeks and pauses that nacks asked for, and the periodic commit. Returns when it
    /// next has work.
    fn housekeeping(&mut self, consumer: &StreamConsumer<ReaderContext>) -> Instant {
        let shared = &self.shared;
        let now = Instant::now();
        let mut next = self.next_commit;
        let mut seeks = Vec::new();
        let mut pauses = Vec::new();
        {
            let mut state = shared.state();
            for (&partition, part) in state.partitions.iter_mut() {
                let Some(rewind) = part.rewind else { continue };
                if rewind.due <= now {
                    seeks.push((partition, rewind.offset, part.paused));
                    part.rewind = None;
                    part.paused = false;
                    part.awaiting = Some(rewind.offset);
                } else {
                    if !part.paused {
                        pauses.push(partition);
                        part.paused = true;
                    }
                    next = next.min(rewind.due);
                }
            }
        }
        for partition in pauses {
            if let Err(err) = consumer.pause(&one(&shared.topic, partition)) {
                tracing::warn!(topic = %shared.topic, partition, error = %err, "pausing the partition failed");
            }
        }
        for (partition, offset, paused) in seeks {
            // Waiting for the seek (a hand-over to librdkafka's own thread, no broker
            // round trip) means records fetched from the old position are dropped by
            // librdkafka from here on; an asynchronous seek lets some through.
            let seek = consumer.seek(&shared.topic, partition, Offset::Offset(offset as i64), SEEK_TIMEOUT);
            if let Err(err) = seek {
                tracing::warn!(topic = %shared.topic, partition, offset, error = %err, "seeking back failed; retrying");
                let mut state = shared.state();
                if let Some(part) = state.partitions.get_mut(&partition) {
                    part.awaiting = None;
                    part.rewind = Some(Rewind { offset, due: now + Duration::from_millis(50) });
                    part.paused = paused;
                }
                next = next.min(now + Duration::from_millis(50));
                continue;
            }
            if paused {
                if let Err(err) = consumer.resume(&one(&shared.topic, partition)) {
                    tracing::warn!(topic = %shared.topic, partition, error = %err, "resuming the partition failed");
                }
            }
        }
        if now >= self.next_commit {
            if let Some(tpl) = shared.to_commit(|_| true) {
                if let Err(err) = consumer.commit(&tpl, CommitMode::Async) {
                    tracing::warn!(topic = %shared.topic, error = %err, "committing processed offsets failed");
                    shared.commit_failed(&tpl);
                }
            }
            self.next_commit = now + self.commit_interval;
            next = next.min(self.next_commit);
        }
        next
    }

    /// An error the consumer reported: librdkafka retries the transient ones itself.
    fn consumer_error(&self, err: KafkaError) -> Result<()> {
        if kind_of(&err).is_retryable() {
            tracing::warn!(topic = %self.shared.topic, error = %err, "Kafka consumer error; librdkafka retries");
            Ok(())
        } else {
            Err(kafka_error("the Kafka consumer failed", err).with_topic(&self.shared.topic))
        }
    }

    /// Turns fetched records into deliveries appended to `batch`, dropping leftovers of an
    /// old position; returns how many it appended.
    fn dispatch(&self, records: Vec<(i32, u64, Message)>, batch: &mut Vec<Incoming>) -> usize {
        let start = batch.len();
        let mut guard = self.shared.state();
        let state = &mut *guard;
        for (partition, offset, message) in records {
            let Some(part) = state.partitions.get_mut(&partition) else { continue };
            if part.rewind.is_some() {
                continue;
            }
            if let Some(target) = part.awaiting {
                // Until the record sought arrives, anything else is left over from the
                // old position: records above it come again after it, and records below
                // it were dispatched before (and may still be running).
                if offset != target {
                    continue;
                }
                part.awaiting = None;
            }
            let ticket = part.commits.get_or_insert_with(|| PartitionCommits::new(offset)).dispatched(offset);
            let attempt = state.attempts.get(&partition).and_then(|a| a.get(&offset)).copied().unwrap_or(1);
            let position = Position::Log { partition: partition as u32, offset };
            batch.push(Incoming {
                delivery: match &state.origin {
                    Some(origin) => {
                        let origin: Arc<dyn std::any::Any + Send + Sync> = Arc::clone(origin) as _;
                        Delivery::with_origin(message, attempt, position, self.group.clone(), origin)
                    }
                    None => Delivery::new(message, attempt, position, self.group.clone()),
                },
                settle: Box::new(KafkaSettle {
                    shared: Arc::clone(&self.shared),
                    partition,
                    generation: part.generation,
                    ticket,
                    attempt,
                }),
            });
        }
        batch.len() - start
    }
}

/// A fetched record's partition, offset and message.
fn fetched(record: &BorrowedMessage<'_>) -> (i32, u64, Message) {
    (record.partition(), record.offset() as u64, from_record(record))
}

fn one(topic: &str, partition: i32) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    tpl
}

#[async_trait]
impl Source for KafkaSource {
    async fn next_batch(&mut self, batch: &mut Vec<Incoming>, max: usize) -> Result<usize> {
        let Some(consumer) = self.consumer.clone() else { return Ok(0) };
        loop {
            let wake_at = self.housekeeping(&consumer);
            let first = tokio::select! {
                biased;
                record = consumer.recv() => record.map(|r| fetched(&r)),
                _ = self.shared.wake.notified() => continue,
                _ = tokio::time::sleep_until(wake_at) => continue,
            };
            let mut records = Vec::new();
            match first {
                Ok(record) => records.push(record),
                Err(err) => {
                    self.consumer_error(err)?;
                    continue;
                }
            }
            // Take what librdkafka already holds, without waiting for more.
            while records.len() < max {
                match consumer.recv().now_or_never() {
                    Some(Ok(r)) => records.push(fetched(&r)),
                    Some(Err(err)) => {
                        self.consumer_error(err)?;
                        break;
                    }
                    None => break,
                }
            }
            let n = self.dispatch(records, batch);
            if n > 0 {
                return Ok(n);
            }
        }
    }

    async fn close(&mut self) -> Result<()> {
        let Some(consumer) = self.consumer.take() else { return Ok(()) };
        let shared = Arc::clone(&self.shared);
        // Commit what was processed, then leave the group (closing the consumer blocks
        // until the broker has let it go, so it runs off the async threads).
        blocking(move || {
            shared.commit_now(&*consumer, |_| true);
            drop(consumer);
        })
        .await
    }
}

/// Settles one record: counts it towards the commit, or rewinds its partition.
struct KafkaSettle {
    shared: Arc<Shared>,
    partition: i32,
    generation: u64,
    ticket: Ticket,
    attempt: u32,
}

impl KafkaSettle {
    fn gone(&self, why: &str) -> Error {
        Error::new(
            ErrorKind::BrokerTransient,
            format!(
                "record {} of partition {} was not settled: {why}; it will be delivered again",
                self.ticket.offset, self.partition
            ),
        )
        .with_driver(DRIVER)
        .with_topic(&self.shared.topic)
    }
}

#[async_trait]
impl Settle for KafkaSettle {
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<()> {
        let mut guard = self.shared.state();
        let state = &mut *guard;
        let Some(part) = state.partitions.get_mut(&self.partition).filter(|p| p.generation == self.generation) else {
            return Err(self.gone("the partition was revoked"));
        };
        let Some(commits) = part.commits.as_mut().filter(|c| c.is_current(self.ticket)) else {
            return Err(self.gone("a nack of an earlier record rewound the partition"));
        };
        let offset = self.ticket.offset;
        match settlement {
            Settlement::Ack => {
                commits.processed(self.ticket);
                if let Some(attempts) = state.attempts.get_mut(&self.partition) {
                    attempts.remove(&offset);
                }
            }
            Settlement::Nack { delay } => {
                commits.rewind(offset);
                part.rewind = Some(Rewind { offset, due: Instant::now() + delay.unwrap_or_default() });
                part.awaiting = None;
                state.attempts.entry(self.partition).or_default().insert(offset, self.attempt.saturating_add(1));
                drop(guard);
                self.shared.wake.notify_one();
            }
        }
        Ok(())
    }

    fn is_current(&self) -> bool {
        let state = self.shared.state();
        state
            .partitions
            .get(&self.partition)
            .filter(|p| p.generation == self.generation)
            .and_then(|p| p.commits.as_ref())
            .is_some_and(|c| c.is_current(self.ticket))
    }
}
