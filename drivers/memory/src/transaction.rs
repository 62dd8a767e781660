//! Transactions of the in-memory broker.

use std::sync::Arc;

use async_trait::async_trait;
use tidewater_core::transaction::not_committable;
use tidewater_core::{Delivery, DeliveryModel, Message, Result, Transaction, Transactions};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::broker::DRIVER;
use crate::MemoryBroker;

/// Transactions on a [`MemoryBroker`]: a transaction's writes are checked as they are
/// made (name, size) and appended at its commit, so a reader sees none of them before
/// and an abort or a drop leaves nothing. [`Transaction::consumed`] records nothing:
/// the memory broker's positions do not outlive the process, so the delivery's ack
/// settles it as usual.
pub struct MemoryTransactions {
    broker: MemoryBroker,
    id: Arc<str>,
    turn: Arc<Mutex<()>>,
}

impl std::fmt::Debug for MemoryTransactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTransactions").field("id", &self.id).finish_non_exhaustive()
    }
}

impl MemoryTransactions {
    /// Transactions on `broker`, under `id`.
    pub fn new(broker: MemoryBroker, id: &str) -> Self {
        Self { broker, id: id.into(), turn: Arc::default() }
    }
}

#[async_trait]
impl Transactions for MemoryTransactions {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        let turn = Arc::clone(&self.turn).lock_owned().await;
        Ok(Box::new(MemoryTransaction { broker: self.broker.clone(), pending: Vec::new(), _turn: turn }))
    }
}

struct MemoryTransaction {
    broker: MemoryBroker,
    pending: Vec<Message>,
    /// Held until the transaction ends, so the next one waits.
    _turn: OwnedMutexGuard<()>,
}

#[async_trait]
impl Transaction for MemoryTransaction {
    async fn write(&mut self, batch: Vec<Message>) -> Result<()> {
        for (i, message) in batch.iter().enumerate() {
            self.broker.check(i, message)?;
        }
        self.pending.extend(batch);
        Ok(())
    }

    fn consumed(&mut self, delivery: &Delivery) -> Result<()> {
        if delivery.model() != DeliveryModel::Queue {
            return Err(not_committable(DRIVER, delivery, "was not delivered by the memory driver"));
        }
        Ok(())
    }

    async fn end(self: Box<Self>, commit: bool) -> Result<()> {
        let this = *self;
        if commit {
            this.broker.write(this.pending).await
        } else {
            Ok(())
        }
    }
}
