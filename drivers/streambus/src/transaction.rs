//! Transactions on a later broker: records that readers with read-committed isolation
//! see all together or not at all.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use tidewater_core::transaction::not_committable;
use tidewater_core::{
    Delivery, Error, ErrorKind, Message, Position, Result, Transaction as CoreTransaction, Transactions,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::client::Client;
use crate::errors::broker_error;
use crate::protocol::*;
use crate::writer::by_partition;
use crate::DRIVER;

/// A producer with a transactional id. Starting one fences any earlier producer with the
/// same id and aborts what it left open.
///
/// Records written in a [`Transaction`] go to the log at once but stay invisible to
/// read-committed readers until [`Transaction::commit`]; after
/// [`Transaction::abort`] they never become visible. Writes inside a transaction are not
/// retried (a duplicate inside a transaction would commit twice); a failed write leaves
/// the transaction to be aborted.
pub struct TransactionalWriter {
    client: Arc<Client>,
    id: String,
    producer: ProducerIdentity,
    envelope: bool,
    /// Keyless messages of one write share a partition; the next write uses the next.
    next_keyless: u64,
}

impl std::fmt::Debug for TransactionalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionalWriter").field("id", &self.id).field("producer", &self.producer).finish()
    }
}

impl TransactionalWriter {
    pub(crate) async fn init(client: Arc<Client>, id: String, envelope: bool) -> Result<Self> {
        client.require_later("transactions")?;
        let pool = client.coordinator(CoordinatorKind::Transaction, &id).await?;
        let request = Request::InitProducerId(InitProducerIdRequest {
            transaction_id: id.clone(),
            transaction_timeout_ms: 60_000,
        });
        let Response::InitProducerId(r) = client.call_on(&pool, request).await? else { unreachable!() };
        if !r.error.is_none() {
            return Err(broker_error("InitProducerID failed", r.error, String::new()));
        }
        let producer = ProducerIdentity { id: r.producer_id, epoch: r.producer_epoch };
        Ok(Self { client, id, producer, envelope, next_keyless: 0 })
    }

    /// The producer id and epoch the broker gave.
    pub fn producer(&self) -> ProducerIdentity {
        self.producer
    }

    /// Opens a transaction.
    pub fn begin(&mut self) -> Transaction<'_> {
        Transaction { writer: self, partitions: BTreeSet::new() }
    }

    async fn coordinator_call(&self, request: Request) -> Result<Response> {
        let pool = self.client.coordinator(CoordinatorKind::Transaction, &self.id).await?;
        self.client.call_on(&pool, request).await
    }

    /// Writes `batch` in the open transaction, adding its partitions not yet in
    /// `partitions` to it first.
    async fn write_in(&mut self, partitions: &mut BTreeSet<(String, u32)>, batch: Vec<Message>) -> Result<()> {
        let keyless = self.next_keyless;
        self.next_keyless += 1;
        let by_partition = by_partition(&self.client, &batch, self.envelope, keyless).await?;
        let new: Vec<(String, i32)> = by_partition
            .iter()
            .filter(|(k, _)| !partitions.contains(k))
            .map(|((t, p), _)| (t.clone(), *p as i32))
            .collect();
        if !new.is_empty() {
            let request = Request::AddPartitionsToTxn(AddPartitionsToTxnRequest {
                txn: self.identity(),
                partitions: new.clone(),
            });
            let Response::AddPartitionsToTxn(r) = self.coordinator_call(request).await? else { unreachable!() };
            if let Some((topic, p, code)) = r.results.iter().find(|(_, _, e)| !e.is_none()) {
                return Err(broker_error(&format!("AddPartitionsToTxn failed for {topic}/{p}"), *code, String::new()));
            }
            partitions.extend(new.into_iter().map(|(t, p)| (t, p as u32)));
        }
        for ((topic, partition), records) in by_partition {
            let request = Request::Produce(ProduceRequest {
                topic: topic.clone(),
                partition,
                records,
                producer: Some(self.producer),
            });
            self.client.call(request).await.map_err(|e| e.with_topic(topic))?;
        }
        Ok(())
    }

    /// Adds `positions` of `group_id` on `topic` to the open transaction.
    async fn send_offsets_in(&self, group_id: &str, topic: &str, positions: &[(u32, u64)]) -> Result<()> {
        let request =
            Request::AddOffsetsToTxn(AddOffsetsToTxnRequest { txn: self.identity(), group_id: group_id.to_owned() });
        let Response::AddOffsetsToTxn(r) = self.coordinator_call(request).await? else { unreachable!() };
        if !r.error.is_none() {
            return Err(broker_error("AddOffsetsToTxn failed", r.error, String::new()));
        }
        let request = Request::TxnOffsetCommit(TxnOffsetCommitRequest {
            transaction_id: self.id.clone(),
            group_id: group_id.to_owned(),
            producer_id: self.producer.id,
            producer_epoch: self.producer.epoch,
            topics: vec![CommitTopic::positions(topic, positions)],
        });
        let Response::TxnOffsetCommit(r) = self.coordinator_call(request).await? else { unreachable!() };
        match r.first_error() {
            None => Ok(()),
            Some((t, p, code)) => {
                Err(broker_error(&format!("TxnOffsetCommit failed for {t}/{p}"), code, String::new()))
            }
        }
    }

    /// This writer's transaction, for the requests about it.
    fn identity(&self) -> TxnIdentity {
        TxnIdentity {
            transaction_id: self.id.clone(),
            producer_id: self.producer.id,
            producer_epoch: self.producer.epoch,
        }
    }

    /// Commits or aborts the open transaction.
    async fn end_txn(&self, commit: bool) -> Result<()> {
        let request = Request::EndTxn(EndTxnRequest { txn: self.identity(), commit });
        let Response::EndTxn(r) = self.coordinator_call(request).await? else { unreachable!() };
        match r.error {
            ErrorCode::NONE => Ok(()),
            ErrorCode::PRODUCER_FENCED | ErrorCode::INVALID_PRODUCER_EPOCH => Err(Error::new(
                ErrorKind::BrokerPermanent,
                format!("transactional id {:?} was taken over by a newer producer", self.id),
            )
            .with_driver(DRIVER)),
            code => Err(broker_error("EndTxn failed", code, String::new())),
        }
    }
}

/// An open transaction. Dropping it without commit or abort leaves it open on the broker
/// until the next [`TransactionalWriter`] with the same id aborts it.
pub struct Transaction<'a> {
    writer: &'a mut TransactionalWriter,
    partitions: BTreeSet<(String, u32)>,
}

impl Transaction<'_> {
    /// Writes `batch` inside the transaction.
    pub async fn write(&mut self, batch: Vec<Message>) -> Result<()> {
        self.writer.write_in(&mut self.partitions, batch).await
    }

    /// Commits `positions` (next offsets to read) of `group` for `topic` with the
    /// transaction, for consume-transform-produce: the output and the input's progress
    /// become visible together.
    pub async fn send_offsets(&mut self, group_id: &str, topic: &str, positions: &[(u32, u64)]) -> Result<()> {
        self.writer.send_offsets_in(group_id, topic, positions).await
    }

    /// Makes everything written in the transaction visible.
    pub async fn commit(self) -> Result<()> {
        self.writer.end_txn(true).await
    }

    /// Discards everything written in the transaction.
    pub async fn abort(self) -> Result<()> {
        self.writer.end_txn(false).await
    }
}

/// What a delivery of a group member on a later broker carries: the group whose
/// position a transaction commits.
pub(crate) struct StreamBusOrigin {
    pub(crate) group_id: String,
}

/// Transactions on a later StreamBus broker through tidewater's
/// [`Transactions`](tidewater_core::Transactions) (from
/// [`Driver::transactions`](tidewater_core::Driver::transactions)): a
/// [`TransactionalWriter`] made at the first `begin`, one transaction at a time;
/// deliveries of a reader with a group can be passed to `consumed`, so their positions
/// commit with the transaction. A transaction dropped open is aborted. After a failed
/// commit or abort the next `begin` registers the id again, which aborts whatever the
/// failure left open.
pub struct StreamBusTransactions {
    client: Arc<Client>,
    id: String,
    envelope: bool,
    writer: Arc<Mutex<Option<TransactionalWriter>>>,
}

impl std::fmt::Debug for StreamBusTransactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamBusTransactions").field("id", &self.id).finish_non_exhaustive()
    }
}

impl StreamBusTransactions {
    pub(crate) fn new(client: Arc<Client>, id: &str, envelope: bool) -> Self {
        Self { client, id: id.to_owned(), envelope, writer: Arc::default() }
    }
}

#[async_trait]
impl Transactions for StreamBusTransactions {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    async fn begin(&self) -> Result<Box<dyn CoreTransaction>> {
        let mut writer = Arc::clone(&self.writer).lock_owned().await;
        if writer.is_none() {
            let id = self.id.clone();
            *writer = Some(TransactionalWriter::init(Arc::clone(&self.client), id, self.envelope).await?);
        }
        Ok(Box::new(OpenTransaction { writer: Some(writer), partitions: BTreeSet::new(), offsets: BTreeMap::new() }))
    }
}

type Positions = BTreeMap<(String, String), BTreeMap<u32, u64>>;

struct OpenTransaction {
    /// The writer, held for the transaction's length; `None` once it ended.
    writer: Option<OwnedMutexGuard<Option<TransactionalWriter>>>,
    partitions: BTreeSet<(String, u32)>,
    /// Next positions to commit, by group id and topic, then partition.
    offsets: Positions,
}

/// The writer of an open transaction: `begin` made it, and it goes only when the
/// transaction ends.
fn open(writer: &mut Option<OwnedMutexGuard<Option<TransactionalWriter>>>) -> Result<&mut TransactionalWriter> {
    writer
        .as_mut()
        .and_then(|guard| guard.as_mut())
        .ok_or_else(|| Error::closed("the transaction has ended").with_driver(DRIVER))
}

impl OpenTransaction {
    async fn finish(&mut self, commit: bool) -> Result<()> {
        let begun = !self.partitions.is_empty() || !self.offsets.is_empty();
        let offsets = std::mem::take(&mut self.offsets);
        let writer = open(&mut self.writer)?;
        let outcome = async {
            if !begun {
                return Ok(());
            }
            if commit {
                for ((group_id, topic), positions) in &offsets {
                    let positions: Vec<(u32, u64)> = positions.iter().map(|(p, o)| (*p, *o)).collect();
                    writer.send_offsets_in(group_id, topic, &positions).await?;
                }
            }
            writer.end_txn(commit).await
        }
        .await;
        let mut guard = self.writer.take().expect("checked open above");
        if outcome.is_err() {
            // Registering the id again aborts what the failure left open.
            *guard = None;
        }
        outcome
    }
}

#[async_trait]
impl CoreTransaction for OpenTransaction {
    async fn write(&mut self, batch: Vec<Message>) -> Result<()> {
        let writer = open(&mut self.writer)?;
        writer.write_in(&mut self.partitions, batch).await
    }

    fn consumed(&mut self, delivery: &Delivery) -> Result<()> {
        let (Some(origin), Position::Log { partition, offset }) =
            (delivery.origin::<StreamBusOrigin>(), delivery.position())
        else {
            let why = "was not read by a StreamBus group member (on a later broker): there is no position to commit";
            return Err(not_committable(DRIVER, delivery, why));
        };
        let key = (origin.group_id.clone(), delivery.message().stream.to_string());
        let next = self.offsets.entry(key).or_default().entry(partition).or_insert(0);
        *next = (*next).max(offset + 1);
        Ok(())
    }

    async fn end(mut self: Box<Self>, commit: bool) -> Result<()> {
        self.finish(commit).await
    }
}

impl Drop for OpenTransaction {
    /// Aborts a transaction dropped open, holding the writer until it is done.
    fn drop(&mut self) {
        let Some(mut guard) = self.writer.take() else { return };
        if self.partitions.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            if let Some(writer) = guard.as_ref() {
                if let Err(err) = writer.end_txn(false).await {
                    tracing::warn!(error = %err, "aborting a dropped transaction failed");
                    *guard = None;
                }
            }
        });
    }
}
