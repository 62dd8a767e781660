//! Transactions: a transactional producer per transactional id, and consumed offsets
//! committed in the producer's transaction (exactly once from topic to topic).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tidewater_core::transaction::not_committable;
use tidewater_core::{BrokerWriter, Delivery, Error, Message, Position, Result, Transaction, Transactions};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::errors::kafka_error;
use crate::topics::{blocking, Topics};
use crate::{KafkaConfig, KafkaWriter, DRIVER};

/// What a Kafka delivery carries for a transaction: its consumer's group membership as
/// of the assignment it was fetched in. The broker refuses an offset commit made with a
/// membership that a rebalance has since replaced, so a consumer that lost its
/// partitions cannot commit over the new owner.
pub(crate) struct KafkaOrigin {
    pub(crate) group: ConsumerGroupMetadata,
}

/// Kafka transactions under one transactional id (from [`Kafka::kafka_transactions`](crate::Kafka::kafka_transactions)).
///
/// The transactional producer is made and registered with the broker
/// (`init_transactions`) at the first [`Transactions::begin`]; that registration
/// aborts whatever transaction an earlier producer with the same id left open and
/// fences that producer off, which is why a restarted service should use the id it had.
/// One transaction is open at a time; `begin` waits for the one before to end.
///
/// Deliveries of a [`KafkaReader`](crate::KafkaReader) with a group can be passed to
/// [`Transaction::consumed`]: their offsets are then committed in the transaction, so a
/// `read_committed` reader of the outputs (librdkafka's default isolation, and that of
/// tidewater's reader) sees each input's outputs exactly once, crashes included. After
/// a fatal error (the producer was fenced by a newer one with the same id) the next
/// `begin` makes a new producer.
pub struct KafkaTransactions {
    config: Arc<KafkaConfig>,
    topics: Arc<Topics>,
    id: String,
    producer: Arc<Mutex<Option<FutureProducer>>>,
}

impl std::fmt::Debug for KafkaTransactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransactions").field("id", &self.id).finish_non_exhaustive()
    }
}

impl KafkaTransactions {
    pub(crate) fn new(config: Arc<KafkaConfig>, topics: Arc<Topics>, id: &str) -> Self {
        Self { config, topics, id: id.to_owned(), producer: Arc::default() }
    }

    /// The transactional id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Makes and registers the producer.
    async fn init(&self) -> Result<FutureProducer> {
        let producer: FutureProducer = self
            .config
            .transactional_producer(&self.id)
            .create()
            .map_err(|e| kafka_error("cannot create the transactional producer", e))?;
        let registering = producer.clone();
        // Registering waits for the broker to abort what an earlier producer of this id
        // left open: allow it the transaction timeout, the longest that can take.
        let timeout = self.config.transaction_timeout;
        blocking(move || registering.init_transactions(timeout))
            .await?
            .map_err(|e| kafka_error(format!("cannot register transactional id {:?}", self.id), e))?;
        Ok(producer)
    }
}

#[async_trait]
impl Transactions for KafkaTransactions {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        let mut slot = Arc::clone(&self.producer).lock_owned().await;
        let producer = match &*slot {
            Some(producer) => producer.clone(),
            None => {
                let producer = self.init().await?;
                *slot = Some(producer.clone());
                producer
            }
        };
        if let Err(err) = producer.begin_transaction() {
            forget_if_fatal(&mut slot, &err);
            return Err(kafka_error("cannot begin a transaction", err));
        }
        Ok(Box::new(KafkaTransaction {
            writer: KafkaWriter::new(producer.clone(), Arc::clone(&self.topics), self.config.max_message_bytes()),
            producer,
            offsets: Vec::new(),
            timeout: self.config.request_timeout,
            slot: Some(slot),
        }))
    }
}

/// A fatal error means the producer is done (fenced): drop it, so the next transaction
/// makes a new one.
fn forget_if_fatal(slot: &mut Option<FutureProducer>, err: &KafkaError) {
    if matches!(err, KafkaError::Transaction(e) if e.is_fatal()) {
        *slot = None;
    }
}

struct KafkaTransaction {
    producer: FutureProducer,
    writer: KafkaWriter,
    /// Offsets to commit, by the group membership they were consumed under.
    offsets: Vec<(Arc<KafkaOrigin>, TopicPartitionList)>,
    timeout: Duration,
    /// The turn, held while the transaction is open; `None` once it ended.
    slot: Option<OwnedMutexGuard<Option<FutureProducer>>>,
}

impl KafkaTransaction {
    /// Ends the transaction with `commit` or an abort, on a blocking thread.
    async fn finish(&mut self, commit: bool) -> Result<()> {
        let Some(mut slot) = self.slot.take() else {
            return Err(Error::closed("the transaction has ended").with_driver(DRIVER));
        };
        let (producer, timeout) = (self.producer.clone(), self.timeout);
        let offsets = std::mem::take(&mut self.offsets);
        let outcome = blocking(move || {
            if commit {
                for (origin, tpl) in &offsets {
                    producer
                        .send_offsets_to_transaction(tpl, &origin.group, timeout)
                        .map_err(|e| ("commit the consumed offsets of", e))?;
                }
                producer.commit_transaction(timeout).map_err(|e| ("commit", e))
            } else {
                producer.abort_transaction(timeout).map_err(|e| ("abort", e))
            }
        })
        .await?;
        let Err((what, err)) = outcome else { return Ok(()) };
        let aborted = matches!(&err, KafkaError::Transaction(e) if e.txn_requires_abort()) && {
            let producer = self.producer.clone();
            match blocking(move || producer.abort_transaction(timeout)).await {
                Ok(Ok(())) => true,
                Ok(Err(abort)) => {
                    tracing::warn!(error = %abort, "aborting a failed transaction failed");
                    false
                }
                Err(_) => false,
            }
        };
        if !aborted {
            // Fenced, timed out or otherwise in a state only a new registration of the
            // id clears: the next begin makes a new producer, which aborts what is open.
            *slot = None;
        }
        Err(kafka_error(format!("cannot {what} the transaction"), err))
    }
}

#[async_trait]
impl Transaction for KafkaTransaction {
    async fn write(&mut self, batch: Vec<Message>) -> Result<()> {
        if self.slot.is_none() {
            return Err(Error::closed("the transaction has ended").with_driver(DRIVER));
        }
        self.writer.write(batch).await
    }

    fn consumed(&mut self, delivery: &Delivery) -> Result<()> {
        let why = match (delivery.origin::<KafkaOrigin>(), delivery.position()) {
            (Some(origin), Position::Log { partition, offset }) => Ok((origin, partition, offset)),
            (None, _) => Err("was not read by a Kafka reader with a group: there is no offset to commit"),
            (Some(_), Position::Queue { .. }) => Err("has no Kafka offset"),
        };
        let (origin, partition, offset) = why.map_err(|why| not_committable(DRIVER, delivery, why))?;
        let (topic, partition, next) = (&delivery.message().stream, partition as i32, offset as i64 + 1);
        let tpl = match self.offsets.iter_mut().find(|(o, _)| Arc::ptr_eq(o, &origin)) {
            Some((_, tpl)) => tpl,
            None => {
                self.offsets.push((origin, TopicPartitionList::new()));
                &mut self.offsets.last_mut().expect("just pushed").1
            }
        };
        let before = tpl.find_partition(topic, partition).map(|e| e.offset());
        if !matches!(before, Some(Offset::Offset(at)) if at >= next) {
            if before.is_none() {
                tpl.add_partition(topic, partition);
            }
            tpl.set_partition_offset(topic, partition, Offset::Offset(next))
                .map_err(|e| kafka_error("cannot record a consumed offset", e))?;
        }
        Ok(())
    }

    async fn end(mut self: Box<Self>, commit: bool) -> Result<()> {
        self.finish(commit).await
    }
}

impl Drop for KafkaTransaction {
    /// Aborts a transaction dropped open; the next `begin` waits for the abort, since
    /// the turn goes with it.
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        let (producer, timeout) = (self.producer.clone(), self.timeout);
        let abort = move || {
            if let Err(err) = producer.abort_transaction(timeout) {
                tracing::warn!(error = %err, "aborting a dropped transaction failed");
            }
            drop(slot);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(abort)),
            Err(_) => abort(),
        }
    }
}
