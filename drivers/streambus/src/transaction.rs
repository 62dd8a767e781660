//! Transactions on a later broker: records that readers with read-committed isolation
//! see all together or not at all.

use std::collections::BTreeSet;
use std::sync::Arc;

use tidewater_core::{Error, ErrorKind, Message, Result};

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
        let keyless = self.writer.next_keyless;
        self.writer.next_keyless += 1;
        let w = &*self.writer;
        let by_partition = by_partition(&w.client, &batch, w.envelope, keyless).await?;
        let new: Vec<(String, i32)> = by_partition
            .iter()
            .filter(|(k, _)| !self.partitions.contains(k))
            .map(|((t, p), _)| (t.clone(), *p as i32))
            .collect();
        if !new.is_empty() {
            let request = Request::AddPartitionsToTxn(AddPartitionsToTxnRequest {
                transaction_id: w.id.clone(),
                producer_id: w.producer.id,
                producer_epoch: w.producer.epoch,
                partitions: new.clone(),
            });
            let Response::AddPartitionsToTxn(r) = w.coordinator_call(request).await? else { unreachable!() };
            if let Some((topic, p, code)) = r.results.iter().find(|(_, _, e)| !e.is_none()) {
                return Err(broker_error(&format!("AddPartitionsToTxn failed for {topic}/{p}"), *code, String::new()));
            }
            self.partitions.extend(new.into_iter().map(|(t, p)| (t, p as u32)));
        }
        for ((topic, partition), records) in by_partition {
            let request = Request::Produce(ProduceRequest {
                topic: topic.clone(),
                partition,
                records,
                producer: Some(w.producer),
            });
            w.client.call(request).await.map_err(|e| e.with_topic(topic))?;
        }
        Ok(())
    }

    /// Commits `positions` (next offsets to read) of `group` for `topic` with the
    /// transaction, for consume-transform-produce: the output and the input's progress
    /// become visible together.
    pub async fn send_offsets(&mut self, group_id: &str, topic: &str, positions: &[(u32, u64)]) -> Result<()> {
        let w = &*self.writer;
        let request = Request::AddOffsetsToTxn(AddOffsetsToTxnRequest {
            transaction_id: w.id.clone(),
            producer_id: w.producer.id,
            producer_epoch: w.producer.epoch,
            group_id: group_id.to_owned(),
        });
        let Response::AddOffsetsToTxn(r) = w.coordinator_call(request).await? else { unreachable!() };
        if !r.error.is_none() {
            return Err(broker_error("AddOffsetsToTxn failed", r.error, String::new()));
        }
        let request = Request::TxnOffsetCommit(TxnOffsetCommitRequest {
            transaction_id: w.id.clone(),
            group_id: group_id.to_owned(),
            producer_id: w.producer.id,
            producer_epoch: w.producer.epoch,
            topics: vec![CommitTopic {
                topic: topic.to_owned(),
                partitions: positions
                    .iter()
                    .map(|(p, o)| CommitPartition { partition: *p as i32, offset: *o as i64, metadata: String::new() })
                    .collect(),
            }],
        });
        let Response::TxnOffsetCommit(r) = w.coordinator_call(request).await? else { unreachable!() };
        match r.first_error() {
            None => Ok(()),
            Some((t, p, code)) => {
                Err(broker_error(&format!("TxnOffsetCommit failed for {t}/{p}"), code, String::new()))
            }
        }
    }

    /// Makes everything written in the transaction visible.
    pub async fn commit(self) -> Result<()> {
        self.end(true).await
    }

    /// Discards everything written in the transaction.
    pub async fn abort(self) -> Result<()> {
        self.end(false).await
    }

    async fn end(self, commit: bool) -> Result<()> {
        let w = &*self.writer;
        let request = Request::EndTxn(EndTxnRequest {
            transaction_id: w.id.clone(),
            producer_id: w.producer.id,
            producer_epoch: w.producer.epoch,
            commit,
        });
        let Response::EndTxn(r) = w.coordinator_call(request).await? else { unreachable!() };
        match r.error {
            ErrorCode::NONE => Ok(()),
            ErrorCode::PRODUCER_FENCED | ErrorCode::INVALID_PRODUCER_EPOCH => Err(Error::new(
                ErrorKind::BrokerPermanent,
                format!("transactional id {:?} was taken over by a newer producer", w.id),
            )
            .with_driver(DRIVER)),
            code => Err(broker_error("EndTxn failed", code, String::new())),
        }
    }
}
