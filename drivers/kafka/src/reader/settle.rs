//! Settling one record.

use std::sync::Arc;

use async_trait::async_trait;
use tidewater_core::{Error, ErrorKind, Result, Settle, Settlement, Ticket};
use tokio::time::Instant;

use crate::DRIVER;

use super::state::{Rewind, Shared};

/// Settles one record: counts it towards the commit, or rewinds its partition.
pub(super) struct KafkaSettle {
    pub(super) shared: Arc<Shared>,
    pub(super) partition: i32,
    pub(super) generation: u64,
    pub(super) ticket: Ticket,
    pub(super) attempt: u32,
}

impl KafkaSettle {
    pub(super) fn gone(&self, why: &str) -> Error {
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

    /// Counts the record towards the commit (an ack) or rewinds its partition (a nack):
    /// bookkeeping under the reader's lock, with no waiting.
    fn apply(&self, settlement: Settlement) -> Result<()> {
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
}

#[async_trait]
impl Settle for KafkaSettle {
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<()> {
        self.apply(settlement)
    }

    /// Always at once, which spares the runner a boxed future a record.
    fn settle_now(&mut self, settlement: Settlement) -> Option<Result<()>> {
        Some(self.apply(settlement))
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
