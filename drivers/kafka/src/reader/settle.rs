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
    /// The reader's count of changes when the record was dispatched (see
    /// `Shared::changes`).
    pub(super) changes: u64,
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
        let stale = || self.gone("a nack of an earlier record rewound the partition");
        let Some(commits) = part.commits.as_mut() else { return Err(stale()) };
        let offset = self.ticket.offset;
        match settlement {
            Settlement::Ack => {
                if !commits.mark_processed(self.ticket) {
                    return Err(stale());
                }
                if let Some(attempts) = state.attempts.get_mut(&self.partition) {
                    attempts.remove(&offset);
                }
            }
            Settlement::Nack { delay } => {
                if !commits.is_current(self.ticket) {
                    return Err(stale());
                }
                commits.rewind(offset);
                self.shared.changed();
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
        // Nothing that could make it stale happened since its dispatch: no lock needed.
        // (Asked under the lock, the answer could go stale just as soon after it.)
        if self.shared.changes() == self.changes {
            return true;
        }
        let state = self.shared.state();
        state
            .partitions
            .get(&self.partition)
            .filter(|p| p.generation == self.generation)
            .and_then(|p| p.commits.as_ref())
            .is_some_and(|c| c.is_current(self.ticket))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tidewater_core::{
        Delivery, Incoming, Message, Position, ReadySignal, Settlement, Settler, StartFrom, TopicName,
    };
    use tokio::sync::Notify;
    use tokio::time::Instant;

    use super::super::copies::Copies;
    use super::super::source::{Fetched, KafkaSource};
    use super::super::state::{Part, Shared, State};

    fn source() -> KafkaSource {
        let mut state = State { generation: 1, ..State::default() };
        let part = Part { generation: 1, commits: None, committed: None, rewind: None, awaiting: None, paused: false };
        state.partitions.insert(0, part);
        let shared = Arc::new(Shared {
            topic: TopicName::from("orders"),
            commits: true,
            start: StartFrom::Earliest,
            request_timeout: Duration::from_secs(5),
            ready: ReadySignal::new().0,
            state: Mutex::new(state),
            wake: Notify::new(),
            changes: AtomicU64::new(0),
        });
        KafkaSource {
            consumer: None,
            shared,
            group: None,
            commit_interval: Duration::from_secs(5),
            next_commit: Instant::now(),
            copies: Copies::default(),
            records: Vec::new(),
        }
    }

    /// Dispatches the records at `offsets` of partition 0; their settle handles.
    fn dispatch(source: &KafkaSource, offsets: &[u64]) -> Vec<Settler> {
        let mut records = offsets
            .iter()
            .map(|&offset| {
                let position = Position::Log { partition: 0, offset };
                let delivery = Delivery::new(Message::new("orders", "p"), 1, position, None);
                Fetched { partition: 0, offset, delivery }
            })
            .collect();
        let mut batch = Vec::new();
        source.dispatch(&mut records, &mut batch);
        batch.into_iter().map(|Incoming { settle, .. }| settle).collect()
    }

    fn current(settle: &Settler) -> bool {
        match settle {
            Settler::Own(settle) => settle.is_current(),
            Settler::Shared(_) => unreachable!("a Kafka record settles by its own handle"),
        }
    }

    fn settle(settle: &mut Settler, settlement: Settlement) {
        let Settler::Own(settle) = settle else { unreachable!() };
        settle.settle_now(settlement).expect("at once").expect("settled");
    }

    #[test]
    fn a_record_stops_being_current_by_a_rewind_a_redispatch_or_a_revocation() {
        let source = source();
        let mut first = dispatch(&source, &[10, 11, 12]);
        assert!(first.iter().all(current), "nothing changed since their dispatch");

        // A nack of 11 rewinds the partition to it: 12 is no longer current, 10 still is.
        settle(&mut first[1], Settlement::Nack { delay: None });
        assert!(current(&first[0]));
        assert!(!current(&first[2]));

        // The seek done, 11 comes again: its new dispatch is current, the old one not.
        {
            let mut state = source.shared.state();
            let part = state.partitions.get_mut(&0).unwrap();
            (part.rewind, part.awaiting) = (None, Some(11));
        }
        let again = dispatch(&source, &[11, 12]);
        assert!(again.iter().all(current));
        assert!(!current(&first[2]));

        // 13 twice, without a rewind in between (a fetch going back by itself).
        let once = dispatch(&source, &[13]);
        let twice = dispatch(&source, &[13]);
        assert!(!current(&once[0]) && current(&twice[0]));

        // A revocation leaves nothing of the partition current.
        {
            let mut state = source.shared.state();
            state.partitions.remove(&0);
            source.shared.changed();
        }
        assert!(!current(&first[0]) && !current(&again[0]) && !current(&twice[0]));
    }
}
