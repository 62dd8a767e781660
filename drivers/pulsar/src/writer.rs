//! The write side: a producer per topic, every write waits for the broker's receipts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pulsar::producer::{Producer, SendFuture};
use pulsar::{ProducerOptions, TokioExecutor};
use tidewater_core::{await_receipts, names, BrokerWriter, Error, ErrorKind, Message, Result, TopicName};
use tokio::sync::OnceCell;

use crate::errors::{kind_of, pulsar_error};
use crate::record::{check, to_pulsar};
use crate::{PulsarConfig, DRIVER};

type SharedProducer = Arc<tokio::sync::Mutex<Producer<TokioExecutor>>>;

/// The producers of one [`Pulsar`](crate::Pulsar) connection, one per topic, created at
/// a topic's first write and shared by all writers.
pub(crate) struct Producers {
    client: pulsar::Pulsar<TokioExecutor>,
    config: Arc<PulsarConfig>,
    by_topic: Mutex<HashMap<String, Arc<OnceCell<SharedProducer>>>>,
}

impl Producers {
    pub(crate) fn new(client: pulsar::Pulsar<TokioExecutor>, config: Arc<PulsarConfig>) -> Self {
        Self { client, config, by_topic: Mutex::default() }
    }

    fn options(&self) -> ProducerOptions {
        let mut options = ProducerOptions {
            compression: self.config.compression.codec(),
            // A burst waits for room in the connection's queue instead of failing.
            block_queue_if_full: true,
            // Without a policy the crate sends every message to the next partition in
            // turn, keyed or not, so one key's messages spread over the partitions and
            // could be read out of order. This one picks a keyed message's partition by
            // a hash of its key (murmur3), and turns only for messages without a key.
            routing_policy: Some(pulsar::routing_policy::RoutingPolicy::RoundRobin),
            ..Default::default()
        };
        if let Some(batching) = self.config.batching {
            options.batch_size = Some(batching.max_messages.max(1));
            options.batch_byte_size = Some(batching.max_bytes);
            options.batch_timeout = Some(batching.linger);
        }
        options
    }

    /// The producer for `topic`, created on first use.
    async fn producer(&self, topic: &str) -> Result<SharedProducer> {
        let cell = {
            let mut by_topic = self.by_topic.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(by_topic.entry(topic.to_owned()).or_default())
        };
        cell.get_or_try_init(|| async {
            let build =
                self.client.producer().with_topic(self.config.full_topic(topic)).with_options(self.options()).build();
            match tokio::time::timeout(self.config.request_timeout, build).await {
                Ok(Ok(producer)) => Ok(Arc::new(tokio::sync::Mutex::new(producer))),
                Ok(Err(err)) => Err(pulsar_error("cannot create a Pulsar producer", err).with_topic(topic)),
                Err(_) => Err(Error::new(ErrorKind::Timeout, "creating a Pulsar producer timed out")
                    .with_driver(DRIVER)
                    .with_topic(topic)),
            }
        })
        .await
        .cloned()
    }

    /// Forgets `topic`'s producer after it failed for good or its topic was deleted, so
    /// the next write makes a new one, looking the topic up again. (Dropped with the
    /// last write that still holds it, the old one closes.)
    pub(crate) fn forget(&self, topic: &str) {
        self.by_topic.lock().unwrap_or_else(|e| e.into_inner()).remove(topic);
    }

    fn all(&self) -> Vec<SharedProducer> {
        let by_topic = self.by_topic.lock().unwrap_or_else(|e| e.into_inner());
        by_topic.values().filter_map(|cell| cell.get().cloned()).collect()
    }

    /// Sends the messages of a batch that have one topic, each as `messages` yields it;
    /// returns the receipts to wait for.
    async fn send(
        &self,
        topic: &str,
        messages: impl ExactSizeIterator<Item = pulsar::producer::Message> + Send,
    ) -> Result<Vec<SendFuture>> {
        let producer = self.producer(topic).await?;
        let mut producer = producer.lock().await;
        let mut receipts = Vec::with_capacity(messages.len());
        for message in messages {
            match producer.send_non_blocking(message).await {
                Ok(receipt) => receipts.push(receipt),
                Err(err) => {
                    if matches!(kind_of(&err), ErrorKind::Closed | ErrorKind::UnknownTopic) {
                        self.forget(topic);
                    }
                    return Err(pulsar_error("sending to Pulsar failed", err).with_topic(topic));
                }
            }
        }
        Ok(receipts)
    }

    pub(crate) async fn flush(&self) -> Result<()> {
        for producer in self.all() {
            let mut producer = producer.lock().await;
            if self.config.batching.is_some() {
                let topic = producer.topic().to_owned();
                producer
                    .send_batch()
                    .await
                    .map_err(|e| pulsar_error("flushing a batch failed", e).with_topic(topic))?;
            }
        }
        Ok(())
    }
}

/// Writes to Pulsar. A write returns when the broker has stored every message of it
/// (a send receipt each), so every failure reaches the caller; messages of one topic keep
/// their order. Batching (on by default) groups messages of concurrent writes into one
/// broker entry; a write of one message waits at most the batch's linger.
pub struct PulsarWriter {
    producers: Arc<Producers>,
    max_message_bytes: usize,
}

impl PulsarWriter {
    pub(crate) fn new(producers: Arc<Producers>, max_message_bytes: usize) -> Self {
        Self { producers, max_message_bytes }
    }
}

impl std::fmt::Debug for PulsarWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PulsarWriter").finish_non_exhaustive()
    }
}

impl BrokerWriter for PulsarWriter {
    async fn write(&self, batch: Vec<Message>) -> Result<()> {
        // Check everything before sending anything, so bad input sends nothing.
        for message in &batch {
            names::check_topic(&message.stream).map_err(|e| e.with_driver(DRIVER))?;
            check(message, self.max_message_bytes)?;
        }
        let mut by_topic: Vec<(&TopicName, Vec<&Message>)> = Vec::new();
        for message in &batch {
            match by_topic.iter_mut().find(|(topic, _)| **topic == message.stream) {
                Some((_, messages)) => messages.push(message),
                None => by_topic.push((&message.stream, vec![message])),
            }
        }
        let mut receipts = Vec::with_capacity(batch.len());
        for (topic, messages) in by_topic {
            // Each message is built as it is sent, not all of them first: the producer's
            // linger starts at a batch's first message, so building first would add
            // that time to every batch.
            let sent = self.producers.send(topic, messages.iter().map(|m| to_pulsar(m))).await?;
            receipts.extend(messages.iter().zip(sent).map(|(m, receipt)| (topic.clone(), m.id.clone(), receipt)));
        }
        await_receipts(DRIVER, "stored", receipts, |e, topic| {
            // The topic, or one of its partitions, is gone: deleted, perhaps made again
            // with other partitions. A new producer looks it up again; this one would
            // go on writing to the partitions it knew.
            if kind_of(&e) == ErrorKind::UnknownTopic {
                self.producers.forget(topic);
            }
            pulsar_error("Pulsar did not store the message", e).with_topic(topic)
        })
        .await
    }

    async fn flush(&self) -> Result<()> {
        self.producers.flush().await
    }
}
