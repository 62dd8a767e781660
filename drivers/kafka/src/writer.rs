//! The write side: a producer that waits for the broker's acknowledgement.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot::Canceled;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tidewater_core::{names, wire, BrokerWriter, Error, ErrorKind, Message, Result};

use crate::errors::kafka_error;
use crate::record;
use crate::topics::Topics;
use crate::DRIVER;

/// Writes to Kafka through a producer shared by every writer of one [`Kafka`](crate::Kafka).
///
/// A write returns once the brokers acknowledged every message of the batch (with the
/// idempotent producer, `acks=all`). A message's key picks its partition with
/// [`KafkaConfig::partitioner`](crate::KafkaConfig::partitioner): by default murmur2, as
/// Apache Kafka's Java client and Kafka Streams do, so a key lands where they put it.
/// Clients built on librdkafka (confluent-kafka for Python, Go and .NET, kcat) hash with
/// CRC32 by default and put most keys elsewhere, unless they set `murmur2_random` or
/// tidewater is set to [`Partitioner::ConsistentRandom`](crate::Partitioner::ConsistentRandom).
/// Keyless messages are spread at random. When librdkafka's queue is full, the write waits for
/// earlier messages to be acknowledged rather than fail. A message queued for a
/// partition that turns out to be gone (its topic was deleted and made again with fewer)
/// is queued once more, to a partition there is.
pub struct KafkaWriter {
    producer: FutureProducer,
    topics: Arc<Topics>,
    /// The producer's `message.max.bytes`.
    max_message_bytes: usize,
}

impl std::fmt::Debug for KafkaWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaWriter").finish_non_exhaustive()
    }
}

impl KafkaWriter {
    pub(crate) fn new(producer: FutureProducer, topics: Arc<Topics>, max_message_bytes: usize) -> Self {
        Self { producer, topics, max_message_bytes }
    }

    /// Refuses `message`, the `i`-th of its batch, if librdkafka would: checked for the
    /// whole batch before any of it is queued, where librdkafka's own check comes only as
    /// each is queued.
    fn check_size(&self, i: usize, message: &Message) -> Result<()> {
        let size = record::wire_size(message);
        if size <= self.max_message_bytes {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "{} takes {size} bytes as a record; the producer takes at most {} (its \
                 message.max.bytes), so nothing of the batch was written",
                wire::in_batch(i, message),
                self.max_message_bytes
            ),
        )
        .with_driver(DRIVER)
        .with_topic(message.stream.clone()))
    }

    /// Queues the messages of `batch` at `indexes` and waits for their deliveries: each
    /// one that failed goes to `failures`, or to `again` when its partition was gone.
    async fn queue_all(
        &self,
        batch: &[Message],
        indexes: impl Iterator<Item = usize>,
        failures: &mut Vec<(usize, Error)>,
        again: &mut Vec<(usize, KafkaError)>,
    ) {
        let mut pending = VecDeque::with_capacity(batch.len());
        for i in indexes {
            self.enqueue(batch, i, &mut pending, failures, again).await;
        }
        for (i, delivery) in pending {
            settle(batch, i, delivery.await, failures, again);
        }
    }

    /// Queues `batch[index]`, waiting for room in librdkafka's queue. A message
    /// librdkafka refuses goes to `failures`.
    async fn enqueue(
        &self,
        batch: &[Message],
        index: usize,
        pending: &mut VecDeque<(usize, DeliveryFuture)>,
        failures: &mut Vec<(usize, Error)>,
        again: &mut Vec<(usize, KafkaError)>,
    ) {
        let message = &batch[index];
        let mut record = FutureRecord::to(&message.stream)
            .payload(&message.payload[..])
            .timestamp(record::timestamp(message))
            .headers(record::headers(message));
        if let Some(key) = &message.key {
            record = record.key(&key[..]);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    pending.push_back((index, delivery));
                    return;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    // Room comes when earlier messages are acknowledged: wait for ours,
                    // or, when another writer filled the queue, a moment.
                    match pending.pop_front() {
                        Some((i, delivery)) => settle(batch, i, delivery.await, failures, again),
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
                Err((err, _)) => {
                    failures.push((index, kafka_error(format!("cannot queue {}", wire::which(message)), err)));
                    return;
                }
            }
        }
    }
}

/// Notes the outcome of `batch[index]`'s delivery: a failure goes to `failures`, or to
/// `again` when the partition it was queued for is gone.
fn settle(
    batch: &[Message],
    index: usize,
    outcome: std::result::Result<OwnedDeliveryResult, Canceled>,
    failures: &mut Vec<(usize, Error)>,
    again: &mut Vec<(usize, KafkaError)>,
) {
    match outcome {
        Ok(Ok(_)) => {}
        Ok(Err((err @ KafkaError::MessageProduction(RDKafkaErrorCode::UnknownPartition), _))) => {
            again.push((index, err));
        }
        Ok(Err((err, _))) => failures.push((index, not_written(&batch[index], err))),
        Err(_) => failures
            .push((index, Error::closed("the producer was dropped before the broker answered").with_driver(DRIVER))),
    }
}

fn not_written(message: &Message, err: KafkaError) -> Error {
    kafka_error(format!("{} was not written", wire::which(message)), err)
}

impl BrokerWriter for KafkaWriter {
    async fn write(&self, batch: Vec<Message>) -> Result<()> {
        // Check every message before queueing any, so bad input writes nothing: its
        // topic's name, headers and size first, which need no broker, so that a bad
        // message does not create the topics of the good ones; then its topic. Each
        // record's headers are built as it is queued: librdkafka's linger starts with a
        // partition's first record, so work done before that one is queued adds to the
        // batch's time, where work between records overlaps it.
        // Each run of messages to one topic names it once, here and in the lookup.
        let mut runs: Vec<&str> = Vec::new();
        for (i, message) in batch.iter().enumerate() {
            if runs.last() != Some(&message.stream.as_str()) {
                names::check_topic(&message.stream).map_err(|e| e.with_driver(DRIVER))?;
                runs.push(&message.stream);
            }
            wire::check_headers(message, DRIVER)?;
            self.check_size(i, message)?;
        }
        for topic in runs {
            self.topics.ensure(topic).await?;
        }
        let (mut failures, mut again) = (Vec::new(), Vec::new());
        self.queue_all(&batch, 0..batch.len(), &mut failures, &mut again).await;
        if !again.is_empty() {
            // The topic was deleted and made again with fewer partitions: librdkafka
            // learned it from these failures, and queued again, each message goes to a
            // partition there is. Nothing of them was written, so nothing is doubled.
            let gone = std::mem::take(&mut again);
            self.queue_all(&batch, gone.into_iter().map(|(i, _)| i), &mut failures, &mut again).await;
            failures.extend(again.into_iter().map(|(i, err)| (i, not_written(&batch[i], err))));
        }
        summarize(&batch, failures)
    }

    /// Nothing to wait for: a write returns only once the brokers acknowledged it. (The
    /// producer is shared, and librdkafka's own flush would wait for every writer's
    /// messages, never returning while others keep writing.)
    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// One error for a batch: the first failure's kind, naming every failed message. Each
/// failure's text goes in once, without the kind and driver it already shares.
fn summarize(batch: &[Message], mut failures: Vec<(usize, Error)>) -> Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    failures.sort_by_key(|(i, _)| *i);
    if failures.len() == 1 {
        let (index, err) = failures.remove(0);
        return Err(err.with_topic(batch[index].stream.clone()));
    }
    let (_, first) = &failures[0];
    let listed: Vec<String> =
        failures.iter().take(5).map(|(i, e)| format!("{}: {}", batch[*i].id, e.message())).collect();
    let more = failures.len().saturating_sub(5);
    let mut text = format!("{} of {} messages were not written: {}", failures.len(), batch.len(), listed.join("; "));
    if more > 0 {
        text.push_str(&format!(" (and {more} more)"));
    }
    Err(Error::new(first.kind(), text).with_driver(DRIVER))
}
