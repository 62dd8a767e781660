//! Settling records: the reader's shared state settles every delivery, told which
//! dispatch of which record by the delivery itself.

use async_trait::async_trait;
use tidewater_core::{Delivery, DispatchNote, Error, ErrorKind, Position, Result, Settlement, SharedSettle, Ticket};
use tokio::time::Instant;

use crate::DRIVER;

use super::state::{Rewind, Shared};

/// One dispatch of a record, as its delivery tells it: the partition and offset are its
/// position, the attempt its delivery count, and the rest the note the reader put on it
/// ([`Dispatch::note`]). Kept on the delivery rather than in a settle handle of each
/// record, which was an allocation a record.
pub(super) struct Dispatch {
    partition: i32,
    /// The partition's assignment the record came in.
    generation: u64,
    ticket: Ticket,
    attempt: u32,
    /// The reader's count of changes when the record was dispatched (see
    /// `Shared::changes`).
    changes: u64,
}

impl Dispatch {
    /// What the reader notes on a delivery as it dispatches it.
    pub(super) fn note(generation: u64, ticket: Ticket, changes: u64) -> DispatchNote {
        [generation, ticket.serial(), changes]
    }

    fn of(delivery: &Delivery) -> Option<Self> {
        let Position::Log { partition, offset } = delivery.position() else { return None };
        let [generation, serial, changes] = delivery.note();
        Some(Self {
            partition: partition as i32,
            generation,
            ticket: Ticket::from_parts(offset, serial),
            attempt: delivery.deliveries(),
            changes,
        })
    }

    fn gone(&self, shared: &Shared, why: &str) -> Error {
        Error::new(
            ErrorKind::BrokerTransient,
            format!(
                "record {} of partition {} was not settled: {why}; it will be delivered again",
                self.ticket.offset, self.partition
            ),
        )
        .with_driver(DRIVER)
        .with_topic(&shared.topic)
    }

    /// Counts the record towards the commit (an ack) or rewinds its partition (a nack):
    /// bookkeeping under the reader's lock, with no waiting.
    fn apply(&self, shared: &Shared, settlement: Settlement) -> Result<()> {
        let mut guard = shared.state();
        let state = &mut *guard;
        let Some(part) = state.partitions.get_mut(&self.partition).filter(|p| p.generation == self.generation) else {
            return Err(self.gone(shared, "the partition was revoked"));
        };
        let stale = || self.gone(shared, "a nack of an earlier record rewound the partition");
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
                shared.changed();
                part.rewind = Some(Rewind { offset, due: Instant::now() + delay.unwrap_or_default() });
                part.awaiting = None;
                state.attempts.entry(self.partition).or_default().insert(offset, self.attempt.saturating_add(1));
                drop(guard);
                shared.wake.notify_one();
            }
        }
        Ok(())
    }

    fn is_current(&self, shared: &Shared) -> bool {
        // Nothing that could make it stale happened since its dispatch: no lock needed.
        // (Asked under the lock, the answer could go stale just as soon after it.)
        if shared.changes() == self.changes {
            return true;
        }
        let state = shared.state();
        state
            .partitions
            .get(&self.partition)
            .filter(|p| p.generation == self.generation)
            .and_then(|p| p.commits.as_ref())
            .is_some_and(|c| c.is_current(self.ticket))
    }
}

/// A delivery this reader did not make: every one it makes has a log position.
fn not_a_record(delivery: &Delivery) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("delivery of message {} has no Kafka record's position to settle", delivery.message().id),
    )
    .with_driver(DRIVER)
}

impl Shared {
    fn settle_record(&self, delivery: &Delivery, settlement: Settlement) -> Result<()> {
        let dispatch = Dispatch::of(delivery).ok_or_else(|| not_a_record(delivery))?;
        dispatch.apply(self, settlement)
    }
}

#[async_trait]
impl SharedSettle for Shared {
    async fn settle(&self, delivery: &Delivery, settlement: Settlement) -> Result<()> {
        self.settle_record(delivery, settlement)
    }

    /// Always at once, which spares the runner a boxed future a record.
    fn settle_now(&self, delivery: &Delivery, settlement: Settlement) -> Option<Result<()>> {
        Some(self.settle_record(delivery, settlement))
    }

    fn is_current(&self, delivery: &Delivery) -> bool {
        Dispatch::of(delivery).is_some_and(|dispatch| dispatch.is_current(self))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tidewater_core::{
        Delivery, Incoming, Message, Position, ReadySignal, Settlement, Settler, SharedSettle, StartFrom, TopicName,
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
            fetching: AtomicBool::new(false),
            idle: Mutex::default(),
        });
        KafkaSource {
            consumer: None,
            shared,
            keepalive: None,
            group: None,
            commit_interval: Duration::from_secs(5),
            next_commit: Instant::now(),
            copies: Copies::default(),
            records: Vec::new(),
        }
    }

    /// Dispatches the records at `offsets` of partition 0.
    fn dispatch(source: &KafkaSource, offsets: &[u64]) -> Vec<Incoming> {
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
        batch
    }

    fn shared(incoming: &Incoming) -> &dyn SharedSettle {
        match &incoming.settle {
            Settler::Shared(settle) => &**settle,
            Settler::Own(_) => unreachable!("a Kafka record settles through the reader's shared state"),
        }
    }

    fn current(incoming: &Incoming) -> bool {
        shared(incoming).is_current(&incoming.delivery)
    }

    fn settle(incoming: &Incoming, settlement: Settlement) {
        shared(incoming).settle_now(&incoming.delivery, settlement).expect("at once").expect("settled");
    }

    #[test]
    fn a_record_stops_being_current_by_a_rewind_a_redispatch_or_a_revocation() {
        let source = source();
        let first = dispatch(&source, &[10, 11, 12]);
        assert!(first.iter().all(current), "nothing changed since their dispatch");

        // A nack of 11 rewinds the partition to it: 12 is no longer current, 10 still is.
        settle(&first[1], Settlement::Nack { delay: None });
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

    #[test]
    fn a_delivery_the_reader_did_not_make_is_refused_with_an_error() {
        let source = source();
        let queued =
            Delivery::new(Message::new("orders", "p"), 1, Position::Queue { partition: None, sequence: None }, None);
        let reader: &dyn SharedSettle = &*source.shared;
        assert!(!reader.is_current(&queued));
        let err = reader.settle_now(&queued, Settlement::Ack).expect("at once").unwrap_err();
        assert_eq!(err.kind(), tidewater_core::ErrorKind::InvalidInput, "{err}");
        // The reader's own records are untouched by it.
        let mine = dispatch(&source, &[20]);
        settle(&mine[0], Settlement::Ack);
    }
}
