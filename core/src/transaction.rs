//! Transactions: messages that land together or not at all, and, on a log broker, the
//! positions a handler consumed committed in the same transaction (consume-transform-
//! produce, exactly once).
//!
//! Which drivers have them: Kafka (both parts) and the memory driver (the writes; its
//! positions live and die with the process, so a delivery's ack settles it). NATS,
//! Pulsar and StreamBus answer [`Driver::transactions`](crate::Driver::transactions)
//! with an `Unsupported` error.

use async_trait::async_trait;

use crate::{Codec, Delivery, Error, ErrorKind, Event, Message, MessageId, Publisher, Result};

/// Opens transactions on one broker connection. A driver's
/// [`Driver::transactions`](crate::Driver::transactions) gives one per transactional
/// id.
///
/// One transaction is open at a time per `Transactions`: [`Transactions::begin`] waits
/// while another is open, so handlers running at once take turns. Give each process
/// (or each concurrent worker) its own id, and the same id again after a restart: on
/// Kafka, that is what fences a crashed instance and aborts the transaction it left
/// open, instead of letting it hold downstream readers back until it times out.
///
/// ```no_run
/// # use tidewater_core::*;
/// # async fn demo(driver: impl Driver, publisher: Publisher) -> Result<()> {
/// let transactions = driver.transactions("billing-1")?;
/// let mut tx = transactions.begin().await?;
/// tx.write_one(Message::new("invoices", "{\"n\":1}")).await?;
/// tx.write_one(Message::new("ledger", "{\"n\":1}")).await?;
/// tx.commit().await?; // both or neither
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Transactions: Send + Sync {
    /// The driver's name, for errors and logs.
    fn driver(&self) -> &'static str;

    /// Begins a transaction, waiting while another of this `Transactions` is open.
    async fn begin(&self) -> Result<Box<dyn Transaction>>;
}

/// An open transaction. Nothing it writes is visible to readers that read committed
/// data until [`Transaction::commit`] returns; dropping it uncommitted aborts it.
///
/// In a handler (consume-transform-produce), write the outputs, call
/// [`Transaction::consumed`] with the delivery, commit, and return `Ok`: the delivery's
/// position is then committed with the outputs, so after a crash the input is read
/// again only if its outputs were never committed. Return `Ok` once the commit
/// succeeded: a failure after it would redeliver an input whose outputs are already
/// out.
#[async_trait]
pub trait Transaction: Send {
    /// Writes `batch` as part of the transaction.
    async fn write(&mut self, batch: Vec<Message>) -> Result<()>;

    /// Writes one message as part of the transaction.
    async fn write_one(&mut self, message: Message) -> Result<()> {
        self.write(vec![message]).await
    }

    /// Commits `delivery`'s position with the transaction: its group's offset for its
    /// partition moves past it when the transaction commits. An `InvalidInput` error
    /// for a delivery this driver cannot commit (another driver's, or one read without
    /// a group).
    fn consumed(&mut self, delivery: &Delivery) -> Result<()>;

    /// Ends the transaction: commits it if `commit`, else aborts it. What
    /// [`commit`](Transaction::commit) and [`abort`](Transaction::abort) call.
    async fn end(self: Box<Self>, commit: bool) -> Result<()>;

    /// Commits: every write and consumed position lands, or, on error, none does.
    async fn commit(self: Box<Self>) -> Result<()> {
        self.end(true).await
    }

    /// Aborts: nothing written lands, no position moves.
    async fn abort(self: Box<Self>) -> Result<()> {
        self.end(false).await
    }
}

impl dyn Transaction {
    /// Encodes `event` with `publisher`'s registry, codec and ids and writes it as part
    /// of the transaction; returns the message id.
    pub async fn publish<C: Codec, E: Event>(&mut self, publisher: &Publisher<C>, event: &E) -> Result<MessageId> {
        let topic = publisher.registry().topic_of::<E>()?;
        let message = publisher.encode(topic, event)?;
        let id = message.id.clone();
        self.write_one(message).await?;
        Ok(id)
    }
}

/// The error of [`Transaction::consumed`] for a delivery the driver cannot commit: an
/// `InvalidInput` error naming the message and saying `why`.
pub fn not_committable(driver: &'static str, delivery: &Delivery, why: &str) -> Error {
    Error::new(ErrorKind::InvalidInput, format!("message {} {why}", delivery.message().id)).with_driver(driver)
}

/// The error of a driver without transactions.
pub fn unsupported(driver: &'static str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!("the {driver} driver has no transactions (Kafka and the memory driver have them)"),
    )
    .with_driver(driver)
}
