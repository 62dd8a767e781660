//! What a read task's consumer callbacks, source and settle handles share: the
//! assignment and the commit bookkeeping.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tidewater_core::{PartitionCommits, ReadySignal, StartFrom, TopicName};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::transaction::KafkaOrigin;

use super::keepalive::Idle;
use super::rebalance::ReaderContext;

/// What the consumer's callbacks, the source and the settle handles share.
pub(super) struct Shared {
    pub(super) topic: TopicName,
    /// False for a private group, which commits nothing.
    pub(super) commits: bool,
    pub(super) start: StartFrom,
    pub(super) request_timeout: Duration,
    pub(super) ready: ReadySignal,
    pub(super) state: Mutex<State>,
    /// Wakes the source when a nack asks for a seek.
    pub(super) wake: Notify,
    /// Bumped, under the state lock, whenever a dispatched record may have stopped being
    /// current: a rewind, a rebalance, a record dispatched again below where its
    /// partition had got to. A settle whose count is unchanged since its record was
    /// dispatched is current without taking the lock, which the runner asks before every
    /// handler call and which the reader's thread holds for each batch.
    pub(super) changes: AtomicU64,
    /// Set while the reader fetches; the keep-alive polls only while it is not.
    pub(super) fetching: AtomicBool,
    /// What the reader's fetch and the keep-alive hand each other (`keepalive.rs`).
    /// Taken before `state` where both are.
    pub(super) idle: Mutex<Idle>,
}

#[derive(Default)]
pub(super) struct State {
    /// Counts assignments, so a settle handle can tell its partition was revoked even
    /// if the same partition was assigned again since.
    pub(super) generation: u64,
    pub(super) partitions: HashMap<i32, Part, ByNumber>,
    /// Delivery attempts of nacked records that are to come again, by partition and
    /// offset. Kept apart from the assignment, so that a rebalance that gives this
    /// consumer the partition back does not reset the count.
    pub(super) attempts: HashMap<i32, HashMap<u64, u32, ByNumber>, ByNumber>,
    /// The group's membership as of the last assignment, which deliveries carry so a
    /// transaction can commit their offsets (and the broker can refuse a stale one).
    pub(super) origin: Option<Arc<KafkaOrigin>>,
}

/// Maps keyed by partition or offset are looked up several times a record; their keys
/// come from the broker, not from a party that could choose them to collide, so a
/// multiply-shift hash serves where SipHash's resistance to chosen keys is not needed.
pub(super) type ByNumber = BuildHasherDefault<NumberHasher>;

/// Fibonacci hashing of an integer key: one multiplication, high bits well mixed.
#[derive(Default)]
pub(super) struct NumberHasher(u64);

impl Hasher for NumberHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_i32(&mut self, n: i32) {
        self.write_u64(n as u32 as u64);
    }
}

/// One assigned partition.
pub(super) struct Part {
    pub(super) generation: u64,
    /// Created at the first record fetched, whose offset is where reading started.
    pub(super) commits: Option<PartitionCommits>,
    /// The last offset sent to the broker as committed.
    pub(super) committed: Option<u64>,
    /// A seek a nack asked for, not yet done.
    pub(super) rewind: Option<Rewind>,
    /// After a seek to this offset, records above it are leftovers of the old position.
    pub(super) awaiting: Option<u64>,
    pub(super) paused: bool,
}

#[derive(Clone, Copy)]
pub(super) struct Rewind {
    pub(super) offset: u64,
    pub(super) due: Instant,
}

impl Shared {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn idle(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a change that may leave dispatched records no longer current; called
    /// with the state locked.
    pub(super) fn changed(&self) {
        self.changes.fetch_add(1, Ordering::Release);
    }

    /// How many such changes there have been.
    pub(super) fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// The offsets to commit for the partitions `which` selects, marked as sent.
    pub(super) fn to_commit(&self, which: impl Fn(i32) -> bool) -> Option<TopicPartitionList> {
        if !self.commits {
            return None;
        }
        let mut tpl = TopicPartitionList::new();
        let mut state = self.state();
        for (&partition, part) in state.partitions.iter_mut() {
            let Some(commits) = &part.commits else { continue };
            let point = commits.committable();
            if which(partition) && part.committed.is_none_or(|sent| point > sent) {
                // Adding an offset to a fresh list cannot fail.
                let _ = tpl.add_partition_offset(&self.topic, partition, Offset::Offset(point as i64));
                part.committed = Some(point);
            }
        }
        (tpl.count() > 0).then_some(tpl)
    }

    /// Forgets what was sent for `tpl`, so the next commit sends it again.
    pub(super) fn commit_failed(&self, tpl: &TopicPartitionList) {
        let mut state = self.state();
        for elem in tpl.elements() {
            if let (Some(part), Offset::Offset(offset)) = (state.partitions.get_mut(&elem.partition()), elem.offset()) {
                if part.committed == Some(offset as u64) {
                    part.committed = None;
                }
            }
        }
    }

    /// Commits synchronously on `consumer`; for revokes and for the stop.
    pub(super) fn commit_now(&self, consumer: &impl Consumer<ReaderContext>, which: impl Fn(i32) -> bool) {
        if let Some(tpl) = self.to_commit(which) {
            if let Err(err) = consumer.commit(&tpl, CommitMode::Sync) {
                tracing::warn!(topic = %self.topic, error = %err, "committing processed offsets failed");
                self.commit_failed(&tpl);
            }
        }
    }
}
