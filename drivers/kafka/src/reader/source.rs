//! The fetch side of a read task: records to deliveries, seeks for nacks, periodic
//! commits.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tidewater_core::{
    Delivery, Incoming, PartitionCommits, Position, Result, Settler, Source, TopicName, MOST_A_FETCH,
};
use tokio::time::Instant;

use crate::errors::{kafka_error, kind_of};
use crate::record::from_record;
use crate::topics::blocking;

use super::copies::Copies;
use super::keepalive::{self, Fetching};
use super::rebalance::ReaderContext;
use super::settle::Dispatch;
use super::state::{Rewind, Shared};
use super::SEEK_TIMEOUT;

/// The fetch side of one read task.
pub(super) struct KafkaSource {
    pub(super) consumer: Option<Arc<StreamConsumer<ReaderContext>>>,
    pub(super) shared: Arc<Shared>,
    /// The task that keeps the consumer in its group while the reader does not fetch.
    pub(super) keepalive: Option<tokio::task::AbortHandle>,
    pub(super) group: Option<Arc<str>>,
    pub(super) commit_interval: Duration,
    pub(super) next_commit: Instant,
    pub(super) copies: Copies,
    /// The records of the batch being fetched, each made its delivery as it is read
    /// (see [`fetched`]); the vector is kept for the next batch's.
    pub(super) records: Vec<Fetched>,
}

impl KafkaSource {
    /// Seeks and pauses that nacks asked for, and the periodic commit. Returns when it
    /// next has work.
    pub(super) fn housekeeping(&mut self, consumer: &StreamConsumer<ReaderContext>) -> Instant {
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
    pub(super) fn consumer_error(&self, err: KafkaError) -> Result<()> {
        if kind_of(&err).is_retryable() {
            tracing::warn!(topic = %self.shared.topic, error = %err, "Kafka consumer error; librdkafka retries");
            Ok(())
        } else {
            Err(kafka_error("the Kafka consumer failed", err).with_topic(&self.shared.topic))
        }
    }

    /// Hands fetched records' deliveries out, appended to `batch`, dropping leftovers of
    /// an old position; returns how many it appended.
    pub(super) fn dispatch(&self, records: &mut Vec<Fetched>, batch: &mut Vec<Incoming>) -> usize {
        let start = batch.len();
        let mut guard = self.shared.state();
        let state = &mut *guard;
        for Fetched { partition, offset, mut delivery } in records.drain(..) {
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
            let commits = part.commits.get_or_insert_with(|| PartitionCommits::new(offset));
            if offset < commits.next_offset() {
                // Dispatched again out of order: it replaces the earlier dispatch, which
                // is no longer current.
                self.shared.changed();
            }
            let ticket = commits.dispatched(offset);
            let attempt = state.attempts.get(&partition).and_then(|a| a.get(&offset)).copied().unwrap_or(1);
            let origin = state.origin.as_ref().map(|o| Arc::clone(o) as Arc<dyn std::any::Any + Send + Sync>);
            let note = Dispatch::note(part.generation, ticket, self.shared.changes());
            // Always true: the delivery was made by `fetched` and not cloned since.
            let set = delivery.set_dispatch(attempt, origin, note);
            debug_assert!(set);
            batch.push(Incoming { delivery, settle: Settler::Shared(Arc::clone(&self.shared) as _) });
        }
        batch.len() - start
    }
}

/// A fetched record: its partition, its offset and its delivery.
pub(super) struct Fetched {
    pub(super) partition: i32,
    pub(super) offset: u64,
    pub(super) delivery: Delivery,
}

/// A fetched record, made its delivery at once: its attempt and origin are set when it
/// is dispatched, under the reader's lock. Made here, the message is moved once, into
/// the delivery; kept as a message until the dispatch, it was moved into the batch,
/// out of it and into the delivery, each a copy of about 200 bytes (callgrind).
pub(super) fn fetched(
    topic: &TopicName,
    record: &BorrowedMessage<'_>,
    copies: &mut Copies,
    group: &Option<Arc<str>>,
) -> Fetched {
    let (partition, offset) = (record.partition(), record.offset() as u64);
    let position = Position::Log { partition: partition as u32, offset };
    let delivery = Delivery::new(from_record(topic, record, copies), 1, position, group.clone());
    Fetched { partition, offset, delivery }
}

pub(super) fn one(topic: &str, partition: i32) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    tpl
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        if let Some(keepalive) = &self.keepalive {
            keepalive.abort();
        }
    }
}

#[async_trait]
impl Source for KafkaSource {
    async fn next_batch(&mut self, batch: &mut Vec<Incoming>, max: usize) -> Result<usize> {
        let Some(consumer) = self.consumer.clone() else { return Ok(0) };
        let shared = Arc::clone(&self.shared);
        let _fetching = Fetching::begin(&shared);
        let mut stashed = std::mem::take(&mut self.records);
        keepalive::take_over(&consumer, &self.shared, &mut stashed);
        let n = self.dispatch(&mut stashed, batch);
        self.records = stashed;
        if n > 0 {
            return Ok(n);
        }
        loop {
            let wake_at = self.housekeeping(&consumer);
            // One stream for the whole batch: each stream registers a waker slot under a
            // lock when made and frees it when dropped, which `recv` would do per record.
            let mut stream = consumer.stream();
            let first = tokio::select! {
                biased;
                record = stream.next() => record.map(|r| r.map(|r| fetched(&self.shared.topic, &r, &mut self.copies, &self.group))),
                _ = self.shared.wake.notified() => continue,
                _ = tokio::time::sleep_until(wake_at) => continue,
            };
            // Reused from batch to batch: a new vector grew by doubling, moving every
            // record fetched so far each time.
            let mut records = std::mem::take(&mut self.records);
            match first {
                Some(Ok(record)) => records.push(record),
                Some(Err(err)) => {
                    self.consumer_error(err)?;
                    continue;
                }
                None => return Ok(0),
            }
            // Take what librdkafka already holds, without waiting for more, up to a
            // fetch's worth: the rest stays in librdkafka's queue, which the prefetch
            // sizes.
            while records.len() < max.min(MOST_A_FETCH) {
                match stream.next().now_or_never() {
                    Some(Some(Ok(r))) => records.push(fetched(&self.shared.topic, &r, &mut self.copies, &self.group)),
                    Some(Some(Err(err))) => {
                        self.consumer_error(err)?;
                        break;
                    }
                    Some(None) => return Ok(self.dispatch(&mut records, batch)),
                    None => break,
                }
            }
            drop(stream);
            let n = self.dispatch(&mut records, batch);
            self.records = records;
            if n > 0 {
                return Ok(n);
            }
        }
    }

    async fn close(&mut self) -> Result<()> {
        let Some(consumer) = self.consumer.take() else { return Ok(()) };
        // Under the keep-alive's lock: no pass holds the consumer once this returns.
        self.shared.idle().closed = true;
        if let Some(keepalive) = self.keepalive.take() {
            keepalive.abort();
        }
        let shared = Arc::clone(&self.shared);
        // Commit what was processed, then leave the group (closing the consumer blocks
        // until the broker has let it go, so it runs off the async threads).
        blocking(move || {
            shared.commit_now(&*consumer, |_| true);
            drop(consumer);
        })
        .await
    }

    /// Ready once the group assigned partitions: the rebalance callback marks it.
    fn announces_ready(&self) -> bool {
        true
    }
}
