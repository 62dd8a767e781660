//! One topic: its partitions and what publishing to them takes; its consumer groups
//! are in `group.rs`, what members do in `consume.rs`.

mod consume;
mod group;

use group::{Cursor, Group, Groups, Slot};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use tidewater_core::Message;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The longest pause, in spin hints, between tries of a busy topic lock before a thread
/// sleeps on it. Doubling from 1, the tries span 511 hints, about 5 µs on the 2-core
/// Xeon this was measured on (10 ns a hint): the time a futex sleep and wake-up cost.
/// The standard mutex alone spins about 1 µs before it sleeps, shorter than a reader's
/// fetch, so the publisher slept on nearly every fetch and the reader paid a system call
/// to wake it; the memory_throughput benchmark went from 1.67-1.77M to 2.17-2.50M
/// messages a second with this (64: 1.89-2.02M; 1024: no better than 256).
const MAX_BACKOFF: u32 = 256;

/// The most settled messages a publish trims from a partition past three quarters full.
///
/// Two, for the one it adds: a partition that filled further while its groups lagged
/// comes back down, and the publisher frees about as many messages as it allocates. A
/// trim of everything settled freed hundreds of messages at a time, each group's floor
/// moving by a whole fetch; the allocator keeps only a few freed blocks of a size per
/// thread at hand (glibc: 7), so the rest went to its shared lists and the publisher's
/// next allocations took the slow path to get them back. Callgrind, the peer bench's
/// counting row (200,000 messages and the warm-up): the publisher's thread spent 1,150
/// instructions a message in the allocator before, 530-560 after, most of that now in
/// filling the partitions, which frees nothing.
const TRIM_PER_PUBLISH: usize = 2;

/// A consumer group member's id.
pub(crate) type MemberId = u64;

/// Asks the processor to start loading the cache line at `at`.
///
/// For lines that the other side of a publish wrote last, on its own core: the
/// publisher's writes reach the reader's core, and the reader's the publisher's, only as
/// each line is asked for, a transfer of about a hundred nanoseconds each between cores,
/// one after another where each read needs the one before it (the stored message, then
/// its payload). Asked for early, they travel while other work goes on. The peer bench's
/// latency run, twelve runs of each build by turns: the publish call's p50 from 3.56 to
/// 3.34 µs, the handlers' p50 over raw from +1.35 to +1.20 µs (`BENCHMARKS.md`).
#[inline(always)]
fn prefetch<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache: it reads nothing the program sees and
    // never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

pub(crate) struct Topic {
    pub(crate) name: Arc<str>,
    /// How much one partition holds.
    bounds: Bounds,
    state: Mutex<TopicState>,
    /// Readers waiting for something to fetch (publish, nack, rebalance, close): woken
    /// all at once, each registering again if it still finds nothing. A waker list rather
    /// than a `Notify`, so that a reader waits by polling, without a future of its own.
    readers: Mutex<Vec<(MemberId, Waker)>>,
    /// Room to publish may be there.
    pub(crate) space: Notify,
    /// Messages were settled (for test waits).
    pub(crate) settled: Notify,
    /// Tasks waiting on `settled` or on publishes, so the hot path skips the wake-up when
    /// nobody listens.
    pub(crate) watchers: AtomicUsize,
    /// Publishers waiting for room: while one waits, a settlement is applied at once
    /// instead of with the reader's next fetch, so the room it frees goes to the
    /// publisher as soon as a handler is done.
    blocked: AtomicUsize,
    /// Readers about to wait in `readers`, so a publish skips the wake-up when all are busy.
    /// A reader counts itself in before its last look at the log, and a publisher reads
    /// the count after appending, so one of the two always sees the other.
    pub(crate) idle_readers: AtomicUsize,
    /// Set when the topic is deleted, read without the lock by writers that kept it.
    deleted: std::sync::atomic::AtomicBool,
}

pub(crate) struct TopicState {
    pub(crate) partitions: Vec<Partition>,
    groups: Groups,
    next_member: MemberId,
    round_robin: u32,
    published: u64,
    pub(crate) closed: bool,
    publishers_waiting: usize,
    /// An empty vector with room, lent to each trim; see [`TopicState::take_front`].
    spare: Vec<Stored>,
}

/// What a member's fetches fill, kept by the member between fetches for their room.
///
/// The reader's own rather than the topic's: a scratch vector in the topic's state was
/// taken out and put back by every fetch, two writes to the lines of that state the
/// publisher writes too, each moving a cache line between their cores.
#[derive(Default)]
pub(crate) struct FetchBuffers {
    /// The messages a fetch hands out.
    pub(crate) fetched: Vec<Fetched>,
    /// Each partition's next message, while a fetch picks the oldest.
    heads: Vec<Head>,
}

/// A partition a fetch takes new messages from: the publish sequence of its next one.
pub(crate) struct Head {
    partition: usize,
    sequence: u64,
}

pub(crate) struct Partition {
    base: u64,
    log: VecDeque<Stored>,
}

pub(crate) struct Stored {
    pub(crate) sequence: u64,
    pub(crate) message: Arc<Message>,
    /// A second reference, made by the publisher, for the first fetch to take. Cloning
    /// the message's `Arc` in a fetch meant writing to a cache line the publisher had
    /// just written, once per message and under the topic lock, which made the fetch
    /// hold the lock long enough for publishers to sleep on it; the publisher clones
    /// on a line it already holds.
    first: Option<Arc<Message>>,
    /// Where the payload's bytes are, so that a fetch can have them loaded without
    /// reading the message first.
    payload_at: usize,
}

impl Stored {
    /// Has the processor load what the handler reads first, the message's payload field
    /// and the payload's first bytes, while the fetch and the delivery are made.
    fn prefetch(&self) {
        prefetch(&self.message.payload);
        prefetch(self.payload_at as *const u8);
    }

    /// Has the processor load what freeing this message reads and writes: its shared
    /// block (the allocator's header, the counts, then the message's fields) and the
    /// allocator's header before its payload. The addresses are guesses at the layout
    /// (the counts before the value, 16 bytes of header before each block), which a
    /// prefetch may get wrong at no cost but the hint.
    fn prefetch_for_free(&self) {
        const BEFORE: usize = 32;
        let block = Arc::as_ptr(&self.message).cast::<u8>().wrapping_sub(BEFORE);
        for line in 0..(BEFORE + std::mem::size_of::<Message>()).div_ceil(64) {
            prefetch(block.wrapping_add(line * 64));
        }
        prefetch((self.payload_at as *const u8).wrapping_sub(16));
    }

    /// A reference to the message for a delivery: the publisher's spare if still there.
    fn share(&mut self) -> Arc<Message> {
        self.first.take().unwrap_or_else(|| Arc::clone(&self.message))
    }
}

impl Partition {
    fn end(&self) -> u64 {
        self.base + self.log.len() as u64
    }

    fn get_mut(&mut self, offset: u64) -> Option<&mut Stored> {
        offset.checked_sub(self.base).and_then(|i| self.log.get_mut(i as usize))
    }

    /// The publish sequence of the message at `offset` (0 for one no longer held, so
    /// that a fetch passes over it first).
    fn sequence_at(&self, offset: u64) -> u64 {
        offset.checked_sub(self.base).and_then(|i| self.log.get(i as usize)).map_or(0, |s| s.sequence)
    }
}

/// How much one partition holds: at most `capacity` messages, of which at most `retain`
/// that every group settled (as far as room allows).
#[derive(Clone, Copy)]
struct Bounds {
    capacity: usize,
    retain: usize,
}

/// Messages a publish took off the front of partitions, dropped once the topic lock is
/// released.
#[derive(Default)]
struct Trimmed {
    /// What a publish trims as it goes (see [`TRIM_PER_PUBLISH`]), in place: the topic's
    /// spare vector would have to be given back under the lock again, a second lock a
    /// publish.
    few: [Option<Stored>; TRIM_PER_PUBLISH],
    /// Larger trims, in the topic's spare vector.
    many: Vec<Stored>,
}

/// A settlement recorded by a member, applied under the topic lock with its next fetch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settled {
    pub(crate) partition: u32,
    pub(crate) offset: u64,
    /// `None` for an ack; the redelivery delay for a nack.
    pub(crate) nack: Option<std::time::Duration>,
}

/// One message handed out by a fetch.
pub(crate) struct Fetched {
    pub(crate) partition: u32,
    pub(crate) offset: u64,
    pub(crate) attempt: u32,
    pub(crate) message: Arc<Message>,
}

/// A publisher counted in as waiting for room; see [`Topic::wait_for_room`].
pub(crate) struct Waiting<'a>(&'a Topic);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.publishers_waiting = state.publishers_waiting.saturating_sub(1);
        self.0.blocked.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a fetch found besides the deliveries.
pub(crate) struct Fetch {
    /// When the earliest pending redelivery falls due.
    pub(crate) wake: Option<Instant>,
}

/// What a publish found.
pub(crate) enum Append {
    Done,
    /// The partition is full and its oldest message is still unsettled by a group.
    Full(Arc<Message>),
    /// The broker was closed.
    Closed,
}

impl Topic {
    pub(crate) fn new(name: &str, partitions: u32, capacity: usize, retain: usize) -> Self {
        let partitions = (0..partitions.max(1)).map(|_| Partition { base: 0, log: VecDeque::new() }).collect();
        Self {
            name: Arc::from(name),
            bounds: Bounds { capacity: capacity.max(1), retain },
            state: Mutex::new(TopicState {
                partitions,
                groups: Groups::default(),
                next_member: 1,
                round_robin: 0,
                published: 0,
                closed: false,
                publishers_waiting: 0,
                spare: Vec::new(),
            }),
            readers: Mutex::new(Vec::new()),
            space: Notify::new(),
            settled: Notify::new(),
            watchers: AtomicUsize::new(0),
            blocked: AtomicUsize::new(0),
            idle_readers: AtomicUsize::new(0),
            deleted: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Has the processor load the lines an append takes that a reader wrote last (the
    /// lock and the list of waiting readers), while the writer still builds the message.
    pub(crate) fn prefetch_for_append(&self) {
        prefetch(&self.state);
        prefetch(&self.readers);
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, TopicState> {
        // A panic while holding the lock leaves plain bookkeeping behind, never a broken
        // invariant worth poisoning every later caller for.
        let mut backoff = 1u32;
        loop {
            match self.state.try_lock() {
                Ok(guard) => return guard,
                Err(std::sync::TryLockError::Poisoned(e)) => return e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) if backoff <= MAX_BACKOFF => {
                    for _ in 0..backoff {
                        std::hint::spin_loop();
                    }
                    backoff *= 2;
                }
                Err(std::sync::TryLockError::WouldBlock) => break,
            }
        }
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes every reader waiting for something to fetch.
    ///
    /// Woken under the lock, which keeps the list's room for the next waits, though a
    /// wake from outside the runtime (a publisher's thread) is a system call of several
    /// microseconds that a reader registering again waits for. Woken after the lock, the
    /// reader that had just run went idle before the worker its own wake-up set
    /// searching, and tokio, which wakes the worker that went idle last, ran 91-98% of
    /// the next messages on the other core (15-40% here), its lines cold: the peer
    /// bench's counting row went from +1.11 to +1.77 µs over raw at the p50 (medians of
    /// five runs by turns; `BENCHMARKS.md`, session 47).
    pub(crate) fn wake_readers(&self) {
        for (_, waker) in self.readers.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            waker.wake();
        }
    }

    /// Has `member`'s task woken on the next [`Topic::wake_readers`].
    pub(crate) fn register_reader(&self, member: MemberId, waker: &Waker) {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        match readers.iter_mut().find(|(m, _)| *m == member) {
            Some((_, w)) => w.clone_from(waker),
            None => readers.push((member, waker.clone())),
        }
    }

    /// Forgets `member`'s waker, as it leaves.
    pub(crate) fn forget_reader(&self, member: MemberId) {
        self.readers.lock().unwrap_or_else(|e| e.into_inner()).retain(|(m, _)| *m != member);
    }

    fn wake_watchers(&self) {
        if self.watchers.load(Ordering::Acquire) > 0 {
            self.settled.notify_waiters();
        }
    }

    /// Appends `message` to the partition its key picks, or hands it back if full.
    pub(crate) fn append(&self, message: Arc<Message>) -> Append {
        let bounds = self.bounds;
        // The reader's reference, counted before the lock: an atomic increment waits for
        // the stores before it, which under the lock are those to the partition's lines
        // that the reader last held.
        let first = Arc::clone(&message);
        let mut state = self.lock();
        if state.closed {
            return Append::Closed;
        }
        let count = state.partitions.len() as u32;
        let partition = match &message.key {
            Some(key) => (tidewater_core::hash::fnv1a_64(key) % u64::from(count)) as u32,
            None => {
                state.round_robin = state.round_robin.wrapping_add(1);
                state.round_robin % count
            }
        };
        let mut trimmed = Trimmed::default();
        let room = match message.key {
            Some(_) => state.room_in(partition, bounds, &mut trimmed).then_some(partition),
            // A keyless message may go anywhere: past a full partition to the next with
            // room, rather than wait for the one its turn named.
            None => (0..count).map(|k| (partition + k) % count).find(|&p| state.room_in(p, bounds, &mut trimmed)),
        };
        let Some(partition) = room else {
            drop(state);
            // Dropped first, so that the caller gets the message back as the only holder.
            drop(first);
            self.free(trimmed);
            return Append::Full(message);
        };
        state.published += 1;
        let sequence = state.published;
        let first = Some(first);
        let payload_at = message.payload.as_ptr() as usize;
        state.partitions[partition as usize].log.push_back(Stored { sequence, message, first, payload_at });
        drop(state);
        // Wake a waiting reader before freeing what the trim took: freeing a few thousand
        // messages takes tens of microseconds, which the new message would otherwise wait.
        if self.idle_readers.load(Ordering::SeqCst) > 0 {
            self.wake_readers();
        }
        self.wake_watchers();
        self.free(trimmed);
        Append::Done
    }

    /// Drops trimmed messages, outside the lock, and gives the spare vector back for the
    /// next trim if a trim took it.
    fn free(&self, trimmed: Trimmed) {
        let Trimmed { few, mut many } = trimmed;
        drop(few);
        if many.capacity() == 0 {
            return;
        }
        many.clear();
        let mut state = self.lock();
        if state.spare.capacity() < many.capacity() {
            std::mem::swap(&mut state.spare, &mut many);
        }
        drop(state);
    }

    /// Counts a publisher in as waiting for room, until the guard is dropped: readers
    /// wake publishers only while one waits.
    pub(crate) fn wait_for_room(&self) -> Waiting<'_> {
        self.lock().publishers_waiting += 1;
        self.blocked.fetch_add(1, Ordering::SeqCst);
        Waiting(self)
    }

    /// Messages settled by `group` so far.
    pub(crate) fn acked_count(&self, group: &str) -> u64 {
        self.lock().groups.get(group).map_or(0, |g| g.acked)
    }

    /// Per partition, the messages `group` has not acked: `None` for a group that never
    /// joined.
    pub(crate) fn lag(&self, group: &str) -> Option<Vec<u64>> {
        let state = self.lock();
        let g = state.groups.get(group)?;
        let lags = state.partitions.iter().zip(&g.cursors).map(|(partition, cursor)| {
            let acked_above_floor = cursor.slots.iter().filter(|s| **s == Slot::Acked).count() as u64;
            partition.end().saturating_sub(cursor.floor).saturating_sub(acked_above_floor)
        });
        Some(lags.collect())
    }

    /// Messages published to the topic so far.
    pub(crate) fn published_count(&self) -> u64 {
        self.lock().published
    }

    /// The retained messages, in publish order.
    pub(crate) fn retained(&self) -> Vec<Message> {
        let state = self.lock();
        let mut all: Vec<&Stored> = state.partitions.iter().flat_map(|p| p.log.iter()).collect();
        all.sort_by_key(|s| s.sequence);
        all.into_iter().map(|s| Message::clone(&s.message)).collect()
    }

    /// Forgets a consumer group and its positions.
    pub(crate) fn delete_group(&self, group: &str) -> bool {
        let mut state = self.lock();
        let removed = state.groups.remove(group).is_some();
        if removed {
            state.wake_publishers(&self.space);
        }
        removed
    }

    /// Closes the topic for good as it is deleted: writers that kept it look it up again.
    ///
    /// Its messages are dropped at once: writers keep a topic they wrote to (a writer its
    /// first one for good) and readers theirs until they end, and a deleted topic's
    /// messages are of no use to either. Offsets stay where they were, so a reader
    /// settling what it still handles finds nothing and changes nothing.
    pub(crate) fn delete(&self) {
        self.deleted.store(true, std::sync::atomic::Ordering::Release);
        self.close();
        let dropped: Vec<VecDeque<Stored>> = {
            let mut state = self.lock();
            state
                .partitions
                .iter_mut()
                .map(|p| {
                    p.base += p.log.len() as u64;
                    std::mem::take(&mut p.log)
                })
                .collect()
        };
        // Freed outside the lock.
        drop(dropped);
    }

    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake_readers();
        self.space.notify_waiters();
        self.settled.notify_waiters();
    }
}

impl TopicState {
    /// Whether `partition` has room for one more message, after trimming what every
    /// group settled from its front.
    ///
    /// The publisher trims settled messages beyond the retention, or past three quarters
    /// of the capacity: it allocated these messages, and freeing them on its own thread
    /// spares the allocator's lock, which a reader freeing them fought the publisher for
    /// on every message (the
    /// memory_throughput benchmark went from 1.0M to 1.3M messages a second with this).
    /// The caller frees `trimmed` after releasing the lock.
    ///
    /// Each publish trims at most [`TRIM_PER_PUBLISH`] messages there, not all that was
    /// settled: see that constant.
    fn room_in(&mut self, partition: u32, bounds: Bounds, trimmed: &mut Trimmed) -> bool {
        let len = self.partitions[partition as usize].log.len();
        if len > bounds.retain.min(bounds.capacity / 4 * 3) {
            self.trim_settled(partition, bounds, TRIM_PER_PUBLISH, trimmed);
        }
        if self.partitions[partition as usize].log.len() >= bounds.capacity {
            self.make_room(partition, bounds, trimmed);
        }
        self.partitions[partition as usize].log.len() < bounds.capacity
    }

    /// Moves what every group has settled from the front of a full partition to `out`;
    /// with no group at all, the oldest message (retention). The caller drops them after
    /// releasing the lock.
    fn make_room(&mut self, partition: u32, bounds: Bounds, out: &mut Trimmed) {
        if self.groups.is_empty() {
            let log = &self.partitions[partition as usize];
            let excess = (log.log.len() + 1).saturating_sub(bounds.capacity);
            self.take_front(partition, excess, out);
        } else {
            self.trim_settled(partition, Bounds { retain: 0, ..bounds }, usize::MAX, out);
        }
    }

    /// Moves up to `most` messages every group has settled from the front of
    /// `partition` to `out`: those past the newest `bounds.retain` settled ones, and past
    /// three quarters of the capacity as many as keep the partition at least half full.
    fn trim_settled(&mut self, partition: u32, bounds: Bounds, most: usize, out: &mut Trimmed) {
        let Bounds { capacity, retain } = bounds;
        let p = partition as usize;
        let floor = self.groups.values().map(|g| g.cursors[p].floor).min().unwrap_or(0);
        let log = &self.partitions[p];
        let settled = floor.saturating_sub(log.base) as usize;
        let len = log.log.len();
        let over_capacity = if len > capacity / 4 * 3 { len - capacity / 2 } else { 0 };
        let n = settled.saturating_sub(retain).max(settled.min(over_capacity)).min(most);
        self.take_front(partition, n, out);
    }

    /// Moves the oldest `n` messages of `partition` to `out`: into its few slots if they
    /// have room, else into the spare vector. A trim can take thousands of messages, and
    /// a fresh vector that size each time made the allocator consolidate its free lists,
    /// a tenth of the publisher's time in the memory_throughput benchmark.
    fn take_front(&mut self, partition: u32, n: usize, out: &mut Trimmed) {
        if n == 0 {
            return;
        }
        let log = &mut self.partitions[partition as usize];
        log.base += n as u64;
        // The next trim of this partition frees the messages behind these: have their
        // blocks loaded meanwhile.
        for next in log.log.range(n..).take(TRIM_PER_PUBLISH) {
            next.prefetch_for_free();
        }
        let mut taken = log.log.drain(..n);
        let empty = out.few.iter().filter(|slot| slot.is_none()).count();
        if out.many.capacity() == 0 && n <= empty {
            for slot in out.few.iter_mut().filter(|slot| slot.is_none()) {
                *slot = taken.next();
            }
            return;
        }
        if out.many.capacity() == 0 {
            out.many = std::mem::take(&mut self.spare);
        }
        out.many.extend(taken);
    }

    fn wake_publishers(&self, space: &Notify) {
        if self.publishers_waiting > 0 {
            space.notify_waiters();
        }
    }
}
